// SPDX-License-Identifier: MIT
/*
 * The data path through plain libibverbs, every byte verified.
 *
 *   test_provider_datapath verbs    every opcode on RC and UC, sizes, SGLs, inline,
 *                                   signaled/unsignaled, chains
 *   test_provider_datapath errors   every error completion, the QP state after it,
 *                                   flushes, post_send/post_recv errnos
 *   test_provider_datapath mr       MR move and restore
 *   test_provider_datapath sleep    one-sided operations while the target sleeps,
 *                                   a killed peer (two processes), a waiter that
 *                                   polls its channel before it sleeps
 *   test_provider_datapath modify   the modify_qp state machine, query_qp, QPs that
 *                                   come and go under a polling thread
 *
 * Two contexts of one process are two peers of the region (two
 * initiators/targets with their own MRs); the groups that need a second
 * process fork before opening the device and exchange QPN, LID, rkey and
 * address over a socketpair. Run by run-provider-test.sh (real ivrdmad).
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "dp_common.h"
#include "region.h"

static struct ep A, B; /* A initiates, B is the target */

/* --- verbs ----------------------------------------------------------------- */

static const size_t sizes[] = {0, 1, 7, 4095, 4096, 4097, 65537, 4u << 20};

/* Splits [base, base + len) into n SGEs with a 'gap' of untouched bytes between them. */
static size_t split(struct ibv_sge *s, int n, uint8_t *base, size_t len, size_t gap, uint32_t lkey)
{
	size_t off = 0;

	for (int i = 0; i < n; i++) {
		size_t piece = len * (size_t)(i + 1) / (size_t)n - len * (size_t)i / (size_t)n;

		s[i].addr = (uintptr_t)(base + off);
		s[i].length = (uint32_t)piece;
		s[i].lkey = lkey;
		off += piece + gap;
	}
	return off; /* bytes spanned, gaps included */
}

/* Checks the SGEs hold the pattern stream 'seed' in order and the gaps kept 0xee. */
static bool sgl_holds(const struct ibv_sge *s, int n, size_t gap, uint32_t seed)
{
	size_t k = 0;

	for (int i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)(uintptr_t)s[i].addr;

		for (size_t j = 0; j < s[i].length; j++, k++)
			if (p[j] != pat(k, seed))
				return false;
		if (all_diff(p + s[i].length, gap, 0xee) != gap)
			return false;
	}
	return true;
}

/* SEND or SEND_WITH_IMM of 'len' bytes, ns SGEs gathered, nr SGEs scattered. */
static void one_send(enum ibv_qp_type type, size_t len, int ns, int nr, bool imm)
{
	size_t gap = 5, room = len + (size_t)nr * gap + 64;
	struct buf src, dst;
	struct ibv_sge ss[8], rs[8];
	struct ibv_send_wr wr = {.wr_id = 11,
				 .sg_list = ss,
				 .num_sge = len ? ns : 0,
				 .opcode = imm ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED,
				 .imm_data = htobe32(0xfeed0000u + (uint32_t)len)},
			   *bad = NULL;
	struct ibv_recv_wr rwr = {.wr_id = 22, .sg_list = rs, .num_sge = len ? nr : 0}, *rbad;
	struct ibv_wc wc;
	uint32_t seed = (uint32_t)len * 3u + (uint32_t)ns;

	buf_new(&src, A.pd, len + (size_t)ns * gap + 1, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&dst, B.pd, room, IBV_ACCESS_LOCAL_WRITE);
	split(ss, ns, src.p, len, gap, src.mr->lkey);
	{ /* the pattern stream laid out over the source SGEs */
		size_t k = 0;
		for (int i = 0; i < ns; i++)
			for (size_t j = 0; j < ss[i].length; j++, k++)
				((uint8_t *)(uintptr_t)ss[i].addr)[j] = pat(k, seed);
	}
	split(rs, nr, dst.p, len + 17, gap, dst.mr->lkey); /* room to spare */
	CHECK(ibv_post_recv(B.qp, &rwr, &rbad) == 0, "post_recv");
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "post_send %zu", len);
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 11, IBV_WC_SEND, "send completion");
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 22 && wc.opcode == IBV_WC_RECV,
	      "recv completion: %s", ibv_wc_status_str(wc.status));
	CHECK(wc.byte_len == len, "byte_len %u, sent %zu", wc.byte_len, len);
	CHECK(wc.qp_num == B.qp->qp_num, "recv qp_num");
	if (imm)
		CHECK((wc.wc_flags & IBV_WC_WITH_IMM) && wc.imm_data == wr.imm_data,
		      "imm: flags %#x imm %#x", wc.wc_flags, be32toh(wc.imm_data));
	else
		CHECK(!(wc.wc_flags & IBV_WC_WITH_IMM), "no imm flag on a plain send");
	{ /* received bytes: the stream in the receive SGEs, in order */
		size_t k = 0;
		bool ok = true;
		for (int i = 0; i < nr && k < len; i++) {
			const uint8_t *p = (const uint8_t *)(uintptr_t)rs[i].addr;
			size_t n = rs[i].length < len - k ? rs[i].length : len - k;

			for (size_t j = 0; j < n && ok; j++, k++)
				ok = p[j] == pat(k, seed);
			ok = ok && all_diff(p + n, rs[i].length - n, 0xee) == rs[i].length - n;
		}
		CHECK(ok && k == len, "%s %zu bytes, %d->%d SGEs: data",
		      type == IBV_QPT_RC ? "RC" : "UC", len, ns, nr);
	}
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "one completion each");
	buf_free(&src);
	buf_free(&dst);
}

/* RDMA WRITE (or WRITE_WITH_IMM) of len bytes at an odd offset, gathered from ns SGEs. */
static void one_write(size_t len, int ns, bool imm)
{
	size_t gap = 3, off = 3;
	struct buf src, dst;
	struct ibv_sge ss[8];
	struct ibv_send_wr wr = {.wr_id = 33,
				 .sg_list = ss,
				 .num_sge = len ? ns : 0,
				 .opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE,
				 .send_flags = IBV_SEND_SIGNALED,
				 .imm_data = htobe32(0xabc00000u + (uint32_t)len)},
			   *bad = NULL;
	uint32_t seed = (uint32_t)len + 99u;
	struct ibv_wc wc;

	buf_new(&src, A.pd, len + (size_t)ns * gap + 1, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&dst, B.pd, len + off + 64, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	split(ss, ns, src.p, len, gap, src.mr->lkey);
	{
		size_t k = 0;
		for (int i = 0; i < ns; i++)
			for (size_t j = 0; j < ss[i].length; j++, k++)
				((uint8_t *)(uintptr_t)ss[i].addr)[j] = pat(k, seed);
	}
	wr.wr.rdma.remote_addr = (uintptr_t)dst.p + off;
	wr.wr.rdma.rkey = dst.mr->rkey;
	if (imm) {
		CHECK(post_recv1(B.qp, 44, NULL, 0, 0) == 0, "post_recv (no SGE)");
		CHECK(post_recv1(B.qp, 45, NULL, 0, 0) == 0, "second post_recv");
	}
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "post write %zu", len);
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 33, IBV_WC_RDMA_WRITE, "write completion");
	CHECK(all_diff(dst.p, off, 0xee) == off, "bytes before the write untouched");
	CHECK(pat_diff(dst.p + off, len, seed) == len, "write %zu bytes from %d SGEs: data", len,
	      ns);
	CHECK(all_diff(dst.p + off + len, 64, 0xee) == 64, "bytes after the write untouched");
	if (imm) {
		poll1(B.cq, &wc);
		CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 44 &&
			  wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM &&
			  (wc.wc_flags & IBV_WC_WITH_IMM) && wc.imm_data == wr.imm_data &&
			  wc.byte_len == len,
		      "write_imm: receive 44 consumed, imm delivered (status %s wr_id %llu op %d "
		      "len %u)",
		      ibv_wc_status_str(wc.status), (unsigned long long)wc.wr_id, wc.opcode,
		      wc.byte_len);
		/* The second receive is still there: a send lands in it. */
		CHECK(post1(A.qp, 34, IBV_WR_SEND, IBV_SEND_SIGNALED, NULL, 0, 0, 0, 0) == 0,
		      "send after write_imm");
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 34, IBV_WC_SEND, "send");
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, 45, IBV_WC_RECV, "the write consumed one receive");
	}
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "one completion each");
	buf_free(&src);
	buf_free(&dst);
}

static void one_read(size_t len, int nd)
{
	size_t gap = 9, off = 5;
	struct buf src, dst;
	struct ibv_sge ds[8];
	struct ibv_send_wr wr = {.wr_id = 55,
				 .sg_list = ds,
				 .num_sge = len ? nd : 0,
				 .opcode = IBV_WR_RDMA_READ,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad = NULL;
	uint32_t seed = (uint32_t)len + 7u;

	buf_new(&src, B.pd, len + off + 1, IBV_ACCESS_REMOTE_READ);
	buf_new(&dst, A.pd, len + (size_t)nd * gap + 1, IBV_ACCESS_LOCAL_WRITE);
	fill(src.p + off, len, seed);
	split(ds, nd, dst.p, len, gap, dst.mr->lkey);
	wr.wr.rdma.remote_addr = (uintptr_t)src.p + off;
	wr.wr.rdma.rkey = src.mr->rkey;
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "post read %zu", len);
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 55, IBV_WC_RDMA_READ, "read completion");
	CHECK(!len || sgl_holds(ds, nd, gap, seed), "read %zu bytes into %d SGEs: data", len, nd);
	CHECK(pat_diff(src.p + off, len, seed) == len, "read leaves the source alone");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "one completion, none on the target");
	buf_free(&src);
	buf_free(&dst);
}

static void atomics(void)
{
	struct buf tgt, res;
	uint64_t *t, *r;

	buf_new(&tgt, B.pd, 64, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_ATOMIC);
	buf_new(&res, A.pd, 64, IBV_ACCESS_LOCAL_WRITE);
	t = (uint64_t *)(tgt.p + 16);
	r = (uint64_t *)(res.p + 8);
	*t = 0x1111222233334444ull;
	CHECK(post_atomic(A.qp, 1, IBV_WR_ATOMIC_CMP_AND_SWP, r, res.mr->lkey, (uintptr_t)t,
			  tgt.mr->rkey, 0x1111222233334444ull, 0xaaaabbbbccccddddull) == 0,
	      "post CAS");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_COMP_SWAP, "CAS (equal)");
	CHECK(*r == 0x1111222233334444ull && *t == 0xaaaabbbbccccddddull,
	      "CAS equal: old %#llx, remote now %#llx", (unsigned long long)*r,
	      (unsigned long long)*t);
	CHECK(post_atomic(A.qp, 2, IBV_WR_ATOMIC_CMP_AND_SWP, r, res.mr->lkey, (uintptr_t)t,
			  tgt.mr->rkey, 5, 6) == 0,
	      "post CAS");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 2, IBV_WC_COMP_SWAP, "CAS (different)");
	CHECK(*r == 0xaaaabbbbccccddddull && *t == 0xaaaabbbbccccddddull,
	      "CAS unequal: old returned, remote unchanged");
	*t = 0xfffffffffffffff0ull;
	CHECK(post_atomic(A.qp, 3, IBV_WR_ATOMIC_FETCH_AND_ADD, r, res.mr->lkey, (uintptr_t)t,
			  tgt.mr->rkey, 0x21, 0) == 0,
	      "post FAA");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 3, IBV_WC_FETCH_ADD, "FAA");
	CHECK(*r == 0xfffffffffffffff0ull && *t == 0x11, "FAA: old %#llx, remote %#llx (wraps)",
	      (unsigned long long)*r, (unsigned long long)*t);
	CHECK(all_diff(tgt.p, 16, 0xee) == 16 && all_diff(tgt.p + 24, 40, 0xee) == 40,
	      "atomics touch 8 bytes only");
	CHECK(all_diff(res.p, 8, 0xee) == 8 && all_diff(res.p + 16, 48, 0xee) == 48,
	      "result written to 8 bytes only");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "one completion each");
	buf_free(&tgt);
	buf_free(&res);
}

/* UC has no RDMA READ and no atomics: post_send refuses them. */
static void uc_refuses(void)
{
	struct buf b;
	struct ibv_sge s;
	struct ibv_send_wr ok = {
	    .wr_id = 1, .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED};
	struct ibv_send_wr wr[3], *bad;
	enum ibv_wr_opcode ops[] = {IBV_WR_RDMA_READ, IBV_WR_ATOMIC_CMP_AND_SWP,
				    IBV_WR_ATOMIC_FETCH_AND_ADD};

	buf_new(&b, A.pd, 64, IBV_ACCESS_LOCAL_WRITE);
	s = (struct ibv_sge){.addr = (uintptr_t)b.p, .length = 8, .lkey = b.mr->lkey};
	for (int i = 0; i < 3; i++) {
		memset(wr, 0, sizeof(wr));
		wr[0] = ok;
		wr[0].next = &wr[1];
		wr[1] = (struct ibv_send_wr){.wr_id = 2,
					     .sg_list = &s,
					     .num_sge = 1,
					     .opcode = ops[i],
					     .send_flags = IBV_SEND_SIGNALED};
		wr[1].wr.rdma.rkey = b.mr->rkey;
		wr[1].wr.rdma.remote_addr = (uintptr_t)b.p;
		CHECK(post_recv1(B.qp, 9, NULL, 0, 0) == 0, "post_recv");
		bad = NULL;
		CHECK(ibv_post_send(A.qp, wr, &bad) == EINVAL && bad == &wr[1],
		      "UC opcode %d: EINVAL, bad_wr the second WR", ops[i]);
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_SEND, "the WR before it ran");
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, 9, IBV_WC_RECV, "its receive");
		CHECK(cq_empty(A.cq), "no completion for the refused WR");
	}
	CHECK(qp_state(A.qp) == IBV_QPS_RTS, "the QP stays in RTS");
	buf_free(&b);
}

/* Inline: max_inline_data bytes from unregistered memory (lkey ignored); one more: EINVAL. */
static void inline_data(enum ibv_qp_type type, uint32_t max_inline)
{
	uint8_t *src = malloc(max_inline + 1);
	struct buf dst;
	struct ibv_sge s[2];
	struct ibv_send_wr wr = {.wr_id = 66,
				 .sg_list = s,
				 .num_sge = 2,
				 .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED | IBV_SEND_INLINE},
			   *bad = NULL;
	struct ibv_wc wc;

	REQUIRE(src, "malloc");
	fill(src, max_inline + 1, 5);
	buf_new(&dst, B.pd, 2 * max_inline, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	s[0] = (struct ibv_sge){.addr = (uintptr_t)src, .length = 10, .lkey = 0};
	s[1] = (struct ibv_sge){.addr = (uintptr_t)src + 10, .length = max_inline - 10, .lkey = 0};
	CHECK(post_recv1(B.qp, 67, dst.p, (uint32_t)dst.len, dst.mr->lkey) == 0, "post_recv");
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "inline send of max_inline_data %u: %s",
	      max_inline, strerror(errno));
	memset(src, 0, max_inline + 1); /* inline: the buffer is free again at once */
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 66, IBV_WC_SEND, "inline send");
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && wc.byte_len == max_inline, "inline received %u",
	      wc.byte_len);
	CHECK(pat_diff(dst.p, max_inline, 5) == max_inline, "inline send data");
	/* Inline RDMA write. */
	fill(src, max_inline + 1, 6);
	wr.opcode = IBV_WR_RDMA_WRITE;
	wr.wr_id = 68;
	wr.wr.rdma.remote_addr = (uintptr_t)dst.p + max_inline;
	wr.wr.rdma.rkey = dst.mr->rkey;
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "inline write");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 68, IBV_WC_RDMA_WRITE, "inline write");
	CHECK(pat_diff(dst.p + max_inline, max_inline, 6) == max_inline, "inline write data");
	/* One byte too many. */
	s[1].length++;
	bad = NULL;
	CHECK(ibv_post_send(A.qp, &wr, &bad) == EINVAL && bad == &wr,
	      "inline of max_inline_data + 1: EINVAL");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "no completion for the refused WR");
	CHECK(qp_state(A.qp) == IBV_QPS_RTS, "still RTS (%s)", type == IBV_QPT_RC ? "RC" : "UC");
	buf_free(&dst);
	free(src);
}

