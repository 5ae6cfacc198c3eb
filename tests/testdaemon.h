/* SPDX-License-Identifier: MIT */
/*
 * Running shmbusd from the build tree for a test: a private directory holding
 * the socket, the shm directory and the daemon's log, so that nothing global
 * is touched and a daemon already running on the machine does not matter.
 * The daemon dies with the test (PR_SET_PDEATHSIG), and never holds its output.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "testutil.h"

static char *dir;
static char sock[108], shm[600], logpath[600];

static inline int64_t ms_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

/* Each test starts from an empty shm directory (within a test, channels persist on purpose). */
static inline void fresh_shm(void) {
        test_rmtree(shm);
}

/* The unblock timeout (-u) daemon_start() gives the daemon. */
static int daemon_unblock_ms = 300;

/*
 * Start shmbusd (with daemon_unblock_ms); wait until it answers. With
 * SHMBUS_VALGRIND=1 it runs under valgrind's memcheck, and any error or
 * definite leak makes it exit 42 when stopped, which daemon_stop() reports.
 */
static inline pid_t daemon_start(const char *config) {
        const char *top = test_builddir();
        const char *vg = getenv("SHMBUS_VALGRIND");
        char bin[600], cfgpath[600], unblock[16], vglog[700];
        shmbus_client *c;
        pid_t pid;

        snprintf(bin, sizeof(bin), "%s/daemon/shmbusd", top);
        snprintf(unblock, sizeof(unblock), "%d", daemon_unblock_ms);
        snprintf(vglog, sizeof(vglog), "--log-file=%s.valgrind", logpath);
        snprintf(cfgpath, sizeof(cfgpath), "%s/shmbusd.json", dir);
        if (config) {
                FILE *f = fopen(cfgpath, "w");

                fputs(config, f);
                fclose(f);
        }
        pid = fork();
        if (pid == 0) {
                int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);

                /* Never outlive the test, nor hold its output open. */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                dup2(fd, 1);
                dup2(fd, 2);
                const char *argv[24];
                int n = 0;

                if (vg && strcmp(vg, "1") == 0) {
                        static const char *vgopts[] = {"valgrind", "-q", "--error-exitcode=42",
                                                       "--leak-check=full",
                                                       "--errors-for-leak-kinds=definite"};

                        for (unsigned i = 0; i < sizeof(vgopts) / sizeof(vgopts[0]); i++)
                                argv[n++] = vgopts[i];
                        argv[n++] = vglog;
                }
                argv[n++] = bin;
                argv[n++] = "-s";
                argv[n++] = sock;
                argv[n++] = "-d";
                argv[n++] = shm;
                argv[n++] = "-u";
                argv[n++] = unblock;
                if (config) {
                        argv[n++] = "-c";
                        argv[n++] = cfgpath;
                }
                argv[n] = NULL;
                execvp(argv[0], (char *const *)argv);
                fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        for (int i = 0; i < 1500; i++) {
                if (shmbus_client_new(sock, &c) == 0) {
                        shmbus_client_free(c);
                        return pid;
                }
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        break; /* it exited: its log says why */
                sleep_ms(10);
        }
        CU_FAIL_FATAL("shmbusd did not start");
        return -1;
}

static inline pid_t daemon_start_fresh(const char *config) {
        fresh_shm();
        return daemon_start(config);
}

/*
 * Stop the daemon and return its exit status; a daemon that has not exited
 * 30 s after SIGTERM is hung (it would hang the whole run): kill it, and say
 * so with a status no clean stop has.
 */
static inline int daemon_stop(pid_t pid) {
        kill(pid, SIGTERM);
        for (int i = 0; i < 3000; i++) {
                int st;
                pid_t r = waitpid(pid, &st, WNOHANG);

                if (r == pid)
                        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                if (r < 0 && errno != EINTR)
                        return -1;
                sleep_ms(10);
        }
        fprintf(stderr, "\n  shmbusd (pid %d) did not stop within 30 s of SIGTERM: killed\n",
                (int)pid);
        kill(pid, SIGKILL);
        test_wait(pid);
        return 200;
}

/* The private directory and the paths in it; returns -1 if the socket path is too long. */
static inline int testdaemon_setup(const char *tag) {
        dir = test_mkdtemp(tag);
        if (snprintf(sock, sizeof(sock), "%s/shmbusd.sock", dir) >= (int)sizeof(sock))
                return -1;
        snprintf(shm, sizeof(shm), "%s/channels", dir);
        snprintf(logpath, sizeof(logpath), "%s/shmbusd.log", dir);
        return 0;
}

/* Remove the directory; after a failure, show the end of the daemon's log first. */
static inline void testdaemon_teardown(int rc) {
        if (rc != 0) {
                char cmd[700];

                fprintf(stderr, "--- shmbusd log:\n");
                snprintf(cmd, sizeof(cmd), "tail -n 80 %s >&2", logpath);
                if (system(cmd) != 0)
                        fprintf(stderr, "(no log)\n");
                snprintf(cmd, sizeof(cmd), "cat %s.valgrind >&2 2>/dev/null || true", logpath);
                if (system(cmd) != 0)
                        fprintf(stderr, "(no valgrind log)\n");
        }
        test_rmtree(dir);
        free(dir);
}
