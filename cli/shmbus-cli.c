/* SPDX-License-Identifier: MIT */
/*
 * shmbus-cli: see and touch the bus. Read verbs ask shmbusd, or, when it is
 * not running, map the channel files read-only themselves (and say so). Every
 * read verb has --json with the field names of docs/PROTOCOL.md. Exit codes
 * are listed in usage() and shmbus-cli(1).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "channel.h"
#include "ring.h"
#include "stats.h"
#include "util.h"

enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,
        EXIT_USAGE = 2,
        EXIT_NOENT = 3,
        EXIT_ACCESS = 4,
        EXIT_FULL = 5,
        EXIT_DOWN = 7,
};

static struct {
        const char *socket;
        const char *shm_dir;
        bool json;
        bool color;
} arg;

static volatile sig_atomic_t stop;

static void on_stop(int sig) {
        stop = 1;
}

__attribute__((format(printf, 1, 2))) static void err(const char *fmt, ...) {
        va_list ap;

        fputs("shmbus-cli: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static int exit_code(int r) {
        switch (r) {
        case 0:
                return EXIT_OK;
        case -ENOENT:
                return EXIT_NOENT;
        case -EACCES:
        case -EPERM:
                return EXIT_ACCESS;
        case -EAGAIN:
        case -ETIMEDOUT:
                return EXIT_FULL;
        case -ECONNREFUSED:
                return EXIT_DOWN;
        default:
                return EXIT_FAIL;
        }
}

static const char *color(const char *code) {
        return arg.color ? code : "";
}

/* ---- talking to the daemon, or reading the files ------------------------------------------- */

/* Connect; -ECONNREFUSED if no daemon is listening (a missing socket counts as that too). */
static int connect_daemon(shmbus_client **ret) {
        int r = shmbus_client_new(arg.socket, ret);

        return r == -ENOENT ? -ECONNREFUSED : r;
}

static const char *shm_dir(shmbus_client *c) {
        static char dir[256];
        _cleanup_free_ char *reply = NULL;

        if (arg.shm_dir)
                return arg.shm_dir;
        if (c && shmbus_client_request(c, "{\"v\":1,\"op\":\"hello\"}", &reply) == 0) {
                cJSON *j = cJSON_Parse(reply);
                const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "shm_dir");

                if (cJSON_IsString(d))
                        snprintf(dir, sizeof(dir), "%s", d->valuestring);
                cJSON_Delete(j);
                if (dir[0])
                        return dir;
        }
        return "/dev/shm/shmbus";
}

/* 0 for an "ok" reply (whose envelope is then removed: output has only documented fields). */
static int reply_errno(cJSON *reply) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "errno");

        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                return cJSON_IsNumber(e) ? -e->valueint : -EIO;
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "v");
        return 0;
}

/* Stats of one channel straight from its files (read-only), in the daemon's format. */
static cJSON *file_stats(const char *dir, const char *name, bool detail, int *ret) {
        shmbus_channel *ch;
        struct stat st;
        char path[512];
        cJSON *o;

        *ret = shmbus_channel_open(dir, name, SHMBUS_OPEN_INSPECT, &ch);
        if (*ret < 0)
                return NULL;
        snprintf(path, sizeof(path), "%s/%s.ctl", dir, name);
        o = cJSON_CreateObject();
        shmbus__stats_json(o, &ch->ring, ch->name, stat(path, &st) == 0 ? st.st_uid : 0, detail);
        shmbus_channel_unref(ch);
        return o;
}

/*
 * Ask the daemon. Returns 1 with *offline set if it is not running (the caller
 * then reads the files), otherwise the request's result with the reply in *ret.
 */
static int ask_daemon(const char *req, cJSON **ret, bool *offline) {
        _cleanup_free_ char *reply = NULL;
        shmbus_client *c = NULL;
        int r = connect_daemon(&c);

        *offline = r == -ECONNREFUSED;
        if (*offline)
                return 1;
        if (r < 0)
                return r;
        r = shmbus_client_request(c, req, &reply);
        shmbus_client_free(c);
        if (r < 0)
                return r;
        *ret = cJSON_Parse(reply);
        return *ret ? reply_errno(*ret) : -EPROTO;
}

