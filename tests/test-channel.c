/* SPDX-License-Identifier: MIT */
/*
 * Channels as files, across processes (fork): creation and validation, the
 * read-only data mapping of subscribers, N publishers x M subscribers with
 * exactly-once in-order delivery, overwrite loss accounting under real
 * concurrency, cross-process futex wake-up, and ENOSPC at create time. Also
 * the API's edges: NULL getters, static error strings, the version, every
 * allocation failure of the setup calls, and how a client reads a reply.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "shmbus.h"

#include "alloc.h"
#include "channel.h"
#include "stats.h"
#include "testutil.h"

static char *dir;

static shmbus_opts *opts_make(uint64_t cap, uint32_t max_msg, int policy) {
        shmbus_opts *o;

        CU_ASSERT_EQUAL_FATAL(shmbus_opts_new(&o), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, cap), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_msg(o, max_msg), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_policy(o, policy), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_subscribers(o, 8), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_publishers(o, 8), 0);
        return o;
}

static void test_create_open(void) {
        shmbus_channel *c = NULL, *c2 = NULL;
        shmbus_opts *o;
        char path[512];

        CU_ASSERT_EQUAL(shmbus_opts_new(&o), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, 3000), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, 1 << 12), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_policy(o, 5), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_subscribers(o, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_msg(o, 4096), 0);
        /* max_msg above a quarter of the ring is refused when the channel is made. */
        CU_ASSERT_EQUAL(shmbus_channel_create(dir, "toobig", o, 0600, &c), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_msg(o, 1024), 0);

        CU_ASSERT_EQUAL(shmbus_channel_create(dir, "", o, 0600, &c), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_channel_create(dir, ".hidden", o, 0600, &c), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_channel_create(dir, "a/b", o, 0600, &c), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_channel_create(dir, "sp ace", o, 0600, &c), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_channel_create(
                                dir,
                                "x234567890123456789012345678901234567890123456789012345678901234",
                                o, 0600, &c),
                        -EINVAL);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "nope", 0, &c), -ENOENT);

        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "chan-1", o, 0640, &c), 0);
        CU_ASSERT_STRING_EQUAL(shmbus_channel_name(c), "chan-1");
        CU_ASSERT_EQUAL(shmbus_channel_max_msg(c), 1024);
        CU_ASSERT_EQUAL(shmbus_channel_create(dir, "chan-1", o, 0600, &c2), -EEXIST);

        /* The umask does not decide the mode. */
        struct stat st;
        snprintf(path, sizeof(path), "%s/chan-1.data", dir);
        CU_ASSERT_EQUAL(stat(path, &st), 0);
        CU_ASSERT_EQUAL(st.st_mode & 07777, 0640);
        CU_ASSERT_EQUAL(st.st_size, 4096);

        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "chan-1", SHMBUS_OPEN_INSPECT, &c2), 0);
        shmbus_sub *s = NULL;
        shmbus_pub *p = NULL;
        CU_ASSERT_EQUAL(shmbus_sub_new(c2, &s), -EACCES);
        CU_ASSERT_EQUAL(shmbus_pub_new(c2, &p), -EACCES);
        c2 = shmbus_channel_unref(c2);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "chan-1", 0, &c2), 0);
        CU_ASSERT_EQUAL(shmbus_pub_new(c2, &p), -EACCES); /* subscribe-only mapping */
        CU_ASSERT_EQUAL(shmbus_sub_new(c2, &s), 0);
        s = shmbus_sub_free(s);
        c2 = shmbus_channel_unref(c2);

        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "chan-1"), 0);
        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "chan-1"), -ENOENT);
        /* Still mapped: the channel works until the last reference goes. */
        CU_ASSERT_EQUAL(shmbus_pub_new(c, &p), 0);
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "x", 1, 0), 0);
        CU_ASSERT_EQUAL(shmbus_pub_send(p, NULL, 1, 0), -EINVAL);
        p = shmbus_pub_free(p);
        c = shmbus_channel_unref(c);
        shmbus_opts_free(o);
        CU_ASSERT_STRING_EQUAL(shmbus_strerror(-ESTALE), "borrowed message was overwritten");
        CU_ASSERT_PTR_NOT_NULL(shmbus_version());
}

