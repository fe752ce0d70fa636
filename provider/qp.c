// SPDX-License-Identifier: MIT
/*
 * Queue pairs: not implemented yet. Creation fails with EOPNOTSUPP so programs see
 * a clean "operation not supported" rather than a half-working object.
 */
#include <errno.h>

#include "ivrdma.h"

struct ibv_qp *ivrdma_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

struct ibv_qp *ivrdma_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

int ivrdma_destroy_qp(struct ibv_qp *qp)
{
	return EOPNOTSUPP;
}
