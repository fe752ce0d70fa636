// SPDX-License-Identifier: MIT
/*
 * ibv_resize_cq on a CQ that QPs use, with completions in flight (the
 * protocol is "Resizing" in common/ivrdma_layout.h).
 *
 * traffic: another process sends into my RC QP (its provider writes my
 * receive completions into my CQ), my QP writes into its memory (my own
 * send completions, into the same CQ), and I resize the CQ up and down
 * every few completions while both run, polling with ibv_poll_cq or with
 * the ibv_cq_ex API. Every completion must arrive once, in order per
 * queue, with its bytes; the other process checks the bytes I wrote.
 * refusals: sizes out of range, and a size the unpolled completions do
 * not fit in (EINVAL), the completions staying where they were.
 */
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dp_common.h"

enum {
	MSGS = 20000,	   /* sends from the other process */
	WRITES = 5000,	   /* RDMA writes of mine */
	RECV_DEPTH = 64,   /* receives I keep posted */
	SEND_DEPTH = 32,   /* writes (or sends) outstanding */
	SLOT = 4096,	   /* a receive buffer */
	WSLOT = 256,	   /* a write */
	RESIZE_EVERY = 97, /* completions polled between resizes */
};

struct info {
	uint32_t qpn, rkey;
	uint16_t lid;
	uint64_t addr;
};

static const struct qpopts opts = {.access = MR_ALL,
				   .rnr_retry = 7, /* wait for my receives as long as it takes */
				   .retry_cnt = 7,
				   .timeout = 14,
				   .min_rnr_timer = 1,
				   .max_send_wr = SEND_DEPTH};

static void xfer(int fd, void *p, size_t n, bool out)
{
	ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

	REQUIRE(r == (ssize_t)n, "socketpair %s: %zd", out ? "write" : "read", r);
}

static uint32_t msg_len(uint32_t seq)
{
	return 1 + seq * 37u % SLOT;
}

/* Exchanges QP numbers, LIDs and a buffer with the other process, and connects. */
static struct info meet(int sock, struct ep *e, const struct buf *b, bool first)
{
	struct info me = {e->qp->qp_num, b->mr->rkey, e->lid, (uintptr_t)b->p}, peer;

	xfer(sock, first ? (void *)&me : (void *)&peer, sizeof(me), first);
	xfer(sock, first ? (void *)&peer : (void *)&me, sizeof(me), !first);
	qp_connect(e->qp, peer.qpn, peer.lid, &opts);
	return peer;
}

/* The other process: MSGS sends with immediate data, each its own length and bytes. */
static int sender(int sock)
{
	struct ep e;
	struct buf b, t;
	uint32_t posted = 0, done = 0;
	char c;

	ep_open(&e);
	buf_new(&b, e.pd, SEND_DEPTH * 2 * SLOT, MR_ALL);
	buf_new(&t, e.pd, 64 * WSLOT, MR_ALL); /* where the CQ's owner writes */
	ep_qp(&e, IBV_QPT_RC, &opts);
	meet(sock, &e, &t, true);
	xfer(sock, &c, 1, false); /* its receives are posted */
	while (done < MSGS) {
		struct ibv_wc wc;

		while (posted < MSGS && posted - done < SEND_DEPTH) {
			uint8_t *p = b.p + (posted % (SEND_DEPTH * 2)) * SLOT;
			struct ibv_sge s = {(uintptr_t)p, msg_len(posted), b.mr->lkey};
			struct ibv_send_wr wr = {.wr_id = posted,
						 .sg_list = &s,
						 .num_sge = 1,
						 .opcode = IBV_WR_SEND_WITH_IMM,
						 .send_flags = IBV_SEND_SIGNALED,
						 .imm_data = htonl(posted)},
					   *bad;

			fill(p, msg_len(posted), posted);
			REQUIRE(ibv_post_send(e.qp, &wr, &bad) == 0, "post send %u", posted);
			posted++;
		}
		if (!poll1(e.cq, &wc))
			break;
		CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == done, "send %u: %s wr_id %llu",
		      done, ibv_wc_status_str(wc.status), (unsigned long long)wc.wr_id);
		done++;
	}
	xfer(sock, &c, 1, false); /* the owner polled everything: its writes are done */
	for (uint32_t j = 0; j < 64; j++) {
		uint32_t w = (WRITES - 1) - ((WRITES - 1 - j) % 64); /* the last write to slot j */

		CHECK(pat_diff(t.p + j * WSLOT, WSLOT, 1000000 + w) == WSLOT,
		      "slot %u holds write %u", j, w);
	}
	buf_free(&b);
	buf_free(&t);
	ep_close(&e);
	return check_summary();
}

