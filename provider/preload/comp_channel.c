// SPDX-License-Identifier: MIT
/*
 * libivrdma-preload.so: completion channels for host processes.
 *
 * libibverbs makes a completion channel with a kernel command on cmd_fd; a
 * host process has no kernel driver behind ivrdma0, so that command fails
 * (see design.md). Preloaded (`ivrdma env` sets LD_PRELOAD), this library
 * answers ibv_create_comp_channel() for ivrdma devices with a datagram
 * socket: the application reads completion events from it exactly as from
 * the kernel's channel (struct ib_uverbs_comp_event_desc records), and the
 * provider sends them to it. libibverbs' own
 * ibv_destroy_comp_channel() closes the fd and frees the channel, which is
 * all it needs. Every other device goes to libibverbs untouched.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../channel_name.h"

typedef struct ibv_comp_channel *(*create_channel_fn)(struct ibv_context *);

static struct ibv_comp_channel *libibverbs_create(struct ibv_context *context)
{
	static create_channel_fn real;

	if (!real)
		real =
		    (create_channel_fn)dlvsym(RTLD_NEXT, "ibv_create_comp_channel", "IBVERBS_1.0");
	if (!real) {
		errno = ENOSYS;
		return NULL;
	}
	return real(context);
}

static int is_ivrdma(struct ibv_context *context)
{
	const char *name = ibv_get_device_name(context->device);

	return name && strncmp(name, "ivrdma", 6) == 0;
}

/*
 * A datagram socket in the abstract namespace under a random name
 * (channel_name.h). The application reads completion events from it as
 * from the kernel's channel, one struct ib_uverbs_comp_event_desc a read;
 * producers send them to its name, those of other processes too
 * (provider/direct_event.c), so the reader wakes with no relay. Not
 * connected: a connected datagram socket takes datagrams from its peer
 * only.
 */
static int open_channel_fd(void)
{
	for (int tries = 0; tries < 8; tries++) {
		struct sockaddr_un a;
		uint64_t id;
		socklen_t len;
		int fd, saved;

		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			return -1;
		if (!id)
			continue;
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		len = ivrdma_channel_addr(&a, id);
		if (bind(fd, (struct sockaddr *)&a, len) == 0)
			return fd;
		saved = errno;
		close(fd);
		errno = saved;
		if (saved != EADDRINUSE)
			return -1;
	}
	errno = EADDRINUSE;
	return -1;
}

__attribute__((visibility("default"))) struct ibv_comp_channel *
ibv_create_comp_channel(struct ibv_context *context)
{
	struct ibv_comp_channel *channel;

	if (!context || !is_ivrdma(context))
		return libibverbs_create(context);
	/* In a guest the driver's command device makes real channels. */
	channel = libibverbs_create(context);
	if (channel)
		return channel;
	channel = malloc(sizeof(*channel));
	if (!channel)
		return NULL;
	channel->fd = open_channel_fd();
	if (channel->fd < 0) {
		free(channel);
		return NULL;
	}
	channel->context = context;
	channel->refcnt = 0;
	return channel;
}
