/* SPDX-License-Identifier: MIT */
/*
 * heartbeat: the smallest useful service on shmbus, built against the
 * installed library only:
 *
 *   cc heartbeat.c $(pkg-config --cflags --libs libshmbus) -o heartbeat
 *   ./heartbeat [COUNT]
 *
 * It publishes "heartbeat N from PID" on channel "heartbeat" once a second
 * (COUNT times, or forever), creating the channel if needed.
 */
#include <shmbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
        long count = argc > 1 ? strtol(argv[1], NULL, 10) : -1;
        shmbus_client *bus;
        shmbus_channel *chan;
        shmbus_pub *pub;
        int r;

        r = shmbus_client_new(NULL, &bus);
        if (r == 0)
                r = shmbus_client_open(bus, "heartbeat", SHMBUS_OPEN_PUBLISH | SHMBUS_OPEN_CREATE,
                                       NULL, &chan);
        if (r == 0)
                r = shmbus_pub_new(chan, &pub);
        if (r < 0) {
                fprintf(stderr, "heartbeat: %s\n", shmbus_strerror(r));
                return 1;
        }
        for (long i = 0; count < 0 || i < count; i++) {
                char msg[64];
                int n = snprintf(msg, sizeof(msg), "heartbeat %ld from %d", i, (int)getpid());

                r = shmbus_pub_send(pub, msg, (size_t)n, 1000);
                if (r < 0) {
                        fprintf(stderr, "heartbeat: %s\n", shmbus_strerror(r));
                        return 1;
                }
                if (count < 0 || i + 1 < count)
                        sleep(1);
        }
        shmbus_pub_free(pub);
        shmbus_channel_unref(chan);
        shmbus_client_free(bus);
        return 0;
}
