/* SPDX-License-Identifier: MIT */
/*
 * Route state files: one small file per route under the state directory,
 * mapped shared by the route's thread, holding where the route stands (the
 * last acknowledged seq of an export, the last committed seq per origin of an
 * import) and its statistics. `shmbus-bridge --stats` reads them with pread()
 * (never a mapping, so a file cut short can only give a short read).
 *
 * Invariants: the directory is the bridge user's own (created 0700, refused
 * when another uid owns it or others may write it); a file is opened without
 * following symlinks, must be a regular file of ours, and is locked
 * (flock) for as long as a bridge runs the route, so two bridges never run
 * one route from one state directory.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#include "bridge.h"
#include "util.h"

void bridge_stat_add(uint64_t *counter, uint64_t n) {
        __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

void bridge_stat_set(uint64_t *counter, uint64_t v) {
        __atomic_store_n(counter, v, __ATOMIC_RELAXED);
}

void bridge_stat_age(struct bridge_stats *s, uint64_t age_ns) {
        bridge_stat_add(&s->age_count, 1);
        bridge_stat_add(&s->age_sum_ns, age_ns);
        bridge_stat_set(&s->age_last_ns, age_ns);
        if (age_ns > s->age_max_ns)
                bridge_stat_set(&s->age_max_ns, age_ns);
}

/* The directory must be ours and closed to others: it decides where routes resume. */
static int state_dir_open(const char *dir, bool create) {
        struct stat st;
        int fd;

        if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
                fprintf(stderr, "shmbus-bridge: cannot create state directory %s: %s\n", dir,
                        strerror(errno));
                return -errno;
        }
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;

                fprintf(stderr, "shmbus-bridge: cannot open state directory %s: %s\n", dir,
                        strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0 || (create && st.st_uid != geteuid()) ||
            (create && (st.st_mode & 0022))) {
                fprintf(stderr,
                        "shmbus-bridge: state directory %s must belong to uid %u and not be "
                        "writable by others (chown/chmod it, or pass --state-dir)\n",
                        dir, (unsigned)geteuid());
                close(fd);
                return -EPERM;
        }
        return fd;
}

/* export-CHANNEL-SUBJECT.state, with every byte outside [A-Za-z0-9._-] of the subject as %XX. */
static int state_name(const struct bridge_route *route, char *buf, size_t size) {
        size_t n = (size_t)snprintf(buf, size, "%s-%s-",
                                    route->kind == BRIDGE_EXPORT ? "export" : "import",
                                    route->channel);

        for (const char *p = route->subject; *p && n + 4 < size; p++) {
                unsigned char c = (unsigned char)*p;

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-')
                        buf[n++] = (char)c;
                else
                        n += (size_t)snprintf(buf + n, size - n, "%%%02X", c);
        }
        if (n + 7 >= size)
                return -ENAMETOOLONG;
        snprintf(buf + n, size - n, ".state");
        return 0;
}

