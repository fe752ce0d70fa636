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
 *   +--------------------+ ctxs.offset
 *   | context table      |  one record per open verbs context: its counters
 *   +--------------------+ listeners.offset
 *   | listener table     |  one entry per RDMA CM listen: node, port, agent QP
 *   +--------------------+ mcast.offset
 *   | multicast table    |  one entry per UD QP attached to a multicast group
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
#define IVRDMA_LAYOUT_VERSION  11u
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
	IVRDMA_VEC_CONTROL = 0,	   /* directory changed, migration notice */
	IVRDMA_VEC_COMPLETION = 1, /* a CQE was written to a CQ armed for events */
	/* 2: never rung (an RNR wait ends on its timer), kept for a use to come */
	IVRDMA_VEC_SPARE = 3, /* rung by tests only (tests/guest/guest-host-peer.c) */
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
	uint64_t subnet_prefix; /* GID prefix, host byte order: the region's own, never fe80::/64 */
	uint32_t daemon_pid;
	uint32_t host_node;	  /* index of the host's node entry */
	struct ivrdma_table ctxs; /* context records (struct ivrdma_ctx_slot) */
	uint32_t suspend_seq;	  /* atomic: see "Suspending a node" below */
	uint32_t reserved0;
	struct ivrdma_table listeners; /* struct ivrdma_listener: see "Listening" below */
	struct ivrdma_table mcast;     /* struct ivrdma_mcast_member: see "Multicast" below */
	uint8_t reserved[IVRDMA_HEADER_SIZE - 248];
};
static_assert(offsetof(struct ivrdma_region_header, region_id) == 24, "header layout");
static_assert(offsetof(struct ivrdma_region_header, dir_generation) == 40, "header layout");
static_assert(offsetof(struct ivrdma_region_header, nodes) == 48, "header layout");
static_assert(offsetof(struct ivrdma_region_header, chunk_tags) == 144, "header layout");
static_assert(offsetof(struct ivrdma_region_header, chunk_area_offset) == 160, "header layout");
static_assert(offsetof(struct ivrdma_region_header, subnet_prefix) == 176, "header layout");
static_assert(offsetof(struct ivrdma_region_header, host_node) == 188, "header layout");
static_assert(offsetof(struct ivrdma_region_header, ctxs) == 192, "header layout");
static_assert(offsetof(struct ivrdma_region_header, suspend_seq) == 208, "header layout");
static_assert(offsetof(struct ivrdma_region_header, listeners) == 216, "header layout");
static_assert(offsetof(struct ivrdma_region_header, mcast) == 232, "header layout");
static_assert(sizeof(struct ivrdma_region_header) == IVRDMA_HEADER_SIZE, "header size");

/*
 * ivrdmad stores a node's state; everyone else only loads it (acquire).
 * A node goes ACTIVE in the same loop turn in which its peer is accepted,
 * introduced and given its eventfds: there is no state between taking a
 * node and it being usable. ACTIVE to SUSPENDING: `migrate-begin`
 * ("Suspending a node" below); SUSPENDING or ACTIVE to GONE: its last peer
 * left; ABSENT or GONE to ACTIVE: it joins (again, its epoch moves on);
 * SUSPENDING to ACTIVE: `migrate-end` of a node whose device never left.
 */
enum ivrdma_node_state {
	IVRDMA_NODE_ABSENT = 0, /* configured, has not joined yet */
	IVRDMA_NODE_ACTIVE = 1,
	IVRDMA_NODE_SUSPENDING = 2, /* migration teardown under way or done */
	IVRDMA_NODE_GONE = 3,	    /* left; slot and identity kept for its return */
};

enum ivrdma_node_kind {
	IVRDMA_NODE_HOST = 1,
	IVRDMA_NODE_VM = 2,
};

#define IVRDMA_NODE_ADDRS 3u /* IP addresses a node answers to in RDMA CM */

/*
 * One per node. The identity (name, GUID, GID, IP addresses) is fixed by
 * the daemon's configuration and survives the node leaving and coming
 * back; the LID is the slot index + 1 and the epoch counts the node's
 * (re)joins. The addresses are what RDMA CM resolves to this node, each
 * IPv6 or IPv4-mapped (::ffff:a.b.c.d); a loopback address always means
 * the resolver's own node and is never listed.
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
	uint8_t nr_addrs;	    /* at most IVRDMA_NODE_ADDRS */
	uint8_t reserved[7];
	uint8_t addrs[IVRDMA_NODE_ADDRS][16];
};
static_assert(offsetof(struct ivrdma_node, node_guid) == 16, "node layout");
static_assert(offsetof(struct ivrdma_node, gid) == 24, "node layout");
static_assert(offsetof(struct ivrdma_node, name) == 40, "node layout");
static_assert(offsetof(struct ivrdma_node, addrs) == 80, "node layout");
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
 * Owner tag: who holds a chunk or an object slot. 0 is free. Two kinds:
 *
 * - A peer's: the low half is peer ID + 1, the high half that peer's
 *   generation, so a tag left by a dead peer never matches the peer that
 *   reuses its ID. A host process is one peer: all it holds has its tag.
 * - A context's (IVRDMA_TAG_CONTEXT in the low half): every process of a
 *   VM shares the VM's peer ID, so each verbs context there holds what it
 *   makes under a tag of its own, so that what one process leaves when it
 *   dies can be reclaimed while the VM stays. The low 15 bits are its
 *   context record's index + 1, the high half the low 16 bits of the
 *   record's seq. The record, held under the VM's peer tag, says which
 *   peer that is and whether the context lives (common/owner_tag.h).
 */
#define IVRDMA_TAG_CONTEXT 0x8000u

static inline uint32_t ivrdma_owner_tag(uint16_t peer_id, uint16_t gen)
{
	return (uint32_t)gen << 16 | (uint32_t)(peer_id + 1u);
}

