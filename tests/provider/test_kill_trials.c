// SPDX-License-Identifier: MIT
/*
 * Fault injection: kill -9 of one participant at a random point of a
 * workload, many trials (issue 13).
 *
 *   test_provider_kill_trials TRIALS REGION_FILE
 *
 * env: IVRDMA_KILL_SEED  the seed (printed; otherwise from the clock)
 *      IVRDMA_KILL_ONLY  run only this trial (with the seed, to reproduce it)
 *
 * A trial forks two processes from this one, each with its own context of
 * the one ivrdmad: an initiator, which posts the work, and a target. They
 * connect RC QPs (and UD QPs for datagrams) and run one kind of workload,
 * trial by trial round-robin: sends, RDMA writes (with and without
 * immediate data), reads, atomics, UD datagrams, registrations of
 * overlapping ranges that move the pages a peer writes into, CQ-heavy
 * sends from four QPs into one CQ, and creating and destroying QPs, CQs,
 * SRQs, MRs and PDs beside sends. Every other round of the kinds, the
 * victim is the initiator; otherwise the target. Once both run, the parent
 * waits a random delay (seeded) and kills the victim with SIGKILL.
 *
 * The survivor must then see the death, as an error completion or an
 * async event, within a hang bound (a hang detector, not a timing
 * assertion); every WR it posted ends in exactly one completion, in order
 * per queue, of a status a dead peer may give (SUCCESS before, then
 * RETRY_EXC_ERR, WR_FLUSH_ERR, or GENERAL_ERR with IVRDMA_VERR_SENDER_DIED
 * for a receive the dead sender had taken); every byte it received before
 * is checked (patterns, the index each message carries, atomics' results)
 * and so is what the dead initiator wrote last into its memory. Once both
 * are gone, the region's usage (chunks, QP, CQ, SRQ, MR and context slots)
 * must come back to what it was before the trials. At the end a new
 * process still gets RDMA through ivrdmad. Run by run-provider-test.sh
 * (real ivrdmad).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "dp_common.h"
#include "ivrdma_layout.h"
#include "region.h"
#include "region_usage.h"

#define NQP	 4u    /* RC QPs of the CQ-heavy kind; others use one */
#define UDQ	 NQP   /* the UD QP's index among a node's QPs */
#define RQ	 16u   /* receives kept posted per QP */
#define MSG	 4200u /* the largest send */
#define WIN_MAX	 16u   /* WRs a QP may have outstanding */
#define WS	 RQ    /* write-with-imm landing slots: one per receive the writer may use */
#define WLEN	 4096u
#define RLEN	 16384u /* the read source */
#define UDLEN	 2048u
#define MPAGES	 192u /* the mover's buffer, in pages */
#define QKEY	 0x6b1du
#define HANG_S	 DP_DEADLINE_S /* the hang bound after the kill (a hang detector) */
#define DELAY_US 200000u

/* The registered buffer's areas; both sides have the same. */
#define A_RECV(q, i) ((q)*RQ * MSG + (i)*MSG)
#define A_SRC(q, i)  (NQP * RQ * MSG + ((q)*WIN_MAX + (i)) * MSG)
#define A_WIMM	     (A_SRC(NQP, 0))
#define A_PLAIN	     (A_WIMM + WS * WLEN) /* two slots of plain writes */
#define A_READ	     (A_PLAIN + 2 * WLEN) /* the read source, pattern 77 */
#define A_LAND	     (A_READ + RLEN)	  /* four read landings */
#define A_UDRECV     (A_LAND + 4 * WLEN)
#define A_ATOMIC     (A_UDRECV + RQ * (UDLEN + 40u)) /* counter, swap word, two results */
#define A_SIZE	     (A_ATOMIC + 64u)

enum kind { K_SEND, K_WRITE, K_READ, K_ATOMIC, K_UD, K_REGMR, K_CQ, K_DESTROY, NKINDS };
static const char *const kind_name[NKINDS] = {"send", "write",	"read", "atomic",
					      "ud",   "reg_mr", "cq",	"destroy"};

/* What the parent and both children share (MAP_SHARED, made before the forks). */
struct board {
	uint64_t kill_ns;   /* parent: when SIGKILL went out; 0 before */
	uint64_t progress;  /* victim initiator: its last checked write or add, plus 1 */
	uint64_t detect_ns; /* survivor: when it saw the death */
	uint64_t wrs;	    /* survivor: WRs posted, each completed once */
	uint64_t ebusy;	    /* survivor: registrations refused with EBUSY meanwhile */
	uint64_t moves;	    /* the mover: registrations that moved the writer's page */
	uint32_t how;	    /* survivor: 1 an error completion, 2 an async event */
	uint32_t victim_fail;
};

struct info {
	uint32_t qpn[NQP + 1], rkey, mrkey;
	uint16_t lid;
	uint64_t addr, maddr;
};

struct node {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qp[NQP + 1];
	struct ibv_ah *ah;
	struct buf b;
	struct info peer;
	struct board *bd;
	enum kind kind;
	bool victim, init, dead;
	uint32_t nqp; /* RC QPs */
	uint64_t sposted[NQP + 1], sdone[NQP + 1], rposted[NQP + 1], rdone[NQP + 1];
	uint64_t aux[NQP + 1][64]; /* per outstanding send: what to check at its completion */
	uint64_t fa_expect, cs_expect, plain, ud_last;
	/* the mover's (reg_mr) */
	uint8_t *m;
	struct ibv_mr *mr_p;
	uint32_t m_end;
};

