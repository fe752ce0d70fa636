/* SPDX-License-Identifier: MIT */
/*
 * The shared region's layout: the one place it is declared.
 *
 * ivrdmad formats the region; every provider instance (host process or
 * guest) maps it. Everything here is fixed-width, little-endian (all
 * participants are x86_64 on one host) and position independent: links
 * are byte offsets from the region base, never pointers.
 *
 * Another participant may be buggy or hostile, so a reader validates every
 * offset, index and length it takes from here (see region.h).
 *
 *   +--------------------+ 0
 *   | header (4 KiB)     |
 *   +--------------------+ nodes.offset
 *   | node directory     |  one entry per node (a VM, or the host): LID, GUID, GID
 *   +--------------------+ peers.offset
 *   | peer table         |  one entry per ivshmem peer ID: its node, liveness
 *   +--------------------+ qps / cqs / srqs / mrs .offset
 *   | object tables      |  fixed-size slots, owner tag first
 *   +--------------------+ chunk_tags.offset
 *   | chunk owner tags   |  one u32 per chunk
 *   +--------------------+ chunk_area_offset (chunk aligned)
 *   | chunks             |  rings and MR memory, handed out lock-free
 *   +--------------------+ region_size
 */
#ifndef IVRDMA_LAYOUT_H
#define IVRDMA_LAYOUT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define IVRDMA_MAGIC	       0x31414d4452564931ULL /* "1IVRDMA1" */
#define IVRDMA_LAYOUT_VERSION  1u
#define IVRDMA_HEADER_SIZE     4096u

#define IVRDMA_MIN_REGION_SIZE (16ull << 20)
#define IVRDMA_MAX_REGION_SIZE (64ull << 30)
#define IVRDMA_MAX_PEERS       1024u /* peer IDs are 0 .. max_peers - 1 */
#define IVRDMA_MAX_VECTORS     64u   /* QEMU's own server limit */
#define IVRDMA_MAX_NODES       256u
#define IVRDMA_NAME_LEN	       32u

/*
 * Doorbell vectors and what ringing them means. A doorbell only wakes a
 * sleeper; the reason is always found in the region.
 */
enum ivrdma_vector {
	IVRDMA_VEC_CONTROL = 0,	    /* directory changed, migration notice */
	IVRDMA_VEC_COMPLETION = 1,  /* a CQE was written to a CQ armed for events */
	IVRDMA_VEC_RECV_POSTED = 2, /* a receive was posted: senders waiting on RNR retry */
	IVRDMA_VEC_SPARE = 3,
	IVRDMA_MIN_VECTORS = 4,
};

/* A table of fixed-size entries somewhere in the region. */
struct ivrdma_table {
	uint64_t offset;
	uint32_t entries;
	uint32_t entry_size;
};
static_assert(sizeof(struct ivrdma_table) == 16, "table descriptor size");

struct ivrdma_region_header {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t header_size;
	uint64_t region_size;
	uint64_t region_id;  /* random per format: a reformatted region is a new one */
	uint32_t nr_vectors; /* eventfds per peer, as handed out by the server */
	uint32_t max_peers;
	uint64_t dir_generation; /* atomic: bumps on every directory or peer change */
	struct ivrdma_table nodes;
	struct ivrdma_table peers;
	struct ivrdma_table qps;
	struct ivrdma_table cqs;
	struct ivrdma_table srqs;
	struct ivrdma_table mrs;
	struct ivrdma_table chunk_tags; /* entry_size 4: one owner tag per chunk */
	uint64_t chunk_area_offset;
	uint32_t chunk_shift;
	uint32_t nr_chunks;
	uint64_t subnet_prefix; /* GID prefix, host byte order (fe80::/64) */
	uint32_t daemon_pid;
	uint32_t host_node; /* index of the host's node entry */
	uint8_t reserved[IVRDMA_HEADER_SIZE - 192];
};
static_assert(offsetof(struct ivrdma_region_header, region_id) == 24, "header layout");
static_assert(offsetof(struct ivrdma_region_header, dir_generation) == 40, "header layout");
static_assert(offsetof(struct ivrdma_region_header, nodes) == 48, "header layout");
static_assert(offsetof(struct ivrdma_region_header, chunk_tags) == 144, "header layout");
static_assert(offsetof(struct ivrdma_region_header, chunk_area_offset) == 160, "header layout");
static_assert(offsetof(struct ivrdma_region_header, subnet_prefix) == 176, "header layout");
static_assert(offsetof(struct ivrdma_region_header, host_node) == 188, "header layout");
static_assert(sizeof(struct ivrdma_region_header) == IVRDMA_HEADER_SIZE, "header size");

