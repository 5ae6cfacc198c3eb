/* SPDX-License-Identifier: MIT */
/*
 * What every part of shmbus-cli shares: the parsed command line, the exit
 * codes of shmbus-cli(1), one-line error messages, colours, the Ctrl-C flag,
 * reading fields of a reply, and cleanup helpers for the objects the verbs
 * hold. Only main.c writes the options; verbs get them as a const pointer.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "shmbus.h"

#include "json.h"
#include "util.h"

/* The exit codes documented in usage() and shmbus-cli(1). */
enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,
        EXIT_USAGE = 2,
        EXIT_NOENT = 3,
        EXIT_ACCESS = 4,
        EXIT_FULL = 5,
        EXIT_DOWN = 7,
        EXIT_TRUNCATED = 8, /* replay: the recording was cut; what was whole was replayed */
};

/* --format: text, hex and json are for tail; openmetrics and prometheus for stats. */
enum cli_format {
        CLI_FORMAT_TEXT,
        CLI_FORMAT_HEX,
        CLI_FORMAT_JSON,
        CLI_FORMAT_OPENMETRICS,
        CLI_FORMAT_PROMETHEUS,
};

/* Fields the CLI adds to its JSON output (shmbus-cli(1)); they are not on the wire. */
#define CLI_MSG_PER_S       "msg_per_s"
#define CLI_OFFLINE         "offline"
#define CLI_VERSION_CLI     "cli"
#define CLI_VERSION_DAEMON  "daemon"
#define CLI_VERSION_LIBRARY "library"
#define CLI_TIME            "time"             /* stats: RFC 3339, UTC, milliseconds */
#define CLI_DEAD_PUBS       "dead_publishers"  /* offline: slots of processes that are gone */
#define CLI_DEAD_SUBS       "dead_subscribers" /* offline: slots of processes that are gone */
#define CLI_SENT            "sent"             /* pub --json: messages sent */
#define CLI_SENT_BYTES      "bytes"            /* pub --json: their bytes */
#define CLI_PUB_ERROR       "error"            /* pub --json: why it stopped, a sentence */

/* How many --map options replay takes. */
#define CLI_MAPS_MAX     64
#define CLI_MAPS_MAX_STR "64"

struct cli_options {
        const char *socket;  /* NULL: $SHMBUS_SOCKET, then SHMBUS_DEFAULT_SOCKET */
        const char *shm_dir; /* NULL: WIRE_DEFAULT_SHM_DIR */
        bool json;
        bool color; /* only on a terminal that is not "dumb", without NO_COLOR or --no-color */
        /* tail and stats */
        enum cli_format format;
        bool format_set; /* --format was given (tail --json may not contradict it) */
        /* tail */
        long lines;
        bool follow;
        /* list and stats; an interval <= 0 means the verb's default */
        double interval;
        bool rate; /* list --json: sample twice for msg_per_s (also implied by --interval) */
        bool watch;
        long count; /* <= 0: no limit */
        /* pub */
        bool create;
        bool whole;
        int timeout_ms;
        /* create: the geometry asked for */
        const shmbus_opts *channel;
        bool geometry_given; /* any of --capacity --max-msg --policy --max-* */
        bool grants_given;   /* any of --allow-sub --allow-pub */
        bool slow_given;     /* --slow-subscriber-timeout */
        /* tail: hold publishers back (lossless) instead of reading untethered */
        bool tethered;
        /* metrics: the address to serve on; NULL: the default, on loopback */
        const char *listen;
        /* record: the file to write ("-": stdout), and a time limit (<= 0: none) */
        const char *output;
        double duration;
        /* replay: speed factor (<= 0: 1), or no waiting; print instead of publishing */
        double speed;
        bool fast;
        bool dump;
        /* replay --map OLD:NEW, as given (checked by the verb) */
        const char *maps[CLI_MAPS_MAX];
        int n_maps;
};

/* "shmbus-cli: " and the message, one line on stderr. */
__attribute__((format(printf, 1, 2))) void cli_err(const char *fmt, ...);
/* The exit code for a verb's result (0 or -errno). */
int cli_exit_code(int r);
/* @code when colours are on, otherwise "". */
const char *cli_color(const struct cli_options *o, const char *code);
/* Whether @fd is a terminal that takes escape sequences: $TERM is set and not "dumb". */
bool cli_terminal_is_smart(int fd);
/* Whether output to @fd may have colours: a smart terminal, and $NO_COLOR unset or empty. */
bool cli_color_wanted(int fd);

/* The current time as RFC 3339 in UTC with milliseconds ("2026-12-01T12:43:21.123Z"). */
const char *cli_now_rfc3339(char *buf, size_t size);

/* Make SIGINT and SIGTERM set a flag instead of killing, for verbs that loop until Ctrl-C. */
void cli_catch_stop(void);
bool cli_stopped(void);

/* A number field of @obj, or 0 if it is missing or not a number. */
static inline double cli_num(const cJSON *obj, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* A string field of @obj, or "" if it is missing or not a string. */
static inline const char *cli_str(const cJSON *obj, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        return cJSON_IsString(v) ? v->valuestring : "";
}

static inline void cli_client_freep(shmbus_client **p) {
        shmbus_client_free(*p);
}

static inline void cli_channel_unrefp(shmbus_channel **p) {
        shmbus_channel_unref(*p);
}

static inline void cli_pub_freep(shmbus_pub **p) {
        shmbus_pub_free(*p);
}

static inline void cli_sub_freep(shmbus_sub **p) {
        shmbus_sub_free(*p);
}

static inline void cli_opts_freep(shmbus_opts **p) {
        shmbus_opts_free(*p);
}
