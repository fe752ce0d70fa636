// SPDX-License-Identifier: MIT
/*
 * Moving registered pages into the region and back.
 *
 * A span is a page-aligned range of the application's address space whose
 * bytes live in region chunks, mapped over the same addresses (MAP_FIXED on
 * the region's fd): the application keeps its pointers, peers reach the
 * bytes through the region. Spans of one context never overlap: a
 * registration that partly overlaps moved spans moves their union once
 * more and re-points the MRs of the spans it replaces. Spans are counted
 * by the MRs using them; the last one out puts private pages back.
 * Other threads' stores to a moving span wait for the move to end
 * (page_freeze.c): the span holds whatever the heap put around the buffer.
 *
 * All under ctx->mr_lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"

struct ivrdma_span {
	uintptr_t start, end;
	uint32_t first_chunk, nr_chunks;
	uint32_t refs;
	struct ivrdma_span *next;
};

uint64_t ivrdma_span_offset(const struct ivrdma_context *ctx, const struct ivrdma_span *span,
			    uintptr_t addr)
{
	return ivrdma_chunk_offset(&ctx->region, span->first_chunk) + (addr - span->start);
}

static bool mine(const struct ivrdma_context *ctx, uintptr_t s, uintptr_t e)
{
	for (const struct ivrdma_span *p = ctx->spans; p; p = p->next)
		if (p->start <= s && e <= p->end)
			return true;
	return false;
}

/*
 * Only private anonymous read-write memory may be moved: file mappings,
 * hugetlb, the stack and shared memory would change meaning. My own spans
 * (shared mappings of the region) count as movable: they are merged.
 */
static bool movable_line(const char *line, uintptr_t *lo, uintptr_t *hi)
{
	char perms[8] = "", path[256] = "";
	unsigned long a, b, off, ino;
	unsigned int maj, min;
	int n = sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %255s", &a, &b, perms, &off, &maj, &min,
		       &ino, path);

	if (n < 7)
		return false;
	*lo = a;
	*hi = b;
	if (perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p' || ino != 0)
		return false;
	return n == 7 || !strcmp(path, "[heap]") || !strncmp(path, "[anon:", 6);
}

static int check_movable(struct ivrdma_context *ctx, uintptr_t start, uintptr_t end)
{
	FILE *f = fopen("/proc/self/maps", "re");
	uintptr_t covered = start;
	char line[512];
	int rc = EFAULT; /* a hole: not mapped at all */

	if (!f)
		return errno;
	while (covered < end && fgets(line, sizeof(line), f)) {
		uintptr_t lo = 0, hi = 0, s, e;
		bool ok = movable_line(line, &lo, &hi);

		if (!strchr(line, '\n')) { /* a long path: skip the rest of the line */
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
		}
		if (hi <= covered || lo >= end || hi == 0)
			continue;
		if (lo > covered)
			break;
		s = covered;
		e = hi < end ? hi : end;
		if (!ok && !mine(ctx, s, e)) {
			rc = EINVAL;
			break;
		}
		covered = e;
	}
	fclose(f);
	return covered >= end ? 0 : rc;
}

/*
 * Whole pages are moved, including bytes around the registered buffer
 * that AddressSanitizer (rightly) poisons for the application: copy them
 * word by word, uninstrumented and never turned into an intercepted memcpy.
 */
__attribute__((no_sanitize_address, optimize("no-tree-loop-distribute-patterns"))) static void
copy_pages(uint64_t *dst, const uint64_t *src, uint64_t len)
{
	for (uint64_t i = 0; i < len / sizeof(uint64_t); i++)
		dst[i] = src[i];
}

/* Copies [start, end) into new chunks and maps them over the same addresses. */
static int move_in(struct ivrdma_context *ctx, struct ivrdma_span *sp)
{
	const struct ivrdma_region *r = &ctx->region;
	uint64_t len = sp->end - sp->start;
	uint8_t *dst = ivrdma_ring_alloc(ctx, len, &sp->first_chunk, &sp->nr_chunks);
	bool frozen;
	int rc;

	if (!dst)
		return ENOSPC;
	frozen = ivrdma_pages_freeze(ctx, sp->start, sp->end, true);
	copy_pages((uint64_t *)dst, (const uint64_t *)sp->start, len);
	rc = ivt_map_at(ctx->transport, (void *)sp->start, ivrdma_chunk_offset(r, sp->first_chunk),
			len, PROT_READ | PROT_WRITE);
	if (frozen)
		ivrdma_pages_thaw(ctx, sp->start, sp->end, rc == 0);
	if (rc) {
		ivrdma_ring_free(ctx, sp->first_chunk, sp->nr_chunks);
		return -rc;
	}
	return 0;
}

