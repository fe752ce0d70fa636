// SPDX-License-Identifier: MIT
/*
 * Address handles: not implemented yet. Creation fails with EOPNOTSUPP so programs see
 * a clean "operation not supported" rather than a half-working object.
 */
#include <errno.h>

#include "ivrdma.h"

struct ibv_ah *ivrdma_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

int ivrdma_destroy_ah(struct ibv_ah *ah)
{
	return EOPNOTSUPP;
}
