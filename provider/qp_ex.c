// SPDX-License-Identifier: MIT
/*
 * The ibv_qp_ex work-request builders (wr_start .. wr_complete), as
 * perftest uses them by default. Each builder fills the same struct
 * ibv_send_wr that ibv_post_send takes; its last setter (the data, and on
 * UD the address or on XRC the SRQ number, in either order; or the next
 * builder, or wr_complete) checks and queues it through the one path
 * post_send uses, and wr_complete executes the batch. The send queue lock
 * is held from wr_start to wr_complete/wr_abort, so a batch is atomic and
 * wr_abort simply forgets what was queued since wr_start.
 */
#include <errno.h>
#include <string.h>

#include "counters.h"
#include "ivrdma.h"

#define SUPPORTED_OPS                                                                              \
	(IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM | IBV_QP_EX_WITH_RDMA_WRITE |          \
	 IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM | IBV_QP_EX_WITH_RDMA_READ |                           \
	 IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP | IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD |                 \
	 IBV_QP_EX_WITH_ATOMIC_WRITE | IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_LOCAL_INV |         \
	 IBV_QP_EX_WITH_SEND_WITH_INV)
#define RC_ONLY_OPS                                                                                \
	(IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |                            \
	 IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD | IBV_QP_EX_WITH_ATOMIC_WRITE)

static struct ivrdma_qp *xqp(struct ibv_qp_ex *q)
{
	return to_iqp(&q->qp_base);
}

/* Queues the WR being built, once; the first error sticks for wr_complete. */
static void finish(struct ivrdma_qp *qp)
{
	if (!qp->x_building)
		return;
	qp->x_building = false;
	if (!qp->x_err)
		qp->x_err = ivrdma_sq_queue(qp, &qp->xwr);
}

static struct ibv_send_wr *begin(struct ibv_qp_ex *q, enum ibv_wr_opcode op)
{
	struct ivrdma_qp *qp = xqp(q);

	finish(qp);
	memset(&qp->xwr, 0, sizeof(qp->xwr));
	qp->xwr.wr_id = q->wr_id;
	qp->xwr.send_flags = q->wr_flags;
	qp->xwr.opcode = op;
	qp->xwr.sg_list = qp->xsge;
	qp->x_building = true;
	/* The data, and the address on UD or the SRQ number on XRC. */
	qp->x_setters =
	    qp->vqp.qp.qp_type == IBV_QPT_UD || qp->vqp.qp.qp_type == IBV_QPT_XRC_SEND ? 2 : 1;
	return &qp->xwr;
}

static void wr_start(struct ibv_qp_ex *q)
{
	struct ivrdma_qp *qp = xqp(q);

	ivrdma_queue_lock(&qp->sq_lock);
	qp->x_first = qp->sq_count;
	qp->x_err = 0;
	qp->x_building = false;
}

static void wr_abort(struct ibv_qp_ex *q)
{
	struct ivrdma_qp *qp = xqp(q);

	qp->x_building = false;
	qp->sq_count = qp->x_first; /* queued since wr_start, not yet run */
	ivrdma_queue_unlock(&qp->sq_lock);
}

/* All or nothing: a batch with a bad WR posts none of it. */
static int wr_complete(struct ibv_qp_ex *q)
{
	struct ivrdma_qp *qp = xqp(q);
	int rc;

	finish(qp);
	rc = qp->x_err;
	if (rc) {
		qp->sq_count = qp->x_first;
	} else {
		IVRDMA_COUNT(qp, sq_posted, qp->sq_count - qp->x_first);
		ivrdma_sq_run(qp);
	}
	ivrdma_queue_unlock(&qp->sq_lock);
	return rc;
}

static void wr_send(struct ibv_qp_ex *q)
{
	begin(q, IBV_WR_SEND);
}

static void wr_send_imm(struct ibv_qp_ex *q, __be32 imm)
{
	begin(q, IBV_WR_SEND_WITH_IMM)->imm_data = imm;
}

static void set_rdma(struct ibv_send_wr *wr, uint32_t rkey, uint64_t addr)
{
	wr->wr.rdma.rkey = rkey;
	wr->wr.rdma.remote_addr = addr;
}

static void wr_rdma_write(struct ibv_qp_ex *q, uint32_t rkey, uint64_t addr)
{
	set_rdma(begin(q, IBV_WR_RDMA_WRITE), rkey, addr);
}

