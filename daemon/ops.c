/* SPDX-License-Identifier: MIT */
/*
 * See ops.h and op.h: the dispatch, and every op but open (open.c).
 */
#include "ops.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "shmbus.h"

#include "broker.h"
#include "channel.h"
#include "create.h"
#include "evict.h"
#include "grants.h"
#include "json.h"
#include "log.h"
#include "op.h"
#include "peer.h"
#include "quota.h"
#include "reply.h"
#include "stats.h"
#include "util.h"
#include "wire.h"

static void op_result_done(struct op_result *res) {
        cJSON_Delete(res->reply);
        shmbus__closep(&res->fds[0]);
        shmbus__closep(&res->fds[1]);
}

int op_fail(struct op_result *res, int code, const char *fmt, ...) {
        va_list ap;

        assert(code < 0);
        va_start(ap, fmt);
        vsnprintf(res->message, sizeof(res->message), fmt, ap);
        va_end(ap);
        return code;
}

int op_park(struct broker *b, struct peer *p, struct op_result *res) {
        int r = create_park(b, p, res->text);

        return r < 0 ? op_fail(res, r, "out of memory") : OPS_E_PARKED;
}

const char *request_name(const cJSON *req) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(req, WIRE_NAME);

        return cJSON_IsString(n) && shmbus__name_is_valid(n->valuestring) ? n->valuestring : NULL;
}

/* The existing channel a request names. */
static int request_chan(struct broker *b, const cJSON *req, struct op_result *res,
                        struct chan **ret_chan) {
        const char *name = request_name(req);
        struct chan *c;

        if (!name)
                return op_fail(res, -EINVAL, "\"%s\": not a valid channel name", WIRE_NAME);
        c = registry_find(&b->channels, name);
        if (!c)
                return op_fail(res, -ENOENT, "no channel %s", name);
        *ret_chan = c;
        return 0;
}

static int op_hello(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        res->reply = reply_new(true);
        cJSON_AddStringToObject(res->reply, WIRE_SERVER_VERSION, PACKAGE_VERSION);
        cJSON_AddNumberToObject(res->reply, WIRE_PROTOCOL, WIRE_VERSION);
        cJSON_AddStringToObject(res->reply, WIRE_SHM_DIR, b->cfg.shm_dir);
        cJSON_AddNumberToObject(res->reply, WIRE_UNBLOCK_TIMEOUT_MS, b->cfg.unblock_timeout_ms);
        return 0;
}

static int op_close(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        const char *name = request_name(req);

        if (!name)
                return op_fail(res, -EINVAL, "\"%s\": not a valid channel name", WIRE_NAME);
        peer_forget(p, name);
        res->reply = reply_new(true);
        return 0;
}

static int op_list(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        cJSON *arr;

        res->reply = reply_new(true);
        arr = cJSON_AddArrayToObject(res->reply, WIRE_CHANNELS);
        for (unsigned i = 0; i < b->channels.n_chans; i++) {
                const struct chan *c = b->channels.chans[i];
                cJSON *o = cJSON_CreateObject();

                shmbus__stats_json(o, &c->map->ring, c->name, c->owner, false);
                cJSON_AddItemToArray(arr, o);
        }
        quota_json_uids(res->reply, &b->cfg, &b->channels);
        return 0;
}

static int op_stat(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        struct chan *c;
        int r;

        r = request_chan(b, req, res, &c);
        if (r < 0)
                return r;
        res->reply = reply_new(true);
        shmbus__stats_json(res->reply, &c->map->ring, c->name, c->owner, true);
        quota_json_owner(res->reply, &b->cfg, &b->channels, c->owner);
        if (grants_add_json(res->reply, WIRE_GRANTS, &c->grants) < 0)
                return op_fail(res, -ENOMEM, "out of memory");
        /* The timeout in force: the channel rule's, the create request's, or the default. */
        cJSON_AddNumberToObject(res->reply, WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS,
                                evict_timeout_ms(b, c));
        return 0;
}

static int op_delete(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        char name[SHMBUS_NAME_MAX + 1];
        struct chan *c;
        int r;

        r = request_chan(b, req, res, &c);
        if (r < 0)
                return r;
        if (p->uid != 0 && p->uid != c->owner) {
                log_notice_f(LOG_FIELDS(.channel = c->name, LOGF_UID(p->uid), LOGF_PID(p->pid),
                                        .err = EACCES),
                             "denied: uid %u may not delete channel %s", p->uid, c->name);
                return op_fail(res, -EACCES, "only the owner or root may delete channel %s",
                               c->name);
        }
        /*
         * Members keep their mappings, but the channel is over for them: mark
         * it before the name goes (a member that finds the name gone, or a new
         * channel under it, has seen the mark) and wake every sleeper to look.
         */
        snprintf(name, sizeof(name), "%s", c->name);
        atomic_store_explicit(&c->map->ring.ctl->deleted, SHMBUS_CTL_DELETED, memory_order_seq_cst);
        shmbus__ring_wake_all(&c->map->ring);
        shmbus__channel_unlink_at(b->shm_dirfd, name);
        registry_remove(&b->channels, c);
        for (unsigned i = 0; i < b->n_peers; i++)
                peer_forget(b->peers[i], name);
        log_info_f(LOG_FIELDS(.channel = name, LOGF_UID(p->uid), LOGF_PID(p->pid)),
                   "channel %s deleted by uid %u", name, p->uid);
        res->reply = reply_new(true);
        return 0;
}

