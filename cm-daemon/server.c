// SPDX-License-Identifier: MIT
/*
 * The ivshmem server protocol, as QEMU's ivshmem-doorbell device expects it
 * (docs/specs/ivshmem-spec.rst), plus what ivrdma adds around it: a node
 * per listening socket, the peer table in the region, reclaim on leave.
 *
 * A client that misbehaves (sends anything, stops reading, runs us out of
 * fds) is disconnected; nothing a client does blocks the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cq_producer.h"
#include "daemon.h"
#include "ivshmem_msg.h"
#include "log.h"
#include "shm_atomic.h"

/*
 * Messages a client may owe us. Eventfds of peers that left are dropped
 * from the queue (see queue_drop_peer), so what stays queued is at most
 * every live peer's vectors plus small leave notices: a client that never
 * reads costs a bounded number of fds, and is dropped once it owes this
 * many messages.
 */
static uint32_t queue_limit(const struct daemon *d)
{
	return 4 * d->cfg.max_peers * d->cfg.nr_vectors + 1024;
}

static void peer_doom(struct peer *p, const char *reason)
{
	if (!p->doomed) {
		p->doomed = true;
		p->doom_reason = reason;
	}
}

static int queue_push(struct peer *p, int64_t value, int fd, uint32_t limit)
{
	struct outmsg *m;

	if (p->q_len >= limit)
		return -ENOBUFS;
	if (p->q_len == p->q_cap) {
		uint32_t cap = p->q_cap ? p->q_cap * 2 : 16;
		struct outmsg *q;

		if (cap > limit)
			cap = limit;
		q = malloc(cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		for (uint32_t i = 0; i < p->q_len; i++)
			q[i] = p->queue[(p->q_head + i) % p->q_cap];
		free(p->queue);
		p->queue = q;
		p->q_cap = cap;
		p->q_head = 0;
	}
	m = &p->queue[(p->q_head + p->q_len) % p->q_cap];
	m->value = value;
	m->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd >= 0 && m->fd < 0)
		return -errno;
	p->q_len++;
	return 0;
}

static void queue_clear(struct peer *p)
{
	for (; p->q_len; p->q_len--, p->q_head = (p->q_head + 1) % p->q_cap)
		if (p->queue[p->q_head].fd >= 0)
			close(p->queue[p->q_head].fd);
	free(p->queue);
	p->queue = NULL;
	p->q_cap = 0;
}

/* A peer left: its eventfds still waiting in p's queue need not go out. */
static void queue_drop_peer(struct peer *p, uint16_t id)
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < p->q_len; i++) {
		struct outmsg m = p->queue[(p->q_head + i) % p->q_cap];

		if (m.fd >= 0 && m.value == id) {
			close(m.fd);
			continue;
		}
		p->queue[(p->q_head + kept++) % p->q_cap] = m;
	}
	p->q_len = kept;
}

/* Sends now, or queues behind what is already waiting, in order. */
static void peer_send(struct daemon *d, struct peer *p, int64_t value, int fd)
{
	int rc = -EAGAIN;

	if (p->doomed || p->orphan) /* an orphan learns everything when it rejoins */
		return;
	if (p->q_len == 0)
		rc = ivshmem_msg_send(p->w.fd, value, fd);
	if (rc == 0)
		return;
	if (rc != -EAGAIN) {
		peer_doom(p, "connection failed while sending");
		return;
	}
	if (queue_push(p, value, fd, queue_limit(d))) {
		peer_doom(p, "does not read its messages (queue full or out of fds)");
		return;
	}
	if (p->q_len == 1)
		loop_mod(d, &p->w, EPOLLIN | EPOLLOUT);
}

static void peer_flush(struct daemon *d, struct peer *p)
{
	while (p->q_len && !p->doomed) {
		struct outmsg *m = &p->queue[p->q_head];
		int rc = ivshmem_msg_send(p->w.fd, m->value, m->fd);

		if (rc == -EAGAIN)
			return;
		if (m->fd >= 0)
			close(m->fd);
		p->q_head = (p->q_head + 1) % p->q_cap;
		p->q_len--;
		if (rc)
			peer_doom(p, "connection failed while sending");
	}
	if (!p->doomed)
		loop_mod(d, &p->w, EPOLLIN);
}

static void peer_send_vectors(struct daemon *d, struct peer *to, const struct peer *of)
{
	if (of->orphan) /* its eventfds went with the ivrdmad before */
		return;
	for (uint32_t v = 0; v < d->cfg.nr_vectors; v++)
		peer_send(d, to, of->id, of->vectors[v]);
}

