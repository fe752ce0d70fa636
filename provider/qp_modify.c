// SPDX-License-Identifier: MIT
/*
 * modify_qp: the IB state machine (RESET, INIT, RTR, RTS, SQD, SQE, ERR for
 * RC, UC, UD and XRC), the attribute masks each transition requires and allows,
 * and the connection made at RTR: the remote QP is found through the
 * directory (dest LID = node) and the QP table (dest QPN), and must be held
 * by a live peer of that node. UD QPs connect to nobody: each datagram is
 * addressed on its own (ud.c).
 */
#include <errno.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

struct rule {
	int req, opt;
};

/*
 * The required and optional masks of cur -> next for a QP type, or false
 * if the transition is not allowed (IB spec, QP state transition tables).
 */
static bool transition(enum ibv_qp_state cur, enum ibv_qp_state next, enum ibv_qp_type type,
		       struct rule *r)
{
	bool rc = type == IBV_QPT_RC, ud = type == IBV_QPT_UD;
	/*
	 * An XRC send QP is an RC requester, an XRC receive QP an RC
	 * responder: each takes its side's attributes, and the other side's
	 * as options (RDMA CM gives the kernel CM's set, which has some).
	 */
	bool requester = rc || type == IBV_QPT_XRC_SEND, responder = rc || type == IBV_QPT_XRC_RECV;
	bool xrc = requester != responder;
	int rnr = responder ? IBV_QP_MIN_RNR_TIMER : 0;
	int resp_attrs = IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
	int req_attrs = IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
	/* UD has a Q_Key where connected QPs have access flags. */
	int access = ud ? IBV_QP_QKEY : IBV_QP_ACCESS_FLAGS;

	r->req = r->opt = 0;
	if (next == IBV_QPS_RESET || next == IBV_QPS_ERR)
		return true;
	switch (cur * 8 + next) {
	case IBV_QPS_RESET * 8 + IBV_QPS_INIT:
		r->req = IBV_QP_PKEY_INDEX | IBV_QP_PORT | access;
		return true;
	case IBV_QPS_INIT * 8 + IBV_QPS_INIT:
		r->opt = IBV_QP_PKEY_INDEX | IBV_QP_PORT | access;
		return true;
	case IBV_QPS_INIT * 8 + IBV_QPS_RTR:
		if (ud) {
			r->opt = IBV_QP_PKEY_INDEX | IBV_QP_QKEY;
			return true;
		}
		r->req = IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			 (responder ? resp_attrs : 0);
		r->opt = IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX |
			 (xrc ? resp_attrs : 0);
		return true;
	case IBV_QPS_RTR * 8 + IBV_QPS_RTS:
		r->req = IBV_QP_SQ_PSN | (requester || responder ? IBV_QP_TIMEOUT : 0) |
			 (requester ? req_attrs : 0);
		r->opt = IBV_QP_CUR_STATE | access |
			 (ud ? 0 : IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE) | rnr |
			 (xrc ? req_attrs : 0);
		return true;
	case IBV_QPS_RTS * 8 + IBV_QPS_RTS:
	case IBV_QPS_SQE * 8 + IBV_QPS_RTS:
	case IBV_QPS_SQD * 8 + IBV_QPS_RTS:
		r->opt = IBV_QP_CUR_STATE | access |
			 (ud ? 0 : IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE) | rnr;
		return true;
	case IBV_QPS_RTS * 8 + IBV_QPS_SQD:
		r->opt = IBV_QP_EN_SQD_ASYNC_NOTIFY;
		return true;
	case IBV_QPS_SQD * 8 + IBV_QPS_SQD:
		/*
		 * The spec's set but IBV_QP_AV: the connection is made at RTR,
		 * a new primary path would be a new peer (a QP taken through
		 * RESET connects anew). The alternate path is kept, never used.
		 */
		r->opt = IBV_QP_CUR_STATE | access | rnr | IBV_QP_PKEY_INDEX |
			 (ud ? 0 : IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE) |
			 (requester || responder ? IBV_QP_PORT | IBV_QP_TIMEOUT : 0) |
			 (requester ? IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC
				    : 0) |
			 (responder ? IBV_QP_MAX_DEST_RD_ATOMIC : 0);
		return true;
	default:
		return false;
	}
}

