// SPDX-License-Identifier: MIT
/*
 * Reclaim of a peer that dies without a word: a child attaches through the
 * transport, claims chunks and QP/CQ/MR slots under its owner tag, writes
 * into them, and is killed with SIGKILL. The parent, another peer, must be
 * told (a leave notice, then its control vector rings), and by then every
 * chunk and slot the child held is free, its peer entry too, while the
 * parent's own chunks and slots are untouched.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "ivshmem_transport.h"
#include "region.h"
#include "shm_atomic.h"

#define T_MS	 5000
#define NR_RUNS	 3 /* chunk runs of 1, 2, 3 chunks */
#define NR_SLOTS 3 /* per table */

/* What the child tells the parent it holds. */
struct holdings {
	int32_t peer_id;
	uint32_t tag;
	int64_t run_first[NR_RUNS];
	uint32_t run_len[NR_RUNS];
	int32_t qp[NR_SLOTS], cq[NR_SLOTS], mr[NR_SLOTS];
};

struct events {
	int left[IVRDMA_MAX_PEERS];
	int joined[IVRDMA_MAX_PEERS];
};

static struct test_daemon daemon_;

static void on_peer(void *arg, uint16_t peer, enum ivt_peer_event ev)
{
	struct events *e = arg;

	if (peer < IVRDMA_MAX_PEERS)
		(ev == IVT_PEER_LEFT ? e->left : e->joined)[peer]++;
}

static uint32_t my_tag(const struct ivrdma_region *r, int id)
{
	return ivrdma_owner_tag((uint16_t)id, ivrdma_region_peer(r, (uint32_t)id)->gen);
}

/* Claims a free slot of table t by CAS of its owner tag from 0. */
static int claim_slot(const struct ivrdma_region *r, const struct ivrdma_table *t, uint32_t tag,
		      uint8_t fill)
{
	for (uint32_t i = 0; i < t->entries; i++) {
		struct ivrdma_obj_hdr *h = ivrdma_table_entry(r, t, i);
		uint32_t expected = 0;

		if (shm_cas32(&h->owner, &expected, tag)) {
			h->seq++;
			memset(h + 1, fill, t->entry_size - sizeof(*h));
			return (int)i;
		}
	}
	return -1;
}

static uint32_t slot_owner(const struct ivrdma_region *r, const struct ivrdma_table *t, int i)
{
	struct ivrdma_obj_hdr *h = ivrdma_table_entry(r, t, (uint32_t)i);

	return shm_load_acquire32(&h->owner);
}

/* True if the slot's body (behind the header) is all 'fill'. */
static bool slot_body_is(const struct ivrdma_region *r, const struct ivrdma_table *t, int i,
			 uint8_t fill)
{
	const uint8_t *p = ivrdma_table_entry(r, t, (uint32_t)i);

	for (uint32_t b = sizeof(struct ivrdma_obj_hdr); b < t->entry_size; b++)
		if (p[b] != fill)
			return false;
	return true;
}

static bool chunk_is(const struct ivrdma_region *r, uint32_t idx, uint8_t fill)
{
	const uint8_t *p = ivrdma_chunk_ptr(r, idx);

	for (uint64_t b = 0; p && b < ivrdma_chunk_size(r); b++)
		if (p[b] != fill)
			return false;
	return p != NULL;
}

static uint32_t chunk_tag(const struct ivrdma_region *r, uint32_t idx)
{
	uint32_t *tags = (uint32_t *)(r->base + r->chunk_tags.offset);

	return shm_load_acquire32(&tags[idx]);
}

#define CHILD_FILL  0xc5
#define PARENT_FILL 0x9a

/* The child: attach, claim, fill, report, then wait to be killed. */
static void child(int report_fd)
{
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST, .path = daemon_.host_sock};
	struct holdings h;
	struct ivrdma_region r;
	const char *why;
	struct ivt *t;
	char err[256];

	/* Not the harness's: the parent cleans up. */
	signal(SIGSEGV, SIG_DFL);
	signal(SIGABRT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	memset(&h, 0xff, sizeof(h));
	if (ivt_attach(&opt, &t, err, sizeof(err)) ||
	    ivrdma_region_open(&r, ivt_region_base(t), ivt_region_size(t), &why)) {
		fprintf(stderr, "child: %s\n", err);
		_exit(1);
	}
	h.peer_id = ivt_peer_id(t);
	h.tag = my_tag(&r, h.peer_id);
	for (uint32_t i = 0; i < NR_RUNS; i++) {
		h.run_len[i] = i + 1;
		h.run_first[i] = ivrdma_chunk_alloc(&r, i + 1, h.tag, 7 * i);
		for (uint32_t c = 0; h.run_first[i] >= 0 && c < i + 1; c++)
			memset(ivrdma_chunk_ptr(&r, (uint32_t)h.run_first[i] + c), CHILD_FILL,
			       ivrdma_chunk_size(&r));
	}
	for (int i = 0; i < NR_SLOTS; i++) {
		h.qp[i] = claim_slot(&r, &r.qps, h.tag, CHILD_FILL);
		h.cq[i] = claim_slot(&r, &r.cqs, h.tag, CHILD_FILL);
		h.mr[i] = claim_slot(&r, &r.mrs, h.tag, CHILD_FILL);
	}
	if (write(report_fd, &h, sizeof(h)) != sizeof(h))
		_exit(1);
	for (;;)
		pause();
}