static const struct qpopts opts = {.access = ALL_REMOTE,
				   .rnr_retry = 7,
				   .retry_cnt = 7,
				   .timeout = 10,
				   .min_rnr_timer = 1,
				   .max_send_wr = 64,
				   .max_sge = 1};

static bool is_init_kind_window1(enum kind k)
{
	return k == K_WRITE || k == K_ATOMIC || k == K_REGMR;
}

static uint32_t window(const struct node *n)
{
	if (is_init_kind_window1(n->kind))
		return 1;
	return n->kind == K_CQ ? WIN_MAX : 8;
}

/* The length of message i of a send-like kind. */
static uint32_t msg_len(enum kind k, uint64_t i)
{
	static const uint32_t big[] = {4, 64, 1000, 4097, MSG}, small[] = {4, 16, 64};

	return k == K_CQ ? small[i % 3] : big[i % 5];
}

static uint32_t msg_seed(uint32_t q, uint64_t i)
{
	return (q << 24) ^ (uint32_t)i;
}

static uint64_t wrid(uint32_t q, bool recv, uint64_t i)
{
	return (uint64_t)q << 48 | (uint64_t)recv << 47 | i;
}

/* Index of the first byte that is not pattern 'seed' at offsets off.., or n. */
static size_t pat_diff_at(const uint8_t *p, size_t n, size_t off, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(off + i, seed))
			return i;
	return n;
}

static bool running(const struct node *n)
{
	return n->victim || !n->dead;
}

/* --- setting up ---------------------------------------------------------- */

static struct ibv_qp *ud_qp(struct node *n)
{
	struct ibv_qp_init_attr ia = {
	    .send_cq = n->cq,
	    .recv_cq = n->cq,
	    .cap = {.max_send_wr = 64, .max_recv_wr = RQ, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_UD,
	};
	struct ibv_qp *qp = ibv_create_qp(n->pd, &ia);

	REQUIRE(qp, "create UD QP: %s", strerror(errno));
	ud_up(qp, QKEY);
	return qp;
}

static struct ibv_qp *rc_qp(struct node *n)
{
	struct ibv_qp_init_attr ia = {
	    .send_cq = n->cq,
	    .recv_cq = n->cq,
	    .cap = {.max_send_wr = 64, .max_recv_wr = RQ, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_RC,
	};
	struct ibv_qp *qp = ibv_create_qp(n->pd, &ia);

