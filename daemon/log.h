/* SPDX-License-Identifier: MIT */
/*
 * Daemon logging to stderr, with syslog priority prefixes ("<3>") when stderr
 * is the journal, plain text otherwise.
 */
#pragma once

#include <stdio.h>
#include <syslog.h>

void log_open(void);
/* Drop messages less urgent than @max_prio (LOG_DEBUG keeps all; -1 none). */
void log_set_max(int max_prio);
__attribute__((format(printf, 2, 3))) void log_at(int prio, const char *fmt, ...);

#define log_err(...)    log_at(LOG_ERR, __VA_ARGS__)
#define log_warn(...)   log_at(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_at(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)   log_at(LOG_INFO, __VA_ARGS__)
