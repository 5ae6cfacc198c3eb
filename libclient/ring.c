/* SPDX-License-Identifier: MIT */
/*
 * The channel ring. See ring.h for what it owns, docs/LAYOUT.md for the bytes
 * and docs/ORDERING.md for why each atomic has the order it has.
 *
 * Publishers: a claim stores the range it is about to take in its publisher
 * slot, then takes it with one 16-byte CAS on the claim word {pos, seq}; the
 * claimer stamps the record CLAIMED and then writes seq and len, the user
 * writes the payload in place, and commit is one release store of the bare
 * position to the stamp (abort stores the position with PAD|SEQ). No CAS is
 * needed there: nothing else writes the stamp of a claim while its publisher's
 * slot is active. Only once the publisher has died and its slot has been
 * released may unblock pad over the claim, with a CAS against the stamp it
 * judged stuck. A batch takes several records with one CAS and then heads
 * and commits each like a single claim. A publisher that finds the ring full
 * polls the horizon for a while before it sleeps.
 *
 * Subscribers: peek acquires the stamp at the local position; release moves
 * it on and publishes it to the slot every eighth of the ring or 64 KiB,
 * whichever is less (and always before peek reports an empty ring). A reader
 * that has found the ring empty at a position polls only the stamp there
 * until it changes (sub_idle). In overwrite mode a reader validates
 * after reading (the seqlock pattern): if the claim word has moved more than a
 * ring past the record, the bytes may have been overwritten and the read is
 * discarded.
 *
 * Invariants asserted here concern only this process's own view (struct
 * shmbus_ring, copied and checked at attach): shared memory is written by
 * other members too, so whatever is read from it is checked and answered with
 * an error code, never asserted.
 */
#include "ring.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * The one vocabulary for memory orders in this file. Most shared words are
 * _Atomic and reached through <stdatomic.h>. Two are plain fields reached
 * through the __atomic builtins: the claim word (see tail_load_pos for why)
 * and the ctl magic, a plain header field published once by format. Both
 * kinds of call take these names: GCC and Clang define each memory_order_*
 * as the matching __ATOMIC_* constant, which the static_assert pins.
 */
#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define ACQ_REL memory_order_acq_rel
#define SEQCST  memory_order_seq_cst

static_assert(RELAXED == __ATOMIC_RELAXED && ACQUIRE == __ATOMIC_ACQUIRE &&
                      RELEASE == __ATOMIC_RELEASE && ACQ_REL == __ATOMIC_ACQ_REL &&
                      SEQCST == __ATOMIC_SEQ_CST,
              "the __atomic builtins take the C11 memory orders");

/* Longest single futex sleep: waits re-check the ring at least this often. */
#define WAIT_SLICE_NS INT64_C(200000000)

static inline uint64_t align_up(uint64_t v, uint64_t a) {
        return (v + a - 1) & ~(a - 1);
}

static inline uint64_t rec_size(uint64_t len) {
        return align_up(SHMBUS_REC_HDR + len, SHMBUS_REC_ALIGN);
}

/* Mappings are page-aligned and positions 16-aligned, so the cast is aligned. */
static inline struct shmbus_rec *rec_at(const struct shmbus_ring *r, uint64_t pos) {
        return (struct shmbus_rec *)(void *)(r->data + (pos & r->mask));
}

/*
 * Whether a reader at @pos may take the record under @stamp: committed data
 * (the bare position) or committed padding (PAD, perhaps SEQ). Anything else
 * is an older lap, a claim in progress, or garbage.
 */
static inline bool stamp_is_committed_at(uint64_t stamp, uint64_t pos) {
        return (stamp & ~(SHMBUS_STAMP_PAD | SHMBUS_STAMP_SEQ)) == pos;
}

/* Whether a record, committed or not, visibly begins at @pos. */
static inline bool stamp_is_at(uint64_t stamp, uint64_t pos) {
        return (stamp & ~SHMBUS_STAMP_BITS) == pos;
}

/*
 * The oldest lap start not yet being overwritten when the claim word is at
 * @tail (more than a ring in): round_up(tail - size, size). Every multiple of
 * the ring size is a record boundary, so a lapped reader can resume there.
 */
static inline uint64_t oldest_lap_start(const struct shmbus_ring *r, uint64_t tail) {
        return (tail - r->size + r->mask) & ~r->mask;
}

static inline bool is_pow2(uint64_t v) {
        return v && !(v & (v - 1));
}

int64_t shmbus__now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Process-local counts of the calls below (shmbus__ring_syscalls). */
static _Atomic uint64_t count_futex_waits, count_futex_wakes, count_membarriers;

void shmbus__ring_syscalls(struct shmbus_ring_syscalls *ret) {
        *ret = (struct shmbus_ring_syscalls){
                .futex_waits = atomic_load_explicit(&count_futex_waits, RELAXED),
                .futex_wakes = atomic_load_explicit(&count_futex_wakes, RELAXED),
                .membarriers = atomic_load_explicit(&count_membarriers, RELAXED),
        };
}

static int futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns) {
        struct timespec ts = {
                .tv_sec = timeout_ns / 1000000000,
                .tv_nsec = timeout_ns % 1000000000,
        };

        atomic_fetch_add_explicit(&count_futex_waits, 1, RELAXED);
        /* Shared (not FUTEX_PRIVATE_FLAG): the waker is another process. */
        if (syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0) < 0)
                return -errno;
        return 0;
}

