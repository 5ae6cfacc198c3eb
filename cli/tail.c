/* SPDX-License-Identifier: MIT */
/*
 * tail (tail.h). Through shmbusd, history and --follow of one channel are
 * one subscriber that starts -n messages back (shmbus_sub_new_ex()),
 * untethered unless --tethered. With the daemon down and no --follow, and for
 * the history of several channels, the ring is walked without joining it, so
 * a message may be overwritten while it is copied; such copies are dropped.
 * Several channels are followed from one wait set (shmbus_waitset_*), each
 * line named by its channel, by untethered subscribers unless --tethered.
 */
#include "tail.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus.h"

#include "ask.h"
#include "channel.h"
#include "cli.h"
#include "offline.h"
#include "ring.h"
#include "util.h"

static bool is_text(const uint8_t *d, size_t len) {
        bool text = true;

        for (size_t i = 0; i < len; i++)
                text &= (d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\t' || d[i] == '\n';
        return text;
}

/*
 * {"seq", "len", "text"} for text, {"seq", "len", "hex"} for anything else: one a line,
 * with "channel" first when several channels are followed.
 */
static void print_json_named(const char *channel, const uint8_t *d, size_t len, uint64_t seq) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *line = NULL;

        if (channel)
                cJSON_AddStringToObject(o, "channel", channel);
        cJSON_AddNumberToObject(o, "seq", (double)seq);
        cJSON_AddNumberToObject(o, "len", (double)len);
        if (is_text(d, len)) {
                /* A copy with a terminator: the message has none. */
                _cleanup_free_ char *s = malloc(len + 1);

                if (s) {
                        memcpy(s, d, len);
                        s[len] = '\0';
                }
                cJSON_AddStringToObject(o, "text", s ? s : "");
        } else {
                _cleanup_free_ char *hex = malloc(len * 2 + 1);

                for (size_t i = 0; hex && i < len; i++)
                        sprintf(hex + 2 * i, "%02x", d[i]);
                if (hex)
                        hex[len * 2] = '\0';
                cJSON_AddStringToObject(o, "hex", hex ? hex : "");
        }
        line = cJSON_PrintUnformatted(o);
        puts(line);
}

static void print_json(const uint8_t *d, size_t len, uint64_t seq) {
        print_json_named(NULL, d, len, seq);
}

static void print_hex(const struct cli_options *o, const uint8_t *d, size_t len, uint64_t seq) {
        printf("%s#%llu%s %zu B:", cli_color(o, "\033[2m"), (unsigned long long)seq,
               cli_color(o, "\033[0m"), len);
        for (size_t i = 0; i < len; i++)
                printf(" %02x", d[i]);
        putchar('\n');
}

/* Printable bytes as they are, the rest escaped, one message a line. */
static void print_text(const uint8_t *d, size_t len) {
        for (size_t i = 0; i < len; i++) {
                if (d[i] == '\\')
                        fputs("\\\\", stdout);
                else if (d[i] >= 0x20 && d[i] < 0x7f)
                        putchar(d[i]);
                else if (d[i] == '\n')
                        fputs("\\n", stdout);
                else
                        printf("\\x%02x", d[i]);
        }
        putchar('\n');
}

static void print_msg(const struct cli_options *o, const uint8_t *d, size_t len, uint64_t seq) {
        switch (o->format) {
        case CLI_FORMAT_JSON:
                print_json(d, len, seq);
                break;
        case CLI_FORMAT_HEX:
                print_hex(o, d, len, seq);
                break;
        default:
                print_text(d, len);
                break;
        }
}

/* The last @keep messages of the walk, in a circle of copies. */
struct history {
        size_t keep, n, next;
        uint8_t **data;
        size_t *len;
        uint64_t *seq;
};

static void history_deinit(struct history *h) {
        for (size_t i = 0; h->data && i < h->keep; i++)
                free(h->data[i]);
        free(h->data);
        free(h->len);
        free(h->seq);
}

static int history_add(void *ctx, const void *data, uint32_t len, uint64_t seq, bool stale) {
        struct history *h = ctx;
        size_t i;

        if (stale) {
                /* Overwritten while read: forget the last copy, it may be torn. */
                if (h->n) {
                        h->next = (h->next + h->keep - 1) % h->keep;
                        h->n--;
                }
                return 0;
        }
        i = h->next;
        free(h->data[i]);
        h->data[i] = malloc(len ? len : 1);
        if (!h->data[i])
                return -ENOMEM;
        memcpy(h->data[i], data, len);
        h->len[i] = len;
        h->seq[i] = seq;
        h->next = (i + 1) % h->keep;
        if (h->n < h->keep)
                h->n++;
        return 0;
}

