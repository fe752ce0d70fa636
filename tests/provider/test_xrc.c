// SPDX-License-Identifier: MIT
/*
 * XRC with the semantics of the IB spec and ibv_open_xrcd(3),
 * ibv_create_srq_ex(3) and ibv_open_qp(3): A's XRC send QP is connected
 * to T's XRC receive QP, and each WR reaches the SRQ it names in T's XRC
 * domain (every byte checked, the completion on that SRQ's CQ naming the
 * receive QP). A, T and S are three contexts of this process: S holds
 * SRQs in the domain T opened on the same file, and an SRQ in a domain of
 * its own, which A must not reach.
 */
#include <fcntl.h>

#include "dp_common.h"

static struct ep A, T, S;
static const struct qpopts opts = {.access = ALL_REMOTE, .retry_cnt = 7, .timeout = 14};

enum { LEN = 8192, NSRQ = 2 };

struct xsrq {
	struct ibv_srq *srq;
	struct ibv_cq *cq;
	uint32_t num;
	struct buf rx;
};

static struct ibv_xrcd *xrcd_open(struct ibv_context *ctx, int fd)
{
	struct ibv_xrcd_init_attr a = {.comp_mask =
					   IBV_XRCD_INIT_ATTR_FD | IBV_XRCD_INIT_ATTR_OFLAGS,
				       .fd = fd,
				       .oflags = O_CREAT};
	struct ibv_xrcd *x = ibv_open_xrcd(ctx, &a);

	REQUIRE(x, "ibv_open_xrcd(fd %d): %s", fd, strerror(errno));
	return x;
}

static void xsrq_new(struct xsrq *x, struct ep *e, struct ibv_xrcd *xrcd)
{
	struct ibv_srq_init_attr_ex a = {
	    .attr = {.max_wr = 16, .max_sge = 1},
	    .comp_mask = IBV_SRQ_INIT_ATTR_TYPE | IBV_SRQ_INIT_ATTR_PD | IBV_SRQ_INIT_ATTR_XRCD |
			 IBV_SRQ_INIT_ATTR_CQ,
	    .srq_type = IBV_SRQT_XRC,
	    .pd = e->pd,
	    .xrcd = xrcd,
	};

	x->cq = ibv_create_cq(e->ctx, 64, NULL, NULL, 0);
	REQUIRE(x->cq, "create_cq: %s", strerror(errno));
	a.cq = x->cq;
	x->srq = ibv_create_srq_ex(e->ctx, &a);
	REQUIRE(x->srq, "create_srq_ex XRC: %s", strerror(errno));
	REQUIRE(ibv_get_srq_num(x->srq, &x->num) == 0, "get_srq_num");
	buf_new(&x->rx, e->pd, LEN, MR_ALL);
}

static void xsrq_free(struct xsrq *x)
{
	buf_free(&x->rx);
	CHECK(ibv_destroy_srq(x->srq) == 0, "destroy XRC SRQ");
	CHECK(ibv_destroy_cq(x->cq) == 0, "destroy its CQ");
}

static int post_srq1(struct xsrq *x, uint64_t id)
{
	struct ibv_sge s = {.addr = (uintptr_t)x->rx.p, .length = LEN, .lkey = x->rx.mr->lkey};
	struct ibv_recv_wr wr = {.wr_id = id, .sg_list = &s, .num_sge = 1}, *bad;

	return ibv_post_srq_recv(x->srq, &wr, &bad);
}

static struct ibv_qp *recv_qp(struct ep *e, struct ibv_xrcd *xrcd)
{
	struct ibv_qp_init_attr_ex a = {
	    .qp_type = IBV_QPT_XRC_RECV,
	    .comp_mask = IBV_QP_INIT_ATTR_XRCD,
	    .xrcd = xrcd,
	};
	struct ibv_qp *qp = ibv_create_qp_ex(e->ctx, &a);

	REQUIRE(qp, "create XRC receive QP: %s", strerror(errno));
	return qp;
}

static struct ibv_qp *send_qp(struct ep *e)
{
	struct ibv_qp_init_attr_ex a = {
	    .qp_type = IBV_QPT_XRC_SEND,
	    .send_cq = e->cq,
	    .cap = {.max_send_wr = 64, .max_send_sge = 1, .max_inline_data = 64},
	    .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
	    .pd = e->pd,
	    .send_ops_flags = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE |
			      IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD,
	};
	struct ibv_qp *qp = ibv_create_qp_ex(e->ctx, &a);

