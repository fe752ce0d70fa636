// SPDX-License-Identifier: MIT
/*
 * The send side: the initiator executes every operation itself, reading
 * and writing the target's memory in the region, taking the target's
 * receive WQEs and writing the target's CQEs. Work requests wait in a
 * private queue only while the target cannot take them (RNR, target not
 * ready); later verbs calls on this context retry them, and so does its
 * event thread every millisecond while any waits (ivrdma_progress).
 */
#include <errno.h>
#include <string.h>

#include "counters.h"
#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"

/*
 * EXEC_DROPPED: UC found no receive; the message is dropped, nothing is
 * delivered. EXEC_MOVING: an MR the WR needs is moving (ivrdma_mr_flags);
 * nothing was done, the WR runs again shortly.
 */
enum exec { EXEC_DONE, EXEC_RNR, EXEC_NO_ACK, EXEC_DROPPED, EXEC_MOVING };

/* A moving MR's bytes are back in place well within this; no retry is used up. */
#define MOVING_WAIT_NS 20000ull

struct iov {
	uint8_t *p;
	uint64_t len;
};

/* IB's RNR timer encoding, in units of 10 us (0 means 655.36 ms). */
static const uint32_t rnr_10us[32] = {65536, 1,	   2,	 3,	4,     6,     8,     12,
				      16,    24,   32,	 48,	64,    96,    128,   192,
				      256,   384,  512,	 768,	1024,  1536,  2048,  3072,
				      4096,  6144, 8192, 12288, 16384, 24576, 32768, 49152};

/*
 * memmove() of at most 16 bytes without the call: both ends are loaded
 * before either is stored, so it is right for overlapping ranges too.
 * Small messages (the ones whose rate and latency are the provider's own)
 * are most of the copies.
 */
static void move_small(uint8_t *dst, const uint8_t *src, uint64_t n)
{
	uint64_t a8, b8;
	uint32_t a4, b4;
	uint16_t a2, b2;

	if (n >= 8) {
		memcpy(&a8, src, 8);
		memcpy(&b8, src + n - 8, 8);
		memcpy(dst, &a8, 8);
		memcpy(dst + n - 8, &b8, 8);
	} else if (n >= 4) {
		memcpy(&a4, src, 4);
		memcpy(&b4, src + n - 4, 4);
		memcpy(dst, &a4, 4);
		memcpy(dst + n - 4, &b4, 4);
	} else if (n >= 2) {
		memcpy(&a2, src, 2);
		memcpy(&b2, src + n - 2, 2);
		memcpy(dst, &a2, 2);
		memcpy(dst + n - 2, &b2, 2);
	} else if (n) {
		*dst = *src;
	}
}

static void move_bytes(uint8_t *dst, const uint8_t *src, uint64_t n)
{
	if (n <= 16)
		move_small(dst, src, n);
	else
		memmove(dst, src, n);
}

/* n > 0 bytes, the last stored after a release fence (copy_iov()). */
static void move_last_after(uint8_t *dst, const uint8_t *src, uint64_t n)
{
	uint8_t last = src[n - 1]; /* read before the move: the ranges may overlap */

	move_bytes(dst, src, n - 1);
	shm_fence_release();
	dst[n - 1] = last;
}

/*
 * Copies 'len' bytes between scatter lists; the last byte is stored after
 * a release fence, so a poller of the last byte sees all the others.
 * Source and destination may overlap (the two MRs' region offsets are
 * whatever their owners wrote, and a QP may write into its own MR): each
 * piece moves as memmove does, its last byte read before the move.
 */
static void copy_iov(const struct iov *dst, int nd, const struct iov *src, int ns, uint64_t len)
{
	uint64_t doff = 0, soff = 0;
	int d = 0, s = 0;

	if (nd == 1 && ns == 1 && len && len <= dst->len && len <= src->len) {
		move_last_after(dst->p, src->p, len); /* one piece each side: most messages */
		return;
	}
	while (len) {
		uint64_t n;

		while (d < nd && doff == dst[d].len)
			d++, doff = 0;
		while (s < ns && soff == src[s].len)
			s++, soff = 0;
		if (d == nd || s == ns)
			return;
		n = dst[d].len - doff < src[s].len - soff ? dst[d].len - doff : src[s].len - soff;
		n = n < len ? n : len;
		if (n == len) {
			move_last_after(dst[d].p + doff, src[s].p + soff, n);
			return;
		}
		move_bytes(dst[d].p + doff, src[s].p + soff, n);
		doff += n, soff += n, len -= n;
	}
}

/* RC and XRC: acknowledged, so retried (RNR, no answer) rather than dropped. */
static bool reliable(const struct ivrdma_qp *qp)
{
	return qp->vqp.qp.qp_type == IBV_QPT_RC || qp->vqp.qp.qp_type == IBV_QPT_XRC_SEND;
}

static enum ibv_wc_status xlate_status(enum ivrdma_xlate x, bool local)
{
	if (x == IVRDMA_XLATE_OK)
		return IBV_WC_SUCCESS;
	return local ? IBV_WC_LOC_PROT_ERR : IBV_WC_REM_ACCESS_ERR;
}

/*
 * The WR's local memory as a scatter list, status in *st; inline data is
 * its own buffer. EXEC_MOVING if one of its MRs is moving.
 */
static enum exec local_iov(struct ivrdma_qp *qp, struct ivrdma_swqe *w, int access, struct iov *v,
			   int *nv, uint64_t *total, enum ibv_wc_status *st)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);

	*total = 0;
	*nv = 0;
	*st = IBV_WC_SUCCESS;
	if (w->send_flags & IBV_SEND_INLINE) {
		v[0].p = w->inline_buf;
		v[0].len = *total = w->inline_len;
		*nv = 1;
		return EXEC_DONE;
	}
	for (uint32_t i = 0; i < w->num_sge; i++) {
		struct ibv_sge *g = &w->sge[i];
		enum ivrdma_xlate x = ivrdma_mr_local(ctx, g->lkey, qp->vqp.qp.pd->handle, g->addr,
						      g->length, access, &v[i].p);

		if (x == IVRDMA_XLATE_MOVING)
			return EXEC_MOVING;
		if (x != IVRDMA_XLATE_OK) {
			*st = xlate_status(x, true);
			return EXEC_DONE;
		}
		v[i].len = g->length;
		*total += g->length;
		(*nv)++;
	}
	if (*total > IVRDMA_MAX_MSG_SIZE)
		*st = IBV_WC_LOC_LEN_ERR;
	return EXEC_DONE;
}