/* Wakes everyone's control vector: the directory changed. */
void server_ring_control_all(struct daemon *d)
{
	uint64_t one = 1;

	for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
		struct peer *p = d->peers[i];

		if (p && !p->doomed && !p->orphan &&
		    write(p->vectors[IVRDMA_VEC_CONTROL], &one, sizeof(one)) < 0)
			log_debug("peer %u: control doorbell: %s", p->id, strerror(errno));
	}
}

static void on_peer_event(struct daemon *d, struct watch *w, uint32_t events)
{
	struct peer *p = (struct peer *)w;
	char buf[64];

	if (events & EPOLLOUT)
		peer_flush(d, p);
	if (events & EPOLLIN) {
		ssize_t n = recv(p->w.fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0)
			peer_doom(p, "sent data (ivshmem clients never send)");
		else if (n == 0 || errno == ECONNRESET)
			peer_doom(p, "disconnected");
		else if (errno != EAGAIN && errno != EINTR)
			peer_doom(p, "socket error");
	}
	if (events & (EPOLLHUP | EPOLLERR))
		peer_doom(p, "disconnected");
}

/*
 * IDs are handed out in turn, a freed one only after every other: QEMU's
 * ivshmem device frees a departed peer's eventfd array but goes on using it
 * when the same ID connects again (heap corruption in every attached VM).
 * QEMU's own server, counting up, avoids it the same way.
 */
static int next_free_id(struct daemon *d)
{
	for (uint32_t n = 0; n < d->cfg.max_peers; n++) {
		uint32_t i = (d->next_peer_id + n) % d->cfg.max_peers;

		if (!d->peers[i]) {
			d->next_peer_id = i + 1;
			return (int)i;
		}
	}
	return -1;
}

static void peer_free(struct peer *p)
{
	queue_clear(p);
	for (uint32_t v = 0; v < IVRDMA_MAX_VECTORS; v++)
		if (p->vectors[v] >= 0)
			close(p->vectors[v]);
	if (p->w.fd >= 0)
		close(p->w.fd);
	if (p->exit_w.fd >= 0)
		close(p->exit_w.fd);
	free(p);
}

static struct peer *peer_create(struct daemon *d, int sock, uint32_t node, int id)
{
	struct peer *p = calloc(1, sizeof(*p));
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (!p)
		return NULL;
	p->w = (struct watch){.fd = sock, .on_event = on_peer_event};
	p->exit_w.fd = -1;
	p->id = (uint16_t)id;
	p->node = node;
	for (uint32_t v = 0; v < IVRDMA_MAX_VECTORS; v++)
		p->vectors[v] = -1;
	for (uint32_t v = 0; v < d->cfg.nr_vectors; v++) {
		p->vectors[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (p->vectors[v] < 0) {
			log_warn("refusing a client of node %s: no eventfd: %s",
				 directory_node_name(d, node), strerror(errno));
			p->w.fd = -1; /* the caller closes the socket */
			peer_free(p);
			return NULL;
		}
	}
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		p->pid = cred.pid;
	if (++d->peer_gen[id] == 0)
		d->peer_gen[id] = 1;
	p->gen = d->peer_gen[id];
	return p;
}

/* The opening, then everyone's vectors, in the order QEMU's server uses. */
static void peer_introduce(struct daemon *d, struct peer *p)
{
	peer_send(d, p, IVSHMEM_PROTOCOL_VERSION, -1);
	peer_send(d, p, p->id, -1);
	peer_send(d, p, IVSHMEM_MSG_SHM, d->store.fd);
	for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
		struct peer *other = d->peers[i];

		if (!other || other == p)
			continue;
		peer_send_vectors(d, other, p);
		peer_send_vectors(d, p, other);
	}
	peer_send_vectors(d, p, p);
}

static bool node_refuses(struct daemon *d, const struct listener *l)
{
	const char *name = directory_node_name(d, l->node);

	if (d->nr_peers >= d->cfg.max_peers) {
		log_warn("refusing a client of node %s: peer limit %u reached (--max-peers)", name,
			 d->cfg.max_peers);
		return true;
	}
	if (l->node != 0 && d->node_peers[l->node]) {
		log_warn("refusing a second connection for VM %s: it is already attached", name);
		return true;
	}
	return false;
}

