// SPDX-License-Identifier: MIT
/*
 * Soak: N process pairs run every opcode for a bounded time, every byte
 * verified; nothing lost, nothing grows.
 *
 *   test_provider_soak SECONDSxPAIRS REGION_FILE
 *
 * Each pair is an initiator and a target process with an RC QP and a UD
 * QP between them. A round of the initiator is one chain on RC (SEND,
 * SEND_WITH_IMM, RDMA WRITE, an RDMA READ of what it wrote, WRITE_WITH_IMM,
 * FETCH_ADD, CMP_SWAP) plus one UD datagram; every WR is signaled and its
 * completion checked in order (wr_id, status, opcode), data by pattern,
 * atomics by the value each returns. Every 32 rounds an MR is registered,
 * written from and deregistered (the region's allocator churns). The target
 * sleeps on a completion channel, verifies each receive and posts it
 * again; at the end it counts its receive completions against what the
 * initiator says it sent, moves its QPs to ERR and counts the flushes:
 * every receive it posted ended in exactly one completion.
 *
 * The parent samples the region (chunks and slots in use) while every
 * initiator waits at a barrier after a warm-up and again at the end: both
 * must be equal. Every process compares its own private resident memory
 * (RssAnon: heap, stacks, anonymous maps) at the same two points. Its
 * resident share of the region (RssShmem) is left out: it grows as the
 * allocator hands out chunks this process has not touched yet, which is no
 * leak, and the region's own usage is what the parent compares. Run by run-provider-test.sh (real
 * ivrdmad).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "dp_common.h"
#include "region.h"
#include "region_usage.h"

#define RQ_DEPTH   32u	  /* receives the target keeps posted, per QP */
#define MAX_LEN	   16385u /* the largest RC message */
#define UD_MAX	   4096u  /* the largest datagram */
#define WIMM_SLOTS 64u	  /* write-with-imm landing slots: > 2 * RQ_DEPTH */
#define RW_SLOTS   16u	  /* write-then-read slots */
#define QKEY	   0x50a4u
#define CHAIN	   7 /* RC WRs per round */

static const uint32_t lens[] = {4, 63, 4096, 4097, 777, MAX_LEN}; /* >= 4: a send's round */

/* What the target's registered buffer holds, at these offsets. */
#define T_RECV	  0u					 /* RQ_DEPTH receive buffers */
#define T_UDRECV  (T_RECV + RQ_DEPTH * MAX_LEN)		 /* RQ_DEPTH datagram buffers */
#define T_WIMM	  (T_UDRECV + RQ_DEPTH * (UD_MAX + 40u)) /* write-with-imm slots */
#define T_RW	  (T_WIMM + WIMM_SLOTS * MAX_LEN)	 /* write/read slots */
#define T_ATOMIC  (T_RW + RW_SLOTS * MAX_LEN)		 /* two words, 8-aligned below */
#define T_CREDITS (T_ATOMIC + 64u) /* UD receives posted so far, for the initiator */
#define T_SIZE	  (T_CREDITS + 64u)

struct info {
	uint32_t rc_qpn, ud_qpn, rkey;
	uint16_t lid;
	uint64_t addr;
};

/* What the initiator sent, for the target to count against. */
struct totals {
	uint64_t sends, ud, wimm, fadd;
};

struct proc {
	struct ep e;
	struct ibv_qp *ud;
	struct ibv_comp_channel *ch;
	int sock, other, ctl; /* other: the peer's end of sock, closed in the child */
	uint32_t pair;
};

