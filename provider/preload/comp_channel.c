// SPDX-License-Identifier: MIT
/*
 * libivrdma-preload.so: completion channels for host processes.
 *
 * libibverbs makes a completion channel with a kernel command on cmd_fd; a
 * host process has no kernel driver behind ivrdma0, so that command fails
 * (see design.md). Preloaded (`ivrdma env` sets LD_PRELOAD), this library
 * answers ibv_create_comp_channel() for ivrdma devices with a datagram
 * socket at a path in ivrdmad's directory (common/channel_path.h): the
 * application reads completion events from it exactly as from the
 * kernel's channel (struct ib_uverbs_comp_event_desc records, one a read),
 * and producers in any host process send them to its path
 * (provider/direct_event.c). ibv_destroy_comp_channel() removes the path
 * before libibverbs closes the fd and frees the channel. Where there is
 * no such directory, the channel is a pipe the provider writes into.
 * Every other device goes to libibverbs untouched.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel_path.h"

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
 * One fd that both reads and writes the same pipe: while the channel is
 * open it is its own writer, so reads block instead of seeing end-of-file.
 */
static int open_pipe_fd(void)
{
	char path[64];
	int p[2], fd, saved;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
	fd = open(path, O_RDWR | O_CLOEXEC);
	saved = errno;
	close(p[0]);
	close(p[1]);
	errno = saved;
	return fd;
}

/*
 * A datagram socket at DIR/channels/<id>, <id> my pid and 32 random bits.
 * Not connected: a connected datagram socket takes datagrams from its
 * peer only. Readable and writable by all who reach it: the directory's
 * permissions say who does. -1 if the directory is not there.
 */
static int open_socket_fd(void)
{
	for (int tries = 0; tries < 8; tries++) {
		struct sockaddr_un a;
		uint32_t r;
		uint64_t id;
		socklen_t len;
		int fd, saved;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			return -1;
		id = (uint64_t)getpid() << 32 | r;
		len = ivrdma_channel_addr(&a, ivrdma_daemon_dir(), id);
		fd = len ? socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) : -1;
		if (fd < 0)
			return -1;
		if (bind(fd, (struct sockaddr *)&a, len) == 0) {
			if (chmod(a.sun_path, 0666) == 0)
				return fd;
			unlink(a.sun_path);
		}
		saved = errno;
		close(fd);
		errno = saved;
		if (saved != EADDRINUSE)
			return -1;
	}
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
	channel->fd = open_socket_fd();
	if (channel->fd < 0)
		channel->fd = open_pipe_fd();
	if (channel->fd < 0) {
		free(channel);
		return NULL;
	}
	channel->context = context;
	channel->refcnt = 0;
	return channel;
}

typedef int (*destroy_channel_fn)(struct ibv_comp_channel *);

/* A channel of mine goes with its path, once libibverbs has let it go. */
__attribute__((visibility("default"))) int
ibv_destroy_comp_channel(struct ibv_comp_channel *channel)
{
	static destroy_channel_fn real;
	struct sockaddr_un a;
	uint64_t id = channel && channel->context && is_ivrdma(channel->context)
			  ? ivrdma_channel_id(channel->fd, ivrdma_daemon_dir())
			  : 0;
	int rc;

	if (!real)
		real = (destroy_channel_fn)dlvsym(RTLD_NEXT, "ibv_destroy_comp_channel",
						  "IBVERBS_1.0");
	if (!real)
		return ENOSYS;
	rc = real(channel);
	if (!rc && id && ivrdma_channel_addr(&a, ivrdma_daemon_dir(), id))
		unlink(a.sun_path);
	return rc;
}
