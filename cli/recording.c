/* SPDX-License-Identifier: MIT */
/*
 * The recording file format (recording.h, docs/RECORDING.md). Integers are
 * packed byte by byte, little-endian, so the file is the same on every host.
 * The writer frames each record before handing it to stdio; the reader checks
 * the frame against the file's size before it allocates, then the CRC, then
 * the fields, and hands out only records that passed all three.
 */
#include "recording.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* ---- CRC-32, slicing by 8: under a cycle a byte, and no dependency -------------------- */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;

                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
                crc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
                for (int t = 1; t < 8; t++)
                        crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                                          crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t rec_crc32(uint32_t crc, const void *data, size_t len) {
        const uint8_t *p = data;

        pthread_once(&crc_once, crc_init);
        crc = ~crc;
        while (len >= 8) {
                uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                     (uint32_t)p[3] << 24);
                uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                              (uint32_t)p[7] << 24;

                crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
                      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
                      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
                      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
                p += 8;
                len -= 8;
        }
        while (len--)
                crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        return ~crc;
}

/* ---- little-endian packing ------------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p) {
        return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p) {
        return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int64_t now_ns(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rec_now_mono(void) {
        return now_ns(CLOCK_MONOTONIC);
}

int64_t rec_now_real(void) {
        return now_ns(CLOCK_REALTIME);
}

/* ---- writer ----------------------------------------------------------------------------- */

/* The scratch frame holds any record but a message's payload, and a header's host name. */
#define FRAME_SCRATCH (REC_FRAME_LEN + REC_HEADER_FIXED + REC_HOST_MAX + 1)

/*
 * Write one record: the frame, @body_len bytes of w->frame after it (type
 * already set), and @extra bytes of payload after those, all under one CRC.
 */
static int write_record(struct rec_writer *w, size_t body_len, const void *extra,
                        size_t extra_len) {
        uint8_t *f = w->frame;
        uint32_t crc = rec_crc32(0, f + REC_FRAME_LEN, body_len);

        if (extra_len)
                crc = rec_crc32(crc, extra, extra_len);
        put32(f, (uint32_t)(body_len + extra_len));
        put32(f + 4, crc);
        /* Unlocked: the writer has one user at a time (record.c holds its own lock). */
        if (fwrite_unlocked(f, REC_FRAME_LEN + body_len, 1, w->f) != 1 ||
            (extra_len && fwrite_unlocked(extra, extra_len, 1, w->f) != 1))
                return errno ? -errno : -EIO;
        w->offset += REC_FRAME_LEN + body_len + extra_len;
        return 0;
}

/* Zero the body's fixed part and set its type: reserved fields are written as zero. */
static uint8_t *body_start(struct rec_writer *w, enum rec_type type, size_t fixed) {
        uint8_t *b = w->frame + REC_FRAME_LEN;

        memset(b, 0, fixed);
        put16(b, (uint16_t)type);
        return b;
}

static int open_output(const char *path, FILE **ret) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        FILE *f;

        if (strcmp(path, "-") == 0) {
                *ret = stdout;
                return 0;
        }
        /*
         * Always a new file of mode 0600: recordings hold what others may not read.
         * An existing file is replaced, never truncated in place, since another
         * user may already hold it open; never through a symlink (in a shared
         * directory, another user may have planted one), and if someone puts a
         * file back between the unlink and the create, O_EXCL refuses it.
         */
        if (lstat(path, &st) == 0) {
                if (!S_ISREG(st.st_mode))
                        return S_ISLNK(st.st_mode) ? -ELOOP : -EEXIST;
                if (unlink(path) < 0)
                        return -errno;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return errno == ELOOP ? -ELOOP : -errno;
        f = fdopen(fd, "w");
        if (!f)
                return -errno;
        TAKE_FD(fd);
        *ret = f;
        return 0;
}

