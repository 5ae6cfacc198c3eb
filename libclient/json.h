/* SPDX-License-Identifier: MIT */
/*
 * Scoped ownership of cJSON trees, for the library, the daemon and the CLI: a
 * request, a reply being built or read, a parsed configuration file. A tree
 * held by _cleanup_cjson_ is deleted when its variable goes out of scope
 * unless TAKE_PTR hands it on.
 */
#pragma once

#include <cjson/cJSON.h>

#include "util.h"

static inline void cjson_deletep(cJSON **p) {
        cJSON_Delete(*p);
}
#define _cleanup_cjson_ _cleanup_(cjson_deletep)
