/* The memory limit for message rate: two processes pinned to two cores,
 * one queue of 8-byte messages between them in a MAP_SHARED mapping. The
 * producer writes each message into its slot and publishes it on its own
 * (a release store of the producer index per message, no batching, as each
 * work request is its own); the consumer reads each one and hands its slot
 * back on its own (a release store of the consumer index per message).
 * Each side reads the other's index only when what it saw of it last says
 * it must (queue full, queue empty), as a well-written ring does.
 *
 * What it measures moves with where the host places the two virtual CPUs
 * (the index lines cross between cores), which is why the suite runs it
 * next to ib_write_bw and ib_send_bw at 8 bytes.
 *
 * usage: spsc_rate [-a CPU] [-b CPU] [-n MESSAGES] [-q SLOTS] [-r REPS]
 * prints CSV: spsc_rate,8,rate_{median,max},VALUE,Mmsg/s
 *   (per repetition of MESSAGES, the producer's rate; median and best)
 */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The two indices on lines of their own, then the slots. */
struct spsc {
	_Alignas(64) _Atomic uint64_t prod; /* messages published */
	char pad0[64 - sizeof(uint64_t)];
	_Alignas(64) _Atomic uint64_t cons; /* messages read, slots free again */
	char pad1[64 - sizeof(uint64_t)];
	_Alignas(64) _Atomic uint64_t rep; /* the repetition both sides start */
	char pad2[64 - sizeof(uint64_t)];
	_Alignas(64) uint64_t slot[]; /* nslots (a power of two) messages */
};

/* The slot index arithmetic, on its own (a power-of-two ring). */
static inline uint64_t slot_of(uint64_t i, uint64_t nslots)
{
	return i & (nslots - 1);
}

/* Sends messages [first, first + n): the value of message i is i. */
static void produce(struct spsc *q, uint64_t nslots, uint64_t first, uint64_t n)
{
	uint64_t cons_seen = atomic_load_explicit(&q->cons, memory_order_acquire);

	for (uint64_t i = first; i < first + n; i++) {
		while (i - cons_seen >= nslots)
			cons_seen = atomic_load_explicit(&q->cons, memory_order_acquire);
		q->slot[slot_of(i, nslots)] = i;
		atomic_store_explicit(&q->prod, i + 1, memory_order_release);
	}
}

/* Receives messages [first, first + n), checking each; returns the bad ones. */
static uint64_t consume(struct spsc *q, uint64_t nslots, uint64_t first, uint64_t n)
{
	uint64_t prod_seen = first, bad = 0;

	for (uint64_t i = first; i < first + n; i++) {
		while (prod_seen <= i)
			prod_seen = atomic_load_explicit(&q->prod, memory_order_acquire);
		bad += q->slot[slot_of(i, nslots)] != i;
		atomic_store_explicit(&q->cons, i + 1, memory_order_release);
	}
	return bad;
}

static void usage(void)
{
	fprintf(stderr, "usage: spsc_rate [-a CPU] [-b CPU] [-n MESSAGES] [-q SLOTS] [-r REPS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int cpu_a = 0, cpu_b = 1, opt, status;
	uint64_t n = 2000000, nslots = 256, reps = 10, bad = 0;
	struct spsc *q;
	double *rate;
	pid_t pid;

	while ((opt = getopt(argc, argv, "a:b:n:q:r:")) != -1) {
		switch (opt) {
		case 'a':
			cpu_a = atoi(optarg);
			break;
		case 'b':
			cpu_b = atoi(optarg);
			break;
		case 'n':
			n = bench_parse_size(optarg);
			break;
		case 'q':
			nslots = bench_parse_size(optarg);
			break;
		case 'r':
			reps = bench_parse_size(optarg);
			break;
		default:
			usage();
		}
	}
	if (!n || !reps || !nslots || (nslots & (nslots - 1)))
		usage();
	q = mmap(NULL, sizeof(*q) + nslots * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	rate = calloc(reps, sizeof(*rate));
	if (q == MAP_FAILED || !rate) {
		perror("spsc_rate: memory");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) { /* the consumer: a warm-up repetition, then reps */
		bench_pin(cpu_b);
		for (uint64_t r = 0; r <= reps; r++) {
			while (atomic_load_explicit(&q->rep, memory_order_acquire) != r + 1)
				;
			bad += consume(q, nslots, r * n, n);
		}
		_exit(bad ? 1 : 0);
	}
	bench_pin(cpu_a);
	for (uint64_t r = 0; r <= reps; r++) {
		uint64_t t0;

		/* Each repetition starts from an empty queue. */
		while (atomic_load_explicit(&q->cons, memory_order_acquire) != r * n)
			;
		atomic_store_explicit(&q->rep, r + 1, memory_order_release);
		t0 = bench_now_ns();
		produce(q, nslots, r * n, n);
		while (atomic_load_explicit(&q->cons, memory_order_acquire) != (r + 1) * n)
			;
		if (r > 0)
			rate[r - 1] = (double)n * 1e3 / (double)(bench_now_ns() - t0);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "spsc_rate: the consumer saw messages out of order or lost\n");
		return 1;
	}
	bench_emit("spsc_rate", 8, "rate_median", bench_quantile(rate, reps, 0.5), "Mmsg/s");
	bench_emit("spsc_rate", 8, "rate_max", bench_quantile(rate, reps, 1.0), "Mmsg/s");
	free(rate);
	return 0;
}
