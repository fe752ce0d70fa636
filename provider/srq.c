// SPDX-License-Identifier: MIT
/*
 * Shared receive queues: a receive ring in a region chunk, named by an SRQ
 * slot, from which every QP created on the SRQ takes its receives. As with
 * a QP's own ring, the owner is the one producer and remote initiators are
 * the consumers (MPMC-consumer protocol, ivrdma_layout.h).
 *
 * The limit event: the owner notices the crossing itself, in its own verbs
 * calls (poll_cq, query_srq, modify_srq) and in its event thread, which
 * the initiator that takes a receive below the armed limit wakes
 * (srq_limit_check in qp_tx.c). The event then goes to async_fd as the
 * kernel's record would (ivrdma_post_async_event).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t n = 1;

	while (n < v)
		n <<= 1;
	return n;
}

int ivrdma_srq_view(const struct ivrdma_region *r, uint32_t idx, uint32_t owner,
		    struct ivrdma_rq_view *v, uint32_t *pd_handle, uint32_t **limit)
{
	struct ivrdma_srq_slot *s = ivrdma_table_entry(r, &r->srqs, idx);

	if (!s || shm_load_acquire32(&s->hdr.owner) != owner)
		return -ENOENT;
	*pd_handle = shm_load_relaxed32(&s->pd_handle);
	*limit = &s->limit;
	return ivrdma_rq_view(
	    r, &s->rq, &s->prod, &s->cons,
	    (struct ivrdma_ring_id){IVRDMA_RING_OF_SRQ(idx), shm_load_acquire32(&s->hdr.seq)}, v);
}

static void link_srq(struct ivrdma_context *ctx, struct ivrdma_srq *srq)
{
	pthread_mutex_lock(&ctx->srq_lock);
	srq->next = ctx->srqs;
	ctx->srqs = srq;
	pthread_mutex_unlock(&ctx->srq_lock);
}

/* As ivrdma_qps_hold, for the context's SRQs: their locks and ring chunks. */
void ivrdma_srqs_hold(struct ivrdma_context *ctx, bool hold, ivrdma_chunk_run_fn *run, void *arg)
{
	if (hold)
		pthread_mutex_lock(&ctx->srq_lock);
	for (struct ivrdma_srq *srq = ctx->srqs; srq; srq = srq->next) {
		if (hold) {
			ivrdma_queue_lock(&srq->lock);
			run(arg, srq->first_chunk, srq->nr_chunks);
		} else {
			ivrdma_queue_unlock(&srq->lock);
		}
	}
	if (!hold)
		pthread_mutex_unlock(&ctx->srq_lock);
}

static void unlink_srq(struct ivrdma_context *ctx, struct ivrdma_srq *srq)
{
	pthread_mutex_lock(&ctx->srq_lock);
	for (struct ivrdma_srq **pp = &ctx->srqs; *pp; pp = &(*pp)->next)
		if (*pp == srq) {
			*pp = srq->next;
			break;
		}
	pthread_mutex_unlock(&ctx->srq_lock);
}

static void free_srq(struct ivrdma_context *ctx, struct ivrdma_srq *srq)
{
	ivrdma_ring_free(ctx, srq->first_chunk, srq->nr_chunks);
	if (srq->s)
		ivrdma_slot_free(ctx, &ctx->region.srqs, srq->slot);
	free(srq);
}

/* The ring in the region, described in the slot for initiators. */
static int make_ring(struct ivrdma_context *ctx, struct ivrdma_srq *srq, uint32_t max_wr)
{
	struct ivrdma_rq_desc *d = &srq->s->rq;
	uint32_t n = pow2_at_least(max_wr ? max_wr : 1);
	uint32_t stride = (uint32_t)IVRDMA_RQ_STRIDE(srq->max_sge);

	if (!ivrdma_ring_alloc(ctx, (uint64_t)n * stride, &srq->first_chunk, &srq->nr_chunks))
		return ENOMEM;
	d->ring_offset = ivrdma_chunk_offset(&ctx->region, srq->first_chunk);
	d->nr_entries = n;
	d->stride = stride;
	d->max_sge = srq->max_sge;
	return ivrdma_rq_view(
		   &ctx->region, d, &srq->s->prod, &srq->s->cons,
		   (struct ivrdma_ring_id){IVRDMA_RING_OF_SRQ(srq->slot), srq->s->hdr.seq},
		   &srq->rq)
		   ? EPROTO
		   : 0;
}

