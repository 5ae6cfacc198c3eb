/* SPDX-License-Identifier: MIT */
/*
 * The shm directory, resolved once. Whoever can rename an entry on the path
 * to the channel files can put their own files in place of a channel's, so
 * every component from / down must be out of other users' reach: owned by
 * root or by the daemon's user, and not writable by group or others unless it
 * is sticky (like /dev/shm: others may add entries there but not rename
 * ours). The directory itself must not be writable by anybody else at all.
 * The walk opens each component relative to the previous one with
 * O_NOFOLLOW and checks the descriptor it got, so nothing can be swapped
 * between the check and the use; the result is the descriptor every channel
 * file is then opened against (openat), never the path again.
 */
#pragma once

#include <stddef.h>

/*
 * Open the shm directory @path (absolute) for good. Return: a descriptor, or
 * -errno with @why (of @size bytes) saying which component is unsafe and why.
 */
int shmdir_open(const char *path, char *why, size_t size);