/*
 * Private pages back, with the bytes the region holds now. The pages are
 * filled aside and swapped in by mremap in one step: the span may share
 * its pages with live heap data (even this context), which must never see
 * a zeroed page.
 */
static void move_out(struct ivrdma_context *ctx, struct ivrdma_span *sp)
{
	uint64_t len = sp->end - sp->start;
	const void *src = ivrdma_chunk_ptr(&ctx->region, sp->first_chunk);
	void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool frozen, moved;

	if (tmp == MAP_FAILED) {
		/* Keep the region pages mapped: correct, only not private again. */
		ivrdma_dbg("cannot restore private pages at %#lx: %m", (unsigned long)sp->start);
		return;
	}
	frozen = ivrdma_pages_freeze(ctx, sp->start, sp->end, false);
	memcpy(tmp, src, len);
	moved =
	    mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)sp->start) != MAP_FAILED;
	if (frozen)
		ivrdma_pages_thaw(ctx, sp->start, sp->end, moved);
	if (!moved) {
		ivrdma_dbg("cannot restore private pages at %#lx: %m", (unsigned long)sp->start);
		munmap(tmp, len);
		return;
	}
	ivrdma_ring_free(ctx, sp->first_chunk, sp->nr_chunks);
}

static void unlink_span(struct ivrdma_context *ctx, struct ivrdma_span *sp)
{
	for (struct ivrdma_span **pp = &ctx->spans; *pp; pp = &(*pp)->next)
		if (*pp == sp) {
			*pp = sp->next;
			return;
		}
}

/* The MRs of the spans 'nsp' replaced now live in it. */
static void repoint_mrs(struct ivrdma_context *ctx, struct ivrdma_span *nsp, uintptr_t start,
			uintptr_t end)
{
	for (struct ivrdma_mr *mr = ctx->mrs; mr; mr = mr->next) {
		uintptr_t a = (uintptr_t)mr->vmr.ibv_mr.addr;

		if (!mr->span || mr->span == nsp || mr->span->start < start || mr->span->end > end)
			continue;
		mr->span = nsp;
		__atomic_store_n(&mr->s->region_offset, ivrdma_span_offset(ctx, nsp, a),
				 __ATOMIC_RELEASE);
	}
}

int ivrdma_span_get(struct ivrdma_context *ctx, uintptr_t start, uintptr_t end,
		    struct ivrdma_span **out)
{
	struct ivrdma_span *sp, *nsp;
	uint32_t refs = 1;
	int rc;

	for (sp = ctx->spans; sp; sp = sp->next)
		if (sp->start <= start && end <= sp->end) {
			sp->refs++;
			*out = sp;
			return 0;
		}
	/* Grow to the union with every span it touches. */
	for (sp = ctx->spans; sp; sp = sp->next)
		if (sp->start < end && start < sp->end) {
			start = sp->start < start ? sp->start : start;
			end = sp->end > end ? sp->end : end;
		}
	rc = check_movable(ctx, start, end);
	if (rc)
		return rc;
	nsp = calloc(1, sizeof(*nsp));
	if (!nsp)
		return ENOMEM;
	nsp->start = start;
	nsp->end = end;
	rc = move_in(ctx, nsp);
	if (rc) {
		free(nsp);
		return rc;
	}
	repoint_mrs(ctx, nsp, start, end); /* before the spans they used are freed */
	for (sp = ctx->spans; sp;) {
		struct ivrdma_span *next = sp->next;

		if (sp->start >= start && sp->end <= end) {
			refs += sp->refs;
			ivrdma_ring_free(ctx, sp->first_chunk, sp->nr_chunks);
			unlink_span(ctx, sp);
			free(sp);
		}
		sp = next;
	}
	nsp->refs = refs;
	nsp->next = ctx->spans;
	ctx->spans = nsp;
	*out = nsp;
	return 0;
}

void ivrdma_span_put(struct ivrdma_context *ctx, struct ivrdma_span *sp)
{
	if (--sp->refs)
		return;
	unlink_span(ctx, sp);
	move_out(ctx, sp);
	free(sp);
}
