/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory layout of a shmbus channel. This file is the only place the
 * layout is defined; docs/LAYOUT.md explains it and docs/ORDERING.md argues why
 * the protocol on top of it is correct.
 *
 * A channel is two files under the shm directory:
 *
 *   NAME.ctl   struct shmbus_ctl, then max_subs subscriber slots, then max_pubs
 *              publisher slots. Mapped read-write by every member of the channel
 *              (subscribers must publish their position and register as waiters).
 *   NAME.data  the ring: data_size bytes, a power of two, of records. Mapped
 *              read-write by publishers and read-only by subscribers, so a
 *              subscriber can never forge or damage a message.
 *
 * Invariants:
 *   - Only offsets and positions live in shared memory, never pointers.
 *   - A position is a 64-bit byte count that only grows; offset = pos & (size - 1).
 *   - Records are 16-byte aligned and never cross the end of the data region: a
 *     claim that would cross writes a padding record to the end and places its
 *     record at offset 0, so every multiple of data_size is a record boundary.
 *   - Every field read from shared memory is untrusted: geometry is copied and
 *     validated once at attach time, and lengths are bounds-checked on every read.
 *   - Every hot word sits on its own 128-byte line with a single writer where the
 *     protocol allows it (prefetchers pull cache lines in pairs).
 */
#pragma once

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHMBUS_CTL_MAGIC    UINT64_C(0x314c544353424d53) /* "SMBSCTL1" little-endian */
#define SHMBUS_LAYOUT_MAJOR 2
#define SHMBUS_LAYOUT_MINOR 2
#define SHMBUS_LINE         128
#define SHMBUS_NAME_MAX     63

/*
 * The value of ctl->deleted once the daemon has deleted the channel (2.1).
 * One 64-bit value, not "non-zero": a member scribbling bytes on ctl must
 * not end the channel for everyone by accident (test-faults does just that).
 */
#define SHMBUS_CTL_DELETED UINT64_C(0x444554454c454421) /* "!DELETED" little-endian */

/* Ring geometry limits: the data region is 4 KiB .. 1 GiB, a message at most 1/4 of it. */
#define SHMBUS_DATA_MIN  (UINT64_C(1) << 12)
#define SHMBUS_DATA_MAX  (UINT64_C(1) << 30)
#define SHMBUS_SLOTS_MAX 1024

/* The same values as in shmbus.h (an identical redefinition is allowed). */
#define SHMBUS_POLICY_BLOCK 0 /* lossless: publishers wait for the slowest subscriber */
#define SHMBUS_POLICY_OVERWRITE \
        1 /* publishers never wait for subscribers; lapped ones count losses */

/*
 * Low bits of a record stamp. Positions are 16-aligned, so the low four bits are
 * free. A committed data record has none set.
 */
#define SHMBUS_STAMP_CLAIMED UINT64_C(1) /* claimed, being written, not yet readable */
#define SHMBUS_STAMP_PAD     UINT64_C(2) /* committed padding: readers skip it */
#define SHMBUS_STAMP_SEQ     UINT64_C(4) /* on a pad: it used up message number seq */
#define SHMBUS_STAMP_BITS    UINT64_C(15)
/* CLAIMED|PAD: a padding header being written, before its len (layout 2). */
#define SHMBUS_STAMP_WRITING (SHMBUS_STAMP_CLAIMED | SHMBUS_STAMP_PAD)

/*
 * One record header, followed by len payload bytes, rounded up to 16 so that
 * the space left before the end of the ring is always a multiple of 16 and so
 * always fits a padding header. The stamp is the record's own position with
 * state bits: a reader at position P accepts the record only if stamp == P
 * (data) or stamp == P | PAD [| SEQ] (skip). Any other value is an older lap, a
 * claim in progress, or garbage. seq holds the low 32 bits of the message
 * number; readers rebuild the full number (docs/LAYOUT.md).
 */
struct shmbus_rec {
        _Atomic uint64_t stamp; /* position | SHMBUS_STAMP_*; the commit point */
        uint32_t seq;           /* low 32 bits of the channel-wide message number */
        uint32_t len;           /* payload bytes (for a pad: bytes after the header) */
};
/*
 * Bit 31 of a data record's len: the origin mark (layout minor 2). A publisher
 * that asked for it (shmbus-bridge importing from NATS) sets it on its records
 * so that an exporting bridge can tell them from local messages and never
 * send them back out. len is at most max_msg <= 1 GiB, so the bit is free;
 * readers mask it off the len they already load, which costs nothing.
 */
