// SPDX-License-Identifier: MIT
/*
 * XRC (eXtended Reliable Connection): one send QP reaches every SRQ of an
 * XRC domain behind the receive QP it is connected to; each WR names its
 * SRQ (remote_srqn). Here: domains, the XRC side of SRQs, SRQ numbers,
 * ibv_open_qp, and the initiator's lookup of the SRQ a WR names. The
 * protocol is ivrdma_srq_slot's comment (ivrdma_layout.h); the data path
 * is qp_tx.c's, with the view this file makes in place of the connected
 * QP's own.
 *
 * A domain opened on a file is the same domain in every process of the
 * node that opens the same file (its ID is a hash of node, device and
 * inode: IVRDMA_XRCD_SHARED); one opened without a file (fd -1) is new,
 * with a random ID. Nothing in the region lists domains, so O_EXCL and
 * a missing O_CREAT cannot be checked against other processes: a file
 * always opens its domain.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "ivrdma.h"
#include "shm_atomic.h"

/* FNV-1a over the words that name a file on a node. */
static uint32_t file_id(uint32_t node, const struct stat *st)
{
	uint64_t words[3] = {node, (uint64_t)st->st_dev, (uint64_t)st->st_ino};
	const uint8_t *p = (const uint8_t *)words;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(words); i++)
		h = (h ^ p[i]) * 16777619u;
	return h | IVRDMA_XRCD_SHARED;
}

/* A domain of its own: any ID but 0, without the shared bit. */
static int private_id(uint32_t *id)
{
	do {
		if (getrandom(id, sizeof(*id), 0) != sizeof(*id))
			return errno ? errno : EIO;
		*id &= ~IVRDMA_XRCD_SHARED;
	} while (!*id);
	return 0;
}

struct ibv_xrcd *ivrdma_open_xrcd(struct ibv_context *context, struct ibv_xrcd_init_attr *attr)
{
	const uint32_t need = IBV_XRCD_INIT_ATTR_FD | IBV_XRCD_INIT_ATTR_OFLAGS;
	struct ivrdma_xrcd *x;
	struct stat st;
	int rc = 0;

	if ((attr->comp_mask & need) != need || (attr->comp_mask & ~need))
		return ivrdma_fail_null(EINVAL);
	if (attr->oflags & ~(O_CREAT | O_EXCL))
		return ivrdma_fail_null(EINVAL);
	x = calloc(1, sizeof(*x));
	if (!x)
		return ivrdma_fail_null(ENOMEM);
	if (attr->fd == -1)
		rc = private_id(&x->id);
	else if (fstat(attr->fd, &st))
		rc = EBADF;
	else
		x->id = file_id(to_ictx(context)->node, &st);
	if (rc) {
		free(x);
		return ivrdma_fail_null(rc);
	}
	x->vxrcd.xrcd.context = context;
	x->vxrcd.comp_mask = VERBS_XRCD_HANDLE;
	x->vxrcd.handle = x->id;
	return &x->vxrcd.xrcd;
}

int ivrdma_close_xrcd(struct ibv_xrcd *xrcd)
{
	struct ivrdma_xrcd *x = to_ixrcd(xrcd);

	if (atomic_load(&x->users))
		return EBUSY; /* as the kernel answers while SRQs or QPs are in it */
	free(x);
	return 0;
}

/*
 * The XRC side of a new SRQ (srq.c made the ring and slot): its domain
 * and CQ, stored before the domain's ID, which initiators load first.
 */
int ivrdma_xrc_srq_init(struct ivrdma_srq *srq, const struct ibv_srq_init_attr_ex *attr)
{
	const uint32_t need = IBV_SRQ_INIT_ATTR_XRCD | IBV_SRQ_INIT_ATTR_CQ;

	if ((attr->comp_mask & need) != need || !attr->xrcd || !attr->cq)
		return EINVAL;
	srq->xrcd = to_ixrcd(attr->xrcd);
	srq->xrc_cq = to_icq(attr->cq);
	atomic_fetch_add(&srq->xrcd->users, 1);
	atomic_fetch_add(&srq->xrc_cq->users, 1);
	shm_store_relaxed32(&srq->s->xrc_cq, srq->xrc_cq->slot);
	shm_store_release32(&srq->s->xrcd, srq->xrcd->id);
	srq->vsrq.srq_type = IBV_SRQT_XRC;
	srq->vsrq.xrcd = &srq->xrcd->vxrcd;
	srq->vsrq.cq = attr->cq;
	srq->vsrq.srq_num = srq->slot + IVRDMA_SRQN_BASE;
	return 0;
}

/* Before the SRQ's slot is freed: initiators stop finding it in the domain. */
void ivrdma_xrc_srq_fini(struct ivrdma_srq *srq)
{
	if (!srq->xrcd)
		return;
	shm_store_release32(&srq->s->xrcd, 0);
	atomic_fetch_sub(&srq->xrcd->users, 1);
	atomic_fetch_sub(&srq->xrc_cq->users, 1);
}

int ivrdma_get_srq_num(struct ibv_srq *ibsrq, uint32_t *srq_num)
{
	struct ivrdma_srq *srq = to_isrq(ibsrq);

	if (!srq->xrcd)
		return EINVAL; /* only XRC SRQs are named by number */
	*srq_num = srq->slot + IVRDMA_SRQN_BASE;
	return 0;
}

