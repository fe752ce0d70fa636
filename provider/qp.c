// SPDX-License-Identifier: MIT
/*
 * Queue pairs: creation with a receive ring in the region, the IB state
 * machine with its attribute-mask rules, connection at RTR, query and
 * destruction. The send side is qp_tx.c, the receive side qp_rx.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "ivrdma.h"
#include "shm_atomic.h"

/*
 * Every QP of the process, for what looks at all of a context's QPs (the
 * event thread, a suspend) and for ibv_open_qp of an XRC receive QP,
 * which may be another context's. all_lock also covers each context's
 * qp_by_slot table.
 */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ivrdma_qp *all_qps;

int ivrdma_qp_table_init(struct ivrdma_context *ctx)
{
	ctx->qp_by_slot = calloc(ctx->region.qps.entries, sizeof(*ctx->qp_by_slot));
	return ctx->qp_by_slot ? 0 : -ENOMEM;
}

/* The entry of QP number 'qpn', or NULL (ivrdma_qpn_slot). */
static struct ivrdma_qp_entry *entry_of_num(const struct ivrdma_context *ctx, uint32_t qpn)
{
	uint32_t slot;

	return ivrdma_qpn_slot(ctx, qpn, &slot) ? &ctx->qp_by_slot[slot] : NULL;
}

/* My live QP numbered 'qpn', or NULL. Under all_lock: it stays alive while that is held. */
static struct ivrdma_qp *qp_of_num_locked(const struct ivrdma_context *ctx, uint32_t qpn)
{
	struct ivrdma_qp_entry *en = entry_of_num(ctx, qpn);

	return en ? atomic_load_explicit(&en->qp, memory_order_acquire) : NULL;
}

/*
 * For a poller of 'cq', under its lock: my live QP numbered 'qpn' if 'cq'
 * is its receive CQ, else NULL. The QP is not touched to find out: the
 * entry's recv_cq, read first, was written after its qp, and the QP that
 * wrote it cannot leave the slot before its destroy has waited for this
 * lock; any other QP of the slot, or none, may be freed meanwhile.
 */
struct ivrdma_qp *ivrdma_qp_polled(const struct ivrdma_context *ctx, uint32_t qpn,
				   const struct ivrdma_cq *cq)
{
	struct ivrdma_qp_entry *en = entry_of_num(ctx, qpn);

	if (!en || atomic_load_explicit(&en->recv_cq, memory_order_acquire) != cq)
		return NULL;
	return atomic_load_explicit(&en->qp, memory_order_relaxed);
}

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t n = 1;

	while (n < v)
		n <<= 1;
	return n;
}

/*
 * XRC send QPs have no receive side, XRC receive QPs neither a send side
 * nor CQs (their SRQs have them): the CQs they were given are not theirs.
 */
static int check_caps(struct ibv_qp_init_attr *a)
{
	switch (a->qp_type) {
	case IBV_QPT_RC:
	case IBV_QPT_UC:
	case IBV_QPT_UD:
		if (!a->send_cq || !a->recv_cq)
			return EINVAL;
		break;
	case IBV_QPT_XRC_SEND:
		if (!a->send_cq)
			return EINVAL;
		a->recv_cq = NULL;
		a->srq = NULL;
		a->cap.max_recv_wr = a->cap.max_recv_sge = 0;
		break;
	case IBV_QPT_XRC_RECV:
		a->send_cq = a->recv_cq = NULL;
		a->srq = NULL;
		a->cap = (struct ibv_qp_cap){0};
		break;
	default:
		return EOPNOTSUPP;
	}
	if (a->cap.max_send_wr > IVRDMA_MAX_WR || a->cap.max_send_sge > IVRDMA_MAX_SGE ||
	    a->cap.max_inline_data > IVRDMA_MAX_INLINE)
		return EINVAL;
	/* With an SRQ the receive caps are the SRQ's: ignored, as rxe and mlx5 ignore them. */
	if (!a->srq && (a->cap.max_recv_wr > IVRDMA_MAX_WR || a->cap.max_recv_sge > IVRDMA_MAX_SGE))
		return EINVAL;
	return 0;
}

static void free_qp(struct ivrdma_context *ctx, struct ivrdma_qp *qp)
{
	ivrdma_ring_free(ctx, qp->rq_first_chunk, qp->rq_nr_chunks);
	if (qp->s)
		ivrdma_slot_free(ctx, &ctx->region.qps, qp->slot);
	free(qp->sq);
	free(qp->inline_area);
	free(qp);
}

