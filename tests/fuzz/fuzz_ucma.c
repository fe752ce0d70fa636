// SPDX-License-Identifier: MIT
/*
 * The RDMA CM emulation's connection protocol (provider/preload/
 * ucma_conn.c) against arbitrary messages from other agents, interleaved
 * with the application's own steps. The agent is a stand-in (no verbs):
 * it counts what would be sent, keeps a clock the input advances, and
 * answers directory questions for four nodes.
 *
 * Each run starts with a listening RC ID, a listening UD ID and two IDs
 * connecting to them, then takes records from the input:
 *   [op][id choice][slid][bytes...]
 * op % 8: 0-3 a message (sizeof(struct ucma_msg) bytes, its receiver_id
 * replaced by an existing ID's comm ID when the choice says so), 4 accept,
 * 5 reject, 6 disconnect or destroy, 7 advance the clock and tick.
 * Everything is torn down at the end; ASan and UBSan watch throughout.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ucma.h"

struct ucma ucma = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t now_ns;
static uint32_t sent;
static int next_entry;

static int dir_my_node(struct ibv_context *c, struct ivrdma_cm_node *out)
{
	(void)c;
	*out = (struct ivrdma_cm_node){.node = 0, .lid = 1, .gid = {0xfd, [15] = 1}};
	return 0;
}

static int dir_node_by_lid(struct ibv_context *c, uint16_t lid, struct ivrdma_cm_node *out)
{
	(void)c;
	if (lid < 1 || lid > 4)
		return -EHOSTUNREACH;
	*out = (struct ivrdma_cm_node){.node = lid - 1u, .lid = lid, .gid = {0xfd, [15] = lid}};
	return 0;
}

static int dir_resolve(struct ibv_context *c, const uint8_t *ip, struct ivrdma_cm_node *out)
{
	return dir_node_by_lid(c, (uint16_t)(ip[15] % 6), out);
}

static int dir_my_addr(struct ibv_context *c, uint8_t *ip)
{
	(void)c;
	memset(ip, 0, 16);
	ip[10] = ip[11] = 0xff;
	ip[12] = 10;
	ip[15] = 1;
	return 0;
}

static int dir_is_my_addr(struct ibv_context *c, const uint8_t *ip)
{
	(void)c;
	return ip[15] == 1;
}

static int dir_listen(struct ibv_context *c, const struct ivrdma_cm_listener *l)
{
	(void)c;
	(void)l;
	return next_entry++;
}

static void dir_unlisten(struct ibv_context *c, int entry)
{
	(void)c;
	(void)entry;
}

static int dir_find_listener(struct ibv_context *c, uint32_t node, uint16_t ps, uint16_t port,
			     const uint8_t *ip, struct ivrdma_cm_listener *out)
{
	(void)c;
	(void)ip;
	*out = (struct ivrdma_cm_listener){.port_space = ps, .port = port, .agent_qpn = 7};
	return port % 3 == 0 ? -ECONNREFUSED : (int)node;
}

static const struct ucma_dir dir = {
    .my_node = dir_my_node,
    .node_by_lid = dir_node_by_lid,
    .resolve = dir_resolve,
    .my_addr = dir_my_addr,
    .is_my_addr = dir_is_my_addr,
    .listen = dir_listen,
    .unlisten = dir_unlisten,
    .find_listener = dir_find_listener,
};

struct ibv_context *ucma_agent_context(void)
{
	return NULL;
}

const struct ucma_dir *ucma_agent_dir(void)
{
	return &dir;
}

uint32_t ucma_agent_qpn(void)
{
	return 5;
}

uint32_t ucma_agent_qkey(void)
{
	return 0x49564341u;
}

__be64 ucma_agent_guid(void)
{
	return 0x1122334455667788ull;
}

uint8_t ucma_agent_mtu(void)
{
	return IBV_MTU_4096;
}

int ucma_agent_send(uint16_t lid, uint32_t qpn, uint32_t qkey, const struct ucma_msg *m)
{
	(void)lid;
	(void)qpn;
	(void)qkey;
	(void)m;
	sent++;
	return 0;
}

void ucma_agent_kick(void)
{
}

uint64_t ucma_now_ns(void)
{
	return now_ns;
}

static struct sockaddr_in addr(uint8_t last, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	a.sin_addr.s_addr = htonl(0x0a000000u | last);
	return a;
}

static struct ucma_id *listener(struct ucma_channel *ch, uint16_t ps, uint8_t qpt, uint16_t port)
{
	struct ucma_id *id = ucma_id_new(ch, 1, ps, qpt);
	struct sockaddr_in a = addr(1, port);

	if (id && (ucma_addr_bind(id, &a) || ucma_conn_listen(id, 4)))
		abort(); /* the harness's own setup must work */
	return id;
}

