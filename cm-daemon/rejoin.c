// SPDX-License-Identifier: MIT
/*
 * DIR/rejoin.sock: host processes of an adopted region rejoin here
 * (common/ivrdma_rejoin.h has the protocol).
 *
 * A connection is held until its one message arrives, at most
 * REJOIN_WAIT_MS and REJOIN_PENDING at a time: a client that connects
 * and says nothing, or says something wrong, is closed and costs the
 * loop nothing. Anything wrong in the message refuses the rejoin, with a
 * warning saying what: the peer stays an orphan until it rejoins properly
 * or its time runs out (adopt.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "ivrdma_rejoin.h"
#include "ivshmem_msg.h"
#include "log.h"

#define REJOIN_PENDING 8
#define REJOIN_WAIT_MS 2000

struct pending {
	struct watch w; /* first: the loop hands back &w */
	int64_t deadline_ms;
};

struct rejoin_state {
	struct listener l;
	struct pending pend[REJOIN_PENDING];
};

/* One message with up to IVRDMA_MAX_VECTORS fds (all closed if more came). */
struct rejoin_in {
	struct ivrdma_rejoin_msg m;
	int fds[IVRDMA_MAX_VECTORS];
	uint32_t nr_fds;
	bool truncated;
};

static void close_fds(struct rejoin_in *in)
{
	for (uint32_t i = 0; i < in->nr_fds; i++)
		close(in->fds[i]);
	in->nr_fds = 0;
}

/* 1: a whole message; -EAGAIN: nothing yet; else what went wrong. */
static int receive(int sock, struct rejoin_in *in)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * IVRDMA_MAX_VECTORS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &in->m, .iov_len = sizeof(in->m)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl)};
	ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (in->nr_fds < IVRDMA_MAX_VECTORS)
				in->fds[in->nr_fds++] = fd;
			else
				close(fd);
		}
	}
	in->truncated = (mh.msg_flags & MSG_CTRUNC) != 0;
	if (n == 0)
		return -ECONNRESET;
	/* The client sends it in one piece: a part of one is a broken client. */
	return n == (ssize_t)sizeof(in->m) ? 1 : -EPROTO;
}

static bool is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* NULL if orphan 'p' may rejoin with message 'in' from 'sock', else why not. */
static const char *refusal(struct daemon *d, int sock, const struct rejoin_in *in,
			   struct peer **out)
{
	const struct ivrdma_rejoin_msg *m = &in->m;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct peer *p;

	if (m->magic != IVRDMA_REJOIN_MAGIC || m->reserved || in->truncated)
		return "not a rejoin message";
	if (m->peer_id >= d->cfg.max_peers || !(p = d->peers[m->peer_id]) || !p->orphan ||
	    p->doomed || p->gen != m->gen)
		return "no such peer waits to rejoin";
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.pid != p->pid)
		return "the sender is not the peer's process";
	if (m->nr_vectors != d->cfg.nr_vectors || in->nr_fds != d->cfg.nr_vectors)
		return "not one eventfd per vector";
	for (uint32_t i = 0; i < in->nr_fds; i++)
		if (!is_eventfd(in->fds[i]))
			return "a vector is not an eventfd";
	*out = p;
	return NULL;
}

static void pending_end(struct daemon *d, struct pending *q, bool close_sock)
{
	loop_del(d, &q->w);
	if (close_sock)
		close(q->w.fd);
	q->w.fd = -1;
}

