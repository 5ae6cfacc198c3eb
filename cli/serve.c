/* SPDX-License-Identifier: MIT */
/*
 * shmbus-cli metrics (serve.h). Every scrape asks shmbusd (or reads the files)
 * anew, so what Prometheus stores is never older than its scrape. The server
 * answers GET and HEAD for /metrics, 404 for any other path, and 405 for
 * other methods (501 for those evhttp does not know); requests have no body
 * worth reading, and slow clients are cut off, so a stray client cannot hold
 * much.
 *
 * --listen takes [HOST:]PORT, with [IPV6]:PORT; a missing or empty host is
 * SERVE_DEFAULT_HOST, never "every address". A non-loopback address the user
 * names is served, with a warning: channel names and counters are then
 * readable by whoever reaches it.
 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "inspect.h"
#include "metrics.h"
#include "util.h"

#define METRICS_PATH "/metrics"

/* A scrape's request is a request line and headers; anything larger is not a scraper. */
#define MAX_HEADERS_SIZE 16384
#define TIMEOUT_SECS     10

static void event_base_freep(struct event_base **p) {
        if (*p)
                event_base_free(*p);
}

static void evhttp_freep(struct evhttp **p) {
        if (*p)
                evhttp_free(*p);
}

static void event_freep(struct event **p) {
        if (*p)
                event_free(*p);
}

static void filep(FILE **p) {
        if (*p)
                fclose(*p);
}

/*
 * Split @listen ("[HOST:]PORT", "[V6]:PORT") into @host (of @size) and
 * @ret_port. Return: 0, or -EINVAL.
 */
static int parse_listen(const char *listen, char *host, size_t size, int *ret_port) {
        const char *colon = strrchr(listen, ':'), *port = colon ? colon + 1 : listen;
        size_t n = colon ? (size_t)(colon - listen) : 0;
        char *end;
        long p;

        if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
                listen++;
                n -= 2;
        } else if (memchr(listen, ':', n)) {
                return -EINVAL; /* a bare IPv6 address: its port would be ambiguous */
        }
        if (n >= size)
                return -EINVAL;
        if (n == 0) {
                snprintf(host, size, "%s", SERVE_DEFAULT_HOST);
        } else {
                memcpy(host, listen, n);
                host[n] = '\0';
        }
        p = strtol(port, &end, 10);
        if (!*port || *end || p < 0 || p > 65535)
                return -EINVAL;
        *ret_port = (int)p;
        return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss) {
        if (ss->ss_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
        if (ss->ss_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

                return IN6_IS_ADDR_LOOPBACK(a) ||
                       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false;
}

/* "http://ADDR:PORT/metrics" for the socket @fd is bound to; say it, and warn if not loopback. */
static int say_address(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char addr[INET6_ADDRSTRLEN];
        int port;

        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

                inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
                port = ntohs(sin->sin_port);
                printf("listening on http://%s:%d" METRICS_PATH "\n", addr, port);
        } else {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

                inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
                port = ntohs(sin6->sin6_port);
                printf("listening on http://[%s]:%d" METRICS_PATH "\n", addr, port);
        }
        fflush(stdout);
        if (!is_loopback(&ss))
                cli_err("warning: %s is not a loopback address: whoever can reach it can read "
                        "channel names and counters",
                        addr);
        return 0;
}

/* The snapshot as the exposition the scraper asked for, into @out; 0 or -errno. */
static int render(const struct cli_options *o, bool openmetrics, struct evbuffer *out) {
        _cleanup_cjson_ cJSON *list = NULL;
        _cleanup_free_ char *text = NULL;
        bool offline = false;
        size_t len = 0;
        int r;

        r = inspect_snapshot(o, true, false, &list, &offline);
        if (r < 0) {
                inspect_say_error(o, "metrics", r, offline);
                return r;
        }
        {
                _cleanup_(filep) FILE *f = open_memstream(&text, &len);

                if (!f)
                        return -ENOMEM;
                r = metrics_write(f, list, offline, openmetrics);
                if (r < 0)
                        return r;
        } /* fclose() here makes text and len final */
        return evbuffer_add(out, text, len) < 0 ? -ENOMEM : 0;
}

struct server {
        const struct cli_options *o;
};

static void on_request(struct evhttp_request *req, void *userdata) {
        const struct server *s = userdata;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        const char *accept;
        struct evbuffer *body;
        bool openmetrics;

        if (!path || strcmp(path, METRICS_PATH) != 0) {
                evhttp_send_error(req, HTTP_NOTFOUND, NULL);
                return;
        }
        if (!(evhttp_request_get_command(req) & (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD))) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
                evhttp_send_error(req, HTTP_BADMETHOD, NULL);
                return;
        }
        /* Prometheus asks for OpenMetrics first when it can read it. */
        accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
        openmetrics = accept && strstr(accept, "application/openmetrics-text");
        body = evbuffer_new();
        if (!body || render(s->o, openmetrics, body) < 0) {
                if (body)
                        evbuffer_free(body);
                evhttp_send_error(req, HTTP_SERVUNAVAIL,
                                  "cannot read the bus (see the exporter's stderr)");
                return;
        }
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          openmetrics ? METRICS_TYPE_OPENMETRICS : METRICS_TYPE_PROMETHEUS);
        if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
                /* libevent 2.1 would send the body to HEAD over HTTP/1.0: send only its length. */
                char len[32];

                snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
                evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
                evbuffer_drain(body, evbuffer_get_length(body));
        }
        evhttp_send_reply(req, HTTP_OK, "OK", body);
        evbuffer_free(body);
}

