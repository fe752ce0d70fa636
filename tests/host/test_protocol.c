// SPDX-License-Identifier: MIT
/*
 * Protocol conformance of ivrdmad against QEMU's ivshmem server protocol
 * (docs/specs/ivshmem-spec.rst), checked message by message and fd by fd
 * with a bare client, plus the directory ivrdma keeps beside it: node
 * identities and IP addresses (--addr, and the ones it refuses), and the
 * RDMA CM listeners a peer claims, freed when the peer leaves.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "raw_client.h"
#include "shm_atomic.h"

#define VECTORS 4
#define T_MS	3000

struct client {
	struct raw_client raw;
	int peer_fds[8][VECTORS]; /* other peers' vectors, by peer ID */
	unsigned int nr_peer_fds[8];
};

static struct test_daemon daemon_;

/* Listener entries the test claims: A's (peer 0) outlives B's (peer 1). */
#define PORT_A 7471
#define PORT_B 18515
static int listener_a = -1, listener_b = -1;

/* Version 0, my ID, then the region fd: each checked exactly. */
static void expect_opening(struct client *c, int64_t want_id)
{
	int64_t v;
	int fd;
	struct stat st;
	const char *why;

	REQUIRE(raw_recv(&c->raw, T_MS, &v, &fd) == 1, "version message");
	CHECK(v == 0 && fd < 0, "protocol version %lld fd %d", (long long)v, fd);
	REQUIRE(raw_recv(&c->raw, T_MS, &v, &fd) == 1, "ID message");
	CHECK(v == want_id && fd < 0, "peer ID %lld (want %lld) fd %d", (long long)v,
	      (long long)want_id, fd);
	c->raw.id = v;
	REQUIRE(raw_recv(&c->raw, T_MS, &v, &fd) == 1, "shm message");
	REQUIRE(v == -1 && fd >= 0, "shm message is -1 with an fd: %lld %d", (long long)v, fd);
	c->raw.shm_fd = fd;
	REQUIRE(fstat(fd, &st) == 0 && st.st_size == 16 << 20, "region size %lld",
		(long long)st.st_size);
	c->raw.size = (uint64_t)st.st_size;
	c->raw.base = mmap(NULL, c->raw.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(c->raw.base != MAP_FAILED, "mmap region");
	CHECK(ivrdma_region_open(&c->raw.region, c->raw.base, c->raw.size, &why) == 0, "%s", why);
	CHECK(c->raw.region.nr_vectors == VECTORS, "vectors in header %u",
	      c->raw.region.nr_vectors);
}

/* 'count' vectors of 'peer', each an eventfd, in one run. */
static void expect_vectors(struct client *c, int64_t peer)
{
	for (int i = 0; i < VECTORS; i++) {
		int64_t v;
		int fd;

		REQUIRE(raw_recv(&c->raw, T_MS, &v, &fd) == 1, "vector %d of peer %lld", i,
			(long long)peer);
		CHECK(v == peer && fd >= 0, "got %lld fd %d, want peer %lld with an fd",
		      (long long)v, fd, (long long)peer);
		CHECK(fd < 0 || fd_is_eventfd(fd), "fd %d is an eventfd", fd);
		if (fd < 0 || v < 0 || v >= 8)
			continue;
		if (v == c->raw.id)
			c->raw.own[c->raw.nr_own++] = fd;
		else
			c->peer_fds[v][c->nr_peer_fds[v]++] = fd;
	}
}

static void expect_leave(struct client *c, int64_t peer)
{
	int64_t v;
	int fd;

	REQUIRE(raw_recv(&c->raw, T_MS, &v, &fd) == 1, "leave notice of %lld", (long long)peer);
	CHECK(v == peer && fd < 0, "leave notice %lld fd %d, want %lld without fd", (long long)v,
	      fd, (long long)peer);
	for (unsigned int i = 0; v >= 0 && v < 8 && i < c->nr_peer_fds[v]; i++)
		close(c->peer_fds[v][i]);
	if (v >= 0 && v < 8)
		c->nr_peer_fds[v] = 0;
}

static void client_open(struct client *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->raw.shm_fd = -1;
	ivshmem_msg_reader_init(&c->raw.reader);
	c->raw.sock = test_connect(test_daemon_sock(&daemon_, name));
	REQUIRE(c->raw.sock >= 0, "connect to %s", name);
}

static void client_close(struct client *c)
{
	for (int p = 0; p < 8; p++)
		for (unsigned int i = 0; i < c->nr_peer_fds[p]; i++)
			close(c->peer_fds[p][i]);
	raw_close(&c->raw);
}

static json_object *find_node(json_object *status, const char *name)
{
	json_object *nodes, *n, *v;

	if (!json_object_object_get_ex(status, "nodes", &nodes))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(nodes); i++) {
		n = json_object_array_get_idx(nodes, i);
		if (json_object_object_get_ex(n, "name", &v) &&
		    !strcmp(json_object_get_string(v), name))
			return n;
	}
	return NULL;
}

