/* SPDX-License-Identifier: MIT */
/*
 * A client in a container. shmbusd hands channel descriptors over its socket,
 * so a client needs neither the host's /dev/shm nor its IPC namespace: this
 * test runs one in new pid, ipc, mount and network namespaces (and a user
 * namespace where the kernel allows it), with an empty private /dev/shm and
 * nothing of the host's runtime but the daemon's socket directory, mounted
 * read-only at /run/shmbus as `docker run -v /run/shmbus:/run/shmbus:ro` would. It exchanges
 * ledger-checked messages with a client on the host both ways, is refused a
 * channel its uid is not granted, and when killed its slots are released
 * (the daemon knows its host-side pid from SO_PEERCRED, not the 1 it sees).
 *
 * The namespaced client is the grandchild: the child unshares (a new pid
 * namespace only applies to its children) and forks it as pid 1. Without the
 * namespaces this needs, the test skips (77) unless SHMBUS_REQUIRE_NAMESPACES=1.
 */
#undef NDEBUG
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "shmbus.h"

#include "testdaemon.h"
#include "testutil.h"
#include "wire.h"

/* Where the container sees the socket's directory: the default socket's. */
#define CTR_RUNDIR "/run/shmbus"

/* The host uid a namespaced client runs as when the test runs as root. */
#define CTR_UID  100000u

#define PUB_HOST 1u
#define PUB_NS   2u
#define MSGS     2000u
#define MAX_MSG  1024u

static char rundir[600];  /* the directory holding only the socket */
static bool use_userns;   /* decided once by probe_namespaces() */
static bool proc_private; /* the namespaced client got its own /proc */
static uid_t ns_uid;      /* the uid the daemon sees for the namespaced client */
static gid_t ns_gid;
static uid_t host_uid; /* the host client's: it owns the channels */

/* ---- making the namespaces ----------------------------------------------------------------- */

/* Read @len bytes (one packet's worth of a pipe) within @timeout_ms; false on timeout or EOF. */
static bool read_within(int fd, void *buf, size_t len, int timeout_ms) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        return poll(&p, 1, timeout_ms) == 1 && read(fd, buf, len) == (ssize_t)len;
}

/* One byte within @timeout_ms; -1 on timeout or end of file. */
static int read_byte(int fd, int timeout_ms) {
        unsigned char b;

        return read_within(fd, &b, 1, timeout_ms) ? b : -1;
}

static int write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;

        if (fd < 0)
                return -errno;
        if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
                r = -errno;
        close(fd);
        return r;
}

_Noreturn static void die(const char *what) {
        fprintf(stderr, "namespace setup: %s: %s\n", what, strerror(errno));
        _exit(3);
}

/*
 * In the child, after unshare(): make every mount private (so nothing
 * propagates back to the host), give it a fresh /run holding only the socket's
 * directory (@rundir_fd) at CTR_RUNDIR, read-only, and an empty /dev/shm.
 */
static void ns_mounts(int rundir_fd) {
        char src[64];

        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                die("make / private");
        if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                die("tmpfs on /run");
        if (mkdir(CTR_RUNDIR, 0755) < 0)
                die("mkdir " CTR_RUNDIR);
        snprintf(src, sizeof(src), "/proc/self/fd/%d", rundir_fd);
        if (mount(src, CTR_RUNDIR, NULL, MS_BIND, NULL) < 0)
                die("bind the socket's directory");
        /* Read-only, as docs/CONTAINERS.md advises (-v ...:ro): connecting needs no write. */
        if (mount(NULL, CTR_RUNDIR, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
                die("make the socket's directory read-only");
        close(rundir_fd);
        if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
                die("tmpfs on /dev/shm");
}

/* In the parent: map the child's root to ns_uid/ns_gid, as a container runtime does. */
static int map_ids(pid_t child) {
        char path[64], map[64];
        int r;

        if (geteuid() != 0) {
                /* Unprivileged, a gid_map may only be written once setgroups() is off. */
                snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)child);
                if ((r = write_file(path, "deny")) < 0)
                        return r;
        }
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)child);
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)ns_gid);
        if ((r = write_file(path, map)) < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)child);
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)ns_uid);
        return write_file(path, map);
}

