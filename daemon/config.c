/* SPDX-License-Identifier: MIT */
/*
 * Configuration parsing. Unknown keys are errors, not warnings: a typo in a
 * permission rule must not silently widen or narrow access. Every key is
 * recognised by its whole name, and every limit an error message states is
 * the constant the value is checked against.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"

#include "channel.h"
#include "json.h"
#include "layout.h"
#include "log.h"
#include "util.h"
#include "wire.h"

/* Keys of a channel rule that are not geometry. */
#define CONFIG_PUBLISH   "publish"
#define CONFIG_SUBSCRIBE "subscribe"

void config_init_defaults(struct config *c) {
        *c = (struct config){
                .max_channels = CONFIG_DEFAULT_MAX_CHANNELS,
                .max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS,
                .max_connections_per_uid = CONFIG_DEFAULT_MAX_CONNECTIONS_PER_UID,
                .quota_channels_per_uid = CONFIG_DEFAULT_QUOTA_CHANNELS_PER_UID,
                .quota_bytes_per_uid = CONFIG_DEFAULT_QUOTA_BYTES_PER_UID,
                .first_request_timeout_ms = CONFIG_DEFAULT_FIRST_REQUEST_TIMEOUT_MS,
                .unblock_timeout_ms = CONFIG_DEFAULT_UNBLOCK_TIMEOUT_MS,
                .log_level = LOG_INFO,
                .create = {.any = true},
                .grant = {.any = true},
        };
        snprintf(c->shm_dir, sizeof(c->shm_dir), "%s", WIRE_DEFAULT_SHM_DIR);
        snprintf(c->socket_path, sizeof(c->socket_path), "%s", SHMBUS_DEFAULT_SOCKET);
        shmbus__opts_default(&c->defaults);
}

void config_deinit(struct config *c) {
        free(c->rules);
        c->rules = NULL;
        c->n_rules = 0;
}

int config_copy(struct config *dst, const struct config *src) {
        *dst = *src;
        dst->rules = NULL;
        if (src->n_rules) {
                dst->rules = calloc(src->n_rules, sizeof(*dst->rules));
                if (!dst->rules)
                        return -ENOMEM;
                memcpy(dst->rules, src->rules, src->n_rules * sizeof(*dst->rules));
        }
        return 0;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t size, const char *fmt,
                                                      ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int get_u32(const cJSON *v, const char *key, uint64_t max, uint32_t *ret, char *err,
                   size_t size) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)max ||
            v->valuedouble != (double)(uint64_t)v->valuedouble)
                return fail(err, size, "\"%s\": expected a whole number in range (0 to %llu)", key,
                            (unsigned long long)max);
        *ret = (uint32_t)v->valuedouble;
        return 0;
}

static int get_u64(const cJSON *v, const char *key, uint64_t max, uint64_t *ret, char *err,
                   size_t size) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)max ||
            v->valuedouble != (double)(uint64_t)v->valuedouble)
                return fail(err, size, "\"%s\": expected a whole number in range (0 to %llu)", key,
                            (unsigned long long)max);
        *ret = (uint64_t)v->valuedouble;
        return 0;
}

/*
 * A user or group name in an ACL, resolved through NSS now: at load and at
 * every SIGHUP, so a renumbered user takes effect on reload. The daemon is
 * single-threaded, so getpwnam()'s static buffer is safe.
 */
static int resolve_name(const cJSON *id, bool user, const char *key, uint32_t *ret, char *err,
                        size_t size) {
        const char *name = id->valuestring;

        errno = 0;
        if (user) {
                const struct passwd *pw = getpwnam(name);

                if (pw) {
                        *ret = pw->pw_uid;
                        return 0;
                }
        } else {
                const struct group *gr = getgrnam(name);

                if (gr) {
                        *ret = gr->gr_gid;
                        return 0;
                }
        }
        if (errno != 0 && errno != ENOENT && errno != ESRCH && errno != EBADF && errno != EPERM)
                return fail(err, size, "\"%s\": cannot look up %s \"%s\": %s", key,
                            user ? "user" : "group", name, strerror(errno));
        return fail(err, size, "\"%s\": unknown %s \"%s\" (give a %s name or a number)", key,
                    user ? "user" : "group", name, user ? "user" : "group");
}

