/* SPDX-License-Identifier: MIT */
/*
 * The batch API (shmbus_pub_send_batch, shmbus_sub_recv_batch) through the
 * public API: argument checks that send nothing, batches larger than the
 * ring, max_msg, and processes exchanging batches of varied sizes on both
 * policies, every message checked byte for byte and every one accounted for
 * (received exactly once in order on block; received + lost = sent, nothing
 * torn, on overwrite while the publisher laps the reader).
 */
#undef NDEBUG
#include <stdatomic.h>
#include <time.h>

#include "shmbus.h"

#include "testutil.h"

#define BATCH_MAX 48

static char *dir;

static shmbus_channel *chan_make(const char *name, uint64_t cap, uint32_t max_msg, int policy) {
        shmbus_channel *c = NULL;
        shmbus_opts *o;

        CU_ASSERT_EQUAL_FATAL(shmbus_opts_new(&o), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, cap), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_msg(o, max_msg), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_policy(o, policy), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_subscribers(o, 4), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_publishers(o, 4), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, name, o, 0600, &c), 0);
        shmbus_opts_free(o);
        return c;
}

/* Messages (id, first .. first+n-1) laid out in @store, pointed to by @msgs. */
static void batch_fill(uint8_t *store, const void **msgs, size_t *lens, size_t n, uint32_t id,
                       uint32_t first, size_t max) {
        for (size_t i = 0; i < n; i++) {
                lens[i] = tmsg_len(id, first + (uint32_t)i, max);
                msgs[i] = store;
                tmsg_fill(store, lens[i], id, first + (uint32_t)i);
                store += lens[i];
        }
}

static void test_args(void) {
        shmbus_channel *c = chan_make("args", 4096, 512, SHMBUS_POLICY_BLOCK);
        static uint8_t store[BATCH_MAX * 512], big[512], buf[4096];
        const void *msgs[4];
        size_t lens[4], got[8];
        shmbus_pub *p;
        shmbus_sub *s;
        void *claim;
        uint32_t id, seq;

        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(c, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(c, &s), 0);
        batch_fill(store, msgs, lens, 4, 1, 0, 512);

        CU_ASSERT_EQUAL(shmbus_pub_send_batch(NULL, msgs, lens, 4, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, NULL, lens, 4, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, NULL, 4, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 0, 0), 0);
        /* A bad message anywhere in the batch: nothing at all is sent. */
        lens[3] = 0;
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 4, 0), -EINVAL);
        lens[3] = 513;
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 4, 0), -EMSGSIZE);
        lens[3] = 16;
        msgs[2] = NULL;
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 4, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 8, 0), -EAGAIN);
        /* An open claim blocks a batch, as it blocks a send. */
        CU_ASSERT_EQUAL(shmbus_pub_claim(p, 8, 0, &claim), 0);
        batch_fill(store, msgs, lens, 4, 1, 0, 512);
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 4, 0), -EBUSY);
        CU_ASSERT_EQUAL(shmbus_pub_abort(p), 0);

        /* max_msg itself is fine. */
        lens[0] = 512;
        msgs[0] = big;
        tmsg_fill(big, 512, 1, 0);
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 4, 0), 4);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(NULL, buf, sizeof(buf), got, 8, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), NULL, 8, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 0, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, NULL, 16, got, 8, 0), -EINVAL);
        /* The first message does not fit: it stays. */
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, 511, got, 8, 0), -EMSGSIZE);
        /* Room for the first only: one message, the rest stay. */
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, 512 + lens[1] - 1, got, 8, 0), 1);
        CU_ASSERT_EQUAL(got[0], 512);
        CU_ASSERT(tmsg_check(buf, 512, &id, &seq) && id == 1 && seq == 0);
        /* max_n limits the count. */
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 2, 0), 2);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 8, 0), 1);
        CU_ASSERT_EQUAL(got[0], lens[3]);
        CU_ASSERT(tmsg_check(buf, got[0], &id, &seq) && seq == 3);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 8, 10), -ETIMEDOUT);
        CU_ASSERT_EQUAL(shmbus_sub_received(s), 4);

        /* A zero-length buffer can hold nothing, and says so. */
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs, lens, 1, 0), 1);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, NULL, 0, got, 8, 0), -EMSGSIZE);
        CU_ASSERT_EQUAL(shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 8, 0), 1);

        shmbus_sub_free(s);
        shmbus_pub_free(p);
        shmbus_channel_unref(c);
        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "args"), 0);
}

