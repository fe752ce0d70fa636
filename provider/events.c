// SPDX-License-Identifier: MIT
/*
 * The context's event thread, and completion / async events.
 *
 * One thread per context sleeps in poll() on its doorbells (zero CPU while
 * idle) and turns them into what verbs applications wait for:
 *
 *   IVRDMA_VEC_COMPLETION  a producer fired an armed CQ of mine: post the
 *                          completion-channel event (ib_uverbs_comp_event_desc)
 *                          unless it is posted already (by the producer
 *                          on a host, by the guest driver's event rule in
 *                          a VM: direct_event.c)
 *   IVRDMA_VEC_CONTROL     the directory changed (nodes joined or left:
 *                          port events; peers died: their QPs' ends
 *                          fail), or an initiator has news for one of my
 *                          QPs (COMM_EST, responder errors)
 *   transport control fd   ivrdmad's join/leave notices, drained so the
 *                          daemon never finds this process not reading;
 *                          in a guest, the device going away
 *                          (IBV_EVENT_DEVICE_FATAL)
 *   a 1 ms tick            only while send WRs wait on RNR or retry
 *                          timers, so they finish even if the application
 *                          only sleeps in ibv_get_cq_event
 *   a 200 ms tick          only while ivrdmad is away (a host process):
 *                          tries to rejoin the ivrdmad that adopts the
 *                          region next (ivt_reconnect), until it does or
 *                          is refused
 *
 * Busy-polling applications never wait for this thread: CQEs are in the
 * ring before any doorbell rings.
 *
 * Port events follow the directory: IBV_EVENT_PORT_ACTIVE when a node
 * joins (or my own node becomes usable again), IBV_EVENT_PORT_ERR when a
 * node leaves (or my own node stops being usable, as before a migration).
 * The port itself stays ACTIVE while my node is: the events say the
 * fabric changed, and whom it concerns is in the QP events that follow.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ivrdma.h"
#include "ivshmem_transport.h"
#include "shm_atomic.h"

/* A node as this thread last saw it. */
struct node_seen {
	bool active;
	uint32_t epoch;
};

struct ivrdma_events {
	pthread_t thread;
	int stop_fd;
	bool control_open; /* ivrdmad's socket still answers */
	bool rejoin;	   /* it closed: try to rejoin the next ivrdmad */
	int64_t next_rejoin_ms;
	bool region_gone;	 /* a guest's device went: never touch the region again */
	struct node_seen *nodes; /* one per directory entry */
	pthread_mutex_t lock;	 /* the armed-CQ list */
	struct ivrdma_cq **cqs;
	uint32_t nr_cqs, cap_cqs;
};

