/* SPDX-License-Identifier: MIT */
/*
 * The bridge's configuration: command-line flags and a JSON file (the same
 * keys; docs/BRIDGE.md). Flags given after --config override the file's
 * scalars and add routes to its routes.
 *
 * Invariants: after bridge_config_finish() every route names a valid channel
 * and a valid NATS subject, a JetStream route has a stream, and the strings a
 * route uses to build file names and consumer names are safe for them.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus.h"

#include "bridge.h"
#include "util.h"

#define DEFAULT_STATE_DIR "/var/lib/shmbus-bridge"
#define CONFIG_MAX_BYTES  (1 << 20)

static void set_str(char **dst, const char *src) {
        free(*dst);
        *dst = src ? strdup(src) : NULL;
        if (src && !*dst) {
                fprintf(stderr, "shmbus-bridge: out of memory\n");
                exit(1);
        }
}

/* A subject: tokens of printable ASCII without space, separated by '.'; '*' and '>' are wildcards.
 */
static bool subject_is_valid(const char *s, bool wildcards) {
        size_t n = strlen(s);

        if (n == 0 || n > BRIDGE_SUBJECT_MAX || s[0] == '.' || s[n - 1] == '.')
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                if (c <= ' ' || c >= 0x7f)
                        return false;
                if (c == '.' && s[i + 1] == '.')
                        return false;
                if ((c == '*' || c == '>') && !wildcards)
                        return false;
        }
        return true;
}

static int parse_mode(const char *s, enum bridge_mode *ret) {
        if (strcmp(s, "core") == 0)
                *ret = BRIDGE_CORE;
        else if (strcmp(s, "jetstream") == 0)
                *ret = BRIDGE_JETSTREAM;
        else
                return -EINVAL;
        return 0;
}

static int route_add(struct bridge_config *cfg, enum bridge_kind kind, const char *channel,
                     const char *subject, const char *mode) {
        struct bridge_route *r;

        if (cfg->nroutes >= BRIDGE_ROUTES_MAX) {
                fprintf(stderr, "shmbus-bridge: more than %d routes; run a second bridge\n",
                        BRIDGE_ROUTES_MAX);
                return -EINVAL;
        }
        if (!shmbus__name_is_valid(channel)) {
                fprintf(stderr,
                        "shmbus-bridge: '%s' is not a channel name (1-63 bytes of "
                        "[A-Za-z0-9._-], not starting with '.')\n",
                        channel);
                return -EINVAL;
        }
        /* An import may listen on a wildcard; an export publishes to one subject. */
        if (!subject_is_valid(subject, kind == BRIDGE_IMPORT)) {
                fprintf(stderr,
                        "shmbus-bridge: '%s' is not a NATS subject (1-%d printable bytes, no "
                        "spaces, tokens separated by single dots%s)\n",
                        subject, BRIDGE_SUBJECT_MAX,
                        kind == BRIDGE_EXPORT ? ", no wildcards on an export" : "");
                return -EINVAL;
        }
        r = &cfg->routes[cfg->nroutes];
        *r = (struct bridge_route){.kind = kind, .mode = 0};
        if (mode && parse_mode(mode, &r->mode) < 0) {
                fprintf(stderr, "shmbus-bridge: delivery mode '%s': use core or jetstream\n", mode);
                return -EINVAL;
        }
        snprintf(r->channel, sizeof(r->channel), "%s", channel);
        snprintf(r->subject, sizeof(r->subject), "%s", subject);
        cfg->nroutes++;
        return 0;
}

/* "CHANNEL:SUBJECT[:MODE]" (export) or "SUBJECT:CHANNEL[:MODE]" (import). */
int bridge_route_parse(struct bridge_config *cfg, enum bridge_kind kind, const char *spec) {
        _cleanup_free_ char *copy = strdup(spec);
        char *a, *b, *mode;

        if (!copy)
                return -ENOMEM;
        a = copy;
        b = strchr(a, ':');
        if (!b) {
                fprintf(stderr, "shmbus-bridge: route '%s': expected %s[:core|:jetstream]\n", spec,
                        kind == BRIDGE_EXPORT ? "CHANNEL:SUBJECT" : "SUBJECT:CHANNEL");
                return -EINVAL;
        }
        *b++ = '\0';
        mode = strchr(b, ':');
        if (mode)
                *mode++ = '\0';
        if (kind == BRIDGE_EXPORT)
                return route_add(cfg, kind, a, b, mode);
        return route_add(cfg, kind, b, a, mode);
}

