/* SPDX-License-Identifier: MIT */
/* See handover.h. Messages name users as well as uids where NSS knows them. */
#include "handover.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"
#include "log.h"

/* "uid 999 (shmbus)", or "uid 999" for a uid without a name. */
static const char *uid_desc(uid_t uid, char *buf, size_t size) {
        const struct passwd *pw = getpwuid(uid);

        if (pw)
                snprintf(buf, size, "uid %u (%s)", (unsigned)uid, pw->pw_name);
        else
                snprintf(buf, size, "uid %u", (unsigned)uid);
        return buf;
}

int handover_check_dir(const char *dir, char *why, size_t size) {
        uid_t me = geteuid();
        char owner[64], self[64];
        struct stat st;

        if (lstat(dir, &st) < 0)
                return snprintf(why, size, "%s", strerror(errno)), -errno;
        if (!S_ISDIR(st.st_mode))
                return snprintf(why, size, "not a directory (a symlink?)"), -ENOTDIR;
        uid_desc(st.st_uid, owner, sizeof(owner));
        uid_desc(me, self, sizeof(self));
        if (st.st_uid != me && st.st_uid != 0) {
                if (me == 0)
                        return snprintf(why, size,
                                        "owned by %s, not by root: a shmbusd running as that "
                                        "user made it (the systemd unit's runs as shmbus). Serve "
                                        "it with that daemon (systemctl start shmbusd.socket), "
                                        "or hand it to root first: chown -R root:root %s",
                                        owner, dir),
                               -EPERM;
                return snprintf(why, size,
                                "owned by %s, not by this shmbusd (%s) or root. Run shmbusd as "
                                "%s, or hand the directory over (as root): chown -R %u:%u %s",
                                owner, self, owner, (unsigned)me, (unsigned)getegid(), dir),
                       -EPERM;
        }
        if (st.st_mode & 022)
                return snprintf(why, size, "writable by group or others (mode %04o)",
                                (unsigned)(st.st_mode & 07777)),
                       -EPERM;
        if (st.st_uid != me && access(dir, W_OK) < 0)
                return snprintf(why, size,
                                "owned by root and not writable by this shmbusd (%s): a shmbusd "
                                "running as root made it (the quick start's?). Hand it over (as "
                                "root): chown -R %u:%u %s (systemd-tmpfiles --create does that "
                                "for the systemd unit)",
                                self, (unsigned)me, (unsigned)getegid(), dir),
                       -EPERM;
        return 0;
}

void handover_note(struct handover *h, const char *name, uid_t uid) {
        size_t len = strlen(h->names);

        if (h->n_foreign++ == 0)
                h->uid = uid;
        /* The first few names; the count says how many there were. */
        if (len + strlen(name) + 3 < sizeof(h->names))
                snprintf(h->names + len, sizeof(h->names) - len, "%s%s", len ? ", " : "", name);
}

void handover_report(const struct handover *h, const char *dir) {
        char owner[64], self[64];

        if (!h->n_foreign)
                return;
        log_err("%u channel(s) in %s not adopted (%s): their files belong to %s, not to this "
                "shmbusd (%s). To hand them over, run as root: chown -R %u:%u %s "
                "(systemd-tmpfiles --create does that for the systemd unit), then restart "
                "shmbusd; or remove them: rm %s/NAME.*",
                h->n_foreign, dir, h->names, uid_desc(h->uid, owner, sizeof(owner)),
                uid_desc(geteuid(), self, sizeof(self)), (unsigned)geteuid(), (unsigned)getegid(),
                dir, dir);
}

void handover_explain_stranded(const char *dir, const char *name, char *why, size_t size) {
        char path[PATH_MAX], owner[64], self[64];
        struct stat st;

        if (shmbus__channel_file_path(path, sizeof(path), dir, name, "ctl") < 0 ||
            lstat(path, &st) < 0) {
                snprintf(why, size,
                         "channel %s: files of that name in %s are in the way; rm %s/%s.*", name,
                         dir, dir, name);
                return;
        }
        /* Short enough for a reply (REPLY_MESSAGE_MAX): the log has the long story. */
        if (st.st_uid != geteuid()) {
                snprintf(why, size,
                         "channel %s: files in %s belong to %s, not to this shmbusd (%s); as "
                         "root: chown %u:%u %s/%s.* and restart shmbusd, or rm them",
                         name, dir, uid_desc(st.st_uid, owner, sizeof(owner)),
                         uid_desc(geteuid(), self, sizeof(self)), (unsigned)geteuid(),
                         (unsigned)getegid(), dir, name);
                return;
        }
        snprintf(why, size,
                 "channel %s: files in %s that shmbusd did not adopt (its log says why); "
                 "rm %s/%s.* or restart shmbusd",
                 name, dir, dir, name);
}
