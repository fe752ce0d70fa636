// SPDX-License-Identifier: MIT
/*
 * Protection domains. A PD only scopes keys within one context, so it
 * lives in private memory: no region slot, nothing for ivrdmad to reclaim.
 */
#include <errno.h>
#include <stdlib.h>

#include "ivrdma.h"

struct ibv_pd *ivrdma_alloc_pd(struct ibv_context *context)
{
	struct ivrdma_context *ctx = to_ictx(context);
	struct ivrdma_pd *pd = calloc(1, sizeof(*pd));

	if (!pd)
		return ivrdma_fail_null(ENOMEM);
	pd->ibv_pd.context = context;
	pd->ibv_pd.handle = atomic_fetch_add(&ctx->next_pd_handle, 1);
	return &pd->ibv_pd;
}

int ivrdma_dealloc_pd(struct ibv_pd *ibpd)
{
	struct ivrdma_pd *pd = to_ipd(ibpd);

	if (atomic_load(&pd->users))
		return EBUSY; /* as the kernel answers while MRs, QPs or SRQs use it */
	if (pd->protection)
		ivrdma_parent_domain_release(pd);
	free(pd);
	return 0;
}

/*
 * The verbs that create and destroy objects in a PD, counted here so the
 * objects' own files need not know: the ops table points at these.
 */
void ivrdma_pd_get(struct ibv_pd *pd)
{
	if (pd)
		atomic_fetch_add(&to_ipd(pd)->users, 1);
}

void ivrdma_pd_put(struct ibv_pd *pd)
{
	if (pd)
		atomic_fetch_sub(&to_ipd(pd)->users, 1);
}

struct ibv_mr *ivrdma_pd_reg_mr(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
				int access)
{
	struct ibv_mr *mr = ivrdma_reg_mr(pd, addr, length, hca_va, access);

	if (mr)
		ivrdma_pd_get(pd);
	return mr;
}

struct ibv_mr *ivrdma_pd_reg_dm_mr(struct ibv_pd *pd, struct ibv_dm *dm, uint64_t dm_offset,
				   size_t length, unsigned int access)
{
	struct ibv_mr *mr = ivrdma_reg_dm_mr(pd, dm, dm_offset, length, access);

	if (mr)
		ivrdma_pd_get(pd);
	return mr;
}

int ivrdma_pd_dereg_mr(struct verbs_mr *vmr)
{
	struct ibv_pd *pd = vmr->ibv_mr.pd;
	int rc = ivrdma_dereg_mr(vmr);

	if (!rc)
		ivrdma_pd_put(pd);
	return rc;
}

/* A new PD takes the MR over from the old one (libibverbs then sets mr->pd). */
int ivrdma_pd_rereg_mr(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr,
		       size_t length, int access)
{
	struct ibv_pd *old = vmr->ibv_mr.pd;
	int rc = ivrdma_rereg_mr(vmr, flags, pd, addr, length, access);

	if (!rc && (flags & IBV_REREG_MR_CHANGE_PD)) {
		ivrdma_pd_get(pd);
		ivrdma_pd_put(old);
	}
	if (rc)
		errno = rc; /* libibverbs answers IBV_REREG_MR_ERR_CMD and leaves errno to us */
	return rc;
}

struct ibv_qp *ivrdma_pd_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	struct ibv_qp *qp = ivrdma_create_qp(pd, attr);

	if (qp)
		ivrdma_pd_get(qp->pd);
	return qp;
}

struct ibv_qp *ivrdma_pd_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr)
{
	struct ibv_qp *qp = ivrdma_create_qp_ex(context, attr);

	if (qp)
		ivrdma_pd_get(qp->pd);
	return qp;
}

int ivrdma_pd_destroy_qp(struct ibv_qp *qp)
{
	struct ibv_pd *pd = qp->pd;
	int rc = ivrdma_destroy_qp(qp);

	if (!rc)
		ivrdma_pd_put(pd);
	return rc;
}

struct ibv_srq *ivrdma_pd_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr)
{
	struct ibv_srq *srq = ivrdma_create_srq(pd, attr);

	if (srq)
		ivrdma_pd_get(srq->pd);
	return srq;
}

struct ibv_srq *ivrdma_pd_create_srq_ex(struct ibv_context *context,
					struct ibv_srq_init_attr_ex *attr)
{
	struct ibv_srq *srq = ivrdma_create_srq_ex(context, attr);

	if (srq)
		ivrdma_pd_get(srq->pd);
	return srq;
}

int ivrdma_pd_destroy_srq(struct ibv_srq *srq)
{
	struct ibv_pd *pd = srq->pd;
	int rc = ivrdma_destroy_srq(srq);

	if (!rc)
		ivrdma_pd_put(pd);
	return rc;
}
