/* SPDX-License-Identifier: MIT */
/*
 * Pollable descriptors (notifier.h): one eventfd per subscriber or publisher
 * that asked for one, and one notifier thread per process that waits with
 * futex_waitv on the futex words of every channel those objects are on, and
 * writes an object's eventfd when what it waits for has come.
 *
 * An object's state moves IDLE -> PARKED (its owner, after a receive or claim
 * came back empty-handed) -> SIGNALLED (the notifier, which wrote the
 * eventfd) -> IDLE (the owner, reading the eventfd when it parks again).
 * PARKED -> IDLE is an unpark by the owner. Every transition is made under
 * the object's lock, so whoever leaves PARKED takes the count back, exactly
 * once (the slot's `sleeping` flag does the same against the daemon's
 * release of a dead owner's slot), and an owner never finds the eventfd
 * half-way through a firing: it waits for the write instead (a first version
 * without the lock left the eventfd readable while the notifier, preempted
 * between its write and its state change, could not be waited for, and a
 * level-triggered loop spun until it ran again).
 *
 * Invariants: a PARKED object was counted in its ring's waiters and flagged
 * when it parked (so publishers, or subscribers freeing space, bump and wake
 * the futex word the thread waits on, or write the channel's eventfd) and its
 * own eventfd is not written. A waker may since have taken its count (the
 * flag is then 0): a one-hop publisher that found its message there, or any
 * waker through the futex word; the owner's next park and the thread's
 * re-count (notify_recount) count it again. A SIGNALLED one has its eventfd
 * written and is not counted. The registry (under reg.lock) is the only way
 * the thread reaches an object, and an object leaves it before it is freed.
 * Why no wake-up is lost: docs/EVENTS.md and docs/ORDERING.md section 6.
 *
 * One hop (notify_direct): a subscriber of a channel that came with shmbusd's
 * eventfd hands out an epoll instance over its own eventfd and that one.
 */
#include "notifier.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "ring.h"
#include "util.h"

/* As ring.c: a first wait before the heavy fence, then long slices that re-check. */
#define QUICK_NS INT64_C(5000000)
#define SLICE_NS INT64_C(200000000)

enum {
        NOTIFY_IDLE = 0,
        NOTIFY_PARKED = 1,
        NOTIFY_SIGNALLED = 2,
};

struct shmbus_notify {
        struct shmbus_notify *next; /* the registry's list, under reg.lock */
        struct shmbus_ring *ring;
        bool is_sub;                  /* waits for data (subscriber) or space (publisher) */
        _Atomic uint32_t *word;       /* the futex word its wakers bump */
        _Atomic uint32_t *waiters;    /* the count they look at first */
        _Atomic uint32_t *sleeping;   /* our slot's flag: counted in waiters */
        _Atomic uint32_t *slot_state; /* our slot's state (SHMBUS_SLOT_*) */
        uint32_t flag; /* what we flag it with: 1, or the channel eventfd's generation */
        int efd;       /* ours: the notifier thread and the owner write it */
        int epfd; /* one hop: efd and the channel's eventfd, the descriptor handed out; or -1 */
        pthread_mutex_t lock;   /* every state change; the notifier holds it across its write */
        _Atomic uint32_t state; /* changed under lock; read without it only as a hint */
        _Atomic uint64_t pos;   /* what it waits for: a read position or a claim's end */
};

