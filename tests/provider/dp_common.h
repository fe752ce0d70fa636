/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of the data-path tests: endpoints (context, PD, CQ, QP)
 * brought to RTS with plain libibverbs, registered buffers, byte patterns,
 * and polling with a liveness deadline (never a timing assertion).
 */
#ifndef IVRDMA_DP_COMMON_H
#define IVRDMA_DP_COMMON_H

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include "check.h"

#define DP_DEADLINE_S 30 /* liveness only: a hung provider fails instead of hanging */
#define DP_CQE	      1024

struct ep {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq; /* send and receive completions */
	struct ibv_qp *qp;
	uint16_t lid;
};

struct qpopts {
	int access;	       /* qp_access_flags */
	uint8_t rnr_retry;     /* 0..7 */
	uint8_t retry_cnt;     /* 0..7 */
	uint8_t timeout;       /* IB encoding */
	uint8_t min_rnr_timer; /* IB encoding */
	uint32_t max_send_wr;  /* 0: 64 */
	uint32_t max_inline;   /* max_inline_data */
	uint32_t max_sge;      /* send and receive SGEs; 0: 8 */
	bool sig_all;
};

#define ALL_REMOTE (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC)
#define MR_ALL	   (IBV_ACCESS_LOCAL_WRITE | ALL_REMOTE)

/* CLOCK_MONOTONIC in ns. */
static inline uint64_t dp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Exactly n bytes to (out) or from a test's control socket, or the test fails. */
static inline void dp_xfer(int fd, void *p, size_t n, bool out)
{
	ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

	REQUIRE(r == (ssize_t)n, "socket %s: %zd (%s)", out ? "write" : "read", r, strerror(errno));
}

static inline struct ibv_context *dp_open(void)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	REQUIRE(list, "ibv_get_device_list: %s", strerror(errno));
	for (int i = 0; list[i] && !ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), "ivrdma0"))
			ctx = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	REQUIRE(ctx, "open ivrdma0: %s", strerror(errno));
	return ctx;
}

static inline void ep_open(struct ep *e)
{
	struct ibv_port_attr pa;

	memset(e, 0, sizeof(*e));
	e->ctx = dp_open();
	e->pd = ibv_alloc_pd(e->ctx);
	e->cq = ibv_create_cq(e->ctx, DP_CQE, NULL, NULL, 0);
	REQUIRE(e->pd && e->cq, "alloc_pd / create_cq: %s", strerror(errno));
	REQUIRE(ibv_query_port(e->ctx, 1, &pa) == 0, "query_port");
	e->lid = pa.lid;
}

static inline void ep_close(struct ep *e)
{
	if (e->qp)
		CHECK(ibv_destroy_qp(e->qp) == 0, "destroy_qp");
	CHECK(ibv_destroy_cq(e->cq) == 0, "destroy_cq");
	CHECK(ibv_dealloc_pd(e->pd) == 0, "dealloc_pd");
	CHECK(ibv_close_device(e->ctx) == 0, "close_device");
}

static inline struct ibv_qp *ep_qp(struct ep *e, enum ibv_qp_type type, const struct qpopts *o)
{
	struct ibv_qp_init_attr ia = {
	    .send_cq = e->cq,
	    .recv_cq = e->cq,
	    .cap = {.max_send_wr = o->max_send_wr ? o->max_send_wr : 64,
		    .max_recv_wr = 64,
		    .max_send_sge = o->max_sge ? o->max_sge : 8,
		    .max_recv_sge = o->max_sge ? o->max_sge : 8,
		    .max_inline_data = o->max_inline},
	    .qp_type = type,
	    .sq_sig_all = o->sig_all,
	};

	if (e->qp)
		CHECK(ibv_destroy_qp(e->qp) == 0, "destroy_qp");
	e->qp = ibv_create_qp(e->pd, &ia);
	REQUIRE(e->qp, "create_qp: %s", strerror(errno));
	return e->qp;
}

/* In place of e's QP, an RC QP with the wr_* API for 'ops' (ibv_create_qp_ex). */
static inline struct ibv_qp *ep_qp_ex(struct ep *e, uint64_t ops)
{
	struct ibv_qp_init_attr_ex a = {
	    .qp_type = IBV_QPT_RC,
	    .send_cq = e->cq,
	    .recv_cq = e->cq,
	    .cap = {.max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1},
	    .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
	    .pd = e->pd,
	    .send_ops_flags = ops,
	};

	if (e->qp)
		CHECK(ibv_destroy_qp(e->qp) == 0, "destroy_qp");
	e->qp = ibv_create_qp_ex(e->ctx, &a);
	REQUIRE(e->qp, "create_qp_ex for ops %#llx: %s", (unsigned long long)ops, strerror(errno));
	return e->qp;
}

