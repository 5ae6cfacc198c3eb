/* SPDX-License-Identifier: MIT */
/*
 * shmbusd and the client, end to end. Every test starts the daemon from the
 * build tree on a private socket and shm directory, so nothing global is
 * touched and a daemon already running on the machine does not interfere.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "shmbus.h"

#include "channel.h"
#include "layout.h"
#include "testdaemon.h"
#include "testutil.h"

static shmbus_client *connect_ok(void) {
        shmbus_client *c = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        return c;
}

/* A raw request on a fresh connection; returns the parsed reply (or NULL). */
static cJSON *raw(const void *req, size_t len) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        static char buf[1 << 20];
        cJSON *reply = NULL;
        ssize_t n;
        int fd;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && send(fd, req, len, 0) >= 0) {
                struct pollfd p = {.fd = fd, .events = POLLIN};

                if (poll(&p, 1, 5000) == 1 && (n = recv(fd, buf, sizeof(buf) - 1, 0)) > 0) {
                        buf[n] = '\0';
                        reply = cJSON_Parse(buf);
                }
        }
        close(fd);
        return reply;
}

/* An "open" over a raw socket, keeping the descriptors the daemon sends. */
static int raw_open(const char *name, const char *role, int *ret_ctl, int *ret_data) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        union {
                char buf[CMSG_SPACE(2 * sizeof(int))];
                struct cmsghdr align;
        } cm;
        char req[256], rep[4096];
        struct iovec iov = {.iov_base = rep, .iov_len = sizeof(rep) - 1};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = cm.buf,
                             .msg_controllen = sizeof(cm.buf)};
        struct cmsghdr *h;
        int fd, r = -1;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"open\",\"name\":\"%s\",\"role\":\"%s\"}",
                 name, role);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            send(fd, req, strlen(req), 0) > 0 && recvmsg(fd, &msg, 0) > 0 &&
            (h = CMSG_FIRSTHDR(&msg)) && h->cmsg_type == SCM_RIGHTS &&
            h->cmsg_len == CMSG_LEN(2 * sizeof(int))) {
                int fds[2];

                memcpy(fds, CMSG_DATA(h), sizeof(fds));
                *ret_ctl = fds[0];
                *ret_data = fds[1];
                r = 0;
        }
        close(fd);
        return r;
}

static const char *reply_error(const cJSON *r) {
        const cJSON *e = cJSON_GetObjectItem(r, "error");

        if (!r || cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")))
                return "none";
        return cJSON_IsString(e) ? e->valuestring : "?";
}

static void expect_error(const char *req, const char *err) {
        cJSON *r = raw(req, strlen(req));

        CU_ASSERT_PTR_NOT_NULL(r);
        CU_ASSERT_STRING_EQUAL(reply_error(r), err);
        if (strcmp(reply_error(r), err) != 0)
                fprintf(stderr, "\n  request %s: got %s, wanted %s\n", req, reply_error(r), err);
        cJSON_Delete(r);
}

static uint64_t stat_field(shmbus_client *c, const char *name, const char *field) {
        char req[200], *reply = NULL;
        uint64_t v = UINT64_MAX;
        cJSON *j;

        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"stat\",\"name\":\"%s\"}", name);
        if (shmbus_client_request(c, req, &reply) == 0 && (j = cJSON_Parse(reply))) {
                const cJSON *f = cJSON_GetObjectItem(j, field);

                if (cJSON_IsNumber(f))
                        v = (uint64_t)f->valuedouble;
                cJSON_Delete(j);
        }
        free(reply);
        return v;
}

/* ---- open, publish, receive across processes ----------------------------------------------- */

