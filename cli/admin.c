/* SPDX-License-Identifier: MIT */
/*
 * create and delete (admin.h). create opens the channel as a publisher with
 * SHMBUS_OPEN_CREATE and lets go at once: the daemon keeps the files.
 */
#include "admin.h"

#include <errno.h>

#include "shmbus.h"

#include "ask.h"
#include "cli.h"
#include "util.h"

int verb_create(const struct cli_options *o, char **args) {
        _cleanup_(cli_channel_unrefp) shmbus_channel *ch = NULL;
        int r;

        /* Without settings, any existing channel will do; with some, it must have them. */
        r = ask_open_for_write(o, args[0], true, o->geometry_given ? o->channel : NULL, &ch);
        return r < 0 ? cli_exit_code(r) : EXIT_OK;
}

int verb_delete(const struct cli_options *o, char **args) {
        const char *name = args[0];
        _cleanup_(cli_client_freep) shmbus_client *c = NULL;
        int r;

        r = ask_connect(o, &c);
        if (r == 0)
                r = shmbus_client_delete(c, name);
        if (r == -ETIMEDOUT)
                ask_not_answering(c);
        if (r == -EACCES)
                ask_say_error(c, "delete", r);
        else if (r < 0)
                cli_err("delete %s: %s", name,
                        r == -ECONNREFUSED ? "shmbusd is not running"
                        : r == -ENOENT     ? "no such channel"
                                           : shmbus_strerror(r));
        return cli_exit_code(r);
}
