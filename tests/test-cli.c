/* SPDX-License-Identifier: MIT */
/*
 * shmbus-cli, driven as a user would: the real binary against a real shmbusd,
 * checking output, JSON validity, exit codes and bad input.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"

static char *out, *errout;
static const char *iodir; /* where cli() keeps its input and output (default: dir) */

static char *slurp(const char *path) {
        FILE *f = fopen(path, "r");
        char *buf = calloc(1, 1 << 20);
        size_t n = f ? fread(buf, 1, (1 << 20) - 1, f) : 0;

        buf[n] = '\0';
        if (f)
                fclose(f);
        return buf;
}

/* Run "shmbus-cli ARGS" with @input on stdin; capture stdout/stderr; return the exit code. */
static int cli(const char *input, const char *args) {
        const char *top = test_builddir();
        char cmd[4096], in[700], o[700], e[700];
        int st;

        snprintf(in, sizeof(in), "%s/cli.in", iodir ? iodir : dir);
        snprintf(o, sizeof(o), "%s/cli.out", iodir ? iodir : dir);
        snprintf(e, sizeof(e), "%s/cli.err", iodir ? iodir : dir);
        FILE *f = fopen(in, "w");
        if (input)
                fputs(input, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "SHMBUS_SOCKET='%s' %s/cli/shmbus-cli %s <%s >%s 2>%s", sock,
                 top, args, in, o, e);
        st = system(cmd);
        free(out);
        free(errout);
        out = slurp(o);
        errout = slurp(e);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int count_lines(const char *s) {
        int n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static void test_version_and_help(void) {
        pid_t d = daemon_start_fresh(NULL);
        cJSON *j;

        CU_ASSERT_EQUAL(cli(NULL, "version"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "shmbusd " PACKAGE_VERSION));
        CU_ASSERT_EQUAL(cli(NULL, "--json version"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "cli")->valuestring, PACKAGE_VERSION);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "daemon")->valuestring, PACKAGE_VERSION);
        cJSON_Delete(j);

        CU_ASSERT_EQUAL(cli(NULL, "--help"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Exit codes"));
        for (const char *const *v = (const char *const[]){"list", "status", "stats", "tail", "pub",
                                                          "create", "delete", "version", NULL};
             *v; v++) {
                char args[64];

                snprintf(args, sizeof(args), "%s --help", *v);
                CU_ASSERT_EQUAL(cli(NULL, args), 0);
                CU_ASSERT_PTR_NOT_NULL(strstr(out, "Usage: shmbus-cli"));
                CU_ASSERT_PTR_NOT_NULL(strstr(out, *v));
        }
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_create_pub_tail(void) {
        pid_t d = daemon_start_fresh(NULL);
        cJSON *j, *line;
        char *save, *l;

        CU_ASSERT_EQUAL(cli(NULL, "create prices --capacity 65536 --policy overwrite"), 0);
        CU_ASSERT_EQUAL(cli("alpha\nbeta\n\ngamma\n", "pub prices"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "pub prices 'delta epsilon'"), 0);
        CU_ASSERT_EQUAL(cli("bin\001ary\nline two\n", "pub prices --whole -"), 0);

        /* The last three: empty lines are skipped, --whole keeps the newline. */
        CU_ASSERT_EQUAL(cli(NULL, "tail prices -n 3"), 0);
        CU_ASSERT_STRING_EQUAL(out, "gamma\ndelta epsilon\nbin\\x01ary\\nline two\\n\n");
        CU_ASSERT_EQUAL(cli(NULL, "tail prices -n 100"), 0);
        CU_ASSERT_EQUAL(count_lines(out), 5);
        CU_ASSERT_EQUAL(cli(NULL, "tail prices -n 1 --format hex"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "62 69 6e 01 61"));

        CU_ASSERT_EQUAL(cli(NULL, "tail prices -n 5 --format json"), 0);
        int n = 0;
        for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++) {
                line = cJSON_Parse(l);
                CU_ASSERT_PTR_NOT_NULL_FATAL(line);
                CU_ASSERT_EQUAL(cJSON_GetObjectItem(line, "seq")->valueint, n);
                CU_ASSERT(cJSON_GetObjectItem(line, "text") || cJSON_GetObjectItem(line, "hex"));
                if (n == 0)
                        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(line, "text")->valuestring,
                                               "alpha");
                cJSON_Delete(line);
        }
        CU_ASSERT_EQUAL(n, 5);

        /* list: a table with a header, and JSON with the documented fields. */
        CU_ASSERT_EQUAL(cli(NULL, "list"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "CHANNEL"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "prices"));
        CU_ASSERT_PTR_NULL(strchr(out, '\033')); /* no colours when not a terminal */
        CU_ASSERT_EQUAL(cli(NULL, "--json list"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "channels"), 0);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(c, "name")->valuestring, "prices");
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(c, "policy")->valuestring, "overwrite");
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(c, "capacity")->valuedouble, 65536);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(c, "published")->valuedouble, 5);
        CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItem(c, "msg_per_s"));
        CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(j, "offline")));
        CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "ok"));
        cJSON_Delete(j);

        /* status, text and JSON. */
        CU_ASSERT_EQUAL(cli(NULL, "status prices"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "published:   5 messages"));
        CU_ASSERT_EQUAL(cli(NULL, "--json status prices"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT(cJSON_IsArray(cJSON_GetObjectItem(j, "subscribers")));
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "max_msg")->valuedouble, 16384);
        cJSON_Delete(j);

        /* stats --watch --json: one valid object a line. */
        CU_ASSERT_EQUAL(cli(NULL, "--json stats --watch --interval 0.05 --count 3"), 0);
        CU_ASSERT_EQUAL(count_lines(out), 3);
        for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                line = cJSON_Parse(l);
                CU_ASSERT(cJSON_IsArray(cJSON_GetObjectItem(line, "channels")));
                cJSON_Delete(line);
        }

        CU_ASSERT_EQUAL(cli(NULL, "delete prices"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "status prices"), 3);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* tail --follow prints what is published after it starts, and a subscriber shows in status. */