/* Only signaled WRs complete; a chain executes in order. */
static void signaled_and_chains(enum ibv_qp_type type)
{
	enum { N = 8 };
	struct buf src, dst;
	struct ibv_sge s[N];
	struct ibv_send_wr wr[N], *bad = NULL;
	struct ibv_recv_wr rwr[N], *rbad;
	struct ibv_sge rs[N];
	struct ibv_wc wc;

	buf_new(&src, A.pd, N * 1000, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&dst, B.pd, N * 1000, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	fill(src.p, N * 1000, 77);
	/* Eight unsignaled writes, the 6th signaled: one completion, every byte written. */
	for (int i = 0; i < N; i++) {
		s[i] = (struct ibv_sge){.addr = (uintptr_t)src.p + (size_t)i * 1000,
					.length = 1000,
					.lkey = src.mr->lkey};
		wr[i] = (struct ibv_send_wr){.wr_id = 100u + (unsigned)i,
					     .next = i + 1 < N ? &wr[i + 1] : NULL,
					     .sg_list = &s[i],
					     .num_sge = 1,
					     .opcode = IBV_WR_RDMA_WRITE,
					     .send_flags = i == 5 ? IBV_SEND_SIGNALED : 0};
		wr[i].wr.rdma.remote_addr = (uintptr_t)dst.p + (size_t)i * 1000;
		wr[i].wr.rdma.rkey = dst.mr->rkey;
	}
	CHECK(ibv_post_send(A.qp, wr, &bad) == 0, "post a chain of writes");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 105, IBV_WC_RDMA_WRITE, "only the signaled WR completes");
	CHECK(cq_empty(A.cq), "unsignaled WRs do not complete");
	CHECK(pat_diff(dst.p, N * 1000, 77) == N * 1000, "chain of writes: data");
	/* A chain of sends of different sizes lands in the receives in order. */
	memset(dst.p, 0xee, N * 1000);
	for (int i = 0; i < N; i++) {
		rs[i] = (struct ibv_sge){.addr = (uintptr_t)dst.p + (size_t)i * 1000,
					 .length = 1000,
					 .lkey = dst.mr->lkey};
		rwr[i] = (struct ibv_recv_wr){.wr_id = 200u + (unsigned)i,
					      .next = i + 1 < N ? &rwr[i + 1] : NULL,
					      .sg_list = &rs[i],
					      .num_sge = 1};
		wr[i].opcode = IBV_WR_SEND;
		wr[i].send_flags = IBV_SEND_SIGNALED;
		s[i].length = 100u * (unsigned)i + 1;
	}
	CHECK(ibv_post_recv(B.qp, rwr, &rbad) == 0, "post a chain of receives");
	CHECK(ibv_post_send(A.qp, wr, &bad) == 0, "post a chain of sends");
	for (int i = 0; i < N; i++) {
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 100 + i, IBV_WC_SEND, "send in order");
		poll1(B.cq, &wc);
		CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 200u + (unsigned)i &&
			  wc.byte_len == s[i].length,
		      "receive %d in order: wr_id %llu len %u", i, (unsigned long long)wc.wr_id,
		      wc.byte_len);
		CHECK(!memcmp(dst.p + (size_t)i * 1000, src.p + (size_t)i * 1000, s[i].length) &&
			  all_diff(dst.p + (size_t)i * 1000 + s[i].length, 1000 - s[i].length,
				   0xee) == 1000 - s[i].length,
		      "send %d of the chain: data", i);
	}
	/* A write then a send: the target sees the write's data when the send arrives. */
	memset(dst.p, 0, N * 1000);
	CHECK(post_recv1(B.qp, 300, dst.p + 7000, 8, dst.mr->lkey) == 0, "post_recv");
	wr[0].opcode = IBV_WR_RDMA_WRITE;
	wr[0].send_flags = 0;
	s[0].length = 4000;
	wr[0].next = &wr[1];
	wr[1].opcode = IBV_WR_SEND;
	wr[1].send_flags = IBV_SEND_SIGNALED;
	s[1].length = 8;
	wr[1].next = NULL;
	CHECK(ibv_post_send(A.qp, wr, &bad) == 0, "write + send");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 101, IBV_WC_SEND, "only the send completes");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 300, IBV_WC_RECV, "the send's receive");
	CHECK(!memcmp(dst.p, src.p, 4000), "the write landed before the send");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "nothing else");
	(void)type;
	buf_free(&src);
	buf_free(&dst);
}

/*
 * A receive queue kept full, as perftest keeps it: every receive reposted
 * as soon as its completion is polled, many times round the ring. The
 * provider learns which entries are free from the completions it polls;
 * the queue must still refuse the 65th outstanding receive, and
 * completions of an earlier QP in the same slot must not count.
 */
static void full_receive_queue(const struct qpopts *o)
{
	enum { DEPTH = 64, MSGS = 1000 };
	struct buf src, dst;
	bool all_posted = true, all_ok = true;
	uint32_t old_qpn;

	pair_connect(&A, &B, IBV_QPT_RC, o, o);
	buf_new(&src, A.pd, 8, MR_ALL);
	buf_new(&dst, B.pd, DEPTH * 8, MR_ALL);
	for (uint64_t i = 0; i < DEPTH; i++)
		all_posted &= post_recv1(B.qp, i, dst.p + i * 8, 8, dst.mr->lkey) == 0;
	for (uint64_t k = 0; k < MSGS; k++) {
		struct ibv_wc ws, wr;
		uint64_t got;

		memcpy(src.p, &k, 8);
		all_ok &= post1(A.qp, k, IBV_WR_SEND, IBV_SEND_SIGNALED, src.p, 8, src.mr->lkey, 0,
				0) == 0;
		all_ok &= poll1(A.cq, &ws) && ws.status == IBV_WC_SUCCESS && ws.wr_id == k;
		all_ok &= poll1(B.cq, &wr) && wr.status == IBV_WC_SUCCESS && wr.wr_id == k;
		memcpy(&got, dst.p + (k % DEPTH) * 8, 8);
		all_ok &= got == k;
		all_posted &=
		    post_recv1(B.qp, k + DEPTH, dst.p + (k % DEPTH) * 8, 8, dst.mr->lkey) == 0;
	}
	CHECK(all_posted, "%d receives outstanding, reposted %d times: every post accepted", DEPTH,
	      MSGS);
	CHECK(all_ok, "%d messages, each into the receive posted for it, in order", MSGS);
	CHECK(post_recv1(B.qp, 99999, dst.p, 8, dst.mr->lkey) == ENOMEM,
	      "the %dth outstanding receive: ENOMEM", DEPTH + 1);

	/* A QP that had 4 receives taken, unpolled, then a new QP in its slot. */
	pair_connect(&A, &B, IBV_QPT_RC, o, o);
	for (uint64_t i = 0; i < DEPTH; i++)
		post_recv1(B.qp, i, dst.p + i * 8, 8, dst.mr->lkey);
	for (uint64_t k = 0; k < 4; k++) {
		struct ibv_wc ws;

		post1(A.qp, k, IBV_WR_SEND, IBV_SEND_SIGNALED, src.p, 8, src.mr->lkey, 0, 0);
		poll1(A.cq, &ws);
	}
	old_qpn = B.qp->qp_num;
	ep_qp(&B, IBV_QPT_RC, o); /* destroys the old one: its 4 completions wait in B.cq */
	CHECK(B.qp->qp_num == old_qpn, "the new QP took the old one's slot (QPN %#x)", old_qpn);
	CHECK(qp_init(B.qp, o->access) == 0, "INIT");
	all_posted = true;
	for (uint64_t i = 0; i < DEPTH; i++)
		all_posted &= post_recv1(B.qp, 100 + i, dst.p + i * 8, 8, dst.mr->lkey) == 0;
	CHECK(all_posted, "%d receives into the new QP", DEPTH);
	for (uint64_t k = 0; k < 4; k++)
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, k, IBV_WC_RECV, "the old QP's completion");
	CHECK(post_recv1(B.qp, 99999, dst.p, 8, dst.mr->lkey) == ENOMEM,
	      "the old QP's completions free nothing in the new QP's full queue: ENOMEM");
	CHECK(cq_empty(B.cq), "nothing else completed");
	buf_free(&src);
	buf_free(&dst);
}

static void group_verbs(void)
{
	enum ibv_qp_type types[] = {IBV_QPT_RC, IBV_QPT_UC};
	struct qpopts o = {.access = ALL_REMOTE,
			   .rnr_retry = 7,
			   .retry_cnt = 7,
			   .timeout = 14,
			   .min_rnr_timer = 1,
			   .max_inline = 200};

	for (int t = 0; t < 2; t++) {
		pair_connect(&A, &B, types[t], &o, &o);
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			one_send(types[t], sizes[i], 1, 1, false);
			one_send(types[t], sizes[i], 1, 1, true);
			one_write(sizes[i], 1, false);
			one_write(sizes[i], 1, true);
			if (types[t] == IBV_QPT_RC)
				one_read(sizes[i], 1);
		}
		/* Scatter/gather lists of several SGEs on both sides. */
		one_send(types[t], 4097, 3, 5, false);
		one_send(types[t], 65537, 8, 2, true);
		one_send(types[t], 9000, 2, 8, false);
		one_write(10000, 8, false);
		one_write(4097, 3, true);
		if (types[t] == IBV_QPT_RC) {
			one_read(10000, 8);
			one_read(4097, 3);
			atomics();
		} else {
			uc_refuses();
		}
		inline_data(types[t], 200);
		signaled_and_chains(types[t]);
		CHECK(qp_state(A.qp) == IBV_QPS_RTS && qp_state(B.qp) == IBV_QPS_RTS,
		      "both QPs still RTS");
	}
	full_receive_queue(&o);
}

/* --- errors ---------------------------------------------------------------- */

struct want {
	uint64_t id;
	enum ibv_wc_status st;
};

/* Exactly these completions (in any order between send and receive queues), nothing more. */
static void expect_set(struct ibv_cq *cq, const struct want *w, int n, const char *what)
{
	bool seen[16] = {false};

	for (int i = 0; i < n; i++) {
		struct ibv_wc wc;
		bool found = false;

		if (!poll1(cq, &wc))
			break;
		for (int j = 0; j < n && !found; j++)
			if (!seen[j] && w[j].id == wc.wr_id && w[j].st == wc.status)
				seen[j] = found = true;
		CHECK(found, "%s: unexpected completion wr_id %llu status %s", what,
		      (unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status));
	}
	for (int j = 0; j < n; j++)
		CHECK(seen[j], "%s: no completion wr_id %llu %s", what, (unsigned long long)w[j].id,
		      ibv_wc_status_str(w[j].st));
	CHECK(cq_empty(cq), "%s: exactly one completion per WR", what);
}

/* The QP is in ERR: later work, signaled or not, send or receive, is flushed. */
static void check_flushing(struct ep *e, const char *what)
{
	struct want w[] = {
	    {901, IBV_WC_WR_FLUSH_ERR}, {902, IBV_WC_WR_FLUSH_ERR}, {903, IBV_WC_WR_FLUSH_ERR}};

	CHECK(qp_state(e->qp) == IBV_QPS_ERR, "%s: QP in ERR (state %d)", what, qp_state(e->qp));
	CHECK(post1(e->qp, 901, IBV_WR_SEND, IBV_SEND_SIGNALED, NULL, 0, 0, 0, 0) == 0,
	      "post_send in ERR");
	CHECK(post1(e->qp, 902, IBV_WR_RDMA_WRITE, 0, NULL, 0, 0, 0, 0) == 0,
	      "unsignaled post_send in ERR");
	CHECK(post_recv1(e->qp, 903, NULL, 0, 0) == 0, "post_recv in ERR");
	expect_set(e->cq, w, 3, what);
}

/*
 * Posts 'wr' (id 1) followed in the same chain by a good send (id 2) on a
 * fresh RC pair where A has a receive (id 900) posted: A gets 'st' for WR 1
 * and flushes for the others, and is in ERR. B gets 'bst' for receive 800
 * if bst >= 0 (-1: B got nothing and stays RTS; -2: B is not checked;
 * TARGET_ACCESS_ERR / TARGET_REQ_ERR: the responder's QP fails too, with
 * that async event, and flushes whatever it had posted).
 */
enum { TARGET_ACCESS_ERR = -3, TARGET_REQ_ERR = -4 };

static void expect_target_failed(enum ibv_event_type ev, const char *what)
{
	struct ibv_wc wc;

	CHECK(expect_async(B.ctx, ev, B.qp), "%s: the target's async event", what);
	CHECK(qp_state(B.qp) == IBV_QPS_ERR, "%s: target QP in ERR", what);
	while (ibv_poll_cq(B.cq, 1, &wc) == 1) /* its posted receive, if any */
		CHECK(wc.status == IBV_WC_WR_FLUSH_ERR && wc.wr_id == 800,
		      "%s: target flush, got %s for %llu", what, ibv_wc_status_str(wc.status),
		      (unsigned long long)wc.wr_id);
	check_flushing(&B, what);
}

static void provoke(struct ibv_send_wr *wr, enum ibv_wc_status st, int bst, const char *what)
{
	struct ibv_send_wr good = {.wr_id = 2,
				   .opcode = IBV_WR_SEND,
				   .send_flags = IBV_SEND_SIGNALED},
			   *bad = NULL;
	struct want w[] = {{1, st}, {2, IBV_WC_WR_FLUSH_ERR}, {900, IBV_WC_WR_FLUSH_ERR}};

	wr->wr_id = 1;
	wr->next = &good;
	CHECK(post_recv1(A.qp, 900, NULL, 0, 0) == 0, "post_recv on the initiator");
	CHECK(ibv_post_send(A.qp, wr, &bad) == 0, "%s: post_send", what);
	expect_set(A.cq, w, 3, what);
	check_flushing(&A, what);
	if (bst >= 0) {
		struct want bw[] = {{800, (enum ibv_wc_status)bst}};

		expect_set(B.cq, bw, 1, what);
		check_flushing(&B, what);
	} else if (bst == -1) {
		CHECK(cq_empty(B.cq), "%s: nothing on the target", what);
		CHECK(qp_state(B.qp) == IBV_QPS_RTS, "%s: target still RTS", what);
	} else if (bst == TARGET_ACCESS_ERR || bst == TARGET_REQ_ERR) {
		expect_target_failed(bst == TARGET_ACCESS_ERR ? IBV_EVENT_QP_ACCESS_ERR
							      : IBV_EVENT_QP_REQ_ERR,
				     what);
	}
}

static struct qpopts err_opts = {
    .access = ALL_REMOTE, .rnr_retry = 7, .retry_cnt = 7, .timeout = 1, .min_rnr_timer = 1};

static void fresh_rc(void)
{
	pair_connect(&A, &B, IBV_QPT_RC, &err_opts, &err_opts);
}

static struct ibv_send_wr mkwr(enum ibv_wr_opcode op, struct ibv_sge *s, const struct buf *l,
			       size_t off, uint32_t len, uint64_t raddr, uint32_t rkey)
{
	struct ibv_send_wr wr = {
	    .sg_list = s, .num_sge = 1, .opcode = op, .send_flags = IBV_SEND_SIGNALED};

	*s = (struct ibv_sge){.addr = (uintptr_t)l->p + off, .length = len, .lkey = l->mr->lkey};
	if (op == IBV_WR_ATOMIC_CMP_AND_SWP || op == IBV_WR_ATOMIC_FETCH_AND_ADD) {
		wr.wr.atomic.remote_addr = raddr;
		wr.wr.atomic.rkey = rkey;
		wr.wr.atomic.compare_add = 1;
	} else {
		wr.wr.rdma.remote_addr = raddr;
		wr.wr.rdma.rkey = rkey;
	}
	return wr;
}

