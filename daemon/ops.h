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

struct broker;
struct peer;

/*
 * Serve one request, @text (a NUL-terminated packet from @p), and send the reply.
 * Return: 0, or -errno when the reply could not be sent (the caller closes @p).
 */
int ops_dispatch(struct broker *b, struct peer *p, const char *text);

/*
 * Count a packet of a served connection that was answered with an error before
 * it reached ops_dispatch() (too large, a NUL byte, descriptors attached): an
 * "other" request, and a failed one.
 */
void ops_count_rejected(struct broker *b);
