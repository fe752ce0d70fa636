// SPDX-License-Identifier: MIT
/*
 * Moving registered pages into the region and back.
 *
 * A span is a page-aligned range of the process's address space whose
 * bytes live in region chunks, mapped over the same addresses (MAP_FIXED
 * on the region): the application keeps its pointers, peers reach the
 * bytes through the region. Pages belong to the process, not to one
 * context, so the spans are the process's: every context on the region
 * shares them (UCX and MPI libraries open a device more than once and
 * register the same heap pages in each). Spans never overlap: a
 * registration that partly overlaps spans moves their union once more and
 * re-points their MRs. A span lives while MRs use it; the last one out
 * puts private pages back.
 *
 * A span's chunks carry the owner tag of one context, its holder, so that
 * ivrdmad reclaims them if the process dies; a holder that closes while
 * other contexts' MRs use the span hands the chunks to one of them.
 *
 * The application may unmap, mremap or brk away pages of a span (UCX's
 * and Open MPI's registration caches notice and deregister later). A
 * span may so have holes while its other MRs live on. Before pages are
 * registered they are checked against /proc/self/maps (proc_maps.c):
 * new memory where a span's pages were goes home into the span (rehome).
 *
 * Other threads' stores to a moving span wait for the move to end
 * (page_freeze.c): the span holds whatever the heap put around the buffer.
 * A fork child gets private copies of every span (fork_child() below),
 * as it would get copy-on-write pages of an HCA's pinned memory.
 *
 * Lock order: a context's mr_lock, then span_lock, which guards the span
 * list, every span and every MR's span and span_next (taken through
 * span_lock_take: see 'forking').
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"
#include "sys_mm.h"

struct ivrdma_span {
	uintptr_t start, end;
	uint64_t region_id;		 /* whose chunks hold the pages */
	uint64_t file_dev, file_ino;	 /* the region's file, as the maps list it */
	struct ivrdma_context *holder;	 /* its owner tag marks the chunks */
	uint32_t first_chunk, nr_chunks; /* the run holding it, perhaps with room to spare */
	uint64_t base;			 /* region offset of the byte at start */
	struct ivrdma_mr *mrs;		 /* the MRs using it, through span_next */
	bool detached;			 /* a fork child's: its pages private, no chunks */
	struct ivrdma_span *next;
};

static pthread_mutex_t span_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ivrdma_span *spans;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/*
 * fork() takes span_lock in our prepare handler and gives it back in the
 * parent and child handlers. In between, fork handlers registered before
 * ours run on the forking thread, and UCX's deregisters its whole cache
 * there (UCX_RCACHE_PURGE_ON_FORK): that thread may use the span list
 * meanwhile, for it holds the lock between two calls, never inside one.
 * Written only by the thread holding span_lock.
 */
static atomic_bool forking;
static pthread_t forker;

/* span_lock, unless this thread is forking and holds it already. */
static bool span_lock_take(void)
{
	if (atomic_load_explicit(&forking, memory_order_acquire) &&
	    pthread_equal(forker, pthread_self()))
		return false;
	pthread_mutex_lock(&span_lock);
	return true;
}

static void span_lock_give(bool taken)
{
	if (taken)
		pthread_mutex_unlock(&span_lock);
}

/* What the maps say of the region: the file holding ctx's mapping of it. */
struct region_file {
	uint64_t id, dev, ino;
};

static int region_file_of(const struct ivrdma_context *ctx, const struct ivrdma_maps *maps,
			  struct region_file *f)
{
	const struct ivrdma_map *m = ivrdma_maps_find(maps, (uintptr_t)ctx->region.base);

	if (!m || !m->shared)
		return EFAULT;
	*f = (struct region_file){.id = ctx->region.region_id, .dev = m->dev, .ino = m->ino};
	return 0;
}

static bool is_region_map(const struct ivrdma_map *m, uint64_t dev, uint64_t ino)
{
	return m->shared && m->dev == dev && m->ino == ino;
}

/* Is the span's byte at addr mapped there, as the mapping m holding addr shows? */
static bool at_home(const struct ivrdma_span *sp, const struct ivrdma_map *m, uintptr_t addr)
{
	return m && is_region_map(m, sp->file_dev, sp->file_ino) &&
	       m->offset + (addr - m->lo) == sp->base + (addr - sp->start);
}