static void local_errors(void)
{
	struct buf l, r, ro;
	struct ibv_sge s;
	struct ibv_send_wr wr;

	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 4096, MR_ALL);
	fill(l.p, l.maplen, 1);

	/* IBV_WC_LOC_LEN_ERR: the receive buffer is too small. */
	fresh_rc();
	CHECK(post_recv1(B.qp, 800, r.p, 16, r.mr->lkey) == 0, "post_recv 16 bytes");
	wr = mkwr(IBV_WR_SEND, &s, &l, 0, 64, 0, 0);
	provoke(&wr, IBV_WC_REM_INV_REQ_ERR, IBV_WC_LOC_LEN_ERR, "send 64 into 16 bytes");

	/* IBV_WC_LOC_PROT_ERR: a bad lkey, an SGE outside the MR. */
	fresh_rc();
	CHECK(post_recv1(B.qp, 800, r.p, 4096, r.mr->lkey) == 0, "post_recv");
	wr = mkwr(IBV_WR_SEND, &s, &l, 0, 64, 0, 0);
	s.lkey ^= 0x5500;
	provoke(&wr, IBV_WC_LOC_PROT_ERR, -1, "bad lkey");
	fresh_rc();
	CHECK(post_recv1(B.qp, 800, r.p, 4096, r.mr->lkey) == 0, "post_recv");
	wr = mkwr(IBV_WR_SEND, &s, &l, l.maplen - 8, 16, 0, 0);
	provoke(&wr, IBV_WC_LOC_PROT_ERR, -1, "SGE past the MR's end");
	fresh_rc();
	wr = mkwr(IBV_WR_RDMA_WRITE, &s, &l, 0, 64, (uintptr_t)r.p, r.mr->rkey);
	s.addr -= 1;
	provoke(&wr, IBV_WC_LOC_PROT_ERR, -1, "SGE before the MR's start");
	CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen, "no byte reached the target");

	/* A receive into an MR without local write: the target's protection error. */
	buf_new(&ro, B.pd, 4096, IBV_ACCESS_REMOTE_READ);
	fresh_rc();
	CHECK(post_recv1(B.qp, 800, ro.p, 4096, ro.mr->lkey) == 0, "post_recv into a read-only MR");
	wr = mkwr(IBV_WR_SEND, &s, &l, 0, 64, 0, 0);
	provoke(&wr, IBV_WC_REM_OP_ERR, IBV_WC_LOC_PROT_ERR, "receive MR without local write");
	CHECK(all_diff(ro.p, ro.maplen, 0xee) == ro.maplen, "the read-only MR was not written");
	buf_free(&ro);

	/* RDMA READ into a local MR without local write. */
	buf_new(&ro, A.pd, 4096, IBV_ACCESS_REMOTE_READ);
	fresh_rc();
	wr = mkwr(IBV_WR_RDMA_READ, &s, &ro, 0, 64, (uintptr_t)r.p, r.mr->rkey);
	provoke(&wr, IBV_WC_LOC_PROT_ERR, -1, "read into an MR without local write");
	CHECK(all_diff(ro.p, ro.maplen, 0xee) == ro.maplen, "nothing read into it");
	buf_free(&ro);
	buf_free(&l);
	buf_free(&r);
}

static void remote_errors(void)
{
	struct buf l, r, nw, nr, na;
	struct ibv_pd *pd2 = ibv_alloc_pd(B.ctx);
	struct ibv_mr *other;
	struct ibv_sge s;
	struct ibv_send_wr wr;
	enum ibv_wr_opcode ops[] = {IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_READ,
				    IBV_WR_ATOMIC_FETCH_AND_ADD, IBV_WR_ATOMIC_CMP_AND_SWP};

	REQUIRE(pd2, "alloc_pd");
	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 4096, MR_ALL);
	buf_new(&nw, B.pd, 4096,
		IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
	buf_new(&nr, B.pd, 4096, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	buf_new(&na, B.pd, 4096,
		IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	other = ibv_reg_mr(pd2, r.p, r.maplen, MR_ALL);
	REQUIRE(other, "reg_mr in a second PD: %s", strerror(errno));
	fill(l.p, l.maplen, 2);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		uint32_t len = ops[i] == IBV_WR_RDMA_WRITE ||
				       ops[i] == IBV_WR_RDMA_WRITE_WITH_IMM ||
				       ops[i] == IBV_WR_RDMA_READ
				   ? 64
				   : 8;
		bool imm = ops[i] == IBV_WR_RDMA_WRITE_WITH_IMM;
		const struct buf *denied =
		    ops[i] == IBV_WR_RDMA_READ						  ? &nr
		    : ops[i] == IBV_WR_RDMA_WRITE || ops[i] == IBV_WR_RDMA_WRITE_WITH_IMM ? &nw
											  : &na;
		struct {
			uint64_t raddr;
			uint32_t rkey;
			const char *what;
		} c[] = {
		    {(uintptr_t)r.p, r.mr->rkey ^ 0x3300, "bad rkey"},
		    {(uintptr_t)r.p + r.maplen, r.mr->rkey, "address past the MR"},
		    {(uintptr_t)r.p + r.maplen - 8 * (len > 8), r.mr->rkey,
		     "crossing the MR's end"},
		    {(uintptr_t)r.p - 8, r.mr->rkey, "address before the MR"},
		    {(uintptr_t)denied->p, denied->mr->rkey, "MR without the remote access"},
		    {(uintptr_t)r.p, other->rkey, "rkey of another PD"},
		};

		for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
			char what[96];

			if (len == 8 && k == 2)
				continue; /* an aligned atomic cannot cross the end */
			snprintf(what, sizeof(what), "opcode %d: %s", ops[i], c[k].what);
			fresh_rc();
			if (imm)
				CHECK(post_recv1(B.qp, 800, NULL, 0, 0) == 0, "post_recv");
			wr = mkwr(ops[i], &s, &l, 0, len, c[k].raddr, c[k].rkey);
			/* The target's receive for write_imm is not consumed by a failure. */
			provoke(&wr, IBV_WC_REM_ACCESS_ERR, TARGET_ACCESS_ERR, what);
			CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen &&
				  all_diff(denied->p, denied->maplen, 0xee) == denied->maplen,
			      "%s: target memory unchanged", what);
			CHECK(pat_diff(l.p, l.maplen, 2) == l.maplen, "%s: local memory unchanged",
			      what);
		}
	}
	/* An unsignaled failing WR completes, with its error. */
	err_opts.sig_all = false;
	fresh_rc();
	wr = mkwr(IBV_WR_RDMA_WRITE, &s, &l, 0, 64, (uintptr_t)r.p, 0);
	wr.send_flags = 0;
	provoke(&wr, IBV_WC_REM_ACCESS_ERR, TARGET_ACCESS_ERR, "unsignaled write with a bad rkey");
	CHECK(ibv_dereg_mr(other) == 0, "dereg_mr");
	CHECK(ibv_dealloc_pd(pd2) == 0, "dealloc_pd");
	buf_free(&l);
	buf_free(&r);
	buf_free(&nw);
	buf_free(&nr);
	buf_free(&na);
}

static void invalid_requests(void)
{
	struct buf l, r;
	struct ibv_sge s;
	struct ibv_send_wr wr;
	struct {
		enum ibv_wr_opcode op;
		int allowed;
	} c[] = {
	    {IBV_WR_RDMA_WRITE, IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC},
	    {IBV_WR_RDMA_WRITE_WITH_IMM, IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC},
	    {IBV_WR_RDMA_READ, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC},
	    {IBV_WR_ATOMIC_FETCH_AND_ADD, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ},
	    {IBV_WR_ATOMIC_CMP_AND_SWP, 0},
	};

	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 4096, MR_ALL);
	/* A misaligned atomic. */
	fresh_rc();
	wr = mkwr(IBV_WR_ATOMIC_FETCH_AND_ADD, &s, &l, 0, 8, (uintptr_t)r.p + 4, r.mr->rkey);
	provoke(&wr, IBV_WC_REM_INV_REQ_ERR, TARGET_REQ_ERR, "misaligned atomic");
	CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen, "misaligned atomic: target unchanged");
	/* An operation the target QP does not allow (qp_access_flags). */
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct qpopts ob = err_opts;
		char what[64];

		ob.access = c[i].allowed;
		pair_connect(&A, &B, IBV_QPT_RC, &err_opts, &ob);
		if (c[i].op == IBV_WR_RDMA_WRITE_WITH_IMM)
			CHECK(post_recv1(B.qp, 800, NULL, 0, 0) == 0, "post_recv");
		snprintf(what, sizeof(what), "opcode %d, target QP access %#x", c[i].op,
			 c[i].allowed);
		wr = mkwr(c[i].op, &s, &l, 0, 8, (uintptr_t)r.p, r.mr->rkey);
		provoke(&wr, IBV_WC_REM_INV_REQ_ERR, TARGET_REQ_ERR, what);
		CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen, "%s: target unchanged", what);
	}
	buf_free(&l);
	buf_free(&r);
}

/* No receive posted: RC retries rnr_retry times, then IBV_WC_RNR_RETRY_EXC_ERR; 7 waits. */
static void rnr(void)
{
	struct buf l, r;
	struct ibv_wc wc;

	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 4096, MR_ALL);
	fill(l.p, 4096, 3);
	for (uint8_t n = 0; n <= 6; n++) {
		struct qpopts oa = err_opts;
		struct ibv_sge s;
		struct ibv_send_wr wr;
		char what[48];

		oa.rnr_retry = n;
		pair_connect(&A, &B, IBV_QPT_RC, &oa, &err_opts);
		snprintf(what, sizeof(what), "RNR with rnr_retry %u", n);
		wr = mkwr(IBV_WR_SEND, &s, &l, 0, 100, 0, 0);
		provoke(&wr, IBV_WC_RNR_RETRY_EXC_ERR, -1, what);
	}
	/* rnr_retry 7: the send waits until the receive is posted, then lands. */
	fresh_rc();
	CHECK(post1(A.qp, 5, IBV_WR_SEND, IBV_SEND_SIGNALED, l.p, 100, l.mr->lkey, 0, 0) == 0,
	      "send without a receive");
	for (int i = 0; i < 1000; i++)
		CHECK(ibv_poll_cq(A.cq, 1, &wc) == 0, "rnr_retry 7: no completion while waiting");
	CHECK(post_recv1(B.qp, 6, r.p, 4096, r.mr->lkey) == 0, "post the receive");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 5, IBV_WC_SEND, "send after RNR waits");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 6, IBV_WC_RECV, "its receive");
	CHECK(pat_diff(r.p, 100, 3) == 100, "data after RNR wait");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "one completion each");
	buf_free(&l);
	buf_free(&r);
}

/* The target QP is gone: RC retries retry_cnt times, then IBV_WC_RETRY_EXC_ERR. */
static void target_destroyed(void)
{
	struct buf l, r;

	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 4096, MR_ALL);
	for (uint8_t n = 0; n <= 7; n += 3) {
		struct qpopts oa = err_opts;
		struct ibv_sge s;
		struct ibv_send_wr wr;

		oa.retry_cnt = n;
		pair_connect(&A, &B, IBV_QPT_RC, &oa, &err_opts);
		CHECK(ibv_destroy_qp(B.qp) == 0, "destroy the target QP");
		B.qp = NULL;
		wr = mkwr(IBV_WR_RDMA_WRITE, &s, &l, 0, 64, (uintptr_t)r.p, r.mr->rkey);
		provoke(&wr, IBV_WC_RETRY_EXC_ERR, -2, "write to a destroyed QP");
		CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen, "nothing written");
	}
	{ /* A target QP in ERR answers nothing either. */
		struct ibv_sge s;
		struct ibv_send_wr wr;

		fresh_rc();
		CHECK(ibv_modify_qp(B.qp, &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR},
				    IBV_QP_STATE) == 0,
		      "target to ERR");
		wr = mkwr(IBV_WR_RDMA_WRITE, &s, &l, 0, 64, (uintptr_t)r.p, r.mr->rkey);
		provoke(&wr, IBV_WC_RETRY_EXC_ERR, -2, "write to a QP in ERR");
		CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen && cq_empty(B.cq),
		      "nothing written, nothing on the target");
	}
	buf_free(&l);
	buf_free(&r);
}

/* A receive from an SRQ too small: that QP fails, the SRQ keeps its other receives. */
static void srq_recv_error(void)
{
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = 16, .max_sge = 1}};
	struct ibv_srq *srq = ibv_create_srq(B.pd, &sa);
	struct ibv_qp_init_attr ia = {.send_cq = B.cq,
				      .recv_cq = B.cq,
				      .srq = srq,
				      .cap = {.max_send_wr = 8, .max_send_sge = 1},
				      .qp_type = IBV_QPT_RC};
	struct ibv_qp *bq[2];
	struct buf l, r;
	struct ibv_sge s[2];
	struct ibv_recv_wr rw[2] = {{.wr_id = 810, .next = &rw[1], .sg_list = &s[0], .num_sge = 1},
				    {.wr_id = 811, .sg_list = &s[1], .num_sge = 1}},
			   *rbad;
	struct want w1[] = {{1, IBV_WC_REM_INV_REQ_ERR}}, b1[] = {{810, IBV_WC_LOC_LEN_ERR}};
	struct ibv_wc wc;

	REQUIRE(srq, "create_srq: %s", strerror(errno));
	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 8192, IBV_ACCESS_LOCAL_WRITE);
	fill(l.p, 4096, 4);
	s[0] = (struct ibv_sge){.addr = (uintptr_t)r.p, .length = 16, .lkey = r.mr->lkey};
	s[1] = (struct ibv_sge){.addr = (uintptr_t)r.p + 4096, .length = 4096, .lkey = r.mr->lkey};
	CHECK(ibv_post_srq_recv(srq, rw, &rbad) == 0, "post_srq_recv");
	for (int i = 0; i < 2; i++) {
		bq[i] = ibv_create_qp(B.pd, &ia);
		REQUIRE(bq[i], "create_qp on the SRQ: %s", strerror(errno));
		ep_qp(&A, IBV_QPT_RC, &err_opts);
		qp_connect(A.qp, bq[i]->qp_num, B.lid, &err_opts);
		qp_connect(bq[i], A.qp->qp_num, A.lid, &err_opts);
		CHECK(post1(A.qp, 1u + (unsigned)i, IBV_WR_SEND, IBV_SEND_SIGNALED, l.p, 64,
			    l.mr->lkey, 0, 0) == 0,
		      "send 64 bytes");
		if (i == 0) {
			expect_set(A.cq, w1, 1, "SRQ receive too small: initiator");
			expect_set(B.cq, b1, 1, "SRQ receive too small: target");
			CHECK(qp_state(bq[0]) == IBV_QPS_ERR, "the target QP is in ERR");
		} else {
			poll1(A.cq, &wc);
			CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 2, "second QP's send");
			poll1(B.cq, &wc);
			CHECK(wc.status == IBV_WC_SUCCESS && wc.wr_id == 811 && wc.byte_len == 64 &&
				  wc.qp_num == bq[1]->qp_num,
			      "the SRQ kept receive 811 for the other QP");
			CHECK(pat_diff(r.p + 4096, 64, 4) == 64, "data in the SRQ's receive");
		}
	}
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "nothing else");
	CHECK(ibv_destroy_qp(bq[0]) == 0 && ibv_destroy_qp(bq[1]) == 0 && ibv_destroy_srq(srq) == 0,
	      "destroy");
	buf_free(&l);
	buf_free(&r);
}

/* UC: local errors complete in error and the QP fails; remote ones are dropped silently. */
static void uc_errors(void)
{
	struct buf l, r;
	struct ibv_sge s;
	struct ibv_send_wr wr, *bad;
	struct qpopts o = err_opts;

	buf_new(&l, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, B.pd, 4096, MR_ALL);
	pair_connect(&A, &B, IBV_QPT_UC, &o, &o);
	wr = mkwr(IBV_WR_RDMA_WRITE, &s, &l, 0, 64, (uintptr_t)r.p, r.mr->rkey ^ 0x100);
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "UC write with a bad rkey");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 0, IBV_WC_RDMA_WRITE, "UC: the responder drops it");
	CHECK(all_diff(r.p, r.maplen, 0xee) == r.maplen, "UC bad rkey: nothing written");
	wr = mkwr(IBV_WR_SEND, &s, &l, 0, 64, 0, 0);
	CHECK(ibv_post_send(A.qp, &wr, &bad) == 0, "UC send without a receive");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 0, IBV_WC_SEND, "UC: no RNR, the message is dropped");
	CHECK(cq_empty(B.cq), "UC: nothing on the target");
	CHECK(qp_state(A.qp) == IBV_QPS_RTS, "UC still RTS");
	wr = mkwr(IBV_WR_SEND, &s, &l, 0, 64, 0, 0);
	s.lkey ^= 0x700;
	provoke(&wr, IBV_WC_LOC_PROT_ERR, -1, "UC send with a bad lkey");
	buf_free(&l);
	buf_free(&r);
}