static void test_follow(void) {
        const char *top = test_builddir();
        pid_t d = daemon_start_fresh(NULL), t;
        char path[700], args[1500];
        char *got = NULL;

        CU_ASSERT_EQUAL(cli(NULL, "create feed"), 0);
        snprintf(path, sizeof(path), "%s/follow.out", dir);
        snprintf(args, sizeof(args),
                 "SHMBUS_SOCKET='%s' exec %s/cli/shmbus-cli tail feed -f -n 0 >%s", sock, top,
                 path);
        t = fork();
        if (t == 0) {
                execl("/bin/sh", "sh", "-c", args, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 200; i++) {
                cli(NULL, "--json status feed");
                if (strstr(out, "\"subscribers_active\":\t1"))
                        break;
                sleep_ms(20);
        }
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"subscribers_active\":\t1"));
        CU_ASSERT_EQUAL(cli(NULL, "pub feed 'first live'"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "pub feed 'second live'"), 0);
        for (int i = 0; i < 200; i++) {
                free(got);
                got = slurp(path);
                if (count_lines(got) >= 2)
                        break;
                sleep_ms(20);
        }
        CU_ASSERT_STRING_EQUAL(got, "first live\nsecond live\n");
        free(got);
        kill(t, SIGTERM);
        CU_ASSERT_EQUAL(test_wait(t), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_errors_and_exit_codes(void) {
        pid_t d = daemon_start_fresh(NULL);
        char big[70000];

        CU_ASSERT_EQUAL(cli(NULL, "frobnicate"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "unknown verb"));
        CU_ASSERT_EQUAL(count_lines(errout), 1); /* one clear line */
        CU_ASSERT_EQUAL(cli(NULL, "status"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "status a b"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "status ../etc"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "--bogus"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "tail x -n minus"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "tail x --format xml"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "create x --policy sometimes"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "create x --capacity 1000"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "create x --slow-subscriber-timeout 3600001"), 2);
        /* 2^32 + 1 is not 1 (it was, cut to 32 bits), nor is an empty value 0. */
        CU_ASSERT_EQUAL(cli(NULL, "create x --max-subscribers 4294967297"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "create x --slow-subscriber-timeout ''"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "--slow-subscriber-timeout"));
        /* The timeout a create asked for is the channel's, and stats says so. */
        CU_ASSERT_EQUAL(cli(NULL, "create slowc --slow-subscriber-timeout 250"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "status slowc --json"), 0);
        cJSON *st = cJSON_Parse(out);
        CU_ASSERT_EQUAL(cJSON_GetNumberValue(
                                cJSON_GetObjectItemCaseSensitive(st, "slow_subscriber_timeout_ms")),
                        250);
        cJSON_Delete(st);
        CU_ASSERT_EQUAL(cli(NULL, "status missing"), 3);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "no channel missing"));
        CU_ASSERT_EQUAL(count_lines(errout), 1);
        CU_ASSERT_EQUAL(cli(NULL, "tail missing"), 3);
        CU_ASSERT_EQUAL(cli(NULL, "pub missing hello"), 3);
        CU_ASSERT_EQUAL(cli(NULL, "delete missing"), 3);
        CU_ASSERT_EQUAL(cli(NULL, "pub --create made hello"), 0);

        /* A message bigger than the channel allows, and an empty --whole. */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        CU_ASSERT_EQUAL(cli(big, "pub made --whole"), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "too large"));
        CU_ASSERT_EQUAL(cli("", "pub made --whole"), 1);

        /* A full blocking channel with a subscriber that never reads: exit 5 after the timeout. */
        CU_ASSERT_EQUAL(cli(NULL, "create tiny --capacity 4096"), 0);
        shmbus_client *c;
        shmbus_channel *ch;
        shmbus_sub *s;
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, "tiny", 0, NULL, &ch), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &s), 0);
        char lines[200 * 40];
        lines[0] = '\0';
        for (int i = 0; i < 200; i++)
                strcat(lines, "a message of some thirty bytes.\n");
        CU_ASSERT_EQUAL(cli(lines, "pub tiny --timeout 50"), 5);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "timed out"));
        shmbus_sub_free(s);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);

        /* Permission denied: a channel root made, touched by nobody. */
        if (geteuid() == 0) {
                pid_t pid;

                static char nobody_dir[700];

                chmod(dir, 0755);
                snprintf(nobody_dir, sizeof(nobody_dir), "%s/nobody", dir);
                mkdir(nobody_dir, 0777);
                chmod(nobody_dir, 0777);
                pid = fork();
                if (pid == 0) {
                        iodir = nobody_dir;
                        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                                _exit(99);
                        _exit(cli(NULL, "tail made") == 4 && cli(NULL, "pub made x") == 4 &&
                                              cli(NULL, "delete made") == 4
                                      ? 0
                                      : 1);
                }
                CU_ASSERT_EQUAL(test_wait(pid), 0);
        }
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* Daemon down: read verbs read the files (and say so), write verbs exit 7. */
static void test_daemon_down(void) {
        pid_t d = daemon_start_fresh(NULL);
        char args[800];
        cJSON *j;

        CU_ASSERT_EQUAL(cli(NULL, "create kept"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "pub kept 'still here'"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        snprintf(args, sizeof(args), "--shm-dir '%s' list", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "kept"));
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "not running"));
        snprintf(args, sizeof(args), "--shm-dir '%s' --json list", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        j = cJSON_Parse(out);
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "offline")));
        CU_ASSERT_EQUAL(
                cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "channels"), 0),
                                    "published")
                        ->valuedouble,
                1);
        cJSON_Delete(j);
        snprintf(args, sizeof(args), "--shm-dir '%s' status kept", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        snprintf(args, sizeof(args), "--shm-dir '%s' tail kept", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        CU_ASSERT_STRING_EQUAL(out, "still here\n");
        CU_ASSERT_EQUAL(cli(NULL, "pub kept x"), 7);
        CU_ASSERT_EQUAL(cli(NULL, "create other"), 7);
        CU_ASSERT_EQUAL(cli(NULL, "delete kept"), 7);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "not running"));
        CU_ASSERT_EQUAL(cli(NULL, "version"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "shmbusd not running"));
}

