/* SPDX-License-Identifier: MIT */
/*
 * shmbus-cli: see and touch the bus. Read verbs ask shmbusd, or, when it is
 * not running, map the channel files read-only themselves (and say so). Every
 * read verb has --json with the field names of docs/PROTOCOL.md. Exit codes
 * are listed in usage() and shmbus-cli(1).
 *
 * This file owns the command line: it parses the options, picks the verb from
 * the verb table, checks its arguments and runs it. The verbs live in
 * inspect.c (list, stats, status, version), tail.c, pub.c, admin.c (create,
 * delete), serve.c (metrics), record.c and replay.c; help is here, because it
 * reads the table.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus.h"

#include "admin.h"
#include "cli.h"
#include "inspect.h"
#include "pub.h"
#include "record.h"
#include "replay.h"
#include "serve.h"
#include "tail.h"
#include "util.h"
#include "wire.h"

struct verb {
        const char *name;
        int (*run)(const struct cli_options *o, char **args);
        int min_args, max_args;
        bool takes_channel; /* then the channel is the first argument */
        const char *synopsis, *text;
};

static int verb_help(const struct cli_options *o, char **args);

/* record follows at most this many channels. */
#define REC_ARGS_MAX 64

static const struct verb verbs[] = {
        {"list", verb_list, 0, 0, false, "list [--json [--rate]] [--interval SEC]",
         "Channels, sorted by name, with policy, ring size, active publishers and\n"
         "subscribers, messages per second (sampled over --interval, default 0.25 s), drops\n"
         "(lost + unblocked) and the largest subscriber lag. With --json the counters are\n"
         "printed at once and msg_per_s is null, unless --rate or --interval asks for the\n"
         "two samples. Reads the files read-only when shmbusd is down.\n"},
        {"status", verb_status, 1, 1, true, "status CHANNEL [--json]",
         "Geometry and counters of one channel, and every subscriber (pid, uid, position,\n"
         "lag, received, lost, corrupt) and publisher (pid, uid, published, waits, aborts).\n"
         "Positions and lags are in bytes.\n"},
        {"stats", verb_stats, 0, 0, false,
         "stats [--watch] [--interval SEC] [--count N] [--json | --format openmetrics|prometheus]",
         "The channel list with rates over --interval (default 1 s); --watch refreshes until\n"
         "Ctrl-C or --count refreshes, under a line with the time. With --json, one JSON\n"
         "object a line, with \"time\" and \"offline\". --format openmetrics or prometheus\n"
         "prints every counter once in that exposition format (docs/METRICS.md), for\n"
         "node_exporter's textfile collector.\n"},
        {"tail", verb_tail, 1, 64, true,
         "tail CHANNEL... [-n N] [--follow] [--tethered] [--format text|hex|json]",
         "Print the last N messages still in the ring (default 10), then with --follow every\n"
         "new one until Ctrl-C. text escapes unprintable bytes; json (also --json) prints\n"
         "{\"seq\", \"len\", \"text\" or \"hex\"} a line. With several channels, each line\n"
         "starts with its channel's name (json: a \"channel\" member), and --follow waits\n"
         "on all of them at once. Untethered: never slows a publisher, and counts what it\n"
         "misses; --tethered reads losslessly instead.\n"},
        {"pub", verb_pub, 1, 2, true,
         "pub CHANNEL [MESSAGE|-] [--whole] [--create] [--timeout MS] [--json]",
         "Publish MESSAGE, or read stdin: one message a line (empty lines are skipped), or\n"
         "with --whole all of stdin as one message. --create makes the channel if missing.\n"
         "--json prints {\"name\", \"sent\", \"bytes\"} at the end, and \"error\" on failure.\n"},
        {"record", verb_record, 1, REC_ARGS_MAX, true,
         "record CHANNEL... -o FILE [--count N] [--duration SEC] [--tethered] [--json]",
         "Write every message of the channels to FILE (docs/RECORDING.md; -o - for stdout),\n"
         "with its channel, message number and receipt times, until Ctrl-C, N messages or\n"
         "SEC seconds. On exit it says how many messages and bytes it recorded and how many\n"
         "each channel lost (--json: one object on stdout). Untethered: it never slows a\n"
         "publisher, and what it misses is counted and recorded as a loss; --tethered\n"
         "records losslessly on a block channel instead, holding publishers back.\n"},
        {"replay", verb_replay, 1, 1, false,
         "replay FILE [--speed X | --as-fast-as-possible] [--map OLD:NEW]... [--create]\n"
         "                       [--timeout MS] [--json] | replay FILE --dump",
         "Publish a recording's messages again, with the recorded gaps between them divided\n"
         "by X (default 1), or without waiting. --map renames a channel (repeatable);\n"
         "--create makes missing channels with the recorded geometry. --dump prints the\n"
         "recording as JSON lines instead. A recording cut short replays every whole\n"
         "message before the cut, says where it stopped, and exits 8.\n"},
        {"create", verb_create, 1, 1, true,
         "create CHANNEL [--capacity BYTES] [--max-msg BYTES] [--policy block|overwrite]\n"
         "                       [--max-subscribers N] [--max-publishers N]\n"
         "                       [--allow-sub WHO]... [--allow-pub WHO]...\n"
         "                       [--slow-subscriber-timeout MS]",
         "Create a channel through shmbusd (its per-channel configuration wins).\n"
         "--allow-sub / --allow-pub let WHO subscribe / publish too: a user (NAME, user:NAME\n"
         "or a uid) or a group (group:NAME or group:GID); repeat them for more. shmbusd keeps\n"
         "the grants with the channel (status shows them) if its configuration allows.\n"
         "--slow-subscriber-timeout evicts, on a block channel, a subscriber that keeps\n"
         "publishers waiting that long (0: never); kept with the channel.\n"},
        {"delete", verb_delete, 1, 1, true, "delete CHANNEL",
         "Delete a channel (its owner or root). Members keep what they have mapped.\n"},
        {"metrics", verb_metrics, 0, 0, false, "metrics [--listen [HOST:]PORT]",
         "Serve GET /metrics over HTTP for Prometheus (docs/METRICS.md), reading fresh\n"
         "stats for every scrape, until Ctrl-C. Listens on 127.0.0.1:" SERVE_DEFAULT_PORT
         " unless\n"
         "--listen says otherwise (port 0: any free port); prints the address it listens on.\n"},
        {"version", verb_version, 0, 0, false, "version [--json]",
         "Versions of shmbus-cli (and its library) and of the running shmbusd.\n"
         "Also: shmbus-cli --version.\n"},
        {"help", verb_help, 0, 1, false, "help [VERB]",
         "This help, or one verb's (the same as shmbus-cli VERB --help).\n"},
};

