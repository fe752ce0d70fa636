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
	/* Objects still using the PD will be refused here (EBUSY) once MRs,
	 * QPs, SRQs and AHs exist and count their PD references. */
	free((struct ivrdma_pd *)ibpd);
	return 0;
}