static long rss_kb(void)
{
	char l[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "re");

	REQUIRE(f, "/proc/self/status");
	while (fgets(l, sizeof(l), f))
		if (sscanf(l, "RssAnon: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static uint32_t seed_of(uint32_t pair, uint64_t round, uint32_t op)
{
	return pair * 7919u + (uint32_t)round * 16u + op;
}

/* Both sides: the endpoint, a UD QP on its CQ, and the CQ on a completion channel. */
static void proc_open(struct proc *p)
{
	struct ibv_qp_init_attr ia = {
	    .cap = {.max_send_wr = 64,
		    .max_recv_wr = RQ_DEPTH,
		    .max_send_sge = 1,
		    .max_recv_sge = 1},
	    .qp_type = IBV_QPT_UD,
	};
	struct ibv_port_attr pa;

	memset(&p->e, 0, sizeof(p->e));
	p->e.ctx = dp_open();
	p->e.pd = ibv_alloc_pd(p->e.ctx);
	p->ch = ibv_create_comp_channel(p->e.ctx);
	p->e.cq = ibv_create_cq(p->e.ctx, DP_CQE, NULL, p->ch, 0);
	REQUIRE(p->e.pd && p->ch && p->e.cq, "pd / channel / cq: %s", strerror(errno));
	REQUIRE(ibv_query_port(p->e.ctx, 1, &pa) == 0, "query_port");
	p->e.lid = pa.lid;
	ia.send_cq = ia.recv_cq = p->e.cq;
	p->ud = ibv_create_qp(p->e.pd, &ia);
	REQUIRE(p->ud, "UD QP: %s", strerror(errno));
	ud_up(p->ud, QKEY);
}

/* As ep_close, with the channel destroyed after its CQ and before its context. */
static void proc_close(struct proc *p)
{
	CHECK(ibv_destroy_qp(p->ud) == 0 && ibv_destroy_qp(p->e.qp) == 0, "destroy QPs");
	CHECK(ibv_destroy_cq(p->e.cq) == 0, "destroy_cq");
	CHECK(ibv_destroy_comp_channel(p->ch) == 0, "destroy channel");
	CHECK(ibv_dealloc_pd(p->e.pd) == 0, "dealloc_pd");
	CHECK(ibv_close_device(p->e.ctx) == 0, "close_device");
}

/* Exchanges identities and connects the RC QP. */
static void proc_connect(struct proc *p, struct info *me, struct info *peer, bool first)
{
	struct qpopts o = {.access = ALL_REMOTE,
			   .rnr_retry = 7,
			   .retry_cnt = 7,
			   .timeout = 14,
			   .min_rnr_timer = 1,
			   .max_sge = 1};

	ep_qp(&p->e, IBV_QPT_RC, &o);
	me->rc_qpn = p->e.qp->qp_num;
	me->ud_qpn = p->ud->qp_num;
	me->lid = p->e.lid;
	if (first) {
		dp_xfer(p->sock, me, sizeof(*me), true);
		dp_xfer(p->sock, peer, sizeof(*peer), false);
	} else {
		dp_xfer(p->sock, peer, sizeof(*peer), false);
		dp_xfer(p->sock, me, sizeof(*me), true);
	}
	qp_connect(p->e.qp, peer->rc_qpn, peer->lid, &o);
}

/* --- target ------------------------------------------------------------ */

struct target {
	struct proc p;
	struct buf b;
	uint64_t rc_posted, ud_posted, sends, ud, wimm, flushed, done;
	long rss_warm, rss_end;
};

static void t_post_rc(struct target *t, uint64_t i)
{
	CHECK(post_recv1(t->p.e.qp, i, t->b.p + T_RECV + (i % RQ_DEPTH) * MAX_LEN, MAX_LEN,
			 t->b.mr->lkey) == 0,
	      "post RC receive");
	t->rc_posted++;
}

static void t_post_ud(struct target *t, uint64_t i)
{
	CHECK(post_recv1(t->p.ud, i, t->b.p + T_UDRECV + (i % RQ_DEPTH) * (UD_MAX + 40u),
			 UD_MAX + 40u, t->b.mr->lkey) == 0,
	      "post UD receive");
	t->ud_posted++;
	/* The initiator reads this to know it may send another datagram. */
	__atomic_store_n((uint64_t *)(t->b.p + T_CREDITS), t->ud_posted, __ATOMIC_RELEASE);
}

/* A send: its round in the first four bytes, the pattern after them. */
static void t_check_send(struct target *t, const struct ibv_wc *wc, const uint8_t *buf)
{
	bool imm = wc->wc_flags & IBV_WC_WITH_IMM;
	uint32_t round, len = wc->byte_len;

	memcpy(&round, buf, 4);
	CHECK(wc->opcode == IBV_WC_RECV && len >= 4, "receive opcode %d, %u bytes", wc->opcode,
	      len);
	CHECK(!imm || be32toh(wc->imm_data) == round, "send with imm: imm %u, round %u",
	      be32toh(wc->imm_data), round);
	CHECK(len < 4 || pat_diff(buf + 4, len - 4, seed_of(t->p.pair, round, imm)) == len - 4,
	      "send%s of round %u, %u bytes: data", imm ? " with imm" : "", round, len);
	t->sends++;
}

/* One receive completion: its data checked, its buffer posted again. */
static void t_receive(struct target *t, const struct ibv_wc *wc)
{
	uint32_t round = be32toh(wc->imm_data), len = wc->byte_len;
	const uint8_t *buf;

	if (wc->status != IBV_WC_SUCCESS) {
		CHECK(0, "receive %llu: %s", (unsigned long long)wc->wr_id,
		      ibv_wc_status_str(wc->status));
		return;
	}
	if (wc->qp_num == t->p.ud->qp_num) {
		buf = t->b.p + T_UDRECV + (wc->wr_id % RQ_DEPTH) * (UD_MAX + 40u) + 40u;
		CHECK(wc->wr_id == t->ud && (wc->wc_flags & IBV_WC_WITH_IMM) && len > 40,
		      "datagram %llu in order, with imm", (unsigned long long)wc->wr_id);
		CHECK(len <= 40 ||
			  pat_diff(buf, len - 40, seed_of(t->p.pair, round, 7)) == len - 40,
		      "datagram of round %u: data", round);
		t->ud++;
		t_post_ud(t, t->ud_posted);
		return;
	}
	CHECK(wc->wr_id == t->sends + t->wimm, "RC receive %llu in order",
	      (unsigned long long)wc->wr_id);
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		buf = t->b.p + T_WIMM + (round % WIMM_SLOTS) * MAX_LEN;
		CHECK(pat_diff(buf, len, seed_of(t->p.pair, round, 4)) == len,
		      "write with imm of round %u: data", round);
		t->wimm++;
	} else {
		t_check_send(t, wc, t->b.p + T_RECV + (wc->wr_id % RQ_DEPTH) * MAX_LEN);
	}
	t_post_rc(t, t->rc_posted);
}

/* Drains the CQ; false once nothing more is there. */
static bool t_drain(struct target *t)
{
	struct ibv_wc wc[16];
	int n = ibv_poll_cq(t->p.e.cq, 16, wc);

	REQUIRE(n >= 0, "poll_cq %d", n);
	for (int i = 0; i < n; i++)
		t_receive(t, &wc[i]);
	return n > 0;
}

/* Sleeps until a completion event or a message from the initiator (returned, or 0). */
static char t_wait(struct target *t)
{
	struct pollfd fds[2] = {{.fd = t->p.ch->fd, .events = POLLIN},
				{.fd = t->p.sock, .events = POLLIN}};
	struct ibv_cq *cq;
	void *cq_ctx;
	char c = 0;

	REQUIRE(ibv_req_notify_cq(t->p.e.cq, 0) == 0, "req_notify_cq");
	if (t_drain(t)) /* armed, then polled: nothing slips between */
		return 0;
	REQUIRE(poll(fds, 2, DP_DEADLINE_S * 1000) > 0, "the target heard nothing for %d s",
		DP_DEADLINE_S);
	if (fds[0].revents & POLLIN) {
		REQUIRE(ibv_get_cq_event(t->p.ch, &cq, &cq_ctx) == 0, "get_cq_event");
		ibv_ack_cq_events(cq, 1);
	}
	if (fds[1].revents & POLLIN)
		dp_xfer(t->p.sock, &c, 1, false);
	return c;
}

/* Every receive the initiator's WRs consumed has completed here. */
static void t_finish(struct target *t, const struct totals *tot)
{
	uint64_t end = now_s() + DP_DEADLINE_S;

	while ((t->sends < tot->sends || t->ud < tot->ud || t->wimm < tot->wimm) && now_s() <= end)
		t_drain(t);
	CHECK(t->sends == tot->sends && t->wimm == tot->wimm && t->ud == tot->ud,
	      "receive completions: %llu sends, %llu writes with imm, %llu datagrams; the "
	      "initiator sent %llu, %llu, %llu",
	      (unsigned long long)t->sends, (unsigned long long)t->wimm, (unsigned long long)t->ud,
	      (unsigned long long)tot->sends, (unsigned long long)tot->wimm,
	      (unsigned long long)tot->ud);
	CHECK(*(uint64_t *)(t->b.p + T_ATOMIC) == tot->fadd,
	      "fetch-and-add counter %llu, %llu adds",
	      (unsigned long long)*(uint64_t *)(t->b.p + T_ATOMIC), (unsigned long long)tot->fadd);
}

/* ERR flushes what is still posted: each receive ends in exactly one completion. */
static void t_flush(struct target *t)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};
	uint64_t want = t->rc_posted - t->sends - t->wimm + t->ud_posted - t->ud;
	uint64_t end = now_s() + DP_DEADLINE_S;
	struct ibv_wc wc;

	CHECK(ibv_modify_qp(t->p.e.qp, &a, IBV_QP_STATE) == 0, "RC QP to ERR");
	CHECK(ibv_modify_qp(t->p.ud, &a, IBV_QP_STATE) == 0, "UD QP to ERR");
	while (t->flushed < want && now_s() <= end) {
		int n = ibv_poll_cq(t->p.e.cq, 1, &wc);

		if (n == 1) {
			CHECK(wc.status == IBV_WC_WR_FLUSH_ERR, "flush: %s",
			      ibv_wc_status_str(wc.status));
			t->flushed++;
		}
	}
	CHECK(t->flushed == want && cq_empty(t->p.e.cq),
	      "%llu receives flushed of %llu still posted", (unsigned long long)t->flushed,
	      (unsigned long long)want);
}

