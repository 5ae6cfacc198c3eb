/* SPDX-License-Identifier: MIT */
/* See log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

static bool prefixes;
static int max_prio = LOG_DEBUG;

/* systemd sets JOURNAL_STREAM when stderr is the journal, which reads "<N>" as a priority. */
void log_open(void) {
        prefixes = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_max(int prio) {
        max_prio = prio;
}

void log_at(int prio, const char *fmt, ...) {
        va_list ap;

        if (prio > max_prio)
                return;
        if (prefixes)
                fprintf(stderr, "<%d>", prio);
        fputs("shmbusd: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}
