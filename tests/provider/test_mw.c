// SPDX-License-Identifier: MIT
/*
 * Memory windows with the semantics of ibv_alloc_mw(3), ibv_bind_mw(3)
 * and ibv_post_send(3): a window grants a peer remote access to part of
 * an MR that grants none itself; type 1 rebinds under a new key, type 2
 * is bound by a WR to one QP and freed by a local or a remote
 * invalidation. A (initiator) and B (the windows' owner) are two contexts
 * of this process, their RC QPs connected; every byte is checked.
 */
#include "dp_common.h"

static struct ep A, B;
static const struct qpopts opts = {.access = ALL_REMOTE, .retry_cnt = 7, .timeout = 14};
static struct buf src, dst, rx, target; /* A's, A's, B's, B's (LOCAL_WRITE | MW_BIND only) */

enum { PG = 4096, LEN = 256 };

static void fresh(void)
{
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
}

/* One RDMA write or read of LEN bytes from A; the status, QPs fresh again after an error. */
static enum ibv_wc_status rdma(enum ibv_wr_opcode op, uint8_t *at, uint32_t rkey, uint32_t seed)
{
	struct buf *l = op == IBV_WR_RDMA_READ ? &dst : &src;
	struct ibv_wc wc;

	fill(src.p, LEN, seed);
	REQUIRE(post1(A.qp, seed, op, IBV_SEND_SIGNALED, l->p, LEN, l->mr->lkey, (uintptr_t)at,
		      rkey) == 0,
		"post");
	poll1(A.cq, &wc);
	if (wc.status != IBV_WC_SUCCESS)
		fresh();
	return wc.status;
}

static enum ibv_wc_status bind1(struct ibv_mw *mw, uint8_t *addr, uint64_t len, unsigned int acc)
{
	struct ibv_mw_bind b = {.wr_id = 500,
				.send_flags = IBV_SEND_SIGNALED,
				.bind_info = {.mr = len ? target.mr : NULL,
					      .addr = (uintptr_t)addr,
					      .length = len,
					      .mw_access_flags = acc}};
	struct ibv_wc wc;

	REQUIRE(ibv_bind_mw(B.qp, mw, &b) == 0, "ibv_bind_mw: %s", strerror(errno));
	poll1(B.cq, &wc);
	CHECK(wc.wr_id == 500 && wc.opcode == IBV_WC_BIND_MW, "bind completion (%s)",
	      ibv_wc_status_str(wc.status));
	return wc.status;
}

static void type1(void)
{
	struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_1);
	uint8_t *win = target.p + PG;
	uint32_t first;

	REQUIRE(mw, "alloc_mw type 1: %s", strerror(errno));
	CHECK(rdma(IBV_WR_RDMA_WRITE, win, target.mr->rkey, 1) == IBV_WC_REM_ACCESS_ERR,
	      "the MR itself grants no remote write");
	CHECK(bind1(mw, win, 2 * PG, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ) ==
		  IBV_WC_SUCCESS,
	      "bind type 1");
	first = mw->rkey;
	CHECK(rdma(IBV_WR_RDMA_WRITE, win + 100, mw->rkey, 2) == IBV_WC_SUCCESS &&
		  pat_diff(win + 100, LEN, 2) == LEN,
	      "write through the window: every byte");
	memcpy(win + 600, win + 100, LEN);
	CHECK(rdma(IBV_WR_RDMA_READ, win + 600, mw->rkey, 3) == IBV_WC_SUCCESS &&
		  pat_diff(dst.p, LEN, 2) == LEN,
	      "read through the window");
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p + PG - 8, mw->rkey, 4) == IBV_WC_REM_ACCESS_ERR &&
		  all_diff(target.p, PG, 0xee) == PG,
	      "8 bytes before the window: access error, nothing written");
	CHECK(bind1(mw, target.p, PG, IBV_ACCESS_REMOTE_READ) == IBV_WC_SUCCESS &&
		  mw->rkey != first,
	      "rebind: a new key");
	CHECK(rdma(IBV_WR_RDMA_WRITE, win + 100, first, 5) == IBV_WC_REM_ACCESS_ERR,
	      "the old key is dead");
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p, mw->rkey, 6) == IBV_WC_REM_ACCESS_ERR,
	      "read-only window: no write");
	CHECK(bind1(mw, NULL, 0, 0) == IBV_WC_SUCCESS &&
		  rdma(IBV_WR_RDMA_READ, target.p, mw->rkey, 7) == IBV_WC_REM_ACCESS_ERR,
	      "unbound: its key is dead");
	CHECK(ibv_dealloc_mw(mw) == 0, "dealloc_mw");
}

static enum ibv_wc_status post_b(struct ibv_send_wr *wr)
{
	struct ibv_send_wr *bad;
	struct ibv_wc wc;

