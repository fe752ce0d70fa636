// SPDX-License-Identifier: MIT
/*
 * The connection protocol of the rdma_cm emulation: what a CM agent
 * sends and how it answers (messages in ucma_wire.h), driven by the
 * commands (ucma_cmd.c) and by messages from other agents. ucma.lock is
 * held in every function here.
 *
 * It follows InfiniBand's CM: REQ -> REP -> RTU for RC (MRA while the
 * passive application has not answered), REJ to refuse, DREQ -> DREP to
 * disconnect, SIDR REQ -> SIDR REP for UD. Datagrams are lost only when a
 * receive queue is empty or an agent is gone, so a request is sent again
 * every UCMA_RETRY_NS until answered, and given up after its tries, with
 * the event an HCA's CM reports for that.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ucma.h"

#define UCMA_RETRY_NS 250000000ull /* 250 ms */
/*
 * 15 s without an answer: unreachable. The kernel's CM waits about a
 * minute (15 tries of 4.3 s); 4 s was too short for a TCG guest on a
 * loaded host, whose agent answered later than that.
 */
#define UCMA_REQ_TRIES	      60u
#define UCMA_DREQ_TRIES	      8u
#define UCMA_MIN_RNR_TIMER    12u /* 0.64 ms, as the kernel's CM uses */
#define UCMA_QP_TIMEOUT	      14u /* 4.096 us * 2^14 = 67 ms */
#define UCMA_SIDR_UNSUPPORTED 1u  /* SIDR REP status: no such service */
#define UCMA_SIDR_REJECT      2u  /* SIDR REP status: refused */
#define UCMA_RETRY_MASK	      7u  /* retry counts are 3-bit fields in IB's CM */

static uint32_t random_psn(void)
{
	uint32_t r = 0;

	(void)!getrandom(&r, sizeof(r), 0);
	return r & 0xffffffu;
}

static void msg_init(struct ucma_msg *m, uint8_t type, const struct ucma_id *id)
{
	memset(m, 0, sizeof(*m));
	m->magic = UCMA_MSG_MAGIC;
	m->type = type;
	m->sender_id = id->comm_id;
	m->receiver_id = id->peer_comm_id;
	m->port_space = id->port_space;
}

static void msg_private(struct ucma_msg *m, const uint8_t *data, uint8_t len)
{
	m->private_data_len = len;
	if (len) /* data may be NULL with nothing to copy */
		memcpy(m->private_data, data, len);
}

static void send_to_peer(const struct ucma_id *id, const struct ucma_msg *m)
{
	ucma_agent_send(id->peer.lid, id->peer_agent_qpn, id->peer_agent_qkey, m);
}

/* Sends m and keeps it to send again until the answer disarms it. */
static void send_armed(struct ucma_id *id, const struct ucma_msg *m)
{
	id->last = *m;
	id->tries = 0;
	id->deadline_ns = ucma_now_ns() + UCMA_RETRY_NS;
	send_to_peer(id, m);
	ucma_agent_kick();
}

static void disarm(struct ucma_id *id)
{
	id->deadline_ns = 0;
}

/* A reply to a message no ID of mine will take. */
static void reply_orphan(uint8_t type, uint8_t reason, const struct ucma_msg *in, uint16_t slid,
			 uint32_t src_qp)
{
	struct ucma_msg m = {.magic = UCMA_MSG_MAGIC, .type = type, .reason = reason};

	m.receiver_id = in->sender_id;
	m.port_space = in->port_space;
	ucma_agent_send(slid, src_qp, ucma_agent_qkey(), &m);
}

static uint32_t udp_qkey(const struct ucma_id *id)
{
	(void)id;
	return 0x01234567u; /* RDMA_UDP_QKEY: what rdma_cm gives every UD ID */
}

int ucma_conn_listen(struct ucma_id *id, uint32_t backlog)
{
	static const struct sockaddr_in any = {.sin_family = AF_INET};
	struct ivrdma_cm_listener l = {.port_space = id->port_space};
	int entry;

	if (id->state == UCMA_LISTEN) {
		id->backlog = backlog;
		return 0;
	}
	if (id->state == UCMA_IDLE && ucma_addr_bind(id, &any))
		return -EINVAL;
	if (id->state != UCMA_BOUND)
		return -EINVAL;
	l.port = id->src.port;
	l.bound = !ucma_addr_is_any(&id->src);
	memcpy(l.addr, id->src.ip, sizeof(l.addr));
	l.agent_qpn = ucma_agent_qpn();
	l.agent_qkey = ucma_agent_qkey();
	l.listen_id = id->comm_id;
	entry = ucma_agent_dir()->listen(ucma_agent_context(), &l);
	if (entry < 0)
		return entry;
	id->listen_entry = entry;
	id->backlog = backlog;
	id->state = UCMA_LISTEN;
	return 0;
}

