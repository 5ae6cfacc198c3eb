/* SPDX-License-Identifier: MIT */
/*
 * The public publisher and subscriber objects (shmbus_pub, shmbus_sub): a
 * joined ring slot plus a reference on the channel. What the CLI needs to
 * know about a subscriber beyond the public API is read here.
 */
#pragma once

#include <stdint.h>

#include "shmbus.h"

/* Where a subscriber stands: the first position it has not consumed. */
uint64_t shmbus__sub_position(const shmbus_sub *sub);
/* The message number of the last message received (valid after one was). */
uint64_t shmbus__sub_last_seq(const shmbus_sub *sub);
