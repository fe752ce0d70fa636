// SPDX-License-Identifier: MIT
/*
 * ivrdmad's rejoin socket (cm-daemon/rejoin.c) driven by clients that do
 * anything: connect to DIR/rejoin.sock or DIR/host.sock, send rejoin
 * messages right or wrong (peer, generation, vector count, magic, how
 * many fds and of what kind), raw bytes, close, read what the daemon sent,
 * with the daemon's loop turning in between, orphans' time to rejoin
 * running out and their processes exiting. Every input starts with ORPHANS peers of an adopted
 * region waiting to rejoin, all of this process (SO_PEERCRED sees my pid).
 *
 * After every input: once all clients are closed, the loop has turned
 * and the orphans left have exited, no peer is left (in the
 * daemon or the region's peer table) and no file descriptor is leaked.
 *
 * Input: a script, one byte per step (op in the low 3 bits, client in the
 * next 2, an argument in the top 3), some steps followed by their bytes.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "fuzz_image.h"
#include "ivrdma_rejoin.h"
#include "ivshmem_msg.h"
#include "log.h"
#include "shm_atomic.h"

#define CLIENTS 4
#define ORPHANS 2

enum op {
	OP_CONNECT_REJOIN,
	OP_CONNECT_HOST,
	OP_SEND_REJOIN, /* 3 bytes follow: peer, generation, vectors; arg: fds and their kind */
	OP_SEND_RAW,	/* a length byte and that many bytes (at most 15) follow */
	OP_CLOSE,
	OP_READ,
	OP_TURN,
	OP_EXPIRE /* the orphans' time runs out, then their processes exit */
};

struct client {
	int sock;
	struct ivshmem_msg_reader reader;
};

static struct daemon d;
static struct client clients[CLIENTS];
static char dir[64];
static int baseline_fds;

static void stop(void)
{
	rejoin_close(&d);
	server_close(&d);
	contexts_free(&d);
	region_store_destroy(&d.store);
	rmdir(dir);
}

static void start(void)
{
	static char shm[64];
	const char *why;

	log_set_level(LOG_ERROR);
	snprintf(dir, sizeof(dir), "/tmp/ivrdma-fuzz-XXXXXX");
	snprintf(shm, sizeof(shm), "/ivrdma-fuzz-rj-%d", (int)getpid());
	if (!mkdtemp(dir))
		abort();
	d.cfg = (struct daemon_config){.dir = dir,
				       .shm_name = shm,
				       .region_size = IVRDMA_MIN_REGION_SIZE,
				       .nr_vectors = IVRDMA_MIN_VECTORS,
				       .max_peers = 8,
				       .chunk_shift = IVRDMA_DEFAULT_CHUNK_SHIFT,
				       .subnet_prefix = 0xfd00000000000001ull,
				       .socket_mode = 0600,
				       .rejoin_grace_ms = 3600 * 1000};
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	d.store.fd = d.reserve_fd = d.ctl.w.fd = -1;
	if (d.epfd < 0 || region_store_create(&d.store, &d.cfg) ||
	    region_format(&d.store, &d.cfg) ||
	    ivrdma_region_open(&d.region, d.store.base, d.store.size, &why))
		abort();
	shm_unlink(d.store.path);
	directory_init(&d);
	if (server_open(&d) || rejoin_open(&d))
		abort();
	atexit(stop);
	for (int i = 0; i < CLIENTS; i++)
		clients[i].sock = -1;
	baseline_fds = fuzz_protocol_fds(false);
}

/* Peers 0..ORPHANS-1 as an adopted region leaves them: ACTIVE, mine, a new generation. */
static void make_orphans(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	for (uint16_t id = 0; id < ORPHANS; id++) {
		struct ivrdma_peer *e = ivrdma_region_peer(&d.region, id);

		if (++d.peer_gen[id] == 0)
			d.peer_gen[id] = 1;
		memset(e, 0, sizeof(*e));
		e->gen = d.peer_gen[id];
		e->pid = (uint32_t)getpid();
		e->joined_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		shm_store_release32(&e->state, IVRDMA_PEER_ACTIVE);
		if (server_add_orphan(&d, id))
			abort();
	}
	d.next_peer_id = ORPHANS;
}

