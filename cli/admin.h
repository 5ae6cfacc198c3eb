/* SPDX-License-Identifier: MIT */
/*
 * The verbs that change which channels exist: create and delete. Both go
 * through shmbusd, which applies its policy; without it they exit 7.
 */
#pragma once

#include "cli.h"

int verb_create(const struct cli_options *o, char **args);
int verb_delete(const struct cli_options *o, char **args);
