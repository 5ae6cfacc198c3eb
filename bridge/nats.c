/* SPDX-License-Identifier: MIT */
/*
 * The bridge's one NATS connection (libnats, its own threads): options from
 * the configuration (servers, credentials, TLS), reconnection for ever, the
 * counters its callbacks keep, and the JetStream stream the routes use.
 *
 * Invariants: the connection is shared by every route thread (libnats makes
 * it thread-safe); each JetStream route has its own jsCtx so that waiting for
 * its asynchronous publish acknowledgements waits for its own messages only.
 * The connection has no echo: a bridge never receives what it published
 * itself over core NATS (the first line of loop prevention, docs/BRIDGE.md).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"

#include "bridge.h"

/* What libnats buffers while reconnecting; beyond it core publishes are dropped (and counted). */
#define RECONNECT_BUF_BYTES (64 << 20)

uint64_t bridge_realtime_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *bridge_nats_err(natsStatus s) {
        const char *last = nats_GetLastError(NULL);

        return last && *last ? last : natsStatus_GetText(s);
}

static void on_disconnected(natsConnection *nc, void *closure) {
        struct bridge *b = closure;

        atomic_store(&b->connected, false);
        if (!atomic_load(&b->stop))
                bridge_log("disconnected from NATS; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure) {
        struct bridge *b = closure;

        atomic_fetch_add(&b->reconnects, 1);
        atomic_store(&b->connected, true);
        bridge_log("reconnected to NATS");
}

static void on_connected(natsConnection *nc, void *closure) {
        struct bridge *b = closure;

        atomic_store(&b->connected, true);
        bridge_log("connected to NATS");
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
        /* Slow consumers are counted per route (natsSubscription_GetDropped); say it once here. */
        bridge_log("NATS: %s", natsStatus_GetText(err));
}

static int check(natsStatus s, const char *what) {
        if (s == NATS_OK)
                return 0;
        bridge_log("%s: %s", what, bridge_nats_err(s));
        return -EINVAL;
}

int bridge_nats_connect(struct bridge *b) {
        const struct bridge_config *c = b->cfg;
        natsOptions *o = NULL;
        natsStatus s;
        int r = -EINVAL;

        if (natsOptions_Create(&o) != NATS_OK)
                return -ENOMEM;
        if (check(natsOptions_SetURL(o, c->nats_url), "--nats") < 0 ||
            check(natsOptions_SetName(o, "shmbus-bridge"), "name") < 0 ||
            check(natsOptions_SetNoEcho(o, true), "no echo") < 0 ||
            check(natsOptions_SetAllowReconnect(o, true), "reconnect") < 0 ||
            check(natsOptions_SetMaxReconnect(o, -1), "reconnect") < 0 ||
            check(natsOptions_SetReconnectWait(o, 100), "reconnect wait") < 0 ||
            check(natsOptions_SetReconnectJitter(o, 50, 500), "reconnect jitter") < 0 ||
            check(natsOptions_SetReconnectBufSize(o, RECONNECT_BUF_BYTES), "buffer") < 0 ||
            check(natsOptions_SetDisconnectedCB(o, on_disconnected, b), "callback") < 0 ||
            check(natsOptions_SetReconnectedCB(o, on_reconnected, b), "callback") < 0 ||
            check(natsOptions_SetErrorHandler(o, on_error, b), "callback") < 0)
                goto out;
        if (c->creds &&
            check(natsOptions_SetUserCredentialsFromFiles(o, c->creds, NULL), "--creds") < 0)
                goto out;
        if (c->token && check(natsOptions_SetToken(o, c->token), "--token") < 0)
                goto out;
        if ((c->user || c->password) &&
            check(natsOptions_SetUserInfo(o, c->user, c->password), "--user/--password") < 0)
                goto out;
        if ((c->tls || c->tls_ca || c->tls_cert) &&
            check(natsOptions_SetSecure(o, true), "--tls") < 0)
                goto out;
        if (c->tls_ca && check(natsOptions_LoadCATrustedCertificates(o, c->tls_ca), "--tls-ca") < 0)
                goto out;
        if ((c->tls_cert || c->tls_key) &&
            check(natsOptions_LoadCertificatesChain(o, c->tls_cert, c->tls_key),
                  "--tls-cert/--tls-key") < 0)
                goto out;
        if (c->tls_hostname &&
            check(natsOptions_SetExpectedHostname(o, c->tls_hostname), "--tls-hostname") < 0)
                goto out;
        /*
         * First without retrying, so that refused credentials or TLS are an error
         * at start (with a reason) rather than an endless background retry; only
         * a server that is not there yet is waited for.
         */
        s = natsConnection_Connect(&b->nc, o);
        if (s == NATS_NO_SERVER) {
                bridge_log("NATS server %s not reachable yet; retrying in the background",
                           c->nats_url);
                /* With a callback, the connect goes on in the background and returns now. */
                if (check(natsOptions_SetRetryOnFailedConnect(o, true, on_connected, b), "retry") <
                    0)
                        goto out;
                s = natsConnection_Connect(&b->nc, o);
                if (s == NATS_NOT_YET_CONNECTED)
                        s = NATS_OK;
        } else if (s == NATS_OK) {
                atomic_store(&b->connected, true);
        } else if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED) {
                bridge_log("NATS server %s refused our credentials: %s (check --creds, --token, "
                           "--user/--password)",
                           c->nats_url, bridge_nats_err(s));
                goto out;
        }
        r = check(s, c->nats_url);
out:
        natsOptions_Destroy(o);
        return r;
}

