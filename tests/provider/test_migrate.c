// SPDX-License-Identifier: MIT
/*
 * migrate-begin and migrate-end in host mode (ivrdma_layout.h, "Suspending
 * a node"). Process A is on the host node; process B stands in for VM vm1
 * (IVRDMA_NODE=vm1: it joins through vm1's socket).
 *
 * 1. A drives RDMA writes, reads, fetch-and-adds and sends at B while B
 *    keeps receives posted and a thread of B rewrites and checks a part of
 *    its registered buffer. A runs `ivrdma migrate-begin vm1` in the middle
 *    of it. Then: every WR posted on either side completed exactly once
 *    (success or flush); A saw IBV_EVENT_QP_FATAL, B IBV_EVENT_PORT_ERR,
 *    QP_FATAL and DEVICE_FATAL; B's registered buffer is private memory
 *    again with its bytes (the reads' source, the atomics' counter = A's
 *    successful adds, the thread's pattern); B's receives = A's successful
 *    sends; B can deregister, destroy and close, and a new registration
 *    fails with EIO.
 * 2. B opens the device again (it rejoins), A sees IBV_EVENT_PORT_ACTIVE,
 *    `ivrdma migrate-end vm1` answers, and new QPs carry checked data.
 * 3. The timeout: a third process C (host node) is stopped with SIGSTOP;
 *    `migrate-begin vm1 --timeout 2` fails and names C's pid. Then
 *    migrate-end calls it off with B still attached, and a context B
 *    opens afterwards works.
 *
 * After DEVICE_FATAL, B holds no mapping of the region at all: in a guest
 * nothing could fault once the device is unplugged.
 *
 * usage: test_migrate IVRDMA_CLI   (IVRDMA_DIR and the provider from `ivrdma env`)
 *        test_migrate --stand-by  (process C)
 */
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dp_common.h"

extern char **environ;

#define N_RECV	   32
#define MSG_LEN	   64
#define OP_LEN	   256
#define MAX_OUT	   8
#define READ_SEED  7
#define APP_OFF	   16384
#define APP_LEN	   65536
#define RECV_OFF   (APP_OFF + APP_LEN)
#define B_BUF_LEN  (RECV_OFF + N_RECV * MSG_LEN)
#define WRITE_OFF  4096
#define COUNT_OFF  8192
#define PHASE1_OPS 400

static const char *cli;
static const struct qpopts rc_opts = {
    .access = ALL_REMOTE, .rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .sig_all = true};

/* What A and B tell each other over their socketpair. */
struct msg {
	uint32_t qpn;
	uint16_t lid;
	uint64_t addr;
	uint32_t rkey;
	uint64_t v1, v2; /* B's report: counter, receives that succeeded */
};

static void send_msg(int fd, const struct msg *m)
{
	REQUIRE(write(fd, m, sizeof(*m)) == (ssize_t)sizeof(*m), "socketpair write");
}

static struct msg recv_msg(int fd)
{
	struct msg m;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	REQUIRE(poll(&pfd, 1, 60000) == 1, "no word from the other process in 60 s");
	REQUIRE(read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m), "socketpair read");
	return m;
}