/* The receive ring in the region, described in the slot for initiators. */
static int make_rq(struct ivrdma_context *ctx, struct ivrdma_qp *qp)
{
	struct ivrdma_rq_desc *d = &qp->s->rq;
	uint32_t n = pow2_at_least(qp->cap.max_recv_wr ? qp->cap.max_recv_wr : 1);
	uint32_t stride = (uint32_t)IVRDMA_RQ_STRIDE(qp->cap.max_recv_sge);

	if (!ivrdma_ring_alloc(ctx, (uint64_t)n * stride, &qp->rq_first_chunk, &qp->rq_nr_chunks))
		return ENOMEM;
	d->ring_offset = ivrdma_chunk_offset(&ctx->region, qp->rq_first_chunk);
	d->nr_entries = n;
	d->stride = stride;
	d->max_sge = qp->cap.max_recv_sge;
	qp->cap.max_recv_wr = n;
	return ivrdma_rq_view(&ctx->region, d, &qp->s->rq_prod, &qp->s->rq_cons, ivrdma_qp_ring(qp),
			      &qp->rq)
		   ? EPROTO
		   : 0;
}

static int make_sq(struct ivrdma_qp *qp)
{
	uint32_t n = qp->cap.max_send_wr;

	qp->sq = calloc(n, sizeof(*qp->sq));
	if (!qp->sq)
		return ENOMEM;
	if (qp->cap.max_inline_data) {
		qp->inline_area = calloc(n, qp->cap.max_inline_data);
		if (!qp->inline_area)
			return ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++)
		qp->sq[i].inline_buf =
		    qp->inline_area ? qp->inline_area + (size_t)i * qp->cap.max_inline_data : NULL;
	return 0;
}

/* A QP slot with its rings, for a QP of 'attr' (checked); NULL with errno. */
static struct ivrdma_qp *qp_new(struct ivrdma_context *ctx, const struct ibv_qp_init_attr *attr)
{
	struct ivrdma_qp *qp = calloc(1, sizeof(*qp));
	int64_t idx;
	int rc;

	if (!qp)
		return ivrdma_fail_null(ENOMEM);
	ivrdma_queue_lock_init(&qp->sq_lock);
	pthread_mutex_init(&qp->vqp.qp.mutex, NULL);
	pthread_cond_init(&qp->vqp.qp.cond, NULL);
	ivrdma_queue_lock_init(&qp->rq_lock);
	qp->cap = attr->cap;
	qp->cap.max_send_wr = qp->cap.max_send_wr ? qp->cap.max_send_wr : 1;
	qp->cap.max_send_sge = qp->cap.max_send_sge ? qp->cap.max_send_sge : 1;
	qp->cap.max_recv_sge = qp->cap.max_recv_sge ? qp->cap.max_recv_sge : 1;
	/* As rxe's and mlx5's: the room of the send SGEs takes inline data too. */
	if (qp->cap.max_inline_data < qp->cap.max_send_sge * sizeof(struct ibv_sge))
		qp->cap.max_inline_data =
		    qp->cap.max_send_sge * sizeof(struct ibv_sge) < IVRDMA_MAX_INLINE
			? qp->cap.max_send_sge * (uint32_t)sizeof(struct ibv_sge)
			: IVRDMA_MAX_INLINE;
	if (!ivrdma_qp_type_has_rq(attr->qp_type) || attr->srq) /* the SRQ's caps apply */
		qp->cap.max_recv_wr = qp->cap.max_recv_sge = 0;
	idx = ivrdma_slot_alloc(ctx, &ctx->region.qps);
	if (idx < 0) {
		free_qp(ctx, qp);
		return ivrdma_fail_null(ENOMEM);
	}
	qp->slot = (uint32_t)idx;
	qp->s = ivrdma_table_entry(&ctx->region, &ctx->region.qps, qp->slot);
	/* Even, as qp->exec_seq, and no intent: a past owner may have died mid-execution. */
	shm_store_release64(&qp->s->intent.word, IVRDMA_INTENT_WORD(IVRDMA_INTENT_IDLE, 0, 0));
	shm_store_release64(&qp->s->exec_seq, qp->exec_seq);
	rc = attr->srq || !ivrdma_qp_type_has_rq(attr->qp_type) ? 0 : make_rq(ctx, qp);
	if (!rc)
		rc = make_sq(qp);
	if (rc) {
		free_qp(ctx, qp);
		return ivrdma_fail_null(rc);
	}
	return qp;
}

