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

static uint32_t ring_entries(int cqe)
{
	uint32_t n = 16;

	while (n < (uint32_t)cqe)
		n <<= 1;
	return n;
}

static void release(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	ivrdma_ring_free(ctx, cq->first_chunk, cq->nr_chunks);
	ivrdma_slot_free(ctx, &ctx->region.cqs, cq->slot);
	pthread_spin_destroy(&cq->lock);
	free(cq);
}

struct ibv_cq *ivrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector)
{
	struct ivrdma_context *ctx = to_ictx(context);
	struct ivrdma_cq_slot *slot;
	struct ivrdma_cq *cq;
	uint32_t n;
	int64_t idx;

	if (cqe < 1 || cqe > IVRDMA_MAX_CQE || comp_vector < 0 ||
	    comp_vector >= context->num_comp_vectors)
		return ivrdma_fail_null(EINVAL);
	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return ivrdma_fail_null(ENOMEM);
	pthread_spin_init(&cq->lock, PTHREAD_PROCESS_PRIVATE);
	idx = ivrdma_slot_alloc(ctx, &ctx->region.cqs);
	if (idx < 0) {
		pthread_spin_destroy(&cq->lock);
		free(cq);
		return ivrdma_fail_null(ENOMEM);
	}
	cq->slot = (uint32_t)idx;
	n = ring_entries(cqe);
	slot = ivrdma_table_entry(&ctx->region, &ctx->region.cqs, cq->slot);
	if (!ivrdma_ring_alloc(ctx, (uint64_t)n * sizeof(struct ivrdma_cqe), &cq->first_chunk,
			       &cq->nr_chunks)) {
		release(ctx, cq);
		return ivrdma_fail_null(ENOMEM);
	}
	slot->ring_offset = ivrdma_chunk_offset(&ctx->region, cq->first_chunk);
	shm_store_release32(&slot->nr_entries, n);
	if (ivrdma_cq_view(&ctx->region, cq->slot, ctx->owner_tag, &cq->view)) {
		release(ctx, cq);
		return ivrdma_fail_null(EPROTO);
	}
	ivrdma_cq_set_geometry(cq);
	if (ivrdma_events_add_cq(ctx, cq)) {
		release(ctx, cq);
		return ivrdma_fail_null(ENOMEM);
	}
	cq->vcq.cq.context = context;
	cq->vcq.cq.cqe = (int)n;
	cq->vcq.cq.handle = cq->slot;
	return &cq->vcq.cq;
}

/* Moves the unpolled CQEs; tickets (and so seq values) carry on unchanged. */
static void move_cqes(const struct ivrdma_cq_view *from, struct ivrdma_cqe *to, uint32_t to_mask,
		      uint64_t cons, uint64_t prod)
{
	for (uint64_t t = cons; t < prod; t++)
		memcpy(&to[t & to_mask], &from->ring[t & from->mask], sizeof(*to));
}

/*
 * Resizing moves the ring. Remote initiators keep the geometry they read
 * when a QP of ours connected, so a CQ moves only while no QP uses it
 * (EBUSY otherwise, rather than a producer writing into a freed ring).
 */
int ivrdma_resize_cq(struct ibv_cq *ibcq, int cqe)
{
	struct ivrdma_context *ctx = to_ictx(ibcq->context);
	struct ivrdma_cq *cq = to_icq(ibcq);
	struct ivrdma_cq_slot *slot = cq->view.slot;
	struct ivrdma_cq_view moved;
	uint32_t n, first, count;
	struct ivrdma_cqe *ring;
	uint64_t prod;
	int rc = 0;

	if (cqe < 1 || cqe > IVRDMA_MAX_CQE)
		return EINVAL;
	n = ring_entries(cqe);
	pthread_spin_lock(&cq->lock);
	prod = shm_load_acquire64(&slot->prod);
	if (atomic_load(&cq->users))
		rc = EBUSY;
	else if (prod - ivrdma_cq_cons(cq) > n)
		rc = EINVAL; /* the CQEs waiting to be polled would not fit */
	else if (!(ring = ivrdma_ring_alloc(ctx, (uint64_t)n * sizeof(*ring), &first, &count)))
		rc = ENOMEM;
	if (rc)
		goto out;
	move_cqes(&cq->view, ring, n - 1, ivrdma_cq_cons(cq), prod);
	shm_store_relaxed64(&slot->ring_offset, ivrdma_chunk_offset(&ctx->region, first));
	shm_store_release32(&slot->nr_entries, n);
	if (ivrdma_cq_view(&ctx->region, cq->slot, ctx->owner_tag, &moved)) {
		/* Someone scribbled on our slot: keep the ring we had. */
		shm_store_relaxed64(&slot->ring_offset,
				    ivrdma_chunk_offset(&ctx->region, cq->first_chunk));
		shm_store_release32(&slot->nr_entries, cq->view.mask + 1);
		ivrdma_ring_free(ctx, first, count);
		rc = EPROTO;
		goto out;
	}
	ivrdma_ring_free(ctx, cq->first_chunk, cq->nr_chunks);
	/* Not the slot: req_notify_cq reads it without the lock, and it stays. */
	cq->view.ring = moved.ring;
	cq->view.mask = moved.mask;
	atomic_store_explicit(&cq->view.cons_seen, 0, memory_order_relaxed);
	ivrdma_cq_set_geometry(cq);
	cq->first_chunk = first;
	cq->nr_chunks = count;
	ibcq->cqe = (int)n;
out:
	pthread_spin_unlock(&cq->lock);
	return rc;
}

int ivrdma_destroy_cq(struct ibv_cq *ibcq)
{
	struct ivrdma_cq *cq = to_icq(ibcq);

	if (atomic_load(&cq->users))
		return EBUSY;
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
	wc->vendor_err = e->vendor_err;
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
	pthread_spin_lock(&cq->lock);
	while (n < ne) {
		const struct ivrdma_cqe *e = ivrdma_cq_ready(&cq->view, ivrdma_cq_cons(cq));

		if (!e)
			break;
		to_wc(e, &wc[n++]);
		ivrdma_rq_done_note(ctx, e);
		if (e->opcode & IBV_WC_RECV) /* send completions count when written */
			ivrdma_count_recv(ctx, cq, e);
		ivrdma_cq_advance(cq);
	}
	if (n)
		ivrdma_cq_hand_back(&cq->view, ivrdma_cq_cons(cq));
	pthread_spin_unlock(&cq->lock);
	/* A receive that failed (length, protection) fails its QP, as the responder's HCA would. */
	for (int i = 0; i < n; i++)
		if (wc[i].status != IBV_WC_SUCCESS && wc[i].status != IBV_WC_WR_FLUSH_ERR &&
		    (wc[i].opcode & IBV_WC_RECV))
			ivrdma_qp_recv_failed(ctx, wc[i].qp_num);
	return n;
}
