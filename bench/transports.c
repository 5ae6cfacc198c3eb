/* SPDX-License-Identifier: MIT */
/*
 * The links shmbus-bench measures: shmbus itself (copying and zero-copy), and
 * the baselines of the same run: a hand-written SPSC ring (the ceiling), a raw
 * futex mailbox (the cost of a kernel wake-up), a pipe and a Unix socket.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "bench.h"

char bench_dir[256];

int64_t bench_now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

int bench_futex_wait(_Atomic uint32_t *word, uint32_t val) {
        if (syscall(SYS_futex, word, FUTEX_WAIT, val, NULL, NULL, 0) < 0 && errno != EAGAIN &&
            errno != EINTR)
                return -errno;
        return 0;
}

void bench_futex_wake(_Atomic uint32_t *word) {
        syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void *shared_map(size_t len) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

        return p == MAP_FAILED ? NULL : p;
}

/* ---- the ceiling: a trivial SPSC ring of length-prefixed records, busy-polled ---------------- */

/*
 * The ring bytes follow the header; each side publishes its index every
 * `every` messages (1: after every message, the plain SPSC ring; 32: the
 * batching ceiling the batch API is measured against) and always before it
 * waits for the other side, so neither can wait on an index held back.
 */
struct spsc {
        alignas(128) _Atomic uint64_t head;
        alignas(128) _Atomic uint64_t tail;
        alignas(128) uint8_t data[];
};

struct spsc_end {
        uint64_t pos;     /* our side: tail for the writer, head for the reader */
        uint64_t other;   /* cached copy of the other side */
        uint64_t mask;    /* ring bytes - 1 */
        unsigned every;   /* publish our index every this many messages */
        unsigned pending; /* messages since we last published */
};

#define SPSC_PAD UINT64_MAX

/* spsc-ring-ro: the ring bytes start on their own page, so the reader can map them read-only. */
#define SPSC_RO_DATA 4096

static int spsc_create(struct link *l) {
        l->shared_len = sizeof(struct spsc) + l->capacity;
        l->shared = shared_map(l->shared_len);
        return l->shared ? 0 : -ENOMEM;
}

static int spsc_ro_create(struct link *l) {
        static_assert(sizeof(struct spsc) <= SPSC_RO_DATA, "indices before the data page");
        l->shared_len = SPSC_RO_DATA + l->capacity;
        l->shared = shared_map(l->shared_len);
        return l->shared ? 0 : -ENOMEM;
}

static int spsc_open_every(struct link *l, unsigned every) {
        struct spsc_end *e = calloc(1, sizeof(*e));

        if (!e)
                return -ENOMEM;
        e->mask = l->capacity - 1;
        e->every = every;
        l->local = e;
        return 0;
}

static int spsc_open(struct link *l) {
        return spsc_open_every(l, 1);
}

static int spsc32_open(struct link *l) {
        return spsc_open_every(l, 32);
}

/*
 * The reader's view of the ring bytes read-only, as a shmbus subscriber maps
 * a channel's data. Nothing else differs from spsc-ring (but the bytes being
 * page-aligned), and yet on the AMD EPYC VMs it streams 4 KiB messages at half
 * the rate while the ring fits in L2 (docs/PERFORMANCE.md, issue 17).
 */
static int spsc_ro_open_rx(struct link *l) {
        if (mprotect((uint8_t *)l->shared + SPSC_RO_DATA, l->capacity, PROT_READ) < 0)
                return -errno;
        return spsc_open_every(l, 1);
}

static inline void spsc_publish(_Atomic uint64_t *word, struct spsc_end *e) {
        e->pending = 0;
        atomic_store_explicit(word, e->pos, memory_order_release);
}

/*
 * Send and receive over the ring bytes at @data: spsc.data, or for spsc-ring-ro
 * the page after the indices. Inlined into each, so spsc-ring runs the same
 * code as before spsc-ring-ro existed.
 */
