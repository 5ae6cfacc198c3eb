/* SPDX-License-Identifier: MIT */
/* See liveness.h. The daemon is the only process that repairs rings; members never do. */
#include "liveness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "log.h"
#include "util.h"

bool pid_is_alive(pid_t pid) {
        _cleanup_close_ int fd = -1;
        char path[64], buf[256], *paren;
        ssize_t n;

        if (pid <= 0)
                return false;
        /* One cheap system call settles most pids a forged slot can name: no such process. */
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? false : (kill(pid, 0) == 0 || errno == EPERM);
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        /* "pid (comm) S ...": the state follows the last ')', comm may contain anything. */
        paren = strrchr(buf, ')');
        return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

unsigned liveness_reap_pid(struct chan *c, pid_t pid) {
        struct shmbus_ring *r = &c->map->ring;
        unsigned n = 0;

        for (uint32_t i = 0; i < r->max_subs; i++) {
                if (atomic_load(&r->subs[i].state) != SHMBUS_SLOT_FREE &&
                    (pid_t)atomic_load(&r->subs[i].pid) == pid) {
                        shmbus__ring_sub_slot_release(r, i);
                        n++;
                }
        }
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                if (atomic_load(&r->pubs[i].state) == SHMBUS_SLOT_ACTIVE &&
                    (pid_t)atomic_load(&r->pubs[i].pid) == pid) {
                        shmbus__ring_pub_slot_release(r, i);
                        n++;
                }
        }
        return n;
}

/*
 * Is slot @i (subscribers first, then publishers) active with no owner, for
 * the second sweep running? Join sets the pid before the state and release
 * clears the state before the pid, so that is never a moment of a join or a
 * release: only a member scribbling on ctl makes it, and it would hold
 * publishers of a block channel back for good.
 */
static bool chan_orphan(struct chan *c, uint32_t i, _Atomic uint32_t *state,
                        _Atomic uint32_t *pid) {
        bool orphan = atomic_load(state) == SHMBUS_SLOT_ACTIVE && atomic_load(pid) == 0;
        bool twice = orphan && c->orphan[i];

        c->orphan[i] = orphan && !twice;
        if (twice)
                log_warn("channel %s: released %s slot %u, active without an owner (damaged by "
                         "a member?)",
                         c->name, i < c->map->ring.max_subs ? "subscriber" : "publisher",
                         i < c->map->ring.max_subs ? i : i - c->map->ring.max_subs);
        return twice;
}

/*
 * Liveness of pids, remembered for one sweep tick: forged slots may name the
 * same live pid a thousand times, and a live pid costs a read of /proc.
 * (The daemon is single-threaded; this is its one sweep's memo.)
 */
#define PID_MEMO_SIZE 4096

static struct {
        uint32_t pid;
        uint32_t gen;
        bool alive;
} pid_memo[PID_MEMO_SIZE];
static uint32_t pid_memo_gen;

static bool pid_is_alive_memo(uint32_t pid) {
        uint32_t h = (pid * UINT32_C(2654435761)) & (PID_MEMO_SIZE - 1);
        bool alive;

        if (pid_memo[h].gen == pid_memo_gen && pid_memo[h].pid == pid)
                return pid_memo[h].alive;
        alive = pid_is_alive((pid_t)pid);
        pid_memo[h].pid = pid;
        pid_memo[h].gen = pid_memo_gen;
        pid_memo[h].alive = alive;
        return alive;
}

static void sweep_pub(struct registry *reg, struct chan *c, uint32_t i) {
        struct shmbus_ring *r = &c->map->ring;
        struct shmbus_pub_slot *p = &r->pubs[i];
        uint32_t owner = atomic_load(&p->pid);

        if (owner && !pid_is_alive_memo(owner)) {
                log_info_f(LOG_FIELDS(.channel = c->name, LOGF_PID(owner)),
                           "channel %s: released publisher slot %u of dead pid %u", c->name, i,
                           owner);
                shmbus__ring_pub_slot_release(r, i);
                shmbus__ring_slot_clear_pid(&p->pid, owner);
                reg->counts.released++;
        } else if (chan_orphan(c, r->max_subs + i, &p->state, &p->pid)) {
                shmbus__ring_pub_slot_release(r, i);
                reg->counts.released++;
        }
}

/*
 * Subscriber slot @i waits at @pos on the claim stamped @stamp: once it has
 * waited, unchanged, for @unblock_ms, pad over the claim if its writer is dead.
 *
 * The wait is counted from the sweep's previous look at the slot (@prev), not
 * from the look that first sees it stuck: the subscriber began waiting at
 * some moment in between, and counting from the later look let it wait up to
 * two sweeps past the timeout (issue 15: 498 ms where 400 were documented).
 * Counted from the earlier look, and rounded to the nearest sweep so that
 * timer jitter cannot cost a whole extra sweep, a subscriber waits on a dead
 * claim between unblock_ms - one sweep and unblock_ms; only a dead writer's
 * claim is ever padded, so padding early harms nobody.
 */
