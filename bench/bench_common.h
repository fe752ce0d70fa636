/* Helpers shared by the baseline programs: pinning, a cycle counter and
 * statistics over samples. The baselines time the same way perftest does
 * (the TSC on x86-64), so their figures and perftest's compare directly. */
#ifndef IVRDMA_BENCH_COMMON_H
#define IVRDMA_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

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

/* Prints half_rtt_{avg,typical,min,p99} of n samples (usec); sorts them. */
void bench_emit_latency(const char *name, size_t size, double *half_rtt, size_t n);

#endif
