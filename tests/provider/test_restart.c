// SPDX-License-Identifier: MIT
/*
 * Traffic across ivrdmad restarts (run-restart-test.sh drives it).
 *
 *   test_restart pair        the initiator: starts a responder process,
 *                            then runs verified rounds with it in a thread
 *                            and answers commands on stdin, one a line:
 *     rounds                 "rounds N": rounds completed so far
 *     kill-peer              kills the responder; "peer-error STATUS" once
 *                            my traffic got its error (the peer is dead)
 *     join                   a new responder process (a context opened
 *                            now) and fresh QPs: "join-ok N" after N rounds
 *     quit                   exits; the status is the checks'
 *   test_restart responder FD ROUNDS   (started by pair; 0 ROUNDS: forever)
 *   test_restart hold        a context holding a QP, a CQ and an MR: prints
 *                            "held", then waits to be killed
 *
 * A round: the initiator RDMA-writes a pattern into the responder's
 * buffer and sends it a message; the responder checks both, answers with
 * a UD datagram and an RC message; the initiator checks those. Every byte
 * is a pattern of the round number, every WR completes once, and both
 * sides sleep in their completion channels (the doorbells between the two
 * processes carry every round).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dp_common.h"

#define WRITE_LEN 8192
#define SEND_LEN  1024
#define UD_LEN	  512
#define GRH_LEN	  40
#define QKEY	  0x11111111u

struct wire {
	uint32_t rc_qpn, ud_qpn;
	uint64_t waddr;
	uint32_t rkey;
	uint16_t lid;
};

struct side {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_qp *rc, *ud;
	struct ibv_ah *ah;
	struct buf wbuf, sbuf, rbuf, udr, uds;
	struct wire peer;
	uint32_t remote_ud_qpn;
};

static void side_qps(struct side *s)
{
	struct qpopts o = {.access = MR_ALL, .rnr_retry = 7, .retry_cnt = 7, .timeout = 14};
	struct ibv_qp_init_attr ia = {
	    .send_cq = s->cq,
	    .recv_cq = s->cq,
	    .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1},
	    .qp_type = IBV_QPT_RC};

	s->rc = ibv_create_qp(s->pd, &ia);
	ia.qp_type = IBV_QPT_UD;
	s->ud = ibv_create_qp(s->pd, &ia);
	REQUIRE(s->rc && s->ud, "create QPs: %s", strerror(errno));
	REQUIRE(qp_init(s->rc, o.access) == 0, "RC INIT");
	ud_up(s->ud, QKEY);
}

static void side_open(struct side *s)
{
	struct ibv_port_attr pa;

	memset(s, 0, sizeof(*s));
	s->ctx = dp_open();
	s->pd = ibv_alloc_pd(s->ctx);
	s->ch = ibv_create_comp_channel(s->ctx);
	s->cq = s->ch ? ibv_create_cq(s->ctx, 256, NULL, s->ch, 0) : NULL;
	REQUIRE(s->pd && s->cq, "pd / channel / cq: %s", strerror(errno));
	REQUIRE(ibv_query_port(s->ctx, 1, &pa) == 0, "query_port");
	buf_new(&s->wbuf, s->pd, WRITE_LEN, MR_ALL);
	buf_new(&s->sbuf, s->pd, WRITE_LEN, MR_ALL);
	buf_new(&s->rbuf, s->pd, SEND_LEN, MR_ALL);
	buf_new(&s->udr, s->pd, GRH_LEN + UD_LEN, MR_ALL);
	buf_new(&s->uds, s->pd, UD_LEN, MR_ALL);
	side_qps(s);
	s->peer.lid = pa.lid; /* mine, until exchanged */
}

static void side_close(struct side *s)
{
	if (s->ah)
		CHECK(ibv_destroy_ah(s->ah) == 0, "destroy_ah");
	CHECK(ibv_destroy_qp(s->rc) == 0 && ibv_destroy_qp(s->ud) == 0, "destroy QPs");
	CHECK(ibv_destroy_cq(s->cq) == 0, "destroy_cq");
	CHECK(ibv_destroy_comp_channel(s->ch) == 0, "destroy_comp_channel");
	buf_free(&s->wbuf);
	buf_free(&s->sbuf);
	buf_free(&s->rbuf);
	buf_free(&s->udr);
	buf_free(&s->uds);
	CHECK(ibv_dealloc_pd(s->pd) == 0, "dealloc_pd");
	CHECK(ibv_close_device(s->ctx) == 0, "close_device");
}

