/* SPDX-License-Identifier: MIT */
/*
 * The channel object (channel.h): a reference-counted pair of mappings with
 * the ring attached, made from descriptors, from a directory, or by creating
 * the files first.
 *
 * Invariants: a channel exists only fully mapped and validated (ring attach
 * checks every header field); the data file is mapped writable only for a
 * SHMBUS_OPEN_PUBLISH channel, and nothing is writable for
 * SHMBUS_OPEN_INSPECT. The name is copied out of shared memory at map time.
 */
#include "channel.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbus.h"

#include "alloc.h"
#include "proc.h"
#include "sigbus.h"
#include "util.h"

static void chan_unmap(shmbus_channel *c) {
        /* Unregistered first: the handler must never map over an address we gave back. */
        shmbus__sigbus_unregister(c->sigbus_id);
        c->sigbus_id = -1;
        if (c->ctl_map && c->ctl_map != MAP_FAILED)
                munmap(c->ctl_map, c->ctl_len);
        if (c->data_map && c->data_map != MAP_FAILED)
                munmap(c->data_map, c->data_len);
        c->ctl_map = c->data_map = NULL;
}

static shmbus_channel *chan_free(shmbus_channel *c) {
        if (!c)
                return NULL;
        chan_unmap(c);
        shmbus__closep(&c->ring.notify_fd);
        free(c);
        return NULL;
}

static void chan_freep(shmbus_channel **c) {
        chan_free(*c);
}

/*
 * The sizes the channel's header says its files have. The files may be
 * larger (a member grew one; the daemon truncates it back): only these sizes
 * are mapped, so that growing a file does not make the channel unusable. A
 * file smaller than its header says is refused: touching the missing part
 * would fault.
 */
static int chan_sizes(int ctl_fd, const struct stat *st_ctl, const struct stat *st_data,
                      size_t *ret_ctl_len, size_t *ret_data_len) {
        struct shmbus_ctl hdr;
        struct shmbus_ring_geom g;
        size_t ctl_len;
        ssize_t n;

        if ((uint64_t)st_ctl->st_size < sizeof(hdr))
                return -EPROTO;
        n = pread(ctl_fd, &hdr, sizeof(hdr), 0);
        if (n < 0)
                return -errno;
        if ((size_t)n != sizeof(hdr) || hdr.magic != SHMBUS_CTL_MAGIC)
                return -EPROTO;
        g = (struct shmbus_ring_geom){.data_size = hdr.data_size,
                                      .max_msg = hdr.max_msg,
                                      .policy = hdr.policy,
                                      .max_subs = hdr.max_subs,
                                      .max_pubs = hdr.max_pubs};
        if (shmbus__ring_geom_check(&g) < 0)
                return -EPROTO;
        ctl_len = shmbus__ring_ctl_size(g.max_subs, g.max_pubs);
        if ((uint64_t)st_ctl->st_size < ctl_len || (uint64_t)st_data->st_size < g.data_size)
                return -EPROTO;
        *ret_ctl_len = ctl_len;
        *ret_data_len = (size_t)g.data_size;
        return 0;
}

int shmbus__channel_map(int ctl_fd, int data_fd, int flags, shmbus_channel **ret_chan) {
        _cleanup_(chan_freep) shmbus_channel *c = NULL;
        bool inspect = flags & SHMBUS_OPEN_INSPECT;
        bool publish = (flags & SHMBUS_OPEN_PUBLISH) && !inspect;
        struct stat st_ctl, st_data;
        int r;

        if (ctl_fd < 0 || data_fd < 0 || (flags & ~(SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_INSPECT)))
                return -EINVAL;
        if (fstat(ctl_fd, &st_ctl) < 0 || fstat(data_fd, &st_data) < 0)
                return -errno;
        if (!S_ISREG(st_ctl.st_mode) || !S_ISREG(st_data.st_mode))
                return -EPROTO;

        c = shmbus__calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        atomic_init(&c->refs, 1);
        atomic_init(&c->broken, 0);
        c->sigbus_id = -1;
        c->ring.notify_fd = -1; /* until attached, and then as shmbus__channel_set_notify says */
        c->flags = flags;
        c->pid = getpid();
        c->pid_local = true;
        c->gen = shmbus__proc_gen();
        r = chan_sizes(ctl_fd, &st_ctl, &st_data, &c->ctl_len, &c->data_len);
        if (r < 0)
                return r;
        c->ctl_map = mmap(NULL, c->ctl_len, inspect ? PROT_READ : PROT_READ | PROT_WRITE,
                          MAP_SHARED, ctl_fd, 0);
        if (c->ctl_map == MAP_FAILED)
                return -errno;
        c->data_map = mmap(NULL, c->data_len, publish ? PROT_READ | PROT_WRITE : PROT_READ,
                           MAP_SHARED, data_fd, 0);
        if (c->data_map == MAP_FAILED)
                return -errno;
        /* Before the first access: a member may shrink the files at any moment. */
        r = shmbus__sigbus_register(c->ctl_map, c->ctl_len, c->data_map, c->data_len, &c->broken);
        if (r < 0)
                return r;
        c->sigbus_id = r;

        r = shmbus__ring_attach(&c->ring, c->ctl_map, c->ctl_len, c->data_map, c->data_len);
        if (r < 0)
                return shmbus__channel_check(c, r);
        memcpy(c->name, c->ring.ctl->name, sizeof(c->name) - 1);
        c->name[sizeof(c->name) - 1] = '\0';
        r = shmbus__channel_check(c, 0);
        if (r < 0)
                return r;
        *ret_chan = TAKE_PTR(c);
        return 0;
}

