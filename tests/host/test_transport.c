// SPDX-License-Identifier: MIT
/*
 * ivshmem-transport's host backend against a real ivrdmad: many clients in
 * one process, doorbells between all of them counted exactly, departures
 * in random order, the API's error returns, mapping parts of the region at
 * a fixed address, attaching where nobody answers, and join/leave churn in
 * two processes whose views of the peer set must converge.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "ivshmem_transport.h"
#include "ivshmem_msg.h"

#define N    12
#define MAXP 64
#define T_MS 5000

struct client {
	struct ivt *t;
	int id;
	int joined[MAXP], left[MAXP];
};

static struct test_daemon daemon_;

static void on_peer(void *arg, uint16_t peer, enum ivt_peer_event ev)
{
	struct client *c = arg;

	if (peer < MAXP)
		(ev == IVT_PEER_LEFT ? c->left : c->joined)[peer]++;
}

static int client_attach(struct client *c, const char *path)
{
	struct ivt_options opt = {
	    .backend = IVT_BACKEND_HOST, .path = path, .on_peer = on_peer, .cb_arg = c};
	char err[256] = "";
	int rc;

	memset(c, 0, sizeof(*c));
	rc = ivt_attach(&opt, &c->t, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "attach: %s\n", err);
		c->t = NULL;
		return rc;
	}
	c->id = ivt_peer_id(c->t);
	return 0;
}

/* Handles pending notices of every live client for up to timeout_ms. */
static void pump(struct client *cs, int n, int timeout_ms)
{
	struct pollfd pfd[N];
	int idx[N], k = 0;

	for (int i = 0; i < n; i++) {
		if (!cs[i].t)
			continue;
		pfd[k] = (struct pollfd){.fd = ivt_control_fd(cs[i].t), .events = POLLIN};
		idx[k++] = i;
	}
	if (poll(pfd, (nfds_t)k, timeout_ms) <= 0)
		return;
	for (int j = 0; j < k; j++)
		if (pfd[j].revents)
			CHECK(ivt_process_control(cs[idx[j]].t) >= 0, "client %d control", idx[j]);
}

/* The set of peers t knows, as a bit set. */
static uint64_t known_set(struct ivt *t)
{
	uint64_t set = 0;

	for (int p = 0; p < MAXP; p++)
		if (ivt_peer_known(t, (uint16_t)p))
			set |= 1ull << p;
	return set;
}

static uint64_t live_set(const struct client *cs, int n)
{
	uint64_t set = 0;

	for (int i = 0; i < n; i++)
		if (cs[i].t)
			set |= 1ull << cs[i].id;
	return set;
}

static bool all_converged(struct client *cs, int n)
{
	uint64_t want = live_set(cs, n);

	for (int i = 0; i < n; i++)
		if (cs[i].t && known_set(cs[i].t) != want)
			return false;
	return true;
}

static bool converge(struct client *cs, int n, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (!all_converged(cs, n) && test_now_ms() < deadline)
		pump(cs, n, 20);
	return all_converged(cs, n);
}

