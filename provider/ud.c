// SPDX-License-Identifier: MIT
/*
 * Unreliable datagrams: where each one goes, and the GRH it carries.
 *
 * A UD send names its destination per work request (address handle,
 * remote QPN, Q_Key). Like a datagram on a fabric, one that reaches no
 * live UD QP of that node, or one whose Q_Key the destination does not
 * accept, is dropped without a word to the sender.
 */
#include <arpa/inet.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

/* IB's rule: a Q_Key with the high bit set means "use my QP's own Q_Key". */
static uint32_t effective_qkey(const struct ivrdma_qp *qp, uint32_t qkey)
{
	return qkey & 0x80000000u ? qp->attr.qkey : qkey;
}

/* Does the QP pq names receive now, with the Q_Key w brings? */
static bool accepts(const struct ivrdma_qp *qp, const struct ivrdma_swqe *w,
		    const struct ivrdma_peer_qp *pq)
{
	if (!ivrdma_state_receives(shm_load_acquire32(&pq->slot->state)))
		return false;
	return shm_load_relaxed32(&pq->slot->qkey) == effective_qkey(qp, w->remote_qkey);
}

static int ah_node(struct ivrdma_context *ctx, const struct ibv_ah_attr *a)
{
	return ivrdma_find_node(&ctx->region, a->dlid, a->is_global ? &a->grh.dgid : NULL);
}

/*
 * The destination of 'w', or false if the datagram is to be dropped.
 * The last destination is kept: a stream of datagrams to one QP looks it
 * up once, and again only after its slot changed hands.
 */
bool ivrdma_ud_target(struct ivrdma_qp *qp, const struct ivrdma_swqe *w,
		      struct ivrdma_peer_qp **out)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	struct ivrdma_peer_qp *pq = &qp->ud_last;
	const struct ibv_ah_attr *a = &w->ah->attr;

	if (!(pq->qpn == w->remote_qpn && a->dlid && pq->lid == a->dlid &&
	      ivrdma_peer_alive(ctx, pq)) &&
	    ivrdma_peer_lookup(&ctx->region, IBV_QPT_UD, ah_node(ctx, a), w->remote_qpn, pq)) {
		memset(pq, 0, sizeof(*pq));
		return false;
	}
	if (!accepts(qp, w, pq))
		return false;
	*out = pq;
	return true;
}

/* A multicast group's member (node, qpn) as a destination, if it takes w. */
bool ivrdma_ud_member(struct ivrdma_qp *qp, const struct ivrdma_swqe *w, int node, uint32_t qpn,
		      struct ivrdma_peer_qp *pq)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);

	return !ivrdma_peer_lookup(&ctx->region, IBV_QPT_UD, node, qpn, pq) && accepts(qp, w, pq);
}

/*
 * The Global Route Header a datagram sent with a global address carries
 * (IBA 8.3): IPv6-shaped, the payload length counting what follows the GRH
 * on the wire (BTH, DETH, immediate data, the padded payload, ICRC).
 */
void ivrdma_ud_make_grh(struct ivrdma_context *ctx, const struct ivrdma_swqe *w, uint32_t len,
			uint8_t grh[IVRDMA_GRH_LEN])
{
	const struct ibv_global_route *g = &w->ah->attr.grh;
	struct ivrdma_node *me = ivrdma_my_node(ctx);
	uint32_t vtf =
	    htonl(6u << 28 | (uint32_t)g->traffic_class << 20 | (g->flow_label & 0xfffffu));
	uint32_t imm = w->opcode == IBV_WR_SEND_WITH_IMM ? 4 : 0;
	uint16_t paylen = htons((uint16_t)(12 + 8 + imm + ((len + 3) & ~3u) + 4));

	memcpy(grh, &vtf, 4);
	memcpy(grh + 4, &paylen, 2);
	grh[6] = 0x1b; /* next header: IBA transport */
	grh[7] = g->hop_limit;
	if (me)
		memcpy(grh + 8, me->gid, 16);
	else
		memset(grh + 8, 0, 16);
	memcpy(grh + 24, g->dgid.raw, 16);
}
