/* SPDX-License-Identifier: MIT */
/*
 * shmbus-bridge: main(). Reads the configuration, opens every route's channel
 * through shmbusd and its state file, connects to NATS, runs one thread per
 * route and stops them all on SIGINT or SIGTERM (or when one route fails for
 * good). `--stats` instead prints the routes' statistics from the state files.
 *
 * Invariants: signals are taken by sigwait() in the main thread only; a route
 * thread never exits the process, it sets b->stop and returns.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "bridge.h"

void bridge_log(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("shmbus-bridge: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static int open_routes(struct bridge *b) {
        const struct bridge_config *c = b->cfg;
        int r;

        r = shmbus_client_new(c->socket, &b->client);
        if (r < 0) {
                bridge_log("cannot reach shmbusd at %s: %s (is it running? pass --socket)",
                           c->socket ? c->socket : "the default socket", shmbus_strerror(r));
                return r;
        }
        for (unsigned int i = 0; i < c->nroutes; i++) {
                const struct bridge_route *route = &c->routes[i];
                struct bridge_run *run = &b->runs[b->nruns];
                int flags = SHMBUS_OPEN_CREATE;

                if (route->kind == BRIDGE_IMPORT)
                        flags |= SHMBUS_OPEN_PUBLISH;
                *run = (struct bridge_run){.b = b, .route = route};
                r = shmbus_client_open(b->client, route->channel, flags, NULL, &run->chan);
                if (r < 0) {
                        bridge_log("cannot open channel %s to %s: %s", route->channel,
                                   route->kind == BRIDGE_EXPORT ? "subscribe" : "publish",
                                   shmbus_strerror(r));
                        return r;
                }
                b->nruns++;
                r = bridge_state_open(c->state_dir, route, c->host, &run->st);
                if (r < 0)
                        return r;
        }
        return 0;
}

int main(int argc, char **argv) {
        struct bridge_config cfg = {0};
        struct bridge b = {.cfg = &cfg};
        bool stats = false, json = false;
        sigset_t set;
        int r, sig, ret = 1;

        /* Peers that vanish must not kill us: libnats sees EPIPE and reconnects. */
        signal(SIGPIPE, SIG_IGN);
        r = bridge_config_parse_args(&cfg, argc, argv, &stats, &json);
        if (r < 0)
                goto out;
        if (stats) {
                r = bridge_stats_print(cfg.state_dir ? cfg.state_dir : "/var/lib/shmbus-bridge",
                                       json);
                ret = r < 0 ? 1 : 0;
                goto out;
        }
        r = bridge_config_finish(&cfg);
        if (r < 0)
                goto out;

        /* Every thread (libnats' too) inherits the mask; only sigwait() below takes these. */
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        if (open_routes(&b) < 0)
                goto close;
        if (nats_Open(-1) != NATS_OK) {
                bridge_log("cannot initialise libnats");
                goto close;
        }
        if (bridge_nats_connect(&b) < 0)
                goto close;
        for (unsigned int i = 0; i < b.nruns; i++) {
                struct bridge_run *run = &b.runs[i];

                if (run->route->mode == BRIDGE_JETSTREAM && bridge_nats_js(&b, run) < 0)
                        goto stop;
        }
        for (unsigned int i = 0; i < b.nruns; i++) {
                struct bridge_run *run = &b.runs[i];
                void *(*fn)(void *) = run->route->kind == BRIDGE_EXPORT ? bridge_export_thread
                                                                        : bridge_import_thread;

                if (pthread_create(&run->thread, NULL, fn, run) != 0) {
                        bridge_log("cannot start a thread for route %s:%s", run->route->channel,
                                   run->route->subject);
                        goto stop;
                }
                run->thread_started = true;
        }
        bridge_log("running %u route(s) as host %s, NATS %s", b.nruns, cfg.host, cfg.nats_url);
        ret = 0;
        /* Wait for a signal; a route that fails for good sets stop and sends us SIGUSR1. */
        while (!atomic_load(&b.stop)) {
                struct timespec ts = {0, 200 * 1000 * 1000};

                sig = sigtimedwait(&set, NULL, &ts);
                if (sig == SIGINT || sig == SIGTERM)
                        break;
        }
        if (atomic_load(&b.stop))
                ret = 1;
stop:
        atomic_store(&b.stop, true);
        for (unsigned int i = 0; i < b.nruns; i++)
                if (b.runs[i].thread_started)
                        pthread_join(b.runs[i].thread, NULL);
close:
        for (unsigned int i = 0; i < b.nruns; i++) {
                jsCtx_Destroy(b.runs[i].js);
                bridge_state_close(b.runs[i].st);
                shmbus_channel_unref(b.runs[i].chan);
        }
        if (b.nc) {
                natsConnection_FlushTimeout(b.nc, 1000);
                natsConnection_Destroy(b.nc);
        }
        nats_CloseAndWait(2000);
        shmbus_client_free(b.client);
out:
        bridge_config_deinit(&cfg);
        return ret;
}
