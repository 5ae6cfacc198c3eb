/* SPDX-License-Identifier: MIT */
/* See broker.h. This file builds and tears down the broker; the work is in its modules. */
#include "broker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "create.h"
#include "evict.h"
#include "integrity.h"
#include "liveness.h"
#include "log.h"
#include "peer.h"
#include "ring.h"
#include "vanish.h"

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
        struct broker *b = arg;

        integrity_sweep(b);
        liveness_sweep(&b->channels, b->cfg.unblock_timeout_ms, shmbus__now_ns(),
                       LIVENESS_SWEEP_BUDGET_NS);
        evict_sweep(b, shmbus__now_ns());
        vanish_sweep(b, shmbus__now_ns());
        log_tick();
}

void broker_set_config(struct broker *b, const struct config *cfg) {
        struct config next;

        if (config_copy(&next, cfg) < 0) {
                log_err("reload: out of memory; keeping the old configuration");
                return;
        }
        /* The shm directory and socket are fixed for the life of the process. */
        memcpy(next.shm_dir, b->cfg.shm_dir, sizeof(next.shm_dir));
        memcpy(next.socket_path, b->cfg.socket_path, sizeof(next.socket_path));
        config_deinit(&b->cfg);
        b->cfg = next;
}

int broker_new(struct event_base *base, const struct config *cfg, int listen_fd, int shm_dirfd,
               struct broker **ret) {
        struct broker *b = calloc(1, sizeof(*b));
        struct timeval tv = {0, LIVENESS_SWEEP_INTERVAL_MS * 1000};

        if (!b || config_copy(&b->cfg, cfg) < 0) {
                free(b);
                close(shm_dirfd);
                return -ENOMEM;
        }
        b->base = base;
        b->listen_fd = listen_fd;
        b->shm_dirfd = shm_dirfd;
        b->counters.started_ns = shmbus__now_ns();
        registry_adopt(&b->channels, b->shm_dirfd, b->cfg.shm_dir, b->cfg.max_channels);
        b->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, b);
        if (!b->sweep_ev || peer_listen(b) < 0) {
                broker_free(b);
                return -ENOMEM;
        }
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
        create_deinit(b);
        registry_deinit(&b->channels);
        if (b->listen_ev)
                event_free(b->listen_ev);
        if (b->sweep_ev)
                event_free(b->sweep_ev);
        if (b->accept_retry_ev)
                event_free(b->accept_retry_ev);
        config_deinit(&b->cfg);
        if (b->shm_dirfd >= 0)
                close(b->shm_dirfd);
        free(b);
        return NULL;
}

unsigned broker_n_channels(const struct broker *b) {
        return b->channels.n_chans;
}

void broker_add_connection(struct broker *b, int fd) {
        peer_new(b, fd);
}
