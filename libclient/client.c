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
#include "opts.h"
#include "util.h"
#include "wire.h"

struct shmbus_client {
        pthread_mutex_t lock;
        int fd;
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void cjson_deletep(cJSON **j) {
        cJSON_Delete(*j);
}

static void client_freep(shmbus_client **c) {
        shmbus_client_free(*c);
}

static int client_connect(shmbus_client *c) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;

        memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = TAKE_FD(fd);
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
        bool sent;
        int send_err;
        ssize_t n;

        /* Before the send: a reply we had no room for would answer the next request. */
        buf = shmbus__malloc(WIRE_REPLY_MAX + 1);
        if (!buf)
                return -ENOMEM;
        sent = send(c->fd, req, strlen(req), MSG_NOSIGNAL) >= 0;
        send_err = errno;
        iov = (struct iovec){.iov_base = buf, .iov_len = WIRE_REPLY_MAX};
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

/* A request with one reconnect if the daemon went away since the last one. */
static int request(shmbus_client *c, const char *req, char **ret_reply, int *fds, unsigned *n_fds) {
        unsigned dummy;
        int r;

        if (strlen(req) > WIRE_REQUEST_MAX)
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
        _cleanup_(cjson_deletep) cJSON *rep = NULL;
        int r;

        text = cJSON_PrintUnformatted(req);
        if (!text)
                return -ENOMEM;
        r = request(c, text, &reply, fds, n_fds);
        if (r < 0)
                return r;
        rep = cJSON_Parse(reply);
        if (!rep)
                return -EPROTO;
        r = shmbus__wire_reply_status(rep);
        if (r < 0)
                return r;
        if (ret_reply)
                *ret_reply = TAKE_PTR(rep);
        return 0;
}

SHMBUS_EXPORT int shmbus_client_new(const char *socket_path, shmbus_client **ret_client) {
        _cleanup_(client_freep) shmbus_client *c = NULL;
        _cleanup_(cjson_deletep) cJSON *req = NULL;
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
        if (r < 0)
                return r;
        req = request_new(WIRE_OP_HELLO);
        if (!req)
                return -ENOMEM;
        r = call(c, req, NULL, NULL, NULL);
        if (r < 0)
                return r;
        *ret_client = TAKE_PTR(c);
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
               add_grants(o, create_opts);
}

SHMBUS_EXPORT int shmbus_client_open(shmbus_client *client, const char *name, int flags,
                                     const shmbus_opts *create_opts, shmbus_channel **ret_chan) {
        _cleanup_(cjson_deletep) cJSON *req = NULL, *rep = NULL;
        int fds[2] = {-1, -1};
        unsigned n_fds = 0;
        const cJSON *pid;
        int r;

        if (!client || !ret_chan || !shmbus__name_is_valid(name) ||
            (flags & ~(SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE)))
                return -EINVAL;
        req = request_new(WIRE_OP_OPEN);
        if (!req || !cJSON_AddStringToObject(req, WIRE_NAME, name) ||
            !cJSON_AddStringToObject(req, WIRE_ROLE,
                                     flags & SHMBUS_OPEN_PUBLISH ? WIRE_ROLE_PUB : WIRE_ROLE_SUB) ||
            ((flags & SHMBUS_OPEN_CREATE) && !add_create(req, create_opts)))
                return -ENOMEM;

        r = call(client, req, &rep, fds, &n_fds);
        if (r == 0 && n_fds != 2)
                r = -EPROTO;
        if (r == 0)
                r = shmbus__channel_map(fds[0], fds[1], flags & SHMBUS_OPEN_PUBLISH, ret_chan);
        /* The mappings are what the channel keeps; the descriptors are done with. */
        for (unsigned i = 0; i < n_fds; i++)
                close(fds[i]);
        if (r < 0)
                return r;
        /* Slots carry our pid as the daemon sees it, which differs across pid namespaces. */
        pid = cJSON_GetObjectItemCaseSensitive(rep, WIRE_PID);
        if (cJSON_IsNumber(pid) && pid->valueint > 0)
                (*ret_chan)->pid = (pid_t)pid->valueint;
        return 0;
}

SHMBUS_EXPORT int shmbus_client_delete(shmbus_client *client, const char *name) {
        _cleanup_(cjson_deletep) cJSON *req = NULL;

        if (!client || !shmbus__name_is_valid(name))
                return -EINVAL;
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
