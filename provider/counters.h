/* SPDX-License-Identifier: MIT */
/*
 * Counters of what QPs and contexts did (see ivrdma_qp_counters in
 * ivrdma_layout.h): the hot-path increment, and the context record.
 */
#ifndef IVRDMA_COUNTERS_H
#define IVRDMA_COUNTERS_H

#include "ivrdma.h"

/*
 * One counter of a QP: the private running total grows, and the region's
 * copy is stored, never read back: a plain store to a line only the owner
 * writes, where an atomic add would be a locked read-modify-write.
 * The caller holds the lock of the counter's group.
 */
static inline void ivrdma_count(uint64_t *mine, uint64_t *shared, uint64_t n)
{
	*mine += n;
	shm_store_relaxed64(shared, *mine);
}

#define IVRDMA_COUNT(qp, field, n) ivrdma_count(&(qp)->tally.field, &(qp)->s->counters.field, (n))

/* A QP joins its context's record; on destroy its totals stay in the record. */
void ivrdma_counters_qp_created(struct ivrdma_context *ctx, struct ivrdma_qp *qp);
void ivrdma_counters_qp_destroyed(struct ivrdma_context *ctx, struct ivrdma_qp *qp);

/* A receive completion polled from 'cq' (under its lock). */
void ivrdma_count_recv(struct ivrdma_context *ctx, struct ivrdma_cq *cq,
		       const struct ivrdma_cqe *e);

#endif /* IVRDMA_COUNTERS_H */