static void futex_wake(_Atomic uint32_t *word) {
        atomic_fetch_add_explicit(&count_futex_wakes, 1, RELAXED);
        syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Wake everyone asleep on @word. The bump comes first: a sleeper that read
 * the word before it but has not entered FUTEX_WAIT yet finds the word changed
 * there and returns at once, so no wake-up falls between its check and its
 * sleep.
 */
static inline void futex_wake_sleepers(_Atomic uint32_t *word) {
        atomic_fetch_add_explicit(word, 1, SEQCST);
        futex_wake(word);
}

/*
 * Asymmetric fences for the two store-then-load handshakes (a committer and a
 * sleeping reader, a releasing reader and a sleeping publisher): the side that
 * runs per message issues only a compiler barrier, and the side about to sleep
 * issues membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which makes every
 * running thread of every registered process pass a full barrier. Processes
 * register when they join a channel; one that cannot register (a seccomp
 * filter, an old kernel) uses a real fence on its cheap side, and a sleeper
 * that cannot issue the barrier sleeps in short slices instead. See
 * docs/ORDERING.md, "Wake-ups".
 */
static _Atomic int membarrier_state; /* 0 untried, 1 registered, -1 unavailable */

static void membarrier_register(void) {
        int untried = 0, state;

        if (atomic_load_explicit(&membarrier_state, RELAXED) != 0)
                return;
        state = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0 ? 1
                                                                                             : -1;
        atomic_compare_exchange_strong(&membarrier_state, &untried, state);
}

/* The per-message side: between a store and a load that a sleeper pairs with. */
static inline void fence_light(void) {
        if (atomic_load_explicit(&membarrier_state, RELAXED) > 0)
                atomic_signal_fence(SEQCST);
        else
                atomic_thread_fence(SEQCST);
}

/* The sleeping side. False if the barrier could not be made. */
static bool fence_heavy(void) {
        atomic_thread_fence(SEQCST);
        atomic_fetch_add_explicit(&count_membarriers, 1, RELAXED);
        return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

/*
 * A first sleep without the heavy fence, and the sleep without a working one.
 * Not shorter: measured on the 2-vCPU VMs we run on, a futex wait with a
 * timeout under about 2 ms took twice as long to wake (42 us against 21 us per
 * always-sleeping round trip), presumably because the guest's idle governor
 * picks a different idle state when the next timer is that close.
 */
#define WAIT_QUICK_NS INT64_C(5000000)

/*
 * The racing waker of futex_sleep read @waiters too early only because its
 * commit was still in its store buffer, which drains within a microsecond. So
 * keep re-checking for RACE_WINDOW_NS before the quick sleep: measured, the
 * always-sleeping round trip had a p99.9 of 3.3 ms (lost wake-ups paid with
 * the 5 ms quick sleep) without this window.
 */
#define RACE_WINDOW_NS INT64_C(2000)

/*
 * Take a sleeper's count back from @waiters, once: by the sleeper when it
 * wakes, by the first waker that finds it flagged (waiters_take_and_wake),
 * or by the slot release of a sleeper that died (so a subscriber killed
 * asleep does not leave every later commit paying for a futex wake). Whoever
 * exchanges the flag from 1 to 0 uncounts, so each count is taken back
 * exactly once.
 * Counted before flagged and unflagged before uncounted, so a death between
 * the two steps leaves one count too many, never too few: a stray wake, never
 * a missed one. Acquire: a waker that takes the flag sees the sleeper's read
 * of the futex word, which the flag's release store follows (futex_sleep).
 */
static void waiters_uncount(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping) {
        if (atomic_load_explicit(sleeping, RELAXED) != 0 &&
            atomic_exchange_explicit(sleeping, 0, ACQUIRE) != 0)
                atomic_fetch_sub_explicit(waiters, 1, SEQCST);
}

/*
 * Wake every sleeper counted in @waiters on @word, where @sleeping is the
 * first slot's flag and @n slots follow each other SHMBUS_LINE apart. The
 * waker takes the count of every flagged sleeper before it bumps the word:
 * a sleeper takes 20 to 40 us to wake up and uncount itself, and until then
 * every commit (or every reader position) found the count non-zero and paid
 * for a futex wake of nobody, hundreds of system calls per sleep while
 * streaming (issue 17). A sleeper whose count was taken read the word before
 * it flagged itself (release, paired with the take's acquire), so the bump
 * that follows the take makes its FUTEX_WAIT return, now or at once when it
 * gets there; it then re-checks and counts itself again if it still must
 * sleep. A counted sleeper not yet flagged is woken too, as before: the waker
 * bumps and wakes whenever it found the count non-zero.
 */
static void waiters_take_and_wake(_Atomic uint32_t *word, _Atomic uint32_t *waiters,
                                  _Atomic uint32_t *sleeping, uint32_t n) {
        for (uint32_t i = 0; i < n; i++)
                waiters_uncount(waiters, (_Atomic uint32_t *)(void *)((uint8_t *)sleeping +
                                                                      (size_t)i * SHMBUS_LINE));
        futex_wake_sleepers(word);
}

/*
 * Two writes in a row to the channel's eventfd that take this long were slowed
 * down on purpose: every epoll watch of it costs the writer (a member can add
 * thousands, docs/SECURITY.md). This process then stops writing it and wakes
 * one-hop subscribers through the futex word, as any other publisher without
 * the descriptor does; their notifier threads make their descriptors readable.
 */
#define NOTIFY_WRITE_SLOW_NS INT64_C(5000000)

/*
 * Write the channel's eventfd once, for the subscribers parked on it whose
 * counts wake_readers took. It writes 0: every write is an edge for the epoll
 * instances watching it (they watch for EPOLLIN|EPOLLOUT, which an eventfd
 * always has one of), and adding 0 can neither block nor fail with EAGAIN,
 * whatever the counter and whatever O_NONBLOCK another member set or cleared
 * on the description all members share (docs/SECURITY.md). False if the write
 * failed all the same.
 */
static bool notify_write(struct shmbus_ring *r) {
        static const uint64_t zero = 0;
        int64_t start = shmbus__now_ns();
        bool ok = write(r->notify_fd, &zero, sizeof(zero)) == (ssize_t)sizeof(zero);

        /*
         * A write is also slow when the scheduler ran the thread it woke (or
         * something else) before giving us the CPU back: only a second write
         * of 0 (one more edge, harmless) that is slow as well says the
         * descriptor itself is, so that a busy machine does not turn the one
         * hop off for good.
         */
        if (ok && shmbus__now_ns() - start > NOTIFY_WRITE_SLOW_NS) {
                start = shmbus__now_ns();
                (void)!write(r->notify_fd, &zero, sizeof(zero));
                if (shmbus__now_ns() - start > NOTIFY_WRITE_SLOW_NS)
                        atomic_store_explicit(&r->notify_off, true, RELAXED);
        }
        return ok;
}

/*
 * Wake the readers counted in data_waiters (waiters_take_and_wake), taking
 * the count of every flagged one. A subscriber parked on the channel's
 * eventfd flags itself with its generation and has published its exact
 * position: if the generation is our descriptor's and there is something at
 * that position, the write below wakes its event loop directly (one hop,
 * docs/EVENTS.md); if there is nothing there yet (an earlier claim is still
 * open), it stays parked and counted, for the commit that fills its position.
 * Every other flagged sleeper, and a count not yet flagged, is woken through
 * the futex word as before, where futex sleepers and notifier threads wait;
 * the word is left alone when the count, read after the scan, is no more than
 * the parked ones left. That comparison can be fooled by counts that come and
 * go during the scan, only within the window a futex sleeper's quick sleep
 * and the notifier's fenced re-check already cover (docs/ORDERING.md, 6).
 */
static void wake_readers(struct shmbus_ring *r) {
        _Atomic uint32_t *waiters = &r->ctl->data_waiters;
        uint32_t gen = r->notify_gen, parked = 0;
        bool direct = false, futex = false, gone;

        if (gen < 2 || atomic_load_explicit(&r->notify_off, RELAXED)) {
                waiters_take_and_wake(&r->ctl->data_futex, waiters, &r->subs[0].sleeping,
                                      r->max_subs);
                return;
        }
        /* A deleted channel is news for every parked subscriber: its next receive says -EIDRM. */
        gone = atomic_load_explicit(&r->ctl->deleted, RELAXED) == SHMBUS_CTL_DELETED;
        for (uint32_t i = 0; i < r->max_subs; i++) {
                _Atomic uint32_t *sleeping = &r->subs[i].sleeping;
                /* Acquire: the position its owner published before it flagged itself. */
                uint32_t flag = atomic_load_explicit(sleeping, ACQUIRE);

                if (flag == 0)
                        continue;
                if (flag == gen) {
                        if (!gone && !shmbus__ring_data_at(
                                             r, atomic_load_explicit(&r->subs[i].pos, RELAXED))) {
                                parked++;
                                continue;
                        }
                        /*
                         * Acquire as waiters_uncount; release: our commit is visible
                         * to the owner that sees its flag taken.
                         */
                        if (atomic_compare_exchange_strong_explicit(sleeping, &flag, 0, ACQ_REL,
                                                                    RELAXED)) {
                                atomic_fetch_sub_explicit(waiters, 1, SEQCST);
                                direct = true;
                                continue;
                        }
                        if (flag == 0)
                                continue;
                }
                if (atomic_exchange_explicit(sleeping, 0, ACQUIRE) != 0) {
                        atomic_fetch_sub_explicit(waiters, 1, SEQCST);
                        futex = true;
                }
        }
        if (direct && !notify_write(r))
                futex = true; /* the parked owners' notifier threads re-check and signal */
        if (futex || atomic_load_explicit(waiters, SEQCST) > parked)
                futex_wake_sleepers(&r->ctl->data_futex);
}

static void wake_publishers(struct shmbus_ring *r) {
        waiters_take_and_wake(&r->ctl->space_futex, &r->ctl->space_waiters, &r->pubs[0].sleeping,
                              r->max_pubs);
}

static bool ready_soon(bool (*ready)(void *ctx), void *ctx) {
        int64_t until = shmbus__now_ns() + RACE_WINDOW_NS;

        do {
                if (ready(ctx))
                        return true;
        } while (shmbus__now_ns() < until);
        return false;
}

/*
 * Sleep on @word until a waker bumps it, @ready says so, or about @timeout_ns
 * (< 0: a slice) passes; the caller re-checks its condition and its deadline.
 * Announce the sleep in @waiters, re-check for RACE_WINDOW_NS, and sleep
 * WAIT_QUICK_NS without the heavy fence: in a virtual machine membarrier cost
 * tens of microseconds when the peer's CPU was busy (85 us against 21 us per
 * always-sleeping round trip), and in a request/response exchange it is on the
 * critical path. A waker that raced with our announcement (it read @waiters
 * before our increment reached it, while its commit had not reached us) is
 * the only one that cannot wake us, and the quick sleep bounds what that
 * costs. Only then fence heavily, re-check, and sleep long.
 */
static int futex_sleep(_Atomic uint32_t *word, _Atomic uint32_t *waiters,
                       _Atomic uint32_t *sleeping, bool (*ready)(void *ctx), void *ctx,
                       int64_t timeout_ns) {
        uint32_t seen = atomic_load_explicit(word, SEQCST);
        int64_t slice = WAIT_QUICK_NS;
        int ret = 0;

        atomic_fetch_add_explicit(waiters, 1, SEQCST);
        /*
         * Our slot says we are counted: if we die asleep, whoever frees it uncounts
         * us. Release: a waker that takes our count sees our read of @word.
         */
        atomic_store_explicit(sleeping, 1, RELEASE);
        if (timeout_ns >= 0 && timeout_ns < slice)
                slice = timeout_ns;
        if (!ready_soon(ready, ctx)) {
                ret = futex_wait(word, seen, slice);
                if (ret == -ETIMEDOUT && (timeout_ns < 0 || timeout_ns > slice)) {
                        int64_t left = timeout_ns < 0 ? -1 : timeout_ns - slice;

                        slice = fence_heavy() ? WAIT_SLICE_NS : WAIT_QUICK_NS;
                        if (left >= 0 && left < slice)
                                slice = left;
                        ret = ready(ctx) ? 0 : futex_wait(word, seen, slice);
                }
        }
        waiters_uncount(waiters, sleeping);
        return ret == -ETIMEDOUT ? ret : 0;
}

/*
 * The claim word is changed only by 16-byte CAS. Its halves are read with plain
 * 8-byte atomic loads where one half is enough, and the CAS itself returns the
 * current word when it fails, which repairs a torn first read.
 */
static inline shmbus_u128 cas16(shmbus_u128 *word, shmbus_u128 expect, shmbus_u128 want) {
#if defined(__x86_64__)
        /*
         * The instruction the compiler would emit, written out: ThreadSanitizer
         * emulates 16-byte atomics under a process-local lock, which is not
         * atomic across processes and let two publishers claim the same bytes.
         * RDX:RAX holds the word that was there afterwards, whether or not the
         * exchange happened.
         */
        uint64_t lo = (uint64_t)expect, hi = (uint64_t)(expect >> 64);

        __asm__ __volatile__("lock cmpxchg16b %0"
                             : "+m"(*word), "+a"(lo), "+d"(hi)
                             : "b"((uint64_t)want), "c"((uint64_t)(want >> 64))
                             : "memory", "cc");
        return ((shmbus_u128)hi << 64) | lo;
#else
        return __sync_val_compare_and_swap(word, expect, want);
#endif
}

static inline shmbus_u128 tail_cas(shmbus_tail *t, shmbus_u128 expect, shmbus_u128 want) {
        return cas16(&t->word, expect, want);
}

/* A record header as one 16-byte word: stamp low, then seq and len. */
static inline shmbus_u128 *rec_word(struct shmbus_rec *rec) {
        return (shmbus_u128 *)(void *)rec;
}

static inline shmbus_u128 rec_word_make(uint64_t stamp, uint32_t seq, uint32_t len) {
        return ((shmbus_u128)(((uint64_t)len << 32) | seq) << 64) | stamp;
}

/*
 * The claim word is a union of the 16-byte CAS word and its two 8-byte halves,
 * none of them _Atomic, so its halves are loaded with the __atomic builtins:
 * <stdatomic.h>'s atomic_load_explicit is defined only on _Atomic objects, and
 * Clang rejects it on a plain one (the TSan build refused a test that tried).
 * Declaring the word _Atomic instead would not help: C11 promises no lock-free
 * 16-byte atomic (GCC hands them to libatomic, which may take a lock, and a
 * lock in one process is none for the others), and the halves of an _Atomic
 * union cannot be loaded on their own.
 */
static inline uint64_t tail_load_pos(const struct shmbus_ring *r, memory_order order) {
        return __atomic_load_n(&r->ctl->tail.s.pos, order);
}

static inline uint64_t tail_load_seq(const struct shmbus_ring *r, memory_order order) {
        return __atomic_load_n(&r->ctl->tail.s.seq, order);
}

/* Two halves, possibly torn: only a CAS, which fails on a torn value, may rely on it. */
static inline shmbus_tail tail_load(const struct shmbus_ring *r) {
        shmbus_tail t;

        t.s.pos = tail_load_pos(r, ACQUIRE);
        t.s.seq = tail_load_seq(r, ACQUIRE);
        return t;
}

/*
 * A consistent 16-byte snapshot: a CAS of the word with itself either writes
 * back the value it found or fails and returns the current one.
 */
static inline shmbus_tail tail_snapshot(struct shmbus_ring *r) {
        shmbus_tail t = tail_load(r);

        t.word = tail_cas(&r->ctl->tail, t.word, t.word);
        return t;
}

/*
 * The tail as readers see it. Only a hostile or broken member leaves it
 * unaligned, and the next claim realigns it upwards (shmbus__ring_claim), so
 * readers round up the same way and meet the next record where it will be.
 */
static inline uint64_t tail_load_pos_aligned(const struct shmbus_ring *r, memory_order order) {
        return align_up(tail_load_pos(r, order), SHMBUS_REC_ALIGN);
}

uint64_t shmbus__ring_tail_pos(const struct shmbus_ring *r) {
        return tail_load_pos(r, ACQUIRE);
}

size_t shmbus__ring_ctl_size(uint32_t max_subs, uint32_t max_pubs) {
        return sizeof(struct shmbus_ctl) + (size_t)max_subs * sizeof(struct shmbus_sub_slot) +
               (size_t)max_pubs * sizeof(struct shmbus_pub_slot);
}

int shmbus__ring_geom_check(const struct shmbus_ring_geom *g) {
        if (!is_pow2(g->data_size) || g->data_size < SHMBUS_DATA_MIN ||
            g->data_size > SHMBUS_DATA_MAX)
                return -EINVAL;
        if (g->max_msg < 1 || g->max_msg > g->data_size / 4)
                return -EINVAL;
        if (g->policy != SHMBUS_POLICY_BLOCK && g->policy != SHMBUS_POLICY_OVERWRITE)
                return -EINVAL;
        if (g->max_subs < 1 || g->max_subs > SHMBUS_SLOTS_MAX)
                return -EINVAL;
        if (g->max_pubs < 1 || g->max_pubs > SHMBUS_SLOTS_MAX)
                return -EINVAL;
        if (g->name && strlen(g->name) > SHMBUS_NAME_MAX)
                return -EINVAL;
        return 0;
}

int shmbus__ring_format(void *ctl_mem, size_t ctl_len, void *data, size_t data_len,
                        const struct shmbus_ring_geom *g) {
        struct shmbus_ctl *ctl = ctl_mem;
        struct timespec ts;
        int r;

        r = shmbus__ring_geom_check(g);
        if (r < 0)
                return r;
        if (ctl_len != shmbus__ring_ctl_size(g->max_subs, g->max_pubs) || data_len != g->data_size)
                return -EINVAL;

        /*
         * Zeroed data has stamp 0 everywhere, which reads as "committed at
         * position 0". Stamp every 16-byte slot with an impossible position
         * (one lap back, claimed) so that nothing is readable until written.
         */
        memset(ctl, 0, ctl_len);
        for (uint64_t off = 0; off < data_len; off += SHMBUS_REC_ALIGN) {
                struct shmbus_rec *rec = (struct shmbus_rec *)(void *)((uint8_t *)data + off);

                atomic_store_explicit(&rec->stamp, (off - data_len) | SHMBUS_STAMP_CLAIMED,
                                      RELAXED);
        }

        clock_gettime(CLOCK_REALTIME, &ts);
        ctl->layout_major = SHMBUS_LAYOUT_MAJOR;
        ctl->layout_minor = SHMBUS_LAYOUT_MINOR;
        ctl->header_size = sizeof(*ctl);
        ctl->ctl_size = ctl_len;
        ctl->data_size = g->data_size;
        ctl->max_msg = g->max_msg;
        ctl->policy = g->policy;
        ctl->max_subs = g->max_subs;
        ctl->max_pubs = g->max_pubs;
        ctl->created_ns = (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
        ctl->sub_off = sizeof(*ctl);
        ctl->pub_off = sizeof(*ctl) + g->max_subs * sizeof(struct shmbus_sub_slot);
        if (g->name)
                memcpy(ctl->name, g->name, strlen(g->name));

        /* The magic goes last: a half-formatted file never looks valid. */
        atomic_thread_fence(RELEASE);
        __atomic_store_n(&ctl->magic, SHMBUS_CTL_MAGIC, RELEASE);
        return 0;
}

int shmbus__ring_attach(struct shmbus_ring *r, void *ctl_mem, size_t ctl_len, void *data,
                        size_t data_len) {
        const struct shmbus_ctl *ctl = ctl_mem;
        struct shmbus_sub_slot *subs;
        struct shmbus_ring_geom g;

        if (ctl_len < sizeof(*ctl))
                return -EPROTO;
        if (__atomic_load_n(&ctl->magic, ACQUIRE) != SHMBUS_CTL_MAGIC)
                return -EPROTO;
        if (ctl->layout_major != SHMBUS_LAYOUT_MAJOR || ctl->header_size < sizeof(*ctl))
                return -EPROTO;

        /* Copy the geometry once; nothing below re-reads it from shared memory. */
        g = (struct shmbus_ring_geom){
                .data_size = ctl->data_size,
                .max_msg = ctl->max_msg,
                .policy = ctl->policy,
                .max_subs = ctl->max_subs,
                .max_pubs = ctl->max_pubs,
        };
        if (shmbus__ring_geom_check(&g) < 0)
                return -EPROTO;
        if (ctl->ctl_size != ctl_len || ctl_len != shmbus__ring_ctl_size(g.max_subs, g.max_pubs))
                return -EPROTO;
        if (ctl->sub_off != sizeof(*ctl) ||
            ctl->pub_off != sizeof(*ctl) + g.max_subs * sizeof(struct shmbus_sub_slot))
                return -EPROTO;
        if (data_len != g.data_size)
                return -EPROTO;

        subs = (struct shmbus_sub_slot *)(void *)((uint8_t *)ctl_mem + sizeof(*ctl));
        *r = (struct shmbus_ring){
                .ctl = ctl_mem,
                .data = data,
                .size = g.data_size,
                .mask = g.data_size - 1,
                .max_msg = g.max_msg,
                .policy = g.policy,
                .max_subs = g.max_subs,
                .max_pubs = g.max_pubs,
                .subs = subs,
                .pubs = (struct shmbus_pub_slot *)(void *)(subs + g.max_subs),
                .notify_fd = -1,
        };
        /* Built from the checked copy alone: no peer can change it from here on. */
        assert(shmbus__ring_is_sane(r));
        return 0;
}

/*
 * Whether our process-local view is consistent: the geometry copied at attach
 * passes the checks creation applies, and the fields derived from it (mask,
 * slot arrays) agree with it. Every bound the hot paths rely on comes from
 * here. Nothing in it is read from shared memory, so a member scribbling on
 * the channel cannot make it false, only a bug in this process can: that is
 * what makes it fit for assert(). It is asserted where a view is made or put
 * to use (attach, join, unblock, walk), never per message.
 */
bool shmbus__ring_is_sane(const struct shmbus_ring *r) {
        struct shmbus_ring_geom g;

        if (!r || !r->ctl || !r->data)
                return false;
        g = (struct shmbus_ring_geom){
                .data_size = r->size,
                .max_msg = r->max_msg,
                .policy = r->policy,
                .max_subs = r->max_subs,
                .max_pubs = r->max_pubs,
        };
        return shmbus__ring_geom_check(&g) == 0 && r->mask == r->size - 1 &&
               r->subs == (struct shmbus_sub_slot *)(void *)(r->ctl + 1) &&
               r->pubs == (struct shmbus_pub_slot *)(void *)(r->subs + r->max_subs);
}

/* ---- publishers ------------------------------------------------------------------------- */

int shmbus__ring_pub_join(struct shmbus_ring *r, struct shmbus_ring_pub *p, pid_t pid, uid_t uid) {
        assert(shmbus__ring_is_sane(r));
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                struct shmbus_pub_slot *slot = &r->pubs[i];
                uint32_t nobody = 0;

                /* Owning a slot is one CAS of its pid: never a moment with an unknown owner. */
                if (!atomic_compare_exchange_strong_explicit(&slot->pid, &nobody, (uint32_t)pid,
                                                             SEQCST, RELAXED))
                        continue;
                atomic_store_explicit(&slot->uid, (uint32_t)uid, RELAXED);
                atomic_store_explicit(&slot->msgs, 0, RELAXED);
                atomic_store_explicit(&slot->bytes, 0, RELAXED);
                atomic_store_explicit(&slot->aborts, 0, RELAXED);
                atomic_store_explicit(&slot->waits, 0, RELAXED);
                atomic_store_explicit(&slot->full, 0, RELAXED);
                atomic_store_explicit(&slot->claim_begin, 0, RELAXED);
                atomic_store_explicit(&slot->claim_end, 0, RELAXED);
                atomic_store_explicit(&slot->sleeping, 0, RELAXED);
                atomic_store_explicit(&slot->state, SHMBUS_SLOT_ACTIVE, RELEASE);
                membarrier_register();
                *p = (struct shmbus_ring_pub){
                        .ring = r,
                        .slot = slot,
                        .head = atomic_load_explicit(&r->ctl->head_cache, ACQUIRE),
                };
                return 0;
        }
        return -EUSERS;
}

/* Fold a released publisher's counters into the channel totals, then free the slot. */
void shmbus__ring_pub_slot_release(struct shmbus_ring *r, uint32_t idx) {
        struct shmbus_pub_slot *slot = &r->pubs[idx];
        uint32_t active = SHMBUS_SLOT_ACTIVE;

        if (idx >= r->max_pubs)
                return;
        if (!atomic_compare_exchange_strong_explicit(&slot->state, &active, SHMBUS_SLOT_FREE,
                                                     SEQCST, RELAXED))
                return;
        atomic_fetch_add_explicit(&r->ctl->retired_msgs, atomic_load_explicit(&slot->msgs, RELAXED),
                                  RELAXED);
        atomic_fetch_add_explicit(&r->ctl->retired_bytes,
                                  atomic_load_explicit(&slot->bytes, RELAXED), RELAXED);
        atomic_fetch_add_explicit(&r->ctl->retired_aborts,
                                  atomic_load_explicit(&slot->aborts, RELAXED), RELAXED);
        waiters_uncount(&r->ctl->space_waiters, &slot->sleeping);
        atomic_store_explicit(&slot->pid, 0, RELEASE);
}

void shmbus__ring_pub_leave(struct shmbus_ring_pub *p) {
        if (!p->ring)
                return;
        if (p->claimed)
                shmbus__ring_abort(p);
        shmbus__ring_pub_slot_release(p->ring, (uint32_t)(p->slot - p->ring->pubs));
        p->ring = NULL;
}

/*
 * Recompute the horizon: no publisher may claim bytes that lie a whole ring or
 * more past it. It is the lowest of the tail, every subscriber's position
 * (block policy), and the start of every claim still open. The subscribers
 * make block mode lossless. The open claims matter in both modes: a publisher
 * stopped inside its claim for a whole lap of the ring would otherwise go on
 * writing into bytes a newer record has taken, and a reader validates its
 * record only against newer writers (found by test-soak, overwrite policy:
 * torn messages when a publisher was descheduled mid-write).
 *
 * The tail is read before the slots, and all with seq_cst, so that a
 * subscriber joining or a claim opening concurrently is either seen or starts
 * at or after every position this bound allows to be overwritten
 * (docs/ORDERING.md, "Join" and "Horizon"). A horizon stays valid once
 * computed: claims and subscribers only move forward, and new ones start at
 * the tail.
 *
 * The caller's own slot (@self) is skipped: its claim is closed whenever it
 * asks (it is between claims), so whatever range the slot shows was forged by
 * another member, and counting it would make the publisher wait on itself,
 * for good (found by an attack run: issue 15).
 */
static uint64_t head_recompute(struct shmbus_ring *r, const struct shmbus_pub_slot *self) {
        uint64_t head = tail_load_pos(r, SEQCST);

        for (uint32_t i = 0; r->policy == SHMBUS_POLICY_BLOCK && i < r->max_subs; i++) {
                struct shmbus_sub_slot *slot = &r->subs[i];
                uint64_t pos;

                if (atomic_load_explicit(&slot->state, SEQCST) != SHMBUS_SLOT_ACTIVE)
                        continue;
                /* Set before the slot turned ACTIVE, so seen with it (docs/ORDERING.md). */
                if (atomic_load_explicit(&slot->flags, RELAXED) & SHMBUS_SUB_FLAG_UNTETHERED)
                        continue;
                pos = atomic_load_explicit(&slot->pos, SEQCST);
                /* A slot claiming to be ahead of the tail is corrupt; it cannot hold us back. */
                if ((int64_t)(pos - head) < 0)
                        head = pos;
        }
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                struct shmbus_pub_slot *slot = &r->pubs[i];
                uint64_t begin, end;

                if (slot == self ||
                    atomic_load_explicit(&slot->state, SEQCST) != SHMBUS_SLOT_ACTIVE)
                        continue;
                /* End first: a commit closes the claim by setting end to begin (release). */
                end = atomic_load_explicit(&slot->claim_end, SEQCST);
                begin = atomic_load_explicit(&slot->claim_begin, SEQCST);
                if (begin != end && (int64_t)(begin - head) < 0)
                        head = begin;
        }
        /* Not the same value again: a publisher polling for space would own the line. */
        if (atomic_load_explicit(&r->ctl->head_cache, RELAXED) != head)
                atomic_store_explicit(&r->ctl->head_cache, head, RELEASE);
        return head;
}

/*
 * After a commit or abort: wake sleeping readers and, on an overwrite channel,
 * publishers an open claim held back (the horizon). On a block channel those
 * are woken by the subscribers, which were stuck behind the same claim; only
 * with no subscriber at all do they wait out a sleep slice.
 */
static void pub_wake_readers(struct shmbus_ring *r) {
        /* Pairs with the heavy fence of a reader going to sleep (futex_sleep). */
        fence_light();
        if (atomic_load_explicit(&r->ctl->data_waiters, RELAXED) != 0)
                wake_readers(r);
        if (r->policy == SHMBUS_POLICY_OVERWRITE &&
            atomic_load_explicit(&r->ctl->space_waiters, RELAXED) != 0)
                wake_publishers(r);
}

struct space_wait {
        struct shmbus_ring_pub *pub;
        uint64_t need_end;
};

static bool space_ready(void *ctx) {
        struct space_wait *w = ctx;

        w->pub->head = head_recompute(w->pub->ring, w->pub->slot);
        return w->need_end - w->pub->head <= w->pub->ring->size;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * How long a publisher that found the ring full polls the horizon before it
 * sleeps: as long as a subscriber spins by default (DEFAULT_SPIN_US). Going
 * to sleep at once, as publishers did, cost 20 to 40 us of wake-up each time
 * a streaming reader fell an eighth of a ring behind, and a futex wake on the
 * reader's side: with 64 KiB messages in a 256 KiB ring, 0.78 wakes per
 * message (issue 17). A reader that keeps up frees space well within this.
 */
#define PUB_SPIN_NS    INT64_C(50000)
#define PUB_SPIN_RELAX 16 /* pauses between two looks at the horizon, about a microsecond */

/*
 * Poll the horizon until a claim ending at @need_end fits, PUB_SPIN_NS pass,
 * or the @deadline (< 0: none) does. True if it fits.
 */
static bool pub_spin_space(struct shmbus_ring_pub *p, uint64_t need_end, int64_t deadline) {
        int64_t until = shmbus__now_ns() + PUB_SPIN_NS;

        if (deadline >= 0 && deadline < until)
                until = deadline;
        for (uint32_t polls = 1;; polls++) {
                /*
                 * Not every pause: the recompute reads the subscribers' slot lines,
                 * which they write on every release (their counters), and each read
                 * costs the reader a transfer of its line back.
                 */
                for (int i = 0; i < PUB_SPIN_RELAX; i++)
                        cpu_relax();
                p->head = head_recompute(p->ring, p->slot);
                if (need_end - p->head <= p->ring->size)
                        return true;
                if (polls % 4 == 0 && shmbus__now_ns() >= until)
                        return false;
        }
}

/*
 * Sleep until the horizon may have moved (a subscriber moved on, or on an
 * overwrite channel a claim closed), the deadline passes, or a slice ends.
 */
static int pub_wait_space(struct shmbus_ring_pub *p, uint64_t need_end, int64_t deadline) {
        struct space_wait w = {.pub = p, .need_end = need_end};
        int64_t left = -1;

        if (deadline >= 0) {
                left = deadline - shmbus__now_ns();
                if (left <= 0)
                        return -ETIMEDOUT;
        }
        futex_sleep(&p->ring->ctl->space_futex, &p->ring->ctl->space_waiters, &p->slot->sleeping,
                    space_ready, &w, left);
        return 0;
}

/*
 * Take the bytes for the records of @lens[0 .. n) with one claim CAS, as many
 * of them as fit at once: all before the end of the lap, the first one under
 * the horizon (waiting for it as @timeout_ns says), the others only as far as
 * the horizon already known allows. Sets *@ret_start to the first record's
 * position and *@ret_seq to its message number, and returns how many records
 * were taken (>= 1), or -EAGAIN or -ETIMEDOUT. A pad before the first record,
 * when the lap had to be finished, is written and committed here. Always
 * inlined: as a call, single claims of 64 B messages streamed a third slower
 * (60 M to 40 M messages/s, same minute).
 */
static inline __attribute__((always_inline)) int pub_take(struct shmbus_ring_pub *p,
                                                          const size_t *lens, size_t n,
                                                          int64_t timeout_ns, uint64_t *ret_start,
                                                          uint64_t *ret_seq) {
        struct shmbus_ring *r = p->ring;
        uint64_t first = rec_size(lens[0]), start, end;
        int64_t deadline = -1;
        bool waited = false, refreshed = false;
        shmbus_tail cur, want;
        size_t k;

        cur = tail_load(r);
        for (;;) {
                uint64_t off = cur.s.pos & r->mask, lap_end;

                if (cur.s.pos & (SHMBUS_REC_ALIGN - 1)) {
                        /*
                         * Only a hostile or broken member writes an unaligned claim
                         * word: realign it (records must stay 16-aligned) and go on.
                         */
                        want.s.pos = align_up(cur.s.pos, SHMBUS_REC_ALIGN);
                        want.s.seq = cur.s.seq;
                        cur.word = tail_cas(&r->ctl->tail, cur.word, want.word);
                        continue;
                }

                /* A record never crosses the end: pad to the end and start the next lap. */
                start = off + first > r->size ? cur.s.pos + (r->size - off) : cur.s.pos;
                end = start + first;

                if (end - p->head > r->size) {
                        p->head = atomic_load_explicit(&r->ctl->head_cache, ACQUIRE);
                        if (end - p->head > r->size)
                                p->head = head_recompute(r, p->slot);
                        if (end - p->head > r->size) {
                                int w;

                                if (timeout_ns == 0) {
                                        atomic_fetch_add_explicit(&p->slot->full, 1, RELAXED);
                                        p->full_end = end;
                                        return -EAGAIN;
                                }
                                if (deadline == -1 && timeout_ns > 0)
                                        deadline = shmbus__now_ns() + timeout_ns;
                                if (!waited) {
                                        atomic_fetch_add_explicit(&p->slot->waits, 1, RELAXED);
                                        waited = true;
                                        if (pub_spin_space(p, end, deadline))
                                                continue;
                                }
                                w = pub_wait_space(p, end, timeout_ns < 0 ? -1 : deadline);
                                if (w < 0) {
                                        atomic_fetch_add_explicit(&p->slot->full, 1, RELAXED);
                                        return w;
                                }
                                /* Woken by a delete (or a slice ended): no space will come. */
                                if (atomic_load_explicit(&r->ctl->deleted, RELAXED) ==
                                    SHMBUS_CTL_DELETED)
                                        return -EIDRM;
                                cur = tail_load(r);
                                continue;
                        }
                }

                /*
                 * A batch: more records, within this lap and under the horizon,
                 * which is recomputed once if the cached one cuts the batch short.
                 */
                lap_end = (start | r->mask) + 1;
                for (k = 1; k < n; k++) {
                        uint64_t next = end + rec_size(lens[k]);

                        if (next > lap_end)
                                break;
                        if (next - p->head > r->size && !refreshed) {
                                refreshed = true;
                                p->head = head_recompute(r, p->slot);
                        }
                        if (next - p->head > r->size)
                                break;
                        end = next;
                }

                /*
                 * What we are about to own, visible before we own it (the CAS is a
                 * full barrier). Release: whoever sees this range also sees our
                 * previous commit (unblock relies on it).
                 */
                atomic_store_explicit(&p->slot->claim_begin, cur.s.pos, RELEASE);
                atomic_store_explicit(&p->slot->claim_end, end, RELEASE);
                p->claim_begin = cur.s.pos;
                want.s.pos = end;
                want.s.seq = cur.s.seq + k;
                shmbus_tail seen = {.word = tail_cas(&r->ctl->tail, cur.word, want.word)};
                if (seen.word == cur.word)
                        break;
                /* Lost the race: we own nothing, so hold nobody's horizon back. */
                atomic_store_explicit(&p->slot->claim_end, cur.s.pos, RELAXED);
                cur = seen;
        }

        /*
         * The bytes [cur.pos, end) are ours, and our active slot says so: unblock
         * leaves them alone for as long as we live, so the stamps below are plain
         * stores over whatever an older lap (or a hostile member) left there.
         */
        if (start != cur.s.pos) {
                struct shmbus_rec *pad = rec_at(r, cur.s.pos);

                atomic_store_explicit(&pad->stamp, cur.s.pos | SHMBUS_STAMP_WRITING, RELAXED);
                pad->len = (uint32_t)(start - cur.s.pos - SHMBUS_REC_HDR);
                pad->seq = 0;
                atomic_store_explicit(&pad->stamp, cur.s.pos | SHMBUS_STAMP_PAD, RELEASE);
        }

        *ret_start = start;
        *ret_seq = cur.s.seq;
        return (int)k;
}

/*
 * Head the record at @pos, claimed for message number @seq and @len bytes.
 * The stamp changes first, before len and seq: unblock replaces a header with
 * one 16-byte CAS against the stamp it judged stuck, so it either wins before
 * we touch the header (and we overwrite it all) or fails. Three stores, as
 * few as before: a fourth ("writing", then "claimed") cost about 7% of the
 * 1 KiB stream, the reader polling this very line. Unblock does not trust len
 * and seq under a CLAIMED stamp blindly: a writer may have died between the
 * stamp and them.
 */
static inline struct shmbus_rec *pub_header(struct shmbus_ring *r, uint64_t pos, uint64_t seq,
                                            size_t len, uint32_t mark) {
        struct shmbus_rec *rec = rec_at(r, pos);

        atomic_store_explicit(&rec->stamp, pos | SHMBUS_STAMP_CLAIMED, RELAXED);
        atomic_thread_fence(RELEASE); /* the stamp before len and seq, for unblock's CAS */
        rec->seq = (uint32_t)seq;
        rec->len = (uint32_t)len | mark;
        return rec;
}

int shmbus__ring_claim(struct shmbus_ring_pub *p, size_t len, int64_t timeout_ns, void **ret_buf) {
        struct shmbus_ring *r = p->ring;
        uint64_t start, seq;
        struct shmbus_rec *rec;
        int k;

        if (p->claimed)
                return -EBUSY;
        if (len == 0)
                return -EINVAL;
        if (len > r->max_msg)
                return -EMSGSIZE;
        k = pub_take(p, &len, 1, timeout_ns, &start, &seq);
        if (k < 0)
                return k;
        rec = pub_header(r, start, seq, len, p->mark);

        p->claimed = true;
        p->claim_pos = start;
        p->claim_len = (uint32_t)len;
        *ret_buf = rec + 1;
        return 0;
}

/* After the last commit of a claim: close its range and wake whoever waits for it. */
static inline void pub_close(struct shmbus_ring_pub *p) {
        /* Closed: no longer holds the horizon back. Release: our writes are done. */
        atomic_store_explicit(&p->slot->claim_end, p->claim_begin, RELEASE);
        pub_wake_readers(p->ring);
}

static inline void pub_count(struct shmbus_ring_pub *p, uint64_t msgs, uint64_t bytes) {
        atomic_store_explicit(&p->slot->msgs, atomic_load_explicit(&p->slot->msgs, RELAXED) + msgs,
                              RELAXED);
        atomic_store_explicit(&p->slot->bytes,
                              atomic_load_explicit(&p->slot->bytes, RELAXED) + bytes, RELAXED);
}

/*
 * Commit or abort: one release store of the stamp, the commit point. No CAS:
 * nothing else writes this stamp while our slot is active (see claim), and a
 * locked instruction here halved the rate of small messages.
 */
static int pub_finish(struct shmbus_ring_pub *p, uint64_t stamp) {
        struct shmbus_ring *r = p->ring;
        struct shmbus_rec *rec = rec_at(r, p->claim_pos);

        if (!p->claimed)
                return -EINVAL;
        p->claimed = false;
        atomic_store_explicit(&rec->stamp, stamp, RELEASE);
        pub_close(p);
        return 0;
}

int shmbus__ring_commit(struct shmbus_ring_pub *p) {
        uint32_t len = p->claim_len;
        int ret;

        ret = pub_finish(p, p->claim_pos);
        if (ret < 0)
                return ret;
        pub_count(p, 1, len);
        return 0;
}

int shmbus__ring_abort(struct shmbus_ring_pub *p) {
        int ret;

        ret = pub_finish(p, p->claim_pos | SHMBUS_STAMP_PAD | SHMBUS_STAMP_SEQ);
        if (ret < 0)
                return ret;
        atomic_store_explicit(&p->slot->aborts, atomic_load_explicit(&p->slot->aborts, RELAXED) + 1,
                              RELAXED);
        return 0;
}

/*
 * The batch: as many of @msgs[0 .. n) (of @lens, each checked) as fit at
 * once, with one claim CAS, one close of the claim range, one check for
 * sleeping readers and one update of the counters. Each record still gets
 * its own header and commit stamp in the order of single claims, so readers
 * and unblock see nothing new: a publisher that dies inside a batch leaves a
 * committed prefix and claims that unblock pads over like any other.
 */
int shmbus__ring_send_batch(struct shmbus_ring_pub *p, const void *const *msgs, const size_t *lens,
                            size_t n, int64_t timeout_ns) {
        struct shmbus_ring *r = p->ring;
        uint64_t pos, seq, bytes = 0;
        int k;

        if (p->claimed)
                return -EBUSY;
        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (lens[i] == 0)
                        return -EINVAL;
                if (lens[i] > r->max_msg)
                        return -EMSGSIZE;
        }
        k = pub_take(p, lens, n, timeout_ns, &pos, &seq);
        if (k < 0)
                return k;
        for (int i = 0; i < k; i++) {
                struct shmbus_rec *rec = pub_header(r, pos, seq + (uint64_t)i, lens[i], p->mark);

                memcpy(rec + 1, msgs[i], lens[i]);
                atomic_store_explicit(&rec->stamp, pos, RELEASE);
                pos += rec_size(lens[i]);
                bytes += lens[i];
        }
        pub_close(p);
        pub_count(p, (uint64_t)k, bytes);
        return k;
}

/* ---- subscribers ------------------------------------------------------------------------ */

/*
 * Where a subscriber joining @history message numbers back starts: the first
 * data record, in the ring as of the claim word @t, whose number is at least
 * t.seq - @history (and the number it expects there). The scan reads records
 * publishers may be overwriting, so each header is checked and then validated
 * against a lap (as an overwrite reader does); a lap restarts the scan, and
 * anything it cannot make sense of starts the subscriber at the tail.
 */
static void history_start(struct shmbus_ring *r, shmbus_tail t, uint64_t history, uint64_t *ret_pos,
                          uint64_t *ret_seq) {
        uint64_t target = history >= t.s.seq ? 0 : t.s.seq - history;

        *ret_pos = t.s.pos;
        *ret_seq = t.s.seq;
        for (int attempt = 0; attempt < 4; attempt++, t = tail_snapshot(r)) {
                uint64_t tail = align_up(t.s.pos, SHMBUS_REC_ALIGN);
                uint64_t pos = tail > r->size ? oldest_lap_start(r, tail) : 0;
                uint64_t expect = 0;
                bool known = false, lapped = false;

                while ((int64_t)(tail - pos) > 0) {
                        struct shmbus_rec *rec = rec_at(r, pos);
                        uint64_t stamp = atomic_load_explicit(&rec->stamp, ACQUIRE), seq;
                        uint32_t len = rec->len, low = rec->seq;
                        bool pad = stamp & SHMBUS_STAMP_PAD;

                        if (!pad)
                                len &= SHMBUS_REC_LEN_MASK; /* the origin mark (layout 2.2) */
                        if (!stamp_is_committed_at(stamp, pos)) {
                                /* A claim in progress: start there if its number is known. */
                                if (known) {
                                        *ret_pos = pos;
                                        *ret_seq = expect;
                                }
                                return;
                        }
                        atomic_thread_fence(ACQUIRE);
                        if (tail_load_pos(r, RELAXED) - pos > r->size) {
                                lapped = true;
                                break;
                        }
                        if ((pos & r->mask) + SHMBUS_REC_HDR + (uint64_t)len > r->size ||
                            (!pad && len > r->max_msg))
                                return; /* corrupt: from the tail, as a resync would */
                        seq = t.s.seq - (uint32_t)((uint32_t)t.s.seq - low);
                        if (!pad && seq >= target) {
                                *ret_pos = pos;
                                *ret_seq = seq;
                                return;
                        }
                        if (!pad || (stamp & SHMBUS_STAMP_SEQ)) {
                                expect = seq + 1;
                                known = true;
                        }
                        pos += rec_size(len);
                }
                if (!lapped)
                        return; /* nothing old enough: the tail */
        }
}

int shmbus__ring_sub_join_ex(struct shmbus_ring *r, struct shmbus_ring_sub *s, pid_t pid, uid_t uid,
                             uint32_t flags, uint64_t history) {
        bool untethered = flags & SHMBUS_SUB_FLAG_UNTETHERED;
        bool block = r->policy == SHMBUS_POLICY_BLOCK;

        assert(shmbus__ring_is_sane(r));
        for (uint32_t i = 0; i < r->max_subs; i++) {
                struct shmbus_sub_slot *slot = &r->subs[i];
                uint32_t nobody = 0;
                uint64_t start, seq, protect_from = 0;
                shmbus_tail t;

                if (!atomic_compare_exchange_strong_explicit(&slot->pid, &nobody, (uint32_t)pid,
                                                             SEQCST, RELAXED))
                        continue;

                /*
                 * Join: publish a provisional position, then read the tail again
                 * and start there. A publisher that did not see our slot can only
                 * have claimed from that tail on, which overwrites nothing at or
                 * after it (docs/ORDERING.md, "Join"). The flags go first, so a
                 * publisher that sees the slot ACTIVE sees them too.
                 */
                atomic_store_explicit(&slot->flags,
                                      SHMBUS_SUB_FLAG_EVICTABLE |
                                              (untethered ? SHMBUS_SUB_FLAG_UNTETHERED : 0),
                                      RELAXED);
                atomic_store_explicit(&slot->pos, tail_load_pos(r, SEQCST), SEQCST);
                atomic_store_explicit(&slot->state, SHMBUS_SLOT_ACTIVE, SEQCST);
                atomic_thread_fence(SEQCST);
                t = tail_snapshot(r);
                t.s.pos = align_up(t.s.pos, SHMBUS_REC_ALIGN);
                start = t.s.pos;
                seq = t.s.seq;
                if (history)
                        history_start(r, t, history, &start, &seq);
                atomic_store_explicit(&slot->pos, start, SEQCST);
                if (start != t.s.pos && block && !untethered) {
                        /*
                         * History: our position holds back every horizon computed
                         * from now on, but publishers may still use one computed
                         * before, which allows claims over bytes below the tail
                         * as of now. Read as an overwrite reader (validating)
                         * until we reach that tail (docs/ORDERING.md, "History").
                         */
                        atomic_thread_fence(SEQCST);
                        protect_from = tail_load_pos(r, SEQCST);
                }
                atomic_store_explicit(&slot->uid, (uint32_t)uid, RELAXED);
                atomic_store_explicit(&slot->received, 0, RELAXED);
                atomic_store_explicit(&slot->bytes, 0, RELAXED);
                atomic_store_explicit(&slot->lost, 0, RELAXED);
                atomic_store_explicit(&slot->corrupt, 0, RELAXED);
                atomic_store_explicit(&slot->sleeping, 0, RELAXED);
                membarrier_register();
                *s = (struct shmbus_ring_sub){
                        .ring = r,
                        .slot = slot,
                        .pos = start,
                        .published = start,
                        .next_seq = seq,
                        .lossy = !block || untethered || protect_from != 0,
                        .untethered = untethered,
                        .protecting = protect_from != 0,
                        .protect_from = protect_from,
                        .idle_pos = UINT64_MAX, /* positions are 16-aligned: never idle yet */
                };
                return 0;
        }
        return -EUSERS;
}

int shmbus__ring_sub_join(struct shmbus_ring *r, struct shmbus_ring_sub *s, pid_t pid, uid_t uid) {
        return shmbus__ring_sub_join_ex(r, s, pid, uid, 0, 0);
}

static void sub_wake_publishers(struct shmbus_ring *r) {
        if (atomic_load_explicit(&r->ctl->space_waiters, RELAXED) != 0)
                wake_publishers(r);
}

void shmbus__ring_sub_slot_release(struct shmbus_ring *r, uint32_t idx) {
        struct shmbus_sub_slot *slot = &r->subs[idx];
        uint32_t active = SHMBUS_SLOT_ACTIVE, evicted = SHMBUS_SLOT_EVICTED;

        if (idx >= r->max_subs)
                return;
        if (!atomic_compare_exchange_strong_explicit(&slot->state, &active, SHMBUS_SLOT_FREE,
                                                     SEQCST, RELAXED) &&
            !atomic_compare_exchange_strong_explicit(&slot->state, &evicted, SHMBUS_SLOT_FREE,
                                                     SEQCST, RELAXED))
                return;
        atomic_fetch_add_explicit(&r->ctl->retired_lost, atomic_load_explicit(&slot->lost, RELAXED),
                                  RELAXED);
        waiters_uncount(&r->ctl->data_waiters, &slot->sleeping);
        atomic_store_explicit(&slot->pid, 0, RELEASE);
        /* Publishers blocked on this subscriber may go on now. */
        atomic_thread_fence(SEQCST);
        sub_wake_publishers(r);
}

/*
 * Out of the horizon, but not free: the owner may still be writing its
 * counters here, so only its own release (or the sweep, once it is dead)
 * frees the slot. Sleepers are woken: publishers to go on, the owner to see.
 */
bool shmbus__ring_sub_slot_evict(struct shmbus_ring *r, uint32_t idx) {
        struct shmbus_sub_slot *slot = &r->subs[idx];
        uint32_t active = SHMBUS_SLOT_ACTIVE;

        if (idx >= r->max_subs)
                return false;
        if (!atomic_compare_exchange_strong_explicit(&slot->state, &active, SHMBUS_SLOT_EVICTED,
                                                     SEQCST, RELAXED))
                return false;
        atomic_fetch_add_explicit(&r->ctl->evicted, 1, RELAXED);
        waiters_uncount(&r->ctl->data_waiters, &slot->sleeping);
        shmbus__ring_wake_all(r);
        return true;
}

void shmbus__ring_sub_leave(struct shmbus_ring_sub *s) {
        if (!s->ring)
                return;
        shmbus__ring_sub_slot_release(s->ring, (uint32_t)(s->slot - s->ring->subs));
        s->ring = NULL;
}

/*
 * Publish our position; wake publishers that wait for space. Release defers
 * this until an eighth of the ring has been consumed, and peek does it before
 * it reports an empty ring: in a ping-pong it would otherwise sit on the
 * critical path of every message (a full fence where membarrier is missing, a
 * store to a line publishers read in any case). Publishers therefore see a
 * position at most an eighth of the ring old, and the exact one whenever the
 * reader has caught up or goes to sleep, which is what keeps a blocked
 * publisher from waiting on a reader that has room for it (docs/ORDERING.md,
 * "Deferred reader position").
 */
static void sub_publish(struct shmbus_ring_sub *s) {
        struct shmbus_ring *r = s->ring;

        s->published = s->pos;
        atomic_store_explicit(&s->slot->pos, s->pos, RELEASE);
        if (s->protecting && (int64_t)(s->pos - s->protect_from) >= 0) {
                /* Past every horizon computed without us: nothing here can be lapped now. */
                s->protecting = false;
                s->lossy = false;
        }
        if (r->policy == SHMBUS_POLICY_BLOCK && !s->untethered) {
                /* Pairs with the heavy fence of a publisher going to sleep (futex_sleep). */
                fence_light();
                sub_wake_publishers(r);
        }
}

/*
 * Bytes consumed between two publications: an eighth of the ring, but no more
 * than PUBLISH_MAX, so that on a big ring a publisher waiting for space sees
 * progress within its spin (PUB_SPIN_NS) instead of sleeping until an eighth
 * of 64 MiB has been read. At 64 KiB a publication costs one store per 64 KiB
 * read, nothing next to the reading.
 */
#define PUBLISH_MAX (UINT64_C(64) << 10)

static inline uint64_t sub_publish_every(const struct shmbus_ring *r) {
        return r->size / 8 < PUBLISH_MAX ? r->size / 8 : PUBLISH_MAX;
}

/* Before reporting an empty ring (and so before any sleep): the exact position. */
static inline void sub_publish_pending(struct shmbus_ring_sub *s) {
        if (s->published != s->pos)
                sub_publish(s);
}

static void sub_store_counters(struct shmbus_ring_sub *s) {
        atomic_store_explicit(&s->slot->received, s->received, RELAXED);
        atomic_store_explicit(&s->slot->bytes, s->bytes, RELAXED);
        atomic_store_explicit(&s->slot->lost, s->lost, RELAXED);
        atomic_store_explicit(&s->slot->corrupt, s->corrupt, RELAXED);
}

/*
 * Move to a position we can trust: after a lap (overwrite), the oldest lap
 * start not yet being overwritten; after corruption, the tail (rounded up as
 * the next claim will round it). Both are record boundaries.
 */
static void sub_resync(struct shmbus_ring_sub *s, uint64_t tail, bool corrupt) {
        struct shmbus_ring *r = s->ring;
        uint64_t pos;

        if (corrupt) {
                s->corrupt++;
                pos = align_up(tail, SHMBUS_REC_ALIGN);
        } else {
                pos = oldest_lap_start(r, tail);
        }
        s->pos = pos;
        sub_store_counters(s);
        sub_publish(s);
}

/* Rebuild a 64-bit message number from the low 32 bits in a record. */
static uint64_t seq_rebuild(struct shmbus_ring_sub *s, uint32_t low) {
        uint64_t tail_seq;

        if (low == (uint32_t)s->next_seq)
                return s->next_seq;
        /* The claim word's seq is past this record's and within 2^32 of it. */
        tail_seq = tail_load_seq(s->ring, ACQUIRE);
        return tail_seq - (uint32_t)((uint32_t)tail_seq - low);
}

/* Overwrite mode: did a publisher claim over [pos, ...) while we read it? */
static inline bool sub_lapped(struct shmbus_ring_sub *s, uint64_t pos, uint64_t *ret_tail) {
        struct shmbus_ring *r = s->ring;

        atomic_thread_fence(ACQUIRE);
        *ret_tail = tail_load_pos(r, RELAXED);
        return *ret_tail - pos > r->size && (int64_t)(*ret_tail - pos) > 0;
}

/*
 * The record at @pos has a len that cannot be right. On an overwrite channel
 * a publisher may have lapped us while we read its header: then resync to the
 * oldest lap start and return 0, and the caller reads on. Otherwise the record
 * is corrupt: count it, resync to the tail and return -EBADMSG.
 */
static inline int sub_lapped_or_corrupt(struct shmbus_ring_sub *s, uint64_t pos, bool overwrite) {
        uint64_t tail = tail_load_pos(s->ring, ACQUIRE);

        if (overwrite && sub_lapped(s, pos, &tail)) {
                sub_resync(s, tail, false);
                return 0;
        }
        sub_resync(s, tail, true);
        return -EBADMSG;
}

/*
 * Message number @low (its low 32 bits) has gone by, read or skipped as an
 * abort's pad: the numbers between the one we expected and it were lost. A
 * number behind the one expected changes nothing.
 */
static inline void sub_seq_passed(struct shmbus_ring_sub *s, uint32_t low) {
        uint64_t seq = seq_rebuild(s, low);

        if ((int64_t)(seq - s->next_seq) >= 0) {
                s->lost += seq - s->next_seq;
                s->next_seq = seq + 1;
        }
}

/*
 * Idle polling. A reader that has caught up polls the stamp where the next
 * record will begin; reading the claim word as well on every empty poll (to
 * tell empty from lapped or corrupt) pulled the claim word's line away from
 * the publisher on every poll, and its claim CAS then waited for the line
 * (docs/PERFORMANCE.md, issue 17).
 * So peek confirms emptiness against the claim word once, remembers the
 * stamp it saw, and answers later polls from the stamp alone while it has not
 * changed. That is exact: every claim from position pos writes a new stamp at
 * pos (its record's or its pad's) before anything else, so a stamp unchanged
 * since the tail was at pos means nothing was claimed there since. A stamp
 * that says "claimed at pos" (CLAIMED, or CLAIMED|PAD while a pad is being
 * written) is a claim in progress right where we wait: the tail is past pos
 * and the answer is -EAGAIN again, so that is answered from the stamp too,
 * once the empty ring has been confirmed at pos. Every
 * IDLE_RECHECK polls the claim word is read anyway, so that a payload that
 * happened to rewrite the old value cannot hide a lapping publisher for long.
 */
#define IDLE_RECHECK 64

static inline bool sub_idle(struct shmbus_ring_sub *s, uint64_t pos, uint64_t stamp) {
        bool in_progress = (stamp & ~SHMBUS_STAMP_PAD) == (pos | SHMBUS_STAMP_CLAIMED);

        if (s->idle_pos != pos || (s->idle_stamp != stamp && !in_progress))
                return false;
        return ++s->idle_polls % IDLE_RECHECK != 0;
}

static inline void sub_idle_set(struct shmbus_ring_sub *s, uint64_t pos, uint64_t stamp) {
        s->idle_pos = pos;
        s->idle_stamp = stamp;
        s->idle_polls = 0;
}

int shmbus__ring_peek(struct shmbus_ring_sub *s, const void **ret_data, size_t *ret_len) {
        struct shmbus_ring *r = s->ring;
        bool overwrite = s->lossy;

        if (s->borrowed)
                shmbus__ring_release(s);

        for (;;) {
                uint64_t pos = s->pos, off = pos & r->mask, tail, stamp, next;
                struct shmbus_rec *rec = rec_at(r, pos);
                uint32_t len, seq_low;

                stamp = atomic_load_explicit(&rec->stamp, ACQUIRE);
                if (!stamp_is_committed_at(stamp, pos)) {
                        if (sub_idle(s, pos, stamp))
                                return -EAGAIN;
                        /* Not committed here: empty, in progress, lapped or corrupt. */
                        tail = tail_load_pos_aligned(r, ACQUIRE);
                        if (tail == pos) {
                                sub_publish_pending(s);
                                sub_idle_set(s, pos, stamp);
                                return -EAGAIN;
                        }
                        if ((int64_t)(tail - pos) < 0) {
                                sub_resync(s, tail, true);
                                return -EBADMSG;
                        }
                        if (tail - pos > r->size) {
                                sub_resync(s, tail, false);
                                continue;
                        }
                        sub_publish_pending(s);
                        return -EAGAIN;
                }

                len = rec->len;
                seq_low = rec->seq;
                /* The origin mark is only on data records; a pad's len is never marked. */
                if (!(stamp & SHMBUS_STAMP_PAD)) {
                        s->borrow_marked = len & SHMBUS_REC_MARK;
                        len &= SHMBUS_REC_LEN_MASK;
                }
                next = pos + rec_size(len);
                if (off + SHMBUS_REC_HDR + (uint64_t)len > r->size) {
                        if (sub_lapped_or_corrupt(s, pos, overwrite) < 0)
                                return -EBADMSG;
                        continue;
                }

                if (stamp & SHMBUS_STAMP_PAD) {
                        if (overwrite && sub_lapped(s, pos, &tail)) {
                                sub_resync(s, tail, false);
                                continue;
                        }
                        if (stamp & SHMBUS_STAMP_SEQ)
                                sub_seq_passed(s, seq_low);
                        s->pos = next;
                        continue;
                }

                if (len > r->max_msg) {
                        if (sub_lapped_or_corrupt(s, pos, overwrite) < 0)
                                return -EBADMSG;
                        continue;
                }

                s->borrowed = true;
                s->borrow_pos = pos;
                s->borrow_next = next;
                s->borrow_len = len;
                s->borrow_seq = seq_low;
                *ret_data = rec + 1;
                *ret_len = len;
                return 0;
        }
}

/*
 * Release without telling anyone yet: the slot's counters and position wait
 * (sub_tell). Always inlined into release, which it was part of (pub_take).
 */
static inline __attribute__((always_inline)) int sub_consume(struct shmbus_ring_sub *s) {
        uint64_t tail;

        if (!s->borrowed)
                return -EINVAL;
        s->borrowed = false;

        if (s->lossy && sub_lapped(s, s->borrow_pos, &tail)) {
                /* What the caller read may be torn: it is lost, counted by the seq gap. */
                sub_resync(s, tail, false);
                return -ESTALE;
        }

        sub_seq_passed(s, (uint32_t)s->borrow_seq);
        s->received++;
        s->bytes += s->borrow_len;
        s->pos = s->borrow_next;
        return 0;
}

static inline void sub_tell(struct shmbus_ring_sub *s) {
        sub_store_counters(s);
        if (s->pos - s->published >= sub_publish_every(s->ring))
                sub_publish(s);
}

int shmbus__ring_release(struct shmbus_ring_sub *s) {
        int ret = sub_consume(s);

        if (ret < 0)
                return ret;
        sub_tell(s);
        return 0;
}

/*
 * Copy up to @max_n messages that are there now into @buf, back to back,
 * their lengths into @lens, without waiting; the counters and the position
 * are stored once for the batch. Returns the count, or when there is none:
 * -EAGAIN, -EMSGSIZE (the next message is longer than @buf_len; it stays) or
 * -EBADMSG (a corrupt record was skipped). A message overwritten while it was
 * copied (overwrite policy) is dropped and counted lost, like a receive does.
 */
int shmbus__ring_recv_batch(struct shmbus_ring_sub *s, void *buf, size_t buf_len, size_t *lens,
                            size_t max_n) {
        uint8_t *out = buf;
        size_t used = 0, k = 0;
        int ret = 0;

        while (k < max_n && k < INT_MAX) {
                const void *data;
                size_t len;

                ret = shmbus__ring_peek(s, &data, &len);
                if (ret < 0)
                        break;
                if (len > buf_len - used) {
                        shmbus__ring_unpeek(s);
                        ret = -EMSGSIZE;
                        break;
                }
                memcpy(out + used, data, len);
                if (sub_consume(s) < 0)
                        continue; /* overwritten meanwhile: dropped and counted lost */
                lens[k++] = len;
                used += len;
        }
        if (k == 0)
                return ret < 0 ? ret : -EAGAIN;
        sub_tell(s);
        return (int)k;
}

/* Give back a borrowed record unread: the next peek returns it again. */
void shmbus__ring_unpeek(struct shmbus_ring_sub *s) {
        s->borrowed = false;
}

bool shmbus__ring_sub_has_data(const struct shmbus_ring_sub *s) {
        return shmbus__ring_data_at(s->ring, s->pos);
}

/* Whether a reader at @pos has something to take (or to report): its waiters' condition. */
bool shmbus__ring_data_at(const struct shmbus_ring *r, uint64_t pos) {
        const struct shmbus_rec *rec = rec_at(r, pos);
        uint64_t stamp = atomic_load_explicit(&((struct shmbus_rec *)rec)->stamp, SEQCST);

        if (stamp_is_committed_at(stamp, pos))
                return true;
        /* Lapped or corrupt also count: peek has something to report. */
        return tail_load_pos_aligned(r, SEQCST) - pos > r->size;
}

static bool data_ready(void *ctx) {
        return shmbus__ring_sub_has_data(ctx);
}

int shmbus__ring_wait_data(struct shmbus_ring_sub *s, int64_t timeout_ns) {
        if (timeout_ns == 0)
                return shmbus__ring_sub_has_data(s) ? 0 : -ETIMEDOUT;
        return futex_sleep(&s->ring->ctl->data_futex, &s->ring->ctl->data_waiters,
                           &s->slot->sleeping, data_ready, s, timeout_ns);
}

void shmbus__ring_wake_all(struct shmbus_ring *r) {
        wake_readers(r);
        wake_publishers(r);
}

/* ---- recovery --------------------------------------------------------------------------- */

bool shmbus__ring_pending(const struct shmbus_ring *r, uint64_t pos, uint64_t *ret_stamp) {
        uint64_t stamp, tail;

        /* pos comes from a slot, which any member can scribble on: check before use. */
        *ret_stamp = 0;
        if (pos & (SHMBUS_REC_ALIGN - 1))
                return false;
        stamp = atomic_load_explicit(&rec_at(r, pos)->stamp, ACQUIRE);
        tail = tail_load_pos(r, ACQUIRE);
        *ret_stamp = stamp;
        if ((int64_t)(tail - pos) <= 0 || tail - pos > r->size)
                return false;
        return !stamp_is_committed_at(stamp, pos);
}

/*
 * The pid of a publisher whose active slot says it claims or holds pos, or 0.
 * A claim range is stored before the claim CAS, and the claim CAS happens
 * before the tail passes pos, so a caller that has seen pos pending (tail past
 * it, acquired) sees the owner's range here for as long as the owner's slot is
 * active. A dead owner's slot is released by the daemon's sweep.
 */
uint32_t shmbus__ring_claim_owner(const struct shmbus_ring *r, uint64_t pos) {
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                struct shmbus_pub_slot *slot = &r->pubs[i];
                uint64_t begin, end;
                uint32_t pid;

                if (atomic_load_explicit(&slot->state, SEQCST) != SHMBUS_SLOT_ACTIVE)
                        continue;
                begin = atomic_load_explicit(&slot->claim_begin, SEQCST);
                end = atomic_load_explicit(&slot->claim_end, SEQCST);
                if (pos - begin < end - begin) {
                        pid = atomic_load_explicit(&slot->pid, RELAXED);
                        return pid ? pid : UINT32_MAX;
                }
        }
        return 0;
}

