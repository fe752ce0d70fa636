// SPDX-License-Identifier: MIT
/*
 * The ibv_cq_ex polling API: start_poll / next_poll / end_poll and the
 * read_* accessors, over the same ring as ibv_poll_cq (cq.c). The entry
 * being read stays in the ring until the next next_poll or end_poll: only
 * then is cons published, which is what lets producers reuse the entry.
 */
#include <errno.h>
#include <stdlib.h>

#include "counters.h"
#include "ivrdma.h"
#include "shm_atomic.h"

/* What the CQE carries; VLANs and flow tags are not offered. */
#define SUPPORTED_WC_FLAGS                                                                         \
	(IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_IMM | IBV_WC_EX_WITH_QP_NUM |                    \
	 IBV_WC_EX_WITH_SRC_QP | IBV_WC_EX_WITH_SLID | IBV_WC_EX_WITH_SL |                         \
	 IBV_WC_EX_WITH_DLID_PATH_BITS | TIMESTAMP_WC_FLAGS)
#define TIMESTAMP_WC_FLAGS                                                                         \
	(IBV_WC_EX_WITH_COMPLETION_TIMESTAMP | IBV_WC_EX_WITH_COMPLETION_TIMESTAMP_WALLCLOCK)

static struct ivrdma_cq *xcq(struct ibv_cq_ex *c)
{
	return to_icq(ibv_cq_ex_to_cq(c));
}

static const struct ivrdma_cqe *cur(struct ibv_cq_ex *c)
{
	return ivrdma_cq_at_cons(xcq(c));
}

/* Presents the entry at cons, if it is complete. */
static int load(struct ivrdma_cq *cq)
{
	const struct ivrdma_cqe *e =
	    ivrdma_cq_ready(cq->rd->ring, cq->rd->mask, ivrdma_cq_cons(cq));

	if (!e) {
		cq->polling = false;
		return ENOENT;
	}
	cq->polling = true;
	ivrdma_rq_done_note(to_ictx(cq->vcq.cq_ex.context), e);
	if (e->opcode & IBV_WC_RECV) /* send completions count when written */
		ivrdma_count_recv(to_ictx(cq->vcq.cq_ex.context), cq, e);
	cq->vcq.cq_ex.wr_id = e->wr_id;
	cq->vcq.cq_ex.status = (enum ibv_wc_status)e->status;
	return 0;
}

static int start_poll(struct ibv_cq_ex *c, struct ibv_poll_cq_attr *attr)
{
	struct ivrdma_cq *cq = xcq(c);
	struct ivrdma_context *ctx = to_ictx(c->context);
	int rc;

	if (attr->comp_mask)
		return EINVAL;
	/* What poll_cq drives: waiting sends and armed SRQ limits. */
	if (atomic_load_explicit(&ctx->nr_pending, memory_order_relaxed))
		ivrdma_progress(ctx);
	if (atomic_load_explicit(&ctx->nr_armed_srqs, memory_order_relaxed))
		ivrdma_srq_check_limits(ctx);
	if (!ivrdma_cq_maybe_ready(cq))
		return ENOENT;
	ivrdma_queue_lock(&cq->lock);
	rc = load(cq);
	if (rc)
		ivrdma_queue_unlock(&cq->lock); /* ENOENT: the caller does not call end_poll */
	return rc;
}

static int next_poll(struct ibv_cq_ex *c)
{
	struct ivrdma_cq *cq = xcq(c);

	if (cq->polling)
		ivrdma_cq_advance(cq);
	return load(cq);
}

static void end_poll(struct ibv_cq_ex *c)
{
	struct ivrdma_cq *cq = xcq(c);

	if (cq->polling)
		ivrdma_cq_advance(cq);
	cq->polling = false;
	ivrdma_cq_hand_back(cq->view.slot, ivrdma_cq_cons(cq));
	ivrdma_queue_unlock(&cq->lock);
}

static enum ibv_wc_opcode read_opcode(struct ibv_cq_ex *c)
{
	return (enum ibv_wc_opcode)cur(c)->opcode;
}

static uint32_t read_vendor_err(struct ibv_cq_ex *c)
{
	return cur(c)->sender_died ? IVRDMA_VERR_SENDER_DIED : 0; /* the one vendor error */
}

