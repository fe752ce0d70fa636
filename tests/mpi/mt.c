/* SPDX-License-Identifier: MIT */
#include "mt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A 32-bit mix (murmur3's finaliser): neighbouring offsets and seeds give unrelated bytes. */
static uint32_t mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	x *= 0xc2b2ae35u;
	x ^= x >> 16;
	return x;
}

static uint32_t seed_of(int rank, size_t size, int iter)
{
	return mix((uint32_t)rank * 0x9e3779b1u ^ mix((uint32_t)size ^ (uint32_t)(size >> 32)) ^
		   (uint32_t)iter * 0x27d4eb2fu);
}

uint8_t mt_byte(int rank, size_t size, int iter, size_t i)
{
	uint32_t w = mix(seed_of(rank, size, iter) + (uint32_t)(i / 4) * 0x9e3779b1u);

	return (uint8_t)(w >> (8 * (i % 4)));
}

/* Four bytes per mix: a 16 MiB message is filled and checked in milliseconds. */
void mt_fill(void *buf, size_t size, int rank, int iter)
{
	uint32_t seed = seed_of(rank, size, iter);
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 4 <= size; i += 4) {
		uint32_t w = mix(seed + (uint32_t)(i / 4) * 0x9e3779b1u);

		memcpy(p + i, &w, 4); /* little-endian: byte k is w >> 8k, as mt_byte */
	}
	for (; i < size; i++)
		p[i] = mt_byte(rank, size, iter, i);
}

void mt_expect(const void *buf, size_t size, int rank, int iter, const char *what)
{
	uint32_t seed = seed_of(rank, size, iter);
	const uint8_t *p = buf;
	size_t i;

	mt_maybe_flip((void *)buf, size);
	for (i = 0; i + 4 <= size; i += 4) {
		uint32_t w = mix(seed + (uint32_t)(i / 4) * 0x9e3779b1u);

		if (memcmp(p + i, &w, 4))
			break;
	}
	for (; i < size; i++)
		MT_CHECK(p[i] == mt_byte(rank, size, iter, i),
			 "%s: byte %zu of %zu from rank %d (iteration %d) is 0x%02x, not 0x%02x",
			 what, i, size, rank, iter, p[i], mt_byte(rank, size, iter, i));
}

uint64_t mt_hash(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

uint64_t mt_hash_u64(uint64_t h, uint64_t v)
{
	return mt_hash(h, &v, sizeof(v));
}

void mt_fail(const char *fmt, ...)
{
	va_list ap;
	int rank = -1;

	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	fprintf(stderr, "FAIL rank %d: ", rank);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	/*
	 * MPICH's launcher tears the job down on MPI_Abort and may drop what
	 * it has not yet read from this rank's stderr (3 runs in 40 lost the
	 * line above, over MPICH's own shared memory too): time to forward it.
	 */
	usleep(300 * 1000);
	MPI_Abort(MPI_COMM_WORLD, 1);
	abort(); /* MPI_Abort does not return; the compiler must know */
}

void mt_report(MPI_Comm comm, const char *name, const char *detail, uint64_t h)
{
	int rank, size;
	uint64_t *all = NULL;

	MT_MPI(MPI_Comm_rank(comm, &rank));
	MT_MPI(MPI_Comm_size(comm, &size));
	if (rank == 0)
		all = mt_alloc(sizeof(*all) * (size_t)size);
	MT_MPI(MPI_Gather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, comm));
	if (rank == 0) {
		uint64_t sum = MT_FNV_INIT;

		for (int r = 0; r < size; r++)
			sum = mt_hash_u64(sum, all[r]);
		printf("%s: %s, %d ranks, checksum %016llx\n", name, detail, size,
		       (unsigned long long)sum);
		fflush(stdout);
		free(all);
	}
}

void *mt_alloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	MT_CHECK(p, "out of memory (%zu bytes)", size);
	return p;
}

void mt_waitall(int n, MPI_Request *rq)
{
	MPI_Status *st = mt_alloc(sizeof(*st) * (size_t)n);

	MT_MPI(MPI_Waitall(n, rq, st));
	free(st);
}

void mt_maybe_flip(void *buf, size_t size)
{
	static int done;

	if (done || size == 0 || !getenv("MT_FLIP_BYTE"))
		return;
	done = 1;
	((uint8_t *)buf)[size / 2] ^= 0x01;
}
