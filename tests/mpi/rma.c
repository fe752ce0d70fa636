/* SPDX-License-Identifier: MIT */
/*
 * One-sided: Put, Get, Accumulate, Fetch_and_op and Compare_and_swap in
 * fence epochs and under passive-target locks, on a window of memory the
 * program allocated (MPI_Win_create: the transport registers user memory)
 * and on one MPI allocated (MPI_Win_allocate).
 */
#include "mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 131072 /* int64 elements per area: 1 MiB, past every eager threshold */
/* Window layout, in int64 elements. */
#define PUT_AT	   0
#define GET_AT	   N
#define ACC_AT	   (2 * N)
#define COUNTER_AT (3 * N)
#define CAS_AT	   (3 * N + 1)
#define LOCKED_AT  (3 * N + 2)
#define WIN_LEN	   (3 * N + 3)
/* Target displacements in bytes: the windows have a disp_unit of 1. */
#define AT(i) ((MPI_Aint)(i) * (MPI_Aint)sizeof(int64_t))

static int rank, nranks;
static const int counts[] = {1, 1000, N};

static int64_t val(int r, int i, int k)
{
	return (int64_t)mt_byte(r, (size_t)i, k, 1) * 1000003 + (int64_t)r * 7919 + i + k;
}

/* Put to the right neighbour, Get from the left one, in one fence epoch. */
static uint64_t fence_put_get(MPI_Win win, int64_t *base, int c, uint64_t h)
{
	int n = counts[c], right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
	int64_t *src = mt_alloc(sizeof(*src) * N), *got = mt_alloc(sizeof(*got) * N);

	for (int i = 0; i < n; i++) {
		src[i] = val(rank, i, c);
		base[GET_AT + i] = val(rank, i, c + 10);
	}
	MT_MPI(MPI_Win_fence(0, win));
	MT_MPI(MPI_Put(src, n, MPI_INT64_T, right, AT(PUT_AT), n, MPI_INT64_T, win));
	MT_MPI(MPI_Get(got, n, MPI_INT64_T, left, AT(GET_AT), n, MPI_INT64_T, win));
	MT_MPI(MPI_Win_fence(0, win));
	for (int i = 0; i < n; i++) {
		MT_CHECK(base[PUT_AT + i] == val(left, i, c), "put: element %d of %d", i, n);
		MT_CHECK(got[i] == val(left, i, c + 10), "get: element %d of %d: %lld not %lld", i,
			 n, (long long)got[i], (long long)val(left, i, c + 10));
	}
	h = mt_hash(mt_hash(h, base + PUT_AT, sizeof(*base) * (size_t)n), got,
		    sizeof(*got) * (size_t)n);
	free(src);
	free(got);
	return h;
}

/* Every rank adds its values into rank 0's area: the exact sum. */
static uint64_t fence_accumulate(MPI_Win win, int64_t *base, int c, uint64_t h)
{
	int n = counts[c];
	int64_t *src = mt_alloc(sizeof(*src) * (size_t)n);

	for (int i = 0; i < n; i++)
		src[i] = val(rank, i, c);
	memset(base + ACC_AT, 0, sizeof(*base) * (size_t)n);
	MT_MPI(MPI_Win_fence(0, win));
	MT_MPI(MPI_Accumulate(src, n, MPI_INT64_T, 0, AT(ACC_AT), n, MPI_INT64_T, MPI_SUM, win));
	MT_MPI(MPI_Win_fence(0, win));
	for (int i = 0; rank == 0 && i < n; i++) {
		int64_t want = 0;

		for (int r = 0; r < nranks; r++)
			want += val(r, i, c);
		MT_CHECK(base[ACC_AT + i] == want, "accumulate: element %d of %d", i, n);
	}
	if (rank == 0)
		h = mt_hash(h, base + ACC_AT, sizeof(*base) * (size_t)n);
	free(src);
	return h;
}

/*
 * Fetch_and_op: each rank adds rank+1 to the last rank's counter, 20 epochs;
 * the values a rank fetches must grow, the total must be exact. Then
 * Compare_and_swap on rank 0's word: exactly one rank swaps -1 for its rank.
 */
