// SPDX-License-Identifier: MIT
/*
 * The provider through the public libibverbs API, as any program uses it.
 * Run by run-provider-test.sh, which starts ivrdmad, writes the sysfs tree
 * and exports the environment plus the host node's expected identity
 * (IVRDMA_EXPECT_LID, IVRDMA_EXPECT_GUID, IVRDMA_EXPECT_GID).
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <pthread.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include "channel_path.h"
#include "check.h"

struct expected {
	uint16_t lid;
	uint64_t guid;
	union ibv_gid gid;
};

static void read_expected(struct expected *e)
{
	const char *lid = getenv("IVRDMA_EXPECT_LID"), *guid = getenv("IVRDMA_EXPECT_GUID"),
		   *gid = getenv("IVRDMA_EXPECT_GID");
	unsigned int g[8];

	REQUIRE(lid && guid && gid, "run me from run-provider-test.sh");
	e->lid = (uint16_t)strtoul(lid, NULL, 0);
	e->guid = strtoull(guid, NULL, 16);
	REQUIRE(sscanf(gid, "%x:%x:%x:%x:%x:%x:%x:%x", &g[0], &g[1], &g[2], &g[3], &g[4], &g[5],
		       &g[6], &g[7]) == 8,
		"bad GID %s", gid);
	for (int i = 0; i < 8; i++) {
		e->gid.raw[2 * i] = (uint8_t)(g[i] >> 8);
		e->gid.raw[2 * i + 1] = (uint8_t)g[i];
	}
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	REQUIRE(d, "opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static struct ibv_context *open_ivrdma0(const struct expected *e)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	REQUIRE(list, "ibv_get_device_list: %s", strerror(errno));
	for (int i = 0; list[i]; i++) {
		if (strcmp(ibv_get_device_name(list[i]), "ivrdma0"))
			continue;
		CHECK(be64toh(ibv_get_device_guid(list[i])) == e->guid, "device GUID");
		CHECK(list[i]->transport_type == IBV_TRANSPORT_IB, "transport %d",
		      list[i]->transport_type);
		ctx = ibv_open_device(list[i]);
		REQUIRE(ctx, "ibv_open_device: %s", strerror(errno));
	}
	ibv_free_device_list(list);
	REQUIRE(ctx, "ivrdma0 not listed");
	return ctx;
}

/* Kernel commands must fail cleanly: read-only fd, writes EBADF. */
static void check_fds(struct ibv_context *ctx)
{
	int fl = fcntl(ctx->cmd_fd, F_GETFL);
	char byte = 0;

	CHECK(fl >= 0 && (fl & O_ACCMODE) == O_RDONLY, "cmd_fd flags 0x%x", fl);
	CHECK(write(ctx->cmd_fd, &byte, 1) < 0 && errno == EBADF, "write to cmd_fd: %s",
	      strerror(errno));
	CHECK(fcntl(ctx->cmd_fd, F_GETFD) & FD_CLOEXEC, "cmd_fd close-on-exec");
	fl = fcntl(ctx->async_fd, F_GETFL);
	CHECK(fl >= 0 && !(fl & O_NONBLOCK), "async_fd blocks by default, like the kernel's");
	CHECK(fcntl(ctx->async_fd, F_GETFD) & FD_CLOEXEC, "async_fd close-on-exec");
}

/* A program may make async_fd non-blocking and poll it, as with a kernel. */
static void check_async_fd(struct ibv_context *ctx)
{
	struct ibv_async_event ev;
	int fl = fcntl(ctx->async_fd, F_GETFL);

	CHECK(fcntl(ctx->async_fd, F_SETFL, fl | O_NONBLOCK) == 0, "set O_NONBLOCK");
	errno = 0;
	CHECK(ibv_get_async_event(ctx, &ev) == -1 && errno == EAGAIN, "no event pending: %s",
	      strerror(errno));
	fcntl(ctx->async_fd, F_SETFL, fl);
}

