// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

#define MAX_DAEMONS 8

static struct test_daemon *running[MAX_DAEMONS];
static int serial;

static void remove_dir(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *e;
	char file[512];

	if (!dir)
		return;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		unlink(file);
	}
	closedir(dir);
	rmdir(path);
}

/* Last resort: no daemon outlives its test. */
static void kill_all(void)
{
	for (int i = 0; i < MAX_DAEMONS; i++) {
		struct test_daemon *d = running[i];

		if (!d)
			continue;
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		shm_unlink(d->shm);
		remove_dir(d->dir);
		running[i] = NULL;
	}
}

static void on_fatal(int sig)
{
	kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_cleanup(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	atexit(kill_all);
	signal(SIGSEGV, on_fatal);
	signal(SIGABRT, on_fatal);
	signal(SIGBUS, on_fatal);
	signal(SIGTERM, on_fatal);
	signal(SIGINT, on_fatal);
	signal(SIGALRM, on_fatal);
	signal(SIGPIPE, SIG_IGN);
}

void test_watchdog(unsigned int seconds)
{
	install_cleanup();
	alarm(seconds);
}

static const char *daemon_path(void)
{
	const char *p = getenv("IVRDMAD");

	return p ? p : "ivrdmad";
}

static void exec_daemon(struct test_daemon *d, int nofile, const char *const *extra)
{
	const char *argv[64] = {daemon_path(), "--dir", d->dir, "--shm", d->shm, "--size", "16M"};
	int n = 7;

	for (; extra && *extra && n < 62; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	if (nofile > 0) {
		struct rlimit rl = {.rlim_cur = (rlim_t)nofile, .rlim_max = (rlim_t)nofile};

		setrlimit(RLIMIT_NOFILE, &rl);
	}
	execvp(argv[0], (char *const *)argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int test_daemon_start(struct test_daemon *d, int nofile, const char *const *extra)
{
	int slot = -1;

	install_cleanup();
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/ivrdma-test-%d-%d", (int)getpid(), serial);
	snprintf(d->shm, sizeof(d->shm), "/ivrdma-test-%d-%d", (int)getpid(), serial++);
	snprintf(d->host_sock, sizeof(d->host_sock), "%s/host.sock", d->dir);
	for (int i = 0; i < MAX_DAEMONS && slot < 0; i++)
		if (!running[i])
			slot = i;
	if (slot < 0)
		return -1;
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (d->pid == 0)
		exec_daemon(d, nofile, extra);
	running[slot] = d;
	for (int i = 0; i < 500; i++) {
		json_object *st;

		if (!test_daemon_alive(d))
			return -1;
		st = test_daemon_status(d);
		if (st) {
			json_object_put(st);
			return 0;
		}
		sleep_ms(10);
	}
	return -1;
}

/* Appends what 'fd' gives to 'err' until EOF; false if 'deadline' came first. */
static bool read_to_eof(int fd, int64_t deadline, char *err, size_t len)
{
	size_t used = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - test_now_ms();
		char buf[256];
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return false;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			return true;
		if (len && used + 1 < len) {
			size_t k = (size_t)n < len - 1 - used ? (size_t)n : len - 1 - used;

			memcpy(err + used, buf, k);
			used += k;
			err[used] = '\0';
		}
	}
}

/* Waits for 'pid' to exit until 'deadline'; true with its wait status in *status. */
static bool wait_until(pid_t pid, int64_t deadline, int *status)
{
	while (waitpid(pid, status, WNOHANG) == 0) {
		if (test_now_ms() >= deadline)
			return false;
		sleep_ms(10);
	}
	return true;
}

int test_daemon_run_to_exit(const char *const *extra, int timeout_ms, char *err, size_t len)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	struct test_daemon d = {0};
	int fds[2], status = -1;

	install_cleanup();
	if (len)
		err[0] = '\0';
	snprintf(d.dir, sizeof(d.dir), "/tmp/ivrdma-test-%d-%d", (int)getpid(), serial);
	snprintf(d.shm, sizeof(d.shm), "/ivrdma-test-%d-%d", (int)getpid(), serial++);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	d.pid = fork();
	if (d.pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		exec_daemon(&d, 0, extra);
	}
	close(fds[1]);
	if (d.pid > 0) {
		read_to_eof(fds[0], deadline, err, len);
		if (!wait_until(d.pid, deadline, &status)) {
			/* It runs: it should not. SIGTERM lets it remove what it made. */
			kill(d.pid, SIGTERM);
			waitpid(d.pid, NULL, 0);
			status = -1;
		}
	}
	close(fds[0]);
	shm_unlink(d.shm);
	remove_dir(d.dir);
	return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool test_daemon_alive(const struct test_daemon *d)
{
	return d->pid > 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

bool test_daemon_stop(struct test_daemon *d)
{
	struct stat st;
	char shm_path[128];
	int status = -1;
	bool clean;

	if (d->pid <= 0)
		return false;
	kill(d->pid, SIGTERM);
	waitpid(d->pid, &status, 0);
	for (int i = 0; i < MAX_DAEMONS; i++)
		if (running[i] == d)
			running[i] = NULL;
	snprintf(shm_path, sizeof(shm_path), "/dev/shm%s", d->shm);
	clean = WIFEXITED(status) && WEXITSTATUS(status) == 0 && stat(shm_path, &st) < 0 &&
		stat(d->host_sock, &st) < 0;
	if (!clean)
		fprintf(stderr, "daemon %d did not stop cleanly (status 0x%x)\n", (int)d->pid,
			status);
	shm_unlink(d->shm);
	remove_dir(d->dir);
	d->pid = 0;
	return clean;
}

const char *test_daemon_sock(const struct test_daemon *d, const char *name)
{
	static char path[192];

	snprintf(path, sizeof(path), "%s/%s.sock", d->dir, name);
	return path;
}

json_object *test_daemon_status(const struct test_daemon *d)
{
	char err[256];

	return ctl_request(d->dir, "status", err, sizeof(err));
}

int64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool test_sun_set(struct sockaddr_un *sun, const char *path)
{
	size_t n = strlen(path);

	if (n >= sizeof(sun->sun_path))
		return false;
	memcpy(sun->sun_path, path, n + 1);
	return true;
}

int test_connect(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (!test_sun_set(&sun, path)) {
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}