/* post_send/post_recv errnos: bad states, full queues, too many SGEs; bad_wr set. */
static void post_errnos(void)
{
	struct qpopts o = err_opts;
	struct ibv_send_wr wr[6], *bad;
	struct ibv_recv_wr rwr[65], *rbad;
	struct buf r;

	memset(wr, 0, sizeof(wr));
	for (int i = 0; i < 6; i++) {
		wr[i].wr_id = 10u + (unsigned)i;
		wr[i].opcode = IBV_WR_SEND;
		wr[i].send_flags = IBV_SEND_SIGNALED;
		wr[i].next = i < 5 ? &wr[i + 1] : NULL;
	}
	o.max_send_wr = 4;
	o.max_sge = 2;
	ep_qp(&A, IBV_QPT_RC, &o);
	ep_qp(&B, IBV_QPT_RC, &o);
	bad = NULL;
	CHECK(ibv_post_send(A.qp, wr, &bad) == EINVAL && bad == wr, "post_send in RESET: EINVAL");
	rbad = NULL;
	memset(rwr, 0, sizeof(rwr));
	CHECK(ibv_post_recv(A.qp, rwr, &rbad) == EINVAL && rbad == rwr,
	      "post_recv in RESET: EINVAL");
	CHECK(qp_init(A.qp, o.access) == 0 && qp_init(B.qp, o.access) == 0, "INIT");
	CHECK(post_recv1(A.qp, 7, NULL, 0, 0) == 0, "post_recv in INIT is allowed");
	bad = NULL;
	CHECK(ibv_post_send(A.qp, wr, &bad) == EINVAL && bad == wr, "post_send in INIT: EINVAL");
	CHECK(qp_rtr(A.qp, B.qp->qp_num, B.lid, &o) == 0 &&
		  qp_rtr(B.qp, A.qp->qp_num, A.lid, &o) == 0,
	      "RTR");
	bad = NULL;
	CHECK(ibv_post_send(A.qp, wr, &bad) == EINVAL && bad == wr, "post_send in RTR: EINVAL");
	CHECK(qp_rts(A.qp, &o) == 0 && qp_rts(B.qp, &o) == 0, "RTS");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "refused WRs do not complete");
	/* Too many SGEs: the third WR is refused, the two before it run. */
	wr[2].num_sge = 3;
	bad = NULL;
	buf_new(&r, B.pd, 4096, MR_ALL);
	for (int i = 0; i < 2; i++)
		CHECK(post_recv1(B.qp, 40u + (unsigned)i, NULL, 0, 0) == 0, "post_recv");
	CHECK(ibv_post_send(A.qp, wr, &bad) == EINVAL && bad == &wr[2], "3 SGEs of 2: EINVAL");
	wr[2].num_sge = 0;
	for (int i = 0; i < 2; i++) {
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 10 + i, IBV_WC_SEND, "WRs before bad_wr ran");
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, 40 + i, IBV_WC_RECV, "their receives");
	}
	/* Full send queue: rnr_retry 7 and no receive keep the WRs queued. */
	bad = NULL;
	CHECK(ibv_post_send(A.qp, wr, &bad) == ENOMEM && bad == &wr[4],
	      "6 WRs into a send queue of 4: ENOMEM at the 5th");
	CHECK(cq_empty(A.cq), "queued WRs wait for receives");
	for (int i = 0; i < 4; i++)
		CHECK(post_recv1(B.qp, 50u + (unsigned)i, NULL, 0, 0) == 0, "post_recv");
	for (int i = 0; i < 4; i++) {
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 10 + i, IBV_WC_SEND,
			  "queued WRs complete in order");
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, 50 + i, IBV_WC_RECV, "into the receives in order");
	}
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "nothing else");
	/* Receive queue: too many SGEs, and full. */
	memset(rwr, 0, sizeof(rwr));
	for (int i = 0; i < 65; i++) {
		rwr[i].wr_id = 500u + (unsigned)i;
		rwr[i].next = i < 64 ? &rwr[i + 1] : NULL;
	}
	rwr[1].num_sge = 3;
	rbad = NULL;
	CHECK(ibv_post_recv(B.qp, rwr, &rbad) == EINVAL && rbad == &rwr[1],
	      "receive with 3 SGEs of 2: EINVAL");
	rwr[1].num_sge = 0;
	rbad = NULL;
	CHECK(ibv_post_recv(B.qp, &rwr[1], &rbad) == ENOMEM && rbad == &rwr[64],
	      "65 receives into 64: ENOMEM at the last (max_recv_wr %u)", B.qp->qp_num);
	CHECK(ibv_modify_qp(B.qp, &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR}, IBV_QP_STATE) ==
		  0,
	      "B to ERR");
	for (int i = 0; i < 64; i++)
		EXPECT_WC(B.cq, IBV_WC_WR_FLUSH_ERR, 500 + i, IBV_WC_RECV, "receives flushed");
	CHECK(cq_empty(B.cq), "each receive flushed once");
	buf_free(&r);
}

static void group_errors(void)
{
	local_errors();
	remote_errors();
	invalid_requests();
	rnr();
	target_destroyed();
	srq_recv_error();
	uc_errors();
	post_errnos();
}

/* --- MR move and restore --------------------------------------------------- */

/* B writes len bytes of pattern 'seed' at addr through rkey: the completion status. */
static enum ibv_wc_status remote_write(void *addr, uint32_t rkey, size_t len, uint32_t seed)
{
	struct buf l;
	struct ibv_wc wc;

	buf_new(&l, B.pd, len, IBV_ACCESS_LOCAL_WRITE);
	fill(l.p, len, seed);
	CHECK(post1(B.qp, 77, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, l.p, (uint32_t)len, l.mr->lkey,
		    (uintptr_t)addr, rkey) == 0,
	      "post write");
	poll1(B.cq, &wc);
	buf_free(&l);
	if (wc.status != IBV_WC_SUCCESS) /* the pair is in ERR now: a fresh one */
		pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	return wc.status;
}

/* The mapping holding addr, as /proc/self/maps lists it ("" if none). */
static void maps_line(const void *addr, char *out, size_t n)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];

	out[0] = 0;
	REQUIRE(f, "open maps");
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= (uintptr_t)addr &&
		    (uintptr_t)addr < hi) {
			snprintf(out, n, "%s", line);
			break;
		}
	}
	fclose(f);
}

/* Private anonymous again (no region mapping left at addr). */
static bool is_private_anon(const void *addr)
{
	char l[512], perms[8] = "";
	unsigned long ino = 1;

	maps_line(addr, l, sizeof(l));
	sscanf(l, "%*s %7s %*s %*s %lu", perms, &ino);
	return perms[3] == 'p' && ino == 0;
}

/* A shared mapping at addr: the region's pages (mapped over the application's). */
static bool is_region_page(const void *addr)
{
	char l[512], perms[8] = "";

	maps_line(addr, l, sizeof(l));
	sscanf(l, "%*s %7s", perms);
	return perms[3] == 's';
}

static void mr_overlaps(void)
{
	size_t pg = page_size();
	struct buf b;
	uint8_t *exp = malloc(3 * pg);
	struct ibv_mr *m1, *m2, *m3, *m4;
	uint32_t k1;

	REQUIRE(exp, "malloc");
	buf_new(&b, NULL, 3 * pg - 1, 0);
	fill(b.p, 3 * pg, 10);
	memcpy(exp, b.p, 3 * pg);
	m1 = ibv_reg_mr(A.pd, b.p, 2 * pg, MR_ALL);
	m2 = ibv_reg_mr(A.pd, b.p + pg + 100, 2 * pg - 100,
			MR_ALL);		      /* overlaps m1, grows its span */
	m3 = ibv_reg_mr(A.pd, b.p + 100, 50, MR_ALL); /* inside m1 */
	m4 = ibv_reg_mr(A.pd, b.p, 2 * pg, MR_ALL);   /* m1 again */
	REQUIRE(m1 && m2 && m3 && m4, "overlapping registrations: %s", strerror(errno));
	CHECK(!memcmp(b.p, exp, 3 * pg), "registration keeps the contents");
	CHECK(is_region_page(b.p + pg), "registered pages are the region's (moved into it)");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(b.p + 10, m1->rkey, 300, 11) == IBV_WC_SUCCESS, "write via m1");
	fill(exp + 10, 300, 11);
	CHECK(remote_write(b.p + 2 * pg + 5, m2->rkey, 200, 12) == IBV_WC_SUCCESS, "write via m2");
	fill(exp + 2 * pg + 5, 200, 12);
	CHECK(remote_write(b.p + 120, m3->rkey, 30, 13) == IBV_WC_SUCCESS, "write via m3");
	fill(exp + 120, 30, 13);
	CHECK(!memcmp(b.p, exp, 3 * pg), "remote writes land at the application's addresses");
	CHECK(remote_write(b.p + 140, m3->rkey, 30, 14) == IBV_WC_REM_ACCESS_ERR,
	      "m3's bounds are its own, not the span's");
	k1 = m1->rkey;
	CHECK(ibv_dereg_mr(m1) == 0, "dereg m1");
	CHECK(!memcmp(b.p, exp, 3 * pg), "contents after dereg of m1");
	CHECK(remote_write(b.p + 50, m4->rkey, 40, 15) == IBV_WC_SUCCESS,
	      "m4 (same range) lives on");
	fill(exp + 50, 40, 15);
	CHECK(remote_write(b.p + 10, k1, 8, 16) == IBV_WC_REM_ACCESS_ERR,
	      "m1's key is dead after dereg");
	CHECK(ibv_dereg_mr(m4) == 0 && ibv_dereg_mr(m3) == 0, "dereg m4, m3");
	CHECK(remote_write(b.p + pg, m2->rkey, 16, 17) == IBV_WC_REM_ACCESS_ERR,
	      "m2 starts at its own address");
	CHECK(remote_write(b.p + pg + 100, m2->rkey, 16, 18) == IBV_WC_SUCCESS, "m2 still works");
	fill(exp + pg + 100, 16, 18);
	CHECK(!memcmp(b.p, exp, 3 * pg), "contents with only m2 left");
	CHECK(ibv_dereg_mr(m2) == 0, "dereg m2");
	CHECK(!memcmp(b.p, exp, 3 * pg), "dereg of the last MR restores the same contents");
	CHECK(is_private_anon(b.p) && is_private_anon(b.p + 2 * pg), "private pages again");
	b.p[5] ^= 1; /* the application writes on: its own private page */
	CHECK(b.p[5] == (exp[5] ^ 1), "pages writable after dereg");
	munmap(b.p, b.maplen);
	free(exp);
}

/* A small heap buffer shares its pages with unrelated heap data. */
static void mr_unaligned_heap(void)
{
	enum { N = 7, SZ = 100 };
	uint8_t *blk[N], *late;
	struct ibv_mr *mr;

	for (int i = 0; i < N; i++) {
		blk[i] = malloc(SZ);
		REQUIRE(blk[i], "malloc");
		fill(blk[i], SZ, 30u + (unsigned)i);
	}
	mr = ibv_reg_mr(A.pd, blk[3], SZ, MR_ALL);
	REQUIRE(mr, "reg_mr of a 100-byte heap block: %s", strerror(errno));
	for (int i = 0; i < N; i++)
		CHECK(pat_diff(blk[i], SZ, 30u + (unsigned)i) == SZ, "heap block %d kept by reg",
		      i);
	late = malloc(SZ); /* may well land on the moved page */
	REQUIRE(late, "malloc");
	fill(late, SZ, 50);
	fill(blk[2], SZ, 52); /* neighbours written while the page is moved */
	fill(blk[4], SZ, 54);
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(blk[3] + 1, mr->rkey, SZ - 1, 53) == IBV_WC_SUCCESS, "write into it");
	CHECK(remote_write(blk[3] + 1, mr->rkey, SZ, 60) == IBV_WC_REM_ACCESS_ERR,
	      "one byte past the MR (into the neighbour): REM_ACCESS_ERR");
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	CHECK(blk[3][0] == pat(0, 33) && pat_diff(blk[3] + 1, SZ - 1, 53) == SZ - 1,
	      "the written data survives dereg");
	CHECK(pat_diff(blk[2], SZ, 52) == SZ && pat_diff(blk[4], SZ, 54) == SZ,
	      "neighbours written while moved keep their values");
	for (int i = 0; i < N; i++)
		if (i < 2 || i > 4)
			CHECK(pat_diff(blk[i], SZ, 30u + (unsigned)i) == SZ, "heap block %d", i);
	CHECK(pat_diff(late, SZ, 50) == SZ, "a block allocated while moved survives");
	CHECK(is_private_anon(blk[3]), "the heap page is private again");
	for (int i = 0; i < N; i++)
		free(blk[i]);
	free(late);
}

/*
 * Another thread keeps writing bytes that share a page with a buffer being
 * registered and deregistered: a counter, and a mutex both threads take.
 * Every store must survive the moves (none lands in a page copied a moment
 * too early), and no unlock may be lost (the waiter would hang).
 */
/* Three pages: data before the buffer on the first, after it on the last. */
struct shared_page {
	volatile uint64_t counter;
	pthread_mutex_t lock;
	uint8_t gap[1024 - 8 - sizeof(pthread_mutex_t)];
	uint8_t buf[3 * 4096 - 2048]; /* the registered bytes */
	uint8_t gap2[1024 - 64];
	volatile uint64_t counter2;
	uint8_t pad[56];
};
_Static_assert(sizeof(struct shared_page) == 3 * 4096, "three pages");

struct page_writer {
	struct shared_page *page;
	atomic_bool stop;
	uint64_t writes;
};

static void *write_on_page(void *arg)
{
	struct page_writer *w = arg;

	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		pthread_mutex_lock(&w->page->lock);
		w->page->counter++;
		w->page->counter2++;
		pthread_mutex_unlock(&w->page->lock);
		w->writes++;
	}
	return NULL;
}

