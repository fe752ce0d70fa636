// SPDX-License-Identifier: MIT
/*
 * The host transport's side of the ivshmem protocol
 * (ivshmem-transport/host.c): what a host process reads from ivrdmad's
 * socket, from a server that sends anything. A thread plays the server:
 * it accepts, sends the input's messages (values with no fd, an eventfd,
 * the region's memfd or a memfd holding no region, or stray bytes that
 * split messages) and closes. The client attaches (ivt_attach), then
 * drains the rest (ivt_process_control), rings every peer it knows and
 * detaches: errors are fine, a fault, a hang or a leaked fd is not.
 *
 * Input: messages, each a kind byte (low 3 bits: enum kind) and a
 * little-endian int16 value.
 */
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "fuzz_image.h"
#include "ivshmem_msg.h"
#include "ivshmem_transport.h"

enum kind { PLAIN, EVENTFD, REGION, NOT_A_REGION, STRAY_BYTES };

static char dir[64], path[96];
static int listener = -1, region_fd = -1, empty_fd = -1;
static int baseline_fds;
static pthread_t server;

struct script {
	const uint8_t *data;
	size_t size;
};

/* A region as ivrdmad formats it, in a memfd; and a memfd with nothing in it. */
static void make_regions(void)
{
	struct daemon_config cfg = {.region_size = IVRDMA_MIN_REGION_SIZE,
				    .nr_vectors = IVRDMA_MIN_VECTORS,
				    .max_peers = 64,
				    .chunk_shift = IVRDMA_DEFAULT_CHUNK_SHIFT,
				    .subnet_prefix = 0xfd00000000000001ull};
	struct region_store s = {.fd = -1, .size = cfg.region_size};

	region_fd = memfd_create("ivrdma-fuzz-region", MFD_CLOEXEC);
	empty_fd = memfd_create("ivrdma-fuzz-empty", MFD_CLOEXEC);
	if (region_fd < 0 || empty_fd < 0 || ftruncate(region_fd, (off_t)cfg.region_size) ||
	    ftruncate(empty_fd, 4096))
		abort();
	s.base = mmap(NULL, cfg.region_size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0);
	if (s.base == MAP_FAILED || region_format(&s, &cfg))
		abort();
	munmap(s.base, cfg.region_size);
}

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

/* One message of the script, as the server sends it. */
static void send_one(int sock, uint8_t kind, int16_t value)
{
	int fd = -1;

	switch ((enum kind)(kind % 5)) {
	case PLAIN:
		break;
	case EVENTFD:
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		break;
	case REGION:
		fd = dup(region_fd);
		break;
	case NOT_A_REGION:
		fd = dup(empty_fd);
		break;
	case STRAY_BYTES:
		send(sock, &value, 1 + (uint16_t)value % 2, MSG_NOSIGNAL | MSG_DONTWAIT);
		return;
	}
	ivshmem_msg_send(sock, value, fd);
	if (fd >= 0)
		close(fd);
}

/*
 * The server thread lives as long as the process (a thread per input
 * would make libFuzzer check for leaks after every run): it serves one
 * connection per script handed to it.
 */
static struct script script;
static sem_t script_ready, script_done;

static void serve_one(const struct script *s)
{
	int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);

	if (sock < 0)
		abort();
	for (size_t at = 0; at + 3 <= s->size; at += 3) {
		int16_t value;

		memcpy(&value, s->data + at + 1, sizeof(value));
		send_one(sock, s->data[at], value);
	}
	close(sock);
}

static void *serve(void *arg)
{
	for (;;) {
		while (sem_wait(&script_ready))
			continue;
		serve_one(&script);
		sem_post(&script_done);
	}
	return NULL;
}

static void start(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ivrdma-fuzz-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/host.sock", dir);
	listener = unix_listen(path, 0600);
	/* The server thread waits in accept for the client's connect. */
	if (listener < 0 || fcntl(listener, F_SETFL, 0))
		abort();
	atexit(cleanup);
	make_regions();
	if (sem_init(&script_ready, 0, 0) || sem_init(&script_done, 0, 0) ||
	    pthread_create(&server, NULL, serve, NULL))
		abort();
	baseline_fds = fuzz_protocol_fds(true);
}

/* What a context does with a transport: notices, doorbells, then detach. */
static void use(struct ivt *t)
{
	while (ivt_process_control(t) > 0)
		continue;
	for (uint16_t peer = 0; peer < IVRDMA_MAX_PEERS; peer++)
		if (ivt_peer_known(t, peer))
			ivt_ring(t, peer, IVRDMA_VEC_CONTROL);
	ivt_consume(t, IVRDMA_VEC_CONTROL);
	ivt_detach(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ivt_options opts = {.backend = IVT_BACKEND_HOST, .path = path, .timeout_ms = 2000};
	struct ivt *t;
	char err[256];

	if (listener < 0)
		start();
	script = (struct script){data, size};
	sem_post(&script_ready);
	if (ivt_attach(&opts, &t, err, sizeof(err)) == 0)
		use(t);
	while (sem_wait(&script_done))
		continue;
	if (fuzz_protocol_fds(true) != baseline_fds)
		abort();
	return 0;
}