static struct {
        pthread_mutex_t lock;
        struct shmbus_notify *head;
        bool running;
        _Atomic uint32_t ctl;   /* bumped to make the thread look at the registry again */
        _Atomic uint64_t parks; /* every park, so the thread knows when to fence */
        _Atomic uint32_t idle;  /* 1 while the thread sleeps longer than QUICK_NS */
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static bool notify_ready(void *ctx) {
        struct shmbus_notify *n = ctx;
        uint64_t pos = atomic_load_explicit(&n->pos, memory_order_relaxed);

        /* A deleted channel is news too: the next receive or claim says -EIDRM. */
        if (atomic_load_explicit(&n->ring->ctl->deleted, memory_order_relaxed) ==
            SHMBUS_CTL_DELETED)
                return true;
        if (n->is_sub)
                return shmbus__ring_data_at(n->ring, pos);
        /* A publisher's flag lives in its slot, which its own horizon skips (ring.c). */
        return shmbus__ring_space_for(
                n->ring,
                (const struct shmbus_pub_slot *)(const void *)((const char *)n->sleeping -
                                                               offsetof(struct shmbus_pub_slot,
                                                                        sleeping)),
                pos);
}

static void kick(void) {
        atomic_fetch_add_explicit(&reg.ctl, 1, memory_order_seq_cst);
        syscall(SYS_futex, &reg.ctl, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Under n->lock: PARKED -> SIGNALLED, with the eventfd written. */
static void notify_signal_locked(struct shmbus_notify *n) {
        uint64_t one = 1;

        if (atomic_load_explicit(&n->state, memory_order_relaxed) == NOTIFY_PARKED)
                shmbus__ring_waiter_uncount(n->waiters, n->sleeping);
        /* Cannot fail short of a counter at its maximum, which one write per park never reaches. */
        (void)!write(n->efd, &one, sizeof(one));
        atomic_store_explicit(&n->state, NOTIFY_SIGNALLED, memory_order_relaxed);
}

/* Under reg.lock: the owner may have unparked since the condition was checked. */
static void notify_fire(struct shmbus_notify *n) {
        pthread_mutex_lock(&n->lock);
        if (atomic_load_explicit(&n->state, memory_order_relaxed) == NOTIFY_PARKED)
                notify_signal_locked(n);
        pthread_mutex_unlock(&n->lock);
}

/*
 * Under reg.lock, for a parked object whose condition does not hold: a waker
 * that took its count without making the condition true (a commit after an
 * earlier claim still open, with several publishers) left it uncounted, and
 * the commit that does make it true would then wake nobody. Count it again,
 * and look once more (the Dekker re-check of a park).
 */
static void notify_recount(struct shmbus_notify *n) {
        bool again = false;

        pthread_mutex_lock(&n->lock);
        /*
         * Not in a slot the daemon evicted or released. An eviction between this
         * look and the count leaves one count in the evicted slot, which the
         * owner's next call (-ECONNABORTED, then the unpark or free) takes back;
         * the eviction leaves data at our position, so we fire first anyway.
         */
        if (atomic_load_explicit(&n->state, memory_order_relaxed) == NOTIFY_PARKED &&
            atomic_load_explicit(n->sleeping, memory_order_relaxed) == 0 &&
            atomic_load_explicit(n->slot_state, memory_order_relaxed) == SHMBUS_SLOT_ACTIVE) {
                shmbus__ring_waiter_count_as(n->waiters, n->sleeping, n->flag);
                atomic_fetch_add_explicit(&reg.parks, 1, memory_order_seq_cst);
                again = true;
        }
        pthread_mutex_unlock(&n->lock);
        if (again && notify_ready(n))
                notify_fire(n);
}

/* Add @word to the wait vector unless it is there; false if the vector is full. */
static bool waitv_add(struct futex_waitv *w, unsigned *nw, _Atomic uint32_t *word) {
        for (unsigned i = 1; i < *nw; i++)
                if (w[i].uaddr == (uintptr_t)word)
                        return true;
        if (*nw == FUTEX_WAITV_MAX)
                return false;
        /* Read before the conditions are checked: a bump after this read ends the wait. */
        w[*nw] = (struct futex_waitv){
                .val = atomic_load_explicit(word, memory_order_seq_cst),
                .uaddr = (uintptr_t)word,
                .flags = FUTEX_32, /* shared: the wakers are other processes */
        };
        (*nw)++;
        return true;
}

static int waitv(struct futex_waitv *w, unsigned nw, int64_t timeout_ns) {
        struct timespec ts;

        if (timeout_ns >= 0) {
                int64_t until = shmbus__now_ns() + timeout_ns;

                ts = (struct timespec){.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
        }
        if (syscall(SYS_futex_waitv, w, nw, 0, timeout_ns >= 0 ? &ts : NULL, CLOCK_MONOTONIC) < 0)
                return -errno;
        return 0;
}

/*
 * The thread: read every futex word, fire every parked object whose condition
 * holds, and wait for a word to change. After parks it has not fenced for, it
 * waits QUICK_NS, then issues the heavy fence and looks again (the one wake-up
 * a publisher's light fence can miss, as in ring.c's futex_sleep); while
 * objects stay parked it re-checks every SLICE_NS; with none, it sleeps until
 * kicked. A registry over FUTEX_WAITV_MAX - 1 distinct words is polled every
 * QUICK_NS for the words that do not fit, and so is everything if futex_waitv
 * itself fails.
 */
static void *notifier_main(void *arg) {
        struct futex_waitv w[FUTEX_WAITV_MAX];
        uint64_t fenced = 0;
        bool fence_works = true;

        (void)arg;
        for (;;) {
                uint64_t parks = atomic_load_explicit(&reg.parks, memory_order_seq_cst);
                bool parked = false, overflow = false;
                unsigned nw = 1;
                int64_t timeout;
                int r;

                w[0] = (struct futex_waitv){
                        .val = atomic_load_explicit(&reg.ctl, memory_order_seq_cst),
                        .uaddr = (uintptr_t)&reg.ctl,
                        .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG,
                };
                pthread_mutex_lock(&reg.lock);
                for (struct shmbus_notify *n = reg.head; n; n = n->next)
                        overflow |= !waitv_add(w, &nw, n->word);
                for (struct shmbus_notify *n = reg.head; n; n = n->next) {
                        if (atomic_load_explicit(&n->state, memory_order_acquire) != NOTIFY_PARKED)
                                continue;
                        if (notify_ready(n)) {
                                notify_fire(n);
                        } else {
                                notify_recount(n);
                                parked = true;
                        }
                }
                pthread_mutex_unlock(&reg.lock);

                if (overflow || (parked && !fence_works) || parks != fenced)
                        timeout = QUICK_NS;
                else
                        timeout = parked ? SLICE_NS : -1;
                if (timeout != QUICK_NS) {
                        /* Pairs with park: it counts parks, then looks at idle. */
                        atomic_store_explicit(&reg.idle, 1, memory_order_seq_cst);
                        if (atomic_load_explicit(&reg.parks, memory_order_seq_cst) != parks) {
                                atomic_store_explicit(&reg.idle, 0, memory_order_relaxed);
                                continue;
                        }
                }
                r = waitv(w, nw, timeout);
                atomic_store_explicit(&reg.idle, 0, memory_order_relaxed);
                if (r < 0 && r != -EAGAIN && r != -ETIMEDOUT && r != -EINTR) {
                        /*
                         * No futex_waitv (a seccomp filter, a kernel before 5.16), or a
                         * word unmapped under us (-EFAULT; the next round drops it):
                         * poll every QUICK_NS rather than spin.
                         */
                        struct timespec ts = {0, QUICK_NS};

                        nanosleep(&ts, NULL);
                        r = -ETIMEDOUT;
                }
                if (r == -ETIMEDOUT && parks != fenced) {
                        fence_works = shmbus__ring_fence_heavy();
                        fenced = parks;
                }
        }
        return NULL;
}

/* A forked child has no notifier thread and must not share the parent's registrations. */
static void atfork_child(void) {
        reg.lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
        reg.head = NULL;
        reg.running = false;
        atomic_store_explicit(&reg.idle, 0, memory_order_relaxed);
}

static void atfork_register(void) {
        pthread_atfork(NULL, NULL, atfork_child);
}

/*
 * Under reg.lock. The thread takes no signal, they are the application's, but
 * for the ones its own faults raise: the kernel delivers those to the faulting
 * thread blocked or not, and a blocked one kills the process (the handler is
 * reset to the default). sigbus.c's handler must run in this thread too: it is
 * the first to touch a channel file that a member shrank.
 */
static int notifier_start(void) {
        sigset_t all, old;
        pthread_attr_t attr;
        pthread_t t;
        int r;

        if (reg.running)
                return 0;
        sigfillset(&all);
        sigdelset(&all, SIGBUS);
        sigdelset(&all, SIGSEGV);
        sigdelset(&all, SIGILL);
        sigdelset(&all, SIGFPE);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&t, &attr, notifier_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (r != 0)
                return -r;
        reg.running = true;
        return 0;
}

static int notify_new(struct shmbus_ring *ring, bool is_sub, _Atomic uint32_t *sleeping,
                      _Atomic uint32_t *slot_state, struct shmbus_notify **ret) {
        _cleanup_free_ struct shmbus_notify *n = NULL;
        _cleanup_close_ int efd = -1;
        int r;

        pthread_once(&atfork_once, atfork_register);
        n = shmbus__calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
                return -errno;
        n->ring = ring;
        n->is_sub = is_sub;
        n->word = is_sub ? &ring->ctl->data_futex : &ring->ctl->space_futex;
        n->waiters = is_sub ? &ring->ctl->data_waiters : &ring->ctl->space_waiters;
        n->sleeping = sleeping;
        n->slot_state = slot_state;
        n->flag = 1;
        n->epfd = -1;
        pthread_mutex_init(&n->lock, NULL);
        atomic_init(&n->state, NOTIFY_IDLE);
        atomic_init(&n->pos, 0);

        pthread_mutex_lock(&reg.lock);
        r = notifier_start();
        if (r == 0) {
                n->efd = TAKE_FD(efd);
                n->next = reg.head;
                reg.head = n;
        }
        pthread_mutex_unlock(&reg.lock);
        if (r < 0) {
                pthread_mutex_destroy(&n->lock);
                return r;
        }
        /* A new word for the thread's wait vector. */
        kick();
        *ret = TAKE_PTR(n);
        return 0;
}

/*
 * One hop (docs/EVENTS.md): a subscriber of a channel that came with an
 * eventfd from shmbusd hands out an epoll instance over its own eventfd (level
 * triggered) and the channel's, and parks flagged with the channel eventfd's
 * generation, so a committing publisher that holds the same descriptor writes
 * it and our event loop wakes from inside that write. The channel's eventfd is
 * watched edge-triggered for EPOLLIN|EPOLLOUT: every write (publishers write
 * 0, ring.c) is an edge, and an eventfd is always readable or writable, so the
 * edge stays reported whatever its counter, which any member may change. Not
 * possible (no descriptors left): the notifier alone, as for any other channel.
 */
static void notify_direct(struct shmbus_notify *n) {
        struct epoll_event own = {.events = EPOLLIN},
                           chan = {.events = EPOLLIN | EPOLLOUT | EPOLLET};
        _cleanup_close_ int epfd = -1;

        if (n->ring->notify_gen < 2 || n->ring->notify_fd < 0)
                return;
        epfd = epoll_create1(EPOLL_CLOEXEC);
        if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, n->efd, &own) < 0 ||
            epoll_ctl(epfd, EPOLL_CTL_ADD, n->ring->notify_fd, &chan) < 0)
                return;
        n->epfd = TAKE_FD(epfd);
        n->flag = n->ring->notify_gen;
}

int shmbus__notify_new_sub(struct shmbus_ring_sub *s, struct shmbus_notify **ret) {
        struct shmbus_notify *n;
        int r;

        r = notify_new(s->ring, true, &s->slot->sleeping, &s->slot->state, &n);
        if (r < 0)
                return r;
        notify_direct(n);
        /* Readable from the start if there is something to read, parked if not. */
        (void)shmbus__notify_park(n, s->pos);
        *ret = n;
        return 0;
}

int shmbus__notify_new_pub(struct shmbus_ring_pub *p, struct shmbus_notify **ret) {
        return notify_new(p->ring, false, &p->slot->sleeping, &p->slot->state, ret);
}

int shmbus__notify_fd(const struct shmbus_notify *n) {
        return n->epfd >= 0 ? n->epfd : n->efd;
}

/*
 * One hop: take the channel eventfd's edge off our epoll instance, before we
 * look at our flag and count ourselves again. A publisher that takes our flag
 * after that look writes after it, so its edge stays for the event loop.
 */
static void notify_consume(struct shmbus_notify *n) {
        struct epoll_event ev[2];

        (void)epoll_wait(n->epfd, ev, 2, 0);
}

/* Under n->lock: SIGNALLED -> IDLE, not readable again until the next firing. */
static void notify_reset_locked(struct shmbus_notify *n) {
        uint64_t v;

        (void)!read(n->efd, &v, sizeof(v));
        atomic_store_explicit(&n->state, NOTIFY_IDLE, memory_order_relaxed);
}

/* Under n->lock: PARKED -> IDLE, the count taken back. */
static void notify_unpark_locked(struct shmbus_notify *n) {
        if (atomic_load_explicit(&n->state, memory_order_relaxed) != NOTIFY_PARKED)
                return;
        shmbus__ring_waiter_uncount(n->waiters, n->sleeping);
        atomic_store_explicit(&n->state, NOTIFY_IDLE, memory_order_relaxed);
}

int shmbus__notify_park(struct shmbus_notify *n, uint64_t pos) {
        uint32_t state;

        if (n->epfd >= 0)
                notify_consume(n);
        /*
         * Parked for this very thing already (a repeated -EAGAIN), and still
         * counted (a publisher that wakes us in one hop takes our flag, and then
         * we count ourselves again): nothing to do.
         */
        if (atomic_load_explicit(&n->state, memory_order_relaxed) == NOTIFY_PARKED &&
            atomic_load_explicit(&n->pos, memory_order_relaxed) == pos &&
            atomic_load_explicit(n->sleeping, memory_order_acquire) == n->flag)
                return 0;

        pthread_mutex_lock(&n->lock);
        state = atomic_load_explicit(&n->state, memory_order_relaxed);
        if (state == NOTIFY_SIGNALLED)
                notify_reset_locked(n);
        else if (state == NOTIFY_PARKED)
                notify_unpark_locked(n); /* parked for something else: start over */
        atomic_store_explicit(&n->pos, pos, memory_order_relaxed);
        shmbus__ring_waiter_count_as(n->waiters, n->sleeping, n->flag);
        /* Release: the thread, which reads the state without the lock, then sees pos. */
        atomic_store_explicit(&n->state, NOTIFY_PARKED, memory_order_release);
        pthread_mutex_unlock(&n->lock);

        /* Pairs with the thread going idle: it stores idle, then looks at parks. */
        atomic_fetch_add_explicit(&reg.parks, 1, memory_order_seq_cst);
        if (atomic_exchange_explicit(&reg.idle, 0, memory_order_seq_cst))
                kick();
        /*
         * The Dekker re-check of futex_sleep: a publisher that committed before
         * our count reached it does not wake anyone, so look again (for the
         * store-buffer window) before leaving the rest to the thread.
         */
        if (!shmbus__ring_ready_soon(notify_ready, n))
                return 0;
        /*
         * It came while we parked. Signal rather than go idle: a caller that
         * stops before the next -EAGAIN (a loop that takes a batch per wake)
         * must still find the descriptor readable while there is more.
         */
        pthread_mutex_lock(&n->lock);
        if (atomic_load_explicit(&n->state, memory_order_relaxed) == NOTIFY_PARKED)
                notify_signal_locked(n);
        pthread_mutex_unlock(&n->lock);
        return 1;
}

bool shmbus__notify_unpark(struct shmbus_notify *n) {
        uint32_t state = atomic_load_explicit(&n->state, memory_order_relaxed);
        bool armed = true;

        /* The hint keeps the common case (idle, a claim that succeeded) to one load. */
        if (state == NOTIFY_IDLE || (state == NOTIFY_SIGNALLED && n->is_sub))
                return false;
        pthread_mutex_lock(&n->lock);
        state = atomic_load_explicit(&n->state, memory_order_relaxed);
        if (state == NOTIFY_PARKED)
                notify_unpark_locked(n);
        else if (state == NOTIFY_SIGNALLED && !n->is_sub)
                notify_reset_locked(n); /* a publisher's claim succeeded: the room came */
        else
                armed = false;
        pthread_mutex_unlock(&n->lock);
        return armed;
}

struct shmbus_notify *shmbus__notify_free(struct shmbus_notify *n) {
        struct shmbus_notify **p;
        bool registered = false;

        if (!n)
                return NULL;
        pthread_mutex_lock(&reg.lock);
        for (p = &reg.head; *p; p = &(*p)->next)
                if (*p == n) {
                        *p = n->next;
                        registered = true;
                        break;
                }
        pthread_mutex_unlock(&reg.lock);
        /*
         * Out of the thread's reach: no firing is under way. An object missing
         * from the registry was made before a fork() and is freed in the child:
         * its lock may have been held by the parent's thread at the fork, and its
         * count is the parent's to take back, so only the memory goes.
         */
        if (registered) {
                pthread_mutex_lock(&n->lock);
                notify_unpark_locked(n);
                pthread_mutex_unlock(&n->lock);
                pthread_mutex_destroy(&n->lock);
        }
        shmbus__closep(&n->epfd);
        close(n->efd);
        free(n);
        return NULL;
}
