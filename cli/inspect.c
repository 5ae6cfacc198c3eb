/* SPDX-License-Identifier: MIT */
/*
 * The read verbs (inspect.h): fetching a list or stat reply from shmbusd or
 * from the files, message rates from two samples, and handing the result to
 * output.c or metrics.c. Rates are computed here, not by the daemon:
 * "msg_per_s" is the difference of two "published" counters over the sampling
 * interval. Channels are always sorted by name, whoever listed them.
 */
#include "inspect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "ask.h"
#include "bridge.h"
#include "cli.h"
#include "metrics.h"
#include "offline.h"
#include "output.h"
#include "util.h"
#include "wire.h"

static void sleep_for(double secs) {
        struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};

        nanosleep(&ts, NULL);
}

static int by_name(const void *a, const void *b) {
        return strcmp(cli_str(*(cJSON *const *)a, WIRE_NAME),
                      cli_str(*(cJSON *const *)b, WIRE_NAME));
}

/* Sort the "channels" of @list by name, in place. */
static int sort_channels(cJSON *list) {
        cJSON *channels = cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS);
        int n = cJSON_GetArraySize(channels);
        _cleanup_free_ cJSON **v = NULL;

        if (n < 2)
                return 0;
        v = calloc((size_t)n, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                v[i] = cJSON_DetachItemFromArray(channels, 0);
        qsort(v, (size_t)n, sizeof(*v), by_name);
        for (int i = 0; i < n; i++)
                cJSON_AddItemToArray(channels, v[i]);
        return 0;
}

/* Replace every entry of the daemon's @list by its stat reply; channels gone meanwhile drop out. */
static int add_detail(shmbus_client *c, cJSON *list) {
        cJSON *channels = cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS);
        cJSON *e = channels ? channels->child : NULL;

        while (e) {
                cJSON *next = e->next, *stat = NULL;
                int r = ask_request(c, WIRE_OP_STAT, cli_str(e, WIRE_NAME), &stat);

                if (r == -ENOENT)
                        cJSON_Delete(cJSON_DetachItemViaPointer(channels, e));
                else if (r < 0)
                        return r;
                else
                        cJSON_ReplaceItemViaPointer(channels, e, stat);
                e = next;
        }
        return 0;
}

/* The daemon's own counters as @list's INSPECT_DAEMON; none from a daemon without "stats". */
static int add_daemon_stats(shmbus_client *c, cJSON *list) {
        cJSON *stats = NULL;
        int r = ask_request(c, WIRE_OP_STATS, NULL, &stats);

        if (r == -EOPNOTSUPP)
                return 0;
        if (r < 0)
                return r;
        cJSON_AddItemToObject(list, INSPECT_DAEMON, stats);
        return 0;
}

/* All channels from the daemon, with one connection; 1 if it is not running. */
static int daemon_snapshot(const struct cli_options *o, bool detail, cJSON **ret_list) {
        _cleanup_(cli_client_freep) shmbus_client *c = NULL;
        _cleanup_cjson_ cJSON *list = NULL;
        int r;

        r = ask_connect(o, &c);
        if (r == -ECONNREFUSED)
                return 1;
        if (r < 0)
                return r;
        r = ask_request(c, WIRE_OP_LIST, NULL, &list);
        if (r == 0 && detail)
                r = add_detail(c, list);
        if (r == 0 && detail)
                r = add_daemon_stats(c, list);
        if (r < 0)
                return r;
        *ret_list = TAKE_PTR(list);
        return 0;
}

int inspect_snapshot(const struct cli_options *o, bool detail, bool report, cJSON **ret_list,
                     bool *ret_offline) {
        _cleanup_cjson_ cJSON *list = NULL;
        int r = daemon_snapshot(o, detail, &list);

        *ret_offline = r == 1;
        if (r == 1)
                r = offline_list(offline_shm_dir(o), detail, report, &list);
        if (r < 0)
                return r;
        r = sort_channels(list);
        if (r < 0)
                return r;
        *ret_list = TAKE_PTR(list);
        return 0;
}

void inspect_say_error(const struct cli_options *o, const char *verb, int r, bool offline) {
        if (offline && (r == -EACCES || r == -EPERM))
                cli_err("shmbusd is not running, and the channel files in %s cannot be read "
                        "(%s): start shmbusd, or run this as root or as the channels' owner",
                        offline_shm_dir(o), shmbus_strerror(r));
        else if (r == -ECONNREFUSED)
                cli_err("shmbusd is not running");
        else
                cli_err("%s: %s", verb, shmbus_strerror(r));
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

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS)) {
                if (strcmp(cli_str(c, WIRE_NAME), name) == 0)
                        return cli_num(c, WIRE_PUBLISHED);
        }
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

/* "msg_per_s": null on every channel: not measured (list --json without --rate). */
static void add_no_rates(cJSON *now) {
        cJSON *c;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(now, WIRE_CHANNELS))
                cJSON_AddNullToObject(c, CLI_MSG_PER_S);
}

/* Two lists @secs apart, the second with rates; unreadable channels are reported once. */
static int sample_list(const struct cli_options *o, double secs, cJSON **ret_list,
                       bool *ret_offline) {
        _cleanup_cjson_ cJSON *before = NULL;
        cJSON *now = NULL;
        int r;

        r = inspect_snapshot(o, false, false, &before, ret_offline);
        if (r < 0)
                return r;
        sleep_for(secs);
        r = inspect_snapshot(o, false, true, &now, ret_offline);
        if (r < 0)
                return r;
        add_rates(now, before, secs);
        *ret_list = now;
        return 0;
}