/*
 * The first position in (pos, end) where a live publisher's claim begins, or
 * end. The pad of a dead claim whose header never came must stop there: the
 * live claimer may not have written its own stamp yet, and padding over it
 * would swallow a message about to be committed. A claim whose CAS preceded
 * our read of the tail has its range stored (release) before that CAS; one
 * that has been committed since shows its stamp to the scan that follows,
 * because seeing the owner's next range (release) means seeing that commit.
 */
static uint64_t live_claims_from(const struct shmbus_ring *r, uint64_t pos, uint64_t end) {
        for (uint32_t i = 0; i < r->max_pubs; i++) {
                struct shmbus_pub_slot *slot = &r->pubs[i];
                uint64_t begin;

                if (atomic_load_explicit(&slot->state, SEQCST) != SHMBUS_SLOT_ACTIVE)
                        continue;
                if (atomic_load_explicit(&slot->claim_end, SEQCST) ==
                    atomic_load_explicit(&slot->claim_begin, SEQCST))
                        continue; /* closed: its record shows its own stamp */
                begin = atomic_load_explicit(&slot->claim_begin, SEQCST) & ~(SHMBUS_REC_ALIGN - 1);
                if ((int64_t)(begin - pos) > 0 && (int64_t)(end - begin) > 0)
                        end = begin;
        }
        return end;
}