static const char *node_field(json_object *status, const char *name, const char *field)
{
	json_object *n = find_node(status, name), *v;

	return n && json_object_object_get_ex(n, field, &v) ? json_object_get_string(v) : "";
}

static const char *region_prefix(json_object *status)
{
	json_object *r, *v;

	return json_object_object_get_ex(status, "region", &r) &&
		       json_object_object_get_ex(r, "subnet_prefix", &v)
		   ? json_object_get_string(v)
		   : "";
}

static const char *str_of(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static int64_t int_of(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -999;
}

/* An address as the region keeps it: IPv4 as IPv4-mapped IPv6. */
static void ip16(const char *text, uint8_t out[16])
{
	memset(out, 0, 16);
	if (inet_pton(AF_INET, text, out + 12) == 1) {
		out[10] = out[11] = 0xff;
		return;
	}
	REQUIRE(inet_pton(AF_INET6, text, out) == 1, "test address %s", text);
}

/* Does the region's entry of 'node' list exactly the n addresses 'want', in order? */
static bool region_addrs_are(const struct ivrdma_region *r, uint32_t node, const char *const *want,
			     uint32_t n)
{
	const struct ivrdma_node *e = ivrdma_region_node(r, node);
	uint8_t ip[16], none[16] = {0};

	if (e->nr_addrs != n)
		return false;
	for (uint32_t i = 0; i < IVRDMA_NODE_ADDRS; i++) {
		if (i < n)
			ip16(want[i], ip);
		if (memcmp(e->addrs[i], i < n ? ip : none, 16) != 0)
			return false;
	}
	return true;
}

/* A node's "addrs" in a status, comma-joined: "" for none (or no such array). */
static const char *status_addrs(json_object *status, const char *name)
{
	static char buf[256];
	json_object *a;

	buf[0] = '\0';
	if (!json_object_object_get_ex(find_node(status, name), "addrs", &a) ||
	    !json_object_is_type(a, json_type_array))
		return buf;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		size_t used = strlen(buf);

		snprintf(buf + used, sizeof(buf) - used, "%s%s", i ? "," : "",
			 json_object_get_string(json_object_array_get_idx(a, i)));
	}
	return buf;
}

/* The status's listener on 'port', or NULL. */
static json_object *find_listener(json_object *status, int64_t port)
{
	json_object *ls;

	if (!json_object_object_get_ex(status, "listeners", &ls))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(ls); i++)
		if (int_of(json_object_array_get_idx(ls, i), "port") == port)
			return json_object_array_get_idx(ls, i);
	return NULL;
}

/*
 * Claims a free listener entry for owner tag 'tag' with the fields of
 * 'want', as a CM agent does (ivrdma_layout.h, "Listening"); returns its
 * index, or -1 if none is free.
 */
static int claim_listener(const struct ivrdma_region *r, uint32_t tag,
			  const struct ivrdma_listener *want)
{
	const size_t from = offsetof(struct ivrdma_listener, node);

	for (uint32_t i = 0; i < r->listeners.entries; i++) {
		struct ivrdma_listener *l = ivrdma_table_entry(r, &r->listeners, i);
		uint32_t free_tag = 0;

		if (!shm_cas32(&l->hdr.owner, &free_tag, tag))
			continue;
		memcpy((uint8_t *)l + from, (const uint8_t *)want + from, sizeof(*l) - from);
		shm_store_release32(&l->state, IVRDMA_LISTENER_LISTENING);
		return (int)i;
	}
	return -1;
}

/* The owner tag of the peer now holding ID 'id'. */
static uint32_t tag_of(const struct ivrdma_region *r, uint16_t id)
{
	return ivrdma_owner_tag(id, ivrdma_region_peer(r, id)->gen);
}

