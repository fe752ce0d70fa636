/* SPDX-License-Identifier: MIT */
/* ivrdma provider internals: the device, the context, the objects. */
#ifndef IVRDMA_PROVIDER_H
#define IVRDMA_PROVIDER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "cq_producer.h"
#include "owner_tag.h"
#include "queue_lock.h"
#include "recv_take.h"
#include "region.h"
#include "shm_atomic.h"
#include "verbs_abi.h"

#define IVRDMA_IBDEV_PREFIX "ivrdma"
#define IVRDMA_PORT_NUM	    1
#define IVRDMA_GID_TBL_LEN  1 /* one GID per node: what the sysfs tree lists */
#define IVRDMA_PKEY_TBL_LEN 1 /* the default partition only */

struct ivt;
struct ivrdma_ctx_counters;

struct ivrdma_device {
	struct verbs_device ibv_dev;
};

struct ivrdma_context {
	struct verbs_context ibv_ctx;
	struct ivt *transport;
	struct ivrdma_region region; /* validated copy of the header's geometry */
	uint32_t node;		     /* my node's index in the directory */
	int async_wr;		     /* provider's end of async_fd: events are written here */
	int event_sock;	  /* host: sends completion events to channels by path (direct_event.c) */
	bool event_relay; /* IVRDMA_EVENT_RELAY: my producers ring owners as before (benchmarks) */
	bool kernel_channels; /* host mode over ivrdma_host: cmd_fd posts to its channels by id */
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* ivrdmad's, where channels are */
	atomic_uint next_pd_handle;
	uint16_t peer_id;
	uint32_t owner_tag;	       /* tags my slots and chunks: my peer's, or my context's */
	uint16_t lid;		       /* my node's LID: the source of everything I send */
	pthread_mutex_t async_lock;    /* async_fd's records: posting, taking back (events.c) */
	pthread_mutex_t mr_lock;       /* registering and deregistering, one at a time */
	pthread_mutex_t mrs_lock;      /* the table below: executions look up unmoved MRs in it */
	struct ivrdma_mr **mr_by_slot; /* every MR of the context, by its slot (its key's) */
	int uffd;		       /* holds writers off moving pages (page_freeze.c) */
	sigset_t freeze_sigmask;       /* the mover's signal mask while it holds them */
	pthread_mutex_t pending_lock;
	struct ivrdma_qp *pending; /* QPs with WRs waiting on RNR or retry */
	atomic_int nr_pending;
	struct ivrdma_events *events; /* the event thread (events.c) */
	pthread_mutex_t srq_lock;
	struct ivrdma_srq *srqs;	/* every SRQ of the context (srq.c) */
	struct ivrdma_rq_done *rq_done; /* one per QP slot of the region (qp_rx.c) */
	atomic_int nr_armed_srqs;	/* of which have a limit armed: poll_cq checks them */
	/* The context record (counters.c). */
	struct ivrdma_ctx_counters *counters;
	/* My live QPs by slot: completions name a QP by number only (qp.c). */
	struct ivrdma_qp_entry *qp_by_slot;
	/* suspend.c: the region's suspend_seq acted on (event thread only) */
	uint32_t suspend_seen;
	atomic_bool left; /* my node suspended: the region is no longer mine to use */
};

struct ivrdma_td {
	struct ibv_td ibv_td;
	atomic_int users; /* parent domains naming it: dealloc_td is EBUSY until 0 */
};

static inline struct ivrdma_td *to_itd(struct ibv_td *td)
{
	return (struct ivrdma_td *)((char *)td - offsetof(struct ivrdma_td, ibv_td));
}

struct ivrdma_pd {
	struct ibv_pd ibv_pd;
	atomic_int
	    users; /* MRs, QPs, SRQs, CQs, parent domains in it: dealloc_pd is EBUSY until 0 */
	/* A parent domain (domain.c): its protection domain, whose handle it has; else NULL. */
	struct ivrdma_pd *protection;
	struct ivrdma_td *td; /* a parent domain's thread domain, or NULL */
	void *(*alloc)(struct ibv_pd *pd, void *pd_context, size_t size, size_t alignment,
		       uint64_t resource_type); /* kept, never called (domain.c) */
	void (*free)(struct ibv_pd *pd, void *pd_context, void *ptr, uint64_t resource_type);
	void *pd_context;
};

static inline struct ivrdma_pd *to_ipd(struct ibv_pd *pd)
{
	return (struct ivrdma_pd *)((char *)pd - offsetof(struct ivrdma_pd, ibv_pd));
}

static inline struct ivrdma_context *to_ictx(struct ibv_context *ctx)
{
	return (struct ivrdma_context *)((char *)ctx - offsetof(struct ivrdma_context, ibv_ctx) -
					 offsetof(struct verbs_context, context));
}

/* My node's directory entry, or NULL if the region no longer has it. */
static inline struct ivrdma_node *ivrdma_my_node(const struct ivrdma_context *ctx)
{
	return ivrdma_region_node(&ctx->region, ctx->node);
}

/* States in which a QP takes incoming messages (RTR up to SQE; SQD receives too). */
/*
 * The QP slot that QP number 'qpn' names in *slot (completions carry the
 * number, read from the region: anything); false if it names none.
 */
