/* SPDX-License-Identifier: MIT */
/*
 * The client side of the control protocol (docs/PROTOCOL.md; its names are
 * wire.h's): one JSON object per SOCK_SEQPACKET packet, channel descriptors
 * in SCM_RIGHTS. The connection is only for control: channels it opened keep
 * working while the daemon is down, and the next request reconnects.
 *
 * Invariants: one request is in flight per client (the lock), and a request
 * whose reply cannot be received leaves no reply queued behind it.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "alloc.h"
#include "channel.h"
#include "json.h"
#include "opts.h"
#include "proc.h"
#include "util.h"
#include "wire.h"

#define DEFAULT_TIMEOUT_MS 5000
#define ERROR_MAX          256
/* Retrying for a daemon or a channel to appear: from 10 ms, doubling, to 250 ms. */
#define RETRY_FIRST_MS 10
#define RETRY_MAX_MS   250

struct shmbus_client {
        pthread_mutex_t lock;
        int fd;
        int timeout_ms; /* for each request: > 0, or -1 for ever */
        unsigned gen;   /* the process generation that made it (proc.h) */
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/*
 * What the last failed call of this thread said, and on which client (NULL:
 * shmbus_client_new()). Per thread, like dlerror(), so that no caller reads
 * another thread's failure and no lock is needed to read it.
 */
static _Thread_local struct {
        const shmbus_client *client;
        char text[ERROR_MAX];
} last_error;

static void error_clear(const shmbus_client *c) {
        last_error.client = c;
        last_error.text[0] = '\0';
}

__attribute__((format(printf, 3, 4))) static int error_set(const shmbus_client *c, int code,
                                                           const char *fmt, ...) {
        va_list ap;

        last_error.client = c;
        va_start(ap, fmt);
        vsnprintf(last_error.text, sizeof(last_error.text), fmt, ap);
        va_end(ap);
        return code;
}

static void client_freep(shmbus_client **c) {
        shmbus_client_free(*c);
}

static int64_t now_ms(void) {
        return shmbus__now_ns() / 1000000;
}

/* The end of a wait of @timeout_ms from now; -1 for none. */
static int64_t deadline_after(int timeout_ms) {
        return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static void sleep_ms(int64_t ms) {
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

/*
 * Sleep @*wait ms (never past @deadline, -1 for none) and double @*wait up to
 * RETRY_MAX_MS, for waits that have no event to wait on. Return: false once the
 * deadline has passed.
 */
static bool backoff(int64_t deadline, int64_t *wait) {
        if (deadline >= 0) {
                int64_t left = deadline - now_ms();

                if (left <= 0)
                        return false;
                if (*wait > left)
                        *wait = left;
        }
        sleep_ms(*wait);
        *wait = *wait * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *wait * 2;
        return true;
}

/* Wait until @fd is ready for @events or @deadline passes. */
static int fd_wait(int fd, short events, int64_t deadline) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int left, n;

        for (;;) {
                left = -1;
                if (deadline >= 0) {
                        int64_t l = deadline - now_ms();

                        if (l <= 0)
                                return -ETIMEDOUT;
                        left = l > INT32_MAX ? INT32_MAX : (int)l;
                }
                n = poll(&pfd, 1, left);
                if (n > 0)
                        return 0;
                if (n < 0 && errno != EINTR)
                        return -errno;
        }
}

/*
 * A fresh connection. Non-blocking: a listener whose backlog is full (a
 * daemon stopped or hung) refuses with EAGAIN instead of holding us.
 */
static int client_connect(shmbus_client *c, int64_t deadline) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;

        memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (deadline >= 0 && now_ms() >= deadline)
                        return -ETIMEDOUT;
                sleep_ms(RETRY_FIRST_MS);
        }
        if (c->fd >= 0)
                close(c->fd);
        c->fd = TAKE_FD(fd);
        return 0;
}

/* The most descriptors a reply carries: an open's ctl, data and the channel's eventfd. */
#define REPLY_FDS_MAX 3

/*
 * Send @req, receive the reply and up to REPLY_FDS_MAX descriptors, by
 * @deadline. Caller holds the lock.
 */
