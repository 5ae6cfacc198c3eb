/* SPDX-License-Identifier: MIT */
/* See create.h. */
#include "create.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "files.h"
#include "handover.h"
#include "log.h"
#include "ops.h"
#include "peer.h"
#include "registry.h"
#include "reply.h"
#include "util.h"

struct create_job {
        struct broker *broker;
        pthread_t thread;
        int pipe[2]; /* the worker writes one byte when it is done */
        struct event *done_ev;
        char name[SHMBUS_NAME_MAX + 1];
        struct shmbus_ring_geom geom;
        uint64_t bytes;
        uid_t uid;
        gid_t gid;
        struct grants grants;
        bool has_slow;
        uint32_t slow_ms;
        struct peer *creator; /* NULL once it has gone */
        int64_t started;
        /* Written by the worker, read by the loop after the pipe said so. */
        int result;
        int ctl_fd, data_fd;
};

bool create_pending(const struct broker *b, const char *name) {
        return b->create_job && (!name || strcmp(b->create_job->name, name) == 0);
}

void create_pending_use(const struct broker *b, uid_t uid, uint32_t *ret_channels,
                        uint64_t *ret_bytes) {
        bool mine = b->create_job && b->create_job->uid == uid;

        *ret_channels = mine ? 1 : 0;
        *ret_bytes = mine ? b->create_job->bytes : 0;
}

static void *worker(void *arg) {
        struct create_job *j = arg;
        char byte = 1;

        j->result = shmbus__channel_create_at(j->broker->shm_dirfd, j->name, &j->geom, 0600,
                                              &j->ctl_fd, &j->data_fd);
        /* The pipe's write is the release: the loop reads the result after reading the byte. */
        while (write(j->pipe[1], &byte, 1) < 0 && errno == EINTR)
                ;
        return NULL;
}

static struct create_job *job_free(struct create_job *j) {
        if (!j)
                return NULL;
        if (j->done_ev)
                event_free(j->done_ev);
        shmbus__closep(&j->pipe[0]);
        shmbus__closep(&j->pipe[1]);
        shmbus__closep(&j->ctl_fd);
        shmbus__closep(&j->data_fd);
        free(j);
        return NULL;
}

/* Serve every parked request again, in the order they were parked. */
static void unpark_all(struct broker *b) {
        unsigned n = 0;
        struct peer **parked = calloc(b->n_peers ? b->n_peers : 1, sizeof(*parked));

        if (!parked) {
                log_err("out of memory: parked requests stay parked until the next creation");
                return;
        }
        for (unsigned i = 0; i < b->n_peers; i++)
                if (b->peers[i]->parked)
                        parked[n++] = b->peers[i];
        /* Few are ever parked at once: sort by when they were parked. */
        for (unsigned i = 1; i < n; i++)
                for (unsigned k = i; k > 0 && parked[k - 1]->parked_seq > parked[k]->parked_seq;
                     k--) {
                        struct peer *t = parked[k];

                        parked[k] = parked[k - 1];
                        parked[k - 1] = t;
                }
        /* Serving one request frees at most its own peer, never another in the list. */
        for (unsigned i = 0; i < n; i++) {
                _cleanup_free_ char *text = TAKE_PTR(parked[i]->parked);

                event_add(parked[i]->ev, NULL);
                peer_serve(parked[i], text);
        }
        free(parked);
}

/* The worker is done: register the channel (or tell the creator why not), then unpark. */
static void on_done(evutil_socket_t fd, short what, void *arg) {
        struct create_job *j = arg;
        struct broker *b = j->broker;
        char message[REPLY_MESSAGE_MAX] = "";
        struct chan *c;
        int r;

        pthread_join(j->thread, NULL);
        b->create_job = NULL;
        r = j->result;
        if (r == 0)
                r = ops_register_created(b, j->name, j->ctl_fd, j->data_fd, j->uid, j->gid,
                                         &j->grants, j->has_slow, j->slow_ms, &c, message,
                                         sizeof(message));
        else if (r == -EEXIST)
                /* Files nobody serves: say whose they are and what to run. */
                handover_explain_stranded(b->cfg.shm_dir, j->name, message, sizeof(message));
        else
                snprintf(message, sizeof(message), "cannot create channel: %s", shmbus_strerror(r));
        if (r == 0) {
                log_info_f(LOG_FIELDS(.channel = j->name, LOGF_UID(j->uid)),
                           "channel %s created by uid %u (%llu bytes, %lld ms off the event loop)",
                           j->name, j->uid, (unsigned long long)j->bytes,
                           (long long)((shmbus__now_ns() - j->started) / 1000000));
                if (j->creator)
                        snprintf(j->creator->created, sizeof(j->creator->created), "%s", j->name);
        } else if (j->creator) {
                struct peer *p = j->creator;

                /* The creator is told here; its parked request is not served again. */
                free(TAKE_PTR(p->parked));
                event_add(p->ev, NULL);
                if (reply_send_error(p->fd, r, message) < 0)
                        log_info("pid %d went away before hearing its create failed", (int)p->pid);
        }
        job_free(j);
        unpark_all(b);
}

int create_park(struct broker *b, struct peer *p, const char *text) {
        char *copy = strdup(text);

        if (!copy)
                return -ENOMEM;
        event_del(p->ev);
        free(p->parked);
        p->parked = copy;
        p->parked_seq = ++b->parked_seq;
        return 0;
}

int create_start(struct broker *b, struct peer *p, const char *name,
                 const struct shmbus_ring_geom *g, uint64_t bytes, const struct grants *grants,
                 bool has_slow, uint32_t slow_ms, const char *text) {
        struct create_job *j = calloc(1, sizeof(*j));
        int r;

        if (!j)
                return -ENOMEM;
        *j = (struct create_job){.broker = b,
                                 .pipe = {-1, -1},
                                 .geom = *g,
                                 .bytes = bytes,
                                 .uid = p->uid,
                                 .gid = p->gid,
                                 .grants = *grants,
                                 .has_slow = has_slow,
                                 .slow_ms = slow_ms,
                                 .creator = p,
                                 .started = shmbus__now_ns(),
                                 .ctl_fd = -1,
                                 .data_fd = -1};
        snprintf(j->name, sizeof(j->name), "%s", name);
        j->geom.name = j->name;
        if (pipe2(j->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                job_free(j);
                return r;
        }
        j->done_ev = event_new(b->base, j->pipe[0], EV_READ, on_done, j);
        r = j->done_ev ? create_park(b, p, text) : -ENOMEM;
        if (r < 0) {
                job_free(j);
                return r;
        }
        r = -pthread_create(&j->thread, NULL, worker, j);
        if (r < 0) {
                /* Not parked after all: the caller answers with the error. */
                free(TAKE_PTR(p->parked));
                event_add(p->ev, NULL);
                job_free(j);
                return r;
        }
        event_add(j->done_ev, NULL);
        b->create_job = j;
        return 0;
}

void create_forget_peer(struct broker *b, struct peer *p) {
        if (b->create_job && b->create_job->creator == p)
                b->create_job->creator = NULL;
        free(TAKE_PTR(p->parked));
}

void create_deinit(struct broker *b) {
        struct create_job *j = b->create_job;

        if (!j)
                return;
        /* Shutting down: let the allocation finish; the files stay for the next daemon. */
        pthread_join(j->thread, NULL);
        b->create_job = job_free(j);
}