/*
 * Private writable memory may be moved: heap, stacks, anonymous mappings,
 * static data (a private file mapping holds copies already); so may the
 * region's own pages (spans are merged; pages an mremap carried away from
 * a span are the application's data). Other shared mappings would stop
 * being shared with their other users, and read-only memory would become
 * writable. 0, EFAULT for a hole, EINVAL for memory that cannot move.
 */
static int check_movable(const struct ivrdma_maps *maps, const struct region_file *f,
			 uintptr_t start, uintptr_t end)
{
	for (uintptr_t a = start; a < end;) {
		const struct ivrdma_map *m = ivrdma_maps_find(maps, a);

		if (!m)
			return EFAULT;
		if (!m->readable || !m->writable ||
		    (m->shared && !is_region_map(m, f->dev, f->ino))) {
			ivrdma_dbg("cannot register %#lx-%#lx: not private writable memory",
				   (unsigned long)a, (unsigned long)(m->hi < end ? m->hi : end));
			return EINVAL;
		}
		a = m->hi;
	}
	return 0;
}

/*
 * Whole pages are moved with whatever else lives in them: bytes around the
 * registered buffer that AddressSanitizer (rightly) poisons for the
 * application, freed heap blocks, and bytes of other threads, whose stores
 * the page freeze holds meanwhile (a protocol ThreadSanitizer cannot see).
 * Copy them word by word, uninstrumented and never turned into an
 * intercepted memcpy (each compiler has its own way to forbid that).
 */
#ifdef __clang__
#define NO_MEMCPY_IDIOM no_builtin("memcpy")
#else
#define NO_MEMCPY_IDIOM optimize("no-tree-loop-distribute-patterns")
#endif
__attribute__((no_sanitize_address, no_sanitize_thread, NO_MEMCPY_IDIOM)) static void
copy_pages(uint64_t *dst, const uint64_t *src, uint64_t len)
{
	for (uint64_t i = 0; i < len / sizeof(uint64_t); i++)
		dst[i] = src[i];
}

/*
 * The calling thread's own stack may be among the pages that move (a
 * buffer on the stack; the frames of this very call below it). Between
 * the copy and the new mapping, the thread's own pushes (a return
 * address) would be lost, and the page freeze would hold its stores for
 * a thaw only it can do. Such a move runs on a thread of its own, while
 * this one waits in pthread_join and touches no stack.
 */
static uintptr_t main_stack_lo, main_stack_hi;
static pthread_t main_stack_owner; /* the thread whose bounds these are */

/* Bounds of the calling thread's stack: false if unknown. */
static bool thread_stack(uintptr_t *lo, uintptr_t *hi)
{
	pthread_attr_t attr;
	void *base = NULL;
	size_t size = 0;

	if (pthread_getattr_np(pthread_self(), &attr))
		return false;
	pthread_attr_getstack(&attr, &base, &size);
	pthread_attr_destroy(&attr);
	*lo = (uintptr_t)base;
	*hi = (uintptr_t)base + size;
	return size != 0;
}

/*
 * glibc finds the main thread's stack in /proc/self/maps, as the mapping
 * holding its top, below the mapping before it. Once part of the stack
 * has moved into the region that mapping is only what is left above the
 * moved pages: taken before any page moves, the bounds stay whole. Other
 * threads' bounds come from their descriptors and are always whole.
 */
static void main_stack_once(void)
{
	main_stack_owner = pthread_self();
	if (!thread_stack(&main_stack_lo, &main_stack_hi))
		main_stack_lo = main_stack_hi = 0;
}

static pthread_once_t main_stack_known = PTHREAD_ONCE_INIT;

/*
 * As the provider loads: on the main thread as a rule, before any page of
 * its stack can have moved. Loaded by another thread, the bounds kept are
 * that thread's (exact anyway) and the main thread's are looked up each time.
 */
__attribute__((constructor)) static void main_stack_bounds(void)
{
	pthread_once(&main_stack_known, main_stack_once);
}

static bool on_my_stack(uintptr_t start, uintptr_t end)
{
	uintptr_t lo, hi;

	/* A fork child's thread keeps its pthread_self(), and its stack's addresses. */
	main_stack_bounds();
	if (main_stack_hi && pthread_equal(pthread_self(), main_stack_owner)) {
		lo = main_stack_lo;
		hi = main_stack_hi;
	} else if (!thread_stack(&lo, &hi)) {
		return true; /* unknown: the safe way */
	}
	return start < hi && lo < end;
}

