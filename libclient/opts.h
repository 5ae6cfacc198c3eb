/* SPDX-License-Identifier: MIT */
/*
 * The options object (shmbus_opts): a channel geometry a caller builds up
 * before creating a channel. The library's defaults live here, and shmbusd
 * starts its own configuration from them.
 */
#pragma once

#include "shmbus.h"

#include "ring.h"

/* The defaults of shmbus_opts_new(), as documented in shmbus.h. */
void shmbus__opts_default(struct shmbus_ring_geom *g);
const struct shmbus_ring_geom *shmbus__opts_geom(const shmbus_opts *opts);
/* Whether shmbus_opts_set_slow_subscriber_timeout() was called, and its value. */
bool shmbus__opts_slow_subscriber_timeout(const shmbus_opts *opts, uint32_t *ret_ms);
