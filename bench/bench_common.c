#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

void bench_pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		fprintf(stderr, "cannot pin to CPU %d: errno %d\n", cpu, errno);
		exit(2);
	}
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cycles(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __rdtsc();
#else
	return bench_now_ns();
#endif
}

double bench_cycles_per_usec(void)
{
	static double rate;
	uint64_t t0, c0, t1, c1;

	if (rate > 0)
		return rate;
	/* 50 ms is long enough for a rate good to 0.1 %, short enough to not matter. */
	t0 = bench_now_ns();
	c0 = bench_cycles();
	do {
		t1 = bench_now_ns();
	} while (t1 - t0 < 50000000u);
	c1 = bench_cycles();
	rate = (double)(c1 - c0) / ((double)(t1 - t0) / 1000.0);
	return rate;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_quantile(double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

size_t bench_parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'K':
	case 'k':
		v <<= 10;
		end++;
		break;
	case 'M':
	case 'm':
		v <<= 20;
		end++;
		break;
	case 'G':
	case 'g':
		v <<= 30;
		end++;
		break;
	}
	if (*end == '\0' && v > 0)
		return (size_t)v;
bad:
	fprintf(stderr, "bad size '%s'\n", s);
	exit(2);
}

void bench_emit(const char *name, size_t size, const char *metric, double value, const char *unit)
{
	printf("%s,%zu,%s,%.4f,%s\n", name, size, metric, value, unit);
	fflush(stdout);
}

void bench_emit_latency(const char *name, size_t size, double *half_rtt, size_t n)
{
	double sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += half_rtt[i];
	/* typical is the median, as perftest's t_typical */
	bench_emit(name, size, "half_rtt_avg", n ? sum / (double)n : 0, "usec");
	bench_emit(name, size, "half_rtt_typical", bench_quantile(half_rtt, n, 0.5), "usec");
	bench_emit(name, size, "half_rtt_min", bench_quantile(half_rtt, n, 0), "usec");
	bench_emit(name, size, "half_rtt_p99", bench_quantile(half_rtt, n, 0.99), "usec");
}

int bench_tcp_listen_loopback(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(fd, 1) != 0 ||
	    getsockname(fd, (struct sockaddr *)addr, &len) != 0) {
		perror("listen on 127.0.0.1");
		exit(1);
	}
	return fd;
}

void bench_tcp_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
		perror("TCP_NODELAY");
		exit(1);
	}
}