static inline __attribute__((always_inline)) int spsc_send_at(struct link *l, uint8_t *data,
                                                              const void *buf, size_t len) {
        struct spsc *q = l->shared;
        struct spsc_end *e = l->local;
        uint64_t size = e->mask + 1;
        uint64_t rec = (8 + len + 15) & ~UINT64_C(15), off = e->pos & e->mask;
        uint64_t skip = off + rec > size ? size - off : 0;

        if (e->pos + skip + rec - e->other > size) {
                if (e->pending)
                        spsc_publish(&q->tail, e);
                while (e->pos + skip + rec - e->other > size)
                        e->other = atomic_load_explicit(&q->head, memory_order_acquire);
        }
        if (skip) {
                /* A record never crosses the end: mark the rest of the lap as padding. */
                uint64_t pad = SPSC_PAD;

                memcpy(&data[off], &pad, 8);
                e->pos += skip;
                off = 0;
        }
        uint64_t n = len;
        memcpy(&data[off], &n, 8);
        memcpy(&data[off + 8], buf, len);
        e->pos += rec;
        if (++e->pending >= e->every)
                spsc_publish(&q->tail, e);
        return 0;
}

static int spsc_flush(struct link *l) {
        struct spsc *q = l->shared;
        struct spsc_end *e = l->local;

        spsc_publish(&q->tail, e);
        return 0;
}

static inline __attribute__((always_inline)) ssize_t spsc_recv_at(struct link *l, uint8_t *data,
                                                                  void *buf, size_t cap) {
        struct spsc *q = l->shared;
        struct spsc_end *e = l->local;
        uint64_t len;

        for (;;) {
                if (e->other == e->pos) {
                        if (e->pending)
                                spsc_publish(&q->head, e);
                        while (e->other == e->pos)
                                e->other = atomic_load_explicit(&q->tail, memory_order_acquire);
                }
                memcpy(&len, &data[e->pos & e->mask], 8);
                if (len != SPSC_PAD)
                        break;
                e->pos += e->mask + 1 - (e->pos & e->mask);
        }
        if (len > cap)
                return -EMSGSIZE;
        memcpy(buf, &data[(e->pos & e->mask) + 8], len);
        e->pos += (8 + len + 15) & ~UINT64_C(15);
        if (++e->pending >= e->every)
                spsc_publish(&q->head, e);
        return (ssize_t)len;
}

static int spsc_send(struct link *l, const void *buf, size_t len) {
        return spsc_send_at(l, ((struct spsc *)l->shared)->data, buf, len);
}

static ssize_t spsc_recv(struct link *l, void *buf, size_t cap) {
        return spsc_recv_at(l, ((struct spsc *)l->shared)->data, buf, cap);
}

static int spsc_ro_send(struct link *l, const void *buf, size_t len) {
        return spsc_send_at(l, (uint8_t *)l->shared + SPSC_RO_DATA, buf, len);
}

static ssize_t spsc_ro_recv(struct link *l, void *buf, size_t cap) {
        return spsc_recv_at(l, (uint8_t *)l->shared + SPSC_RO_DATA, buf, cap);
}

static void local_free(struct link *l) {
        free(l->local);
        l->local = NULL;
}

static void shared_unmap(struct link *l) {
        if (l->shared)
                munmap(l->shared, l->shared_len);
        l->shared = NULL;
}

const struct link_ops link_spsc = {
        .name = "spsc-ring",
        .modes = 1u << WAIT_BUSY,
        .create = spsc_create,
        .open_rx = spsc_open,
        .open_tx = spsc_open,
        .send = spsc_send,
        .recv = spsc_recv,
        .flush = spsc_flush,
        .close = local_free,
        .destroy = shared_unmap,
};

const struct link_ops link_spsc_ro = {
        .name = "spsc-ring-ro",
        .modes = 1u << WAIT_BUSY,
        .create = spsc_ro_create,
        .open_rx = spsc_ro_open_rx,
        .open_tx = spsc_open,
        .send = spsc_ro_send,
        .recv = spsc_ro_recv,
        .flush = spsc_flush,
        .close = local_free,
        .destroy = shared_unmap,
};

const struct link_ops link_spsc32 = {
        .name = "spsc-ring-32",
        .modes = 1u << WAIT_BUSY,
        .create = spsc_create,
        .open_rx = spsc32_open,
        .open_tx = spsc32_open,
        .send = spsc_send,
        .recv = spsc_recv,
        .flush = spsc_flush,
        .close = local_free,
        .destroy = shared_unmap,
};

/* ---- a raw futex mailbox: one message at a time, every wait a sleep ----------------------- */

struct mailbox {
        alignas(64) _Atomic uint32_t full; /* bumped by the writer */
        alignas(64) _Atomic uint32_t done; /* bumped by the reader */
        uint32_t len;
        alignas(64) uint8_t buf[65536];
};

