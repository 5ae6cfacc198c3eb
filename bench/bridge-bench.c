/* SPDX-License-Identifier: MIT */
/*
 * bridge-bench: what shmbus-bridge costs on top of NATS, measured in one run
 * against a direct libnats publisher -> subscriber pair through the same
 * nats-server (docs/PERFORMANCE.md, "The NATS bridge").
 *
 *   throughput  64 B and 4 KiB, one way: host A's channel -> bridge -> NATS ->
 *               bridge -> host B's channel, against libnats publish ->
 *               subscriber; messages/s from the first send to the last receipt.
 *   rtt         ping-pong: A -> B -> A through both bridges (four bridge hops),
 *               against libnats ping -> responder -> pong; p50, p90, p99.
 *
 * It starts everything itself in a temporary directory: two shmbusd (the two
 * hosts), a nats-server on a free 127.0.0.1 port, and two bridges in core mode
 * (what the benchmark compares with: core NATS).
 *   bench/bridge-bench [--quick] [BUILDDIR]
 * Not part of make check: a benchmark measures, it does not pass or fail.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

static char top[512], tdir[256], url[64];
static pid_t pids[8];
static int npids;

static int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

__attribute__((noreturn)) static void die(const char *what) {
        fprintf(stderr, "bridge-bench: %s\n", what);
        for (int i = 0; i < npids; i++)
                kill(pids[i], SIGKILL);
        exit(1);
}

static pid_t spawn(const char *log, const char *const argv[]) {
        pid_t pid = fork();

        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(fd, 1);
                dup2(fd, 2);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        pids[npids++] = pid;
        return pid;
}

static int free_port(void) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

static shmbus_client *daemon_start(const char *name) {
        char bin[700], sock[300], shm[300], log[300];
        shmbus_client *c;

        snprintf(bin, sizeof(bin), "%s/daemon/shmbusd", top);
        snprintf(sock, sizeof(sock), "%s/%s.sock", tdir, name);
        snprintf(shm, sizeof(shm), "%s/%s-shm", tdir, name);
        snprintf(log, sizeof(log), "%s/%s.log", tdir, name);
        spawn(log, (const char *const[]){bin, "-s", sock, "-d", shm, NULL});
        for (int i = 0; i < 500; i++) {
                if (shmbus_client_new(sock, &c) == 0)
                        return c;
                sleep_ms(10);
        }
        die("shmbusd did not start");
        return NULL;
}

static void bridge_start(const char *name, const char *const *routes) {
        char bin[700], sock[300], state[300], log[300];
        const char *argv[32];
        int n = 0;

        snprintf(bin, sizeof(bin), "%s/bridge/shmbus-bridge", top);
        snprintf(sock, sizeof(sock), "%s/%s.sock", tdir, name);
        snprintf(state, sizeof(state), "%s/%s-state", tdir, name);
        snprintf(log, sizeof(log), "%s/%s-bridge.log", tdir, name);
        argv[n++] = bin;
        argv[n++] = "--nats";
        argv[n++] = url;
        argv[n++] = "--socket";
        argv[n++] = sock;
        argv[n++] = "--host";
        argv[n++] = name;
        argv[n++] = "--state-dir";
        argv[n++] = state;
        while (*routes)
                argv[n++] = *routes++;
        argv[n] = NULL;
        spawn(log, argv);
}

static shmbus_channel *chan(shmbus_client *c, const char *name, int flags) {
        shmbus_channel *ch;
        shmbus_opts *o;

        shmbus_opts_new(&o);
        shmbus_opts_set_capacity(o, UINT64_C(64) << 20);
        shmbus_opts_set_max_msg(o, 8192);
        if (shmbus_client_open(c, name, flags | SHMBUS_OPEN_CREATE, o, &ch) < 0)
                die("cannot open a channel");
        shmbus_opts_free(o);
        return ch;
}

/* ---- direct NATS ----------------------------------------------------------------------- */

static natsConnection *nats_conn(void) {
        natsConnection *nc;

        if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
                die("cannot connect to nats-server");
        return nc;
}

static double direct_throughput(size_t size, int count) {
        natsConnection *pc = nats_conn(), *sc = nats_conn();
        natsSubscription *sub;
        char *buf = calloc(1, size);
        int64_t t0, last = 0;
        int got = 0;

        natsConnection_SubscribeSync(&sub, sc, "direct.tp");
        natsSubscription_SetPendingLimits(sub, -1, -1);
        natsConnection_Flush(sc);
        t0 = now_ns();
        for (int i = 0; i < count; i++)
                natsConnection_Publish(pc, "direct.tp", buf, (int)size);
        natsConnection_Flush(pc);
        while (got < count) {
                natsMsg *m;

                if (natsSubscription_NextMsg(&m, sub, 2000) != NATS_OK)
                        break;
                natsMsg_Destroy(m);
                got++;
                last = now_ns();
        }
        natsSubscription_Destroy(sub);
        natsConnection_Destroy(pc);
        natsConnection_Destroy(sc);
        free(buf);
        if (got < count)
                fprintf(stderr, "  direct: %d of %d arrived\n", got, count);
        return got / ((double)(last - t0) / 1e9);
}

