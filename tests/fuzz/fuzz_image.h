/* SPDX-License-Identifier: MIT */
/*
 * A region image built from fuzzer input, for the harnesses that read the
 * region as a participant does.
 *
 * Input: the header (IVRDMA_HEADER_SIZE bytes, zero-padded if short),
 * then a struct fuzz_params, then patch records, each a struct fuzz_patch
 * and 'len' bytes written into one table entry or chunk the validated view
 * names (or anywhere, raw). Addressing through the view lets the fuzzer
 * reach slots and rings wherever the header put them.
 *
 * The image is one heap buffer of IVRDMA_MIN_REGION_SIZE bytes, so ASan
 * sees a read past the region's end; only what a run dirtied is zeroed
 * for the next.
 */
#ifndef IVRDMA_FUZZ_IMAGE_H
#define IVRDMA_FUZZ_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "region.h"

#define FUZZ_IMAGE_SIZE IVRDMA_MIN_REGION_SIZE

/* What a harness does with the region, beyond its contents. */
struct fuzz_params {
	uint16_t peer; /* "me": my peer ID and generation (owner tag) */
	uint16_t gen;
	uint16_t lid;	/* a node to look up */
	uint16_t ops;	/* bits: which readers to run (each harness its own) */
	uint32_t qpn;	/* a QP to look up */
	uint32_t index; /* a CQ / SRQ / context slot */
	uint32_t key;	/* an rkey / lkey */
	uint32_t access;
	uint64_t addr;
	uint64_t len;
	uint32_t count; /* chunks */
	uint32_t hint;
	uint32_t first;
	uint32_t reserved;
};

enum fuzz_patch_kind {
	FUZZ_RAW, /* region offset */
	FUZZ_NODE,
	FUZZ_PEER,
	FUZZ_QP,
	FUZZ_CQ,
	FUZZ_SRQ,
	FUZZ_MR,
	FUZZ_CTX,
	FUZZ_TAG,
	FUZZ_CHUNK, /* index: chunk, offset: into the chunk */
	FUZZ_KINDS,
};

struct fuzz_patch {
	uint8_t kind; /* enum fuzz_patch_kind, modulo FUZZ_KINDS */
	uint8_t len;
	uint16_t index;
	uint32_t offset;
};

/* The image, zeroed where the last run wrote. */
uint8_t *fuzz_image(void);

/* Something wrote [p, p + len) of the image: zero it before the next run. */
void fuzz_image_dirty(const void *p, uint64_t len);

/*
 * Loads header and params from data, opens the region (its result), then
 * applies the patches if it opened. 'params' is zeroed if data is short.
 */
int fuzz_image_load(struct ivrdma_region *r, struct fuzz_params *params, const uint8_t *data,
		    size_t size);

#endif /* IVRDMA_FUZZ_IMAGE_H */
