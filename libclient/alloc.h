/* SPDX-License-Identifier: MIT */
/*
 * The library's allocator: every malloc and calloc in libclient goes through
 * here, so that tests can fail the Nth one and check that each setup
 * path returns -ENOMEM and leaks nothing (STYLE.md item 24).
 *
 * Invariants: with shmbus__fault_alloc_nth at 0 (always, outside tests) these
 * are the C library's functions plus one relaxed load. Only setup paths
 * allocate; the publish and receive paths never do, so the hook costs the data
 * path nothing. The hook is hidden: libshmbus.so does not export it, and only
 * programs that link libshmbus-core statically (the tests) can set it.
 */
#pragma once

#include <stdatomic.h>
#include <stddef.h>

/*
 * Fail the Nth allocation from now (1 = the next one) with NULL, then go back
 * to normal; 0 turns the hook off. It counts down as allocations happen, so a
 * test that reads 0 after a call knows its fault fired, and one that reads
 * non-zero knows the call made fewer than N allocations.
 */
extern atomic_uint shmbus__fault_alloc_nth;

void *shmbus__malloc(size_t size);
void *shmbus__calloc(size_t n, size_t size);