/* All channels: {"channels": [...]} from the daemon, or from the files if it is down. */
static int get_list(cJSON **ret, bool *offline) {
        int r = ask_daemon("{\"v\":1,\"op\":\"list\"}", ret, offline);

        if (r <= 0)
                return r;

        const char *dir = shm_dir(NULL);
        DIR *d = opendir(dir);
        struct dirent *de;
        cJSON *list = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(list, "channels");

        while (d && (de = readdir(d))) {
                char name[SHMBUS_NAME_MAX + 1];
                cJSON *o;

                if (!shmbus__channel_name_of_file(de->d_name, name))
                        continue;
                o = file_stats(dir, name, false, &r);
                if (o)
                        cJSON_AddItemToArray(arr, o);
                else
                        err("%s: %s", name, shmbus_strerror(r));
        }
        if (d)
                closedir(d);
        *ret = list;
        return 0;
}

static int get_status(const char *name, cJSON **ret, bool *offline) {
        char req[128];
        int r;

        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"stat\",\"name\":\"%s\"}", name);
        r = ask_daemon(req, ret, offline);
        if (r <= 0)
                return r;
        *ret = file_stats(shm_dir(NULL), name, true, &r);
        return r;
}

static void say_offline(void) {
        err("shmbusd is not running: reading channel files in %s read-only", shm_dir(NULL));
}

/* ---- output helpers ------------------------------------------------------------------------- */

static double num(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? v->valuestring : "";
}

static const char *human_size(double bytes, char *buf, size_t size) {
        static const char *units[] = {"B", "KiB", "MiB", "GiB"};
        int u = 0;

        while (bytes >= 1024 && u < 3) {
                bytes /= 1024;
                u++;
        }
        snprintf(buf, size, u ? "%.4g %s" : "%.0f %s", bytes, units[u]);
        return buf;
}

static void print_json(const cJSON *j) {
        char *text = cJSON_Print(j);

        puts(text);
        free(text);
}

static double published_of(const cJSON *list, const char *name) {
        const cJSON *c;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, "channels"))
                if (strcmp(str(c, "name"), name) == 0)
                        return num(c, "published");
        return -1;
}

/* Add "msg_per_s" to every channel of @now, from @before taken @secs earlier. */
static void add_rates(cJSON *now, const cJSON *before, double secs) {
        cJSON *c;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(now, "channels")) {
                double prev = published_of(before, str(c, "name"));

                cJSON_AddNumberToObject(c, "msg_per_s",
                                        prev >= 0 && secs > 0 ? (num(c, "published") - prev) / secs : 0);
        }
}

static void print_table(const cJSON *list) {
        const cJSON *c;
        char size[32], lag[32];

        printf("%s%-24s %-9s %10s %5s %5s %10s %8s %10s%s\n", color("\033[1m"), "CHANNEL", "POLICY",
               "SIZE", "PUBS", "SUBS", "MSG/S", "DROPS", "MAX LAG", color("\033[0m"));
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, "channels")) {
                double drops = num(c, "lost") + num(c, "unblocked");

                printf("%-24s %-9s %10s %5.0f %5.0f %10.0f %s%8.0f%s %10s\n", str(c, "name"),
                       str(c, "policy"), human_size(num(c, "capacity"), size, sizeof(size)),
                       num(c, "publishers_active"), num(c, "subscribers_active"),
                       num(c, "msg_per_s"), drops > 0 ? color("\033[31m") : "", drops,
                       drops > 0 ? color("\033[0m") : "",
                       human_size(num(c, "max_lag_bytes"), lag, sizeof(lag)));
        }
}

/* ---- verbs ------------------------------------------------------------------------------ */

static int sample_list(cJSON **ret, bool *offline, double secs) {
        cJSON *before = NULL;
        struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
        int r = get_list(&before, offline);

        if (r < 0)
                return r;
        nanosleep(&ts, NULL);
        r = get_list(ret, offline);
        if (r == 0)
                add_rates(*ret, before, secs);
        cJSON_Delete(before);
        return r;
}

static int verb_list(double interval) {
        cJSON *list = NULL;
        bool offline;
        int r = sample_list(&list, &offline, interval);

        if (r < 0) {
                if (r == -ECONNREFUSED)
                        err("shmbusd is not running");
                else
                        err("list: %s", shmbus_strerror(r));
                cJSON_Delete(list);
                return exit_code(r);
        }
        if (offline)
                say_offline();
        if (arg.json) {
                cJSON_AddBoolToObject(list, "offline", offline);
                print_json(list);
        } else {
                print_table(list);
        }
        cJSON_Delete(list);
        return EXIT_OK;
}

