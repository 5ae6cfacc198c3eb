/* SPDX-License-Identifier: MIT */
/*
 * Export routes: a channel's messages, read as an ordinary subscriber, are
 * published to a NATS subject. Core mode publishes each message as it comes
 * (at most once); jetstream mode publishes in batches and moves its
 * acknowledged position only when the stream has stored the whole batch (at
 * least once; each message's Nats-Msg-Id lets the stream drop what a retry or
 * a restarted bridge sends again).
 *
 * Invariants: messages go out in channel order; the acknowledged seq only grows and
 * every channel message up to it has been published and acknowledged (core:
 * handed to libnats), skipped (it carried the origin mark: it came from NATS)
 * or counted as lost; a record carrying the origin mark is never published.
 * Where this uses library internals (channel.h, pubsub.h, ring.h) it says so;
 * docs/BRIDGE.md lists them.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"

#include "bridge.h"
#include "channel.h"
#include "util.h"

#define ARENA_FLUSH_BYTES (1u << 20)
#define RECV_TIMEOUT_MS   100
#define FLUSH_TIMEOUT_MS  500
/*
 * How long a receive polls an empty channel before it sleeps on the futex
 * (the library's default is 50 us). A route thread is one of several on the
 * host's cores (libnats' reader and flusher, nats-server, the applications):
 * polling for 50 us after every burst took the CPU the next hop needed, and
 * the bench's round trip through four bridge hops was 60-110 us faster
 * without it (docs/PERFORMANCE.md). A wake-up costs a few microseconds, small
 * next to the NATS hop.
 */
#define RECV_SPIN_US 0

struct item {
        uint64_t seq, prev, n, ts;
        size_t off, len;
};

struct exporter {
        struct bridge *b;
        struct bridge_run *run;
        struct bridge_state *st;
        shmbus_sub *sub;
        uint8_t *buf;
        size_t buf_size;
        uint64_t incarnation;
        uint64_t prev; /* 1 + seq of the last message exported (0: none known: a fresh route) */
        uint64_t n;    /* messages exported by this route, ever */
        uint64_t last_lost;
        uint64_t pending_seq; /* core: the last seq handled; jetstream: the batch's last seq */
        bool pending;
        bool unflushed;  /* core: published since the last flush */
        uint64_t now_ns; /* the export time stamped on messages (clock()) */
        uint32_t clock_uses;
        bool reply_meta;        /* core: metadata in the reply subject (else in a header) */
        char reply_origin[160]; /* core: host/channel/incarnation, the last in base 36 */
        /* jetstream: the batch being published */
        struct item *items;
        size_t nitems, cap;
        uint8_t *arena;
        size_t arena_len, arena_cap;
        /* history walk on resume: the record held until the walk vouches for it */
        uint8_t *held;
        size_t held_len;
        uint64_t held_seq;
        bool held_marked, have_held;
        uint64_t expect;
        int walk_err;
};

/*
 * The export time for the end-to-end age. Reading CLOCK_REALTIME was a seventh
 * of the export's time on a 64 B stream (this VM's clock is not a cheap vDSO
 * read), so a burst reuses it for up to CLOCK_REUSE messages: the age is then
 * early by at most the time those take to export (microseconds).
 */
#define CLOCK_REUSE 32

static uint64_t clock_now(struct exporter *e) {
        if (e->clock_uses++ % CLOCK_REUSE == 0)
                e->now_ns = bridge_realtime_ns();
        return e->now_ns;
}

/* The channel ran empty: the next message starts a new burst, with a fresh time. */
static void clock_reset(struct exporter *e) {
        e->clock_uses = 0;
}

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

/* Decimal digits of @v at @p; returns the end. */
static char *put_u64(char *p, uint64_t v) {
        char tmp[20];
        int n = 0;

        do
                tmp[n++] = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        while (n)
                *p++ = tmp[--n];
        return p;
}

/*
 * "seq prev n ts origin": what an import route needs to order, de-duplicate
 * and time it. Formatted by hand: snprintf() was a visible share of the cost
 * of a small message.
 */
static void header_make(const struct exporter *e, const struct item *it, char *buf, size_t size) {
        size_t olen = strlen(e->run->origin);
        char *p = buf;

        assert(size >= 4 * 21 + olen + 1);
        p = put_u64(p, it->seq);
        *p++ = ' ';
        p = put_u64(p, it->prev);
        *p++ = ' ';
        p = put_u64(p, it->n);
        *p++ = ' ';
        p = put_u64(p, it->ts);
        *p++ = ' ';
        memcpy(p, e->run->origin, olen + 1);
}