enum ivrdma_node_state {
	IVRDMA_NODE_ABSENT = 0,	 /* configured, has not joined yet */
	IVRDMA_NODE_JOINING = 1, /* peer connecting, not yet usable */
	IVRDMA_NODE_ACTIVE = 2,
	IVRDMA_NODE_SUSPENDING = 3, /* migration teardown in progress */
	IVRDMA_NODE_GONE = 4,	    /* left; slot and identity kept for its return */
};

enum ivrdma_node_kind {
	IVRDMA_NODE_HOST = 1,
	IVRDMA_NODE_VM = 2,
};

/*
 * One per node. The identity (name, GUID, GID) is fixed by the daemon's
 * configuration and survives the node leaving and coming back; the LID is
 * the slot index + 1 and the epoch counts the node's (re)joins.
 */
struct ivrdma_node {
	uint32_t state; /* atomic: enum ivrdma_node_state */
	uint16_t lid;
	uint16_t kind; /* enum ivrdma_node_kind */
	uint32_t epoch;
	uint32_t nr_peers;	    /* live peers that belong to this node */
	uint64_t node_guid;	    /* host byte order */
	uint8_t gid[16];	    /* network byte order, as in union ibv_gid */
	char name[IVRDMA_NAME_LEN]; /* NUL-terminated */
	uint8_t reserved[56];
};
static_assert(offsetof(struct ivrdma_node, node_guid) == 16, "node layout");
static_assert(offsetof(struct ivrdma_node, gid) == 24, "node layout");
static_assert(offsetof(struct ivrdma_node, name) == 40, "node layout");
static_assert(sizeof(struct ivrdma_node) == 128, "node size");

enum ivrdma_peer_state {
	IVRDMA_PEER_FREE = 0,
	IVRDMA_PEER_ACTIVE = 1,
	IVRDMA_PEER_GONE = 2, /* disconnected; its objects are being reclaimed */
};

/* One per ivshmem peer ID (a QEMU device, or a host process). */
struct ivrdma_peer {
	uint32_t state; /* atomic: enum ivrdma_peer_state */
	uint16_t node;	/* index into the node directory */
	uint16_t gen;	/* bumps each time this peer ID is handed out */
	uint32_t pid;	/* host process ID (QEMU's, for a VM) */
	uint32_t reserved0;
	uint64_t joined_ns; /* CLOCK_REALTIME at join */
	uint8_t reserved[40];
};
static_assert(offsetof(struct ivrdma_peer, pid) == 8, "peer layout");
static_assert(offsetof(struct ivrdma_peer, joined_ns) == 16, "peer layout");
static_assert(sizeof(struct ivrdma_peer) == 64, "peer size");

/*
 * Owner tag: who holds a chunk or an object slot. 0 is free. The low half
 * is peer ID + 1, the high half that peer's generation, so a tag left by a
 * dead peer never matches the peer that reuses its ID.
 */
static inline uint32_t ivrdma_owner_tag(uint16_t peer_id, uint16_t gen)
{
	return (uint32_t)gen << 16 | (uint32_t)(peer_id + 1u);
}

static inline int ivrdma_owner_peer(uint32_t tag)
{
	return (int)(tag & 0xffffu) - 1; /* -1 for a free tag */
}

/*
 * Object slots (QP, CQ, SRQ, MR tables) all start with this header; the
 * rest of a slot belongs to the object's type. The daemon only ever reads
 * the owner tag (to reclaim) and clears whole slots.
 */
struct ivrdma_obj_hdr {
	uint32_t owner; /* atomic owner tag, 0 = free */
	uint32_t seq;	/* bumps each time the slot is reused */
};
static_assert(sizeof(struct ivrdma_obj_hdr) == 8, "object header size");

#define IVRDMA_QP_SLOT_SIZE	   256u
#define IVRDMA_CQ_SLOT_SIZE	   128u
#define IVRDMA_SRQ_SLOT_SIZE	   128u
#define IVRDMA_MR_SLOT_SIZE	   64u

#define IVRDMA_DEFAULT_CHUNK_SHIFT 16u /* 64 KiB */
#define IVRDMA_MIN_CHUNK_SHIFT	   12u /* a page: MRs are mapped chunk by chunk */
#define IVRDMA_MAX_CHUNK_SHIFT	   30u

#endif /* IVRDMA_LAYOUT_H */
