/* SPDX-License-Identifier: MIT */
/*
 * The read verbs: list, stats, status and version. They ask shmbusd and, when
 * it is not running, read the channel files themselves (and say so on stderr);
 * version then reports the daemon as not running. @args are the verb's
 * positional arguments, their number already checked by main.c.
 */
#pragma once

#include "cli.h"

int verb_list(const struct cli_options *o, char **args);
int verb_stats(const struct cli_options *o, char **args);
int verb_status(const struct cli_options *o, char **args);
int verb_version(const struct cli_options *o, char **args);
