/* SPDX-License-Identifier: MIT */
/*
 * shmbus-cli record and replay, driven as a user would: the real binary
 * against a private shmbusd, with publishers and subscribers in forked test
 * processes. Checks that what is replayed is byte for byte what was
 * published, in order; that a recording cut at any byte replays exactly the
 * whole messages before the cut and says so (exit 8); that corruption and
 * bad input get clear errors; and that a recorder loses nothing at full speed
 * on a block channel. SHMBUS_SANITIZED=1 makes the large counts smaller.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"

static char *out, *errout;

static char *slurp_n(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "r");
        size_t cap = 1 << 16, n = 0, got;
        char *buf = malloc(cap + 1);

        while (f && (got = fread(buf + n, 1, cap - n, f)) > 0) {
                n += got;
                if (n == cap)
                        buf = realloc(buf, (cap *= 2) + 1);
        }
        buf[n] = '\0';
        if (f)
                fclose(f);
        if (ret_len)
                *ret_len = n;
        return buf;
}

static char *slurp(const char *path) {
        return slurp_n(path, NULL);
}

/* Run "shmbus-cli ARGS"; capture stdout/stderr; return the exit code. */
static int cli(const char *args) {
        char cmd[4096], o[700], e[700];
        int st;

        snprintf(o, sizeof(o), "%s/cli.out", dir);
        snprintf(e, sizeof(e), "%s/cli.err", dir);
        snprintf(cmd, sizeof(cmd), "SHMBUS_SOCKET='%s' %s/cli/shmbus-cli %s </dev/null >%s 2>%s",
                 sock, test_builddir(), args, o, e);
        st = system(cmd);
        free(out);
        free(errout);
        out = slurp(o);
        errout = slurp(e);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Start "shmbus-cli ARGS" in the background, stdout and stderr to files named for @tag. */
static pid_t cli_bg(const char *tag, const char *args) {
        char cmd[4096], old[700];
        pid_t pid;

        /* A file left by an earlier run would say "ready" before this one is. */
        snprintf(old, sizeof(old), "%s/%s.err", dir, tag);
        unlink(old);
        snprintf(old, sizeof(old), "%s/%s.out", dir, tag);
        unlink(old);
        snprintf(cmd, sizeof(cmd),
                 "SHMBUS_SOCKET='%s' exec %s/cli/shmbus-cli %s </dev/null >%s/%s.out 2>%s/%s.err",
                 sock, test_builddir(), args, dir, tag, dir, tag);
        pid = fork();
        if (pid == 0) {
                execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
                _exit(127);
        }
        return pid;
}

static char *bg_file(const char *tag, const char *ext) {
        char path[700];

        snprintf(path, sizeof(path), "%s/%s.%s", dir, tag, ext);
        return slurp(path);
}

/* Wait until the recorder started as @tag says it is recording (it has joined every channel). */
static bool recorder_ready(const char *tag, pid_t pid) {
        for (int i = 0; i < 1000; i++) {
                char *e = bg_file(tag, "err");
                bool ready = strstr(e, "recording ") != NULL;

                free(e);
                if (ready)
                        return true;
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return false;
                sleep_ms(10);
        }
        return false;
}

static void path_in_dir(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/%s", dir, name);
}

static bool sanitized(void) {
        const char *s = getenv("SHMBUS_SANITIZED");

        return s && strcmp(s, "1") == 0;
}

/*
 * Publish @n self-checking messages (publisher id @id, sizes up to @max) on
 * @name, each waiting up to @timeout_ms for room; exit 0, or 3 if one could not.
 */
static pid_t publisher_start(const char *name, uint32_t id, uint32_t n, size_t max,
                             int timeout_ms) {
        pid_t pid = fork();

        if (pid == 0) {
                shmbus_client *c;
                shmbus_channel *ch;
                shmbus_pub *p;
                uint8_t buf[4096];

                if (shmbus_client_new(sock, &c) < 0 ||
                    shmbus_client_open(c, name, SHMBUS_OPEN_PUBLISH, NULL, &ch) < 0 ||
                    shmbus_pub_new(ch, &p) < 0)
                        _exit(2);
                for (uint32_t i = 0; i < n; i++) {
                        size_t len = tmsg_len(id, i, max);

                        tmsg_fill(buf, len, id, i);
                        if (shmbus_pub_send(p, buf, len, timeout_ms) < 0)
                                _exit(3);
                }
                shmbus_pub_free(p);
                shmbus_channel_unref(ch);
                shmbus_client_free(c);
                _exit(0);
        }
        return pid;
}

static int count_lines(const char *s) {
        int n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static int count_type(const char *dump, const char *type) {
        char needle[64];
        int n = 0;

        snprintf(needle, sizeof(needle), "{\"type\":\"%s\"", type);
        for (const char *p = dump; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

/*
 * Record two channels while a publisher fills one of them (a small ring, so
 * it wraps, and a --tethered recorder, which holds the publisher back rather
 * than lose); replay both into other channels; a subscriber there gets every
 * message byte for byte, in order.
 */
static void test_record_replay_exact(void) {
        uint32_t n = sanitized() ? 3000 : 20000;
        pid_t d = daemon_start_fresh(NULL), rec, pub, rep;
        char file[700], args[1500];
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_sub *s;
        uint8_t buf[4096];
        cJSON *j;

        path_in_dir(file, sizeof(file), "exact.rec");
        CU_ASSERT_EQUAL(cli("create src --capacity 65536"), 0);
        CU_ASSERT_EQUAL(cli("create side --policy overwrite --capacity 8192"), 0);
        snprintf(args, sizeof(args), "record src side -o '%s' --count %u --json --tethered", file,
                 n + 3);
        rec = cli_bg("rec", args);
        CU_ASSERT_FATAL(recorder_ready("rec", rec));
        pub = publisher_start("src", 7, n, 300, -1);
        CU_ASSERT_EQUAL(cli("pub side s0"), 0);
        CU_ASSERT_EQUAL(cli("pub side s1"), 0);
        CU_ASSERT_EQUAL(cli("pub side s2"), 0);
        CU_ASSERT_EQUAL(test_wait(pub), 0);
        CU_ASSERT_EQUAL(test_wait(rec), 0);
        free(out);
        out = bg_file("rec", "out");
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "messages")->valuedouble, n + 3);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "lost")->valuedouble, 0);
        CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(j, "channels")), 2);
        cJSON_Delete(j);

        /* The file is private to its owner. */
        struct stat st;
        CU_ASSERT_EQUAL(stat(file, &st), 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);

        /* Replay src into dst, which a subscriber here reads; side into a new side2. */
        CU_ASSERT_EQUAL(cli("create dst --capacity 65536"), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "dst", 0, NULL, &ch), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        snprintf(args, sizeof(args),
                 "replay '%s' --map src:dst --map side:side2 --create --as-fast-as-possible --json",
                 file);
        rep = cli_bg("rep", args);
        for (uint32_t i = 0; i < n; i++) {
                ssize_t len = shmbus_sub_recv(s, buf, sizeof(buf), 10000);
                uint32_t id, seq;

                CU_ASSERT_FATAL(len > 0);
                CU_ASSERT_FATAL(tmsg_check(buf, (size_t)len, &id, &seq));
                CU_ASSERT_EQUAL_FATAL(id, 7);
                CU_ASSERT_EQUAL_FATAL(seq, i);
                CU_ASSERT_EQUAL_FATAL((size_t)len, tmsg_len(7, i, 300));
        }
        CU_ASSERT_EQUAL(test_wait(rep), 0);
        CU_ASSERT_EQUAL(shmbus_sub_recv(s, buf, sizeof(buf), 0), -EAGAIN);
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        free(out);
        out = bg_file("rep", "out");
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "messages")->valuedouble, n + 3);
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "complete")));
        cJSON_Delete(j);

        /* side2 was made with the recorded geometry. */
        CU_ASSERT_EQUAL(cli("tail side2"), 0);
        CU_ASSERT_STRING_EQUAL(out, "s0\ns1\ns2\n");
        CU_ASSERT_EQUAL(cli("--json status side2"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "policy")->valuestring, "overwrite");
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "capacity")->valuedouble, 8192);
        cJSON_Delete(j);
        unlink(file);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* Record five messages 300 ms apart on "timed" into @file (the other tests cut it up). */
