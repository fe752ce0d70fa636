/* SPDX-License-Identifier: MIT */
/*
 * Shared by the MPI test programs: a byte pattern that depends on the
 * sender, the message size and the iteration (so a stale or misrouted
 * buffer never passes), a checksum of what each rank received, and one
 * summary line per test printed by rank 0 only, so that the output of a
 * run over ivrdma can be compared line by line with a shared-memory run.
 */
#ifndef IVRDMA_MT_H
#define IVRDMA_MT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* The byte at offset i of message (rank, size, iter). */
uint8_t mt_byte(int rank, size_t size, int iter, size_t i);
void mt_fill(void *buf, size_t size, int rank, int iter);
/* Every byte of buf against the pattern; aborts the job on the first difference. */
void mt_expect(const void *buf, size_t size, int rank, int iter, const char *what);

/* FNV-1a, continued from h (start with MT_FNV_INIT). */
#define MT_FNV_INIT 0xcbf29ce484222325ULL
uint64_t mt_hash(uint64_t h, const void *p, size_t n);
uint64_t mt_hash_u64(uint64_t h, uint64_t v);

/* Reports a failed check on this rank and aborts the whole job. */
void mt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#define MT_CHECK(cond, ...)                                                                        \
	do {                                                                                       \
		if (!(cond))                                                                       \
			mt_fail(__VA_ARGS__);                                                      \
	} while (0)
/* An MPI call that must return MPI_SUCCESS. */
#define MT_MPI(call) MT_CHECK((call) == MPI_SUCCESS, "%s:%d: %s failed", __FILE__, __LINE__, #call)

/*
 * Collective over comm: rank 0 prints "name: <detail> checksum <hash of
 * every rank's h, in rank order>". The line is the same over every
 * transport that delivered the same bytes.
 */
void mt_report(MPI_Comm comm, const char *name, const char *detail, uint64_t h);

/*
 * MPI_Waitall with a real status array: GCC 12 takes MPICH's
 * MPI_STATUSES_IGNORE (a pointer constant) for an empty array and warns.
 */
void mt_waitall(int n, MPI_Request *rq);

/* A buffer of the given size for one message: never NULL, even for 0 bytes. */
void *mt_alloc(size_t size);

/*
 * When MT_FLIP_BYTE is set in the environment, the first buffer checked
 * with mt_expect has one byte changed first: the test of the test (a run
 * that must fail), never set otherwise.
 */
void mt_maybe_flip(void *buf, size_t size);

#endif
