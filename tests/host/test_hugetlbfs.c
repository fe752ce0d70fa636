// SPDX-License-Identifier: MIT
/*
 * The region on hugetlbfs instead of POSIX shm: ivrdmad creates and formats
 * the file, two host peers share its bytes, and the file is gone after a
 * clean stop. Needs root (huge pages, mount); skips (77) otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "ivshmem_transport.h"
#include "region.h"

#define SKIP 77

static char mnt[] = "/tmp/ivrdma-huge.XXXXXX";
static long saved_pages = -1;
static bool mounted;

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fprintf(f, "%ld\n", v) > 0;

	return f ? (fclose(f) == 0 && ok) : false;
}

static void restore(void)
{
	if (mounted)
		umount(mnt);
	rmdir(mnt);
	if (saved_pages >= 0)
		write_long("/proc/sys/vm/nr_hugepages", saved_pages);
}

/* 20 free 2 MiB pages and a private hugetlbfs mount, or a reason to skip. */
static int prepare(void)
{
	const char *pages = "/proc/sys/vm/nr_hugepages";

	if (geteuid() != 0) {
		puts("skip: needs root for huge pages");
		return SKIP;
	}
	saved_pages = read_long(pages);
	atexit(restore);
	if (saved_pages < 0 || !write_long(pages, saved_pages + 20) ||
	    read_long(pages) < saved_pages + 20) {
		puts("skip: cannot reserve huge pages");
		return SKIP;
	}
	if (!mkdtemp(mnt) || mount("none", mnt, "hugetlbfs", 0, "pagesize=2M") != 0) {
		printf("skip: no hugetlbfs: %s\n", strerror(errno));
		return SKIP;
	}
	mounted = true;
	return 0;
}

static struct ivt *attach(const struct test_daemon *d)
{
	struct ivt_options o = {.backend = IVT_BACKEND_HOST, .path = d->host_sock};
	struct ivt *t = NULL;
	char err[256];

	REQUIRE(ivt_attach(&o, &t, err, sizeof(err)) == 0, "attach: %s", err);
	return t;
}

int main(void)
{
	const char *extra[] = {"--hugetlbfs", mnt, "--size", "32M", "--chunk-size", "2M", NULL};
	struct test_daemon d;
	struct ivrdma_region r1, r2;
	struct ivt *a, *b;
	const char *why;
	char file[64];
	struct stat st;
	int64_t chunk;
	uint8_t *pa, *pb;
	int rc = prepare();

	if (rc)
		return rc;
	test_watchdog(60);
	REQUIRE(test_daemon_start(&d, 0, extra) == 0, "ivrdmad on hugetlbfs starts");
	snprintf(file, sizeof(file), "%s/ivrdma-region", mnt);
	CHECK(stat(file, &st) == 0 && st.st_size == 32 << 20, "region file of 32 MiB");
	a = attach(&d);
	b = attach(&d);
	REQUIRE(ivrdma_region_open(&r1, ivt_region_base(a), ivt_region_size(a), &why) == 0, "%s",
		why);
	REQUIRE(ivrdma_region_open(&r2, ivt_region_base(b), ivt_region_size(b), &why) == 0, "%s",
		why);
	CHECK(r1.chunk_shift == 21 && r1.nr_chunks > 0, "2 MiB chunks: shift %u", r1.chunk_shift);
	chunk = ivrdma_chunk_alloc(&r1, 1, ivrdma_owner_tag((uint16_t)ivt_peer_id(a), 1), 0);
	REQUIRE(chunk >= 0, "chunk");
	pa = ivrdma_chunk_ptr(&r1, (uint32_t)chunk);
	pb = ivrdma_chunk_ptr(&r2, (uint32_t)chunk);
	for (uint32_t i = 0; i < (2u << 20); i++)
		pa[i] = (uint8_t)(i * 131 + 7);
	rc = 0;
	for (uint32_t i = 0; i < (2u << 20) && !rc; i++)
		rc = pb[i] != (uint8_t)(i * 131 + 7);
	CHECK(rc == 0, "the other peer reads the same bytes");
	ivt_detach(a);
	ivt_detach(b);
	CHECK(test_daemon_stop(&d), "clean stop");
	CHECK(stat(file, &st) < 0, "region file removed at stop");
	return check_summary();
}
