// SPDX-License-Identifier: MIT
/*
 * A receive taken from another participant's ring stays on record from
 * before the CAS that takes it until its completion is published, so
 * that ivrdmad can finish it if the taker dies at any instruction
 * (ivrdma_layout.h, "A producer that dies"). The CAS names the taker in
 * the cons word; the next taker makes sure the one it follows recorded
 * its take; ivrdmad reads the two together.
 */
#include "cq_producer.h"
#include "recv_take.h"
#include "shm_atomic.h"

void ivrdma_take_prepare(struct ivrdma_cqe_intent *in, uint32_t cq, uint32_t cq_seq,
			 uint32_t qp_num, uint32_t opcode, struct ivrdma_ring_id ring)
{
	/*
	 * A successor reads these under a TAKING word and checks the word
	 * again after (ivrdma_take_record_predecessor): a seqlock's writer,
	 * whose earlier word store must be visible before these.
	 */
	shm_fence_release();
	shm_store_relaxed32(&in->cq, cq);
	shm_store_relaxed32(&in->cq_seq, cq_seq);
	shm_store_relaxed32(&in->qp_num, qp_num);
	shm_store_relaxed32(&in->opcode, opcode);
	shm_store_relaxed32(&in->ring, ring.ring);
	shm_store_relaxed32(&in->ring_seq, ring.seq);
}

/* Does intent 'in', whose word was 'word', take from this ring? Checked as a seqlock reader. */
static bool takes_from(struct ivrdma_cqe_intent *in, uint64_t word, struct ivrdma_ring_id ring)
{
	bool same = shm_load_relaxed32(&in->ring) == ring.ring &&
		    shm_load_relaxed32(&in->ring_seq) == ring.seq;

	shm_fence_acquire();
	return same && shm_load_relaxed64(&in->word) == word;
}

void ivrdma_take_record_predecessor(const struct ivrdma_region *r, struct ivrdma_ring_id ring,
				    uint64_t w)
{
	uint32_t taker = IVRDMA_RQ_CONS_TAKER(w);
	struct ivrdma_qp_slot *qs;
	uint64_t word;

	if (!taker || !(qs = ivrdma_table_entry(r, &r->qps, taker - 1)))
		return;
	/* cons at c + 1 came from that taker's CAS, after its TAKING at c: seen here. */
	word = shm_load_acquire64(&qs->intent.word);
	if (IVRDMA_INTENT_STATE(word) != IVRDMA_INTENT_TAKING ||
	    IVRDMA_INTENT_INDEX(word) != IVRDMA_RQ_CONS_INDEX(w - 1) ||
	    !takes_from(&qs->intent, word, ring))
		return;
	/* Between its CAS and its TAKEN store (or dead there): TAKEN for it. */
	shm_cas64(&qs->intent.word, &word, IVRDMA_INTENT_AS(word, IVRDMA_INTENT_TAKEN));
}

uint64_t ivrdma_take_begin(const struct ivrdma_rq_taker *t, struct ivrdma_ring_id ring, uint64_t w,
			   uint64_t wr_id)
{
	uint64_t c = IVRDMA_RQ_CONS_INDEX(w), prev;

	if (IVRDMA_RQ_CONS_TAKER(w) != t->id)
		ivrdma_take_record_predecessor(t->region, ring, w);
	if (t->intent) {
		prev = shm_load_relaxed64(&t->intent->word);
		shm_store_relaxed64(&t->intent->wr_id, wr_id);
		shm_store_release64(
		    &t->intent->word,
		    IVRDMA_INTENT_WORD(IVRDMA_INTENT_TAKING, IVRDMA_INTENT_GEN(prev) + 1, c));
	}
	return IVRDMA_RQ_CONS(c + 1, t->id);
}

void ivrdma_take_held(const struct ivrdma_rq_taker *t)
{
	if (!t->intent)
		return;
	ivrdma_cq_test_stop_at(IVRDMA_TEST_STOP_TOOK);
	ivrdma_intent_to(t->intent, IVRDMA_INTENT_TAKEN);
	ivrdma_cq_test_stop_at(IVRDMA_TEST_STOP_TAKEN);
}

void ivrdma_take_none(const struct ivrdma_rq_taker *t)
{
	if (t->intent)
		ivrdma_intent_to(t->intent, IVRDMA_INTENT_IDLE);
}

/* A slot still holds the object of generation seq that an intent named. */
static bool still_object(const struct ivrdma_obj_hdr *h, uint32_t seq)
{
	return shm_load_acquire32(&h->owner) && shm_load_acquire32(&h->seq) == seq;
}

/* The cons word of the ring an intent names, if that QP or SRQ still lives; else NULL. */
static uint64_t *ring_cons(const struct ivrdma_region *r, struct ivrdma_ring_id id)
{
	uint32_t idx = id.ring & ~IVRDMA_RING_SRQ_BIT;

	if (id.ring & IVRDMA_RING_SRQ_BIT) {
		struct ivrdma_srq_slot *s = ivrdma_table_entry(r, &r->srqs, idx);

		return s && still_object(&s->hdr, id.seq) ? &s->cons : NULL;
	}
	struct ivrdma_qp_slot *q = ivrdma_table_entry(r, &r->qps, idx);

	return q && still_object(&q->hdr, id.seq) ? &q->rq_cons : NULL;
}

bool ivrdma_take_settle(const struct ivrdma_region *r, uint32_t idx, uint64_t *word)
{
	struct ivrdma_qp_slot *qs = ivrdma_table_entry(r, &r->qps, idx);
	struct ivrdma_ring_id id;
	uint64_t *cons, w, c = IVRDMA_INTENT_INDEX(*word);

	if (!qs)
		return false;
	id.ring = shm_load_relaxed32(&qs->intent.ring);
	id.seq = shm_load_relaxed32(&qs->intent.ring_seq);
	cons = ring_cons(r, id);
	if (!cons)
		return false; /* the ring went with its QP or SRQ: so did the receive */
	w = shm_load_acquire64(cons);
	if (IVRDMA_RQ_CONS_INDEX(w) == IVRDMA_RQ_CONS_INDEX(c + 1) &&
	    IVRDMA_RQ_CONS_TAKER(w) == idx + 1)
		*word = IVRDMA_INTENT_AS(*word, IVRDMA_INTENT_TAKEN);
	else if (ivrdma_rq_ahead(IVRDMA_RQ_CONS_INDEX(w), c + 1) > 0)
		*word = shm_load_acquire64(&qs->intent.word); /* a successor's doing, if TAKEN */
	return IVRDMA_INTENT_STATE(*word) == IVRDMA_INTENT_TAKEN;
}

uint64_t ivrdma_take_rq_ticket(const struct ivrdma_cqe_intent *in)
{
	if (in->ring & IVRDMA_RING_SRQ_BIT)
		return 0;
	return IVRDMA_RQ_TICKET(in->ring_seq, IVRDMA_INTENT_INDEX(in->word));
}
