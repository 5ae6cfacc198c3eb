/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: shmbusd's configuration parser. Whatever it accepts must
 * then be usable: the rules are looked up and the ACLs evaluated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct config c;
        static const gid_t groups[] = {10, 2000};
        const struct who w = {.uid = 1000, .gid = 1000, .groups = groups, .n_groups = 2};
        char err[256];
        char *text;

        if (size > 1 << 20)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        config_init_defaults(&c);
        if (config_parse(&c, text, err, sizeof(err)) == 0) {
                for (uint32_t i = 0; i < c.n_rules; i++) {
                        const struct channel_rule *r = config_rule(&c, c.rules[i].name);

                        if (!r || strcmp(r->name, c.rules[i].name) != 0)
                                abort(); /* a rule that cannot be found again */
                        (void)acl_allows(&r->publish, &w);
                        (void)acl_allows(&r->subscribe, &w);
                }
                (void)acl_allows(&c.create, &w);
                (void)acl_allows(&c.grant, &w);
        } else if (err[0] == '\0') {
                abort(); /* every refusal says why */
        }
        config_deinit(&c);
        free(text);
        return 0;
}