struct responder {
        natsConnection *nc;
        natsSubscription *sub;
        volatile int stop;
};

static void *direct_responder(void *arg) {
        struct responder *r = arg;

        while (!r->stop) {
                natsMsg *m;

                if (natsSubscription_NextMsg(&m, r->sub, 100) != NATS_OK)
                        continue;
                natsConnection_Publish(r->nc, "direct.pong", natsMsg_GetData(m),
                                       natsMsg_GetDataLength(m));
                natsConnection_Flush(r->nc);
                natsMsg_Destroy(m);
        }
        return NULL;
}

static int cmp64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

static void report_rtt(const char *name, int64_t *s, int n, double *ret_p50) {
        qsort(s, (size_t)n, sizeof(*s), cmp64);
        printf("  %-26s p50 %7.1f us  p90 %7.1f us  p99 %7.1f us  max %8.1f us\n", name,
               (double)s[n / 2] / 1e3, (double)s[n * 9 / 10] / 1e3, (double)s[n * 99 / 100] / 1e3,
               (double)s[n - 1] / 1e3);
        *ret_p50 = (double)s[n / 2] / 1e3;
}

static double direct_rtt(int rounds) {
        struct responder r = {.nc = nats_conn()};
        natsConnection *pc = nats_conn();
        natsSubscription *pong;
        int64_t *s = calloc((size_t)rounds, sizeof(*s));
        char msg[64] = {0};
        pthread_t th;
        double p50;

        natsConnection_SubscribeSync(&r.sub, r.nc, "direct.ping");
        natsConnection_SubscribeSync(&pong, pc, "direct.pong");
        natsConnection_Flush(r.nc);
        natsConnection_Flush(pc);
        pthread_create(&th, NULL, direct_responder, &r);
        for (int i = 0; i < rounds; i++) {
                int64_t t0 = now_ns();
                natsMsg *m;

                natsConnection_Publish(pc, "direct.ping", msg, sizeof(msg));
                natsConnection_Flush(pc);
                if (natsSubscription_NextMsg(&m, pong, 2000) != NATS_OK)
                        die("direct ping-pong lost a message");
                natsMsg_Destroy(m);
                s[i] = now_ns() - t0;
        }
        r.stop = 1;
        pthread_join(th, NULL);
        report_rtt("direct NATS", s, rounds, &p50);
        natsSubscription_Destroy(r.sub);
        natsSubscription_Destroy(pong);
        natsConnection_Destroy(r.nc);
        natsConnection_Destroy(pc);
        free(s);
        return p50;
}

/* ---- through the bridges ---------------------------------------------------------------- */

struct pubjob {
        shmbus_channel *ch;
        size_t size;
        int count;
};

static void *bridge_publisher(void *arg) {
        struct pubjob *j = arg;
        char *buf = calloc(1, j->size);
        shmbus_pub *p;

        shmbus_pub_new(j->ch, &p);
        for (int i = 0; i < j->count; i++) {
                memcpy(buf, &i, sizeof(i));
                shmbus_pub_send(p, buf, j->size, -1);
        }
        shmbus_pub_free(p);
        free(buf);
        return NULL;
}

static double bridge_throughput(shmbus_channel *a, shmbus_channel *b, size_t size, int count) {
        struct pubjob j = {.ch = a, .size = size, .count = count};
        char *buf = malloc(size);
        shmbus_sub *s;
        int64_t t0, last = 0;
        pthread_t th;
        int got = 0;

        shmbus_sub_new(b, &s);
        t0 = now_ns();
        pthread_create(&th, NULL, bridge_publisher, &j);
        while (got < count) {
                if (shmbus_sub_recv(s, buf, size, 2000) < 0)
                        break;
                got++;
                last = now_ns();
        }
        pthread_join(th, NULL);
        shmbus_sub_free(s);
        free(buf);
        if (got < count)
                fprintf(stderr, "  bridge: %d of %d arrived\n", got, count);
        return got / ((double)(last - t0) / 1e9);
}

struct bresponder {
        shmbus_sub *in;
        shmbus_pub *out;
        volatile int stop;
};

static void *bridge_responder(void *arg) {
        struct bresponder *r = arg;
        char buf[64];

        while (!r->stop) {
                ssize_t n = shmbus_sub_recv(r->in, buf, sizeof(buf), 100);

                if (n > 0)
                        shmbus_pub_send(r->out, buf, (size_t)n, -1);
        }
        return NULL;
}