/*
 * A stand-in for shmbusd at @path: it answers hello like the daemon, and every
 * other request with @reply, so that the CLI can be shown replies the real
 * daemon never sends. Stop it with kill() and test_wait().
 */
static pid_t fake_daemon_start(const char *path, const char *reply) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        pid_t pid;

        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_FATAL(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        unlink(path);
        CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        CU_ASSERT_EQUAL_FATAL(listen(fd, 8), 0);
        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                for (;;) {
                        int c = accept(fd, NULL, NULL);
                        char buf[65536];
                        ssize_t n;

                        if (c < 0)
                                _exit(1);
                        while ((n = recv(c, buf, sizeof(buf) - 1, 0)) > 0) {
                                const char *r = reply;

                                buf[n] = '\0';
                                if (strstr(buf, "\"hello\""))
                                        r = "{\"v\":1,\"ok\":true,\"version\":\"fake\","
                                            "\"protocol\":1}";
                                if (send(c, r, strlen(r), MSG_NOSIGNAL) < 0)
                                        break;
                        }
                        close(c);
                }
        }
        close(fd);
        return pid;
}

static void fake_daemon_stop(pid_t pid, const char *path) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        unlink(path);
}

/*
 * Replies are judged by the protocol's one parser: a failure without a usable
 * errno is EPROTO (exit 1), whatever it lacks; a failure's errno picks the exit
 * code; a success loses its envelope ("ok", "v") in the output.
 */