static void sweep_stuck(struct registry *reg, struct chan *c, uint32_t i, uint64_t pos,
                        uint64_t stamp, uint32_t unblock_ms, int64_t now, int64_t prev) {
        struct shmbus_ring *r = &c->map->ring;
        int64_t timeout = (int64_t)unblock_ms * 1000000;
        int64_t half_sweep = (int64_t)LIVENESS_SWEEP_INTERVAL_MS * 1000000 / 2;
        struct stuck *st = &c->stuck[i];
        int ret;

        if (st->since == 0 || st->pos != pos || st->stamp != stamp)
                *st = (struct stuck){
                        .pos = pos, .stamp = stamp, .since = prev ? prev : now, .seen = now};
        if (now - st->since < timeout - half_sweep)
                return;
        ret = shmbus__ring_unblock(r, pos);
        if (ret > 0) {
                reg->counts.unblocked++;
                log_warn_f(LOG_FIELDS(.channel = c->name),
                           "channel %s: padded over a claim at position %llu whose writer "
                           "died before committing it",
                           c->name, (unsigned long long)pos);
                st->since = 0;
        } else if (ret == -EBUSY && !st->warned) {
                log_warn("channel %s: subscribers have waited %u ms on a claim at "
                         "position %llu held by live pid %u (stopped or hung?); it is "
                         "padded over only once that process is gone",
                         c->name, unblock_ms, (unsigned long long)pos,
                         shmbus__ring_claim_owner(r, pos));
                st->warned = true;
        }
}

static void sweep_sub(struct registry *reg, struct chan *c, uint32_t i, uint32_t unblock_ms,
                      int64_t now) {
        struct shmbus_ring *r = &c->map->ring;
        struct shmbus_sub_slot *s = &r->subs[i];
        uint32_t owner = atomic_load(&s->pid);
        int64_t prev = c->stuck[i].seen;
        uint64_t pos, stamp;

        c->stuck[i].seen = now;

        if (owner && !pid_is_alive_memo(owner)) {
                log_info_f(LOG_FIELDS(.channel = c->name, LOGF_PID(owner)),
                           "channel %s: released subscriber slot %u of dead pid %u", c->name, i,
                           owner);
                shmbus__ring_sub_slot_release(r, i);
                shmbus__ring_slot_clear_pid(&s->pid, owner);
                reg->counts.released++;
                c->stuck[i].since = 0;
                return;
        }
        if (chan_orphan(c, i, &s->state, &s->pid)) {
                shmbus__ring_sub_slot_release(r, i);
                reg->counts.released++;
                c->stuck[i].since = 0;
                return;
        }
        if (atomic_load(&s->state) != SHMBUS_SLOT_ACTIVE) {
                c->stuck[i].since = 0;
                return;
        }
        pos = atomic_load(&s->pos);
        if (!shmbus__ring_pending(r, pos, &stamp)) {
                c->stuck[i].since = 0;
                return;
        }
        sweep_stuck(reg, c, i, pos, stamp, unblock_ms, now, prev);
}

/*
 * A channel's slots are visited in one order, publishers first, so that a
 * claim of a publisher found dead can be padded over in the same visit. The
 * clock is read every 64 slots: a slot costs at most one liveness check.
 */
void liveness_sweep(struct registry *reg, uint32_t unblock_timeout_ms, int64_t now,
                    int64_t budget_ns) {
        int64_t deadline = now + budget_ns;

        pid_memo_gen++;
        for (unsigned todo = reg->n_chans; todo > 0; todo--) {
                struct chan *c;
                uint32_t n;

                /* Channels come and go between ticks: wrap rather than trust the cursor. */
                if (reg->sweep_chan >= reg->n_chans) {
                        reg->sweep_chan = 0;
                        reg->sweep_slot = 0;
                }
                c = reg->chans[reg->sweep_chan];
                n = c->map->ring.max_pubs + c->map->ring.max_subs;
                for (; reg->sweep_slot < n; reg->sweep_slot++) {
                        uint32_t i = reg->sweep_slot;

                        if (i % 64 == 63 && shmbus__now_ns() > deadline)
                                return;
                        if (i < c->map->ring.max_pubs)
                                sweep_pub(reg, c, i);
                        else
                                sweep_sub(reg, c, i - c->map->ring.max_pubs, unblock_timeout_ms,
                                          now);
                }
                reg->sweep_chan++;
                reg->sweep_slot = 0;
        }
}