/* Takes a use of each CQ and SRQ the QP names, and describes them in its slot. */
static void qp_attach(struct ivrdma_qp *qp, const struct ibv_qp_init_attr *attr)
{
	qp->send_cq = attr->send_cq ? to_icq(attr->send_cq) : NULL;
	qp->recv_cq = attr->recv_cq ? to_icq(attr->recv_cq) : NULL;
	if (qp->send_cq)
		atomic_fetch_add(&qp->send_cq->users, 1);
	if (qp->recv_cq) {
		atomic_fetch_add(&qp->recv_cq->users, 1);
		qp->s->recv_cq = qp->recv_cq->slot;
	}
	if (attr->srq) {
		qp->srq = to_isrq(attr->srq);
		qp->s->srq = qp->srq->slot + 1;
		atomic_fetch_add(&qp->srq->users, 1);
	}
}

/* A QP of 'context'; an XRC receive QP has xrcd, and a PD only if it was given one. */
struct ibv_qp *ivrdma_qp_create(struct ibv_context *context, struct ibv_pd *pd,
				struct ibv_qp_init_attr *attr, struct ivrdma_xrcd *xrcd)
{
	struct ivrdma_context *ctx = to_ictx(context);
	struct ivrdma_qp *qp;
	int rc = ivrdma_context_left(ctx) ? EIO : check_caps(attr);

	if (rc)
		return ivrdma_fail_null(rc);
	qp = qp_new(ctx, attr);
	if (!qp)
		return NULL;
	qp->sq_sig_all = attr->sq_sig_all;
	qp->s->qp_type = attr->qp_type;
	qp->s->qpn = qp->slot + IVRDMA_QPN_BASE;
	qp->s->pd_handle = pd ? pd->handle : 0;
	qp_attach(qp, attr);
	if (xrcd) {
		qp->xrcd = xrcd;
		qp->s->xrcd = xrcd->id;
		atomic_fetch_add(&xrcd->users, 1);
	}
	ivrdma_rq_done_reset(ctx, qp);
	ivrdma_counters_qp_created(ctx, qp);
	shm_store_release32(&qp->s->state, IBV_QPS_RESET);
	qp->vqp.qp.context = context;
	qp->vqp.qp.qp_context = attr->qp_context;
	qp->vqp.qp.pd = pd;
	qp->vqp.qp.send_cq = attr->send_cq;
	qp->vqp.qp.recv_cq = attr->recv_cq;
	qp->vqp.qp.srq = attr->srq;
	qp->vqp.qp.handle = qp->slot;
	qp->vqp.qp.qp_num = qp->slot + IVRDMA_QPN_BASE;
	qp->vqp.qp.state = IBV_QPS_RESET;
	qp->vqp.qp.qp_type = attr->qp_type;
	pthread_mutex_lock(&all_lock);
	qp->all_next = all_qps;
	all_qps = qp;
	atomic_store_explicit(&ctx->qp_by_slot[qp->slot].qp, qp, memory_order_release);
	atomic_store_explicit(&ctx->qp_by_slot[qp->slot].recv_cq, qp->recv_cq,
			      memory_order_release);
	pthread_mutex_unlock(&all_lock);
	attr->cap = qp->cap;
	return &qp->vqp.qp;
}

struct ibv_qp *ivrdma_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	if (attr->qp_type == IBV_QPT_XRC_RECV)
		return ivrdma_fail_null(EINVAL); /* ibv_create_qp_ex with an XRC domain */
	return ivrdma_qp_create(pd->context, pd, attr, NULL);
}

struct ibv_qp *ivrdma_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr)
{
	struct ibv_qp_init_attr a = {
	    .qp_context = attr->qp_context,
	    .send_cq = attr->send_cq,
	    .recv_cq = attr->recv_cq,
	    .srq = attr->srq,
	    .cap = attr->cap,
	    .qp_type = attr->qp_type,
	    .sq_sig_all = attr->sq_sig_all,
	};
	const uint32_t known = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_XRCD |
			       IBV_QP_INIT_ATTR_SEND_OPS_FLAGS | IBV_QP_INIT_ATTR_CREATE_FLAGS;
	bool xrc_recv = attr->qp_type == IBV_QPT_XRC_RECV;
	struct ivrdma_xrcd *xrcd = NULL;
	struct ibv_qp *qp;
	int rc;