static op_fn op_stats;

static const struct {
        const char *name;
        op_fn *fn;
} ops[] = {
        {WIRE_OP_HELLO, op_hello}, {WIRE_OP_OPEN, op_open}, {WIRE_OP_CLOSE, op_close},
        {WIRE_OP_LIST, op_list},   {WIRE_OP_STAT, op_stat}, {WIRE_OP_DELETE, op_delete},
        {WIRE_OP_STATS, op_stats},
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))
/* One counter per op, and one more for requests that name none of them. */
static_assert(N_OPS < BROKER_OPS_COUNTED, "raise BROKER_OPS_COUNTED");

/*
 * The daemon's counters. Anyone who may connect may ask: they are totals over
 * all clients (no names, uids or pids), and "list" already shows more.
 */
static int op_stats(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        const struct broker_counters *k = &b->counters;
        const struct registry_counters *rc = &b->channels.counts;
        cJSON *requests;

        res->reply = reply_new(true);
        cJSON_AddStringToObject(res->reply, WIRE_SERVER_VERSION, PACKAGE_VERSION);
        cJSON_AddNumberToObject(res->reply, WIRE_UPTIME_MS,
                                (double)((shmbus__now_ns() - k->started_ns) / 1000000));
        cJSON_AddNumberToObject(res->reply, WIRE_CONNECTIONS, b->n_peers - b->n_refusing);
        cJSON_AddNumberToObject(res->reply, WIRE_CONNECTIONS_ACCEPTED, (double)k->accepted);
        cJSON_AddNumberToObject(res->reply, WIRE_CONNECTIONS_REFUSED, (double)k->refused);
        cJSON_AddNumberToObject(res->reply, WIRE_CHANNELS_ADOPTED, (double)rc->adopted);
        cJSON_AddNumberToObject(res->reply, WIRE_CHANNELS_NOT_ADOPTED, (double)rc->not_adopted);
        cJSON_AddNumberToObject(res->reply, WIRE_SLOTS_RELEASED, (double)rc->released);
        cJSON_AddNumberToObject(res->reply, WIRE_CLAIMS_UNBLOCKED, (double)rc->unblocked);
        requests = cJSON_AddObjectToObject(res->reply, WIRE_REQUESTS);
        for (size_t i = 0; i < N_OPS; i++)
                cJSON_AddNumberToObject(requests, ops[i].name, (double)k->requests[i]);
        cJSON_AddNumberToObject(requests, WIRE_REQUESTS_OTHER, (double)k->requests[N_OPS]);
        cJSON_AddNumberToObject(res->reply, WIRE_REQUESTS_FAILED, (double)k->failed);
        return 0;
}

/* Parse @text, check the envelope, and run the op it names (counted: requests[N_OPS] if none). */
static int op_run(struct broker *b, struct peer *p, const char *text, struct op_result *res) {
        _cleanup_cjson_ cJSON *req = cJSON_Parse(text);
        const cJSON *op, *v;

        b->counters.requests[N_OPS]++;
        if (!req || !cJSON_IsObject(req))
                return op_fail(res, -EINVAL, "request is not a JSON object");
        v = cJSON_GetObjectItemCaseSensitive(req, WIRE_V);
        op = cJSON_GetObjectItemCaseSensitive(req, WIRE_OP);
        if (v && (!cJSON_IsNumber(v) || v->valueint != WIRE_VERSION))
                return op_fail(res, -EPROTO, "unsupported protocol version (this daemon speaks %d)",
                               WIRE_VERSION);
        if (!cJSON_IsString(op))
                return op_fail(res, -EINVAL, "\"%s\": missing or not a string", WIRE_OP);
        for (size_t i = 0; i < N_OPS; i++) {
                if (strcmp(op->valuestring, ops[i].name) == 0) {
                        b->counters.requests[N_OPS]--;
                        b->counters.requests[i]++;
                        return ops[i].fn(b, p, req, res);
                }
        }
        return op_fail(res, -EOPNOTSUPP, "unknown op \"%s\"", op->valuestring);
}

void ops_count_rejected(struct broker *b) {
        b->counters.requests[N_OPS]++;
        b->counters.failed++;
}

int ops_dispatch(struct broker *b, struct peer *p, const char *text) {
        _cleanup_(op_result_done) struct op_result res = {
                .text = text, .fds = {-1, -1}, .notify_fd = -1};
        int r;

        r = op_run(b, p, text, &res);
        if (r == OPS_E_PARKED)
                return 0;
        if (r < 0) {
                b->counters.failed++;
                return reply_send_error(p->fd, r, res.message);
        }
        assert((res.fds[0] >= 0) == (res.fds[1] >= 0));
        assert(res.notify_fd < 0 || res.fds[0] >= 0);
        r = reply_send(p->fd, TAKE_PTR(res.reply),
                       (const int[]){res.fds[0], res.fds[1], res.notify_fd},
                       res.fds[0] < 0      ? 0
                       : res.notify_fd < 0 ? 2
                                           : 3);
        if (r == 0 && res.opened)
                peer_note_open(p, res.opened);
        return r;
}
