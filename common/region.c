// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "owner_tag.h"
#include "region.h"
#include "shm_atomic.h"

struct span {
	uint64_t start, end;
};

static bool table_span(const struct ivrdma_table *t, uint32_t entry_size, uint64_t region_size,
		       struct span *out)
{
	uint64_t bytes = (uint64_t)t->entries * t->entry_size;

	if (t->entry_size != entry_size || t->entries == 0)
		return false;
	if (t->offset < IVRDMA_HEADER_SIZE || t->offset > region_size ||
	    bytes > region_size - t->offset)
		return false;
	if (t->offset % 8)
		return false;
	out->start = t->offset;
	out->end = t->offset + bytes;
	return true;
}

static bool spans_disjoint(const struct span *s, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (s[i].start < s[j].end && s[j].start < s[i].end)
				return false;
	return true;
}

static int check_tables(struct ivrdma_region *r, const char **why)
{
	struct span s[11];

	if (!table_span(&r->nodes, sizeof(struct ivrdma_node), r->size, &s[0]) ||
	    !table_span(&r->peers, sizeof(struct ivrdma_peer), r->size, &s[1]) ||
	    !table_span(&r->qps, IVRDMA_QP_SLOT_SIZE, r->size, &s[2]) ||
	    !table_span(&r->cqs, IVRDMA_CQ_SLOT_SIZE, r->size, &s[3]) ||
	    !table_span(&r->srqs, IVRDMA_SRQ_SLOT_SIZE, r->size, &s[4]) ||
	    !table_span(&r->mrs, IVRDMA_MR_SLOT_SIZE, r->size, &s[5]) ||
	    !table_span(&r->chunk_tags, sizeof(uint32_t), r->size, &s[6]) ||
	    !table_span(&r->ctxs, IVRDMA_CTX_SLOT_SIZE, r->size, &s[8]) ||
	    !table_span(&r->listeners, sizeof(struct ivrdma_listener), r->size, &s[9]) ||
	    !table_span(&r->mcast, sizeof(struct ivrdma_mcast_member), r->size, &s[10])) {
		*why = "a table lies outside the region or has a wrong entry size";
		return -EPROTO;
	}
	if (r->nodes.entries > IVRDMA_MAX_NODES || r->qps.entries > IVRDMA_MAX_QPS ||
	    r->ctxs.entries >= IVRDMA_TAG_CONTEXT || /* a context tag holds index + 1 in 15 bits */
	    r->peers.entries != r->max_peers || r->chunk_tags.entries != r->nr_chunks ||
	    r->host_node >= r->nodes.entries) {
		*why = "table sizes disagree with the header";
		return -EPROTO;
	}
	if (r->chunk_shift < IVRDMA_MIN_CHUNK_SHIFT || r->chunk_shift > IVRDMA_MAX_CHUNK_SHIFT ||
	    r->chunk_area_offset & ((1ull << r->chunk_shift) - 1) ||
	    r->chunk_area_offset > r->size ||
	    (uint64_t)r->nr_chunks > (r->size - r->chunk_area_offset) >> r->chunk_shift) {
		*why = "the chunk area lies outside the region or is misaligned";
		return -EPROTO;
	}
	s[7].start = r->chunk_area_offset;
	s[7].end = r->chunk_area_offset + ((uint64_t)r->nr_chunks << r->chunk_shift);
	if (!spans_disjoint(s, 11)) {
		*why = "tables overlap";
		return -EPROTO;
	}
	return 0;
}

int ivrdma_region_open(struct ivrdma_region *r, void *base, uint64_t size, const char **why)
{
	struct ivrdma_region_header h;

	memset(r, 0, sizeof(*r));
	if (!base || size < IVRDMA_MIN_REGION_SIZE) {
		*why = "region smaller than the minimum";
		return -EINVAL;
	}
	/* One private copy; everything after this reads the copy only. */
	memcpy(&h, base, sizeof(h));
	if (h.magic != IVRDMA_MAGIC) {
		*why = "no ivrdma region here (bad magic)";
		return -EPROTO;
	}
	if (h.layout_version != IVRDMA_LAYOUT_VERSION || h.header_size != IVRDMA_HEADER_SIZE) {
		*why = "region layout version not supported";
		return -EPROTO;
	}
	if (h.region_size < IVRDMA_MIN_REGION_SIZE || h.region_size > size) {
		*why = "region size in the header exceeds the mapping";
		return -EPROTO;
	}
	if (h.nr_vectors == 0 || h.nr_vectors > IVRDMA_MAX_VECTORS || h.max_peers == 0 ||
	    h.max_peers > IVRDMA_MAX_PEERS) {
		*why = "vector or peer limits out of range";
		return -EPROTO;
	}
	r->base = base;
	r->size = h.region_size;
	r->region_id = h.region_id;
	r->nr_vectors = h.nr_vectors;
	r->max_peers = h.max_peers;
	r->nodes = h.nodes;
	r->peers = h.peers;
	r->qps = h.qps;
	r->cqs = h.cqs;
	r->srqs = h.srqs;
	r->mrs = h.mrs;
	r->ctxs = h.ctxs;
	r->listeners = h.listeners;
	r->mcast = h.mcast;
	r->chunk_tags = h.chunk_tags;
	r->chunk_area_offset = h.chunk_area_offset;
	r->chunk_shift = h.chunk_shift;
	r->nr_chunks = h.nr_chunks;
	r->host_node = h.host_node;
	return check_tables(r, why);
}

