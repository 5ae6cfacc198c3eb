/* SPDX-License-Identifier: MIT */
/*
 * What the rooms that serve requests share (ops.c, open.c): the result a
 * handler fills, and how it fails or parks. A handler fills a struct
 * op_result: on success the reply and the descriptors that go with it, on
 * failure a message; it never sends (ops_dispatch() does, ops.h).
 */
#pragma once

#include <cjson/cJSON.h>

#include "reply.h"

struct broker;
struct peer;

/* A handler's positive return: the request is parked, and answered later (create.h). */
#define OPS_E_PARKED 1

struct op_result {
        const char *text; /* the request, should it have to be parked */
        cJSON *reply;     /* success: the reply to send */
        /*
         * Sent with it: ctl and data of an opened channel, or -1, and the
         * channel's eventfd, which stays the channel's (-1: none).
         */
        int fds[2];
        int notify_fd;
        const char *opened;              /* a channel the peer uses once the reply is sent */
        char message[REPLY_MESSAGE_MAX]; /* failure: what went wrong, for humans */
};

typedef int op_fn(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res);

/* Fail with @code (-errno) and the message @fmt. Return: @code. */
__attribute__((format(printf, 3, 4))) int op_fail(struct op_result *res, int code, const char *fmt,
                                                  ...);
/* Park the request until the pending creation is over. Return: OPS_E_PARKED or -errno. */
int op_park(struct broker *b, struct peer *p, struct op_result *res);

/* The request's channel name, if it is a valid one. */
const char *request_name(const cJSON *req);

/* open (open.c): find or create the channel, check permission, hand out its descriptors. */
op_fn op_open;
