/* SPDX-License-Identifier: MIT */
/*
 * Liveness and repair: telling live processes from dead ones, releasing the
 * slots of the dead, and padding over claims whose writer died. Invariants:
 * a slot is released only when its owner pid is gone (or when it has been
 * active without an owner for two sweeps running); a claim is padded over
 * only once its writer is dead, never under a live (if slow) publisher.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "registry.h"

/* Is @pid running? A zombie is not: it will never touch its slots again. */
bool pid_is_alive(pid_t pid);
/* Release every slot held by @pid (which has died) in @c. Return: how many. */
unsigned liveness_reap_pid(struct chan *c, pid_t pid);
/*
 * The work of one sweep tick is bounded by time, not by what members wrote
 * into their slots: each slot costs the daemon a liveness check of the pid it
 * names, and a member can fill a thousand slots a channel with pids (issue 15:
 * 32 768 forged slots held every other client's request for ~300 ms).
 */
#define LIVENESS_SWEEP_BUDGET_NS (INT64_C(5) * 1000000)
/* How often the broker runs a sweep tick. */
#define LIVENESS_SWEEP_INTERVAL_MS 100

/*
 * One periodic repair tick at time @now (ns), going on where the last one
 * stopped and stopping after @budget_ns: release slots of processes that no
 * longer exist (also those of clients of a previous daemon), and pad over
 * claims that have kept a subscriber waiting, unchanged, for
 * @unblock_timeout_ms and whose writer is dead. A tick visits every channel
 * once unless its budget runs out first; pids are checked once per tick.
 */
void liveness_sweep(struct registry *reg, uint32_t unblock_timeout_ms, int64_t now,
                    int64_t budget_ns);
