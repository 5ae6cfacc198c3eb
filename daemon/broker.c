/* SPDX-License-Identifier: MIT */
/*
 * The broker. Invariants:
 *   - Every channel in the shm directory that validates is in b->channels;
 *     files that do not validate are logged and left alone.
 *   - Every peer holds a pidfd of its process; when the process dies, the slots
 *     it held in every channel it opened are released (waking blocked
 *     publishers), whether or not it closed its connection first.
 *   - Every resource a client can make the broker allocate is bounded:
 *     connections, channels, request size, channels opened per peer.
 * Protocol: docs/PROTOCOL.md.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "shmbus.h"

#include "broker.h"
#include "channel.h"
#include "log.h"
#include "layout.h"
#include "stats.h"
#include "util.h"

#define REQUEST_MAX       65536
#define PEER_CHANNELS_MAX 64
#define SWEEP_INTERVAL_MS 100
#define ACCEPT_RETRY_MS   100

struct chan {
        char name[SHMBUS_NAME_MAX + 1];
        shmbus_channel *map;
        uid_t owner;
        gid_t group;
        /* For unblock: what each subscriber slot is stuck on, and since when. */
        struct stuck *stuck;
        /* Slots seen active without an owner pid in the last sweep (subs, then pubs). */
        bool *orphan;
};

struct stuck {
        uint64_t pos;
        uint64_t stamp;
        int64_t since; /* 0: not stuck */
        bool warned;   /* told the log a live publisher holds the claim */
};

struct peer {
        struct broker *broker;
        int fd;
        int pidfd;
        struct event *ev;
        struct event *pid_ev;
        pid_t pid;
        uid_t uid;
        gid_t gid;
        bool refuse; /* over a connection limit: answer the first request EUSERS, then close */
        struct event *deadline_ev; /* first_request_timeout_ms, until the first request */
        unsigned n_open;
        char open[PEER_CHANNELS_MAX][SHMBUS_NAME_MAX + 1];
};

struct broker {
        struct event_base *base;
        struct config cfg;
        int listen_fd;
        struct event *listen_ev;
        struct event *sweep_ev;
        struct event *accept_retry_ev; /* re-arms accepting after running out of descriptors */
        bool accept_starved;           /* accept is failing for want of descriptors (logged) */
        struct chan **channels;
        unsigned n_channels;
        struct peer **peers;
        unsigned n_peers;
        unsigned n_refusing;
};

/* Connections over the limit held just long enough to be told why (a close with
 * their request unread would reset them and lose the reply). */
#define REFUSING_MAX 16

/* ---- channels --------------------------------------------------------------------------- */

static struct chan *chan_free(struct chan *c) {
        if (!c)
                return NULL;
        shmbus_channel_unref(c->map);
        free(c->stuck);
        free(c->orphan);
        free(c);
        return NULL;
}

static struct chan *chan_find(struct broker *b, const char *name) {
        for (unsigned i = 0; i < b->n_channels; i++)
                if (strcmp(b->channels[i]->name, name) == 0)
                        return b->channels[i];
        return NULL;
}

static int chan_add(struct broker *b, const char *name, int ctl_fd, int data_fd, uid_t owner,
                    gid_t group) {
        struct chan *c;
        struct chan **arr;
        uint32_t subs;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = shmbus__channel_map(ctl_fd, data_fd, SHMBUS_OPEN_PUBLISH, &c->map);
        if (r < 0) {
                free(c);
                return r;
        }
        snprintf(c->name, sizeof(c->name), "%s", name);
        c->owner = owner;
        c->group = group;
        subs = c->map->ring.max_subs;
        c->stuck = calloc(subs, sizeof(*c->stuck));
        c->orphan = calloc((size_t)subs + c->map->ring.max_pubs, sizeof(*c->orphan));
        arr = reallocarray(b->channels, b->n_channels + 1, sizeof(*arr));
        if (!c->stuck || !c->orphan || !arr) {
                if (arr)
                        b->channels = arr;
                chan_free(c);
                return -ENOMEM;
        }
        b->channels = arr;
        b->channels[b->n_channels++] = c;
        return 0;
}

static void chan_remove(struct broker *b, struct chan *c) {
        for (unsigned i = 0; i < b->n_channels; i++) {
                if (b->channels[i] == c) {
                        b->channels[i] = b->channels[--b->n_channels];
                        break;
                }
        }
        chan_free(c);
}