/* Polls up to 'max' completions, with ibv_poll_cq or (cx) the ibv_cq_ex API. */
static int poll_some(struct ibv_cq *cq, struct ibv_cq_ex *cx, struct ibv_wc *wc, int max)
{
	struct ibv_poll_cq_attr attr = {0};
	int n = 0, rc;

	if (!cx)
		return ibv_poll_cq(cq, max, wc);
	rc = ibv_start_poll(cx, &attr);
	if (rc)
		return rc == ENOENT ? 0 : -rc;
	do {
		wc[n++] = (struct ibv_wc){.wr_id = cx->wr_id,
					  .status = cx->status,
					  .opcode = ibv_wc_read_opcode(cx),
					  .byte_len = ibv_wc_read_byte_len(cx),
					  .imm_data = ibv_wc_read_imm_data(cx),
					  .qp_num = ibv_wc_read_qp_num(cx)};
	} while (n < max && ibv_next_poll(cx) == 0);
	ibv_end_poll(cx);
	return n;
}

struct owner {
	struct ep e;
	struct ibv_cq_ex *cx;
	struct buf rbuf, wbuf;
	struct info peer;
	uint32_t recvs, writes_posted, writes_done, resizes, polled;
	uint64_t resize_ns; /* time spent in ibv_resize_cq, for the log */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void post_writes(struct owner *o)
{
	while (o->writes_posted < WRITES && o->writes_posted - o->writes_done < SEND_DEPTH) {
		uint32_t w = o->writes_posted++;
		uint8_t *src = o->wbuf.p + (w % SEND_DEPTH) * WSLOT;

		fill(src, WSLOT, 1000000 + w);
		REQUIRE(post1(o->e.qp, 1ull << 32 | w, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, src,
			      WSLOT, o->wbuf.mr->lkey, o->peer.addr + (w % 64) * WSLOT,
			      o->peer.rkey) == 0,
			"post write %u", w);
	}
}

/* One completion of mine: a receive from the sender (reposted), or a write. */
static void completed(struct owner *o, const struct ibv_wc *wc)
{
	if (wc->opcode & IBV_WC_RECV) {
		uint32_t seq = ntohl(wc->imm_data), slot = (uint32_t)wc->wr_id;
		uint8_t *p = o->rbuf.p + slot * SLOT;

		CHECK(wc->status == IBV_WC_SUCCESS && seq == o->recvs &&
			  wc->byte_len == msg_len(seq) &&
			  pat_diff(p, msg_len(seq), seq) == msg_len(seq),
		      "receive %u: %s seq %u len %u", o->recvs, ibv_wc_status_str(wc->status), seq,
		      wc->byte_len);
		o->recvs++;
		REQUIRE(post_recv1(o->e.qp, slot, p, SLOT, o->rbuf.mr->lkey) == 0, "repost");
		return;
	}
	CHECK(wc->status == IBV_WC_SUCCESS && wc->opcode == IBV_WC_RDMA_WRITE &&
		  wc->wr_id == (1ull << 32 | o->writes_done),
	      "write %u: %s wr_id %#llx", o->writes_done, ibv_wc_status_str(wc->status),
	      (unsigned long long)wc->wr_id);
	o->writes_done++;
}

/* Grows and shrinks, never below what may be outstanding (RECV_DEPTH + SEND_DEPTH). */
static void resize_now(struct owner *o)
{
	static const int sizes[] = {128, 1024, 100, 4096, 256, 97};
	int want = sizes[o->resizes % (sizeof(sizes) / sizeof(sizes[0]))];
	uint64_t t0 = now_ns();
	int rc = ibv_resize_cq(o->e.cq, want);

	o->resize_ns += now_ns() - t0;
	CHECK(rc == 0 && o->e.cq->cqe >= want, "resize %u to %d: %s (cqe %d)", o->resizes, want,
	      strerror(rc), o->e.cq->cqe);
	o->resizes++;
}

static void owner_open(struct owner *o, bool ex)
{
	struct ibv_cq_init_attr_ex ca = {.cqe = 128,
					 .wc_flags = IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_IMM |
						     IBV_WC_EX_WITH_QP_NUM};
	struct ibv_qp_init_attr ia = {.cap = {.max_send_wr = SEND_DEPTH,
					      .max_recv_wr = RECV_DEPTH,
					      .max_send_sge = 1,
					      .max_recv_sge = 1},
				      .qp_type = IBV_QPT_RC};

	memset(o, 0, sizeof(*o));
	ep_open(&o->e);
	CHECK(ibv_destroy_cq(o->e.cq) == 0, "destroy the default CQ");
	o->cx = ex ? ibv_create_cq_ex(o->e.ctx, &ca) : NULL;
	o->e.cq = ex ? (o->cx ? ibv_cq_ex_to_cq(o->cx) : NULL)
		     : ibv_create_cq(o->e.ctx, 128, NULL, NULL, 0);
	REQUIRE(o->e.cq, "create the CQ: %s", strerror(errno));
	ia.send_cq = ia.recv_cq = o->e.cq;
	o->e.qp = ibv_create_qp(o->e.pd, &ia);
	REQUIRE(o->e.qp, "create_qp: %s", strerror(errno));
	buf_new(&o->rbuf, o->e.pd, RECV_DEPTH * SLOT, MR_ALL);
	buf_new(&o->wbuf, o->e.pd, SEND_DEPTH * WSLOT, IBV_ACCESS_LOCAL_WRITE);
}

static void owner_run(struct owner *o, int sock)
{
	uint64_t end = now_s() + 120;
	struct ibv_wc wc[16];
	char c = 'G';

	for (uint32_t i = 0; i < RECV_DEPTH; i++)
		REQUIRE(post_recv1(o->e.qp, i, o->rbuf.p + i * SLOT, SLOT, o->rbuf.mr->lkey) == 0,
			"post receive %u", i);
	xfer(sock, &c, 1, true);
	while ((o->recvs < MSGS || o->writes_done < WRITES) && now_s() <= end) {
		int n;

		post_writes(o);
		n = poll_some(o->e.cq, o->cx, wc, 16);
		REQUIRE(n >= 0, "poll: %d", n);
		for (int i = 0; i < n; i++) {
			completed(o, &wc[i]);
			if (++o->polled % RESIZE_EVERY == 0)
				resize_now(o);
		}
	}
	CHECK(o->recvs == MSGS && o->writes_done == WRITES,
	      "every completion arrived: %u of %u receives, %u of %u writes", o->recvs, MSGS,
	      o->writes_done, WRITES);
	CHECK(poll_some(o->e.cq, o->cx, wc, 16) == 0, "and nothing more");
}

static void traffic(bool ex)
{
	struct owner o;
	int sv[2], st;
	pid_t pid;
	char c = 'D';

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	fflush(stdout); /* the child's exit must not print my buffer again */
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(sv[0]);
		_exit(sender(sv[1]));
	}
	close(sv[1]);
	owner_open(&o, ex);
	o.peer = meet(sv[0], &o.e, &o.rbuf, false);
	owner_run(&o, sv[0]);
	xfer(sv[0], &c, 1, true);
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the sender's checks (status %#x)", st);
	printf("%s: %u completions, %u resizes under traffic, %.1f us per resize\n",
	       ex ? "cq_ex" : "poll_cq", o.polled, o.resizes,
	       o.resizes ? (double)o.resize_ns / o.resizes / 1000.0 : 0.0);
	CHECK(o.resizes >= (MSGS + WRITES) / RESIZE_EVERY, "resized %u times", o.resizes);
	close(sv[0]);
	buf_free(&o.rbuf);
	buf_free(&o.wbuf);
	ep_close(&o.e);
}