static int verb_stats(bool watch, double interval, long count) {
        cJSON *prev = NULL;
        bool offline, said = false;
        int r = get_list(&prev, &offline);

        if (r < 0) {
                err("stats: %s", shmbus_strerror(r));
                return exit_code(r);
        }
        signal(SIGINT, on_stop);
        signal(SIGTERM, on_stop);
        for (long n = 0; !stop && (count <= 0 || n < count); n++) {
                struct timespec ts = {(time_t)interval,
                                      (long)((interval - (double)(time_t)interval) * 1e9)};
                cJSON *now = NULL;

                nanosleep(&ts, NULL);
                r = get_list(&now, &offline);
                if (r < 0) {
                        err("stats: %s", shmbus_strerror(r));
                        cJSON_Delete(prev);
                        return exit_code(r);
                }
                if (offline && !said)
                        say_offline();
                said |= offline;
                add_rates(now, prev, interval);
                if (arg.json) {
                        char *line = cJSON_PrintUnformatted(now);

                        puts(line); /* one JSON object a line */
                        free(line);
                } else {
                        if (watch && isatty(STDOUT_FILENO))
                                fputs("\033[H\033[2J", stdout);
                        print_table(now);
                        if (watch)
                                putchar('\n');
                }
                fflush(stdout);
                cJSON_Delete(prev);
                prev = now;
                if (!watch)
                        break;
        }
        cJSON_Delete(prev);
        return EXIT_OK;
}

static int verb_status(const char *name) {
        cJSON *s = NULL;
        const cJSON *e;
        bool offline;
        char b1[32], b2[32];
        int r;

        r = get_status(name, &s, &offline);
        if (r < 0) {
                if (r == -ENOENT)
                        err("no channel %s", name);
                else
                        err("status %s: %s", name, shmbus_strerror(r));
                cJSON_Delete(s);
                return exit_code(r);
        }
        if (offline)
                say_offline();
        if (arg.json) {
                cJSON_AddBoolToObject(s, "offline", offline);
                print_json(s);
                cJSON_Delete(s);
                return EXIT_OK;
        }
        printf("%s%s%s\n", color("\033[1m"), str(s, "name"), color("\033[0m"));
        printf("  policy:      %s\n", str(s, "policy"));
        printf("  ring:        %s, messages up to %s\n",
               human_size(num(s, "capacity"), b1, sizeof(b1)),
               human_size(num(s, "max_msg"), b2, sizeof(b2)));
        printf("  slots:       %.0f/%.0f publishers, %.0f/%.0f subscribers\n",
               num(s, "publishers_active"), num(s, "max_publishers"),
               num(s, "subscribers_active"), num(s, "max_subscribers"));
        printf("  owner uid:   %.0f\n", num(s, "owner_uid"));
        printf("  published:   %.0f messages, %s\n", num(s, "published"),
               human_size(num(s, "published_bytes"), b1, sizeof(b1)));
        printf("  position:    %.0f\n", num(s, "position"));
        printf("  lost:        %.0f    unblocked: %.0f\n", num(s, "lost"), num(s, "unblocked"));
        printf("\n%s  %-5s %8s %6s %12s %12s %10s %8s %8s%s\n", color("\033[1m"), "SUB", "PID", "UID",
               "POSITION", "RECEIVED", "LAG", "LOST", "CORRUPT", color("\033[0m"));
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "subscribers"))
                printf("  %-5.0f %8.0f %6.0f %12.0f %12.0f %10s %8.0f %8.0f\n", num(e, "slot"),
                       num(e, "pid"), num(e, "uid"), num(e, "position"), num(e, "received"),
                       human_size(num(e, "lag_bytes"), b1, sizeof(b1)), num(e, "lost"),
                       num(e, "corrupt"));
        printf("\n%s  %-5s %8s %6s %12s %12s %8s %8s%s\n", color("\033[1m"), "PUB", "PID", "UID",
               "PUBLISHED", "BYTES", "WAITS", "ABORTS", color("\033[0m"));
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "publishers"))
                printf("  %-5.0f %8.0f %6.0f %12.0f %12.0f %8.0f %8.0f\n", num(e, "slot"),
                       num(e, "pid"), num(e, "uid"), num(e, "published"), num(e, "bytes"),
                       num(e, "waits"), num(e, "aborts"));
        cJSON_Delete(s);
        return EXIT_OK;
}

/* -- tail -- */

enum { FMT_TEXT, FMT_HEX, FMT_JSON };