static void connecting(struct ucma_channel *ch, uint16_t ps, uint8_t qpt, uint16_t port)
{
	struct ucma_id *id = ucma_id_new(ch, 2, ps, qpt);
	struct sockaddr_in any = {.sin_family = AF_UNSPEC}, dst = addr(2, port);
	struct rdma_ucm_conn_param p = {
	    .qp_num = 9, .responder_resources = 1, .initiator_depth = 1};

	if (!id || ucma_addr_resolve(id, &any, &dst) || ucma_route_resolve(id) ||
	    ucma_conn_connect(id, &p))
		abort();
}

/* An existing ID picked by the input, or NULL. */
static struct ucma_id *pick(uint8_t choice)
{
	if (!ucma.nr_ids)
		return NULL;
	return ucma.ids[choice % ucma.nr_ids];
}

static void app_step(uint8_t op, struct ucma_id *id, const uint8_t *data, size_t n)
{
	struct rdma_ucm_conn_param p = {.qp_num = 11};

	if (!id)
		return;
	p.private_data_len = n ? data[0] : 0; /* up to 255: past every limit too */
	memcpy(p.private_data, data, n < sizeof(p.private_data) ? n : sizeof(p.private_data));
	if (op == 4) {
		ucma_conn_accept(id, &p);
	} else if (op == 5) {
		ucma_conn_reject(id, n ? data[0] : 0, p.private_data, p.private_data_len % 200);
	} else if (n && data[0] & 1) {
		ucma_conn_abandon(id);
		ucma_id_free(id);
	} else {
		ucma_conn_disconnect(id);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct ucma_channel *ch = ucma_channel_new(null_fd);

	now_ns = 1;
	next_entry = 0;
	pthread_mutex_lock(&ucma.lock);
	listener(ch, RDMA_PS_TCP, IBV_QPT_RC, 7001);
	listener(ch, RDMA_PS_UDP, IBV_QPT_UD, 7002);
	connecting(ch, RDMA_PS_TCP, IBV_QPT_RC, 7001);
	connecting(ch, RDMA_PS_UDP, IBV_QPT_UD, 7002);
	while (size >= 3) {
		uint8_t op = data[0] % 8, choice = data[1], slid = data[2] % 6;
		size_t n = size - 3 < sizeof(struct ucma_msg) ? size - 3 : sizeof(struct ucma_msg);
		struct ucma_id *id = pick(choice);
		struct ucma_msg m = {0};

		data += 3;
		size -= 3;
		if (op < 4) {
			memcpy(&m, data, n);
			if (id && (choice & 0x80))
				m.receiver_id = id->comm_id; /* reach the IDs that exist */
			ucma_conn_receive(&m, op == 3 ? n : sizeof(m), slid, 5);
		} else if (op < 7) {
			app_step(op, id, data, n);
		} else {
			now_ns += (uint64_t)(choice + 1) * 100000000ull;
			ucma_conn_tick(now_ns);
		}
		n = n < 8 ? n : 8; /* a message's worth of input is used up only in part */
		data += n;
		size -= n;
		while (ch->head) /* what the application would read */
			free(ucma_event_take(ch));
	}
	ucma_channel_close(ch); /* no waiter: frees it */
	pthread_mutex_unlock(&ucma.lock);
	close(null_fd);
	return 0;
}