static void write_file(const char *name, const void *buf, size_t len) {
        char path[512];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_EQUAL(write(fd, buf, len), (ssize_t)len);
        close(fd);
}

/* Files that are not channels, or are damaged ones, are refused without a crash. */
static void test_corrupt_files(void) {
        static uint8_t junk[1 << 16];
        shmbus_channel *c = NULL;
        shmbus_opts *o = opts_make(4096, 512, SHMBUS_POLICY_BLOCK);
        char path[512];
        int fd;

        for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (uint8_t)(i * 131 + 7);
        write_file("junk.ctl", junk, sizeof(junk));
        write_file("junk.data", junk, 4096);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "junk", 0, &c), -EPROTO);
        write_file("short.ctl", junk, 10);
        write_file("short.data", junk, 10);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "short", 0, &c), -EPROTO);

        /*
         * A real channel whose files a member grew still opens (only the sizes
         * its header gives are mapped); one whose data file shrank does not.
         */
        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "trunc", o, 0600, &c), 0);
        c = shmbus_channel_unref(c);
        snprintf(path, sizeof(path), "%s/trunc.data", dir);
        fd = open(path, O_RDWR);
        CU_ASSERT_EQUAL(ftruncate(fd, 8192), 0);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "trunc", 0, &c), 0);
        c = shmbus_channel_unref(c);
        snprintf(path, sizeof(path), "%s/trunc.ctl", dir);
        CU_ASSERT_EQUAL(truncate(path, 1 << 20), 0);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "trunc", 0, &c), 0);
        c = shmbus_channel_unref(c);
        CU_ASSERT_EQUAL(ftruncate(fd, 2048), 0);
        close(fd);
        CU_ASSERT_EQUAL(shmbus_channel_open(dir, "trunc", 0, &c), -EPROTO);
        shmbus_opts_free(o);
}

/* A subscriber's view of the data is read-only: writing to it faults. */
static void test_subscriber_cannot_write(void) {
        shmbus_opts *o = opts_make(4096, 512, SHMBUS_POLICY_BLOCK);
        shmbus_channel *c;
        pid_t pid;

        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "ro", o, 0600, &c), 0);
        c = shmbus_channel_unref(c);
        pid = fork();
        if (pid == 0) {
                shmbus_channel *sc;

                if (shmbus_channel_open(dir, "ro", 0, &sc) < 0)
                        _exit(2);
                signal(SIGSEGV, SIG_DFL); /* not the sanitizer's handler: die of it */
                ((volatile uint8_t *)sc->data_map)[0] = 1; /* must fault */
                _exit(0);
        }
        CU_ASSERT_EQUAL(test_wait(pid), 128 + SIGSEGV);
        shmbus_opts_free(o);
}

/* ---- N publishers x M subscribers in separate processes ----------------------------------- */

#define MP_PUBS 3
#define MP_SUBS 3
#define MP_MSGS 30000

