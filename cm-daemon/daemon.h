/* SPDX-License-Identifier: MIT */
/*
 * ivrdmad's state. One thread, one epoll loop; every fd it watches is a
 * struct watch whose handler runs when the fd is ready.
 */
#ifndef IVRDMAD_DAEMON_H
#define IVRDMAD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "owner_tag.h"
#include "region.h"

struct daemon;
struct watch;

typedef void (*watch_fn)(struct daemon *d, struct watch *w, uint32_t events);

struct watch {
	int fd;
	watch_fn on_event;
};

struct vm_config {
	char name[IVRDMA_NAME_LEN];
	uint64_t guid; /* 0: derived from the name */
};

/* The IP addresses RDMA CM resolves to one node (--addr), as the region stores them. */
struct node_addrs {
	uint32_t nr;
	uint8_t ip[IVRDMA_NODE_ADDRS][16]; /* IPv6, or IPv4-mapped (::ffff:a.b.c.d) */
};

/* Most --addr options: each names at least one address. */
#define ADDR_ARGS_MAX (IVRDMA_MAX_NODES * IVRDMA_NODE_ADDRS)

struct daemon_config {
	const char *dir;	   /* sockets live here */
	const char *shm_name;	   /* POSIX shm object, unless hugetlbfs is set */
	const char *hugetlbfs;	   /* directory on a hugetlbfs mount */
	uint64_t region_size;	   /* 0 until --size auto is worked out */
	char region_size_why[160]; /* where region_size came from, for the log */
	bool region_size_auto;	   /* --size auto: an adopted region keeps its own size */
	uint32_t nr_vectors;
	uint32_t max_peers;
	uint32_t chunk_shift;
	uint64_t host_guid;	/* 0: derived from the host name "host" */
	uint64_t subnet_prefix; /* 0: derived from the region (subnet.c) */
	struct vm_config vms[IVRDMA_MAX_NODES - 1];
	uint32_t nr_vms;
	uint32_t socket_mode;	  /* permissions of the sockets and the region */
	uint32_t rejoin_grace_ms; /* how long an adopted region's peers have to rejoin */
	/* --addr as given: read once every --vm is known, wherever it stands */
	const char *addr_args[ADDR_ARGS_MAX];
	uint32_t nr_addr_args;
	struct node_addrs addrs[IVRDMA_MAX_NODES]; /* by node index: the host 0, VM i i + 1 */
};

/* The backing store of the region: a shm object or a hugetlbfs file. */
struct region_store {
	int fd;
	void *base;
	uint64_t size;
	char path[256]; /* shm name ("/ivrdma") or file path */
	bool is_shm;
	bool existing; /* left by an ivrdmad that is gone: adopt or remove */
};

/* A queued protocol message, kept when the client's socket is full. */
struct outmsg {
	int64_t value;
	int fd; /* a dup the queue owns, or -1 */
};

struct peer {
	struct watch w; /* the client's socket */
	uint16_t id;
	uint16_t gen;
	uint32_t node;
	pid_t pid;
	int vectors[IVRDMA_MAX_VECTORS]; /* eventfds, nr_vectors of them */
	struct outmsg *queue;
	uint32_t q_head, q_len, q_cap;
	bool doomed; /* disconnect at the end of this loop turn */
	const char *doom_reason;
	/*
	 * In an adopted region, ACTIVE when this ivrdmad started: no socket,
	 * no eventfds (w.fd and vectors -1) until the process rejoins
	 * (rejoin.c). Its process is watched (exit_w, a pidfd): it is
	 * reclaimed when it exits, never before (adopt.c says why).
	 */
	bool orphan;
	bool overdue; /* told it has not rejoined within --rejoin-grace */
	int64_t rejoin_deadline_ms;
	uint64_t joined_ns;  /* its peer entry's, to tell a reused pid */
	struct watch exit_w; /* an orphan's pidfd, else fd -1 */
};