/* Drops the first 'skip' bytes of a scatter list (the GRH room of a UD receive). */
static int iov_skip(struct iov *v, int n, uint64_t skip)
{
	int i = 0;

	while (i < n && skip >= v[i].len)
		skip -= v[i++].len;
	if (i == n)
		return 0;
	memmove(v, v + i, sizeof(*v) * (size_t)(n - i));
	v[0].p += skip;
	v[0].len -= skip;
	return n - i;
}

/*
 * Tells a target QP's owner what happened to it (enum ivrdma_qp_async):
 * its event thread acts on it. The doorbell rings only for news.
 */
void ivrdma_notify_target(struct ivrdma_context *ctx, const struct ivrdma_peer_qp *pq,
			  uint32_t bits)
{
	uint32_t old = shm_fetch_or32(&pq->slot->async, bits);
	int peer = ivrdma_tag_peer(&ctx->region, pq->owner);

	if ((old & bits) != bits && peer >= 0)
		ivrdma_ring_peer(ctx, peer, IVRDMA_VEC_CONTROL);
}

/* The first message a QP receives while in RTR establishes the connection. */
static void note_arrival(struct ivrdma_context *ctx, const struct ivrdma_peer_qp *pq)
{
	const uint32_t seen = IVRDMA_QP_ASYNC_COMM_EST_SEEN;

	if (shm_load_relaxed32(&pq->slot->async) & seen)
		return;
	if (!(shm_fetch_or32(&pq->slot->async, seen) & seen))
		ivrdma_notify_target(ctx, pq, IVRDMA_QP_ASYNC_COMM_EST);
}

/* Writes the target's receive completion; the initiator learns of a failure. */
static enum ibv_wc_status target_cqe(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq,
				     const struct ivrdma_recv_wqe *r, enum ibv_wc_status st,
				     enum ibv_wc_opcode op, uint64_t len,
				     const struct ivrdma_swqe *w, uint32_t flags)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	bool imm = w->opcode == IBV_WR_SEND_WITH_IMM || w->opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
	struct ivrdma_cqe e = {
	    .wr_id = r->wr_id,
	    .status = st,
	    .opcode = op,
	    .byte_len = (uint32_t)len,
	    /* imm_data and invalidated_rkey share struct ibv_wc's word */
	    .imm_data = imm			    ? w->imm_data
			: (flags & IBV_WC_WITH_INV) ? w->invalidate_rkey
						    : 0,
	    .qp_num = pq->qpn,
	    .src_qp = qp->vqp.qp.qp_num,
	    .wc_flags = (imm ? IBV_WC_WITH_IMM : 0) | flags,
	    .slid = ctx->lid,
	    .solicited = !!(w->send_flags & IBV_SEND_SOLICITED),
	    .rq_ticket = pq->rq_ticket,
	};

	switch (ivrdma_cq_push_intent(&pq->cq, &e, &qp->s->intent, qp->slot + 1)) {
	case IVRDMA_CQ_PUSH_FULL:
		ivrdma_cq_wake(ctx, &pq->cq); /* its owner reports IBV_EVENT_CQ_ERR */
		return IBV_WC_REM_OP_ERR;     /* the target's CQ overflowed */
	case IVRDMA_CQ_PUSH_WAKE:
		ivrdma_cq_wake(ctx, &pq->cq);
		break;
	}
	if (st != IBV_WC_SUCCESS && qp->vqp.qp.qp_type != IBV_QPT_UD)
		ivrdma_notify_target(ctx, pq, IVRDMA_QP_ASYNC_RECV_ERR);
	switch (st) {
	case IBV_WC_SUCCESS:
		return IBV_WC_SUCCESS;
	case IBV_WC_LOC_LEN_ERR:
		return IBV_WC_REM_INV_REQ_ERR;
	default:
		return IBV_WC_REM_OP_ERR;
	}
}

/*
 * An SRQ's owner may be asleep when its receives run low: the initiator
 * that takes one below the armed limit rings the owner's control doorbell,
 * and the owner's event thread checks and posts IBV_EVENT_SRQ_LIMIT_REACHED.
 */
static void srq_limit_check(struct ivrdma_context *ctx, struct ivrdma_peer_qp *pq, uint64_t taken)
{
	uint32_t limit = shm_load_relaxed32(pq->srq_limit);
	int peer;

	if (!limit || ivrdma_rq_ahead(pq->rq.prod_seen, taken) >= limit)
		return;
	pq->rq.prod_seen = shm_load_acquire64(pq->rq.prod); /* what was seen may be old */
	peer = ivrdma_tag_peer(&ctx->region, pq->owner);
	if (ivrdma_rq_ahead(pq->rq.prod_seen, taken) < limit && peer >= 0)
		ivrdma_ring_peer(ctx, peer, IVRDMA_VEC_CONTROL);
}

/* The target's receive buffers, translated as its receive is taken. */
struct recv_dst {
	const struct ivrdma_region *region;
	const struct ivrdma_peer_qp *pq;
	struct iov v[IVRDMA_MAX_SGE];
	uint64_t room;
	enum ibv_wc_status st; /* the target's own status for them */
};

/*
 * ivrdma_rq_usable_fn: translates a copy of a receive WQE into d, and
 * refuses it if one of its MRs is moving. Each copy overwrites d: the
 * one the take confirms is the last translated.
 */
static bool recv_translate(const struct ivrdma_recv_wqe *w, void *arg)
{
	struct recv_dst *d = arg;

	d->room = 0;
	d->st = IBV_WC_SUCCESS;
	for (uint32_t i = 0; i < w->num_sge && i < IVRDMA_MAX_SGE; i++) {
		enum ivrdma_xlate x = ivrdma_mr_remote(
		    d->region, w->sge[i].lkey, d->pq->owner, d->pq->rq_pd_handle, w->sge[i].addr,
		    w->sge[i].length, IBV_ACCESS_LOCAL_WRITE, &d->v[i].p);

		if (x == IVRDMA_XLATE_MOVING)
			return false;
		if (x != IVRDMA_XLATE_OK)
			d->st = IBV_WC_LOC_PROT_ERR; /* taken all the same, and failed */
		d->v[i].len = w->sge[i].length;
		d->room += w->sge[i].length;
	}
	return true;
}

/*
 * Takes the target's next receive for a message whose completion will be
 * 'op'. The take is on record in my QP slot's intent from before its CAS:
 * if I die before its completion is published, ivrdmad writes it
 * (ivrdma_layout.h, "A producer that dies").
 */
