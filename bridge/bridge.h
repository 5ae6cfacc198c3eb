/* SPDX-License-Identifier: MIT */
/*
 * shmbus-bridge: carries shmbus channels over NATS (docs/BRIDGE.md). This
 * header holds what the bridge's modules share: the configuration (config.c),
 * the per-route state and statistics file (state.c), the NATS connection
 * (nats.c) and the two kinds of route, export (export.c: channel -> subject)
 * and import (import.c: subject -> channel).
 *
 * Invariants: each route runs in its own thread and is the only writer of its
 * state file; a route never acknowledges anything (a JetStream publish to its
 * own state, a NATS message to the server) before the step it vouches for is
 * done (the stream stored it, the channel committed it).
 */
#pragma once

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shmbus.h"

#define BRIDGE_ROUTES_MAX  64
#define BRIDGE_SUBJECT_MAX 127
#define BRIDGE_HOST_MAX    63
#define BRIDGE_ORIGINS_MAX 32

enum bridge_kind {
        BRIDGE_EXPORT = 1, /* channel -> NATS subject */
        BRIDGE_IMPORT = 2, /* NATS subject -> channel */
};

enum bridge_mode {
        BRIDGE_CORE = 1,      /* core NATS: at most once, every loss counted */
        BRIDGE_JETSTREAM = 2, /* JetStream: at least once, duplicates suppressed */
};

struct bridge_route {
        enum bridge_kind kind;
        enum bridge_mode mode;
        char channel[64];
        char subject[BRIDGE_SUBJECT_MAX + 1];
};

struct bridge_config {
        char *nats_url;
        char *socket;    /* NULL: $SHMBUS_SOCKET or the default */
        char *host;      /* this host's name in message ids; default gethostname() */
        char *state_dir; /* route state and statistics files */
        char *stream;    /* --jetstream STREAM, or NULL */
        /* NATS security, passed to libnats as they are. */
        char *creds, *nkey_seed, *token, *user, *password;
        char *tls_ca, *tls_cert, *tls_key, *tls_hostname;
        bool tls;
        int ack_wait_ms; /* JetStream import: redelivery delay for unacknowledged messages */
        int batch;       /* JetStream export: messages per acknowledged batch */
        unsigned int nroutes;
        struct bridge_route routes[BRIDGE_ROUTES_MAX];
};

/*
 * Statistics of one route, in its state file, so that `shmbus-bridge --stats`
 * and shmbus-cli read them from outside while the route runs. Written by the
 * route's thread only, with relaxed atomic stores (readers take a snapshot).
 */
struct bridge_stats {
        uint64_t msgs;           /* messages carried (exported, or imported and committed) */
        uint64_t bytes;          /* their payload bytes */
        uint64_t lost_shmbus;    /* export: channel messages the route never read (seq gaps) */
        uint64_t dropped_nats;   /* export: NATS refused to take (buffer full while disconnected) */
        uint64_t lost_nats;      /* import: messages missing in the origin's numbering */
        uint64_t duplicates;     /* suppressed: by the stream (export) or by seq (import) */
        uint64_t skipped_marked; /* export: records imported from NATS, never sent back */
        uint64_t skipped_own;    /* import: messages this host exported itself */
        uint64_t reconnects;     /* NATS reconnections seen by the route */
        uint64_t resent;         /* export: messages published again after a failed batch */
        uint64_t errors;         /* other failures (each logged) */
        uint64_t age_count;      /* import: end-to-end ages measured */
        uint64_t age_sum_ns;     /* their sum */
        uint64_t age_max_ns;     /* the largest */
        uint64_t age_last_ns;    /* the latest */
        uint64_t updated_ns;     /* CLOCK_REALTIME of the last update */
        uint64_t reserved[8];
};

/* One origin an import route has heard from: host/channel/incarnation. */
struct bridge_origin {
        char key[112];      /* NUL-terminated; empty: free */
        uint64_t last_seq1; /* 1 + the origin channel's seq of the last message committed */
        uint64_t last_n;    /* the origin route's count of that message */
};

#define BRIDGE_STATE_MAGIC   UINT64_C(0x3154534742424d53) /* "SMBBGST1" little-endian */
#define BRIDGE_STATE_VERSION 1

