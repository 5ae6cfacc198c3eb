/* SPDX-License-Identifier: MIT */
/*
 * The format of shmbus-bridge's route state files (docs/BRIDGE.md): where a
 * route stands and its statistics. shmbus-bridge maps them; `shmbus-bridge
 * --stats` and shmbus-cli's channel list read them with pread(). No NATS
 * types here, so that the CLI can include it.
 *
 * Invariants: fixed-width fields only; a reader checks magic, version and
 * size, and terminates every string it uses (the file is untrusted input).
 */
#pragma once

#include <stdint.h>

#define BRIDGE_SUBJECT_MAX 127
#define BRIDGE_HOST_MAX    63
#define BRIDGE_ORIGINS_MAX 32
#define BRIDGE_ORIGIN_MAX  112 /* bytes of an origin key, with its NUL */

enum bridge_kind {
        BRIDGE_EXPORT = 1, /* channel -> NATS subject */
        BRIDGE_IMPORT = 2, /* NATS subject -> channel */
};

enum bridge_mode {
        BRIDGE_CORE = 1,      /* core NATS: at most once, every loss counted */
        BRIDGE_JETSTREAM = 2, /* JetStream: at least once, duplicates suppressed */
};

/*
 * Statistics of one route, in its state file, so that `shmbus-bridge --stats`
 * and shmbus-cli read them from outside while the route runs. Written by the
 * route's thread only, with relaxed atomic stores (readers take a snapshot).
 */
struct bridge_stats {
        uint64_t msgs;        /* carried: exported (jetstream: stored), or imported and committed */
        uint64_t bytes;       /* their payload bytes */
        uint64_t lost_shmbus; /* export: channel messages the route never read (seq gaps) */
        uint64_t dropped_nats;   /* export: NATS refused to take (buffer full while disconnected) */
        uint64_t lost_nats;      /* import: messages missing in the origin's numbering */
        uint64_t duplicates;     /* suppressed: by the stream (export) or by seq (import) */
        uint64_t skipped_marked; /* export: records imported from NATS, never sent back */
        uint64_t skipped_own;    /* import: messages this host exported itself */
        uint64_t reconnects;     /* NATS reconnections seen by the route */
        uint64_t resent;         /* export: messages published again after a failed batch */
        uint64_t errors;         /* other failures (each logged) */
        uint64_t age_count;      /* import: end-to-end ages measured */
        uint64_t age_sum_ns;     /* their sum */
        uint64_t age_max_ns;     /* the largest */
        uint64_t age_last_ns;    /* the latest */
        uint64_t updated_ns;     /* CLOCK_REALTIME of the last update */
        uint64_t reserved[8];
};

/* An export route's acknowledged position (struct bridge_state's acked). */
struct bridge_pos {
        uint64_t incarnation; /* the channel's created_ns */
        uint64_t seq;         /* every message up to this seq is acknowledged (or skipped) */
        uint64_t n;           /* the route's count of exported messages up to there */
        uint64_t sent;        /* 1 + the seq of the last message exported up to there */
};

/* One origin an import route has heard from: host/channel/incarnation. */
struct bridge_origin {
        char key[BRIDGE_ORIGIN_MAX]; /* NUL-terminated; empty: free */
        uint64_t last_seq1; /* 1 + the origin channel's seq of the last message committed */
        uint64_t last_n;    /* the origin route's count of that message */
};

#define BRIDGE_STATE_MAGIC   UINT64_C(0x3154534742424d53) /* "SMBBGST1" little-endian */
#define BRIDGE_STATE_VERSION 2

/*
 * A route's state file, mapped shared: stores into it survive a kill -9 of
 * the bridge (they are in the page cache), so the route keeps its place
 * without a system call per message. A power cut may lose the last updates;
 * JetStream's de-duplication and the import side's seq check cover that.
 */
struct bridge_state {
        uint64_t magic;   /* BRIDGE_STATE_MAGIC */
        uint32_t version; /* BRIDGE_STATE_VERSION */
        uint32_t kind;    /* enum bridge_kind */
        uint32_t mode;    /* enum bridge_mode */
        int32_t pid;      /* the bridge process using it, for --stats */
        char channel[64];
        char subject[BRIDGE_SUBJECT_MAX + 1];
        char host[BRIDGE_HOST_MAX + 1];
        /*
         * Export: where the route stands, acked[acked_cur & 1]. A new position
         * is written whole into the other copy and published by one store of
         * acked_cur, so that a kill -9 never leaves half of one behind.
         */
        struct bridge_pos acked[2];
        uint64_t acked_cur;
        uint64_t acked_valid; /* 1 once acked means something */
        /* Import: the channel's created_ns when the pending claim below was made. */
        uint64_t incarnation;
        /* Import: the message being committed, resolved after a crash (import.c). */
        uint64_t pending_valid;
        uint64_t pending_origin; /* index in origins[] */
        uint64_t pending_seq;    /* the origin's seq */
        uint64_t pending_n;
        uint64_t pending_chan_seq; /* the seq our claim got in the local channel */
        uint64_t pending_chan_pos; /* and its position in the ring */
        uint64_t pending_stream_seq;
        struct bridge_origin origins[BRIDGE_ORIGINS_MAX];
        struct bridge_stats stats;
};

static inline const struct bridge_pos *bridge_acked(const struct bridge_state *st) {
        return &st->acked[__atomic_load_n(&st->acked_cur, __ATOMIC_ACQUIRE) & 1];
}

/* Publish @pos as the route's position (the route's thread only). */
static inline void bridge_acked_set(struct bridge_state *st, const struct bridge_pos *pos) {
        uint64_t next = st->acked_cur + 1;

        st->acked[next & 1] = *pos;
        __atomic_store_n(&st->acked_cur, next, __ATOMIC_RELEASE);
        __atomic_store_n(&st->acked_valid, 1, __ATOMIC_RELEASE);
}