/* The REQ (or SIDR REQ) of a connect, to the listener found. */
static void build_req(struct ucma_id *id, const struct ivrdma_cm_listener *l, int entry,
		      const struct rdma_ucm_conn_param *p, struct ucma_msg *m)
{
	bool ud = id->qp_type == IBV_QPT_UD;

	msg_init(m, ud ? UCMA_MSG_SIDR_REQ : UCMA_MSG_REQ, id);
	m->receiver_id = l->listen_id;
	m->listener = (uint32_t)entry;
	m->qpn = id->my_qpn;
	m->starting_psn = id->my_psn;
	m->responder_resources = p->responder_resources;
	m->initiator_depth = p->initiator_depth;
	m->flow_control = p->flow_control;
	m->retry_count = p->retry_count & UCMA_RETRY_MASK;
	m->rnr_retry_count = p->rnr_retry_count & UCMA_RETRY_MASK;
	m->srq = p->srq;
	m->src = id->src;
	m->dst = id->dst;
	msg_private(m, p->private_data, p->private_data_len);
}

int ucma_conn_connect(struct ucma_id *id, const struct rdma_ucm_conn_param *p)
{
	bool ud = id->qp_type == IBV_QPT_UD;
	struct ivrdma_cm_listener l;
	struct ucma_msg m;
	int entry;

	if (id->state != UCMA_ROUTE_RESOLVED)
		return -EINVAL;
	if (p->private_data_len > (ud ? UCMA_SIDR_REQ_PRIVATE : UCMA_REQ_PRIVATE))
		return -EINVAL;
	id->my_qpn = p->qp_num;
	id->my_psn = random_psn();
	id->responder_resources = p->responder_resources;
	id->initiator_depth = p->initiator_depth;
	id->retry_count = p->retry_count & UCMA_RETRY_MASK;
	entry = ucma_agent_dir()->find_listener(ucma_agent_context(), id->peer.node, id->port_space,
						id->dst.port, id->dst.ip, &l);
	if (entry < 0) { /* what the peer's CM would answer */
		id->state = UCMA_DISCONNECTED;
		if (ud)
			return ucma_event_post(id, UCMA_EVENT_UNREACHABLE, UCMA_SIDR_UNSUPPORTED);
		return ucma_event_post(id, UCMA_EVENT_REJECTED, UCMA_REJ_INVALID_SERVICE_ID);
	}
	id->peer_agent_qpn = l.agent_qpn;
	id->peer_agent_qkey = l.agent_qkey;
	id->peer_listener = (uint32_t)entry;
	build_req(id, &l, entry, p, &m);
	id->state = UCMA_REQ_SENT;
	send_armed(id, &m);
	return 0;
}

/* The passive side's answer went out or was refused: one less pending. */
static void request_answered(struct ucma_id *id)
{
	if (id->listener && id->listener->pending)
		id->listener->pending--;
}

static int accept_passive(struct ucma_id *id, const struct rdma_ucm_conn_param *p)
{
	bool ud = id->qp_type == IBV_QPT_UD;
	struct ucma_msg m;

	if (p->private_data_len > (ud ? UCMA_SIDR_REP_PRIVATE : UCMA_REP_PRIVATE))
		return -EINVAL;
	msg_init(&m, ud ? UCMA_MSG_SIDR_REP : UCMA_MSG_REP, id);
	msg_private(&m, p->private_data, p->private_data_len);
	m.qpn = p->qp_num;
	request_answered(id);
	if (ud) {
		m.qkey = udp_qkey(id);
		id->last = m; /* answers a repeated SIDR REQ */
		id->state = UCMA_ESTABLISHED;
		send_to_peer(id, &m);
		return 0;
	}
	id->my_qpn = p->qp_num;
	id->responder_resources = p->responder_resources;
	id->initiator_depth = p->initiator_depth;
	m.starting_psn = id->my_psn;
	m.responder_resources = p->responder_resources;
	m.initiator_depth = p->initiator_depth;
	m.flow_control = p->flow_control;
	m.rnr_retry_count = p->rnr_retry_count & UCMA_RETRY_MASK;
	m.srq = p->srq;
	id->state = UCMA_REP_SENT;
	send_armed(id, &m);
	return 0;
}

