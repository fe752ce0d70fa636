// SPDX-License-Identifier: MIT
/*
 * Letting go of a suspending node: each context's part of migrate-begin
 * (the protocol is "Suspending a node" in ivrdma_layout.h; ivrdmad's part
 * is cm-daemon/migrate.c). Run by the context's event thread on a
 * control doorbell.
 *
 * Toward another node, the context fails its QPs connected there, as an
 * HCA fails QPs whose path went down. Its own node suspending means the
 * device is about to go: every QP fails, the registered pages become
 * private memory again (the application's buffers keep their bytes and
 * stay usable), and the context reports IBV_EVENT_DEVICE_FATAL. New
 * registrations and QPs are refused from then on (ivrdma_context_left).
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "counters.h"
#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"
#include "sys_mm.h"

bool ivrdma_context_left(const struct ivrdma_context *ctx)
{
	return atomic_load_explicit(&ctx->left, memory_order_acquire);
}

/*
 * Rings vector 'vec' of peer 'peer' (a peer ID, possibly mine); 0 or
 * ivt_ring's error. Not once the context left: in a guest the doorbell
 * register is in BAR0, gone with the device.
 */
int ivrdma_ring_peer(struct ivrdma_context *ctx, int peer, uint32_t vec)
{
	if (peer < 0 || ivrdma_context_left(ctx))
		return 0;
	return ivt_ring(ctx->transport, (uint16_t)peer, vec);
}

/* The private copy of the region being built: what my objects still read. */
struct region_copy {
	const struct ivrdma_region *r;
	uint8_t *to;
};

static void copy_run(void *arg, uint32_t first, uint32_t n)
{
	struct region_copy *c = arg;
	uint64_t off = c->r->chunk_area_offset + ((uint64_t)first << c->r->chunk_shift);

	if (n && first + n <= c->r->nr_chunks)
		memcpy(c->to + off, c->r->base + off, (uint64_t)n << c->r->chunk_shift);
}

static void hold_objects(struct ivrdma_context *ctx, bool hold, struct region_copy *c)
{
	if (hold) {
		pthread_mutex_lock(&ctx->mr_lock);
		ivrdma_srqs_hold(ctx, true, copy_run, c);
		ivrdma_qps_hold(ctx, true, copy_run, c);
		ivrdma_cqs_hold(ctx, true, copy_run, c);
	} else {
		ivrdma_cqs_hold(ctx, false, copy_run, c);
		ivrdma_qps_hold(ctx, false, copy_run, c);
		ivrdma_srqs_hold(ctx, false, copy_run, c);
		pthread_mutex_unlock(&ctx->mr_lock);
	}
}

/*
 * The region under my mapping becomes private memory: a copy of its
 * tables and of my objects' rings, zero pages elsewhere. In a guest the
 * region is BAR2, whose pages fault with SIGBUS once the device is
 * unplugged; the context still polls its CQs, frees its slots and closes
 * afterwards, on the copy. Every object is held still meanwhile: no
 * store to the region falls between the copy and the swap.
 */
static void swap_region(struct ivrdma_context *ctx)
{
	const struct ivrdma_region *r = &ctx->region;
	struct region_copy c = {.r = r};

	c.to = ivrdma_sys_mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c.to == MAP_FAILED) {
		ivrdma_dbg("no private copy of the region: %m (it must stay mapped)");
		return;
	}
	hold_objects(ctx, true, &c);
	memcpy(c.to, r->base, r->chunk_area_offset);
	if (ivrdma_sys_mremap_fixed(c.to, r->size, r->base)) {
		ivrdma_dbg("cannot swap the private copy in: %m (the region must stay mapped)");
		ivrdma_sys_munmap(c.to, r->size);
	}
	hold_objects(ctx, false, &c);
}

/*
 * A second mapping of the region's page holding my context record, made
 * before the swap: the acknowledgement goes through it. NULL if it cannot
 * be made (then ivrdmad's migrate-begin times out naming this context).
 */
static uint8_t *map_record_page(struct ivrdma_context *ctx)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t off;
	uint8_t *p;

	ivrdma_ctx_record_page(ctx, &off);
	p = ivrdma_sys_mmap(NULL, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (ivt_map_at(ctx->transport, p, off, pg, PROT_READ | PROT_WRITE)) {
		ivrdma_dbg("cannot map my context record's page: migrate-begin will not hear me");
		ivrdma_sys_munmap(p, pg);
		return NULL;
	}
	return p;
}

/*
 * My own node is suspending: let go of the region. Once per context;
 * *record_page: see map_record_page.
 */
static void leave_region(struct ivrdma_context *ctx, uint8_t **record_page)
{
	if (atomic_exchange_explicit(&ctx->left, true, memory_order_acq_rel))
		return;
	*record_page = map_record_page(ctx);
	ivrdma_qps_fail_toward(ctx, 0);
	/* Peers' executions into my memory that began before my QPs failed. */
	if (ivrdma_wait_executions(&ctx->region))
		ivrdma_dbg("a peer stayed in one execution: registered pages are copied anyway");
	ivrdma_spans_detach(ctx);
	swap_region(ctx);
	ivrdma_post_async_event(ctx, IBV_EVENT_DEVICE_FATAL, 0);
}

void ivrdma_suspend_check(struct ivrdma_context *ctx)
{
	const struct ivrdma_region *r = &ctx->region;
	uint32_t seq = shm_load_acquire32(&ivrdma_region_header(r)->suspend_seq);

	uint8_t *record_page = NULL;

	if (seq == ctx->suspend_seen)
		return;
	for (uint32_t i = 0; i < r->nodes.entries; i++) {
		struct ivrdma_node *n = ivrdma_region_node(r, i);

		if (shm_load_acquire32(&n->state) != IVRDMA_NODE_SUSPENDING)
			continue;
		if (i == ctx->node)
			leave_region(ctx, &record_page);
		else
			ivrdma_qps_fail_toward(ctx, n->lid);
	}
	ctx->suspend_seen = seq;
	ivrdma_ctx_record_ack(ctx, seq, record_page);
	if (record_page)
		ivrdma_sys_munmap(record_page, (size_t)sysconf(_SC_PAGESIZE));
}
