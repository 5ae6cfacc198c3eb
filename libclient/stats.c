/* SPDX-License-Identifier: MIT */
/*
 * Channel statistics. Everything here is read from shared memory with relaxed
 * loads: a snapshot for people, not a consistent cut, and a hostile member can
 * make it lie (but not make it read out of bounds: slot counts come from the
 * validated, process-local geometry).
 *
 * Every field name is wire.h's: these objects are the list and stat replies
 * of the protocol.
 */
#include "stats.h"

#include <stdatomic.h>

#include "wire.h"

void shmbus__stats_geometry_json(cJSON *o, const struct shmbus_ring *r, const char *name,
                                 uid_t owner) {
        cJSON_AddStringToObject(o, WIRE_NAME, name);
        cJSON_AddStringToObject(o, WIRE_POLICY,
                                r->policy == SHMBUS_POLICY_BLOCK ? WIRE_POLICY_BLOCK
                                                                 : WIRE_POLICY_OVERWRITE);
        cJSON_AddNumberToObject(o, WIRE_CAPACITY, (double)r->size);
        cJSON_AddNumberToObject(o, WIRE_MAX_MSG, r->max_msg);
        cJSON_AddNumberToObject(o, WIRE_MAX_SUBSCRIBERS, r->max_subs);
        cJSON_AddNumberToObject(o, WIRE_MAX_PUBLISHERS, r->max_pubs);
        cJSON_AddNumberToObject(o, WIRE_OWNER_UID, owner);
}

static void add_pub(cJSON *arr, uint32_t i, const struct shmbus_pub_slot *s) {
        cJSON *e = cJSON_CreateObject();

        cJSON_AddNumberToObject(e, WIRE_SLOT, i);
        cJSON_AddNumberToObject(e, WIRE_PID, atomic_load(&s->pid));
        cJSON_AddNumberToObject(e, WIRE_UID, atomic_load(&s->uid));
        cJSON_AddNumberToObject(e, WIRE_PUBLISHED, (double)atomic_load(&s->msgs));
        cJSON_AddNumberToObject(e, WIRE_BYTES, (double)atomic_load(&s->bytes));
        cJSON_AddNumberToObject(e, WIRE_ABORTS, (double)atomic_load(&s->aborts));
        cJSON_AddNumberToObject(e, WIRE_WAITS, (double)atomic_load(&s->waits));
        cJSON_AddNumberToObject(e, WIRE_FULL, (double)atomic_load(&s->full));
        cJSON_AddItemToArray(arr, e);
}

static void add_sub(cJSON *arr, uint32_t i, const struct shmbus_sub_slot *s, uint64_t pos,
                    uint64_t lag, bool lapped) {
        cJSON *e = cJSON_CreateObject();

        cJSON_AddNumberToObject(e, WIRE_SLOT, i);
        cJSON_AddNumberToObject(e, WIRE_PID, atomic_load(&s->pid));
        cJSON_AddNumberToObject(e, WIRE_UID, atomic_load(&s->uid));
        cJSON_AddNumberToObject(e, WIRE_POSITION, (double)pos);
        cJSON_AddNumberToObject(e, WIRE_LAG_BYTES, (double)lag);
        cJSON_AddBoolToObject(e, WIRE_LAPPED, lapped);
        cJSON_AddNumberToObject(e, WIRE_RECEIVED, (double)atomic_load(&s->received));
        cJSON_AddNumberToObject(e, WIRE_BYTES, (double)atomic_load(&s->bytes));
        cJSON_AddNumberToObject(e, WIRE_LOST, (double)atomic_load(&s->lost));
        cJSON_AddNumberToObject(e, WIRE_CORRUPT, (double)atomic_load(&s->corrupt));
        cJSON_AddItemToArray(arr, e);
}

void shmbus__stats_json(cJSON *o, const struct shmbus_ring *r, const char *name, uid_t owner,
                        bool detail) {
        const struct shmbus_ctl *ctl = r->ctl;
        uint64_t tail = shmbus__ring_tail_pos(r), max_lag = 0;
        uint64_t msgs = atomic_load(&ctl->retired_msgs), bytes = atomic_load(&ctl->retired_bytes);
        uint64_t lost = atomic_load(&ctl->retired_lost);
        unsigned n_pubs = 0, n_subs = 0;
        cJSON *subs = NULL, *pubs = NULL;

        shmbus__stats_geometry_json(o, r, name, owner);
        if (detail) {
                subs = cJSON_AddArrayToObject(o, WIRE_SUBSCRIBERS);
                pubs = cJSON_AddArrayToObject(o, WIRE_PUBLISHERS);
        }
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                const struct shmbus_pub_slot *s = &r->pubs[i];

                if (atomic_load(&s->state) != SHMBUS_SLOT_ACTIVE)
                        continue;
                n_pubs++;
                msgs += atomic_load(&s->msgs);
                bytes += atomic_load(&s->bytes);
                if (pubs)
                        add_pub(pubs, i, s);
        }
        for (uint32_t i = 0; i < r->max_subs; i++) {
                const struct shmbus_sub_slot *s = &r->subs[i];
                uint64_t pos, lag;

                if (atomic_load(&s->state) != SHMBUS_SLOT_ACTIVE)
                        continue;
                n_subs++;
                pos = atomic_load(&s->pos);
                /*
                 * The true distance: a subscriber a ring or more behind has been lapped
                 * (overwrite, untethered) and says so, rather than reading as exactly one
                 * ring behind. A position ahead of the tail is a read race with a
                 * publisher or a scribbled slot; it counts as caught up.
                 */
                lag = pos <= tail ? tail - pos : 0;
                max_lag = lag > max_lag ? lag : max_lag;
                lost += atomic_load(&s->lost);
                if (subs)
                        add_sub(subs, i, s, pos, lag, lag > r->size);
        }
        cJSON_AddNumberToObject(o, WIRE_PUBLISHERS_ACTIVE, n_pubs);
        cJSON_AddNumberToObject(o, WIRE_SUBSCRIBERS_ACTIVE, n_subs);
        cJSON_AddNumberToObject(o, WIRE_PUBLISHED, (double)msgs);
        cJSON_AddNumberToObject(o, WIRE_PUBLISHED_BYTES, (double)bytes);
        cJSON_AddNumberToObject(o, WIRE_POSITION, (double)tail);
        cJSON_AddNumberToObject(o, WIRE_MAX_LAG_BYTES, (double)max_lag);
        cJSON_AddNumberToObject(o, WIRE_LOST, (double)lost);
        cJSON_AddNumberToObject(o, WIRE_UNBLOCKED, (double)atomic_load(&ctl->unblocked));
        cJSON_AddNumberToObject(o, WIRE_EVICTED, (double)atomic_load(&ctl->evicted));
}