int ucma_conn_accept(struct ucma_id *id, const struct rdma_ucm_conn_param *p)
{
	struct ucma_msg m;

	if (id->state == UCMA_REQ_RCVD)
		return accept_passive(id, p);
	if (id->state != UCMA_REP_RCVD)
		return -EINVAL;
	/* The active side's ACCEPT is its RTU (librdmacm's conn_resp). */
	msg_init(&m, UCMA_MSG_RTU, id);
	id->last = m; /* answers a repeated REP */
	id->state = UCMA_ESTABLISHED;
	send_to_peer(id, &m);
	return 0;
}

static void send_reject(struct ucma_id *id, uint8_t reason, const uint8_t *pdata, uint8_t len)
{
	struct ucma_msg m;

	if (id->qp_type == IBV_QPT_UD) {
		msg_init(&m, UCMA_MSG_SIDR_REP, id);
		m.reason = UCMA_SIDR_REJECT;
	} else {
		msg_init(&m, UCMA_MSG_REJ, id);
		m.reason = reason ? reason : UCMA_REJ_CONSUMER_DEFINED;
	}
	msg_private(&m, pdata, len);
	request_answered(id);
	id->state = UCMA_DISCONNECTED;
	disarm(id);
	send_to_peer(id, &m);
}

int ucma_conn_reject(struct ucma_id *id, uint8_t reason, const uint8_t *pdata, uint8_t len)
{
	uint8_t limit = id->qp_type == IBV_QPT_UD ? UCMA_SIDR_REP_PRIVATE : UCMA_REJ_PRIVATE;

	if (id->state != UCMA_REQ_RCVD)
		return -EINVAL;
	if (len > limit)
		return -EINVAL;
	send_reject(id, reason, pdata, len);
	return 0;
}

static bool connected(const struct ucma_id *id)
{
	return id->qp_type != IBV_QPT_UD &&
	       (id->state == UCMA_REP_SENT || id->state == UCMA_REP_RCVD ||
		id->state == UCMA_ESTABLISHED);
}

int ucma_conn_disconnect(struct ucma_id *id)
{
	struct ucma_msg m;

	if (id->state == UCMA_DREQ_SENT || id->state == UCMA_DISCONNECTED)
		return 0; /* answering the peer's DREQ: its DREP is already out */
	if (!connected(id))
		return -EINVAL;
	msg_init(&m, UCMA_MSG_DREQ, id);
	id->state = UCMA_DREQ_SENT;
	send_armed(id, &m);
	return 0;
}

int ucma_conn_established(struct ucma_id *id)
{
	if (id->state != UCMA_REP_SENT)
		return 0;
	disarm(id);
	id->state = UCMA_ESTABLISHED;
	return ucma_event_post(id, UCMA_EVENT_ESTABLISHED, 0);
}

/* A listener going away refuses the requests its application never saw. */
static void abandon_listener(struct ucma_id *l)
{
	ucma_agent_dir()->unlisten(ucma_agent_context(), l->listen_entry);
	l->listen_entry = -1;
	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		struct ucma_id *c = ucma.ids[h];

		if (c && c->listener == l && c->state == UCMA_REQ_RCVD && !c->reported) {
			send_reject(c, 0, NULL, 0);
			ucma_id_free(c);
		}
	}
}

void ucma_conn_abandon(struct ucma_id *id)
{
	struct ucma_msg m;

	if (id->state == UCMA_LISTEN)
		abandon_listener(id);
	else if (id->state == UCMA_REQ_RCVD)
		send_reject(id, 0, NULL, 0);
	else if (id->state == UCMA_REQ_SENT && id->qp_type != IBV_QPT_UD)
		send_reject(id, UCMA_REJ_TIMEOUT, NULL, 0); /* as an HCA's CM gives up a REQ */
	else if (connected(id)) {
		msg_init(&m, UCMA_MSG_DREQ, id); /* once: nobody is left to hear the DREP */
		send_to_peer(id, &m);
	}
	id->state = UCMA_DISCONNECTED;
	disarm(id);
}