/* Handles notices and control rings until both happened for 'peer'. */
static bool wait_leave_and_ring(struct ivt *t, struct events *ev, int peer, int64_t deadline)
{
	bool rang = false;

	while ((!ev->left[peer] || !rang) && test_now_ms() < deadline) {
		struct pollfd pfd[2] = {
		    {.fd = ivt_control_fd(t), .events = POLLIN},
		    {.fd = ivt_vector_fd(t, IVRDMA_VEC_CONTROL), .events = POLLIN},
		};

		poll(pfd, 2, (int)(deadline - test_now_ms()));
		if (pfd[0].revents & POLLIN)
			CHECK(ivt_process_control(t) >= 0, "control channel healthy");
		/* The ring that counts is the one after the leave notice. */
		if (ev->left[peer] && ivt_consume(t, IVRDMA_VEC_CONTROL) > 0)
			rang = true;
	}
	return ev->left[peer] && rang;
}

static int64_t chunks_used_status(void)
{
	json_object *st = test_daemon_status(&daemon_), *region, *v;
	int64_t out = -1;

	if (st && json_object_object_get_ex(st, "region", &region) &&
	    json_object_object_get_ex(region, "chunks_used", &v))
		out = json_object_get_int64(v);
	json_object_put(st);
	return out;
}

