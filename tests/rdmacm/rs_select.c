// SPDX-License-Identifier: MIT
/*
 * select() on sockets carried by rsockets (librspreload.so, with
 * bench/rs_compat.c ahead of it): an accepted socket and a connected one,
 * in one process over ivrdma0. Each side is first not readable, then,
 * after the other writes a byte, reported readable on its own fd (and on
 * no other), and the byte reads back.
 *
 * Then poll(): one that times out, then, twice, a pipe next to an rsocket
 * in one poll() with no timeout, written by another thread while it
 * waits: the pipe must be reported each time.
 *
 * Why: librspreload.so's own select() reports an accepted socket's
 * readiness on the fd of the socket's RDMA CM channel instead, and its
 * rpoll() leaks a count on a timeout, after which the second such poll()
 * spins for ever without looking at the pipe (see bench/rs_compat.c);
 * iperf3's server never saw its client's TEST_END, memcached's worker
 * never saw a new connection.
 * usage: rs_select PORT (under LD_PRELOAD=librs-compat.so:librspreload.so:
 * libivrdma-preload.so, with an ivrdmad up)
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

/* select() for reading on fd alone; how many fds it says are ready, and
 * in *other whether it named any fd but this one. */
static int ready(int fd, struct timeval *timeout, int *other)
{
	fd_set rd;
	int n;

	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	n = select(fd + 1, &rd, NULL, NULL, timeout);
	*other = 0;
	for (int i = 0; n > 0 && i <= fd; i++)
		if (i != fd && FD_ISSET(i, &rd))
			*other = 1;
	return n < 0 ? n : (FD_ISSET(fd, &rd) ? n : 0);
}

/* The highest fd open in this process. */
static int highest_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int max = -1;

	REQUIRE(d, "/proc/self/fd: %m");
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && atoi(e->d_name) > max)
			max = atoi(e->d_name);
	closedir(d);
	return max;
}

/*
 * Fills every free fd below the highest open one (as in a program that
 * closed nothing, iperf3's server), so the fd accept() opens is above the
 * accepted socket's RDMA CM channel, opened before: the order in which
 * librspreload.so's select() answers on the wrong fd. Returns how many
 * fds it opened, into fill[] (at most max).
 */
static int fill_fd_holes(int *fill, int max)
{
	int top = highest_fd(), n = 0;

	while (n < max) {
		int fd = open("/dev/null", O_RDONLY);

		if (fd < 0)
			REQUIRE(fd >= 0, "open /dev/null: %m");
		fill[n++] = fd;
		if (fd > top)
			break;
	}
	return n;
}

/* from writes a byte, to must be reported readable and read it. */
static void one_byte(const char *name, int from, int to, char c)
{
	struct timeval none = {0, 0};
	int other, n;
	char got = 0;

	n = ready(to, &none, &other);
	CHECK(n == 0 && !other, "%s: ready before anything was sent (%d, other %d)", name, n,
	      other);
	REQUIRE(write(from, &c, 1) == 1, "%s: write: %m", name);
	n = ready(to, NULL, &other); /* no timeout: the byte is on its way */
	CHECK(n == 1, "%s: select said %d for the receiving fd %d", name, n, to);
	CHECK(!other, "%s: select named an fd the caller did not ask about", name);
	CHECK(read(to, &got, 1) == 1 && got == c, "%s: read back '%c'", name, got);
}

#define LIVENESS_S 30 /* a hung poll() fails the test instead of hanging it */

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(LIVENESS_S);
	fprintf(stderr, "FAIL: poll() still waiting after %d s: the pipe was not seen\n",
		LIVENESS_S);
	_exit(1);
}

/* Writes a byte to the pipe twice, each after the main thread had time to block. */
static void *pipe_writer(void *arg)
{
	int fd = *(int *)arg;

	for (int i = 0; i < 2; i++) {
		usleep(200000); /* not a check: only makes the byte come while poll() waits */
		if (write(fd, "p", 1) != 1)
			break;
	}
	return NULL;
}

static void poll_after_timeout(int rs)
{
	struct pollfd one = {.fd = rs, .events = POLLIN};
	pthread_t w, dog;
	int p[2];
	char c;

	REQUIRE(pipe(p) == 0, "pipe: %m");
	CHECK(poll(&one, 1, 10) == 0, "poll() of an idle rsocket times out");
	REQUIRE(pthread_create(&dog, NULL, watchdog, NULL) == 0, "pthread_create");
	REQUIRE(pthread_create(&w, NULL, pipe_writer, &p[1]) == 0, "pthread_create");
	for (int i = 0; i < 2; i++) {
		struct pollfd two[2] = {{.fd = p[0], .events = POLLIN},
					{.fd = rs, .events = POLLIN}};
		int n = poll(two, 2, -1);

		CHECK(n == 1 && (two[0].revents & POLLIN) && !two[1].revents,
		      "poll %d: %d ready, pipe %#x, rsocket %#x", i, n, two[0].revents,
		      two[1].revents);
		CHECK(read(p[0], &c, 1) == 1 && c == 'p', "poll %d: the pipe's byte", i);
	}
	pthread_join(w, NULL);
	pthread_cancel(dog);
	pthread_join(dog, NULL);
	close(p[0]);
	close(p[1]);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int ls, cs, as, one = 1, fill[1024], nfill;

	REQUIRE(argc == 2, "usage: rs_select PORT");
	sin.sin_port = htons((uint16_t)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(ls >= 0, "socket: %m");
	(void)setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	REQUIRE(bind(ls, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind: %m");
	REQUIRE(listen(ls, 4) == 0, "listen: %m");
	cs = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(cs >= 0, "socket: %m");
	/* rsockets' listening thread accepts meanwhile, opening the channel */
	REQUIRE(connect(cs, (struct sockaddr *)&sin, sizeof(sin)) == 0, "connect: %m");
	nfill = fill_fd_holes(fill, 1024);
	as = accept(ls, NULL, NULL);
	REQUIRE(as >= 0, "accept: %m");
	while (nfill > 0)
		close(fill[--nfill]);
	one_byte("to the accepted socket", cs, as, 'a');
	one_byte("to the connecting socket", as, cs, 'c');
	one_byte("to the accepted socket again", cs, as, 'b');
	poll_after_timeout(as);
	close(as);
	close(cs);
	close(ls);
	return check_summary();
}
