/* SPDX-License-Identifier: MIT */
/* See notify.h and sd_notify(3): the protocol is a stable interface of systemd. */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un addr;
static socklen_t addr_len;
static int fd = -1;
static uint64_t watchdog_usec;

void notify_init(void) {
        const char *path = getenv("NOTIFY_SOCKET");
        const char *wd = getenv("WATCHDOG_USEC"), *wd_pid = getenv("WATCHDOG_PID");
        size_t n;

        if (wd && (!wd_pid || atol(wd_pid) == (long)getpid()))
                watchdog_usec = strtoull(wd, NULL, 10);
        /* Not for our children (sd_notify's unset_environment). */
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        if (!path || (path[0] != '/' && path[0] != '@'))
                return;
        n = strlen(path);
        if (n >= sizeof(addr.sun_path))
                return;
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, path, n);
        if (path[0] == '@')
                addr.sun_path[0] = '\0'; /* abstract namespace */
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        unsetenv("NOTIFY_SOCKET");
}

uint64_t notify_watchdog_usec(void) {
        return watchdog_usec;
}

void notify(const char *fmt, ...) {
        char buf[512];
        va_list ap;
        int n;

        if (fd < 0)
                return;
        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(buf))
                return;
        while (sendto(fd, buf, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len) < 0 &&
               errno == EINTR)
                ;
}