static enum exec take_recv(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq,
			   struct ivrdma_recv_wqe *r, struct recv_dst *d, enum ibv_wc_status *st,
			   enum ibv_wc_opcode op)
{
	const struct ivrdma_region *region = &to_ictx(qp->vqp.qp.context)->region;
	const struct ivrdma_rq_taker me = {region, &qp->s->intent, qp->slot + 1};
	uint64_t index;
	int got;

	d->region = region;
	d->pq = pq;
	ivrdma_take_prepare(&qp->s->intent, pq->cq.index, pq->cq.seq, pq->qpn, op, pq->rq.id);
	got = ivrdma_rq_take(&pq->rq, &me, r, &index, recv_translate, d);
	if (got > 0) {
		if (pq->srq_limit) {
			pq->rq_ticket = 0; /* tickets are for a QP's own ring only */
			srq_limit_check(to_ictx(qp->vqp.qp.context), pq, index + 1);
		} else {
			pq->rq_ticket = IVRDMA_RQ_TICKET(pq->seq, index);
		}
		return EXEC_DONE;
	}
	if (got == -EBUSY)
		return EXEC_MOVING;
	if (got < 0) {
		*st = IBV_WC_REM_OP_ERR;
		return EXEC_DONE;
	}
	if (!reliable(qp)) {
		*st = IBV_WC_SUCCESS; /* UC, UD: a message without a receive is dropped */
		return EXEC_DROPPED;
	}
	return EXEC_RNR;
}

static enum exec do_send(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, struct ivrdma_swqe *w,
			 struct iov *src, int ns, uint64_t len, enum ibv_wc_status *st)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	enum ibv_wc_status tst;
	union ivrdma_recv_wqe_buf r;
	struct recv_dst d;
	enum exec ex = take_recv(qp, pq, &r.w, &d, st, IBV_WC_RECV);

	if (ex == EXEC_DROPPED)
		return EXEC_DONE;
	if (ex != EXEC_DONE || *st != IBV_WC_SUCCESS || r.w.num_sge > IVRDMA_MAX_SGE)
		return ex;
	tst = d.st;
	if (tst == IBV_WC_SUCCESS && len > d.room)
		tst = IBV_WC_LOC_LEN_ERR;
	/* The window to invalidate must be there before any byte lands. */
	if (tst == IBV_WC_SUCCESS && w->opcode == IBV_WR_SEND_WITH_INV &&
	    !ivrdma_mw_remote_inv(&ctx->region, pq, w->invalidate_rkey))
		tst = IBV_WC_LOC_PROT_ERR;
	/*
	 * The completion's entry is reserved and claimed after the copy, not
	 * before: a claimed entry sits in the consumer's polling line while
	 * the payload's lines come over, the consumer's next poll takes that
	 * line back, and the publish must fetch it again. Claiming first
	 * (with the payload's lines prefetched for writing) made ib_send_lat
	 * about 10% slower against ib_write_lat in alternating runs.
	 */
	if (tst == IBV_WC_SUCCESS)
		copy_iov(d.v, (int)r.w.num_sge, src, ns, len);
	*st = target_cqe(qp, pq, &r.w, tst, IBV_WC_RECV, len, w,
			 w->opcode == IBV_WR_SEND_WITH_INV ? IBV_WC_WITH_INV : 0);
	return EXEC_DONE;
}

/*
 * A datagram into pq's next receive: the receive buffer's first 40 bytes
 * are the GRH's, written only when the sender's address is global
 * (IBV_WC_GRH tells which); the payload follows, and byte_len counts both,
 * as on an HCA. The sender never hears how it went.
 */
static enum exec deliver_datagram(struct ivrdma_qp *qp, struct ivrdma_swqe *w,
				  struct ivrdma_peer_qp *pq, struct iov *src, int ns, uint64_t len)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	enum ibv_wc_status tst;
	enum ibv_wc_status st = IBV_WC_SUCCESS;
	union ivrdma_recv_wqe_buf r;
	struct recv_dst d;
	int nd;
	bool grh = w->ah->attr.is_global;
	enum exec ex;

	ex = take_recv(qp, pq, &r.w, &d, &st, IBV_WC_RECV);
	if (ex != EXEC_DONE || st != IBV_WC_SUCCESS || r.w.num_sge > IVRDMA_MAX_SGE)
		return ex == EXEC_MOVING ? ex : EXEC_DONE;
	tst = d.st;
	if (tst == IBV_WC_SUCCESS && IVRDMA_GRH_LEN + len > d.room)
		tst = IBV_WC_LOC_LEN_ERR;
	if (tst == IBV_WC_SUCCESS && grh) {
		uint8_t h[IVRDMA_GRH_LEN];
		struct iov hv = {.p = h, .len = sizeof(h)};

		ivrdma_ud_make_grh(ctx, w, (uint32_t)len, h);
		copy_iov(d.v, (int)r.w.num_sge, &hv, 1, sizeof(h));
	}
	if (tst == IBV_WC_SUCCESS) {
		nd = iov_skip(d.v, (int)r.w.num_sge, IVRDMA_GRH_LEN);
		copy_iov(d.v, nd, src, ns, len);
	}
	target_cqe(qp, pq, &r.w, tst, IBV_WC_RECV, IVRDMA_GRH_LEN + len, w, grh ? IBV_WC_GRH : 0);
	return EXEC_DONE;
}

/*
 * A datagram to a multicast group: a copy to every member (mcast.c). A
 * member whose receive buffer is being moved just then misses its copy,
 * as a datagram may be lost: sending again would repeat it to the others.
 */
static enum exec do_multicast(struct ivrdma_qp *qp, struct ivrdma_swqe *w, struct iov *src, int ns,
			      uint64_t len)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	const struct ibv_ah_attr *a = &w->ah->attr;
	struct ivrdma_peer_qp pq;
	uint32_t i = 0, qpn;
	int node;

	if (w->remote_qpn != IVRDMA_MCAST_QPN)
		return EXEC_DONE;
	while (ivrdma_mcast_next(&ctx->region, a->dlid, a->is_global ? &a->grh.dgid : NULL, &i,
				 &node, &qpn))
		if (ivrdma_ud_member(qp, w, node, qpn, &pq))
			(void)deliver_datagram(qp, w, &pq, src, ns, len);
	return EXEC_DONE;
}

