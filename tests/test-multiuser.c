/* SPDX-License-Identifier: MIT */
/*
 * Many users on one host: ACLs by user and group name and by every group a
 * client is in, grants given at create, ownership and grants that survive a
 * daemon restart and that no member can forge, the hand-over of a shm
 * directory between a root shmbusd and one running as a service user, and a
 * socket file removed at exit exactly when the daemon made it.
 *
 * Clients run as uid 65534 (nobody) and 65533/65532 (unnamed) in forked
 * children; the cases that switch uids need root and are skipped otherwise.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shmbus.h"

#include "channel.h"
#include "layout.h"
#include "testdaemon.h"
#include "testutil.h"

#define NOBODY 65534
#define OTHER  65533
#define THIRD  65532

static int run_cli(const char *sockpath, const char *args, char *out, size_t size);

static bool need_root(void) {
        if (geteuid() == 0)
                return true;
        fprintf(stderr, "\n  (not root: uid-switching case not run)\n");
        return false;
}

/* What a client does as another user (as_user()). */
struct act {
        uid_t uid;
        gid_t group; /* a supplementary group to hold, or 0 */
        const char *sock;
        const char *op; /* sub, pub, create, delete, meta, scribble */
        const char *name;
        const shmbus_opts *opts; /* create */
};

static int code_of(int r) {
        return r == 0 ? 0 : r == -EACCES ? 4 : r == -ENOENT ? 3 : r == -EEXIST ? 6 : 5;
}

/* Overwrite every slot of @ch's ctl file with bytes that spell @uid, as a hostile member could. */
static int scribble(shmbus_channel *ch) {
        uint8_t *start = (uint8_t *)ch->ring.subs, *end = (uint8_t *)ch->ctl_map + ch->ctl_len;
        uint32_t uid = getuid();

        for (uint8_t *p = start; p + sizeof(uid) <= end; p += sizeof(uid))
                memcpy(p, &uid, sizeof(uid));
        return 0;
}

/*
 * Do @a in a child that is @a->uid (primary group the same number) and holds
 * @a->group. Return: 0 done, 4 EACCES, 3 ENOENT, 6 EEXIST, 5 other, 9x setup.
 */
static int as_user(const struct act *a) {
        pid_t pid = fork();

        if (pid == 0) {
                shmbus_client *c;
                shmbus_channel *ch = NULL;
                gid_t g = a->group;
                int r;

                if (setgroups(a->group ? 1 : 0, &g) < 0 || setgid(a->uid) < 0 || setuid(a->uid) < 0)
                        _exit(99);
                if (strcmp(a->op, "meta") == 0) {
                        char path[700];

                        snprintf(path, sizeof(path), "%s/%s.meta", shm, a->name);
                        r = open(path, O_RDONLY);
                        _exit(r >= 0 ? 0 : code_of(-errno));
                }
                if (shmbus_client_new(a->sock, &c) < 0)
                        _exit(98);
                if (strcmp(a->op, "pub") == 0)
                        r = shmbus_client_open(c, a->name, SHMBUS_OPEN_PUBLISH, NULL, &ch);
                else if (strcmp(a->op, "sub") == 0 || strcmp(a->op, "scribble") == 0)
                        r = shmbus_client_open(c, a->name, 0, NULL, &ch);
                else if (strcmp(a->op, "create") == 0)
                        r = shmbus_client_open(c, a->name, SHMBUS_OPEN_CREATE | SHMBUS_OPEN_PUBLISH,
                                               a->opts, &ch);
                else
                        r = shmbus_client_delete(c, a->name);
                if (r == 0 && strcmp(a->op, "scribble") == 0)
                        r = scribble(ch);
                _exit(code_of(r));
        }
        return test_wait(pid);
}

static int as(uid_t uid, const char *op, const char *name) {
        return as_user(&(struct act){.uid = uid, .sock = sock, .op = op, .name = name});
}

/* The stat reply for @name from the daemon on @path, as root. */
static cJSON *stat_of(const char *path, const char *name) {
        char req[200], *reply = NULL;
        shmbus_client *c;
        cJSON *j = NULL;

        if (shmbus_client_new(path, &c) < 0)
                return NULL;
        snprintf(req, sizeof(req), "{\"v\":1,\"op\":\"stat\",\"name\":\"%s\"}", name);
        if (shmbus_client_request(c, req, &reply) == 0)
                j = cJSON_Parse(reply);
        free(reply);
        shmbus_client_free(c);
        return j;
}

static double owner_of(const char *path, const char *name) {
        cJSON *j = stat_of(path, name);
        const cJSON *o = cJSON_GetObjectItem(j, "owner_uid");
        double v = cJSON_IsNumber(o) ? o->valuedouble : -1;

        cJSON_Delete(j);
        return v;
}

/* Does the log hold a line with @what? */
static bool logged(const char *what) {
        FILE *f = fopen(logpath, "r");
        char line[2048];
        bool found = false;

        while (f && fgets(line, sizeof(line), f))
                found |= strstr(line, what) != NULL;
        if (f)
                fclose(f);
        return found;
}

