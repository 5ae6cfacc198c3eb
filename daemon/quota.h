/* SPDX-License-Identifier: MIT */
/*
 * Per-uid quotas on what channels pin: their count and their bytes (ctl plus
 * data, all of it allocated at create time, in tmpfs that is memory). Without
 * them any local user could create max_channels channels of up to 1 GiB each,
 * pinning the host's memory and leaving no channel place for anybody else.
 * Use is counted from the registry, by each channel's owner, so it is never
 * out of step with what exists. Root and the daemon's own uid are exempt.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "json.h"
#include "registry.h"

/* Is @uid held to the quotas? */
bool quota_applies(uid_t uid);
/*
 * May @uid create one more channel of @bytes, given that it also has
 * @pending_channels of @pending_bytes being created (create.h)? Return: 0, or -EDQUOT with
 * @msg (of @size bytes) naming the quota, the uid's use and what to do.
 */
int quota_check(const struct config *cfg, const struct registry *reg, uid_t uid, uint64_t bytes,
                uint32_t pending_channels, uint64_t pending_bytes, char *msg, size_t size);
/* Add "uids" (every owner's channels and bytes) and "quota" to the list reply @o. */
void quota_json_uids(cJSON *o, const struct config *cfg, const struct registry *reg);
/* Add "owner_use" (the owner's channels and bytes) to the stat reply @o of a channel. */
void quota_json_owner(cJSON *o, const struct config *cfg, const struct registry *reg, uid_t owner);
