/* SPDX-License-Identifier: MIT */
/*
 * The ring on plain malloc'd memory: geometry validation, wrap-around and
 * padding, limits, empty and full, overwrite detection with exact loss
 * accounting, abort, unblock of a dead writer, corrupted records, and a
 * multi-threaded N x M run (the ThreadSanitizer target).
 */
#undef NDEBUG
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"
#include "testutil.h"

struct memring {
        void *ctl;
        void *data;
        size_t ctl_len;
        size_t data_len;
        struct shmbus_ring r;
};

static void mr_init(struct memring *m, uint64_t size, uint32_t max_msg, uint32_t policy,
                    uint32_t subs, uint32_t pubs) {
        struct shmbus_ring_geom g = {
                .data_size = size,
                .max_msg = max_msg,
                .policy = policy,
                .max_subs = subs,
                .max_pubs = pubs,
                .name = "test",
        };

        m->ctl_len = shmbus__ring_ctl_size(subs, pubs);
        m->data_len = size;
        m->ctl = aligned_alloc(4096, (m->ctl_len + 4095) & ~(size_t)4095);
        m->data = aligned_alloc(4096, size);
        assert(m->ctl && m->data);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_format(m->ctl, m->ctl_len, m->data, size, &g), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_attach(&m->r, m->ctl, m->ctl_len, m->data, size), 0);
        CU_ASSERT(shmbus__ring_is_sane(&m->r));
}

static void mr_free(struct memring *m) {
        free(m->ctl);
        free(m->data);
}

static int pub_send(struct shmbus_ring_pub *p, uint32_t id, uint32_t seq, size_t len,
                    int64_t timeout_ns) {
        void *buf;
        int r;

        r = shmbus__ring_claim(p, len, timeout_ns, &buf);
        if (r < 0)
                return r;
        tmsg_fill(buf, len, id, seq);
        return shmbus__ring_commit(p);
}

/* Receive one message and check it; returns its length or a negative code. */
static int sub_take(struct shmbus_ring_sub *s, uint32_t *id, uint32_t *seq) {
        const void *data;
        size_t len;
        bool ok;
        int r;

        r = shmbus__ring_peek(s, &data, &len);
        if (r < 0)
                return r;
        ok = tmsg_check(data, len, id, seq);
        r = shmbus__ring_release(s);
        if (r < 0)
                return r;
        CU_ASSERT(ok);
        return (int)len;
}

static void test_geometry(void) {
        struct shmbus_ring_geom g = {
                .data_size = 4096, .max_msg = 1024, .max_subs = 1, .max_pubs = 1};
        struct memring m;
        struct shmbus_ring r;

        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), 0);
        g.data_size = 4097;
        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), -EINVAL);
        g.data_size = 2048;
        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), -EINVAL);
        g.data_size = 4096;
        g.max_msg = 1025;
        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), -EINVAL);
        g.max_msg = 0;
        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), -EINVAL);
        g.max_msg = 64;
        g.policy = 7;
        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), -EINVAL);
        g.policy = 0;
        g.max_subs = 0;
        CU_ASSERT_EQUAL(shmbus__ring_geom_check(&g), -EINVAL);

        /* A header that lies about anything is refused at attach time. */
        mr_init(&m, 4096, 256, SHMBUS_POLICY_BLOCK, 2, 2);
        struct shmbus_ctl *ctl = m.ctl;
        ctl->layout_major = SHMBUS_LAYOUT_MAJOR + 1;
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len, m.data, m.data_len), -EPROTO);
        ctl->layout_major = SHMBUS_LAYOUT_MAJOR;
        ctl->data_size = 8192;
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len, m.data, m.data_len), -EPROTO);
        ctl->data_size = 4096;
        ctl->max_subs = 1000;
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len, m.data, m.data_len), -EPROTO);
        ctl->max_subs = 2;
        ctl->max_msg = 4000;
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len, m.data, m.data_len), -EPROTO);
        ctl->max_msg = 256;
        ctl->magic ^= 1;
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len, m.data, m.data_len), -EPROTO);
        ctl->magic ^= 1;
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len - 1, m.data, m.data_len), -EPROTO);
        CU_ASSERT_EQUAL(shmbus__ring_attach(&r, m.ctl, m.ctl_len, m.data, m.data_len), 0);
        mr_free(&m);
}