/* Re-adopt channels a previous daemon left in the shm directory. */
static void adopt_existing(struct broker *b) {
        DIR *d = opendir(b->cfg.shm_dir);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                char name[SHMBUS_NAME_MAX + 1];
                int ctl_fd = -1, data_fd = -1, r;
                struct stat st;

                if (!shmbus__channel_name_of_file(de->d_name, name) || chan_find(b, name))
                        continue;
                if (b->n_channels >= b->cfg.max_channels) {
                        log_warn("channel %s not adopted: max_channels (%u) reached", name,
                                 b->cfg.max_channels);
                        continue;
                }
                r = shmbus__channel_open_fds(b->cfg.shm_dir, name, SHMBUS_OPEN_PUBLISH, &ctl_fd,
                                             &data_fd);
                if (r == 0 && fstat(ctl_fd, &st) < 0)
                        r = -errno;
                if (r == 0)
                        r = chan_add(b, name, ctl_fd, data_fd, st.st_uid, st.st_gid);
                if (ctl_fd >= 0)
                        close(ctl_fd);
                if (data_fd >= 0)
                        close(data_fd);
                if (r < 0)
                        log_warn("channel %s in %s not adopted: %s", name, b->cfg.shm_dir,
                                 shmbus_strerror(r));
                else
                        log_info("adopted channel %s", name);
        }
        closedir(d);
}

/* ---- liveness and repair ------------------------------------------------------------------ */

/*
 * Is the process still running? A zombie is not: it has exited and will never
 * touch its slots again, even though kill(pid, 0) still succeeds on it.
 */
static bool pid_alive(pid_t pid) {
        char path[64], buf[256], *paren;
        ssize_t n;
        int fd;

        if (pid <= 0)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? false : (kill(pid, 0) == 0 || errno == EPERM);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        /* "pid (comm) S ...": the state follows the last ')', comm may contain anything. */
        paren = strrchr(buf, ')');
        return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* Release every slot held by @pid (which has died) in @c. */
static unsigned chan_reap_pid(struct chan *c, pid_t pid) {
        struct shmbus_ring *r = &c->map->ring;
        unsigned n = 0;

        for (uint32_t i = 0; i < r->max_subs; i++) {
                if (atomic_load(&r->subs[i].state) == SHMBUS_SLOT_ACTIVE &&
                    (pid_t)atomic_load(&r->subs[i].pid) == pid) {
                        shmbus__ring_sub_slot_release(r, i);
                        n++;
                }
        }
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                if (atomic_load(&r->pubs[i].state) == SHMBUS_SLOT_ACTIVE &&
                    (pid_t)atomic_load(&r->pubs[i].pid) == pid) {
                        shmbus__ring_pub_slot_release(r, i);
                        n++;
                }
        }
        return n;
}

/*
 * Is slot @i (subscribers first, then publishers) active with no owner, for
 * the second sweep running? Join sets the pid before the state and release
 * clears the state before the pid, so that is never a moment of a join or a
 * release: only a member scribbling on ctl makes it, and it would hold
 * publishers of a block channel back for good.
 */
static bool chan_orphan(struct chan *c, uint32_t i, _Atomic uint32_t *state,
                        _Atomic uint32_t *pid) {
        bool orphan = atomic_load(state) == SHMBUS_SLOT_ACTIVE && atomic_load(pid) == 0;
        bool twice = orphan && c->orphan[i];

        c->orphan[i] = orphan && !twice;
        if (twice)
                log_warn("channel %s: released %s slot %u, active without an owner (damaged by "
                         "a member?)",
                         c->name, i < c->map->ring.max_subs ? "subscriber" : "publisher",
                         i < c->map->ring.max_subs ? i : i - c->map->ring.max_subs);
        return twice;
}

/*
 * Periodic repair: release slots of processes that no longer exist (also those
 * of clients of a previous daemon), and pad over claims that have kept a
 * subscriber waiting, unchanged, for the whole unblock timeout and whose
 * writer is dead. Publishers go first, so that a claim of a publisher found
 * dead in this sweep can be padded over in this sweep too.
 */