static inline int qp_init(struct ibv_qp *qp, int access)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1, .qp_access_flags = access};

	return ibv_modify_qp(qp, &a,
			     IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static inline int qp_rtr(struct ibv_qp *qp, uint32_t dqpn, uint16_t dlid, const struct qpopts *o)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_RTR,
	    .path_mtu = IBV_MTU_4096,
	    .dest_qp_num = dqpn,
	    .rq_psn = 0,
	    .max_dest_rd_atomic = 1,
	    .min_rnr_timer = o->min_rnr_timer,
	    .ah_attr = {.dlid = dlid, .port_num = 1},
	};
	int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN;

	if (qp->qp_type == IBV_QPT_RC || qp->qp_type == IBV_QPT_XRC_RECV) /* responders */
		mask |= IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
	return ibv_modify_qp(qp, &a, mask);
}

static inline int qp_rts(struct ibv_qp *qp, const struct qpopts *o)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_RTS,
	    .sq_psn = 0,
	    .timeout = o->timeout,
	    .retry_cnt = o->retry_cnt,
	    .rnr_retry = o->rnr_retry,
	    .max_rd_atomic = 1,
	};
	int mask = IBV_QP_STATE | IBV_QP_SQ_PSN;

	if (qp->qp_type == IBV_QPT_RC || qp->qp_type == IBV_QPT_XRC_SEND) /* requesters */
		mask |=
		    IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
	else if (qp->qp_type == IBV_QPT_XRC_RECV)
		mask |= IBV_QP_TIMEOUT;
	return ibv_modify_qp(qp, &a, mask);
}

/* A UD QP through INIT (port 1, Q_Key qkey), RTR and RTS. */
static inline void ud_up(struct ibv_qp *qp, uint32_t qkey)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = 1, .qkey = qkey};

	REQUIRE(ibv_modify_qp(qp, &a,
			      IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY) == 0,
		"UD INIT");
	a.qp_state = IBV_QPS_RTR;
	REQUIRE(ibv_modify_qp(qp, &a, IBV_QP_STATE) == 0, "UD RTR");
	a.qp_state = IBV_QPS_RTS;
	REQUIRE(ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN) == 0, "UD RTS");
}

/* INIT, RTR towards (dqpn, dlid), RTS. */
static inline void qp_connect(struct ibv_qp *qp, uint32_t dqpn, uint16_t dlid,
			      const struct qpopts *o)
{
	REQUIRE(qp_init(qp, o->access) == 0, "modify_qp INIT");
	REQUIRE(qp_rtr(qp, dqpn, dlid, o) == 0, "modify_qp RTR");
	REQUIRE(qp_rts(qp, o) == 0, "modify_qp RTS");
}

/* Fresh QPs on a (initiator) and b (target), connected to each other. */
static inline void pair_connect(struct ep *a, struct ep *b, enum ibv_qp_type type,
				const struct qpopts *oa, const struct qpopts *ob)
{
	ep_qp(a, type, oa);
	ep_qp(b, type, ob);
	qp_connect(a->qp, b->qp->qp_num, b->lid, oa);
	qp_connect(b->qp, a->qp->qp_num, a->lid, ob);
}

static inline enum ibv_qp_state qp_state(struct ibv_qp *qp)
{
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;

	if (ibv_query_qp(qp, &a, IBV_QP_STATE, &ia))
		return (enum ibv_qp_state) - 1;
	return a.qp_state;
}

/* --- buffers ------------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len, maplen;
	struct ibv_mr *mr;
};

static inline size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* A private anonymous mapping of at least len bytes, registered whole with 'access'. */
static inline void buf_new(struct buf *b, struct ibv_pd *pd, size_t len, int access)
{
	size_t pg = page_size();

	b->len = len;
	b->maplen = (len + pg) & ~(pg - 1); /* at least one byte past len */
	b->p = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(b->p != MAP_FAILED, "mmap %zu: %s", b->maplen, strerror(errno));
	memset(b->p, 0xee, b->maplen);
	b->mr = pd ? ibv_reg_mr(pd, b->p, b->maplen, access) : NULL;
	REQUIRE(!pd || b->mr, "reg_mr %zu bytes: %s", b->maplen, strerror(errno));
}

static inline void buf_free(struct buf *b)
{
	if (b->mr)
		CHECK(ibv_dereg_mr(b->mr) == 0, "dereg_mr");
	munmap(b->p, b->maplen);
	memset(b, 0, sizeof(*b));
}

static inline uint8_t pat(size_t i, uint32_t seed)
{
	uint32_t x = (uint32_t)i * 2654435761u ^ seed * 40503u ^ (uint32_t)(i >> 13);

	return (uint8_t)(x >> 11 ^ x);
}

static inline void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pat(i, seed);
}

/* Index of the first byte that differs from the pattern, or n. */
static inline size_t pat_diff(const uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pat(i, seed))
			return i;
	return n;
}

/* Index of the first byte that is not 'v', or n. */
static inline size_t all_diff(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return i;
	return n;
}

