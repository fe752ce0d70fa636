// SPDX-License-Identifier: MIT
/*
 * The CM agent of this process: a UD QP on ivrdma0 through which the
 * rdma_cm emulation sends and receives connection messages, and a thread
 * that takes them in and keeps the retransmission timers (ucma_conn.c).
 * Started by the first open of the rdma_cm device; it lives as long as
 * the process.
 *
 * It also holds what the emulation asks of the provider: the RDMA CM
 * directory (provider/ivrdma_cm.h), looked up in the provider libibverbs
 * loaded, and the device's GUID, by which librdmacm finds ivrdma0.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ucma.h"

#define UCMA_AGENT_QKEY 0x49564341u /* "IVCA" */
#define UCMA_NR_RECV	64u
#define UCMA_NR_SEND	64u
#define UCMA_GRH	40u /* a UD receive buffer starts with room for the GRH */
#define UCMA_SLOT	(UCMA_GRH + sizeof(struct ucma_msg))
#define UCMA_MAX_LID	1024u
#define UCMA_SEND_TAG	(1ull << 32)

struct ucma_agent {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *channel;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	struct ibv_mr *mr;
	uint8_t *bufs; /* UCMA_NR_RECV receive slots, then UCMA_NR_SEND send slots */
	bool send_busy[UCMA_NR_SEND];
	struct ibv_ah *ah[UCMA_MAX_LID]; /* by LID, made on first use */
	struct ucma_dir dir;
	__be64 guid;
	uint8_t mtu;
	int wake_fd;
	pthread_t thread;
};

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t agent_pid; /* the process that started the agent */

uint64_t ucma_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct ibv_context *ucma_agent_context(void)
{
	return ucma.agent->ctx;
}

const struct ucma_dir *ucma_agent_dir(void)
{
	return &ucma.agent->dir;
}

uint32_t ucma_agent_qpn(void)
{
	return ucma.agent->qp->qp_num;
}

uint32_t ucma_agent_qkey(void)
{
	return UCMA_AGENT_QKEY;
}

__be64 ucma_agent_guid(void)
{
	return ucma.agent->guid;
}

uint8_t ucma_agent_mtu(void)
{
	return ucma.agent->mtu;
}

static int find_provider(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (info->dlpi_name && strstr(info->dlpi_name, "libivrdma-rdmav")) {
		*(const char **)data = info->dlpi_name;
		return 1;
	}
	return 0;
}

/* The directory's functions, from the provider already loaded: 0 or -ENOSYS. */
static int load_dir(struct ucma_dir *dir)
{
	const char *path = NULL;
	uint32_t (*version)(void);
	void *h;

	dl_iterate_phdr(find_provider, &path);
	h = path ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
	if (!h)
		return -ENOSYS;
	version = (uint32_t(*)(void))dlsym(h, "ivrdma_cm_api_version");
	*(void **)&dir->my_node = dlsym(h, "ivrdma_cm_my_node");
	*(void **)&dir->node_by_lid = dlsym(h, "ivrdma_cm_node_by_lid");
	*(void **)&dir->resolve = dlsym(h, "ivrdma_cm_resolve");
	*(void **)&dir->my_addr = dlsym(h, "ivrdma_cm_my_addr");
	*(void **)&dir->is_my_addr = dlsym(h, "ivrdma_cm_is_my_addr");
	*(void **)&dir->listen = dlsym(h, "ivrdma_cm_listen");
	*(void **)&dir->unlisten = dlsym(h, "ivrdma_cm_unlisten");
	*(void **)&dir->find_listener = dlsym(h, "ivrdma_cm_find_listener");
	dlclose(h); /* the provider stays: libibverbs holds it */
	if (!version || version() != IVRDMA_CM_API_VERSION || !dir->my_node || !dir->node_by_lid ||
	    !dir->resolve || !dir->my_addr || !dir->is_my_addr || !dir->listen || !dir->unlisten ||
	    !dir->find_listener)
		return -ENOSYS;
	return 0;
}

/* Opens the first ivrdma device: 0, or -ENOENT when there is none. */
static int open_device(struct ucma_agent *a)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_port_attr port;
	int err = -ENOENT;

	for (int i = 0; list && list[i]; i++) {
		if (strncmp(ibv_get_device_name(list[i]), "ivrdma", 6) != 0)
			continue;
		a->ctx = ibv_open_device(list[i]);
		if (!a->ctx) {
			err = -errno;
			break;
		}
		a->guid = ibv_get_device_guid(list[i]);
		a->mtu = ibv_query_port(a->ctx, 1, &port) ? IBV_MTU_4096 : port.active_mtu;
		err = 0;
		break;
	}
	if (list)
		ibv_free_device_list(list);
	return err;
}

