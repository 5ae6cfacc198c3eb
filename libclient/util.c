/* SPDX-License-Identifier: MIT */
/*
 * The library's small answers that need no object: whether a name is a valid
 * channel name, the library's version, and what an error code means.
 *
 * Invariants: nothing here allocates, and every string returned is static.
 */
#include "util.h"

#include <errno.h>
#include <string.h>

#include "shmbus.h"

#include "layout.h"

bool shmbus__name_is_valid(const char *name) {
        size_t n;

        if (!name || name[0] == '\0' || name[0] == '.')
                return false;
        n = strlen(name);
        if (n > SHMBUS_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

SHMBUS_EXPORT const char *shmbus_version(void) {
        return PACKAGE_VERSION;
}

SHMBUS_EXPORT const char *shmbus_strerror(int err) {
        const char *s;

        switch (err) {
        case 0:
                return "success";
        case -EAGAIN:
                return "would block: channel full or empty";
        case -ETIMEDOUT:
                return "timed out";
        case -EMSGSIZE:
                return "message too large";
        case -EPROTO:
                return "not a valid shmbus channel or protocol message";
        case -EUSERS:
                return "no free publisher or subscriber slot in the channel";
        case -ESTALE:
                return "borrowed message was overwritten";
        case -EBADMSG:
                return "corrupt record skipped";
        case -EBADFD:
                return "channel broken: a member resized its files; open it again";
        case -EDQUOT:
                return "over a per-uid quota of shmbusd";
        case -EPIPE:
        case -ECONNRESET:
                return "shmbusd connection lost";
        case -ECONNREFUSED:
                return "shmbusd is not running";
        case -ECHILD:
                return "object made in another process (before fork()): make a new one here";
        case -EIDRM:
                return "channel deleted or replaced: open it again";
        case -ECONNABORTED:
                return "subscriber evicted: it held publishers back longer than the channel "
                       "allows";
        }
        /*
         * strerror() may answer from a buffer it rewrites on the next call;
         * strerrordesc_np() (glibc 2.32) returns the static, untranslated text,
         * or NULL for a number it does not know. The bound keeps -err defined.
         */
        s = err < 0 && err > -4096 ? strerrordesc_np(-err) : NULL;
        return s ? s : "unknown error";
}