static void test_empty_and_limits(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        const void *data;
        size_t len;
        void *buf;

        mr_init(&m, 4096, 1024, SHMBUS_POLICY_BLOCK, 2, 2);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);

        CU_ASSERT_EQUAL(shmbus__ring_peek(&s, &data, &len), -EAGAIN);
        CU_ASSERT_FALSE(shmbus__ring_sub_has_data(&s));
        CU_ASSERT_EQUAL(shmbus__ring_release(&s), -EINVAL);
        CU_ASSERT_EQUAL(shmbus__ring_claim(&p, 0, 0, &buf), -EINVAL);
        CU_ASSERT_EQUAL(shmbus__ring_claim(&p, 1025, 0, &buf), -EMSGSIZE);
        CU_ASSERT_EQUAL(shmbus__ring_commit(&p), -EINVAL);
        CU_ASSERT_EQUAL(shmbus__ring_abort(&p), -EINVAL);

        /* The largest message and the smallest both go through intact. */
        CU_ASSERT_EQUAL(pub_send(&p, 1, 0, 1024, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_claim(&p, 1, 0, &buf), 0);
        CU_ASSERT_EQUAL(shmbus__ring_claim(&p, 1, 0, &buf), -EBUSY);
        *(uint8_t *)buf = 0xa5;
        CU_ASSERT_EQUAL(shmbus__ring_commit(&p), 0);

        uint32_t id, seq;
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 1024);
        CU_ASSERT_EQUAL(id, 1);
        CU_ASSERT_EQUAL(shmbus__ring_peek(&s, &data, &len), 0);
        CU_ASSERT_EQUAL(len, 1);
        CU_ASSERT_EQUAL(*(const uint8_t *)data, 0xa5);
        CU_ASSERT_EQUAL(shmbus__ring_release(&s), 0);
        CU_ASSERT_EQUAL(shmbus__ring_peek(&s, &data, &len), -EAGAIN);
        CU_ASSERT_EQUAL(s.received, 2);
        CU_ASSERT_EQUAL(s.lost, 0);
        CU_ASSERT_EQUAL(atomic_load(&p.slot->msgs), 2);
        CU_ASSERT_EQUAL(atomic_load(&p.slot->bytes), 1025);
        CU_ASSERT_EQUAL(atomic_load(&s.slot->received), 2);

        shmbus__ring_sub_leave(&s);
        shmbus__ring_pub_leave(&p);
        CU_ASSERT_EQUAL(atomic_load(&m.r.ctl->retired_msgs), 2);
        mr_free(&m);
}

/* Many laps of varied sizes: every record comes back in order, padding is invisible. */
static void test_wrap_and_padding(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        uint32_t next = 0;

        mr_init(&m, 4096, 1000, SHMBUS_POLICY_BLOCK, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);

        for (uint32_t seq = 0; seq < 5000; seq++) {
                size_t len = tmsg_len(3, seq, 1000);
                int r = pub_send(&p, 3, seq, len, 0);

                /* Drain when full: the block policy refuses rather than overwrites. */
                while (r == -EAGAIN) {
                        uint32_t id, got;

                        CU_ASSERT_FATAL(sub_take(&s, &id, &got) > 0);
                        CU_ASSERT_EQUAL(got, next);
                        next++;
                        r = pub_send(&p, 3, seq, len, 0);
                }
                CU_ASSERT_EQUAL_FATAL(r, 0);
        }
        for (;;) {
                uint32_t id, got;
                int r = sub_take(&s, &id, &got);

                if (r == -EAGAIN)
                        break;
                CU_ASSERT_FATAL(r > 0);
                CU_ASSERT_EQUAL(got, next);
                next++;
        }
        CU_ASSERT_EQUAL(next, 5000);
        CU_ASSERT_EQUAL(s.lost, 0);
        CU_ASSERT(shmbus__ring_tail_pos(&m.r) > 20 * 4096);
        mr_free(&m);
}

static void test_full_blocks(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        uint32_t n = 0, id, seq;
        int64_t t0;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 2, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);

        /* No subscriber: a blocking channel has nobody to wait for. */
        for (uint32_t i = 0; i < 200; i++)
                CU_ASSERT_EQUAL(pub_send(&p, 1, i, 100, 0), 0);

        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        while (pub_send(&p, 1, n, 100, 0) == 0)
                n++;
        /* 100 + 16 header = 116 -> 128 bytes a record: 32 fit in 4096. */
        CU_ASSERT_EQUAL(n, 32);
        CU_ASSERT_EQUAL(atomic_load(&p.slot->full), 1);

        t0 = shmbus__now_ns();
        CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 20 * 1000000), -ETIMEDOUT);
        CU_ASSERT(shmbus__now_ns() - t0 >= 20 * 1000000);

        /*
         * A reader publishes its position every eighth of the ring, and
         * whenever it runs dry: one record read is not visible yet, four
         * (4 x 128 = 4096 / 8) are.
         */
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 100);
        CU_ASSERT_EQUAL(seq, 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 0), -EAGAIN);
        for (uint32_t k = 1; k < 4; k++)
                CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 100);
        for (uint32_t k = 0; k < 4; k++, n++)
                CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 0), -EAGAIN);

        /* A reader that runs dry publishes where it stopped: the whole ring is free. */
        while (sub_take(&s, &id, &seq) == 100)
                ;
        for (uint32_t k = 0; k < 32; k++, n++)
                CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 0), -EAGAIN);

        /* A subscriber that leaves no longer holds publishers back. */
        shmbus__ring_sub_leave(&s);
        CU_ASSERT_EQUAL(pub_send(&p, 1, n, 100, 0), 0);
        mr_free(&m);
}