static enum exec do_datagram(struct ivrdma_qp *qp, struct ivrdma_swqe *w, struct iov *src, int ns,
			     uint64_t len)
{
	struct ivrdma_peer_qp *pq;

	if (ivrdma_is_mcast_lid(w->ah->attr.dlid))
		return do_multicast(qp, w, src, ns, len);
	if (!ivrdma_ud_target(qp, w, &pq))
		return EXEC_DONE;
	return deliver_datagram(qp, w, pq, src, ns, len);
}

static void responder_error(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, uint32_t bit)
{
	if (qp->vqp.qp.qp_type != IBV_QPT_UC)
		ivrdma_notify_target(to_ictx(qp->vqp.qp.context), pq, bit);
}

/* The target's bytes of the WR's rkey, status in *st; EXEC_MOVING if its MR is moving. */
static enum exec remote_mem(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, struct ivrdma_swqe *w,
			    uint64_t len, int access, uint8_t **p, enum ibv_wc_status *st)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	uint32_t qp_access = shm_load_relaxed32(&pq->slot->access);
	enum ivrdma_xlate x;

	/*
	 * An operation the responder QP does not enable is an Invalid Request,
	 * a bad key or range an access violation: either fails the responder's
	 * QP too, with an affiliated async event (UC responders drop silently).
	 */
	if (!(qp_access & (uint32_t)access)) {
		responder_error(qp, pq, IVRDMA_QP_ASYNC_REQ_ERR);
		*st = IBV_WC_REM_INV_REQ_ERR;
		return EXEC_DONE;
	}
	x = ivrdma_rkey_remote(&ctx->region, w->rkey, pq->owner, pq->pd_handle, pq->qpn,
			       w->remote_addr, len, access, p);
	if (x == IVRDMA_XLATE_MOVING)
		return EXEC_MOVING;
	*st = xlate_status(x, false);
	if (*st != IBV_WC_SUCCESS)
		responder_error(qp, pq, IVRDMA_QP_ASYNC_ACCESS_ERR);
	return EXEC_DONE;
}

static enum exec do_write(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, struct ivrdma_swqe *w,
			  struct iov *src, int ns, uint64_t len, enum ibv_wc_status *st)
{
	struct iov dst = {.len = len};
	union ivrdma_recv_wqe_buf r;
	struct recv_dst d; /* translated, not written: the data goes where the rkey says */
	enum exec ex =
	    len ? remote_mem(qp, pq, w, len, IBV_ACCESS_REMOTE_WRITE, &dst.p, st) : EXEC_DONE;

	if (ex != EXEC_DONE || *st != IBV_WC_SUCCESS)
		return ex;
	if (w->opcode == IBV_WR_RDMA_WRITE_WITH_IMM) {
		ex = take_recv(qp, pq, &r.w, &d, st, IBV_WC_RECV_RDMA_WITH_IMM);
		if (ex == EXEC_DROPPED)
			return EXEC_DONE; /* nothing written either */
		if (ex != EXEC_DONE || *st != IBV_WC_SUCCESS)
			return ex;
	}
	if (len)
		copy_iov(&dst, 1, src, ns, len);
	if (w->opcode == IBV_WR_RDMA_WRITE_WITH_IMM)
		*st =
		    target_cqe(qp, pq, &r.w, IBV_WC_SUCCESS, IBV_WC_RECV_RDMA_WITH_IMM, len, w, 0);
	return EXEC_DONE;
}

static enum exec do_read(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, struct ivrdma_swqe *w,
			 struct iov *dst, int nd, uint64_t len, enum ibv_wc_status *st)
{
	struct iov src = {.len = len};
	enum exec ex =
	    len ? remote_mem(qp, pq, w, len, IBV_ACCESS_REMOTE_READ, &src.p, st) : EXEC_DONE;

	if (ex == EXEC_DONE && *st == IBV_WC_SUCCESS && len)
		copy_iov(dst, nd, &src, 1, len);
	return ex;
}

/*
 * The RDMA atomic itself, on the target's registered memory: application
 * data, not a word of the region's protocols, so not through shm_atomic.h.
 * seq_cst, as an HCA's atomic is atomic against every other access to the
 * word, the target CPU's own included. Returns the value found.
 */
static uint64_t rdma_atomic_on_app_memory(uint64_t *p, const struct ivrdma_swqe *w)
{
	uint64_t old = w->compare_add;

	if (w->opcode == IBV_WR_ATOMIC_CMP_AND_SWP)
		__atomic_compare_exchange_n(p, &old, w->swap, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
	else
		old = __atomic_fetch_add(p, w->compare_add, __ATOMIC_SEQ_CST);
	return old;
}

/*
 * The target's 8-byte word of an atomic (access: what the operation needs
 * of the MR), aligned in the WR and in the translation: the MR slot's
 * iova and region offset are its owner's word, they may disagree modulo
 * 8, and a locked operation across a cache line is a split lock (a
 * fault, or the whole machine slowed).
 */
static enum exec atomic_word(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, struct ivrdma_swqe *w,
			     int access, uint64_t **p, enum ibv_wc_status *st)
{
	enum exec ex;

	if (w->remote_addr % 8)
		goto misaligned;
	ex = remote_mem(qp, pq, w, 8, access, (uint8_t **)p, st);
	if (ex != EXEC_DONE || *st != IBV_WC_SUCCESS || !((uintptr_t)*p % 8))
		return ex; /* remote_mem() told the responder of its own errors */
misaligned:
	responder_error(qp, pq, IVRDMA_QP_ASYNC_REQ_ERR);
	*st = IBV_WC_REM_INV_REQ_ERR;
	return EXEC_DONE;
}

static enum exec do_atomic(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq, struct ivrdma_swqe *w,
			   struct iov *dst, int nd, uint64_t len, enum ibv_wc_status *st)
{
	uint64_t *p, old;
	enum exec ex;

	if (nd != 1 || len != 8) {
		*st = IBV_WC_LOC_LEN_ERR;
		return EXEC_DONE;
	}
	ex = atomic_word(qp, pq, w, IBV_ACCESS_REMOTE_ATOMIC, &p, st);
	if (ex != EXEC_DONE || *st != IBV_WC_SUCCESS)
		return ex;
	old = rdma_atomic_on_app_memory(p, w);
	memcpy(dst[0].p, &old, 8);
	return EXEC_DONE;
}

/*
 * An atomic write: 8 bytes stored at once, as an HCA's atomic write is
 * single-copy atomic; it needs remote write access (it is a write).
 */
static enum exec do_atomic_write(struct ivrdma_qp *qp, struct ivrdma_peer_qp *pq,
				 struct ivrdma_swqe *w, struct iov *src, int ns, uint64_t len,
				 enum ibv_wc_status *st)
{
	uint64_t *p, v = 0;
	struct iov dst = {.p = (uint8_t *)&v, .len = 8};
	enum exec ex;

	if (len != 8) {
		*st = IBV_WC_LOC_LEN_ERR;
		return EXEC_DONE;
	}
	ex = atomic_word(qp, pq, w, IBV_ACCESS_REMOTE_WRITE, &p, st);
	if (ex != EXEC_DONE || *st != IBV_WC_SUCCESS)
		return ex;
	copy_iov(&dst, 1, src, ns, 8);
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST); /* application memory, as in do_atomic() */
	return EXEC_DONE;
}