static int futex_create(struct link *l) {
        l->shared_len = sizeof(struct mailbox);
        l->shared = shared_map(l->shared_len);
        return l->shared ? 0 : -ENOMEM;
}

static int futex_open(struct link *l) {
        l->seen = 0;
        return 0;
}

static int futex_send(struct link *l, const void *buf, size_t len) {
        struct mailbox *m = l->shared;
        uint32_t sent = (uint32_t)l->seen, done;

        while ((done = atomic_load_explicit(&m->done, memory_order_acquire)) != sent)
                bench_futex_wait(&m->done, done);
        memcpy(m->buf, buf, len);
        m->len = (uint32_t)len;
        atomic_store_explicit(&m->full, sent + 1, memory_order_release);
        bench_futex_wake(&m->full);
        l->seen++;
        return 0;
}

static ssize_t futex_recv(struct link *l, void *buf, size_t cap) {
        struct mailbox *m = l->shared;
        uint32_t want = (uint32_t)l->seen + 1, full;
        size_t len;

        while ((full = atomic_load_explicit(&m->full, memory_order_acquire)) != want)
                bench_futex_wait(&m->full, full);
        len = m->len;
        if (len > cap)
                return -EMSGSIZE;
        memcpy(buf, m->buf, len);
        atomic_store_explicit(&m->done, want, memory_order_release);
        bench_futex_wake(&m->done);
        l->seen++;
        return (ssize_t)len;
}

static void no_close(struct link *l) {
}

const struct link_ops link_futex = {
        .name = "futex-mailbox",
        .modes = 1u << WAIT_SLEEP,
        .create = futex_create,
        .open_rx = futex_open,
        .open_tx = futex_open,
        .send = futex_send,
        .recv = futex_recv,
        .close = no_close,
        .destroy = shared_unmap,
};

/* ---- byte streams: a pipe and a Unix stream socket, blocking, fixed-size messages -------- */

