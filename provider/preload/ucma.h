/* SPDX-License-Identifier: MIT */
/*
 * RDMA CM for ivrdma0: an emulation of the kernel's rdma_cm command
 * device inside libivrdma-preload.so.
 *
 * librdmacm opens /dev/infiniband/rdma_cm and speaks the rdma_ucm ABI
 * (<rdma/rdma_user_cm.h>) to it with write(). Where that device does not
 * exist, the preload answers: open() gives a channel (an fd librdmacm
 * can poll, readable while events wait), write() runs a command
 * (ucma_cmd.c), close() ends the channel. Connections are made by one CM
 * agent per process (ucma_agent.c): a UD QP on ivrdma0 that exchanges
 * connection messages (ucma_wire.h, ucma_conn.c) with other processes'
 * agents, which it finds through the region's listener table and node
 * addresses (provider/ivrdma_cm.h).
 *
 * Locking: one mutex, ucma.lock, guards every channel, ID and the agent's
 * send side; the agent thread takes it for each message it handles. Only
 * waiting for an event (a read of the channel's pipe) happens without it.
 */
#ifndef IVRDMA_UCMA_H
#define IVRDMA_UCMA_H

#include <infiniband/verbs.h>
#include <pthread.h>
#include <rdma/ib_user_sa.h>
#include <rdma/ib_user_verbs.h>
#include <rdma/rdma_user_cm.h>
#include <stdbool.h>
#include <stdint.h>

#include "../ivrdma_cm.h"
#include "ucma_wire.h"

#define UCMA_DEVICE_PATH "/dev/infiniband/rdma_cm"

#define UCMA_MCAST_QPN	 0xffffffu /* InfiniBand's QPN of a multicast datagram */

/* Event numbers of the rdma_ucm ABI: librdmacm's enum rdma_cm_event_type. */
enum ucma_event_type {
	UCMA_EVENT_ADDR_RESOLVED = 0,
	UCMA_EVENT_ADDR_ERROR = 1,
	UCMA_EVENT_ROUTE_RESOLVED = 2,
	UCMA_EVENT_CONNECT_REQUEST = 4,
	UCMA_EVENT_CONNECT_RESPONSE = 5,
	UCMA_EVENT_UNREACHABLE = 7,
	UCMA_EVENT_REJECTED = 8,
	UCMA_EVENT_ESTABLISHED = 9,
	UCMA_EVENT_DISCONNECTED = 10,
	UCMA_EVENT_MULTICAST_JOIN = 12,
};

enum ucma_id_state {
	UCMA_IDLE,
	UCMA_BOUND,	     /* an address, maybe a device */
	UCMA_ADDR_RESOLVED,  /* the peer's node is known */
	UCMA_ROUTE_RESOLVED, /* ready to connect */
	UCMA_LISTEN,
	UCMA_REQ_SENT, /* active: REQ or SIDR REQ out, waiting for REP */
	UCMA_REP_RCVD, /* active: REP in, the application sends RTU (ACCEPT) */
	UCMA_REQ_RCVD, /* passive: CONNECT_REQUEST reported, waiting for ACCEPT */
	UCMA_REP_SENT, /* passive: REP out, waiting for RTU */
	UCMA_ESTABLISHED,
	UCMA_DREQ_SENT,	   /* waiting for DREP */
	UCMA_DISCONNECTED, /* the connection is over (DREQ/DREP/REJ/timeout) */
};

struct ucma_event {
	struct ucma_event *next;
	struct ucma_id *id;    /* whose events_reported it counts against */
	struct ucma_mcast *mc; /* a multicast event counts against its join too */
	struct rdma_ucm_event_resp resp;
};

/*
 * One per open() of the device: librdmacm's rdma_event_channel. The
 * kernel's blocked GET_EVENT holds the file, so a close() by another
 * thread leaves it waiting (for good: the file's IDs are gone). A waiter
 * here reads the channel's own descriptor of the pipe, pipe_fd, and the
 * channel stays allocated while one waits: close() marks it closed, ends
 * its IDs and events, and frees it once nobody waits (ucma_channel_close).
 */
struct ucma_channel {
	int fd;		  /* the application's: one pipe read and written through one fd */
	int pipe_fd;	  /* the same pipe, the channel's own: a byte per queued event */
	uint32_t waiters; /* GET_EVENTs under way on it */
	bool closed;	  /* the application closed fd */
	struct ucma_event *head, *tail;
};

