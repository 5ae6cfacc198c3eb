/* SPDX-License-Identifier: MIT */
/*
 * Publishers and subscribers (pubsub.h): the public API's thin layer over the
 * ring's claim/commit and peek/release, plus the subscriber's wait (spin,
 * then sleep on the futex), and the hooks that park and reset an object's
 * pollable descriptor (notifier.h) where a receive or claim comes back
 * empty-handed.
 *
 * Invariants: each object holds one ring slot and one channel reference for
 * its whole life, so the mapping outlives it; the public functions check
 * their arguments and otherwise add nothing to the ring's per-message cost
 * (no allocation, no system call unless a wait sleeps) but loads of words
 * that stay in the cache: the process generation (an object used in a forked
 * child answers -ECHILD and never touches the parent's slot), the object's
 * own slot state (an evicted subscriber answers -ECONNABORTED), and, for
 * publishers, the channel's deleted word (-EIDRM). Subscribers look at the
 * deleted word only when the ring is empty, so what is left is delivered first.
 * An object is never parked on its descriptor and asleep on the futex at once:
 * each counts in the same waiters word through the same slot flag.
 */
#include "pubsub.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus.h"

#include "alloc.h"
#include "channel.h"
#include "notifier.h"
#include "proc.h"
#include "ring.h"
#include "util.h"

#define DEFAULT_SPIN_US 50u

struct shmbus_pub {
        shmbus_channel *chan;
        struct shmbus_ring_pub rp;
        unsigned gen;                 /* the process generation that owns the slot (proc.h) */
        struct shmbus_notify *notify; /* NULL until shmbus_pub_fd() */
};

struct shmbus_sub {
        shmbus_channel *chan;
        struct shmbus_ring_sub rs;
        uint32_t spin_us;
        unsigned gen;
        struct shmbus_notify *notify; /* NULL until shmbus_sub_fd() */
};

static int64_t ms_to_ns(int timeout_ms) {
        return timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000;
}

/* The pid to stamp on a new slot: the one the daemon knows, or, in a forked child, ours. */
static int chan_slot_pid(const shmbus_channel *chan, pid_t *ret_pid) {
        if (chan->gen == shmbus__proc_gen()) {
                *ret_pid = chan->pid;
                return 0;
        }
        /*
         * Mapped by the parent. If the daemon saw the parent under its own
         * getpid(), it shares our pid namespace and sees the child as getpid()
         * too; otherwise the daemon's view of the child is unknown, and a slot
         * under a wrong pid would be freed under the child or outlive it.
         */
        if (!chan->pid_local)
                return -ECHILD;
        *ret_pid = getpid();
        return 0;
}

static inline bool chan_deleted(const shmbus_channel *chan) {
        return atomic_load_explicit(&chan->ring.ctl->deleted, memory_order_relaxed) ==
               SHMBUS_CTL_DELETED;
}

/* Whether @gen is this process's: a plain load, free enough for every call. */
static inline bool gen_is_ours(unsigned gen) {
        return gen == shmbus__proc_gen_fast();
}

static inline int pub_check(const shmbus_pub *pub, int timeout_ms) {
        if (!gen_is_ours(pub->gen))
                return -ECHILD;
        if (timeout_ms < -1)
                return -EINVAL;
        if (chan_deleted(pub->chan))
                return -EIDRM;
        return 0;
}

/* Evicted (or freed by the daemon for any reason): the slot is no longer ours to use. */
static inline int sub_check(const shmbus_sub *sub) {
        if (!gen_is_ours(sub->gen))
                return -ECHILD;
        if (atomic_load_explicit(&sub->rs.slot->state, memory_order_relaxed) != SHMBUS_SLOT_ACTIVE)
                return -ECONNABORTED;
        return 0;
}

/* ---- publishers ------------------------------------------------------------------------- */

SHMBUS_EXPORT int shmbus_pub_new(shmbus_channel *chan, shmbus_pub **ret_pub) {
        _cleanup_free_ shmbus_pub *p = NULL;
        pid_t pid;
        int r;

        if (!chan || !ret_pub)
                return -EINVAL;
        if (!(chan->flags & SHMBUS_OPEN_PUBLISH) || (chan->flags & SHMBUS_OPEN_INSPECT))
                return -EACCES;
        r = chan_slot_pid(chan, &pid);
        if (r < 0)
                return r;
        if (chan_deleted(chan))
                return -EIDRM;
        p = shmbus__calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        r = shmbus__ring_pub_join(&chan->ring, &p->rp, pid, getuid());
        if (r < 0)
                return r;
        p->gen = shmbus__proc_gen();
        p->chan = shmbus_channel_ref(chan);
        *ret_pub = TAKE_PTR(p);
        return 0;
}

