/* SPDX-License-Identifier: MIT */
/*
 * Printing replies for humans and for jq (output.h). The column layout is
 * what shmbus-cli(1) shows and tests/test-cli.c reads: change it only with
 * both.
 */
#include "output.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util.h"
#include "wire.h"

#define BOLD  "\033[1m"
#define RED   "\033[31m"
#define RESET "\033[0m"

const char *output_human_size(double bytes, char *buf, size_t size) {
        static const char *units[] = {"B", "KiB", "MiB", "GiB"};
        int u = 0;

        while (bytes >= 1024 && u < 3) {
                bytes /= 1024;
                u++;
        }
        snprintf(buf, size, u ? "%.4g %s" : "%.0f %s", bytes, units[u]);
        return buf;
}

void output_json(const cJSON *j) {
        _cleanup_free_ char *text = cJSON_Print(j);

        puts(text);
}

void output_json_line(const cJSON *j) {
        _cleanup_free_ char *line = cJSON_PrintUnformatted(j);

        puts(line);
}

/* The channel owner's use against its quotas (from a daemon's stat). */
static void print_owner_use(const cJSON *s) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(s, WIRE_OWNER_USE);
        char b1[32], b2[32];

        if (!cJSON_IsObject(u))
                return;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(u, WIRE_QUOTA_EXEMPT)))
                printf("  owner use:   %.0f channels, %s (exempt from quotas)\n",
                       cli_num(u, WIRE_CHANNELS),
                       output_human_size(cli_num(u, WIRE_BYTES), b1, sizeof(b1)));
        else
                printf("  owner use:   %.0f of %.0f channels, %s of %s\n",
                       cli_num(u, WIRE_CHANNELS), cli_num(u, WIRE_QUOTA_CHANNELS_PER_UID),
                       output_human_size(cli_num(u, WIRE_BYTES), b1, sizeof(b1)),
                       output_human_size(cli_num(u, WIRE_QUOTA_BYTES_PER_UID), b2, sizeof(b2)));
}

/* The width of the CHANNEL column: the longest name, and at least the header. */
static int name_width(const cJSON *list) {
        const cJSON *c;
        size_t w = strlen("CHANNEL");

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS)) {
                size_t n = strlen(cli_str(c, WIRE_NAME));

                w = n > w ? n : w;
        }
        return (int)w;
}

/* Offline, slots of processes that died are not counted: say how many, under the table. */
static void print_dead_note(const cJSON *list) {
        const cJSON *c;
        double pubs = 0, subs = 0;

        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS)) {
                pubs += cli_num(c, CLI_DEAD_PUBS);
                subs += cli_num(c, CLI_DEAD_SUBS);
        }
        if (pubs > 0 || subs > 0)
                printf("(not counted: %.0f publisher and %.0f subscriber slots of processes that "
                       "are gone)\n",
                       pubs, subs);
}

void output_list_table(const struct cli_options *o, const cJSON *list) {
        int w = name_width(list);
        const cJSON *c;
        char size[32], lag[32];

        printf("%s%-*s %-9s %10s %5s %5s %10s %8s %10s%s\n", cli_color(o, BOLD), w, "CHANNEL",
               "POLICY", "SIZE", "PUBS", "SUBS", "MSG/S", "DROPS", "MAX LAG", cli_color(o, RESET));
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(list, WIRE_CHANNELS)) {
                /* Drops: messages lost to overwrite plus claims padded over. */
                double drops = cli_num(c, WIRE_LOST) + cli_num(c, WIRE_UNBLOCKED);

                printf("%-*s %-9s %10s %5.0f %5.0f %10.0f %s%8.0f%s %10s\n", w,
                       cli_str(c, WIRE_NAME), cli_str(c, WIRE_POLICY),
                       output_human_size(cli_num(c, WIRE_CAPACITY), size, sizeof(size)),
                       cli_num(c, WIRE_PUBLISHERS_ACTIVE), cli_num(c, WIRE_SUBSCRIBERS_ACTIVE),
                       cli_num(c, CLI_MSG_PER_S), drops > 0 ? cli_color(o, RED) : "", drops,
                       drops > 0 ? cli_color(o, RESET) : "",
                       output_human_size(cli_num(c, WIRE_MAX_LAG_BYTES), lag, sizeof(lag)));
        }
        print_dead_note(list);
}