static void wr_rdma_write_imm(struct ibv_qp_ex *q, uint32_t rkey, uint64_t addr, __be32 imm)
{
	struct ibv_send_wr *wr = begin(q, IBV_WR_RDMA_WRITE_WITH_IMM);

	set_rdma(wr, rkey, addr);
	wr->imm_data = imm;
}

static void wr_rdma_read(struct ibv_qp_ex *q, uint32_t rkey, uint64_t addr)
{
	set_rdma(begin(q, IBV_WR_RDMA_READ), rkey, addr);
}

static void wr_atomic_cmp_swp(struct ibv_qp_ex *q, uint32_t rkey, uint64_t addr, uint64_t compare,
			      uint64_t swap)
{
	struct ibv_send_wr *wr = begin(q, IBV_WR_ATOMIC_CMP_AND_SWP);

	wr->wr.atomic.rkey = rkey;
	wr->wr.atomic.remote_addr = addr;
	wr->wr.atomic.compare_add = compare;
	wr->wr.atomic.swap = swap;
}

static void wr_atomic_fetch_add(struct ibv_qp_ex *q, uint32_t rkey, uint64_t addr, uint64_t add)
{
	struct ibv_send_wr *wr = begin(q, IBV_WR_ATOMIC_FETCH_AND_ADD);

	wr->wr.atomic.rkey = rkey;
	wr->wr.atomic.remote_addr = addr;
	wr->wr.atomic.compare_add = add;
}

/* The WR's last setter ends it: it is checked and queued now. */
static void setter_done(struct ivrdma_qp *qp)
{
	if (--qp->x_setters <= 0)
		finish(qp);
}

static void set_data(struct ibv_qp_ex *q, size_t n, const struct ibv_sge *sge, bool inl)
{
	struct ivrdma_qp *qp = xqp(q);

	if (!qp->x_building) {
		qp->x_err = qp->x_err ? qp->x_err : EINVAL; /* data without an opcode */
		return;
	}
	if (n > IVRDMA_MAX_SGE) {
		qp->x_building = false;
		qp->x_err = qp->x_err ? qp->x_err : EINVAL;
		return;
	}
	memcpy(qp->xsge, sge, n * sizeof(*sge));
	qp->xwr.num_sge = (int)n;
	if (inl)
		qp->xwr.send_flags |= IBV_SEND_INLINE; /* queuing copies the bytes */
	setter_done(qp);
}

static void wr_set_sge(struct ibv_qp_ex *q, uint32_t lkey, uint64_t addr, uint32_t length)
{
	struct ibv_sge sge = {.addr = addr, .length = length, .lkey = lkey};

	set_data(q, 1, &sge, false);
}

static void wr_set_sge_list(struct ibv_qp_ex *q, size_t n, const struct ibv_sge *sge)
{
	set_data(q, n, sge, false);
}

static void wr_set_inline_data(struct ibv_qp_ex *q, void *addr, size_t length)
{
	/* Over max_inline_data either way: refused when queued. */
	struct ibv_sge sge = {.addr = (uintptr_t)addr,
			      .length = length > UINT32_MAX ? UINT32_MAX : (uint32_t)length};

	set_data(q, 1, &sge, true);
}

static void wr_set_inline_data_list(struct ibv_qp_ex *q, size_t n, const struct ibv_data_buf *buf)
{
	struct ibv_sge sge[IVRDMA_MAX_SGE];

	for (size_t i = 0; i < n && i < IVRDMA_MAX_SGE; i++)
		sge[i] = (struct ibv_sge){.addr = (uintptr_t)buf[i].addr,
					  .length = (uint32_t)buf[i].length};
	set_data(q, n, sge, true);
}

/* A bind carries all it needs: it is complete at once. */
static void wr_bind_mw(struct ibv_qp_ex *q, struct ibv_mw *mw, uint32_t rkey,
		       const struct ibv_mw_bind_info *info)
{
	struct ivrdma_qp *qp = xqp(q);
	struct ibv_send_wr *wr = begin(q, IBV_WR_BIND_MW);

	wr->bind_mw.mw = mw;
	wr->bind_mw.rkey = rkey;
	wr->bind_mw.bind_info = *info;
	qp->x_setters = 1;
	setter_done(qp);
}

static void wr_local_inv(struct ibv_qp_ex *q, uint32_t invalidate_rkey)
{
	struct ivrdma_qp *qp = xqp(q);

	begin(q, IBV_WR_LOCAL_INV)->invalidate_rkey = invalidate_rkey;
	qp->x_setters = 1;
	setter_done(qp);
}