static const struct verb *verb_find(const char *name) {
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
                if (strcmp(verbs[i].name, name) == 0)
                        return &verbs[i];
        return NULL;
}

static void usage(FILE *f) {
        fputs("Usage: shmbus-cli [OPTIONS] [VERB] [ARGS]\n"
              "\n"
              "Verbs:\n"
              "  list                     channels: policy, size, publishers, subscribers, msg/s,\n"
              "                           drops, max lag (the default verb)\n"
              "  status CHANNEL           geometry, counters, every subscriber and publisher\n"
              "  stats [--watch]          the list with rates, refreshed with --watch\n"
              "  tail CHANNEL             print the last messages (-n N, default 10);\n"
              "                           --follow keeps printing new ones\n"
              "  pub CHANNEL [MSG|-]      publish MSG, or stdin one message per line (--whole:\n"
              "                           all of stdin as one message)\n"
              "  record CHANNEL... -o FILE\n"
              "                           write every message to FILE (--count N,\n"
              "                           --duration SEC; see docs/RECORDING.md)\n"
              "  replay FILE              publish a recording again (--speed X,\n"
              "                           --as-fast-as-possible, --map OLD:NEW, --create, --dump)\n"
              "  create CHANNEL           create a channel (--capacity --max-msg --policy\n"
              "                           --max-subscribers --max-publishers; --allow-sub WHO\n"
              "                           --allow-pub WHO: a user, or group:NAME, may too;\n"
              "                           --slow-subscriber-timeout MS)\n"
              "  delete CHANNEL           delete a channel (owner or root)\n"
              "  metrics                  serve /metrics over HTTP for Prometheus\n"
              "                           (--listen [HOST:]PORT, default "
              "127.0.0.1:" SERVE_DEFAULT_PORT ")\n"
              "  version                  versions of the CLI and the running daemon\n"
              "  help [VERB]              this help, or one verb's\n"
              "\n"
              "Options:\n"
              "  -s, --socket PATH        shmbusd's socket (default $SHMBUS_SOCKET, then\n"
              "                           " SHMBUS_DEFAULT_SOCKET ")\n"
              "  -d, --shm-dir DIR        channel files, read when the daemon is down\n"
              "  -j, --json               JSON output (every verb but create, delete, metrics)\n"
              "  -n, --lines N            tail: how many past messages (0: none)\n"
              "  -f, --follow             tail: keep printing new messages until Ctrl-C\n"
              "      --format FMT         tail: text (default), hex or json (one object a line);\n"
              "                           stats: openmetrics or prometheus\n"
              "      --tethered           tail, record: lossless, holding publishers back "
              "(default:\n"
              "                           untethered, never slows a publisher; losses counted)\n"
              "  -w, --watch              stats: refresh until Ctrl-C\n"
              "  -i, --interval SEC       stats/list: sampling interval (default 1, list 0.25)\n"
              "      --rate               list --json: sample twice to fill in msg_per_s\n"
              "  -l, --listen [HOST:]PORT metrics: where to serve (default "
              "127.0.0.1:" SERVE_DEFAULT_PORT ")\n"
              "  -c, --count N            stats --watch: stop after N refreshes; record: after\n"
              "                           N messages\n"
              "  -o, --output FILE        record: where to write (-: standard output)\n"
              "      --duration SEC       record: stop after SEC seconds\n"
              "      --speed X            replay: X times the recorded pace (default 1)\n"
              "      --as-fast-as-possible\n"
              "                           replay: publish without waiting\n"
              "      --map OLD:NEW        replay: publish OLD's messages on NEW (repeatable)\n"
              "      --dump               replay: print the recording as JSON lines\n"
              "      --create             pub, replay: create the channel if it is missing\n"
              "  -t, --timeout MS         pub, replay: how long to wait for space (default 1000)\n"
              "      --no-color           no colours (also: NO_COLOR set, TERM=dumb, not a "
              "terminal)\n"
              "  -V, --version            the same as the verb version\n"
              "  -h, --help               this help (also: shmbus-cli VERB --help)\n"
              "\n"
              "Exit codes: 0 ok, 1 failure, 2 usage, 3 no such channel, 4 permission denied,\n"
              "5 channel full (timed out), 7 shmbusd not running or not answering within\n"
              "$SHMBUS_TIMEOUT_MS (default 5000), 8 replay: the recording was cut short (what\n"
              "came before the cut was replayed).\n",
              f);
}