struct page_job {
	void (*fn)(struct page_job *job);
	struct ivrdma_context *ctx; /* NULL: nobody to hold writers off (a fork child) */
	uintptr_t lo, hi;	    /* the pages */
	uint64_t offset;	    /* map_in: where in the region they go; swap_private: where
				       they are (NO_OFFSET: unknown) */
	int rc;
};

#define NO_OFFSET UINT64_MAX

static void *page_job_thread(void *arg)
{
	struct page_job *job = arg;

	job->fn(job);
	return NULL;
}

static void run_page_job(struct page_job *job)
{
	pthread_t t;

	if (!on_my_stack(job->lo, job->hi) || pthread_create(&t, NULL, page_job_thread, job) != 0) {
		job->fn(job);
		return;
	}
	pthread_join(t, NULL);
}

/* The move itself: copy, then the region's bytes at 'offset' mapped over the pages. */
static void map_in(struct page_job *job)
{
	struct ivrdma_context *ctx = job->ctx;
	uint64_t len = job->hi - job->lo;
	uint8_t *dst = ivrdma_chunk_span(&ctx->region, job->offset, len);
	bool frozen;

	if (!dst) {
		job->rc = -ERANGE;
		return;
	}
	ivrdma_sys_populate_write(dst, len); /* before the freeze: it holds other threads off */
	frozen = ivrdma_pages_freeze(ctx, job->lo, job->hi, true);
	copy_pages((uint64_t *)dst, (const uint64_t *)job->lo, len);
	job->rc =
	    ivt_map_at(ctx->transport, (void *)job->lo, job->offset, len, PROT_READ | PROT_WRITE);
	if (frozen)
		ivrdma_pages_thaw(ctx, job->lo, job->hi, job->rc == 0);
	if (job->rc)
		ivrdma_dbg("cannot map the region over %#lx-%#lx: %s", (unsigned long)job->lo,
			   (unsigned long)job->hi, strerror(-job->rc));
}

/* Pages [lo, hi) into the region at 'offset': 0 or a positive errno. */
static int move_pages(struct ivrdma_context *ctx, uintptr_t lo, uintptr_t hi, uint64_t offset)
{
	struct page_job job = {.fn = map_in, .ctx = ctx, .lo = lo, .hi = hi, .offset = offset};

	run_page_job(&job);
	return -job.rc;
}

/*
 * What is mapped of [lo, hi) into the region at base + (page - lo): holes
 * (pages the application unmapped under a span) stay holes.
 */
static int move_mapped(struct ivrdma_context *ctx, const struct ivrdma_maps *maps, uintptr_t lo,
		       uintptr_t hi, uint64_t base)
{
	const struct ivrdma_map *end = maps->v + maps->n;
	uint8_t *to = (uint8_t *)ctx->region.base + base;
	uintptr_t done = lo; /* below this, every byte is copied or zeroed */
	int rc = 0;

	for (const struct ivrdma_map *m = ivrdma_maps_next(maps, lo);
	     !rc && m && m < end && m->lo < hi; m++) {
		uintptr_t a = m->lo > lo ? m->lo : lo, b = m->hi < hi ? m->hi : hi;

		memset(to + (done - lo), 0, a - done); /* a hole's bytes: fresh */
		rc = move_pages(ctx, a, b, base + (a - lo));
		done = b;
	}
	if (!rc)
		memset(to + (done - lo), 0, hi - done);
	return rc;
}

/*
 * Copies [start, end) into new chunks of ctx and maps them over the same
 * addresses; the chunks' bytes under holes are zeroed.
 */
static int move_in(struct ivrdma_context *ctx, const struct ivrdma_maps *maps,
		   struct ivrdma_span *sp)
{
	int rc;

	if (!ivrdma_pages_alloc(ctx, sp->end - sp->start, &sp->first_chunk, &sp->nr_chunks))
		return ENOSPC;
	sp->base = ivrdma_chunk_offset(&ctx->region, sp->first_chunk);
	rc = move_mapped(ctx, maps, sp->start, sp->end, sp->base);
	if (rc) {
		ivrdma_ring_free(ctx, sp->first_chunk, sp->nr_chunks);
		return rc;
	}
	sp->holder = ctx;
	return 0;
}

