/* SPDX-License-Identifier: MIT */
/*
 * record (record.h): follow one or more channels and write every message, with
 * its channel, message number and receipt times, to a recording
 * (recording.h, docs/RECORDING.md), until Ctrl-C, --count or --duration.
 *
 * Two decisions are isolated here so that each can change in one place:
 * record_subscribe() (how the recorder joins a channel: untethered unless
 * --tethered) and record_follow_all() (how it waits on several channels: one
 * thread each).
 * Invariants: every record goes to the writer under rec->lock, timestamps
 * are taken under it too, so the file's order is the order of its monotonic
 * timestamps; every loss the library counts becomes a loss record before the
 * next message of its channel, or before the end record.
 */
#include "record.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"

#include "ask.h"
#include "cli.h"
#include "offline.h"
#include "output.h"
#include "pubsub.h"
#include "recording.h"
#include "util.h"

/* How long a follower waits for a message before it looks at the stop conditions again. */
#define RECORD_POLL_MS 100

struct recorder;

/* One followed channel. Its counters are written under the recorder's lock. */
struct track {
        struct recorder *rec;
        shmbus_channel *ch;
        shmbus_sub *sub;
        const char *name;
        uint32_t id;
        uint64_t messages, bytes, lost;
        pthread_t thread;
        bool started;
        bool deleted; /* the channel was deleted, and all it held was read */
};

struct recorder {
        pthread_mutex_t lock;
        struct rec_writer w;
        uint64_t flushed;  /* w.offset at the last flush */
        int64_t real_off;  /* CLOCK_REALTIME minus CLOCK_MONOTONIC, sampled now and then */
        uint32_t stamps;   /* messages stamped since real_off was sampled */
        uint64_t messages; /* over all channels */
        uint64_t bytes;
        uint64_t limit;      /* --count; 0: none */
        int64_t deadline;    /* --duration, on the monotonic clock; 0: none */
        atomic_bool done;    /* --count reached, Ctrl-C, or a failure */
        atomic_uint running; /* followers that have not returned yet */
        int err;             /* the first failure (-errno), under lock */
        size_t n;
        struct track *tracks;
};

/*
 * How the recorder joins a channel: untethered (issue 16), so that it never
 * makes a publisher wait, even on a block channel; what it misses when it
 * falls a ring behind is counted exactly (shmbus_sub_lost()) and written as a
 * loss record. --tethered makes it an ordinary subscriber instead: lossless on
 * a block channel, at the price of holding publishers back when it is slow.
 */
static int record_subscribe(const struct cli_options *o, shmbus_channel *ch, shmbus_sub **ret_sub) {
        return shmbus_sub_new_ex(ch, o->tethered ? 0 : SHMBUS_SUB_UNTETHERED, 0, ret_sub);
}

/* The channel-wide message number of the message just received. */
static uint64_t record_seq(const shmbus_sub *sub) {
        return shmbus_sub_seq(sub);
}

static void recorder_fail(struct recorder *rec, int err) {
        if (rec->err == 0)
                rec->err = err;
        atomic_store(&rec->done, true);
}

/* Followers look only at rec->done: the Ctrl-C flag is the main thread's (see below). */
static bool recorder_should_stop(struct recorder *rec) {
        return atomic_load(&rec->done) || (rec->deadline && rec_now_mono() >= rec->deadline);
}

/* Write the losses the library counted since the last look, as one record. Under the lock. */
static int track_note_loss(struct track *t, int64_t real, int64_t mono) {
        uint64_t lost = shmbus_sub_lost(t->sub);
        int r;

        if (lost <= t->lost)
                return 0;
        r = rec_write_loss(&t->rec->w, t->id, lost - t->lost, real, mono);
        if (r == 0)
                t->lost = lost;
        return r;
}

/*
 * Stamp a message: the monotonic time read for each, the real time derived
 * from it with an offset read again every 1024 messages (and when idle), so
 * that a clock step shows within a millisecond or so of traffic while each
 * message costs one clock read, not two (a quarter of the recorder's time on
 * a VM's clock). Under the lock.
 */