static bool has_peer_qp(const struct ucma_id *id)
{
	return id->state == UCMA_REQ_RCVD || id->state == UCMA_REP_SENT ||
	       id->state == UCMA_REP_RCVD || id->state == UCMA_ESTABLISHED;
}

static void qp_attr_init(const struct ucma_id *id, struct ib_uverbs_qp_attr *a)
{
	a->qp_attr_mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT;
	a->port_num = 1;
	if (id->qp_type == IBV_QPT_UD) {
		a->qkey = udp_qkey(id);
		a->qp_attr_mask |= IBV_QP_QKEY;
		return;
	}
	/* Reads and atomics only where this side takes them (responder resources). */
	a->qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
	if (id->responder_resources)
		a->qp_access_flags |= IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
	a->qp_attr_mask |= IBV_QP_ACCESS_FLAGS;
}

static void qp_attr_rtr(const struct ucma_id *id, struct ib_uverbs_qp_attr *a)
{
	a->qp_attr_mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
	a->path_mtu = ucma_agent_mtu();
	a->dest_qp_num = id->peer_qpn;
	a->rq_psn = id->peer_psn;
	a->max_dest_rd_atomic = id->responder_resources;
	a->min_rnr_timer = UCMA_MIN_RNR_TIMER;
	a->ah_attr.dlid = id->peer.lid;
	a->ah_attr.port_num = 1;
	memcpy(a->ah_attr.grh.dgid, id->peer.gid, sizeof(a->ah_attr.grh.dgid));
	a->ah_attr.grh.hop_limit = 1;
}

static void qp_attr_rts(const struct ucma_id *id, struct ib_uverbs_qp_attr *a)
{
	a->qp_attr_mask = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			  IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC;
	a->sq_psn = id->my_psn;
	a->timeout = UCMA_QP_TIMEOUT;
	a->retry_cnt = id->retry_count;
	a->rnr_retry = id->rnr_retry_count;
	a->max_rd_atomic = id->initiator_depth;
}

int ucma_conn_qp_attr(struct ucma_id *id, uint32_t state, struct ib_uverbs_qp_attr *a)
{
	bool ud = id->qp_type == IBV_QPT_UD;

	memset(a, 0, sizeof(*a));
	if (!id->has_device)
		return -EINVAL;
	a->qp_state = state;
	if (state == IBV_QPS_INIT) {
		qp_attr_init(id, a);
	} else if (ud && (state == IBV_QPS_RTR || state == IBV_QPS_RTS)) {
		a->qp_attr_mask = IBV_QP_STATE | (state == IBV_QPS_RTS ? IBV_QP_SQ_PSN : 0);
	} else if (state == IBV_QPS_RTR && has_peer_qp(id)) {
		qp_attr_rtr(id, a);
	} else if (state == IBV_QPS_RTS && has_peer_qp(id)) {
		qp_attr_rts(id, a);
	} else {
		return -EINVAL;
	}
	return 0;
}

/* A repeated request from a peer whose child already exists: answer again. */
static struct ucma_id *find_child(const struct ucma_id *l, uint16_t slid, uint32_t peer_comm_id)
{
	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		struct ucma_id *c = ucma.ids[h];

		if (c && c->listener == l && c->peer.lid == slid && c->peer_comm_id == peer_comm_id)
			return c;
	}
	return NULL;
}

static void answer_repeat(struct ucma_id *c)
{
	struct ucma_msg m;

	if (c->state == UCMA_REQ_RCVD) {
		msg_init(&m, UCMA_MSG_MRA, c);
		send_to_peer(c, &m);
	} else if (c->state == UCMA_REP_SENT || c->qp_type == IBV_QPT_UD) {
		send_to_peer(c, &c->last);
	}
}

