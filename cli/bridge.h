/* SPDX-License-Identifier: MIT */
/*
 * The channel list's view of shmbus-bridge: which channels a bridge on this
 * host carries to or from NATS, with the route's counters, read from the
 * bridge's state files ($SHMBUS_BRIDGE_STATE_DIR, default
 * /var/lib/shmbus-bridge; docs/BRIDGE.md). Nothing is shown when there are
 * none or they cannot be read.
 */
#pragma once

#include <cjson/cJSON.h>

#include "cli.h"

/* Add a "bridge" array of routes to every channel of @list that a bridge carries. */
void cli_bridge_annotate(cJSON *list);
/* After the table: one line per bridged route. */
void cli_bridge_print(const struct cli_options *o, const cJSON *list);
