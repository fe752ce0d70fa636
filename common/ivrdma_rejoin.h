/* SPDX-License-Identifier: MIT */
/*
 * Rejoining a restarted ivrdmad (DIR/rejoin.sock).
 *
 * A host process whose ivrdmad went (its socket reached EOF) keeps using
 * the region; when a new ivrdmad adopts the region, the process connects
 * to DIR/rejoin.sock and sends one struct ivrdma_rejoin_msg carrying its
 * own nr_vectors eventfds (SCM_RIGHTS, in vector order): the new daemon
 * never had them. ivrdmad checks the sender (SO_PEERCRED pid = the peer
 * entry's pid), that the peer entry is one it waits for (ACTIVE, this
 * generation) and the fds (eventfds, exactly nr_vectors), then answers as
 * on a join (ivshmem_msg.h): version, the same peer ID, the region fd,
 * every other connected peer's vectors, the process's own last; from then
 * on the connection is the process's control socket, as after a join. A
 * refused rejoin is one message, IVRDMA_REJOIN_REFUSED (no fd), then the
 * connection closes; a connection closed with nothing sent is no answer
 * (an ivrdmad on its way out): the process tries again later.
 */
#ifndef IVRDMA_REJOIN_H
#define IVRDMA_REJOIN_H

#include <assert.h>
#include <stdint.h>

#define IVRDMA_REJOIN_MAGIC   0x4a525649u /* "IVRJ" */
#define IVRDMA_REJOIN_SOCK    "rejoin.sock"
#define IVRDMA_REJOIN_REFUSED (-2) /* the answer to a rejoin ivrdmad refuses */

struct ivrdma_rejoin_msg {
	uint32_t magic;
	uint16_t peer_id;
	uint16_t gen; /* the peer entry's generation: the process's owner tag */
	uint32_t nr_vectors;
	uint32_t reserved; /* 0 */
};
static_assert(sizeof(struct ivrdma_rejoin_msg) == 16, "rejoin message size");

#endif /* IVRDMA_REJOIN_H */
