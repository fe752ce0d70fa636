// SPDX-License-Identifier: MIT
/*
 * Host backend: a client of ivrdmad's socket, speaking exactly what QEMU's
 * ivshmem-doorbell device speaks, so a host process is one more peer.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "host_internal.h"
#include "ivshmem_msg.h"
#include "sys_mm.h"

int64_t host_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int host_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int sock, rc;

	if (strlen(path) >= sizeof(sun.sun_path))
		return ivt_fail(err, errlen, -ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(sun.sun_path, path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0)
		return ivt_fail(err, errlen, -errno, "socket: %s", strerror(errno));
	if (connect(sock, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = -errno;
		close(sock);
		return ivt_fail(err, errlen, rc, "cannot connect to ivrdmad at %s: %s", path,
				strerror(-rc));
	}
	return sock;
}

int host_recv_until(int sock, struct ivshmem_msg_reader *reader, int64_t deadline, int64_t *value,
		    int *fd)
{
	for (;;) {
		struct pollfd pfd = {.fd = sock, .events = POLLIN};
		int64_t left = deadline - host_now_ms();
		int rc = ivshmem_msg_recv(sock, reader, value, fd);

		if (rc == 1)
			return 0;
		if (rc == 0)
			return -ECONNRESET;
		if (rc != -EAGAIN)
			return rc;
		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

void host_close_peer(struct host_peer *p)
{
	for (unsigned int i = 0; i < p->nr_fds; i++)
		close(p->fds[i]);
	free(p);
}

void host_notify(struct ivt *t, uint16_t peer, enum ivt_peer_event ev)
{
	if (t->on_peer)
		t->on_peer(t->cb_arg, peer, ev);
}

/*
 * Applies one peer message. Unknown or excess input from the server is
 * dropped (fd closed) rather than trusted.
 */
static void apply_peer_msg(struct ivt *t, int64_t value, int fd)
{
	struct host_priv *h = t->priv;
	struct host_peer *p;
	uint16_t id;

	/* My own vectors never go away while I am attached. */
	if (value < 0 || value >= IVRDMA_MAX_PEERS || (fd < 0 && value == t->peer_id)) {
		if (fd >= 0)
			close(fd);
		return;
	}
	id = (uint16_t)value;
	pthread_mutex_lock(&h->lock);
	p = h->peers[id];
	if (fd < 0) {
		/*
		 * ivrdmad drops a departed peer's vectors still queued for us, so
		 * a peer may leave before it was ever whole: then it never joined.
		 */
		bool joined = p && p->nr_fds == t->nr_vectors;

		h->peers[id] = NULL;
		pthread_mutex_unlock(&h->lock);
		if (p)
			host_close_peer(p);
		if (joined)
			host_notify(t, id, IVT_PEER_LEFT);
		return;
	}
	if (!p)
		p = h->peers[id] = calloc(1, sizeof(*p));
	if (!p || p->nr_fds >= t->nr_vectors) {
		pthread_mutex_unlock(&h->lock);
		close(fd);
		return;
	}
	p->fds[p->nr_fds++] = fd;
	if (id == t->peer_id)
		t->vector_fds[p->nr_fds - 1] = fd;
	pthread_mutex_unlock(&h->lock);
	if (p->nr_fds == t->nr_vectors && id != t->peer_id)
		host_notify(t, id, IVT_PEER_JOINED);
}

static int map_region(struct ivt *t, int fd, char *err, size_t errlen)
{
	struct stat st;
	void *base;
	int rc;

	if (fstat(fd, &st) < 0)
		return ivt_fail(err, errlen, -errno, "fstat on the region: %s", strerror(errno));
	if (st.st_size <= 0)
		return ivt_fail(err, errlen, -EPROTO, "region has no size");
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return ivt_fail(err, errlen, -errno, "mmap of the region: %s", strerror(errno));
	rc = ivt_read_nr_vectors(base, (uint64_t)st.st_size, &t->nr_vectors, err, errlen);
	if (rc) {
		munmap(base, (size_t)st.st_size);
		return rc;
	}
	t->base = base;
	t->size = (uint64_t)st.st_size;
	return 0;
}

/* Version, my ID, the region: the fixed opening of the protocol. */
static int handshake_opening(struct ivt *t, int64_t deadline, char *err, size_t errlen)
{
	struct host_priv *h = t->priv;
	int64_t v;
	int fd, rc;

	rc = host_recv_until(h->sock, &h->reader, deadline, &v, &fd);
	if (rc)
		return ivt_fail(err, errlen, rc, "no protocol version from ivrdmad: %s",
				strerror(-rc));
	if (fd >= 0)
		close(fd);
	if (v != IVSHMEM_PROTOCOL_VERSION || fd >= 0)
		return ivt_fail(err, errlen, -EPROTO, "unsupported ivshmem protocol version %lld",
				(long long)v);
	rc = host_recv_until(h->sock, &h->reader, deadline, &v, &fd);
	if (rc)
		return ivt_fail(err, errlen, rc, "no peer ID from ivrdmad: %s", strerror(-rc));
	if (fd >= 0)
		close(fd);
	if (v < 0 || v >= IVRDMA_MAX_PEERS || fd >= 0)
		return ivt_fail(err, errlen, -EPROTO, "bad peer ID %lld", (long long)v);
	t->peer_id = (int)v;
	rc = host_recv_until(h->sock, &h->reader, deadline, &v, &fd);
	if (rc)
		return ivt_fail(err, errlen, rc, "no shared memory from ivrdmad: %s",
				strerror(-rc));
	if (v != IVSHMEM_MSG_SHM || fd < 0) {
		if (fd >= 0)
			close(fd);
		return ivt_fail(err, errlen, -EPROTO, "expected the shared memory fd");
	}
	h->shm_fd = fd;
	return map_region(t, fd, err, errlen);
}

