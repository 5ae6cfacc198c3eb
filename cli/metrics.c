/* SPDX-License-Identifier: MIT */
/*
 * Rendering the metrics exposition (metrics.h). One table names every metric
 * family once; the two formats differ only in how a family's metadata is
 * written (OpenMetrics names a counter without its _total, and has # UNIT) and
 * in OpenMetrics' closing "# EOF". Each family is written whole, its samples
 * together, as both formats require.
 */
#include "metrics.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "cli.h"
#include "inspect.h"
#include "wire.h"

/* What a family's samples are about, and so their labels. */
enum scope {
        SCOPE_BUS,        /* no labels */
        SCOPE_CHANNEL,    /* channel="NAME" */
        SCOPE_SUBSCRIBER, /* channel="NAME", slot="N" */
        SCOPE_PUBLISHER,  /* channel="NAME", slot="N" */
        SCOPE_DAEMON,     /* no labels; from the daemon's "stats" reply, none offline */
        SCOPE_DAEMON_OP,  /* op="OP"; the same */
        SCOPE_UID,        /* uid="N": the channels a uid owns, summed */
};

struct family {
        const char *name; /* a counter's without _total */
        bool counter;     /* else a gauge */
        bool bytes;       /* the unit, which the name ends in */
        enum scope scope;
        const char *field; /* in the channel's or member's stat reply; NULL: computed */
        const char *help;
};

