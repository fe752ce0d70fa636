// SPDX-License-Identifier: MIT
/*
 * Completion events with one wakeup.
 *
 * A host process's completion channel is a datagram socket at a path in
 * ivrdmad's directory (common/channel_path.h, made by the preload), or a
 * channel of the driver's ivrdma_host, which has an id other processes
 * post to through their own ivrdma_host command file
 * (ivt_kernel_channel_post). A CQ on such a channel publishes the
 * channel's id and its ibv_cq's address in its slot; the producer whose
 * CQE fires the arming sends the event to that channel itself, and the
 * thread asleep in ibv_get_cq_event wakes: no doorbell, no relay through
 * the owner's event thread.
 *
 * One event per arming still (ivrdma_layout.h, "Completion events"):
 * whoever takes EVENT off the flags posts it, the producer here as the
 * event thread there. A producer that took it and cannot send (it is in a
 * VM, or in another mount namespace, where the path is not the channel's;
 * it has no ivrdma_host file for a driver's channel; or the channel's
 * queue is full) puts EVENT back and rings the doorbell, as before.
 *
 * A producer that dies between taking EVENT and sending does not lose the
 * event: its tag stays in the slot's event_sender, which one producer at a
 * time holds (the others ring the doorbell instead), and the owner's
 * event thread, woken by ivrdmad's control doorbell for the death, posts
 * it.
 *
 * The event names the ibv_cq by address, so none may be sent once
 * ibv_destroy_cq has returned: a producer counts itself in the slot's
 * direct_senders before it reads the id, and the owner withdraws the id,
 * then waits until no producer is between reading and sending (the two
 * sides of a store-buffering pair, each a sequentially consistent RMW).
 *
 * In a guest the channel is a file of the guest driver, which producers
 * elsewhere cannot reach; they ring the owner's IVRDMA_VEC_COMPLETION as
 * before. The driver's interrupt handler then takes EVENT off the slot's
 * flags and queues the event itself, by the rule the owner gave it
 * (ivt_guest_event_rule), before the owner's event thread wakes on the
 * same interrupt: the thread asleep in ibv_get_cq_event wakes once, from
 * the interrupt. Whoever takes EVENT off posts, so still one event per
 * arming; the rule is cancelled before ibv_destroy_cq returns, and
 * nothing is queued after the cancel returns.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel_path.h"
#include "cq_producer.h"
#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"

/* A producer that stopped between reading the id and sending: the owner waits this long. */
#define WITHDRAW_WAIT_NS 1000000000ull

/* A guest's CQ on a channel: the driver posts its events (see above). */
static void kernel_rule_add(struct ivrdma_context *ctx, struct ivrdma_cq *cq,
			    struct ibv_comp_channel *ch)
{
	const struct ivt_event_rule rule = {
	    .offset = (uint64_t)((uint8_t *)&cq->view.slot->flags - ctx->region.base),
	    .cq_handle = (uintptr_t)&cq->vcq.cq,
	    .channel_fd = ch->fd,
	    .mask = IVRDMA_CQ_EVENT,
	    .vector = IVRDMA_VEC_COMPLETION,
	};
	int rc = ivt_guest_event_rule(ctx->ibv_ctx.context.cmd_fd, &rule, &cq->event_rule);

	if (rc) {
		cq->event_rule = 0;
		ivrdma_dbg("CQ %u: the driver will not post its events (%s): the event thread does",
			   cq->slot, strerror(-rc));
	}
}

/* The id producers send ch's events to: a preload socket's, ivrdma_host's, or 0 (none). */
static uint64_t channel_id_of(const struct ivrdma_context *ctx, const struct ibv_comp_channel *ch)
{
	uint64_t id = 0;

	if (!ch)
		return 0;
	if (ctx->kernel_channels && !ivt_kernel_channel_id(ch->fd, &id))
		return id;
	return ctx->event_sock >= 0 ? ivrdma_channel_id(ch->fd, ctx->dir) : 0;
}

void ivrdma_cq_direct_publish(struct ivrdma_context *ctx, struct ivrdma_cq *cq,
			      struct ibv_comp_channel *ch)
{
	struct ivrdma_cq_slot *s = cq->view.slot;

	if (ch && ivrdma_in_guest(ctx) && !ctx->event_relay)
		kernel_rule_add(ctx, cq, ch);
	/* A slot's earlier owner may have died with its id published: always store. */
	cq->channel_id = channel_id_of(ctx, ch);
	shm_store_relaxed64(&s->cq_handle, (uintptr_t)&cq->vcq.cq);
	shm_store_relaxed32(&s->event_sender, 0);
	shm_store_release64(&s->channel_id, cq->channel_id);
}