/*
 * How much RssAnon may grow between the samples: IVRDMA_SOAK_RSS_SLACK_KB,
 * else 1024 kB. The ThreadSanitizer build gets more (tests/provider/
 * CMakeLists.txt): its runtime's own bookkeeping grows with the run, by
 * 0.05 to 1.4 MB in 45 s with the provider's memory the same.
 */
static long rss_slack_kb(void)
{
	const char *s = getenv("IVRDMA_SOAK_RSS_SLACK_KB");

	return s && *s ? atol(s) : 1024;
}

static long rss_check(const char *who, uint32_t pair, long warm, long end)
{
	printf("pair %u %s: RssAnon %ld kB after warm-up, %ld kB at the end\n", pair, who, warm,
	       end);
	CHECK(end <= warm + rss_slack_kb(), "pair %u %s: RssAnon grew %ld kB", pair, who,
	      end - warm);
	return end - warm;
}

static int target_main(struct proc *p)
{
	struct target t = {.p = *p};
	struct info me = {0}, peer;
	struct totals tot;
	char c = 'W';

	proc_open(&t.p);
	buf_new(&t.b, t.p.e.pd, T_SIZE, MR_ALL);
	memset(t.b.p + T_ATOMIC, 0, 16);
	me.rkey = t.b.mr->rkey;
	me.addr = (uintptr_t)t.b.p;
	proc_connect(&t.p, &me, &peer, true);
	for (uint64_t i = 0; i < RQ_DEPTH; i++) {
		t_post_rc(&t, i);
		t_post_ud(&t, i);
	}
	dp_xfer(t.p.sock, &c, 1, true); /* receives posted: go */
	while ((c = t_wait(&t)) != 'D') {
		if (c != 'W')
			continue;
		t.rss_warm = rss_kb();
		dp_xfer(t.p.ctl, &c, 1, true);
		dp_xfer(t.p.ctl, &c, 1, false);
	}
	dp_xfer(t.p.sock, &tot, sizeof(tot), false);
	t_finish(&t, &tot);
	t.rss_end = rss_kb();
	c = 'E';
	dp_xfer(t.p.ctl, &c, 1, true);
	dp_xfer(t.p.ctl, &c, 1, false);
	t_flush(&t);
	rss_check("target", t.p.pair, t.rss_warm, t.rss_end);
	printf("pair %u target: %llu sends, %llu writes with imm, %llu datagrams received, "
	       "%llu flushed\n",
	       t.p.pair, (unsigned long long)t.sends, (unsigned long long)t.wimm,
	       (unsigned long long)t.ud, (unsigned long long)t.flushed);
	buf_free(&t.b);
	proc_close(&t.p);
	return check_summary();
}