static inline uint32_t ivrdma_context_tag(uint32_t record_idx, uint32_t record_seq)
{
	return (record_seq & 0xffffu) << 16 | IVRDMA_TAG_CONTEXT | ((record_idx + 1u) & 0x7fffu);
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

#define IVRDMA_QP_SLOT_SIZE  512u
#define IVRDMA_CQ_SLOT_SIZE  128u
#define IVRDMA_SRQ_SLOT_SIZE 128u
#define IVRDMA_MR_SLOT_SIZE  64u
#define IVRDMA_CTX_SLOT_SIZE 256u

/*
 * --- Object slot payloads and rings ------------------------------------
 *
 * A slot is written by its owner only (the context that holds its owner
 * tag); other participants read it to reach the object, copying each field
 * once and validating the copy. Rings live in chunks (ivrdma_chunk_alloc)
 * owned by the same context; a slot names its ring by region offset.
 *
 * Indices are free-running 64-bit counters (entry = index & (entries - 1)),
 * never reset while the object lives: a wrap is not a concern.
 */

/* QPN = QP slot index + this: QPNs 0 and 1 are InfiniBand's special QPs. */
#define IVRDMA_QPN_BASE 2u

/* An SRQ's number (ibv_get_srq_num) = SRQ slot index + this: 0 names none. */
#define IVRDMA_SRQN_BASE 1u

/*
 * An XRC domain's ID (ivrdma_qp_slot.xrcd, ivrdma_srq_slot.xrcd), the same
 * in every process that opened it: top bit set, a hash of the node and the
 * file the domain was opened on; top bit clear, a domain of one context
 * (no file), its context record's index + 1 above a 16-bit count. 0 names
 * none. provider/xrc.c makes them.
 */
#define IVRDMA_XRCD_SHARED 0x80000000u

/*
 * lkey = rkey = MR slot index << 8 | generation (1..255, from the slot's
 * reuse count): a key kept after dereg_mr misses once the slot is reused.
 */
#define IVRDMA_KEY_GEN_BITS 8u

static inline uint32_t ivrdma_mr_key(uint32_t slot, uint32_t seq)
{
	return slot << IVRDMA_KEY_GEN_BITS | (seq % 255u + 1u);
}

static inline uint32_t ivrdma_key_slot(uint32_t key)
{
	return key >> IVRDMA_KEY_GEN_BITS;
}

/*
 * Moving a registered range's bytes to other chunks (the owner registers
 * a range that joins two moved ranges) must not lose a peer's write. An
 * execution is what an initiator does for one or more WRs of a QP under
 * its send lock, from the first key it translates to the last byte it
 * copies; the QP slot's exec_seq is odd meanwhile. The two sides:
 *
 *   initiator: exchange exec_seq to odd (a full barrier), then, before
 *              anything it cannot undo (taking a receive, writing), load
 *              the flags of every MR it will use: one with IVRDMA_MR_MOVING
 *              set means stop, even again, and retry the WR later. An MR
 *              found clear stays usable to the end of the execution,
 *              whatever its flags say later: the mover waits for it.
 *              Then store exec_seq even with release.
 *   mover:     set IVRDMA_MR_MOVING on every MR of the range, full
 *              barrier, then wait until every QP slot's exec_seq is even
 *              or has changed; copy, store the new region_offset, then
 *              clear the flag with release. No execution holds the old
 *              chunks once the wait is over: they may be freed.
 *
 * Each side stores before it loads the other's word: one of the two sees
 * the other (Dekker), so no execution that saw the flag clear overlaps
 * the copy.
 */
enum ivrdma_mr_flags {
	IVRDMA_MR_MOVING = 1u << 0,
};

/*
 * Memory windows live in the MR table too, and their keys have the MR
 * keys' form. A bound window's slot holds the window's range, access and
 * PD, and the key of the MR it is bound to (window_of); an initiator
 * checks the window, then translates through that MR's slot, so the
 * window follows the MR's bytes wherever they move and dies with the MR.
 * The owner binds by storing key 0, the fields, then the new key, all
 * with release; an initiator loads the key (acquire), the fields, and
 * the key again after an acquire fence: the same key both times means
 * the fields are of that binding. A remote invalidation (send with
 * invalidate) is a CAS of key from the window's key to 0 by the initiator,
 * the one store to the slot that is not the owner's.
 */

/* The ivrdma_mr_slot.access bits: libibverbs' IBV_ACCESS_* values. */
struct ivrdma_mr_slot {
	struct ivrdma_obj_hdr hdr;
	uint32_t key;		/* atomic: stored last with release; 0 = not usable */
	uint32_t access;	/* IBV_ACCESS_* */
	uint64_t iova;		/* the address the registration covers */
	uint64_t length;	/* bytes from iova */
	uint64_t region_offset; /* atomic: where iova's byte lives in the region */
	uint32_t pd_handle;	/* PD scope within the owner's context */
	uint32_t flags;		/* atomic: enum ivrdma_mr_flags, set by the owner */
	uint32_t window_of;	/* a bound memory window: its MR's key; 0 for an MR */
	uint32_t bound_qpn;	/* a type 2 window: the QP it is bound to; 0 for type 1 */
	uint8_t reserved[8];
};
static_assert(offsetof(struct ivrdma_mr_slot, key) == 8, "MR slot layout");
static_assert(offsetof(struct ivrdma_mr_slot, region_offset) == 32, "MR slot layout");
static_assert(offsetof(struct ivrdma_mr_slot, pd_handle) == 40, "MR slot layout");
static_assert(offsetof(struct ivrdma_mr_slot, flags) == 44, "MR slot layout");
static_assert(offsetof(struct ivrdma_mr_slot, window_of) == 48, "MR slot layout");
static_assert(sizeof(struct ivrdma_mr_slot) == IVRDMA_MR_SLOT_SIZE, "MR slot size");

/*
 * A completion queue entry: one cache line. CQs have many producers (the
 * owner's own send completions, remote initiators' receive completions)
 * and one consumer:
 *
 *   producer: CAS cq.prod from p to p + 1 while p - cq.cons < entries
 *             (else overflow: nothing reserved), write the entry, then
 *             store entry.seq = p + 1 with release;
 *   consumer: entry at cons is ready when its seq (acquire) == cons + 1;
 *             read it, then store cq.cons = cons + 1 with release, which
 *             hands the entry back to producers.
 *
 * A reserved entry is always published (with an error status if the
 * operation failed) so the consumer never waits on a hole. Between the
 * two, the producer claims the entry (a CAS on seq), so that a producer
 * that dies in between leaves a ticket ivrdmad can finish; see "A
 * producer that dies" below. The full producer side is therefore:
 *
 *   producer: [intent: ticket = p, state RESERVING]
 *             CAS prod p -> p + 1 (room as above); CAS entry.seq from its
 *             free value (ivrdma_cq_free_seq: 0 on a ring's first lap,
 *             else p - entries + 1) to ivrdma_cq_claim_seq(id, p);
 *             [intent: state CLAIMED] write the entry; store seq = p + 1
 *             (release); [intent: state IDLE]. Only ivrdmad claims an
 *             entry another producer reserved, so a failed claim means
 *             ivrdmad took ticket p (and publishes it): reserve again.
 *
 * The bracketed steps are only for a push into another participant's CQ
 * (a receive completion), which is the only push whose producer can die
 * and leave the consumer alive.
 *
 * Which ring: prod, cons and the tickets carry an epoch in their top 16
 * bits (ivrdma_cq_epoch), the number of resizes mod 2^16; the low 48 bits
 * count within the epoch (2^48 completions per epoch: not a concern). The
 * slot's geometry word names the ring of the current epoch, prev_geometry
 * the ring of the epoch before (ivrdma_cq_geometry). A producer takes the
 * ring from the word whose epoch is that of the p it will CAS (loading
 * geometry with acquire, then prev_geometry), and checks room in that ring
 * against max(cons, the epoch's first ticket): a new ring's entries are
 * all free until the consumer reaches them. A successful CAS proves p's
 * epoch was still current, so the ring it chose is ticket p's, and that
 * ring stays allocated until the consumer has passed p, which waits for
 * p to be published. Neither word matching p's epoch means p is stale:
 * load prod again (it has moved: see below); a prod that has not moved
 * means the slot is corrupt, and the push fails as on a full ring.
 *
 * Resizing (the owner, under its consumer lock; ibv_resize_cq with
 * producers anywhere pushing meanwhile):
 *
 *   owner:    allocate and zero a new ring; store prev_geometry = the
 *             current geometry (relaxed), then geometry = the new ring
 *             with epoch + 1 (release); then exchange prod with the new
 *             epoch's first ticket (epoch << 48, seq_cst). The exchange
 *             returns S: the tickets below S are the old ring's, every
 *             later CAS is in the new epoch. A producer that loads a prod
 *             of the new epoch (acquire, or a failed CAS) therefore sees
 *             the new geometry; one that loads the old epoch finds the
 *             old ring in geometry or prev_geometry.
 *   consumer: takes the old ring's entries up to S (each waits to be
 *             published, as always), then moves cons to the new epoch's
 *             first ticket and frees the old ring. Rings of several
 *             resizes in a row drain oldest first.
 *
 * No entry is copied, so none is lost or seen twice. ring_offset and
 * nr_entries say the same as geometry, for readers that only look.
 */
struct ivrdma_cqe {
	uint64_t wr_id;
	uint64_t seq;	   /* atomic: ticket + 1 once the entry is complete */
	uint8_t status;	   /* enum ibv_wc_status */
	uint8_t opcode;	   /* enum ibv_wc_opcode */
	uint16_t wc_flags; /* enum ibv_wc_flags */
	uint32_t byte_len;
	uint32_t imm_data; /* network byte order, as in struct ibv_wc */
	uint32_t qp_num;
	uint32_t src_qp;
	uint16_t slid;
	uint8_t sl;
	uint8_t dlid_path_bits;
	uint16_t pkey_index;
	uint8_t solicited;   /* the sender set IBV_SEND_SOLICITED */
	uint8_t sender_died; /* ivrdmad wrote it ("A producer that dies"): vendor_err says so */
	uint8_t reserved[4];
	uint64_t timestamp; /* IVRDMA_CQ_TIMESTAMPS: the producer's clock (ivrdma_cq_push) */
	uint64_t rq_ticket; /* see below */
};
static_assert(offsetof(struct ivrdma_cqe, seq) == 8, "CQE layout");
static_assert(offsetof(struct ivrdma_cqe, status) == 16, "CQE layout");
static_assert(offsetof(struct ivrdma_cqe, slid) == 36, "CQE layout");
static_assert(offsetof(struct ivrdma_cqe, sender_died) == 43, "CQE layout");
static_assert(offsetof(struct ivrdma_cqe, timestamp) == 48, "CQE layout");
static_assert(offsetof(struct ivrdma_cqe, rq_ticket) == 56, "CQE layout");

/*
 * A claimed entry's seq: never a value the consumer waits for (bit 47 of
 * the count, 2^47 completions in one epoch: not a concern), nor a free
 * one. It names the claimer (a QP slot index + 1, 0 for a push with no
 * intent, IVRDMA_CQ_CLAIM_DAEMON) and the ticket's low 16 bits.
 */
#define IVRDMA_CQ_CLAIM_BIT    (1ull << 47)
#define IVRDMA_CQ_CLAIM_DAEMON 0x7fffffffu

static inline uint64_t ivrdma_cq_claim_seq(uint32_t id, uint64_t p)
{
	return (p & ~((1ull << 48) - 1)) | IVRDMA_CQ_CLAIM_BIT |
	       (uint64_t)(id & 0x7fffffffu) << 16 | (p & 0xffffu);
}

/* What entry p's seq holds before p is claimed: its ring's last lap, or 0. */
static inline uint64_t ivrdma_cq_free_seq(uint64_t p, uint32_t entries)
{
	uint64_t first = p & ~((1ull << 48) - 1); /* the epoch's first ticket */

	return p - first >= entries ? p - entries + 1 : 0;
}

/*
 * A producer that dies between reserving an entry and publishing it would
 * leave the consumer waiting on a hole for good, and one that dies right
 * after taking a receive would leave that receive with no completion. A
 * producer into another participant's CQ (an initiator writing a target's
 * receive completion) therefore keeps an intent in its QP slot
 * (ivrdma_qp_slot.intent), in the cache line its execution writes anyway
 * (exec_seq), and every producer claims its entry with a CAS on the line
 * it writes next: the push gains one locked instruction and a few stores,
 * no cache line.
 *
 *   initiator: (common/recv_take.c, common/cq_producer.c)
 *              before each CAS on a receive ring's cons (from w, c =
 *              IVRDMA_RQ_CONS_INDEX(w)), writes the completion's identity
 *              (CQ, wr_id of the copy at c, ring, QP, opcode) and then the
 *              word TAKING with c and a new generation; if w names another
 *              taker, first makes sure that one's take of c - 1 is on
 *              record (below); after its CAS succeeds, TAKEN (same c);
 *              before each CAS on prod, ticket = p and RESERVING; after its
 *              claim, CLAIMED; after publishing, IDLE. exec_leave stores
 *              IDLE too. The word keeps c from TAKING to CLAIMED.
 *   successor: a taker (or the ring's owner flushing) about to CAS cons
 *              from a w that names taker t at index c + 1 took c: if t's
 *              word is still TAKING at c for this ring, t is between its
 *              CAS and its TAKEN store, and the successor CASes t's word
 *              to TAKEN itself. So once cons is past c + 1, a TAKING at
 *              c means the CAS at c failed.
 *   ivrdmad:   (common/cq_settle.c) when a peer dies, before it marks the
 *              peer gone (a survivor that then flushes its receives
 *              flushes them after this one) and reclaims it, for each of
 *              its QP slots whose intent is not IDLE and whose CQ still
 *              lives (owner, seq) and belongs to another peer:
 *              - TAKING at c: the dead took c if the ring's cons (read
 *                before the word is read again) is at c + 1 naming the
 *                dead, or the word now reads TAKEN; then as TAKEN;
 *                otherwise it held no receive: nothing to do;
 *              with e = entry p's seq (p = ticket, in p's epoch's ring):
 *              - e == ivrdma_cq_claim_seq(qp slot + 1, p): the dead claimed p;
 *                ivrdmad claims it from there and publishes the error
 *                completion below in it;
 *              - CLAIMED otherwise: the dead published; nothing to do;
 *              - RESERVING, prod past p in p's epoch and e free: p was
 *                won by the dead or by someone between CAS and claim;
 *                ivrdmad claims it (a live loser reserves again) and
 *                publishes in it;
 *              - otherwise (TAKEN, or RESERVING and p not won or claimed
 *                by another): ivrdmad pushes the completion as any
 *                producer does, with its own claim id.
 *              Then it fires the CQ's arming and rings its owner's
 *              IVRDMA_VEC_COMPLETION as a producer does.
 *
 * The completion ivrdmad writes: the receive's wr_id, qp_num and
 * rq_ticket (from the ring and c), opcode as intended, status
 * IBV_WC_GENERAL_ERR, sender_died 1 (the consumer reports vendor_err
 * IVRDMA_VERR_SENDER_DIED), src_qp the dead QP's number, stamped if the
 * CQ has IVRDMA_CQ_TIMESTAMPS. Every receive a dead initiator took thus
 * ends in exactly one completion, and no ticket is published twice:
 * exactly one claim CAS succeeds per ticket.
 *
 * Not covered: a ticket whose epoch's ring neither geometry word names
 * any more (two resizes while the dead producer's ticket waited):
 * ivrdmad then pushes the completion afresh and cannot fill the hole.
 */
enum ivrdma_intent_state {
	IVRDMA_INTENT_IDLE = 0,
	IVRDMA_INTENT_TAKEN = 1,     /* a receive is held; no ticket yet */
	IVRDMA_INTENT_RESERVING = 2, /* ticket is being (or was) CASed from prod */
	IVRDMA_INTENT_CLAIMED = 3,   /* ticket is mine: claimed, maybe published */
	IVRDMA_INTENT_TAKING = 4,    /* the receive at the word's index is being CASed */
};

/*
 * The intent's word: the state (3 bits), a generation the taker bumps at
 * each TAKING (14 bits: a successor's CAS cannot hit a later take), and
 * the ring index of the receive (47 bits) from TAKING to CLAIMED.
 */
#define IVRDMA_RQ_INDEX_BITS 47
#define IVRDMA_RQ_INDEX_MASK ((1ull << IVRDMA_RQ_INDEX_BITS) - 1)
#define IVRDMA_INTENT_WORD(state, gen, index)                                                      \
	((uint64_t)(state) << 61 | ((uint64_t)(gen)&0x3fffu) << IVRDMA_RQ_INDEX_BITS |             \
	 ((index)&IVRDMA_RQ_INDEX_MASK))
#define IVRDMA_INTENT_STATE(w) ((uint32_t)((w) >> 61))
#define IVRDMA_INTENT_GEN(w)   ((uint32_t)((w) >> IVRDMA_RQ_INDEX_BITS) & 0x3fffu)
#define IVRDMA_INTENT_INDEX(w) ((w)&IVRDMA_RQ_INDEX_MASK)
/* The same word in another state. */
#define IVRDMA_INTENT_AS(w, state) (((w) & ~(7ull << 61)) | (uint64_t)(state) << 61)

/* Which receive ring an intent's receive comes from. */
#define IVRDMA_RING_SRQ_BIT	 (1u << 31)
#define IVRDMA_RING_OF_QP(slot)	 (slot)
#define IVRDMA_RING_OF_SRQ(slot) ((slot) | IVRDMA_RING_SRQ_BIT)

/* The vendor_err of a completion with sender_died set; every other one's is 0. */
#define IVRDMA_VERR_SENDER_DIED 0x5e4dd1edu

struct ivrdma_cqe_intent {
	uint64_t word;	   /* atomic: IVRDMA_INTENT_WORD, stored with release */
	uint32_t cq;	   /* the CQ slot index */
	uint32_t cq_seq;   /* ... and that slot's seq */
	uint32_t qp_num;   /* the target QP: the completion's qp_num */
	uint32_t opcode;   /* IBV_WC_RECV or IBV_WC_RECV_RDMA_WITH_IMM */
	uint64_t ticket;   /* atomic: RESERVING, CLAIMED */
	uint64_t wr_id;	   /* the receive's */
	uint32_t ring;	   /* IVRDMA_RING_OF_QP or _OF_SRQ: where the receive is taken */
	uint32_t ring_seq; /* ... and that slot's seq */
};
static_assert(sizeof(struct ivrdma_cqe_intent) == 48, "intent size");

/*
 * A completion of a receive taken from a QP's own receive ring says which
 * one: the slot's seq (low 16 bits) << 48 | the ring index + 1 (in
 * IVRDMA_RQ_INDEX_MASK). The owner
 * learns from it, when it polls, how far initiators have taken, without
 * reading rq_cons (the initiators' cache line). 0: not from the QP's own
 * ring (an SRQ's receive, or a receive flushed without being posted).
 */
#define IVRDMA_RQ_TICKET(seq, index)                                                               \
	(((uint64_t)((seq)&0xffffu) << 48) | (((index) + 1) & IVRDMA_RQ_INDEX_MASK))
#define IVRDMA_RQ_TICKET_SEQ(t)	  ((uint16_t)((t) >> 48))
#define IVRDMA_RQ_TICKET_TAKEN(t) ((t)&IVRDMA_RQ_INDEX_MASK)
static_assert(sizeof(struct ivrdma_cqe) == 64, "CQE size");

/*
 * Completion events: the owner arms the CQ (req_notify_cq); the producer
 * whose CQE matches the arming swaps ARMED for EVENT. Whoever then swaps
 * EVENT off posts the completion-channel event, so there is one event
 * per arming: the producer itself, when the slot names the owner's
 * channel (channel_id: a host process's channel socket, which the
 * producer can send to; provider/direct_event.c), or else, after the
 * producer rings the owner's IVRDMA_VEC_COMPLETION doorbell, the owner's
 * event thread.
 *
 * A producer that dies in between must not cost the owner its event. One
 * that dies with EVENT set leaves it for the owner's event thread, which
 * looks at its CQs on the control doorbell ivrdmad rings for every death.
 * One that dies after taking EVENT off, before sending, left its tag in
 * the slot's event_sender: the event thread posts the event for it (once
 * more than the arming asked if the producer died after sending: a
 * spurious wakeup, never a lost one).
 */
enum ivrdma_cq_flags {
	IVRDMA_CQ_OVERFLOW = 1u << 0,	     /* a producer found the ring full */
	IVRDMA_CQ_ARMED = 1u << 1,	     /* an event is wanted for the next CQE */
	IVRDMA_CQ_ARMED_SOLICITED = 1u << 2, /* ... only a solicited or failed one */
	IVRDMA_CQ_EVENT = 1u << 3,	     /* an event is due: the owner posts it */
	/*
	 * Set by the owner before any QP uses the CQ: producers stamp each
	 * entry with the device clock, CLOCK_REALTIME in ns on the
	 * producer's node (the one clock all nodes of a host roughly share).
	 */
	IVRDMA_CQ_TIMESTAMPS = 1u << 4,
};

/*
 * A CQ ring in one word, so that a producer never pairs one ring with
 * another's size: the epoch in the top 16 bits (as in prod), the ring's
 * region offset (64-byte aligned, below 2^48) and log2 of its entries in
 * the low 6 bits.
 */
#define IVRDMA_CQ_EPOCH_SHIFT 48u
#define IVRDMA_CQ_LOW_MASK    ((1ull << IVRDMA_CQ_EPOCH_SHIFT) - 1)

static inline uint64_t ivrdma_cq_geometry(uint16_t epoch, uint64_t ring_offset, uint32_t log2_n)
{
	return (uint64_t)epoch << IVRDMA_CQ_EPOCH_SHIFT |
	       (ring_offset & IVRDMA_CQ_LOW_MASK & ~63ull) | (log2_n & 63u);
}

/* The epoch of a geometry word or of a ticket (prod, cons). */
static inline uint16_t ivrdma_cq_epoch(uint64_t word)
{
	return (uint16_t)(word >> IVRDMA_CQ_EPOCH_SHIFT);
}

/* The epoch's first ticket. */
static inline uint64_t ivrdma_cq_epoch_base(uint16_t epoch)
{
	return (uint64_t)epoch << IVRDMA_CQ_EPOCH_SHIFT;
}

static inline uint64_t ivrdma_cq_geometry_offset(uint64_t g)
{
	return g & IVRDMA_CQ_LOW_MASK & ~63ull;
}

static inline uint32_t ivrdma_cq_geometry_log2(uint64_t g)
{
	return (uint32_t)(g & 63u);
}

/*
 * Two cache lines: the owner's (cons, stored on every poll that found
 * something) and the producers' (prod, flags and the geometry words,
 * touched on every push).
 * Producers read cons only when the ring looks full to them, so the
 * owner's line stays in the owner's cache while completions flow.
 */
struct ivrdma_cq_slot {
	struct ivrdma_obj_hdr hdr;
	uint64_t ring_offset; /* the current ring, as geometry says: for readers that only look */
	uint32_t nr_entries;  /* ... its entries, a power of two */
	uint32_t reserved0;
	uint64_t cons; /* atomic: written by the owner */
	/*
	 * Direct completion events (provider/direct_event.c): the id of the
	 * owner's completion channel socket (common/channel_path.h), 0 for
	 * none or withdrawn (atomic: written by the owner), and the address
	 * of its ibv_cq, which the event carries.
	 */
	uint64_t channel_id;
	uint64_t cq_handle;
	/*
	 * The owner tag of the producer between taking EVENT off the flags
	 * and sending the event (atomic; 0: none). A producer claims it with
	 * a CAS from 0 (held: it rings the doorbell instead) and clears it
	 * with a CAS; the owner clears a dead producer's tag, and posts the
	 * event for it (provider/direct_event.c), and stores 0 when it
	 * publishes the channel.
	 */
	uint32_t event_sender;
	uint8_t reserved1[12];
	uint64_t prod;		 /* atomic: CAS by every producer */
	uint32_t flags;		 /* atomic: enum ivrdma_cq_flags */
	uint32_t direct_senders; /* atomic: producers between reading channel_id and sending */
	/* Reserved bytes until layout 7; in the producers' line: read on every push. */
	uint64_t geometry;	/* atomic: the current ring (ivrdma_cq_geometry) */
	uint64_t prev_geometry; /* atomic: the ring before it, until the next resize */
	uint8_t reserved3[32];
};
static_assert(offsetof(struct ivrdma_cq_slot, cons) == 24, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, channel_id) == 32, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, event_sender) == 48, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, prod) == 64, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, direct_senders) == 76, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, flags) == 72, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, geometry) == 80, "CQ slot layout");
static_assert(offsetof(struct ivrdma_cq_slot, prev_geometry) == 88, "CQ slot layout");
static_assert(sizeof(struct ivrdma_cq_slot) == IVRDMA_CQ_SLOT_SIZE, "CQ slot size");

