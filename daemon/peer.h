/* SPDX-License-Identifier: MIT */
/*
 * Peers: one per client connection. This module accepts connections, applies
 * the connection limits and the first-request deadline, reads requests and
 * hands them to ops.h, and notices when a client's process exits. Invariants:
 * a peer is in b->peers from peer_new() to peer_free(); a refused peer
 * (over a connection limit) is answered EUSERS once and never served; the
 * channels a peer has opened are remembered (up to PEER_CHANNELS_MAX) so its
 * slots there are released the moment its process exits.
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "layout.h"

#define PEER_CHANNELS_MAX 64
/*
 * Supplementary groups kept per peer. The kernel allows 65536 (256 KiB), and a
 * user with subordinate gids can have that many in a user namespace; kept
 * whole, every connection would cost the daemon that much. A peer in more is
 * judged by its lowest PEER_GROUPS_MAX (the kernel sorts them), logged.
 */
#define PEER_GROUPS_MAX 1024

struct broker;

struct peer {
        struct broker *broker;
        int fd;
        int pidfd;
        struct event *ev;
        struct event *pid_ev;
        pid_t pid;
        uid_t uid;
        gid_t gid;
        gid_t *groups; /* supplementary gids at connect time (SO_PEERGROUPS) */
        uint32_t n_groups;
        bool refuse; /* over a connection limit: answer the first request EUSERS, then close */
        struct event *deadline_ev; /* first_request_timeout_ms, until the first request */
        unsigned n_open;
        char open[PEER_CHANNELS_MAX][SHMBUS_NAME_MAX + 1];
        char *parked;        /* a request waiting for a channel's creation (create.h) */
        uint64_t parked_seq; /* when it was parked, to serve parked requests in order */
        char created[SHMBUS_NAME_MAX + 1]; /* a channel created for it off the loop */
};

/* Start accepting connections on b->listen_fd. */
int peer_listen(struct broker *b);
/* Serve the connected socket @fd (now the broker's), or close it if it may not be served. */
void peer_new(struct broker *b, int fd);
/* Serve the request @text of @p (closing @p if its reply cannot be sent). */
void peer_serve(struct peer *p, const char *text);
/* Drop @p from its broker, close its connection and free it. */
struct peer *peer_free(struct peer *p);
/* Who @p is, for ACLs: valid while @p is. */
struct who peer_who(const struct peer *p);
/* Remember that @p uses channel @name (it has just been handed its descriptors). */
void peer_note_open(struct peer *p, const char *name);
/* @p no longer uses channel @name (closed or deleted). */
void peer_forget(struct peer *p, const char *name);