	if (attr->comp_mask & ~known)
		return ivrdma_fail_null(EOPNOTSUPP);
	/*
	 * The mask with no flags asks for nothing: rxe and mlx5 take it (some
	 * libraries always set it). Every flag there is is an HCA feature
	 * (loopback blocking, FCS scatter, VLAN stripping, a source QPN,
	 * padding) that ivrdma has not: refused as rxe refuses them.
	 */
	if ((attr->comp_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS) && attr->create_flags)
		return ivrdma_fail_null(EOPNOTSUPP);
	if (xrc_recv) { /* in an XRC domain, not a PD */
		if (!(attr->comp_mask & IBV_QP_INIT_ATTR_XRCD) || !attr->xrcd)
			return ivrdma_fail_null(EINVAL);
		xrcd = to_ixrcd(attr->xrcd);
	} else if (!(attr->comp_mask & IBV_QP_INIT_ATTR_PD) || !attr->pd) {
		return ivrdma_fail_null(EINVAL);
	}
	rc = ivrdma_qp_ex_check(attr);
	if (rc)
		return ivrdma_fail_null(rc);
	/* A receive QP keeps the PD it was given (librdmacm takes it for its SRQs), unused. */
	qp = ivrdma_qp_create(context, attr->comp_mask & IBV_QP_INIT_ATTR_PD ? attr->pd : NULL, &a,
			      xrcd);
	if (!qp)
		return NULL;
	if (xrcd) {
		to_iqp(qp)->vqp.comp_mask |= VERBS_QP_XRCD;
		to_iqp(qp)->vqp.xrcd = &xrcd->vxrcd;
	}
	attr->cap = a.cap;
	if (attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS)
		ivrdma_qp_ex_init(to_iqp(qp));
	return qp;
}

/* An ibv_open_qp handle goes; the QP it opens stays. */
static int close_opened(struct ivrdma_qp *h)
{
	atomic_fetch_sub(&h->opened->opens, 1);
	pthread_mutex_destroy(&h->vqp.qp.mutex);
	pthread_cond_destroy(&h->vqp.qp.cond);
	free(h);
	return 0;
}

struct ivrdma_qp *ivrdma_qp_open_by_num(uint32_t qpn, uint32_t xrcd_id)
{
	struct ivrdma_qp *found = NULL;

	pthread_mutex_lock(&all_lock);
	for (struct ivrdma_qp *qp = all_qps; qp && !found; qp = qp->all_next)
		if (qp->vqp.qp.qp_num == qpn && qp->xrcd && qp->xrcd->id == xrcd_id)
			found = qp;
	if (found)
		atomic_fetch_add(&found->opens, 1);
	pthread_mutex_unlock(&all_lock);
	return found;
}

int ivrdma_destroy_qp(struct ibv_qp *ibqp)
{
	struct ivrdma_qp *qp = to_iqp(ibqp);
	struct ivrdma_context *ctx = to_ictx(ibqp->context);

	if (qp->opened)
		return close_opened(qp);
	if (atomic_load(&qp->opens))
		return EBUSY; /* handles from ibv_open_qp still use it */

	pthread_mutex_lock(&all_lock);
	atomic_store_explicit(&ctx->qp_by_slot[qp->slot].recv_cq, NULL, memory_order_relaxed);
	atomic_store_explicit(&ctx->qp_by_slot[qp->slot].qp, NULL, memory_order_relaxed);
	for (struct ivrdma_qp **pp = &all_qps; *pp; pp = &(*pp)->all_next)
		if (*pp == qp) {
			*pp = qp->all_next;
			break;
		}
	pthread_mutex_unlock(&all_lock);
	pthread_mutex_lock(&ctx->pending_lock);
	for (struct ivrdma_qp **pp = &ctx->pending; *pp; pp = &(*pp)->pending_next)
		if (*pp == qp) {
			*pp = qp->pending_next;
			atomic_fetch_sub(&ctx->nr_pending, 1);
			break;
		}
	pthread_mutex_unlock(&ctx->pending_lock);
	/* The QP at the other end is told this one closed, rather than died. */
	if (qp->peer.slot && ivrdma_peer_alive(ctx, &qp->peer))
		shm_fetch_or32(&qp->peer.slot->async, IVRDMA_QP_ASYNC_PEER_CLOSED);
	/* Initiators see the state, then the slot's seq change: no new work arrives. */
	shm_store_release32(&qp->s->state, IBV_QPS_ERR);
	if (ibqp->qp_type == IBV_QPT_UD)
		ivrdma_mcast_detach_all(ctx, ibqp->qp_num);
	/* Unlinked above: the event thread has no more to say about it. */
	ivrdma_events_settle(ctx, (uintptr_t)ibqp, &qp->async_posted, &ibqp->mutex, &ibqp->cond,
			     &ibqp->events_completed);
	ivrdma_counters_qp_destroyed(ctx, qp);
	if (qp->send_cq)
		atomic_fetch_sub(&qp->send_cq->users, 1);
	if (qp->recv_cq)
		atomic_fetch_sub(&qp->recv_cq->users, 1);
	if (qp->srq)
		atomic_fetch_sub(&qp->srq->users, 1);
	if (qp->xrcd)
		atomic_fetch_sub(&qp->xrcd->users, 1);
	free_qp(ctx, qp);
	return 0;
}

