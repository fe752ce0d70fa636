/* SPDX-License-Identifier: MIT */
/*
 * Starting and stopping a real ivrdmad for a test. Each daemon gets its own
 * directory and shm name; whatever happens (failed check, crash signal,
 * watchdog), the daemon is stopped and its files removed.
 */
#ifndef IVRDMA_TEST_HARNESS_H
#define IVRDMA_TEST_HARNESS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct test_daemon {
	pid_t pid;
	char dir[128];
	char shm[64];
	char host_sock[160];
	char log[160];
};

/*
 * Starts $IVRDMAD (or argv0-relative default) with --dir/--shm filled in
 * plus 'extra' arguments (NULL-terminated), and waits until it answers.
 * nofile > 0 limits its RLIMIT_NOFILE. Returns 0 or -1.
 */
int test_daemon_start(struct test_daemon *d, int nofile, const char *const *extra);

/* SIGTERM, wait, check clean exit and that shm and sockets are gone. */
bool test_daemon_stop(struct test_daemon *d);

bool test_daemon_alive(const struct test_daemon *d);

/*
 * Runs $IVRDMAD with a directory and shm name of its own plus 'extra'
 * (NULL-terminated), for a command line it should refuse: waits up to
 * timeout_ms for it to exit, keeping what it wrote on stderr in 'err'.
 * Returns its exit status, or -1 if it was still running (then it is
 * stopped) or died of a signal.
 */
int test_daemon_run_to_exit(const char *const *extra, int timeout_ms, char *err, size_t len);

/* Path of DIR/NAME.sock. */
const char *test_daemon_sock(const struct test_daemon *d, const char *name);

/* `status` over the control socket; NULL on failure. Caller puts. */
json_object *test_daemon_status(const struct test_daemon *d);

/* Kills every daemon still running after 'seconds' and exits the test. */
void test_watchdog(unsigned int seconds);

/* CLOCK_MONOTONIC in milliseconds: deadlines for bounded waits. */
int64_t test_now_ms(void);

/* Fills sun->sun_path; false if path does not fit. */
struct sockaddr_un;
bool test_sun_set(struct sockaddr_un *sun, const char *path);

/* Raw ivshmem client connect (non-blocking socket), -1 on failure. */
int test_connect(const char *path);

#endif