static void check_query_device(struct ibv_context *ctx, const struct expected *e)
{
	struct ibv_device_attr_ex ax;
	struct {
		struct ibv_device_attr attr;
		uint8_t canary[64];
	} legacy;

	CHECK(ibv_query_device_ex(ctx, NULL, &ax) == 0, "ibv_query_device_ex");
	CHECK(be64toh(ax.orig_attr.node_guid) == e->guid, "node_guid");
	CHECK(ax.orig_attr.phys_port_cnt == 1 && ax.phys_port_cnt_ex == 1, "one port");
	CHECK(ax.orig_attr.max_qp > 0 && ax.orig_attr.max_cq > 0 && ax.orig_attr.max_mr > 0,
	      "object limits from the region");
	CHECK(ax.orig_attr.max_mr_size > 0 && ax.orig_attr.max_qp_wr > 0, "size limits");
	/* The legacy call passes sizeof(struct ibv_device_attr): not a byte more. */
	memset(&legacy, 0xa5, sizeof(legacy));
	CHECK(ibv_query_device(ctx, &legacy.attr) == 0, "ibv_query_device");
	CHECK(legacy.attr.node_guid == ax.orig_attr.node_guid, "legacy node_guid");
	for (size_t i = 0; i < sizeof(legacy.canary); i++)
		if (legacy.canary[i] != 0xa5) {
			CHECK(0, "query_device wrote past attr_size at byte %zu", i);
			break;
		}
}

/* More of what is not offered: each refused with EOPNOTSUPP. */
static void check_not_offered(struct ibv_context *ctx, struct ibv_pd *pd, struct ibv_cq *cq)
{
	static char page[4096] __attribute__((aligned(4096)));
	struct ibv_qp_init_attr raw = {
	    .send_cq = cq, .recv_cq = cq, .cap = {1, 1, 1, 1, 0}, .qp_type = IBV_QPT_RAW_PACKET};
	struct ibv_xrcd_init_attr xa = {.comp_mask =
					    IBV_XRCD_INIT_ATTR_FD | IBV_XRCD_INIT_ATTR_OFLAGS,
					.fd = -1,
					.oflags = O_CREAT};
	union ibv_gid mgid = {.raw = {0xff, 0x12}};
	struct ibv_qp *ud;
	struct ibv_xrcd *xrcd;
	struct ibv_qp_init_attr ua = {
	    .send_cq = cq, .recv_cq = cq, .cap = {1, 1, 1, 1, 0}, .qp_type = IBV_QPT_UD};

	errno = 0;
	CHECK(!ibv_reg_mr(pd, page, sizeof(page), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ON_DEMAND) &&
		  errno == EOPNOTSUPP,
	      "ODP registration: EOPNOTSUPP (%d)", errno);
	errno = 0;
	CHECK(!ibv_create_qp(pd, &raw) && errno == EOPNOTSUPP, "raw packet QP: EOPNOTSUPP (%d)",
	      errno);
	xrcd = ibv_open_xrcd(ctx, &xa); /* offered: provider.xrc checks its use */
	CHECK(xrcd && ibv_close_xrcd(xrcd) == 0, "XRC domain: %s", strerror(errno));
	ud = ibv_create_qp(pd, &ua);
	REQUIRE(ud, "UD QP: %s", strerror(errno));
	/* Multicast is offered (provider.ud checks delivery): attach, then detach. */
	CHECK(ibv_attach_mcast(ud, &mgid, 0xc001) == 0, "multicast attach");
	CHECK(ibv_detach_mcast(ud, &mgid, 0xc001) == 0, "multicast detach");
	CHECK(ibv_destroy_qp(ud) == 0, "destroy the UD QP");
}

/*
 * query_device_ex advertises exactly what works: its capability flags
 * (XRC and memory windows among them; no SRQ or QP resize, no checksum
 * offloads, no memory management extensions), of the extended attributes
 * the port count, device memory's size and the timestamp clock (no ODP,
 * TSO, RSS, CQ moderation, tag matching, packet pacing). What works
 * without a flag of its own (CQ resize, rereg_mr, thread and parent
 * domains) has its own tests; what is not offered is refused with EOPNOTSUPP by libibverbs
 * (the op is absent), as checked here.
 */