static const struct family families[] = {
        {"shmbus_daemon_up", false, false, SCOPE_BUS, NULL,
         "1 if shmbusd answered; 0 if it is not running and the channel files were read directly."},
        {"shmbus_channels", false, false, SCOPE_BUS, NULL, "Channels that exist."},
        {"shmbus_channel_capacity_bytes", false, true, SCOPE_CHANNEL, WIRE_CAPACITY,
         "Size of the channel's ring."},
        {"shmbus_channel_max_message_bytes", false, true, SCOPE_CHANNEL, WIRE_MAX_MSG,
         "Largest message the channel takes."},
        {"shmbus_channel_publisher_slots", false, false, SCOPE_CHANNEL, WIRE_MAX_PUBLISHERS,
         "Publishers the channel can have at once."},
        {"shmbus_channel_subscriber_slots", false, false, SCOPE_CHANNEL, WIRE_MAX_SUBSCRIBERS,
         "Subscribers the channel can have at once."},
        {"shmbus_channel_publishers", false, false, SCOPE_CHANNEL, WIRE_PUBLISHERS_ACTIVE,
         "Publishers attached now (read from the files: only those whose process is alive)."},
        {"shmbus_channel_subscribers", false, false, SCOPE_CHANNEL, WIRE_SUBSCRIBERS_ACTIVE,
         "Subscribers attached now (read from the files: only those whose process is alive)."},
        {"shmbus_channel_published_messages", true, false, SCOPE_CHANNEL, WIRE_PUBLISHED,
         "Messages published on the channel since it was made."},
        {"shmbus_channel_published_bytes", true, true, SCOPE_CHANNEL, WIRE_PUBLISHED_BYTES,
         "Payload bytes published on the channel since it was made."},
        {"shmbus_channel_lost_messages", true, false, SCOPE_CHANNEL, WIRE_LOST,
         "Messages subscribers lost because an overwrite channel lapped them."},
        {"shmbus_channel_unblocked_claims", true, false, SCOPE_CHANNEL, WIRE_UNBLOCKED,
         "Claims of dead publishers that shmbusd padded over to unblock subscribers."},
        {"shmbus_channel_max_lag_bytes", false, true, SCOPE_CHANNEL, WIRE_MAX_LAG_BYTES,
         "Largest subscriber lag: bytes published that the slowest subscriber has not read."},
        {"shmbus_subscriber_lag_bytes", false, true, SCOPE_SUBSCRIBER, WIRE_LAG_BYTES,
         "Bytes published that this subscriber has not read yet (at most the capacity)."},
        {"shmbus_subscriber_received_messages", true, false, SCOPE_SUBSCRIBER, WIRE_RECEIVED,
         "Messages this subscriber received."},
        {"shmbus_subscriber_received_bytes", true, true, SCOPE_SUBSCRIBER, WIRE_BYTES,
         "Payload bytes this subscriber received."},
        {"shmbus_subscriber_lost_messages", true, false, SCOPE_SUBSCRIBER, WIRE_LOST,
         "Messages this subscriber lost because the channel lapped it."},
        {"shmbus_subscriber_corrupt_messages", true, false, SCOPE_SUBSCRIBER, WIRE_CORRUPT,
         "Corrupt records this subscriber skipped."},
        {"shmbus_publisher_published_messages", true, false, SCOPE_PUBLISHER, WIRE_PUBLISHED,
         "Messages this publisher published."},
        {"shmbus_publisher_published_bytes", true, true, SCOPE_PUBLISHER, WIRE_BYTES,
         "Payload bytes this publisher published."},
        {"shmbus_publisher_waits", true, false, SCOPE_PUBLISHER, WIRE_WAITS,
         "Times this publisher had to wait for space."},
        {"shmbus_publisher_full", true, false, SCOPE_PUBLISHER, WIRE_FULL,
         "Claims refused because the ring stayed full (EAGAIN, or timed out)."},
        {"shmbus_publisher_aborts", true, false, SCOPE_PUBLISHER, WIRE_ABORTS,
         "Claims this publisher aborted."},
        /* The daemon's own counters (its "stats" op): absent while it is down. */
        {"shmbus_daemon_connections", false, false, SCOPE_DAEMON, WIRE_CONNECTIONS,
         "Client connections shmbusd serves now."},
        {"shmbus_daemon_connections_accepted", true, false, SCOPE_DAEMON, WIRE_CONNECTIONS_ACCEPTED,
         "Client connections shmbusd has served since it started."},
        {"shmbus_daemon_connections_refused", true, false, SCOPE_DAEMON, WIRE_CONNECTIONS_REFUSED,
         "Client connections refused for a connection limit since shmbusd started."},
        {"shmbus_daemon_requests", true, false, SCOPE_DAEMON_OP, NULL,
         "Control requests by op (other: naming no known op) since shmbusd started."},
        {"shmbus_daemon_requests_failed", true, false, SCOPE_DAEMON, WIRE_REQUESTS_FAILED,
         "Control requests answered with an error since shmbusd started."},
        {"shmbus_daemon_slots_released", true, false, SCOPE_DAEMON, WIRE_SLOTS_RELEASED,
         "Publisher and subscriber slots of dead members released since shmbusd started."},
        {"shmbus_daemon_claims_unblocked", true, false, SCOPE_DAEMON, WIRE_CLAIMS_UNBLOCKED,
         "Claims of dead publishers padded over, in all channels, since shmbusd started."},
        {"shmbus_daemon_channels_adopted", true, false, SCOPE_DAEMON, WIRE_CHANNELS_ADOPTED,
         "Channels adopted from the shm directory when shmbusd started."},
        {"shmbus_daemon_channels_not_adopted", true, false, SCOPE_DAEMON, WIRE_CHANNELS_NOT_ADOPTED,
         "Channel files shmbusd found at start-up and did not adopt (see its log)."},
        /* Use by uid, summed over the channels each uid owns. */
        {"shmbus_uid_channels", false, false, SCOPE_UID, NULL, "Channels the uid owns."},
        {"shmbus_uid_capacity_bytes", false, true, SCOPE_UID, WIRE_CAPACITY,
         "Ring bytes of the channels the uid owns."},
};