/* --- initiator --------------------------------------------------------- */

/* The initiator's registered buffer: sources, the read's landing, atomic results. */
#define L_SRC(i)  ((i) * (MAX_LEN + 64u)) /* 0 send, 1 send with imm, 2 write, 3 write imm */
#define L_READ	  L_SRC(4)
#define L_UD	  L_SRC(5)
#define L_ATOMIC  (L_SRC(6))	   /* two results */
#define L_CREDITS (L_ATOMIC + 64u) /* the target's T_CREDITS, read */
#define L_SIZE	  (L_CREDITS + 64u)

struct initiator {
	struct proc p;
	struct buf b;
	struct info peer;
	struct ibv_ah *ah;
	struct totals tot;
	uint64_t rc_posted, rc_done, ud_posted, ud_done, ud_credits, fa_expect, cs_expect, round;
	uint64_t churns;
	long rss_warm, rss_end;
};

static void sge_at(struct ibv_sge *s, struct initiator *in, uint32_t off, uint32_t len)
{
	s->addr = (uintptr_t)in->b.p + off;
	s->length = len;
	s->lkey = in->b.mr->lkey;
}

/* One RC WR of the chain: which opcode, where from and to. */
static void i_wr(struct initiator *in, struct ibv_send_wr *wr, struct ibv_sge *s, int k,
		 uint32_t len)
{
	static const enum ibv_wr_opcode ops[CHAIN] = {IBV_WR_SEND,
						      IBV_WR_SEND_WITH_IMM,
						      IBV_WR_RDMA_WRITE,
						      IBV_WR_RDMA_READ,
						      IBV_WR_RDMA_WRITE_WITH_IMM,
						      IBV_WR_ATOMIC_FETCH_AND_ADD,
						      IBV_WR_ATOMIC_CMP_AND_SWP};
	uint32_t r = (uint32_t)in->round;
	uint64_t rw = in->peer.addr + T_RW + (r % RW_SLOTS) * MAX_LEN;

	memset(wr, 0, sizeof(*wr));
	wr->wr_id = in->rc_posted + (uint64_t)k;
	wr->opcode = ops[k];
	wr->send_flags = IBV_SEND_SIGNALED;
	wr->sg_list = s;
	wr->num_sge = 1;
	wr->imm_data = htobe32(r);
	wr->wr.rdma.rkey = in->peer.rkey;
	if (k < 2) {
		sge_at(s, in, L_SRC(k), len);
		memcpy(in->b.p + L_SRC(k), &r, 4);
		fill(in->b.p + L_SRC(k) + 4, len - 4, seed_of(in->p.pair, r, (uint32_t)k));
	} else if (k == 2 || k == 3) {
		sge_at(s, in, k == 2 ? L_SRC(2) : L_READ, len);
		if (k == 2)
			fill(in->b.p + L_SRC(2), len, seed_of(in->p.pair, r, 2));
		wr->wr.rdma.remote_addr = rw;
	} else if (k == 4) {
		sge_at(s, in, L_SRC(3), len);
		fill(in->b.p + L_SRC(3), len, seed_of(in->p.pair, r, 4));
		wr->wr.rdma.remote_addr = in->peer.addr + T_WIMM + (r % WIMM_SLOTS) * MAX_LEN;
	} else {
		sge_at(s, in, L_ATOMIC + (uint32_t)(k - 5) * 8u, 8);
		wr->wr.atomic.remote_addr = in->peer.addr + T_ATOMIC + (uint64_t)(k - 5) * 8u;
		wr->wr.atomic.rkey = in->peer.rkey;
		wr->wr.atomic.compare_add = k == 5 ? 1 : in->cs_expect;
		wr->wr.atomic.swap = (uint64_t)r * 0x9e3779b97f4a7c15ull;
	}
	if (k + 1 < CHAIN)
		wr->next = wr + 1;
}

