// SPDX-License-Identifier: MIT
/* The epoll loop's small helpers, and listening sockets. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

int loop_add(struct daemon *d, struct watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, w->fd, &ev) ? -errno : 0;
}

int loop_mod(struct daemon *d, struct watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	return epoll_ctl(d->epfd, EPOLL_CTL_MOD, w->fd, &ev) ? -errno : 0;
}

void loop_del(struct daemon *d, struct watch *w)
{
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

int loop_turn(struct daemon *d, int timeout_ms)
{
	struct epoll_event ev[32];
	int n = epoll_wait(d->epfd, ev, 32, timeout_ms);

	if (n < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < n; i++) {
		struct watch *w = ev[i].data.ptr;

		w->on_event(d, w, ev[i].events);
	}
	rejoin_tick(d);
	server_reap_doomed(d);
	server_accept_pending(d);
	server_reap_doomed(d);
	migrate_tick(d);
	ctl_expire(d);
	contexts_tick(d);
	channels_tick(d);
	return n < 0 ? 0 : n;
}

int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Out of fds: take one connection off the listener's backlog and drop it,
 * using the fd held in reserve. Left in the backlog, it would keep the
 * level-triggered listener ready and the loop spinning.
 */
void shed_connection(struct daemon *d, int listen_fd, const char *path)
{
	int fd;

	log_warn("out of file descriptors: refusing a client of %s", path);
	if (d->reserve_fd >= 0) {
		close(d->reserve_fd);
		fd = accept(listen_fd, NULL, NULL);
		if (fd >= 0)
			close(fd);
		d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
}

/* A socket file that nobody answers on is left over from a dead daemon. */
static int remove_stale_socket(const struct sockaddr_un *sun)
{
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int live;

	if (probe < 0)
		return -errno;
	live = connect(probe, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(probe);
	if (live) {
		log_error("%s: another ivrdmad is listening there", sun->sun_path);
		return -EADDRINUSE;
	}
	unlink(sun->sun_path);
	return 0;
}

int unix_listen(const char *path, uint32_t mode)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, rc;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (rc < 0 && errno == EADDRINUSE) {
		rc = remove_stale_socket(&sun);
		if (rc)
			goto fail;
		rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	}
	if (rc < 0) {
		rc = -errno;
		log_error("cannot bind %s: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, mode & 0777) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		log_error("cannot listen on %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}