SHMBUS_EXPORT shmbus_pub *shmbus_pub_free(shmbus_pub *pub) {
        if (!pub)
                return NULL;
        pub->notify = shmbus__notify_free(pub->notify);
        /* In a forked child the slot (and any open claim) is the parent's: leave it be. */
        if (gen_is_ours(pub->gen))
                shmbus__ring_pub_leave(&pub->rp);
        shmbus_channel_unref(pub->chan);
        free(pub);
        return NULL;
}

/*
 * The publisher's descriptor around a claim or a batch (pub_claim,
 * shmbus_pub_send_batch). Before: a call that may sleep on the futex counts
 * itself there, so not twice through the descriptor too; true if that
 * disarmed it.
 */
static bool pub_notify_before(shmbus_pub *pub, int timeout_ms) {
        return pub->notify && timeout_ms != 0 && shmbus__notify_unpark(pub->notify);
}

/*
 * After, with the call's result @r: room taken resets the descriptor; a
 * refusal for room (-EAGAIN, only a call that would not wait gets it) arms
 * it, and so does a sleep that gave up on a descriptor armed before it
 * (@rearm). Returns 1 if the park found the room there already (try again),
 * else 0.
 */
static int pub_notify_after(shmbus_pub *pub, int r, bool rearm, int timeout_ms) {
        if (!pub->notify)
                return 0;
        if (r >= 0) {
                shmbus__notify_unpark(pub->notify);
                return 0;
        }
        if ((r == -EAGAIN && timeout_ms == 0) || rearm)
                return shmbus__notify_park(pub->notify, pub->rp.full_end) > 0;
        return 0;
}

/*
 * Claim; with a descriptor, a claim refused for room parks it and a claim
 * that succeeds resets it. Without one, a single branch more than the ring.
 */
static int pub_claim(shmbus_pub *pub, size_t len, int timeout_ms, void **ret_buf) {
        bool rearm = pub_notify_before(pub, timeout_ms);
        int r;

        do
                r = shmbus__ring_claim(&pub->rp, len, ms_to_ns(timeout_ms), ret_buf);
        while (pub_notify_after(pub, r, rearm, timeout_ms) && r == -EAGAIN);
        return r;
}

SHMBUS_EXPORT int shmbus_pub_claim(shmbus_pub *pub, size_t len, int timeout_ms, void **ret_buf) {
        int r;

        if (!pub || !ret_buf)
                return -EINVAL;
        r = pub_check(pub, timeout_ms);
        if (r < 0)
                return r == -ECHILD ? r : shmbus__channel_check(pub->chan, r);
        return shmbus__channel_check(pub->chan, pub_claim(pub, len, timeout_ms, ret_buf));
}

SHMBUS_EXPORT int shmbus_pub_commit(shmbus_pub *pub) {
        if (!pub)
                return -EINVAL;
        if (!gen_is_ours(pub->gen))
                return -ECHILD;
        return shmbus__channel_check(pub->chan, shmbus__ring_commit(&pub->rp));
}

SHMBUS_EXPORT int shmbus_pub_abort(shmbus_pub *pub) {
        if (!pub)
                return -EINVAL;
        if (!gen_is_ours(pub->gen))
                return -ECHILD;
        return shmbus__channel_check(pub->chan, shmbus__ring_abort(&pub->rp));
}

SHMBUS_EXPORT int shmbus_pub_send(shmbus_pub *pub, const void *data, size_t len, int timeout_ms) {
        void *buf;
        int r;

        if (!pub || (!data && len))
                return -EINVAL;
        r = pub_check(pub, timeout_ms);
        if (r < 0)
                return r == -ECHILD ? r : shmbus__channel_check(pub->chan, r);
        r = pub_claim(pub, len, timeout_ms, &buf);
        if (r < 0)
                return shmbus__channel_check(pub->chan, r);
        memcpy(buf, data, len);
        return shmbus__channel_check(pub->chan, shmbus__ring_commit(&pub->rp));
}