/* A multicast join of an ID (ucma_mcast.c): librdmacm's cma_multicast. */
struct ucma_mcast {
	struct ucma_mcast *next;
	uint32_t handle; /* librdmacm's name for it in LEAVE_MCAST */
	uint64_t uid;	 /* librdmacm's own pointer, returned in its events */
	uint8_t mgid[16];
	uint16_t mlid;
	uint32_t events_reported;
};

/* An endpoint of this process: the rdma_cm_id librdmacm names by 'handle'. */
struct ucma_id {
	uint32_t handle; /* index in the ID table; comm_id adds a generation */
	uint32_t comm_id;
	uint64_t uid; /* librdmacm's own pointer, returned in events */
	struct ucma_channel *channel;
	uint16_t port_space;
	uint8_t qp_type; /* IBV_QPT_*: UD is answered by SIDR, the others connect */
	enum ucma_id_state state;
	struct ucma_wire_addr src, dst;
	bool has_src, has_device;
	struct ivrdma_cm_node peer; /* valid from ADDR_RESOLVED or a REQ */
	uint32_t events_reported;
	struct ucma_mcast *mcasts; /* its multicast joins */
	/* listening */
	int listen_entry;	   /* in the region's table, -1 if none */
	uint32_t backlog, pending; /* pending: children not yet accepted or rejected */
	/* connecting */
	struct ucma_id *listener; /* passive: the ID the request came in on */
	bool reported;		  /* passive: its CONNECT_REQUEST was taken */
	uint32_t peer_comm_id, peer_agent_qpn, peer_agent_qkey;
	uint32_t peer_listener; /* active: the listener entry the REQ went to */
	uint32_t my_qpn, my_psn, peer_qpn, peer_psn, peer_qkey;
	uint8_t responder_resources, initiator_depth, retry_count, rnr_retry_count;
	/* retransmission of the last request this ID sent */
	struct ucma_msg last;
	uint64_t deadline_ns;
	unsigned int tries;
};

struct ucma_agent;

/* ucma_agent.c */

struct ucma {
	pthread_mutex_t lock;
	struct ucma_agent *agent;
	struct ucma_id **ids; /* by handle */
	uint16_t *gens;	      /* by handle: bumps on reuse, for comm IDs */
	uint32_t nr_ids;
};
extern struct ucma ucma;

/* ucma_device.c */
bool ucma_is_channel_fd(int fd);

/* ucma_channel.c: channels, IDs and events; ucma.lock held. */
struct ucma_channel *ucma_channel_new(int fd);
/* The application closed ch's fd: its IDs end, and ch goes once nobody waits on it. */
void ucma_channel_close(struct ucma_channel *ch);
/* A GET_EVENT is done waiting on a closed ch: ch goes if it was the last. */
void ucma_channel_waiter_left(struct ucma_channel *ch);
struct ucma_id *ucma_id_new(struct ucma_channel *ch, uint64_t uid, uint16_t ps, uint8_t qp_type);
struct ucma_id *ucma_id_get(uint32_t handle);
struct ucma_id *ucma_id_by_comm(uint32_t comm_id);
void ucma_id_free(struct ucma_id *id);
/* Queues an event for id on its channel; returns 0 or -ENOMEM. */
int ucma_event_post(struct ucma_id *id, uint32_t event, int32_t status);
/* The same, with connection parameters from a message. */
int ucma_event_post_conn(struct ucma_id *report_to, struct ucma_id *id, uint32_t event,
			 int32_t status, const struct ucma_msg *m);
/* ESTABLISHED of a UD ID: the peer's UD QP from a SIDR REP, its address. */
int ucma_event_post_ud(struct ucma_id *id, uint32_t event, const struct ucma_msg *m);
/* Drops id's queued events; returns how many. */
uint32_t ucma_events_drop(struct ucma_id *id);
/* Moves id's queued events to channel 'to'. */
void ucma_events_move(struct ucma_id *id, struct ucma_channel *to);
/* Takes the first event off ch (NULL if none). */
struct ucma_event *ucma_event_take(struct ucma_channel *ch);

/* ucma_cmd.c: runs one command written to channel fd; returns 0 or a negative errno. */
int ucma_cmd_run(int fd, const void *buf, size_t len);