static void truncate_log(void) {
        FILE *f = fopen(logpath, "w");

        if (f)
                fclose(f);
}

/* ---- ACLs by name, and by every group ------------------------------------------------------ */

static void test_acl_names(void) {
        const char *top = test_builddir();
        char cmd[1400], path[700], out[1024];
        FILE *f;

        /* An unknown name is an error that names the key and the name. */
        snprintf(path, sizeof(path), "%s/names.json", dir);
        f = fopen(path, "w");
        fputs("{\"channels\": {\"x\": {\"subscribe\": {\"uids\": [\"root\", "
              "\"no-such-user-shmbus\"]}}}}",
              f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "%s/daemon/shmbusd --check-config -c %s 2>&1", top, path);
        f = popen(cmd, "r");
        memset(out, 0, sizeof(out));
        CU_ASSERT(fread(out, 1, sizeof(out) - 1, f) > 0);
        CU_ASSERT_NOT_EQUAL(pclose(f), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "channels.x.subscribe.uids"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "no-such-user-shmbus"));

        f = fopen(path, "w");
        fputs("{\"create\": {\"gids\": [\"no-such-group-shmbus\"]}}", f);
        fclose(f);
        f = popen(cmd, "r");
        memset(out, 0, sizeof(out));
        CU_ASSERT(fread(out, 1, sizeof(out) - 1, f) > 0);
        CU_ASSERT_NOT_EQUAL(pclose(f), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "create.gids"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown group"));

        /* Names that exist are taken, as they resolve now. */
        f = fopen(path, "w");
        fputs("{\"create\": {\"uids\": [\"root\", 0], \"gids\": [\"nogroup\"]},"
              " \"channels\": {\"x\": {\"publish\": {\"uids\": [\"nobody\"]}}}}",
              f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "%s/daemon/shmbusd --check-config -c %s >/dev/null 2>&1", top,
                 path);
        CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_acl_names_apply(void) {
        const char *cfg = "{\"channels\": {\"named\": {\"subscribe\": {\"uids\": [\"nobody\"]},"
                          " \"publish\": {\"gids\": [\"nogroup\"]}}}}";
        shmbus_channel *ch;
        shmbus_client *c;
        pid_t d;

        if (!need_root())
                return;
        chmod(dir, 0755);
        d = daemon_start_fresh(cfg);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "named", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(as(NOBODY, "sub", "named"), 0); /* "nobody" is uid 65534 */
        CU_ASSERT_EQUAL(as(NOBODY, "pub", "named"), 0); /* and its group is "nogroup" */
        CU_ASSERT_EQUAL(as(OTHER, "sub", "named"), 4);
        CU_ASSERT_EQUAL(as(OTHER, "pub", "named"), 4);

        /* Names are looked up again on SIGHUP; an unknown one keeps the running rules. */
        char path[700];
        FILE *f;

        snprintf(path, sizeof(path), "%s/shmbusd.json", dir);
        f = fopen(path, "w");
        fputs("{\"channels\": {\"named\": {\"subscribe\": {\"uids\": [\"nobody\","
              " \"no-such-user-shmbus\"]}}}}",
              f);
        fclose(f);
        truncate_log();
        kill(d, SIGHUP);
        for (int i = 0; i < 200 && !logged("reload failed"); i++)
                sleep_ms(10);
        CU_ASSERT(logged("channels.named.subscribe.uids"));
        CU_ASSERT(logged("reload failed"));
        CU_ASSERT_EQUAL(as(NOBODY, "pub", "named"), 0); /* the old rules still hold */
        f = fopen(path, "w");
        fputs("{\"channels\": {\"named\": {\"subscribe\": {\"uids\": [\"root\"]},"
              " \"publish\": {\"uids\": [\"root\"]}}}}",
              f);
        fclose(f);
        truncate_log();
        kill(d, SIGHUP);
        for (int i = 0; i < 200 && !logged("configuration reloaded"); i++)
                sleep_ms(10);
        CU_ASSERT_EQUAL(as(NOBODY, "sub", "named"), 4); /* the new ones do now */
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* A group in an ACL counts for its members whose primary group it is not. */
static void test_supplementary_groups(void) {
        const char *cfg = "{\"channels\": {\"team\": {\"subscribe\": {\"gids\": [4242]},"
                          " \"publish\": {\"gids\": [4243]}}},"
                          " \"create\": {\"gids\": [4244]}}";
        shmbus_channel *ch;
        shmbus_client *c;
        pid_t d;

        if (!need_root())
                return;
        chmod(dir, 0755);
        d = daemon_start_fresh(cfg);
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "team", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 4242, sock, "sub", "team", NULL}), 0);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 4242, sock, "pub", "team", NULL}), 4);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 4243, sock, "pub", "team", NULL}), 0);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "sub", "team", NULL}), 4);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "mine", NULL}), 4);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 4244, sock, "create", "mine", NULL}), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- grants at create ---------------------------------------------------------------------- */

