// SPDX-License-Identifier: MIT
/*
 * The rdma_cm device where the kernel has none (see ucma.h): open(),
 * write(), fstat() and close() of its channels, everything else passed
 * to the C library untouched.
 *
 * librdmacm checks that what it opened is a character device, so fstat()
 * says so of a channel. A channel's fd is a pipe both read and written
 * through one O_RDWR fd (as comp_channel.c does): the preload keeps a
 * byte in it per queued event, so poll() works on it as on the kernel's.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ucma.h"

#define UCMA_EXPORT __attribute__((visibility("default")))
#define UCMA_MAX_FD 4096 /* a channel above it is refused with EMFILE */

struct ucma ucma = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Channels by fd, read without the lock by every write() and close(). */
static _Atomic(struct ucma_channel *) channels[UCMA_MAX_FD];

static void *libc_next(const char *name, const char *version)
{
	return version ? dlvsym(RTLD_NEXT, name, version) : dlsym(RTLD_NEXT, name);
}

static int libc_open(const char *path, int flags, mode_t mode)
{
	static int (*fn)(const char *, int, ...);

	if (!fn)
		fn = (int (*)(const char *, int, ...))libc_next("open", NULL);
	return fn(path, flags, mode);
}

bool ucma_is_channel_fd(int fd)
{
	return fd >= 0 && fd < UCMA_MAX_FD &&
	       atomic_load_explicit(&channels[fd], memory_order_acquire) != NULL;
}

struct ucma_channel *ucma_channel_by_fd(int fd)
{
	if (fd < 0 || fd >= UCMA_MAX_FD)
		return NULL;
	return atomic_load_explicit(&channels[fd], memory_order_acquire);
}

static int open_pipe_fd(void)
{
	char path[64];
	int p[2], fd, saved;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
	fd = libc_open(path, O_RDWR | O_CLOEXEC, 0);
	saved = errno;
	close(p[0]);
	close(p[1]);
	errno = saved;
	return fd;
}

/*
 * fork(): the child has no agent thread, and the lock may have been held
 * by a thread that does not exist there. It forgets every channel (their
 * fds become plain pipes to it, as a child's RDMA CM is the parent's
 * business) and starts RDMA CM afresh if it opens the device again.
 */
static void fork_prepare(void)
{
	pthread_mutex_lock(&ucma.lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&ucma.lock);
}

static void fork_child(void)
{
	for (int fd = 0; fd < UCMA_MAX_FD; fd++) {
		struct ucma_channel *ch = atomic_load_explicit(&channels[fd], memory_order_relaxed);

		if (ch) /* the channel's own descriptor; fd stays the application's */
			(void)syscall(SYS_close, ch->pipe_fd);
		atomic_store_explicit(&channels[fd], NULL, memory_order_relaxed);
	}
	ucma.agent = NULL;
	ucma.ids = NULL;
	ucma.gens = NULL;
	ucma.nr_ids = 0;
	pthread_mutex_init(&ucma.lock, NULL);
}

static void register_fork_handlers(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* A new channel: its fd, or -1 with errno set. */
static int channel_open(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct ucma_channel *ch;
	int fd, err;

	pthread_once(&once, register_fork_handlers);
	err = ucma_agent_start();
	if (err) {
		errno = -err;
		return -1;
	}
	fd = open_pipe_fd();
	if (fd < 0)
		return -1;
	if (fd >= UCMA_MAX_FD) {
		close(fd);
		errno = EMFILE;
		return -1;
	}
	pthread_mutex_lock(&ucma.lock);
	ch = ucma_channel_new(fd);
	if (ch)
		atomic_store_explicit(&channels[fd], ch, memory_order_release);
	pthread_mutex_unlock(&ucma.lock);
	if (!ch) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	return fd;
}

UCMA_EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	int fd;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	fd = libc_open(path, flags, mode);
	if (fd >= 0 || errno != ENOENT || strcmp(path, UCMA_DEVICE_PATH) != 0)
		return fd;
	return channel_open();
}

UCMA_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	static ssize_t (*fn)(int, const void *, size_t);
	int err;

	if (!ucma_is_channel_fd(fd)) {
		if (!fn)
			fn = (ssize_t(*)(int, const void *, size_t))libc_next("write", NULL);
		return fn(fd, buf, len);
	}
	err = ucma_cmd_run(fd, buf, len);
	if (err) {
		errno = -err;
		return -1;
	}
	return (ssize_t)len;
}

UCMA_EXPORT int fstat(int fd, struct stat *st)
{
	static int (*fn)(int, struct stat *);
	int ret;

	if (!fn)
		fn = (int (*)(int, struct stat *))libc_next("fstat", "GLIBC_2.33");
	ret = fn(fd, st);
	if (ret == 0 && ucma_is_channel_fd(fd))
		st->st_mode = (st->st_mode & ~(mode_t)S_IFMT) | S_IFCHR;
	return ret;
}

/* What some runtimes call for fstat() (ThreadSanitizer's, for one). */
int __fxstat(int ver, int fd, struct stat *st);
UCMA_EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	static int (*fn)(int, int, struct stat *);
	int ret;

	if (!fn)
		fn = (int (*)(int, int, struct stat *))libc_next("__fxstat", "GLIBC_2.2.5");
	ret = fn(ver, fd, st);
	if (ret == 0 && ucma_is_channel_fd(fd))
		st->st_mode = (st->st_mode & ~(mode_t)S_IFMT) | S_IFCHR;
	return ret;
}

UCMA_EXPORT int close(int fd)
{
	static int (*fn)(int);
	struct ucma_channel *ch = NULL;

	if (!fn)
		fn = (int (*)(int))libc_next("close", NULL);
	if (ucma_is_channel_fd(fd)) {
		pthread_mutex_lock(&ucma.lock);
		ch = atomic_exchange_explicit(&channels[fd], NULL, memory_order_acq_rel);
		if (ch)
			ucma_channel_close(ch);
		pthread_mutex_unlock(&ucma.lock);
	}
	return fn(fd);
}
