// SPDX-License-Identifier: MIT
/*
 * UD QPs and address handles through plain libibverbs, every byte checked:
 * the GRH room and its contents, byte_len, src_qp, slid and wc_flags of a
 * receive, immediate data, the MTU (IBV_WC_LOC_LEN_ERR, then SQE and back
 * to RTS), Q_Keys (a wrong one is dropped, the high bit means "mine"),
 * datagrams to nowhere, receives too small, ibv_create_ah_from_wc for the
 * reply, the ibv_qp_ex wr_* API with its two setters in either order, and
 * multicast (attach, a copy to each member, detach, refusals).
 * Two contexts of one process are the two ends. Run by run-provider-test.sh.
 */
#include "dp_common.h"

#define QKEY	0x11111111u
#define GRH_LEN 40u
#define MTU	4096u
#define MLID	0xc123u

static const union ibv_gid MGID = {.raw = {0xff, 0x12, 0x40, 0x1b, 0xff, 0xff, 0, 1, [15] = 7}};
static const union ibv_gid B_GID_UNICAST = {.raw = {0xfd, [15] = 2}};

static struct ep A, B;
static struct buf sa, rb; /* A's send buffer, B's receive buffer */

static struct ibv_qp *ud_qp(struct ep *e, uint32_t qkey, bool ex)
{
	struct ibv_qp_init_attr_ex ia = {
	    .send_cq = e->cq,
	    .recv_cq = e->cq,
	    .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 2, .max_recv_sge = 2},
	    .qp_type = IBV_QPT_UD,
	    .comp_mask = IBV_QP_INIT_ATTR_PD,
	    .pd = e->pd,
	};

	if (ex) {
		ia.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
		ia.send_ops_flags = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM;
	}
	if (e->qp)
		CHECK(ibv_destroy_qp(e->qp) == 0, "destroy_qp");
	e->qp = ibv_create_qp_ex(e->ctx, &ia);
	REQUIRE(e->qp, "create UD QP: %s", strerror(errno));
	ud_up(e->qp, qkey);
	return e->qp;
}

static union ibv_gid gid_of(struct ep *e)
{
	union ibv_gid g;

	REQUIRE(ibv_query_gid(e->ctx, 1, 0, &g) == 0, "query_gid");
	return g;
}

static struct ibv_ah *ah_to(struct ep *from, struct ep *to, bool grh)
{
	struct ibv_ah_attr a = {.dlid = to->lid, .port_num = 1};
	struct ibv_ah *ah;

	if (grh) {
		a.is_global = 1;
		a.grh.dgid = gid_of(to);
		a.grh.hop_limit = 64;
		a.grh.traffic_class = 0x12;
		a.grh.flow_label = 0x3456;
	}
	ah = ibv_create_ah(from->pd, &a);
	REQUIRE(ah, "create_ah: %s", strerror(errno));
	return ah;
}

static int send_ud(struct ibv_qp *qp, uint64_t id, struct ibv_ah *ah, uint32_t qpn, uint32_t qkey,
		   void *p, uint32_t len, uint32_t lkey, bool imm)
{
	struct ibv_sge s = {.addr = (uintptr_t)p, .length = len, .lkey = lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = imm ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED,
				 .imm_data = htobe32(0xabcd0000u | (uint32_t)id)},
			   *bad;

	wr.wr.ud.ah = ah;
	wr.wr.ud.remote_qpn = qpn;
	wr.wr.ud.remote_qkey = qkey;
	return ibv_post_send(qp, &wr, &bad);
}