static bool values_ok(const struct ibv_qp_attr *a, int mask)
{
	if ((mask & IBV_QP_PORT) && a->port_num != IVRDMA_PORT_NUM)
		return false;
	if ((mask & IBV_QP_PKEY_INDEX) && a->pkey_index >= IVRDMA_PKEY_TBL_LEN)
		return false;
	if ((mask & IBV_QP_PATH_MTU) && (a->path_mtu < IBV_MTU_256 || a->path_mtu > IBV_MTU_4096))
		return false;
	if ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && a->max_dest_rd_atomic > 16)
		return false;
	if ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && a->max_rd_atomic > 16)
		return false;
	if ((mask & IBV_QP_TIMEOUT) && a->timeout > 31)
		return false;
	if ((mask & IBV_QP_RETRY_CNT) && a->retry_cnt > 7)
		return false;
	if ((mask & IBV_QP_RNR_RETRY) && a->rnr_retry > 7)
		return false;
	if ((mask & IBV_QP_MIN_RNR_TIMER) && a->min_rnr_timer > 31)
		return false;
	if ((mask & IBV_QP_DEST_QPN) && a->dest_qp_num >= (1u << 24))
		return false;
	return true;
}

/* The active node with this LID, or with this GID when the LID is 0. */
int ivrdma_find_node(const struct ivrdma_region *r, uint16_t lid, const union ibv_gid *gid)
{
	for (uint32_t i = 0; i < r->nodes.entries; i++) {
		struct ivrdma_node *n = ivrdma_region_node(r, i);

		if (shm_load_acquire32(&n->state) != IVRDMA_NODE_ACTIVE)
			continue;
		if (lid ? n->lid == lid : gid && !memcmp(n->gid, gid->raw, 16))
			return (int)i;
	}
	return -1;
}

/* The remote QP's receive ring: its own, or its SRQ's (same owner). */
static int peer_rq(const struct ivrdma_region *r, struct ivrdma_qp_slot *s, uint32_t idx,
		   struct ivrdma_peer_qp *pq)
{
	uint32_t srq = shm_load_relaxed32(&s->srq);

	pq->srq_limit = NULL;
	if (!srq) {
		pq->rq_pd_handle = shm_load_relaxed32(&s->pd_handle);
		return ivrdma_rq_view(r, &s->rq, &s->rq_prod, &s->rq_cons,
				      (struct ivrdma_ring_id){IVRDMA_RING_OF_QP(idx), pq->seq},
				      &pq->rq);
	}
	return ivrdma_srq_view(r, srq - 1, pq->owner, &pq->rq, &pq->rq_pd_handle, &pq->srq_limit);
}

/*
 * Finds QP 'qpn' of type 'type' held by a live peer of node 'node' and
 * validates what an initiator will use of it: its receive ring and CQ.
 * XRC QPs have neither: an XRC send QP never receives, and what goes to
 * an XRC receive QP is taken from the SRQ each WR names (xrc.c).
 */
int ivrdma_peer_lookup(const struct ivrdma_region *r, enum ibv_qp_type type, int node, uint32_t qpn,
		       struct ivrdma_peer_qp *pq)
{
	struct ivrdma_qp_slot *s =
	    qpn >= IVRDMA_QPN_BASE ? ivrdma_table_entry(r, &r->qps, qpn - IVRDMA_QPN_BASE) : NULL;