static void chan_sweep(struct broker *b, struct chan *c, int64_t now) {
        struct shmbus_ring *r = &c->map->ring;
        int64_t timeout = (int64_t)b->cfg.unblock_timeout_ms * 1000000;

        for (uint32_t i = 0; i < r->max_pubs; i++) {
                struct shmbus_pub_slot *p = &r->pubs[i];
                uint32_t owner = atomic_load(&p->pid);

                if (owner && !pid_alive((pid_t)owner)) {
                        log_info("channel %s: released publisher slot %u of dead pid %u", c->name,
                                 i, owner);
                        shmbus__ring_pub_slot_release(r, i);
                        shmbus__ring_slot_clear_pid(&p->pid, owner);
                } else if (chan_orphan(c, r->max_subs + i, &p->state, &p->pid)) {
                        shmbus__ring_pub_slot_release(r, i);
                }
        }
        for (uint32_t i = 0; i < r->max_subs; i++) {
                struct shmbus_sub_slot *s = &r->subs[i];
                struct stuck *st = &c->stuck[i];
                uint32_t owner = atomic_load(&s->pid);
                uint64_t pos, stamp;
                int ret;

                if (owner && !pid_alive((pid_t)owner)) {
                        log_info("channel %s: released subscriber slot %u of dead pid %u", c->name,
                                 i, owner);
                        shmbus__ring_sub_slot_release(r, i);
                        shmbus__ring_slot_clear_pid(&s->pid, owner);
                        st->since = 0;
                        continue;
                }
                if (chan_orphan(c, i, &s->state, &s->pid)) {
                        shmbus__ring_sub_slot_release(r, i);
                        st->since = 0;
                        continue;
                }
                if (atomic_load(&s->state) != SHMBUS_SLOT_ACTIVE) {
                        st->since = 0;
                        continue;
                }
                pos = atomic_load(&s->pos);
                if (!shmbus__ring_pending(r, pos, &stamp)) {
                        st->since = 0;
                        continue;
                }
                if (st->since == 0 || st->pos != pos || st->stamp != stamp) {
                        *st = (struct stuck){.pos = pos, .stamp = stamp, .since = now};
                        continue;
                }
                if (now - st->since < timeout)
                        continue;
                ret = shmbus__ring_unblock(r, pos);
                if (ret > 0) {
                        log_warn("channel %s: padded over a claim at position %llu whose writer "
                                 "died before committing it",
                                 c->name, (unsigned long long)pos);
                        st->since = 0;
                } else if (ret == -EBUSY && !st->warned) {
                        log_warn("channel %s: subscribers have waited %u ms on a claim at "
                                 "position %llu held by live pid %u (stopped or hung?); it is "
                                 "padded over only once that process is gone",
                                 c->name, b->cfg.unblock_timeout_ms, (unsigned long long)pos,
                                 shmbus__ring_claim_owner(r, pos));
                        st->warned = true;
                }
        }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
        struct broker *b = arg;
        int64_t now = shmbus__now_ns();

        for (unsigned i = 0; i < b->n_channels; i++)
                chan_sweep(b, b->channels[i], now);
}

/* ---- peers ------------------------------------------------------------------------------ */

static void peer_free(struct peer *p) {
        struct broker *b = p->broker;

        for (unsigned i = 0; i < b->n_peers; i++) {
                if (b->peers[i] == p) {
                        b->peers[i] = b->peers[--b->n_peers];
                        break;
                }
        }
        if (p->refuse)
                b->n_refusing--;
        if (p->ev)
                event_free(p->ev);
        if (p->deadline_ev)
                event_free(p->deadline_ev);
        if (p->pid_ev)
                event_free(p->pid_ev);
        if (p->fd >= 0)
                close(p->fd);
        if (p->pidfd >= 0)
                close(p->pidfd);
        free(p);
}

/* The process behind @p has exited: release what it held, everywhere it was. */
static void peer_reap(struct peer *p) {
        struct broker *b = p->broker;

        for (unsigned i = 0; i < p->n_open; i++) {
                struct chan *c = chan_find(b, p->open[i]);
                unsigned n;

                if (!c)
                        continue;
                n = chan_reap_pid(c, p->pid);
                if (n)
                        log_info("channel %s: released %u slot(s) of exited pid %d", c->name, n,
                                 (int)p->pid);
        }
        p->n_open = 0;
}

