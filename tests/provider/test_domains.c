// SPDX-License-Identifier: MIT
/*
 * Thread domains and parent domains (provider/domain.c): a QP and a CQ
 * created in a parent domain, with a thread domain and custom allocators
 * and without, carry traffic from another context (every byte checked);
 * MRs of the parent domain and of its PD serve them alike; the allocators
 * are never called (the queues live in the region); every object holds
 * what it was created in (EBUSY) until it goes; and the refusals (bad
 * masks, no PD, a parent domain as a PD, another context's objects, a
 * plain PD as a CQ's parent domain) set errno.
 */
#include <arpa/inet.h>

#include "dp_common.h"

static struct ep A;
static struct ibv_context *bctx;
static uint16_t blid;
static int allocs, frees;

enum { LEN = 4096 };

static void *count_alloc(struct ibv_pd *pd, void *pd_context, size_t size, size_t alignment,
			 uint64_t resource_type)
{
	(void)pd, (void)size, (void)alignment, (void)resource_type;
	allocs++;
	CHECK(pd_context == &allocs, "the pd_context given");
	return IBV_ALLOCATOR_USE_DEFAULT;
}

static void count_free(struct ibv_pd *pd, void *pd_context, void *ptr, uint64_t resource_type)
{
	(void)pd, (void)pd_context, (void)ptr, (void)resource_type;
	frees++;
}

/* B's side: a parent domain over 'pd', a CQ and an RC QP in it. */
struct target {
	struct ibv_pd *pd, *parent;
	struct ibv_td *td;
	struct ibv_cq_ex *cq;
	struct ibv_qp *qp;
};

static void target_open(struct target *t, bool with_td_and_allocators)
{
	struct ibv_td_init_attr ta = {0};
	struct ibv_parent_domain_init_attr pa = {0};
	struct ibv_cq_init_attr_ex ca = {.cqe = 64, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN};
	struct ibv_qp_init_attr_ex qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1},
	    .comp_mask = IBV_QP_INIT_ATTR_PD};

	memset(t, 0, sizeof(*t));
	t->pd = ibv_alloc_pd(bctx);
	REQUIRE(t->pd, "alloc_pd: %s", strerror(errno));
	pa.pd = t->pd;
	if (with_td_and_allocators) {
		t->td = ibv_alloc_td(bctx, &ta);
		REQUIRE(t->td, "alloc_td: %s", strerror(errno));
		pa.td = t->td;
		pa.comp_mask =
		    IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS | IBV_PARENT_DOMAIN_INIT_ATTR_PD_CONTEXT;
		pa.alloc = count_alloc;
		pa.free = count_free;
		pa.pd_context = &allocs;
	}
	t->parent = ibv_alloc_parent_domain(bctx, &pa);
	REQUIRE(t->parent, "alloc_parent_domain: %s", strerror(errno));
	CHECK(t->parent->handle == t->pd->handle && t->parent->context == bctx,
	      "a parent domain is interchangeable with its PD");
	ca.comp_mask = IBV_CQ_INIT_ATTR_MASK_PD;
	ca.parent_domain = t->parent;
	t->cq = ibv_create_cq_ex(bctx, &ca);
	REQUIRE(t->cq, "create_cq_ex in the parent domain: %s", strerror(errno));
	qa.pd = t->parent;
	qa.send_cq = qa.recv_cq = ibv_cq_ex_to_cq(t->cq);
	t->qp = ibv_create_qp_ex(bctx, &qa);
	REQUIRE(t->qp, "create_qp_ex in the parent domain: %s", strerror(errno));
	CHECK(t->qp->pd == t->parent, "the QP's PD is the parent domain");
}

/* What each object holds: EBUSY until what was created in it goes, then 0. */
static void target_close(struct target *t)
{
	CHECK(ibv_dealloc_pd(t->pd) == EBUSY, "the PD is busy while a parent domain uses it");
	if (t->td)
		CHECK(ibv_dealloc_td(t->td) == EBUSY,
		      "the TD is busy while a parent domain names it");
	CHECK(ibv_dealloc_pd(t->parent) == EBUSY, "the parent domain is busy while its QP lives");
	CHECK(ibv_destroy_qp(t->qp) == 0, "destroy the QP");
	CHECK(ibv_dealloc_pd(t->parent) == EBUSY, "... and while its CQ lives");
	CHECK(ibv_destroy_cq(ibv_cq_ex_to_cq(t->cq)) == 0, "destroy the CQ");
	CHECK(ibv_dealloc_pd(t->parent) == 0, "dealloc the parent domain");
	if (t->td)
		CHECK(ibv_dealloc_td(t->td) == 0, "dealloc the TD");
	CHECK(ibv_dealloc_pd(t->pd) == 0, "dealloc the PD");
}

static void expect_target_wc(struct target *t, uint64_t id, uint32_t len, const char *what)
{
	struct ibv_poll_cq_attr pa = {0};
	uint64_t end = now_s() + DP_DEADLINE_S;
	int rc;

	while ((rc = ibv_start_poll(t->cq, &pa)) == ENOENT && now_s() <= end)
		;
	REQUIRE(rc == 0, "%s: no completion (%d)", what, rc);
	CHECK(t->cq->status == IBV_WC_SUCCESS && t->cq->wr_id == id &&
		  ibv_wc_read_byte_len(t->cq) == len,
	      "%s: %s wr_id %llu len %u", what, ibv_wc_status_str(t->cq->status),
	      (unsigned long long)t->cq->wr_id, ibv_wc_read_byte_len(t->cq));
	ibv_end_poll(t->cq);
}

