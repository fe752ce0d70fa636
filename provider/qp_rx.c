// SPDX-License-Identifier: MIT
/*
 * The receive side of a QP: posting into its receive ring in the region
 * (initiators take from it), and flushing what is left when the QP fails.
 */
#include <errno.h>

#include "ivrdma.h"
#include "shm_atomic.h"

static void flush_one(struct ivrdma_qp *qp, uint64_t wr_id)
{
	struct ivrdma_cqe e = {
	    .wr_id = wr_id,
	    .status = IBV_WC_WR_FLUSH_ERR,
	    .opcode = IBV_WC_RECV,
	    .qp_num = qp->vqp.qp.qp_num,
	};

	ivrdma_qp_complete(qp, qp->recv_cq, &e);
}

int ivrdma_post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr)
{
	struct ivrdma_qp *qp = to_iqp(ibqp);
	int rc = 0;

	pthread_spin_lock(&qp->rq_lock);
	for (; wr; wr = wr->next) {
		if (qp->srq || ibqp->state == IBV_QPS_RESET || wr->num_sge < 0 ||
		    (uint32_t)wr->num_sge > qp->cap.max_recv_sge) {
			rc = EINVAL;
		} else if (ibqp->state == IBV_QPS_ERR) {
			flush_one(qp, wr->wr_id); /* as a real HCA: completes in error */
			continue;
		} else {
			rc = ivrdma_rq_post(&qp->rq, wr);
		}
		if (rc) {
			*bad_wr = wr;
			break;
		}
	}
	pthread_spin_unlock(&qp->rq_lock);
	return rc;
}

/*
 * Every receive still posted completes with IBV_WC_WR_FLUSH_ERR. An SRQ's
 * receives belong to the SRQ and stay for its other QPs.
 */
void ivrdma_qp_flush_rq(struct ivrdma_qp *qp)
{
	union {
		struct ivrdma_recv_wqe w;
		uint8_t room[IVRDMA_RQ_STRIDE(IVRDMA_MAX_SGE)];
	} u;

	if (qp->srq)
		return;

	while (ivrdma_rq_take(&qp->rq, &u.w) > 0)
		flush_one(qp, u.w.wr_id);
}
