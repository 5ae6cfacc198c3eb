/* SPDX-License-Identifier: MIT */
/*
 * See reply.h. Replies are single SOCK_SEQPACKET packets; descriptors ride
 * along as SCM_RIGHTS, and the kernel duplicates them, so the caller keeps
 * (and closes) its own.
 */
#include "reply.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "json.h"
#include "util.h"
#include "wire.h"

#define REPLY_FDS_MAX 3

cJSON *reply_new(bool ok) {
        cJSON *r = cJSON_CreateObject();

        cJSON_AddNumberToObject(r, WIRE_V, WIRE_VERSION);
        cJSON_AddBoolToObject(r, WIRE_OK, ok);
        return r;
}

const char *reply_errno_name(int err) {
        switch (err) {
        case EINVAL:
                return "EINVAL";
        case EACCES:
                return "EACCES";
        case ENOENT:
                return "ENOENT";
        case EEXIST:
                return "EEXIST";
        case ENOSPC:
                return "ENOSPC";
        case EPROTO:
                return "EPROTO";
        case EMSGSIZE:
                return "EMSGSIZE";
        case EUSERS:
                return "EUSERS";
        case ENOMEM:
                return "ENOMEM";
        case EMFILE:
                return "EMFILE";
        case EOPNOTSUPP:
                return "EOPNOTSUPP";
        case EDQUOT:
                return "EDQUOT";
        default:
                return "EIO";
        }
}

int reply_send(int fd, cJSON *reply, const int *fds, unsigned n_fds) {
        _cleanup_cjson_ cJSON *owned = reply;
        _cleanup_free_ char *text = cJSON_PrintUnformatted(owned);
        union {
                char buf[CMSG_SPACE(REPLY_FDS_MAX * sizeof(int))];
                struct cmsghdr align;
        } cmsg = {0};
        struct iovec iov;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

        assert(n_fds <= REPLY_FDS_MAX);
        if (!text)
                return -ENOMEM;
        iov = (struct iovec){.iov_base = text, .iov_len = strlen(text)};
        if (n_fds) {
                struct cmsghdr *h;

                msg.msg_control = cmsg.buf;
                msg.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                h = CMSG_FIRSTHDR(&msg);
                h->cmsg_level = SOL_SOCKET;
                h->cmsg_type = SCM_RIGHTS;
                h->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(h), fds, n_fds * sizeof(int));
        }
        if (sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                return -errno;
        return 0;
}

int reply_send_error(int fd, int code, const char *message) {
        cJSON *r = reply_new(false);

        assert(code < 0);
        cJSON_AddStringToObject(r, WIRE_ERROR, reply_errno_name(-code));
        cJSON_AddNumberToObject(r, WIRE_ERRNO, -code);
        cJSON_AddStringToObject(r, WIRE_MESSAGE, message);
        return reply_send(fd, r, NULL, 0);
}
