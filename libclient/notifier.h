/* SPDX-License-Identifier: MIT */
/*
 * Pollable descriptors for subscribers and publishers (shmbus_sub_fd(),
 * shmbus_pub_fd()): an eventfd per object, written by one notifier thread per
 * process that waits on the channels' futex words with futex_waitv. A waiter
 * parks by counting itself in the ring's data_waiters (space_waiters), the
 * same count and slot flag a futex sleeper uses, so publishers need no new
 * code path and the daemon's slot release clears a dead waiter's count.
 * docs/EVENTS.md says why this design, and why no wake-up is lost.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ring.h"

struct shmbus_notify;

/* A descriptor that waits for data for @s (whose ring must outlive it). */
int shmbus__notify_new_sub(struct shmbus_ring_sub *s, struct shmbus_notify **ret);
/* A descriptor that waits for space for @p (whose ring must outlive it). */
int shmbus__notify_new_pub(struct shmbus_ring_pub *p, struct shmbus_notify **ret);
/* Unregister, uncount if parked, close the eventfd. Takes NULL; returns NULL. */
struct shmbus_notify *shmbus__notify_free(struct shmbus_notify *n);
int shmbus__notify_fd(const struct shmbus_notify *n);

/*
 * Park after a receive found nothing at @pos (a subscriber) or a claim found
 * no room up to @pos (a publisher's full_end): reset the eventfd if it was
 * written, count in the waiters, and re-check. Returns 1 if what we wait for
 * is there already (the caller tries again; the eventfd is left readable,
 * for a caller that stops before the next -EAGAIN), or 0 if parked.
 */
int shmbus__notify_park(struct shmbus_notify *n, uint64_t pos);
/*
 * Before any other kind of wait (a futex sleep), and after a claim succeeded.
 * Returns true if @n was armed (parked, or a publisher's signalled): a caller
 * whose sleep then ends without what it waited for parks @n again, so the
 * descriptor stays armed across the sleep.
 */
bool shmbus__notify_unpark(struct shmbus_notify *n);