static void print_msg(int fmt, const uint8_t *d, size_t len, uint64_t seq) {
        if (fmt == FMT_JSON) {
                cJSON *o = cJSON_CreateObject();
                bool text = true;
                char *line;

                for (size_t i = 0; i < len; i++)
                        text &= (d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\t' || d[i] == '\n';
                cJSON_AddNumberToObject(o, "seq", (double)seq);
                cJSON_AddNumberToObject(o, "len", (double)len);
                if (text) {
                        /* A copy with a terminator: the message has none. */
                        char *s = malloc(len + 1);

                        if (s) {
                                memcpy(s, d, len);
                                s[len] = '\0';
                        }
                        cJSON_AddStringToObject(o, "text", s ? s : "");
                        free(s);
                } else {
                        char *hex = malloc(len * 2 + 1);

                        for (size_t i = 0; hex && i < len; i++)
                                sprintf(hex + 2 * i, "%02x", d[i]);
                        if (hex)
                                hex[len * 2] = '\0';
                        cJSON_AddStringToObject(o, "hex", hex ? hex : "");
                        free(hex);
                }
                line = cJSON_PrintUnformatted(o);
                puts(line);
                free(line);
                cJSON_Delete(o);
        } else if (fmt == FMT_HEX) {
                printf("%s#%llu%s %zu B:", color("\033[2m"), (unsigned long long)seq,
                       color("\033[0m"), len);
                for (size_t i = 0; i < len; i++)
                        printf(" %02x", d[i]);
                putchar('\n');
        } else {
                /* Text: printable bytes as they are, the rest escaped, one message a line. */
                for (size_t i = 0; i < len; i++) {
                        if (d[i] == '\\')
                                fputs("\\\\", stdout);
                        else if (d[i] >= 0x20 && d[i] < 0x7f)
                                putchar(d[i]);
                        else if (d[i] == '\n')
                                fputs("\\n", stdout);
                        else
                                printf("\\x%02x", d[i]);
                }
                putchar('\n');
        }
}

struct history {
        size_t keep, n, next;
        uint8_t **data;
        size_t *len;
        uint64_t *seq;
};

static int history_add(void *ctx, const void *data, uint32_t len, uint64_t seq, bool stale) {
        struct history *h = ctx;
        size_t i;

        if (stale) {
                /* Overwritten while read: forget the last copy, it may be torn. */
                if (h->n) {
                        h->next = (h->next + h->keep - 1) % h->keep;
                        h->n--;
                }
                return 0;
        }
        i = h->next;
        free(h->data[i]);
        h->data[i] = malloc(len ? len : 1);
        if (!h->data[i])
                return -ENOMEM;
        memcpy(h->data[i], data, len);
        h->len[i] = len;
        h->seq[i] = seq;
        h->next = (i + 1) % h->keep;
        if (h->n < h->keep)
                h->n++;
        return 0;
}

static int verb_tail(const char *name, long n, bool follow, int fmt) {
        shmbus_client *c = NULL;
        shmbus_channel *ch = NULL;
        shmbus_sub *sub = NULL;
        struct history h = {0};
        uint64_t upto;
        int r;

        r = connect_daemon(&c);
        if (r == 0)
                r = shmbus_client_open(c, name, 0, NULL, &ch);
        else if (r == -ECONNREFUSED) {
                say_offline();
                r = shmbus_channel_open(shm_dir(NULL), name, follow ? 0 : SHMBUS_OPEN_INSPECT, &ch);
        }
        shmbus_client_free(c);
        if (r < 0) {
                err("tail %s: %s", name, r == -ENOENT ? "no such channel" : shmbus_strerror(r));
                return exit_code(r);
        }
        /* Subscribe first, so nothing falls between the history and what follows. */
        if (follow) {
                r = shmbus_sub_new(ch, &sub);
                if (r < 0) {
                        err("tail %s: %s", name, shmbus_strerror(r));
                        shmbus_channel_unref(ch);
                        return exit_code(r);
                }
                upto = shmbus__sub_position(sub);
        } else {
                upto = shmbus__ring_tail_pos(&ch->ring);
        }
        if (n > 0) {
                h.keep = (size_t)n;
                h.data = calloc(h.keep, sizeof(*h.data));
                h.len = calloc(h.keep, sizeof(*h.len));
                h.seq = calloc(h.keep, sizeof(*h.seq));
                if (!h.data || !h.len || !h.seq)
                        r = -ENOMEM;
                else
                        r = shmbus__ring_walk(&ch->ring, upto, history_add, &h);
                if (r < 0)
                        err("tail %s: reading history: %s", name, shmbus_strerror(r));
                for (size_t i = 0; i < h.n; i++) {
                        size_t k = (h.next + h.keep - h.n + i) % h.keep;

                        print_msg(fmt, h.data[k], h.len[k], h.seq[k]);
                }
                for (size_t i = 0; h.data && i < h.keep; i++)
                        free(h.data[i]);
                free(h.data);
                free(h.len);
                free(h.seq);
        }
        fflush(stdout);
        if (follow) {
                uint8_t *buf = malloc(shmbus_channel_max_msg(ch));

                signal(SIGINT, on_stop);
                signal(SIGTERM, on_stop);
                while (buf && !stop) {
                        /* Copy out, then print: the ring may reuse the bytes once released. */
                        ssize_t len = shmbus_sub_recv(sub, buf, shmbus_channel_max_msg(ch), 200);

                        if (len == -ETIMEDOUT || len == -EBADMSG)
                                continue;
                        if (len < 0) {
                                r = (int)len;
                                err("tail %s: %s", name, shmbus_strerror(r));
                                break;
                        }
                        print_msg(fmt, buf, (size_t)len, shmbus__sub_last_seq(sub));
                        if (fflush(stdout) != 0)
                                break; /* the reader went away */
                }
                free(buf);
                if (shmbus_sub_lost(sub))
                        err("tail %s: %llu messages lost (overwritten before they were read)",
                            name, (unsigned long long)shmbus_sub_lost(sub));
                shmbus_sub_free(sub);
        }
        shmbus_channel_unref(ch);
        return r < 0 && r != -ETIMEDOUT ? exit_code(r) : EXIT_OK;
}

/* -- pub, create, delete, version -- */

static int open_for_write(const char *name, bool create, const shmbus_opts *o, shmbus_channel **ch) {
        shmbus_client *c = NULL;
        int r = connect_daemon(&c);

        if (r == -ECONNREFUSED) {
                err("shmbusd is not running");
                return r;
        }
        if (r == 0)
                r = shmbus_client_open(c, name, SHMBUS_OPEN_PUBLISH | (create ? SHMBUS_OPEN_CREATE : 0),
                                       o, ch);
        shmbus_client_free(c);
        if (r < 0)
                err("%s: %s", name, r == -ENOENT ? "no such channel (use --create)" : shmbus_strerror(r));
        return r;
}

static int verb_pub(const char *name, const char *message, bool whole, bool create, int timeout_ms) {
        shmbus_channel *ch;
        shmbus_pub *p;
        char *line = NULL;
        size_t cap = 0;
        long sent = 0;
        int r;

        r = open_for_write(name, create, NULL, &ch);
        if (r < 0)
                return exit_code(r);
        r = shmbus_pub_new(ch, &p);
        if (r < 0) {
                err("%s: %s", name, shmbus_strerror(r));
                shmbus_channel_unref(ch);
                return exit_code(r);
        }
        if (message && strcmp(message, "-") != 0) {
                r = shmbus_pub_send(p, message, strlen(message), timeout_ms);
                sent += r == 0;
        } else if (whole) {
                /* All of stdin is one message. */
                size_t len = 0, max = shmbus_channel_max_msg(ch);
                char *buf = malloc(max + 1);
                size_t got;

                while (buf && (got = fread(buf + len, 1, max + 1 - len, stdin)) > 0 && len <= max)
                        len += got;
                if (!buf)
                        r = -ENOMEM;
                else if (len > max)
                        r = -EMSGSIZE;
                else if (len == 0)
                        r = -EINVAL;
                else
                        r = shmbus_pub_send(p, buf, len, timeout_ms);
                sent += r == 0;
                free(buf);
        } else {
                ssize_t n;

                while (r == 0 && (n = getline(&line, &cap, stdin)) > 0) {
                        if (line[n - 1] == '\n')
                                line[--n] = '\0';
                        if (n == 0)
                                continue; /* messages are 1 byte at least: skip empty lines */
                        r = shmbus_pub_send(p, line, (size_t)n, timeout_ms);
                        sent += r == 0;
                }
                free(line);
        }
        if (r < 0)
                err("pub %s: %s (after %ld messages)", name, shmbus_strerror(r), sent);
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        return exit_code(r);
}

static int verb_create(const char *name, const shmbus_opts *o) {
        shmbus_channel *ch;
        int r;

        r = open_for_write(name, true, o, &ch);
        if (r < 0)
                return exit_code(r);
        shmbus_channel_unref(ch);
        return EXIT_OK;
}

static int verb_delete(const char *name) {
        shmbus_client *c = NULL;
        int r;

        r = connect_daemon(&c);
        if (r == 0)
                r = shmbus_client_delete(c, name);
        shmbus_client_free(c);
        if (r < 0)
                err("delete %s: %s", name, r == -ECONNREFUSED ? "shmbusd is not running"
                                           : r == -ENOENT      ? "no such channel"
                                                               : shmbus_strerror(r));
        return exit_code(r);
}

static int verb_version(void) {
        shmbus_client *c = NULL;
        _cleanup_free_ char *reply = NULL;
        cJSON *hello = NULL;

        if (connect_daemon(&c) == 0 &&
            shmbus_client_request(c, "{\"v\":1,\"op\":\"hello\"}", &reply) == 0)
                hello = cJSON_Parse(reply);
        shmbus_client_free(c);
        if (arg.json) {
                cJSON *o = cJSON_CreateObject();

                cJSON_AddStringToObject(o, "cli", shmbus_version());
                if (hello) {
                        cJSON_AddStringToObject(o, "daemon", str(hello, "version"));
                        cJSON_AddNumberToObject(o, "protocol", num(hello, "protocol"));
                } else {
                        cJSON_AddNullToObject(o, "daemon");
                }
                print_json(o);
                cJSON_Delete(o);
        } else {
                printf("shmbus-cli %s\n", shmbus_version());
                if (hello)
                        printf("shmbusd %s (protocol %.0f)\n", str(hello, "version"),
                               num(hello, "protocol"));
                else
                        printf("shmbusd not running\n");
        }
        cJSON_Delete(hello);
        return EXIT_OK;
}

/* ---- arguments -------------------------------------------------------------------------- */

static const struct {
        const char *verb, *synopsis, *text;
} verbs[] = {
        {"list", "list [--json] [--interval SEC]",
         "Channels with policy, ring size, active publishers and subscribers, messages per\n"
         "second (sampled over --interval, default 0.25 s), drops (lost + unblocked) and the\n"
         "largest subscriber lag. Reads the files read-only when shmbusd is down.\n"},
        {"status", "status CHANNEL [--json]",
         "Geometry and counters of one channel, and every subscriber (pid, uid, position,\n"
         "lag, received, lost, corrupt) and publisher (pid, uid, published, waits, aborts).\n"},
        {"stats", "stats [--watch] [--interval SEC] [--count N] [--json]",
         "The channel list with rates over --interval (default 1 s); --watch refreshes until\n"
         "Ctrl-C or --count refreshes. With --json, one JSON object a line.\n"},
        {"tail", "tail CHANNEL [-n N] [--follow] [--format text|hex|json]",
         "Print the last N messages still in the ring (default 10), then with --follow every\n"
         "new one until Ctrl-C. text escapes unprintable bytes; json prints\n"
         "{\"seq\", \"len\", \"text\" or \"hex\"} a line.\n"},
        {"pub", "pub CHANNEL [MESSAGE|-] [--whole] [--create] [--timeout MS]",
         "Publish MESSAGE, or read stdin: one message a line (empty lines are skipped), or\n"
         "with --whole all of stdin as one message. --create makes the channel if missing.\n"},
        {"create", "create CHANNEL [--capacity BYTES] [--max-msg BYTES] [--policy block|overwrite]\n"
                   "                       [--max-subscribers N] [--max-publishers N]",
         "Create a channel through shmbusd (its per-channel configuration wins).\n"},
        {"delete", "delete CHANNEL",
         "Delete a channel (its owner or root). Members keep what they have mapped.\n"},
        {"version", "version [--json]", "Versions of shmbus-cli and of the running shmbusd.\n"},
};

static int verb_help(const char *verb) {
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
                if (strcmp(verbs[i].verb, verb) == 0) {
                        printf("Usage: shmbus-cli %s\n\n%s", verbs[i].synopsis, verbs[i].text);
                        return EXIT_OK;
                }
        }
        err("unknown verb '%s'; try 'shmbus-cli --help'", verb);
        return EXIT_USAGE;
}

