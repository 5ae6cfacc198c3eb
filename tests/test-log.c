/* SPDX-License-Identifier: MIT */
/*
 * shmbusd's logging: structured fields in the journal when stderr is the
 * journal, a priority prefix when the journal's socket is unusable, plain
 * text elsewhere, the level set on the command line or in the configuration,
 * and repeated lines rate-limited so that a peer cannot flood the log.
 *
 * The journal is stood in for by a datagram socket of the test's own
 * ($SHMBUS_JOURNAL_SOCKET), and $JOURNAL_STREAM is set to the device and
 * inode of the daemon's stderr, as systemd does.
 */
#undef NDEBUG
#include <CUnit/Basic.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"

static int journal_fd = -1;
static char journal_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

/* Make the daemon's stderr (the log file) "the journal", served by our socket. */
static void journal_setup(bool socket_works) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char stream[64];
        struct stat st;
        int fd;

        fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_EQUAL_FATAL(fstat(fd, &st), 0);
        close(fd);
        snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", stream, 1);
        CU_ASSERT_FATAL(snprintf(journal_path, sizeof(journal_path), "%s/journal.socket", dir) <
                        (int)sizeof(journal_path));
        setenv("SHMBUS_JOURNAL_SOCKET", journal_path, 1);
        unlink(journal_path);
        if (!socket_works)
                return;
        journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CU_ASSERT_FATAL(journal_fd >= 0);
        memcpy(sa.sun_path, journal_path, sizeof(sa.sun_path));
        CU_ASSERT_EQUAL_FATAL(bind(journal_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void journal_teardown(void) {
        unsetenv("JOURNAL_STREAM");
        unsetenv("SHMBUS_JOURNAL_SOCKET");
        if (journal_fd >= 0)
                close(journal_fd);
        journal_fd = -1;
}

/* Wait up to @ms for a journal entry holding every string in @want (NULL-terminated). */
static bool journal_expect(const char *const *want, int ms) {
        int64_t end = ms_now() + ms;
        char buf[4096];

        while (ms_now() < end) {
                struct pollfd p = {.fd = journal_fd, .events = POLLIN};
                ssize_t n;
                bool all = true;

                if (poll(&p, 1, (int)(end - ms_now())) != 1)
                        break;
                n = recv(journal_fd, buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                        break;
                buf[n] = '\0';
                for (const char *const *w = want; *w; w++)
                        all &= strstr(buf, *w) != NULL;
                if (all)
                        return true;
        }
        fprintf(stderr, "\n  no journal entry with \"%s\"...\n", want[0]);
        return false;
}

/* Lines of the log file containing @what. */
static unsigned log_count(const char *what) {
        FILE *f = fopen(logpath, "r");
        char line[1024];
        unsigned n = 0;

        while (f && fgets(line, sizeof(line), f))
                n += strstr(line, what) != NULL;
        if (f)
                fclose(f);
        return n;
}

/* A child of uid 65534 asks to create @name; the daemon's config lets only root create. */
static int open_as_nobody(const char *name) {
        pid_t pid = fork();

        if (pid == 0) {
                shmbus_client *c;
                shmbus_channel *ch;
                int r;

                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(99);
                if (shmbus_client_new(sock, &c) < 0)
                        _exit(98);
                r = shmbus_client_open(c, name, SHMBUS_OPEN_CREATE, NULL, &ch);
                _exit(r == -EACCES ? 0 : 1);
        }
        return test_wait(pid);
}

static void test_journal_fields(void) {
        const char *ready[] = {"PRIORITY=6\n", "SYSLOG_IDENTIFIER=shmbusd\n", "MESSAGE=", "ready",
                               NULL};
        const char *denied[] = {"PRIORITY=5\n",
                                "SHMBUS_CHANNEL=secret\n",
                                "SHMBUS_UID=65534\n",
                                "ERRNO=13\n",
                                "MESSAGE=denied: uid",
                                "CODE_FUNC=",
                                NULL};
        pid_t d;

        if (getuid() != 0) {
                fprintf(stderr, " (not run: needs root to act as uid 65534)");
                return;
        }
        fresh_shm();
        chmod(dir, 0755); /* uid 65534 must reach the socket */
        journal_setup(true);
        d = daemon_start("{\"create\": {\"uids\": [0]}}");
        CU_ASSERT(journal_expect(ready, 3000));
        CU_ASSERT_EQUAL(open_as_nobody("secret"), 0);
        CU_ASSERT(journal_expect(denied, 3000));
        /* In the journal, not also on stderr. */
        CU_ASSERT_EQUAL(log_count("denied: uid 65534"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        journal_teardown();
}

static void test_journal_unreachable(void) {
        pid_t d;

        fresh_shm();
        journal_setup(false); /* stderr is the journal, but its socket is not there */
        d = daemon_start(NULL);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        CU_ASSERT(log_count("<6>shmbusd: ") >= 1);
        journal_teardown();
}

static void test_plain_and_level(void) {
        pid_t d;

        fresh_shm();
        /* JOURNAL_STREAM naming another file is not the journal: plain text. */
        setenv("JOURNAL_STREAM", "1:1", 1);
        CU_ASSERT_EQUAL(truncate(logpath, 0), 0);
        d = daemon_start(NULL);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        unsetenv("JOURNAL_STREAM");
        CU_ASSERT(log_count("shmbusd: ") >= 1);
        CU_ASSERT_EQUAL(log_count("<6>"), 0);
        CU_ASSERT(log_count("ready") == 1);

        /* "log_level": "warning" drops the info lines ("ready", "shutting down"). */
        fresh_shm();
        CU_ASSERT_EQUAL(truncate(logpath, 0), 0);
        d = daemon_start("{\"log_level\": \"warning\"}");
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        CU_ASSERT_EQUAL(log_count("ready"), 0);
        CU_ASSERT_EQUAL(log_count("shutting down"), 0);
}

static void test_bad_level(void) {
        char cmd[1400];

        snprintf(cmd, sizeof(cmd), "%s/daemon/shmbusd --log-level loud --help >/dev/null 2>&1",
                 test_builddir());
        CU_ASSERT_NOT_EQUAL(system(cmd), 0);
        snprintf(cmd, sizeof(cmd), "%s/shmbusd.json", dir);
        FILE *f = fopen(cmd, "w");
        CU_ASSERT_FATAL(f != NULL);
        fputs("{\"log_level\": \"loud\"}", f);
        fclose(f);
        snprintf(cmd, sizeof(cmd),
                 "%s/daemon/shmbusd --check-config -c %s/shmbusd.json 2>&1 | grep -q log_level",
                 test_builddir(), dir);
        CU_ASSERT_EQUAL(system(cmd), 0);
}

/* Connect and drop at once: with max_connections reached, each is refused and logged. */
static void refuse_many(unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                char buf[512];

                memcpy(sa.sun_path, sock, sizeof(sa.sun_path));
                CU_ASSERT_EQUAL(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
                /* Asking is answered EUSERS at once; then EOF: the daemon is done with us. */
                CU_ASSERT(send(fd, "{\"op\":\"hello\"}", 14, MSG_NOSIGNAL) == 14);
                while (recv(fd, buf, sizeof(buf), 0) > 0)
                        ;
                close(fd);
        }
}

/* The sum of N over the log's "N similar messages suppressed" lines. */
static unsigned log_suppressed(void) {
        FILE *f = fopen(logpath, "r");
        char line[1024];
        unsigned n = 0, k;

        while (f && fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, "shmbusd: ");

                if (p && sscanf(p, "shmbusd: %u similar messages suppressed", &k) == 1)
                        n += k;
        }
        if (f)
                fclose(f);
        return n;
}

static void test_rate_limit(void) {
        shmbus_client *holder;
        unsigned logged;
        pid_t d;

        fresh_shm();
        CU_ASSERT_EQUAL(truncate(logpath, 0), 0);
        setenv("SHMBUS_LOG_INTERVAL_MS", "1500", 1);
        d = daemon_start("{\"max_connections\": 1}");
        unsetenv("SHMBUS_LOG_INTERVAL_MS");
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &holder), 0);
        refuse_many(40);
        sleep_ms(100);
        /* A burst of at most 10 lines an interval, not a line per refusal. */
        logged = log_count("refused: max_connections");
        CU_ASSERT(logged >= 10);
        CU_ASSERT(logged < 40);
        /* Once the interval is over, one line counts what was dropped, unprompted... */
        sleep_ms(2000);
        CU_ASSERT(log_count("similar messages suppressed") >= 1);
        /* ... and the site logs again: every refusal is either a line or counted. */
        refuse_many(1);
        sleep_ms(100);
        CU_ASSERT_EQUAL(log_count("refused: max_connections") + log_suppressed(), 41);
        shmbus_client_free(holder);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* A child of @uid asks to create @name. Return: 0 if refused with EACCES. */
static int create_as(uid_t uid, const char *name) {
        pid_t pid = fork();

        if (pid == 0) {
                shmbus_client *c;
                shmbus_channel *ch;
                int r;

                if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
                        _exit(99);
                if (shmbus_client_new(sock, &c) < 0)
                        _exit(98);
                r = shmbus_client_open(c, name, SHMBUS_OPEN_CREATE, NULL, &ch);
                _exit(r == -EACCES ? 0 : 1);
        }
        return test_wait(pid);
}

/*
 * A user who floods one kind of line silences only the lines about itself: the
 * same denial of another uid is still logged, and the count of what was
 * dropped names the uid it was about.
 */
static void test_rate_limit_per_uid(void) {
        pid_t d;

        if (geteuid() != 0) {
                fprintf(stderr, "\n  (not root: uid-switching case not run)\n");
                return;
        }
        fresh_shm();
        CU_ASSERT_EQUAL(truncate(logpath, 0), 0);
        setenv("SHMBUS_LOG_INTERVAL_MS", "1500", 1);
        d = daemon_start("{\"create\": {\"uids\": []}}");
        unsetenv("SHMBUS_LOG_INTERVAL_MS");
        for (int i = 0; i < 25; i++)
                CU_ASSERT_EQUAL(create_as(65534, "flood"), 0);
        CU_ASSERT(log_count("denied: uid 65534 may not create") <= 10);
        CU_ASSERT_EQUAL(create_as(65533, "quiet"), 0);
        sleep_ms(100);
        CU_ASSERT_EQUAL(log_count("denied: uid 65533 may not create channel quiet"), 1);
        for (int i = 0; i < 40 && log_count("about uid 65534") == 0; i++)
                sleep_ms(100);
        CU_ASSERT_EQUAL(log_count("15 similar messages suppressed (at most 10 per 1500 ms about "
                                  "uid 65534)"),
                        1);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

int main(void) {
        static const struct test_case cases[] = {
                {"journal: structured fields (channel, uid, errno, priority)", test_journal_fields},
                {"journal socket unusable: prefixed stderr", test_journal_unreachable},
                {"plain text elsewhere; log_level drops info", test_plain_and_level},
                {"a bad level is refused, naming the key", test_bad_level},
                {"repeated lines are rate-limited and counted", test_rate_limit},
                {"a flood silences only its own uid's lines", test_rate_limit_per_uid},
                {NULL, NULL},
        };
        int rc;

        if (testdaemon_setup("log") < 0)
                return 99;
        rc = test_run("log", cases);
        testdaemon_teardown(rc);
        return rc;
}
