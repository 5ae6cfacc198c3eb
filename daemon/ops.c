/* SPDX-License-Identifier: MIT */
/*
 * See ops.h. A handler fills a struct op_result: on success the reply and the
 * descriptors that go with it, on failure a message; it never sends.
 */
#include "ops.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shmbus.h"

#include "broker.h"
#include "channel.h"
#include "create.h"
#include "evict.h"
#include "grants.h"
#include "handover.h"
#include "integrity.h"
#include "json.h"
#include "log.h"
#include "meta.h"
#include "peer.h"
#include "quota.h"
#include "reply.h"
#include "stats.h"
#include "util.h"
#include "wire.h"

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

static void op_result_done(struct op_result *res) {
        cJSON_Delete(res->reply);
        shmbus__closep(&res->fds[0]);
        shmbus__closep(&res->fds[1]);
}

/* Fail with @code (-errno) and the message @fmt. Return: @code. */
__attribute__((format(printf, 3, 4))) static int op_fail(struct op_result *res, int code,
                                                         const char *fmt, ...) {
        va_list ap;

        assert(code < 0);
        va_start(ap, fmt);
        vsnprintf(res->message, sizeof(res->message), fmt, ap);
        va_end(ap);
        return code;
}

/* Park the request until the pending creation is over. */
static int op_park(struct broker *b, struct peer *p, struct op_result *res) {
        int r = create_park(b, p, res->text);

        return r < 0 ? op_fail(res, r, "out of memory") : OPS_E_PARKED;
}

/* The request's channel name, if it is a valid one. */
static const char *request_name(const cJSON *req) {
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

/* ---- open: parse the request, find or create the channel, check permission, hand out fds ---- */

struct open_request {
        const char *name;
        bool publish;
        const cJSON *create;  /* NULL, a bool, or an object of channel settings */
        bool accept_existing; /* an existing channel of other settings is fine */
        struct grants grants; /* the create object's, for a channel this open creates */
};

static int open_parse(const cJSON *req, struct open_request *ret, struct op_result *res) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(req, WIRE_ROLE);
        const cJSON *create = cJSON_GetObjectItemCaseSensitive(req, WIRE_CREATE);
        const char *name = request_name(req);
        const cJSON *accept;
        bool publish;

        if (!name)
                return op_fail(res, -EINVAL,
                               "\"%s\": 1 to %d of [A-Za-z0-9._-], not starting with '.'",
                               WIRE_NAME, SHMBUS_NAME_MAX);
        if (cJSON_IsString(role) && strcmp(role->valuestring, WIRE_ROLE_PUB) == 0)
                publish = true;
        else if (cJSON_IsString(role) && strcmp(role->valuestring, WIRE_ROLE_SUB) == 0)
                publish = false;
        else
                return op_fail(res, -EINVAL, "\"%s\": expected \"%s\" or \"%s\"", WIRE_ROLE,
                               WIRE_ROLE_PUB, WIRE_ROLE_SUB);
        if (create && !cJSON_IsObject(create) && !cJSON_IsBool(create))
                return op_fail(res, -EINVAL,
                               "\"%s\": expected true, false or an object of channel settings",
                               WIRE_CREATE);
        accept = cJSON_GetObjectItemCaseSensitive(req, WIRE_ACCEPT_EXISTING);
        if (accept && !cJSON_IsBool(accept))
                return op_fail(res, -EINVAL, "\"%s\": expected true or false",
                               WIRE_ACCEPT_EXISTING);
        *ret = (struct open_request){.name = name,
                                     .publish = publish,
                                     .create = create,
                                     .accept_existing = cJSON_IsTrue(accept)};
        if (cJSON_IsObject(create) && cJSON_GetObjectItemCaseSensitive(create, WIRE_GRANTS) &&
            grants_parse(cJSON_GetObjectItemCaseSensitive(create, WIRE_GRANTS),
                         WIRE_CREATE "." WIRE_GRANTS, &ret->grants, res->message,
                         sizeof(res->message)) < 0)
                return -EINVAL;
        return 0;
}

/* ", KEY HAVE (asked WANT)" for a setting the request asked differently, into @buf. */
static void geom_diff(char *buf, size_t size, const char *key, uint64_t have, uint64_t want,
                      const char *have_s, const char *want_s) {
        size_t n = strlen(buf);

        if (have == want || n >= size)
                return;
        if (have_s)
                snprintf(buf + n, size - n, "%s%s %s (asked %s)", n ? ", " : "", key, have_s,
                         want_s);
        else
                snprintf(buf + n, size - n, "%s%s %llu (asked %llu)", n ? ", " : "", key,
                         (unsigned long long)have, (unsigned long long)want);
}

