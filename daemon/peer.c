/* SPDX-License-Identifier: MIT */
/* See peer.h. */
#include "peer.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker.h"
#include "create.h"
#include "liveness.h"
#include "log.h"
#include "ops.h"
#include "reply.h"
#include "util.h"
#include "wire.h"

#define ACCEPT_RETRY_MS 100
/* Connections over the limit held just long enough to be told why (a close with
 * their request unread would reset them and lose the reply). */
#define REFUSING_MAX 16
/* How long a refused connection has to send the request that is answered EUSERS. */
#define REFUSED_DEADLINE_MS 1000

struct peer *peer_free(struct peer *p) {
        struct broker *b;

        if (!p)
                return NULL;
        b = p->broker;
        for (unsigned i = 0; i < b->n_peers; i++) {
                if (b->peers[i] == p) {
                        b->peers[i] = b->peers[--b->n_peers];
                        break;
                }
        }
        create_forget_peer(b, p);
        if (p->refuse) {
                assert(b->n_refusing > 0);
                b->n_refusing--;
        }
        if (p->ev)
                event_free(p->ev);
        if (p->deadline_ev)
                event_free(p->deadline_ev);
        if (p->pid_ev)
                event_free(p->pid_ev);
        shmbus__closep(&p->fd);
        shmbus__closep(&p->pidfd);
        free(p->groups);
        free(p);
        return NULL;
}

/* The process behind @p has exited: release what it held, everywhere it was. */
static void peer_reap(struct peer *p) {
        for (unsigned i = 0; i < p->n_open; i++) {
                struct chan *c = registry_find(&p->broker->channels, p->open[i]);
                unsigned n;

                if (!c)
                        continue;
                n = liveness_reap_pid(c, p->pid);
                p->broker->channels.counts.released += n;
                if (n)
                        log_info_f(
                                LOG_FIELDS(.channel = c->name, LOGF_UID(p->uid), LOGF_PID(p->pid)),
                                "channel %s: released %u slot(s) of exited pid %d", c->name, n,
                                (int)p->pid);
        }
        p->n_open = 0;
}

/*
 * A closed connection is not a dead process: a client may close it and keep
 * its channels. Slots of processes that die later are released by the sweep.
 */
static void peer_close(struct peer *p) {
        if (!pid_is_alive(p->pid))
                peer_reap(p);
        peer_free(p);
}

/* The client process exited (possibly before its socket is closed): release at once. */
static void on_pid_exit(evutil_socket_t fd, short what, void *arg) {
        struct peer *p = arg;

        peer_reap(p);
        event_del(p->pid_ev);
}

static bool peer_has_open(const struct peer *p, const char *name) {
        for (unsigned i = 0; i < p->n_open; i++)
                if (strcmp(p->open[i], name) == 0)
                        return true;
        return false;
}

/*
 * The table is bounded; a channel that does not fit is still served, and its
 * slots of a dead process are released by the periodic sweep instead (at most
 * a sweep interval later).
 */
void peer_note_open(struct peer *p, const char *name) {
        if (peer_has_open(p, name) || p->n_open >= PEER_CHANNELS_MAX)
                return;
        snprintf(p->open[p->n_open++], sizeof(p->open[0]), "%s", name);
}

void peer_forget(struct peer *p, const char *name) {
        for (unsigned i = 0; i < p->n_open; i++) {
                if (strcmp(p->open[i], name) == 0) {
                        memcpy(p->open[i], p->open[--p->n_open], sizeof(p->open[0]));
                        return;
                }
        }
}

/*
 * May the packet of @n bytes just read into @buf (with @msg_flags) be served?
 * Return: 0, or -errno with @message saying why not.
 */
static int peer_check_request(struct peer *p, const char *buf, ssize_t n, int msg_flags,
                              char message[static REPLY_MESSAGE_MAX]) {
        const struct config *cfg = &p->broker->cfg;

        /* We never ask for descriptors; a peer that sends some gets them closed. */
        if (msg_flags & MSG_CTRUNC)
                return snprintf(message, REPLY_MESSAGE_MAX, "requests carry no file descriptors"),
                       -EINVAL;
        if (n > WIRE_REQUEST_MAX)
                return snprintf(message, REPLY_MESSAGE_MAX, "request larger than %d KiB",
                                WIRE_REQUEST_MAX / 1024),
                       -EMSGSIZE;
        if (p->refuse)
                return snprintf(message, REPLY_MESSAGE_MAX,
                                "too many connections (max_connections is %u, %u per uid)",
                                cfg->max_connections, cfg->max_connections_per_uid),
                       -EUSERS;
        if (p->deadline_ev) {
                /* It has spoken: from now on it may stay as quiet as it likes. */
                event_free(p->deadline_ev);
                p->deadline_ev = NULL;
        }
        if (strlen(buf) != (size_t)n)
                return snprintf(message, REPLY_MESSAGE_MAX, "request contains a NUL byte"), -EINVAL;
        return 0;
}