static void check_device_caps(struct ibv_context *ctx)
{
	const uint64_t flags = IBV_DEVICE_RC_RNR_NAK_GEN | IBV_DEVICE_SYS_IMAGE_GUID |
			       IBV_DEVICE_PORT_ACTIVE_EVENT | IBV_DEVICE_XRC |
			       IBV_DEVICE_MEM_WINDOW | IBV_DEVICE_MEM_WINDOW_TYPE_2B;
	struct ibv_device_attr_ex ax, zero;
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	struct ibv_modify_cq_attr mc = {.attr_mask = IBV_CQ_ATTR_MODERATE,
					.moderate = {.cq_count = 4, .cq_period = 10}};
	struct ibv_alloc_dm_attr dm = {.length = 4096};
	struct ibv_mw *mw;
	struct ibv_dm *dmp;

	REQUIRE(pd && cq && ibv_query_device_ex(ctx, NULL, &ax) == 0, "query_device_ex");
	CHECK((uint64_t)ax.orig_attr.device_cap_flags == flags && ax.device_cap_flags_ex == flags,
	      "capability flags exactly %#llx: %#x / %#llx", (unsigned long long)flags,
	      ax.orig_attr.device_cap_flags, (unsigned long long)ax.device_cap_flags_ex);
	CHECK(ax.orig_attr.max_mw == ax.orig_attr.max_mr && ax.orig_attr.max_mcast_grp > 0 &&
		  ax.orig_attr.max_mcast_qp_attach > 0 &&
		  ax.orig_attr.max_total_mcast_qp_attach >= ax.orig_attr.max_mcast_qp_attach &&
		  ax.orig_attr.max_ee == 0 && ax.orig_attr.max_rdd == 0 &&
		  ax.orig_attr.max_cqe == 4194303 && ax.orig_attr.atomic_cap == IBV_ATOMIC_HCA,
	      "memory windows as many as MRs; no EE or RDD; multicast; 4 Mi CQEs; HCA atomics");
	memset(&zero, 0, sizeof(zero));
	zero.orig_attr = ax.orig_attr;
	zero.device_cap_flags_ex = ax.device_cap_flags_ex;
	zero.phys_port_cnt_ex = 1;
	zero.max_dm_size = ax.max_dm_size;
	zero.completion_timestamp_mask = ax.completion_timestamp_mask;
	zero.hca_core_clock = ax.hca_core_clock;
	CHECK(ax.completion_timestamp_mask == UINT64_MAX && ax.hca_core_clock == 1000000,
	      "timestamps: a 64-bit clock of 1 GHz (ns)");
	CHECK(ax.max_dm_size >= 4096, "device memory: max_dm_size %llu",
	      (unsigned long long)ax.max_dm_size);
	CHECK(memcmp(&zero, &ax, sizeof(ax)) == 0,
	      "every extended capability zero but the port count, max_dm_size and the clock");
	mw = ibv_alloc_mw(pd, IBV_MW_TYPE_1); /* offered: provider.mw checks its use */
	CHECK(mw && ibv_dealloc_mw(mw) == 0, "alloc_mw and dealloc_mw: %s", strerror(errno));
	CHECK(ibv_modify_cq(cq, &mc) == EOPNOTSUPP, "modify_cq (moderation): EOPNOTSUPP");
	dmp = ibv_alloc_dm(ctx, &dm); /* offered: provider.dm checks its use */
	CHECK(dmp && ibv_free_dm(dmp) == 0, "alloc_dm and free_dm: %s", strerror(errno));
	check_not_offered(ctx, pd, cq);
	CHECK(ibv_destroy_cq(cq) == 0 && ibv_dealloc_pd(pd) == 0, "teardown");
}

/* A caller built against a newer verbs.h passes a larger attr_size. */
static void check_query_device_newer_caller(struct ibv_context *ctx)
{
	struct verbs_context *vctx = verbs_get_ctx_op(ctx, query_device_ex);
	size_t size = sizeof(struct ibv_device_attr_ex) + 64;
	uint8_t *buf = malloc(size);
	bool zero = true;

	REQUIRE(vctx && buf, "query_device_ex op present");
	memset(buf, 0xa5, size);
	CHECK(vctx->query_device_ex(ctx, NULL, (struct ibv_device_attr_ex *)buf, size) == 0,
	      "query_device_ex with a larger attr_size");
	for (size_t i = sizeof(struct ibv_device_attr_ex); i < size; i++)
		zero = zero && buf[i] == 0;
	CHECK(zero, "fields unknown to the provider are zeroed");
	CHECK(vctx->query_device_ex(ctx, NULL, (struct ibv_device_attr_ex *)buf, 16) == EINVAL,
	      "attr_size below the legacy struct is refused");
	free(buf);
}

