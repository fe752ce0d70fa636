/* SPDX-License-Identifier: MIT */
/*
 * The checksum both sides of a guest test compute over region bytes: the
 * host helper over what it wrote, the guest probe over what BAR2 shows.
 * One definition, so a mismatch can only mean the bytes differ.
 */
#ifndef IVRDMA_GUEST_CHECKSUM_H
#define IVRDMA_GUEST_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_FNV1A64_INIT  0xcbf29ce484222325ull
#define GUEST_FNV1A64_PRIME 0x100000001b3ull

/* FNV-1a 64: byte-serial, so it never reads beyond [p, p + len). */
static inline uint64_t guest_fnv1a64(uint64_t h, const volatile uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= GUEST_FNV1A64_PRIME;
	}
	return h;
}

/* xorshift64*: a deterministic pattern that is not all one byte value. */
static inline uint64_t guest_pattern_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/*
 * The driver test's race on one BAR2 word (guest.driver_basics): the host
 * peer zeroes this at its area's start before it rings the guest back;
 * then both add 1 to counter with locked instructions, the guest from
 * when it says started until the host says stop. Each field has its own
 * cache line, so only the counter is fought over.
 */
struct guest_atomics {
	uint64_t counter;
	uint64_t pad0[7];
	uint64_t started; /* the guest adds from now on */
	uint64_t pad1[7];
	uint64_t stop; /* the host: enough; the guest stores its count, then done */
	uint64_t pad2[7];
	uint64_t guest_adds;
	uint64_t done;
	uint64_t pad3[6];
};

#endif /* IVRDMA_GUEST_CHECKSUM_H */
