/* SPDX-License-Identifier: MIT */
/*
 * The library in real programs (issue 16): what a service written against
 * shmbus.h expects. fork() after open, a hung daemon, errors that explain,
 * honest create, deleted channels, history for late joiners, untethered
 * monitors, slow subscribers, and waiting for a daemon or a channel. Each test
 * runs against a private shmbusd; anything that could hang without the fix
 * runs in a child with an alarm, so that a hang is a failure, not a stall.
 */
#undef NDEBUG
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"

#define LEDGER_N 3000

static char *out, *errout;
static pid_t daemon_pid;

/* A fresh daemon and shm directory for each test; the last test's daemon goes first. */
static void restart(void) {
        if (daemon_pid > 0)
                daemon_stop(daemon_pid);
        daemon_pid = daemon_start_fresh(NULL);
}

static void restart_with(const char *config) {
        if (daemon_pid > 0)
                daemon_stop(daemon_pid);
        daemon_pid = daemon_start_fresh(config);
}

static void stop(void) {
        if (daemon_pid > 0)
                daemon_stop(daemon_pid);
        daemon_pid = 0;
}

static shmbus_client *connect_ok(void) {
        shmbus_client *c = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        return c;
}

static shmbus_opts *opts_small(int policy, uint64_t capacity) {
        shmbus_opts *o = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_opts_new(&o), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, capacity), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_policy(o, policy), 0);
        return o;
}

/* A channel made through the daemon, mapped for publishing. */
static shmbus_channel *chan_create(shmbus_client *c, const char *name, int policy,
                                   uint64_t capacity) {
        shmbus_opts *o = opts_small(policy, capacity);
        shmbus_channel *ch = NULL;

        CU_ASSERT_EQUAL_FATAL(
                shmbus_client_open(c, name, SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE, o, &ch), 0);
        shmbus_opts_free(o);
        return ch;
}

static char *slurp(const char *path) {
        FILE *f = fopen(path, "r");
        char *buf = calloc(1, 1 << 16);
        size_t n = f ? fread(buf, 1, (1 << 16) - 1, f) : 0;

        buf[n] = '\0';
        if (f)
                fclose(f);
        return buf;
}

/* Run "[ENV] shmbus-cli ARGS" with @input on stdin, bounded by 20 s; return its exit code. */
static int cli(const char *env, const char *input, const char *args) {
        char cmd[4096], in[700], o[700], e[700];
        int st;

        snprintf(in, sizeof(in), "%s/cli.in", dir);
        snprintf(o, sizeof(o), "%s/cli.out", dir);
        snprintf(e, sizeof(e), "%s/cli.err", dir);
        FILE *f = fopen(in, "w");
        if (input)
                fputs(input, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd),
                 "SHMBUS_SOCKET='%s' %s timeout 20 %s/cli/shmbus-cli %s <%s >%s 2>%s", sock,
                 env ? env : "", test_builddir(), args, in, o, e);
        st = system(cmd);
        free(out);
        free(errout);
        out = slurp(o);
        errout = slurp(e);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Send message @i of a ledger: its number is the payload. */
static int ledger_send(shmbus_pub *p, uint32_t i, int timeout_ms) {
        uint8_t buf[48];

        memset(buf, (int)(i & 0xff), sizeof(buf));
        memcpy(buf, &i, sizeof(i));
        return shmbus_pub_send(p, buf, sizeof(buf), timeout_ms);
}

/* Receive @n ledger messages in order; 0 if every one came, intact and in turn. */
static int ledger_recv(shmbus_sub *s, uint32_t n) {
        uint8_t buf[64];

        for (uint32_t i = 0; i < n; i++) {
                ssize_t len = shmbus_sub_recv(s, buf, sizeof(buf), 5000);
                uint32_t got;

                if (len != 48) {
                        fprintf(stderr, "ledger: message %u: recv %zd (%s)\n", i, len,
                                shmbus_strerror((int)len));
                        return 1;
                }
                memcpy(&got, buf, sizeof(got));
                if (got != i) {
                        fprintf(stderr, "ledger: expected message %u, got %u (lost %llu)\n", i, got,
                                (unsigned long long)shmbus_sub_lost(s));
                        return 1;
                }
        }
        return shmbus_sub_lost(s) == 0 ? 0 : 1;
}

/* ---- 1. fork() ------------------------------------------------------------------------ */

