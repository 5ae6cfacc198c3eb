/* SPDX-License-Identifier: MIT */
/*
 * A bounded soak: for SHMBUS_SOAK_SECONDS (default 120, 30 in sanitizer
 * builds) channels of random geometry and policy are created, used by forked
 * publishers with mixed message sizes (some killed half-way), inspected by
 * short-lived clients, and deleted, over and over. Every message is checked.
 * After a warm-up the daemon's resident memory, its descriptors, the files in
 * the shm directory and our own descriptors are recorded; at the end they
 * must be where they were. A leak per channel, per connection or per dead
 * process shows up as growth over hundreds of cycles.
 */
#undef NDEBUG
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"

struct usage {
        long rss_kib;
        unsigned daemon_fds, files, own_fds;
};

static long rss_kib(pid_t pid) {
        char path[64], line[256];
        long v = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
                        break;
        if (f)
                fclose(f);
        return v;
}

static struct usage usage_of(pid_t d) {
        char path[64];

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)d);
        return (struct usage){
                .rss_kib = rss_kib(d),
                .daemon_fds = test_count_entries(path),
                .files = test_count_entries(shm),
                .own_fds = test_count_entries("/proc/self/fd"),
        };
}

static _Noreturn void publisher(const char *name, uint32_t id, uint32_t count, size_t max) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p;
        uint8_t *buf = malloc(max);

        if (!buf || shmbus_client_new(sock, &c) < 0 ||
            shmbus_client_open(c, name, SHMBUS_OPEN_PUBLISH, NULL, &ch) < 0 ||
            shmbus_pub_new(ch, &p) < 0)
                _exit(10);
        for (uint32_t i = 0; i < count; i++) {
                size_t len = tmsg_len(id, i, max);

                tmsg_fill(buf, len, id, i);
                if (shmbus_pub_send(p, buf, len, 10000) < 0)
                        _exit(11);
        }
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        free(buf);
        _exit(0);
}

/* A short-lived client that looks around and leaves. */
static _Noreturn void inspector(const char *name) {
        shmbus_client *c;
        char req[128], *reply = NULL;

        if (shmbus_client_new(sock, &c) < 0)
                _exit(20);
        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"stat\",\"name\":\"%s\"}", name);
        if (shmbus_client_request(c, "{\"v\":1,\"op\":\"list\"}", &reply) < 0)
                _exit(21);
        free(reply);
        if (shmbus_client_request(c, req, &reply) < 0)
                _exit(22);
        free(reply);
        shmbus_client_free(c);
        _exit(0);
}

struct cycle_result {
        uint64_t msgs;
        bool ok;
};

/* One channel's life: create, two publishers (one maybe killed), an inspector, delete. */
static struct cycle_result cycle(shmbus_client *c, unsigned k) {
        static const uint64_t caps[] = {4096, 16384, 65536, 262144};
        struct cycle_result res = {.ok = true};
        uint64_t cap = caps[rand() % 4];
        uint32_t max = (uint32_t)(cap / 4 < 16384 ? cap / 4 : 16384);
        bool overwrite = rand() % 3 == 0, kill_one = k % 5 == 4;
        uint32_t count = 500 + (uint32_t)(rand() % 1500), next[2] = {0, 0};
        uint8_t *buf = malloc(max);
        shmbus_channel *ch;
        shmbus_opts *o;
        shmbus_sub *s;
        pid_t pubs[2], insp;
        char name[32];
        int done = 0;

