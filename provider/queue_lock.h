/* SPDX-License-Identifier: MIT */
/*
 * The queues' locks: a QP's send and receive queues, a CQ's consumer side,
 * an SRQ. Process-private words, never in the region: no other process
 * can hold or corrupt one.
 *
 * Taken with one exchange (acquire) and given back with a store (release):
 * a post pays one locked instruction for its lock, where glibc's mutex
 * pays one at each end and a call (an RDMA write's post costs 0.84-0.89x
 * with it in bench/post_cost). The price is that a release wakes
 * no one: a waiter spins briefly, then yields, then sleeps in short steps
 * (queue_lock.c). Holders are posts, polls and transitions, all short,
 * and suspend.c, which holds every queue of a context while it swaps the
 * region: its waiters sleep meanwhile instead of spinning.
 */
#ifndef IVRDMA_QUEUE_LOCK_H
#define IVRDMA_QUEUE_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>

struct ivrdma_queue_lock {
	atomic_uint held; /* 1 while a thread holds it */
};

void ivrdma_queue_lock_wait(struct ivrdma_queue_lock *l);

static inline void ivrdma_queue_lock_init(struct ivrdma_queue_lock *l)
{
	atomic_init(&l->held, 0);
}

/* True if the lock was free and is now the caller's. */
static inline bool ivrdma_queue_trylock(struct ivrdma_queue_lock *l)
{
	return !atomic_exchange_explicit(&l->held, 1, memory_order_acquire);
}

static inline void ivrdma_queue_lock(struct ivrdma_queue_lock *l)
{
	if (!ivrdma_queue_trylock(l))
		ivrdma_queue_lock_wait(l);
}

static inline void ivrdma_queue_unlock(struct ivrdma_queue_lock *l)
{
	atomic_store_explicit(&l->held, 0, memory_order_release);
}

#endif
