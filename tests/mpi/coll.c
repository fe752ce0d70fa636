/* SPDX-License-Identifier: MIT */
/*
 * Collectives, results checked exactly: every value is an integer a rank
 * can compute for every other rank (int64 sums cannot round), at counts
 * from 1 element to past the rendezvous threshold.
 */
#include "mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int rank, nranks;
static const int counts[] = {1, 7, 1000, 70000};
#define NCOUNTS (int)(sizeof(counts) / sizeof(counts[0]))

/* Element i of rank r's contribution in round k: distinct per (r, i, k), small enough to sum. */
static int64_t val(int r, int i, int k)
{
	return (int64_t)mt_byte(r, (size_t)i, k, 0) * 1000003 + (int64_t)r * 7919 + i + k;
}

static void test_bcast(void)
{
	uint64_t h = MT_FNV_INIT;

	for (int c = 0; c < NCOUNTS; c++)
		for (int root = 0; root < nranks; root++) {
			int64_t *b = mt_alloc(sizeof(*b) * (size_t)counts[c]);

			for (int i = 0; i < counts[c]; i++)
				b[i] = rank == root ? val(root, i, c) : -1;
			MT_MPI(MPI_Bcast(b, counts[c], MPI_INT64_T, root, MPI_COMM_WORLD));
			for (int i = 0; i < counts[c]; i++)
				MT_CHECK(b[i] == val(root, i, c), "bcast root %d: element %d", root,
					 i);
			h = mt_hash(h, b, sizeof(*b) * (size_t)counts[c]);
			free(b);
		}
	mt_report(MPI_COMM_WORLD, "coll.bcast", "every root, 4 counts", h);
}

static int64_t sum_of(int i, int k)
{
	int64_t s = 0;

	for (int r = 0; r < nranks; r++)
		s += val(r, i, k);
	return s;
}

static int64_t max_of(int i, int k)
{
	int64_t m = val(0, i, k);

	for (int r = 1; r < nranks; r++)
		m = val(r, i, k) > m ? val(r, i, k) : m;
	return m;
}

