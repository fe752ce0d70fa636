// SPDX-License-Identifier: MIT
/*
 * Address handles: an address vector kept as the application gave it. As
 * on an HCA, creating one does not check that the destination exists; a
 * datagram to nowhere is dropped when it is sent (ud.c resolves it). That
 * includes LID 0 without a GRH, which an InfiniBand HCA (mlx5) takes too.
 * The GRH's fields go into the GRH a receiver sees (ud.c); SL, static
 * rate and source path bits shape nothing in shared memory and are ignored.
 */
#include <errno.h>
#include <stdlib.h>

#include "ivrdma.h"

struct ibv_ah *ivrdma_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr)
{
	struct ivrdma_ah *ah;

	if (attr->port_num != IVRDMA_PORT_NUM)
		return ivrdma_fail_null(EINVAL);
	if (attr->is_global && attr->grh.sgid_index >= IVRDMA_GID_TBL_LEN)
		return ivrdma_fail_null(EINVAL);
	ah = calloc(1, sizeof(*ah));
	if (!ah)
		return ivrdma_fail_null(ENOMEM);
	ah->attr = *attr;
	ah->ibv_ah.context = pd->context;
	ah->ibv_ah.pd = pd;
	atomic_fetch_add(&to_ipd(pd)->users, 1); /* dealloc_pd is EBUSY while AHs use it */
	return &ah->ibv_ah;
}

int ivrdma_destroy_ah(struct ibv_ah *ah)
{
	atomic_fetch_sub(&to_ipd(ah->pd)->users, 1);
	free(to_iah(ah));
	return 0;
}