struct ns_client {
        pid_t outer; /* the child that made the namespaces; exits with the client's status */
        pid_t inner; /* the client: pid 1 inside, this pid outside */
};

/*
 * Run @body as pid 1 of new namespaces; it inherits every descriptor. Returns
 * 0, or -1 if the namespaces could not be made (the child said why on stderr
 * and has been reaped).
 */
static int ns_spawn(int (*body)(void *), void *arg, struct ns_client *ret) {
        int sync[2], go[2], pidp[2];
        int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET;
        pid_t outer, inner = 0;

        if (use_userns)
                flags |= CLONE_NEWUSER;
        if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(pidp, O_CLOEXEC) < 0)
                abort();
        outer = fork();
        if (outer == 0) {
                int rundir_fd;

                if (unshare(flags) < 0)
                        die(use_userns ? "unshare with CLONE_NEWUSER" : "unshare");
                /*
                 * Opened in the new mount namespace (a bind mount's source must
                 * be in it), and before we become the mapped uid, which may not
                 * search the test's directory; the fresh /dev/shm hides it anyway.
                 */
                rundir_fd = open(rundir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (rundir_fd < 0)
                        die(rundir);
                if (use_userns) {
                        if (write(sync[1], "u", 1) != 1 || read_byte(go[0], 5000) != 'm')
                                _exit(3); /* the parent could not map our ids: it said why */
                        /* Become the mapped root; the capabilities in the new namespace stay. */
                        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                                die("become the namespace's root");
                        (void)setgroups(0, NULL); /* refused when unprivileged: nothing to drop */
                }
                /* Only now: changing credentials clears the parent-death signal. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                ns_mounts(rundir_fd);
                inner = fork();
                if (inner == 0) {
                        /* A container's own /proc where allowed; the client does not need it. */
                        (void)mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                    NULL);
                        if (!use_userns &&
                            (setgroups(0, NULL) < 0 || setresgid(ns_gid, ns_gid, ns_gid) < 0 ||
                             setresuid(ns_uid, ns_uid, ns_uid) < 0))
                                die("drop to the container's uid");
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        unsetenv("SHMBUS_SOCKET");
                        _exit(body(arg));
                }
                if (inner < 0 || write(pidp[1], &inner, sizeof(inner)) != sizeof(inner))
                        die("fork the namespaced client");
                _exit(test_wait(inner));
        }
        close(sync[1]);
        close(go[0]);
        close(pidp[1]);
        if (use_userns) {
                int r = -1;

                if (read_byte(sync[0], 5000) == 'u' && (r = map_ids(outer)) < 0)
                        fprintf(stderr, "namespace setup: map uid %u: %s\n", (unsigned)ns_uid,
                                strerror(-r));
                if (r == 0 && write(go[1], "m", 1) != 1)
                        r = -1;
        }
        close(go[1]); /* unmapped, the child sees the end of file at once */
        if (!read_within(pidp[0], &inner, sizeof(inner), 5000))
                inner = 0;
        close(sync[0]);
        close(pidp[0]);
        if (inner <= 0) {
                kill(outer, SIGKILL);
                test_wait(outer);
                return -1;
        }
        *ret = (struct ns_client){.outer = outer, .inner = inner};
        return 0;
}

/* 0 with a private /proc (where pid 2 does not exist yet), 2 with the host's, 1 if wrong. */
static int probe_body(void *arg) {
        if (getpid() != 1 || test_count_entries("/dev/shm") != 0)
                return 1;
        return access("/proc/2", F_OK) == 0 ? 2 : 0;
}

/* Can we make the namespaces, with or without a user namespace? Sets use_userns, ns_uid. */
static bool probe_namespaces(void) {
        struct ns_client n;

        for (int attempt = 0; attempt < 2; attempt++) {
                use_userns = attempt == 0;
                if (!use_userns && geteuid() != 0)
                        break; /* without a user namespace, only root can unshare */
                /* As root, the client runs as an unprivileged uid, as in a container. */
                ns_uid = geteuid() == 0 ? CTR_UID : geteuid();
                ns_gid = geteuid() == 0 ? CTR_UID : getegid();
                if (ns_spawn(probe_body, NULL, &n) == 0) {
                        int rc = test_wait(n.outer);

                        proc_private = rc == 0;
                        if (rc == 0 || rc == 2)
                                return true;
                }
        }
        return false;
}

