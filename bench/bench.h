/* SPDX-License-Identifier: MIT */
/*
 * shmbus-bench: one-way links over every transport measured, behind one small
 * interface so that each scenario (ping-pong, streaming, fan-in, fan-out) runs
 * the same code for shmbus and for every baseline.
 *
 * A link is created by the coordinator before it forks; each role process then
 * opens the end it uses (receivers first, so nothing sent is missed), moves
 * messages, and closes it. Every benchmark process is a child: the coordinator
 * never holds a transport end, so a runtime that must not be forked (iceoryx)
 * is only ever set up in a leaf process.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How a receiver waits: poll forever, poll a while then sleep, or sleep at once. */
enum wait_mode { WAIT_BUSY, WAIT_SPIN, WAIT_SLEEP };

/* The spin phase of WAIT_SPIN, as shmbus' default reader would use it. */
#define BENCH_SPIN_US 50

/* Ring bytes of every shared-memory link unless a scenario asks for others (matrix). */
#define BENCH_RING_BYTES ((size_t)1 << 20)

struct link;

struct link_ops {
        const char *name;
        /* Which wait modes the transport has; a scenario skips the others. */
        unsigned modes; /* bit (1 << enum wait_mode) */
        /* Can several processes send on one link (fan-in)? */
        bool multi_tx;
        /* Can several processes receive every message of one link (fan-out)? */
        bool multi_rx;
        int (*create)(struct link *l);
        int (*open_rx)(struct link *l);
        int (*open_tx)(struct link *l);
        int (*send)(struct link *l, const void *buf, size_t len);
        /* Receives one message of at most cap bytes; returns its length. */
        ssize_t (*recv)(struct link *l, void *buf, size_t cap);
        /* Optional: hand over what send has held back (batching links), after the last send. */
        int (*flush)(struct link *l);
        void (*close)(struct link *l);
        void (*destroy)(struct link *l);
};

struct link {
        const struct link_ops *ops;
        enum wait_mode mode;
        size_t msg_size; /* every message of a run has this size */
        size_t capacity; /* ring bytes (shared-memory links; a power of two) */
        int index;       /* distinguishes links of one run (names) */
        /* Coordinator state, inherited by the roles. */
        int fd[2];
        void *shared;
        size_t shared_len;
        char name[64];
        /* Role-local state, set by open_rx/open_tx. */
        void *local;
        uint64_t seen;
};

extern const struct link_ops link_spsc, link_spsc_ro, link_spsc32, link_futex, link_pipe, link_unix,
        link_shmbus, link_shmbus_rw, link_shmbus_zc, link_shmbus_batch, link_iceoryx;

/* The directory shmbus channels live in for this run. */
extern char bench_dir[256];

int64_t bench_now_ns(void);
void bench_cpu_relax(void);
int bench_futex_wait(_Atomic uint32_t *word, uint32_t val);
void bench_futex_wake(_Atomic uint32_t *word);

/* Has this build an iceoryx client, and does a RouDi answer? */
bool bench_iceoryx_available(void);