/* Overwrite: a lapped subscriber resynchronises and counts exactly what it lost. */
static void test_overwrite_accounting(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        uint32_t last = 0, received = 0, id, seq;
        bool first = true;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_OVERWRITE, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);

        for (int round = 0; round < 50; round++) {
                /* Publish 1 to 3 laps' worth without reading, then read a few. */
                uint32_t burst = 20 + (uint32_t)round * 3;

                for (uint32_t i = 0; i < burst; i++) {
                        CU_ASSERT_EQUAL_FATAL(
                                pub_send(&p, 1, last + i, tmsg_len(1, last + i, 300), 0), 0);
                }
                last += burst;
                for (int k = 0; k < 5; k++) {
                        int r = sub_take(&s, &id, &seq);

                        if (r == -EAGAIN)
                                break;
                        CU_ASSERT_FATAL(r > 0);
                        received++;
                        first = false;
                }
        }
        for (;;) {
                int r = sub_take(&s, &id, &seq);

                if (r == -EAGAIN)
                        break;
                CU_ASSERT_FATAL(r > 0);
                received++;
        }
        CU_ASSERT_FALSE(first);
        CU_ASSERT(s.lost > 0);
        CU_ASSERT_EQUAL(s.received, received);
        CU_ASSERT_EQUAL(s.received + s.lost, last);
        CU_ASSERT_EQUAL(seq, last - 1); /* the newest message is never lost */
        mr_free(&m);
}

static void test_abort(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        uint32_t id, seq;
        void *buf;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 0, 50, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_claim(&p, 70, 0, &buf), 0);
        memset(buf, 0xee, 70);
        CU_ASSERT_EQUAL(shmbus__ring_abort(&p), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 1, 60, 0), 0);

        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 50);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 60);
        CU_ASSERT_EQUAL(seq, 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        CU_ASSERT_EQUAL(s.lost, 0); /* an abort is not a loss */
        CU_ASSERT_EQUAL(atomic_load(&p.slot->aborts), 1);
        mr_free(&m);
}

/*
 * shmbus__ring_is_sane judges only our own copy of the geometry, which is
 * what lets the library assert it: a member that scribbles on the shared
 * header after attach neither makes it false nor changes what the ring does.
 * A broken process-local view, on the other hand, is caught field by field.
 */
static void test_sane_view(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        struct shmbus_ctl *ctl;
        struct shmbus_ring r;
        uint32_t id, seq;

        mr_init(&m, 4096, 256, SHMBUS_POLICY_BLOCK, 2, 3);
        ctl = m.ctl;
        ctl->data_size = 3;
        ctl->max_msg = 0;
        ctl->policy = 9;
        ctl->max_subs = 0;
        ctl->max_pubs = 5000;
        CU_ASSERT(shmbus__ring_is_sane(&m.r));
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 4, 0, 200, 0), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 200);
        CU_ASSERT_EQUAL(id, 4);

        CU_ASSERT(!shmbus__ring_is_sane(NULL));
        r = m.r;
        r.data = NULL;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.mask = r.size;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.size = 8192;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.max_msg = 4096;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.policy = 2;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.max_pubs = 0;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.max_subs = 3; /* valid on its own, but the publisher slots are not where it says */
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.subs++;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        r = m.r;
        r.pubs--;
        CU_ASSERT(!shmbus__ring_is_sane(&r));
        shmbus__ring_sub_leave(&s);
        shmbus__ring_pub_leave(&p);
        mr_free(&m);
}

/*
 * A writer that dies after writing its header: unblock pads exactly its record,
 * but only once the writer's slot is gone (the daemon frees the slots of dead
 * processes); while the slot is active the writer may still commit.
 */
static void test_unblock_after_header(void) {
        struct memring m;
        struct shmbus_ring_pub dead, live;
        struct shmbus_ring_sub s;
        uint64_t stamp, stuck;
        uint32_t id, seq;
        void *buf;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 2);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &dead, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &live, 2, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 3, 0), 0);

        stuck = shmbus__ring_tail_pos(&m.r);
        CU_ASSERT_EQUAL(shmbus__ring_claim(&dead, 100, 0, &buf), 0);
        CU_ASSERT_EQUAL(pub_send(&live, 2, 0, 40, 0), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN); /* stuck behind the open claim */
        CU_ASSERT(shmbus__ring_pending(&m.r, stuck, &stamp));
        CU_ASSERT_EQUAL(stamp, stuck | SHMBUS_STAMP_CLAIMED);

        CU_ASSERT_EQUAL(shmbus__ring_claim_owner(&m.r, stuck), 1);
        CU_ASSERT_EQUAL(shmbus__ring_unblock(&m.r, stuck), -EBUSY);
        CU_ASSERT_EQUAL(atomic_load(&m.r.ctl->unblocked), 0);

        shmbus__ring_pub_slot_release(&m.r, (uint32_t)(dead.slot - m.r.pubs));
        CU_ASSERT_EQUAL(shmbus__ring_claim_owner(&m.r, stuck), 0);
        CU_ASSERT_EQUAL(shmbus__ring_unblock(&m.r, stuck), 1);
        CU_ASSERT_EQUAL(shmbus__ring_unblock(&m.r, stuck), 0); /* idempotent */
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
        CU_ASSERT_EQUAL(id, 2);
        CU_ASSERT_EQUAL(s.lost, 0); /* never committed, so never published: not a loss */
        CU_ASSERT_EQUAL(atomic_load(&m.r.ctl->unblocked), 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        mr_free(&m);
}