static void record_timed(const char *file) {
        char args[1000];
        pid_t rec;

        CU_ASSERT_EQUAL(cli("create timed"), 0);
        snprintf(args, sizeof(args), "record timed -o '%s' --count 5", file);
        rec = cli_bg("timed", args);
        CU_ASSERT_FATAL(recorder_ready("timed", rec));
        for (int i = 0; i < 5; i++) {
                char msg[32];

                if (i)
                        sleep_ms(300);
                snprintf(msg, sizeof(msg), "pub timed m%d", i);
                CU_ASSERT_EQUAL(cli(msg), 0);
        }
        CU_ASSERT_EQUAL(test_wait(rec), 0);
}

/* --dump shows what was recorded; replay keeps the gaps, divided by --speed, or skips them. */
static void test_dump_and_timing(void) {
        pid_t d = daemon_start_fresh(NULL);
        char file[700], args[1000];
        int64_t t0, t1, t2, t3;
        cJSON *j;
        char *save, *l;
        int msgs = 0;
        double prev = 0;

        path_in_dir(file, sizeof(file), "timed.rec");
        record_timed(file);
        snprintf(args, sizeof(args), "replay '%s' --dump", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        CU_ASSERT_EQUAL(count_type(out, "header"), 1);
        CU_ASSERT_EQUAL(count_type(out, "channel"), 1);
        CU_ASSERT_EQUAL(count_type(out, "end"), 1);
        for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                j = cJSON_Parse(l);
                CU_ASSERT_PTR_NOT_NULL_FATAL(j);
                if (strcmp(cJSON_GetObjectItem(j, "type")->valuestring, "message") == 0) {
                        char text[16];
                        double mono = cJSON_GetObjectItem(j, "mono_ns")->valuedouble;

                        snprintf(text, sizeof(text), "m%d", msgs);
                        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "text")->valuestring, text);
                        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "channel")->valuestring,
                                               "timed");
                        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "seq")->valuedouble, msgs);
                        if (msgs)
                                CU_ASSERT(mono - prev >= 290e6);
                        prev = mono;
                        msgs++;
                }
                cJSON_Delete(j);
        }
        CU_ASSERT_EQUAL(msgs, 5);

        /* Four gaps of 300 ms: at least 1.2 s at speed 1, 0.4 s at speed 3; fast: no wait. */
        CU_ASSERT_EQUAL(cli("create again"), 0);
        t0 = ms_now();
        snprintf(args, sizeof(args), "replay '%s' --map timed:again", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        t1 = ms_now();
        snprintf(args, sizeof(args), "replay '%s' --map timed:again --speed 3", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        t2 = ms_now();
        snprintf(args, sizeof(args), "replay '%s' --map timed:again --as-fast-as-possible", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        t3 = ms_now();
        CU_ASSERT(t1 - t0 >= 1190);
        CU_ASSERT(t2 - t1 >= 390);
        CU_ASSERT(t2 - t1 < t1 - t0);
        CU_ASSERT(t3 - t2 < 1190);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "replayed 5 messages"));
        CU_ASSERT_EQUAL(cli("tail again -n 15"), 0);
        CU_ASSERT_STRING_EQUAL(out, "m0\nm1\nm2\nm3\nm4\nm0\nm1\nm2\nm3\nm4\nm0\nm1\nm2\nm3\nm4\n");
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_file(const char *path, const void *data, size_t len) {
        FILE *f = fopen(path, "w");

        CU_ASSERT_FATAL(f != NULL);
        CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
        fclose(f);
}

/* The frames of a recording, walked by their lengths: where each record ends, and its type. */
struct frames {
        size_t n;
        size_t end[64];
        unsigned type[64];
};

static void walk_frames(const uint8_t *b, size_t len, struct frames *f) {
        f->n = 0;
        for (size_t off = 16; off + 10 <= len && f->n < 64; f->n++) {
                f->type[f->n] = (unsigned)(b[off + 8] | b[off + 9] << 8);
                off += 8 + le32(b + off);
                f->end[f->n] = off;
        }
}

/*
 * A recording cut at any byte replays exactly the whole messages before the
 * cut and exits 8; only the whole file exits 0. Publishing from a cut file
 * publishes the same whole messages.
 */
static void test_truncated(void) {
        pid_t d = daemon_start_fresh(NULL);
        char file[700], cut[700], args[1500];
        struct frames fr;
        size_t len, expect_msgs;
        uint8_t *b;

        path_in_dir(file, sizeof(file), "whole.rec");
        path_in_dir(cut, sizeof(cut), "cut.rec");
        record_timed(file);
        b = (uint8_t *)slurp_n(file, &len);
        walk_frames(b, len, &fr);
        CU_ASSERT_EQUAL_FATAL(fr.n, 8); /* header, channel, 5 messages, end */
        CU_ASSERT_EQUAL(fr.end[fr.n - 1], len);
        CU_ASSERT_EQUAL(fr.type[0], 1);
        CU_ASSERT_EQUAL(fr.type[2], 3);
        CU_ASSERT_EQUAL(fr.type[7], 5);

        for (size_t at = 0; at <= len; at += at < 80 || at + 3 >= len ? 1 : 3) {
                int rc;

                expect_msgs = 0;
                for (size_t i = 0; i < fr.n; i++)
                        expect_msgs += fr.type[i] == 3 && fr.end[i] <= at;
                write_file(cut, b, at);
                snprintf(args, sizeof(args), "replay '%s' --dump", cut);
                rc = cli(args);
                CU_ASSERT_EQUAL(rc, at == len ? 0 : 8);
                CU_ASSERT_EQUAL((size_t)count_type(out, "message"), expect_msgs);
                if (rc != (at == len ? 0 : 8) ||
                    (size_t)count_type(out, "message") != expect_msgs) {
                        fprintf(stderr, "cut at %zu of %zu: exit %d, %d messages: %s\n", at, len,
                                rc, count_type(out, "message"), errout);
                        break;
                }
                if (at < len) {
                        /* Inside the prefix; at a record boundary; or inside a record. */
                        bool boundary = at == 16;

                        for (size_t i = 0; i < fr.n; i++)
                                boundary |= fr.end[i] == at;
                        CU_ASSERT_PTR_NOT_NULL(strstr(errout, at < 16    ? "nothing to replay"
                                                              : boundary ? "without an end record"
                                                                         : "stopped at byte"));
                }
        }

        /* Publishing from a file cut inside the fourth message publishes the first three. */
        CU_ASSERT_EQUAL(cli("create into"), 0);
        write_file(cut, b, fr.end[4] + 20);
        snprintf(args, sizeof(args), "replay '%s' --map timed:into --as-fast-as-possible", cut);
        CU_ASSERT_EQUAL(cli(args), 8);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "replayed 3 messages"));
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "stopped at byte"));
        CU_ASSERT_EQUAL(cli("tail into"), 0);
        CU_ASSERT_STRING_EQUAL(out, "m0\nm1\nm2\n");

        /* A flipped byte in the third message: the CRC stops the reader before it. */
        b[fr.end[4] - 1] ^= 0x40;
        write_file(cut, b, len);
        snprintf(args, sizeof(args), "replay '%s' --dump", cut);
        CU_ASSERT_EQUAL(cli(args), 8);
        CU_ASSERT_EQUAL(count_type(out, "message"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "CRC"));
        b[fr.end[4] - 1] ^= 0x40;

        /* A length of 4 GiB - 1 in the fourth frame: refused, nothing allocated for it. */
        memset(b + fr.end[4], 0xff, 4);
        write_file(cut, b, len);
        CU_ASSERT_EQUAL(cli(args), 8);
        CU_ASSERT_EQUAL(count_type(out, "message"), 3);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "out of range"));
        free(b);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* CRC-32 as the format defines it (bit by bit: a second implementation to check the first). */
