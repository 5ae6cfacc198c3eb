/* SPDX-License-Identifier: MIT */
/*
 * libevent-sub: a subscriber driven by a libevent loop through its pollable
 * descriptor (shmbus_sub_fd()), with an edge-triggered persistent event, so
 * each wake drains the subscriber to -EAGAIN as the contract asks:
 *
 *   cc libevent-sub.c $(pkg-config --cflags --libs libshmbus libevent) -o libevent-sub
 *   ./libevent-sub CHANNEL [COUNT]
 *
 * It prints each message, and stops after COUNT messages if given.
 */
#include <errno.h>
#include <event2/event.h>
#include <shmbus.h>
#include <stdio.h>
#include <stdlib.h>

struct state {
        shmbus_sub *sub;
        struct event_base *base;
        long left; /* messages still to print; < 0 for no limit */
};

static void on_readable(evutil_socket_t fd, short what, void *arg) {
        struct state *st = arg;
        char buf[65536];
        ssize_t n;

        (void)fd;
        (void)what;
        /* Edge-triggered: drain until -EAGAIN, which re-arms the descriptor. */
        while ((n = shmbus_sub_recv(st->sub, buf, sizeof(buf), 0)) != -EAGAIN) {
                if (n == -EBADMSG)
                        continue;
                if (n < 0) {
                        fprintf(stderr, "libevent-sub: %s\n", shmbus_strerror((int)n));
                        event_base_loopbreak(st->base);
                        return;
                }
                printf("%.*s\n", (int)n, buf);
                if (st->left > 0 && --st->left == 0) {
                        event_base_loopbreak(st->base);
                        break;
                }
        }
        fflush(stdout);
}

int main(int argc, char **argv) {
        struct state st = {.left = argc > 2 ? strtol(argv[2], NULL, 10) : -1};
        shmbus_channel *chan = NULL;
        shmbus_client *bus = NULL;
        struct event *ev;
        int r, fd;

        if (argc < 2) {
                fprintf(stderr, "usage: %s CHANNEL [COUNT]\n", argv[0]);
                return 2;
        }
        r = shmbus_client_new(NULL, &bus);
        if (r == 0)
                r = shmbus_client_open(bus, argv[1], SHMBUS_OPEN_CREATE, NULL, &chan);
        if (r == 0)
                r = shmbus_sub_new(chan, &st.sub);
        fd = r == 0 ? shmbus_sub_fd(st.sub) : r;
        if (fd < 0) {
                fprintf(stderr, "libevent-sub: %s\n", shmbus_strerror(fd));
                return 1;
        }
        st.base = event_base_new();
        ev = event_new(st.base, fd, EV_READ | EV_PERSIST | EV_ET, on_readable, &st);
        event_add(ev, NULL);
        event_base_dispatch(st.base);

        event_free(ev);
        event_base_free(st.base);
        shmbus_sub_free(st.sub);
        shmbus_channel_unref(chan);
        shmbus_client_free(bus);
        return 0;
}
