/* SPDX-License-Identifier: MIT */
/*
 * See grants.h. A grant is an ACL per role, in the configuration's shape, so
 * that one parser and one matcher (config.h) serve the configuration, the
 * requests and the meta files alike.
 */
#include "grants.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shmbus.h"

#include "wire.h"

/* What a client may grant (shmbus.h) fits what the daemon keeps. */
static_assert(SHMBUS_GRANTS_MAX <= CONFIG_ACL_MAX, "grants must fit an ACL");

bool grants_is_empty(const struct grants *g) {
        return acl_is_empty(&g->publish) && acl_is_empty(&g->subscribe);
}

bool grants_allow(const struct grants *g, bool publish, const struct who *w) {
        const struct acl *a = publish ? &g->publish : &g->subscribe;

        /* An empty grant allows nobody; acl_allows() would let root in, which is no grant. */
        return !acl_is_empty(a) && acl_allows(a, w);
}

int grants_parse(const cJSON *json, const char *where, struct grants *g, char *err,
                 size_t err_size) {
        const cJSON *item;
        char key[160];

        *g = (struct grants){0};
        if (!cJSON_IsObject(json)) {
                snprintf(err, err_size, "\"%s\": expected {\"%s\": ..., \"%s\": ...}", where,
                         WIRE_GRANT_PUBLISH, WIRE_GRANT_SUBSCRIBE);
                return -EINVAL;
        }
        cJSON_ArrayForEach(item, json) {
                struct acl *a;

                if (strcmp(item->string, WIRE_GRANT_PUBLISH) == 0) {
                        a = &g->publish;
                } else if (strcmp(item->string, WIRE_GRANT_SUBSCRIBE) == 0) {
                        a = &g->subscribe;
                } else {
                        snprintf(err, err_size,
                                 "\"%s\": unknown key \"%s\" (expected \"%s\" or \"%s\")", where,
                                 item->string, WIRE_GRANT_PUBLISH, WIRE_GRANT_SUBSCRIBE);
                        return -EINVAL;
                }
                snprintf(key, sizeof(key), "%s.%s", where, item->string);
                if (config_parse_acl(item, key, false, a, err, err_size) < 0)
                        return -EINVAL;
        }
        return 0;
}

static cJSON *acl_json(const struct acl *a) {
        cJSON *o, *uids, *gids;

        if (a->any)
                return cJSON_CreateString(WIRE_ANY);
        o = cJSON_CreateObject();
        uids = cJSON_AddArrayToObject(o, WIRE_UIDS);
        gids = cJSON_AddArrayToObject(o, WIRE_GIDS);
        if (!uids || !gids) {
                cJSON_Delete(o);
                return NULL;
        }
        for (uint32_t i = 0; i < a->n_uids; i++)
                cJSON_AddItemToArray(uids, cJSON_CreateNumber(a->uids[i]));
        for (uint32_t i = 0; i < a->n_gids; i++)
                cJSON_AddItemToArray(gids, cJSON_CreateNumber(a->gids[i]));
        return o;
}

int grants_add_json(cJSON *o, const char *key, const struct grants *g) {
        cJSON *obj, *pub, *sub;

        if (grants_is_empty(g))
                return 0;
        obj = cJSON_AddObjectToObject(o, key);
        if (!obj)
                return -ENOMEM;
        if (!acl_is_empty(&g->publish)) {
                pub = acl_json(&g->publish);
                if (!pub || !cJSON_AddItemToObject(obj, WIRE_GRANT_PUBLISH, pub))
                        return cJSON_Delete(pub), -ENOMEM;
        }
        if (!acl_is_empty(&g->subscribe)) {
                sub = acl_json(&g->subscribe);
                if (!sub || !cJSON_AddItemToObject(obj, WIRE_GRANT_SUBSCRIBE, sub))
                        return cJSON_Delete(sub), -ENOMEM;
        }
        return 0;
}
