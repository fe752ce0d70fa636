// SPDX-License-Identifier: MIT
/*
 * Before a gone peer's (or a gone context's) chunks and slots are
 * reclaimed, the executions other participants had under way when it
 * went end first.
 *
 * An initiator checks that its target is alive as each WR starts
 * (target_ready() in provider/qp_tx.c), inside an execution (exec_seq
 * odd, ivrdma_mr_flags in ivrdma_layout.h), then copies into the target's
 * chunks. A target that dies in between would have its chunks handed to
 * the next allocator while that copy still lands in them: another
 * participant's memory overwritten (provider.reclaim_race). The peer is
 * GONE (the context CLOSED) in the region before this runs, so an
 * execution that starts now sees it and touches nothing of its; one already running is
 * waited for, as a move waits (provider/mr_moving.c), each side storing
 * before it loads the other's word.
 *
 * The wait blocks the loop, bounded by DRAIN_WAIT_MS for the whole drain:
 * a copy takes milliseconds. An execution that outlasts it (its process
 * stopped, or killed inside a VM before its context was found released)
 * is logged and remembered, and not waited for again while its exec_seq
 * stays the same. Owners whose process is gone are not waited for: their
 * executions ended with them.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>

#include "daemon.h"
#include "log.h"
#include "shm_atomic.h"

#define DRAIN_WAIT_MS 1000

/*
 * Can 'owner' still be executing: a live owner (not a context whose
 * process ended) whose peer's process exists?
 */
static bool may_run(const struct daemon *d, uint32_t owner)
{
	int id = ivrdma_tag_peer(&d->region, owner);
	struct ivrdma_peer *p = id >= 0 ? ivrdma_region_peer(&d->region, (uint32_t)id) : NULL;
	pid_t pid;

	if (!p || !ivrdma_owner_alive(&d->region, owner, -1) ||
	    ivrdma_context_released(&d->region, owner))
		return false;
	pid = (pid_t)shm_load_relaxed32(&p->pid);
	return pid <= 0 || kill(pid, 0) == 0 || errno == EPERM;
}

static bool stale(const struct daemon *d, uint32_t slot, uint64_t seq)
{
	for (uint32_t i = 0; i < IVRDMA_STALE_EXECS; i++)
		if (d->stale_exec[i].seq == seq && d->stale_exec[i].slot == slot)
			return true;
	return false;
}

/* Until the execution of QP slot 'i' under way at 'seq' ends; false at the deadline. */
static bool execution_ends(struct daemon *d, uint32_t i, uint32_t owner, uint64_t seq,
			   int64_t deadline)
{
	struct ivrdma_qp_slot *s = ivrdma_table_entry(&d->region, &d->region.qps, i);

	while (shm_load_acquire64(&s->exec_seq) == seq &&
	       shm_load_acquire32(&s->hdr.owner) == owner && may_run(d, owner)) {
		if (monotonic_ms() > deadline) {
			d->stale_exec[d->stale_next] = (struct stale_exec){.slot = i, .seq = seq};
			d->stale_next = (d->stale_next + 1) % IVRDMA_STALE_EXECS;
			return false;
		}
		sched_yield();
	}
	return true;
}

void exec_drain(struct daemon *d, const struct ivrdma_gone *gone)
{
	int64_t deadline = monotonic_ms() + DRAIN_WAIT_MS;

	shm_fence_seq_cst(); /* the peer's GONE before the loads of exec_seq */
	for (uint32_t i = 0; i < d->region.qps.entries; i++) {
		struct ivrdma_qp_slot *s = ivrdma_table_entry(&d->region, &d->region.qps, i);
		uint32_t owner = shm_load_acquire32(&s->hdr.owner);
		uint64_t seq = shm_load_acquire64(&s->exec_seq);

		if (!(seq & 1) || !owner || ivrdma_tag_gone(&d->region, owner, gone) ||
		    stale(d, i, seq))
			continue;
		if (!execution_ends(d, i, owner, seq, deadline))
			log_warn("QP %u stayed in one execution for %d ms while %s %#x left: its "
				 "chunks are reclaimed anyway",
				 i + IVRDMA_QPN_BASE, DRAIN_WAIT_MS,
				 gone->peer >= 0 ? "peer" : "context",
				 gone->peer >= 0 ? (unsigned int)gone->peer : gone->context_tag);
	}
}
