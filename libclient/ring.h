/* SPDX-License-Identifier: MIT */
/*
 * The channel ring: claim/commit/abort and batches for publishers,
 * peek/release and batches for subscribers, futex wake-ups, and the unblock
 * operation that pads over a claim whose writer died. It works on two plain
 * memory regions (ctl and data), so tests can run it on malloc'd memory;
 * channel.c maps real files onto it.
 *
 * The ring never trusts shared memory: geometry is copied at attach time and
 * every length read from a record is bounds-checked before it is used.
 * docs/ORDERING.md gives the memory-ordering argument for every step here.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "layout.h"

/* What a caller asks for when a channel is created. */
struct shmbus_ring_geom {
        uint64_t data_size; /* power of two in [SHMBUS_DATA_MIN, SHMBUS_DATA_MAX] */
        uint32_t max_msg;   /* 1 .. data_size / 4 */
        uint32_t policy;    /* SHMBUS_POLICY_* */
        uint32_t max_subs;  /* 1 .. SHMBUS_SLOTS_MAX */
        uint32_t max_pubs;  /* 1 .. SHMBUS_SLOTS_MAX */
        const char *name;   /* at most SHMBUS_NAME_MAX bytes */
};

/* A validated, process-local view of a channel. Geometry is copied, never re-read. */
struct shmbus_ring {
        struct shmbus_ctl *ctl;
        uint8_t *data;
        uint64_t size; /* data_size */
        uint64_t mask; /* size - 1 */
        uint32_t max_msg;
        uint32_t policy;
        uint32_t max_subs;
        uint32_t max_pubs;
        struct shmbus_sub_slot *subs;
        struct shmbus_pub_slot *pubs;
        /*
         * The channel's eventfd, which shmbusd hands to every member with the
         * channel (docs/EVENTS.md, "One hop"), or -1; and its generation: the
         * `sleeping` value of a subscriber parked on it, >= 2, or 0. The channel
         * object (channel.c) owns and closes the descriptor; the ring writes it.
         */
        int notify_fd;
        uint32_t notify_gen;
        /* Set once two writes to it took NOTIFY_WRITE_SLOW_NS (ring.c): wake through the futex. */
        _Atomic bool notify_off;
};

struct shmbus_ring_pub {
        struct shmbus_ring *ring;
        struct shmbus_pub_slot *slot;
        uint64_t head;        /* local copy of the horizon: see head_recompute() in ring.c */
        uint64_t claim_begin; /* what our slot's claim_begin says (claim_pos or its pad) */
        uint64_t claim_pos;   /* position of the open claim, valid while claimed */
        uint32_t claim_len;
        uint32_t mark; /* SHMBUS_REC_MARK on every record, or 0 (layout.h) */
        bool claimed;
        uint64_t full_end; /* the end a claim refused with -EAGAIN needed (notifier.c) */
};

struct shmbus_ring_sub {
        struct shmbus_ring *ring;
        struct shmbus_sub_slot *slot;
        uint64_t pos;       /* next record to read */
        uint64_t published; /* the position last stored in the slot */
        uint64_t next_seq;  /* message number expected next */
        uint64_t received;  /* local copies of the slot counters (single writer) */
        uint64_t bytes;
        uint64_t lost;
        uint64_t corrupt;
        /*
         * Validate every read against being lapped (the seqlock check): on an
         * overwrite channel, for an untethered subscriber, and for a history
         * subscriber on a block channel until it reaches protect_from, the
         * tail when its position joined the horizon (docs/ORDERING.md).
         */
        bool lossy;
        bool untethered;
        bool protecting;
        uint64_t protect_from;
        /*
         * The empty ring as peek last confirmed it against the claim word: the
         * stamp found at idle_pos when the tail was there too. Until that word
         * changes, peek answers -EAGAIN without reading the claim word (see
         * sub_idle in ring.c).
         */
        uint64_t idle_pos;
        uint64_t idle_stamp;
        uint32_t idle_polls;
        /* The borrowed record between peek and release. */
        bool borrowed;
        uint64_t borrow_pos;
        uint64_t borrow_next; /* position after the borrowed record */
        uint64_t borrow_seq;
        uint32_t borrow_len;
        bool borrow_marked; /* the last record peeked carried SHMBUS_REC_MARK */
};

size_t shmbus__ring_ctl_size(uint32_t max_subs, uint32_t max_pubs);
int shmbus__ring_geom_check(const struct shmbus_ring_geom *g);
int shmbus__ring_format(void *ctl, size_t ctl_len, void *data, size_t data_len,
                        const struct shmbus_ring_geom *g);
int shmbus__ring_attach(struct shmbus_ring *r, void *ctl, size_t ctl_len, void *data,
                        size_t data_len);