	wr->send_flags |= IBV_SEND_SIGNALED;
	REQUIRE(ibv_post_send(B.qp, wr, &bad) == 0, "post on B: %s", strerror(errno));
	poll1(B.cq, &wc);
	return wc.status;
}

static enum ibv_wc_status bind2(struct ibv_mw *mw, uint32_t rkey)
{
	struct ibv_send_wr wr = {.wr_id = 600, .opcode = IBV_WR_BIND_MW};

	wr.bind_mw.mw = mw;
	wr.bind_mw.rkey = rkey;
	wr.bind_mw.bind_info = (struct ibv_mw_bind_info){
	    .mr = target.mr,
	    .addr = (uintptr_t)target.p,
	    .length = 4 * PG,
	    .mw_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ};
	return post_b(&wr);
}

/* A send with invalidate frees the window it names; the receive says which. */
static void remote_invalidate(uint32_t rkey)
{
	struct ibv_send_wr wr = {.wr_id = 700,
				 .opcode = IBV_WR_SEND_WITH_INV,
				 .send_flags = IBV_SEND_SIGNALED,
				 .num_sge = 1},
			   *bad;
	struct ibv_sge s = {.addr = (uintptr_t)src.p, .length = LEN, .lkey = src.mr->lkey};
	struct ibv_wc wc;

	wr.sg_list = &s;
	wr.invalidate_rkey = rkey;
	fill(src.p, LEN, 9);
	REQUIRE(post_recv1(B.qp, 701, rx.p, LEN, rx.mr->lkey) == 0, "post_recv");
	REQUIRE(ibv_post_send(A.qp, &wr, &bad) == 0, "post send with invalidate");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 700, IBV_WC_SEND, "send with invalidate");
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && (wc.wc_flags & IBV_WC_WITH_INV) &&
		  wc.invalidated_rkey == rkey && pat_diff(rx.p, LEN, 9) == LEN,
	      "the receive names the invalidated key and has every byte");
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p, rkey, 10) == IBV_WC_REM_ACCESS_ERR,
	      "remotely invalidated: the key is dead");
}

/* A second connection between A and B: B's other QP is not the window's. */
static void other_qp_refused(uint32_t rkey)
{
	struct ibv_qp_init_attr ia = {
	    .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_RC};
	struct ibv_qp *qa, *qb;
	struct ibv_wc wc;

	ia.send_cq = ia.recv_cq = A.cq;
	qa = ibv_create_qp(A.pd, &ia);
	ia.send_cq = ia.recv_cq = B.cq;
	qb = ibv_create_qp(B.pd, &ia);
	REQUIRE(qa && qb, "create a second pair of QPs");
	qp_connect(qa, qb->qp_num, B.lid, &opts);
	qp_connect(qb, qa->qp_num, A.lid, &opts);
	REQUIRE(post1(qa, 13, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, src.p, LEN, src.mr->lkey,
		      (uintptr_t)target.p, rkey) == 0,
		"post");
	poll1(A.cq, &wc);
	CHECK(wc.status == IBV_WC_REM_ACCESS_ERR,
	      "a type 2 window serves only the QP it is bound to (%s)",
	      ibv_wc_status_str(wc.status));
	CHECK(ibv_destroy_qp(qa) == 0 && ibv_destroy_qp(qb) == 0, "destroy the second pair");
	CHECK(cq_empty(B.cq), "nothing on B's CQ: its second QP had no WRs");
}

static void type2(void)
{
	struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_2);
	struct ibv_send_wr inv = {.wr_id = 601, .opcode = IBV_WR_LOCAL_INV};
	uint32_t k1, k2, k3;

	REQUIRE(mw, "alloc_mw type 2: %s", strerror(errno));
	k1 = ibv_inc_rkey(mw->rkey);
	CHECK(bind2(mw, k1) == IBV_WC_SUCCESS, "bind type 2 with a WR");
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p + 8, k1, 11) == IBV_WC_SUCCESS &&
		  pat_diff(target.p + 8, LEN, 11) == LEN,
	      "write through the type 2 window");
	inv.invalidate_rkey = k1;
	CHECK(post_b(&inv) == IBV_WC_SUCCESS, "local invalidate");
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p, k1, 12) == IBV_WC_REM_ACCESS_ERR,
	      "invalidated: the key is dead");
	k2 = ibv_inc_rkey(k1);
	CHECK(bind2(mw, k2) == IBV_WC_SUCCESS, "bound again under a new key");
	remote_invalidate(k2);
	k3 = ibv_inc_rkey(k2);
	CHECK(bind2(mw, k3) == IBV_WC_SUCCESS, "and again");
	other_qp_refused(k3);
	CHECK(bind2(mw, ibv_inc_rkey(k3)) == IBV_WC_MW_BIND_ERR, "bound: no second bind");
	fresh();
	CHECK(ibv_dealloc_mw(mw) == 0, "dealloc_mw");
}

