// SPDX-License-Identifier: MIT
/*
 * ivrdmad's side of the ivshmem protocol (cm-daemon/server.c) driven by
 * clients that do anything: connect to the host's or a VM's socket, send
 * bytes (with or without a file descriptor), half-close, close, read what
 * the daemon sent them (ivshmem_msg_recv, as the host transport does), in
 * any order, with the daemon's loop turning in between (loop_turn, as
 * ivrdmad's main loop). Clients never send anything, so any byte must
 * disconnect its sender, and only it.
 *
 * After every input: once all clients are closed and the loop has
 * turned, no peer is left (in the daemon or the region's peer table) and
 * no file descriptor is leaked.
 *
 * Input: a script, one byte per step (op in the low 3 bits, client in the
 * next 2), some steps followed by their bytes.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "fuzz_image.h"
#include "ivshmem_msg.h"
#include "log.h"

#define CLIENTS 4

enum op {
	OP_CONNECT_HOST,
	OP_CONNECT_VM,
	OP_SEND,
	OP_SEND_FD,
	OP_SHUT,
	OP_CLOSE,
	OP_READ,
	OP_TURN
};

struct client {
	int sock;
	struct ivshmem_msg_reader reader;
};

static struct daemon d;
static struct client clients[CLIENTS];
static char dir[64];
static int baseline_fds; /* sockets and eventfds open between runs: the listeners */

static void stop(void)
{
	server_close(&d);
	contexts_free(&d);
	region_store_destroy(&d.store);
	rmdir(dir);
}

/* ivrdmad's start(), in a private directory and shm object, quiet. */
static void start(void)
{
	static char shm[64];
	const char *why;

	log_set_level(LOG_ERROR);
	snprintf(dir, sizeof(dir), "/tmp/ivrdma-fuzz-XXXXXX");
	snprintf(shm, sizeof(shm), "/ivrdma-fuzz-%d", (int)getpid());
	if (!mkdtemp(dir))
		abort();
	d.cfg = (struct daemon_config){.dir = dir,
				       .shm_name = shm,
				       .region_size = IVRDMA_MIN_REGION_SIZE,
				       .nr_vectors = IVRDMA_MIN_VECTORS,
				       .max_peers = 8,
				       .chunk_shift = IVRDMA_DEFAULT_CHUNK_SHIFT,
				       .subnet_prefix = 0xfd00000000000001ull,
				       .nr_vms = 1,
				       .socket_mode = 0600};
	strcpy(d.cfg.vms[0].name, "vm1");
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	d.store.fd = d.reserve_fd = d.ctl.w.fd = -1;
	if (d.epfd < 0 || region_store_create(&d.store, &d.cfg) ||
	    region_format(&d.store, &d.cfg) ||
	    ivrdma_region_open(&d.region, d.store.base, d.store.size, &why))
		abort();
	shm_unlink(d.store.path); /* clients get the fd: no name left behind by a crash */
	directory_init(&d);
	if (server_open(&d))
		abort();
	atexit(stop);
	for (int i = 0; i < CLIENTS; i++)
		clients[i].sock = -1;
	baseline_fds = fuzz_protocol_fds(false);
}

static void client_connect(struct client *c, const char *name)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (c->sock >= 0)
		return;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s.sock", dir, name);
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->sock < 0)
		abort();
	ivshmem_msg_reader_init(&c->reader);
	if (connect(c->sock, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(c->sock);
		c->sock = -1;
	}
}

/* Sends up to 'len' bytes, one fd attached if fd >= 0; returns the bytes it used. */
static size_t client_send(struct client *c, const uint8_t *p, size_t len, int fd)
{
	size_t n = len ? 1 + p[0] % 16 : 0;

	if (n > len)
		n = len;
	if (c->sock < 0 || n == 0)
		return n;
	if (fd < 0)
		send(c->sock, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	else
		ivshmem_msg_send(c->sock, (int64_t)p[0], fd); /* 8 bytes and an fd */
	return n;
}

/* Reads every whole message the daemon sent, as the host transport would. */
static void client_read(struct client *c)
{
	int64_t value;
	int fd;

	while (c->sock >= 0 && ivshmem_msg_recv(c->sock, &c->reader, &value, &fd) == 1)
		if (fd >= 0)
			close(fd);
}

static void client_close(struct client *c)
{
	if (c->sock < 0)
		return;
	close(c->sock);
	c->sock = -1;
	ivshmem_msg_reader_reset(&c->reader);
}

/* One step of the script; returns the input bytes it used. */
static size_t step(const uint8_t *p, size_t len)
{
	struct client *c = &clients[p[0] >> 3 & (CLIENTS - 1)];
	int efd;
	size_t used = 0;

	switch ((enum op)(p[0] & 7)) {
	case OP_CONNECT_HOST:
		client_connect(c, "host");
		break;
	case OP_CONNECT_VM:
		client_connect(c, "vm1");
		break;
	case OP_SEND:
		used = client_send(c, p + 1, len - 1, -1);
		break;
	case OP_SEND_FD:
		efd = eventfd(0, EFD_CLOEXEC);
		used = client_send(c, p + 1, len - 1, efd);
		close(efd);
		break;
	case OP_SHUT:
		if (c->sock >= 0)
			shutdown(c->sock, SHUT_WR);
		break;
	case OP_CLOSE:
		client_close(c);
		break;
	case OP_READ:
		client_read(c);
		break;
	case OP_TURN:
		loop_turn(&d, 0);
		break;
	}
	return 1 + used;
}

/* Everyone gone: the daemon must have let go of every peer and fd. */
static void check_quiet(void)
{
	for (int i = 0; i < CLIENTS; i++)
		client_close(&clients[i]);
	for (int i = 0; i < 4; i++)
		loop_turn(&d, 0);
	if (d.nr_peers != 0)
		abort();
	for (uint32_t i = 0; i < d.cfg.max_peers; i++)
		if (d.peers[i] || ivrdma_region_peer(&d.region, i)->state != IVRDMA_PEER_FREE)
			abort();
	if (fuzz_protocol_fds(false) != baseline_fds)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool started;
	size_t at = 0;

	if (!started) {
		start();
		started = true;
	}
	while (at < size)
		at += step(data + at, size - at);
	check_quiet();
	return 0;
}