static void test_grants_api(void) {
        shmbus_opts *o;

        CU_ASSERT_EQUAL_FATAL(shmbus_opts_new(&o), 0);
        CU_ASSERT_EQUAL(shmbus_opts_grant_uid(NULL, 1, SHMBUS_GRANT_PUBLISH), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, 1, 0), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, 1, 0x4), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, (uid_t)-1, SHMBUS_GRANT_PUBLISH), -EINVAL);
        CU_ASSERT_EQUAL(shmbus_opts_grant_gid(o, (gid_t)-1, SHMBUS_GRANT_PUBLISH), -EINVAL);
        for (uint32_t i = 0; i < SHMBUS_GRANTS_MAX; i++)
                CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, 1000 + i, SHMBUS_GRANT_SUBSCRIBE), 0);
        /* The same uid again adds roles; a new one does not fit. */
        CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, 1000, SHMBUS_GRANT_PUBLISH), 0);
        CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, 5000, SHMBUS_GRANT_PUBLISH), -ENOSPC);
        CU_ASSERT_EQUAL(shmbus_opts_grant_gid(o, 5000, SHMBUS_GRANT_PUBLISH), 0);
        shmbus_opts_free(o);
}

static shmbus_opts *grant_opts(uid_t sub_uid, gid_t pub_gid) {
        shmbus_opts *o = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_opts_new(&o), 0);
        if (sub_uid)
                CU_ASSERT_EQUAL(shmbus_opts_grant_uid(o, sub_uid, SHMBUS_GRANT_SUBSCRIBE), 0);
        if (pub_gid)
                CU_ASSERT_EQUAL(shmbus_opts_grant_gid(o, pub_gid, SHMBUS_GRANT_PUBLISH), 0);
        return o;
}

/* Is @id in @name's grants for @role (a stat reply's "grants")? */
static bool granted(const char *name, const char *role, const char *kind, double id) {
        cJSON *j = stat_of(sock, name);
        const cJSON *ids = cJSON_GetObjectItem(
                cJSON_GetObjectItem(cJSON_GetObjectItem(j, "grants"), role), kind);
        const cJSON *v;
        bool found = false;

        cJSON_ArrayForEach(v, ids) found |= cJSON_IsNumber(v) && v->valuedouble == id;
        cJSON_Delete(j);
        return found;
}