static void test_many_clients(void)
{
	static struct client cs[N];
	int order[N];
	unsigned int seed = (unsigned int)time(NULL) ^ (unsigned int)getpid();
	uint64_t fired;

	for (int i = 0; i < N; i++)
		REQUIRE(client_attach(&cs[i], daemon_.host_sock) == 0, "client %d attaches", i);
	CHECK(converge(cs, N, T_MS), "all %d clients see all others", N);
	for (int i = 0; i < N; i++) {
		CHECK(ivt_nr_vectors(cs[i].t) == 4, "4 vectors");
		CHECK(!strcmp(ivt_backend_name(cs[i].t), "host"), "host backend");
		for (int j = 0; j < N; j++)
			if (j != i)
				CHECK(cs[i].joined[cs[j].id] == 1, "client %d: one join of peer %d",
				      i, cs[j].id);
	}

	/* Everyone rings everyone else on vector 1: exactly N - 1 rings each. */
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++)
			if (j != i)
				CHECK(ivt_ring(cs[i].t, (uint16_t)cs[j].id, 1) == 0, "ring %d->%d",
				      i, j);
	for (int j = 0; j < N; j++) {
		CHECK(ivt_consume(cs[j].t, 1) == N - 1, "client %d counted %d rings", j, N - 1);
		CHECK(ivt_consume(cs[j].t, 1) == 0, "nothing left after consuming");
		CHECK(ivt_consume(cs[j].t, 2) == 0, "vector 2 untouched");
	}
	/* Again, seen through ivt_wait: vector 1 fires, and then nothing. */
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++)
			if (j != i)
				ivt_ring(cs[i].t, (uint16_t)cs[j].id, 1);
	for (int j = 0; j < N; j++) {
		CHECK(ivt_wait(cs[j].t, 0x6, T_MS, &fired) == 1 && fired == 0x2,
		      "client %d: ivt_wait sees vector 1 (fired 0x%llx)", j,
		      (unsigned long long)fired);
		CHECK(ivt_wait(cs[j].t, 0x6, 0, &fired) == 0 && fired == 0, "consumed by the wait");
	}

	/* Half leave, in random order. */
	printf("departure order seed %u\n", seed);
	srand(seed);
	for (int i = 0; i < N; i++)
		order[i] = i;
	for (int i = N - 1; i > 0; i--) {
		int k = rand() % (i + 1), tmp = order[i];

		order[i] = order[k], order[k] = tmp;
	}
	for (int i = 0; i < N / 2; i++) {
		struct client *c = &cs[order[i]];

		ivt_detach(c->t);
		c->t = NULL;
	}
	CHECK(converge(cs, N, T_MS), "the rest see the departures");
	for (int i = N / 2; i < N; i++) {
		struct client *c = &cs[order[i]];

		for (int k = 0; k < N / 2; k++) {
			int gone = cs[order[k]].id;

			CHECK(c->left[gone] == 1, "client %d: one leave of peer %d (got %d)", c->id,
			      gone, c->left[gone]);
			CHECK(ivt_ring(c->t, (uint16_t)gone, 1) == -ENOENT, "ring departed %d",
			      gone);
		}
		for (int k = N / 2; k < N; k++)
			CHECK(c->left[cs[order[k]].id] == 0, "no leave for a present peer");
	}

	/* Bad vectors, bad peers. */
	{
		struct ivt *t = cs[order[N - 1]].t;
		int other = cs[order[N - 2]].id;

		CHECK(ivt_ring(t, (uint16_t)other, 4) == -EINVAL, "vector 4 of 4: EINVAL");
		CHECK(ivt_ring(t, (uint16_t)other, 0xffff) == -EINVAL, "vector 65535: EINVAL");
		CHECK(ivt_ring(t, 60, 1) == -ENOENT, "unknown peer 60: ENOENT");
		CHECK(ivt_ring(t, 0xffff, 1) == -ENOENT, "peer 65535: ENOENT");
		CHECK(ivt_consume(t, 4) == -EINVAL, "consume vector 4: EINVAL");
		CHECK(ivt_vector_fd(t, 4) == -1, "no fd for vector 4");
		CHECK(ivt_wait(t, 1ull << 10, 0, &fired) == -EINVAL, "wait on no vector: EINVAL");
		CHECK(ivt_ring(t, (uint16_t)other, 3) == 0, "vector 3 of 4 is fine");
	}
	for (int i = N / 2; i < N; i++)
		ivt_detach(cs[order[i]].t);
}