/* Reduce (SUM to each root, MAX to the last) and Allreduce (SUM, MAX). */
static void test_reduce(void)
{
	uint64_t h = MT_FNV_INIT;

	for (int c = 0; c < NCOUNTS; c++) {
		int n = counts[c];
		int64_t *in = mt_alloc(sizeof(*in) * (size_t)n),
			*out = mt_alloc(sizeof(*in) * (size_t)n);

		for (int i = 0; i < n; i++)
			in[i] = val(rank, i, c);
		for (int root = 0; root < nranks; root++) {
			MT_MPI(MPI_Reduce(in, out, n, MPI_INT64_T, MPI_SUM, root, MPI_COMM_WORLD));
			for (int i = 0; rank == root && i < n; i++)
				MT_CHECK(out[i] == sum_of(i, c), "reduce sum root %d: element %d",
					 root, i);
		}
		MT_MPI(MPI_Reduce(in, out, n, MPI_INT64_T, MPI_MAX, nranks - 1, MPI_COMM_WORLD));
		for (int i = 0; rank == nranks - 1 && i < n; i++)
			MT_CHECK(out[i] == max_of(i, c), "reduce max: element %d", i);
		MT_MPI(MPI_Allreduce(in, out, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
		for (int i = 0; i < n; i++)
			MT_CHECK(out[i] == sum_of(i, c), "allreduce sum: element %d", i);
		h = mt_hash(h, out, sizeof(*out) * (size_t)n);
		MT_MPI(MPI_Allreduce(in, out, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
		for (int i = 0; i < n; i++)
			MT_CHECK(out[i] == max_of(i, c), "allreduce max: element %d", i);
		h = mt_hash(h, out, sizeof(*out) * (size_t)n);
		free(in);
		free(out);
	}
	mt_report(MPI_COMM_WORLD, "coll.reduce", "Reduce and Allreduce, SUM and MAX", h);
}

/* Alltoall and Allgather: block j of rank r's input is val(r, j*n + i). */
static void test_alltoall_allgather(void)
{
	uint64_t h = MT_FNV_INIT;

	for (int c = 0; c < NCOUNTS - 1; c++) {
		int n = counts[c];
		size_t tot = (size_t)n * (size_t)nranks;
		int64_t *in = mt_alloc(sizeof(*in) * tot), *out = mt_alloc(sizeof(*in) * tot);

		for (size_t i = 0; i < tot; i++)
			in[i] = val(rank, (int)i, c);
		MT_MPI(MPI_Alltoall(in, n, MPI_INT64_T, out, n, MPI_INT64_T, MPI_COMM_WORLD));
		for (int s = 0; s < nranks; s++)
			for (int i = 0; i < n; i++)
				MT_CHECK(out[s * n + i] == val(s, rank * n + i, c),
					 "alltoall: element %d from %d", i, s);
		h = mt_hash(h, out, sizeof(*out) * tot);
		MT_MPI(MPI_Allgather(in, n, MPI_INT64_T, out, n, MPI_INT64_T, MPI_COMM_WORLD));
		for (int s = 0; s < nranks; s++)
			for (int i = 0; i < n; i++)
				MT_CHECK(out[s * n + i] == val(s, i, c),
					 "allgather: element %d of %d", i, s);
		h = mt_hash(h, out, sizeof(*out) * tot);
		free(in);
		free(out);
	}
	mt_report(MPI_COMM_WORLD, "coll.alltoall", "Alltoall and Allgather, 3 counts", h);
}

/* Rank s sends (s + d) % 5 * scale elements to rank d: some empty, all different. */
static int vcount(int s, int d, int scale)
{
	return (s + d) % 5 * scale;
}

static void test_alltoallv(void)
{
	static const int scales[] = {1, 3000};
	uint64_t h = MT_FNV_INIT;

	for (int c = 0; c < 2; c++) {
		int sc[64], sd[64], rc[64], rd[64], st = 0, rt = 0;

		for (int p = 0; p < nranks; p++) {
			sc[p] = vcount(rank, p, scales[c]), sd[p] = st, st += sc[p];
			rc[p] = vcount(p, rank, scales[c]), rd[p] = rt, rt += rc[p];
		}
		int64_t *in = mt_alloc(sizeof(*in) * (size_t)st),
			*out = mt_alloc(sizeof(*in) * (size_t)rt);

		for (int p = 0; p < nranks; p++)
			for (int i = 0; i < sc[p]; i++)
				in[sd[p] + i] = val(rank, p * 100000 + i, c);
		MT_MPI(MPI_Alltoallv(in, sc, sd, MPI_INT64_T, out, rc, rd, MPI_INT64_T,
				     MPI_COMM_WORLD));
		for (int p = 0; p < nranks; p++)
			for (int i = 0; i < rc[p]; i++)
				MT_CHECK(out[rd[p] + i] == val(p, rank * 100000 + i, c),
					 "alltoallv: element %d from %d", i, p);
		h = mt_hash(h, out, sizeof(*out) * (size_t)rt);
		free(in);
		free(out);
	}
	mt_report(MPI_COMM_WORLD, "coll.alltoallv", "uneven and empty blocks", h);
}

/* Rank r keeps r + 1 blocks of the sum (times n): uneven receive counts. */
static void test_reduce_scatter(void)
{
	uint64_t h = MT_FNV_INIT;

	for (int c = 0; c < NCOUNTS - 1; c++) {
		int n = counts[c], rcounts[64], tot = 0, mine = 0;

		for (int p = 0; p < nranks; p++) {
			rcounts[p] = (p + 1) * n;
			mine = p < rank ? mine + rcounts[p] : mine;
			tot += rcounts[p];
		}
		int64_t *in = mt_alloc(sizeof(*in) * (size_t)tot),
			*out = mt_alloc(sizeof(*in) * (size_t)rcounts[rank]);

		for (int i = 0; i < tot; i++)
			in[i] = val(rank, i, c);
		MT_MPI(MPI_Reduce_scatter(in, out, rcounts, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
		for (int i = 0; i < rcounts[rank]; i++)
			MT_CHECK(out[i] == sum_of(mine + i, c), "reduce_scatter: element %d", i);
		h = mt_hash(h, out, sizeof(*out) * (size_t)rcounts[rank]);
		free(in);
		free(out);
	}
	mt_report(MPI_COMM_WORLD, "coll.reduce_scatter", "uneven counts, SUM", h);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* node[r]: the lowest world rank on rank r's machine (the ranks sharing its memory). */
static void node_of_ranks(int *node)
{
	MPI_Comm local;
	int leader = rank;

	MT_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
	MT_MPI(MPI_Allreduce(MPI_IN_PLACE, &leader, 1, MPI_INT, MPI_MIN, local));
	MT_MPI(MPI_Allgather(&leader, 1, MPI_INT, node, 1, MPI_INT, MPI_COMM_WORLD));
	MT_MPI(MPI_Comm_free(&local));
}

/*
 * A barrier holds everyone until the last rank arrives: the last rank
 * enters 0.2 s late, and every rank must leave after it entered. Times
 * compare on one machine only, one monotonic clock (the entry time is
 * broadcast afterwards): ranks in other VMs or hosts check nothing.
 */
static void test_barrier(void)
{
	int node[64];

	node_of_ranks(node);
	for (int round = 0; round < 3; round++) {
		int late = (round + 1) % nranks;
		double entered = 0, left;

		if (rank == late) {
			usleep(200000);
			entered = now();
		}
		MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
		left = now();
		MT_MPI(MPI_Bcast(&entered, 1, MPI_DOUBLE, late, MPI_COMM_WORLD));
		MT_CHECK(node[late] != node[rank] || left >= entered,
			 "barrier round %d: left %.6f before rank %d entered %.6f", round, left,
			 late, entered);
	}
	for (int i = 0; i < 200; i++)
		MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
	mt_report(MPI_COMM_WORLD, "coll.barrier", "3 late ranks, 200 rounds", MT_FNV_INIT);
}

int main(int argc, char **argv)
{
	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	MT_MPI(MPI_Comm_size(MPI_COMM_WORLD, &nranks));
	MT_CHECK(nranks <= 64, "at most 64 ranks");
	test_bcast();
	test_reduce();
	test_alltoall_allgather();
	test_alltoallv();
	test_reduce_scatter();
	test_barrier();
	MT_MPI(MPI_Finalize());
	return 0;
}
