/* SPDX-License-Identifier: MIT */
/*
 * No member can harm another (issue 15): attacks that an independent run
 * against shmbusd and libshmbus found, each replayed by uid 65534 against
 * honest peers (root) and a private shmbusd. A member that truncates or grows
 * a channel's files, a foreign-owned directory on the shm path, per-uid
 * quotas, a large create that must not stall the daemon, forged slots that
 * must not slow its sweep, and the recovery bound after a publisher is killed
 * mid-claim. Every attack that needs another uid is skipped (with a note)
 * where the test cannot become uid 65534.
 */
#undef NDEBUG
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>

#include "shmbus.h"

#include "channel.h"
#include "testdaemon.h"

#define VICTIM "victim"

/* Channels anybody may join, owned by whoever creates them (root, here). */
static const char *open_config = "{\"channels\": {\"" VICTIM "\": {\"publish\": \"any\","
                                 " \"subscribe\": \"any\"}}}";

static bool become_nobody(void) {
        return setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0;
}

/*
 * Open @name as @role over the raw protocol and return its two descriptors:
 * what an attacker does to get at the files themselves.
 */
static int raw_open(const char *name, const char *role, int fds[2]) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char req[256], reply[4096];
        union {
                char buf[CMSG_SPACE(2 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {reply, sizeof(reply) - 1};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *cm;
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ssize_t n;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -1;
        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"open\",\"name\":\"%s\",\"role\":\"%s\"}",
                 name, role);
        if (send(fd, req, strlen(req), 0) < 0)
                return -1;
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        close(fd);
        cm = CMSG_FIRSTHDR(&mh);
        if (n <= 0 || !cm || cm->cmsg_type != SCM_RIGHTS ||
            cm->cmsg_len != CMSG_LEN(2 * sizeof(int)))
                return -1;
        memcpy(fds, CMSG_DATA(cm), 2 * sizeof(int));
        return 0;
}

/* In a child: open VICTIM through the daemon, or exit 10. */
static shmbus_channel *child_open(int flags) {
        shmbus_client *c;
        shmbus_channel *ch;

        if (shmbus_client_new(sock, &c) < 0 || shmbus_client_open(c, VICTIM, flags, NULL, &ch) < 0)
                _exit(10);
        shmbus_client_free(c);
        return ch;
}

/*
 * An honest member: publish (or receive) until the channel reports itself
 * broken (exit 0), for at most 5 s (exit 3). @until_broken false: exit 0
 * after 300 ms of normal traffic instead, and 4 if the channel broke.
 */
static _Noreturn void honest(bool publish, bool until_broken, atomic_int *ready) {
        shmbus_channel *ch = child_open(publish ? SHMBUS_OPEN_PUBLISH : 0);
        int64_t end = ms_now() + (until_broken ? 5000 : 300);
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char buf[256];

        if (publish ? shmbus_pub_new(ch, &p) < 0 : shmbus_sub_new(ch, &s) < 0)
                _exit(11);
        atomic_fetch_add(ready, 1);
        while (ms_now() < end) {
                int r = publish ? shmbus_pub_send(p, "honest", 6, 50)
                                : (int)shmbus_sub_recv(s, buf, sizeof(buf), 50);

                if (r == -EBADFD)
                        _exit(until_broken ? 0 : 4);
                if (publish)
                        sleep_ms(2);
        }
        _exit(until_broken ? 3 : 0);
}

static pid_t spawn_honest(bool publish, bool until_broken, atomic_int *ready) {
        pid_t pid = fork();

        if (pid == 0)
                honest(publish, until_broken, ready);
        return pid;
}

static bool daemon_answers(void) {
        shmbus_client *c;
        char *reply = NULL;
        bool ok;

        if (shmbus_client_new(sock, &c) < 0)
                return false;
        ok = shmbus_client_request(c, "{\"v\":1,\"op\":\"hello\"}", &reply) == 0 &&
             strstr(reply, "\"ok\":true");
        free(reply);
        shmbus_client_free(c);
        return ok;
}

static bool log_has(const char *what) {
        char line[1024];
        bool found = false;
        FILE *f = fopen(logpath, "r");

        while (f && !found && fgets(line, sizeof(line), f))
                found = strstr(line, what) != NULL;
        if (f)
                fclose(f);
        return found;
}

/* Whether the daemon's log says @what within a second (it may be on its next sweep). */
static bool log_contains(const char *what) {
        for (int i = 0; i < 100; i++) {
                if (log_has(what))
                        return true;
                sleep_ms(10);
        }
        return false;
}

/* A fresh message goes from a new publisher to a new subscriber of VICTIM. */
static bool victim_carries(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char buf[64];
        bool ok;

        if (shmbus_client_new(sock, &c) < 0)
                return false;
        if (shmbus_client_open(c, VICTIM, SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH, NULL, &ch) <
            0) {
                shmbus_client_free(c);
                return false;
        }
        ok = shmbus_sub_new(ch, &s) == 0 && shmbus_pub_new(ch, &p) == 0 &&
             shmbus_pub_send(p, "again", 5, 100) == 0 &&
             shmbus_sub_recv(s, buf, sizeof(buf), 100) == 5;
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        return ok;
}

/* ---- item 1: resized files ------------------------------------------------------------------ */

enum resize { SHRINK_CTL, SHRINK_DATA, SHRINK_DATA_HALF, GROW_CTL };

/* Uid 65534 joins VICTIM as @role and resizes one of its files. Exit 0 if it could. */
static int attack_resize(enum resize how) {
        bool data = how == SHRINK_DATA || how == SHRINK_DATA_HALF;
        int fds[2];
        struct stat st;
        off_t len;
        pid_t pid = fork();

        if (pid == 0) {
                if (!become_nobody())
                        _exit(99);
                if (raw_open(VICTIM, data ? "pub" : "sub", fds) < 0)
                        _exit(20);
                if (fstat(fds[data], &st) < 0)
                        _exit(21);
                len = how == GROW_CTL           ? st.st_size + (1 << 20)
                      : how == SHRINK_DATA_HALF ? st.st_size / 2
                                                : 0;
                _exit(ftruncate(fds[data], len) == 0 ? 0 : 22);
        }
        return test_wait(pid);
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#endif

static void resize_case(enum resize how) {
        static const char *names[] = {"ctl to 0", "data to 0", "data to half", "ctl grown"};
#ifdef UNDER_TSAN
        /*
         * ThreadSanitizer's runtime cannot take a SIGBUS in instrumented code and
         * have the handler remap the memory: shmbusd deadlocked inside it (a futex
         * of the runtime's). The plain and ASan+UBSan runs hold these cases.
         */
        if (how != GROW_CTL) {
                fprintf(stderr, " (not run under ThreadSanitizer: %s)", names[how]);
                return;
        }
#endif
        atomic_int *ready = mmap(NULL, sizeof(*ready), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        bool grow = how == GROW_CTL;
        pid_t d, pub, sub;
        int rc;

        d = daemon_start_fresh(open_config);
        chmod(dir, 0755);
        /* The channel exists before anyone joins it. */
        CU_ASSERT_FATAL(victim_carries());
        atomic_store(ready, 0);
        pub = spawn_honest(true, !grow, ready);
        sub = spawn_honest(false, !grow, ready);
        for (int i = 0; i < 500 && atomic_load(ready) < 2; i++)
                sleep_ms(10);
        rc = attack_resize(how);
        if (rc == 99) {
                fprintf(stderr, "\n  (cannot become uid 65534 here; %s not checked)\n", names[how]);
                kill(pub, SIGKILL);
                kill(sub, SIGKILL);
        }
        /* The honest members survive, and learn that the channel broke (EBADFD) when it did. */
        CU_ASSERT_EQUAL(test_wait(pub), rc == 99 ? 128 + SIGKILL : 0);
        CU_ASSERT_EQUAL(test_wait(sub), rc == 99 ? 128 + SIGKILL : 0);
        if (rc == 99)
                goto out;
        CU_ASSERT_EQUAL(rc, 0);
        /* The daemon survives, keeps answering, and says what happened. */
        CU_ASSERT(daemon_answers());
        if (grow) {
                char path[700];
                struct stat st;

                /* New members can join at once; the daemon truncates the file back. */
                CU_ASSERT(victim_carries());
                snprintf(path, sizeof(path), "%s/" VICTIM ".ctl", shm);
                for (int i = 0; i < 100 && stat(path, &st) == 0 && st.st_size > (1 << 20); i++)
                        sleep_ms(10);
                CU_ASSERT(stat(path, &st) == 0 && st.st_size < (1 << 20));
                CU_ASSERT(log_contains("was grown"));
        } else {
                CU_ASSERT(log_contains("was truncated") || log_contains("shrank under the daemon"));
                /* Only a publisher can shrink the data: the log names those it had. */
                if (how != SHRINK_CTL)
                        CU_ASSERT(log_contains("one of its publishers"));
                /* The channel can be made afresh and carries messages. */
                CU_ASSERT(victim_carries());
        }
out:
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        munmap(ready, sizeof(*ready));
}

static void test_shrink_ctl(void) {
        resize_case(SHRINK_CTL);
}

static void test_shrink_data(void) {
        resize_case(SHRINK_DATA);
        resize_case(SHRINK_DATA_HALF);
}

static void test_grow_ctl(void) {
        resize_case(GROW_CTL);
}

/* ---- item 3: the path to the shm directory ------------------------------------------------- */

/* Start shmbusd on shm directory @d; return its exit status, 0 if it ran (then it is stopped). */
static int try_shm_dir(const char *d, char *out, size_t size) {
        const char *top = test_builddir();
        char cmd[2400];
        FILE *f;
        size_t n;

        snprintf(cmd, sizeof(cmd),
                 "timeout -s TERM 1 %s/daemon/shmbusd -s %s/try.sock -d %s 2>&1; echo \"rc=$?\"",
                 top, dir, d);
        f = popen(cmd, "r");
        n = fread(out, 1, size - 1, f);
        out[n] = '\0';
        pclose(f);
        /* timeout(1) exits 124 when it had to stop a daemon that was running. */
        return strstr(out, "rc=124") ? 0 : 1;
}

static void test_shm_dir_path(void) {
        char evil[700], ch[800], sticky[700], out[4096];

        /* A directory another user owns, anywhere on the path, is refused and named. */
        snprintf(evil, sizeof(evil), "%s/evil", dir);
        snprintf(ch, sizeof(ch), "%s/ch", evil);
        CU_ASSERT_EQUAL_FATAL(mkdir(evil, 0755), 0);
        CU_ASSERT_EQUAL_FATAL(mkdir(ch, 0755), 0);
        CU_ASSERT_EQUAL_FATAL(chown(evil, 65534, 65534), 0);
        CU_ASSERT_EQUAL(try_shm_dir(ch, out, sizeof(out)), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "evil is owned by uid 65534"));

        /* A sticky directory of root's (like /dev/shm) is a fine ancestor. */
        snprintf(sticky, sizeof(sticky), "%s/sticky", dir);
        snprintf(ch, sizeof(ch), "%s/ch", sticky);
        CU_ASSERT_EQUAL_FATAL(mkdir(sticky, 0755), 0);
        CU_ASSERT_EQUAL(chmod(sticky, 01777), 0);
        CU_ASSERT_EQUAL(try_shm_dir(ch, out, sizeof(out)), 0);
        /* A world-writable one that is not sticky is not. */
        CU_ASSERT_EQUAL(chmod(sticky, 0777), 0);
        CU_ASSERT_EQUAL(try_shm_dir(ch, out, sizeof(out)), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "sticky is writable by group or others"));
        test_rmtree(evil);
        test_rmtree(sticky);
}

/*
 * The daemon resolves the shm directory once: a directory put in its place
 * by path later (here by root, who can) never receives or supplies channels.
 */
static void test_shm_dir_held(void) {
        char moved[700], path[800];
        shmbus_client *c;
        shmbus_channel *ch;
        struct stat st;
        pid_t d;

        d = daemon_start_fresh(NULL);
        snprintf(moved, sizeof(moved), "%s/moved", dir);
        CU_ASSERT_EQUAL_FATAL(rename(shm, moved), 0);
        CU_ASSERT_EQUAL_FATAL(mkdir(shm, 0755), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL(
                shmbus_client_open(c, "held", SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH, NULL, &ch),
                0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        snprintf(path, sizeof(path), "%s/held.ctl", moved);
        CU_ASSERT_EQUAL(stat(path, &st), 0);
        snprintf(path, sizeof(path), "%s/held.ctl", shm);
        CU_ASSERT_NOT_EQUAL(stat(path, &st), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        test_rmtree(moved);
}

/* ---- item 5: per-uid quotas ---------------------------------------------------------------- */

/*
 * Send the raw requests @reqs (NULL-terminated) as uid 65534 on one
 * connection; the last reply lands in @reply. Return: 0, or 99 if the test
 * cannot become uid 65534.
 */
static int nobody_requests(const char *const *reqs, char *reply, size_t size) {
        char *shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        pid_t pid;
        int rc;

        chmod(dir, 0755);
        pid = fork();
        if (pid == 0) {
                shmbus_client *c;
                char *r = NULL;

                if (!become_nobody())
                        _exit(99);
                if (shmbus_client_new(sock, &c) < 0)
                        _exit(20);
                for (int i = 0; reqs[i]; i++) {
                        free(r);
                        r = NULL;
                        if (shmbus_client_request(c, reqs[i], &r) < 0)
                                _exit(21);
                }
                snprintf(shared, size, "%s", r ? r : "");
                _exit(0);
        }
        rc = test_wait(pid);
        snprintf(reply, size, "%s", shared);
        munmap(shared, size);
        return rc;
}

#define CREATE_REQ(name, cap)                                                          \
        "{\"v\":1,\"op\":\"open\",\"role\":\"pub\",\"name\":\"" name "\",\"create\":{" \
        "\"capacity\":" #cap "}}"

static void test_quotas(void) {
        static const char *const four[] = {CREATE_REQ("q1", 65536), CREATE_REQ("q2", 65536),
                                           CREATE_REQ("q3", 65536), CREATE_REQ("q4", 65536), NULL};
        static const char *const big[] = {CREATE_REQ("big", 4194304), NULL};
        static const char *const huge[] = {CREATE_REQ("huge", 536870912), NULL};
        char reply[4096];
        shmbus_client *c;
        shmbus_channel *ch;
        char *r = NULL;
        pid_t d;
        int rc;

        /* The default quotas keep one uid from pinning half a GiB. */
        d = daemon_start_fresh(NULL);
        rc = nobody_requests(huge, reply, sizeof(reply));
        if (rc == 99) {
                fprintf(stderr, "\n  (cannot become uid 65534 here; quotas not checked)\n");
                daemon_stop(d);
                return;
        }
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"EDQUOT\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "quota_bytes_per_uid (268435456) exceeded"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        d = daemon_start_fresh("{\"quota_channels_per_uid\": 3, \"quota_bytes_per_uid\": 1048576}");
        CU_ASSERT_EQUAL(nobody_requests(big, reply, sizeof(reply)), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"EDQUOT\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "uid 65534 owns 0 bytes of channels"));
        CU_ASSERT_EQUAL(nobody_requests(four, reply, sizeof(reply)), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"EDQUOT\""));
        CU_ASSERT_PTR_NOT_NULL(
                strstr(reply, "quota_channels_per_uid (3) reached: uid 65534 owns 3"));
        /* Root is exempt, and the list shows each uid's use. */
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "rootbig", SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH,
                                           NULL, &ch),
                        0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"list\"}", &r), 0);
        CU_ASSERT(r && strstr(r, "{\"uid\":65534,\"channels\":3,"));
        CU_ASSERT(r && strstr(r, "\"channels_per_uid\":3"));
        free(r);
        r = NULL;
        CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"stat\",\"name\":\"q1\"}", &r),
                        0);
        CU_ASSERT(r && strstr(r, "\"owner_use\":{\"uid\":65534,\"channels\":3,"));
        free(r);
        {
                char cmd[1400], text[4096] = "";
                FILE *f;

                /* shmbus-cli status shows the owner's use against the quotas. */
                snprintf(cmd, sizeof(cmd), "SHMBUS_SOCKET=%s %s/cli/shmbus-cli status q1", sock,
                         test_builddir());
                f = popen(cmd, "r");
                CU_ASSERT_PTR_NOT_NULL_FATAL(f);
                CU_ASSERT(fread(text, 1, sizeof(text) - 1, f) > 0);
                pclose(f);
                CU_ASSERT_PTR_NOT_NULL(strstr(text, "owner use:   3 of 3 channels"));
        }
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- item 7: the sweep's cost with forged slots -------------------------------------------- */

