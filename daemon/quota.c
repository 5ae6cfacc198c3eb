/* SPDX-License-Identifier: MIT */
/* See quota.h. There are at most max_channels channels, so counting by scanning is cheap. */
#include "quota.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "channel.h"
#include "wire.h"

struct use {
        uint32_t channels;
        uint64_t bytes;
};

static uint64_t chan_bytes(const struct chan *c) {
        return (uint64_t)c->map->ctl_len + c->map->data_len;
}

static struct use use_of(const struct registry *reg, uid_t uid) {
        struct use u = {0};

        for (unsigned i = 0; i < reg->n_chans; i++) {
                if (reg->chans[i]->owner != uid)
                        continue;
                u.channels++;
                u.bytes += chan_bytes(reg->chans[i]);
        }
        return u;
}

bool quota_applies(uid_t uid) {
        return uid != 0 && uid != geteuid();
}

int quota_check(const struct config *cfg, const struct registry *reg, uid_t uid, uint64_t bytes,
                uint32_t pending_channels, uint64_t pending_bytes, char *msg, size_t size) {
        struct use u;

        if (!quota_applies(uid))
                return 0;
        u = use_of(reg, uid);
        u.channels += pending_channels;
        u.bytes += pending_bytes;
        if (u.channels + 1 > cfg->quota_channels_per_uid) {
                snprintf(msg, size,
                         "quota_channels_per_uid (%u) reached: uid %u owns %u channels; delete "
                         "one or ask the administrator to raise the quota",
                         cfg->quota_channels_per_uid, (unsigned)uid, u.channels);
                return -EDQUOT;
        }
        if (bytes > cfg->quota_bytes_per_uid || u.bytes > cfg->quota_bytes_per_uid - bytes) {
                snprintf(msg, size,
                         "quota_bytes_per_uid (%llu) exceeded: uid %u owns %llu bytes of channels "
                         "and this one needs %llu; delete some, ask for a smaller capacity, or ask "
                         "the administrator to raise the quota",
                         (unsigned long long)cfg->quota_bytes_per_uid, (unsigned)uid,
                         (unsigned long long)u.bytes, (unsigned long long)bytes);
                return -EDQUOT;
        }
        return 0;
}

static void use_json(cJSON *o, uid_t uid, struct use u) {
        cJSON_AddNumberToObject(o, WIRE_UID, uid);
        cJSON_AddNumberToObject(o, WIRE_CHANNELS, u.channels);
        cJSON_AddNumberToObject(o, WIRE_BYTES, (double)u.bytes);
        cJSON_AddBoolToObject(o, WIRE_QUOTA_EXEMPT, !quota_applies(uid));
}

void quota_json_uids(cJSON *o, const struct config *cfg, const struct registry *reg) {
        cJSON *arr = cJSON_AddArrayToObject(o, WIRE_UIDS);
        cJSON *q = cJSON_AddObjectToObject(o, WIRE_QUOTA);

        cJSON_AddNumberToObject(q, WIRE_QUOTA_CHANNELS_PER_UID, cfg->quota_channels_per_uid);
        cJSON_AddNumberToObject(q, WIRE_QUOTA_BYTES_PER_UID, (double)cfg->quota_bytes_per_uid);
        for (unsigned i = 0; i < reg->n_chans; i++) {
                uid_t uid = reg->chans[i]->owner;
                bool seen = false;
                cJSON *e;

                /* Each owner once, at its first channel. */
                for (unsigned j = 0; j < i && !seen; j++)
                        seen = reg->chans[j]->owner == uid;
                if (seen)
                        continue;
                e = cJSON_CreateObject();
                use_json(e, uid, use_of(reg, uid));
                cJSON_AddItemToArray(arr, e);
        }
}

void quota_json_owner(cJSON *o, const struct config *cfg, const struct registry *reg, uid_t owner) {
        cJSON *e = cJSON_AddObjectToObject(o, WIRE_OWNER_USE);

        use_json(e, owner, use_of(reg, owner));
        cJSON_AddNumberToObject(e, WIRE_QUOTA_CHANNELS_PER_UID, cfg->quota_channels_per_uid);
        cJSON_AddNumberToObject(e, WIRE_QUOTA_BYTES_PER_UID, (double)cfg->quota_bytes_per_uid);
}