/*
 * Can the target take work from me now? *deliver is false when the work
 * is over without reaching it (peer gone, or UC dropping).
 */
static enum exec target_ready(struct ivrdma_qp *qp, enum ibv_wc_status *st, bool *deliver)
{
	struct ivrdma_context *ctx = to_ictx(qp->vqp.qp.context);
	struct ivrdma_qp_slot *s = qp->peer.slot;
	uint32_t state;

	*deliver = false;
	if (!ivrdma_peer_alive(ctx, &qp->peer)) {
		/*
		 * Gone: no answer will ever come. RC retries per retry_cnt and
		 * timeout as an HCA would before IBV_WC_RETRY_EXC_ERR (a peer
		 * that exits right after its last receive must not fail sends
		 * already on the wire); UC never waits.
		 */
		*st = IBV_WC_SUCCESS;
		return reliable(qp) ? EXEC_NO_ACK : EXEC_DONE;
	}
	state = shm_load_acquire32(&s->state);
	if (!ivrdma_state_receives(state) ||
	    shm_load_relaxed32(&s->dest_qpn) != qp->vqp.qp.qp_num ||
	    shm_load_relaxed16(&s->dest_lid) != ctx->lid) {
		if (qp->vqp.qp.qp_type == IBV_QPT_UC)
			return EXEC_DONE; /* dropped silently */
		return EXEC_NO_ACK;
	}
	if (state == IBV_QPS_RTR)
		note_arrival(ctx, &qp->peer);
	*deliver = true;
	return EXEC_DONE;
}

/* A datagram larger than the MTU never leaves; one that cannot be delivered is lost. */
static enum exec execute_ud(struct ivrdma_qp *qp, struct ivrdma_swqe *w, struct ivrdma_cqe *e)
{
	struct iov v[IVRDMA_MAX_SGE];
	uint64_t len;
	int nv;
	enum ibv_wc_status st;
	enum exec ex = local_iov(qp, w, 0, v, &nv, &len, &st);

	if (ex != EXEC_DONE)
		return ex;
	e->byte_len = (uint32_t)len;
	if (st == IBV_WC_SUCCESS && len > IVRDMA_UD_MTU)
		st = IBV_WC_LOC_LEN_ERR;
	if (st == IBV_WC_SUCCESS)
		ex = do_datagram(qp, w, v, nv, len);
	e->status = st;
	return ex;
}

static enum exec execute(struct ivrdma_qp *qp, struct ivrdma_swqe *w, struct ivrdma_cqe *e)
{
	int access = w->opcode == IBV_WR_RDMA_READ || w->opcode == IBV_WR_ATOMIC_CMP_AND_SWP ||
			     w->opcode == IBV_WR_ATOMIC_FETCH_AND_ADD
			 ? IBV_ACCESS_LOCAL_WRITE
			 : 0;
	enum ibv_wc_status st = IBV_WC_SUCCESS;
	struct iov v[IVRDMA_MAX_SGE];
	uint64_t len;
	int nv;
	enum exec ex;
	bool deliver;
	struct ivrdma_peer_qp *pq = &qp->peer;

	if (w->opcode == IBV_WR_BIND_MW || w->opcode == IBV_WR_LOCAL_INV) {
		/* Local: the window's slot is this context's. */
		e->status = w->opcode == IBV_WR_BIND_MW
				? ivrdma_mw_bind_exec(qp, &w->bind)
				: ivrdma_mw_local_inv(qp, w->invalidate_rkey);
		return EXEC_DONE;
	}
	if (qp->vqp.qp.qp_type == IBV_QPT_UD)
		return execute_ud(qp, w, e);
	ex = local_iov(qp, w, access, v, &nv, &len, &st);
	if (ex != EXEC_DONE)
		return ex;
	e->byte_len = (uint32_t)len;
	if (st != IBV_WC_SUCCESS) {
		e->status = st;
		return EXEC_DONE;
	}
	ex = target_ready(qp, &st, &deliver);
	if (deliver && qp->vqp.qp.qp_type == IBV_QPT_XRC_SEND)
		pq = ivrdma_xrc_target(qp, w->remote_srqn, &st);
	if (!deliver || !pq) {
		e->status = st;
		return ex;
	}
	switch (w->opcode) {
	case IBV_WR_SEND:
	case IBV_WR_SEND_WITH_IMM:
	case IBV_WR_SEND_WITH_INV:
		ex = do_send(qp, pq, w, v, nv, len, &st);
		break;
	case IBV_WR_RDMA_WRITE:
	case IBV_WR_RDMA_WRITE_WITH_IMM:
		ex = do_write(qp, pq, w, v, nv, len, &st);
		break;
	case IBV_WR_RDMA_READ:
		ex = do_read(qp, pq, w, v, nv, len, &st);
		break;
	case IBV_WR_ATOMIC_WRITE:
		ex = do_atomic_write(qp, pq, w, v, nv, len, &st);
		break;
	default:
		ex = do_atomic(qp, pq, w, v, nv, len, &st);
		break;
	}
	if (qp->vqp.qp.qp_type == IBV_QPT_UC && st != IBV_WC_SUCCESS && st != IBV_WC_LOC_LEN_ERR &&
	    st != IBV_WC_LOC_PROT_ERR)
		st = IBV_WC_SUCCESS; /* UC: the responder's errors never reach the requester */
	e->status = st;
	return ex;
}