/* `ivrdma status` as text ($IVRDMA), into 'buf'; false if it did not run well. */
static bool status_text(char *buf, size_t len)
{
	const char *tool = getenv("IVRDMA");
	char cmd[512];
	size_t n;
	FILE *f;

	buf[0] = '\0';
	if (!tool)
		return false;
	snprintf(cmd, sizeof(cmd), "'%s' --dir '%s' status", tool, daemon_.dir);
	f = popen(cmd, "r");
	if (!f)
		return false;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	return pclose(f) == 0;
}

/* The line of 'text' holding 'needle', copied into 'line' ("" if none). */
static const char *line_with(const char *text, const char *needle, char *line, size_t len)
{
	const char *at = strstr(text, needle), *start, *end;

	line[0] = '\0';
	if (!at)
		return line;
	for (start = at; start > text && start[-1] != '\n'; start--)
		;
	end = strchr(at, '\n');
	snprintf(line, len, "%.*s", (int)(end ? end - start : (ptrdiff_t)strlen(start)), start);
	return line;
}

static void test_first_client(struct client *a)
{
	struct ivrdma_peer *e;

	client_open(a, "host");
	expect_opening(a, 0);
	expect_vectors(a, 0);
	CHECK(raw_quiet(&a->raw, 200), "nothing more after the handshake");
	e = ivrdma_region_peer(&a->raw.region, 0);
	CHECK(shm_load_acquire32(&e->state) == IVRDMA_PEER_ACTIVE, "peer 0 active");
	CHECK(e->node == 0 && e->pid == (uint32_t)getpid() && e->gen == 1,
	      "peer entry node %u pid %u gen %u", e->node, e->pid, e->gen);
	eventfd_drain(a->raw.own[IVRDMA_VEC_CONTROL]);
}

/* B joins: QEMU's order is everyone else's vectors, then B's own. */
static void test_second_client(struct client *a, struct client *b)
{
	client_open(b, "host");
	expect_opening(b, 1);
	expect_vectors(b, 0);
	expect_vectors(b, 1);
	CHECK(raw_quiet(&b->raw, 200), "nothing more for B");
	expect_vectors(a, 1);
	CHECK(raw_quiet(&a->raw, 200), "nothing more for A");
	CHECK(eventfd_drain(a->raw.own[IVRDMA_VEC_CONTROL]) >= 1, "A's control vector rang");

	/* The fds are the very same eventfds: a doorbell crosses. */
	eventfd_drain(b->raw.own[2]);
	eventfd_ring(a->peer_fds[1][2]);
	CHECK(eventfd_drain(b->raw.own[2]) == 1, "A rang B's vector 2");
	eventfd_ring(b->peer_fds[0][3]);
	eventfd_ring(b->peer_fds[0][3]);
	CHECK(eventfd_drain(a->raw.own[3]) == 2, "B rang A's vector 3 twice");
	CHECK(eventfd_drain(a->raw.own[1]) == 0, "vector 1 untouched");
}

static void test_vm_node(struct client *a, struct client *b, struct client *v)
{
	struct client dup;
	json_object *st;
	int64_t val;
	int fd;

	client_open(v, "vm1");
	expect_opening(v, 2);
	expect_vectors(v, 0);
	expect_vectors(v, 1);
	expect_vectors(v, 2);
	expect_vectors(a, 2);
	expect_vectors(b, 2);
	CHECK(ivrdma_region_peer(&v->raw.region, 2)->node == 1, "VM peer in node 1");

	/* A VM has one device: a second connection for it is refused. */
	client_open(&dup, "vm1");
	CHECK(raw_recv(&dup.raw, T_MS, &val, &fd) == 0, "second vm1 connection closed at once");
	client_close(&dup);

	st = test_daemon_status(&daemon_);
	REQUIRE(st, "status");
	CHECK(!strcmp(node_field(st, "vm1", "state"), "active"), "vm1 active");
	CHECK(!strcmp(node_field(st, "vm1", "lid"), "2"), "vm1 LID 2");
	CHECK(!strcmp(node_field(st, "host", "lid"), "1"), "host LID 1");
	CHECK(strcmp(node_field(st, "vm1", "gid"), node_field(st, "host", "gid")) != 0,
	      "distinct GIDs");
	CHECK(!strncmp(node_field(st, "vm1", "gid"), region_prefix(st), 19) &&
		  strlen(region_prefix(st)) == 19,
	      "GID %s in the region's subnet %s", node_field(st, "vm1", "gid"), region_prefix(st));
	CHECK(strncmp(region_prefix(st), "fe80:0000:0000:0000", 19) != 0, "not the default subnet");
	json_object_put(st);
}

