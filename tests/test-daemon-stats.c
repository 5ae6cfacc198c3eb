/* SPDX-License-Identifier: MIT */
/*
 * shmbusd's own counters, the "stats" op (docs/PROTOCOL.md): each counter
 * moves when, and only when, the daemon does what it counts — connections
 * served and refused, requests by op, slots released, claims padded over,
 * channels adopted at start-up. Every test runs a private daemon.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"

/* The stats reply over connection @c (the caller frees it), or NULL. */
static cJSON *stats(shmbus_client *c) {
        char *reply = NULL;
        cJSON *j = NULL;

        if (shmbus_client_request(c, "{\"v\":1,\"op\":\"stats\"}", &reply) == 0)
                j = cJSON_Parse(reply);
        free(reply);
        return j;
}

/* Field @path ("a" or "a.b") of a fresh stats reply; -1 if missing. */
static double stat_of(shmbus_client *c, const char *field, const char *sub) {
        cJSON *j = stats(c);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, field);
        double v = -1;

        if (sub)
                f = cJSON_GetObjectItemCaseSensitive(f, sub);
        if (cJSON_IsNumber(f))
                v = f->valuedouble;
        cJSON_Delete(j);
        return v;
}

static shmbus_client *connect_ok(void) {
        shmbus_client *c = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        return c;
}

/* Send the @len bytes of @req on a fresh raw connection, read the reply, close. */
static void raw_packet(const char *req, size_t len) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char buf[4096];
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        CU_ASSERT(send(fd, req, len, 0) > 0);
        CU_ASSERT(recv(fd, buf, sizeof(buf), 0) > 0);
        close(fd);
}

static void raw_request(const char *req) {
        raw_packet(req, strlen(req));
}