static void accept_one(struct daemon *d, struct listener *l)
{
	struct peer *p;
	int sock, id;

	sock = accept4(l->w.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (sock < 0) {
		if (errno == EMFILE || errno == ENFILE)
			shed_connection(d, l->w.fd, l->path);
		return;
	}
	if (node_refuses(d, l) || (id = next_free_id(d)) < 0) {
		close(sock);
		return;
	}
	p = peer_create(d, sock, l->node, id);
	if (!p) {
		close(sock);
		return;
	}
	if (loop_add(d, &p->w, EPOLLIN)) {
		log_warn("refusing peer %d: cannot watch its socket: %s", id, strerror(errno));
		peer_free(p);
		return;
	}
	d->peers[id] = p;
	d->nr_peers++;
	directory_peer_joined(d, p);
	peer_introduce(d, p);
	server_ring_control_all(d);
	log_info("peer %u joined node %s (pid %d, generation %u)", p->id,
		 directory_node_name(d, p->node), (int)p->pid, p->gen);
}

/*
 * Connections are taken after the loop turn's departures are reaped
 * (server_accept_pending), so a peer that left frees its ID and its place
 * under --max-peers for a client that arrives in the same turn.
 */
static void on_accept(struct daemon *d, struct watch *w, uint32_t events)
{
	((struct listener *)w)->pending = true;
}

void server_accept_pending(struct daemon *d)
{
	for (uint32_t i = 0; i < d->nr_listeners; i++) {
		if (d->listeners[i].pending) {
			d->listeners[i].pending = false;
			accept_one(d, &d->listeners[i]);
		}
	}
}

/* A CQ's owner is woken for a completion ivrdmad wrote (ivrdma_cq_settle). */
void server_wake_cq_owner(void *arg, int peer)
{
	struct daemon *d = arg;
	struct peer *p = peer >= 0 && (uint32_t)peer < d->cfg.max_peers ? d->peers[peer] : NULL;
	uint64_t one = 1;

	if (p && !p->doomed && !p->orphan &&
	    write(p->vectors[IVRDMA_VEC_COMPLETION], &one, sizeof(one)) < 0)
		log_debug("peer %u: completion doorbell: %s", p->id, strerror(errno));
}

static void peer_disconnect(struct daemon *d, struct peer *p)
{
	const struct ivrdma_node *node = ivrdma_region_node(&d->region, p->node);
	const struct ivrdma_gone gone = {.peer = p->id};
	struct ivrdma_reclaim_count got;
	uint32_t settled;

	if (p->orphan)
		d->nr_orphans--;
	else
		loop_del(d, &p->w);
	if (p->exit_w.fd >= 0)
		loop_del(d, &p->exit_w);
	d->peers[p->id] = NULL;
	d->nr_peers--;
	/*
	 * Its receive completions under way first, before anyone can see it
	 * gone: a survivor that flushes its receives then flushes them after
	 * the one the dead took, in order.
	 */
	settled =
	    ivrdma_cq_settle(&d->region, &gone, node ? node->lid : 0, server_wake_cq_owner, d);
	directory_peer_left(d, p);
	contexts_peer_gone(d, p->id);
	/* Copies into its chunks that began before it was gone end before they are freed. */
	exec_drain(d, &gone);
	ivrdma_region_reclaim(&d->region, &gone, &got);
	directory_peer_freed(d, p);
	/* The others hear of it once its objects are reclaimed and its entry is free. */
	for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
		if (d->peers[i]) {
			queue_drop_peer(d->peers[i], p->id);
			peer_send(d, d->peers[i], p->id, -1);
		}
	}
	server_ring_control_all(d);
	log_info("peer %u left node %s: %s; reclaimed %u chunks, %u QPs, %u CQs, %u SRQs, %u MRs; "
		 "%u receive completions written for it",
		 p->id, directory_node_name(d, p->node), p->doom_reason, got.chunks, got.qps,
		 got.cqs, got.srqs, got.mrs, settled);
	peer_free(p);
}

void server_reap_doomed(struct daemon *d)
{
	bool again = true;

	/* A disconnect notice can doom another peer: repeat until quiet. */
	while (again) {
		again = false;
		for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
			if (d->peers[i] && d->peers[i]->doomed) {
				peer_disconnect(d, d->peers[i]);
				again = true;
			}
		}
	}
}

static int listener_open(struct daemon *d, struct listener *l, uint32_t node, const char *name)
{
	int n = snprintf(l->path, sizeof(l->path), "%s/%s.sock", d->cfg.dir, name);

	if (n < 0 || (size_t)n >= sizeof(l->path)) {
		log_error("socket path for %s too long", name);
		return -ENAMETOOLONG;
	}
	l->node = node;
	l->w.on_event = on_accept;
	l->w.fd = unix_listen(l->path, d->cfg.socket_mode);
	if (l->w.fd < 0)
		return l->w.fd;
	return loop_add(d, &l->w, EPOLLIN);
}