	REQUIRE(qp, "create RC QP: %s", strerror(errno));
	return qp;
}

static void post_recv(struct node *n, uint32_t q)
{
	uint64_t i = n->rposted[q];
	uint8_t *p =
	    q == UDQ ? n->b.p + A_UDRECV + (i % RQ) * (UDLEN + 40u) : n->b.p + A_RECV(q, i % RQ);
	uint32_t len = q == UDQ ? UDLEN + 40u : MSG;

	if (post_recv1(n->qp[q], wrid(q, true, i), p, len, n->b.mr->lkey) == 0) {
		n->rposted[q]++;
		return;
	}
	/* The survivor's QP may have failed already: no WR was posted then. */
	CHECK(!n->victim && qp_state(n->qp[q]) == IBV_QPS_ERR, "post_recv %u: %s", q,
	      strerror(errno));
}

/* The mover's buffer: MR_p on its first page is what the writer writes into. */
static void mover_open(struct node *n)
{
	size_t pg = page_size();

	n->m = mmap(NULL, MPAGES * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(n->m != MAP_FAILED, "mmap the mover's buffer");
	memset(n->m, 0, MPAGES * pg);
	n->mr_p = ibv_reg_mr(n->pd, n->m, pg, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	REQUIRE(n->mr_p, "reg_mr the mover's first page: %s", strerror(errno));
	n->m_end = 1;
}

static void node_open(struct node *n)
{
	struct ibv_port_attr pa;

	n->ctx = dp_open();
	n->pd = ibv_alloc_pd(n->ctx);
	n->cq = ibv_create_cq(n->ctx, DP_CQE, NULL, NULL, 0);
	REQUIRE(n->pd && n->cq, "alloc_pd / create_cq: %s", strerror(errno));
	REQUIRE(ibv_query_port(n->ctx, 1, &pa) == 0, "query_port");
	buf_new(&n->b, n->pd, A_SIZE, MR_ALL);
	fill(n->b.p + A_READ, RLEN, 77);
	memset(n->b.p + A_ATOMIC, 0, 64);
	n->nqp = n->kind == K_CQ ? NQP : 1;
	for (uint32_t q = 0; q < n->nqp; q++)
		n->qp[q] = rc_qp(n);
	if (n->kind == K_UD)
		n->qp[UDQ] = ud_qp(n);
	if (n->kind == K_REGMR && !n->init)
		mover_open(n);
}

/* Identities over 'sock', QPs connected, then both in RTS before any traffic. */
static void node_connect(struct node *n, int sock)
{
	struct ibv_port_attr pa;
	struct info me = {.rkey = n->b.mr->rkey, .addr = (uintptr_t)n->b.p};
	char c = 'C';

	REQUIRE(ibv_query_port(n->ctx, 1, &pa) == 0, "query_port");
	me.lid = pa.lid;
	for (uint32_t q = 0; q <= NQP; q++)
		me.qpn[q] = n->qp[q] ? n->qp[q]->qp_num : 0;
	if (n->mr_p) {
		me.mrkey = n->mr_p->rkey;
		me.maddr = (uintptr_t)n->m;
	}
	dp_xfer(sock, &me, sizeof(me), true);
	dp_xfer(sock, &n->peer, sizeof(n->peer), false);
	for (uint32_t q = 0; q < n->nqp; q++)
		qp_connect(n->qp[q], n->peer.qpn[q], n->peer.lid, &opts);
	if (n->kind == K_UD) {
		n->ah =
		    ibv_create_ah(n->pd, &(struct ibv_ah_attr){.dlid = n->peer.lid, .port_num = 1});
		REQUIRE(n->ah, "create_ah: %s", strerror(errno));
	}
	if (!n->init) {
		bool rc = n->kind == K_SEND || n->kind == K_WRITE || n->kind == K_CQ ||
			  n->kind == K_DESTROY;

		for (uint32_t q = 0; q < n->nqp && rc; q++)
			for (uint32_t i = 0; i < RQ; i++)
				post_recv(n, q);
		for (uint32_t i = 0; i < RQ && n->kind == K_UD; i++)
			post_recv(n, UDQ);
	}
	dp_xfer(sock, &c, 1, true);
	dp_xfer(sock, &c, 1, false);
}

/* --- the initiator's work requests ----------------------------------------- */

/* Posts one WR on QP q, its wr_id the queue's next; false if the QP is already in ERR. */
static bool post_wr(struct node *n, uint32_t q, struct ibv_send_wr *wr, uint64_t aux)
{
	struct ibv_send_wr *bad;
	uint64_t i = n->sposted[q];

	wr->wr_id = wrid(q, false, i);
	wr->send_flags |= IBV_SEND_SIGNALED;
	n->aux[q][i % 64] = aux;
	if (ibv_post_send(n->qp[q], wr, &bad) == 0) {
		n->sposted[q]++;
		return true;
	}
	CHECK(!n->victim && qp_state(n->qp[q]) == IBV_QPS_ERR, "post_send on QP %u: %s", q,
	      strerror(errno));
	return false;
}

static void sge_at(struct ibv_sge *s, struct node *n, size_t off, uint32_t len)
{
	*s =
	    (struct ibv_sge){.addr = (uintptr_t)n->b.p + off, .length = len, .lkey = n->b.mr->lkey};
}

/* Message i on QP q: its index in the first four bytes, the pattern after. */
static bool post_msg(struct node *n, uint32_t q)
{
	uint64_t i = n->sposted[q];
	uint32_t len = msg_len(n->kind, i), idx = (uint32_t)i;
	struct ibv_sge s;
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1};
	uint8_t *p = n->b.p + A_SRC(q, i % WIN_MAX);

	memcpy(p, &idx, 4);
	fill(p + 4, len - 4, msg_seed(q, i));
	sge_at(&s, n, A_SRC(q, i % WIN_MAX), len);
	wr.opcode = i & 1 ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND;
	wr.imm_data = htobe32(idx);
	return post_wr(n, q, &wr, 0);
}

/*
 * WR k: every third a plain write into one of two slots (the dead writer's
 * last one is checked there), the others writes with immediate data, each
 * checked by the target as it receives its completion.
 */
static bool post_write(struct node *n)
{
	uint64_t k = n->sposted[0], p = k / 3, w = k - k / 3;
	bool plain = k % 3 == 2;
	uint32_t seed = plain ? 0x20000u | (uint32_t)p : 0x10000u | (uint32_t)w;
	struct ibv_sge s;
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1};

	fill(n->b.p + A_SRC(0, 0), WLEN, seed);
	sge_at(&s, n, A_SRC(0, 0), WLEN);
	wr.opcode = plain ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_WRITE_WITH_IMM;
	wr.imm_data = htobe32((uint32_t)w);
	wr.wr.rdma.rkey = n->peer.rkey;
	wr.wr.rdma.remote_addr =
	    n->peer.addr + (plain ? A_PLAIN + (p & 1) * WLEN : A_WIMM + (w % WS) * WLEN);
	return post_wr(n, 0, &wr, plain ? p + 1 : 0);
}

/* A read of a length and offset that vary, into one of four landings. */
static bool post_read(struct node *n)
{
	uint64_t k = n->sposted[0];
	uint32_t len = 1u + (uint32_t)(k * 97u % WLEN),
		 off = (uint32_t)(k * 733u % (RLEN - len + 1));
	struct ibv_sge s;
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_READ};

	memset(n->b.p + A_LAND + (k % 4) * WLEN, 0xee, len);
	sge_at(&s, n, A_LAND + (k % 4) * WLEN, len);
	wr.wr.rdma.rkey = n->peer.rkey;
	wr.wr.rdma.remote_addr = n->peer.addr + A_READ + off;
	return post_wr(n, 0, &wr, (uint64_t)off << 32 | len);
}

/* Fetch-and-add of 1 on the peer's counter, then compare-and-swap of its second word. */
static bool post_atomic_k(struct node *n)
{
	uint64_t k = n->sposted[0];
	bool add = !(k & 1);
	struct ibv_sge s;
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1};

	sge_at(&s, n, A_ATOMIC + (add ? 16u : 24u), 8);
	wr.opcode = add ? IBV_WR_ATOMIC_FETCH_AND_ADD : IBV_WR_ATOMIC_CMP_AND_SWP;
	wr.wr.atomic.rkey = n->peer.rkey;
	wr.wr.atomic.remote_addr = n->peer.addr + A_ATOMIC + (add ? 0u : 8u);
	wr.wr.atomic.compare_add = add ? 1 : n->cs_expect;
	wr.wr.atomic.swap = (k + 1) * 0x9e3779b97f4a7c15ull;
	return post_wr(n, 0, &wr, wr.wr.atomic.swap);
}

