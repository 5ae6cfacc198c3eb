/* SPDX-License-Identifier: MIT */
/*
 * Channels whose files vanished behind the daemon's back (issue 16): removed
 * with rm, or replaced by other files of the same name. Their members would
 * otherwise wait for ever on files nobody can open any more; the sweep marks
 * such a channel deleted in its ctl header (members stop with -EIDRM), wakes
 * every sleeper, logs it and forgets the channel, as a delete request would.
 */
#pragma once

#include <stdint.h>

struct broker;

/* Check each channel's ctl file, at most once a second; @now is CLOCK_MONOTONIC ns. */
void vanish_sweep(struct broker *b, int64_t now);
