/* SPDX-License-Identifier: MIT */
/*
 * A channel's two files in a shm directory: their names, creating them
 * complete, opening them, and removing them. What is in the files is ring.c's
 * business; mapping them is channel.c's.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "layout.h"
#include "ring.h"

/*
 * The extension of a channel's third file, NAME.meta: shmbusd's private record
 * of who owns the channel (daemon/meta.h). Nothing else opens it; scans of a
 * shm directory go by NAME.ctl and so pass it over.
 */
#define SHMBUS_FILE_META "meta"

/* @dir/@name.@ext into @buf. Return: 0, -EINVAL for a bad name, or -ENAMETOOLONG. */
int shmbus__channel_file_path(char *buf, size_t size, const char *dir, const char *name,
                              const char *ext);

/* "NAME.ctl" -> NAME, for scanning a shm directory; false for any other file. */
bool shmbus__channel_name_of_file(const char *file, char ret_name[SHMBUS_NAME_MAX + 1]);

/*
 * Create NAME.ctl and NAME.data in @dir, formatted with @geom and fully
 * allocated, and return descriptors to both (read-write). -EEXIST if the
 * channel exists; nothing is left behind on failure.
 */
int shmbus__channel_create_fds(const char *dir, const char *name,
                               const struct shmbus_ring_geom *geom, unsigned int mode,
                               int *ret_ctl_fd, int *ret_data_fd);
/* Open an existing channel's files as @flags (SHMBUS_OPEN_*) need them. */
int shmbus__channel_open_fds(const char *dir, const char *name, int flags, int *ret_ctl_fd,
                             int *ret_data_fd);

/*
 * The same, relative to the directory open as @dirfd (the daemon resolves its
 * shm directory once, at start-up, and never by path again).
 */
int shmbus__channel_create_at(int dirfd, const char *name, const struct shmbus_ring_geom *geom,
                              unsigned int mode, int *ret_ctl_fd, int *ret_data_fd);
int shmbus__channel_open_at(int dirfd, const char *name, int flags, int *ret_ctl_fd,
                            int *ret_data_fd);
int shmbus__channel_unlink_at(int dirfd, const char *name);
