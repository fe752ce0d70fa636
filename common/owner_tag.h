/* SPDX-License-Identifier: MIT */
/*
 * Owner tags (ivrdma_layout.h, "Owner tag"): whom a tag names, whether
 * that owner lives, and whether it is among what ivrdmad takes back. A
 * context's tag is resolved through its context record, which its peer
 * holds: reading the record's seq, holder and state takes no lock, and a
 * record that was freed or reused no longer matches the tag.
 */
#ifndef IVRDMA_OWNER_TAG_H
#define IVRDMA_OWNER_TAG_H

#include <stdbool.h>
#include <stdint.h>

#include "region.h"

/* The peer that holds 'tag' (a context's: its record's holder); -1 if none does now. */
int ivrdma_tag_peer(const struct ivrdma_region *r, uint32_t tag);

/*
 * Does 'tag' name a live owner of node 'node' (any node: -1)? A peer's
 * tag: the peer is ACTIVE in that generation. A context's: its record is
 * still the tag's, OPEN or RELEASED (ivrdmad has not settled it yet), and
 * held by a live peer.
 */
bool ivrdma_owner_alive(const struct ivrdma_region *r, uint32_t tag, int node);

/*
 * Is 'tag' a context's whose process has ended (its record RELEASED)? It
 * is still alive to others until ivrdmad settles it, but executes nothing.
 */
bool ivrdma_context_released(const struct ivrdma_region *r, uint32_t tag);

/* What ivrdmad takes back: a peer and every context it holds, or one context. */
struct ivrdma_gone {
	int peer;	      /* a peer ID, or -1 */
	uint32_t context_tag; /* a context's tag, or 0 */
};

/* Is 'tag' (not 0) among what 'g' names? A peer's contexts count while their records last. */
bool ivrdma_tag_gone(const struct ivrdma_region *r, uint32_t tag, const struct ivrdma_gone *g);

#endif