/* Until the target has a datagram receive free: its count read over RC. */
static void i_wait_credit(struct initiator *in)
{
	uint64_t end = now_s() + DP_DEADLINE_S;

	while (in->ud_posted >= in->ud_credits && now_s() <= end) {
		uint64_t id = in->rc_posted++;

		REQUIRE(post1(in->p.e.qp, id, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED,
			      in->b.p + L_CREDITS, 8, in->b.mr->lkey, in->peer.addr + T_CREDITS,
			      in->peer.rkey) == 0,
			"post credit read");
		EXPECT_WC(in->p.e.cq, IBV_WC_SUCCESS, id, IBV_WC_RDMA_READ, "credit read");
		in->rc_done++;
		memcpy(&in->ud_credits, in->b.p + L_CREDITS, 8);
	}
	REQUIRE(in->ud_posted < in->ud_credits, "the target posts no datagram receives");
}

static void i_post_ud(struct initiator *in, uint32_t len)
{
	uint32_t r = (uint32_t)in->round;
	struct ibv_sge s;
	struct ibv_send_wr wr = {.wr_id = in->ud_posted,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = IBV_WR_SEND_WITH_IMM,
				 .send_flags = IBV_SEND_SIGNALED,
				 .imm_data = htobe32(r)},
			   *bad;

	i_wait_credit(in);
	sge_at(&s, in, L_UD, len);
	fill(in->b.p + L_UD, len, seed_of(in->p.pair, r, 7));
	wr.wr.ud.ah = in->ah;
	wr.wr.ud.remote_qpn = in->peer.ud_qpn;
	wr.wr.ud.remote_qkey = QKEY;
	REQUIRE(ibv_post_send(in->p.ud, &wr, &bad) == 0, "post datagram");
	in->ud_posted++;
	in->tot.ud++;
}

