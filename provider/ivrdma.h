/* SPDX-License-Identifier: MIT */
/* ivrdma provider internals: the device, the context, the objects. */
#ifndef IVRDMA_PROVIDER_H
#define IVRDMA_PROVIDER_H

#include <stdatomic.h>
#include <stdint.h>

#include "region.h"
#include "verbs_abi.h"

#define IVRDMA_IBDEV_PREFIX "ivrdma"
#define IVRDMA_DEFAULT_DIR  "/run/ivrdma"
#define IVRDMA_PORT_NUM	    1
#define IVRDMA_GID_TBL_LEN  1 /* one GID per node: what the sysfs tree lists */
#define IVRDMA_PKEY_TBL_LEN 1 /* the default partition only */

struct ivt;

struct ivrdma_device {
	struct verbs_device ibv_dev;
};

struct ivrdma_context {
	struct verbs_context ibv_ctx;
	struct ivt *transport;
	struct ivrdma_region region; /* validated copy of the header's geometry */
	uint32_t node;		     /* my node's index in the directory */
	int async_wr;		     /* provider's end of async_fd: events are written here */
	atomic_uint next_pd_handle;
};

struct ivrdma_pd {
	struct ibv_pd ibv_pd;
};

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

/* Prints only when IVRDMA_DEBUG is set: a provider must not write to stderr. */
void ivrdma_dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sets errno to err and returns NULL: the verbs convention for failed creates. */
void *ivrdma_fail_null(int err);

/* device.c */
int ivrdma_query_device_ex(struct ibv_context *context,
			   const struct ibv_query_device_ex_input *input,
			   struct ibv_device_attr_ex *attr, size_t attr_size);
int ivrdma_query_port(struct ibv_context *context, uint8_t port_num,
		      struct ibv_port_attr *port_attr);

/* pd.c */
struct ibv_pd *ivrdma_alloc_pd(struct ibv_context *context);
int ivrdma_dealloc_pd(struct ibv_pd *pd);

/* mr.c, cq.c, qp.c, srq.c, ah.c: not implemented yet (EOPNOTSUPP) */
struct ibv_mr *ivrdma_reg_mr(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
			     int access);
int ivrdma_dereg_mr(struct verbs_mr *vmr);
struct ibv_cq *ivrdma_create_cq(struct ibv_context *context, int cqe,
				struct ibv_comp_channel *channel, int comp_vector);
struct ibv_cq_ex *ivrdma_create_cq_ex(struct ibv_context *context,
				      struct ibv_cq_init_attr_ex *attr);
int ivrdma_destroy_cq(struct ibv_cq *cq);
struct ibv_qp *ivrdma_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
struct ibv_qp *ivrdma_create_qp_ex(struct ibv_context *context, struct ibv_qp_init_attr_ex *attr);
int ivrdma_destroy_qp(struct ibv_qp *qp);
struct ibv_srq *ivrdma_create_srq(struct ibv_pd *pd, struct ibv_srq_init_attr *attr);
struct ibv_srq *ivrdma_create_srq_ex(struct ibv_context *context,
				     struct ibv_srq_init_attr_ex *attr);
int ivrdma_destroy_srq(struct ibv_srq *srq);
struct ibv_ah *ivrdma_create_ah(struct ibv_pd *pd, struct ibv_ah_attr *attr);
int ivrdma_destroy_ah(struct ibv_ah *ah);

#endif /* IVRDMA_PROVIDER_H */