#define SHMBUS_REC_MARK     UINT32_C(0x80000000)
#define SHMBUS_REC_LEN_MASK UINT32_C(0x7fffffff)
#define SHMBUS_REC_HDR      ((uint64_t)sizeof(struct shmbus_rec))
#define SHMBUS_REC_ALIGN    UINT64_C(16)

/*
 * The claim word: the next free position and the next message number, changed
 * together by one 16-byte compare-and-swap so that message numbers follow the
 * order of positions. Readers that only need the position load pos alone.
 */
__extension__ typedef unsigned __int128 shmbus_u128;

typedef union {
        shmbus_u128 word;
        struct {
                uint64_t pos; /* next position to claim */
                uint64_t seq; /* next message number */
        } s;
} shmbus_tail;

enum {
        SHMBUS_SLOT_FREE = 0,
        SHMBUS_SLOT_ACTIVE = 1,
        /*
         * Layout 2.1: the daemon took the slot from a subscriber that held
         * publishers back too long. Not in the horizon, not free either: the
         * pid stays until the owner notices (its next call) or dies, so the
         * slot is never reused under an owner that still writes to it.
         */
        SHMBUS_SLOT_EVICTED = 2,
};

/* Subscriber slot flags (layout 2.1), set at join before the slot turns ACTIVE. */
#define SHMBUS_SUB_FLAG_UNTETHERED UINT32_C(1) /* not in the horizon: may be lapped */
/*
 * The owner checks its slot's state on every call (a 2.1 library), so the
 * daemon may evict it: an older reader would go on reading, unvalidated, what
 * publishers then overwrite.
 */
#define SHMBUS_SUB_FLAG_EVICTABLE UINT32_C(2)

/*
 * Slot ownership: a process owns a slot from the moment it CASes the slot's pid
 * from 0 to its own; state turns ACTIVE once the slot is initialised. Release
 * sets state FREE, then pid 0. So a slot with a pid always has a known owner,
 * and the daemon can free the slots of dead processes at any moment.
 */

/*
 * One subscriber. Written only by its owner, except state/pid/sleeping: the
 * daemon frees the slot of a dead owner and takes back its count of waiters.
 */
struct shmbus_sub_slot {
        _Atomic uint32_t state;    /* SHMBUS_SLOT_* */
        _Atomic uint32_t pid;      /* owner process, for liveness and status */
        _Atomic uint64_t pos;      /* everything before pos is consumed (release store) */
        _Atomic uint64_t received; /* messages delivered */
        _Atomic uint64_t bytes;    /* payload bytes delivered */
        _Atomic uint64_t lost;     /* messages lost to overwrite (or unblock) */
        _Atomic uint64_t corrupt;  /* corrupt records skipped */
        _Atomic uint32_t uid;      /* owner uid, for status */
        /*
         * Non-zero while counted in data_waiters (layout 2): 1, or the generation
         * (>= 2) of the channel's eventfd it is parked on (docs/EVENTS.md, "One hop").
         */
        _Atomic uint32_t sleeping;
        _Atomic uint32_t flags; /* SHMBUS_SUB_FLAG_* (layout 2.1) */
        uint8_t pad[SHMBUS_LINE - 60];
};

/* One publisher. Written only by its owner, except state/pid/sleeping (as above). */
struct shmbus_pub_slot {
        _Atomic uint32_t state;    /* SHMBUS_SLOT_* */
        _Atomic uint32_t pid;      /* owner process */
        _Atomic uint64_t msgs;     /* messages committed */
        _Atomic uint64_t bytes;    /* payload bytes committed */
        _Atomic uint64_t aborts;   /* claims aborted */
        _Atomic uint64_t waits;    /* times the publisher had to wait for space */
        _Atomic uint64_t full;     /* claims refused: ring full (-EAGAIN) or timed out */
        _Atomic uint32_t uid;      /* owner uid */
        _Atomic uint32_t sleeping; /* 1 while counted in space_waiters (layout 2) */
        /*
         * The bytes [claim_begin, claim_end) this publisher is claiming or holds,
         * stored before its claim CAS, and closed (end = begin) at commit or
         * abort: the daemon never pads over a claim whose owner's slot is still
         * active, and no publisher claims bytes an open claim a lap behind still
         * covers (layout 2: a layout-1 publisher never closed its range).
         */
        _Atomic uint64_t claim_begin;
        _Atomic uint64_t claim_end;
        uint8_t pad[SHMBUS_LINE - 72];
};

