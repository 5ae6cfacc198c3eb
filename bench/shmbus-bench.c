/* SPDX-License-Identifier: MIT */
/*
 * shmbus-bench: measures shmbus between two processes pinned to two CPUs, and
 * the baselines it is judged against, in the same run:
 *
 *   cacheline   two processes bounce one cache line (the physical floor)
 *   pingpong    64 B round trips over two shmbus channels (busy, spin, sleep)
 *   spsc        a trivial hand-written SPSC shared-memory ring (the ceiling)
 *   stream      one-way shmbus throughput, copying and zero-copy
 *
 * Results are printed with ratios to the baselines; absolute numbers drift on
 * shared VMs, ratios measured in one run do not.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdalign.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "ring.h"

struct pct {
        double p50, p90, p99, p999, max;
};

static char dir[256];

static int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pin(int cpu) {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
        sched_setaffinity(0, sizeof(set), &set);
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

static struct pct percentiles(int64_t *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_i64);
        return (struct pct){
                .p50 = (double)v[n / 2],
                .p90 = (double)v[n * 90 / 100],
                .p99 = (double)v[n * 99 / 100],
                .p999 = (double)v[n * 999 / 1000],
                .max = (double)v[n - 1],
        };
}

static void print_pct(const char *name, struct pct p, double floor) {
        printf("  %-26s p50 %8.0f  p90 %8.0f  p99 %8.0f  p99.9 %8.0f  max %9.0f ns   p50 = %5.2fx floor\n",
               name, p.p50, p.p90, p.p99, p.p999, p.max, floor > 0 ? p.p50 / floor : 1.0);
}

/* ---- baseline: one cache line bounced between two processes ------------------------------- */

static struct pct bench_cacheline(size_t iters) {
        _Atomic uint64_t *line = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                                      -1, 0);
        int64_t *rtt = calloc(iters, sizeof(*rtt));
        pid_t pid;

        atomic_store(&line[0], 0);
        pid = fork();
        if (pid == 0) {
                pin(1);
                for (uint64_t i = 1; i <= iters; i++) {
                        while (atomic_load_explicit(&line[0], memory_order_acquire) != 2 * i - 1)
                                ;
                        atomic_store_explicit(&line[0], 2 * i, memory_order_release);
                }
                _exit(0);
        }
        pin(0);
        for (uint64_t i = 1; i <= iters; i++) {
                int64_t t0 = now_ns();

                atomic_store_explicit(&line[0], 2 * i - 1, memory_order_release);
                while (atomic_load_explicit(&line[0], memory_order_acquire) != 2 * i)
                        ;
                rtt[i - 1] = now_ns() - t0;
        }
        waitpid(pid, NULL, 0);
        struct pct p = percentiles(rtt, iters);
        free(rtt);
        munmap(line, 4096);
        return p;
}

/* ---- shmbus ping-pong ----------------------------------------------------------------------- */

enum { MODE_BUSY, MODE_SPIN, MODE_SLEEP };

static void make_channel(const char *name, uint64_t cap, uint32_t max_msg) {
        shmbus_opts *o;
        shmbus_channel *c;

        shmbus_channel_unlink(dir, name);
        shmbus_opts_new(&o);
        shmbus_opts_set_capacity(o, cap);
        shmbus_opts_set_max_msg(o, max_msg);
        if (shmbus_channel_create(dir, name, o, 0600, &c) < 0) {
                fprintf(stderr, "cannot create channel %s\n", name);
                exit(1);
        }
        shmbus_channel_unref(c);
        shmbus_opts_free(o);
}

static void open_pair(const char *in, const char *out, shmbus_sub **s, shmbus_pub **p, int mode) {
        shmbus_channel *ci, *co;

        if (shmbus_channel_open(dir, in, 0, &ci) < 0 || shmbus_sub_new(ci, s) < 0 ||
            shmbus_channel_open(dir, out, SHMBUS_OPEN_PUBLISH, &co) < 0 || shmbus_pub_new(co, p) < 0) {
                fprintf(stderr, "cannot open channels\n");
                exit(1);
        }
        shmbus_sub_set_spin(*s, mode == MODE_BUSY ? UINT32_MAX : mode == MODE_SPIN ? 50 : 0);
        shmbus_channel_unref(ci);
        shmbus_channel_unref(co);
}

