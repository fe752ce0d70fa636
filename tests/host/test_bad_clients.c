// SPDX-License-Identifier: MIT
/*
 * ivrdmad against clients that misbehave: junk, truncated handshakes, a
 * client that never reads, fd exhaustion, the peer limit, and abuse of the
 * control socket. After each case the daemon must still be alive, serve a
 * good client (a full handshake through ivt_attach), and the clients that
 * stayed connected must have seen exactly the right join and leave notices.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "ivshmem_transport.h"
#include "raw_client.h"

#define VECTORS		4
#define MAXP		64
#define T_MS		5000
#define PEER_QUEUE_MAX	(4 * 64 * 4 + 1024) /* queue_limit() in server.c, --max-peers 64 */
#define CTL_CLIENTS_MAX 32		    /* ctl.c */

/*
 * A raw client that follows the protocol and keeps its own view of the
 * peers: a peer is known once all its vectors arrived, and a leave notice
 * (a peer ID without an fd) is only right for a known peer.
 */
struct observer {
	struct raw_client raw;
	unsigned int nr_fds[MAXP];
	int fds[MAXP][VECTORS];
	unsigned int joins[MAXP], leaves[MAXP];
	unsigned int total_joins, total_leaves;
	unsigned int anomalies;
	bool eof; /* the daemon closed the connection (EOF, or a reset) */
};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void observer_apply(struct observer *o, int64_t v, int fd)
{
	if (v < 0 || v >= MAXP) {
		o->anomalies++;
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fd >= 0) {
		if (o->nr_fds[v] == VECTORS) {
			fprintf(stderr, "observer %lld: excess vector of peer %lld\n",
				(long long)o->raw.id, (long long)v);
			o->anomalies++;
			close(fd);
			return;
		}
		o->fds[v][o->nr_fds[v]++] = fd;
		if (o->nr_fds[v] == VECTORS && v != o->raw.id) {
			o->joins[v]++;
			o->total_joins++;
		}
		return;
	}
	if (o->nr_fds[v] != VECTORS || v == o->raw.id) {
		fprintf(stderr, "observer %lld: leave notice of unknown peer %lld\n",
			(long long)o->raw.id, (long long)v);
		o->anomalies++;
		return;
	}
	for (unsigned int i = 0; i < o->nr_fds[v]; i++)
		close(o->fds[v][i]);
	o->nr_fds[v] = 0;
	o->leaves[v]++;
	o->total_leaves++;
}

/* Handles what arrives within timeout_ms; false on EOF or error. */
static bool observer_pump(struct observer *o, int timeout_ms)
{
	int64_t v;
	int fd, rc;

	while ((rc = raw_recv(&o->raw, timeout_ms, &v, &fd)) == 1) {
		observer_apply(o, v, fd);
		timeout_ms = 0;
	}
	/* A reset: the daemon closed with input of ours still unread. */
	if (rc == 0 || rc == -ECONNRESET)
		o->eof = true;
	return rc == -ETIMEDOUT;
}

