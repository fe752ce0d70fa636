// SPDX-License-Identifier: MIT
/*
 * libivrdma-preload.so: completion channels for host processes.
 *
 * libibverbs makes a completion channel with a kernel command on cmd_fd; a
 * host process has no kernel driver behind ivrdma0, so that command fails
 * (see design.md). Preloaded (`ivrdma env` sets LD_PRELOAD), this library
 * answers ibv_create_comp_channel() for ivrdma devices with a pipe opened
 * read-write: the application reads completion events from it exactly as
 * from the kernel's channel (struct ib_uverbs_comp_event_desc records), and
 * the provider, holding the same fd, writes them. libibverbs' own
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
#include <unistd.h>

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
static int open_channel_fd(void)
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