/*
 * A subscriber made in a forked child of the process that opened the channel
 * must be the child's: the parent exiting does not free it, so the child gets
 * every message of a block channel.
 */
static void test_fork_child_outlives_parent(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL;
        int ready[2], result[2];
        pid_t parent;
        char b = 0;

        restart();
        c = connect_ok();
        ch = chan_create(c, "fork1", SHMBUS_POLICY_BLOCK, 16384);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(result), 0);

        parent = fork();
        if (parent == 0) {
                shmbus_client *pc = NULL;
                shmbus_channel *pch = NULL;
                pid_t child;

                alarm(30);
                if (shmbus_client_new(sock, &pc) < 0 ||
                    shmbus_client_open(pc, "fork1", 0, NULL, &pch) < 0)
                        _exit(2);
                child = fork();
                if (child == 0) {
                        shmbus_sub *s = NULL;

                        if (shmbus_sub_new(pch, &s) < 0)
                                _exit(3);
                        if (write(ready[1], "r", 1) != 1)
                                _exit(4);
                        /* Let the parent die and the daemon reap it before reading. */
                        sleep_ms(400);
                        b = ledger_recv(s, LEDGER_N) == 0 ? 'y' : 'n';
                        _exit(write(result[1], &b, 1) == 1 ? 0 : 5);
                }
                /* Leave once the child has joined: the daemon reaps our pid's slots. */
                _exit(read(ready[0], &b, 1) == 1 && child > 0 ? 0 : 6);
        }
        close(result[1]);
        CU_ASSERT_EQUAL(test_wait(parent), 0);
        sleep_ms(250);
        for (uint32_t i = 0; i < LEDGER_N; i++)
                if (ledger_send(p, i, 5000) != 0) {
                        CU_FAIL("publisher failed");
                        break;
                }
        /* The grandchild is not ours to wait for: it reports through the pipe. */
        CU_ASSERT_EQUAL(read(result[0], &b, 1), 1);
        CU_ASSERT_EQUAL(b, 'y');
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        close(ready[0]);
        close(ready[1]);
        close(result[0]);
}

/*
 * A subscriber made in a forked child that dies is freed while its parent
 * lives: a block channel goes on. The parent's own subscriber checks the
 * ledger.
 */
static void test_fork_child_dies(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL;
        int ready[2];
        pid_t parent;
        char b;

        restart();
        c = connect_ok();
        ch = chan_create(c, "fork2", SHMBUS_POLICY_BLOCK, 16384);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);

        parent = fork();
        if (parent == 0) {
                shmbus_client *pc = NULL;
                shmbus_channel *pch = NULL;
                shmbus_sub *mine = NULL;

                alarm(30);
                if (shmbus_client_new(sock, &pc) < 0 ||
                    shmbus_client_open(pc, "fork2", 0, NULL, &pch) < 0 ||
                    shmbus_sub_new(pch, &mine) < 0)
                        _exit(2);
                if (fork() == 0) {
                        shmbus_sub *s = NULL;

                        /* Join, say so, and die without leaving. */
                        _exit(shmbus_sub_new(pch, &s) == 0 && write(ready[1], "r", 1) == 1 ? 0 : 3);
                }
                _exit(ledger_recv(mine, LEDGER_N) == 0 ? 0 : 5);
        }
        CU_ASSERT_EQUAL(read(ready[0], &b, 1), 1);
        for (uint32_t i = 0; i < LEDGER_N; i++)
                if (ledger_send(p, i, 3000) != 0) {
                        CU_FAIL("publisher held back by a dead child's slot");
                        break;
                }
        CU_ASSERT_EQUAL(test_wait(parent), 0);
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        close(ready[0]);
        close(ready[1]);
}