static int roundtrip(shmbus_client *c, const char *req, char **ret_reply, int *fds, unsigned *n_fds,
                     int64_t deadline) {
        union {
                char buf[CMSG_SPACE(4 * sizeof(int))];
                struct cmsghdr align;
        } cmsg;
        _cleanup_free_ char *buf = NULL;
        struct iovec iov;
        struct msghdr msg;
        struct cmsghdr *h;
        bool sent = false;
        int send_err = 0, r;
        ssize_t n;

        /* Before the send: a reply we had no room for would answer the next request. */
        buf = shmbus__malloc(WIRE_REPLY_MAX + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (send(c->fd, req, strlen(req), MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) {
                        sent = true;
                        break;
                }
                send_err = errno;
                if (send_err == EINTR)
                        continue;
                if (send_err != EAGAIN)
                        break;
                r = fd_wait(c->fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
        }
        iov = (struct iovec){.iov_base = buf, .iov_len = WIRE_REPLY_MAX};
        msg = (struct msghdr){.msg_iov = &iov,
                              .msg_iovlen = 1,
                              .msg_control = cmsg.buf,
                              .msg_controllen = sizeof(cmsg.buf)};
        /*
         * If the send failed, the daemon may still have said why before it closed
         * (a refused connection gets an EUSERS reply): read what is already queued.
         */
        for (;;) {
                if (sent) {
                        r = fd_wait(c->fd, POLLIN, deadline);
                        if (r < 0)
                                return r;
                }
                n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (n >= 0 || (errno != EINTR && (errno != EAGAIN || !sent)))
                        break;
        }
        if (n <= 0 && !sent)
                return -send_err;
        if (n < 0)
                return -errno;
        if (n == 0)
                return -ECONNRESET;
        *n_fds = 0;
        for (h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h)) {
                if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                        continue;
                unsigned k = (unsigned)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                int got[4];

                memcpy(got, CMSG_DATA(h), k * sizeof(int));
                for (unsigned i = 0; i < k; i++) {
                        if (fds && *n_fds < REPLY_FDS_MAX)
                                fds[(*n_fds)++] = got[i];
                        else
                                close(got[i]); /* more than we asked for: not ours to keep */
                }
        }
        if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n > WIRE_REPLY_MAX) {
                for (unsigned i = 0; i < *n_fds; i++)
                        close(fds[i]);
                /* The kernel drops descriptors we have no room for, and says so. */
                return (msg.msg_flags & MSG_CTRUNC) ? -EMFILE : -EPROTO;
        }
        buf[n] = '\0';
        *ret_reply = TAKE_PTR(buf);
        return 0;
}

static bool is_disconnect(int r) {
        return r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN || r == -EBADF;
}

/* Say why a request failed before the daemon could answer it. */
static int request_failed(const shmbus_client *c, int r, int timeout_ms) {
        switch (r) {
        case -ETIMEDOUT:
                return error_set(c, r, "shmbusd at %s is not answering (no reply within %d ms)",
                                 c->path, timeout_ms);
        case -ENOENT:
        case -ECONNREFUSED:
                return error_set(c, r, "no shmbusd is listening at %s", c->path);
        case -EACCES:
                return error_set(c, r, "may not connect to shmbusd at %s", c->path);
        default:
                return error_set(c, r, "request to shmbusd at %s failed: %s", c->path,
                                 shmbus_strerror(r));
        }
}

/*
 * A request with one reconnect if the daemon went away since the last one,
 * all within the client's timeout. A request that times out takes its
 * connection with it: its reply may still come, and must not answer the next.
 */