/* Connects and completes the handshake: version, ID, region, own vectors. */
static bool observer_open(struct observer *o, const char *path)
{
	const char *why;
	struct stat st;
	int64_t v, deadline = test_now_ms() + T_MS;
	int fd;

	memset(o, 0, sizeof(*o));
	o->raw.shm_fd = -1;
	ivshmem_msg_reader_init(&o->raw.reader);
	o->raw.sock = test_connect(path);
	if (o->raw.sock < 0)
		return false;
	if (raw_recv(&o->raw, T_MS, &v, &fd) != 1 || v != 0 || fd >= 0)
		return false;
	if (raw_recv(&o->raw, T_MS, &v, &fd) != 1 || v < 0 || v >= MAXP || fd >= 0)
		return false;
	o->raw.id = v;
	if (raw_recv(&o->raw, T_MS, &v, &fd) != 1 || v != -1 || fd < 0)
		return false;
	o->raw.shm_fd = fd;
	if (fstat(fd, &st) < 0)
		return false;
	o->raw.size = (uint64_t)st.st_size;
	o->raw.base = mmap(NULL, o->raw.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (o->raw.base == MAP_FAILED) {
		o->raw.base = NULL;
		return false;
	}
	if (ivrdma_region_open(&o->raw.region, o->raw.base, o->raw.size, &why))
		return false;
	while (o->nr_fds[o->raw.id] < VECTORS && test_now_ms() < deadline) {
		if (raw_recv(&o->raw, (int)(deadline - test_now_ms()), &v, &fd) != 1)
			return false;
		observer_apply(o, v, fd);
	}
	return o->nr_fds[o->raw.id] == VECTORS && o->anomalies == 0;
}

static void observer_close(struct observer *o)
{
	for (int p = 0; p < MAXP; p++)
		for (unsigned int i = 0; i < o->nr_fds[p]; i++)
			if (p != o->raw.id)
				close(o->fds[p][i]);
	/* raw_close closes the sockets, the region and (none listed) own fds */
	for (unsigned int i = 0; i < o->nr_fds[o->raw.id]; i++)
		close(o->fds[o->raw.id][i]);
	raw_close(&o->raw);
}

/* Pumps until total_leaves reaches 'want' or the deadline passes. */
static bool observer_wait_leaves(struct observer *o, unsigned int want, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (o->total_leaves < want && !o->eof && test_now_ms() < deadline)
		observer_pump(o, 20);
	return o->total_leaves >= want;
}

static bool observer_wait_known(struct observer *o, int64_t id, bool known, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while ((o->nr_fds[id] == VECTORS) != known && !o->eof && test_now_ms() < deadline)
		observer_pump(o, 20);
	return (o->nr_fds[id] == VECTORS) == known;
}

static struct test_daemon daemon_;
static struct observer obs[2];

/* The observers know exactly each other, and every join had its leave. */
static void check_observers(const char *after)
{
	for (int i = 0; i < 2; i++) {
		struct observer *o = &obs[i];

		observer_pump(o, 50);
		CHECK(!o->eof, "observer %d still connected after %s", i, after);
		CHECK(o->anomalies == 0, "observer %d: %u protocol anomalies after %s", i,
		      o->anomalies, after);
		for (int p = 0; p < MAXP; p++) {
			bool want = p == obs[0].raw.id || p == obs[1].raw.id;

			CHECK((o->nr_fds[p] == VECTORS) == want && (want || o->nr_fds[p] == 0),
			      "observer %d after %s: peer %d has %u vectors", i, after, p,
			      o->nr_fds[p]);
			if (p != o->raw.id && p != obs[1 - i].raw.id)
				CHECK(o->joins[p] == o->leaves[p],
				      "observer %d after %s: peer %d joined %u times, left %u", i,
				      after, p, o->joins[p], o->leaves[p]);
		}
	}
}

/* The peers listed by `status`, as a bit set. */
static uint64_t status_peers(const struct test_daemon *d, bool *ok)
{
	json_object *st = test_daemon_status(d), *peers, *id;
	uint64_t set = 0;

	*ok = st && json_object_object_get_ex(st, "peers", &peers);
	for (size_t i = 0; *ok && i < json_object_array_length(peers); i++)
		if (json_object_object_get_ex(json_object_array_get_idx(peers, i), "id", &id))
			set |= 1ull << (json_object_get_int(id) & 63);
	json_object_put(st);
	return set;
}

static int64_t status_int(const struct test_daemon *d, const char *section, const char *key)
{
	json_object *st = test_daemon_status(d), *s, *v;
	int64_t out = -1;

	if (st && json_object_object_get_ex(st, section, &s) &&
	    json_object_object_get_ex(s, key, &v))
		out = json_object_get_int64(v);
	json_object_put(st);
	return out;
}

static bool status_answers_within(const struct test_daemon *d, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	bool ok = false;

	for (;;) {
		status_peers(d, &ok);
		if (ok || test_now_ms() >= deadline)
			return ok;
		sleep_ms(20);
	}
}

/* Alive, a good client attaches and leaves, observers saw exactly that. */
static void prove_alive(struct test_daemon *d, const char *after, bool with_observers)
{
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST, .path = d->host_sock};
	unsigned int before[2] = {obs[0].total_leaves, obs[1].total_leaves};
	struct ivt *t = NULL;
	char err[256] = "";
	int rc, id;
	bool ok;

	CHECK(test_daemon_alive(d), "daemon alive after %s", after);
	rc = ivt_attach(&opt, &t, err, sizeof(err));
	CHECK(rc == 0, "good client attaches after %s: %s", after, err);
	if (rc)
		return;
	id = ivt_peer_id(t);
	CHECK(status_peers(d, &ok) & (1ull << id) && ok, "status lists good peer %d", id);
	for (int i = 0; with_observers && i < 2; i++)
		CHECK(observer_wait_known(&obs[i], id, true, T_MS),
		      "observer %d sees good peer %d after %s", i, id, after);
	ivt_detach(t);
	for (int i = 0; with_observers && i < 2; i++) {
		CHECK(observer_wait_known(&obs[i], id, false, T_MS) &&
			  obs[i].total_leaves > before[i],
		      "observer %d sees good peer %d leave after %s", i, id, after);
	}
	if (with_observers)
		check_observers(after);
}