#define FORGED_CHANNELS 16

/*
 * A member keeps every slot of FORGED_CHANNELS channels of 1024 + 1024 slots
 * forged active, each with a different pid (most of them not running, so the
 * daemon releases them and they are forged again), until killed.
 */
static _Noreturn void forger(atomic_int *ready) {
        shmbus_channel *chs[FORGED_CHANNELS];
        shmbus_client *c;
        shmbus_opts *o;
        uint32_t pid = 1000;

        (void)become_nobody(); /* the daemon's cost does not depend on who forges */
        if (shmbus_client_new(sock, &c) < 0 || shmbus_opts_new(&o) < 0 ||
            shmbus_opts_set_capacity(o, 4096) < 0 || shmbus_opts_set_max_msg(o, 1024) < 0 ||
            shmbus_opts_set_max_subscribers(o, 1024) < 0 ||
            shmbus_opts_set_max_publishers(o, 1024) < 0)
                _exit(30);
        for (int i = 0; i < FORGED_CHANNELS; i++) {
                char name[32];

                snprintf(name, sizeof(name), "forged%d", i);
                if (shmbus_client_open(c, name, SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH, o,
                                       &chs[i]) < 0)
                        _exit(31);
        }
        atomic_store(ready, 1);
        for (;;) {
                for (int i = 0; i < FORGED_CHANNELS; i++) {
                        struct shmbus_ring *r = &chs[i]->ring;

                        for (uint32_t k = 0; k < r->max_subs; k++) {
                                atomic_store(&r->subs[k].pid, pid++ % 4000000 + 2);
                                atomic_store(&r->subs[k].state, SHMBUS_SLOT_ACTIVE);
                        }
                        for (uint32_t k = 0; k < r->max_pubs; k++) {
                                atomic_store(&r->pubs[k].pid, pid++ % 4000000 + 2);
                                atomic_store(&r->pubs[k].state, SHMBUS_SLOT_ACTIVE);
                        }
                }
                sleep_ms(20);
        }
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

static void test_forged_slots(void) {
        atomic_int *ready = mmap(NULL, sizeof(*ready), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        int64_t worst = 0, times[100];
        shmbus_client *c;
        pid_t d, f;

        d = daemon_start_fresh(NULL);
        chmod(dir, 0755);
        atomic_store(ready, 0);
        f = fork();
        if (f == 0)
                forger(ready);
        for (int i = 0; i < 1000 && !atomic_load(ready); i++)
                sleep_ms(10);
        CU_ASSERT_FATAL(atomic_load(ready));
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        /* Hellos spread over 30 sweeps: none may wait for a whole sweep of 32 768 slots. */
        for (int i = 0; i < 100; i++) {
                char *r = NULL;
                int64_t t0 = shmbus__now_ns();

                CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"hello\"}", &r), 0);
                times[i] = shmbus__now_ns() - t0;
                if (times[i] > worst)
                        worst = times[i];
                free(r);
                sleep_ms(30);
        }
        fprintf(stderr, "\n  worst hello with %d forged slots: %.1f ms\n", FORGED_CHANNELS * 2048,
                (double)worst / 1e6);
        /*
         * Without the budget every hello waited 300+ ms. Generous bounds (a loaded,
         * sanitized run's worst was 48 ms): the median, and the worst against a
         * single scheduling stall of a loaded VM.
         */
        qsort(times, 100, sizeof(times[0]), cmp_i64);
        CU_ASSERT(times[50] < 150 * 1000000);
        CU_ASSERT(worst < 1000 * 1000000);
        shmbus_client_free(c);
        kill(f, SIGKILL);
        test_wait(f);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        munmap(ready, sizeof(*ready));
}