int rec_writer_open(struct rec_writer *w, const char *path) {
        uint8_t prefix[REC_PREFIX_LEN] = {0};
        char host[REC_HOST_MAX + 1] = "";
        size_t host_len;
        uint8_t *b;
        int r;

        *w = (struct rec_writer){0};
        w->frame = malloc(FRAME_SCRATCH);
        if (!w->frame)
                return -ENOMEM;
        r = open_output(path, &w->f);
        if (r < 0) {
                free(w->frame);
                w->frame = NULL;
                return r;
        }
        /* Big buffers: one write(2) per MiB, not one per message. */
        setvbuf(w->f, NULL, _IOFBF, 1 << 20);

        memcpy(prefix, REC_MAGIC, REC_MAGIC_LEN);
        put16(prefix + 8, REC_VERSION_MAJOR);
        put16(prefix + 10, REC_VERSION_MINOR);
        errno = 0;
        if (fwrite(prefix, sizeof(prefix), 1, w->f) != 1)
                return errno ? -errno : -EIO;
        w->offset = sizeof(prefix);

        gethostname(host, sizeof(host) - 1);
        host_len = strnlen(host, REC_HOST_MAX);
        b = body_start(w, REC_HEADER, REC_HEADER_FIXED);
        put32(b + 4, (uint32_t)host_len);
        put64(b + 8, (uint64_t)rec_now_real());
        put64(b + 16, (uint64_t)rec_now_mono());
        memcpy(b + REC_HEADER_FIXED, host, host_len);
        return write_record(w, REC_HEADER_FIXED + host_len, NULL, 0);
}

int rec_write_channel(struct rec_writer *w, const struct rec_channel *c) {
        size_t name_len = strnlen(c->name, SHMBUS_NAME_MAX);
        uint8_t *b = body_start(w, REC_CHANNEL, REC_CHANNEL_FIXED);

        put32(b + 4, c->id);
        put64(b + 8, c->capacity);
        put32(b + 16, c->max_msg);
        put32(b + 20, c->policy);
        put32(b + 24, c->max_subs);
        put32(b + 28, c->max_pubs);
        put64(b + 32, c->first_seq);
        put32(b + 40, (uint32_t)name_len);
        memcpy(b + REC_CHANNEL_FIXED, c->name, name_len);
        return write_record(w, REC_CHANNEL_FIXED + name_len, NULL, 0);
}

int rec_write_message(struct rec_writer *w, uint32_t chan, uint64_t seq, int64_t real_ns,
                      int64_t mono_ns, const void *data, uint32_t len) {
        uint8_t *b = body_start(w, REC_MESSAGE, REC_MESSAGE_FIXED);

        put32(b + 4, chan);
        put64(b + 8, seq);
        put64(b + 16, (uint64_t)real_ns);
        put64(b + 24, (uint64_t)mono_ns);
        put32(b + 32, len);
        return write_record(w, REC_MESSAGE_FIXED, data, len);
}

int rec_write_loss(struct rec_writer *w, uint32_t chan, uint64_t count, int64_t real_ns,
                   int64_t mono_ns) {
        uint8_t *b = body_start(w, REC_LOSS, REC_LOSS_FIXED);

        put32(b + 4, chan);
        put64(b + 8, count);
        put64(b + 16, (uint64_t)real_ns);
        put64(b + 24, (uint64_t)mono_ns);
        return write_record(w, REC_LOSS_FIXED, NULL, 0);
}

int rec_write_end(struct rec_writer *w, uint64_t messages, uint64_t bytes, uint64_t lost) {
        uint8_t *b = body_start(w, REC_END, REC_END_FIXED);

        put64(b + 8, messages);
        put64(b + 16, bytes);
        put64(b + 24, lost);
        put64(b + 32, (uint64_t)rec_now_real());
        put64(b + 40, (uint64_t)rec_now_mono());
        return write_record(w, REC_END_FIXED, NULL, 0);
}

int rec_writer_flush(struct rec_writer *w) {
        return fflush(w->f) == 0 ? 0 : -errno;
}

int rec_writer_close(struct rec_writer *w) {
        int r = 0;

        if (w->f) {
                if (fflush(w->f) != 0 || ferror(w->f))
                        r = errno ? -errno : -EIO;
                if (w->f != stdout && fclose(w->f) != 0 && r == 0)
                        r = -errno;
        }
        free(w->frame);
        *w = (struct rec_writer){0};
        return r;
}