void ivrdma_cq_direct_withdraw(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	struct ivrdma_cq_slot *s = cq->view.slot;
	uint64_t deadline;

	if (cq->event_rule &&
	    ivt_guest_event_rule_cancel(ctx->ibv_ctx.context.cmd_fd, cq->event_rule))
		ivrdma_dbg("CQ %u: cancelling its event rule failed", cq->slot);
	cq->event_rule = 0;
	if (!cq->channel_id)
		return;
	shm_exchange_seq_cst64(&s->channel_id, 0); /* withdraw, then look: pairs with the count */
	deadline = ivrdma_now_ns() + WITHDRAW_WAIT_NS;
	while (shm_load_acquire32(&s->direct_senders)) {
		if (ivrdma_now_ns() > deadline) {
			ivrdma_dbg("CQ %u: a producer stopped while sending it an event", cq->slot);
			break;
		}
		sched_yield();
	}
}

bool ivrdma_channel_send(struct ivrdma_context *ctx, uint64_t id, uint64_t cq_handle)
{
	struct ib_uverbs_comp_event_desc desc = {.cq_handle = cq_handle};
	struct sockaddr_un a;
	socklen_t len;

	if (id & IVT_KERNEL_CHANNEL_ID)
		return ctx->kernel_channels &&
		       !ivt_kernel_channel_post(ctx->ibv_ctx.context.cmd_fd, id, cq_handle);
	len = ivrdma_channel_addr(&a, ctx->dir, id);
	return ctx->event_sock >= 0 && len &&
	       sendto(ctx->event_sock, &desc, sizeof(desc), MSG_DONTWAIT | MSG_NOSIGNAL,
		      (struct sockaddr *)&a, len) == (ssize_t)sizeof(desc);
}

/*
 * Takes EVENT off the flags and sends the event, with my tag in the
 * slot's event_sender meanwhile, so that the owner posts it should I die
 * in between (ivrdma_layout.h, "Completion events"). True if the event
 * was posted: by me, or by whoever took EVENT first. False (the doorbell
 * must ring) if another producer holds the word: mine must not replace
 * its tag, which may be all that is left of an event it took.
 */
static bool take_and_send(struct ivrdma_context *ctx, struct ivrdma_cq_slot *s, uint64_t id)
{
	const uint32_t ev = IVRDMA_CQ_EVENT;
	uint32_t me = ctx->owner_tag, none = 0;
	bool posted = true;

	/*
	 * The claim comes before the take (two RMWs of this thread, in
	 * order). The owner reads the tag only once I am dead, when all I
	 * stored is there to see.
	 */
	if (!shm_cas32(&s->event_sender, &none, me))
		return false;
	if (shm_fetch_and32(&s->flags, ~ev) & ev) {
		ivrdma_cq_test_stop_at(IVRDMA_TEST_STOP_SENDING);
		if (!ivrdma_channel_send(ctx, id, shm_load_relaxed64(&s->cq_handle))) {
			shm_fetch_or32(&s->flags, ev); /* the event thread posts it */
			posted = false;
		}
	}
	shm_cas32(&s->event_sender, &me, 0); /* mine unless the owner took it back */
	return posted;
}

bool ivrdma_cq_direct_post(struct ivrdma_context *ctx, struct ivrdma_cq_slot *s)
{
	bool posted = false;
	uint64_t id;

	if (ctx->event_relay || ctx->event_sock < 0 || !shm_load_relaxed64(&s->channel_id))
		return false;
	shm_fetch_add_seq_cst32(&s->direct_senders, 1); /* count, then read the id */
	id = shm_load_acquire64(&s->channel_id);
	/* An overflow's IBV_EVENT_CQ_ERR comes from the owner: ring it. */
	if (id && !(shm_load_acquire32(&s->flags) & IVRDMA_CQ_OVERFLOW))
		posted = take_and_send(ctx, s, id);
	shm_fetch_sub32(&s->direct_senders, 1);
	return posted;
}

/*
 * The owner's event thread, before it looks for EVENT: a producer that
 * died between taking EVENT and sending left its tag in event_sender, and
 * the event is due again. Under the events' lock.
 */
void ivrdma_cq_direct_recover(struct ivrdma_context *ctx, struct ivrdma_cq_slot *s)
{
	uint32_t tag = shm_load_acquire32(&s->event_sender);

	if (tag && !ivrdma_owner_alive(&ctx->region, tag, -1) &&
	    shm_cas32(&s->event_sender, &tag, 0))
		shm_fetch_or32(&s->flags, IVRDMA_CQ_EVENT);
}