static bool post_datagram(struct node *n)
{
	uint64_t k = n->sposted[UDQ];
	uint32_t len = 1u + (uint32_t)(k * 131u % UDLEN);
	struct ibv_sge s;
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND_WITH_IMM};

	fill(n->b.p + A_SRC(0, k % WIN_MAX), len, 0x40000u | (uint32_t)k);
	sge_at(&s, n, A_SRC(0, k % WIN_MAX), len);
	wr.imm_data = htobe32((uint32_t)k);
	wr.wr.ud.ah = n->ah;
	wr.wr.ud.remote_qpn = n->peer.qpn[UDQ];
	wr.wr.ud.remote_qkey = QKEY;
	return post_wr(n, UDQ, &wr, 0);
}

/* A write into the mover's first page, which moves under it: one of two halves. */
static bool post_mwrite(struct node *n)
{
	uint64_t k = n->sposted[0];
	struct ibv_sge s;
	struct ibv_send_wr wr = {.sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE};

	fill(n->b.p + A_SRC(0, 0), WLEN / 2, 0x30000u | (uint32_t)k);
	sge_at(&s, n, A_SRC(0, 0), WLEN / 2);
	wr.wr.rdma.rkey = n->peer.mrkey;
	wr.wr.rdma.remote_addr = n->peer.maddr + (k & 1) * (WLEN / 2);
	return post_wr(n, 0, &wr, k + 1);
}

static uint32_t outstanding(const struct node *n, uint32_t q)
{
	return (uint32_t)(n->sposted[q] - n->sdone[q]);
}

static void init_step(struct node *n)
{
	uint32_t q = n->kind == K_UD ? UDQ : 0, win = n->kind == K_READ ? 4 : window(n);
	bool ok = true;

	for (uint32_t r = 0; r < n->nqp; r++) {
		q = n->kind == K_UD ? UDQ : r;
		while (ok && outstanding(n, q) < win) {
			switch (n->kind) {
			case K_WRITE:
				ok = post_write(n);
				break;
			case K_READ:
				ok = post_read(n);
				break;
			case K_ATOMIC:
				ok = post_atomic_k(n);
				break;
			case K_UD:
				ok = post_datagram(n);
				break;
			case K_REGMR:
				ok = post_mwrite(n);
				break;
			default:
				ok = post_msg(n, q);
				break;
			}
		}
	}
}

/* --- the target's work ------------------------------------------------------- */

/* A refusal with EBUSY: a dead writer stayed inside an execution (README, "Registered memory"). */
static bool busy_ok(struct node *n, int err)
{
	if (err != EBUSY)
		return false;
	n->bd->ebusy++;
	return !n->victim && __atomic_load_n(&n->bd->kill_ns, __ATOMIC_ACQUIRE);
}

/*
 * One move: a page past a gap gets its own MR, then a registration over
 * both joins them with the span of MR_p, whose bytes (which the writer is
 * writing into) move once more. Both go again; the span keeps growing.
 */
static void mover_step(struct node *n)
{
	size_t pg = page_size();
	int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	struct ibv_mr *t, *j;

	if (n->m_end + 2 > MPAGES)
		return;
	t = ibv_reg_mr(n->pd, n->m + (n->m_end + 1) * pg, pg, acc);
	if (!t) {
		CHECK(busy_ok(n, errno), "reg_mr of a page past the span: %s", strerror(errno));
		return;
	}
	j = ibv_reg_mr(n->pd, n->m, (n->m_end + 2) * pg, acc);
	CHECK(j || busy_ok(n, errno), "reg_mr joining two spans: %s", strerror(errno));
	if (j)
		CHECK(ibv_dereg_mr(j) == 0, "dereg the joining MR");
	CHECK(ibv_dereg_mr(t) == 0, "dereg the page's MR");
	if (j) {
		n->m_end += 2;
		__atomic_fetch_add(&n->bd->moves, 1, __ATOMIC_RELAXED);
	}
}

/* Creates and destroys a PD, CQ, SRQ, QP and MR of their own. */
static void churn_step(struct node *n)
{
	size_t pg = page_size();
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = 4, .max_sge = 1}};
	struct ibv_pd *pd = ibv_alloc_pd(n->ctx);
	struct ibv_cq *cq = ibv_create_cq(n->ctx, 16, NULL, NULL, 0);
	struct ibv_srq *srq = pd ? ibv_create_srq(pd, &sa) : NULL;
	struct ibv_qp_init_attr ia = {.send_cq = cq,
				      .recv_cq = cq,
				      .srq = srq,
				      .cap = {.max_send_wr = 4, .max_send_sge = 1},
				      .qp_type = IBV_QPT_RC};
	struct ibv_qp *qp = srq && cq ? ibv_create_qp(pd, &ia) : NULL;
	uint8_t *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *mr = pd && m != MAP_FAILED ? ibv_reg_mr(pd, m, 2 * pg, MR_ALL) : NULL;
	struct ibv_recv_wr rw = {.wr_id = 1}, *bad;

	REQUIRE(qp && mr, "churn: pd %p cq %p srq %p qp %p mr %p: %s", (void *)pd, (void *)cq,
		(void *)srq, (void *)qp, (void *)mr, strerror(errno));
	CHECK(qp_init(qp, ALL_REMOTE) == 0, "churn: QP to INIT");
	CHECK(ibv_post_srq_recv(srq, &rw, &bad) == 0, "churn: post to the SRQ");
	CHECK(ibv_destroy_qp(qp) == 0, "churn: destroy_qp");
	CHECK(ibv_destroy_srq(srq) == 0, "churn: destroy_srq");
	CHECK(ibv_dereg_mr(mr) == 0, "churn: dereg_mr");
	munmap(m, 2 * pg);
	CHECK(ibv_destroy_cq(cq) == 0, "churn: destroy_cq");
	CHECK(ibv_dealloc_pd(pd) == 0, "churn: dealloc_pd");
}