/* ---- subscribers ------------------------------------------------------------------------ */

SHMBUS_EXPORT int shmbus_sub_new_ex(shmbus_channel *chan, unsigned int flags, uint64_t history,
                                    shmbus_sub **ret_sub) {
        _cleanup_free_ shmbus_sub *s = NULL;
        pid_t pid;
        int r;

        if (!chan || !ret_sub || (flags & ~SHMBUS_SUB_UNTETHERED))
                return -EINVAL;
        if (chan->flags & SHMBUS_OPEN_INSPECT)
                return -EACCES;
        r = chan_slot_pid(chan, &pid);
        if (r < 0)
                return r;
        if (chan_deleted(chan))
                return -EIDRM;
        s = shmbus__calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = shmbus__ring_sub_join_ex(&chan->ring, &s->rs, pid, getuid(),
                                     flags & SHMBUS_SUB_UNTETHERED ? SHMBUS_SUB_FLAG_UNTETHERED : 0,
                                     history);
        if (r < 0)
                return r;
        s->gen = shmbus__proc_gen();
        s->chan = shmbus_channel_ref(chan);
        s->spin_us = DEFAULT_SPIN_US;
        *ret_sub = TAKE_PTR(s);
        return 0;
}

SHMBUS_EXPORT int shmbus_sub_new(shmbus_channel *chan, shmbus_sub **ret_sub) {
        return shmbus_sub_new_ex(chan, 0, 0, ret_sub);
}

SHMBUS_EXPORT shmbus_sub *shmbus_sub_free(shmbus_sub *sub) {
        if (!sub)
                return NULL;
        sub->notify = shmbus__notify_free(sub->notify);
        if (gen_is_ours(sub->gen))
                shmbus__ring_sub_leave(&sub->rs);
        shmbus_channel_unref(sub->chan);
        free(sub);
        return NULL;
}