/* A writer that dies right after its claim CAS, before any header: pad and count it. */
static void test_unblock_before_header(void) {
        struct memring m;
        struct shmbus_ring_pub live;
        struct shmbus_ring_sub s;
        uint64_t stuck, stamp;
        uint32_t id, seq;
        shmbus_tail t;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &live, 2, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 3, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&live, 2, 0, 40, 0), 0);

        /* Simulate the dead claim: move the claim word by hand, write nothing. */
        t = m.r.ctl->tail;
        stuck = t.s.pos;
        m.r.ctl->tail.s.pos = t.s.pos + 128;
        m.r.ctl->tail.s.seq = t.s.seq + 1;

        CU_ASSERT_EQUAL(pub_send(&live, 2, 2, 40, 0), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        CU_ASSERT(shmbus__ring_pending(&m.r, stuck, &stamp));
        CU_ASSERT_EQUAL(shmbus__ring_unblock(&m.r, stuck), 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
        CU_ASSERT_EQUAL(seq, 2);
        CU_ASSERT_EQUAL(s.lost, 1); /* its message number was used: counted, not hidden */
        mr_free(&m);
}

/*
 * A writer died before its header while the next claimer, alive, had not yet
 * written its own: the pad over the dead claim stops where the live claim
 * begins, so the live one's message is delivered, not swallowed.
 */
static void test_unblock_spares_live_claim(void) {
        struct memring m;
        struct shmbus_ring_pub dead, live;
        struct shmbus_ring_sub s;
        uint64_t stuck, stamp;
        uint32_t id, seq;
        void *buf;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 2);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &dead, 2, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &live, 3, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 4, 0), 0);

        stuck = shmbus__ring_tail_pos(&m.r);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_claim(&dead, 40, 0, &buf), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_claim(&live, 40, 0, &buf), 0);
        tmsg_fill(buf, 40, 3, 1);
        /* Neither header is there yet: both claimers are between CAS and header. */
        atomic_store(&((struct shmbus_rec *)(void *)((uint8_t *)m.data + stuck))->stamp, 7);
        atomic_store(&((struct shmbus_rec *)(void *)((uint8_t *)m.data + live.claim_pos))->stamp,
                     9);
        /* The first one dies: the daemon releases its slot. */
        shmbus__ring_pub_slot_release(&m.r, 0);
        dead.ring = NULL;

        CU_ASSERT(shmbus__ring_pending(&m.r, stuck, &stamp));
        CU_ASSERT_EQUAL(shmbus__ring_unblock(&m.r, stuck), 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN); /* the live claim is still open */
        CU_ASSERT_EQUAL(shmbus__ring_commit(&live), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
        CU_ASSERT_EQUAL(id, 3);
        CU_ASSERT_EQUAL(seq, 1);
        mr_free(&m);
}

/*
 * A publisher stopped inside its claim while another laps the ring (overwrite
 * policy): the other must not take the open claim's bytes, or the late writes
 * would tear its records where no reader can tell (found by test-soak).
 */
static void test_overwrite_spares_open_claim(void) {
        struct memring m;
        struct shmbus_ring_pub slow, fast;
        struct shmbus_ring_sub s;
        uint32_t id, seq;
        int r, sent = 0;
        void *buf;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_OVERWRITE, 1, 2);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &slow, 2, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &fast, 3, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 4, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_claim(&slow, 200, 0, &buf), 0);

        /* The fast one publishes until its next record would land on the open claim. */
        while (sent < 100 && (r = pub_send(&fast, 3, (uint32_t)sent, 100, 0)) == 0)
                sent++;
        CU_ASSERT_EQUAL(r, -EAGAIN);
        CU_ASSERT(sent > 20 && sent < 4096 / 100);
        CU_ASSERT_EQUAL(pub_send(&fast, 3, (uint32_t)sent, 100, 20000000), -ETIMEDOUT);

        /* The slow one writes late and commits: nothing newer was in its bytes. */
        tmsg_fill(buf, 200, 2, 0);
        CU_ASSERT_EQUAL(shmbus__ring_commit(&slow), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 200);
        CU_ASSERT_EQUAL(id, 2);
        for (int i = 0; i < sent; i++) {
                CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 100);
                CU_ASSERT(id == 3 && seq == (uint32_t)i);
        }
        /* Closed, it holds nobody back: the fast one laps freely again. */
        for (int i = 0; i < 200; i++)
                CU_ASSERT_EQUAL(pub_send(&fast, 3, (uint32_t)(sent + i), 100, 0), 0);
        mr_free(&m);
}