/* Out of range, and too small for what is unpolled: EINVAL, nothing changed. */
static void refusals(void)
{
	struct ep e;
	struct buf b;
	struct qpopts lo = opts;
	int n = 40, got = 0;
	struct ibv_wc wc[16];

	ep_open(&e);
	buf_new(&b, e.pd, 4096, MR_ALL);
	lo.max_send_wr = 64;
	ep_qp(&e, IBV_QPT_RC, &lo);
	qp_connect(e.qp, e.qp->qp_num, e.lid, &lo); /* loopback */
	for (int i = 0; i < n / 2; i++) {
		CHECK(post_recv1(e.qp, 100 + i, b.p + 2048, 64, b.mr->lkey) == 0, "post recv");
		CHECK(post1(e.qp, i, IBV_WR_SEND, IBV_SEND_SIGNALED, b.p, 64, b.mr->lkey, 0, 0) ==
			  0,
		      "post send");
	}
	CHECK(ibv_resize_cq(e.cq, 0) == EINVAL, "resize to 0: EINVAL");
	CHECK(ibv_resize_cq(e.cq, -1) == EINVAL, "resize to -1: EINVAL");
	CHECK(ibv_resize_cq(e.cq, 4194304) == EINVAL, "resize past max_cqe: EINVAL");
	CHECK(ibv_resize_cq(e.cq, 16) == EINVAL, "40 unpolled do not fit in 16: EINVAL");
	CHECK(e.cq->cqe == DP_CQE, "the CQ kept its size: %d", e.cq->cqe);
	CHECK(ibv_resize_cq(e.cq, 40) == 0 && e.cq->cqe >= 40, "40 fit in 64");
	CHECK(ibv_resize_cq(e.cq, 2000) == 0 && e.cq->cqe >= 2000, "and grow again, undrained");
	while (got < n) {
		int k = ibv_poll_cq(e.cq, 16, wc);

		if (k <= 0)
			break;
		for (int i = 0; i < k; i++)
			CHECK(wc[i].status == IBV_WC_SUCCESS, "completion %d", got + i);
		got += k;
	}
	CHECK(got == n && cq_empty(e.cq), "all %d completions kept across two resizes: %d", n, got);
	buf_free(&b);
	ep_close(&e);
}