int verb_list(const struct cli_options *o, char **args) {
        _cleanup_cjson_ cJSON *list = NULL;
        bool offline = false;
        int r;

        /* Tables show a rate; JSON is often for scripts, which should not wait for one unasked. */
        if (!o->json || o->rate || o->interval > 0) {
                r = sample_list(o, o->interval > 0 ? o->interval : 0.25, &list, &offline);
        } else {
                r = inspect_snapshot(o, false, true, &list, &offline);
                if (r == 0)
                        add_no_rates(list);
        }
        if (r < 0) {
                inspect_say_error(o, "list", r, offline);
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

/* The line above each refresh of stats --watch: when it was taken, and from where. */
static void print_watch_header(const struct cli_options *o, double interval, bool offline) {
        char when[64];
        time_t now = time(NULL);
        struct tm tm;

        localtime_r(&now, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", &tm);
        printf("%s  every %gs%s\n", when, interval,
               offline ? "  (shmbusd not running: from the files)" : "");
}

/* stats --format openmetrics|prometheus: every counter once, no rates (Prometheus makes those). */
static int stats_metrics(const struct cli_options *o) {
        _cleanup_cjson_ cJSON *list = NULL;
        bool offline = false;
        int r;

        r = inspect_snapshot(o, true, true, &list, &offline);
        if (r < 0) {
                inspect_say_error(o, "stats", r, offline);
                return cli_exit_code(r);
        }
        if (offline)
                offline_say(o);
        r = metrics_write(stdout, list, offline, o->format == CLI_FORMAT_OPENMETRICS);
        if (r < 0 || fflush(stdout) != 0) {
                cli_err("stats: writing the metrics failed");
                return EXIT_FAIL;
        }
        return EXIT_OK;
}

/* Which --format and option combinations stats takes; say why not otherwise. */
static int stats_check_options(const struct cli_options *o) {
        bool metrics = o->format == CLI_FORMAT_OPENMETRICS || o->format == CLI_FORMAT_PROMETHEUS;

        if (o->format_set && o->format != CLI_FORMAT_TEXT && !metrics) {
                cli_err("stats: --format takes openmetrics or prometheus (use --json for JSON)");
                return -EINVAL;
        }
        if (metrics && (o->json || o->watch)) {
                cli_err("stats: --format %s prints counters once; it does not go with %s",
                        o->format == CLI_FORMAT_OPENMETRICS ? "openmetrics" : "prometheus",
                        o->json ? "--json" : "--watch");
                return -EINVAL;
        }
        return 0;
}

int verb_stats(const struct cli_options *o, char **args) {
        double interval = o->interval > 0 ? o->interval : 1.0;
        _cleanup_cjson_ cJSON *prev = NULL;
        bool offline = false, said = false;
        int r;

        if (stats_check_options(o) < 0)
                return EXIT_USAGE;
        if (o->format == CLI_FORMAT_OPENMETRICS || o->format == CLI_FORMAT_PROMETHEUS)
                return stats_metrics(o);
        r = inspect_snapshot(o, false, false, &prev, &offline);
        if (r < 0) {
                inspect_say_error(o, "stats", r, offline);
                return cli_exit_code(r);
        }
        cli_catch_stop();
        for (long n = 0; !cli_stopped() && (o->count <= 0 || n < o->count); n++) {
                _cleanup_cjson_ cJSON *now = NULL;
                char when[40];

                sleep_for(interval);
                r = inspect_snapshot(o, false, !said, &now, &offline);
                if (r < 0) {
                        inspect_say_error(o, "stats", r, offline);
                        return cli_exit_code(r);
                }
                if (offline && !said)
                        offline_say(o);
                said |= offline;
                add_rates(now, prev, interval);
                if (o->json) {
                        cJSON_AddStringToObject(now, CLI_TIME, cli_now_rfc3339(when, sizeof(when)));
                        cJSON_AddBoolToObject(now, CLI_OFFLINE, offline);
                        output_json_line(now);
                } else {
                        /* Home and clear the screen, only where there is a screen. */
                        if (o->watch && cli_terminal_is_smart(STDOUT_FILENO))
                                fputs("\033[H\033[2J", stdout);
                        if (o->watch)
                                print_watch_header(o, interval, offline);
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
                if (r == -ENOENT && !offline && offline_has_files(offline_shm_dir(o), name))
                        /* Not "no channel" alone: its files are there, unserved. */
                        cli_err("no channel %s served, but its files are in %s: shmbusd did not "
                                "adopt them, and its log (journalctl -u shmbusd) says why and "
                                "what to run",
                                name, offline_shm_dir(o));
                else if (r == -ENOENT)
                        cli_err("no channel %s", name);
                else if (offline && (r == -EACCES || r == -EPERM))
                        inspect_say_error(o, "status", r, offline);
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

                cJSON_AddStringToObject(v, CLI_VERSION_CLI, PACKAGE_VERSION);
                cJSON_AddStringToObject(v, CLI_VERSION_LIBRARY, shmbus_version());
                if (hello) {
                        cJSON_AddStringToObject(v, CLI_VERSION_DAEMON,
                                                cli_str(hello, WIRE_SERVER_VERSION));
                        cJSON_AddNumberToObject(v, WIRE_PROTOCOL, cli_num(hello, WIRE_PROTOCOL));
                } else {
                        cJSON_AddNullToObject(v, CLI_VERSION_DAEMON);
                }
                output_json(v);
        } else {
                printf("shmbus-cli %s (libshmbus %s)\n", PACKAGE_VERSION, shmbus_version());
                if (hello)
                        printf("shmbusd %s (protocol %.0f)\n", cli_str(hello, WIRE_SERVER_VERSION),
                               cli_num(hello, WIRE_PROTOCOL));
                else
                        printf("shmbusd not running\n");
        }
        return EXIT_OK;
}
