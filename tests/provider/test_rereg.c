// SPDX-License-Identifier: MIT
/*
 * ibv_rereg_mr with the semantics of ibv_rereg_mr(3): the MR keeps its
 * lkey and rkey; CHANGE_TRANSLATION, CHANGE_ACCESS and CHANGE_PD each
 * take effect for a peer's RDMA (every byte checked); a refused call
 * leaves the MR as it was, still usable. A (initiator) and B (target)
 * are two contexts of this process, their RC QPs connected.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "dp_common.h"

static struct ep A, B;
static struct buf src, dst; /* A's: what it writes, where it reads to */
static const struct qpopts opts = {.access = ALL_REMOTE, .retry_cnt = 7, .timeout = 14};

enum { LEN = 8192 };

/* Fresh connected QPs: a refused access leaves them in error. */
static void fresh(void)
{
	pair_connect(&A, &B, IBV_QPT_RC, &opts, &opts);
}

static enum ibv_wc_status one(enum ibv_wr_opcode op, void *remote, uint32_t rkey, uint32_t seed)
{
	struct ibv_wc wc;
	struct buf *l = op == IBV_WR_RDMA_READ ? &dst : &src;

	fill(src.p, LEN, seed);
	memset(dst.p, 0, LEN);
	REQUIRE(post1(A.qp, seed, op, IBV_SEND_SIGNALED, l->p, LEN, l->mr->lkey, (uintptr_t)remote,
		      rkey) == 0,
		"post");
	if (!poll1(A.cq, &wc))
		return (enum ibv_wc_status) - 1;
	if (wc.status != IBV_WC_SUCCESS)
		fresh();
	return wc.status;
}

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	REQUIRE(p != MAP_FAILED, "mmap");
	memset(p, 0x11, len);
	return p;
}

/* The keys and the libibverbs fields after a rereg that succeeded or failed. */
static void same_keys(struct ibv_mr *mr, uint32_t lkey, uint32_t rkey, const char *what)
{
	CHECK(mr->lkey == lkey && mr->rkey == rkey, "%s: keys kept (%#x %#x -> %#x %#x)", what,
	      lkey, rkey, mr->lkey, mr->rkey);
}

static void change_translation(void)
{
	uint8_t *a = map(LEN), *b = map(2 * LEN);
	struct ibv_mr *mr = ibv_reg_mr(B.pd, a, LEN, MR_ALL);
	uint32_t lk, rk;

	REQUIRE(mr, "reg_mr: %s", strerror(errno));
	lk = mr->lkey, rk = mr->rkey;
	CHECK(one(IBV_WR_RDMA_WRITE, a, rk, 1) == IBV_WC_SUCCESS && pat_diff(a, LEN, 1) == LEN,
	      "write to the first range");
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, b + LEN, LEN, 0) == 0,
	      "rereg to a new range: %s", strerror(errno));
	same_keys(mr, lk, rk, "translation");
	CHECK(mr->addr == b + LEN && mr->length == LEN, "libibverbs' fields follow");
	CHECK(pat_diff(a, LEN, 1) == LEN, "the old range keeps its bytes, private again");
	CHECK(one(IBV_WR_RDMA_WRITE, b + LEN, rk, 2) == IBV_WC_SUCCESS &&
		  pat_diff(b + LEN, LEN, 2) == LEN && pat_diff(a, LEN, 1) == LEN,
	      "the same rkey writes the new range, not the old");
	memset(b + LEN, 0x33, 16);
	CHECK(one(IBV_WR_RDMA_READ, b + LEN, rk, 3) == IBV_WC_SUCCESS && dst.p[0] == 0x33 &&
		  memcmp(dst.p, b + LEN, LEN) == 0,
	      "and reads what the application stored there");
	CHECK(one(IBV_WR_RDMA_WRITE, a, rk, 4) == IBV_WC_REM_ACCESS_ERR &&
		  pat_diff(a, LEN, 1) == LEN,
	      "the old range is out of the MR's bounds");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	munmap(a, LEN);
	munmap(b, 2 * LEN);
}

