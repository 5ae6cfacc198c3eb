/* SPDX-License-Identifier: MIT */
/*
 * replay (replay.h). Records are read and acted on one at a time, so a file
 * cut short replays every whole record before the cut and then says where
 * and why it stopped (exit 8). A message is published when its monotonic
 * receipt time, relative to the first message's, divided by --speed, has
 * passed since replay began; --as-fast-as-possible publishes at once. New
 * message numbers are assigned by the target channels: a replay does not
 * reproduce the recorded ones (--dump shows them).
 */
#include "replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"

#include "ask.h"
#include "cli.h"
#include "output.h"
#include "recording.h"
#include "util.h"
#include "wire.h"

/* Where a recorded channel goes. */
struct target {
        const char *name; /* after --map */
        shmbus_channel *ch;
        shmbus_pub *pub;
};

struct replay {
        const struct cli_options *o;
        struct target targets[REC_CHANNELS_MAX];
        bool map_used[CLI_MAPS_MAX];
        uint64_t messages, bytes, lost;
        bool timed; /* the first message fixed the time base */
        int64_t base_rec, base_now;
};

static void replay_deinit(struct replay *rp) {
        for (size_t i = 0; i < REC_CHANNELS_MAX; i++) {
                shmbus_pub_free(rp->targets[i].pub);
                shmbus_channel_unref(rp->targets[i].ch);
        }
}

/* --map OLD:NEW, both valid channel names, OLD at most once. */
static int check_maps(const struct cli_options *o) {
        for (int i = 0; i < o->n_maps; i++) {
                const char *m = o->maps[i], *colon = strchr(m, ':');
                char old[SHMBUS_NAME_MAX + 2];

                if (!colon || (size_t)(colon - m) >= sizeof(old)) {
                        cli_err("replay: --map takes OLD:NEW (two channel names), not '%s'", m);
                        return -EINVAL;
                }
                snprintf(old, sizeof(old), "%.*s", (int)(colon - m), m);
                if (!shmbus__name_is_valid(old) || !shmbus__name_is_valid(colon + 1)) {
                        cli_err("replay: --map '%s': '%s' or '%s' is not a valid channel name", m,
                                old, colon + 1);
                        return -EINVAL;
                }
                for (int k = 0; k < i; k++)
                        if (strncmp(o->maps[k], m, (size_t)(colon - m) + 1) == 0) {
                                cli_err("replay: --map names %s twice", old);
                                return -EINVAL;
                        }
        }
        return 0;
}

/* The name a recorded channel is replayed into. */
static const char *mapped_name(struct replay *rp, const char *name) {
        size_t n = strlen(name);

        for (int i = 0; i < rp->o->n_maps; i++) {
                const char *m = rp->o->maps[i];

                if (strncmp(m, name, n) == 0 && m[n] == ':') {
                        rp->map_used[i] = true;
                        return m + n + 1;
                }
        }
        return name;
}

/* A u64 as an exact JSON number (cJSON's doubles would round nanosecond times). */
static void add_u64(cJSON *j, const char *key, uint64_t v) {
        char buf[24];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        cJSON_AddRawToObject(j, key, buf);
}