/* Every message up to @seq is done: move the route's acknowledged position there. */
static void acked(struct exporter *e, uint64_t seq) {
        struct bridge_state *st = e->st;

        struct bridge_pos pos = {
                .incarnation = e->incarnation,
                .seq = seq,
                .n = e->n,
                .sent = e->prev,
        };

        bridge_acked_set(st, &pos);
        bridge_stat_set(&st->stats.updated_ns, e->now_ns ? e->now_ns : bridge_realtime_ns());
}

static void note_reconnects(struct exporter *e) {
        bridge_stat_set(&e->st->stats.reconnects, atomic_load(&e->b->reconnects));
}

/* Base-36 digits of @v at @p (lower case: valid in a subject); returns the end. */
static char *put_b36(char *p, uint64_t v) {
        static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
        char tmp[13];
        int n = 0;

        do
                tmp[n++] = digits[v % 36];
        while ((v /= 36) != 0);
        while (n)
                *p++ = tmp[--n];
        return p;
}

/*
 * Core mode carries the metadata in the reply subject, compactly:
 * "_SHMBUS.seq.n.ts.host/channel/incarnation", numbers in base 36, ts 0 but
 * on the first message of a burst and every CLOCK_REUSE-th. libnats then sends
 * the message straight from our buffer, where a header costs a natsMsg and a
 * header map per message; and every byte of metadata is a byte more for
 * nats-server and both sockets to move (docs/PERFORMANCE.md). Nobody listens
 * on _SHMBUS.>, so a subscriber that answers is harmless. Core imports need
 * no prev: they never wait for a predecessor.
 */
static void reply_make(const struct exporter *e, const struct item *it, bool with_ts, char *buf,
                       size_t size) {
        size_t olen = strlen(e->reply_origin);
        char *p = buf;

        assert(size >= sizeof(BRIDGE_REPLY_PREFIX) + 3 * 14 + olen);
        memcpy(p, BRIDGE_REPLY_PREFIX, sizeof(BRIDGE_REPLY_PREFIX) - 1);
        p += sizeof(BRIDGE_REPLY_PREFIX) - 1;
        p = put_b36(p, it->seq);
        *p++ = '.';
        p = put_b36(p, it->n);
        *p++ = '.';
        p = put_b36(p, with_ts ? it->ts : 0);
        *p++ = '.';
        memcpy(p, e->reply_origin, olen + 1);
}

/* Whether the origin can end a subject: no empty token ("a..b", a trailing '.'). */
static bool origin_fits_subject(const char *origin) {
        size_t n = strlen(origin);

        return n > 0 && origin[n - 1] != '.' && !strstr(origin, "..") && origin[0] != '.';
}

static int core_publish(struct exporter *e, const void *data, size_t len, uint64_t seq) {
        bool fresh = e->clock_uses % CLOCK_REUSE == 0;
        struct item it = {.seq = seq, .prev = e->prev, .n = e->n + 1, .ts = clock_now(e)};
        char meta[256];
        natsMsg *m = NULL;
        natsStatus s;

        if (e->reply_meta) {
                reply_make(e, &it, fresh, meta, sizeof(meta));
                s = natsConnection_PublishRequest(e->b->nc, e->run->route->subject, meta, data,
                                                  (int)len);
        } else {
                header_make(e, &it, meta, sizeof(meta));
                s = natsMsg_Create(&m, e->run->route->subject, NULL, data, (int)len);
                if (s == NATS_OK)
                        s = natsMsgHeader_Set(m, BRIDGE_HDR, meta);
                if (s == NATS_OK)
                        s = natsConnection_PublishMsg(e->b->nc, m);
                natsMsg_Destroy(m);
        }
        if (s != NATS_OK) {
                /* At most once: what NATS will not take is dropped, and counted. */
                bridge_stat_add(&e->st->stats.dropped_nats, 1);
                if (e->st->stats.dropped_nats == 1 || e->st->stats.dropped_nats % 100000 == 0)
                        bridge_log("export %s: NATS refused a message (%s); %" PRIu64
                                   " dropped so far",
                                   e->run->route->channel, natsStatus_GetText(s),
                                   e->st->stats.dropped_nats);
        } else {
                bridge_stat_add(&e->st->stats.msgs, 1);
                bridge_stat_add(&e->st->stats.bytes, len);
                e->unflushed = true;
        }
        /* Its number is used either way: the far side counts a drop as a gap. */
        e->n++;
        e->prev = seq + 1;
        acked(e, seq);
        return 0;
}