/*
 * How swap_private holds other threads' stores off [lo, hi): by
 * userfaultfd, or where it cannot protect the mapping (a guest's BAR), by
 * the driver, which takes the pages away until the hold ends. Under the
 * driver's hold even a read of those pages waits, and they may hold the
 * job (on the caller's stack) or heap data of ours: only this thread's
 * stack is touched until release_writers.
 */
struct writers_hold {
	enum { HELD_NOT, HELD_UFFD, HELD_DRIVER } how;
	int handle;	     /* HELD_DRIVER: ivt_release_pages's */
	const uint64_t *src; /* where to copy from: HELD_DRIVER, the region's mapping */
	uintptr_t lo, len;   /* the job's */
};

static void hold_writers(const struct page_job *job, struct writers_hold *h)
{
	struct ivrdma_context *ctx = job->ctx;
	sigset_t all;

	*h = (struct writers_hold){.how = HELD_NOT,
				   .src = (const uint64_t *)job->lo,
				   .lo = job->lo,
				   .len = job->hi - job->lo};
	if (!ctx)
		return;
	if (ivrdma_pages_freeze(ctx, job->lo, job->hi, false)) {
		h->how = HELD_UFFD;
		return;
	}
	if (job->offset == NO_OFFSET || job->offset > ctx->region.size ||
	    h->len > ctx->region.size - job->offset)
		return;
	/* A signal handler storing there would wait for this very thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &ctx->freeze_sigmask);
	h->src = (const uint64_t *)(ctx->region.base + job->offset);
	h->handle = ivt_hold_pages(ctx->transport, (void *)h->lo, h->len);
	if (h->handle < 0) {
		h->src = (const uint64_t *)h->lo;
		pthread_sigmask(SIG_SETMASK, &ctx->freeze_sigmask, NULL);
		return;
	}
	h->how = HELD_DRIVER;
}

static void release_writers(const struct page_job *job, const struct writers_hold *h, bool moved)
{
	if (h->how == HELD_UFFD) {
		ivrdma_pages_thaw(job->ctx, job->lo, job->hi, moved);
	} else if (h->how == HELD_DRIVER) {
		ivt_release_pages(h->handle); /* first: the job may be in the pages */
		pthread_sigmask(SIG_SETMASK, &job->ctx->freeze_sigmask, NULL);
		ivrdma_dbg("pages %#lx-%#lx became private, stores held off by the driver",
			   (unsigned long)job->lo, (unsigned long)job->hi);
	}
}

/*
 * Fresh private pages holding [lo, hi) as they are now, swapped in by
 * mremap in one step: the pages may hold live heap data (even this
 * context's), which must never see a zeroed page. The job's context (any
 * context on the region) holds other threads' stores off meanwhile.
 */
static void swap_private(struct page_job *job)
{
	struct writers_hold h;
	uint64_t len = job->hi - job->lo;
	void *tmp =
	    ivrdma_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool moved;

	if (tmp == MAP_FAILED) {
		/* Keep the region pages mapped: correct, only not private again. */
		ivrdma_dbg("cannot restore private pages at %#lx: %m", (unsigned long)job->lo);
		return;
	}
	ivrdma_sys_populate_write(tmp, len);
	hold_writers(job, &h);
	copy_pages(tmp, h.src, len); /* not memcpy: ASan poisons redzones */
	moved = ivrdma_sys_mremap_fixed(tmp, len, (void *)h.lo) == 0;
	release_writers(job, &h, moved);
	if (!moved) {
		ivrdma_dbg("cannot restore private pages at %#lx: %m", (unsigned long)job->lo);
		ivrdma_sys_munmap(tmp, len);
	}
}

/*
 * NULL ctx: a fork child, whose only thread is this one and holds nothing
 * off. 'offset': where in the region the pages are (NO_OFFSET: unknown).
 */
static void privatize(struct ivrdma_context *ctx, uintptr_t lo, uintptr_t hi, uint64_t offset)
{
	struct page_job job = {
	    .fn = swap_private, .ctx = ctx, .lo = lo, .hi = hi, .offset = offset};

	run_page_job(&job);
}

