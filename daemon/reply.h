/* SPDX-License-Identifier: MIT */
/*
 * Replies on the control socket (docs/PROTOCOL.md): the envelope, the errno
 * names, and the one function that sends a reply. Every reply, success or
 * error, leaves the daemon through reply_send(), which owns and frees it.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

/* Longest human message an error reply carries; longer ones are cut. */
#define REPLY_MESSAGE_MAX 256

/* A new reply envelope {"v":1,"ok":@ok}, or NULL without memory. */
cJSON *reply_new(bool ok);
/* The name of @err (> 0) on the wire, "EACCES"; "EIO" for one clients do not expect. */
const char *reply_errno_name(int err);
/*
 * Send @reply on @fd with @n_fds (0..3) descriptors attached, then free it.
 * A NULL @reply (one that could not be allocated) is -ENOMEM. Never blocks.
 * Return: 0, or -errno when the reply could not be sent (the peer should go).
 */
int reply_send(int fd, cJSON *reply, const int *fds, unsigned n_fds);
/* Send the error reply for @code (-errno) with @message: the one place a code becomes a reply. */
int reply_send_error(int fd, int code, const char *message);