static int post_recv(struct ucma_agent *a, uint32_t slot)
{
	struct ibv_sge sge = {.addr = (uintptr_t)(a->bufs + slot * UCMA_SLOT),
			      .length = (uint32_t)UCMA_SLOT,
			      .lkey = a->mr->lkey};
	struct ibv_recv_wr wr = {.wr_id = slot, .sg_list = &sge, .num_sge = 1}, *bad;

	return ibv_post_recv(a->qp, &wr, &bad);
}

static int qp_ready(struct ucma_agent *a)
{
	struct ibv_qp_attr attr = {
	    .qp_state = IBV_QPS_INIT, .port_num = 1, .qkey = UCMA_AGENT_QKEY};

	if (ibv_modify_qp(a->qp, &attr,
			  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY))
		return -EIO;
	attr.qp_state = IBV_QPS_RTR;
	if (ibv_modify_qp(a->qp, &attr, IBV_QP_STATE))
		return -EIO;
	attr.qp_state = IBV_QPS_RTS;
	attr.sq_psn = 0;
	if (ibv_modify_qp(a->qp, &attr, IBV_QP_STATE | IBV_QP_SQ_PSN))
		return -EIO;
	for (uint32_t i = 0; i < UCMA_NR_RECV; i++)
		if (post_recv(a, i))
			return -EIO;
	return ibv_req_notify_cq(a->cq, 0) ? -EIO : 0;
}

/* The verbs objects of the agent: 0, or a negative errno (the caller cleans up). */
static int make_qp(struct ucma_agent *a)
{
	size_t bytes = (UCMA_NR_RECV + UCMA_NR_SEND) * UCMA_SLOT;
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_UD,
	    .cap = {.max_send_wr = UCMA_NR_SEND,
		    .max_recv_wr = UCMA_NR_RECV,
		    .max_send_sge = 1,
		    .max_recv_sge = 1},
	};

	a->pd = ibv_alloc_pd(a->ctx);
	a->channel = a->pd ? ibv_create_comp_channel(a->ctx) : NULL;
	a->cq = a->channel ? ibv_create_cq(a->ctx, UCMA_NR_RECV + UCMA_NR_SEND, NULL, a->channel, 0)
			   : NULL;
	a->bufs = a->cq ? calloc(1, bytes) : NULL;
	a->mr = a->bufs ? ibv_reg_mr(a->pd, a->bufs, bytes, IBV_ACCESS_LOCAL_WRITE) : NULL;
	if (!a->mr)
		return -ENOMEM;
	qa.send_cq = qa.recv_cq = a->cq;
	a->qp = ibv_create_qp(a->pd, &qa);
	if (!a->qp)
		return -errno;
	return qp_ready(a);
}

static void agent_free(struct ucma_agent *a)
{
	if (a->qp)
		ibv_destroy_qp(a->qp);
	if (a->mr)
		ibv_dereg_mr(a->mr);
	free(a->bufs);
	if (a->cq)
		ibv_destroy_cq(a->cq);
	if (a->channel)
		ibv_destroy_comp_channel(a->channel);
	if (a->pd)
		ibv_dealloc_pd(a->pd);
	if (a->ctx)
		ibv_close_device(a->ctx);
	if (a->wake_fd >= 0)
		close(a->wake_fd);
	free(a);
}

static void take_completion(struct ucma_agent *a, const struct ibv_wc *wc)
{
	uint8_t *buf;

	if (wc->wr_id & UCMA_SEND_TAG) {
		a->send_busy[wc->wr_id & 0xffff] = false;
		return;
	}
	if (wc->status == IBV_WC_SUCCESS && wc->byte_len >= UCMA_GRH) {
		buf = a->bufs + wc->wr_id * UCMA_SLOT;
		ucma_conn_receive((const struct ucma_msg *)(buf + UCMA_GRH),
				  wc->byte_len - UCMA_GRH, wc->slid, wc->src_qp);
	}
	if (wc->status != IBV_WC_WR_FLUSH_ERR)
		post_recv(a, (uint32_t)wc->wr_id);
}

/* Takes every completion waiting, then re-arms the CQ and takes any that raced in. */
static void drain(struct ucma_agent *a)
{
	struct ibv_cq *cq;
	struct ibv_wc wc[16];
	void *ctx;
	int n;

	if (ibv_get_cq_event(a->channel, &cq, &ctx) == 0)
		ibv_ack_cq_events(cq, 1);
	ibv_req_notify_cq(a->cq, 0);
	while ((n = ibv_poll_cq(a->cq, 16, wc)) > 0) {
		pthread_mutex_lock(&ucma.lock);
		for (int i = 0; i < n; i++)
			take_completion(a, &wc[i]);
		pthread_mutex_unlock(&ucma.lock);
	}
}

static int timeout_ms(uint64_t deadline)
{
	uint64_t now = ucma_now_ns();

	if (!deadline)
		return -1;
	return deadline <= now ? 0 : (int)((deadline - now + 999999) / 1000000);
}