/* A scatter/gather element as the region stores it. */
struct ivrdma_sge {
	uint64_t addr;
	uint32_t length;
	uint32_t lkey;
};
static_assert(sizeof(struct ivrdma_sge) == 16, "SGE size");

/*
 * A receive WQE: 'stride' bytes in its ring, the SGEs following. Receive
 * rings have one producer (the owner posting) and many consumers (remote
 * initiators; an SRQ serves many QPs):
 *
 *   producer: while prod - IVRDMA_RQ_CONS_INDEX(cons) < entries, write
 *             the WQE at prod, then store prod + 1 with release;
 *   consumer: with w = cons (acquire), c = IVRDMA_RQ_CONS_INDEX(w) < prod
 *             (acquire), copy the WQE at c, then CAS cons from w to
 *             IVRDMA_RQ_CONS(c + 1, me); only a successful CAS owns the
 *             copy (the producer cannot reuse entry c before it).
 *
 * Indices count in IVRDMA_RQ_INDEX_BITS (ivrdma_rq_ahead); prod is stored
 * unmasked.
 */
struct ivrdma_recv_wqe {
	uint64_t wr_id;
	uint32_t num_sge;
	uint32_t reserved;
	struct ivrdma_sge sge[];
};
static_assert(sizeof(struct ivrdma_recv_wqe) == 16, "receive WQE header size");