/*
 * Another handle on an XRC receive QP of the same domain. The QP must be
 * this process's: its slot is written by the context that created it
 * alone, and the handle changes it through that QP (qp.c, qp_modify.c).
 */
struct ibv_qp *ivrdma_open_qp(struct ibv_context *context, struct ibv_qp_open_attr *attr)
{
	const uint32_t need = IBV_QP_OPEN_ATTR_NUM | IBV_QP_OPEN_ATTR_XRCD | IBV_QP_OPEN_ATTR_TYPE;
	struct ivrdma_qp *target, *h;

	if ((attr->comp_mask & need) != need || attr->qp_type != IBV_QPT_XRC_RECV || !attr->xrcd)
		return ivrdma_fail_null(EINVAL);
	target = ivrdma_qp_open_by_num(attr->qp_num, to_ixrcd(attr->xrcd)->id);
	if (!target)
		return ivrdma_fail_null(ENOENT);
	h = calloc(1, sizeof(*h));
	if (!h) {
		atomic_fetch_sub(&target->opens, 1);
		return ivrdma_fail_null(ENOMEM);
	}
	h->opened = target;
	h->vqp.qp = target->vqp.qp;
	h->vqp.qp.context = context;
	h->vqp.qp.qp_context = attr->comp_mask & IBV_QP_OPEN_ATTR_CONTEXT ? attr->qp_context : NULL;
	pthread_mutex_init(&h->vqp.qp.mutex, NULL);
	pthread_cond_init(&h->vqp.qp.cond, NULL);
	h->vqp.comp_mask = VERBS_QP_XRCD;
	h->vqp.xrcd = &to_ixrcd(attr->xrcd)->vxrcd;
	return &h->vqp.qp;
}

/* Is the cached view still of SRQ 'srqn', its owner and slot unchanged? */
static bool view_current(const struct ivrdma_region *r, const struct ivrdma_peer_qp *x,
			 uint32_t srqn)
{
	const struct ivrdma_srq_slot *s;

	if (!x->slot || x->srqn != srqn)
		return false;
	s = ivrdma_table_entry(r, &r->srqs, srqn - IVRDMA_SRQN_BASE);
	return shm_load_acquire32(&s->hdr.owner) == x->owner &&
	       shm_load_acquire32(&s->hdr.seq) == x->seq && shm_load_acquire32(&s->xrcd);
}

/*
 * The view of SRQ 'srqn' behind the receive QP 'qp' is connected to:
 * the SRQ's ring, CQ and PD with the receive QP's slot. 0, or EINVAL if
 * no live SRQ of the receive QP's domain has that number.
 */
static int make_view(const struct ivrdma_region *r, const struct ivrdma_peer_qp *tgt, uint32_t srqn,
		     struct ivrdma_peer_qp *x)
{
	struct ivrdma_srq_slot *s = srqn >= IVRDMA_SRQN_BASE
					? ivrdma_table_entry(r, &r->srqs, srqn - IVRDMA_SRQN_BASE)
					: NULL;
	uint32_t xrcd;

	memset(x, 0, sizeof(*x));
	if (!s)
		return EINVAL;
	x->owner = shm_load_acquire32(&s->hdr.owner);
	x->seq = shm_load_acquire32(&s->hdr.seq);
	xrcd = shm_load_acquire32(&s->xrcd);
	if (!xrcd || xrcd != shm_load_relaxed32(&tgt->slot->xrcd) ||
	    !ivrdma_owner_alive(r, x->owner, -1) ||
	    ivrdma_srq_view(r, srqn - IVRDMA_SRQN_BASE, x->owner, &x->rq, &x->rq_pd_handle,
			    &x->srq_limit) ||
	    ivrdma_cq_view(r, shm_load_relaxed32(&s->xrc_cq), x->owner, &x->cq)) {
		memset(x, 0, sizeof(*x));
		return EINVAL;
	}
	x->slot = tgt->slot;
	x->qpn = tgt->qpn;
	x->lid = tgt->lid;
	x->pd_handle = x->rq_pd_handle; /* RDMA is checked in the SRQ's PD */
	x->srqn = srqn;
	return 0;
}

/*
 * What an XRC send WR goes to: the SRQ it names, behind the connected
 * receive QP. NULL, with *st the initiator's completion status, if the
 * number names no SRQ of that domain (the responder's Invalid Request).
 * Under sq_lock, as the view is the QP's.
 */
struct ivrdma_peer_qp *ivrdma_xrc_target(struct ivrdma_qp *qp, uint32_t srqn,
					 enum ibv_wc_status *st)
{
	const struct ivrdma_region *r = &to_ictx(qp->vqp.qp.context)->region;

	if (view_current(r, &qp->xrc_last, srqn) || !make_view(r, &qp->peer, srqn, &qp->xrc_last))
		return &qp->xrc_last;
	ivrdma_dbg("XRC QP %#x: SRQ %u is not an SRQ of the domain of QP %#x", qp->vqp.qp.qp_num,
		   srqn, qp->peer.qpn);
	*st = IBV_WC_REM_INV_REQ_ERR;
	return NULL;
}