int config_parse_acl(const void *json, const char *where, bool names, struct acl *a, char *err,
                     size_t size) {
        const cJSON *v = json, *item;
        char key[160];

        *a = (struct acl){0};
        if (cJSON_IsString(v) && strcmp(v->valuestring, "any") == 0) {
                a->any = true;
                return 0;
        }
        if (!cJSON_IsObject(v))
                return fail(err, size,
                            "\"%s\": expected \"any\" or {\"uids\": [...], \"gids\": [...]}",
                            where);
        cJSON_ArrayForEach(item, v) {
                uint32_t *n_ids;
                uint32_t *ids;
                const cJSON *id;
                bool user;

                /* uid_t and gid_t are uint32_t on Linux: one loop fills either list. */
                if (strcmp(item->string, "uids") == 0) {
                        n_ids = &a->n_uids;
                        ids = a->uids;
                        user = true;
                } else if (strcmp(item->string, "gids") == 0) {
                        n_ids = &a->n_gids;
                        ids = a->gids;
                        user = false;
                } else {
                        return fail(err, size, "\"%s\": unknown key \"%s\"", where, item->string);
                }
                snprintf(key, sizeof(key), "%s.%s", where, item->string);
                if (!cJSON_IsArray(item))
                        return fail(err, size, "\"%s\": expected an array of %s", key,
                                    names ? "names or ids" : "ids");
                cJSON_ArrayForEach(id, item) {
                        uint32_t n = 0;

                        if (names && cJSON_IsString(id)) {
                                if (resolve_name(id, user, key, &n, err, size) < 0)
                                        return -EINVAL;
                        } else if (get_u32(id, key, UINT32_MAX - 1, &n, err, size) < 0) {
                                if (names)
                                        return fail(err, size,
                                                    "\"%s\": expected %s names or whole numbers "
                                                    "(0 to %u)",
                                                    key, user ? "user" : "group", UINT32_MAX - 1);
                                return -EINVAL;
                        }
                        if (*n_ids >= CONFIG_ACL_MAX)
                                return fail(err, size, "\"%s\": too many ids (at most %d)", key,
                                            CONFIG_ACL_MAX);
                        ids[(*n_ids)++] = n;
                }
        }
        return 0;
}

static int parse_capacity(const cJSON *item, const char *key, uint64_t *ret, char *err,
                          size_t size) {
        uint64_t cap;

        if (!cJSON_IsNumber(item) || item->valuedouble < (double)SHMBUS_DATA_MIN ||
            item->valuedouble > (double)SHMBUS_DATA_MAX)
                goto bad;
        cap = (uint64_t)item->valuedouble;
        if (cap & (cap - 1))
                goto bad;
        *ret = cap;
        return 0;
bad:
        return fail(err, size, "\"%s\": expected a power of two from %llu to %llu", key,
                    (unsigned long long)SHMBUS_DATA_MIN, (unsigned long long)SHMBUS_DATA_MAX);
}

static int parse_slots(const cJSON *item, const char *key, uint32_t *ret, char *err, size_t size) {
        uint32_t v = 0;

        if (get_u32(item, key, SHMBUS_SLOTS_MAX, &v, err, size) < 0 || v == 0)
                return fail(err, size, "\"%s\": expected 1 to %d", key, SHMBUS_SLOTS_MAX);
        *ret = v;
        return 0;
}

