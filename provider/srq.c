// SPDX-License-Identifier: MIT
/*
 * Shared receive queues: not implemented yet. Creation fails with EOPNOTSUPP so programs see
 * a clean "operation not supported" rather than a half-working object.
 */
#include <errno.h>

#include "ivrdma.h"

struct ibv_srq *ivrdma_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

struct ibv_srq *ivrdma_create_srq_ex(struct ibv_context *context, struct ibv_srq_init_attr_ex *attr)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

int ivrdma_destroy_srq(struct ibv_srq *srq)
{
	return EOPNOTSUPP;
}
