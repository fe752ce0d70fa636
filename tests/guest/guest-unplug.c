// SPDX-License-Identifier: MIT
/*
 * The guest's side of the unplug and migration tests (run-verbs-vm.sh
 * --scenario unplug and migrate): a verbs process of vm1 while the host
 * runs `ivrdma migrate-begin vm1`, unplugs the ivshmem device (QMP
 * device_del), migrates the VM to another QEMU and ivrdmad (migrate
 * only), plugs a device in again (device_add) and runs `ivrdma
 * migrate-end vm1`.
 *
 * 1. ivrdma0 opened; a malloc'ed heap buffer (not page-aligned) registered
 *    with known patterns; two RC QPs of this context connected to each
 *    other (loopback, my own LID): A keeps RDMA writes, RDMA reads and
 *    sends to B in flight (all signaled, counted), B keeps receives
 *    posted; a second thread rewrites and checks a part of the registered
 *    buffer all along, until the unplug. Prints "READY" once transfers
 *    went through.
 * 2. On IBV_EVENT_DEVICE_FATAL (migrate-begin): stops posting, prints
 *    "FATAL", waits until the device nodes are gone (the unplug), then
 *    polls every completion (each WR posted completes exactly once:
 *    success or flush; polled on the private copy of the region), checks
 *    the buffer and the thread's checks, deregisters, destroys, closes
 *    (each returns 0), writes a new pattern into the buffer (no SIGBUS)
 *    and prints "LEFT". From then on, through the migration, it waits for
 *    the device.
 * 3. Opens ivrdma0 again until it works (the device is plugged back in),
 *    connects a new loopback pair, moves checked data (write, read, send)
 *    and prints "FIRST-TRANSFER" after the first. Then the old buffer:
 *    it still holds the pattern of step 2; registered again, it is the
 *    source of a write and the target of a read over the new pair.
 *    Prints "REJOINED" with the port's LID and GID.
 *
 * With --setup (the migrate test: another region, another subnet), step 3
 * waits, once ivrdma0 opened again, until the sysfs tree names the port's
 * new LID: the packaged udev rule (60-ivrdma.rules) runs `ivrdma setup`
 * when the device appears, and libibverbs reads the port's GID from the
 * tree it writes, whose subnet half is then the destination region's.
 *
 * Output lines are the host's cues; exit status 0 if every check passed.
 * usage: guest-unplug [SECONDS to wait for each cue, default 300] [--setup]
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../provider/dp_common.h"

#define MAX_OUT	    8  /* A's WRs in flight */
#define N_RECV	    32 /* B's receives posted */
#define MSG_LEN	    64
#define OP_LEN	    4096
#define W_SRC	    0 /* pattern 11: A's writes' source */
#define W_DST	    4096
#define R_SRC	    8192 /* pattern 12: A's reads' source */
#define R_DST	    12288
#define SEND_OFF    16384 /* MAX_OUT send slots */
#define RECV_OFF    (SEND_OFF + MAX_OUT * MSG_LEN)
#define APP_OFF	    32768 /* the thread's part */
#define APP_LEN	    32768
#define BUF_LEN	    (APP_OFF + APP_LEN)
#define READY_AFTER 60 /* successful WRs before READY */

static const struct qpopts rc_opts = {
    .access = ALL_REMOTE, .rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .sig_all = true};

static int wait_s = 300;
static bool setup_again; /* --setup */

