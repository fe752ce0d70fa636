// SPDX-License-Identifier: MIT
/*
 * Device memory (ibv_alloc_dm): the device's memory is the region, so a
 * DM is a run of region chunks of its context, read and written with
 * ibv_memcpy_to_dm / ibv_memcpy_from_dm, and registered zero-based with
 * ibv_reg_dm_mr. Its MR is an ordinary MR slot whose region offset points
 * into the DM: peers and the owner translate its keys as any moved MR's,
 * and no span ever moves it (mr.c, mr_move.c know nothing of it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

struct ivrdma_dm {
	struct verbs_dm vdm;
	uint32_t first_chunk, nr_chunks;
	uint64_t length;
	uint8_t *p;	  /* its bytes in my mapping of the region */
	atomic_int users; /* MRs on it: free_dm is EBUSY until 0 */
};

static struct ivrdma_dm *to_idm(struct ibv_dm *dm)
{
	return (struct ivrdma_dm *)((char *)dm - offsetof(struct ivrdma_dm, vdm) -
				    offsetof(struct verbs_dm, dm));
}

/* The largest DM: an eighth of the region's chunks, so queues keep room. */
uint64_t ivrdma_dm_max_size(const struct ivrdma_region *r)
{
	return ((uint64_t)r->nr_chunks << r->chunk_shift) / 8;
}

static bool in_dm(const struct ivrdma_dm *dm, uint64_t offset, size_t length)
{
	return offset <= dm->length && length <= dm->length - offset;
}

/*
 * Plain copies, as a CPU's stores into an HCA's memory BAR are: what a
 * peer's RDMA does to the same bytes meanwhile is the application's race.
 */
static int copy_to_dm(struct ibv_dm *ibdm, uint64_t dm_offset, const void *host, size_t length)
{
	struct ivrdma_dm *dm = to_idm(ibdm);

	if (!in_dm(dm, dm_offset, length))
		return EINVAL;
	memcpy(dm->p + dm_offset, host, length);
	return 0;
}

static int copy_from_dm(void *host, struct ibv_dm *ibdm, uint64_t dm_offset, size_t length)
{
	struct ivrdma_dm *dm = to_idm(ibdm);

	if (!in_dm(dm, dm_offset, length))
		return EINVAL;
	memcpy(host, dm->p + dm_offset, length);
	return 0;
}

struct ibv_dm *ivrdma_alloc_dm(struct ibv_context *context, struct ibv_alloc_dm_attr *attr)
{
	struct ivrdma_context *ctx = to_ictx(context);
	struct ivrdma_dm *dm;

	if (attr->comp_mask || !attr->length || attr->length > ivrdma_dm_max_size(&ctx->region) ||
	    attr->log_align_req > ctx->region.chunk_shift)
		return ivrdma_fail_null(
		    EINVAL); /* chunks are chunk-aligned: any lesser alignment */
	if (ivrdma_context_left(ctx))
		return ivrdma_fail_null(EIO);
	dm = calloc(1, sizeof(*dm));
	if (!dm)
		return ivrdma_fail_null(ENOMEM);
	dm->p = ivrdma_ring_alloc(ctx, attr->length, &dm->first_chunk, &dm->nr_chunks);
	if (!dm->p) {
		free(dm);
		return ivrdma_fail_null(ENOMEM);
	}
	dm->length = attr->length;
	dm->vdm.dm.context = context;
	dm->vdm.dm.memcpy_to_dm = copy_to_dm;
	dm->vdm.dm.memcpy_from_dm = copy_from_dm;
	dm->vdm.handle = dm->first_chunk;
	return &dm->vdm.dm;
}

int ivrdma_free_dm(struct ibv_dm *ibdm)
{
	struct ivrdma_dm *dm = to_idm(ibdm);

	if (atomic_load(&dm->users))
		return EBUSY; /* as the kernel answers while MRs are on it */
	ivrdma_ring_free(to_ictx(ibdm->context), dm->first_chunk, dm->nr_chunks);
	free(dm);
	return 0;
}

/* IB's rule for device memory: registered zero-based, its own length at most. */
static int check_dm_mr(struct ivrdma_dm *dm, uint64_t dm_offset, size_t length, unsigned int access)
{
	if (!(access & IBV_ACCESS_ZERO_BASED) || !length || !in_dm(dm, dm_offset, length))
		return EINVAL;
	if (access & ~(IBV_ACCESS_ZERO_BASED | IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
		       IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC))
		return EINVAL;
	return ivrdma_mr_check_args(0, length, (int)(access & ~IBV_ACCESS_ZERO_BASED));
}

struct ibv_mr *ivrdma_reg_dm_mr(struct ibv_pd *pd, struct ibv_dm *ibdm, uint64_t dm_offset,
				size_t length, unsigned int access)
{
	struct ivrdma_context *ctx = to_ictx(pd->context);
	struct ivrdma_dm *dm = to_idm(ibdm);
	uint64_t offset = ivrdma_chunk_offset(&ctx->region, dm->first_chunk) + dm_offset;
	struct ivrdma_mr *mr;
	int rc = ibdm->context != pd->context ? EINVAL : check_dm_mr(dm, dm_offset, length, access);

	if (rc)
		return ivrdma_fail_null(rc);
	mr = ivrdma_mr_new_at(pd, length, (int)(access & ~IBV_ACCESS_ZERO_BASED), offset);
	if (!mr)
		return NULL;
	mr->dm_users = &dm->users;
	atomic_fetch_add(&dm->users, 1);
	return &mr->vmr.ibv_mr;
}