static void test_reply_status(void) {
        static const struct {
                const char *reply, *args;
                int code;
                const char *err;
        } cases[] = {
                {"{\"v\":1,\"ok\":false}", "status x", 1, "status x: "},
                {"{\"v\":1,\"ok\":false,\"errno\":0}", "status x", 1, "status x: "},
                {"{\"v\":1,\"ok\":false,\"errno\":-2}", "status x", 1, "status x: "},
                {"{\"v\":1,\"error\":\"EACCES\"}", "status x", 1, "status x: "},
                {"{\"v\":1,\"ok\":false}", "list", 1, "list: "},
                {"{\"v\":1,\"ok\":false,\"errno\":2,\"error\":\"ENOENT\"}", "status x", 3,
                 "no channel x"},
                {"{\"v\":1,\"ok\":false,\"errno\":13,\"error\":\"EACCES\"}", "status x", 4, NULL},
        };
        char path[700], args[800], want[128];
        cJSON *j;
        pid_t f;

        snprintf(path, sizeof(path), "%s/fake.sock", dir);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                f = fake_daemon_start(path, cases[i].reply);
                snprintf(args, sizeof(args), "-s '%s' %s", path, cases[i].args);
                CU_ASSERT_EQUAL(cli(NULL, args), cases[i].code);
                CU_ASSERT_EQUAL(count_lines(errout), 1);
                if (cases[i].code == 1) {
                        snprintf(want, sizeof(want), "%s%s", cases[i].err,
                                 shmbus_strerror(-EPROTO));
                        CU_ASSERT_PTR_NOT_NULL(strstr(errout, want));
                } else if (cases[i].err) {
                        CU_ASSERT_PTR_NOT_NULL(strstr(errout, cases[i].err));
                }
                CU_ASSERT_STRING_EQUAL(out, "");
                fake_daemon_stop(f, path);
        }

        f = fake_daemon_start(path, "{\"v\":1,\"ok\":true,\"name\":\"x\",\"policy\":\"block\"}");
        snprintf(args, sizeof(args), "-s '%s' --json status x", path);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "ok"));
        CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "v"));
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "name")->valuestring, "x");
        CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(j, "offline")));
        cJSON_Delete(j);
        fake_daemon_stop(f, path);
}