/*
 * Honest create: an open that asks to create @c with settings it does not
 * have fails with EEXIST naming each difference, unless it accepts the
 * existing channel. Only the settings the request names are compared; a
 * config rule for the channel decides its settings in any case (CONFIG.md).
 */
static int open_check_existing(struct broker *b, const struct open_request *o, const struct chan *c,
                               struct op_result *res) {
        const struct shmbus_ring *r = &c->map->ring;
        struct shmbus_ring_geom g = b->cfg.defaults;
        char err[REPLY_MESSAGE_MAX], diff[REPLY_MESSAGE_MAX] = "";

        _cleanup_cjson_ cJSON *geom = NULL;

        if (!cJSON_IsObject(o->create) || o->accept_existing || config_rule(&b->cfg, o->name))
                return 0;
        /* Grants are not settings of the channel: whoever created it decided them. */
        geom = cJSON_Duplicate(o->create, true);
        if (!geom)
                return op_fail(res, -ENOMEM, "out of memory");
        cJSON_DeleteItemFromObjectCaseSensitive(geom, WIRE_GRANTS);
        if (config_parse_geom(geom, &g, WIRE_CREATE ".", err, sizeof(err)) < 0)
                return op_fail(res, -EINVAL, "%s", err);
        if (cJSON_GetObjectItemCaseSensitive(o->create, WIRE_CAPACITY))
                geom_diff(diff, sizeof(diff), WIRE_CAPACITY, r->size, g.data_size, NULL, NULL);
        if (cJSON_GetObjectItemCaseSensitive(o->create, WIRE_MAX_MSG))
                geom_diff(diff, sizeof(diff), WIRE_MAX_MSG, r->max_msg, g.max_msg, NULL, NULL);
        if (cJSON_GetObjectItemCaseSensitive(o->create, WIRE_POLICY))
                geom_diff(diff, sizeof(diff), WIRE_POLICY, r->policy, g.policy,
                          r->policy == SHMBUS_POLICY_BLOCK ? WIRE_POLICY_BLOCK
                                                           : WIRE_POLICY_OVERWRITE,
                          g.policy == SHMBUS_POLICY_BLOCK ? WIRE_POLICY_BLOCK
                                                          : WIRE_POLICY_OVERWRITE);
        if (cJSON_GetObjectItemCaseSensitive(o->create, WIRE_MAX_SUBSCRIBERS))
                geom_diff(diff, sizeof(diff), WIRE_MAX_SUBSCRIBERS, r->max_subs, g.max_subs, NULL,
                          NULL);
        if (cJSON_GetObjectItemCaseSensitive(o->create, WIRE_MAX_PUBLISHERS))
                geom_diff(diff, sizeof(diff), WIRE_MAX_PUBLISHERS, r->max_pubs, g.max_pubs, NULL,
                          NULL);
        if (!diff[0])
                return 0;
        return op_fail(res, -EEXIST,
                       "channel %s exists with other settings: %s; open it without them, accept "
                       "it as it is (%s), or delete it first",
                       o->name, diff, WIRE_ACCEPT_EXISTING);
}

/*
 * May @p grant what @o asks to? Only if the configuration lets it grant at all
 * ("grant"), and not for a role a rule of the configuration decides: a grant
 * may widen what the owner alone could do, never what the administrator said.
 */
static int create_check_grants(struct broker *b, struct peer *p, const struct open_request *o,
                               const struct channel_rule *rule, struct op_result *res) {
        const struct who w = peer_who(p);

        if (grants_is_empty(&o->grants))
                return 0;
        if (!acl_allows(&b->cfg.grant, &w)) {
                log_notice_f(LOG_FIELDS(.channel = o->name, LOGF_UID(p->uid), LOGF_PID(p->pid),
                                        .err = EACCES),
                             "denied: uid %u may not grant access to channel %s", p->uid, o->name);
                return op_fail(res, -EACCES,
                               "uid %u may not grant others access to channels (\"grant\" in "
                               "shmbusd's configuration)",
                               p->uid);
        }
        if (rule && rule->has_publish && !acl_is_empty(&o->grants.publish))
                return op_fail(res, -EACCES,
                               "channel %s: shmbusd's configuration says who may publish; a "
                               "grant cannot change that",
                               o->name);
        if (rule && rule->has_subscribe && !acl_is_empty(&o->grants.subscribe))
                return op_fail(res, -EACCES,
                               "channel %s: shmbusd's configuration says who may subscribe; a "
                               "grant cannot change that",
                               o->name);
        return 0;
}