/* A hostile publisher scribbles on records: readers report, resynchronise, carry on. */
static void test_corruption(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        struct shmbus_rec *rec;
        uint32_t id, seq;
        uint64_t pos;
        int r;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);

        /* A length past the end of the ring, then a length past max_msg. */
        pos = shmbus__ring_tail_pos(&m.r);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 0, 64, 0), 0);
        rec = (struct shmbus_rec *)(void *)((uint8_t *)m.data + (pos & m.r.mask));
        rec->len = 0xfffffff0u;
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EBADMSG);
        CU_ASSERT_EQUAL(s.corrupt, 1);
        pos = shmbus__ring_tail_pos(&m.r);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 1, 64, 0), 0);
        rec = (struct shmbus_rec *)(void *)((uint8_t *)m.data + (pos & m.r.mask));
        rec->len = 1000;
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EBADMSG);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 2, 64, 0), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 64);
        CU_ASSERT_EQUAL(seq, 2);

        /* A claim word moved behind the reader is corruption, not data. */
        m.r.ctl->tail.s.pos -= 16;
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EBADMSG);
        m.r.ctl->tail.s.pos += 16;

        /* Random bytes everywhere in the data: no crash, no out-of-bounds read (ASan). */
        srand(7);
        for (int round = 0; round < 200; round++) {
                uint8_t *d = m.data;

                for (int k = 0; k < 64; k++)
                        d[rand() % 4096] = (uint8_t)rand();
                if (round % 3 == 0) {
                        /* Forge plausible stamps so the reader gets past the first check. */
                        uint64_t at = s.pos;
                        struct shmbus_rec *fr = (struct shmbus_rec *)(void *)(d + (at & m.r.mask));

                        atomic_store(&fr->stamp, at | (uint64_t)(rand() % 2 ? 0 : 2));
                        fr->len = (uint32_t)rand();
                        m.r.ctl->tail.s.pos = at + 4096;
                }
                for (int k = 0; k < 8; k++) {
                        const void *data;
                        size_t len;

                        r = shmbus__ring_peek(&s, &data, &len);
                        if (r == 0) {
                                CU_ASSERT(len <= 512);
                                CU_ASSERT((const uint8_t *)data >= d &&
                                          (const uint8_t *)data + len <= d + 4096);
                                shmbus__ring_release(&s);
                        } else {
                                CU_ASSERT(r == -EAGAIN || r == -EBADMSG);
                        }
                }
        }
        mr_free(&m);
}

/*
 * Before a claim writes its header, the stamp word holds whatever an older lap
 * left there. Garbage that merely looks like "this position, some bits set"
 * must not be taken for an unblock pad: that abandoned the claim and left a
 * hole no reader could pass (found under ThreadSanitizer as a rare stall).
 */
static void test_garbage_stamp_before_claim(void) {
        static const uint64_t junk[] = {15, 3, 9, 11};
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        uint32_t id, seq;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        for (uint32_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
                uint64_t pos = shmbus__ring_tail_pos(&m.r);
                struct shmbus_rec *rec =
                        (struct shmbus_rec *)(void *)((uint8_t *)m.data + (pos & m.r.mask));

                atomic_store(&rec->stamp, pos | junk[i]);
                CU_ASSERT_EQUAL(pub_send(&p, 1, i, 40, 0), 0);
                CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
                CU_ASSERT_EQUAL(seq, i);
        }
        /*
         * Not even the exact marks unblock writes stop a claim: unblock never
         * touches a live publisher's claim, so such a stamp is garbage (or
         * forged by a hostile member), and giving up the claim would leave a
         * hole that stalls the channel.
         */
        static const uint64_t marks[] = {SHMBUS_STAMP_CLAIMED | SHMBUS_STAMP_SEQ, SHMBUS_STAMP_PAD,
                                         SHMBUS_STAMP_PAD | SHMBUS_STAMP_SEQ};
        for (uint32_t i = 0; i < 3; i++) {
                uint64_t pos = shmbus__ring_tail_pos(&m.r);
                struct shmbus_rec *rec =
                        (struct shmbus_rec *)(void *)((uint8_t *)m.data + (pos & m.r.mask));

                atomic_store(&rec->stamp, pos | marks[i]);
                CU_ASSERT_EQUAL(pub_send(&p, 1, 10 + i, 40, 0), 0);
                CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
                CU_ASSERT_EQUAL(seq, 10 + i);
        }
        /*
         * An unaligned claim word (only a hostile member writes one) is realigned
         * upwards by the next claim; the 16 bytes skipped are a hole that the
         * daemon's unblock pads, as it pads any claim nobody will commit.
         */
        uint64_t hole = shmbus__ring_tail_pos(&m.r), stamp;
        m.r.ctl->tail.s.pos += 5;
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 20, 40, 0), 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        CU_ASSERT(shmbus__ring_pending(&m.r, hole, &stamp));
        CU_ASSERT_EQUAL(shmbus__ring_unblock(&m.r, hole), 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), 40);
        CU_ASSERT_EQUAL(seq, 20);
        CU_ASSERT_EQUAL(shmbus__ring_tail_pos(&m.r) % 16, 0);
        mr_free(&m);
}

