/* SPDX-License-Identifier: MIT */
/*
 * See meta.h. The file is one JSON object:
 *   {"v":1,"name":N,"ctl_ino":"I","data_ino":"I","owner_uid":U,"owner_gid":G,
 *    "grants":{...},"slow_subscriber_timeout_ms":T}
 * (grants and the timeout only when there are any).
 * Inode numbers are decimal strings: a double holds only 53 bits of them.
 */
#include "meta.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "files.h"
#include "json.h"
#include "util.h"
#include "wire.h"

#define META_VERSION  1
#define META_CTL_INO  "ctl_ino"
#define META_DATA_INO "data_ino"

static int write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

static cJSON *meta_json(const char *name, const struct meta *m) {
        _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
        char ctl[24], data[24];

        snprintf(ctl, sizeof(ctl), "%" PRIu64, m->ctl_ino);
        snprintf(data, sizeof(data), "%" PRIu64, m->data_ino);
        if (!o || !cJSON_AddNumberToObject(o, WIRE_V, META_VERSION) ||
            !cJSON_AddStringToObject(o, WIRE_NAME, name) ||
            !cJSON_AddStringToObject(o, META_CTL_INO, ctl) ||
            !cJSON_AddStringToObject(o, META_DATA_INO, data) ||
            !cJSON_AddNumberToObject(o, WIRE_OWNER_UID, m->owner) ||
            !cJSON_AddNumberToObject(o, WIRE_OWNER_GID, m->group) ||
            grants_add_json(o, WIRE_GRANTS, &m->grants) < 0 ||
            (m->has_slow_subscriber_timeout &&
             !cJSON_AddNumberToObject(o, WIRE_SLOW_SUBSCRIBER_TIMEOUT_MS,
                                      m->slow_subscriber_timeout_ms)))
                return NULL;
        return TAKE_PTR(o);
}

int meta_save(int dirfd, const char *name, const struct meta *m) {
        _cleanup_cjson_ cJSON *o = meta_json(name, m);
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -1;
        char path[SHMBUS_NAME_MAX + 16], tmp[SHMBUS_NAME_MAX + 16];
        int r;

        /* Relative to the shm directory's descriptor (shmdir.h), never by its path. */
        r = shmbus__channel_file_path(path, sizeof(path), ".", name, SHMBUS_FILE_META);
        if (r < 0)
                return r;
        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
                return -ENAMETOOLONG;
        text = o ? cJSON_PrintUnformatted(o) : NULL;
        if (!text)
                return -ENOMEM;
        /* The directory is writable by the daemon alone (main.c checks it), so no one
         * can have planted the temporary name; O_NOFOLLOW all the same. */
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0600) < 0)
                r = -errno;
        else
                r = write_all(fd, text, strlen(text));
        if (r == 0 && renameat(dirfd, tmp, dirfd, path) < 0)
                r = -errno;
        if (r < 0)
                unlinkat(dirfd, tmp, 0);
        return r;
}

/* The text of a trusted meta file, or -errno with @why. */
static int meta_read(int dirfd, const char *path, char **ret_text, char *why, size_t size) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        struct stat st;
        ssize_t n;

        fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return snprintf(why, size, "%s", strerror(errno)), -errno;
        if (fstat(fd, &st) < 0)
                return snprintf(why, size, "%s", strerror(errno)), -errno;
        if (!S_ISREG(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != 0) ||
            (st.st_mode & 077))
                return snprintf(why, size,
                                "not a private file of this daemon's uid (uid %u, mode %04o)",
                                (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777)),
                       -EPERM;
        if (st.st_size > META_FILE_MAX)
                return snprintf(why, size,
                                "%lld bytes, more than the %d this daemon ever writes: not its "
                                "record",
                                (long long)st.st_size, META_FILE_MAX),
                       -EFBIG;
        text = calloc(1, (size_t)st.st_size + 1);
        if (!text)
                return -ENOMEM;
        n = read(fd, text, (size_t)st.st_size);
        if (n != st.st_size)
                return snprintf(why, size, "short read"), -EIO;
        *ret_text = TAKE_PTR(text);
        return 0;
}

static bool get_ino(const cJSON *o, const char *key, uint64_t *ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        char *end;

        if (!cJSON_IsString(v) || !v->valuestring[0])
                return false;
        errno = 0;
        *ret = strtoull(v->valuestring, &end, 10);
        return errno == 0 && *end == '\0';
}

static bool get_id(const cJSON *o, const char *key, uint32_t *ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (double)UINT32_MAX ||
            v->valuedouble != (double)(uint32_t)v->valuedouble)
                return false;
        *ret = (uint32_t)v->valuedouble;
        return true;
}

int meta_load(int dirfd, const char *name, uint64_t ctl_ino, uint64_t data_ino, struct meta *m,
              char *why, size_t size) {
        _cleanup_free_ char *text = NULL;
        _cleanup_cjson_ cJSON *o = NULL;
        const cJSON *v, *grants;
        char path[SHMBUS_NAME_MAX + 16];
        struct meta got = {0};
        int r;

        r = shmbus__channel_file_path(path, sizeof(path), ".", name, SHMBUS_FILE_META);
        if (r < 0)
                return snprintf(why, size, "%s", strerror(-r)), r;
        r = meta_read(dirfd, path, &text, why, size);
        if (r < 0)
                return r;
        o = cJSON_Parse(text);
        v = cJSON_GetObjectItemCaseSensitive(o, WIRE_V);
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(v) || v->valueint != META_VERSION)
                return snprintf(why, size, "not a version %d meta file", META_VERSION), -EINVAL;
        v = cJSON_GetObjectItemCaseSensitive(o, WIRE_NAME);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, name) != 0 ||
            !get_ino(o, META_CTL_INO, &got.ctl_ino) || !get_ino(o, META_DATA_INO, &got.data_ino) ||
            !get_id(o, WIRE_OWNER_UID, &got.owner) || !get_id(o, WIRE_OWNER_GID, &got.group))
                return snprintf(why, size, "a field is missing or malformed"), -EINVAL;
        if (got.ctl_ino != ctl_ino || got.data_ino != data_ino)
                return snprintf(why, size, "it is about earlier files of that name"), -ESTALE;
        grants = cJSON_GetObjectItemCaseSensitive(o, WIRE_GRANTS);
        if (grants && grants_parse(grants, WIRE_GRANTS, &got.grants, why, size) < 0)
                return -EINVAL;
        /* Within the bounds a create request or the configuration has. */
        if (config_parse_slow_subscriber_timeout(o, "", &got.has_slow_subscriber_timeout,
                                                 &got.slow_subscriber_timeout_ms, why, size) < 0)
                return -EINVAL;
        *m = got;
        return 0;
}
