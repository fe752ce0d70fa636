// SPDX-License-Identifier: MIT
/*
 * The rdma_ucm commands (<rdma/rdma_user_cm.h>) librdmacm writes to a
 * channel: each is a struct rdma_ucm_cmd_hdr followed by the command's
 * struct; a response goes where the command's 'response' points, as the
 * kernel's copy_to_user would put it. Every handler returns 0 or a
 * negative errno, which write() hands to librdmacm.
 *
 * librdmacm first tries binding an AF_IB address; refusing it makes
 * librdmacm use the IP commands only (BIND_IP, RESOLVE_IP, QUERY_ROUTE),
 * so QUERY, BIND of AF_IB and RESOLVE_ADDR are not served. Multicast
 * joins are ucma_mcast.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ucma.h"

struct cmd {
	struct ucma_channel *ch;
	const void *in; /* the command's struct, hdr.in bytes of it */
	uint16_t out;	/* room for the response */
};

static int respond(const struct cmd *c, uint64_t response, const void *resp, size_t size)
{
	if (c->out < size)
		return -ENOSPC;
	if (!response)
		return -EFAULT;
	memcpy((void *)(uintptr_t)response, resp, size);
	return 0;
}

/* The ID a command names; it must be on the channel the command came to. */
static struct ucma_id *cmd_id(const struct cmd *c, uint32_t handle)
{
	struct ucma_id *id = ucma_id_get(handle);

	return id && id->channel == c->ch ? id : NULL;
}

/*
 * The QP type an ID is for, as the kernel decides it: the port space's,
 * except RDMA_PS_IB's, whose IDs say theirs (RC, UC, UD or XRC).
 */
static int id_qp_type(const struct rdma_ucm_create_id *in, uint8_t *type)
{
	switch (in->ps) {
	case RDMA_PS_TCP:
		*type = IBV_QPT_RC;
		return 0;
	case RDMA_PS_UDP:
	case RDMA_PS_IPOIB:
		*type = IBV_QPT_UD;
		return 0;
	case RDMA_PS_IB:
		*type = in->qp_type;
		return in->qp_type == IBV_QPT_RC || in->qp_type == IBV_QPT_UC ||
			       in->qp_type == IBV_QPT_UD || in->qp_type == IBV_QPT_XRC_SEND ||
			       in->qp_type == IBV_QPT_XRC_RECV
			   ? 0
			   : -EINVAL;
	default:
		return -EINVAL;
	}
}

static int do_create_id(const struct cmd *c)
{
	const struct rdma_ucm_create_id *in = c->in;
	struct rdma_ucm_create_id_resp resp;
	struct ucma_id *id;
	uint8_t type;
	int err = id_qp_type(in, &type);

	if (err)
		return err;
	id = ucma_id_new(c->ch, in->uid, in->ps, type);
	if (!id)
		return -ENOMEM;
	resp.id = id->handle;
	err = respond(c, in->response, &resp, sizeof(resp));
	if (err)
		ucma_id_free(id);
	return err;
}

static int do_destroy_id(const struct cmd *c)
{
	const struct rdma_ucm_destroy_id *in = c->in;
	struct rdma_ucm_destroy_id_resp resp;
	struct ucma_id *id = cmd_id(c, in->id);

	if (!id)
		return -ENOENT;
	ucma_conn_abandon(id);
	resp.events_reported = id->events_reported;
	ucma_id_free(id);
	return respond(c, in->response, &resp, sizeof(resp));
}

static int do_bind_ip(const struct cmd *c)
{
	const struct rdma_ucm_bind_ip *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	return id ? ucma_addr_bind(id, &in->addr) : -ENOENT;
}

static int do_bind(const struct cmd *c)
{
	const struct rdma_ucm_bind *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	if (!id)
		return -ENOENT;
	if (in->addr_size > sizeof(in->addr))
		return -EINVAL;
	return ucma_addr_bind(id, &in->addr); /* AF_IB: EAFNOSUPPORT */
}