/*
 * The QP fails: state ERR, everything posted completes with a flush, and
 * a QP on an SRQ says no WQE of the SRQ will be taken for it any more.
 * Under sq_lock; rq_lock keeps a concurrent post_recv out of the flush.
 */
void ivrdma_qp_enter_error(struct ivrdma_qp *qp)
{
	ivrdma_queue_lock(&qp->rq_lock);
	qp->vqp.qp.state = IBV_QPS_ERR;
	shm_store_release32(&qp->s->state, IBV_QPS_ERR);
	ivrdma_qp_flush_rq(qp);
	ivrdma_queue_unlock(&qp->rq_lock);
	ivrdma_qp_flush_sq(qp);
	if (qp->srq)
		ivrdma_qp_event(qp, IBV_EVENT_QP_LAST_WQE_REACHED);
}

void ivrdma_qp_event(struct ivrdma_qp *qp, enum ibv_event_type type)
{
	ivrdma_post_object_event(to_ictx(qp->vqp.qp.context), type, (uintptr_t)&qp->vqp.qp,
				 &qp->async_posted);
}

static bool connected(const struct ivrdma_qp *qp)
{
	enum ibv_qp_state st = qp->vqp.qp.state;

	return qp->vqp.qp.qp_type != IBV_QPT_UD && ivrdma_state_receives(st);
}

/* What initiators reported about this QP (enum ivrdma_qp_async). Under sq_lock. */
static void act_on_news(struct ivrdma_context *ctx, struct ivrdma_qp *qp, uint32_t news)
{
	static const struct {
		uint32_t bit;
		enum ibv_event_type event;
	} errors[] = {
	    {IVRDMA_QP_ASYNC_REQ_ERR, IBV_EVENT_QP_REQ_ERR},
	    {IVRDMA_QP_ASYNC_ACCESS_ERR, IBV_EVENT_QP_ACCESS_ERR},
	    {IVRDMA_QP_ASYNC_RECV_ERR, 0}, /* the failed receive's completion says it */
	};

	if (news & IVRDMA_QP_ASYNC_COMM_EST)
		ivrdma_qp_event(qp, IBV_EVENT_COMM_EST);
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		if (!(news & errors[i].bit) || !connected(qp))
			continue;
		ivrdma_qp_enter_error(qp);
		if (errors[i].event)
			ivrdma_qp_event(qp, errors[i].event);
	}
}

/*
 * The event thread's look at every QP of the context, on a control
 * doorbell: news from initiators, and connections whose other end died
 * (its process is gone without having destroyed its QP).
 */
void ivrdma_qps_check(struct ivrdma_context *ctx)
{
	pthread_mutex_lock(&all_lock);
	for (struct ivrdma_qp *qp = all_qps; qp; qp = qp->all_next) {
		uint32_t news;

		if (to_ictx(qp->vqp.qp.context) != ctx)
			continue;
		ivrdma_queue_lock(&qp->sq_lock);
		news = shm_fetch_and32(&qp->s->async, ~(uint32_t)IVRDMA_QP_ASYNC_PENDING);
		act_on_news(ctx, qp, news & IVRDMA_QP_ASYNC_PENDING);
		if (connected(qp) && !(news & IVRDMA_QP_ASYNC_PEER_CLOSED) &&
		    !ivrdma_owner_alive(&ctx->region, qp->peer.owner, -1))
			ivrdma_qp_peer_lost(qp);
		ivrdma_queue_unlock(&qp->sq_lock);
	}
	pthread_mutex_unlock(&all_lock);
}

/*
 * The path to node 'lid' goes down (it suspends; 0: my own node, so every
 * path): my QPs connected there fail as on an HCA, their work flushed,
 * with IBV_EVENT_QP_FATAL. Under sq_lock an execution of the QP is over.
 */
