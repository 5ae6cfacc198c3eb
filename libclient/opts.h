/* SPDX-License-Identifier: MIT */
/*
 * The options object (shmbus_opts): a channel geometry a caller builds up
 * before creating a channel, and who else may use it (grants, which only
 * shmbusd enforces). The library's defaults live here, and shmbusd
 * starts its own configuration from them.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "shmbus.h"

#include "ring.h"

/* The defaults of shmbus_opts_new(), as documented in shmbus.h. */
void shmbus__opts_default(struct shmbus_ring_geom *g);
const struct shmbus_ring_geom *shmbus__opts_geom(const shmbus_opts *opts);

/* One grant: an id and the SHMBUS_GRANT_* roles it was given. */
struct shmbus__grant {
        uint32_t id;
        int roles;
};

/* The uids (@uids, or else the gids) @opts grants to; returns how many. */
uint32_t shmbus__opts_grants(const shmbus_opts *opts, bool uids,
                             const struct shmbus__grant **ret_grants);
/* Whether shmbus_opts_set_slow_subscriber_timeout() was called, and its value. */
bool shmbus__opts_slow_subscriber_timeout(const shmbus_opts *opts, uint32_t *ret_ms);
