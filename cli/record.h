/* SPDX-License-Identifier: MIT */
/*
 * record: follow channels and write every message they carry to a recording
 * file (docs/RECORDING.md), until Ctrl-C, --count messages or --duration.
 */
#pragma once

#include "cli.h"

int verb_record(const struct cli_options *o, char **args);
