// SPDX-License-Identifier: MIT
/*
 * The mover's side of moving a registered range's bytes under peers'
 * executions (the protocol is ivrdma_mr_flags' comment, ivrdma_layout.h;
 * the initiator's side is exec_enter() in qp_tx.c and the flags read_slot()
 * in mr.c loads with each key it translates).
 *
 * mr_move.c flags the MRs of the spans it is about to copy, waits here
 * until no execution that may have seen them clear is still running, and
 * clears the flags once the MRs point at their new bytes.
 */
#include <errno.h>
#include <sched.h>

#include "ivrdma.h"
#include "shm_atomic.h"

/* How long a peer may stay in one execution before a move gives up. */
#define EXEC_WAIT_NS (10ull * 1000 * 1000 * 1000)

void ivrdma_mr_set_moving(struct ivrdma_mr *mr, bool moving)
{
	shm_store_release32(&mr->s->flags, moving ? IVRDMA_MR_MOVING : 0u);
}

/* Until the QP slot's execution that was under way at 'seq' ends: false on timeout. */
static bool execution_ends(const struct ivrdma_qp_slot *s, uint32_t owner, uint64_t seq,
			   uint64_t deadline)
{
	while (shm_load_acquire64(&s->exec_seq) == seq &&
	       shm_load_acquire32(&s->hdr.owner) == owner) {
		if (ivrdma_now_ns() > deadline)
			return false;
		sched_yield();
	}
	return true;
}

/*
 * After the MRs to move are flagged: waits until every execution running
 * anywhere on the region has ended (new ones see the flags). 0, or
 * EBUSY if a QP stayed in one execution for EXEC_WAIT_NS (its process
 * stopped or died mid-way, and ivrdmad has not reclaimed it yet).
 * Called without any lock an execution takes (mr_lock is one only for
 * unmoved MRs, which use mrs_lock instead: see mr.c).
 */
int ivrdma_wait_executions(const struct ivrdma_region *r)
{
	uint64_t deadline = ivrdma_now_ns() + EXEC_WAIT_NS;

	shm_fence_seq_cst(); /* the flags' stores before the loads below */
	for (uint32_t i = 0; i < r->qps.entries; i++) {
		const struct ivrdma_qp_slot *s = ivrdma_table_entry(r, &r->qps, i);
		uint32_t owner = shm_load_acquire32(&s->hdr.owner);
		uint64_t seq = shm_load_acquire64(&s->exec_seq);

		if (owner && (seq & 1) && !execution_ends(s, owner, seq, deadline)) {
			ivrdma_dbg("QP %u stayed in one execution for %llu s: registered bytes "
				   "that must move for a new registration stay where they are",
				   i + IVRDMA_QPN_BASE, EXEC_WAIT_NS / 1000000000ull);
			return EBUSY;
		}
	}
	return 0;
}