/* Objects made before fork() refuse to work in the child, and leave the parent's slots be. */
static void test_fork_echild(void) {
        shmbus_client *c;
        shmbus_channel *ch = NULL, *ch2 = NULL;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char buf[16];
        pid_t pid;

        restart();
        c = connect_ok();
        ch = chan_create(c, "fork3", SHMBUS_POLICY_BLOCK, 16384);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        pid = fork();
        if (pid == 0) {
                int bad = 0;
                void *w;

                alarm(10);
                bad |= (shmbus_pub_send(p, "x", 1, 0) != -ECHILD) << 0;
                bad |= (shmbus_pub_claim(p, 1, 0, &w) != -ECHILD) << 1;
                bad |= (shmbus_sub_recv(s, buf, sizeof(buf), 0) != -ECHILD) << 2;
                bad |= (shmbus_client_open(c, "fork3", 0, NULL, &ch2) != -ECHILD) << 3;
                bad |= (strstr(shmbus_client_last_error(c), "fork") == NULL) << 4;
                /* Freeing here must not release the parent's slots. */
                shmbus_pub_free(p);
                shmbus_sub_free(s);
                shmbus_client_free(c);
                _exit(bad);
        }
        CU_ASSERT_EQUAL(test_wait(pid), 0);
        /* The parent's objects still work, and its slots are still its own. */
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "hello", 5, 0), 0);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 1000), 5);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "fork3", 0, NULL, &ch2), 0);
        shmbus_channel_unref(ch2);
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
}

/* ---- 2. a hung daemon ------------------------------------------------------------------ */

static void test_hung_daemon(void) {
        shmbus_client *c;
        pid_t d, pid;
        shmbus_channel *ch = NULL;
        int64_t t0;

        restart();
        d = daemon_pid;
        c = connect_ok();
        CU_ASSERT_EQUAL(shmbus_client_set_timeout(c, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_client_set_timeout(c, -2), -EINVAL);
        CU_ASSERT_EQUAL(kill(d, SIGSTOP), 0);

        /* In a child with an alarm: without timeouts this hangs for ever. */
        pid = fork();
        if (pid == 0) {
                shmbus_client *c2 = NULL;
                int bad = 0;

                alarm(10);
                setenv("SHMBUS_TIMEOUT_MS", "300", 1);
                t0 = ms_now();
                bad |= (shmbus_client_new(sock, &c2) != -ETIMEDOUT) << 0;
                bad |= (ms_now() - t0 > 3000) << 1;
                bad |= (strstr(shmbus_client_last_error(NULL), "not answering") == NULL) << 2;
                _exit(bad);
        }
        CU_ASSERT_EQUAL(test_wait(pid), 0);

        /* A client made before: its requests time out too, after its own timeout. */
        CU_ASSERT_EQUAL(shmbus_client_set_timeout(c, 250), 0);
        t0 = ms_now();
        CU_ASSERT_EQUAL(shmbus_client_open(c, "hung", SHMBUS_OPEN_CREATE, NULL, &ch), -ETIMEDOUT);
        CU_ASSERT(ms_now() - t0 < 3000);
        CU_ASSERT_PTR_NOT_NULL(strstr(shmbus_client_last_error(c), "not answering"));

        /* Every CLI verb says so and exits 7 within the timeout. */
        for (const char *const *v =
                     (const char *const[]){"list", "status x", "version", "tail x", "pub x hello",
                                           "create x", "delete x", NULL};
             *v; v++) {
                t0 = ms_now();
                CU_ASSERT_EQUAL(cli("SHMBUS_TIMEOUT_MS=300", NULL, *v), 7);
                CU_ASSERT(ms_now() - t0 < 5000);
                CU_ASSERT_PTR_NOT_NULL(strstr(errout, "not answering"));
        }

        /* Once it runs again, the same client reconnects by itself. */
        CU_ASSERT_EQUAL(kill(d, SIGCONT), 0);
        CU_ASSERT_EQUAL(shmbus_client_set_timeout(c, 5000), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "hung", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        CU_ASSERT_STRING_EQUAL(shmbus_client_last_error(c), "");
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
}

/* ---- 3. errors that explain ------------------------------------------------------------ */

static void test_errors_explain(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char buf[8];
        size_t len;
        void *w;

        restart();
        c = connect_ok();
        ch = chan_create(c, "chat", SHMBUS_POLICY_BLOCK, 65536);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);

        /* A negative timeout other than -1 is a mistake, not "for ever". */
        CU_ASSERT_EQUAL(shmbus_pub_send(p, "x", 1, -2), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_pub_claim(p, 1, -100, &w), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), -5), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_sub_peek(s, (const void **)&w, &len, -7), -EINVAL);

        /* The daemon's words reach the caller. */
        CU_ASSERT_EQUAL(shmbus_client_open(c, "missing", 0, NULL, &ch), -ENOENT);
        CU_ASSERT_PTR_NOT_NULL(strstr(shmbus_client_last_error(c), "no channel missing"));
        CU_ASSERT_EQUAL(shmbus_client_open(c, "bad/name", 0, NULL, &ch), -EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(shmbus_client_last_error(c), "A-Za-z0-9._-"));
        /* Another thread's failure is not this client's. */
        CU_ASSERT_STRING_EQUAL(shmbus_client_last_error((shmbus_client *)(uintptr_t)8), "");

        if (geteuid() == 0) {
                int err[2];
                char text[512] = "";
                pid_t pid;

                chmod(dir, 0755);
                pid = fork();

                if (pid == 0) {
                        shmbus_client *u = NULL;
                        shmbus_channel *uch = NULL;

                        alarm(10);
                        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                                _exit(9);
                        if (shmbus_client_new(sock, &u) < 0)
                                _exit(2);
                        if (shmbus_client_open(u, "chat", 0, NULL, &uch) != -EACCES)
                                _exit(3);
                        _exit(strstr(shmbus_client_last_error(u), "permission denied on channel "
                                                                  "chat")
                                      ? 0
                                      : 4);
                }
                CU_ASSERT_EQUAL(test_wait(pid), 0);
                /* The CLI prints it too. */
                CU_ASSERT_EQUAL_FATAL(pipe(err), 0);
                pid = fork();
                if (pid == 0) {
                        char bin[600];

                        alarm(10);
                        snprintf(bin, sizeof(bin), "%s/cli/shmbus-cli", test_builddir());
                        dup2(err[1], 2);
                        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                                _exit(9);
                        execl(bin, bin, "-s", sock, "pub", "chat", "hello", (char *)NULL);
                        _exit(127);
                }
                close(err[1]);
                CU_ASSERT_EQUAL(test_wait(pid), 4);
                CU_ASSERT(read(err[0], text, sizeof(text) - 1) > 0);
                CU_ASSERT_PTR_NOT_NULL(strstr(text, "permission denied on channel chat"));
                close(err[0]);
        }

        /* Limits are named with their values. */
        CU_ASSERT_EQUAL(cli(NULL, NULL, "create c2 --capacity 65537"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "power of two from 4096"));
        CU_ASSERT_EQUAL(cli(NULL, NULL, "create 'bad name'"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "A-Z a-z 0-9 . _ -"));
        {
                char *big = malloc(70001);

                memset(big, 'x', 70000);
                big[70000] = '\0';
                CU_ASSERT_EQUAL(cli(NULL, big, "pub chat --whole"), 1);
                CU_ASSERT_PTR_NOT_NULL(strstr(errout, "> max_msg 16384"));
                free(big);
        }
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
}