/* --- completions ------------------------------------------------------------- */

static void detect(struct node *n, uint32_t how)
{
	if (n->victim || n->dead)
		return;
	n->dead = true;
	n->bd->detect_ns = dp_now_ns();
	n->bd->how = how;
	CHECK(__atomic_load_n(&n->bd->kill_ns, __ATOMIC_ACQUIRE),
	      "the survivor saw an error before the kill");
}

/* A status a dead peer may cause; anything else is a failure. */
static void bad_status(struct node *n, const struct ibv_wc *wc, bool recv)
{
	bool ok =
	    wc->status == IBV_WC_RETRY_EXC_ERR || wc->status == IBV_WC_WR_FLUSH_ERR ||
	    (recv && wc->status == IBV_WC_GENERAL_ERR && wc->vendor_err == IVRDMA_VERR_SENDER_DIED);

	CHECK(!n->victim && ok, "%s: %s completion wr_id %#llx: %s (vendor_err %#x)",
	      n->victim ? "victim" : "survivor", recv ? "receive" : "send",
	      (unsigned long long)wc->wr_id, ibv_wc_status_str(wc->status), wc->vendor_err);
	detect(n, 1);
}

/* A received message of the send-like kinds: its index, length and pattern. */
static void check_msg(struct node *n, uint32_t q, uint64_t i, const struct ibv_wc *wc)
{
	const uint8_t *p = n->b.p + A_RECV(q, i % RQ);
	uint32_t len = msg_len(n->kind, i), idx;

	memcpy(&idx, p, 4);
	CHECK(wc->opcode == IBV_WC_RECV && wc->byte_len == len && idx == (uint32_t)i,
	      "QP %u message %llu: opcode %d, %u bytes (want %u), index %u", q,
	      (unsigned long long)i, wc->opcode, wc->byte_len, len, idx);
	CHECK(!(i & 1) == !(wc->wc_flags & IBV_WC_WITH_IMM) &&
		  (!(i & 1) || be32toh(wc->imm_data) == (uint32_t)i),
	      "QP %u message %llu: immediate data", q, (unsigned long long)i);
	CHECK(wc->byte_len != len || pat_diff(p + 4, len - 4, msg_seed(q, i)) == len - 4,
	      "QP %u message %llu: data", q, (unsigned long long)i);
}

static void check_recv(struct node *n, uint32_t q, uint64_t i, const struct ibv_wc *wc)
{
	const uint8_t *p;
	uint32_t k = be32toh(wc->imm_data), len;

	if (n->kind == K_WRITE) {
		p = n->b.p + A_WIMM + (i % WS) * WLEN;
		CHECK(wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM && k == (uint32_t)i &&
			  wc->byte_len == WLEN && pat_diff(p, WLEN, 0x10000u | k) == WLEN,
		      "write with imm %llu: opcode %d, imm %u, %u bytes, data",
		      (unsigned long long)i, wc->opcode, k, wc->byte_len);
	} else if (q == UDQ) {
		p = n->b.p + A_UDRECV + (i % RQ) * (UDLEN + 40u) + 40u;
		len = 1u + (uint32_t)((uint64_t)k * 131u % UDLEN);
		CHECK(k + 1ull > n->ud_last && wc->byte_len == len + 40u &&
			  pat_diff(p, len, 0x40000u | k) == len,
		      "datagram %u after %llu: %u bytes, data", k, (unsigned long long)n->ud_last,
		      wc->byte_len);
		n->ud_last = k + 1ull;
	} else {
		check_msg(n, q, i, wc);
	}
}

/* A send-side completion: what a read or an atomic brought back; the victim's progress. */
static void check_send(struct node *n, uint64_t i, const struct ibv_wc *wc)
{
	uint64_t aux = n->aux[0][i % 64], got;

	if (n->kind == K_READ) {
		uint32_t len = (uint32_t)aux, off = (uint32_t)(aux >> 32);

		CHECK(pat_diff_at(n->b.p + A_LAND + (i % 4) * WLEN, len, off, 77) == len,
		      "read %llu: %u bytes at %u", (unsigned long long)i, len, off);
	} else if (n->kind == K_ATOMIC) {
		memcpy(&got, n->b.p + A_ATOMIC + (i & 1 ? 24u : 16u), 8);
		CHECK(got == (i & 1 ? n->cs_expect : n->fa_expect),
		      "atomic %llu (opcode %d) returned %#llx", (unsigned long long)i, wc->opcode,
		      (unsigned long long)got);
		if (i & 1)
			n->cs_expect = aux;
		else
			n->fa_expect++;
		aux = n->fa_expect;
	}
	if (n->victim && (n->kind == K_WRITE || n->kind == K_ATOMIC || n->kind == K_REGMR) && aux)
		__atomic_store_n(&n->bd->progress, aux, __ATOMIC_RELEASE);
}