	memset(pq, 0, sizeof(*pq));
	if (node < 0 || !s)
		return ENOENT;
	pq->owner = shm_load_acquire32(&s->hdr.owner);
	pq->seq = shm_load_acquire32(&s->hdr.seq);
	if (!ivrdma_owner_alive(r, pq->owner, node) || shm_load_relaxed32(&s->qpn) != qpn ||
	    shm_load_relaxed32(&s->qp_type) != type)
		return ENOENT;
	if (type != IBV_QPT_XRC_SEND && type != IBV_QPT_XRC_RECV &&
	    (peer_rq(r, s, qpn - IVRDMA_QPN_BASE, pq) ||
	     ivrdma_cq_view(r, shm_load_relaxed32(&s->recv_cq), pq->owner, &pq->cq)))
		return EPROTO;
	pq->slot = s;
	pq->qpn = qpn;
	pq->pd_handle = shm_load_relaxed32(&s->pd_handle);
	pq->lid = ivrdma_region_node(r, (uint32_t)node)->lid;
	return 0;
}

static int connect(struct ivrdma_context *ctx, struct ivrdma_qp *qp, const struct ibv_qp_attr *a)
{
	const struct ibv_ah_attr *ah = &a->ah_attr;
	int node = ivrdma_find_node(&ctx->region, ah->dlid, ah->is_global ? &ah->grh.dgid : NULL);
	enum ibv_qp_type type = qp->vqp.qp.qp_type;
	/* The other end of an XRC connection is the other XRC type. */
	enum ibv_qp_type want = type == IBV_QPT_XRC_SEND   ? IBV_QPT_XRC_RECV
				: type == IBV_QPT_XRC_RECV ? IBV_QPT_XRC_SEND
							   : type;
	int rc = ivrdma_peer_lookup(&ctx->region, want, node, a->dest_qp_num, &qp->peer);

	if (rc == ENOENT)
		ivrdma_dbg("RTR: QP %#x is not a live QP of type %d of LID %u", a->dest_qp_num,
			   want, ah->dlid);
	else if (rc)
		ivrdma_dbg("RTR: QP %#x has a malformed receive queue or CQ", a->dest_qp_num);
	return rc ? EINVAL : 0;
}

bool ivrdma_peer_alive(struct ivrdma_context *ctx, const struct ivrdma_peer_qp *pq)
{
	return pq->slot && shm_load_acquire32(&pq->slot->hdr.owner) == pq->owner &&
	       shm_load_acquire32(&pq->slot->hdr.seq) == pq->seq &&
	       ivrdma_owner_alive(&ctx->region, pq->owner, -1);
}

static void keep_attrs(struct ivrdma_qp *qp, const struct ibv_qp_attr *a, int mask)
{
	struct ibv_qp_attr *k = &qp->attr;

#define KEEP(bit, field)                                                                           \
	if (mask & (bit))                                                                          \
	k->field = a->field
	KEEP(IBV_QP_PKEY_INDEX, pkey_index);
	KEEP(IBV_QP_PORT, port_num);
	KEEP(IBV_QP_ACCESS_FLAGS, qp_access_flags);
	KEEP(IBV_QP_AV, ah_attr);
	KEEP(IBV_QP_PATH_MTU, path_mtu);
	KEEP(IBV_QP_DEST_QPN, dest_qp_num);
	KEEP(IBV_QP_RQ_PSN, rq_psn);
	KEEP(IBV_QP_SQ_PSN, sq_psn);
	KEEP(IBV_QP_MAX_DEST_RD_ATOMIC, max_dest_rd_atomic);
	KEEP(IBV_QP_MAX_QP_RD_ATOMIC, max_rd_atomic);
	KEEP(IBV_QP_MIN_RNR_TIMER, min_rnr_timer);
	KEEP(IBV_QP_TIMEOUT, timeout);
	KEEP(IBV_QP_RETRY_CNT, retry_cnt);
	KEEP(IBV_QP_RNR_RETRY, rnr_retry);
	KEEP(IBV_QP_ALT_PATH, alt_ah_attr);
	KEEP(IBV_QP_PATH_MIG_STATE, path_mig_state);
	KEEP(IBV_QP_QKEY, qkey);
	KEEP(IBV_QP_EN_SQD_ASYNC_NOTIFY, en_sqd_async_notify);
#undef KEEP
	if (mask & IBV_QP_QKEY)
		shm_store_relaxed32(&qp->s->qkey, a->qkey);
	if (mask & IBV_QP_ACCESS_FLAGS)
		shm_store_relaxed32(&qp->s->access, (uint32_t)a->qp_access_flags);
	if (mask & IBV_QP_MIN_RNR_TIMER)
		shm_store_relaxed8(&qp->s->min_rnr_timer, a->min_rnr_timer);
}

