// SPDX-License-Identifier: MIT
/*
 * Provider registration, device matching and context lifetime.
 *
 * libibverbs dlopen()s this module (RDMAV_DRIVERS or /etc/libibverbs.d),
 * the constructor registers the driver, and every device libibverbs finds
 * in the sysfs tree `ivrdma setup` wrote is offered to match_device().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <rdma/ib_user_verbs.h>

#include "channel_path.h"
#include "ivrdma.h"
#include "ivshmem_transport.h"

void ivrdma_dbg(const char *fmt, ...)
{
	static atomic_int enabled = -1; /* concurrent first uses compute the same answer */
	va_list ap;

	if (atomic_load_explicit(&enabled, memory_order_relaxed) < 0)
		atomic_store_explicit(&enabled, getenv("IVRDMA_DEBUG") != NULL,
				      memory_order_relaxed);
	if (!atomic_load_explicit(&enabled, memory_order_relaxed))
		return;
	fputs("ivrdma: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void *ivrdma_fail_null(int err)
{
	errno = err;
	return NULL;
}

/*
 * There is no kernel driver, hence no driver ID (netlink) and no
 * device/modalias file: only the IB device name identifies us. A
 * match_device op checks the prefix exactly, where v44's name-match table
 * entry would be a glob ("*Nivrdma*") and is flagged for removal.
 */
static bool ivrdma_match_device(struct verbs_sysfs_dev *sysfs_dev)
{
	return strncmp(sysfs_dev->ibdev_name, IVRDMA_IBDEV_PREFIX, strlen(IVRDMA_IBDEV_PREFIX)) ==
	       0;
}

static struct verbs_device *ivrdma_alloc_device(struct verbs_sysfs_dev *sysfs_dev)
{
	struct ivrdma_device *dev = calloc(1, sizeof(*dev));

	return dev ? &dev->ibv_dev : NULL;
}

static void ivrdma_uninit_device(struct verbs_device *vdev)
{
	free((struct ivrdma_device *)vdev);
}

static void ivrdma_free_context(struct ibv_context *ibctx);

static const struct verbs_context_ops ivrdma_ctx_ops = {
    .alloc_dm = ivrdma_alloc_dm,
    .alloc_mw = ivrdma_alloc_mw,
    .alloc_parent_domain = ivrdma_alloc_parent_domain,
    .alloc_pd = ivrdma_alloc_pd,
    .alloc_td = ivrdma_alloc_td,
    .attach_mcast = ivrdma_attach_mcast,
    .bind_mw = ivrdma_bind_mw,
    .close_xrcd = ivrdma_close_xrcd,
    .create_ah = ivrdma_create_ah,
    .create_cq = ivrdma_create_cq,
    .create_cq_ex = ivrdma_create_cq_ex,
    .create_qp = ivrdma_pd_create_qp,
    .create_qp_ex = ivrdma_pd_create_qp_ex,
    .create_srq = ivrdma_pd_create_srq,
    .create_srq_ex = ivrdma_pd_create_srq_ex,
    .dealloc_mw = ivrdma_dealloc_mw,
    .dealloc_pd = ivrdma_dealloc_pd,
    .dealloc_td = ivrdma_dealloc_td,
    .dereg_mr = ivrdma_pd_dereg_mr,
    .modify_qp = ivrdma_modify_qp,
    .modify_srq = ivrdma_modify_srq,
    .open_qp = ivrdma_open_qp,
    .open_xrcd = ivrdma_open_xrcd,
    .poll_cq = ivrdma_poll_cq,
    .post_recv = ivrdma_post_recv,
    .post_send = ivrdma_post_send,
    .post_srq_recv = ivrdma_post_srq_recv,
    .query_qp = ivrdma_query_qp,
    .query_qp_data_in_order = ivrdma_query_qp_data_in_order,
    .query_rt_values = ivrdma_query_rt_values,
    .query_srq = ivrdma_query_srq,
    .req_notify_cq = ivrdma_req_notify_cq,
    .resize_cq = ivrdma_resize_cq,
    .destroy_ah = ivrdma_destroy_ah,
    .destroy_cq = ivrdma_destroy_cq,
    .destroy_qp = ivrdma_pd_destroy_qp,
    .destroy_srq = ivrdma_pd_destroy_srq,
    .detach_mcast = ivrdma_detach_mcast,
    .free_context = ivrdma_free_context,
    .free_dm = ivrdma_free_dm,
    .get_srq_num = ivrdma_get_srq_num,
    .query_device_ex = ivrdma_query_device_ex,
    .query_port = ivrdma_query_port,
    .reg_dm_mr = ivrdma_pd_reg_dm_mr,
    .reg_mr = ivrdma_pd_reg_mr,
    .rereg_mr = ivrdma_pd_rereg_mr,
};

/*
 * The command fd every kernel command of libibverbs goes to. On the host
 * there is no kernel behind ours, so it must fail every command cleanly:
 * /dev/null read-only fails write() with EBADF (a writable /dev/null would
 * "accept" commands and libibverbs would read garbage responses) and
 * ioctl() with ENOTTY, which libibverbs reads as "no ioctl interface" and
 * answers from sysfs (GIDs). Takes ownership of the fd libibverbs opened.
 */
static int replace_cmd_fd(int cmd_fd)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int err = errno;

	if (cmd_fd >= 0)
		close(cmd_fd);
	errno = err;
	return fd;
}