/* ---- the daemon's view ---------------------------------------------------------------------- */

static cJSON *stat_channel(shmbus_client *c, const char *name) {
        cJSON *req = cJSON_CreateObject(), *reply = NULL;
        char *text, *rep = NULL;

        cJSON_AddNumberToObject(req, WIRE_V, WIRE_VERSION);
        cJSON_AddStringToObject(req, WIRE_OP, WIRE_OP_STAT);
        cJSON_AddStringToObject(req, WIRE_NAME, name);
        text = cJSON_PrintUnformatted(req);
        if (text && shmbus_client_request(c, text, &rep) == 0)
                reply = cJSON_Parse(rep);
        free(rep);
        free(text);
        cJSON_Delete(req);
        return reply;
}

static int64_t stat_field(shmbus_client *c, const char *name, const char *field) {
        cJSON *j = stat_channel(c, name);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, field);
        int64_t v = cJSON_IsNumber(f) ? (int64_t)f->valuedouble : -1;

        cJSON_Delete(j);
        return v;
}

/* The pid in the first active slot of @role (WIRE_SUBSCRIBERS or WIRE_PUBLISHERS). */
static int64_t stat_slot_pid(shmbus_client *c, const char *name, const char *role) {
        cJSON *j = stat_channel(c, name);
        const cJSON *slot = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, role), 0);
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(slot, WIRE_PID);
        int64_t v = cJSON_IsNumber(pid) ? (int64_t)pid->valuedouble : -1;

        cJSON_Delete(j);
        return v;
}

/* Did the daemon log that it denied @uid the channel @name? */
static bool log_has_denial(uid_t uid, const char *name) {
        char line[512], who[64];
        FILE *f = fopen(logpath, "r");
        bool found = false;

        snprintf(who, sizeof(who), "denied: uid %u ", (unsigned)uid);
        while (f && fgets(line, sizeof(line), f))
                found |= strstr(line, who) && strstr(line, name);
        if (f)
                fclose(f);
        return found;
}

/*
 * Channels the host creates (as their owner): "up" and "down" for traffic,
 * "blk" small enough to fill, all granted to the container's uid by the
 * configuration; "private" has no rule, so only its owner and root may use it.
 */
static pid_t start_daemon_for_container(void) {
        char cfg[1024], acl[128];

        snprintf(acl, sizeof(acl), "\"publish\": {\"uids\": [%u]}, \"subscribe\": {\"uids\": [%u]}",
                 (unsigned)ns_uid, (unsigned)ns_uid);
        snprintf(cfg, sizeof(cfg),
                 "{\"channels\": {"
                 "\"up\": {\"capacity\": 65536, \"max_msg\": %u, %s},"
                 "\"down\": {\"capacity\": 65536, \"max_msg\": %u, %s},"
                 "\"blk\": {\"capacity\": 4096, \"max_msg\": 512, \"policy\": \"block\", %s}}}",
                 MAX_MSG, acl, MAX_MSG, acl, acl);
        return daemon_start_fresh(cfg);
}

static shmbus_channel *host_open(shmbus_client *c, const char *name, int flags) {
        shmbus_channel *ch = NULL;

        CU_ASSERT_EQUAL_FATAL(shmbus_client_open(c, name, flags | SHMBUS_OPEN_CREATE, NULL, &ch),
                              0);
        return ch;
}

/* ---- the namespaced client's side ------------------------------------------------------------ */

/* Say what went wrong (in either process) and return @code, the child's exit status. */
__attribute__((format(printf, 2, 3))) static int fail_with(int code, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "FAIL: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\n");
        return code;
}