static void test_garbage(void)
{
	unsigned int before[2] = {obs[0].total_leaves, obs[1].total_leaves};
	struct observer bad;
	char junk[100];
	int64_t id;

	REQUIRE(observer_open(&bad, daemon_.host_sock), "garbage client handshake");
	id = bad.raw.id;
	for (int i = 0; i < 2; i++)
		CHECK(observer_wait_known(&obs[i], id, true, T_MS), "observer %d knows peer %lld",
		      i, (long long)id);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 37 + 11);
	CHECK(send(bad.raw.sock, junk, sizeof(junk), MSG_NOSIGNAL) == sizeof(junk), "send junk");
	/* Whatever was still queued for it, then EOF. */
	for (int64_t deadline = test_now_ms() + T_MS; !bad.eof && test_now_ms() < deadline;)
		observer_pump(&bad, 50);
	CHECK(bad.eof, "garbage client sees EOF");
	for (int i = 0; i < 2; i++) {
		CHECK(observer_wait_leaves(&obs[i], before[i] + 1, T_MS),
		      "observer %d gets a leave notice", i);
		CHECK(obs[i].leaves[id] == 1 && obs[i].nr_fds[id] == 0,
		      "observer %d: the leave notice is for peer %lld", i, (long long)id);
	}
	observer_close(&bad);
	prove_alive(&daemon_, "garbage", true);
}

/* Waits for 'n' more leave notices at both observers. */
static void expect_transients(const unsigned int before[2], unsigned int n, const char *what)
{
	for (int i = 0; i < 2; i++) {
		CHECK(observer_wait_leaves(&obs[i], before[i] + n, 10000),
		      "observer %d: %u of %u leave notices after %s", i,
		      obs[i].total_leaves - before[i], n, what);
		CHECK(obs[i].total_leaves == before[i] + n, "observer %d: %u leaves, want %u", i,
		      obs[i].total_leaves - before[i], n);
	}
}

static void test_truncated(void)
{
	unsigned int before[2];
	struct raw_client mid;
	int64_t v;
	int fd, s;

	/* Three bytes of a message, then gone. */
	before[0] = obs[0].total_leaves, before[1] = obs[1].total_leaves;
	s = test_connect(daemon_.host_sock);
	REQUIRE(s >= 0, "connect");
	CHECK(send(s, "\x01\x02\x03", 3, MSG_NOSIGNAL) == 3, "send 3 bytes");
	close(s);
	expect_transients(before, 1, "3 bytes");
	prove_alive(&daemon_, "3 bytes and close", true);

	/* Connect and close at once, fifty times. */
	before[0] = obs[0].total_leaves, before[1] = obs[1].total_leaves;
	for (int i = 0; i < 50; i++) {
		s = test_connect(daemon_.host_sock);
		CHECK(s >= 0, "connect %d", i);
		if (s >= 0)
			close(s);
	}
	expect_transients(before, 50, "50 connect-and-close");
	prove_alive(&daemon_, "50 connect-and-close", true);

	/*
	 * Shuts its read side. No poll event tells the daemon (AF_UNIX has
	 * none for a peer's SHUT_RD); its next send fails, at once if the
	 * handshake comes after the shutdown, else with the next directory
	 * change: the good client's join. Either way it is dropped.
	 */
	before[0] = obs[0].total_leaves, before[1] = obs[1].total_leaves;
	s = test_connect(daemon_.host_sock);
	REQUIRE(s >= 0, "connect");
	CHECK(shutdown(s, SHUT_RD) == 0, "shutdown read side");
	prove_alive(&daemon_, "shutdown(SHUT_RD)", true);
	expect_transients(before, 2, "shutdown(SHUT_RD) and a good client");
	{
		struct pollfd pfd = {.fd = s, .events = 0};
		int64_t deadline = test_now_ms() + T_MS;

		while (!(pfd.revents & POLLHUP) && test_now_ms() < deadline)
			poll(&pfd, 1, 50);
		CHECK(pfd.revents & POLLHUP, "daemon closed the read-shut client");
	}
	close(s);

	/* Reads the version only, then closes with the rest unread. */
	before[0] = obs[0].total_leaves, before[1] = obs[1].total_leaves;
	memset(&mid, 0, sizeof(mid));
	mid.shm_fd = -1;
	ivshmem_msg_reader_init(&mid.reader);
	mid.sock = test_connect(daemon_.host_sock);
	REQUIRE(mid.sock >= 0, "connect");
	CHECK(raw_recv(&mid, T_MS, &v, &fd) == 1 && v == 0 && fd < 0, "version message");
	raw_close(&mid);
	expect_transients(before, 1, "close after the version");
	prove_alive(&daemon_, "close mid-handshake", true);
}

