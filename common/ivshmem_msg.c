// SPDX-License-Identifier: MIT
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ivshmem_msg.h"

int ivshmem_msg_send(int sock, int64_t value, int fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	uint64_t le = htole64((uint64_t)value);
	struct iovec iov = {.iov_base = &le, .iov_len = sizeof(le)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cmsg;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* 8 bytes into an empty-enough stream buffer go whole or not at all. */
	return n == (ssize_t)sizeof(le) ? 0 : -EIO;
}

void ivshmem_msg_reader_init(struct ivshmem_msg_reader *r)
{
	r->have = 0;
	r->fd = -1;
}

void ivshmem_msg_reader_reset(struct ivshmem_msg_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	ivshmem_msg_reader_init(r);
}

/* Keeps the first fd of a message; closes any extra (a confused sender). */
static void take_fds(struct msghdr *msg, struct ivshmem_msg_reader *r)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t nfds;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfds; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (r->fd < 0)
				r->fd = fd;
			else
				close(fd);
		}
	}
}

int ivshmem_msg_recv(int sock, struct ivshmem_msg_reader *r, int64_t *value, int *fd)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = r->buf + r->have, .iov_len = sizeof(r->buf) - r->have};
	struct msghdr msg = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = control.buf,
	    .msg_controllen = sizeof(control.buf),
	};
	uint64_t le;
	ssize_t n;

	do {
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	take_fds(&msg, r);
	if (msg.msg_flags & MSG_CTRUNC)
		return -EPROTO;
	if (n == 0)
		return 0;
	r->have += (size_t)n;
	if (r->have < sizeof(r->buf))
		return -EAGAIN;
	memcpy(&le, r->buf, sizeof(le));
	*value = (int64_t)le64toh(le);
	*fd = r->fd;
	ivshmem_msg_reader_init(r);
	return 1;
}