static int child_sub(const char *name, int ready_fd, uint32_t pubs, uint32_t msgs, bool overwrite,
                     bool slow) {
        shmbus_channel *c;
        shmbus_sub *s;
        uint32_t next[16] = {0};
        uint64_t total = 0;
        int64_t deadline = time(NULL) + 60;
        static uint8_t buf[65536];

        if (shmbus_channel_open(dir, name, 0, &c) < 0 || shmbus_sub_new(c, &s) < 0)
                return 10;
        if (write(ready_fd, "r", 1) != 1)
                return 11;
        for (;;) {
                ssize_t n = shmbus_sub_recv(s, buf, sizeof(buf), 1000);
                uint32_t id, seq;

                if (time(NULL) > deadline)
                        return 12;
                if (n == -ETIMEDOUT)
                        continue;
                if (n < 0)
                        return 13;
                if (!tmsg_check(buf, (size_t)n, &id, &seq) || id >= pubs)
                        return 14; /* torn or forged */
                if (overwrite ? seq < next[id] : seq != next[id])
                        return 15; /* duplicate or out of order */
                next[id] = seq + 1;
                total++;
                if (slow && total % 64 == 0) {
                        struct timespec ts = {0, 200000};
                        nanosleep(&ts, NULL);
                }
                if (overwrite ? next[0] == msgs : total == (uint64_t)pubs * msgs)
                        break;
        }
        if (shmbus_sub_received(s) != total)
                return 16;
        if (overwrite ? shmbus_sub_received(s) + shmbus_sub_lost(s) != msgs : shmbus_sub_lost(s))
                return 17; /* a loss not accounted for, or any loss on a lossless channel */
        shmbus_sub_free(s);
        shmbus_channel_unref(c);
        return 0;
}

static int child_pub(const char *name, uint32_t id, uint32_t msgs, size_t max) {
        shmbus_channel *c;
        shmbus_pub *p;
        static uint8_t buf[65536];

        if (shmbus_channel_open(dir, name, SHMBUS_OPEN_PUBLISH, &c) < 0 ||
            shmbus_pub_new(c, &p) < 0)
                return 20;
        for (uint32_t seq = 0; seq < msgs; seq++) {
                size_t len = tmsg_len(id, seq, max);
                int r;

                if (seq % 2) {
                        tmsg_fill(buf, len, id, seq);
                        r = shmbus_pub_send(p, buf, len, 30000);
                } else {
                        void *dst;

                        r = shmbus_pub_claim(p, len, 30000, &dst);
                        if (r == 0) {
                                tmsg_fill(dst, len, id, seq);
                                r = shmbus_pub_commit(p);
                        }
                }
                if (r != 0)
                        return 21;
        }
        shmbus_pub_free(p);
        shmbus_channel_unref(c);
        return 0;
}

static void run_mp(const char *name, uint64_t cap, uint32_t max_msg, int policy, uint32_t pubs,
                   uint32_t subs, uint32_t msgs) {
        shmbus_opts *o = opts_make(cap, max_msg, policy);
        shmbus_channel *c;
        pid_t pids[16];
        int fds[2];
        char ch;

        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, name, o, 0600, &c), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        for (uint32_t i = 0; i < subs; i++) {
                pids[i] = fork();
                if (pids[i] == 0)
                        _exit(child_sub(name, fds[1], pubs, msgs, policy == SHMBUS_POLICY_OVERWRITE,
                                        i == 0));
        }
        for (uint32_t i = 0; i < subs; i++)
                CU_ASSERT_EQUAL(read(fds[0], &ch, 1), 1);
        for (uint32_t i = 0; i < pubs; i++) {
                pids[subs + i] = fork();
                if (pids[subs + i] == 0)
                        _exit(child_pub(name, i, msgs, max_msg));
        }
        for (uint32_t i = 0; i < subs + pubs; i++) {
                int rc = test_wait(pids[i]);

                if (rc != 0)
                        fprintf(stderr, "child %u (%s) exited %d\n", i, i < subs ? "sub" : "pub",
                                rc);
                CU_ASSERT_EQUAL(rc, 0);
        }
        close(fds[0]);
        close(fds[1]);
        shmbus_channel_unref(c);
        shmbus_opts_free(o);
}

static void test_mp_block(void) {
        run_mp("mp-block", 16384, 512, SHMBUS_POLICY_BLOCK, MP_PUBS, MP_SUBS, MP_MSGS);
}

static void test_mp_overwrite(void) {
        run_mp("mp-over", 4096, 512, SHMBUS_POLICY_OVERWRITE, 1, 2, 200000);
}

