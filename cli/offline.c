/* SPDX-License-Identifier: MIT */
/*
 * Reading channel files when shmbusd is down (offline.h). Everything is mapped
 * with SHMBUS_OPEN_INSPECT: looking never joins a channel or changes it, nor
 * frees the slots of dead processes (that is the daemon's job).
 */
#include "offline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Whether /proc says @pid is a zombie; false if it cannot tell. */
static bool pid_is_zombie(pid_t pid) {
        char path[64], buf[512];
        _cleanup_close_ int fd = -1;
        ssize_t n;
        char *paren;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        /* "PID (COMM) STATE ...": COMM may hold anything, so look after its last ')'. */
        paren = strrchr(buf, ')');
        return paren && paren[1] == ' ' && paren[2] == 'Z';
}

/*
 * Whether the process that holds a slot still runs, as the daemon's sweep
 * judges it: zombies count as gone. A pid of 0 (not recorded) cannot be
 * checked and counts as alive; EPERM means it runs as someone else. A pid from
 * another pid namespace is judged by this one's: it may read as gone, or as
 * some unrelated process.
 */
static bool pid_is_alive(double pid) {
        if (pid <= 0 || pid > INT_MAX)
                return true;
        if (kill((pid_t)pid, 0) < 0 && errno != EPERM)
                return false;
        return !pid_is_zombie((pid_t)pid);
}

/* Take the members of dead processes out of @members; return how many there were. */
static int drop_dead(cJSON *members, double *max_lag) {
        cJSON *e = members ? members->child : NULL;
        int dead = 0;

        while (e) {
                cJSON *next = e->next;

                if (!pid_is_alive(cli_num(e, WIRE_PID))) {
                        cJSON_Delete(cJSON_DetachItemViaPointer(members, e));
                        dead++;
                } else if (max_lag && cli_num(e, WIRE_LAG_BYTES) > *max_lag) {
                        *max_lag = cli_num(e, WIRE_LAG_BYTES);
                }
                e = next;
        }
        return dead;
}

static void set_number(cJSON *o, const char *key, double v) {
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, cJSON_CreateNumber(v));
}

/* Count only live members (offline.h); without @detail, drop the member lists afterwards. */
static int count_live(cJSON *stats, bool detail) {
        double max_lag = 0;
        int dead_subs, dead_pubs;

        dead_subs = drop_dead(cJSON_GetObjectItemCaseSensitive(stats, WIRE_SUBSCRIBERS), &max_lag);
        dead_pubs = drop_dead(cJSON_GetObjectItemCaseSensitive(stats, WIRE_PUBLISHERS), NULL);
        set_number(stats, WIRE_SUBSCRIBERS_ACTIVE,
                   cli_num(stats, WIRE_SUBSCRIBERS_ACTIVE) - dead_subs);
        set_number(stats, WIRE_PUBLISHERS_ACTIVE,
                   cli_num(stats, WIRE_PUBLISHERS_ACTIVE) - dead_pubs);
        set_number(stats, WIRE_MAX_LAG_BYTES, max_lag);
        if (!cJSON_AddNumberToObject(stats, CLI_DEAD_SUBS, dead_subs) ||
            !cJSON_AddNumberToObject(stats, CLI_DEAD_PUBS, dead_pubs))
                return -ENOMEM;
        if (!detail) {
                cJSON_DeleteItemFromObjectCaseSensitive(stats, WIRE_SUBSCRIBERS);
                cJSON_DeleteItemFromObjectCaseSensitive(stats, WIRE_PUBLISHERS);
        }
        return 0;
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
        /*
         * The owner is whoever owns the ctl file, as the daemon records it; 0 if
         * unknown. The member lists are always made: liveness is judged on them.
         */
        shmbus__stats_json(stats, &ch->ring, ch->name, stat(ctl, &st) == 0 ? st.st_uid : 0, true);
        r = count_live(stats, detail);
        if (r < 0)
                return r;
        *ret_stats = TAKE_PTR(stats);
        return 0;
}

/* One line for each channel that could not be read, with its error. */
static void report_failed(const cJSON *failed) {
        const cJSON *e;

        cJSON_ArrayForEach(e, failed) cli_err("%s: %s", cli_str(e, WIRE_NAME),
                                              shmbus_strerror((int)cli_num(e, WIRE_ERRNO)));
}

bool offline_has_files(const char *dir, const char *name) {
        char ctl[PATH_MAX];
        struct stat st;
        int n = snprintf(ctl, sizeof(ctl), "%s/%s.ctl", dir, name);

        return n > 0 && (size_t)n < sizeof(ctl) && lstat(ctl, &st) == 0;
}

int offline_list(const char *dir, bool detail, bool report, cJSON **ret_list) {
        _cleanup_(closedirp) DIR *d = opendir(dir);
        int dir_errno = d ? 0 : errno;
        _cleanup_cjson_ cJSON *list = cJSON_CreateObject();
        _cleanup_cjson_ cJSON *failed = cJSON_CreateArray();
        cJSON *channels = cJSON_AddArrayToObject(list, WIRE_CHANNELS);
        int first_error = 0;
        struct dirent *de;

        if (!channels || !failed)
                return -ENOMEM;
        if (dir_errno && dir_errno != ENOENT)
                return -dir_errno;
        while (d && (de = readdir(d))) {
                char name[SHMBUS_NAME_MAX + 1];
                cJSON *stats, *f;
                int r;

                if (!shmbus__channel_name_of_file(de->d_name, name))
                        continue;
                r = offline_stats(dir, name, detail, &stats);
                if (r == 0) {
                        cJSON_AddItemToArray(channels, stats);
                        continue;
                }
                if (r == -ENOMEM)
                        return r;
                first_error = first_error ? first_error : r;
                /* Kept until the end: whether to report depends on whether any channel was read. */
                f = cJSON_CreateObject();
                if (!f || !cJSON_AddStringToObject(f, WIRE_NAME, name) ||
                    !cJSON_AddNumberToObject(f, WIRE_ERRNO, r)) {
                        cJSON_Delete(f);
                        return -ENOMEM;
                }
                cJSON_AddItemToArray(failed, f);
        }
        if (first_error && cJSON_GetArraySize(channels) == 0)
                return first_error;
        if (report)
                report_failed(failed);
        *ret_list = TAKE_PTR(list);
        return 0;
}
