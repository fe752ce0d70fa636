/* SPDX-License-Identifier: MIT */
/*
 * Atomics on plain fixed-width fields of the shared region.
 *
 * The layout uses plain integer types so that it reads the same from C,
 * C++ and the kernel. The rule: every access to the region that another
 * participant (or another thread) may make at the same time goes through
 * one of these, named by its memory order; the protocol it serves is
 * declared next to the field in ivrdma_layout.h. Process-private words
 * shared between threads use C11 <stdatomic.h> instead (typed _Atomic).
 *
 * relaxed: a word read or written whole, ordering nothing else. For
 *          fields a single writer sets before it publishes the object
 *          (read again after the acquire that found it), counters only
 *          ever read for display, and hints rechecked under a lock.
 * acquire / release: a publication. The writer fills what the word
 *          guards, then stores it with release; a reader that loads it
 *          with acquire sees all of that (ring indices, seq, owner, key).
 * acq_rel: read-modify-writes that both take and hand over (CAS of ring
 *          indices, flag words several participants change).
 * seq_cst: store-buffering pairs (Dekker): each side stores, then loads
 *          the other side's word, and one of them must see the other.
 */
#ifndef IVRDMA_SHM_ATOMIC_H
#define IVRDMA_SHM_ATOMIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- relaxed ------------------------------------------------------------ */

static inline uint8_t shm_load_relaxed8(const uint8_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint16_t shm_load_relaxed16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint32_t shm_load_relaxed32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint64_t shm_load_relaxed64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void shm_store_relaxed8(uint8_t *p, uint8_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void shm_store_relaxed16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void shm_store_relaxed32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void shm_store_relaxed64(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* --- acquire / release: publication ------------------------------------- */

static inline uint32_t shm_load_acquire32(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint64_t shm_load_acquire64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void shm_store_release32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void shm_store_release64(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* --- acq_rel: read-modify-write ----------------------------------------- */

/* Compare-and-swap; on failure *expected holds what was found (acquire). */
static inline bool shm_cas32(uint32_t *p, uint32_t *expected, uint32_t desired)
{
	return __atomic_compare_exchange_n(p, expected, desired, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static inline bool shm_cas64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
	return __atomic_compare_exchange_n(p, expected, desired, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static inline uint64_t shm_fetch_add64(uint64_t *p, uint64_t v)
{
	return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}

static inline uint32_t shm_fetch_or32(uint32_t *p, uint32_t v)
{
	return __atomic_fetch_or(p, v, __ATOMIC_ACQ_REL);
}

static inline uint32_t shm_fetch_and32(uint32_t *p, uint32_t v)
{
	return __atomic_fetch_and(p, v, __ATOMIC_ACQ_REL);
}

static inline uint32_t shm_fetch_sub32(uint32_t *p, uint32_t v)
{
	return __atomic_fetch_sub(p, v, __ATOMIC_ACQ_REL);
}

/* Stores v and returns the old value. */
static inline uint32_t shm_exchange32(uint32_t *p, uint32_t v)
{
	return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
}

/* --- seq_cst: store-buffering pairs ------------------------------------- */

/* Stores v and returns the old value, a full barrier: later loads stay after it. */
static inline uint64_t shm_exchange_seq_cst64(uint64_t *p, uint64_t v)
{
	return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}

/* Adds v and returns the old value, a full barrier: later loads stay after it. */
static inline uint32_t shm_fetch_add_seq_cst32(uint32_t *p, uint32_t v)
{
	return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

/*
 * A receive ring's entry, word by word: each word whole, relaxed. A
 * consumer copies an entry and only then claims it (CAS of cons), so its
 * copy may meet the producer rewriting an entry another consumer took;
 * the failed CAS throws such a copy away, but the bytes themselves must
 * be atomic for that race to be defined. Both pointers 8-byte aligned.
 */
static inline void shm_read_words_relaxed(uint64_t *dst, const uint64_t *src, size_t words)
{
	for (size_t i = 0; i < words; i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

static inline void shm_write_words_relaxed(uint64_t *dst, const uint64_t *src, size_t words)
{
	for (size_t i = 0; i < words; i++)
		__atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
}

/*
 * Zeroes a fresh ring word by word, relaxed: its chunks may have held a
 * ring freed a moment ago that a participant with a stale view still
 * reads (a peer that has not noticed, ivrdma_cq_maybe_ready's hint), and
 * those reads are atomic. 8-byte aligned.
 */
static inline void shm_zero_words_relaxed(uint64_t *dst, size_t words)
{
	for (size_t i = 0; i < words; i++)
		__atomic_store_n(&dst[i], 0, __ATOMIC_RELAXED);
}

/*
 * ThreadSanitizer does not model fences (GCC says so, -Wtsan). Ours order
 * atomics against atomics only: a store-buffering pair where each side
 * stores its word, fences, then loads the other's; or the release before
 * a copy's last byte, which a poller outside this library reads. No plain
 * data of ours is published through a fence alone, so TSan ignoring them
 * hides no race of ours and reports none falsely.
 */
#ifdef __SANITIZE_THREAD__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* A full barrier: earlier stores are visible before later loads. */
static inline void shm_fence_seq_cst(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Earlier loads are done before any later load or store (a seqlock reader's re-check). */
static inline void shm_fence_acquire(void)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
}

/* Earlier loads and stores are visible before any later store. */
static inline void shm_fence_release(void)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

#ifdef __SANITIZE_THREAD__
#pragma GCC diagnostic pop
#endif

#endif /* IVRDMA_SHM_ATOMIC_H */