static int do_resolve_ip(const struct cmd *c)
{
	const struct rdma_ucm_resolve_ip *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	return id ? ucma_addr_resolve(id, &in->src_addr, &in->dst_addr) : -ENOENT;
}

static int do_resolve_route(const struct cmd *c)
{
	const struct rdma_ucm_resolve_route *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	return id ? ucma_route_resolve(id) : -ENOENT;
}

static int do_query_route(const struct cmd *c)
{
	const struct rdma_ucm_query *in = c->in;
	struct rdma_ucm_query_route_resp resp;
	struct ucma_id *id = cmd_id(c, in->id);

	if (!id)
		return -ENOENT;
	ucma_route_query(id, &resp);
	return respond(c, in->response, &resp, sizeof(resp));
}

static int do_listen(const struct cmd *c)
{
	const struct rdma_ucm_listen *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	return id ? ucma_conn_listen(id, in->backlog) : -ENOENT;
}

static int do_connect(const struct cmd *c)
{
	const struct rdma_ucm_connect *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	return id ? ucma_conn_connect(id, &in->conn_param) : -ENOENT;
}

static int do_accept(const struct cmd *c)
{
	const struct rdma_ucm_accept *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	if (!id)
		return -ENOENT;
	if (in->uid)
		id->uid = in->uid; /* the passive side's own rdma_cm_id from now on */
	return ucma_conn_accept(id, &in->conn_param);
}

static int do_reject(const struct cmd *c)
{
	const struct rdma_ucm_reject *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	if (!id)
		return -ENOENT;
	return ucma_conn_reject(id, in->reason, in->private_data, in->private_data_len);
}

static int do_disconnect(const struct cmd *c)
{
	const struct rdma_ucm_disconnect *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	return id ? ucma_conn_disconnect(id) : -ENOENT;
}

static int do_init_qp_attr(const struct cmd *c)
{
	const struct rdma_ucm_init_qp_attr *in = c->in;
	struct ib_uverbs_qp_attr resp;
	struct ucma_id *id = cmd_id(c, in->id);
	int err;

	if (!id)
		return -ENOENT;
	err = ucma_conn_qp_attr(id, in->qp_state, &resp);
	return err ? err : respond(c, in->response, &resp, sizeof(resp));
}

static int do_set_option(const struct cmd *c)
{
	const struct rdma_ucm_set_option *in = c->in;

	if (!cmd_id(c, in->id))
		return -ENOENT;
	/* TOS, REUSEADDR, AFONLY and ACK_TIMEOUT change nothing in a region. */
	if (in->level == RDMA_OPTION_ID && in->optname <= RDMA_OPTION_ID_ACK_TIMEOUT)
		return 0;
	return -ENOSYS; /* an IB path record: librdmacm falls back to RESOLVE_ROUTE */
}

static int do_notify(const struct cmd *c)
{
	const struct rdma_ucm_notify *in = c->in;
	struct ucma_id *id = cmd_id(c, in->id);

	if (!id)
		return -ENOENT;
	return in->event == IBV_EVENT_COMM_EST ? ucma_conn_established(id) : 0;
}

static int do_migrate_id(const struct cmd *c)
{
	const struct rdma_ucm_migrate_id *in = c->in;
	struct ucma_channel *from = ucma_channel_by_fd((int)in->fd);
	struct rdma_ucm_migrate_resp resp;
	struct ucma_id *id = ucma_id_get(in->id);

	if (!from || !id || id->channel != from)
		return -EINVAL;
	resp.events_reported = id->events_reported;
	if (from != c->ch) /* onto its own channel again: nothing moves */
		ucma_events_move(id, c->ch);
	id->channel = c->ch;
	return respond(c, in->response, &resp, sizeof(resp));
}