/* A batch bigger than the ring: what fits now, then the rest as a reader makes room. */
static void test_does_not_fit(void) {
        shmbus_channel *c = chan_make("big", 4096, 512, SHMBUS_POLICY_BLOCK);
        static uint8_t store[200 * 512], buf[8192];
        static const void *msgs[200];
        static size_t lens[200], got[64];
        shmbus_pub *p;
        shmbus_sub *s;
        uint32_t next = 0, id, seq;
        pid_t pid;
        int n;

        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(c, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(c, &s), 0);
        batch_fill(store, (const void **)msgs, lens, 200, 2, 0, 300);
        n = shmbus_pub_send_batch(p, msgs, lens, 200, 0);
        CU_ASSERT(n > 0 && n < 200);
        /* Full now: nothing more fits without waiting. */
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs + n, lens + n, (size_t)(200 - n), 0),
                        -EAGAIN);
        CU_ASSERT_EQUAL(shmbus_pub_send_batch(p, msgs + n, lens + n, (size_t)(200 - n), 20),
                        -ETIMEDOUT);

        /*
         * A publisher in another process (its own: objects belong to the process
         * that made them) sends the rest in several claims while this one drains.
         */
        pid = fork();
        if (pid == 0) {
                shmbus_pub *p2;

                if (shmbus_pub_new(c, &p2) < 0)
                        _exit(10);
                _exit(shmbus_pub_send_batch(p2, msgs + n, lens + n, (size_t)(200 - n), 10000) ==
                                      200 - n
                              ? 0
                              : 11);
        }
        while (next < 200) {
                int k = shmbus_sub_recv_batch(s, buf, sizeof(buf), got, 64, 10000);

                CU_ASSERT_FATAL(k > 0);
                for (size_t i = 0, off = 0; i < (size_t)k; off += got[i], i++) {
                        CU_ASSERT_FATAL(tmsg_check(buf + off, got[i], &id, &seq));
                        CU_ASSERT_EQUAL_FATAL(id, 2);
                        CU_ASSERT_EQUAL_FATAL(seq, next);
                        next++;
                }
        }
        CU_ASSERT_EQUAL(shmbus_sub_lost(s), 0);
        CU_ASSERT_EQUAL(shmbus_sub_received(s), 200);
        CU_ASSERT_EQUAL(test_wait(pid), 0);
        shmbus_sub_free(s);
        shmbus_pub_free(p);
        shmbus_channel_unref(c);
        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "big"), 0);
}

#define MP_PUBS 2
#define MP_SUBS 2
#define MP_MSGS 40000

static int child_pub(shmbus_channel *c, uint32_t id, uint32_t msgs, size_t max) {
        static uint8_t store[BATCH_MAX * 1024];
        const void *ptrs[BATCH_MAX];
        size_t lens[BATCH_MAX];
        shmbus_pub *p;

        if (shmbus_pub_new(c, &p) < 0)
                return 20;
        for (uint32_t seq = 0; seq < msgs;) {
                size_t n = 1 + (seq * 7u + id) % BATCH_MAX;
                int r;

                if (n > msgs - seq)
                        n = msgs - seq;
                batch_fill(store, ptrs, lens, n, id, seq, max);
                /* Mixed with single sends: both must keep one order of message numbers. */
                if (n == 1)
                        r = shmbus_pub_send(p, ptrs[0], lens[0], 30000) == 0 ? 1 : -1;
                else
                        r = shmbus_pub_send_batch(p, ptrs, lens, n, 30000);
                if (r <= 0)
                        return 21;
                seq += (uint32_t)r; /* a short batch: the rest is sent again */
        }
        shmbus_pub_free(p);
        return 0;
}