static void test_slots(void) {
        struct memring m;
        struct shmbus_ring_pub p[3];
        struct shmbus_ring_sub s[3];

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 2, 2);
        CU_ASSERT_EQUAL(shmbus__ring_pub_join(&m.r, &p[0], 1, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_pub_join(&m.r, &p[1], 1, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_pub_join(&m.r, &p[2], 1, 0), -EUSERS);
        CU_ASSERT_EQUAL(shmbus__ring_sub_join(&m.r, &s[0], 1, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_sub_join(&m.r, &s[1], 1, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_sub_join(&m.r, &s[2], 1, 0), -EUSERS);

        /* Broadcast: both subscribers get the message. */
        CU_ASSERT_EQUAL(pub_send(&p[0], 0, 0, 32, 0), 0);
        uint32_t id, seq;
        CU_ASSERT_EQUAL(sub_take(&s[0], &id, &seq), 32);
        CU_ASSERT_EQUAL(sub_take(&s[1], &id, &seq), 32);

        shmbus__ring_sub_leave(&s[1]);
        CU_ASSERT_EQUAL(shmbus__ring_sub_join(&m.r, &s[2], 1, 0), 0);
        /* A new subscriber only sees what is published after it joined. */
        CU_ASSERT_EQUAL(sub_take(&s[2], &id, &seq), -EAGAIN);
        shmbus__ring_pub_leave(&p[1]);
        CU_ASSERT_EQUAL(shmbus__ring_pub_join(&m.r, &p[2], 1, 0), 0);
        mr_free(&m);
}

/* ---- threads: N publishers x M subscribers on a small ring (the TSan target) -------------- */

#define T_PUBS 3
#define T_SUBS 2
#define T_MSGS 20000

struct tctx {
        struct memring *m;
        uint32_t id;
        atomic_int *subs_ready;
        int errors;
        uint64_t received;
        uint64_t lost;
};

static void *t_pub(void *arg) {
        struct tctx *c = arg;
        struct shmbus_ring_pub p;

        while (atomic_load(c->subs_ready) < T_SUBS)
                sched_yield();
        if (shmbus__ring_pub_join(&c->m->r, &p, 1, 0) < 0) {
                c->errors++;
                return NULL;
        }
        for (uint32_t seq = 0; seq < T_MSGS; seq++) {
                int r = pub_send(&p, c->id, seq, tmsg_len(c->id, seq, 200), 5000 * 1000000LL);

                if (r != 0) {
                        fprintf(stderr, "\n  publisher %u: message %u: %s\n", c->id, seq,
                                strerror(-r));
                        c->errors++;
                        break;
                }
        }
        shmbus__ring_pub_leave(&p);
        return NULL;
}

static void *t_sub(void *arg) {
        struct tctx *c = arg;
        struct shmbus_ring_sub s;
        uint32_t next[T_PUBS] = {0};
        uint64_t total = 0;
        int64_t deadline = shmbus__now_ns() + 30 * INT64_C(1000000000);

        if (shmbus__ring_sub_join(&c->m->r, &s, 1, 0) < 0) {
                c->errors++;
                return NULL;
        }
        atomic_fetch_add(c->subs_ready, 1);
        while (total < (uint64_t)T_PUBS * T_MSGS && shmbus__now_ns() < deadline) {
                const void *data;
                size_t len;
                uint32_t id, seq;
                int r = shmbus__ring_peek(&s, &data, &len);

                if (r == -EAGAIN) {
                        shmbus__ring_wait_data(&s, 100 * 1000000);
                        continue;
                }
                if (r < 0 || !tmsg_check(data, len, &id, &seq) || id >= T_PUBS || seq != next[id]) {
                        fprintf(stderr, "\n  subscriber: r=%d after %llu messages\n", r,
                                (unsigned long long)total);
                        c->errors++;
                        break;
                }
                next[id]++;
                total++;
                if (shmbus__ring_release(&s) < 0)
                        c->errors++;
        }
        if (total < (uint64_t)T_PUBS * T_MSGS) {
                struct shmbus_rec *rec = (struct shmbus_rec *)(void *)((uint8_t *)c->m->data +
                                                                       (s.pos & c->m->r.mask));

                fprintf(stderr,
                        "\n  subscriber: timed out after %llu messages at position %llu "
                        "(tail %llu): stamp %llu len %u seq %u\n",
                        (unsigned long long)total, (unsigned long long)s.pos,
                        (unsigned long long)shmbus__ring_tail_pos(&c->m->r),
                        (unsigned long long)atomic_load(&rec->stamp), rec->len, rec->seq);
                /* Post-mortem for investigation: the whole ring and where everyone stands. */
                if (getenv("SHMBUS_RING_DUMP")) {
                        FILE *f = fopen(getenv("SHMBUS_RING_DUMP"), "w");
                        uint64_t hdr[3] = {s.pos, c->m->r.ctl->tail.s.pos, c->m->r.ctl->tail.s.seq};

                        if (f) {
                                fwrite(hdr, sizeof(hdr), 1, f);
                                fwrite(c->m->data, 1, c->m->data_len, f);
                                fclose(f);
                        }
                }
        }
        c->received = total;
        c->lost = s.lost;
        shmbus__ring_sub_leave(&s);
        return NULL;
}

static void test_threads_block(void) {
        struct memring m;
        pthread_t pt[T_PUBS], st[T_SUBS];
        struct tctx pc[T_PUBS], sc[T_SUBS];
        atomic_int ready = 0;

        mr_init(&m, 8192, 256, SHMBUS_POLICY_BLOCK, T_SUBS, T_PUBS);
        for (int i = 0; i < T_SUBS; i++) {
                sc[i] = (struct tctx){.m = &m, .subs_ready = &ready};
                pthread_create(&st[i], NULL, t_sub, &sc[i]);
        }
        for (int i = 0; i < T_PUBS; i++) {
                pc[i] = (struct tctx){.m = &m, .id = (uint32_t)i, .subs_ready = &ready};
                pthread_create(&pt[i], NULL, t_pub, &pc[i]);
        }
        for (int i = 0; i < T_PUBS; i++) {
                pthread_join(pt[i], NULL);
                CU_ASSERT_EQUAL(pc[i].errors, 0);
        }
        for (int i = 0; i < T_SUBS; i++) {
                pthread_join(st[i], NULL);
                CU_ASSERT_EQUAL(sc[i].errors, 0);
                CU_ASSERT_EQUAL(sc[i].received, (uint64_t)T_PUBS * T_MSGS);
                CU_ASSERT_EQUAL(sc[i].lost, 0);
        }
        mr_free(&m);
}

/* A sleeping reader (no spinning) is woken by a publish from another thread. */
static void *t_late_pub(void *arg) {
        struct memring *m = arg;
        struct shmbus_ring_pub p;
        struct timespec ts = {0, 30 * 1000000};

        nanosleep(&ts, NULL);
        shmbus__ring_pub_join(&m->r, &p, 1, 0);
        pub_send(&p, 9, 0, 64, 0);
        shmbus__ring_pub_leave(&p);
        return NULL;
}

static void test_wake(void) {
        struct memring m;
        struct shmbus_ring_sub s;
        pthread_t t;
        int64_t t0;
        uint32_t id, seq;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        CU_ASSERT_EQUAL(shmbus__ring_wait_data(&s, 0), -ETIMEDOUT);
        t0 = shmbus__now_ns();
        CU_ASSERT_EQUAL(shmbus__ring_wait_data(&s, 10 * 1000000), -ETIMEDOUT);
        CU_ASSERT(shmbus__now_ns() - t0 >= 10 * 1000000);

        /*
         * Woken by the futex, not by the 200 ms re-check slice: the fastest of three
         * rounds (a publisher 30 ms late each time), so that one stall of a loaded
         * VM cannot fail it, while a broken futex wake makes every round 200 ms.
         */
        int64_t best = INT64_MAX;
        for (int round = 0; round < 3; round++) {
                pthread_create(&t, NULL, t_late_pub, &m);
                t0 = shmbus__now_ns();
                id = 0;
                while (sub_take(&s, &id, &seq) == -EAGAIN &&
                       shmbus__now_ns() - t0 < 5 * INT64_C(1000000000))
                        shmbus__ring_wait_data(&s, 10 * INT64_C(1000000000));
                if (shmbus__now_ns() - t0 < best)
                        best = shmbus__now_ns() - t0;
                pthread_join(t, NULL);
                CU_ASSERT_EQUAL(id, 9);
        }
        CU_ASSERT(best < 150 * 1000000);
        mr_free(&m);
}

/*
 * A member forges an open claim range into a live publisher's own slot while
 * that publisher is between claims: the publisher must not wait on itself
 * (issue 15, item 4: it used to, for good, even after the forger exited).
 */
static void test_forged_own_claim_range(void) {
        static const uint32_t policies[] = {SHMBUS_POLICY_OVERWRITE, SHMBUS_POLICY_BLOCK};

        for (unsigned k = 0; k < 2; k++) {
                struct memring m;
                struct shmbus_ring_pub p;
                uint64_t tail;

                mr_init(&m, 4096, 512, policies[k], 1, 2);
                CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 2, 0), 0);
                for (uint32_t i = 0; i < 64; i++)
                        CU_ASSERT_EQUAL(pub_send(&p, 2, i, 100, 0), 0);
                tail = shmbus__ring_tail_pos(&m.r);
                CU_ASSERT(tail > 4096);
                /* The forged range starts a whole lap behind: it would block every claim. */
                atomic_store(&p.slot->claim_begin, tail - 4096);
                atomic_store(&p.slot->claim_end, tail - 4096 + 128);
                atomic_store(&m.r.ctl->head_cache, tail - 4096);
                p.head = tail - 4096;
                for (uint32_t i = 0; i < 64; i++)
                        CU_ASSERT_EQUAL(pub_send(&p, 2, 64 + i, 100, 0), 0);
                mr_free(&m);
        }
}

/*
 * A sleeper that has been woken but not yet run is still counted; the first
 * waker takes its count, so the commits after it make no futex call (issue 17:
 * hundreds of wakes of nobody per sleep while streaming).
 */
static void test_wake_takes_count(void) {
        struct shmbus_ring_syscalls before, after;
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_BLOCK, 2, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        /* What futex_sleep leaves behind until the sleeper runs again. */
        atomic_store(&m.r.ctl->data_waiters, 1);
        atomic_store(&s.slot->sleeping, 1);
        shmbus__ring_syscalls(&before);
        for (uint32_t i = 0; i < 20; i++)
                CU_ASSERT_EQUAL(pub_send(&p, 1, i, 64, 0), 0);
        shmbus__ring_syscalls(&after);
        CU_ASSERT_EQUAL(after.futex_wakes - before.futex_wakes, 1);
        CU_ASSERT_EQUAL(atomic_load(&m.r.ctl->data_waiters), 0);
        CU_ASSERT_EQUAL(atomic_load(&s.slot->sleeping), 0);

        /* Counted but not flagged yet: every waker still wakes, and nothing is uncounted twice. */
        atomic_store(&m.r.ctl->data_waiters, 1);
        shmbus__ring_syscalls(&before);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 20, 64, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 21, 64, 0), 0);
        shmbus__ring_syscalls(&after);
        CU_ASSERT_EQUAL(after.futex_wakes - before.futex_wakes, 2);
        CU_ASSERT_EQUAL(atomic_load(&m.r.ctl->data_waiters), 1);
        atomic_store(&m.r.ctl->data_waiters, 0);
        mr_free(&m);
}

