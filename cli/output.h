/* SPDX-License-Identifier: MIT */
/*
 * What list, stats, status and version print: JSON (pretty, or one object a
 * line), the channel table, a channel's status page, and human sizes. Input is
 * always a list or stat reply (from shmbusd or offline.c), read by the
 * protocol's field names.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "cli.h"

/* @bytes as "512 B", "1.5 KiB", ... in @buf; returns @buf. */
const char *output_human_size(double bytes, char *buf, size_t size);

/* @j pretty-printed, then a newline. */
void output_json(const cJSON *j);
/* @j on one line (stats --json prints one object a line). */
void output_json_line(const cJSON *j);

/*
 * The channel table of a list reply (with "msg_per_s" added by the caller),
 * its name column as wide as the longest name; under it, offline, how many
 * slots of dead processes were not counted.
 */
void output_list_table(const struct cli_options *o, const cJSON *list);
/* A stat reply as a page: geometry, counters, subscribers, publishers. */
void output_status(const struct cli_options *o, const cJSON *s);
