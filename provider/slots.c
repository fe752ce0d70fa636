// SPDX-License-Identifier: MIT
/*
 * Object slots and ring chunks held by this context.
 *
 * A slot is claimed by compare-and-swap of its owner tag, so contexts in
 * different processes and VMs allocate from the same table without a lock;
 * ivrdmad frees whatever a dead peer's tag still holds.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ivrdma.h"
#include "shm_atomic.h"

/* Which of the region's tables t is, for a message. */
static const char *table_name(const struct ivrdma_region *r, const struct ivrdma_table *t)
{
	if (t == &r->qps)
		return "QP";
	if (t == &r->cqs)
		return "CQ";
	if (t == &r->srqs)
		return "SRQ";
	if (t == &r->mrs)
		return "MR (or memory window)";
	return "object";
}

int64_t ivrdma_slot_alloc(struct ivrdma_context *ctx, const struct ivrdma_table *t)
{
	/* Start where my peer ID points, so peers rarely collide. */
	uint32_t n = t->entries, start = (uint32_t)ctx->peer_id * 16u % n;

	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (start + k) % n;
		struct ivrdma_obj_hdr *h = ivrdma_table_entry(&ctx->region, t, i);
		uint32_t expected = 0;

		if (shm_load_relaxed32(&h->owner) != 0 ||
		    !shm_cas32(&h->owner, &expected, ctx->owner_tag))
			continue;
		memset((uint8_t *)h + sizeof(*h), 0, t->entry_size - sizeof(*h));
		shm_store_release32(&h->seq, shm_load_relaxed32(&h->seq) + 1);
		return i;
	}
	/* The tables grow with the region: ivrdmad --size (ivrdma status shows both). */
	ivrdma_dbg("no free %s slot: all %u of the region are taken (a larger region, "
		   "ivrdmad --size, has more)",
		   table_name(&ctx->region, t), n);
	return -ENOSPC;
}

void ivrdma_slot_free(struct ivrdma_context *ctx, const struct ivrdma_table *t, uint32_t idx)
{
	struct ivrdma_obj_hdr *h = ivrdma_table_entry(&ctx->region, t, idx);
	uint32_t expected = ctx->owner_tag;

	if (!h)
		return;
	/* Readers check the seq: bump it before the payload goes. */
	shm_store_release32(&h->seq, shm_load_relaxed32(&h->seq) + 1);
	memset((uint8_t *)h + sizeof(*h), 0, t->entry_size - sizeof(*h));
	shm_cas32(&h->owner, &expected, 0);
}

/* A run of chunks for 'bytes', its contents as the last owner left them. */
static void *chunks_alloc(struct ivrdma_context *ctx, uint64_t bytes, uint32_t *first,
			  uint32_t *count)
{
	const struct ivrdma_region *r = &ctx->region;
	uint64_t n = (bytes + ivrdma_chunk_size(r) - 1) >> r->chunk_shift;
	int64_t idx;

	idx = n == 0 || n > r->nr_chunks ? -1
					 : ivrdma_chunk_alloc(r, (uint32_t)n, ctx->owner_tag,
							      (uint32_t)ctx->peer_id * 64u);
	if (idx < 0) {
		ivrdma_dbg("region full: no run of %llu free chunks of %llu bytes for a queue, "
			   "registered pages or device memory (ivrdma status shows the region's "
			   "use; ivrdmad --size makes it larger)",
			   (unsigned long long)n, (unsigned long long)ivrdma_chunk_size(r));
		return ivrdma_fail_null(ENOMEM);
	}
	*first = (uint32_t)idx;
	*count = (uint32_t)n;
	return ivrdma_chunk_ptr(r, *first);
}

void *ivrdma_ring_alloc(struct ivrdma_context *ctx, uint64_t bytes, uint32_t *first,
			uint32_t *count)
{
	void *p = chunks_alloc(ctx, bytes, first, count);

	if (p)
		shm_zero_words_relaxed(p, ((uint64_t)*count << ctx->region.chunk_shift) / 8);
	return p;
}

/*
 * Chunks for registered pages the caller copies in whole: only what lies
 * past 'bytes' in the last chunk is zeroed here. Zeroing the rest first
 * would touch every page twice, and a registration of a GiB pays for each
 * first touch of a shared page (page faults) once already.
 */
void *ivrdma_pages_alloc(struct ivrdma_context *ctx, uint64_t bytes, uint32_t *first,
			 uint32_t *count)
{
	uint8_t *p = chunks_alloc(ctx, bytes, first, count);
	uint64_t end = (uint64_t)*count << ctx->region.chunk_shift;

	if (p && end > bytes)
		memset(p + bytes, 0, end - bytes);
	return p;
}

void ivrdma_ring_free(struct ivrdma_context *ctx, uint32_t first, uint32_t count)
{
	if (count)
		ivrdma_chunk_free(&ctx->region, first, count, ctx->owner_tag);
}

uint64_t ivrdma_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