void peer_serve(struct peer *p, const char *text) {
        if (ops_dispatch(p->broker, p, text) < 0)
                peer_close(p);
}

static void on_peer(evutil_socket_t fd, short what, void *arg) {
        struct peer *p = arg;
        static char buf[WIRE_REQUEST_MAX + 1];
        struct iovec iov = {.iov_base = buf, .iov_len = WIRE_REQUEST_MAX};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        char message[REPLY_MESSAGE_MAX];
        ssize_t n;
        int r;

        n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                peer_close(p);
                return;
        }
        buf[n > WIRE_REQUEST_MAX ? WIRE_REQUEST_MAX : n] = '\0';
        r = peer_check_request(p, buf, n, msg.msg_flags, message);
        if (r < 0) {
                /* A bad packet is answered and the connection kept; a refused
                 * connection (EUSERS, only ever from that check) is closed. */
                reply_send_error(p->fd, r, message);
                if (r == -EUSERS)
                        peer_close(p);
                else
                        ops_count_rejected(p->broker);
                return;
        }
        peer_serve(p, buf);
}

/* A refused connection that did not ask why in time, or one that never spoke. */
static void on_peer_deadline(evutil_socket_t fd, short what, void *arg) {
        struct peer *p = arg;

        if (!p->refuse)
                log_info_f(LOG_FIELDS(LOGF_UID(p->uid), LOGF_PID(p->pid), .err = ETIMEDOUT),
                           "connection of pid %d (uid %u) sent no request in %u ms: closed",
                           (int)p->pid, p->uid, p->broker->cfg.first_request_timeout_ms);
        peer_close(p);
}

static unsigned peers_of_uid(const struct broker *b, uid_t uid) {
        unsigned n = 0;

        for (unsigned i = 0; i < b->n_peers; i++)
                if (b->peers[i]->uid == uid && !b->peers[i]->refuse)
                        n++;
        return n;
}

/* Is a connection of @cred over a connection limit (logged)? */
static bool peer_over_limit(const struct broker *b, const struct ucred *cred) {
        if (b->n_peers - b->n_refusing >= b->cfg.max_connections) {
                log_warn_f(LOG_FIELDS(LOGF_UID(cred->uid), LOGF_PID(cred->pid), .err = EUSERS),
                           "connection refused: max_connections (%u) reached",
                           b->cfg.max_connections);
                return true;
        }
        if (cred->uid != 0 && peers_of_uid(b, cred->uid) >= b->cfg.max_connections_per_uid) {
                log_warn_f(
                        LOG_FIELDS(LOGF_UID(cred->uid), LOGF_PID(cred->pid), .err = EUSERS),
                        "connection of pid %d refused: uid %u holds max_connections_per_uid (%u)",
                        (int)cred->pid, cred->uid, b->cfg.max_connections_per_uid);
                return true;
        }
        return false;
}

/*
 * A refused connection has a second to send its request (answered EUSERS,
 * then closed); any other has first_request_timeout_ms, or it would hold a
 * place forever by never speaking. The deadline is a timer of its own, not a
 * timeout on p->ev: libevent re-arms a persistent event's timeout at every
 * activation, so any message, even one refused unread, would push it back.
 */
static int peer_arm(struct peer *p) {
        struct broker *b = p->broker;
        unsigned deadline_ms = p->refuse ? REFUSED_DEADLINE_MS : b->cfg.first_request_timeout_ms;

        p->ev = event_new(b->base, p->fd, EV_READ | EV_PERSIST, on_peer, p);
        if (deadline_ms)
                p->deadline_ev = evtimer_new(b->base, on_peer_deadline, p);
        if (!p->ev || (deadline_ms && !p->deadline_ev))
                return -ENOMEM;
        event_add(p->ev, NULL);
        if (deadline_ms) {
                struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};

                evtimer_add(p->deadline_ev, &tv);
        }
        return 0;
}

struct who peer_who(const struct peer *p) {
        return (struct who){
                .uid = p->uid, .gid = p->gid, .groups = p->groups, .n_groups = p->n_groups};
}