static void mr_concurrent_writers(void)
{
	enum { ROUNDS = 300 };
	struct page_writer w = {0};
	struct shared_page *pg = aligned_alloc(4096, sizeof(struct shared_page));
	bool all_regs = true;
	pthread_t t;

	REQUIRE(pg, "aligned_alloc");
	memset(pg, 0, sizeof(*pg));
	pthread_mutex_init(&pg->lock, NULL);
	w.page = pg;
	REQUIRE(pthread_create(&t, NULL, write_on_page, &w) == 0, "pthread_create");
	for (int i = 0; i < ROUNDS; i++) {
		struct ibv_mr *mr = ibv_reg_mr(A.pd, pg->buf, sizeof(pg->buf), MR_ALL);

		all_regs &= mr != NULL;
		pthread_mutex_lock(&pg->lock); /* contended: the writer waits in the moved page */
		pg->counter++;
		pg->counter2++;
		pthread_mutex_unlock(&pg->lock);
		if (mr)
			ibv_dereg_mr(mr);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	CHECK(all_regs, "%d registrations of a buffer sharing its page", ROUNDS);
	CHECK(w.writes > 0, "the writer ran while the page moved (%llu stores)",
	      (unsigned long long)w.writes);
	CHECK(pg->counter == w.writes + ROUNDS && pg->counter2 == pg->counter,
	      "no store lost across %d moves each way, before and after the buffer: counters "
	      "%llu and %llu, stores %llu",
	      ROUNDS, (unsigned long long)pg->counter, (unsigned long long)pg->counter2,
	      (unsigned long long)(w.writes + ROUNDS));
	CHECK(is_private_anon(pg) && is_private_anon(pg->pad), "the pages are private again");
	pthread_mutex_destroy(&pg->lock);
	free(pg);
}

/*
 * A signal handler storing into the pages of a buffer its own thread is
 * registering: the store must neither be lost nor wait for a thaw that
 * only its interrupted thread could do.
 */
static struct shared_page *signalled_page;
static volatile sig_atomic_t alarms; /* not in the moving pages */

static void on_alarm(int sig)
{
	(void)sig;
	signalled_page->counter++;
	alarms++;
}

static void mr_signal_handler_writes(void)
{
	enum { ROUNDS = 300 };
	struct itimerval every = {{0, 50}, {0, 50}}, off = {{0, 0}, {0, 0}};
	struct sigaction sa = {.sa_handler = on_alarm}, old;
	struct shared_page *pg = aligned_alloc(4096, sizeof(struct shared_page));
	bool all_regs = true;

	REQUIRE(pg, "aligned_alloc");
	memset(pg, 0, sizeof(*pg));
	signalled_page = pg;
	sa.sa_flags = SA_RESTART;
	REQUIRE(sigaction(SIGALRM, &sa, &old) == 0, "sigaction");
	REQUIRE(setitimer(ITIMER_REAL, &every, NULL) == 0, "setitimer");
	for (int i = 0; i < ROUNDS; i++) {
		struct ibv_mr *mr = ibv_reg_mr(A.pd, pg->buf, sizeof(pg->buf), MR_ALL);

		all_regs &= mr != NULL;
		if (mr)
			ibv_dereg_mr(mr);
	}
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	CHECK(all_regs, "%d registrations with a signal handler writing beside the buffer", ROUNDS);
	CHECK(alarms > 0 && pg->counter == (uint64_t)alarms,
	      "the handler ran %d times; every store it made beside the buffer survived (%llu)",
	      (int)alarms, (unsigned long long)pg->counter);
	free(pg);
}

/* Memory that cannot be moved: EINVAL for remote access, nothing changed. */
static void mr_unmovable(void)
{
	size_t pg = page_size();
	char path[] = "/tmp/ivrdma-dp-XXXXXX", before[512], after[512];
	int fd = mkstemp(path);
	uint8_t *f, *ro, *hole, check[8192];
	struct ibv_mr *mr;

	REQUIRE(fd >= 0 && ftruncate(fd, 2 * (off_t)pg) == 0, "temp file");
	unlink(path);
	f = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(f != MAP_FAILED, "mmap file");
	fill(f, 2 * pg, 70);
	maps_line(f, before, sizeof(before));
	errno = 0;
	CHECK(!ibv_reg_mr(A.pd, f + 10, 100, MR_ALL) && errno == EINVAL,
	      "file mapping with remote access: EINVAL (%s)", strerror(errno));
	errno = 0;
	CHECK(!ibv_reg_mr(A.pd, f, pg, IBV_ACCESS_REMOTE_READ) && errno == EINVAL,
	      "file mapping with remote read: EINVAL (%s)", strerror(errno));
	maps_line(f, after, sizeof(after));
	CHECK(!strcmp(before, after), "the file mapping is untouched: %s", after);
	CHECK(pat_diff(f, 2 * pg, 70) == 2 * pg, "file contents unchanged");
	/* Local access only: registered in place, usable as a local SGE. */
	mr = ibv_reg_mr(A.pd, f, 2 * pg, IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(mr, "file mapping, local write only: %s", strerror(errno));
	{
		struct buf r;
		struct ibv_wc wc;

		buf_new(&r, B.pd, pg, MR_ALL);
		pair_connect(&A, &B, IBV_QPT_RC, &err_opts, &err_opts);
		CHECK(post1(A.qp, 80, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, f + 3, 1000, mr->lkey,
			    (uintptr_t)r.p, r.mr->rkey) == 0,
		      "write from the file mapping");
		poll1(A.cq, &wc);
		CHECK(wc.status == IBV_WC_SUCCESS && !memcmp(r.p, f + 3, 1000),
		      "an unmoved local MR is a source (%s)", ibv_wc_status_str(wc.status));
		CHECK(post1(A.qp, 81, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED, f + pg, 500, mr->lkey,
			    (uintptr_t)r.p + 1000, r.mr->rkey) == 0,
		      "read into the file mapping");
		poll1(A.cq, &wc);
		CHECK(wc.status == IBV_WC_SUCCESS && all_diff(f + pg, 500, 0xee) == 500,
		      "and a target (%s)", ibv_wc_status_str(wc.status));
		fill(f + pg, 500, 70 ^ 1);
		buf_free(&r);
	}
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	maps_line(f, after, sizeof(after));
	CHECK(!strcmp(before, after), "still the file mapping");
	CHECK(pread(fd, check, 2 * pg, 0) == (ssize_t)(2 * pg) && !memcmp(check, f, 2 * pg),
	      "the file holds what the mapping shows");
	munmap(f, 2 * pg);
	close(fd);
	/* A read-only mapping. */
	ro = mmap(NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(ro != MAP_FAILED, "mmap");
	maps_line(ro, before, sizeof(before));
	errno = 0;
	CHECK(!ibv_reg_mr(A.pd, ro, pg, IBV_ACCESS_REMOTE_READ) && errno == EINVAL,
	      "read-only mapping, remote read: EINVAL (%s)", strerror(errno));
	errno = 0;
	CHECK(!ibv_reg_mr(A.pd, ro, pg, MR_ALL) && errno == EINVAL,
	      "read-only mapping, remote write: EINVAL (%s)", strerror(errno));
	maps_line(ro, after, sizeof(after));
	CHECK(!strcmp(before, after) && all_diff(ro, pg, 0) == pg, "read-only mapping untouched");
	munmap(ro, pg);
	/* Nothing mapped at all. */
	hole = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(hole != MAP_FAILED, "mmap");
	munmap(hole, pg);
	errno = 0;
	CHECK(!ibv_reg_mr(A.pd, hole, pg, MR_ALL) && errno == EFAULT, "unmapped: EFAULT (%s)",
	      strerror(errno));
}

/* Bytes [from, to) of p still hold pattern 'seed' at their own offsets. */
static bool tail_is(const uint8_t *p, size_t from, size_t to, uint32_t seed)
{
	for (size_t i = from; i < to; i++)
		if (p[i] != pat(i, seed))
			return false;
	return true;
}

/* One buffer, two PDs: each key works only with QPs of its PD. */
static void mr_two_pds(void)
{
	struct ibv_pd *pd2 = ibv_alloc_pd(A.ctx);
	struct buf b;
	struct ibv_mr *m2;

	REQUIRE(pd2, "alloc_pd");
	buf_new(&b, A.pd, 4096, MR_ALL);
	fill(b.p, 4096, 90);
	m2 = ibv_reg_mr(pd2, b.p, 4096, MR_ALL);
	REQUIRE(m2, "the same buffer in a second PD: %s", strerror(errno));
	CHECK(m2->rkey != b.mr->rkey, "distinct keys");
	CHECK(pat_diff(b.p, 4096, 90) == 4096, "contents kept");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts); /* A's QP is in A.pd */
	CHECK(remote_write(b.p + 8, b.mr->rkey, 64, 91) == IBV_WC_SUCCESS, "key of the QP's PD");
	CHECK(remote_write(b.p + 8, m2->rkey, 64, 92) == IBV_WC_REM_ACCESS_ERR,
	      "key of the other PD: REM_ACCESS_ERR");
	CHECK(pat_diff(b.p + 8, 64, 91) == 64 && pat_diff(b.p, 8, 90) == 8, "data");
	CHECK(ibv_dereg_mr(m2) == 0, "dereg the second");
	CHECK(remote_write(b.p + 8, b.mr->rkey, 64, 93) == IBV_WC_SUCCESS, "the first lives on");
	CHECK(ibv_dereg_mr(b.mr) == 0, "dereg the first");
	b.mr = NULL;
	CHECK(pat_diff(b.p + 8, 64, 93) == 64 && tail_is(b.p, 72, 4096, 90),
	      "contents after both deregs");
	CHECK(is_private_anon(b.p), "private again");
	buf_free(&b);
	CHECK(ibv_dealloc_pd(pd2) == 0, "dealloc_pd");
}

/*
 * The owner tag of the chunk under the region page at addr, read from
 * the region file itself: which context holds the span.
 */
static uint32_t chunk_tag_at(const void *addr)
{
	char l[512], path[256] = "";
	unsigned long lo = 0, off = 0;
	struct ivrdma_region r;
	const char *why;
	uint32_t *tag, t = 0;
	struct stat st;
	void *base;
	int fd;

	maps_line(addr, l, sizeof(l));
	REQUIRE(sscanf(l, "%lx-%*x %*s %lx %*s %*s %255s", &lo, &off, path) == 3,
		"a file mapping at %p: %s", addr, l);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0 && fstat(fd, &st) == 0, "open %s: %s", path, strerror(errno));
	base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	REQUIRE(base != MAP_FAILED, "mmap %s", path);
	REQUIRE(ivrdma_region_open(&r, base, (uint64_t)st.st_size, &why) == 0, "region: %s", why);
	off += ((uintptr_t)addr & ~(page_size() - 1)) - lo;
	tag = ivrdma_table_entry(&r, &r.chunk_tags,
				 (uint32_t)((off - r.chunk_area_offset) >> r.chunk_shift));
	if (tag)
		t = __atomic_load_n(tag, __ATOMIC_RELAXED);
	munmap(base, (size_t)st.st_size);
	close(fd);
	return t;
}

/*
 * Pages are the process's, not a context's: two contexts register
 * overlapping ranges of one heap block (UCX and MPI libraries open a
 * device more than once), each MR keeps working as the span under it
 * grows, and the pages stay in the region until the last MR goes.
 */
static void mr_across_contexts(void)
{
	size_t pg = page_size();
	uint8_t *p = aligned_alloc(pg, 3 * pg);
	struct ibv_mr *mb, *ma;
	struct ibv_wc wc;

	REQUIRE(p, "aligned_alloc");
	fill(p, 3 * pg, 110);
	mb = ibv_reg_mr(B.pd, p + 100, 200, MR_ALL);
	ma = ibv_reg_mr(A.pd, p + 2000, 2 * pg, MR_ALL); /* overlaps B's page, grows the span */
	REQUIRE(mb && ma, "the same heap pages in two contexts: %s", strerror(errno));
	CHECK(pat_diff(p, 3 * pg, 110) == 3 * pg, "contents kept across both moves");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(p + 2100, ma->rkey, 500, 111) == IBV_WC_SUCCESS, "write via A's MR");
	CHECK(pat_diff(p + 2100, 500, 111) == 500, "lands at the application's address");
	/* B's key, moved to the grown span, is the source of a write into A's MR. */
	CHECK(post1(B.qp, 78, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, p + 100, 200, mb->lkey,
		    (uintptr_t)p + pg + 300, ma->rkey) == 0,
	      "post from B's MR");
	poll1(B.cq, &wc);
	CHECK(wc.status == IBV_WC_SUCCESS && !memcmp(p + pg + 300, p + 100, 200),
	      "B's re-pointed MR reads the right bytes (%s)", ibv_wc_status_str(wc.status));
	CHECK(ibv_dereg_mr(ma) == 0, "dereg A's MR");
	CHECK(is_region_page(p), "B's MR keeps its page in the region");
	CHECK(ibv_dereg_mr(mb) == 0, "dereg B's MR");
	CHECK(is_private_anon(p) && is_private_anon(p + 2 * pg), "private pages again");
	CHECK(pat_diff(p + 2100, 500, 111) == 500 && pat_diff(p, 100, 110) == 100,
	      "contents after both deregs");
	free(p);
}

/*
 * A context that closes while another context's MR uses the span it
 * moved in hands the span's chunks to that context: ivrdmad, reclaiming
 * the closed context's chunks, must not free the pages under a live MR.
 */
static void mr_handover_on_close(void)
{
	size_t pg = page_size();
	uint8_t *p = aligned_alloc(pg, 2 * pg);
	struct ibv_mr *mc, *ma;
	uint32_t tc, ta;
	struct ep C;

	REQUIRE(p, "aligned_alloc");
	fill(p, 2 * pg, 120);
	ep_open(&C);
	mc = ibv_reg_mr(C.pd, p, 2 * pg, MR_ALL); /* C moves the pages in: they are C's chunks */
	ma = ibv_reg_mr(A.pd, p + 10, 100, MR_ALL);
	REQUIRE(mc && ma, "reg_mr: %s", strerror(errno));
	tc = chunk_tag_at(p);
	CHECK(tc != 0, "the span's chunks are tagged");
	CHECK(ibv_dereg_mr(mc) == 0, "dereg C's MR");
	ep_close(&C);
	ta = chunk_tag_at(p);
	CHECK(is_region_page(p) && ta != 0 && ta != tc,
	      "C closed: its chunks passed to A (tag %#x, was %#x)", ta, tc);
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(p + 10, ma->rkey, 100, 121) == IBV_WC_SUCCESS, "A's MR works on");
	CHECK(ibv_dereg_mr(ma) == 0, "dereg A's MR");
	CHECK(is_private_anon(p), "private again");
	CHECK(pat_diff(p + 10, 100, 121) == 100 && pat_diff(p, 10, 120) == 10 &&
		  tail_is(p, 110, 2 * pg, 120),
	      "contents");
	free(p);
}

/*
 * A fork child gets its own copy of registered pages, as copy-on-write
 * gives it an HCA's pinned pages: what it writes (its heap beside the
 * buffer, the buffer itself) never reaches the parent, whose MR works on.
 */
static void mr_fork_child_private(void)
{
	struct buf b;
	pid_t pid;
	int st;

	buf_new(&b, A.pd, page_size(), MR_ALL);
	fill(b.p, b.maplen, 130);
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		fill(b.p, b.maplen, 131);
		_exit(pat_diff(b.p, b.maplen, 131) == b.maplen && !is_region_page(b.p) ? 0 : 1);
	}
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child wrote its own private copy");
	CHECK(pat_diff(b.p, b.maplen, 130) == b.maplen, "the parent's pages never saw it");
	CHECK(is_region_page(b.p), "the parent's pages are still the region's");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(b.p + 64, b.mr->rkey, 128, 132) == IBV_WC_SUCCESS &&
		  pat_diff(b.p + 64, 128, 132) == 128,
	      "the parent's MR works after the fork");
	buf_free(&b);
}

/*
 * The application unmaps a registered buffer and maps new memory at the
 * same address: a new registration there takes the new memory, and
 * deregistering the old (stale) MR leaves the new memory alone.
 */
static void mr_unmapped_under_mr(void)
{
	size_t len = 2 * page_size();
	struct ibv_mr *old, *nw;
	uint8_t *p, *q;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	old = ibv_reg_mr(A.pd, p, len, MR_ALL);
	REQUIRE(old, "reg_mr: %s", strerror(errno));
	REQUIRE(munmap(p, len) == 0, "munmap the registered buffer");
	q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	REQUIRE(q == p, "new memory at the same address");
	fill(q, len, 140);
	nw = ibv_reg_mr(A.pd, q, len, MR_ALL);
	REQUIRE(nw, "the new memory registers: %s", strerror(errno));
	CHECK(pat_diff(q, len, 140) == len, "its contents kept");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(q + 8, nw->rkey, 64, 141) == IBV_WC_SUCCESS &&
		  pat_diff(q + 8, 64, 141) == 64,
	      "write via the new MR");
	CHECK(ibv_dereg_mr(old) == 0 && is_region_page(q), "dereg of the old MR leaves the new");
	CHECK(remote_write(q + 300, nw->rkey, 64, 142) == IBV_WC_SUCCESS &&
		  pat_diff(q + 300, 64, 142) == 64,
	      "the new MR works on");
	CHECK(ibv_dereg_mr(nw) == 0 && is_private_anon(q), "private after the new MR goes");
	CHECK(pat_diff(q + 8, 64, 141) == 64 && pat_diff(q, 8, 140) == 8, "contents");
	munmap(q, len);
}

/*
 * Two registrations share a span; the application frees the memory of
 * one and maps new memory there (a heap that shrinks and grows again):
 * the other MR, whose pages never went away, keeps working (Open MPI's
 * registration cache lost messages when it did not).
 */
static void mr_neighbour_unmapped(void)
{
	size_t pg = page_size();
	uint8_t *p = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *m1, *m2, *m3;

	REQUIRE(p != MAP_FAILED, "mmap");
	fill(p, 4 * pg, 180);
	m1 = ibv_reg_mr(A.pd, p, 2 * pg, MR_ALL);
	m2 = ibv_reg_mr(A.pd, p + 2 * pg, 2 * pg, MR_ALL);
	REQUIRE(m1 && m2, "reg_mr: %s", strerror(errno));
	REQUIRE(munmap(p + 2 * pg, 2 * pg) == 0, "unmap m2's pages");
	REQUIRE(mmap(p + 2 * pg, 2 * pg, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == p + 2 * pg,
		"new memory there");
	fill(p + 2 * pg, 2 * pg, 181);
	m3 = ibv_reg_mr(A.pd, p + 2 * pg, 2 * pg, MR_ALL);
	REQUIRE(m3, "the new memory registers: %s", strerror(errno));
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(p + 100, m1->rkey, 64, 182) == IBV_WC_SUCCESS &&
		  pat_diff(p + 100, 64, 182) == 64,
	      "the neighbour's MR still reaches the application's memory");
	CHECK(remote_write(p + 2 * pg + 8, m3->rkey, 64, 183) == IBV_WC_SUCCESS &&
		  pat_diff(p + 2 * pg + 8, 64, 183) == 64,
	      "and so does the new one");
	CHECK(ibv_dereg_mr(m2) == 0 && ibv_dereg_mr(m1) == 0 && ibv_dereg_mr(m3) == 0, "dereg");
	CHECK(is_private_anon(p) && is_private_anon(p + 3 * pg), "private again");
	CHECK(pat_diff(p + 100, 64, 182) == 64 && pat_diff(p + 2 * pg + 8, 64, 183) == 64,
	      "contents after dereg");
	munmap(p, 4 * pg);
}

/* A registered buffer moved by mremap (realloc does) registers at its new address. */
static void mr_mremapped(void)
{
	size_t len = 2 * page_size();
	struct ibv_mr *old, *nw;
	uint8_t *p, *q;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(p != MAP_FAILED, "mmap");
	fill(p, len, 150);
	old = ibv_reg_mr(A.pd, p, len, MR_ALL);
	REQUIRE(old, "reg_mr: %s", strerror(errno));
	q = mremap(p, len, 2 * len, MREMAP_MAYMOVE);
	REQUIRE(q != MAP_FAILED, "mremap: %s", strerror(errno));
	nw = ibv_reg_mr(A.pd, q, 2 * len, MR_ALL);
	REQUIRE(nw, "the moved buffer registers: %s", strerror(errno));
	CHECK(pat_diff(q, len, 150) == len, "contents carried by mremap");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(q + len + 16, nw->rkey, 100, 151) == IBV_WC_SUCCESS, "write via it");
	CHECK(ibv_dereg_mr(old) == 0 && ibv_dereg_mr(nw) == 0, "dereg both");
	CHECK(is_private_anon(q) && is_private_anon(q + len), "private again");
	CHECK(pat_diff(q, len, 150) == len && pat_diff(q + len + 16, 100, 151) == 100, "contents");
	munmap(q, 2 * len);
}