static struct pct bench_pingpong(int mode, size_t iters, size_t size) {
        int64_t *rtt = calloc(iters, sizeof(*rtt));
        uint8_t msg[65536] = {0}, buf[65536];
        shmbus_sub *s;
        shmbus_pub *p;
        int fds[2];
        pid_t pid;
        char c;

        make_channel("bench-ping", 1 << 16, 4096);
        make_channel("bench-pong", 1 << 16, 4096);
        if (pipe(fds) < 0)
                exit(1);
        pid = fork();
        if (pid == 0) {
                pin(1);
                open_pair("bench-ping", "bench-pong", &s, &p, mode);
                if (write(fds[1], "r", 1) != 1)
                        _exit(1);
                for (size_t i = 0; i < iters + 100; i++) {
                        ssize_t n = shmbus_sub_recv(s, buf, sizeof(buf), 10000);

                        if (n < 0 || shmbus_pub_send(p, buf, (size_t)n, 10000) < 0)
                                _exit(1);
                }
                _exit(0);
        }
        pin(0);
        open_pair("bench-pong", "bench-ping", &s, &p, mode);
        if (read(fds[0], &c, 1) != 1)
                exit(1);
        for (size_t i = 0; i < iters + 100; i++) {
                int64_t t0 = now_ns();

                memcpy(msg, &i, sizeof(i));
                if (shmbus_pub_send(p, msg, size, 10000) < 0 ||
                    shmbus_sub_recv(s, buf, sizeof(buf), 10000) != (ssize_t)size) {
                        fprintf(stderr, "ping-pong failed\n");
                        exit(1);
                }
                if (i >= 100)
                        rtt[i - 100] = now_ns() - t0;
        }
        waitpid(pid, NULL, 0);
        shmbus_sub_free(s);
        shmbus_pub_free(p);
        close(fds[0]);
        close(fds[1]);
        struct pct r = percentiles(rtt, iters);
        free(rtt);
        return r;
}

/* ---- baseline: a trivial SPSC ring of length-prefixed records ------------------------------ */

struct spsc {
        alignas(128) _Atomic uint64_t head;
        alignas(128) _Atomic uint64_t tail;
        alignas(128) uint8_t data[1 << 20];
};

static double bench_spsc(size_t count, size_t size) {
        struct spsc *q = mmap(NULL, sizeof(*q), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                              -1, 0);
        const uint64_t cap = sizeof(q->data), mask = cap - 1;
        uint64_t rec = (8 + size + 15) & ~UINT64_C(15);
        uint8_t msg[65536] = {0};
        int64_t t0, t1;
        pid_t pid;

        pid = fork();
        if (pid == 0) {
                uint64_t head = 0, tail_cache = 0;
                uint8_t buf[65536];

                pin(1);
                for (size_t i = 0; i < count; i++) {
                        while (tail_cache - head < rec)
                                tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
                        uint64_t len;
                        memcpy(&len, &q->data[head & mask], 8);
                        memcpy(buf, &q->data[(head & mask) + 8], len);
                        head += rec;
                        atomic_store_explicit(&q->head, head, memory_order_release);
                }
                _exit(0);
        }
        pin(0);
        uint64_t tail = 0, head_cache = 0;
        t0 = now_ns();
        for (size_t i = 0; i < count; i++) {
                /* Records are a power-of-two fraction of the ring here, so none crosses the end. */
                while (tail + rec - head_cache > cap)
                        head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
                uint64_t len = size;
                memcpy(&q->data[tail & mask], &len, 8);
                memcpy(&q->data[(tail & mask) + 8], msg, size);
                tail += rec;
                atomic_store_explicit(&q->tail, tail, memory_order_release);
        }
        waitpid(pid, NULL, 0);
        t1 = now_ns();
        munmap(q, sizeof(*q));
        return (double)count / ((double)(t1 - t0) / 1e9);
}

/* ---- shmbus streaming ------------------------------------------------------------------------ */