struct listener {
	struct watch w;
	uint32_t node; /* node the connecting peer belongs to */
	bool pending;  /* a connection is waiting: accept after this loop turn */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct ctl_client;
struct json_object;
struct rejoin_state;

/* A migrate-begin or migrate-end request waiting for its answer (migrate.c). */
struct migration {
	struct ctl_client *client; /* NULL: none waits */
	uint32_t node;
	uint32_t seq;	   /* migrate-begin: the suspend_seq every context must acknowledge */
	uint32_t contexts; /* migrate-begin: the live contexts when it began */
	bool ending;	   /* migrate-end: waiting for the node to be ACTIVE */
	int64_t started_ms, deadline_ms;
};

/* Ended contexts whose totals `ivrdma status` still shows (contexts.c). */
#define IVRDMA_ENDED_CONTEXTS 64
#define IVRDMA_STALE_EXECS    16 /* executions a reclaim no longer waits for */

struct daemon {
	struct daemon_config cfg;
	int epfd;
	bool running;
	struct watch signals;
	struct region_store store;
	struct ivrdma_region region;
	struct listener *listeners; /* one per node: host first, then each VM */
	uint32_t nr_listeners;
	struct listener ctl;
	struct ctl_client *ctl_clients;
	struct peer *peers[IVRDMA_MAX_PEERS];
	uint32_t nr_peers;
	uint32_t next_peer_id;		     /* where the search for a free ID starts */
	uint16_t peer_gen[IVRDMA_MAX_PEERS]; /* survives the peer */
	/* The daemon's own truth; the region's copies are for readers only. */
	uint32_t node_peers[IVRDMA_MAX_NODES];
	uint32_t node_epoch[IVRDMA_MAX_NODES];
	int reserve_fd; /* released to accept-and-close when out of fds */
	struct json_object *ended[IVRDMA_ENDED_CONTEXTS]; /* a ring: the latest ended contexts */
	uint32_t ended_next;
	int64_t last_sweep_ms;
	int64_t channels_swept_ms; /* channels.c */
	struct migration mig;
	/* Executions a reclaim gave up waiting for (exec_drain.c): not waited for again. */
	struct stale_exec {
		uint32_t slot;
		uint64_t seq;
	} stale_exec[IVRDMA_STALE_EXECS];
	uint32_t stale_next;
	bool adopted;		     /* the region was kept from an ivrdmad that is gone */
	uint32_t nr_orphans;	     /* peers of an adopted region yet to rejoin */
	struct rejoin_state *rejoin; /* rejoin.c */
};

/* context_gone.c */
/*
 * Context record 'idx' ended with what its own tag holds (IVRDMA_CTX_OWN_TAG):
 * 'died' (RELEASED) as a death, settled first; else closed. Stores CLOSED
 * and reclaims; the record itself stays for the caller to free.
 */
void context_gone(struct daemon *d, uint32_t idx, bool died);

/* exec_drain.c */
/* Waits (bounded) for other participants' executions under way as 'gone' left. */
void exec_drain(struct daemon *d, const struct ivrdma_gone *gone);

/* loop.c */
/*
 * One turn of the loop: waits up to timeout_ms, runs the handlers of what
 * is ready, then reaps departures and takes new connections. Returns how
 * many fds were ready, or -errno if epoll_wait failed.
 */
int loop_turn(struct daemon *d, int timeout_ms);
int loop_add(struct daemon *d, struct watch *w, uint32_t events);
int loop_mod(struct daemon *d, struct watch *w, uint32_t events);
void loop_del(struct daemon *d, struct watch *w);
int64_t monotonic_ms(void);
void shed_connection(struct daemon *d, int listen_fd, const char *path);

/* region_store.c */
int region_store_create(struct region_store *s, const struct daemon_config *cfg);
void region_store_destroy(struct region_store *s);
int region_format(struct region_store *s, const struct daemon_config *cfg);
void region_store_release(struct region_store *s);
/* The header fields and tables that cfg gives a region (the rest zero). */
void region_layout(struct ivrdma_region_header *h, const struct daemon_config *cfg);

/* adopt.c: keeping a region whose ivrdmad is gone, with its live peers */
/*
 * d->store holds an existing region: 0 once it is d->region, its peers
 * orphans waiting to rejoin; -EPROTO after a warning saying why it cannot
 * be kept (the caller then removes it and formats a new one).
 */
int adopt_region(struct daemon *d);
/* Orphans still away after --rejoin-grace are reported, once. */
void adopt_tick(struct daemon *d);
/* Whether process 'pid' is still the one that joined at joined_ns (CLOCK_REALTIME). */
bool adopt_process_alive(pid_t pid, uint64_t joined_ns);

/* rejoin.c: DIR/rejoin.sock, where a host process of an adopted region rejoins */
int rejoin_open(struct daemon *d);
void rejoin_close(struct daemon *d);
void rejoin_tick(struct daemon *d);

/* subnet.c: the region's GID prefix */
uint64_t subnet_prefix_derive(const char *store_path, const char *dir);
int subnet_prefix_parse(const char *s, uint64_t *out);
void subnet_prefix_format(uint64_t prefix, char *out, size_t len);

/* addrs.c: the nodes' IP addresses */
/*
 * Reads cfg->addr_args into cfg->addrs, once the VMs are known. Returns 0,
 * or -EINVAL after saying on stderr which address is refused and why.
 */
int addrs_resolve(struct daemon_config *cfg);
/* An address as people write it: dotted quad for IPv4-mapped, else IPv6 text. */
void addrs_format(const uint8_t ip[16], char *out, size_t len);

/* directory.c */
uint64_t directory_guid_for_name(const char *name);
void directory_format_gid(const uint8_t gid[16], char *out, size_t len);
void directory_init(struct daemon *d);
void directory_peer_joined(struct daemon *d, const struct peer *p);
void directory_peer_left(struct daemon *d, const struct peer *p);
void directory_peer_freed(struct daemon *d, const struct peer *p);
const char *directory_node_state_name(uint32_t state);
/* A node's name as configured (never the region's copy): "?" for no such node. */
const char *directory_node_name(const struct daemon *d, uint32_t node);

/* migrate.c: migrate-begin / migrate-end; each returns the answer or NULL (it waits) */
char *migrate_begin(struct daemon *d, struct ctl_client *c, const char *args);
char *migrate_end(struct daemon *d, struct ctl_client *c, const char *args);
void migrate_tick(struct daemon *d);
int migrate_poll_ms(const struct daemon *d, int idle_ms);
void migrate_client_gone(struct daemon *d, const struct ctl_client *c);

/* ctl.c, for requests answered later: the answer text (malloc'ed, taken), the client's deadline */
char *ctl_error_json(const char *msg);
void ctl_client_answer(struct daemon *d, struct ctl_client *c, char *text);
void ctl_client_hold(struct ctl_client *c, int64_t deadline_ms);

/*
 * channels.c: the directory of completion channels. open: made (0, or a
 * negative errno); tick: the channels of processes gone removed every few
 * seconds; close: removed if empty.
 */
int channels_open(struct daemon *d);
void channels_tick(struct daemon *d);
void channels_close(struct daemon *d);

/* contexts.c: verbs contexts and their counters */
void contexts_sweep(struct daemon *d);
void contexts_tick(struct daemon *d);
void contexts_peer_gone(struct daemon *d, uint16_t peer_id);
struct json_object *contexts_json(struct daemon *d);
void contexts_free(struct daemon *d);

/* cm_listeners.c: the region's RDMA CM listeners, for status; returns a new JSON array */
struct json_object *cm_listeners_json(struct daemon *d);

/* server.c: the ivshmem protocol side */
int server_open(struct daemon *d);
void server_close(struct daemon *d);
void server_reap_doomed(struct daemon *d);
void server_accept_pending(struct daemon *d);
void server_ring_control_all(struct daemon *d);
/* Rings peer 'peer''s IVRDMA_VEC_COMPLETION (an ivrdma_cq_wake_fn; arg: the daemon). */
void server_wake_cq_owner(void *arg, int peer);
/* An adopted region's ACTIVE peer entry 'id', as an orphan; -errno */
int server_add_orphan(struct daemon *d, uint16_t id);
/*
 * Orphan p rejoins on socket sock with its eventfds (nr_vectors, taken):
 * introduced as on a join, the others told of its vectors. 0 or -errno
 * (then sock and fds are closed, p stays an orphan).
 */
int server_rejoin(struct daemon *d, struct peer *p, int sock, const int *fds);
/* SIGTERM with peers attached: forget them without reclaiming anything. */
void server_abandon_peers(struct daemon *d);

/* ctl.c: the control socket */
#define CTL_REQUEST_MAX 256

/* A request line as it arrives, in pieces. */
struct ctl_request {
	char in[CTL_REQUEST_MAX];
	size_t len;
};

/*
 * Appends n bytes of a request: 1 once the line is complete (q->in holds
 * it, NUL-terminated), 0 while more is needed, -1 if it can never be (too
 * long, or a NUL byte).
 */
int ctl_request_feed(struct ctl_request *q, const char *bytes, size_t n);
/*
 * The answer to a complete request line of client 'c': a malloc'ed JSON
 * text, or NULL when ctl_client_answer gives it later (c->waiting: a
 * migrate request) or memory ran out. NULL 'c' (no connection): migrate
 * requests are refused.
 */
char *ctl_answer(struct daemon *d, struct ctl_client *c, const char *request);
int ctl_open(struct daemon *d);
void ctl_close(struct daemon *d);
void ctl_expire(struct daemon *d);
struct json_object *ctl_status_json(struct daemon *d);

/* loop.c: a listening unix socket at path (mode: its permission bits); the fd, or -errno */
int unix_listen(const char *path, uint32_t mode);

#endif /* IVRDMAD_DAEMON_H */
