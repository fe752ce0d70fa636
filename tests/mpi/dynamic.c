/* SPDX-License-Identifier: MIT */
/*
 * Processes that come and go: MPI_Comm_spawn of children that talk to
 * their parents and leave with MPI_Comm_disconnect; MPI_Comm_connect and
 * MPI_Comm_accept between the two halves of the job (the port name travels
 * in a broadcast, so no name server is needed), then disconnect; and
 * ranks that finish at different times while others still communicate.
 * Each parent has one child.
 */
#include "mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MSG 200000 /* past the eager limits: rendezvous over the new connections */

/*
 * Sends MSG bytes keyed 1000 + my rank to remote rank 'peer' and checks
 * theirs, keyed 1000 + peer, over an intercommunicator.
 */
static uint64_t inter_exchange(MPI_Comm ic, int peer, int tag, uint64_t h)
{
	char *out = mt_alloc(MSG), *in = mt_alloc(MSG);
	MPI_Request rq[2];
	int me;

	MT_MPI(MPI_Comm_rank(ic, &me));
	mt_fill(out, MSG, 1000 + me, tag);
	MT_MPI(MPI_Irecv(in, MSG, MPI_BYTE, peer, tag, ic, &rq[0]));
	MT_MPI(MPI_Isend(out, MSG, MPI_BYTE, peer, tag, ic, &rq[1]));
	mt_waitall(2, rq);
	mt_expect(in, MSG, 1000 + peer, tag, "across the intercommunicator");
	h = mt_hash(h, in, MSG);
	free(out);
	free(in);
	return h;
}

/* Parent rank r and child r exchange, then all merge (parents first), check and report. */
static void spawn_side(MPI_Comm ic, int child)
{
	int me, size, sum = 0;
	MPI_Comm merged;
	uint64_t h;

	MT_MPI(MPI_Comm_rank(ic, &me));
	h = inter_exchange(ic, me, 5, MT_FNV_INIT);
	MT_MPI(MPI_Intercomm_merge(ic, child, &merged));
	MT_MPI(MPI_Comm_size(merged, &size));
	MT_MPI(MPI_Allreduce(&size, &sum, 1, MPI_INT, MPI_SUM, merged));
	MT_CHECK(sum == size * size, "merged communicator: sizes disagree");
	mt_report(merged, "dynamic.spawn", "children merged with parents", h);
	MT_MPI(MPI_Comm_free(&merged));
	MT_MPI(MPI_Comm_disconnect(&ic));
}

static void test_spawn(char *self, int nranks)
{
	char *child_argv[] = {"child", NULL};
	int errs[64];
	MPI_Comm ic;

	MT_MPI(
	    MPI_Comm_spawn(self, child_argv, nranks, MPI_INFO_NULL, 0, MPI_COMM_WORLD, &ic, errs));
	for (int i = 0; i < nranks; i++)
		MT_CHECK(errs[i] == MPI_SUCCESS, "spawn: child %d failed to start", i);
	spawn_side(ic, 0);
}

/* Even ranks accept, odd ranks connect; even rank 2k pairs with odd rank 2k+1. */
static void test_connect_accept(int rank)
{
	char port[MPI_MAX_PORT_NAME] = "";
	MPI_Comm half, ic;
	uint64_t h;

	MT_MPI(MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half));
	if (rank == 0)
		MT_MPI(MPI_Open_port(MPI_INFO_NULL, port));
	MT_MPI(MPI_Bcast(port, MPI_MAX_PORT_NAME, MPI_CHAR, 0, MPI_COMM_WORLD));
	if (rank % 2 == 0)
		MT_MPI(MPI_Comm_accept(port, MPI_INFO_NULL, 0, half, &ic));
	else
		MT_MPI(MPI_Comm_connect(port, MPI_INFO_NULL, 0, half, &ic));
	h = inter_exchange(ic, rank / 2, 6, MT_FNV_INIT);
	MT_MPI(MPI_Comm_disconnect(&ic));
	if (rank == 0)
		MT_MPI(MPI_Close_port(port));
	mt_report(MPI_COMM_WORLD, "dynamic.connect", "accept/connect, disconnect", h);
	MT_MPI(MPI_Comm_free(&half));
}

/*
 * Rank 0 finishes first; the others keep exchanging among themselves,
 * each one 0.1 s later than the one before, then finish too.
 */
static void test_staggered(int rank, int nranks)
{
	MPI_Comm rest;
	uint64_t h = MT_FNV_INIT;

	MT_MPI(MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? MPI_UNDEFINED : 0, rank, &rest));
	mt_report(MPI_COMM_WORLD, "dynamic.staggered", "rank 0 leaves first", h);
	if (rest == MPI_COMM_NULL)
		return;
	for (int i = 0; i < 3; i++) {
		int v = rank * 10 + i, sum = 0;

		usleep(100000 * (useconds_t)rank);
		MT_MPI(MPI_Allreduce(&v, &sum, 1, MPI_INT, MPI_SUM, rest));
		MT_CHECK(sum == (nranks * (nranks - 1) / 2) * 10 + (nranks - 1) * i,
			 "staggered: sum %d", sum);
	}
	MT_MPI(MPI_Comm_free(&rest));
}

int main(int argc, char **argv)
{
	MPI_Comm parent;
	int rank, nranks;

	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_get_parent(&parent));
	if (parent != MPI_COMM_NULL) { /* a spawned child */
		spawn_side(parent, 1);
		MT_MPI(MPI_Finalize());
		return 0;
	}
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	MT_MPI(MPI_Comm_size(MPI_COMM_WORLD, &nranks));
	MT_CHECK(nranks % 2 == 0 && nranks <= 64, "dynamic needs an even number of ranks");
	test_spawn(argv[0], nranks);
	test_connect_accept(rank);
	test_staggered(rank, nranks);
	MT_MPI(MPI_Finalize());
	return 0;
}
