/* SPDX-License-Identifier: MIT */
/*
 * Creating large channels off the event loop. Allocating a channel's files
 * (posix_fallocate, so that a full tmpfs fails now and never with SIGBUS
 * later) takes about 1.3 to 2.9 s per GiB; done in the event loop, it held
 * every other client's request that long (issue 15). A channel of
 * CREATE_ASYNC_MIN_BYTES or more is created by one worker thread instead,
 * while the loop goes on serving.
 *
 * Invariants:
 *   - At most one creation runs at a time (its name is "pending"); it counts
 *     against max_channels and its creator's quotas as if it existed.
 *   - A request that needs what is pending (the pending name, or another
 *     large create) is parked: its peer stops being read, and the request is
 *     served again, in the order it was parked, once the creation is over.
 *     A parked peer reads nothing else, so replies stay in request order on
 *     every connection.
 *   - The worker touches only its job (the directory descriptor, the name,
 *     the geometry, the result); the loop learns it is done through a pipe.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "grants.h"
#include "ring.h"

/* About 5 ms of allocation: smaller channels are created in the loop. */
#define CREATE_ASYNC_MIN_BYTES (UINT64_C(4) << 20)

struct broker;
struct peer;

/* Is a creation running, and is it of @name (NULL: of anything)? */
bool create_pending(const struct broker *b, const char *name);
/* What the pending creation adds to @uid's use: 0 or 1 channels, and its bytes. */
void create_pending_use(const struct broker *b, uid_t uid, uint32_t *ret_channels,
                        uint64_t *ret_bytes);
/*
 * Create channel @name with geometry @g, of @bytes, for @p (granting
 * @grants, copied, and the slow-subscriber timeout @slow_ms if @has_slow),
 * whose request
 * @text is parked until the channel exists (or its creation failed, which
 * @p is then told). Return: 0, or -errno if no worker could be started.
 */
int create_start(struct broker *b, struct peer *p, const char *name,
                 const struct shmbus_ring_geom *g, uint64_t bytes, const struct grants *grants,
                 bool has_slow, uint32_t slow_ms, const char *text);
/* Stop reading @p and keep its request @text until the pending creation is over. */
int create_park(struct broker *b, struct peer *p, const char *text);
/* @p is going away: forget its parked request, and that it is waiting. */
void create_forget_peer(struct broker *b, struct peer *p);
/* Wait for a running creation to finish (shutdown) and free what it holds. */
void create_deinit(struct broker *b);