static void check_port(struct ibv_context *ctx, const struct expected *e)
{
	struct ibv_port_attr pa;
	union ibv_gid gid;
	__be16 pkey;

	CHECK(ibv_query_port(ctx, 1, &pa) == 0, "ibv_query_port");
	CHECK(pa.state == IBV_PORT_ACTIVE, "port state %d", pa.state);
	CHECK(pa.lid == e->lid, "LID %u, expected %u", pa.lid, e->lid);
	CHECK(pa.link_layer == IBV_LINK_LAYER_INFINIBAND, "link layer %u", pa.link_layer);
	CHECK(pa.active_mtu == IBV_MTU_4096 && pa.max_mtu == IBV_MTU_4096, "MTU 4096");
	CHECK(pa.gid_tbl_len == 1 && pa.pkey_tbl_len == 1, "table lengths");
	CHECK(ibv_query_port(ctx, 2, &pa) == EINVAL, "port 2 does not exist");
	CHECK(ibv_query_gid(ctx, 1, 0, &gid) == 0, "ibv_query_gid: %s", strerror(errno));
	CHECK(!memcmp(&gid, &e->gid, sizeof(gid)), "GID from sysfs");
	CHECK(ibv_query_pkey(ctx, 1, 0, &pkey) == 0 && be16toh(pkey) == 0xffff, "default pkey");
}

static void check_pd(struct ibv_context *ctx)
{
	struct ibv_pd *a = ibv_alloc_pd(ctx), *b = ibv_alloc_pd(ctx);

	REQUIRE(a && b, "ibv_alloc_pd: %s", strerror(errno));
	CHECK(a->context == ctx && b->context == ctx, "PD context");
	CHECK(a->handle != b->handle, "PD handles distinct");
	CHECK(ibv_dealloc_pd(a) == 0 && ibv_dealloc_pd(b) == 0, "ibv_dealloc_pd");
}

/* The limit event arrives on async_fd as the kernel's record would. */
static void expect_srq_limit_event(struct ibv_context *ctx, struct ibv_srq *srq)
{
	struct ibv_async_event ev;
	int fl = fcntl(ctx->async_fd, F_GETFL);

	fcntl(ctx->async_fd, F_SETFL, fl | O_NONBLOCK);
	CHECK(ibv_get_async_event(ctx, &ev) == 0 && ev.event_type == IBV_EVENT_SRQ_LIMIT_REACHED &&
		  ev.element.srq == srq,
	      "IBV_EVENT_SRQ_LIMIT_REACHED on async_fd");
	ibv_ack_async_event(&ev);
	errno = 0;
	CHECK(ibv_get_async_event(ctx, &ev) == -1 && errno == EAGAIN, "one event per arming");
	fcntl(ctx->async_fd, F_SETFL, fl);
}

/* SRQ control path: sizes, limits, the limit event, EBUSY while a QP uses it. */
static void check_srq(struct ibv_context *ctx)
{
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	/* srq_limit is irrelevant to create_srq (ibv_create_srq(3)): not armed. */
	struct ibv_srq_init_attr srqa = {.attr = {.max_wr = 100, .max_sge = 2, .srq_limit = 10}};
	struct ibv_srq_attr a = {0};
	struct ibv_srq *srq;
	struct ibv_qp *qp;
	struct ibv_recv_wr wr = {0}, *bad;

	REQUIRE(pd && cq, "ibv_alloc_pd, ibv_create_cq");
	srq = ibv_create_srq(pd, &srqa);
	REQUIRE(srq, "ibv_create_srq: %s", strerror(errno));
	CHECK(srqa.attr.max_wr >= 100 && srqa.attr.max_sge == 2, "create_srq reports its sizes");
	CHECK(ibv_query_srq(srq, &a) == 0 && a.max_wr == srqa.attr.max_wr && a.srq_limit == 0,
	      "ibv_query_srq: no limit armed by create");
	a.max_wr = 1000;
	CHECK(ibv_modify_srq(srq, &a, IBV_SRQ_MAX_WR) == EINVAL, "no SRQ resize");
	a.srq_limit = srqa.attr.max_wr + 1;
	CHECK(ibv_modify_srq(srq, &a, IBV_SRQ_LIMIT) == EINVAL, "limit above max_wr");
	for (int i = 0; i < 8; i++)
		CHECK(ibv_post_srq_recv(srq, &wr, &bad) == 0, "ibv_post_srq_recv");
	a.srq_limit = 4;
	CHECK(ibv_modify_srq(srq, &a, IBV_SRQ_LIMIT) == 0, "arm the limit");
	CHECK(ibv_query_srq(srq, &a) == 0 && a.srq_limit == 4, "armed limit reads back");
	a.srq_limit = 9; /* 8 posted: below it at once */
	CHECK(ibv_modify_srq(srq, &a, IBV_SRQ_LIMIT) == 0, "re-arm the limit");
	expect_srq_limit_event(ctx, srq);
	CHECK(ibv_query_srq(srq, &a) == 0 && a.srq_limit == 0, "the event disarms the limit");
	qp = ibv_create_qp(pd,
			   &(struct ibv_qp_init_attr){.send_cq = cq,
						      .recv_cq = cq,
						      .srq = srq,
						      .cap = {.max_send_wr = 1, .max_send_sge = 1},
						      .qp_type = IBV_QPT_RC});
	REQUIRE(qp, "ibv_create_qp on an SRQ: %s", strerror(errno));
	CHECK(ibv_post_recv(qp, &wr, &bad) == EINVAL, "post_recv on an SRQ QP");
	CHECK(ibv_destroy_srq(srq) == EBUSY, "destroy_srq while a QP uses it");
	CHECK(ibv_destroy_qp(qp) == 0 && ibv_destroy_srq(srq) == 0, "destroy QP, then SRQ");
	ibv_destroy_cq(cq);
	ibv_dealloc_pd(pd);
}

