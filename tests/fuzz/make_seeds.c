// SPDX-License-Identifier: MIT
/*
 * Writes the seed corpus of the harnesses: regions formatted by the real
 * formatter (region_format) with valid objects patched in, and valid
 * protocol and control messages. Run by hand when a format changes:
 *   make_seeds tests/fuzz/corpus
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"
#include "fuzz_image.h"

struct seed {
	uint8_t buf[65536];
	size_t len;
};

static void put(struct seed *s, const void *p, size_t len)
{
	if (s->len + len > sizeof(s->buf))
		abort();
	memcpy(s->buf + s->len, p, len);
	s->len += len;
}

static void patch(struct seed *s, enum fuzz_patch_kind kind, uint16_t index, uint32_t offset,
		  const void *p, size_t len)
{
	struct fuzz_patch h = {
	    .kind = (uint8_t)kind, .len = (uint8_t)len, .index = index, .offset = offset};

	if (len > 255)
		abort();
	put(s, &h, sizeof(h));
	put(s, p, len);
}

static void save(const char *dir, const char *harness, const char *name, const struct seed *s)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, harness);
	if (mkdir(path, 0755) && errno != EEXIST)
		abort();
	snprintf(path, sizeof(path), "%s/%s/%s", dir, harness, name);
	f = fopen(path, "wb");
	if (!f || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f))
		abort();
}

static uint8_t *image;

/* A formatted header, then params. */
static void start(struct seed *s, uint32_t chunk_shift, const struct fuzz_params *p)
{
	struct region_store store = {.fd = -1, .base = image, .size = FUZZ_IMAGE_SIZE};
	struct daemon_config cfg = {
	    .region_size = FUZZ_IMAGE_SIZE,
	    .nr_vectors = 4,
	    .max_peers = 64,
	    .chunk_shift = chunk_shift,
	    .subnet_prefix = 0xfd00000000000001ull,
	};

	memset(image, 0, IVRDMA_HEADER_SIZE);
	if (region_format(&store, &cfg))
		abort();
	/* The same seeds on every run: no random ID, no PID. */
	((struct ivrdma_region_header *)image)->region_id = 0x5eed;
	((struct ivrdma_region_header *)image)->daemon_pid = 1;
	s->len = 0;
	put(s, image, IVRDMA_HEADER_SIZE);
	put(s, p, sizeof(*p));
}

static void region_seeds(const char *dir)
{
	struct fuzz_params p = {
	    .peer = 1, .gen = 1, .count = 2, .hint = 5, .first = 3, .laddr = 0x10000, .len = 4096};
	uint32_t tag = ivrdma_owner_tag(1, 1);
	struct seed s;

	start(&s, IVRDMA_DEFAULT_CHUNK_SHIFT, &p);
	save(dir, "fuzz_region", "formatted", &s);
	start(&s, IVRDMA_MIN_CHUNK_SHIFT, &p);
	patch(&s, FUZZ_TAG, 3, 0, &tag, sizeof(tag));
	patch(&s, FUZZ_QP, 7, 0, &tag, sizeof(tag));
	patch(&s, FUZZ_MR, 9, 0, &tag, sizeof(tag));
	save(dir, "fuzz_region", "small-chunks-owned", &s);
}

/* Peer 1 (me) and peer 2 (the target), both live on node 0 (LID 1). */
#define ME     ivrdma_owner_tag(1, 1)
#define TARGET ivrdma_owner_tag(2, 1)
#define ACCESS_ALL                                                                                 \
	(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |               \
	 IBV_ACCESS_REMOTE_ATOMIC)

static void obj(struct seed *s, enum fuzz_patch_kind kind, uint16_t index, const void *p,
		size_t len)
{
	patch(s, kind, index, 0, p, len);
}

static void directory(struct seed *s)
{
	struct ivrdma_node node = {.state = IVRDMA_NODE_ACTIVE, .lid = 1, .kind = IVRDMA_NODE_HOST};
	struct ivrdma_peer peer = {.state = IVRDMA_PEER_ACTIVE, .node = 0, .gen = 1};

	obj(s, FUZZ_NODE, 0, &node, 40);
	obj(s, FUZZ_PEER, 1, &peer, 16);
	obj(s, FUZZ_PEER, 2, &peer, 16);
}