static void test_grants(void) {
        shmbus_opts *o = grant_opts(OTHER, 4245);
        pid_t d;

        if (!need_root()) {
                shmbus_opts_free(o);
                return;
        }
        chmod(dir, 0755);
        d = daemon_start_fresh("{\"channels\": {\"ruled\": {\"subscribe\": \"any\"}}}");
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "granted", o}), 0);
        CU_ASSERT_EQUAL(as(OTHER, "sub", "granted"), 0); /* granted */
        CU_ASSERT_EQUAL(as(OTHER, "pub", "granted"), 4); /* only to subscribe */
        CU_ASSERT_EQUAL(as(OTHER, "delete", "granted"), 4);
        CU_ASSERT_EQUAL(as(THIRD, "sub", "granted"), 4); /* not granted */
        CU_ASSERT_EQUAL(as_user(&(struct act){THIRD, 4245, sock, "pub", "granted", NULL}), 0);
        CU_ASSERT_EQUAL(as_user(&(struct act){THIRD, 4245, sock, "sub", "granted", NULL}), 4);
        CU_ASSERT(granted("granted", "subscribe", "uids", OTHER));
        CU_ASSERT(granted("granted", "publish", "gids", 4245));
        /* A role the configuration decides cannot be granted. */
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "ruled", o}), 4);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);

        /* "grant" says who may grant; others may still create without grants. */
        truncate_log();
        d = daemon_start_fresh("{\"grant\": {\"uids\": [65533]}}");
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "nogrant", o}), 4);
        CU_ASSERT_EQUAL(as(NOBODY, "create", "nogrant"), 0);
        CU_ASSERT_EQUAL(as_user(&(struct act){OTHER, 0, sock, "create", "maygrant", o}), 0);
        CU_ASSERT(logged("may not grant"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        shmbus_opts_free(o);
}

/* A bad grant in a raw request is refused and names the key. */
static void test_grants_wire(void) {
        static const char *bad[] = {
                "{\"v\":1,\"op\":\"open\",\"name\":\"w\",\"role\":\"pub\",\"create\":"
                "{\"grants\":{\"publish\":{\"uids\":[\"alice\"]}}}}",
                "{\"v\":1,\"op\":\"open\",\"name\":\"w\",\"role\":\"pub\",\"create\":"
                "{\"grants\":{\"admin\":\"any\"}}}",
                "{\"v\":1,\"op\":\"open\",\"name\":\"w\",\"role\":\"pub\",\"create\":"
                "{\"grants\":[1]}}",
        };
        shmbus_client *c;
        pid_t d = daemon_start_fresh(NULL);

        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *reply = NULL;

                CU_ASSERT_EQUAL(shmbus_client_request(c, bad[i], &reply), 0);
                CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "EINVAL") ? reply : NULL);
                CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "create.grants") ? reply : NULL);
                free(reply);
        }
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(test_count_entries(shm), 0); /* nothing was created */
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* shmbus-cli create --allow-sub/--allow-pub resolves names; status shows the grants. */
static void test_cli_grants(void) {
        char out[2048];
        pid_t d;

        if (!need_root())
                return;
        chmod(dir, 0755);
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL(run_cli(sock,
                                "create clig --allow-sub nobody --allow-pub group:nogroup "
                                "--allow-sub user:65533",
                                out, sizeof(out)),
                        0);
        CU_ASSERT_EQUAL(run_cli(sock, "status clig", out, sizeof(out)), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "granted sub: uids 65534 65533"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "granted pub: gids 65534"));
        CU_ASSERT_EQUAL(as(NOBODY, "sub", "clig"), 0);
        CU_ASSERT_EQUAL(as(NOBODY, "pub", "clig"), 0); /* by its group */
        CU_ASSERT_EQUAL(as(OTHER, "sub", "clig"), 0);
        CU_ASSERT_EQUAL(as(THIRD, "sub", "clig"), 4);
        /* A name nobody has is a usage error that says what it took it for. */
        CU_ASSERT_EQUAL(
                run_cli(sock, "create clix --allow-sub no-such-user-shmbus", out, sizeof(out)), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown user 'no-such-user-shmbus'"));
        CU_ASSERT_EQUAL(run_cli(sock, "create clix --allow-pub group:no-such-group-shmbus", out,
                                sizeof(out)),
                        2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown group"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- ownership and grants survive a restart, and cannot be forged ---------------------------- */

static void kill_and_restart(pid_t *d) {
        kill(*d, SIGKILL);
        test_wait(*d);
        *d = daemon_start(NULL);
}

static void test_ownership_survives_restart(void) {
        shmbus_opts *o = grant_opts(OTHER, 0);
        char path[700];
        struct stat st;
        pid_t d;

        if (!need_root()) {
                shmbus_opts_free(o);
                return;
        }
        chmod(dir, 0755);
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "mine", o}), 0);
        CU_ASSERT_EQUAL(owner_of(sock, "mine"), NOBODY);

        /* The record is the daemon's alone: no member can read or replace it. */
        snprintf(path, sizeof(path), "%s/mine.meta", shm);
        CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
        CU_ASSERT_EQUAL(st.st_uid, geteuid());
        CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
        CU_ASSERT_EQUAL(as(NOBODY, "meta", "mine"), 4);

        kill_and_restart(&d);
        CU_ASSERT_EQUAL(owner_of(sock, "mine"), NOBODY);
        CU_ASSERT(granted("mine", "subscribe", "uids", OTHER));
        CU_ASSERT_EQUAL(as(NOBODY, "pub", "mine"), 0); /* the creator still may */
        CU_ASSERT_EQUAL(as(OTHER, "sub", "mine"), 0);  /* and so may its grantee */
        CU_ASSERT_EQUAL(as(THIRD, "sub", "mine"), 4);  /* and nobody else */
        CU_ASSERT_EQUAL(as(OTHER, "delete", "mine"), 4);
        CU_ASSERT_EQUAL(as(NOBODY, "delete", "mine"), 0);
        CU_ASSERT_EQUAL(stat(path, &st), -1); /* delete takes the record with it */
        CU_ASSERT_EQUAL(test_count_entries(shm), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        shmbus_opts_free(o);
}

