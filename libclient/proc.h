/* SPDX-License-Identifier: MIT */
/*
 * Which process an object belongs to, told without a system call. fork()
 * copies every object into the child, but not its ownership: slots are the
 * parent's, and a control connection is shared with it. Objects record the
 * process generation they were made in; a pthread_atfork() child handler bumps
 * the generation, so an object used in another process is one plain load and
 * compare away from knowing it (glibc's getpid() is a real system call since
 * 2.25, too dear for every message).
 *
 * Invariant: shmbus__proc_gen() has run (and registered the handler) before
 * any object that records a generation exists, so a fork after it is always
 * seen. A child made without the handler running (vfork, a raw clone) is not.
 */
#pragma once

#include <stdatomic.h>

extern _Atomic unsigned shmbus__proc_gen_word;

/* The current generation, registering the fork handler on first use. */
unsigned shmbus__proc_gen(void);

/* The current generation, once shmbus__proc_gen() has run: a relaxed load. */
static inline unsigned shmbus__proc_gen_fast(void) {
        return atomic_load_explicit(&shmbus__proc_gen_word, memory_order_relaxed);
}
