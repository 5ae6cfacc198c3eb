/* SPDX-License-Identifier: MIT */
/*
 * pub (pub.h). Sending stops at the first failure; the error line says how
 * many messages went out before it, so a partial run can be resumed. With
 * --json the same is said on stdout as one object, for scripts.
 */
#include "pub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"

#include "ask.h"
#include "cli.h"
#include "output.h"
#include "util.h"
#include "wire.h"

/* What was sent: counted by every sender, printed by pub --json. */
struct sent {
        long msgs;
        double bytes;
        size_t last_len; /* the length of the last message tried, for a too-large one */
};

static int send_one(const struct cli_options *o, shmbus_pub *p, const void *data, size_t len,
                    struct sent *sent) {
        int r = shmbus_pub_send(p, data, len, o->timeout_ms);

        sent->last_len = len;
        if (r == 0) {
                sent->msgs++;
                sent->bytes += (double)len;
        }
        return r;
}

/* All of stdin is one message: -EMSGSIZE if it is larger than @max, -EINVAL if empty. */
static int send_whole(const struct cli_options *o, shmbus_pub *p, size_t max, struct sent *sent) {
        _cleanup_free_ char *buf = malloc(max + 1);
        size_t len = 0, got;
        int r;

        /* Read up to one byte more than fits, to tell "exactly max" from "too large". */
        while (buf && (got = fread(buf + len, 1, max + 1 - len, stdin)) > 0 && len <= max)
                len += got;
        if (!buf)
                r = -ENOMEM;
        else if (len > max) {
                sent->last_len = len;
                r = -EMSGSIZE;
        } else if (len == 0)
                r = -EINVAL;
        else
                r = send_one(o, p, buf, len, sent);
        return r;
}

/* One message a line, without its newline. */
static int send_lines(const struct cli_options *o, shmbus_pub *p, struct sent *sent) {
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int r = 0;

        while (r == 0 && (n = getline(&line, &cap, stdin)) > 0) {
                if (line[n - 1] == '\n')
                        line[--n] = '\0';
                if (n == 0)
                        continue; /* messages are 1 byte at least: skip empty lines */
                r = send_one(o, p, line, (size_t)n, sent);
        }
        return r;
}

/* pub --json: {"name", "sent", "bytes"}, and "error" (shmbus_strerror()) if it failed. */
static void print_summary(const char *name, const struct sent *sent, int r) {
        _cleanup_cjson_ cJSON *j = cJSON_CreateObject();

        if (!j || !cJSON_AddStringToObject(j, WIRE_NAME, name) ||
            !cJSON_AddNumberToObject(j, CLI_SENT, (double)sent->msgs) ||
            !cJSON_AddNumberToObject(j, CLI_SENT_BYTES, sent->bytes) ||
            (r < 0 && !cJSON_AddStringToObject(j, CLI_PUB_ERROR, shmbus_strerror(r))))
                return;
        output_json_line(j);
}

int verb_pub(const struct cli_options *o, char **args) {
        const char *name = args[0], *message = args[1];
        _cleanup_(cli_channel_unrefp) shmbus_channel *ch = NULL;
        _cleanup_(cli_pub_freep) shmbus_pub *p = NULL;
        struct sent sent = {0};
        int r;

        r = ask_open_for_write(o, name, o->create, NULL, &ch);
        if (r == 0) {
                r = shmbus_pub_new(ch, &p);
                if (r < 0)
                        cli_err("%s: %s", name, shmbus_strerror(r));
        }
        if (r < 0) {
                if (o->json)
                        print_summary(name, &sent, r);
                return cli_exit_code(r);
        }
        if (message && strcmp(message, "-") != 0)
                r = send_one(o, p, message, strlen(message), &sent);
        else if (o->whole)
                r = send_whole(o, p, shmbus_channel_max_msg(ch), &sent);
        else
                r = send_lines(o, p, &sent);
        if (r == -EMSGSIZE)
                /* Name the limit and both values: "too large" alone says nothing to act on. */
                cli_err("pub %s: message too large: %zu%s B > max_msg %zu of the channel "
                        "(after %ld messages)",
                        name, sent.last_len,
                        o->whole && sent.last_len > shmbus_channel_max_msg(ch) ? "+" : "",
                        shmbus_channel_max_msg(ch), sent.msgs);
        else if (r < 0)
                cli_err("pub %s: %s (after %ld messages)", name, shmbus_strerror(r), sent.msgs);
        if (o->json)
                print_summary(name, &sent, r);
        return cli_exit_code(r);
}
