// SPDX-License-Identifier: MIT
/*
 * Arguments an HCA (rxe, mlx5) accepts and ignores or clamps are accepted
 * here too (design.md 7, "Argument checks"): each call below succeeds and
 * the object it made then works, every byte checked. The refusals ivrdma
 * keeps, where both HCAs refuse too, are checked beside them. A (initiator)
 * and B (target) are two contexts of this process.
 */
#include "dp_common.h"

#define LEN  4096u
#define QKEY 0x22222222u

static struct ep A, B;
static struct buf src, dst;
static const struct qpopts opts = {.access = ALL_REMOTE, .retry_cnt = 7, .timeout = 14};

/* A fresh RC QP of e through ibv_create_qp_ex, with IBV_QP_INIT_ATTR_CREATE_FLAGS. */
static struct ibv_qp *qp_create_flags(struct ep *e, uint32_t flags, struct ibv_qp_cap cap,
				      int sig_all, void *qp_context)
{
	struct ibv_qp_init_attr_ex ia = {
	    .qp_context = qp_context,
	    .send_cq = e->cq,
	    .recv_cq = e->cq,
	    .cap = cap,
	    .qp_type = IBV_QPT_RC,
	    .sq_sig_all = sig_all,
	    .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_CREATE_FLAGS,
	    .pd = e->pd,
	    .create_flags = flags,
	};

	return ibv_create_qp_ex(e->ctx, &ia);
}

/* A sends LEN bytes of pattern 'seed' to B; B's receive buffer checked whole. */
static void send_checked(unsigned int flags, uint32_t seed, const char *what)
{
	struct ibv_wc wc;

	fill(src.p, LEN, seed);
	memset(dst.p, 0xee, dst.maplen);
	CHECK(post_recv1(B.qp, 100, dst.p, LEN, dst.mr->lkey) == 0, "%s: post_recv", what);
	CHECK(post1(A.qp, 1, IBV_WR_SEND, flags, src.p, LEN, src.mr->lkey, 0, 0) == 0,
	      "%s: post_send: %s", what, strerror(errno));
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_SEND, what);
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 100 && wc.byte_len == LEN,
	      "%s: receive %s byte_len %u", what, ibv_wc_status_str(wc.status), wc.byte_len);
	CHECK(pat_diff(dst.p, LEN, seed) == LEN, "%s: every byte", what);
	CHECK(all_diff(dst.p + LEN, dst.maplen - LEN, 0xee) == dst.maplen - LEN,
	      "%s: nothing past it", what);
}

/*
 * IBV_QP_INIT_ATTR_CREATE_FLAGS with no flag (rxe and mlx5 take it), send
 * caps of zero on a QP that only receives (clamped to one, as on both),
 * sq_sig_all 2 (any non-zero value signals all, as mlx5 reads it) and
 * qp_context handed back.
 */
static void create_qp_ex_fields(void)
{
	struct ibv_qp_cap a_cap = {
	    .max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1};
	struct ibv_qp_cap b_cap = {.max_recv_wr = 8, .max_recv_sge = 1}; /* no send caps */
	int token;

	A.qp = qp_create_flags(&A, 0, a_cap, 2, &token);
	CHECK(A.qp, "create_qp_ex with CREATE_FLAGS 0: %s", strerror(errno));
	B.qp = qp_create_flags(&B, 0, b_cap, 0, NULL);
	CHECK(B.qp, "create_qp_ex with zero send caps: %s", strerror(errno));
	if (!A.qp || !B.qp)
		return;
	CHECK(A.qp->qp_context == &token, "qp_context kept");
	qp_connect(A.qp, B.qp->qp_num, B.lid, &opts);
	qp_connect(B.qp, A.qp->qp_num, A.lid, &opts);
	send_checked(0, 1, "unsignaled send on a QP with sq_sig_all 2");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "one completion each");

	/* Kept: a flag asks for what ivrdma has not (rxe: EOPNOTSUPP too). */
	errno = 0;
	CHECK(!qp_create_flags(&A, IBV_QP_CREATE_BLOCK_SELF_MCAST_LB, a_cap, 0, NULL) &&
		  errno == EOPNOTSUPP,
	      "a create flag is refused: %s", strerror(errno));
}

/*
 * Unusual but valid values through the state machine: a 1024-byte path
 * MTU, PSNs with bits above the 24 a PSN has, timeout 0 (infinite),
 * retry and rnr_retry 7, max_rd_atomic and max_dest_rd_atomic 0 (HCAs
 * round up to one), an alternate path and a migration state (kept, never
 * used: there is one path).
 */
