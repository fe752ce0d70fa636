// SPDX-License-Identifier: MIT
/* Owner tags of peers and of contexts (owner_tag.h). */
#include "owner_tag.h"
#include "shm_atomic.h"

static_assert(IVRDMA_MAX_PEERS < IVRDMA_TAG_CONTEXT, "a peer's tag never looks like a context's");

static bool is_context(uint32_t tag)
{
	return tag & IVRDMA_TAG_CONTEXT;
}

/* A peer's tag: its peer ID. */
static int tag_peer_id(uint32_t tag)
{
	return (int)(tag & 0xffffu) - 1;
}

/* The record a context's tag names, while it is still that record's (held, same seq). */
static const struct ivrdma_ctx_slot *tag_record(const struct ivrdma_region *r, uint32_t tag,
						uint32_t *holder)
{
	uint32_t idx = (tag & (IVRDMA_TAG_CONTEXT - 1u)) - 1u;
	const struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, idx);

	if (!c)
		return NULL;
	*holder = shm_load_acquire32(&c->hdr.owner);
	/* A record is always held under a peer's tag: anything else is no record of ours. */
	if (!*holder || is_context(*holder) ||
	    (shm_load_acquire32(&c->hdr.seq) & 0xffffu) != tag >> 16)
		return NULL;
	return c;
}

int ivrdma_tag_peer(const struct ivrdma_region *r, uint32_t tag)
{
	uint32_t holder;

	if (!tag)
		return -1;
	if (!is_context(tag))
		return tag_peer_id(tag);
	return tag_record(r, tag, &holder) ? tag_peer_id(holder) : -1;
}

static bool peer_alive(const struct ivrdma_region *r, uint32_t tag, int node)
{
	int id = tag_peer_id(tag);
	struct ivrdma_peer *p = id >= 0 ? ivrdma_region_peer(r, (uint32_t)id) : NULL;

	return p && shm_load_acquire32(&p->state) == IVRDMA_PEER_ACTIVE &&
	       shm_load_relaxed16(&p->gen) == (uint16_t)(tag >> 16) &&
	       (node < 0 || shm_load_relaxed16(&p->node) == (uint16_t)node);
}

bool ivrdma_owner_alive(const struct ivrdma_region *r, uint32_t tag, int node)
{
	const struct ivrdma_ctx_slot *c;
	uint32_t holder, state;

	if (!tag || !is_context(tag))
		return tag && peer_alive(r, tag, node);
	c = tag_record(r, tag, &holder);
	if (!c)
		return false;
	state = shm_load_acquire32(&c->state);
	return (state == IVRDMA_CTX_OPEN || state == IVRDMA_CTX_RELEASED) &&
	       peer_alive(r, holder, node);
}

bool ivrdma_context_released(const struct ivrdma_region *r, uint32_t tag)
{
	const struct ivrdma_ctx_slot *c;
	uint32_t holder;

	if (!is_context(tag))
		return false;
	c = tag_record(r, tag, &holder);
	return c && shm_load_acquire32(&c->state) == IVRDMA_CTX_RELEASED;
}

bool ivrdma_tag_gone(const struct ivrdma_region *r, uint32_t tag, const struct ivrdma_gone *g)
{
	if (!tag)
		return false;
	if (g->context_tag && tag == g->context_tag)
		return true;
	return g->peer >= 0 && ivrdma_tag_peer(r, tag) == g->peer;
}