static inline bool ivrdma_qpn_slot(const struct ivrdma_context *ctx, uint32_t qpn, uint32_t *slot)
{
	*slot = qpn - IVRDMA_QPN_BASE;
	return qpn >= IVRDMA_QPN_BASE && *slot < ctx->region.qps.entries;
}

static inline bool ivrdma_state_receives(uint32_t state)
{
	return state >= IBV_QPS_RTR && state <= IBV_QPS_SQE;
}

/* max_cqe as ConnectX's: libfabric's rxm asks 256K; the region must hold the ring. */
#define IVRDMA_MAX_WR	    16384
#define IVRDMA_MAX_SGE	    32
#define IVRDMA_MAX_CQE	    4194303
#define IVRDMA_MAX_INLINE   1024
#define IVRDMA_MAX_MSG_SIZE 0x80000000u /* 2 GiB, InfiniBand's limit */

/* A ring the owner consumes from: the current one, or one a resize left to drain. */
struct ivrdma_cq_ring {
	struct ivrdma_cqe *ring;
	uint32_t mask;
	uint32_t first_chunk, nr_chunks;
	uint64_t base;		     /* its epoch's first ticket */
	uint64_t end;		     /* the first ticket not in it (S), once a newer ring exists */
	struct ivrdma_cq_ring *next; /* the newer ring; NULL: this is the current one */
};

/*
 * How far initiators have taken from the receive ring of my QP in that
 * slot, as its polled completions said: the highest IVRDMA_RQ_TICKET seen
 * with the seq of my QP's slot. One word, so a new QP's reset and a late
 * completion of the slot's earlier QP cannot interleave. The taken count
 * is a lower bound of rq_cons that costs no cache line from initiators.
 */
struct ivrdma_rq_done {
	_Atomic uint64_t ticket;
};

/* Room for the largest receive WQE, aligned for shm_read_words_relaxed. */
union ivrdma_recv_wqe_buf {
	struct ivrdma_recv_wqe w;
	uint8_t bytes[IVRDMA_RQ_STRIDE(IVRDMA_MAX_SGE)];
	uint64_t words[IVRDMA_RQ_STRIDE(IVRDMA_MAX_SGE) / 8];
};

/* A receive ring (a QP's RQ or an SRQ), validated once. */
struct ivrdma_rq_view {
	uint8_t *ring;
	const struct ivrdma_region *region;
	struct ivrdma_ring_id id; /* which ring: takers' intents name it */
	uint64_t *prod, *cons;
	uint32_t mask, stride, max_sge;
	uint64_t cons_seen; /* the producer's: *cons as last read; never ahead of it */
	uint64_t prod_seen; /* a consumer's: *prod as last read; never ahead of it */
};

struct ivrdma_mr {
	struct verbs_mr vmr;
	uint32_t slot;
	struct ivrdma_mr_slot *s;
	struct ivrdma_span *span;    /* NULL: not moved (local access only) */
	struct ivrdma_mr *span_next; /* the span's MRs (mr_move.c) */
	atomic_int *dm_users;	     /* on device memory (dm.c): its count of MRs; else NULL */
};

struct ivrdma_cq {
	struct verbs_cq vcq;
	struct ivrdma_queue_lock lock; /* one consumer at a time */
	uint32_t slot;
	struct ivrdma_cq_view view;  /* for my own QPs' send completions */
	struct ivrdma_cq_ring *rd;   /* the ring cons is in: the oldest not drained (cq_resize.c) */
	struct ivrdma_cq_ring *last; /* the current ring, where new tickets go */
	_Atomic uint64_t cons;	     /* my copy of slot->cons (ivrdma_cq_cons) */
	_Atomic uintptr_t geometry;  /* rd->ring | log2 of its entries (ivrdma_cq_maybe_ready) */
	bool polling;		     /* ibv_cq_ex: an entry at cons is being read (cq_ex.c) */
	atomic_int users;	     /* QPs using the CQ: it cannot be destroyed under them */
	bool overflow_reported;	     /* IBV_EVENT_CQ_ERR posted (events.c) */
	struct ibv_pd *parent;	     /* its parent domain (cq_ex.c), held until destroyed */
	unsigned int async_posted;   /* its async events written (under ctx->async_lock) */
	uint64_t channel_id;	     /* its channel's, published in the slot; 0: none */
	uint32_t event_rule;	     /* in a guest: the driver's rule posting its events; 0: none */
};

/*
 * A QP slot of mine, as qp.c's lookups by number read it:
 * both written under qp.c's all_lock, recv_cq after qp; both cleared
 * before ivrdma_destroy_qp() waits for the receive CQ's pollers.
 */
struct ivrdma_qp_entry {
	_Atomic(struct ivrdma_qp *) qp;
	_Atomic(struct ivrdma_cq *) recv_cq;
};

/* A bind of a memory window, as a WR carries it (mw.c). */
struct ivrdma_mw_bind {
	struct ibv_mw *mw;
	uint32_t rkey;	   /* the window's key once bound */
	struct ibv_mr *mr; /* NULL: unbind (type 1) */
	uint64_t addr, length;
	unsigned int access;
};

