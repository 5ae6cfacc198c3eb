/* SPDX-License-Identifier: MIT */
/*
 * The broker: owns the control socket, the channels in the shm directory, and
 * one peer per client connection. Control only: it never touches messages,
 * except to pad over a claim whose writer died (unblock).
 */
#pragma once

#include <event2/event.h>
#include <stdbool.h>

#include "config.h"

struct broker;

int broker_new(struct event_base *base, const struct config *cfg, int listen_fd,
               struct broker **ret);
struct broker *broker_free(struct broker *b);
/* Swap in a new configuration (SIGHUP): limits and rules apply to new requests. */
void broker_set_config(struct broker *b, const struct config *cfg);
unsigned broker_n_channels(const struct broker *b);
/*
 * Serve @fd, a connected non-blocking SOCK_SEQPACKET socket, as if it had been
 * accepted (the broker owns it from now on). The fuzzer feeds requests this way.
 */
void broker_add_connection(struct broker *b, int fd);
