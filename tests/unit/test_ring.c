// SPDX-License-Identifier: MIT
/*
 * The shared rings of provider/ring.c and common/cq_producer.c on their
 * own (and ivrdmad's side of a dead producer, common/cq_settle.c), in a
 * region formatted in private memory: the CQ (many producers, one consumer) and the
 * receive rings of a QP and of an SRQ (one producer, many consumers).
 *
 * First the index arithmetic, one thread: full, empty, nonsense indices,
 * and counters that cross 2^32 and wrap at 2^64. Then a stress of each
 * ring with threads standing in for the participants: every entry carries
 * its producer's sequence number and a checksum, so a lost, doubled,
 * reordered or torn entry fails the test. Under TSan (IVRDMA_TSAN) this is
 * where the rings' own ordering is checked: in real use the other side is
 * another process, which TSan does not see.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "daemon.h"
#include "ivrdma.h"

#define SIZE	   (16ull << 20)
#define CQ_ENTRIES 8u
#define RQ_ENTRIES 8u
#define RQ_SGE	   2u

static struct region_store store;
static struct ivrdma_region region;
static const uint32_t owner = 0x10001; /* ivrdma_owner_tag(0, 1) */

/*
 * Where a receive ring's counters start: at 0, just below 2^32, just below
 * 2^47 (where the index in cons wraps) and 2^64 (where prod wraps).
 */
static const uint64_t starts[] = {0, (1ull << 32) - 3, (1ull << 47) - 2 * RQ_ENTRIES,
				  UINT64_MAX - 2 * RQ_ENTRIES};
/*
 * A CQ's counters count within an epoch (its low 48 bits): 0, just below
 * 2^32, in the last epoch. They cross 2^64 by a resize (cq_resize_stress).
 */
static const uint64_t cq_starts[] = {0, (1ull << 32) - 3, (0xffffull << 48) + (1ull << 32) - 3};

static void region_fresh(void)
{
	struct daemon_config cfg = {
	    .region_size = SIZE, .nr_vectors = 4, .max_peers = 64, .chunk_shift = 16};
	const char *why = NULL;

	memset(store.base, 0, SIZE);
	REQUIRE(region_format(&store, &cfg) == 0, "format");
	REQUIRE(ivrdma_region_open(&region, store.base, SIZE, &why) == 0, "%s", why);
}

static uint64_t ring_chunk(void)
{
	int64_t c = ivrdma_chunk_alloc(&region, 1, owner, 0);

	REQUIRE(c >= 0, "chunk");
	return ivrdma_chunk_offset(&region, (uint32_t)c);
}

/* A checksum of what an entry carries, so a torn entry shows. */
static uint32_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/*
 * CQ slot 0 over a fresh ring of 'entries', its counters at 'start' (the
 * ring's epoch is start's), and every entry's seq what the lap before
 * 'start' left: the state a CQ that really counted up to 'start' would be in.
 */
static struct ivrdma_cq_slot *cq_fresh(uint64_t start, uint32_t entries, struct ivrdma_cq_view *v)
{
	struct ivrdma_cq_slot *s = ivrdma_table_entry(&region, &region.cqs, 0);
	struct ivrdma_cqe *ring;

	s->hdr.owner = owner;
	s->ring_offset = ring_chunk();
	s->nr_entries = entries;
	s->geometry = ivrdma_cq_geometry(ivrdma_cq_epoch(start), s->ring_offset,
					 (uint32_t)__builtin_ctz(entries));
	s->prev_geometry = 0;
	s->prod = s->cons = start;
	s->flags = 0;
	REQUIRE(ivrdma_cq_view(&region, 0, owner, v) == 0, "CQ view");
	ring = ivrdma_chunk_span(&region, s->ring_offset, entries * sizeof(*ring));
	for (uint64_t t = start - entries; t != start; t++) /* an epoch's ring starts zeroed */
		ring[t & (entries - 1)].seq =
		    ivrdma_cq_epoch(t) == ivrdma_cq_epoch(start) ? t + 1 : 0;
	return s;
}

/* A ring the consumer reads: the slot's current one, or one left to drain. */
struct cq_ring {
	struct ivrdma_cqe *ring;
	uint32_t mask;
	uint64_t base, end;
};

static struct cq_ring cq_current(const struct ivrdma_cq_slot *s)
{
	uint64_t g = s->geometry;
	uint32_t n = 1u << ivrdma_cq_geometry_log2(g);

	return (struct cq_ring){
	    .ring = ivrdma_chunk_span(&region, ivrdma_cq_geometry_offset(g), n * 64ull),
	    .mask = n - 1,
	    .base = ivrdma_cq_epoch_base(ivrdma_cq_epoch(g))};
}

static struct ivrdma_cqe cqe_of(uint64_t id)
{
	return (struct ivrdma_cqe){.wr_id = id, .byte_len = mix(id), .imm_data = ~mix(id)};
}

/*
 * Takes the next CQE from ring 'r' as the owner's poll does; false if none
 * is ready. An entry a later lap wrote over (its seq ahead of cons + 1)
 * would never become ready: that ends the test rather than hanging it.
 */
