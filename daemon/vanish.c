/* SPDX-License-Identifier: MIT */
/*
 * See vanish.h. A channel is the ctl file the daemon mapped, known by its
 * device and inode (registry_add records them): a name that no longer leads
 * there is a channel gone. Only ENOENT counts as "removed"; any other failure
 * to look (EACCES on a directory being fixed, ENOMEM) is left for the next
 * sweep, because marking a live channel deleted cannot be undone.
 */
#include "vanish.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include "broker.h"
#include "channel.h"
#include "log.h"
#include "peer.h"
#include "registry.h"

#define VANISH_INTERVAL_NS INT64_C(1000000000)

static bool chan_vanished(const struct broker *b, const struct chan *c) {
        char file[SHMBUS_NAME_MAX + 8];
        struct stat st;

        /* Through the shm directory's descriptor, never its path again (shmdir.h). */
        snprintf(file, sizeof(file), "%s.ctl", c->name);
        if (fstatat(b->shm_dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT;
        return st.st_dev != c->ctl_dev || st.st_ino != c->ctl_ino;
}

void vanish_sweep(struct broker *b, int64_t now) {
        static int64_t last;

        if (now - last < VANISH_INTERVAL_NS)
                return;
        last = now;
        /* Backwards: registry_remove moves the last channel into the hole. */
        for (unsigned i = b->channels.n_chans; i-- > 0;) {
                struct chan *c = b->channels.chans[i];
                char name[SHMBUS_NAME_MAX + 1];

                if (!chan_vanished(b, c)) {
                        /*
                         * Only we mark a channel deleted, and only as it leaves the
                         * registry: a mark on one still here was forged by a member.
                         */
                        if (atomic_load(&c->map->ring.ctl->deleted) != 0) {
                                atomic_store(&c->map->ring.ctl->deleted, 0);
                                log_warn_f(LOG_FIELDS(.channel = c->name),
                                           "channel %s: cleared a deleted mark a member wrote",
                                           c->name);
                        }
                        continue;
                }
                snprintf(name, sizeof(name), "%s", c->name);
                atomic_store_explicit(&c->map->ring.ctl->deleted, SHMBUS_CTL_DELETED,
                                      memory_order_seq_cst);
                shmbus__ring_wake_all(&c->map->ring);
                registry_remove(&b->channels, c);
                for (unsigned k = 0; k < b->n_peers; k++)
                        peer_forget(b->peers[k], name);
                log_warn_f(LOG_FIELDS(.channel = name),
                           "channel %s: its files in %s were removed or replaced behind shmbusd's "
                           "back; its members are told it is gone",
                           name, b->cfg.shm_dir);
        }
}
