/* SPDX-License-Identifier: MIT */
/* A bare ivshmem protocol client for conformance tests: no transport code. */
#ifndef IVRDMA_TEST_RAW_CLIENT_H
#define IVRDMA_TEST_RAW_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "ivshmem_msg.h"
#include "region.h"

struct raw_client {
	int sock;
	struct ivshmem_msg_reader reader;
	int64_t id;
	int shm_fd;
	void *base;
	uint64_t size;
	struct ivrdma_region region;
	int own[IVRDMA_MAX_VECTORS];
	unsigned int nr_own;
};

/* 1: a message; 0: EOF; -ETIMEDOUT; -errno. */
int raw_recv(struct raw_client *c, int timeout_ms, int64_t *value, int *fd);

/* True when nothing arrives within timeout_ms. */
bool raw_quiet(struct raw_client *c, int timeout_ms);

bool fd_is_eventfd(int fd);
uint64_t eventfd_drain(int fd);
void eventfd_ring(int fd);

void raw_close(struct raw_client *c);

#endif
