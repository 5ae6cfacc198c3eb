/* SPDX-License-Identifier: MIT */
/*
 * epoll-sub: follow several channels from one epoll loop, next to a plain
 * descriptor (standard input), with each subscriber's pollable descriptor
 * (shmbus_sub_fd()). Built against the installed library only:
 *
 *   cc epoll-sub.c $(pkg-config --cflags --libs libshmbus) -o epoll-sub
 *   ./epoll-sub CHANNEL...
 *
 * It prints every message as "CHANNEL: TEXT" and stops at end of input. The
 * loop is level-triggered and takes at most 64 messages per channel per wake,
 * so a busy channel cannot starve the others: a subscriber left with messages
 * stays readable, and one drained to -EAGAIN is not reported until the next
 * message is committed.
 */
#include <errno.h>
#include <shmbus.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_CHANNELS 16
#define BATCH        64

struct follow {
        const char *name;
        shmbus_channel *chan;
        shmbus_sub *sub;
};

/* Up to BATCH messages; returns -EAGAIN once drained (the descriptor is re-armed). */
static int take(struct follow *f) {
        char buf[65536];
        ssize_t n = 0;

        for (int i = 0; i < BATCH; i++) {
                n = shmbus_sub_recv(f->sub, buf, sizeof(buf), 0);
                if (n == -EAGAIN)
                        break;
                if (n == -EBADMSG)
                        continue; /* a corrupt record was skipped */
                if (n < 0)
                        return (int)n;
                printf("%s: %.*s\n", f->name, (int)n, buf);
        }
        fflush(stdout);
        return (int)(n < 0 ? n : 0);
}

int main(int argc, char **argv) {
        struct follow fs[MAX_CHANNELS];
        struct epoll_event ev;
        shmbus_client *bus;
        int ep, nf = argc - 1, r;

        if (nf < 1 || nf > MAX_CHANNELS) {
                fprintf(stderr, "usage: %s CHANNEL... (at most %d)\n", argv[0], MAX_CHANNELS);
                return 2;
        }
        r = shmbus_client_new(NULL, &bus);
        if (r < 0) {
                fprintf(stderr, "epoll-sub: %s\n", shmbus_strerror(r));
                return 1;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        for (int i = 0; i < nf; i++) {
                fs[i].name = argv[i + 1];
                r = shmbus_client_open(bus, fs[i].name, 0, NULL, &fs[i].chan);
                if (r == 0)
                        r = shmbus_sub_new(fs[i].chan, &fs[i].sub);
                if (r == 0)
                        r = shmbus_sub_fd(fs[i].sub);
                if (r < 0) {
                        fprintf(stderr, "epoll-sub: %s: %s\n", fs[i].name, shmbus_strerror(r));
                        return 1;
                }
                ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &fs[i]};
                epoll_ctl(ep, EPOLL_CTL_ADD, r, &ev);
        }
        /* The channels' descriptors stay valid while the daemon is down or restarts. */
        bus = shmbus_client_free(bus);
        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);

        for (;;) {
                struct epoll_event ready[MAX_CHANNELS + 1];
                int n = epoll_wait(ep, ready, MAX_CHANNELS + 1, -1);

                for (int i = 0; i < n; i++) {
                        if (!ready[i].data.ptr) {
                                char line[256];

                                if (read(STDIN_FILENO, line, sizeof(line)) <= 0)
                                        goto done;
                                continue;
                        }
                        r = take(ready[i].data.ptr);
                        if (r < 0 && r != -EAGAIN) {
                                fprintf(stderr, "epoll-sub: %s\n", shmbus_strerror(r));
                                goto done;
                        }
                }
        }
done:
        for (int i = 0; i < nf; i++) {
                shmbus_sub_free(fs[i].sub);
                shmbus_channel_unref(fs[i].chan);
        }
        close(ep);
        return 0;
}