	REQUIRE(qp, "create XRC send QP: %s", strerror(errno));
	return qp;
}

static int post_xrc(struct ibv_qp *qp, uint64_t id, enum ibv_wr_opcode op, struct buf *b,
		    uint32_t srqn, uint64_t raddr, uint32_t rkey)
{
	struct ibv_sge s = {.addr = (uintptr_t)b->p, .length = LEN, .lkey = b->mr->lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = op,
				 .send_flags = IBV_SEND_SIGNALED,
				 .imm_data = htobe32(0x1234)},
			   *bad;

	wr.qp_type.xrc.remote_srqn = srqn;
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return ibv_post_send(qp, &wr, &bad);
}

static int post_xrc_fetch_add(struct ibv_qp *qp, uint64_t id, struct buf *b, uint32_t srqn,
			      uint64_t *remote, uint32_t rkey, uint64_t add)
{
	struct ibv_sge s = {.addr = (uintptr_t)b->p, .length = 8, .lkey = b->mr->lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = IBV_WR_ATOMIC_FETCH_AND_ADD,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	wr.qp_type.xrc.remote_srqn = srqn;
	wr.wr.atomic.remote_addr = (uintptr_t)remote;
	wr.wr.atomic.rkey = rkey;
	wr.wr.atomic.compare_add = add;
	return ibv_post_send(qp, &wr, &bad);
}

static struct ibv_qp *ini, *tgt;

/* A fresh connection: an error completion leaves the send QP in ERR. */
static void connect_pair(struct ibv_xrcd *xrcd)
{
	if (ini)
		CHECK(ibv_destroy_qp(ini) == 0, "destroy send QP");
	if (tgt)
		CHECK(ibv_destroy_qp(tgt) == 0, "destroy receive QP");
	ini = send_qp(&A);
	tgt = recv_qp(&T, xrcd);
	qp_connect(ini, tgt->qp_num, T.lid, &opts);
	qp_connect(tgt, ini->qp_num, A.lid, &opts);
}

/* Sends to each SRQ of the domain: its receive, its CQ, the receive QP named. */
static void sends_reach_each_srq(struct xsrq *x, int n, struct buf *tx)
{
	for (int i = 0; i < n; i++) {
		struct ibv_wc wc;
		bool imm = i % 2;

		fill(tx->p, LEN, 100 + i);
		REQUIRE(post_srq1(&x[i], 10 + i) == 0, "post_srq_recv");
		REQUIRE(post_xrc(ini, i, imm ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND, tx, x[i].num, 0,
				 0) == 0,
			"post send to SRQ %u", x[i].num);
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, i, IBV_WC_SEND, "send completes");
		poll1(x[i].cq, &wc);
		CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == (uint64_t)(10 + i) &&
			  wc.opcode == IBV_WC_RECV && wc.byte_len == LEN &&
			  wc.qp_num == tgt->qp_num && wc.src_qp == ini->qp_num &&
			  !!(wc.wc_flags & IBV_WC_WITH_IMM) == imm &&
			  (!imm || wc.imm_data == htobe32(0x1234)),
		      "SRQ %u: its CQ has the receive, naming receive QP %#x from %#x (got %s "
		      "wr_id %llu qp %#x src %#x len %u)",
		      x[i].num, tgt->qp_num, ini->qp_num, ibv_wc_status_str(wc.status),
		      (unsigned long long)wc.wr_id, wc.qp_num, wc.src_qp, wc.byte_len);
		CHECK(pat_diff(x[i].rx.p, LEN, 100 + i) == LEN, "SRQ %u: every byte", x[i].num);
		for (int j = 0; j < n; j++)
			CHECK(j == i || cq_empty(x[j].cq), "nothing on another SRQ's CQ");
	}
}

/* The wr_* API: the SRQ number is a setter of its own, in either order with the data. */
static void wr_api_send(struct xsrq *x, struct buf *tx)
{
	struct ibv_qp_ex *q = ibv_qp_to_qp_ex(ini);
	struct ibv_wc wc;

	fill(tx->p, LEN, 300);
	REQUIRE(post_srq1(x, 77) == 0, "post_srq_recv");
	ibv_wr_start(q);
	q->wr_id = 78;
	q->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_send(q);
	ibv_wr_set_sge(q, tx->mr->lkey, (uintptr_t)tx->p, LEN);
	ibv_wr_set_xrc_srqn(q, x->num);
	CHECK(ibv_wr_complete(q) == 0, "wr_complete");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 78, IBV_WC_SEND, "wr_send with wr_set_xrc_srqn");
	poll1(x->cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 77 && pat_diff(x->rx.p, LEN, 300) == LEN,
	      "the SRQ named by wr_set_xrc_srqn received every byte");
}