/* What the client sees: pid 1, an empty /dev/shm, no host paths, only loopback. */
static int ns_check_isolation(void) {
        struct if_nameindex *ifs;
        unsigned nifs = 0;

        if (getpid() != 1)
                return fail_with(10, "namespaced client: pid %d, not 1", (int)getpid());
        if (test_count_entries("/dev/shm") != 0)
                return fail_with(11, "namespaced client: /dev/shm is not empty");
        /* The test's directory is on the host's /dev/shm, unless that was unusable. */
        if (strncmp(dir, "/dev/shm/", 9) == 0 && (access(shm, F_OK) == 0 || access(dir, F_OK) == 0))
                return fail_with(12, "namespaced client: the host's %s is visible", dir);
        if (access(SHMBUS_DEFAULT_SOCKET, W_OK) < 0)
                return fail_with(13, "namespaced client: %s: %s", SHMBUS_DEFAULT_SOCKET,
                                 strerror(errno));
        ifs = if_nameindex();
        for (struct if_nameindex *i = ifs; i && i->if_index; i++)
                nifs++;
        if (ifs)
                if_freenameindex(ifs);
        if (nifs > 1)
                return fail_with(14, "namespaced client: %u network interfaces", nifs);
        return 0;
}

/*
 * Publish MSGS messages on @p as publisher @me and receive MSGS from @peer on
 * @s, interleaved (both channels block, so each side must keep reading while
 * it sends), checking that each arrives once, in order and intact.
 */
static int pump(shmbus_pub *p, uint32_t me, shmbus_sub *s, uint32_t peer, const char *who) {
        static uint8_t out[MAX_MSG], in[MAX_MSG];
        uint32_t sent = 0, got = 0, pub = 0, seq = 0;
        int64_t deadline = ms_now() + 20000;

        while (sent < MSGS || got < MSGS) {
                bool progress = false;
                ssize_t n;

                if (ms_now() > deadline)
                        return fail_with(30, "%s: timed out at %u sent, %u received", who, sent,
                                         got);
                if (sent < MSGS) {
                        size_t len = tmsg_len(me, sent, MAX_MSG);
                        /* With nothing left to receive, waiting to send is all there is. */
                        int r;

                        tmsg_fill(out, len, me, sent);
                        r = shmbus_pub_send(p, out, len, got == MSGS ? 5 : 0);
                        if (r == 0) {
                                sent++;
                                progress = true;
                        } else if (r != -EAGAIN && r != -ETIMEDOUT) {
                                return fail_with(31, "%s: send: %s", who, shmbus_strerror(r));
                        }
                }
                if (got == MSGS)
                        continue;
                /* Nothing sent: wait a little for the peer rather than spin. */
                n = shmbus_sub_recv(s, in, sizeof(in), progress ? 0 : 5);
                if (n == -EAGAIN || n == -ETIMEDOUT)
                        continue;
                if (n < 0)
                        return fail_with(32, "%s: receive: %s", who, shmbus_strerror((int)n));
                if (!tmsg_check(in, (size_t)n, &pub, &seq) || pub != peer || seq != got ||
                    (size_t)n != tmsg_len(peer, got, MAX_MSG))
                        return fail_with(33, "%s: message %u: got pub %u seq %u len %zd", who, got,
                                         pub, seq, n);
                got++;
        }
        if (shmbus_sub_lost(s) != 0)
                return fail_with(34, "%s: %llu lost", who, (unsigned long long)shmbus_sub_lost(s));
        return 0;
}

static int ns_traffic(void *arg) {
        int ready = *(int *)arg; /* written once subscribed */
        shmbus_client *c;
        shmbus_channel *up, *down, *priv;
        shmbus_pub *p;
        shmbus_sub *s;
        int r;

        if ((r = ns_check_isolation()) != 0)
                return r;
        /* No path given and $SHMBUS_SOCKET unset: the default, as in a container. */
        if ((r = shmbus_client_new(NULL, &c)) < 0)
                return fail_with(20, "namespaced client: connect: %s", shmbus_strerror(r));
        /* Not granted to our uid (unless it is the host's own, when not run as root). */
        r = shmbus_client_open(c, "private", 0, NULL, &priv);
        if (ns_uid != host_uid ? r != -EACCES : r != 0)
                return fail_with(21, "namespaced client: open private: %s", shmbus_strerror(r));
        if ((r = shmbus_client_open(c, "down", 0, NULL, &down)) < 0 ||
            (r = shmbus_sub_new(down, &s)) < 0 ||
            (r = shmbus_client_open(c, "up", SHMBUS_OPEN_PUBLISH, NULL, &up)) < 0 ||
            (r = shmbus_pub_new(up, &p)) < 0)
                return fail_with(22, "namespaced client: open up/down: %s", shmbus_strerror(r));
        /* Still nothing in our /dev/shm: the channels came as descriptors. */
        if (test_count_entries("/dev/shm") != 0)
                return fail_with(23, "namespaced client: channel files appeared in /dev/shm");
        if (write(ready, "r", 1) != 1)
                return fail_with(24, "namespaced client: ready: %s", strerror(errno));
        return pump(p, PUB_NS, s, PUB_HOST, "namespaced client");
}