static void on_signal(evutil_socket_t sig, short events, void *base) {
        event_base_loopbreak(base);
}

int verb_metrics(const struct cli_options *o, char **args) {
        _cleanup_(event_base_freep) struct event_base *base = NULL;
        _cleanup_(evhttp_freep) struct evhttp *http = NULL;
        _cleanup_(event_freep) struct event *sigint = NULL;
        _cleanup_(event_freep) struct event *sigterm = NULL;
        struct evhttp_bound_socket *bound;
        struct server s = {.o = o};
        char host[256];
        int port;

        if (parse_listen(o->listen ? o->listen : SERVE_DEFAULT_HOST ":" SERVE_DEFAULT_PORT, host,
                         sizeof(host), &port) < 0) {
                cli_err("metrics: invalid value '%s' for --listen: expected [HOST:]PORT, or "
                        "[IPV6]:PORT",
                        o->listen);
                return EXIT_USAGE;
        }
        base = event_base_new();
        http = base ? evhttp_new(base) : NULL;
        sigint = base ? evsignal_new(base, SIGINT, on_signal, base) : NULL;
        sigterm = base ? evsignal_new(base, SIGTERM, on_signal, base) : NULL;
        if (!http || !sigint || !sigterm || event_add(sigint, NULL) < 0 ||
            event_add(sigterm, NULL) < 0) {
                cli_err("metrics: %s", shmbus_strerror(-ENOMEM));
                return EXIT_FAIL;
        }
        /* Known methods reach on_request(), so that a wrong path is 404 whatever the method. */
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                                 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
        evhttp_set_max_headers_size(http, MAX_HEADERS_SIZE);
        evhttp_set_max_body_size(http, 0);
        evhttp_set_timeout(http, TIMEOUT_SECS);
        evhttp_set_gencb(http, on_request, &s);
        bound = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
        if (!bound) {
                cli_err("metrics: cannot listen on %s port %d: %s", host, port, strerror(errno));
                return EXIT_FAIL;
        }
        if (say_address(evhttp_bound_socket_get_fd(bound)) < 0)
                return EXIT_FAIL;
        signal(SIGPIPE, SIG_IGN);
        event_base_dispatch(base);
        return EXIT_OK;
}
