// SPDX-License-Identifier: MIT
/*
 * Channels, IDs and events of the rdma_cm emulation (ucma.h). Every
 * function here runs with ucma.lock held.
 *
 * An ID is found by its handle in O(1): the handle is its index in
 * ucma.ids. Its comm ID, the name other agents use for it, adds the
 * slot's generation, so a message for an ID that is gone never reaches
 * the ID that reuses its slot.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ucma.h"

#define UCMA_MAX_IDS 65536u /* librdmacm's own limit on handles */

struct ucma_channel *ucma_channel_new(int fd)
{
	struct ucma_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->fd = fd;
	/* Shares fd's open file: its O_NONBLOCK too, as the kernel's one file would. */
	ch->pipe_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (ch->pipe_fd < 0) {
		free(ch);
		return NULL;
	}
	return ch;
}

static void channel_free(struct ucma_channel *ch)
{
	(void)syscall(SYS_close, ch->pipe_fd); /* close() is ours: no channel's fd */
	free(ch);
}

/* Closing a channel ends its IDs, as closing the kernel's device does. */
void ucma_channel_close(struct ucma_channel *ch)
{
	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		struct ucma_id *id = ucma.ids[h];

		if (id && id->channel == ch) {
			ucma_conn_abandon(id);
			ucma_id_free(id);
		}
	}
	while (ch->head) {
		struct ucma_event *e = ch->head;

		ch->head = e->next;
		free(e);
	}
	ch->tail = NULL;
	ch->closed = true;
	if (!ch->waiters)
		channel_free(ch);
}

void ucma_channel_waiter_left(struct ucma_channel *ch)
{
	if (!--ch->waiters && ch->closed)
		channel_free(ch);
}