static int child_sub(shmbus_sub *s, uint32_t pubs, uint32_t msgs, bool overwrite, bool slow) {
        static uint8_t buf[BATCH_MAX * 1024];
        size_t lens[BATCH_MAX];
        uint32_t next[MP_PUBS] = {0};
        uint64_t total = 0, polls = 0;
        int64_t deadline = time(NULL) + 60;

        for (;;) {
                size_t max_n = 1 + polls++ % BATCH_MAX;
                int k = shmbus_sub_recv_batch(s, buf, sizeof(buf), lens, max_n, 1000);

                if (time(NULL) > deadline)
                        return 12;
                if (k == -ETIMEDOUT)
                        continue;
                if (k <= 0 || (size_t)k > max_n)
                        return 13;
                for (size_t i = 0, off = 0; i < (size_t)k; off += lens[i], i++) {
                        uint32_t id, seq;

                        if (!tmsg_check(buf + off, lens[i], &id, &seq) || id >= pubs)
                                return 14; /* torn or forged */
                        if (overwrite ? seq < next[id] : seq != next[id])
                                return 15; /* duplicate or out of order */
                        next[id] = seq + 1;
                        total++;
                }
                if (slow && polls % 16 == 0) {
                        struct timespec ts = {0, 200000};

                        nanosleep(&ts, NULL);
                }
                if (overwrite ? next[0] == msgs : total == (uint64_t)pubs * msgs)
                        break;
        }
        if (shmbus_sub_received(s) != total)
                return 16;
        if (overwrite ? shmbus_sub_received(s) + shmbus_sub_lost(s) != msgs : shmbus_sub_lost(s))
                return 17; /* a loss not accounted for, or any loss on a lossless channel */
        if (overwrite && slow && shmbus_sub_lost(s) == 0)
                return 18; /* the slow reader was never lapped: the test tested nothing */
        return 0;
}

/*
 * Each subscriber joins in a child of its own (a subscriber belongs to the
 * process that made it: docs in shmbus.h, "fork") and says so on a pipe before
 * any publisher starts, so that it sees every message; each publisher is a
 * child too, on the shared mappings.
 */
static void run_mp(const char *name, uint64_t cap, uint32_t max_msg, int policy, uint32_t pubs,
                   uint32_t subs, uint32_t msgs) {
        shmbus_channel *c = chan_make(name, cap, max_msg, policy);
        pid_t pids[MP_SUBS + MP_PUBS];
        int ready[2];

        CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
        for (uint32_t i = 0; i < subs; i++) {
                pids[i] = fork();
                if (pids[i] == 0) {
                        shmbus_sub *s;

                        close(ready[0]);
                        if (shmbus_sub_new(c, &s) < 0)
                                _exit(19);
                        if (write(ready[1], "s", 1) != 1)
                                _exit(19);
                        _exit(child_sub(s, pubs, msgs, policy == SHMBUS_POLICY_OVERWRITE, i == 0));
                }
        }
        close(ready[1]);
        for (uint32_t i = 0; i < subs; i++) {
                char b;

                CU_ASSERT_EQUAL(read(ready[0], &b, 1), 1);
        }
        close(ready[0]);
        for (uint32_t i = 0; i < pubs; i++) {
                pids[subs + i] = fork();
                if (pids[subs + i] == 0)
                        _exit(child_pub(c, i, msgs, max_msg));
        }
        for (uint32_t i = 0; i < subs + pubs; i++) {
                int rc = test_wait(pids[i]);

                if (rc != 0)
                        fprintf(stderr, "child %u (%s) exited %d\n", i, i < subs ? "sub" : "pub",
                                rc);
                CU_ASSERT_EQUAL(rc, 0);
        }
        shmbus_channel_unref(c);
        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, name), 0);
}

static void test_mp_block(void) {
        run_mp("mp-block", 16384, 1024, SHMBUS_POLICY_BLOCK, MP_PUBS, MP_SUBS, MP_MSGS);
}

static void test_mp_overwrite(void) {
        run_mp("mp-over", 4096, 512, SHMBUS_POLICY_OVERWRITE, 1, MP_SUBS, 5 * MP_MSGS);
}

int main(void) {
        static const struct test_case cases[] = {
                {"arguments are checked before anything is sent", test_args},
                {"a batch larger than the ring goes out in several claims", test_does_not_fit},
                {"processes: 2 batching publishers x 2 batch readers, block, exactly once",
                 test_mp_block},
                {"processes: overwrite, batches lap the reader, every loss accounted",
                 test_mp_overwrite},
                {NULL, NULL},
        };
        int rc;

        dir = test_mkdtemp("batch");
        rc = test_run("batch", cases);
        test_rmtree(dir);
        free(dir);
        return rc;
}
