// SPDX-License-Identifier: MIT
/*
 * modify_qp: the IB state machine (RESET, INIT, RTR, RTS, ERR for RC and
 * UC), the attribute masks each transition requires and allows, and the
 * connection made at RTR: the remote QP is found through the directory
 * (dest LID = node) and the QP table (dest QPN), and must be held by a
 * live peer of that node.
 */
#include <errno.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

struct rule {
	int req, opt;
};

/* The required and optional masks of cur -> next, or false if not allowed. */
static bool transition(enum ibv_qp_state cur, enum ibv_qp_state next, bool rc, struct rule *r)
{
	int rnr = rc ? IBV_QP_MIN_RNR_TIMER : 0;

	r->req = r->opt = 0;
	if (next == IBV_QPS_RESET || next == IBV_QPS_ERR)
		return true;
	switch (cur * 8 + next) {
	case IBV_QPS_RESET * 8 + IBV_QPS_INIT:
		r->req = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
		return true;
	case IBV_QPS_INIT * 8 + IBV_QPS_INIT:
		r->opt = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
		return true;
	case IBV_QPS_INIT * 8 + IBV_QPS_RTR:
		r->req = IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			 (rc ? IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER : 0);
		r->opt = IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX;
		return true;
	case IBV_QPS_RTR * 8 + IBV_QPS_RTS:
		r->req = IBV_QP_SQ_PSN | (rc ? IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
						   IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC
					     : 0);
		r->opt = IBV_QP_CUR_STATE | IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS |
			 IBV_QP_PATH_MIG_STATE | rnr;
		return true;
	case IBV_QPS_RTS * 8 + IBV_QPS_RTS:
	case IBV_QPS_SQE * 8 + IBV_QPS_RTS:
		r->opt = IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_ALT_PATH |
			 IBV_QP_PATH_MIG_STATE | rnr;
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

/* The node a path points at: by LID, or by GID when the LID is absent. */
static int find_node(const struct ivrdma_region *r, const struct ibv_ah_attr *ah)
{
	for (uint32_t i = 0; i < r->nodes.entries; i++) {
		struct ivrdma_node *n = ivrdma_region_node(r, i);

		if (shm_load_acquire32(&n->state) != IVRDMA_NODE_ACTIVE)
			continue;
		if (ah->dlid ? n->lid == ah->dlid
			     : ah->is_global && !memcmp(n->gid, ah->grh.dgid.raw, 16))
			return (int)i;
	}
	return -1;
}

/* Is 'owner' a live peer of node 'node'? */
static bool live_owner(const struct ivrdma_region *r, uint32_t owner, int node)
{
	int id = ivrdma_owner_peer(owner);
	struct ivrdma_peer *p = id >= 0 ? ivrdma_region_peer(r, (uint32_t)id) : NULL;

	return p && shm_load_acquire32(&p->state) == IVRDMA_PEER_ACTIVE &&
	       p->gen == (uint16_t)(owner >> 16) && (node < 0 || p->node == (uint16_t)node);
}

/* The remote QP's receive ring: its own, or its SRQ's (same owner). */
static int peer_rq(const struct ivrdma_region *r, struct ivrdma_qp_slot *s,
		   struct ivrdma_peer_qp *pq)
{
	uint32_t srq = __atomic_load_n(&s->srq, __ATOMIC_RELAXED);

	if (!srq) {
		pq->rq_pd_handle = __atomic_load_n(&s->pd_handle, __ATOMIC_RELAXED);
		return ivrdma_rq_view(r, &s->rq, &s->rq_prod, &s->rq_cons, &pq->rq);
	}
	return ivrdma_srq_view(r, srq - 1, pq->owner, &pq->rq, &pq->rq_pd_handle);
}

static int connect(struct ivrdma_context *ctx, struct ivrdma_qp *qp, const struct ibv_qp_attr *a)
{
	const struct ivrdma_region *r = &ctx->region;
	struct ivrdma_peer_qp *pq = &qp->peer;
	int node = find_node(r, &a->ah_attr);
	uint32_t qpn = a->dest_qp_num;
	struct ivrdma_qp_slot *s =
	    qpn >= IVRDMA_QPN_BASE ? ivrdma_table_entry(r, &r->qps, qpn - IVRDMA_QPN_BASE) : NULL;

	if (node < 0 || !s) {
		ivrdma_dbg("RTR: no node for LID %u or no QP %#x", a->ah_attr.dlid, qpn);
		return EINVAL;
	}
	memset(pq, 0, sizeof(*pq));
	pq->owner = shm_load_acquire32(&s->hdr.owner);
	pq->seq = shm_load_acquire32(&s->hdr.seq);
	if (!live_owner(r, pq->owner, node) || __atomic_load_n(&s->qpn, __ATOMIC_RELAXED) != qpn ||
	    __atomic_load_n(&s->qp_type, __ATOMIC_RELAXED) != qp->vqp.qp.qp_type) {
		ivrdma_dbg("RTR: QP %#x is not a live %s QP of LID %u", qpn,
			   qp->vqp.qp.qp_type == IBV_QPT_RC ? "RC" : "UC", a->ah_attr.dlid);
		return EINVAL;
	}
	if (peer_rq(r, s, pq) ||
	    ivrdma_cq_view(r, __atomic_load_n(&s->recv_cq, __ATOMIC_RELAXED), pq->owner, &pq->cq)) {
		ivrdma_dbg("RTR: QP %#x has a malformed receive queue or CQ", qpn);
		return EINVAL;
	}
	pq->slot = s;
	pq->qpn = qpn;
	pq->pd_handle = __atomic_load_n(&s->pd_handle, __ATOMIC_RELAXED);
	pq->lid = ivrdma_region_node(r, (uint32_t)node)->lid;
	return 0;
}

bool ivrdma_peer_alive(struct ivrdma_context *ctx, const struct ivrdma_peer_qp *pq)
{
	return pq->slot && shm_load_acquire32(&pq->slot->hdr.owner) == pq->owner &&
	       shm_load_acquire32(&pq->slot->hdr.seq) == pq->seq &&
	       live_owner(&ctx->region, pq->owner, -1);
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
#undef KEEP
	if (mask & IBV_QP_ACCESS_FLAGS)
		__atomic_store_n(&qp->s->access, (uint32_t)a->qp_access_flags, __ATOMIC_RELAXED);
	if (mask & IBV_QP_MIN_RNR_TIMER)
		__atomic_store_n(&qp->s->min_rnr_timer, a->min_rnr_timer, __ATOMIC_RELAXED);
}

/*
 * Back to RESET: posted work is dropped without completions, as on
 * hardware. An SRQ's receives are not the QP's to drop.
 */
static void reset(struct ivrdma_qp *qp)
{
	uint64_t c;

	if (!qp->srq) {
		c = shm_load_acquire64(qp->rq.cons);
		while (!shm_cas64(qp->rq.cons, &c, shm_load_acquire64(qp->rq.prod)))
			;
	}
	qp->sq_count = 0;
	memset(&qp->peer, 0, sizeof(qp->peer));
	memset(&qp->attr, 0, sizeof(qp->attr));
}

static void set_state(struct ivrdma_qp *qp, enum ibv_qp_state next)
{
	qp->vqp.qp.state = next;
	shm_store_release32(&qp->s->state, next);
}

int ivrdma_modify_qp(struct ibv_qp *ibqp, struct ibv_qp_attr *attr, int mask)
{
	struct ivrdma_qp *qp = to_iqp(ibqp);
	struct ivrdma_context *ctx = to_ictx(ibqp->context);
	enum ibv_qp_state cur, next;
	struct rule rule;
	int rc = 0;

	pthread_mutex_lock(&qp->sq_lock);
	cur = ibqp->state;
	next = mask & IBV_QP_STATE ? attr->qp_state : cur;
	if (!transition(cur, next, ibqp->qp_type == IBV_QPT_RC, &rule) ||
	    (mask & rule.req) != rule.req ||
	    (mask & ~(rule.req | rule.opt | IBV_QP_STATE | IBV_QP_CUR_STATE)) ||
	    ((mask & IBV_QP_CUR_STATE) && attr->cur_qp_state != cur) || !values_ok(attr, mask))
		rc = EINVAL;
	else if (cur == IBV_QPS_INIT && next == IBV_QPS_RTR)
		rc = connect(ctx, qp, attr);
	if (rc)
		goto out;
	keep_attrs(qp, attr, mask);
	if (next == IBV_QPS_RTR) {
		qp->s->dest_qpn = attr->dest_qp_num;
		qp->s->dest_lid = qp->peer.lid;
	}
	if (next == IBV_QPS_RTS && cur == IBV_QPS_RTR) {
		qp->rnr_left = qp->attr.rnr_retry;
		qp->retry_left = qp->attr.retry_cnt;
	}
	set_state(qp, next);
	if (next == IBV_QPS_RESET)
		reset(qp);
	if (next == IBV_QPS_ERR && cur != IBV_QPS_ERR) {
		ivrdma_qp_flush_sq(qp);
		ivrdma_qp_flush_rq(qp);
	}
out:
	pthread_mutex_unlock(&qp->sq_lock);
	return rc;
}
