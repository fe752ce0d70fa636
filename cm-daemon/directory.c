// SPDX-License-Identifier: MIT
/*
 * The node directory: who is on this region. Node identities come from the
 * configuration (the host, and one entry per configured VM), so a VM keeps
 * its GUID, GID, LID and IP addresses when it leaves and comes back.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "shm_atomic.h"

/*
 * A stable, locally administered EUI-64 from a name (FNV-1a): the same VM
 * name gives the same GUID on every host, which is what lets a migrated VM
 * keep its GID.
 */
uint64_t directory_guid_for_name(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = "ivrdma:"; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	/* 02:... marks a locally administered identifier. */
	return (h & 0x0000ffffffffffffull) | 0x021e000000000000ull;
}

void directory_format_gid(const uint8_t gid[16], char *out, size_t len)
{
	snprintf(out, len,
		 "%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x", gid[0],
		 gid[1], gid[2], gid[3], gid[4], gid[5], gid[6], gid[7], gid[8], gid[9], gid[10],
		 gid[11], gid[12], gid[13], gid[14], gid[15]);
}

const char *directory_node_state_name(uint32_t state)
{
	switch (state) {
	case IVRDMA_NODE_ABSENT:
		return "absent";
	case IVRDMA_NODE_ACTIVE:
		return "active";
	case IVRDMA_NODE_SUSPENDING:
		return "suspending";
	case IVRDMA_NODE_GONE:
		return "gone";
	}
	return "invalid";
}

/*
 * The daemon's own copy of a node's name: the region's may have been
 * overwritten by any participant, without its terminating NUL.
 */
const char *directory_node_name(const struct daemon *d, uint32_t node)
{
	if (node == 0)
		return "host";
	return node <= d->cfg.nr_vms ? d->cfg.vms[node - 1].name : "?";
}

/* Writes node entry 'index' as configured: identity and addresses, state ABSENT. */
static void init_node(struct daemon *d, uint32_t index, uint64_t subnet_prefix)
{
	struct ivrdma_node *n = ivrdma_region_node(&d->region, index);
	const struct node_addrs *a = &d->cfg.addrs[index];
	uint64_t guid = index == 0 ? d->cfg.host_guid : d->cfg.vms[index - 1].guid;
	const char *name = directory_node_name(d, index);

	memset(n, 0, sizeof(*n));
	n->lid = (uint16_t)(index + 1);
	n->kind = index == 0 ? IVRDMA_NODE_HOST : IVRDMA_NODE_VM;
	n->node_guid = guid ? guid : directory_guid_for_name(name);
	for (int i = 0; i < 8; i++) {
		n->gid[i] = (uint8_t)(subnet_prefix >> (56 - 8 * i));
		n->gid[8 + i] = (uint8_t)(n->node_guid >> (56 - 8 * i));
	}
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->nr_addrs = (uint8_t)a->nr;
	memcpy(n->addrs, a->ip, (size_t)a->nr * 16);
	shm_store_release32(&n->state, IVRDMA_NODE_ABSENT);
}

static void bump_generation(struct daemon *d)
{
	shm_fetch_add64(&ivrdma_region_header(&d->region)->dir_generation, 1);
}

void directory_init(struct daemon *d)
{
	uint64_t prefix = ivrdma_region_header(&d->region)->subnet_prefix;
	struct ivrdma_node *host = ivrdma_region_node(&d->region, 0);

	/* The host is present as long as its daemon is. */
	init_node(d, 0, prefix);
	host->epoch = d->node_epoch[0] = 1;
	shm_store_release32(&host->state, IVRDMA_NODE_ACTIVE);
	for (uint32_t i = 0; i < d->cfg.nr_vms; i++)
		init_node(d, i + 1, prefix);
	bump_generation(d);
}

void directory_peer_joined(struct daemon *d, const struct peer *p)
{
	struct ivrdma_peer *e = ivrdma_region_peer(&d->region, p->id);
	struct ivrdma_node *n = ivrdma_region_node(&d->region, p->node);
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	memset(e, 0, sizeof(*e));
	e->node = (uint16_t)p->node;
	shm_store_relaxed16(&e->gen, p->gen);
	e->pid = (uint32_t)p->pid;
	e->joined_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	shm_store_release32(&e->state, IVRDMA_PEER_ACTIVE);
	n->nr_peers = ++d->node_peers[p->node];
	if (p->node != 0) {
		shm_store_relaxed32(&n->epoch, ++d->node_epoch[p->node]);
		shm_store_release32(&n->state, IVRDMA_NODE_ACTIVE);
	}
	bump_generation(d);
}

/* Called before the peer's objects are reclaimed; the entry is freed after. */
void directory_peer_left(struct daemon *d, const struct peer *p)
{
	struct ivrdma_peer *e = ivrdma_region_peer(&d->region, p->id);
	struct ivrdma_node *n = ivrdma_region_node(&d->region, p->node);

	shm_store_release32(&e->state, IVRDMA_PEER_GONE);
	if (d->node_peers[p->node])
		d->node_peers[p->node]--;
	n->nr_peers = d->node_peers[p->node];
	if (p->node != 0 && d->node_peers[p->node] == 0)
		shm_store_release32(&n->state, IVRDMA_NODE_GONE);
	bump_generation(d);
}

void directory_peer_freed(struct daemon *d, const struct peer *p)
{
	shm_store_release32(&ivrdma_region_peer(&d->region, p->id)->state, IVRDMA_PEER_FREE);
	bump_generation(d);
}
