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

#include "state.h"

#define BRIDGE_ROUTES_MAX 64
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
        char *creds, *token, *user, *password;
        char *tls_ca, *tls_cert, *tls_key, *tls_hostname;
        bool tls;
        int ack_wait_ms; /* JetStream import: redelivery delay for unacknowledged messages */
        int batch;       /* JetStream export: messages per acknowledged batch */
        unsigned int nroutes;
        struct bridge_route routes[BRIDGE_ROUTES_MAX];
};

/*
 * Where a bridged message carries its metadata (docs/BRIDGE.md, "Message
 * metadata"): the reply subject of a core message, a header of a jetstream one.
 */
#define BRIDGE_HDR          "Shmbus"
#define BRIDGE_REPLY_PREFIX "_SHMBUS."

struct bridge_hdr {
        uint64_t seq, prev, n, ts;
        const char *origin; /* host/channel/incarnation, in the message */
        size_t host_len;
};

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
int bridge_nats_ensure_stream(struct bridge *b, jsCtx *js);
const char *bridge_nats_err(natsStatus s);
uint64_t bridge_realtime_ns(void);

/* export.c, import.c: the route threads. */
void *bridge_export_thread(void *arg);
void bridge_export_js_options(struct bridge_run *run, jsOptions *jo);
void *bridge_import_thread(void *arg);
/* Parse a message's BRIDGE_HDR; false if it has none (not sent by a bridge) or a bad one. */
bool bridge_hdr_parse(natsMsg *m, struct bridge_hdr *h);

/* main.c */
void bridge_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
