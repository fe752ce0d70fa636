// SPDX-License-Identifier: MIT
/*
 * The region's validation (common/region.c) fed a fuzzed image: whatever
 * the header says, a region that opens must keep every table, chunk and
 * span inside the mapping, and the chunk allocator and the daemon's
 * reclaim must stay inside their tables. Input: see fuzz_image.h.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_image.h"
#include "owner_tag.h"
#include "transport_internal.h"

/* A pointer the view handed out must lie in the region, past the header. */
static void inside(const struct ivrdma_region *r, const void *p, uint64_t len)
{
	const uint8_t *b = p;

	if (!p)
		return;
	if (b < r->base + IVRDMA_HEADER_SIZE || len > r->size ||
	    (uint64_t)(b - r->base) > r->size - len)
		abort();
	if (len) /* ASan checks the bytes themselves */
		__atomic_load_n(b + len - 1, __ATOMIC_RELAXED);
}

static void check_table(const struct ivrdma_region *r, const struct ivrdma_table *t)
{
	inside(r, ivrdma_table_entry(r, t, 0), t->entry_size);
	inside(r, ivrdma_table_entry(r, t, t->entries - 1), t->entry_size);
	if (ivrdma_table_entry(r, t, t->entries))
		abort();
}

static void check_view(const struct ivrdma_region *r, const struct fuzz_params *p)
{
	const struct ivrdma_table *t[] = {&r->nodes, &r->peers,	    &r->qps,  &r->cqs,
					  &r->srqs,  &r->mrs,	    &r->ctxs, &r->listeners,
					  &r->mcast, &r->chunk_tags};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		check_table(r, t[i]);
	inside(r, ivrdma_chunk_ptr(r, r->nr_chunks - 1), ivrdma_chunk_size(r));
	if (ivrdma_chunk_ptr(r, r->nr_chunks))
		abort();
	inside(r, ivrdma_chunk_span(r, p->laddr, p->len), p->len);
}

/* The allocator as a participant uses it. */
static void use_chunks(const struct ivrdma_region *r, const struct fuzz_params *p)
{
	uint32_t tag = ivrdma_owner_tag(p->peer, p->gen);
	int64_t got;

	got = ivrdma_chunk_alloc(r, p->count, tag, p->hint);
	if (got >= 0 && ivrdma_chunk_free(r, (uint32_t)got, p->count, tag) != p->count)
		abort(); /* what it allocated was mine, all of it */
	if (ivrdma_chunk_claim(r, p->first, p->count, tag) == 0)
		ivrdma_chunk_retag(r, p->first, p->count, tag, tag + 1);
	(void)ivrdma_chunks_in_use(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ivrdma_region r;
	struct fuzz_params p;
	struct ivrdma_reclaim_count got;
	struct ivrdma_region again;
	const char *why;
	unsigned int vectors;
	char err[128];

	if (fuzz_image_load(&r, &p, data, size) != 0)
		return 0;
	/* The transport's look agrees with a fresh open (patches may change the header). */
	if (ivrdma_region_open(&again, r.base, FUZZ_IMAGE_SIZE, &why) !=
	    ivt_read_nr_vectors(r.base, FUZZ_IMAGE_SIZE, &vectors, err, sizeof(err)))
		abort();
	check_view(&r, &p);
	use_chunks(&r, &p);
	/* A context's reclaim (its record and holder as the image says), then its peer's. */
	ivrdma_region_reclaim(
	    &r, &(struct ivrdma_gone){.peer = -1, .context_tag = ivrdma_context_tag(p.cq, p.gen)},
	    &got);
	ivrdma_region_reclaim(&r, &(struct ivrdma_gone){.peer = p.peer}, &got);
	return 0;
}
