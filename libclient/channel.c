/* SPDX-License-Identifier: MIT */
/*
 * Channels as files: creating, mapping and validating a channel's two files,
 * and the public publisher/subscriber objects on top of the ring.
 *
 * A channel is created with O_TMPFILE, fully allocated, formatted (the magic
 * written last), and only then linked under its name, data file first: so a
 * NAME.ctl that exists always has a NAME.data beside it and is complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbus.h"

#include "channel.h"
#include "ring.h"
#include "util.h"

#define DEFAULT_CAPACITY (UINT64_C(1) << 20)
#define DEFAULT_MAX_MSG  (64u * 1024)
#define DEFAULT_SLOTS    16u
#define DEFAULT_SPIN_US  50u

struct shmbus_opts {
        struct shmbus_ring_geom geom;
        bool max_msg_set; /* otherwise max_msg follows the capacity */
};

struct shmbus_pub {
        shmbus_channel *chan;
        struct shmbus_ring_pub rp;
};

struct shmbus_sub {
        shmbus_channel *chan;
        struct shmbus_ring_sub rs;
        uint32_t spin_us;
};

bool shmbus__name_is_valid(const char *name) {
        size_t n;

        if (!name || name[0] == '\0' || name[0] == '.')
                return false;
        n = strlen(name);
        if (n > SHMBUS_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

/* "NAME.ctl" -> NAME, for scanning a shm directory; false for any other file. */
bool shmbus__channel_name_of_file(const char *file, char ret_name[SHMBUS_NAME_MAX + 1]) {
        size_t n = strlen(file);

        if (n < 5 || n - 4 > SHMBUS_NAME_MAX || strcmp(file + n - 4, ".ctl") != 0)
                return false;
        memcpy(ret_name, file, n - 4);
        ret_name[n - 4] = '\0';
        return shmbus__name_is_valid(ret_name);
}

SHMBUS_EXPORT const char *shmbus_version(void) {
        return PACKAGE_VERSION;
}

SHMBUS_EXPORT const char *shmbus_strerror(int err) {
        switch (err) {
        case 0:
                return "success";
        case -EAGAIN:
                return "would block: channel full or empty";
        case -ETIMEDOUT:
                return "timed out";
        case -EMSGSIZE:
                return "message too large";
        case -EPROTO:
                return "not a valid shmbus channel or protocol message";
        case -EUSERS:
                return "no free publisher or subscriber slot in the channel";
        case -ESTALE:
                return "borrowed message was overwritten";
        case -EBADMSG:
                return "corrupt record skipped";
        case -EPIPE:
        case -ECONNRESET:
                return "shmbusd connection lost";
        case -ECONNREFUSED:
                return "shmbusd is not running";
        default:
                return err < 0 ? strerror(-err) : "unknown error";
        }
}

/* ---- options ---------------------------------------------------------------------------- */

void shmbus__opts_default(struct shmbus_ring_geom *g) {
        *g = (struct shmbus_ring_geom){
                .data_size = DEFAULT_CAPACITY,
                .max_msg = DEFAULT_MAX_MSG,
                .policy = SHMBUS_POLICY_BLOCK,
                .max_subs = DEFAULT_SLOTS,
                .max_pubs = DEFAULT_SLOTS,
        };
}

const struct shmbus_ring_geom *shmbus__opts_geom(const shmbus_opts *opts) {
        return &opts->geom;
}

SHMBUS_EXPORT int shmbus_opts_new(shmbus_opts **ret_opts) {
        shmbus_opts *o;

        if (!ret_opts)
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        shmbus__opts_default(&o->geom);
        *ret_opts = o;
        return 0;
}

SHMBUS_EXPORT shmbus_opts *shmbus_opts_free(shmbus_opts *opts) {
        free(opts);
        return NULL;
}

SHMBUS_EXPORT int shmbus_opts_set_capacity(shmbus_opts *opts, uint64_t bytes) {
        if (!opts || bytes < SHMBUS_DATA_MIN || bytes > SHMBUS_DATA_MAX || (bytes & (bytes - 1)))
                return -EINVAL;
        opts->geom.data_size = bytes;
        if (!opts->max_msg_set)
                opts->geom.max_msg = (uint32_t)(bytes / 4 < DEFAULT_MAX_MSG ? bytes / 4
                                                                           : DEFAULT_MAX_MSG);
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_max_msg(shmbus_opts *opts, uint32_t bytes) {
        if (!opts || bytes < 1 || bytes > SHMBUS_DATA_MAX / 4)
                return -EINVAL;
        opts->geom.max_msg = bytes;
        opts->max_msg_set = true;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_policy(shmbus_opts *opts, int policy) {
        if (!opts || (policy != SHMBUS_POLICY_BLOCK && policy != SHMBUS_POLICY_OVERWRITE))
                return -EINVAL;
        opts->geom.policy = (uint32_t)policy;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_max_subscribers(shmbus_opts *opts, uint32_t n) {
        if (!opts || n < 1 || n > SHMBUS_SLOTS_MAX)
                return -EINVAL;
        opts->geom.max_subs = n;
        return 0;
}

SHMBUS_EXPORT int shmbus_opts_set_max_publishers(shmbus_opts *opts, uint32_t n) {
        if (!opts || n < 1 || n > SHMBUS_SLOTS_MAX)
                return -EINVAL;
        opts->geom.max_pubs = n;
        return 0;
}

/* ---- channels --------------------------------------------------------------------------- */

static void chan_unmap(shmbus_channel *c) {
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
        free(c);
        return NULL;
}

static void chan_freep(shmbus_channel **c) {
        chan_free(*c);
}

/* Map both files with the protections @flags allow, validate, and attach the ring. */
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
        if ((uint64_t)st_ctl.st_size < sizeof(struct shmbus_ctl) ||
            (uint64_t)st_ctl.st_size > shmbus__ring_ctl_size(SHMBUS_SLOTS_MAX, SHMBUS_SLOTS_MAX) ||
            (uint64_t)st_data.st_size < SHMBUS_DATA_MIN ||
            (uint64_t)st_data.st_size > SHMBUS_DATA_MAX)
                return -EPROTO;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        atomic_init(&c->refs, 1);
        c->flags = flags;
        c->pid = getpid();
        c->ctl_len = (size_t)st_ctl.st_size;
        c->data_len = (size_t)st_data.st_size;
        c->ctl_map = mmap(NULL, c->ctl_len, inspect ? PROT_READ : PROT_READ | PROT_WRITE,
                          MAP_SHARED, ctl_fd, 0);
        if (c->ctl_map == MAP_FAILED)
                return -errno;
        c->data_map = mmap(NULL, c->data_len, publish ? PROT_READ | PROT_WRITE : PROT_READ,
                           MAP_SHARED, data_fd, 0);
        if (c->data_map == MAP_FAILED)
                return -errno;

        r = shmbus__ring_attach(&c->ring, c->ctl_map, c->ctl_len, c->data_map, c->data_len);
        if (r < 0)
                return r;
        memcpy(c->name, c->ring.ctl->name, sizeof(c->name) - 1);
        c->name[sizeof(c->name) - 1] = '\0';
        *ret_chan = TAKE_PTR(c);
        return 0;
}

SHMBUS_EXPORT int shmbus_channel_from_fds(int ctl_fd, int data_fd, int flags,
                                          shmbus_channel **ret_chan) {
        if (!ret_chan)
                return -EINVAL;
        return shmbus__channel_map(ctl_fd, data_fd, flags, ret_chan);
}

static int chan_path(char *buf, size_t size, const char *dir, const char *name, const char *ext) {
        int n;

        if (!dir || !shmbus__name_is_valid(name))
                return -EINVAL;
        n = snprintf(buf, size, "%s/%s.%s", dir, name, ext);
        if (n < 0 || (size_t)n >= size)
                return -ENAMETOOLONG;
        return 0;
}

/* An unnamed, fully allocated file in @dir; linked under its name later. */
static int tmpfile_alloc(const char *dir, unsigned int mode, size_t len) {
        _cleanup_close_ int fd = -1;
        int r;

        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        /* fchmod: the umask must not decide who may use the channel. */
        if (fchmod(fd, mode) < 0)
                return -errno;
        r = posix_fallocate(fd, 0, (off_t)len);
        if (r != 0)
                return -r;
        return TAKE_FD(fd);
}

static int fd_link(int fd, const char *path) {
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) < 0)
                return -errno;
        return 0;
}

int shmbus__channel_create_fds(const char *dir, const char *name,
                               const struct shmbus_ring_geom *geom, unsigned int mode,
                               int *ret_ctl_fd, int *ret_data_fd) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        char ctl_path[PATH_MAX], data_path[PATH_MAX];
        struct shmbus_ring_geom g = *geom;
        size_t ctl_len;
        void *ctl_map, *data_map;
        int r;

        g.name = name;
        r = shmbus__ring_geom_check(&g);
        if (r < 0)
                return r;
        r = chan_path(ctl_path, sizeof(ctl_path), dir, name, "ctl");
        if (r < 0)
                return r;
        r = chan_path(data_path, sizeof(data_path), dir, name, "data");
        if (r < 0)
                return r;

        ctl_len = shmbus__ring_ctl_size(g.max_subs, g.max_pubs);
        data_fd = tmpfile_alloc(dir, mode, g.data_size);
        if (data_fd < 0)
                return data_fd;
        ctl_fd = tmpfile_alloc(dir, mode, ctl_len);
        if (ctl_fd < 0)
                return ctl_fd;

        ctl_map = mmap(NULL, ctl_len, PROT_READ | PROT_WRITE, MAP_SHARED, ctl_fd, 0);
        if (ctl_map == MAP_FAILED)
                return -errno;
        data_map = mmap(NULL, g.data_size, PROT_READ | PROT_WRITE, MAP_SHARED, data_fd, 0);
        if (data_map == MAP_FAILED) {
                r = -errno;
                munmap(ctl_map, ctl_len);
                return r;
        }
        r = shmbus__ring_format(ctl_map, ctl_len, data_map, g.data_size, &g);
        munmap(data_map, g.data_size);
        munmap(ctl_map, ctl_len);
        if (r < 0)
                return r;

        r = fd_link(data_fd, data_path);
        if (r < 0)
                return r;
        r = fd_link(ctl_fd, ctl_path);
        if (r < 0) {
                unlink(data_path);
                return r;
        }
        *ret_ctl_fd = TAKE_FD(ctl_fd);
        *ret_data_fd = TAKE_FD(data_fd);
        return 0;
}

SHMBUS_EXPORT int shmbus_channel_create(const char *dir, const char *name,
                                        const shmbus_opts *opts, unsigned int mode,
                                        shmbus_channel **ret_chan) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        struct shmbus_ring_geom g;
        int r;

        if (!ret_chan || (mode & ~07777u))
                return -EINVAL;
        if (opts)
                g = opts->geom;
        else
                shmbus__opts_default(&g);
        r = shmbus__channel_create_fds(dir, name, &g, mode, &ctl_fd, &data_fd);
        if (r < 0)
                return r;
        return shmbus__channel_map(ctl_fd, data_fd, SHMBUS_OPEN_PUBLISH, ret_chan);
}