/*
 * Pad over a claim at pos that was never committed because its writer died.
 * Returns 1 if padded, 0 if there was nothing to do, -EBUSY if a publisher
 * with an active slot holds the claim (alive, so only slow or stopped: it will
 * commit, and padding under it would race with its plain stamp stores). The
 * caller must have seen the same stamp at pos for its whole timeout; see
 * docs/ORDERING.md "Unblock".
 */
int shmbus__ring_unblock(struct shmbus_ring *r, uint64_t pos) {
        struct shmbus_rec *rec = rec_at(r, pos);
        uint64_t stamp, tail, end, lap_end, len;

        assert(shmbus__ring_is_sane(r));
        if (!shmbus__ring_pending(r, pos, &stamp))
                return 0;
        if (shmbus__ring_claim_owner(r, pos) != 0)
                return -EBUSY;
        tail = tail_load_pos(r, ACQUIRE);
        lap_end = (pos | r->mask) + 1;

        if (stamp == (pos | SHMBUS_STAMP_CLAIMED)) {
                /*
                 * The writer got as far as its stamp, and most likely its len and
                 * seq. Believe len only if it ends where a record visibly begins
                 * (or at the tail); a writer that died between its stamp and its
                 * len left garbage there, and gets the headerless treatment below.
                 */
                len = rec->len & SHMBUS_REC_LEN_MASK;
                end = pos + rec_size(len);
                if (len <= r->max_msg && end <= lap_end && end <= tail &&
                    (end == tail ||
                     stamp_is_at(atomic_load_explicit(&rec_at(r, end)->stamp, ACQUIRE), end))) {
                        if (atomic_compare_exchange_strong_explicit(
                                    &rec->stamp, &stamp, pos | SHMBUS_STAMP_PAD | SHMBUS_STAMP_SEQ,
                                    SEQCST, RELAXED)) {
                                atomic_fetch_add_explicit(&r->ctl->unblocked, 1, RELAXED);
                                shmbus__ring_wake_all(r);
                                return 1;
                        }
                        return 0;
                }
        }

        /*
         * The writer died between its claim and its header (or the header is
         * garbage). Pad to the next record that is visibly there, the next open
         * claim, the end of the lap or the tail, replacing the whole header in
         * one 16-byte CAS against the stamp judged stuck. Whoever writes a
         * header changes its stamp first (claim), so a newer lap's writer that
         * got here meanwhile makes the CAS fail rather than have our length
         * mixed into its record; one that comes after overwrites our pad whole.
         * A record swallowed this way shows up as a seq gap, so readers count it
         * as lost: nothing vanishes silently.
         */
        end = tail < lap_end ? tail : lap_end;
        end = live_claims_from(r, pos, end & ~(SHMBUS_REC_ALIGN - 1));
        if ((int64_t)(end - pos) < (int64_t)SHMBUS_REC_ALIGN)
                end = pos + SHMBUS_REC_ALIGN; /* a header alone: the tail was not aligned */
        for (uint64_t q = pos + SHMBUS_REC_ALIGN; q < end; q += SHMBUS_REC_ALIGN) {
                uint64_t s = atomic_load_explicit(&rec_at(r, q)->stamp, ACQUIRE);

                if (stamp_is_at(s, q)) {
                        end = q;
                        break;
                }
        }
        shmbus_u128 now = cas16(rec_word(rec), 0, 0); /* a snapshot: writes only 0 over 0 */
        if ((uint64_t)now != stamp)
                return 0;
        shmbus_u128 pad =
                rec_word_make(pos | SHMBUS_STAMP_PAD, 0, (uint32_t)(end - pos - SHMBUS_REC_HDR));
        if (cas16(rec_word(rec), now, pad) != now)
                return 0;
        atomic_fetch_add_explicit(&r->ctl->unblocked, 1, RELAXED);
        shmbus__ring_wake_all(r);
        return 1;
}

