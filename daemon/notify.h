/* SPDX-License-Identifier: MIT */
/*
 * The systemd notification protocol, spoken natively (no libsystemd): one
 * datagram of "KEY=VALUE" lines to $NOTIFY_SOCKET. Does nothing when the
 * daemon was not started by a service manager that asked for it.
 */
#pragma once

#include <stdint.h>

void notify_init(void);
/* Send @state (e.g. "READY=1\nSTATUS=serving"); errors are ignored, as systemd's own client does.
 */
__attribute__((format(printf, 1, 2))) void notify(const char *fmt, ...);
/* Watchdog interval requested by the service manager in microseconds, or 0. */
uint64_t notify_watchdog_usec(void);
