/* SPDX-License-Identifier: MIT */
/*
 * Channel statistics. Everything here is read from shared memory with relaxed
 * loads: a snapshot for people, not a consistent cut, and a hostile member can
 * make it lie (but not make it read out of bounds: slot counts come from the
 * validated, process-local geometry).
 */
#include <stdatomic.h>

#include "stats.h"

void shmbus__stats_geometry_json(cJSON *o, const struct shmbus_ring *r, const char *name,
                                 uid_t owner) {
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "policy",
                                r->policy == SHMBUS_POLICY_BLOCK ? "block" : "overwrite");
        cJSON_AddNumberToObject(o, "capacity", (double)r->size);
        cJSON_AddNumberToObject(o, "max_msg", r->max_msg);
        cJSON_AddNumberToObject(o, "max_subscribers", r->max_subs);
        cJSON_AddNumberToObject(o, "max_publishers", r->max_pubs);
        cJSON_AddNumberToObject(o, "owner_uid", owner);
}

static void add_pub(cJSON *arr, uint32_t i, const struct shmbus_pub_slot *s) {
        cJSON *e = cJSON_CreateObject();

        cJSON_AddNumberToObject(e, "slot", i);
        cJSON_AddNumberToObject(e, "pid", atomic_load(&s->pid));
        cJSON_AddNumberToObject(e, "uid", atomic_load(&s->uid));
        cJSON_AddNumberToObject(e, "published", (double)atomic_load(&s->msgs));
        cJSON_AddNumberToObject(e, "bytes", (double)atomic_load(&s->bytes));
        cJSON_AddNumberToObject(e, "aborts", (double)atomic_load(&s->aborts));
        cJSON_AddNumberToObject(e, "waits", (double)atomic_load(&s->waits));
        cJSON_AddNumberToObject(e, "full", (double)atomic_load(&s->full));
        cJSON_AddItemToArray(arr, e);
}

static void add_sub(cJSON *arr, uint32_t i, const struct shmbus_sub_slot *s, uint64_t pos,
                    uint64_t lag) {
        cJSON *e = cJSON_CreateObject();

        cJSON_AddNumberToObject(e, "slot", i);
        cJSON_AddNumberToObject(e, "pid", atomic_load(&s->pid));
        cJSON_AddNumberToObject(e, "uid", atomic_load(&s->uid));
        cJSON_AddNumberToObject(e, "position", (double)pos);
        cJSON_AddNumberToObject(e, "lag_bytes", (double)lag);
        cJSON_AddNumberToObject(e, "received", (double)atomic_load(&s->received));
        cJSON_AddNumberToObject(e, "bytes", (double)atomic_load(&s->bytes));
        cJSON_AddNumberToObject(e, "lost", (double)atomic_load(&s->lost));
        cJSON_AddNumberToObject(e, "corrupt", (double)atomic_load(&s->corrupt));
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
                subs = cJSON_AddArrayToObject(o, "subscribers");
                pubs = cJSON_AddArrayToObject(o, "publishers");
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
                /* Clamped: a lapped (or lying) subscriber is at most one ring behind. */
                lag = tail - pos <= r->size ? tail - pos : r->size;
                max_lag = lag > max_lag ? lag : max_lag;
                lost += atomic_load(&s->lost);
                if (subs)
                        add_sub(subs, i, s, pos, lag);
        }
        cJSON_AddNumberToObject(o, "publishers_active", n_pubs);
        cJSON_AddNumberToObject(o, "subscribers_active", n_subs);
        cJSON_AddNumberToObject(o, "published", (double)msgs);
        cJSON_AddNumberToObject(o, "published_bytes", (double)bytes);
        cJSON_AddNumberToObject(o, "position", (double)tail);
        cJSON_AddNumberToObject(o, "max_lag_bytes", (double)max_lag);
        cJSON_AddNumberToObject(o, "lost", (double)lost);
        cJSON_AddNumberToObject(o, "unblocked", (double)atomic_load(&ctl->unblocked));
}