int bridge_state_open(const char *dir, const struct bridge_route *route, const char *host,
                      struct bridge_state **ret_st) {
        _cleanup_close_ int dfd = -1, fd = -1;
        struct bridge_state *st;
        char name[256];
        struct stat sb;

        if (state_name(route, name, sizeof(name)) < 0) {
                fprintf(stderr, "shmbus-bridge: route %s:%s: subject too long for a state file\n",
                        route->channel, route->subject);
                return -ENAMETOOLONG;
        }
        dfd = state_dir_open(dir, true);
        if (dfd < 0)
                return dfd;
        fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || fstat(fd, &sb) < 0) {
                int r = -errno;

                fprintf(stderr, "shmbus-bridge: cannot open state file %s/%s: %s\n", dir, name,
                        strerror(errno));
                return r;
        }
        if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
                fprintf(stderr, "shmbus-bridge: %s/%s is not a regular file of ours; remove it\n",
                        dir, name);
                return -EPERM;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                fprintf(stderr,
                        "shmbus-bridge: route %s:%s is run by another bridge using %s (give "
                        "each bridge its own --state-dir)\n",
                        route->channel, route->subject, dir);
                return -EBUSY;
        }
        if ((size_t)sb.st_size != sizeof(*st) &&
            (ftruncate(fd, 0) < 0 || ftruncate(fd, sizeof(*st)) < 0))
                return -errno;
        st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (st == MAP_FAILED)
                return -errno;
        if (st->magic != BRIDGE_STATE_MAGIC || st->version != BRIDGE_STATE_VERSION ||
            st->kind != (uint32_t)route->kind || st->mode != (uint32_t)route->mode ||
            strncmp(st->channel, route->channel, sizeof(st->channel)) != 0 ||
            strncmp(st->subject, route->subject, sizeof(st->subject)) != 0 ||
            strncmp(st->host, host, sizeof(st->host)) != 0) {
                /* New, or written for another route or mode: start this route afresh. */
                memset(st, 0, sizeof(*st));
                st->version = BRIDGE_STATE_VERSION;
                st->kind = (uint32_t)route->kind;
                st->mode = (uint32_t)route->mode;
                snprintf(st->channel, sizeof(st->channel), "%s", route->channel);
                snprintf(st->subject, sizeof(st->subject), "%s", route->subject);
                snprintf(st->host, sizeof(st->host), "%s", host);
                st->magic = BRIDGE_STATE_MAGIC;
        }
        st->pid = (int32_t)getpid();
        /* The lock lives as long as the descriptor: keep it open for the process's life. */
        (void)TAKE_FD(fd);
        *ret_st = st;
        return 0;
}

void bridge_state_close(struct bridge_state *st) {
        if (st) {
                st->pid = 0;
                munmap(st, sizeof(*st));
        }
}

static const char *kind_name(uint32_t k) {
        return k == BRIDGE_EXPORT ? "export" : k == BRIDGE_IMPORT ? "import" : "?";
}

static const char *mode_name(uint32_t m) {
        return m == BRIDGE_CORE ? "core" : m == BRIDGE_JETSTREAM ? "jetstream" : "?";
}

/* Whether a bridge process holds the route's lock (its pid alone may be stale or reused). */
static bool state_is_running(int fd) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
                flock(fd, LOCK_UN);
                return false;
        }
        return errno == EWOULDBLOCK;
}

static void stats_json_add(cJSON *arr, const struct bridge_state *st, bool running) {
        const struct bridge_stats *s = &st->stats;
        cJSON *o = cJSON_CreateObject();

        cJSON_AddStringToObject(o, "direction", kind_name(st->kind));
        cJSON_AddStringToObject(o, "mode", mode_name(st->mode));
        cJSON_AddStringToObject(o, "channel", st->channel);
        cJSON_AddStringToObject(o, "subject", st->subject);
        cJSON_AddStringToObject(o, "host", st->host);
        cJSON_AddBoolToObject(o, "running", running);
        if (running)
                cJSON_AddNumberToObject(o, "pid", st->pid);
        cJSON_AddNumberToObject(o, "msgs", (double)s->msgs);
        cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
        cJSON_AddNumberToObject(o, "lost_shmbus", (double)s->lost_shmbus);
        cJSON_AddNumberToObject(o, "dropped_nats", (double)s->dropped_nats);
        cJSON_AddNumberToObject(o, "lost_nats", (double)s->lost_nats);
        cJSON_AddNumberToObject(o, "duplicates", (double)s->duplicates);
        cJSON_AddNumberToObject(o, "skipped_marked", (double)s->skipped_marked);
        cJSON_AddNumberToObject(o, "skipped_own", (double)s->skipped_own);
        cJSON_AddNumberToObject(o, "reconnects", (double)s->reconnects);
        cJSON_AddNumberToObject(o, "resent", (double)s->resent);
        cJSON_AddNumberToObject(o, "errors", (double)s->errors);
        cJSON_AddNumberToObject(o, "age_count", (double)s->age_count);
        cJSON_AddNumberToObject(o, "age_mean_us",
                                s->age_count ? (double)s->age_sum_ns / (double)s->age_count / 1e3
                                             : 0);
        cJSON_AddNumberToObject(o, "age_max_us", (double)s->age_max_ns / 1e3);
        cJSON_AddNumberToObject(o, "age_last_us", (double)s->age_last_ns / 1e3);
        if (st->kind == BRIDGE_EXPORT && st->acked_valid)
                cJSON_AddNumberToObject(o, "acked_seq", (double)bridge_acked(st)->seq);
        cJSON_AddItemToArray(arr, o);
}