struct ibv_srq *ivrdma_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr)
{
	struct ivrdma_context *ctx = to_ictx(pd->context);
	struct ivrdma_srq *srq;
	int64_t idx;
	int rc;

	/* srq_limit is irrelevant here (ibv_create_srq(3)): modify_srq arms a limit. */
	if (attr->attr.max_wr > IVRDMA_MAX_WR || attr->attr.max_sge > IVRDMA_MAX_SGE)
		return ivrdma_fail_null(EINVAL);
	srq = calloc(1, sizeof(*srq));
	if (!srq)
		return ivrdma_fail_null(ENOMEM);
	ivrdma_queue_lock_init(&srq->lock);
	srq->max_sge = attr->attr.max_sge ? attr->attr.max_sge : 1;
	idx = ivrdma_slot_alloc(ctx, &ctx->region.srqs);
	if (idx < 0) {
		free_srq(ctx, srq);
		return ivrdma_fail_null(ENOMEM);
	}
	srq->slot = (uint32_t)idx;
	srq->s = ivrdma_table_entry(&ctx->region, &ctx->region.srqs, srq->slot);
	srq->s->pd_handle = pd->handle;
	rc = make_ring(ctx, srq, attr->attr.max_wr);
	if (rc) {
		free_srq(ctx, srq);
		return ivrdma_fail_null(rc);
	}
	attr->attr.max_wr = srq->rq.mask + 1;
	attr->attr.max_sge = srq->max_sge;
	pthread_mutex_init(&srq->vsrq.srq.mutex, NULL);
	pthread_cond_init(&srq->vsrq.srq.cond, NULL);
	srq->vsrq.srq.context = pd->context;
	srq->vsrq.srq.pd = pd;
	srq->vsrq.srq.srq_context = attr->srq_context;
	srq->vsrq.srq.handle = srq->slot;
	srq->vsrq.srq_type = IBV_SRQT_BASIC;
	link_srq(ctx, srq);
	return &srq->vsrq.srq;
}

struct ibv_srq *ivrdma_create_srq_ex(struct ibv_context *context, struct ibv_srq_init_attr_ex *attr)
{
	const uint32_t known = IBV_SRQ_INIT_ATTR_PD | IBV_SRQ_INIT_ATTR_TYPE |
			       IBV_SRQ_INIT_ATTR_XRCD | IBV_SRQ_INIT_ATTR_CQ;
	struct ibv_srq_init_attr a = {.srq_context = attr->srq_context, .attr = attr->attr};
	enum ibv_srq_type type =
	    attr->comp_mask & IBV_SRQ_INIT_ATTR_TYPE ? attr->srq_type : IBV_SRQT_BASIC;
	struct ibv_srq *srq;
	int rc;

	if (!(attr->comp_mask & IBV_SRQ_INIT_ATTR_PD) || !attr->pd)
		return ivrdma_fail_null(EINVAL);
	if ((attr->comp_mask & ~known) || (type != IBV_SRQT_BASIC && type != IBV_SRQT_XRC))
		return ivrdma_fail_null(EOPNOTSUPP); /* tag matching: no */
	srq = ivrdma_create_srq(attr->pd, &a);
	if (!srq)
		return NULL;
	attr->attr = a.attr;
	rc = type == IBV_SRQT_XRC ? ivrdma_xrc_srq_init(to_isrq(srq), attr) : 0;
	if (rc) {
		ivrdma_destroy_srq(srq);
		return ivrdma_fail_null(rc);
	}
	return srq;
}

int ivrdma_destroy_srq(struct ibv_srq *ibsrq)
{
	struct ivrdma_srq *srq = to_isrq(ibsrq);
	struct ivrdma_context *ctx = to_ictx(ibsrq->context);

	if (atomic_load(&srq->users))
		return EBUSY;
	unlink_srq(ctx, srq);
	ivrdma_xrc_srq_fini(srq);
	if (shm_exchange32(&srq->s->limit, 0))
		atomic_fetch_sub(&ctx->nr_armed_srqs, 1);
	ivrdma_events_settle(ctx, (uintptr_t)ibsrq, &srq->async_posted, &ibsrq->mutex, &ibsrq->cond,
			     &ibsrq->events_completed);
	free_srq(ctx, srq);
	return 0;
}

