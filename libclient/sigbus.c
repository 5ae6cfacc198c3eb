/* SPDX-License-Identifier: MIT */
/*
 * See sigbus.h. The table is a fixed array with one state word per entry, so
 * that the handler reads it without a lock: an entry is claimed (FREE ->
 * BUSY by CAS), filled, and published LIVE with a release store; the handler
 * acquires the state before it reads the fields.
 */
#include "sigbus.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* Channels one process can have mapped at once; each takes two mappings. */
#define SIGBUS_REGIONS 4096

enum { REGION_FREE, REGION_BUSY, REGION_LIVE };

struct region {
        atomic_uint state;
        uintptr_t ctl;
        size_t ctl_len;
        uintptr_t data;
        size_t data_len;
        atomic_int *broken;
};

static struct region regions[SIGBUS_REGIONS];
static struct sigaction previous;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;

static bool within(uintptr_t addr, uintptr_t start, size_t len) {
        return addr - start < len;
}

/* Anonymous zero pages where the channel's mapping was: every later access succeeds. */
static bool region_replace(const struct region *g) {
        void *c = mmap((void *)g->ctl, g->ctl_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        void *d = mmap((void *)g->data, g->data_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

        return c != MAP_FAILED && d != MAP_FAILED;
}

/* Not ours: do what would have happened without us. */
static void chain(int sig, siginfo_t *si, void *uc) {
        if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
                previous.sa_sigaction(sig, si, uc);
                return;
        }
        if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
                previous.sa_handler(sig);
                return;
        }
        /* A SIGBUS somebody sent (not a fault) that was ignored before us stays ignored. */
        if (previous.sa_handler == SIG_IGN && si->si_code <= 0)
                return;
        /*
         * Default (or ignored, which the kernel overrides for a fault): put it
         * back and let the signal happen again, now fatal as it would have been.
         */
        sigaction(SIGBUS, &previous, NULL);
        if (si->si_code <= 0)
                raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
        uintptr_t addr = (uintptr_t)si->si_addr;
        int saved_errno = errno;

        /* Only a fault has an address; a kill(2)ed SIGBUS carries a pid there instead. */
        for (unsigned i = 0; si->si_code > 0 && i < SIGBUS_REGIONS; i++) {
                struct region *g = &regions[i];

                if (atomic_load_explicit(&g->state, memory_order_acquire) != REGION_LIVE)
                        continue;
                if (!within(addr, g->ctl, g->ctl_len) && !within(addr, g->data, g->data_len))
                        continue;
                /* Broken first: whoever reads the zero pages then also sees the flag. */
                atomic_store(g->broken, 1);
                if (region_replace(g)) {
                        errno = saved_errno;
                        return;
                }
                break;
        }
        errno = saved_errno;
        chain(sig, si, uc);
}

static void install(void) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &previous) < 0)
                install_error = -errno;
}

int shmbus__sigbus_register(void *ctl, size_t ctl_len, void *data, size_t data_len,
                            atomic_int *broken) {
        pthread_once(&install_once, install);
        if (install_error)
                return install_error;
        for (unsigned i = 0; i < SIGBUS_REGIONS; i++) {
                struct region *g = &regions[i];
                unsigned expect = REGION_FREE;

                if (!atomic_compare_exchange_strong(&g->state, &expect, REGION_BUSY))
                        continue;
                g->ctl = (uintptr_t)ctl;
                g->ctl_len = ctl_len;
                g->data = (uintptr_t)data;
                g->data_len = data_len;
                g->broken = broken;
                atomic_store_explicit(&g->state, REGION_LIVE, memory_order_release);
                return (int)i;
        }
        return -EMFILE;
}

void shmbus__sigbus_unregister(int id) {
        if (id < 0 || id >= SIGBUS_REGIONS)
                return;
        atomic_store_explicit(&regions[id].state, REGION_FREE, memory_order_release);
}