static void recorder_stamp(struct recorder *rec, int64_t *ret_real, int64_t *ret_mono) {
        int64_t mono = rec_now_mono();

        if (rec->stamps++ % 1024 == 0)
                rec->real_off = rec_now_real() - mono;
        *ret_mono = mono;
        *ret_real = mono + rec->real_off;
}

/* Take one received message: count it against --count, stamp it, write it. Under the lock. */
static int track_write(struct track *t, const void *buf, size_t len) {
        struct recorder *rec = t->rec;
        int64_t real, mono;
        int r;

        recorder_stamp(rec, &real, &mono);
        r = track_note_loss(t, real, mono);
        if (r == 0)
                r = rec_write_message(&rec->w, t->id, record_seq(t->sub), real, mono, buf,
                                      (uint32_t)len);
        if (r < 0)
                return r;
        t->messages++;
        t->bytes += len;
        rec->messages++;
        rec->bytes += len;
        if (rec->limit && rec->messages >= rec->limit)
                atomic_store(&rec->done, true);
        return 0;
}

/* One channel's follower: receive, then write under the lock, until told to stop. */
static void *track_run(void *arg) {
        struct track *t = arg;
        struct recorder *rec = t->rec;
        size_t max = shmbus_channel_max_msg(t->ch);
        _cleanup_free_ uint8_t *buf = malloc(max);
        int r = buf ? 0 : -ENOMEM;

        while (r == 0 && !recorder_should_stop(rec)) {
                /* A copy, not a borrow: on an overwrite channel the bytes may change under us. */
                ssize_t len = shmbus_sub_recv(t->sub, buf, max, RECORD_POLL_MS);

                if (len == -ETIMEDOUT) {
                        /* Idle: hand what we have to the kernel, so a crash keeps it. */
                        pthread_mutex_lock(&rec->lock);
                        if (rec->flushed != rec->w.offset) {
                                r = rec_writer_flush(&rec->w);
                                rec->flushed = rec->w.offset;
                        }
                        rec->stamps = 0; /* read the real-time offset again */
                        pthread_mutex_unlock(&rec->lock);
                        continue;
                }
                if (len == -EBADMSG)
                        continue; /* the library skipped a corrupt record and counted it */
                if (len == -EIDRM) {
                        /* Deleted: everything it held has been read. The others go on. */
                        t->deleted = true;
                        break;
                }
                if (len < 0) {
                        r = (int)len;
                        break;
                }
                pthread_mutex_lock(&rec->lock);
                if (!atomic_load(&rec->done))
                        r = track_write(t, buf, (size_t)len);
                pthread_mutex_unlock(&rec->lock);
        }
        if (r < 0) {
                pthread_mutex_lock(&rec->lock);
                recorder_fail(rec, r);
                pthread_mutex_unlock(&rec->lock);
        }
        atomic_fetch_sub(&rec->running, 1);
        return NULL;
}

/*
 * Follow every channel until a stop condition: one thread per channel, each
 * blocking in its own receive, all writing through rec->lock, so that copying
 * out of several busy channels happens on several cores. A wait set
 * (shmbus_waitset_*) would let one thread do it instead; it would replace
 * this function alone. Signals are delivered to this thread only (the
 * followers block them), which turns the Ctrl-C flag into rec->done: the flag
 * is set by a signal handler, so only the thread that runs it may read it.
 */
