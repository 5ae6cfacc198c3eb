/* SPDX-License-Identifier: MIT */
/*
 * shmbusd configuration: built-in defaults, overridden by an optional JSON file
 * (docs/CONFIG.md). Parsing validates every key and names the bad one.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ring.h"

#define CONFIG_ACL_MAX      32
#define CONFIG_CHANNELS_MAX 256

/* Who may do something: any user, or listed uids and gids. Root always may. */
struct acl {
        bool any;
        uint32_t n_uids, n_gids;
        uid_t uids[CONFIG_ACL_MAX];
        gid_t gids[CONFIG_ACL_MAX];
};

struct channel_rule {
        char name[SHMBUS_NAME_MAX + 1];
        struct shmbus_ring_geom geom;
        bool has_publish, has_subscribe;
        struct acl publish;
        struct acl subscribe;
};

struct config {
        char shm_dir[256];
        char socket_path[108];
        uint32_t max_channels;
        uint32_t max_connections;
        uint32_t max_connections_per_uid;
        uint32_t first_request_timeout_ms;
        uint32_t unblock_timeout_ms;
        struct shmbus_ring_geom defaults;
        struct acl create;
        uint32_t n_rules;
        struct channel_rule *rules;
};

void config_init_defaults(struct config *c);
void config_deinit(struct config *c);
/* Parse @text into @c (which holds defaults). On error, @err says which key and why. */
int config_parse(struct config *c, const char *text, char *err, size_t err_size);
int config_load(struct config *c, const char *path, char *err, size_t err_size);
const struct channel_rule *config_rule(const struct config *c, const char *name);
bool acl_allows(const struct acl *a, uid_t uid, gid_t gid);
int config_parse_geom(const void *json_obj, struct shmbus_ring_geom *g, const char *where,
                      char *err, size_t err_size);