int ivrdma_post_srq_recv(struct ibv_srq *ibsrq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct ivrdma_srq *srq = to_isrq(ibsrq);
	int rc = 0;

	ivrdma_queue_lock(&srq->lock);
	for (; wr; wr = wr->next) {
		rc = ivrdma_rq_post(&srq->rq, wr);
		if (rc) {
			*bad_wr = wr;
			break;
		}
	}
	ivrdma_queue_unlock(&srq->lock);
	return rc;
}

/* Receives posted and not yet taken by an initiator. */
static uint32_t outstanding(const struct ivrdma_srq *srq)
{
	uint64_t c = IVRDMA_RQ_CONS_INDEX(shm_load_acquire64(srq->rq.cons));

	return (uint32_t)ivrdma_rq_ahead(shm_load_acquire64(srq->rq.prod), c);
}

/* Fires the armed limit once if the SRQ has fallen below it. */
static void check_limit(struct ivrdma_context *ctx, struct ivrdma_srq *srq)
{
	uint32_t limit = shm_load_acquire32(&srq->s->limit);

	if (!limit || outstanding(srq) >= limit)
		return;
	/* Disarming wins the race against modify_srq and other checkers: one event. */
	if (!shm_cas32(&srq->s->limit, &limit, 0))
		return;
	atomic_fetch_sub(&ctx->nr_armed_srqs, 1);
	ivrdma_post_object_event(ctx, IBV_EVENT_SRQ_LIMIT_REACHED, (uintptr_t)&srq->vsrq.srq,
				 &srq->async_posted);
}

void ivrdma_srq_check_limits(struct ivrdma_context *ctx)
{
	pthread_mutex_lock(&ctx->srq_lock);
	for (struct ivrdma_srq *srq = ctx->srqs; srq; srq = srq->next)
		check_limit(ctx, srq);
	pthread_mutex_unlock(&ctx->srq_lock);
}

/*
 * IBV_SRQ_LIMIT arms the limit event. Resizing (IBV_SRQ_MAX_WR) is not
 * offered (no IBV_DEVICE_SRQ_RESIZE): initiators hold the ring's geometry
 * from the time their QP connected.
 */
int ivrdma_modify_srq(struct ibv_srq *ibsrq, struct ibv_srq_attr *attr, int mask)
{
	struct ivrdma_srq *srq = to_isrq(ibsrq);
	struct ivrdma_context *ctx = to_ictx(ibsrq->context);
	uint32_t old;

	if (mask & ~(IBV_SRQ_MAX_WR | IBV_SRQ_LIMIT) || (mask & IBV_SRQ_MAX_WR))
		return EINVAL;
	if (!(mask & IBV_SRQ_LIMIT))
		return 0;
	if (attr->srq_limit > srq->rq.mask + 1)
		return EINVAL;
	old = shm_exchange32(&srq->s->limit, attr->srq_limit);
	if (!old && attr->srq_limit)
		atomic_fetch_add(&ctx->nr_armed_srqs, 1);
	else if (old && !attr->srq_limit)
		atomic_fetch_sub(&ctx->nr_armed_srqs, 1);
	pthread_mutex_lock(&ctx->srq_lock);
	check_limit(ctx, srq); /* already below: the event is due now */
	pthread_mutex_unlock(&ctx->srq_lock);
	return 0;
}

int ivrdma_query_srq(struct ibv_srq *ibsrq, struct ibv_srq_attr *attr)
{
	struct ivrdma_srq *srq = to_isrq(ibsrq);
	struct ivrdma_context *ctx = to_ictx(ibsrq->context);

	pthread_mutex_lock(&ctx->srq_lock);
	check_limit(ctx, srq);
	pthread_mutex_unlock(&ctx->srq_lock);
	attr->max_wr = srq->rq.mask + 1;
	attr->max_sge = srq->max_sge;
	attr->srq_limit = shm_load_acquire32(&srq->s->limit);
	return 0;
}
