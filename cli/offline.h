/* SPDX-License-Identifier: MIT */
/*
 * Reading channel files directly, read-only, when shmbusd is not running: the
 * same JSON the daemon's list and stat replies carry (libclient/stats.c makes
 * both), so the verbs print either without knowing which it is.
 *
 * Without the daemon nobody frees the slots of a process that died, so a slot
 * counts as a publisher or subscriber only while its pid is alive: the counts,
 * the member lists and max_lag_bytes leave the others out, and
 * "dead_publishers" and "dead_subscribers" say how many were left out.
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
 * One channel's stats, as a stat reply (with @detail: every live subscriber
 * and publisher) or a list entry. Return: 0, or shmbus_channel_open()'s
 * -errno, -ENAMETOOLONG, -ENOMEM.
 */
int offline_stats(const char *dir, const char *name, bool detail, cJSON **ret_stats);

/*
 * offline_list() - every channel of @dir, as a list reply: {"channels": [...]}
 * @detail: give every entry its subscribers and publishers, as a stat reply
 * @report: say on stderr which channels could not be read
 *
 * A channel that cannot be read is left out. A missing directory is an empty
 * list: there are no channels.
 *
 * Return: 0; the directory's -errno if it cannot be read; the first channel's
 * -errno if there are channels and none of them could be read (then nothing
 * is reported: the caller says it once, with what to do); or -ENOMEM.
 */
int offline_list(const char *dir, bool detail, bool report, cJSON **ret_list);
/* Has channel @name files in @dir (whether or not a daemon serves them)? */
bool offline_has_files(const char *dir, const char *name);