static int record_follow_all(struct recorder *rec) {
        const struct timespec tick = {0, 20 * 1000 * 1000};
        sigset_t block, old;
        int r = 0;

        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        for (size_t i = 0; i < rec->n; i++) {
                atomic_fetch_add(&rec->running, 1);
                r = -pthread_create(&rec->tracks[i].thread, NULL, track_run, &rec->tracks[i]);
                if (r < 0) {
                        atomic_fetch_sub(&rec->running, 1);
                        pthread_mutex_lock(&rec->lock);
                        recorder_fail(rec, r);
                        pthread_mutex_unlock(&rec->lock);
                        break;
                }
                rec->tracks[i].started = true;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        while (atomic_load(&rec->running) > 0) {
                if (cli_stopped())
                        atomic_store(&rec->done, true);
                nanosleep(&tick, NULL);
        }
        for (size_t i = 0; i < rec->n; i++)
                if (rec->tracks[i].started)
                        pthread_join(rec->tracks[i].thread, NULL);
        return r;
}

/* Subscribe through shmbusd, or, when it is down, through the files (as tail --follow does). */
static int track_open(const struct cli_options *o, struct track *t) {
        _cleanup_(cli_client_freep) shmbus_client *c = NULL;
        int r;

        r = ask_connect(o, &c);
        if (r == 0)
                r = shmbus_client_open(c, t->name, 0, NULL, &t->ch);
        else if (r == -ECONNREFUSED)
                r = shmbus_channel_open(offline_shm_dir(o), t->name, 0, &t->ch);
        if (r == 0)
                r = record_subscribe(o, t->ch, &t->sub);
        if (r < 0)
                cli_err("record %s: %s", t->name,
                        r == -ENOENT ? "no such channel" : shmbus_strerror(r));
        return r;
}

static int track_define(struct recorder *rec, const struct track *t) {
        struct rec_channel c = {
                .id = t->id,
                .capacity = shmbus_channel_capacity(t->ch),
                .max_msg = (uint32_t)shmbus_channel_max_msg(t->ch),
                .policy = (uint32_t)shmbus_channel_policy(t->ch),
                .max_subs = shmbus_channel_max_subscribers(t->ch),
                .max_pubs = shmbus_channel_max_publishers(t->ch),
                /* Nothing received yet: the number it expects next (pubsub.h). */
                .first_seq = shmbus__sub_last_seq(t->sub) + 1,
        };

        snprintf(c.name, sizeof(c.name), "%s", t->name);
        return rec_write_channel(&rec->w, &c);
}

/* The summary: text on stderr, or with --json one object on stdout. */
static void record_report(const struct cli_options *o, const struct recorder *rec, double secs) {
        double rate = secs > 0 ? (double)rec->messages / secs : 0;
        uint64_t lost = 0;

        for (size_t i = 0; i < rec->n; i++)
                lost += rec->tracks[i].lost;
        if (o->json) {
                _cleanup_cjson_ cJSON *j = cJSON_CreateObject();
                cJSON *chans = cJSON_AddArrayToObject(j, "channels");

                cJSON_AddStringToObject(j, "file", o->output);
                cJSON_AddNumberToObject(j, "messages", (double)rec->messages);
                cJSON_AddNumberToObject(j, "bytes", (double)rec->bytes);
                cJSON_AddNumberToObject(j, "lost", (double)lost);
                cJSON_AddNumberToObject(j, "seconds", secs);
                cJSON_AddNumberToObject(j, CLI_MSG_PER_S, rate);
                for (size_t i = 0; chans && i < rec->n; i++) {
                        const struct track *t = &rec->tracks[i];
                        cJSON *c = cJSON_CreateObject();

                        cJSON_AddItemToArray(chans, c);
                        cJSON_AddStringToObject(c, "name", t->name);
                        cJSON_AddNumberToObject(c, "messages", (double)t->messages);
                        cJSON_AddNumberToObject(c, "bytes", (double)t->bytes);
                        cJSON_AddNumberToObject(c, "lost", (double)t->lost);
                        cJSON_AddBoolToObject(c, "deleted", t->deleted);
                }
                output_json_line(j);
                return;
        }
        fprintf(stderr,
                "shmbus-cli: recorded %llu messages (%llu bytes) in %.2f s (%.0f msg/s), %llu "
                "lost\n",
                (unsigned long long)rec->messages, (unsigned long long)rec->bytes, secs, rate,
                (unsigned long long)lost);
        for (size_t i = 0; i < rec->n; i++)
                fprintf(stderr, "  %s: %llu messages, %llu bytes, %llu lost%s\n",
                        rec->tracks[i].name, (unsigned long long)rec->tracks[i].messages,
                        (unsigned long long)rec->tracks[i].bytes,
                        (unsigned long long)rec->tracks[i].lost,
                        rec->tracks[i].deleted ? " (deleted while recorded)" : "");
}

/* Names are checked here (main.c checks only the first) and may not repeat. */
static int record_check_args(const struct cli_options *o, char **args) {
        if (!o->output) {
                cli_err("record: say where to write: -o FILE (or -o - for standard output)");
                return -EINVAL;
        }
        if (o->json && strcmp(o->output, "-") == 0) {
                cli_err("record: --json prints on standard output, so it does not go with -o -");
                return -EINVAL;
        }
        for (size_t i = 0; args[i]; i++) {
                if (!shmbus__name_is_valid(args[i])) {
                        cli_err("'%s' is not a valid channel name", args[i]);
                        return -EINVAL;
                }
                for (size_t k = 0; k < i; k++)
                        if (strcmp(args[k], args[i]) == 0) {
                                cli_err("record: channel %s is named twice", args[i]);
                                return -EINVAL;
                        }
        }
        return 0;
}

static void recorder_deinit(struct recorder *rec) {
        for (size_t i = 0; rec->tracks && i < rec->n; i++) {
                shmbus_sub_free(rec->tracks[i].sub);
                shmbus_channel_unref(rec->tracks[i].ch);
        }
        free(rec->tracks);
        pthread_mutex_destroy(&rec->lock);
}

int verb_record(const struct cli_options *o, char **args) {
        _cleanup_(recorder_deinit) struct recorder rec = {.lock = PTHREAD_MUTEX_INITIALIZER};
        int64_t start;
        size_t n = 0;
        int r, c;

        if (record_check_args(o, args) < 0)
                return EXIT_USAGE;
        while (args[n])
                n++;
        rec.tracks = calloc(n, sizeof(*rec.tracks));
        if (!rec.tracks)
                return EXIT_FAIL;
        /* Join every channel before the file exists: a missing one leaves nothing behind. */
        for (size_t i = 0; i < n; i++) {
                struct track *t = &rec.tracks[i];

                /* Counted before it is opened: a half-opened track is freed too. */
                rec.n = i + 1;
                *t = (struct track){.rec = &rec, .name = args[i], .id = (uint32_t)i};
                r = track_open(o, t);
                if (r < 0)
                        return cli_exit_code(r);
        }
        r = rec_writer_open(&rec.w, o->output);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = track_define(&rec, &rec.tracks[i]);
        if (r == 0)
                r = rec_writer_flush(&rec.w);
        if (r < 0) {
                cli_err("record: cannot write %s: %s", o->output,
                        r == -ELOOP ? "it is a symbolic link" : shmbus_strerror(r));
                rec_writer_close(&rec.w);
                return EXIT_FAIL;
        }
        rec.flushed = rec.w.offset;
        rec.limit = o->count > 0 ? (uint64_t)o->count : 0;
        cli_catch_stop();
        start = rec_now_mono();
        if (o->duration > 0)
                rec.deadline = start + (int64_t)(o->duration * 1e9);
        fprintf(stderr, "shmbus-cli: recording %zu channel%s to %s\n", n, n == 1 ? "" : "s",
                o->output);

        record_follow_all(&rec);

        /* The last losses, then the end record: its absence tells readers the file was cut. */
        r = rec.err;
        for (size_t i = 0; r == 0 && i < n; i++)
                r = track_note_loss(&rec.tracks[i], rec_now_real(), rec_now_mono());
        if (r == 0) {
                uint64_t lost = 0;

                for (size_t i = 0; i < n; i++)
                        lost += rec.tracks[i].lost;
                r = rec_write_end(&rec.w, rec.messages, rec.bytes, lost);
        }
        c = rec_writer_close(&rec.w);
        if (r == 0)
                r = c;
        record_report(o, &rec, (double)(rec_now_mono() - start) / 1e9);
        if (r < 0) {
                cli_err("record: %s", shmbus_strerror(r));
                return EXIT_FAIL;
        }
        return EXIT_OK;
}