/* The region offset of the page at addr, from the maps (a region page). */
static uint64_t region_offset_at(const void *addr)
{
	char l[512];
	unsigned long lo = 0, off = 0;

	maps_line(addr, l, sizeof(l));
	REQUIRE(sscanf(l, "%lx-%*x %*s %lx", &lo, &off) == 2, "maps line: %s", l);
	return off + (((uintptr_t)addr & ~(page_size() - 1)) - lo);
}

/*
 * A registration that extends a registered range forward grows its span
 * in place: the registered pages stay where they are in the region, so
 * a peer writing into them meanwhile cannot lose its bytes to a copy.
 */
static void mr_grows_in_place(void)
{
	size_t pg = page_size();
	uint8_t *p = mmap(NULL, 8 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *m1, *m2, *m3;
	uint64_t off;

	REQUIRE(p != MAP_FAILED, "mmap");
	fill(p, 8 * pg, 170);
	m1 = ibv_reg_mr(A.pd, p + pg, pg, MR_ALL);
	REQUIRE(m1, "reg_mr: %s", strerror(errno));
	off = region_offset_at(p + pg);
	m2 = ibv_reg_mr(A.pd, p + pg + 100, 3 * pg, MR_ALL);
	REQUIRE(m2, "reg_mr overlapping forward: %s", strerror(errno));
	CHECK(region_offset_at(p + pg) == off, "growing forward left the registered page in place");
	m3 = ibv_reg_mr(A.pd, p, 2 * pg,
			MR_ALL); /* backward: in place if the chunk before is free */
	REQUIRE(m3, "reg_mr overlapping backward: %s", strerror(errno));
	CHECK(pat_diff(p, 8 * pg, 170) == 8 * pg, "contents kept");
	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	CHECK(remote_write(p + pg + 8, m1->rkey, 64, 171) == IBV_WC_SUCCESS &&
		  remote_write(p + 3 * pg, m2->rkey, 64, 172) == IBV_WC_SUCCESS &&
		  remote_write(p + 10, m3->rkey, 64, 173) == IBV_WC_SUCCESS,
	      "writes through all three");
	CHECK(pat_diff(p + pg + 8, 64, 171) == 64 && pat_diff(p + 3 * pg, 64, 172) == 64 &&
		  pat_diff(p + 10, 64, 173) == 64,
	      "land at the application's addresses");
	CHECK(ibv_dereg_mr(m2) == 0 && ibv_dereg_mr(m1) == 0 && ibv_dereg_mr(m3) == 0, "dereg");
	CHECK(is_private_anon(p) && is_private_anon(p + 3 * pg), "private again");
	CHECK(pat_diff(p + 3 * pg, 64, 172) == 64 && tail_is(p, 3 * pg + 64, 8 * pg, 170),
	      "contents after dereg");
	munmap(p, 8 * pg);
}

/*
 * A registration that joins two registered ranges moves their bytes to
 * new chunks while a peer writes into one of them: no write may be lost
 * to the old chunks (ivrdma_mr_flags). The writer reads back every value
 * it writes; one that landed in the old chunks after the copy reads back
 * stale, and the application's addresses must hold the last of each.
 */
enum { MOVE_SLOTS = 64, MOVE_WRITES = 40 };

struct move_writer {
	uint8_t *target; /* A's MR, set while phase is 1 */
	uint32_t rkey;
	atomic_int phase;	    /* 1: write; 0: stop and acknowledge */
	atomic_uint request, ack;   /* the writer copies request to ack once stopped */
	atomic_ulong writes;	    /* writes read back */
	atomic_ulong stale, failed; /* read back wrong; completed in error */
	uint64_t last[MOVE_SLOTS];  /* the last value written to each slot */
};

static bool write_and_read_back(struct move_writer *w, struct buf *io, uint64_t v)
{
	uint64_t *src = (uint64_t *)io->p, *back = src + 1;
	uint8_t *at = w->target + (v % MOVE_SLOTS) * 8;
	struct ibv_wc wc;

	*src = v;
	*back = 0;
	if (post1(B.qp, 1, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, src, 8, io->mr->lkey,
		  (uintptr_t)at, w->rkey) ||
	    !poll1(B.cq, &wc) || wc.status != IBV_WC_SUCCESS ||
	    post1(B.qp, 2, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED, back, 8, io->mr->lkey,
		  (uintptr_t)at, w->rkey) ||
	    !poll1(B.cq, &wc) || wc.status != IBV_WC_SUCCESS)
		return false;
	if (*back != v)
		atomic_fetch_add(&w->stale, 1);
	w->last[v % MOVE_SLOTS] = v;
	atomic_fetch_add(&w->writes, 1);
	return true;
}

static void *move_writer_thread(void *arg)
{
	struct move_writer *w = arg;
	struct buf io;
	uint64_t v = 0;

	buf_new(&io, B.pd, 16, MR_ALL);
	/* One load of phase per turn: a 0 that turns -1 between two loads must not write. */
	for (int phase; (phase = atomic_load(&w->phase)) >= 0;) {
		if (phase == 0) {
			atomic_store(&w->ack, atomic_load(&w->request));
			sched_yield();
		} else if (!write_and_read_back(w, &io, ++v)) {
			atomic_fetch_add(&w->failed, 1);
			break;
		}
	}
	atomic_store(&w->ack, UINT_MAX);
	buf_free(&io);
	return NULL;
}

/* Until the writer has read back 'n' more writes (false if it failed). */
static bool writes_go_on(struct move_writer *w, unsigned long n)
{
	unsigned long until = atomic_load(&w->writes) + n;

	while (atomic_load(&w->writes) < until)
		if (atomic_load(&w->failed))
			return false;
	return true;
}

static void writer_stop(struct move_writer *w)
{
	unsigned int token = atomic_load(&w->request) + 1;

	atomic_store(&w->phase, 0);
	atomic_store(&w->request, token);
	while (atomic_load(&w->ack) != token && atomic_load(&w->ack) != UINT_MAX)
		sched_yield();
}

/* One move under writes: the writer's last values must be at the application's addresses. */
static bool one_move_under_writes(struct move_writer *w, uint8_t *p, size_t pg)
{
	struct ibv_mr *m1 = ibv_reg_mr(A.pd, p, 4 * pg, MR_ALL);
	struct ibv_mr *m2 = ibv_reg_mr(A.pd, p + 8 * pg, 4 * pg, MR_ALL), *m3 = NULL;
	bool ok = m1 && m2;

	memset(w->last, 0, sizeof(w->last));
	if (ok) {
		w->target = p;
		w->rkey = m1->rkey;
		atomic_store(&w->phase, 1);
		ok = writes_go_on(w, MOVE_WRITES);
		m3 = ibv_reg_mr(A.pd, p + 2 * pg, 8 * pg, MR_ALL); /* joins m1's and m2's spans */
		ok = ok && m3 && writes_go_on(w, MOVE_WRITES);
		writer_stop(w);
	}
	for (int k = 0; ok && k < MOVE_SLOTS; k++)
		ok = memcmp(p + k * 8, &w->last[k], 8) == 0;
	if (m3)
		ibv_dereg_mr(m3);
	if (m2)
		ibv_dereg_mr(m2);
	if (m1)
		ibv_dereg_mr(m1);
	return ok;
}

static void mr_moves_under_writes(void)
{
	enum { ROUNDS = 100 };
	size_t pg = page_size();
	struct move_writer w = {0};
	pthread_t t;
	int rounds = 0;

	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	REQUIRE(pthread_create(&t, NULL, move_writer_thread, &w) == 0, "pthread_create");
	for (bool ok = true; ok && rounds < ROUNDS;) {
		uint8_t *p =
		    mmap(NULL, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		REQUIRE(p != MAP_FAILED, "mmap");
		ok = one_move_under_writes(&w, p, pg);
		rounds += ok;
		munmap(p, 16 * pg);
	}
	atomic_store(&w.phase, -1);
	pthread_join(t, NULL);
	CHECK(rounds == ROUNDS && !atomic_load(&w.failed) && !atomic_load(&w.stale),
	      "%d of %d moves under a peer's writes kept every write (%lu written, %lu read back "
	      "stale, %lu failed)",
	      rounds, ROUNDS, atomic_load(&w.writes), atomic_load(&w.stale),
	      atomic_load(&w.failed));
}

/* Static data: initialized (.data, a private file mapping) and zeroed (.bss). */
static uint8_t static_data[3000] = {1};
static uint8_t static_bss[5000];

/* B writes into [p, p + len) through a fresh MR of A; the bytes around stay. */
static void register_and_write(uint8_t *p, size_t len, uint32_t seed, const char *what)
{
	struct ibv_mr *mr;

	fill(p, len, seed);
	mr = ibv_reg_mr(A.pd, p, len, MR_ALL);
	CHECK(mr, "%s registers: %s", what, strerror(errno));
	if (!mr)
		return;
	CHECK(pat_diff(p, len, seed) == len, "%s keeps its contents", what);
	CHECK(remote_write(p + 1, mr->rkey, len - 2, seed + 1) == IBV_WC_SUCCESS &&
		  pat_diff(p + 1, len - 2, seed + 1) == len - 2,
	      "%s takes a remote write", what);
	CHECK(ibv_dereg_mr(mr) == 0, "dereg %s", what);
	CHECK(p[0] == pat(0, seed) && pat_diff(p + 1, len - 2, seed + 1) == len - 2,
	      "%s after dereg", what);
}

/* Whatever memory an MPI library hands over: static data and the stack too. */
static void mr_static_and_stack(void)
{
	uint8_t stack_buf[6000];

	pair_connect(&B, &A, IBV_QPT_RC, &err_opts, &err_opts);
	register_and_write(static_data, sizeof(static_data), 160, "initialized static data");
	register_and_write(static_bss, sizeof(static_bss), 162, "zeroed static data");
	register_and_write(stack_buf, sizeof(stack_buf), 164, "a stack buffer");
}

static void group_mr(void)
{
	mr_overlaps();
	mr_unaligned_heap();
	mr_concurrent_writers();
	mr_signal_handler_writes();
	mr_unmovable();
	mr_two_pds();
	mr_across_contexts();
	mr_handover_on_close();
	mr_fork_child_private();
	mr_unmapped_under_mr();
	mr_neighbour_unmapped();
	mr_mremapped();
	mr_static_and_stack();
	mr_grows_in_place();
	mr_moves_under_writes();
}

/* --- two processes: a sleeping target, a killed peer ----------------------- */

struct info {
	uint32_t qpn, rkey;
	uint16_t lid;
	uint64_t addr;
};

static void xfer(int fd, void *p, size_t n, bool out)
{
	ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

	REQUIRE(r == (ssize_t)n, "socketpair %s: %zd", out ? "write" : "read", r);
}

/* The process is blocked in (clock_)nanosleep: its state and current syscall. */
static bool in_sleep(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	long nr = -1;
	char state = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		state = p[2];
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%ld", &nr) != 1)
			nr = -1;
		fclose(f);
	}
	return state == 'S' && (nr == 230 || nr == 35); /* clock_nanosleep, nanosleep (x86_64) */
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* The target: sets up, then sleeps until the initiator is done; checks the write after. */
static int sleeping_target(int sock)
{
	struct qpopts o = err_opts;
	struct info me, peer;
	struct buf t;
	struct sigaction sa = {.sa_handler = on_usr1};
	unsigned int left;
	size_t pg = page_size();
	char c = 'S';

	ep_open(&B);
	buf_new(&t, B.pd, 2 * pg, MR_ALL);
	fill(t.p, pg, 21);
	ep_qp(&B, IBV_QPT_RC, &o);
	me = (struct info){B.qp->qp_num, t.mr->rkey, B.lid, (uintptr_t)t.p};
	xfer(sock, &me, sizeof(me), true);
	xfer(sock, &peer, sizeof(peer), false);
	qp_connect(B.qp, peer.qpn, peer.lid, &o);
	sigaction(SIGUSR1, &sa, NULL);
	xfer(sock, &c, 1, true);
	left = sleep(600); /* until the initiator's SIGUSR1 */
	CHECK(left > 0, "woken by the initiator, not by the clock");
	CHECK(pat_diff(t.p + pg, pg, 22) == pg, "the write landed while I slept");
	CHECK(pat_diff(t.p, pg, 21) == pg, "the read left my data alone");
	CHECK(cq_empty(B.cq), "one-sided: no completion on the target");
	buf_free(&t);
	ep_close(&B);
	return check_summary();
}

static void sleep_test(void)
{
	int sv[2], st;
	pid_t pid;
	struct qpopts o = err_opts;
	struct info me, peer;
	struct buf w, r;
	size_t pg = page_size();
	uint64_t end;
	char c;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		close(sv[0]);
		_exit(sleeping_target(sv[1]));
	}
	close(sv[1]);
	ep_open(&A);
	buf_new(&w, A.pd, pg, IBV_ACCESS_LOCAL_WRITE);
	buf_new(&r, A.pd, pg, IBV_ACCESS_LOCAL_WRITE);
	fill(w.p, pg, 22);
	ep_qp(&A, IBV_QPT_RC, &o);
	xfer(sv[0], &peer, sizeof(peer), false);
	me = (struct info){A.qp->qp_num, 0, A.lid, 0};
	xfer(sv[0], &me, sizeof(me), true);
	qp_connect(A.qp, peer.qpn, peer.lid, &o);
	xfer(sv[0], &c, 1, false);
	for (end = now_s() + DP_DEADLINE_S; !in_sleep(pid) && now_s() <= end;)
		usleep(1000);
	REQUIRE(in_sleep(pid), "the target is asleep in nanosleep");
	CHECK(post1(A.qp, 1, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, w.p, (uint32_t)pg, w.mr->lkey,
		    peer.addr + pg, peer.rkey) == 0,
	      "post write");
	CHECK(post1(A.qp, 2, IBV_WR_RDMA_READ, IBV_SEND_SIGNALED, r.p, (uint32_t)pg, r.mr->lkey,
		    peer.addr, peer.rkey) == 0,
	      "post read");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_RDMA_WRITE, "write while the target sleeps");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 2, IBV_WC_RDMA_READ, "read while the target sleeps");
	CHECK(pat_diff(r.p, pg, 21) == pg, "read data from the sleeping target");
	CHECK(in_sleep(pid), "the target still sleeps after both completions");
	kill(pid, SIGUSR1);
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the target's checks (status %#x)", st);
	close(sv[0]);
	buf_free(&w);
	buf_free(&r);
	ep_close(&A);
}

/*
 * The target process is killed with a receive of mine still posted: within
 * a bounded time my QP fails on its own (the receive flushes, and
 * IBV_EVENT_QP_FATAL), and a write that was still to go ends in
 * IBV_WC_RETRY_EXC_ERR if it beat the failure, in a flush if not.
 */
static void killed_peer(void)
{
	int sv[2], st;
	pid_t pid;
	struct qpopts o = err_opts;
	struct info me, peer;
	struct buf w;
	struct ibv_wc wc;
	uint64_t end;
	char c = 'R';
	int ok = 0;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		struct buf t;

		close(sv[0]);
		ep_open(&B);
		buf_new(&t, B.pd, 4096, MR_ALL);
		ep_qp(&B, IBV_QPT_RC, &o);
		me = (struct info){B.qp->qp_num, t.mr->rkey, B.lid, (uintptr_t)t.p};
		xfer(sv[1], &me, sizeof(me), true);
		xfer(sv[1], &peer, sizeof(peer), false);
		qp_connect(B.qp, peer.qpn, peer.lid, &o);
		xfer(sv[1], &c, 1, true);
		for (;;)
			pause();
	}
	close(sv[1]);
	ep_open(&A);
	buf_new(&w, A.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	ep_qp(&A, IBV_QPT_RC, &o);
	xfer(sv[0], &peer, sizeof(peer), false);
	me = (struct info){A.qp->qp_num, 0, A.lid, 0};
	xfer(sv[0], &me, sizeof(me), true);
	qp_connect(A.qp, peer.qpn, peer.lid, &o);
	xfer(sv[0], &c, 1, false);
	CHECK(post1(A.qp, 1, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, w.p, 64, w.mr->lkey, peer.addr,
		    peer.rkey) == 0,
	      "write to the live peer");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 1, IBV_WC_RDMA_WRITE, "write to the live peer");
	CHECK(post_recv1(A.qp, 77, w.p, 64, w.mr->lkey) == 0, "post_recv");
	kill(pid, SIGKILL);
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
	/* A receive-only survivor: nothing to do but wait, and it is told. */
	CHECK(expect_async(A.ctx, IBV_EVENT_QP_FATAL, A.qp), "killed peer: IBV_EVENT_QP_FATAL");
	EXPECT_WC(A.cq, IBV_WC_WR_FLUSH_ERR, 77, IBV_WC_RECV, "killed peer: receive flushed");
	/* Until ivrdmad has seen the peer go, writes may still land in its memory. */
	for (end = now_s() + DP_DEADLINE_S;; ok++) {
		CHECK(post1(A.qp, 2, IBV_WR_RDMA_WRITE, IBV_SEND_SIGNALED, w.p, 64, w.mr->lkey,
			    peer.addr, peer.rkey) == 0,
		      "post write");
		poll1(A.cq, &wc);
		if (wc.status != IBV_WC_SUCCESS || now_s() > end)
			break;
	}
	CHECK(wc.status == IBV_WC_WR_FLUSH_ERR, "killed peer: %s after %d writes",
	      ibv_wc_status_str(wc.status), ok);
	CHECK(cq_empty(A.cq), "one completion");
	check_flushing(&A, "killed peer");
	close(sv[0]);
	buf_free(&w);
	ep_close(&A);
}