/* A reader asleep on the futex (no spinning) in one process, woken from another. */
static void test_mp_wake(void) {
        shmbus_opts *o = opts_make(4096, 512, SHMBUS_POLICY_BLOCK);
        shmbus_channel *c;
        shmbus_sub *s;
        shmbus_pub *p;
        char buf[64];
        pid_t pid;
        struct timespec t0, t1;

        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "wake", o, 0600, &c), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(c, &s), 0);
        shmbus_sub_set_spin(s, 0);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), -EAGAIN);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 20), -ETIMEDOUT);
        pid = fork();
        if (pid == 0) {
                struct timespec ts = {0, 50 * 1000000};

                nanosleep(&ts, NULL);
                if (shmbus_pub_new(c, &p) < 0 || shmbus_pub_send(p, "hello", 5, 0) < 0)
                        _exit(1);
                _exit(0);
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 10000), 5);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CU_ASSERT_EQUAL(memcmp(buf, "hello", 5), 0);
        CU_ASSERT_EQUAL(test_wait(pid), 0);
        /* Woken well before the 10 s timeout (and before the 200 ms re-check slice). */
        CU_ASSERT((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 190);

        /* A message bigger than the buffer stays for the next, larger read. */
        shmbus_channel *pc;
        CU_ASSERT_EQUAL_FATAL(shmbus_channel_open(dir, "wake", SHMBUS_OPEN_PUBLISH, &pc), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(pc, &p), 0);
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "0123456789", 10, 0), 0);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, 4, 0), -EMSGSIZE);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), 10);
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(pc);
        shmbus_channel_unref(c);
        shmbus_opts_free(o);
}

/* A full file system fails at create time with ENOSPC and leaves nothing behind. */
static void test_enospc(void) {
        char small[600], path[700];
        shmbus_opts *o = opts_make(1 << 20, 512, SHMBUS_POLICY_BLOCK);
        shmbus_channel *c = NULL;
        struct stat st;

        snprintf(small, sizeof(small), "%s/small", dir);
        CU_ASSERT_EQUAL_FATAL(mkdir(small, 0700), 0);
        if (mount("shmbus-test", small, "tmpfs", 0, "size=256k") < 0) {
                fprintf(stderr, "\n  (no tmpfs mount here: %s; ENOSPC case not run)\n",
                        strerror(errno));
                shmbus_opts_free(o);
                return;
        }
        CU_ASSERT_EQUAL(shmbus_channel_create(small, "big", o, 0600, &c), -ENOSPC);
        snprintf(path, sizeof(path), "%s/big.ctl", small);
        CU_ASSERT_EQUAL(stat(path, &st), -1);
        snprintf(path, sizeof(path), "%s/big.data", small);
        CU_ASSERT_EQUAL(stat(path, &st), -1);
        /* A channel that fits still works there. */
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, 1 << 16), 0);
        CU_ASSERT_EQUAL(shmbus_channel_create(small, "fits", o, 0600, &c), 0);
        shmbus_channel_unref(c);
        umount2(small, MNT_DETACH);
        shmbus_opts_free(o);
}