/* The channel's next event, within the liveness deadline (never a hang). */
static bool cq_event(struct ibv_comp_channel *ch, struct ibv_cq *want)
{
	struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
	struct ibv_cq *cq;
	void *ctxp;

	if (poll(&pfd, 1, DP_DEADLINE_S * 1000) != 1 || ibv_get_cq_event(ch, &cq, &ctxp))
		return false;
	ibv_ack_cq_events(cq, 1);
	return cq == want;
}

/*
 * A CQ armed before a resize: the arming is the CQ's, not its ring's, so
 * the first completion after the resize (in the new ring) brings the
 * event; one armed after a resize with completions still in the old ring
 * wakes for the next one, and polling returns the old ring's first.
 */
static void events_across_resize(void)
{
	struct ep e;
	struct buf b;
	struct qpopts lo = opts;
	struct ibv_comp_channel *ch;
	struct ibv_cq *ecq;
	struct ibv_wc wc[4];
	int n = 0;

	ep_open(&e);
	ch = ibv_create_comp_channel(e.ctx);
	REQUIRE(ch, "comp channel: %s", strerror(errno));
	ecq = ibv_create_cq(e.ctx, 16, NULL, ch, 0);
	REQUIRE(ecq, "create_cq: %s", strerror(errno));
	CHECK(ibv_destroy_cq(e.cq) == 0, "destroy the default CQ");
	e.cq = ecq;
	buf_new(&b, e.pd, 4096, MR_ALL);
	ep_qp(&e, IBV_QPT_RC, &lo);
	qp_connect(e.qp, e.qp->qp_num, e.lid, &lo); /* loopback */
	CHECK(ibv_req_notify_cq(ecq, 0) == 0, "arm");
	CHECK(ibv_resize_cq(ecq, 200) == 0, "resize while armed");
	CHECK(post_recv1(e.qp, 1, b.p + 2048, 64, b.mr->lkey) == 0 &&
		  post1(e.qp, 2, IBV_WR_SEND, IBV_SEND_SIGNALED, b.p, 64, b.mr->lkey, 0, 0) == 0,
	      "loopback send");
	CHECK(cq_event(ch, ecq), "the event after the resize");
	CHECK(ibv_resize_cq(ecq, 40) == 0, "resize with 2 completions in the old ring");
	CHECK(ibv_req_notify_cq(ecq, 0) == 0, "arm again");
	CHECK(post_recv1(e.qp, 3, b.p + 2048, 64, b.mr->lkey) == 0 &&
		  post1(e.qp, 4, IBV_WR_SEND, IBV_SEND_SIGNALED, b.p, 64, b.mr->lkey, 0, 0) == 0,
	      "loopback send into the new ring");
	CHECK(cq_event(ch, ecq), "the event from the new ring");
	while (n < 4) {
		int k = ibv_poll_cq(ecq, 4 - n, wc + n);

		if (k <= 0)
			break;
		n += k;
	}
	CHECK(n == 4 && wc[0].wr_id + wc[1].wr_id == 3 && wc[2].wr_id + wc[3].wr_id == 7,
	      "the old ring's completions first, then the new: %d", n);
	buf_free(&b);
	/* The channel goes before its context: it uses the context's lock. */
	CHECK(ibv_destroy_qp(e.qp) == 0 && ibv_destroy_cq(ecq) == 0, "destroy QP and CQ");
	CHECK(ibv_destroy_comp_channel(ch) == 0, "destroy the channel");
	CHECK(ibv_dealloc_pd(e.pd) == 0 && ibv_close_device(e.ctx) == 0, "close the context");
}

int main(void)
{
	refusals();
	events_across_resize();
	traffic(false);
	traffic(true);
	return check_summary();
}