/* B's receive of one datagram of 'len' bytes sent by A, GRH or not. */
static void check_datagram(const struct ibv_wc *wc, uint32_t len, bool grh, uint32_t seed,
			   const char *what)
{
	union ibv_gid ga = gid_of(&A), gb = gid_of(&B);

	CHECK(wc->status == IBV_WC_SUCCESS && wc->opcode == IBV_WC_RECV, "%s: receive %s", what,
	      ibv_wc_status_str(wc->status));
	CHECK(wc->byte_len == GRH_LEN + len, "%s: byte_len %u", what, wc->byte_len);
	CHECK(wc->src_qp == A.qp->qp_num && wc->slid == A.lid && wc->qp_num == B.qp->qp_num,
	      "%s: src_qp %#x slid %u qp_num %#x", what, wc->src_qp, wc->slid, wc->qp_num);
	CHECK(!!(wc->wc_flags & IBV_WC_GRH) == grh, "%s: IBV_WC_GRH", what);
	CHECK(pat_diff(rb.p + GRH_LEN, len, seed) == len, "%s: payload", what);
	CHECK(all_diff(rb.p + GRH_LEN + len, MTU - len, 0xee) == MTU - len, "%s: nothing past it",
	      what);
	if (!grh) {
		CHECK(all_diff(rb.p, GRH_LEN, 0xee) == GRH_LEN, "%s: GRH room untouched", what);
		return;
	}
	CHECK(rb.p[0] >> 4 == 6 && rb.p[6] == 0x1b && rb.p[7] == 64, "%s: GRH version/nh/hops",
	      what);
	CHECK(!memcmp(rb.p + 8, ga.raw, 16) && !memcmp(rb.p + 24, gb.raw, 16), "%s: GRH GIDs",
	      what);
}

static void post_rb(uint64_t id, uint32_t len)
{
	memset(rb.p, 0xee, rb.maplen);
	CHECK(post_recv1(B.qp, id, rb.p, len, rb.mr->lkey) == 0, "post_recv");
}

static void sizes_and_grh(void)
{
	static const uint32_t sizes[] = {0, 1, 40, 1000, 4095, MTU};

	for (int grh = 0; grh < 2; grh++) {
		struct ibv_ah *ah = ah_to(&A, &B, grh);

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			struct ibv_wc wc;
			char what[64];

			snprintf(what, sizeof(what), "%u bytes, grh %d", sizes[i], grh);
			fill(sa.p, sizes[i], (uint32_t)(i + 7));
			post_rb(10 + i, GRH_LEN + MTU);
			CHECK(send_ud(A.qp, i, ah, B.qp->qp_num, QKEY, sa.p, sizes[i], sa.mr->lkey,
				      i & 1) == 0,
			      "%s: post_send", what);
			EXPECT_WC(A.cq, IBV_WC_SUCCESS, i, IBV_WC_SEND, what);
			REQUIRE(poll1(B.cq, &wc), "%s: the receive", what);
			check_datagram(&wc, sizes[i], grh, (uint32_t)(i + 7), what);
			CHECK(!(i & 1) || ((wc.wc_flags & IBV_WC_WITH_IMM) &&
					   wc.imm_data == htobe32(0xabcd0000u | (uint32_t)i)),
			      "%s: immediate data", what);
		}
		CHECK(ibv_destroy_ah(ah) == 0, "destroy_ah");
	}
}

