/* SPDX-License-Identifier: MIT */
/*
 * shmbus-cli, driven as a user would: the real binary against a real shmbusd,
 * checking output, JSON validity, exit codes and bad input.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <grp.h>
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
        snprintf(cmd, sizeof(cmd), "SHMBUS_SOCKET='%s' %s/cli/shmbus-cli %s <%s >%s 2>%s", sock, top,
                 args, in, o, e);
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
        snprintf(args, sizeof(args), "SHMBUS_SOCKET='%s' exec %s/cli/shmbus-cli tail feed -f -n 0 >%s",
                 sock, top, path);
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
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "channels"), 0),
                                            "published")->valuedouble,
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

int main(void) {
        static const struct test_case cases[] = {
                {"version and --help for every verb", test_version_and_help},
                {"create, pub, tail, list, status, stats, delete", test_create_pub_tail},
                {"tail --follow", test_follow},
                {"bad input and exit codes", test_errors_and_exit_codes},
                {"daemon down: read from files, refuse writes", test_daemon_down},
                {"replies are judged by the protocol's parser", test_reply_status},
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