SHMBUS_EXPORT int shmbus_sub_set_spin(shmbus_sub *sub, uint32_t spin_us) {
        if (!sub)
                return -EINVAL;
        sub->spin_us = spin_us;
        return 0;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * A futex sleep took an armed descriptor's park over (@rearm): park it again
 * however the wait ended, so that a message after it still makes the
 * descriptor readable. After a message that costs at most one spurious
 * wake-up (the message at the parked position is the one returned).
 */
static int sub_wait_end(shmbus_sub *sub, bool rearm, int r) {
        if (rearm)
                (void)shmbus__notify_park(sub->notify, sub->rs.pos);
        return r;
}

/* Peek, polling for spin_us and then sleeping on the futex until the deadline. */
SHMBUS_EXPORT int shmbus_sub_peek(shmbus_sub *sub, const void **ret_data, size_t *ret_len,
                                  int timeout_ms) {
        int64_t deadline = -1, spin_end = 0;
        uint32_t polls = 0;
        bool rearm = false;
        int r;

        if (!sub || !ret_data || !ret_len || timeout_ms < -1)
                return -EINVAL;
        for (;;) {
                /*
                 * A broken channel (sigbus.h) reads as zeros, its slot as freed:
                 * say broken, not evicted. Checked after the peek too, for what
                 * the peek read.
                 */
                r = sub_check(sub);
                if (r < 0)
                        return r == -ECHILD ? r : shmbus__channel_check(sub->chan, r);
                r = shmbus__channel_check(sub->chan,
                                          shmbus__ring_peek(&sub->rs, ret_data, ret_len));
                if (r != -EAGAIN)
                        return sub_wait_end(sub, rearm, r);
                /* Empty: only now is it worth asking whether more can ever come. */
                if (chan_deleted(sub->chan))
                        return sub_wait_end(sub, rearm, -EIDRM);
                if (timeout_ms == 0) {
                        /* Drained: the descriptor, if any, waits for the next message. */
                        if (sub->notify && shmbus__notify_park(sub->notify, sub->rs.pos) > 0)
                                continue;
                        return r;
                }

                if (deadline == -1) {
                        int64_t now = shmbus__now_ns();

                        spin_end = now + (int64_t)sub->spin_us * 1000;
                        if (timeout_ms > 0)
                                deadline = now + ms_to_ns(timeout_ms);
                        else
                                deadline = INT64_MAX;
                }
                /* Poll the clock only every 64 spins: the ring check is the cheap part. */
                if (++polls % 64 != 0) {
                        cpu_relax();
                        continue;
                }
                int64_t now = shmbus__now_ns();
                if (now >= deadline)
                        return sub_wait_end(sub, rearm, -ETIMEDOUT);
                if (now < spin_end) {
                        cpu_relax();
                        continue;
                }
                /* A futex sleeper counts itself: not twice, through the descriptor too. */
                if (sub->notify)
                        rearm |= shmbus__notify_unpark(sub->notify);
                r = shmbus__ring_wait_data(&sub->rs, deadline - now);
                if (r < 0 && r != -ETIMEDOUT)
                        return sub_wait_end(sub, rearm, shmbus__channel_check(sub->chan, r));
        }
}

SHMBUS_EXPORT int shmbus_sub_release(shmbus_sub *sub) {
        if (!sub)
                return -EINVAL;
        if (!gen_is_ours(sub->gen))
                return -ECHILD;
        return shmbus__channel_check(sub->chan, shmbus__ring_release(&sub->rs));
}

SHMBUS_EXPORT ssize_t shmbus_sub_recv(shmbus_sub *sub, void *buf, size_t size, int timeout_ms) {
        const void *data;
        size_t len;
        int r;

        if (!sub || (!buf && size) || timeout_ms < -1)
                return -EINVAL;
        for (;;) {
                r = shmbus_sub_peek(sub, &data, &len, timeout_ms);
                if (r < 0)
                        return r;
                if (len > size) {
                        /* Leave the message where it is: the caller retries with more room. */
                        shmbus__ring_unpeek(&sub->rs);
                        return -EMSGSIZE;
                }
                memcpy(buf, data, len);
                r = shmbus__channel_check(sub->chan, shmbus__ring_release(&sub->rs));
                if (r == -ESTALE)
                        continue; /* overwritten while we copied: take the next one */
                if (r < 0)
                        return r;
                return (ssize_t)len;
        }
}

SHMBUS_EXPORT uint64_t shmbus_sub_lost(const shmbus_sub *sub) {
        return sub ? sub->rs.lost : 0;
}

SHMBUS_EXPORT uint64_t shmbus_sub_received(const shmbus_sub *sub) {
        return sub ? sub->rs.received : 0;
}

SHMBUS_EXPORT uint64_t shmbus_sub_seq(const shmbus_sub *sub) {
        const struct shmbus_ring_sub *rs;

        if (!sub)
                return UINT64_MAX;
        rs = &sub->rs;
        /* Numbers are contiguous, so the borrowed one is within 2^32 after the one expected. */
        if (rs->borrowed)
                return rs->next_seq + (uint32_t)((uint32_t)rs->borrow_seq - (uint32_t)rs->next_seq);
        return rs->received ? rs->next_seq - 1 : UINT64_MAX;
}

SHMBUS_EXPORT int shmbus_sub_fd(shmbus_sub *sub) {
        int r;

        if (!sub)
                return -EINVAL;
        if (!gen_is_ours(sub->gen))
                return -ECHILD;
        if (!sub->notify) {
                r = shmbus__notify_new_sub(&sub->rs, &sub->notify);
                if (r < 0)
                        return r;
        }
        return shmbus__notify_fd(sub->notify);
}

SHMBUS_EXPORT int shmbus_pub_fd(shmbus_pub *pub) {
        int r;

        if (!pub)
                return -EINVAL;
        if (!gen_is_ours(pub->gen))
                return -ECHILD;
        if (!pub->notify) {
                r = shmbus__notify_new_pub(&pub->rp, &pub->notify);
                if (r < 0)
                        return r;
        }
        return shmbus__notify_fd(pub->notify);
}

uint64_t shmbus__sub_position(const shmbus_sub *sub) {
        return sub->rs.pos;
}

uint64_t shmbus__sub_last_seq(const shmbus_sub *sub) {
        return sub->rs.next_seq - 1;
}

/* ---- for shmbus-bridge (docs/BRIDGE.md) ------------------------------------------------- */

int shmbus__pub_set_origin_mark(shmbus_pub *pub, bool on) {
        /*
         * A channel made by a library of layout minor 0 or 1 may have readers that do
         * not know the mark: they would take a marked len for corruption.
         */
        if (on && pub->chan->ring.ctl->layout_minor < 2)
                return -EPROTO;
        pub->rp.mark = on ? SHMBUS_REC_MARK : 0;
        return 0;
}

uint64_t shmbus__pub_claim_seq(const shmbus_pub *pub) {
        const struct shmbus_ring *r = &pub->chan->ring;
        const struct shmbus_rec *rec;
        uint64_t tail_seq;
        uint32_t low;

        assert(pub->rp.claimed);
        /* Records are 16-aligned (layout.h): the cast through void * says so. */
        rec = (const struct shmbus_rec *)(const void *)(r->data + (pub->rp.claim_pos & r->mask));
        low = rec->seq;
        /* The claim word's seq is past our claim's and within 2^32 of it. */
        tail_seq = __atomic_load_n(&r->ctl->tail.s.seq, __ATOMIC_ACQUIRE);
        return tail_seq - (uint32_t)((uint32_t)tail_seq - low);
}

uint64_t shmbus__pub_claim_pos(const shmbus_pub *pub) {
        assert(pub->rp.claimed);
        return pub->rp.claim_pos;
}

bool shmbus__sub_last_marked(const shmbus_sub *sub) {
        return sub->rs.borrow_marked;
}

shmbus_channel *shmbus__sub_channel(const shmbus_sub *sub) {
        return sub->chan;
}

/*
 * ---- batches (issue 17) ----
 * Several small messages with one claim and one position publication: the ring
 * does the work (shmbus__ring_send_batch, shmbus__ring_recv_batch); these are
 * the public entry points with the same checks as single sends and receives
 * (another process's object, a deleted, broken or evicted channel).
 */

SHMBUS_EXPORT int shmbus_pub_send_batch(shmbus_pub *pub, const void *const *msgs,
                                        const size_t *lens, size_t n, int timeout_ms) {
        int64_t timeout_ns, deadline;
        size_t sent = 0;
        bool rearm = false;
        int r = 0;

        if (!pub || (n && (!msgs || !lens)) || n > INT_MAX)
                return -EINVAL;
        r = pub_check(pub, timeout_ms);
        if (r < 0)
                return r == -ECHILD ? r : shmbus__channel_check(pub->chan, r);
        /* All or nothing for bad arguments: check every message before sending any. */
        for (size_t i = 0; i < n; i++) {
                if (!msgs[i] || lens[i] == 0)
                        return -EINVAL;
                if (lens[i] > pub->rp.ring->max_msg)
                        return -EMSGSIZE;
        }
        if (n == 0)
                return 0; /* sends nothing, and leaves the descriptor as it is */
        timeout_ns = ms_to_ns(timeout_ms);
        deadline = timeout_ns > 0 ? shmbus__now_ns() + timeout_ns : -1;
        rearm = pub_notify_before(pub, timeout_ms);
        while (sent < n) {
                /* The timeout is the whole call's: later rounds get what is left of it. */
                if (sent > 0 && deadline >= 0) {
                        timeout_ns = deadline - shmbus__now_ns();
                        if (timeout_ns < 0)
                                timeout_ns = 0;
                }
                r = shmbus__ring_send_batch(&pub->rp, msgs + sent, lens + sent, n - sent,
                                            timeout_ns);
                if (r < 0)
                        break;
                sent += (size_t)r;
        }
        /* A park that finds the room there leaves the descriptor readable: the caller tries. */
        (void)pub_notify_after(pub, r, rearm, timeout_ms);
        if (r < 0)
                return sent ? (int)sent : shmbus__channel_check(pub->chan, r);
        return (int)sent;
}

SHMBUS_EXPORT int shmbus_sub_recv_batch(shmbus_sub *sub, void *buf, size_t buf_len, size_t *lens,
                                        size_t max_n, int timeout_ms) {
        const void *data;
        size_t len;
        int r;

        if (!sub || (!buf && buf_len) || !lens || max_n == 0)
                return -EINVAL;
        for (;;) {
                /* Wait for the first message as a single receive would, then take it in the batch.
                 */
                r = shmbus_sub_peek(sub, &data, &len, timeout_ms);
                if (r < 0)
                        return r;
                shmbus__ring_unpeek(&sub->rs);
                r = shmbus__ring_recv_batch(&sub->rs, buf, buf_len, lens,
                                            max_n > INT_MAX ? INT_MAX : max_n);
                /* Nothing left: every message there was overwritten while copied. */
                if (r != -EAGAIN)
                        return r < 0 ? shmbus__channel_check(sub->chan, r) : r;
        }
}
