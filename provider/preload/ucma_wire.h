/* SPDX-License-Identifier: MIT */
/*
 * The connection messages CM agents exchange (ucma_conn.c), one per UD
 * datagram from agent QP to agent QP. They play the part of InfiniBand's
 * CM MADs (REQ, MRA, REP, RTU, REJ, DREQ, DREP, SIDR REQ/REP) with the same
 * meaning, in a format of our own: the agents are all this code, and the
 * region carries them, never a wire.
 *
 * Every field is host byte order (all participants are x86_64 on one
 * host). A receiver trusts nothing in a message: it checks the magic, the
 * type, the lengths and that the IDs it names are its own and expect it.
 */
#ifndef IVRDMA_UCMA_WIRE_H
#define IVRDMA_UCMA_WIRE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define UCMA_MSG_MAGIC 0x314d4356u /* "VCM1" */

enum ucma_msg_type {
	UCMA_MSG_REQ = 1,  /* connect: active -> listener */
	UCMA_MSG_MRA,	   /* REQ seen, the application has not answered yet */
	UCMA_MSG_REP,	   /* accepted: passive -> active */
	UCMA_MSG_RTU,	   /* ready to use: active -> passive */
	UCMA_MSG_REJ,	   /* refused, either way */
	UCMA_MSG_DREQ,	   /* disconnect request, either way */
	UCMA_MSG_DREP,	   /* disconnect reply */
	UCMA_MSG_SIDR_REQ, /* UD service lookup: active -> listener */
	UCMA_MSG_SIDR_REP, /* its answer */
	UCMA_MSG_TYPES,
};

/* The private data limits of InfiniBand's CM, less what rdma_cm keeps. */
#define UCMA_REQ_PRIVATE      56u
#define UCMA_REP_PRIVATE      196u
#define UCMA_REJ_PRIVATE      148u
#define UCMA_SIDR_REQ_PRIVATE 180u
#define UCMA_SIDR_REP_PRIVATE 136u
#define UCMA_MAX_PRIVATE      196u

/* IB CM rejection reasons rdma_cm users see as the REJECTED event's status. */
#define UCMA_REJ_TIMEOUT	    4u
#define UCMA_REJ_INVALID_SERVICE_ID 8u
#define UCMA_REJ_CONSUMER_DEFINED   28u

/* An endpoint's IP address: IPv6 or IPv4-mapped, and a port. */
struct ucma_wire_addr {
	uint8_t ip[16];
	uint16_t port;
	uint16_t family; /* AF_INET or AF_INET6: how the application wrote it */
};
static_assert(sizeof(struct ucma_wire_addr) == 20, "wire address size");

struct ucma_msg {
	uint32_t magic;
	uint8_t type; /* enum ucma_msg_type */
	uint8_t private_data_len;
	uint8_t reason; /* REJ: an IB CM reason; SIDR_REP: 0 accepted, else refused */
	uint8_t reserved0;
	uint32_t sender_id;   /* the sender's name for the connection */
	uint32_t receiver_id; /* the receiver's name for it; REQ/SIDR_REQ: the listen ID */
	uint32_t listener;    /* REQ/SIDR_REQ: the listener table entry it was sent to */
	uint16_t port_space;
	uint16_t reserved1;
	uint32_t qpn;	       /* REQ, REP: the application's QP; SIDR_REP: its UD QP */
	uint32_t qkey;	       /* SIDR_REP */
	uint32_t starting_psn; /* REQ, REP */
	uint8_t responder_resources, initiator_depth, flow_control, retry_count;
	uint8_t rnr_retry_count, srq, reserved2[2];
	struct ucma_wire_addr src, dst; /* REQ/SIDR_REQ: as the active side sees them */
	uint8_t private_data[UCMA_MAX_PRIVATE];
};
static_assert(offsetof(struct ucma_msg, src) == 44, "message layout");
static_assert(offsetof(struct ucma_msg, private_data) == 84, "message layout");
static_assert(sizeof(struct ucma_msg) == 280, "message size");

#endif /* IVRDMA_UCMA_WIRE_H */
