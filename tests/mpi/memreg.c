/* SPDX-License-Identifier: MIT */
/*
 * Message buffers that come and go: malloc/free, mmap/munmap (the next
 * mapping usually lands at the same address) and one buffer kept but
 * rewritten. A registration cache that misses an unmap, or keeps data of
 * a registration after the memory changed, delivers stale bytes here or
 * overwrites memory the program now uses for something else.
 */
#include "mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int rank, peer;
static const size_t sizes[] = {4096, 65536, 1048576, 4194304, 12289, 1048577};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define ROUNDS 24

enum kind { HEAP, MAPPED, KEPT };

static void *get_buf(enum kind k, size_t size, void *kept)
{
	void *p;

	if (k == KEPT)
		return kept;
	if (k == HEAP)
		return mt_alloc(size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	MT_CHECK(p != MAP_FAILED, "mmap of %zu bytes failed", size);
	return p;
}

static void put_buf(enum kind k, void *p, size_t size)
{
	if (k == HEAP)
		free(p);
	else if (k == MAPPED)
		MT_CHECK(munmap(p, size) == 0, "munmap failed");
}

/*
 * One exchange each way from freshly obtained buffers; the send buffer
 * is checked afterwards too (a transport must never write into it).
 */
static uint64_t round_trip(enum kind k, size_t size, int iter, void *kept_out, void *kept_in,
			   uint64_t h)
{
	void *out = get_buf(k, size, kept_out), *in = get_buf(k, size, kept_in);
	MPI_Request rq[2];

	mt_fill(out, size, rank, iter);
	memset(in, 0, size);
	MT_MPI(MPI_Irecv(in, (int)size, MPI_BYTE, peer, iter, MPI_COMM_WORLD, &rq[0]));
	MT_MPI(MPI_Isend(out, (int)size, MPI_BYTE, peer, iter, MPI_COMM_WORLD, &rq[1]));
	mt_waitall(2, rq);
	mt_expect(in, size, peer, iter, "received");
	mt_expect(out, size, rank, iter, "send buffer after the send");
	h = mt_hash(h, in, size);
	put_buf(k, out, size);
	put_buf(k, in, size);
	return h;
}

/*
 * Memory that replaced freed message buffers (often at their addresses)
 * must keep what the program wrote: a late deregistration of the old
 * buffer must not put its bytes back.
 */
static void check_reuse(size_t size, int iter)
{
	void *p = get_buf(MAPPED, size, NULL), *q = mt_alloc(size);

	mt_fill(p, size, rank, iter + 1000);
	mt_fill(q, size, rank, iter + 2000);
	MT_MPI(MPI_Barrier(MPI_COMM_WORLD)); /* the transports progress meanwhile */
	mt_expect(p, size, rank, iter + 1000, "a new mapping after the messages");
	mt_expect(q, size, rank, iter + 2000, "a new heap block after the messages");
	put_buf(MAPPED, p, size);
	free(q);
}

int main(int argc, char **argv)
{
	static const char *names[] = {"memreg.heap", "memreg.mmap", "memreg.kept"};
	size_t max = 4194304;
	void *kept_out, *kept_in;

	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	peer = rank ^ 1;
	kept_out = mt_alloc(max);
	kept_in = mt_alloc(max);
	for (enum kind k = HEAP; k <= KEPT; k++) {
		uint64_t h = MT_FNV_INIT;

		for (int i = 0; i < ROUNDS; i++) {
			h = round_trip(k, sizes[i % NSIZES], i, kept_out, kept_in, h);
			check_reuse(sizes[i % NSIZES], i);
		}
		mt_report(MPI_COMM_WORLD, names[k], "24 rounds, 6 sizes", h);
	}
	free(kept_out);
	free(kept_in);
	MT_MPI(MPI_Finalize());
	return 0;
}