int bridge_nats_js(struct bridge *b, struct bridge_run *run) {
        jsOptions jo;

        jsOptions_Init(&jo);
        jo.Wait = 5000;
        if (run->route->kind == BRIDGE_EXPORT)
                bridge_export_js_options(run, &jo);
        return check(natsConnection_JetStream(&run->js, b->nc, &jo), "JetStream");
}

/* One attempt: 0 (the stream is there, or we made it), -EAGAIN (try again), -EIO (logged). */
static int stream_try(struct bridge *b, jsCtx *js, bool *warned) {
        const struct bridge_config *c = b->cfg;
        const char *subjects[BRIDGE_ROUTES_MAX];
        jsStreamInfo *si = NULL;
        jsStreamConfig sc;
        jsErrCode jerr = 0;
        natsStatus s;
        int n = 0;

        s = js_GetStreamInfo(&si, js, c->stream, NULL, &jerr);
        if (s == NATS_OK) {
                jsStreamInfo_Destroy(si);
                return 0;
        }
        if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
                /* Not connected yet, or the server is still starting JetStream. */
                if (!*warned)
                        bridge_log("waiting for JetStream stream %s: %s (is JetStream enabled "
                                   "on the server? nats-server -js)",
                                   c->stream, bridge_nats_err(s));
                *warned = true;
                return -EAGAIN;
        }
        for (unsigned int i = 0; i < c->nroutes; i++) {
                bool seen = false;

                if (c->routes[i].mode != BRIDGE_JETSTREAM)
                        continue;
                for (int j = 0; j < n; j++)
                        seen |= strcmp(subjects[j], c->routes[i].subject) == 0;
                if (!seen)
                        subjects[n++] = c->routes[i].subject;
        }
        jsStreamConfig_Init(&sc);
        sc.Name = c->stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = n;
        sc.Storage = js_FileStorage;
        s = js_AddStream(&si, js, &sc, NULL, &jerr);
        if (s != NATS_OK && js_GetStreamInfo(&si, js, c->stream, NULL, NULL) == NATS_OK) {
                /* Another route or bridge made it meanwhile (its subjects may differ a little). */
                jsStreamInfo_Destroy(si);
                return 0;
        }
        if (s != NATS_OK) {
                bridge_log("cannot create JetStream stream %s: %s (error %d)", c->stream,
                           bridge_nats_err(s), (int)jerr);
                return -EIO;
        }
        bridge_log("created JetStream stream %s", c->stream);
        jsStreamInfo_Destroy(si);
        return 0;
}

/*
 * --jetstream STREAM: use the stream, creating it for the subjects of the
 * jetstream routes when it does not exist. An existing stream is used as it is
 * (its subjects are the operator's business); publishes to a subject it lacks
 * then fail, are logged and retried. Each jetstream route calls this when it
 * starts, after joining its channel, and waits here for the server as long as
 * it takes (or until the bridge stops: -ECANCELED).
 */
int bridge_nats_ensure_stream(struct bridge *b, jsCtx *js) {
        bool warned = false;

        for (;;) {
                int r = stream_try(b, js, &warned);

                if (r != -EAGAIN)
                        return r;
                if (atomic_load(&b->stop))
                        return -ECANCELED;
                struct timespec ts = {0, 200 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
}