static void one_round(struct ivt *t, const struct ivrdma_region *r, struct events *ev, uint32_t my,
		      int64_t my_chunk, int my_qp, int round)
{
	struct holdings h;
	int pipefd[2];
	pid_t pid;
	int status = 0, id;
	int64_t deadline = test_now_ms() + T_MS;
	uint32_t owned = 0;

	REQUIRE(pipe(pipefd) == 0, "pipe");
	fflush(stdout);
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(pipefd[0]);
		child(pipefd[1]);
	}
	close(pipefd[1]);
	REQUIRE(read(pipefd[0], &h, sizeof(h)) == sizeof(h), "round %d: the child reports", round);
	close(pipefd[0]);
	id = h.peer_id;
	REQUIRE(id >= 0 && id < (int)r->max_peers && id != ivt_peer_id(t), "child peer id %d", id);
	printf("round %d: child pid %d is peer %d, tag 0x%08x\n", round, (int)pid, id, h.tag);

	/* The parent sees the child's claims and bytes in the shared region. */
	while (!ivt_peer_known(t, (uint16_t)id) && test_now_ms() < deadline) {
		struct pollfd pfd = {.fd = ivt_control_fd(t), .events = POLLIN};

		poll(&pfd, 1, 50);
		ivt_process_control(t);
	}
	CHECK(ivt_peer_known(t, (uint16_t)id), "parent knows the child");
	/* Each round's child gets an ID not used before (ivrdmad hands IDs out in turn). */
	CHECK(ev->joined[id] == 1, "join notice for peer %d", id);
	CHECK(h.tag == ivrdma_owner_tag((uint16_t)id, 1), "child's generation is 1");
	CHECK(shm_load_acquire32(&ivrdma_region_peer(r, (uint32_t)id)->state) == IVRDMA_PEER_ACTIVE,
	      "child's peer entry active");
	for (int i = 0; i < NR_RUNS; i++) {
		REQUIRE(h.run_first[i] >= 0, "child allocated run %d", i);
		for (uint32_t c = 0; c < h.run_len[i]; c++) {
			uint32_t idx = (uint32_t)h.run_first[i] + c;

			CHECK(chunk_tag(r, idx) == h.tag, "chunk %u tagged by the child", idx);
			CHECK(chunk_is(r, idx, CHILD_FILL), "chunk %u holds the child's bytes",
			      idx);
			owned++;
		}
	}
	for (int i = 0; i < NR_SLOTS; i++) {
		REQUIRE(h.qp[i] >= 0 && h.cq[i] >= 0 && h.mr[i] >= 0, "child claimed slots");
		CHECK(slot_owner(r, &r->qps, h.qp[i]) == h.tag &&
			  slot_body_is(r, &r->qps, h.qp[i], CHILD_FILL),
		      "QP slot %d is the child's", h.qp[i]);
		CHECK(slot_owner(r, &r->cqs, h.cq[i]) == h.tag, "CQ slot %d", h.cq[i]);
		CHECK(slot_owner(r, &r->mrs, h.mr[i]) == h.tag, "MR slot %d", h.mr[i]);
	}
	CHECK(chunks_used_status() == 1 + owned, "status counts %u + 1 chunks in use", owned);

	/* Drain earlier control rings: the one after the leave is what counts. */
	ivt_consume(t, IVRDMA_VEC_CONTROL);
	REQUIRE(kill(pid, SIGKILL) == 0, "kill -9 the child");
	REQUIRE(waitpid(pid, &status, 0) == pid, "reap the child");
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child died of SIGKILL");
	CHECK(wait_leave_and_ring(t, ev, id, test_now_ms() + T_MS),
	      "leave notice and control ring for peer %d (left %d)", id, ev->left[id]);
	CHECK(ev->left[id] == 1, "exactly one leave notice this round");
	CHECK(!ivt_peer_known(t, (uint16_t)id), "child no longer known");
	CHECK(ivt_ring(t, (uint16_t)id, IVRDMA_VEC_COMPLETION) == -ENOENT, "ring the dead: ENOENT");

	/* Everything the child held is free; the slots are wiped. */
	CHECK(shm_load_acquire32(&ivrdma_region_peer(r, (uint32_t)id)->state) == IVRDMA_PEER_FREE,
	      "child's peer entry free");
	for (int i = 0; i < NR_RUNS; i++)
		for (uint32_t c = 0; c < h.run_len[i]; c++)
			CHECK(chunk_tag(r, (uint32_t)h.run_first[i] + c) == 0, "chunk %lld freed",
			      (long long)h.run_first[i] + c);
	for (int i = 0; i < NR_SLOTS; i++) {
		CHECK(slot_owner(r, &r->qps, h.qp[i]) == 0 && slot_body_is(r, &r->qps, h.qp[i], 0),
		      "QP slot %d free and wiped", h.qp[i]);
		CHECK(slot_owner(r, &r->cqs, h.cq[i]) == 0 && slot_body_is(r, &r->cqs, h.cq[i], 0),
		      "CQ slot %d free and wiped", h.cq[i]);
		CHECK(slot_owner(r, &r->mrs, h.mr[i]) == 0 && slot_body_is(r, &r->mrs, h.mr[i], 0),
		      "MR slot %d free and wiped", h.mr[i]);
	}
	CHECK(ivrdma_chunks_in_use(r) == 1, "one chunk in use (mine): %u", ivrdma_chunks_in_use(r));
	CHECK(chunks_used_status() == 1, "status: chunks_used back to 1");

	/* Mine untouched. */
	CHECK(chunk_tag(r, (uint32_t)my_chunk) == my, "my chunk still mine");
	CHECK(chunk_is(r, (uint32_t)my_chunk, PARENT_FILL), "my chunk's bytes intact");
	CHECK(slot_owner(r, &r->qps, my_qp) == my && slot_body_is(r, &r->qps, my_qp, PARENT_FILL),
	      "my QP slot intact");
}

int main(void)
{
	struct events ev = {0};
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST, .on_peer = on_peer, .cb_arg = &ev};
	struct ivrdma_region r;
	const char *why;
	struct ivt *t;
	char err[256];
	uint32_t my;
	int64_t my_chunk;
	int my_qp;

	test_watchdog(60);
	REQUIRE(test_daemon_start(&daemon_, 0, NULL) == 0, "ivrdmad starts");
	opt.path = daemon_.host_sock;
	REQUIRE(ivt_attach(&opt, &t, err, sizeof(err)) == 0, "parent attaches: %s", err);
	REQUIRE(ivrdma_region_open(&r, ivt_region_base(t), ivt_region_size(t), &why) == 0, "%s",
		why);
	my = my_tag(&r, ivt_peer_id(t));
	my_chunk = ivrdma_chunk_alloc(&r, 1, my, 0);
	REQUIRE(my_chunk >= 0, "parent allocates a chunk");
	memset(ivrdma_chunk_ptr(&r, (uint32_t)my_chunk), PARENT_FILL, ivrdma_chunk_size(&r));
	my_qp = claim_slot(&r, &r.qps, my, PARENT_FILL);
	REQUIRE(my_qp >= 0, "parent claims a QP slot");

	/* The same peer ID comes back each round with the next generation. */
	for (int round = 0; round < 3; round++)
		one_round(t, &r, &ev, my, my_chunk, my_qp, round);

	ivt_detach(t);
	CHECK(test_daemon_stop(&daemon_), "clean stop");
	return check_summary();
}
