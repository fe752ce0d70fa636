// SPDX-License-Identifier: MIT
/*
 * Pushing into a CQ ring: reserve a ticket, claim its entry, write it,
 * publish it (ivrdma_layout.h, "A completion queue entry"). Every
 * descriptor read from the region is validated before it becomes a
 * pointer. ivrdmad's side of a dead producer is cq_settle.c.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <infiniband/verbs.h>

#include "cq_producer.h"
#include "recv_take.h"
#include "shm_atomic.h"

atomic_int ivrdma_cq_test_stop;

/*
 * The ring a geometry word names, validated; NULL if it lies outside the
 * chunks or is too large. A word validated before is trusted again: the
 * ring of an epoch never changes, and the view remembers one word.
 */
static struct ivrdma_cqe *geometry_ring(struct ivrdma_cq_view *v, uint64_t g, uint32_t *mask)
{
	uint32_t log2_n = ivrdma_cq_geometry_log2(g);
	struct ivrdma_cqe *ring;

	if (log2_n > 22) /* IVRDMA_MAX_CQE (2^22 - 1) rounded up to a power of two */
		return NULL;
	*mask = (1u << log2_n) - 1;
	if (atomic_load_explicit(&v->geometry, memory_order_relaxed) == g)
		return (struct ivrdma_cqe *)(v->region->base + ivrdma_cq_geometry_offset(g));
	ring = ivrdma_chunk_span(v->region, ivrdma_cq_geometry_offset(g),
				 ((uint64_t)*mask + 1) * sizeof(struct ivrdma_cqe));
	if (ring)
		atomic_store_explicit(&v->geometry, g, memory_order_relaxed);
	return ring;
}

int ivrdma_cq_view(const struct ivrdma_region *r, uint32_t idx, uint32_t owner,
		   struct ivrdma_cq_view *v)
{
	struct ivrdma_cq_slot *s = ivrdma_table_entry(r, &r->cqs, idx);
	uint32_t mask;

	if (!s || shm_load_acquire32(&s->hdr.owner) != owner)
		return -ENOENT;
	v->slot = s;
	v->region = r;
	v->index = idx;
	v->owner = owner;
	v->seq = shm_load_acquire32(&s->hdr.seq);
	/* Matches no word geometry_ring accepts (log2 63): the first one is validated. */
	atomic_init(&v->geometry, UINT64_MAX);
	/* Not 0: cons may be in a late epoch, and 0 would look ahead of it. */
	atomic_init(&v->cons_seen, shm_load_acquire64(&s->cons));
	/* The current ring must make sense now; later rings are checked as met. */
	if (!geometry_ring(v, shm_load_acquire64(&s->geometry), &mask))
		return -EPROTO;
	return 0;
}

/*
 * The ring of p's epoch (ivrdma_layout.h, "Which ring"): geometry, or the
 * one before it. NULL: neither is p's, or the word found is invalid.
 */
static struct ivrdma_cqe *ring_of(struct ivrdma_cq_view *v, uint64_t p, uint32_t *mask)
{
	uint64_t g = shm_load_acquire64(&v->slot->geometry);

	if (ivrdma_cq_epoch(g) != ivrdma_cq_epoch(p))
		g = shm_load_relaxed64(&v->slot->prev_geometry);
	if (ivrdma_cq_epoch(g) != ivrdma_cq_epoch(p))
		return NULL;
	return geometry_ring(v, g, mask);
}

/* Does this CQE fire the CQ's arming? Then ARMED becomes EVENT, once. */
static bool cq_fire(struct ivrdma_cq_slot *s, const struct ivrdma_cqe *e)
{
	uint32_t f = shm_load_acquire32(&s->flags);

	while (f & IVRDMA_CQ_ARMED) {
		uint32_t fired =
		    (f & ~(IVRDMA_CQ_ARMED | IVRDMA_CQ_ARMED_SOLICITED)) | IVRDMA_CQ_EVENT;

		if ((f & IVRDMA_CQ_ARMED_SOLICITED) && !e->solicited && e->status == IBV_WC_SUCCESS)
			return false;
		if (shm_cas32(&s->flags, &f, fired))
			return true;
	}
	return false;
}

/*
 * Room for entry p in a ring of mask + 1 entries? First by what this view
 * last saw of cons: cons only grows, so an old value errs on the side of
 * "full", and only then is the owner's cache line read. A cons of an
 * earlier epoch counts as the first ticket of p's: a new ring is empty
 * until the consumer reaches it.
 */
static bool cq_has_room(struct ivrdma_cq_view *v, uint64_t p, uint32_t mask)
{
	uint64_t base = ivrdma_cq_epoch_base(ivrdma_cq_epoch(p));
	uint64_t c = atomic_load_explicit(&v->cons_seen, memory_order_relaxed);

	if ((int64_t)(base - c) > 0)
		c = base;
	if (p - c <= mask)
		return true;
	c = shm_load_acquire64(&v->slot->cons);
	atomic_store_explicit(&v->cons_seen, c, memory_order_relaxed);
	if ((int64_t)(base - c) > 0)
		c = base;
	return p - c <= mask;
}

/* Full, or a slot that makes no sense: as on hardware, the CQ is in error. */
static int cq_overflow(struct ivrdma_cq_view *v)
{
	shm_fetch_or32(&v->slot->flags, IVRDMA_CQ_OVERFLOW);
	return IVRDMA_CQ_PUSH_FULL;
}

/* The CQ was destroyed (its slot freed, perhaps taken again) since the view was made. */
static bool cq_gone(const struct ivrdma_cq_view *v)
{
	return shm_load_acquire32(&v->slot->hdr.owner) != v->owner ||
	       shm_load_acquire32(&v->slot->hdr.seq) != v->seq;
}