/* "shmbus-cli VERB --help". */
static int help_verb(const char *name) {
        const struct verb *v = verb_find(name);

        if (!v) {
                cli_err("unknown verb '%s'; try 'shmbus-cli --help'", name);
                return EXIT_USAGE;
        }
        printf("Usage: shmbus-cli %s\n\n%s", v->synopsis, v->text);
        return EXIT_OK;
}

static int verb_help(const struct cli_options *o, char **args) {
        if (args[0])
                return help_verb(args[0]);
        usage(stdout);
        return EXIT_OK;
}

/* --policy takes the protocol's policy names. */
static int policy_of(const char *s) {
        if (strcmp(s, WIRE_POLICY_BLOCK) == 0)
                return SHMBUS_POLICY_BLOCK;
        if (strcmp(s, WIRE_POLICY_OVERWRITE) == 0)
                return SHMBUS_POLICY_OVERWRITE;
        return -1;
}

static int format_of(const char *s) {
        if (strcmp(s, "text") == 0)
                return CLI_FORMAT_TEXT;
        if (strcmp(s, "hex") == 0)
                return CLI_FORMAT_HEX;
        if (strcmp(s, "json") == 0)
                return CLI_FORMAT_JSON;
        if (strcmp(s, "openmetrics") == 0)
                return CLI_FORMAT_OPENMETRICS;
        if (strcmp(s, "prometheus") == 0)
                return CLI_FORMAT_PROMETHEUS;
        return -1;
}

