/* SPDX-License-Identifier: MIT */
/*
 * Import routes: messages from a NATS subject are committed to a channel,
 * carrying the origin mark so that no export route sends them out again.
 * Core mode takes what core NATS delivers and counts every gap in an origin's
 * numbering; jetstream mode pulls from a durable consumer and acknowledges a
 * message only once it is committed to the channel.
 *
 * Each bridged message names its origin (host/channel/incarnation), its seq
 * in the origin channel and the seq before it (docs/BRIDGE.md). Per origin
 * the route keeps the last seq it committed, so a message at or below it is a
 * duplicate (suppressed), and in jetstream mode one whose predecessor has not
 * been committed yet is left unacknowledged until the stream delivers the
 * missing one first.
 *
 * Invariants: a message is acknowledged to NATS only after shmbus_pub_commit()
 * returned 0 (or after it was found to be a duplicate or our own); the state
 * file names the message being committed before the commit, so that after a
 * crash the route can tell from the channel's own history whether the commit
 * happened (resolve_pending()).
 */
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

#define FETCH_BATCH      256
#define FETCH_TIMEOUT_MS 200
#define CLAIM_TIMEOUT_MS 100
/*
 * How long a jetstream import holds a message whose predecessor has not come
 * (counted in redeliveries, one per ack_wait_ms) before it takes it and counts
 * the gap as lost. The predecessor is usually a message the exporting bridge is
 * sending again after a NATS restart: its reconnect takes seconds (libnats waits
 * 2 s between attempts), and under load or a sanitizer more. Three deliveries
 * (4 s at the default ack wait) were too few: test-bridge's "kill -9 of
 * nats-server" lost a late predecessor about one run in six under ASan.
 */
#define HOLD_MAX_MS     30000
#define RESOLVE_WAIT_MS 5000
/*
 * libnats frees a received message in its garbage-collector thread and wakes
 * that thread whenever it had gone idle: once per message when they are
 * destroyed one by one as they come. A core import holds the messages of a
 * burst (their data is already committed) and destroys them together when the
 * subscription runs empty, or every DESTROY_BATCH: one wake-up per burst.
 */
#define DESTROY_BATCH 64

enum verdict {
        COMMITTED,
        DUPLICATE,
        OWN,
        HOLD,    /* jetstream: its predecessor is missing; wait for redelivery */
        DROPPED, /* can never be committed (larger than the channel's largest message) */
        FAILED,
};

struct importer {
        struct bridge *b;
        struct bridge_run *run;
        struct bridge_state *st;
        shmbus_pub *pub;
        natsSubscription *sub;
        int64_t dropped_seen;
};

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

/* A decimal number followed by @sep; NULL if there is none. */
static const char *get_u64(const char *p, char sep, uint64_t *ret) {
        uint64_t v = 0;
        const char *start = p;

        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return NULL;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        if (p == start || *p != sep)
                return NULL;
        *ret = v;
        return p + 1;
}

/* A base-36 number followed by '.'; NULL if there is none. */
static const char *get_b36(const char *p, uint64_t *ret) {
        uint64_t v = 0;
        const char *start = p;

        for (;; p++) {
                unsigned d;

                if (*p >= '0' && *p <= '9')
                        d = (unsigned)(*p - '0');
                else if (*p >= 'a' && *p <= 'z')
                        d = (unsigned)(*p - 'a') + 10;
                else
                        break;
                if (v > (UINT64_MAX - d) / 36)
                        return NULL;
                v = v * 36 + d;
        }
        if (p == start || *p != '.')
                return NULL;
        *ret = v;
        return p + 1;
}

static bool origin_check(const char *v, struct bridge_hdr *h) {
        const char *slash = strchr(v, '/');

        h->origin = v;
        if (!slash || slash == v || strlen(v) >= BRIDGE_ORIGIN_MAX)
                return false;
        h->host_len = (size_t)(slash - v);
        return true;
}

/* The core reply subject's "seq.n.ts.origin" (base 36; no prev, ts 0 if not stamped). */
static bool reply_parse(const char *v, struct bridge_hdr *h) {
        h->prev = 0;
        if (!(v = get_b36(v, &h->seq)) || !(v = get_b36(v, &h->n)) || !(v = get_b36(v, &h->ts)))
                return false;
        return origin_check(v, h);
}

/* "seq prev n ts origin", the fields separated by @sep. */
static bool meta_parse(const char *v, char sep, struct bridge_hdr *h) {
        if (!(v = get_u64(v, sep, &h->seq)) || !(v = get_u64(v, sep, &h->prev)) ||
            !(v = get_u64(v, sep, &h->n)) || !(v = get_u64(v, sep, &h->ts)))
                return false;
        return origin_check(v, h);
}

