/* SPDX-License-Identifier: MIT */
/*
 * Talking to shmbusd (ask.h). Requests are built and replies read with the
 * protocol's own names (wire.h); whether a reply says ok is decided by
 * shmbus__wire_reply_status(), the library's one parser of the envelope.
 */
#include "ask.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"

#include "cli.h"
#include "util.h"
#include "wire.h"

void ask_not_answering(const shmbus_client *c) {
        cli_err("%s", shmbus_client_last_error(c));
        exit(EXIT_DOWN);
}

int ask_connect(const struct cli_options *o, shmbus_client **ret_client) {
        int r = shmbus_client_new(o->socket, ret_client);

        if (r == -ETIMEDOUT)
                ask_not_answering(NULL);
        return r == -ENOENT ? -ECONNREFUSED : r;
}

/* The request's text: {"v":1,"op":OP} or {"v":1,"op":OP,"name":NAME}. */
static int request_new(const char *op, const char *name, char **ret_text) {
        _cleanup_cjson_ cJSON *req = cJSON_CreateObject();
        char *text;

        if (!req || !cJSON_AddNumberToObject(req, WIRE_V, WIRE_VERSION) ||
            !cJSON_AddStringToObject(req, WIRE_OP, op) ||
            (name && !cJSON_AddStringToObject(req, WIRE_NAME, name)))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(req);
        if (!text)
                return -ENOMEM;
        *ret_text = text;
        return 0;
}

int ask_request(shmbus_client *c, const char *op, const char *name, cJSON **ret_reply) {
        _cleanup_free_ char *req = NULL, *text = NULL;
        _cleanup_cjson_ cJSON *reply = NULL;
        int r;

        r = request_new(op, name, &req);
        if (r < 0)
                return r;
        r = shmbus_client_request(c, req, &text);
        if (r == -ETIMEDOUT)
                ask_not_answering(c);
        if (r < 0)
                return r;
        reply = cJSON_Parse(text);
        if (!reply)
                return -EPROTO;
        r = shmbus__wire_reply_status(reply);
        if (r < 0)
                return r;
        cJSON_DeleteItemFromObjectCaseSensitive(reply, WIRE_OK);
        cJSON_DeleteItemFromObjectCaseSensitive(reply, WIRE_V);
        *ret_reply = TAKE_PTR(reply);
        return 0;
}

int ask_daemon(const struct cli_options *o, const char *op, const char *name, cJSON **ret_reply) {
        _cleanup_(cli_client_freep) shmbus_client *c = NULL;
        int r;

        r = ask_connect(o, &c);
        if (r == -ECONNREFUSED)
                return 1;
        if (r < 0)
                return r;
        return ask_request(c, op, name, ret_reply);
}

int ask_open_for_write(const struct cli_options *o, const char *name, bool create,
                       const shmbus_opts *opts, shmbus_channel **ret_chan) {
        _cleanup_(cli_client_freep) shmbus_client *c = NULL;
        int flags = SHMBUS_OPEN_PUBLISH | (create ? SHMBUS_OPEN_CREATE : 0);

        /* Grants alone say nothing of the geometry: any existing channel will do. */
        if (opts && !o->geometry_given)
                flags |= SHMBUS_OPEN_ACCEPT_EXISTING;
        int r;

        r = ask_connect(o, &c);
        if (r == -ECONNREFUSED) {
                cli_err("shmbusd is not running");
                return r;
        }
        if (r == 0)
                r = shmbus_client_open(c, name, flags, opts, ret_chan);
        if (r == -ETIMEDOUT)
                ask_not_answering(c);
        if (r == -ENOENT)
                cli_err("%s: no such channel (use --create)", name);
        else if (r == -EEXIST &&
                 !strstr(shmbus_client_last_error(c), "exists with other settings") &&
                 !strstr(shmbus_client_last_error(c), "belongs to uid"))
                /* Files nobody serves, such as those a daemon of another uid left. */
                cli_err("%s: its files exist but shmbusd does not serve them; shmbusd's log "
                        "(journalctl -u shmbusd) says whose they are and what to run",
                        name);
        else if (r < 0)
                ask_say_error(c, name, r);
        return r;
}

void ask_say_error(const shmbus_client *c, const char *what, int r) {
        const char *why = shmbus_client_last_error(c);

        /* The daemon's sentence says more than the code ("permission denied on channel x"). */
        cli_err("%s: %s", what, why[0] ? why : shmbus_strerror(r));
}
