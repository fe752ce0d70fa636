// SPDX-License-Identifier: MIT
/*
 * librs-compat.so: what Linux TCP accepts and rsockets refuses or gets
 * wrong, for unchanged socket programs run over librspreload.so. Preloaded
 * ahead of it:
 *
 *   LD_PRELOAD=librs-compat.so:librspreload.so:libivrdma-preload.so PROGRAM
 *
 * - sendto() with an address on a connected stream socket: Linux ignores
 *   the address, rsockets' rsendto() fails with EISCONN (sockperf always
 *   passes one, for TCP too). When the next sendto() says EISCONN for a
 *   call that gave an address, this one sends again without it.
 * - socket(AF_INET[6], SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ...):
 *   rsocket() takes the type only without flags, so librspreload.so quietly
 *   falls back to a kernel socket, and its connect() goes to the kernel's
 *   TCP, where no rsockets server listens (libmemcached does this: its
 *   clients then see ECONNREFUSED). This socket() asks for the plain type
 *   and sets O_NONBLOCK with fcntl() (which librspreload.so passes to
 *   rsockets). FD_CLOEXEC is asked for too, and ignored where refused.
 * - accept4(): librspreload.so has accept() but no accept4(), so the C
 *   library's goes to the kernel with rsockets' placeholder fd and fails
 *   with ENOTSOCK (memcached accepts with accept4()). This accept4() calls
 *   accept() and sets the flags with fcntl(), as socket() above.
 *
 * - getsockopt(IPPROTO_TCP, TCP_INFO or TCP_CONGESTION): rsockets has
 *   neither and says EOPNOTSUPP (iperf3 asks for both, and then loses
 *   track of its test). Where the next getsockopt() refuses them, TCP_INFO
 *   reads as an established connection with no other figures (all zero)
 *   and TCP_CONGESTION as "rsocket".
 *
 * - select(): librspreload.so's select() maps rpoll()'s answers back to the
 *   caller's fds by scanning fd numbers upward and taking the first whose
 *   rsocket index matches. An rsocket's index is the number of its RDMA CM
 *   event channel, itself an open fd of the process; an accepted rsocket's
 *   channel is opened (by rsockets' listening thread) before accept() opens
 *   the fd the caller gets, so it is the lower number and the scan meets it
 *   first: the answer lands on the channel's fd, the caller's socket is
 *   never reported ready. iperf3's server waits on its accepted control
 *   socket with select() and so never saw the client's TEST_END. This
 *   select() asks poll() instead (librspreload.so's poll() keeps each
 *   answer at its index) and marks the sets as the kernel's select() does.
 *
 * - poll() with a timeout: rdma-core 44's rpoll() returns on a timeout
 *   without leaving its count of threads in poll() (fixed in rdma-core 63,
 *   "librdmacm: Fix rpoll in case of timeout"). Once the count is stuck,
 *   the next change seen while two threads poll suspends every rpoll()
 *   for good: they spin, checking rsockets but no longer any other fd.
 *   memcached's worker then never read the pipe its listener hands it new
 *   connections on (memcslap -t get timed out on its second connection).
 *   This poll() never gives librspreload.so a timeout: it waits without
 *   one, on a timerfd added to the set that expires at the timeout.
 *
 * Nothing else changes. Not ivrdma's: it is the same on any RDMA device.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef int (*socket_fn)(int, int, int);
typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
	       socklen_t addrlen)
{
	static sendto_fn next;
	ssize_t n;

	if (!next)
		next = (sendto_fn)dlsym(RTLD_NEXT, "sendto");
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	n = next(fd, buf, len, flags, addr, addrlen);
	if (n < 0 && errno == EISCONN && addr)
		n = next(fd, buf, len, flags, NULL, 0);
	return n;
}

/* O_NONBLOCK through fcntl(), which librspreload.so passes to rsockets;
 * FD_CLOEXEC where the fd is a kernel one (refused for an rsocket). */
