/* SPDX-License-Identifier: MIT */
/*
 * The options object (opts.h). Each setter checks its own argument's range;
 * rules that tie fields together (max_msg at most a quarter of the capacity)
 * are checked once, by shmbus__ring_geom_check(), when the channel is made.
 *
 * Invariant: unless max_msg was set explicitly, it follows the capacity (a
 * quarter of it, at most DEFAULT_MAX_MSG), so setting only a small capacity
 * still gives valid options.
 */
#include "opts.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "shmbus.h"

#include "alloc.h"

#define DEFAULT_CAPACITY (UINT64_C(1) << 20)
#define DEFAULT_MAX_MSG  (64u * 1024)
#define DEFAULT_SLOTS    16u

struct shmbus_opts {
        struct shmbus_ring_geom geom;
        bool max_msg_set; /* otherwise max_msg follows the capacity */
        uint32_t n_uids, n_gids;
        struct shmbus__grant uids[SHMBUS_GRANTS_MAX]; /* each id once, its roles ORed */
        struct shmbus__grant gids[SHMBUS_GRANTS_MAX];
        bool slow_subscriber_timeout_set;
        uint32_t slow_subscriber_timeout_ms;
};

void shmbus__opts_default(struct shmbus_ring_geom *g) {
        *g = (struct shmbus_ring_geom){
                .data_size = DEFAULT_CAPACITY,
                .max_msg = DEFAULT_MAX_MSG,
                .policy = SHMBUS_POLICY_BLOCK,
                .max_subs = DEFAULT_SLOTS,
                .max_pubs = DEFAULT_SLOTS,
        };
}

const struct shmbus_ring_geom *shmbus__opts_geom(const shmbus_opts *opts) {
        return &opts->geom;
}

bool shmbus__opts_slow_subscriber_timeout(const shmbus_opts *opts, uint32_t *ret_ms) {
        *ret_ms = opts->slow_subscriber_timeout_ms;
        return opts->slow_subscriber_timeout_set;
}

SHMBUS_EXPORT int shmbus_opts_set_slow_subscriber_timeout(shmbus_opts *opts, uint32_t ms) {
        /* The daemon's bound (config.h CONFIG_TIMEOUT_MAX): an hour. */
        if (!opts || ms > 3600u * 1000)
                return -EINVAL;
        opts->slow_subscriber_timeout_ms = ms;
        opts->slow_subscriber_timeout_set = true;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_new(shmbus_opts **ret_opts) {
        shmbus_opts *o;

        if (!ret_opts)
                return -EINVAL;
        o = shmbus__calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        shmbus__opts_default(&o->geom);
        *ret_opts = o;
        return 0;
}

SHMBUS_EXPORT shmbus_opts *shmbus_opts_free(shmbus_opts *opts) {
        free(opts);
        return NULL;
}

SHMBUS_EXPORT int shmbus_opts_set_capacity(shmbus_opts *opts, uint64_t bytes) {
        if (!opts || bytes < SHMBUS_DATA_MIN || bytes > SHMBUS_DATA_MAX || (bytes & (bytes - 1)))
                return -EINVAL;
        opts->geom.data_size = bytes;
        if (!opts->max_msg_set)
                opts->geom.max_msg =
                        (uint32_t)(bytes / 4 < DEFAULT_MAX_MSG ? bytes / 4 : DEFAULT_MAX_MSG);
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_max_msg(shmbus_opts *opts, uint32_t bytes) {
        if (!opts || bytes < 1 || bytes > SHMBUS_DATA_MAX / 4)
                return -EINVAL;
        opts->geom.max_msg = bytes;
        opts->max_msg_set = true;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_policy(shmbus_opts *opts, int policy) {
        if (!opts || (policy != SHMBUS_POLICY_BLOCK && policy != SHMBUS_POLICY_OVERWRITE))
                return -EINVAL;
        opts->geom.policy = (uint32_t)policy;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_max_subscribers(shmbus_opts *opts, uint32_t n) {
        if (!opts || n < 1 || n > SHMBUS_SLOTS_MAX)
                return -EINVAL;
        opts->geom.max_subs = n;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_max_publishers(shmbus_opts *opts, uint32_t n) {
        if (!opts || n < 1 || n > SHMBUS_SLOTS_MAX)
                return -EINVAL;
        opts->geom.max_pubs = n;
        return 0;
}

uint32_t shmbus__opts_grants(const shmbus_opts *opts, bool uids,
                             const struct shmbus__grant **ret_grants) {
        *ret_grants = uids ? opts->uids : opts->gids;
        return uids ? opts->n_uids : opts->n_gids;
}

/* Add @roles for @id to the list @list of *@n entries. */
static int grant_add(struct shmbus__grant *list, uint32_t *n, uint32_t id, int roles) {
        if (id == UINT32_MAX || roles == 0 ||
            (roles & ~(SHMBUS_GRANT_SUBSCRIBE | SHMBUS_GRANT_PUBLISH)))
                return -EINVAL;
        for (uint32_t i = 0; i < *n; i++) {
                if (list[i].id == id) {
                        list[i].roles |= roles;
                        return 0;
                }
        }
        if (*n >= SHMBUS_GRANTS_MAX)
                return -ENOSPC;
        list[(*n)++] = (struct shmbus__grant){.id = id, .roles = roles};
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_grant_uid(shmbus_opts *opts, uid_t uid, int roles) {
        if (!opts)
                return -EINVAL;
        return grant_add(opts->uids, &opts->n_uids, uid, roles);
}

SHMBUS_EXPORT int shmbus_opts_grant_gid(shmbus_opts *opts, gid_t gid, int roles) {
        if (!opts)
                return -EINVAL;
        return grant_add(opts->gids, &opts->n_gids, gid, roles);
}
