/* SPDX-License-Identifier: MIT */
/*
 * shmbus-bridge's routes in `shmbus-cli list` (bridge.h). The state files
 * are the bridge's, possibly of another uid, and untrusted: each is read with
 * one pread() into a local copy (a file cut short is skipped, never mapped),
 * its magic and version are checked, and every string is terminated before use.
 */
#include "bridge.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../bridge/state.h"
#include "wire.h"

#define DEFAULT_STATE_DIR "/var/lib/shmbus-bridge"
#define BOLD              "\033[1m"
#define RED               "\033[31m"
#define RESET             "\033[0m"

static cJSON *route_json(const struct bridge_state *st, bool running) {
        const struct bridge_stats *s = &st->stats;
        cJSON *r = cJSON_CreateObject();

        cJSON_AddStringToObject(r, "direction", st->kind == BRIDGE_EXPORT ? "export" : "import");
        cJSON_AddStringToObject(r, "mode", st->mode == BRIDGE_JETSTREAM ? "jetstream" : "core");
        cJSON_AddStringToObject(r, "subject", st->subject);
        cJSON_AddBoolToObject(r, "running", running);
        cJSON_AddNumberToObject(r, "msgs", (double)s->msgs);
        cJSON_AddNumberToObject(r, "bytes", (double)s->bytes);
        cJSON_AddNumberToObject(r, "lost_shmbus", (double)s->lost_shmbus);
        cJSON_AddNumberToObject(r, "dropped_nats", (double)s->dropped_nats);
        cJSON_AddNumberToObject(r, "lost_nats", (double)s->lost_nats);
        cJSON_AddNumberToObject(r, "duplicates", (double)s->duplicates);
        cJSON_AddNumberToObject(r, "reconnects", (double)s->reconnects);
        cJSON_AddNumberToObject(r, "age_max_us", (double)s->age_max_ns / 1e3);
        return r;
}

static cJSON *channel_of(cJSON *list, const char *name) {
        cJSON *c;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS)) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, WIRE_NAME);

                if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
                        return c;
        }
        return NULL;
}

void cli_bridge_annotate(cJSON *list) {
        const char *dir = getenv("SHMBUS_BRIDGE_STATE_DIR");
        struct dirent *de;
        DIR *d;

        d = opendir(dir && *dir ? dir : DEFAULT_STATE_DIR);
        if (!d)
                return;
        while ((de = readdir(d))) {
                struct bridge_state st;
                cJSON *c, *routes;
                bool running;
                int fd;

                if (!strstr(de->d_name, ".state"))
                        continue;
                fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                if (fd < 0)
                        continue;
                if (pread(fd, &st, sizeof(st), 0) != (ssize_t)sizeof(st) ||
                    st.magic != BRIDGE_STATE_MAGIC || st.version != BRIDGE_STATE_VERSION) {
                        close(fd);
                        continue;
                }
                /* The bridge holds an exclusive lock on the files of its running routes. */
                running = flock(fd, LOCK_SH | LOCK_NB) < 0;
                close(fd);
                st.channel[sizeof(st.channel) - 1] = '\0';
                st.subject[sizeof(st.subject) - 1] = '\0';
                c = channel_of(list, st.channel);
                if (!c)
                        continue;
                routes = cJSON_GetObjectItemCaseSensitive(c, "bridge");
                if (!routes)
                        routes = cJSON_AddArrayToObject(c, "bridge");
                cJSON_AddItemToArray(routes, route_json(&st, running));
        }
        closedir(d);
}

void cli_bridge_print(const struct cli_options *o, const cJSON *list) {
        const cJSON *c, *r;
        bool header = false;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS)) {
                cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(c, "bridge")) {
                        bool exp = strcmp(cli_str(r, "direction"), "export") == 0;
                        double lost = cli_num(r, "lost_shmbus") + cli_num(r, "lost_nats") +
                                      cli_num(r, "dropped_nats");

                        if (!header) {
                                printf("\n%s%-24s %-34s %10s %8s %6s%s\n", cli_color(o, BOLD),
                                       "BRIDGED CHANNEL", "ROUTE", "MSGS", "LOST", "DUPS",
                                       cli_color(o, RESET));
                                header = true;
                        }
                        printf("%-24s %s %-20s %-9s %10.0f %s%8.0f%s %6.0f%s\n",
                               cli_str(c, WIRE_NAME), exp ? "->" : "<-", cli_str(r, "subject"),
                               cli_str(r, "mode"), cli_num(r, "msgs"),
                               lost > 0 ? cli_color(o, RED) : "", lost,
                               lost > 0 ? cli_color(o, RESET) : "", cli_num(r, "duplicates"),
                               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "running"))
                                       ? ""
                                       : "  (bridge not running)");
                }
        }
}