#define IVRDMA_RQ_STRIDE(max_sge)                                                                  \
	(sizeof(struct ivrdma_recv_wqe) + (max_sge) * sizeof(struct ivrdma_sge))

/*
 * A receive ring's cons word: receives taken (47 bits), and who took the
 * last one (17 bits): its QP slot index + 1, 0 for the ring's owner (a
 * flush, a reset). The taker named in the word its take CASes is how
 * ivrdmad tells whether an initiator that died just after that CAS took
 * the receive ("A producer that dies"); hence at most IVRDMA_MAX_QPS QP
 * slots.
 */
#define IVRDMA_RQ_CONS(index, taker)                                                               \
	((uint64_t)(taker) << IVRDMA_RQ_INDEX_BITS | ((index)&IVRDMA_RQ_INDEX_MASK))
#define IVRDMA_RQ_CONS_INDEX(w) ((w)&IVRDMA_RQ_INDEX_MASK)
#define IVRDMA_RQ_CONS_TAKER(w) ((uint32_t)((w) >> IVRDMA_RQ_INDEX_BITS))
#define IVRDMA_MAX_QPS		(1u << 16)

/* How far index b is ahead of index a, counting in 47 bits: negative if behind. */
static inline int64_t ivrdma_rq_ahead(uint64_t b, uint64_t a)
{
	return (int64_t)((b - a) << (64 - IVRDMA_RQ_INDEX_BITS)) >> (64 - IVRDMA_RQ_INDEX_BITS);
}

