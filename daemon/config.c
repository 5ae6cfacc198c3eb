/* SPDX-License-Identifier: MIT */
/*
 * Configuration parsing. Unknown keys are errors, not warnings: a typo in a
 * permission rule must not silently widen or narrow access.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "config.h"
#include "util.h"

void config_init_defaults(struct config *c) {
        *c = (struct config){
                .max_channels = 256,
                .max_connections = 256,
                .max_connections_per_uid = 128,
                .first_request_timeout_ms = 5000,
                .unblock_timeout_ms = 2000,
                .create = {.any = true},
        };
        snprintf(c->shm_dir, sizeof(c->shm_dir), "/dev/shm/shmbus");
        snprintf(c->socket_path, sizeof(c->socket_path), "/run/shmbus/shmbusd.sock");
        shmbus__opts_default(&c->defaults);
}

void config_deinit(struct config *c) {
        free(c->rules);
        c->rules = NULL;
        c->n_rules = 0;
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
                return fail(err, size, "\"%s\": expected a whole number in range", key);
        *ret = (uint32_t)v->valuedouble;
        return 0;
}

static int parse_acl(const cJSON *v, const char *key, struct acl *a, char *err, size_t size) {
        const cJSON *item;

        *a = (struct acl){0};
        if (cJSON_IsString(v) && strcmp(v->valuestring, "any") == 0) {
                a->any = true;
                return 0;
        }
        if (!cJSON_IsObject(v))
                return fail(err, size, "\"%s\": expected \"any\" or {\"uids\": [...], \"gids\": [...]}%s",
                            key, "");
        cJSON_ArrayForEach(item, v) {
                bool uids = strcmp(item->string, "uids") == 0;
                const cJSON *id;

                if (!uids && strcmp(item->string, "gids") != 0)
                        return fail(err, size, "\"%s\": unknown key \"%s\"", key, item->string);
                if (!cJSON_IsArray(item))
                        return fail(err, size, "\"%s.%s\": expected an array of ids", key,
                                    item->string);
                cJSON_ArrayForEach(id, item) {
                        uint32_t n = 0;

                        if (get_u32(id, item->string, UINT32_MAX - 1, &n, err, size) < 0)
                                return -EINVAL;
                        if ((uids ? a->n_uids : a->n_gids) >= CONFIG_ACL_MAX)
                                return fail(err, size, "\"%s.%s\": too many ids", key, item->string);
                        if (uids)
                                a->uids[a->n_uids++] = n;
                        else
                                a->gids[a->n_gids++] = n;
                }
        }
        return 0;
}

int config_parse_geom(const void *json_obj, struct shmbus_ring_geom *g, const char *where,
                      char *err, size_t size) {
        const cJSON *obj = json_obj, *item;
        bool max_msg_given = cJSON_GetObjectItemCaseSensitive(obj, "max_msg") != NULL;
        char key[128];

        cJSON_ArrayForEach(item, obj) {
                const char *k = item->string;
                uint32_t v = 0;

                snprintf(key, sizeof(key), "%s%s", where, k);
                if (strcmp(k, "capacity") == 0) {
                        uint64_t cap;

                        if (!cJSON_IsNumber(item) || item->valuedouble < SHMBUS_DATA_MIN ||
                            item->valuedouble > SHMBUS_DATA_MAX)
                                return fail(err, size, "\"%s\": expected a power of two from 4096 to 1073741824", key);
                        cap = (uint64_t)item->valuedouble;
                        if (cap & (cap - 1))
                                return fail(err, size, "\"%s\": expected a power of two from 4096 to 1073741824", key);
                        g->data_size = cap;
                        /* Unless given, the largest message follows the capacity. */
                        if (!max_msg_given && g->max_msg > cap / 4)
                                g->max_msg = (uint32_t)(cap / 4);
                } else if (strcmp(k, "max_msg") == 0) {
                        if (get_u32(item, key, SHMBUS_DATA_MAX / 4, &v, err, size) < 0 || v == 0)
                                return fail(err, size, "\"%s\": expected 1 .. a quarter of the capacity", key);
                        g->max_msg = v;
                } else if (strcmp(k, "policy") == 0) {
                        if (cJSON_IsString(item) && strcmp(item->valuestring, "block") == 0)
                                g->policy = SHMBUS_POLICY_BLOCK;
                        else if (cJSON_IsString(item) && strcmp(item->valuestring, "overwrite") == 0)
                                g->policy = SHMBUS_POLICY_OVERWRITE;
                        else
                                return fail(err, size, "\"%s\": expected \"block\" or \"overwrite\"", key);
                } else if (strcmp(k, "max_subscribers") == 0 || strcmp(k, "max_publishers") == 0) {
                        if (get_u32(item, key, SHMBUS_SLOTS_MAX, &v, err, size) < 0 || v == 0)
                                return fail(err, size, "\"%s\": expected 1 to 1024", key);
                        if (k[4] == 's')
                                g->max_subs = v;
                        else
                                g->max_pubs = v;
                } else if (strcmp(k, "publish") != 0 && strcmp(k, "subscribe") != 0) {
                        return fail(err, size, "\"%s\": unknown key", key);
                }
        }
        if (shmbus__ring_geom_check(g) < 0)
                return fail(err, size, "\"%s\": max_msg must be at most a quarter of capacity%s",
                            where, "");
        return 0;
}