static bool cq_take_from(const struct cq_ring *r, struct ivrdma_cq_slot *s, uint64_t *cons,
			 uint64_t *id)
{
	const struct ivrdma_cqe *e = ivrdma_cq_ready(r->ring, r->mask, *cons);

	if (!e) {
		uint64_t seq = shm_load_relaxed64(&r->ring[*cons & r->mask].seq);

		/*
		 * 0: a fresh ring's entry, never written (no ticket is 2^64 - 1);
		 * or claimed for cons by a producer about to publish it.
		 */
		bool claimed = (seq & IVRDMA_CQ_CLAIM_BIT) &&
			       (seq & 0xffffu) == (*cons & 0xffffu) &&
			       ivrdma_cq_epoch(seq) == ivrdma_cq_epoch(*cons);

		REQUIRE(seq == 0 || claimed || (int64_t)(seq - (*cons + 1)) <= 0,
			"entry %#llx overwritten by a later lap: seq %#llx",
			(unsigned long long)*cons, (unsigned long long)seq);
		return false;
	}
	*id = e->wr_id;
	CHECK(e->byte_len == mix(*id) && e->imm_data == ~mix(*id), "CQE %llx torn",
	      (unsigned long long)*id);
	ivrdma_cq_hand_back(s, ++*cons);
	return true;
}

static bool cq_take(struct ivrdma_cq_view *v, uint64_t *cons, uint64_t *id)
{
	struct cq_ring r = cq_current(v->slot);

	return cq_take_from(&r, v->slot, cons, id);
}

/* Fill to full, drain to empty, a few laps; and a half-full ring laps too. */
static void cq_laps(uint64_t start)
{
	struct ivrdma_cq_view v;
	struct ivrdma_cq_slot *s = cq_fresh(start, CQ_ENTRIES, &v);
	uint64_t cons = start, next = 0, want = 0, id;

	for (int lap = 0; lap < 4; lap++) {
		for (uint32_t i = 0; i < CQ_ENTRIES; i++) {
			struct ivrdma_cqe e = cqe_of(next++);

			CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSHED, "push %u", i);
		}
		struct ivrdma_cqe extra = cqe_of(~0ull);
		CHECK(ivrdma_cq_push(&v, &extra) == IVRDMA_CQ_PUSH_FULL, "full at %u", CQ_ENTRIES);
		CHECK(s->prod == cons + CQ_ENTRIES, "a full push reserves nothing");
		CHECK(s->flags & IVRDMA_CQ_OVERFLOW, "overflow flagged");
		s->flags = 0;
		while (cq_take(&v, &cons, &id))
			CHECK(id == want++, "order: %llu", (unsigned long long)id);
		CHECK(cons == s->prod, "drained");
	}
	for (int i = 0; i < 5 * (int)CQ_ENTRIES; i++) { /* a ring half full laps */
		struct ivrdma_cqe e = cqe_of(next++);

		CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSHED, "push");
		if (i >= (int)CQ_ENTRIES / 2)
			CHECK(cq_take(&v, &cons, &id) && id == want++, "take");
	}
	CHECK(s->prod - start == next, "prod counted every push across the wrap");
}

/* Arming: one event per arming; solicited-only ignores unsolicited successes. */
static void cq_arming(void)
{
	struct ivrdma_cq_view v;
	struct ivrdma_cq_slot *s = cq_fresh(0, CQ_ENTRIES, &v);
	struct ivrdma_cqe e = cqe_of(1);

	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSHED, "not armed: no wake");
	s->flags = IVRDMA_CQ_ARMED;
	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSH_WAKE, "armed: wake");
	CHECK(s->flags == IVRDMA_CQ_EVENT, "ARMED became EVENT: %#x", s->flags);
	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSHED, "one wake per arming");
	s->flags = IVRDMA_CQ_ARMED | IVRDMA_CQ_ARMED_SOLICITED;
	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSHED, "unsolicited success: no wake");
	e.status = IBV_WC_REM_ACCESS_ERR;
	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSH_WAKE, "an error wakes a solicited arming");
	s->flags = IVRDMA_CQ_ARMED | IVRDMA_CQ_ARMED_SOLICITED;
	e.status = IBV_WC_SUCCESS;
	e.solicited = 1;
	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSH_WAKE, "solicited: wake");
}