/* Where a receive ring lives; fixed for the life of its QP or SRQ. */
struct ivrdma_rq_desc {
	uint64_t ring_offset;
	uint32_t nr_entries; /* a power of two */
	uint32_t stride;     /* >= IVRDMA_RQ_STRIDE(max_sge) */
	uint32_t max_sge;
	uint32_t reserved[3];
};
static_assert(sizeof(struct ivrdma_rq_desc) == 32, "receive queue descriptor size");

/*
 * What an initiator tells a target QP's owner: it sets the bit (fetch-or)
 * and rings the owner's IVRDMA_VEC_CONTROL doorbell if the bit was new;
 * the owner's event thread swaps the word to 0 and acts on every bit.
 */
enum ivrdma_qp_async {
	IVRDMA_QP_ASYNC_COMM_EST = 1u << 0,	  /* a message arrived while in RTR */
	IVRDMA_QP_ASYNC_REQ_ERR = 1u << 1,	  /* an invalid request was refused */
	IVRDMA_QP_ASYNC_ACCESS_ERR = 1u << 2,	  /* a remote access violated a key */
	IVRDMA_QP_ASYNC_RECV_ERR = 1u << 3,	  /* a receive completed in error */
	IVRDMA_QP_ASYNC_PENDING = 0xffffu,	  /* the bits above: news for the owner */
	IVRDMA_QP_ASYNC_PEER_CLOSED = 1u << 30,	  /* the connected QP was destroyed, not lost */
	IVRDMA_QP_ASYNC_COMM_EST_SEEN = 1u << 31, /* never cleared: COMM_EST fires once */
};

