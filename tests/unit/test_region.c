// SPDX-License-Identifier: MIT
/*
 * The region format and its validation, and the chunk allocator, without a
 * daemon: a region formatted in private memory.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "daemon.h"
#include "region.h"

#define SIZE (16ull << 20)

static struct region_store store;
static struct daemon_config cfg;

static void format_fresh(void)
{
	memset(store.base, 0, IVRDMA_HEADER_SIZE);
	REQUIRE(region_format(&store, &cfg) == 0, "format");
}

static void test_format_validates(void)
{
	struct ivrdma_region r;
	const char *why = NULL;

	format_fresh();
	CHECK(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	CHECK(r.nr_vectors == 4 && r.max_peers == 64, "limits %u %u", r.nr_vectors, r.max_peers);
	CHECK(r.nr_chunks > 200 && r.chunk_shift == 16, "chunks %u", r.nr_chunks);
	CHECK(r.chunk_area_offset + ((uint64_t)r.nr_chunks << r.chunk_shift) <= SIZE, "fits");
	CHECK(ivrdma_region_node(&r, r.nodes.entries) == NULL, "node index bound");
	CHECK(ivrdma_region_peer(&r, 63) != NULL && ivrdma_region_peer(&r, 64) == NULL,
	      "peer index bound");
	CHECK(ivrdma_chunk_ptr(&r, r.nr_chunks) == NULL, "chunk index bound");
	CHECK(ivrdma_region_open(&r, store.base, SIZE / 2, &why) < 0,
	      "a mapping smaller than the header says");
}

/* Each corruption of the header must be refused. */
static void bad_magic(struct ivrdma_region_header *h)
{
	h->magic ^= 1;
}
static void bad_version(struct ivrdma_region_header *h)
{
	h->layout_version = 99;
}
static void bad_vectors(struct ivrdma_region_header *h)
{
	h->nr_vectors = 0;
}
static void many_vectors(struct ivrdma_region_header *h)
{
	h->nr_vectors = 65;
}
static void many_peers(struct ivrdma_region_header *h)
{
	h->max_peers = 100000;
}
static void nodes_outside(struct ivrdma_region_header *h)
{
	h->nodes.offset = SIZE - 64;
}
static void peers_huge(struct ivrdma_region_header *h)
{
	h->peers.entries = 0xffffffffu;
}
static void qps_in_header(struct ivrdma_region_header *h)
{
	h->qps.offset = 8;
}
static void cq_slot_size(struct ivrdma_region_header *h)
{
	h->cqs.entry_size = 8;
}
static void overlap(struct ivrdma_region_header *h)
{
	h->mrs.offset = h->srqs.offset;
}
static void chunks_beyond(struct ivrdma_region_header *h)
{
	h->nr_chunks += 1;
	h->chunk_tags.entries += 1;
}
static void chunks_misaligned(struct ivrdma_region_header *h)
{
	h->chunk_area_offset += 4096;
}
static void chunk_shift_huge(struct ivrdma_region_header *h)
{
	h->chunk_shift = 40;
}
static void host_node_out(struct ivrdma_region_header *h)
{
	h->host_node = IVRDMA_MAX_NODES;
}
static void size_beyond(struct ivrdma_region_header *h)
{
	h->region_size = SIZE * 2;
}
static void offset_wraps(struct ivrdma_region_header *h)
{
	h->srqs.offset = UINT64_MAX - 100;
}

static void test_corruptions_rejected(void)
{
	static const struct {
		const char *what;
		void (*apply)(struct ivrdma_region_header *h);
	} cases[] = {
	    {"magic", bad_magic},
	    {"version", bad_version},
	    {"no vectors", bad_vectors},
	    {"too many vectors", many_vectors},
	    {"too many peers", many_peers},
	    {"nodes outside", nodes_outside},
	    {"peer count huge", peers_huge},
	    {"qps inside the header", qps_in_header},
	    {"cq slot size", cq_slot_size},
	    {"tables overlap", overlap},
	    {"chunks beyond the end", chunks_beyond},
	    {"chunk area misaligned", chunks_misaligned},
	    {"chunk shift", chunk_shift_huge},
	    {"host node index", host_node_out},
	    {"size beyond the mapping", size_beyond},
	    {"offset wraps", offset_wraps},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ivrdma_region r;
		const char *why = NULL;
		int rc;

		format_fresh();
		cases[i].apply(store.base);
		rc = ivrdma_region_open(&r, store.base, SIZE, &why);
		CHECK(rc == -EPROTO && why, "%s: accepted (rc %d)", cases[i].what, rc);
	}
}