/* A CQ slot and its ring in chunk 'chunk', with 'ready' entries published. */
static void cq(struct seed *s, const struct ivrdma_region *r, uint16_t slot, uint32_t owner,
	       uint16_t chunk, uint32_t ready)
{
	struct ivrdma_cq_slot c = {
	    .hdr.owner = owner, .ring_offset = ivrdma_chunk_offset(r, chunk), .nr_entries = 16};

	uint64_t prod = ready, g = ivrdma_cq_geometry(0, c.ring_offset, 4);

	obj(s, FUZZ_CQ, slot, &c, 32);
	patch(s, FUZZ_CQ, slot, offsetof(struct ivrdma_cq_slot, prod), &prod, sizeof(prod));
	patch(s, FUZZ_CQ, slot, offsetof(struct ivrdma_cq_slot, geometry), &g, sizeof(g));
	patch(s, FUZZ_TAG, chunk, 0, &owner, sizeof(owner));
	for (uint32_t i = 0; i < ready; i++) {
		struct ivrdma_cqe e = {.wr_id = i,
				       .seq = i + 1,
				       .opcode = IBV_WC_RECV,
				       .byte_len = 64,
				       .qp_num = IVRDMA_QPN_BASE,
				       .rq_ticket = IVRDMA_RQ_TICKET(1, i)};

		patch(s, FUZZ_CHUNK, chunk, i * sizeof(e), &e, sizeof(e));
	}
}

/* The target's QP (QPN 5) connected to mine (QPN 2), two receives posted. */
static void target_qp(struct seed *s, const struct ivrdma_region *r, uint32_t type)
{
	struct ivrdma_qp_slot q = {
	    .hdr = {.owner = TARGET, .seq = 1},
	    .state = IBV_QPS_RTS,
	    .qp_type = type,
	    .qpn = 5,
	    .pd_handle = 7,
	    .recv_cq = 1,
	    .access = ACCESS_ALL,
	    .dest_qpn = IVRDMA_QPN_BASE,
	    .dest_lid = 1,
	    .qkey = 0x11111111,
	    .rq = {.ring_offset = ivrdma_chunk_offset(r, 2),
		   .nr_entries = 16,
		   .stride = IVRDMA_RQ_STRIDE(1),
		   .max_sge = 1},
	};
	uint64_t prod = 2;

	obj(s, FUZZ_QP, 3, &q, offsetof(struct ivrdma_qp_slot, async));
	patch(s, FUZZ_QP, 3, offsetof(struct ivrdma_qp_slot, rq_prod), &prod, sizeof(prod));
	for (uint32_t i = 0; i < 2; i++) {
		struct ivrdma_recv_wqe w = {.wr_id = 10 + i, .num_sge = 1};
		struct ivrdma_sge sge = {
		    .addr = 0x1000, .length = 4096, .lkey = ivrdma_mr_key(1, 0)};
		uint32_t at = i * (uint32_t)IVRDMA_RQ_STRIDE(1);

		patch(s, FUZZ_CHUNK, 2, at, &w, sizeof(w));
		patch(s, FUZZ_CHUNK, 2, at + (uint32_t)sizeof(w), &sge, sizeof(sge));
	}
}

static void mr(struct seed *s, const struct ivrdma_region *r, uint16_t slot, uint32_t owner,
	       uint64_t iova, uint32_t pd_handle, uint16_t chunk)
{
	struct ivrdma_mr_slot m = {.hdr.owner = owner,
				   .key = ivrdma_mr_key(slot, 0),
				   .access = ACCESS_ALL,
				   .iova = iova,
				   .length = 0x10000,
				   .region_offset = ivrdma_chunk_offset(r, chunk),
				   .pd_handle = pd_handle};

	obj(s, FUZZ_MR, slot, &m, 48);
}

static void my_srq(struct seed *s, const struct ivrdma_region *r)
{
	struct ivrdma_srq_slot q = {
	    .hdr.owner = ME,
	    .pd_handle = 1,
	    .limit = 4, /* armed: the receive posted leaves it below */
	    .rq = {.ring_offset = ivrdma_chunk_offset(r, 5),
		   .nr_entries = 16,
		   .stride = IVRDMA_RQ_STRIDE(1),
		   .max_sge = 1},
	};

	obj(s, FUZZ_SRQ, 0, &q, 48);
}

