// SPDX-License-Identifier: MIT
/*
 * Memory regions and their keys.
 *
 * The MR slot in the region is what a remote initiator checks and
 * translates with: key, access, iova, length and the region offset of the
 * byte at iova. Registrations that a peer may reach (receive buffers,
 * remote access) have their pages moved into the region (mr_move.c);
 * memory that cannot be moved is refused unless only this process will
 * ever touch it (no remote access): the initiator reads and writes its own
 * memory through its own addresses.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "ivrdma.h"
#include "shm_atomic.h"

/* What peers may reach: through the MR's own keys, or through windows bound to it. */
#define REMOTE_ACCESS                                                                              \
	(IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC |             \
	 IBV_ACCESS_MW_BIND)

int ivrdma_mr_check_args(uintptr_t addr, size_t length, int access)
{
	/* No ODP (none advertised): as the kernel answers a device without it. */
	if (access & IBV_ACCESS_ON_DEMAND)
		return EOPNOTSUPP;
	if (length == 0 || addr + length < addr || length > IVRDMA_MAX_MSG_SIZE * 2ull)
		return EINVAL;
	/* IB spec: remote write and atomic need local write. */
	if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
	    !(access & IBV_ACCESS_LOCAL_WRITE))
		return EINVAL;
	return 0;
}

/*
 * Moves the pages if anyone but this process may write or read them. The
 * MR's context, address and slot are set: its region offset is set here.
 */
int ivrdma_mr_place(struct ivrdma_context *ctx, struct ivrdma_mr *mr, uintptr_t addr, size_t length,
		    int access)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = addr & ~(page - 1), end = (addr + length + page - 1) & ~(page - 1);
	int rc;

	mr->s->region_offset = 0;
	if (!(access & (REMOTE_ACCESS | IBV_ACCESS_LOCAL_WRITE)))
		return 0;
	rc = ivrdma_span_add(ctx, mr, start, end);
	if (rc && !(access & REMOTE_ACCESS)) {
		ivrdma_dbg("MR at %#lx not moved (%d): usable locally only", (unsigned long)addr,
			   rc);
		return 0;
	}
	return rc;
}

/* An MR with its slot filled but its key not yet published; NULL with errno. */
static struct ivrdma_mr *mr_new(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
				int access)
{
	struct ivrdma_context *ctx = to_ictx(pd->context);
	struct ivrdma_mr *mr = calloc(1, sizeof(*mr));
	int64_t slot;

	if (!mr)
		return ivrdma_fail_null(ENOMEM);
	slot = ivrdma_slot_alloc(ctx, &ctx->region.mrs);
	if (slot < 0) {
		free(mr);
		return ivrdma_fail_null(ENOMEM);
	}
	mr->slot = (uint32_t)slot;
	mr->s = ivrdma_table_entry(&ctx->region, &ctx->region.mrs, mr->slot);
	mr->vmr.ibv_mr.context = pd->context;
	mr->vmr.ibv_mr.pd = pd;
	mr->vmr.ibv_mr.addr = addr;
	mr->vmr.ibv_mr.length = length;
	mr->vmr.ibv_mr.handle = mr->slot;
	mr->vmr.ibv_mr.lkey = mr->vmr.ibv_mr.rkey = ivrdma_mr_key(mr->slot, mr->s->hdr.seq);
	mr->s->access = (uint32_t)access;
	mr->s->iova = iova;
	mr->s->length = length;
	mr->s->pd_handle = pd->handle;
	ivrdma_mr_set_moving(mr, false);
	return mr;
}

int ivrdma_mr_table_init(struct ivrdma_context *ctx)
{
	ctx->mr_by_slot = calloc(ctx->region.mrs.entries, sizeof(*ctx->mr_by_slot));
	return ctx->mr_by_slot ? 0 : -ENOMEM;
}

/* Into the context's table, then the key: a peer that sees it sees the fields. Under mr_lock. */
static void mr_publish(struct ivrdma_context *ctx, struct ivrdma_mr *mr)
{
	pthread_mutex_lock(&ctx->mrs_lock);
	ctx->mr_by_slot[mr->slot] = mr;
	pthread_mutex_unlock(&ctx->mrs_lock);
	shm_store_release32(&mr->s->key, mr->vmr.ibv_mr.lkey);
}

struct ibv_mr *ivrdma_reg_mr(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
			     int access)
{
	struct ivrdma_context *ctx = to_ictx(pd->context);
	struct ivrdma_mr *mr;
	int rc =
	    ivrdma_context_left(ctx) ? EIO : ivrdma_mr_check_args((uintptr_t)addr, length, access);

	if (rc)
		return ivrdma_fail_null(rc);
	mr = mr_new(pd, addr, length, hca_va, access);
	if (!mr)
		return NULL;
	pthread_mutex_lock(&ctx->mr_lock);
	rc = ivrdma_mr_place(ctx, mr, (uintptr_t)addr, length, access);
	if (rc) {
		pthread_mutex_unlock(&ctx->mr_lock);
		ivrdma_slot_free(ctx, &ctx->region.mrs, mr->slot);
		free(mr);
		return ivrdma_fail_null(rc);
	}
	mr_publish(ctx, mr);
	pthread_mutex_unlock(&ctx->mr_lock);
	return &mr->vmr.ibv_mr;
}

