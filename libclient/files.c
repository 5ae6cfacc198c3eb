/* SPDX-License-Identifier: MIT */
/*
 * A channel's files (files.h).
 *
 * A channel is created with O_TMPFILE, fully allocated, formatted (the magic
 * written last), and only then linked under its name, data file first: so a
 * NAME.ctl that exists always has a NAME.data beside it and is complete. It is
 * removed in the opposite order, NAME.ctl first, and shmbusd's NAME.meta
 * (the owner's record, never opened here) last. Files are opened O_NOFOLLOW
 * and never with more access than the flags ask for.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbus.h"

#include "util.h"

bool shmbus__channel_name_of_file(const char *file, char ret_name[SHMBUS_NAME_MAX + 1]) {
        size_t n = strlen(file);

        if (n < 5 || n - 4 > SHMBUS_NAME_MAX || strcmp(file + n - 4, ".ctl") != 0)
                return false;
        memcpy(ret_name, file, n - 4);
        ret_name[n - 4] = '\0';
        return shmbus__name_is_valid(ret_name);
}

int shmbus__channel_file_path(char *buf, size_t size, const char *dir, const char *name,
                              const char *ext) {
        int n;

        if (!dir || !shmbus__name_is_valid(name))
                return -EINVAL;
        n = snprintf(buf, size, "%s/%s.%s", dir, name, ext);
        if (n < 0 || (size_t)n >= size)
                return -ENAMETOOLONG;
        return 0;
}

/* "NAME.ext" for a valid @name. */
static int chan_file(char buf[SHMBUS_NAME_MAX + 8], const char *name, const char *ext) {
        if (!shmbus__name_is_valid(name))
                return -EINVAL;
        snprintf(buf, SHMBUS_NAME_MAX + 8, "%s.%s", name, ext);
        return 0;
}

/* A descriptor of directory @dir to resolve channel files against (once). */
static int dir_open(const char *dir) {
        int fd;

        if (!dir)
                return -EINVAL;
        fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* An unnamed, fully allocated file in @dirfd; linked under its name later. */
static int tmpfile_alloc(int dirfd, unsigned int mode, size_t len) {
        _cleanup_close_ int fd = -1;
        int r;

        fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
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

static int fd_link(int fd, int dirfd, const char *file) {
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, dirfd, file, AT_SYMLINK_FOLLOW) < 0)
                return -errno;
        return 0;
}

/* Write the channel header and slots into the two unnamed files. */
static int files_format(int ctl_fd, size_t ctl_len, int data_fd, const struct shmbus_ring_geom *g) {
        void *ctl_map, *data_map;
        int r;

        ctl_map = mmap(NULL, ctl_len, PROT_READ | PROT_WRITE, MAP_SHARED, ctl_fd, 0);
        if (ctl_map == MAP_FAILED)
                return -errno;
        data_map = mmap(NULL, g->data_size, PROT_READ | PROT_WRITE, MAP_SHARED, data_fd, 0);
        if (data_map == MAP_FAILED) {
                r = -errno;
                munmap(ctl_map, ctl_len);
                return r;
        }
        r = shmbus__ring_format(ctl_map, ctl_len, data_map, g->data_size, g);
        munmap(data_map, g->data_size);
        munmap(ctl_map, ctl_len);
        return r;
}

