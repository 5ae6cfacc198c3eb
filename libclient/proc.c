/* SPDX-License-Identifier: MIT */
/* See proc.h. The generation only grows, and only in a child just forked. */
#include "proc.h"

#include <pthread.h>

_Atomic unsigned shmbus__proc_gen_word;

static pthread_once_t registered = PTHREAD_ONCE_INIT;

/* Runs in the child of fork(), in its only thread. */
static void on_fork_child(void) {
        atomic_fetch_add_explicit(&shmbus__proc_gen_word, 1, memory_order_relaxed);
}

static void register_handler(void) {
        /* It cannot fail but for ENOMEM; then forks go unseen, as before this existed. */
        (void)pthread_atfork(NULL, NULL, on_fork_child);
}

unsigned shmbus__proc_gen(void) {
        pthread_once(&registered, register_handler);
        return shmbus__proc_gen_fast();
}
