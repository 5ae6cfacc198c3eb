/* SPDX-License-Identifier: MIT */
/*
 * Daemon logging. Under systemd (stderr is the journal: $JOURNAL_STREAM names
 * stderr's device and inode) every line goes to the journal's native socket
 * with structured fields (PRIORITY, MESSAGE, SHMBUS_CHANNEL, SHMBUS_UID,
 * SHMBUS_PID, ERRNO, CODE_FUNC ...), so `journalctl SHMBUS_CHANNEL=chat`
 * works; if that socket cannot be written, the line goes to stderr with a
 * "<N>" priority prefix, which journald also understands. Elsewhere lines go
 * to stderr as plain text (the message itself names what the fields hold).
 *
 * Repetition is bounded: one call site (one format string), for lines about
 * a uid one call site per uid, logs at most LOG_BURST lines per
 * LOG_INTERVAL_S seconds; the rest are counted and reported in one line once
 * the interval is over (log_tick(), called from the daemon's timer, or the
 * site's next line, whichever comes first). A peer that makes the daemon log
 * (refused connections, denied requests) thus cannot flood the journal or
 * spend the daemon's time on it, and cannot hide the same line about another
 * uid either: it silences only the lines about itself.
 *
 * Single-threaded, like the daemon's event loop.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <syslog.h>

#define LOG_BURST      10
#define LOG_INTERVAL_S 10

/* What a line is about. Unset fields (NULL, 0, false) are left out. */
struct log_fields {
        const char *channel;
        bool has_uid, has_pid;
        uid_t uid;
        pid_t pid;
        int err; /* a positive errno */
};

/* A struct log_fields in place: LOG_FIELDS(.channel = name, LOGF_UID(uid), LOGF_PID(pid)). */
#define LOG_FIELDS(...) (&(struct log_fields){__VA_ARGS__})
#define LOGF_UID(u)     .uid = (u), .has_uid = true
#define LOGF_PID(p)     .pid = (p), .has_pid = true

void log_open(void);
/* Drop messages less urgent than @max_prio (LOG_DEBUG keeps all; -1 none). */
void log_set_max(int max_prio);
/* Report the call sites whose suppressed lines are due (see above). Cheap: call it often. */
void log_tick(void);
/* "err", "warning", "notice", "info", "debug" (or 3..7) to a priority; -EINVAL otherwise. */
int log_level_from_string(const char *s);

__attribute__((format(printf, 4, 5))) void
log_full(int prio, const char *func, const struct log_fields *f, const char *fmt, ...);

#define log_at(prio, ...) log_full(prio, __func__, NULL, __VA_ARGS__)
#define log_err(...)      log_full(LOG_ERR, __func__, NULL, __VA_ARGS__)
#define log_warn(...)     log_full(LOG_WARNING, __func__, NULL, __VA_ARGS__)
#define log_notice(...)   log_full(LOG_NOTICE, __func__, NULL, __VA_ARGS__)
#define log_info(...)     log_full(LOG_INFO, __func__, NULL, __VA_ARGS__)
#define log_debug(...)    log_full(LOG_DEBUG, __func__, NULL, __VA_ARGS__)

/* The same, with fields: log_warn_f(LOG_FIELDS(.channel = c->name), "..."). */
#define log_err_f(f, ...)    log_full(LOG_ERR, __func__, f, __VA_ARGS__)
#define log_warn_f(f, ...)   log_full(LOG_WARNING, __func__, f, __VA_ARGS__)
#define log_notice_f(f, ...) log_full(LOG_NOTICE, __func__, f, __VA_ARGS__)
#define log_info_f(f, ...)   log_full(LOG_INFO, __func__, f, __VA_ARGS__)