static int batch_add(struct exporter *e, const void *data, size_t len, uint64_t seq) {
        if (e->nitems == e->cap) {
                size_t cap = e->cap ? e->cap * 2 : 256;
                struct item *p = realloc(e->items, cap * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                e->items = p;
                e->cap = cap;
        }
        if (e->arena_len + len > e->arena_cap) {
                size_t cap = e->arena_cap ? e->arena_cap : (1u << 16);
                uint8_t *p;

                while (cap < e->arena_len + len)
                        cap *= 2;
                p = realloc(e->arena, cap);
                if (!p)
                        return -ENOMEM;
                e->arena = p;
                e->arena_cap = cap;
        }
        memcpy(e->arena + e->arena_len, data, len);
        e->items[e->nitems++] = (struct item){
                .seq = seq,
                .prev = e->prev,
                .n = e->n + 1,
                .ts = clock_now(e),
                .off = e->arena_len,
                .len = len,
        };
        e->arena_len += len;
        e->n++;
        e->prev = seq + 1;
        return 0;
}

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
        struct bridge_run *run = closure;

        if (pae)
                atomic_fetch_add(&run->batch_failed, 1);
        else if (pa && pa->Duplicate)
                atomic_fetch_add(&run->batch_dups, 1);
        natsMsg_Destroy(msg);
}

/* Publish the batch until the stream has acknowledged all of it (or we are told to stop). */
static int batch_flush(struct exporter *e) {
        struct bridge_run *run = e->run;
        jsPubOptions po;
        natsStatus s = NATS_OK;
        uint64_t dups;

        if (!e->pending)
                return 0;
        for (int attempt = 0;; attempt++) {
                atomic_store(&run->batch_failed, 0);
                atomic_store(&run->batch_dups, 0);
                for (size_t i = 0; i < e->nitems; i++) {
                        const struct item *it = &e->items[i];
                        char hdr[256], id[192];
                        natsMsg *m = NULL;

                        header_make(e, it, hdr, sizeof(hdr));
                        /* host/channel/incarnation/seq: unique for ever, and the same on a resend.
                         */
                        snprintf(id, sizeof(id), "%s/%" PRIu64, run->origin, it->seq);
                        jsPubOptions_Init(&po);
                        po.MsgId = id;
                        s = natsMsg_Create(&m, run->route->subject, NULL,
                                           (const char *)e->arena + it->off, (int)it->len);
                        if (s == NATS_OK)
                                s = natsMsgHeader_Set(m, BRIDGE_HDR, hdr);
                        if (s == NATS_OK)
                                s = js_PublishMsgAsync(run->js, &m, &po);
                        natsMsg_Destroy(m);
                        if (s != NATS_OK)
                                break;
                }
                if (s == NATS_OK) {
                        /* Out now, not after libnats' flusher has waited for more. */
                        natsConnection_FlushTimeout(e->b->nc, FLUSH_TIMEOUT_MS);
                        jsPubOptions_Init(&po);
                        po.MaxWait = 5000;
                        s = js_PublishAsyncComplete(run->js, &po);
                }
                if (s == NATS_OK && atomic_load(&run->batch_failed) == 0)
                        break;

                /* Take back what is still unacknowledged, then send the batch again. */
                natsMsgList pending;
                if (js_PublishAsyncGetPendingList(&pending, run->js) == NATS_OK)
                        natsMsgList_Destroy(&pending);
                if (attempt == 0 || attempt % 50 == 0)
                        bridge_log("export %s -> %s: batch of %zu not acknowledged (%s); "
                                   "sending it again",
                                   run->route->channel, run->route->subject, e->nitems,
                                   s != NATS_OK ? bridge_nats_err(s) : "negative ack");
                bridge_stat_add(&e->st->stats.resent, e->nitems);
                note_reconnects(e);
                if (atomic_load(&e->b->stop))
                        return -ECANCELED;
                sleep_ms(100);
        }
        dups = atomic_load(&run->batch_dups);
        bridge_stat_add(&e->st->stats.duplicates, dups);
        /* All are stored now; the stream had some already (a resend, a restart). */
        bridge_stat_add(&e->st->stats.msgs, e->nitems);
        bridge_stat_add(&e->st->stats.bytes, e->arena_len);
        acked(e, e->pending_seq);
        e->nitems = 0;
        e->arena_len = 0;
        e->pending = false;
        return 0;
}