/* The intent says which ticket is about to be CASed: written before the CAS. */
static void intent_reserving(struct ivrdma_cqe_intent *in, uint64_t p)
{
	if (!in)
		return;
	shm_store_relaxed64(&in->ticket, p);
	ivrdma_intent_to(in, IVRDMA_INTENT_RESERVING);
}

/*
 * Reserves ticket p (*out) in its ring (*ring, *mask): 1, or 0 with
 * nothing reserved. p is stale when prod moved on since it was read:
 * only a prod unchanged around the failing check proves the ring full
 * (other producers pushed and the owner polled past an old p, and a
 * resize moves prod to a new epoch). -1: the CQ is gone.
 */
static int cq_reserve(struct ivrdma_cq_view *v, struct ivrdma_cqe_intent *in, uint64_t *out,
		      struct ivrdma_cqe **ring, uint32_t *mask)
{
	uint64_t p = shm_load_acquire64(&v->slot->prod);

	for (;;) {
		*ring = ring_of(v, p, mask);
		if (!*ring || !cq_has_room(v, p, *mask)) {
			uint64_t p2 = shm_load_acquire64(&v->slot->prod);

			if (p2 != p) {
				p = p2;
				continue;
			}
			return cq_gone(v) ? -1 : 0;
		}
		intent_reserving(in, p);
		/* Success proves p's epoch still current: *ring is ticket p's. */
		if (shm_cas64(&v->slot->prod, &p, p + 1)) {
			*out = p;
			return 1;
		}
	}
}

/* The device clock of completion timestamps (IVRDMA_CQ_TIMESTAMPS): ns. */
uint64_t ivrdma_device_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The entry's fields, then its seq with release: the consumer may take it. */
static int cq_publish(struct ivrdma_cq_view *v, struct ivrdma_cqe *dst, uint64_t p,
		      const struct ivrdma_cqe *e)
{
	memcpy(dst, e, offsetof(struct ivrdma_cqe, seq));
	memcpy((uint8_t *)dst + offsetof(struct ivrdma_cqe, status), &e->status,
	       sizeof(*e) - offsetof(struct ivrdma_cqe, status));
	/* flags is in the line the reservation just took: no line more. */
	if (shm_load_relaxed32(&v->slot->flags) & IVRDMA_CQ_TIMESTAMPS)
		dst->timestamp = ivrdma_device_clock_ns();
	shm_store_release64(&dst->seq, p + 1); /* publishes the entry */
	/*
	 * Publish-then-check-armed against the owner's arm-then-poll: without
	 * a full fence on both sides each can miss the other (store buffering)
	 * and the owner sleeps on a CQE it never hears of.
	 */
	shm_fence_seq_cst();
	return cq_fire(v->slot, e) ? IVRDMA_CQ_PUSH_WAKE : IVRDMA_CQ_PUSHED;
}

/*
 * Claims ticket p's entry. Between the CAS on prod and this one only
 * ivrdmad (cq_settle.c) claims an entry another reserved: a failure means
 * it took ticket p, and publishes it; reserve again.
 */
static bool cq_claim(struct ivrdma_cqe *dst, uint64_t p, uint32_t mask, uint32_t id)
{
	uint64_t seen = ivrdma_cq_free_seq(p, mask + 1);

	return shm_cas64(&dst->seq, &seen, ivrdma_cq_claim_seq(id, p));
}

static int push(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e, struct ivrdma_cqe_intent *in,
		uint32_t id)
{
	struct ivrdma_cqe *ring;
	uint32_t mask;
	uint64_t p;

	for (;;) {
		int got = cq_reserve(v, in, &p, &ring, &mask);

		if (got < 0)
			return IVRDMA_CQ_PUSH_GONE;
		if (!got)
			return cq_overflow(v);
		if (in)
			ivrdma_cq_test_stop_at(IVRDMA_TEST_STOP_RESERVED);
		if (cq_claim(&ring[p & mask], p, mask, id))
			break;
	}
	if (in) {
		ivrdma_intent_to(in, IVRDMA_INTENT_CLAIMED);
		ivrdma_cq_test_stop_at(IVRDMA_TEST_STOP_CLAIMED);
	}
	return cq_publish(v, &ring[p & mask], p, e);
}

int ivrdma_cq_push(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e)
{
	return push(v, e, NULL, 0);
}

int ivrdma_cq_push_daemon(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e)
{
	return push(v, e, NULL, IVRDMA_CQ_CLAIM_DAEMON);
}

int ivrdma_cq_finish(struct ivrdma_cq_view *v, uint64_t p, uint64_t expect,
		     const struct ivrdma_cqe *e)
{
	uint32_t mask;
	struct ivrdma_cqe *ring = ring_of(v, p, &mask);

	if (ring && expect == IVRDMA_CQ_FREE)
		expect = ivrdma_cq_free_seq(p, mask + 1);
	if (!ring || !shm_cas64(&ring[p & mask].seq, &expect,
				ivrdma_cq_claim_seq(IVRDMA_CQ_CLAIM_DAEMON, p)))
		return -1;
	return cq_publish(v, &ring[p & mask], p, e);
}

bool ivrdma_cq_won(struct ivrdma_cq_view *v, uint64_t p)
{
	uint64_t prod = shm_load_acquire64(&v->slot->prod);

	return ivrdma_cq_epoch(prod) == ivrdma_cq_epoch(p) &&
	       (prod & IVRDMA_CQ_LOW_MASK) > (p & IVRDMA_CQ_LOW_MASK);
}

int ivrdma_cq_push_intent(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e,
			  struct ivrdma_cqe_intent *in, uint32_t id)
{
	int rc = push(v, e, in, id);

	ivrdma_intent_to(in, IVRDMA_INTENT_IDLE);
	return rc;
}