static void test_open_pub_sub(void) {
        pid_t d = daemon_start_fresh(NULL), child;
        shmbus_client *c = connect_ok();
        shmbus_channel *pc, *sc;
        shmbus_pub *p;
        shmbus_sub *s;
        int fds[2];
        char ch;

        CU_ASSERT_EQUAL(shmbus_client_open(c, "nope", 0, NULL, &sc), -ENOENT);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "bad/name", 0, NULL, &sc), -EINVAL);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "orders",
                                                 SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE, NULL,
                                                 &pc),
                              0);
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        child = fork();
        if (child == 0) {
                shmbus_client *cc;
                char buf[600];
                uint32_t id, seq;

                if (shmbus_client_new(sock, &cc) < 0 ||
                    shmbus_client_open(cc, "orders", 0, NULL, &sc) < 0 ||
                    shmbus_sub_new(sc, &s) < 0)
                        _exit(10);
                if (write(fds[1], "r", 1) != 1)
                        _exit(11);
                for (uint32_t i = 0; i < 5000; i++) {
                        ssize_t n = shmbus_sub_recv(s, buf, sizeof(buf), 10000);

                        if (n < 0 || !tmsg_check(buf, (size_t)n, &id, &seq) || seq != i)
                                _exit(12);
                }
                /* Through the daemon too, a subscriber's data is read-only. */
                signal(SIGSEGV, SIG_DFL);
                ((volatile uint8_t *)sc->data_map)[0] = 1;
                _exit(0);
        }
        close(fds[1]);
        CU_ASSERT_EQUAL(read(fds[0], &ch, 1), 1);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(pc, &p), 0);
        for (uint32_t i = 0; i < 5000; i++) {
                char buf[600];
                size_t len = tmsg_len(1, i, 500);

                tmsg_fill(buf, len, 1, i);
                CU_ASSERT_EQUAL_FATAL(shmbus_pub_send(p, buf, len, 10000), 0);
        }
        CU_ASSERT_EQUAL(test_wait(child), 128 + SIGSEGV);
        CU_ASSERT_EQUAL(stat_field(c, "orders", "published"), 5000);
        CU_ASSERT_EQUAL(stat_field(c, "orders", "publishers_active"), 1);

        /* A subscriber-only open cannot make a publisher. */
        CU_ASSERT_EQUAL(shmbus_client_open(c, "orders", 0, NULL, &sc), 0);
        CU_ASSERT_EQUAL(shmbus_pub_new(sc, &p), -EACCES);
        shmbus_channel_unref(sc);

        /* Geometry asked for at creation is what the channel gets. */
        shmbus_opts *o;
        shmbus_opts_new(&o);
        shmbus_opts_set_capacity(o, 1 << 16);
        shmbus_opts_set_policy(o, SHMBUS_POLICY_OVERWRITE);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "ticks", SHMBUS_OPEN_CREATE, o, &sc), 0);
        CU_ASSERT_EQUAL(stat_field(c, "ticks", "capacity"), 1 << 16);
        CU_ASSERT_EQUAL(stat_field(c, "ticks", "max_msg"), 1 << 14); /* follows the capacity */
        shmbus_channel_unref(sc);
        shmbus_opts_free(o);

        CU_ASSERT_EQUAL(shmbus_client_delete(c, "ticks"), 0);
        CU_ASSERT_EQUAL(shmbus_client_delete(c, "ticks"), -ENOENT);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "ticks", 0, NULL, &sc), -ENOENT);
        shmbus_pub_free(p);
        shmbus_channel_unref(pc);
        shmbus_client_free(c);
        close(fds[0]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- bad requests: each gets a clear error and the daemon keeps serving ------------------- */

static void test_bad_requests(void) {
        pid_t d = daemon_start_fresh(NULL);
        static char big[200000];
        shmbus_client *c;
        cJSON *r;

        expect_error("{not json", "EINVAL");
        expect_error("[1,2,3]", "EINVAL");
        expect_error("{\"v\":1}", "EINVAL");
        expect_error("{\"v\":1,\"op\":42}", "EINVAL");
        expect_error("{\"v\":2,\"op\":\"hello\"}", "EPROTO");
        expect_error("{\"v\":1,\"op\":\"frobnicate\"}", "EOPNOTSUPP");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"../etc\",\"role\":\"pub\"}", "EINVAL");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"\",\"role\":\"pub\"}", "EINVAL");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"x\",\"role\":\"admin\"}", "EINVAL");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"x\",\"role\":\"pub\",\"create\":7}",
                     "EINVAL");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"x\",\"role\":\"pub\",\"create\":{"
                     "\"capacity\":1000}}",
                     "EINVAL");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"x\",\"role\":\"pub\",\"create\":{"
                     "\"colour\":1}}",
                     "EINVAL");
        expect_error("{\"v\":1,\"op\":\"open\",\"name\":\"x\",\"role\":\"pub\",\"create\":{"
                     "\"capacity\":4096,\"max_msg\":4096}}",
                     "EINVAL");
        expect_error("{\"v\":1,\"op\":\"stat\",\"name\":\"missing\"}", "ENOENT");
        expect_error("{\"v\":1,\"op\":\"delete\"}", "EINVAL");

        /* The message names the bad key. */
        const char *req = "{\"v\":1,\"op\":\"open\",\"name\":\"x\",\"role\":\"pub\",\"create\":{"
                          "\"colour\":1}}";
        r = raw(req, strlen(req));
        CU_ASSERT_PTR_NOT_NULL(strstr(cJSON_GetObjectItem(r, "message")->valuestring, "colour"));
        cJSON_Delete(r);

        /* Oversized packet, embedded NUL, empty object. */
        memset(big, ' ', sizeof(big));
        big[0] = '{';
        big[sizeof(big) - 1] = '}';
        r = raw(big, sizeof(big));
        CU_ASSERT_STRING_EQUAL(reply_error(r), "EMSGSIZE");
        cJSON_Delete(r);
        r = raw("{\"op\":\"hello\"}\0junk", 19);
        CU_ASSERT_STRING_EQUAL(reply_error(r), "EINVAL");
        cJSON_Delete(r);

        /* Connections that never speak do not stop anybody else. */
        int idle[20];
        for (int i = 0; i < 20; i++) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};

                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
                idle[i] = socket(AF_UNIX, SOCK_SEQPACKET, 0);
                connect(idle[i], (struct sockaddr *)&sa, sizeof(sa));
        }
        c = connect_ok();
        char *reply = NULL;
        CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"list\"}", &reply), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"ok\":true"));
        free(reply);
        shmbus_client_free(c);
        for (int i = 0; i < 20; i++)
                close(idle[i]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- permissions ------------------------------------------------------------------------- */

static int as_nobody(const char *chan, const char *op) {
        pid_t pid = fork();

        if (pid == 0) {
                shmbus_client *c;
                shmbus_channel *ch;
                int r;

                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(99);
                if (shmbus_client_new(sock, &c) < 0)
                        _exit(98);
                if (strcmp(op, "pub") == 0)
                        r = shmbus_client_open(c, chan, SHMBUS_OPEN_PUBLISH, NULL, &ch);
                else if (strcmp(op, "sub") == 0)
                        r = shmbus_client_open(c, chan, 0, NULL, &ch);
                else if (strcmp(op, "create") == 0)
                        r = shmbus_client_open(c, chan, SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH,
                                               NULL, &ch);
                else
                        r = shmbus_client_delete(c, chan);
                _exit(r == 0 ? 0 : r == -EACCES ? 4 : 5);
        }
        return test_wait(pid);
}

static void test_permissions(void) {
        const char *cfg = "{\"channels\": {\"shared\": {\"subscribe\": {\"uids\": [65534]},"
                          " \"publish\": {\"gids\": [4242]}}}}";
        shmbus_channel *ch;
        shmbus_client *c;
        pid_t d;

        if (geteuid() != 0) {
                fprintf(stderr, "\n  (not root: uid-switching cases not run)\n");
                return;
        }
        chmod(dir, 0755);
        d = daemon_start(cfg);
        c = connect_ok();
        CU_ASSERT_EQUAL(shmbus_client_open(c, "private", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "shared", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);

        CU_ASSERT_EQUAL(as_nobody("private", "sub"), 4);
        CU_ASSERT_EQUAL(as_nobody("private", "pub"), 4);
        CU_ASSERT_EQUAL(as_nobody("private", "delete"), 4);
        CU_ASSERT_EQUAL(as_nobody("shared", "sub"), 0); /* allowed by uid */
        CU_ASSERT_EQUAL(as_nobody("shared", "pub"), 4); /* only gid 4242 may publish */
        CU_ASSERT_EQUAL(as_nobody("own", "create"), 0); /* creating is open by default */
        CU_ASSERT_EQUAL(as_nobody("own", "pub"), 0);    /* and the creator owns it */
        CU_ASSERT_EQUAL(as_nobody("own", "delete"), 0);

        /* A subscriber's read-only data descriptor cannot be upgraded. */
        pid_t pid = fork();
        if (pid == 0) {
                char proc[64];
                int ctl, data;

                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(99);
                if (raw_open("shared", "sub", &ctl, &data) < 0)
                        _exit(1);
                if ((fcntl(data, F_GETFL) & O_ACCMODE) != O_RDONLY)
                        _exit(2);
                if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, data, 0) != MAP_FAILED ||
                    errno != EACCES)
                        _exit(3);
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", data);
                if (open(proc, O_RDWR) >= 0 || errno != EACCES)
                        _exit(4);
                void *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, data, 0);
                if (ro == MAP_FAILED)
                        _exit(5);
                /* Nor can a read-only mapping be upgraded, or the descriptor reopened. */
                if (mprotect(ro, 4096, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
                        _exit(6);
                if (fcntl(data, F_SETFL, O_RDWR) == 0 &&
                    (fcntl(data, F_GETFL) & O_ACCMODE) != O_RDONLY)
                        _exit(7);
                _exit(0);
        }
        CU_ASSERT_EQUAL(test_wait(pid), 0);

        /* The channel files themselves are not world-accessible. */
        struct stat st;
        char path[700];
        snprintf(path, sizeof(path), "%s/private.data", shm);
        CU_ASSERT_EQUAL(stat(path, &st), 0);
        CU_ASSERT_EQUAL(st.st_mode & 0077, 0);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        /* Denials are logged. */
        FILE *f = fopen(logpath, "r");
        char line[512];
        bool logged = false;
        while (f && fgets(line, sizeof(line), f))
                logged |= strstr(line, "denied: uid 65534") != NULL;
        if (f)
                fclose(f);
        CU_ASSERT(logged);
}

static void test_bad_config(void) {
        const char *top = test_builddir();
        static const char *bad[] = {
                "{\"max_channels\": -1}",
                "{\"defaults\": {\"policy\": \"sometimes\"}}",
                "{\"channels\": {\"x\": {\"publish\": {\"users\": [1]}}}}",
                "{\"colour\": \"blue\"}",
                "not json at all",
        };
        static const char *key[] = {"max_channels", "policy", "users", "colour", "JSON"};
        char cmd[1400], path[700];

        snprintf(path, sizeof(path), "%s/bad.json", dir);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                FILE *f = fopen(path, "w");
                char out[512] = {0};

                fputs(bad[i], f);
                fclose(f);
                snprintf(cmd, sizeof(cmd), "%s/daemon/shmbusd --check-config -c %s 2>&1", top,
                         path);
                f = popen(cmd, "r");
                CU_ASSERT_EQUAL(fread(out, 1, sizeof(out) - 1, f) > 0, 1);
                CU_ASSERT_NOT_EQUAL(pclose(f), 0);
                CU_ASSERT_PTR_NOT_NULL(strstr(out, key[i]));
        }
        FILE *f = fopen(path, "w");
        fputs("{\"unblock_timeout_ms\": 500, \"defaults\": {\"capacity\": 65536}}", f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "%s/daemon/shmbusd --check-config -c %s >/dev/null 2>&1", top,
                 path);
        CU_ASSERT_EQUAL(system(cmd), 0);
}