/* A member that scribbles on the ctl file it maps read-write cannot become the owner. */
static void test_ctl_scribble(void) {
        shmbus_opts *o = grant_opts(OTHER, 0);
        pid_t d;

        if (!need_root()) {
                shmbus_opts_free(o);
                return;
        }
        chmod(dir, 0755);
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "owned", o}), 0);
        CU_ASSERT_EQUAL(as(OTHER, "scribble", "owned"), 0);
        kill_and_restart(&d);
        CU_ASSERT_EQUAL(owner_of(sock, "owned"), NOBODY);
        CU_ASSERT_EQUAL(as(OTHER, "delete", "owned"), 4);
        CU_ASSERT_EQUAL(as(OTHER, "pub", "owned"), 4);
        CU_ASSERT_EQUAL(as(NOBODY, "delete", "owned"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        shmbus_opts_free(o);
}

/* A record left from an earlier channel of the same name is not believed. */
static void test_stale_meta(void) {
        char from[700], to[700];
        pid_t d;

        if (!need_root())
                return;
        chmod(dir, 0755);
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL(as(NOBODY, "create", "reused"), 0);
        snprintf(from, sizeof(from), "%s/reused.meta", shm);
        snprintf(to, sizeof(to), "%s/saved", dir);
        CU_ASSERT_EQUAL(link(from, to), 0);
        CU_ASSERT_EQUAL(as(NOBODY, "delete", "reused"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        /* The name made again, without a daemon (so without a record), and the old one put back. */
        shmbus_channel *ch;
        CU_ASSERT_EQUAL(shmbus_channel_create(shm, "reused", NULL, 0600, &ch), 0);
        shmbus_channel_unref(ch);
        CU_ASSERT_EQUAL(rename(to, from), 0);
        truncate_log();
        d = daemon_start(NULL);
        CU_ASSERT_EQUAL(owner_of(sock, "reused"), 0);
        CU_ASSERT_EQUAL(as(NOBODY, "pub", "reused"), 4);
        CU_ASSERT(logged("not believed"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- hand-over between a root shmbusd and one running as a service user --------------------- */

/*
 * Start shmbusd as @uid on @shmdir and @sockpath, its log appended to the
 * test's. Its descriptors from 3 up are closed, except that @fd3 (if >= 0)
 * becomes fd 3, announced as socket activation if @activate.
 */
static pid_t spawn_as(uid_t uid, const char *shmdir, const char *sockpath, int fd3, bool activate) {
        char bin[600];
        pid_t pid;

        snprintf(bin, sizeof(bin), "%s/daemon/shmbusd", test_builddir());
        pid = fork();
        if (pid == 0) {
                int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
                char self[32];

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                dup2(log, 1);
                dup2(log, 2);
                /* dup2() clears FD_CLOEXEC, except when there is nothing to duplicate. */
                if (fd3 >= 0 && (fd3 == 3 ? fcntl(3, F_SETFD, 0) : dup2(fd3, 3)) < 0)
                        _exit(98);
                close_range(fd3 >= 0 ? 4 : 3, ~0u, 0);
                if (activate) {
                        snprintf(self, sizeof(self), "%d", (int)getpid());
                        setenv("LISTEN_PID", self, 1);
                        setenv("LISTEN_FDS", "1", 1);
                }
                if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
                        _exit(99);
                execl(bin, "shmbusd", "-s", sockpath, "-d", shmdir, "-u", "300", (char *)NULL);
                _exit(127);
        }
        return pid;
}

/* Wait until the daemon @pid answers on @sockpath; false if it exited first. */
static bool answers(pid_t pid, const char *sockpath) {
        for (int i = 0; i < 500; i++) {
                shmbus_client *c;

                if (shmbus_client_new(sockpath, &c) == 0) {
                        shmbus_client_free(c);
                        return true;
                }
                if (waitpid(pid, NULL, WNOHANG) == pid)
                        return false;
                sleep_ms(10);
        }
        return false;
}

static void stop(pid_t pid) {
        kill(pid, SIGTERM);
        CU_ASSERT_EQUAL(test_wait(pid), 0);
}

/* @base/channels and @base/run/s.sock, the run directory the service user's. */
static void handover_dirs(const char *tag, char *base, char *shmdir, char *sockpath, size_t size) {
        snprintf(base, size, "%s/%s", dir, tag);
        snprintf(shmdir, size, "%s/channels", base);
        CU_ASSERT_EQUAL_FATAL(mkdir(base, 0755), 0);
        snprintf(sockpath, size, "%s/run", base);
        CU_ASSERT_EQUAL_FATAL(mkdir(sockpath, 0755), 0);
        CU_ASSERT_EQUAL(chown(sockpath, NOBODY, NOBODY), 0);
        snprintf(sockpath, size, "%s/run/s.sock", base);
}

static int run_cli(const char *sockpath, const char *args, char *out, size_t size) {
        char cmd[1200];
        FILE *f;

        snprintf(cmd, sizeof(cmd), "%s/cli/shmbus-cli -s %s %s 2>&1", test_builddir(), sockpath,
                 args);
        f = popen(cmd, "r");
        memset(out, 0, size);
        if (fread(out, 1, size - 1, f) == 0)
                out[0] = '\0';
        return WEXITSTATUS(pclose(f));
}

/* The quick start's root daemon, then the unit's (uid shmbus; here 65534) on the same directory. */
static void test_handover_root_to_user(void) {
        char base[300], shmdir[300], sockpath[300], cmd[700], out[1024], want[400];
        shmbus_channel *ch;
        shmbus_client *c;
        pid_t d;

        if (!need_root())
                return;
        chmod(dir, 0755);
        handover_dirs("r2u", base, shmdir, sockpath, sizeof(base));
        d = spawn_as(0, shmdir, sockpath, -1, false);
        CU_ASSERT_FATAL(answers(d, sockpath));
        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sockpath, &c), 0);
        CU_ASSERT_EQUAL(shmbus_client_open(c, "chat", SHMBUS_OPEN_CREATE, NULL, &ch), 0);
        shmbus_channel_unref(ch);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sockpath, "create", "theirs", NULL}), 0);
        stop(d);

        /* Without the hand-over the directory is root's: one message says what to run. */
        truncate_log();
        d = spawn_as(NOBODY, shmdir, sockpath, -1, false);
        CU_ASSERT_EQUAL(test_wait(d), 1);
        snprintf(want, sizeof(want), "chown -R %d:%d %s", NOBODY, NOBODY, shmdir);
        CU_ASSERT(logged(want));

        /* systemd-tmpfiles' "d" line gives the unit the directory, not the files in it. */
        CU_ASSERT_EQUAL(chown(shmdir, NOBODY, NOBODY), 0);
        truncate_log();
        d = spawn_as(NOBODY, shmdir, sockpath, -1, false);
        CU_ASSERT_FATAL(answers(d, sockpath));
        CU_ASSERT(logged("not adopted (chat, theirs)") || logged("not adopted (theirs, chat)"));
        CU_ASSERT(logged(want));
        /* A create of a stranded channel says why, not "File exists". */
        CU_ASSERT_EQUAL(run_cli(sockpath, "pub chat hi --create", out, sizeof(out)), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "shmbusd does not serve them"));
        CU_ASSERT(logged("chown 65534:65534"));
        /* And status does not just say there is no such channel. */
        snprintf(cmd, sizeof(cmd), "-d %s status chat", shmdir);
        CU_ASSERT_EQUAL(run_cli(sockpath, cmd, out, sizeof(out)), 3);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "did not adopt them"));
        stop(d);

        /* What the message says to run, and the channels are back, owners and all. */
        snprintf(cmd, sizeof(cmd), "chown -R %d:%d %s", NOBODY, NOBODY, shmdir);
        CU_ASSERT_EQUAL(system(cmd), 0);
        d = spawn_as(NOBODY, shmdir, sockpath, -1, false);
        CU_ASSERT_FATAL(answers(d, sockpath));
        CU_ASSERT_EQUAL(owner_of(sockpath, "chat"), 0);
        CU_ASSERT_EQUAL(owner_of(sockpath, "theirs"), NOBODY);
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sockpath, "pub", "theirs", NULL}), 0);
        CU_ASSERT_EQUAL(as_user(&(struct act){OTHER, 0, sockpath, "sub", "theirs", NULL}), 4);
        CU_ASSERT_EQUAL(run_cli(sockpath, "pub chat hi", out, sizeof(out)), 0);
        stop(d);
}