static double bench_stream(size_t count, size_t size, bool zero_copy) {
        uint8_t msg[65536] = {0};
        shmbus_channel *c;
        shmbus_pub *p;
        shmbus_sub *s;
        int64_t t0, t1;
        int fds[2];
        pid_t pid;
        char ch;

        make_channel("bench-stream", 1 << 20, 65536);
        if (pipe(fds) < 0)
                exit(1);
        pid = fork();
        if (pid == 0) {
                uint8_t buf[65536];

                pin(1);
                if (shmbus_channel_open(dir, "bench-stream", 0, &c) < 0 || shmbus_sub_new(c, &s) < 0)
                        _exit(1);
                if (write(fds[1], "r", 1) != 1)
                        _exit(1);
                for (size_t i = 0; i < count; i++) {
                        if (zero_copy) {
                                const void *d;
                                size_t len;

                                if (shmbus_sub_peek(s, &d, &len, 10000) < 0)
                                        _exit(1);
                                /* Read it all, as the copying reader and the baseline do. */
                                memcpy(buf, d, len);
                                shmbus_sub_release(s);
                        } else if (shmbus_sub_recv(s, buf, sizeof(buf), 10000) < 0) {
                                _exit(1);
                        }
                }
                _exit(0);
        }
        pin(0);
        if (shmbus_channel_open(dir, "bench-stream", SHMBUS_OPEN_PUBLISH, &c) < 0 ||
            shmbus_pub_new(c, &p) < 0)
                exit(1);
        if (read(fds[0], &ch, 1) != 1)
                exit(1);
        t0 = now_ns();
        for (size_t i = 0; i < count; i++) {
                if (zero_copy) {
                        void *d;

                        if (shmbus_pub_claim(p, size, 10000, &d) < 0)
                                exit(1);
                        /* Write it all: zero-copy saves the staging buffer, not the bytes. */
                        memcpy(d, msg, size);
                        shmbus_pub_commit(p);
                } else if (shmbus_pub_send(p, msg, size, 10000) < 0) {
                        exit(1);
                }
        }
        waitpid(pid, NULL, 0);
        t1 = now_ns();
        shmbus_pub_free(p);
        shmbus_channel_unref(c);
        close(fds[0]);
        close(fds[1]);
        return (double)count / ((double)(t1 - t0) / 1e9);
}

int main(int argc, char **argv) {
        bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
        size_t iters = quick ? 20000 : 200000;
        size_t count = quick ? 2000000 : 10000000;
        static const size_t sizes[] = {64, 1024, 4096, 65536 - 16};

        snprintf(dir, sizeof(dir), "/dev/shm/shmbus-bench-%d", (int)getpid());
        if (mkdir(dir, 0700) < 0) {
                snprintf(dir, sizeof(dir), "/tmp/shmbus-bench-%d", (int)getpid());
                if (mkdir(dir, 0700) < 0)
                        return 1;
        }
        printf("shmbus-bench %s: %ld CPUs, pinned to CPU 0 and CPU 1, %s run\n\n", shmbus_version(),
               sysconf(_SC_NPROCESSORS_ONLN), quick ? "quick" : "full");

        printf("Round trip, 64 B each way (%zu iterations):\n", iters);
        struct pct floor = bench_cacheline(iters);
        print_pct("cache-line bounce (floor)", floor, floor.p50);
        print_pct("shmbus busy-poll", bench_pingpong(MODE_BUSY, iters, 64), floor.p50);
        print_pct("shmbus spin 50us then sleep", bench_pingpong(MODE_SPIN, iters, 64), floor.p50);
        print_pct("shmbus always sleep", bench_pingpong(MODE_SLEEP, iters / 10, 64), floor.p50);

        printf("\nOne-way streaming:\n");
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                size_t sz = sizes[i], n = count / (sz >= 4096 ? 16 : sz >= 1024 ? 4 : 1);
                double ref = bench_spsc(n, sz);
                double cp = bench_stream(n, sz, false);
                double zc = bench_stream(n, sz, true);

                printf("  %6zu B: spsc %10.0f msg/s | shmbus copy %10.0f msg/s %8.1f MB/s (%.2fx spsc)"
                       " | zero-copy %10.0f msg/s (%.2fx spsc)\n",
                       sz, ref, cp, cp * (double)sz / 1e6, cp / ref, zc, zc / ref);
        }
        shmbus_channel_unlink(dir, "bench-ping");
        shmbus_channel_unlink(dir, "bench-pong");
        shmbus_channel_unlink(dir, "bench-stream");
        rmdir(dir);
        return 0;
}