/* wr_bind_mw, wr_local_inv on B; wr_send_inv from A. */
static void wr_api(void)
{
	struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_2);
	struct ibv_mw_bind_info info = {.mr = target.mr,
					.addr = (uintptr_t)target.p,
					.length = PG,
					.mw_access_flags = IBV_ACCESS_REMOTE_WRITE};
	struct ibv_qp_ex *qb, *qa;
	uint32_t k = ibv_inc_rkey(mw->rkey);
	struct ibv_wc wc;

	ep_qp_ex(&B, IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_LOCAL_INV);
	ep_qp_ex(&A, IBV_QP_EX_WITH_SEND_WITH_INV | IBV_QP_EX_WITH_RDMA_WRITE);
	qp_connect(A.qp, B.qp->qp_num, B.lid, &opts);
	qp_connect(B.qp, A.qp->qp_num, A.lid, &opts);
	qb = ibv_qp_to_qp_ex(B.qp);
	qa = ibv_qp_to_qp_ex(A.qp);
	ibv_wr_start(qb);
	qb->wr_id = 800;
	qb->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_bind_mw(qb, mw, k, &info);
	qb->wr_id = 801;
	ibv_wr_local_inv(qb, k);
	CHECK(ibv_wr_complete(qb) == 0, "wr_bind_mw, wr_local_inv in one batch");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 800, IBV_WC_BIND_MW, "wr_bind_mw");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 801, IBV_WC_LOCAL_INV, "wr_local_inv");
	k = ibv_inc_rkey(k);
	ibv_wr_start(qb);
	qb->wr_id = 802;
	ibv_wr_bind_mw(qb, mw, k, &info);
	CHECK(ibv_wr_complete(qb) == 0, "wr_bind_mw again");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 802, IBV_WC_BIND_MW, "bound again");
	REQUIRE(post_recv1(B.qp, 803, rx.p, LEN, rx.mr->lkey) == 0, "post_recv");
	ibv_wr_start(qa);
	qa->wr_id = 804;
	qa->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_send_inv(qa, k);
	ibv_wr_set_sge(qa, src.mr->lkey, (uintptr_t)src.p, LEN);
	CHECK(ibv_wr_complete(qa) == 0, "wr_send_inv");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 804, IBV_WC_SEND, "wr_send_inv");
	poll1(B.cq, &wc);
	CHECK(wc.wr_id == 803 && wc.status == IBV_WC_SUCCESS && (wc.wc_flags & IBV_WC_WITH_INV) &&
		  wc.invalidated_rkey == k,
	      "the receive names the key wr_send_inv invalidated");
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p, k, 15) == IBV_WC_REM_ACCESS_ERR, "its key is dead");
	CHECK(ibv_dealloc_mw(mw) == 0, "dealloc_mw");
}

/* Registering over the window's MR moves its bytes; the window follows them. */
static void window_follows_its_mr(void)
{
	struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_1);
	struct ibv_mr *over;

	REQUIRE(mw && bind1(mw, target.p, PG, IBV_ACCESS_REMOTE_WRITE) == IBV_WC_SUCCESS, "bind");
	over = ibv_reg_mr(B.pd, target.p - PG, 2 * PG, MR_ALL); /* joins a page before it */
	REQUIRE(over, "reg_mr over the window's MR: %s", strerror(errno));
	CHECK(rdma(IBV_WR_RDMA_WRITE, target.p + 64, mw->rkey, 14) == IBV_WC_SUCCESS &&
		  pat_diff(target.p + 64, LEN, 14) == LEN,
	      "after the move, a write through the window lands at the application's address");
	CHECK(ibv_dereg_mr(over) == 0, "dereg the other MR");
	CHECK(ibv_dealloc_mw(mw) == 0, "dealloc_mw");
}

int main(void)
{
	uint8_t *area;

	ep_open(&A);
	ep_open(&B);
	buf_new(&src, A.pd, PG, MR_ALL);
	buf_new(&dst, A.pd, PG, MR_ALL);
	buf_new(&rx, B.pd, PG, MR_ALL);
	/* The target has a free page before it, for window_follows_its_mr. */
	buf_new(&target, NULL, 5 * PG, 0);
	area = target.p;
	target.p += PG;
	target.mr = ibv_reg_mr(B.pd, target.p, 4 * PG, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND);
	REQUIRE(target.mr, "reg_mr with MW_BIND: %s", strerror(errno));
	fresh();
	type1();
	type2();
	wr_api();
	window_follows_its_mr();
	CHECK(ibv_dereg_mr(target.mr) == 0, "dereg the windows' MR");
	target.mr = NULL;
	target.p = area;
	buf_free(&target);
	buf_free(&src);
	buf_free(&dst);
	buf_free(&rx);
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}
