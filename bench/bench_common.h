/* Helpers shared by the baseline programs: pinning, a cycle counter, statistics over
 * samples and TCP over loopback. The baselines time the same way perftest does
 * (the TSC on x86-64), so their figures and perftest's compare directly. */
#ifndef IVRDMA_BENCH_COMMON_H
#define IVRDMA_BENCH_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A 64-byte line two processes bounce a counter in (put it in MAP_SHARED memory). */
struct bench_line {
	_Alignas(
	    64) _Atomic uint64_t seq; /* odd: the asker's turn to be answered; even: answered */
	char pad[64 - sizeof(uint64_t)];
};

/*
 * One round trip of the line: the asker writes the next odd value and
 * waits for the even answer, the answerer waits for it and answers. Each
 * side keeps its own *seq, equal on both when they run the same rounds.
 */
static inline void bench_line_round(struct bench_line *l, uint64_t *seq, bool asker)
{
	uint64_t ask = *seq + 1;

	if (asker) {
		atomic_store_explicit(&l->seq, ask, memory_order_release);
		while (atomic_load_explicit(&l->seq, memory_order_acquire) != ask + 1)
			;
	} else {
		while (atomic_load_explicit(&l->seq, memory_order_acquire) != ask)
			;
		atomic_store_explicit(&l->seq, ask + 1, memory_order_release);
	}
	*seq += 2;
}

/* Pins the calling thread to one CPU; exits with a message if it cannot. */
void bench_pin(int cpu);

/* A cheap, monotonic cycle count (rdtsc where there is one, like perftest). */
uint64_t bench_cycles(void);

/* Cycles per microsecond, measured once against CLOCK_MONOTONIC. */
double bench_cycles_per_usec(void);

/* Nanoseconds of CLOCK_MONOTONIC. */
uint64_t bench_now_ns(void);

/* Sorts v[0..n) in place and returns the value at quantile q (0..1). */
double bench_quantile(double *v, size_t n, double q);

/* Parses a size like 2, 4096, 64K, 1M; exits on a malformed one. */
size_t bench_parse_size(const char *s);

/* Prints one CSV record: name,size,metric,value,unit. */
void bench_emit(const char *name, size_t size, const char *metric, double value, const char *unit);

struct sockaddr_in;

/* A TCP socket listening on 127.0.0.1 at a port the kernel chose (*addr); exits on failure. */
int bench_tcp_listen_loopback(struct sockaddr_in *addr);

/* TCP_NODELAY on fd, so each message leaves at once; exits on failure. */
void bench_tcp_nodelay(int fd);

/* Prints half_rtt_{avg,typical,min,p99} of n samples (usec); sorts them. */
void bench_emit_latency(const char *name, size_t size, double *half_rtt, size_t n);

#endif