/* The unit's daemon made the directory; then a root daemon is started on it. */
static void test_handover_user_to_root(void) {
        char base[300], shmdir[300], sockpath[300], cmd[700];
        shmbus_opts *o = grant_opts(OTHER, 0);
        pid_t d;

        if (!need_root()) {
                shmbus_opts_free(o);
                return;
        }
        chmod(dir, 0755);
        handover_dirs("u2r", base, shmdir, sockpath, sizeof(base));
        CU_ASSERT_EQUAL(mkdir(shmdir, 0755), 0);
        CU_ASSERT_EQUAL(chown(shmdir, NOBODY, NOBODY), 0); /* as tmpfiles.d makes it */
        d = spawn_as(NOBODY, shmdir, sockpath, -1, false);
        CU_ASSERT_FATAL(answers(d, sockpath));
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sockpath, "create", "svc", o}), 0);
        stop(d);

        truncate_log();
        d = spawn_as(0, shmdir, sockpath, -1, false);
        CU_ASSERT_EQUAL(test_wait(d), 1);
        snprintf(cmd, sizeof(cmd), "chown -R root:root %s", shmdir);
        CU_ASSERT(logged(cmd));
        CU_ASSERT(logged("systemctl start shmbusd.socket"));

        CU_ASSERT_EQUAL(system(cmd), 0);
        d = spawn_as(0, shmdir, sockpath, -1, false);
        CU_ASSERT_FATAL(answers(d, sockpath));
        CU_ASSERT_EQUAL(owner_of(sockpath, "svc"), NOBODY);
        CU_ASSERT_EQUAL(as_user(&(struct act){OTHER, 0, sockpath, "sub", "svc", NULL}), 0);
        CU_ASSERT_EQUAL(as_user(&(struct act){THIRD, 0, sockpath, "sub", "svc", NULL}), 4);
        stop(d);
        shmbus_opts_free(o);
}

/* ---- the socket file: removed at exit exactly when the daemon made it ----------------------- */

static int listening_socket(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        CU_ASSERT_EQUAL(listen(fd, 8), 0);
        return fd;
}

