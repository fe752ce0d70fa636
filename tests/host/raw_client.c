// SPDX-License-Identifier: MIT
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "raw_client.h"

int raw_recv(struct raw_client *c, int timeout_ms, int64_t *value, int *fd)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd pfd = {.fd = c->sock, .events = POLLIN};
		int rc = ivshmem_msg_recv(c->sock, &c->reader, value, fd);
		long spent;

		if (rc != -EAGAIN)
			return rc;
		clock_gettime(CLOCK_MONOTONIC, &now);
		spent =
		    (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (spent >= timeout_ms)
			return -ETIMEDOUT;
		poll(&pfd, 1, (int)(timeout_ms - spent));
	}
}

bool raw_quiet(struct raw_client *c, int timeout_ms)
{
	struct pollfd pfd = {.fd = c->sock, .events = POLLIN};

	return poll(&pfd, 1, timeout_ms) == 0;
}

bool fd_is_eventfd(int fd)
{
	char path[64], line[128];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strncmp(line, "eventfd-count:", 14) == 0;
	fclose(f);
	return found;
}

uint64_t eventfd_drain(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

void eventfd_ring(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		perror("eventfd write");
}

void raw_close(struct raw_client *c)
{
	if (c->base)
		munmap(c->base, c->size);
	if (c->shm_fd >= 0)
		close(c->shm_fd);
	for (unsigned int i = 0; i < c->nr_own; i++)
		close(c->own[i]);
	if (c->sock >= 0)
		close(c->sock);
	ivshmem_msg_reader_reset(&c->reader);
	memset(c, 0, sizeof(*c));
	c->sock = c->shm_fd = -1;
}
