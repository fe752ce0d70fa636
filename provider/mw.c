// SPDX-License-Identifier: MIT
/*
 * Memory windows, type 1 and type 2 (2B: bound to a QP and a PD). A
 * window is a slot of the MR table; binding fills it with the window's
 * range, access and PD and the key of its MR, and peers translate a
 * window's key through that MR (ivrdma_rkey_remote in mr.c; the slot
 * protocol is in ivrdma_layout.h, above the MR slot). Binds and local
 * invalidations are WRs, executed in order on the QP that carries them
 * (qp_tx.c); a send with invalidate's target window is invalidated by
 * the initiator that delivers the send.
 */
#include <errno.h>
#include <stdlib.h>

#include "ivrdma.h"
#include "shm_atomic.h"

#define WINDOW_ACCESS (IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)

struct ivrdma_mw {
	struct ibv_mw ibv_mw;
	uint32_t slot;
	struct ivrdma_mr_slot *s;
};

static struct ivrdma_mw *to_imw(struct ibv_mw *mw)
{
	return (struct ivrdma_mw *)((char *)mw - offsetof(struct ivrdma_mw, ibv_mw));
}

struct ibv_mw *ivrdma_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type)
{
	struct ivrdma_context *ctx = to_ictx(pd->context);
	struct ivrdma_mw *mw;
	int64_t slot;

	if (type != IBV_MW_TYPE_1 && type != IBV_MW_TYPE_2)
		return ivrdma_fail_null(EINVAL);
	mw = calloc(1, sizeof(*mw));
	if (!mw)
		return ivrdma_fail_null(ENOMEM);
	slot = ivrdma_slot_alloc(ctx, &ctx->region.mrs);
	if (slot < 0) {
		free(mw);
		return ivrdma_fail_null(ENOMEM);
	}
	mw->slot = (uint32_t)slot;
	mw->s = ivrdma_table_entry(&ctx->region, &ctx->region.mrs, mw->slot);
	mw->s->pd_handle = pd->handle; /* key 0: nothing reaches it until it is bound */
	mw->ibv_mw.context = pd->context;
	mw->ibv_mw.pd = pd;
	mw->ibv_mw.rkey = ivrdma_mr_key(mw->slot, mw->s->hdr.seq);
	mw->ibv_mw.handle = mw->slot;
	mw->ibv_mw.type = type;
	return &mw->ibv_mw;
}

int ivrdma_dealloc_mw(struct ibv_mw *ibmw)
{
	struct ivrdma_mw *mw = to_imw(ibmw);

	shm_store_release32(&mw->s->key, 0);
	ivrdma_slot_free(to_ictx(ibmw->context), &to_ictx(ibmw->context)->region.mrs, mw->slot);
	free(mw);
	return 0;
}

/* Type 1: a bind WR on 'qp' with the window's next key (ibv_bind_mw(3)). */
int ivrdma_bind_mw(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *mw_bind)
{
	struct ibv_send_wr wr = {.wr_id = mw_bind->wr_id,
				 .opcode = IBV_WR_BIND_MW,
				 .send_flags = mw_bind->send_flags},
			   *bad;
	int rc;

	wr.bind_mw.mw = mw;
	wr.bind_mw.rkey = ibv_inc_rkey(mw->rkey);
	wr.bind_mw.bind_info = mw_bind->bind_info;
	rc = ivrdma_post_send(qp, &wr, &bad);
	if (!rc)
		mw->rkey = wr.bind_mw.rkey;
	return rc;
}

