/* SPDX-License-Identifier: MIT */
/*
 * The verbs that change which channels exist: create and delete. Both go
 * through shmbusd, which applies its policy; without it they exit 7.
 */
#pragma once

#include "cli.h"

int verb_create(const struct cli_options *o, char **args);
int verb_delete(const struct cli_options *o, char **args);
/*
 * Grant @roles (SHMBUS_GRANT_*) of the channel being created to @spec: a user
 * (NAME, user:NAME, a uid) or a group (group:NAME, group:GID), resolved here.
 * Return: 0, or -EINVAL (said why) or -ENOSPC.
 */
int admin_grant(shmbus_opts *opts, const char *spec, int roles);
