/* SPDX-License-Identifier: MIT */
/*
 * The public publisher and subscriber objects (shmbus_pub, shmbus_sub): a
 * joined ring slot plus a reference on the channel. What the CLI needs to
 * know about a subscriber beyond the public API is read here.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "shmbus.h"

/* Where a subscriber stands: the first position it has not consumed. */
uint64_t shmbus__sub_position(const shmbus_sub *sub);
/* The message number of the last message received (valid after one was). */
uint64_t shmbus__sub_last_seq(const shmbus_sub *sub);

/*
 * For shmbus-bridge. Mark every record @pub commits with the origin mark
 * (SHMBUS_REC_MARK, docs/LAYOUT.md), or stop; -EPROTO on a channel of layout
 * minor below 2, whose readers may not know the mark.
 */
int shmbus__pub_set_origin_mark(shmbus_pub *pub, bool on);
/* The message number of the open claim (between claim and commit). */
uint64_t shmbus__pub_claim_seq(const shmbus_pub *pub);
/* The ring position of the open claim (between claim and commit). */
uint64_t shmbus__pub_claim_pos(const shmbus_pub *pub);
/* Whether the last message peeked or received carried the origin mark. */
bool shmbus__sub_last_marked(const shmbus_sub *sub);
/* The channel a subscriber reads (borrowed: the subscriber holds a reference). */
shmbus_channel *shmbus__sub_channel(const shmbus_sub *sub);