/*
 * A zero-based MR over region bytes the context already owns (device
 * memory, dm.c): its slot names them directly, and nothing moves them.
 */
struct ivrdma_mr *ivrdma_mr_new_at(struct ibv_pd *pd, size_t length, int access,
				   uint64_t region_offset)
{
	struct ivrdma_context *ctx = to_ictx(pd->context);
	struct ivrdma_mr *mr = mr_new(pd, NULL, length, 0, access);

	if (!mr)
		return NULL;
	shm_store_release64(&mr->s->region_offset, region_offset);
	pthread_mutex_lock(&ctx->mr_lock);
	mr_publish(ctx, mr);
	pthread_mutex_unlock(&ctx->mr_lock);
	return mr;
}

/* The key dies, the slot and the span go. Under ctx->mr_lock. */
static void release_mr(struct ivrdma_context *ctx, struct ivrdma_mr *mr)
{
	pthread_mutex_lock(&ctx->mrs_lock);
	ctx->mr_by_slot[mr->slot] = NULL;
	pthread_mutex_unlock(&ctx->mrs_lock);
	shm_store_release32(&mr->s->key, 0); /* no new access from here on */
	ivrdma_slot_free(ctx, &ctx->region.mrs, mr->slot);
	if (mr->span)
		ivrdma_span_remove(ctx, mr);
	if (mr->dm_users)
		atomic_fetch_sub(mr->dm_users, 1);
	free(mr);
}

int ivrdma_dereg_mr(struct verbs_mr *vmr)
{
	struct ivrdma_mr *mr = to_imr(vmr);
	struct ivrdma_context *ctx = to_ictx(vmr->ibv_mr.context);

	pthread_mutex_lock(&ctx->mr_lock);
	release_mr(ctx, mr);
	pthread_mutex_unlock(&ctx->mr_lock);
	return 0;
}

/*
 * The context closes with MRs still registered: as a device does, it
 * deregisters them (their pages go private again, or stay with other
 * contexts' MRs) before ivrdmad could reclaim the chunks under them.
 */
void ivrdma_mrs_release(struct ivrdma_context *ctx)
{
	pthread_mutex_lock(&ctx->mr_lock);
	for (uint32_t i = 0; ctx->mr_by_slot && i < ctx->region.mrs.entries; i++)
		if (ctx->mr_by_slot[i])
			release_mr(ctx, ctx->mr_by_slot[i]);
	pthread_mutex_unlock(&ctx->mr_lock);
	ivrdma_spans_release(ctx);
}

/* A copy of the slot's fields, taken once: the slot may change under us. */
struct mr_fields {
	uint32_t access, pd_handle, window_of, bound_qpn;
	uint64_t iova, length, region_offset;
	bool moving; /* IVRDMA_MR_MOVING, loaded before region_offset */
};

static enum ivrdma_xlate read_slot(const struct ivrdma_region *r, uint32_t key, uint32_t owner,
				   struct mr_fields *f)
{
	struct ivrdma_mr_slot *s = ivrdma_table_entry(r, &r->mrs, ivrdma_key_slot(key));

	if (!s || key == 0 || shm_load_acquire32(&s->key) != key ||
	    shm_load_acquire32(&s->hdr.owner) != owner)
		return IVRDMA_XLATE_BAD_KEY;
	f->access = shm_load_relaxed32(&s->access);
	f->pd_handle = shm_load_relaxed32(&s->pd_handle);
	f->iova = shm_load_relaxed64(&s->iova);
	f->length = shm_load_relaxed64(&s->length);
	/*
	 * The flags before the offset (ivrdma_mr_flags): found clear, they
	 * were cleared after the offset a finished move stored, or no move
	 * can store one before this execution ends.
	 */
	f->moving = shm_load_acquire32(&s->flags) & IVRDMA_MR_MOVING;
	f->region_offset = shm_load_acquire64(&s->region_offset);
	f->window_of = shm_load_relaxed32(&s->window_of);
	f->bound_qpn = shm_load_relaxed32(&s->bound_qpn);
	if (!f->window_of)
		return IVRDMA_XLATE_OK;
	/* A window: its fields are of one binding if the key is still the same. */
	shm_fence_acquire();
	return shm_load_relaxed32(&s->key) == key ? IVRDMA_XLATE_OK : IVRDMA_XLATE_BAD_KEY;
}

static enum ivrdma_xlate check_fields(const struct mr_fields *f, uint32_t pd_handle, uint64_t addr,
				      uint64_t len, int access)
{
	if (f->pd_handle != pd_handle)
		return IVRDMA_XLATE_BAD_KEY;
	if (((int)f->access & access) != access)
		return IVRDMA_XLATE_ACCESS;
	if (addr < f->iova || len > f->length || addr - f->iova > f->length - len)
		return IVRDMA_XLATE_BOUNDS;
	return IVRDMA_XLATE_OK;
}