static int request(shmbus_client *c, const char *req, char **ret_reply, int *fds, unsigned *n_fds) {
        unsigned dummy;
        int64_t deadline;
        int r, timeout_ms;

        error_clear(c);
        if (c->gen != shmbus__proc_gen())
                return error_set(c, -ECHILD,
                                 "this client was made in another process (before fork()): "
                                 "make a new one in this process");
        if (strlen(req) > WIRE_REQUEST_MAX)
                return error_set(c, -EMSGSIZE, "request of %zu B > %d B", strlen(req),
                                 WIRE_REQUEST_MAX);
        pthread_mutex_lock(&c->lock);
        timeout_ms = c->timeout_ms;
        deadline = deadline_after(timeout_ms);
        r = c->fd >= 0 ? roundtrip(c, req, ret_reply, fds, n_fds ? n_fds : &dummy, deadline)
                       : -ENOTCONN;
        if (is_disconnect(r)) {
                r = client_connect(c, deadline);
                if (r == 0)
                        r = roundtrip(c, req, ret_reply, fds, n_fds ? n_fds : &dummy, deadline);
        }
        if (r == -ETIMEDOUT && c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
        pthread_mutex_unlock(&c->lock);
        return r < 0 ? request_failed(c, r, timeout_ms) : 0;
}

/* {"v":1,"op":@op}: the start of every request. */
static cJSON *request_new(const char *op) {
        cJSON *req = cJSON_CreateObject();

        if (req && (!cJSON_AddNumberToObject(req, WIRE_V, WIRE_VERSION) ||
                    !cJSON_AddStringToObject(req, WIRE_OP, op))) {
                cJSON_Delete(req);
                return NULL;
        }
        return req;
}

/*
 * Send @req and parse the reply. Returns the reply's status (0 or its -errno),
 * and on 0 the parsed reply in @ret_reply if asked for. Descriptors that came
 * with the reply are in @fds either way; closing them is the caller's job.
 */
static int call(shmbus_client *c, const cJSON *req, cJSON **ret_reply, int *fds, unsigned *n_fds) {
        _cleanup_free_ char *text = NULL, *reply = NULL;
        _cleanup_cjson_ cJSON *rep = NULL;
        int r;

        text = cJSON_PrintUnformatted(req);
        if (!text)
                return -ENOMEM;
        r = request(c, text, &reply, fds, n_fds);
        if (r < 0)
                return r;
        rep = cJSON_Parse(reply);
        if (!rep)
                return error_set(c, -EPROTO, "shmbusd's reply is not JSON");
        r = shmbus__wire_reply_status(rep);
        if (r < 0) {
                /* The daemon's own words say what to do; the code alone rarely does. */
                const cJSON *m = cJSON_GetObjectItemCaseSensitive(rep, WIRE_MESSAGE);

                if (cJSON_IsString(m) && m->valuestring[0])
                        return error_set(c, r, "%s", m->valuestring);
                return error_set(c, r, "shmbusd says: %s", shmbus_strerror(r));
        }
        if (ret_reply)
                *ret_reply = TAKE_PTR(rep);
        return 0;
}

/* $SHMBUS_TIMEOUT_MS if it is a valid timeout (-1 or 1 .. INT_MAX), else the default. */
static int timeout_from_env(void) {
        const char *s = getenv("SHMBUS_TIMEOUT_MS");
        char *end;
        long v;

        if (!s || !*s)
                return DEFAULT_TIMEOUT_MS;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || (v != -1 && (v < 1 || v > INT32_MAX)))
                return DEFAULT_TIMEOUT_MS;
        return (int)v;
}

SHMBUS_EXPORT int shmbus_client_new(const char *socket_path, shmbus_client **ret_client) {
        _cleanup_(client_freep) shmbus_client *c = NULL;
        _cleanup_cjson_ cJSON *req = NULL;
        int r;

        error_clear(NULL);
        if (!ret_client)
                return -EINVAL;
        if (!socket_path)
                socket_path = getenv("SHMBUS_SOCKET");
        if (!socket_path || !*socket_path)
                socket_path = SHMBUS_DEFAULT_SOCKET;
        if (strlen(socket_path) >= sizeof(c->path))
                return error_set(NULL, -ENAMETOOLONG, "socket path longer than %zu B",
                                 sizeof(c->path) - 1);
        c = shmbus__calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->timeout_ms = timeout_from_env();
        c->gen = shmbus__proc_gen();
        pthread_mutex_init(&c->lock, NULL);
        snprintf(c->path, sizeof(c->path), "%s", socket_path);
        r = client_connect(c, deadline_after(c->timeout_ms));
        if (r < 0)
                r = request_failed(c, r, c->timeout_ms);
        if (r == 0) {
                req = request_new(WIRE_OP_HELLO);
                r = req ? call(c, req, NULL, NULL, NULL) : -ENOMEM;
        }
        if (r < 0) {
                /* The text is kept, but there is no client to ask about: it is NULL's. */
                last_error.client = NULL;
                return r;
        }
        *ret_client = TAKE_PTR(c);
        return 0;
}

SHMBUS_EXPORT int shmbus_client_new_wait(const char *socket_path, int timeout_ms,
                                         shmbus_client **ret_client) {
        int64_t deadline, wait = RETRY_FIRST_MS;
        int r;

        if (!ret_client || timeout_ms < -1)
                return -EINVAL;
        deadline = deadline_after(timeout_ms);
        for (;;) {
                r = shmbus_client_new(socket_path, ret_client);
                if (r != -ENOENT && r != -ECONNREFUSED)
                        return r;
                /* Nobody listens yet: a socket appearing has no event to wait on, so back off. */
                if (!backoff(deadline, &wait))
                        return r;
        }
}

SHMBUS_EXPORT int shmbus_client_set_timeout(shmbus_client *client, int timeout_ms) {
        if (!client || (timeout_ms < 1 && timeout_ms != -1))
                return -EINVAL;
        pthread_mutex_lock(&client->lock);
        client->timeout_ms = timeout_ms;
        pthread_mutex_unlock(&client->lock);
        return 0;
}

SHMBUS_EXPORT const char *shmbus_client_last_error(const shmbus_client *client) {
        if (client && last_error.client != client)
                return "";
        return last_error.text;
}