/* ---- 4. honest create ------------------------------------------------------------------ */

static void test_honest_create(void) {
        shmbus_client *c;
        shmbus_channel *ch = NULL;
        shmbus_opts *o;

        restart();
        c = connect_ok();
        CU_ASSERT_EQUAL_FATAL(
                shmbus_client_open(c, "hc", SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE, NULL, &ch),
                0);
        shmbus_channel_unref(ch);
        ch = NULL;

        o = opts_small(SHMBUS_POLICY_OVERWRITE, 65536);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "hc", SHMBUS_OPEN_CREATE, o, &ch), -EEXIST);
        CU_ASSERT_PTR_NOT_NULL(
                strstr(shmbus_client_last_error(c), "capacity 1048576 (asked 65536)"));
        CU_ASSERT_PTR_NOT_NULL(
                strstr(shmbus_client_last_error(c), "policy block (asked overwrite)"));
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "hc",
                                                 SHMBUS_OPEN_CREATE | SHMBUS_OPEN_ACCEPT_EXISTING,
                                                 o, &ch),
                              0);
        /* What it got, told by the getters. */
        CU_ASSERT_EQUAL(shmbus_channel_capacity(ch), 1048576);
        CU_ASSERT_EQUAL(shmbus_channel_policy(ch), SHMBUS_POLICY_BLOCK);
        CU_ASSERT_EQUAL(shmbus_channel_max_msg(ch), 65536);
        CU_ASSERT_EQUAL(shmbus_channel_max_subscribers(ch), 16);
        CU_ASSERT_EQUAL(shmbus_channel_max_publishers(ch), 16);
        CU_ASSERT_EQUAL(shmbus_channel_capacity(NULL), 0);
        CU_ASSERT_EQUAL(shmbus_channel_policy(NULL), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_channel_max_subscribers(NULL), 0);
        shmbus_channel_unref(ch);
        ch = NULL;
        /* The same settings are no difference. */
        CU_ASSERT_EQUAL(shmbus_opts_set_capacity(o, 1048576), 0);
        CU_ASSERT_EQUAL(shmbus_opts_set_policy(o, SHMBUS_POLICY_BLOCK), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "hc", SHMBUS_OPEN_CREATE, o, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_opts_free(o);

        /* The CLI: options that differ fail and say how; none at all take what is there. */
        CU_ASSERT_NOT_EQUAL(cli(NULL, NULL, "create hc --policy overwrite --capacity 65536"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "policy block (asked overwrite)"));
        CU_ASSERT_EQUAL(cli(NULL, NULL, "create hc"), 0);
        shmbus_client_free(c);
}

