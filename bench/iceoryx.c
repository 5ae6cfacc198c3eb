/* SPDX-License-Identifier: MIT */
/*
 * Eclipse iceoryx 2.0.3 (Debian's libiceoryx-binding-c-dev) as a peer: loaned
 * chunks, lossless (the publisher waits for a slow subscriber, the subscriber's
 * queue blocks the producer), polled for WAIT_BUSY, polled then waited on with
 * a WaitSet for WAIT_SPIN, and waited on at once for WAIT_SLEEP. The RouDi
 * daemon is started and stopped by bench/run.sh.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifdef HAVE_ICEORYX

/* Its headers declare `f()` for `f(void)`. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <iceoryx_binding_c/enums.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/types.h>
#include <iceoryx_binding_c/wait_set.h>
#pragma GCC diagnostic pop

struct iox_end {
        iox_pub_storage_t pub_storage;
        iox_sub_storage_t sub_storage;
        iox_ws_storage_t ws_storage;
        iox_pub_t pub;
        iox_sub_t sub;
        iox_ws_t ws;
};

/* One runtime per process, named after it. */
static void runtime_once(void) {
        static bool done;
        char name[64];

        if (done)
                return;
        snprintf(name, sizeof(name), "shmbus-bench-%d", (int)getpid());
        iox_set_loglevel(Iceoryx_LogLevel_Warn); /* its Debug lines would bury the tables */
        iox_runtime_init(name);
        done = true;
}

static void sleep_ms(int ms) {
        nanosleep(&(struct timespec){.tv_nsec = ms * 1000000L}, NULL);
}

static int iox_link_create(struct link *l) {
        snprintf(l->name, sizeof(l->name), "link-%d-%d", (int)getpid(), l->index);
        return 0;
}

static int iox_link_open_rx(struct link *l) {
        struct iox_end *e = calloc(1, sizeof(*e));
        iox_sub_options_t o;
        int64_t give_up;

        if (!e)
                return -ENOMEM;
        runtime_once();
        iox_sub_options_init(&o);
        o.queueCapacity = 256;
        o.historyRequest = 0;
        o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
        e->sub = iox_sub_init(&e->sub_storage, "shmbus-bench", l->name, "data", &o);
        e->ws = iox_ws_init(&e->ws_storage);
        iox_ws_attach_subscriber_state(e->ws, e->sub, SubscriberState_HAS_DATA, 0, NULL);
        l->local = e;
        /* Subscribing is asynchronous: wait until RouDi has taken the request. */
        give_up = bench_now_ns() + INT64_C(5000000000);
        while (iox_sub_get_subscription_state(e->sub) == SubscribeState_SUBSCRIBE_REQUESTED) {
                if (bench_now_ns() > give_up)
                        return -ETIMEDOUT;
                sleep_ms(1);
        }
        return 0;
}

static int iox_link_open_tx(struct link *l) {
        struct iox_end *e = calloc(1, sizeof(*e));
        iox_pub_options_t o;
        int64_t give_up;

        if (!e)
                return -ENOMEM;
        runtime_once();
        iox_pub_options_init(&o);
        o.historyCapacity = 0;
        o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
        e->pub = iox_pub_init(&e->pub_storage, "shmbus-bench", l->name, "data", &o);
        l->local = e;
        /* Receivers opened first; wait until RouDi has connected them to us. */
        give_up = bench_now_ns() + INT64_C(5000000000);
        while (!iox_pub_has_subscribers(e->pub)) {
                if (bench_now_ns() > give_up)
                        return -ETIMEDOUT;
                sleep_ms(1);
        }
        return 0;
}

static int iox_link_send(struct link *l, const void *buf, size_t len) {
        struct iox_end *e = l->local;
        void *chunk;
        enum iox_AllocationResult r;

        /* All chunks out: the subscriber still holds them; let it catch up. */
        while ((r = iox_pub_loan_chunk(e->pub, &chunk, (uint32_t)len)) !=
               AllocationResult_SUCCESS) {
                if (r != AllocationResult_RUNNING_OUT_OF_CHUNKS &&
                    r != AllocationResult_TOO_MANY_CHUNKS_ALLOCATED_IN_PARALLEL)
                        return -ENOMEM;
                sched_yield();
        }
        memcpy(chunk, buf, len);
        iox_pub_publish_chunk(e->pub, chunk);
        return 0;
}

static ssize_t iox_link_recv(struct link *l, void *buf, size_t cap) {
        struct iox_end *e = l->local;
        int64_t spin_end = l->mode == WAIT_SPIN ? bench_now_ns() + BENCH_SPIN_US * 1000 : 0;
        const void *chunk;
        uint32_t polls = 0;
        size_t len;

        for (;;) {
                enum iox_ChunkReceiveResult r = iox_sub_take_chunk(e->sub, &chunk);

                if (r == ChunkReceiveResult_SUCCESS)
                        break;
                if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE)
                        return -EIO;
                if (l->mode == WAIT_BUSY ||
                    (l->mode == WAIT_SPIN && (++polls % 64 != 0 || bench_now_ns() < spin_end))) {
                        bench_cpu_relax();
                        continue;
                }
                iox_notification_info_t info[1];
                uint64_t missed;

                iox_ws_wait(e->ws, info, 1, &missed);
        }
        /* The C binding does not expose a chunk's size; every message of a run has one. */
        len = l->msg_size;
        if (len > cap) {
                iox_sub_release_chunk(e->sub, chunk);
                return -EMSGSIZE;
        }
        memcpy(buf, chunk, len);
        iox_sub_release_chunk(e->sub, chunk);
        return (ssize_t)len;
}

static void iox_link_close(struct link *l) {
        struct iox_end *e = l->local;

        if (!e)
                return;
        if (e->sub) {
                iox_ws_deinit(e->ws);
                iox_sub_deinit(e->sub);
        }
        if (e->pub)
                iox_pub_deinit(e->pub);
        free(e);
        l->local = NULL;
}

static void iox_link_destroy(struct link *l) {
}

bool bench_iceoryx_available(void) {
        /* RouDi announces itself with a Unix socket named after it. */
        return access("/tmp/roudi", F_OK) == 0 || access("/tmp/iceoryx/roudi", F_OK) == 0;
}

#else /* !HAVE_ICEORYX */

static int iox_link_create(struct link *l) {
        return -ENOTSUP;
}

#define iox_link_open_rx NULL
#define iox_link_open_tx NULL
#define iox_link_send    NULL
#define iox_link_recv    NULL
#define iox_link_close   NULL
#define iox_link_destroy NULL

bool bench_iceoryx_available(void) {
        return false;
}

#endif

const struct link_ops link_iceoryx = {
        .name = "iceoryx",
        .modes = (1u << WAIT_BUSY) | (1u << WAIT_SPIN) | (1u << WAIT_SLEEP),
        .multi_rx = true,
        .create = iox_link_create,
        .open_rx = iox_link_open_rx,
        .open_tx = iox_link_open_tx,
        .send = iox_link_send,
        .recv = iox_link_recv,
        .close = iox_link_close,
        .destroy = iox_link_destroy,
};
