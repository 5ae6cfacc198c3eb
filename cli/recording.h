/* SPDX-License-Identifier: MIT */
/*
 * The recording file format of docs/RECORDING.md: a 16-byte prefix (magic,
 * version), then records, each framed by its length and a CRC-32 of its body.
 * This module owns the bytes: the writer packs records little-endian through
 * buffered stdio, the reader unpacks and validates them.
 *
 * Invariants: a reader never trusts the file. Every length is bounded before
 * it is used, nothing is allocated beyond what the file really holds, and a
 * record is handed out only once its CRC matched, so a torn or corrupt tail
 * stops the reader cleanly at the last whole record, with the offset and the
 * reason. Message records must name a channel defined earlier in the file.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "layout.h"

#define REC_MAGIC         "\x89SHMBREC"
#define REC_MAGIC_LEN     8
#define REC_VERSION_MAJOR 1
#define REC_VERSION_MINOR 0
#define REC_PREFIX_LEN    16
#define REC_FRAME_LEN     8 /* u32 body length, u32 CRC-32 of the body */

/* Record types (the body's first u16). Readers skip types they do not know. */
enum rec_type {
        REC_HEADER = 1,
        REC_CHANNEL = 2,
        REC_MESSAGE = 3,
        REC_LOSS = 4,
        REC_END = 5,
};

/* Fixed body sizes of version 1.0; a later minor version may append fields. */
#define REC_HEADER_FIXED  24
#define REC_CHANNEL_FIXED 44
#define REC_MESSAGE_FIXED 40
#define REC_LOSS_FIXED    32
#define REC_END_FIXED     48

#define REC_HOST_MAX      255
#define REC_CHANNELS_MAX  256
/* The largest body: a message of the largest size any channel allows. */
#define REC_BODY_MAX (REC_MESSAGE_FIXED + SHMBUS_DATA_MAX / 4)

struct rec_channel {
        uint32_t id;
        uint64_t capacity;
        uint32_t max_msg;
        uint32_t policy;
        uint32_t max_subs;
        uint32_t max_pubs;
        uint64_t first_seq; /* the message number the recorder expected first */
        char name[SHMBUS_NAME_MAX + 1];
};

/* One record as read. Pointers are into the reader's buffer, valid until the next read. */
struct rec_item {
        enum rec_type type; /* or another value: a type this reader does not know */
        uint64_t offset;    /* where its frame starts in the file */
        union {
                struct {
                        uint64_t real_ns, mono_ns;
                        char host[REC_HOST_MAX + 1];
                } header;
                const struct rec_channel *channel;
                struct {
                        const struct rec_channel *channel;
                        uint64_t seq, real_ns, mono_ns;
                        const uint8_t *data;
                        uint32_t len;
                } msg;
                struct {
                        const struct rec_channel *channel;
                        uint64_t count, real_ns, mono_ns;
                } loss;
                struct {
                        uint64_t messages, bytes, lost, real_ns, mono_ns;
                } end;
        };
};

struct rec_writer {
        FILE *f;
        uint64_t offset; /* bytes written so far (buffered or not) */
        uint8_t *frame;  /* scratch for one record without its payload */
};

/* CRC-32 (ISO-HDLC: the one of zlib, gzip and PNG) of @len bytes, continuing from @crc. */
uint32_t rec_crc32(uint32_t crc, const void *data, size_t len);

/*
 * Create @path (mode 0600, never through a symlink; "-" is standard output),
 * buffered, and write the prefix and the header record.
 * Return: 0, or -errno.
 */
int rec_writer_open(struct rec_writer *w, const char *path);
int rec_write_channel(struct rec_writer *w, const struct rec_channel *c);
int rec_write_message(struct rec_writer *w, uint32_t chan, uint64_t seq, int64_t real_ns,
                      int64_t mono_ns, const void *data, uint32_t len);
int rec_write_loss(struct rec_writer *w, uint32_t chan, uint64_t count, int64_t real_ns,
                   int64_t mono_ns);
int rec_write_end(struct rec_writer *w, uint64_t messages, uint64_t bytes, uint64_t lost);
/* Hand what is buffered to the kernel, so that a crash later leaves it readable. */
int rec_writer_flush(struct rec_writer *w);
/* Flush and close. Return: 0, or the first write error (-errno). */
int rec_writer_close(struct rec_writer *w);

struct rec_reader {
        FILE *f;
        uint64_t offset; /* where the next frame starts */
        int64_t size;    /* the file's size if it is a regular file, else -1 */
        uint8_t *buf;
        size_t cap;
        uint16_t minor;
        bool seen_header;
        bool seen_end;
        uint32_t n_channels;
        struct rec_channel *channels; /* REC_CHANNELS_MAX, by definition order */
        char why[160];                /* why the reader stopped early: a phrase */
};

/*
 * Open @path ("-" is standard input) and read the prefix.
 * Return: 0; -EPROTO (not a recording, or a major version we cannot read:
 * r->why says which); -ENODATA (the file ends inside the prefix); -errno.
 */
int rec_reader_open(struct rec_reader *r, const char *path);
/*
 * Read the next whole record into @it.
 * Return: 1; 0 at the end of the file (after the end record or not: see
 * r->seen_end); -ENODATA if the file ends inside a record (truncated);
 * -EBADMSG if a record is corrupt (bad CRC or length, undefined channel).
 * After a negative return, r->offset is where the bad record starts and
 * r->why says what is wrong; the reader must not be read further.
 */
int rec_reader_next(struct rec_reader *r, struct rec_item *it);
void rec_reader_close(struct rec_reader *r);

/* Monotonic and real time in nanoseconds. */
int64_t rec_now_mono(void);
int64_t rec_now_real(void);