static void provider_seed(const char *dir, const char *name, uint16_t ops, uint32_t type)
{
	struct fuzz_params p = {.peer = 1,
				.gen = 1,
				.lid = 1,
				.ops = ops,
				.qpn = 5,
				.lkey = ivrdma_mr_key(2, 0),
				.rkey = ivrdma_mr_key(1, 0),
				.laddr = 0x2000,
				.raddr = 0x1008,
				.len = 64,
				.value = 3};
	struct ivrdma_region r;
	const char *why;
	struct seed s;

	start(&s, IVRDMA_DEFAULT_CHUNK_SHIFT, &p);
	if (ivrdma_region_open(&r, image, FUZZ_IMAGE_SIZE, &why))
		abort();
	if (type == IBV_QPT_UD)
		p.rkey = 0x11111111; /* the Q_Key */
	if ((ops >> 2 & 7) >= IBV_WR_ATOMIC_CMP_AND_SWP)
		p.len = 8;
	memcpy(s.buf + IVRDMA_HEADER_SIZE, &p, sizeof(p));
	directory(&s);
	cq(&s, &r, 0, ME, 0, 2);
	cq(&s, &r, 1, TARGET, 1, 0);
	target_qp(&s, &r, type);
	mr(&s, &r, 1, TARGET, 0x1000, 7, 3);
	mr(&s, &r, 2, ME, 0x2000, 1, 4);
	my_srq(&s, &r);
	save(dir, "fuzz_provider", name, &s);
}

