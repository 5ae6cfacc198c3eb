/* SPDX-License-Identifier: MIT */
/*
 * Slow subscribers (issue 16). On a block channel whose
 * slow_subscriber_timeout_ms is set (the channel's config rule, else the
 * create request, else the configuration's default; 0 is off), a tethered
 * subscriber that keeps publishers waiting longer than that is evicted: taken
 * out of the horizon (shmbus__ring_sub_slot_evict), so publishers go on; its
 * owner's next call fails with -ECONNABORTED; the channel's evicted counter
 * goes up; and the daemon logs it once.
 */
#pragma once

#include <stdint.h>

struct broker;
struct chan;

/* The timeout that applies to @c, in ms; 0: never evict. */
uint32_t evict_timeout_ms(const struct broker *b, const struct chan *c);
/* Look at every channel once (the broker's sweep timer); @now is CLOCK_MONOTONIC ns. */
void evict_sweep(struct broker *b, int64_t now);