/* ---- 5. deleted channels --------------------------------------------------------------- */

static void test_deleted(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL, *p2 = NULL;
        shmbus_sub *s = NULL, *idle = NULL;
        pid_t reader, writer;
        char buf[64];

        restart();
        c = connect_ok();
        ch = chan_create(c, "gone", SHMBUS_POLICY_BLOCK, 4096);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p2), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &idle), 0);

        /* A reader asleep for ever on the channel. */
        reader = fork();
        if (reader == 0) {
                shmbus_sub *rs = NULL;

                alarm(10);
                ssize_t r;

                if (shmbus_sub_new(ch, &rs) < 0)
                        _exit(2);
                while ((r = shmbus_sub_recv(rs, buf, sizeof(buf), -1)) > 0)
                        ;
                _exit(r == -EIDRM ? 0 : 3);
        }
        /* A publisher blocked for ever on a full block channel (idle never reads). */
        while (shmbus_pub_send(p, "fill", 4, 0) == 0)
                ;
        writer = fork();
        if (writer == 0) {
                shmbus_pub *wp = NULL;

                alarm(10);
                if (shmbus_pub_new(ch, &wp) < 0)
                        _exit(2);
                _exit(shmbus_pub_send(wp, "more", 4, -1) == -EIDRM ? 0 : 3);
        }
        sleep_ms(300);
        CU_ASSERT_EQUAL(shmbus_client_delete(c, "gone"), 0);
        CU_ASSERT_EQUAL(test_wait(reader), 0);
        CU_ASSERT_EQUAL(test_wait(writer), 0);
        /* What was published is still delivered, then the end is told. */
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), 4);
        while (shmbus_sub_recv(s, buf, sizeof(buf), 0) == 4)
                ;
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), -EIDRM);
        CU_ASSERT_EQUAL(shmbus_pub_send(p2, "late", 4, 0), -EIDRM);
        CU_ASSERT_EQUAL(shmbus_sub_new(ch, &s), -EIDRM);
        shmbus_pub_free(p);
        shmbus_pub_free(p2);
        shmbus_sub_free(s);
        shmbus_sub_free(idle);
        shmbus_channel_unref(ch);

        /* A subscriber parked on its descriptor is told too: it polls readable, then -EIDRM. */
        ch = chan_create(c, "gone3", SHMBUS_POLICY_BLOCK, 4096);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        {
                struct pollfd pfd = {.fd = shmbus_sub_fd(s), .events = POLLIN};

                CU_ASSERT(pfd.fd >= 0);
                CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), -EAGAIN);
                CU_ASSERT_EQUAL(poll(&pfd, 1, 0), 0);
                CU_ASSERT_EQUAL(shmbus_client_delete(c, "gone3"), 0);
                CU_ASSERT_EQUAL(poll(&pfd, 1, 3000), 1);
                CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), -EIDRM);
        }
        s = shmbus_sub_free(s);
        shmbus_channel_unref(ch);

        /* Files removed behind the daemon's back end the channel too, within a sweep or two. */
        ch = chan_create(c, "gone2", SHMBUS_POLICY_BLOCK, 4096);
        reader = fork();
        if (reader == 0) {
                shmbus_sub *rs = NULL;

                alarm(10);
                if (shmbus_sub_new(ch, &rs) < 0)
                        _exit(2);
                _exit(shmbus_sub_recv(rs, buf, sizeof(buf), -1) == -EIDRM ? 0 : 3);
        }
        sleep_ms(200);
        {
                char path[700];

                snprintf(path, sizeof(path), "%s/gone2.ctl", shm);
                CU_ASSERT_EQUAL(unlink(path), 0);
                snprintf(path, sizeof(path), "%s/gone2.data", shm);
                CU_ASSERT_EQUAL(unlink(path), 0);
        }
        CU_ASSERT_EQUAL(test_wait(reader), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "gone2", 0, NULL, &ch), -ENOENT);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
}