static void test_leave_and_reuse(struct client *a, struct client *b, struct client *v)
{
	uint64_t gen_before =
	    shm_load_acquire64(&ivrdma_region_header(&a->raw.region)->dir_generation);
	struct ivrdma_peer *e = ivrdma_region_peer(&a->raw.region, 1);
	struct ivrdma_peer *e3 = ivrdma_region_peer(&a->raw.region, 3);
	struct client c;

	client_close(b);
	expect_leave(a, 1);
	expect_leave(v, 1);
	CHECK(shm_load_acquire32(&e->state) == IVRDMA_PEER_FREE, "peer 1 entry freed");
	CHECK(shm_load_acquire64(&ivrdma_region_header(&a->raw.region)->dir_generation) >
		  gen_before,
	      "directory generation moved");

	/*
	 * The freed ID 1 is not handed out again while others are free (QEMU
	 * breaks on a returning ID): the newcomer is 3.
	 */
	client_open(&c, "host");
	expect_opening(&c, 3);
	CHECK(e3->gen == 1, "generation of new ID 3: %u", e3->gen);
	expect_vectors(&c, 0);
	expect_vectors(&c, 2);
	expect_vectors(&c, 3);
	expect_vectors(a, 3);
	expect_vectors(v, 3);
	client_close(&c);
	expect_leave(a, 3);
	expect_leave(v, 3);
}

static void test_vm_returns(struct client *a, struct client *v)
{
	json_object *st;
	char gid[64], lid[8];

	st = test_daemon_status(&daemon_);
	snprintf(gid, sizeof(gid), "%s", node_field(st, "vm1", "gid"));
	snprintf(lid, sizeof(lid), "%s", node_field(st, "vm1", "lid"));
	json_object_put(st);
	client_close(v);
	expect_leave(a, 2);
	st = test_daemon_status(&daemon_);
	CHECK(!strcmp(node_field(st, "vm1", "state"), "gone"), "vm1 gone");
	json_object_put(st);

	client_open(v, "vm1");
	expect_opening(v, 4); /* a new peer ID; the node's identity stays */
	expect_vectors(v, 0);
	expect_vectors(v, 4);
	expect_vectors(a, 4);
	st = test_daemon_status(&daemon_);
	CHECK(!strcmp(node_field(st, "vm1", "state"), "active"), "vm1 back");
	CHECK(!strcmp(node_field(st, "vm1", "gid"), gid), "same GID after return");
	CHECK(!strcmp(node_field(st, "vm1", "lid"), lid), "same LID after return");
	CHECK(!strcmp(node_field(st, "vm1", "epoch"), "2"), "epoch 2");
	json_object_put(st);
}

/* Command lines ivrdmad must refuse, each with a word its reason must hold. */
static void test_bad_addrs(void)
{
	static const struct {
		const char *args[8];
		const char *why;
	} cases[] = {
	    {{"--vm", "vm1", "--addr", "vm1=127.0.0.1"}, "loopback"},
	    {{"--addr", "host=::1"}, "loopback"},
	    {{"--addr", "host=::ffff:127.0.0.2"}, "loopback"},
	    {{"--addr", "host=0.0.0.0"}, "unspecified"},
	    {{"--addr", "host=::"}, "unspecified"},
	    {{"--vm", "vm1", "--addr", "vm1=224.0.0.251"}, "multicast"},
	    {{"--addr", "host=ff02::1"}, "multicast"},
	    {{"--vm", "vm1", "--addr", "vm2=10.0.0.5"}, "no node 'vm2'"},
	    {{"--addr", "host=10.0.0.256"}, "not an IPv4 or IPv6 address"},
	    {{"--addr", "host"}, "NODE=IP"},
	    {{"--addr", "host=10.0.0.1,"}, "empty"},
	    {{"--vm", "vm1", "--addr", "vm1=10.0.0.11", "--addr", "host=::ffff:10.0.0.11"},
	     "given twice"},
	    {{"--addr", "host=10.0.0.1,10.0.0.2", "--addr", "host=fd00::3,fd00::4"}, "at most 3"},
	};
	char err[1024], cmd[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = test_daemon_run_to_exit(cases[i].args, 5000, err, sizeof(err));

		cmd[0] = '\0';
		for (const char *const *a = cases[i].args; *a; a++)
			snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " %s", *a);
		CHECK(rc == 2, "ivrdmad%s: exit status %d, want 2 (bad options)", cmd, rc);
		CHECK(strstr(err, "--addr") && strstr(err, cases[i].why),
		      "ivrdmad%s says why ('%s'): %s", cmd, cases[i].why, err);
	}
}

