/* SPDX-License-Identifier: MIT */
/*
 * The open op (docs/PROTOCOL.md): parse the request, find the channel or
 * create it (here, or off the loop for large ones: create.h), check the
 * peer's permission, and hand out the channel's descriptors. See op.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shmbus.h"

#include "broker.h"
#include "channel.h"
#include "create.h"
#include "grants.h"
#include "handover.h"
#include "integrity.h"
#include "json.h"
#include "log.h"
#include "meta.h"
#include "op.h"
#include "ops.h"
#include "peer.h"
#include "quota.h"
#include "stats.h"
#include "util.h"
#include "wire.h"

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

int op_open(struct broker *b, struct peer *p, const cJSON *req, struct op_result *res) {
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
                res->notify_fd = c->map->ring.notify_fd;
        }
        res->opened = c->name;
        return 0;
}