/* A send WR kept while it waits (RNR, target not ready) or to be flushed. */
struct ivrdma_swqe {
	uint64_t wr_id;
	enum ibv_wr_opcode opcode;
	unsigned int send_flags;
	uint32_t imm_data;
	uint32_t num_sge;
	uint64_t remote_addr;
	uint32_t rkey;
	uint64_t compare_add, swap;
	struct ibv_sge sge[IVRDMA_MAX_SGE]; /* not kept for an inline WR */
	uint8_t *inline_buf;		    /* IVRDMA_MAX_INLINE bytes of the QP's inline area */
	uint32_t inline_len;
	struct ivrdma_ah *ah; /* UD: the datagram's address */
	uint32_t remote_qpn, remote_qkey;
	uint32_t remote_srqn;	    /* XRC: the SRQ at the other end that takes it */
	uint32_t invalidate_rkey;   /* local invalidate, send with invalidate */
	struct ivrdma_mw_bind bind; /* bind a window */
};

/* The remote end of a connected QP, looked up and validated at RTR. */
struct ivrdma_peer_qp {
	struct ivrdma_qp_slot *slot;
	uint32_t owner, seq, qpn, pd_handle;
	uint32_t rq_pd_handle; /* the PD receive buffers are checked in: the SRQ's if it has one */
	uint16_t lid;
	uint32_t *srq_limit; /* rq is an SRQ's ring: its armed limit, in its slot; else NULL */
	uint64_t rq_ticket;  /* of the receive last taken (IVRDMA_RQ_TICKET), for its CQE */
	uint32_t srqn;	     /* XRC: the SRQ this view is of (then owner and seq are its) */
	struct ivrdma_rq_view rq;
	struct ivrdma_cq_view cq;
};

struct ivrdma_qp {
	struct verbs_qp vqp;
	struct ivrdma_queue_lock sq_lock;
	struct ivrdma_queue_lock rq_lock;
	uint32_t slot;
	struct ivrdma_qp_slot *s;
	uint32_t rq_first_chunk, rq_nr_chunks;
	struct ivrdma_rq_view rq;
	struct ivrdma_cq *send_cq, *recv_cq;
	struct ivrdma_srq *srq; /* receives come from here instead of the QP's own ring */
	struct ibv_qp_cap cap;
	bool sq_sig_all;
	struct ibv_qp_attr attr; /* what modify_qp set, for query_qp */
	struct ivrdma_peer_qp peer;
	struct ivrdma_peer_qp ud_last;	/* UD: the last destination, kept while it lives */
	struct ivrdma_peer_qp xrc_last; /* XRC send: the receive QP with the SRQ last sent to */
	struct ivrdma_xrcd *xrcd;	/* XRC receive: its domain */
	struct ivrdma_qp *opened;	/* ibv_open_qp: the QP this handle opens, else NULL */
	atomic_int opens;		/* handles that open this QP: destroy_qp is EBUSY until 0 */
	unsigned int async_posted;	/* its async events written (under ctx->async_lock) */
	bool sqd_notify;		/* SQD asked for IBV_EVENT_SQ_DRAINED, not yet posted */
	/* Send WRs not yet executed (head blocked on RNR/retry): a private ring. */
	struct ivrdma_swqe *sq;
	uint8_t *inline_area;
	uint32_t sq_head, sq_count;
	int rnr_left, retry_left;
	uint64_t next_try_ns;
	uint64_t exec_seq; /* what s->exec_seq last got (qp_tx.c) */
	bool on_pending_list;
	struct ivrdma_qp *pending_next;
	struct ivrdma_qp *all_next; /* the process's QPs (qp.c) */
	/* The ibv_qp_ex WR being built (qp_ex.c), between wr_start and wr_complete. */
	struct ibv_send_wr xwr;
	struct ibv_sge xsge[IVRDMA_MAX_SGE];
	uint8_t x_atomic[8]; /* wr_atomic_write's value, until the WR is queued */
	uint32_t x_first;    /* sq_count at wr_start: wr_abort goes back to it */
	int x_err;	     /* the batch's first error */
	bool x_building;     /* xwr has an opcode and is not queued yet */
	int x_setters;	     /* setters still to come before xwr is complete */
	/* The private running totals behind s->counters (counters.h). */
	struct ivrdma_qp_counters tally;
};

/* XRC QPs have no receive ring: what an XRC receive QP takes is its SRQs'. */
static inline bool ivrdma_qp_type_has_rq(enum ibv_qp_type type)
{
	return type != IBV_QPT_XRC_SEND && type != IBV_QPT_XRC_RECV;
}

/* Does the QP take receives from a ring of its own (not an SRQ's, not none)? */
static inline bool ivrdma_qp_own_rq(const struct ivrdma_qp *qp)
{
	return !qp->srq && ivrdma_qp_type_has_rq(qp->vqp.qp.qp_type);
}

/* The QP's own receive ring, as takers' intents name it. */
static inline struct ivrdma_ring_id ivrdma_qp_ring(const struct ivrdma_qp *qp)
{
	return (struct ivrdma_ring_id){IVRDMA_RING_OF_QP(qp->slot),
				       shm_load_relaxed32(&qp->s->hdr.seq)};
}

struct ivrdma_srq {
	struct verbs_srq vsrq;
	struct ivrdma_queue_lock lock; /* the ring has one producer: one poster at a time */
	uint32_t slot;
	struct ivrdma_srq_slot *s;
	uint32_t first_chunk, nr_chunks;
	struct ivrdma_rq_view rq;
	uint32_t max_sge;
	atomic_int users;	   /* QPs taking receives from it */
	unsigned int async_posted; /* its async events written (under ctx->async_lock) */
	struct ivrdma_srq *next;
	struct ivrdma_xrcd *xrcd; /* XRC: its domain; NULL for a basic SRQ */
	struct ivrdma_cq *xrc_cq; /* XRC: where its receive completions go */
};