static void cq_view_checks(void)
{
	struct ivrdma_cq_view v;
	struct ivrdma_cq_slot *s = cq_fresh(0, CQ_ENTRIES, &v);

	CHECK(ivrdma_cq_view(&region, 0, owner + 1, &v) == -ENOENT, "another owner's CQ");
	s->geometry = ivrdma_cq_geometry(0, s->ring_offset, 23);
	CHECK(ivrdma_cq_view(&region, 0, owner, &v) == -EPROTO, "2^23 entries: too many");
	s->geometry = ivrdma_cq_geometry(0, SIZE - 64, 3);
	CHECK(ivrdma_cq_view(&region, 0, owner, &v) == -EPROTO, "ring outside the chunks");
	s->geometry = 0;
	CHECK(ivrdma_cq_view(&region, 0, owner, &v) == -EPROTO, "no geometry (the header)");
	s->geometry = ivrdma_cq_geometry(0, s->ring_offset, 3);
	s->prod = ivrdma_cq_epoch_base(1);
	REQUIRE(ivrdma_cq_view(&region, 0, owner, &v) == 0, "view");
	CHECK(ivrdma_cq_push(&v, &(struct ivrdma_cqe){0}) == IVRDMA_CQ_PUSH_FULL &&
		  (s->flags & IVRDMA_CQ_OVERFLOW),
	      "prod in an epoch no geometry word names: the CQ is in error");
	s->prod = 0;
	s->hdr.seq++;
	s->geometry = 0; /* as ivrdma_slot_free and ivrdma_slot_alloc leave it */
	CHECK(ivrdma_cq_push(&v, &(struct ivrdma_cqe){0}) == IVRDMA_CQ_PUSH_GONE,
	      "a CQ destroyed since the view was made: gone, nothing written");
}

/* The QP slot whose own receive ring the tests use; the dead peer's QP is slot 0. */
enum { RQ_QP = 4 };

static struct ivrdma_obj_hdr *rq_slot_hdr(bool srq)
{
	if (srq)
		return &((struct ivrdma_srq_slot *)ivrdma_table_entry(&region, &region.srqs, 0))
			    ->hdr;
	return &((struct ivrdma_qp_slot *)ivrdma_table_entry(&region, &region.qps, RQ_QP))->hdr;
}

/* A receive ring over the counters of QP slot RQ_QP (srq: false) or SRQ slot 0, live. */
static void rq_fresh(bool srq, uint64_t start, uint32_t entries, struct ivrdma_rq_view *v)
{
	struct ivrdma_rq_desc d = {.ring_offset = ring_chunk(),
				   .nr_entries = entries,
				   .stride = IVRDMA_RQ_STRIDE(RQ_SGE),
				   .max_sge = RQ_SGE};
	struct ivrdma_obj_hdr *h = rq_slot_hdr(srq);
	struct ivrdma_ring_id id;
	uint64_t *prod, *cons;

	if (srq) {
		struct ivrdma_srq_slot *s = ivrdma_table_entry(&region, &region.srqs, 0);

		prod = &s->prod, cons = &s->cons;
		id.ring = IVRDMA_RING_OF_SRQ(0);
	} else {
		struct ivrdma_qp_slot *s = ivrdma_table_entry(&region, &region.qps, RQ_QP);

		prod = &s->rq_prod, cons = &s->rq_cons;
		id.ring = IVRDMA_RING_OF_QP(RQ_QP);
	}
	h->owner = owner;
	id.seq = ++h->seq;
	*prod = start;
	*cons = IVRDMA_RQ_CONS(start, 0);
	REQUIRE(ivrdma_rq_view(&region, &d, prod, cons, id, v) == 0, "RQ view");
}

/* An initiator taking as QP slot 'slot' (its intent there), or the ring's owner (slot < 0). */
static struct ivrdma_rq_taker taker(int slot)
{
	struct ivrdma_qp_slot *q;

	if (slot < 0)
		return (struct ivrdma_rq_taker){.region = &region};
	q = ivrdma_table_entry(&region, &region.qps, (uint32_t)slot);
	return (struct ivrdma_rq_taker){&region, &q->intent, (uint32_t)slot + 1};
}

static bool cons_at(const struct ivrdma_rq_view *v, uint64_t index)
{
	return IVRDMA_RQ_CONS_INDEX(*v->cons) == IVRDMA_RQ_CONS_INDEX(index);
}

/* Posts receive 'id': two SGEs whose fields all derive from it. */
static int rq_post_id(struct ivrdma_rq_view *v, uint64_t id)
{
	struct ibv_sge sg[RQ_SGE] = {{.addr = id, .length = mix(id), .lkey = ~mix(id)},
				     {.addr = ~id, .length = mix(~id), .lkey = (uint32_t)id}};
	struct ibv_recv_wr wr = {.wr_id = id, .sg_list = sg, .num_sge = RQ_SGE};

	return ivrdma_rq_post(v, &wr);
}

static bool wqe_intact(const struct ivrdma_recv_wqe *w)
{
	uint64_t id = w->wr_id;

	return w->num_sge == RQ_SGE && w->sge[0].addr == id && w->sge[0].length == mix(id) &&
	       w->sge[0].lkey == ~mix(id) && w->sge[1].addr == ~id &&
	       w->sge[1].length == mix(~id) && w->sge[1].lkey == (uint32_t)id;
}

static bool refuse(const struct ivrdma_recv_wqe *w, void *arg)
{
	return false;
}