static uint32_t crc32_bitwise(const uint8_t *p, size_t len) {
        uint32_t c = 0xffffffffu;

        while (len--) {
                c ^= *p++;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        }
        return ~c;
}

/*
 * Readers skip record types they do not know (a later minor version), by
 * length; a later major version is refused with a clear message.
 */
static void test_format_versions(void) {
        pid_t d = daemon_start_fresh(NULL);
        char file[700], other[700], args[1500];
        struct frames fr;
        size_t len;
        uint8_t *b, *n;
        uint8_t extra[8 + 12] = {12, 0, 0,   0,   0,   0,   0,   0,   99,  0,
                                 0,  0, 'f', 'u', 't', 'u', 'r', 'e', '!', '!'};
        uint32_t crc = crc32_bitwise(extra + 8, 12);

        path_in_dir(file, sizeof(file), "v.rec");
        path_in_dir(other, sizeof(other), "v2.rec");
        record_timed(file);
        b = (uint8_t *)slurp_n(file, &len);
        walk_frames(b, len, &fr);
        CU_ASSERT_EQUAL_FATAL(fr.n, 8);

        /* Our CRC matches the writer's on a real record. */
        CU_ASSERT_EQUAL(crc32_bitwise(b + fr.end[1] + 8, le32(b + fr.end[1])),
                        le32(b + fr.end[1] + 4));

        /* A record of unknown type 99 after the third message: skipped. */
        memcpy(extra + 4, &crc, 4);
        n = malloc(len + sizeof(extra));
        memcpy(n, b, fr.end[4]);
        memcpy(n + fr.end[4], extra, sizeof(extra));
        memcpy(n + fr.end[4] + sizeof(extra), b + fr.end[4], len - fr.end[4]);
        write_file(other, n, len + sizeof(extra));
        snprintf(args, sizeof(args), "replay '%s' --dump", other);
        CU_ASSERT_EQUAL(cli(args), 0);
        CU_ASSERT_EQUAL(count_type(out, "message"), 5);

        /* Major version 2. */
        b[8] = 2;
        write_file(other, b, len);
        CU_ASSERT_EQUAL(cli(args), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "format version 2.0"));
        CU_ASSERT_EQUAL(count_lines(errout), 1);
        free(n);
        free(b);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/*
 * The recorder never makes a publisher wait, even on a block channel: stopped
 * here, it falls far behind a publisher that may not wait at all, which goes
 * on regardless; the recorder then counts what it lost, in loss records, and
 * messages plus losses add up. Tethered, the same publisher is held back.
 */
