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
/*
 * Call sites (one per uid a line is about) rate-limited at once. A key that
 * finds no free entry shares the overflow entry's budget with every other such
 * key: limited together, never unlimited.
 */
#define SITES_MAX 64

enum sink { SINK_PLAIN, SINK_PREFIXED, SINK_JOURNAL };

static enum sink sink = SINK_PLAIN;
static int journal_fd = -1;
static int max_prio = LOG_DEBUG;
static long interval_ms = LOG_INTERVAL_S * 1000L;

/*
 * A site is a call site (its format string) and, for lines about a uid, that
 * uid: a peer that floods a call site silences its own lines there, not the
 * same line about another user (a denial of uid A stays visible however many
 * denials uid B provokes).
 */
struct site {
        const char *fmt; /* identity of the call site */
        bool has_uid;
        uid_t uid;
        int64_t window; /* start of the current interval, ms */
        unsigned n;     /* lines logged in it */
        unsigned suppressed;
};
static struct site sites[SITES_MAX];
static struct site overflow;

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

static bool site_is(const struct site *s, const char *fmt, const struct log_fields *f) {
        bool has_uid = f && f->has_uid;

        return s->fmt == fmt && s->has_uid == has_uid && (!has_uid || s->uid == f->uid);
}

/* The entry for @fmt and @f: its own, a free or idle one, or the shared overflow. */
static struct site *site_find(const char *fmt, const struct log_fields *f, int64_t now) {
        struct site *spare = NULL;

        for (size_t i = 0; i < SITES_MAX; i++) {
                struct site *s = &sites[i];

                if (s->fmt && site_is(s, fmt, f))
                        return s;
                /* Idle: its interval is over and it owes no count of dropped lines. */
                if (!spare && (!s->fmt || (now - s->window >= interval_ms && !s->suppressed)))
                        spare = s;
        }
        if (!spare)
                return &overflow;
        *spare = (struct site){
                .fmt = fmt, .has_uid = f && f->has_uid, .uid = f ? f->uid : 0, .window = now};
        return spare;
}

static bool site_allows(const char *fmt, const struct log_fields *f, unsigned *ret_suppressed,
                        const struct site **ret_site) {
        int64_t now = now_ms();
        struct site *s = site_find(fmt, f, now);

        *ret_site = s;
        *ret_suppressed = 0;
        if (now - s->window >= interval_ms) {
                *ret_suppressed = s->suppressed;
                s->window = now;
                s->n = 0;
                s->suppressed = 0;
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

/* "N similar messages suppressed ...", with the uid they were about if they had one. */
static void summary(const struct site *s, unsigned suppressed, char *msg, size_t size) {
        if (s->has_uid)
                snprintf(msg, size,
                         "%u similar messages suppressed (at most %d per %ld ms about uid %u)",
                         suppressed, LOG_BURST, interval_ms, (unsigned)s->uid);
        else
                snprintf(msg, size, "%u similar messages suppressed (at most %d per %ld ms)",
                         suppressed, LOG_BURST, interval_ms);
}

static void tick_one(struct site *s, int64_t now) {
        char msg[160];

        if (!s->suppressed || now - s->window < interval_ms)
                return;
        summary(s, s->suppressed, msg, sizeof(msg));
        emit(LOG_NOTICE, "log_tick", s->has_uid ? LOG_FIELDS(LOGF_UID(s->uid)) : NULL, msg);
        s->suppressed = 0;
}

void log_tick(void) {
        int64_t now = now_ms();

        for (size_t i = 0; i < SITES_MAX; i++)
                if (sites[i].fmt)
                        tick_one(&sites[i], now);
        tick_one(&overflow, now);
}

void log_full(int prio, const char *func, const struct log_fields *f, const char *fmt, ...) {
        const struct site *site;
        char msg[LINE_MAX_BYTES];
        unsigned suppressed;
        va_list ap;

        if (prio > max_prio)
                return;
        if (!site_allows(fmt, f, &suppressed, &site))
                return;
        if (suppressed) {
                summary(site, suppressed, msg, sizeof(msg));
                emit(prio, func, NULL, msg);
        }
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        flatten(msg);
        emit(prio, func, f, msg);
}
