/* SPDX-License-Identifier: MIT */
/*
 * The library's allocator with its fault-injection hook (alloc.h): the C
 * library's malloc and calloc, except that the allocation a test
 * chose fails.
 */
#include "alloc.h"

#include <stdbool.h>
#include <stdlib.h>

atomic_uint shmbus__fault_alloc_nth;

/* Count one allocation down; true if it is the one to fail. */
static bool fault_fires(void) {
        unsigned n = atomic_load_explicit(&shmbus__fault_alloc_nth, memory_order_relaxed);

        /* A compare-and-swap, so two threads cannot both take the count from 1 to 0. */
        while (n > 0) {
                if (atomic_compare_exchange_weak_explicit(&shmbus__fault_alloc_nth, &n, n - 1,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed))
                        return n == 1;
        }
        return false;
}

void *shmbus__malloc(size_t size) {
        return fault_fires() ? NULL : malloc(size);
}

void *shmbus__calloc(size_t n, size_t size) {
        return fault_fires() ? NULL : calloc(n, size);
}
