/* SPDX-License-Identifier: MIT */
/*
 * The small things every verb of shmbus-cli uses: error lines, exit codes,
 * colours, the time of day and the Ctrl-C flag (cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

bool cli_terminal_is_smart(int fd) {
        const char *term = getenv("TERM");

        /* A dumb terminal (Emacs' shell, some CI logs) shows escapes as garbage. */
        if (!term || !term[0] || strcmp(term, "dumb") == 0)
                return false;
        return isatty(fd);
}

bool cli_color_wanted(int fd) {
        const char *no_color = getenv("NO_COLOR");

        return !(no_color && no_color[0]) && cli_terminal_is_smart(fd);
}

const char *cli_now_rfc3339(char *buf, size_t size) {
        struct timespec ts;
        struct tm tm;
        char day[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s.%03ldZ", day, ts.tv_nsec / 1000000);
        return buf;
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