struct ivrdma_xrcd {
	struct verbs_xrcd vxrcd;
	uint32_t id;	  /* IVRDMA_XRCD_SHARED (ivrdma_layout.h) */
	atomic_int users; /* its SRQs and receive QPs: close_xrcd is EBUSY until 0 */
};

static inline struct ivrdma_xrcd *to_ixrcd(struct ibv_xrcd *x)
{
	return (struct ivrdma_xrcd *)((char *)x - offsetof(struct ivrdma_xrcd, vxrcd) -
				      offsetof(struct verbs_xrcd, xrcd));
}

struct ivrdma_ah {
	struct ibv_ah ibv_ah;
	struct ibv_ah_attr attr;
};

static inline struct ivrdma_ah *to_iah(struct ibv_ah *ah)
{
	return (struct ivrdma_ah *)((char *)ah - offsetof(struct ivrdma_ah, ibv_ah));
}

static inline struct ivrdma_srq *to_isrq(struct ibv_srq *srq)
{
	return (struct ivrdma_srq *)((char *)srq - offsetof(struct ivrdma_srq, vsrq));
}

static inline struct ivrdma_cq *to_icq(struct ibv_cq *cq)
{
	return (struct ivrdma_cq *)((char *)cq - offsetof(struct ivrdma_cq, vcq));
}

/*
 * cq->cons moves under cq->lock, and ivrdma_cq_maybe_ready reads it
 * without: relaxed atomics, as the value is a hint there.
 */
static inline uint64_t ivrdma_cq_cons(const struct ivrdma_cq *cq)
{
	return atomic_load_explicit(&cq->cons, memory_order_relaxed);
}

/*
 * The ring being consumed and its size in one word, for
 * ivrdma_cq_maybe_ready: draining a resized CQ changes both under
 * cq->lock, and a reader without the lock must not pair one ring with
 * another's size. A ring is 64-byte aligned (ivrdma_cq_view checks it):
 * the low bits hold log2 of its entries.
 */
static inline void ivrdma_cq_set_geometry(struct ivrdma_cq *cq)
{
	atomic_store_explicit(&cq->geometry,
			      (uintptr_t)cq->rd->ring | (uintptr_t)__builtin_ctz(cq->rd->mask + 1),
			      memory_order_relaxed);
}

void ivrdma_cq_drained(struct ivrdma_cq *cq);

/* The entry at cons is read (under cq->lock): on to the next, and past a drained ring. */
static inline void ivrdma_cq_advance(struct ivrdma_cq *cq)
{
	atomic_store_explicit(&cq->cons, ivrdma_cq_cons(cq) + 1, memory_order_relaxed);
	if (cq->rd->next && ivrdma_cq_cons(cq) == cq->rd->end)
		ivrdma_cq_drained(cq);
}

/* The entry at cons, in the ring being drained (under cq->lock). */
static inline const struct ivrdma_cqe *ivrdma_cq_at_cons(const struct ivrdma_cq *cq)
{
	return &cq->rd->ring[ivrdma_cq_cons(cq) & cq->rd->mask];
}

/*
 * Is there a completion to take? Read without cq->lock, as a hint: an
 * empty CQ, the common case of a busy poll, costs no lock. Whoever takes
 * the entry checks again under the lock. The ring read may be one a
 * resize just freed: its chunks stay mapped, and the answer is a hint.
 */
static inline bool ivrdma_cq_maybe_ready(const struct ivrdma_cq *cq)
{
	uintptr_t g = atomic_load_explicit(&cq->geometry, memory_order_relaxed);
	const struct ivrdma_cqe *ring = (const struct ivrdma_cqe *)(g & ~(uintptr_t)63);
	uint64_t cons = ivrdma_cq_cons(cq);
	const struct ivrdma_cqe *e = &ring[cons & ((1ull << (g & 63)) - 1)];

	return shm_load_relaxed64(&e->seq) == cons + 1;
}

static inline struct ivrdma_qp *to_iqp(struct ibv_qp *qp)
{
	return (struct ivrdma_qp *)((char *)qp - offsetof(struct ivrdma_qp, vqp));
}

static inline struct ivrdma_mr *to_imr(struct verbs_mr *vmr)
{
	return (struct ivrdma_mr *)((char *)vmr - offsetof(struct ivrdma_mr, vmr));
}

/* Prints only when IVRDMA_DEBUG is set: a provider must not write to stderr. */
void ivrdma_dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sets errno to err and returns NULL: the verbs convention for failed creates. */
void *ivrdma_fail_null(int err);

/* device.c */
int ivrdma_query_rt_values(struct ibv_context *context, struct ibv_values_ex *values);
int ivrdma_query_device_ex(struct ibv_context *context,
			   const struct ibv_query_device_ex_input *input,
			   struct ibv_device_attr_ex *attr, size_t attr_size);
int ivrdma_query_port(struct ibv_context *context, uint8_t port_num,
		      struct ibv_port_attr *port_attr);