static enum ibv_wc_opcode wc_opcode(enum ibv_wr_opcode op)
{
	switch (op) {
	case IBV_WR_RDMA_WRITE:
	case IBV_WR_RDMA_WRITE_WITH_IMM:
		return IBV_WC_RDMA_WRITE;
	case IBV_WR_RDMA_READ:
		return IBV_WC_RDMA_READ;
	case IBV_WR_ATOMIC_CMP_AND_SWP:
		return IBV_WC_COMP_SWAP;
	case IBV_WR_ATOMIC_FETCH_AND_ADD:
		return IBV_WC_FETCH_ADD;
	case IBV_WR_ATOMIC_WRITE:
		return IBV_WC_ATOMIC_WRITE;
	case IBV_WR_BIND_MW:
		return IBV_WC_BIND_MW;
	case IBV_WR_LOCAL_INV:
		return IBV_WC_LOCAL_INV;
	default:
		return IBV_WC_SEND;
	}
}

void ivrdma_qp_complete(struct ivrdma_qp *qp, struct ivrdma_cq *cq, const struct ivrdma_cqe *e)
{
	switch (ivrdma_cq_push(&cq->view, e)) {
	case IVRDMA_CQ_PUSH_FULL:
		ivrdma_dbg("CQ %u overflow: completion of QP %#x lost", cq->slot,
			   qp->vqp.qp.qp_num);
		ivrdma_cq_wake(to_ictx(qp->vqp.qp.context), &cq->view); /* IBV_EVENT_CQ_ERR */
		break;
	case IVRDMA_CQ_PUSH_WAKE:
		ivrdma_cq_wake(to_ictx(qp->vqp.qp.context), &cq->view);
		break;
	}
}

/* The send queue slot 'ahead' places after the head (a division costs more). */
static uint32_t sq_index(const struct ivrdma_qp *qp, uint32_t ahead)
{
	uint32_t i = qp->sq_head + ahead;

	return i >= qp->cap.max_send_wr ? i - qp->cap.max_send_wr : i;
}

/* A WR executed successfully, by opcode class. Under sq_lock. */
static void count_done(struct ivrdma_qp *qp, enum ibv_wr_opcode op, uint32_t len)
{
	switch (op) {
	case IBV_WR_RDMA_WRITE:
	case IBV_WR_RDMA_WRITE_WITH_IMM:
		IVRDMA_COUNT(qp, write_ops, 1);
		IVRDMA_COUNT(qp, write_bytes, len);
		break;
	case IBV_WR_RDMA_READ:
		IVRDMA_COUNT(qp, read_ops, 1);
		IVRDMA_COUNT(qp, read_bytes, len);
		break;
	case IBV_WR_ATOMIC_CMP_AND_SWP:
	case IBV_WR_ATOMIC_FETCH_AND_ADD:
	case IBV_WR_ATOMIC_WRITE:
		IVRDMA_COUNT(qp, atomic_ops, 1);
		IVRDMA_COUNT(qp, atomic_bytes, len);
		break;
	case IBV_WR_BIND_MW:
	case IBV_WR_LOCAL_INV:
		break; /* no data moves */
	default:
		IVRDMA_COUNT(qp, send_ops, 1);
		IVRDMA_COUNT(qp, send_bytes, len);
	}
}

static void complete_head(struct ivrdma_qp *qp, struct ivrdma_cqe *e)
{
	struct ivrdma_swqe *w = &qp->sq[qp->sq_head];

	e->wr_id = w->wr_id;
	e->opcode = wc_opcode(w->opcode);
	e->qp_num = qp->vqp.qp.qp_num;
	if (e->status == IBV_WC_SUCCESS)
		count_done(qp, w->opcode, e->byte_len);
	else if (e->status == IBV_WC_WR_FLUSH_ERR)
		IVRDMA_COUNT(qp, send_flushed, 1);
	else
		IVRDMA_COUNT(qp, send_errors, 1);
	if (e->status != IBV_WC_SUCCESS || qp->sq_sig_all || (w->send_flags & IBV_SEND_SIGNALED)) {
		IVRDMA_COUNT(qp, send_cqes, 1);
		ivrdma_qp_complete(qp, qp->send_cq, e);
	}
	qp->sq_head = sq_index(qp, 1);
	qp->sq_count--;
	qp->rnr_left = qp->attr.rnr_retry;
	qp->retry_left = qp->attr.retry_cnt;
}

/* Everything not yet executed completes with IBV_WC_WR_FLUSH_ERR. */
void ivrdma_qp_flush_sq(struct ivrdma_qp *qp)
{
	while (qp->sq_count) {
		struct ivrdma_cqe e = {.status = IBV_WC_WR_FLUSH_ERR};

		complete_head(qp, &e);
	}
}

/*
 * A send completed in error. RC and UC QPs fail as a whole; a UD QP's
 * send queue alone stops (SQE) and its receives go on, as the IB spec has it.
 */
static void send_queue_error(struct ivrdma_qp *qp)
{
	if (qp->vqp.qp.qp_type != IBV_QPT_UD) {
		ivrdma_qp_enter_error(qp);
		return;
	}
	qp->vqp.qp.state = IBV_QPS_SQE;
	shm_store_release32(&qp->s->state, IBV_QPS_SQE);
	ivrdma_qp_flush_sq(qp);
}

/*
 * The other end's process died: no acknowledgement will ever come, so the
 * WR at the head fails as its retries would (IBV_WC_RETRY_EXC_ERR), the
 * rest flush, and the application hears of it (IBV_EVENT_QP_FATAL).
 * Under sq_lock.
 */
void ivrdma_qp_peer_lost(struct ivrdma_qp *qp)
{
	if (qp->sq_count) {
		struct ivrdma_cqe e = {.status = IBV_WC_RETRY_EXC_ERR};

		complete_head(qp, &e);
	}
	ivrdma_qp_enter_error(qp);
	ivrdma_qp_event(qp, IBV_EVENT_QP_FATAL);
}

/* SQD: nothing in flight any more; the event, if it was asked for. */
static void sq_drained(struct ivrdma_qp *qp)
{
	if (!qp->sqd_notify)
		return;
	qp->sqd_notify = false;
	ivrdma_qp_event(qp, IBV_EVENT_SQ_DRAINED);
}