/* fuzz_provider.c's params.ops: QP type, opcode, flags. */
static void provider_seeds(const char *dir)
{
	const struct {
		const char *name;
		uint16_t ops;
		uint32_t type;
	} v[] = {
	    {"rc-send", 0 | IBV_WR_SEND << 2 | 1u << 6, IBV_QPT_RC},
	    {"rc-send-imm-solicited", 0 | IBV_WR_SEND_WITH_IMM << 2 | 1u << 7, IBV_QPT_RC},
	    {"rc-write", 0 | IBV_WR_RDMA_WRITE << 2 | 1u << 6, IBV_QPT_RC},
	    {"rc-write-imm", 0 | IBV_WR_RDMA_WRITE_WITH_IMM << 2, IBV_QPT_RC},
	    {"rc-read", 0 | IBV_WR_RDMA_READ << 2 | 1u << 6, IBV_QPT_RC},
	    {"rc-cmp-swap", 0 | IBV_WR_ATOMIC_CMP_AND_SWP << 2 | 1u << 6, IBV_QPT_RC},
	    {"rc-fetch-add", 0 | IBV_WR_ATOMIC_FETCH_AND_ADD << 2 | 1u << 6, IBV_QPT_RC},
	    {"rc-send-inline-rnr", 0 | IBV_WR_SEND << 2 | 1u << 5 | 1u << 9, IBV_QPT_RC},
	    {"uc-write", 1 | IBV_WR_RDMA_WRITE << 2 | 1u << 6, IBV_QPT_UC},
	    {"ud-send-grh", 2 | IBV_WR_SEND << 2 | 1u << 6 | 1u << 8, IBV_QPT_UD},
	    {"srq-post", 0 | IBV_WR_SEND << 2 | 1u << 11, IBV_QPT_RC},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		provider_seed(dir, v[i].name, v[i].ops, v[i].type);
}

/* What goes before the region in a fuzz_ctl input: the request and where it splits. */
static void prepend_request(struct seed *s, const char *req, uint8_t split)
{
	size_t n = strlen(req);

	if (s->len + 2 + n > sizeof(s->buf) || n > 255)
		abort();
	memmove(s->buf + 2 + n, s->buf, s->len);
	s->buf[0] = (uint8_t)n;
	s->buf[1] = split;
	memcpy(s->buf + 2, req, n);
	s->len += 2 + n;
}

/* My open context with a live QP, and the target's closed one. */
static void contexts(struct seed *s, uint32_t node)
{
	struct ivrdma_ctx_slot open = {.hdr = {.owner = ME, .seq = 3},
				       .state = IVRDMA_CTX_OPEN,
				       .pid = 42,
				       .node = node,
				       .qps_destroyed = 1};
	struct ivrdma_ctx_slot closed = {
	    .hdr = {.owner = TARGET, .seq = 1}, .state = IVRDMA_CTX_CLOSED, .pid = 43};
	struct ivrdma_qp_slot q = {.hdr.owner = ME,
				   .state = IBV_QPS_RTS,
				   .qp_type = IBV_QPT_RC,
				   .qpn = 2,
				   .context = 1,
				   .context_seq = 3};
	uint64_t counters[4] = {5, 5, 320, 1};

	obj(s, FUZZ_CTX, 0, &open, 32);
	patch(s, FUZZ_CTX, 0, offsetof(struct ivrdma_ctx_slot, destroyed), counters,
	      sizeof(counters));
	obj(s, FUZZ_CTX, 1, &closed, 32);
	obj(s, FUZZ_QP, 0, &q, 96);
	patch(s, FUZZ_QP, 0, offsetof(struct ivrdma_qp_slot, counters), counters, sizeof(counters));
}

static void ctl_seed(const char *dir, const char *name, const char *req, uint8_t split,
		     uint16_t ops)
{
	struct fuzz_params p = {.peer = 1, .gen = 1, .ops = ops};
	struct seed s;

	start(&s, IVRDMA_DEFAULT_CHUNK_SHIFT, &p);
	directory(&s);
	contexts(&s, 0);
	prepend_request(&s, req, split);
	save(dir, "fuzz_ctl", name, &s);
}

/*
 * The directory last in the region, a context record naming its last
 * node, whose name has no NUL before the region's end: ivrdmad read on
 * past the end when it took names from the region.
 */
static void ctl_regress_name(const char *dir)
{
	struct fuzz_params p = {.peer = 1, .gen = 1, .ops = 1};
	struct ivrdma_region_header *h;
	uint8_t name[88];
	struct seed s;

	start(&s, IVRDMA_DEFAULT_CHUNK_SHIFT, &p);
	h = (struct ivrdma_region_header *)s.buf;
	h->nr_chunks--;
	h->chunk_tags.entries--;
	h->nodes.offset = FUZZ_IMAGE_SIZE - (uint64_t)h->nodes.entries * sizeof(struct ivrdma_node);
	directory(&s);
	contexts(&s, IVRDMA_MAX_NODES - 1);
	memset(name, 'A', sizeof(name));
	patch(&s, FUZZ_NODE, IVRDMA_MAX_NODES - 1, offsetof(struct ivrdma_node, name), name,
	      sizeof(name));
	prepend_request(&s, "status\n", 3);
	save(dir, "fuzz_ctl", "regress-unterminated-name", &s);
}

static void ctl_seeds(const char *dir)
{
	ctl_seed(dir, "status", "status\n", 7, 0);
	ctl_seed(dir, "status-split-vms-peer",
		 "stat"
		 "us\n",
		 4, 2 | 1u << 2);
	ctl_seed(dir, "status-peer-gone", "status\n", 0, 1 | 1u << 2 | 1u << 3);
	ctl_seed(dir, "unknown", "bogus\n", 2, 0);
	ctl_seed(dir, "incomplete", "status", 3, 0);
	ctl_seed(dir, "migrate-begin", "migrate-begin vm1 10\n", 9, 2);
	ctl_seed(dir, "migrate-end-host", "migrate-end host\n", 5, 0);
	ctl_regress_name(dir);
}

/* fuzz_server.c's script: op | client << 3, SEND's length byte and bytes after it. */
#define STEP(op, client) ((uint8_t)((op) | (client) << 3))
enum { CONNECT_HOST, CONNECT_VM, SEND, SEND_FD, SHUT, CLOSE, READ, TURN };

static void server_seed(const char *dir, const char *name, const uint8_t *script, size_t len)
{
	struct seed s = {.len = 0};

	put(&s, script, len);
	save(dir, "fuzz_server", name, &s);
}

static void server_seeds(const char *dir)
{
	const uint8_t join[] = {STEP(CONNECT_HOST, 0), STEP(TURN, 0), STEP(READ, 0), STEP(CLOSE, 0),
				STEP(TURN, 0)};
	const uint8_t two[] = {STEP(CONNECT_HOST, 0),
			       STEP(CONNECT_VM, 1),
			       STEP(TURN, 0),
			       STEP(READ, 0),
			       STEP(READ, 1),
			       STEP(SEND, 0),
			       0,
			       'x',
			       STEP(TURN, 0),
			       STEP(READ, 1)};
	const uint8_t fd[] = {STEP(CONNECT_HOST, 2), STEP(TURN, 0), STEP(SEND_FD, 2), 7,
			      STEP(TURN, 0),	     STEP(READ, 2)};
	const uint8_t vm_twice[] = {STEP(CONNECT_VM, 0), STEP(CONNECT_VM, 1), STEP(TURN, 0),
				    STEP(READ, 1), STEP(TURN, 0)};
	const uint8_t many[] = {STEP(CONNECT_HOST, 0), STEP(CONNECT_HOST, 1), STEP(CONNECT_HOST, 2),
				STEP(CONNECT_HOST, 3), STEP(TURN, 0),	      STEP(SHUT, 2),
				STEP(TURN, 0),	       STEP(READ, 0),	      STEP(READ, 1),
				STEP(READ, 3),	       STEP(CLOSE, 1),	      STEP(TURN, 0),
				STEP(READ, 0)};

	server_seed(dir, "join-leave", join, sizeof(join));
	server_seed(dir, "host-and-vm-one-talks", two, sizeof(two));
	server_seed(dir, "sends-an-fd", fd, sizeof(fd));
	server_seed(dir, "vm-twice", vm_twice, sizeof(vm_twice));
	server_seed(dir, "four-hosts-shut-close", many, sizeof(many));
}

/* fuzz_rejoin.c's script: op | client << 3 | arg << 5, then the step's bytes. */
#define RSTEP(op, client, arg) ((uint8_t)((op) | (client) << 3 | (arg) << 5))
enum {
	R_CONNECT_REJOIN,
	R_CONNECT_HOST,
	R_SEND_REJOIN,
	R_SEND_RAW,
	R_CLOSE,
	R_READ,
	R_TURN,
	R_EXPIRE
};

static void rejoin_seed(const char *dir, const char *name, const uint8_t *script, size_t len)
{
	struct seed s = {.len = 0};

	put(&s, script, len);
	save(dir, "fuzz_rejoin", name, &s);
}

static void rejoin_seeds(const char *dir)
{
	/* Peer 0 rejoins with its generation (odd byte) and 4 eventfds (arg 2). */
	const uint8_t valid[] = {RSTEP(R_CONNECT_REJOIN, 0, 0),
				 RSTEP(R_SEND_REJOIN, 0, 2),
				 0,
				 1,
				 4,
				 RSTEP(R_TURN, 0, 0),
				 RSTEP(R_READ, 0, 0),
				 RSTEP(R_CLOSE, 0, 0),
				 RSTEP(R_TURN, 0, 0)};
	/* A host process joins, then both orphans rejoin: each learns of the others. */
	const uint8_t with_host[] = {RSTEP(R_CONNECT_HOST, 0, 0),
				     RSTEP(R_TURN, 0, 0),
				     RSTEP(R_READ, 0, 0),
				     RSTEP(R_CONNECT_REJOIN, 1, 0),
				     RSTEP(R_SEND_REJOIN, 1, 2),
				     0,
				     1,
				     4,
				     RSTEP(R_CONNECT_REJOIN, 2, 0),
				     RSTEP(R_SEND_REJOIN, 2, 2),
				     1,
				     1,
				     4,
				     RSTEP(R_TURN, 0, 0),
				     RSTEP(R_READ, 0, 0),
				     RSTEP(R_READ, 1, 0),
				     RSTEP(R_READ, 2, 0),
				     RSTEP(R_CLOSE, 1, 0),
				     RSTEP(R_TURN, 0, 0),
				     RSTEP(R_READ, 0, 0)};
	const uint8_t wrong_gen[] = {
	    RSTEP(R_CONNECT_REJOIN, 0, 0), RSTEP(R_SEND_REJOIN, 0, 2), 0, 6, 4,
	    RSTEP(R_TURN, 0, 0),	   RSTEP(R_READ, 0, 0)};
	const uint8_t few_fds[] = {
	    RSTEP(R_CONNECT_REJOIN, 0, 0), RSTEP(R_SEND_REJOIN, 0, 1), 1, 1, 4,
	    RSTEP(R_TURN, 0, 0),	   RSTEP(R_READ, 0, 0)};
	const uint8_t not_eventfds[] = {
	    RSTEP(R_CONNECT_REJOIN, 0, 0), RSTEP(R_SEND_REJOIN, 0, 6), 0, 1, 4,
	    RSTEP(R_TURN, 0, 0),	   RSTEP(R_READ, 0, 0)};
	const uint8_t silent_expire[] = {RSTEP(R_CONNECT_REJOIN, 3, 0),
					 RSTEP(R_TURN, 0, 0),
					 RSTEP(R_EXPIRE, 0, 0),
					 RSTEP(R_TURN, 0, 0),
					 RSTEP(R_SEND_RAW, 3, 0),
					 4,
					 'I',
					 'V',
					 'R',
					 RSTEP(R_TURN, 0, 0)};

	const uint8_t backlog[] = {0x00, 0x02, 0x04, 0x40, 0x00, 0x00, 0x04, 0x00, 0x01,
				   0x04, 0x18, 0x00, 0x08, 0x00, 0x04, 0x04, 0x04, 0x00,
				   0x01, 0x04, 0x18, 0x00, 0x08, 0x04, 0x4a, 0x00};

	rejoin_seed(dir, "rejoin", valid, sizeof(valid));
	rejoin_seed(dir, "rejoin-with-host", with_host, sizeof(with_host));
	rejoin_seed(dir, "wrong-generation", wrong_gen, sizeof(wrong_gen));
	rejoin_seed(dir, "too-few-fds", few_fds, sizeof(few_fds));
	rejoin_seed(dir, "not-eventfds", not_eventfds, sizeof(not_eventfds));
	rejoin_seed(dir, "silent-then-expired", silent_expire, sizeof(silent_expire));
	/* Found by the fuzzer: connections closed in the backlog, all taken in one turn. */
	rejoin_seed(dir, "backlog-closed", backlog, sizeof(backlog));
}

/* fuzz_transport.c's messages: kind, then a little-endian int16 value. */
enum { PLAIN, EVENTFD, REGION, NOT_A_REGION, STRAY_BYTES };

static void msg(struct seed *s, uint8_t kind, int16_t value)
{
	put(s, &kind, 1);
	put(s, &value, sizeof(value));
}

static void vectors(struct seed *s, int16_t peer)
{
	for (int v = 0; v < IVRDMA_MIN_VECTORS; v++)
		msg(s, EVENTFD, peer);
}

/* The opening as ivrdmad sends it: version, my ID (3), the region. */
static void opening(struct seed *s, uint8_t region_kind)
{
	s->len = 0;
	msg(s, PLAIN, 0);
	msg(s, PLAIN, 3);
	msg(s, region_kind, -1);
}

static void transport_seeds(const char *dir)
{
	struct seed s;

	opening(&s, REGION);
	vectors(&s, 1);
	vectors(&s, 3);
	vectors(&s, 2);	   /* joins after me */
	msg(&s, PLAIN, 1); /* leaves */
	save(dir, "fuzz_transport", "attach-join-leave", &s);
	opening(&s, REGION);
	msg(&s, STRAY_BYTES, 0x0100);
	vectors(&s, 3);
	save(dir, "fuzz_transport", "stray-bytes", &s);
	opening(&s, NOT_A_REGION);
	vectors(&s, 3);
	save(dir, "fuzz_transport", "not-a-region", &s);
	opening(&s, REGION);
	vectors(&s, 1);
	msg(&s, PLAIN, 1); /* leaves before I am whole */
	vectors(&s, 3);
	vectors(&s, 3); /* too many */
	save(dir, "fuzz_transport", "early-leave-extra-vectors", &s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
		return 2;
	}
	image = calloc(1, FUZZ_IMAGE_SIZE);
	if (!image)
		return 1;
	region_seeds(argv[1]);
	provider_seeds(argv[1]);
	ctl_seeds(argv[1]);
	server_seeds(argv[1]);
	rejoin_seeds(argv[1]);
	transport_seeds(argv[1]);
	free(image);
	return 0;
}