int config_parse_geom(const void *json_obj, struct shmbus_ring_geom *g, const char *where,
                      char *err, size_t size) {
        const cJSON *obj = json_obj, *item;
        bool max_msg_given = cJSON_GetObjectItemCaseSensitive(obj, WIRE_MAX_MSG) != NULL;
        char key[128];
        int r = 0;

        cJSON_ArrayForEach(item, obj) {
                const char *k = item->string;
                uint32_t v = 0;

                snprintf(key, sizeof(key), "%s%s", where, k);
                if (strcmp(k, WIRE_CAPACITY) == 0) {
                        r = parse_capacity(item, key, &g->data_size, err, size);
                        /* Unless given, the largest message follows the capacity. */
                        if (r == 0 && !max_msg_given && g->max_msg > g->data_size / 4)
                                g->max_msg = (uint32_t)(g->data_size / 4);
                } else if (strcmp(k, WIRE_MAX_MSG) == 0) {
                        if (get_u32(item, key, SHMBUS_DATA_MAX / 4, &v, err, size) < 0 || v == 0)
                                return fail(err, size,
                                            "\"%s\": expected 1 .. a quarter of the capacity", key);
                        g->max_msg = v;
                } else if (strcmp(k, WIRE_POLICY) == 0) {
                        if (cJSON_IsString(item) &&
                            strcmp(item->valuestring, WIRE_POLICY_BLOCK) == 0)
                                g->policy = SHMBUS_POLICY_BLOCK;
                        else if (cJSON_IsString(item) &&
                                 strcmp(item->valuestring, WIRE_POLICY_OVERWRITE) == 0)
                                g->policy = SHMBUS_POLICY_OVERWRITE;
                        else
                                return fail(err, size, "\"%s\": expected \"%s\" or \"%s\"", key,
                                            WIRE_POLICY_BLOCK, WIRE_POLICY_OVERWRITE);
                } else if (strcmp(k, WIRE_MAX_SUBSCRIBERS) == 0) {
                        r = parse_slots(item, key, &g->max_subs, err, size);
                } else if (strcmp(k, WIRE_MAX_PUBLISHERS) == 0) {
                        r = parse_slots(item, key, &g->max_pubs, err, size);
                } else if (strcmp(k, CONFIG_PUBLISH) != 0 && strcmp(k, CONFIG_SUBSCRIBE) != 0 &&
                           strcmp(k, WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS) != 0) {
                        /*
                         * A rule's ACLs and its slow-subscriber timeout sit beside its
                         * geometry; parse_rule and config_parse_slow_subscriber_timeout
                         * read them.
                         */
                        return fail(err, size, "\"%s\": unknown key", key);
                }
                if (r < 0)
                        return r;
        }
        if (shmbus__ring_geom_check(g) < 0)
                return fail(err, size,
                            "\"%s\": max_msg %u must be at most a quarter of capacity %llu (%llu)",
                            where, g->max_msg, (unsigned long long)g->data_size,
                            (unsigned long long)g->data_size / 4);
        return 0;
}

int config_parse_slow_subscriber_timeout(const void *json_obj, const char *where, bool *ret_has,
                                         uint32_t *ret_ms, char *err, size_t size) {
        const cJSON *v =
                cJSON_GetObjectItemCaseSensitive(json_obj, WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS);
        char key[128];

        *ret_has = false;
        if (!v)
                return 0;
        snprintf(key, sizeof(key), "%s%s", where, WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS);
        if (get_u32(v, key, CONFIG_TIMEOUT_MAX, ret_ms, err, size) < 0)
                return -EINVAL;
        *ret_has = true;
        return 0;
}

