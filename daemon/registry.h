/* SPDX-License-Identifier: MIT */
/*
 * The channel registry: every channel this daemon serves, each mapped once
 * (as a publisher would, so the daemon can repair it). Invariants: names are
 * unique; a channel is in the registry exactly while its mapping is held;
 * every channel in the shm directory that validates is adopted at start-up
 * (up to max_channels), and files that do not validate are logged and left
 * alone. An adopted channel's owner and grants come from its meta file; one
 * without a trusted meta file is owned by whoever owns its files (logged).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmbus.h"

#include "grants.h"
#include "layout.h"

/* What a subscriber slot is stuck on, and since when (kept by the liveness sweep). */
struct stuck {
        uint64_t pos;
        uint64_t stamp;
        int64_t since; /* 0: not stuck */
        int64_t seen;  /* when the sweep last looked at the slot (0: never) */
        bool warned;   /* told the log a live publisher holds the claim */
};

/* How long a subscriber has held publishers back, and where (kept by evict.c). */
struct hold {
        uint64_t pos;
        int64_t since; /* 0: not holding anyone back */
};

struct chan {
        char name[SHMBUS_NAME_MAX + 1];
        shmbus_channel *map;
        uid_t owner; /* the creator; kept across restarts in NAME.meta (meta.h) */
        gid_t group;
        ino_t data_ino;       /* the data file the daemon made (integrity.h) */
        struct grants grants; /* what the creator granted to others */
        /* For unblock: one per subscriber slot. */
        struct stuck *stuck;
        /* Slots seen active without an owner pid in the last sweep (subs, then pubs). */
        bool *orphan;
        /* For eviction: one per subscriber slot; the timeout its create request asked for (meta.h).
         */
        struct hold *hold;
        /*
         * The ctl file as mapped: a name that leads elsewhere is a channel gone
         * (vanish.c); one whose size changed was resized by a member (integrity.h).
         */
        dev_t ctl_dev;
        ino_t ctl_ino;
        bool has_slow_subscriber_timeout;
        bool evict_refused; /* logged that a slow subscriber was too old to evict */
        uint32_t slow_subscriber_timeout_ms;
};

/* What the registry and the liveness sweep have done since start-up (the "stats" op). */
struct registry_counters {
        uint64_t adopted;     /* channels adopted at start-up */
        uint64_t not_adopted; /* channel files found at start-up that were not (logged) */
        uint64_t released;    /* slots of dead or vanished members released */
        uint64_t unblocked;   /* claims of dead writers padded over */
};

struct registry {
        struct chan **chans;
        unsigned n_chans;
        /* Where the liveness sweep goes on at its next tick (liveness.h). */
        unsigned sweep_chan;
        uint32_t sweep_slot;
        struct registry_counters counts;
};

/* Free every channel's mapping (the files stay). */
void registry_deinit(struct registry *reg);
struct chan *registry_find(const struct registry *reg, const char *name);
/*
 * Map the channel whose files are open as @ctl_fd and @data_fd (read-write)
 * and add it as @name, owned by @owner and @group. The descriptors stay the
 * caller's. On success *@ret_chan is the new channel.
 */
int registry_add(struct registry *reg, const char *name, int ctl_fd, int data_fd, uid_t owner,
                 gid_t group, struct chan **ret_chan);
/* Unmap @c and drop it from the registry (the files are the caller's business). */
void registry_remove(struct registry *reg, struct chan *c);
/*
 * Adopt the channels a previous daemon left in the shm directory open as
 * @dirfd (@shm_dir, for messages), up to @max_channels in all.
 */
void registry_adopt(struct registry *reg, int dirfd, const char *shm_dir, uint32_t max_channels);