/* ---- item 8: recovery after a publisher killed mid-claim ----------------------------------- */

/*
 * The documented bound: a subscriber waits on the claim of a dead publisher
 * at most unblock_timeout_ms (docs/SECURITY.md). The worst case for the old
 * timer, which started at the first sweep that saw the subscriber waiting, is
 * a subscriber that starts waiting just after a sweep: the test waits for a
 * sweep (it releases a forged slot of a dead pid, which the test watches) and
 * starts waiting at once.
 */
static void test_recovery_bound(void) {
        pid_t d = daemon_start_fresh(NULL), dead;
        int64_t worst = 0;
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_sub *s;
        shmbus_pub *p;
        char buf[64];

        dead = fork();
        if (dead == 0)
                _exit(0);
        test_wait(dead); /* a pid that is surely gone */
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "recover",
                                                 SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH, NULL,
                                                 &ch),
                              0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        for (int trial = 0; trial < 4; trial++) {
                struct shmbus_sub_slot *forged = &ch->ring.subs[ch->ring.max_subs - 1];
                pid_t pub = fork();
                int64_t t;

                if (pub == 0) {
                        shmbus_client *cc;
                        shmbus_channel *cch;
                        shmbus_pub *cp;
                        void *claim;

                        if (shmbus_client_new(sock, &cc) < 0 ||
                            shmbus_client_open(cc, "recover", SHMBUS_OPEN_PUBLISH, NULL, &cch) <
                                    0 ||
                            shmbus_pub_new(cch, &cp) < 0)
                                _exit(1);
                        shmbus_client_free(cc); /* its slot is the sweep's to release */
                        if (shmbus_pub_claim(cp, 32, 0, &claim) < 0)
                                _exit(2);
                        raise(SIGKILL);
                        _exit(3);
                }
                CU_ASSERT_EQUAL(test_wait(pub), 128 + SIGKILL);
                CU_ASSERT_EQUAL(shmbus_pub_send(p, "after", 5, 0), 0);
                /* A sweep has just run when the daemon releases the forged slot. */
                atomic_store(&forged->pos, shmbus__ring_tail_pos(&ch->ring));
                atomic_store(&forged->pid, (uint32_t)dead);
                atomic_store(&forged->state, SHMBUS_SLOT_ACTIVE);
                while (atomic_load(&forged->state) == SHMBUS_SLOT_ACTIVE)
                        sleep_ms(1);
                /* Now the subscriber runs into the dead claim and waits. */
                t = shmbus__now_ns();
                CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 5000), 5);
                t = shmbus__now_ns() - t;
                if (t > worst)
                        worst = t;
        }
        fprintf(stderr, "\n  worst wait on a dead claim: %.0f ms (unblock timeout %d ms)\n",
                (double)worst / 1e6, daemon_unblock_ms);
        /* The bound, plus room for a loaded machine's scheduling. */
        CU_ASSERT(worst < (int64_t)(daemon_unblock_ms + 60) * 1000000);
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- item 6: a large create does not stall the daemon -------------------------------------- */

