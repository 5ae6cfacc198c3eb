/* SPDX-License-Identifier: MIT */
/*
 * shmbus-demo: traffic through a running shmbusd, to watch. A subscriber
 * process and a publisher process open channel "demo" through the daemon; the
 * publisher sends time-stamped messages, the subscriber prints a line a second
 * with what it received, what it lost, and the one-way latency.
 *
 *   shmbus-demo [SECONDS] [MESSAGES_PER_SECOND]
 */
#include <errno.h>
#include <shmbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fail(const char *what, int r) {
        fprintf(stderr, "shmbus-demo: %s: %s\n", what, shmbus_strerror(r));
        return 1;
}

static int subscriber(int seconds, int ready_fd) {
        shmbus_client *cl;
        shmbus_channel *ch;
        shmbus_sub *sub;
        int64_t end = now_ns() + (int64_t)(seconds + 1) * 1000000000, next = now_ns() + 1000000000;
        uint64_t got = 0, lat_sum = 0, lat_max = 0, n = 0;
        int r;

        if ((r = shmbus_client_new(NULL, &cl)) < 0)
                return fail("connect to shmbusd", r);
        if ((r = shmbus_client_open(cl, "demo", SHMBUS_OPEN_CREATE, NULL, &ch)) < 0)
                return fail("open channel demo", r);
        if ((r = shmbus_sub_new(ch, &sub)) < 0)
                return fail("subscribe", r);
        if (write(ready_fd, "r", 1) != 1)
                return 1;
        while (now_ns() < end) {
                char buf[256];
                ssize_t len = shmbus_sub_recv(sub, buf, sizeof(buf), 100);
                int64_t t;

                if (len >= (ssize_t)sizeof(t)) {
                        memcpy(&t, buf, sizeof(t));
                        uint64_t lat = (uint64_t)(now_ns() - t);
                        lat_sum += lat;
                        lat_max = lat > lat_max ? lat : lat_max;
                        got++;
                        n++;
                }
                if (now_ns() >= next) {
                        printf("subscriber: %6llu msgs this second, %8llu total, %llu lost, "
                               "latency avg %5.1f us max %6.1f us\n",
                               (unsigned long long)n, (unsigned long long)got,
                               (unsigned long long)shmbus_sub_lost(sub),
                               n ? (double)lat_sum / (double)n / 1000.0 : 0.0,
                               (double)lat_max / 1000.0);
                        fflush(stdout);
                        n = lat_sum = lat_max = 0;
                        next += 1000000000;
                }
        }
        shmbus_sub_free(sub);
        shmbus_channel_unref(ch);
        shmbus_client_free(cl);
        return 0;
}

int main(int argc, char **argv) {
        int seconds = argc > 1 ? atoi(argv[1]) : 5;
        int rate = argc > 2 ? atoi(argv[2]) : 100000;
        shmbus_client *cl;
        shmbus_channel *ch;
        shmbus_pub *pub;
        int fds[2], r, status;
        uint64_t sent = 0;
        pid_t pid;
        char c;

        if (seconds <= 0 || rate <= 0 || pipe(fds) < 0) {
                fprintf(stderr, "usage: shmbus-demo [SECONDS] [MESSAGES_PER_SECOND]\n");
                return 2;
        }
        pid = fork();
        if (pid == 0)
                _exit(subscriber(seconds, fds[1]));
        close(fds[1]);
        if (read(fds[0], &c, 1) != 1) { /* the subscriber said why on stderr */
                waitpid(pid, &status, 0);
                return 1;
        }
        if ((r = shmbus_client_new(NULL, &cl)) < 0)
                return fail("connect to shmbusd", r);
        if ((r = shmbus_client_open(cl, "demo", SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE, NULL,
                                    &ch)) < 0)
                return fail("open channel demo", r);
        if ((r = shmbus_pub_new(ch, &pub)) < 0)
                return fail("publish", r);
        printf("publisher: sending %d msgs/s of 64 B on channel \"demo\" for %d s\n", rate,
               seconds);
        fflush(stdout);
        int64_t start = now_ns(), end = start + (int64_t)seconds * 1000000000;
        for (int64_t t = now_ns(); t < end; t = now_ns()) {
                uint64_t due = (uint64_t)((t - start) / 1000) * (uint64_t)rate / 1000000;
                char msg[64] = {0};

                if (sent >= due) {
                        struct timespec ts = {0, 20000};
                        nanosleep(&ts, NULL);
                        continue;
                }
                memcpy(msg, &t, sizeof(t));
                if ((r = shmbus_pub_send(pub, msg, sizeof(msg), 1000)) < 0)
                        return fail("send", r);
                sent++;
        }
        printf("publisher: sent %llu messages\n", (unsigned long long)sent);
        waitpid(pid, &status, 0);
        shmbus_pub_free(pub);
        shmbus_channel_unref(ch);
        shmbus_client_free(cl);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
