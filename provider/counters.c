// SPDX-License-Identifier: MIT
/*
 * The context record and the counters of completions.
 *
 * A context claims a record in the region's context table when it opens
 * and hands it to ivrdmad when it closes (state CLOSED: ivrdmad keeps the
 * totals in its history and frees the slot). Its QPs name the record, so
 * ivrdmad adds up a context from the record and its live QPs' slots.
 *
 * Receive completions are written by initiators, so the owner counts
 * them when it polls them; they name their QP by number only, so polling
 * finds my QP by its slot (ivrdma_qp_polled). A QP leaves that table
 * before it is freed and waits here for every poller to let go of it
 * (its receive CQ's lock, taken once).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "shm_atomic.h"

struct ivrdma_ctx_counters {
	struct ivrdma_ctx_slot *record; /* NULL: the table was full; QPs still count */
	uint32_t record_idx;
	pthread_mutex_t lock;		     /* record->destroyed and the total behind it */
	struct ivrdma_qp_counters destroyed; /* the private running total */
	uint32_t qps_destroyed;
};

#define NR_WORDS (sizeof(struct ivrdma_qp_counters) / sizeof(uint64_t))

/* Adds 'add' to the private total 'mine' and stores every word in 'shared'. */
static void fold(struct ivrdma_qp_counters *mine, struct ivrdma_qp_counters *shared,
		 const struct ivrdma_qp_counters *add)
{
	uint64_t *m = (uint64_t *)mine, *s = (uint64_t *)shared;
	const uint64_t *a = (const uint64_t *)add;

	for (size_t i = 0; i < NR_WORDS; i++) {
		m[i] += a[i];
		shm_store_relaxed64(&s[i], m[i]);
	}
}

static void claim_record(struct ivrdma_context *ctx, struct ivrdma_ctx_counters *c)
{
	int64_t idx = ivrdma_slot_alloc(ctx, &ctx->region.ctxs);
	struct timespec ts;

	if (idx < 0) {
		ivrdma_dbg("no context record free: this context's totals go unrecorded");
		return;
	}
	c->record_idx = (uint32_t)idx;
	c->record = ivrdma_table_entry(&ctx->region, &ctx->region.ctxs, c->record_idx);
	clock_gettime(CLOCK_REALTIME, &ts);
	c->record->pid = (uint32_t)getpid();
	c->record->node = ctx->node;
	c->record->opened_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	/* Nodes suspended before I opened cannot be connected to: nothing to act on. */
	ctx->suspend_seen = shm_load_acquire32(&ivrdma_region_header(&ctx->region)->suspend_seq);
	shm_store_release32(&c->record->suspend_ack, ctx->suspend_seen);
	shm_store_release32(&c->record->state, IVRDMA_CTX_OPEN);
	ivrdma_context_own(ctx, c->record, c->record_idx);
}

int ivrdma_ctx_record_open(struct ivrdma_context *ctx)
{
	struct ivrdma_ctx_counters *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	claim_record(ctx, c);
	ctx->counters = c;
	return 0;
}

/*
 * The event thread has acted on suspend_seq (suspend.c): ivrdmad may go
 * on. 'record_page' is a mapping of the region's page holding my record
 * (its offset: ivrdma_ctx_record_page), for a context that left the
 * region: its own mapping is a private copy by now, so the record goes to
 * ivrdmad as a closed one's does (nothing here touches it again, and a
 * later migration does not wait for this context); NULL otherwise.
 */
void ivrdma_ctx_record_ack(struct ivrdma_context *ctx, uint32_t suspend_seq, uint8_t *record_page)
{
	struct ivrdma_ctx_counters *c = ctx->counters;
	struct ivrdma_ctx_slot *rec;

	if (!c || !c->record)
		return;
	rec = c->record;
	if (record_page)
		rec = (struct ivrdma_ctx_slot *)(record_page + ivrdma_ctx_record_page(ctx, NULL));
	shm_store_release32(&rec->suspend_ack, suspend_seq);
	if (record_page) {
		/* ivrdmad frees the record: my process's end must not touch its next owner's. */
		ivrdma_context_disown(ctx);
		shm_store_release32(&rec->state, IVRDMA_CTX_CLOSED);
	}
}

/*
 * The region offset of the page holding my record (into *page_off, if not
 * NULL); returns the record's offset within that page. No record: 0, 0.
 */
