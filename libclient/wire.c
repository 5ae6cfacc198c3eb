/* SPDX-License-Identifier: MIT */
/*
 * Reading the control protocol's envelope (wire.h): the one parser of a
 * reply's status, shared by the library and the CLI.
 */
#include "wire.h"

#include <errno.h>

int shmbus__wire_reply_status(const cJSON *reply) {
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, WIRE_OK);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, WIRE_ERRNO);

        if (!cJSON_IsBool(ok))
                return -EPROTO;
        if (cJSON_IsTrue(ok))
                return 0;
        if (cJSON_IsNumber(err) && err->valuedouble >= 1 && err->valuedouble <= 4095)
                return -(int)err->valuedouble;
        return -EPROTO;
}
