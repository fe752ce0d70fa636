// SPDX-License-Identifier: MIT
/*
 * The receive side of a QP: posting into its receive ring in the region
 * (initiators take from it), and flushing what is left when the QP fails.
 */
#include <errno.h>
#include <stdlib.h>

#include "counters.h"
#include "ivrdma.h"
#include "shm_atomic.h"

/* 'ticket': IVRDMA_RQ_TICKET of a receive taken from the ring, or 0. */
static void flush_one(struct ivrdma_qp *qp, uint64_t wr_id, uint64_t ticket)
{
	struct ivrdma_cqe e = {
	    .wr_id = wr_id,
	    .status = IBV_WC_WR_FLUSH_ERR,
	    .opcode = IBV_WC_RECV,
	    .qp_num = qp->vqp.qp.qp_num,
	    .rq_ticket = ticket,
	};

	ivrdma_qp_complete(qp, qp->recv_cq, &e);
}

int ivrdma_rq_done_init(struct ivrdma_context *ctx)
{
	ctx->rq_done = calloc(ctx->region.qps.entries, sizeof(*ctx->rq_done));
	return ctx->rq_done ? 0 : -ENOMEM;
}

/* A new QP in its slot: completions of the slot's earlier QP no longer count. */
void ivrdma_rq_done_reset(struct ivrdma_context *ctx, struct ivrdma_qp *qp)
{
	struct ivrdma_rq_done *d = &ctx->rq_done[qp->slot];

	/* ticket of "index -1": this seq, nothing taken */
	atomic_store_explicit(&d->ticket, IVRDMA_RQ_TICKET(qp->s->hdr.seq, (uint64_t)-1),
			      memory_order_release);
}

/*
 * A completion polled: if it consumed a receive of one of my QPs' own
 * rings, that QP's post_recv now knows the entry is free. The ticket
 * comes from the region; it only ever raises a lower bound, and a ticket
 * of the slot's earlier QP (other seq) is ignored.
 */
void ivrdma_rq_done_note(struct ivrdma_context *ctx, const struct ivrdma_cqe *e)
{
	uint64_t t = e->rq_ticket;
	uint32_t slot;
	_Atomic uint64_t *d;
	uint64_t cur;

	if (!t || !ivrdma_qpn_slot(ctx, e->qp_num, &slot))
		return;
	d = &ctx->rq_done[slot].ticket;
	cur = atomic_load_explicit(d, memory_order_relaxed);
	while (IVRDMA_RQ_TICKET_SEQ(cur) == IVRDMA_RQ_TICKET_SEQ(t) &&
	       ivrdma_rq_ahead(IVRDMA_RQ_TICKET_TAKEN(t), IVRDMA_RQ_TICKET_TAKEN(cur)) > 0)
		if (atomic_compare_exchange_weak_explicit(d, &cur, t, memory_order_release,
							  memory_order_relaxed))
			break;
}

static uint64_t polled_taken(struct ivrdma_qp *qp)
{
	uint64_t t = atomic_load_explicit(&to_ictx(qp->vqp.qp.context)->rq_done[qp->slot].ticket,
					  memory_order_acquire);

	return IVRDMA_RQ_TICKET_TAKEN(t);
}

int ivrdma_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct ivrdma_qp *qp = to_iqp(ibqp);
	int rc = 0;

	ivrdma_queue_lock(&qp->rq_lock);
	for (; wr; wr = wr->next) {
		if (!ivrdma_qp_own_rq(qp) || ibqp->state == IBV_QPS_RESET || wr->num_sge < 0 ||
		    (uint32_t)wr->num_sge > qp->cap.max_recv_sge) {
			rc = EINVAL;
		} else if (ibqp->state == IBV_QPS_ERR) {
			flush_one(qp, wr->wr_id, 0); /* as a real HCA: completes in error */
			IVRDMA_COUNT(qp, rq_posted, 1);
			continue;
		} else {
			ivrdma_rq_taken_at_least(&qp->rq, polled_taken(qp));
			rc = ivrdma_rq_post(&qp->rq, wr);
		}
		if (rc) {
			*bad_wr = wr;
			break;
		}
		IVRDMA_COUNT(qp, rq_posted, 1);
	}
	ivrdma_queue_unlock(&qp->rq_lock);
	return rc;
}

/*
 * Every receive still posted completes with IBV_WC_WR_FLUSH_ERR. An SRQ's
 * receives belong to the SRQ and stay for its other QPs.
 */
void ivrdma_qp_flush_rq(struct ivrdma_qp *qp)
{
	const struct ivrdma_rq_taker owner = {.region = qp->rq.region};
	union ivrdma_recv_wqe_buf u;
	uint64_t index;

	if (!ivrdma_qp_own_rq(qp))
		return;

	while (ivrdma_rq_take(&qp->rq, &owner, &u.w, &index, NULL, NULL) > 0)
		flush_one(qp, u.w.wr_id, IVRDMA_RQ_TICKET(qp->s->hdr.seq, index));
}