static void test_losses_recorded(void) {
        pid_t d = daemon_start_fresh(NULL), rec, pub;
        char file[700], args[1000];
        cJSON *j;
        char *save, *l;
        double msgs = 0, lost = 0, end_lost = -1;

        path_in_dir(file, sizeof(file), "lossy.rec");
        CU_ASSERT_EQUAL(cli("create lossy --policy block --capacity 4096"), 0);
        for (int tethered = 1; tethered >= 0; tethered--) {
                snprintf(args, sizeof(args), "record lossy -o '%s'%s", file,
                         tethered ? " --tethered" : "");
                rec = cli_bg("lossy", args);
                CU_ASSERT_FATAL(recorder_ready("lossy", rec));
                kill(rec, SIGSTOP);
                pub = publisher_start("lossy", 3, 500, 40, 0);
                CU_ASSERT_EQUAL(test_wait(pub), tethered ? 3 : 0);
                kill(rec, SIGCONT);
                sleep_ms(300);
                kill(rec, SIGTERM);
                CU_ASSERT_EQUAL(test_wait(rec), 0);
        }
        free(errout);
        errout = bg_file("lossy", "err");
        CU_ASSERT_PTR_NULL(strstr(errout, " 0 lost\n"));

        snprintf(args, sizeof(args), "replay '%s' --dump", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        CU_ASSERT(count_type(out, "loss") >= 1);
        for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                const char *type;

                j = cJSON_Parse(l);
                CU_ASSERT_PTR_NOT_NULL_FATAL(j);
                type = cJSON_GetObjectItem(j, "type")->valuestring;
                if (strcmp(type, "message") == 0)
                        msgs++;
                else if (strcmp(type, "loss") == 0)
                        lost += cJSON_GetObjectItem(j, "lost")->valuedouble;
                else if (strcmp(type, "end") == 0)
                        end_lost = cJSON_GetObjectItem(j, "lost")->valuedouble;
                cJSON_Delete(j);
        }
        CU_ASSERT(lost > 0);
        CU_ASSERT(msgs > 0);
        CU_ASSERT_EQUAL(msgs + lost, 500);
        CU_ASSERT_EQUAL(end_lost, lost);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/*
 * SIGTERM ends a recording properly (end record, exit 0); SIGKILL leaves the
 * messages written before it, which replay, and exit 8 for the missing end.
 */
static void test_stop_and_crash(void) {
        pid_t d = daemon_start_fresh(NULL), rec;
        char file[700], args[1000];

        path_in_dir(file, sizeof(file), "stopped.rec");
        CU_ASSERT_EQUAL(cli("create feed"), 0);
        for (int sig = SIGTERM; sig; sig = sig == SIGTERM ? SIGKILL : 0) {
                snprintf(args, sizeof(args), "record feed -o '%s'", file);
                rec = cli_bg("feed", args);
                CU_ASSERT_FATAL(recorder_ready("feed", rec));
                CU_ASSERT_EQUAL(cli("pub feed one"), 0);
                CU_ASSERT_EQUAL(cli("pub feed two"), 0);
                CU_ASSERT_EQUAL(cli("pub feed three"), 0);
                /* An idle recorder flushes within 100 ms: wait until the file shows it. */
                for (int i = 0; i < 300; i++) {
                        snprintf(args, sizeof(args), "replay '%s' --dump", file);
                        cli(args);
                        if (count_type(out, "message") == 3)
                                break;
                        sleep_ms(10);
                }
                kill(rec, sig);
                CU_ASSERT_EQUAL(test_wait(rec), sig == SIGTERM ? 0 : 128 + SIGKILL);
                snprintf(args, sizeof(args), "replay '%s' --dump", file);
                CU_ASSERT_EQUAL(cli(args), sig == SIGTERM ? 0 : 8);
                CU_ASSERT_EQUAL(count_type(out, "message"), 3);
                CU_ASSERT_EQUAL(count_type(out, "end"), sig == SIGTERM ? 1 : 0);
                if (sig == SIGKILL)
                        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "without an end record"));
        }
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* Bad input gets one clear line and the documented exit code; nothing follows a symlink. */
static void test_errors(void) {
        pid_t d = daemon_start_fresh(NULL);
        char file[700], link[700], victim[700], args[1500];
        struct stat st;

        path_in_dir(file, sizeof(file), "err.rec");
        path_in_dir(link, sizeof(link), "link.rec");
        path_in_dir(victim, sizeof(victim), "victim");
        CU_ASSERT_EQUAL(cli("create here"), 0);

        CU_ASSERT_EQUAL(cli("record here"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "-o FILE"));
        snprintf(args, sizeof(args), "record here here -o '%s'", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "record here ../x -o '%s'", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "record here -o '%s' --duration -1", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "record here missing -o '%s'", file);
        CU_ASSERT_EQUAL(cli(args), 3);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "missing: no such channel"));
        CU_ASSERT_EQUAL(count_lines(errout), 1);
        CU_ASSERT_NOT_EQUAL(access(file, F_OK), 0); /* nothing written */

        /* -o through a symlink: refused, its target untouched. */
        write_file(victim, "keep", 4);
        CU_ASSERT_EQUAL(symlink(victim, link), 0);
        snprintf(args, sizeof(args), "record here -o '%s' --duration 0.1", link);
        CU_ASSERT_EQUAL(cli(args), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "symbolic link"));
        CU_ASSERT_EQUAL(stat(victim, &st), 0);
        CU_ASSERT_EQUAL(st.st_size, 4);

        /*
         * -o onto an existing, world-readable file that someone already holds open:
         * the recording is a new file of mode 0600, and the old descriptor still
         * sees only the old bytes (a truncate in place would have let it read the
         * recording).
         */
        write_file(file, "old", 3);
        CU_ASSERT_EQUAL(chmod(file, 0644), 0);
        int held = open(file, O_RDONLY | O_CLOEXEC);
        struct stat old_st;
        CU_ASSERT_FATAL(held >= 0);
        CU_ASSERT_EQUAL(fstat(held, &old_st), 0);

        /* --duration stops by itself; the file is whole. */
        snprintf(args, sizeof(args), "record here -o '%s' --duration 0.2", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "recorded 0 messages"));
        CU_ASSERT_EQUAL(stat(file, &st), 0);
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        CU_ASSERT_NOT_EQUAL(st.st_ino, old_st.st_ino);
        {
                char old_bytes[16];

                CU_ASSERT_EQUAL(pread(held, old_bytes, sizeof(old_bytes), 0), 3);
        }
        close(held);

        snprintf(args, sizeof(args), "replay '%s' --speed 0", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "replay '%s' --speed 2 --as-fast-as-possible", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "replay '%s' --map nocolon", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "replay '%s' --map a:../b", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        snprintf(args, sizeof(args), "replay '%s' --dump --create", file);
        CU_ASSERT_EQUAL(cli(args), 2);
        CU_ASSERT_EQUAL(cli("replay /nonexistent/file.rec"), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "No such file"));
        snprintf(args, sizeof(args), "replay '%s'", victim);
        CU_ASSERT_EQUAL(cli(args), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "not a shmbus recording"));
        snprintf(args, sizeof(args), "replay '%s'", dir);
        CU_ASSERT_EQUAL(cli(args), 1);

        /* Into a channel that does not exist: exit 3 unless --create. */
        snprintf(args, sizeof(args), "replay '%s' --map here:nowhere", file);
        CU_ASSERT_EQUAL(cli(args), 3);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "--create"));
        snprintf(args, sizeof(args), "replay '%s' --map here:nowhere --create", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        CU_ASSERT_EQUAL(cli("status nowhere"), 0);
        CU_ASSERT_EQUAL(cli("record --help"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "record CHANNEL..."));
        CU_ASSERT_EQUAL(cli("replay --help"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "--as-fast-as-possible"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/*
 * A million messages at full speed on a block channel, recorded --tethered:
 * none lost, the file exactly as long as the format says. The recorder's
 * throughput is printed (untethered it must keep up by itself; see
 * test_untethered_accounting()).
 */
static void test_million(void) {
        uint32_t n = sanitized() ? 100000 : 1000000;
        pid_t d = daemon_start_fresh(NULL), rec, pub;
        char file[700], args[1000], host[256] = "";
        struct stat st;
        cJSON *j;
        size_t expect;

        path_in_dir(file, sizeof(file), "bulk.rec");
        CU_ASSERT_EQUAL(cli("create bulk"), 0);
        snprintf(args, sizeof(args), "record bulk -o '%s' --count %u --json --tethered", file, n);
        rec = cli_bg("bulk", args);
        CU_ASSERT_FATAL(recorder_ready("bulk", rec));
        pub = publisher_start("bulk", 1, n, 16, -1); /* 8 to 16 bytes */
        CU_ASSERT_EQUAL(test_wait(pub), 0);
        CU_ASSERT_EQUAL(test_wait(rec), 0);
        free(out);
        out = bg_file("bulk", "out");
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "messages")->valuedouble, n);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "lost")->valuedouble, 0);
        fprintf(stderr, "(recorded %u messages at %.0f msg/s) ", n,
                cJSON_GetObjectItem(j, "msg_per_s")->valuedouble);

        /* prefix, header, one channel, n messages, end: docs/RECORDING.md. */
        gethostname(host, sizeof(host) - 1);
        expect = 16 + (8 + 24 + strlen(host)) + (8 + 44 + 4) + 8 + 48;
        for (uint32_t i = 0; i < n; i++)
                expect += 8 + 40 + tmsg_len(1, i, 16);
        CU_ASSERT_EQUAL(stat(file, &st), 0);
        CU_ASSERT_EQUAL((size_t)st.st_size, expect);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "bytes")->valuedouble,
                        (double)(expect - 16 - (8 + 24 + strlen(host)) - 56 - 56 - 48.0 * n));
        cJSON_Delete(j);
        unlink(file);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static int unhex(const char *h, uint8_t *buf, size_t size) {
        size_t n = strlen(h) / 2;

        if (n > size)
                return -1;
        for (size_t i = 0; i < n; i++) {
                unsigned v;

                if (sscanf(h + 2 * i, "%2x", &v) != 1)
                        return -1;
                buf[i] = (uint8_t)v;
        }
        return (int)n;
}