uint64_t ivrdma_ctx_record_page(struct ivrdma_context *ctx, uint64_t *page_off)
{
	struct ivrdma_ctx_counters *c = ctx->counters;
	uint64_t off = c && c->record ? (uint64_t)((uint8_t *)c->record - ctx->region.base) : 0;
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);

	if (page_off)
		*page_off = off & ~(pg - 1);
	return off & (pg - 1);
}

/* After this the record is ivrdmad's: nothing here touches it again. */
void ivrdma_ctx_record_close(struct ivrdma_context *ctx)
{
	struct ivrdma_ctx_counters *c = ctx->counters;

	if (!c)
		return;
	if (c->record) {
		ivrdma_context_disown(ctx);
		shm_store_release32(&c->record->state, IVRDMA_CTX_CLOSED);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
	ctx->counters = NULL;
}

void ivrdma_counters_qp_created(struct ivrdma_context *ctx, struct ivrdma_qp *qp)
{
	struct ivrdma_ctx_counters *c = ctx->counters;

	if (c->record) {
		/* ivrdmad reads them whenever it is asked for status. */
		shm_store_relaxed32(&qp->s->context, c->record_idx + 1);
		shm_store_relaxed32(&qp->s->context_seq, shm_load_relaxed32(&c->record->hdr.seq));
	}
}

/* Totals that no live QP holds any more: a QP destroyed, a completion it left behind. */
static void add_destroyed(struct ivrdma_ctx_counters *c, const struct ivrdma_qp_counters *add,
			  uint32_t qps)
{
	struct ivrdma_qp_counters ignored;

	pthread_mutex_lock(&c->lock);
	fold(&c->destroyed, c->record ? &c->record->destroyed : &ignored, add);
	c->qps_destroyed += qps;
	if (c->record)
		shm_store_relaxed32(&c->record->qps_destroyed, c->qps_destroyed);
	pthread_mutex_unlock(&c->lock);
}

void ivrdma_counters_qp_destroyed(struct ivrdma_context *ctx, struct ivrdma_qp *qp)
{
	struct ivrdma_ctx_counters *c = ctx->counters;

	/*
	 * Out of ctx->qp_by_slot already (ivrdma_destroy_qp): a poller that
	 * found the QP before holds its CQ's lock until it is done.
	 */
	if (qp->recv_cq) { /* XRC QPs have none: their receives count for the context */
		ivrdma_queue_lock(&qp->recv_cq->lock);
		ivrdma_queue_unlock(&qp->recv_cq->lock);
	}
	add_destroyed(c, &qp->tally, 1);
}

/* The receive completion 'e' into 'mine' (a QP's private total) and 'shared' (its slot's). */
static void count_into(struct ivrdma_qp_counters *mine, struct ivrdma_qp_counters *shared,
		       const struct ivrdma_cqe *e)
{
	uint32_t status = e->status;

	if (status == IBV_WC_SUCCESS) {
		ivrdma_count(&mine->recv_ops, &shared->recv_ops, 1);
		ivrdma_count(&mine->recv_bytes, &shared->recv_bytes, e->byte_len);
	} else if (status == IBV_WC_WR_FLUSH_ERR) {
		ivrdma_count(&mine->recv_flushed, &shared->recv_flushed, 1);
	} else {
		ivrdma_count(&mine->recv_errors, &shared->recv_errors, 1);
	}
}

/* What no live QP of this CQ takes: the context's destroyed totals. Rare, so kept apart. */
static void __attribute__((noinline))
count_recv_orphan(struct ivrdma_ctx_counters *c, const struct ivrdma_cqe *e)
{
	struct ivrdma_qp_counters one = {0}, ignored;

	count_into(&one, &ignored, e);
	add_destroyed(c, &one, 0);
}

/*
 * Counted for the QP when it comes from the QP's receive CQ (whose lock
 * the receive counters are written under); anything else (a destroyed
 * QP's, a producer's nonsense) goes to the context's destroyed totals.
 */
void ivrdma_count_recv(struct ivrdma_context *ctx, struct ivrdma_cq *cq, const struct ivrdma_cqe *e)
{
	struct ivrdma_ctx_counters *c = ctx->counters;
	struct ivrdma_qp *qp = ivrdma_qp_polled(ctx, e->qp_num, cq);

	if (qp)
		count_into(&qp->tally, &qp->s->counters, e);
	else
		count_recv_orphan(c, e);
}