static bool comp_channel_preloaded(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "libivrdma-preload");
}

/*
 * Each CQ on a channel holds one reference, whichever verb made it, and
 * destroying the CQ drops it: then the channel can go (UCX destroys its
 * CQs, made with ibv_create_cq_ex, and then the channel, and warns
 * "ibv_destroy_comp_channel returned 16" if it is still busy).
 */
static void check_channel_refs(struct ibv_context *ctx, struct ibv_comp_channel *ch)
{
	struct ibv_cq_init_attr_ex attr = {.cqe = 4, .channel = ch};
	struct ibv_cq *cq = ibv_create_cq(ctx, 4, NULL, ch, 0);
	struct ibv_cq_ex *cqx = ibv_create_cq_ex(ctx, &attr);

	REQUIRE(cq && cqx, "CQs on the channel: %s", strerror(errno));
	CHECK(ch->refcnt == 2, "two CQs, two references: %d", ch->refcnt);
	CHECK(ibv_destroy_comp_channel(ch) == EBUSY, "a channel with CQs is busy");
	CHECK(ibv_destroy_cq(ibv_cq_ex_to_cq(cqx)) == 0 && ibv_destroy_cq(cq) == 0, "destroy CQs");
	CHECK(ch->refcnt == 0, "no reference left: %d", ch->refcnt);
}

/*
 * No kernel behind cmd_fd: without libivrdma-preload.so the channel fails
 * and hands out no fd; with it, the channel is one fd that carries
 * completion events both ways, and destroying it leaves no fd behind.
 */
static void check_comp_channel(struct ibv_context *ctx)
{
	int before = count_fds();
	struct ibv_comp_channel *ch;
	uint64_t in = 0x1122334455667788ull, out = 0, id;
	const char *dir = ivrdma_daemon_dir();
	struct sockaddr_un a;
	char dirname[sizeof(a.sun_path) + 16];
	struct stat st;
	socklen_t len;

	errno = 0;
	ch = ibv_create_comp_channel(ctx);
	if (!comp_channel_preloaded()) {
		CHECK(!ch && errno == EBADF, "ibv_create_comp_channel: %p, %s", (void *)ch,
		      strerror(errno));
		CHECK(count_fds() == before, "no fd appeared");
		if (ch)
			ibv_destroy_comp_channel(ch);
		return;
	}
	REQUIRE(ch && ch->fd >= 0, "preloaded ibv_create_comp_channel: %s", strerror(errno));
	CHECK(ch->context == ctx && ch->refcnt == 0, "channel fields");
	/* A datagram socket at DIR/channels/<pid, random>: a record sent there is read whole. */
	snprintf(dirname, sizeof(dirname), "%s/" IVRDMA_CHANNEL_DIR, dir);
	id = ivrdma_channel_id(ch->fd, dir);
	len = ivrdma_channel_addr(&a, dir, id);
	REQUIRE(id >> 32 == (uint64_t)getpid() && len,
		"the channel is a socket in ivrdmad's directory");
	CHECK(stat(a.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) && stat(dirname, &st) == 0 &&
		  (st.st_mode & 07777) == (S_ISVTX | S_ISGID | 0700),
	      "its directory takes the sockets' permissions (0600 here): %o", st.st_mode & 07777);
	CHECK(sendto(ch->fd, &in, sizeof(in), 0, (struct sockaddr *)&a, len) == sizeof(in),
	      "post an event record");
	CHECK(read(ch->fd, &out, sizeof(out)) == sizeof(out) && out == in, "read it back");
	check_channel_refs(ctx, ch);
	CHECK(ibv_destroy_comp_channel(ch) == 0, "destroy");
	CHECK(count_fds() == before, "destroy closed the channel's fd");
	CHECK(stat(a.sun_path, &st) < 0 && errno == ENOENT, "destroy removed its path");
}