/* ---- 6. history ------------------------------------------------------------------------ */

static void test_history(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char buf[128];
        int n;

        restart();
        c = connect_ok();
        ch = chan_create(c, "hist", SHMBUS_POLICY_BLOCK, 4096);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        for (int i = 0; i < 10; i++) {
                snprintf(buf, sizeof(buf), "m%d", i);
                CU_ASSERT_EQUAL(shmbus_pub_send(p, buf, strlen(buf), 0), 0);
        }
        CU_ASSERT_EQUAL(shmbus_sub_new_ex(ch, 0x80, 0, &s), -EINVAL);

        /*
         * Everything still in the ring, numbered. Tethered, on a block channel:
         * it holds publishers back from where it starts, so the ring fills up
         * to its oldest message and no further, and it loses nothing.
         */
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new_ex(ch, 0, SHMBUS_SUB_HISTORY_ALL, &s), 0);
        CU_ASSERT_EQUAL(shmbus_sub_seq(s), UINT64_MAX);
        {
                shmbus_sub *s3 = NULL;

                /* The last three. */
                CU_ASSERT_EQUAL_FATAL(shmbus_sub_new_ex(ch, 0, 3, &s3), 0);
                CU_ASSERT_EQUAL(shmbus_sub_recv(s3, buf, sizeof(buf), 0), 2);
                CU_ASSERT_EQUAL(memcmp(buf, "m7", 2), 0);
                CU_ASSERT_EQUAL(shmbus_sub_seq(s3), 7);
                CU_ASSERT_EQUAL(shmbus_sub_recv(s3, buf, sizeof(buf), 0), 2);
                CU_ASSERT_EQUAL(shmbus_sub_recv(s3, buf, sizeof(buf), 0), 2);
                CU_ASSERT_EQUAL(shmbus_sub_seq(s3), 9);
                CU_ASSERT_EQUAL(shmbus_sub_recv(s3, buf, sizeof(buf), 0), -EAGAIN);
                shmbus_sub_free(s3);
        }
        for (n = 0; n < 1000 && shmbus_pub_send(p, "fill-fill-fill", 14, 0) == 0; n++)
                ;
        CU_ASSERT_EQUAL(n, 4096 / 32 - 10);
        for (n = 0; shmbus_sub_recv(s, buf, sizeof(buf), 0) > 0; n++)
                CU_ASSERT_EQUAL(shmbus_sub_seq(s), (uint64_t)n);
        CU_ASSERT_EQUAL(n, 4096 / 32);
        CU_ASSERT_EQUAL(shmbus_sub_lost(s), 0);
        s = shmbus_sub_free(s);

        /* On a lapped overwrite ring: from the oldest left, contiguous, nothing counted lost. */
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        ch = chan_create(c, "hist2", SHMBUS_POLICY_OVERWRITE, 4096);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        for (uint32_t i = 0; i < 500; i++)
                CU_ASSERT_EQUAL(ledger_send(p, i, 0), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new_ex(ch, 0, SHMBUS_SUB_HISTORY_ALL, &s), 0);
        {
                uint64_t first = UINT64_MAX, last = 0;
                uint32_t got;

                while (shmbus_sub_recv(s, buf, sizeof(buf), 0) == 48) {
                        memcpy(&got, buf, 4);
                        CU_ASSERT_EQUAL(got, shmbus_sub_seq(s));
                        if (first == UINT64_MAX)
                                first = got;
                        CU_ASSERT(got == first || got == last + 1);
                        last = got;
                }
                CU_ASSERT(first > 0 && first < 500);
                CU_ASSERT_EQUAL(last, 499);
                CU_ASSERT_EQUAL(shmbus_sub_lost(s), 0);
        }
        shmbus_sub_free(s);

        /* shmbus-cli tail -n reads through it: the last three, numbered. */
        CU_ASSERT_EQUAL(cli(NULL, NULL, "tail hist2 -n 3 --format json"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"seq\":497"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"seq\":499"));
        CU_ASSERT_PTR_NULL(strstr(out, "\"seq\":496"));
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
}

