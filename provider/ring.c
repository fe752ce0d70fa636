// SPDX-License-Identifier: MIT
/*
 * The shared rings: the consumer's side of CQs (many producers, one
 * consumer: the producer's is common/cq_producer.c) and receive queues
 * (one producer, many consumers). The protocols are described next to the
 * formats in ivrdma_layout.h; here every descriptor read from the region
 * is validated before it becomes a pointer.
 */
#include <errno.h>
#include <string.h>

#include "ivrdma.h"
#include "shm_atomic.h"

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
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
		   uint64_t *cons, struct ivrdma_ring_id id, struct ivrdma_rq_view *v)
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
	v->region = r;
	v->id = id;
	v->prod = prod;
	v->cons = cons;
	v->mask = c.nr_entries - 1;
	v->stride = c.stride;
	v->max_sge = c.max_sge;
	/*
	 * Not 0: near a wrap of the counters, 0 would look ahead of cons to
	 * ivrdma_rq_take. cons is never ahead of either counter.
	 */
	v->cons_seen = v->prod_seen = IVRDMA_RQ_CONS_INDEX(shm_load_acquire64(cons));
	return 0;
}

/* The producer learnt, not from cons, that at least 'taken' entries are consumed. */
void ivrdma_rq_taken_at_least(struct ivrdma_rq_view *v, uint64_t taken)
{
	if (ivrdma_rq_ahead(taken, v->cons_seen) > 0)
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
	if ((uint64_t)ivrdma_rq_ahead(p, v->cons_seen) > v->mask) {
		v->cons_seen = IVRDMA_RQ_CONS_INDEX(shm_load_acquire64(v->cons));
		if ((uint64_t)ivrdma_rq_ahead(p, v->cons_seen) > v->mask)
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
 * The copy of the entry at cons (*w, updated when it moved): 1, else 0 if
 * none is posted, -EPROTO or -EBUSY as ivrdma_rq_take says.
 */
static int rq_next(struct ivrdma_rq_view *v, uint64_t *w, struct ivrdma_recv_wqe *out,
		   ivrdma_rq_usable_fn *usable, void *arg)
{
	uint32_t n = (uint32_t)IVRDMA_RQ_STRIDE(v->max_sge);

	for (;;) {
		uint64_t c = IVRDMA_RQ_CONS_INDEX(*w), p = v->prod_seen, w2;

		if (ivrdma_rq_ahead(p, c) <= 0) {
			p = shm_load_acquire64(v->prod);
			v->prod_seen = p;
		}
		if (ivrdma_rq_ahead(p, c) == 0)
			return 0;
		/* Copy first: entry c cannot be reused before cons passes it. */
		if ((uint64_t)ivrdma_rq_ahead(p, c) <= (uint64_t)v->mask + 1) {
			shm_read_words_relaxed((uint64_t *)out, (const uint64_t *)rq_entry(v, c),
					       n / 8);
			if (!usable || out->num_sge > v->max_sge || usable(out, arg))
				return 1;
		}
		/*
		 * Nonsense indices, or a refused copy: only a cons unchanged
		 * since *w proves them (c may be stale: others moved on).
		 */
		w2 = shm_load_acquire64(v->cons);
		if (w2 == *w)
			return (uint64_t)ivrdma_rq_ahead(p, c) > (uint64_t)v->mask + 1 ? -EPROTO
										       : -EBUSY;
		*w = w2;
	}
}

/*
 * Takes the oldest receive, as 't': 1 with *out filled, 0 if none is
 * posted, -EPROTO if the ring's indices or the WQE make no sense, -EBUSY
 * if 'usable' (when not NULL) refused the WQE, which then stays posted.
 * 'out' has room for IVRDMA_MAX_SGE SGEs; *index is the entry's. 'usable'
 * sees a copy that may be stale (another consumer took the entry): only a
 * copy that the CAS then confirms counts, so it must not act on it (it may
 * note what it found in 'arg': the last copy it saw is the one taken). The
 * take is on record in t's intent throughout (common/recv_take.h).
 *
 * The owner stores prod on every post, so reading it costs a cache line
 * from the owner each time. What this view last saw of it is enough while
 * it is ahead of cons: the entries below it were published by then.
 */
int ivrdma_rq_take(struct ivrdma_rq_view *v, const struct ivrdma_rq_taker *t,
		   struct ivrdma_recv_wqe *out, uint64_t *index, ivrdma_rq_usable_fn *usable,
		   void *arg)
{
	uint64_t w = shm_load_acquire64(v->cons);
	int rc;

	while ((rc = rq_next(v, &w, out, usable, arg)) > 0) {
		uint64_t c = IVRDMA_RQ_CONS_INDEX(w);

		if (shm_cas64(v->cons, &w, ivrdma_take_begin(t, v->id, w, out->wr_id))) {
			ivrdma_take_held(t);
			*index = c;
			return out->num_sge <= v->max_sge ? 1 : -EPROTO;
		}
	}
	ivrdma_take_none(t);
	return rc;
}

/*
 * An initiator about to take the next receive fetches its entry early,
 * so that the cache miss overlaps the work before the take. Fetching it
 * any earlier, after the take before, is in vain: the owner reposting
 * the entries next to it takes their lines back (and the CPU's own
 * prefetcher, seeing the owner's stores walk the ring, takes the next
 * ones too). A hint only: the take reads the entry again.
 */
void ivrdma_rq_prefetch(const struct ivrdma_rq_view *v)
{
	uint64_t c;

	if (!v->ring)
		return; /* no view (yet): not connected */
	c = IVRDMA_RQ_CONS_INDEX(shm_load_relaxed64(v->cons));
	if (ivrdma_rq_ahead(v->prod_seen, c) > 0)
		__builtin_prefetch(rq_entry(v, c));
}

/*
 * The owner drops every receive posted (a reset): cons jumps to prod,
 * after the successor's duty toward the last taker.
 */
void ivrdma_rq_drop_all(struct ivrdma_rq_view *v)
{
	uint64_t w = shm_load_acquire64(v->cons);

	do
		ivrdma_take_record_predecessor(v->region, v->id, w);
	while (!shm_cas64(v->cons, &w, IVRDMA_RQ_CONS(shm_load_acquire64(v->prod), 0)));
}