/* RDMA write, read and atomics through the receive QP, checked in the SRQ's PD. */
static void rdma_through_srq(struct xsrq *x, struct buf *tx, struct buf *rx)
{
	uint64_t *word = (uint64_t *)x->rx.p;

	fill(tx->p, LEN, 7);
	REQUIRE(post_xrc(ini, 1, IBV_WR_RDMA_WRITE, tx, x->num, (uintptr_t)x->rx.p,
			 x->rx.mr->rkey) == 0,
		"post write");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_RDMA_WRITE, "write");
	CHECK(pat_diff(x->rx.p, LEN, 7) == LEN, "written: every byte");
	fill(x->rx.p, LEN, 8);
	REQUIRE(
	    post_xrc(ini, 2, IBV_WR_RDMA_READ, rx, x->num, (uintptr_t)x->rx.p, x->rx.mr->rkey) == 0,
	    "post read");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 2, IBV_WC_RDMA_READ, "read");
	CHECK(pat_diff(rx->p, LEN, 8) == LEN, "read: every byte");
	*word = 40;
	REQUIRE(post_xrc_fetch_add(ini, 3, rx, x->num, word, x->rx.mr->rkey, 2) == 0,
		"post fetch-add");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 3, IBV_WC_FETCH_ADD, "fetch-add");
	CHECK(*word == 42 && *(uint64_t *)rx->p == 40, "fetch-add: 40 + 2, 40 returned");
	CHECK(cq_empty(x->cq), "no receive completion for one-sided operations");
}

/* An SRQ outside the receive QP's domain, or a number naming none: Invalid Request. */
static void foreign_srqs_refused(struct ibv_xrcd *xrcd, struct xsrq *foreign, struct buf *tx)
{
	struct ibv_srq_init_attr basic_attr = {.attr = {.max_wr = 4, .max_sge = 1}};
	struct ibv_srq *basic = ibv_create_srq(T.pd, &basic_attr);
	uint32_t num;
	const uint32_t bad[] = {foreign->num, 0, 0xffffff};

	REQUIRE(basic, "create basic SRQ: %s", strerror(errno));
	CHECK(ibv_get_srq_num(basic, &num) == EINVAL, "a basic SRQ has no number");
	REQUIRE(post_srq1(foreign, 99) == 0, "post to the foreign SRQ");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		connect_pair(xrcd);
		REQUIRE(post_xrc(ini, 50 + i, IBV_WR_SEND, tx, bad[i], 0, 0) == 0, "post");
		EXPECT_WC(A.cq, IBV_WC_REM_INV_REQ_ERR, 50 + i, -1, "SRQ not in the domain");
		CHECK(qp_state(ini) == IBV_QPS_ERR, "the send QP fails");
	}
	CHECK(cq_empty(foreign->cq), "the foreign SRQ received nothing");
	CHECK(ibv_destroy_srq(basic) == 0, "destroy basic SRQ");
}

/* A key of another PD than the SRQ's: a remote access error. */
static void rdma_outside_srq_pd(struct xsrq *x, struct buf *tx)
{
	struct ibv_pd *other = ibv_alloc_pd(S.ctx);
	struct buf m;

	REQUIRE(other, "alloc_pd");
	buf_new(&m, other, LEN, MR_ALL);
	REQUIRE(post_xrc(ini, 5, IBV_WR_RDMA_WRITE, tx, x->num, (uintptr_t)m.p, m.mr->rkey) == 0,
		"post");
	EXPECT_WC(A.cq, IBV_WC_REM_ACCESS_ERR, 5, -1, "write in another PD");
	CHECK(all_diff(m.p, LEN, 0xee) == LEN, "nothing written");
	buf_free(&m);
	CHECK(ibv_dealloc_pd(other) == 0, "dealloc_pd");
}