/* ---- 7. untethered monitors ------------------------------------------------------------ */

static void test_untethered(void) {
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_pub *p = NULL;
        shmbus_sub *s = NULL;
        char buf[64], cmd[1024];
        uint64_t received = 0;
        pid_t tail;

        restart();
        c = connect_ok();
        ch = chan_create(c, "mon", SHMBUS_POLICY_BLOCK, 4096);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new_ex(ch, SHMBUS_SUB_UNTETHERED, 0, &s), 0);

        /* A monitor that never reads never holds a publisher back... */
        for (uint32_t i = 0; i < 1000; i++)
                if (ledger_send(p, i, 0) != 0) {
                        CU_FAIL("an untethered subscriber held the publisher back");
                        break;
                }
        /* ...and what it missed is counted exactly. */
        while (shmbus_sub_recv(s, buf, sizeof(buf), 0) == 48)
                received++;
        CU_ASSERT(shmbus_sub_lost(s) > 0);
        CU_ASSERT_EQUAL(received + shmbus_sub_lost(s), 1000);
        CU_ASSERT_EQUAL(shmbus_sub_seq(s), 999);
        shmbus_sub_free(s);

        /* A stopped `tail -f` does not stall a publisher either. */
        snprintf(cmd, sizeof(cmd), "%s/cli/shmbus-cli", test_builddir());
        tail = fork();
        if (tail == 0) {
                int null = open("/dev/null", O_WRONLY);

                dup2(null, 1);
                setenv("SHMBUS_SOCKET", sock, 1);
                execl(cmd, cmd, "tail", "-f", "-n", "0", "mon", (char *)NULL);
                _exit(127);
        }
        sleep_ms(500); /* it has joined */
        CU_ASSERT_EQUAL(kill(tail, SIGSTOP), 0);
        for (uint32_t i = 0; i < 1000; i++)
                if (ledger_send(p, i, 200) != 0) {
                        CU_FAIL("a stopped tail -f stalled the publisher");
                        break;
                }
        kill(tail, SIGKILL);
        kill(tail, SIGCONT);
        test_wait(tail);
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
}

/* ---- 8. slow subscribers --------------------------------------------------------------- */

/*
 * A subscriber that never reads on a block channel with a slow-subscriber
 * timeout (@opts, or the daemon's rule for @name) is evicted, and publishers
 * go on; a subscriber that keeps up is not, and gets every message. The
 * channel then counts @evicted evictions in all.
 */
static void evict_one(shmbus_client *c, const char *name, const shmbus_opts *opts,
                      unsigned evicted) {
        shmbus_channel *ch = NULL;
        shmbus_pub *p = NULL;
        shmbus_sub *stuck = NULL;
        char buf[64], req[128], want[32], *reply = NULL;
        int ready[2];
        pid_t reader;
        int64_t t0;

        CU_ASSERT_EQUAL_FATAL(
                shmbus_client_open(c, name, SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE, opts, &ch),
                0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(ch, &p), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &stuck), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
        reader = fork();
        if (reader == 0) {
                shmbus_sub *s = NULL;

                alarm(30);
                if (shmbus_sub_new(ch, &s) < 0 || write(ready[1], "r", 1) != 1)
                        _exit(2);
                _exit(ledger_recv(s, 500) == 0 ? 0 : 3);
        }
        CU_ASSERT_EQUAL(read(ready[0], buf, 1), 1);
        t0 = ms_now();
        for (uint32_t i = 0; i < 500; i++)
                if (ledger_send(p, i, 5000) != 0) {
                        CU_FAIL("a slow subscriber held the publisher back past its timeout");
                        break;
                }
        CU_ASSERT(ms_now() - t0 < 4000);
        CU_ASSERT_EQUAL(test_wait(reader), 0);
        /* The evicted subscriber is told, and the channel counts it. */
        CU_ASSERT_EQUAL(shmbus_sub_recv(stuck, buf, sizeof(buf), 0), -ECONNABORTED);
        snprintf(req, sizeof(req), "{\"op\":\"stat\",\"name\":\"%s\"}", name);
        CU_ASSERT_EQUAL(shmbus_client_request(c, req, &reply), 0);
        snprintf(want, sizeof(want), "\"evicted\":%u", evicted);
        CU_ASSERT(reply && strstr(reply, want));
        free(reply);
        /* Freeing it frees the slot for others. */
        shmbus_sub_free(stuck);
        stuck = NULL;
        CU_ASSERT_EQUAL(shmbus_sub_new(ch, &stuck), 0);
        shmbus_sub_free(stuck);
        shmbus_pub_free(p);
        shmbus_channel_unref(ch);
        close(ready[0]);
        close(ready[1]);
}

