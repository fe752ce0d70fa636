// SPDX-License-Identifier: MIT
/*
 * Device memory with the semantics of ibv_alloc_dm(3): bytes copied in
 * and out, a zero-based MR over part of it that a peer's RDMA write, read
 * and atomic reach and that serves as a local SGE, and the refusals (out
 * of range, not zero-based, freed while registered). A (initiator) and B
 * (the DM's owner) are two contexts of this process, their RC QPs
 * connected; every byte is checked.
 */
#include "dp_common.h"

static struct ep A, B;
static const struct qpopts opts = {.access = ALL_REMOTE, .retry_cnt = 7, .timeout = 14};

enum { DM_LEN = 64 * 1024, MR_OFF = 4096, LEN = 8192 };

static struct ibv_dm *dm_alloc(uint64_t len)
{
	struct ibv_alloc_dm_attr a = {.length = len, .log_align_req = 6};

	return ibv_alloc_dm(B.ctx, &a);
}

static void limits(void)
{
	struct ibv_device_attr_ex ax;
	struct ibv_alloc_dm_attr masked = {.length = 4096, .comp_mask = 1};

	REQUIRE(ibv_query_device_ex(B.ctx, NULL, &ax) == 0, "query_device_ex");
	CHECK(ax.max_dm_size >= DM_LEN, "max_dm_size %llu advertised",
	      (unsigned long long)ax.max_dm_size);
	errno = 0;
	CHECK(!dm_alloc(ax.max_dm_size + 1) && errno == EINVAL, "larger than max_dm_size: EINVAL");
	errno = 0;
	CHECK(!dm_alloc(0) && errno == EINVAL, "0 bytes: EINVAL");
	errno = 0;
	CHECK(!ibv_alloc_dm(B.ctx, &masked) && errno == EINVAL, "unknown comp_mask: EINVAL");
}

/* ibv_memcpy_to_dm / _from_dm: every byte, and the bounds. */
static void copies(struct ibv_dm *dm, uint8_t *host)
{
	fill(host, DM_LEN, 1);
	CHECK(ibv_memcpy_to_dm(dm, 0, host, DM_LEN) == 0, "memcpy_to_dm");
	memset(host, 0, DM_LEN);
	CHECK(ibv_memcpy_from_dm(host, dm, 0, DM_LEN) == 0 && pat_diff(host, DM_LEN, 1) == DM_LEN,
	      "memcpy_from_dm gives every byte back");
	CHECK(ibv_memcpy_to_dm(dm, DM_LEN - 8, host, 16) == EINVAL &&
		  ibv_memcpy_from_dm(host, dm, DM_LEN + 1, 1) == EINVAL,
	      "past the end: EINVAL");
}

static enum ibv_wc_status remote(enum ibv_wr_opcode op, struct buf *l, uint64_t raddr,
				 uint32_t rkey)
{
	struct ibv_wc wc;

	REQUIRE(post1(A.qp, op, op, IBV_SEND_SIGNALED, l->p, LEN, l->mr->lkey, raddr, rkey) == 0,
		"post");
	poll1(A.cq, &wc);
	return wc.status;
}

