/* SPDX-License-Identifier: MIT */
/*
 * The name of a completion channel the preload makes for a host process
 * (provider/preload/comp_channel.c): a datagram socket in the abstract
 * namespace, "ivrdma-ch-" and the 16 hex digits of a random id. Producers
 * of other processes send completion events to it (direct_event.c).
 */
#ifndef IVRDMA_CHANNEL_NAME_H
#define IVRDMA_CHANNEL_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define IVRDMA_CHANNEL_PREFIX "ivrdma-ch-"
#define IVRDMA_CHANNEL_ID_LEN 16 /* hex digits */

/* The address of channel 'id' in *a; returns its length for bind/sendto. */
static inline socklen_t ivrdma_channel_addr(struct sockaddr_un *a, uint64_t id)
{
	char name[sizeof(IVRDMA_CHANNEL_PREFIX) + IVRDMA_CHANNEL_ID_LEN];
	size_t n = (size_t)snprintf(name, sizeof(name), IVRDMA_CHANNEL_PREFIX "%016llx",
				    (unsigned long long)id);

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path + 1, name, n); /* sun_path[0] = 0: the abstract namespace */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* The id of channel socket 'fd', or false if fd is no such channel. */
static inline bool ivrdma_channel_id(int fd, uint64_t *id)
{
	struct sockaddr_un a, want;
	socklen_t len = sizeof(a);
	char *end;

	if (getsockname(fd, (struct sockaddr *)&a, &len) < 0 || a.sun_family != AF_UNIX ||
	    len != ivrdma_channel_addr(&want, 0) || a.sun_path[0] != '\0' ||
	    memcmp(a.sun_path + 1, IVRDMA_CHANNEL_PREFIX, sizeof(IVRDMA_CHANNEL_PREFIX) - 1))
		return false;
	a.sun_path[len - offsetof(struct sockaddr_un, sun_path)] = '\0';
	*id = strtoull(a.sun_path + sizeof(IVRDMA_CHANNEL_PREFIX), &end, 16);
	return *end == '\0' && *id != 0;
}

#endif
