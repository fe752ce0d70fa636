/* SPDX-License-Identifier: MIT */
/*
 * What a region holds, read from its file by a test that watches ivrdmad
 * reclaim (test_kill_trials.c, test_soak.c): chunks and slots in use.
 */
#ifndef IVRDMA_REGION_USAGE_H
#define IVRDMA_REGION_USAGE_H

#include <fcntl.h>
#include <sys/stat.h>

#include "check.h"
#include "region.h"

struct region_usage {
	uint32_t chunks, qps, cqs, srqs, mrs, ctxs;
};

static inline uint32_t region_slots_used(const struct ivrdma_region *r,
					 const struct ivrdma_table *t)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < t->entries; i++) {
		const struct ivrdma_obj_hdr *h = ivrdma_table_entry(r, t, i);

		n += h && __atomic_load_n(&h->owner, __ATOMIC_ACQUIRE) != 0;
	}
	return n;
}

/* What the region in file 'path' holds now. */
static inline struct region_usage region_usage(const char *path)
{
	struct ivrdma_region r;
	struct region_usage u;
	const char *why;
	struct stat st;
	void *base;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	REQUIRE(fd >= 0 && fstat(fd, &st) == 0, "open %s: %s", path, strerror(errno));
	base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	REQUIRE(base != MAP_FAILED, "mmap %s", path);
	REQUIRE(ivrdma_region_open(&r, base, (uint64_t)st.st_size, &why) == 0, "region: %s", why);
	u = (struct region_usage){ivrdma_chunks_in_use(&r),	 region_slots_used(&r, &r.qps),
				  region_slots_used(&r, &r.cqs), region_slots_used(&r, &r.srqs),
				  region_slots_used(&r, &r.mrs), region_slots_used(&r, &r.ctxs)};
	munmap(base, (size_t)st.st_size);
	close(fd);
	return u;
}

static inline void region_usage_print(const char *what, const struct region_usage *u)
{
	printf("%s: %u chunks, %u QPs, %u CQs, %u SRQs, %u MRs, %u contexts in use\n", what,
	       u->chunks, u->qps, u->cqs, u->srqs, u->mrs, u->ctxs);
}

#endif
