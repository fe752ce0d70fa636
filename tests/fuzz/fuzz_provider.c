// SPDX-License-Identifier: MIT
/*
 * The provider's readers of what other participants write, over a fuzzed
 * region (input: fuzz_image.h): connecting to a remote QP as RTR does
 * (ivrdma_peer_lookup), executing a send WR against it (its receive ring,
 * MR slots, CQ), polling my CQ's entries that initiators wrote
 * (ivrdma_poll_cq), posting to an SRQ and checking its limit. Whatever
 * the region holds, each must end in an error status or errno, never a
 * fault or a hang.
 *
 * The context, QP and CQ are assembled here as create_qp and modify_qp
 * would leave them; doorbells go to a transport that rings nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "fuzz_image.h"
#include "ivrdma.h"
#include "shm_atomic.h"
#include "transport_internal.h"

/* params.ops bits */
#define OP_TYPE(ops)   ((ops)&3u)	 /* RC, UC, UD, RC */
#define OP_OPCODE(ops) ((ops) >> 2 & 7u) /* enum ibv_wr_opcode 0..6; 7: see wr_opcode() */
#define OP_INLINE      (1u << 5)
#define OP_SIGNALED    (1u << 6)
#define OP_SOLICITED   (1u << 7)
#define OP_GLOBAL      (1u << 8)  /* UD: the AH has a GRH */
#define OP_RNR_FOREVER (1u << 9)  /* rnr_retry 7: a WR left waiting */
#define OP_NO_SGE      (1u << 10) /* a zero-length WR */
#define OP_SRQ_POST    (1u << 11) /* post to my SRQ, check its limit */

static int ring_nothing(struct ivt *t, uint16_t peer, uint16_t vector)
{
	return 0;
}

static bool knows_all(struct ivt *t, uint16_t peer)
{
	return true;
}

static int no_control(struct ivt *t)
{
	return 0;
}

static const struct ivt_backend_ops quiet_ops = {
    .name = "fuzz",
    .ring = ring_nothing,
    .peer_known = knows_all,
    .process_control = no_control,
};

static struct ivt transport = {.ops = &quiet_ops, .nr_vectors = IVRDMA_MIN_VECTORS};
static struct ivrdma_context ctx;
static struct ivrdma_pd pd;
static struct ivrdma_cq cq;
static struct ivrdma_cq_ring cq_ring;
static struct ivrdma_qp qp;
static struct ivrdma_ah ah;
static struct ivrdma_swqe sq[2];
static uint8_t inline_area[2][IVRDMA_MAX_INLINE];
static uint64_t own_rq_words[2]; /* a receive ring of my own, never posted to */
static uint8_t own_rq_ring[IVRDMA_RQ_STRIDE(1)];

static const enum ibv_qp_type types[] = {IBV_QPT_RC, IBV_QPT_UC, IBV_QPT_UD, IBV_QPT_RC};

static void context_open(const struct ivrdma_region *r, const struct fuzz_params *p)
{
	memset(&ctx, 0, sizeof(ctx));
	ctx.region = *r;
	ctx.transport = &transport;
	ctx.peer_id = p->peer;
	ctx.owner_tag = ivrdma_owner_tag(p->peer, p->gen);
	ctx.lid = 1;
	ctx.async_wr = -1; /* async events are lost: nobody reads them here */
	ctx.uffd = IVRDMA_UFFD_UNOPENED;
	pthread_mutex_init(&ctx.async_lock, NULL);
	pthread_mutex_init(&ctx.mrs_lock, NULL);
	pthread_mutex_init(&ctx.pending_lock, NULL);
	pthread_mutex_init(&ctx.srq_lock, NULL);
	if (ivrdma_rq_done_init(&ctx) || ivrdma_ctx_record_open(&ctx))
		abort();
	pd.ibv_pd.context = &ctx.ibv_ctx.context;
	pd.ibv_pd.handle = 1;
}

static void context_close(void)
{
	ivrdma_ctx_record_close(&ctx);
	free(ctx.rq_done);
	pthread_mutex_destroy(&ctx.async_lock);
	pthread_mutex_destroy(&ctx.mrs_lock);
	pthread_mutex_destroy(&ctx.pending_lock);
	pthread_mutex_destroy(&ctx.srq_lock);
}

