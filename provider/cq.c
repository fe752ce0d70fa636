// SPDX-License-Identifier: MIT
/*
 * Completion queues: a ring of CQEs in a region chunk, named by a CQ slot.
 * Any initiator in the region produces into it (see ivrdma_cq_push); only
 * this context consumes. Polling also drives my own send queues that wait
 * on RNR or retry timers, as the event thread does every millisecond
 * while any of them waits (events.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "ivrdma.h"
#include "shm_atomic.h"

static void release(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	ivrdma_cq_rings_free(ctx, cq);
	ivrdma_slot_free(ctx, &ctx->region.cqs, cq->slot);
	free(cq);
}

/* The slot's ring words, epoch 0; the fields producers find it by go last. */
static int publish_ring(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	struct ivrdma_cq_slot *slot = ivrdma_table_entry(&ctx->region, &ctx->region.cqs, cq->slot);
	uint64_t off = ivrdma_chunk_offset(&ctx->region, cq->rd->first_chunk);
	uint32_t n = cq->rd->mask + 1;

	shm_store_relaxed64(&slot->ring_offset, off);
	shm_store_relaxed32(&slot->nr_entries, n);
	shm_store_release64(&slot->geometry,
			    ivrdma_cq_geometry(0, off, (uint32_t)__builtin_ctz(n)));
	return ivrdma_cq_view(&ctx->region, cq->slot, ctx->owner_tag, &cq->view) ? EPROTO : 0;
}

struct ibv_cq *ivrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector)
{
	struct ivrdma_context *ctx = to_ictx(context);
	struct ivrdma_cq *cq;
	int64_t idx;
	int rc;

	if (cqe < 1 || cqe > IVRDMA_MAX_CQE || comp_vector < 0 ||
	    comp_vector >= context->num_comp_vectors)
		return ivrdma_fail_null(EINVAL);
	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return ivrdma_fail_null(ENOMEM);
	ivrdma_queue_lock_init(&cq->lock);
	idx = ivrdma_slot_alloc(ctx, &ctx->region.cqs);
	if (idx < 0) {
		free(cq);
		return ivrdma_fail_null(ENOMEM);
	}
	cq->slot = (uint32_t)idx;
	cq->rd = cq->last = ivrdma_cq_ring_new(ctx, ivrdma_cq_entries(cqe), 0);
	rc = cq->rd ? publish_ring(ctx, cq) : ENOMEM;
	if (!rc)
		rc = ivrdma_events_add_cq(ctx, cq);
	if (rc) {
		release(ctx, cq);
		return ivrdma_fail_null(rc);
	}
	ivrdma_cq_set_geometry(cq);
	ivrdma_cq_direct_publish(ctx, cq, channel);
	cq->vcq.cq.context = context;
	cq->vcq.cq.cqe = (int)cq->rd->mask + 1;
	cq->vcq.cq.handle = cq->slot;
	return &cq->vcq.cq;
}

int ivrdma_destroy_cq(struct ibv_cq *ibcq)
{
	struct ivrdma_cq *cq = to_icq(ibcq);

	if (atomic_load(&cq->users))
		return EBUSY;
	ivrdma_pd_put(cq->parent);
	ivrdma_cq_direct_withdraw(to_ictx(ibcq->context), cq);
	ivrdma_events_forget_cq(to_ictx(ibcq->context), cq);
	ivrdma_events_settle(to_ictx(ibcq->context), (uintptr_t)ibcq, &cq->async_posted,
			     &ibcq->mutex, &ibcq->cond, &ibcq->async_events_completed);
	release(to_ictx(ibcq->context), cq);
	return 0;
}

static void to_wc(const struct ivrdma_cqe *e, struct ibv_wc *wc)
{
	memset(wc, 0, sizeof(*wc));
	wc->wr_id = e->wr_id;
	wc->status = (enum ibv_wc_status)e->status;
	wc->opcode = (enum ibv_wc_opcode)e->opcode;
	wc->vendor_err = e->sender_died ? IVRDMA_VERR_SENDER_DIED : 0;
	wc->byte_len = e->byte_len;
	wc->imm_data = e->imm_data;
	wc->qp_num = e->qp_num;
	wc->src_qp = e->src_qp;
	wc->wc_flags = e->wc_flags;
	wc->pkey_index = e->pkey_index;
	wc->slid = e->slid;
	wc->sl = e->sl;
	wc->dlid_path_bits = e->dlid_path_bits;
}

int ivrdma_poll_cq(struct ibv_cq *ibcq, int ne, struct ibv_wc *wc)
{
	struct ivrdma_cq *cq = to_icq(ibcq);
	struct ivrdma_context *ctx = to_ictx(ibcq->context);
	int n = 0;

	if (atomic_load_explicit(&ctx->nr_pending, memory_order_relaxed))
		ivrdma_progress(ctx);
	if (atomic_load_explicit(&ctx->nr_armed_srqs, memory_order_relaxed))
		ivrdma_srq_check_limits(ctx);
	if (!ivrdma_cq_maybe_ready(cq))
		return 0;
	ivrdma_queue_lock(&cq->lock);
	while (n < ne) {
		const struct ivrdma_cqe *e =
		    ivrdma_cq_ready(cq->rd->ring, cq->rd->mask, ivrdma_cq_cons(cq));

		if (!e)
			break;
		to_wc(e, &wc[n++]);
		ivrdma_rq_done_note(ctx, e);
		if (e->opcode & IBV_WC_RECV) /* send completions count when written */
			ivrdma_count_recv(ctx, cq, e);
		ivrdma_cq_advance(cq);
	}
	if (n)
		ivrdma_cq_hand_back(cq->view.slot, ivrdma_cq_cons(cq));
	ivrdma_queue_unlock(&cq->lock);
	/* A receive that failed (length, protection) fails its QP, as the responder's HCA would. */
	for (int i = 0; i < n; i++)
		if (wc[i].status != IBV_WC_SUCCESS && wc[i].status != IBV_WC_WR_FLUSH_ERR &&
		    (wc[i].opcode & IBV_WC_RECV))
			ivrdma_qp_recv_failed(ctx, wc[i].qp_num,
					      wc[i].vendor_err == IVRDMA_VERR_SENDER_DIED);
	return n;
}