static uint32_t *chunk_tags(const struct ivrdma_region *r)
{
	return (uint32_t *)(r->base + r->chunk_tags.offset);
}

/* Claims [first, first + count); on a lost race releases what it took. */
static bool claim_run(uint32_t *tags, uint32_t first, uint32_t count, uint32_t tag,
		      uint32_t *busy_at)
{
	for (uint32_t i = 0; i < count; i++) {
		uint32_t expected = 0;

		if (!shm_cas32(&tags[first + i], &expected, tag)) {
			*busy_at = first + i;
			while (i--)
				shm_store_release32(&tags[first + i], 0);
			return false;
		}
	}
	return true;
}

int ivrdma_chunk_claim(const struct ivrdma_region *r, uint32_t first, uint32_t count,
		       uint32_t owner_tag)
{
	uint32_t busy;

	if (count == 0 || first >= r->nr_chunks || count > r->nr_chunks - first || owner_tag == 0)
		return -EINVAL;
	return claim_run(chunk_tags(r), first, count, owner_tag, &busy) ? 0 : -EBUSY;
}

int64_t ivrdma_chunk_alloc(const struct ivrdma_region *r, uint32_t count, uint32_t owner_tag,
			   uint32_t hint)
{
	uint32_t *tags = chunk_tags(r);
	uint32_t n = r->nr_chunks;

	if (count == 0 || count > n || owner_tag == 0)
		return -EINVAL;
	/* Two passes: from the hint to the end, then from the start. */
	for (int pass = 0; pass < 2; pass++) {
		uint32_t start = pass == 0 ? hint % n : 0;
		uint32_t stop = pass == 0 ? n : hint % n + count;

		if (stop > n)
			stop = n;
		for (uint32_t i = start; i + count <= stop;) {
			uint32_t run = 0, busy;

			while (run < count && shm_load_relaxed32(&tags[i + run]) == 0)
				run++;
			if (run < count) {
				i += run + 1;
				continue;
			}
			if (claim_run(tags, i, count, owner_tag, &busy))
				return i;
			i = busy + 1;
		}
	}
	return -ENOSPC;
}

uint32_t ivrdma_chunk_free(const struct ivrdma_region *r, uint32_t first, uint32_t count,
			   uint32_t owner_tag)
{
	uint32_t *tags = chunk_tags(r);
	uint32_t freed = 0;

	if (first >= r->nr_chunks || count > r->nr_chunks - first)
		return 0;
	for (uint32_t i = first; i < first + count; i++) {
		uint32_t expected = owner_tag;

		if (shm_cas32(&tags[i], &expected, 0))
			freed++;
	}
	return freed;
}

uint32_t ivrdma_chunk_retag(const struct ivrdma_region *r, uint32_t first, uint32_t count,
			    uint32_t from, uint32_t to)
{
	uint32_t *tags = chunk_tags(r);
	uint32_t moved = 0;

	if (first >= r->nr_chunks || count > r->nr_chunks - first || to == 0)
		return 0;
	for (uint32_t i = first; i < first + count; i++) {
		uint32_t expected = from;

		if (shm_cas32(&tags[i], &expected, to))
			moved++;
	}
	return moved;
}

uint32_t ivrdma_chunks_in_use(const struct ivrdma_region *r)
{
	uint32_t *tags = chunk_tags(r);
	uint32_t used = 0;

	for (uint32_t i = 0; i < r->nr_chunks; i++)
		used += shm_load_relaxed32(&tags[i]) != 0;
	return used;
}

static uint32_t reclaim_tags(const struct ivrdma_region *r, uint32_t *tag, uint32_t n,
			     size_t stride, const struct ivrdma_gone *g, size_t clear_bytes)
{
	uint32_t count = 0;

	for (uint32_t i = 0; i < n; i++, tag = (uint32_t *)((uint8_t *)tag + stride)) {
		uint32_t seen = shm_load_acquire32(tag);

		if (!ivrdma_tag_gone(r, seen, g))
			continue;
		/* Slots are wiped behind the tag, then the tag frees them. */
		if (clear_bytes > sizeof(struct ivrdma_obj_hdr))
			memset((uint8_t *)tag + sizeof(struct ivrdma_obj_hdr), 0,
			       clear_bytes - sizeof(struct ivrdma_obj_hdr));
		if (shm_cas32(tag, &seen, 0))
			count++;
	}
	return count;
}

static uint32_t reclaim_table(const struct ivrdma_region *r, const struct ivrdma_table *t,
			      const struct ivrdma_gone *g)
{
	return reclaim_tags(r, ivrdma_table_entry(r, t, 0), t->entries, t->entry_size, g,
			    t->entry_size);
}

void ivrdma_region_reclaim(const struct ivrdma_region *r, const struct ivrdma_gone *g,
			   struct ivrdma_reclaim_count *count)
{
	count->chunks = reclaim_tags(r, chunk_tags(r), r->nr_chunks, sizeof(uint32_t), g, 0);
	count->qps = reclaim_table(r, &r->qps, g);
	count->cqs = reclaim_table(r, &r->cqs, g);
	count->srqs = reclaim_table(r, &r->srqs, g);
	count->mrs = reclaim_table(r, &r->mrs, g);
	count->listeners = reclaim_table(r, &r->listeners, g);
	count->mcast = reclaim_table(r, &r->mcast, g);
	/* Last: the records say whose the context tags above are. */
	count->ctxs = g->peer >= 0 ? reclaim_table(r, &r->ctxs, g) : 0;
}
