/* SPDX-License-Identifier: MIT */
/*
 * A rank dies while the others wait on it: argv[1] "abort" calls abort(),
 * "kill" sends itself SIGKILL. The launcher must end the whole job with a
 * non-zero status; run-mpi-test.sh --must-fail bounds how long that takes.
 */
#include "mt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int rank, nranks;
	char buf[4096];

	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	MT_MPI(MPI_Comm_size(MPI_COMM_WORLD, &nranks));
	MT_CHECK(argc == 2, "usage: die abort|kill");
	/* Connections are up: a first exchange around the ring. */
	MT_MPI(MPI_Allreduce(MPI_IN_PLACE, &rank, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	if (rank == nranks - 1) {
		fprintf(stderr, "rank %d dies (%s)\n", rank, argv[1]);
		fflush(stderr);
		if (!strcmp(argv[1], "kill"))
			raise(SIGKILL);
		abort();
	}
	/* Never satisfied: the dying rank sends nothing. */
	MT_MPI(
	    MPI_Recv(buf, sizeof(buf), MPI_BYTE, nranks - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
	fprintf(stderr, "rank %d: a message from a dead rank\n", rank);
	MT_MPI(MPI_Finalize());
	return 0;
}