static int parse_rules(struct config *c, const cJSON *v, char *err, size_t size) {
        const cJSON *item;
        int n = cJSON_GetArraySize(v);

        if (!cJSON_IsObject(v))
                return fail(err, size, "\"channels\": expected an object of channel name -> settings");
        if (n > CONFIG_CHANNELS_MAX)
                return fail(err, size, "\"channels\": too many entries");
        c->rules = calloc((size_t)n + 1, sizeof(*c->rules));
        if (!c->rules)
                return -ENOMEM;
        cJSON_ArrayForEach(item, v) {
                struct channel_rule *r = &c->rules[c->n_rules];
                char where[128];
                const cJSON *acl;
                int ret;

                if (!shmbus__name_is_valid(item->string))
                        return fail(err, size, "\"channels.%s\": not a valid channel name%s",
                                    item->string, "");
                if (!cJSON_IsObject(item))
                        return fail(err, size, "\"channels.%s\": expected an object%s",
                                    item->string, "");
                snprintf(r->name, sizeof(r->name), "%s", item->string);
                r->geom = c->defaults;
                snprintf(where, sizeof(where), "channels.%s.", item->string);
                ret = config_parse_geom(item, &r->geom, where, err, size);
                if (ret < 0)
                        return ret;
                acl = cJSON_GetObjectItemCaseSensitive(item, "publish");
                if (acl) {
                        r->has_publish = true;
                        if (parse_acl(acl, "publish", &r->publish, err, size) < 0)
                                return -EINVAL;
                }
                acl = cJSON_GetObjectItemCaseSensitive(item, "subscribe");
                if (acl) {
                        r->has_subscribe = true;
                        if (parse_acl(acl, "subscribe", &r->subscribe, err, size) < 0)
                                return -EINVAL;
                }
                c->n_rules++;
        }
        return 0;
}

int config_parse(struct config *c, const char *text, char *err, size_t size) {
        cJSON *root = cJSON_Parse(text);
        const cJSON *item, *rules = NULL;
        int r = 0;

        if (!root || !cJSON_IsObject(root)) {
                cJSON_Delete(root);
                return fail(err, size, "not a JSON object (near: %.20s)",
                            cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "start");
        }
        cJSON_ArrayForEach(item, root) {
                const char *k = item->string;

                if (strcmp(k, "shm_dir") == 0 || strcmp(k, "socket") == 0) {
                        bool dir = k[1] == 'h';
                        size_t max = dir ? sizeof(c->shm_dir) : sizeof(c->socket_path);

                        if (!cJSON_IsString(item) || item->valuestring[0] != '/' ||
                            strlen(item->valuestring) >= max) {
                                r = fail(err, size, "\"%s\": expected an absolute path", k);
                                break;
                        }
                        snprintf(dir ? c->shm_dir : c->socket_path, max, "%s", item->valuestring);
                } else if (strcmp(k, "max_channels") == 0) {
                        r = get_u32(item, k, 65536, &c->max_channels, err, size);
                } else if (strcmp(k, "max_connections") == 0) {
                        r = get_u32(item, k, 65536, &c->max_connections, err, size);
                } else if (strcmp(k, "max_connections_per_uid") == 0) {
                        r = get_u32(item, k, 65536, &c->max_connections_per_uid, err, size);
                } else if (strcmp(k, "first_request_timeout_ms") == 0) {
                        r = get_u32(item, k, 3600 * 1000, &c->first_request_timeout_ms, err, size);
                } else if (strcmp(k, "unblock_timeout_ms") == 0) {
                        r = get_u32(item, k, 3600 * 1000, &c->unblock_timeout_ms, err, size);
                } else if (strcmp(k, "defaults") == 0) {
                        r = cJSON_IsObject(item)
                                    ? config_parse_geom(item, &c->defaults, "defaults.", err, size)
                                    : fail(err, size, "\"%s\": expected an object", k);
                } else if (strcmp(k, "create") == 0) {
                        r = parse_acl(item, k, &c->create, err, size);
                } else if (strcmp(k, "channels") == 0) {
                        rules = item; /* after "defaults", whatever the key order */
                } else {
                        r = fail(err, size, "\"%s\": unknown key", k);
                }
                if (r < 0)
                        break;
        }
        if (r == 0 && rules)
                r = parse_rules(c, rules, err, size);
        cJSON_Delete(root);
        return r;
}

int config_load(struct config *c, const char *path, char *err, size_t size) {
        _cleanup_free_ char *text = NULL;
        FILE *f;
        long n;

        f = fopen(path, "re");
        if (!f) {
                snprintf(err, size, "%s: %s", path, strerror(errno));
                return -errno;
        }
        if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || n > 1 << 20 ||
            fseek(f, 0, SEEK_SET) < 0) {
                fclose(f);
                snprintf(err, size, "%s: unreadable or larger than 1 MiB", path);
                return -EFBIG;
        }
        text = calloc(1, (size_t)n + 1);
        if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
                fclose(f);
                snprintf(err, size, "%s: read error", path);
                return -EIO;
        }
        fclose(f);
        return config_parse(c, text, err, size);
}

const struct channel_rule *config_rule(const struct config *c, const char *name) {
        for (uint32_t i = 0; i < c->n_rules; i++)
                if (strcmp(c->rules[i].name, name) == 0)
                        return &c->rules[i];
        return NULL;
}

bool acl_allows(const struct acl *a, uid_t uid, gid_t gid) {
        if (uid == 0 || a->any)
                return true;
        for (uint32_t i = 0; i < a->n_uids; i++)
                if (a->uids[i] == uid)
                        return true;
        for (uint32_t i = 0; i < a->n_gids; i++)
                if (a->gids[i] == gid)
                        return true;
        return false;
}