/* Every completion: in order in its queue, exactly once; data checked; receives posted again. */
static void on_wc(struct node *n, const struct ibv_wc *wc)
{
	uint32_t q = (uint32_t)(wc->wr_id >> 48);
	bool recv = wc->wr_id >> 47 & 1;
	uint64_t i = wc->wr_id & ((1ull << 47) - 1), *done;

	if (q > NQP) {
		CHECK(0, "a completion of no WR of mine: wr_id %#llx",
		      (unsigned long long)wc->wr_id);
		return;
	}
	done = recv ? &n->rdone[q] : &n->sdone[q];
	CHECK(i == *done && i < (recv ? n->rposted[q] : n->sposted[q]),
	      "QP %u %s completion %llu, want %llu", q, recv ? "receive" : "send",
	      (unsigned long long)i, (unsigned long long)*done);
	(*done)++;
	if (wc->status != IBV_WC_SUCCESS) {
		bad_status(n, wc, recv);
	} else if (recv) {
		check_recv(n, q, i, wc);
		if (running(n))
			post_recv(n, q);
	} else if (q == 0) {
		check_send(n, i, wc);
	}
}

static void pump_async(struct node *n)
{
	struct ibv_async_event ev;

	while (async_pending(n->ctx, 0) && ibv_get_async_event(n->ctx, &ev) == 0) {
		enum ibv_event_type t = ev.event_type;

		ibv_ack_async_event(&ev);
		if (t == IBV_EVENT_COMM_EST || t == IBV_EVENT_PORT_ACTIVE)
			continue;
		CHECK(!n->victim && t == IBV_EVENT_QP_FATAL, "%s: async event %s",
		      n->victim ? "victim" : "survivor", ibv_event_type_str(t));
		detect(n, 2);
	}
}

static void pump(struct node *n)
{
	struct ibv_wc wc[32];
	int got = ibv_poll_cq(n->cq, 32, wc);

	REQUIRE(got >= 0, "poll_cq: %d", got);
	for (int i = 0; i < got; i++)
		on_wc(n, &wc[i]);
	pump_async(n);
}

/* --- one side of a trial ------------------------------------------------------ */

/*
 * Until killed (the victim) or until the death is seen (the survivor), or
 * the hang bound after the kill has passed.
 */
static void run(struct node *n)
{
	for (;;) {
		uint64_t kill;

		if (running(n) && n->init)
			init_step(n);
		else if (running(n) && n->kind == K_REGMR)
			mover_step(n);
		else if (running(n) && n->kind == K_DESTROY)
			churn_step(n);
		pump(n);
		if (n->victim) {
			n->bd->victim_fail = (uint32_t)check_failures;
			continue;
		}
		if (n->dead)
			return;
		kill = __atomic_load_n(&n->bd->kill_ns, __ATOMIC_ACQUIRE);
		if (kill && dp_now_ns() > kill + HANG_S * 1000000000ull) {
			CHECK(0, "no error completion or async event within %u s of the kill",
			      HANG_S);
			return;
		}
	}
}

static bool all_done(const struct node *n)
{
	for (uint32_t q = 0; q <= NQP; q++)
		if (n->sdone[q] != n->sposted[q] || n->rdone[q] != n->rposted[q])
			return false;
	return true;
}

/* What the dead initiator wrote last into my memory is all there. */
static void check_left(struct node *n)
{
	uint64_t pr = __atomic_load_n(&n->bd->progress, __ATOMIC_ACQUIRE), got;
	const uint8_t *p;

	if (n->kind == K_WRITE && pr) {
		p = n->b.p + A_PLAIN + ((pr - 1) & 1) * WLEN;
		CHECK(pat_diff(p, WLEN, 0x20000u | (uint32_t)(pr - 1)) == WLEN,
		      "the dead writer's last plain write (%llu)", (unsigned long long)pr - 1);
	} else if (n->kind == K_REGMR && pr) {
		p = n->m + ((pr - 1) & 1) * (WLEN / 2);
		CHECK(pat_diff(p, WLEN / 2, 0x30000u | (uint32_t)(pr - 1)) == WLEN / 2,
		      "the dead writer's last write (%llu) into moved pages",
		      (unsigned long long)pr - 1);
	} else if (n->kind == K_ATOMIC) {
		memcpy(&got, n->b.p + A_ATOMIC, 8);
		CHECK(got == pr || got == pr + 1, "counter %llu after %llu adds completed",
		      (unsigned long long)got, (unsigned long long)pr);
	}
	CHECK(pat_diff(n->b.p + A_READ, RLEN, 77) == RLEN, "the read source is unchanged");
}

/* The survivor: every QP to ERR, every WR completed exactly once, then the checks. */
static void finish(struct node *n)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};
	uint64_t end = dp_now_ns() + HANG_S * 1000000000ull, wrs = 0;

	/* A datagram QP serves any sender: a dead one does not fail it. */
	CHECK(!n->qp[UDQ] || qp_state(n->qp[UDQ]) == IBV_QPS_RTS, "the UD QP is still in RTS");
	for (uint32_t q = 0; q <= NQP; q++)
		if (n->qp[q])
			CHECK(ibv_modify_qp(n->qp[q], &a, IBV_QP_STATE) == 0, "QP %u to ERR", q);
	while (!all_done(n) && dp_now_ns() < end)
		pump(n);
	for (uint32_t q = 0; q <= NQP; q++) {
		CHECK(n->sdone[q] == n->sposted[q] && n->rdone[q] == n->rposted[q],
		      "QP %u: %llu of %llu sends and %llu of %llu receives completed", q,
		      (unsigned long long)n->sdone[q], (unsigned long long)n->sposted[q],
		      (unsigned long long)n->rdone[q], (unsigned long long)n->rposted[q]);
		wrs += n->sposted[q] + n->rposted[q];
	}
	CHECK(cq_empty(n->cq), "no completion more than the WRs");
	pump_async(n);
	if (!n->init)
		check_left(n);
	n->bd->wrs = wrs;
}