/* IB's rules for a bind, checked as it executes: IBV_WC_MW_BIND_ERR if broken. */
static bool bind_ok(struct ivrdma_qp *qp, struct ivrdma_mw *mw, const struct ivrdma_mw_bind *b)
{
	uint32_t pd = qp->vqp.qp.pd->handle;
	struct ivrdma_mr *mr = b->mr ? to_imr(verbs_get_mr(b->mr)) : NULL;
	uint32_t mr_access = mr ? mr->s->access : 0;

	if (ivrdma_key_slot(b->rkey) != mw->slot || mw->s->pd_handle != pd)
		return false;
	if (!mr) /* type 1 unbinds with no MR */
		return mw->ibv_mw.type == IBV_MW_TYPE_1 && !b->length;
	if (mw->ibv_mw.type == IBV_MW_TYPE_2 && shm_load_acquire32(&mw->s->key))
		return false; /* bound: invalidate it first */
	if (mr->s->pd_handle != pd || !(mr_access & IBV_ACCESS_MW_BIND) ||
	    (b->access & ~(unsigned int)WINDOW_ACCESS))
		return false; /* zero-based windows: not offered */
	if ((b->access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
	    !(mr_access & IBV_ACCESS_LOCAL_WRITE))
		return false;
	return b->addr >= mr->s->iova && b->length <= mr->s->length &&
	       b->addr - mr->s->iova <= mr->s->length - b->length;
}

/* Executes a bind WR of 'qp' (its owner writes the window's slot). */
enum ibv_wc_status ivrdma_mw_bind_exec(struct ivrdma_qp *qp, const struct ivrdma_mw_bind *b)
{
	struct ivrdma_mw *mw = b->mw ? to_imw(b->mw) : NULL;
	struct ivrdma_mr_slot *s;

	if (!mw || mw->ibv_mw.context != qp->vqp.qp.context || !bind_ok(qp, mw, b))
		return IBV_WC_MW_BIND_ERR;
	s = mw->s;
	shm_store_release32(&s->key, 0);
	if (!b->mr)
		return IBV_WC_SUCCESS; /* unbound */
	/* Initiators may be reading the old binding: relaxed stores, published by the key. */
	shm_store_relaxed32(&s->access, b->access);
	shm_store_relaxed64(&s->iova, b->addr);
	shm_store_relaxed64(&s->length, b->length);
	shm_store_relaxed32(&s->bound_qpn,
			    mw->ibv_mw.type == IBV_MW_TYPE_2 ? qp->vqp.qp.qp_num : 0);
	shm_store_release32(&s->window_of, b->mr->lkey);
	shm_store_release32(&s->key, b->rkey);
	return IBV_WC_SUCCESS;
}

/*
 * The type 2 window 'rkey' of this context, in 'pd', bound to QP 'qpn'
 * (0: any): its slot, or NULL.
 */
static struct ivrdma_mr_slot *type2_window(const struct ivrdma_region *r, uint32_t owner,
					   uint32_t rkey, uint32_t pd, uint32_t qpn)
{
	struct ivrdma_mr_slot *s = ivrdma_table_entry(r, &r->mrs, ivrdma_key_slot(rkey));

	if (!s || !rkey || shm_load_acquire32(&s->hdr.owner) != owner ||
	    shm_load_acquire32(&s->key) != rkey)
		return NULL;
	if (!shm_load_relaxed32(&s->window_of) || shm_load_relaxed32(&s->pd_handle) != pd)
		return NULL;
	if (!shm_load_relaxed32(&s->bound_qpn) || (qpn && shm_load_relaxed32(&s->bound_qpn) != qpn))
		return NULL;
	return s;
}

/* IBV_WR_LOCAL_INV: a type 2 window of the QP's PD becomes free. */
enum ibv_wc_status ivrdma_mw_local_inv(struct ivrdma_qp *qp, uint32_t rkey)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	struct ivrdma_mr_slot *s =
	    type2_window(&ctx->region, ctx->owner_tag, rkey, qp->vqp.qp.pd->handle, 0);

	if (!s || !shm_cas32(&s->key, &rkey, 0))
		return IBV_WC_MW_BIND_ERR; /* as rxe: no such window to invalidate */
	return IBV_WC_SUCCESS;
}

/*
 * A send with invalidate reaching pq: its window 'rkey', bound to that QP,
 * becomes free. False if there is no such window (the receive fails).
 */
bool ivrdma_mw_remote_inv(const struct ivrdma_region *r, const struct ivrdma_peer_qp *pq,
			  uint32_t rkey)
{
	struct ivrdma_mr_slot *s = type2_window(r, pq->owner, rkey, pq->pd_handle, pq->qpn);

	return s && shm_cas32(&s->key, &rkey, 0);
}