        snprintf(name, sizeof(name), "soak-%u", k);
        shmbus_opts_new(&o);
        shmbus_opts_set_capacity(o, cap);
        shmbus_opts_set_max_msg(o, max);
        shmbus_opts_set_policy(o, overwrite ? SHMBUS_POLICY_OVERWRITE : SHMBUS_POLICY_BLOCK);
        int r = shmbus_client_open(c, name, SHMBUS_OPEN_CREATE, o, &ch);
        if (r == 0 && (r = shmbus_sub_new(ch, &s)) < 0)
                shmbus_channel_unref(ch);
        if (r < 0) {
                fprintf(stderr, "\n  %s (capacity %llu, max_msg %u): %s\n", name,
                        (unsigned long long)cap, max, shmbus_strerror(r));
                res.ok = false;
                goto out;
        }
        for (uint32_t i = 0; i < 2; i++) {
                pubs[i] = fork();
                if (pubs[i] == 0)
                        publisher(name, i, count, max);
        }
        insp = fork();
        if (insp == 0)
                inspector(name);
        if (kill_one) {
                sleep_ms(rand() % 5);
                kill(pubs[1], SIGKILL);
        }
        for (;;) {
                ssize_t n = shmbus_sub_recv(s, buf, max, done == 2 ? 0 : 100);
                uint32_t id = 0, seq = 0;

                if (n < 0) {
                        if (done == 2)
                                break; /* both gone and nothing left */
                        /* Quiet for a moment: are the publishers gone? */
                        for (uint32_t i = 0; i < 2; i++)
                                if (pubs[i] && waitpid(pubs[i], NULL, WNOHANG) == pubs[i]) {
                                        pubs[i] = 0;
                                        done++;
                                }
                        continue;
                }
                res.msgs++;
                bool intact = tmsg_check(buf, (size_t)n, &id, &seq);
                if (!intact || id > 1 || (overwrite ? seq < next[id] : seq != next[id])) {
                        fprintf(stderr,
                                "\n  %s (%s, capacity %llu, max_msg %u): %s message of %zd "
                                "bytes, pub %u seq %u, expected seq %u\n",
                                name, overwrite ? "overwrite" : "block", (unsigned long long)cap,
                                max, intact ? "misplaced" : "torn", n, id, seq,
                                id <= 1 ? next[id] : 0);
                        res.ok = false;
                        break;
                }
                next[id] = seq + 1;
        }
        /* Lossless: a publisher that lived to the end delivered every message. */
        if (!overwrite && next[0] != count) {
                fprintf(stderr, "\n  %s: %u of %u messages from publisher 0\n", name, next[0],
                        count);
                res.ok = false;
        }
        if (test_wait(insp) != 0) {
                fprintf(stderr, "\n  %s: the inspector failed\n", name);
                res.ok = false;
        }
        for (uint32_t i = 0; i < 2; i++)
                if (pubs[i]) {
                        kill(pubs[i], SIGKILL);
                        test_wait(pubs[i]);
                }
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        if ((r = shmbus_client_delete(c, name)) < 0) {
                fprintf(stderr, "\n  %s: delete: %s\n", name, shmbus_strerror(r));
                res.ok = false;
        }
out:
        shmbus_opts_free(o);
        free(buf);
        return res;
}

static unsigned soak_seconds(void) {
        const char *e = getenv("SHMBUS_SOAK_SECONDS");
        const char *san = getenv("SHMBUS_SANITIZED");

        if (e && atoi(e) > 0)
                return (unsigned)atoi(e);
        return san && strcmp(san, "1") == 0 ? 30 : 120;
}

static void test_soak(void) {
        unsigned secs = soak_seconds(), cycles = 0, warm = 0;
        bool sanitized = getenv("SHMBUS_SANITIZED") && strcmp(getenv("SHMBUS_SANITIZED"), "1") == 0;
        int64_t start = ms_now(), end = start + (int64_t)secs * 1000;
        struct usage base = {0}, now;
        uint64_t msgs = 0;
        shmbus_client *c;
        shmbus_channel *keep;
        pid_t d;

        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        /* One channel that lives throughout, so "no files" is not the baseline. */
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "soak-keep", SHMBUS_OPEN_CREATE, NULL, &keep),
                              0);
        srand(42);
        while (ms_now() < end) {
                struct cycle_result r = cycle(c, cycles);

                CU_ASSERT(r.ok);
                if (!r.ok)
                        break;
                msgs += r.msgs;
                cycles++;
                /* The baseline once the allocator and the daemon have warmed up. */
                if (!warm && ms_now() - start > (int64_t)secs * 100) {
                        sleep_ms(300); /* let the sweep reap this cycle's dead */
                        base = usage_of(d);
                        warm = cycles;
                        fprintf(stderr,
                                "\n  baseline after %u cycles: daemon RSS %ld KiB, %u fds; "
                                "%u files; our fds %u",
                                cycles, base.rss_kib, base.daemon_fds, base.files, base.own_fds);
                }
        }
        sleep_ms(300);
        now = usage_of(d);
        fprintf(stderr,
                "\n  after %u cycles (%llu messages, %u s): daemon RSS %ld KiB, %u fds; "
                "%u files; our fds %u\n",
                cycles, (unsigned long long)msgs, secs, now.rss_kib, now.daemon_fds, now.files,
                now.own_fds);
        CU_ASSERT(warm > 0 && cycles >= warm + 10);
        CU_ASSERT_EQUAL(now.files, base.files);
        CU_ASSERT_EQUAL(now.files, 3); /* soak-keep's ctl, data and meta files */
        CU_ASSERT(now.daemon_fds <= base.daemon_fds);
        CU_ASSERT(now.own_fds <= base.own_fds);
        /* Sanitizers keep freed memory in quarantine: RSS says nothing there. */
        if (!sanitized)
                CU_ASSERT(now.rss_kib <= base.rss_kib + 1024 + base.rss_kib / 10);
        shmbus_channel_unref(keep);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

int main(void) {
        static const struct test_case cases[] = {
                {"soak: channel churn, mixed sizes, deaths; resources stay flat", test_soak},
                {NULL, NULL},
        };
        int rc;

        signal(SIGPIPE, SIG_IGN);
        if (testdaemon_setup("soak") < 0)
                return 77;
        rc = test_run("soak", cases);
        testdaemon_teardown(rc);
        return rc;
}