static void node_close(struct node *n)
{
	if (n->ah)
		CHECK(ibv_destroy_ah(n->ah) == 0, "destroy_ah");
	for (uint32_t q = 0; q <= NQP; q++)
		if (n->qp[q])
			CHECK(ibv_destroy_qp(n->qp[q]) == 0, "destroy QP %u", q);
	if (n->mr_p) {
		CHECK(ibv_dereg_mr(n->mr_p) == 0, "dereg MR_p");
		munmap(n->m, MPAGES * page_size());
	}
	buf_free(&n->b);
	CHECK(ibv_destroy_cq(n->cq) == 0, "destroy_cq");
	CHECK(ibv_dealloc_pd(n->pd) == 0, "dealloc_pd");
	CHECK(ibv_close_device(n->ctx) == 0, "close_device");
}

static int child(struct board *bd, enum kind k, bool init, bool victim, int sock, int ctl)
{
	struct node n = {.bd = bd, .kind = k, .init = init, .victim = victim};
	char c = 'R';

	node_open(&n);
	node_connect(&n, sock);
	dp_xfer(ctl, &c, 1, true);
	run(&n); /* the victim never comes back */
	finish(&n);
	node_close(&n);
	return check_failures ? 1 : 0; /* each failure is on stderr; the parent counts trials */
}

/* --- the parent ----------------------------------------------------------------- */

/* Until ivrdmad has reclaimed everything of the trial (bounded: a hang detector). */
static bool back_to(const char *region, const struct region_usage *base)
{
	uint64_t end = dp_now_ns() + HANG_S * 1000000000ull;
	struct region_usage u;

	do {
		u = region_usage(region);
		if (!memcmp(&u, base, sizeof(u)))
			return true;
		usleep(2000);
	} while (dp_now_ns() < end);
	region_usage_print("left in the region", &u);
	region_usage_print("before the trials", base);
	return false;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ x >> 33;
}

/* The kill's delay after both sides run: 0 to DELAY_US, more often short. */
static uint32_t delay_of(uint64_t seed, uint32_t t)
{
	uint64_t r = mix(seed ^ mix(t + 1ull)) % 1000u;

	return (uint32_t)(r * r * (DELAY_US / 1000u) / 1000u);
}

static pid_t spawn(struct board *bd, enum kind k, bool init, bool victim, int sock, int other,
		   int *ctl)
{
	int cv[2];
	pid_t pid;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(cv[0]);
		close(other);
		/* exit, not _exit: under ASan, LeakSanitizer checks the survivor too. */
		exit(child(bd, k, init, victim, sock, cv[1]));
	}
	close(cv[1]);
	*ctl = cv[0];
	return pid;
}

static bool ready(int ctl)
{
	struct pollfd p = {.fd = ctl, .events = POLLIN};
	char c;

	return poll(&p, 1, 60000) == 1 && read(ctl, &c, 1) == 1 && c == 'R';
}