/* pd.c */
struct ibv_pd *ivrdma_alloc_pd(struct ibv_context *context);
int ivrdma_dealloc_pd(struct ibv_pd *pd);
void ivrdma_pd_get(struct ibv_pd *pd);
void ivrdma_pd_put(struct ibv_pd *pd);
/* domain.c: thread domains, parent domains */
struct ibv_td *ivrdma_alloc_td(struct ibv_context *context, struct ibv_td_init_attr *attr);
int ivrdma_dealloc_td(struct ibv_td *td);
struct ibv_pd *ivrdma_alloc_parent_domain(struct ibv_context *context,
					  struct ibv_parent_domain_init_attr *attr);
void ivrdma_parent_domain_release(struct ivrdma_pd *pd);
int ivrdma_cq_parent_check(struct ibv_context *context, struct ibv_pd *pd);
/* The ops for objects in a PD: these count the PD's users around the real ones. */
struct ibv_mr *ivrdma_pd_reg_mr(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
				int access);
int ivrdma_pd_dereg_mr(struct verbs_mr *vmr);
int ivrdma_pd_rereg_mr(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr,
		       size_t length, int access);
struct ibv_qp *ivrdma_pd_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
struct ibv_mr *ivrdma_pd_reg_dm_mr(struct ibv_pd *pd, struct ibv_dm *dm, uint64_t dm_offset,
				   size_t length, unsigned int access);
struct ibv_qp *ivrdma_pd_create_qp_ex(struct ibv_context *context,
				      struct ibv_qp_init_attr_ex *attr);
int ivrdma_pd_destroy_qp(struct ibv_qp *qp);
struct ibv_srq *ivrdma_pd_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr);
struct ibv_srq *ivrdma_pd_create_srq_ex(struct ibv_context *context,
					struct ibv_srq_init_attr_ex *attr);
int ivrdma_pd_destroy_srq(struct ibv_srq *srq);

/*
 * direct_event.c: completion events sent by the producer to a host
 * process's channel, or in a guest queued by the driver's interrupt
 * handler. publish and withdraw: the owner, at create and destroy
 * (publish stores 0 for a channel that is no such socket; in a guest it
 * gives the driver the CQ's event rule, and withdraw cancels it).
 * direct_post: a producer whose CQE fired the arming; true if the event
 * was posted (by it or the owner's event thread), false if the owner's
 * doorbell must ring. channel_send: one event to channel 'id'.
 * direct_recover: the owner's event thread, under the events' lock, makes
 * the event due again if its producer died before sending it.
 */
void ivrdma_cq_direct_publish(struct ivrdma_context *ctx, struct ivrdma_cq *cq,
			      struct ibv_comp_channel *ch);
void ivrdma_cq_direct_withdraw(struct ivrdma_context *ctx, struct ivrdma_cq *cq);
bool ivrdma_cq_direct_post(struct ivrdma_context *ctx, struct ivrdma_cq_slot *s);
bool ivrdma_channel_send(struct ivrdma_context *ctx, uint64_t id, uint64_t cq_handle);
void ivrdma_cq_direct_recover(struct ivrdma_context *ctx, struct ivrdma_cq_slot *s);

/*
 * context_owner.c: in_guest: is the context attached over the guest
 * driver (not a client of a host's ivrdmad)? A guest context's own owner
 * tag: own, right after its record is OPEN (before the context holds
 * anything), switches owner_tag to the context tag and has the driver
 * mark the record RELEASED when the process ends; disown, before the
 * record is CLOSED.
 */
bool ivrdma_in_guest(const struct ivrdma_context *ctx);
void ivrdma_context_own(struct ivrdma_context *ctx, struct ivrdma_ctx_slot *record,
			uint32_t record_idx);
void ivrdma_context_disown(struct ivrdma_context *ctx);

/* slots.c: object slots and ring chunks owned by this context */
int64_t ivrdma_slot_alloc(struct ivrdma_context *ctx, const struct ivrdma_table *t);
void ivrdma_slot_free(struct ivrdma_context *ctx, const struct ivrdma_table *t, uint32_t idx);
void *ivrdma_ring_alloc(struct ivrdma_context *ctx, uint64_t bytes, uint32_t *first,
			uint32_t *count);
void *ivrdma_pages_alloc(struct ivrdma_context *ctx, uint64_t bytes, uint32_t *first,
			 uint32_t *count);
void ivrdma_ring_free(struct ivrdma_context *ctx, uint32_t first, uint32_t count);
uint64_t ivrdma_now_ns(void);

/* ring.c: the shared rings' algorithms (see ivrdma_layout.h; pushing: cq_producer.h) */
const struct ivrdma_cqe *ivrdma_cq_ready(const struct ivrdma_cqe *ring, uint32_t mask,
					 uint64_t cons);
void ivrdma_cq_hand_back(struct ivrdma_cq_slot *s, uint64_t cons);
/* The owner's switch to a new ring (the slot's geometry words, prod): returns S. */
uint64_t ivrdma_cq_switch(struct ivrdma_cq_slot *s, uint64_t geometry);
int ivrdma_rq_view(const struct ivrdma_region *r, const struct ivrdma_rq_desc *d, uint64_t *prod,
		   uint64_t *cons, struct ivrdma_ring_id id, struct ivrdma_rq_view *v);
int ivrdma_rq_post(struct ivrdma_rq_view *v, const struct ibv_recv_wr *wr);
typedef bool ivrdma_rq_usable_fn(const struct ivrdma_recv_wqe *w, void *arg);
int ivrdma_rq_take(struct ivrdma_rq_view *v, const struct ivrdma_rq_taker *t,
		   struct ivrdma_recv_wqe *out, uint64_t *index, ivrdma_rq_usable_fn *usable,
		   void *arg);
