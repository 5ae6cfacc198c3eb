/* SPDX-License-Identifier: MIT */
/*
 * The broker: the object that ties the daemon together. It owns the control
 * socket, the channel registry, one peer per client connection, and its own
 * copy of the configuration. Control only: it never touches messages, except
 * to pad over a claim whose writer died (liveness.h). Invariants:
 *   - Every peer holds a pidfd of its process; when the process dies, the slots
 *     it held in every channel it opened are released (waking blocked
 *     publishers), whether or not it closed its connection first.
 *   - Every resource a client can make the broker allocate is bounded:
 *     connections, channels, request size, channels opened per peer.
 * Protocol: docs/PROTOCOL.md. The fields are for the daemon's modules
 * (registry, liveness, peer, ops); main.c and the fuzzers use only broker_*().
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>

#include "config.h"
#include "registry.h"

struct peer;
struct create_job;

/* Requests counted by op: one per entry of ops.c's table, and the last for any other. */
#define BROKER_OPS_COUNTED 16

/* What the broker has served since start-up (the "stats" op; docs/PROTOCOL.md). */
struct broker_counters {
        int64_t started_ns;                    /* CLOCK_MONOTONIC */
        uint64_t accepted;                     /* connections served */
        uint64_t refused;                      /* connections over a connection limit */
        uint64_t requests[BROKER_OPS_COUNTED]; /* by op */
        uint64_t failed;                       /* requests answered with an error */
};

struct broker {
        struct event_base *base;
        struct config cfg; /* shm_dir and socket_path are fixed for the broker's life */
        struct registry channels;
        int listen_fd;
        int shm_dirfd; /* the shm directory, resolved once at start-up (shmdir.h) */
        struct event *listen_ev;
        struct event *sweep_ev;
        struct event *accept_retry_ev; /* re-arms accepting after running out of descriptors */
        bool accept_starved;           /* accept is failing for want of descriptors (logged) */
        struct peer **peers;
        unsigned n_peers;
        unsigned n_refusing;           /* peers only held to be told they are over a limit */
        struct create_job *create_job; /* the channel being created off the loop (create.h) */
        uint64_t parked_seq;           /* orders parked requests (create.h) */
        struct broker_counters counters;
};

/* The broker owns @shm_dirfd (from shmdir_open()) from now on, even on failure. */
int broker_new(struct event_base *base, const struct config *cfg, int listen_fd, int shm_dirfd,
               struct broker **ret);
struct broker *broker_free(struct broker *b);
/* Swap in a new configuration (SIGHUP): limits and rules apply to new requests. */
void broker_set_config(struct broker *b, const struct config *cfg);
unsigned broker_n_channels(const struct broker *b);
/*
 * Serve @fd, a connected non-blocking SOCK_SEQPACKET socket, as if it had been
 * accepted (the broker owns it from now on). The fuzzer feeds requests this way.
 */
void broker_add_connection(struct broker *b, int fd);
