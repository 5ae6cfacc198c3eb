/* SPDX-License-Identifier: MIT */
/* See integrity.h. Files are looked at through the shm directory's descriptor, by name. */
#include "integrity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "channel.h"
#include "log.h"
#include "peer.h"
#include "util.h"

struct chan_file {
        const char *ext;
        ino_t ino;
        off_t want;
        off_t size;
};

/* The size of @f of channel @name, if the name still holds the file the daemon made. */
static int file_stat(int dirfd, const char *name, struct chan_file *f) {
        char file[SHMBUS_NAME_MAX + 8];
        struct stat st;

        snprintf(file, sizeof(file), "%s.%s", name, f->ext);
        if (fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_ino != f->ino)
                return -ESTALE;
        f->size = st.st_size;
        return 0;
}

/* Set the size of @f of channel @name to @len (the daemon owns the file). */
static int file_resize(int dirfd, const char *name, const struct chan_file *f, off_t len) {
        char file[SHMBUS_NAME_MAX + 8];
        _cleanup_close_ int fd = -1;
        struct stat st;

        snprintf(file, sizeof(file), "%s.%s", name, f->ext);
        fd = openat(dirfd, file, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_ino != f->ino)
                return -ESTALE;
        if (ftruncate(fd, len) < 0)
                return -errno;
        return 0;
}

/* Drop @c for @why: see integrity.h. */
static void chan_drop(struct broker *b, struct chan *c, struct chan_file files[2],
                      const char *why) {
        char name[SHMBUS_NAME_MAX + 1];

        snprintf(name, sizeof(name), "%s", c->name);
        log_warn_f(LOG_FIELDS(.channel = name),
                   "channel %s: %s; dropping it: its members get EBADFD and may create it again",
                   name, why);
        /* Sleepers look at the ring and fault (if they have not) rather than sleep on. */
        shmbus__ring_wake_all(&c->map->ring);
        registry_remove(&b->channels, c);
        for (int i = 0; i < 2; i++)
                (void)file_resize(b->shm_dirfd, name, &files[i], 0);
        (void)shmbus__channel_unlink_at(b->shm_dirfd, name);
        for (unsigned i = 0; i < b->n_peers; i++)
                peer_forget(b->peers[i], name);
}

/*
 * Who could have shrunk the data file: only publishers hold it writable. Their
 * slots are in ctl, which is intact when only data shrank (a fault here would
 * read zeros: sigbus.h). At most eight, for the log.
 */
static void data_writers(const struct chan *c, char *buf, size_t size) {
        const struct shmbus_ring *r = &c->map->ring;
        size_t n = 0;
        unsigned listed = 0;

        buf[0] = '\0';
        for (uint32_t i = 0; i < r->max_pubs && listed < 8 && n < size; i++) {
                const struct shmbus_pub_slot *p = &r->pubs[i];

                if (atomic_load(&p->state) != SHMBUS_SLOT_ACTIVE)
                        continue;
                n += (size_t)snprintf(buf + n, size - n, "%suid %u pid %u", listed ? ", " : "",
                                      atomic_load(&p->uid), atomic_load(&p->pid));
                listed++;
        }
}

int integrity_check(struct broker *b, struct chan *c) {
        struct chan_file files[2] = {
                {.ext = "ctl", .ino = c->ctl_ino, .want = (off_t)c->map->ctl_len},
                {.ext = "data", .ino = c->data_ino, .want = (off_t)c->map->data_len},
        };
        char why[400], who[256];

        for (int i = 0; i < 2; i++) {
                struct chan_file *f = &files[i];

                /* Gone or replaced: only root could have; leave that to root. */
                if (file_stat(b->shm_dirfd, c->name, f) < 0)
                        return 0;
                if (f->size < f->want) {
                        if (i == 1)
                                data_writers(c, who, sizeof(who));
                        snprintf(why, sizeof(why),
                                 "its %s file was truncated to %lld bytes (it has %lld) by %s%s%s",
                                 f->ext, (long long)f->size, (long long)f->want,
                                 i == 0 ? "a member" : "one of its publishers",
                                 i == 1 && who[0] ? ": " : "", i == 1 ? who : "");
                        chan_drop(b, c, files, why);
                        return -EBADFD;
                }
        }
        if (atomic_load(&c->map->broken)) {
                chan_drop(b, c, files, "its files shrank under the daemon's mapping");
                return -EBADFD;
        }
        for (int i = 0; i < 2; i++) {
                struct chan_file *f = &files[i];
                int r;

                if (f->size == f->want)
                        continue;
                r = file_resize(b->shm_dirfd, c->name, f, f->want);
                log_warn_f(LOG_FIELDS(.channel = c->name),
                           "channel %s: its %s file was grown to %lld bytes by a member; %s",
                           c->name, f->ext, (long long)f->size,
                           r < 0 ? "cannot truncate it back" : "truncated it back");
        }
        return 0;
}

void integrity_sweep(struct broker *b) {
        for (unsigned i = 0; i < b->channels.n_chans;) {
                /* A dropped channel's place is taken by the last one: look at it again. */
                if (integrity_check(b, b->channels.chans[i]) == 0)
                        i++;
        }
}