static void connect_unusual(struct ibv_qp *qp, uint32_t dqpn, uint16_t dlid)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_RTR,
	    .path_mtu = IBV_MTU_1024,
	    .dest_qp_num = dqpn,
	    .rq_psn = 0xff000123u,
	    .ah_attr = {.dlid = dlid, .port_num = 1, .sl = 3, .static_rate = IBV_RATE_25_GBPS},
	    .alt_ah_attr = {.dlid = dlid, .port_num = 1},
	    .alt_port_num = 1,
	    .path_mig_state = IBV_MIG_REARM,
	};
	int rtr = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
		  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER | IBV_QP_ALT_PATH;
	int rts = IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
		  IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC | IBV_QP_PATH_MIG_STATE;
	int rc;

	REQUIRE(qp_init(qp, ALL_REMOTE) == 0, "INIT");
	rc = ibv_modify_qp(qp, &a, rtr);
	CHECK(rc == 0, "RTR with unusual values: %s", strerror(rc));
	a.qp_state = IBV_QPS_RTS;
	a.sq_psn = 0xffabcdefu;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	rc = ibv_modify_qp(qp, &a, rts);
	CHECK(rc == 0, "RTS with unusual values: %s", strerror(rc));
	a.path_mig_state = IBV_MIG_MIGRATED;
	rc = ibv_modify_qp(qp, &a, IBV_QP_PATH_MIG_STATE | IBV_QP_ALT_PATH);
	CHECK(rc == 0, "RTS -> RTS with a migration state and alternate path: %s", strerror(rc));
}

/* SQD -> SQD with every optional attribute the IB spec lists but the AV. */
static void sqd_to_sqd(void)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_SQD};
	int all = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
		  IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC | IBV_QP_MAX_DEST_RD_ATOMIC |
		  IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER |
		  IBV_QP_PATH_MIG_STATE;
	int rc;

	CHECK(ibv_modify_qp(A.qp, &a, IBV_QP_STATE) == 0, "RTS -> SQD");
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_SQD,
				 .port_num = 1,
				 .timeout = 14,
				 .retry_cnt = 7,
				 .rnr_retry = 7,
				 .max_rd_atomic = 4,
				 .max_dest_rd_atomic = 4,
				 .alt_ah_attr = {.dlid = B.lid, .port_num = 1},
				 .alt_port_num = 1,
				 .qp_access_flags = ALL_REMOTE,
				 .path_mig_state = IBV_MIG_ARMED};
	rc = ibv_modify_qp(A.qp, &a, IBV_QP_STATE | all);
	CHECK(rc == 0, "SQD -> SQD with options: %s", strerror(rc));
	/* Kept: a new primary path at SQD (design.md 7, "Argument checks"). */
	a.ah_attr = (struct ibv_ah_attr){.dlid = B.lid, .port_num = 1};
	CHECK(ibv_modify_qp(A.qp, &a, IBV_QP_STATE | IBV_QP_AV) == EINVAL,
	      "SQD -> SQD with an AV is refused");
	a.qp_state = IBV_QPS_RTS;
	CHECK(ibv_modify_qp(A.qp, &a, IBV_QP_STATE) == 0, "SQD -> RTS");
}

static void modify_values(void)
{
	uint8_t *r = src.p + LEN;

	ep_qp(&A, IBV_QPT_RC, &opts);
	ep_qp(&B, IBV_QPT_RC, &opts);
	connect_unusual(A.qp, B.qp->qp_num, B.lid);
	connect_unusual(B.qp, A.qp->qp_num, A.lid);
	send_checked(IBV_SEND_SIGNALED, 2, "send after unusual values");
	sqd_to_sqd();
	send_checked(IBV_SEND_SIGNALED, 3, "send after SQD -> SQD");
	/* B's max_dest_rd_atomic is still 0: an HCA takes it as one read at a time. */
	fill(dst.p, LEN, 4);
	memset(r, 0, LEN);
	CHECK(post1(A.qp, 5, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED, r, LEN, src.mr->lkey,
		    (uintptr_t)dst.p, dst.mr->rkey) == 0,
	      "post read");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 5, IBV_WC_RDMA_READ, "read");
	CHECK(pat_diff(r, LEN, 4) == LEN, "read: every byte");
}

/*
 * Send flags with no meaning here, as an HCA ignores them on RC:
 * IBV_SEND_FENCE (work runs in order; a read completes before what
 * follows starts), IBV_SEND_IP_CSUM (mlx5 looks at it only on UD and raw
 * packet QPs) and IBV_SEND_SOLICITED (the receiver sees it). Then a send
 * and a receive of no SGE at all.
 */