/* The chain's completions in order, and what the READ and the atomics brought back. */
static void i_check_chain(struct initiator *in, uint32_t len)
{
	static const enum ibv_wc_opcode ops[CHAIN] = {
	    IBV_WC_SEND,       IBV_WC_SEND,	 IBV_WC_RDMA_WRITE, IBV_WC_RDMA_READ,
	    IBV_WC_RDMA_WRITE, IBV_WC_FETCH_ADD, IBV_WC_COMP_SWAP};
	uint32_t r = (uint32_t)in->round;
	uint64_t got;

	for (int k = 0; k < CHAIN; k++)
		EXPECT_WC(in->p.e.cq, IBV_WC_SUCCESS, in->rc_done + (uint64_t)k, ops[k],
			  "chain completion");
	in->rc_done += CHAIN;
	CHECK(pat_diff(in->b.p + L_READ, len, seed_of(in->p.pair, r, 2)) == len,
	      "round %u: the read brought back what the write wrote (%u bytes)", r, len);
	memcpy(&got, in->b.p + L_ATOMIC, 8);
	CHECK(got == in->fa_expect, "fetch-and-add returned %llu, want %llu",
	      (unsigned long long)got, (unsigned long long)in->fa_expect);
	in->fa_expect++;
	memcpy(&got, in->b.p + L_ATOMIC + 8, 8);
	CHECK(got == in->cs_expect, "compare-and-swap returned %#llx, want %#llx",
	      (unsigned long long)got, (unsigned long long)in->cs_expect);
	in->cs_expect = (uint64_t)r * 0x9e3779b97f4a7c15ull;
}

