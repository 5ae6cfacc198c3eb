/* SPDX-License-Identifier: MIT */
/*
 * The small things every verb of shmbus-cli uses: error lines, exit codes,
 * colours and the Ctrl-C flag (cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

static volatile sig_atomic_t stop;

void cli_err(const char *fmt, ...) {
        va_list ap;

        fputs("shmbus-cli: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int cli_exit_code(int r) {
        switch (r) {
        case 0:
                return EXIT_OK;
        case -ENOENT:
                return EXIT_NOENT;
        case -EACCES:
        case -EPERM:
                return EXIT_ACCESS;
        case -EAGAIN:
        case -ETIMEDOUT:
                return EXIT_FULL;
        case -ECONNREFUSED:
                return EXIT_DOWN;
        default:
                return EXIT_FAIL;
        }
}

const char *cli_color(const struct cli_options *o, const char *code) {
        return o->color ? code : "";
}

static void on_stop(int sig) {
        stop = 1;
}

void cli_catch_stop(void) {
        signal(SIGINT, on_stop);
        signal(SIGTERM, on_stop);
}

bool cli_stopped(void) {
        return stop;
}