static void wr_send_inv(struct ibv_qp_ex *q, uint32_t invalidate_rkey)
{
	begin(q, IBV_WR_SEND_WITH_INV)->invalidate_rkey = invalidate_rkey;
}

/* Builders for what create_qp_ex refused: a caller using one anyway gets an error. */
static void refuse(struct ibv_qp_ex *q)
{
	struct ivrdma_qp *qp = xqp(q);

	finish(qp);
	qp->x_err = qp->x_err ? qp->x_err : EOPNOTSUPP;
}

static void wr_send_tso(struct ibv_qp_ex *q, void *hdr, uint16_t hdr_sz, uint16_t mss)
{
	refuse(q);
}

static void wr_set_ud_addr(struct ibv_qp_ex *q, struct ibv_ah *ah, uint32_t qpn, uint32_t qkey)
{
	struct ivrdma_qp *qp = xqp(q);

	if (!qp->x_building || q->qp_base.qp_type != IBV_QPT_UD) {
		qp->x_err = qp->x_err ? qp->x_err : EINVAL;
		return;
	}
	qp->xwr.wr.ud.ah = ah;
	qp->xwr.wr.ud.remote_qpn = qpn;
	qp->xwr.wr.ud.remote_qkey = qkey;
	setter_done(qp);
}

static void wr_set_xrc_srqn(struct ibv_qp_ex *q, uint32_t remote_srqn)
{
	struct ivrdma_qp *qp = xqp(q);

	if (!qp->x_building || q->qp_base.qp_type != IBV_QPT_XRC_SEND) {
		qp->x_err = qp->x_err ? qp->x_err : EINVAL;
		return;
	}
	qp->xwr.qp_type.xrc.remote_srqn = remote_srqn;
	setter_done(qp);
}

/* The 8 bytes are copied now, as queuing copies inline data: no data setter follows. */
static void wr_atomic_write(struct ibv_qp_ex *q, uint32_t rkey, uint64_t addr,
			    const void *atomic_wr)
{
	struct ivrdma_qp *qp = xqp(q);
	struct ibv_send_wr *wr = begin(q, IBV_WR_ATOMIC_WRITE);

	memcpy(qp->x_atomic, atomic_wr, sizeof(qp->x_atomic));
	set_rdma(wr, rkey, addr);
	qp->xsge[0] = (struct ibv_sge){.addr = (uintptr_t)qp->x_atomic, .length = 8};
	wr->num_sge = 1;
	wr->send_flags |= IBV_SEND_INLINE;
	setter_done(qp);
}

int ivrdma_qp_ex_check(const struct ibv_qp_init_attr_ex *attr)
{
	if (!(attr->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS))
		return 0;
	if (attr->send_ops_flags & ~(uint64_t)SUPPORTED_OPS)
		return EOPNOTSUPP;
	if (attr->qp_type != IBV_QPT_RC && attr->qp_type != IBV_QPT_XRC_SEND &&
	    (attr->send_ops_flags & RC_ONLY_OPS))
		return EINVAL;
	if (attr->qp_type == IBV_QPT_UD &&
	    (attr->send_ops_flags &
	     ~(uint64_t)(IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM)))
		return EINVAL;
	return 0;
}

void ivrdma_qp_ex_init(struct ivrdma_qp *qp)
{
	struct ibv_qp_ex *q = &qp->vqp.qp_ex;

	qp->vqp.comp_mask |= VERBS_QP_EX;
	q->wr_start = wr_start;
	q->wr_complete = wr_complete;
	q->wr_abort = wr_abort;
	q->wr_send = wr_send;
	q->wr_send_imm = wr_send_imm;
	q->wr_rdma_write = wr_rdma_write;
	q->wr_rdma_write_imm = wr_rdma_write_imm;
	q->wr_rdma_read = wr_rdma_read;
	q->wr_atomic_cmp_swp = wr_atomic_cmp_swp;
	q->wr_atomic_fetch_add = wr_atomic_fetch_add;
	q->wr_set_sge = wr_set_sge;
	q->wr_set_sge_list = wr_set_sge_list;
	q->wr_set_inline_data = wr_set_inline_data;
	q->wr_set_inline_data_list = wr_set_inline_data_list;
	q->wr_bind_mw = wr_bind_mw;
	q->wr_local_inv = wr_local_inv;
	q->wr_send_inv = wr_send_inv;
	q->wr_send_tso = wr_send_tso;
	q->wr_set_ud_addr = wr_set_ud_addr;
	q->wr_set_xrc_srqn = wr_set_xrc_srqn;
	q->wr_atomic_write = wr_atomic_write;
}