static void test_evict(void) {
        shmbus_client *c;
        shmbus_opts *o = opts_small(SHMBUS_POLICY_BLOCK, 4096);
        char cmd[700];

        restart_with("{\"channels\": {\"slow2\": {\"capacity\": 4096,"
                     " \"slow_subscriber_timeout_ms\": 300}}}");
        c = connect_ok();
        CU_ASSERT_EQUAL(shmbus_opts_set_slow_subscriber_timeout(o, 3600001), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_set_slow_subscriber_timeout(o, 300), 0);
        evict_one(c, "slow", o, 1);
        evict_one(c, "slow2", NULL, 1);
        /* Logged, with the pid. */
        snprintf(cmd, sizeof(cmd), "grep -c 'evicted subscriber slot' %s | grep -qx 2", logpath);
        CU_ASSERT_EQUAL(system(cmd), 0);
        /* The timeout "slow" was created with outlives a daemon restart (its meta file). */
        shmbus_client_free(c);
        daemon_stop(daemon_pid);
        daemon_pid = daemon_start(NULL);
        c = connect_ok();
        evict_one(c, "slow", NULL, 2);
        shmbus_opts_free(o);
        shmbus_client_free(c);
}

/* ---- 9. waiting for the daemon or a channel ------------------------------------------- */

static void test_wait_for(void) {
        shmbus_client *c = NULL;
        shmbus_channel *ch = NULL;
        pid_t d, maker;
        int64_t t0;

        stop();
        fresh_shm();
        /* No daemon yet: it comes 300 ms later. */
        t0 = shmbus_client_new_wait(sock, 100, &c);
        CU_ASSERT(t0 == -ENOENT || t0 == -ECONNREFUSED);
        CU_ASSERT_EQUAL(shmbus_client_new_wait(sock, -5, &c), -EINVAL);
        maker = fork();
        if (maker == 0) {
                sleep_ms(300);
                daemon_start(NULL);
                pause();
                _exit(0);
        }
        t0 = ms_now();
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new_wait(sock, 10000, &c), 0);
        CU_ASSERT(ms_now() - t0 < 8000);

        /* A channel that appears 300 ms later. */
        CU_ASSERT_EQUAL(shmbus_client_open(c, "later", SHMBUS_OPEN_WAIT, NULL, &ch), -ENOENT);
        d = fork();
        if (d == 0) {
                shmbus_client *c2 = NULL;
                shmbus_channel *ch2 = NULL;

                sleep_ms(300);
                _exit(shmbus_client_new(sock, &c2) == 0 &&
                                      shmbus_client_open(c2, "later", SHMBUS_OPEN_CREATE, NULL,
                                                         &ch2) == 0
                              ? 0
                              : 1);
        }
        CU_ASSERT_EQUAL(shmbus_client_set_timeout(c, 5000), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "later", SHMBUS_OPEN_WAIT, NULL, &ch), 0);
        CU_ASSERT_EQUAL(test_wait(d), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        kill(maker, SIGTERM);
        test_wait(maker);
}

int main(void) {
        static const struct test_case cases[] = {
                {"fork: a child's subscriber outlives its parent", test_fork_child_outlives_parent},
                {"fork: a dead child's subscriber is freed", test_fork_child_dies},
                {"fork: objects of the parent answer -ECHILD", test_fork_echild},
                {"a hung daemon hangs nobody", test_hung_daemon},
                {"errors that explain", test_errors_explain},
                {"honest create and channel getters", test_honest_create},
                {"a deleted channel ends its members", test_deleted},
                {"history for late joiners", test_history},
                {"untethered monitors never hold publishers back", test_untethered},
                {"a slow subscriber is evicted, publishers go on", test_evict},
                {"waiting for the daemon and for a channel", test_wait_for},
                {NULL, NULL},
        };
        int rc;

        signal(SIGPIPE, SIG_IGN);
        if (testdaemon_setup("contract") < 0)
                return 99;
        rc = test_run("contract", cases);
        stop();
        testdaemon_teardown(rc);
        free(out);
        free(errout);
        return rc;
}
