// SPDX-License-Identifier: MIT
/*
 * The shared rings: CQs (many producers, one consumer) and receive queues
 * (one producer, many consumers). The protocols are described next to the
 * formats in ivrdma_layout.h; here every descriptor read from the region
 * is validated before it becomes a pointer.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ivrdma.h"
#include "shm_atomic.h"

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

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

/*
 * Reserves ticket p (*out) in its ring (*ring, *mask): 1, or 0 with
 * nothing reserved. p is stale when prod moved on since it was read:
 * only a prod unchanged around the failing check proves the ring full
 * (other producers pushed and the owner polled past an old p, and a
 * resize moves prod to a new epoch). -1: the CQ is gone.
 */
static int cq_reserve(struct ivrdma_cq_view *v, uint64_t *out, struct ivrdma_cqe **ring,
		      uint32_t *mask)
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

int ivrdma_cq_push(struct ivrdma_cq_view *v, const struct ivrdma_cqe *e)
{
	struct ivrdma_cqe *ring, *dst;
	uint32_t mask;
	uint64_t p;
	int got = cq_reserve(v, &p, &ring, &mask);

	if (got < 0)
		return IVRDMA_CQ_PUSH_GONE;
	if (!got)
		return cq_overflow(v);
	dst = &ring[p & mask];
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
 * The consumer's side, one consumer at a time (the CQ's lock): the entry
 * at cons once its producer has published it, else NULL.
 */
const struct ivrdma_cqe *ivrdma_cq_ready(const struct ivrdma_cqe *ring, uint32_t mask,
					 uint64_t cons)
{
	const struct ivrdma_cqe *e = &ring[cons & mask];

	return shm_load_acquire64(&e->seq) == cons + 1 ? e : NULL;
}

/* The entries below cons are read: producers may reuse them. */
void ivrdma_cq_hand_back(struct ivrdma_cq_slot *s, uint64_t cons)
{
	shm_store_release64(&s->cons, cons);
}

/*
 * The owner's side of a resize (ivrdma_layout.h): the new ring becomes the
 * current one with the next epoch, and prod moves to that epoch's first
 * ticket. Returns S, the first ticket the old ring will never hold.
 */
uint64_t ivrdma_cq_switch(struct ivrdma_cq_slot *s, uint64_t geometry)
{
	shm_store_relaxed64(&s->prev_geometry, shm_load_relaxed64(&s->geometry));
	shm_store_release64(&s->geometry, geometry);
	/* seq_cst: a producer that loads the new epoch sees both stores above. */
	return shm_exchange_seq_cst64(&s->prod, ivrdma_cq_epoch_base(ivrdma_cq_epoch(geometry)));
}

int ivrdma_rq_view(const struct ivrdma_region *r, const struct ivrdma_rq_desc *d, uint64_t *prod,
		   uint64_t *cons, struct ivrdma_rq_view *v)
{
	struct ivrdma_rq_desc c;

	memcpy(&c, d, sizeof(c)); /* one read; validate the copy */
	/* Entries 16-byte aligned, the ring 64: WQEs are written and read in place. */
	if (!is_pow2(c.nr_entries) || c.nr_entries > IVRDMA_MAX_WR * 2u ||
	    c.max_sge > IVRDMA_MAX_SGE || c.stride < IVRDMA_RQ_STRIDE(c.max_sge) || c.stride % 16 ||
	    c.ring_offset % 64)
		return -EPROTO;
	v->ring = ivrdma_chunk_span(r, c.ring_offset, (uint64_t)c.nr_entries * c.stride);
	if (!v->ring)
		return -EPROTO;
	v->prod = prod;
	v->cons = cons;
	v->mask = c.nr_entries - 1;
	v->stride = c.stride;
	v->max_sge = c.max_sge;
	/*
	 * Not 0: near a wrap of the counters, 0 would look ahead of cons to
	 * ivrdma_rq_take. cons is never ahead of either counter.
	 */
	v->cons_seen = v->prod_seen = shm_load_acquire64(cons);
	return 0;
}