void ivrdma_rq_drop_all(struct ivrdma_rq_view *v);
void ivrdma_rq_prefetch(const struct ivrdma_rq_view *v);
void ivrdma_rq_taken_at_least(struct ivrdma_rq_view *v, uint64_t taken);

/*
 * mr_move.c: moving pages into the region and back. span_add links the MR
 * (context, addr and slot set) to a span over [start, end), moved in if
 * need be, and sets its slot's region_offset: 0 or a positive errno.
 */
struct ivrdma_span;
int ivrdma_span_add(struct ivrdma_context *ctx, struct ivrdma_mr *mr, uintptr_t start,
		    uintptr_t end);
void ivrdma_span_remove(struct ivrdma_context *ctx, struct ivrdma_mr *mr);
int ivrdma_span_switch(struct ivrdma_context *ctx, struct ivrdma_mr *mr, struct ivrdma_mr *tmp,
		       void (*apply)(struct ivrdma_mr *mr, const void *arg), const void *arg);
void ivrdma_spans_release(struct ivrdma_context *ctx);
/* proc_maps.c: /proc/self/maps, read in one go (0 or a positive errno) */
struct ivrdma_map {
	uintptr_t lo, hi;
	uint64_t offset; /* into the mapped file */
	uint64_t dev, ino;
	bool readable, writable, shared;
};
struct ivrdma_maps {
	struct ivrdma_map *v; /* in address order */
	size_t n;
};
int ivrdma_maps_read(struct ivrdma_maps *m);
/* The mapping holding addr, or NULL. */
const struct ivrdma_map *ivrdma_maps_find(const struct ivrdma_maps *m, uintptr_t addr);
/* The first mapping that ends past addr (it may start past it too), or NULL. */
const struct ivrdma_map *ivrdma_maps_next(const struct ivrdma_maps *m, uintptr_t addr);
void ivrdma_maps_free(struct ivrdma_maps *m);
/* mr_moving.c: the mover's side of the protocol at ivrdma_mr_flags */
void ivrdma_mr_set_moving(struct ivrdma_mr *mr, bool moving);
int ivrdma_wait_executions(const struct ivrdma_region *r);
/* page_freeze.c: under mr_move.c's span lock. 'private': anonymous pages, not the region's. */
#define IVRDMA_UFFD_UNOPENED (-2)
bool ivrdma_pages_freeze(struct ivrdma_context *ctx, uintptr_t start, uintptr_t end, bool private);
void ivrdma_pages_thaw(struct ivrdma_context *ctx, uintptr_t start, uintptr_t end, bool replaced);
void ivrdma_pages_release(struct ivrdma_context *ctx);

/*
 * mr.c: keys to bytes, for an execution (ivrdma_mr_flags): a moving MR,
 * found as its slot is read, is IVRDMA_XLATE_MOVING.
 */
enum ivrdma_xlate {
	IVRDMA_XLATE_OK = 0,
	IVRDMA_XLATE_BAD_KEY,
	IVRDMA_XLATE_BOUNDS,
	IVRDMA_XLATE_ACCESS,
	IVRDMA_XLATE_MOVING,
};
enum ivrdma_xlate ivrdma_rkey_remote(const struct ivrdma_region *r, uint32_t key, uint32_t owner,
				     uint32_t pd_handle, uint32_t qpn, uint64_t addr, uint64_t len,
				     int access, uint8_t **out);
enum ivrdma_xlate ivrdma_mr_remote(const struct ivrdma_region *r, uint32_t key, uint32_t owner,
				   uint32_t pd_handle, uint64_t addr, uint64_t len, int access,
				   uint8_t **out);
enum ivrdma_xlate ivrdma_mr_local(struct ivrdma_context *ctx, uint32_t key, uint32_t pd_handle,
				  uint64_t addr, uint64_t len, int access, uint8_t **out);

/* cq.c */
int ivrdma_poll_cq(struct ibv_cq *cq, int ne, struct ibv_wc *wc);
/* cq_resize.c: the owner's rings, the current one and those left to drain */
struct ivrdma_cq_ring *ivrdma_cq_ring_new(struct ivrdma_context *ctx, uint32_t n, uint64_t base);
void ivrdma_cq_rings_free(struct ivrdma_context *ctx, struct ivrdma_cq *cq);
uint32_t ivrdma_cq_entries(int cqe);

/* events.c: the event thread, completion and async events */
int ivrdma_events_start(struct ivrdma_context *ctx);
void ivrdma_events_stop(struct ivrdma_context *ctx);
int ivrdma_req_notify_cq(struct ibv_cq *cq, int solicited_only);
int ivrdma_events_add_cq(struct ivrdma_context *ctx, struct ivrdma_cq *cq);
void ivrdma_events_forget_cq(struct ivrdma_context *ctx, struct ivrdma_cq *cq);
void ivrdma_cq_wake(struct ivrdma_context *ctx, const struct ivrdma_cq_view *v);
void ivrdma_post_object_event(struct ivrdma_context *ctx, enum ibv_event_type type,
			      uint64_t element, unsigned int *posted);
void ivrdma_events_settle(struct ivrdma_context *ctx, uint64_t element, const unsigned int *posted,
			  pthread_mutex_t *m, pthread_cond_t *c, const uint32_t *completed);