static int daemon_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* utime + stime of a process, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* After "pid (comm)": state, then fields 4..13, then utime, stime. */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

/*
 * A client with a small receive buffer that never reads, while others
 * join and leave: the daemon queues for it up to PEER_QUEUE_MAX, keeps
 * answering, then drops it and gives back every fd the queue held.
 *
 * A peer that joins and leaves takes its eventfds back out of the queue
 * (queue_drop_peer in server.c), so the cycling peers leave no dups
 * behind. What shows the queue holding fds is a witness: a peer that
 * joins once the slow client's socket is full and stays. Its eventfds
 * wait in the slow client's queue as dups until the slow client goes.
 */
#define WITNESS_AT 500	   /* cycles: the socket (about 200 messages) is full */
#define PEER_FDS   (1 + 4) /* the daemon's per peer: socket, eventfd per vector */

static void test_slow_client(void)
{
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST};
	struct test_daemon d;
	struct raw_client slow;
	struct ivt *witness = NULL;
	int base_fds, max_fds = 0, rcvbuf = 1024, cycles = 0, fd, slow_id = -1;
	bool dropped = false, ok;
	unsigned int msgs = 0;
	int64_t v, deadline;
	char err[256];

	REQUIRE(test_daemon_start(&d, 0, NULL) == 0, "ivrdmad starts");
	opt.path = d.host_sock;
	base_fds = daemon_fd_count(d.pid);
	REQUIRE(base_fds > 0, "count the daemon's fds");

	memset(&slow, 0, sizeof(slow));
	slow.shm_fd = -1;
	ivshmem_msg_reader_init(&slow.reader);
	slow.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	REQUIRE(slow.sock >= 0, "socket");
	CHECK(setsockopt(slow.sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0,
	      "SO_RCVBUF");
	{
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		REQUIRE(test_sun_set(&sun, d.host_sock), "path");
		REQUIRE(connect(slow.sock, (struct sockaddr *)&sun, sizeof(sun)) == 0, "connect");
	}
	deadline = test_now_ms() + T_MS;
	while (slow_id < 0 && test_now_ms() < deadline) {
		uint64_t set = status_peers(&d, &ok);

		if (set)
			slow_id = __builtin_ctzll(set);
		else
			sleep_ms(10);
	}
	REQUIRE(slow_id >= 0, "slow client admitted");
	base_fds += PEER_FDS;

	for (cycles = 0; cycles < 5000 && !dropped; cycles++) {
		struct ivt *t;
		int rc;

		if (cycles == WITNESS_AT) {
			REQUIRE(ivt_attach(&opt, &witness, err, sizeof(err)) == 0, "witness: %s",
				err);
			base_fds += PEER_FDS;
		}
		rc = ivt_attach(&opt, &t, err, sizeof(err));
		CHECK(rc == 0, "cycle %d: attach: %s", cycles, err);
		if (rc)
			break;
		ivt_detach(t);
		if (witness)
			CHECK(ivt_process_control(witness) >= 0, "witness reads its messages");
		if (cycles % 25 == 0 && cycles > WITNESS_AT) {
			/* Counted once the cycling peer is gone: slow client, witness. */
			uint64_t set = status_peers(&d, &ok);
			int n;

			for (int i = 0; ok && __builtin_popcountll(set) > 2 && i < 100; i++) {
				sleep_ms(1);
				set = status_peers(&d, &ok);
			}
			n = daemon_fd_count(d.pid);
			REQUIRE(ok, "cycle %d: status answers", cycles);
			dropped = !(set & (1ull << slow_id));
			if (!dropped && n > max_fds)
				max_fds = n;
		}
	}
	/* From here base_fds counts the witness, not the slow client. */
	base_fds -= PEER_FDS;
	printf("slow client dropped after %d join/leave cycles; daemon fds %d at rest, at most "
	       "%d with it queued\n",
	       cycles, base_fds, max_fds);
	CHECK(dropped, "slow client dropped within %d cycles", cycles);
	CHECK(cycles > WITNESS_AT + 25, "slow client outlived the witness's join (%d)", cycles);
	CHECK(max_fds <= base_fds + PEER_FDS + 10 + PEER_QUEUE_MAX,
	      "daemon fds bounded by the queue limit: %d (at rest %d)", max_fds, base_fds);
	CHECK(max_fds >= base_fds + PEER_FDS + 4, "the queue held the witness's eventfds (%d)",
	      max_fds);
	/* All the dups the queue held are closed again. */
	deadline = test_now_ms() + T_MS;
	while (daemon_fd_count(d.pid) != base_fds && test_now_ms() < deadline)
		sleep_ms(20);
	CHECK(daemon_fd_count(d.pid) == base_fds, "daemon fds back to %d: %d", base_fds,
	      daemon_fd_count(d.pid));
	if (witness)
		ivt_detach(witness);

	/* The slow client gets what was in flight, in order, then EOF. */
	CHECK(raw_recv(&slow, T_MS, &v, &fd) == 1 && v == 0 && fd < 0, "slow: version");
	CHECK(raw_recv(&slow, T_MS, &v, &fd) == 1 && v == slow_id && fd < 0, "slow: its ID");
	CHECK(raw_recv(&slow, T_MS, &v, &fd) == 1 && v == -1 && fd >= 0, "slow: region");
	if (fd >= 0)
		close(fd);
	for (int rc = 1; rc == 1; msgs++) {
		rc = raw_recv(&slow, T_MS, &v, &fd);
		if (fd >= 0 && rc == 1)
			close(fd);
		if (rc != 1) {
			CHECK(rc == 0, "slow client sees EOF after %u messages (rc %d)", msgs, rc);
			break;
		}
	}
	raw_close(&slow);
	prove_alive(&d, "slow client", false);
	CHECK(test_daemon_stop(&d), "clean stop");
}