/* A geometry option that is a number (decimal, 0x hex or 0 octal), through its setter. */
static int set_u32(shmbus_opts *chan, int (*set)(shmbus_opts *, uint32_t), const char *val) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(val, &end, 0);
        /* Not a number, or one a uint32_t would cut short (2^32 would have been 0). */
        if (!*val || *end || errno || v > UINT32_MAX || *val == '-')
                return -EINVAL;
        return set(chan, (uint32_t)v) < 0 ? -EINVAL : 0;
}

enum {
        OPT_FORMAT = 256,
        OPT_CREATE,
        OPT_NO_COLOR,
        OPT_WHOLE,
        OPT_CAP,
        OPT_MAXMSG,
        OPT_POLICY,
        OPT_SUBS,
        OPT_PUBS,
        OPT_ALLOW_SUB,
        OPT_ALLOW_PUB,
        OPT_SLOW,
        OPT_RATE,
        OPT_TETHERED,
        OPT_DURATION,
        OPT_SPEED,
        OPT_FAST,
        OPT_MAP,
        OPT_DUMP,
};

/* What a value of option @c must look like, for the error message. */
static const char *option_expects(int c) {
        switch (c) {
        case 'n':
                return "a whole number >= 0 (at most 1000000)";
        case OPT_FORMAT:
                return "text, hex, json, openmetrics or prometheus";
        case 'i':
                return "seconds from 0.01 to 3600";
        case 'c':
                return "a whole number >= 1";
        case 't':
                return "milliseconds >= 0, or -1 to wait forever";
        case OPT_CAP:
                return "a power of two from 4096 to 1073741824 (bytes)";
        case OPT_MAXMSG:
                return "bytes from 1 to a quarter of the capacity";
        case OPT_POLICY:
                return WIRE_POLICY_BLOCK " or " WIRE_POLICY_OVERWRITE;
        case OPT_SUBS:
        case OPT_PUBS:
                return "a whole number from 1 to 1024";
        case OPT_ALLOW_SUB:
        case OPT_ALLOW_PUB:
                return "a user (NAME, user:NAME, UID) or a group (group:NAME, group:GID), at most "
                       "32 of each";
        case OPT_SLOW:
                return "milliseconds from 0 (never evict) to 3600000";
        case OPT_DURATION:
                return "seconds, more than 0";
        case OPT_SPEED:
                return "a factor from 0.001 to 1000000 (2: twice as fast)";
        case OPT_MAP:
                return "OLD:NEW, at most " CLI_MAPS_MAX_STR " times";
        default:
                return "another value";
        }
}

/*
 * Apply one option @c with its argument @val to @o and @chan (the geometry for
 * create). Return: 0, or -EINVAL for a value out of range or not a number.
 */
