/* SPDX-License-Identifier: MIT */
/*
 * The metrics verb: an HTTP server (libevent's evhttp) that answers GET
 * /metrics with a fresh snapshot of the bus in Prometheus' text format, or in
 * OpenMetrics when the scraper asks for it (Accept), until Ctrl-C. It binds
 * only the address it is given; without one, loopback.
 */
#pragma once

#include "cli.h"

/* Where metrics listens unless --listen says otherwise: loopback only. */
#define SERVE_DEFAULT_HOST "127.0.0.1"
#define SERVE_DEFAULT_PORT "9466"

int verb_metrics(const struct cli_options *o, char **args);