/* The client process exited (possibly before its socket is closed): release at once. */
static void on_pid_exit(evutil_socket_t fd, short what, void *arg) {
        struct peer *p = arg;

        peer_reap(p);
        event_del(p->pid_ev);
}

static bool peer_has_open(const struct peer *p, const char *name) {
        for (unsigned i = 0; i < p->n_open; i++)
                if (strcmp(p->open[i], name) == 0)
                        return true;
        return false;
}

/*
 * Remember that @p uses channel @name, so that its slots there are released
 * the moment its process exits. The table is bounded; a channel that does not
 * fit is still served, and its slots of a dead process are released by the
 * periodic sweep instead (at most SWEEP_INTERVAL_MS later).
 */
static void peer_note_open(struct peer *p, const char *name) {
        if (peer_has_open(p, name) || p->n_open >= PEER_CHANNELS_MAX)
                return;
        snprintf(p->open[p->n_open++], sizeof(p->open[0]), "%s", name);
}

static void peer_forget(struct peer *p, const char *name) {
        for (unsigned i = 0; i < p->n_open; i++) {
                if (strcmp(p->open[i], name) == 0) {
                        memcpy(p->open[i], p->open[--p->n_open], sizeof(p->open[0]));
                        return;
                }
        }
}

static int send_reply(struct peer *p, cJSON *reply, const int *fds, unsigned n_fds) {
        _cleanup_free_ char *text = cJSON_PrintUnformatted(reply);
        union {
                char buf[CMSG_SPACE(2 * sizeof(int))];
                struct cmsghdr align;
        } cmsg = {0};
        struct iovec iov;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

        if (!text)
                return -ENOMEM;
        iov = (struct iovec){.iov_base = text, .iov_len = strlen(text)};
        if (n_fds) {
                struct cmsghdr *h;

                msg.msg_control = cmsg.buf;
                msg.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                h = CMSG_FIRSTHDR(&msg);
                h->cmsg_level = SOL_SOCKET;
                h->cmsg_type = SCM_RIGHTS;
                h->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(h), fds, n_fds * sizeof(int));
        }
        if (sendmsg(p->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                return -errno;
        return 0;
}

static cJSON *reply_new(bool ok) {
        cJSON *r = cJSON_CreateObject();

        cJSON_AddNumberToObject(r, "v", 1);
        cJSON_AddBoolToObject(r, "ok", ok);
        return r;
}

static const char *errno_name(int err) {
        switch (err) {
        case EINVAL: return "EINVAL";
        case EACCES: return "EACCES";
        case ENOENT: return "ENOENT";
        case EEXIST: return "EEXIST";
        case ENOSPC: return "ENOSPC";
        case EPROTO: return "EPROTO";
        case EMSGSIZE: return "EMSGSIZE";
        case EUSERS: return "EUSERS";
        case ENOMEM: return "ENOMEM";
        case EMFILE: return "EMFILE";
        case EOPNOTSUPP: return "EOPNOTSUPP";
        default: return "EIO";
        }
}

__attribute__((format(printf, 3, 4))) static int reply_error(struct peer *p, int err,
                                                              const char *fmt, ...) {
        cJSON *r = reply_new(false);
        char message[256];
        va_list ap;
        int ret;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        cJSON_AddStringToObject(r, "error", errno_name(err));
        cJSON_AddNumberToObject(r, "errno", err);
        cJSON_AddStringToObject(r, "message", message);
        ret = send_reply(p, r, NULL, 0);
        cJSON_Delete(r);
        return ret;
}

/* May @p use @c in @role ("pub" or "sub")? Config rules first, then owner/group. */
static bool may_use(struct broker *b, struct peer *p, struct chan *c, bool publish) {
        const struct channel_rule *rule = config_rule(&b->cfg, c->name);

        if (p->uid == 0)
                return true;
        if (rule && publish && rule->has_publish)
                return acl_allows(&rule->publish, p->uid, p->gid);
        if (rule && !publish && rule->has_subscribe)
                return acl_allows(&rule->subscribe, p->uid, p->gid);
        return p->uid == c->owner;
}

static const char *get_name(const cJSON *req) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(req, "name");

        return cJSON_IsString(n) && shmbus__name_is_valid(n->valuestring) ? n->valuestring : NULL;
}