/* A sends into B's receive (an MR of the parent domain) and writes into B's MR of the PD. */
static void traffic(bool with_td_and_allocators)
{
	struct qpopts o = {.access = MR_ALL, .retry_cnt = 7, .rnr_retry = 7, .timeout = 14};
	struct target t;
	struct buf s, r, w;
	struct ibv_wc wc;

	target_open(&t, with_td_and_allocators);
	buf_new(&s, A.pd, LEN, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, t.parent, LEN, IBV_ACCESS_LOCAL_WRITE); /* an MR of the parent domain */
	buf_new(&w, t.pd, LEN, MR_ALL);			    /* ... and of its PD */
	ep_qp(&A, IBV_QPT_RC, &o);
	qp_connect(A.qp, t.qp->qp_num, blid, &o);
	qp_connect(t.qp, A.qp->qp_num, A.lid, &o);
	CHECK(post_recv1(t.qp, 77, r.p, LEN, r.mr->lkey) == 0, "post receive");
	fill(s.p, LEN, 31);
	CHECK(post1(A.qp, 1, IBV_WR_SEND, IBV_SEND_SIGNALED, s.p, LEN, s.mr->lkey, 0, 0) == 0,
	      "post send");
	CHECK(poll1(A.cq, &wc) && wc.status == IBV_WC_SUCCESS, "send: %s",
	      ibv_wc_status_str(wc.status));
	expect_target_wc(&t, 77, LEN, "receive in the parent domain's CQ");
	CHECK(pat_diff(r.p, LEN, 31) == LEN, "the sent bytes");
	fill(s.p, LEN, 32);
	CHECK(post1(A.qp, 2, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, s.p, LEN, s.mr->lkey,
		    (uintptr_t)w.p, w.mr->rkey) == 0,
	      "post write");
	CHECK(poll1(A.cq, &wc) && wc.status == IBV_WC_SUCCESS && pat_diff(w.p, LEN, 32) == LEN,
	      "write into an MR of the parent domain's PD: %s", ibv_wc_status_str(wc.status));
	CHECK(allocs == 0 && frees == 0, "the allocators are never called: %d %d", allocs, frees);
	buf_free(&s);
	buf_free(&r);
	buf_free(&w);
	target_close(&t);
}

static void refusals(void)
{
	struct ibv_td_init_attr ta = {.comp_mask = 1};
	struct ibv_pd *pd = ibv_alloc_pd(bctx), *apd = ibv_alloc_pd(A.ctx), *parent;
	struct ibv_td *atd = ibv_alloc_td(A.ctx, &(struct ibv_td_init_attr){0});
	struct ibv_parent_domain_init_attr pa = {.pd = pd};
	struct ibv_cq_init_attr_ex ca = {.cqe = 16, .comp_mask = IBV_CQ_INIT_ATTR_MASK_PD};

	REQUIRE(pd && apd && atd, "setup: %s", strerror(errno));
	errno = 0;
	CHECK(!ibv_alloc_td(bctx, &ta) && errno == EINVAL, "TD comp_mask: EINVAL (%d)", errno);
	parent = ibv_alloc_parent_domain(bctx, &pa);
	REQUIRE(parent, "a plain parent domain: %s", strerror(errno));
#define REFUSED(what, ...)                                                                         \
	do {                                                                                       \
		struct ibv_parent_domain_init_attr x = {__VA_ARGS__};                              \
		errno = 0;                                                                         \
		CHECK(!ibv_alloc_parent_domain(bctx, &x) && errno == EINVAL, "%s: EINVAL (%d)",    \
		      what, errno);                                                                \
	} while (0)
	REFUSED("no PD", .pd = NULL);
	REFUSED("a parent domain as its PD", .pd = parent);
	REFUSED("another context's PD", .pd = apd);
	REFUSED("another context's TD", .pd = pd, .td = atd);
	REFUSED("an unknown comp_mask bit", .pd = pd, .comp_mask = 1u << 5);
	REFUSED("alloc without free", .pd = pd, .comp_mask = IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS,
		.alloc = count_alloc);
	ca.parent_domain = pd;
	errno = 0;
	CHECK(!ibv_create_cq_ex(bctx, &ca) && errno == EINVAL,
	      "a plain PD as a CQ's parent: EINVAL");
	ca.parent_domain = NULL;
	errno = 0;
	CHECK(!ibv_create_cq_ex(bctx, &ca) && errno == EINVAL, "no parent domain: EINVAL");
	CHECK(ibv_dealloc_pd(parent) == 0 && ibv_dealloc_pd(pd) == 0 && ibv_dealloc_pd(apd) == 0 &&
		  ibv_dealloc_td(atd) == 0,
	      "teardown");
}

int main(void)
{
	struct ibv_port_attr pa;

	ep_open(&A);
	bctx = dp_open();
	REQUIRE(ibv_query_port(bctx, 1, &pa) == 0, "query_port");
	blid = pa.lid;
	traffic(true);
	traffic(false);
	refusals();
	CHECK(ibv_close_device(bctx) == 0, "close B");
	ep_close(&A);
	return check_summary();
}