/*
 * A bridged message's metadata: in its reply subject (core mode) or in its
 * BRIDGE_HDR header (jetstream mode, or a core route whose origin is no valid
 * subject); false if it has neither (not sent by a bridge: it is committed as
 * it is, without ordering or de-duplication). Parsed by hand: sscanf() was a
 * visible share of the cost of a small message.
 */
bool bridge_hdr_parse(natsMsg *m, struct bridge_hdr *h) {
        const char *v = natsMsg_GetReply(m);

        if (v && strncmp(v, BRIDGE_REPLY_PREFIX, sizeof(BRIDGE_REPLY_PREFIX) - 1) == 0)
                return reply_parse(v + sizeof(BRIDGE_REPLY_PREFIX) - 1, h);
        v = NULL;
        if (natsMsgHeader_Get(m, BRIDGE_HDR, &v) != NATS_OK || !v)
                return false;
        return meta_parse(v, ' ', h);
}

static struct bridge_origin *origin_get(struct bridge_state *st, const char *key) {
        struct bridge_origin *free_slot = NULL, *oldest = &st->origins[0];

        for (int i = 0; i < BRIDGE_ORIGINS_MAX; i++) {
                struct bridge_origin *o = &st->origins[i];

                if (o->key[0] == '\0') {
                        if (!free_slot)
                                free_slot = o;
                        continue;
                }
                if (strncmp(o->key, key, sizeof(o->key)) == 0)
                        return o;
                if (o->last_n < oldest->last_n)
                        oldest = o;
        }
        /* A full table forgets the origin that has sent least (a channel recreated long ago). */
        if (!free_slot)
                free_slot = oldest;
        memset(free_slot, 0, sizeof(*free_slot));
        snprintf(free_slot->key, sizeof(free_slot->key), "%s", key);
        return free_slot;
}

/* Claim, copy, name the message in the state file, commit: see resolve_pending(). */
static int commit(struct importer *im, const void *data, size_t len, struct bridge_origin *o,
                  const struct bridge_hdr *h) {
        struct bridge_state *st = im->st;
        void *buf;
        int r;

        for (;;) {
                r = shmbus_pub_claim(im->pub, len, CLAIM_TIMEOUT_MS, &buf);
                if (r == 0)
                        break;
                if ((r != -ETIMEDOUT && r != -EAGAIN) || atomic_load(&im->b->stop))
                        return r == -ETIMEDOUT || r == -EAGAIN ? -ECANCELED : r;
        }
        memcpy(buf, data, len);
        if (o) {
                st->pending_origin = (uint64_t)(o - st->origins);
                st->pending_seq = h->seq;
                st->pending_n = h->n;
                /* Internal: the seq our claim got in the channel. */
                st->pending_chan_seq = shmbus__pub_claim_seq(im->pub);
                st->pending_chan_pos = shmbus__pub_claim_pos(im->pub);
                __atomic_store_n(&st->pending_valid, 1, __ATOMIC_RELEASE);
        }
        r = shmbus_pub_commit(im->pub);
        if (r < 0)
                return r;
        if (o) {
                o->last_seq1 = h->seq + 1;
                o->last_n = h->n;
                __atomic_store_n(&st->pending_valid, 0, __ATOMIC_RELEASE);
        }
        bridge_stat_add(&st->stats.msgs, 1);
        bridge_stat_add(&st->stats.bytes, len);
        return 0;
}

static enum verdict handle(struct importer *im, natsMsg *m, uint64_t delivered) {
        struct bridge_state *st = im->st;
        const char *host = im->b->cfg->host;
        struct bridge_origin *o = NULL;
        struct bridge_hdr h;
        bool js = im->run->route->mode == BRIDGE_JETSTREAM;
        int r;