static void on_pending(struct daemon *d, struct watch *w, uint32_t events)
{
	struct pending *q = (struct pending *)w;
	struct rejoin_in in = {.nr_fds = 0};
	struct peer *p = NULL;
	const char *why;
	int sock = q->w.fd, rc = receive(sock, &in);

	if (rc == -EAGAIN && !(events & (EPOLLHUP | EPOLLERR)))
		return;
	if (rc != 1) {
		log_warn("refusing a rejoin: %s", rc == -EAGAIN ? "hung up" : strerror(-rc));
		close_fds(&in);
		pending_end(d, q, true);
		return;
	}
	why = refusal(d, sock, &in, &p);
	if (why) {
		log_warn("refusing peer %u's rejoin: %s", in.m.peer_id, why);
		/* Said, so that it stops trying: a fresh socket's buffer takes 8 bytes. */
		if (ivshmem_msg_send(sock, IVRDMA_REJOIN_REFUSED, -1))
			log_debug("cannot tell peer %u: %s", in.m.peer_id, strerror(errno));
		close_fds(&in);
		pending_end(d, q, true);
		return;
	}
	pending_end(d, q, false);
	rc = server_rejoin(d, p, sock, in.fds);
	if (rc)
		log_warn("peer %u cannot rejoin: %s", p->id, strerror(-rc));
}

/* Takes connection 'sock' to wait for its message; false if none can wait now. */
static bool hold_pending(struct daemon *d, int sock)
{
	for (uint32_t i = 0; i < REJOIN_PENDING; i++) {
		struct pending *q = &d->rejoin->pend[i];

		if (q->w.fd >= 0)
			continue;
		q->w = (struct watch){.fd = sock, .on_event = on_pending};
		q->deadline_ms = monotonic_ms() + REJOIN_WAIT_MS;
		if (loop_add(d, &q->w, EPOLLIN) == 0)
			return true;
		q->w.fd = -1;
		break;
	}
	return false;
}

/* Every connection waiting: none stays in the backlog for a later turn. */
static void on_accept(struct daemon *d, struct watch *w, uint32_t events)
{
	for (;;) {
		int sock = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (sock < 0) {
			if (errno == EMFILE || errno == ENFILE)
				shed_connection(d, w->fd, d->rejoin->l.path);
			return;
		}
		if (!hold_pending(d, sock)) {
			log_warn("refusing a rejoin: too many at once");
			close(sock);
		}
	}
}

void rejoin_tick(struct daemon *d)
{
	int64_t now = monotonic_ms();

	if (!d->rejoin)
		return;
	for (uint32_t i = 0; i < REJOIN_PENDING; i++) {
		struct pending *q = &d->rejoin->pend[i];

		if (q->w.fd >= 0 && now >= q->deadline_ms) {
			log_warn("refusing a rejoin: nothing sent in %d ms", REJOIN_WAIT_MS);
			pending_end(d, q, true);
		}
	}
	adopt_tick(d);
}

int rejoin_open(struct daemon *d)
{
	struct rejoin_state *s = calloc(1, sizeof(*s));
	int n;

	if (!s)
		return -ENOMEM;
	for (uint32_t i = 0; i < REJOIN_PENDING; i++)
		s->pend[i].w.fd = -1;
	d->rejoin = s;
	n = snprintf(s->l.path, sizeof(s->l.path), "%s/%s", d->cfg.dir, IVRDMA_REJOIN_SOCK);
	if (n < 0 || (size_t)n >= sizeof(s->l.path)) {
		s->l.w.fd = -1;
		log_error("socket path for %s too long", IVRDMA_REJOIN_SOCK);
		return -ENAMETOOLONG;
	}
	s->l.w.on_event = on_accept;
	s->l.w.fd = unix_listen(s->l.path, d->cfg.socket_mode);
	if (s->l.w.fd < 0)
		return s->l.w.fd;
	return loop_add(d, &s->l.w, EPOLLIN);
}

void rejoin_close(struct daemon *d)
{
	struct rejoin_state *s = d->rejoin;

	if (!s)
		return;
	for (uint32_t i = 0; i < REJOIN_PENDING; i++)
		if (s->pend[i].w.fd >= 0)
			pending_end(d, &s->pend[i], true);
	if (s->l.w.fd >= 0) {
		loop_del(d, &s->l.w);
		close(s->l.w.fd);
		unlink(s->l.path);
	}
	free(s);
	d->rejoin = NULL;
}