/* The survivor's exit, bounded; a hung one is killed and fails the trial. */
static int reap(pid_t pid)
{
	uint64_t end = dp_now_ns() + 3 * HANG_S * 1000000000ull;
	int st = 0;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (dp_now_ns() > end) {
			fprintf(stderr, "the survivor hangs: killed\n");
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(1000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct tally {
	uint32_t trials[2], passed[2], by_wc, by_event;
	uint64_t wrs, ebusy, moves, worst_ms;
};

/* One trial: both sides run, the victim is killed, the survivor and the region checked. */
static bool trial(struct board *bd, uint32_t t, uint64_t seed, const char *region,
		  const struct region_usage *base, struct tally *tl)
{
	enum kind k = t % NKINDS;
	bool vinit = (t / NKINDS) % 2 == 0, ok, back;
	uint32_t delay = delay_of(seed, t);
	int sv[2], cs, cv, st, rc;
	pid_t ps, pv;
	uint64_t ms;

	memset(bd, 0, sizeof(*bd));
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	ps = spawn(bd, k, !vinit, false, sv[0], sv[1], &cs);
	pv = spawn(bd, k, vinit, true, sv[1], sv[0], &cv);
	close(sv[0]);
	close(sv[1]);
	ok = ready(cs) && ready(cv);
	CHECK(ok, "trial %u: both sides connected and running", t);
	usleep(delay);
	__atomic_store_n(&bd->kill_ns, dp_now_ns(), __ATOMIC_RELEASE);
	kill(pv, SIGKILL);
	REQUIRE(waitpid(pv, &st, 0) == pv, "waitpid victim");
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && bd->victim_fail == 0,
	      "trial %u: the victim ran without failing until killed (status %#x, %u checks "
	      "failed)",
	      t, st, bd->victim_fail);
	ok = ok && WIFSIGNALED(st) && bd->victim_fail == 0;
	rc = reap(ps);
	CHECK(rc == 0, "trial %u: the survivor's checks (status %d)", t, rc);
	ok = ok && rc == 0;
	back = back_to(region, base);
	CHECK(back, "trial %u: the region's usage is back where it was", t);
	ok = ok && back;
	close(cs);
	close(cv);
	ms = bd->detect_ns > bd->kill_ns ? (bd->detect_ns - bd->kill_ns) / 1000000u : 0;
	printf("trial %3u %-7s victim %-9s killed after %6u us: seen by %s after %llu ms, %llu "
	       "WRs, %s\n",
	       t, kind_name[k], vinit ? "initiator" : "target", delay,
	       bd->how == 1   ? "an error completion"
	       : bd->how == 2 ? "an async event"
			      : "nothing",
	       (unsigned long long)ms, (unsigned long long)bd->wrs, ok ? "ok" : "FAILED");
	tl->trials[vinit]++;
	tl->passed[vinit] += ok;
	tl->by_wc += bd->how == 1;
	tl->by_event += bd->how == 2;
	tl->wrs += bd->wrs;
	tl->ebusy += bd->ebusy;
	tl->moves += bd->moves;
	tl->worst_ms = ms > tl->worst_ms ? ms : tl->worst_ms;
	return ok;
}

/* After all the kills, a new process still gets a write and a read through ivrdmad. */
static int still_serving(void)
{
	struct ep a, b;
	struct buf sa, sb;
	const uint32_t len = 8192;

	ep_open(&a);
	ep_open(&b);
	buf_new(&sa, a.pd, 2 * len, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&sb, b.pd, len, MR_ALL);
	pair_connect(&a, &b, IBV_QPT_RC, &opts, &opts);
	fill(sa.p, len, 99);
	CHECK(post1(a.qp, 1, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, sa.p, len, sa.mr->lkey,
		    (uintptr_t)sb.p, sb.mr->rkey) == 0 &&
		  post1(a.qp, 2, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED, sa.p + len, len, sa.mr->lkey,
			(uintptr_t)sb.p, sb.mr->rkey) == 0,
	      "post a write and a read");
	EXPECT_WC(a.cq, IBV_WC_SUCCESS, 1, IBV_WC_RDMA_WRITE, "write after the trials");
	EXPECT_WC(a.cq, IBV_WC_SUCCESS, 2, IBV_WC_RDMA_READ, "read after the trials");
	CHECK(pat_diff(sb.p, len, 99) == len && pat_diff(sa.p + len, len, 99) == len,
	      "the bytes made the trip");
	buf_free(&sa);
	buf_free(&sb);
	ep_close(&a);
	ep_close(&b);
	return check_summary();
}

static void print_table(const struct tally *tl)
{
	printf("\n%-8s %-22s %-22s %9s %6s %6s\n", "kind", "victim initiator", "victim target",
	       "WRs", "moves", "EBUSY");
	for (uint32_t k = 0; k < NKINDS; k++)
		printf("%-8s %3u trials, %3u passed  %3u trials, %3u passed  %9llu %6llu %6llu\n",
		       kind_name[k], tl[k].trials[1], tl[k].passed[1], tl[k].trials[0],
		       tl[k].passed[0], (unsigned long long)tl[k].wrs,
		       (unsigned long long)tl[k].moves, (unsigned long long)tl[k].ebusy);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

int main(int argc, char **argv)
{
	struct tally tl[NKINDS] = {0};
	struct board *bd;
	struct region_usage base;
	uint32_t trials = argc == 3 ? (uint32_t)strtoul(argv[1], NULL, 0) : 0, passed = 0, ran = 0;
	uint64_t seed =
	    env_u64("IVRDMA_KILL_SEED", mix(dp_now_ns() ^ (uint64_t)getpid()) & 0xffffffffu);
	uint64_t only = env_u64("IVRDMA_KILL_ONLY", UINT64_MAX), seen = 0, worst = 0;
	int st;
	pid_t pid;

	REQUIRE(argc == 3 && trials > 0, "usage: test_provider_kill_trials TRIALS REGION_FILE");
	setvbuf(stdout, NULL, _IOLBF, 0);
	bd = mmap(NULL, sizeof(*bd), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(bd != MAP_FAILED, "mmap the board");
	printf("seed %llu (IVRDMA_KILL_SEED=%llu IVRDMA_KILL_ONLY=<trial> reproduces one)\n",
	       (unsigned long long)seed, (unsigned long long)seed);
	base = region_usage(argv[2]);
	region_usage_print("before the trials", &base);
	for (uint32_t t = 0; t < trials; t++) {
		if (only != UINT64_MAX && t != only)
			continue;
		passed += trial(bd, t, seed, argv[2], &base, &tl[t % NKINDS]);
		ran++;
	}
	for (uint32_t k = 0; k < NKINDS; k++) {
		seen += tl[k].by_wc + tl[k].by_event;
		worst = tl[k].worst_ms > worst ? tl[k].worst_ms : worst;
	}
	print_table(tl);
	printf("%u of %u trials passed; the death seen in %llu (the longest after %llu ms)\n",
	       passed, ran, (unsigned long long)seen, (unsigned long long)worst);
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0)
		exit(still_serving());
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "ivrdmad still serves a new process (status %#x)", st);
	CHECK(back_to(argv[2], &base), "the region's usage is back where it was at the end");
	CHECK(passed == ran, "%u trials failed", ran - passed);
	return check_summary();
}