/* One channel message, in order: skip it (origin mark), publish it (core) or batch it. */
static int emit(struct exporter *e, const void *data, size_t len, uint64_t seq, bool marked) {
        int r = 0;

        if (marked) {
                /* It came from NATS through an import route: sending it back would loop. */
                bridge_stat_add(&e->st->stats.skipped_marked, 1);
                if (e->run->route->mode == BRIDGE_CORE)
                        acked(e, seq);
        } else if (e->run->route->mode == BRIDGE_CORE) {
                return core_publish(e, data, len, seq);
        } else {
                r = batch_add(e, data, len, seq);
        }
        if (e->run->route->mode == BRIDGE_JETSTREAM) {
                e->pending = true;
                e->pending_seq = seq;
                if (r == 0 &&
                    (e->nitems >= (size_t)e->b->cfg->batch || e->arena_len >= ARENA_FLUSH_BYTES))
                        r = batch_flush(e);
        }
        return r;
}

/* Resume from the ring's history: hold each record until the walk has validated it. */
static int walk_cb(void *ctx, const void *data, uint32_t len, uint64_t seq, bool stale) {
        struct exporter *e = ctx;
        int r;

        if (stale) {
                /* Overwritten while we copied it: lost (the walk goes on a lap later). */
                if (e->have_held)
                        bridge_stat_add(&e->st->stats.lost_shmbus, 1);
                e->have_held = false;
                return 0;
        }
        if (seq < e->expect)
                return 0; /* acknowledged before the restart */
        if (e->have_held) {
                r = emit(e, e->held, e->held_len, e->held_seq, e->held_marked);
                if (r < 0)
                        return e->walk_err = r;
                e->have_held = false;
        }
        if (seq > e->expect)
                bridge_stat_add(&e->st->stats.lost_shmbus, seq - e->expect);
        /* Internal: the record header in front of the payload says whether it is marked. */
        e->held_marked = ((const struct shmbus_rec *)data - 1)->len & SHMBUS_REC_MARK;
        memcpy(e->held, data, len);
        e->held_len = len;
        e->held_seq = seq;
        e->have_held = true;
        e->expect = seq + 1;
        return 0;
}

/*
 * Jetstream: the stream may hold more of ours than our state says (the bridge
 * died between the stream's acknowledgement and recording it). Batches are
 * stored in order, each only after the one before it was complete, so the
 * last message of the subject, if it is ours, says how far we really got.
 */
static void stream_position(struct exporter *e) {
        struct bridge_state *st = e->st;
        struct bridge_hdr h;
        natsMsg *m = NULL;

        if (js_GetLastMsg(&m, e->run->js, e->b->cfg->stream, e->run->route->subject, NULL, NULL) !=
            NATS_OK)
                return;
        /* Compare seq + 1: a route that had sent nothing stored seq = -1. */
        if (bridge_hdr_parse(m, &h) && strcmp(h.origin, e->run->origin) == 0 &&
            h.seq + 1 > bridge_acked(st)->seq + 1) {
                struct bridge_pos pos = {
                        .incarnation = e->incarnation,
                        .seq = h.seq,
                        .n = h.n,
                        .sent = h.seq + 1,
                };

                bridge_acked_set(st, &pos);
        }
        natsMsg_Destroy(m);
}

static int resume(struct exporter *e, uint64_t join_seq) {
        struct bridge_state *st = e->st;
        int r;

        if (!st->acked_valid)
                return 0;
        e->n = bridge_acked(st)->n;
        if (bridge_acked(st)->incarnation != e->incarnation) {
                bridge_log("export %s: the channel was recreated since the last run; starting "
                           "at its end",
                           e->run->route->channel);
                e->prev = 0;
                return 0;
        }
        if (e->run->route->mode == BRIDGE_JETSTREAM)
                stream_position(e);
        e->n = bridge_acked(st)->n;
        e->prev = bridge_acked(st)->sent;
        e->expect = bridge_acked(st)->seq + 1;
        if (e->expect >= join_seq)
                return 0;
        /* Internal: the ring walk (what shmbus-cli tail -n uses) up to where we joined. */
        r = shmbus__ring_walk(&e->run->chan->ring, shmbus__sub_position(e->sub), walk_cb, e);
        if (r < 0 && r != -EBADMSG)
                return e->walk_err ? e->walk_err : r;
        if (e->have_held) {
                r = emit(e, e->held, e->held_len, e->held_seq, e->held_marked);
                if (r < 0)
                        return r;
                e->have_held = false;
        }
        if (join_seq > e->expect)
                bridge_stat_add(&st->stats.lost_shmbus, join_seq - e->expect);
        bridge_log("export %s: resumed after seq %" PRIu64 " (%" PRIu64
                   " lost while the bridge was away)",
                   e->run->route->channel, bridge_acked(st)->seq, st->stats.lost_shmbus);
        if (e->run->route->mode == BRIDGE_JETSTREAM)
                return batch_flush(e);
        return 0;
}