/* Datagrams that are lost say nothing to the sender; the receive stays posted. */
static void drops(void)
{
	struct ibv_ah *ah = ah_to(&A, &B, false), *nowhere;
	struct ibv_ah_attr na = {.dlid = 0x7777, .port_num = 1};
	struct ibv_wc wc;

	nowhere = ibv_create_ah(A.pd, &na);
	REQUIRE(nowhere, "an AH to a LID nobody has: %s", strerror(errno));
	fill(sa.p, 64, 3);
	post_rb(50, GRH_LEN + MTU);
	CHECK(send_ud(A.qp, 1, ah, B.qp->qp_num, QKEY ^ 1, sa.p, 64, sa.mr->lkey, false) == 0,
	      "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_SEND, "wrong Q_Key: the sender succeeds");
	CHECK(send_ud(A.qp, 2, ah, B.qp->qp_num + 999, QKEY, sa.p, 64, sa.mr->lkey, false) == 0,
	      "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 2, IBV_WC_SEND, "no such QPN");
	CHECK(send_ud(A.qp, 3, nowhere, B.qp->qp_num, QKEY, sa.p, 64, sa.mr->lkey, false) == 0,
	      "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 3, IBV_WC_SEND, "no such LID");
	CHECK(cq_empty(B.cq), "nothing delivered");
	/* The high bit: the sender's own Q_Key, which is B's. */
	CHECK(send_ud(A.qp, 4, ah, B.qp->qp_num, 0x80000000u, sa.p, 64, sa.mr->lkey, false) == 0,
	      "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 4, IBV_WC_SEND, "controlled Q_Key");
	REQUIRE(poll1(B.cq, &wc), "the receive");
	CHECK(wc.wr_id == 50, "the first datagram to arrive took receive 50");
	check_datagram(&wc, 64, false, 3, "controlled Q_Key");
	/* No receive posted: dropped, and the next one finds the new receive. */
	CHECK(send_ud(A.qp, 5, ah, B.qp->qp_num, QKEY, sa.p, 64, sa.mr->lkey, false) == 0, "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 5, IBV_WC_SEND, "no receive posted");
	CHECK(cq_empty(B.cq), "nothing delivered without a receive");
	/* A receive too small for GRH + payload fails alone; the QP goes on. */
	post_rb(51, GRH_LEN + 10);
	CHECK(send_ud(A.qp, 6, ah, B.qp->qp_num, QKEY, sa.p, 64, sa.mr->lkey, false) == 0, "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 6, IBV_WC_SEND, "into a small receive");
	EXPECT_WC(B.cq, IBV_WC_LOC_LEN_ERR, 51, IBV_WC_RECV, "receive too small");
	CHECK(qp_state(B.qp) == IBV_QPS_RTS, "the receiver's UD QP stays RTS");
	CHECK(ibv_destroy_ah(nowhere) == 0 && ibv_destroy_ah(ah) == 0, "destroy_ah");
}

/* Beyond the MTU: IBV_WC_LOC_LEN_ERR, the send queue stops (SQE), RTS again. */
static void mtu(void)
{
	struct ibv_ah *ah = ah_to(&A, &B, false);
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTS};
	struct ibv_wc wc;

	post_rb(60, GRH_LEN + MTU);
	CHECK(send_ud(A.qp, 1, ah, B.qp->qp_num, QKEY, sa.p, MTU + 1, sa.mr->lkey, false) == 0,
	      "post");
	EXPECT_WC(A.cq, IBV_WC_LOC_LEN_ERR, 1, IBV_WC_SEND, "MTU + 1");
	CHECK(qp_state(A.qp) == IBV_QPS_SQE, "SQE after a send error");
	CHECK(send_ud(A.qp, 2, ah, B.qp->qp_num, QKEY, sa.p, 8, sa.mr->lkey, false) == 0, "post");
	EXPECT_WC(A.cq, IBV_WC_WR_FLUSH_ERR, 2, IBV_WC_SEND, "flushed in SQE");
	CHECK(ibv_modify_qp(A.qp, &a, IBV_QP_STATE) == 0, "SQE -> RTS");
	fill(sa.p, 8, 9);
	CHECK(send_ud(A.qp, 3, ah, B.qp->qp_num, QKEY, sa.p, 8, sa.mr->lkey, false) == 0, "post");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 3, IBV_WC_SEND, "after RTS again");
	REQUIRE(poll1(B.cq, &wc), "the receive");
	check_datagram(&wc, 8, false, 9, "after SQE");
	CHECK(ibv_destroy_ah(ah) == 0, "destroy_ah");
}

/* B answers whoever wrote to it, through an AH made from the completion. */
static void reply_from_wc(void)
{
	for (int grh = 0; grh < 2; grh++) {
		struct ibv_ah *ah = ah_to(&A, &B, grh), *back;
		struct ibv_wc wc;

		post_rb(70, GRH_LEN + MTU);
		fill(sa.p, 100, 11);
		CHECK(send_ud(A.qp, 1, ah, B.qp->qp_num, QKEY, sa.p, 100, sa.mr->lkey, false) == 0,
		      "post");
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_SEND, "request");
		REQUIRE(poll1(B.cq, &wc), "the request");
		back = ibv_create_ah_from_wc(B.pd, &wc, (struct ibv_grh *)rb.p, 1);
		CHECK(back, "create_ah_from_wc (grh %d): %s", grh, strerror(errno));
		if (back) {
			memset(sa.p, 0xee, GRH_LEN + MTU);
			CHECK(post_recv1(A.qp, 80, sa.p, GRH_LEN + MTU, sa.mr->lkey) == 0, "post");
			memcpy(rb.p + GRH_LEN, "reply", 5);
			CHECK(send_ud(B.qp, 2, back, wc.src_qp, QKEY, rb.p + GRH_LEN, 5,
				      rb.mr->lkey, false) == 0,
			      "reply");
			EXPECT_WC(B.cq, IBV_WC_SUCCESS, 2, IBV_WC_SEND, "reply sent");
			REQUIRE(poll1(A.cq, &wc), "the reply");
			CHECK(wc.status == IBV_WC_SUCCESS && wc.byte_len == GRH_LEN + 5 &&
				  wc.slid == B.lid && !memcmp(sa.p + GRH_LEN, "reply", 5) &&
				  !!(wc.wc_flags & IBV_WC_GRH) == grh,
			      "reply arrived (grh %d)", grh);
			CHECK(ibv_destroy_ah(back) == 0, "destroy_ah");
		}
		CHECK(ibv_destroy_ah(ah) == 0, "destroy_ah");
	}
}

/* The wr_* API: the address and the data setters in either order. */
static void wr_api(void)
{
	struct ibv_ah *ah = ah_to(&A, &B, false);
	struct ibv_qp_ex *x;
	struct ibv_wc wc;

	ud_qp(&A, QKEY, true);
	x = ibv_qp_to_qp_ex(A.qp);
	for (int order = 0; order < 2; order++) {
		post_rb(90 + order, GRH_LEN + MTU);
		fill(sa.p, 300, 20 + order);
		ibv_wr_start(x);
		x->wr_id = 100 + order;
		x->wr_flags = IBV_SEND_SIGNALED;
		ibv_wr_send(x);
		if (order)
			ibv_wr_set_sge(x, sa.mr->lkey, (uintptr_t)sa.p, 300);
		ibv_wr_set_ud_addr(x, ah, B.qp->qp_num, QKEY);
		if (!order)
			ibv_wr_set_sge(x, sa.mr->lkey, (uintptr_t)sa.p, 300);
		CHECK(ibv_wr_complete(x) == 0, "wr_complete (order %d)", order);
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 100 + order, IBV_WC_SEND, "wr_send");
		REQUIRE(poll1(B.cq, &wc), "the receive");
		check_datagram(&wc, 300, false, (uint32_t)(20 + order), "wr_* API");
	}
	ibv_wr_start(x);
	ibv_wr_send(x);
	ibv_wr_set_sge(x, sa.mr->lkey, (uintptr_t)sa.p, 8);
	CHECK(ibv_wr_complete(x) == EINVAL, "a UD WR without an address is refused");
	CHECK(ibv_destroy_ah(ah) == 0, "destroy_ah");
}

/* Receives one datagram of len bytes (pattern seed) from A on e's CQ into p. */
static void check_member(struct ep *e, const uint8_t *p, uint32_t len, uint32_t seed,
			 const char *what)
{
	struct ibv_wc wc;

	REQUIRE(poll1(e->cq, &wc), "%s: no datagram", what);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.byte_len == GRH_LEN + len, "%s: %s, %u bytes", what,
	      ibv_wc_status_str(wc.status), wc.byte_len);
	CHECK(wc.src_qp == A.qp->qp_num && (wc.wc_flags & IBV_WC_GRH), "%s: src_qp, GRH", what);
	CHECK(pat_diff(p + GRH_LEN, len, seed) == len, "%s: payload", what);
	CHECK(!memcmp(p + 24, MGID.raw, 16), "%s: the GRH's destination is the group", what);
}

/*
 * UD multicast: B and C attach to a group, A's datagrams to the group's
 * LID reach both, a detached member gets nothing more, and the refusals.
 */
static void multicast(void)
{
	struct ep C = {0};
	struct buf rc;
	struct ibv_ah_attr aa = {.dlid = MLID, .port_num = 1, .is_global = 1};
	struct ibv_ah *ah;
	struct ibv_wc wc;

	ep_open(&C);
	buf_new(&rc, C.pd, 2 * MTU, IBV_ACCESS_LOCAL_WRITE);
	ud_qp(&C, QKEY, false);
	aa.grh.dgid = MGID;
	aa.grh.hop_limit = 64;
	ah = ibv_create_ah(A.pd, &aa);
	REQUIRE(ah, "multicast AH: %s", strerror(errno));
	CHECK(ibv_attach_mcast(B.qp, &MGID, MLID) == 0, "attach B: %s", strerror(errno));
	CHECK(ibv_attach_mcast(C.qp, &MGID, MLID) == 0, "attach C: %s", strerror(errno));
	CHECK(ibv_attach_mcast(C.qp, &MGID, MLID) == 0, "attach C again");
	for (uint32_t k = 0; k < 3; k++) {
		post_rb(k, MTU);
		memset(rc.p, 0xee, rc.maplen);
		CHECK(post_recv1(C.qp, k, rc.p, MTU, rc.mr->lkey) == 0, "post_recv C");
		fill(sa.p, 1000 + k, 70 + k);
		CHECK(send_ud(A.qp, k, ah, 0xffffff, QKEY, sa.p, 1000 + k, sa.mr->lkey, false) == 0,
		      "send to the group");
		REQUIRE(poll1(A.cq, &wc) && wc.status == IBV_WC_SUCCESS, "send completion");
		check_member(&B, rb.p, 1000 + k, 70 + k, "B");
		check_member(&C, rc.p, 1000 + k, 70 + k, "C");
	}
	CHECK(ibv_detach_mcast(C.qp, &MGID, MLID) == 0, "detach C");
	CHECK(ibv_detach_mcast(C.qp, &MGID, MLID) == EINVAL, "detach C twice: EINVAL");
	post_rb(9, MTU);
	CHECK(post_recv1(C.qp, 9, rc.p, MTU, rc.mr->lkey) == 0, "post_recv C");
	fill(sa.p, 64, 90);
	CHECK(send_ud(A.qp, 9, ah, 0xffffff, QKEY, sa.p, 64, sa.mr->lkey, false) == 0, "send");
	REQUIRE(poll1(A.cq, &wc), "send completion");
	check_member(&B, rb.p, 64, 90, "B after C left");
	CHECK(cq_empty(C.cq), "C got a datagram after it detached");
	CHECK(ibv_detach_mcast(B.qp, &MGID, MLID) == 0, "detach B");
	CHECK(ibv_attach_mcast(B.qp, &MGID, 0x0005) == EINVAL, "attach to a unicast LID: EINVAL");
	CHECK(ibv_attach_mcast(B.qp, &B_GID_UNICAST, MLID) == EINVAL, "a unicast GID: EINVAL");
	ibv_destroy_ah(ah);
	buf_free(&rc);
	ep_close(&C); /* its QP still had a receive posted: destroyed with it */
}

static void post_errnos(void)
{
	struct ibv_ah *ah = ah_to(&A, &B, false);
	struct ibv_sge s = {.addr = (uintptr_t)sa.p, .length = 8, .lkey = sa.mr->lkey};
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE}, *bad;
	struct ibv_ah_attr bad_port = {.dlid = B.lid, .port_num = 2};

	wr.wr.ud.ah = ah;
	CHECK(ibv_post_send(A.qp, &wr, &bad) == EINVAL, "RDMA WRITE on UD: EINVAL");
	wr.opcode = IBV_WR_SEND;
	wr.wr.ud.ah = NULL;
	CHECK(ibv_post_send(A.qp, &wr, &bad) == EINVAL, "UD send without an AH: EINVAL");
	errno = 0;
	CHECK(!ibv_create_ah(A.pd, &bad_port) && errno == EINVAL, "AH on port 2: EINVAL");
	CHECK(ibv_dealloc_pd(A.pd) == EBUSY, "dealloc_pd with an AH in it: EBUSY");
	CHECK(ibv_destroy_ah(ah) == 0, "destroy_ah");
}

int main(void)
{
	ep_open(&A);
	ep_open(&B);
	buf_new(&sa, A.pd, 2 * MTU, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&rb, B.pd, 2 * MTU, IBV_ACCESS_LOCAL_WRITE);
	ud_qp(&A, QKEY, false);
	ud_qp(&B, QKEY, false);
	sizes_and_grh();
	drops();
	mtu();
	reply_from_wc();
	post_errnos();
	wr_api();
	multicast();
	buf_free(&sa);
	buf_free(&rb);
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}