static int apply_option(int c, const char *val, struct cli_options *o, shmbus_opts *chan,
                        bool *no_color, bool *help, bool *version) {
        char *end = NULL;
        int f, r;

        switch (c) {
        case 's':
                o->socket = val;
                return 0;
        case 'd':
                o->shm_dir = val;
                return 0;
        case 'j':
                o->json = true;
                return 0;
        case 'n':
                o->lines = strtol(val, &end, 10);
                return *end || o->lines < 0 || o->lines > 1000000 ? -EINVAL : 0;
        case 'f':
                o->follow = true;
                return 0;
        case OPT_FORMAT:
                f = format_of(val);
                if (f < 0)
                        return -EINVAL;
                o->format = (enum cli_format)f;
                o->format_set = true;
                return 0;
        case 'w':
                o->watch = true;
                return 0;
        case 'i':
                o->interval = strtod(val, &end);
                return *end || o->interval < 0.01 || o->interval > 3600 ? -EINVAL : 0;
        case OPT_RATE:
                o->rate = true;
                return 0;
        case 'l':
                o->listen = val;
                return 0;
        case 'c':
                o->count = strtol(val, &end, 10);
                return *end || o->count < 1 ? -EINVAL : 0;
        case OPT_CREATE:
                o->create = true;
                return 0;
        case OPT_WHOLE:
                o->whole = true;
                return 0;
        case 't':
                o->timeout_ms = (int)strtol(val, &end, 10);
                return *end || o->timeout_ms < -1 ? -EINVAL : 0;
        case OPT_TETHERED:
                o->tethered = true;
                return 0;
        case OPT_CAP:
                r = shmbus_opts_set_capacity(chan, strtoull(val, &end, 0));
                return r < 0 || *end ? -EINVAL : 0;
        case OPT_MAXMSG:
                return set_u32(chan, shmbus_opts_set_max_msg, val);
        case OPT_POLICY:
                return shmbus_opts_set_policy(chan, policy_of(val)) < 0 ? -EINVAL : 0;
        case OPT_SUBS:
                return set_u32(chan, shmbus_opts_set_max_subscribers, val);
        case OPT_PUBS:
                return set_u32(chan, shmbus_opts_set_max_publishers, val);
        case OPT_ALLOW_SUB:
                return admin_grant(chan, val, SHMBUS_GRANT_SUBSCRIBE) < 0 ? -EINVAL : 0;
        case OPT_ALLOW_PUB:
                return admin_grant(chan, val, SHMBUS_GRANT_PUBLISH) < 0 ? -EINVAL : 0;
        case OPT_SLOW:
                return set_u32(chan, shmbus_opts_set_slow_subscriber_timeout, val);
        case 'o':
                o->output = val;
                return 0;
        case OPT_DURATION:
                o->duration = strtod(val, &end);
                return *end || !(o->duration > 0) ? -EINVAL : 0;
        case OPT_SPEED:
                o->speed = strtod(val, &end);
                return *end || !(o->speed >= 0.001 && o->speed <= 1e6) ? -EINVAL : 0;
        case OPT_FAST:
                o->fast = true;
                return 0;
        case OPT_MAP:
                if (o->n_maps >= CLI_MAPS_MAX)
                        return -EINVAL;
                o->maps[o->n_maps++] = val;
                return 0;
        case OPT_DUMP:
                o->dump = true;
                return 0;
        case OPT_NO_COLOR:
                *no_color = true;
                return 0;
        case 'h':
                *help = true;
                return 0;
        case 'V':
                *version = true;
                return 0;
        default:
                return -EINVAL; /* getopt_long has said what is wrong */
        }
}

/*
 * Parse the options (getopt_long permutes, so they may come before or after
 * the verb) into @o and @chan. On a bad one, say which and return -EINVAL.
 */