/* Free a slot whose owner died before it became ACTIVE (or after release started). */
void shmbus__ring_slot_clear_pid(_Atomic uint32_t *pid_word, uint32_t dead_pid) {
        atomic_compare_exchange_strong_explicit(pid_word, &dead_pid, 0, SEQCST, RELAXED);
}

/*
 * Walk the records still in the ring, oldest first, from the oldest lap start
 * that has not been overwritten up to @to (a position at or before the tail),
 * calling @fn for each data record. For inspection (shmbus-cli tail -n): it
 * needs no slot and writes nothing. Each record is handed to @fn and then
 * validated; one overwritten meanwhile is reported to @fn as stale (it must
 * drop what it kept) and the walk moves to the next lap start.
 */
int shmbus__ring_walk(const struct shmbus_ring *r, uint64_t to, shmbus__walk_fn fn, void *ctx) {
        uint64_t tail = tail_load_pos(r, ACQUIRE);
        uint64_t pos = tail > r->size ? oldest_lap_start(r, tail) : 0;
        uint64_t tail_seq = tail_load_seq(r, ACQUIRE);
        int n = 0;

        assert(shmbus__ring_is_sane(r));
        if ((int64_t)(to - tail) > 0)
                to = tail;
        while ((int64_t)(to - pos) > 0) {
                struct shmbus_rec *rec = rec_at(r, pos);
                uint64_t stamp = atomic_load_explicit(&rec->stamp, ACQUIRE), now;
                uint32_t len = rec->len, low = rec->seq;
                bool pad = stamp & SHMBUS_STAMP_PAD;

                if (!pad)
                        len &= SHMBUS_REC_LEN_MASK;

                if (!stamp_is_committed_at(stamp, pos))
                        break; /* a claim in progress: nothing after it is readable yet */
                if ((pos & r->mask) + SHMBUS_REC_HDR + (uint64_t)len > r->size ||
                    (!pad && len > r->max_msg))
                        return -EBADMSG;
                if (!pad) {
                        uint64_t seq = tail_seq - (uint32_t)((uint32_t)tail_seq - low);
                        int ret = fn(ctx, rec + 1, len, seq, false);

                        if (ret < 0)
                                return ret;
                        atomic_thread_fence(ACQUIRE);
                        now = tail_load_pos(r, RELAXED);
                        if (now - pos > r->size) {
                                fn(ctx, NULL, 0, seq, true);
                                pos = oldest_lap_start(r, now);
                                continue;
                        }
                        n++;
                }
                pos += rec_size(len);
        }
        return n;
}