/* Starts argv[0] with its fd 'child_fd' the write end of a pipe; *read_end is ours. */
static pid_t spawn_piped(char *const argv[], int child_fd, int *read_end)
{
	posix_spawn_file_actions_t fa;
	int p[2];
	pid_t pid;

	REQUIRE(pipe(p) == 0, "pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], child_fd);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	REQUIRE(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0, "spawn %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	*read_end = p[0];
	return pid;
}

/* Runs `ivrdma ARGS...`; its exit status, its stderr in 'err'. */
static int run_cli(char *err, size_t len, const char *const *args)
{
	char *argv[8] = {(char *)cli};
	int fd, status = -1;
	ssize_t n;
	pid_t pid;

	for (int i = 0; args[i] && i < 6; i++)
		argv[i + 1] = (char *)args[i];
	pid = spawn_piped(argv, 2, &fd);
	n = read(fd, err, len - 1);
	err[n > 0 ? n : 0] = '\0';
	close(fd);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* --- async events, tallied ------------------------------------------------ */

struct tally {
	int port_err, port_active, qp_fatal, device_fatal, other;
};

/* Reads every async event pending within 'ms'; counts them. */
static void drain_async(struct ibv_context *ctx, struct tally *t, int ms)
{
	struct ibv_async_event ev;

	while (async_pending(ctx, ms) && ibv_get_async_event(ctx, &ev) == 0) {
		switch (ev.event_type) {
		case IBV_EVENT_PORT_ERR:
			t->port_err++;
			break;
		case IBV_EVENT_PORT_ACTIVE:
			t->port_active++;
			break;
		case IBV_EVENT_QP_FATAL:
			t->qp_fatal++;
			break;
		case IBV_EVENT_DEVICE_FATAL:
			t->device_fatal++;
			break;
		default:
			t->other++;
		}
		ibv_ack_async_event(&ev);
		ms = 0;
	}
}

/* Waits (bounded) until counter '*what' of 't' is at least 'n'. */
static bool await_event(struct ibv_context *ctx, struct tally *t, const int *what, int n)
{
	uint64_t end = now_s() + DP_DEADLINE_S;

	while (*what < n && now_s() <= end)
		drain_async(ctx, t, 100);
	return *what >= n;
}

/* --- B: the process standing in for vm1 ----------------------------------- */

struct b_state {
	struct ep e;
	uint8_t *mem; /* malloc'ed, not page-aligned: the heap around it is registered too */
	struct ibv_mr *mr;
	int posted, completed, ok;
	uint64_t next_seq;
	atomic_bool stop;
	int app_errors;
};

/* B's own use of its registered bytes: rewritten and checked, all along. */
static void *app_thread(void *arg)
{
	struct b_state *b = arg;
	uint32_t gen = 1;

	while (!atomic_load(&b->stop)) {
		fill(b->mem + APP_OFF, APP_LEN, gen);
		if (pat_diff(b->mem + APP_OFF, APP_LEN, gen) != APP_LEN)
			b->app_errors++;
		gen++;
	}
	return NULL;
}

static void b_post_recv(struct b_state *b, int i)
{
	CHECK(post_recv1(b->e.qp, (uint64_t)i, b->mem + RECV_OFF + i * MSG_LEN, MSG_LEN,
			 b->mr->lkey) == 0,
	      "post_recv");
	b->posted++;
}

/* One receive completion: a send's payload is its sequence number; re-posts. */
static void b_on_recv(struct b_state *b, const struct ibv_wc *wc, bool repost)
{
	uint64_t seq;

	b->completed++;
	if (wc->status != IBV_WC_SUCCESS) {
		CHECK(wc->status == IBV_WC_WR_FLUSH_ERR, "receive status %s",
		      ibv_wc_status_str(wc->status));
		return;
	}
	memcpy(&seq, b->mem + RECV_OFF + wc->wr_id * MSG_LEN, sizeof(seq));
	CHECK(seq == b->next_seq, "send %llu arrived, expected %llu", (unsigned long long)seq,
	      (unsigned long long)b->next_seq);
	b->next_seq = seq + 1;
	b->ok++;
	if (repost)
		b_post_recv(b, (int)wc->wr_id);
}

static void b_open(struct b_state *b)
{
	ep_open(&b->e);
	b->mem = malloc(B_BUF_LEN + 100);
	REQUIRE(b->mem, "malloc");
	b->mem += 40; /* not page-aligned */
	memset(b->mem, 0, B_BUF_LEN);
	fill(b->mem, 4096, READ_SEED);
	b->mr = ibv_reg_mr(b->e.pd, b->mem, B_BUF_LEN, MR_ALL);
	REQUIRE(b->mr, "reg_mr: %s", strerror(errno));
	ep_qp(&b->e, IBV_QPT_RC, &rc_opts);
}

/*
 * How many of my mappings come from the region (a /dev/shm file): the
 * one holding 'p' counts in *at_p. In a guest these would be BAR2 pages,
 * which fault with SIGBUS once the device is unplugged.
 */
static int region_maps(const void *p, bool *at_p)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	REQUIRE(f, "/proc/self/maps");
	*at_p = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (!strstr(line, "/dev/shm/"))
			continue;
		n++;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo &&
		    (uintptr_t)p < hi)
			*at_p = true;
	}
	fclose(f);
	return n;
}

