// SPDX-License-Identifier: MIT
/*
 * Resizing a CQ while producers anywhere in the region push into it.
 *
 * Nothing is copied: the resize makes a new ring current with the next
 * epoch (ring.c's ivrdma_cq_switch; the protocol is "Which ring" and
 * "Resizing" at struct ivrdma_cqe in ivrdma_layout.h), and the old ring
 * stays until this consumer has taken every ticket it was given. A
 * producer may be between reserving a ticket of the old ring and
 * publishing it for as long as it likes (descheduled), so copying its
 * entry could copy a hole; draining waits for it as any poll does. So no
 * completion is lost or duplicated, and a QP may use the CQ meanwhile.
 *
 * The owner keeps its rings in a list, oldest first: cq->rd is the ring
 * cons is in, cq->last the current one. All under cq->lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "ivrdma.h"
#include "shm_atomic.h"

/* Entries of a ring for 'cqe' completions: a power of two, 16 at least. */
uint32_t ivrdma_cq_entries(int cqe)
{
	uint32_t n = 16;

	while (n < (uint32_t)cqe)
		n <<= 1;
	return n;
}

/* A zeroed ring of n entries for the epoch starting at 'base'. */
struct ivrdma_cq_ring *ivrdma_cq_ring_new(struct ivrdma_context *ctx, uint32_t n, uint64_t base)
{
	struct ivrdma_cq_ring *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->ring = ivrdma_ring_alloc(ctx, (uint64_t)n * sizeof(struct ivrdma_cqe), &r->first_chunk,
				    &r->nr_chunks);
	if (!r->ring) {
		free(r);
		return NULL;
	}
	r->mask = n - 1;
	r->base = base;
	return r;
}

static void ring_free(struct ivrdma_context *ctx, struct ivrdma_cq_ring *r)
{
	ivrdma_ring_free(ctx, r->first_chunk, r->nr_chunks);
	free(r);
}

void ivrdma_cq_rings_free(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	while (cq->rd) {
		struct ivrdma_cq_ring *r = cq->rd;

		cq->rd = r->next;
		ring_free(ctx, r);
	}
	cq->last = NULL;
}

/*
 * cons reached the end of the ring being drained: every ticket of it was
 * published and taken, so no producer will touch it again. On to the next
 * ring, at its epoch's first ticket.
 */
void ivrdma_cq_drained(struct ivrdma_cq *cq)
{
	struct ivrdma_context *ctx = to_ictx(cq->vcq.cq.context);

	while (cq->rd->next && ivrdma_cq_cons(cq) == cq->rd->end) {
		struct ivrdma_cq_ring *old = cq->rd;

		cq->rd = old->next;
		atomic_store_explicit(&cq->cons, cq->rd->base, memory_order_relaxed);
		ring_free(ctx, old);
	}
	ivrdma_cq_set_geometry(cq);
}

/* Completions in the CQ not yet polled: in the rings to drain, then the current one. */
static uint64_t unpolled(const struct ivrdma_cq *cq, uint64_t prod)
{
	uint64_t n = 0, c = ivrdma_cq_cons(cq);

	for (const struct ivrdma_cq_ring *r = cq->rd; r->next; r = r->next) {
		n += r->end - c;
		c = r->next->base;
	}
	return n + (prod - c);
}

/* The new ring becomes current; the old one drains. Under cq->lock. */
static void switch_to(struct ivrdma_context *ctx, struct ivrdma_cq *cq, struct ivrdma_cq_ring *nr)
{
	struct ivrdma_cq_slot *slot = cq->view.slot;
	uint64_t off = ivrdma_chunk_offset(&ctx->region, nr->first_chunk);
	uint32_t log2_n = (uint32_t)__builtin_ctz(nr->mask + 1);

	/* For readers that only look (ivrdma_layout.h): producers use geometry. */
	shm_store_relaxed64(&slot->ring_offset, off);
	shm_store_relaxed32(&slot->nr_entries, nr->mask + 1);
	cq->last->end =
	    ivrdma_cq_switch(slot, ivrdma_cq_geometry(ivrdma_cq_epoch(nr->base), off, log2_n));
	cq->last->next = nr;
	cq->last = nr;
	if (ivrdma_cq_cons(cq) == cq->rd->end) { /* nothing left to drain */
		ivrdma_cq_drained(cq);
		ivrdma_cq_hand_back(slot, ivrdma_cq_cons(cq));
	}
}

/*
 * As an HCA resizes: the CQ keeps its completions and its QPs, and new
 * ones go to a ring of the new size. Refused (EINVAL) when the
 * completions not yet polled would not fit, as libibverbs documents.
 */
int ivrdma_resize_cq(struct ibv_cq *ibcq, int cqe)
{
	struct ivrdma_context *ctx = to_ictx(ibcq->context);
	struct ivrdma_cq *cq = to_icq(ibcq);
	struct ivrdma_cq_ring *nr = NULL;
	uint32_t n;
	int rc = 0;

	if (cqe < 1 || cqe > IVRDMA_MAX_CQE)
		return EINVAL;
	if (ivrdma_context_left(ctx))
		return EIO; /* the region is no longer ours to allocate from */
	n = ivrdma_cq_entries(cqe);
	ivrdma_queue_lock(&cq->lock);
	if (unpolled(cq, shm_load_acquire64(&cq->view.slot->prod)) > n)
		rc = EINVAL;
	else if (!(nr = ivrdma_cq_ring_new(
		       ctx, n,
		       ivrdma_cq_epoch_base((uint16_t)(ivrdma_cq_epoch(cq->last->base) + 1)))))
		rc = ENOMEM;
	if (!rc) {
		switch_to(ctx, cq, nr);
		ibcq->cqe = (int)n;
	}
	ivrdma_queue_unlock(&cq->lock);
	return rc;
}