/* ---- waiters parked on a descriptor (notifier.c, docs/EVENTS.md) ------------------------- */

/*
 * Whether a claim ending at @end fits under the horizon now (seq_cst loads, as
 * space_ready), for the publisher of slot @self, whose own slot never counts.
 */
bool shmbus__ring_space_for(struct shmbus_ring *r, const struct shmbus_pub_slot *self,
                            uint64_t end) {
        return end - head_recompute(r, self) <= r->size;
}

/* Counted, then flagged: as futex_sleep announces a sleeper. */
void shmbus__ring_waiter_count_as(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping,
                                  uint32_t flag) {
        atomic_fetch_add_explicit(waiters, 1, SEQCST);
        /* Release: a publisher that takes a generation flag writes after our reset (notifier.c). */
        atomic_store_explicit(sleeping, flag, RELEASE);
}

void shmbus__ring_waiter_count(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping) {
        shmbus__ring_waiter_count_as(waiters, sleeping, 1);
}

void shmbus__ring_waiter_uncount(_Atomic uint32_t *waiters, _Atomic uint32_t *sleeping) {
        waiters_uncount(waiters, sleeping);
}

bool shmbus__ring_fence_heavy(void) {
        return fence_heavy();
}

bool shmbus__ring_ready_soon(bool (*ready)(void *ctx), void *ctx) {
        return ready_soon(ready, ctx);
}
