/* SPDX-License-Identifier: MIT */
/* See registry.h. The registry is a flat array: there are at most max_channels. */
#include "registry.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "channel.h"
#include "files.h"
#include "handover.h"
#include "log.h"
#include "meta.h"
#include "util.h"

static struct chan *chan_free(struct chan *c) {
        if (!c)
                return NULL;
        shmbus_channel_unref(c->map);
        free(c->stuck);
        free(c->orphan);
        free(c->hold);
        free(c);
        return NULL;
}

/*
 * The channel's eventfd, handed to every member with the channel: publishers
 * write it for subscribers parked on it, one hop from a commit to their event
 * loop (docs/EVENTS.md, "One hop"). Its generation tells subscribers parked on
 * this descriptor from those parked on a previous daemon's; random, so that a
 * restarted daemon's differs. Without one (no descriptors left) the channel
 * works as before: its members' notifier threads wake their descriptors.
 */
static void notify_make(struct chan *c) {
        uint32_t gen = 0;
        int fd;

        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0) {
                log_warn("channel %s: no eventfd for its members (%s): descriptors of its "
                         "subscribers wake through their notifier thread, a little later",
                         c->name, strerror(errno));
                return;
        }
        /*
         * Without getrandom a restart may repeat a generation: a publisher of the
         * old daemon would then wake a new subscriber through a descriptor it does
         * not watch, which the notifier's re-check catches (milliseconds late).
         */
        while (gen < 2)
                if (getrandom(&gen, sizeof(gen), GRND_NONBLOCK) != sizeof(gen))
                        gen = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^
                              (uint32_t)(uintptr_t)c;
        shmbus__channel_set_notify(c->map, fd, gen);
}

static inline void chan_freep(struct chan **c) {
        chan_free(*c);
}

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

void registry_deinit(struct registry *reg) {
        for (unsigned i = 0; i < reg->n_chans; i++)
                chan_free(reg->chans[i]);
        free(reg->chans);
        *reg = (struct registry){0};
}

struct chan *registry_find(const struct registry *reg, const char *name) {
        for (unsigned i = 0; i < reg->n_chans; i++)
                if (strcmp(reg->chans[i]->name, name) == 0)
                        return reg->chans[i];
        return NULL;
}

int registry_add(struct registry *reg, const char *name, int ctl_fd, int data_fd, uid_t owner,
                 gid_t group, struct chan **ret_chan) {
        _cleanup_(chan_freep) struct chan *c = NULL;
        struct chan **arr;
        struct stat st_ctl, st_data;
        uint32_t subs;
        int r;

        assert(shmbus__name_is_valid(name) && !registry_find(reg, name));
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (fstat(ctl_fd, &st_ctl) < 0 || fstat(data_fd, &st_data) < 0)
                return -errno;
        c->ctl_ino = st_ctl.st_ino;
        c->data_ino = st_data.st_ino;
        r = shmbus__channel_map(ctl_fd, data_fd, SHMBUS_OPEN_PUBLISH, &c->map);
        if (r < 0)
                return r;
        c->ctl_dev = st_ctl.st_dev;
        snprintf(c->name, sizeof(c->name), "%s", name);
        notify_make(c);
        c->owner = owner;
        c->group = group;
        subs = c->map->ring.max_subs;
        c->stuck = calloc(subs, sizeof(*c->stuck));
        c->hold = calloc(subs, sizeof(*c->hold));
        c->orphan = calloc((size_t)subs + c->map->ring.max_pubs, sizeof(*c->orphan));
        if (!c->stuck || !c->orphan || !c->hold)
                return -ENOMEM;
        arr = reallocarray(reg->chans, reg->n_chans + 1, sizeof(*arr));
        if (!arr)
                return -ENOMEM;
        reg->chans = arr;
        reg->chans[reg->n_chans++] = c;
        *ret_chan = TAKE_PTR(c);
        return 0;
}

void registry_remove(struct registry *reg, struct chan *c) {
        unsigned i;

        for (i = 0; i < reg->n_chans && reg->chans[i] != c; i++)
                ;
        assert(i < reg->n_chans);
        reg->chans[i] = reg->chans[--reg->n_chans];
        chan_free(c);
}

/*
 * Map the channel @name found in the shm directory open as @dirfd (@shm_dir,
 * for messages), owned by whom its meta file says. Files of another uid that
 * this daemon may not open are noted in @h.
 */
static int adopt_one(struct registry *reg, int dirfd, const char *name, struct handover *h) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        struct stat st, data_st;
        struct meta m;
        char why[256];
        struct chan *c;
        int r;

        r = shmbus__channel_open_at(dirfd, name, SHMBUS_OPEN_PUBLISH, &ctl_fd, &data_fd);
        if (r == -EACCES) {
                char file[SHMBUS_NAME_MAX + 8];

                snprintf(file, sizeof(file), "%s.ctl", name);
                if (fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_uid != geteuid()) {
                        handover_note(h, name, st.st_uid);
                        return 0;
                }
        }
        if (r < 0)
                return r;
        if (fstat(ctl_fd, &st) < 0 || fstat(data_fd, &data_st) < 0)
                return -errno;
        r = meta_load(dirfd, name, st.st_ino, data_st.st_ino, &m, why, sizeof(why));
        if (r < 0) {
                /* A channel made before meta files, or by a library user in the directory. */
                if (r != -ENOENT)
                        log_warn_f(LOG_FIELDS(.channel = name),
                                   "channel %s: %s.%s not believed: %s", name, name,
                                   SHMBUS_FILE_META, why);
                log_notice_f(LOG_FIELDS(.channel = name, LOGF_UID(st.st_uid)),
                             "channel %s: no record of its owner; owned by uid %u, the owner of "
                             "its files",
                             name, (unsigned)st.st_uid);
                m = (struct meta){.owner = st.st_uid, .group = st.st_gid};
        }
        r = registry_add(reg, name, ctl_fd, data_fd, m.owner, m.group, &c);
        if (r < 0)
                return r;
        c->grants = m.grants;
        c->has_slow_subscriber_timeout = m.has_slow_subscriber_timeout;
        c->slow_subscriber_timeout_ms = m.slow_subscriber_timeout_ms;
        log_info_f(LOG_FIELDS(.channel = name, LOGF_UID(m.owner)),
                   "adopted channel %s (owner uid %u)", name, (unsigned)m.owner);
        return 1;
}

void registry_adopt(struct registry *reg, int dirfd, const char *shm_dir, uint32_t max_channels) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(closedirp) DIR *d = fd < 0 ? NULL : fdopendir(fd);
        struct handover h = {0};
        struct dirent *de;

        if (!d) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        while ((de = readdir(d))) {
                char name[SHMBUS_NAME_MAX + 1];
                int r;

                if (!shmbus__channel_name_of_file(de->d_name, name) || registry_find(reg, name))
                        continue;
                if (reg->n_chans >= max_channels) {
                        reg->counts.not_adopted++;
                        log_warn("channel %s not adopted: max_channels (%u) reached", name,
                                 max_channels);
                        continue;
                }
                r = adopt_one(reg, dirfd, name, &h);
                if (r < 0) {
                        reg->counts.not_adopted++;
                        log_warn_f(LOG_FIELDS(.channel = name, .err = -r),
                                   "channel %s in %s not adopted: %s", name, shm_dir,
                                   shmbus_strerror(r));
                } else {
                        reg->counts.adopted++;
                }
        }
        handover_report(&h, shm_dir);
}