static void print_subscribers(const struct cli_options *o, const cJSON *s) {
        const cJSON *e;
        char lag[32];

        printf("\n%s  %-5s %8s %6s %14s %12s %10s %8s %8s%s\n", cli_color(o, BOLD), "SUB", "PID",
               "UID", "POSITION (B)", "RECEIVED", "LAG", "LOST", "CORRUPT", cli_color(o, RESET));
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, WIRE_SUBSCRIBERS)) printf(
                "  %-5.0f %8.0f %6.0f %14.0f %12.0f %10s %8.0f %8.0f%s\n", cli_num(e, WIRE_SLOT),
                cli_num(e, WIRE_PID), cli_num(e, WIRE_UID), cli_num(e, WIRE_POSITION),
                cli_num(e, WIRE_RECEIVED),
                output_human_size(cli_num(e, WIRE_LAG_BYTES), lag, sizeof(lag)),
                cli_num(e, WIRE_LOST), cli_num(e, WIRE_CORRUPT),
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, WIRE_LAPPED)) ? "  lapped" : "");
}

static void print_publishers(const struct cli_options *o, const cJSON *s) {
        const cJSON *e;

        printf("\n%s  %-5s %8s %6s %12s %12s %8s %8s%s\n", cli_color(o, BOLD), "PUB", "PID", "UID",
               "PUBLISHED", "BYTES", "WAITS", "ABORTS", cli_color(o, RESET));
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, WIRE_PUBLISHERS))
                printf("  %-5.0f %8.0f %6.0f %12.0f %12.0f %8.0f %8.0f\n", cli_num(e, WIRE_SLOT),
                       cli_num(e, WIRE_PID), cli_num(e, WIRE_UID), cli_num(e, WIRE_PUBLISHED),
                       cli_num(e, WIRE_BYTES), cli_num(e, WIRE_WAITS), cli_num(e, WIRE_ABORTS));
}

/* One role's grant, aligned with the other fields: "any", or "uids 1001 1002, gids 44". */
static void print_acl(const char *label, const cJSON *acl) {
        const char *sep = "";

        if (!acl)
                return;
        printf("  %-13s", label);
        if (cJSON_IsString(acl)) {
                printf("%s\n", acl->valuestring);
                return;
        }
        for (int k = 0; k < 2; k++) {
                const cJSON *ids = cJSON_GetObjectItemCaseSensitive(acl, k ? WIRE_GIDS : WIRE_UIDS);
                const cJSON *id;

                if (cJSON_GetArraySize(ids) == 0)
                        continue;
                printf("%s%s", sep, k ? "gids" : "uids");
                cJSON_ArrayForEach(id, ids)
                        printf(" %.0f", cJSON_IsNumber(id) ? id->valuedouble : -1);
                sep = ", ";
        }
        putchar('\n');
}

/* What the creator granted (a stat reply's "grants"), if anything. */
static void print_grants(const cJSON *s) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(s, WIRE_GRANTS);

        if (!cJSON_IsObject(g))
                return;
        print_acl("granted pub:", cJSON_GetObjectItemCaseSensitive(g, WIRE_GRANT_PUBLISH));
        print_acl("granted sub:", cJSON_GetObjectItemCaseSensitive(g, WIRE_GRANT_SUBSCRIBE));
}

void output_status(const struct cli_options *o, const cJSON *s) {
        char b1[32], b2[32];

        printf("%s%s%s\n", cli_color(o, BOLD), cli_str(s, WIRE_NAME), cli_color(o, RESET));
        printf("  policy:      %s\n", cli_str(s, WIRE_POLICY));
        printf("  ring:        %s, messages up to %s\n",
               output_human_size(cli_num(s, WIRE_CAPACITY), b1, sizeof(b1)),
               output_human_size(cli_num(s, WIRE_MAX_MSG), b2, sizeof(b2)));
        printf("  slots:       %.0f/%.0f publishers, %.0f/%.0f subscribers\n",
               cli_num(s, WIRE_PUBLISHERS_ACTIVE), cli_num(s, WIRE_MAX_PUBLISHERS),
               cli_num(s, WIRE_SUBSCRIBERS_ACTIVE), cli_num(s, WIRE_MAX_SUBSCRIBERS));
        printf("  owner uid:   %.0f\n", cli_num(s, WIRE_OWNER_UID));
        print_owner_use(s);
        print_grants(s);
        printf("  published:   %.0f messages, %s\n", cli_num(s, WIRE_PUBLISHED),
               output_human_size(cli_num(s, WIRE_PUBLISHED_BYTES), b1, sizeof(b1)));
        printf("  position:    %.0f B (bytes written into the ring since it was made)\n",
               cli_num(s, WIRE_POSITION));
        printf("  lost:        %.0f    unblocked: %.0f\n", cli_num(s, WIRE_LOST),
               cli_num(s, WIRE_UNBLOCKED));
        if (cli_num(s, CLI_DEAD_PUBS) > 0 || cli_num(s, CLI_DEAD_SUBS) > 0)
                printf("  not counted: %.0f publisher and %.0f subscriber slots of processes that "
                       "are gone\n",
                       cli_num(s, CLI_DEAD_PUBS), cli_num(s, CLI_DEAD_SUBS));
        print_subscribers(o, s);
        print_publishers(o, s);
}