/*
 * A channel directory that somebody else could have made (in world-writable
 * /dev/shm) is refused: whoever can write it can swap channel files.
 */
static void test_unsafe_shm_dir(void) {
        const char *top = test_builddir();
        static const char *why[] = {"writable by group or others", "not a directory"};
        char cmd[1600], bad[700], out[512];

        for (int i = 0; i < 2; i++) {
                FILE *f;

                snprintf(bad, sizeof(bad), "%s/unsafe%d", dir, i);
                if (i == 0) {
                        CU_ASSERT_EQUAL_FATAL(mkdir(bad, 0777), 0);
                        CU_ASSERT_EQUAL(chmod(bad, 01777), 0);
                } else {
                        CU_ASSERT_EQUAL_FATAL(symlink(shm, bad), 0);
                }
                snprintf(cmd, sizeof(cmd), "%s/daemon/shmbusd -s %s/unsafe.sock -d %s 2>&1", top,
                         dir, bad);
                f = popen(cmd, "r");
                memset(out, 0, sizeof(out));
                CU_ASSERT(fread(out, 1, sizeof(out) - 1, f) > 0);
                CU_ASSERT_NOT_EQUAL(pclose(f), 0);
                CU_ASSERT_PTR_NOT_NULL(strstr(out, why[i]));
        }
}