SHMBUS_EXPORT shmbus_client *shmbus_client_free(shmbus_client *client) {
        if (!client)
                return NULL;
        if (client->fd >= 0)
                close(client->fd);
        pthread_mutex_destroy(&client->lock);
        free(client);
        return NULL;
}

/* The ids of @opts's grants that include @role, as {"uids": [...], "gids": [...]}. */
static cJSON *grants_role_json(const shmbus_opts *opts, int role) {
        cJSON *acl = cJSON_CreateObject();

        for (int k = 0; acl && k < 2; k++) {
                const struct shmbus__grant *g;
                uint32_t n = shmbus__opts_grants(opts, k == 0, &g);
                cJSON *ids = cJSON_AddArrayToObject(acl, k == 0 ? WIRE_UIDS : WIRE_GIDS);

                if (!ids) {
                        cJSON_Delete(acl);
                        return NULL;
                }
                for (uint32_t i = 0; i < n; i++)
                        if (g[i].roles & role)
                                cJSON_AddItemToArray(ids, cJSON_CreateNumber(g[i].id));
        }
        return acl;
}

/* The create object's "grants", if @opts grants anything. */
static bool add_grants(cJSON *create, const shmbus_opts *opts) {
        const struct shmbus__grant *g;
        cJSON *grants, *pub, *sub;

        if (shmbus__opts_grants(opts, true, &g) == 0 && shmbus__opts_grants(opts, false, &g) == 0)
                return true;
        grants = cJSON_AddObjectToObject(create, WIRE_GRANTS);
        pub = grants_role_json(opts, SHMBUS_GRANT_PUBLISH);
        sub = grants_role_json(opts, SHMBUS_GRANT_SUBSCRIBE);
        if (!grants || !pub || !sub) {
                cJSON_Delete(pub);
                cJSON_Delete(sub);
                return false;
        }
        cJSON_AddItemToObject(grants, WIRE_GRANT_PUBLISH, pub);
        cJSON_AddItemToObject(grants, WIRE_GRANT_SUBSCRIBE, sub);
        return true;
}

/* The "create" member of an open request: the caller's geometry, or true for the daemon's. */
static bool add_create(cJSON *req, const shmbus_opts *create_opts) {
        const struct shmbus_ring_geom *g;
        uint32_t slow_ms;
        cJSON *o;

        if (!create_opts)
                return cJSON_AddTrueToObject(req, WIRE_CREATE);
        g = shmbus__opts_geom(create_opts);
        o = cJSON_AddObjectToObject(req, WIRE_CREATE);
        return o && cJSON_AddNumberToObject(o, WIRE_CAPACITY, (double)g->data_size) &&
               cJSON_AddNumberToObject(o, WIRE_MAX_MSG, g->max_msg) &&
               cJSON_AddStringToObject(o, WIRE_POLICY,
                                       g->policy == SHMBUS_POLICY_BLOCK ? WIRE_POLICY_BLOCK
                                                                        : WIRE_POLICY_OVERWRITE) &&
               cJSON_AddNumberToObject(o, WIRE_MAX_SUBSCRIBERS, g->max_subs) &&
               cJSON_AddNumberToObject(o, WIRE_MAX_PUBLISHERS, g->max_pubs) &&
               add_grants(o, create_opts) &&
               (!shmbus__opts_slow_subscriber_timeout(create_opts, &slow_ms) ||
                cJSON_AddNumberToObject(o, WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS, slow_ms));
}

/*
 * Whether @fd may be used as the channel's eventfd: its /proc/self/fdinfo says
 * it is one ("eventfd-count:"), or there is no /proc to ask (shmbusd, whom we
 * trust with the channel's files, is trusted with this too).
 */