        if (bridge_hdr_parse(m, &h)) {
                if (h.host_len == strlen(host) && strncmp(h.origin, host, h.host_len) == 0) {
                        /* Our own export, back through the stream (core NATS has no echo). */
                        bridge_stat_add(&st->stats.skipped_own, 1);
                        return OWN;
                }
                o = origin_get(st, h.origin);
                if (o->last_seq1 && h.seq + 1 <= o->last_seq1) {
                        bridge_stat_add(&st->stats.duplicates, 1);
                        return DUPLICATE;
                }
                /* Jetstream: its predecessor has not come yet; the stream will bring it. */
                if (js && o->last_seq1 && h.prev && h.prev > o->last_seq1 &&
                    (delivered > 1 ? delivered - 1 : 0) <
                            HOLD_MAX_MS / (uint64_t)im->b->cfg->ack_wait_ms)
                        return HOLD;
                /* Messages the origin sent between the last one and this are lost. */
                if (o->last_seq1 && h.n > o->last_n + 1)
                        bridge_stat_add(&st->stats.lost_nats, h.n - o->last_n - 1);
        }
        r = commit(im, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), o, o ? &h : NULL);
        if (r == -EMSGSIZE || r == -EINVAL) {
                /* Delivering it again would fail again, for ever: drop it, and say so. */
                bridge_log("import %s: dropped a message of %d bytes: %s", im->run->route->channel,
                           natsMsg_GetDataLength(m), shmbus_strerror(r));
                bridge_stat_add(&st->stats.errors, 1);
                if (o) {
                        o->last_seq1 = h.seq + 1;
                        o->last_n = h.n;
                }
                return DROPPED;
        }
        if (r < 0) {
                if (r != -ECANCELED) {
                        bridge_log("import %s: cannot commit: %s", im->run->route->channel,
                                   shmbus_strerror(r));
                        bridge_stat_add(&st->stats.errors, 1);
                }
                return FAILED;
        }
        if (o && h.ts) {
                uint64_t now = bridge_realtime_ns();

                bridge_stat_age(&st->stats, now > h.ts ? now - h.ts : 0);
        }
        return COMMITTED;
}

/*
 * A crash between naming a message in the state file and forgetting it again:
 * the commit happened if and only if the record at our claim's position is a
 * committed data record (stamp == position) rather than a pad. A claim that
 * never committed stays open until shmbusd, seeing that we died, pads over
 * it, so wait for that. A position the ring has lapped since cannot be
 * checked; the message then most likely was committed (it was one store away).
 */
static void resolve_pending(struct importer *im) {
        struct bridge_state *st = im->st;
        const struct shmbus_ring *ring = &im->run->chan->ring;
        uint64_t pos = st->pending_chan_pos, stamp = 0;
        struct bridge_origin *o;
        bool committed = false;

        if (!st->pending_valid || st->pending_origin >= BRIDGE_ORIGINS_MAX)
                return;
        if (st->incarnation != ring->ctl->created_ns) {
                /* The channel was deleted and made again: that claim died with it. */
                __atomic_store_n(&st->pending_valid, 0, __ATOMIC_RELEASE);
                return;
        }
        o = &st->origins[st->pending_origin];
        for (int waited = 0;; waited += 50) {
                /* Internal: the ring's own view of one record. */
                bool open = shmbus__ring_pending(ring, pos, &stamp);

                if (shmbus__ring_tail_pos(ring) - pos > ring->size) {
                        committed = true;
                        break;
                }
                if (!open) {
                        committed = stamp == pos;
                        break;
                }
                if (waited >= RESOLVE_WAIT_MS)
                        break;
                sleep_ms(50);
        }
        if (committed) {
                o->last_seq1 = st->pending_seq + 1;
                o->last_n = st->pending_n;
        }
        bridge_log("import %s: the message being committed when the bridge stopped was %s",
                   im->run->route->channel, committed ? "committed" : "not committed");
        __atomic_store_n(&st->pending_valid, 0, __ATOMIC_RELEASE);
}

static void note_dropped(struct importer *im) {
        int64_t d = 0;

        bridge_stat_set(&im->st->stats.reconnects, atomic_load(&im->b->reconnects));
        if (im->sub && natsSubscription_GetDropped(im->sub, &d) == NATS_OK &&
            d > im->dropped_seen) {
                /* Slow-consumer drops in libnats: they also show as gaps in lost_nats. */
                bridge_stat_add(&im->st->stats.dropped_nats, (uint64_t)(d - im->dropped_seen));
                im->dropped_seen = d;
        }
}

static int run_core(struct importer *im) {
        const struct bridge_route *route = im->run->route;
        natsMsg *done[DESTROY_BATCH];
        int ndone = 0;
        natsStatus s;

        s = natsConnection_SubscribeSync(&im->sub, im->b->nc, route->subject);
        if (s != NATS_OK) {
                bridge_log("import %s: cannot subscribe: %s", route->subject, bridge_nats_err(s));
                return -EIO;
        }
        natsSubscription_SetPendingLimits(im->sub, 1 << 20, 1 << 30);
        while (!atomic_load(&im->b->stop)) {
                natsMsg *m = NULL;

                /* With messages held, only look: an empty subscription first frees them. */
                s = natsSubscription_NextMsg(&m, im->sub, ndone ? 0 : FETCH_TIMEOUT_MS);
                if (ndone && (s != NATS_OK || ndone == DESTROY_BATCH)) {
                        for (int i = 0; i < ndone; i++)
                                natsMsg_Destroy(done[i]);
                        ndone = 0;
                        if (s == NATS_TIMEOUT)
                                continue; /* now wait for the next one */
                }
                if (s == NATS_TIMEOUT) {
                        note_dropped(im);
                        continue;
                }
                if (s != NATS_OK) {
                        /* Slow consumer (counted) or a connection in trouble: carry on. */
                        note_dropped(im);
                        if (s != NATS_SLOW_CONSUMER)
                                sleep_ms(50);
                        continue;
                }
                handle(im, m, 1);
                done[ndone++] = m;
        }
        for (int i = 0; i < ndone; i++)
                natsMsg_Destroy(done[i]);
        return 0;
}