static void send_flags(void)
{
	struct ibv_wc wc;

	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
	send_checked(IBV_SEND_SIGNALED | IBV_SEND_FENCE | IBV_SEND_IP_CSUM | IBV_SEND_SOLICITED, 6,
		     "send with FENCE | IP_CSUM | SOLICITED");
	fill(src.p, LEN, 7);
	memset(dst.p, 0, LEN);
	CHECK(post1(A.qp, 8, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED | IBV_SEND_FENCE, src.p, LEN,
		    src.mr->lkey, (uintptr_t)dst.p, dst.mr->rkey) == 0,
	      "post fenced write");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 8, IBV_WC_RDMA_WRITE, "fenced write");
	CHECK(pat_diff(dst.p, LEN, 7) == LEN, "fenced write: every byte");

	CHECK(post_recv1(B.qp, 9, NULL, 0, 0) == 0, "post_recv with num_sge 0");
	CHECK(post1(A.qp, 10, IBV_WR_SEND, IBV_SEND_SIGNALED, NULL, 0, 0, 0, 0) == 0,
	      "post_send with num_sge 0");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 10, IBV_WC_SEND, "empty send");
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 9 && wc.byte_len == 0,
	      "empty receive: %s byte_len %u", ibv_wc_status_str(wc.status), wc.byte_len);
}

/* IBV_ACCESS_RELAXED_ORDERING: an ordering hint (optional, may be ignored). */
static void mr_optional_access(void)
{
	struct buf ro;

	buf_new(&ro, B.pd, LEN, MR_ALL | IBV_ACCESS_RELAXED_ORDERING);
	fill(src.p, LEN, 11);
	CHECK(post1(A.qp, 12, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, src.p, LEN, src.mr->lkey,
		    (uintptr_t)ro.p, ro.mr->rkey) == 0,
	      "post write to a relaxed-ordering MR");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 12, IBV_WC_RDMA_WRITE, "write to a relaxed-ordering MR");
	CHECK(pat_diff(ro.p, LEN, 11) == LEN, "relaxed-ordering MR: every byte");
	CHECK(all_diff(ro.p + LEN, ro.maplen - LEN, 0xee) == ro.maplen - LEN,
	      "relaxed-ordering MR: nothing past it");
	buf_free(&ro);
}

/*
 * Receive caps beyond the device's on a QP with an SRQ: the SRQ's apply,
 * as on rxe and mlx5. The SRQ asks for no WR and no SGE: clamped to one
 * each, as mlx5 rounds them up.
 */
static void srq_recv_caps(void)
{
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = 0, .max_sge = 0}};
	struct ibv_qp_init_attr ia = {
	    .send_cq = B.cq,
	    .recv_cq = B.cq,
	    .cap = {.max_send_wr = 8,
		    .max_send_sge = 1,
		    .max_recv_wr = 1u << 30,
		    .max_recv_sge = 1u << 20},
	    .qp_type = IBV_QPT_RC,
	};
	struct ibv_sge sge = {.addr = (uintptr_t)dst.p, .length = LEN, .lkey = dst.mr->lkey};
	struct ibv_recv_wr rwr = {.wr_id = 100, .sg_list = &sge, .num_sge = 1}, *bad;
	struct ibv_srq *srq = ibv_create_srq(B.pd, &sa);

	REQUIRE(srq, "create_srq with max_wr and max_sge 0: %s", strerror(errno));
	CHECK(sa.attr.max_wr >= 1 && sa.attr.max_sge >= 1, "SRQ caps clamped: %u %u",
	      sa.attr.max_wr, sa.attr.max_sge);
	errno = 0;
	CHECK(!ibv_create_qp(B.pd, &ia) && errno == EINVAL, "without an SRQ they are refused: %s",
	      strerror(errno));
	ia.srq = srq;
	CHECK(ibv_destroy_qp(B.qp) == 0, "destroy_qp");
	B.qp = ibv_create_qp(B.pd, &ia);
	CHECK(B.qp, "create_qp with an SRQ and huge receive caps: %s", strerror(errno));
	if (B.qp) {
		CHECK(ia.cap.max_recv_wr == 0 && ia.cap.max_recv_sge == 0,
		      "no receive queue of its own");
		ep_qp(&A, IBV_QPT_RC, &opts);
		qp_connect(A.qp, B.qp->qp_num, B.lid, &opts);
		qp_connect(B.qp, A.qp->qp_num, A.lid, &opts);
		fill(src.p, LEN, 17);
		memset(dst.p, 0xee, dst.maplen);
		CHECK(ibv_post_srq_recv(srq, &rwr, &bad) == 0, "post_srq_recv");
		CHECK(post1(A.qp, 18, IBV_WR_SEND, IBV_SEND_SIGNALED, src.p, LEN, src.mr->lkey, 0,
			    0) == 0,
		      "post_send");
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 18, IBV_WC_SEND, "send to a QP with an SRQ");
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, 100, IBV_WC_RECV, "receive from the SRQ");
		CHECK(pat_diff(dst.p, LEN, 17) == LEN, "SRQ receive: every byte");
		CHECK(ibv_destroy_qp(B.qp) == 0, "destroy_qp");
	}
	B.qp = NULL;
	CHECK(ibv_destroy_srq(srq) == 0, "destroy_srq");
}

