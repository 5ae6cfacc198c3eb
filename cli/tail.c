/* SPDX-License-Identifier: MIT */
/*
 * tail (tail.h). History is read by walking the ring without joining it, so
 * a message may be overwritten while it is copied; such copies are dropped.
 * With --follow the subscriber is made before the history is read, so that
 * nothing falls between the two.
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

/* {"seq", "len", "text"} for text, {"seq", "len", "hex"} for anything else: one a line. */
static void print_json(const uint8_t *d, size_t len, uint64_t seq) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *line = NULL;

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
        if (r == 0)
                return shmbus_client_open(c, name, 0, NULL, ret_chan);
        if (r == -ECONNREFUSED) {
                offline_say(o);
                return shmbus_channel_open(offline_shm_dir(o), name,
                                           o->follow ? 0 : SHMBUS_OPEN_INSPECT, ret_chan);
        }
        return r;
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
        uint64_t upto;
        int r;

        if (tail_options(opts, &tail_opts) < 0)
                return EXIT_USAGE;
        r = open_channel(o, name, &ch);
        if (r < 0) {
                cli_err("tail %s: %s", name, r == -ENOENT ? "no such channel" : shmbus_strerror(r));
                return cli_exit_code(r);
        }
        if (o->follow) {
                r = shmbus_sub_new(ch, &sub);
                if (r < 0) {
                        cli_err("tail %s: %s", name, shmbus_strerror(r));
                        return cli_exit_code(r);
                }
                upto = shmbus__sub_position(sub);
        } else {
                upto = shmbus__ring_tail_pos(&ch->ring);
        }
        if (o->lines > 0) {
                _cleanup_(history_deinit) struct history h = {0};

                r = history_read(&h, ch, upto, (size_t)o->lines);
                if (r < 0)
                        cli_err("tail %s: reading history: %s", name, shmbus_strerror(r));
                history_print(o, &h);
        }
        fflush(stdout);
        if (o->follow) {
                /* A failed history still lets us follow; its error stays the exit code. */
                int f = follow(o, name, ch, sub);

                if (f < 0)
                        r = f;
        }
        return r < 0 && r != -ETIMEDOUT ? cli_exit_code(r) : EXIT_OK;
}