/* An RC QP connected to itself: a send lands in its own receive. */
static struct ibv_qp *loopback_qp(struct ibv_pd *pd, struct ibv_cq *cq, uint32_t depth)
{
	struct ibv_qp_init_attr init = {
	    .send_cq = cq,
	    .recv_cq = cq,
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = depth,
		    .max_recv_wr = depth,
		    .max_send_sge = 1,
		    .max_recv_sge = 1},
	};
	struct ibv_qp *qp = ibv_create_qp(pd, &init);
	struct ibv_port_attr port;
	struct ibv_qp_attr a;

	if (!qp || ibv_query_port(pd->context, 1, &port))
		return NULL;
	a = (struct ibv_qp_attr){
	    .qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = IBV_ACCESS_LOCAL_WRITE};
	if (ibv_modify_qp(qp, &a,
			  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		return NULL;
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTR,
				 .path_mtu = IBV_MTU_4096,
				 .dest_qp_num = qp->qp_num,
				 .max_dest_rd_atomic = 1,
				 .min_rnr_timer = 1,
				 .ah_attr = {.dlid = port.lid, .port_num = 1}};
	if (ibv_modify_qp(qp, &a,
			  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return NULL;
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS,
				 .timeout = 14,
				 .retry_cnt = 7,
				 .rnr_retry = 7,
				 .max_rd_atomic = 1};
	if (ibv_modify_qp(qp, &a,
			  IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			      IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		return NULL;
	return qp;
}

/*
 * resize_cq on a CQ a QP uses: the CQEs not yet polled stay (the old ring
 * drains first), and the QP completes into the new ring.
 */
static void check_resize_cq(struct ibv_context *ctx)
{
	char(*buf)[64] = calloc(2, 64); /* heap: memory the provider can move */
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	struct ibv_mr *mr = pd && buf ? ibv_reg_mr(pd, buf, 128, IBV_ACCESS_LOCAL_WRITE) : NULL;
	struct ibv_qp *qp = pd && cq ? loopback_qp(pd, cq, 4) : NULL;
	struct ibv_sge rs = {(uintptr_t)buf[1], 64, mr ? mr->lkey : 0};
	struct ibv_sge ss = {(uintptr_t)buf[0], 64, mr ? mr->lkey : 0};
	struct ibv_recv_wr rwr = {.wr_id = 7, .sg_list = &rs, .num_sge = 1}, *bad_r;
	struct ibv_send_wr swr = {.wr_id = 9,
				  .sg_list = &ss,
				  .num_sge = 1,
				  .opcode = IBV_WR_SEND,
				  .send_flags = IBV_SEND_SIGNALED},
			   *bad_s;
	struct ibv_wc wc[4];
	int n;

	REQUIRE(pd && cq && mr && qp, "loopback QP: %s", strerror(errno));
	memset(buf[0], 0x5a, sizeof(buf[0]));
	CHECK(ibv_post_recv(qp, &rwr, &bad_r) == 0 && ibv_post_send(qp, &swr, &bad_s) == 0,
	      "loopback send");
	CHECK(ibv_resize_cq(cq, 100) == 0 && cq->cqe >= 100,
	      "resize to 100 with a QP on it: cqe %d", cq->cqe);
	CHECK(ibv_dealloc_pd(pd) == EBUSY, "a PD with a QP in it is busy");
	CHECK(ibv_destroy_qp(qp) == 0, "destroy QP");
	CHECK(ibv_resize_cq(cq, 0) == EINVAL, "resize to 0");
	n = ibv_poll_cq(cq, 4, wc);
	CHECK(n == 2, "both CQEs kept across the resize: %d", n);
	if (n == 2)
		CHECK(wc[0].wr_id + wc[1].wr_id == 16 && wc[0].status == IBV_WC_SUCCESS &&
			  wc[1].status == IBV_WC_SUCCESS,
		      "the kept CQEs: wr_id %llu %llu status %d %d",
		      (unsigned long long)wc[0].wr_id, (unsigned long long)wc[1].wr_id,
		      wc[0].status, wc[1].status);
	CHECK(memcmp(buf[0], buf[1], 64) == 0, "the loopback data arrived");
	CHECK(ibv_dealloc_pd(pd) == EBUSY, "a PD with an MR in it is busy");
	CHECK(ibv_dereg_mr(mr) == 0 && ibv_destroy_cq(cq) == 0 && ibv_dealloc_pd(pd) == 0,
	      "teardown");
	free(buf);
}

struct cq_poller {
	struct ibv_cq *cq;
	atomic_bool stop;
	int found; /* completions polled from a CQ nothing completes on */
};

static void *poll_until_stopped(void *arg)
{
	struct cq_poller *p = arg;
	struct ibv_wc wc[4];

	while (!atomic_load(&p->stop)) {
		int n = ibv_poll_cq(p->cq, 4, wc);

		p->found += n ? 1 : 0;
		ibv_req_notify_cq(p->cq, 0);
	}
	return NULL;
}

/*
 * Another thread polls and arms the CQ while it is resized: poll_cq's look
 * without the lock must not meet half a resize (under TSan: no race).
 */
static void check_resize_while_polled(struct ibv_context *ctx)
{
	struct cq_poller p = {.cq = ibv_create_cq(ctx, 4, NULL, NULL, 0)};
	pthread_t th;

	REQUIRE(p.cq, "create CQ: %s", strerror(errno));
	REQUIRE(pthread_create(&th, NULL, poll_until_stopped, &p) == 0, "poller thread");
	for (int i = 0; i < 50; i++)
		CHECK(ibv_resize_cq(p.cq, i % 2 ? 4 : 200) == 0, "resize %d", i);
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	CHECK(p.found == 0, "polls of an empty CQ found %d", p.found);
	CHECK(ibv_destroy_cq(p.cq) == 0, "destroy CQ");
}

/*
 * More completions than the CQ holds: the CQ is in error and its owner gets
 * IBV_EVENT_CQ_ERR on the async fd, once, naming the CQ.
 */
static void check_cq_overflow(struct ibv_context *ctx)
{
	char *buf = calloc(1, 4096);
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	struct ibv_mr *mr = pd && buf ? ibv_reg_mr(pd, buf, 4096, IBV_ACCESS_LOCAL_WRITE) : NULL;
	struct ibv_qp *qp = pd && cq ? loopback_qp(pd, cq, 32) : NULL;
	struct pollfd pfd = {.fd = ctx->async_fd, .events = POLLIN};
	struct ibv_async_event ev;
	int posted = 0;

	REQUIRE(pd && cq && mr && qp, "loopback QP: %s", strerror(errno));
	for (int i = 0; i < 12; i++) {
		struct ibv_sge rs = {(uintptr_t)buf + 2048 + 64 * i, 64, mr->lkey};
		struct ibv_sge ss = {(uintptr_t)buf + 64 * i, 64, mr->lkey};
		struct ibv_recv_wr rwr = {.wr_id = i, .sg_list = &rs, .num_sge = 1}, *bad_r;
		struct ibv_send_wr swr = {.wr_id = 100 + i,
					  .sg_list = &ss,
					  .num_sge = 1,
					  .opcode = IBV_WR_SEND,
					  .send_flags = IBV_SEND_SIGNALED},
				   *bad_s;

		posted +=
		    ibv_post_recv(qp, &rwr, &bad_r) == 0 && ibv_post_send(qp, &swr, &bad_s) == 0;
	}
	CHECK(posted > 8, "%d sends posted before the QP failed", posted);
	REQUIRE(poll(&pfd, 1, 10000) == 1, "an async event within 10 s");
	REQUIRE(ibv_get_async_event(ctx, &ev) == 0, "ibv_get_async_event");
	CHECK(ev.event_type == IBV_EVENT_CQ_ERR && ev.element.cq == cq,
	      "IBV_EVENT_CQ_ERR for the CQ: %s", ibv_event_type_str(ev.event_type));
	ibv_ack_async_event(&ev);
	CHECK(poll(&pfd, 1, 200) == 0, "reported once");
	CHECK(ibv_destroy_qp(qp) == 0 && ibv_dereg_mr(mr) == 0 && ibv_destroy_cq(cq) == 0 &&
		  ibv_dealloc_pd(pd) == 0,
	      "teardown");
	free(buf);
}

/* CPU ticks (utime + stime) this process has used. */
static long cpu_ticks(void)
{
	char line[1024], *p;
	long utime = -1, stime = -1;
	FILE *f = fopen("/proc/self/stat", "r");

	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	p = strrchr(line, ')'); /* the command name may hold spaces */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
			 &stime) != 2)
		return -1;
	return utime + stime;
}

struct cq_waiter {
	struct ibv_comp_channel *ch;
	struct ibv_cq *got;
	int rc;
};

static void *wait_cq_event(void *arg)
{
	struct cq_waiter *w = arg;
	void *cq_ctx;

	w->rc = ibv_get_cq_event(w->ch, &w->got, &cq_ctx);
	return NULL;
}

/*
 * A thread blocked in ibv_get_cq_event costs nothing while it waits (the
 * provider's event thread sleeps too), and wakes when a completion lands
 * in its armed CQ. Needs the completion-channel shim on the host.
 */
static void check_cq_event_sleep(struct ibv_context *ctx)
{
	char *buf = calloc(1, 128);
	struct ibv_comp_channel *ch = ibv_create_comp_channel(ctx);
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = ch ? ibv_create_cq(ctx, 4, NULL, ch, 0) : NULL;
	struct ibv_mr *mr = pd && buf ? ibv_reg_mr(pd, buf, 128, IBV_ACCESS_LOCAL_WRITE) : NULL;
	struct ibv_qp *qp = pd && cq ? loopback_qp(pd, cq, 4) : NULL;
	struct cq_waiter w = {.ch = ch, .rc = -1};
	struct timespec deadline;
	pthread_t th;
	long t0, t1;

	REQUIRE(ch && pd && cq && mr && qp, "channel, CQ and loopback QP: %s", strerror(errno));
	REQUIRE(ibv_req_notify_cq(cq, 0) == 0, "arm the CQ");
	REQUIRE(pthread_create(&th, NULL, wait_cq_event, &w) == 0, "waiter thread");
	t0 = cpu_ticks();
	sleep(1);
	t1 = cpu_ticks();
	printf("CPU while blocked in ibv_get_cq_event for 1 s: %ld ticks of %ld\n", t1 - t0,
	       sysconf(_SC_CLK_TCK));
	CHECK(t0 >= 0 && t1 - t0 <= sysconf(_SC_CLK_TCK) / 20, "idle waiting used %ld ticks",
	      t1 - t0);
	{
		struct ibv_sge rs = {(uintptr_t)buf + 64, 64, mr->lkey};
		struct ibv_sge ss = {(uintptr_t)buf, 64, mr->lkey};
		struct ibv_recv_wr rwr = {.wr_id = 1, .sg_list = &rs, .num_sge = 1}, *bad_r;
		struct ibv_send_wr swr = {.wr_id = 2,
					  .sg_list = &ss,
					  .num_sge = 1,
					  .opcode = IBV_WR_SEND,
					  .send_flags = IBV_SEND_SIGNALED},
				   *bad_s;

		CHECK(ibv_post_recv(qp, &rwr, &bad_r) == 0 && ibv_post_send(qp, &swr, &bad_s) == 0,
		      "loopback send");
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	REQUIRE(pthread_timedjoin_np(th, NULL, &deadline) == 0, "the waiter woke within 10 s");
	CHECK(w.rc == 0 && w.got == cq, "the event names the CQ");
	ibv_ack_cq_events(cq, 1);
	CHECK(ibv_destroy_qp(qp) == 0 && ibv_dereg_mr(mr) == 0 && ibv_destroy_cq(cq) == 0 &&
		  ibv_dealloc_pd(pd) == 0 && ibv_destroy_comp_channel(ch) == 0,
	      "teardown");
	free(buf);
}

int main(void)
{
	struct ibv_context *ctx, *second;
	struct expected e;
	int fds;

	read_expected(&e);
	fds = count_fds();
	ctx = open_ivrdma0(&e);
	check_fds(ctx);
	check_async_fd(ctx);
	check_query_device(ctx, &e);
	check_query_device_newer_caller(ctx);
	check_device_caps(ctx);
	check_port(ctx, &e);
	check_pd(ctx);
	check_srq(ctx);
	check_resize_cq(ctx);
	check_resize_while_polled(ctx);
	check_cq_overflow(ctx);
	check_comp_channel(ctx);
	if (comp_channel_preloaded())
		check_cq_event_sleep(ctx);
	second = open_ivrdma0(&e); /* a second context is a second peer */
	check_port(second, &e);
	CHECK(ibv_close_device(second) == 0, "close second context");
	CHECK(ibv_close_device(ctx) == 0, "ibv_close_device");
	CHECK(count_fds() == fds, "every fd closed: %d before, %d after", fds, count_fds());
	return check_summary();
}
