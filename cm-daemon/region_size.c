// SPDX-License-Identifier: MIT
/*
 * --size auto (the default): the region is sized for what users register.
 *
 * A shm object or a file costs nothing until its pages are touched, so a
 * large region is free while it is unused; what it must not do is promise
 * more than the machine can give, because a process that touches a page
 * tmpfs cannot back dies of SIGBUS. So: the largest power of two (a PCI BAR
 * is one) that is at most half the RAM and at most half of what the backing
 * file system has free, within the bounds any region has.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "daemon.h"
#include "region_size.h"

static uint64_t pow2_floor(uint64_t v)
{
	return v ? 1ull << (63 - __builtin_clzll(v)) : 0;
}

static uint64_t ram_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

	return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

/* The directory whose file system backs the region. */
static const char *backing_dir(const struct daemon_config *cfg)
{
	return cfg->hugetlbfs ? cfg->hugetlbfs : "/dev/shm";
}

static uint64_t mib(uint64_t v)
{
	return v >> 20;
}

int region_size_auto(const struct daemon_config *cfg, uint64_t *size, char *why, size_t len)
{
	const char *dir = backing_dir(cfg);
	uint64_t ram = ram_bytes(), avail, limit, v;
	struct statvfs st;

	if (statvfs(dir, &st) < 0) {
		int rc = -errno;

		snprintf(why, len, "--size auto: cannot read the free space of %s", dir);
		return rc;
	}
	avail = (uint64_t)st.f_bavail * st.f_frsize;
	limit = ram && ram / 2 < avail / 2 ? ram / 2 : avail / 2;
	v = pow2_floor(limit);
	if (v > IVRDMA_MAX_REGION_SIZE)
		v = IVRDMA_MAX_REGION_SIZE;
	if (v < IVRDMA_MIN_REGION_SIZE) {
		snprintf(why, len,
			 "--size auto: %s has %llu MiB free and the machine %llu MiB of RAM; "
			 "a region needs at least %llu MiB (half of either)",
			 dir, (unsigned long long)mib(avail), (unsigned long long)mib(ram),
			 (unsigned long long)mib(2 * IVRDMA_MIN_REGION_SIZE));
		return -ENOSPC;
	}
	*size = v;
	snprintf(why, len, "auto: at most half of %llu MiB RAM and of %llu MiB free in %s",
		 (unsigned long long)mib(ram), (unsigned long long)mib(avail), dir);
	return 0;
}