/*
 * --- Counters --------------------------------------------------------------
 *
 * What a QP did, for `ivrdma status`. Each word has one writer: the QP's
 * owner, under the lock that already serialises that part of the QP (the
 * send queue's, the receive queue's, or the polling of its receive CQ).
 * The writer keeps the running total in private memory and stores it
 * here with a relaxed atomic store: no read-modify-write of shared
 * memory, and the lines are the owner's alone (only ivrdmad reads them,
 * when asked for status). A reader may see one word ahead of another;
 * each word on its own only grows.
 *
 * Operations and bytes count work requests executed successfully, by
 * opcode class (with and without immediate alike; an atomic moves 8
 * bytes). Send completions count when the QP writes them to its CQ;
 * receive completions when the application polls them (an initiator
 * writes them: the owner sees them only then).
 */
struct ivrdma_qp_counters {
	/* the send queue (sq_lock) */
	uint64_t sq_posted; /* send WRs accepted by post_send or wr_complete */
	uint64_t send_ops, send_bytes;
	uint64_t write_ops, write_bytes;
	uint64_t read_ops, read_bytes;
	uint64_t atomic_ops;
	uint64_t atomic_bytes;
	uint64_t rnr_retries;  /* waits because the target had no receive posted */
	uint64_t send_cqes;    /* send completions written, whatever their status */
	uint64_t send_errors;  /* ... of which failed (flushes apart) */
	uint64_t send_flushed; /* ... of which were flushed */
	uint64_t reserved0[3];
	/* polling the receive CQ (its lock) */
	uint64_t recv_ops, recv_bytes; /* receive completions polled that succeeded */
	uint64_t recv_errors;	       /* ... that failed (flushes apart) */
	uint64_t recv_flushed;	       /* ... that were flushed */
	/* the receive queue (rq_lock) */
	uint64_t rq_posted; /* receive WRs accepted by post_recv */
	uint64_t reserved1[3];
};
static_assert(offsetof(struct ivrdma_qp_counters, send_cqes) == 80, "QP counters layout");
static_assert(offsetof(struct ivrdma_qp_counters, recv_ops) == 128, "QP counters layout");
static_assert(sizeof(struct ivrdma_qp_counters) == 192, "QP counters size");

/*
 * A QP as remote initiators see it. The state is what the owner last set
 * (an enum ibv_qp_state); the connection fields let a target check that an
 * operation comes from the QP it is connected to.
 */
