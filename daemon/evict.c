/* SPDX-License-Identifier: MIT */
/*
 * See evict.h. What "keeps publishers waiting" means here, all seen on every
 * sweep for the whole timeout: publishers are asleep waiting for space
 * (space_waiters != 0); the subscriber is the slowest tethered one; it is at
 * least half a ring behind the tail (publishers waiting on something else, an
 * open claim a lap behind, do not make a near-caught-up reader guilty); and
 * its position has not moved. A reader that moves, however slowly, lets the
 * waiting publishers through and starts the clock again.
 */
#include "evict.h"

#include <stdatomic.h>

#include "broker.h"
#include "channel.h"
#include "config.h"
#include "log.h"
#include "registry.h"

uint32_t evict_timeout_ms(const struct broker *b, const struct chan *c) {
        const struct channel_rule *rule = config_rule(&b->cfg, c->name);

        if (rule && rule->has_slow_subscriber_timeout)
                return rule->slow_subscriber_timeout_ms;
        if (c->has_slow_subscriber_timeout)
                return c->slow_subscriber_timeout_ms;
        return b->cfg.slow_subscriber_timeout_ms;
}

/* The slowest tethered active subscriber of @r, or UINT32_MAX; its position in @ret_pos. */
static uint32_t slowest(const struct shmbus_ring *r, uint64_t tail, uint64_t *ret_pos) {
        uint32_t who = UINT32_MAX;
        uint64_t lag = 0;

        for (uint32_t i = 0; i < r->max_subs; i++) {
                const struct shmbus_sub_slot *s = &r->subs[i];
                uint64_t pos;

                if (atomic_load(&s->state) != SHMBUS_SLOT_ACTIVE ||
                    (atomic_load(&s->flags) & SHMBUS_SUB_FLAG_UNTETHERED))
                        continue;
                pos = atomic_load(&s->pos);
                /* A position ahead of the tail is scribbled on: it holds nobody back. */
                if ((int64_t)(tail - pos) >= 0 && tail - pos >= lag) {
                        lag = tail - pos;
                        who = i;
                        *ret_pos = pos;
                }
        }
        return lag >= r->size / 2 ? who : UINT32_MAX;
}

static void sweep_chan(struct chan *c, uint32_t timeout_ms, int64_t now) {
        struct shmbus_ring *r = &c->map->ring;
        uint64_t pos = 0, tail = shmbus__ring_tail_pos(r);
        uint32_t who = UINT32_MAX;
        struct hold *h;

        if (atomic_load(&r->ctl->space_waiters) != 0)
                who = slowest(r, tail, &pos);
        for (uint32_t i = 0; i < r->max_subs; i++)
                if (i != who)
                        c->hold[i].since = 0;
        if (who == UINT32_MAX)
                return;
        h = &c->hold[who];
        if (h->since == 0 || h->pos != pos) {
                *h = (struct hold){.pos = pos, .since = now};
                return;
        }
        if (now - h->since < (int64_t)timeout_ms * 1000000)
                return;
        h->since = 0;
        if (!(atomic_load(&r->subs[who].flags) & SHMBUS_SUB_FLAG_EVICTABLE)) {
                if (!c->evict_refused)
                        log_warn_f(LOG_FIELDS(.channel = c->name),
                                   "channel %s: subscriber slot %u keeps publishers waiting, but "
                                   "its library is too old to be told it was evicted: left alone",
                                   c->name, who);
                c->evict_refused = true;
                return;
        }
        if (shmbus__ring_sub_slot_evict(r, who)) {
                pid_t pid = (pid_t)atomic_load(&r->subs[who].pid);

                log_warn_f(LOG_FIELDS(.channel = c->name, LOGF_PID(pid)),
                           "channel %s: evicted subscriber slot %u (pid %d): it kept publishers "
                           "waiting for %u ms (slow_subscriber_timeout_ms)",
                           c->name, who, (int)pid, timeout_ms);
        }
}

void evict_sweep(struct broker *b, int64_t now) {
        for (unsigned i = 0; i < b->channels.n_chans; i++) {
                struct chan *c = b->channels.chans[i];
                uint32_t ms;

                if (c->map->ring.policy != SHMBUS_POLICY_BLOCK)
                        continue;
                ms = evict_timeout_ms(b, c);
                if (ms)
                        sweep_chan(c, ms, now);
        }
}