static void change_access(void)
{
	uint8_t *a = map(LEN);
	struct ibv_mr *mr =
	    ibv_reg_mr(B.pd, a, LEN, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	uint32_t rk;

	REQUIRE(mr, "reg_mr: %s", strerror(errno));
	rk = mr->rkey;
	CHECK(one(IBV_WR_RDMA_READ, a, rk, 5) == IBV_WC_REM_ACCESS_ERR, "no remote read yet");
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0,
			   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ) == 0,
	      "rereg access: %s", strerror(errno));
	same_keys(mr, rk, rk, "access");
	fill(a, LEN, 6);
	CHECK(one(IBV_WR_RDMA_READ, a, rk, 7) == IBV_WC_SUCCESS && pat_diff(dst.p, LEN, 6) == LEN,
	      "remote read now");
	CHECK(one(IBV_WR_RDMA_WRITE, a, rk, 8) == IBV_WC_REM_ACCESS_ERR &&
		  pat_diff(a, LEN, 6) == LEN,
	      "remote write no longer");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	/* An MR registered at an iova keeps it when only its access changes. */
	mr = ibv_reg_mr_iova(B.pd, a, LEN, 0x10000000, IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(mr, "reg_mr_iova: %s", strerror(errno));
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0, MR_ALL) == 0,
	      "rereg access of an iova MR: %s", strerror(errno));
	CHECK(one(IBV_WR_RDMA_WRITE, (void *)0x10000000, mr->rkey, 13) == IBV_WC_SUCCESS &&
		  pat_diff(a, LEN, 13) == LEN,
	      "a remote write at the iova lands at the buffer");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	/* Local read only (not in the region) to remote write: the pages move in now. */
	mr = ibv_reg_mr(B.pd, a, LEN, 0);
	REQUIRE(mr, "reg_mr local read: %s", strerror(errno));
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0, MR_ALL) == 0,
	      "rereg local read to remote write: %s", strerror(errno));
	CHECK(one(IBV_WR_RDMA_WRITE, a, mr->rkey, 9) == IBV_WC_SUCCESS &&
		  pat_diff(a, LEN, 9) == LEN,
	      "remote write into the moved pages");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	munmap(a, LEN);
}

static void change_pd(void)
{
	uint8_t *a = map(LEN);
	struct ibv_pd *other = ibv_alloc_pd(B.ctx);
	struct ibv_mr *mr = other ? ibv_reg_mr(other, a, LEN, MR_ALL) : NULL;
	uint32_t rk;

	REQUIRE(mr, "reg_mr in another PD: %s", strerror(errno));
	rk = mr->rkey;
	CHECK(one(IBV_WR_RDMA_WRITE, a, rk, 10) != IBV_WC_SUCCESS && all_diff(a, LEN, 0x11) == LEN,
	      "an MR of another PD than the QP's is refused");
	CHECK(ibv_dealloc_pd(other) == EBUSY, "its PD is busy");
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_PD, B.pd, NULL, 0, 0) == 0, "rereg PD: %s",
	      strerror(errno));
	same_keys(mr, rk, rk, "PD");
	CHECK(mr->pd == B.pd, "libibverbs' pd follows");
	CHECK(one(IBV_WR_RDMA_WRITE, a, rk, 11) == IBV_WC_SUCCESS && pat_diff(a, LEN, 11) == LEN,
	      "the QP's PD now: the write lands");
	CHECK(ibv_dealloc_pd(other) == 0, "the old PD is free");
	CHECK(ibv_dealloc_pd(B.pd) == EBUSY, "the new one is not");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	munmap(a, LEN);
}

/* Refused: errno says why, the MR is as it was (its keys, its range, its PD). */
static void refusals(void)
{
	uint8_t *a = map(LEN);
	void *ro = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_context *c2 = dp_open();
	struct ibv_pd *pd2 = ibv_alloc_pd(c2);
	struct ibv_mr *mr = ibv_reg_mr(B.pd, a, LEN, MR_ALL);
	uint32_t rk;

	REQUIRE(mr && pd2 && ro != MAP_FAILED, "setup: %s", strerror(errno));
	rk = mr->rkey;
	errno = 0;
	CHECK(ibv_rereg_mr(mr, 1 << 7, NULL, NULL, 0, 0) == IBV_REREG_MR_ERR_INPUT &&
		  errno == EINVAL,
	      "an unknown flag: ERR_INPUT, EINVAL (errno %d)", errno);
	errno = 0;
	CHECK(ibv_rereg_mr(mr, 0, NULL, NULL, 0, 0) == IBV_REREG_MR_ERR_CMD && errno == EINVAL,
	      "no flag: EINVAL (errno %d)", errno);
	errno = 0;
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_PD, pd2, NULL, 0, 0) == IBV_REREG_MR_ERR_CMD &&
		  errno == EINVAL,
	      "a PD of another context: EINVAL (errno %d)", errno);
	errno = 0;
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_PD, NULL, NULL, 0, 0) == IBV_REREG_MR_ERR_CMD &&
		  errno == EINVAL,
	      "no PD: EINVAL (errno %d)", errno);
	errno = 0;
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0,
			   IBV_ACCESS_REMOTE_WRITE) == IBV_REREG_MR_ERR_CMD &&
		  errno == EINVAL,
	      "remote write without local write: EINVAL (errno %d)", errno);
	errno = 0;
	CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, ro, LEN, 0) ==
		      IBV_REREG_MR_ERR_CMD &&
		  errno == EINVAL,
	      "read-only memory for remote write: EINVAL (errno %d)", errno);
	same_keys(mr, rk, rk, "refused");
	CHECK(mr->addr == a && mr->pd == B.pd, "the MR's range and PD are as they were");
	CHECK(one(IBV_WR_RDMA_WRITE, a, rk, 12) == IBV_WC_SUCCESS && pat_diff(a, LEN, 12) == LEN,
	      "and it still takes a remote write");
	CHECK(ibv_dereg_mr(mr) == 0 && ibv_dealloc_pd(pd2) == 0 && ibv_close_device(c2) == 0,
	      "teardown");
	munmap(a, LEN);
	munmap(ro, LEN);
}