/* Record who owns @c, what it grants and its timeout, for the next daemon to adopt it with. */
static int create_save_meta(struct broker *b, const struct chan *c, int ctl_fd, int data_fd) {
        struct stat ctl, data;
        struct meta m = {.owner = c->owner,
                         .group = c->group,
                         .grants = c->grants,
                         .has_slow_subscriber_timeout = c->has_slow_subscriber_timeout,
                         .slow_subscriber_timeout_ms = c->slow_subscriber_timeout_ms};

        if (fstat(ctl_fd, &ctl) < 0 || fstat(data_fd, &data) < 0)
                return -errno;
        m.ctl_ino = ctl.st_ino;
        m.data_ino = data.st_ino;
        return meta_save(b->shm_dirfd, c->name, &m);
}

int ops_register_created(struct broker *b, const char *name, int ctl_fd, int data_fd, uid_t uid,
                         gid_t gid, const struct grants *grants, bool has_slow, uint32_t slow_ms,
                         struct chan **ret_chan, char *msg, size_t size) {
        struct chan *c;
        int r;

        r = registry_add(&b->channels, name, ctl_fd, data_fd, uid, gid, &c);
        if (r < 0) {
                shmbus__channel_unlink_at(b->shm_dirfd, name);
                snprintf(msg, size, "cannot map channel: %s", shmbus_strerror(r));
                return r;
        }
        c->grants = *grants;
        c->has_slow_subscriber_timeout = has_slow;
        c->slow_subscriber_timeout_ms = slow_ms;
        /* No channel without its owner's record: a restart would give it to the daemon. */
        r = create_save_meta(b, c, ctl_fd, data_fd);
        if (r < 0) {
                log_err_f(LOG_FIELDS(.channel = name, .err = -r),
                          "channel %s: cannot write its meta file: %s", name, strerror(-r));
                registry_remove(&b->channels, c);
                shmbus__channel_unlink_at(b->shm_dirfd, name);
                snprintf(msg, size, "cannot record the channel's owner: %s", shmbus_strerror(r));
                return r;
        }
        *ret_chan = c;
        return 0;
}

/*
 * Create channel @o->name for @p, if the request asks to and @p may: with the
 * geometry of its config rule, else that of the request, else the defaults.
 * The descriptors it was created with go to @res, to be handed out. A large
 * channel is created off the event loop (create.h): the request is parked.
 */
