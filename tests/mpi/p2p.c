/* SPDX-License-Identifier: MIT */
/*
 * Point-to-point between rank pairs (r, r^1), 0 B to 16 MiB, every byte
 * checked: blocking, non-blocking, wildcards, many outstanding requests,
 * unexpected messages, synchronous sends, probes and non-contiguous
 * datatypes. Run on an even number of ranks.
 */
#include "mt.h"
#include "p2p_types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Both sides of every protocol switch: eager, inline, MTU, eager limit, rendezvous, pipeline. */
static const size_t sizes[] = {0,     1,     2,	    3,	    7,	     8,	      64,      127,   128,
			       1023,  1024,  1025,  4095,   4096,    4097,    12287,   12288, 12289,
			       65535, 65536, 65537, 262145, 1048577, 4194303, 16777216};
#define NSIZES	  (sizeof(sizes) / sizeof(sizes[0]))
#define ITERS	  2
#define MANY	  64
#define TAG_SHIFT 8

static int rank, peer;

/* Sends (rank's pattern) and receives (peer's pattern), blocking, lower rank first. */
static uint64_t blocking_one(size_t size, int iter, uint64_t h)
{
	void *out = mt_alloc(size), *in = mt_alloc(size);
	MPI_Status st;
	int count;

	mt_fill(out, size, rank, iter);
	for (int turn = 0; turn < 2; turn++) {
		if ((rank < peer) == (turn == 0))
			MT_MPI(MPI_Send(out, (int)size, MPI_BYTE, peer, iter, MPI_COMM_WORLD));
		else
			MT_MPI(MPI_Recv(in, (int)size, MPI_BYTE, peer, iter, MPI_COMM_WORLD, &st));
	}
	MT_MPI(MPI_Get_count(&st, MPI_BYTE, &count));
	MT_CHECK((size_t)count == size, "blocking: received %d bytes, not %zu", count, size);
	mt_expect(in, size, peer, iter, "blocking");
	h = mt_hash(h, in, size);
	free(out);
	free(in);
	return h;
}

/* Isend and Irecv posted together, both ways at once. */
static uint64_t nonblocking_one(size_t size, int iter, uint64_t h)
{
	void *out = mt_alloc(size), *in = mt_alloc(size);
	MPI_Request rq[2];

	mt_fill(out, size, rank, iter);
	MT_MPI(MPI_Irecv(in, (int)size, MPI_BYTE, peer, iter, MPI_COMM_WORLD, &rq[0]));
	MT_MPI(MPI_Isend(out, (int)size, MPI_BYTE, peer, iter, MPI_COMM_WORLD, &rq[1]));
	mt_waitall(2, rq);
	mt_expect(in, size, peer, iter, "nonblocking");
	h = mt_hash(h, in, size);
	free(out);
	free(in);
	return h;
}

static void test_sizes(const char *name, uint64_t (*one)(size_t, int, uint64_t))
{
	uint64_t h = MT_FNV_INIT;
	char detail[64];

	for (size_t s = 0; s < NSIZES; s++)
		for (int iter = 0; iter < ITERS; iter++)
			h = one(sizes[s], iter, h);
	snprintf(detail, sizeof(detail), "%zu sizes x %d", NSIZES, ITERS);
	mt_report(MPI_COMM_WORLD, name, detail, h);
}

/*
 * The lower rank sends one message per size with tag = size index; the
 * higher receives each with MPI_ANY_SOURCE and MPI_ANY_TAG, and learns
 * sender, tag and length from the status alone (pairwise order is kept).
 */
static void test_wildcards(void)
{
	uint64_t h = MT_FNV_INIT;
	void *buf = mt_alloc(sizes[NSIZES - 1]);

	for (size_t s = 0; s < NSIZES; s++) {
		if (rank < peer) {
			mt_fill(buf, sizes[s], rank, (int)s);
			MT_MPI(
			    MPI_Send(buf, (int)sizes[s], MPI_BYTE, peer, (int)s, MPI_COMM_WORLD));
			continue;
		}
		MPI_Status st;
		int count;

		MT_MPI(MPI_Recv(buf, (int)sizes[NSIZES - 1], MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG,
				MPI_COMM_WORLD, &st));
		MT_MPI(MPI_Get_count(&st, MPI_BYTE, &count));
		MT_CHECK(st.MPI_SOURCE == peer && st.MPI_TAG == (int)s && (size_t)count == sizes[s],
			 "wildcards: source %d tag %d count %d, expected %d %zu %zu", st.MPI_SOURCE,
			 st.MPI_TAG, count, peer, s, sizes[s]);
		mt_expect(buf, sizes[s], peer, (int)s, "wildcards");
		h = mt_hash_u64(mt_hash(h, buf, sizes[s]), (uint64_t)st.MPI_TAG);
	}
	free(buf);
	mt_report(MPI_COMM_WORLD, "p2p.wildcards", "ANY_SOURCE+ANY_TAG", h);
}

/*
 * MANY receives posted with distinct tags, MANY sends issued in the
 * opposite tag order, all outstanding at once: matching must go by tag.
 */