/* Copy the last @keep messages before ring position @upto into @h. */
static int history_read(struct history *h, shmbus_channel *ch, uint64_t upto, size_t keep) {
        h->keep = keep;
        h->data = calloc(keep, sizeof(*h->data));
        h->len = calloc(keep, sizeof(*h->len));
        h->seq = calloc(keep, sizeof(*h->seq));
        if (!h->data || !h->len || !h->seq)
                return -ENOMEM;
        return shmbus__ring_walk(&ch->ring, upto, history_add, h);
}

/* What was copied, oldest first (also after a failed read: what we have is good). */
static void history_print(const struct cli_options *o, const struct history *h) {
        for (size_t i = 0; i < h->n; i++) {
                size_t k = (h->next + h->keep - h->n + i) % h->keep;

                print_msg(o, h->data[k], h->len[k], h->seq[k]);
        }
}

/*
 * Print what a history subscriber starts with: at most @n messages, up to
 * where the ring was when it joined (it returns -EAGAIN there).
 */
static int history_drain(const struct cli_options *o, const char *name, shmbus_channel *ch,
                         shmbus_sub *sub, long n) {
        size_t max = shmbus_channel_max_msg(ch);
        _cleanup_free_ uint8_t *buf = malloc(max);

        if (!buf)
                return -ENOMEM;
        for (long i = 0; i < n; i++) {
                ssize_t len = shmbus_sub_recv(sub, buf, max, 0);

                if (len == -EAGAIN || len == -EIDRM)
                        break;
                if (len == -EBADMSG)
                        continue;
                if (len < 0) {
                        cli_err("tail %s: reading history: %s", name, shmbus_strerror((int)len));
                        return (int)len;
                }
                print_msg(o, buf, (size_t)len, shmbus_sub_seq(sub));
        }
        return 0;
}

/* Print every new message until Ctrl-C, a failure, or the reader of stdout going away. */
static int follow(const struct cli_options *o, const char *name, shmbus_channel *ch,
                  shmbus_sub *sub) {
        size_t max = shmbus_channel_max_msg(ch);
        _cleanup_free_ uint8_t *buf = malloc(max);
        int r = 0;

        cli_catch_stop();
        while (buf && !cli_stopped()) {
                /* Copy out, then print: the ring may reuse the bytes once released. */
                ssize_t len = shmbus_sub_recv(sub, buf, max, 200);

                if (len == -ETIMEDOUT || len == -EBADMSG)
                        continue;
                if (len == -EIDRM) {
                        cli_err("tail %s: the channel was deleted", name);
                        break;
                }
                if (len < 0) {
                        r = (int)len;
                        cli_err("tail %s: %s", name, shmbus_strerror(r));
                        break;
                }
                print_msg(o, buf, (size_t)len, shmbus__sub_last_seq(sub));
                if (fflush(stdout) != 0)
                        break; /* the reader went away */
        }
        if (shmbus_sub_lost(sub))
                cli_err("tail %s: %llu messages lost (overwritten before they were read)", name,
                        (unsigned long long)shmbus_sub_lost(sub));
        return r;
}

/* Through shmbusd if it runs, else the files: read-only unless a subscriber is needed. */
static int open_channel(const struct cli_options *o, const char *name, shmbus_channel **ret_chan) {
        _cleanup_(cli_client_freep) shmbus_client *c = NULL;
        int r;

        r = ask_connect(o, &c);
        if (r == 0) {
                r = shmbus_client_open(c, name, 0, NULL, ret_chan);
                if (r == -ETIMEDOUT)
                        ask_not_answering(c);
                if (r == -EACCES) {
                        /* The daemon's reason, then an error the caller does not print again. */
                        ask_say_error(c, "tail", r);
                        exit(cli_exit_code(r));
                }
                return r;
        }
        if (r == -ECONNREFUSED) {
                offline_say(o);
                return shmbus_channel_open(offline_shm_dir(o), name,
                                           o->follow ? 0 : SHMBUS_OPEN_INSPECT, ret_chan);
        }
        return r;
}