int server_open(struct daemon *d)
{
	d->nr_listeners = 1 + d->cfg.nr_vms;
	d->listeners = calloc(d->nr_listeners, sizeof(*d->listeners));
	if (!d->listeners)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->nr_listeners; i++)
		d->listeners[i].w.fd = -1;
	d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (uint32_t i = 0; i < d->nr_listeners; i++) {
		const char *name = directory_node_name(d, i);
		int rc = listener_open(d, &d->listeners[i], i, name);

		if (rc)
			return rc;
	}
	return 0;
}

void server_close(struct daemon *d)
{
	for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
		if (d->peers[i]) {
			peer_doom(d->peers[i], "ivrdmad is shutting down");
			peer_disconnect(d, d->peers[i]);
		}
	}
	for (uint32_t i = 0; i < d->nr_listeners; i++) {
		if (d->listeners[i].w.fd >= 0) {
			close(d->listeners[i].w.fd);
			unlink(d->listeners[i].path);
		}
	}
	free(d->listeners);
	d->listeners = NULL;
	if (d->reserve_fd >= 0)
		close(d->reserve_fd);
}

/* An orphan's process exited (its pidfd polls readable): it will never rejoin. */
static void on_orphan_exit(struct daemon *d, struct watch *w, uint32_t events)
{
	struct peer *p = (struct peer *)((char *)w - offsetof(struct peer, exit_w));

	peer_doom(p, "its process exited before it rejoined");
}

/* Watches the orphan's process; one already gone is doomed now. */
static void watch_orphan(struct daemon *d, struct peer *p)
{
	p->exit_w = (struct watch){.fd = -1, .on_event = on_orphan_exit};
	if (!adopt_process_alive(p->pid, p->joined_ns)) {
		peer_doom(p, "its process died while ivrdmad was away");
		return;
	}
	p->exit_w.fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	if (p->exit_w.fd < 0 && errno == ESRCH) {
		peer_doom(p, "its process died while ivrdmad was away");
		return;
	}
	if (p->exit_w.fd < 0 || loop_add(d, &p->exit_w, EPOLLIN)) {
		/* Unwatched, it is reclaimed once it rejoins and leaves, or never. */
		log_warn("peer %u (pid %d): cannot watch its process: %s", p->id, (int)p->pid,
			 strerror(errno));
		if (p->exit_w.fd >= 0)
			close(p->exit_w.fd);
		p->exit_w.fd = -1;
	}
}

int server_add_orphan(struct daemon *d, uint16_t id)
{
	const struct ivrdma_peer *e = ivrdma_region_peer(&d->region, id);
	struct peer *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->w = (struct watch){.fd = -1, .on_event = on_peer_event};
	p->id = id;
	p->gen = shm_load_relaxed16(&e->gen);
	p->node = shm_load_relaxed16(&e->node);
	p->pid = (pid_t)e->pid;
	p->joined_ns = e->joined_ns;
	p->orphan = true;
	p->rejoin_deadline_ms = monotonic_ms() + d->cfg.rejoin_grace_ms;
	for (uint32_t v = 0; v < IVRDMA_MAX_VECTORS; v++)
		p->vectors[v] = -1;
	d->peers[id] = p;
	d->nr_peers++;
	d->nr_orphans++;
	d->node_peers[p->node]++;
	watch_orphan(d, p);
	return 0;
}

int server_rejoin(struct daemon *d, struct peer *p, int sock, const int *fds)
{
	int rc;

	p->w.fd = sock;
	rc = loop_add(d, &p->w, EPOLLIN);
	if (rc) {
		p->w.fd = -1;
		close(sock);
		for (uint32_t v = 0; v < d->cfg.nr_vectors; v++)
			close(fds[v]);
		return rc;
	}
	for (uint32_t v = 0; v < d->cfg.nr_vectors; v++)
		p->vectors[v] = fds[v];
	p->orphan = false;
	d->nr_orphans--;
	/* From now on its socket says when it goes, as for any peer. */
	if (p->exit_w.fd >= 0) {
		loop_del(d, &p->exit_w);
		close(p->exit_w.fd);
		p->exit_w.fd = -1;
	}
	/* As a join: the others learn its vectors, it learns theirs, its own last. */
	peer_introduce(d, p);
	server_ring_control_all(d);
	log_info("peer %u rejoined node %s (pid %d, generation %u)", p->id,
		 directory_node_name(d, p->node), (int)p->pid, p->gen);
	return 0;
}

void server_abandon_peers(struct daemon *d)
{
	for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
		struct peer *p = d->peers[i];

		if (!p)
			continue;
		if (!p->orphan)
			loop_del(d, &p->w);
		if (p->exit_w.fd >= 0)
			loop_del(d, &p->exit_w);
		d->peers[i] = NULL;
		peer_free(p);
	}
	d->nr_peers = 0;
	d->nr_orphans = 0;
}
