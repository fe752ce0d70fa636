// SPDX-License-Identifier: MIT
/*
 * The RDMA CM directory (ivrdma_cm.h): node addresses and the listener
 * table of the region, for the rdma_cm emulation in libivrdma-preload.so.
 * The listener protocol is "Listening (RDMA CM)" in common/ivrdma_layout.h.
 */
#include <errno.h>
#include <string.h>

#include "ivrdma.h"
#include "ivrdma_cm.h"
#include "shm_atomic.h"

#define IVRDMA_CM_EXPORT __attribute__((visibility("default")))

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_loopback(const uint8_t ip[16])
{
	static const uint8_t v6_loopback[16] = {[15] = 1};

	if (!memcmp(ip, v4_mapped_prefix, sizeof(v4_mapped_prefix)))
		return ip[12] == 127;
	return !memcmp(ip, v6_loopback, sizeof(v6_loopback));
}

static bool node_has_addr(const struct ivrdma_node *n, const uint8_t ip[16])
{
	uint8_t nr = shm_load_relaxed8(&n->nr_addrs);

	for (uint8_t i = 0; i < nr && i < IVRDMA_NODE_ADDRS; i++)
		if (!memcmp(n->addrs[i], ip, 16))
			return true;
	return false;
}

static void node_info(const struct ivrdma_context *ctx, uint32_t idx, const struct ivrdma_node *n,
		      struct ivrdma_cm_node *out)
{
	const struct ivrdma_region_header *h = (const void *)ctx->region.base;

	out->node = idx;
	out->lid = (uint16_t)(idx + 1);
	memcpy(out->gid, n->gid, sizeof(out->gid));
	out->subnet_prefix = h->subnet_prefix;
}

IVRDMA_CM_EXPORT uint32_t ivrdma_cm_api_version(void)
{
	return IVRDMA_CM_API_VERSION;
}

IVRDMA_CM_EXPORT int ivrdma_cm_my_node(struct ibv_context *ibctx, struct ivrdma_cm_node *out)
{
	struct ivrdma_context *ctx = to_ictx(ibctx);
	const struct ivrdma_node *n = ivrdma_my_node(ctx);

	if (!n)
		return -ENODEV;
	node_info(ctx, ctx->node, n, out);
	return 0;
}

IVRDMA_CM_EXPORT int ivrdma_cm_node_by_lid(struct ibv_context *ibctx, uint16_t lid,
					   struct ivrdma_cm_node *out)
{
	struct ivrdma_context *ctx = to_ictx(ibctx);
	const struct ivrdma_node *n = lid ? ivrdma_region_node(&ctx->region, lid - 1u) : NULL;

	if (!n)
		return -EHOSTUNREACH;
	node_info(ctx, lid - 1u, n, out);
	return 0;
}

IVRDMA_CM_EXPORT int ivrdma_cm_resolve(struct ibv_context *ibctx, const uint8_t ip[16],
				       struct ivrdma_cm_node *out)
{
	struct ivrdma_context *ctx = to_ictx(ibctx);
	const struct ivrdma_region *r = &ctx->region;

	if (is_loopback(ip))
		return ivrdma_cm_my_node(ibctx, out);
	for (uint32_t i = 0; i < r->nodes.entries; i++) {
		const struct ivrdma_node *n = ivrdma_region_node(r, i);

		if (!node_has_addr(n, ip))
			continue;
		if (shm_load_acquire32(&n->state) != IVRDMA_NODE_ACTIVE)
			return -ENETDOWN;
		node_info(ctx, i, n, out);
		return 0;
	}
	return -EHOSTUNREACH;
}

IVRDMA_CM_EXPORT int ivrdma_cm_my_addr(struct ibv_context *ibctx, uint8_t ip[16])
{
	const struct ivrdma_node *n = ivrdma_my_node(to_ictx(ibctx));

	if (!n || shm_load_relaxed8(&n->nr_addrs) == 0)
		return -ENOENT;
	memcpy(ip, n->addrs[0], 16);
	return 0;
}