/* The producer learnt, not from cons, that at least 'taken' entries are consumed. */
void ivrdma_rq_taken_at_least(struct ivrdma_rq_view *v, uint64_t taken)
{
	if ((int64_t)(taken - v->cons_seen) > 0)
		v->cons_seen = taken;
}

/*
 * Single producer: the caller serialises posts to one ring. cons is read
 * only when the ring looks full by what was last seen of it, so the
 * initiators' cache line with cons is not pulled over on every post.
 */
int ivrdma_rq_post(struct ivrdma_rq_view *v, const struct ibv_recv_wr *wr)
{
	uint64_t p = shm_load_relaxed64(v->prod);
	union ivrdma_recv_wqe_buf b;

	if ((uint32_t)wr->num_sge > v->max_sge || wr->num_sge < 0)
		return EINVAL;
	if (p - v->cons_seen > v->mask) {
		v->cons_seen = shm_load_acquire64(v->cons);
		if (p - v->cons_seen > v->mask)
			return ENOMEM;
	}
	b.w.wr_id = wr->wr_id;
	b.w.num_sge = (uint32_t)wr->num_sge;
	b.w.reserved = 0;
	for (int i = 0; i < wr->num_sge; i++) {
		b.w.sge[i].addr = wr->sg_list[i].addr;
		b.w.sge[i].length = wr->sg_list[i].length;
		b.w.sge[i].lkey = wr->sg_list[i].lkey;
	}
	shm_write_words_relaxed((uint64_t *)(v->ring + (p & v->mask) * v->stride), b.words,
				IVRDMA_RQ_STRIDE(wr->num_sge) / 8);
	shm_store_release64(v->prod, p + 1);
	return 0;
}

static uint8_t *rq_entry(const struct ivrdma_rq_view *v, uint64_t i)
{
	return v->ring + (i & v->mask) * v->stride;
}

/*
 * Takes the oldest receive: 1 with *out filled, 0 if none is posted,
 * -EPROTO if the ring's indices or the WQE make no sense, -EBUSY if
 * 'usable' (when not NULL) refused the WQE, which then stays posted. 'out'
 * has room for IVRDMA_MAX_SGE SGEs; *index is the entry's. 'usable' sees
 * a copy that may be stale (another consumer took the entry): only a
 * copy that the CAS then confirms counts, so it must not act on it.
 *
 * The owner stores prod on every post, so reading it costs a cache line
 * from the owner each time. What this view last saw of it is enough while
 * it is ahead of cons: the entries below it were published by then. And
 * a receive posted that long ago stays untouched until the ring wraps:
 * the next one is fetched now, off the path of the next message.
 */
int ivrdma_rq_take(struct ivrdma_rq_view *v, struct ivrdma_recv_wqe *out, uint64_t *index,
		   ivrdma_rq_usable_fn *usable, const void *arg)
{
	uint64_t c = shm_load_acquire64(v->cons);

	for (;;) {
		uint64_t p = v->prod_seen;
		uint32_t n = (uint32_t)IVRDMA_RQ_STRIDE(v->max_sge);

		if ((int64_t)(p - c) <= 0) {
			p = shm_load_acquire64(v->prod);
			v->prod_seen = p;
		}
		if (p == c)
			return 0;
		if (p - c > (uint64_t)v->mask + 1) {
			/* c may be stale (other consumers moved on): only a
			 * cons unchanged around the load of p proves nonsense. */
			uint64_t c2 = shm_load_acquire64(v->cons);

			if (c2 != c) {
				c = c2;
				continue;
			}
			return -EPROTO;
		}
		/* Copy first: entry c cannot be reused before cons passes it. */
		shm_read_words_relaxed((uint64_t *)out, (const uint64_t *)rq_entry(v, c), n / 8);
		if (usable && out->num_sge <= v->max_sge && !usable(out, arg)) {
			uint64_t c2 = shm_load_acquire64(v->cons);

			if (c2 == c)
				return -EBUSY;
			c = c2; /* the copy was stale: look again */
			continue;
		}
		if (shm_cas64(v->cons, &c, c + 1)) {
			if (c + 1 < p)
				__builtin_prefetch(rq_entry(v, c + 1));
			*index = c;
			return out->num_sge <= v->max_sge ? 1 : -EPROTO;
		}
	}
}