static int ctl_connect_raw(const struct test_daemon *d)
{
	char path[192];

	snprintf(path, sizeof(path), "%s/ctl.sock", d->dir);
	return test_connect(path);
}

/* Reads to EOF: bytes read, or -errno (-ETIMEDOUT at the deadline). */
static ssize_t read_to_eof(int fd, char *buf, size_t cap, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);

		if (n == 0 || len == cap - 1)
			break;
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (errno != EAGAIN)
			return -errno;
		if (test_now_ms() >= deadline)
			return -ETIMEDOUT;
		poll(&pfd, 1, (int)(deadline - test_now_ms()));
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

/* Waits until fd is closed by the daemon: true on EOF or reset. */
static bool closed_by_daemon(int fd, int timeout_ms)
{
	char buf[64];
	ssize_t n = read_to_eof(fd, buf, sizeof(buf), timeout_ms);

	return n == 0 || n == -ECONNRESET;
}

static void test_fd_exhaustion(void)
{
	const char *extra[] = {"--max-peers", "64", NULL};
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST};
	struct ivt *t[64];
	int ctl[24], pending[4], nr_ok = 0, refused = 0;
	long clk = sysconf(_SC_CLK_TCK), t0, t1;
	struct test_daemon d;
	char err[256];

	REQUIRE(test_daemon_start(&d, 48, extra) == 0, "ivrdmad starts with 48 fds");
	opt.path = d.host_sock;
	while (nr_ok < 64) {
		if (ivt_attach(&opt, &t[nr_ok], err, sizeof(err))) {
			refused = 1;
			break;
		}
		nr_ok++;
	}
	printf("fd exhaustion: %d clients admitted with 48 fds, then: %s\n", nr_ok, err);
	CHECK(refused, "a client is refused before 64 (out of fds)");
	CHECK(nr_ok >= 1, "some clients admitted (%d)", nr_ok);
	/* Use up what is left with idle control clients, then knock more. */
	for (int i = 0; i < 24; i++)
		ctl[i] = ctl_connect_raw(&d);
	for (int i = 0; i < 4; i++)
		pending[i] = test_connect(d.host_sock);
	sleep_ms(200);
	t0 = cpu_ticks(d.pid);
	sleep_ms(1000);
	t1 = cpu_ticks(d.pid);
	printf("fd exhaustion: daemon used %ld ticks of CPU in 1 s (%ld per s)\n", t1 - t0, clk);
	CHECK(t0 >= 0 && t1 >= 0 && t1 - t0 < clk / 2, "daemon does not spin: %ld ticks in 1 s",
	      t1 - t0);
	CHECK(test_daemon_alive(&d), "daemon alive out of fds");
	for (int i = 0; i < 4; i++) {
		CHECK(pending[i] >= 0 && closed_by_daemon(pending[i], T_MS),
		      "client %d knocking while out of fds is closed", i);
		close(pending[i]);
	}
	for (int i = 0; i < nr_ok; i++)
		ivt_detach(t[i]);
	for (int i = 0; i < 24; i++)
		if (ctl[i] >= 0)
			close(ctl[i]);
	{
		bool ok = false;
		int64_t deadline = test_now_ms() + T_MS;

		while (test_now_ms() < deadline && (status_peers(&d, &ok) || !ok))
			sleep_ms(20);
		CHECK(ok, "status answers after the clients are gone");
	}
	prove_alive(&d, "fd exhaustion", false);
	CHECK(test_daemon_stop(&d), "clean stop");
}

