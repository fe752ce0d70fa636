// SPDX-License-Identifier: MIT
/*
 * ibv_rereg_mr: a registration changes its range, access or PD and keeps
 * its slot, so its lkey and rkey stay the same.
 *
 * The new range is placed first, by a stand-in MR that has a private copy
 * of the slot (mr.c's placement moves pages into the region if peers may
 * reach them). If that fails, nothing has changed: the MR keeps its old
 * range, access and PD (libibverbs then says IBV_REREG_MR_ERR_CMD, "MR
 * shouldn't be used"; ours may be used, as before the call). Then the MR
 * switches over as a move does (ivrdma_span_switch, the protocol at
 * ivrdma_mr_flags in ivrdma_layout.h): peers' executions that use it
 * wait and retry while its fields change, so none sees half of them.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ivrdma.h"
#include "shm_atomic.h"

#define SUPPORTED_FLAGS                                                                            \
	(IBV_REREG_MR_CHANGE_TRANSLATION | IBV_REREG_MR_CHANGE_PD | IBV_REREG_MR_CHANGE_ACCESS)

/* What the MR becomes. */
struct rereg {
	struct ivrdma_context *ctx;
	void *addr;
	size_t length;
	uint64_t iova; /* the new range's (its address, as the kernel's rereg has it), or the old */
	uint32_t access, pd_handle;
};

/* The new fields, while the MR is flagged moving (under span_lock). */
static void apply(struct ivrdma_mr *mr, const void *arg)
{
	const struct rereg *n = arg;

	shm_store_relaxed32(&mr->s->access, n->access);
	shm_store_relaxed64(&mr->s->iova, n->iova);
	shm_store_relaxed64(&mr->s->length, n->length);
	shm_store_relaxed32(&mr->s->pd_handle, n->pd_handle);
	/* An unmoved MR is translated through these (mr.c, local_unmoved). */
	pthread_mutex_lock(&n->ctx->mrs_lock);
	mr->vmr.ibv_mr.addr = n->addr;
	mr->vmr.ibv_mr.length = n->length;
	pthread_mutex_unlock(&n->ctx->mrs_lock);
}

/* The MR as it will be, or EINVAL (bad flags, a PD of another context, bad range or access). */
static int check(struct ivrdma_mr *mr, int flags, struct ibv_pd *pd, void *addr, size_t length,
		 int access, struct rereg *n)
{
	const struct ibv_mr *m = &mr->vmr.ibv_mr;

	if (flags & ~SUPPORTED_FLAGS || !(flags & SUPPORTED_FLAGS))
		return EINVAL; /* no flag: nothing to do, as the kernel answers too */
	if ((flags & IBV_REREG_MR_CHANGE_PD) && (!pd || pd->context != m->context))
		return EINVAL;
	n->addr = flags & IBV_REREG_MR_CHANGE_TRANSLATION ? addr : m->addr;
	n->length = flags & IBV_REREG_MR_CHANGE_TRANSLATION ? length : m->length;
	/* An MR of ibv_reg_mr_iova keeps its iova unless its range changes. */
	n->iova = flags & IBV_REREG_MR_CHANGE_TRANSLATION ? (uintptr_t)addr
							  : shm_load_relaxed64(&mr->s->iova);
	n->access = flags & IBV_REREG_MR_CHANGE_ACCESS ? (uint32_t)access
						       : shm_load_relaxed32(&mr->s->access);
	n->pd_handle =
	    flags & IBV_REREG_MR_CHANGE_PD ? pd->handle : shm_load_relaxed32(&mr->s->pd_handle);
	if (ivrdma_context_left(n->ctx))
		return EIO;
	return ivrdma_mr_check_args((uintptr_t)n->addr, n->length, (int)n->access);
}

/*
 * Does the MR need placing anew? A new range always; a new access when
 * the range is not in the region but must now be (the placement rule of
 * mr.c: remote access, or local write that a receive may land in).
 */
static bool needs_place(const struct ivrdma_mr *mr, int flags, uint32_t access)
{
	return (flags & IBV_REREG_MR_CHANGE_TRANSLATION) ||
	       (!mr->span && (access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
					IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)));
}

int ivrdma_rereg_mr(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr, size_t length,
		    int access)
{
	struct ivrdma_mr *mr = to_imr(vmr);
	struct rereg n = {.ctx = to_ictx(vmr->ibv_mr.context)};
	struct ivrdma_mr_slot scratch = {0};
	struct ivrdma_mr tmp = {0};
	bool placed;
	int rc;

	if (mr->dm_users)
		return EINVAL; /* device memory: reg_dm_mr again instead, as on ConnectX */
	rc = check(mr, flags, pd, addr, length, access, &n);
	if (rc)
		return rc;
	pthread_mutex_lock(&n.ctx->mr_lock);
	placed = needs_place(mr, flags, n.access);
	if (placed) {
		tmp.s = &scratch;
		tmp.slot = mr->slot;
		tmp.vmr.ibv_mr.context = vmr->ibv_mr.context;
		tmp.vmr.ibv_mr.addr = n.addr;
		rc = ivrdma_mr_place(n.ctx, &tmp, (uintptr_t)n.addr, n.length, (int)n.access);
	}
	if (!rc) {
		rc = ivrdma_span_switch(n.ctx, mr, placed ? &tmp : NULL, apply, &n);
		if (rc && tmp.span)
			ivrdma_span_remove(n.ctx, &tmp); /* the old range stays */
	}
	pthread_mutex_unlock(&n.ctx->mr_lock);
	return rc;
}
