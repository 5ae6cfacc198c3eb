/* SPDX-License-Identifier: MIT */
/*
 * See log.h. The journal's native protocol is a datagram of "KEY=value\n"
 * lines on /run/systemd/journal/socket (systemd.journal-fields(7)); a value
 * holding a newline would need the binary form, so newlines in messages are
 * replaced by spaces instead. No libsystemd: the protocol is a stable
 * interface, and the daemon keeps its dependencies few.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define LINE_MAX_BYTES 2048
/* Distinct call sites rate-limited at once; a site beyond these is never limited. */
#define SITES_MAX 64

enum sink { SINK_PLAIN, SINK_PREFIXED, SINK_JOURNAL };

static enum sink sink = SINK_PLAIN;
static int journal_fd = -1;
static int max_prio = LOG_DEBUG;
static long interval_ms = LOG_INTERVAL_S * 1000L;

struct site {
        const char *fmt; /* identity of the call site */
        int64_t window;  /* start of the current interval, ms */
        unsigned n;      /* lines logged in it */
        unsigned suppressed;
};
static struct site sites[SITES_MAX];

/* $JOURNAL_STREAM is "DEV:INO" of the stream systemd connected; it counts only if stderr is it. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_open(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET};
        const char *path = getenv("SHMBUS_JOURNAL_SOCKET"); /* tests point it elsewhere */
        const char *iv = getenv("SHMBUS_LOG_INTERVAL_MS");  /* tests shorten it */
        int fd;

        if (iv && atol(iv) > 0)
                interval_ms = atol(iv);
        sink = SINK_PLAIN;
        if (!stderr_is_journal())
                return;
        sink = SINK_PREFIXED;
        if (path && strlen(path) < sizeof(sa.sun_path))
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return;
        }
        if (journal_fd >= 0)
                close(journal_fd);
        journal_fd = fd;
        sink = SINK_JOURNAL;
}

void log_set_max(int prio) {
        max_prio = prio;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                            "warning", "notice", "info", "debug"};
        char *end;
        long v;

        for (int i = 0; i < 8; i++)
                if (strcmp(s, names[i]) == 0)
                        return i;
        if (strcmp(s, "error") == 0)
                return LOG_ERR;
        if (strcmp(s, "warn") == 0)
                return LOG_WARNING;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 0 || v > 7)
                return -EINVAL;
        return (int)v;
}

/*
 * Whether this call site may log now. A site over its burst is silent until
 * its interval ends; the first line after that says how many were dropped.
 */
static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool site_allows(const char *fmt, unsigned *ret_suppressed) {
        int64_t now = now_ms();
        struct site *s = NULL;

        *ret_suppressed = 0;
        for (size_t i = 0; i < SITES_MAX; i++) {
                if (sites[i].fmt == fmt || !sites[i].fmt) {
                        s = &sites[i];
                        break;
                }
        }
        if (!s)
                return true;
        if (!s->fmt || now - s->window >= interval_ms) {
                *ret_suppressed = s->suppressed;
                *s = (struct site){.fmt = fmt, .window = now};
        }
        if (s->n >= LOG_BURST) {
                s->suppressed++;
                return false;
        }
        s->n++;
        return true;
}

static void flatten(char *s) {
        for (; *s; s++)
                if (*s == '\n')
                        *s = ' ';
}

static void emit_journal(int prio, const char *func, const struct log_fields *f, const char *msg) {
        char buf[LINE_MAX_BYTES + 512];
        int n;

        n = snprintf(buf, sizeof(buf),
                     "PRIORITY=%d\nSYSLOG_IDENTIFIER=shmbusd\nCODE_FUNC=%s\nMESSAGE=%s\n", prio,
                     func, msg);
        if (f && f->channel && n >= 0 && (size_t)n < sizeof(buf))
                n += snprintf(buf + n, sizeof(buf) - (size_t)n, "SHMBUS_CHANNEL=%s\n", f->channel);
        if (f && f->has_uid && n >= 0 && (size_t)n < sizeof(buf))
                n += snprintf(buf + n, sizeof(buf) - (size_t)n, "SHMBUS_UID=%u\n",
                              (unsigned)f->uid);
        if (f && f->has_pid && n >= 0 && (size_t)n < sizeof(buf))
                n += snprintf(buf + n, sizeof(buf) - (size_t)n, "SHMBUS_PID=%d\n", (int)f->pid);
        if (f && f->err > 0 && n >= 0 && (size_t)n < sizeof(buf))
                n += snprintf(buf + n, sizeof(buf) - (size_t)n, "ERRNO=%d\n", f->err);
        if (n < 0 || (size_t)n >= sizeof(buf))
                n = (int)strlen(buf);
        if (send(journal_fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
                return;
        /* The journal is gone or full: stderr still reaches it, with a priority prefix. */
        fprintf(stderr, "<%d>shmbusd: %s\n", prio, msg);
}

/* Messages are written to be whole sentences, so plain text drops the fields. */
static void emit_stderr(int prio, const char *msg) {
        if (sink == SINK_PREFIXED)
                fprintf(stderr, "<%d>", prio);
        fprintf(stderr, "shmbusd: %s\n", msg);
}

static void emit(int prio, const char *func, const struct log_fields *f, const char *msg) {
        if (sink == SINK_JOURNAL)
                emit_journal(prio, func, f, msg);
        else
                emit_stderr(prio, msg);
}

void log_tick(void) {
        int64_t now = now_ms();
        char msg[128];

        for (size_t i = 0; i < SITES_MAX && sites[i].fmt; i++) {
                struct site *s = &sites[i];

                if (!s->suppressed || now - s->window < interval_ms)
                        continue;
                snprintf(msg, sizeof(msg), "%u similar messages suppressed (at most %d per %ld ms)",
                         s->suppressed, LOG_BURST, interval_ms);
                emit(LOG_NOTICE, "log_tick", NULL, msg);
                s->suppressed = 0;
        }
}

void log_full(int prio, const char *func, const struct log_fields *f, const char *fmt, ...) {
        char msg[LINE_MAX_BYTES];
        unsigned suppressed;
        va_list ap;

        if (prio > max_prio)
                return;
        if (!site_allows(fmt, &suppressed))
                return;
        if (suppressed) {
                snprintf(msg, sizeof(msg), "%u similar messages suppressed (at most %d per %ld ms)",
                         suppressed, LOG_BURST, interval_ms);
                emit(prio, func, NULL, msg);
        }
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        flatten(msg);
        emit(prio, func, f, msg);
}
