// SPDX-License-Identifier: MIT
/*
 * A sender killed halfway through writing my receive completion
 * (ivrdma_layout.h, "A producer that dies").
 *
 *   test_provider_cqe_death [ud-]took|taken|reserved|claimed
 *
 * I (the target) have one CQ under two RC QPs: one connected to D, one to
 * L, both other processes. D runs with IVRDMA_TEST_STOP_IN_PUSH, so its
 * first send stops it (SIGSTOP) with my receive taken and its completion
 * not published: right after the CAS that takes the receive (before its
 * intent says TAKEN), once the receive is taken, after the CAS on my
 * CQ's prod, or after claiming the entry. L then sends three messages, whose
 * completions queue behind D's ticket: my CQ shows nothing (the hole);
 * with only the receive taken (took, taken) D holds no ticket, and L's
 * arrive.
 * D is killed (SIGKILL). Within the liveness deadline my CQ gives D's
 * receive back in error (IBV_WC_GENERAL_ERR, IVRDMA_VERR_SENDER_DIED),
 * then L's three in order, data checked; my QP toward D fails
 * (IBV_EVENT_QP_FATAL, its other receive flushed) and L goes on sending.
 * With ud-, D sends a datagram to my UD QP on the same CQ instead: the
 * same, except that the UD QP stays in RTS (it serves other senders).
 *
 *   test_provider_cqe_death fired|sending
 *
 * The same D stops after writing my receive completion into my CQ, which
 * I armed and whose channel I sleep in: once the completion fired the
 * arming, before anyone is told (fired), or with the event taken for
 * sending straight to my channel, not yet sent (sending). My channel stays
 * silent; D is killed; within the liveness deadline my channel gives one
 * event (my event thread posts it on ivrdmad's news of the death), my CQ
 * D's message, data checked, and my QP toward D fails as above.
 * Run by run-provider-test.sh (real ivrdmad, which does the writing).
 */
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dp_common.h"
#include "ivrdma_layout.h"

#define LEN  3000u
#define QKEY 0x11u

struct info {
	uint32_t qpn;
	uint16_t lid;
};

static const struct qpopts opts = {.rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .max_sge = 1};

static void xfer(int fd, void *p, size_t n, bool out)
{
	ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

	REQUIRE(r == (ssize_t)n, "socket %s: %zd", out ? "write" : "read", r);
}

/* A UD QP on e's CQ, in RTS. */
static struct ibv_qp *ud_qp(struct ep *e)
{
	struct ibv_qp_init_attr ia = {
	    .send_cq = e->cq,
	    .recv_cq = e->cq,
	    .cap = {.max_send_wr = 4, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_UD,
	};
	struct ibv_qp *qp = ibv_create_qp(e->pd, &ia);

