// SPDX-License-Identifier: MIT
/*
 * Memory regions: not implemented yet. Creation fails with EOPNOTSUPP so programs see
 * a clean "operation not supported" rather than a half-working object.
 */
#include <errno.h>

#include "ivrdma.h"

struct ibv_mr *ivrdma_reg_mr(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
			     int access)
{
	return ivrdma_fail_null(EOPNOTSUPP);
}

int ivrdma_dereg_mr(struct verbs_mr *vmr)
{
	return EOPNOTSUPP;
}