/* Hold a subscriber on "blk" (never reading) and a publisher on "up", then wait to be killed. */
static int ns_holder(void *arg) {
        int ready = *(int *)arg; /* written once subscribed */
        shmbus_client *c;
        shmbus_channel *up, *blk;
        shmbus_pub *p;
        shmbus_sub *s;
        int r;

        if ((r = shmbus_client_new(NULL, &c)) < 0 ||
            (r = shmbus_client_open(c, "blk", 0, NULL, &blk)) < 0 ||
            (r = shmbus_sub_new(blk, &s)) < 0 ||
            (r = shmbus_client_open(c, "up", SHMBUS_OPEN_PUBLISH, NULL, &up)) < 0 ||
            (r = shmbus_pub_new(up, &p)) < 0)
                return fail_with(40, "namespaced holder: %s", shmbus_strerror(r));
        if (write(ready, "r", 1) != 1)
                return fail_with(41, "namespaced holder: ready: %s", strerror(errno));
        for (;;)
                pause();
}

/* ---- the tests ------------------------------------------------------------------------------ */

static void test_traffic(void) {
        pid_t d = start_daemon_for_container();
        shmbus_client *c;
        shmbus_channel *up, *down, *priv;
        shmbus_pub *p;
        shmbus_sub *s;
        struct ns_client n;
        int fds[2];

        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        priv = host_open(c, "private", 0);
        up = host_open(c, "up", 0);
        down = host_open(c, "down", SHMBUS_OPEN_PUBLISH);
        CU_ASSERT_EQUAL_FATAL(shmbus_sub_new(up, &s), 0);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(down, &p), 0);
        CU_ASSERT_EQUAL_FATAL(pipe2(fds, O_CLOEXEC), 0);
        CU_ASSERT_EQUAL_FATAL(ns_spawn(ns_traffic, &fds[1], &n), 0);
        close(fds[1]);
        /* Our subscriber on "up" exists already; theirs on "down" once they say so. */
        CU_ASSERT_EQUAL(read_byte(fds[0], 5000), 'r');
        CU_ASSERT_EQUAL(pump(p, PUB_HOST, s, PUB_NS, "host client"), 0);
        CU_ASSERT_EQUAL(test_wait(n.outer), 0);
        CU_ASSERT_EQUAL(stat_field(c, "up", WIRE_PUBLISHED), MSGS);
        CU_ASSERT_EQUAL(stat_field(c, "down", WIRE_PUBLISHED), MSGS);
        /* The daemon judged the container by its uid as mapped to the host, and says so. */
        if (ns_uid != host_uid)
                CU_ASSERT(log_has_denial(ns_uid, "private"));
        close(fds[0]);
        shmbus_pub_free(p);
        shmbus_sub_free(s);
        shmbus_channel_unref(up);
        shmbus_channel_unref(down);
        shmbus_channel_unref(priv);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