static void usage(FILE *f) {
        fputs("Usage: shmbus-cli [OPTIONS] [VERB] [ARGS]\n"
              "\n"
              "Verbs:\n"
              "  list                     channels: policy, size, publishers, subscribers, msg/s,\n"
              "                           drops, max lag (the default verb)\n"
              "  status CHANNEL           geometry, counters, every subscriber and publisher\n"
              "  stats [--watch]          the list with rates, refreshed with --watch\n"
              "  tail CHANNEL             print the last messages (-n N, default 10);\n"
              "                           --follow keeps printing new ones\n"
              "  pub CHANNEL [MSG|-]      publish MSG, or stdin one message per line (--whole:\n"
              "                           all of stdin as one message)\n"
              "  create CHANNEL           create a channel (--capacity --max-msg --policy\n"
              "                           --max-subscribers --max-publishers)\n"
              "  delete CHANNEL           delete a channel (owner or root)\n"
              "  version                  versions of the CLI and the running daemon\n"
              "\n"
              "Options:\n"
              "  -s, --socket PATH        shmbusd's socket (default $SHMBUS_SOCKET, then\n"
              "                           " SHMBUS_DEFAULT_SOCKET ")\n"
              "  -d, --shm-dir DIR        channel files, read when the daemon is down\n"
              "  -j, --json               JSON output (list, status, stats, version)\n"
              "  -n, --lines N            tail: how many past messages (0: none)\n"
              "  -f, --follow             tail: keep printing new messages until Ctrl-C\n"
              "      --format FMT         tail: text (default), hex or json (one object a line)\n"
              "  -w, --watch              stats: refresh until Ctrl-C\n"
              "  -i, --interval SEC       stats/list: sampling interval (default 1, list 0.25)\n"
              "  -c, --count N            stats --watch: stop after N refreshes\n"
              "      --create             pub: create the channel if it is missing\n"
              "  -t, --timeout MS         pub: how long to wait for space (default 1000)\n"
              "      --no-color           no colours (also: NO_COLOR set, or not a terminal)\n"
              "  -h, --help               this help (also: shmbus-cli VERB --help)\n"
              "\n"
              "Exit codes: 0 ok, 1 failure, 2 usage, 3 no such channel, 4 permission denied,\n"
              "5 channel full (timed out), 7 shmbusd not running.\n",
              f);
}

