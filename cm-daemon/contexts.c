// SPDX-License-Identifier: MIT
/*
 * Verbs contexts and their counters, for `ivrdma status`.
 *
 * A context's totals are its record's (the QPs it destroyed) plus its live
 * QPs' slots. A record ends CLOSED (the context closed) or with its peer
 * (the process died, or a VM went): either way ivrdmad keeps its final
 * totals in a short history, so that what a finished job did can still be
 * read, and frees the slot.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "shm_atomic.h"

#define NR_WORDS	(sizeof(struct ivrdma_qp_counters) / sizeof(uint64_t))
#define SWEEP_PERIOD_MS 1000
static const char *const qp_state_names[] = {"RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"};

/* Adds a counters block of the region (other writers' words: relaxed loads) to 'sum'. */
static void add_counters(struct ivrdma_qp_counters *sum, const struct ivrdma_qp_counters *c)
{
	uint64_t *s = (uint64_t *)sum;
	const uint64_t *w = (const uint64_t *)c;

	for (size_t i = 0; i < NR_WORDS; i++)
		s[i] += shm_load_relaxed64(&w[i]);
}

/*
 * Is QP slot 'q' a live QP of context record 'idx'? Its owner is the
 * record's holder, or the context itself where it has its own tag.
 */
static bool qp_of(const struct ivrdma_region *r, const struct ivrdma_qp_slot *q, uint32_t idx)
{
	const struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, idx);
	uint32_t owner = shm_load_acquire32(&q->hdr.owner), seq = shm_load_acquire32(&c->hdr.seq);
	uint32_t holder = shm_load_relaxed32(&c->flags) & IVRDMA_CTX_OWN_TAG
			      ? ivrdma_context_tag(idx, seq)
			      : shm_load_acquire32(&c->hdr.owner);

	return owner && owner == holder && shm_load_relaxed32(&q->context) == idx + 1 &&
	       shm_load_relaxed32(&q->context_seq) == seq;
}