/* ucma_device.c: the channel open on fd, or NULL. */
struct ucma_channel *ucma_channel_by_fd(int fd);

/* ucma_addr.c: addresses and routes; ucma.lock held. Each returns 0 or a negative errno. */
int ucma_addr_from_sockaddr(const void *sa, struct ucma_wire_addr *out);
void ucma_addr_to_sockaddr(const struct ucma_wire_addr *a, void *sa, size_t room);
bool ucma_addr_is_any(const struct ucma_wire_addr *a);
uint16_t ucma_ephemeral_port(void);
int ucma_addr_bind(struct ucma_id *id, const void *sa);
int ucma_addr_resolve(struct ucma_id *id, const void *src, const void *dst);
int ucma_route_resolve(struct ucma_id *id);
int ucma_route_query(struct ucma_id *id, struct rdma_ucm_query_route_resp *r);

/* ucma_conn.c: the connection protocol; ucma.lock held. */
int ucma_conn_connect(struct ucma_id *id, const struct rdma_ucm_conn_param *p);
int ucma_conn_accept(struct ucma_id *id, const struct rdma_ucm_conn_param *p);
int ucma_conn_reject(struct ucma_id *id, uint8_t reason, const uint8_t *pdata, uint8_t len);
int ucma_conn_disconnect(struct ucma_id *id);
int ucma_conn_established(struct ucma_id *id);
int ucma_conn_listen(struct ucma_id *id, uint32_t backlog);
int ucma_conn_qp_attr(struct ucma_id *id, uint32_t state, struct ib_uverbs_qp_attr *a);
/* Ends whatever id has going with its peer before id is freed. */
void ucma_conn_abandon(struct ucma_id *id);
void ucma_conn_receive(const struct ucma_msg *m, size_t len, uint16_t slid, uint32_t src_qp);
/* Retransmits or gives up what is due; returns the next deadline (0: none). */
uint64_t ucma_conn_tick(uint64_t now_ns);

/* ucma_mcast.c: multicast joins; ucma.lock held. Each returns 0 or a negative errno. */
int ucma_mcast_join(struct ucma_id *id, const void *sa, uint64_t uid, uint32_t *handle);
/* Leaves the join 'handle'; its events reported in *reported. */
int ucma_mcast_leave(uint32_t handle, uint32_t *reported);
void ucma_mcast_free_all(struct ucma_id *id);
bool ucma_addr_is_multicast(const struct ucma_wire_addr *a);
/* MULTICAST_JOIN for join mc of id. */
int ucma_event_post_join(struct ucma_id *id, struct ucma_mcast *mc);
/* Drops the queued events of join mc; returns how many. */
uint32_t ucma_events_drop_mcast(struct ucma_id *id, struct ucma_mcast *mc);

/* ucma_agent.c */
/* Starts the agent if it is not running: 0, or a negative errno. */
int ucma_agent_start(void);
struct ibv_context *ucma_agent_context(void);
const struct ucma_dir *ucma_agent_dir(void);
uint32_t ucma_agent_qpn(void);
uint32_t ucma_agent_qkey(void);
__be64 ucma_agent_guid(void);
uint8_t ucma_agent_mtu(void);
/* Sends m to an agent; returns 0 or a negative errno (the message is lost). */
int ucma_agent_send(uint16_t lid, uint32_t qpn, uint32_t qkey, const struct ucma_msg *m);
/* Wakes the agent thread to recompute its next deadline. */
void ucma_agent_kick(void);
uint64_t ucma_now_ns(void);

/* The provider's RDMA CM directory, looked up in the loaded provider. */
struct ucma_dir {
	int (*my_node)(struct ibv_context *, struct ivrdma_cm_node *);
	int (*node_by_lid)(struct ibv_context *, uint16_t, struct ivrdma_cm_node *);
	int (*resolve)(struct ibv_context *, const uint8_t *, struct ivrdma_cm_node *);
	int (*my_addr)(struct ibv_context *, uint8_t *);
	int (*is_my_addr)(struct ibv_context *, const uint8_t *);
	int (*listen)(struct ibv_context *, const struct ivrdma_cm_listener *);
	void (*unlisten)(struct ibv_context *, int);
	int (*find_listener)(struct ibv_context *, uint32_t, uint16_t, uint16_t, const uint8_t *,
			     struct ivrdma_cm_listener *);
};

#endif /* IVRDMA_UCMA_H */