/* My CQ, as create_cq leaves it: the slot must be mine and its ring valid. */
static bool cq_open(const struct fuzz_params *p)
{
	uint64_t g;

	memset(&cq, 0, sizeof(cq));
	if (ivrdma_cq_view(&ctx.region, p->cq, ctx.owner_tag, &cq.view))
		return false;
	/* The current ring, as the view just validated it; no resize to drain. */
	g = shm_load_relaxed64(&cq.view.slot->geometry);
	if (atomic_load(&cq.view.geometry) != g)
		return false; /* changed since: this harness writes no region */
	cq_ring = (struct ivrdma_cq_ring){
	    .ring = (struct ivrdma_cqe *)(ctx.region.base + ivrdma_cq_geometry_offset(g)),
	    .mask = (1u << ivrdma_cq_geometry_log2(g)) - 1,
	    .base = ivrdma_cq_epoch_base(ivrdma_cq_epoch(g))};
	cq.rd = cq.last = &cq_ring;
	ivrdma_queue_lock_init(&cq.lock);
	cq.slot = p->cq;
	cq.cons = shm_load_acquire64(&cq.view.slot->cons);
	ivrdma_cq_set_geometry(&cq); /* as ivrdma_create_cq leaves it */
	cq.vcq.cq.context = &ctx.ibv_ctx.context;
	return true;
}

/* My QP in RTS, connected (RC, UC) as modify_qp(RTR) connects it. */
static bool qp_open(const struct fuzz_params *p)
{
	const struct ivrdma_region *r = &ctx.region;
	int node = ivrdma_find_node(r, p->lid, NULL);

	memset(&qp, 0, sizeof(qp));
	qp.s = ivrdma_table_entry(r, &r->qps, p->qp);
	if (!qp.s)
		return false;
	qp.slot = p->qp;
	qp.vqp.qp.context = &ctx.ibv_ctx.context;
	qp.vqp.qp.pd = &pd.ibv_pd;
	qp.vqp.qp.qp_type = types[OP_TYPE(p->ops)];
	qp.vqp.qp.qp_num = p->qp + IVRDMA_QPN_BASE;
	qp.vqp.qp.state = IBV_QPS_RTS;
	if (qp.vqp.qp.qp_type != IBV_QPT_UD &&
	    ivrdma_peer_lookup(r, qp.vqp.qp.qp_type, node, p->qpn, &qp.peer))
		return false;
	ivrdma_queue_lock_init(&qp.sq_lock);
	ivrdma_queue_lock_init(&qp.rq_lock);
	qp.rq = (struct ivrdma_rq_view){.ring = own_rq_ring,
					.region = r,
					.id = ivrdma_qp_ring(&qp),
					.prod = &own_rq_words[0],
					.cons = &own_rq_words[1],
					.max_sge = 1,
					.stride = sizeof(own_rq_ring)};
	qp.send_cq = qp.recv_cq = &cq;
	qp.cap = (struct ibv_qp_cap){.max_send_wr = 2,
				     .max_send_sge = 1,
				     .max_recv_sge = 1,
				     .max_inline_data = IVRDMA_MAX_INLINE};
	qp.attr.rnr_retry = p->ops & OP_RNR_FOREVER ? 7 : 0;
	qp.sq = sq;
	for (int i = 0; i < 2; i++)
		sq[i].inline_buf = inline_area[i];
	return true;
}

static void qp_close(void)
{
	/* What destroy_qp does with WRs still waiting: they flush. */
	pthread_mutex_lock(&ctx.pending_lock);
	ctx.pending = NULL;
	atomic_store(&ctx.nr_pending, 0);
	pthread_mutex_unlock(&ctx.pending_lock);
	ivrdma_qp_flush_sq(&qp);
}

/*
 * The WR's opcode: 0..6 as they are, 7 one of the opcodes after them that
 * reach the region without a pointer of the application's (not a bind:
 * its window is a pointer), chosen by the value.
 */
static enum ibv_wr_opcode wr_opcode(const struct fuzz_params *p)
{
	static const enum ibv_wr_opcode more[] = {IBV_WR_LOCAL_INV, IBV_WR_SEND_WITH_INV,
						  IBV_WR_ATOMIC_WRITE};

