/* SPDX-License-Identifier: MIT */
/*
 * Runs a fuzz target over files without libFuzzer: `make check` replays the
 * seed corpus and every crash the fuzzers ever found (fuzz/corpus/) in the
 * plain and sanitizer builds. Arguments are files or directories.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/fuzz.h"

static int run_file(const char *path) {
        FILE *f = fopen(path, "rb");
        uint8_t *buf;
        long n;

        if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
                fprintf(stderr, "%s: cannot read\n", path);
                if (f)
                        fclose(f);
                return -1;
        }
        buf = malloc((size_t)n + 1);
        if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
                fclose(f);
                free(buf);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
        return 0;
}

static int run_path(const char *path, unsigned *count) {
        struct stat st;
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: missing\n", path);
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                (*count)++;
                return run_file(path);
        }
        d = opendir(path);
        while (d && (de = readdir(d))) {
                char sub[4096];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
                if (run_path(sub, count) < 0)
                        r = -1;
        }
        if (d)
                closedir(d);
        return r;
}

int main(int argc, char **argv) {
        unsigned count = 0;
        int r = 0;

        if (argc == 1) {
                /* Under `make check`: this target's corpus in the source tree. */
                char path[4096];
                const char *top = getenv("top_srcdir") ? getenv("top_srcdir") : ".";

                snprintf(path, sizeof(path), "%s/fuzz/corpus/%s", top, CORPUS_NAME);
                r = run_path(path, &count) < 0;
        }
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &count) < 0)
                        r = 1;
        printf("%s: %u inputs replayed\n", argv[0], count);
        return r || count == 0;
}