/*
 * Untethered at full speed (the default): the recorder may fall behind, but
 * every message it wrote is intact and carries its true message number, and
 * the gaps between numbers are exactly what the loss records say. Prints
 * how much it kept, for the report.
 */
static void test_untethered_accounting(void) {
        uint32_t n = sanitized() ? 20000 : 100000;
        pid_t d = daemon_start_fresh(NULL), rec, pub;
        char file[700], args[1000];
        char *save, *l;
        double msgs = 0, lost = 0, gaps = 0, end_lost = -1, next = 0;
        bool intact = true;

        path_in_dir(file, sizeof(file), "fast.rec");
        CU_ASSERT_EQUAL(cli("create fast --capacity 262144"), 0);
        snprintf(args, sizeof(args), "record fast -o '%s' --json", file);
        rec = cli_bg("fast", args);
        CU_ASSERT_FATAL(recorder_ready("fast", rec));
        pub = publisher_start("fast", 5, n, 16, 0); /* may not wait: nothing holds it back */
        CU_ASSERT_EQUAL(test_wait(pub), 0);
        sleep_ms(300);
        kill(rec, SIGTERM);
        CU_ASSERT_EQUAL(test_wait(rec), 0);

        snprintf(args, sizeof(args), "replay '%s' --dump", file);
        CU_ASSERT_EQUAL(cli(args), 0);
        for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                cJSON *j = cJSON_Parse(l);
                const char *type;

                CU_ASSERT_PTR_NOT_NULL_FATAL(j);
                type = cJSON_GetObjectItem(j, "type")->valuestring;
                if (strcmp(type, "message") == 0) {
                        double seq = cJSON_GetObjectItem(j, "seq")->valuedouble;
                        const cJSON *hex = cJSON_GetObjectItem(j, "hex");
                        uint8_t buf[64];
                        uint32_t id, tseq;
                        int len = hex ? unhex(hex->valuestring, buf, sizeof(buf)) : -1;

                        intact &= len > 0 && tmsg_check(buf, (size_t)len, &id, &tseq) && id == 5 &&
                                  tseq == seq && seq >= next;
                        gaps += seq - next;
                        next = seq + 1;
                        msgs++;
                } else if (strcmp(type, "loss") == 0) {
                        lost += cJSON_GetObjectItem(j, "lost")->valuedouble;
                } else if (strcmp(type, "end") == 0) {
                        end_lost = cJSON_GetObjectItem(j, "lost")->valuedouble;
                }
                cJSON_Delete(j);
        }
        gaps += n - next; /* lost at the very end */
        CU_ASSERT(intact);
        CU_ASSERT_EQUAL(msgs + lost, n);
        CU_ASSERT_EQUAL(gaps, lost);
        CU_ASSERT_EQUAL(end_lost, lost);
        fprintf(stderr, "(untethered: kept %.0f of %u, lost %.0f) ", msgs, n, lost);
        unlink(file);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/*
 * A channel deleted while recorded ends its own follower only: the recording
 * goes on with the others. And -o - writes the recording to standard output,
 * which replay reads from standard input ("-").
 */