static int export_run(struct exporter *e) {
        struct bridge_run *run = e->run;
        uint64_t join_seq;
        int r;

        r = shmbus_sub_new(run->chan, &e->sub);
        if (r < 0) {
                bridge_log("export %s: cannot subscribe: %s", run->route->channel,
                           shmbus_strerror(r));
                return r;
        }
        e->incarnation = run->chan->ring.ctl->created_ns;
        snprintf(run->origin, sizeof(run->origin), "%s/%s/%" PRIu64, e->b->cfg->host,
                 run->route->channel, e->incarnation);
        {
                char *p = e->reply_origin;

                p += snprintf(p, sizeof(e->reply_origin) - 14, "%s/%s/", e->b->cfg->host,
                              run->route->channel);
                *put_b36(p, e->incarnation) = '\0';
        }
        e->reply_meta = origin_fits_subject(e->reply_origin);
        shmbus_sub_set_spin(e->sub, RECV_SPIN_US);
        e->buf_size = shmbus_channel_max_msg(run->chan);
        e->buf = malloc(e->buf_size);
        e->held = malloc(e->buf_size);
        if (!e->buf || !e->held)
                return -ENOMEM;
        /* Internal: the seq we joined at; everything before it is history. */
        join_seq = shmbus__sub_last_seq(e->sub) + 1;
        /* Joined first, so nothing published while we wait for the stream is missed. */
        if (run->route->mode == BRIDGE_JETSTREAM) {
                r = bridge_nats_ensure_stream(e->b, run->js);
                if (r < 0)
                        return r;
        }
        r = resume(e, join_seq);
        if (r < 0)
                return r;
        if (!e->st->acked_valid || bridge_acked(e->st)->incarnation != e->incarnation ||
            bridge_acked(e->st)->seq + 1 < join_seq)
                acked(e, join_seq - 1);

        while (!atomic_load(&e->b->stop)) {
                int timeout = e->pending || e->unflushed ? 0 : RECV_TIMEOUT_MS;
                ssize_t len = shmbus_sub_recv(e->sub, e->buf, e->buf_size, timeout);
                uint64_t lost;

                if (len == -EAGAIN || len == -ETIMEDOUT) {
                        clock_reset(e);
                        /*
                         * The channel is empty for now: send what libnats buffered
                         * rather than let its flusher wait a millisecond for more
                         * (a round trip would pay that at every hop).
                         */
                        if (e->unflushed) {
                                natsConnection_FlushTimeout(e->b->nc, FLUSH_TIMEOUT_MS);
                                e->unflushed = false;
                        }
                        r = e->pending ? batch_flush(e) : 0;
                        note_reconnects(e);
                        if (r == -ECANCELED)
                                break;
                        continue;
                }
                lost = shmbus_sub_lost(e->sub);
                if (lost != e->last_lost) {
                        bridge_stat_add(&e->st->stats.lost_shmbus, lost - e->last_lost);
                        e->last_lost = lost;
                }
                if (len == -EBADMSG) {
                        bridge_stat_add(&e->st->stats.errors, 1);
                        continue;
                }
                if (len < 0) {
                        bridge_log("export %s: %s", run->route->channel, shmbus_strerror((int)len));
                        bridge_stat_add(&e->st->stats.errors, 1);
                        sleep_ms(100);
                        continue;
                }
                /* The message's seq (public since issue 16) and origin mark (internal). */
                r = emit(e, e->buf, (size_t)len, shmbus_sub_seq(e->sub),
                         shmbus__sub_last_marked(e->sub));
                if (r == -ECANCELED)
                        break;
                if (r < 0)
                        return r;
        }
        if (run->route->mode == BRIDGE_CORE)
                natsConnection_FlushTimeout(e->b->nc, 2000);
        return 0;
}

void *bridge_export_thread(void *arg) {
        struct bridge_run *run = arg;
        struct exporter e = {.b = run->b, .run = run, .st = run->st};
        int r;

        r = export_run(&e);
        if (r < 0 && r != -ECANCELED) {
                bridge_log("export %s -> %s stopped: %s", run->route->channel, run->route->subject,
                           shmbus_strerror(r));
                bridge_stat_add(&run->st->stats.errors, 1);
                atomic_store(&run->b->stop, true);
        }
        shmbus_sub_free(e.sub);
        free(e.buf);
        free(e.held);
        free(e.items);
        free(e.arena);
        return NULL;
}

void bridge_export_js_options(struct bridge_run *run, jsOptions *jo) {
        jo->PublishAsync.AckHandler = on_pub_ack;
        jo->PublishAsync.AckHandlerClosure = run;
        jo->PublishAsync.MaxPending = 65536;
}