/* Durable names allow no '.', '*', '>' or spaces: shmbus_HOST_CHANNEL with '.' as '_'. */
static void durable_name(const struct importer *im, char *buf, size_t size) {
        snprintf(buf, size, "shmbus_%s_%s", im->b->cfg->host, im->run->route->channel);
        for (char *p = buf; *p; p++)
                if (*p == '.')
                        *p = '_';
}

static int run_jetstream(struct importer *im) {
        const struct bridge_route *route = im->run->route;
        char durable[160];
        jsSubOptions so;
        jsErrCode jerr = 0;
        natsStatus s;
        int warned = 0, r;

        r = bridge_nats_ensure_stream(im->b, im->run->js);
        if (r < 0)
                return r == -ECANCELED ? 0 : r;
        durable_name(im, durable, sizeof(durable));
        jsSubOptions_Init(&so);
        so.Stream = im->b->cfg->stream;
        so.Config.AckPolicy = js_AckExplicit;
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.AckWait = (int64_t)im->b->cfg->ack_wait_ms * 1000000;
        so.Config.MaxAckPending = 65536;
        for (;;) {
                s = js_PullSubscribe(&im->sub, im->run->js, route->subject, durable, NULL, &so,
                                     &jerr);
                if (s == NATS_OK)
                        break;
                if (warned++ == 0)
                        bridge_log("import %s: cannot attach to stream %s: %s (error %d); "
                                   "retrying",
                                   route->subject, im->b->cfg->stream, bridge_nats_err(s),
                                   (int)jerr);
                if (atomic_load(&im->b->stop))
                        return 0;
                sleep_ms(200);
        }
        while (!atomic_load(&im->b->stop)) {
                natsMsgList list = {0};

                s = natsSubscription_Fetch(&list, im->sub, FETCH_BATCH, FETCH_TIMEOUT_MS, &jerr);
                note_dropped(im);
                if (s != NATS_OK && s != NATS_TIMEOUT) {
                        natsMsgList_Destroy(&list);
                        sleep_ms(50);
                        continue;
                }
                for (int i = 0; i < list.Count; i++) {
                        natsMsg *m = list.Msgs[i];
                        jsMsgMetaData *meta = NULL;
                        uint64_t delivered = 1;
                        enum verdict v;

                        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
                                delivered = meta->NumDelivered;
                                jsMsgMetaData_Destroy(meta);
                        }
                        v = handle(im, m, delivered);
                        if (v == FAILED)
                                break; /* unacknowledged: the stream delivers it again */
                        if (v != HOLD)
                                natsMsg_Ack(m, NULL);
                }
                natsMsgList_Destroy(&list);
        }
        return 0;
}

static void st_set_incarnation(struct bridge_run *run) {
        run->st->incarnation = run->chan->ring.ctl->created_ns;
}

void *bridge_import_thread(void *arg) {
        struct bridge_run *run = arg;
        struct importer im = {.b = run->b, .run = run, .st = run->st};
        int r;

        r = shmbus_pub_new(run->chan, &im.pub);
        if (r == 0) {
                /* Internal: mark what we commit, so that no export route sends it back out. */
                r = shmbus__pub_set_origin_mark(im.pub, true);
                if (r == -EPROTO)
                        bridge_log(
                                "import %s: the channel was made by an older libshmbus "
                                "(layout minor below 2) and cannot carry the origin mark; delete "
                                "and recreate it",
                                run->route->channel);
        }
        if (r == 0) {
                resolve_pending(&im);
                /* Internal: the channel's incarnation, which a pending claim belongs to. */
                st_set_incarnation(run);
                r = run->route->mode == BRIDGE_CORE ? run_core(&im) : run_jetstream(&im);
        }
        if (r < 0) {
                bridge_log("import %s -> %s stopped: %s", run->route->subject, run->route->channel,
                           shmbus_strerror(r));
                bridge_stat_add(&run->st->stats.errors, 1);
                atomic_store(&run->b->stop, true);
        }
        if (im.sub) {
                if (run->route->mode == BRIDGE_CORE)
                        natsSubscription_Unsubscribe(im.sub);
                natsSubscription_Destroy(im.sub);
        }
        shmbus_pub_free(im.pub);
        return NULL;
}
