/* SPDX-License-Identifier: MIT */
/*
 * The read verbs: list, stats, status and version. They ask shmbusd and, when
 * it is not running, read the channel files themselves (and say so on stderr);
 * version then reports the daemon as not running. @args are the verb's
 * positional arguments, their number already checked by main.c.
 *
 * Also the snapshot the metrics exporter serves: every channel with its
 * members, from the daemon or from the files.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "cli.h"

int verb_list(const struct cli_options *o, char **args);
int verb_stats(const struct cli_options *o, char **args);
int verb_status(const struct cli_options *o, char **args);
int verb_version(const struct cli_options *o, char **args);

/* The key of a detailed snapshot that holds the daemon's "stats" reply (absent offline). */
#define INSPECT_DAEMON "daemon"

/*
 * inspect_snapshot() - every channel, sorted by name, as {"channels": [...]}
 * @detail: each entry is a stat reply, with its subscribers and publishers;
 *   and the daemon's own counters, its "stats" reply, are INSPECT_DAEMON
 * @report: say on stderr which channel files could not be read (offline)
 * @ret_offline: set to whether shmbusd was down and the files were read
 *
 * Return: 0, or -errno (see inspect_say_error()).
 */
int inspect_snapshot(const struct cli_options *o, bool detail, bool report, cJSON **ret_list,
                     bool *ret_offline);

/* One line on stderr for a failed snapshot of verb @verb, saying what to do if we know. */
void inspect_say_error(const struct cli_options *o, const char *verb, int r, bool offline);