/* main()'s --addr options, in the region's node entries and in status. */
static void test_node_addrs(struct client *a)
{
	static const char *const host[] = {"10.0.0.1"};
	static const char *const vm1[] = {"10.0.0.11", "fd00::11", "10.0.0.12"};
	json_object *st = test_daemon_status(&daemon_);

	REQUIRE(st, "status");
	CHECK(region_addrs_are(&a->raw.region, 0, host, 1), "host's entry lists 10.0.0.1 only");
	CHECK(region_addrs_are(&a->raw.region, 1, vm1, 3),
	      "vm1's entry lists 10.0.0.11, fd00::11, 10.0.0.12 (IPv4 mapped), in order");
	CHECK(!strcmp(status_addrs(st, "host"), "10.0.0.1"), "status: host addrs '%s'",
	      status_addrs(st, "host"));
	CHECK(!strcmp(status_addrs(st, "vm1"), "10.0.0.11,fd00::11,10.0.0.12"),
	      "status: vm1 addrs '%s'", status_addrs(st, "vm1"));
	json_object_put(st);
}

/* `ivrdma status` shows the addresses and both listeners of test_listeners. */
static void check_status_text(void)
{
	char text[16384], line[512];

	CHECK(status_text(text, sizeof(text)), "$IVRDMA status runs: %s", text);
	line_with(text, "vm1 ", line, sizeof(line));
	CHECK(strstr(line, " 10.0.0.11,fd00::11,10.0.0.12"), "vm1's line: '%s'", line);
	CHECK(strstr(text, "\nLISTENERS\n"), "a LISTENERS section: %s", text);
	line_with(text, " 18515 ", line, sizeof(line));
	CHECK(strstr(line, "host ") && strstr(line, " udp ") && strstr(line, " 10.0.0.1 ") &&
		  strstr(line, " 0x99"),
	      "B's listener line: '%s'", line);
	line_with(text, " 7471 ", line, sizeof(line));
	CHECK(strstr(line, " tcp ") && strstr(line, " * ") && strstr(line, " 0x1234"),
	      "A's listener line: '%s'", line);
}

/* A and B (both host peers) each claim a listener; status shows both. */
static void test_listeners(struct client *a)
{
	const struct ivrdma_region *r = &a->raw.region;
	struct ivrdma_listener la = {.port_space = 0x0106,
				     .port = PORT_A,
				     .agent_qpn = 0x1234,
				     .agent_qkey = 0x11111111,
				     .listen_id = 1};
	struct ivrdma_listener lb = {.port_space = 0x0111,
				     .port = PORT_B,
				     .bound = 1,
				     .agent_qpn = 0x99,
				     .agent_qkey = 0x22222222,
				     .listen_id = 2};
	json_object *st, *l, *ls = NULL;

	ip16("10.0.0.1", lb.addr);
	listener_a = claim_listener(r, tag_of(r, 0), &la);
	listener_b = claim_listener(r, tag_of(r, 1), &lb);
	REQUIRE(listener_a >= 0 && listener_b >= 0, "listener entries claimed");
	st = test_daemon_status(&daemon_);
	REQUIRE(st, "status");
	CHECK(json_object_object_get_ex(st, "listeners", &ls) && json_object_array_length(ls) == 2,
	      "two listeners in status");
	l = find_listener(st, PORT_A);
	CHECK(!strcmp(str_of(l, "node"), "host") && !strcmp(str_of(l, "port_space"), "tcp") &&
		  !strcmp(str_of(l, "addr"), "*") && int_of(l, "peer") == 0 &&
		  int_of(l, "pid") == getpid() && int_of(l, "agent_qpn") == 0x1234 &&
		  int_of(l, "agent_qkey") == 0x11111111 && int_of(l, "index") == listener_a,
	      "A's listener: %s", l ? json_object_to_json_string(l) : "missing");
	l = find_listener(st, PORT_B);
	CHECK(!strcmp(str_of(l, "node"), "host") && !strcmp(str_of(l, "port_space"), "udp") &&
		  !strcmp(str_of(l, "addr"), "10.0.0.1") && int_of(l, "peer") == 1 &&
		  int_of(l, "pid") == getpid() && int_of(l, "agent_qpn") == 0x99,
	      "B's listener: %s", l ? json_object_to_json_string(l) : "missing");
	json_object_put(st);
	check_status_text();
}