/* ---- several channels: tail A B C [-f] ------------------------------------------------- */

/* One line of one of several channels, named so the lines can be told apart. */
static void print_msg_of(const struct cli_options *o, const char *name, const uint8_t *d,
                         size_t len, uint64_t seq) {
        if (o->format == CLI_FORMAT_JSON) {
                print_json_named(name, d, len, seq);
                return;
        }
        printf("%s%s:%s ", cli_color(o, "\033[1m"), name, cli_color(o, "\033[0m"));
        print_msg(o, d, len, seq);
}

struct followed {
        const char *name;
        shmbus_channel *ch;
        shmbus_sub *sub;
        uint8_t *buf;
};

static void followed_deinit(struct followed *f) {
        shmbus_sub_free(f->sub);
        shmbus_channel_unref(f->ch);
        free(f->buf);
}

/* Up to 64 messages of @f, so that one busy channel cannot starve the others. */
static int follow_take(const struct cli_options *o, struct followed *f) {
        size_t max = shmbus_channel_max_msg(f->ch);

        for (int i = 0; i < 64; i++) {
                ssize_t len = shmbus_sub_recv(f->sub, f->buf, max, 0);

                if (len == -EAGAIN)
                        return 0; /* drained: its descriptor waits for the next message */
                if (len == -EBADMSG)
                        continue;
                if (len < 0) {
                        cli_err("tail %s: %s", f->name, shmbus_strerror((int)len));
                        return (int)len;
                }
                print_msg_of(o, f->name, f->buf, (size_t)len, shmbus__sub_last_seq(f->sub));
        }
        return 0;
}

/*
 * History of each channel in turn, then with --follow every new message of
 * any of them, from one wait set: one thread, one kernel wait.
 */
static int tail_many(const struct cli_options *o, char **names, size_t n) {
        _cleanup_free_ struct followed *fs = calloc(n, sizeof(*fs));
        _cleanup_free_ void **ready = calloc(n, sizeof(*ready));
        shmbus_waitset *ws = NULL;
        int r = 0;

        if (!fs || !ready)
                return cli_exit_code(-ENOMEM);
        for (size_t i = 0; i < n && r == 0; i++) {
                fs[i].name = names[i];
                if (!shmbus__name_is_valid(names[i])) {
                        cli_err("'%s' is not a valid channel name", names[i]);
                        r = -EINVAL;
                        break;
                }
                r = open_channel(o, names[i], &fs[i].ch);
                if (r == 0 && o->follow)
                        r = shmbus_sub_new_ex(fs[i].ch, o->tethered ? 0 : SHMBUS_SUB_UNTETHERED, 0,
                                              &fs[i].sub);
                if (r == 0 && o->follow)
                        fs[i].buf = malloc(shmbus_channel_max_msg(fs[i].ch));
                if (r == 0 && o->follow && !fs[i].buf)
                        r = -ENOMEM;
                if (r < 0)
                        cli_err("tail %s: %s", names[i],
                                r == -ENOENT ? "no such channel" : shmbus_strerror(r));
        }
        for (size_t i = 0; i < n && r == 0 && o->lines > 0; i++) {
                _cleanup_(history_deinit) struct history h = {0};
                uint64_t upto = o->follow ? shmbus__sub_position(fs[i].sub)
                                          : shmbus__ring_tail_pos(&fs[i].ch->ring);

                if (history_read(&h, fs[i].ch, upto, (size_t)o->lines) < 0)
                        cli_err("tail %s: reading history failed", fs[i].name);
                for (size_t k = 0; k < h.n; k++) {
                        size_t j = (h.next + h.keep - h.n + k) % h.keep;

                        print_msg_of(o, fs[i].name, h.data[j], h.len[j], h.seq[j]);
                }
        }
        fflush(stdout);
        if (r == 0 && o->follow)
                r = shmbus_waitset_new(&ws);
        for (size_t i = 0; i < n && r == 0 && o->follow; i++)
                r = shmbus_waitset_add_sub(ws, fs[i].sub, &fs[i]);
        if (r < 0 && ws)
                cli_err("tail: %s", shmbus_strerror(r));
        if (r == 0 && o->follow) {
                cli_catch_stop();
                while (!cli_stopped()) {
                        int got = shmbus_waitset_wait(ws, ready, n, 200);

                        if (got == -ETIMEDOUT || got == -EINTR)
                                continue;
                        if (got < 0) {
                                r = got;
                                cli_err("tail: %s", shmbus_strerror(r));
                                break;
                        }
                        for (int i = 0; i < got && r == 0; i++)
                                r = follow_take(o, ready[i]);
                        if (r < 0 || fflush(stdout) != 0)
                                break; /* a failure, or the reader of stdout went away */
                }
                for (size_t i = 0; i < n; i++)
                        if (shmbus_sub_lost(fs[i].sub))
                                cli_err("tail %s: %llu messages lost (overwritten before they "
                                        "were read)",
                                        fs[i].name, (unsigned long long)shmbus_sub_lost(fs[i].sub));
        }
        shmbus_waitset_free(ws);
        for (size_t i = 0; i < n; i++)
                followed_deinit(&fs[i]);
        return r < 0 ? cli_exit_code(r) : EXIT_OK;
}

