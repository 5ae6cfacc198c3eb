/* SPDX-License-Identifier: MIT */
/*
 * Grants: the uids and gids a channel's creator allowed to publish on it or
 * subscribe to it, beyond itself (docs/PROTOCOL.md, "create"). They are kept
 * with the channel's owner in its meta file (meta.h), never in the channel's
 * shared files, and checked after shmbusd's configuration: a rule of the
 * configuration that says who may publish or subscribe wins, and the "grant"
 * key says who may grant at all.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "config.h"

struct grants {
        struct acl publish;
        struct acl subscribe;
};

bool grants_is_empty(const struct grants *g);
/* Does @g let @w use the channel as a publisher (@publish) or a subscriber? */
bool grants_allow(const struct grants *g, bool publish, const struct who *w);
/*
 * Parse @json, {"publish": ACL, "subscribe": ACL} with ACLs of ids (not names),
 * into @g; @where names it in errors. Return: 0, or -EINVAL with @err set.
 */
int grants_parse(const cJSON *json, const char *where, struct grants *g, char *err,
                 size_t err_size);
/* Add @g to @o as the object grants_parse() reads, unless it is empty. Return: 0 or -ENOMEM. */
int grants_add_json(cJSON *o, const char *key, const struct grants *g);