/* Whether our own view is consistent; reads no shared memory, so fit for assert(). */
bool shmbus__ring_is_sane(const struct shmbus_ring *r);
uint64_t shmbus__ring_tail_pos(const struct shmbus_ring *r);

int shmbus__ring_pub_join(struct shmbus_ring *r, struct shmbus_ring_pub *p, pid_t pid, uid_t uid);
void shmbus__ring_pub_leave(struct shmbus_ring_pub *p);
int shmbus__ring_claim(struct shmbus_ring_pub *p, size_t len, int64_t timeout_ns, void **ret_buf);
int shmbus__ring_commit(struct shmbus_ring_pub *p);
int shmbus__ring_abort(struct shmbus_ring_pub *p);
int shmbus__ring_send_batch(struct shmbus_ring_pub *p, const void *const *msgs, const size_t *lens,
                            size_t n, int64_t timeout_ns);

int shmbus__ring_sub_join(struct shmbus_ring *r, struct shmbus_ring_sub *s, pid_t pid, uid_t uid);
/*
 * Join with SHMBUS_SUB_FLAG_* @flags, starting @history message numbers back
 * (UINT64_MAX: the oldest record still in the ring; 0: the tail).
 */
int shmbus__ring_sub_join_ex(struct shmbus_ring *r, struct shmbus_ring_sub *s, pid_t pid, uid_t uid,
                             uint32_t flags, uint64_t history);
void shmbus__ring_sub_leave(struct shmbus_ring_sub *s);
int shmbus__ring_peek(struct shmbus_ring_sub *s, const void **ret_data, size_t *ret_len);
int shmbus__ring_release(struct shmbus_ring_sub *s);
void shmbus__ring_unpeek(struct shmbus_ring_sub *s);
int shmbus__ring_recv_batch(struct shmbus_ring_sub *s, void *buf, size_t buf_len, size_t *lens,
                            size_t max_n);
int shmbus__ring_wait_data(struct shmbus_ring_sub *s, int64_t timeout_ns);
bool shmbus__ring_sub_has_data(const struct shmbus_ring_sub *s);

/* Recovery, used by the daemon (and by tests): see docs/ORDERING.md "Unblock". */
bool shmbus__ring_pending(const struct shmbus_ring *r, uint64_t pos, uint64_t *ret_stamp);
int shmbus__ring_unblock(struct shmbus_ring *r, uint64_t pos);
uint32_t shmbus__ring_claim_owner(const struct shmbus_ring *r, uint64_t pos);
void shmbus__ring_sub_slot_release(struct shmbus_ring *r, uint32_t idx);
/* Take an active subscriber slot out of the horizon (the daemon, issue 16). True if it did. */
bool shmbus__ring_sub_slot_evict(struct shmbus_ring *r, uint32_t idx);
void shmbus__ring_pub_slot_release(struct shmbus_ring *r, uint32_t idx);
void shmbus__ring_wake_all(struct shmbus_ring *r);
void shmbus__ring_slot_clear_pid(_Atomic uint32_t *pid_word, uint32_t dead_pid);

/* Inspection: the records still in the ring, oldest first (see ring.c). */
typedef int (*shmbus__walk_fn)(void *ctx, const void *data, uint32_t len, uint64_t seq, bool stale);
int shmbus__ring_walk(const struct shmbus_ring *r, uint64_t to, shmbus__walk_fn fn, void *ctx);

/*
 * The futex and membarrier calls this process has made on channel words since
 * it started, for shmbus-bench: counted only on the sleep and wake paths, so
 * the counting costs the fast path nothing.
 */
struct shmbus_ring_syscalls {
        uint64_t futex_waits;
        uint64_t futex_wakes;
        uint64_t membarriers;
};
void shmbus__ring_syscalls(struct shmbus_ring_syscalls *ret);

/* Monotonic clock in nanoseconds. */
int64_t shmbus__now_ns(void);

/*
 * For waiters parked on a descriptor (notifier.c): the same count and flag as
 * a futex sleeper, the conditions it waits for, checked from another thread,
 * and the sleeper's heavy fence. See docs/EVENTS.md.
 */
bool shmbus__ring_data_at(const struct shmbus_ring *r, uint64_t pos);
bool shmbus__ring_space_for(struct shmbus_ring *r, const struct shmbus_pub_slot *self,
                            uint64_t end);
void shmbus__ring_waiter_count(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping);
/* The same, flagged @flag: 1, or a generation >= 2 for a subscriber parked on the channel's
 * eventfd. */
void shmbus__ring_waiter_count_as(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping,
                                  uint32_t flag);
void shmbus__ring_waiter_uncount(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping);
bool shmbus__ring_fence_heavy(void);
bool shmbus__ring_ready_soon(bool (*ready)(void *ctx), void *ctx);
