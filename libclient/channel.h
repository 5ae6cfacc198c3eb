/* SPDX-License-Identifier: MIT */
/*
 * The channel object shared by the library's modules, the daemon and the CLI:
 * two mappings, the ring attached to them, and a reference count.
 *
 * It also pulls in the rest of the channel API that shmbusd, shmbus-cli and
 * the tests reach for through this header: the channel's files (files.h),
 * options (opts.h), publishers and subscribers (pubsub.h).
 */
#pragma once

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "shmbus.h"

#include "files.h"
#include "layout.h"
#include "opts.h"
#include "pubsub.h"
#include "ring.h"

struct shmbus_channel {
        atomic_uint refs;
        int flags;      /* SHMBUS_OPEN_* it was mapped with */
        pid_t pid;      /* our pid as the daemon sees it (pid namespaces), stamped on slots */
        unsigned gen;   /* the process generation (proc.h) it was mapped in */
        bool pid_local; /* pid is getpid(): a forked child may stamp its own getpid() */
        void *ctl_map;
        size_t ctl_len;
        void *data_map;
        size_t data_len;
        struct shmbus_ring ring;
        char name[SHMBUS_NAME_MAX + 1];
        /*
         * Set when a mapping faulted because a member shrank a file (sigbus.h):
         * the mappings are zero pages now, and every operation fails -EBADFD.
         */
        atomic_int broken;
        int sigbus_id; /* registration of the mappings with sigbus.h, or -1 */
};

/* The error a call on @c returns instead of @r once the channel is broken. */
static inline int shmbus__channel_check(const shmbus_channel *c, int r) {
        return atomic_load_explicit(&c->broken, memory_order_acquire) ? -EBADFD : r;
}

/*
 * Map both files with the protections @flags (SHMBUS_OPEN_*) allow, validate
 * them, and attach the ring. The descriptors are not consumed.
 */
int shmbus__channel_map(int ctl_fd, int data_fd, int flags, shmbus_channel **ret_chan);
/*
 * Give @c the channel's eventfd @fd (consumed; -1 for none) and its generation
 * @gen (>= 2), which shmbusd hands out with the channel (docs/EVENTS.md,
 * "One hop"): publishers write it for subscribers parked on it.
 */
void shmbus__channel_set_notify(shmbus_channel *c, int fd, uint32_t gen);