/*
 * Private pages back wherever the span's chunks are still mapped where it
 * put them; in a fork child ('any_region_page'), wherever the maps show
 * the region file at all, for the child shares all of them.
 */
static void privatize_span(struct ivrdma_context *ctx, struct ivrdma_span *sp, bool any_region_page,
			   const struct ivrdma_maps *maps)
{
	const struct ivrdma_map *end = maps->v + maps->n;

	for (const struct ivrdma_map *m = ivrdma_maps_next(maps, sp->start);
	     m && m < end && m->lo < sp->end; m++) {
		uintptr_t lo = m->lo > sp->start ? m->lo : sp->start;
		uintptr_t hi = m->hi < sp->end ? m->hi : sp->end;

		if (any_region_page ? is_region_map(m, sp->file_dev, sp->file_ino)
				    : at_home(sp, m, lo))
			privatize(ctx, lo, hi,
				  at_home(sp, m, lo) ? m->offset + (lo - m->lo) : NO_OFFSET);
	}
}

static void unlink_span(struct ivrdma_span *sp)
{
	for (struct ivrdma_span **pp = &spans; *pp; pp = &(*pp)->next)
		if (*pp == sp) {
			*pp = sp->next;
			return;
		}
}

static void link_mr(struct ivrdma_span *sp, struct ivrdma_mr *mr)
{
	uintptr_t addr = (uintptr_t)mr->vmr.ibv_mr.addr;

	mr->span = sp;
	mr->span_next = sp->mrs;
	sp->mrs = mr;
	shm_store_release64(&mr->s->region_offset, sp->base + (addr - sp->start));
}

/* The MRs of 'old', which 'nsp' replaces, now live in it; 'old' goes. */
static void absorb(struct ivrdma_span *nsp, struct ivrdma_span *old)
{
	while (old->mrs) {
		struct ivrdma_mr *mr = old->mrs;

		old->mrs = mr->span_next;
		link_mr(nsp, mr);
	}
	ivrdma_ring_free(old->holder, old->first_chunk, old->nr_chunks);
	unlink_span(old);
	free(old);
}

static bool overlaps(const struct ivrdma_span *sp, uintptr_t start, uintptr_t end)
{
	return !sp->detached && sp->start < end && start < sp->end;
}

/* Chunks [first, first + count) for 'tag', claimed as they are: 0 or nonzero. */
static int claim(const struct ivrdma_region *r, uint32_t first, uint32_t count, uint32_t tag)
{
	return count ? ivrdma_chunk_claim(r, first, count, tag) : 0;
}

static void unclaim(const struct ivrdma_region *r, uint32_t first, uint32_t count, uint32_t tag)
{
	if (count)
		ivrdma_chunk_free(r, first, count, tag);
}

/*
 * Grows a span to [start, end) without moving what it holds: the new
 * pages go into the region right before and after its bytes, in its run's
 * spare room or in chunks around the run, claimed if free. Its MRs keep
 * their region offsets, so peers go on writing into them meanwhile;
 * moving the span instead holds them off (ivrdma_mr_flags). False if the
 * chunks around the run are taken.
 */
static bool grow_in_place(struct ivrdma_context *ctx, struct ivrdma_span *sp, uintptr_t start,
			  uintptr_t end)
{
	const struct ivrdma_region *r = &ctx->region;
	uint64_t area = r->chunk_area_offset, before = sp->start - start;
	uint64_t lo = sp->base - before, hi = sp->base + (end - sp->start);
	uint32_t tag = sp->holder->owner_tag, last_old = sp->first_chunk + sp->nr_chunks - 1;
	uint32_t first, last, n_before, n_after;

	if (sp->base - area < before || hi - area > (uint64_t)r->nr_chunks << r->chunk_shift)
		return false;
	first = (uint32_t)((lo - area) >> r->chunk_shift);
	last = (uint32_t)((hi - 1 - area) >> r->chunk_shift);
	n_before = first < sp->first_chunk ? sp->first_chunk - first : 0;
	n_after = last > last_old ? last - last_old : 0;
	if (claim(r, first, n_before, tag))
		return false;
	if (claim(r, last_old + 1, n_after, tag)) {
		unclaim(r, first, n_before, tag);
		return false;
	}
	if (start < sp->start && move_pages(ctx, start, sp->start, lo))
		goto undo;
	if (end > sp->end && move_pages(ctx, sp->end, end, sp->base + (sp->end - sp->start))) {
		if (start < sp->start)
			privatize(ctx, start, sp->start,
				  NO_OFFSET); /* the part in front had moved */
		goto undo;
	}
	sp->first_chunk -= n_before;
	sp->nr_chunks += n_before + n_after;
	sp->base = lo;
	sp->start = start;
	sp->end = end;
	return true;
undo:
	unclaim(r, first, n_before, tag);
	unclaim(r, last_old + 1, n_after, tag);
	return false;
}