static void test_map_at(void)
{
	struct client c;
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *base, *resv;
	uint64_t size, off;

	REQUIRE(client_attach(&c, daemon_.host_sock) == 0, "attach");
	base = ivt_region_base(c.t);
	size = ivt_region_size(c.t);
	CHECK(size == 16 << 20, "region size %llu", (unsigned long long)size);
	resv = mmap(NULL, (size_t)page * 4, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(resv != MAP_FAILED, "reserve");

	/* Page 0 (the header) and a page deep in the region. */
	off = size - 3 * (uint64_t)page;
	CHECK(ivt_map_at(c.t, resv + page, 0, (size_t)page, PROT_READ) == 0, "map the header");
	CHECK(!memcmp(resv + page, base, (size_t)page), "the header reads the same");
	memset(base + off, 0x5b, (size_t)page);
	CHECK(ivt_map_at(c.t, resv + 2 * page, off, (size_t)page, PROT_READ | PROT_WRITE) == 0,
	      "map a page at offset %llu", (unsigned long long)off);
	CHECK(!memcmp(resv + 2 * page, base + off, (size_t)page), "same bytes");
	resv[2 * page + 17] = 0x77;
	CHECK(base[off + 17] == 0x77, "a write through the new mapping shows in the base one");
	memset(base + off, 0, (size_t)page);

	/* Bad arguments change nothing. */
	CHECK(ivt_map_at(c.t, resv, 100, (size_t)page, PROT_READ) == -EINVAL, "offset unaligned");
	CHECK(ivt_map_at(c.t, resv + 1, 0, (size_t)page, PROT_READ) == -EINVAL, "addr unaligned");
	CHECK(ivt_map_at(c.t, resv, 0, 100, PROT_READ) == -EINVAL, "len unaligned");
	CHECK(ivt_map_at(c.t, resv, 0, 0, PROT_READ) == -EINVAL, "len 0");
	CHECK(ivt_map_at(c.t, resv, size, (size_t)page, PROT_READ) == -ERANGE, "at the end");
	CHECK(ivt_map_at(c.t, resv, size - (uint64_t)page, 2 * (size_t)page, PROT_READ) == -ERANGE,
	      "across the end");
	CHECK(ivt_map_at(c.t, resv, ~(uint64_t)(page - 1), (size_t)page, PROT_READ) == -ERANGE,
	      "offset near 2^64");
	CHECK(ivt_map_at(c.t, resv, (uint64_t)page, ~(size_t)(page - 1), PROT_READ) == -ERANGE,
	      "length near 2^64");
	CHECK(!memcmp(resv + page, base, (size_t)page), "earlier mapping still in place");
	munmap(resv, (size_t)page * 4);
	ivt_detach(c.t);
}

/* A server that accepts and then does 'what' with the connection. */
enum fake_kind { FAKE_SILENT, FAKE_BAD_VERSION, FAKE_NO_SHM };

static pid_t fake_server(const char *path, enum fake_kind kind)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	unlink(path);
	if (ls < 0 || !test_sun_set(&sun, path) || bind(ls, (struct sockaddr *)&sun, sizeof(sun)) ||
	    listen(ls, 4))
		return -1;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int s;

		signal(SIGTERM, SIG_DFL);
		s = accept(ls, NULL, NULL);
		if (kind == FAKE_BAD_VERSION) {
			ivshmem_msg_send(s, 7, -1);
		} else if (kind == FAKE_NO_SHM) {
			ivshmem_msg_send(s, 0, -1);
			ivshmem_msg_send(s, 3, -1);
			ivshmem_msg_send(s, -1, -1); /* the region without its fd */
		}
		pause();
		_exit(0);
	}
	close(ls);
	return pid;
}

