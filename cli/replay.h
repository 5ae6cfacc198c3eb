/* SPDX-License-Identifier: MIT */
/*
 * replay: publish a recording's messages again with their original timing
 * (scaled by --speed, or none with --as-fast-as-possible), renaming channels
 * with --map; or, with --dump, print the recording as JSON lines.
 */
#pragma once

#include "cli.h"

int verb_replay(const struct cli_options *o, char **args);