/*
 * async_fd carries struct ib_uverbs_async_event_desc records, one per
 * datagram. The application's end blocks like the kernel's (programs such
 * as ibv_asyncwatch call ibv_get_async_event() without polling first;
 * those that want non-blocking set O_NONBLOCK themselves); the provider's
 * end never blocks, so a full queue cannot stall the provider.
 */
static int open_async_pair(struct ivrdma_context *ctx)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0) {
		int rc = -errno;

		close(sv[0]);
		close(sv[1]);
		return rc;
	}
	ctx->ibv_ctx.context.async_fd = sv[0];
	ctx->async_wr = sv[1];
	return 0;
}

/*
 * A host process sends completion events to other host processes'
 * channels (direct_event.c): to the preload's sockets in ivrdmad's
 * directory, and through its command device to the driver's host-mode
 * channels if it has one; without either, or in a guest, they go through
 * the owners' event threads.
 */
static int direct_events_open(struct ivrdma_context *ctx, enum ivt_backend backend,
			      enum ivt_cmd_device kind)
{
	ctx->event_relay = getenv("IVRDMA_EVENT_RELAY") != NULL;
	ctx->kernel_channels = kind == IVT_CMD_HOST;
	if (backend != IVT_BACKEND_HOST || snprintf(ctx->dir, sizeof(ctx->dir), "%s",
						    ivrdma_daemon_dir()) >= (int)sizeof(ctx->dir))
		return -1;
	return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

/*
 * The node whose socket a host process joins through: the host's, unless
 * IVRDMA_NODE names a VM's (a process standing in for that VM, as the
 * migration tests do; ivrdmad takes one such process per VM).
 */
static const char *socket_node(void)
{
	const char *node = getenv("IVRDMA_NODE");

	return node && *node && !strchr(node, '/') ? node : "host";
}

/*
 * Which node am I? The daemon records my peer's node in the peer table;
 * until it has, a host-socket client belongs to the host node.
 */
static uint32_t find_my_node(const struct ivrdma_region *r, int peer_id)
{
	struct ivrdma_peer *p = peer_id >= 0 ? ivrdma_region_peer(r, (uint32_t)peer_id) : NULL;

	if (p && shm_load_acquire32(&p->state) == IVRDMA_PEER_ACTIVE && p->node < r->nodes.entries)
		return p->node;
	return r->host_node;
}

/*
 * My owner tag (peer ID and the generation the daemon gave it) marks every
 * slot and chunk I take; my node's LID is the source of what I send.
 */
static int set_identity(struct ivrdma_context *ctx)
{
	int id = ivt_peer_id(ctx->transport);
	struct ivrdma_peer *p = id >= 0 ? ivrdma_region_peer(&ctx->region, (uint32_t)id) : NULL;

	if (!p || shm_load_acquire32(&p->state) != IVRDMA_PEER_ACTIVE) {
		ivrdma_dbg("peer %d is not active in the peer table", id);
		return -EPROTO;
	}
	ctx->peer_id = (uint16_t)id;
	ctx->owner_tag = ivrdma_owner_tag(ctx->peer_id, p->gen);
	ctx->lid = ivrdma_my_node(ctx)->lid;
	return 0;
}

/*
 * Host or guest? In a guest libibverbs opened the driver's command device
 * (/dev/infiniband/ivrdmaN), which tells which /dev/ivshmemN carries the
 * region: the context attaches there, my peer ID is the VM's IVPosition,
 * and cmd_fd stays (it makes real completion channels). Anywhere else the
 * context is a client of ivrdmad's host.sock; cmd_fd stays if it is the
 * driver's host-mode command device (ivrdma_host), else it is replaced.
 */
static int choose_backend(int *cmd_fd, struct ivt_options *opts, char *path, size_t len,
			  enum ivt_cmd_device *kind)
{
	char err[256] = "";
	int rc = *cmd_fd >= 0 ? ivt_guest_cmd_device(*cmd_fd, path, len, err, sizeof(err))
			      : IVT_CMD_OTHER;