static int open_create(struct broker *b, struct peer *p, const struct open_request *o,
                       struct op_result *res, struct chan **ret_chan) {
        const struct channel_rule *rule = config_rule(&b->cfg, o->name);
        struct shmbus_ring_geom g = rule ? rule->geom : b->cfg.defaults;
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        char err[REPLY_MESSAGE_MAX];
        uint64_t bytes, pending_bytes;
        uint32_t pending_channels;
        bool has_slow = false;
        uint32_t slow_ms = 0;
        int r;

        if (!o->create || cJSON_IsFalse(o->create))
                return op_fail(res, -ENOENT, "no channel %s", o->name);
        const struct who w = peer_who(p);

        if (!acl_allows(&b->cfg.create, &w)) {
                log_notice_f(LOG_FIELDS(.channel = o->name, LOGF_UID(p->uid), LOGF_PID(p->pid),
                                        .err = EACCES),
                             "denied: uid %u may not create channel %s", p->uid, o->name);
                return op_fail(res, -EACCES, "uid may not create channels (channel %s)", o->name);
        }
        if (b->channels.n_chans + create_pending(b, NULL) >= b->cfg.max_channels)
                return op_fail(res, -EUSERS, "channel limit reached, not creating %s", o->name);
        if (cJSON_IsObject(o->create) && !rule) {
                /* The grants beside the geometry are open_parse()'s. */
                _cleanup_cjson_ cJSON *geom = cJSON_Duplicate(o->create, true);

                if (!geom)
                        return op_fail(res, -ENOMEM, "out of memory");
                cJSON_DeleteItemFromObjectCaseSensitive(geom, WIRE_GRANTS);
                if (config_parse_geom(geom, &g, WIRE_CREATE ".", err, sizeof(err)) < 0)
                        return op_fail(res, -EINVAL, "%s", err);
        }
        if (cJSON_IsObject(o->create) &&
            config_parse_slow_subscriber_timeout(o->create, WIRE_CREATE ".", &has_slow, &slow_ms,
                                                 err, sizeof(err)) < 0)
                return op_fail(res, -EINVAL, "%s", err);
        r = create_check_grants(b, p, o, rule, res);
        if (r < 0)
                return r;
        bytes = shmbus__ring_ctl_size(g.max_subs, g.max_pubs) + g.data_size;
        create_pending_use(b, p->uid, &pending_channels, &pending_bytes);
        r = quota_check(&b->cfg, &b->channels, p->uid, bytes, pending_channels, pending_bytes, err,
                        sizeof(err));
        if (r < 0) {
                log_notice_f(LOG_FIELDS(.channel = o->name, LOGF_UID(p->uid)),
                             "denied: uid %u may not create channel %s: %s", p->uid, o->name, err);
                return op_fail(res, r, "not creating %s: %s", o->name, err);
        }
        if (bytes >= CREATE_ASYNC_MIN_BYTES) {
                /* One large creation at a time; this request waits its turn. */
                if (create_pending(b, NULL))
                        return op_park(b, p, res);
                r = create_start(b, p, o->name, &g, bytes, &o->grants, has_slow, slow_ms,
                                 res->text);
                if (r < 0)
                        return op_fail(res, r, "cannot start creating channel %s: %s", o->name,
                                       shmbus_strerror(r));
                return OPS_E_PARKED;
        }
        r = shmbus__channel_create_at(b->shm_dirfd, o->name, &g, 0600, &ctl_fd, &data_fd);
        if (r == -EEXIST) {
                /* Files nobody serves: say whose they are and what to run, not "File exists". */
                handover_explain_stranded(b->cfg.shm_dir, o->name, res->message,
                                          sizeof(res->message));
                log_warn_f(LOG_FIELDS(.channel = o->name, .err = EEXIST), "%s", res->message);
                return r;
        }
        if (r < 0)
                return op_fail(res, r, "cannot create channel: %s", shmbus_strerror(r));
        r = ops_register_created(b, o->name, ctl_fd, data_fd, p->uid, p->gid, &o->grants, has_slow,
                                 slow_ms, ret_chan, res->message, sizeof(res->message));
        if (r < 0)
                return r;
        log_info_f(LOG_FIELDS(.channel = o->name, LOGF_UID(p->uid), LOGF_PID(p->pid)),
                   "channel %s created by uid %u pid %d", o->name, p->uid, (int)p->pid);
        res->fds[0] = TAKE_FD(ctl_fd);
        res->fds[1] = TAKE_FD(data_fd);
        return 0;
}

/* May @p use @c in the role it asks for? Config rules first, then the owner and its grants. */
static int open_check_permission(struct broker *b, struct peer *p, const struct chan *c,
                                 bool publish, struct op_result *res) {
        const struct channel_rule *rule = config_rule(&b->cfg, c->name);
        const struct who w = peer_who(p);
        bool allowed;

        if (p->uid == 0)
                allowed = true;
        else if (rule && publish && rule->has_publish)
                allowed = acl_allows(&rule->publish, &w);
        else if (rule && !publish && rule->has_subscribe)
                allowed = acl_allows(&rule->subscribe, &w);
        else
                allowed = p->uid == c->owner || grants_allow(&c->grants, publish, &w);
        if (allowed)
                return 0;
        log_notice_f(
                LOG_FIELDS(.channel = c->name, LOGF_UID(p->uid), LOGF_PID(p->pid), .err = EACCES),
                "denied: uid %u pid %d may not %s channel %s", p->uid, (int)p->pid,
                publish ? "publish on" : "subscribe to", c->name);
        return op_fail(res, -EACCES, "permission denied on channel %s", c->name);
}

/* A read-only descriptor of the file open as @fd (not by name: it is the same file). */
static int fd_reopen_read_only(int fd) {
        char path[64];
        int r;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        r = open(path, O_RDONLY | O_CLOEXEC);
        return r < 0 ? -errno : r;
}

/*
 * The descriptors to hand out: read-only data for subscribers, so they cannot
 * forge messages. A channel just created is handed out through the descriptors
 * it was created with; any other has its files opened afresh.
 */