/* Swaps wire descriptions over sock and connects my RC QP; an AH to the peer's port. */
static void side_connect(struct side *s, int sock)
{
	struct qpopts o = {.access = MR_ALL, .rnr_retry = 7, .retry_cnt = 7, .timeout = 14};
	struct wire mine = {.rc_qpn = s->rc->qp_num,
			    .ud_qpn = s->ud->qp_num,
			    .waddr = (uintptr_t)s->wbuf.p,
			    .rkey = s->wbuf.mr->rkey,
			    .lid = s->peer.lid};
	struct ibv_ah_attr aa = {.port_num = 1};

	REQUIRE(write(sock, &mine, sizeof(mine)) == sizeof(mine), "send wire");
	REQUIRE(read(sock, &s->peer, sizeof(s->peer)) == sizeof(s->peer), "read wire");
	REQUIRE(qp_rtr(s->rc, s->peer.rc_qpn, s->peer.lid, &o) == 0, "RC RTR");
	REQUIRE(qp_rts(s->rc, &o) == 0, "RC RTS");
	aa.dlid = s->peer.lid;
	s->ah = ibv_create_ah(s->pd, &aa);
	REQUIRE(s->ah, "create_ah: %s", strerror(errno));
}

/* One completion, sleeping in the channel; false if none came in time. */
static bool wait_wc(struct side *s, struct ibv_wc *wc)
{
	for (;;) {
		struct pollfd p = {.fd = s->ch->fd, .events = POLLIN};
		struct ibv_cq *cq;
		void *cq_ctx;
		int n = ibv_poll_cq(s->cq, 1, wc);

		if (n)
			return n > 0;
		REQUIRE(ibv_req_notify_cq(s->cq, 0) == 0, "req_notify_cq");
		n = ibv_poll_cq(s->cq, 1, wc);
		if (n)
			return n > 0;
		if (poll(&p, 1, DP_DEADLINE_S * 1000) != 1)
			return false;
		REQUIRE(ibv_get_cq_event(s->ch, &cq, &cq_ctx) == 0, "get_cq_event");
		ibv_ack_cq_events(cq, 1);
	}
}

static int post_recv(struct ibv_qp *qp, uint64_t id, struct buf *b, uint32_t len)
{
	struct ibv_sge sge = {.addr = (uintptr_t)b->p, .length = len, .lkey = b->mr->lkey};
	struct ibv_recv_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_recv(qp, &wr, &bad);
}