/* Getters take NULL; error strings are static; the headers and the library agree on the version. */
static void test_api_edges(void) {
        char v[64];

        CU_ASSERT_PTR_NULL(shmbus_channel_name(NULL));
        CU_ASSERT_EQUAL(shmbus_channel_max_msg(NULL), 0);
        CU_ASSERT_EQUAL(shmbus_sub_lost(NULL), 0);
        CU_ASSERT_EQUAL(shmbus_sub_received(NULL), 0);
        CU_ASSERT_EQUAL(shmbus_sub_set_spin(NULL, 10), -EINVAL);

        /* The same pointer twice, untouched by strerror() in between: a static string. */
        const char *e = shmbus_strerror(-EACCES);
        CU_ASSERT_STRING_EQUAL(strerror(ENOENT), "No such file or directory");
        CU_ASSERT_PTR_EQUAL(shmbus_strerror(-EACCES), e);
        CU_ASSERT_STRING_EQUAL(e, "Permission denied");
        CU_ASSERT_STRING_EQUAL(shmbus_strerror(-ESTALE), "borrowed message was overwritten");
        CU_ASSERT_STRING_EQUAL(shmbus_strerror(-4000), "unknown error");
        CU_ASSERT_STRING_EQUAL(shmbus_strerror(INT_MIN), "unknown error");
        CU_ASSERT_STRING_EQUAL(shmbus_strerror(7), "unknown error");
        CU_ASSERT_STRING_EQUAL(shmbus_strerror(0), "success");

        snprintf(v, sizeof(v), "%d.%d.%d", SHMBUS_VERSION_MAJOR, SHMBUS_VERSION_MINOR,
                 SHMBUS_VERSION_PATCH);
        CU_ASSERT_STRING_EQUAL(v, SHMBUS_VERSION_STRING);
        CU_ASSERT_STRING_EQUAL(shmbus_version(), SHMBUS_VERSION_STRING);
}

/*
 * A daemon that answers every request with @reply, one connection at a time,
 * in a child process; kill it with fake_daemon_stop().
 */
static pid_t fake_daemon(const char *path, const char *reply) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int lfd;
        pid_t pid;

        CU_ASSERT_FATAL(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        unlink(path);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        CU_ASSERT_FATAL(lfd >= 0);
        CU_ASSERT_EQUAL_FATAL(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        CU_ASSERT_EQUAL_FATAL(listen(lfd, 16), 0);
        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                char buf[4096];

                for (;;) {
                        int fd = accept(lfd, NULL, NULL);

                        if (fd < 0)
                                _exit(1);
                        while (recv(fd, buf, sizeof(buf), 0) > 0)
                                send(fd, reply, strlen(reply), MSG_NOSIGNAL);
                        close(fd);
                }
        }
        close(lfd);
        return pid;
}

static void fake_daemon_stop(pid_t pid, const char *path) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        unlink(path);
}

/* A reply is read by the one parser of the protocol: a failure without an errno is -EPROTO. */
static void test_reply_status(void) {
        static const struct {
                const char *reply;
                int expect;
        } cases[] = {
                {"{\"v\":1,\"ok\":true}", 0},
                {"{\"v\":1,\"ok\":false,\"error\":\"EACCES\",\"errno\":13}", -EACCES},
                {"{\"v\":1,\"ok\":false,\"errno\":0}", -EPROTO},
                {"{\"v\":1,\"ok\":false}", -EPROTO},
                {"{\"v\":1}", -EPROTO},
                {"not json", -EPROTO},
        };
        char path[600];

        snprintf(path, sizeof(path), "%s/fake.sock", dir);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                shmbus_client *cl = NULL;
                pid_t pid = fake_daemon(path, cases[i].reply);

                CU_ASSERT_EQUAL(shmbus_client_new(path, &cl), cases[i].expect);
                CU_ASSERT_EQUAL(shmbus_client_delete(cl, "x"), cl ? 0 : -EINVAL);
                shmbus_client_free(cl);
                fake_daemon_stop(pid, path);
        }
}

/*
 * Fail the first, second, third ... allocation of @call until it succeeds.
 * Every failure must be a clean -ENOMEM that the injected fault caused (ASan's
 * leak check at exit says whether it left anything behind); the success must
 * have made fewer allocations than were allowed, so every one was failed once.
 */