static struct ibv_qp *ud_qp(struct ep *e)
{
	struct ibv_qp_init_attr ia = {
	    .send_cq = e->cq,
	    .recv_cq = e->cq,
	    .cap = {.max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_UD,
	};

	if (e->qp)
		CHECK(ibv_destroy_qp(e->qp) == 0, "destroy_qp");
	e->qp = ibv_create_qp(e->pd, &ia);
	REQUIRE(e->qp, "create UD QP: %s", strerror(errno));
	ud_up(e->qp, QKEY);
	return e->qp;
}

static int send_ud(uint64_t id, struct ibv_ah *ah, uint32_t len)
{
	struct ibv_sge s = {.addr = (uintptr_t)src.p, .length = len, .lkey = src.mr->lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	wr.wr.ud.ah = ah;
	wr.wr.ud.remote_qpn = B.qp->qp_num;
	wr.wr.ud.remote_qkey = QKEY;
	return ibv_post_send(A.qp, &wr, &bad);
}

/*
 * Address handles: SL, static rate and source path bits are taken and
 * ignored (nothing here has lanes or links of a speed); LID 0 without a
 * GRH is taken as an InfiniBand HCA takes it, and what is sent to it goes
 * nowhere: the send completes, nobody receives.
 */
static void ah_fields(void)
{
	struct ibv_ah_attr aa = {.dlid = B.lid,
				 .sl = 7,
				 .src_path_bits = 0x3,
				 .static_rate = IBV_RATE_100_GBPS,
				 .port_num = 1};
	struct ibv_ah *ah, *none;
	struct ibv_wc wc;
	uint32_t len = 1000;

	ud_qp(&A);
	ud_qp(&B);
	ah = ibv_create_ah(A.pd, &aa);
	CHECK(ah, "create_ah with sl, path bits, static rate: %s", strerror(errno));
	aa = (struct ibv_ah_attr){.port_num = 1};
	none = ibv_create_ah(A.pd, &aa);
	CHECK(none, "create_ah to LID 0 without a GRH: %s", strerror(errno));
	if (!ah || !none) {
		if (ah || none)
			ibv_destroy_ah(ah ? ah : none); /* the PD goes at the end */
		return;
	}
	fill(src.p, len, 13);
	memset(dst.p, 0xee, dst.maplen);
	CHECK(post_recv1(B.qp, 14, dst.p, LEN, dst.mr->lkey) == 0, "UD post_recv");
	CHECK(send_ud(15, none, len) == 0, "UD send to LID 0: %s", strerror(errno));
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 15, IBV_WC_SEND, "UD send to LID 0");
	CHECK(cq_empty(B.cq), "nobody receives what went to LID 0");
	CHECK(send_ud(16, ah, len) == 0, "UD send: %s", strerror(errno));
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 16, IBV_WC_SEND, "UD send");
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 14 && wc.byte_len == 40 + len,
	      "UD receive: %s byte_len %u", ibv_wc_status_str(wc.status), wc.byte_len);
	CHECK(pat_diff(dst.p + 40, len, 13) == len, "UD payload: every byte");
	CHECK(all_diff(dst.p + 40 + len, dst.maplen - 40 - len, 0xee) == dst.maplen - 40 - len,
	      "UD: nothing past the payload");
	CHECK(ibv_destroy_ah(ah) == 0 && ibv_destroy_ah(none) == 0, "destroy_ah");
}

int main(void)
{
	ep_open(&A);
	ep_open(&B);
	buf_new(&src, A.pd, 2 * LEN, MR_ALL);
	buf_new(&dst, B.pd, LEN, MR_ALL);
	create_qp_ex_fields();
	modify_values();
	send_flags();
	mr_optional_access();
	srq_recv_caps();
	ah_fields();
	buf_free(&src);
	buf_free(&dst);
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}
