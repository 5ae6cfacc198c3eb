/* SPDX-License-Identifier: MIT */
/*
 * shmbusd configuration: built-in defaults, overridden by an optional JSON file
 * (docs/CONFIG.md). Parsing validates every key and names the bad one; a
 * struct config that parsed is within every limit below.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ring.h"

#define CONFIG_ACL_MAX      32            /* uids, and gids, in one rule */
#define CONFIG_CHANNELS_MAX 256           /* entries in "channels" */
#define CONFIG_FILE_MAX     (1 << 20)     /* bytes of a configuration file */
#define CONFIG_COUNT_MAX    65536         /* max_channels, max_connections(_per_uid) */
#define CONFIG_TIMEOUT_MAX  (3600 * 1000) /* ms: first_request_timeout_ms, unblock_timeout_ms */

/* The defaults of the limits (docs/CONFIG.md). */
#define CONFIG_DEFAULT_MAX_CHANNELS             256
#define CONFIG_DEFAULT_MAX_CONNECTIONS          256
#define CONFIG_DEFAULT_MAX_CONNECTIONS_PER_UID  128
#define CONFIG_DEFAULT_FIRST_REQUEST_TIMEOUT_MS 5000
#define CONFIG_DEFAULT_UNBLOCK_TIMEOUT_MS       2000
/*
 * What one uid other than root and the daemon's own may hold (quota.h): enough
 * for a few dozen ordinary channels, far from what would pin a host's memory.
 */
#define CONFIG_DEFAULT_QUOTA_CHANNELS_PER_UID 32
#define CONFIG_DEFAULT_QUOTA_BYTES_PER_UID    (UINT64_C(256) << 20)
#define CONFIG_QUOTA_BYTES_MAX                (UINT64_C(1) << 50)

/*
 * Who may do something: any user, or listed uids and gids (a gid matches a
 * peer's primary group or any of its supplementary groups). Root always may.
 */
struct acl {
        bool any;
        uint32_t n_uids, n_gids;
        uid_t uids[CONFIG_ACL_MAX];
        gid_t gids[CONFIG_ACL_MAX];
};

/* Who asks: a peer's uid, primary gid and supplementary gids (SO_PEERGROUPS). */
struct who {
        uid_t uid;
        gid_t gid;
        const gid_t *groups;
        uint32_t n_groups;
};

struct channel_rule {
        char name[SHMBUS_NAME_MAX + 1];
        struct shmbus_ring_geom geom;
        bool has_publish, has_subscribe;
        bool has_slow_subscriber_timeout;
        uint32_t slow_subscriber_timeout_ms;
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
        uint32_t quota_channels_per_uid;
        uint64_t quota_bytes_per_uid;
        uint32_t slow_subscriber_timeout_ms; /* block channels: evict after this; 0: never */
        int log_level; /* LOG_ERR .. LOG_DEBUG: less urgent lines are dropped */
        struct shmbus_ring_geom defaults;
        struct acl create;
        struct acl grant; /* who may grant others access to a channel they create */
        uint32_t n_rules;
        struct channel_rule *rules;
};

void config_init_defaults(struct config *c);
void config_deinit(struct config *c);
/* Make @dst a deep copy of @src (which stays the caller's). */
int config_copy(struct config *dst, const struct config *src);
/* Parse @text into @c (which holds defaults). On error, @err says which key and why. */
int config_parse(struct config *c, const char *text, char *err, size_t err_size);
int config_load(struct config *c, const char *path, char *err, size_t err_size);
const struct channel_rule *config_rule(const struct config *c, const char *name);
bool acl_allows(const struct acl *a, const struct who *w);
/* Does @a name nobody (so that it allows root alone)? */
bool acl_is_empty(const struct acl *a);
/*
 * Parse the ACL @json ("any", or {"uids": [...], "gids": [...]}) into @a; @where
 * names it in errors. With @names, a list may hold user and group names as
 * well as numbers, resolved now (an unknown name is an error); without, only
 * numbers (requests and the daemon's own files never name users).
 */
int config_parse_acl(const void *json, const char *where, bool names, struct acl *a, char *err,
                     size_t err_size);
/*
 * The "slow_subscriber_timeout_ms" of a rule or create object @json_obj, if
 * it has one (*@ret_has); config_parse_geom() leaves that key to this.
 */
int config_parse_slow_subscriber_timeout(const void *json_obj, const char *where, bool *ret_has,
                                         uint32_t *ret_ms, char *err, size_t err_size);
int config_parse_geom(const void *json_obj, struct shmbus_ring_geom *g, const char *where,
                      char *err, size_t err_size);