/* The passive side's new ID for a request; NULL if it cannot take one. */
static struct ucma_id *new_child(struct ucma_id *l, const struct ucma_msg *m, uint16_t slid,
				 uint32_t src_qp)
{
	struct ivrdma_cm_node peer;
	struct ucma_id *c;

	if (ucma_agent_dir()->node_by_lid(ucma_agent_context(), slid, &peer) ||
	    (l->backlog && l->pending >= l->backlog))
		return NULL; /* unknown sender, or a full backlog: the sender tries again */
	/* uid 0 until ACCEPT names it: librdmacm takes only ESTABLISHED for such an ID. */
	c = ucma_id_new(l->channel, 0, l->port_space, l->qp_type);
	if (!c)
		return NULL;
	c->peer = peer;
	c->state = UCMA_REQ_RCVD;
	c->listener = l;
	c->has_device = c->has_src = true;
	c->src = m->dst;
	c->dst = m->src;
	c->peer_comm_id = m->sender_id;
	c->peer_agent_qpn = src_qp;
	c->peer_agent_qkey = ucma_agent_qkey();
	c->peer_qpn = m->qpn;
	c->peer_psn = m->starting_psn;
	c->my_psn = random_psn();
	c->responder_resources = m->initiator_depth;
	c->initiator_depth = m->responder_resources;
	c->retry_count = m->retry_count & UCMA_RETRY_MASK;
	c->rnr_retry_count = m->rnr_retry_count & UCMA_RETRY_MASK;
	l->pending++;
	return c;
}

static void on_request(const struct ucma_msg *m, uint16_t slid, uint32_t src_qp)
{
	struct ucma_id *l = ucma_id_by_comm(m->receiver_id), *c;
	bool ud = m->type == UCMA_MSG_SIDR_REQ;

	if (!l || l->state != UCMA_LISTEN || l->listen_entry != (int)m->listener ||
	    (l->qp_type == IBV_QPT_UD) != ud || l->port_space != m->port_space) {
		if (ud)
			reply_orphan(UCMA_MSG_SIDR_REP, UCMA_SIDR_UNSUPPORTED, m, slid, src_qp);
		else
			reply_orphan(UCMA_MSG_REJ, UCMA_REJ_INVALID_SERVICE_ID, m, slid, src_qp);
		return;
	}
	c = find_child(l, slid, m->sender_id);
	if (c) {
		answer_repeat(c);
		return;
	}
	c = new_child(l, m, slid, src_qp);
	if (c && ucma_event_post_conn(l, c, UCMA_EVENT_CONNECT_REQUEST, 0, m)) {
		l->pending--;
		ucma_id_free(c);
	}
}

/* The ID a reply is for: mine, and expecting it from that peer. */
static struct ucma_id *reply_target(const struct ucma_msg *m, uint16_t slid)
{
	struct ucma_id *id = ucma_id_by_comm(m->receiver_id);

	if (id)
		return id->peer.lid == slid ? id : NULL;
	if (m->type != UCMA_MSG_REJ || m->receiver_id != 0)
		return NULL;
	/* A REJ from an active side that never learnt my name: it gave up its REQ. */
	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		id = ucma.ids[h];
		if (id && id->listener && id->peer.lid == slid && id->peer_comm_id == m->sender_id)
			return id;
	}
	return NULL;
}

static void on_rep(struct ucma_id *id, const struct ucma_msg *m)
{
	if (id->state == UCMA_ESTABLISHED) {
		send_to_peer(id, &id->last); /* my RTU was lost */
		return;
	}
	if (id->state != UCMA_REQ_SENT)
		return;
	disarm(id);
	id->peer_comm_id = m->sender_id;
	id->peer_qpn = m->qpn;
	id->peer_psn = m->starting_psn;
	if (m->initiator_depth < id->responder_resources)
		id->responder_resources = m->initiator_depth;
	if (m->responder_resources < id->initiator_depth)
		id->initiator_depth = m->responder_resources;
	id->rnr_retry_count = m->rnr_retry_count & UCMA_RETRY_MASK;
	id->state = UCMA_REP_RCVD;
	ucma_event_post_conn(id, id, UCMA_EVENT_CONNECT_RESPONSE, 0, m);
}

static void on_sidr_rep(struct ucma_id *id, const struct ucma_msg *m)
{
	if (id->state != UCMA_REQ_SENT || id->qp_type != IBV_QPT_UD)
		return;
	disarm(id);
	if (m->reason) {
		id->state = UCMA_DISCONNECTED;
		ucma_event_post_conn(id, id, UCMA_EVENT_UNREACHABLE, m->reason, m);
		return;
	}
	id->state = UCMA_ESTABLISHED;
	ucma_event_post_ud(id, UCMA_EVENT_ESTABLISHED, m);
}

