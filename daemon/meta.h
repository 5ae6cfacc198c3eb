/* SPDX-License-Identifier: MIT */
/*
 * A channel's meta file, NAME.meta beside NAME.ctl and NAME.data: who owns
 * the channel, what its creator granted (grants.h) and the slow-subscriber
 * timeout it asked for, so that they survive a daemon restart. Authority lives
 * here and not in the channel's files because every member maps NAME.ctl
 * read-write, and the files' own st_uid is always the daemon's.
 *
 * Invariants: the daemon writes a meta file (mode 0600, never handed to a
 * client) before it answers the request that created the channel, atomically
 * (a temporary file renamed over the name), and trusts one only if it is a
 * regular file of the daemon's uid (or root's) that nobody else can read or
 * write, and that names the very inodes of the channel's files: a meta file
 * left over from an earlier channel of the same name is not believed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "grants.h"

/* Largest meta file read: a name, two ids, two inodes and at most 4 * CONFIG_ACL_MAX ids. */
#define META_FILE_MAX 16384

struct meta {
        uint64_t ctl_ino, data_ino; /* the channel files this record is about */
        uid_t owner;
        gid_t group;
        struct grants grants;
        /* The slow-subscriber timeout its create request asked for, if any (evict.h). */
        bool has_slow_subscriber_timeout;
        uint32_t slow_subscriber_timeout_ms;
};

/* Write @m as @name.meta in the shm directory open as @dirfd. Return: 0 or -errno. */
int meta_save(int dirfd, const char *name, const struct meta *m);
/*
 * Read @name.meta in the directory @dirfd into @m if it is trusted and about the files whose
 * inodes are @ctl_ino and @data_ino. Return: 0, -ENOENT if there is none, or
 * another -errno with @why saying why it was not believed.
 */
int meta_load(int dirfd, const char *name, uint64_t ctl_ino, uint64_t data_ino, struct meta *m,
              char *why, size_t why_size);
