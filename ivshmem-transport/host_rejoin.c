// SPDX-License-Identifier: MIT
/*
 * Rejoining a restarted ivrdmad (common/ivrdma_rejoin.h).
 *
 * While ivrdmad is away the peer table stays as it was: the eventfds
 * outlive the daemon, so the processes attached keep ringing each other.
 * The rejoin builds a new table from the new daemon's handshake and swaps
 * it in under the lock. A peer the handshake does not list but whose
 * entry in the region is still ACTIVE is waiting to rejoin too: it stays,
 * and the daemon later sends its vectors (dropped as excess: they are
 * the same eventfds) or its departure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host_internal.h"
#include "ivrdma_rejoin.h"
#include "region.h"
#include "shm_atomic.h"

#define REJOIN_ANSWER_MS 2000

int host_rejoin_path(struct host_priv *h, const char *attach_path)
{
	const char *slash = strrchr(attach_path, '/');
	size_t dir = slash ? (size_t)(slash - attach_path) : 1;
	const char *d = slash ? attach_path : ".";

	if (dir + 1 + strlen(IVRDMA_REJOIN_SOCK) >= sizeof(h->rejoin_path))
		return -ENAMETOOLONG;
	memcpy(h->rejoin_path, d, dir);
	h->rejoin_path[dir] = '/';
	strcpy(h->rejoin_path + dir + 1, IVRDMA_REJOIN_SOCK);
	return 0;
}

/* My peer entry's state and generation; false once it is not ACTIVE. */
static bool my_entry(const struct ivt *t, const struct ivrdma_region *r, uint16_t *gen)
{
	const struct ivrdma_peer *e = ivrdma_region_peer(r, (uint32_t)t->peer_id);

	if (!e || shm_load_acquire32(&e->state) != IVRDMA_PEER_ACTIVE)
		return false;
	*gen = shm_load_relaxed16(&e->gen);
	return true;
}