static uint64_t many_one(size_t size, uint64_t h)
{
	char *out = mt_alloc(size * MANY), *in = mt_alloc(size * MANY);
	MPI_Request rq[2 * MANY];

	for (int i = 0; i < MANY; i++) {
		mt_fill(out + (size_t)i * size, size, rank, i);
		MT_MPI(MPI_Irecv(in + (size_t)i * size, (int)size, MPI_BYTE, peer, i,
				 MPI_COMM_WORLD, &rq[i]));
	}
	for (int i = MANY - 1; i >= 0; i--)
		MT_MPI(MPI_Isend(out + (size_t)i * size, (int)size, MPI_BYTE, peer, i,
				 MPI_COMM_WORLD, &rq[MANY + i]));
	mt_waitall(2 * MANY, rq);
	for (int i = 0; i < MANY; i++)
		mt_expect(in + (size_t)i * size, size, peer, i, "many outstanding");
	h = mt_hash(h, in, size * MANY);
	free(out);
	free(in);
	return h;
}

static void test_many(void)
{
	static const size_t many_sizes[] = {8, 4096, 70000, 300000};
	uint64_t h = MT_FNV_INIT;

	for (size_t s = 0; s < sizeof(many_sizes) / sizeof(many_sizes[0]); s++)
		h = many_one(many_sizes[s], h);
	mt_report(MPI_COMM_WORLD, "p2p.many", "64 outstanding each way, 4 sizes", h);
}

/*
 * The lower rank's sends are all issued before the higher rank posts a
 * single receive (a barrier between), so they arrive unexpected; the
 * receives then come in reverse order of the sends.
 */
static void test_unexpected(void)
{
	uint64_t h = MT_FNV_INIT;
	void *bufs[NSIZES];
	MPI_Request rq[NSIZES];

	for (size_t s = 0; s < NSIZES; s++) {
		bufs[s] = mt_alloc(sizes[s]);
		rq[s] = MPI_REQUEST_NULL;
		if (rank < peer) {
			mt_fill(bufs[s], sizes[s], rank, 7);
			MT_MPI(MPI_Isend(bufs[s], (int)sizes[s], MPI_BYTE, peer, (int)s,
					 MPI_COMM_WORLD, &rq[s]));
		}
	}
	MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
	for (size_t s = NSIZES; s-- > 0;)
		if (rank > peer)
			MT_MPI(MPI_Recv(bufs[s], (int)sizes[s], MPI_BYTE, peer, (int)s,
					MPI_COMM_WORLD, MPI_STATUS_IGNORE));
	mt_waitall((int)NSIZES, rq);
	for (size_t s = 0; s < NSIZES; s++) {
		if (rank > peer) {
			mt_expect(bufs[s], sizes[s], peer, 7, "unexpected");
			h = mt_hash(h, bufs[s], sizes[s]);
		}
		free(bufs[s]);
	}
	mt_report(MPI_COMM_WORLD, "p2p.unexpected", "sent before receives posted", h);
}

/* MPI_Ssend at every size: its rendezvous even for the sizes that are otherwise eager. */
static void test_ssend(void)
{
	uint64_t h = MT_FNV_INIT;
	void *buf = mt_alloc(sizes[NSIZES - 1]);

	for (size_t s = 0; s < NSIZES; s++) {
		if (rank < peer) {
			mt_fill(buf, sizes[s], rank, 3);
			MT_MPI(MPI_Ssend(buf, (int)sizes[s], MPI_BYTE, peer, 5, MPI_COMM_WORLD));
		} else {
			MT_MPI(MPI_Recv(buf, (int)sizes[s], MPI_BYTE, peer, 5, MPI_COMM_WORLD,
					MPI_STATUS_IGNORE));
			mt_expect(buf, sizes[s], peer, 3, "ssend");
			h = mt_hash(h, buf, sizes[s]);
		}
	}
	free(buf);
	mt_report(MPI_COMM_WORLD, "p2p.ssend", "MPI_Ssend every size", h);
}

/* The receiver sizes its buffer from MPI_Probe (sizes unknown to it) or MPI_Iprobe. */
static void test_probe(void)
{
	uint64_t h = MT_FNV_INIT;

	for (size_t s = 0; s < NSIZES; s++) {
		size_t size = sizes[s];
		void *buf;
		MPI_Status st;
		int count, flag = 0;

		if (rank < peer) {
			buf = mt_alloc(size);
			mt_fill(buf, size, rank, 11);
			MT_MPI(MPI_Send(buf, (int)size, MPI_BYTE, peer, 9, MPI_COMM_WORLD));
			free(buf);
			continue;
		}
		if (s % 2)
			MT_MPI(MPI_Probe(peer, 9, MPI_COMM_WORLD, &st));
		while (!flag && s % 2 == 0)
			MT_MPI(MPI_Iprobe(MPI_ANY_SOURCE, 9, MPI_COMM_WORLD, &flag, &st));
		MT_MPI(MPI_Get_count(&st, MPI_BYTE, &count));
		MT_CHECK((size_t)count == size, "probe: %d bytes announced, not %zu", count, size);
		buf = mt_alloc((size_t)count);
		MT_MPI(MPI_Recv(buf, count, MPI_BYTE, st.MPI_SOURCE, 9, MPI_COMM_WORLD,
				MPI_STATUS_IGNORE));
		mt_expect(buf, size, peer, 11, "probe");
		h = mt_hash(h, buf, size);
		free(buf);
	}
	mt_report(MPI_COMM_WORLD, "p2p.probe", "Probe and Iprobe then Recv", h);
}

int main(int argc, char **argv)
{
	int size;

	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	MT_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
	MT_CHECK(size % 2 == 0, "p2p needs an even number of ranks, not %d", size);
	peer = rank ^ 1;
	test_sizes("p2p.blocking", blocking_one);
	test_sizes("p2p.nonblocking", nonblocking_one);
	test_wildcards();
	test_many();
	test_unexpected();
	test_ssend();
	test_probe();
	test_datatypes(rank, peer);
	MT_MPI(MPI_Finalize());
	return 0;
}