/* The channel a request names; on NULL, *ret holds the result of the error reply sent. */
static struct chan *request_chan(struct broker *b, struct peer *p, const cJSON *req, int *ret) {
        const char *name = get_name(req);
        struct chan *c = name ? chan_find(b, name) : NULL;

        if (!name)
                *ret = reply_error(p, EINVAL, "\"name\": not a valid channel name");
        else if (!c)
                *ret = reply_error(p, ENOENT, "no channel %s", name);
        return c;
}

/* Send a success reply and free it. */
static int reply_send(struct peer *p, cJSON *reply) {
        int r = send_reply(p, reply, NULL, 0);

        cJSON_Delete(reply);
        return r;
}

static int op_open(struct broker *b, struct peer *p, const cJSON *req) {
        const char *name = get_name(req);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(req, "role");
        const cJSON *create = cJSON_GetObjectItemCaseSensitive(req, "create");
        bool publish, created = false;
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        struct chan *c;
        char path[512];
        int r;

        if (!name)
                return reply_error(p, EINVAL, "\"name\": 1 to 63 of [A-Za-z0-9._-], not starting with '.'");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "pub") && strcmp(role->valuestring, "sub")))
                return reply_error(p, EINVAL, "\"role\": expected \"pub\" or \"sub\"");
        publish = role->valuestring[0] == 'p';
        if (create && !cJSON_IsObject(create) && !cJSON_IsBool(create))
                return reply_error(p, EINVAL, "\"create\": expected true, false or an object of channel settings");

        c = chan_find(b, name);
        if (!c) {
                const struct channel_rule *rule = config_rule(&b->cfg, name);
                struct shmbus_ring_geom g = rule ? rule->geom : b->cfg.defaults;
                char err[256];

                if (!create || cJSON_IsFalse(create))
                        return reply_error(p, ENOENT, "no channel %s", name);
                if (!acl_allows(&b->cfg.create, p->uid, p->gid)) {
                        log_notice("denied: uid %u may not create channel %s", p->uid, name);
                        return reply_error(p, EACCES, "uid may not create channels (channel %s)", name);
                }
                if (b->n_channels >= b->cfg.max_channels)
                        return reply_error(p, EUSERS, "channel limit reached, not creating %s", name);
                if (cJSON_IsObject(create) && !rule &&
                    config_parse_geom(create, &g, "create.", err, sizeof(err)) < 0)
                        return reply_error(p, EINVAL, "%s", err);
                r = shmbus__channel_create_fds(b->cfg.shm_dir, name, &g, 0600, &ctl_fd, &data_fd);
                if (r < 0)
                        return reply_error(p, -r, "cannot create channel: %s", shmbus_strerror(r));
                r = chan_add(b, name, ctl_fd, data_fd, p->uid, p->gid);
                if (r < 0) {
                        shmbus_channel_unlink(b->cfg.shm_dir, name);
                        return reply_error(p, -r, "cannot map channel: %s", shmbus_strerror(r));
                }
                c = chan_find(b, name);
                created = true;
                log_info("channel %s created by uid %u pid %d", name, p->uid, (int)p->pid);
                close(ctl_fd);
                close(data_fd);
                ctl_fd = data_fd = -1;
        }
        if (!may_use(b, p, c, publish)) {
                log_notice("denied: uid %u pid %d may not %s channel %s", p->uid, (int)p->pid,
                           publish ? "publish on" : "subscribe to", name);
                return reply_error(p, EACCES, "permission denied on channel %s", name);
        }

        /* Fresh descriptors: read-only data for subscribers, so they cannot forge messages. */
        snprintf(path, sizeof(path), "%s/%s.ctl", b->cfg.shm_dir, name);
        ctl_fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        snprintf(path, sizeof(path), "%s/%s.data", b->cfg.shm_dir, name);
        data_fd = open(path, (publish ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
        if (ctl_fd < 0 || data_fd < 0) {
                r = errno;
                if (r == ENOENT)
                        log_err("channel %s: files vanished from %s", name, b->cfg.shm_dir);
                else
                        log_warn("channel %s: cannot open its files: %s", name, strerror(r));
                return reply_error(p, r, "channel files unavailable: %s", strerror(r));
        }

        cJSON *reply = reply_new(true);
        int fds[2] = {ctl_fd, data_fd};
        shmbus__stats_geometry_json(reply, &c->map->ring, c->name, c->owner);
        cJSON_AddBoolToObject(reply, "created", created);
        cJSON_AddStringToObject(reply, "role", publish ? "pub" : "sub");
        cJSON_AddNumberToObject(reply, "pid", p->pid);
        r = send_reply(p, reply, fds, 2);
        cJSON_Delete(reply);
        if (r == 0)
                peer_note_open(p, name);
        return r;
}

static int op_list(struct broker *b, struct peer *p) {
        cJSON *reply = reply_new(true);
        cJSON *arr = cJSON_AddArrayToObject(reply, "channels");

        for (unsigned i = 0; i < b->n_channels; i++) {
                cJSON *o = cJSON_CreateObject();

                shmbus__stats_json(o, &b->channels[i]->map->ring, b->channels[i]->name,
                                   b->channels[i]->owner, false);
                cJSON_AddItemToArray(arr, o);
        }
        return reply_send(p, reply);
}

static int op_stat(struct broker *b, struct peer *p, const cJSON *req) {
        struct chan *c;
        cJSON *reply;
        int r;

        c = request_chan(b, p, req, &r);
        if (!c)
                return r;
        reply = reply_new(true);
        shmbus__stats_json(reply, &c->map->ring, c->name, c->owner, true);
        return reply_send(p, reply);
}

static int op_delete(struct broker *b, struct peer *p, const cJSON *req) {
        char name[SHMBUS_NAME_MAX + 1];
        struct chan *c;
        int r;

        c = request_chan(b, p, req, &r);
        if (!c)
                return r;
        if (p->uid != 0 && p->uid != c->owner) {
                log_notice("denied: uid %u may not delete channel %s", p->uid, c->name);
                return reply_error(p, EACCES, "only the owner or root may delete channel %s",
                                   c->name);
        }
        /* Members keep their mappings; nobody new can open it. Sleepers are told to look. */
        snprintf(name, sizeof(name), "%s", c->name);
        shmbus__ring_wake_all(&c->map->ring);
        shmbus_channel_unlink(b->cfg.shm_dir, name);
        chan_remove(b, c);
        for (unsigned i = 0; i < b->n_peers; i++)
                peer_forget(b->peers[i], name);
        log_info("channel %s deleted by uid %u", name, p->uid);
        return reply_send(p, reply_new(true));
}

static int handle_request(struct broker *b, struct peer *p, const char *text) {
        cJSON *req = cJSON_Parse(text);
        const cJSON *op, *v;
        int r;

        if (!req || !cJSON_IsObject(req)) {
                cJSON_Delete(req);
                return reply_error(p, EINVAL, "request is not a JSON object");
        }
        v = cJSON_GetObjectItemCaseSensitive(req, "v");
        op = cJSON_GetObjectItemCaseSensitive(req, "op");
        if (v && (!cJSON_IsNumber(v) || v->valueint != 1))
                r = reply_error(p, EPROTO, "unsupported protocol version (this daemon speaks 1)");
        else if (!cJSON_IsString(op))
                r = reply_error(p, EINVAL, "\"op\": missing or not a string");
        else if (strcmp(op->valuestring, "hello") == 0) {
                cJSON *reply = reply_new(true);

                cJSON_AddStringToObject(reply, "version", PACKAGE_VERSION);
                cJSON_AddNumberToObject(reply, "protocol", 1);
                cJSON_AddStringToObject(reply, "shm_dir", b->cfg.shm_dir);
                cJSON_AddNumberToObject(reply, "unblock_timeout_ms", b->cfg.unblock_timeout_ms);
                r = reply_send(p, reply);
        } else if (strcmp(op->valuestring, "open") == 0) {
                r = op_open(b, p, req);
        } else if (strcmp(op->valuestring, "close") == 0) {
                const char *name = get_name(req);

                if (name) {
                        peer_forget(p, name);
                        r = reply_send(p, reply_new(true));
                } else {
                        r = reply_error(p, EINVAL, "\"name\": not a valid channel name");
                }
        } else if (strcmp(op->valuestring, "list") == 0) {
                r = op_list(b, p);
        } else if (strcmp(op->valuestring, "stat") == 0) {
                r = op_stat(b, p, req);
        } else if (strcmp(op->valuestring, "delete") == 0) {
                r = op_delete(b, p, req);
        } else {
                r = reply_error(p, EOPNOTSUPP, "unknown op \"%s\"", op->valuestring);
        }
        cJSON_Delete(req);
        return r;
}

/*
 * A closed connection is not a dead process: a client may close it and keep
 * its channels. Slots of processes that die later are released by the sweep.
 */
static void peer_close(struct peer *p) {
        if (!pid_alive(p->pid))
                peer_reap(p);
        peer_free(p);
}

static void on_peer(evutil_socket_t fd, short what, void *arg) {
        struct peer *p = arg;
        struct broker *b = p->broker;
        static char buf[REQUEST_MAX + 1];
        struct iovec iov = {.iov_base = buf, .iov_len = REQUEST_MAX};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                peer_close(p);
                return;
        }
        if (msg.msg_flags & MSG_CTRUNC) {
                /* We never ask for descriptors; a peer that sends some gets them closed. */
                reply_error(p, EINVAL, "requests carry no file descriptors");
                return;
        }
        if (n > REQUEST_MAX) {
                reply_error(p, EMSGSIZE, "request larger than 64 KiB");
                return;
        }
        buf[n] = '\0';
        if (p->refuse) {
                reply_error(p, EUSERS, "too many connections (max_connections is %u, %u per uid)",
                            b->cfg.max_connections, b->cfg.max_connections_per_uid);
                peer_close(p);
                return;
        }
        if (p->deadline_ev) {
                /* It has spoken: from now on it may stay as quiet as it likes. */
                event_free(p->deadline_ev);
                p->deadline_ev = NULL;
        }
        if (strlen(buf) != (size_t)n) {
                reply_error(p, EINVAL, "request contains a NUL byte");
                return;
        }
        if (handle_request(b, p, buf) < 0)
                peer_close(p);
}