void ivrdma_qps_fail_toward(struct ivrdma_context *ctx, uint16_t lid)
{
	pthread_mutex_lock(&all_lock);
	for (struct ivrdma_qp *qp = all_qps; qp; qp = qp->all_next) {
		if (to_ictx(qp->vqp.qp.context) != ctx)
			continue;
		ivrdma_queue_lock(&qp->sq_lock);
		if (lid ? connected(qp) && qp->peer.lid == lid
			: qp->vqp.qp.state != IBV_QPS_RESET && qp->vqp.qp.state != IBV_QPS_ERR) {
			ivrdma_qp_enter_error(qp);
			ivrdma_qp_event(qp, IBV_EVENT_QP_FATAL);
		}
		/* A UD QP's next datagram there looks the node up, and finds it gone. */
		if (qp->vqp.qp.qp_type == IBV_QPT_UD && qp->ud_last.lid == lid)
			memset(&qp->ud_last, 0, sizeof(qp->ud_last));
		ivrdma_queue_unlock(&qp->sq_lock);
	}
	pthread_mutex_unlock(&all_lock);
}

/*
 * hold: takes all_lock and every QP's sq_lock and rq_lock of 'ctx' (no
 * post, flush or transition runs), telling 'run' each receive ring's
 * chunks; !hold gives them back. For suspend.c's swap of the region.
 */
void ivrdma_qps_hold(struct ivrdma_context *ctx, bool hold, ivrdma_chunk_run_fn *run, void *arg)
{
	if (hold)
		pthread_mutex_lock(&all_lock);
	for (struct ivrdma_qp *qp = all_qps; qp; qp = qp->all_next) {
		if (to_ictx(qp->vqp.qp.context) != ctx)
			continue;
		if (hold) {
			ivrdma_queue_lock(&qp->sq_lock);
			ivrdma_queue_lock(&qp->rq_lock);
			run(arg, qp->rq_first_chunk, qp->rq_nr_chunks);
		} else {
			ivrdma_queue_unlock(&qp->rq_lock);
			ivrdma_queue_unlock(&qp->sq_lock);
		}
	}
	if (!hold)
		pthread_mutex_unlock(&all_lock);
}

/*
 * A receive of QP 'qpn' completed in error (the initiator found it too
 * small or not writable): the QP goes to ERR and flushes, as on an HCA.
 * The owner's event thread does it too; whoever is first. A receive
 * ivrdmad completed for a sender that died (IVRDMA_VERR_SENDER_DIED)
 * fails the QP as the event thread does when it finds the other end
 * gone, IBV_EVENT_QP_FATAL included: one of the two, whichever is first.
 */
void ivrdma_qp_recv_failed(struct ivrdma_context *ctx, uint32_t qpn, bool sender_died)
{
	struct ivrdma_qp *qp;

	pthread_mutex_lock(&all_lock);
	qp = qp_of_num_locked(ctx, qpn);
	if (qp) {
		ivrdma_queue_lock(&qp->sq_lock);
		if (connected(qp) && sender_died)
			ivrdma_qp_peer_lost(qp);
		else if (connected(qp))
			ivrdma_qp_enter_error(qp);
		ivrdma_queue_unlock(&qp->sq_lock);
	}
	pthread_mutex_unlock(&all_lock);
}

int ivrdma_query_qp(struct ibv_qp *handle, struct ibv_qp_attr *attr, int attr_mask,
		    struct ibv_qp_init_attr *init_attr)
{
	struct ivrdma_qp *qp = to_iqp(handle)->opened ?: to_iqp(handle);
	struct ibv_qp *ibqp = &qp->vqp.qp;

	*attr = qp->attr;
	attr->qp_state = ibqp->state;
	attr->cur_qp_state = ibqp->state;
	attr->path_mtu = attr->path_mtu ? attr->path_mtu : IBV_MTU_4096;
	attr->cap = qp->cap;
	memset(init_attr, 0, sizeof(*init_attr));
	init_attr->qp_context = ibqp->qp_context;
	init_attr->send_cq = ibqp->send_cq;
	init_attr->recv_cq = ibqp->recv_cq;
	init_attr->srq = ibqp->srq;
	init_attr->cap = qp->cap;
	init_attr->qp_type = ibqp->qp_type;
	init_attr->sq_sig_all = qp->sq_sig_all;
	return 0;
}
