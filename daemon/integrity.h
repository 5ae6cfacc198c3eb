/* SPDX-License-Identifier: MIT */
/*
 * The integrity of the channel files themselves. Every member holds a
 * writable descriptor of a channel's ctl file (publishers of its data file
 * too), so any member can change a file's size. Growing a file harms nobody
 * (everyone maps only the sizes the header gives) and is undone: the daemon
 * truncates the file back. Shrinking one destroys what was cut off for every
 * member at once, so the channel cannot be repaired: the daemon drops it
 * (both files truncated to nothing, so that every member still mapping them
 * faults on its next access, is rescued by libshmbus's SIGBUS handler and
 * gets -EBADFD; then the names are removed, so that the channel can be
 * created afresh). The daemon's own accesses are covered by the same handler
 * (a fault sets the channel's broken flag), and a channel so flagged is
 * dropped the same way.
 *
 * Invariant: after integrity_check() returns 0, @c's files have exactly the
 * sizes its mapping has.
 */
#pragma once

#include "registry.h"

struct broker;

/*
 * Check @c's files: truncate a grown file back; drop the channel if a file
 * shrank or a mapping faulted. Return: 0, or -EBADFD if @c was dropped (and
 * freed).
 */
int integrity_check(struct broker *b, struct chan *c);
/* integrity_check() every channel. */
void integrity_sweep(struct broker *b);