/* One byte of the channel's pipe per event; returns 1, or a negative errno. */
static int take_byte(struct ucma_channel *ch)
{
	char b;
	ssize_t n;

	do
		n = read(ch->pipe_fd, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		return 1;
	return n < 0 ? -errno : -EIO;
}

/*
 * IVRDMA_UCMA_TEST_EVENTLESS_MS=N (tests only): a GET_EVENT that took a
 * byte and found no event waits N ms before it reads again, so that a
 * test can close the channel right there.
 */
static void test_eventless_pause(void)
{
	const char *v = getenv("IVRDMA_UCMA_TEST_EVENTLESS_MS");

	if (v && *v)
		usleep((useconds_t)atoi(v) * 1000u);
}

/*
 * GET_EVENT blocks (unless the fd is non-blocking) until an event waits.
 * Each queued event put one byte in the pipe, and a reader takes a byte
 * before it takes an event, so a byte whose event was dropped (its ID
 * destroyed) only sends the reader round again. So does a close() of
 * the channel meanwhile: the kernel's reader, which holds the file,
 * waits on too (rping's CM thread does, as its main thread exits).
 */
static int do_get_event(const struct cmd *c)
{
	const struct rdma_ucm_get_event *in = c->in;
	struct ucma_channel *ch = c->ch;
	struct ucma_event *e;
	bool eventless = false;
	int err;

	if (c->out < sizeof(e->resp))
		return -ENOSPC;
	ch->waiters++; /* ch stays, closed or not, until this one has left */
	for (;;) {
		pthread_mutex_unlock(&ucma.lock);
		if (eventless)
			test_eventless_pause();
		err = take_byte(ch);
		pthread_mutex_lock(&ucma.lock);
		if (err < 0 || (e = ucma_event_take(ch)))
			break;
		eventless = true;
	}
	ucma_channel_waiter_left(ch);
	if (err < 0)
		return err;
	err = respond(c, in->response, &e->resp, sizeof(e->resp));
	free(e);
	return err;
}

static int join(const struct cmd *c, uint32_t handle, const void *addr, uint64_t uid,
		uint64_t response)
{
	struct rdma_ucm_create_id_resp resp;
	struct ucma_id *id = cmd_id(c, handle);
	int err;

	if (!id)
		return -ENOENT;
	err = ucma_mcast_join(id, addr, uid, &resp.id);
	return err ? err : respond(c, response, &resp, sizeof(resp));
}

static int do_join_ip_mcast(const struct cmd *c)
{
	const struct rdma_ucm_join_ip_mcast *in = c->in;

	return join(c, in->id, &in->addr, in->uid, in->response);
}

static int do_join_mcast(const struct cmd *c)
{
	const struct rdma_ucm_join_mcast *in = c->in;

	if (in->addr_size > sizeof(in->addr) || in->join_flags >= RDMA_MC_JOIN_FLAG_RESERVED)
		return -EINVAL;
	return join(c, in->id, &in->addr, in->uid, in->response);
}

static int do_leave_mcast(const struct cmd *c)
{
	const struct rdma_ucm_destroy_id *in = c->in;
	struct rdma_ucm_destroy_id_resp resp;
	int err = ucma_mcast_leave(in->id, &resp.events_reported);

	return err ? err : respond(c, in->response, &resp, sizeof(resp));
}

static int do_unsupported(const struct cmd *c)
{
	(void)c;
	return -ENOSYS; /* QUERY and RESOLVE_ADDR (AF_IB), GET_OPTION */
}

static const struct {
	int (*run)(const struct cmd *c);
	uint16_t in; /* the size of the command's struct */
} commands[] = {
    [RDMA_USER_CM_CMD_CREATE_ID] = {do_create_id, sizeof(struct rdma_ucm_create_id)},
    [RDMA_USER_CM_CMD_DESTROY_ID] = {do_destroy_id, sizeof(struct rdma_ucm_destroy_id)},
    [RDMA_USER_CM_CMD_BIND_IP] = {do_bind_ip, sizeof(struct rdma_ucm_bind_ip)},
    [RDMA_USER_CM_CMD_RESOLVE_IP] = {do_resolve_ip, sizeof(struct rdma_ucm_resolve_ip)},
    [RDMA_USER_CM_CMD_RESOLVE_ROUTE] = {do_resolve_route, sizeof(struct rdma_ucm_resolve_route)},
    [RDMA_USER_CM_CMD_QUERY_ROUTE] = {do_query_route, sizeof(struct rdma_ucm_query)},
    [RDMA_USER_CM_CMD_CONNECT] = {do_connect, sizeof(struct rdma_ucm_connect)},
    [RDMA_USER_CM_CMD_LISTEN] = {do_listen, sizeof(struct rdma_ucm_listen)},
    [RDMA_USER_CM_CMD_ACCEPT] = {do_accept, sizeof(struct rdma_ucm_accept)},
    [RDMA_USER_CM_CMD_REJECT] = {do_reject, sizeof(struct rdma_ucm_reject)},
    [RDMA_USER_CM_CMD_DISCONNECT] = {do_disconnect, sizeof(struct rdma_ucm_disconnect)},
    [RDMA_USER_CM_CMD_INIT_QP_ATTR] = {do_init_qp_attr, sizeof(struct rdma_ucm_init_qp_attr)},
    [RDMA_USER_CM_CMD_GET_EVENT] = {do_get_event, sizeof(struct rdma_ucm_get_event)},
    [RDMA_USER_CM_CMD_GET_OPTION] = {do_unsupported, 0},
    [RDMA_USER_CM_CMD_SET_OPTION] = {do_set_option, sizeof(struct rdma_ucm_set_option)},
    [RDMA_USER_CM_CMD_NOTIFY] = {do_notify, sizeof(struct rdma_ucm_notify)},
    [RDMA_USER_CM_CMD_JOIN_IP_MCAST] = {do_join_ip_mcast, sizeof(struct rdma_ucm_join_ip_mcast)},
    [RDMA_USER_CM_CMD_LEAVE_MCAST] = {do_leave_mcast, sizeof(struct rdma_ucm_destroy_id)},
    [RDMA_USER_CM_CMD_MIGRATE_ID] = {do_migrate_id, sizeof(struct rdma_ucm_migrate_id)},
    [RDMA_USER_CM_CMD_QUERY] = {do_unsupported, 0},
    [RDMA_USER_CM_CMD_BIND] = {do_bind, sizeof(struct rdma_ucm_bind)},
    [RDMA_USER_CM_CMD_RESOLVE_ADDR] = {do_unsupported, 0},
    [RDMA_USER_CM_CMD_JOIN_MCAST] = {do_join_mcast, sizeof(struct rdma_ucm_join_mcast)},
};

/* IVRDMA_UCMA_DEBUG=1: each command and its result on stderr. */
static bool debug_enabled(void)
{
	static int enabled = -1;

	if (enabled < 0) {
		const char *v = getenv("IVRDMA_UCMA_DEBUG");

		enabled = v && *v && strcmp(v, "0") != 0;
	}
	return enabled;
}

int ucma_cmd_run(int fd, const void *buf, size_t len)
{
	struct rdma_ucm_cmd_hdr hdr;
	uint64_t in[64]; /* the largest command struct (512 bytes), copied so it is aligned */
	struct cmd c = {.in = in};
	int err;

	if (len < sizeof(hdr))
		return -EINVAL;
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.cmd >= sizeof(commands) / sizeof(commands[0]) || !commands[hdr.cmd].run)
		return -EINVAL;
	if (hdr.in < commands[hdr.cmd].in || len < sizeof(hdr) + hdr.in)
		return -EINVAL;
	memset(in, 0, sizeof(in));
	memcpy(in, (const uint8_t *)buf + sizeof(hdr), commands[hdr.cmd].in);
	c.out = hdr.out;
	pthread_mutex_lock(&ucma.lock);
	/* Found again under the lock: a close() since write() looked frees it. */
	c.ch = ucma_channel_by_fd(fd);
	err = c.ch ? commands[hdr.cmd].run(&c) : -EBADF;
	pthread_mutex_unlock(&ucma.lock);
	if (debug_enabled())
		fprintf(stderr, "ivrdma rdma_cm: fd %d command %u: %s\n", fd, hdr.cmd,
			err ? strerror(-err) : "ok");
	return err;
}
