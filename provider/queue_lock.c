// SPDX-License-Identifier: MIT
/*
 * A queue lock's waiter (queue_lock.h): the holder's release is a plain
 * store that wakes no one, so the waiter watches the word. It spins
 * first, for the common case of a post or poll on another CPU that is
 * about to end; then yields, for a holder that shares its CPU; then
 * sleeps in steps of SLEEP_NS, for a holder that stays (suspend.c), so
 * that a long hold costs its waiters no CPU.
 */
#include <sched.h>
#include <time.h>

#include "queue_lock.h"

#define SPINS	 128
#define YIELDS	 64
#define SLEEP_NS 50000L

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Returns with the lock held. */
void ivrdma_queue_lock_wait(struct ivrdma_queue_lock *l)
{
	const struct timespec step = {.tv_nsec = SLEEP_NS};
	unsigned int tries = 0;

	do {
		/* Reads until it looks free, so waiters do not pull the line from the holder. */
		while (atomic_load_explicit(&l->held, memory_order_relaxed)) {
			if (tries < SPINS)
				cpu_relax();
			else if (tries < SPINS + YIELDS)
				sched_yield();
			else
				nanosleep(&step, NULL);
			if (tries < SPINS + YIELDS)
				tries++;
		}
	} while (!ivrdma_queue_trylock(l));
}