/*
 * Back to RESET: posted work is dropped without completions, as on
 * hardware. An SRQ's receives are not the QP's to drop.
 */
static void reset(struct ivrdma_qp *qp)
{
	if (ivrdma_qp_own_rq(qp))
		ivrdma_rq_drop_all(&qp->rq);
	shm_store_release32(&qp->s->async, 0); /* a new connection's news */
	qp->sq_count = 0;
	memset(&qp->peer, 0, sizeof(qp->peer));
	memset(&qp->xrc_last, 0, sizeof(qp->xrc_last));
	memset(&qp->attr, 0, sizeof(qp->attr));
}

static void set_state(struct ivrdma_qp *qp, enum ibv_qp_state next)
{
	qp->vqp.qp.state = next;
	shm_store_release32(&qp->s->state, next);
}

int ivrdma_modify_qp(struct ibv_qp *handle, struct ibv_qp_attr *attr, int mask)
{
	/* An ibv_open_qp handle changes the QP it opens. */
	struct ivrdma_qp *qp = to_iqp(handle)->opened ?: to_iqp(handle);
	struct ibv_qp *ibqp = &qp->vqp.qp;
	struct ivrdma_context *ctx = to_ictx(ibqp->context);
	enum ibv_qp_state cur, next;
	struct rule rule;
	int rc = 0;

	ivrdma_queue_lock(&qp->sq_lock);
	cur = ibqp->state;
	next = mask & IBV_QP_STATE ? attr->qp_state : cur;
	if (!transition(cur, next, ibqp->qp_type, &rule) || (mask & rule.req) != rule.req ||
	    (mask & ~(rule.req | rule.opt | IBV_QP_STATE | IBV_QP_CUR_STATE)) ||
	    ((mask & IBV_QP_CUR_STATE) && attr->cur_qp_state != cur) || !values_ok(attr, mask))
		rc = EINVAL;
	else if (next != IBV_QPS_RESET && next != IBV_QPS_ERR && ivrdma_context_left(ctx))
		rc = EIO; /* after leave_region's pass over my QPs (suspend.c) */
	else if (cur == IBV_QPS_INIT && next == IBV_QPS_RTR && ibqp->qp_type != IBV_QPT_UD)
		rc = connect(ctx, qp, attr);
	if (rc)
		goto out;
	keep_attrs(qp, attr, mask);
	if (next == IBV_QPS_RTR && ibqp->qp_type != IBV_QPT_UD) {
		/* Initiators check them (qp_tx.c) while they arrive. */
		shm_store_relaxed32(&qp->s->dest_qpn, attr->dest_qp_num);
		shm_store_relaxed16(&qp->s->dest_lid, qp->peer.lid);
	}
	if (next == IBV_QPS_RTS && cur == IBV_QPS_RTR) {
		qp->rnr_left = qp->attr.rnr_retry;
		qp->retry_left = qp->attr.retry_cnt;
	}
	if (next == IBV_QPS_ERR) {
		if (cur != IBV_QPS_ERR)
			ivrdma_qp_enter_error(qp);
		goto out;
	}
	set_state(qp, next);
	if (next == IBV_QPS_RESET)
		reset(qp);
	qp->sqd_notify = next == IBV_QPS_SQD && cur == IBV_QPS_RTS &&
			 (mask & IBV_QP_EN_SQD_ASYNC_NOTIFY) && attr->en_sqd_async_notify;
	if ((next == IBV_QPS_SQD || next == IBV_QPS_RTS) && cur != next)
		ivrdma_sq_run(qp); /* SQD may be drained already; RTS resumes what SQD held */
out:
	ivrdma_queue_unlock(&qp->sq_lock);
	return rc;
}