static void test_socket_file(void) {
        char own[300], passed[300];
        struct stat st;
        pid_t d;
        int fd;

        fresh_shm();
        snprintf(own, sizeof(own), "%s/own.sock", dir);
        snprintf(passed, sizeof(passed), "%s/passed.sock", dir);

        /* Started with nothing past stderr, its own socket is fd 3: still its own to remove. */
        d = spawn_as(0, shm, own, -1, false);
        CU_ASSERT_FATAL(answers(d, own));
        stop(d);
        CU_ASSERT_EQUAL(stat(own, &st), -1);

        /* An fd 3 inherited without LISTEN_PID/LISTEN_FDS is not activation. */
        fd = listening_socket(passed);
        d = spawn_as(0, shm, own, fd, false);
        close(fd); /* the daemon's alone, so that it refuses connections once the daemon is gone */
        CU_ASSERT_FATAL(answers(d, own));
        stop(d);
        CU_ASSERT_EQUAL(stat(own, &st), -1);
        CU_ASSERT_EQUAL(stat(passed, &st), 0);
        unlink(passed);

        /* With them, the passed socket is served and logged, and left for systemd. */
        truncate_log();
        fd = listening_socket(passed);
        d = spawn_as(0, shm, own, fd, true);
        close(fd);
        CU_ASSERT_FATAL(answers(d, passed));
        CU_ASSERT_EQUAL(stat(own, &st), -1); /* it made none of its own */
        stop(d);
        CU_ASSERT_EQUAL(stat(passed, &st), 0);
        CU_ASSERT(logged(passed));
        unlink(passed);
}