/* ---- crashes: a publisher killed mid-claim, a subscriber killed on a block channel --------- */

static void test_kill_publisher_mid_claim(void) {
        pid_t d = daemon_start_fresh(NULL), child;
        shmbus_client *c = connect_ok();
        shmbus_channel *ch;
        shmbus_pub *p;
        shmbus_sub *s;
        int fds[2];
        char buf[64], ready;
        int64_t t0;

        CU_ASSERT_EQUAL_FATAL(
                shmbus_client_open(c, "crash", SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH, NULL, &ch),
                0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "before", 6, 0), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        child = fork();
        if (child == 0) {
                shmbus_client *cc;
                shmbus_channel *cch;
                shmbus_pub *cp;
                void *claim;

                if (shmbus_client_new(sock, &cc) < 0 ||
                    shmbus_client_open(cc, "crash", SHMBUS_OPEN_PUBLISH, NULL, &cch) < 0 ||
                    shmbus_pub_new(cch, &cp) < 0 || shmbus_pub_claim(cp, 32, 0, &claim) < 0)
                        _exit(1);
                memset(claim, 'x', 16); /* half-written, never committed */
                if (write(fds[1], "c", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        CU_ASSERT_EQUAL(read(fds[0], &ready, 1), 1);
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "after", 5, 0), 0);
        kill(child, SIGKILL);
        CU_ASSERT_EQUAL(test_wait(child), 128 + SIGKILL);

        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 1000), 6);
        t0 = ms_now();
        /* Stuck behind the dead claim until the daemon pads over it (300 ms here). */
        ssize_t n = shmbus_sub_recv(s, buf, sizeof(buf), 10000);
        CU_ASSERT_EQUAL(n, 5);
        CU_ASSERT_EQUAL(memcmp(buf, "after", 5), 0);
        /* Padded between 300 - 100 ms (one sweep) and 300 ms after the claim was made. */
        CU_ASSERT(ms_now() - t0 >= 150);
        CU_ASSERT(ms_now() - t0 < 5000);
        CU_ASSERT_EQUAL(shmbus_sub_lost(s), 0); /* never committed: nothing was lost */
        CU_ASSERT_EQUAL(stat_field(c, "crash", "unblocked"), 1);
        /* The dead publisher's slot was released. */
        CU_ASSERT_EQUAL(stat_field(c, "crash", "publishers_active"), 1);
        /* And the channel flows on. */
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "again", 5, 0), 0);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 1000), 5);

        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        close(fds[0]);
        close(fds[1]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_kill_subscriber(void) {
        pid_t d = daemon_start_fresh(NULL), child;
        shmbus_client *c = connect_ok();
        shmbus_channel *ch;
        shmbus_opts *o;
        shmbus_pub *p;
        int fds[2], n = 0;
        char msg[100] = {0}, ready;
        int64_t t0;

        shmbus_opts_new(&o);
        shmbus_opts_set_capacity(o, 4096);
        shmbus_opts_set_max_msg(o, 512);
        CU_ASSERT_EQUAL_FATAL(
                shmbus_client_open(c, "slow", SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH, o, &ch), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        child = fork();
        if (child == 0) {
                shmbus_client *cc;
                shmbus_channel *cch;
                shmbus_sub *cs;

                if (shmbus_client_new(sock, &cc) < 0 ||
                    shmbus_client_open(cc, "slow", 0, NULL, &cch) < 0 ||
                    shmbus_sub_new(cch, &cs) < 0)
                        _exit(1);
                if (write(fds[1], "s", 1) != 1)
                        _exit(1);
                pause(); /* never reads */
                _exit(0);
        }
        CU_ASSERT_EQUAL(read(fds[0], &ready, 1), 1);
        while (shmbus_pub_send(p, msg, sizeof(msg), 0) == 0)
                n++;
        CU_ASSERT(n > 0 && n < 64); /* the ring filled: the subscriber holds us back */
        CU_ASSERT_EQUAL(shmbus_pub_send(p, msg, sizeof(msg), 50), -ETIMEDOUT);
        kill(child, SIGKILL);
        test_wait(child);
        /* The daemon sees the process die and releases its slot: the blocked send goes on. */
        t0 = ms_now();
        CU_ASSERT_EQUAL(shmbus_pub_send(p, msg, sizeof(msg), 5000), 0);
        CU_ASSERT(ms_now() - t0 < 3000);
        CU_ASSERT_EQUAL(stat_field(c, "slow", "subscribers_active"), 0);
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        shmbus_opts_free(o);
        close(fds[0]);
        close(fds[1]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- the daemon killed and restarted while traffic flows ------------------------------------ */

#define RESTART_MSGS 200000

static void test_daemon_restart(void) {
        pid_t d = daemon_start_fresh(NULL), pub, sub;
        shmbus_client *c = connect_ok();
        shmbus_channel *ch;
        int fds[2], restarted[2];
        char ready;
        char *reply = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "flow", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        sub = fork();
        if (sub == 0) {
                shmbus_client *cc;
                shmbus_channel *cch;
                shmbus_sub *cs;
                char buf[600];
                uint32_t id, seq;

                if (shmbus_client_new(sock, &cc) < 0 ||
                    shmbus_client_open(cc, "flow", 0, NULL, &cch) < 0 ||
                    shmbus_sub_new(cch, &cs) < 0)
                        _exit(10);
                shmbus_client_free(cc); /* the connection is not needed to receive */
                if (write(fds[1], "s", 1) != 1)
                        _exit(11);
                for (uint32_t i = 0; i < RESTART_MSGS; i++) {
                        ssize_t n = shmbus_sub_recv(cs, buf, sizeof(buf), 20000);

                        if (n < 0)
                                _exit(12);
                        if (!tmsg_check(buf, (size_t)n, &id, &seq) || seq != i)
                                _exit(13);
                }
                _exit(shmbus_sub_lost(cs) == 0 ? 0 : 14);
        }
        CU_ASSERT_EQUAL(read(fds[0], &ready, 1), 1);
        CU_ASSERT_EQUAL_FATAL(pipe(restarted), 0);
        pub = fork();
        if (pub == 0) {
                shmbus_client *cc;
                shmbus_channel *cch;
                shmbus_pub *cp;
                char buf[600];

                if (shmbus_client_new(sock, &cc) < 0 ||
                    shmbus_client_open(cc, "flow", SHMBUS_OPEN_PUBLISH, NULL, &cch) < 0 ||
                    shmbus_pub_new(cch, &cp) < 0)
                        _exit(20);
                for (uint32_t i = 0; i < RESTART_MSGS; i++) {
                        size_t len = tmsg_len(0, i, 500);

                        tmsg_fill(buf, len, 0, i);
                        if (shmbus_pub_send(cp, buf, len, 20000) < 0)
                                _exit(21);
                        if (i % 20000 == 0)
                                sleep_ms(20); /* spread the run over the restart */
                }
                /* The same client object works again against the new daemon, once it is up. */
                char *rep = NULL, up;
                if (read(restarted[0], &up, 1) != 1 ||
                    shmbus_client_request(cc, "{\"v\":1,\"op\":\"hello\"}", &rep) < 0)
                        _exit(22);
                free(rep);
                _exit(0);
        }
        sleep_ms(50);
        kill(d, SIGKILL);
        test_wait(d);
        sleep_ms(100);
        d = daemon_start(NULL);
        CU_ASSERT_EQUAL(write(restarted[1], "u", 1), 1);
        CU_ASSERT_EQUAL(test_wait(pub), 0);
        CU_ASSERT_EQUAL(test_wait(sub), 0);

        /* The restarted daemon adopted the channel, and our old client reconnects to it. */
        CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"list\"}", &reply), 0);
        CU_ASSERT(reply && strstr(reply, "\"name\":\"flow\"") != NULL);
        free(reply);
        CU_ASSERT_EQUAL(stat_field(c, "flow", "published"), RESTART_MSGS);
        shmbus_client_free(c);
        close(fds[0]);
        close(fds[1]);
        close(restarted[0]);
        close(restarted[1]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- corrupt files at startup, limits ---------------------------------------------------- */

static void test_adopt_corrupt(void) {
        char path[700];
        shmbus_client *c;
        char *reply = NULL;
        pid_t d;
        FILE *f;

        fresh_shm();
        d = daemon_start(NULL);
        c = connect_ok();
        shmbus_channel *ch;
        CU_ASSERT_EQUAL(shmbus_client_open(c, "good", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        snprintf(path, sizeof(path), "%s/evil.ctl", shm);
        f = fopen(path, "w");
        for (int i = 0; i < 5000; i++)
                fputc(i * 7, f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/evil.data", shm);
        f = fopen(path, "w");
        fputs("junk", f);
        fclose(f);
        /* A valid channel whose header was damaged after the fact. */
        snprintf(path, sizeof(path), "%s/good.ctl", shm);
        CU_ASSERT_EQUAL(shmbus_channel_create(shm, "damaged", NULL, 0600, &ch), 0);
        ((struct shmbus_ctl *)ch->ctl_map)->max_msg = 0xffffffff;
        shmbus_channel_unref(ch);

        d = daemon_start(NULL);
        c = connect_ok();
        CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"list\"}", &reply), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"good\""));
        CU_ASSERT_PTR_NULL(strstr(reply, "\"evil\""));
        CU_ASSERT_PTR_NULL(strstr(reply, "\"damaged\""));
        free(reply);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_limits(void) {
        pid_t d = daemon_start_fresh("{\"max_connections\": 3, \"max_channels\": 2}");
        shmbus_client *c[4];
        shmbus_channel *ch;

        for (int i = 0; i < 3; i++)
                CU_ASSERT_EQUAL(shmbus_client_new(sock, &c[i]), 0);
        int r4 = shmbus_client_new(sock, &c[3]);
        if (r4 != -EUSERS)
                fprintf(stderr, "\n  4th connection: %s\n", shmbus_strerror(r4));
        CU_ASSERT_EQUAL(r4, -EUSERS);
        CU_ASSERT_EQUAL(shmbus_client_open(c[0], "one", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL(shmbus_client_open(c[0], "two", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL(shmbus_client_open(c[0], "three", SHMBUS_OPEN_CREATE, NULL, &ch), -EUSERS);
        for (int i = 0; i < 3; i++)
                shmbus_client_free(c[i]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        /*
         * One connection may open any number of channels over its life: the
         * daemon watches 64 of them for a quick release when the client dies,
         * and the sweep covers the rest (found by the soak test: a long-lived
         * client was refused its 65th channel even after deleting the others).
         */
        d = daemon_start_fresh("{\"max_channels\": 100}");
        shmbus_opts *o;
        char name[16];
        shmbus_opts_new(&o);
        shmbus_opts_set_capacity(o, 4096);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c[0]), 0);
        for (int i = 0; i < 70; i++) {
                /* Made through fresh connections: each has the same limit. */
                if (i % 32 == 0) {
                        if (i)
                                shmbus_client_free(c[1]);
                        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c[1]), 0);
                }
                snprintf(name, sizeof(name), "many%d", i);
                CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c[1], name, SHMBUS_OPEN_CREATE, o, &ch),
                                      0);
                shmbus_channel_unref(ch);
        }
        for (int i = 0; i < 70; i++) {
                snprintf(name, sizeof(name), "many%d", i);
                int r = shmbus_client_open(c[0], name, 0, NULL, &ch);

                CU_ASSERT_EQUAL(r, 0);
                if (r == 0)
                        shmbus_channel_unref(ch);
        }
        /* A client past the watched 64 dies holding a slot there: the sweep frees it. */
        pid_t child = fork();
        if (child == 0) {
                shmbus_client *cc;
                shmbus_channel *cch = NULL;
                shmbus_sub *cs;

                if (shmbus_client_new(sock, &cc) < 0)
                        _exit(1);
                for (int i = 0; i < 70; i++) {
                        snprintf(name, sizeof(name), "many%d", i);
                        if (cch)
                                shmbus_channel_unref(cch);
                        if (shmbus_client_open(cc, name, 0, NULL, &cch) < 0)
                                _exit(2);
                }
                _exit(shmbus_sub_new(cch, &cs) == 0 ? 0 : 3);
        }
        CU_ASSERT_EQUAL(test_wait(child), 0);
        for (int i = 0; i < 50 && stat_field(c[0], "many69", "subscribers_active") != 0; i++)
                sleep_ms(50);
        CU_ASSERT_EQUAL(stat_field(c[0], "many69", "subscribers_active"), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c[0], "many3", 0, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_opts_free(o);
        shmbus_client_free(c[0]);
        shmbus_client_free(c[1]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        d = daemon_start("{\"max_connections\": 3, \"max_channels\": 2}");
        sleep_ms(50);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c[0]),
                              0); /* a freed place is usable again */
        shmbus_client_free(c[0]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* SIGHUP re-reads the configuration; a bad file is refused and the old one kept. */
static void test_reload(void) {
        char cfgpath[700];
        shmbus_channel *ch;
        shmbus_client *c;
        pid_t d;
        FILE *f;

        d = daemon_start_fresh("{\"max_channels\": 1}");
        c = connect_ok();
        CU_ASSERT_EQUAL(shmbus_client_open(c, "first", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "second", SHMBUS_OPEN_CREATE, NULL, &ch), -EUSERS);

        snprintf(cfgpath, sizeof(cfgpath), "%s/shmbusd.json", dir);
        f = fopen(cfgpath, "w");
        fputs("{\"max_channels\": 4}", f);
        fclose(f);
        kill(d, SIGHUP);
        sleep_ms(200);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "second", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);

        f = fopen(cfgpath, "w");
        fputs("{\"max_channels\": \"lots\"}", f);
        fclose(f);
        kill(d, SIGHUP);
        sleep_ms(200);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "third", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- systemd: the notify protocol and socket activation ------------------------------------ */

/* Start the daemon with extra environment and, if @fd3 >= 0, that descriptor as fd 3. */
static pid_t spawn_daemon(const char *notify_path, int fd3) {
        const char *top = test_builddir();
        char bin[600];
        pid_t pid;

        snprintf(bin, sizeof(bin), "%s/daemon/shmbusd", top);
        pid = fork();
        if (pid == 0) {
                char self[32];
                int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                dup2(log, 1);
                dup2(log, 2);
                if (notify_path) {
                        setenv("NOTIFY_SOCKET", notify_path, 1);
                        setenv("WATCHDOG_USEC", "200000", 1);
                }
                if (fd3 >= 0) {
                        dup2(fd3, 3);
                        snprintf(self, sizeof(self), "%d", (int)getpid());
                        setenv("LISTEN_PID", self, 1);
                        setenv("LISTEN_FDS", "1", 1);
                }
                execl(bin, "shmbusd", "-s", sock, "-d", shm, (char *)NULL);
                _exit(127);
        }
        return pid;
}

/* Wait up to @ms for a notification containing @what; returns true if it came. */
static bool expect_notify(int fd, const char *what, int ms) {
        int64_t end = ms_now() + ms;

        while (ms_now() < end) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                char buf[600];
                ssize_t n;

                if (poll(&p, 1, (int)(end - ms_now())) != 1)
                        break;
                n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                        break;
                buf[n] = '\0';
                if (strstr(buf, what))
                        return true;
        }
        fprintf(stderr, "\n  no \"%s\" notification within %d ms\n", what, ms);
        return false;
}

static void test_notify(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        pid_t d;

        fresh_shm();
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
        CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        d = spawn_daemon(sa.sun_path, -1);
        CU_ASSERT(expect_notify(fd, "READY=1", 5000));
        CU_ASSERT(expect_notify(fd, "WATCHDOG=1", 1000)); /* every 100 ms for a 200 ms watchdog */
        CU_ASSERT(expect_notify(fd, "WATCHDOG=1", 1000));
        kill(d, SIGHUP);
        CU_ASSERT(expect_notify(fd, "RELOADING=1\nMONOTONIC_USEC=", 2000));
        CU_ASSERT(expect_notify(fd, "READY=1", 2000));
        kill(d, SIGTERM);
        CU_ASSERT(expect_notify(fd, "STOPPING=1", 2000));
        CU_ASSERT_EQUAL(test_wait(d), 0);
        close(fd);
}

static void test_socket_activation_type(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        bool logged = false;
        char line[512];
        pid_t d;
        FILE *f;

        fresh_shm();
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stream.sock", dir);
        CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        CU_ASSERT_EQUAL_FATAL(listen(fd, 4), 0);
        d = spawn_daemon(NULL, fd);
        CU_ASSERT_EQUAL(test_wait(d), 1); /* refuses to serve the wrong kind of socket */
        close(fd);
        f = fopen(logpath, "r");
        while (f && fgets(line, sizeof(line), f))
                logged |= strstr(line, "must be SOCK_SEQPACKET") != NULL;
        if (f)
                fclose(f);
        CU_ASSERT(logged);
}

int main(void) {
        static const struct test_case cases[] = {
                {"open, publish, receive across processes", test_open_pub_sub},
                {"bad requests get errors; daemon keeps serving", test_bad_requests},
                {"permissions by uid/gid, logged denials", test_permissions},
                {"bad config names the key", test_bad_config},
                {"an unsafe shm directory is refused", test_unsafe_shm_dir},
                {"publisher killed mid-claim: padded over, flows again",
                 test_kill_publisher_mid_claim},
                {"subscriber killed: blocked publisher goes on", test_kill_subscriber},
                {"daemon killed and restarted under traffic", test_daemon_restart},
                {"corrupt channel files are not adopted", test_adopt_corrupt},
                {"connection and channel limits", test_limits},
                {"SIGHUP reloads; a bad config keeps the old one", test_reload},
                {"systemd notify: READY, WATCHDOG, RELOADING, STOPPING", test_notify},
                {"socket activation refuses a stream socket", test_socket_activation_type},
                {NULL, NULL},
        };
        int rc;

        signal(SIGPIPE, SIG_IGN);
        if (testdaemon_setup("daemon") < 0)
                return 99;
        rc = test_run("daemon", cases);
        testdaemon_teardown(rc);
        return rc;
}