static void client_connect(struct client *c, const char *name)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (c->sock >= 0)
		return;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, name);
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->sock < 0)
		abort();
	ivshmem_msg_reader_init(&c->reader);
	if (connect(c->sock, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(c->sock);
		c->sock = -1;
	}
}

/* A rejoin message from 3 input bytes; arg: 0..5 fds, bit 2 of arg: /dev/null, not eventfds. */
static size_t send_rejoin(struct client *c, uint8_t arg, const uint8_t *p, size_t len)
{
	struct ivrdma_rejoin_msg m = {.magic = IVRDMA_REJOIN_MAGIC};
	int fds[8], nfds = arg & 3 ? (arg & 3) + 2 : 0; /* 0, 3, 4, 5 */
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (len < 3)
		return len;
	m.peer_id = p[0] % 4;
	/* Odd: the peer's own generation; even: whatever the byte says. */
	m.gen = p[1] & 1 ? d.peer_gen[m.peer_id] : p[1];
	m.nr_vectors = p[2] & 7;
	if (p[2] & 8)
		m.magic ^= 1;
	for (int i = 0; i < nfds; i++)
		fds[i] =
		    arg & 4 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : eventfd(0, EFD_CLOEXEC);
	if (nfds) {
		struct cmsghdr *h;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
	}
	if (c->sock >= 0)
		sendmsg(c->sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return 3;
}

static size_t send_raw(struct client *c, const uint8_t *p, size_t len)
{
	size_t n = len ? 1 + p[0] % 16 : 0;

	if (n > len)
		n = len;
	if (c->sock >= 0 && n > 1)
		send(c->sock, p + 1, n - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n;
}

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

/*
 * Their time runs out (reported on the next turn), then their processes
 * exit as ivrdmad sees it (its pidfd watch dooms them; mine never exits).
 */
static void expire_orphans(void)
{
	for (uint32_t i = 0; i < d.cfg.max_peers; i++)
		if (d.peers[i] && d.peers[i]->orphan)
			d.peers[i]->rejoin_deadline_ms = 0;
	loop_turn(&d, 0);
	for (uint32_t i = 0; i < d.cfg.max_peers; i++) {
		struct peer *p = d.peers[i];

		if (p && p->orphan && !p->doomed) {
			p->doomed = true;
			p->doom_reason = "its process exited before it rejoined";
		}
	}
}

static size_t step(const uint8_t *p, size_t len)
{
	struct client *c = &clients[p[0] >> 3 & (CLIENTS - 1)];
	uint8_t arg = p[0] >> 5;
	size_t used = 0;

	switch ((enum op)(p[0] & 7)) {
	case OP_CONNECT_REJOIN:
		client_connect(c, IVRDMA_REJOIN_SOCK);
		break;
	case OP_CONNECT_HOST:
		client_connect(c, "host.sock");
		break;
	case OP_SEND_REJOIN:
		used = send_rejoin(c, arg, p + 1, len - 1);
		break;
	case OP_SEND_RAW:
		used = send_raw(c, p + 1, len - 1);
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
	case OP_EXPIRE:
		expire_orphans();
		break;
	}
	return 1 + used;
}

static void check_quiet(void)
{
	for (int i = 0; i < CLIENTS; i++)
		client_close(&clients[i]);
	for (int i = 0; i < 4; i++)
		loop_turn(&d, 0);
	expire_orphans();
	for (int i = 0; i < 2; i++)
		loop_turn(&d, 0);
	if (d.nr_peers != 0 || d.nr_orphans != 0)
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
	make_orphans();
	while (at < size)
		at += step(data + at, size - at);
	check_quiet();
	return 0;
}
