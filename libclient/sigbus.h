/* SPDX-License-Identifier: MIT */
/*
 * Surviving a channel file that another member shrank. Every member holds a
 * writable descriptor of the ctl file (publishers of the data file too), so
 * any of them can ftruncate() it; touching a mapped page past the new end
 * raises SIGBUS in every process that maps it. This module keeps a fixed-size
 * table of the mappings of every channel this process has mapped, and a
 * SIGBUS handler that, for a fault inside one of them, maps anonymous zero
 * pages over both of that channel's mappings, marks the channel broken, and
 * returns (the faulting access then reads zeros). A fault anywhere else goes
 * to the handler that was installed before ours, or kills the process as it
 * would have without us. libwayland-server does the same for clients' shm
 * pools (wl_shm_buffer_begin_access).
 *
 * Invariants: a registered region is a live mapping of its channel (it is
 * unregistered before it is unmapped); the handler touches only the table,
 * the broken flag and mmap(), all async-signal-safe.
 */
#pragma once

#include <stdatomic.h>
#include <stddef.h>

/*
 * Register the mappings [@ctl, +@ctl_len) and [@data, +@data_len) of one
 * channel; @broken is set to 1 if either faults. Installs the handler on first
 * use. Return: the registration (>= 0) for shmbus__sigbus_unregister(), or
 * -EMFILE when the table is full, or -errno if the handler cannot be installed.
 */
int shmbus__sigbus_register(void *ctl, size_t ctl_len, void *data, size_t data_len,
                            atomic_int *broken);
/* Forget registration @id (before the mappings are unmapped); -1 is ignored. */
void shmbus__sigbus_unregister(int id);
