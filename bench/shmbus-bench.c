/* SPDX-License-Identifier: MIT */
/*
 * shmbus-bench: shmbus measured against the physical limit and its peers, in
 * one run on one machine.
 *
 *   rtt      64 B ping-pong between two processes pinned to two CPUs, with a
 *            busy-polling, a spin-then-sleep and an always-sleeping reader
 *   stream   one-way throughput at 64 B, 1 KiB, 4 KiB and 64 KiB
 *   fanin    N publishers -> 1 subscriber
 *   fanout   1 publisher -> N subscribers
 *   events   a reader parked in epoll on shmbus_sub_fd() against an eventfd and
 *            a pipe; streaming through the descriptor against the futex wait;
 *            each for channels opened from a directory and for channels opened
 *            through a private shmbusd that this run starts (--shmbusd PATH)
 *   sleep    the always-sleeping reader against a raw futex round trip,
 *            replying at once and after 100 us (the reader really asleep)
 *   batch    64 B .. 1 KiB in batches of 32, against an SPSC ring that
 *            publishes its indices every 32 messages
 *   matrix   streaming at every ring size x message size, against an SPSC
 *            ring with the same ring bytes, with the futex calls of each side;
 *            and that ring with its reader mapping the bytes read-only
 *
 * Baselines of the same run: one cache line bounced between two processes (the
 * floor), a hand-written SPSC ring (the ceiling), a raw futex mailbox, a pipe,
 * a Unix socket, and iceoryx when built with it and its RouDi is running.
 * Absolute numbers drift on shared VMs; the ratios to the baselines measured
 * minutes apart on the same machine are what to read. System calls per message
 * are counted in a separate, shorter pass with the raw_syscalls:sys_enter
 * tracepoint, so that counting does not slow the timed pass.
 *
 * Usage: shmbus-bench [--quick] [--out DIR]
 *                     [--only rtt,sleep,stream,events,fanin,fanout,batch,matrix]
 *                     [--ring BYTES] [--size BYTES]   (restrict the matrix)
 *                     [--shmbusd PATH]   (default: ../daemon/shmbusd next to bench/)
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "bench.h"
#include "ring.h"

#define MAX_ROLES      16
#define MAX_LINKS      8
#define MAX_ROWS       256
#define MSG_MAX        65536
#define ROLE_TIMEOUT_S 120

static const char *const mode_names[] = {"busy-poll", "spin-then-sleep", "always-sleep"};

struct pct {
        double p50, p90, p99, p999, max;
};

struct row {
        const char *scenario;
        const char *transport;
        enum wait_mode mode;
        size_t size;
        size_t capacity; /* ring bytes */
        int ntx, nrx;
        bool ok;
        const char *note; /* why it was skipped or failed */
        struct pct rtt;   /* ns, for rtt rows */
        double floor_p50; /* ns, the cache-line floor measured just before this row */
        double msgs;      /* per second, for throughput rows */
        double syscalls;  /* per message (per round trip for rtt); < 0 if not counted */
        double ratio;     /* to the row's baseline, 0 if none */
        const char *ratio_to;
        /* Futex calls per message of the publishers and the subscribers; < 0 if none. */
        double pub_waits, pub_wakes, sub_waits, sub_wakes;
};

static struct row rows[MAX_ROWS];
static size_t nrows;
static bool quick;
static size_t only_ring, only_size; /* --ring, --size: one row or column of the matrix */
static bool with_iceoryx;
static const char *shmbusd_path; /* --shmbusd; NULL: the build tree's, found from our own path */

/* ---- processes ------------------------------------------------------------------------------ */

struct barrier {
        _Atomic uint32_t arrived;
        _Atomic uint32_t generation;
        uint32_t parties;
};

/* What the roles of one run share with each other and with the coordinator. */
struct shared {
        struct barrier bar;
        int64_t t_start[MAX_ROLES];
        int64_t t_end[MAX_ROLES];
        int64_t syscalls[MAX_ROLES];
        int64_t futex_waits[MAX_ROLES]; /* shmbus' own futex calls, counted by the ring */
        int64_t futex_wakes[MAX_ROLES];
        int64_t samples[]; /* round-trip times, for rtt */
};

static void barrier_wait(struct barrier *b) {
        uint32_t gen = atomic_load(&b->generation);

        if (atomic_fetch_add(&b->arrived, 1) + 1 == b->parties) {
                atomic_store(&b->arrived, 0);
                atomic_fetch_add(&b->generation, 1);
                bench_futex_wake(&b->generation);
                return;
        }
        while (atomic_load(&b->generation) == gen)
                bench_futex_wait(&b->generation, gen);
}

static void pin(int cpu) {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
        sched_setaffinity(0, sizeof(set), &set);
}

/* ---- system calls, counted by the kernel's tracepoint ------------------------------------- */

static long syscall_tracepoint_id(void) {
        static long id = -2;
        static const char *const paths[] = {
                "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
        };

        if (id != -2)
                return id;
        id = -1;
        for (size_t i = 0; i < 2 && id < 0; i++) {
                FILE *f = fopen(paths[i], "re");

                if (!f)
                        continue;
                if (fscanf(f, "%ld", &id) != 1)
                        id = -1;
                fclose(f);
        }
        return id;
}