/* What an XRC QP does not do, and the domain's lifetime. */
static void refusals(struct ibv_xrcd *xrcd, struct buf *tx)
{
	struct ibv_qp_init_attr_ex no_xrcd = {
	    .qp_type = IBV_QPT_XRC_RECV, .comp_mask = IBV_QP_INIT_ATTR_PD, .pd = T.pd};
	struct ibv_qp_init_attr plain = {
	    .qp_type = IBV_QPT_XRC_RECV, .send_cq = T.cq, .recv_cq = T.cq};

	errno = 0;
	CHECK(!ibv_create_qp_ex(T.ctx, &no_xrcd) && errno == EINVAL,
	      "a receive QP needs a domain: %s", strerror(errno));
	CHECK(!ibv_create_qp(T.pd, &plain), "ibv_create_qp cannot make a receive QP");
	CHECK(post_xrc(tgt, 1, IBV_WR_SEND, tx, 1, 0, 0) == EINVAL, "a receive QP does not send");
	CHECK(post_recv1(ini, 1, tx->p, 8, tx->mr->lkey) == EINVAL, "a send QP does not receive");
	CHECK(ibv_close_xrcd(xrcd) == EBUSY, "close_xrcd while QPs and SRQs are in it: EBUSY");
}

/* ibv_open_qp: a second handle on the receive QP changes and queries it. */
static void open_qp(struct ibv_xrcd *xrcd)
{
	struct ibv_qp_open_attr a = {.comp_mask = IBV_QP_OPEN_ATTR_NUM | IBV_QP_OPEN_ATTR_XRCD |
						  IBV_QP_OPEN_ATTR_TYPE,
				     .qp_num = tgt->qp_num,
				     .xrcd = xrcd,
				     .qp_type = IBV_QPT_XRC_RECV};
	struct ibv_qp *h = ibv_open_qp(T.ctx, &a);
	struct ibv_qp_attr qa = {.qp_state = IBV_QPS_ERR};

	REQUIRE(h, "ibv_open_qp: %s", strerror(errno));
	CHECK(h->qp_num == tgt->qp_num && qp_state(h) == IBV_QPS_RTS, "the same QP, in RTS");
	CHECK(ibv_destroy_qp(tgt) == EBUSY, "its creator cannot destroy it while it is open");
	CHECK(ibv_modify_qp(h, &qa, IBV_QP_STATE) == 0 && qp_state(tgt) == IBV_QPS_ERR,
	      "modify through the handle changes the QP");
	CHECK(ibv_destroy_qp(h) == 0, "close the handle");
	a.qp_num = ini->qp_num;
	CHECK(!ibv_open_qp(T.ctx, &a), "a send QP cannot be opened");
}

int main(void)
{
	char path[] = "/tmp/ivrdma-xrcd-XXXXXX";
	int fd = mkstemp(path);
	struct ibv_xrcd *xt, *xs, *own;
	struct xsrq x[NSRQ + 1], foreign;
	struct buf tx, rx;

	REQUIRE(fd >= 0, "mkstemp");
	ep_open(&A);
	ep_open(&T);
	ep_open(&S);
	xt = xrcd_open(T.ctx, fd);
	xs = xrcd_open(S.ctx, fd); /* the same file: the same domain */
	own = xrcd_open(S.ctx, -1);
	xsrq_new(&x[0], &T, xt);
	xsrq_new(&x[1], &S, xs);
	xsrq_new(&x[2], &T, xt);
	xsrq_new(&foreign, &S, own);
	buf_new(&tx, A.pd, LEN, MR_ALL);
	buf_new(&rx, A.pd, LEN, MR_ALL);
	connect_pair(xt);
	sends_reach_each_srq(x, NSRQ + 1, &tx);
	wr_api_send(&x[2], &tx);
	rdma_through_srq(&x[1], &tx, &rx); /* another context's SRQ, in its PD */
	rdma_outside_srq_pd(&x[1], &tx);
	foreign_srqs_refused(xt, &foreign, &tx);
	connect_pair(xt);
	refusals(xt, &tx);
	open_qp(xt);
	CHECK(ibv_destroy_qp(ini) == 0 && ibv_destroy_qp(tgt) == 0, "destroy the QPs");
	buf_free(&tx);
	buf_free(&rx);
	for (int i = 0; i <= NSRQ; i++)
		xsrq_free(&x[i]);
	xsrq_free(&foreign);
	CHECK(ibv_close_xrcd(xt) == 0 && ibv_close_xrcd(xs) == 0 && ibv_close_xrcd(own) == 0,
	      "close the domains");
	close(fd);
	unlink(path);
	ep_close(&S);
	ep_close(&T);
	ep_close(&A);
	return check_summary();
}