/* Flags the MRs of the spans over [start, end) moving, or clears them (ivrdma_mr_flags). */
static void flag_spans(uintptr_t start, uintptr_t end, bool moving)
{
	for (struct ivrdma_span *sp = spans; sp; sp = sp->next)
		if (overlaps(sp, start, end))
			for (struct ivrdma_mr *mr = sp->mrs; mr; mr = mr->span_next)
				ivrdma_mr_set_moving(mr, moving);
}

/*
 * A span over [start, end), grown to the union of the spans it touches:
 * the one it touches grown in place if it can be, else a new span moved
 * in with their MRs. Returns it, or NULL with errno.
 */
static struct ivrdma_span *build_span(struct ivrdma_context *ctx, const struct ivrdma_maps *maps,
				      const struct region_file *f, uintptr_t start, uintptr_t end)
{
	struct ivrdma_span *sp, *nsp, *only = NULL;
	int rc = check_movable(maps, f, start, end), touched = 0;

	if (rc)
		return ivrdma_fail_null(rc);

	for (sp = spans; sp; sp = sp->next)
		if (overlaps(sp, start, end)) {
			if (sp->region_id != f->id) {
				ivrdma_dbg("pages at %#lx are registered with another region",
					   (unsigned long)sp->start);
				return ivrdma_fail_null(EINVAL);
			}
			start = sp->start < start ? sp->start : start;
			end = sp->end > end ? sp->end : end;
			only = sp;
			touched++;
		}
	if (touched == 1 && grow_in_place(ctx, only, start, end))
		return only;
	nsp = calloc(1, sizeof(*nsp));
	if (!nsp)
		return ivrdma_fail_null(ENOMEM);
	*nsp = (struct ivrdma_span){
	    .start = start, .end = end, .region_id = f->id, .file_dev = f->dev, .file_ino = f->ino};
	/* Peers' executions using the MRs to move end first (ivrdma_mr_flags). */
	flag_spans(start, end, true);
	rc = touched ? ivrdma_wait_executions(&ctx->region) : 0;
	if (!rc)
		rc = move_in(ctx, maps, nsp);
	if (rc) {
		flag_spans(start, end, false);
		free(nsp);
		return ivrdma_fail_null(rc);
	}
	for (sp = spans; sp;) {
		struct ivrdma_span *next = sp->next;

		if (overlaps(sp, start, end))
			absorb(nsp, sp);
		sp = next;
	}
	for (struct ivrdma_mr *mr = nsp->mrs; mr; mr = mr->span_next)
		ivrdma_mr_set_moving(mr, false); /* after link_mr stored its new offset */
	nsp->next = spans;
	spans = nsp;
	return nsp;
}

/*
 * The pages of [start, end) that lie in spans but are no longer theirs
 * (the application unmapped them and mapped new memory there, or shrank
 * and regrew its heap) go home: the new memory is copied into the span's
 * bytes for those pages and mapped there, so the new registration and
 * every MR still using the span agree. An MR that covered only such
 * pages is stale (its library deregisters it): it now reaches the new
 * memory, where an HCA would keep the old pages. The other MRs of the
 * span, whose pages never went away, are untouched.
 */
static int rehome(struct ivrdma_context *ctx, const struct ivrdma_maps *maps,
		  const struct region_file *f, uintptr_t start, uintptr_t end)
{
	int rc = check_movable(maps, f, start, end);

	for (struct ivrdma_span *sp = spans; !rc && sp; sp = sp->next) {
		uintptr_t lo = sp->start > start ? sp->start : start;
		uintptr_t hi = sp->end < end ? sp->end : end;

		if (!overlaps(sp, start, end) || sp->region_id != f->id)
			continue;
		for (uintptr_t a = lo; !rc && a < hi;) {
			const struct ivrdma_map *m = ivrdma_maps_find(maps, a);
			uintptr_t b = m->hi < hi ? m->hi : hi; /* check_movable: no hole */

			if (!at_home(sp, m, a))
				rc = move_pages(ctx, a, b, sp->base + (a - sp->start));
			a = b;
		}
	}
	return rc;
}

