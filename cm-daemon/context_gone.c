// SPDX-License-Identifier: MIT
/*
 * A context in a VM that ended: what its own tag holds is taken back
 * while the VM stays (ivrdma_layout.h, the context record's comment).
 *
 * RELEASED (its process ended with the context open: the guest driver
 * stored it) is a death, handled as a host peer's (server.c,
 * peer_disconnect): the receive completions its QPs had under way are
 * written first, then the context is CLOSED (no longer alive to anyone),
 * the executions into its memory end, its tag's slots and chunks are
 * freed, and every peer's control vector rings, so that the QPs connected
 * to it fail. A context that closed (CLOSED) left only what it did not
 * destroy, and took no completion with it; peers ring when it left QPs.
 */
#include "cq_producer.h"
#include "daemon.h"
#include "log.h"
#include "shm_atomic.h"

void context_gone(struct daemon *d, uint32_t idx, bool died)
{
	const struct ivrdma_region *r = &d->region;
	struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, idx);
	const struct ivrdma_gone g = {
	    .peer = -1, .context_tag = ivrdma_context_tag(idx, shm_load_acquire32(&c->hdr.seq))};
	const struct ivrdma_node *node = ivrdma_region_node(r, shm_load_relaxed32(&c->node));
	struct ivrdma_reclaim_count got;
	uint32_t settled = 0;

	if (died)
		settled = ivrdma_cq_settle(r, &g, node ? node->lid : 0, server_wake_cq_owner, d);
	shm_store_release32(&c->state, IVRDMA_CTX_CLOSED);
	exec_drain(d, &g);
	ivrdma_region_reclaim(r, &g, &got);
	/* Their other ends hear of it: QPs connected to the context's fail. */
	if (died || got.qps)
		server_ring_control_all(d);
	if (!died && !got.chunks && !got.qps && !got.cqs && !got.srqs && !got.mrs)
		return;
	log_info("context %u (pid %u on node %s) %s; reclaimed %u chunks, %u QPs, %u CQs, %u SRQs, "
		 "%u MRs; %u receive completions written for it",
		 idx, shm_load_relaxed32(&c->pid),
		 directory_node_name(d, shm_load_relaxed32(&c->node)),
		 died ? "ended with its process" : "closed", got.chunks, got.qps, got.cqs, got.srqs,
		 got.mrs, settled);
}
