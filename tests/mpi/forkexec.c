/* SPDX-License-Identifier: MIT */
/*
 * A rank forks after MPI_Init, and every rank runs system(); then they
 * communicate on. The forked child writes over the parent's message
 * buffers (registered by the transport, so backed by the shared region
 * under ivrdma): the parent must not see those writes, and its later
 * messages must arrive intact.
 */
#include "mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int rank, peer;
static const size_t sizes[] = {4096, 65537, 4194304};
#define NSIZES 3

static uint64_t exchange(char **out, char **in, int iter, uint64_t h)
{
	for (int s = 0; s < NSIZES; s++) {
		MPI_Request rq[2];

		mt_fill(out[s], sizes[s], rank, iter);
		MT_MPI(MPI_Irecv(in[s], (int)sizes[s], MPI_BYTE, peer, s, MPI_COMM_WORLD, &rq[0]));
		MT_MPI(MPI_Isend(out[s], (int)sizes[s], MPI_BYTE, peer, s, MPI_COMM_WORLD, &rq[1]));
		mt_waitall(2, rq);
		mt_expect(in[s], sizes[s], peer, iter, "exchange");
		h = mt_hash(h, in[s], sizes[s]);
	}
	return h;
}

/* The child scribbles over every buffer and leaves without MPI; the parent's stay. */
static void fork_and_scribble(char **out, char **in, int iter)
{
	pid_t pid = fork();
	int status;

	MT_CHECK(pid >= 0, "fork failed");
	if (pid == 0) {
		for (int s = 0; s < NSIZES; s++) {
			memset(out[s], 0xff, sizes[s]);
			memset(in[s], 0xff, sizes[s]);
		}
		_exit(0);
	}
	MT_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "forked child did not exit cleanly");
	for (int s = 0; s < NSIZES; s++) {
		mt_expect(out[s], sizes[s], rank, iter,
			  "send buffer after the child wrote its copy");
		mt_expect(in[s], sizes[s], peer, iter,
			  "receive buffer after the child wrote its copy");
	}
}

int main(int argc, char **argv)
{
	char *out[NSIZES], *in[NSIZES];
	uint64_t h = MT_FNV_INIT;

	MT_MPI(MPI_Init(&argc, &argv));
	MT_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
	peer = rank ^ 1;
	for (int s = 0; s < NSIZES; s++) {
		out[s] = mt_alloc(sizes[s]);
		in[s] = mt_alloc(sizes[s]);
	}
	h = exchange(out, in, 0, h);
	if (rank == 0)
		fork_and_scribble(out, in, 0);
	MT_CHECK(system("exit 3") == 3 << 8, "system() did not return the shell's status");
	h = exchange(out, in, 1, h);
	MT_MPI(MPI_Barrier(MPI_COMM_WORLD));
	if (rank == 1)
		fork_and_scribble(out, in, 1);
	h = exchange(out, in, 2, h);
	for (int s = 0; s < NSIZES; s++) {
		free(out[s]);
		free(in[s]);
	}
	mt_report(MPI_COMM_WORLD, "forkexec", "fork, system, then messages", h);
	MT_MPI(MPI_Finalize());
	return 0;
}