struct state {
	struct ep a, b; /* one context: b shares a's ctx, pd and cq */
	uint8_t *raw, *mem;
	struct ibv_mr *mr;
	int posted, completed, ok, flushed;	/* A's send queue */
	int rposted, rcompleted, rok, rflushed; /* B's receives */
	int writes_ok, reads_ok, sends_ok;
	uint64_t send_seq, next_recv_seq;
	bool post_failed;
	int qp_fatal, port_err, device_fatal, other_events;
	atomic_bool stop;
	int app_errors, app_rounds;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The thread's own use of registered bytes: rewritten and checked, all along. */
static void *app_thread(void *arg)
{
	struct state *s = arg;
	uint32_t gen = 100;

	while (!atomic_load(&s->stop)) {
		fill(s->mem + APP_OFF, APP_LEN, gen);
		if (pat_diff(s->mem + APP_OFF, APP_LEN, gen) != APP_LEN)
			s->app_errors++;
		s->app_rounds++;
		gen++;
	}
	return NULL;
}

/* A heap buffer that is not page-aligned, with its patterns. */
static uint8_t *heap_buf(uint8_t **raw)
{
	*raw = malloc(BUF_LEN + 64);
	REQUIRE(*raw, "malloc");
	uint8_t *p = *raw + (((uintptr_t)*raw % page_size()) ? 0 : 40);

	memset(p, 0xee, BUF_LEN);
	fill(p + W_SRC, OP_LEN, 11);
	fill(p + R_SRC, OP_LEN, 12);
	return p;
}

static void b_post_recv(struct state *s, int i)
{
	if (post_recv1(s->b.qp, (uint64_t)i, s->mem + RECV_OFF + i * MSG_LEN, MSG_LEN,
		       s->mr->lkey) == 0)
		s->rposted++;
}

/* A's next WR: a write, a read or a send (carrying its sequence number), in turn. */
static void a_post(struct state *s)
{
	int kind = s->posted % 3, rc;
	uint8_t *slot = s->mem + SEND_OFF + (s->send_seq % MAX_OUT) * MSG_LEN;
	uint64_t id = (uint64_t)kind << 56 | (uint64_t)s->posted;

	if (kind == 0)
		rc = post1(s->a.qp, id, IBV_WR_RDMA_WRITE, 0, s->mem + W_SRC, OP_LEN, s->mr->lkey,
			   (uintptr_t)(s->mem + W_DST), s->mr->rkey);
	else if (kind == 1)
		rc = post1(s->a.qp, id, IBV_WR_RDMA_READ, 0, s->mem + R_DST, OP_LEN, s->mr->lkey,
			   (uintptr_t)(s->mem + R_SRC), s->mr->rkey);
	else {
		memcpy(slot, &s->send_seq, sizeof(s->send_seq));
		rc = post1(s->a.qp, id, IBV_WR_SEND, 0, slot, MSG_LEN, s->mr->lkey, 0, 0);
	}
	if (rc) {
		s->post_failed = true; /* the QP failed: no more posts */
		return;
	}
	if (kind == 2)
		s->send_seq++;
	s->posted++;
}

static void on_wc(struct state *s, const struct ibv_wc *wc, bool repost)
{
	bool ok = wc->status == IBV_WC_SUCCESS;
	uint64_t seq;

	CHECK(ok || wc->status == IBV_WC_WR_FLUSH_ERR, "completion status %s (qp %u)",
	      ibv_wc_status_str(wc->status), wc->qp_num);
	if (wc->qp_num == s->a.qp->qp_num) {
		s->completed++;
		s->ok += ok;
		s->flushed += !ok;
		s->writes_ok += ok && wc->wr_id >> 56 == 0;
		s->reads_ok += ok && wc->wr_id >> 56 == 1;
		s->sends_ok += ok && wc->wr_id >> 56 == 2;
		return;
	}
	s->rcompleted++;
	s->rflushed += !ok;
	if (!ok)
		return;
	s->rok++;
	memcpy(&seq, s->mem + RECV_OFF + wc->wr_id * MSG_LEN, sizeof(seq));
	CHECK(seq == s->next_recv_seq, "send %llu arrived, expected %llu", (unsigned long long)seq,
	      (unsigned long long)s->next_recv_seq);
	s->next_recv_seq = seq + 1;
	if (repost)
		b_post_recv(s, (int)wc->wr_id);
}

static int poll_some(struct state *s, bool repost)
{
	struct ibv_wc wc[16];
	int n = ibv_poll_cq(s->a.cq, 16, wc);

	CHECK(n >= 0, "ibv_poll_cq returned %d", n);
	for (int i = 0; i < n; i++)
		on_wc(s, &wc[i], repost);
	return n;
}

static void drain_events(struct state *s, int ms)
{
	struct ibv_async_event ev;

	while (!s->device_fatal && async_pending(s->a.ctx, ms) &&
	       ibv_get_async_event(s->a.ctx, &ev) == 0) {
		if (ev.event_type == IBV_EVENT_QP_FATAL)
			s->qp_fatal++;
		else if (ev.event_type == IBV_EVENT_PORT_ERR)
			s->port_err++;
		else if (ev.event_type == IBV_EVENT_DEVICE_FATAL)
			s->device_fatal++;
		else
			s->other_events++;
		ibv_ack_async_event(&ev);
		ms = 0;
	}
}

/* Phase 1: traffic until IBV_EVENT_DEVICE_FATAL. */
static void traffic(struct state *s)
{
	uint64_t end = now_s() + (uint64_t)wait_s;
	bool ready = false;

	while (!s->device_fatal) {
		/*
		 * Once the QPs fail, neither posts nor polls: what is still in
		 * the CQ then is polled after the unplug, on the private copy.
		 */
		bool failed = s->post_failed || s->qp_fatal || s->flushed || s->rflushed;

		while (!failed && s->posted - s->completed < MAX_OUT && !s->post_failed)
			a_post(s);
		if (!failed)
			poll_some(s, true);
		drain_events(s, failed ? 10 : 0);
		if (!ready && s->ok >= READY_AFTER) {
			printf("READY %d WRs done, buffer %p (page offset %zu)\n", s->ok,
			       (void *)s->mem, (uintptr_t)s->mem % page_size());
			ready = true;
		}
		REQUIRE(now_s() <= end, "no IBV_EVENT_DEVICE_FATAL within %d s", wait_s);
	}
	REQUIRE(ready, "DEVICE_FATAL before READY");
	printf("FATAL A: %d posted, %d polled; B: %d posted, %d polled; events qp_fatal %d"
	       " port_err %d other %d\n",
	       s->posted, s->completed, s->rposted, s->rcompleted, s->qp_fatal, s->port_err,
	       s->other_events);
}

static bool devices_gone(void)
{
	return access("/dev/ivshmem0", F_OK) && access("/dev/infiniband/ivrdma0", F_OK);
}

/*
 * --setup: the udev rule's `ivrdma setup` rewrote the sysfs tree for the
 * region the device is on now: the tree's LID is the port's (the port's
 * comes from the region). setup writes the LID after the GID.
 */
static void wait_for_setup(const struct ep *a, uint64_t end)
{
	const char *root = getenv("SYSFS_PATH");
	char path[PATH_MAX];
	unsigned int lid = 0;
	double t0 = now_ms();

	snprintf(path, sizeof(path), "%s/class/infiniband/ivrdma0/ports/1/lid",
		 root ? root : "/sys");
	for (;;) {
		FILE *f = fopen(path, "r");
		bool current = f && fscanf(f, "%x", &lid) == 1 && lid == a->lid;

		if (f)
			fclose(f);
		if (current)
			break;
		REQUIRE(now_s() <= end, "%s says LID %u, the port has %u, after %d s", path, lid,
			a->lid, wait_s);
		usleep(100000);
	}
	printf("SET-UP by udev: the tree names LID %u (waited %.0f ms after the open)\n", lid,
	       now_ms() - t0);
}

/* Every WR posted completes exactly once; then the CQ stays empty. */
static void poll_all(struct state *s)
{
	uint64_t end = now_s() + DP_DEADLINE_S;

	while ((s->completed < s->posted || s->rcompleted < s->rposted) && now_s() <= end)
		poll_some(s, false);
	usleep(200000);
	CHECK(poll_some(s, false) == 0, "more completions than WRs");
	CHECK(s->completed == s->posted, "A: %d WRs posted, %d completed", s->posted, s->completed);
	CHECK(s->rcompleted == s->rposted, "B: %d receives posted, %d completed", s->rposted,
	      s->rcompleted);
	CHECK(s->rok == s->sends_ok, "B received %d, A's sends that succeeded %d", s->rok,
	      s->sends_ok);
	CHECK(s->qp_fatal == 2 && s->device_fatal == 1 && s->other_events == 0,
	      "events: qp_fatal %d device_fatal %d other %d", s->qp_fatal, s->device_fatal,
	      s->other_events);
}

/* The buffer after the teardown: its bytes, still readable and writable. */
static void check_buffer(struct state *s, const char *when)
{
	CHECK(pat_diff(s->mem + W_SRC, OP_LEN, 11) == OP_LEN, "%s: write source", when);
	CHECK(pat_diff(s->mem + R_SRC, OP_LEN, 12) == OP_LEN, "%s: read source", when);
	CHECK(s->writes_ok > 0 && pat_diff(s->mem + W_DST, OP_LEN, 11) == OP_LEN,
	      "%s: RDMA write target (%d writes succeeded)", when, s->writes_ok);
	CHECK(s->reads_ok > 0 && pat_diff(s->mem + R_DST, OP_LEN, 12) == OP_LEN,
	      "%s: RDMA read target (%d reads succeeded)", when, s->reads_ok);
	fill(s->mem, BUF_LEN, 77);
	CHECK(pat_diff(s->mem, BUF_LEN, 77) == BUF_LEN, "%s: rewriting the buffer", when);
}

static void setup(struct state *s, pthread_t *thread)
{
	ep_open(&s->a);
	s->b = s->a;
	s->b.qp = NULL;
	s->mem = heap_buf(&s->raw);
	s->mr = ibv_reg_mr(s->a.pd, s->mem, BUF_LEN, MR_ALL);
	REQUIRE(s->mr, "reg_mr of a heap buffer: %s", strerror(errno));
	pair_connect(&s->a, &s->b, IBV_QPT_RC, &rc_opts, &rc_opts);
	for (int i = 0; i < N_RECV; i++)
		b_post_recv(s, i);
	REQUIRE(s->rposted == N_RECV, "post_recv");
	REQUIRE(pthread_create(thread, NULL, app_thread, s) == 0, "pthread_create");
}

/* Phase 2: after the unplug, on what is left of the context. */
static void leave(struct state *s, pthread_t thread)
{
	uint64_t end = now_s() + (uint64_t)wait_s;
	struct ibv_mr *mr;
	int polled;

	while (!devices_gone()) {
		REQUIRE(now_s() <= end, "the device nodes are still there after %d s", wait_s);
		usleep(100000);
	}
	printf("UNPLUGGED\n");
	polled = s->completed + s->rcompleted;
	poll_all(s);
	polled = s->completed + s->rcompleted - polled;
	CHECK(polled > 0, "no completion left to poll after the unplug");
	atomic_store(&s->stop, true);
	pthread_join(thread, NULL);
	CHECK(s->app_errors == 0 && s->app_rounds > 0, "the thread: %d errors in %d rounds",
	      s->app_errors, s->app_rounds);
	check_buffer(s, "after the unplug");
	mr = ibv_reg_mr(s->a.pd, s->mem, OP_LEN, MR_ALL);
	CHECK(!mr && errno == EIO, "a new registration after DEVICE_FATAL: %s",
	      mr ? "succeeded" : strerror(errno));
	CHECK(ibv_dereg_mr(s->mr) == 0, "dereg_mr");
	CHECK(ibv_destroy_qp(s->b.qp) == 0, "destroy_qp B");
	ep_close(&s->a);
	fill(s->mem, BUF_LEN, 78);
	CHECK(pat_diff(s->mem, BUF_LEN, 78) == BUF_LEN, "the buffer after close");
	printf(
	    "LEFT A: %d posted, %d ok, %d flushed; B: %d receives, %d ok, %d flushed;"
	    " %d completions polled after the unplug; thread: %d rounds;"
	    " events qp_fatal %d port_err %d device_fatal %d other %d; checks failed so far %d\n",
	    s->posted, s->ok, s->flushed, s->rposted, s->rok, s->rflushed, polled, s->app_rounds,
	    s->qp_fatal, s->port_err, s->device_fatal, s->other_events, check_failures);
}

/* ivrdma0 opened, with a PD, a CQ and an active port; false if not (yet). */
static bool try_open(struct ep *e)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_port_attr pa;