static int send_rejoin(struct ivt *t, int sock, uint16_t gen)
{
	struct ivrdma_rejoin_msg m = {.magic = IVRDMA_REJOIN_MAGIC,
				      .peer_id = (uint16_t)t->peer_id,
				      .gen = gen,
				      .nr_vectors = t->nr_vectors};
	union {
		char buf[CMSG_SPACE(sizeof(int) * IVRDMA_MAX_VECTORS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = CMSG_SPACE(sizeof(int) * t->nr_vectors)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	memset(&ctl, 0, sizeof(ctl));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * t->nr_vectors);
	memcpy(CMSG_DATA(c), t->vector_fds, sizeof(int) * t->nr_vectors);
	/* 16 bytes into an empty socket buffer: all of it, or nothing. */
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(m))
		return -errno;
	return 0;
}

static void free_table(struct host_peer **table)
{
	for (uint32_t i = 0; i < IVRDMA_MAX_PEERS; i++)
		if (table[i])
			host_close_peer(table[i]);
}

/* One peer message of the handshake into 'table' (excess and junk dropped). */
static void collect(struct ivt *t, struct host_peer **table, int64_t v, int fd)
{
	struct host_peer *p;

	if (fd < 0)
		return;
	if (v < 0 || v >= IVRDMA_MAX_PEERS) {
		close(fd);
		return;
	}
	p = table[v] ? table[v] : (table[v] = calloc(1, sizeof(*p)));
	if (!p || p->nr_fds >= t->nr_vectors) {
		close(fd);
		return;
	}
	p->fds[p->nr_fds++] = fd;
}

/* The join sequence again, for my same peer ID; the region fd is the one I have. */
static int handshake(struct ivt *t, int sock, struct ivshmem_msg_reader *rd,
		     struct host_peer **table)
{
	int64_t deadline = host_now_ms() + REJOIN_ANSWER_MS, v;
	int fd, rc;

	for (int step = 0;; step++) {
		struct host_peer *me = table[t->peer_id];

		if (me && me->nr_fds == t->nr_vectors)
			return 0;
		rc = host_recv_until(sock, rd, deadline, &v, &fd);
		/* Closed unanswered, or no answer yet: an ivrdmad on its way out or stuck. */
		if (rc == -ECONNRESET || rc == -ETIMEDOUT)
			return -EAGAIN;
		if (rc)
			return rc;
		if (step == 0 && v == IVRDMA_REJOIN_REFUSED && fd < 0)
			return -EPERM;
		if (step < 3) {
			bool ok = step == 0   ? v == IVSHMEM_PROTOCOL_VERSION && fd < 0
				  : step == 1 ? v == t->peer_id && fd < 0
					      : v == IVSHMEM_MSG_SHM && fd >= 0;

			if (fd >= 0)
				close(fd);
			if (!ok)
				return -EPROTO;
			continue;
		}
		collect(t, table, v, fd);
	}
}

/* Whom the swap brought or took, to be told after the locks are dropped. */
struct news {
	uint16_t joined[IVRDMA_MAX_PEERS], left[IVRDMA_MAX_PEERS];
	uint32_t nr_joined, nr_left;
};

static void swap_peer(struct ivt *t, const struct ivrdma_region *r, uint16_t id,
		      struct host_peer *fresh, struct news *n)
{
	struct host_priv *h = t->priv;
	struct host_peer *old = h->peers[id];
	const struct ivrdma_peer *e = ivrdma_region_peer(r, id);
	bool old_whole = old && old->nr_fds == t->nr_vectors;

	if (fresh && fresh->nr_fds != t->nr_vectors) {
		host_close_peer(fresh);
		fresh = NULL;
	}
	if (fresh) {
		h->peers[id] = fresh;
		if (old)
			host_close_peer(old);
		if (!old_whole)
			n->joined[n->nr_joined++] = id;
	} else if (old && (!e || shm_load_acquire32(&e->state) != IVRDMA_PEER_ACTIVE)) {
		h->peers[id] = NULL;
		host_close_peer(old);
		if (old_whole)
			n->left[n->nr_left++] = id;
	}
}

static void swap_in(struct ivt *t, const struct ivrdma_region *r, int sock,
		    const struct ivshmem_msg_reader *rd, struct host_peer **table)
{
	struct host_priv *h = t->priv;
	struct news n = {.nr_joined = 0};
	int old_sock;

	pthread_mutex_lock(&h->ctl_lock);
	pthread_mutex_lock(&h->lock);
	for (uint32_t id = 0; id < IVRDMA_MAX_PEERS; id++) {
		/* My own vectors are the ones I poll: keep them, drop the copies. */
		if (id == (uint32_t)t->peer_id) {
			if (table[id])
				host_close_peer(table[id]);
			continue;
		}
		swap_peer(t, r, (uint16_t)id, table[id], &n);
	}
	old_sock = h->sock;
	h->sock = sock;
	t->control_fd = sock;
	ivshmem_msg_reader_reset(&h->reader);
	h->reader = *rd;
	pthread_mutex_unlock(&h->lock);
	pthread_mutex_unlock(&h->ctl_lock);
	close(old_sock);
	for (uint32_t i = 0; i < n.nr_left; i++)
		host_notify(t, n.left[i], IVT_PEER_LEFT);
	for (uint32_t i = 0; i < n.nr_joined; i++)
		host_notify(t, n.joined[i], IVT_PEER_JOINED);
}

int host_reconnect(struct ivt *t)
{
	struct host_priv *h = t->priv;
	struct host_peer *table[IVRDMA_MAX_PEERS] = {NULL};
	struct ivshmem_msg_reader rd;
	struct ivrdma_region r;
	const char *why;
	uint16_t gen;
	int sock, rc;

	if (ivrdma_region_open(&r, t->base, t->size, &why) || !my_entry(t, &r, &gen))
		return -ESTALE;
	sock = host_connect(h->rejoin_path, NULL, 0);
	if (sock == -ENOENT || sock == -ECONNREFUSED || sock == -EAGAIN)
		return -EAGAIN;
	if (sock < 0)
		return sock;
	ivshmem_msg_reader_init(&rd);
	rc = send_rejoin(t, sock, gen);
	if (!rc)
		rc = handshake(t, sock, &rd, table);
	if (rc) {
		free_table(table);
		ivshmem_msg_reader_reset(&rd);
		close(sock);
		return rc == -EPIPE || rc == -ECONNRESET ? -EAGAIN : rc;
	}
	swap_in(t, &r, sock, &rd, table);
	return 0;
}