/*
 * The supplementary groups of the process that connected @fd, as the kernel
 * recorded them at connect() (SO_PEERGROUPS, Linux 4.13): an ACL that names a
 * group matches every member of it, not only those whose primary group it is
 * (dbus-broker does the same). They are read whole into one buffer for all
 * peers (the loop is single-threaded) and at most PEER_GROUPS_MAX are kept.
 * Return: how many the peer is in (more than *ret_n if it was capped), or -errno.
 */
static int peer_groups(int fd, gid_t **ret_groups, uint32_t *ret_n) {
        static gid_t all[NGROUPS_MAX];
        socklen_t len = sizeof(all);
        uint32_t n, keep;
        gid_t *groups;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, all, &len) < 0)
                return -errno;
        n = (uint32_t)(len / sizeof(gid_t));
        keep = n < PEER_GROUPS_MAX ? n : PEER_GROUPS_MAX;
        groups = malloc((keep ? keep : 1) * sizeof(gid_t));
        if (!groups)
                return -ENOMEM;
        memcpy(groups, all, keep * sizeof(gid_t));
        *ret_groups = groups;
        *ret_n = keep;
        return (int)n;
}

void peer_new(struct broker *b, int fd) {
        _cleanup_close_ int cfd = fd;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct peer *p;
        struct peer **arr;
        bool refuse;
        int r;

        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return;
        refuse = peer_over_limit(b, &cred);
        if (refuse)
                b->counters.refused++;
        else
                b->counters.accepted++;
        if (refuse && b->n_refusing >= REFUSING_MAX)
                return;
        arr = reallocarray(b->peers, b->n_peers + 1, sizeof(*arr));
        if (!arr)
                return;
        b->peers = arr;
        p = calloc(1, sizeof(*p));
        if (!p)
                return;
        *p = (struct peer){.broker = b,
                           .fd = TAKE_FD(cfd),
                           .pid = cred.pid,
                           .uid = cred.uid,
                           .gid = cred.gid,
                           .pidfd = -1,
                           .refuse = refuse};
        b->peers[b->n_peers++] = p;
        b->n_refusing += refuse;
        /* Without its groups a peer is judged by uid and primary gid alone (logged). */
        r = peer_groups(p->fd, &p->groups, &p->n_groups);
        if (r < 0)
                log_warn_f(LOG_FIELDS(LOGF_UID(cred.uid), LOGF_PID(cred.pid), .err = -r),
                           "connection of pid %d (uid %u): no supplementary groups: %s",
                           (int)cred.pid, cred.uid, strerror(-r));
        else if ((uint32_t)r > p->n_groups)
                log_warn_f(LOG_FIELDS(LOGF_UID(cred.uid), LOGF_PID(cred.pid)),
                           "connection of pid %d (uid %u): in %d groups; ACLs see the lowest %d",
                           (int)cred.pid, cred.uid, r, PEER_GROUPS_MAX);
        if (peer_arm(p) < 0) {
                peer_free(p);
                return;
        }
        if (refuse)
                return;
        p->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
        if (p->pidfd >= 0) {
                p->pid_ev = event_new(b->base, p->pidfd, EV_READ, on_pid_exit, p);
                event_add(p->pid_ev, NULL);
        }
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg) {
        struct broker *b = arg;

        event_add(b->listen_ev, NULL);
}

static void on_accept(evutil_socket_t fd, short what, void *arg) {
        struct broker *b = arg;
        int cfd;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /*
                         * The connection stays queued and the socket stays readable:
                         * accepting again at once would spin. Stop listening for a
                         * moment; channels keep working, and so do connected peers.
                         */
                        struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

                        if (!b->accept_starved)
                                log_warn("accept: %s; retrying every %d ms until it succeeds",
                                         strerror(errno), ACCEPT_RETRY_MS);
                        b->accept_starved = true;
                        event_del(b->listen_ev);
                        event_add(b->accept_retry_ev, &tv);
                } else if (errno != EAGAIN && errno != EINTR) {
                        log_warn("accept: %s", strerror(errno));
                }
                return;
        }
        if (b->accept_starved)
                log_notice("accepting connections again");
        b->accept_starved = false;
        peer_new(b, cfd);
}

int peer_listen(struct broker *b) {
        b->listen_ev = event_new(b->base, b->listen_fd, EV_READ | EV_PERSIST, on_accept, b);
        b->accept_retry_ev = evtimer_new(b->base, on_accept_retry, b);
        if (!b->listen_ev || !b->accept_retry_ev)
                return -ENOMEM;
        event_add(b->listen_ev, NULL);
        return 0;
}