/*
 * An idle reader answers from the stamp at its position, but a publisher that
 * lapped it is found even if the stamp there looks as it did (a payload that
 * rewrote the same value): the claim word is re-read every few polls.
 */
static void test_idle_peek_finds_lap(void) {
        struct memring m;
        struct shmbus_ring_pub p;
        struct shmbus_ring_sub s;
        struct shmbus_rec *rec;
        uint64_t stamp;
        uint32_t id, seq;
        void *buf;
        int r = -EAGAIN, polls;

        mr_init(&m, 4096, 512, SHMBUS_POLICY_OVERWRITE, 1, 1);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_pub_join(&m.r, &p, 1, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus__ring_sub_join(&m.r, &s, 1, 0), 0);
        CU_ASSERT_EQUAL(pub_send(&p, 1, 0, 100, 0), 0);
        CU_ASSERT(sub_take(&s, &id, &seq) > 0);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN); /* confirmed empty here */

        /* A claim in progress right here is still nothing to read. */
        CU_ASSERT_EQUAL(shmbus__ring_claim(&p, 100, 0, &buf), 0);
        tmsg_fill(buf, 100, 1, 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        CU_ASSERT_EQUAL(shmbus__ring_commit(&p), 0);
        CU_ASSERT(sub_take(&s, &id, &seq) > 0);
        CU_ASSERT_EQUAL(seq, 1);
        CU_ASSERT_EQUAL(sub_take(&s, &id, &seq), -EAGAIN);
        rec = (struct shmbus_rec *)(void *)((uint8_t *)m.data + (s.pos & m.r.mask));
        stamp = atomic_load(&rec->stamp);

        for (uint32_t i = 2; i < 200; i++)
                CU_ASSERT_EQUAL(pub_send(&p, 1, i, 100, 0), 0);
        atomic_store(&rec->stamp, stamp);
        for (polls = 0; polls < 1000 && r == -EAGAIN; polls++)
                r = sub_take(&s, &id, &seq);
        CU_ASSERT(r > 0);
        CU_ASSERT(polls <= 64);
        CU_ASSERT(s.lost > 0);
        mr_free(&m);
}