IVRDMA_CM_EXPORT int ivrdma_cm_is_my_addr(struct ibv_context *ibctx, const uint8_t ip[16])
{
	const struct ivrdma_node *n = ivrdma_my_node(to_ictx(ibctx));

	return is_loopback(ip) || (n && node_has_addr(n, ip));
}

static bool addrs_overlap(const struct ivrdma_listener *e, const struct ivrdma_cm_listener *l)
{
	return !e->bound || !l->bound || !memcmp(e->addr, l->addr, sizeof(e->addr));
}

/* The lowest LISTENING entry of (node, ps, port) whose address overlaps l's, or -1. */
static int64_t first_listener(const struct ivrdma_region *r, uint32_t node,
			      const struct ivrdma_cm_listener *l)
{
	for (uint32_t i = 0; i < r->listeners.entries; i++) {
		const struct ivrdma_listener *e = ivrdma_table_entry(r, &r->listeners, i);

		if (shm_load_acquire32(&e->state) != IVRDMA_LISTENER_LISTENING)
			continue;
		if (e->node == node && e->port_space == l->port_space && e->port == l->port &&
		    addrs_overlap(e, l))
			return i;
	}
	return -1;
}

IVRDMA_CM_EXPORT void ivrdma_cm_unlisten(struct ibv_context *ibctx, int entry)
{
	struct ivrdma_context *ctx = to_ictx(ibctx);
	struct ivrdma_listener *e;

	e = ivrdma_table_entry(&ctx->region, &ctx->region.listeners, (uint32_t)entry);
	if (!e || shm_load_relaxed32(&e->hdr.owner) != ctx->owner_tag)
		return;
	shm_store_release32(&e->state, IVRDMA_LISTENER_FREE);
	ivrdma_slot_free(ctx, &ctx->region.listeners, (uint32_t)entry);
}

IVRDMA_CM_EXPORT int ivrdma_cm_listen(struct ibv_context *ibctx, const struct ivrdma_cm_listener *l)
{
	struct ivrdma_context *ctx = to_ictx(ibctx);
	struct ivrdma_listener *e;
	int64_t idx, first;

	if (atomic_load(&ctx->left))
		return -EIO;
	idx = ivrdma_slot_alloc(ctx, &ctx->region.listeners);
	if (idx < 0)
		return (int)idx;
	e = ivrdma_table_entry(&ctx->region, &ctx->region.listeners, (uint32_t)idx);
	e->node = (uint16_t)ctx->node;
	e->port_space = l->port_space;
	e->port = l->port;
	e->bound = l->bound;
	memcpy(e->addr, l->addr, sizeof(e->addr));
	e->agent_qpn = l->agent_qpn;
	e->agent_qkey = l->agent_qkey;
	e->listen_id = l->listen_id;
	shm_store_release32(&e->state, IVRDMA_LISTENER_LISTENING);
	/* Of two claims of one port, the higher index gives way. */
	first = first_listener(&ctx->region, ctx->node, l);
	if (first != idx) {
		ivrdma_cm_unlisten(ibctx, (int)idx);
		return -EADDRINUSE;
	}
	return (int)idx;
}

IVRDMA_CM_EXPORT int ivrdma_cm_find_listener(struct ibv_context *ibctx, uint32_t node,
					     uint16_t port_space, uint16_t port,
					     const uint8_t ip[16], struct ivrdma_cm_listener *out)
{
	struct ivrdma_context *ctx = to_ictx(ibctx);
	struct ivrdma_cm_listener want = {.port_space = port_space, .port = port, .bound = 1};
	const struct ivrdma_listener *e;
	int64_t idx;

	memcpy(want.addr, ip, sizeof(want.addr));
	idx = first_listener(&ctx->region, node, &want);
	if (idx < 0)
		return -ECONNREFUSED;
	e = ivrdma_table_entry(&ctx->region, &ctx->region.listeners, (uint32_t)idx);
	*out = (struct ivrdma_cm_listener){.port_space = e->port_space,
					   .port = e->port,
					   .bound = e->bound,
					   .agent_qpn = e->agent_qpn,
					   .agent_qkey = e->agent_qkey,
					   .listen_id = e->listen_id};
	memcpy(out->addr, e->addr, sizeof(out->addr));
	return (int)idx;
}