enum {
        OPT_STATS = 0x100,
        OPT_JSON,
        OPT_CREDS,
        OPT_TOKEN,
        OPT_USER,
        OPT_PASSWORD,
        OPT_TLS,
        OPT_TLS_CA,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_TLS_HOSTNAME,
        OPT_HOST,
        OPT_STATE_DIR,
        OPT_ACK_WAIT,
        OPT_BATCH,
};

static const struct option options[] = {
        {"nats", required_argument, NULL, 'n'},
        {"socket", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"export", required_argument, NULL, 'e'},
        {"import", required_argument, NULL, 'i'},
        {"jetstream", required_argument, NULL, 'j'},
        {"host", required_argument, NULL, OPT_HOST},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"stats", no_argument, NULL, OPT_STATS},
        {"json", no_argument, NULL, OPT_JSON},
        {"creds", required_argument, NULL, OPT_CREDS},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"user", required_argument, NULL, OPT_USER},
        {"password", required_argument, NULL, OPT_PASSWORD},
        {"tls", no_argument, NULL, OPT_TLS},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME},
        {"ack-wait", required_argument, NULL, OPT_ACK_WAIT},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

static void usage(FILE *f) {
        fputs("usage: shmbus-bridge --nats URL [--socket PATH] [--config FILE]\n"
              "         [--export CHANNEL:SUBJECT[:MODE]]... [--import SUBJECT:CHANNEL[:MODE]]...\n"
              "         [--jetstream STREAM] [--host NAME] [--state-dir DIR]\n"
              "         [--creds FILE | --token T | --user U --password P]\n"
              "         [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] "
              "[--tls-hostname NAME]\n"
              "       shmbus-bridge --stats [--json] [--state-dir DIR]\n"
              "MODE is core or jetstream (default: jetstream with --jetstream, else core).\n"
              "See shmbus-bridge(1) and docs/BRIDGE.md.\n",
              f);
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *ret) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi) {
                fprintf(stderr, "shmbus-bridge: %s: '%s' is not a number from %d to %d\n", opt, s,
                        lo, hi);
                return -EINVAL;
        }
        *ret = (int)v;
        return 0;
}

