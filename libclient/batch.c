/* SPDX-License-Identifier: MIT */
/*
 * The batch API: several small messages published with one claim and
 * received with one position publication (issue 17). It owns only the
 * public entry points, their argument checks and their deadlines; the ring
 * does the work (shmbus__ring_send_batch, shmbus__ring_recv_batch), and the
 * waiting for a first message is shmbus_sub_peek()'s, so a batch receiver
 * spins and sleeps exactly like a single one.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "shmbus.h"

#include "channel.h"
#include "ring.h"

SHMBUS_EXPORT int shmbus_pub_send_batch(shmbus_pub *pub, const void *const *msgs,
                                        const size_t *lens, size_t n, int timeout_ms) {
        struct shmbus_ring_pub *rp;
        int64_t timeout_ns, deadline;
        size_t sent = 0;

        if (!pub || (n && (!msgs || !lens)) || n > INT_MAX)
                return -EINVAL;
        rp = shmbus__pub_ring(pub);
        /* All or nothing for bad arguments: check every message before sending any. */
        for (size_t i = 0; i < n; i++) {
                if (!msgs[i] || lens[i] == 0)
                        return -EINVAL;
                if (lens[i] > rp->ring->max_msg)
                        return -EMSGSIZE;
        }
        timeout_ns = timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000;
        deadline = timeout_ns > 0 ? shmbus__now_ns() + timeout_ns : -1;
        while (sent < n) {
                int r;

                /* The timeout is the whole call's: later rounds get what is left of it. */
                if (sent > 0 && deadline >= 0) {
                        timeout_ns = deadline - shmbus__now_ns();
                        if (timeout_ns < 0)
                                timeout_ns = 0;
                }
                r = shmbus__ring_send_batch(rp, msgs + sent, lens + sent, n - sent, timeout_ns);
                if (r < 0)
                        return sent ? (int)sent : r;
                sent += (size_t)r;
        }
        return (int)sent;
}

SHMBUS_EXPORT int shmbus_sub_recv_batch(shmbus_sub *sub, void *buf, size_t buf_len, size_t *lens,
                                        size_t max_n, int timeout_ms) {
        const void *data;
        size_t len;
        int r;

        if (!sub || (!buf && buf_len) || !lens || max_n == 0)
                return -EINVAL;
        for (;;) {
                /* Wait for the first message as a single receive would, then take it in the batch.
                 */
                r = shmbus_sub_peek(sub, &data, &len, timeout_ms);
                if (r < 0)
                        return r;
                shmbus__ring_unpeek(shmbus__sub_ring(sub));
                r = shmbus__ring_recv_batch(shmbus__sub_ring(sub), buf, buf_len, lens,
                                            max_n > INT_MAX ? INT_MAX : max_n);
                /* Nothing left: every message there was overwritten while copied. */
                if (r != -EAGAIN)
                        return r;
        }
}
