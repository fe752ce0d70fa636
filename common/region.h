/* SPDX-License-Identifier: MIT */
/*
 * A validated view of a mapped region.
 *
 * ivrdma_region_open() checks the header once and keeps private copies of
 * every size and offset: a participant that later scribbles over the
 * header cannot make anyone index outside the region. Accessors take
 * indices and return NULL when an index is out of range.
 */
#ifndef IVRDMA_REGION_H
#define IVRDMA_REGION_H

#include <stdint.h>
#include "ivrdma_layout.h"

struct ivrdma_region {
	uint8_t *base;
	uint64_t size;
	uint64_t region_id;
	uint32_t nr_vectors;
	uint32_t max_peers;
	struct ivrdma_table nodes, peers, qps, cqs, srqs, mrs, ctxs, listeners, mcast, chunk_tags;
	uint64_t chunk_area_offset;
	uint32_t chunk_shift;
	uint32_t nr_chunks;
	uint32_t host_node;
};

/* Returns 0, or -EPROTO / -EINVAL with *why set to a static message. */
int ivrdma_region_open(struct ivrdma_region *r, void *base, uint64_t size, const char **why);

static inline struct ivrdma_region_header *ivrdma_region_header(const struct ivrdma_region *r)
{
	return (struct ivrdma_region_header *)r->base;
}

/* Entry 'idx' of table t, or NULL if idx is out of range (inline: every verb looks up slots). */
static inline void *ivrdma_table_entry(const struct ivrdma_region *r, const struct ivrdma_table *t,
				       uint32_t idx)
{
	if (idx >= t->entries)
		return NULL;
	return r->base + t->offset + (uint64_t)idx * t->entry_size;
}

static inline struct ivrdma_node *ivrdma_region_node(const struct ivrdma_region *r, uint32_t idx)
{
	return ivrdma_table_entry(r, &r->nodes, idx);
}

static inline struct ivrdma_peer *ivrdma_region_peer(const struct ivrdma_region *r, uint32_t idx)
{
	return ivrdma_table_entry(r, &r->peers, idx);
}

/* Bytes of chunk 'idx', or NULL if idx is out of range. */
static inline void *ivrdma_chunk_ptr(const struct ivrdma_region *r, uint32_t idx)
{
	if (idx >= r->nr_chunks)
		return NULL;
	return r->base + r->chunk_area_offset + ((uint64_t)idx << r->chunk_shift);
}

/*
 * Bytes [offset, offset + len) of the chunk area, or NULL unless the whole
 * span lies inside it: how an offset read from a slot becomes a pointer.
 */
static inline void *ivrdma_chunk_span(const struct ivrdma_region *r, uint64_t offset, uint64_t len)
{
	uint64_t end = r->chunk_area_offset + ((uint64_t)r->nr_chunks << r->chunk_shift);

	if (offset < r->chunk_area_offset || offset > end || len > end - offset)
		return NULL;
	return r->base + offset;
}

/* Region offset of chunk 'idx' (no range check: idx comes from the allocator). */
static inline uint64_t ivrdma_chunk_offset(const struct ivrdma_region *r, uint32_t idx)
{
	return r->chunk_area_offset + ((uint64_t)idx << r->chunk_shift);
}

static inline uint64_t ivrdma_chunk_size(const struct ivrdma_region *r)
{
	return 1ull << r->chunk_shift;
}

/*
 * The chunk allocator: 'count' contiguous chunks claimed lock-free by
 * compare-and-swap of their owner tags. Returns the first index, or
 * -ENOSPC. 'hint' spreads concurrent allocators over the area.
 */
int64_t ivrdma_chunk_alloc(const struct ivrdma_region *r, uint32_t count, uint32_t owner_tag,
			   uint32_t hint);
/* Claims exactly chunks [first, first + count), all or none: 0, -EBUSY or -EINVAL. */
int ivrdma_chunk_claim(const struct ivrdma_region *r, uint32_t first, uint32_t count,
		       uint32_t owner_tag);
/* Frees chunks still tagged 'owner_tag'; returns how many it freed. */
uint32_t ivrdma_chunk_free(const struct ivrdma_region *r, uint32_t first, uint32_t count,
			   uint32_t owner_tag);
/* Hands chunks tagged 'from' to 'to'; returns how many it moved. */
uint32_t ivrdma_chunk_retag(const struct ivrdma_region *r, uint32_t first, uint32_t count,
			    uint32_t from, uint32_t to);
uint32_t ivrdma_chunks_in_use(const struct ivrdma_region *r);

/*
 * Reclaims everything 'g' held (chunks and object slots): a peer's,
 * whatever its generation, with its contexts' and their records; or one
 * context's (its record stays: ivrdmad frees it). Only the daemon calls
 * this, once what it reclaims is gone.
 */
struct ivrdma_gone;
struct ivrdma_reclaim_count {
	uint32_t chunks, qps, cqs, srqs, mrs, ctxs, listeners, mcast;
};
void ivrdma_region_reclaim(const struct ivrdma_region *r, const struct ivrdma_gone *g,
			   struct ivrdma_reclaim_count *count);

#endif /* IVRDMA_REGION_H */