static bool send_async(struct ivrdma_context *ctx, const struct ib_uverbs_async_event_desc *ev)
{
	/* SOCK_SEQPACKET, non-blocking on our side: one record per event. */
	if (send(ctx->async_wr, ev, sizeof(*ev), MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(*ev))
		return true;
	ivrdma_dbg("async event %u lost: %s", ev->event_type, strerror(errno));
	return false;
}

void ivrdma_post_async_event(struct ivrdma_context *ctx, enum ibv_event_type type, uint64_t element)
{
	ivrdma_post_object_event(ctx, type, element, NULL);
}

/* An event about a QP, CQ or SRQ: *posted counts those the application may read. */
void ivrdma_post_object_event(struct ivrdma_context *ctx, enum ibv_event_type type,
			      uint64_t element, unsigned int *posted)
{
	struct ib_uverbs_async_event_desc ev = {.element = element, .event_type = type};

	pthread_mutex_lock(&ctx->async_lock);
	if (send_async(ctx, &ev) && posted)
		(*posted)++;
	pthread_mutex_unlock(&ctx->async_lock);
}

/*
 * Takes back the unread events about 'element' (the others go back in
 * order, after any posted meanwhile). Under async_lock.
 */
static unsigned int take_back_events(struct ivrdma_context *ctx, uint64_t element)
{
	struct ib_uverbs_async_event_desc ev, *keep = NULL;
	unsigned int dropped = 0;
	size_t n = 0, cap = 0;

	while (recv(ctx->ibv_ctx.context.async_fd, &ev, sizeof(ev), MSG_DONTWAIT) == sizeof(ev)) {
		if (ev.element == element) {
			dropped++;
			continue;
		}
		if (n == cap) {
			struct ib_uverbs_async_event_desc *k;

			cap = cap ? cap * 2 : 16;
			k = realloc(keep, cap * sizeof(*k));
			if (!k) {
				send_async(ctx, &ev); /* out of memory: out of order, not lost */
				continue;
			}
			keep = k;
		}
		keep[n++] = ev;
	}
	for (size_t i = 0; i < n; i++)
		send_async(ctx, &keep[i]);
	free(keep);
	return dropped;
}

/*
 * Before a QP, CQ or SRQ is freed: its events the application has not read
 * are dropped, as the kernel drops them; those it has read are waited for
 * until ibv_ack_async_event, which touches the object (m, c, completed:
 * the object's fields libibverbs acknowledges through).
 */
void ivrdma_events_settle(struct ivrdma_context *ctx, uint64_t element, const unsigned int *posted,
			  pthread_mutex_t *m, pthread_cond_t *c, const uint32_t *completed)
{
	unsigned int read_by_app;

	pthread_mutex_lock(&ctx->async_lock);
	read_by_app = *posted - take_back_events(ctx, element);
	pthread_mutex_unlock(&ctx->async_lock);
	pthread_mutex_lock(m);
	while (*completed < read_by_app)
		pthread_cond_wait(c, m);
	pthread_mutex_unlock(m);
}

/*
 * A CQE fired the CQ's arming (or filled it): the event goes straight to
 * the owner's channel where it can (direct_event.c); otherwise the owner,
 * whoever holds the slot, hears the doorbell and its thread posts it.
 */
void ivrdma_cq_wake(struct ivrdma_context *ctx, const struct ivrdma_cq_view *v)
{
	int peer = ivrdma_tag_peer(&ctx->region, shm_load_acquire32(&v->slot->hdr.owner));

	ivrdma_cq_test_stop_at(IVRDMA_TEST_STOP_FIRED);
	if (ivrdma_cq_direct_post(ctx, v->slot))
		return;
	if (peer >= 0 && ivrdma_ring_peer(ctx, peer, IVRDMA_VEC_COMPLETION))
		ivrdma_dbg("cannot wake the owner (peer %d) of a CQ", peer);
}

/* As ivrdma_qps_hold, for the context's CQs: their locks and ring chunks. */
void ivrdma_cqs_hold(struct ivrdma_context *ctx, bool hold, ivrdma_chunk_run_fn *run, void *arg)
{
	struct ivrdma_events *ev = ctx->events;

	if (hold)
		pthread_mutex_lock(&ev->lock);
	for (uint32_t i = 0; i < ev->nr_cqs; i++) {
		struct ivrdma_cq *cq = ev->cqs[i];

		if (hold) {
			ivrdma_queue_lock(&cq->lock);
			for (struct ivrdma_cq_ring *r = cq->rd; r; r = r->next)
				run(arg, r->first_chunk, r->nr_chunks);
		} else {
			ivrdma_queue_unlock(&cq->lock);
		}
	}
	if (!hold)
		pthread_mutex_unlock(&ev->lock);
}

/* Every CQ of the context, so its events and overflow can be reported. */
static int remember_cq(struct ivrdma_events *ev, struct ivrdma_cq *cq)
{
	for (uint32_t i = 0; i < ev->nr_cqs; i++)
		if (ev->cqs[i] == cq)
			return 0;
	if (ev->nr_cqs == ev->cap_cqs) {
		uint32_t cap = ev->cap_cqs ? ev->cap_cqs * 2 : 16;
		struct ivrdma_cq **n = realloc(ev->cqs, cap * sizeof(*n));

		if (!n)
			return ENOMEM;
		ev->cqs = n;
		ev->cap_cqs = cap;
	}
	ev->cqs[ev->nr_cqs++] = cq;
	return 0;
}

int ivrdma_events_add_cq(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	int rc;

	pthread_mutex_lock(&ctx->events->lock);
	rc = remember_cq(ctx->events, cq);
	pthread_mutex_unlock(&ctx->events->lock);
	return rc;
}

int ivrdma_req_notify_cq(struct ibv_cq *ibcq, int solicited_only)
{
	struct ivrdma_cq *cq = to_icq(ibcq);
	uint32_t arm = IVRDMA_CQ_ARMED | (solicited_only ? IVRDMA_CQ_ARMED_SOLICITED : 0);
	/* A later "all" arming widens an earlier solicited-only one. */
	if (!solicited_only)
		shm_fetch_and32(&cq->view.slot->flags, ~(uint32_t)IVRDMA_CQ_ARMED_SOLICITED);
	shm_fetch_or32(&cq->view.slot->flags, solicited_only ? arm : IVRDMA_CQ_ARMED);
	/* Pairs with the producer's fence in ivrdma_cq_push: arm, then poll. */
	shm_fence_seq_cst();
	return 0;
}

void ivrdma_events_forget_cq(struct ivrdma_context *ctx, struct ivrdma_cq *cq)
{
	struct ivrdma_events *ev = ctx->events;

	pthread_mutex_lock(&ev->lock);
	for (uint32_t i = 0; i < ev->nr_cqs; i++) {
		if (ev->cqs[i] == cq) {
			ev->cqs[i] = ev->cqs[--ev->nr_cqs];
			break;
		}
	}
	pthread_mutex_unlock(&ev->lock);
}

/*
 * The event thread's post into a CQ's own channel: a preload socket by its
 * path (the socket is bound there, not connected), any other by its fd.
 * False if the event was lost; a CQ with no channel has nowhere to post.
 */
static bool post_own(struct ivrdma_context *ctx, struct ivrdma_cq *cq, uint64_t cq_handle)
{
	struct ibv_comp_channel *ch = cq->vcq.cq.channel;
	struct ib_uverbs_comp_event_desc desc = {.cq_handle = cq_handle};

	if (cq->channel_id && !(cq->channel_id & IVT_KERNEL_CHANNEL_ID))
		return ivrdma_channel_send(ctx, cq->channel_id, cq_handle);
	return !ch || write(ch->fd, &desc, sizeof(desc)) == sizeof(desc);
}

/*
 * Posts one channel event per CQ whose arming fired (its producer's, if
 * that died before sending it), and IBV_EVENT_CQ_ERR once for a CQ a
 * producer found full (the CQ is then in error, as on an HCA: completions
 * were lost).
 */
static void deliver_cq_events(struct ivrdma_context *ctx)
{
	struct ivrdma_events *ev = ctx->events;

	pthread_mutex_lock(&ev->lock);
	for (uint32_t i = 0; i < ev->nr_cqs; i++) {
		struct ivrdma_cq *cq = ev->cqs[i];
		uint32_t f;

		ivrdma_cq_direct_recover(ctx, cq->view.slot);
		f = shm_load_acquire32(&cq->view.slot->flags);
		if ((f & IVRDMA_CQ_OVERFLOW) && !cq->overflow_reported) {
			cq->overflow_reported = true;
			ivrdma_post_object_event(ctx, IBV_EVENT_CQ_ERR, (uintptr_t)&cq->vcq.cq,
						 &cq->async_posted);
		}

		/* Not a CAS: a concurrent re-arming must not make the event wait for the next
		 * doorbell. */
		if (!(f & IVRDMA_CQ_EVENT) ||
		    !(shm_fetch_and32(&cq->view.slot->flags, ~(uint32_t)IVRDMA_CQ_EVENT) &
		      IVRDMA_CQ_EVENT))
			continue;
		if (!post_own(ctx, cq, (uintptr_t)&cq->vcq.cq))
			ivrdma_dbg("completion event lost: %s", strerror(errno));
	}
	pthread_mutex_unlock(&ev->lock);
}

/* Reads a node's state; true if its membership changed since last time. */
static bool node_changed(const struct ivrdma_region *r, uint32_t i, struct node_seen *seen)
{
	struct ivrdma_node *n = ivrdma_region_node(r, i);
	bool active = shm_load_acquire32(&n->state) == IVRDMA_NODE_ACTIVE;
	uint32_t epoch = shm_load_relaxed32(&n->epoch);
	bool changed = active != seen->active || (active && epoch != seen->epoch);

	seen->active = active;
	seen->epoch = epoch;
	return changed;
}

static void post_port_events(struct ivrdma_context *ctx)
{
	const struct ivrdma_region *r = &ctx->region;

	for (uint32_t i = 0; i < r->nodes.entries; i++) {
		struct node_seen *seen = &ctx->events->nodes[i];

		if (node_changed(r, i, seen))
			ivrdma_post_async_event(
			    ctx, seen->active ? IBV_EVENT_PORT_ACTIVE : IBV_EVENT_PORT_ERR,
			    IVRDMA_PORT_NUM);
	}
}

/*
 * Something changed in the region: find out what. A producer that died
 * with one of my CQs' events due (ivrdma_layout.h, "Completion events")
 * rang no completion doorbell: ivrdmad rings this one for every death.
 */
static void on_control(struct ivrdma_context *ctx)
{
	deliver_cq_events(ctx);
	post_port_events(ctx);
	ivrdma_suspend_check(ctx);
	ivrdma_qps_check(ctx);
	ivrdma_srq_check_limits(ctx);
}

/* Messages from ivrdmad or the device: true if the region went with the device. */
static bool drain_control(struct ivrdma_context *ctx)
{
	int rc = ivt_process_control(ctx->transport);

	if (rc != -ECONNRESET)
		return false;
	ctx->events->control_open = false;
	if (ivrdma_in_guest(ctx)) {
		/*
		 * The device was unbound or unplugged: the region (BAR2) went
		 * with it. As from a disassociated kernel device, the event is
		 * the last: then ibv_get_async_event fails.
		 */
		ivrdma_dbg("the ivshmem device is gone");
		if (!ivrdma_context_left(ctx)) /* else leave_region() reported it */
			ivrdma_post_async_event(ctx, IBV_EVENT_DEVICE_FATAL, 0);
		shutdown(ctx->async_wr, SHUT_WR);
		return true;
	}
	/*
	 * A host process keeps the region: the data path lives on, only
	 * membership news stop until a new ivrdmad adopts the region.
	 */
	ivrdma_dbg("ivrdmad closed its connection: rejoining when it is back");
	ctx->events->rejoin = true;
	ctx->events->next_rejoin_ms = 0;
	return false;
}

static int64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define REJOIN_PERIOD_MS 200

/* While ivrdmad is away: rejoin its successor, or stop trying once refused. */
static void try_rejoin(struct ivrdma_context *ctx)
{
	struct ivrdma_events *ev = ctx->events;
	int64_t now = clock_ms();
	int rc;

	if (now < ev->next_rejoin_ms)
		return;
	rc = ivt_reconnect(ctx->transport);
	if (rc == -EAGAIN) {
		ev->next_rejoin_ms = now + REJOIN_PERIOD_MS;
		return;
	}
	ev->rejoin = false;
	if (rc) {
		ivrdma_dbg("cannot rejoin ivrdmad: %s", strerror(-rc));
		return;
	}
	ivrdma_dbg("rejoined ivrdmad as peer %d", ivt_peer_id(ctx->transport));
	ev->control_open = true;
	on_control(ctx); /* what changed while it was away */
}

/* poll()'s timeout: the progress tick, the rejoin tick, or none. */
static int poll_timeout(struct ivrdma_events *ev, bool waiting)
{
	int64_t left;

	if (waiting)
		return 1;
	if (!ev->rejoin)
		return -1;
	left = ev->next_rejoin_ms - clock_ms();
	return left <= 0 ? 0 : left > REJOIN_PERIOD_MS ? REJOIN_PERIOD_MS : (int)left;
}

static void *event_thread(void *arg)
{
	struct ivrdma_context *ctx = arg;
	struct ivrdma_events *ev = ctx->events;

	for (;;) {
		bool live = !ev->region_gone;
		bool waiting = live && atomic_load(&ctx->nr_pending) > 0;
		struct pollfd pfd[4] = {
		    {.fd = ev->stop_fd, .events = POLLIN},
		    {.fd = live ? ivt_vector_fd(ctx->transport, IVRDMA_VEC_COMPLETION) : -1,
		     .events = POLLIN},
		    {.fd = live ? ivt_vector_fd(ctx->transport, IVRDMA_VEC_CONTROL) : -1,
		     .events = POLLIN},
		    {.fd = live && ev->control_open ? ivt_control_fd(ctx->transport) : -1,
		     .events = POLLIN},
		};

		if (poll(pfd, 4, poll_timeout(ev, waiting)) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		/* Gone, the region's pages fault (SIGBUS): from now on only wait to stop. */
		if (pfd[3].revents && drain_control(ctx)) {
			ev->region_gone = true;
			continue;
		}
		if (pfd[1].revents && ivt_consume(ctx->transport, IVRDMA_VEC_COMPLETION) >= 0)
			deliver_cq_events(ctx);
		if (pfd[2].revents || pfd[3].revents) {
			ivt_consume(ctx->transport, IVRDMA_VEC_CONTROL);
			on_control(ctx);
		}
		if (waiting)
			ivrdma_progress(ctx);
		if (live && ev->rejoin)
			try_rejoin(ctx);
	}
	return NULL;
}

int ivrdma_events_start(struct ivrdma_context *ctx)
{
	struct ivrdma_events *ev = calloc(1, sizeof(*ev));
	sigset_t all, old;
	int rc;

	if (!ev)
		return -ENOMEM;
	ev->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ev->stop_fd < 0) {
		free(ev);
		return -errno;
	}
	ev->control_open = true;
	ev->nodes = calloc(ctx->region.nodes.entries, sizeof(*ev->nodes));
	if (!ev->nodes) {
		close(ev->stop_fd);
		free(ev);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < ctx->region.nodes.entries; i++)
		node_changed(&ctx->region, i, &ev->nodes[i]); /* what is there now is no news */
	pthread_mutex_init(&ev->lock, NULL);
	ctx->events = ev;
	/* The application's signals are for its own threads, not this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&ev->thread, NULL, event_thread, ctx);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		close(ev->stop_fd);
		pthread_mutex_destroy(&ev->lock);
		free(ev->nodes);
		free(ev);
		ctx->events = NULL;
		return -rc;
	}
	return 0;
}

void ivrdma_events_stop(struct ivrdma_context *ctx)
{
	struct ivrdma_events *ev = ctx->events;
	uint64_t one = 1;

	if (!ev)
		return;
	if (write(ev->stop_fd, &one, sizeof(one)) != sizeof(one))
		ivrdma_dbg("cannot stop the event thread: %s", strerror(errno));
	pthread_join(ev->thread, NULL);
	close(ev->stop_fd);
	pthread_mutex_destroy(&ev->lock);
	free(ev->cqs);
	free(ev->nodes);
	free(ev);
	ctx->events = NULL;
}
