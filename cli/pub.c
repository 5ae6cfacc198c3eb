/* SPDX-License-Identifier: MIT */
/*
 * pub (pub.h). Sending stops at the first failure; the error line says how
 * many messages went out before it, so a partial run can be resumed.
 */
#include "pub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"

#include "ask.h"
#include "cli.h"
#include "util.h"

/* All of stdin is one message: -EMSGSIZE if it is larger than @max, -EINVAL if empty. */
static int send_whole(const struct cli_options *o, shmbus_pub *p, size_t max, long *sent,
                      size_t *ret_len) {
        _cleanup_free_ char *buf = malloc(max + 1);
        size_t len = 0, got;
        int r;

        /* Read up to one byte more than fits, to tell "exactly max" from "too large". */
        while (buf && (got = fread(buf + len, 1, max + 1 - len, stdin)) > 0 && len <= max)
                len += got;
        if (!buf)
                r = -ENOMEM;
        else if (len > max)
                r = -EMSGSIZE;
        else if (len == 0)
                r = -EINVAL;
        else
                r = shmbus_pub_send(p, buf, len, o->timeout_ms);
        *sent += r == 0;
        *ret_len = len;
        return r;
}

/* One message a line, without its newline. */
static int send_lines(const struct cli_options *o, shmbus_pub *p, long *sent, size_t *ret_len) {
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int r = 0;

        while (r == 0 && (n = getline(&line, &cap, stdin)) > 0) {
                if (line[n - 1] == '\n')
                        line[--n] = '\0';
                if (n == 0)
                        continue; /* messages are 1 byte at least: skip empty lines */
                r = shmbus_pub_send(p, line, (size_t)n, o->timeout_ms);
                *sent += r == 0;
                *ret_len = (size_t)n;
        }
        return r;
}

int verb_pub(const struct cli_options *o, char **args) {
        const char *name = args[0], *message = args[1];
        _cleanup_(cli_channel_unrefp) shmbus_channel *ch = NULL;
        _cleanup_(cli_pub_freep) shmbus_pub *p = NULL;
        long sent = 0;
        size_t len = 0;
        int r;

        r = ask_open_for_write(o, name, o->create, NULL, &ch);
        if (r < 0)
                return cli_exit_code(r);
        r = shmbus_pub_new(ch, &p);
        if (r < 0) {
                cli_err("%s: %s", name, shmbus_strerror(r));
                return cli_exit_code(r);
        }
        if (message && strcmp(message, "-") != 0) {
                len = strlen(message);
                r = shmbus_pub_send(p, message, len, o->timeout_ms);
                sent += r == 0;
        } else if (o->whole) {
                r = send_whole(o, p, shmbus_channel_max_msg(ch), &sent, &len);
        } else {
                r = send_lines(o, p, &sent, &len);
        }
        if (r == -EMSGSIZE)
                /* Name the limit and both values: "too large" alone says nothing to act on. */
                cli_err("pub %s: message too large: %zu%s B > max_msg %zu of the channel "
                        "(after %ld messages)",
                        name, len, o->whole && len > shmbus_channel_max_msg(ch) ? "+" : "",
                        shmbus_channel_max_msg(ch), sent);
        else if (r < 0)
                cli_err("pub %s: %s (after %ld messages)", name, shmbus_strerror(r), sent);
        return cli_exit_code(r);
}