static int write_all(int fd, const void *buf, size_t len) {
        const uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static ssize_t read_exact(int fd, void *buf, size_t len) {
        uint8_t *p = buf;
        size_t got = 0;

        while (got < len) {
                ssize_t n = read(fd, p + got, len - got);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EPIPE;
                got += (size_t)n;
        }
        return (ssize_t)got;
}

static int pipe_create(struct link *l) {
        if (pipe2(l->fd, O_CLOEXEC) < 0)
                return -errno;
        /* The same 1 MiB of buffering the rings get. */
        fcntl(l->fd[1], F_SETPIPE_SZ, (int)BENCH_RING_BYTES);
        return 0;
}

static int stream_open(struct link *l) {
        return 0;
}

static int stream_send(struct link *l, const void *buf, size_t len) {
        return write_all(l->fd[1], buf, len);
}

static ssize_t stream_recv(struct link *l, void *buf, size_t cap) {
        if (l->msg_size > cap)
                return -EMSGSIZE;
        return read_exact(l->fd[0], buf, l->msg_size);
}

static void fds_close(struct link *l) {
        close(l->fd[0]);
        close(l->fd[1]);
}

const struct link_ops link_pipe = {
        .name = "pipe",
        .modes = 1u << WAIT_SLEEP,
        .multi_tx = true, /* writes of at most PIPE_BUF bytes are atomic */
        .create = pipe_create,
        .open_rx = stream_open,
        .open_tx = stream_open,
        .send = stream_send,
        .recv = stream_recv,
        .close = no_close,
        .destroy = fds_close,
};

static int unix_create(struct link *l) {
        int sz = (int)BENCH_RING_BYTES;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l->fd) < 0)
                return -errno;
        setsockopt(l->fd[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(l->fd[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        return 0;
}

const struct link_ops link_unix = {
        .name = "unix-socket",
        .modes = 1u << WAIT_SLEEP,
        .create = unix_create,
        .open_rx = stream_open,
        .open_tx = stream_open,
        .send = stream_send,
        .recv = stream_recv,
        .close = no_close,
        .destroy = fds_close,
};

/* ---- shmbus: a channel file pair in the run's directory, no daemon on the data path ------- */

/* Messages a batching link holds back (send) or has copied out (recv). */
#define BENCH_BATCH 32

struct shmbus_end {
        shmbus_pub *pub;
        shmbus_sub *sub;
        /* Batching links only. */
        uint8_t *store; /* BENCH_BATCH messages of msg_size, back to back */
        const void *msgs[BENCH_BATCH];
        size_t lens[BENCH_BATCH];
        size_t n;    /* held back (send) or copied out (recv) */
        size_t next; /* recv: the next one to hand out */
        size_t off;  /* recv: where it starts in store */
};

static int shmbus_link_create(struct link *l) {
        shmbus_channel *c;
        shmbus_opts *o;
        int r;

        snprintf(l->name, sizeof(l->name), "bench-%d", l->index);
        shmbus_channel_unlink(bench_dir, l->name);
        r = shmbus_opts_new(&o);
        if (r < 0)
                return r;
        shmbus_opts_set_capacity(o, l->capacity);
        shmbus_opts_set_max_msg(o, l->capacity / 4 < 65536 ? l->capacity / 4 : 65536);
        shmbus_opts_set_policy(o, SHMBUS_POLICY_BLOCK);
        r = shmbus_channel_create(bench_dir, l->name, o, 0600, &c);
        shmbus_opts_free(o);
        if (r < 0)
                return r;
        shmbus_channel_unref(c);
        return 0;
}

/*
 * @rw: a subscriber that opens the channel as a publisher would, so it reads
 * through a writable mapping of the ring (what a process that may publish
 * can choose; docs/PERFORMANCE.md, issue 17).
 */
static int shmbus_link_open(struct link *l, bool tx, bool rw) {
        struct shmbus_end *e = calloc(1, sizeof(*e));
        shmbus_channel *c;
        int r;

        if (!e)
                return -ENOMEM;
        r = shmbus_channel_open(bench_dir, l->name, tx || rw ? SHMBUS_OPEN_PUBLISH : 0, &c);
        if (r < 0) {
                free(e);
                return r;
        }
        r = tx ? shmbus_pub_new(c, &e->pub) : shmbus_sub_new(c, &e->sub);
        shmbus_channel_unref(c);
        if (r < 0) {
                free(e);
                return r;
        }
        if (e->sub)
                shmbus_sub_set_spin(e->sub, l->mode == WAIT_BUSY   ? UINT32_MAX
                                            : l->mode == WAIT_SPIN ? BENCH_SPIN_US
                                                                   : 0);
        l->local = e;
        return 0;
}

static int shmbus_link_open_rx(struct link *l) {
        return shmbus_link_open(l, false, false);
}

static int shmbus_link_open_rx_rw(struct link *l) {
        return shmbus_link_open(l, false, true);
}

static int shmbus_link_open_tx(struct link *l) {
        return shmbus_link_open(l, true, false);
}

static int shmbus_link_send(struct link *l, const void *buf, size_t len) {
        struct shmbus_end *e = l->local;

        return shmbus_pub_send(e->pub, buf, len, -1);
}

static ssize_t shmbus_link_recv(struct link *l, void *buf, size_t cap) {
        struct shmbus_end *e = l->local;

        return shmbus_sub_recv(e->sub, buf, cap, -1);
}

/* Zero-copy: the payload is written and read in place, every byte of it. */
static int shmbus_zc_send(struct link *l, const void *buf, size_t len) {
        struct shmbus_end *e = l->local;
        void *dst;
        int r;

        r = shmbus_pub_claim(e->pub, len, -1, &dst);
        if (r < 0)
                return r;
        memcpy(dst, buf, len);
        return shmbus_pub_commit(e->pub);
}

static ssize_t shmbus_zc_recv(struct link *l, void *buf, size_t cap) {
        struct shmbus_end *e = l->local;
        const void *src;
        size_t len;
        int r;

        r = shmbus_sub_peek(e->sub, &src, &len, -1);
        if (r < 0)
                return r;
        if (len > cap)
                return -EMSGSIZE;
        memcpy(buf, src, len);
        r = shmbus_sub_release(e->sub);
        return r < 0 ? r : (ssize_t)len;
}

/*
 * Batches of BENCH_BATCH: send holds messages back and hands them over with
 * one shmbus_pub_send_batch() (flush sends what is left); recv takes what
 * shmbus_sub_recv_batch() copied out, one message per call. The copy into
 * the held-back batch is part of what is measured.
 */
static int shmbus_batch_open(struct link *l, bool tx) {
        struct shmbus_end *e;
        int r;

        r = shmbus_link_open(l, tx, false);
        if (r < 0)
                return r;
        e = l->local;
        e->store = malloc(BENCH_BATCH * l->msg_size);
        return e->store ? 0 : -ENOMEM;
}

static int shmbus_batch_open_rx(struct link *l) {
        return shmbus_batch_open(l, false);
}

static int shmbus_batch_open_tx(struct link *l) {
        return shmbus_batch_open(l, true);
}

static int shmbus_batch_flush(struct link *l) {
        struct shmbus_end *e = l->local;
        size_t sent = 0;

        while (sent < e->n) {
                int r = shmbus_pub_send_batch(e->pub, e->msgs + sent, e->lens + sent, e->n - sent,
                                              -1);

                if (r < 0)
                        return r;
                sent += (size_t)r;
        }
        e->n = 0;
        return 0;
}

static int shmbus_batch_send(struct link *l, const void *buf, size_t len) {
        struct shmbus_end *e = l->local;
        uint8_t *dst = e->store + e->n * l->msg_size;

        memcpy(dst, buf, len);
        e->msgs[e->n] = dst;
        e->lens[e->n++] = len;
        return e->n == BENCH_BATCH ? shmbus_batch_flush(l) : 0;
}

static ssize_t shmbus_batch_recv(struct link *l, void *buf, size_t cap) {
        struct shmbus_end *e = l->local;
        size_t len;

        if (e->next == e->n) {
                int r = shmbus_sub_recv_batch(e->sub, e->store, BENCH_BATCH * l->msg_size, e->lens,
                                              BENCH_BATCH, -1);

                if (r < 0)
                        return r;
                e->n = (size_t)r;
                e->next = 0;
                e->off = 0;
        }
        len = e->lens[e->next++];
        if (len > cap)
                return -EMSGSIZE;
        memcpy(buf, e->store + e->off, len);
        e->off += len;
        return (ssize_t)len;
}

static void shmbus_link_close(struct link *l) {
        struct shmbus_end *e = l->local;

        if (!e)
                return;
        shmbus_pub_free(e->pub);
        shmbus_sub_free(e->sub);
        free(e->store);
        free(e);
        l->local = NULL;
}

static void shmbus_link_destroy(struct link *l) {
        shmbus_channel_unlink(bench_dir, l->name);
}

#define SHMBUS_MODES ((1u << WAIT_BUSY) | (1u << WAIT_SPIN) | (1u << WAIT_SLEEP))

const struct link_ops link_shmbus = {
        .name = "shmbus",
        .modes = SHMBUS_MODES,
        .multi_tx = true,
        .multi_rx = true,
        .create = shmbus_link_create,
        .open_rx = shmbus_link_open_rx,
        .open_tx = shmbus_link_open_tx,
        .send = shmbus_link_send,
        .recv = shmbus_link_recv,
        .close = shmbus_link_close,
        .destroy = shmbus_link_destroy,
};

const struct link_ops link_shmbus_rw = {
        .name = "shmbus-rw",
        .modes = SHMBUS_MODES,
        .multi_tx = true,
        .multi_rx = true,
        .create = shmbus_link_create,
        .open_rx = shmbus_link_open_rx_rw,
        .open_tx = shmbus_link_open_tx,
        .send = shmbus_link_send,
        .recv = shmbus_link_recv,
        .close = shmbus_link_close,
        .destroy = shmbus_link_destroy,
};

const struct link_ops link_shmbus_zc = {
        .name = "shmbus-zero-copy",
        .modes = SHMBUS_MODES,
        .multi_tx = true,
        .multi_rx = true,
        .create = shmbus_link_create,
        .open_rx = shmbus_link_open_rx,
        .open_tx = shmbus_link_open_tx,
        .send = shmbus_zc_send,
        .recv = shmbus_zc_recv,
        .close = shmbus_link_close,
        .destroy = shmbus_link_destroy,
};

const struct link_ops link_shmbus_batch = {
        .name = "shmbus-batch",
        .modes = SHMBUS_MODES,
        .create = shmbus_link_create,
        .open_rx = shmbus_batch_open_rx,
        .open_tx = shmbus_batch_open_tx,
        .send = shmbus_batch_send,
        .recv = shmbus_batch_recv,
        .flush = shmbus_batch_flush,
        .close = shmbus_link_close,
        .destroy = shmbus_link_destroy,
};
