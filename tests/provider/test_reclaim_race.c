// SPDX-License-Identifier: MIT
/*
 * A dead target's chunks, reclaimed while a survivor's RDMA write into
 * them is still under way, must not take that write's late bytes to
 * whoever gets the chunks next.
 *
 *   test_provider_reclaim_race ROUNDS REGION_FILE
 *
 * Each round: T registers a large buffer (remote write) and waits; S
 * writes the whole of it, WR after WR, with a pattern. T is killed at a
 * random moment (seeded, IVRDMA_KILL_SEED), so that S is most often in
 * the middle of a copy then. This process plays the next participant
 * to allocate: it watches T's chunks in the region file, claims each one
 * the moment ivrdmad frees it (as any allocator's compare-and-swap of the
 * owner tag would), and fills it with 0xab. Once S has seen T's death and
 * exited, every byte of those chunks must still be 0xab: nothing wrote
 * into memory after it was handed on. S's own checks: it sees the death
 * (an error completion) and every WR completes once. Run by
 * run-provider-test.sh (real ivrdmad).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "dp_common.h"
#include "region.h"

#define LEN	(4u << 20) /* the buffer S writes, whole, WR after WR */
#define FILL	0xabu
#define HANG_NS (20ull * 1000000000ull)

struct info {
	uint32_t qpn, rkey;
	uint16_t lid;
	uint64_t addr;
};

static const struct qpopts opts = {
    .access = ALL_REMOTE, .rnr_retry = 7, .retry_cnt = 7, .timeout = 10, .max_sge = 1};

/* One side: an endpoint with an RC QP and a buffer, connected over 'sock'. */
static void side_up(struct ep *e, struct buf *b, int access, int sock, struct info *peer)
{
	struct info me;
	char c = 'C';

	ep_open(e);
	buf_new(b, e->pd, LEN, access);
	ep_qp(e, IBV_QPT_RC, &opts);
	me = (struct info){e->qp->qp_num, b->mr->rkey, e->lid, (uintptr_t)b->p};
	dp_xfer(sock, &me, sizeof(me), true);
	dp_xfer(sock, peer, sizeof(*peer), false);
	qp_connect(e->qp, peer->qpn, peer->lid, &opts);
	/* Both in RTS before S writes: a write to a QP still in INIT would use up its retries. */
	dp_xfer(sock, &c, 1, true);
	dp_xfer(sock, &c, 1, false);
}

static _Noreturn void target(int sock, int ctl)
{
	struct info peer;
	struct ep e;
	struct buf b;
	char c = 'R';

	side_up(&e, &b, MR_ALL, sock, &peer);
	dp_xfer(ctl, &c, 1, true);
	for (;;)
		pause(); /* until killed */
}

/* Writes the whole of T's buffer until a WR fails; then every WR completed once. */
static int survivor(int sock, int ctl)
{
	struct info peer;
	struct ep e;
	struct buf b;
	struct ibv_wc wc = {.status = IBV_WC_SUCCESS};
	uint64_t posted = 0, done = 0;
	char c = 'R';

	side_up(&e, &b, IBV_ACCESS_LOCAL_WRITE, sock, &peer);
	fill(b.p, LEN, 5);
	dp_xfer(ctl, &c, 1, true);
	while (wc.status == IBV_WC_SUCCESS) {
		if (post1(e.qp, posted, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, b.p, LEN, b.mr->lkey,
			  peer.addr, peer.rkey) == 0)
			posted++;
		if (!poll1(e.cq, &wc))
			break;
		CHECK(wc.wr_id == done++, "completion %llu in order", (unsigned long long)wc.wr_id);
	}
	CHECK(wc.status == IBV_WC_RETRY_EXC_ERR || wc.status == IBV_WC_WR_FLUSH_ERR,
	      "the write after the death: %s", ibv_wc_status_str(wc.status));
	CHECK(done == posted && cq_empty(e.cq), "%llu of %llu writes completed",
	      (unsigned long long)done, (unsigned long long)posted);
	buf_free(&b);
	ep_close(&e);
	return check_failures ? 1 : 0;
}

static pid_t spawn(bool is_target, int sock, int other, int *ctl)
{
	int cv[2];
	pid_t pid;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(cv[0]);
		close(other);
		if (is_target)
			target(sock, cv[1]);
		exit(survivor(sock, cv[1]));
	}
	close(cv[1]);
	*ctl = cv[0];
	return pid;
}

/* The owner tag of process 'pid' in the peer table, or 0. */
static uint32_t tag_of(const struct ivrdma_region *r, pid_t pid)
{
	for (uint32_t i = 0; i < r->max_peers; i++) {
		const struct ivrdma_peer *p = ivrdma_region_peer(r, i);

		if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == IVRDMA_PEER_ACTIVE &&
		    p->pid == (uint32_t)pid)
			return ivrdma_owner_tag((uint16_t)i, p->gen);
	}
	return 0;
}