/* My intent holds the receive at 'index' as TAKEN (after a take), or nothing (IDLE). */
static bool intent_is(const struct ivrdma_rq_taker *t, uint32_t state, uint64_t index)
{
	uint64_t w = t->intent->word;

	return IVRDMA_INTENT_STATE(w) == state &&
	       (state == IVRDMA_INTENT_IDLE ||
		IVRDMA_INTENT_INDEX(w) == IVRDMA_RQ_CONS_INDEX(index));
}

static void rq_laps(bool srq, uint64_t start)
{
	struct ivrdma_rq_taker t = taker(1);
	struct ivrdma_rq_view v;
	union ivrdma_recv_wqe_buf b;
	uint64_t next = 0, want = 0, idx;
	int rc;

	rq_fresh(srq, start, RQ_ENTRIES, &v);
	CHECK(ivrdma_rq_take(&v, &t, &b.w, &idx, NULL, NULL) == 0 &&
		  intent_is(&t, IVRDMA_INTENT_IDLE, 0),
	      "empty");
	for (int lap = 0; lap < 4; lap++) {
		for (uint32_t i = 0; i < RQ_ENTRIES; i++)
			CHECK(rq_post_id(&v, next++) == 0, "post %u", i);
		CHECK(rq_post_id(&v, ~0ull) == ENOMEM, "full at %u", RQ_ENTRIES);
		CHECK(ivrdma_rq_take(&v, &t, &b.w, &idx, refuse, NULL) == -EBUSY, "refused");
		CHECK(cons_at(&v, start + want) && intent_is(&t, IVRDMA_INTENT_IDLE, 0),
		      "a refused receive stays posted");
		while ((rc = ivrdma_rq_take(&v, &t, &b.w, &idx, NULL, NULL)) == 1) {
			CHECK(b.w.wr_id == want && idx == IVRDMA_RQ_CONS_INDEX(start + want) &&
				  wqe_intact(&b.w) && intent_is(&t, IVRDMA_INTENT_TAKEN, idx) &&
				  IVRDMA_RQ_CONS_TAKER(*v.cons) == t.id,
			      "take %llu", (unsigned long long)want);
			want++;
		}
		CHECK(rc == 0 && want == next && cons_at(&v, *v.prod), "drained: rc %d", rc);
	}
	*v.prod = IVRDMA_RQ_CONS_INDEX(*v.cons) + RQ_ENTRIES + 1;
	CHECK(ivrdma_rq_take(&v, &t, &b.w, &idx, NULL, NULL) == -EPROTO, "prod beyond a full ring");
	*v.prod = IVRDMA_RQ_CONS_INDEX(*v.cons) - 1;
	CHECK(ivrdma_rq_take(&v, &t, &b.w, &idx, NULL, NULL) == -EPROTO, "prod behind cons");
}

/* A hint from completions raises the producer's view of cons, never lowers it. */
static void rq_hints(void)
{
	struct ivrdma_rq_view v;
	uint64_t start = IVRDMA_RQ_INDEX_MASK - 2, at = IVRDMA_RQ_CONS_INDEX(start + 5);

	rq_fresh(false, start, RQ_ENTRIES, &v);
	ivrdma_rq_taken_at_least(&v, at); /* across the wrap of the index */
	CHECK(v.cons_seen == at, "raised to %llu", (unsigned long long)v.cons_seen);
	ivrdma_rq_taken_at_least(&v, start + 2);
	CHECK(v.cons_seen == at, "not lowered");
	CHECK(ivrdma_rq_ahead(3, IVRDMA_RQ_INDEX_MASK) == 4 &&
		  ivrdma_rq_ahead(IVRDMA_RQ_INDEX_MASK, 3) == -4 &&
		  ivrdma_rq_ahead(1ull << 47, 0) == 0,
	      "index distances in 47 bits");
}

static void rq_view_checks(void)
{
	struct ivrdma_rq_desc d = {.ring_offset = ring_chunk(),
				   .nr_entries = RQ_ENTRIES,
				   .stride = IVRDMA_RQ_STRIDE(RQ_SGE),
				   .max_sge = RQ_SGE};
	struct ivrdma_ring_id id = {IVRDMA_RING_OF_QP(RQ_QP), 1};
	struct ivrdma_rq_view v;
	uint64_t p = 0, c = 0;

	CHECK(ivrdma_rq_view(&region, &d, &p, &c, id, &v) == 0, "valid");
	d.nr_entries = 6;
	CHECK(ivrdma_rq_view(&region, &d, &p, &c, id, &v) == -EPROTO, "not a power of two");
	d.nr_entries = RQ_ENTRIES;
	d.stride -= 16;
	CHECK(ivrdma_rq_view(&region, &d, &p, &c, id, &v) == -EPROTO, "stride too small");
	d.stride = IVRDMA_RQ_STRIDE(RQ_SGE);
	d.max_sge = IVRDMA_MAX_SGE + 1;
	CHECK(ivrdma_rq_view(&region, &d, &p, &c, id, &v) == -EPROTO, "too many SGEs");
}

/* --- A producer that dies: ivrdmad's side (common/cq_settle.c) ------------ */

enum { DEAD = 5, DEAD_QPN = 0x77 };

static int woken = -1;