#define FAULT_LOOP(call, undo)                                                             \
        do {                                                                               \
                for (unsigned n_ = 1;; n_++) {                                             \
                        int r_;                                                            \
                                                                                           \
                        CU_ASSERT_FATAL(n_ < 100);                                         \
                        atomic_store(&shmbus__fault_alloc_nth, n_);                        \
                        r_ = (call);                                                       \
                        if (r_ == -ENOMEM) {                                               \
                                CU_ASSERT_EQUAL(atomic_load(&shmbus__fault_alloc_nth), 0); \
                                continue;                                                  \
                        }                                                                  \
                        CU_ASSERT_EQUAL(r_, 0);                                            \
                        CU_ASSERT_NOT_EQUAL(atomic_load(&shmbus__fault_alloc_nth), 0);     \
                        CU_ASSERT(n_ > 1);                                                 \
                        atomic_store(&shmbus__fault_alloc_nth, 0);                         \
                        undo;                                                              \
                        break;                                                             \
                }                                                                          \
        } while (0)

static void test_alloc_faults(void) {
        shmbus_opts *o = NULL;
        shmbus_channel *c = NULL, *c2 = NULL;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        shmbus_client *cl = NULL;
        char path[600];
        pid_t pid;

        FAULT_LOOP(shmbus_opts_new(&o), o = shmbus_opts_free(o));

        o = opts_make(4096, 512, SHMBUS_POLICY_BLOCK);
        /* One slot each: a failed join that kept its slot would make the last call -EUSERS. */
        CU_ASSERT_EQUAL(shmbus_opts_set_max_publishers(o, 1), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_max_subscribers(o, 1), 0);
        FAULT_LOOP(shmbus_channel_create(dir, "faults", o, 0600, &c), c = shmbus_channel_unref(c);
                   CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "faults"), 0));
        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "faults", o, 0600, &c2), 0);
        FAULT_LOOP(shmbus_channel_open(dir, "faults", SHMBUS_OPEN_PUBLISH, &c), (void)0);
        FAULT_LOOP(shmbus_pub_new(c, &p), p = shmbus_pub_free(p));
        FAULT_LOOP(shmbus_sub_new(c, &s), s = shmbus_sub_free(s));
        CU_ASSERT_EQUAL(shmbus_pub_new(c, &p), 0);
        CU_ASSERT_EQUAL(shmbus_sub_new(c, &s), 0);
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(c);
        shmbus_channel_unref(c2);
        shmbus_opts_free(o);

        snprintf(path, sizeof(path), "%s/fake.sock", dir);
        pid = fake_daemon(path, "{\"v\":1,\"ok\":true}");
        FAULT_LOOP(shmbus_client_new(path, &cl), cl = shmbus_client_free(cl));
        fake_daemon_stop(pid, path);
}

/*
 * A member shrinks a channel's files under the others (issue 15, item 1).
 * Each case runs in a child, so that a SIGBUS that is not survived fails the
 * test instead of ending it: the child exits 0 only if every call it makes
 * after the truncation returns -EBADFD and nothing kills it.
 */
static int shrink_child(const char *name, const char *file, off_t len) {
        shmbus_opts *o = opts_make(4096, 512, SHMBUS_POLICY_BLOCK);
        shmbus_channel *pc = NULL, *sc = NULL;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char path[512], buf[512];
        int fd, bad = 0;

        if (shmbus_channel_create(dir, name, o, 0600, &pc) < 0 ||
            shmbus_channel_open(dir, name, 0, &sc) < 0 || shmbus_pub_new(pc, &p) < 0 ||
            shmbus_sub_new(sc, &s) < 0)
                return 10;
        for (int i = 0; i < 3; i++)
                bad |= shmbus_pub_send(p, "hello", 5, 0) != 0;
        bad |= shmbus_sub_recv(s, buf, sizeof(buf), 0) != 5;
        snprintf(path, sizeof(path), "%s/%s.%s", dir, name, file);
        fd = open(path, O_RDWR);
        if (fd < 0 || ftruncate(fd, len) < 0)
                return 11;
        close(fd);
        /* Every call now meets the missing pages, survives, and says so. */
        if (shmbus_sub_recv(s, buf, sizeof(buf), 0) != -EBADFD)
                bad |= 2;
        if (shmbus_sub_recv(s, buf, sizeof(buf), 50) != -EBADFD)
                bad |= 4;
        if (shmbus_pub_send(p, "hello", 5, 0) != -EBADFD)
                bad |= 8;
        if (shmbus_pub_send(p, "hello", 5, 50) != -EBADFD)
                bad |= 16;
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(pc);
        shmbus_channel_unref(sc);
        shmbus_opts_free(o);
        shmbus_channel_unlink(dir, name);
        return bad;
}