static int parse_options(int argc, char **argv, struct cli_options *o, shmbus_opts *chan,
                         bool *ret_help, bool *ret_version) {
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"shm-dir", required_argument, NULL, 'd'},
                {"json", no_argument, NULL, 'j'},
                {"lines", required_argument, NULL, 'n'},
                {"follow", no_argument, NULL, 'f'},
                {"format", required_argument, NULL, OPT_FORMAT},
                {"watch", no_argument, NULL, 'w'},
                {"interval", required_argument, NULL, 'i'},
                {"rate", no_argument, NULL, OPT_RATE},
                {"listen", required_argument, NULL, 'l'},
                {"count", required_argument, NULL, 'c'},
                {"create", no_argument, NULL, OPT_CREATE},
                {"whole", no_argument, NULL, OPT_WHOLE},
                {"timeout", required_argument, NULL, 't'},
                {"capacity", required_argument, NULL, OPT_CAP},
                {"max-msg", required_argument, NULL, OPT_MAXMSG},
                {"policy", required_argument, NULL, OPT_POLICY},
                {"max-subscribers", required_argument, NULL, OPT_SUBS},
                {"max-publishers", required_argument, NULL, OPT_PUBS},
                {"allow-sub", required_argument, NULL, OPT_ALLOW_SUB},
                {"allow-pub", required_argument, NULL, OPT_ALLOW_PUB},
                {"slow-subscriber-timeout", required_argument, NULL, OPT_SLOW},
                {"output", required_argument, NULL, 'o'},
                {"duration", required_argument, NULL, OPT_DURATION},
                {"speed", required_argument, NULL, OPT_SPEED},
                {"as-fast-as-possible", no_argument, NULL, OPT_FAST},
                {"map", required_argument, NULL, OPT_MAP},
                {"dump", no_argument, NULL, OPT_DUMP},
                {"no-color", no_argument, NULL, OPT_NO_COLOR},
                {"tethered", no_argument, NULL, OPT_TETHERED},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        bool no_color = false, help = false, version = false;
        int c, long_index = -1;

        while ((c = getopt_long(argc, argv, "s:d:jn:fwi:c:t:l:o:hV", opts, &long_index)) != -1) {
                o->geometry_given |= c == OPT_CAP || c == OPT_MAXMSG || c == OPT_POLICY ||
                                     c == OPT_SUBS || c == OPT_PUBS;
                o->grants_given |= c == OPT_ALLOW_SUB || c == OPT_ALLOW_PUB;
                o->slow_given |= c == OPT_SLOW;
                if (apply_option(c, optarg, o, chan, &no_color, &help, &version) < 0) {
                        /* On '?' getopt_long has said what is wrong; else name the option as typed.
                         */
                        if (c != '?' && long_index >= 0)
                                cli_err("invalid value '%s' for --%s: expected %s", optarg,
                                        opts[long_index].name, option_expects(c));
                        else if (c != '?')
                                cli_err("invalid value '%s' for -%c: expected %s", optarg, c,
                                        option_expects(c));
                        fputs("Try 'shmbus-cli --help'.\n", stderr);
                        return -EINVAL;
                }
                long_index = -1;
        }
        o->color = !no_color && cli_color_wanted(STDOUT_FILENO);
        *ret_help = help;
        *ret_version = version;
        return 0;
}

/* The channel name first (a bad name is the clearer error), then the number of arguments. */
static int check_args(const struct verb *v, int n, char **args) {
        if (v->takes_channel && n > 0 && !shmbus__name_is_valid(args[0])) {
                cli_err("'%s' is not a valid channel name: 1 to 63 of A-Z a-z 0-9 . _ -, not "
                        "starting with '.'",
                        args[0]);
                return -EINVAL;
        }
        if (n < v->min_args || n > v->max_args) {
                cli_err("%s: wrong number of arguments; try 'shmbus-cli --help'", v->name);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(cli_opts_freep) shmbus_opts *chan = NULL;
        struct cli_options o = {
                .lines = 10,
                .format = CLI_FORMAT_TEXT,
                .interval = -1,
                .timeout_ms = 1000,
        };
        const struct verb *v;
        const char *name;
        bool help, named, version;

        if (shmbus_opts_new(&chan) < 0)
                return EXIT_FAIL;
        o.channel = chan;
        if (parse_options(argc, argv, &o, chan, &help, &version) < 0)
                return EXIT_USAGE;
        if (version && !help)
                return verb_version(&o, argv + argc);

        named = optind < argc;
        name = named ? argv[optind++] : "list";
        if (help) {
                if (named)
                        return help_verb(name);
                usage(stdout);
                return EXIT_OK;
        }

        v = verb_find(name);
        if (!v) {
                cli_err("unknown verb '%s'; try 'shmbus-cli --help'", name);
                return EXIT_USAGE;
        }
        if (check_args(v, argc - optind, argv + optind) < 0)
                return EXIT_USAGE;
        return v->run(&o, argv + optind);
}