	REQUIRE(qp, "create UD QP: %s", strerror(errno));
	ud_up(qp, QKEY);
	return qp;
}

/* Message i: a send on RC, or a datagram to 'peer' through 'ah'. */
static void send_one(struct ep *e, struct buf *b, uint32_t i, struct ibv_ah *ah,
		     const struct info *peer)
{
	struct ibv_sge sg = {.addr = (uintptr_t)b->p, .length = LEN, .lkey = b->mr->lkey};
	struct ibv_send_wr wr = {.wr_id = i,
				 .sg_list = &sg,
				 .num_sge = 1,
				 .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	wr.wr.ud.ah = ah;
	wr.wr.ud.remote_qpn = peer->qpn;
	wr.wr.ud.remote_qkey = QKEY;
	CHECK(ibv_post_send(e->qp, &wr, &bad) == 0, "post send %u", i);
	EXPECT_WC(e->cq, IBV_WC_SUCCESS, i, IBV_WC_SEND, "send");
}

/*
 * A sender (D or L): connects to the target's QP (RC; UD: a datagram QP
 * and an address handle), then sends a message each time it is asked.
 */
static int sender(int sock, uint32_t seed, bool use_ud)
{
	struct info me, peer;
	struct ibv_ah *ah = NULL;
	struct ep e;
	struct buf b;
	char c;

	ep_open(&e);
	buf_new(&b, e.pd, LEN, IBV_ACCESS_LOCAL_WRITE);
	if (use_ud)
		e.qp = ud_qp(&e);
	else
		ep_qp(&e, IBV_QPT_RC, &opts);
	me = (struct info){e.qp->qp_num, e.lid};
	xfer(sock, &me, sizeof(me), true);
	xfer(sock, &peer, sizeof(peer), false);
	if (use_ud) {
		ah = ibv_create_ah(e.pd, &(struct ibv_ah_attr){.dlid = peer.lid, .port_num = 1});
		REQUIRE(ah, "create_ah: %s", strerror(errno));
	} else {
		qp_connect(e.qp, peer.qpn, peer.lid, &opts);
	}
	xfer(sock, &c, 1, true); /* ready */
	for (uint32_t i = 0; read(sock, &c, 1) == 1; i++) {
		fill(b.p, LEN, seed + i);
		send_one(&e, &b, i, ah, &peer);
		xfer(sock, &c, 1, true); /* sent */
	}
	if (ah)
		CHECK(ibv_destroy_ah(ah) == 0, "destroy_ah");
	buf_free(&b);
	ep_close(&e);
	return check_summary();
}

static pid_t spawn(int *sock, uint32_t seed, const char *stop_at, bool use_ud)
{
	int sv[2];
	pid_t pid;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(sv[0]);
		if (stop_at)
			setenv("IVRDMA_TEST_STOP_IN_PUSH", stop_at, 1);
		_exit(sender(sv[1], seed, use_ud));
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/* My QP on the shared CQ (RC, connected to the sender behind 'sock'; or UD). */
static struct ibv_qp *target_qp(struct ep *t, int sock, bool use_ud)
{
	struct ibv_qp_init_attr ia = {
	    .send_cq = t->cq,
	    .recv_cq = t->cq,
	    .cap = {.max_send_wr = 4, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_RC,
	};
	struct ibv_qp *qp = use_ud ? ud_qp(t) : ibv_create_qp(t->pd, &ia);
	struct info me, peer;
	char c;

	REQUIRE(qp, "create_qp: %s", strerror(errno));
	me = (struct info){qp->qp_num, t->lid};
	xfer(sock, &peer, sizeof(peer), false);
	xfer(sock, &me, sizeof(me), true);
	if (!use_ud)
		qp_connect(qp, peer.qpn, peer.lid, &opts);
	xfer(sock, &c, 1, false);
	return qp;
}

/* The process is stopped (its SIGSTOP reported): it sits inside the push. */
static void wait_stopped(pid_t pid)
{
	int st;

	REQUIRE(waitpid(pid, &st, WUNTRACED) == pid && WIFSTOPPED(st),
		"D stopped in its push (status %#x)", st);
}

/* L's message i: one send, its completion here checked with its data. */
static void from_l(struct ep *t, struct ibv_qp *ql, struct buf *rb, uint32_t i)
{
	struct ibv_wc wc;

	poll1(t->cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 200 + i && wc.qp_num == ql->qp_num &&
		  wc.byte_len == LEN,
	      "L's message %u: status %s wr_id %llu qp %#x", i, ibv_wc_status_str(wc.status),
	      (unsigned long long)wc.wr_id, wc.qp_num);
	CHECK(pat_diff(rb->p + (wc.wr_id - 200) * LEN, LEN, 5000 + i) == LEN,
	      "L's message %u: data", i);
}

static void run(const char *stop_at, bool ud)
{
	int sd, sl, st;
	pid_t d = spawn(&sd, 1000, stop_at, ud), l = spawn(&sl, 5000, NULL, false);
	struct ibv_qp *qd, *ql;
	struct ep t;
	struct buf rb;
	struct ibv_wc wc;
	bool taken = !strcmp(stop_at, "taken") || !strcmp(stop_at, "took");
	char c = 'S';

	ep_open(&t);
	buf_new(&rb, t.pd, 16 * LEN, IBV_ACCESS_LOCAL_WRITE);
	qd = target_qp(&t, sd, ud);
	ql = target_qp(&t, sl, false);
	for (uint32_t i = 0; i < 2; i++) /* room for a GRH */
		CHECK(post_recv1(qd, 100 + i, rb.p + (8 + 2 * i) * LEN, 2 * LEN, rb.mr->lkey) == 0,
		      "post");
	for (uint32_t i = 0; i < 8; i++)
		CHECK(post_recv1(ql, 200 + i, rb.p + i * LEN, LEN, rb.mr->lkey) == 0, "post");
	xfer(sd, &c, 1, true);
	wait_stopped(d);
	for (uint32_t i = 0; i < 3; i++) {
		xfer(sl, &c, 1, true);
		xfer(sl, &c, 1, false);
	}
	if (taken) /* D holds no ticket yet: L's go first */
		for (uint32_t i = 0; i < 3; i++)
			from_l(&t, ql, &rb, i);
	else /* L's three completions are published, but behind D's ticket */
		CHECK(ibv_poll_cq(t.cq, 1, &wc) == 0, "the hole holds the CQ while D is stopped");
	kill(d, SIGKILL);
	REQUIRE(waitpid(d, &st, 0) == d && WIFSIGNALED(st), "D killed");
	poll1(t.cq, &wc);
	CHECK(wc.wr_id == 100 && wc.status == IBV_WC_GENERAL_ERR && wc.opcode == IBV_WC_RECV &&
		  wc.vendor_err == IVRDMA_VERR_SENDER_DIED && wc.qp_num == qd->qp_num,
	      "D's receive: wr_id %llu status %s opcode %d vendor_err %#x qp %#x",
	      (unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status), wc.opcode, wc.vendor_err,
	      wc.qp_num);
	for (uint32_t i = 0; i < 3 && !taken; i++)
		from_l(&t, ql, &rb, i);
	if (ud) { /* a datagram QP serves others: it stays, its other receive posted */
		CHECK(qp_state(qd) == IBV_QPS_RTS, "my UD QP is still in RTS");
	} else {
		EXPECT_WC(t.cq, IBV_WC_WR_FLUSH_ERR, 101, IBV_WC_RECV, "D's other receive flushes");
		CHECK(expect_async(t.ctx, IBV_EVENT_QP_FATAL, qd), "my QP toward D failed");
	}
	xfer(sl, &c, 1, true); /* L still gets through */
	xfer(sl, &c, 1, false);
	from_l(&t, ql, &rb, 3);
	CHECK(cq_empty(t.cq), "nothing more");
	close(sl);
	REQUIRE(waitpid(l, &st, 0) == l, "waitpid L");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "L's own checks (status %#x)", st);
	close(sd);
	CHECK(ibv_destroy_qp(ql) == 0 && ibv_destroy_qp(qd) == 0, "destroy QPs");
	buf_free(&rb);
	ep_close(&t);
	printf("D stopped with the receive %s (%s), killed: its receive completed in error, in "
	       "order with L's three\n",
	       stop_at, ud ? "UD" : "RC");
}

/* Is a completion event waiting in channel 'ch', within 'ms'? */
static bool channel_ready(struct ibv_comp_channel *ch, int ms)
{
	struct pollfd p = {.fd = ch->fd, .events = POLLIN};

	return poll(&p, 1, ms) == 1;
}

/* My receive completion fired my arming, and D was killed before telling me. */
static void run_event(const char *stop_at)
{
	int sd, st;
	pid_t d = spawn(&sd, 1000, stop_at, false);
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_qp *qd;
	struct ep t;
	struct buf rb;
	struct ibv_wc wc;
	void *cq_ctx;
	char c = 'S';

	ep_open(&t);
	ch = ibv_create_comp_channel(t.ctx);
	REQUIRE(ch, "create_comp_channel: %s", strerror(errno));
	CHECK(ibv_destroy_cq(t.cq) == 0, "destroy_cq");
	t.cq = ibv_create_cq(t.ctx, 64, NULL, ch, 0);
	REQUIRE(t.cq, "create_cq on the channel: %s", strerror(errno));
	buf_new(&rb, t.pd, 2 * LEN, IBV_ACCESS_LOCAL_WRITE);
	qd = target_qp(&t, sd, false);
	for (uint32_t i = 0; i < 2; i++)
		CHECK(post_recv1(qd, 100 + i, rb.p + i * LEN, LEN, rb.mr->lkey) == 0, "post");
	REQUIRE(ibv_req_notify_cq(t.cq, 0) == 0, "req_notify_cq");
	xfer(sd, &c, 1, true);
	wait_stopped(d);
	CHECK(!channel_ready(ch, 0), "an event before D was killed");
	kill(d, SIGKILL);
	REQUIRE(waitpid(d, &st, 0) == d && WIFSIGNALED(st), "D killed");
	REQUIRE(channel_ready(ch, DP_DEADLINE_S * 1000), "no event within %d s of D's death",
		DP_DEADLINE_S);
	REQUIRE(ibv_get_cq_event(ch, &cq, &cq_ctx) == 0 && cq == t.cq, "get_cq_event");
	ibv_ack_cq_events(cq, 1);
	poll1(t.cq, &wc);
	CHECK(wc.wr_id == 100 && wc.status == IBV_WC_SUCCESS && wc.byte_len == LEN &&
		  pat_diff(rb.p, LEN, 1000) == LEN,
	      "D's message: wr_id %llu status %s", (unsigned long long)wc.wr_id,
	      ibv_wc_status_str(wc.status));
	EXPECT_WC(t.cq, IBV_WC_WR_FLUSH_ERR, 101, IBV_WC_RECV, "D's other receive flushes");
	CHECK(expect_async(t.ctx, IBV_EVENT_QP_FATAL, qd), "my QP toward D failed");
	CHECK(cq_empty(t.cq) && !channel_ready(ch, 0), "nothing more, no second event");
	close(sd);
	CHECK(ibv_destroy_qp(qd) == 0, "destroy QP");
	buf_free(&rb);
	CHECK(ibv_destroy_cq(t.cq) == 0 && ibv_destroy_comp_channel(ch) == 0,
	      "destroy CQ and channel");
	CHECK(ibv_dealloc_pd(t.pd) == 0 && ibv_close_device(t.ctx) == 0, "close");
	printf("D stopped with my event %s, killed: the event came once, then its message\n",
	       stop_at);
}

int main(int argc, char **argv)
{
	const char *at = argc == 2 ? argv[1] : "";
	bool ud = !strncmp(at, "ud-", 3);

	if (!strcmp(at, "fired") || !strcmp(at, "sending")) {
		run_event(at);
		return check_summary();
	}
	at += ud ? 3 : 0;
	REQUIRE(!strcmp(at, "took") || !strcmp(at, "taken") || !strcmp(at, "reserved") ||
		    !strcmp(at, "claimed"),
		"usage: test_provider_cqe_death [ud-]took|taken|reserved|claimed | fired|sending");
	run(at, ud);
	return check_summary();
}
