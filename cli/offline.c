/* SPDX-License-Identifier: MIT */
/*
 * Reading channel files when shmbusd is down (offline.h). Everything is mapped
 * with SHMBUS_OPEN_INSPECT: looking never joins a channel or changes it.
 */
#include "offline.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "shmbus.h"

#include "channel.h"
#include "cli.h"
#include "stats.h"
#include "util.h"
#include "wire.h"

const char *offline_shm_dir(const struct cli_options *o) {
        return o->shm_dir ? o->shm_dir : WIRE_DEFAULT_SHM_DIR;
}

void offline_say(const struct cli_options *o) {
        cli_err("shmbusd is not running: reading channel files in %s read-only",
                offline_shm_dir(o));
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

int offline_stats(const char *dir, const char *name, bool detail, cJSON **ret_stats) {
        _cleanup_(cli_channel_unrefp) shmbus_channel *ch = NULL;
        _cleanup_cjson_ cJSON *stats = NULL;
        char ctl[PATH_MAX];
        struct stat st;
        int n, r;

        r = shmbus_channel_open(dir, name, SHMBUS_OPEN_INSPECT, &ch);
        if (r < 0)
                return r;
        n = snprintf(ctl, sizeof(ctl), "%s/%s.ctl", dir, name);
        if (n < 0 || (size_t)n >= sizeof(ctl))
                return -ENAMETOOLONG;
        stats = cJSON_CreateObject();
        if (!stats)
                return -ENOMEM;
        /* The owner is whoever owns the ctl file, as the daemon records it; 0 if unknown. */
        shmbus__stats_json(stats, &ch->ring, ch->name, stat(ctl, &st) == 0 ? st.st_uid : 0, detail);
        *ret_stats = TAKE_PTR(stats);
        return 0;
}

int offline_list(const char *dir, cJSON **ret_list) {
        _cleanup_(closedirp) DIR *d = opendir(dir);
        _cleanup_cjson_ cJSON *list = cJSON_CreateObject();
        cJSON *channels = cJSON_AddArrayToObject(list, WIRE_CHANNELS);
        struct dirent *de;

        if (!channels)
                return -ENOMEM;
        while (d && (de = readdir(d))) {
                char name[SHMBUS_NAME_MAX + 1];
                cJSON *stats;
                int r;

                if (!shmbus__channel_name_of_file(de->d_name, name))
                        continue;
                r = offline_stats(dir, name, false, &stats);
                if (r < 0)
                        cli_err("%s: %s", name, shmbus_strerror(r));
                else
                        cJSON_AddItemToArray(channels, stats);
        }
        *ret_list = TAKE_PTR(list);
        return 0;
}
