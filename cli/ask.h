/* SPDX-License-Identifier: MIT */
/*
 * Talking to shmbusd: connecting, asking one control request and reading its
 * reply, and opening a channel to publish on. A daemon that is not listening
 * (or whose socket does not exist) is "not running": -ECONNREFUSED, or 1 from
 * ask_daemon(), so that read verbs can fall back to the channel files.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "shmbus.h"

#include "cli.h"

/*
 * The daemon is there but does not answer (stopped, hung): say so, with the
 * client's explanation, and exit EXIT_DOWN. Every request has the client's
 * timeout ($SHMBUS_TIMEOUT_MS), so no verb waits longer than that.
 */
__attribute__((noreturn)) void ask_not_answering(const shmbus_client *c);
/* "@what: " and why request @r on @c failed: the daemon's own words where it gave them. */
void ask_say_error(const shmbus_client *c, const char *what, int r);

/*
 * Connect; -ECONNREFUSED if no daemon is listening (a missing socket counts as
 * that too). A daemon that does not answer ends the program (ask_not_answering).
 */
int ask_connect(const struct cli_options *o, shmbus_client **ret_client);

/*
 * ask_request() - ask @op about @name (NULL for ops without one) on the
 * connection @c, as ask_daemon() does, for callers that ask many questions.
 *
 * Return: as ask_daemon(), but never 1.
 */
int ask_request(shmbus_client *c, const char *op, const char *name, cJSON **ret_reply);

/*
 * ask_daemon() - send {"v", "op": @op, "name": @name} and read the reply
 * @name: NULL for ops without one
 *
 * Return: 0 with the reply in *@ret_reply, its envelope ("ok", "v") removed so
 * that output has only documented fields; 1 if shmbusd is not running (nothing
 * was asked); the reply's -errno (shmbus__wire_reply_status()); -EPROTO for a
 * reply that is not JSON; -ENOMEM; or the request's -errno.
 */
int ask_daemon(const struct cli_options *o, const char *op, const char *name, cJSON **ret_reply);

/*
 * Open @name through shmbusd to publish on it (creating it with @create, with
 * the geometry of @opts or the daemon's defaults if NULL). Failures are
 * reported on stderr here, because they read the same for every caller.
 */
int ask_open_for_write(const struct cli_options *o, const char *name, bool create,
                       const shmbus_opts *opts, shmbus_channel **ret_chan);
