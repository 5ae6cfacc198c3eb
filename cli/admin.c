/* SPDX-License-Identifier: MIT */
/*
 * create and delete (admin.h). create opens the channel as a publisher with
 * SHMBUS_OPEN_CREATE and lets go at once: the daemon keeps the files, and the
 * grants given with --allow-sub / --allow-pub.
 */
#include "admin.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"

#include "ask.h"
#include "cli.h"
#include "util.h"

int verb_create(const struct cli_options *o, char **args) {
        _cleanup_(cli_channel_unrefp) shmbus_channel *ch = NULL;
        int r;

        /* Without settings, any existing channel will do; with some, it must have them. */
        r = ask_open_for_write(
                o, args[0], true,
                o->geometry_given || o->grants_given || o->slow_given ? o->channel : NULL, &ch);
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

/* A whole number that fits an id (not (uid_t)-1), or -1. */
static long long id_of(const char *s) {
        char *end;
        unsigned long long v;

        if (!*s || *s == '-' || *s == '+')
                return -1;
        errno = 0;
        v = strtoull(s, &end, 10);
        return errno || *end || v >= UINT32_MAX ? -1 : (long long)v;
}

int admin_grant(shmbus_opts *opts, const char *spec, int roles) {
        bool group = strncmp(spec, "group:", 6) == 0;
        const char *name = group ? spec + 6 : strncmp(spec, "user:", 5) == 0 ? spec + 5 : spec;
        long long id = id_of(name);

        if (id < 0 && group) {
                const struct group *gr = getgrnam(name);

                id = gr ? (long long)gr->gr_gid : -1;
        } else if (id < 0) {
                const struct passwd *pw = getpwnam(name);

                id = pw ? (long long)pw->pw_uid : -1;
        }
        if (id < 0) {
                cli_err("unknown %s '%s'%s", group ? "group" : "user", name,
                        group ? "" : " (a group is written group:NAME)");
                return -EINVAL;
        }
        return group ? shmbus_opts_grant_gid(opts, (gid_t)id, roles)
                     : shmbus_opts_grant_uid(opts, (uid_t)id, roles);
}