struct ivrdma_qp_slot {
	struct ivrdma_obj_hdr hdr;
	uint32_t state; /* atomic: enum ibv_qp_state */
	uint32_t qp_type;
	uint32_t qpn;
	uint32_t pd_handle;
	uint32_t recv_cq;  /* CQ slot index */
	uint32_t srq;	   /* SRQ slot index + 1; 0: the QP's own receive ring */
	uint32_t access;   /* qp_access_flags: IBV_ACCESS_REMOTE_* */
	uint32_t dest_qpn; /* set at RTR */
	uint16_t dest_lid;
	uint8_t min_rnr_timer; /* IB encoding, 0..31 */
	uint8_t reserved0;
	uint32_t qkey; /* UD: datagrams carrying another Q_Key are dropped */
	struct ivrdma_rq_desc rq;
	uint32_t async;	      /* atomic: enum ivrdma_qp_async bits, set by initiators */
	uint32_t context;     /* the owner's context record: its slot index + 1 */
	uint32_t context_seq; /* ... and that record's seq, against a reused record */
	uint32_t xrcd;	      /* XRC receive QPs: their XRC domain's ID */
	uint8_t reserved2[32];
	uint64_t rq_prod; /* atomic: the owner posting receives */
	uint8_t reserved3[56];
	uint64_t rq_cons; /* atomic: initiators taking receives */
	uint8_t reserved4[56];
	struct ivrdma_qp_counters counters; /* lines of their own: initiators never read them */
	uint64_t exec_seq; /* atomic: odd while the owner executes WRs (ivrdma_mr_flags) */
	/* The line exec_seq shares: written by the same executions, no line more. */
	struct ivrdma_cqe_intent intent; /* a receive completion under way (see above) */
	uint8_t reserved5[8];
};
static_assert(offsetof(struct ivrdma_qp_slot, state) == 8, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, dest_lid) == 40, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, qkey) == 44, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, rq) == 48, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, async) == 80, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, rq_prod) == 128, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, context) == 84, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, xrcd) == 92, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, rq_cons) == 192, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, counters) == 256, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, exec_seq) == 448, "QP slot layout");
static_assert(offsetof(struct ivrdma_qp_slot, intent) == 456, "QP slot layout");
static_assert(sizeof(struct ivrdma_qp_slot) == IVRDMA_QP_SLOT_SIZE, "QP slot size");

/*
 * XRC: a send QP names, in each WR, the SRQ that takes the message at the
 * other end (remote_srqn: IVRDMA_SRQN_BASE + slot index). The initiator
 * accepts an SRQ only if its xrcd equals that of the receive QP its own
 * QP is connected to; the receive completion goes to the SRQ's CQ, and
 * remote memory is checked in the SRQ's PD, as the IB spec has it.
 */
struct ivrdma_srq_slot {
	struct ivrdma_obj_hdr hdr;
	uint32_t pd_handle;
	uint32_t limit; /* atomic: srq_limit, 0 = not armed */
	struct ivrdma_rq_desc rq;
	uint64_t prod;	 /* atomic */
	uint32_t xrcd;	 /* its XRC domain's ID; 0: a basic SRQ */
	uint32_t xrc_cq; /* XRC: the CQ slot its receive completions go to */
	uint64_t cons;	 /* atomic; own cache line */
	uint8_t reserved1[56];
};
static_assert(offsetof(struct ivrdma_srq_slot, rq) == 16, "SRQ slot layout");
static_assert(offsetof(struct ivrdma_srq_slot, prod) == 48, "SRQ slot layout");
static_assert(offsetof(struct ivrdma_srq_slot, xrcd) == 56, "SRQ slot layout");
static_assert(offsetof(struct ivrdma_srq_slot, cons) == 64, "SRQ slot layout");
static_assert(sizeof(struct ivrdma_srq_slot) == IVRDMA_SRQ_SLOT_SIZE, "SRQ slot size");

enum ivrdma_ctx_state {
	IVRDMA_CTX_OPEN = 1,
	IVRDMA_CTX_CLOSED = 2,	 /* final: ivrdmad keeps what it says and frees the slot */
	IVRDMA_CTX_RELEASED = 3, /* its process is gone (see below): still live until ivrdmad */
};

enum ivrdma_ctx_flags {
	IVRDMA_CTX_OWN_TAG = 1u << 0, /* holds its objects under its context tag */
};

/*
 * One per open verbs context, claimed like an object slot (owner tag
 * first) when the context opens. In a guest every process of the VM
 * shares the VM's peer ID, so the record, not the peer, is the context.
 * Its QPs name it (ivrdma_qp_slot.context); 'destroyed' adds up the
 * counters of its QPs already gone, so the context's totals are these
 * plus its live QPs'. Written by the owner only (under a lock of its
 * own), until it stores CLOSED; then ivrdmad owns it. ivrdmad also takes
 * it over when the owning peer dies.
 *
 * A context in a VM holds its objects under its context tag (see "Owner
 * tag"), and asks the guest driver to store RELEASED in 'state' if its
 * file is released while the record is OPEN: its process died. A context
 * that closes withdraws that before it stores CLOSED. ivrdmad, on its
 * next sweep of the records, treats RELEASED as a host peer's death:
 * settles the receive completions the context's QPs had under way
 * (ivrdma_cq_settle), stores CLOSED (the context is no longer alive to
 * anyone), waits out executions into its memory, reclaims what its tag
 * holds, frees the record and rings every peer's control vector. So the
 * context stays alive to others (ivrdma_owner_alive) until its last
 * completions are written, as a peer does until ivrdmad reclaims it.
 */
struct ivrdma_ctx_slot {
	struct ivrdma_obj_hdr hdr;
	uint32_t state; /* atomic: enum ivrdma_ctx_state, stored with release */
	uint32_t pid;	/* the process, in its own PID namespace (a guest's own) */
	uint32_t node;	/* index into the node directory */
	uint32_t qps_destroyed;
	uint64_t opened_ns;   /* CLOCK_REALTIME */
	uint32_t suspend_ack; /* atomic: the suspend_seq this context has acted on */
	uint32_t flags;	      /* enum ivrdma_ctx_flags: set before the context holds anything */
	uint8_t reserved[24];
	struct ivrdma_qp_counters destroyed;
};
static_assert(offsetof(struct ivrdma_ctx_slot, state) == 8, "context slot layout");
static_assert(offsetof(struct ivrdma_ctx_slot, suspend_ack) == 32, "context slot layout");
static_assert(offsetof(struct ivrdma_ctx_slot, flags) == 36, "context slot layout");
static_assert(offsetof(struct ivrdma_ctx_slot, destroyed) == 64, "context slot layout");