struct peer_log {
	unsigned int joined[MAXP], left[MAXP];
};

static void on_peer(void *arg, uint16_t peer, enum ivt_peer_event ev)
{
	struct peer_log *l = arg;

	if (peer < MAXP)
		(ev == IVT_PEER_JOINED ? l->joined : l->left)[peer]++;
}

static void test_peer_limit(void)
{
	const char *extra[] = {"--max-peers", "4", NULL};
	struct peer_log log0 = {0};
	struct ivt_options opt = {.backend = IVT_BACKEND_HOST, .on_peer = on_peer, .cb_arg = &log0};
	struct ivt *t[4], *fifth;
	struct raw_client r;
	struct test_daemon d;
	char err[256];
	int64_t v, deadline;
	int fd, gone;
	bool ok;

	REQUIRE(test_daemon_start(&d, 0, extra) == 0, "ivrdmad starts");
	opt.path = d.host_sock;
	for (int i = 0; i < 4; i++) {
		REQUIRE(ivt_attach(&opt, &t[i], err, sizeof(err)) == 0, "client %d: %s", i, err);
		opt.cb_arg = NULL, opt.on_peer = NULL;
	}
	while (ivt_process_control(t[0]) > 0)
		;
	memset(&r, 0, sizeof(r));
	r.shm_fd = -1;
	ivshmem_msg_reader_init(&r.reader);
	r.sock = test_connect(d.host_sock);
	REQUIRE(r.sock >= 0, "5th connect");
	CHECK(raw_recv(&r, T_MS, &v, &fd) == 0, "5th connection closed with no message");
	raw_close(&r);
	CHECK(ivt_attach(&opt, &fifth, err, sizeof(err)) < 0, "5th attach fails");
	printf("peer limit: 5th attach: %s\n", err);
	CHECK(status_peers(&d, &ok) == 0xf && ok, "status lists peers 0-3 only");
	sleep_ms(100);
	CHECK(ivt_process_control(t[0]) == 0, "no notice about refused clients");

	gone = ivt_peer_id(t[2]);
	ivt_detach(t[2]);
	deadline = test_now_ms() + T_MS;
	while (!log0.left[gone] && test_now_ms() < deadline) {
		struct pollfd pfd = {.fd = ivt_control_fd(t[0]), .events = POLLIN};

		poll(&pfd, 1, 50);
		ivt_process_control(t[0]);
	}
	CHECK(log0.left[gone] == 1, "peer %d left", gone);
	t[2] = NULL;
	REQUIRE(ivt_attach(&opt, &t[2], err, sizeof(err)) == 0, "admitted after a leave: %s", err);
	CHECK(ivt_peer_id(t[2]) == gone, "the freed ID %d is reused: %d", gone, ivt_peer_id(t[2]));
	for (int i = 0; i < 4; i++)
		ivt_detach(t[i]);
	CHECK(test_daemon_stop(&d), "clean stop");
}