/* The rule for channel @item->string: its geometry over the defaults, then its ACLs. */
static int parse_rule(const struct config *c, const cJSON *item, struct channel_rule *r, char *err,
                      size_t size) {
        char where[128];
        const cJSON *acl;
        int ret;

        if (!shmbus__name_is_valid(item->string))
                return fail(err, size, "\"channels.%s\": not a valid channel name", item->string);
        if (!cJSON_IsObject(item))
                return fail(err, size, "\"channels.%s\": expected an object", item->string);
        snprintf(r->name, sizeof(r->name), "%s", item->string);
        r->geom = c->defaults;
        snprintf(where, sizeof(where), "channels.%s.", item->string);
        ret = config_parse_geom(item, &r->geom, where, err, size);
        if (ret < 0)
                return ret;
        ret = config_parse_slow_subscriber_timeout(item, where, &r->has_slow_subscriber_timeout,
                                                   &r->slow_subscriber_timeout_ms, err, size);
        if (ret < 0)
                return ret;
        acl = cJSON_GetObjectItemCaseSensitive(item, CONFIG_PUBLISH);
        if (acl) {
                r->has_publish = true;
                snprintf(where, sizeof(where), "channels.%s.%s", item->string, CONFIG_PUBLISH);
                if (config_parse_acl(acl, where, true, &r->publish, err, size) < 0)
                        return -EINVAL;
        }
        acl = cJSON_GetObjectItemCaseSensitive(item, CONFIG_SUBSCRIBE);
        if (acl) {
                r->has_subscribe = true;
                snprintf(where, sizeof(where), "channels.%s.%s", item->string, CONFIG_SUBSCRIBE);
                if (config_parse_acl(acl, where, true, &r->subscribe, err, size) < 0)
                        return -EINVAL;
        }
        return 0;
}

static int parse_rules(struct config *c, const cJSON *v, char *err, size_t size) {
        const cJSON *item;
        int n = cJSON_GetArraySize(v);

        if (!cJSON_IsObject(v))
                return fail(err, size,
                            "\"channels\": expected an object of channel name -> settings");
        if (n > CONFIG_CHANNELS_MAX)
                return fail(err, size, "\"channels\": too many entries (at most %d)",
                            CONFIG_CHANNELS_MAX);
        c->rules = calloc((size_t)n + 1, sizeof(*c->rules));
        if (!c->rules)
                return -ENOMEM;
        cJSON_ArrayForEach(item, v) {
                int r = parse_rule(c, item, &c->rules[c->n_rules], err, size);

                if (r < 0)
                        return r;
                c->n_rules++;
        }
        return 0;
}

static int parse_path(const cJSON *item, const char *key, char *dst, size_t dst_size, char *err,
                      size_t size) {
        if (!cJSON_IsString(item) || item->valuestring[0] != '/' ||
            strlen(item->valuestring) >= dst_size)
                return fail(err, size, "\"%s\": expected an absolute path", key);
        snprintf(dst, dst_size, "%s", item->valuestring);
        return 0;
}

static int parse_log_level(const cJSON *item, const char *key, int *ret, char *err, size_t size) {
        int level = cJSON_IsString(item) ? log_level_from_string(item->valuestring) : -EINVAL;

        if (level < LOG_ERR)
                return fail(err, size,
                            "\"%s\": expected \"err\", \"warning\", \"notice\", \"info\" or "
                            "\"debug\"",
                            key);
        *ret = level;
        return 0;
}