SHMBUS_EXPORT int shmbus_channel_from_fds(int ctl_fd, int data_fd, int flags,
                                          shmbus_channel **ret_chan) {
        if (!ret_chan)
                return -EINVAL;
        return shmbus__channel_map(ctl_fd, data_fd, flags, ret_chan);
}

SHMBUS_EXPORT int shmbus_channel_create(const char *dir, const char *name, const shmbus_opts *opts,
                                        unsigned int mode, shmbus_channel **ret_chan) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        struct shmbus_ring_geom g;
        int r;

        if (!ret_chan || (mode & ~07777u))
                return -EINVAL;
        if (opts)
                g = *shmbus__opts_geom(opts);
        else
                shmbus__opts_default(&g);
        r = shmbus__channel_create_fds(dir, name, &g, mode, &ctl_fd, &data_fd);
        if (r < 0)
                return r;
        r = shmbus__channel_map(ctl_fd, data_fd, SHMBUS_OPEN_PUBLISH, ret_chan);
        if (r < 0)
                /* A failed create leaves no channel behind, as the files do on their own. */
                (void)shmbus_channel_unlink(dir, name);
        return r;
}

SHMBUS_EXPORT int shmbus_channel_open(const char *dir, const char *name, int flags,
                                      shmbus_channel **ret_chan) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        int r;

        if (!ret_chan)
                return -EINVAL;
        r = shmbus__channel_open_fds(dir, name, flags, &ctl_fd, &data_fd);
        if (r < 0)
                return r;
        return shmbus__channel_map(ctl_fd, data_fd, flags, ret_chan);
}

SHMBUS_EXPORT shmbus_channel *shmbus_channel_ref(shmbus_channel *chan) {
        if (chan)
                atomic_fetch_add_explicit(&chan->refs, 1, memory_order_relaxed);
        return chan;
}

SHMBUS_EXPORT shmbus_channel *shmbus_channel_unref(shmbus_channel *chan) {
        if (chan && atomic_fetch_sub_explicit(&chan->refs, 1, memory_order_acq_rel) == 1)
                chan_free(chan);
        return NULL;
}

SHMBUS_EXPORT const char *shmbus_channel_name(const shmbus_channel *chan) {
        return chan ? chan->name : NULL;
}

SHMBUS_EXPORT size_t shmbus_channel_max_msg(const shmbus_channel *chan) {
        return chan ? chan->ring.max_msg : 0;
}

SHMBUS_EXPORT uint64_t shmbus_channel_capacity(const shmbus_channel *chan) {
        return chan ? chan->ring.size : 0;
}

SHMBUS_EXPORT int shmbus_channel_policy(const shmbus_channel *chan) {
        return chan ? (int)chan->ring.policy : -EINVAL;
}

SHMBUS_EXPORT uint32_t shmbus_channel_max_subscribers(const shmbus_channel *chan) {
        return chan ? chan->ring.max_subs : 0;
}

SHMBUS_EXPORT uint32_t shmbus_channel_max_publishers(const shmbus_channel *chan) {
        return chan ? chan->ring.max_pubs : 0;
}

void shmbus__channel_set_notify(shmbus_channel *c, int fd, uint32_t gen) {
        shmbus__closep(&c->ring.notify_fd);
        c->ring.notify_fd = fd;
        c->ring.notify_gen = fd >= 0 && gen >= 2 ? gen : 0;
}