static void wake_note(void *arg, int peer)
{
	(void)arg;
	woken = peer;
}

/* The rq_ticket the dead's receive completion carries: receive 41 of QP slot 9, seq 0. */
static uint64_t dead_ticket = IVRDMA_RQ_TICKET(0, 41);

/*
 * QP slot 0 as the dead peer left it: an intent toward CQ slot 0 in
 * 'state', ticket p, for receive 41 of 'ring'.
 */
static struct ivrdma_qp_slot *dead_intent_of(const struct ivrdma_cq_slot *cq, uint32_t state,
					     uint64_t p, struct ivrdma_ring_id ring)
{
	struct ivrdma_qp_slot *q = ivrdma_table_entry(&region, &region.qps, 0);

	memset(q, 0, sizeof(*q));
	q->hdr.owner = ivrdma_owner_tag(DEAD, 1);
	q->qpn = DEAD_QPN;
	q->intent = (struct ivrdma_cqe_intent){.word = IVRDMA_INTENT_WORD(state, 7, 41),
					       .cq = 0,
					       .cq_seq = cq->hdr.seq,
					       .qp_num = 9,
					       .ticket = p,
					       .wr_id = 0xdead,
					       .ring = ring.ring,
					       .ring_seq = ring.seq,
					       .opcode = IBV_WC_RECV};
	return q;
}

static void dead_intent(const struct ivrdma_cq_slot *cq, uint32_t state, uint64_t p)
{
	dead_intent_of(cq, state, p, (struct ivrdma_ring_id){IVRDMA_RING_OF_QP(9), 0});
}

/* The entry at *cons is the dead sender's receive, in error, as ivrdmad writes it. */
static bool dead_cqe_at(struct ivrdma_cq_view *v, uint64_t *cons)
{
	struct cq_ring r = cq_current(v->slot);
	const struct ivrdma_cqe *e = ivrdma_cq_ready(r.ring, r.mask, *cons);

	if (!e || e->wr_id != 0xdead || e->status != IBV_WC_GENERAL_ERR || !e->sender_died ||
	    e->src_qp != DEAD_QPN || e->qp_num != 9 || e->rq_ticket != dead_ticket ||
	    e->slid != 7 || e->opcode != IBV_WC_RECV)
		return false;
	ivrdma_cq_hand_back(v->slot, ++*cons);
	return true;
}

static uint32_t settle(void)
{
	return ivrdma_cq_settle(&region, &(struct ivrdma_gone){.peer = DEAD}, 7, wake_note, NULL);
}

/* Every state an intent can be left in, each against the entry it may have left. */
static void cq_settle_states(void)
{
	struct ivrdma_cq_view v;
	struct ivrdma_cq_slot *s = cq_fresh(100, CQ_ENTRIES, &v);
	struct cq_ring r = cq_current(s);
	uint64_t cons = 100, id;
	struct ivrdma_cqe e = cqe_of(1);

	dead_intent(s, IVRDMA_INTENT_TAKEN, 0); /* no ticket: a new one */
	CHECK(settle() == 1 && s->prod == 101 && dead_cqe_at(&v, &cons), "TAKEN: pushed afresh");
	dead_intent(s, IVRDMA_INTENT_RESERVING, 101); /* its CAS never happened */
	CHECK(settle() == 1 && s->prod == 102 && dead_cqe_at(&v, &cons),
	      "RESERVING, prod not past p: pushed afresh");
	s->prod = 103; /* won ticket 102 (by the dead, or a live one not yet claimed) */
	s->flags = IVRDMA_CQ_ARMED;
	dead_intent(s, IVRDMA_INTENT_RESERVING, 102);
	CHECK(settle() == 1 && s->prod == 103 && dead_cqe_at(&v, &cons) && woken == 0,
	      "RESERVING, won, not claimed: written in ticket 102, the armed owner woken");
	CHECK(r.ring[102 & r.mask].seq == 103, "published with its ticket");
	s->prod = 104; /* the dead claimed 103 */
	r.ring[103 & r.mask].seq = ivrdma_cq_claim_seq(1, 103);
	dead_intent(s, IVRDMA_INTENT_RESERVING, 103);
	CHECK(settle() == 1 && s->prod == 104 && dead_cqe_at(&v, &cons),
	      "claimed before its CLAIMED store: written in its ticket");
	s->prod = 105;
	r.ring[104 & r.mask].seq = ivrdma_cq_claim_seq(1, 104);
	dead_intent(s, IVRDMA_INTENT_CLAIMED, 104);
	CHECK(settle() == 1 && s->prod == 105 && dead_cqe_at(&v, &cons), "CLAIMED: its ticket");
	CHECK(ivrdma_cq_push(&v, &e) == IVRDMA_CQ_PUSHED && cq_take(&v, &cons, &id) && id == 1,
	      "a push after: the next ticket");
	dead_intent(s, IVRDMA_INTENT_CLAIMED, 105); /* ... and published it itself */
	CHECK(settle() == 0 && s->prod == 106, "CLAIMED and published: nothing written");
	s->prod = 107; /* 106 won and claimed by someone else, the dead lost it */
	r.ring[106 & r.mask].seq = ivrdma_cq_claim_seq(0, 106);
	dead_intent(s, IVRDMA_INTENT_RESERVING, 106);
	CHECK(settle() == 1 && s->prod == 108 &&
		  r.ring[106 & r.mask].seq == ivrdma_cq_claim_seq(0, 106),
	      "RESERVING a ticket another claimed: a new one, the other's left alone");
	e = cqe_of(2); /* the other publishes */
	e.seq = 107;
	r.ring[106 & r.mask] = e;
	CHECK(cq_take(&v, &cons, &id) && id == 2 && dead_cqe_at(&v, &cons) && cons == s->prod,
	      "the other's, then the dead's");
	dead_intent(s, IVRDMA_INTENT_TAKEN, 0);
	s->hdr.owner = ivrdma_owner_tag(DEAD, 1);
	CHECK(settle() == 0 && s->prod == 108, "the dead peer's own CQ: left to reclaim");
	s->hdr.owner = owner;
	s->hdr.seq++;
	CHECK(settle() == 0 && s->prod == 108, "a CQ destroyed and made again: not the same");
}