static uint32_t *tags(const struct ivrdma_region *r)
{
	return ivrdma_table_entry(r, &r->chunk_tags, 0);
}

/*
 * After the kill: each chunk of T's, claimed for 'mine' the moment it is
 * free and filled; how many were claimed (all, unless the bound passed).
 */
static uint32_t take_over(const struct ivrdma_region *r, uint32_t *list, uint32_t n, uint32_t mine)
{
	uint64_t end = dp_now_ns() + HANG_NS;
	uint32_t taken = 0;

	while (taken < n && dp_now_ns() < end) {
		for (uint32_t i = 0; i < n; i++) {
			if (list[i] & 0x80000000u || ivrdma_chunk_claim(r, list[i], 1, mine))
				continue;
			memset(ivrdma_chunk_ptr(r, list[i]), FILL, ivrdma_chunk_size(r));
			list[i] |= 0x80000000u;
			taken++;
		}
	}
	return taken;
}

/* Bytes of the taken chunks that are no longer FILL; the chunks freed again. */
static uint64_t late_bytes(const struct ivrdma_region *r, uint32_t *list, uint32_t n, uint32_t mine)
{
	uint64_t bad = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = list[i] & 0x7fffffffu;
		const uint8_t *p = ivrdma_chunk_ptr(r, c);

		if (!(list[i] & 0x80000000u))
			continue;
		for (uint64_t j = 0; j < ivrdma_chunk_size(r); j++)
			bad += p[j] != FILL;
		CHECK(ivrdma_chunk_free(r, c, 1, mine) == 1, "free chunk %u", c);
	}
	return bad;
}

static uint32_t chunks_of(const struct ivrdma_region *r, uint32_t tag, uint32_t *list)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->nr_chunks; i++)
		if (__atomic_load_n(&tags(r)[i], __ATOMIC_ACQUIRE) == tag)
			list[n++] = i;
	return n;
}

static uint64_t round_once(const struct ivrdma_region *r, uint32_t delay_us, uint32_t *list)
{
	uint32_t mine = ivrdma_owner_tag((uint16_t)(r->max_peers - 1), 0xfffe), n, taken;
	int sv[2], ct, cs, st;
	pid_t pt, ps;
	char c;
	uint64_t bad;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	pt = spawn(true, sv[0], sv[1], &ct);
	ps = spawn(false, sv[1], sv[0], &cs);
	close(sv[0]);
	close(sv[1]);
	REQUIRE(read(ct, &c, 1) == 1 && read(cs, &c, 1) == 1, "both sides up");
	n = chunks_of(r, tag_of(r, pt), list);
	REQUIRE(n * ivrdma_chunk_size(r) >= LEN, "T holds %u chunks", n);
	usleep(delay_us);
	kill(pt, SIGKILL);
	REQUIRE(waitpid(pt, &st, 0) == pt, "waitpid T");
	taken = take_over(r, list, n, mine);
	CHECK(taken == n, "%u of T's %u chunks freed and taken", taken, n);
	REQUIRE(waitpid(ps, &st, 0) == ps, "waitpid S");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "S's checks (status %#x)", st);
	bad = late_bytes(r, list, n, mine);
	close(ct);
	close(cs);
	return bad;
}

int main(int argc, char **argv)
{
	struct ivrdma_region r;
	const char *why;
	struct stat st;
	uint32_t rounds = argc == 3 ? (uint32_t)strtoul(argv[1], NULL, 0) : 0, hit = 0, *list;
	const char *s = getenv("IVRDMA_KILL_SEED");
	uint64_t seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)dp_now_ns() % 1000003u, bad;
	void *base;
	int fd;

	REQUIRE(rounds > 0, "usage: test_provider_reclaim_race ROUNDS REGION_FILE");
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open(argv[2], O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0 && fstat(fd, &st) == 0, "open %s: %s", argv[2], strerror(errno));
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(base != MAP_FAILED, "mmap %s", argv[2]);
	REQUIRE(ivrdma_region_open(&r, base, (uint64_t)st.st_size, &why) == 0, "region: %s", why);
	list = calloc(r.nr_chunks, sizeof(*list));
	REQUIRE(list, "calloc");
	printf("seed %llu (IVRDMA_KILL_SEED)\n", (unsigned long long)seed);
	for (uint32_t i = 0; i < rounds; i++) {
		uint32_t delay = (uint32_t)((seed * 2654435761u + i * 40503u) % 20000u);

		bad = round_once(&r, delay, list);
		hit += bad != 0;
		printf("round %u: killed after %u us, %llu bytes written after the chunks were "
		       "taken\n",
		       i, delay, (unsigned long long)bad);
	}
	CHECK(hit == 0, "%u of %u rounds: a write landed in chunks after they were handed on", hit,
	      rounds);
	free(list);
	munmap(base, (size_t)st.st_size);
	close(fd);
	return check_summary();
}