/*
 * --json is --format json; any other --format with it is a contradiction, and
 * the metric formats are stats'. Return: the options to print with, in @t.
 */
static int tail_options(const struct cli_options *o, struct cli_options *t) {
        *t = *o;
        if (o->format == CLI_FORMAT_OPENMETRICS || o->format == CLI_FORMAT_PROMETHEUS) {
                cli_err("tail: --format takes text, hex or json");
                return -EINVAL;
        }
        if (o->json && o->format_set && o->format != CLI_FORMAT_JSON) {
                cli_err("tail: --json means --format json; it does not go with --format %s",
                        o->format == CLI_FORMAT_HEX ? "hex" : "text");
                return -EINVAL;
        }
        if (o->json)
                t->format = CLI_FORMAT_JSON;
        return 0;
}

int verb_tail(const struct cli_options *opts, char **args) {
        const char *name = args[0];
        _cleanup_(cli_channel_unrefp) shmbus_channel *ch = NULL;
        _cleanup_(cli_sub_freep) shmbus_sub *sub = NULL;
        struct cli_options tail_opts;
        const struct cli_options *o = &tail_opts;
        size_t n = 0;
        int r;

        if (tail_options(opts, &tail_opts) < 0)
                return EXIT_USAGE;
        while (args[n])
                n++;
        if (n > 1)
                return tail_many(o, args, n);
        r = open_channel(o, name, &ch);
        if (r < 0) {
                cli_err("tail %s: %s", name, r == -ENOENT ? "no such channel" : shmbus_strerror(r));
                return cli_exit_code(r);
        }
        if (ch->flags & SHMBUS_OPEN_INSPECT) {
                /* The files, read-only: no subscriber, so walk the ring as it is. */
                _cleanup_(history_deinit) struct history h = {0};

                if (o->lines > 0) {
                        r = history_read(&h, ch, shmbus__ring_tail_pos(&ch->ring),
                                         (size_t)o->lines);
                        if (r < 0)
                                cli_err("tail %s: reading history: %s", name, shmbus_strerror(r));
                        history_print(o, &h);
                }
                fflush(stdout);
                return r < 0 ? cli_exit_code(r) : EXIT_OK;
        }
        /*
         * A subscriber that starts -n messages back and goes on from there, so
         * nothing falls between history and --follow. Untethered unless asked:
         * a tail stopped or piped into a pager must never stall publishers.
         */
        r = shmbus_sub_new_ex(ch, o->tethered ? 0 : SHMBUS_SUB_UNTETHERED, (uint64_t)o->lines,
                              &sub);
        if (r < 0) {
                cli_err("tail %s: %s", name, shmbus_strerror(r));
                return cli_exit_code(r);
        }
        if (o->lines > 0)
                r = history_drain(o, name, ch, sub, o->lines);
        fflush(stdout);
        if (o->follow) {
                /* A failed history still lets us follow; its error stays the exit code. */
                int f = follow(o, name, ch, sub);

                if (f < 0)
                        r = f;
        } else if (shmbus_sub_lost(sub)) {
                cli_err("tail %s: %llu messages lost (overwritten before they were read)", name,
                        (unsigned long long)shmbus_sub_lost(sub));
        }
        return r < 0 && r != -ETIMEDOUT ? cli_exit_code(r) : EXIT_OK;
}