/*
 * --- Suspending a node (migration) ------------------------------------------
 *
 * Before a VM's ivshmem device is unplugged (to migrate it), every
 * context in the region lets go of it, and it lets go of the region:
 *
 * ivrdmad (`migrate-begin VM`): stores the node's state SUSPENDING, then
 *   increments the header's suspend_seq (release), then rings every peer's
 *   control vector. It answers once every OPEN context record whose owner
 *   lives has suspend_ack == suspend_seq (or names those that have not, at
 *   the timeout).
 * Each context's event thread, on that doorbell: loads suspend_seq
 *   (acquire: the SUSPENDING states stored before it are visible), then,
 *   for every SUSPENDING node other than its own, moves its QPs connected
 *   to that node to ERR (flushing, IBV_EVENT_QP_FATAL); if its own node is
 *   SUSPENDING, it moves all its QPs to ERR, waits for the executions
 *   under way (ivrdma_mr_flags), copies its registered pages back into
 *   private memory and reports IBV_EVENT_DEVICE_FATAL. Then it stores
 *   suspend_ack = suspend_seq (release).
 * A context record claimed later starts with suspend_ack = suspend_seq: it
 *   cannot connect to a node that is not ACTIVE (RTR checks the node).
 */
static_assert(sizeof(struct ivrdma_ctx_slot) == IVRDMA_CTX_SLOT_SIZE, "context slot size");

/*
 * --- Listening (RDMA CM) ---------------------------------------------------
 *
 * RDMA CM is emulated in each process (libivrdma-preload.so): a process's
 * CM agent owns a UD QP, and connection messages go from agent to agent.
 * A listener is how an agent on another node finds that QP: an rdma_listen()
 * on (node, port space, port), optionally one address, claims an entry.
 *
 * Claiming: compare-and-swap hdr.owner 0 -> the owner tag; write every
 *   other field; store state LISTENING (release). Then look for another
 *   LISTENING entry with the same node, port space and port whose address
 *   overlaps (either is unbound, or both equal): if one has a lower index,
 *   this claim lost; it releases the entry and the listen fails with
 *   EADDRINUSE. Of two racing claims the one with the higher index gives
 *   way, so at most one survives.
 * Looking up (any participant): load state (acquire); only a LISTENING
 *   entry's fields are read, and the lowest-indexed match is the listener.
 *   A message sent to a listener that has just gone is lost like any UD
 *   datagram to a QP that no longer exists; the sender's timeout covers it.
 * Releasing: store state FREE (release), then hdr.owner 0. ivrdmad frees
 *   the entries of a peer that died, as it frees its other slots.
 */
enum ivrdma_listener_state {
	IVRDMA_LISTENER_FREE = 0,
	IVRDMA_LISTENER_LISTENING = 1,
};

struct ivrdma_listener {
	struct ivrdma_obj_hdr hdr;
	uint32_t state;	     /* atomic: enum ivrdma_listener_state */
	uint16_t node;	     /* index into the node directory */
	uint16_t port_space; /* enum rdma_ucm_port_space: RDMA_PS_TCP, RDMA_PS_UDP, ... */
	uint16_t port;	     /* host byte order */
	uint8_t bound;	     /* 1: only 'addr'; 0: any address of the node */
	uint8_t reserved0;
	uint32_t agent_qpn; /* the owner's CM agent UD QP, its Q_Key below */
	uint32_t agent_qkey;
	uint32_t listen_id; /* the owner's own name for the listening ID */
	uint8_t addr[16];   /* IPv6, or IPv4-mapped */
	uint8_t reserved[16];
};
static_assert(offsetof(struct ivrdma_listener, state) == 8, "listener layout");
static_assert(offsetof(struct ivrdma_listener, agent_qpn) == 20, "listener layout");
static_assert(offsetof(struct ivrdma_listener, addr) == 32, "listener layout");
static_assert(sizeof(struct ivrdma_listener) == 64, "listener size");

/*
 * --- Multicast (UD) ----------------------------------------------------------
 *
 * One entry per UD QP attached to a multicast group (ibv_attach_mcast):
 * the group's MGID and MLID, the QP's node and number.
 *
 * Attaching: claim an entry (hdr.owner, as any slot), write every other
 *   field, store state ATTACHED (release). One QP attaches to a group once.
 * Sending to a multicast LID (0xc000 .. 0xfffe) with remote QPN 0xffffff:
 *   the sender scans the table; every ATTACHED entry (acquire) whose MLID
 *   matches, and whose MGID matches too when the datagram carries a GRH,
 *   gets its own copy, delivered as any datagram to that QP (Q_Key
 *   checked, dropped if no receive is posted). The sending QP receives
 *   its copy too if it is attached.
 * Detaching: store state FREE (release), then hdr.owner 0. A destroyed QP
 *   detaches from every group; ivrdmad frees a dead peer's entries.
 */
enum ivrdma_mcast_state {
	IVRDMA_MCAST_FREE = 0,
	IVRDMA_MCAST_ATTACHED = 1,
};

#define IVRDMA_MCAST_LID_FIRST 0xc000u
#define IVRDMA_MCAST_LID_LAST  0xfffeu
#define IVRDMA_MCAST_QPN       0xffffffu

struct ivrdma_mcast_member {
	struct ivrdma_obj_hdr hdr;
	uint32_t state; /* atomic: enum ivrdma_mcast_state */
	uint16_t mlid;
	uint16_t node; /* the attached QP's node */
	uint32_t qpn;
	uint32_t reserved0;
	uint8_t mgid[16];
	uint8_t reserved[24];
};
static_assert(offsetof(struct ivrdma_mcast_member, state) == 8, "multicast layout");
static_assert(offsetof(struct ivrdma_mcast_member, qpn) == 16, "multicast layout");
static_assert(offsetof(struct ivrdma_mcast_member, mgid) == 24, "multicast layout");
static_assert(sizeof(struct ivrdma_mcast_member) == 64, "multicast entry size");

#define IVRDMA_DEFAULT_CHUNK_SHIFT 16u /* 64 KiB */
#define IVRDMA_MIN_CHUNK_SHIFT	   12u /* a page: MRs are mapped chunk by chunk */
#define IVRDMA_MAX_CHUNK_SHIFT	   30u

#endif /* IVRDMA_LAYOUT_H */