/* --- Re-registering while a peer writes into the MR --------------------- */

enum { TRAFFIC_WRITES = 4000, MIN_REREGS = 20, SLOTS = 32, SLOT_LEN = 256 };

struct writer {
	uint8_t *target; /* B's MR */
	uint32_t rkey;
	atomic_bool done;
	atomic_int reregs; /* the writer goes on until there were MIN_REREGS */
	int failed;	   /* writes that did not complete, or whose bytes were wrong */
	uint32_t writes;
};

/*
 * A writes slot after slot, TRAFFIC_WRITES at least and on until the MR was
 * re-registered MIN_REREGS times (however the two threads are scheduled);
 * each write must land whole, whatever the MR is going through.
 */
static void *write_all(void *arg)
{
	struct writer *w = arg;
	uint32_t i;

	for (i = 0; i < TRAFFIC_WRITES || atomic_load(&w->reregs) < MIN_REREGS; i++) {
		uint8_t *slot = w->target + (i % SLOTS) * SLOT_LEN;
		struct ibv_wc wc;

		fill(src.p, SLOT_LEN, 5000 + i);
		if (post1(A.qp, i, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, src.p, SLOT_LEN,
			  src.mr->lkey, (uintptr_t)slot, w->rkey) ||
		    !poll1(A.cq, &wc) || wc.status != IBV_WC_SUCCESS ||
		    pat_diff(slot, SLOT_LEN, 5000 + i) != SLOT_LEN) {
			w->failed++;
			break;
		}
	}
	w->writes = i;
	atomic_store(&w->done, true);
	return NULL;
}

/*
 * While A writes, B re-registers its MR over and over: access with and
 * without remote read (remote write always), its PD and a parent domain
 * of it (the same protection), and the same range again. Every write
 * completes and lands; the keys never change.
 */
static void under_traffic(void)
{
	struct ibv_parent_domain_init_attr pa = {.pd = B.pd};
	struct ibv_pd *parent = ibv_alloc_parent_domain(B.ctx, &pa);
	uint8_t *t = map(SLOTS * SLOT_LEN);
	struct ibv_mr *mr = ibv_reg_mr(B.pd, t, SLOTS * SLOT_LEN, MR_ALL);
	struct writer w = {.target = t};
	const int access[2] = {MR_ALL, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE};
	pthread_t th;
	int reregs = 0, bad = 0;

	REQUIRE(parent && mr, "setup: %s", strerror(errno));
	w.rkey = mr->rkey;
	REQUIRE(pthread_create(&th, NULL, write_all, &w) == 0, "writer thread");
	while (!atomic_load(&w.done)) {
		int k = reregs++ % 3;
		int flags = k == 0   ? IBV_REREG_MR_CHANGE_ACCESS
			    : k == 1 ? IBV_REREG_MR_CHANGE_PD
				     : IBV_REREG_MR_CHANGE_TRANSLATION | IBV_REREG_MR_CHANGE_ACCESS;

		bad +=
		    ibv_rereg_mr(mr, flags, reregs % 2 ? parent : B.pd, t, SLOTS * SLOT_LEN,
				 flags & IBV_REREG_MR_CHANGE_ACCESS ? access[reregs % 2] : 0) != 0;
		bad += mr->rkey != w.rkey;
		atomic_store(&w.reregs, reregs);
	}
	pthread_join(th, NULL);
	printf("under traffic: %d reregs during %u writes\n", reregs, w.writes);
	CHECK(w.failed == 0, "every write completed and landed while the MR was re-registered");
	CHECK(bad == 0 && (reregs >= MIN_REREGS || w.failed),
	      "%d reregs, %d failed or changed the keys", reregs, bad);
	if (mr->pd != B.pd)
		CHECK(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_PD, B.pd, NULL, 0, 0) == 0,
		      "back to the PD");
	CHECK(ibv_dealloc_pd(parent) == 0, "the parent domain is free again");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	munmap(t, SLOTS * SLOT_LEN);
}

int main(void)
{
	ep_open(&A);
	ep_open(&B);
	buf_new(&src, A.pd, LEN, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&dst, A.pd, LEN, IBV_ACCESS_LOCAL_WRITE);
	fresh();
	change_translation();
	change_access();
	change_pd();
	refusals();
	under_traffic();
	buf_free(&src);
	buf_free(&dst);
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}