/* ---- reader ----------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int stop(struct rec_reader *r, int err,
                                                      const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(r->why, sizeof(r->why), fmt, ap);
        va_end(ap);
        return err;
}

int rec_reader_open(struct rec_reader *r, const char *path) {
        uint8_t prefix[REC_PREFIX_LEN];
        struct stat st;
        size_t got;
        int fd;

        *r = (struct rec_reader){.size = -1};
        r->channels = calloc(REC_CHANNELS_MAX, sizeof(*r->channels));
        if (!r->channels)
                return -ENOMEM;
        if (strcmp(path, "-") == 0) {
                r->f = stdin;
        } else {
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                r->f = fdopen(fd, "r");
                if (!r->f) {
                        close(fd);
                        return -errno;
                }
        }
        if (fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode))
                r->size = st.st_size;
        else if (fstat(fileno(r->f), &st) == 0 && S_ISDIR(st.st_mode))
                return stop(r, -EISDIR, "it is a directory");
        got = fread(prefix, 1, sizeof(prefix), r->f);
        if (got == 0 && ferror(r->f))
                return stop(r, -EIO, "cannot read it");
        if (got < REC_MAGIC_LEN && memcmp(prefix, REC_MAGIC, got) == 0)
                return stop(r, -ENODATA, got ? "it ends inside the file's prefix" : "it is empty");
        if (memcmp(prefix, REC_MAGIC, REC_MAGIC_LEN) != 0)
                return stop(r, -EPROTO, "it is not a shmbus recording (no magic number)");
        if (got < sizeof(prefix))
                return stop(r, -ENODATA, "it ends inside the file's prefix");
        if (get16(prefix + 8) != REC_VERSION_MAJOR)
                return stop(r, -EPROTO,
                            "it has format version %u.%u, and this shmbus-cli reads only %u.x",
                            get16(prefix + 8), get16(prefix + 10), REC_VERSION_MAJOR);
        r->minor = get16(prefix + 10);
        r->offset = sizeof(prefix);
        return 0;
}

static const struct rec_channel *channel_of(const struct rec_reader *r, uint32_t id) {
        return id < r->n_channels ? &r->channels[id] : NULL;
}

static bool is_pow2(uint64_t v) {
        return v && !(v & (v - 1));
}

static int parse_channel(struct rec_reader *r, const uint8_t *b, uint32_t len,
                         struct rec_item *it) {
        struct rec_channel *c;
        uint32_t name_len = get32(b + 40);

        if (get32(b + 4) != r->n_channels || r->n_channels >= REC_CHANNELS_MAX)
                return stop(r, -EBADMSG, "channel id %u out of order (expected %u, at most %u)",
                            get32(b + 4), r->n_channels, REC_CHANNELS_MAX);
        if (name_len < 1 || name_len > SHMBUS_NAME_MAX || name_len > len - REC_CHANNEL_FIXED)
                return stop(r, -EBADMSG, "a channel name of impossible length %u", name_len);
        c = &r->channels[r->n_channels];
        *c = (struct rec_channel){
                .id = get32(b + 4),
                .capacity = get64(b + 8),
                .max_msg = get32(b + 16),
                .policy = get32(b + 20),
                .max_subs = get32(b + 24),
                .max_pubs = get32(b + 28),
                .first_seq = get64(b + 32),
        };
        memcpy(c->name, b + REC_CHANNEL_FIXED, name_len);
        c->name[name_len] = '\0';
        if (!shmbus__name_is_valid(c->name))
                return stop(r, -EBADMSG, "an invalid channel name");
        if (!is_pow2(c->capacity) || c->capacity < SHMBUS_DATA_MIN ||
            c->capacity > SHMBUS_DATA_MAX || c->max_msg < 1 || c->max_msg > c->capacity / 4 ||
            c->policy > SHMBUS_POLICY_OVERWRITE || c->max_subs < 1 ||
            c->max_subs > SHMBUS_SLOTS_MAX || c->max_pubs < 1 || c->max_pubs > SHMBUS_SLOTS_MAX)
                return stop(r, -EBADMSG, "channel %s has an impossible geometry", c->name);
        r->n_channels++;
        it->channel = c;
        return 1;
}

static int parse_message(struct rec_reader *r, const uint8_t *b, uint32_t len,
                         struct rec_item *it) {
        const struct rec_channel *c = channel_of(r, get32(b + 4));
        uint32_t n = get32(b + 32);

        if (!c)
                return stop(r, -EBADMSG, "a message on undefined channel id %u", get32(b + 4));
        if (n < 1 || n > c->max_msg || n > len - REC_MESSAGE_FIXED)
                return stop(r, -EBADMSG, "a message of impossible length %u on %s", n, c->name);
        it->msg.channel = c;
        it->msg.seq = get64(b + 8);
        it->msg.real_ns = get64(b + 16);
        it->msg.mono_ns = get64(b + 24);
        it->msg.data = b + REC_MESSAGE_FIXED;
        it->msg.len = n;
        return 1;
}

/* The fields of a record whose CRC matched; the fixed part's length is already checked. */
static int parse_body(struct rec_reader *r, const uint8_t *b, uint32_t len, struct rec_item *it) {
        uint32_t host_len;

        switch (it->type) {
        case REC_HEADER:
                host_len = get32(b + 4);
                if (host_len > REC_HOST_MAX || host_len > len - REC_HEADER_FIXED)
                        return stop(r, -EBADMSG, "a host name of impossible length %u", host_len);
                it->header.real_ns = get64(b + 8);
                it->header.mono_ns = get64(b + 16);
                /* Printable ASCII only: it is shown to users, and the file may be hostile. */
                for (uint32_t i = 0; i < host_len; i++) {
                        uint8_t ch = b[REC_HEADER_FIXED + i];

                        it->header.host[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
                }
                it->header.host[host_len] = '\0';
                return 1;
        case REC_CHANNEL:
                return parse_channel(r, b, len, it);
        case REC_MESSAGE:
                return parse_message(r, b, len, it);
        case REC_LOSS:
                it->loss.channel = channel_of(r, get32(b + 4));
                if (!it->loss.channel)
                        return stop(r, -EBADMSG, "a loss on undefined channel id %u", get32(b + 4));
                it->loss.count = get64(b + 8);
                it->loss.real_ns = get64(b + 16);
                it->loss.mono_ns = get64(b + 24);
                return 1;
        case REC_END:
                it->end.messages = get64(b + 8);
                it->end.bytes = get64(b + 16);
                it->end.lost = get64(b + 24);
                it->end.real_ns = get64(b + 32);
                it->end.mono_ns = get64(b + 40);
                r->seen_end = true;
                return 1;
        default:
                return 1; /* a type from a later minor version: the caller skips it */
        }
}

static uint32_t fixed_len(enum rec_type type) {
        switch (type) {
        case REC_HEADER:
                return REC_HEADER_FIXED;
        case REC_CHANNEL:
                return REC_CHANNEL_FIXED;
        case REC_MESSAGE:
                return REC_MESSAGE_FIXED;
        case REC_LOSS:
                return REC_LOSS_FIXED;
        case REC_END:
                return REC_END_FIXED;
        default:
                return 4;
        }
}

int rec_reader_next(struct rec_reader *r, struct rec_item *it) {
        uint8_t frame[REC_FRAME_LEN];
        uint32_t len, crc;
        size_t got;

        if (r->seen_end)
                return 0; /* the end record is the last one read */
        got = fread(frame, 1, sizeof(frame), r->f);
        if (got == 0 && ferror(r->f))
                return stop(r, -EIO, "a read failed");
        if (got == 0)
                return 0;
        if (got < sizeof(frame))
                return stop(r, -ENODATA, "the file ends inside a record's frame");
        len = get32(frame);
        crc = get32(frame + 4);
        if (len < 4 || len > REC_BODY_MAX)
                return stop(r, -EBADMSG, "a record length of %u is out of range", len);
        /* Check against what the file holds before allocating for it. */
        if (r->size >= 0 && (uint64_t)r->size - r->offset - REC_FRAME_LEN < len)
                return stop(r, -ENODATA, "the file ends inside a record (%u bytes announced)", len);
        if (len > r->cap) {
                uint8_t *nb = realloc(r->buf, len);

                if (!nb)
                        return stop(r, -ENOMEM, "out of memory");
                r->buf = nb;
                r->cap = len;
        }
        got = fread(r->buf, 1, len, r->f);
        if (got < len)
                return stop(r, ferror(r->f) ? -EIO : -ENODATA, "the file ends inside a record");
        if (rec_crc32(0, r->buf, len) != crc)
                return stop(r, -EBADMSG, "a record's CRC does not match (corrupt or torn)");
        *it = (struct rec_item){.type = get16(r->buf), .offset = r->offset};
        if (len < fixed_len(it->type))
                return stop(r, -EBADMSG, "a record of type %u is too short (%u bytes)", it->type,
                            len);
        if (!r->seen_header && it->type != REC_HEADER)
                return stop(r, -EBADMSG, "the first record is not a header");
        if (r->seen_header && it->type == REC_HEADER)
                return stop(r, -EBADMSG, "a second header");
        r->seen_header = true;
        int ret = parse_body(r, r->buf, len, it);
        if (ret > 0)
                r->offset += REC_FRAME_LEN + len;
        return ret;
}

void rec_reader_close(struct rec_reader *r) {
        if (r->f && r->f != stdin)
                fclose(r->f);
        free(r->buf);
        free(r->channels);
        *r = (struct rec_reader){0};
}