/* A new MR, a write from it and a read back into it, then gone again. */
static void i_churn(struct initiator *in)
{
	size_t len = 4096u * (1u + (uint32_t)(in->churns++ % 5));
	uint32_t seed = seed_of(in->p.pair, (uint32_t)in->round, 9);
	uint64_t id = in->rc_posted;
	struct buf m;

	buf_new(&m, in->p.e.pd, 2 * len, IBV_ACCESS_LOCAL_WRITE);
	fill(m.p, len, seed);
	CHECK(post1(in->p.e.qp, id, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, m.p, (uint32_t)len,
		    m.mr->lkey, in->peer.addr + T_RW, in->peer.rkey) == 0,
	      "post churn write");
	CHECK(post1(in->p.e.qp, id + 1, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED, m.p + len,
		    (uint32_t)len, m.mr->lkey, in->peer.addr + T_RW, in->peer.rkey) == 0,
	      "post churn read");
	EXPECT_WC(in->p.e.cq, IBV_WC_SUCCESS, id, IBV_WC_RDMA_WRITE, "churn write");
	EXPECT_WC(in->p.e.cq, IBV_WC_SUCCESS, id + 1, IBV_WC_RDMA_READ, "churn read");
	CHECK(pat_diff(m.p + len, len, seed) == len, "churn: a fresh MR's bytes made the trip");
	in->rc_posted += 2;
	in->rc_done += 2;
	buf_free(&m);
}

static void i_round(struct initiator *in)
{
	uint32_t len = lens[in->round % (sizeof(lens) / sizeof(lens[0]))];
	struct ibv_send_wr wr[CHAIN], *bad = NULL;
	struct ibv_sge s[CHAIN];

	for (int k = 0; k < CHAIN; k++)
		i_wr(in, &wr[k], &s[k], k, len);
	REQUIRE(ibv_post_send(in->p.e.qp, wr, &bad) == 0, "post the chain: %s", strerror(errno));
	in->rc_posted += CHAIN;
	in->tot.sends += 2;
	in->tot.wimm++;
	in->tot.fadd++;
	i_check_chain(in, len);
	i_post_ud(in, len < UD_MAX ? len : UD_MAX);
	EXPECT_WC(in->p.e.cq, IBV_WC_SUCCESS, in->ud_done, IBV_WC_SEND, "datagram");
	in->ud_done++;
	if (in->round % 32 == 31)
		i_churn(in);
	in->round++;
}

/* Waits at the parent's barrier; the target samples too, told over its socket. */
static long i_barrier(struct initiator *in, char what)
{
	long rss = rss_kb();
	char c = what;

	if (what == 'W')
		dp_xfer(in->p.sock, &c, 1, true);
	dp_xfer(in->p.ctl, &c, 1, true);
	dp_xfer(in->p.ctl, &c, 1, false);
	return rss;
}

