// SPDX-License-Identifier: MIT
/*
 * What rdma-core 44 adds beyond the classic verbs: atomic write
 * (IBV_WR_ATOMIC_WRITE through ibv_post_send, inline or from an SGE, and
 * ibv_wr_atomic_write), with its checks at both ends,
 * ibv_query_qp_data_in_order, and completion timestamps on extended CQs
 * with ibv_query_rt_values_ex. A (initiator) and B (target) are two
 * contexts of this process, their RC QPs connected; every value checked.
 */
#include "dp_common.h"

static struct ep A, B;
static const struct qpopts opts = {.access = ALL_REMOTE, .retry_cnt = 7, .timeout = 14};
static struct buf src, dst;

static int post_atomic_write(uint64_t id, uint64_t *value, bool inl, uint64_t raddr, uint32_t rkey,
			     uint32_t len)
{
	struct ibv_sge s = {.addr = (uintptr_t)value, .length = len, .lkey = src.mr->lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = IBV_WR_ATOMIC_WRITE,
				 .send_flags = IBV_SEND_SIGNALED | (inl ? IBV_SEND_INLINE : 0)},
			   *bad;

	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return ibv_post_send(A.qp, &wr, &bad);
}

static void atomic_write_post_send(void)
{
	uint64_t *v = (uint64_t *)src.p, *at = (uint64_t *)dst.p + 3;

	*v = 0x1122334455667788ull;
	CHECK(post_atomic_write(1, v, false, (uintptr_t)at, dst.mr->rkey, 8) == 0, "post from SGE");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_ATOMIC_WRITE, "atomic write from an SGE");
	CHECK(*at == 0x1122334455667788ull, "the 8 bytes are there");
	*v = 42;
	CHECK(post_atomic_write(2, v, true, (uintptr_t)at, dst.mr->rkey, 8) == 0, "post inline");
	*v = 0; /* inline: copied at post */
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 2, IBV_WC_ATOMIC_WRITE, "atomic write inline");
	CHECK(*at == 42 && at[-1] == 0 && at[1] == 0, "42 written, its neighbours untouched");
	CHECK(post_atomic_write(3, v, false, (uintptr_t)at, dst.mr->rkey, 4) == EINVAL,
	      "4 bytes: EINVAL");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "no completion for the refused WR");
}

static void atomic_write_wr_api(void)
{
	struct ibv_qp_ex *q;
	uint64_t value = 0xfeedfacecafebeefull, *at = (uint64_t *)dst.p + 8;

	ep_qp_ex(&A, IBV_QP_EX_WITH_ATOMIC_WRITE | IBV_QP_EX_WITH_RDMA_WRITE);
	ep_qp(&B, IBV_QPT_RC, &opts);
	qp_connect(A.qp, B.qp->qp_num, B.lid, &opts);
	qp_connect(B.qp, A.qp->qp_num, A.lid, &opts);
	q = ibv_qp_to_qp_ex(A.qp);
	ibv_wr_start(q);
	q->wr_id = 7;
	q->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_atomic_write(q, dst.mr->rkey, (uintptr_t)at, &value);
	value = 0; /* copied by the call */
	CHECK(ibv_wr_complete(q) == 0, "wr_complete");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 7, IBV_WC_ATOMIC_WRITE, "wr_atomic_write");
	CHECK(*at == 0xfeedfacecafebeefull, "wr_atomic_write's value is there");
}

/* The responder's checks: alignment, then the MR's access. */
static void atomic_write_refused(void)
{
	struct buf ro;
	uint64_t *v = (uint64_t *)src.p;

	*v = 9;
	CHECK(post_atomic_write(4, v, false, (uintptr_t)dst.p + 4, dst.mr->rkey, 8) == 0, "post");
	EXPECT_WC(A.cq, IBV_WC_REM_INV_REQ_ERR, 4, -1, "misaligned: invalid request");
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
	buf_new(&ro, B.pd, 64, IBV_ACCESS_REMOTE_READ);
	CHECK(post_atomic_write(5, v, false, (uintptr_t)ro.p, ro.mr->rkey, 8) == 0, "post");
	EXPECT_WC(A.cq, IBV_WC_REM_ACCESS_ERR, 5, -1, "an MR without remote write: access error");
	CHECK(all_diff(ro.p, 64, 0xee) == 64, "nothing written");
	buf_free(&ro);
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
}

static void data_in_order(void)
{
	CHECK(ibv_query_qp_data_in_order(A.qp, IBV_WR_RDMA_WRITE, 0) == 1 &&
		  ibv_query_qp_data_in_order(A.qp, IBV_WR_SEND, 0) == 1,
	      "writes and sends: the last byte comes last");
	CHECK(ibv_query_qp_data_in_order(A.qp, IBV_WR_ATOMIC_FETCH_AND_ADD, 0) == 0 &&
		  ibv_query_qp_data_in_order(A.qp, IBV_WR_RDMA_WRITE, 1) == 0,
	      "atomics, and unknown flags: 0");
}