/* A wait: retry later, or fail once the retry budget is spent. */
static bool wait_or_fail(struct ivrdma_qp *qp, enum exec ex, struct ivrdma_cqe *e)
{
	int *left = ex == EXEC_RNR ? &qp->rnr_left : &qp->retry_left;
	uint64_t wait_ns;

	if (ex == EXEC_MOVING) {
		qp->next_try_ns = ivrdma_now_ns() + MOVING_WAIT_NS;
		return true;
	}
	if (ex == EXEC_RNR && qp->attr.rnr_retry == 7) {
		/* 7: retry forever */
	} else if ((*left)-- <= 0) {
		e->status = ex == EXEC_RNR ? IBV_WC_RNR_RETRY_EXC_ERR : IBV_WC_RETRY_EXC_ERR;
		return false;
	}
	if (ex == EXEC_RNR) {
		IVRDMA_COUNT(qp, rnr_retries, 1);
		wait_ns =
		    rnr_10us[shm_load_relaxed8(&qp->peer.slot->min_rnr_timer) & 31] * 10000ull;
	} else {
		wait_ns = 4096ull << (qp->attr.timeout ? qp->attr.timeout : 14);
	}
	qp->next_try_ns = ivrdma_now_ns() + wait_ns;
	return true;
}

/* An execution begins (ivrdma_mr_flags): exec_seq odd, with a full barrier. */
static void exec_enter(struct ivrdma_qp *qp)
{
	shm_exchange_seq_cst64(&qp->s->exec_seq, ++qp->exec_seq);
}

/*
 * ... and ends: what it wrote is done before a mover sees exec_seq even.
 * No receive completion is under way any more: a path that took a
 * receive and wrote no completion for it leaves no intent behind.
 */
static void exec_leave(struct ivrdma_qp *qp)
{
	ivrdma_intent_to(&qp->s->intent, IVRDMA_INTENT_IDLE);
	shm_store_release64(&qp->s->exec_seq, ++qp->exec_seq);
}

/*
 * Executes queued WRs in order until one has to wait. In SQD only the WR
 * already under way (waiting on a retry timer) goes on. Under sq_lock.
 */
static void run_queue(struct ivrdma_qp *qp)
{
	while (qp->sq_count) {
		struct ivrdma_cqe e = {0};
		enum exec ex;

		if (qp->vqp.qp.state == IBV_QPS_ERR || qp->vqp.qp.state == IBV_QPS_SQE) {
			ivrdma_qp_flush_sq(qp);
			return;
		}
		if (qp->vqp.qp.state == IBV_QPS_SQD && !qp->next_try_ns)
			break;
		if (qp->next_try_ns && ivrdma_now_ns() < qp->next_try_ns)
			return;
		qp->next_try_ns = 0;
		ex = execute(qp, &qp->sq[qp->sq_head], &e);
		if (ex != EXEC_DONE && wait_or_fail(qp, ex, &e))
			return;
		complete_head(qp, &e);
		/* UC keeps only local errors (execute()): they fail the QP as on RC. */
		if (e.status != IBV_WC_SUCCESS)
			send_queue_error(qp);
	}
	if (qp->vqp.qp.state == IBV_QPS_SQD)
		sq_drained(qp);
}

/* run_queue() as one execution (ivrdma_mr_flags) when there is work. */
static void run(struct ivrdma_qp *qp)
{
	if (!qp->sq_count) {
		run_queue(qp);
		return;
	}
	exec_enter(qp);
	run_queue(qp);
	exec_leave(qp);
}

static uint64_t wr_length(const struct ibv_send_wr *wr)
{
	uint64_t len = 0;

	for (int i = 0; i < wr->num_sge; i++)
		len += wr->sg_list[i].length;
	return len;
}

static int check_wr(struct ivrdma_qp *qp, const struct ibv_send_wr *wr)
{
	enum ibv_qp_state state = qp->vqp.qp.state;

	if (qp->vqp.qp.qp_type == IBV_QPT_XRC_RECV)
		return EINVAL; /* it only receives, into its domain's SRQs */
	if (state != IBV_QPS_RTS && state != IBV_QPS_ERR && state != IBV_QPS_SQE &&
	    state != IBV_QPS_SQD)
		return EINVAL;
	if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->cap.max_send_sge)
		return EINVAL;
	if (qp->vqp.qp.qp_type == IBV_QPT_UD &&
	    ((wr->opcode != IBV_WR_SEND && wr->opcode != IBV_WR_SEND_WITH_IMM) || !wr->wr.ud.ah))
		return EINVAL;
	switch (wr->opcode) {
	case IBV_WR_SEND:
	case IBV_WR_SEND_WITH_IMM:
	case IBV_WR_RDMA_WRITE:
	case IBV_WR_RDMA_WRITE_WITH_IMM:
		break;
	case IBV_WR_RDMA_READ:
	case IBV_WR_ATOMIC_CMP_AND_SWP:
	case IBV_WR_ATOMIC_FETCH_AND_ADD:
		if (!reliable(qp) || (wr->send_flags & IBV_SEND_INLINE))
			return EINVAL;
		break;
	case IBV_WR_ATOMIC_WRITE: /* 8 bytes, from SGEs or inline */
		if (!reliable(qp) || wr_length(wr) != 8)
			return EINVAL;
		break;
	case IBV_WR_SEND_WITH_INV:
		if (qp->vqp.qp.qp_type == IBV_QPT_UD)
			return EINVAL;
		break;
	case IBV_WR_BIND_MW: /* type 2 here; type 1 through ibv_bind_mw */
	case IBV_WR_LOCAL_INV:
		if (qp->vqp.qp.qp_type == IBV_QPT_UD ||
		    (wr->opcode == IBV_WR_BIND_MW && !wr->bind_mw.mw))
			return EINVAL;
		break;
	default:
		return EINVAL;
	}
	if ((wr->send_flags & IBV_SEND_INLINE) && wr_length(wr) > qp->cap.max_inline_data)
		return EINVAL;
	return qp->sq_count == qp->cap.max_send_wr ? ENOMEM : 0;
}

