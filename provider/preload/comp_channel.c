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
 *
 * ibv_get_cq_event() may also watch an ivrdma channel before it sleeps on
 * it, when the application asks (IVRDMA_EVENT_POLL_US, see
 * event_poll_us()).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "channel_path.h"
#include "ucma.h" /* ucma_now_ns, the preload's clock */

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

/*
 * IVRDMA_EVENT_POLL_US: how long, in microseconds, ibv_get_cq_event()
 * watches an ivrdma channel before it sleeps in read(). Waking a sleeping
 * thread costs 30-40 us on an idle virtual CPU (bench/wakeup_floor), more
 * than TCP's whole half round trip over loopback and a hundred times a
 * completion; an event that comes while the thread watches costs no
 * wakeup. The price is a CPU kept busy for up to that long in every wait,
 * so it is the application's choice: unset or 0 (the default), a waiter
 * sleeps at once and uses no CPU while idle. At most 1 s. Read once.
 */
#define EVENT_POLL_MAX_US 1000000L

static long event_poll_us(void)
{
	static atomic_long us = -1;
	long v = atomic_load_explicit(&us, memory_order_relaxed);

	if (v < 0) {
		const char *s = getenv("IVRDMA_EVENT_POLL_US");

		v = s ? strtol(s, NULL, 10) : 0;
		v = v < 0 ? 0 : v > EVENT_POLL_MAX_US ? EVENT_POLL_MAX_US : v;
		atomic_store_explicit(&us, v, memory_order_relaxed);
	}
	return v;
}

/*
 * Until the channel has an event or 'us' microseconds have passed. A
 * channel in non-blocking mode is left alone: its reader wants EAGAIN at
 * once, not a wait.
 */
static void watch_channel(int fd, long us)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	uint64_t end;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (fl & O_NONBLOCK))
		return;
	end = ucma_now_ns() + (uint64_t)us * 1000u;
	while (poll(&p, 1, 0) == 0 && ucma_now_ns() < end)
		;
}

typedef int (*get_cq_event_fn)(struct ibv_comp_channel *, struct ibv_cq **, void **);

/* libibverbs' own, after the watch: an event there is read without sleeping. */
__attribute__((visibility("default"))) int ibv_get_cq_event(struct ibv_comp_channel *channel,
							    struct ibv_cq **cq, void **cq_context)
{
	static get_cq_event_fn real;
	long us = event_poll_us();

	if (!real)
		real = (get_cq_event_fn)dlvsym(RTLD_NEXT, "ibv_get_cq_event", "IBVERBS_1.1");
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	if (us && channel && channel->context && is_ivrdma(channel->context))
		watch_channel(channel->fd, us);
	return real(channel, cq, cq_context);
}