static uint64_t raw_clock(struct ibv_context *ctx)
{
	struct ibv_values_ex v = {.comp_mask = IBV_VALUES_MASK_RAW_CLOCK};

	REQUIRE(ibv_query_rt_values_ex(ctx, &v) == 0 && v.comp_mask == IBV_VALUES_MASK_RAW_CLOCK,
		"query_rt_values_ex");
	return (uint64_t)v.raw_clock.tv_sec * 1000000000u + (uint64_t)v.raw_clock.tv_nsec;
}

/* One completion of cq, its timestamps read as the extended API gives them. */
static bool poll_ts(struct ibv_cq_ex *cq, uint64_t *ts, uint64_t *wall)
{
	struct ibv_poll_cq_attr pa = {0};
	int rc;

	for (int i = 0; (rc = ibv_start_poll(cq, &pa)) == ENOENT && i < 1000000; i++)
		;
	if (rc)
		return false;
	*ts = ibv_wc_read_completion_ts(cq);
	*wall = ibv_wc_read_completion_wallclock_ns(cq);
	rc = cq->status;
	ibv_end_poll(cq);
	return rc == IBV_WC_SUCCESS;
}

/*
 * Both ends stamp on the device clock: A's send completion by A, B's
 * receive completion by A, its initiator. Each stamp lies between two
 * readings of the raw clock taken around the operation (an order, no
 * duration is asserted).
 */
static void completion_timestamps(void)
{
	struct ibv_cq_init_attr_ex ca = {.cqe = 16,
					 .wc_flags = IBV_WC_EX_WITH_COMPLETION_TIMESTAMP |
						     IBV_WC_EX_WITH_COMPLETION_TIMESTAMP_WALLCLOCK |
						     IBV_WC_EX_WITH_BYTE_LEN};
	struct ibv_cq_ex *ca_ex = ibv_create_cq_ex(A.ctx, &ca),
			 *cb_ex = ibv_create_cq_ex(B.ctx, &ca);
	struct ibv_qp_init_attr ia = {
	    .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_RC};
	struct ibv_qp *qa, *qb;
	uint64_t t0, t1, ts_a, wall_a, ts_b, wall_b;

	REQUIRE(ca_ex && cb_ex, "create_cq_ex with timestamps: %s", strerror(errno));
	ia.send_cq = ia.recv_cq = ibv_cq_ex_to_cq(ca_ex);
	qa = ibv_create_qp(A.pd, &ia);
	ia.send_cq = ia.recv_cq = ibv_cq_ex_to_cq(cb_ex);
	qb = ibv_create_qp(B.pd, &ia);
	REQUIRE(qa && qb, "QPs on the timestamping CQs");
	qp_connect(qa, qb->qp_num, B.lid, &opts);
	qp_connect(qb, qa->qp_num, A.lid, &opts);
	REQUIRE(post_recv1(qb, 1, dst.p, 64, dst.mr->lkey) == 0, "post_recv");
	t0 = raw_clock(A.ctx);
	REQUIRE(post1(qa, 2, IBV_WR_SEND, IBV_SEND_SIGNALED, src.p, 64, src.mr->lkey, 0, 0) == 0,
		"post send");
	CHECK(poll_ts(ca_ex, &ts_a, &wall_a) && poll_ts(cb_ex, &ts_b, &wall_b), "both completions");
	t1 = raw_clock(B.ctx);
	CHECK(t0 <= ts_b && ts_b <= ts_a && ts_a <= t1,
	      "stamps in order between the clock's readings: %llu <= %llu <= %llu <= %llu",
	      (unsigned long long)t0, (unsigned long long)ts_b, (unsigned long long)ts_a,
	      (unsigned long long)t1);
	CHECK(wall_a == ts_a && wall_b == ts_b, "the device clock is the wall clock in ns");
	CHECK(ibv_destroy_qp(qa) == 0 && ibv_destroy_qp(qb) == 0, "destroy QPs");
	CHECK(ibv_destroy_cq(ibv_cq_ex_to_cq(ca_ex)) == 0 &&
		  ibv_destroy_cq(ibv_cq_ex_to_cq(cb_ex)) == 0,
	      "destroy CQs");
}

int main(void)
{
	ep_open(&A);
	ep_open(&B);
	buf_new(&src, A.pd, 4096, MR_ALL);
	buf_new(&dst, B.pd, 4096, MR_ALL);
	memset(dst.p, 0, 4096);
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
	atomic_write_post_send();
	atomic_write_refused();
	atomic_write_wr_api();
	data_in_order();
	completion_timestamps();
	buf_free(&src);
	buf_free(&dst);
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}
