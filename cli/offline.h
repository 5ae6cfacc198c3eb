/* SPDX-License-Identifier: MIT */
/*
 * Reading channel files directly, read-only, when shmbusd is not running: the
 * same JSON the daemon's list and stat replies carry (libclient/stats.c makes
 * both), so the verbs print either without knowing which it is.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "cli.h"

/* The channel directory: --shm-dir, else WIRE_DEFAULT_SHM_DIR. */
const char *offline_shm_dir(const struct cli_options *o);

/* Tell the user (on stderr) that what follows comes from the files. */
void offline_say(const struct cli_options *o);

/*
 * One channel's stats, as a stat reply (with @detail: every subscriber and
 * publisher) or a list entry. Return: 0, or shmbus_channel_open()'s -errno,
 * -ENAMETOOLONG, -ENOMEM.
 */
int offline_stats(const char *dir, const char *name, bool detail, cJSON **ret_stats);

/*
 * Every channel of @dir, as a list reply: {"channels": [...]}. A channel that
 * cannot be read is reported on stderr and left out; a directory that cannot
 * be read is an empty list. Return: 0 or -ENOMEM.
 */
int offline_list(const char *dir, cJSON **ret_list);
