// SPDX-License-Identifier: MIT
/*
 * Addresses and routes of the rdma_cm emulation: BIND_IP, RESOLVE_IP,
 * RESOLVE_ROUTE, QUERY_ROUTE and INIT_QP_ATTR. ucma.lock held throughout.
 *
 * An IP address names a node (the region's node addresses, a loopback
 * address my own node); the route to it is one path inside the region's
 * subnet: the node's LID and GID, nothing in between.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ucma.h"

#define UCMA_EPHEMERAL_LO 32768u
#define UCMA_EPHEMERAL_HI 60999u

/* A sockaddr (IPv4 or IPv6) to its wire form; -EAFNOSUPPORT for anything else. */
int ucma_addr_from_sockaddr(const void *sa, struct ucma_wire_addr *out)
{
	sa_family_t family;

	memcpy(&family, sa, sizeof(family));
	memset(out, 0, sizeof(*out));
	out->family = family;
	if (family == AF_INET) {
		struct sockaddr_in in;

		memcpy(&in, sa, sizeof(in));
		out->ip[10] = out->ip[11] = 0xff;
		memcpy(out->ip + 12, &in.sin_addr, 4);
		out->port = ntohs(in.sin_port);
		return 0;
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 in6;

		memcpy(&in6, sa, sizeof(in6));
		memcpy(out->ip, &in6.sin6_addr, 16);
		out->port = ntohs(in6.sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* The wire form back to the sockaddr the application used, in 'room' bytes. */
void ucma_addr_to_sockaddr(const struct ucma_wire_addr *a, void *sa, size_t room)
{
	memset(sa, 0, room);
	if (a->family == AF_INET && room >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(a->port)};

		memcpy(&in.sin_addr, a->ip + 12, 4);
		memcpy(sa, &in, sizeof(in));
	} else if (a->family == AF_INET6 && room >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(a->port)};

		memcpy(&in6.sin6_addr, a->ip, 16);
		memcpy(sa, &in6, sizeof(in6));
	}
}

bool ucma_addr_is_any(const struct ucma_wire_addr *a)
{
	static const uint8_t zero[16], v4_any[16] = {[10] = 0xff, [11] = 0xff};

	return !memcmp(a->ip, zero, 16) || !memcmp(a->ip, v4_any, 16);
}

uint16_t ucma_ephemeral_port(void)
{
	uint16_t r = 0;

	(void)!getrandom(&r, sizeof(r), 0);
	return (uint16_t)(UCMA_EPHEMERAL_LO + r % (UCMA_EPHEMERAL_HI - UCMA_EPHEMERAL_LO + 1));
}

/* Binds id to a (my node's own, loopback or any) address; 0 or a negative errno. */
int ucma_addr_bind(struct ucma_id *id, const void *sa)
{
	const struct ucma_dir *dir = ucma_agent_dir();
	struct ucma_wire_addr a;
	int err;

	if (id->state != UCMA_IDLE)
		return -EINVAL;
	err = ucma_addr_from_sockaddr(sa, &a);
	if (err)
		return err;
	if (!ucma_addr_is_any(&a)) {
		if (!dir->is_my_addr(ucma_agent_context(), a.ip))
			return -EADDRNOTAVAIL;
		id->has_device = true;
	}
	if (!a.port)
		a.port = ucma_ephemeral_port();
	id->src = a;
	id->has_src = true;
	id->state = UCMA_BOUND;
	return 0;
}

static bool is_v4_mapped(const uint8_t ip[16])
{
	static const uint8_t prefix[12] = {[10] = 0xff, [11] = 0xff};

	return !memcmp(ip, prefix, sizeof(prefix));
}

/*
 * The source for a destination when the application bound none: the
 * destination itself if it is mine (a loopback address included), else
 * my node's first address of the same family, else the unspecified one.
 */
static void pick_source(struct ucma_id *id, const struct ucma_wire_addr *dst)
{
	const struct ucma_dir *dir = ucma_agent_dir();
	struct ibv_context *ctx = ucma_agent_context();
	struct ucma_wire_addr s = {.family = dst->family,
				   .port = id->has_src ? id->src.port : ucma_ephemeral_port()};
	uint8_t mine[16];

	if (dst->family == AF_INET)
		s.ip[10] = s.ip[11] = 0xff;
	if (dir->is_my_addr(ctx, dst->ip))
		memcpy(s.ip, dst->ip, 16);
	else if (dir->my_addr(ctx, mine) == 0 && is_v4_mapped(mine) == (dst->family == AF_INET))
		memcpy(s.ip, mine, 16);
	id->src = s;
	id->has_src = true;
}

/* RESOLVE_IP: queues ADDR_RESOLVED or ADDR_ERROR; fails only on bad input. */
int ucma_addr_resolve(struct ucma_id *id, const void *src, const void *dst)
{
	struct ucma_wire_addr d;
	int err;

	if (id->state != UCMA_IDLE && id->state != UCMA_BOUND && id->state != UCMA_ADDR_RESOLVED)
		return -EINVAL;
	err = ucma_addr_from_sockaddr(dst, &d);
	if (err)
		return err;
	if (id->state == UCMA_IDLE && ((const struct sockaddr *)src)->sa_family != AF_UNSPEC) {
		err = ucma_addr_bind(id, src);
		if (err)
			return err;
	}
	if (!id->has_src || ucma_addr_is_any(&id->src))
		pick_source(id, &d);
	id->dst = d;
	if (ucma_addr_is_multicast(&d)) /* a group: joined through my own port */
		err = ucma_agent_dir()->my_node(ucma_agent_context(), &id->peer);
	else
		err = ucma_agent_dir()->resolve(ucma_agent_context(), d.ip, &id->peer);
	if (err)
		return ucma_event_post(id, UCMA_EVENT_ADDR_ERROR, err);
	id->has_device = true;
	id->state = UCMA_ADDR_RESOLVED;
	return ucma_event_post(id, UCMA_EVENT_ADDR_RESOLVED, 0);
}

/* RESOLVE_ROUTE: the path is the peer's LID and GID; queues ROUTE_RESOLVED. */
int ucma_route_resolve(struct ucma_id *id)
{
	if (id->state != UCMA_ADDR_RESOLVED && id->state != UCMA_ROUTE_RESOLVED)
		return -EINVAL;
	id->state = UCMA_ROUTE_RESOLVED;
	return ucma_event_post(id, UCMA_EVENT_ROUTE_RESOLVED, 0);
}

static bool has_path(const struct ucma_id *id)
{
	return id->state >= UCMA_ROUTE_RESOLVED && id->state != UCMA_LISTEN;
}

static void fill_path(const struct ucma_id *id, struct ib_user_path_rec *p)
{
	struct ivrdma_cm_node me;

	if (ucma_agent_dir()->my_node(ucma_agent_context(), &me) == 0) {
		memcpy(p->sgid, me.gid, 16);
		p->slid = htons(me.lid);
	}
	if (id->state >= UCMA_ADDR_RESOLVED && id->state != UCMA_LISTEN) {
		memcpy(p->dgid, id->peer.gid, 16);
		p->dlid = htons(id->peer.lid);
	}
	p->pkey = htons(0xffff);
	p->reversible = 1;
	p->numb_path = 1;
	p->mtu_selector = p->rate_selector = p->packet_life_time_selector = 2; /* exactly */
	p->mtu = ucma_agent_mtu();
	p->rate = 7;		  /* 40 Gb/s, as the port says */
	p->packet_life_time = 10; /* 4.096 us * 2^10: no fabric, a generous bound */
}

/* QUERY_ROUTE: addresses, the path, and the device if the ID has one. */
int ucma_route_query(struct ucma_id *id, struct rdma_ucm_query_route_resp *r)
{
	memset(r, 0, sizeof(*r));
	if (id->has_device) {
		r->node_guid = ucma_agent_guid();
		r->port_num = 1;
	}
	fill_path(id, &r->ib_route[0]);
	r->num_paths = has_path(id) ? 1 : 0;
	ucma_addr_to_sockaddr(&id->src, &r->src_addr, sizeof(r->src_addr));
	ucma_addr_to_sockaddr(&id->dst, &r->dst_addr, sizeof(r->dst_addr));
	return 0;
}
