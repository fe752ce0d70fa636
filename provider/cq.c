// SPDX-License-Identifier: MIT
/*
 * Completion queues: a ring of CQEs in a region chunk, named by a CQ slot.
 * Any initiator in the region produces into it (see ivrdma_cq_push); only
 * this context consumes. Polling also drives my own send queues that wait
 * on RNR or retry timers: there is no progress thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	__atomic_store_n(&slot->nr_entries, n, __ATOMIC_RELEASE);
	if (ivrdma_cq_view(&ctx->region, cq->slot, ctx->owner_tag, &cq->view)) {
		release(ctx, cq);
		return ivrdma_fail_null(EPROTO);
	}
	cq->vcq.cq.context = context;
	cq->vcq.cq.cqe = (int)n;
	cq->vcq.cq.handle = cq->slot;
	return &cq->vcq.cq;
}

int ivrdma_destroy_cq(struct ibv_cq *ibcq)
{
	struct ivrdma_cq *cq = to_icq(ibcq);

	if (atomic_load(&cq->users))
		return EBUSY;
	ivrdma_events_forget_cq(to_ictx(ibcq->context), cq);
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
	pthread_spin_lock(&cq->lock);
	while (n < ne) {
		struct ivrdma_cqe *e = &cq->view.ring[cq->cons & cq->view.mask];

		if (shm_load_acquire64(&e->seq) != cq->cons + 1)
			break;
		to_wc(e, &wc[n++]);
		cq->cons++;
	}
	if (n)
		shm_store_release64(&cq->view.slot->cons, cq->cons); /* entries back to producers */
	pthread_spin_unlock(&cq->lock);
	return n;
}
