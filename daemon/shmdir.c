/* SPDX-License-Identifier: MIT */
/* See shmdir.h. The rules are systemd's for the paths it trusts (chase(), safe_transition). */
#include "shmdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* Is the directory open as @fd, reached as @shown, safe to hold channels below it? */
static int component_check(int fd, const char *shown, bool last, char *why, size_t size) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return snprintf(why, size, "%s: %s", shown, strerror(errno)), -errno;
        if (!S_ISDIR(st.st_mode))
                return snprintf(why, size, "%s: not a directory", shown), -ENOTDIR;
        if (st.st_uid != 0 && st.st_uid != geteuid())
                return snprintf(why, size,
                                "%s is owned by uid %u, not by root or us (%u): that user could "
                                "swap the channel files",
                                shown, (unsigned)st.st_uid, (unsigned)geteuid()),
                       -EPERM;
        if ((st.st_mode & 022) && (last || !(st.st_mode & S_ISVTX)))
                return snprintf(why, size, "%s is writable by group or others (mode %04o)", shown,
                                (unsigned)(st.st_mode & 07777)),
                       -EPERM;
        return 0;
}

int shmdir_open(const char *path, char *why, size_t size) {
        _cleanup_close_ int fd = -1;
        char shown[4096], comp[256];
        const char *p = path;
        size_t shown_len = 0;
        int r;

        if (!path || path[0] != '/' || strlen(path) >= sizeof(shown))
                return snprintf(why, size, "not an absolute path"), -EINVAL;
        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return snprintf(why, size, "/: %s", strerror(errno)), -errno;
        shown[0] = '/';
        shown[1] = '\0';
        shown_len = 1;
        for (;;) {
                size_t n;
                int next;

                while (*p == '/')
                        p++;
                n = strcspn(p, "/");
                r = component_check(fd, shown, n == 0, why, size);
                if (r < 0 || n == 0)
                        break;
                if (n >= sizeof(comp) || (n == 2 && p[0] == '.' && p[1] == '.') ||
                    (n == 1 && p[0] == '.'))
                        return snprintf(why, size, "%s: '.', '..' or an overlong component", path),
                               -EINVAL;
                memcpy(comp, p, n);
                comp[n] = '\0';
                p += n;
                /* A symlink is refused: it is not a directory under O_NOFOLLOW. */
                next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                snprintf(shown + shown_len, sizeof(shown) - shown_len, "%s%s",
                         shown_len > 1 ? "/" : "", comp);
                shown_len = strlen(shown);
                if (next < 0) {
                        r = -errno;
                        snprintf(why, size, "%s: %s", shown,
                                 r == -ENOTDIR ? "not a directory (a symlink?)" : strerror(-r));
                        return r;
                }
                close(fd);
                fd = next;
        }
        if (r < 0)
                return r;
        return TAKE_FD(fd);
}