static void test_deleted_and_pipe(void) {
        pid_t d = daemon_start_fresh(NULL), rec;
        char args[1500];

        CU_ASSERT_EQUAL(cli("create keep"), 0);
        CU_ASSERT_EQUAL(cli("create gone"), 0);
        rec = cli_bg("piped", "record keep gone -o - --count 3");
        CU_ASSERT_FATAL(recorder_ready("piped", rec));
        CU_ASSERT_EQUAL(cli("pub gone last-words"), 0);
        CU_ASSERT_EQUAL(cli("delete gone"), 0);
        sleep_ms(300);
        CU_ASSERT_EQUAL(cli("pub keep one"), 0);
        CU_ASSERT_EQUAL(cli("pub keep two"), 0);
        CU_ASSERT_EQUAL(test_wait(rec), 0);
        free(errout);
        errout = bg_file("piped", "err");
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "gone: 1 messages, 10 bytes, 0 lost (deleted"));
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "keep: 2 messages"));

        /* cli() gives stdin /dev/null: read the recording from a pipe here. */
        snprintf(args, sizeof(args),
                 "cat '%s/piped.out' | %s/cli/shmbus-cli replay - --dump >'%s/pipe.dump'", dir,
                 test_builddir(), dir);
        CU_ASSERT_EQUAL(system(args), 0);
        snprintf(args, sizeof(args), "%s/pipe.dump", dir);
        free(out);
        out = slurp(args);
        CU_ASSERT_EQUAL(count_type(out, "message"), 3);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"text\":\"last-words\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"text\":\"two\""));
        snprintf(args, sizeof(args), "record keep -o - --json");
        CU_ASSERT_EQUAL(cli(args), 2);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

int main(void) {
        static const struct test_case cases[] = {
                {"record under load, replay byte-exact", test_record_replay_exact},
                {"--dump, and replay timing with --speed", test_dump_and_timing},
                {"a recording cut at any byte", test_truncated},
                {"unknown record types skipped, major version refused", test_format_versions},
                {"never stalls a publisher; losses recorded", test_losses_recorded},
                {"untethered at full speed: exact loss accounting", test_untethered_accounting},
                {"SIGTERM ends the file, SIGKILL leaves a readable prefix", test_stop_and_crash},
                {"bad input and exit codes", test_errors},
                {"a deleted channel; -o - and replay -", test_deleted_and_pipe},
                {"a million messages at full speed, none lost", test_million},
                {NULL, NULL},
        };
        int rc;

        if (testdaemon_setup("record") < 0)
                return 99;
        rc = test_run("record", cases);
        testdaemon_teardown(rc);
        free(out);
        free(errout);
        return rc;
}