void ivrdma_qp_event(struct ivrdma_qp *qp, enum ibv_event_type type);
void ivrdma_post_async_event(struct ivrdma_context *ctx, enum ibv_event_type type,
			     uint64_t element);

/* qp.c, qp_tx.c, qp_rx.c */
int ivrdma_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask);
int ivrdma_find_node(const struct ivrdma_region *r, uint16_t lid, const union ibv_gid *gid);
int ivrdma_peer_lookup(const struct ivrdma_region *r, enum ibv_qp_type type, int node, uint32_t qpn,
		       struct ivrdma_peer_qp *pq);

/* mcast.c: UD multicast (ibv_attach_mcast returns 0 or a positive errno). */
bool ivrdma_is_mcast_lid(uint16_t lid);
int ivrdma_attach_mcast(struct ibv_qp *ibqp, const union ibv_gid *gid, uint16_t lid);
int ivrdma_detach_mcast(struct ibv_qp *ibqp, const union ibv_gid *gid, uint16_t lid);
void ivrdma_mcast_detach_all(struct ivrdma_context *ctx, uint32_t qpn);
bool ivrdma_mcast_next(const struct ivrdma_region *r, uint16_t lid, const union ibv_gid *gid,
		       uint32_t *i, int *node, uint32_t *qpn);
void ivrdma_qp_enter_error(struct ivrdma_qp *qp);
void ivrdma_qp_peer_lost(struct ivrdma_qp *qp);
void ivrdma_qps_check(struct ivrdma_context *ctx);
void ivrdma_qps_fail_toward(struct ivrdma_context *ctx, uint16_t lid);
/* Holding every object of a context still while the region is swapped (suspend.c). */
typedef void ivrdma_chunk_run_fn(void *arg, uint32_t first_chunk, uint32_t nr_chunks);
void ivrdma_qps_hold(struct ivrdma_context *ctx, bool hold, ivrdma_chunk_run_fn *run, void *arg);
void ivrdma_cqs_hold(struct ivrdma_context *ctx, bool hold, ivrdma_chunk_run_fn *run, void *arg);
void ivrdma_srqs_hold(struct ivrdma_context *ctx, bool hold, ivrdma_chunk_run_fn *run, void *arg);

/* suspend.c: a node suspends (ivrdma_layout.h, "Suspending a node") */
void ivrdma_suspend_check(struct ivrdma_context *ctx);
bool ivrdma_context_left(const struct ivrdma_context *ctx);
int ivrdma_ring_peer(struct ivrdma_context *ctx, int peer, uint32_t vec);
/* mr_move.c: every span of the context's region goes back to private pages */
void ivrdma_spans_detach(struct ivrdma_context *ctx);
void ivrdma_notify_target(struct ivrdma_context *ctx, const struct ivrdma_peer_qp *pq,
			  uint32_t bits);
int ivrdma_query_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask,
		    struct ibv_qp_init_attr *init_attr);
int ivrdma_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr);
int ivrdma_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
void ivrdma_progress(struct ivrdma_context *ctx);
void ivrdma_qp_flush_sq(struct ivrdma_qp *qp);
bool ivrdma_peer_alive(struct ivrdma_context *ctx, const struct ivrdma_peer_qp *pq);
void ivrdma_qp_flush_rq(struct ivrdma_qp *qp);
int ivrdma_rq_done_init(struct ivrdma_context *ctx);
int ivrdma_qp_table_init(struct ivrdma_context *ctx);
int ivrdma_mr_table_init(struct ivrdma_context *ctx);
struct ivrdma_qp *ivrdma_qp_polled(const struct ivrdma_context *ctx, uint32_t qpn,
				   const struct ivrdma_cq *cq);
void ivrdma_rq_done_reset(struct ivrdma_context *ctx, struct ivrdma_qp *qp);
void ivrdma_rq_done_note(struct ivrdma_context *ctx, const struct ivrdma_cqe *e);
void ivrdma_qp_recv_failed(struct ivrdma_context *ctx, uint32_t qpn, bool sender_died);
void ivrdma_qp_complete(struct ivrdma_qp *qp, struct ivrdma_cq *cq, const struct ivrdma_cqe *e);
int ivrdma_sq_queue(struct ivrdma_qp *qp, const struct ibv_send_wr *wr);
int ivrdma_query_qp_data_in_order(struct ibv_qp *qp, enum ibv_wr_opcode op, uint32_t flags);
void ivrdma_sq_run(struct ivrdma_qp *qp);

/* counters.c: the context record, open to close (negative errno); more in counters.h */
int ivrdma_ctx_record_open(struct ivrdma_context *ctx);
void ivrdma_ctx_record_ack(struct ivrdma_context *ctx, uint32_t suspend_seq, uint8_t *record_page);
uint64_t ivrdma_ctx_record_page(struct ivrdma_context *ctx, uint64_t *page_off);
void ivrdma_ctx_record_close(struct ivrdma_context *ctx);

/* qp_ex.c: the ibv_qp_ex wr_* API */
int ivrdma_qp_ex_check(const struct ibv_qp_init_attr_ex *attr);
void ivrdma_qp_ex_init(struct ivrdma_qp *qp);

/* cq_ex.c: the ibv_cq_ex polling API */
struct ibv_cq_ex *ivrdma_create_cq_ex(struct ibv_context *context,
				      struct ibv_cq_init_attr_ex *attr);

