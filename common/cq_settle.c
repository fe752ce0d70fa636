// SPDX-License-Identifier: MIT
/*
 * ivrdmad's side of a producer that died with a receive completion under
 * way (ivrdma_layout.h, "A producer that dies"): the completion is
 * written, as an error, in the ticket the dead producer held or in a new
 * one, so the CQ's owner never waits on a hole and the receive ends in
 * exactly one completion. The provider's side is cq_producer.c.
 */
#include <infiniband/verbs.h>

#include "cq_producer.h"
#include "owner_tag.h"
#include "recv_take.h"
#include "shm_atomic.h"

/*
 * A copy of the intent, read once: the dead cannot change it any more (a
 * successor may still turn TAKING into TAKEN: ivrdma_take_settle reads
 * that). False if it holds no receive.
 */
static bool intent_copy(const struct ivrdma_region *r, uint32_t idx,
			const struct ivrdma_qp_slot *qs, struct ivrdma_cqe_intent *in)
{
	struct ivrdma_cqe_intent *s = (struct ivrdma_cqe_intent *)&qs->intent;
	uint32_t state;

	in->word = shm_load_acquire64(&s->word);
	state = IVRDMA_INTENT_STATE(in->word);
	if (state == IVRDMA_INTENT_IDLE || state > IVRDMA_INTENT_TAKING ||
	    (state == IVRDMA_INTENT_TAKING && !ivrdma_take_settle(r, idx, &in->word)))
		return false;
	in->cq = shm_load_relaxed32(&s->cq);
	in->cq_seq = shm_load_relaxed32(&s->cq_seq);
	in->qp_num = shm_load_relaxed32(&s->qp_num);
	in->opcode = shm_load_relaxed32(&s->opcode);
	in->ticket = shm_load_relaxed64(&s->ticket);
	in->wr_id = shm_load_relaxed64(&s->wr_id);
	in->ring = shm_load_relaxed32(&s->ring);
	in->ring_seq = shm_load_relaxed32(&s->ring_seq);
	return true;
}

/* The intent's CQ if it still lives and is not the dead's own (reclaimed with it). */
static bool target_cq(const struct ivrdma_region *r, const struct ivrdma_cqe_intent *in,
		      const struct ivrdma_gone *g, struct ivrdma_cq_view *v)
{
	struct ivrdma_cq_slot *s = ivrdma_table_entry(r, &r->cqs, in->cq);
	uint32_t owner;

	if (!s)
		return false;
	owner = shm_load_acquire32(&s->hdr.owner);
	if (!owner || ivrdma_tag_gone(r, owner, g))
		return false;
	return ivrdma_cq_view(r, in->cq, owner, v) == 0 && v->seq == in->cq_seq;
}

/*
 * Where the completion goes: the ticket the dead claimed, or one it won
 * and had not claimed yet, else a new one. A push result, or -1: the
 * dead had published it itself.
 */
static int settle(struct ivrdma_cq_view *v, const struct ivrdma_cqe_intent *in, uint32_t id,
		  const struct ivrdma_cqe *e)
{
	uint32_t state = IVRDMA_INTENT_STATE(in->word);
	uint64_t p = in->ticket;
	int rc;

	if (state != IVRDMA_INTENT_TAKEN) {
		rc = ivrdma_cq_finish(v, p, ivrdma_cq_claim_seq(id, p), e);
		if (rc >= 0 || state == IVRDMA_INTENT_CLAIMED)
			return rc;
		/* Won by the dead, or by a live producer not yet claimed: that one reserves again.
		 */
		if (ivrdma_cq_won(v, p)) {
			rc = ivrdma_cq_finish(v, p, IVRDMA_CQ_FREE, e);
			if (rc >= 0)
				return rc;
		}
	}
	return ivrdma_cq_push_daemon(v, e);
}

static bool settle_qp(const struct ivrdma_region *r, uint32_t idx, const struct ivrdma_gone *g,
		      uint16_t lid, ivrdma_cq_wake_fn *wake, void *arg)
{
	const struct ivrdma_qp_slot *qs = ivrdma_table_entry(r, &r->qps, idx);
	struct ivrdma_cqe_intent in;
	struct ivrdma_cq_view v;
	struct ivrdma_cqe e = {0};
	int rc;

	if (!qs || !ivrdma_tag_gone(r, shm_load_acquire32(&qs->hdr.owner), g) ||
	    !intent_copy(r, idx, qs, &in) || !target_cq(r, &in, g, &v))
		return false;
	e.wr_id = in.wr_id;
	e.status = IBV_WC_GENERAL_ERR;
	e.opcode = in.opcode;
	e.sender_died = 1;
	e.qp_num = in.qp_num;
	e.src_qp = shm_load_relaxed32(&qs->qpn);
	e.slid = lid;
	e.rq_ticket = ivrdma_take_rq_ticket(&in);
	rc = settle(&v, &in, idx + 1, &e);
	if (rc == IVRDMA_CQ_PUSH_WAKE)
		wake(arg, ivrdma_tag_peer(r, v.owner));
	return rc > 0;
}

uint32_t ivrdma_cq_settle(const struct ivrdma_region *r, const struct ivrdma_gone *g, uint16_t lid,
			  ivrdma_cq_wake_fn *wake, void *arg)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->qps.entries; i++)
		n += settle_qp(r, i, g, lid, wake, arg);
	return n;
}
