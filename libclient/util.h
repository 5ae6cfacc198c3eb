/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the library, the daemon and the CLI: scoped cleanup
 * and name validation (util.c also holds the public shmbus_version() and
 * shmbus_strerror()). Nothing here allocates or logs.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(fn) __attribute__((cleanup(fn)))

static inline void shmbus__freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(shmbus__freep)

static inline void shmbus__closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;

                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(shmbus__closep)

/* Take ownership of a value out of a cleanup-scoped variable. */
#define TAKE_PTR(p)                      \
        __extension__({                  \
                __typeof__(p) _tp = (p); \
                (p) = NULL;              \
                _tp;                     \
        })
#define TAKE_FD(fd)             \
        __extension__({         \
                int _tf = (fd); \
                (fd) = -1;      \
                _tf;            \
        })

/* 1..63 bytes of [A-Za-z0-9._-], not starting with '.': safe as a file name. */
bool shmbus__name_is_valid(const char *name);
