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
 * The image is an anonymous mapping of IVRDMA_MIN_REGION_SIZE bytes with
 * an inaccessible page after it (a read past the region's end faults);
 * each run starts from zeros (MADV_DONTNEED: only pages a run touched
 * cost anything).
 */
#ifndef IVRDMA_FUZZ_IMAGE_H
#define IVRDMA_FUZZ_IMAGE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "region.h"

#define FUZZ_IMAGE_SIZE IVRDMA_MIN_REGION_SIZE

/* What a harness does with the region, beyond its contents. */
struct fuzz_params {
	uint16_t peer; /* "me": my peer ID and generation (owner tag) */
	uint16_t gen;
	uint16_t lid; /* the node to reach */
	uint16_t ops; /* bits: what to do (each harness its own) */
	uint32_t qpn; /* the remote QP */
	uint32_t cq;  /* my CQ slot */
	uint32_t qp;  /* my QP slot */
	uint32_t srq; /* an SRQ slot */
	uint32_t lkey, rkey;
	uint64_t laddr, raddr;
	uint32_t len;
	uint32_t count, hint, first; /* chunks */
	uint64_t value;		     /* an atomic's operand, immediate data */
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

/* The image, all zeros. */
uint8_t *fuzz_image(void);

/*
 * Loads header and params from data, opens the region (its result), then
 * applies the patches if it opened. 'params' is zeroed if data is short.
 */
int fuzz_image_load(struct ivrdma_region *r, struct fuzz_params *params, const uint8_t *data,
		    size_t size);

/*
 * The sockets and eventfds this process has open, and its memfds if
 * 'memfds': what a run may leak. Other fds come and go under libFuzzer
 * (its symbolizer's pipes).
 */
int fuzz_protocol_fds(bool memfds);

#endif /* IVRDMA_FUZZ_IMAGE_H */
