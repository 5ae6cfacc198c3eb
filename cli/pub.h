/* SPDX-License-Identifier: MIT */
/*
 * The pub verb: publish one message from the command line, or read stdin as
 * one message a line or (--whole) as one message. It needs shmbusd.
 */
#pragma once

#include "cli.h"

int verb_pub(const struct cli_options *o, char **args);