int shmbus__channel_open_fds(const char *dir, const char *name, int flags, int *ret_ctl_fd,
                             int *ret_data_fd) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        char path[PATH_MAX];
        bool inspect = flags & SHMBUS_OPEN_INSPECT;
        int r;

        r = chan_path(path, sizeof(path), dir, name, "ctl");
        if (r < 0)
                return r;
        ctl_fd = open(path, (inspect ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
        if (ctl_fd < 0)
                return -errno;
        r = chan_path(path, sizeof(path), dir, name, "data");
        if (r < 0)
                return r;
        data_fd = open(path,
                       ((flags & SHMBUS_OPEN_PUBLISH) && !inspect ? O_RDWR : O_RDONLY) |
                               O_CLOEXEC | O_NOFOLLOW);
        if (data_fd < 0)
                return -errno;
        *ret_ctl_fd = TAKE_FD(ctl_fd);
        *ret_data_fd = TAKE_FD(data_fd);
        return 0;
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

SHMBUS_EXPORT int shmbus_channel_unlink(const char *dir, const char *name) {
        char path[PATH_MAX];
        int r, ret = 0;

        /* The ctl file goes first: without it the channel no longer exists. */
        r = chan_path(path, sizeof(path), dir, name, "ctl");
        if (r < 0)
                return r;
        if (unlink(path) < 0)
                ret = -errno;
        r = chan_path(path, sizeof(path), dir, name, "data");
        if (r < 0)
                return r;
        if (unlink(path) < 0 && ret == 0)
                ret = -errno;
        return ret;
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
        return chan->name;
}

SHMBUS_EXPORT size_t shmbus_channel_max_msg(const shmbus_channel *chan) {
        return chan->ring.max_msg;
}

/* ---- publishers ------------------------------------------------------------------------- */

static int64_t ms_to_ns(int timeout_ms) {
        return timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000000;
}

SHMBUS_EXPORT int shmbus_pub_new(shmbus_channel *chan, shmbus_pub **ret_pub) {
        shmbus_pub *p;
        int r;

        if (!chan || !ret_pub)
                return -EINVAL;
        if (!(chan->flags & SHMBUS_OPEN_PUBLISH) || (chan->flags & SHMBUS_OPEN_INSPECT))
                return -EACCES;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        r = shmbus__ring_pub_join(&chan->ring, &p->rp, chan->pid, getuid());
        if (r < 0) {
                free(p);
                return r;
        }
        p->chan = shmbus_channel_ref(chan);
        *ret_pub = p;
        return 0;
}

SHMBUS_EXPORT shmbus_pub *shmbus_pub_free(shmbus_pub *pub) {
        if (!pub)
                return NULL;
        shmbus__ring_pub_leave(&pub->rp);
        shmbus_channel_unref(pub->chan);
        free(pub);
        return NULL;
}

SHMBUS_EXPORT int shmbus_pub_claim(shmbus_pub *pub, size_t len, int timeout_ms, void **ret_buf) {
        if (!pub || !ret_buf)
                return -EINVAL;
        return shmbus__ring_claim(&pub->rp, len, ms_to_ns(timeout_ms), ret_buf);
}

SHMBUS_EXPORT int shmbus_pub_commit(shmbus_pub *pub) {
        if (!pub)
                return -EINVAL;
        return shmbus__ring_commit(&pub->rp);
}

SHMBUS_EXPORT int shmbus_pub_abort(shmbus_pub *pub) {
        if (!pub)
                return -EINVAL;
        return shmbus__ring_abort(&pub->rp);
}

SHMBUS_EXPORT int shmbus_pub_send(shmbus_pub *pub, const void *data, size_t len, int timeout_ms) {
        void *buf;
        int r;

        if (!pub || (!data && len))
                return -EINVAL;
        r = shmbus__ring_claim(&pub->rp, len, ms_to_ns(timeout_ms), &buf);
        if (r < 0)
                return r;
        memcpy(buf, data, len);
        return shmbus__ring_commit(&pub->rp);
}

/* ---- subscribers ------------------------------------------------------------------------ */

SHMBUS_EXPORT int shmbus_sub_new(shmbus_channel *chan, shmbus_sub **ret_sub) {
        shmbus_sub *s;
        int r;

        if (!chan || !ret_sub)
                return -EINVAL;
        if (chan->flags & SHMBUS_OPEN_INSPECT)
                return -EACCES;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = shmbus__ring_sub_join(&chan->ring, &s->rs, chan->pid, getuid());
        if (r < 0) {
                free(s);
                return r;
        }
        s->chan = shmbus_channel_ref(chan);
        s->spin_us = DEFAULT_SPIN_US;
        *ret_sub = s;
        return 0;
}

SHMBUS_EXPORT shmbus_sub *shmbus_sub_free(shmbus_sub *sub) {
        if (!sub)
                return NULL;
        shmbus__ring_sub_leave(&sub->rs);
        shmbus_channel_unref(sub->chan);
        free(sub);
        return NULL;
}

SHMBUS_EXPORT int shmbus_sub_set_spin(shmbus_sub *sub, uint32_t spin_us) {
        if (!sub)
                return -EINVAL;
        sub->spin_us = spin_us;
        return 0;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Peek, polling for spin_us and then sleeping on the futex until the deadline. */
SHMBUS_EXPORT int shmbus_sub_peek(shmbus_sub *sub, const void **ret_data, size_t *ret_len,
                                  int timeout_ms) {
        int64_t deadline = -1, spin_end = 0;
        uint32_t polls = 0;
        int r;

        if (!sub || !ret_data || !ret_len)
                return -EINVAL;
        for (;;) {
                r = shmbus__ring_peek(&sub->rs, ret_data, ret_len);
                if (r != -EAGAIN || timeout_ms == 0)
                        return r;

                if (deadline == -1) {
                        int64_t now = shmbus__now_ns();

                        spin_end = now + (int64_t)sub->spin_us * 1000;
                        if (timeout_ms > 0)
                                deadline = now + ms_to_ns(timeout_ms);
                        else
                                deadline = INT64_MAX;
                }
                /* Poll the clock only every 64 spins: the ring check is the cheap part. */
                if (++polls % 64 != 0) {
                        cpu_relax();
                        continue;
                }
                int64_t now = shmbus__now_ns();
                if (now >= deadline)
                        return -ETIMEDOUT;
                if (now < spin_end) {
                        cpu_relax();
                        continue;
                }
                r = shmbus__ring_wait_data(&sub->rs, deadline - now);
                if (r < 0 && r != -ETIMEDOUT)
                        return r;
        }
}

SHMBUS_EXPORT int shmbus_sub_release(shmbus_sub *sub) {
        if (!sub)
                return -EINVAL;
        return shmbus__ring_release(&sub->rs);
}

SHMBUS_EXPORT ssize_t shmbus_sub_recv(shmbus_sub *sub, void *buf, size_t size, int timeout_ms) {
        const void *data;
        size_t len;
        int r;

        if (!sub || (!buf && size))
                return -EINVAL;
        for (;;) {
                r = shmbus_sub_peek(sub, &data, &len, timeout_ms);
                if (r < 0)
                        return r;
                if (len > size) {
                        /* Leave the message where it is: the caller retries with more room. */
                        shmbus__ring_unpeek(&sub->rs);
                        return -EMSGSIZE;
                }
                memcpy(buf, data, len);
                r = shmbus__ring_release(&sub->rs);
                if (r == -ESTALE)
                        continue; /* overwritten while we copied: take the next one */
                if (r < 0)
                        return r;
                return (ssize_t)len;
        }
}

SHMBUS_EXPORT uint64_t shmbus_sub_lost(const shmbus_sub *sub) {
        return sub ? sub->rs.lost : 0;
}

SHMBUS_EXPORT uint64_t shmbus_sub_received(const shmbus_sub *sub) {
        return sub ? sub->rs.received : 0;
}

/* Where a subscriber stands: the first position it has not consumed. */
uint64_t shmbus__sub_position(const shmbus_sub *sub) {
        return sub->rs.pos;
}

/* The message number of the last message received (valid after one was). */
uint64_t shmbus__sub_last_seq(const shmbus_sub *sub) {
        return sub->rs.next_seq - 1;
}

/*
 * ---- for batch.c (issue 17) ----
 * The batch API (libclient/batch.c) reaches the ring objects through these
 * two accessors; they belong next to the struct definitions above, wherever
 * the channel.c split puts them.
 */
struct shmbus_ring_pub *shmbus__pub_ring(shmbus_pub *pub) {
        return &pub->rp;
}

struct shmbus_ring_sub *shmbus__sub_ring(shmbus_sub *sub) {
        return &sub->rs;
}