struct shmbus_ctl {
        /* Line 0: identity and geometry, written once at creation. */
        uint64_t magic;        /* SHMBUS_CTL_MAGIC */
        uint16_t layout_major; /* incompatible changes; readers reject unknown majors */
        uint16_t layout_minor; /* compatible additions */
        uint32_t header_size;  /* sizeof(struct shmbus_ctl) */
        uint64_t ctl_size;     /* size of the whole ctl file */
        uint64_t data_size;    /* size of the data file: a power of two */
        uint32_t max_msg;      /* largest payload a publisher may claim */
        uint32_t policy;       /* SHMBUS_POLICY_* */
        uint32_t max_subs;     /* subscriber slots after this struct */
        uint32_t max_pubs;     /* publisher slots after the subscriber slots */
        uint64_t created_ns;   /* CLOCK_REALTIME at creation */
        uint32_t sub_off;      /* offset of the subscriber slots in the ctl file */
        uint32_t pub_off;      /* offset of the publisher slots in the ctl file */
        char name[64];         /* NUL-terminated channel name, for inspection */

        /* The claim word: many writers, every claim. */
        alignas(SHMBUS_LINE) shmbus_tail tail;

        /*
         * The horizon no claim may run a whole ring past: a lower bound of the
         * tail, every subscriber's position (block policy) and every open
         * claim's start. Refreshed by publishers (head_recompute in ring.c).
         */
        alignas(SHMBUS_LINE) _Atomic uint64_t head_cache;

        /*
         * Readers sleep on data_futex; committing publishers bump it only if
         * data_waiters != 0, unblock always.
         */
        alignas(SHMBUS_LINE) _Atomic uint32_t data_futex;
        _Atomic uint32_t data_waiters; /* readers registered to sleep */

        /*
         * Publishers waiting for the horizon sleep on space_futex; readers (block
         * policy), committing publishers (overwrite policy) and slot release
         * bump it only if space_waiters != 0, unblock always.
         */
        alignas(SHMBUS_LINE) _Atomic uint32_t space_futex;
        _Atomic uint32_t space_waiters; /* publishers registered to sleep */

        /* Rare events and totals carried over from slots that were released. */
        alignas(SHMBUS_LINE) _Atomic uint64_t unblocked; /* stuck claims padded over */
        _Atomic uint64_t retired_msgs;                   /* msgs of released publishers */
        _Atomic uint64_t retired_bytes;                  /* bytes of released publishers */
        _Atomic uint64_t retired_aborts;                 /* aborts of released publishers */
        _Atomic uint64_t retired_lost;                   /* losses of released subscribers */
        _Atomic uint64_t reserved[1];                    /* zero */
        _Atomic uint64_t evicted;                        /* slow subscribers evicted (2.1) */
        _Atomic uint64_t deleted; /* SHMBUS_CTL_DELETED: deleted or replaced (2.1) */
};

static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
static_assert(sizeof(struct shmbus_rec) == 16, "record header is 16 bytes");
static_assert(offsetof(struct shmbus_rec, stamp) == 0, "stamp leads the record");
static_assert(sizeof(shmbus_tail) == 16, "claim word is 16 bytes");
static_assert(offsetof(shmbus_tail, s.pos) == 0, "pos is the low half of the claim word");
static_assert(sizeof(struct shmbus_sub_slot) == SHMBUS_LINE, "one line per subscriber");
static_assert(sizeof(struct shmbus_pub_slot) == SHMBUS_LINE, "one line per publisher");
static_assert(offsetof(struct shmbus_sub_slot, uid) == 48, "sub slot layout");
static_assert(offsetof(struct shmbus_pub_slot, uid) == 48, "pub slot layout");
static_assert(offsetof(struct shmbus_pub_slot, claim_begin) == 56, "pub slot claim range");
static_assert(offsetof(struct shmbus_sub_slot, sleeping) == 52, "sub slot sleeping flag");
static_assert(offsetof(struct shmbus_pub_slot, sleeping) == 52, "pub slot sleeping flag");
static_assert(offsetof(struct shmbus_sub_slot, flags) == 56, "sub slot flags (layout 2.1)");
static_assert(offsetof(struct shmbus_ctl, deleted) == 5 * SHMBUS_LINE + 56, "deleted word");
static_assert(offsetof(struct shmbus_ctl, name) == 64, "geometry layout");
static_assert(offsetof(struct shmbus_ctl, tail) == 1 * SHMBUS_LINE, "claim word line");
static_assert(offsetof(struct shmbus_ctl, head_cache) == 2 * SHMBUS_LINE, "head line");
static_assert(offsetof(struct shmbus_ctl, data_futex) == 3 * SHMBUS_LINE, "data futex line");
static_assert(offsetof(struct shmbus_ctl, space_futex) == 4 * SHMBUS_LINE, "space futex line");
static_assert(offsetof(struct shmbus_ctl, unblocked) == 5 * SHMBUS_LINE, "counters line");
static_assert(sizeof(struct shmbus_ctl) == 6 * SHMBUS_LINE, "ctl header is six lines");