/* B through the teardown: receives until DEVICE_FATAL, then every receive back. */
static void b_teardown(struct b_state *b, struct tally *t)
{
	uint64_t end = now_s() + 60;
	struct ibv_wc wc;

	while (!t->device_fatal && now_s() <= end) {
		while (ibv_poll_cq(b->e.cq, 1, &wc) == 1)
			b_on_recv(b, &wc, true);
		drain_async(b->e.ctx, t, 0);
	}
	CHECK(t->device_fatal == 1, "B: no IBV_EVENT_DEVICE_FATAL");
	while (b->completed < b->posted && now_s() <= end)
		if (ibv_poll_cq(b->e.cq, 1, &wc) == 1)
			b_on_recv(b, &wc, false);
	CHECK(b->completed == b->posted, "B: %d receives posted, %d completed", b->posted,
	      b->completed);
	CHECK(cq_empty(b->e.cq), "B: a completion too many");
	drain_async(b->e.ctx, t, 200);
	CHECK(t->port_err >= 1 && t->qp_fatal == 1, "B: PORT_ERR %d, QP_FATAL %d", t->port_err,
	      t->qp_fatal);
}

/* After the teardown: private bytes, intact, and everything can be let go. */
static void b_check_after(struct b_state *b, struct msg *report)
{
	uint64_t counter;
	void *other = malloc(4096);

	bool at_buffer;
	int maps = region_maps(b->mem, &at_buffer);

	atomic_store(&b->stop, true);
	CHECK(!at_buffer, "B: the registered buffer is still mapped from the region");
	CHECK(maps == 0, "B: %d mappings of the region left after DEVICE_FATAL", maps);
	CHECK(b->app_errors == 0, "B: its own writes to the buffer went wrong %d times",
	      b->app_errors);
	CHECK(pat_diff(b->mem, 4096, READ_SEED) == 4096, "B: the reads' source changed");
	memcpy(&counter, b->mem + COUNT_OFF, 8);
	CHECK(!ibv_reg_mr(b->e.pd, other, 4096, MR_ALL) && errno == EIO,
	      "B: reg_mr after DEVICE_FATAL: %s", strerror(errno));
	CHECK(ibv_dereg_mr(b->mr) == 0, "B: dereg_mr after the teardown");
	memset(b->mem, 0x5a, B_BUF_LEN); /* still ordinary memory */
	free(b->mem - 40);
	free(other);
	ep_close(&b->e);
	*report = (struct msg){.v1 = counter, .v2 = (uint64_t)b->ok};
}