	memset(e, 0, sizeof(*e));
	for (int i = 0; list && list[i] && !e->ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), "ivrdma0"))
			e->ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	if (!e->ctx)
		return false;
	e->pd = ibv_alloc_pd(e->ctx);
	e->cq = e->pd ? ibv_create_cq(e->ctx, DP_CQE, NULL, NULL, 0) : NULL;
	if (e->cq && ibv_query_port(e->ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE) {
		e->lid = pa.lid;
		return true;
	}
	if (e->cq)
		ibv_destroy_cq(e->cq);
	if (e->pd)
		ibv_dealloc_pd(e->pd);
	ibv_close_device(e->ctx);
	return false;
}

/*
 * The buffer of phase 1 after the device came back (after the migration,
 * in the live test): still its contents, and registered again it moves
 * data over the new pair 'a' (writing into 'mem', reading from it).
 */
static void old_buffer(struct state *s, struct ep *a, uint8_t *mem, struct ibv_mr *mr)
{
	struct ibv_mr *old;

	CHECK(pat_diff(s->mem, BUF_LEN, 78) == BUF_LEN, "the old buffer after the rejoin");
	old = ibv_reg_mr(a->pd, s->mem, BUF_LEN, MR_ALL);
	REQUIRE(old, "reg_mr of the old buffer after the rejoin: %s", strerror(errno));
	REQUIRE(post1(a->qp, 4, IBV_WR_RDMA_WRITE, 0, s->mem, OP_LEN, old->lkey,
		      (uintptr_t)(mem + W_DST), mr->rkey) == 0,
		"post write from the old buffer");
	EXPECT_WC(a->cq, IBV_WC_SUCCESS, 4, IBV_WC_RDMA_WRITE, "write from the old buffer");
	CHECK(pat_diff(mem + W_DST, OP_LEN, 78) == OP_LEN, "bytes written from the old buffer");
	REQUIRE(post1(a->qp, 5, IBV_WR_RDMA_READ, 0, s->mem + R_DST, OP_LEN, old->lkey,
		      (uintptr_t)(mem + R_SRC), mr->rkey) == 0,
		"post read into the old buffer");
	EXPECT_WC(a->cq, IBV_WC_SUCCESS, 5, IBV_WC_RDMA_READ, "read into the old buffer");
	CHECK(pat_diff(s->mem + R_DST, OP_LEN, 12) == OP_LEN, "bytes read into the old buffer");
	CHECK(ibv_dereg_mr(old) == 0, "dereg_mr of the old buffer");
	free(s->raw);
	printf("OLD-BUFFER kept its bytes; a write from it and a read into it checked\n");
}