static int grow_ids(void)
{
	uint32_t n = ucma.nr_ids ? ucma.nr_ids * 2 : 64;
	struct ucma_id **ids;
	uint16_t *gens;

	if (ucma.nr_ids >= UCMA_MAX_IDS)
		return -ENOSPC;
	ids = realloc(ucma.ids, n * sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	ucma.ids = ids;
	gens = realloc(ucma.gens, n * sizeof(*gens));
	if (!gens)
		return -ENOMEM;
	ucma.gens = gens;
	memset(ids + ucma.nr_ids, 0, (n - ucma.nr_ids) * sizeof(*ids));
	memset(gens + ucma.nr_ids, 0, (n - ucma.nr_ids) * sizeof(*gens));
	ucma.nr_ids = n;
	return 0;
}

static int64_t free_handle(void)
{
	for (;;) {
		for (uint32_t h = 0; h < ucma.nr_ids; h++)
			if (!ucma.ids[h])
				return h;
		if (grow_ids())
			return -1;
	}
}

struct ucma_id *ucma_id_new(struct ucma_channel *ch, uint64_t uid, uint16_t ps, uint8_t qp_type)
{
	int64_t h = free_handle();
	struct ucma_id *id;

	if (h < 0)
		return NULL;
	id = calloc(1, sizeof(*id));
	if (!id)
		return NULL;
	ucma.gens[h]++;
	id->handle = (uint32_t)h;
	id->comm_id = (uint32_t)ucma.gens[h] << 16 | (uint32_t)h;
	id->uid = uid;
	id->channel = ch;
	id->port_space = ps;
	id->qp_type = qp_type;
	id->listen_entry = -1;
	ucma.ids[h] = id;
	return id;
}

struct ucma_id *ucma_id_get(uint32_t handle)
{
	return handle < ucma.nr_ids ? ucma.ids[handle] : NULL;
}

struct ucma_id *ucma_id_by_comm(uint32_t comm_id)
{
	struct ucma_id *id = ucma_id_get(comm_id & 0xffffu);

	return id && id->comm_id == comm_id ? id : NULL;
}

void ucma_id_free(struct ucma_id *id)
{
	ucma_events_drop(id);
	ucma_mcast_free_all(id);
	for (uint32_t h = 0; h < ucma.nr_ids; h++)
		if (ucma.ids[h] && ucma.ids[h]->listener == id)
			ucma.ids[h]->listener = NULL;
	ucma.ids[id->handle] = NULL;
	free(id);
}

/* One byte per queued event keeps the fd readable exactly while events wait. */
static void channel_signal(struct ucma_channel *ch)
{
	const char b = 0;

	/* The raw system call: write() is ours, and would take this for a command. */
	(void)!syscall(SYS_write, ch->pipe_fd, &b, 1);
}

static struct ucma_event *event_new(struct ucma_id *report_to, uint32_t handle, uint32_t event,
				    int32_t status)
{
	struct ucma_event *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->id = report_to;
	e->resp.uid = report_to->uid;
	e->resp.id = handle;
	e->resp.event = event;
	e->resp.status = (uint32_t)status;
	return e;
}

static void event_queue(struct ucma_channel *ch, struct ucma_event *e)
{
	if (ch->tail)
		ch->tail->next = e;
	else
		ch->head = e;
	ch->tail = e;
	channel_signal(ch);
}

int ucma_event_post(struct ucma_id *id, uint32_t event, int32_t status)
{
	return ucma_event_post_conn(id, id, event, status, NULL);
}

static void copy_conn_param(struct ucma_event *e, const struct ucma_msg *m, bool ud)
{
	if (ud) {
		struct rdma_ucm_ud_param *u = &e->resp.param.ud;

		u->private_data_len = m->private_data_len;
		memcpy(u->private_data, m->private_data, m->private_data_len);
		return;
	}
	struct rdma_ucm_conn_param *c = &e->resp.param.conn;

	c->qp_num = m->qpn;
	c->private_data_len = m->private_data_len;
	memcpy(c->private_data, m->private_data, m->private_data_len);
	/* What the peer will read from me is what I may take from it. */
	c->responder_resources = m->initiator_depth;
	c->initiator_depth = m->responder_resources;
	c->flow_control = m->flow_control;
	c->retry_count = m->retry_count;
	c->rnr_retry_count = m->rnr_retry_count;
	c->srq = m->srq;
	c->valid = 1;
}

int ucma_event_post_conn(struct ucma_id *report_to, struct ucma_id *id, uint32_t event,
			 int32_t status, const struct ucma_msg *m)
{
	struct ucma_event *e = event_new(report_to, id->handle, event, status);

	if (!e)
		return -ENOMEM;
	if (m)
		copy_conn_param(e, m, id->qp_type == IBV_QPT_UD);
	event_queue(report_to->channel, e);
	return 0;
}

int ucma_event_post_ud(struct ucma_id *id, uint32_t event, const struct ucma_msg *m)
{
	struct ucma_event *e = event_new(id, id->handle, event, 0);
	struct rdma_ucm_ud_param *u;

	if (!e)
		return -ENOMEM;
	copy_conn_param(e, m, true);
	u = &e->resp.param.ud;
	u->qp_num = m->qpn;
	u->qkey = m->qkey;
	u->ah_attr.dlid = id->peer.lid;
	u->ah_attr.port_num = 1;
	event_queue(id->channel, e);
	return 0;
}

int ucma_event_post_join(struct ucma_id *id, struct ucma_mcast *mc)
{
	struct ucma_event *e = event_new(id, id->handle, UCMA_EVENT_MULTICAST_JOIN, 0);
	struct rdma_ucm_ud_param *u;

	if (!e)
		return -ENOMEM;
	e->mc = mc;
	e->resp.uid = mc->uid;
	u = &e->resp.param.ud;
	u->qp_num = UCMA_MCAST_QPN;
	u->qkey = 0x01234567u; /* RDMA_UDP_QKEY */
	u->ah_attr.dlid = mc->mlid;
	u->ah_attr.is_global = 1;
	u->ah_attr.port_num = 1;
	u->ah_attr.grh.hop_limit = 1;
	memcpy(u->ah_attr.grh.dgid, mc->mgid, sizeof(u->ah_attr.grh.dgid));
	event_queue(id->channel, e);
	return 0;
}

/*
 * Takes every event of ch that 'match' picks off the queue, keeping the
 * others in order: onto channel 'to' if given, else freed. Returns how many.
 */
static uint32_t events_take_matching(struct ucma_channel *ch,
				     bool (*match)(const struct ucma_event *e, const void *arg),
				     const void *arg, struct ucma_channel *to)
{
	struct ucma_event **pp = &ch->head, *last = NULL;
	uint32_t n = 0;

	while (*pp) {
		struct ucma_event *e = *pp;

		if (!match(e, arg)) {
			last = e;
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		e->next = NULL;
		if (to)
			event_queue(to, e);
		else
			free(e);
		n++;
	}
	ch->tail = last;
	return n;
}

static bool of_mcast(const struct ucma_event *e, const void *mc)
{
	return e->mc == mc;
}

/* An ID's own events, and the CONNECT_REQUEST that names it (a listener's). */
static bool about_id(const struct ucma_event *e, const void *arg)
{
	const struct ucma_id *id = arg;

	return e->id == id || e->resp.id == id->handle;
}

static bool counted_on_id(const struct ucma_event *e, const void *id)
{
	return e->id == id;
}

uint32_t ucma_events_drop_mcast(struct ucma_id *id, struct ucma_mcast *mc)
{
	return events_take_matching(id->channel, of_mcast, mc, NULL);
}

uint32_t ucma_events_drop(struct ucma_id *id)
{
	return events_take_matching(id->channel, about_id, id, NULL);
}

void ucma_events_move(struct ucma_id *id, struct ucma_channel *to)
{
	events_take_matching(id->channel, counted_on_id, id, to);
}

struct ucma_event *ucma_event_take(struct ucma_channel *ch)
{
	struct ucma_event *e = ch->head;

	if (!e)
		return NULL;
	ch->head = e->next;
	if (!ch->head)
		ch->tail = NULL;
	e->id->events_reported++;
	if (e->mc)
		e->mc->events_reported++;
	if (e->resp.event == UCMA_EVENT_CONNECT_REQUEST) {
		struct ucma_id *child = ucma_id_get(e->resp.id);

		if (child)
			child->reported = true;
	}
	return e;
}