/* The region bytes of [addr, addr + len) of checked fields f (check_fields). */
static enum ivrdma_xlate checked_bytes(const struct ivrdma_region *r, const struct mr_fields *f,
				       uint64_t addr, uint64_t len, uint8_t **out)
{
	uint64_t delta = addr - f->iova;

	if (f->region_offset > UINT64_MAX - delta)
		return IVRDMA_XLATE_BAD_KEY;
	*out = ivrdma_chunk_span(r, f->region_offset + delta, len);
	/* Not in the region (unmoved, or a bad offset): unreachable for peers. */
	return *out ? IVRDMA_XLATE_OK : IVRDMA_XLATE_BAD_KEY;
}

/* Can an execution use the MR whose slot's copied fields are f for [addr, addr + len)? */
static enum ivrdma_xlate mr_usable(const struct mr_fields *f, uint32_t pd_handle, uint64_t addr,
				   uint64_t len, int access)
{
	if (f->window_of)
		return IVRDMA_XLATE_BAD_KEY; /* a window's key names no MR (IB: an lkey is an MR's)
					      */
	if (f->moving)
		return IVRDMA_XLATE_MOVING;
	return check_fields(f, pd_handle, addr, len, access);
}

/* The region bytes of an MR slot's copied fields f for [addr, addr + len). */
static enum ivrdma_xlate mr_bytes(const struct ivrdma_region *r, const struct mr_fields *f,
				  uint32_t pd_handle, uint64_t addr, uint64_t len, int access,
				  uint8_t **out)
{
	enum ivrdma_xlate x = mr_usable(f, pd_handle, addr, len, access);

	return x != IVRDMA_XLATE_OK ? x : checked_bytes(r, f, addr, len, out);
}

enum ivrdma_xlate ivrdma_mr_remote(const struct ivrdma_region *r, uint32_t key, uint32_t owner,
				   uint32_t pd_handle, uint64_t addr, uint64_t len, int access,
				   uint8_t **out)
{
	struct mr_fields f;
	enum ivrdma_xlate x = read_slot(r, key, owner, &f);

	return x != IVRDMA_XLATE_OK ? x : mr_bytes(r, &f, pd_handle, addr, len, access, out);
}

/* An MR that was not moved: its bytes are at its own address, in my process only. */
static enum ivrdma_xlate local_unmoved(struct ivrdma_context *ctx, uint32_t key, uint64_t delta,
				       uint8_t **out)
{
	enum ivrdma_xlate x = IVRDMA_XLATE_BAD_KEY;
	uint32_t slot = ivrdma_key_slot(key);
	struct ivrdma_mr *mr;

	if (slot >= ctx->region.mrs.entries)
		return x;
	/* Not mr_lock: a registration holds it while it waits for executions. */
	pthread_mutex_lock(&ctx->mrs_lock);
	mr = ctx->mr_by_slot[slot];
	if (mr && mr->vmr.ibv_mr.lkey == key && !mr->span) {
		*out = (uint8_t *)mr->vmr.ibv_mr.addr + delta;
		x = IVRDMA_XLATE_OK;
	}
	pthread_mutex_unlock(&ctx->mrs_lock);
	return x;
}

enum ivrdma_xlate ivrdma_mr_local(struct ivrdma_context *ctx, uint32_t key, uint32_t pd_handle,
				  uint64_t addr, uint64_t len, int access, uint8_t **out)
{
	struct mr_fields f;
	enum ivrdma_xlate x = read_slot(&ctx->region, key, ctx->owner_tag, &f);

	if (x == IVRDMA_XLATE_OK)
		x = mr_usable(&f, pd_handle, addr, len, access);
	if (x != IVRDMA_XLATE_OK)
		return x;
	if (f.region_offset == 0)
		return local_unmoved(ctx, key, addr - f.iova, out);
	return checked_bytes(&ctx->region, &f, addr, len, out); /* the slot is read once */
}

/*
 * An initiator's rkey for QP 'qpn' (pd_handle its PD): an MR's, or a
 * bound window's, whose range, access, PD and QP are checked before its
 * MR translates the bytes (MR access rights do not apply: binding
 * checked the MR, and the window's rights are the remote ones).
 */
enum ivrdma_xlate ivrdma_rkey_remote(const struct ivrdma_region *r, uint32_t key, uint32_t owner,
				     uint32_t pd_handle, uint32_t qpn, uint64_t addr, uint64_t len,
				     int access, uint8_t **out)
{
	struct mr_fields w;
	enum ivrdma_xlate x = read_slot(r, key, owner, &w);

	if (x != IVRDMA_XLATE_OK)
		return x;
	if (!w.window_of) /* an MR's key: the slot is read once */
		return mr_bytes(r, &w, pd_handle, addr, len, access, out);
	if (w.bound_qpn && w.bound_qpn != qpn)
		return IVRDMA_XLATE_BAD_KEY; /* a type 2 window serves its QP only */
	x = check_fields(&w, pd_handle, addr, len, access);
	if (x != IVRDMA_XLATE_OK)
		return x;
	return ivrdma_mr_remote(r, w.window_of, owner, w.pd_handle, addr, len, 0, out);
}