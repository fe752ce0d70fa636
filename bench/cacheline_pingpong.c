/* The memory limit for latency: two processes pinned to two cores bounce a
 * counter in one 64-byte line of a MAP_SHARED page. Each round trip moves
 * the line to the other core and back, which is the least any shared-memory
 * transport (ivrdma included) must pay per message; half a round trip is
 * what perftest's send/write latency is compared with.
 *
 * usage: cacheline_pingpong [-a CPU] [-b CPU] [-n ROUNDS] [-r REPS]
 * prints CSV: cacheline_pingpong,64,half_rtt_{typical,min,avg,p99},VALUE,usec
 */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* B answers each of A's 'total' rounds. */
static void run_answerer(struct bench_line *l, uint64_t total)
{
	uint64_t seq = 0;

	for (uint64_t i = 0; i < total; i++)
		bench_line_round(l, &seq, false);
}

/* A times each round trip with the cycle counter, as perftest times an iteration. */
static void run_asker(struct bench_line *l, uint64_t rounds, uint64_t reps, double *half_rtt)
{
	double cpu = bench_cycles_per_usec();
	uint64_t seq = 0;

	/* One repetition of warm-up: page faults, the line's first transfers. */
	for (uint64_t r = 0; r <= reps; r++) {
		for (uint64_t i = 0; i < rounds; i++) {
			uint64_t t0 = bench_cycles();

			bench_line_round(l, &seq, true);
			if (r > 0)
				half_rtt[(r - 1) * rounds + i] =
				    (double)(bench_cycles() - t0) / cpu / 2;
		}
	}
}

int main(int argc, char **argv)
{
	int cpu_a = 0, cpu_b = 1, opt;
	uint64_t rounds = 10000, reps = 20;
	double *s;
	struct bench_line *l;
	pid_t pid;
	int status;

	while ((opt = getopt(argc, argv, "a:b:n:r:")) != -1) {
		switch (opt) {
		case 'a':
			cpu_a = atoi(optarg);
			break;
		case 'b':
			cpu_b = atoi(optarg);
			break;
		case 'n':
			rounds = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			reps = strtoull(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: %s [-a CPU] [-b CPU] [-n ROUNDS] [-r REPS]\n",
				argv[0]);
			return 2;
		}
	}
	if (rounds == 0 || reps == 0)
		return 2;
	l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	s = calloc(rounds * reps, sizeof(*s));
	if (l == MAP_FAILED || !s) {
		perror("cacheline_pingpong: memory");
		return 1;
	}
	bench_cycles_per_usec(); /* calibrate before the child spins on the other core */
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		bench_pin(cpu_b);
		run_answerer(l, rounds * (reps + 1));
		_exit(0);
	}
	bench_pin(cpu_a);
	run_asker(l, rounds, reps, s);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "cacheline_pingpong: answerer failed\n");
		return 1;
	}
	bench_emit_latency("cacheline_pingpong", 64, s, rounds * reps);
	free(s);
	return 0;
}
