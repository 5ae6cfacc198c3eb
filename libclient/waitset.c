/* SPDX-License-Identifier: MIT */
/*
 * The wait set (shmbus_waitset_*): one epoll instance over the descriptors of
 * subscribers and publishers (shmbus_sub_fd(), shmbus_pub_fd()) and plain
 * descriptors, so one thread waits for many channels with one kernel wait.
 *
 * Invariants: every member is in the epoll set exactly once, with its own
 * struct as the event's data, and is named by its userdata, which is unique
 * in the set. Level-triggered: a member is reported for as long as its
 * descriptor is readable, so a subscriber drained to -EAGAIN stops being
 * reported and one left with messages is reported again.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "shmbus.h"

#include "alloc.h"
#include "util.h"

/* Events one wait takes from the kernel; a caller asking for more gets this many. */
#define WAIT_BATCH 64

struct member {
        struct member *next;
        void *userdata;
        int fd;
};

struct shmbus_waitset {
        int epfd;
        struct member *members;
};

SHMBUS_EXPORT int shmbus_waitset_new(shmbus_waitset **ret_ws) {
        _cleanup_free_ shmbus_waitset *ws = NULL;

        if (!ret_ws)
                return -EINVAL;
        ws = shmbus__calloc(1, sizeof(*ws));
        if (!ws)
                return -ENOMEM;
        ws->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (ws->epfd < 0)
                return -errno;
        *ret_ws = TAKE_PTR(ws);
        return 0;
}

SHMBUS_EXPORT shmbus_waitset *shmbus_waitset_free(shmbus_waitset *ws) {
        if (!ws)
                return NULL;
        while (ws->members) {
                struct member *m = ws->members;

                ws->members = m->next;
                free(m);
        }
        close(ws->epfd);
        free(ws);
        return NULL;
}

static struct member **member_find(shmbus_waitset *ws, const void *userdata) {
        struct member **p;

        for (p = &ws->members; *p; p = &(*p)->next)
                if ((*p)->userdata == userdata)
                        return p;
        return NULL;
}

static int member_add(shmbus_waitset *ws, int fd, uint32_t events, void *userdata) {
        _cleanup_free_ struct member *m = NULL;
        struct epoll_event ev;

        if (fd < 0)
                return fd;
        if (member_find(ws, userdata))
                return -EEXIST;
        m = shmbus__calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->userdata = userdata;
        m->fd = fd;
        ev = (struct epoll_event){.events = events, .data.ptr = m};
        if (epoll_ctl(ws->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        m->next = ws->members;
        ws->members = TAKE_PTR(m);
        return 0;
}

SHMBUS_EXPORT int shmbus_waitset_add_sub(shmbus_waitset *ws, shmbus_sub *sub, void *userdata) {
        if (!ws || !sub)
                return -EINVAL;
        return member_add(ws, shmbus_sub_fd(sub), EPOLLIN, userdata);
}

SHMBUS_EXPORT int shmbus_waitset_add_pub(shmbus_waitset *ws, shmbus_pub *pub, void *userdata) {
        if (!ws || !pub)
                return -EINVAL;
        return member_add(ws, shmbus_pub_fd(pub), EPOLLIN, userdata);
}

SHMBUS_EXPORT int shmbus_waitset_add_fd(shmbus_waitset *ws, int fd, uint32_t events,
                                        void *userdata) {
        /* poll()'s bits and epoll's have the same values; these are the ones we pass on. */
        if (!ws || fd < 0 || !events || (events & ~(uint32_t)(POLLIN | POLLPRI | POLLOUT)))
                return -EINVAL;
        return member_add(ws, fd, events, userdata);
}

SHMBUS_EXPORT int shmbus_waitset_remove(shmbus_waitset *ws, void *userdata) {
        struct member **p, *m;

        if (!ws)
                return -EINVAL;
        p = member_find(ws, userdata);
        if (!p)
                return -ENOENT;
        m = *p;
        *p = m->next;
        /* A descriptor closed already has left the epoll set by itself. */
        (void)epoll_ctl(ws->epfd, EPOLL_CTL_DEL, m->fd, NULL);
        free(m);
        return 0;
}

SHMBUS_EXPORT int shmbus_waitset_wait(shmbus_waitset *ws, void **ret_ready, size_t n,
                                      int timeout_ms) {
        struct epoll_event ev[WAIT_BATCH];
        int got;

        if (!ws || !ret_ready || n == 0 || timeout_ms < -1)
                return -EINVAL;
        got = epoll_wait(ws->epfd, ev, n < WAIT_BATCH ? (int)n : WAIT_BATCH, timeout_ms);
        if (got < 0)
                return -errno;
        if (got == 0)
                return timeout_ms == 0 ? -EAGAIN : -ETIMEDOUT;
        for (int i = 0; i < got; i++)
                ret_ready[i] = ((struct member *)ev[i].data.ptr)->userdata;
        return got;
}

SHMBUS_EXPORT int shmbus_waitset_fd(const shmbus_waitset *ws) {
        return ws ? ws->epfd : -EINVAL;
}
