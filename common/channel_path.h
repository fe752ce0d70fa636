/* SPDX-License-Identifier: MIT */
/*
 * Where a host process's completion channel lives: a datagram socket at
 * DIR/channels/<id> (DIR: ivrdmad's directory), made by the preload
 * (provider/preload/comp_channel.c). Producers of other processes send
 * completion events to it by that path (provider/direct_event.c).
 *
 * The path is what guards it: ivrdmad makes DIR/channels with the
 * permissions of its sockets (owner, or owner and group, with the sticky
 * and setgid bits), so only those who may use the region at all can reach
 * a channel, and none can remove another's. The id is the process's pid
 * in its high 32 bits, random below, so its bit 63 is clear: a set one
 * names a channel of the driver's ivrdma_host (IVT_KERNEL_CHANNEL_ID).
 * ivrdmad removes the channels of a process that died without destroying
 * them (cm-daemon/channels.c).
 */
#ifndef IVRDMA_CHANNEL_PATH_H
#define IVRDMA_CHANNEL_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define IVRDMA_DEFAULT_DIR    "/run/ivrdma" /* ivrdmad's directory unless IVRDMA_DIR says */
#define IVRDMA_CHANNEL_DIR    "channels"
#define IVRDMA_CHANNEL_ID_LEN 16 /* hex digits */

/* ivrdmad's directory, where its sockets and the channels are: IVRDMA_DIR, or the default. */
static inline const char *ivrdma_daemon_dir(void)
{
	const char *dir = getenv("IVRDMA_DIR");

	return dir && *dir ? dir : IVRDMA_DEFAULT_DIR;
}

/* The address of channel 'id' under daemon directory 'dir': its length, or 0 if too long. */
static inline socklen_t ivrdma_channel_addr(struct sockaddr_un *a, const char *dir, uint64_t id)
{
	int n;

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	n = snprintf(a->sun_path, sizeof(a->sun_path), "%s/" IVRDMA_CHANNEL_DIR "/%016llx", dir,
		     (unsigned long long)id);
	if (n < 0 || (size_t)n >= sizeof(a->sun_path))
		return 0;
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
}

/* A channel file's id from its name (no directory), or 0 if it is no channel's. */
static inline uint64_t ivrdma_channel_name_id(const char *name)
{
	char *end;
	uint64_t id;

	if (strlen(name) != IVRDMA_CHANNEL_ID_LEN)
		return 0;
	id = strtoull(name, &end, 16);
	return *end == '\0' ? id : 0;
}

/* The id of channel socket 'fd' under 'dir', or 0 if fd is no such channel. */
static inline uint64_t ivrdma_channel_id(int fd, const char *dir)
{
	struct sockaddr_un a, want;
	socklen_t len = sizeof(a) - 1; /* a.sun_path keeps a terminating 0 */
	const char *slash;
	uint64_t id;

	memset(&a, 0, sizeof(a));
	if (getsockname(fd, (struct sockaddr *)&a, &len) < 0 || a.sun_family != AF_UNIX)
		return 0;
	slash = strrchr(a.sun_path, '/');
	id = slash ? ivrdma_channel_name_id(slash + 1) : 0;
	/* The same path the producers will make: the same directory. */
	if (!id || !ivrdma_channel_addr(&want, dir, id) || strcmp(want.sun_path, a.sun_path))
		return 0;
	return id;
}

#endif