int main(int argc, char **argv) {
        enum { OPT_FORMAT = 256, OPT_CREATE, OPT_NO_COLOR, OPT_WHOLE, OPT_CAP, OPT_MAXMSG,
               OPT_POLICY, OPT_SUBS, OPT_PUBS };
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"shm-dir", required_argument, NULL, 'd'},
                {"json", no_argument, NULL, 'j'},
                {"lines", required_argument, NULL, 'n'},
                {"follow", no_argument, NULL, 'f'},
                {"format", required_argument, NULL, OPT_FORMAT},
                {"watch", no_argument, NULL, 'w'},
                {"interval", required_argument, NULL, 'i'},
                {"count", required_argument, NULL, 'c'},
                {"create", no_argument, NULL, OPT_CREATE},
                {"whole", no_argument, NULL, OPT_WHOLE},
                {"timeout", required_argument, NULL, 't'},
                {"capacity", required_argument, NULL, OPT_CAP},
                {"max-msg", required_argument, NULL, OPT_MAXMSG},
                {"policy", required_argument, NULL, OPT_POLICY},
                {"max-subscribers", required_argument, NULL, OPT_SUBS},
                {"max-publishers", required_argument, NULL, OPT_PUBS},
                {"no-color", no_argument, NULL, OPT_NO_COLOR},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool follow = false, watch = false, create = false, whole = false, no_color = false;
        bool help = false;
        double interval = -1;
        long lines = 10, count = 0;
        int fmt = FMT_TEXT, timeout_ms = 1000, c, r = 0;
        shmbus_opts *o = NULL;
        const char *verb;
        char *end;

        if (shmbus_opts_new(&o) < 0)
                return EXIT_FAIL;
        while ((c = getopt_long(argc, argv, "s:d:jn:fwi:c:t:h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        arg.socket = optarg;
                        break;
                case 'd':
                        arg.shm_dir = optarg;
                        break;
                case 'j':
                        arg.json = true;
                        break;
                case 'n':
                        lines = strtol(optarg, &end, 10);
                        if (*end || lines < 0 || lines > 1000000)
                                r = -1;
                        break;
                case 'f':
                        follow = true;
                        break;
                case OPT_FORMAT:
                        fmt = !strcmp(optarg, "text") ? FMT_TEXT
                              : !strcmp(optarg, "hex") ? FMT_HEX
                              : !strcmp(optarg, "json") ? FMT_JSON
                                                        : -1;
                        if (fmt < 0)
                                r = -1;
                        break;
                case 'w':
                        watch = true;
                        break;
                case 'i':
                        interval = strtod(optarg, &end);
                        if (*end || interval < 0.01 || interval > 3600)
                                r = -1;
                        break;
                case 'c':
                        count = strtol(optarg, &end, 10);
                        if (*end || count < 1)
                                r = -1;
                        break;
                case OPT_CREATE:
                        create = true;
                        break;
                case OPT_WHOLE:
                        whole = true;
                        break;
                case 't':
                        timeout_ms = (int)strtol(optarg, &end, 10);
                        if (*end || timeout_ms < -1)
                                r = -1;
                        break;
                case OPT_CAP:
                        r = shmbus_opts_set_capacity(o, strtoull(optarg, &end, 0)) < 0 || *end ? -1 : r;
                        break;
                case OPT_MAXMSG:
                        r = shmbus_opts_set_max_msg(o, (uint32_t)strtoul(optarg, &end, 0)) < 0 || *end ? -1 : r;
                        break;
                case OPT_POLICY:
                        r = shmbus_opts_set_policy(o, !strcmp(optarg, "block") ? SHMBUS_POLICY_BLOCK
                                                      : !strcmp(optarg, "overwrite") ? SHMBUS_POLICY_OVERWRITE
                                                                                     : -1) < 0 ? -1 : r;
                        break;
                case OPT_SUBS:
                        r = shmbus_opts_set_max_subscribers(o, (uint32_t)strtoul(optarg, &end, 0)) < 0 || *end ? -1 : r;
                        break;
                case OPT_PUBS:
                        r = shmbus_opts_set_max_publishers(o, (uint32_t)strtoul(optarg, &end, 0)) < 0 || *end ? -1 : r;
                        break;
                case OPT_NO_COLOR:
                        no_color = true;
                        break;
                case 'h':
                        help = true;
                        break;
                default:
                        r = -1;
                }
                if (r < 0) {
                        if (c != '?')
                                err("invalid value '%s' for %s", optarg ? optarg : "",
                                    argv[optind - 1][0] == '-' ? argv[optind - 1] : argv[optind - 2]);
                        fputs("Try 'shmbus-cli --help'.\n", stderr);
                        shmbus_opts_free(o);
                        return EXIT_USAGE;
                }
        }
        arg.color = !no_color && !getenv("NO_COLOR") && isatty(STDOUT_FILENO);
        verb = optind < argc ? argv[optind++] : "list";
        if (help) {
                shmbus_opts_free(o);
                return optind > 1 && argv[optind - 1] == verb ? verb_help(verb) : (usage(stdout), EXIT_OK);
        }

#define NEED_ARGS(min, max)                                                                        \
        do {                                                                                       \
                if (argc - optind < (min) || argc - optind > (max)) {                              \
                        err("%s: wrong number of arguments; try 'shmbus-cli --help'", verb);     \
                        shmbus_opts_free(o);                                                       \
                        return EXIT_USAGE;                                                         \
                }                                                                                  \
        } while (0)

        /* Every verb that takes a CHANNEL takes it first. */
        bool takes_channel = !strcmp(verb, "status") || !strcmp(verb, "tail") ||
                             !strcmp(verb, "pub") || !strcmp(verb, "create") ||
                             !strcmp(verb, "delete");
        if (takes_channel && optind < argc && !shmbus__name_is_valid(argv[optind])) {
                err("'%s' is not a valid channel name", argv[optind]);
                shmbus_opts_free(o);
                return EXIT_USAGE;
        }

        if (!strcmp(verb, "list")) {
                NEED_ARGS(0, 0);
                r = verb_list(interval > 0 ? interval : 0.25);
        } else if (!strcmp(verb, "status")) {
                NEED_ARGS(1, 1);
                r = verb_status(argv[optind]);
        } else if (!strcmp(verb, "stats")) {
                NEED_ARGS(0, 0);
                r = verb_stats(watch, interval > 0 ? interval : 1.0, count);
        } else if (!strcmp(verb, "tail")) {
                NEED_ARGS(1, 1);
                r = verb_tail(argv[optind], lines, follow, fmt);
        } else if (!strcmp(verb, "pub")) {
                NEED_ARGS(1, 2);
                r = verb_pub(argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL, whole, create,
                             timeout_ms);
        } else if (!strcmp(verb, "create")) {
                NEED_ARGS(1, 1);
                r = verb_create(argv[optind], o);
        } else if (!strcmp(verb, "delete")) {
                NEED_ARGS(1, 1);
                r = verb_delete(argv[optind]);
        } else if (!strcmp(verb, "version")) {
                NEED_ARGS(0, 0);
                r = verb_version();
        } else {
                err("unknown verb '%s'; try 'shmbus-cli --help'", verb);
                r = EXIT_USAGE;
        }
        shmbus_opts_free(o);
        return r;
}