/* Context record 'idx' held by peer tag 'holder', at 'seq', in 'state'. */
static struct ivrdma_ctx_slot *context_record(struct ivrdma_region *r, uint32_t idx,
					      uint32_t holder, uint32_t seq, uint32_t state)
{
	struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, idx);

	c->hdr.owner = holder;
	c->hdr.seq = seq;
	c->state = state;
	return c;
}

static void peer_entry(struct ivrdma_region *r, uint16_t id, uint16_t gen, uint32_t state)
{
	struct ivrdma_peer *p = ivrdma_region_peer(r, id);

	p->gen = gen;
	p->state = state;
}

static void test_owner_tags(void)
{
	struct ivrdma_region r;
	const char *why;
	uint32_t tag = ivrdma_owner_tag(7, 3), ct = ivrdma_context_tag(5, 0x10009);
	struct ivrdma_ctx_slot *c;

	format_fresh();
	REQUIRE(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	CHECK(tag != 0 && ivrdma_tag_peer(&r, tag) == 7, "tag %#x", tag);
	CHECK(ivrdma_owner_tag(7, 4) != tag, "generation distinguishes reuse");
	CHECK(ivrdma_tag_peer(&r, 0) == -1, "free tag has no owner");
	CHECK(ivrdma_tag_peer(&r, ivrdma_owner_tag(0, 0)) == 0, "peer 0");
	CHECK(ivrdma_tag_peer(&r, ct) == -1 && !ivrdma_owner_alive(&r, ct, -1),
	      "a context tag without its record names no one");
	peer_entry(&r, 7, 3, IVRDMA_PEER_ACTIVE);
	c = context_record(&r, 5, tag, 0x10009, IVRDMA_CTX_OPEN);
	CHECK(ivrdma_tag_peer(&r, ct) == 7, "a context's peer is its record's holder");
	CHECK(ivrdma_owner_alive(&r, tag, -1) && ivrdma_owner_alive(&r, ct, -1), "both alive");
	c->state = IVRDMA_CTX_RELEASED;
	CHECK(ivrdma_owner_alive(&r, ct, -1), "released: alive until ivrdmad settles it");
	c->state = IVRDMA_CTX_CLOSED;
	CHECK(!ivrdma_owner_alive(&r, ct, -1) && ivrdma_owner_alive(&r, tag, -1),
	      "a closed context is gone, its peer is not");
	c->state = IVRDMA_CTX_OPEN;
	c->hdr.seq = 0x1000a;
	CHECK(ivrdma_tag_peer(&r, ct) == -1 && !ivrdma_owner_alive(&r, ct, -1),
	      "a reused record is no longer the tag's");
	c->hdr.seq = 0x10009;
	c->hdr.owner = ct;
	CHECK(ivrdma_tag_peer(&r, ct) == -1, "a record held by a context tag is refused");
	c->hdr.owner = tag;
	peer_entry(&r, 7, 3, IVRDMA_PEER_GONE);
	CHECK(!ivrdma_owner_alive(&r, ct, -1) && ivrdma_tag_peer(&r, ct) == 7,
	      "the context of a gone peer is dead, and still the peer's to reclaim");
}

static void test_chunk_alloc_basic(void)
{
	struct ivrdma_region r;
	const char *why;
	uint32_t a = ivrdma_owner_tag(1, 1), b = ivrdma_owner_tag(2, 1), n;
	int64_t x, y, z;

	format_fresh();
	REQUIRE(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	n = r.nr_chunks;
	x = ivrdma_chunk_alloc(&r, 3, a, 0);
	y = ivrdma_chunk_alloc(&r, 5, b, 0);
	CHECK(x == 0 && y == 3, "contiguous first fit: %lld %lld", (long long)x, (long long)y);
	CHECK(ivrdma_chunks_in_use(&r) == 8, "in use %u", ivrdma_chunks_in_use(&r));
	CHECK(ivrdma_chunk_free(&r, 3, 5, a) == 0, "free with the wrong tag frees nothing");
	CHECK(ivrdma_chunk_free(&r, n - 1, 5, a) == 0, "free past the end refused");
	CHECK(ivrdma_chunk_alloc(&r, n, a, 0) == -ENOSPC, "too big");
	CHECK(ivrdma_chunk_alloc(&r, 0, a, 0) == -EINVAL, "zero chunks");
	CHECK(ivrdma_chunk_alloc(&r, 1, 0, 0) == -EINVAL, "free tag");
	CHECK(ivrdma_chunk_free(&r, 0, 3, a) == 3, "free");
	z = ivrdma_chunk_alloc(&r, 4, a, 0);
	CHECK(z == 8, "a 4-run skips the 3-hole: %lld", (long long)z);
	z = ivrdma_chunk_alloc(&r, 2, a, n - 1);
	CHECK(z == 0, "wraps around from a hint near the end: %lld", (long long)z);
	while (ivrdma_chunk_alloc(&r, 1, b, 0) >= 0)
		;
	CHECK(ivrdma_chunks_in_use(&r) == n, "filled");
	CHECK(ivrdma_chunk_alloc(&r, 1, b, 0) == -ENOSPC, "full");
}

/* A span's chunks change holder when the context holding them closes. */
static void test_chunk_retag(void)
{
	struct ivrdma_region r;
	const char *why;
	uint32_t a = ivrdma_owner_tag(1, 1), b = ivrdma_owner_tag(2, 1), c = ivrdma_owner_tag(3, 1);

	format_fresh();
	REQUIRE(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	REQUIRE(ivrdma_chunk_alloc(&r, 3, a, 0) == 0 && ivrdma_chunk_alloc(&r, 2, c, 0) == 3,
		"two runs");
	CHECK(ivrdma_chunk_retag(&r, 0, 5, a, b) == 3, "only a's chunks move to b");
	CHECK(ivrdma_chunk_free(&r, 0, 3, a) == 0, "a holds nothing now");
	CHECK(ivrdma_chunk_retag(&r, 0, 3, b, 0) == 0, "never to the free tag");
	CHECK(ivrdma_chunk_retag(&r, r.nr_chunks - 1, 2, b, a) == 0, "past the end refused");
	CHECK(ivrdma_chunk_free(&r, 0, 3, b) == 3 && ivrdma_chunk_free(&r, 3, 2, c) == 2,
	      "each frees its own");
	CHECK(ivrdma_chunks_in_use(&r) == 0, "all free");
	REQUIRE(ivrdma_chunk_alloc(&r, 2, a, 0) == 0, "a run at 0");
	CHECK(ivrdma_chunk_claim(&r, 1, 3, b) == -EBUSY, "a claim over a held chunk fails");
	CHECK(ivrdma_chunks_in_use(&r) == 2, "and takes nothing: %u", ivrdma_chunks_in_use(&r));
	CHECK(ivrdma_chunk_claim(&r, 2, 3, b) == 0, "the chunks right after it");
	CHECK(ivrdma_chunk_claim(&r, r.nr_chunks - 1, 2, b) == -EINVAL, "past the end");
	CHECK(ivrdma_chunk_free(&r, 2, 3, b) == 3 && ivrdma_chunk_free(&r, 0, 2, a) == 2, "free");
}

static void test_reclaim(void)
{
	struct ivrdma_region r;
	struct ivrdma_reclaim_count got;
	const char *why;
	uint32_t dead = ivrdma_owner_tag(5, 2), live = ivrdma_owner_tag(6, 1);
	struct ivrdma_obj_hdr *qp;

	format_fresh();
	REQUIRE(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	ivrdma_chunk_alloc(&r, 10, dead, 0);
	ivrdma_chunk_alloc(&r, 4, live, 0);
	qp = ivrdma_table_entry(&r, &r.qps, 3);
	qp->owner = dead;
	memset(qp + 1, 0xab, IVRDMA_QP_SLOT_SIZE - sizeof(*qp));
	((struct ivrdma_obj_hdr *)ivrdma_table_entry(&r, &r.mrs, 9))->owner = dead;
	((struct ivrdma_obj_hdr *)ivrdma_table_entry(&r, &r.mrs, 10))->owner = live;
	ivrdma_region_reclaim(&r, &(struct ivrdma_gone){.peer = 5}, &got);
	CHECK(got.chunks == 10 && got.qps == 1 && got.mrs == 1 && got.cqs == 0,
	      "reclaimed %u chunks %u qps %u mrs", got.chunks, got.qps, got.mrs);
	CHECK(ivrdma_chunks_in_use(&r) == 4, "the live peer keeps its chunks");
	CHECK(qp->owner == 0 && ((uint8_t *)(qp + 1))[0] == 0, "slot wiped and freed");
	CHECK(((struct ivrdma_obj_hdr *)ivrdma_table_entry(&r, &r.mrs, 10))->owner == live,
	      "live MR kept");
}

/*
 * A context of a VM: its own reclaim takes its tag only; its peer's takes
 * the peer's, every context the peer holds, and their records.
 */
static void test_reclaim_context(void)
{
	struct ivrdma_region r;
	struct ivrdma_reclaim_count got;
	const char *why;
	uint32_t vm = ivrdma_owner_tag(4, 1), a = ivrdma_context_tag(2, 7),
		 b = ivrdma_context_tag(3, 1);

	format_fresh();
	REQUIRE(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	peer_entry(&r, 4, 1, IVRDMA_PEER_ACTIVE);
	context_record(&r, 2, vm, 7, IVRDMA_CTX_RELEASED);
	context_record(&r, 3, vm, 1, IVRDMA_CTX_OPEN);
	REQUIRE(ivrdma_chunk_alloc(&r, 3, a, 0) >= 0 && ivrdma_chunk_alloc(&r, 2, b, 0) >= 0 &&
		    ivrdma_chunk_alloc(&r, 1, vm, 0) >= 0,
		"chunks");
	((struct ivrdma_obj_hdr *)ivrdma_table_entry(&r, &r.qps, 1))->owner = a;
	((struct ivrdma_obj_hdr *)ivrdma_table_entry(&r, &r.qps, 2))->owner = b;
	ivrdma_region_reclaim(&r, &(struct ivrdma_gone){.peer = -1, .context_tag = a}, &got);
	CHECK(got.chunks == 3 && got.qps == 1 && got.ctxs == 0, "context a: %u chunks %u QPs",
	      got.chunks, got.qps);
	CHECK(ivrdma_chunks_in_use(&r) == 3, "b and the VM keep theirs");
	CHECK(((struct ivrdma_obj_hdr *)ivrdma_table_entry(&r, &r.ctxs, 2))->owner == vm,
	      "a's record stays for ivrdmad to free");
	ivrdma_region_reclaim(&r, &(struct ivrdma_gone){.peer = 4}, &got);
	CHECK(got.chunks == 3 && got.qps == 1 && got.ctxs == 2,
	      "the VM: %u chunks %u QPs %u records", got.chunks, got.qps, got.ctxs);
	CHECK(ivrdma_chunks_in_use(&r) == 0, "nothing left");
}

/* Racing allocators never hand one chunk to two owners. */
struct racer {
	struct ivrdma_region *r;
	uint32_t tag;
	uint32_t got;
};

static void *race(void *arg)
{
	struct racer *x = arg;

	for (uint32_t i = 0; i < 2000; i++) {
		uint32_t count = 1 + i % 4;
		int64_t first = ivrdma_chunk_alloc(x->r, count, x->tag, i * 7);

		if (first < 0)
			continue;
		for (uint32_t c = 0; c < count; c++) {
			uint32_t *tags = (uint32_t *)(x->r->base + x->r->chunk_tags.offset);

			if (__atomic_load_n(&tags[first + c], __ATOMIC_ACQUIRE) != x->tag)
				x->got = UINT32_MAX; /* stolen */
		}
		if (x->got != UINT32_MAX && i % 3)
			ivrdma_chunk_free(x->r, (uint32_t)first, count, x->tag);
		else if (x->got != UINT32_MAX)
			x->got += count;
	}
	return NULL;
}

static void test_chunk_race(void)
{
	struct ivrdma_region r;
	struct racer racers[4];
	pthread_t th[4];
	const char *why;
	uint32_t held = 0;

	format_fresh();
	REQUIRE(ivrdma_region_open(&r, store.base, SIZE, &why) == 0, "%s", why);
	for (int i = 0; i < 4; i++) {
		racers[i] = (struct racer){.r = &r, .tag = ivrdma_owner_tag((uint16_t)i, 1)};
		pthread_create(&th[i], NULL, race, &racers[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(racers[i].got != UINT32_MAX, "racer %d saw its chunk taken", i);
		held += racers[i].got;
	}
	CHECK(ivrdma_chunks_in_use(&r) == held, "in use %u, held %u", ivrdma_chunks_in_use(&r),
	      held);
}

int main(void)
{
	store.base = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(store.base != MAP_FAILED, "mmap");
	store.size = SIZE;
	cfg.region_size = SIZE;
	cfg.nr_vectors = 4;
	cfg.max_peers = 64;
	cfg.chunk_shift = 16;
	test_format_validates();
	test_corruptions_rejected();
	test_owner_tags();
	test_chunk_alloc_basic();
	test_chunk_retag();
	test_reclaim();
	test_reclaim_context();
	test_chunk_race();
	return check_summary();
}