static void test_killed(void) {
        pid_t d = start_daemon_for_container();
        shmbus_client *c;
        shmbus_channel *up, *blk;
        shmbus_pub *p;
        struct ns_client n;
        char msg[100] = {0};
        int fds[2], sent = 0;
        int64_t t0;

        CU_ASSERT_EQUAL_FATAL(shmbus_client_new(sock, &c), 0);
        up = host_open(c, "up", 0);
        blk = host_open(c, "blk", SHMBUS_OPEN_PUBLISH);
        CU_ASSERT_EQUAL_FATAL(shmbus_pub_new(blk, &p), 0);
        CU_ASSERT_EQUAL_FATAL(pipe2(fds, O_CLOEXEC), 0);
        CU_ASSERT_EQUAL_FATAL(ns_spawn(ns_holder, &fds[1], &n), 0);
        close(fds[1]);
        CU_ASSERT_EQUAL_FATAL(read_byte(fds[0], 5000), 'r');
        CU_ASSERT_EQUAL(stat_field(c, "blk", WIRE_SUBSCRIBERS_ACTIVE), 1);
        CU_ASSERT_EQUAL(stat_field(c, "up", WIRE_PUBLISHERS_ACTIVE), 1);
        /* Its slots carry its pid as the host sees it, not the 1 it sees itself. */
        CU_ASSERT_EQUAL(stat_slot_pid(c, "blk", WIRE_SUBSCRIBERS), n.inner);
        CU_ASSERT_EQUAL(stat_slot_pid(c, "up", WIRE_PUBLISHERS), n.inner);

        while (shmbus_pub_send(p, msg, sizeof(msg), 0) == 0)
                sent++;
        CU_ASSERT(sent > 0 && sent < 64); /* the ring filled: the namespaced subscriber holds us */
        CU_ASSERT_EQUAL(shmbus_pub_send(p, msg, sizeof(msg), 50), -ETIMEDOUT);

        kill(n.inner, SIGKILL);
        t0 = ms_now();
        CU_ASSERT_EQUAL(shmbus_pub_send(p, msg, sizeof(msg), 5000), 0);
        CU_ASSERT(ms_now() - t0 < 3000);
        for (int i = 0; i < 300 && (stat_field(c, "blk", WIRE_SUBSCRIBERS_ACTIVE) != 0 ||
                                    stat_field(c, "up", WIRE_PUBLISHERS_ACTIVE) != 0);
             i++)
                sleep_ms(10);
        CU_ASSERT_EQUAL(stat_field(c, "blk", WIRE_SUBSCRIBERS_ACTIVE), 0);
        CU_ASSERT_EQUAL(stat_field(c, "up", WIRE_PUBLISHERS_ACTIVE), 0);
        CU_ASSERT_EQUAL(test_wait(n.outer), 128 + SIGKILL);
        close(fds[0]);
        shmbus_pub_free(p);
        shmbus_channel_unref(up);
        shmbus_channel_unref(blk);
        shmbus_client_free(c);
        CU_ASSERT_EQUAL(daemon_stop(d), 0);
}

int main(void) {
        static const struct test_case cases[] = {
                {"namespaced client: both directions, ledger-checked; ACL by mapped uid",
                 test_traffic},
                {"namespaced client killed: slots freed, blocked publisher goes on", test_killed},
                {NULL, NULL},
        };
        const char *require = getenv("SHMBUS_REQUIRE_NAMESPACES");
        int rc;

        signal(SIGPIPE, SIG_IGN);
        host_uid = geteuid();
        if (testdaemon_setup("ctr") < 0)
                return 99;
        /* The socket alone in its own directory: the one thing a container gets. */
        snprintf(rundir, sizeof(rundir), "%s/run", dir);
        /* Searchable by the container's uid whatever the umask: it owns nothing here. */
        if (mkdir(rundir, 0755) < 0 || chmod(rundir, 0755) < 0 ||
            snprintf(sock, sizeof(sock), "%s/shmbusd.sock", rundir) >= (int)sizeof(sock)) {
                testdaemon_teardown(0);
                return 99;
        }
        if (!probe_namespaces()) {
                bool required = require && strcmp(require, "1") == 0;

                printf("%s: cannot make pid, ipc, mount and network namespaces here (see "
                       "above)%s\n",
                       required ? "FAIL" : "SKIP",
                       required ? "; SHMBUS_REQUIRE_NAMESPACES=1 says they must be" : "");
                testdaemon_teardown(0);
                return required ? 99 : 77;
        }
        printf("namespaces: %spid, ipc, mount, net (%s /proc); the daemon sees the client as uid "
               "%u%s\n",
               use_userns ? "user, " : "", proc_private ? "private" : "the host's",
               (unsigned)ns_uid,
               use_userns ? " (its root, mapped)"
                          : " (no user namespace: root made the others, then dropped to it)");
        rc = test_run("containers", cases);
        testdaemon_teardown(rc);
        return rc;
}