/*
 * An intent left TAKING receive 41: the dead took it only if its CAS did
 * (cons at 42 naming it), or if a successor found it there and recorded
 * it TAKEN; a cons at or past 41 named otherwise means its CAS failed.
 */
static void cq_settle_taking(bool srq)
{
	struct ivrdma_cq_view cv;
	struct ivrdma_cq_slot *s = cq_fresh(0, CQ_ENTRIES, &cv);
	struct ivrdma_rq_taker next = taker(2);
	struct ivrdma_rq_view v;
	struct ivrdma_qp_slot *q;
	union ivrdma_recv_wqe_buf b;
	uint64_t cons = 0, idx;

	rq_fresh(srq, 40, RQ_ENTRIES, &v);
	for (uint64_t id = 40; id < 44; id++)
		REQUIRE(rq_post_id(&v, id) == 0, "post");
	dead_ticket = srq ? 0 : IVRDMA_RQ_TICKET(v.id.seq, 41);
	q = dead_intent_of(s, IVRDMA_INTENT_TAKING, 0, v.id);
	*v.cons = IVRDMA_RQ_CONS(41, 0);
	CHECK(settle() == 0, "cons at its index: its CAS never happened");
	*v.cons = IVRDMA_RQ_CONS(42, 3);
	CHECK(settle() == 0, "cons one past it, naming another: that one took it");
	*v.cons = IVRDMA_RQ_CONS(44, 3);
	CHECK(settle() == 0, "cons further on, no successor recorded it: its CAS failed");
	*v.cons = IVRDMA_RQ_CONS(42, 1);
	CHECK(settle() == 1 && dead_cqe_at(&cv, &cons), "cons one past it, naming it: it took it");

	CHECK(ivrdma_rq_take(&v, &next, &b.w, &idx, NULL, NULL) == 1 && b.w.wr_id == 42 &&
		  IVRDMA_INTENT_STATE(q->intent.word) == IVRDMA_INTENT_TAKEN &&
		  IVRDMA_INTENT_INDEX(q->intent.word) == 41 && *v.cons == IVRDMA_RQ_CONS(43, 3),
	      "the next taker recorded the dead's take of 41 TAKEN");
	CHECK(settle() == 1 && dead_cqe_at(&cv, &cons), "... and ivrdmad wrote its completion");

	q = dead_intent_of(s, IVRDMA_INTENT_TAKING, 0, v.id);
	q->intent.word = IVRDMA_INTENT_WORD(IVRDMA_INTENT_TAKING, 7, 42);
	*v.cons = IVRDMA_RQ_CONS(43, 1);
	ivrdma_rq_drop_all(&v);
	CHECK(IVRDMA_INTENT_STATE(q->intent.word) == IVRDMA_INTENT_TAKEN &&
		  *v.cons == IVRDMA_RQ_CONS(44, 0),
	      "the owner dropping its receives records the last taker too");
	dead_ticket = srq ? 0 : IVRDMA_RQ_TICKET(v.id.seq, 42);
	CHECK(settle() == 1 && dead_cqe_at(&cv, &cons), "its completion written");

	q = dead_intent_of(s, IVRDMA_INTENT_TAKING, 0, v.id);
	REQUIRE(rq_post_id(&v, 44) == 0, "post");
	*v.cons = IVRDMA_RQ_CONS(44, 1); /* the dead took 43, yet its intent says 41 */
	CHECK(ivrdma_rq_take(&v, &next, &b.w, &idx, NULL, NULL) == 1 &&
		  IVRDMA_INTENT_STATE(q->intent.word) == IVRDMA_INTENT_TAKING && settle() == 0,
	      "a TAKING at another index is not the one cons names: left alone");
	q = dead_intent_of(s, IVRDMA_INTENT_TAKING, 0, v.id);
	*v.cons = IVRDMA_RQ_CONS(42, 1);
	rq_slot_hdr(srq)->owner = 0;
	CHECK(settle() == 0, "its ring destroyed since: no completion (the receive went with it)");
	CHECK(s->prod == cons, "nothing else written");
}