/* srq.c */
int ivrdma_modify_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr, int mask);
int ivrdma_query_srq(struct ibv_srq *srq, struct ibv_srq_attr *attr);
int ivrdma_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
void ivrdma_srq_check_limits(struct ivrdma_context *ctx);
int ivrdma_srq_view(const struct ivrdma_region *r, uint32_t idx, uint32_t owner,
		    struct ivrdma_rq_view *v, uint32_t *pd_handle, uint32_t **limit);

struct ibv_mr *ivrdma_reg_mr(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
			     int access);
int ivrdma_dereg_mr(struct verbs_mr *vmr);
int ivrdma_mr_place(struct ivrdma_context *ctx, struct ivrdma_mr *mr, uintptr_t addr, size_t length,
		    int access);
int ivrdma_mr_check_args(uintptr_t addr, size_t length, int access);
/* mr_rereg.c */
int ivrdma_rereg_mr(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr, size_t length,
		    int access);
void ivrdma_mrs_release(struct ivrdma_context *ctx);
struct ibv_cq *ivrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector);
int ivrdma_destroy_cq(struct ibv_cq *cq);
int ivrdma_resize_cq(struct ibv_cq *cq, int cqe);
struct ibv_qp *ivrdma_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
struct ibv_qp *ivrdma_qp_create(struct ibv_context *context, struct ibv_pd *pd,
				struct ibv_qp_init_attr *attr, struct ivrdma_xrcd *xrcd);
struct ibv_qp *ivrdma_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr);
int ivrdma_destroy_qp(struct ibv_qp *qp);
struct ibv_srq *ivrdma_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr);
struct ibv_srq *ivrdma_create_srq_ex(struct ibv_context *context,
				     struct ibv_srq_init_attr_ex *attr);
int ivrdma_destroy_srq(struct ibv_srq *srq);
/* mw.c: memory windows, slots of the MR table (ivrdma_layout.h) */
struct ibv_mw *ivrdma_alloc_mw(struct ibv_pd *pd, enum ibv_mw_type type);
int ivrdma_dealloc_mw(struct ibv_mw *mw);
int ivrdma_bind_mw(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *mw_bind);
enum ibv_wc_status ivrdma_mw_bind_exec(struct ivrdma_qp *qp, const struct ivrdma_mw_bind *b);
enum ibv_wc_status ivrdma_mw_local_inv(struct ivrdma_qp *qp, uint32_t rkey);
bool ivrdma_mw_remote_inv(const struct ivrdma_region *r, const struct ivrdma_peer_qp *pq,
			  uint32_t rkey);

/* dm.c: device memory, region chunks of the context */
uint64_t ivrdma_dm_max_size(const struct ivrdma_region *r);
struct ibv_dm *ivrdma_alloc_dm(struct ibv_context *context, struct ibv_alloc_dm_attr *attr);
int ivrdma_free_dm(struct ibv_dm *dm);
struct ibv_mr *ivrdma_reg_dm_mr(struct ibv_pd *pd, struct ibv_dm *dm, uint64_t dm_offset,
				size_t length, unsigned int access);
struct ivrdma_mr *ivrdma_mr_new_at(struct ibv_pd *pd, size_t length, int access,
				   uint64_t region_offset);

/* xrc.c: XRC domains, XRC SRQs, opening receive QPs, and the initiator's SRQ lookup */
struct ibv_xrcd *ivrdma_open_xrcd(struct ibv_context *context, struct ibv_xrcd_init_attr *attr);
int ivrdma_close_xrcd(struct ibv_xrcd *xrcd);
int ivrdma_xrc_srq_init(struct ivrdma_srq *srq, const struct ibv_srq_init_attr_ex *attr);
void ivrdma_xrc_srq_fini(struct ivrdma_srq *srq);
int ivrdma_get_srq_num(struct ibv_srq *srq, uint32_t *srq_num);
struct ibv_qp *ivrdma_open_qp(struct ibv_context *context, struct ibv_qp_open_attr *attr);
struct ivrdma_peer_qp *ivrdma_xrc_target(struct ivrdma_qp *qp, uint32_t srqn,
					 enum ibv_wc_status *st);
/* qp.c: a QP of this process by number (the caller's reference: opens), or NULL */
struct ivrdma_qp *ivrdma_qp_open_by_num(uint32_t qpn, uint32_t xrcd_id);

/* ud.c: datagrams */
#define IVRDMA_UD_MTU  4096u /* the port's active MTU: a datagram's largest payload */
#define IVRDMA_GRH_LEN 40u   /* every UD receive buffer starts with room for a GRH */
bool ivrdma_ud_target(struct ivrdma_qp *qp, const struct ivrdma_swqe *w,
		      struct ivrdma_peer_qp **out);
bool ivrdma_ud_member(struct ivrdma_qp *qp, const struct ivrdma_swqe *w, int node, uint32_t qpn,
		      struct ivrdma_peer_qp *pq);
void ivrdma_ud_make_grh(struct ivrdma_context *ctx, const struct ivrdma_swqe *w, uint32_t len,
			uint8_t grh[IVRDMA_GRH_LEN]);

/* ah.c */
struct ibv_ah *ivrdma_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr);
int ivrdma_destroy_ah(struct ibv_ah *ah);

#endif /* IVRDMA_PROVIDER_H */