/* A label value with backslash, double quote and newline escaped, as both formats want. */
static void write_label_value(FILE *f, const char *s) {
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        fprintf(f, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

/* Whole numbers without a fraction or exponent (counters read best that way), others exactly. */
static void write_value(FILE *f, double v) {
        /* 2^53: beyond it a double holds no fraction anyway, and the cast could overflow. */
        if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v)
                fprintf(f, " %.0f\n", v);
        else
                fprintf(f, " %.17g\n", v);
}

static void write_sample(FILE *f, const struct family *fam, const char *channel, double slot,
                         double v) {
        fprintf(f, "%s%s", fam->name, fam->counter ? "_total" : "");
        if (channel) {
                fputs("{channel=\"", f);
                write_label_value(f, channel);
                if (fam->scope == SCOPE_SUBSCRIBER || fam->scope == SCOPE_PUBLISHER)
                        fprintf(f, "\",slot=\"%.0f", slot);
                fputs("\"}", f);
        }
        write_value(f, v);
}

static void write_metadata(FILE *f, const struct family *fam, bool openmetrics) {
        const char *total = fam->counter && !openmetrics ? "_total" : "";
        const char *type = fam->counter ? "counter" : "gauge";

        fprintf(f, "# HELP %s%s %s\n", fam->name, total, fam->help);
        fprintf(f, "# TYPE %s%s %s\n", fam->name, total, type);
        if (openmetrics && fam->bytes)
                fprintf(f, "# UNIT %s bytes\n", fam->name);
}

/* A sample with one label, @key="@value". */
static void write_labeled(FILE *f, const struct family *fam, const char *key, const char *value,
                          double v) {
        fprintf(f, "%s%s{%s=\"", fam->name, fam->counter ? "_total" : "", key);
        write_label_value(f, value);
        fputs("\"}", f);
        write_value(f, v);
}

/* The daemon's counters: a family of the "stats" reply @stats, or nothing without one. */
static void write_daemon(FILE *f, const struct family *fam, const cJSON *stats) {
        const cJSON *op;

        if (!cJSON_IsObject(stats))
                return;
        if (fam->scope == SCOPE_DAEMON) {
                if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(stats, fam->field)))
                        write_sample(f, fam, NULL, 0, cli_num(stats, fam->field));
                return;
        }
        cJSON_ArrayForEach(op, cJSON_GetObjectItemCaseSensitive(stats, WIRE_REQUESTS)) {
                if (cJSON_IsNumber(op) && op->string)
                        write_labeled(f, fam, "op", op->string, op->valuedouble);
        }
}

/*
 * Per-uid use: the channels of each owner uid, counted (@fam->field NULL) or
 * their @fam->field summed, uids in increasing order. Quadratic in the number
 * of channels, which the daemon bounds (max_channels).
 */
static void write_uids(FILE *f, const struct family *fam, const cJSON *channels) {
        double last = -1;

        for (;;) {
                double uid = -1, sum = 0;
                const cJSON *c;
                char label[32];

                /* The next uid above the last one written. */
                cJSON_ArrayForEach(c, channels) {
                        double u = cli_num(c, WIRE_OWNER_UID);

                        if (u > last && (uid < 0 || u < uid))
                                uid = u;
                }
                if (uid < 0)
                        return;
                cJSON_ArrayForEach(c, channels) {
                        if (cli_num(c, WIRE_OWNER_UID) == uid)
                                sum += fam->field ? cli_num(c, fam->field) : 1;
                }
                snprintf(label, sizeof(label), "%.0f", uid);
                write_labeled(f, fam, "uid", label, sum);
                last = uid;
        }
}

static void write_family(FILE *f, const struct family *fam, const cJSON *list, bool offline) {
        const cJSON *channels = cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS);
        const char *members = fam->scope == SCOPE_SUBSCRIBER ? WIRE_SUBSCRIBERS : WIRE_PUBLISHERS;
        const cJSON *c, *m;

        if (fam->scope == SCOPE_DAEMON || fam->scope == SCOPE_DAEMON_OP) {
                write_daemon(f, fam, cJSON_GetObjectItemCaseSensitive(list, INSPECT_DAEMON));
                return;
        }
        if (fam->scope == SCOPE_UID) {
                write_uids(f, fam, channels);
                return;
        }
        if (fam->scope == SCOPE_BUS) {
                write_sample(f, fam, NULL, 0,
                             strcmp(fam->name, "shmbus_daemon_up") == 0
                                     ? !offline
                                     : (double)cJSON_GetArraySize(channels));
                return;
        }
        cJSON_ArrayForEach(c, channels) {
                const char *name = cli_str(c, WIRE_NAME);

                if (fam->scope == SCOPE_CHANNEL) {
                        write_sample(f, fam, name, 0, cli_num(c, fam->field));
                        continue;
                }
                cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(c, members))
                        write_sample(f, fam, name, cli_num(m, WIRE_SLOT), cli_num(m, fam->field));
        }
}

int metrics_write(FILE *f, const cJSON *list, bool offline, bool openmetrics) {
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
                write_metadata(f, &families[i], openmetrics);
                write_family(f, &families[i], list, offline);
        }
        if (openmetrics)
                fputs("# EOF\n", f);
        return ferror(f) ? -EIO : 0;
}
