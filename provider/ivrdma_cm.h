/* SPDX-License-Identifier: MIT */
/*
 * The provider's RDMA CM directory: what libivrdma-preload.so's emulation
 * of the rdma_cm device asks of the region (provider/cm_directory.c).
 *
 * These are the only symbols the provider exports. The preload finds them
 * with dlsym() in the provider libibverbs loaded; both sides include this
 * header, and IVRDMA_CM_API_VERSION guards against a preload and a
 * provider from different builds. Every function takes an open ivrdma
 * context and returns 0 or a negative errno unless it says otherwise.
 */
#ifndef IVRDMA_CM_H
#define IVRDMA_CM_H

#include <infiniband/verbs.h>
#include <stdint.h>

#define IVRDMA_CM_API_VERSION 1u

/* A node as RDMA CM addresses it. */
struct ivrdma_cm_node {
	uint32_t node; /* index into the region's node directory */
	uint16_t lid;
	uint8_t gid[16];
	uint64_t subnet_prefix; /* host byte order: the region's */
};

struct ivrdma_cm_listener {
	uint16_t port_space; /* RDMA_PS_TCP, RDMA_PS_UDP, ... */
	uint16_t port;	     /* host byte order */
	uint8_t bound;	     /* 1: only addr; 0: any address of my node */
	uint8_t addr[16];    /* IPv6 or IPv4-mapped */
	uint32_t agent_qpn;
	uint32_t agent_qkey;
	uint32_t listen_id;
};

/* Returns IVRDMA_CM_API_VERSION. */
uint32_t ivrdma_cm_api_version(void);

/* My own node. */
int ivrdma_cm_my_node(struct ibv_context *ctx, struct ivrdma_cm_node *out);

/* The node with LID lid. -EHOSTUNREACH: none. */
int ivrdma_cm_node_by_lid(struct ibv_context *ctx, uint16_t lid, struct ivrdma_cm_node *out);

/*
 * The node an IP address (IPv6 or IPv4-mapped) belongs to: a loopback
 * address is my own node. -EHOSTUNREACH: no node has it; -ENETDOWN: the
 * node has it but is not active (absent, suspended or gone).
 */
int ivrdma_cm_resolve(struct ibv_context *ctx, const uint8_t ip[16], struct ivrdma_cm_node *out);

/* Copies my node's first configured address to ip. -ENOENT: it has none. */
int ivrdma_cm_my_addr(struct ibv_context *ctx, uint8_t ip[16]);

/* 1 if ip is a loopback address or one of my node's, else 0. */
int ivrdma_cm_is_my_addr(struct ibv_context *ctx, const uint8_t ip[16]);

/*
 * Publishes a listener on my node. Returns its entry's index (>= 0),
 * -EADDRINUSE (another listener holds the port there) or -ENOSPC.
 */
int ivrdma_cm_listen(struct ibv_context *ctx, const struct ivrdma_cm_listener *l);

/* Withdraws the entry ivrdma_cm_listen() returned. */
void ivrdma_cm_unlisten(struct ibv_context *ctx, int entry);

/*
 * The listener for (node, port space, port, ip) on a node: the entry's
 * index, its fields in *out, or -ECONNREFUSED if nobody listens there.
 */
int ivrdma_cm_find_listener(struct ibv_context *ctx, uint32_t node, uint16_t port_space,
			    uint16_t port, const uint8_t ip[16], struct ivrdma_cm_listener *out);

#endif /* IVRDMA_CM_H */
