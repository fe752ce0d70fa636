/* SPDX-License-Identifier: MIT */
/*
 * Non-contiguous derived datatypes: vector and indexed int layouts sent
 * typed and received contiguous, and the other way round (the gaps of the
 * typed receive buffer must keep their sentinel), and an array of structs
 * with padding. Small and large counts, the latter beyond the eager limit,
 * so the transports' rendezvous paths pack and unpack too.
 */
#include "p2p_types.h"
#include "mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 0x5a5a5a5a

/* An int layout: block b holds len[b] ints at int offset off[b]. */
struct layout {
	int nblocks, extent;
	int *off, *len;
	MPI_Datatype type;
};

static int layout_total(const struct layout *l)
{
	int n = 0;

	for (int b = 0; b < l->nblocks; b++)
		n += l->len[b];
	return n;
}

static struct layout vector_layout(int n)
{
	struct layout l = {.nblocks = n, .extent = n * 5};

	l.off = mt_alloc(sizeof(int) * (size_t)n);
	l.len = mt_alloc(sizeof(int) * (size_t)n);
	for (int b = 0; b < n; b++)
		l.off[b] = b * 5, l.len[b] = 3;
	MT_MPI(MPI_Type_vector(n, 3, 5, MPI_INT, &l.type));
	MT_MPI(MPI_Type_commit(&l.type));
	return l;
}

/* Blocks of 1..7 ints with gaps of 0..4 ints (a zero gap joins two blocks). */
static struct layout indexed_layout(int n)
{
	struct layout l = {.nblocks = n};
	int at = 0;

	l.off = mt_alloc(sizeof(int) * (size_t)n);
	l.len = mt_alloc(sizeof(int) * (size_t)n);
	for (int b = 0; b < n; b++) {
		l.len[b] = 1 + b % 7;
		l.off[b] = at + b % 5;
		at = l.off[b] + l.len[b];
	}
	l.extent = at;
	MT_MPI(MPI_Type_indexed(n, l.len, l.off, MPI_INT, &l.type));
	MT_MPI(MPI_Type_commit(&l.type));
	return l;
}

static void layout_free(struct layout *l)
{
	MT_MPI(MPI_Type_free(&l->type));
	free(l->off);
	free(l->len);
}

/* The peer's typed buffer as the pattern makes it, gathered into 'packed'. */
static void expected_packed(const struct layout *l, int src, int iter, int *packed)
{
	int *typed = mt_alloc(sizeof(int) * (size_t)l->extent);
	int k = 0;

	mt_fill(typed, sizeof(int) * (size_t)l->extent, src, iter);
	for (int b = 0; b < l->nblocks; b++)
		for (int j = 0; j < l->len[b]; j++)
			packed[k++] = typed[l->off[b] + j];
	free(typed);
}

