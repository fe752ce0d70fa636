// SPDX-License-Identifier: MIT
/*
 * Completion queues: not implemented yet. Creation fails with EOPNOTSUPP so programs see
 * a clean "operation not supported" rather than a half-working object.
 */
#include <errno.h>

#include "ivrdma.h"

struct ibv_cq *ivrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

struct ibv_cq_ex *ivrdma_create_cq_ex(struct ibv_context *context, struct ibv_cq_init_attr_ex *attr)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

int ivrdma_destroy_cq(struct ibv_cq *cq)
{
	return EOPNOTSUPP;
}