static double bridge_rtt(shmbus_channel *ping_a, shmbus_channel *pong_a, shmbus_channel *ping_b,
                         shmbus_channel *pong_b, int rounds) {
        struct bresponder r = {0};
        shmbus_pub *ping;
        shmbus_sub *pong;
        int64_t *s = calloc((size_t)rounds, sizeof(*s));
        char msg[64] = {0};
        pthread_t th;
        double p50;

        shmbus_sub_new(ping_b, &r.in);
        shmbus_pub_new(pong_b, &r.out);
        shmbus_pub_new(ping_a, &ping);
        shmbus_sub_new(pong_a, &pong);
        pthread_create(&th, NULL, bridge_responder, &r);
        for (int i = 0; i < rounds; i++) {
                int64_t t0 = now_ns();

                shmbus_pub_send(ping, msg, sizeof(msg), -1);
                if (shmbus_sub_recv(pong, msg, sizeof(msg), 2000) < 0)
                        die("bridge ping-pong lost a message");
                s[i] = now_ns() - t0;
        }
        r.stop = 1;
        pthread_join(th, NULL);
        report_rtt("A -> bridges -> B -> A", s, rounds, &p50);
        shmbus_sub_free(r.in);
        shmbus_pub_free(r.out);
        shmbus_pub_free(ping);
        shmbus_sub_free(pong);
        free(s);
        return p50;
}

int main(int argc, char **argv) {
        static const char *const routes_a[] = {
                "--export", "tp:bench.tp",     "--export", "ping:bench.ping",
                "--import", "bench.pong:pong", NULL};
        static const char *const routes_b[] = {
                "--import", "bench.tp:tp",     "--import", "bench.ping:ping",
                "--export", "pong:bench.pong", NULL};
        bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
        int n64 = quick ? 100000 : 500000, n4k = quick ? 10000 : 50000;
        int rounds = quick ? 2000 : 10000;
        shmbus_channel *tp_a, *tp_b, *ping_a, *ping_b, *pong_a, *pong_b;
        shmbus_client *a, *b;
        char port[16], store[300], log[300];
        double d64 = 0, b64 = 0, d4k = 0, b4k = 0, drtt, brtt;

        snprintf(top, sizeof(top), "%s", argc > 1 + quick ? argv[1 + quick] : "build");
        snprintf(tdir, sizeof(tdir), "/tmp/shmbus-bridge-bench-XXXXXX");
        if (!mkdtemp(tdir))
                die("mkdtemp");
        snprintf(port, sizeof(port), "%d", free_port());
        snprintf(url, sizeof(url), "nats://127.0.0.1:%s", port);
        snprintf(store, sizeof(store), "%s/nats", tdir);
        snprintf(log, sizeof(log), "%s/nats.log", tdir);
        signal(SIGPIPE, SIG_IGN);
        spawn(log, (const char *const[]){"nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd",
                                         store, NULL});
        a = daemon_start("A");
        b = daemon_start("B");
        tp_a = chan(a, "tp", SHMBUS_OPEN_PUBLISH);
        ping_a = chan(a, "ping", SHMBUS_OPEN_PUBLISH);
        pong_a = chan(a, "pong", 0);
        tp_b = chan(b, "tp", 0);
        ping_b = chan(b, "ping", 0);
        pong_b = chan(b, "pong", SHMBUS_OPEN_PUBLISH);
        sleep_ms(300);
        bridge_start("A", routes_a);
        bridge_start("B", routes_b);
        sleep_ms(1500);

        printf("shmbus-bridge vs direct NATS (core), same nats-server, same run, %s\n",
               quick ? "quick" : "full");
        /* Interleave the two so that a slow minute of the VM hits both alike. */
        for (int round = 0; round < 3; round++) {
                d64 += direct_throughput(64, n64) / 3;
                b64 += bridge_throughput(tp_a, tp_b, 64, n64) / 3;
                d4k += direct_throughput(4096, n4k) / 3;
                b4k += bridge_throughput(tp_a, tp_b, 4096, n4k) / 3;
        }
        printf("  throughput 64 B:  direct %9.0f msg/s  bridge %9.0f msg/s  ratio %.2f\n", d64, b64,
               b64 / d64);
        printf("  throughput 4 KiB: direct %9.0f msg/s  bridge %9.0f msg/s  ratio %.2f\n", d4k, b4k,
               b4k / d4k);
        drtt = direct_rtt(rounds);
        brtt = bridge_rtt(ping_a, pong_a, ping_b, pong_b, rounds);
        printf("  round trip p50: the bridges add %.1f us\n", brtt - drtt);

        for (int i = 0; i < npids; i++)
                kill(pids[i], SIGTERM);
        while (wait(NULL) > 0)
                ;
        if (system("true") == 0) {
                char cmd[300];

                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
                if (system(cmd) != 0)
                        fprintf(stderr, "could not remove %s\n", tdir);
        }
        return 0;
}