/*
 * A route's state file, mapped shared: stores into it survive a kill -9 of
 * the bridge (they are in the page cache), so the route keeps its place
 * without a system call per message. A power cut may lose the last updates;
 * JetStream's de-duplication and the import side's seq check cover that.
 */
struct bridge_state {
        uint64_t magic;   /* BRIDGE_STATE_MAGIC */
        uint32_t version; /* BRIDGE_STATE_VERSION */
        uint32_t kind;    /* enum bridge_kind */
        uint32_t mode;    /* enum bridge_mode */
        int32_t pid;      /* the bridge process using it, for --stats */
        char channel[64];
        char subject[BRIDGE_SUBJECT_MAX + 1];
        char host[BRIDGE_HOST_MAX + 1];
        /* Export: where the route stands. */
        uint64_t incarnation; /* the channel's created_ns when acked_seq was stored */
        uint64_t acked_seq;   /* every message up to this seq is acknowledged (or skipped) */
        uint64_t acked_n;     /* the route's count of exported messages up to there */
        uint64_t acked_sent;  /* 1 + the seq of the last message exported up to acked_seq */
        uint64_t acked_valid; /* 1 once acked_seq means something */
        /* Import: the message being committed, resolved after a crash (import.c). */
        uint64_t pending_valid;
        uint64_t pending_origin; /* index in origins[] */
        uint64_t pending_seq;    /* the origin's seq */
        uint64_t pending_n;
        uint64_t pending_chan_seq; /* the seq our claim got in the local channel */
        uint64_t pending_chan_pos; /* and its position in the ring */
        uint64_t pending_stream_seq;
        struct bridge_origin origins[BRIDGE_ORIGINS_MAX];
        struct bridge_stats stats;
};

/* The header every bridged message carries (docs/BRIDGE.md, "Message headers"). */
#define BRIDGE_HDR "Shmbus"

struct bridge;

/* A running route: its configuration, its thread's objects and its state file. */
struct bridge_run {
        struct bridge *b;
        const struct bridge_route *route;
        struct bridge_state *st; /* the mapped state file */
        jsCtx *js;               /* JetStream context of this route (its own async acks) */
        shmbus_channel *chan;
        char origin[128]; /* export: host/channel/incarnation */
        pthread_t thread;
        bool thread_started;
        /* Export, JetStream: failures reported by the ack handler for the current batch. */
        atomic_uint batch_failed;
        atomic_ullong batch_dups;
};

struct bridge {
        struct bridge_config *cfg;
        shmbus_client *client;
        natsConnection *nc;
        atomic_bool stop;
        atomic_ullong reconnects;
        atomic_bool connected;
        unsigned int nruns;
        struct bridge_run runs[BRIDGE_ROUTES_MAX];
};

/* config.c */
int bridge_config_parse_args(struct bridge_config *cfg, int argc, char **argv, bool *ret_stats,
                             bool *ret_json);
int bridge_config_load_file(struct bridge_config *cfg, const char *path);
int bridge_config_finish(struct bridge_config *cfg);
void bridge_config_deinit(struct bridge_config *cfg);
int bridge_route_parse(struct bridge_config *cfg, enum bridge_kind kind, const char *spec);

/* state.c */
int bridge_state_open(const char *dir, const struct bridge_route *route, const char *host,
                      struct bridge_state **ret_st);
void bridge_state_close(struct bridge_state *st);
int bridge_stats_print(const char *dir, bool json);
void bridge_stat_add(uint64_t *counter, uint64_t n);
void bridge_stat_set(uint64_t *counter, uint64_t v);
void bridge_stat_age(struct bridge_stats *s, uint64_t age_ns);

/* nats.c */
int bridge_nats_connect(struct bridge *b);
int bridge_nats_js(struct bridge *b, struct bridge_run *run);
int bridge_nats_ensure_stream(struct bridge *b);
const char *bridge_nats_err(natsStatus s);
uint64_t bridge_realtime_ns(void);

/* export.c, import.c: the route threads. */
void *bridge_export_thread(void *arg);
void bridge_export_js_options(struct bridge_run *run, jsOptions *jo);
void *bridge_import_thread(void *arg);

/* main.c */
void bridge_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