/* A refused connection that did not ask why in time, or one that never spoke. */
static void on_peer_deadline(evutil_socket_t fd, short what, void *arg) {
        struct peer *p = arg;

        if (!p->refuse)
                log_info("connection of pid %d (uid %u) sent no request in %u ms: closed",
                         (int)p->pid, p->uid, p->broker->cfg.first_request_timeout_ms);
        peer_close(p);
}

static unsigned peers_of_uid(const struct broker *b, uid_t uid) {
        unsigned n = 0;

        for (unsigned i = 0; i < b->n_peers; i++)
                if (b->peers[i]->uid == uid && !b->peers[i]->refuse)
                        n++;
        return n;
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg) {
        struct broker *b = arg;

        event_add(b->listen_ev, NULL);
}

static void on_accept(evutil_socket_t fd, short what, void *arg) {
        struct broker *b = arg;
        int cfd;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /*
                         * The connection stays queued and the socket stays readable:
                         * accepting again at once would spin. Stop listening for a
                         * moment; channels keep working, and so do connected peers.
                         */
                        struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

                        if (!b->accept_starved)
                                log_warn("accept: %s; retrying every %d ms until it succeeds",
                                         strerror(errno), ACCEPT_RETRY_MS);
                        b->accept_starved = true;
                        event_del(b->listen_ev);
                        event_add(b->accept_retry_ev, &tv);
                } else if (errno != EAGAIN && errno != EINTR) {
                        log_warn("accept: %s", strerror(errno));
                }
                return;
        }
        if (b->accept_starved)
                log_notice("accepting connections again");
        b->accept_starved = false;
        broker_add_connection(b, cfd);
}