/*
 * A listener whose owner tag names peer 'id' but not the peer connected
 * with that ID (a leftover the daemon has not freed): status shows the
 * peer, and no pid. The test releases the entry after.
 */
static void stale_listener(const struct ivrdma_region *r, uint32_t tag, int id)
{
	struct ivrdma_listener want = {.port_space = 0x013f, .port = 9999}, *l;
	int idx = claim_listener(r, tag, &want);
	json_object *st;

	REQUIRE(idx >= 0, "listener of tag %#x claimed", tag);
	st = test_daemon_status(&daemon_);
	CHECK(int_of(find_listener(st, 9999), "peer") == id &&
		  int_of(find_listener(st, 9999), "pid") == -1 &&
		  !strcmp(str_of(find_listener(st, 9999), "port_space"), "ib"),
	      "listener of tag %#x: %s", tag, json_object_to_json_string(find_listener(st, 9999)));
	json_object_put(st);
	l = ivrdma_table_entry(r, &r->listeners, (uint32_t)idx);
	shm_store_release32(&l->state, IVRDMA_LISTENER_FREE);
	shm_store_release32(&l->hdr.owner, 0);
}

/*
 * B has left: its listener entry is free and wiped, A's untouched. An
 * entry whose tag names a peer no longer connected shows no pid.
 */
static void test_listeners_reclaimed(struct client *a)
{
	const struct ivrdma_region *r = &a->raw.region;
	struct ivrdma_listener *la = ivrdma_table_entry(r, &r->listeners, (uint32_t)listener_a);
	struct ivrdma_listener *lb = ivrdma_table_entry(r, &r->listeners, (uint32_t)listener_b);
	json_object *st = test_daemon_status(&daemon_);

	REQUIRE(st, "status");
	CHECK(shm_load_acquire32(&lb->hdr.owner) == 0 &&
		  shm_load_acquire32(&lb->state) == IVRDMA_LISTENER_FREE && lb->port == 0,
	      "B's listener freed when B left: owner %#x state %u port %u", lb->hdr.owner,
	      lb->state, lb->port);
	CHECK(shm_load_acquire32(&la->hdr.owner) == tag_of(r, 0) &&
		  shm_load_acquire32(&la->state) == IVRDMA_LISTENER_LISTENING && la->port == PORT_A,
	      "A's listener kept");
	CHECK(!find_listener(st, PORT_B), "status no longer lists B's listener");
	CHECK(find_listener(st, PORT_A), "status still lists A's listener");
	json_object_put(st);

	stale_listener(r, ivrdma_owner_tag(1, 1), 1); /* B, gone */
	/* ID 0 with a generation A does not have: not A's. */
	stale_listener(r, ivrdma_owner_tag(0, (uint16_t)(ivrdma_region_peer(r, 0)->gen + 1)), 0);
}

int main(void)
{
	/* An --addr may name a VM given after it; vm1's third is IPv4, written mapped. */
	const char *extra[] = {
	    "--addr", "vm1=10.0.0.11,fd00::11", "--vm",	       "vm1", "--addr", "host=10.0.0.1",
	    "--addr", "vm1=::ffff:10.0.0.12",	"--max-peers", "8",   NULL};
	struct client a, b, v;

	test_watchdog(60);
	test_bad_addrs();
	REQUIRE(test_daemon_start(&daemon_, 0, extra) == 0, "ivrdmad starts");
	test_first_client(&a);
	test_node_addrs(&a);
	test_second_client(&a, &b);
	test_listeners(&a);
	test_vm_node(&a, &b, &v);
	test_leave_and_reuse(&a, &b, &v);
	test_listeners_reclaimed(&a);
	test_vm_returns(&a, &v);
	client_close(&v);
	client_close(&a);
	CHECK(test_daemon_stop(&daemon_), "clean stop");
	return check_summary();
}