static void test_control_socket(void)
{
	char buf[4096], big[1000];
	int fd, idle[40], refused = 0;
	json_object *doc, *e;
	bool ok;
	ssize_t n;

	/* An unknown request: a JSON error, then close. */
	fd = ctl_connect_raw(&daemon_);
	REQUIRE(fd >= 0, "ctl connect");
	CHECK(send(fd, "frobnicate\n", 11, MSG_NOSIGNAL) == 11, "send");
	n = read_to_eof(fd, buf, sizeof(buf), T_MS);
	close(fd);
	CHECK(n > 0, "answer to an unknown request (%zd)", n);
	doc = n > 0 ? json_tokener_parse(buf) : NULL;
	CHECK(doc && json_object_object_get_ex(doc, "error", &e) &&
		  strstr(json_object_get_string(e), "frobnicate"),
	      "JSON error naming the request: %s", n > 0 ? buf : "");
	json_object_put(doc);

	/* 1000 bytes and no newline: closed without an answer. */
	fd = ctl_connect_raw(&daemon_);
	REQUIRE(fd >= 0, "ctl connect");
	memset(big, 'x', sizeof(big));
	CHECK(send(fd, big, sizeof(big), MSG_NOSIGNAL) == sizeof(big), "send 1000 bytes");
	n = read_to_eof(fd, buf, sizeof(buf), T_MS);
	CHECK(n == 0 || n == -ECONNRESET, "overlong request closed without answer: %zd", n);
	close(fd);

	/* A client that says nothing does not hold up the next one. */
	fd = ctl_connect_raw(&daemon_);
	REQUIRE(fd >= 0, "ctl connect");
	status_peers(&daemon_, &ok);
	CHECK(ok, "status answers beside a silent client");
	close(fd);

	/* 40 idle clients: CTL_CLIENTS_MAX are held, the rest refused. */
	for (int i = 0; i < 40; i++)
		idle[i] = ctl_connect_raw(&daemon_);
	for (int64_t deadline = test_now_ms() + 3000; test_now_ms() < deadline && refused < 8;) {
		refused = 0;
		for (int i = 0; i < 40; i++) {
			struct pollfd pfd = {.fd = idle[i], .events = POLLIN};

			refused += idle[i] >= 0 && poll(&pfd, 1, 0) == 1;
		}
		sleep_ms(20);
	}
	CHECK(refused == 40 - CTL_CLIENTS_MAX, "%d of 40 idle control clients refused", refused);
	for (int i = 0; i < 40; i++)
		if (idle[i] >= 0)
			close(idle[i]);
	CHECK(status_answers_within(&daemon_, T_MS),
	      "status answers once the idle clients are gone");
	CHECK(status_int(&daemon_, "region", "chunks_used") == 0, "region untouched");
	prove_alive(&daemon_, "control socket abuse", true);
}

int main(void)
{
	test_watchdog(110);
	REQUIRE(test_daemon_start(&daemon_, 0, NULL) == 0, "ivrdmad starts");
	REQUIRE(observer_open(&obs[0], daemon_.host_sock), "observer 0");
	REQUIRE(observer_open(&obs[1], daemon_.host_sock), "observer 1");
	REQUIRE(observer_wait_known(&obs[0], obs[1].raw.id, true, T_MS), "observers meet");
	check_observers("start");

	test_garbage();
	test_truncated();
	test_control_socket();
	observer_close(&obs[0]);
	observer_close(&obs[1]);
	CHECK(test_daemon_stop(&daemon_), "clean stop");

	test_peer_limit();
	test_fd_exhaustion();
	test_slow_client();
	return check_summary();
}
