/* SPDX-License-Identifier: MIT */
/*
 * The producer's side of a CQ ring (ivrdma_layout.h, "A completion queue
 * entry"): every provider pushes with it, and ivrdmad finishes with it
 * what a dead producer left half done ("A producer that dies").
 */
#ifndef IVRDMA_CQ_PRODUCER_H
#define IVRDMA_CQ_PRODUCER_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "region.h"

/*
 * A CQ as a producer reaches it. The ring is found on every push from the
 * slot's geometry words (a resize may move it: ivrdma_layout.h), and a
 * word validated once is remembered, so the common push validates nothing.
 * Several threads may push through one view (the owner's own QPs).
 */
struct ivrdma_cq_view {
	struct ivrdma_cq_slot *slot;
	const struct ivrdma_region *region;
	uint32_t index;		    /* the slot's index in the CQ table */
	uint32_t owner, seq;	    /* the slot's, when the view was made */
	_Atomic uint64_t geometry;  /* the geometry word last validated */
	_Atomic uint64_t cons_seen; /* slot->cons as last read; never ahead of it */
};

int ivrdma_cq_view(const struct ivrdma_region *r, uint32_t idx, uint32_t owner,
		   struct ivrdma_cq_view *v);

/* ivrdma_cq_push() results: 0 is failure, so `if (!push(...))` reads right. */
enum {
	IVRDMA_CQ_PUSH_FULL = 0,
	IVRDMA_CQ_PUSHED = 1,
	IVRDMA_CQ_PUSH_WAKE = 2, /* pushed, and the CQ's owner must be woken for an event */
	/*
	 * Not pushed: the CQ was destroyed meanwhile (its owner tore down
	 * after the message arrived, as after an HCA's ACK): nothing to do.
	 */
	IVRDMA_CQ_PUSH_GONE = 3,
};

/* The device clock of completion timestamps (IVRDMA_CQ_TIMESTAMPS): ns, CLOCK_REALTIME. */
uint64_t ivrdma_device_clock_ns(void);

/* A push into a CQ of my own context: no intent, claimed anonymously. */
int ivrdma_cq_push(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e);

/*
 * A push into another participant's CQ by the QP whose slot holds 'in',
 * claiming as 'id' (the QP slot index + 1); 'in' ends IDLE.
 */
int ivrdma_cq_push_intent(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e,
			  struct ivrdma_cqe_intent *in, uint32_t id);

/* ivrdmad's pushes (cq_settle.c): with its own claim id. */
int ivrdma_cq_push_daemon(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e);

/*
 * ivrdmad claims ticket p's entry from the seq 'expect' (IVRDMA_CQ_FREE:
 * the entry's free value) and publishes 'e' in it: a push result, or -1
 * if the entry did not hold 'expect'.
 */
#define IVRDMA_CQ_FREE UINT64_MAX
int ivrdma_cq_finish(struct ivrdma_cq_view *v, uint64_t p, uint64_t expect,
		     const struct ivrdma_cqe *e);

/* Has some producer CASed prod past p, in p's epoch? */
bool ivrdma_cq_won(struct ivrdma_cq_view *v, uint64_t p);

/*
 * Test only (tests/provider/test_cqe_death.c): a producer stops its
 * process (SIGSTOP) at one of these points of a completion into another
 * participant's CQ, so that the test can kill it there. 0, the default,
 * is off: one relaxed load and a predictable branch.
 */
enum ivrdma_test_stop {
	IVRDMA_TEST_STOP_TAKEN = 1,    /* the receive is taken */
	IVRDMA_TEST_STOP_RESERVED = 2, /* after the CAS on prod */
	IVRDMA_TEST_STOP_CLAIMED = 3,  /* after the claim */
	IVRDMA_TEST_STOP_TOOK = 4,     /* right after the CAS that takes the receive */
	IVRDMA_TEST_STOP_FIRED = 5,    /* the CQE fired the arming; its owner not yet told */
	IVRDMA_TEST_STOP_SENDING = 6,  /* EVENT taken off, the direct event not yet sent */
};
extern atomic_int ivrdma_cq_test_stop;

static inline void ivrdma_cq_test_stop_at(enum ivrdma_test_stop at)
{
	if (__builtin_expect(atomic_load_explicit(&ivrdma_cq_test_stop, memory_order_relaxed), 0) &&
	    atomic_load_explicit(&ivrdma_cq_test_stop, memory_order_relaxed) == (int)at)
		raise(SIGSTOP);
}

/*
 * ivrdmad, before reclaiming what died (a peer, or a context in a VM; on
 * a node of LID 'lid'): finishes each receive completion its QPs had
 * under way. 'wake' is told the peer to ring IVRDMA_VEC_COMPLETION for.
 * Returns how many it wrote.
 */
struct ivrdma_gone;
typedef void ivrdma_cq_wake_fn(void *arg, int peer);
uint32_t ivrdma_cq_settle(const struct ivrdma_region *r, const struct ivrdma_gone *g, uint16_t lid,
			  ivrdma_cq_wake_fn *wake, void *arg);

#endif