static void stats_text(const struct bridge_state *st, bool running) {
        const struct bridge_stats *s = &st->stats;

        printf("%-6s %-9s %s %s %s%s\n", kind_name(st->kind), mode_name(st->mode),
               st->kind == BRIDGE_EXPORT ? st->channel : st->subject,
               st->kind == BRIDGE_EXPORT ? "->" : "->",
               st->kind == BRIDGE_EXPORT ? st->subject : st->channel,
               running ? "" : "  (not running)");
        printf("  msgs %llu  bytes %llu  lost(shmbus) %llu  dropped(nats) %llu  lost(nats) %llu\n",
               (unsigned long long)s->msgs, (unsigned long long)s->bytes,
               (unsigned long long)s->lost_shmbus, (unsigned long long)s->dropped_nats,
               (unsigned long long)s->lost_nats);
        printf("  duplicates %llu  skipped(marked) %llu  skipped(own) %llu  reconnects %llu  "
               "resent %llu  errors %llu\n",
               (unsigned long long)s->duplicates, (unsigned long long)s->skipped_marked,
               (unsigned long long)s->skipped_own, (unsigned long long)s->reconnects,
               (unsigned long long)s->resent, (unsigned long long)s->errors);
        if (s->age_count)
                printf("  age mean %.1f us  max %.1f us  last %.1f us\n",
                       (double)s->age_sum_ns / (double)s->age_count / 1e3,
                       (double)s->age_max_ns / 1e3, (double)s->age_last_ns / 1e3);
}

int bridge_stats_print(const char *dir, bool json) {
        _cleanup_close_ int dfd = state_dir_open(dir, false);
        cJSON *arr = NULL;
        struct dirent *de;
        DIR *d;
        int n = 0;

        if (dfd < 0)
                return dfd;
        {
                int dup_fd = dup(dfd);

                d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
                if (!d) {
                        int err = -errno;

                        if (dup_fd >= 0)
                                close(dup_fd);
                        return err;
                }
        }
        if (json)
                arr = cJSON_CreateArray();
        while ((de = readdir(d))) {
                struct bridge_state st;
                size_t len = strlen(de->d_name);
                int fd;

                if (len < 7 || strcmp(de->d_name + len - 6, ".state") != 0)
                        continue;
                fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                if (fd < 0)
                        continue;
                if (pread(fd, &st, sizeof(st), 0) != (ssize_t)sizeof(st) ||
                    st.magic != BRIDGE_STATE_MAGIC || st.version != BRIDGE_STATE_VERSION) {
                        close(fd);
                        continue;
                }
                /* The file is untrusted text: terminate every string we print. */
                st.channel[sizeof(st.channel) - 1] = '\0';
                st.subject[sizeof(st.subject) - 1] = '\0';
                st.host[sizeof(st.host) - 1] = '\0';
                if (json)
                        stats_json_add(arr, &st, state_is_running(fd));
                else
                        stats_text(&st, state_is_running(fd));
                close(fd);
                n++;
        }
        closedir(d);
        if (json) {
                char *s = cJSON_Print(arr);

                if (s)
                        puts(s);
                free(s);
                cJSON_Delete(arr);
        } else if (n == 0) {
                printf("no bridge routes in %s\n", dir);
        }
        return n;
}
