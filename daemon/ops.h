/* SPDX-License-Identifier: MIT */
/*
 * The request ops of the control protocol (docs/PROTOCOL.md): hello, open,
 * close, list, stat, delete. Each handler returns 0 with the reply to send,
 * or -errno with a message for humans; ops_dispatch() alone sends either, so
 * every error reply has the same shape. Invariant: a request changes nothing
 * unless it is allowed, except that an "open" that created a channel keeps it
 * even if the creator may then not use it in the role it asked for.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct broker;
struct chan;
struct grants;
struct peer;

/*
 * Serve one request, @text (a NUL-terminated packet from @p), and send the
 * reply, or park it until a channel it needs has been created (create.h).
 * Return: 0, or -errno when the reply could not be sent (the caller closes @p).
 */
int ops_dispatch(struct broker *b, struct peer *p, const char *text);

/*
 * Count a packet of a served connection that was answered with an error before
 * it reached ops_dispatch() (too large, a NUL byte, descriptors attached): an
 * "other" request, and a failed one.
 */
void ops_count_rejected(struct broker *b);

/*
 * Add the channel just created as @name (files open as @ctl_fd, @data_fd),
 * owned by @uid/@gid with @grants (and the slow-subscriber timeout its create
 * asked for, if @has_slow: evict.h), and record its owner in its meta file;
 * undo everything on failure. Used for creations in the loop and off it
 * (create.h). Return: 0 with *@ret_chan, or -errno with @msg for the reply.
 */
int ops_register_created(struct broker *b, const char *name, int ctl_fd, int data_fd, uid_t uid,
                         gid_t gid, const struct grants *grants, bool has_slow, uint32_t slow_ms,
                         struct chan **ret_chan, char *msg, size_t size);