static int post_send(struct side *s, struct ibv_qp *qp, uint64_t id, enum ibv_wr_opcode op,
		     uint32_t len)
{
	struct buf *b = qp->qp_type == IBV_QPT_UD ? &s->uds : &s->sbuf;
	struct ibv_sge sge = {.addr = (uintptr_t)b->p, .length = len, .lkey = b->mr->lkey};
	struct ibv_send_wr wr = {.wr_id = id,
				 .sg_list = &sge,
				 .num_sge = 1,
				 .opcode = op,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	if (op == IBV_WR_RDMA_WRITE) {
		wr.wr.rdma.remote_addr = s->peer.waddr;
		wr.wr.rdma.rkey = s->peer.rkey;
	} else if (qp->qp_type == IBV_QPT_UD) {
		wr.wr.ud.ah = s->ah;
		wr.wr.ud.remote_qpn = s->peer.ud_qpn;
		wr.wr.ud.remote_qkey = QKEY;
	}
	return ibv_post_send(qp, &wr, &bad);
}

/*
 * Waits for 'count' completions, each SUCCESS, their WR IDs as bits in
 * *ids; the first bad status, or -1 if none came in time.
 */
static int collect(struct side *s, int count, uint64_t *ids)
{
	for (int i = 0; i < count; i++) {
		struct ibv_wc wc;

		if (!wait_wc(s, &wc))
			return -1;
		if (wc.status != IBV_WC_SUCCESS) {
			fprintf(stderr, "pid %d: WR %llu: %s\n", (int)getpid(),
				(unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status));
			return (int)wc.status;
		}
		*ids |= 1ull << wc.wr_id;
	}
	return IBV_WC_SUCCESS;
}

/* --- the responder --------------------------------------------------------- */

enum { ID_WRITE, ID_SEND, ID_RECV, ID_UD_RECV, ID_UD_SEND };

/*
 * The responder's completions come in any order: a send's may follow the
 * initiator's next message (it answered before my send's completion was
 * written). Waits for the next message with my sends of the round before
 * done (their buffers are refilled next).
 */
static void respond_round(struct side *s, uint32_t r, unsigned int *sends)
{
	bool got = false;
	size_t off;

	while (!got || *sends) {
		uint64_t ids = 0;

		REQUIRE(collect(s, 1, &ids) == IBV_WC_SUCCESS, "round %u: a completion", r);
		REQUIRE(ids == 1u << ID_RECV ||
			    (*sends && (ids & (1u << ID_SEND | 1u << ID_UD_SEND))),
			"round %u: completion %#llx", r, (unsigned long long)ids);
		if (ids == 1u << ID_RECV)
			got = true;
		else
			(*sends)--;
	}
	off = pat_diff(s->wbuf.p, WRITE_LEN, r);
	REQUIRE(off == WRITE_LEN, "round %u: written byte %zu wrong", r, off);
	off = pat_diff(s->rbuf.p, SEND_LEN, r ^ 1);
	REQUIRE(off == SEND_LEN, "round %u: sent byte %zu wrong", r, off);
	REQUIRE(post_recv(s->rc, ID_RECV, &s->rbuf, SEND_LEN) == 0, "post_recv");
	fill(s->uds.p, UD_LEN, r ^ 2);
	fill(s->sbuf.p, SEND_LEN, r ^ 3);
	REQUIRE(post_send(s, s->ud, ID_UD_SEND, IBV_WR_SEND, UD_LEN) == 0, "UD send");
	REQUIRE(post_send(s, s->rc, ID_SEND, IBV_WR_SEND, SEND_LEN) == 0, "RC send");
	*sends = 2;
}

static int responder(int sock, uint32_t rounds)
{
	unsigned int sends = 0;
	struct side s;

	side_open(&s);
	REQUIRE(post_recv(s.rc, ID_RECV, &s.rbuf, SEND_LEN) == 0, "post_recv");
	side_connect(&s, sock);
	for (uint32_t r = 1; rounds == 0 || r <= rounds; r++)
		respond_round(&s, r, &sends);
	for (uint64_t ids = 0; sends; sends--)
		REQUIRE(collect(&s, 1, &ids) == IBV_WC_SUCCESS, "the last sends");
	side_close(&s);
	return check_summary();
}

/* --- the initiator ---------------------------------------------------------- */

struct pair {
	struct side s;
	pid_t peer;
	pthread_t thread;
	atomic_uint rounds;
	atomic_bool expect_death;
	int error; /* the status that ended the traffic */
};

/* One round; IBV_WC_SUCCESS, or the status that broke it. */
static int initiate_round(struct side *s, uint32_t r)
{
	uint64_t ids = 0;
	int st;

	if (post_recv(s->rc, ID_RECV, &s->rbuf, SEND_LEN) ||
	    post_recv(s->ud, ID_UD_RECV, &s->udr, GRH_LEN + UD_LEN))
		return IBV_WC_GENERAL_ERR;
	fill(s->sbuf.p, WRITE_LEN, r);
	if (post_send(s, s->rc, ID_WRITE, IBV_WR_RDMA_WRITE, WRITE_LEN))
		return IBV_WC_GENERAL_ERR;
	st = collect(s, 1, &ids);
	if (st != IBV_WC_SUCCESS)
		return st;
	fill(s->sbuf.p, SEND_LEN, r ^ 1);
	if (post_send(s, s->rc, ID_SEND, IBV_WR_SEND, SEND_LEN))
		return IBV_WC_GENERAL_ERR;
	st = collect(s, 3, &ids);
	if (st != IBV_WC_SUCCESS)
		return st;
	CHECK(ids == (1u << ID_WRITE | 1u << ID_SEND | 1u << ID_RECV | 1u << ID_UD_RECV),
	      "round %u: completions %#llx", r, (unsigned long long)ids);
	CHECK(pat_diff(s->udr.p + GRH_LEN, UD_LEN, r ^ 2) == UD_LEN, "round %u: UD bytes", r);
	CHECK(pat_diff(s->rbuf.p, SEND_LEN, r ^ 3) == SEND_LEN, "round %u: RC reply bytes", r);
	return IBV_WC_SUCCESS;
}

static void *traffic(void *arg)
{
	struct pair *p = arg;

	for (uint32_t r = 1;; r++) {
		int st = initiate_round(&p->s, r);

		if (st != IBV_WC_SUCCESS) {
			p->error = st;
			CHECK(atomic_load(&p->expect_death), "round %u: %s, with the peer alive", r,
			      st < 0 ? "no completion in time" : ibv_wc_status_str(st));
			return NULL;
		}
		atomic_store(&p->rounds, r);
	}
}

/* A responder process (a fresh exec: no verbs state shared) on one end of a socketpair. */
static pid_t spawn(const char *self, int *sock, uint32_t rounds)
{
	int sv[2];
	pid_t pid;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		char fd[16], n[16];

		snprintf(fd, sizeof(fd), "%d", sv[1]);
		snprintf(n, sizeof(n), "%u", rounds);
		/* Goes with me, however I end (the script kills only me). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fcntl(sv[1], F_SETFD, 0);
		dup2(2, 1); /* my stdout answers the script */
		execl(self, self, "responder", fd, n, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

/* A new process, fresh QPs on my context: 'rounds' rounds with it. */
static void join(struct pair *p, const char *self)
{
	const uint32_t rounds = 200;
	int sock, status;
	pid_t pid;

	CHECK(ibv_destroy_ah(p->s.ah) == 0, "destroy_ah");
	CHECK(ibv_destroy_qp(p->s.rc) == 0 && ibv_destroy_qp(p->s.ud) == 0, "destroy QPs");
	while (ibv_poll_cq(p->s.cq, 1, &(struct ibv_wc){0}) > 0)
		; /* the flushed WRs of the old QPs */
	side_qps(&p->s);
	pid = spawn(self, &sock, rounds);
	side_connect(&p->s, sock);
	for (uint32_t r = 1; r <= rounds; r++) {
		int st = initiate_round(&p->s, r);

		REQUIRE(st == IBV_WC_SUCCESS, "join round %u: %d", r, st);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the new process failed");
	close(sock);
	printf("join-ok %u\n", rounds);
}

static void kill_peer(struct pair *p)
{
	atomic_store(&p->expect_death, true);
	kill(p->peer, SIGKILL);
	waitpid(p->peer, NULL, 0);
	pthread_join(p->thread, NULL);
	printf("peer-error %s\n", p->error < 0 ? "none" : ibv_wc_status_str(p->error));
}

static int pair(const char *self)
{
	struct pair p = {.rounds = 0};
	char line[64];
	int sock;

	p.peer = spawn(self, &sock, 0);
	side_open(&p.s);
	side_connect(&p.s, sock);
	REQUIRE(pthread_create(&p.thread, NULL, traffic, &p) == 0, "pthread_create");
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		if (!strcmp(line, "rounds\n"))
			printf("rounds %u\n", atomic_load(&p.rounds));
		else if (!strcmp(line, "kill-peer\n"))
			kill_peer(&p);
		else if (!strcmp(line, "join\n"))
			join(&p, self);
		else if (!strcmp(line, "quit\n"))
			break;
		else
			printf("unknown\n");
	}
	CHECK(atomic_load(&p.expect_death), "quit before kill-peer");
	side_close(&p.s);
	return check_summary();
}

static int hold(void)
{
	struct side s;

	side_open(&s);
	printf("held\n");
	for (;;) /* until killed */
		if (pause() < 0 && errno != EINTR)
			break;
	return check_summary();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 2 && !strcmp(argv[1], "pair"))
		return pair("/proc/self/exe");
	if (argc == 4 && !strcmp(argv[1], "responder"))
		return responder(atoi(argv[2]), (uint32_t)strtoul(argv[3], NULL, 10));
	if (argc == 2 && !strcmp(argv[1], "hold"))
		return hold();
	fprintf(stderr, "usage: test_restart pair | hold | responder FD ROUNDS\n");
	return 2;
}