/* The device clock is CLOCK_REALTIME in ns: the raw value is the wall clock's (layout.h). */
static uint64_t read_completion_ts(struct ibv_cq_ex *c)
{
	return cur(c)->timestamp;
}

static uint32_t read_byte_len(struct ibv_cq_ex *c)
{
	return cur(c)->byte_len;
}

static __be32 read_imm_data(struct ibv_cq_ex *c)
{
	return cur(c)->imm_data;
}

static uint32_t read_qp_num(struct ibv_cq_ex *c)
{
	return cur(c)->qp_num;
}

static uint32_t read_src_qp(struct ibv_cq_ex *c)
{
	return cur(c)->src_qp;
}

static unsigned int read_wc_flags(struct ibv_cq_ex *c)
{
	return cur(c)->wc_flags;
}

static uint32_t read_slid(struct ibv_cq_ex *c)
{
	return cur(c)->slid;
}

static uint8_t read_sl(struct ibv_cq_ex *c)
{
	return cur(c)->sl;
}

static uint8_t read_dlid_path_bits(struct ibv_cq_ex *c)
{
	return cur(c)->dlid_path_bits;
}

static void set_ops(struct ibv_cq_ex *c)
{
	c->start_poll = start_poll;
	c->next_poll = next_poll;
	c->end_poll = end_poll;
	c->read_opcode = read_opcode;
	c->read_vendor_err = read_vendor_err;
	c->read_byte_len = read_byte_len;
	c->read_imm_data = read_imm_data;
	c->read_qp_num = read_qp_num;
	c->read_src_qp = read_src_qp;
	c->read_wc_flags = read_wc_flags;
	c->read_slid = read_slid;
	c->read_sl = read_sl;
	c->read_dlid_path_bits = read_dlid_path_bits;
	c->read_completion_ts = read_completion_ts;
	c->read_completion_wallclock_ns = read_completion_ts;
}

struct ibv_cq_ex *ivrdma_create_cq_ex(struct ibv_context *context, struct ibv_cq_init_attr_ex *attr)
{
	struct ibv_cq *cq;

	if (attr->comp_mask & ~(uint32_t)(IBV_CQ_INIT_ATTR_MASK_FLAGS | IBV_CQ_INIT_ATTR_MASK_PD))
		return ivrdma_fail_null(EOPNOTSUPP);
	if ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) &&
	    (attr->flags & ~(uint32_t)IBV_CREATE_CQ_ATTR_SINGLE_THREADED))
		return ivrdma_fail_null(EOPNOTSUPP);
	if (attr->wc_flags & ~(uint64_t)SUPPORTED_WC_FLAGS)
		return ivrdma_fail_null(EOPNOTSUPP);
	if (attr->cqe > INT32_MAX)
		return ivrdma_fail_null(EINVAL);
	/* A CQ in a parent domain: the domain must be one, and is held while the CQ lives. */
	if ((attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_PD) &&
	    ivrdma_cq_parent_check(context, attr->parent_domain))
		return ivrdma_fail_null(EINVAL);
	/*
	 * libibverbs' wrapper of this op (verbs_init_cq) sets cq_context and
	 * channel, takes the channel's reference and inits the event mutex,
	 * as for ibv_create_cq: doing it here too would count the channel
	 * twice and ibv_destroy_comp_channel would stay EBUSY for ever.
	 */
	cq = ivrdma_create_cq(context, (int)attr->cqe, attr->channel, (int)attr->comp_vector);
	if (!cq)
		return NULL;
	if (attr->comp_mask & IBV_CQ_INIT_ATTR_MASK_PD) {
		to_icq(cq)->parent = attr->parent_domain;
		ivrdma_pd_get(attr->parent_domain);
	}
	if (attr->wc_flags & TIMESTAMP_WC_FLAGS) /* before any QP can use the CQ */
		shm_fetch_or32(&to_icq(cq)->view.slot->flags, IVRDMA_CQ_TIMESTAMPS);
	set_ops(&to_icq(cq)->vcq.cq_ex);
	return &to_icq(cq)->vcq.cq_ex;
}