static int parse_key(struct config *c, const cJSON *item, char *err, size_t size) {
        /* The keys that are a number up to a limit. */
        const struct {
                const char *key;
                uint32_t *field;
                uint32_t max;
        } numbers[] = {
                {"max_channels", &c->max_channels, CONFIG_COUNT_MAX},
                {"max_connections", &c->max_connections, CONFIG_COUNT_MAX},
                {"max_connections_per_uid", &c->max_connections_per_uid, CONFIG_COUNT_MAX},
                {"first_request_timeout_ms", &c->first_request_timeout_ms, CONFIG_TIMEOUT_MAX},
                {"unblock_timeout_ms", &c->unblock_timeout_ms, CONFIG_TIMEOUT_MAX},
                {"quota_channels_per_uid", &c->quota_channels_per_uid, CONFIG_COUNT_MAX},
                {WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS, &c->slow_subscriber_timeout_ms,
                 CONFIG_TIMEOUT_MAX},
        };
        const char *k = item->string;

        if (strcmp(k, "shm_dir") == 0)
                return parse_path(item, k, c->shm_dir, sizeof(c->shm_dir), err, size);
        if (strcmp(k, "socket") == 0)
                return parse_path(item, k, c->socket_path, sizeof(c->socket_path), err, size);
        if (strcmp(k, "quota_bytes_per_uid") == 0)
                return get_u64(item, k, CONFIG_QUOTA_BYTES_MAX, &c->quota_bytes_per_uid, err, size);
        for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
                if (strcmp(k, numbers[i].key) == 0)
                        return get_u32(item, k, numbers[i].max, numbers[i].field, err, size);
        if (strcmp(k, "defaults") == 0)
                return cJSON_IsObject(item)
                               ? config_parse_geom(item, &c->defaults, "defaults.", err, size)
                               : fail(err, size, "\"%s\": expected an object", k);
        if (strcmp(k, "create") == 0)
                return config_parse_acl(item, k, true, &c->create, err, size);
        if (strcmp(k, "grant") == 0)
                return config_parse_acl(item, k, true, &c->grant, err, size);
        if (strcmp(k, "log_level") == 0)
                return parse_log_level(item, k, &c->log_level, err, size);
        return fail(err, size, "\"%s\": unknown key", k);
}

int config_parse(struct config *c, const char *text, char *err, size_t size) {
        _cleanup_cjson_ cJSON *root = cJSON_Parse(text);
        const cJSON *item, *rules = NULL;
        int r;

        if (!root || !cJSON_IsObject(root))
                return fail(err, size, "not a JSON object (near: %.20s)",
                            cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "start");
        cJSON_ArrayForEach(item, root) {
                if (strcmp(item->string, "channels") == 0) {
                        rules = item; /* after "defaults", whatever the key order */
                        continue;
                }
                r = parse_key(c, item, err, size);
                if (r < 0)
                        return r;
        }
        return rules ? parse_rules(c, rules, err, size) : 0;
}

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

int config_load(struct config *c, const char *path, char *err, size_t size) {
        _cleanup_free_ char *text = NULL;
        _cleanup_(fclosep) FILE *f = NULL;
        long n;

        f = fopen(path, "re");
        if (!f) {
                snprintf(err, size, "%s: %s", path, strerror(errno));
                return -errno;
        }
        if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || n > CONFIG_FILE_MAX ||
            fseek(f, 0, SEEK_SET) < 0) {
                snprintf(err, size, "%s: unreadable or larger than %d MiB", path,
                         CONFIG_FILE_MAX >> 20);
                return -EFBIG;
        }
        text = calloc(1, (size_t)n + 1);
        if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
                snprintf(err, size, "%s: read error", path);
                return -EIO;
        }
        return config_parse(c, text, err, size);
}

const struct channel_rule *config_rule(const struct config *c, const char *name) {
        for (uint32_t i = 0; i < c->n_rules; i++)
                if (strcmp(c->rules[i].name, name) == 0)
                        return &c->rules[i];
        return NULL;
}

bool acl_is_empty(const struct acl *a) {
        return !a->any && a->n_uids == 0 && a->n_gids == 0;
}

bool acl_allows(const struct acl *a, const struct who *w) {
        if (w->uid == 0 || a->any)
                return true;
        for (uint32_t i = 0; i < a->n_uids; i++)
                if (a->uids[i] == w->uid)
                        return true;
        for (uint32_t i = 0; i < a->n_gids; i++) {
                if (a->gids[i] == w->gid)
                        return true;
                for (uint32_t j = 0; j < w->n_groups; j++)
                        if (a->gids[i] == w->groups[j])
                                return true;
        }
        return false;
}