/* --- Stress: threads as the rings' participants ------------------------- */

enum { PRODUCERS = 3, CONSUMERS = 3, PER_THREAD = 50000 };

struct cq_producer {
	struct ivrdma_cq_view v; /* each producer its own view, as each peer has */
	uint64_t id;		 /* thread index << 32 */
	atomic_int *done;	 /* shared: producers that pushed everything */
};

static void *cq_produce(void *arg)
{
	struct cq_producer *p = arg;

	for (uint64_t i = 0; i < PER_THREAD; i++) {
		struct ivrdma_cqe e = cqe_of(p->id | i);

		while (ivrdma_cq_push(&p->v, &e) == IVRDMA_CQ_PUSH_FULL)
			sched_yield(); /* the owner will poll */
	}
	atomic_fetch_add(p->done, 1); /* after its pushes: an empty ring then stays empty */
	return NULL;
}

/*
 * Several producers, one consumer: each producer's entries arrive in its
 * order, none lost (the consumer stops when the producers are done and the
 * ring is empty: a lost entry ends the test, it does not hang it).
 */
static void cq_stress(void)
{
	struct cq_producer prod[PRODUCERS];
	pthread_t t[PRODUCERS];
	uint64_t next[PRODUCERS] = {0}, cons = (0xfffeull << 48) + 1000, id, got = 0;
	struct ivrdma_cq_view v;
	struct ivrdma_cq_slot *s = cq_fresh(cons, CQ_ENTRIES, &v);
	atomic_int done = 0;

	for (int i = 0; i < PRODUCERS; i++) {
		REQUIRE(ivrdma_cq_view(&region, 0, owner, &prod[i].v) == 0, "view");
		prod[i].id = (uint64_t)i << 32;
		prod[i].done = &done;
		REQUIRE(pthread_create(&t[i], NULL, cq_produce, &prod[i]) == 0, "thread");
	}
	for (;;) {
		bool fin = atomic_load(&done) == PRODUCERS;

		if (!cq_take(&v, &cons, &id)) {
			if (fin)
				break;
			sched_yield();
			continue;
		}
		got++;
		REQUIRE(id >> 32 < PRODUCERS && (uint32_t)id == next[id >> 32]++,
			"producer %llu: entry %u out of order", (unsigned long long)(id >> 32),
			(uint32_t)id);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	CHECK(got == PRODUCERS * (uint64_t)PER_THREAD && s->prod == cons,
	      "every entry arrived once: %llu", (unsigned long long)got);
}

/*
 * Resizes while the producers push (ivrdma_layout.h, "Resizing"): the
 * owner switches to a new ring every few hundred entries, alternating
 * sizes, and drains each old ring before the next; the epochs run from
 * 0xfff0 over 2^64 to 0x0018. Each producer's entries arrive once, in
 * order, and the rings of drained epochs go back to the allocator (a
 * reused chunk starts zeroed, as the provider's).
 */
enum { RESIZES = 40 };

static uint32_t cq_resize(struct ivrdma_cq_slot *s, struct cq_ring *rings, int last, int k)
{
	int64_t c = ivrdma_chunk_alloc(&region, 1, owner, 0);
	uint32_t log2_n = 3 + (uint32_t)k % 4;
	uint64_t off;

	REQUIRE(c >= 0, "chunk");
	off = ivrdma_chunk_offset(&region, (uint32_t)c);
	shm_zero_words_relaxed(ivrdma_chunk_ptr(&region, (uint32_t)c), 8192);
	rings[last].end = ivrdma_cq_switch(
	    s, ivrdma_cq_geometry((uint16_t)(ivrdma_cq_epoch(rings[last].base) + 1), off, log2_n));
	rings[last + 1] = cq_current(s);
	return (uint32_t)c;
}

static void cq_resize_stress(void)
{
	struct cq_producer prod[PRODUCERS];
	struct cq_ring rings[RESIZES + 1];
	uint32_t chunks[RESIZES + 1];
	pthread_t t[PRODUCERS];
	uint64_t next[PRODUCERS] = {0}, cons = ivrdma_cq_epoch_base(0xfff0) + 5, id, got = 0;
	struct ivrdma_cq_view v;
	struct ivrdma_cq_slot *s = cq_fresh(cons, CQ_ENTRIES, &v);
	atomic_int done = 0;
	int rd = 0, last = 0;

	rings[0] = cq_current(s);
	chunks[0] = (uint32_t)((s->ring_offset - region.chunk_area_offset) >> region.chunk_shift);
	for (int i = 0; i < PRODUCERS; i++) {
		REQUIRE(ivrdma_cq_view(&region, 0, owner, &prod[i].v) == 0, "view");
		prod[i].id = (uint64_t)i << 32;
		prod[i].done = &done;
		REQUIRE(pthread_create(&t[i], NULL, cq_produce, &prod[i]) == 0, "thread");
	}
	for (;;) {
		bool fin = atomic_load(&done) == PRODUCERS;

		if (last < RESIZES && got > (uint64_t)(last + 1) * 3000) {
			chunks[last + 1] = cq_resize(s, rings, last, last);
			last++;
		}
		while (rd < last && cons == rings[rd].end) { /* drained: on to the next */
			ivrdma_chunk_free(&region, chunks[rd], 1, owner);
			cons = rings[++rd].base;
			ivrdma_cq_hand_back(s, cons);
		}
		if (!cq_take_from(&rings[rd], s, &cons, &id)) {
			if (fin && rd == last)
				break;
			sched_yield();
			continue;
		}
		got++;
		REQUIRE(id >> 32 < PRODUCERS && (uint32_t)id == next[id >> 32]++,
			"producer %llu: entry %u out of order", (unsigned long long)(id >> 32),
			(uint32_t)id);
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	CHECK(got == PRODUCERS * (uint64_t)PER_THREAD && s->prod == cons,
	      "every entry arrived once across %d resizes: %llu", last, (unsigned long long)got);
	CHECK(last == RESIZES && ivrdma_cq_epoch(cons) == (uint16_t)(0xfff0 + RESIZES),
	      "the epochs crossed 2^64: %d resizes, epoch %#x", last, ivrdma_cq_epoch(cons));
}

struct rq_consumer {
	struct ivrdma_rq_view v;  /* each consumer its own view, as each initiator has */
	struct ivrdma_rq_taker t; /* ... and its own QP slot, whose intent records its takes */
	atomic_uchar *taken;	  /* shared: one flag per receive */
	atomic_bool *done;	  /* shared: the producer posted everything */
	uint64_t count;
};

enum { RQ_TOTAL = PER_THREAD * CONSUMERS };

static void *rq_consume(void *arg)
{
	struct rq_consumer *c = arg;
	uint64_t last = 0, idx;
	union ivrdma_recv_wqe_buf b;

	for (;;) {
		bool fin = atomic_load(c->done);
		int rc = ivrdma_rq_take(&c->v, &c->t, &b.w, &idx, NULL, NULL);

		if (rc == 0) {
			if (fin)
				break; /* empty after the last post: for good */
			sched_yield();
			continue;
		}
		REQUIRE(rc == 1 && wqe_intact(&b.w) && b.w.wr_id < RQ_TOTAL, "take: rc %d", rc);
		REQUIRE(!atomic_exchange(&c->taken[b.w.wr_id], 1), "receive %llu taken twice",
			(unsigned long long)b.w.wr_id);
		CHECK(!c->count || b.w.wr_id > last, "one consumer's receives in order");
		last = b.w.wr_id;
		c->count++;
	}
	return NULL;
}

/* One producer (the owner posting), several consumers (initiators) on an SRQ's ring. */
static void rq_stress(void)
{
	static atomic_uchar taken[RQ_TOTAL];
	atomic_bool done = false;
	struct rq_consumer c[CONSUMERS];
	pthread_t t[CONSUMERS];
	struct ivrdma_rq_view v;
	uint64_t sum = 0;

	rq_fresh(true, (1ull << 47) - 1000, RQ_ENTRIES, &v);
	for (int i = 0; i < CONSUMERS; i++) {
		c[i] =
		    (struct rq_consumer){.v = v, .t = taker(i + 1), .taken = taken, .done = &done};
		REQUIRE(pthread_create(&t[i], NULL, rq_consume, &c[i]) == 0, "thread");
	}
	for (uint64_t id = 0; id < RQ_TOTAL; id++) {
		int rc;

		while ((rc = rq_post_id(&v, id)) == ENOMEM)
			sched_yield(); /* the initiators will take */
		REQUIRE(rc == 0, "post: %d", rc);
	}
	atomic_store(&done, true);
	for (int i = 0; i < CONSUMERS; i++) {
		pthread_join(t[i], NULL);
		sum += c[i].count;
	}
	CHECK(sum == RQ_TOTAL && cons_at(&v, *v.prod), "every receive taken once: %llu",
	      (unsigned long long)sum);
	for (int i = 0; i < CONSUMERS; i++)
		CHECK(IVRDMA_INTENT_STATE(c[i].t.intent->word) == IVRDMA_INTENT_IDLE,
		      "consumer %d's intent ends IDLE", i);
}

int main(void)
{
	store.base = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(store.base != MAP_FAILED, "mmap");
	store.size = SIZE;
	region_fresh();
	for (size_t i = 0; i < sizeof(cq_starts) / sizeof(cq_starts[0]); i++)
		cq_laps(cq_starts[i]);
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		rq_laps(false, starts[i]);
		rq_laps(true, starts[i]);
	}
	cq_arming();
	cq_view_checks();
	cq_settle_states();
	cq_settle_taking(false);
	cq_settle_taking(true);
	rq_hints();
	rq_view_checks();
	cq_stress();
	cq_resize_stress();
	rq_stress();
	return check_summary();
}