static void test_shrunk_files(void) {
        static const struct {
                const char *file;
                off_t len;
        } cases[] = {{"ctl", 0}, {"data", 0}};

        for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char name[32];
                pid_t pid;
                int st;

                snprintf(name, sizeof(name), "shrink%u", i);
                pid = fork();
                if (pid == 0)
                        _exit(shrink_child(name, cases[i].file, cases[i].len));
                CU_ASSERT_FATAL(pid > 0);
                CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                        fprintf(stderr, "\n  %s truncated to %lld: child %s %d\n", cases[i].file,
                                (long long)cases[i].len, WIFEXITED(st) ? "exited" : "killed by",
                                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
                CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
}

/* The library's SIGBUS handler leaves other faults alone: they still kill. */
static void test_foreign_sigbus(void) {
        shmbus_opts *o = opts_make(4096, 512, SHMBUS_POLICY_BLOCK);
        shmbus_channel *c = NULL;
        char path[512];
        pid_t pid;
        int st;

        /* Install the handler in this process: children inherit it. */
        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "foreign", o, 0600, &c), 0);
        snprintf(path, sizeof(path), "%s/plain", dir);
        pid = fork();
        if (pid == 0) {
                int fd = open(path, O_RDWR | O_CREAT, 0600);
                volatile char *m;

                if (fd < 0 || ftruncate(fd, 4096) < 0)
                        _exit(10);
                m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (m == MAP_FAILED || ftruncate(fd, 0) < 0)
                        _exit(11);
                m[0] = 1;
                _exit(12);
        }
        CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
        /* Killed by SIGBUS, or (under a sanitizer, whose handler was there first) reported. */
        CU_ASSERT(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 12));
        CU_ASSERT(!WIFSIGNALED(st) || WTERMSIG(st) == SIGBUS || WTERMSIG(st) == SIGABRT);
        shmbus_channel_unref(c);
        shmbus_channel_unlink(dir, "foreign");
        unlink(path);
        shmbus_opts_free(o);
}

/*
 * shmbus.h promises that claimed and peeked payloads start 16-byte aligned, for
 * every length and across the ring's wrap (a service may store any scalar,
 * max_align_t included, at the start of a message without copying it).
 */
static void test_payload_alignment(void) {
        shmbus_opts *o = opts_make(4096, 1024, SHMBUS_POLICY_OVERWRITE);
        shmbus_channel *c;
        shmbus_pub *p;
        shmbus_sub *s;

        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "aligned", o, 0600, &c), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(c, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(c, &s), 0);
        /* Lengths of every residue mod 16, for several laps of a 4 KiB ring. */
        for (size_t i = 0; i < 600; i++) {
                size_t len = 1 + (i * 37) % 300;
                const void *got;
                size_t got_len;
                void *buf;

                CU_ASSERT_EQUAL_FATAL(shmbus_pub_claim(p, len, 0, &buf), 0);
                CU_ASSERT_EQUAL((uintptr_t)buf % 16, 0);
                memset(buf, (int)i, len);
                CU_ASSERT_EQUAL(shmbus_pub_commit(p), 0);
                CU_ASSERT_EQUAL_FATAL(shmbus_sub_peek(s, &got, &got_len, 0), 0);
                CU_ASSERT_EQUAL(got_len, len);
                CU_ASSERT_EQUAL((uintptr_t)got % 16, 0);
                CU_ASSERT_EQUAL(shmbus_sub_release(s), 0);
        }
        CU_ASSERT(alignof(max_align_t) <= 16);
        shmbus_sub_free(s);
        shmbus_pub_free(p);
        shmbus_channel_unref(c);
        shmbus_opts_free(o);
        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "aligned"), 0);
}

