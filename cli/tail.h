/* SPDX-License-Identifier: MIT */
/*
 * The tail verb: the last messages still in a channel's ring, then with
 * --follow every new one until Ctrl-C. Without shmbusd it maps the files
 * itself: read-only for history, writable (to take a subscriber slot) for
 * --follow.
 */
#pragma once

#include "cli.h"

int verb_tail(const struct cli_options *o, char **args);