int main(void) {
        static const struct test_case cases[] = {
                {"geometry is validated", test_geometry},
                {"empty ring and size limits", test_empty_and_limits},
                {"wrap-around and padding over many laps", test_wrap_and_padding},
                {"block policy: full ring refuses, waits, times out", test_full_blocks},
                {"overwrite policy: lapped reader counts every loss", test_overwrite_accounting},
                {"abort is skipped and not a loss", test_abort},
                {"the asserted sanity is our own view's, not the shared header's", test_sane_view},
                {"unblock a claim whose writer wrote its header", test_unblock_after_header},
                {"unblock a claim whose writer wrote nothing", test_unblock_before_header},
                {"unblock of a headerless claim spares the live claim after it",
                 test_unblock_spares_live_claim},
                {"overwrite: an open claim a lap behind is not overwritten",
                 test_overwrite_spares_open_claim},
                {"corrupt records are reported and skipped", test_corruption},
                {"garbage in a stamp slot is not taken for a pad", test_garbage_stamp_before_claim},
                {"slot limits and broadcast", test_slots},
                {"threads: 3 publishers x 2 subscribers, block", test_threads_block},
                {"futex wake of a sleeping reader", test_wake},
                {"a forged claim range in a publisher's own slot does not stall it",
                 test_forged_own_claim_range},
                {"a wake takes the sleeper's count: one futex wake per sleep",
                 test_wake_takes_count},
                {"an idle reader answers from the stamp but finds a lap", test_idle_peek_finds_lap},
                {NULL, NULL},
        };

        return test_run("ring", cases);
}