int bridge_config_parse_args(struct bridge_config *cfg, int argc, char **argv, bool *ret_stats,
                             bool *ret_json) {
        int c, r;

        cfg->ack_wait_ms = 2000;
        cfg->batch = 512;
        /* The config file first, so that flags override it wherever they appear. */
        for (int i = 1; i < argc - 1; i++) {
                if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
                        r = bridge_config_load_file(cfg, argv[i + 1]);
                        if (r < 0)
                                return r;
                }
        }
        optind = 1;
        while ((c = getopt_long(argc, argv, "n:s:c:e:i:j:h", options, NULL)) != -1) {
                r = 0;
                switch (c) {
                case 'n':
                        set_str(&cfg->nats_url, optarg);
                        break;
                case 's':
                        set_str(&cfg->socket, optarg);
                        break;
                case 'c':
                        break; /* read above */
                case 'e':
                        r = bridge_route_parse(cfg, BRIDGE_EXPORT, optarg);
                        break;
                case 'i':
                        r = bridge_route_parse(cfg, BRIDGE_IMPORT, optarg);
                        break;
                case 'j':
                        set_str(&cfg->stream, optarg);
                        break;
                case OPT_HOST:
                        set_str(&cfg->host, optarg);
                        break;
                case OPT_STATE_DIR:
                        set_str(&cfg->state_dir, optarg);
                        break;
                case OPT_STATS:
                        *ret_stats = true;
                        break;
                case OPT_JSON:
                        *ret_json = true;
                        break;
                case OPT_CREDS:
                        set_str(&cfg->creds, optarg);
                        break;
                case OPT_TOKEN:
                        set_str(&cfg->token, optarg);
                        break;
                case OPT_USER:
                        set_str(&cfg->user, optarg);
                        break;
                case OPT_PASSWORD:
                        set_str(&cfg->password, optarg);
                        break;
                case OPT_TLS:
                        cfg->tls = true;
                        break;
                case OPT_TLS_CA:
                        set_str(&cfg->tls_ca, optarg);
                        break;
                case OPT_TLS_CERT:
                        set_str(&cfg->tls_cert, optarg);
                        break;
                case OPT_TLS_KEY:
                        set_str(&cfg->tls_key, optarg);
                        break;
                case OPT_TLS_HOSTNAME:
                        set_str(&cfg->tls_hostname, optarg);
                        break;
                case OPT_ACK_WAIT:
                        r = parse_int("--ack-wait", optarg, 100, 3600000, &cfg->ack_wait_ms);
                        break;
                case OPT_BATCH:
                        r = parse_int("--batch", optarg, 1, 65536, &cfg->batch);
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        usage(stderr);
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                fprintf(stderr, "shmbus-bridge: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}

static int json_str(const cJSON *obj, const char *key, char **dst) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!v)
                return 0;
        if (!cJSON_IsString(v)) {
                fprintf(stderr, "shmbus-bridge: config: \"%s\" must be a string\n", key);
                return -EINVAL;
        }
        set_str(dst, v->valuestring);
        return 0;
}

static int json_routes(struct bridge_config *cfg, const cJSON *root, const char *key,
                       enum bridge_kind kind) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key), *it;
        int r;

        if (!arr)
                return 0;
        if (!cJSON_IsArray(arr)) {
                fprintf(stderr, "shmbus-bridge: config: \"%s\" must be an array of routes\n", key);
                return -EINVAL;
        }
        cJSON_ArrayForEach(it, arr) {
                const cJSON *ch = cJSON_GetObjectItemCaseSensitive(it, "channel");
                const cJSON *su = cJSON_GetObjectItemCaseSensitive(it, "subject");
                const cJSON *mo = cJSON_GetObjectItemCaseSensitive(it, "mode");

                if (!cJSON_IsString(ch) || !cJSON_IsString(su) || (mo && !cJSON_IsString(mo))) {
                        fprintf(stderr,
                                "shmbus-bridge: config: each of \"%s\" needs \"channel\" and "
                                "\"subject\" strings (and an optional \"mode\": \"core\" or "
                                "\"jetstream\")\n",
                                key);
                        return -EINVAL;
                }
                r = route_add(cfg, kind, ch->valuestring, su->valuestring,
                              mo ? mo->valuestring : NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

int bridge_config_load_file(struct bridge_config *cfg, const char *path) {
        static const char *const known[] = {
                "nats",    "socket",       "host",        "state_dir", "jetstream", "creds",
                "token",   "user",         "password",    "tls",       "tls_ca",    "tls_cert",
                "tls_key", "tls_hostname", "ack_wait_ms", "batch",     "exports",   "imports",
        };
        _cleanup_free_ char *text = NULL;
        cJSON *root, *it;
        size_t n = 0;
        FILE *f;
        int r = 0;

        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "shmbus-bridge: cannot read config %s: %s\n", path,
                        strerror(errno));
                return -errno;
        }
        text = malloc(CONFIG_MAX_BYTES + 1);
        if (text)
                n = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
        fclose(f);
        if (!text)
                return -ENOMEM;
        if (n > CONFIG_MAX_BYTES) {
                fprintf(stderr, "shmbus-bridge: config %s is larger than 1 MiB\n", path);
                return -EFBIG;
        }
        text[n] = '\0';
        root = cJSON_Parse(text);
        if (!cJSON_IsObject(root)) {
                fprintf(stderr, "shmbus-bridge: config %s is not a JSON object (near byte %td)\n",
                        path, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - text : (ptrdiff_t)0);
                cJSON_Delete(root);
                return -EINVAL;
        }
        cJSON_ArrayForEach(it, root) {
                bool ok = false;

                for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                        ok |= strcmp(it->string, known[i]) == 0;
                if (!ok) {
                        fprintf(stderr, "shmbus-bridge: config %s: unknown key \"%s\"\n", path,
                                it->string);
                        r = -EINVAL;
                        goto out;
                }
        }
        if ((r = json_str(root, "nats", &cfg->nats_url)) < 0 ||
            (r = json_str(root, "socket", &cfg->socket)) < 0 ||
            (r = json_str(root, "host", &cfg->host)) < 0 ||
            (r = json_str(root, "state_dir", &cfg->state_dir)) < 0 ||
            (r = json_str(root, "jetstream", &cfg->stream)) < 0 ||
            (r = json_str(root, "creds", &cfg->creds)) < 0 ||
            (r = json_str(root, "token", &cfg->token)) < 0 ||
            (r = json_str(root, "user", &cfg->user)) < 0 ||
            (r = json_str(root, "password", &cfg->password)) < 0 ||
            (r = json_str(root, "tls_ca", &cfg->tls_ca)) < 0 ||
            (r = json_str(root, "tls_cert", &cfg->tls_cert)) < 0 ||
            (r = json_str(root, "tls_key", &cfg->tls_key)) < 0 ||
            (r = json_str(root, "tls_hostname", &cfg->tls_hostname)) < 0)
                goto out;
        it = cJSON_GetObjectItemCaseSensitive(root, "tls");
        if (it) {
                if (!cJSON_IsBool(it)) {
                        fprintf(stderr, "shmbus-bridge: config: \"tls\" must be true or false\n");
                        r = -EINVAL;
                        goto out;
                }
                cfg->tls = cJSON_IsTrue(it);
        }
        it = cJSON_GetObjectItemCaseSensitive(root, "ack_wait_ms");
        if (it) {
                if (!cJSON_IsNumber(it) || it->valuedouble < 100 || it->valuedouble > 3600000) {
                        fprintf(stderr, "shmbus-bridge: config: \"ack_wait_ms\" must be a number "
                                        "from 100 to 3600000\n");
                        r = -EINVAL;
                        goto out;
                }
                cfg->ack_wait_ms = (int)it->valuedouble;
        }
        it = cJSON_GetObjectItemCaseSensitive(root, "batch");
        if (it) {
                if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 65536) {
                        fprintf(stderr,
                                "shmbus-bridge: config: \"batch\" must be a number from 1 to "
                                "65536\n");
                        r = -EINVAL;
                        goto out;
                }
                cfg->batch = (int)it->valuedouble;
        }
        if ((r = json_routes(cfg, root, "exports", BRIDGE_EXPORT)) < 0 ||
            (r = json_routes(cfg, root, "imports", BRIDGE_IMPORT)) < 0)
                goto out;