static void test_stats_reply(void) {
        pid_t d = daemon_start_fresh(NULL);
        shmbus_client *c = connect_ok();
        cJSON *j = stats(c);
        static const char *const fields[] = {
                "version",
                "uptime_ms",
                "connections",
                "connections_accepted",
                "connections_refused",
                "channels_adopted",
                "channels_not_adopted",
                "slots_released",
                "claims_unblocked",
                "requests",
                "requests_failed",
        };

        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                if (!cJSON_GetObjectItemCaseSensitive(j, fields[i]))
                        fprintf(stderr, "\n  stats reply lacks \"%s\"\n", fields[i]);
                CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(j, fields[i]));
        }
        cJSON_Delete(j);
        /* This connection (and none other) is served now. */
        CU_ASSERT_EQUAL(stat_of(c, "connections", NULL), 1);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_stats_requests(void) {
        static const char nul[] = "{\"v\":1,\"op\":\"list\"}\0junk";
        pid_t d = daemon_start_fresh(NULL);
        shmbus_client *c = connect_ok();
        double list0 = stat_of(c, "requests", "list"), other0 = stat_of(c, "requests", "other");
        double failed0 = stat_of(c, "requests_failed", NULL);
        double stats0 = stat_of(c, "requests", "stats");
        char *reply = NULL;

        for (int i = 0; i < 3; i++) {
                CU_ASSERT_EQUAL(shmbus_client_request(c, "{\"v\":1,\"op\":\"list\"}", &reply), 0);
                free(reply);
                reply = NULL;
        }
        raw_request("{\"v\":1,\"op\":\"frobnicate\"}");
        raw_request("not json");
        raw_request("{\"v\":1,\"op\":\"stat\",\"name\":\"nope\"}");
        /* Refused before it is parsed: a NUL byte inside. */
        raw_packet(nul, sizeof(nul) - 1);
        CU_ASSERT_EQUAL(stat_of(c, "requests", "list"), list0 + 3);
        CU_ASSERT_EQUAL(stat_of(c, "requests", "other"), other0 + 3);
        /* Unknown op, not JSON, no such channel, the NUL byte. */
        CU_ASSERT_EQUAL(stat_of(c, "requests_failed", NULL), failed0 + 4);
        /* Counted as it is served: three asks after stats0's, and this one. */
        CU_ASSERT_EQUAL(stat_of(c, "requests", "stats"), stats0 + 4);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_stats_connections(void) {
        pid_t d = daemon_start_fresh("{\"max_connections\": 2}");
        shmbus_client *c = connect_ok(), *c2 = connect_ok(), *c3 = NULL;
        double accepted0 = stat_of(c, "connections_accepted", NULL);

        CU_ASSERT_EQUAL(stat_of(c, "connections", NULL), 2);
        CU_ASSERT_EQUAL(stat_of(c, "connections_refused", NULL), 0);
        CU_ASSERT_EQUAL(shmbus_client_new(sock, &c3), -EUSERS);
        CU_ASSERT_EQUAL(stat_of(c, "connections_refused", NULL), 1);
        CU_ASSERT_EQUAL(stat_of(c, "connections_accepted", NULL), accepted0);
        CU_ASSERT_EQUAL(stat_of(c, "connections", NULL), 2);
        shmbus_client_free(c2);
        for (int i = 0; i < 100 && stat_of(c, "connections", NULL) != 1; i++)
                sleep_ms(10);
        CU_ASSERT_EQUAL(stat_of(c, "connections", NULL), 1);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* A publisher dies holding a claim: its slot is released and its claim padded over, counted. */
static void test_stats_unblock(void) {
        pid_t d = daemon_start_fresh(NULL), child;
        shmbus_client *c = connect_ok();
        shmbus_channel *ch;
        shmbus_sub *s;
        char buf[64], ready;
        int fds[2];

        CU_ASSERT_EQUAL(stat_of(c, "claims_unblocked", NULL), 0);
        CU_ASSERT_EQUAL(stat_of(c, "slots_released", NULL), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "crash", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
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
                if (write(fds[1], "c", 1) != 1)
                        _exit(1);
                pause();
                _exit(0);
        }
        CU_ASSERT_EQUAL(read(fds[0], &ready, 1), 1);
        kill(child, SIGKILL);
        CU_ASSERT_EQUAL(test_wait(child), 128 + SIGKILL);
        /* The subscriber waits on the dead claim; the daemon pads over it (300 ms here). */
        CU_ASSERT(shmbus_sub_recv(s, buf, sizeof(buf), 100) < 0);
        for (int i = 0; i < 500 && stat_of(c, "claims_unblocked", NULL) < 1; i++)
                sleep_ms(10);
        CU_ASSERT_EQUAL(stat_of(c, "claims_unblocked", NULL), 1);
        CU_ASSERT(stat_of(c, "slots_released", NULL) >= 1);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        close(fds[0]);
        close(fds[1]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* A restarted daemon counts the channels it adopted and the files it would not. */
static void test_stats_adoption(void) {
        pid_t d = daemon_start_fresh(NULL);
        shmbus_client *c = connect_ok();
        shmbus_channel *ch;
        char path[700];
        FILE *f;

        CU_ASSERT_EQUAL(stat_of(c, "channels_adopted", NULL), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "keep", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "keep2", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        snprintf(path, sizeof(path), "%s/junk.ctl", shm);
        f = fopen(path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fputs("not a channel", f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/junk.data", shm);
        f = fopen(path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fclose(f);

        d = daemon_start(NULL);
        c = connect_ok();
        CU_ASSERT_EQUAL(stat_of(c, "channels_adopted", NULL), 2);
        CU_ASSERT_EQUAL(stat_of(c, "channels_not_adopted", NULL), 1);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* Anyone who may connect may read the totals; they name no channel, uid or pid. */
static void test_stats_other_uid(void) {
        pid_t d = daemon_start_fresh(NULL), child;
        shmbus_client *c = connect_ok();
        shmbus_channel *ch;

        if (geteuid() != 0) {
                shmbus_client_free(c);
                CU_ASSERT_EQUAL(daemon_stop(d), 0);
                return; /* the rest needs to become another uid */
        }
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "private", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        chmod(dir, 0755); /* the socket's directory: nobody must reach the socket */
        child = fork();
        if (child == 0) {
                shmbus_client *cc;
                char *reply = NULL;

                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(10);
                if (shmbus_client_new(sock, &cc) < 0)
                        _exit(11);
                if (shmbus_client_request(cc, "{\"v\":1,\"op\":\"stats\"}", &reply) < 0)
                        _exit(12);
                /* Totals only: the channel's name and its owner are not in it. */
                if (strstr(reply, "private") || strstr(reply, "\"uid\"") || strstr(reply, "owner"))
                        _exit(13);
                free(reply);
                shmbus_client_free(cc);
                _exit(0);
        }
        int rc = test_wait(child);

        if (rc != 0)
                fprintf(stderr, "\n  stats as uid 65534: child exit %d\n", rc);
        CU_ASSERT_EQUAL(rc, 0);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

int main(void) {
        static const struct test_case cases[] = {
                {"stats reply has every field", test_stats_reply},
                {"requests counted by op, failures counted", test_stats_requests},
                {"connections: current, accepted, refused", test_stats_connections},
                {"dead publisher: slot released, claim unblocked", test_stats_unblock},
                {"restart: adopted and not adopted channels", test_stats_adoption},
                {"another uid reads totals only", test_stats_other_uid},
                {NULL, NULL},
        };
        int rc;

        signal(SIGPIPE, SIG_IGN);
        if (testdaemon_setup("daemon-stats") < 0)
                return 99;
        rc = test_run("daemon-stats", cases);
        testdaemon_teardown(rc);
        return rc;
}