static void on_rej(struct ucma_id *id, const struct ucma_msg *m)
{
	if (id->state != UCMA_REQ_SENT && id->state != UCMA_REP_SENT && id->state != UCMA_REP_RCVD)
		return;
	disarm(id);
	id->state = UCMA_DISCONNECTED;
	ucma_event_post_conn(id, id, UCMA_EVENT_REJECTED, m->reason, m);
}

static void on_dreq(struct ucma_id *id)
{
	struct ucma_msg m;

	msg_init(&m, UCMA_MSG_DREP, id);
	send_to_peer(id, &m);
	if (id->state == UCMA_DISCONNECTED || !(connected(id) || id->state == UCMA_DREQ_SENT))
		return;
	disarm(id);
	id->state = UCMA_DISCONNECTED;
	ucma_event_post(id, UCMA_EVENT_DISCONNECTED, 0);
}

static void on_reply(const struct ucma_msg *m, uint16_t slid, uint32_t src_qp)
{
	struct ucma_id *id = reply_target(m, slid);

	if (!id) {
		if (m->type == UCMA_MSG_DREQ) /* gone already: stop its retries */
			reply_orphan(UCMA_MSG_DREP, 0, m, slid, src_qp);
		return;
	}
	switch (m->type) {
	case UCMA_MSG_MRA:
		if (id->state == UCMA_REQ_SENT)
			id->tries = 0; /* the application there is still deciding */
		break;
	case UCMA_MSG_REP:
		on_rep(id, m);
		break;
	case UCMA_MSG_RTU:
		ucma_conn_established(id);
		break;
	case UCMA_MSG_REJ:
		on_rej(id, m);
		break;
	case UCMA_MSG_DREQ:
		on_dreq(id);
		break;
	case UCMA_MSG_DREP:
		if (id->state == UCMA_DREQ_SENT) {
			disarm(id);
			id->state = UCMA_DISCONNECTED;
			ucma_event_post(id, UCMA_EVENT_DISCONNECTED, 0);
		}
		break;
	case UCMA_MSG_SIDR_REP:
		on_sidr_rep(id, m);
		break;
	}
}

static size_t private_limit(uint8_t type)
{
	switch (type) {
	case UCMA_MSG_REQ:
		return UCMA_REQ_PRIVATE;
	case UCMA_MSG_REP:
		return UCMA_REP_PRIVATE;
	case UCMA_MSG_REJ:
		return UCMA_REJ_PRIVATE;
	case UCMA_MSG_SIDR_REQ:
		return UCMA_SIDR_REQ_PRIVATE;
	case UCMA_MSG_SIDR_REP:
		return UCMA_SIDR_REP_PRIVATE;
	default:
		return 0;
	}
}

void ucma_conn_receive(const struct ucma_msg *m, size_t len, uint16_t slid, uint32_t src_qp)
{
	if (len < sizeof(*m) || m->magic != UCMA_MSG_MAGIC || m->type == 0 ||
	    m->type >= UCMA_MSG_TYPES || m->private_data_len > private_limit(m->type))
		return; /* not a message of ours: dropped, as a CM drops a bad MAD */
	if (m->type == UCMA_MSG_REQ || m->type == UCMA_MSG_SIDR_REQ)
		on_request(m, slid, src_qp);
	else
		on_reply(m, slid, src_qp);
}

/* A request that got no answer: what an HCA's CM reports when it gives up. */
static void give_up(struct ucma_id *id)
{
	uint32_t event = UCMA_EVENT_UNREACHABLE;
	int32_t status = -ETIMEDOUT;

	if (id->state == UCMA_DREQ_SENT) {
		event = UCMA_EVENT_DISCONNECTED;
		status = 0;
	}
	disarm(id);
	id->state = UCMA_DISCONNECTED;
	ucma_event_post(id, event, status);
}

uint64_t ucma_conn_tick(uint64_t now)
{
	uint64_t next = 0;

	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		struct ucma_id *id = ucma.ids[h];
		unsigned int tries;

		if (!id || !id->deadline_ns)
			continue;
		if (id->deadline_ns <= now) {
			tries = id->state == UCMA_DREQ_SENT ? UCMA_DREQ_TRIES : UCMA_REQ_TRIES;
			if (++id->tries >= tries) {
				give_up(id);
				continue;
			}
			send_to_peer(id, &id->last);
			id->deadline_ns = now + UCMA_RETRY_NS;
		}
		if (!next || id->deadline_ns < next)
			next = id->deadline_ns;
	}
	return next;
}
