/* SPDX-License-Identifier: MIT */
/*
 * A channel's geometry and counters as JSON, read from its ctl file: the one
 * builder of these objects, shared by shmbusd's replies and by shmbus-cli when
 * it reads channel files itself. The field names are wire.h's
 * (docs/PROTOCOL.md lists them).
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <sys/types.h>

#include "ring.h"

void shmbus__stats_geometry_json(cJSON *o, const struct shmbus_ring *r, const char *name,
                                 uid_t owner);
/* Geometry plus counters; with @detail, one entry per active subscriber and publisher. */
void shmbus__stats_json(cJSON *o, const struct shmbus_ring *r, const char *name, uid_t owner,
                        bool detail);