int shmbus__channel_create_at(int dirfd, const char *name, const struct shmbus_ring_geom *geom,
                              unsigned int mode, int *ret_ctl_fd, int *ret_data_fd) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        char ctl_file[SHMBUS_NAME_MAX + 8], data_file[SHMBUS_NAME_MAX + 8];
        struct shmbus_ring_geom g = *geom;
        size_t ctl_len;
        int r;

        g.name = name;
        r = shmbus__ring_geom_check(&g);
        if (r < 0)
                return r;
        r = chan_file(ctl_file, name, "ctl");
        if (r < 0)
                return r;
        r = chan_file(data_file, name, "data");
        if (r < 0)
                return r;

        ctl_len = shmbus__ring_ctl_size(g.max_subs, g.max_pubs);
        data_fd = tmpfile_alloc(dirfd, mode, g.data_size);
        if (data_fd < 0)
                return data_fd;
        ctl_fd = tmpfile_alloc(dirfd, mode, ctl_len);
        if (ctl_fd < 0)
                return ctl_fd;
        r = files_format(ctl_fd, ctl_len, data_fd, &g);
        if (r < 0)
                return r;

        r = fd_link(data_fd, dirfd, data_file);
        if (r < 0)
                return r;
        r = fd_link(ctl_fd, dirfd, ctl_file);
        if (r < 0) {
                unlinkat(dirfd, data_file, 0);
                return r;
        }
        *ret_ctl_fd = TAKE_FD(ctl_fd);
        *ret_data_fd = TAKE_FD(data_fd);
        return 0;
}

int shmbus__channel_create_fds(const char *dir, const char *name,
                               const struct shmbus_ring_geom *geom, unsigned int mode,
                               int *ret_ctl_fd, int *ret_data_fd) {
        _cleanup_close_ int dirfd = dir_open(dir);

        if (dirfd < 0)
                return dirfd;
        return shmbus__channel_create_at(dirfd, name, geom, mode, ret_ctl_fd, ret_data_fd);
}

int shmbus__channel_open_at(int dirfd, const char *name, int flags, int *ret_ctl_fd,
                            int *ret_data_fd) {
        _cleanup_close_ int ctl_fd = -1, data_fd = -1;
        char file[SHMBUS_NAME_MAX + 8];
        bool inspect = flags & SHMBUS_OPEN_INSPECT;
        int r;

        r = chan_file(file, name, "ctl");
        if (r < 0)
                return r;
        ctl_fd = openat(dirfd, file, (inspect ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
        if (ctl_fd < 0)
                return -errno;
        r = chan_file(file, name, "data");
        if (r < 0)
                return r;
        data_fd = openat(dirfd, file,
                         ((flags & SHMBUS_OPEN_PUBLISH) && !inspect ? O_RDWR : O_RDONLY) |
                                 O_CLOEXEC | O_NOFOLLOW);
        if (data_fd < 0)
                return -errno;
        *ret_ctl_fd = TAKE_FD(ctl_fd);
        *ret_data_fd = TAKE_FD(data_fd);
        return 0;
}

int shmbus__channel_open_fds(const char *dir, const char *name, int flags, int *ret_ctl_fd,
                             int *ret_data_fd) {
        _cleanup_close_ int dirfd = dir_open(dir);

        if (dirfd < 0)
                return dirfd;
        return shmbus__channel_open_at(dirfd, name, flags, ret_ctl_fd, ret_data_fd);
}

int shmbus__channel_unlink_at(int dirfd, const char *name) {
        char file[SHMBUS_NAME_MAX + 8];
        int r, ret = 0;

        /* The ctl file goes first: without it the channel no longer exists. */
        r = chan_file(file, name, "ctl");
        if (r < 0)
                return r;
        if (unlinkat(dirfd, file, 0) < 0)
                ret = -errno;
        r = chan_file(file, name, "data");
        if (r < 0)
                return r;
        if (unlinkat(dirfd, file, 0) < 0 && ret == 0)
                ret = -errno;
        /* shmbusd's record of the owner, if it kept one; its absence is no error. */
        r = chan_file(file, name, SHMBUS_FILE_META);
        if (r == 0 && unlinkat(dirfd, file, 0) < 0 && errno != ENOENT && ret == 0)
                ret = -errno;
        return ret;
}

SHMBUS_EXPORT int shmbus_channel_unlink(const char *dir, const char *name) {
        _cleanup_close_ int dirfd = dir_open(dir);

        if (dirfd < 0)
                return dirfd;
        return shmbus__channel_unlink_at(dirfd, name);
}