/* A peer's RDMA into and out of the DM through a zero-based MR at MR_OFF. */
static void rdma(struct ibv_dm *dm, struct ibv_mr *mr, uint8_t *host)
{
	struct buf l;
	uint64_t word = 0;

	buf_new(&l, A.pd, LEN, MR_ALL);
	fill(l.p, LEN, 2);
	CHECK(remote(IBV_WR_RDMA_WRITE, &l, 0, mr->rkey) == IBV_WC_SUCCESS, "write into DM");
	CHECK(ibv_memcpy_from_dm(host, dm, 0, DM_LEN) == 0 && pat_diff(host, MR_OFF, 1) == MR_OFF &&
		  pat_diff(host + MR_OFF, LEN, 2) == LEN &&
		  host[MR_OFF + LEN] == pat(MR_OFF + LEN, 1),
	      "the write landed at the MR's offset in the DM, nothing around it changed");
	fill(host, LEN, 3);
	REQUIRE(ibv_memcpy_to_dm(dm, MR_OFF + LEN, host, LEN) == 0, "memcpy_to_dm");
	memset(l.p, 0, LEN);
	CHECK(remote(IBV_WR_RDMA_READ, &l, LEN, mr->rkey) == IBV_WC_SUCCESS &&
		  pat_diff(l.p, LEN, 3) == LEN,
	      "read from DM: every byte");
	word = 5;
	REQUIRE(ibv_memcpy_to_dm(dm, MR_OFF + 64, &word, 8) == 0, "memcpy_to_dm");
	REQUIRE(post_atomic(A.qp, 9, IBV_WR_ATOMIC_FETCH_AND_ADD, l.p, l.mr->lkey, 64, mr->rkey, 3,
			    0) == 0,
		"post fetch-add");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 9, IBV_WC_FETCH_ADD, "fetch-add on DM");
	CHECK(ibv_memcpy_from_dm(&word, dm, MR_OFF + 64, 8) == 0 && word == 8 &&
		  *(uint64_t *)l.p == 5,
	      "fetch-add: 5 + 3 in the DM, 5 returned");
	CHECK(remote(IBV_WR_RDMA_WRITE, &l, 2 * LEN - 8, mr->rkey) == IBV_WC_REM_ACCESS_ERR,
	      "past the MR's length: remote access error");
	buf_free(&l);
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
}

/* The DM MR's lkey in a send's SGE: B sends from device memory to A. */
static void local_sge(struct ibv_dm *dm, struct ibv_mr *mr, uint8_t *host)
{
	struct buf r;
	struct ibv_wc wc;

	buf_new(&r, A.pd, LEN, MR_ALL);
	fill(host, LEN, 4);
	REQUIRE(ibv_memcpy_to_dm(dm, MR_OFF, host, LEN) == 0, "memcpy_to_dm");
	REQUIRE(post_recv1(A.qp, 1, r.p, LEN, r.mr->lkey) == 0, "post_recv");
	REQUIRE(post1(B.qp, 2, IBV_WR_SEND, IBV_SEND_SIGNALED, 0, LEN, mr->lkey, 0, 0) == 0,
		"post send from DM");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 2, IBV_WC_SEND, "send from DM");
	poll1(A.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.byte_len == LEN && pat_diff(r.p, LEN, 4) == LEN,
	      "received from DM: every byte");
	buf_free(&r);
}

static void refusals(struct ibv_dm *dm, struct ibv_mr *mr)
{
	errno = 0;
	CHECK(!ibv_reg_dm_mr(B.pd, dm, 0, LEN, IBV_ACCESS_LOCAL_WRITE) && errno == EINVAL,
	      "not zero-based: EINVAL");
	errno = 0;
	CHECK(!ibv_reg_dm_mr(B.pd, dm, DM_LEN - 8, 16, IBV_ACCESS_ZERO_BASED) && errno == EINVAL,
	      "past the DM's end: EINVAL");
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0, IBV_ACCESS_LOCAL_WRITE) !=
		  0,
	      "rereg of a DM MR refused");
	CHECK(ibv_free_dm(dm) == EBUSY, "free_dm while an MR is on it: EBUSY");
}

int main(void)
{
	uint8_t *host = malloc(DM_LEN);
	struct ibv_dm *dm;
	struct ibv_mr *mr;

	REQUIRE(host, "malloc");
	ep_open(&A);
	ep_open(&B);
	limits();
	dm = dm_alloc(DM_LEN);
	REQUIRE(dm, "alloc_dm: %s", strerror(errno));
	copies(dm, host);
	mr = ibv_reg_dm_mr(B.pd, dm, MR_OFF, 2 * LEN, MR_ALL | IBV_ACCESS_ZERO_BASED);
	REQUIRE(mr, "reg_dm_mr: %s", strerror(errno));
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
	rdma(dm, mr, host);
	local_sge(dm, mr, host);
	refusals(dm, mr);
	CHECK(ibv_dereg_mr(mr) == 0 && ibv_free_dm(dm) == 0, "dereg_mr, free_dm");
	free(host);
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}