static bool fd_is_eventfd(int fd) {
        char path[64], buf[256];
        _cleanup_close_ int info = -1;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        info = open(path, O_RDONLY | O_CLOEXEC);
        if (info < 0)
                return errno == ENOENT;
        n = read(info, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        return strstr(buf, "eventfd-count:") != NULL;
}

/* One open request; -ENOENT comes back as it is, for the caller's wait. */
static int open_once(shmbus_client *client, const char *name, int flags,
                     const shmbus_opts *create_opts, shmbus_channel **ret_chan) {
        _cleanup_cjson_ cJSON *req = NULL, *rep = NULL;
        int fds[REPLY_FDS_MAX] = {-1, -1, -1};
        unsigned n_fds = 0;
        const cJSON *pid, *gen;
        int r;

        req = request_new(WIRE_OP_OPEN);
        if (!req || !cJSON_AddStringToObject(req, WIRE_NAME, name) ||
            !cJSON_AddStringToObject(req, WIRE_ROLE,
                                     flags & SHMBUS_OPEN_PUBLISH ? WIRE_ROLE_PUB : WIRE_ROLE_SUB) ||
            ((flags & SHMBUS_OPEN_CREATE) && !add_create(req, create_opts)) ||
            ((flags & SHMBUS_OPEN_ACCEPT_EXISTING) &&
             !cJSON_AddTrueToObject(req, WIRE_ACCEPT_EXISTING)))
                return -ENOMEM;

        r = call(client, req, &rep, fds, &n_fds);
        /* ctl and data, and from a shmbusd that has one the channel's eventfd. */
        if (r == 0 && n_fds != 2 && n_fds != 3)
                r = error_set(client, -EPROTO, "shmbusd sent %u descriptors, not 2 or 3", n_fds);
        if (r == 0) {
                r = shmbus__channel_map(fds[0], fds[1], flags & SHMBUS_OPEN_PUBLISH, ret_chan);
                if (r < 0)
                        error_set(client, r, "cannot map channel %s: %s", name, shmbus_strerror(r));
        }
        /*
         * The mappings are what the channel keeps, and the eventfd if it is one
         * (a member that is not shmbusd could send anything down a socket path
         * it took over: a descriptor that is no eventfd is dropped).
         */
        gen = cJSON_GetObjectItemCaseSensitive(rep, WIRE_NOTIFY_GEN);
        if (r == 0 && n_fds == 3 && cJSON_IsNumber(gen) && gen->valuedouble >= 2 &&
            gen->valuedouble <= UINT32_MAX && fd_is_eventfd(fds[2])) {
                shmbus__channel_set_notify(*ret_chan, fds[2], (uint32_t)gen->valuedouble);
                fds[2] = -1;
        }
        for (unsigned i = 0; i < n_fds; i++)
                shmbus__closep(&fds[i]);
        if (r < 0)
                return r;
        /* Slots carry our pid as the daemon sees it, which differs across pid namespaces. */
        pid = cJSON_GetObjectItemCaseSensitive(rep, WIRE_PID);
        if (cJSON_IsNumber(pid) && pid->valueint > 0) {
                (*ret_chan)->pid = (pid_t)pid->valueint;
                (*ret_chan)->pid_local = (*ret_chan)->pid == getpid();
        }
        return 0;
}

SHMBUS_EXPORT int shmbus_client_open(shmbus_client *client, const char *name, int flags,
                                     const shmbus_opts *create_opts, shmbus_channel **ret_chan) {
        int64_t deadline, wait = RETRY_FIRST_MS;
        int r;

        if (!client || !ret_chan)
                return -EINVAL;
        if (!shmbus__name_is_valid(name))
                return error_set(client, -EINVAL,
                                 "channel names are 1 to %d of [A-Za-z0-9._-], not starting "
                                 "with '.'",
                                 SHMBUS_NAME_MAX);
        if (flags & ~(SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE | SHMBUS_OPEN_ACCEPT_EXISTING |
                      SHMBUS_OPEN_WAIT))
                return error_set(client, -EINVAL, "unknown flags 0x%x", (unsigned)flags);
        pthread_mutex_lock(&client->lock);
        deadline = deadline_after(client->timeout_ms);
        pthread_mutex_unlock(&client->lock);
        for (;;) {
                r = open_once(client, name, flags, create_opts, ret_chan);
                if (r != -ENOENT || !(flags & SHMBUS_OPEN_WAIT))
                        return r;
                /* The daemon has no "tell me when it exists": back off and ask again. */
                if (!backoff(deadline, &wait))
                        return r;
        }
}

SHMBUS_EXPORT int shmbus_client_delete(shmbus_client *client, const char *name) {
        _cleanup_cjson_ cJSON *req = NULL;

        if (!client)
                return -EINVAL;
        if (!shmbus__name_is_valid(name))
                return error_set(client, -EINVAL,
                                 "channel names are 1 to %d of [A-Za-z0-9._-], not starting "
                                 "with '.'",
                                 SHMBUS_NAME_MAX);
        req = request_new(WIRE_OP_DELETE);
        if (!req || !cJSON_AddStringToObject(req, WIRE_NAME, name))
                return -ENOMEM;
        return call(client, req, NULL, NULL, NULL);
}

SHMBUS_EXPORT int shmbus_client_request(shmbus_client *client, const char *request_text,
                                        char **ret_reply) {
        if (!client || !request_text || !ret_reply)
                return -EINVAL;
        return request(client, request_text, ret_reply, NULL, NULL);
}