/* "xxxx:...:xxxx", as `ivrdma status` prints a GID. */
static void gid_text(const union ibv_gid *gid, char *out, size_t len)
{
	size_t n = 0;

	for (int i = 0; i < 16 && n < len; i += 2)
		n += (size_t)snprintf(out + n, len - n, "%s%02x%02x", i ? ":" : "", gid->raw[i],
				      gid->raw[i + 1]);
}

/* Phase 3: the device is back; a new pair moves checked data. */
static void rejoin(struct state *s)
{
	uint64_t end = now_s() + (uint64_t)wait_s;
	double t0 = now_ms();
	struct ep a, b;
	uint8_t *raw, *mem = heap_buf(&raw);
	struct ibv_mr *mr;
	union ibv_gid gid;
	char gid_str[48];
	int tries = 1;

	while (!try_open(&a)) {
		REQUIRE(now_s() <= end, "ivrdma0 did not open again within %d s", wait_s);
		usleep(100000);
		tries++;
	}
	if (setup_again)
		wait_for_setup(&a, end);
	b = a;
	b.qp = NULL;
	mr = ibv_reg_mr(a.pd, mem, BUF_LEN, MR_ALL);
	REQUIRE(mr, "reg_mr after the rejoin: %s", strerror(errno));
	pair_connect(&a, &b, IBV_QPT_RC, &rc_opts, &rc_opts);
	REQUIRE(post_recv1(b.qp, 9, mem + RECV_OFF, MSG_LEN, mr->lkey) == 0, "post_recv");
	REQUIRE(post1(a.qp, 1, IBV_WR_RDMA_WRITE, 0, mem + W_SRC, OP_LEN, mr->lkey,
		      (uintptr_t)(mem + W_DST), mr->rkey) == 0,
		"post write");
	EXPECT_WC(a.cq, IBV_WC_SUCCESS, 1, IBV_WC_RDMA_WRITE, "write after the rejoin");
	printf("FIRST-TRANSFER after %d opens, %.0f ms after the first\n", tries, now_ms() - t0);
	REQUIRE(post1(a.qp, 2, IBV_WR_RDMA_READ, 0, mem + R_DST, OP_LEN, mr->lkey,
		      (uintptr_t)(mem + R_SRC), mr->rkey) == 0,
		"post read");
	EXPECT_WC(a.cq, IBV_WC_SUCCESS, 2, IBV_WC_RDMA_READ, "read after the rejoin");
	fill(mem + SEND_OFF, MSG_LEN, 13);
	REQUIRE(post1(a.qp, 3, IBV_WR_SEND, 0, mem + SEND_OFF, MSG_LEN, mr->lkey, 0, 0) == 0,
		"post send");
	for (int i = 0; i < 2; i++) {
		struct ibv_wc wc;

		poll1(a.cq, &wc);
		CHECK(wc.status == IBV_WC_SUCCESS && (wc.wr_id == 3 || wc.wr_id == 9),
		      "send/receive after the rejoin: %s wr_id %llu", ibv_wc_status_str(wc.status),
		      (unsigned long long)wc.wr_id);
	}
	CHECK(pat_diff(mem + W_DST, OP_LEN, 11) == OP_LEN, "written bytes after the rejoin");
	CHECK(pat_diff(mem + R_DST, OP_LEN, 12) == OP_LEN, "read bytes after the rejoin");
	CHECK(pat_diff(mem + RECV_OFF, MSG_LEN, 13) == MSG_LEN, "received bytes after the rejoin");
	old_buffer(s, &a, mem, mr);
	REQUIRE(ibv_query_gid(a.ctx, 1, 0, &gid) == 0, "query_gid");
	gid_text(&gid, gid_str, sizeof(gid_str));
	CHECK(ibv_dereg_mr(mr) == 0, "dereg_mr");
	CHECK(ibv_destroy_qp(b.qp) == 0, "destroy_qp B");
	ep_close(&a);
	free(raw);
	printf("REJOINED lid %u gid %s: write, read and send checked\n", a.lid, gid_str);
}

int main(int argc, char **argv)
{
	static struct state s;
	pthread_t thread;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1)
		wait_s = atoi(argv[1]);
	setup_again = argc > 2 && !strcmp(argv[2], "--setup");
	setup(&s, &thread);
	traffic(&s);
	leave(&s, thread);
	rejoin(&s);
	return check_summary();
}