	if (OP_OPCODE(p->ops) < 7)
		return (enum ibv_wr_opcode)OP_OPCODE(p->ops);
	return more[p->value % (sizeof(more) / sizeof(more[0]))];
}

/* One WR as the application would post it; the inline bytes come from here. */
static void post_one(const struct fuzz_params *p)
{
	static uint8_t inline_src[IVRDMA_MAX_INLINE];
	struct ibv_sge sge = {.addr = p->laddr, .length = p->len, .lkey = p->lkey};
	struct ibv_send_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1}, *bad;

	wr.opcode = wr_opcode(p);
	wr.send_flags = (p->ops & OP_SIGNALED ? IBV_SEND_SIGNALED : 0) |
			(p->ops & OP_SOLICITED ? IBV_SEND_SOLICITED : 0);
	wr.imm_data = (uint32_t)p->value;
	if (p->ops & OP_INLINE) {
		sge.addr = (uintptr_t)inline_src;
		sge.length = p->len % (IVRDMA_MAX_INLINE + 1);
		wr.send_flags |= IBV_SEND_INLINE;
	}
	if (p->ops & OP_NO_SGE)
		wr.num_sge = 0;
	if (wr.opcode == IBV_WR_ATOMIC_CMP_AND_SWP || wr.opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
		wr.wr.atomic.remote_addr = p->raddr;
		wr.wr.atomic.rkey = p->rkey;
		wr.wr.atomic.compare_add = p->value;
		wr.wr.atomic.swap = ~p->value;
	} else if (qp.vqp.qp.qp_type == IBV_QPT_UD) {
		ah.attr = (struct ibv_ah_attr){.dlid = p->lid, .is_global = !!(p->ops & OP_GLOBAL)};
		wr.wr.ud.ah = &ah.ibv_ah;
		wr.wr.ud.remote_qpn = p->qpn;
		wr.wr.ud.remote_qkey = p->rkey;
	} else {
		wr.wr.rdma.remote_addr = p->raddr;
		wr.wr.rdma.rkey = p->rkey;
	}
	ivrdma_post_send(&qp.vqp.qp, &wr, &bad);
}

/* Everything my CQ holds, as the application polls it. */
static void poll_all(void)
{
	struct ibv_wc wc[4];

	for (int i = 0; i < 64 && ivrdma_poll_cq(&cq.vcq.cq, 4, wc) > 0; i++)
		continue;
}

/*
 * An SRQ of mine as create_srq leaves it: a receive posted into a ring
 * whose cons initiators move, then its armed limit checked as poll_cq
 * checks it.
 */
static void srq_post(const struct fuzz_params *p)
{
	static struct ivrdma_srq srq;
	struct ibv_sge sge = {.addr = p->laddr, .length = p->len, .lkey = p->lkey};
	struct ibv_recv_wr wr = {.wr_id = 2, .sg_list = &sge, .num_sge = 1}, *bad;
	uint32_t pd_handle, *limit;

	memset(&srq, 0, sizeof(srq));
	if (ivrdma_srq_view(&ctx.region, p->srq, ctx.owner_tag, &srq.rq, &pd_handle, &limit))
		return;
	srq.vsrq.srq.context = &ctx.ibv_ctx.context;
	srq.slot = p->srq;
	srq.s = ivrdma_table_entry(&ctx.region, &ctx.region.srqs, p->srq);
	srq.max_sge = srq.rq.max_sge;
	ivrdma_queue_lock_init(&srq.lock);
	ctx.srqs = &srq;
	ivrdma_post_srq_recv(&srq.vsrq.srq, &wr, &bad);
	ivrdma_srq_check_limits(&ctx);
	ctx.srqs = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ivrdma_region r;
	struct fuzz_params p;

	if (fuzz_image_load(&r, &p, data, size) != 0)
		return 0;
	context_open(&r, &p);
	if (cq_open(&p)) {
		if (qp_open(&p)) {
			post_one(&p);
			qp_close();
		}
		poll_all();
	}
	if (p.ops & OP_SRQ_POST)
		srq_post(&p);
	context_close();
	return 0;
}
