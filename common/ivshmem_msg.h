/* SPDX-License-Identifier: MIT */
/*
 * QEMU's ivshmem server protocol (docs/specs/ivshmem-spec.rst), both ends.
 *
 * Every message is one little-endian int64, optionally carrying one file
 * descriptor (SCM_RIGHTS). On connect the server sends: the protocol
 * version (0, no fd), the client's peer ID (no fd), -1 with the shared
 * memory fd; then for every peer, the client itself last, one message per
 * vector carrying the peer ID and an eventfd. Later a peer ID with an fd is
 * a new eventfd of that peer, and a peer ID without one means it left.
 * Clients never send anything.
 */
#ifndef IVRDMA_IVSHMEM_MSG_H
#define IVRDMA_IVSHMEM_MSG_H

#include <stddef.h>
#include <stdint.h>

#define IVSHMEM_PROTOCOL_VERSION 0
#define IVSHMEM_MSG_SHM		 (-1)

/* Sends one message without blocking; fd < 0 sends none. 0 or -errno. */
int ivshmem_msg_send(int sock, int64_t value, int fd);

/*
 * Reassembles messages from a non-blocking stream socket. A message may
 * arrive in pieces; the fd travels with its first byte.
 */
struct ivshmem_msg_reader {
	uint8_t buf[8];
	size_t have;
	int fd;
};

void ivshmem_msg_reader_init(struct ivshmem_msg_reader *r);
void ivshmem_msg_reader_reset(struct ivshmem_msg_reader *r);

/*
 * 1: a whole message (*fd is -1 or an fd the caller now owns); 0: the
 * server closed the connection; -EAGAIN: nothing complete yet; -errno.
 */
int ivshmem_msg_recv(int sock, struct ivshmem_msg_reader *r, int64_t *value, int *fd);

#endif /* IVRDMA_IVSHMEM_MSG_H */