/* A number field of @o, or -1 if it is missing (so that a failed check does not crash). */
static int jnum(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItem(o, key);

        return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* The lines of @s as a NULL-terminated array of copies (free with free_lines()). */
static char **split_lines(const char *s) {
        char **v = calloc((size_t)count_lines(s) + 2, sizeof(*v));
        size_t n = 0;

        while (*s) {
                const char *nl = strchr(s, '\n');
                size_t len = nl ? (size_t)(nl - s) : strlen(s);

                v[n++] = strndup(s, len);
                s += len + (nl ? 1 : 0);
        }
        return v;
}

static void free_lines(char **v) {
        for (size_t i = 0; v[i]; i++)
                free(v[i]);
        free(v);
}

/* Where @word starts in @line, or -1. */
static long column_of(const char *line, const char *word) {
        const char *p = strstr(line, word);

        return p ? p - line : -1;
}

/* Long names widen the CHANNEL column instead of pushing the rest aside; rows sort by name. */
static void test_list_sorted_and_aligned(void) {
        static const char *const names[] = {"a-channel-name-longer-than-24-chars", "alpha", "zeta"};
        pid_t d = daemon_start_fresh(NULL);
        char **lines;
        cJSON *j, *c;
        int i = 0;

        CU_ASSERT_EQUAL(cli(NULL, "create zeta"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "create a-channel-name-longer-than-24-chars"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "create alpha"), 0);

        CU_ASSERT_EQUAL(cli(NULL, "list"), 0);
        lines = split_lines(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(lines[0]);
        CU_ASSERT_EQUAL_FATAL(count_lines(out), 4);
        for (i = 0; i < 3; i++) {
                CU_ASSERT_EQUAL(strncmp(lines[i + 1], names[i], strlen(names[i])), 0);
                /* Every column starts where its header does. */
                CU_ASSERT_EQUAL(column_of(lines[i + 1], " block") + 1,
                                column_of(lines[0], "POLICY"));
                CU_ASSERT_EQUAL(strlen(lines[i + 1]), strlen(lines[0]));
        }
        free_lines(lines);

        CU_ASSERT_EQUAL(cli(NULL, "--json list"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        i = 0;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "channels")) {
                CU_ASSERT_FATAL(i < 3);
                CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(c, "name")->valuestring, names[i]);
                i++;
        }
        CU_ASSERT_EQUAL(i, 3);
        cJSON_Delete(j);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/*
 * Without the daemon, a user who may not read the channel files gets one line
 * saying what to do and exit 4, not an error per channel (twice) and an empty
 * table with exit 0.
 */
static void test_offline_no_access(void) {
        static char nobody_dir[700];
        pid_t d, pid;

        if (geteuid() != 0) {
                fprintf(stderr, "(skipped: needs root to become nobody) ");
                return;
        }
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL(cli(NULL, "create secret"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "create hidden"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        /* nobody may look into the directories, but not read the files (0600, root's). */
        chmod(dir, 0755);
        chmod(shm, 0755);
        snprintf(nobody_dir, sizeof(nobody_dir), "%s/nobody-offline", dir);
        mkdir(nobody_dir, 0777);
        chmod(nobody_dir, 0777);
        pid = fork();
        if (pid == 0) {
                char args[800];
                int ok = 1;

                iodir = nobody_dir;
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(99);
                for (const char *const *v = (const char *const[]){"list", "--json list", "stats",
                                                                  "status secret", NULL};
                     *v; v++) {
                        snprintf(args, sizeof(args), "--shm-dir '%s' %s", shm, *v);
                        ok &= cli(NULL, args) == 4;
                        ok &= count_lines(errout) == 1;
                        ok &= strstr(errout, "cannot be read") != NULL;
                        ok &= strstr(errout, "start shmbusd") != NULL;
                        ok &= out[0] == '\0';
                        if (!ok) {
                                fprintf(stderr, "%s: out '%s' err '%s'\n", *v, out, errout);
                                break;
                        }
                }
                _exit(ok ? 0 : 1);
        }
        CU_ASSERT_EQUAL(test_wait(pid), 0);
        chmod(shm, 0700);
        chmod(dir, 0700);
}

/* Take a subscriber and a publisher slot in @name's files, and die without letting go. */
static pid_t member_that_dies(const char *name) {
        pid_t pid = fork();

        if (pid == 0) {
                shmbus_channel *ch;
                shmbus_sub *s;
                shmbus_pub *p;

                if (shmbus_channel_open(shm, name, SHMBUS_OPEN_PUBLISH, &ch) < 0 ||
                    shmbus_sub_new(ch, &s) < 0 || shmbus_pub_new(ch, &p) < 0)
                        _exit(1);
                _exit(0);
        }
        return pid;
}

/* Offline, slots of processes that are gone are not counted, and the output says so. */
static void test_offline_dead_members(void) {
        pid_t d = daemon_start_fresh(NULL);
        shmbus_channel *ch;
        shmbus_sub *live;
        char args[800];
        cJSON *j, *c;

        CU_ASSERT_EQUAL(cli(NULL, "create ghosts"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        CU_ASSERT_EQUAL(test_wait(member_that_dies("ghosts")), 0);
        CU_ASSERT_EQUAL(test_wait(member_that_dies("ghosts")), 0);
        /* One subscriber that is alive: this process. */
        CU_ASSERT_EQUAL_FATAL(shmbus_channel_open(shm, "ghosts", 0, &ch), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(ch, &live), 0);

        snprintf(args, sizeof(args), "--shm-dir '%s' --json list", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "channels"), 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c);
        CU_ASSERT_EQUAL(jnum(c, "subscribers_active"), 1);
        CU_ASSERT_EQUAL(jnum(c, "publishers_active"), 0);
        CU_ASSERT_EQUAL(jnum(c, "dead_subscribers"), 2);
        CU_ASSERT_EQUAL(jnum(c, "dead_publishers"), 2);
        cJSON_Delete(j);

        snprintf(args, sizeof(args), "--shm-dir '%s' --json status ghosts", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(j, "subscribers")), 1);
        CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(j, "publishers")), 0);
        CU_ASSERT_EQUAL(jnum(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "subscribers"), 0), "pid"),
                        getpid());
        cJSON_Delete(j);

        snprintf(args, sizeof(args), "--shm-dir '%s' status ghosts", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "1/16 subscribers"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "not counted: 2 publisher and 2 subscriber slots"));
        snprintf(args, sizeof(args), "--shm-dir '%s' list", shm);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "not counted: 2 publisher and 2 subscriber slots"));
        shmbus_sub_free(live);
        shmbus_channel_unref(ch);
}