static struct ivrdma_span *find_span(uint64_t region_id, uintptr_t start, uintptr_t end)
{
	for (struct ivrdma_span *sp = spans; sp; sp = sp->next)
		if (!sp->detached && sp->region_id == region_id && sp->start <= start &&
		    end <= sp->end)
			return sp;
	return NULL;
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&span_lock);
	forker = pthread_self();
	atomic_store_explicit(&forking, true, memory_order_release);
}

static void fork_parent(void)
{
	atomic_store_explicit(&forking, false, memory_order_release);
	pthread_mutex_unlock(&span_lock);
}

/*
 * The child shares the region's pages with its parent: give it private
 * copies, so that what it writes (its heap, its buffers) stays its own.
 * Its contexts are its parent's and unusable, as with an HCA; its spans
 * are detached and own no chunk.
 */
static void fork_child(void)
{
	struct ivrdma_maps maps;
	bool have_maps = ivrdma_maps_read(&maps) == 0;

	for (struct ivrdma_span *sp = spans; sp; sp = sp->next) {
		if (!sp->detached && have_maps)
			privatize_span(NULL, sp, true, &maps);
		sp->detached = true;
		sp->nr_chunks = 0;
	}
	if (have_maps)
		ivrdma_maps_free(&maps);
	atomic_store_explicit(&forking, false, memory_order_release);
	pthread_mutex_unlock(&span_lock);
}

static void install_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static int add_locked(struct ivrdma_context *ctx, struct ivrdma_mr *mr, uintptr_t start,
		      uintptr_t end)
{
	struct ivrdma_maps maps;
	struct region_file f;
	struct ivrdma_span *sp;
	int rc = ivrdma_maps_read(&maps);

	if (rc)
		return rc;
	rc = region_file_of(ctx, &maps, &f);
	if (!rc) {
		rc = rehome(ctx, &maps, &f, start, end);
		sp = rc ? NULL : find_span(f.id, start, end);
		if (!rc && !sp)
			sp = build_span(ctx, &maps, &f, start, end);
		if (sp)
			link_mr(sp, mr);
		else if (!rc)
			rc = errno;
	}
	ivrdma_maps_free(&maps);
	return rc;
}

int ivrdma_span_add(struct ivrdma_context *ctx, struct ivrdma_mr *mr, uintptr_t start,
		    uintptr_t end)
{
	int rc;

	bool taken;

	pthread_once(&atfork_once, install_atfork);
	taken = span_lock_take();
	/* Checked under the lock ivrdma_spans_detach takes: no span comes after it. */
	rc = ivrdma_context_left(ctx) ? EIO : add_locked(ctx, mr, start, end);
	span_lock_give(taken);
	return rc;
}

static void unlink_mr(struct ivrdma_span *sp, struct ivrdma_mr *mr)
{
	for (struct ivrdma_mr **pp = &sp->mrs; *pp; pp = &(*pp)->span_next)
		if (*pp == mr) {
			*pp = mr->span_next;
			break;
		}
	mr->span = NULL;
}

/* The last MR of a span went: private pages back where it still is, chunks freed. */
static void retire(struct ivrdma_context *ctx, struct ivrdma_span *sp)
{
	struct ivrdma_maps maps;

	if (!sp->detached) {
		if (ivrdma_maps_read(&maps)) {
			/* Which pages are still its own is unknown: keep them, chunks and all. */
			ivrdma_dbg("cannot read the maps: pages at %#lx stay in the region",
				   (unsigned long)sp->start);
			unlink_span(sp);
			free(sp);
			return;
		}
		privatize_span(ctx, sp, false, &maps);
		ivrdma_maps_free(&maps);
		/*
		 * A peer's execution that translated a key of the span before
		 * dereg zeroed it may still be copying into its chunks: they are
		 * free only once it is over (ivrdma_mr_flags), or never.
		 */
		if (ivrdma_wait_executions(&sp->holder->region)) {
			ivrdma_dbg("chunks of pages at %#lx stay taken", (unsigned long)sp->start);
			unlink_span(sp);
			free(sp);
			return;
		}
	}
	ivrdma_ring_free(sp->holder, sp->first_chunk, sp->nr_chunks);
	unlink_span(sp);
	free(sp);
}

