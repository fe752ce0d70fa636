// SPDX-License-Identifier: MIT
/*
 * Letting go of a suspending node: each context's part of migrate-begin
 * (the protocol is "Suspending a node" in ivrdma_layout.h; ivrdmad's part
 * is cm-daemon/migrate.c). Run by the context's event thread on a
 * control doorbell.
 *
 * Toward another node, the context fails its QPs connected there, as an
 * HCA fails QPs whose path went down. Its own node suspending means the
 * device is about to go: every QP fails, the registered pages become
 * private memory again (the application's buffers keep their bytes and
 * stay usable), and the context reports IBV_EVENT_DEVICE_FATAL. New
 * registrations and QPs are refused from then on (ivrdma_context_left).
 */
#include "counters.h"
#include "ivrdma.h"
#include "shm_atomic.h"

bool ivrdma_context_left(const struct ivrdma_context *ctx)
{
	return atomic_load_explicit(&ctx->left, memory_order_acquire);
}

/* My own node is suspending: let go of the region. Once per context. */
static void leave_region(struct ivrdma_context *ctx)
{
	if (atomic_exchange_explicit(&ctx->left, true, memory_order_acq_rel))
		return;
	ivrdma_qps_fail_toward(ctx, 0);
	/* Peers' executions into my memory that began before my QPs failed. */
	if (ivrdma_wait_executions(&ctx->region))
		ivrdma_dbg("a peer stayed in one execution: registered pages are copied anyway");
	ivrdma_spans_detach(ctx);
	ivrdma_post_async_event(ctx, IBV_EVENT_DEVICE_FATAL, 0);
}

void ivrdma_suspend_check(struct ivrdma_context *ctx)
{
	const struct ivrdma_region *r = &ctx->region;
	uint32_t seq = shm_load_acquire32(&ivrdma_region_header(r)->suspend_seq);

	if (seq == ctx->suspend_seen)
		return;
	for (uint32_t i = 0; i < r->nodes.entries; i++) {
		struct ivrdma_node *n = ivrdma_region_node(r, i);

		if (shm_load_acquire32(&n->state) != IVRDMA_NODE_SUSPENDING)
			continue;
		if (i == ctx->node)
			leave_region(ctx);
		else
			ivrdma_qps_fail_toward(ctx, n->lid);
	}
	ctx->suspend_seen = seq;
	ivrdma_ctx_record_ack(ctx, seq);
}
