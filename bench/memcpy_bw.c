/* The memory limit for bandwidth: single-thread glibc memcpy (what the
 * provider copies with) at each size, two ways:
 *   hot  - the same source and destination every time, as perftest's
 *          write/send bandwidth tests reuse one buffer per side for messages
 *          larger than its cycle buffer: the data stays in L2/L3;
 *   cold - source and destination walk through an arena much larger than
 *          the last-level cache, so every copy comes from and goes to DRAM.
 * The ratios use "hot": it is like with like for perftest's access pattern.
 *
 * usage: memcpy_bw [-c CPU] [-t MS] [-r REPS] [-A ARENA] [-H] SIZE...
 *        (-H: hot only, for a quick sweep of many sizes)
 * prints CSV: memcpy_{hot,cold},SIZE,bw,VALUE,MiB/s (median over REPS)
 */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Keeps the compiler from dropping copies whose result is never read. */
static inline void clobber(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* Copies size bytes from src+off to dst+off, off stepping by stride modulo
 * span (stride 0: always the same buffers), for about ms milliseconds.
 * Returns MiB/s. */
static double copy_rate(char *dst, const char *src, size_t size, size_t stride, size_t span,
			unsigned ms)
{
	uint64_t start = bench_now_ns(), end = start + (uint64_t)ms * 1000000u, now;
	size_t off = 0, copies = 0, batch = size >= 65536 ? 1 : 65536 / size;

	do {
		for (size_t i = 0; i < batch; i++) {
			memcpy(dst + off, src + off, size);
			clobber(dst);
			if (stride) {
				off += stride;
				if (off + size > span)
					off = 0;
			}
		}
		copies += batch;
		now = bench_now_ns();
	} while (now < end);
	return (double)copies * (double)size / ((double)(now - start) / 1e9) / 1048576.0;
}

static double median_rate(char *dst, const char *src, size_t size, size_t stride, size_t span,
			  unsigned ms, unsigned reps)
{
	double r[64];

	if (reps > 64)
		reps = 64;
	copy_rate(dst, src, size, stride, span, ms / 4 + 1); /* warm-up: faults, caches */
	for (unsigned i = 0; i < reps; i++)
		r[i] = copy_rate(dst, src, size, stride, span, ms);
	return bench_quantile(r, reps, 0.5);
}

/* Two fresh, faulted-in mappings of len bytes each. The hot buffers are
 * their own, message-sized, as perftest's are: carved out of the big cold
 * arena they measured about 10 % slower on a 2-core EPYC VM. */
static void map_pair(size_t len, char **src, char **dst)
{
	*src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	*dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*src == MAP_FAILED || *dst == MAP_FAILED) {
		perror("memcpy_bw: mmap");
		exit(1);
	}
	memset(*src, 1, len); /* fault every page in before timing */
	memset(*dst, 2, len);
}

static void unmap_pair(size_t len, char *src, char *dst)
{
	munmap(src, len);
	munmap(dst, len);
}

int main(int argc, char **argv)
{
	size_t arena = 256u << 20; /* 8 times a 32 MiB L3; per side */
	unsigned ms = 100, reps = 5;
	int cpu = 1, opt, hot_only = 0;
	char *src, *dst, *cold_src = NULL, *cold_dst = NULL;

	while ((opt = getopt(argc, argv, "c:t:r:A:H")) != -1) {
		switch (opt) {
		case 'c':
			cpu = atoi(optarg);
			break;
		case 't':
			ms = (unsigned)atoi(optarg);
			break;
		case 'r':
			reps = (unsigned)atoi(optarg);
			break;
		case 'A':
			arena = bench_parse_size(optarg);
			break;
		case 'H':
			hot_only = 1;
			break;
		default:
			goto usage;
		}
	}
	if (optind >= argc || reps == 0 || ms == 0)
		goto usage;
	bench_pin(cpu);
	if (!hot_only)
		map_pair(arena, &cold_src, &cold_dst);
	for (int i = optind; i < argc; i++) {
		size_t size = bench_parse_size(argv[i]);
		/* Cold steps by the size rounded up to a page, so no two copies share lines. */
		size_t stride = (size + 4095) & ~(size_t)4095;

		map_pair(stride, &src, &dst);
		bench_emit("memcpy_hot", size, "bw", median_rate(dst, src, size, 0, size, ms, reps),
			   "MiB/s");
		unmap_pair(stride, src, dst);
		if (hot_only)
			continue;
		if (size > arena / 4) {
			fprintf(stderr, "memcpy_bw: size %zu too large for the arena\n", size);
			return 2;
		}
		bench_emit("memcpy_cold", size, "bw",
			   median_rate(cold_dst, cold_src, size, stride, arena, ms, reps), "MiB/s");
	}
	return 0;
usage:
	fprintf(stderr, "usage: %s [-c CPU] [-t MS] [-r REPS] [-A ARENA] [-H] SIZE...\n", argv[0]);
	return 2;
}