static int set_flags(int fd, int flags)
{
	if ((flags & SOCK_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	if (flags & SOCK_CLOEXEC)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

int socket(int domain, int type, int protocol)
{
	static socket_fn next;
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	int fd;

	if (!next)
		next = (socket_fn)dlsym(RTLD_NEXT, "socket");
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	if ((domain != AF_INET && domain != AF_INET6) || base != SOCK_STREAM || base == type)
		return next(domain, type, protocol);
	fd = next(domain, base, protocol);
	return fd < 0 ? fd : set_flags(fd, type);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	static accept_fn next;
	int s;

	if (!next)
		next = (accept_fn)dlsym(RTLD_NEXT, "accept");
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
		errno = EINVAL;
		return -1;
	}
	s = next(fd, addr, addrlen);
	return s < 0 ? s : set_flags(s, flags);
}

typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);

/* What rsockets refuses of TCP's own options, answered as described above. */
static int tcp_stand_in(int optname, void *val, socklen_t *len)
{
	static const char congestion[] = "rsocket";
	struct tcp_info info = {.tcpi_state = TCP_ESTABLISHED};

	if (!val || !len)
		return -1;
	if (optname == TCP_INFO) {
		*len = *len < sizeof(info) ? *len : (socklen_t)sizeof(info);
		memcpy(val, &info, *len);
		return 0;
	}
	if (optname == TCP_CONGESTION && *len > 0) {
		*len = *len < sizeof(congestion) ? *len : (socklen_t)sizeof(congestion);
		memcpy(val, congestion, *len);
		return 0;
	}
	return -1;
}

int getsockopt(int fd, int level, int optname, void *val, socklen_t *len)
{
	static getsockopt_fn next;
	int saved, rc;

	if (!next)
		next = (getsockopt_fn)dlsym(RTLD_NEXT, "getsockopt");
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	rc = next(fd, level, optname, val, len);
	if (rc == 0 || level != IPPROTO_TCP || (errno != EOPNOTSUPP && errno != ENOTSUP))
		return rc;
	saved = errno;
	if (tcp_stand_in(optname, val, len) == 0)
		return 0;
	errno = saved;
	return -1;
}

typedef int (*poll_fn)(struct pollfd *, nfds_t, int);

/* fds and a timerfd expiring after ms, to poll() with no timeout. */
static int poll_with_timer(poll_fn next, struct pollfd *fds, nfds_t n, int ms)
{
	struct itimerspec at = {.it_value = {ms / 1000, (long)(ms % 1000) * 1000000}};
	struct pollfd *all = malloc((n + 1) * sizeof(*all));
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), rc = -1;

	if (!all || tfd < 0 || timerfd_settime(tfd, 0, &at, NULL) < 0) {
		if (all) /* no timer: the plain call, as before */
			rc = next(fds, n, ms);
		goto out;
	}
	memcpy(all, fds, n * sizeof(*all));
	all[n] = (struct pollfd){.fd = tfd, .events = POLLIN};
	rc = next(all, n + 1, -1);
	if (rc > 0 && all[n].revents)
		rc--;
	for (nfds_t i = 0; rc >= 0 && i < n; i++)
		fds[i].revents = all[i].revents;
out:
	if (tfd >= 0)
		close(tfd);
	free(all);
	return rc;
}

int poll(struct pollfd *fds, nfds_t n, int ms)
{
	static poll_fn next;
	int rc;

	if (!next)
		next = (poll_fn)dlsym(RTLD_NEXT, "poll");
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	if (ms <= 0)
		return next(fds, n, ms);
	/* what is ready already needs no timer (a zero timeout is safe) */
	rc = next(fds, n, 0);
	return rc ? rc : poll_with_timer(next, fds, n, ms);
}

/* select()'s sets as a pollfd array, in ascending fd order; returns how many. */
static nfds_t sets_to_poll(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct pollfd *fds)
{
	nfds_t n = 0;

	for (int fd = 0; fd < nfds; fd++) {
		short events = 0;

		if (rd && FD_ISSET(fd, rd))
			events |= POLLIN;
		if (wr && FD_ISSET(fd, wr))
			events |= POLLOUT;
		if (ex && FD_ISSET(fd, ex))
			events |= POLLPRI;
		if (events)
			fds[n++] = (struct pollfd){.fd = fd, .events = events};
	}
	return n;
}

/* poll()'s answers back into the sets, as the kernel's select() marks them. */
static int poll_to_sets(const struct pollfd *fds, nfds_t n, fd_set *rd, fd_set *wr, fd_set *ex)
{
	int count = 0;

	if (rd)
		FD_ZERO(rd);
	if (wr)
		FD_ZERO(wr);
	if (ex)
		FD_ZERO(ex);
	for (nfds_t i = 0; i < n; i++) {
		short r = fds[i].revents;

		if (r & POLLNVAL) {
			errno = EBADF;
			return -1;
		}
		if (rd && (fds[i].events & POLLIN) && (r & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(fds[i].fd, rd);
			count++;
		}
		if (wr && (fds[i].events & POLLOUT) && (r & (POLLOUT | POLLERR))) {
			FD_SET(fds[i].fd, wr);
			count++;
		}
		if (ex && (fds[i].events & POLLPRI) && (r & POLLPRI)) {
			FD_SET(fds[i].fd, ex);
			count++;
		}
	}
	return count;
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout)
{
	struct pollfd fds[FD_SETSIZE];
	int ms = -1, rc;
	nfds_t n;

	if (nfds < 0 || nfds > FD_SETSIZE ||
	    (timeout && (timeout->tv_sec < 0 || timeout->tv_usec < 0))) {
		errno = EINVAL;
		return -1;
	}
	if (timeout) /* rounded up: a short wait must not become a spin */
		ms = timeout->tv_sec > INT_MAX / 1000 - 1
			 ? INT_MAX
			 : (int)(timeout->tv_sec * 1000 + (timeout->tv_usec + 999) / 1000);
	n = sets_to_poll(nfds, rd, wr, ex, fds);
	rc = poll(fds, n, ms);
	return rc < 0 ? rc : poll_to_sets(fds, n, rd, wr, ex);
}
