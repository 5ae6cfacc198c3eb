/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the recording reader (cli/recording.c), which replay and
 * replay --dump run on files anyone may hand them. Whatever the bytes, it
 * must stop cleanly: records it hands out are consistent with the channels
 * defined before them, and every early stop says why.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/recording.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct rec_reader r;
        struct rec_item it;
        char path[64];
        int fd, ret;

        if (size > 1 << 20)
                return 0;
        /* The reader takes a path, as replay does: a memfd reached through /proc. */
        fd = memfd_create("recording", MFD_CLOEXEC);
        if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ret = rec_reader_open(&r, path);
        while (ret == 0 && (ret = rec_reader_next(&r, &it)) > 0) {
                if (it.type == REC_MESSAGE &&
                    (it.msg.len < 1 || it.msg.len > it.msg.channel->max_msg ||
                     it.msg.channel->id >= r.n_channels))
                        abort(); /* handed out a message its channel cannot hold */
                if (it.type == REC_MESSAGE)
                        for (uint32_t i = 0; i < it.msg.len; i++)
                                (void)*(volatile const uint8_t *)&it.msg.data[i];
        }
        if (ret < 0 && ret != -ENOMEM && r.why[0] == '\0')
                abort(); /* every early stop says why */
        rec_reader_close(&r);
        close(fd);
        return 0;
}