/* --json is honoured by every verb that prints, or refused where it would contradict. */
static void test_json_everywhere(void) {
        pid_t d = daemon_start_fresh(NULL);
        char *by_format;
        cJSON *j;

        CU_ASSERT_EQUAL(cli(NULL, "--json pub --create notes 'one note'"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "name")->valuestring, "notes");
        CU_ASSERT_EQUAL(jnum(j, "sent"), 1);
        CU_ASSERT_EQUAL(jnum(j, "bytes"), 8);
        CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "error"));
        cJSON_Delete(j);
        CU_ASSERT_EQUAL(cli("two\nthree\n", "pub notes --json"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(jnum(j, "sent"), 2);
        CU_ASSERT_EQUAL(jnum(j, "bytes"), 8);
        cJSON_Delete(j);
        CU_ASSERT_EQUAL(cli(NULL, "pub missing x --json"), 3);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_EQUAL(jnum(j, "sent"), 0);
        CU_ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "error")));
        cJSON_Delete(j);

        /* tail --json is tail --format json. */
        CU_ASSERT_EQUAL(cli(NULL, "tail notes --format json"), 0);
        by_format = strdup(out);
        CU_ASSERT_EQUAL(cli(NULL, "tail notes --json"), 0);
        CU_ASSERT_STRING_EQUAL(out, by_format);
        CU_ASSERT_EQUAL(count_lines(out), 3);
        free(by_format);
        CU_ASSERT_EQUAL(cli(NULL, "tail notes --json --format hex"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "--json"));
        CU_ASSERT_EQUAL(cli(NULL, "tail notes --format openmetrics"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "stats --format hex"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "stats --format openmetrics --json"), 2);

        /* list --json answers at once, without a rate unless asked for one. */
        CU_ASSERT_EQUAL(cli(NULL, "--json list"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(
                cJSON_GetArrayItem(cJSON_GetObjectItem(j, "channels"), 0), "msg_per_s")));
        cJSON_Delete(j);
        CU_ASSERT_EQUAL(cli(NULL, "--json list --rate"), 0);
        j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItem(
                cJSON_GetArrayItem(cJSON_GetObjectItem(j, "channels"), 0), "msg_per_s")));
        cJSON_Delete(j);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* stats tells when: "time" and "offline" in every --json line, a time line over each --watch. */