	if (rc < 0) {
		ivrdma_dbg("%s", err);
		return rc;
	}
	*kind = (enum ivt_cmd_device)rc;
	if (rc == IVT_CMD_GUEST) {
		opts->backend = IVT_BACKEND_GUEST;
		return 0;
	}
	if (rc == IVT_CMD_OTHER)
		*cmd_fd = replace_cmd_fd(*cmd_fd);
	if (*cmd_fd < 0)
		return -errno;
	opts->backend = IVT_BACKEND_HOST;
	if (snprintf(path, len, "%s/%s.sock", ivrdma_daemon_dir(), socket_node()) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

static int attach_region(struct ivrdma_context *ctx, struct ivt_options *opts)
{
	const char *path = opts->path;
	const char *why = NULL;
	char err[256];
	int rc;

	rc = ivt_attach(opts, &ctx->transport, err, sizeof(err));
	if (rc) {
		ivrdma_dbg("%s", err);
		return rc;
	}
	rc = ivrdma_region_open(&ctx->region, ivt_region_base(ctx->transport),
				ivt_region_size(ctx->transport), &why);
	if (rc) {
		ivrdma_dbg("region rejected: %s", why);
		return rc;
	}
	ctx->node = find_my_node(&ctx->region, ivt_peer_id(ctx->transport));
	if (!ivrdma_my_node(ctx))
		return -EPROTO;
	rc = set_identity(ctx);
	if (rc)
		return rc;
	ivrdma_dbg("attached to %s (%s) as peer %d, node %u", path,
		   ivt_backend_name(ctx->transport), ivt_peer_id(ctx->transport), ctx->node);
	return 0;
}

static void release_context(struct ivrdma_context *ctx)
{
	ivrdma_events_stop(ctx); /* before the doorbells it sleeps on go */
	/* MRs left registered go while the region is mapped and my tag is live. */
	if (ctx->transport)
		ivrdma_mrs_release(ctx);
	ivrdma_ctx_record_close(ctx);
	if (ctx->transport)
		ivt_detach(ctx->transport);
	if (ctx->async_wr >= 0)
		close(ctx->async_wr);
	if (ctx->event_sock >= 0)
		close(ctx->event_sock);
	ivrdma_pages_release(ctx);
	free(ctx->rq_done);
	free(ctx->qp_by_slot);
	free(ctx->mr_by_slot);
	pthread_mutex_destroy(&ctx->async_lock);
	pthread_mutex_destroy(&ctx->mr_lock);
	pthread_mutex_destroy(&ctx->mrs_lock);
	pthread_mutex_destroy(&ctx->pending_lock);
	pthread_mutex_destroy(&ctx->srq_lock);
	verbs_uninit_context(&ctx->ibv_ctx); /* closes cmd_fd and async_fd */
	free(ctx);
}

/*
 * Test only: IVRDMA_TEST_STOP_IN_PUSH=taken|reserved|claimed|took|fired|sending
 * stops the process in its next completion into another participant's
 * CQ, at that point (enum ivrdma_test_stop, in that order). Read when a
 * context opens, so that a fork child of a process that loaded the
 * provider can set it.
 */
static void test_hooks(void)
{
	static const char *const at[] = {"taken", "reserved", "claimed",
					 "took",  "fired",    "sending"};
	const char *s = getenv("IVRDMA_TEST_STOP_IN_PUSH");

	for (int i = 0; s && i < (int)(sizeof(at) / sizeof(at[0])); i++)
		if (!strcmp(s, at[i]))
			atomic_store_explicit(&ivrdma_cq_test_stop, i + 1, memory_order_relaxed);
}

static struct verbs_context *ivrdma_alloc_context(struct ibv_device *ibdev, int cmd_fd,
						  void *private_data)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ivt_options opts = {.path = path};
	enum ivt_cmd_device kind = IVT_CMD_OTHER;
	struct ivrdma_context *ctx;
	int rc;

	test_hooks();
	rc = choose_backend(&cmd_fd, &opts, path, sizeof(path), &kind);
	if (rc) {
		if (cmd_fd >= 0)
			close(cmd_fd);
		return ivrdma_fail_null(-rc);
	}
	ctx = verbs_init_and_alloc_context(ibdev, cmd_fd, ctx, ibv_ctx, 0);
	if (!ctx)
		return NULL;
	ctx->async_wr = -1;
	ctx->event_sock = direct_events_open(ctx, opts.backend, kind);
	ctx->uffd = IVRDMA_UFFD_UNOPENED;
	pthread_mutex_init(&ctx->async_lock, NULL);
	pthread_mutex_init(&ctx->mr_lock, NULL);
	pthread_mutex_init(&ctx->mrs_lock, NULL);
	pthread_mutex_init(&ctx->pending_lock, NULL);
	pthread_mutex_init(&ctx->srq_lock, NULL);
	rc = open_async_pair(ctx);
	if (!rc)
		rc = attach_region(ctx, &opts);
	if (!rc)
		rc = ivrdma_rq_done_init(ctx);
	if (!rc)
		rc = ivrdma_qp_table_init(ctx);
	if (!rc)
		rc = ivrdma_mr_table_init(ctx);
	if (!rc)
		rc = ivrdma_ctx_record_open(ctx);
	if (!rc)
		rc = ivrdma_events_start(ctx);
	if (rc) {
		release_context(ctx);
		return ivrdma_fail_null(-rc);
	}
	ctx->ibv_ctx.context.num_comp_vectors = 1;
	verbs_set_ops(&ctx->ibv_ctx, &ivrdma_ctx_ops);
	return &ctx->ibv_ctx;
}

static void ivrdma_free_context(struct ibv_context *ibctx)
{
	release_context(to_ictx(ibctx));
}

static const struct verbs_device_ops ivrdma_dev_ops = {
    .name = "ivrdma",
    .match_min_abi_version = IB_USER_VERBS_ABI_VERSION,
    .match_max_abi_version = IB_USER_VERBS_ABI_VERSION,
    .match_device = ivrdma_match_device,
    .alloc_device = ivrdma_alloc_device,
    .uninit_device = ivrdma_uninit_device,
    .alloc_context = ivrdma_alloc_context,
};

static __attribute__((constructor)) void ivrdma_register(void)
{
	verbs_register_driver_34(&ivrdma_dev_ops);
}