static void test_attach_errors(void)
{
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST, .timeout_ms = 300};
	struct ivt *t = (struct ivt *)0x1;
	char err[256], path[192];
	int rc;

	opt.path = "/nonexistent-ivrdma-dir/host.sock";
	err[0] = '\0';
	rc = ivt_attach(&opt, &t, err, sizeof(err));
	printf("no daemon: rc %d: %s\n", rc, err);
	CHECK(rc == -ENOENT && strstr(err, "cannot connect") && t == (struct ivt *)0x1,
	      "no daemon: -ENOENT with a message: %d %s", rc, err);

	opt.path = NULL;
	CHECK(ivt_attach(&opt, &t, err, sizeof(err)) == -EINVAL, "no path: EINVAL");
	opt.path = daemon_.host_sock;
	opt.backend = IVT_BACKEND_GUEST;
	CHECK(ivt_attach(&opt, &t, err, sizeof(err)) == -EOPNOTSUPP, "guest backend here");
	opt.backend = (enum ivt_backend)77;
	CHECK(ivt_attach(&opt, &t, err, sizeof(err)) == -EOPNOTSUPP, "unknown backend");
	opt.backend = IVT_BACKEND_HOST;
	CHECK(ivt_attach(&opt, &t, NULL, 0) == 0 && t != (struct ivt *)0x1,
	      "attach with no error buffer");
	ivt_detach(t);
	ivt_detach(NULL);

	/* A socket file nobody listens on any more. */
	snprintf(path, sizeof(path), "%s/stale.sock", daemon_.dir);
	{
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		REQUIRE(s >= 0 && test_sun_set(&sun, path) &&
			    bind(s, (struct sockaddr *)&sun, sizeof(sun)) == 0,
			"bind");
		close(s);
	}
	opt.path = path;
	rc = ivt_attach(&opt, &t, err, sizeof(err));
	CHECK(rc == -ECONNREFUSED, "stale socket: ECONNREFUSED: %d %s", rc, err);

	/* Servers that do not speak the protocol. */
	for (int kind = FAKE_SILENT; kind <= FAKE_NO_SHM; kind++) {
		static const int want[] = {-ETIMEDOUT, -EPROTO, -EPROTO};
		int64_t start = test_now_ms();
		pid_t pid;

		snprintf(path, sizeof(path), "%s/fake%d.sock", daemon_.dir, kind);
		pid = fake_server(path, kind);
		REQUIRE(pid > 0, "fake server");
		rc = ivt_attach(&opt, &t, err, sizeof(err));
		printf("fake server %d: rc %d after %lld ms: %s\n", kind, rc,
		       (long long)(test_now_ms() - start), err);
		CHECK(rc == want[kind] && err[0], "fake server %d: rc %d, want %d", kind, rc,
		      want[kind]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		unlink(path);
	}
}

/*
 * Churn: each process keeps one transport attached while a second one
 * joins and leaves 200 times; the long-lived ones then must agree on
 * exactly {parent, child}, and the daemon too.
 */
static int churn_side(int ready_out, int go_in, int *other_id)
{
	struct client keep, tmp;
	int64_t deadline;
	uint64_t want;
	int32_t ids[2];
	char c;

	if (client_attach(&keep, daemon_.host_sock))
		return -1;
	ids[0] = keep.id;
	if (write(ready_out, &ids[0], sizeof(ids[0])) != sizeof(ids[0]) ||
	    read(go_in, &ids[1], sizeof(ids[1])) != sizeof(ids[1]))
		return -1;
	*other_id = ids[1];
	for (int i = 0; i < 200; i++) {
		CHECK(client_attach(&tmp, daemon_.host_sock) == 0, "churn %d: attach", i);
		if (!tmp.t)
			break;
		CHECK(ivt_peer_known(tmp.t, (uint16_t)keep.id), "churn %d: sees its sibling", i);
		ivt_detach(tmp.t);
		pump(&keep, 1, 0);
	}
	/* Both sides finished churning: now the views must settle. */
	if (write(ready_out, &c, 1) != 1 || read(go_in, &c, 1) != 1)
		return -1;
	want = 1ull << keep.id | 1ull << ids[1];
	deadline = test_now_ms() + T_MS;
	while (known_set(keep.t) != want && test_now_ms() < deadline)
		pump(&keep, 1, 20);
	CHECK(known_set(keep.t) == want, "peer %d's view converged: 0x%llx, want 0x%llx", keep.id,
	      (unsigned long long)known_set(keep.t), (unsigned long long)want);
	for (int p = 0; p < MAXP; p++) {
		if (p == keep.id || p == ids[1])
			continue;
		CHECK(keep.joined[p] == keep.left[p], "peer %d: peer %d joined %d, left %d",
		      keep.id, p, keep.joined[p], keep.left[p]);
	}
	CHECK(keep.left[ids[1]] == 0, "the sibling never left");
	/* Detach only once both have checked. */
	if (write(ready_out, &c, 1) != 1 || read(go_in, &c, 1) != 1)
		return -1;
	ivt_detach(keep.t);
	return 0;
}