/* The exit code of @pid within 5 s, or -1 (then it is killed: a daemon that started). */
static int exit_code_within(pid_t pid) {
        for (int i = 0; i < 500; i++) {
                int st;

                if (waitpid(pid, &st, WNOHANG) == pid)
                        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
                sleep_ms(10);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
}

/* A file that is not a socket at the socket's path is left alone, and the log says what to do. */
static void test_socket_path_not_a_socket(void) {
        char path[300], buf[32] = {0};
        pid_t d;
        int fd;

        fresh_shm();
        snprintf(path, sizeof(path), "%s/precious", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_EQUAL(write(fd, "keep me", 7), 7);
        close(fd);
        truncate_log();
        d = spawn_as(geteuid(), shm, path, -1, false);
        CU_ASSERT_EQUAL(exit_code_within(d), 1);
        fd = open(path, O_RDONLY);
        CU_ASSERT_FATAL(fd >= 0);
        CU_ASSERT_EQUAL(read(fd, buf, sizeof(buf) - 1), 7);
        CU_ASSERT_STRING_EQUAL(buf, "keep me");
        close(fd);
        CU_ASSERT(logged("not a socket is in the way"));
        unlink(path);
}

/* ---- a peer in very many groups --------------------------------------------------------- */

/* The resident memory of @pid in KiB, or -1. */
static long rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "r");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

#define MANY_GROUPS 65536
#define MANY_CONNS  64

/*
 * A user in the kernel's maximum of groups (reachable without privilege
 * through subordinate gids in a user namespace) holds many connections: the
 * daemon's memory does not grow by the 256 KiB group list of each.
 */
static void test_many_groups(void) {
        int ready[2], done[2];
        long before, after;
        pid_t d, child;
        char c = 0;

        if (!need_root())
                return;
        chmod(dir, 0755);
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(done), 0);
        before = rss_kib(d);
        child = fork();
        if (child == 0) {
                static gid_t groups[MANY_GROUPS];
                shmbus_client *cl[MANY_CONNS];
                char *reply = NULL;

                for (uint32_t i = 0; i < MANY_GROUPS; i++)
                        groups[i] = 100000 + i;
                if (setgroups(MANY_GROUPS, groups) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
                        _exit(99);
                for (int i = 0; i < MANY_CONNS; i++) {
                        if (shmbus_client_new(sock, &cl[i]) < 0 ||
                            shmbus_client_request(cl[i], "{\"v\":1,\"op\":\"hello\"}", &reply) < 0)
                                _exit(98);
                        free(reply);
                        reply = NULL;
                }
                if (write(ready[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
                        _exit(97);
                _exit(0);
        }
        CU_ASSERT_EQUAL(read(ready[0], &c, 1), 1);
        after = rss_kib(d);
        CU_ASSERT_EQUAL(write(done[1], &c, 1), 1);
        CU_ASSERT_EQUAL(test_wait(child), 0);
        fprintf(stderr, "\n  daemon RSS %ld -> %ld KiB with %d connections of %d groups\n", before,
                after, MANY_CONNS, MANY_GROUPS);
        /* Kept whole, the groups alone would be 64 * 256 KiB = 16 MiB. */
        CU_ASSERT(before > 0 && after > 0 && after - before < 4096);
        CU_ASSERT(logged("in 65536 groups; ACLs see the lowest 1024"));
        close(ready[0]);
        close(ready[1]);
        close(done[0]);
        close(done[1]);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* ---- meta files that are not the daemon's record -------------------------------------- */

/* A meta file too large to be one the daemon wrote is not read, and the log says why. */
static void test_meta_too_large(void) {
        char path[700];
        pid_t d;
        FILE *f;

        if (!need_root())
                return;
        chmod(dir, 0755);
        d = daemon_start_fresh(NULL);
        CU_ASSERT_EQUAL(as(NOBODY, "create", "big"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        /* Still valid JSON, but 20 KiB of it. */
        snprintf(path, sizeof(path), "%s/big.meta", shm);
        f = fopen(path, "a");
        CU_ASSERT_FATAL(f != NULL);
        for (int i = 0; i < 20 * 1024; i++)
                fputc(' ', f);
        fclose(f);
        truncate_log();
        d = daemon_start(NULL);
        CU_ASSERT_EQUAL(owner_of(sock, "big"), 0);
        CU_ASSERT(logged("more than the 16384 this daemon ever writes"));
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

/* A socket in a directory others can write could be replaced by an impostor: the log says so. */
static void test_socket_dir_writable(void) {
        char open_dir[300], path[400];
        pid_t d;

        fresh_shm();
        snprintf(open_dir, sizeof(open_dir), "%s/open-run", dir);
        CU_ASSERT_EQUAL_FATAL(mkdir(open_dir, 0755), 0);
        CU_ASSERT_EQUAL(chmod(open_dir, 01777), 0);
        snprintf(path, sizeof(path), "%s/s.sock", open_dir);
        truncate_log();
        d = spawn_as(geteuid(), shm, path, -1, false);
        CU_ASSERT_FATAL(answers(d, path));
        stop(d);
        CU_ASSERT(logged("can be written by others"));
        CU_ASSERT(logged("/run/shmbus"));

        /* Its own directory, or root's, is no cause for alarm. */
        CU_ASSERT_EQUAL(chmod(open_dir, 0755), 0);
        truncate_log();
        d = spawn_as(geteuid(), shm, path, -1, false);
        CU_ASSERT_FATAL(answers(d, path));
        stop(d);
        CU_ASSERT(!logged("can be written by others"));
        rmdir(open_dir);
}

/* ---- a name taken first: a create lands on nobody else's channel ----------------------- */

static void test_create_taken_name(void) {
        shmbus_opts *o = grant_opts(OTHER, OTHER);
        pid_t d;

        if (!need_root()) {
                shmbus_opts_free(o);
                return;
        }
        chmod(dir, 0755);
        d = daemon_start_fresh("{\"channels\": {\"ruled\": {\"publish\": \"any\"}}}");
        /* nobody takes the name OTHER means to create, and lets OTHER in. */
        CU_ASSERT_EQUAL(as_user(&(struct act){NOBODY, 0, sock, "create", "payroll", o}), 0);
        truncate_log();
        CU_ASSERT_EQUAL(as_user(&(struct act){OTHER, 0, sock, "create", "payroll", NULL}), 6);
        CU_ASSERT(logged("asked to create channel payroll, which uid 65534 created"));
        /* As a grantee, knowingly: without create. */
        CU_ASSERT_EQUAL(as(OTHER, "pub", "payroll"), 0);
        /* The owner's create-or-open, root's, and one a rule admits still open it. */
        CU_ASSERT_EQUAL(as(NOBODY, "create", "payroll"), 0);
        CU_ASSERT_EQUAL(as(0, "create", "payroll"), 0);
        CU_ASSERT_EQUAL(as(NOBODY, "create", "ruled"), 0);
        CU_ASSERT_EQUAL(as(OTHER, "create", "ruled"), 0);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
        shmbus_opts_free(o);
}

int main(void) {
        static const struct test_case cases[] = {
                {"ACLs by name: unknown names refused with the key", test_acl_names},
                {"ACLs by name apply", test_acl_names_apply},
                {"ACL groups match supplementary groups", test_supplementary_groups},
                {"grants: the options API", test_grants_api},
                {"grants at create: granted, not others; config limits", test_grants},
                {"grants: bad grants on the wire are refused", test_grants_wire},
                {"shmbus-cli create --allow-sub/--allow-pub; status shows grants", test_cli_grants},
                {"owner and grants survive kill -9 and restart", test_ownership_survives_restart},
                {"scribbling on ctl does not change the owner", test_ctl_scribble},
                {"a stale meta file is not believed", test_stale_meta},
                {"root daemon, then the unit's: adopted or told what to run",
                 test_handover_root_to_user},
                {"the unit's directory, then a root daemon", test_handover_user_to_root},
                {"the socket file is removed iff the daemon made it", test_socket_file},
                {"a file that is not a socket is not removed", test_socket_path_not_a_socket},
                {"a peer in 65536 groups costs the daemon little", test_many_groups},
                {"a meta file too large is not read, and the log says so", test_meta_too_large},
                {"a socket directory others can write is warned about", test_socket_dir_writable},
                {"create of another user's channel is refused, not joined", test_create_taken_name},
                {NULL, NULL},
        };
        int rc;

        signal(SIGPIPE, SIG_IGN);
        if (testdaemon_setup("multiuser") < 0)
                return 99;
        rc = test_run("multiuser", cases);
        testdaemon_teardown(rc);
        return rc;
}