void broker_add_connection(struct broker *b, int cfd) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct peer *p;
        struct peer **arr;

        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                close(cfd);
                return;
        }
        bool refuse = b->n_peers - b->n_refusing >= b->cfg.max_connections;
        if (refuse) {
                log_warn("connection refused: max_connections (%u) reached", b->cfg.max_connections);
        } else if (cred.uid != 0 && peers_of_uid(b, cred.uid) >= b->cfg.max_connections_per_uid) {
                log_warn("connection of pid %d refused: uid %u holds max_connections_per_uid (%u)",
                         (int)cred.pid, cred.uid, b->cfg.max_connections_per_uid);
                refuse = true;
        }
        if (refuse && b->n_refusing >= REFUSING_MAX) {
                close(cfd);
                return;
        }
        p = calloc(1, sizeof(*p));
        arr = reallocarray(b->peers, b->n_peers + 1, sizeof(*arr));
        if (!p || !arr) {
                free(p);
                if (arr)
                        b->peers = arr;
                close(cfd);
                return;
        }
        b->peers = arr;
        *p = (struct peer){.broker = b, .fd = cfd, .pid = cred.pid, .uid = cred.uid,
                           .gid = cred.gid, .pidfd = -1, .refuse = refuse};
        b->peers[b->n_peers++] = p;
        b->n_refusing += refuse;
        /*
         * A refused connection has a second to send its request (answered
         * EUSERS, then closed); any other has first_request_timeout_ms, or it
         * would hold a place forever by never speaking. The deadline is a timer
         * of its own, not a timeout on p->ev: libevent re-arms a persistent
         * event's timeout at every activation, so any message, even one refused
         * unread, would push it back.
         */
        unsigned deadline_ms = refuse ? 1000 : b->cfg.first_request_timeout_ms;
        p->ev = event_new(b->base, cfd, EV_READ | EV_PERSIST, on_peer, p);
        if (deadline_ms)
                p->deadline_ev = evtimer_new(b->base, on_peer_deadline, p);
        if (!p->ev || (deadline_ms && !p->deadline_ev)) {
                peer_free(p);
                return;
        }
        event_add(p->ev, NULL);
        if (deadline_ms) {
                struct timeval tv = {deadline_ms / 1000, (deadline_ms % 1000) * 1000};

                evtimer_add(p->deadline_ev, &tv);
        }
        if (refuse)
                return;
        p->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
        if (p->pidfd >= 0) {
                p->pid_ev = event_new(b->base, p->pidfd, EV_READ, on_pid_exit, p);
                event_add(p->pid_ev, NULL);
        }
}

