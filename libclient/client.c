/* SPDX-License-Identifier: MIT */
/*
 * The client side of the control protocol (docs/PROTOCOL.md): one JSON object
 * per SOCK_SEQPACKET packet, channel descriptors in SCM_RIGHTS. The
 * connection is only for control: channels it opened keep working while the
 * daemon is down, and the next request reconnects.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmbus.h"

#include "alloc.h"
#include "channel.h"
#include "util.h"

#define REPLY_MAX   (1 << 20)
#define REQUEST_MAX 65536

struct shmbus_client {
        pthread_mutex_t lock;
        int fd;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int client_connect(shmbus_client *c) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        if (c->fd >= 0)
                close(c->fd);
        c->fd = fd;
        return 0;
}

/* Send @req, receive the reply and up to two descriptors. Caller holds the lock. */
static int roundtrip(shmbus_client *c, const char *req, char **ret_reply, int *fds,
                     unsigned *n_fds) {
        union {
                char buf[CMSG_SPACE(4 * sizeof(int))];
                struct cmsghdr align;
        } cmsg;
        _cleanup_free_ char *buf = NULL;
        struct iovec iov;
        struct msghdr msg;
        struct cmsghdr *h;
        ssize_t n;

        bool sent = send(c->fd, req, strlen(req), MSG_NOSIGNAL) >= 0;
        int send_err = errno;

        buf = shmbus__malloc(REPLY_MAX + 1);
        if (!buf)
                return -ENOMEM;
        iov = (struct iovec){.iov_base = buf, .iov_len = REPLY_MAX};
        msg = (struct msghdr){.msg_iov = &iov,
                              .msg_iovlen = 1,
                              .msg_control = cmsg.buf,
                              .msg_controllen = sizeof(cmsg.buf)};
        /*
         * If the send failed, the daemon may still have said why before it closed
         * (a refused connection gets an EUSERS reply): read what is already queued.
         */
        do
                n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | (sent ? 0 : MSG_DONTWAIT));
        while (n < 0 && errno == EINTR);
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
                        if (fds && *n_fds < 2)
                                fds[(*n_fds)++] = got[i];
                        else
                                close(got[i]); /* more than we asked for: not ours to keep */
                }
        }
        if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n > REPLY_MAX) {
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

/* A request with one reconnect if the daemon went away since the last one. */
static int request(shmbus_client *c, const char *req, char **ret_reply, int *fds,
                   unsigned *n_fds) {
        unsigned dummy;
        int r;

        if (strlen(req) > REQUEST_MAX)
                return -EMSGSIZE;
        pthread_mutex_lock(&c->lock);
        r = c->fd >= 0 ? roundtrip(c, req, ret_reply, fds, n_fds ? n_fds : &dummy) : -ENOTCONN;
        if (is_disconnect(r)) {
                r = client_connect(c);
                if (r == 0)
                        r = roundtrip(c, req, ret_reply, fds, n_fds ? n_fds : &dummy);
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* Map a reply to 0 or its negative errno. */
static int reply_status(const cJSON *reply) {
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "errno");

        if (!cJSON_IsBool(ok))
                return -EPROTO;
        if (cJSON_IsTrue(ok))
                return 0;
        return cJSON_IsNumber(err) && err->valueint > 0 ? -err->valueint : -EIO;
}

SHMBUS_EXPORT int shmbus_client_new(const char *socket_path, shmbus_client **ret_client) {
        shmbus_client *c;
        _cleanup_free_ char *reply = NULL;
        cJSON *j;
        int r;

        if (!ret_client)
                return -EINVAL;
        if (!socket_path)
                socket_path = getenv("SHMBUS_SOCKET");
        if (!socket_path || !*socket_path)
                socket_path = SHMBUS_DEFAULT_SOCKET;
        if (strlen(socket_path) >= sizeof(c->path))
                return -ENAMETOOLONG;
        c = shmbus__calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        pthread_mutex_init(&c->lock, NULL);
        snprintf(c->path, sizeof(c->path), "%s", socket_path);
        r = client_connect(c);
        if (r == 0)
                r = request(c, "{\"v\":1,\"op\":\"hello\"}", &reply, NULL, NULL);
        if (r == 0) {
                j = cJSON_Parse(reply);
                r = j ? reply_status(j) : -EPROTO;
                cJSON_Delete(j);
        }
        if (r < 0) {
                shmbus_client_free(c);
                return r;
        }
        *ret_client = c;
        return 0;
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

SHMBUS_EXPORT int shmbus_client_open(shmbus_client *client, const char *name, int flags,
                                     const shmbus_opts *create_opts, shmbus_channel **ret_chan) {
        _cleanup_free_ char *text = NULL, *reply = NULL;
        int fds[2] = {-1, -1};
        unsigned n_fds = 0;
        cJSON *req, *rep;
        int r;

        if (!client || !ret_chan || !shmbus__name_is_valid(name) ||
            (flags & ~(SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE)))
                return -EINVAL;
        req = cJSON_CreateObject();
        if (!req)
                return -ENOMEM;
        cJSON_AddNumberToObject(req, "v", 1);
        cJSON_AddStringToObject(req, "op", "open");
        cJSON_AddStringToObject(req, "name", name);
        cJSON_AddStringToObject(req, "role", flags & SHMBUS_OPEN_PUBLISH ? "pub" : "sub");
        if (flags & SHMBUS_OPEN_CREATE) {
                if (create_opts) {
                        const struct shmbus_ring_geom *g = shmbus__opts_geom(create_opts);
                        cJSON *o = cJSON_AddObjectToObject(req, "create");

                        cJSON_AddNumberToObject(o, "capacity", (double)g->data_size);
                        cJSON_AddNumberToObject(o, "max_msg", g->max_msg);
                        cJSON_AddStringToObject(o, "policy", g->policy == SHMBUS_POLICY_BLOCK
                                                                     ? "block"
                                                                     : "overwrite");
                        cJSON_AddNumberToObject(o, "max_subscribers", g->max_subs);
                        cJSON_AddNumberToObject(o, "max_publishers", g->max_pubs);
                } else {
                        cJSON_AddTrueToObject(req, "create");
                }
        }
        text = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        if (!text)
                return -ENOMEM;

        r = request(client, text, &reply, fds, &n_fds);
        if (r < 0)
                return r;
        rep = cJSON_Parse(reply);
        r = rep ? reply_status(rep) : -EPROTO;
        if (r == 0 && n_fds != 2)
                r = -EPROTO;
        if (r == 0)
                r = shmbus__channel_map(fds[0], fds[1], flags & SHMBUS_OPEN_PUBLISH, ret_chan);
        if (r == 0) {
                /* Slots carry our pid as the daemon sees it, which differs across pid namespaces. */
                const cJSON *pid = cJSON_GetObjectItemCaseSensitive(rep, "pid");

                if (cJSON_IsNumber(pid) && pid->valueint > 0)
                        (*ret_chan)->pid = (pid_t)pid->valueint;
        }
        cJSON_Delete(rep);
        for (unsigned i = 0; i < n_fds; i++)
                close(fds[i]);
        return r;
}

static int simple_request(shmbus_client *client, const char *op, const char *name) {
        _cleanup_free_ char *reply = NULL;
        char req[256];
        cJSON *rep;
        int r;

        if (!client || !shmbus__name_is_valid(name))
                return -EINVAL;
        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"%s\",\"name\":\"%s\"}", op, name);
        r = request(client, req, &reply, NULL, NULL);
        if (r < 0)
                return r;
        rep = cJSON_Parse(reply);
        r = rep ? reply_status(rep) : -EPROTO;
        cJSON_Delete(rep);
        return r;
}

SHMBUS_EXPORT int shmbus_client_delete(shmbus_client *client, const char *name) {
        return simple_request(client, "delete", name);
}

SHMBUS_EXPORT int shmbus_client_request(shmbus_client *client, const char *request_text,
                                        char **ret_reply) {
        if (!client || !request_text || !ret_reply)
                return -EINVAL;
        return request(client, request_text, ret_reply, NULL, NULL);
}