static int raw_connect(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Receive one reply on @fd into @buf, closing any descriptors that came with it. */
static ssize_t raw_reply(int fd, char *buf, size_t size) {
        union {
                char b[CMSG_SPACE(2 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = {buf, size - 1};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.b,
                            .msg_controllen = sizeof(u.b)};
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;

        if (cm && cm->cmsg_type == SCM_RIGHTS) {
                int fds[2];

                memcpy(fds, CMSG_DATA(cm), sizeof(fds));
                close(fds[0]);
                close(fds[1]);
        }
        buf[n > 0 ? n : 0] = '\0';
        return n;
}

#define HUGE_REQ                                                                                \
        "{\"v\":1,\"op\":\"open\",\"role\":\"pub\",\"name\":\"huge\",\"create\":{\"capacity\":" \
        "1073741824}}"

static void test_large_create(void) {
        static const char hello[] = "{\"v\":1,\"op\":\"hello\"}";
        char buf[4096];
        int64_t t0, worst = 0, created_ms;
        int creator, other, twin;
        unsigned during = 0;
        struct statvfs vfs;
        pid_t d;

        /* The channel is really allocated: a small /dev/shm (a container's 64 MiB) cannot. */
        if (statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (5ULL << 28)) {
                fprintf(stderr, " (not run: less than 1.25 GiB free under %s)", dir);
                return;
        }

        d = daemon_start_fresh(NULL);
        creator = raw_connect();
        other = raw_connect();
        twin = raw_connect();
        CU_ASSERT_FATAL(creator >= 0 && other >= 0 && twin >= 0);
        /* The creator asks for 1 GiB and, on the same connection, says hello. */
        t0 = ms_now();
        CU_ASSERT_EQUAL(send(creator, HUGE_REQ, strlen(HUGE_REQ), 0), (ssize_t)strlen(HUGE_REQ));
        CU_ASSERT_EQUAL(send(creator, hello, strlen(hello), 0), (ssize_t)strlen(hello));
        /* Another client opens the same channel meanwhile: it waits for it to exist. */
        sleep_ms(20);
        CU_ASSERT_EQUAL(send(twin, HUGE_REQ, strlen(HUGE_REQ), 0), (ssize_t)strlen(HUGE_REQ));
        /* A third keeps asking: every answer must come while the gigabyte is allocated. */
        for (;;) {
                struct pollfd pfd = {.fd = creator, .events = POLLIN};
                int64_t t;

                if (poll(&pfd, 1, 0) == 1)
                        break;
                t = shmbus__now_ns();
                CU_ASSERT_EQUAL_FATAL(send(other, hello, strlen(hello), 0), (ssize_t)strlen(hello));
                CU_ASSERT_FATAL(raw_reply(other, buf, sizeof(buf)) > 0);
                t = shmbus__now_ns() - t;
                worst = t > worst ? t : worst;
                during++;
                if (ms_now() - t0 > 20000)
                        break;
                sleep_ms(10);
        }
        created_ms = ms_now() - t0;
        /* In request order on the creator's connection: the open, then the hello. */
        CU_ASSERT(raw_reply(creator, buf, sizeof(buf)) > 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"created\":true"));
        CU_ASSERT(raw_reply(creator, buf, sizeof(buf)) > 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"protocol\""));
        CU_ASSERT(raw_reply(twin, buf, sizeof(buf)) > 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"ok\":true"));
        CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"created\":false"));
        fprintf(stderr, "\n  1 GiB created in %lld ms; %u hellos meanwhile, the slowest %.1f ms\n",
                (long long)created_ms, during, (double)worst / 1e6);
        /* Generous: the requirement is 50 ms, measured by bench/create-latency. */
        CU_ASSERT(worst < 500 * 1000000);
        close(creator);
        close(other);
        close(twin);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        fresh_shm();
}

int main(void) {
        static const struct test_case cases[] = {
                {"a member truncates the ctl file: nobody dies, members get EBADFD",
                 test_shrink_ctl},
                {"a publisher truncates the data file: nobody dies, members get EBADFD",
                 test_shrink_data},
                {"a member grows the ctl file: new members still join", test_grow_ctl},
                {"every directory on the shm path is checked", test_shm_dir_path},
                {"the shm directory is held open, not re-resolved", test_shm_dir_held},
                {"per-uid quotas on channels and bytes, shown per uid", test_quotas},
                {"forged slots cannot slow the daemon's answers", test_forged_slots},
                {"a dead publisher's claim is padded within the unblock timeout",
                 test_recovery_bound},
                {"a 1 GiB create does not hold up other clients", test_large_create},
                {NULL, NULL},
        };
        int rc;

        signal(SIGPIPE, SIG_IGN);
        if (testdaemon_setup("harm") < 0)
                return 77;
        rc = test_run("harm", cases);
        testdaemon_teardown(rc);
        return rc;
}