void ivrdma_span_remove(struct ivrdma_context *ctx, struct ivrdma_mr *mr)
{
	bool taken = span_lock_take();
	struct ivrdma_span *sp = mr->span;

	unlink_mr(sp, mr);
	if (!sp->mrs)
		retire(ctx, sp);
	span_lock_give(taken);
}

/*
 * rereg_mr's switch (mr_rereg.c), under span_lock so that no registration
 * of another context flags or re-points 'mr' meanwhile. 'tmp' stands in
 * for mr at its new range (ivrdma_span_add placed it: tmp->span NULL if
 * not moved), or is NULL when the range stays. As a move does
 * (ivrdma_mr_flags): flag mr, wait for the executions that may have seen
 * it clear, then 'apply' writes the new fields, mr takes tmp's place and
 * offset, and the flag clears. The span mr leaves retires if it was the
 * last MR in it. 0, or EBUSY (an execution never ended): nothing changed.
 */
int ivrdma_span_switch(struct ivrdma_context *ctx, struct ivrdma_mr *mr, struct ivrdma_mr *tmp,
		       void (*apply)(struct ivrdma_mr *mr, const void *arg), const void *arg)
{
	bool taken = span_lock_take();
	struct ivrdma_span *old = mr->span;
	int rc;

	ivrdma_mr_set_moving(mr, true);
	rc = ivrdma_wait_executions(&ctx->region);
	if (!rc) {
		apply(mr, arg);
		if (tmp) {
			if (old)
				unlink_mr(old, mr);
			if (tmp->span) {
				struct ivrdma_span *sp = tmp->span;

				unlink_mr(sp, tmp);
				link_mr(sp, mr); /* the offset from mr's new address */
			} else {
				shm_store_release64(&mr->s->region_offset, 0);
			}
		}
	}
	ivrdma_mr_set_moving(mr, false);
	if (!rc && tmp && old && !old->mrs)
		retire(ctx, old);
	span_lock_give(taken);
	return rc;
}

/*
 * The context's node suspends (suspend.c): every span on its region gets
 * private pages again, as in a fork child, and owns no chunk any more
 * (ivrdmad reclaims them with the node's peers). Its MRs stay until
 * deregistered; peers can no longer reach them (every QP has failed).
 */
void ivrdma_spans_detach(struct ivrdma_context *ctx)
{
	bool taken = span_lock_take();
	struct ivrdma_maps maps;
	bool have_maps = ivrdma_maps_read(&maps) == 0;

	for (struct ivrdma_span *sp = spans; sp; sp = sp->next) {
		if (sp->detached || sp->region_id != ctx->region.region_id)
			continue;
		if (have_maps)
			privatize_span(ctx, sp, false, &maps);
		sp->detached = true;
		sp->nr_chunks = 0;
	}
	if (have_maps)
		ivrdma_maps_free(&maps);
	else
		ivrdma_dbg("cannot read the maps: registered pages stay in the region");
	span_lock_give(taken);
}

/*
 * 'ctx' closes: the spans it holds pass to a context whose MR still uses
 * them, before ivrdmad could reclaim the chunks under those MRs. Its own
 * MRs are gone by now (ivrdma_mrs_release), so every MR left is another's.
 */
void ivrdma_spans_release(struct ivrdma_context *ctx)
{
	bool taken = span_lock_take();

	for (struct ivrdma_span *sp = spans; sp; sp = sp->next) {
		struct ivrdma_context *heir;

		if (sp->holder != ctx || !sp->mrs)
			continue;
		heir = to_ictx(sp->mrs->vmr.ibv_mr.context);
		if (heir->owner_tag != ctx->owner_tag)
			ivrdma_chunk_retag(&ctx->region, sp->first_chunk, sp->nr_chunks,
					   ctx->owner_tag, heir->owner_tag);
		sp->holder = heir;
	}
	span_lock_give(taken);
}