static int open_fds(struct broker *b, const struct chan *c, bool publish, struct op_result *res) {
        int r;

        if (res->fds[0] >= 0) {
                if (publish)
                        return 0;
                r = fd_reopen_read_only(res->fds[1]);
                if (r < 0) {
                        log_warn("channel %s: cannot reopen its data read-only: %s", c->name,
                                 strerror(-r));
                        return op_fail(res, r, "channel files unavailable: %s", strerror(-r));
                }
                shmbus__closep(&res->fds[1]);
                res->fds[1] = r;
                return 0;
        }
        r = shmbus__channel_open_at(b->shm_dirfd, c->name, publish ? SHMBUS_OPEN_PUBLISH : 0,
                                    &res->fds[0], &res->fds[1]);
        if (r < 0) {
                if (r == -ENOENT)
                        log_err("channel %s: files vanished from %s", c->name, b->cfg.shm_dir);
                else
                        log_warn("channel %s: cannot open its files: %s", c->name, strerror(-r));
                return op_fail(res, r, "channel files unavailable: %s", strerror(-r));
        }
        return 0;
}

/*
 * A create that finds the channel made by another user. Names are first come,
 * first served, and a grant can admit anyone: a user who took the name first
 * and granted "any" would otherwise receive, as an ordinary success, the
 * messages of whoever meant to create that channel for itself. Asking to
 * create means "mine": only the owner, root, and those a rule of the
 * configuration admits (the administrator chose) get an existing channel so;
 * a grantee opens it without create.
 */
static int open_check_not_taken(struct broker *b, struct peer *p, const struct chan *c,
                                const struct open_request *o, struct op_result *res) {
        const struct channel_rule *rule = config_rule(&b->cfg, c->name);

        if (!o->create || cJSON_IsFalse(o->create) || p->uid == 0 || p->uid == c->owner ||
            (rule && (o->publish ? rule->has_publish : rule->has_subscribe)))
                return 0;
        log_notice_f(
                LOG_FIELDS(.channel = c->name, LOGF_UID(p->uid), LOGF_PID(p->pid), .err = EEXIST),
                "uid %u pid %d asked to create channel %s, which uid %u created: refused", p->uid,
                (int)p->pid, c->name, c->owner);
        return op_fail(res, -EEXIST,
                       "channel %s exists and belongs to uid %u; to use it as its grantee, open "
                       "it without create",
                       c->name, c->owner);
}

static int op_open(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
        struct open_request o = {0};
        struct chan *c;
        bool created = false;
        int r;

        r = open_parse(req, &o, res);
        if (r < 0)
                return r;
        c = registry_find(&b->channels, o.name);
        /* A channel a member damaged is dropped here, and made afresh if the request asks. */
        if (c && integrity_check(b, c) < 0)
                c = NULL;
        if (!c && create_pending(b, o.name))
                return op_park(b, p, res);
        if (!c) {
                r = open_create(b, p, &o, res, &c);
                if (r != 0)
                        return r;
                created = true;
        } else {
                r = open_check_not_taken(b, p, c, &o, res);
                if (r == 0)
                        r = open_check_existing(b, &o, c, res);
                if (r < 0)
                        return r;
        }
        /* Created off the loop for this very request, which is now served again. */
        if (strcmp(p->created, c->name) == 0)
                created = true;
        p->created[0] = '\0';
        r = open_check_permission(b, p, c, o.publish, res);
        if (r < 0)
                return r;
        r = open_fds(b, c, o.publish, res);
        if (r < 0)
                return r;
        res->reply = reply_new(true);
        shmbus__stats_geometry_json(res->reply, &c->map->ring, c->name, c->owner);
        if (grants_add_json(res->reply, WIRE_GRANTS, &c->grants) < 0)
                return op_fail(res, -ENOMEM, "out of memory");
        cJSON_AddBoolToObject(res->reply, WIRE_CREATED, created);
        cJSON_AddStringToObject(res->reply, WIRE_ROLE, o.publish ? WIRE_ROLE_PUB : WIRE_ROLE_SUB);
        cJSON_AddNumberToObject(res->reply, WIRE_PID, p->pid);
        if (c->map->ring.notify_gen >= 2) {
                cJSON_AddNumberToObject(res->reply, WIRE_NOTIFY_GEN, c->map->ring.notify_gen);
                res->notify_fd = c->map->notify_fd;
        }
        res->opened = c->name;
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