out:
        cJSON_Delete(root);
        return r;
}

int bridge_config_finish(struct bridge_config *cfg) {
        char host[256];

        if (!cfg->state_dir)
                set_str(&cfg->state_dir, DEFAULT_STATE_DIR);
        if (!cfg->host) {
                if (gethostname(host, sizeof(host)) < 0)
                        snprintf(host, sizeof(host), "localhost");
                host[sizeof(host) - 1] = '\0';
                set_str(&cfg->host, host);
        }
        /* The host name goes into message ids and durable names: keep it plain. */
        if (!shmbus__name_is_valid(cfg->host) || strlen(cfg->host) > BRIDGE_HOST_MAX) {
                fprintf(stderr,
                        "shmbus-bridge: host name '%s' must be 1-63 bytes of [A-Za-z0-9._-]; "
                        "pass --host NAME\n",
                        cfg->host);
                return -EINVAL;
        }
        if (!cfg->nats_url) {
                fprintf(stderr, "shmbus-bridge: no NATS server: pass --nats URL (for example "
                                "nats://127.0.0.1:4222)\n");
                return -EINVAL;
        }
        if (cfg->nroutes == 0) {
                fprintf(stderr, "shmbus-bridge: nothing to do: give at least one --export or "
                                "--import\n");
                return -EINVAL;
        }
        if (cfg->stream && !shmbus__name_is_valid(cfg->stream)) {
                fprintf(stderr,
                        "shmbus-bridge: stream name '%s' must be 1-63 bytes of "
                        "[A-Za-z0-9_-]\n",
                        cfg->stream);
                return -EINVAL;
        }
        if (cfg->stream && strchr(cfg->stream, '.')) {
                fprintf(stderr, "shmbus-bridge: a stream name may not contain '.'\n");
                return -EINVAL;
        }
        for (unsigned int i = 0; i < cfg->nroutes; i++) {
                struct bridge_route *r = &cfg->routes[i];

                if (r->mode == 0)
                        r->mode = cfg->stream ? BRIDGE_JETSTREAM : BRIDGE_CORE;
                if (r->mode == BRIDGE_JETSTREAM && !cfg->stream) {
                        fprintf(stderr,
                                "shmbus-bridge: route %s:%s is in jetstream mode: pass "
                                "--jetstream STREAM\n",
                                r->channel, r->subject);
                        return -EINVAL;
                }
                for (unsigned int j = 0; j < i; j++) {
                        if (cfg->routes[j].kind == r->kind &&
                            strcmp(cfg->routes[j].channel, r->channel) == 0 &&
                            strcmp(cfg->routes[j].subject, r->subject) == 0) {
                                fprintf(stderr, "shmbus-bridge: route %s:%s is given twice\n",
                                        r->channel, r->subject);
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

void bridge_config_deinit(struct bridge_config *cfg) {
        char **strs[] = {&cfg->nats_url,    &cfg->socket, &cfg->host,     &cfg->state_dir,
                         &cfg->stream,      &cfg->creds,  &cfg->token,    &cfg->user,
                         &cfg->password,    &cfg->tls_ca, &cfg->tls_cert, &cfg->tls_key,
                         &cfg->tls_hostname};

        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
                free(*strs[i]);
                *strs[i] = NULL;
        }
}