static void test_stats_time(void) {
        pid_t d = daemon_start_fresh(NULL);
        char *save, *l, today[32];
        time_t now = time(NULL);
        struct tm tm;
        int n = 0;

        CU_ASSERT_EQUAL(cli(NULL, "create clock"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "--json stats --watch --interval 0.02 --count 2"), 0);
        for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++) {
                cJSON *line = cJSON_Parse(l);
                const cJSON *t = cJSON_GetObjectItem(line, "time");

                CU_ASSERT_PTR_NOT_NULL_FATAL(line);
                CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(line, "offline")));
                CU_ASSERT_FATAL(cJSON_IsString(t));
                /* RFC 3339 in UTC with milliseconds: 2026-12-01T12:43:21.123Z */
                CU_ASSERT_EQUAL(strlen(t->valuestring), 24);
                CU_ASSERT_EQUAL(t->valuestring[10], 'T');
                CU_ASSERT_EQUAL(t->valuestring[19], '.');
                CU_ASSERT_EQUAL(t->valuestring[23], 'Z');
                cJSON_Delete(line);
        }
        CU_ASSERT_EQUAL(n, 2);

        setenv("TZ", "UTC", 1);
        gmtime_r(&now, &tm);
        strftime(today, sizeof(today), "%Y-%m-%d ", &tm);
        CU_ASSERT_EQUAL(cli(NULL, "stats --watch --interval 0.02 --count 2"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, today));
        CU_ASSERT_PTR_NOT_NULL(strstr(strstr(out, today) + 1, today)); /* over each refresh */
        CU_ASSERT_PTR_NOT_NULL(strstr(out, " UTC"));
        unsetenv("TZ");
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* Bad values name the option as typed and say what it takes; --version and help exist. */
static void test_messages_version_help(void) {
        pid_t d = daemon_start_fresh(NULL);

        CU_ASSERT_EQUAL(cli(NULL, "tail x -n -1"), 2);
        CU_ASSERT_PTR_NOT_NULL(
                strstr(errout, "invalid value '-1' for -n: expected a whole number >= 0"));
        CU_ASSERT_EQUAL(cli(NULL, "tail x --lines=-1"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "invalid value '-1' for --lines: expected"));
        CU_ASSERT_EQUAL(cli(NULL, "stats --interval 0"), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(errout, "for --interval: expected seconds"));

        CU_ASSERT_EQUAL(cli(NULL, "--version"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "shmbus-cli " PACKAGE_VERSION));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "shmbusd " PACKAGE_VERSION));
        CU_ASSERT_EQUAL(cli(NULL, "-V --json"), 0);
        cJSON *j = cJSON_Parse(out);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "library")->valuestring, PACKAGE_VERSION);
        cJSON_Delete(j);

        CU_ASSERT_EQUAL(cli(NULL, "help"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Exit codes"));
        CU_ASSERT_EQUAL(cli(NULL, "help tail"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Usage: shmbus-cli tail CHANNEL"));
        CU_ASSERT_EQUAL(cli(NULL, "help metrics"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Usage: shmbus-cli metrics"));
        CU_ASSERT_EQUAL(cli(NULL, "help frobnicate"), 2);
        CU_ASSERT_EQUAL(cli(NULL, "help a b"), 2);

        /* Positions say their unit. */
        CU_ASSERT_EQUAL(cli(NULL, "pub --create units hello"), 0);
        CU_ASSERT_EQUAL(cli(NULL, "status units"), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "position:    32 B"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "POSITION (B)"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* Run "shmbus-cli list" on a pseudo-terminal with @env; return what it printed. */
static char *list_on_terminal(const char *env) {
        char cmd[1500], *buf = calloc(1, 65536);
        size_t n = 0;
        int master;
        pid_t pid;

        snprintf(cmd, sizeof(cmd), "env %s SHMBUS_SOCKET='%s' %s/cli/shmbus-cli list", env, sock,
                 test_builddir());
        pid = forkpty(&master, NULL, NULL, NULL);
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
                execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
                _exit(127);
        }
        for (;;) {
                struct pollfd p = {.fd = master, .events = POLLIN};
                ssize_t got;

                if (poll(&p, 1, 5000) <= 0)
                        break;
                got = read(master, buf + n, 65535 - n);
                if (got <= 0)
                        break; /* EIO: the child closed the terminal */
                n += (size_t)got;
        }
        close(master);
        CU_ASSERT_EQUAL(test_wait(pid), 0);
        return buf;
}

/* Colours only on a terminal that can show them, and never with NO_COLOR set (to anything). */
static void test_colours(void) {
        pid_t d = daemon_start_fresh(NULL);
        char *got;

        CU_ASSERT_EQUAL(cli(NULL, "create painted"), 0);
        got = list_on_terminal("-u NO_COLOR TERM=xterm");
        CU_ASSERT_PTR_NOT_NULL(strchr(got, '\033'));
        CU_ASSERT_PTR_NOT_NULL(strstr(got, "painted"));
        free(got);
        got = list_on_terminal("-u NO_COLOR TERM=dumb");
        CU_ASSERT_PTR_NULL(strchr(got, '\033'));
        CU_ASSERT_PTR_NOT_NULL(strstr(got, "painted"));
        free(got);
        got = list_on_terminal("TERM=xterm NO_COLOR=1");
        CU_ASSERT_PTR_NULL(strchr(got, '\033'));
        free(got);
        /* https://no-color.org: an empty NO_COLOR does not count. */
        got = list_on_terminal("TERM=xterm NO_COLOR=");
        CU_ASSERT_PTR_NOT_NULL(strchr(got, '\033'));
        free(got);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/*
 * Label values are escaped as the exposition formats require. Real channel
 * names cannot hold a quote, backslash or newline, so a stand-in daemon sends
 * one (it answers list and stat alike, so the reply serves as both).
 */
static void test_metrics_escaping(void) {
        static const char reply[] =
                "{\"v\":1,\"ok\":true,\"channels\":[{\"name\":\"q\\\"b\\\\s\\nn\"}],"
                "\"name\":\"q\\\"b\\\\s\\nn\",\"capacity\":4096,\"published\":12345678901,"
                "\"subscribers\":[{\"slot\":3,\"lag_bytes\":7}]}";
        char path[700], args[800];
        pid_t f;

        snprintf(path, sizeof(path), "%s/fake-metrics.sock", dir);
        f = fake_daemon_start(path, reply);
        snprintf(args, sizeof(args), "-s '%s' stats --format openmetrics", path);
        CU_ASSERT_EQUAL(cli(NULL, args), 0);
        CU_ASSERT_PTR_NOT_NULL(
                strstr(out, "shmbus_channel_capacity_bytes{channel=\"q\\\"b\\\\s\\nn\"} 4096\n"));
        CU_ASSERT_PTR_NOT_NULL(
                strstr(out, "shmbus_channel_published_messages_total{channel=\"q\\\"b\\\\s\\nn\"} "
                            "12345678901\n"));
        CU_ASSERT_PTR_NOT_NULL(strstr(
                out, "shmbus_subscriber_lag_bytes{channel=\"q\\\"b\\\\s\\nn\",slot=\"3\"} 7\n"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "shmbus_daemon_up 1\n"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "\n# EOF\n"));
        CU_ASSERT_EQUAL(strcmp(out + strlen(out) - 6, "# EOF\n"), 0);
        fake_daemon_stop(f, path);
}

int main(void) {
        static const struct test_case cases[] = {
                {"version and --help for every verb", test_version_and_help},
                {"create, pub, tail, list, status, stats, delete", test_create_pub_tail},
                {"tail --follow", test_follow},
                {"bad input and exit codes", test_errors_and_exit_codes},
                {"daemon down: read from files, refuse writes", test_daemon_down},
                {"replies are judged by the protocol's parser", test_reply_status},
                {"list: sorted by name, columns as wide as the longest",
                 test_list_sorted_and_aligned},
                {"daemon down, files unreadable: one line, exit 4", test_offline_no_access},
                {"daemon down: members of dead processes are not counted",
                 test_offline_dead_members},
                {"--json for tail and pub; list --json without a rate", test_json_everywhere},
                {"stats: time in --json and over --watch", test_stats_time},
                {"option errors, --version, help, units", test_messages_version_help},
                {"colours: TERM=dumb and NO_COLOR", test_colours},
                {"metrics: label values are escaped", test_metrics_escaping},
                {NULL, NULL},
        };
        int rc;

        if (testdaemon_setup("cli") < 0)
                return 99;
        rc = test_run("cli", cases);
        testdaemon_teardown(rc);
        free(out);
        free(errout);
        return rc;
}
