// SPDX-License-Identifier: MIT
/*
 * Protocol conformance of ivrdmad against QEMU's ivshmem server protocol
 * (docs/specs/ivshmem-spec.rst), checked message by message and fd by fd
 * with a bare client, plus the directory ivrdma keeps beside it.
 */
#include <errno.h>
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

int main(void)
{
	const char *extra[] = {"--vm", "vm1", "--max-peers", "8", NULL};
	struct client a, b, v;

	test_watchdog(60);
	REQUIRE(test_daemon_start(&daemon_, 0, extra) == 0, "ivrdmad starts");
	test_first_client(&a);
	test_second_client(&a, &b);
	test_vm_node(&a, &b, &v);
	test_leave_and_reuse(&a, &b, &v);
	test_vm_returns(&a, &v);
	client_close(&v);
	client_close(&a);
	CHECK(test_daemon_stop(&daemon_), "clean stop");
	return check_summary();
}
