/* SPDX-License-Identifier: MIT */
/*
 * Handing a shm directory over between daemons of different uids: the quick
 * start's shmbusd runs as root, the systemd unit's as user shmbus, and each
 * finds what the other left. Whatever cannot be used as it is gets one clear
 * message that says what to run (docs/DEPLOYMENT.md walks through it). Nothing
 * here changes ownership itself: a daemon that took over a directory another
 * uid can write would trust that uid with every channel in it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "layout.h"

/*
 * May this daemon keep channels in @dir? It must be a real directory, owned by
 * the daemon's uid (or by root, if that is the daemon's uid or the daemon may
 * still write it), and writable by nobody else: whoever can write it can swap
 * channel files. Return: 0, or -errno with @why saying what is wrong and what
 * to run.
 */
int handover_check_dir(const char *dir, char *why, size_t why_size);

/* Channel files found at adoption that belong to another uid. */
struct handover {
        unsigned n_foreign;
        uid_t uid; /* of the first */
        char names[128];
};

/* Note that channel @name could not be adopted because its files belong to @uid. */
void handover_note(struct handover *h, const char *name, uid_t uid);
/* Log, once, which channels were left and what to run to hand them over. */
void handover_report(const struct handover *h, const char *dir);
/*
 * @name has files in @dir although it is not served (a create found them):
 * write into @why why and what to run.
 */
void handover_explain_stranded(const char *dir, const char *name, char *why, size_t why_size);