/* B again after rejoining: a send and an RDMA write from A, checked. */
static void b_rejoin(int sock)
{
	struct b_state b = {0};
	struct tally t = {0};
	struct ibv_port_attr pa;
	struct msg m, a;
	struct ibv_wc wc;

	b_open(&b);
	m = (struct msg){
	    .qpn = b.e.qp->qp_num, .lid = b.e.lid, .addr = (uintptr_t)b.mem, .rkey = b.mr->rkey};
	send_msg(sock, &m);
	a = recv_msg(sock);
	qp_connect(b.e.qp, a.qpn, a.lid, &rc_opts);
	b_post_recv(&b, 0);
	send_msg(sock, &m);
	CHECK(poll1(b.e.cq, &wc) && wc.status == IBV_WC_SUCCESS, "B: rejoined receive");
	b_on_recv(&b, &wc, false);
	(void)recv_msg(sock); /* A's write is done */
	CHECK(pat_diff(b.mem + WRITE_OFF, OP_LEN, 99) == OP_LEN, "B: the write after rejoining");
	send_msg(sock, &m);
	/*
	 * Phase 3: suspended again (A's migrate-begin times out on C), then
	 * called off: the context that left stays unusable; a new one works.
	 */
	CHECK(await_event(b.e.ctx, &t, &t.device_fatal, 1), "B: second DEVICE_FATAL");
	(void)recv_msg(sock); /* A: migrate-end answered, B still attached */
	CHECK(ibv_dereg_mr(b.mr) == 0, "B: dereg_mr");
	free(b.mem - 40);
	ep_close(&b.e);
	ep_open(&b.e);
	CHECK(ibv_query_port(b.e.ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE,
	      "B: the port of a context opened after migrate-end");
	ep_close(&b.e);
}

static int role_b(int sock)
{
	struct b_state b = {0};
	struct tally t = {0};
	struct msg m, a, report;
	pthread_t th;

	setenv("IVRDMA_NODE", "vm1", 1);
	b_open(&b);
	m = (struct msg){
	    .qpn = b.e.qp->qp_num, .lid = b.e.lid, .addr = (uintptr_t)b.mem, .rkey = b.mr->rkey};
	send_msg(sock, &m);
	a = recv_msg(sock);
	qp_connect(b.e.qp, a.qpn, a.lid, &rc_opts);
	for (int i = 0; i < N_RECV; i++)
		b_post_recv(&b, i);
	send_msg(sock, &m); /* ready */
	REQUIRE(pthread_create(&th, NULL, app_thread, &b) == 0, "pthread_create");
	b_teardown(&b, &t);
	atomic_store(&b.stop, true);
	pthread_join(th, NULL);
	b_check_after(&b, &report);
	send_msg(sock, &report);
	b_rejoin(sock);
	return check_summary();
}

/* --- A: the host's process ------------------------------------------------ */

struct a_state {
	struct ep e;
	struct buf local;
	struct msg b;
	int posted, completed, ok[4], flushed;
	uint64_t seq;
	struct tally t;
};

/* Op i: a write, a read, a fetch-and-add or a send, in turn. */
static int a_post(struct a_state *a, int i)
{
	uint8_t *l = a->local.p + (i % MAX_OUT) * OP_LEN;
	uint32_t lk = a->local.mr->lkey, rk = a->b.rkey;
	uint64_t r = a->b.addr, id = (uint64_t)i;

	switch (i % 4) {
	case 0:
		fill(l, OP_LEN, (uint32_t)i);
		return post1(a->e.qp, id, IBV_WR_RDMA_WRITE, 0, l, OP_LEN, lk, r + WRITE_OFF, rk);
	case 1:
		memset(l, 0, OP_LEN);
		return post1(a->e.qp, id, IBV_WR_RDMA_READ, 0, l, OP_LEN, lk, r, rk);
	case 2:
		return post_atomic(a->e.qp, id, IBV_WR_ATOMIC_FETCH_AND_ADD, l, lk, r + COUNT_OFF,
				   rk, 1, 0);
	default:
		memcpy(l, &a->seq, sizeof(a->seq));
		return post1(a->e.qp, id, IBV_WR_SEND, 0, l, MSG_LEN, lk, 0, 0);
	}
}

static void a_on_wc(struct a_state *a, const struct ibv_wc *wc)
{
	int kind = (int)(wc->wr_id % 4);

	a->completed++;
	if (wc->status == IBV_WC_WR_FLUSH_ERR) {
		a->flushed++;
		return;
	}
	CHECK(wc->status == IBV_WC_SUCCESS, "A: op %llu: %s", (unsigned long long)wc->wr_id,
	      ibv_wc_status_str(wc->status));
	if (wc->status != IBV_WC_SUCCESS)
		return;
	a->ok[kind]++;
	if (kind == 1)
		CHECK(pat_diff(a->local.p + (wc->wr_id % MAX_OUT) * OP_LEN, OP_LEN, READ_SEED) ==
			  OP_LEN,
		      "A: read %llu brought wrong bytes", (unsigned long long)wc->wr_id);
	if (kind == 3)
		a->seq++;
}

/* Posts ops (at most MAX_OUT outstanding) until 'until' ops or the QP fails. */
static void a_drive(struct a_state *a, int until, atomic_bool *done)
{
	struct ibv_wc wc;
	uint64_t end = now_s() + 60;

	while (a->posted < until && (!done || !atomic_load(done)) && now_s() <= end) {
		if (a->posted - a->completed < MAX_OUT / 2 && a_post(a, a->posted) == 0)
			a->posted++;
		while (ibv_poll_cq(a->e.cq, 1, &wc) == 1)
			a_on_wc(a, &wc);
		if (a->flushed)
			break;
	}
	while (a->completed < a->posted && now_s() <= end)
		if (ibv_poll_cq(a->e.cq, 1, &wc) == 1)
			a_on_wc(a, &wc);
	CHECK(a->completed == a->posted, "A: %d posted, %d completed", a->posted, a->completed);
}

struct begin_job {
	atomic_bool done;
	int rc;
	int64_t ms;
	char err[1024];
};

static void *run_begin(void *arg)
{
	struct begin_job *j = arg;
	const char *args[] = {"migrate-begin", "vm1", "--timeout", "20", NULL};

	j->rc = run_cli(j->err, sizeof(j->err), args);
	atomic_store(&j->done, true);
	return NULL;
}

/* Phase 1 up to the report: traffic, migrate-begin in the middle of it. */
static void a_phase1(struct a_state *a, int sock)
{
	struct begin_job job = {0};
	struct msg report;
	pthread_t th;

	a_drive(a, PHASE1_OPS, NULL);
	CHECK(a->flushed == 0 && a->completed == PHASE1_OPS, "A: warm-up");
	REQUIRE(pthread_create(&th, NULL, run_begin, &job) == 0, "pthread_create");
	a_drive(a, 1 << 30, &job.done);
	pthread_join(th, NULL);
	CHECK(job.rc == 0, "migrate-begin vm1: status %d: %s", job.rc, job.err);
	CHECK(await_event(a->e.ctx, &a->t, &a->t.qp_fatal, 1), "A: no IBV_EVENT_QP_FATAL");
	CHECK(post1(a->e.qp, 0, IBV_WR_SEND, 0, NULL, 0, 0, 0, 0) == 0,
	      "A: post_send on the failed QP");
	a->posted++;
	a_drive(a, 0, NULL);
	CHECK(a->flushed >= 1, "A: the last WR was not flushed");
	report = recv_msg(sock);
	CHECK(report.v1 == (uint64_t)a->ok[2], "B's counter %llu, A's successful adds %d",
	      (unsigned long long)report.v1, a->ok[2]);
	CHECK(report.v2 == (uint64_t)a->ok[3], "B received %llu sends, A's succeeded %d",
	      (unsigned long long)report.v2, a->ok[3]);
	printf("phase 1: %d WRs posted by A (%d writes, %d reads, %d adds, %d sends done, %d "
	       "flushed), all completed; B counted %llu adds and %llu sends\n",
	       a->posted, a->ok[0], a->ok[1], a->ok[2], a->ok[3], a->flushed,
	       (unsigned long long)report.v1, (unsigned long long)report.v2);
}

/* Phase 2: B rejoins; migrate-end; new QPs carry a send and a write. */
static void a_phase2(struct a_state *a, int sock)
{
	const char *end_args[] = {"migrate-end", "vm1", "--timeout", "20", NULL};
	char err[1024];
	struct msg b, me;

	b = recv_msg(sock);
	CHECK(await_event(a->e.ctx, &a->t, &a->t.port_active, 1), "A: no PORT_ACTIVE on rejoin");
	CHECK(run_cli(err, sizeof(err), end_args) == 0, "migrate-end vm1: %s", err);
	ep_qp(&a->e, IBV_QPT_RC, &rc_opts);
	qp_connect(a->e.qp, b.qpn, b.lid, &rc_opts);
	me = (struct msg){.qpn = a->e.qp->qp_num, .lid = a->e.lid};
	send_msg(sock, &me);
	(void)recv_msg(sock); /* B is connected */
	memset(a->local.p, 0, 8);
	CHECK(post1(a->e.qp, 1, IBV_WR_SEND, 0, a->local.p, MSG_LEN, a->local.mr->lkey, 0, 0) == 0,
	      "A: send after rejoin");
	EXPECT_WC(a->e.cq, IBV_WC_SUCCESS, 1, IBV_WC_SEND, "A: send after rejoin");
	fill(a->local.p, OP_LEN, 99);
	CHECK(post1(a->e.qp, 2, IBV_WR_RDMA_WRITE, 0, a->local.p, OP_LEN, a->local.mr->lkey,
		    b.addr + WRITE_OFF, b.rkey) == 0,
	      "A: write after rejoin");
	EXPECT_WC(a->e.cq, IBV_WC_SUCCESS, 2, IBV_WC_RDMA_WRITE, "A: write after rejoin");
	send_msg(sock, &me);
	(void)recv_msg(sock); /* B checked it */
	printf("phase 2: vm1 rejoined, migrate-end answered, new QPs carried checked data\n");
}

/* C: a host process with a context open, stopped so that it never acknowledges. */
static int stand_by(void)
{
	struct ibv_context *ctx = dp_open();
	char c = 'r';

	REQUIRE(write(1, &c, 1) == 1, "C: ready");
	for (;;)
		pause();
	ibv_close_device(ctx);
	return 0;
}

/*
 * C runs this program again (test_migrate --stand-by), not a fork of A:
 * A has threads, and a fork child of a threaded process may not start its
 * own (ThreadSanitizer refuses it).
 */
static pid_t start_c(void)
{
	char *argv[] = {(char *)"/proc/self/exe", (char *)"--stand-by", NULL};
	int fd;
	char c;
	pid_t pid = spawn_piped(argv, 1, &fd);

	REQUIRE(read(fd, &c, 1) == 1, "C did not open the device");
	close(fd);
	return pid;
}

/* Phase 3: the timeout names C; migrate-end calls the suspension off. */
static void a_phase3(int sock)
{
	struct msg done = {0};
	const char *begin_args[] = {"migrate-begin", "vm1", "--timeout", "2", NULL};
	const char *end_args[] = {"migrate-end", "vm1", "--timeout", "20", NULL};
	const char *host_args[] = {"migrate-begin", "host", NULL};
	char err[1024], pid_text[32];
	pid_t c = start_c();
	int status;

	CHECK(run_cli(err, sizeof(err), host_args) == 1 && strstr(err, "only a VM can migrate"),
	      "migrate-begin host: %s", err);
	kill(c, SIGSTOP);
	snprintf(pid_text, sizeof(pid_text), "pid %d ", (int)c);
	CHECK(run_cli(err, sizeof(err), begin_args) == 1 && strstr(err, pid_text),
	      "migrate-begin with C stopped should time out naming %s: %s", pid_text, err);
	printf("phase 3: timeout: %s", err);
	CHECK(run_cli(err, sizeof(err), end_args) == 0, "migrate-end (called off): %s", err);
	send_msg(sock, &done);
	kill(c, SIGKILL);
	waitpid(c, &status, 0);
}

static int role_a(int sock)
{
	struct a_state a = {0};
	struct msg me;

	ep_open(&a.e);
	buf_new(&a.local, a.e.pd, MAX_OUT * OP_LEN, MR_ALL);
	ep_qp(&a.e, IBV_QPT_RC, &rc_opts);
	a.b = recv_msg(sock);
	qp_connect(a.e.qp, a.b.qpn, a.b.lid, &rc_opts);
	me = (struct msg){.qpn = a.e.qp->qp_num, .lid = a.e.lid};
	send_msg(sock, &me);
	(void)recv_msg(sock); /* B is connected */
	a_phase1(&a, sock);
	a_phase2(&a, sock);
	a_phase3(sock);
	buf_free(&a.local);
	ep_close(&a.e);
	return check_summary();
}

int main(int argc, char **argv)
{
	int sv[2], status, rc;
	pid_t b;

	REQUIRE(argc == 2, "usage: test_migrate IVRDMA_CLI");
	if (!strcmp(argv[1], "--stand-by"))
		return stand_by();
	cli = argv[1];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	b = fork();
	REQUIRE(b >= 0, "fork");
	if (b == 0) {
		close(sv[0]);
		exit(role_b(sv[1]));
	}
	close(sv[1]);
	rc = role_a(sv[0]);
	if (waitpid(b, &status, 0) != b || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "FAIL: process B (vm1) failed\n");
		return 1;
	}
	return rc;
}