static uint64_t fence_atomics(MPI_Win win, int64_t *base, uint64_t h)
{
	int64_t add = rank + 1, prev = -1, got, want = 0, cas_new = rank, cas_cmp = -1, cas_old;
	int winners, last = nranks - 1;

	base[COUNTER_AT] = 0;
	base[CAS_AT] = -1;
	MT_MPI(MPI_Win_fence(0, win));
	for (int i = 0; i < 20; i++) {
		MT_MPI(
		    MPI_Fetch_and_op(&add, &got, MPI_INT64_T, last, AT(COUNTER_AT), MPI_SUM, win));
		MT_MPI(MPI_Win_fence(0, win)); /* got is valid only at the epoch's end */
		MT_CHECK(got > prev, "fetch_and_op: fetched %lld after %lld", (long long)got,
			 (long long)prev);
		prev = got;
	}
	MT_MPI(MPI_Compare_and_swap(&cas_new, &cas_cmp, &cas_old, MPI_INT64_T, 0, AT(CAS_AT), win));
	MT_MPI(MPI_Win_fence(0, win));
	for (int r = 0; r < nranks; r++)
		want += 20 * (r + 1);
	MT_CHECK(rank != last || base[COUNTER_AT] == want, "fetch_and_op: counter %lld, not %lld",
		 (long long)base[COUNTER_AT], (long long)want);
	int won = cas_old == -1;

	MT_MPI(MPI_Allreduce(&won, &winners, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
	MT_CHECK(winners == 1, "compare_and_swap: %d ranks swapped", winners);
	MT_CHECK(rank != 0 || (base[CAS_AT] >= 0 && base[CAS_AT] < nranks),
		 "compare_and_swap: word %lld", (long long)base[CAS_AT]);
	return mt_hash_u64(h, (uint64_t)want); /* the winner may differ from run to run */
}

/*
 * Passive target: a read-modify-write of rank 0's word under an exclusive
 * lock, 20 times per rank, and 10 Fetch_and_op under shared locks must
 * lose no increment; then lock_all, a Put
 * to the right neighbour, flush, unlock_all, and a shared-lock Get back.
 */
static uint64_t passive(MPI_Win win, int64_t *base, uint64_t h)
{
	int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
	int64_t v, *src = mt_alloc(sizeof(*src) * N), *got = mt_alloc(sizeof(*got) * N);

	base[LOCKED_AT] = 0;
	MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
	for (int i = 0; i < 20; i++) {
		MT_MPI(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win));
		MT_MPI(MPI_Get(&v, 1, MPI_INT64_T, 0, AT(LOCKED_AT), 1, MPI_INT64_T, win));
		MT_MPI(MPI_Win_flush(0, win));
		v++;
		MT_MPI(MPI_Put(&v, 1, MPI_INT64_T, 0, AT(LOCKED_AT), 1, MPI_INT64_T, win));
		MT_MPI(MPI_Win_unlock(0, win));
	}
	for (int i = 0; i < 10; i++) { /* Fetch_and_op under a shared lock, 10 per rank */
		int64_t one = 1, old;

		MT_MPI(MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win));
		MT_MPI(MPI_Fetch_and_op(&one, &old, MPI_INT64_T, 0, AT(LOCKED_AT), MPI_SUM, win));
		MT_MPI(MPI_Win_unlock(0, win));
		MT_CHECK(old >= 0 && old < 30 * nranks, "locked fetch_and_op fetched %lld",
			 (long long)old);
	}
	for (int i = 0; i < N; i++)
		src[i] = val(rank, i, 99);
	MT_MPI(MPI_Win_lock_all(0, win));
	MT_MPI(MPI_Put(src, N, MPI_INT64_T, right, AT(PUT_AT), N, MPI_INT64_T, win));
	MT_MPI(MPI_Win_flush(right, win));
	MT_MPI(MPI_Win_unlock_all(win));
	MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
	MT_MPI(MPI_Win_lock(MPI_LOCK_SHARED, left, 0, win));
	MT_MPI(MPI_Get(got, N, MPI_INT64_T, left, AT(PUT_AT), N, MPI_INT64_T, win));
	MT_MPI(MPI_Win_unlock(left, win));
	MT_MPI(MPI_Win_lock(MPI_LOCK_SHARED, rank, 0, win)); /* local loads need an epoch */
	for (int i = 0; i < N; i++) {
		MT_CHECK(base[PUT_AT + i] == val(left, i, 99), "lock_all put: element %d", i);
		MT_CHECK(got[i] == val((left + nranks - 1) % nranks, i, 99),
			 "locked get: element %d", i);
	}
	MT_CHECK(rank != 0 || base[LOCKED_AT] == 30 * nranks,
		 "passive target: counter %lld, not %d", (long long)base[LOCKED_AT], 30 * nranks);
	MT_MPI(MPI_Win_unlock(rank, win));
	h = mt_hash(mt_hash(h, base + PUT_AT, sizeof(*base) * N), got, sizeof(*got) * N);
	free(src);
	free(got);
	MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
	return h;
}

static void test_window(const char *name, int allocate)
{
	MPI_Win win;
	int64_t *base;
	uint64_t h = MT_FNV_INIT;
	/*
	 * Whole pages: MPICH 4.0.2 answers a Get at 1 MiB into an
	 * MPI_Win_allocate window of 3 MiB + 24 bytes with zeros (over any
	 * transport, UCX's shared memory included); at 3 MiB it is right.
	 */
	MPI_Aint bytes = ((MPI_Aint)sizeof(int64_t) * WIN_LEN + 4095) / 4096 * 4096;

	if (allocate) {
		MT_MPI(MPI_Win_allocate(bytes, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &win));
	} else {
		base = mt_alloc((size_t)bytes);
		MT_MPI(MPI_Win_create(base, bytes, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &win));
	}
	memset(base, 0, (size_t)bytes);
	for (int c = 0; c < 3; c++) {
		h = fence_put_get(win, base, c, h);
		h = fence_accumulate(win, base, c, h);
	}
	h = fence_atomics(win, base, h);
	MT_MPI(MPI_Win_fence(0, win));
	h = passive(win, base, h);
	MT_MPI(MPI_Win_free(&win));
	if (!allocate)
		free(base);
	mt_report(MPI_COMM_WORLD, name, "fence and passive target", h);
}

int main(int argc, char **argv)
{
	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	MT_MPI(MPI_Comm_size(MPI_COMM_WORLD, &nranks));
	test_window("rma.win_create", 0);
	test_window("rma.win_allocate", 1);
	MT_MPI(MPI_Finalize());
	return 0;
}
