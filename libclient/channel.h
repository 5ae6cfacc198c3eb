/* SPDX-License-Identifier: MIT */
/*
 * The channel object shared by the library's modules, the daemon and the CLI:
 * two mappings, the ring attached to them, and a reference count.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "shmbus.h"

#include "ring.h"

struct shmbus_channel {
        atomic_uint refs;
        int flags; /* SHMBUS_OPEN_* it was mapped with */
        pid_t pid; /* our pid as the daemon sees it (pid namespaces), stamped on slots */
        void *ctl_map;
        size_t ctl_len;
        void *data_map;
        size_t data_len;
        struct shmbus_ring ring;
        char name[SHMBUS_NAME_MAX + 1];
};

void shmbus__opts_default(struct shmbus_ring_geom *g);
bool shmbus__channel_name_of_file(const char *file, char ret_name[SHMBUS_NAME_MAX + 1]);
const struct shmbus_ring_geom *shmbus__opts_geom(const shmbus_opts *opts);
int shmbus__channel_map(int ctl_fd, int data_fd, int flags, shmbus_channel **ret_chan);
int shmbus__channel_create_fds(const char *dir, const char *name,
                               const struct shmbus_ring_geom *geom, unsigned int mode,
                               int *ret_ctl_fd, int *ret_data_fd);
int shmbus__channel_open_fds(const char *dir, const char *name, int flags, int *ret_ctl_fd,
                             int *ret_data_fd);
uint64_t shmbus__sub_position(const shmbus_sub *sub);
uint64_t shmbus__sub_last_seq(const shmbus_sub *sub);

/* The ring objects under the public ones, for batch.c (issue 17). */
struct shmbus_ring_pub *shmbus__pub_ring(shmbus_pub *pub);
struct shmbus_ring_sub *shmbus__sub_ring(shmbus_sub *sub);