/* --- completions --------------------------------------------------------- */

static inline uint64_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* One completion; false (and a failed check) if none came before the deadline. */
static inline bool poll1(struct ibv_cq *cq, struct ibv_wc *wc)
{
	uint64_t end = now_s() + DP_DEADLINE_S;

	for (;;) {
		int n = ibv_poll_cq(cq, 1, wc);

		if (n == 1)
			return true;
		if (n < 0)
			CHECK(0, "ibv_poll_cq returned %d", n);
		if (n < 0 || now_s() > end) {
			CHECK(0, "no completion within the liveness deadline");
			memset(wc, 0, sizeof(*wc));
			wc->status = (enum ibv_wc_status) - 1;
			return false;
		}
	}
}

/* Nothing more is queued (the data path is synchronous: no waiting needed). */
static inline bool cq_empty(struct ibv_cq *cq)
{
	struct ibv_wc wc;
	int n = ibv_poll_cq(cq, 1, &wc);

	if (n)
		fprintf(stderr, "unexpected completion: wr_id %llu status %s opcode %d\n",
			(unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status), wc.opcode);
	return n == 0;
}

/* Expects the next completion: status, wr_id and opcode (opcode < 0: any). */
/* An async event of 'ctx' is there to read within 'ms' milliseconds. */
static inline bool async_pending(struct ibv_context *ctx, int ms)
{
	struct pollfd pfd = {.fd = ctx->async_fd, .events = POLLIN};

	return poll(&pfd, 1, ms) == 1;
}

/*
 * Waits (bounded) for the next async event of 'ctx'; true if it is 'type'
 * for QP 'qp' (NULL: a port event). Acknowledges it.
 */
static inline bool expect_async(struct ibv_context *ctx, enum ibv_event_type type,
				struct ibv_qp *qp)
{
	struct ibv_async_event ev;
	bool ok;

	if (!async_pending(ctx, DP_DEADLINE_S * 1000) || ibv_get_async_event(ctx, &ev)) {
		fprintf(stderr, "no async event (wanted %s)\n", ibv_event_type_str(type));
		return false;
	}
	ok = ev.event_type == type && (!qp || ev.element.qp == qp);
	if (!ok)
		fprintf(stderr, "async event %s, wanted %s\n", ibv_event_type_str(ev.event_type),
			ibv_event_type_str(type));
	ibv_ack_async_event(&ev);
	return ok;
}

#define EXPECT_WC(cq, st, id, op, what)                                                            \
	do {                                                                                       \
		struct ibv_wc w_;                                                                  \
		poll1((cq), &w_);                                                                  \
		CHECK(w_.status == (st) && w_.wr_id == (uint64_t)(id) &&                           \
			  ((int)(op) < 0 || w_.opcode == (enum ibv_wc_opcode)(op)),                \
		      "%s: got status %s wr_id %llu opcode %d, want %s wr_id %llu opcode %d",      \
		      what, ibv_wc_status_str(w_.status), (unsigned long long)w_.wr_id, w_.opcode, \
		      ibv_wc_status_str(st), (unsigned long long)(id), (int)(op));                 \
	} while (0)

static inline int post_recv1(struct ibv_qp *qp, uint64_t id, void *addr, uint32_t len,
			     uint32_t lkey)
{
	struct ibv_sge s = {.addr = (uintptr_t)addr, .length = len, .lkey = lkey};
	struct ibv_recv_wr wr = {.wr_id = id, .sg_list = &s, .num_sge = len ? 1 : 0}, *bad;

	return ibv_post_recv(qp, &wr, &bad);
}

/* One work request with one SGE (none if len is 0). */
static inline int post1(struct ibv_qp *qp, uint64_t id, enum ibv_wr_opcode op, unsigned int flags,
			void *addr, uint32_t len, uint32_t lkey, uint64_t raddr, uint32_t rkey)
{
	struct ibv_sge s = {.addr = (uintptr_t)addr, .length = len, .lkey = lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = len ? 1 : 0,
				 .opcode = op,
				 .send_flags = flags},
			   *bad = NULL;

	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	return ibv_post_send(qp, &wr, &bad);
}

static inline int post_atomic(struct ibv_qp *qp, uint64_t id, enum ibv_wr_opcode op, void *local,
			      uint32_t lkey, uint64_t raddr, uint32_t rkey, uint64_t cmp_add,
			      uint64_t swap)
{
	struct ibv_sge s = {.addr = (uintptr_t)local, .length = 8, .lkey = lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &s,
				 .num_sge = 1,
				 .opcode = op,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad = NULL;

	wr.wr.atomic.remote_addr = raddr;
	wr.wr.atomic.rkey = rkey;
	wr.wr.atomic.compare_add = cmp_add;
	wr.wr.atomic.swap = swap;
	return ibv_post_send(qp, &wr, &bad);
}

#endif