static bool own_vectors_complete(struct ivt *t)
{
	struct host_priv *h = t->priv;
	struct host_peer *me = h->peers[t->peer_id];

	return me && me->nr_fds == t->nr_vectors;
}

static void host_detach(struct ivt *t);

static int host_attach(struct ivt *t, const struct ivt_options *opts, char *err, size_t errlen)
{
	int64_t deadline = host_now_ms() + (opts->timeout_ms > 0 ? opts->timeout_ms : 5000);
	struct host_priv *h = calloc(1, sizeof(*h));
	int rc;

	if (!h)
		return ivt_fail(err, errlen, -ENOMEM, "out of memory");
	h->shm_fd = -1;
	ivshmem_msg_reader_init(&h->reader);
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->ctl_lock, NULL);
	t->priv = h;
	rc = host_rejoin_path(h, opts->path);
	if (rc) {
		ivt_fail(err, errlen, rc, "socket path too long: %s", opts->path);
		goto fail;
	}
	h->sock = host_connect(opts->path, err, errlen);
	if (h->sock < 0) {
		rc = h->sock;
		goto fail;
	}
	t->control_fd = h->sock;
	rc = handshake_opening(t, deadline, err, errlen);
	if (rc)
		goto fail;
	/* Every other peer's vectors come first, mine last: wait for mine. */
	while (!own_vectors_complete(t)) {
		int64_t v;
		int fd;

		rc = host_recv_until(h->sock, &h->reader, deadline, &v, &fd);
		if (rc) {
			ivt_fail(err, errlen, rc, "handshake with ivrdmad did not complete: %s",
				 strerror(-rc));
			goto fail;
		}
		apply_peer_msg(t, v, fd);
	}
	return 0;
fail:
	host_detach(t);
	return rc;
}

static void host_detach(struct ivt *t)
{
	struct host_priv *h = t->priv;

	if (!h)
		return;
	for (uint32_t i = 0; i < IVRDMA_MAX_PEERS; i++)
		if (h->peers[i])
			host_close_peer(h->peers[i]);
	if (t->base)
		munmap(t->base, t->size);
	if (h->shm_fd >= 0)
		close(h->shm_fd);
	if (h->sock >= 0)
		close(h->sock);
	ivshmem_msg_reader_reset(&h->reader);
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->ctl_lock);
	free(h);
	t->priv = NULL;
}

static int host_map_at(struct ivt *t, void *addr, uint64_t offset, size_t len, int prot)
{
	struct host_priv *h = t->priv;
	void *p = ivrdma_sys_mmap(addr, len, prot, MAP_SHARED | MAP_FIXED | MAP_POPULATE, h->shm_fd,
				  (off_t)offset);

	return p == MAP_FAILED ? -errno : 0;
}

static int ring_known(struct host_priv *h, uint16_t peer, uint16_t vector)
{
	uint64_t one = 1;
	struct host_peer *p;
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	p = peer < IVRDMA_MAX_PEERS ? h->peers[peer] : NULL;
	if (!p || vector >= p->nr_fds) {
		rc = -ENOENT;
	} else if (write(p->fds[vector], &one, sizeof(one)) < 0 && errno != EAGAIN) {
		/* EAGAIN: the counter is saturated, the sleeper is woken anyway */
		rc = -errno;
	}
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static int host_process_control(struct ivt *t);

/*
 * A peer I have not heard of may have joined after my last look at the
 * socket (the thread that drains it can be late): its notice is there
 * before it can have reached me any other way, so read it, then retry.
 */
static int host_ring(struct ivt *t, uint16_t peer, uint16_t vector)
{
	int rc = ring_known(t->priv, peer, vector);

	if (rc != -ENOENT)
		return rc;
	/* Even if it read nothing: another thread may have applied the notice meanwhile. */
	host_process_control(t);
	return ring_known(t->priv, peer, vector);
}

static bool host_peer_known(struct ivt *t, uint16_t peer)
{
	struct host_priv *h = t->priv;
	bool known;

	pthread_mutex_lock(&h->lock);
	known =
	    peer < IVRDMA_MAX_PEERS && h->peers[peer] && h->peers[peer]->nr_fds == t->nr_vectors;
	pthread_mutex_unlock(&h->lock);
	return known;
}

static int host_process_control(struct ivt *t)
{
	struct host_priv *h = t->priv;
	int handled = 0;

	pthread_mutex_lock(&h->ctl_lock);
	for (;;) {
		int64_t v;
		int fd;
		int rc = ivshmem_msg_recv(h->sock, &h->reader, &v, &fd);

		if (rc == -EAGAIN) {
			rc = handled;
		} else if (rc <= 0) {
			rc = rc == 0 ? -ECONNRESET : rc;
		} else {
			apply_peer_msg(t, v, fd);
			handled++;
			continue;
		}
		pthread_mutex_unlock(&h->ctl_lock);
		return rc;
	}
}

const struct ivt_backend_ops ivt_host_ops = {
    .name = "host",
    .attach = host_attach,
    .detach = host_detach,
    .map_at = host_map_at,
    .ring = host_ring,
    .peer_known = host_peer_known,
    .process_control = host_process_control,
    .reconnect = host_reconnect,
};