/* Typed send, contiguous receive: the lower rank sends. */
static uint64_t typed_to_packed(const struct layout *l, int rank, int peer, uint64_t h)
{
	int total = layout_total(l);
	int *buf = mt_alloc(sizeof(int) * (size_t)(l->extent > total ? l->extent : total));
	int *want = mt_alloc(sizeof(int) * (size_t)total);

	if (rank < peer) {
		mt_fill(buf, sizeof(int) * (size_t)l->extent, rank, 21);
		MT_MPI(MPI_Send(buf, 1, l->type, peer, 21, MPI_COMM_WORLD));
	} else {
		MT_MPI(MPI_Recv(buf, total, MPI_INT, peer, 21, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
		expected_packed(l, peer, 21, want);
		mt_maybe_flip(buf, sizeof(int) * (size_t)total);
		for (int i = 0; i < total; i++)
			MT_CHECK(buf[i] == want[i], "typed send: int %d of %d is %#x, not %#x", i,
				 total, (unsigned)buf[i], (unsigned)want[i]);
		h = mt_hash(h, buf, sizeof(int) * (size_t)total);
	}
	free(buf);
	free(want);
	return h;
}

/* Contiguous send, typed receive: blocks filled in order, gaps untouched. */
static uint64_t packed_to_typed(const struct layout *l, int rank, int peer, uint64_t h)
{
	int total = layout_total(l);
	int *buf = mt_alloc(sizeof(int) * (size_t)(l->extent > total ? l->extent : total));
	int *want = mt_alloc(sizeof(int) * (size_t)total);
	int k = 0;

	if (rank < peer) {
		mt_fill(buf, sizeof(int) * (size_t)total, rank, 22);
		MT_MPI(MPI_Send(buf, total, MPI_INT, peer, 22, MPI_COMM_WORLD));
		free(buf);
		free(want);
		return h;
	}
	for (int i = 0; i < l->extent; i++)
		buf[i] = SENTINEL;
	MT_MPI(MPI_Recv(buf, 1, l->type, peer, 22, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
	mt_fill(want, sizeof(int) * (size_t)total, peer, 22);
	for (int b = 0, at = 0; b < l->nblocks; at = l->off[b] + l->len[b], b++) {
		for (int i = at; i < l->off[b]; i++)
			MT_CHECK(buf[i] == SENTINEL, "typed receive wrote the gap at int %d", i);
		for (int j = 0; j < l->len[b]; j++, k++)
			MT_CHECK(buf[l->off[b] + j] == want[k],
				 "typed receive: int %d is %#x, not %#x", l->off[b] + j,
				 (unsigned)buf[l->off[b] + j], (unsigned)want[k]);
	}
	h = mt_hash(h, buf, sizeof(int) * (size_t)l->extent);
	free(buf);
	free(want);
	return h;
}

/* A struct with padding after 'a' and at the end: only the fields travel. */
struct rec {
	char a;
	double b;
	int c[3];
	short d;
};

static MPI_Datatype rec_type(void)
{
	int lens[] = {1, 1, 3, 1};
	MPI_Aint disp[] = {offsetof(struct rec, a), offsetof(struct rec, b),
			   offsetof(struct rec, c), offsetof(struct rec, d)};
	MPI_Datatype types[] = {MPI_CHAR, MPI_DOUBLE, MPI_INT, MPI_SHORT}, t, r;

	MT_MPI(MPI_Type_create_struct(4, lens, disp, types, &t));
	MT_MPI(MPI_Type_create_resized(t, 0, sizeof(struct rec), &r));
	MT_MPI(MPI_Type_free(&t));
	MT_MPI(MPI_Type_commit(&r));
	return r;
}

static void rec_fill(struct rec *r, int n, int src)
{
	for (int i = 0; i < n; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].a = (char)mt_byte(src, (size_t)n, i, 0);
		r[i].b = (double)(i * 3 + src) + 0.25;
		for (int j = 0; j < 3; j++)
			r[i].c[j] = (int)mt_byte(src, (size_t)n, i, (size_t)j + 1) * 65537 + i;
		r[i].d = (short)(i ^ src);
	}
}

static uint64_t struct_exchange(int n, int rank, int peer, uint64_t h)
{
	MPI_Datatype t = rec_type();
	struct rec *buf = mt_alloc(sizeof(*buf) * (size_t)n);
	struct rec *want = mt_alloc(sizeof(*want) * (size_t)n);

	if (rank < peer) {
		rec_fill(buf, n, rank);
		MT_MPI(MPI_Send(buf, n, t, peer, 23, MPI_COMM_WORLD));
	} else {
		memset(buf, 0xee, sizeof(*buf) * (size_t)n);
		MT_MPI(MPI_Recv(buf, n, t, peer, 23, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
		rec_fill(want, n, peer);
		for (int i = 0; i < n; i++) {
			MT_CHECK(buf[i].a == want[i].a && buf[i].b == want[i].b &&
				     !memcmp(buf[i].c, want[i].c, sizeof(buf[i].c)) &&
				     buf[i].d == want[i].d,
				 "struct %d of %d differs", i, n);
			h = mt_hash(h, &buf[i].a, 1);
			h = mt_hash(h, &buf[i].b, sizeof(buf[i].b));
			h = mt_hash(h, buf[i].c, sizeof(buf[i].c));
			h = mt_hash(h, &buf[i].d, sizeof(buf[i].d));
		}
	}
	MT_MPI(MPI_Type_free(&t));
	free(buf);
	free(want);
	return h;
}

void test_datatypes(int rank, int peer)
{
	/* 10 blocks (eager) and 300000 (3.6 MB of ints: rendezvous). */
	static const int counts[] = {10, 300000};
	uint64_t h = MT_FNV_INIT;

	for (int c = 0; c < 2; c++) {
		struct layout v = vector_layout(counts[c]), x = indexed_layout(counts[c]);

		h = typed_to_packed(&v, rank, peer, h);
		h = packed_to_typed(&v, rank, peer, h);
		h = typed_to_packed(&x, rank, peer, h);
		h = packed_to_typed(&x, rank, peer, h);
		h = struct_exchange(counts[c], rank, peer, h);
		layout_free(&v);
		layout_free(&x);
	}
	mt_report(MPI_COMM_WORLD, "p2p.datatypes", "vector, indexed, struct; 10 and 300000", h);
}
