/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's vocabulary (docs/PROTOCOL.md): its version, size
 * limits, default paths, op names and field names. This is the one definition
 * that libshmbus, shmbusd and shmbus-cli use; the shared-memory layout lives in
 * layout.h. A name used on the wire is spelled here and nowhere else.
 */
#pragma once

#include <cjson/cJSON.h>

/* Protocol version: a request's "v" (omitted means 1), every reply's "v". */
#define WIRE_VERSION 1

/* Largest request packet the daemon reads; larger ones are refused with EMSGSIZE. */
#define WIRE_REQUEST_MAX 65536
/* Largest reply packet a client accepts (a "list" of many channels). */
#define WIRE_REPLY_MAX (1 << 20)

/* Where channel files live when nothing else is configured. The default control
 * socket is public: SHMBUS_DEFAULT_SOCKET in shmbus.h. */
#define WIRE_DEFAULT_SHM_DIR "/dev/shm/shmbus"

/* Ops. */
#define WIRE_OP_HELLO  "hello"
#define WIRE_OP_OPEN   "open"
#define WIRE_OP_CLOSE  "close"
#define WIRE_OP_LIST   "list"
#define WIRE_OP_STAT   "stat"
#define WIRE_OP_DELETE "delete"

/* The envelope. */
#define WIRE_V       "v"
#define WIRE_OP      "op"
#define WIRE_OK      "ok"
#define WIRE_ERROR   "error"   /* errno name, "EACCES" */
#define WIRE_ERRNO   "errno"   /* its Linux number, > 0 */
#define WIRE_MESSAGE "message" /* a sentence for humans */

/* Request fields. */
#define WIRE_NAME     "name"
#define WIRE_ROLE     "role"
#define WIRE_ROLE_PUB "pub"
#define WIRE_ROLE_SUB "sub"
#define WIRE_CREATE   "create"
/* With a create object: an existing channel of other settings is fine (else EEXIST). */
#define WIRE_ACCEPT_EXISTING "accept_existing"

/*
 * Grants (in a create object; in open and stat replies): who besides the
 * owner may use the channel, {"publish": ACL, "subscribe": ACL}, each ACL
 * "any" or {"uids": [...], "gids": [...]}.
 */
#define WIRE_GRANTS          "grants"
#define WIRE_GRANT_PUBLISH   "publish"
#define WIRE_GRANT_SUBSCRIBE "subscribe"
#define WIRE_UIDS            "uids"
#define WIRE_GIDS            "gids"
#define WIRE_ANY             "any"

/* Channel geometry, in create objects, open replies and stats. */
#define WIRE_POLICY           "policy"
#define WIRE_POLICY_BLOCK     "block"
#define WIRE_POLICY_OVERWRITE "overwrite"
#define WIRE_CAPACITY         "capacity"
#define WIRE_MAX_MSG          "max_msg"
#define WIRE_MAX_SUBSCRIBERS  "max_subscribers"
#define WIRE_MAX_PUBLISHERS   "max_publishers"
#define WIRE_OWNER_UID        "owner_uid"
#define WIRE_OWNER_GID        "owner_gid"
/* Block channels: evict a subscriber that keeps publishers waiting this long (create, config). */
#define WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS "slow_subscriber_timeout_ms"

/* Reply fields. */
#define WIRE_CREATED "created"
#define WIRE_PID     "pid"
/* Open replies: the generation of the channel's eventfd, the third descriptor (docs/EVENTS.md). */
#define WIRE_NOTIFY_GEN         "notify_gen"
#define WIRE_SERVER_VERSION     "version"
#define WIRE_PROTOCOL           "protocol"
#define WIRE_SHM_DIR            "shm_dir"
#define WIRE_UNBLOCK_TIMEOUT_MS "unblock_timeout_ms"
#define WIRE_CHANNELS           "channels"

/* Counters of a channel (list and stat replies; the CLI's offline view). */
#define WIRE_PUBLISHERS_ACTIVE  "publishers_active"
#define WIRE_SUBSCRIBERS_ACTIVE "subscribers_active"
#define WIRE_PUBLISHED          "published"
#define WIRE_PUBLISHED_BYTES    "published_bytes"
#define WIRE_POSITION           "position"
#define WIRE_MAX_LAG_BYTES      "max_lag_bytes"
#define WIRE_LOST               "lost"
#define WIRE_UNBLOCKED          "unblocked"
#define WIRE_EVICTED            "evicted"

/* Per-slot detail of a stat reply. */
#define WIRE_SUBSCRIBERS "subscribers"
#define WIRE_PUBLISHERS  "publishers"
#define WIRE_SLOT        "slot"
#define WIRE_UID         "uid"
#define WIRE_LAG_BYTES   "lag_bytes"
#define WIRE_LAPPED      "lapped" /* lag_bytes exceeds the capacity: unread messages are gone */
#define WIRE_RECEIVED    "received"
#define WIRE_BYTES       "bytes"
#define WIRE_CORRUPT     "corrupt"
#define WIRE_ABORTS      "aborts"
#define WIRE_WAITS       "waits"
#define WIRE_FULL        "full"

/* What each uid holds, and the quotas (list; stat gives the channel owner's). */
#define WIRE_UIDS                   "uids"
#define WIRE_QUOTA                  "quota"
#define WIRE_OWNER_USE              "owner_use"
#define WIRE_QUOTA_CHANNELS_PER_UID "channels_per_uid"
#define WIRE_QUOTA_BYTES_PER_UID    "bytes_per_uid"
#define WIRE_QUOTA_EXEMPT           "exempt"

/*
 * shmbus__wire_reply_status() - what a reply says about its request
 *
 * Return: 0 for {"ok":true}; the reply's -errno for {"ok":false,"errno":N} with
 * N > 0; -EPROTO for anything else (no "ok", or a failure without a usable
 * errno: a peer that says "failed" without saying why is not speaking the
 * protocol).
 */
int shmbus__wire_reply_status(const cJSON *reply);

/*
 * The daemon's own counters (op "stats", issue 21): what shmbusd has done since
 * it started, for monitoring. Per-uid use is not here: it follows from "list"
 * (owner_uid, capacity of every channel).
 */
#define WIRE_OP_STATS             "stats"
#define WIRE_UPTIME_MS            "uptime_ms"
#define WIRE_CONNECTIONS          "connections"
#define WIRE_CONNECTIONS_ACCEPTED "connections_accepted"
#define WIRE_CONNECTIONS_REFUSED  "connections_refused"
#define WIRE_CHANNELS_ADOPTED     "channels_adopted"
#define WIRE_CHANNELS_NOT_ADOPTED "channels_not_adopted"
#define WIRE_SLOTS_RELEASED       "slots_released"
#define WIRE_CLAIMS_UNBLOCKED     "claims_unblocked"
#define WIRE_REQUESTS             "requests"
#define WIRE_REQUESTS_OTHER       "other"
#define WIRE_REQUESTS_FAILED      "requests_failed"