/* ---- the broker ----------------------------------------------------------------------- */

static int config_copy(struct config *dst, const struct config *src) {
        *dst = *src;
        dst->rules = NULL;
        if (src->n_rules) {
                dst->rules = calloc(src->n_rules, sizeof(*dst->rules));
                if (!dst->rules)
                        return -ENOMEM;
                memcpy(dst->rules, src->rules, src->n_rules * sizeof(*dst->rules));
        }
        return 0;
}

void broker_set_config(struct broker *b, const struct config *cfg) {
        struct config next;

        if (config_copy(&next, cfg) < 0) {
                log_err("reload: out of memory; keeping the old configuration");
                return;
        }
        /* The shm directory and socket are fixed for the life of the process. */
        snprintf(next.shm_dir, sizeof(next.shm_dir), "%s", b->cfg.shm_dir);
        snprintf(next.socket_path, sizeof(next.socket_path), "%s", b->cfg.socket_path);
        config_deinit(&b->cfg);
        b->cfg = next;
}

int broker_new(struct event_base *base, const struct config *cfg, int listen_fd,
               struct broker **ret) {
        struct broker *b = calloc(1, sizeof(*b));
        struct timeval tv = {0, SWEEP_INTERVAL_MS * 1000};

        if (!b || config_copy(&b->cfg, cfg) < 0) {
                free(b);
                return -ENOMEM;
        }
        b->base = base;
        b->listen_fd = listen_fd;
        adopt_existing(b);
        b->listen_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, on_accept, b);
        b->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, b);
        b->accept_retry_ev = evtimer_new(base, on_accept_retry, b);
        if (!b->listen_ev || !b->sweep_ev || !b->accept_retry_ev) {
                broker_free(b);
                return -ENOMEM;
        }
        event_add(b->listen_ev, NULL);
        event_add(b->sweep_ev, &tv);
        *ret = b;
        return 0;
}

struct broker *broker_free(struct broker *b) {
        if (!b)
                return NULL;
        while (b->n_peers)
                peer_free(b->peers[0]);
        free(b->peers);
        for (unsigned i = 0; i < b->n_channels; i++)
                chan_free(b->channels[i]);
        free(b->channels);
        if (b->listen_ev)
                event_free(b->listen_ev);
        if (b->sweep_ev)
                event_free(b->sweep_ev);
        if (b->accept_retry_ev)
                event_free(b->accept_retry_ev);
        config_deinit(&b->cfg);
        free(b);
        return NULL;
}

unsigned broker_n_channels(const struct broker *b) {
        return b->n_channels;
}
