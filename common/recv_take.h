/* SPDX-License-Identifier: MIT */
/*
 * Taking a receive from another participant's ring, on record: the
 * intent a taker keeps in its QP slot around its CAS on the ring's cons,
 * the successor's check on the taker before it, and ivrdmad's reading of
 * a dead taker's intent (ivrdma_layout.h, "A producer that dies").
 */
#ifndef IVRDMA_RECV_TAKE_H
#define IVRDMA_RECV_TAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "region.h"
#include "shm_atomic.h"

/* Who takes: 'id' goes into the cons word (IVRDMA_RQ_CONS). */
struct ivrdma_rq_taker {
	const struct ivrdma_region *region; /* where the takers' intents are */
	struct ivrdma_cqe_intent *intent;   /* NULL: the ring's owner, which keeps none */
	uint32_t id;			    /* its QP slot index + 1; 0: the ring's owner */
};

/* Which ring a take is from: IVRDMA_RING_OF_QP or _OF_SRQ, and that slot's seq. */
struct ivrdma_ring_id {
	uint32_t ring, seq;
};

/*
 * The completion's identity, before the first take: written while the
 * intent is IDLE (no successor reads it then).
 */
void ivrdma_take_prepare(struct ivrdma_cqe_intent *in, uint32_t cq, uint32_t cq_seq,
			 uint32_t qp_num, uint32_t opcode, struct ivrdma_ring_id ring);

/*
 * Before CASing cons from w to the word this returns: the taker before
 * this one is on record, and my intent says TAKING index(w) with wr_id.
 */
uint64_t ivrdma_take_begin(const struct ivrdma_rq_taker *t, struct ivrdma_ring_id ring, uint64_t w,
			   uint64_t wr_id);

/* After the CAS: TAKEN if it succeeded ('held'), else nothing; IDLE when giving up. */
void ivrdma_take_held(const struct ivrdma_rq_taker *t);
void ivrdma_take_none(const struct ivrdma_rq_taker *t);

/*
 * My intent's word in another state, its generation and receive index
 * kept (a successor's CAS cannot hit a later take). The word is mine: a
 * successor only ever writes TAKEN over TAKING, as I would.
 */
static inline void ivrdma_intent_to(struct ivrdma_cqe_intent *in, enum ivrdma_intent_state state)
{
	uint64_t w = shm_load_relaxed64(&in->word);

	shm_store_release64(&in->word, IVRDMA_INTENT_AS(w, state));
}

/*
 * The successor's duty alone, for a CAS of cons from w that is not a take
 * (the owner dropping every receive at reset).
 */
void ivrdma_take_record_predecessor(const struct ivrdma_region *r, struct ivrdma_ring_id ring,
				    uint64_t w);

/*
 * ivrdmad: did the dead QP slot 'idx', whose intent 'word' (read before)
 * says TAKING, take its receive? True, with *word now TAKEN, if so.
 */
bool ivrdma_take_settle(const struct ivrdma_region *r, uint32_t idx, uint64_t *word);

/* The CQE's rq_ticket of the receive an intent holds (IVRDMA_RQ_TICKET, 0 from an SRQ). */
uint64_t ivrdma_take_rq_ticket(const struct ivrdma_cqe_intent *in);

#endif