/*
 * A subscriber lapped on an overwrite channel reports how far behind it really is
 * (more than the capacity) and that it was lapped; it used to read as exactly one
 * ring behind, which hid how much it had missed.
 */
static void test_lapped_lag(void) {
        shmbus_opts *o = opts_make(4096, 64, SHMBUS_POLICY_OVERWRITE);
        const cJSON *subs, *e;
        char msg[48] = {0};
        shmbus_channel *c;
        cJSON *j = cJSON_CreateObject();
        shmbus_pub *p;
        shmbus_sub *s;

        CU_ASSERT_EQUAL_FATAL(shmbus_channel_create(dir, "lapped", o, 0600, &c), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(c, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(c, &s), 0);
        /* 64-byte records: 200 of them are 12 800 bytes, three rings and more. */
        for (int i = 0; i < 200; i++)
                CU_ASSERT_EQUAL(shmbus_pub_send(p, msg, sizeof(msg), 0), 0);
        shmbus__stats_json(j, &c->ring, "lapped", 0, true);
        subs = cJSON_GetObjectItemCaseSensitive(j, "subscribers");
        e = cJSON_GetArrayItem(subs, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(e, "lag_bytes")->valuedouble, 12800);
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "lapped")));
        CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(j, "max_lag_bytes")->valuedouble, 12800);
        cJSON_Delete(j);
        /* Caught up, it is neither behind nor lapped. */
        while (shmbus_sub_recv(s, msg, sizeof(msg), 0) >= 0)
                ;
        j = cJSON_CreateObject();
        shmbus__stats_json(j, &c->ring, "lapped", 0, true);
        e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "subscribers"), 0);
        CU_ASSERT_EQUAL(cJSON_GetObjectItemCaseSensitive(e, "lag_bytes")->valuedouble, 0);
        CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e, "lapped")));
        cJSON_Delete(j);
        shmbus_sub_free(s);
        shmbus_pub_free(p);
        shmbus_channel_unref(c);
        shmbus_opts_free(o);
        CU_ASSERT_EQUAL(shmbus_channel_unlink(dir, "lapped"), 0);
}

int main(void) {
        static const struct test_case cases[] = {
                {"create, open, names, modes, unlink", test_create_open},
                {"corrupt and truncated files are refused", test_corrupt_files},
                {"subscriber data mapping is read-only", test_subscriber_cannot_write},
                {"processes: 3 publishers x 3 subscribers, block, exactly once", test_mp_block},
                {"processes: overwrite, every loss accounted, nothing torn", test_mp_overwrite},
                {"processes: futex wake, EMSGSIZE keeps the message", test_mp_wake},
                {"ENOSPC at create, never SIGBUS later", test_enospc},
                {"NULL getters, static error strings, one version", test_api_edges},
                {"a client reads replies with the protocol's one parser", test_reply_status},
                {"every allocation failure of a setup call is a clean -ENOMEM", test_alloc_faults},
                {"a member shrinks the files: others get EBADFD, nobody dies", test_shrunk_files},
                {"other SIGBUS faults still kill", test_foreign_sigbus},
                {"payloads are 16-byte aligned, whatever the length and wrap",
                 test_payload_alignment},
                {"a lapped subscriber's lag is its true distance", test_lapped_lag},
                {NULL, NULL},
        };
        int rc;

        dir = test_mkdtemp("channel");
        rc = test_run("channel", cases);
        test_rmtree(dir);
        free(dir);
        return rc;
}