static int initiator_main(struct proc *p, uint64_t seconds)
{
	struct initiator in = {.p = *p};
	struct ibv_ah_attr aa = {.port_num = 1};
	struct info me = {0};
	uint64_t start, warm;
	char c;

	proc_open(&in.p);
	buf_new(&in.b, in.p.e.pd, L_SIZE, IBV_ACCESS_LOCAL_WRITE);
	proc_connect(&in.p, &me, &in.peer, false);
	aa.dlid = in.peer.lid;
	in.ah = ibv_create_ah(in.p.e.pd, &aa);
	REQUIRE(in.ah, "create_ah: %s", strerror(errno));
	dp_xfer(in.p.sock, &c, 1, false); /* the target's receives are posted */
	start = now_s();
	warm = start + (seconds + 4) / 5; /* allocators and sanitizer shadow settle first */
	while (now_s() < warm || in.round < 64)
		i_round(&in);
	in.rss_warm = i_barrier(&in, 'W');
	while (now_s() < start + seconds)
		i_round(&in);
	c = 'D';
	dp_xfer(in.p.sock, &c, 1, true);
	dp_xfer(in.p.sock, &in.tot, sizeof(in.tot), true);
	in.rss_end = i_barrier(&in, 'E');
	CHECK(in.rc_done == in.rc_posted && in.ud_done == in.ud_posted && cq_empty(in.p.e.cq),
	      "every WR completed once: RC %llu of %llu, UD %llu of %llu",
	      (unsigned long long)in.rc_done, (unsigned long long)in.rc_posted,
	      (unsigned long long)in.ud_done, (unsigned long long)in.ud_posted);
	rss_check("initiator", in.p.pair, in.rss_warm, in.rss_end);
	printf("pair %u initiator: %llu rounds, %llu RC WRs, %llu datagrams, %llu MRs churned\n",
	       in.p.pair, (unsigned long long)in.round, (unsigned long long)in.rc_posted,
	       (unsigned long long)in.ud_posted, (unsigned long long)in.churns);
	CHECK(ibv_destroy_ah(in.ah) == 0, "destroy_ah");
	buf_free(&in.b);
	proc_close(&in.p);
	return check_summary();
}

/* --- the parent ---------------------------------------------------------- */

/* What the region holds now, printed. */
static struct region_usage usage_now(const char *path)
{
	struct region_usage u = region_usage(path);

	region_usage_print("region", &u);
	return u;
}

/* Every child reached the barrier; the region is sampled; all go on. */
static struct region_usage barrier(const int *ctl, uint32_t n, const char *region)
{
	struct region_usage u;
	char c;

	for (uint32_t i = 0; i < n; i++)
		dp_xfer(ctl[i], &c, 1, false);
	u = usage_now(region);
	c = 'G';
	for (uint32_t i = 0; i < n; i++)
		dp_xfer(ctl[i], &c, 1, true);
	return u;
}

static pid_t spawn(struct proc *p, int *ctl, uint64_t seconds, bool target)
{
	int cv[2];
	pid_t pid;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, cv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(cv[0]);
		close(p->other);
		p->ctl = cv[1];
		/* exit, not _exit: under ASan, LeakSanitizer checks each child too. */
		exit(target ? target_main(p) : initiator_main(p, seconds));
	}
	close(cv[1]);
	*ctl = cv[0];
	return pid;
}

int main(int argc, char **argv)
{
	unsigned long long seconds = 0;
	unsigned int pairs = 0;
	struct region_usage warm, end;
	pid_t pids[64];
	int ctl[64], st;

	REQUIRE(argc == 3 && sscanf(argv[1], "%llux%u", &seconds, &pairs) == 2 && seconds > 0 &&
		    pairs > 0 && pairs <= 32,
		"usage: test_provider_soak SECONDSxPAIRS REGION_FILE");
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (uint32_t i = 0; i < pairs; i++) {
		struct proc p = {.pair = i};
		int sv[2];

		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
		p.sock = sv[0];
		p.other = sv[1];
		pids[2 * i] = spawn(&p, &ctl[2 * i], seconds, true);
		p.sock = sv[1];
		p.other = sv[0];
		pids[2 * i + 1] = spawn(&p, &ctl[2 * i + 1], seconds, false);
		close(sv[0]);
		close(sv[1]);
	}
	warm = barrier(ctl, 2 * pairs, argv[2]);
	end = barrier(ctl, 2 * pairs, argv[2]);
	CHECK(!memcmp(&warm, &end, sizeof(warm)), "region usage changed between the samples");
	for (uint32_t i = 0; i < 2 * pairs; i++) {
		REQUIRE(waitpid(pids[i], &st, 0) == pids[i], "waitpid");
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s of pair %u: status %#x",
		      i % 2 ? "initiator" : "target", i / 2, st);
	}
	printf("soak: %llu s, %u pairs\n", seconds, pairs);
	return check_summary();
}