static void add_payload(cJSON *j, const uint8_t *d, size_t len) {
        bool text = true;
        _cleanup_free_ char *s = malloc(len * 2 + 1);

        if (!s)
                return;
        for (size_t i = 0; i < len; i++)
                text &= (d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\t' || d[i] == '\n';
        if (text) {
                memcpy(s, d, len);
                s[len] = '\0';
                cJSON_AddStringToObject(j, "text", s);
        } else {
                for (size_t i = 0; i < len; i++)
                        snprintf(s + 2 * i, 3, "%02x", d[i]);
                s[len * 2] = '\0';
                cJSON_AddStringToObject(j, "hex", s);
        }
}

/* --dump: one JSON object a line per record, with "type" first (docs/RECORDING.md). */
static void dump_item(const struct rec_reader *rd, const struct rec_item *it) {
        _cleanup_cjson_ cJSON *j = cJSON_CreateObject();
        char version[16];

        if (!j)
                return;
        switch (it->type) {
        case REC_HEADER:
                snprintf(version, sizeof(version), "%u.%u", REC_VERSION_MAJOR, rd->minor);
                cJSON_AddStringToObject(j, "type", "header");
                cJSON_AddStringToObject(j, "version", version);
                cJSON_AddStringToObject(j, "host", it->header.host);
                add_u64(j, "time_ns", it->header.real_ns);
                add_u64(j, "mono_ns", it->header.mono_ns);
                break;
        case REC_CHANNEL:
                cJSON_AddStringToObject(j, "type", "channel");
                cJSON_AddNumberToObject(j, "id", it->channel->id);
                cJSON_AddStringToObject(j, WIRE_NAME, it->channel->name);
                add_u64(j, "capacity", it->channel->capacity);
                cJSON_AddNumberToObject(j, "max_msg", it->channel->max_msg);
                cJSON_AddStringToObject(j, "policy",
                                        it->channel->policy == SHMBUS_POLICY_OVERWRITE
                                                ? WIRE_POLICY_OVERWRITE
                                                : WIRE_POLICY_BLOCK);
                cJSON_AddNumberToObject(j, "max_subscribers", it->channel->max_subs);
                cJSON_AddNumberToObject(j, "max_publishers", it->channel->max_pubs);
                add_u64(j, "first_seq", it->channel->first_seq);
                break;
        case REC_MESSAGE:
                cJSON_AddStringToObject(j, "type", "message");
                cJSON_AddStringToObject(j, "channel", it->msg.channel->name);
                add_u64(j, "seq", it->msg.seq);
                add_u64(j, "time_ns", it->msg.real_ns);
                add_u64(j, "mono_ns", it->msg.mono_ns);
                cJSON_AddNumberToObject(j, "len", it->msg.len);
                add_payload(j, it->msg.data, it->msg.len);
                break;
        case REC_LOSS:
                cJSON_AddStringToObject(j, "type", "loss");
                cJSON_AddStringToObject(j, "channel", it->loss.channel->name);
                add_u64(j, "lost", it->loss.count);
                add_u64(j, "time_ns", it->loss.real_ns);
                add_u64(j, "mono_ns", it->loss.mono_ns);
                break;
        case REC_END:
                cJSON_AddStringToObject(j, "type", "end");
                add_u64(j, "messages", it->end.messages);
                add_u64(j, "bytes", it->end.bytes);
                add_u64(j, "lost", it->end.lost);
                add_u64(j, "time_ns", it->end.real_ns);
                add_u64(j, "mono_ns", it->end.mono_ns);
                break;
        default:
                return; /* a later version's record: skipped */
        }
        output_json_line(j);
}

/* Open the channel a recorded one maps to, to publish (creating it only with --create). */
static int target_open(struct replay *rp, const struct rec_channel *c) {
        struct target *t = &rp->targets[c->id];
        _cleanup_(cli_opts_freep) shmbus_opts *geom = NULL;
        int r;

        t->name = mapped_name(rp, c->name);
        /* The recorded geometry, for --create; shmbusd's configuration for the name wins. */
        r = shmbus_opts_new(&geom);
        if (r == 0)
                r = shmbus_opts_set_capacity(geom, c->capacity);
        if (r == 0)
                r = shmbus_opts_set_max_msg(geom, c->max_msg);
        if (r == 0)
                r = shmbus_opts_set_policy(geom, (int)c->policy);
        if (r == 0)
                r = shmbus_opts_set_max_subscribers(geom, c->max_subs);
        if (r == 0)
                r = shmbus_opts_set_max_publishers(geom, c->max_pubs);
        if (r < 0)
                return r;
        r = ask_open_for_write(rp->o, t->name, rp->o->create, geom, &t->ch);
        if (r < 0)
                return r;
        r = shmbus_pub_new(t->ch, &t->pub);
        if (r < 0)
                cli_err("replay: %s: %s", t->name, shmbus_strerror(r));
        return r;
}

/* Sleep until @when on the monotonic clock, in slices, so that Ctrl-C is seen. */
static void wait_until(int64_t when) {
        for (int64_t now = rec_now_mono(); now < when && !cli_stopped(); now = rec_now_mono()) {
                int64_t d = when - now < 100000000 ? when - now : 100000000;
                struct timespec ts = {d / 1000000000, d % 1000000000};

                nanosleep(&ts, NULL);
        }
}

static int replay_message(struct replay *rp, const struct rec_item *it) {
        struct target *t = &rp->targets[it->msg.channel->id];
        int r;

        if (!rp->o->fast) {
                double speed = rp->o->speed > 0 ? rp->o->speed : 1;
                int64_t rec = (int64_t)it->msg.mono_ns;

                if (!rp->timed) {
                        rp->base_rec = rec;
                        rp->base_now = rec_now_mono();
                        rp->timed = true;
                }
                wait_until(rp->base_now + (int64_t)((double)(rec - rp->base_rec) / speed));
        }
        r = shmbus_pub_send(t->pub, it->msg.data, it->msg.len, rp->o->timeout_ms);
        if (r < 0) {
                cli_err("replay: %s: %s (after %llu messages)", t->name, shmbus_strerror(r),
                        (unsigned long long)rp->messages);
                return r;
        }
        rp->messages++;
        rp->bytes += it->msg.len;
        return 0;
}

/* Act on one record: print it, or open a target, or publish. Return: 0 or -errno. */
static int replay_item(struct replay *rp, const struct rec_reader *rd, const struct rec_item *it) {
        if (rp->o->dump) {
                dump_item(rd, it);
                if (it->type == REC_MESSAGE)
                        rp->messages++;
                return 0;
        }
        switch (it->type) {
        case REC_CHANNEL:
                return target_open(rp, it->channel);
        case REC_MESSAGE:
                return replay_message(rp, it);
        case REC_LOSS:
                rp->lost += it->loss.count;
                return 0;
        default:
                return 0;
        }
}

static void replay_report(struct replay *rp, const char *path, bool complete, double secs) {
        for (int i = 0; i < rp->o->n_maps; i++)
                if (!rp->map_used[i])
                        cli_err("replay: warning: --map %s: the recording has no such channel",
                                rp->o->maps[i]);
        if (rp->o->dump)
                return;
        if (rp->o->json) {
                _cleanup_cjson_ cJSON *j = cJSON_CreateObject();

                cJSON_AddStringToObject(j, "file", path);
                cJSON_AddNumberToObject(j, "messages", (double)rp->messages);
                cJSON_AddNumberToObject(j, "bytes", (double)rp->bytes);
                cJSON_AddNumberToObject(j, "lost_in_recording", (double)rp->lost);
                cJSON_AddBoolToObject(j, "complete", complete);
                cJSON_AddNumberToObject(j, "seconds", secs);
                output_json_line(j);
                return;
        }
        fprintf(stderr, "shmbus-cli: replayed %llu messages (%llu bytes) in %.2f s",
                (unsigned long long)rp->messages, (unsigned long long)rp->bytes, secs);
        if (rp->lost)
                fprintf(stderr, "; the recording had lost %llu", (unsigned long long)rp->lost);
        fputc('\n', stderr);
}

/* Options that contradict each other or make no sense together. */
static int replay_check_options(const struct cli_options *o) {
        if (o->fast && o->speed > 0) {
                cli_err("replay: --speed and --as-fast-as-possible contradict each other");
                return -EINVAL;
        }
        if (o->dump && (o->json || o->create || o->n_maps)) {
                cli_err("replay: --dump only prints: it takes neither --json, --create nor --map");
                return -EINVAL;
        }
        return check_maps(o);
}

int verb_replay(const struct cli_options *o, char **args) {
        const char *path = args[0];
        _cleanup_(replay_deinit) struct replay rp = {.o = o};
        _cleanup_(rec_reader_close) struct rec_reader rd = {0};
        struct rec_item it;
        int64_t start;
        int r;

        if (replay_check_options(o) < 0)
                return EXIT_USAGE;
        r = rec_reader_open(&rd, path);
        if (r == -ENODATA) {
                cli_err("replay %s: %s: nothing to replay", path, rd.why);
                return EXIT_TRUNCATED;
        }
        if (r < 0) {
                cli_err("replay %s: %s", path, rd.why[0] ? rd.why : shmbus_strerror(r));
                return EXIT_FAIL;
        }
        cli_catch_stop();
        start = rec_now_mono();
        while (!cli_stopped() && (r = rec_reader_next(&rd, &it)) > 0) {
                r = replay_item(&rp, &rd, &it);
                if (r < 0) {
                        replay_report(&rp, path, false, (double)(rec_now_mono() - start) / 1e9);
                        return cli_exit_code(r);
                }
        }
        if (o->dump)
                fflush(stdout);
        replay_report(&rp, path, r == 0 && rd.seen_end, (double)(rec_now_mono() - start) / 1e9);
        if (r == -ENODATA || r == -EBADMSG) {
                cli_err("replay %s: stopped at byte %llu: %s; the %llu whole messages before it "
                        "were %s",
                        path, (unsigned long long)rd.offset, rd.why,
                        (unsigned long long)rp.messages, o->dump ? "printed" : "replayed");
                return EXIT_TRUNCATED;
        }
        if (r < 0) {
                cli_err("replay %s: %s", path, rd.why);
                return EXIT_FAIL;
        }
        if (r == 0 && !rd.seen_end && !cli_stopped()) {
                cli_err("replay %s: it ends without an end record (the recorder was killed or "
                        "crashed); the %llu messages in it were %s",
                        path, (unsigned long long)rp.messages, o->dump ? "printed" : "replayed");
                return EXIT_TRUNCATED;
        }
        return EXIT_OK;
}