static json_object *counters_json(const struct ivrdma_qp_counters *c)
{
	json_object *o = json_object_new_object();
	const struct {
		const char *name;
		uint64_t v;
	} f[] = {
	    {"wrs_posted", c->sq_posted + c->rq_posted},
	    {"sq_posted", c->sq_posted},
	    {"rq_posted", c->rq_posted},
	    {"send_ops", c->send_ops},
	    {"send_bytes", c->send_bytes},
	    {"write_ops", c->write_ops},
	    {"write_bytes", c->write_bytes},
	    {"read_ops", c->read_ops},
	    {"read_bytes", c->read_bytes},
	    {"atomic_ops", c->atomic_ops},
	    {"atomic_bytes", c->atomic_bytes},
	    {"recv_ops", c->recv_ops},
	    {"recv_bytes", c->recv_bytes},
	    {"rnr_retries", c->rnr_retries},
	    {"completions", c->send_cqes + c->recv_ops + c->recv_errors + c->recv_flushed},
	    {"send_completions", c->send_cqes},
	    {"recv_completions", c->recv_ops + c->recv_errors + c->recv_flushed},
	    {"errors", c->send_errors + c->recv_errors},
	    {"flushed", c->send_flushed + c->recv_flushed},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		json_object_object_add(o, f[i].name, json_object_new_uint64(f[i].v));
	return o;
}

static json_object *qp_json(const struct ivrdma_qp_slot *q)
{
	json_object *o = json_object_new_object();
	uint32_t state = shm_load_acquire32(&q->state), type = q->qp_type;
	struct ivrdma_qp_counters c = {0};

	add_counters(&c, &q->counters);
	json_object_object_add(o, "qpn", json_object_new_int64(q->qpn));
	/* enum ibv_qp_type: RC 2, UC 3, UD 4 */
	json_object_object_add(o, "type",
			       json_object_new_string(type == 2	  ? "RC"
						      : type == 3 ? "UC"
						      : type == 4 ? "UD"
								  : "?"));
	json_object_object_add(o, "state",
			       json_object_new_string(state < 7 ? qp_state_names[state] : "?"));
	json_object_object_add(o, "counters", counters_json(&c));
	return o;
}

/*
 * The live QPs of every context record, from one pass over the QP table
 * (a status of many contexts would otherwise read the table once each):
 * head[record] is a QP slot index, next[] chains the record's others;
 * NO_QP ends a chain.
 */
#define NO_QP UINT32_MAX
struct qps_by_context {
	uint32_t *head, *next;
};

static bool qps_by_context_build(const struct ivrdma_region *r, struct qps_by_context *ix)
{
	ix->head = malloc(r->ctxs.entries * sizeof(uint32_t));
	ix->next = malloc(r->qps.entries * sizeof(uint32_t));
	if (!ix->head || !ix->next) {
		free(ix->head);
		free(ix->next);
		return false;
	}
	memset(ix->head, 0xff, r->ctxs.entries * sizeof(uint32_t));
	for (uint32_t i = r->qps.entries; i-- > 0;) {
		const struct ivrdma_qp_slot *q = ivrdma_table_entry(r, &r->qps, i);
		uint32_t rec = shm_load_relaxed32(&q->context) - 1; /* 0, none: UINT32_MAX */

		if (rec >= r->ctxs.entries || !qp_of(r, q, rec))
			continue;
		ix->next[i] = ix->head[rec];
		ix->head[rec] = i;
	}
	return true;
}

/* The next live QP slot of record 'idx' after 'i' (NO_QP: the first); NO_QP at the end. */
static uint32_t next_qp_of(const struct ivrdma_region *r, const struct qps_by_context *ix,
			   uint32_t idx, uint32_t i)
{
	if (ix)
		return i == NO_QP ? ix->head[idx] : ix->next[i];
	for (i = i == NO_QP ? 0 : i + 1; i < r->qps.entries; i++)
		if (qp_of(r, ivrdma_table_entry(r, &r->qps, i), idx))
			return i;
	return NO_QP;
}

/*
 * What a context record says, with its live QPs: the same for open and
 * ended ones. 'ix' lists the QPs of every record, or is NULL (then the
 * QP table is searched).
 */
static json_object *record_json(struct daemon *d, uint32_t idx, const char *state,
				const struct qps_by_context *ix)
{
	const struct ivrdma_region *r = &d->region;
	const struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, idx);
	json_object *o = json_object_new_object(), *qps = json_object_new_array();
	struct ivrdma_qp_counters total = {0};

	add_counters(&total, &c->destroyed);
	for (uint32_t i = next_qp_of(r, ix, idx, NO_QP); i != NO_QP;
	     i = next_qp_of(r, ix, idx, i)) {
		const struct ivrdma_qp_slot *q = ivrdma_table_entry(r, &r->qps, i);

		add_counters(&total, &q->counters);
		json_object_array_add(qps, qp_json(q));
	}
	json_object_object_add(o, "record", json_object_new_int64(idx));
	json_object_object_add(o, "pid", json_object_new_int64(c->pid));
	json_object_object_add(o, "node", json_object_new_string(directory_node_name(d, c->node)));
	json_object_object_add(
	    o, "peer", json_object_new_int(ivrdma_tag_peer(r, shm_load_acquire32(&c->hdr.owner))));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "opened_ns", json_object_new_uint64(c->opened_ns));
	json_object_object_add(o, "nr_qps", json_object_new_int64(json_object_array_length(qps)));
	json_object_object_add(o, "qps_destroyed",
			       json_object_new_int64(shm_load_relaxed32(&c->qps_destroyed)));
	json_object_object_add(o, "totals", counters_json(&total));
	json_object_object_add(o, "qps", qps);
	return o;
}

