/* SPDX-License-Identifier: MIT */
/*
 * Test helpers: a CUnit runner that exits 0/1/99, private temporary
 * directories, and self-checking messages (every byte derived from the
 * publisher id and sequence number, so any tearing or mix-up is detected).
 */
#pragma once

#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A message: 4-byte publisher id, 4-byte sequence, then pattern bytes. */
#define TMSG_HDR 8u

static inline uint8_t tmsg_byte(uint32_t pub, uint32_t seq, size_t i) {
        uint32_t x = pub * 2654435761u ^ seq * 40503u ^ (uint32_t)i * 2246822519u;

        return (uint8_t)(x ^ (x >> 13) ^ (x >> 24));
}

/* Message length for (pub, seq) in [TMSG_HDR, max], varied so that wrap and padding happen. */
static inline size_t tmsg_len(uint32_t pub, uint32_t seq, size_t max) {
        uint32_t x = (pub + 1) * 7919u + seq * 104729u;

        return TMSG_HDR + (x % (max - TMSG_HDR + 1));
}

static inline void tmsg_fill(void *buf, size_t len, uint32_t pub, uint32_t seq) {
        uint8_t *b = buf;

        memcpy(b, &pub, 4);
        memcpy(b + 4, &seq, 4);
        for (size_t i = TMSG_HDR; i < len; i++)
                b[i] = tmsg_byte(pub, seq, i);
}

/* Returns true if buf is an intact message; sets *pub and *seq from it. */
static inline bool tmsg_check(const void *buf, size_t len, uint32_t *pub, uint32_t *seq) {
        const uint8_t *b = buf;

        if (len < TMSG_HDR)
                return false;
        memcpy(pub, b, 4);
        memcpy(seq, b + 4, 4);
        for (size_t i = TMSG_HDR; i < len; i++)
                if (b[i] != tmsg_byte(*pub, *seq, i))
                        return false;
        return true;
}

/*
 * The build tree, where daemon/shmbusd and cli/shmbus-cli are: $top_builddir
 * under "make check", otherwise two levels above this test binary, so that
 * build/tests/test-faults also runs on its own from anywhere.
 */
static inline const char *test_builddir(void) {
        static char top[256];
        ssize_t n;

        if (getenv("top_builddir"))
                return getenv("top_builddir");
        if (top[0])
                return top;
        n = readlink("/proc/self/exe", top, sizeof(top) - 1);
        top[n > 0 && (size_t)n < sizeof(top) - 1 ? n : 0] = '\0';
        for (int up = 0; up < 2; up++) {
                char *slash = strrchr(top, '/');

                if (!slash || slash == top) {
                        snprintf(top, sizeof(top), "."); /* not in a tree: the working directory */
                        break;
                }
                *slash = '\0';
        }
        return top;
}

/* A private directory under /dev/shm (tmpfs, like production) or $TMPDIR. */
static inline char *test_mkdtemp(const char *tag) {
        char *path;

        if (asprintf(&path, "/dev/shm/shmbus-test-%s-XXXXXX", tag) < 0)
                abort();
        if (!mkdtemp(path)) {
                free(path);
                if (asprintf(&path, "%s/shmbus-test-%s-XXXXXX",
                             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", tag) < 0)
                        abort();
                if (!mkdtemp(path))
                        abort();
        }
        return path;
}

static inline void test_rmtree(const char *path) {
        char *cmd;

        if (asprintf(&cmd, "rm -rf '%s'", path) < 0)
                abort();
        if (system(cmd) != 0)
                fprintf(stderr, "warning: could not remove %s\n", path);
        free(cmd);
}

/* Entries of a directory, "." files aside (0 if it cannot be read). */
static inline unsigned test_count_entries(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* Wait for a child; returns its exit code, or 128+signal. */
static inline int test_wait(pid_t pid) {
        int st;

        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -1;
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        return 128 + WTERMSIG(st);
}

struct test_case {
        const char *name;
        void (*fn)(void);
};

/* Run one suite; exit 0 if all passed, 1 if any failed, 99 on a CUnit error. */
static inline int test_run(const char *suite_name, const struct test_case *cases) {
        CU_pSuite suite;
        unsigned failures;

        /*
         * No suite may hang a test run: one that has not finished in 20 minutes
         * (the longest, the soak and the fault loop, take a few) dies of SIGALRM,
         * which make check reports as a failure. SHMBUS_TEST_ALARM_S changes it.
         */
        alarm(getenv("SHMBUS_TEST_ALARM_S") ? (unsigned)atoi(getenv("SHMBUS_TEST_ALARM_S")) : 1200);
        if (CU_initialize_registry() != CUE_SUCCESS)
                return 99;
        suite = CU_add_suite(suite_name, NULL, NULL);
        if (!suite)
                return 99;
        /* SHMBUS_TEST_ONLY=TEXT runs only the cases whose name contains TEXT (to repeat one). */
        for (const struct test_case *c = cases; c->name; c++)
                if ((!getenv("SHMBUS_TEST_ONLY") || strstr(c->name, getenv("SHMBUS_TEST_ONLY"))) &&
                    !CU_add_test(suite, c->name, c->fn))
                        return 99;
        CU_basic_set_mode(CU_BRM_VERBOSE);
        if (CU_basic_run_tests() != CUE_SUCCESS)
                return 99;
        failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
        CU_cleanup_registry();
        return failures ? 1 : 0;
}