/* --- modify_qp ------------------------------------------------------------- */

static int mod(struct ibv_qp *qp, struct ibv_qp_attr a, int mask)
{
	return ibv_modify_qp(qp, &a, mask);
}

/*
 * Affiliated events of the state machine: COMM_EST when a message reaches a
 * QP still in RTR; SQ_DRAINED on entering SQD (a send posted in SQD waits
 * for RTS); LAST_WQE_REACHED when a QP on an SRQ goes to ERR.
 */
static void qp_events(void)
{
	struct qpopts o = {.rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .min_rnr_timer = 1};
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = 8, .max_sge = 1}};
	struct ibv_qp_attr sqd = {.qp_state = IBV_QPS_SQD, .en_sqd_async_notify = 1};
	struct ibv_qp_attr rts = {.qp_state = IBV_QPS_RTS}, err = {.qp_state = IBV_QPS_ERR};
	struct ibv_qp_init_attr ia = {.send_cq = B.cq,
				      .recv_cq = B.cq,
				      .qp_type = IBV_QPT_RC,
				      .cap = {.max_send_wr = 4, .max_send_sge = 1}};
	struct ibv_srq *srq;
	struct ibv_qp *q;
	struct buf b;

	buf_new(&b, B.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	ep_qp(&A, IBV_QPT_RC, &o);
	ep_qp(&B, IBV_QPT_RC, &o);
	CHECK(qp_init(A.qp, 0) == 0 && qp_init(B.qp, 0) == 0, "INIT");
	CHECK(qp_rtr(B.qp, A.qp->qp_num, A.lid, &o) == 0, "B RTR");
	CHECK(qp_rtr(A.qp, B.qp->qp_num, B.lid, &o) == 0 && qp_rts(A.qp, &o) == 0, "A RTS");
	CHECK(post_recv1(B.qp, 1, b.p, 64, b.mr->lkey) == 0, "post_recv");
	CHECK(post1(A.qp, 2, IBV_WR_SEND, IBV_SEND_SIGNALED, NULL, 0, 0, 0, 0) == 0, "send");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 2, IBV_WC_SEND, "send to a QP in RTR");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 1, IBV_WC_RECV, "received in RTR");
	CHECK(expect_async(B.ctx, IBV_EVENT_COMM_EST, B.qp), "IBV_EVENT_COMM_EST");
	CHECK(qp_rts(B.qp, &o) == 0, "B RTS");

	CHECK(ibv_modify_qp(A.qp, &sqd, IBV_QP_STATE | IBV_QP_EN_SQD_ASYNC_NOTIFY) == 0, "SQD");
	CHECK(expect_async(A.ctx, IBV_EVENT_SQ_DRAINED, A.qp), "IBV_EVENT_SQ_DRAINED");
	CHECK(post_recv1(B.qp, 3, b.p, 64, b.mr->lkey) == 0, "post_recv");
	CHECK(post1(A.qp, 4, IBV_WR_SEND, IBV_SEND_SIGNALED, NULL, 0, 0, 0, 0) == 0, "post in SQD");
	CHECK(cq_empty(A.cq) && cq_empty(B.cq), "nothing starts in SQD");
	CHECK(ibv_modify_qp(A.qp, &rts, IBV_QP_STATE) == 0, "SQD -> RTS");
	EXPECT_WC(A.cq, IBV_WC_SUCCESS, 4, IBV_WC_SEND, "the held send, after RTS");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 3, IBV_WC_RECV, "its receive");

	srq = ibv_create_srq(B.pd, &sa);
	REQUIRE(srq, "create_srq: %s", strerror(errno));
	ia.srq = srq;
	q = ibv_create_qp(B.pd, &ia);
	REQUIRE(q, "create_qp on an SRQ: %s", strerror(errno));
	CHECK(qp_init(q, 0) == 0, "INIT");
	CHECK(ibv_modify_qp(q, &err, IBV_QP_STATE) == 0, "to ERR");
	CHECK(expect_async(B.ctx, IBV_EVENT_QP_LAST_WQE_REACHED, q),
	      "IBV_EVENT_QP_LAST_WQE_REACHED");
	CHECK(ibv_destroy_qp(q) == 0 && ibv_destroy_srq(srq) == 0, "destroy");
	buf_free(&b);
}

struct late_ack {
	struct ibv_async_event ev;
	atomic_bool acked;
};

static void *ack_later(void *arg)
{
	struct late_ack *a = arg;

	usleep(200 * 1000);
	atomic_store(&a->acked, true);
	ibv_ack_async_event(&a->ev);
	return NULL;
}

/*
 * Destroying a QP with async events about it, as with a kernel device: the
 * ones never read are dropped (others stay), and destroy waits for the
 * acknowledgement of one that was read (ibv_ack_async_event touches the QP).
 */
static void destroy_with_events(void)
{
	struct qpopts o = {.rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .min_rnr_timer = 1};
	struct ibv_qp_attr sqd = {.qp_state = IBV_QPS_SQD, .en_sqd_async_notify = 1};
	struct ibv_qp_attr err = {.qp_state = IBV_QPS_ERR};
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = 8, .max_sge = 1}};
	struct ibv_qp_init_attr ia = {.send_cq = A.cq,
				      .recv_cq = A.cq,
				      .qp_type = IBV_QPT_RC,
				      .cap = {.max_send_wr = 4, .max_send_sge = 1}};
	struct late_ack la = {0};
	struct ibv_srq *srq;
	struct ibv_qp *x, *q;
	pthread_t t;

	srq = ibv_create_srq(A.pd, &sa);
	REQUIRE(srq, "create_srq: %s", strerror(errno));
	ia.srq = srq;
	x = ibv_create_qp(A.pd, &ia);
	REQUIRE(x, "create_qp: %s", strerror(errno));
	CHECK(qp_init(x, 0) == 0 && ibv_modify_qp(x, &err, IBV_QP_STATE) == 0, "x to ERR");
	pair_connect(&A, &B, IBV_QPT_RC, &o, &o);
	CHECK(ibv_modify_qp(A.qp, &sqd, IBV_QP_STATE | IBV_QP_EN_SQD_ASYNC_NOTIFY) == 0, "SQD");
	CHECK(async_pending(A.ctx, DP_DEADLINE_S * 1000), "events posted");
	q = A.qp;
	A.qp = NULL;
	CHECK(ibv_destroy_qp(q) == 0, "destroy a QP whose SQ_DRAINED was never read");
	CHECK(expect_async(A.ctx, IBV_EVENT_QP_LAST_WQE_REACHED, x), "another QP's event stays");
	CHECK(!async_pending(A.ctx, 100), "the destroyed QP's event went with it");
	CHECK(ibv_destroy_qp(x) == 0 && ibv_destroy_srq(srq) == 0, "destroy");

	pair_connect(&A, &B, IBV_QPT_RC, &o, &o);
	CHECK(ibv_modify_qp(A.qp, &sqd, IBV_QP_STATE | IBV_QP_EN_SQD_ASYNC_NOTIFY) == 0, "SQD");
	REQUIRE(async_pending(A.ctx, DP_DEADLINE_S * 1000) &&
		    ibv_get_async_event(A.ctx, &la.ev) == 0,
		"SQ_DRAINED read");
	REQUIRE(pthread_create(&t, NULL, ack_later, &la) == 0, "pthread_create");
	q = A.qp;
	A.qp = NULL;
	CHECK(ibv_destroy_qp(q) == 0 && atomic_load(&la.acked),
	      "destroy returns only after the read event's acknowledgement");
	pthread_join(t, NULL);
}

/*
 * An SRQ's limit event while its owner never polls, only waits on its
 * async fd: the initiator taking receives below the limit must wake it.
 */
static void srq_limit_while_waiting(void)
{
	struct qpopts o = {.rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .min_rnr_timer = 1};
	struct ibv_srq_init_attr sa = {.attr = {.max_wr = 8, .max_sge = 1}};
	struct ibv_srq_attr limit = {.srq_limit = 4};
	struct ibv_qp_init_attr ia = {.send_cq = B.cq,
				      .recv_cq = B.cq,
				      .qp_type = IBV_QPT_RC,
				      .cap = {.max_send_wr = 4, .max_send_sge = 1}};
	struct ibv_async_event ev;
	struct ibv_srq *srq;
	struct buf b;
	bool got;

	buf_new(&b, B.pd, 4096, IBV_ACCESS_LOCAL_WRITE);
	srq = ibv_create_srq(B.pd, &sa);
	REQUIRE(srq, "create_srq: %s", strerror(errno));
	ia.srq = srq;
	ep_qp(&A, IBV_QPT_RC, &o);
	if (B.qp)
		CHECK(ibv_destroy_qp(B.qp) == 0, "destroy_qp");
	B.qp = ibv_create_qp(B.pd, &ia);
	REQUIRE(B.qp, "create_qp on an SRQ: %s", strerror(errno));
	qp_connect(A.qp, B.qp->qp_num, B.lid, &o);
	qp_connect(B.qp, A.qp->qp_num, A.lid, &o);
	for (int i = 0; i < 6; i++) {
		struct ibv_sge s = {(uintptr_t)b.p + 64u * (unsigned)i, 64, b.mr->lkey};
		struct ibv_recv_wr wr = {.wr_id = (uint64_t)i, .sg_list = &s, .num_sge = 1}, *bad;

		CHECK(ibv_post_srq_recv(srq, &wr, &bad) == 0, "post_srq_recv");
	}
	CHECK(ibv_modify_srq(srq, &limit, IBV_SRQ_LIMIT) == 0, "arm the limit at 4 (6 posted)");
	for (int i = 0; i < 3; i++) {
		CHECK(post1(A.qp, 10u + (unsigned)i, IBV_WR_SEND, IBV_SEND_SIGNALED, NULL, 0, 0, 0,
			    0) == 0,
		      "send");
		EXPECT_WC(A.cq, IBV_WC_SUCCESS, 10 + i, IBV_WC_SEND, "send");
	}
	/* B has not polled its CQ: only its event thread can notice. */
	got = async_pending(B.ctx, DP_DEADLINE_S * 1000) && ibv_get_async_event(B.ctx, &ev) == 0;
	CHECK(got && ev.event_type == IBV_EVENT_SRQ_LIMIT_REACHED && ev.element.srq == srq,
	      "IBV_EVENT_SRQ_LIMIT_REACHED while the owner only waits on its async fd");
	if (got)
		ibv_ack_async_event(&ev);
	for (int i = 0; i < 3; i++)
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, i, IBV_WC_RECV, "the receives");
	CHECK(ibv_destroy_qp(B.qp) == 0 && ibv_destroy_srq(srq) == 0, "destroy");
	B.qp = NULL;
	buf_free(&b);
}