/* Keeps an ended record's last word, the oldest giving way. */
static void remember(struct daemon *d, uint32_t idx, const char *state)
{
	json_object **slot = &d->ended[d->ended_next % IVRDMA_ENDED_CONTEXTS];

	if (*slot)
		json_object_put(*slot);
	*slot = record_json(d, idx, state, NULL);
	d->ended_next++;
}

/*
 * Records handed back (CLOSED) or released (RELEASED: the process of a
 * context in a VM ended with it open) are remembered and freed; what a
 * context's own tag still holds is reclaimed first (context_gone.c).
 */
void contexts_sweep(struct daemon *d)
{
	const struct ivrdma_region *r = &d->region;

	d->last_sweep_ms = monotonic_ms();
	for (uint32_t i = 0; i < r->ctxs.entries; i++) {
		struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, i);
		uint32_t owner = shm_load_acquire32(&c->hdr.owner);
		uint32_t state = owner ? shm_load_acquire32(&c->state) : 0;
		bool own_tag = shm_load_relaxed32(&c->flags) & IVRDMA_CTX_OWN_TAG;

		/* Only the driver, for a context with its own tag, stores RELEASED. */
		if (state != IVRDMA_CTX_CLOSED && (state != IVRDMA_CTX_RELEASED || !own_tag))
			continue;
		remember(d, i, state == IVRDMA_CTX_RELEASED ? "lost" : "closed");
		if (own_tag)
			context_gone(d, i, state == IVRDMA_CTX_RELEASED);
		memset((uint8_t *)c + sizeof(c->hdr), 0, sizeof(*c) - sizeof(c->hdr));
		shm_cas32(&c->hdr.owner, &owner, 0);
	}
}

/* Now and then: a closed record holds its slot only until then. */
void contexts_tick(struct daemon *d)
{
	if (monotonic_ms() - d->last_sweep_ms >= SWEEP_PERIOD_MS)
		contexts_sweep(d);
}

/* Before a gone peer's slots are reclaimed: the last word of its contexts. */
void contexts_peer_gone(struct daemon *d, uint16_t peer_id)
{
	const struct ivrdma_region *r = &d->region;

	for (uint32_t i = 0; i < r->ctxs.entries; i++) {
		struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, i);
		uint32_t owner = shm_load_acquire32(&c->hdr.owner);

		if (owner && ivrdma_tag_peer(r, owner) == peer_id)
			remember(d, i,
				 shm_load_acquire32(&c->state) == IVRDMA_CTX_CLOSED ? "closed"
										    : "lost");
	}
}

/*
 * Open contexts, then ended ones, oldest first, as of the last sweep (the
 * caller sweeps first: ctl_status_json).
 */
json_object *contexts_json(struct daemon *d)
{
	const struct ivrdma_region *r = &d->region;
	json_object *a = json_object_new_array();
	uint32_t n = d->ended_next < IVRDMA_ENDED_CONTEXTS ? d->ended_next : IVRDMA_ENDED_CONTEXTS;
	struct qps_by_context ix;
	bool indexed;

	indexed = qps_by_context_build(r, &ix);
	for (uint32_t i = 0; i < r->ctxs.entries; i++) {
		struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, i);

		if (shm_load_acquire32(&c->hdr.owner) &&
		    shm_load_acquire32(&c->state) == IVRDMA_CTX_OPEN)
			json_object_array_add(a, record_json(d, i, "open", indexed ? &ix : NULL));
	}
	if (indexed) {
		free(ix.head);
		free(ix.next);
	}
	for (uint32_t k = d->ended_next - n; k != d->ended_next; k++)
		json_object_array_add(a, json_object_get(d->ended[k % IVRDMA_ENDED_CONTEXTS]));
	return a;
}

void contexts_free(struct daemon *d)
{
	for (uint32_t i = 0; i < IVRDMA_ENDED_CONTEXTS; i++)
		if (d->ended[i])
			json_object_put(d->ended[i]);
}
