// SPDX-License-Identifier: MIT
/*
 * A context in a VM owns what it makes under a tag of its own.
 *
 * Every process of a VM shares the VM's peer ID, so what a process holds
 * under the VM's peer tag would stay until the whole VM leaves. A guest
 * context therefore tags its slots and chunks with its context tag
 * (ivrdma_layout.h, "Owner tag"), from its record, and asks the guest
 * driver to store RELEASED in the record's state when its command file
 * is released with the record OPEN: when the process ends without
 * closing the context (killed, or exiting with it open). ivrdmad then
 * settles and reclaims what the tag holds, as for a host process that
 * died, and the VM stays. A host process is its own peer and keeps its
 * peer's tag; so does a guest context with no record (the table full).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"

bool ivrdma_in_guest(const struct ivrdma_context *ctx)
{
	return ctx->transport && strcmp(ivt_backend_name(ctx->transport), "guest") == 0;
}

/* The command file whose release the driver watches: a guest's /dev/infiniband/ivrdmaN. */
static int cmd_fd(const struct ivrdma_context *ctx)
{
	return ctx->ibv_ctx.context.cmd_fd;
}

void ivrdma_context_own(struct ivrdma_context *ctx, struct ivrdma_ctx_slot *record,
			uint32_t record_idx)
{
	uint64_t state_off = (uint64_t)((uint8_t *)&record->state - ctx->region.base);
	int rc;

	if (!ivrdma_in_guest(ctx))
		return;
	shm_store_relaxed32(&record->flags, IVRDMA_CTX_OWN_TAG);
	ctx->owner_tag = ivrdma_context_tag(record_idx, shm_load_relaxed32(&record->hdr.seq));
	rc = ivt_guest_on_release(cmd_fd(ctx), state_off, IVRDMA_CTX_OPEN, IVRDMA_CTX_RELEASED);
	if (rc)
		ivrdma_dbg("the driver will not mark my record when my process ends (%s): what "
			   "I hold stays until the VM leaves",
			   strerror(-rc));
}

void ivrdma_context_disown(struct ivrdma_context *ctx)
{
	if (ivrdma_in_guest(ctx))
		ivt_guest_on_release_cancel(cmd_fd(ctx));
}
