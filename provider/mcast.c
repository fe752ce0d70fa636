// SPDX-License-Identifier: MIT
/*
 * UD multicast: ibv_attach_mcast / ibv_detach_mcast, and the members a
 * datagram to a multicast LID reaches. The table and its protocol are
 * "Multicast (UD)" in common/ivrdma_layout.h.
 */
#include <errno.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

bool ivrdma_is_mcast_lid(uint16_t lid)
{
	return lid >= IVRDMA_MCAST_LID_FIRST && lid <= IVRDMA_MCAST_LID_LAST;
}

static struct ivrdma_mcast_member *member(struct ivrdma_context *ctx, uint32_t i)
{
	return ivrdma_table_entry(&ctx->region, &ctx->region.mcast, i);
}

/* Mine, ATTACHED, this QP's, and (gid non-NULL) this group's. */
static bool is_my_member(struct ivrdma_context *ctx, const struct ivrdma_mcast_member *m,
			 uint32_t qpn, const union ibv_gid *gid, uint16_t lid)
{
	return shm_load_relaxed32(&m->hdr.owner) == ctx->owner_tag &&
	       shm_load_acquire32(&m->state) == IVRDMA_MCAST_ATTACHED && m->qpn == qpn &&
	       (!gid || (m->mlid == lid && !memcmp(m->mgid, gid->raw, 16)));
}

static void member_free(struct ivrdma_context *ctx, uint32_t i)
{
	shm_store_release32(&member(ctx, i)->state, IVRDMA_MCAST_FREE);
	ivrdma_slot_free(ctx, &ctx->region.mcast, i);
}

int ivrdma_attach_mcast(struct ibv_qp *ibqp, const union ibv_gid *gid, uint16_t lid)
{
	struct ivrdma_context *ctx = to_ictx(ibqp->context);
	struct ivrdma_mcast_member *m;
	int64_t idx;

	if (ibqp->qp_type != IBV_QPT_UD || gid->raw[0] != 0xff || !ivrdma_is_mcast_lid(lid))
		return EINVAL;
	if (atomic_load(&ctx->left))
		return EIO;
	for (uint32_t i = 0; i < ctx->region.mcast.entries; i++)
		if (is_my_member(ctx, member(ctx, i), ibqp->qp_num, gid, lid))
			return 0; /* attached already: as on an HCA, once is enough */
	idx = ivrdma_slot_alloc(ctx, &ctx->region.mcast);
	if (idx < 0)
		return ENOMEM;
	m = member(ctx, (uint32_t)idx);
	m->mlid = lid;
	m->node = (uint16_t)ctx->node;
	m->qpn = ibqp->qp_num;
	memcpy(m->mgid, gid->raw, sizeof(m->mgid));
	shm_store_release32(&m->state, IVRDMA_MCAST_ATTACHED);
	return 0;
}

int ivrdma_detach_mcast(struct ibv_qp *ibqp, const union ibv_gid *gid, uint16_t lid)
{
	struct ivrdma_context *ctx = to_ictx(ibqp->context);

	for (uint32_t i = 0; i < ctx->region.mcast.entries; i++)
		if (is_my_member(ctx, member(ctx, i), ibqp->qp_num, gid, lid)) {
			member_free(ctx, i);
			return 0;
		}
	return EINVAL; /* not attached to that group */
}

void ivrdma_mcast_detach_all(struct ivrdma_context *ctx, uint32_t qpn)
{
	for (uint32_t i = 0; i < ctx->region.mcast.entries; i++)
		if (is_my_member(ctx, member(ctx, i), qpn, NULL, 0))
			member_free(ctx, i);
}

/*
 * The next member of the group a datagram to (lid, gid) reaches, from
 * table index *i on: its node and QPN, or false when there is none left.
 */
bool ivrdma_mcast_next(const struct ivrdma_region *r, uint16_t lid, const union ibv_gid *gid,
		       uint32_t *i, int *node, uint32_t *qpn)
{
	for (; *i < r->mcast.entries; (*i)++) {
		const struct ivrdma_mcast_member *m = ivrdma_table_entry(r, &r->mcast, *i);

		if (shm_load_acquire32(&m->state) != IVRDMA_MCAST_ATTACHED || m->mlid != lid)
			continue;
		if (gid && memcmp(m->mgid, gid->raw, sizeof(m->mgid)) != 0)
			continue;
		*node = m->node;
		*qpn = m->qpn;
		(*i)++;
		return true;
	}
	return false;
}