/* A disabled counter of this process' system calls, or -1. */
static int syscalls_open(void) {
        struct perf_event_attr a = {
                .type = PERF_TYPE_TRACEPOINT,
                .size = sizeof(a),
                .config = (uint64_t)syscall_tracepoint_id(),
                .disabled = 1,
                .sample_period = 1,
        };

        if (syscall_tracepoint_id() < 0)
                return -1;
        return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static void syscalls_start(int fd) {
        if (fd >= 0)
                ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
}

/* The count since syscalls_start(), less the ioctl that stopped it. */
static int64_t syscalls_stop(int fd) {
        uint64_t n = 0;

        if (fd < 0)
                return -1;
        ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
        if (read(fd, &n, sizeof(n)) != sizeof(n))
                n = 0;
        close(fd);
        return n > 0 ? (int64_t)n - 1 : 0;
}

/* ---- one run: links, roles, results -------------------------------------------------------- */

struct run {
        const struct link_ops *ops;
        enum wait_mode mode;
        size_t size;
        size_t capacity;  /* ring bytes; 0: BENCH_RING_BYTES */
        size_t count;     /* messages per publisher (round trips for rtt) */
        int64_t delay_ns; /* ping-pong: the ponger holds each reply this long */
        int ntx, nrx;
        bool count_syscalls;
        struct link links[MAX_LINKS];
        int nlinks;
        struct shared *sh;
        size_t sh_len;
};

typedef int (*role_fn)(struct run *run, int role);

static int next_link_index;

static int run_setup(struct run *run, int nlinks, int parties) {
        run->sh_len = sizeof(struct shared) + (run->count + 32) * sizeof(int64_t);
        run->sh =
                mmap(NULL, run->sh_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (run->sh == MAP_FAILED)
                return -ENOMEM;
        run->sh->bar.parties = (uint32_t)parties;
        run->nlinks = nlinks;
        for (int i = 0; i < nlinks; i++) {
                struct link *l = &run->links[i];
                int r;

                *l = (struct link){
                        .ops = run->ops,
                        .mode = run->mode,
                        .msg_size = run->size,
                        .capacity = run->capacity ? run->capacity : BENCH_RING_BYTES,
                        .index = next_link_index++,
                };
                r = run->ops->create(l);
                if (r < 0) {
                        run->nlinks = i;
                        return r;
                }
        }
        return 0;
}

static void run_teardown(struct run *run) {
        for (int i = 0; i < run->nlinks; i++)
                run->ops->destroy(&run->links[i]);
        munmap(run->sh, run->sh_len);
}

/* Fork one process per role, pinned where asked (cpu < 0: anywhere); 0 if all succeeded. */
static int run_roles(struct run *run, int nroles, role_fn fn, const int *cpus) {
        pid_t pids[MAX_ROLES];
        int failed = 0;

        fflush(NULL);
        for (int i = 0; i < nroles; i++) {
                pids[i] = fork();
                if (pids[i] < 0)
                        return -errno;
                if (pids[i] == 0) {
                        alarm(ROLE_TIMEOUT_S);
                        if (cpus && cpus[i] >= 0)
                                pin(cpus[i]);
                        _exit(fn(run, i) < 0 ? 1 : 0);
                }
        }
        for (int left = nroles; left > 0; left--) {
                int status;
                pid_t pid = wait(&status);

                if (pid < 0)
                        break;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        /* One role gone means its peers would wait forever. */
                        if (!failed)
                                for (int i = 0; i < nroles; i++)
                                        if (pids[i] != pid)
                                                kill(pids[i], SIGKILL);
                        failed = -EIO;
                }
        }
        return failed;
}

static void fill(uint8_t *msg, size_t size, uint64_t seq) {
        memcpy(msg, &seq, sizeof(seq) < size ? sizeof(seq) : size);
}

static uint64_t seq_of(const uint8_t *msg) {
        uint64_t seq;

        memcpy(&seq, msg, sizeof(seq));
        return seq;
}

/* ---- the floor: one cache line bounced between two processes ---------------------------- */

static int role_cacheline(struct run *run, int role) {
        /* Two cache lines clear of the samples role 0 writes. */
        _Atomic uint64_t *line = (_Atomic uint64_t *)(void *)&run->sh->samples[run->count + 16];
        int64_t *rtt = run->sh->samples;

        barrier_wait(&run->sh->bar);
        for (uint64_t i = 1; i <= run->count; i++) {
                if (role == 0) {
                        int64_t t0 = bench_now_ns();

                        atomic_store_explicit(line, 2 * i - 1, memory_order_release);
                        while (atomic_load_explicit(line, memory_order_acquire) != 2 * i)
                                ;
                        rtt[i - 1] = bench_now_ns() - t0;
                } else {
                        while (atomic_load_explicit(line, memory_order_acquire) != 2 * i - 1)
                                ;
                        atomic_store_explicit(line, 2 * i, memory_order_release);
                }
        }
        return 0;
}

/* ---- ping-pong: links[0] carries pings A -> B, links[1] pongs B -> A ---------------------- */

#define WARMUP 1000

static int role_pingpong(struct run *run, int role) {
        struct link *in = &run->links[role == 0 ? 1 : 0], *out = &run->links[role == 0 ? 0 : 1];
        uint8_t *msg = calloc(1, MSG_MAX), *buf = malloc(MSG_MAX);
        int sc = -1, r = -1;

        if (!msg || !buf || in->ops->open_rx(in) < 0)
                goto out;
        barrier_wait(&run->sh->bar);
        if (out->ops->open_tx(out) < 0)
                goto out;
        barrier_wait(&run->sh->bar);
        if (run->count_syscalls)
                sc = syscalls_open();

        for (size_t i = 0; i < run->count + WARMUP; i++) {
                if (i == WARMUP)
                        syscalls_start(sc);
                if (role == 0) {
                        int64_t t0 = bench_now_ns();

                        fill(msg, run->size, i);
                        if (out->ops->send(out, msg, run->size) < 0 ||
                            in->ops->recv(in, buf, MSG_MAX) != (ssize_t)run->size ||
                            seq_of(buf) != i)
                                goto out;
                        if (i >= WARMUP)
                                run->sh->samples[i - WARMUP] = bench_now_ns() - t0 - run->delay_ns;
                } else {
                        ssize_t n = in->ops->recv(in, buf, MSG_MAX);
                        int64_t t1 = run->delay_ns ? bench_now_ns() : 0;

                        if (n != (ssize_t)run->size || seq_of(buf) != i)
                                goto out;
                        /* Busy, not asleep: the other side is the one that must really sleep. */
                        while (run->delay_ns && bench_now_ns() - t1 < run->delay_ns)
                                bench_cpu_relax();
                        if (out->ops->send(out, buf, (size_t)n) < 0)
                                goto out;
                }
        }
        run->sh->syscalls[role] = syscalls_stop(sc);
        r = 0;
out:
        in->ops->close(in);
        out->ops->close(out);
        free(msg);
        free(buf);
        return r;
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

static struct row *row_new(const char *scenario, const char *transport, enum wait_mode mode,
                           size_t size, int ntx, int nrx) {
        struct row *row;

        if (nrows == MAX_ROWS) {
                fprintf(stderr, "shmbus-bench: too many results\n");
                exit(1);
        }
        row = &rows[nrows++];
        *row = (struct row){
                .scenario = scenario,
                .transport = transport,
                .mode = mode,
                .size = size,
                .capacity = BENCH_RING_BYTES,
                .ntx = ntx,
                .nrx = nrx,
                .syscalls = -1,
                .pub_waits = -1,
                .pub_wakes = -1,
                .sub_waits = -1,
                .sub_wakes = -1,
        };
        return row;
}

static const struct row *row_find(const char *scenario, const char *transport, size_t size, int ntx,
                                  int nrx) {
        for (size_t i = 0; i < nrows; i++)
                if (rows[i].ok && strcmp(rows[i].scenario, scenario) == 0 &&
                    strcmp(rows[i].transport, transport) == 0 && rows[i].size == size &&
                    rows[i].ntx == ntx && rows[i].nrx == nrx)
                        return &rows[i];
        return NULL;
}

static bool transport_usable(const struct link_ops *ops, enum wait_mode mode, struct row *row) {
        if (!(ops->modes & (1u << mode))) {
                row->note = "mode not offered";
                return false;
        }
        if (ops == &link_iceoryx && !with_iceoryx) {
                row->note = "iceoryx not available (bench/run.sh starts iox-roudi)";
                return false;
        }
        return true;
}

/*
 * One ping-pong (or cache-line) run of @iters round trips. Copies the samples
 * to @samples, or with @count, stores system calls per round trip in @row.
 */
static int rtt_delayed_once(const struct link_ops *ops, enum wait_mode mode, size_t iters,
                            int64_t delay_ns, bool count, int64_t *samples, struct row *row) {
        static const int cpus[] = {0, 1};
        struct run run = {
                .ops = ops,
                .mode = mode,
                .size = 64,
                .count = iters,
                .delay_ns = delay_ns,
                .count_syscalls = count,
        };
        int r;

        r = run_setup(&run, ops ? 2 : 0, 2);
        if (r == 0)
                r = run_roles(&run, 2, ops ? role_pingpong : role_cacheline, cpus);
        if (r == 0 && count) {
                if (run.sh->syscalls[0] >= 0 && run.sh->syscalls[1] >= 0)
                        row->syscalls =
                                (double)(run.sh->syscalls[0] + run.sh->syscalls[1]) / (double)iters;
        } else if (r == 0) {
                memcpy(samples, run.sh->samples, iters * sizeof(*samples));
        }
        run_teardown(&run);
        return r;
}

static int rtt_once(const struct link_ops *ops, enum wait_mode mode, size_t iters, bool count,
                    int64_t *samples, struct row *row) {
        return rtt_delayed_once(ops, mode, iters, 0, count, samples, row);
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

static double p50_of(int64_t *v, size_t n) {
        int64_t *copy = malloc(n * sizeof(*v));
        double p;

        if (!copy)
                return 0;
        memcpy(copy, v, n * sizeof(*v));
        p = percentiles(copy, n).p50;
        free(copy);
        return p;
}

#define RTT_ROUNDS 5

/*
 * The floor moves by half from one second to the next on a shared VM (the
 * hypervisor moves vCPUs about), so a transport is measured in rounds, each
 * paired with a floor measured just before it, and the ratio reported is the
 * median of the rounds' ratios; the percentiles are over all rounds' samples.
 */
static void bench_rtt(const struct link_ops *ops, enum wait_mode mode) {
        struct row *row = row_new("rtt", ops ? ops->name : "cache-line", mode, 64, 1, 1);
        size_t iters = (mode == WAIT_BUSY ? 300000 : 30000) / (quick ? 10 : 1);
        size_t per = iters / RTT_ROUNDS;
        double ratios[RTT_ROUNDS], floors[RTT_ROUNDS];
        int64_t *samples = calloc(iters, sizeof(*samples)), *floor_samples = NULL;

        if (!samples)
                exit(1);
        if (ops && !transport_usable(ops, mode, row))
                goto print;
        if (!ops) {
                if (rtt_once(NULL, WAIT_BUSY, iters, false, samples, row) < 0) {
                        row->note = "failed";
                        goto print;
                }
                row->rtt = percentiles(samples, iters);
                row->floor_p50 = row->rtt.p50;
                row->ratio = 1;
                row->ratio_to = "itself";
                row->ok = true;
                goto print;
        }
        floor_samples = calloc(per, sizeof(*floor_samples));
        if (!floor_samples)
                exit(1);
        for (int k = 0; k < RTT_ROUNDS; k++) {
                if (rtt_once(NULL, WAIT_BUSY, per, false, floor_samples, row) < 0 ||
                    rtt_once(ops, mode, per, false, samples + k * per, row) < 0) {
                        row->note = "failed";
                        goto print;
                }
                floors[k] = p50_of(floor_samples, per);
                ratios[k] = p50_of(samples + k * per, per) / floors[k];
        }
        row->ok = true;
        row->rtt = percentiles(samples, per * RTT_ROUNDS);
        qsort(ratios, RTT_ROUNDS, sizeof(double), cmp_double);
        qsort(floors, RTT_ROUNDS, sizeof(double), cmp_double);
        row->ratio = ratios[RTT_ROUNDS / 2];
        row->floor_p50 = floors[RTT_ROUNDS / 2];
        row->ratio_to = "cache-line p50, paired rounds";
        rtt_once(ops, mode, per < 2000 ? 2000 : per, true, NULL, row);
print:
        free(samples);
        free(floor_samples);
        printf("  %-18s %-16s ", row->transport, mode_names[mode]);
        if (!row->ok) {
                printf("skipped: %s\n", row->note);
                return;
        }
        printf("%9.2f %9.2f %9.2f %9.2f %10.2f %7.2f %6.2fx", row->rtt.p50 / 1e3,
               row->rtt.p90 / 1e3, row->rtt.p99 / 1e3, row->rtt.p999 / 1e3, row->rtt.max / 1e3,
               row->floor_p50 / 1e3, row->ratio > 0 ? row->ratio : 1.0);
        if (row->syscalls >= 0)
                printf("  %7.2f", row->syscalls);
        printf("\n");
}

/*
 * The sleep path: an always-sleeping shmbus reader against the raw futex
 * mailbox (one FUTEX_WAKE and one FUTEX_WAIT per message), 64 B ping-pong,
 * with the reply sent at once and held back @delay_ns (so the reader has
 * really gone to sleep: without a delay the reply may come within its 2 us
 * re-check). Paired rounds as for rtt; the ratio is the median of the
 * rounds' p50 ratios, and the delay is taken out of every sample.
 */
static void bench_sleep(int64_t delay_ns) {
        struct row *row = row_new("sleep", link_shmbus.name, WAIT_SLEEP, 64, 1, 1);
        struct row *base = row_new("sleep", link_futex.name, WAIT_SLEEP, 64, 1, 1);
        size_t iters = (delay_ns ? 10000 : 30000) / (quick ? 10 : 1), per = iters / RTT_ROUNDS;
        int64_t *samples = calloc(iters, sizeof(*samples));
        int64_t *fsamples = calloc(iters, sizeof(*fsamples));
        double ratios[RTT_ROUNDS];

        if (!samples || !fsamples)
                exit(1);
        for (int k = 0; k < RTT_ROUNDS; k++) {
                if (rtt_delayed_once(&link_futex, WAIT_SLEEP, per, delay_ns, false,
                                     fsamples + k * per, base) < 0 ||
                    rtt_delayed_once(&link_shmbus, WAIT_SLEEP, per, delay_ns, false,
                                     samples + k * per, row) < 0) {
                        row->note = base->note = "failed";
                        goto print;
                }
                ratios[k] = p50_of(samples + k * per, per) / p50_of(fsamples + k * per, per);
        }
        row->ok = base->ok = true;
        row->rtt = percentiles(samples, per * RTT_ROUNDS);
        base->rtt = percentiles(fsamples, per * RTT_ROUNDS);
        qsort(ratios, RTT_ROUNDS, sizeof(double), cmp_double);
        row->ratio = ratios[RTT_ROUNDS / 2];
        row->ratio_to = "futex-mailbox p50, paired rounds";
        row->floor_p50 = (double)delay_ns; /* the delay taken out, for the record */
print:
        free(samples);
        free(fsamples);
        for (int i = 0; i < 2; i++) {
                const struct row *w = i ? row : base;

                printf("  %-18s %6.0f us %9s ", w->transport, (double)delay_ns / 1e3, "");
                if (!w->ok) {
                        printf("failed\n");
                        continue;
                }
                printf("%9.2f %9.2f %9.2f %9.2f", w->rtt.p50 / 1e3, w->rtt.p90 / 1e3,
                       w->rtt.p99 / 1e3, w->rtt.p999 / 1e3);
                if (w->ratio > 0)
                        printf("  %5.2fx", w->ratio);
                printf("\n");
        }
}

/* ---- streaming, fan-in and fan-out ----------------------------------------------------------- */

/*
 * Roles 0 .. ntx-1 publish, ntx .. ntx+nrx-1 receive. A receiver uses link
 * (role - ntx) when the transport cannot deliver one link to several
 * receivers; the publisher then sends every message on every link.
 */
static int role_stream(struct run *run, int role) {
        bool tx = role < run->ntx;
        int first = tx ? 0 : (run->nlinks > 1 ? role - run->ntx : 0);
        int last = tx ? run->nlinks : first + 1;
        uint8_t *msg = calloc(1, MSG_MAX);
        size_t expect = tx ? run->count : run->count * (size_t)run->ntx;
        struct shmbus_ring_syscalls f0, f1;
        int sc = -1, r = -1, i;

        if (!msg)
                return -1;
        for (i = first; !tx && i < last; i++)
                if (run->ops->open_rx(&run->links[i]) < 0)
                        goto out;
        barrier_wait(&run->sh->bar);
        for (i = first; tx && i < last; i++)
                if (run->ops->open_tx(&run->links[i]) < 0)
                        goto out;
        barrier_wait(&run->sh->bar);
        if (run->count_syscalls)
                sc = syscalls_open();
        syscalls_start(sc);
        shmbus__ring_syscalls(&f0);
        run->sh->t_start[role] = bench_now_ns();
        for (size_t n = 0; n < expect; n++) {
                if (tx) {
                        fill(msg, run->size, n);
                        for (i = first; i < last; i++)
                                if (run->ops->send(&run->links[i], msg, run->size) < 0)
                                        goto out;
                } else {
                        ssize_t got = run->ops->recv(&run->links[first], msg, MSG_MAX);

                        /* With one publisher, order is checked too. */
                        if (got != (ssize_t)run->size || (run->ntx == 1 && seq_of(msg) != n))
                                goto out;
                }
        }
        for (i = first; tx && i < last; i++)
                if (run->ops->flush && run->ops->flush(&run->links[i]) < 0)
                        goto out;
        run->sh->t_end[role] = bench_now_ns();
        shmbus__ring_syscalls(&f1);
        run->sh->syscalls[role] = syscalls_stop(sc);
        run->sh->futex_waits[role] = (int64_t)(f1.futex_waits - f0.futex_waits);
        run->sh->futex_wakes[role] = (int64_t)(f1.futex_wakes - f0.futex_wakes);
        r = 0;
out:
        for (i = first; i < last; i++)
                run->ops->close(&run->links[i]);
        free(msg);
        return r;
}

/* What one streaming run measured. */
struct stream_result {
        double rate;     /* messages per second, all publishers together */
        double syscalls; /* per message, both sides; < 0 if not counted */
        /* shmbus' futex calls per message, publishers' and subscribers' (0 for baselines). */
        double pub_waits, pub_wakes, sub_waits, sub_wakes;
};

static int stream_once(const struct link_ops *ops, enum wait_mode mode, size_t size,
                       size_t capacity, int ntx, int nrx, size_t count, bool count_sc,
                       struct stream_result *ret) {
        int cpus[MAX_ROLES];
        struct run run = {
                .ops = ops,
                .mode = mode,
                .size = size,
                .capacity = capacity,
                .count = count,
                .ntx = ntx,
                .nrx = nrx,
                .count_syscalls = count_sc,
        };
        int nlinks = nrx > 1 && !ops->multi_rx ? nrx : 1, r;

        /* One publisher and one subscriber are pinned like the ping-pong; crowds float. */
        for (int i = 0; i < ntx + nrx; i++)
                cpus[i] = ntx == 1 && nrx == 1 ? i : -1;
        r = run_setup(&run, nlinks, ntx + nrx);
        if (r == 0)
                r = run_roles(&run, ntx + nrx, role_stream, cpus);
        if (r == 0) {
                int64_t t0 = INT64_MAX, t1 = 0, sc = 0, w[2] = {0, 0}, k[2] = {0, 0};
                double msgs = (double)count * ntx;

                for (int i = 0; i < ntx + nrx; i++) {
                        if (i < ntx && run.sh->t_start[i] < t0)
                                t0 = run.sh->t_start[i];
                        if (i >= ntx && run.sh->t_end[i] > t1)
                                t1 = run.sh->t_end[i];
                        if (sc >= 0)
                                sc = run.sh->syscalls[i] < 0 ? -1 : sc + run.sh->syscalls[i];
                        w[i >= ntx] += run.sh->futex_waits[i];
                        k[i >= ntx] += run.sh->futex_wakes[i];
                }
                *ret = (struct stream_result){
                        .rate = msgs / ((double)(t1 - t0) / 1e9),
                        .syscalls = sc < 0 ? -1 : (double)sc / msgs,
                        .pub_waits = (double)w[0] / msgs,
                        .pub_wakes = (double)k[0] / msgs,
                        .sub_waits = (double)w[1] / msgs,
                        .sub_wakes = (double)k[1] / msgs,
                };
        }
        run_teardown(&run);
        return r;
}

/* Messages per publisher: about a second of work for the fast transports. */
static size_t stream_count(size_t size) {
        size_t n = size <= 64 ? 4000000 : size <= 1024 ? 1500000 : size <= 4096 ? 600000 : 60000;

        return quick ? n / 10 : n;
}

static bool syscall_based(const struct link_ops *ops) {
        return ops == &link_pipe || ops == &link_unix;
}

static void bench_stream(const char *scenario, const struct link_ops *ops, enum wait_mode mode,
                         size_t size, int ntx, int nrx, const char *baseline) {
        struct row *row = row_new(scenario, ops->name, mode, size, ntx, nrx);
        size_t count = stream_count(size) / (syscall_based(ops) ? 4 : 1);
        struct stream_result res;
        const struct row *base;

        count /= (size_t)ntx;
        if (!transport_usable(ops, mode, row))
                goto print;
        if (ntx > 1 && !ops->multi_tx) {
                row->note = "one writer per link";
                goto print;
        }
        if (stream_once(ops, mode, size, 0, ntx, nrx, count, false, &res) < 0) {
                row->note = "failed";
                goto print;
        }
        row->ok = true;
        row->msgs = res.rate;
        row->pub_waits = res.pub_waits;
        row->pub_wakes = res.pub_wakes;
        row->sub_waits = res.sub_waits;
        row->sub_wakes = res.sub_wakes;
        if (ntx == 1 && nrx == 1 && syscall_tracepoint_id() >= 0) {
                size_t n = count / 10 < 20000 ? 20000 : count / 10;

                if (stream_once(ops, mode, size, 0, 1, 1, n, true, &res) == 0)
                        row->syscalls = res.syscalls;
        }
        base = baseline ? row_find(scenario, baseline, size, ntx, nrx) : NULL;
        if (base && base != row && base->msgs > 0) {
                row->ratio = row->msgs / base->msgs;
                row->ratio_to = base->transport;
        }
print:
        printf("  %-18s %-16s %6zu %3d %3d ", row->transport, mode_names[mode], size, ntx, nrx);
        if (!row->ok) {
                printf("skipped: %s\n", row->note);
                return;
        }
        printf("%12.0f %10.1f", row->msgs, row->msgs * (double)size / 1e6);
        if (row->ratio > 0)
                printf("  %5.2fx %-12s", row->ratio, row->ratio_to);
        else
                printf("  %19s", "");
        if (row->syscalls >= 0)
                printf(" %7.3f", row->syscalls);
        if (row->pub_waits + row->pub_wakes + row->sub_waits + row->sub_wakes > 0)
                printf("  futex/msg pub %.4f+%.4f sub %.4f+%.4f", row->pub_waits, row->pub_wakes,
                       row->sub_waits, row->sub_wakes);
        printf("\n");
}

/* ---- events: waiting on a descriptor (issue 18) ------------------------------------------- */

/*
 * A reader parked in epoll on shmbus_sub_fd(), against the two ways to wake
 * an epoll loop from another process without shmbus: an eventfd (no
 * payload, the kernel's cheapest wake-up) and a pipe (64 B each way); and
 * streaming through the descriptor against shmbus' own futex wait. Both
 * sides of a round trip are parked (receive with timeout 0 until -EAGAIN,
 * then epoll_wait). System calls are counted for the whole process, the
 * library's notifier thread included (an inherited counter opened before it
 * starts).
 *
 * The shmbus rows are measured twice: with channels opened from the run's
 * directory (shmbus_channel_open(), no daemon), and with channels opened
 * through a shmbusd (shmbus_client_open(), each role with its own client
 * connection, as a real service would) that this run starts with a private
 * socket and shm directory under the run's directory, and stops at the end.
 * The daemon may wake descriptors differently from the directory path; the
 * two sets of rows say what that changes.
 */
enum ev_kind { EV_SHMBUS_FD, EV_EVENTFD, EV_PIPE, EV_SHMBUS_FUTEX };

static const char *const ev_names[] = {"shmbus-fd", "eventfd-epoll", "pipe-epoll", "shmbus"};
static const char *const ev_daemon_names[] = {"shmbus-fd-daemon", NULL, NULL, "shmbus-daemon"};

static struct {
        enum ev_kind kind;
        bool daemon;   /* shmbus channels opened through evd's shmbusd */
        int fds[2][2]; /* [0] pings A -> B, [1] pongs B -> A: eventfds, or pipes' ends */
        char chan[2][32];
        size_t parks; /* epoll_wait calls of this process's reader */
} ev;

/* The run's private shmbusd, for the *-daemon rows. */
static struct {
        bool tried;
        pid_t pid;             /* > 0 while it runs */
        shmbus_client *client; /* the coordinator's: creates and deletes the channels */
        char bin[PATH_MAX];    /* the daemon binary */
        char dir[300];         /* bench_dir/shmbusd: socket, log, shm directory */
        char sock[108], shm[320], log[320];
        char why[PATH_MAX + 256];  /* why it is not running ("" while it is) */
        char note[PATH_MAX + 300]; /* the skipped rows' note */
} evd;

static const char *ev_name(enum ev_kind kind, bool daemon) {
        return daemon ? ev_daemon_names[kind] : ev_names[kind];
}

/* --shmbusd, or daemon/shmbusd of the build tree this binary is in (bench/..). */
static void evd_find_binary(void) {
        char self[PATH_MAX];
        ssize_t n;
        char *slash;

        if (shmbusd_path) {
                snprintf(evd.bin, sizeof(evd.bin), "%s", shmbusd_path);
                return;
        }
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0) {
                snprintf(evd.bin, sizeof(evd.bin), "daemon/shmbusd");
                return;
        }
        self[n] = 0;
        slash = strrchr(self, '/');
        if (slash)
                *slash = 0;
        snprintf(evd.bin, sizeof(evd.bin), "%.*s/../daemon/shmbusd", PATH_MAX - 32, self);
        if (realpath(evd.bin, self))
                snprintf(evd.bin, sizeof(evd.bin), "%s", self);
}

/* The last line of the daemon's log, for a message. */
static const char *evd_log_tail(char *buf, size_t size) {
        FILE *f = fopen(evd.log, "re");
        char line[512];

        snprintf(buf, size, "(empty log)");
        if (!f)
                return buf;
        while (fgets(line, sizeof(line), f))
                if (line[0] != '\n') {
                        line[strcspn(line, "\n")] = 0;
                        snprintf(buf, size, "%.300s", line);
                }
        fclose(f);
        return buf;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void)st;
        (void)ftw;
        return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

/*
 * Start a shmbusd on a private socket and shm directory in the run's directory;
 * 0, or -1 with evd.why saying why. It dies with this process (PR_SET_PDEATHSIG)
 * if we never get to evd_stop().
 */
static int evd_start(void) {
        pid_t parent = getpid();
        char tail[400];

        evd.tried = true;
        evd_find_binary();
        if (access(evd.bin, X_OK) < 0) {
                snprintf(evd.why, sizeof(evd.why), "no shmbusd at %s (%s; give --shmbusd PATH)",
                         evd.bin, strerror(errno));
                return -1;
        }
        snprintf(evd.dir, sizeof(evd.dir), "%s/shmbusd", bench_dir);
        if (snprintf(evd.sock, sizeof(evd.sock), "%s/shmbusd.sock", evd.dir) >=
            (int)sizeof(evd.sock)) {
                snprintf(evd.why, sizeof(evd.why), "socket path too long under %s", evd.dir);
                return -1;
        }
        snprintf(evd.shm, sizeof(evd.shm), "%s/channels", evd.dir);
        snprintf(evd.log, sizeof(evd.log), "%s/shmbusd.log", evd.dir);
        if (mkdir(evd.dir, 0700) < 0) {
                snprintf(evd.why, sizeof(evd.why), "mkdir %s: %s", evd.dir, strerror(errno));
                return -1;
        }
        fflush(NULL);
        evd.pid = fork();
        if (evd.pid < 0) {
                snprintf(evd.why, sizeof(evd.why), "fork: %s", strerror(errno));
                evd.pid = 0;
                return -1;
        }
        if (evd.pid == 0) {
                int fd = open(evd.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(127);
                if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                        _exit(127);
                signal(SIGPIPE, SIG_DFL);
                execl(evd.bin, evd.bin, "-s", evd.sock, "-d", evd.shm, (char *)NULL);
                fprintf(stderr, "cannot run %s: %s\n", evd.bin, strerror(errno));
                _exit(127);
        }
        /* Ready when it answers a hello; 10 s at most. */
        for (int i = 0; i < 1000; i++) {
                struct timespec ts = {0, 10000000};
                int st;

                if (shmbus_client_new(evd.sock, &evd.client) == 0)
                        return 0;
                if (waitpid(evd.pid, &st, WNOHANG) == evd.pid) {
                        evd.pid = 0;
                        snprintf(evd.why, sizeof(evd.why), "%s exited at start-up (%s %d): %s",
                                 evd.bin, WIFEXITED(st) ? "status" : "signal",
                                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                                 evd_log_tail(tail, sizeof(tail)));
                        return -1;
                }
                nanosleep(&ts, NULL);
        }
        snprintf(evd.why, sizeof(evd.why), "%s did not answer on %s within 10 s: %s", evd.bin,
                 evd.sock, evd_log_tail(tail, sizeof(tail)));
        kill(evd.pid, SIGKILL);
        waitpid(evd.pid, NULL, 0);
        evd.pid = 0;
        return -1;
}

/* Stop the daemon (SIGTERM, then SIGKILL after 10 s) and remove its directory. */
static void evd_stop(void) {
        char tail[400];
        int st = 0;

        evd.client = shmbus_client_free(evd.client);
        if (evd.pid > 0) {
                kill(evd.pid, SIGTERM);
                for (int i = 0; i < 1000; i++) {
                        struct timespec ts = {0, 10000000};

                        if (waitpid(evd.pid, &st, WNOHANG) == evd.pid)
                                break;
                        if (i == 999) {
                                fprintf(stderr, "shmbus-bench: shmbusd did not stop on SIGTERM\n");
                                kill(evd.pid, SIGKILL);
                                waitpid(evd.pid, &st, 0);
                        }
                        nanosleep(&ts, NULL);
                }
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                        fprintf(stderr, "shmbus-bench: shmbusd ended with %s %d: %s\n",
                                WIFEXITED(st) ? "status" : "signal",
                                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                                evd_log_tail(tail, sizeof(tail)));
                evd.pid = 0;
        }
        if (evd.dir[0] && nftw(evd.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
                fprintf(stderr, "shmbus-bench: cannot remove %s\n", evd.dir);
}

/* Every system call of this process from now on, threads started later included; or -1. */
static int ev_syscalls_open(void) {
        struct perf_event_attr a = {
                .type = PERF_TYPE_TRACEPOINT,
                .size = sizeof(a),
                .config = (uint64_t)syscall_tracepoint_id(),
                .disabled = 1,
                .inherit = 1,
                .sample_period = 1,
        };

        if (syscall_tracepoint_id() < 0)
                return -1;
        return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

struct ev_end {
        shmbus_client *client; /* daemon rows: this role's own connection */
        shmbus_channel *ch[2];
        shmbus_pub *pub;
        shmbus_sub *sub;
        int ep;
        int in, out; /* eventfd or pipe ends */
};

static int ev_open(struct ev_end *e, int role, bool fd_mode) {
        int rx = role == 0 ? 1 : 0, tx = 1 - rx;
        struct epoll_event ee = {.events = EPOLLIN};
        int r;

        *e = (struct ev_end){.ep = epoll_create1(EPOLL_CLOEXEC), .in = -1, .out = -1};
        if (ev.kind == EV_EVENTFD || ev.kind == EV_PIPE) {
                e->in = ev.fds[rx][0];
                e->out = ev.kind == EV_EVENTFD ? ev.fds[tx][0] : ev.fds[tx][1];
                return epoll_ctl(e->ep, EPOLL_CTL_ADD, e->in, &ee);
        }
        if (ev.daemon) {
                r = shmbus_client_new(evd.sock, &e->client);
                if (r == 0)
                        r = shmbus_client_open(e->client, ev.chan[rx], 0, NULL, &e->ch[rx]);
                if (r == 0)
                        r = shmbus_client_open(e->client, ev.chan[tx], SHMBUS_OPEN_PUBLISH, NULL,
                                               &e->ch[tx]);
                if (r < 0)
                        fprintf(stderr, "shmbus-bench: open through shmbusd: %s (%s)\n",
                                strerror(-r), shmbus_client_last_error(e->client));
        } else {
                r = shmbus_channel_open(bench_dir, ev.chan[rx], 0, &e->ch[rx]);
                if (r == 0)
                        r = shmbus_channel_open(bench_dir, ev.chan[tx], SHMBUS_OPEN_PUBLISH,
                                                &e->ch[tx]);
        }
        if (r == 0)
                r = shmbus_sub_new(e->ch[rx], &e->sub);
        if (r == 0)
                r = shmbus_pub_new(e->ch[tx], &e->pub);
        if (r == 0 && fd_mode) {
                r = shmbus_sub_fd(e->sub);
                if (r >= 0)
                        r = epoll_ctl(e->ep, EPOLL_CTL_ADD, r, &ee);
        }
        return r < 0 ? -1 : 0;
}

static void ev_close(struct ev_end *e) {
        shmbus_sub_free(e->sub);
        shmbus_pub_free(e->pub);
        shmbus_channel_unref(e->ch[0]);
        shmbus_channel_unref(e->ch[1]);
        shmbus_client_free(e->client);
        close(e->ep);
}

static int ev_send(struct ev_end *e, const uint8_t *msg, size_t size) {
        uint64_t one = 1;

        if (ev.kind == EV_EVENTFD)
                return write(e->out, &one, sizeof(one)) == sizeof(one) ? 0 : -1;
        if (ev.kind == EV_PIPE)
                return write(e->out, msg, size) == (ssize_t)size ? 0 : -1;
        return shmbus_pub_send(e->pub, msg, size, -1);
}

/* One message (or one eventfd wake-up), parked in epoll until it is there. */
static ssize_t ev_recv(struct ev_end *e, uint8_t *buf) {
        struct epoll_event ee;

        for (;;) {
                ssize_t n;

                if (ev.kind == EV_SHMBUS_FUTEX)
                        return shmbus_sub_recv(e->sub, buf, MSG_MAX, -1);
                if (ev.kind == EV_SHMBUS_FD)
                        n = shmbus_sub_recv(e->sub, buf, MSG_MAX, 0);
                else
                        n = read(e->in, buf, ev.kind == EV_EVENTFD ? 8 : MSG_MAX);
                if (n > 0)
                        return n;
                if (n < 0 && n != -EAGAIN && !(n == -1 && errno == EAGAIN))
                        return -1;
                ev.parks++;
                if (epoll_wait(e->ep, &ee, 1, -1) < 0 && errno != EINTR)
                        return -1;
        }
}

static int role_ev_pingpong(struct run *run, int role) {
        uint8_t *msg = calloc(1, MSG_MAX), *buf = calloc(1, MSG_MAX);
        int64_t *rtt = run->sh->samples;
        struct ev_end e;
        int sc = -1, r = -1;

        if (!msg || !buf || ev_open(&e, role, true) < 0)
                goto out;
        if (run->count_syscalls)
                sc = ev_syscalls_open();
        barrier_wait(&run->sh->bar);
        syscalls_start(sc);
        for (size_t i = 0; i < run->count + WARMUP; i++) {
                int64_t t0 = bench_now_ns();

                if (role == 0 && (ev_send(&e, msg, 64) < 0 || ev_recv(&e, buf) < 0))
                        goto out;
                if (role == 1 && (ev_recv(&e, buf) < 0 || ev_send(&e, msg, 64) < 0))
                        goto out;
                if (role == 0 && i >= WARMUP)
                        rtt[i - WARMUP] = bench_now_ns() - t0;
        }
        run->sh->syscalls[role] = syscalls_stop(sc);
        r = 0;
out:
        ev_close(&e);
        free(msg);
        free(buf);
        return r;
}

/* Role 0 publishes run->count messages, role 1 receives them. */
static int role_ev_stream(struct run *run, int role) {
        uint8_t *msg = calloc(1, MSG_MAX), *buf = calloc(1, MSG_MAX);
        struct ev_end e;
        int sc = -1, r = -1;

        if (!msg || !buf || ev_open(&e, role, ev.kind == EV_SHMBUS_FD) < 0)
                goto out;
        if (run->count_syscalls)
                sc = ev_syscalls_open();
        barrier_wait(&run->sh->bar);
        syscalls_start(sc);
        run->sh->t_start[role] = bench_now_ns();
        for (size_t n = 0; n < run->count; n++) {
                if (role == 0) {
                        fill(msg, run->size, n);
                        if (ev_send(&e, msg, run->size) < 0)
                                goto out;
                } else if (ev_recv(&e, buf) != (ssize_t)run->size || seq_of(buf) != n) {
                        goto out;
                }
        }
        run->sh->t_end[role] = bench_now_ns();
        run->sh->syscalls[role] = syscalls_stop(sc);
        if (role == 1)
                run->sh->samples[0] = (int64_t)ev.parks;
        r = 0;
out:
        ev_close(&e);
        free(msg);
        free(buf);
        return r;
}

/*
 * Fresh eventfds, pipes or channels for one run (forked roles inherit them);
 * with @daemon, channels created through evd's shmbusd, with the geometry the
 * directory rows get.
 */
static int ev_setup(enum ev_kind kind, bool daemon) {
        static int serial;
        shmbus_opts *o = NULL;
        shmbus_channel *c = NULL;
        int r = 0;

        ev.kind = kind;
        ev.daemon = daemon;
        for (int i = 0; i < 2; i++) {
                ev.fds[i][0] = ev.fds[i][1] = -1;
                if (kind == EV_EVENTFD)
                        ev.fds[i][0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                else if (kind == EV_PIPE && pipe2(ev.fds[i], O_CLOEXEC | O_NONBLOCK) < 0)
                        r = -errno;
                snprintf(ev.chan[i], sizeof(ev.chan[i]), "ev-%d-%d", serial, i);
        }
        serial++;
        if (kind == EV_SHMBUS_FD || kind == EV_SHMBUS_FUTEX) {
                r = shmbus_opts_new(&o);
                for (int i = 0; r == 0 && i < 2; i++) {
                        if (daemon) {
                                r = shmbus_client_open(evd.client, ev.chan[i], SHMBUS_OPEN_CREATE,
                                                       o, &c);
                                if (r < 0)
                                        fprintf(stderr,
                                                "shmbus-bench: create through shmbusd: %s (%s)\n",
                                                strerror(-r), shmbus_client_last_error(evd.client));
                        } else {
                                r = shmbus_channel_create(bench_dir, ev.chan[i], o, 0600, &c);
                        }
                        if (r == 0)
                                shmbus_channel_unref(c);
                }
                shmbus_opts_free(o);
        }
        return r;
}

static void ev_teardown(void) {
        for (int i = 0; i < 2; i++) {
                if (ev.fds[i][0] >= 0)
                        close(ev.fds[i][0]);
                if (ev.fds[i][1] >= 0)
                        close(ev.fds[i][1]);
                if (ev.daemon && evd.client)
                        (void)shmbus_client_delete(evd.client, ev.chan[i]);
                else if (!ev.daemon)
                        (void)shmbus_channel_unlink(bench_dir, ev.chan[i]);
        }
}

/* One run of @fn with two roles on CPU 0 and 1; 0 or -errno. */
static int ev_run(enum ev_kind kind, bool daemon, role_fn fn, size_t size, size_t count,
                  bool count_sc, struct run *ret_run) {
        static const int cpus[] = {0, 1};
        int r;

        *ret_run = (struct run){.size = size, .count = count, .count_syscalls = count_sc};
        r = ev_setup(kind, daemon);
        if (r == 0)
                r = run_setup(ret_run, 0, 2);
        if (r == 0)
                r = run_roles(ret_run, 2, fn, cpus);
        ev_teardown();
        return r;
}

/* A *-daemon row without a daemon: skipped, and why; @size 0: a round-trip row. */
static bool ev_daemon_missing(bool daemon, struct row *row, size_t size) {
        if (!daemon || evd.pid > 0)
                return false;
        row->note = evd.note;
        printf("  %-18s ", row->transport);
        if (size)
                printf("%6zu ", size);
        printf("skipped: %s\n", row->note);
        return true;
}

/* A *-daemon row failed: the daemon's log may say why. */
static void ev_daemon_failed(bool daemon) {
        char tail[400];

        if (daemon)
                fprintf(stderr, "shmbus-bench: last line of %s: %s\n", evd.log,
                        evd_log_tail(tail, sizeof(tail)));
}

static void bench_events_rtt(enum ev_kind kind, bool daemon, const struct row *base) {
        struct row *row = row_new("rtt", ev_name(kind, daemon), WAIT_SLEEP, 64, 1, 1);
        size_t iters = quick ? 3000 : 30000;
        struct run run;

        if (ev_daemon_missing(daemon, row, 0))
                return;
        if (ev_run(kind, daemon, role_ev_pingpong, 64, iters, false, &run) < 0) {
                row->note = "failed";
                printf("  %-18s failed\n", row->transport);
                ev_daemon_failed(daemon);
                munmap(run.sh, run.sh_len);
                return;
        }
        row->rtt = percentiles(run.sh->samples, iters);
        row->ok = true;
        munmap(run.sh, run.sh_len);
        if (ev_run(kind, daemon, role_ev_pingpong, 64, iters / 10, true, &run) == 0 &&
            run.sh->syscalls[0] >= 0 && run.sh->syscalls[1] >= 0)
                row->syscalls =
                        (double)(run.sh->syscalls[0] + run.sh->syscalls[1]) / (double)(iters / 10);
        munmap(run.sh, run.sh_len);
        if (base && base->ok) {
                row->ratio = row->rtt.p50 / base->rtt.p50;
                row->ratio_to = base->transport;
        }
        printf("  %-18s %9.1f %9.1f %9.1f %9.1f %10.1f", row->transport, row->rtt.p50 / 1e3,
               row->rtt.p90 / 1e3, row->rtt.p99 / 1e3, row->rtt.p999 / 1e3, row->rtt.max / 1e3);
        if (row->ratio > 0)
                printf("  %6.2fx %-14s", row->ratio, row->ratio_to);
        else
                printf("  %22s", "");
        if (row->syscalls >= 0)
                printf(" %7.2f", row->syscalls);
        printf("\n");
}

static void bench_events_stream(enum ev_kind kind, bool daemon, size_t size,
                                const struct row *base) {
        struct row *row = row_new("events-stream", ev_name(kind, daemon),
                                  kind == EV_SHMBUS_FD ? WAIT_SLEEP : WAIT_SPIN, size, 1, 1);
        size_t count = stream_count(size);
        double parks;
        struct run run;

        if (ev_daemon_missing(daemon, row, size))
                return;
        if (ev_run(kind, daemon, role_ev_stream, size, count, false, &run) < 0) {
                row->note = "failed";
                printf("  %-18s %6zu failed\n", row->transport, size);
                ev_daemon_failed(daemon);
                munmap(run.sh, run.sh_len);
                return;
        }
        row->msgs = (double)count / ((double)(run.sh->t_end[1] - run.sh->t_start[0]) / 1e9);
        parks = (double)run.sh->samples[0] / (double)count;
        row->ok = true;
        munmap(run.sh, run.sh_len);
        if (ev_run(kind, daemon, role_ev_stream, size, count / 10, true, &run) == 0 &&
            run.sh->syscalls[0] >= 0 && run.sh->syscalls[1] >= 0)
                row->syscalls =
                        (double)(run.sh->syscalls[0] + run.sh->syscalls[1]) / (double)(count / 10);
        munmap(run.sh, run.sh_len);
        if (base && base->ok && base->msgs > 0) {
                row->ratio = row->msgs / base->msgs;
                row->ratio_to = base->transport;
        }
        printf("  %-18s %6zu %12.0f %10.1f", row->transport, size, row->msgs,
               row->msgs * (double)size / 1e6);
        if (row->ratio > 0)
                printf("  %5.2fx %-13s", row->ratio, row->ratio_to);
        else
                printf("  %20s", "");
        if (kind == EV_SHMBUS_FD)
                printf(" %9.5f", parks);
        else
                printf(" %9s", "");
        if (row->syscalls >= 0)
                printf(" %7.3f", row->syscalls);
        printf("\n");
}

/*
 * The *-daemon rows need a shmbusd; without one they are skipped (and say
 * why, here and in results.json), the others are measured all the same.
 */
static void bench_events(void) {
        static const size_t sizes[] = {64, 4096};
        const struct row *eventfd_row;

        printf("\nEvent loops: ");
        if (evd_start() == 0) {
                printf("the *-daemon rows open their channels through %s\n"
                       "(private socket %s)\n",
                       evd.bin, evd.sock);
        } else {
                snprintf(evd.note, sizeof(evd.note), "shmbusd not started: %s", evd.why);
                printf("%s; the *-daemon rows are skipped\n", evd.note);
        }
        printf("\nEvent loops: 64 B round trip, both readers parked in epoll, CPU 0 and 1 (us):\n"
               "  %-18s %9s %9s %9s %9s %10s  %-22s %7s\n",
               "transport", "p50", "p90", "p99", "p99.9", "max", "p50 ratio", "sc/rt");
        bench_events_rtt(EV_EVENTFD, false, NULL);
        eventfd_row = &rows[nrows - 1];
        bench_events_rtt(EV_PIPE, false, eventfd_row);
        bench_events_rtt(EV_SHMBUS_FD, false, eventfd_row);
        bench_events_rtt(EV_SHMBUS_FD, true, eventfd_row);
        printf("\nEvent loops: streaming through the descriptor against the futex wait, each for\n"
               "channels opened from a directory and through shmbusd (*-daemon)\n"
               "(parks: the reader's epoll_wait calls per message):\n"
               "  %-18s %6s %12s %10s  %-20s %9s %7s\n",
               "transport", "size", "msg/s", "MB/s", "ratio", "parks", "sc/msg");
        for (size_t s = 0; s < 2; s++) {
                for (int d = 0; d < 2; d++) {
                        const struct row *futex_row;

                        bench_events_stream(EV_SHMBUS_FUTEX, d != 0, sizes[s], NULL);
                        futex_row = &rows[nrows - 1];
                        bench_events_stream(EV_SHMBUS_FD, d != 0, sizes[s], futex_row);
                }
        }
        evd_stop();
}

/* ---- the matrix: ring size x message size ---------------------------------------------------- */

static const size_t matrix_caps[] = {(size_t)64 << 10, (size_t)256 << 10, (size_t)1 << 20,
                                     (size_t)4 << 20,  (size_t)16 << 20,  (size_t)64 << 20};
static const size_t matrix_sizes[] = {64, 256, 1024, 4096, 16384, 65536};
#define MATRIX_CAPS   (sizeof(matrix_caps) / sizeof(matrix_caps[0]))
#define MATRIX_SIZES  (sizeof(matrix_sizes) / sizeof(matrix_sizes[0]))
#define MATRIX_ROUNDS 3

/*
 * Messages for one cell: enough bytes for several laps of the biggest ring and
 * a few tenths of a second at the fastest rate, a tenth of that with --quick.
 */
static size_t matrix_count(size_t size, size_t capacity) {
        size_t bytes = (size_t)1 << (quick ? 28 : 30), n;

        if (bytes < 4 * capacity)
                bytes = 4 * capacity;
        n = bytes / size;
        if (n > (quick ? 2000000u : 8000000u))
                n = quick ? 2000000u : 8000000u;
        return n < 20000 ? 20000 : n;
}

static const struct row *matrix_find(const char *transport, size_t size, size_t capacity) {
        for (size_t i = 0; i < nrows; i++)
                if (rows[i].ok && strcmp(rows[i].scenario, "matrix") == 0 &&
                    strcmp(rows[i].transport, transport) == 0 && rows[i].size == size &&
                    rows[i].capacity == capacity)
                        return &rows[i];
        return NULL;
}

/*
 * One cell: the SPSC ring, shmbus copying and shmbus zero-copy, one publisher
 * and one spin-then-sleep subscriber, the SPSC ring again with its reader
 * mapping the ring bytes read-only as shmbus subscribers do (issue 17), and
 * shmbus copying with a subscriber that opened the channel to publish, so it
 * reads through a writable mapping, in
 * MATRIX_ROUNDS rounds (one with --quick) of the five back to back; each
 * figure but the first is the median of its per-round ratios to the SPSC
 * ring of the same round.
 */
static void bench_matrix_cell(size_t capacity, size_t size) {
        const struct link_ops *ops[] = {&link_spsc, &link_shmbus, &link_shmbus_zc, &link_spsc_ro,
                                        &link_shmbus_rw};
        enum { NOPS = sizeof(ops) / sizeof(ops[0]) };
        int rounds = quick ? 1 : MATRIX_ROUNDS;
        size_t count = matrix_count(size, capacity);
        struct stream_result res[NOPS][MATRIX_ROUNDS];
        struct row *row[NOPS];

        for (int t = 0; t < NOPS; t++) {
                row[t] = row_new("matrix", ops[t]->name,
                                 ops[t]->modes & (1u << WAIT_SPIN) ? WAIT_SPIN : WAIT_BUSY, size, 1,
                                 1);
                row[t]->capacity = capacity;
        }
        for (int k = 0; k < rounds; k++)
                for (int t = 0; t < NOPS; t++)
                        if (stream_once(ops[t], row[t]->mode, size, capacity, 1, 1, count, false,
                                        &res[t][k]) < 0) {
                                row[t]->note = "failed";
                                printf("  %8zu %6zu %s failed\n", capacity, size, ops[t]->name);
                                return;
                        }
        for (int t = 0; t < NOPS; t++) {
                double rates[MATRIX_ROUNDS], ratios[MATRIX_ROUNDS];
                struct stream_result sum = {0};

                for (int k = 0; k < rounds; k++) {
                        rates[k] = res[t][k].rate;
                        ratios[k] = res[t][k].rate / res[0][k].rate;
                        sum.pub_waits += res[t][k].pub_waits / rounds;
                        sum.pub_wakes += res[t][k].pub_wakes / rounds;
                        sum.sub_waits += res[t][k].sub_waits / rounds;
                        sum.sub_wakes += res[t][k].sub_wakes / rounds;
                }
                qsort(rates, (size_t)rounds, sizeof(double), cmp_double);
                qsort(ratios, (size_t)rounds, sizeof(double), cmp_double);
                row[t]->ok = true;
                row[t]->msgs = rates[rounds / 2];
                row[t]->pub_waits = sum.pub_waits;
                row[t]->pub_wakes = sum.pub_wakes;
                row[t]->sub_waits = sum.sub_waits;
                row[t]->sub_wakes = sum.sub_wakes;
                if (t > 0) {
                        row[t]->ratio = ratios[rounds / 2];
                        row[t]->ratio_to = "spsc-ring, same ring bytes, same round";
                }
        }
        printf("  %8zu %6zu %11.0f %11.0f %5.2fx %11.0f %5.2fx %5.2fx %5.2fx  %.4f %.4f %.4f "
               "%.4f\n",
               capacity >> 10, size, row[0]->msgs, row[1]->msgs, row[1]->ratio, row[2]->msgs,
               row[2]->ratio, row[3]->ratio, row[4]->ratio, row[1]->pub_waits, row[1]->pub_wakes,
               row[1]->sub_waits, row[1]->sub_wakes);
}

static void bench_matrix(void) {
        printf("\nMatrix: one-way streaming, ring bytes x message size, 1 publisher and 1 "
               "spin-then-sleep subscriber on CPU 0 and CPU 1; ratios to an SPSC ring with the "
               "same ring bytes; ro: that ring with its reader mapping the bytes read-only; "
               "rw: shmbus copying, its subscriber reading through a writable mapping; "
               "futex calls per message of the copying run:\n"
               "  %8s %6s %11s %11s %6s %11s %6s %6s %6s  %-6s %-6s %-6s %-6s\n",
               "ring KiB", "size", "spsc msg/s", "copy msg/s", "ratio", "zc msg/s", "ratio", "ro",
               "rw", "pub-w", "pub-k", "sub-w", "sub-k");
        for (size_t c = 0; c < MATRIX_CAPS; c++)
                for (size_t s = 0; s < MATRIX_SIZES; s++)
                        if (matrix_sizes[s] <= matrix_caps[c] / 4 &&
                            (!only_ring || only_ring == matrix_caps[c]) &&
                            (!only_size || only_size == matrix_sizes[s]))
                                bench_matrix_cell(matrix_caps[c], matrix_sizes[s]);
}

/* ---- output ------------------------------------------------------------------------------- */

static cJSON *pct_json(struct pct p) {
        cJSON *o = cJSON_CreateObject();

        cJSON_AddNumberToObject(o, "p50", p.p50);
        cJSON_AddNumberToObject(o, "p90", p.p90);
        cJSON_AddNumberToObject(o, "p99", p.p99);
        cJSON_AddNumberToObject(o, "p99.9", p.p999);
        cJSON_AddNumberToObject(o, "max", p.max);
        return o;
}

static int write_json(const char *path) {
        cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "meta");
        cJSON *arr = cJSON_AddArrayToObject(root, "results");
        struct utsname u;
        char *text;
        FILE *f;
        int r = 0;

        uname(&u);
        cJSON_AddStringToObject(meta, "shmbus", shmbus_version());
        cJSON_AddStringToObject(meta, "kernel", u.release);
        cJSON_AddNumberToObject(meta, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
        cJSON_AddStringToObject(meta, "run", quick ? "quick" : "full");
        cJSON_AddNumberToObject(meta, "time", (double)time(NULL));
        cJSON_AddBoolToObject(meta, "iceoryx", with_iceoryx);
        cJSON_AddBoolToObject(meta, "syscalls_counted", syscall_tracepoint_id() >= 0);
        if (evd.tried) {
                cJSON *d = cJSON_AddObjectToObject(meta, "shmbusd");

                /* The events scenario's daemon: its binary, and why its rows were skipped. */
                cJSON_AddStringToObject(d, "path", evd.bin);
                cJSON_AddBoolToObject(d, "started", evd.why[0] == 0);
                if (evd.why[0])
                        cJSON_AddStringToObject(d, "skipped", evd.why);
        }
        for (size_t i = 0; i < nrows; i++) {
                const struct row *row = &rows[i];
                cJSON *o = cJSON_CreateObject();

                cJSON_AddStringToObject(o, "scenario", row->scenario);
                cJSON_AddStringToObject(o, "transport", row->transport);
                cJSON_AddStringToObject(o, "wait", mode_names[row->mode]);
                cJSON_AddNumberToObject(o, "size", (double)row->size);
                cJSON_AddNumberToObject(o, "ring_bytes", (double)row->capacity);
                cJSON_AddNumberToObject(o, "publishers", row->ntx);
                cJSON_AddNumberToObject(o, "subscribers", row->nrx);
                cJSON_AddBoolToObject(o, "ok", row->ok);
                if (!row->ok) {
                        cJSON_AddStringToObject(o, "note", row->note);
                } else if (strcmp(row->scenario, "rtt") == 0) {
                        cJSON_AddItemToObject(o, "rtt_ns", pct_json(row->rtt));
                } else {
                        cJSON_AddNumberToObject(o, "msgs_per_s", row->msgs);
                        cJSON_AddNumberToObject(o, "mb_per_s", row->msgs * (double)row->size / 1e6);
                }
                if (row->ok && row->syscalls >= 0)
                        cJSON_AddNumberToObject(o, "syscalls_per_msg", row->syscalls);
                if (row->ok && row->pub_waits >= 0) {
                        cJSON *fx = cJSON_AddObjectToObject(o, "futex_per_msg");

                        cJSON_AddNumberToObject(fx, "pub_waits", row->pub_waits);
                        cJSON_AddNumberToObject(fx, "pub_wakes", row->pub_wakes);
                        cJSON_AddNumberToObject(fx, "sub_waits", row->sub_waits);
                        cJSON_AddNumberToObject(fx, "sub_wakes", row->sub_wakes);
                }
                if (row->floor_p50 > 0)
                        cJSON_AddNumberToObject(o, "floor_p50_ns", row->floor_p50);
                if (row->ratio > 0) {
                        cJSON_AddNumberToObject(o, "ratio", row->ratio);
                        cJSON_AddStringToObject(o, "ratio_to", row->ratio_to);
                }
                cJSON_AddItemToArray(arr, o);
        }
        text = cJSON_Print(root);
        f = fopen(path, "we");
        if (!f || !text || fputs(text, f) < 0 || fputc('\n', f) < 0)
                r = -1;
        if (f && fclose(f) != 0)
                r = -1;
        free(text);
        cJSON_Delete(root);
        return r;
}

/* Whether any row of @scenario was measured. */
static bool ran(const char *scenario) {
        for (size_t i = 0; i < nrows; i++)
                if (rows[i].ok && strcmp(rows[i].scenario, scenario) == 0)
                        return true;
        return false;
}

/* Data files for bench/plot.gp: percentiles per reader, and a rate matrix per size. */
static int write_plot_data(const char *dir) {
        static const char *const transports[] = {"spsc-ring", "shmbus",      "shmbus-zero-copy",
                                                 "iceoryx",   "unix-socket", "pipe"};
        static const size_t sizes[] = {64, 1024, 4096, 65536};
        char path[512];
        FILE *f;

        /* A file for every scenario that ran, none for the others (run.sh plots what is there). */
        snprintf(path, sizeof(path), "%s/rtt.dat", dir);
        unlink(path);
        for (int mb = 0; mb < 2; mb++) {
                snprintf(path, sizeof(path), "%s/stream-%s.dat", dir, mb ? "mbs" : "msgs");
                unlink(path);
                snprintf(path, sizeof(path), "%s/matrix-%s.dat", dir, mb ? "zero-copy" : "copy");
                unlink(path);
        }
        snprintf(path, sizeof(path), "%s/events-rtt.dat", dir);
        unlink(path);
        if (ran("events-stream")) {
                /* The event-loop round trips (issue 18), which --only events runs alone. */
                static const char *const names[] = {"eventfd-epoll", "pipe-epoll", "shmbus-fd",
                                                    "shmbus-fd-daemon"};

                f = fopen(path, "we");
                if (!f)
                        return -1;
                fprintf(f, "name p50 p90 p99\n");
                for (size_t i = 0; i < nrows; i++)
                        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
                                if (rows[i].ok && strcmp(rows[i].scenario, "rtt") == 0 &&
                                    strcmp(rows[i].transport, names[k]) == 0)
                                        fprintf(f, "\"%s\" %.3f %.3f %.3f\n", names[k],
                                                rows[i].rtt.p50 / 1e3, rows[i].rtt.p90 / 1e3,
                                                rows[i].rtt.p99 / 1e3);
                fclose(f);
        }
        if (!ran("rtt"))
                goto stream;
        snprintf(path, sizeof(path), "%s/rtt.dat", dir);
        f = fopen(path, "we");
        if (!f)
                return -1;
        fprintf(f, "name p50 p90 p99 p99.9\n");
        for (size_t i = 0; i < nrows; i++)
                if (rows[i].ok && strcmp(rows[i].scenario, "rtt") == 0)
                        fprintf(f, "\"%s %s\" %.3f %.3f %.3f %.3f\n", rows[i].transport,
                                strcmp(rows[i].transport, "cache-line") == 0
                                        ? "(floor)"
                                        : mode_names[rows[i].mode],
                                rows[i].rtt.p50 / 1e3, rows[i].rtt.p90 / 1e3, rows[i].rtt.p99 / 1e3,
                                rows[i].rtt.p999 / 1e3);
        fclose(f);

stream:
        for (int mb = 0; mb < 2 && ran("stream"); mb++) {
                snprintf(path, sizeof(path), "%s/stream-%s.dat", dir, mb ? "mbs" : "msgs");
                f = fopen(path, "we");
                if (!f)
                        return -1;
                fprintf(f, "size");
                for (size_t t = 0; t < 6; t++)
                        fprintf(f, " %s", transports[t]);
                fprintf(f, "\n");
                for (size_t s = 0; s < 4; s++) {
                        fprintf(f, "%zu", sizes[s]);
                        for (size_t t = 0; t < 6; t++) {
                                const struct row *r =
                                        row_find("stream", transports[t], sizes[s], 1, 1);

                                if (r)
                                        fprintf(f, " %.1f",
                                                mb ? r->msgs * (double)sizes[s] / 1e6 : r->msgs);
                                else
                                        fprintf(f, " NaN");
                        }
                        fprintf(f, "\n");
                }
                fclose(f);
        }

        /* The matrix as gnuplot "matrix rowheaders columnheaders" files, one per shmbus API. */
        for (int zc = 0; zc < 2 && ran("matrix"); zc++) {
                snprintf(path, sizeof(path), "%s/matrix-%s.dat", dir, zc ? "zero-copy" : "copy");
                f = fopen(path, "we");
                if (!f)
                        return -1;
                fprintf(f, "ring");
                for (size_t s = 0; s < MATRIX_SIZES; s++)
                        fprintf(f, " %zu", matrix_sizes[s]);
                fprintf(f, "\n");
                for (size_t c = 0; c < MATRIX_CAPS; c++) {
                        fprintf(f, "%zuK", matrix_caps[c] >> 10);
                        for (size_t s = 0; s < MATRIX_SIZES; s++) {
                                const struct row *r =
                                        matrix_find(zc ? "shmbus-zero-copy" : "shmbus",
                                                    matrix_sizes[s], matrix_caps[c]);

                                fprintf(f, r ? " %.3f" : " NaN", r ? r->ratio : 0.0);
                        }
                        fprintf(f, "\n");
                }
                fclose(f);
        }
        return 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

static bool wanted(const char *only, const char *what) {
        size_t n = strlen(what);

        if (!only)
                return true;
        for (const char *p = only; (p = strstr(p, what)); p += n)
                if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
                        return true;
        return false;
}

static void usage(FILE *f) {
        fprintf(f, "Usage: shmbus-bench [--quick] [--out DIR] "
                   "[--only rtt,sleep,stream,events,fanin,fanout,batch,matrix]\n"
                   "                    [--ring BYTES] [--size BYTES] [--iceoryx] "
                   "[--shmbusd PATH]\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"quick", no_argument, NULL, 'q'},
                {"out", required_argument, NULL, 'o'},
                {"only", required_argument, NULL, 'O'},
                {"iceoryx", no_argument, NULL, 'i'},
                {"help", no_argument, NULL, 'h'},
                {"ring", required_argument, NULL, 'r'},
                {"size", required_argument, NULL, 's'},
                {"shmbusd", required_argument, NULL, 'D'},
                {0},
        };
        static const size_t sizes[] = {64, 1024, 4096, 65536};
        static const int fans[] = {1, 2, 4, 8};
        const struct link_ops *stream_links[] = {&link_spsc,    &link_shmbus, &link_shmbus_zc,
                                                 &link_iceoryx, &link_unix,   &link_pipe};
        const char *out = NULL, *only = NULL;
        char path[512];
        int c;

        while ((c = getopt_long(argc, argv, "qo:O:ihr:s:D:", opts, NULL)) != -1) {
                switch (c) {
                case 'q':
                        quick = true;
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 'O':
                        only = optarg;
                        break;
                case 'i':
                        with_iceoryx = true;
                        break;
                case 'r':
                        only_ring = strtoul(optarg, NULL, 0);
                        break;
                case 's':
                        only_size = strtoul(optarg, NULL, 0);
                        break;
                case 'D':
                        shmbusd_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (with_iceoryx && !bench_iceoryx_available()) {
                fprintf(stderr, "shmbus-bench: --iceoryx: no iceoryx support built in, or no "
                                "RouDi running; iceoryx rows are skipped\n");
                with_iceoryx = false;
        }

        snprintf(bench_dir, sizeof(bench_dir), "/dev/shm/shmbus-bench-%d", (int)getpid());
        if (mkdir(bench_dir, 0700) < 0) {
                snprintf(bench_dir, sizeof(bench_dir), "/tmp/shmbus-bench-%d", (int)getpid());
                if (mkdir(bench_dir, 0700) < 0) {
                        perror("shmbus-bench: mkdir");
                        return 1;
                }
        }
        /* A role that dies must not leave its peers to the 120 s alarm. */
        signal(SIGPIPE, SIG_IGN);

        printf("shmbus-bench %s: %ld CPUs, %s run, system calls %s\n", shmbus_version(),
               sysconf(_SC_NPROCESSORS_ONLN), quick ? "quick" : "full",
               syscall_tracepoint_id() >= 0 ? "counted" : "not countable here");

        if (wanted(only, "rtt")) {
                printf("\nRound trip, 64 B each way, two processes on CPU 0 and CPU 1 (us):\n"
                       "  %-18s %-16s %9s %9s %9s %9s %10s %7s %7s  %7s\n",
                       "transport", "reader", "p50", "p90", "p99", "p99.9", "max", "floor",
                       "p50/fl", "sc/rt");
                bench_rtt(NULL, WAIT_BUSY);
                for (int m = WAIT_BUSY; m <= WAIT_SLEEP; m++) {
                        bench_rtt(&link_shmbus, (enum wait_mode)m);
                        bench_rtt(&link_iceoryx, (enum wait_mode)m);
                }
                bench_rtt(&link_spsc, WAIT_BUSY);
                bench_rtt(&link_futex, WAIT_SLEEP);
                bench_rtt(&link_unix, WAIT_SLEEP);
                bench_rtt(&link_pipe, WAIT_SLEEP);
        }
        if (wanted(only, "sleep")) {
                printf("\nSleep path, 64 B round trip, reader always sleeps; the reply held back "
                       "by the delay, which is taken out (us):\n"
                       "  %-18s %9s %9s %9s %9s %9s %9s  %s\n",
                       "transport", "delay", "", "p50", "p90", "p99", "p99.9", "p50/futex");
                bench_sleep(0);
                bench_sleep(100000);
        }
        if (wanted(only, "stream")) {
                printf("\nOne-way streaming, one publisher and one subscriber on CPU 0 and CPU 1:\n"
                       "  %-18s %-16s %6s %3s %3s %12s %10s  %-19s %7s\n",
                       "transport", "reader", "size", "pub", "sub", "msg/s", "MB/s", "ratio",
                       "sc/msg");
                for (size_t s = 0; s < 4; s++)
                        for (size_t t = 0; t < 6; t++)
                                bench_stream("stream", stream_links[t],
                                             stream_links[t] == &link_spsc    ? WAIT_BUSY
                                             : syscall_based(stream_links[t]) ? WAIT_SLEEP
                                                                              : WAIT_SPIN,
                                             sizes[s], 1, 1, "spsc-ring");
        }
        if (wanted(only, "events"))
                bench_events();
        if (wanted(only, "fanin")) {
                printf("\nFan-in, N publishers -> 1 subscriber, 64 B, processes not pinned "
                       "(N + 1 processes on %ld CPUs: oversubscribed from N = 2 on 2 CPUs):\n",
                       sysconf(_SC_NPROCESSORS_ONLN));
                for (size_t n = 0; n < 4; n++) {
                        bench_stream("fanin", &link_pipe, WAIT_SLEEP, 64, fans[n], 1, NULL);
                        bench_stream("fanin", &link_shmbus, WAIT_SPIN, 64, fans[n], 1, "pipe");
                }
        }
        if (wanted(only, "fanout")) {
                printf("\nFan-out, 1 publisher -> N subscribers, 64 B, processes not pinned "
                       "(msg/s published; each is delivered N times; N + 1 processes on %ld "
                       "CPUs):\n",
                       sysconf(_SC_NPROCESSORS_ONLN));
                for (size_t n = 0; n < 4; n++) {
                        bench_stream("fanout", &link_unix, WAIT_SLEEP, 64, 1, fans[n], NULL);
                        bench_stream("fanout", &link_iceoryx, WAIT_SPIN, 64, 1, fans[n],
                                     "unix-socket");
                        bench_stream("fanout", &link_shmbus, WAIT_SPIN, 64, 1, fans[n],
                                     "unix-socket");
                }
        }
        if (wanted(only, "batch")) {
                printf("\nBatches of 32, one publisher and one subscriber on CPU 0 and CPU 1, "
                       "against an SPSC ring that publishes its indices every 32 messages:\n"
                       "  %-18s %-16s %6s %3s %3s %12s %10s  %-19s %7s\n",
                       "transport", "reader", "size", "pub", "sub", "msg/s", "MB/s", "ratio",
                       "sc/msg");
                for (size_t s = 0; s < 3; s++) {
                        static const size_t batch_sizes[] = {64, 256, 1024};

                        bench_stream("batch", &link_spsc32, WAIT_BUSY, batch_sizes[s], 1, 1, NULL);
                        bench_stream("batch", &link_spsc, WAIT_BUSY, batch_sizes[s], 1, 1,
                                     "spsc-ring-32");
                        bench_stream("batch", &link_shmbus, WAIT_SPIN, batch_sizes[s], 1, 1,
                                     "spsc-ring-32");
                        bench_stream("batch", &link_shmbus_batch, WAIT_SPIN, batch_sizes[s], 1, 1,
                                     "spsc-ring-32");
                }
        }
        if (wanted(only, "matrix"))
                bench_matrix();
        rmdir(bench_dir);

        if (out) {
                mkdir(out, 0755);
                snprintf(path, sizeof(path), "%s/results.json", out);
                if (write_json(path) < 0 || write_plot_data(out) < 0) {
                        fprintf(stderr, "shmbus-bench: cannot write results to %s\n", out);
                        return 1;
                }
                printf("\nResults: %s\n", path);
        }
        for (size_t i = 0; i < nrows; i++)
                if (!rows[i].ok && strcmp(rows[i].note, "failed") == 0)
                        return 1;
        return 0;
}
