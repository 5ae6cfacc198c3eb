/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the control protocol as shmbusd serves it. Each input is
 * split at newlines into up to 8 requests, sent over a fresh connection to a
 * real broker (socketpair, so the peer is this process), one event-loop turn
 * after each; the replies and any descriptors they carry are drained, then the
 * connection is closed. Channels are created for real, in a private shm
 * directory, so open/delete sequences reach the code that touches files.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon/broker.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/shmdir.h"
#include "fuzz/fuzz.h"

#define MAX_REQUESTS 8

static struct event_base *base;
static struct broker *broker;

static void cleanup_dir(void) {
        char cmd[512];
        const char *d = getenv("SHMBUS_FUZZ_DIR");

        if (d) {
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
                if (system(cmd) != 0)
                        fprintf(stderr, "fuzz-request: could not remove %s\n", d);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        static char dir[] = "/tmp/shmbus-fuzz-XXXXXX";
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct config cfg;
        char why[256];
        int lfd;

        (void)argc;
        (void)argv;
        if (!mkdtemp(dir))
                abort();
        setenv("SHMBUS_FUZZ_DIR", dir, 1);
        atexit(cleanup_dir);
        log_set_max(-1);
        config_init_defaults(&cfg);
        snprintf(cfg.shm_dir, sizeof(cfg.shm_dir), "%s/channels", dir);
        snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s/sock", dir);
        mkdir(cfg.shm_dir, 0755);
        /* Small channels, few of them: the fuzzer creates them by the thousand. */
        cfg.max_channels = 8;
        cfg.defaults.data_size = 4096;
        cfg.defaults.max_msg = 1024;
        cfg.defaults.max_subs = 2;
        cfg.defaults.max_pubs = 2;
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg.socket_path);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
                abort();
        base = event_base_new();
        if (!base ||
            broker_new(base, &cfg, lfd, shmdir_open(cfg.shm_dir, why, sizeof(why)), &broker) < 0)
                abort();
        config_deinit(&cfg);
        return 0;
}

/* Read every queued reply; close the descriptors an "open" hands out. */
static void drain(int fd) {
        char buf[1 << 16];
        union {
                char buf[CMSG_SPACE(8 * sizeof(int))];
                struct cmsghdr align;
        } cm;

        for (;;) {
                struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
                struct msghdr msg = {.msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = cm.buf,
                                     .msg_controllen = sizeof(cm.buf)};

                if (recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
                        return;
                for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
                        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int fds[8];

                        memcpy(fds, CMSG_DATA(h), n * sizeof(int));
                        for (size_t i = 0; i < n; i++)
                                close(fds[i]);
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int sv[2];
        size_t at = 0;

        if (!base)
                LLVMFuzzerInitialize(NULL, NULL);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                return 0;
        broker_add_connection(broker, sv[0]);
        for (int i = 0; i < MAX_REQUESTS && at < size; i++) {
                const uint8_t *nl = memchr(data + at, '\n', size - at);
                size_t len = nl ? (size_t)(nl - (data + at)) : size - at;

                if (send(sv[1], data + at, len, MSG_DONTWAIT) < 0 && errno != EAGAIN)
                        break;
                event_base_loop(base, EVLOOP_NONBLOCK);
                drain(sv[1]);
                at += len + 1;
        }
        close(sv[1]);
        event_base_loop(base, EVLOOP_NONBLOCK); /* the broker sees the close and frees the peer */
        return 0;
}
