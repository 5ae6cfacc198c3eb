/* SPDX-License-Identifier: MIT */
/*
 * The read verbs (inspect.h): fetching a list or stat reply from shmbusd or
 * from the files, message rates from two samples, and handing the result to
 * output.c. Rates are computed here, not by the daemon: "msg_per_s" is the
 * difference of two "published" counters over the sampling interval.
 */
#include "inspect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "ask.h"
#include "bridge.h"
#include "cli.h"
#include "offline.h"
#include "output.h"
#include "util.h"
#include "wire.h"

static void sleep_for(double secs) {
        struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};

        nanosleep(&ts, NULL);
}

/* All channels: {"channels": [...]} from the daemon, or from the files if it is down. */
static int get_list(const struct cli_options *o, cJSON **ret_list, bool *ret_offline) {
        int r = ask_daemon(o, WIRE_OP_LIST, NULL, ret_list);

        *ret_offline = r == 1;
        if (r != 1)
                return r;
        return offline_list(offline_shm_dir(o), ret_list);
}

/* One channel's stat reply, from the daemon or from its files. */
static int get_status(const struct cli_options *o, const char *name, cJSON **ret_stats,
                      bool *ret_offline) {
        int r = ask_daemon(o, WIRE_OP_STAT, name, ret_stats);

        *ret_offline = r == 1;
        if (r != 1)
                return r;
        return offline_stats(offline_shm_dir(o), name, true, ret_stats);
}

static double published_of(const cJSON *list, const char *name) {
        const cJSON *c;

        cJSON_ArrayForEach(c,
                           cJSON_GetObjectItemCaseSensitive(
                                   list, WIRE_CHANNELS)) if (strcmp(cli_str(c, WIRE_NAME), name) ==
                                                             0) return cli_num(c, WIRE_PUBLISHED);
        return -1;
}

/* Add "msg_per_s" to every channel of @now, from @before taken @secs earlier. */
static void add_rates(cJSON *now, const cJSON *before, double secs) {
        cJSON *c;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(now, WIRE_CHANNELS)) {
                double prev = published_of(before, cli_str(c, WIRE_NAME));

                cJSON_AddNumberToObject(
                        c, CLI_MSG_PER_S,
                        prev >= 0 && secs > 0 ? (cli_num(c, WIRE_PUBLISHED) - prev) / secs : 0);
        }
}

/* Two lists @secs apart, the second with rates. */
static int sample_list(const struct cli_options *o, double secs, cJSON **ret_list,
                       bool *ret_offline) {
        _cleanup_cjson_ cJSON *before = NULL;
        cJSON *now = NULL;
        int r;

        r = get_list(o, &before, ret_offline);
        if (r < 0)
                return r;
        sleep_for(secs);
        r = get_list(o, &now, ret_offline);
        if (r < 0)
                return r;
        add_rates(now, before, secs);
        *ret_list = now;
        return 0;
}

int verb_list(const struct cli_options *o, char **args) {
        _cleanup_cjson_ cJSON *list = NULL;
        bool offline;
        int r;

        r = sample_list(o, o->interval > 0 ? o->interval : 0.25, &list, &offline);
        if (r < 0) {
                if (r == -ECONNREFUSED)
                        cli_err("shmbusd is not running");
                else
                        cli_err("list: %s", shmbus_strerror(r));
                return cli_exit_code(r);
        }
        if (offline)
                offline_say(o);
        cli_bridge_annotate(list);
        if (o->json) {
                cJSON_AddBoolToObject(list, CLI_OFFLINE, offline);
                output_json(list);
        } else {
                output_list_table(o, list);
                cli_bridge_print(o, list);
        }
        return EXIT_OK;
}

int verb_stats(const struct cli_options *o, char **args) {
        double interval = o->interval > 0 ? o->interval : 1.0;
        _cleanup_cjson_ cJSON *prev = NULL;
        bool offline, said = false;
        int r;

        r = get_list(o, &prev, &offline);
        if (r < 0) {
                cli_err("stats: %s", shmbus_strerror(r));
                return cli_exit_code(r);
        }
        cli_catch_stop();
        for (long n = 0; !cli_stopped() && (o->count <= 0 || n < o->count); n++) {
                _cleanup_cjson_ cJSON *now = NULL;

                sleep_for(interval);
                r = get_list(o, &now, &offline);
                if (r < 0) {
                        cli_err("stats: %s", shmbus_strerror(r));
                        return cli_exit_code(r);
                }
                if (offline && !said)
                        offline_say(o);
                said |= offline;
                add_rates(now, prev, interval);
                if (o->json) {
                        output_json_line(now);
                } else {
                        if (o->watch && isatty(STDOUT_FILENO))
                                fputs("\033[H\033[2J", stdout); /* home, clear screen */
                        output_list_table(o, now);
                        if (o->watch)
                                putchar('\n');
                }
                fflush(stdout);
                cJSON_Delete(prev);
                prev = TAKE_PTR(now);
                if (!o->watch)
                        break;
        }
        return EXIT_OK;
}

int verb_status(const struct cli_options *o, char **args) {
        const char *name = args[0];
        _cleanup_cjson_ cJSON *s = NULL;
        bool offline;
        int r;

        r = get_status(o, name, &s, &offline);
        if (r < 0) {
                if (r == -ENOENT)
                        cli_err("no channel %s", name);
                else
                        cli_err("status %s: %s", name, shmbus_strerror(r));
                return cli_exit_code(r);
        }
        if (offline)
                offline_say(o);
        if (o->json) {
                cJSON_AddBoolToObject(s, CLI_OFFLINE, offline);
                output_json(s);
        } else {
                output_status(o, s);
        }
        return EXIT_OK;
}

int verb_version(const struct cli_options *o, char **args) {
        _cleanup_cjson_ cJSON *hello = NULL;

        /* On any failure hello stays NULL: the daemon then reads as not running. */
        ask_daemon(o, WIRE_OP_HELLO, NULL, &hello);
        if (o->json) {
                _cleanup_cjson_ cJSON *v = cJSON_CreateObject();

                cJSON_AddStringToObject(v, CLI_VERSION_CLI, shmbus_version());
                if (hello) {
                        cJSON_AddStringToObject(v, CLI_VERSION_DAEMON,
                                                cli_str(hello, WIRE_SERVER_VERSION));
                        cJSON_AddNumberToObject(v, WIRE_PROTOCOL, cli_num(hello, WIRE_PROTOCOL));
                } else {
                        cJSON_AddNullToObject(v, CLI_VERSION_DAEMON);
                }
                output_json(v);
        } else {
                printf("shmbus-cli %s\n", shmbus_version());
                if (hello)
                        printf("shmbusd %s (protocol %.0f)\n", cli_str(hello, WIRE_SERVER_VERSION),
                               cli_num(hello, WIRE_PROTOCOL));
                else
                        printf("shmbusd not running\n");
        }
        return EXIT_OK;
}