static void *agent_thread(void *arg)
{
	struct ucma_agent *a = arg;
	struct pollfd fds[2] = {{.fd = a->channel->fd, .events = POLLIN},
				{.fd = a->wake_fd, .events = POLLIN}};
	uint64_t next, v;

	for (;;) {
		pthread_mutex_lock(&ucma.lock);
		next = ucma_conn_tick(ucma_now_ns());
		pthread_mutex_unlock(&ucma.lock);
		if (poll(fds, 2, timeout_ms(next)) < 0 && errno != EINTR)
			break;
		if (fds[1].revents & POLLIN)
			(void)!read(a->wake_fd, &v, sizeof(v));
		if (fds[0].revents & POLLIN)
			drain(a);
	}
	return NULL;
}

void ucma_agent_kick(void)
{
	eventfd_write(ucma.agent->wake_fd, 1);
}

static struct ibv_ah *ah_for(struct ucma_agent *a, uint16_t lid)
{
	struct ibv_ah_attr attr = {.dlid = lid, .port_num = 1};

	if (lid == 0 || lid >= UCMA_MAX_LID)
		return NULL;
	if (!a->ah[lid])
		a->ah[lid] = ibv_create_ah(a->pd, &attr);
	return a->ah[lid];
}

/*
 * The provider carries a UD send out before ibv_post_send returns, but a
 * send slot is still reused only once its completion is in.
 */
int ucma_agent_send(uint16_t lid, uint32_t qpn, uint32_t qkey, const struct ucma_msg *m)
{
	struct ucma_agent *a = ucma.agent;
	struct ibv_ah *ah = ah_for(a, lid);
	struct ibv_send_wr wr = {.opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED,
				 .num_sge = 1},
			   *bad;
	struct ibv_sge sge;
	uint32_t slot;

	if (!ah)
		return -EHOSTUNREACH;
	for (slot = 0; slot < UCMA_NR_SEND && a->send_busy[slot]; slot++)
		;
	if (slot == UCMA_NR_SEND)
		return -EAGAIN;
	sge.addr = (uintptr_t)(a->bufs + (UCMA_NR_RECV + slot) * UCMA_SLOT);
	sge.length = sizeof(*m);
	sge.lkey = a->mr->lkey;
	memcpy((void *)(uintptr_t)sge.addr, m, sizeof(*m));
	wr.wr_id = UCMA_SEND_TAG | slot;
	wr.sg_list = &sge;
	wr.wr.ud.ah = ah;
	wr.wr.ud.remote_qpn = qpn;
	wr.wr.ud.remote_qkey = qkey;
	if (ibv_post_send(a->qp, &wr, &bad))
		return -EIO;
	a->send_busy[slot] = true;
	return 0;
}

static int agent_create(struct ucma_agent **out)
{
	struct ucma_agent *a = calloc(1, sizeof(*a));
	int err;

	if (!a)
		return -ENOMEM;
	a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	err = a->wake_fd < 0 ? -errno : open_device(a);
	if (!err)
		err = load_dir(&a->dir);
	if (!err)
		err = make_qp(a);
	if (err) {
		agent_free(a);
		return err;
	}
	*out = a;
	return 0;
}

/*
 * At exit, this process's listeners leave the region's table, as the
 * kernel's rdma_cm destroys a process's IDs when its fd is closed.
 * ivrdmad would free them with the process's peer (or, in a guest, its
 * context) anyway, but only once it finds the process gone: until then an
 * entry left behind (rstream never closes its listening socket) would
 * hold its port and take requests for an agent nobody reads. A forked
 * child's exit leaves its parent's listeners alone.
 */
static void release_listeners(void)
{
	if (getpid() != agent_pid)
		return;
	pthread_mutex_lock(&ucma.lock);
	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		struct ucma_id *id = ucma.ids[h];

		if (id && id->listen_entry >= 0) {
			ucma.agent->dir.unlisten(ucma.agent->ctx, id->listen_entry);
			id->listen_entry = -1;
		}
	}
	pthread_mutex_unlock(&ucma.lock);
}

int ucma_agent_start(void)
{
	struct ucma_agent *a;
	int err = 0;

	pthread_mutex_lock(&start_lock);
	if (ucma.agent)
		goto out;
	err = agent_create(&a);
	if (err)
		goto out;
	pthread_mutex_lock(&ucma.lock);
	ucma.agent = a;
	pthread_mutex_unlock(&ucma.lock);
	err = -pthread_create(&a->thread, NULL, agent_thread, a);
	if (!err)
		pthread_detach(a->thread);
	agent_pid = getpid();
	atexit(release_listeners);
out:
	pthread_mutex_unlock(&start_lock);
	return err;
}