static void group_modify(void)
{
	struct qpopts o = {.max_send_wr = 10, .max_inline = 64, .max_sge = 3};
	const int init_m = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
	const int rtr_m = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
	const int rts_m = IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
	struct ibv_qp_attr init = {.qp_state = IBV_QPS_INIT,
				   .port_num = 1,
				   .qp_access_flags =
				       IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ};
	struct ibv_qp_attr rtr = {.qp_state = IBV_QPS_RTR,
				  .path_mtu = IBV_MTU_1024,
				  .rq_psn = 0x123,
				  .max_dest_rd_atomic = 4,
				  .min_rnr_timer = 12},
			   rts = {.qp_state = IBV_QPS_RTS,
				  .sq_psn = 0x456,
				  .timeout = 17,
				  .retry_cnt = 5,
				  .rnr_retry = 6,
				  .max_rd_atomic = 2},
			   a, bad;
	struct ibv_qp_init_attr ia;
	struct ibv_qp *qp;

	ep_qp(&B, IBV_QPT_RC, &o);
	qp = ep_qp(&A, IBV_QPT_RC, &o);
	rtr.dest_qp_num = B.qp->qp_num;
	rtr.ah_attr = (struct ibv_ah_attr){.dlid = B.lid, .port_num = 1};
	/* RESET */
	CHECK(mod(qp, rtr, rtr_m) == EINVAL, "RESET -> RTR");
	CHECK(mod(qp, rts, rts_m) == EINVAL, "RESET -> RTS");
	CHECK(mod(qp, init, init_m & ~IBV_QP_PORT) == EINVAL, "INIT without PORT");
	CHECK(mod(qp, init, init_m & ~IBV_QP_ACCESS_FLAGS) == EINVAL, "INIT without ACCESS_FLAGS");
	CHECK(mod(qp, init, init_m & ~IBV_QP_PKEY_INDEX) == EINVAL, "INIT without PKEY_INDEX");
	CHECK(mod(qp, init, init_m | IBV_QP_SQ_PSN) == EINVAL, "INIT with SQ_PSN (not allowed)");
	bad = init;
	bad.port_num = 2;
	CHECK(mod(qp, bad, init_m) == EINVAL, "INIT on port 2");
	bad = init;
	bad.pkey_index = 1;
	CHECK(mod(qp, bad, init_m) == EINVAL, "INIT with pkey_index 1");
	bad = init;
	bad.cur_qp_state = IBV_QPS_INIT;
	CHECK(mod(qp, bad, init_m | IBV_QP_CUR_STATE) == EINVAL, "cur_qp_state mismatch");
	CHECK(qp_state(qp) == IBV_QPS_RESET && qp->state == IBV_QPS_RESET, "still RESET");
	CHECK(mod(qp, init, init_m) == 0, "RESET -> INIT");
	/* INIT */
	CHECK(mod(qp, rts, rts_m) == EINVAL, "INIT -> RTS");
	CHECK(mod(qp, rtr, rtr_m & ~IBV_QP_DEST_QPN) == EINVAL, "RTR without DEST_QPN");
	CHECK(mod(qp, rtr, rtr_m & ~IBV_QP_AV) == EINVAL, "RTR without AV");
	CHECK(mod(qp, rtr, rtr_m & ~IBV_QP_MIN_RNR_TIMER) == EINVAL,
	      "RC RTR without MIN_RNR_TIMER");
	CHECK(mod(qp, rtr, rtr_m & ~IBV_QP_MAX_DEST_RD_ATOMIC) == EINVAL,
	      "RC RTR without MAX_DEST_RD_ATOMIC");
	CHECK(mod(qp, rtr, rtr_m | IBV_QP_RETRY_CNT) == EINVAL, "RTR with RETRY_CNT");
	bad = rtr;
	bad.path_mtu = (enum ibv_mtu)6;
	CHECK(mod(qp, bad, rtr_m) == EINVAL, "RTR with path_mtu 6");
	bad = rtr;
	bad.ah_attr.dlid = 999;
	CHECK(mod(qp, bad, rtr_m) == EINVAL, "RTR to LID 999 (no such node)");
	bad = rtr;
	bad.dest_qp_num = 0xabcdef;
	CHECK(mod(qp, bad, rtr_m) == EINVAL, "RTR to a QPN that does not exist");
	bad = rtr;
	bad.min_rnr_timer = 32;
	CHECK(mod(qp, bad, rtr_m) == EINVAL, "min_rnr_timer 32");
	CHECK(qp_state(qp) == IBV_QPS_INIT, "still INIT");
	CHECK(mod(qp, init, init_m) == 0, "INIT -> INIT");
	CHECK(mod(qp, rtr, rtr_m) == 0, "INIT -> RTR");
	/* RTR */
	CHECK(mod(qp, init, init_m) == EINVAL, "RTR -> INIT");
	CHECK(mod(qp, rts, rts_m & ~IBV_QP_RETRY_CNT) == EINVAL, "RTS without RETRY_CNT");
	CHECK(mod(qp, rts, rts_m & ~IBV_QP_SQ_PSN) == EINVAL, "RTS without SQ_PSN");
	bad = rts;
	bad.retry_cnt = 8;
	CHECK(mod(qp, bad, rts_m) == EINVAL, "retry_cnt 8");
	bad = rts;
	bad.timeout = 32;
	CHECK(mod(qp, bad, rts_m) == EINVAL, "timeout 32");
	CHECK(qp_state(qp) == IBV_QPS_RTR, "still RTR");
	CHECK(mod(qp, rts, rts_m) == 0, "RTR -> RTS");
	/* What was set reads back. */
	memset(&a, 0, sizeof(a));
	CHECK(ibv_query_qp(qp, &a, 0x1fffff, &ia) == 0, "query_qp");
	CHECK(a.qp_state == IBV_QPS_RTS && a.qp_access_flags == init.qp_access_flags &&
		  a.port_num == 1 && a.pkey_index == 0,
	      "query: state %d access %#x port %u", a.qp_state, a.qp_access_flags, a.port_num);
	CHECK(a.path_mtu == IBV_MTU_1024 && a.dest_qp_num == B.qp->qp_num && a.rq_psn == 0x123 &&
		  a.max_dest_rd_atomic == 4 && a.min_rnr_timer == 12 && a.ah_attr.dlid == B.lid,
	      "query: RTR attributes (mtu %d qpn %u rq_psn %#x rd %u rnr %u dlid %u)", a.path_mtu,
	      a.dest_qp_num, a.rq_psn, a.max_dest_rd_atomic, a.min_rnr_timer, a.ah_attr.dlid);
	CHECK(a.sq_psn == 0x456 && a.timeout == 17 && a.retry_cnt == 5 && a.rnr_retry == 6 &&
		  a.max_rd_atomic == 2,
	      "query: RTS attributes (sq_psn %#x timeout %u retry %u rnr %u rd %u)", a.sq_psn,
	      a.timeout, a.retry_cnt, a.rnr_retry, a.max_rd_atomic);
	CHECK(a.cap.max_send_wr >= 10 && a.cap.max_send_sge >= 3 && a.cap.max_inline_data >= 64 &&
		  ia.cap.max_send_wr == a.cap.max_send_wr && ia.qp_type == IBV_QPT_RC &&
		  ia.send_cq == A.cq,
	      "query: caps and init attributes");
	/* RTS */
	CHECK(mod(qp, (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .min_rnr_timer = 3},
		  IBV_QP_STATE | IBV_QP_MIN_RNR_TIMER) == 0,
	      "RTS -> RTS with MIN_RNR_TIMER");
	CHECK(ibv_query_qp(qp, &a, IBV_QP_MIN_RNR_TIMER, &ia) == 0 && a.min_rnr_timer == 3,
	      "new min_rnr_timer reads back");
	CHECK(mod(qp, rtr, rtr_m) == EINVAL, "RTS -> RTR");
	CHECK(mod(qp, init, init_m) == EINVAL, "RTS -> INIT");
	CHECK(mod(qp, (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .timeout = 3},
		  IBV_QP_STATE | IBV_QP_PATH_MTU) == EINVAL,
	      "RTS -> RTS with PATH_MTU");
	CHECK(mod(qp, (struct ibv_qp_attr){.qp_state = IBV_QPS_ERR}, IBV_QP_STATE) == 0, "-> ERR");
	CHECK(mod(qp, rts, rts_m) == EINVAL, "ERR -> RTS");
	CHECK(qp_state(qp) == IBV_QPS_ERR, "ERR");
	CHECK(mod(qp, (struct ibv_qp_attr){.qp_state = IBV_QPS_RESET}, IBV_QP_STATE) == 0,
	      "ERR -> RESET");
	CHECK(qp_state(qp) == IBV_QPS_RESET, "RESET");
	CHECK(mod(qp, init, init_m) == 0 && qp_state(qp) == IBV_QPS_INIT, "RESET -> INIT again");
	CHECK(cq_empty(A.cq), "nothing was posted: nothing completes");
	/* UC: no RNR timer, no read atomics, no retry attributes. */
	qp = ep_qp(&A, IBV_QPT_UC, &o);
	ep_qp(&B, IBV_QPT_UC, &o);
	rtr.dest_qp_num = B.qp->qp_num;
	CHECK(mod(qp, init, init_m) == 0, "UC INIT");
	CHECK(mod(qp, rtr, rtr_m) == EINVAL, "UC RTR with MIN_RNR_TIMER and MAX_DEST_RD_ATOMIC");
	CHECK(mod(qp, rtr, rtr_m & ~(IBV_QP_MIN_RNR_TIMER | IBV_QP_MAX_DEST_RD_ATOMIC)) == 0,
	      "UC RTR");
	CHECK(mod(qp, rts, rts_m) == EINVAL, "UC RTS with TIMEOUT/RETRY_CNT/RNR_RETRY");
	CHECK(mod(qp, rts, IBV_QP_STATE | IBV_QP_SQ_PSN) == 0, "UC RTS");
	CHECK(ibv_query_qp(qp, &a, IBV_QP_STATE, &ia) == 0 && a.qp_state == IBV_QPS_RTS &&
		  a.sq_psn == 0x456 && ia.qp_type == IBV_QPT_UC,
	      "UC query");
}

/*
 * QPs created and destroyed while another thread polls the CQ their
 * receives completed into. Each round's QP x receives CHURN_K sends, is
 * destroyed with its completions still queued, and a QP on another CQ
 * takes its slot and goes too: the poller meets completions naming a
 * slot whose QP is gone or belongs to another CQ, and must not touch
 * that QP (ASan sees it if it does). Every receive completes once, with
 * its own bytes.
 */
#define CHURN_ROUNDS 1000
#define CHURN_K	     4
#define CHURN_N	     (CHURN_ROUNDS * CHURN_K)
#define CHURN_AHEAD  8

struct churn_poller {
	struct ibv_cq *cq;
	const uint64_t *slots; /* slot i receives the value i + 1 */
	atomic_int seen;
	atomic_bool stop;
	int bad; /* completions with a wrong status, id, length or payload */
	uint8_t got[CHURN_N];
};

static void *churn_poll(void *arg)
{
	struct churn_poller *p = arg;
	struct ibv_wc wc[8];

	while (!atomic_load(&p->stop)) {
		int n = ibv_poll_cq(p->cq, 8, wc);

		for (int i = 0; i < n; i++) {
			uint64_t id = wc[i].wr_id;

			if (wc[i].status != IBV_WC_SUCCESS || wc[i].opcode != IBV_WC_RECV ||
			    id >= CHURN_N || wc[i].byte_len != 8 || p->slots[id] != id + 1 ||
			    p->got[id]++)
				p->bad++;
			atomic_fetch_add(&p->seen, 1);
		}
		if (n < 0)
			p->bad++;
	}
	return NULL;
}

/*
 * One round: x on A (receives into the poller's CQ), y on B sends to it,
 * x goes, z comes and goes. True if z had x's QP number (its slot).
 */
static bool churn_round(int r, struct buf *slots, struct ibv_cq *other, const struct qpopts *o)
{
	struct ibv_qp_init_attr ia = {.send_cq = other,
				      .recv_cq = A.cq,
				      .qp_type = IBV_QPT_RC,
				      .cap = {.max_send_wr = 4,
					      .max_recv_wr = CHURN_K,
					      .max_send_sge = 1,
					      .max_recv_sge = 1,
					      .max_inline_data = 8}};
	struct ibv_qp *x = ibv_create_qp(A.pd, &ia), *y = ep_qp(&B, IBV_QPT_RC, o), *z;
	uint32_t x_num;
	bool same;

	REQUIRE(x, "create_qp: %s", strerror(errno));
	x_num = x->qp_num;
	qp_connect(x, y->qp_num, B.lid, o);
	qp_connect(y, x->qp_num, A.lid, o);
	for (int k = 0; k < CHURN_K; k++) {
		uint64_t id = (uint64_t)(r * CHURN_K + k), v = id + 1;

		CHECK(post_recv1(x, id, slots->p + id * 8, 8, slots->mr->lkey) == 0, "post_recv");
		CHECK(post1(y, id, IBV_WR_SEND, IBV_SEND_SIGNALED | IBV_SEND_INLINE, &v, 8, 0, 0,
			    0) == 0,
		      "post_send");
		EXPECT_WC(B.cq, IBV_WC_SUCCESS, id, IBV_WC_SEND, "churn send");
	}
	CHECK(ibv_destroy_qp(x) == 0, "destroy x with its completions queued");
	ia.recv_cq = other;
	z = ibv_create_qp(A.pd, &ia);
	REQUIRE(z, "create_qp: %s", strerror(errno));
	same = z->qp_num == x_num;
	CHECK(ibv_destroy_qp(z) == 0, "destroy z");
	return same;
}

static void qp_churn_under_polls(void)
{
	struct qpopts o = {.rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .min_rnr_timer = 1};
	struct ibv_cq *other = ibv_create_cq(A.ctx, 16, NULL, NULL, 0);
	struct churn_poller *p = calloc(1, sizeof(*p));
	uint64_t end = now_s() + DP_DEADLINE_S;
	struct buf slots;
	int reused = 0;
	pthread_t t;

	REQUIRE(other && p, "create_cq / calloc");
	buf_new(&slots, A.pd, CHURN_N * 8, MR_ALL);
	p->cq = A.cq;
	p->slots = (const uint64_t *)slots.p;
	REQUIRE(pthread_create(&t, NULL, churn_poll, p) == 0, "pthread_create");
	for (int r = 0; r < CHURN_ROUNDS; r++) {
		/* A few rounds ahead of the poller at most: A's CQ must not overflow. */
		while (atomic_load(&p->seen) < (r - CHURN_AHEAD) * CHURN_K && now_s() <= end)
			sched_yield();
		reused += churn_round(r, &slots, other, &o);
	}
	while (atomic_load(&p->seen) < CHURN_N && now_s() <= end)
		sched_yield();
	atomic_store(&p->stop, true);
	pthread_join(t, NULL);
	CHECK(atomic_load(&p->seen) == CHURN_N && !p->bad,
	      "QP churn under polls: %d of %d receives completed, %d wrong", atomic_load(&p->seen),
	      CHURN_N, p->bad);
	CHECK(cq_empty(A.cq) && cq_empty(other), "no completion more");
	/* The allocator hands out the slot freed last: else the test does not test. */
	CHECK(reused > CHURN_ROUNDS / 2, "z had x's QP number in %d rounds of %d", reused,
	      CHURN_ROUNDS);
	CHECK(ibv_destroy_cq(other) == 0, "destroy_cq");
	buf_free(&slots);
	free(p);
}

/*
 * IVRDMA_EVENT_POLL_US (ibv_get_cq_event of the preload): with the window
 * set, a waiter whose event comes within it never sleeps; without it, the
 * waiter sleeps in read() until the event. Told apart by the waiting
 * thread's voluntary context switches: a thread switches voluntarily only
 * when it blocks. Each case in a child, as the preload reads the
 * variable once.
 */
struct event_waiter {
	struct ibv_comp_channel *ch;
	atomic_int tid;
	long switches; /* voluntary, during ibv_get_cq_event */
	int rc;
};

static long voluntary_switches(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : -1;
}

static void *wait_event(void *arg)
{
	struct event_waiter *w = arg;
	struct ibv_cq *cq;
	void *cq_ctx;
	long before;

	atomic_store(&w->tid, (int)gettid());
	before = voluntary_switches();
	w->rc = ibv_get_cq_event(w->ch, &cq, &cq_ctx);
	w->switches = voluntary_switches() - before;
	if (!w->rc)
		ibv_ack_cq_events(cq, 1);
	return NULL;
}

/* Is thread 'tid' of this process asleep (state S in its stat)? */
static bool thread_asleep(int tid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

/* One receive completes on a CQ of a channel while a thread waits on it. */
static int event_poll_child(bool poll_window)
{
	struct qpopts o = {.rnr_retry = 7, .retry_cnt = 7, .timeout = 14, .min_rnr_timer = 1};
	struct event_waiter w = {0};
	struct ibv_qp_init_attr ia = {.send_cq = NULL,
				      .qp_type = IBV_QPT_RC,
				      .cap = {.max_send_wr = 4,
					      .max_recv_wr = 4,
					      .max_send_sge = 1,
					      .max_recv_sge = 1,
					      .max_inline_data = 8}};
	struct ibv_cq *cq;
	struct ibv_qp *a;
	uint64_t v = 42, got = 0, end = now_s() + DP_DEADLINE_S;
	struct ibv_mr *mr;
	pthread_t t;

	if (poll_window)
		setenv("IVRDMA_EVENT_POLL_US", "1000000", 1);
	else
		unsetenv("IVRDMA_EVENT_POLL_US");
	ep_open(&A);
	ep_open(&B);
	w.ch = ibv_create_comp_channel(A.ctx);
	cq = w.ch ? ibv_create_cq(A.ctx, 16, NULL, w.ch, 0) : NULL;
	mr = ibv_reg_mr(A.pd, &got, sizeof(got), IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(cq && mr, "channel, CQ, MR: %s", strerror(errno));
	ia.send_cq = ia.recv_cq = cq;
	a = ibv_create_qp(A.pd, &ia);
	REQUIRE(a, "create_qp: %s", strerror(errno));
	ep_qp(&B, IBV_QPT_RC, &o);
	qp_connect(a, B.qp->qp_num, B.lid, &o);
	qp_connect(B.qp, a->qp_num, A.lid, &o);
	CHECK(post_recv1(a, 7, &got, 8, mr->lkey) == 0, "post_recv");
	CHECK(ibv_req_notify_cq(cq, 0) == 0, "req_notify_cq");
	REQUIRE(pthread_create(&t, NULL, wait_event, &w) == 0, "pthread_create");
	while (!atomic_load(&w.tid) && now_s() <= end)
		sched_yield();
	if (poll_window)
		usleep(20000); /* inside the 1 s window: it watches, awake */
	else
		while (!thread_asleep(atomic_load(&w.tid)) && now_s() <= end)
			usleep(1000);
	CHECK(post1(B.qp, 8, IBV_WR_SEND, IBV_SEND_SIGNALED | IBV_SEND_INLINE, &v, 8, 0, 0, 0) == 0,
	      "post_send");
	EXPECT_WC(B.cq, IBV_WC_SUCCESS, 8, IBV_WC_SEND, "the send");
	pthread_join(t, NULL);
	CHECK(w.rc == 0, "ibv_get_cq_event: %d", w.rc);
	EXPECT_WC(cq, IBV_WC_SUCCESS, 7, IBV_WC_RECV, "the receive");
	CHECK(got == 42, "the receive's bytes");
	if (poll_window)
		CHECK(w.switches == 0, "IVRDMA_EVENT_POLL_US: the waiter slept %ld times",
		      w.switches);
	else
		CHECK(w.switches > 0, "no IVRDMA_EVENT_POLL_US: the waiter never slept");
	CHECK(ibv_destroy_qp(a) == 0 && ibv_destroy_cq(cq) == 0 && ibv_dereg_mr(mr) == 0 &&
		  ibv_destroy_comp_channel(w.ch) == 0,
	      "destroy");
	ep_close(&A);
	ep_close(&B);
	return check_summary();
}

static void event_poll(void)
{
	for (int with = 0; with < 2; with++) {
		pid_t pid = fork();
		int st;

		REQUIRE(pid >= 0, "fork: %s", strerror(errno));
		if (pid == 0)
			_exit(event_poll_child(with));
		CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "event waiter %s IVRDMA_EVENT_POLL_US", with ? "with" : "without");
	}
}

int main(int argc, char **argv)
{
	const char *g = argc > 1 ? argv[1] : "verbs";

	if (!strcmp(g, "verbs")) {
		ep_open(&A);
		ep_open(&B);
		group_verbs();
		ep_close(&A);
		ep_close(&B);
	} else if (!strcmp(g, "errors")) {
		ep_open(&A);
		ep_open(&B);
		group_errors();
		ep_close(&A);
		ep_close(&B);
	} else if (!strcmp(g, "mr")) {
		ep_open(&A);
		ep_open(&B);
		group_mr();
		ep_close(&A);
		ep_close(&B);
	} else if (!strcmp(g, "sleep")) {
		sleep_test();
		killed_peer();
		event_poll();
	} else if (!strcmp(g, "modify")) {
		ep_open(&A);
		ep_open(&B);
		group_modify();
		qp_events();
		destroy_with_events();
		srq_limit_while_waiting();
		qp_churn_under_polls();
		ep_close(&A);
		ep_close(&B);
	} else {
		REQUIRE(0, "unknown group %s", g);
	}
	return check_summary();
}