static void test_churn(void)
{
	int to_child[2], to_parent[2], child_id = -1, status = -1;
	json_object *st, *peers;
	int32_t id;
	pid_t pid;
	char c;

	REQUIRE(pipe(to_child) == 0 && pipe(to_parent) == 0, "pipes");
	fflush(stdout);
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		int other, rc;

		signal(SIGSEGV, SIG_DFL);
		signal(SIGABRT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		rc = churn_side(to_parent[1], to_child[0], &other);
		fflush(stdout);
		_exit(rc || check_failures ? 1 : 0);
	}
	/* The parent's side, interleaved with the child's by the pipes. */
	{
		struct client keep, tmp;
		uint64_t want;
		int64_t deadline;

		REQUIRE(client_attach(&keep, daemon_.host_sock) == 0, "parent attaches");
		REQUIRE(read(to_parent[0], &id, sizeof(id)) == sizeof(id), "child's ID");
		child_id = id;
		id = keep.id;
		REQUIRE(write(to_child[1], &id, sizeof(id)) == sizeof(id), "send my ID");
		for (int i = 0; i < 200; i++) {
			CHECK(client_attach(&tmp, daemon_.host_sock) == 0, "churn %d: attach", i);
			if (!tmp.t)
				break;
			ivt_detach(tmp.t);
			pump(&keep, 1, 0);
		}
		REQUIRE(read(to_parent[0], &c, 1) == 1, "child done churning");
		REQUIRE(write(to_child[1], &c, 1) == 1, "go");
		want = 1ull << keep.id | 1ull << child_id;
		deadline = test_now_ms() + T_MS;
		while (known_set(keep.t) != want && test_now_ms() < deadline)
			pump(&keep, 1, 20);
		CHECK(known_set(keep.t) == want, "parent's view converged: 0x%llx, want 0x%llx",
		      (unsigned long long)known_set(keep.t), (unsigned long long)want);
		for (int p = 0; p < MAXP; p++)
			if (p != keep.id && p != child_id)
				CHECK(keep.joined[p] == keep.left[p], "peer %d joined %d, left %d",
				      p, keep.joined[p], keep.left[p]);
		st = test_daemon_status(&daemon_);
		CHECK(st && json_object_object_get_ex(st, "peers", &peers) &&
			  json_object_array_length(peers) == 2,
		      "the daemon lists exactly two peers");
		json_object_put(st);
		REQUIRE(read(to_parent[0], &c, 1) == 1, "child checked");
		REQUIRE(write(to_child[1], &c, 1) == 1, "go");
		REQUIRE(waitpid(pid, &status, 0) == pid, "reap the child");
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child's checks passed (0x%x)",
		      status);
		ivt_detach(keep.t);
	}
	close(to_child[0]), close(to_child[1]), close(to_parent[0]), close(to_parent[1]);
}

int main(void)
{
	const char *extra[] = {"--max-peers", "64", NULL};

	test_watchdog(100);
	REQUIRE(test_daemon_start(&daemon_, 0, extra) == 0, "ivrdmad starts");
	test_many_clients();
	test_map_at();
	test_attach_errors();
	test_churn();
	CHECK(test_daemon_stop(&daemon_), "clean stop");
	return check_summary();
}