static void enqueue(struct ivrdma_qp *qp, const struct ibv_send_wr *wr)
{
	struct ivrdma_swqe *w = &qp->sq[sq_index(qp, qp->sq_count)];

	w->wr_id = wr->wr_id;
	w->opcode = wr->opcode;
	w->send_flags = wr->send_flags;
	w->imm_data = wr->imm_data;
	w->num_sge = (uint32_t)wr->num_sge;
	w->inline_len = 0;
	if (wr->send_flags & IBV_SEND_INLINE) /* the buffers may be reused at once */
		for (int i = 0; i < wr->num_sge; i++) {
			move_bytes(w->inline_buf + w->inline_len,
				   (const uint8_t *)(uintptr_t)wr->sg_list[i].addr,
				   wr->sg_list[i].length);
			w->inline_len += wr->sg_list[i].length;
		}
	else /* the SGEs only: inline data is in inline_buf */
		for (int i = 0; i < wr->num_sge; i++)
			w->sge[i] = wr->sg_list[i];
	if (wr->opcode == IBV_WR_ATOMIC_CMP_AND_SWP || wr->opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
		w->remote_addr = wr->wr.atomic.remote_addr;
		w->rkey = wr->wr.atomic.rkey;
		w->compare_add = wr->wr.atomic.compare_add;
		w->swap = wr->wr.atomic.swap;
	} else {
		w->remote_addr = wr->wr.rdma.remote_addr;
		w->rkey = wr->wr.rdma.rkey;
	}
	if (qp->vqp.qp.qp_type == IBV_QPT_UD) {
		w->ah = to_iah(wr->wr.ud.ah);
		w->remote_qpn = wr->wr.ud.remote_qpn;
		w->remote_qkey = wr->wr.ud.remote_qkey;
	}
	if (qp->vqp.qp.qp_type == IBV_QPT_XRC_SEND)
		w->remote_srqn = wr->qp_type.xrc.remote_srqn;
	if (wr->opcode == IBV_WR_LOCAL_INV || wr->opcode == IBV_WR_SEND_WITH_INV)
		w->invalidate_rkey = wr->invalidate_rkey;
	if (wr->opcode == IBV_WR_BIND_MW)
		w->bind = (struct ivrdma_mw_bind){.mw = wr->bind_mw.mw,
						  .rkey = wr->bind_mw.rkey,
						  .mr = wr->bind_mw.bind_info.mr,
						  .addr = wr->bind_mw.bind_info.addr,
						  .length = wr->bind_mw.bind_info.length,
						  .access = wr->bind_mw.bind_info.mw_access_flags};
	qp->sq_count++;
}

/* Keeps the context's list of QPs with waiting WRs current. */
static void track_pending(struct ivrdma_context *ctx, struct ivrdma_qp *qp)
{
	bool want = qp->sq_count != 0;

	if (want == qp->on_pending_list)
		return;
	pthread_mutex_lock(&ctx->pending_lock);
	if (want) {
		qp->pending_next = ctx->pending;
		ctx->pending = qp;
		/* The event thread keeps timers only while WRs wait: wake it to start. */
		if (atomic_fetch_add(&ctx->nr_pending, 1) == 0)
			ivrdma_ring_peer(ctx, ctx->peer_id, IVRDMA_VEC_CONTROL);
	} else {
		for (struct ivrdma_qp **pp = &ctx->pending; *pp; pp = &(*pp)->pending_next)
			if (*pp == qp) {
				*pp = qp->pending_next;
				atomic_fetch_sub(&ctx->nr_pending, 1);
				break;
			}
	}
	qp->on_pending_list = want;
	pthread_mutex_unlock(&ctx->pending_lock);
}

/* Will wr, at the head of an idle send queue, take a receive of the connected QP? */
static bool takes_receive(const struct ivrdma_qp *qp, const struct ibv_send_wr *wr)
{
	if (!wr || qp->sq_count ||
	    (qp->vqp.qp.qp_type != IBV_QPT_RC && qp->vqp.qp.qp_type != IBV_QPT_UC))
		return false;
	return wr->opcode == IBV_WR_SEND || wr->opcode == IBV_WR_SEND_WITH_IMM ||
	       wr->opcode == IBV_WR_SEND_WITH_INV || wr->opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
}

int ivrdma_post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr)
{
	struct ivrdma_qp *qp = to_iqp(ibqp);
	int rc = 0;

	ivrdma_queue_lock(&qp->sq_lock);
	if (takes_receive(qp, wr))
		ivrdma_rq_prefetch(&qp->peer.rq);
	/*
	 * A list runs as one execution (one exec_enter fence, not one per
	 * WR), after the WRs before a bad one are queued, as they would have
	 * run one by one; a list longer than the room left runs what is
	 * queued to make room, as it would have.
	 */
	for (; wr; wr = wr->next) {
		rc = check_wr(qp, wr);
		if (rc == ENOMEM && qp->sq_count) {
			run(qp);
			rc = check_wr(qp, wr);
		}
		if (rc) {
			*bad_wr = wr;
			break;
		}
		enqueue(qp, wr);
		IVRDMA_COUNT(qp, sq_posted, 1);
	}
	run(qp);
	track_pending(to_ictx(ibqp->context), qp);
	ivrdma_queue_unlock(&qp->sq_lock);
	return rc;
}

/* Checks and queues one WR without running it: the wr_* API batches. Under sq_lock. */
int ivrdma_sq_queue(struct ivrdma_qp *qp, const struct ibv_send_wr *wr)
{
	int rc = check_wr(qp, wr);

	if (!rc)
		enqueue(qp, wr);
	return rc;
}

/* Runs what is queued, as post_send does after each WR. Under sq_lock. */
void ivrdma_sq_run(struct ivrdma_qp *qp)
{
	run(qp);
	track_pending(to_ictx(qp->vqp.qp.context), qp);
}

/* Retries waiting WRs of every QP of the context; called from poll_cq. */
void ivrdma_progress(struct ivrdma_context *ctx)
{
	pthread_mutex_lock(&ctx->pending_lock);
	for (struct ivrdma_qp **pp = &ctx->pending; *pp;) {
		struct ivrdma_qp *qp = *pp;

		/* Lock order is sq_lock then pending_lock: only try here. */
		if (!ivrdma_queue_trylock(&qp->sq_lock)) {
			pp = &qp->pending_next;
			continue;
		}
		run(qp);
		if (!qp->sq_count) {
			*pp = qp->pending_next;
			qp->on_pending_list = false;
			atomic_fetch_sub(&ctx->nr_pending, 1);
		} else {
			pp = &qp->pending_next;
		}
		ivrdma_queue_unlock(&qp->sq_lock);
	}
	pthread_mutex_unlock(&ctx->pending_lock);
}

/*
 * 1 where copy_iov() writes the data: its last byte is stored after all
 * the others (release), so a poller of the last byte has the whole
 * message, as ibv_query_qp_data_in_order(3) promises the caller.
 */
int ivrdma_query_qp_data_in_order(struct ibv_qp *qp, enum ibv_wr_opcode op, uint32_t flags)
{
	if (flags || qp->qp_type == IBV_QPT_XRC_RECV)
		return 0;
	switch (op) {
	case IBV_WR_SEND:
	case IBV_WR_SEND_WITH_IMM:
	case IBV_WR_RDMA_WRITE:
	case IBV_WR_RDMA_WRITE_WITH_IMM:
	case IBV_WR_RDMA_READ:
		return 1;
	default:
		return 0;
	}
}
