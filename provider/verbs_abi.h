/* SPDX-License-Identifier: MIT */
/*
 * The part of libibverbs' private provider ABI IBVERBS_PRIVATE_34 that
 * ivrdma uses.
 *
 * Distributions ship no <infiniband/driver.h>, so a provider built out of
 * the rdma-core tree must declare the provider interface itself. Written
 * from rdma-core v44.0's libibverbs/driver.h (the version Debian 12 ships);
 * the layouts below must match it member for member, because libibverbs
 * reads these structures by offset: a missing or reordered op pointer is
 * not a build error but a call into the wrong function.
 *
 * The private ABI is versioned by the symbol name verbs_register_driver_34:
 * CMake checks the installed libibverbs exports exactly that symbol and
 * refuses to build against any other, and the static asserts at the end
 * pin the layouts on x86_64.
 */
#ifndef IVRDMA_VERBS_ABI_H
#define IVRDMA_VERBS_ABI_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <infiniband/verbs.h>

#define IVRDMA_VERBS_PABI_VERSION 34

/* ccan's struct list_node, which libibverbs embeds in its structures. */
struct verbs_list_node {
	struct verbs_list_node *next, *prev;
};

/* --- objects a provider extends ----------------------------------------- */

struct verbs_dm {
	struct ibv_dm dm;
	uint32_t handle;
};

enum verbs_xrcd_mask {
	VERBS_XRCD_HANDLE = 1 << 0,
};

struct verbs_xrcd {
	struct ibv_xrcd xrcd;
	uint32_t comp_mask;
	uint32_t handle;
};

struct verbs_srq {
	struct ibv_srq srq;
	enum ibv_srq_type srq_type;
	struct verbs_xrcd *xrcd;
	struct ibv_cq *cq;
	uint32_t srq_num;
};

enum ibv_mr_type {
	IBV_MR_TYPE_MR,
	IBV_MR_TYPE_NULL_MR,
	IBV_MR_TYPE_IMPORTED_MR,
	IBV_MR_TYPE_DMABUF_MR,
};

/* ibv_dereg_mr() and ibv_rereg_mr() hand the provider this container. */
struct verbs_mr {
	struct ibv_mr ibv_mr;
	enum ibv_mr_type mr_type;
	int access;
};

static inline struct verbs_mr *verbs_get_mr(struct ibv_mr *mr)
{
	return (struct verbs_mr *)((char *)mr - offsetof(struct verbs_mr, ibv_mr));
}

enum verbs_qp_mask {
	VERBS_QP_XRCD = 1 << 0,
	VERBS_QP_EX = 1 << 1,
};

struct verbs_qp {
	union {
		struct ibv_qp qp;
		struct ibv_qp_ex qp_ex;
	};
	uint32_t comp_mask;
	struct verbs_xrcd *xrcd;
};

struct verbs_cq {
	union {
		struct ibv_cq cq;
		struct ibv_cq_ex cq_ex;
	};
};

/* --- device discovery --------------------------------------------------- */

enum {
	VERBS_MATCH_SENTINEL = 0,
	VERBS_MATCH_PCI = 1,
	VERBS_MATCH_MODALIAS = 2,
	VERBS_MATCH_DRIVER_ID = 3,
};

struct verbs_match_ent {
	void *driver_data;
	union {
		const char *modalias;
		uint64_t driver_id;
	} u;
	uint16_t vendor;
	uint16_t device;
	uint8_t kind;
};

/* One RDMA device as libibverbs found it (netlink or the sysfs scan). */
struct verbs_sysfs_dev {
	struct verbs_list_node entry;
	void *provider_data;
	const struct verbs_match_ent *match;
	unsigned int flags;
	char sysfs_name[IBV_SYSFS_NAME_MAX]; /* the uverbs entry: /dev/infiniband/<this> */
	dev_t sysfs_cdev;
	char ibdev_name[IBV_SYSFS_NAME_MAX]; /* e.g. "ivrdma0" */
	char ibdev_path[IBV_SYSFS_PATH_MAX];
	char modalias[512];
	uint64_t node_guid;
	uint32_t driver_id;
	enum ibv_node_type node_type;
	int ibdev_idx;
	uint32_t num_ports;
	uint32_t abi_ver;
	struct timespec time_created;
};

struct verbs_device;

struct verbs_device_ops {
	const char *name;

	uint32_t match_min_abi_version;
	uint32_t match_max_abi_version;
	const struct verbs_match_ent *match_table;
	const struct verbs_device_ops **static_providers;

	bool (*match_device)(struct verbs_sysfs_dev *sysfs_dev);

	struct verbs_context *(*alloc_context)(struct ibv_device *device, int cmd_fd,
					       void *private_data);
	struct verbs_context *(*import_context)(struct ibv_device *device, int cmd_fd);

	struct verbs_device *(*alloc_device)(struct verbs_sysfs_dev *sysfs_dev);
	void (*uninit_device)(struct verbs_device *device);
};

struct verbs_device {
	struct ibv_device device; /* must be first */
	const struct verbs_device_ops *ops;
	atomic_int refcount;
	struct verbs_list_node entry;
	struct verbs_sysfs_dev *sysfs;
	uint64_t core_support;
};

static inline struct verbs_device *verbs_get_device(const struct ibv_device *dev)
{
	return (struct verbs_device *)((char *)dev - offsetof(struct verbs_device, device));
}

/* --- the op table -------------------------------------------------------- */

/*
 * Every op a provider can implement, sorted by name exactly as in v44. A
 * NULL op keeps libibverbs' own fallback, which fails with EOPNOTSUPP.
 */
struct verbs_context_ops {
	int (*advise_mr)(struct ibv_pd *pd, enum ibv_advise_mr_advice advice, uint32_t flags,
			 struct ibv_sge *sg_list, uint32_t num_sges);
	struct ibv_dm *(*alloc_dm)(struct ibv_context *context, struct ibv_alloc_dm_attr *attr);
	struct ibv_mw *(*alloc_mw)(struct ibv_pd *pd, enum ibv_mw_type type);
	struct ibv_mr *(*alloc_null_mr)(struct ibv_pd *pd);
	struct ibv_pd *(*alloc_parent_domain)(struct ibv_context *context,
					      struct ibv_parent_domain_init_attr *attr);
	struct ibv_pd *(*alloc_pd)(struct ibv_context *context);
	struct ibv_td *(*alloc_td)(struct ibv_context *context, struct ibv_td_init_attr *init_attr);
	void (*async_event)(struct ibv_context *context, struct ibv_async_event *event);
	int (*attach_counters_point_flow)(struct ibv_counters *counters,
					  struct ibv_counter_attach_attr *attr,
					  struct ibv_flow *flow);
	int (*attach_mcast)(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid);
	int (*bind_mw)(struct ibv_qp *qp, struct ibv_mw *mw, struct ibv_mw_bind *mw_bind);
	int (*close_xrcd)(struct ibv_xrcd *xrcd);
	void (*cq_event)(struct ibv_cq *cq);
	struct ibv_ah *(*create_ah)(struct ibv_pd *pd, struct ibv_ah_attr *attr);
	struct ibv_counters *(*create_counters)(struct ibv_context *context,
						struct ibv_counters_init_attr *init_attr);
	struct ibv_cq *(*create_cq)(struct ibv_context *context, int cqe,
				    struct ibv_comp_channel *channel, int comp_vector);
	struct ibv_cq_ex *(*create_cq_ex)(struct ibv_context *context,
					  struct ibv_cq_init_attr_ex *init_attr);
	struct ibv_flow *(*create_flow)(struct ibv_qp *qp, struct ibv_flow_attr *flow_attr);
	struct ibv_flow_action *(*create_flow_action_esp)(struct ibv_context *context,
							  struct ibv_flow_action_esp_attr *attr);
	struct ibv_qp *(*create_qp)(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
	struct ibv_qp *(*create_qp_ex)(struct ibv_context *context,
				       struct ibv_qp_init_attr_ex *qp_init_attr_ex);
	struct ibv_rwq_ind_table *(*create_rwq_ind_table)(
	    struct ibv_context *context, struct ibv_rwq_ind_table_init_attr *init_attr);
	struct ibv_srq *(*create_srq)(struct ibv_pd *pd, struct ibv_srq_init_attr *srq_init_attr);
	struct ibv_srq *(*create_srq_ex)(struct ibv_context *context,
					 struct ibv_srq_init_attr_ex *srq_init_attr_ex);
	struct ibv_wq *(*create_wq)(struct ibv_context *context,
				    struct ibv_wq_init_attr *wq_init_attr);
	int (*dealloc_mw)(struct ibv_mw *mw);
	int (*dealloc_pd)(struct ibv_pd *pd);
	int (*dealloc_td)(struct ibv_td *td);
	int (*dereg_mr)(struct verbs_mr *vmr);
	int (*destroy_ah)(struct ibv_ah *ah);
	int (*destroy_counters)(struct ibv_counters *counters);
	int (*destroy_cq)(struct ibv_cq *cq);
	int (*destroy_flow)(struct ibv_flow *flow);
	int (*destroy_flow_action)(struct ibv_flow_action *action);
	int (*destroy_qp)(struct ibv_qp *qp);
	int (*destroy_rwq_ind_table)(struct ibv_rwq_ind_table *rwq_ind_table);
	int (*destroy_srq)(struct ibv_srq *srq);
	int (*destroy_wq)(struct ibv_wq *wq);
	int (*detach_mcast)(struct ibv_qp *qp, const union ibv_gid *gid, uint16_t lid);
	void (*free_context)(struct ibv_context *context);
	int (*free_dm)(struct ibv_dm *dm);
	int (*get_srq_num)(struct ibv_srq *srq, uint32_t *srq_num);
	struct ibv_dm *(*import_dm)(struct ibv_context *context, uint32_t dm_handle);
	struct ibv_mr *(*import_mr)(struct ibv_pd *pd, uint32_t mr_handle);
	struct ibv_pd *(*import_pd)(struct ibv_context *context, uint32_t pd_handle);
	int (*modify_cq)(struct ibv_cq *cq, struct ibv_modify_cq_attr *attr);
	int (*modify_flow_action_esp)(struct ibv_flow_action *action,
				      struct ibv_flow_action_esp_attr *attr);
	int (*modify_qp)(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask);
	int (*modify_qp_rate_limit)(struct ibv_qp *qp, struct ibv_qp_rate_limit_attr *attr);
	int (*modify_srq)(struct ibv_srq *srq, struct ibv_srq_attr *srq_attr, int srq_attr_mask);
	int (*modify_wq)(struct ibv_wq *wq, struct ibv_wq_attr *wq_attr);
	struct ibv_qp *(*open_qp)(struct ibv_context *context, struct ibv_qp_open_attr *attr);
	struct ibv_xrcd *(*open_xrcd)(struct ibv_context *context,
				      struct ibv_xrcd_init_attr *xrcd_init_attr);
	int (*poll_cq)(struct ibv_cq *cq, int num_entries, struct ibv_wc *wc);
	int (*post_recv)(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad_wr);
	int (*post_send)(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad_wr);
	int (*post_srq_ops)(struct ibv_srq *srq, struct ibv_ops_wr *op, struct ibv_ops_wr **bad_op);
	int (*post_srq_recv)(struct ibv_srq *srq, struct ibv_recv_wr *recv_wr,
			     struct ibv_recv_wr **bad_recv_wr);
	int (*query_device_ex)(struct ibv_context *context,
			       const struct ibv_query_device_ex_input *input,
			       struct ibv_device_attr_ex *attr, size_t attr_size);
	int (*query_ece)(struct ibv_qp *qp, struct ibv_ece *ece);
	int (*query_port)(struct ibv_context *context, uint8_t port_num,
			  struct ibv_port_attr *port_attr);
	int (*query_qp)(struct ibv_qp *qp, struct ibv_qp_attr *attr, int attr_mask,
			struct ibv_qp_init_attr *init_attr);
	int (*query_qp_data_in_order)(struct ibv_qp *qp, enum ibv_wr_opcode op, uint32_t flags);
	int (*query_rt_values)(struct ibv_context *context, struct ibv_values_ex *values);
	int (*query_srq)(struct ibv_srq *srq, struct ibv_srq_attr *srq_attr);
	int (*read_counters)(struct ibv_counters *counters, uint64_t *counters_value,
			     uint32_t ncounters, uint32_t flags);
	struct ibv_mr *(*reg_dm_mr)(struct ibv_pd *pd, struct ibv_dm *dm, uint64_t dm_offset,
				    size_t length, unsigned int access);
	struct ibv_mr *(*reg_dmabuf_mr)(struct ibv_pd *pd, uint64_t offset, size_t length,
					uint64_t iova, int fd, int access);
	struct ibv_mr *(*reg_mr)(struct ibv_pd *pd, void *addr, size_t length, uint64_t hca_va,
				 int access);
	int (*req_notify_cq)(struct ibv_cq *cq, int solicited_only);
	int (*rereg_mr)(struct verbs_mr *vmr, int flags, struct ibv_pd *pd, void *addr,
			size_t length, int access);
	int (*resize_cq)(struct ibv_cq *cq, int cqe);
	int (*set_ece)(struct ibv_qp *qp, struct ibv_ece *ece);
	void (*unimport_dm)(struct ibv_dm *dm);
	void (*unimport_mr)(struct ibv_mr *mr);
	void (*unimport_pd)(struct ibv_pd *pd);
};

/* --- the functions libibverbs exports to providers ---------------------- */

/* The ABI number is part of the name, so a mismatch fails at dlopen. */
void verbs_register_driver_34(const struct verbs_device_ops *ops);

/*
 * Allocates alloc_size zeroed bytes, initialises the verbs_context found at
 * byte offset context_offset in them and takes ownership of cmd_fd (closed
 * on failure). Returns the allocation or NULL with errno set.
 */
void *_verbs_init_and_alloc_context(struct ibv_device *device, int cmd_fd, size_t alloc_size,
				    struct verbs_context *context_offset, uint32_t driver_id);

#define verbs_init_and_alloc_context(ibdev, cmd_fd, drv_ctx_ptr, ctx_memb, driver_id)              \
	((__typeof__(drv_ctx_ptr))_verbs_init_and_alloc_context(                                   \
	    (ibdev), (cmd_fd), sizeof(*(drv_ctx_ptr)),                                             \
	    (struct verbs_context *)offsetof(__typeof__(*(drv_ctx_ptr)), ctx_memb), (driver_id)))

/* Frees what init allocated, closes cmd_fd and async_fd, drops the device. */
void verbs_uninit_context(struct verbs_context *context);

/* Installs the non-NULL ops of 'ops' over libibverbs' EOPNOTSUPP defaults. */
void verbs_set_ops(struct verbs_context *vctx, const struct verbs_context_ops *ops);

/* --- layout checks (x86_64 / LP64) --------------------------------------- */

/*
 * The op names in v44's order, listed a second time independently of the
 * struct above; the asserts below check each op sits at its v44 index.
 */
#define VERBS_CONTEXT_OPS_V44(X)                                                                   \
	X(advise_mr)                                                                               \
	X(alloc_dm)                                                                                \
	X(alloc_mw)                                                                                \
	X(alloc_null_mr)                                                                           \
	X(alloc_parent_domain)                                                                     \
	X(alloc_pd)                                                                                \
	X(alloc_td)                                                                                \
	X(async_event)                                                                             \
	X(attach_counters_point_flow)                                                              \
	X(attach_mcast)                                                                            \
	X(bind_mw)                                                                                 \
	X(close_xrcd)                                                                              \
	X(cq_event)                                                                                \
	X(create_ah)                                                                               \
	X(create_counters)                                                                         \
	X(create_cq)                                                                               \
	X(create_cq_ex)                                                                            \
	X(create_flow)                                                                             \
	X(create_flow_action_esp)                                                                  \
	X(create_qp)                                                                               \
	X(create_qp_ex)                                                                            \
	X(create_rwq_ind_table)                                                                    \
	X(create_srq)                                                                              \
	X(create_srq_ex)                                                                           \
	X(create_wq)                                                                               \
	X(dealloc_mw)                                                                              \
	X(dealloc_pd)                                                                              \
	X(dealloc_td)                                                                              \
	X(dereg_mr)                                                                                \
	X(destroy_ah)                                                                              \
	X(destroy_counters)                                                                        \
	X(destroy_cq)                                                                              \
	X(destroy_flow)                                                                            \
	X(destroy_flow_action)                                                                     \
	X(destroy_qp)                                                                              \
	X(destroy_rwq_ind_table)                                                                   \
	X(destroy_srq)                                                                             \
	X(destroy_wq)                                                                              \
	X(detach_mcast)                                                                            \
	X(free_context)                                                                            \
	X(free_dm)                                                                                 \
	X(get_srq_num)                                                                             \
	X(import_dm)                                                                               \
	X(import_mr)                                                                               \
	X(import_pd)                                                                               \
	X(modify_cq)                                                                               \
	X(modify_flow_action_esp)                                                                  \
	X(modify_qp)                                                                               \
	X(modify_qp_rate_limit)                                                                    \
	X(modify_srq)                                                                              \
	X(modify_wq)                                                                               \
	X(open_qp)                                                                                 \
	X(open_xrcd)                                                                               \
	X(poll_cq)                                                                                 \
	X(post_recv)                                                                               \
	X(post_send)                                                                               \
	X(post_srq_ops)                                                                            \
	X(post_srq_recv)                                                                           \
	X(query_device_ex)                                                                         \
	X(query_ece)                                                                               \
	X(query_port)                                                                              \
	X(query_qp)                                                                                \
	X(query_qp_data_in_order)                                                                  \
	X(query_rt_values)                                                                         \
	X(query_srq)                                                                               \
	X(read_counters)                                                                           \
	X(reg_dm_mr)                                                                               \
	X(reg_dmabuf_mr)                                                                           \
	X(reg_mr)                                                                                  \
	X(req_notify_cq)                                                                           \
	X(rereg_mr)                                                                                \
	X(resize_cq)                                                                               \
	X(set_ece)                                                                                 \
	X(unimport_dm)                                                                             \
	X(unimport_mr)                                                                             \
	X(unimport_pd)

#define VERBS_OP_INDEX(name) VERBS_OP_INDEX_##name,
enum { VERBS_CONTEXT_OPS_V44(VERBS_OP_INDEX) VERBS_CONTEXT_OPS_COUNT };
#undef VERBS_OP_INDEX

#define VERBS_OP_CHECK(name)                                                                       \
	static_assert(offsetof(struct verbs_context_ops, name) ==                                  \
			  VERBS_OP_INDEX_##name * sizeof(void (*)(void)),                          \
		      "verbs_context_ops." #name " is not at its v44 index");
VERBS_CONTEXT_OPS_V44(VERBS_OP_CHECK)
#undef VERBS_OP_CHECK

static_assert(VERBS_CONTEXT_OPS_COUNT == 76, "v44 has 76 context ops");
static_assert(sizeof(struct verbs_context_ops) == 76 * sizeof(void (*)(void)),
	      "verbs_context_ops holds exactly the 76 v44 ops");

static_assert(sizeof(void *) == 8, "layouts below are for LP64");
static_assert(sizeof(struct ibv_device) == 664, "public ibv_device changed");
static_assert(sizeof(struct verbs_device_ops) == 72, "verbs_device_ops size");
static_assert(offsetof(struct verbs_device_ops, match_device) == 32, "verbs_device_ops layout");
static_assert(offsetof(struct verbs_device_ops, uninit_device) == 64, "verbs_device_ops layout");
static_assert(offsetof(struct verbs_device, ops) == 664, "verbs_device layout");
static_assert(offsetof(struct verbs_device, refcount) == 672, "verbs_device layout");
static_assert(offsetof(struct verbs_device, entry) == 680, "verbs_device layout");
static_assert(offsetof(struct verbs_device, sysfs) == 696, "verbs_device layout");
static_assert(sizeof(struct verbs_device) == 712, "verbs_device size");
static_assert(offsetof(struct verbs_sysfs_dev, sysfs_name) == 36, "verbs_sysfs_dev layout");
static_assert(offsetof(struct verbs_sysfs_dev, sysfs_cdev) == 104, "verbs_sysfs_dev layout");
static_assert(offsetof(struct verbs_sysfs_dev, ibdev_name) == 112, "verbs_sysfs_dev layout");
static_assert(offsetof(struct verbs_sysfs_dev, ibdev_path) == 176, "verbs_sysfs_dev layout");
static_assert(offsetof(struct verbs_sysfs_dev, modalias) == 432, "verbs_sysfs_dev layout");
static_assert(offsetof(struct verbs_sysfs_dev, node_guid) == 944, "verbs_sysfs_dev layout");
static_assert(offsetof(struct verbs_sysfs_dev, abi_ver) == 968, "verbs_sysfs_dev layout");
static_assert(sizeof(struct verbs_sysfs_dev) == 992, "verbs_sysfs_dev size");
static_assert(sizeof(struct verbs_match_ent) == 24, "verbs_match_ent size");
static_assert(offsetof(struct verbs_match_ent, kind) == 20, "verbs_match_ent layout");
static_assert(offsetof(struct verbs_mr, mr_type) == sizeof(struct ibv_mr), "verbs_mr layout");
static_assert(offsetof(struct verbs_qp, comp_mask) == sizeof(struct ibv_qp_ex), "verbs_qp");
static_assert(offsetof(struct ibv_qp_ex, qp_base) == 0, "ibv_qp_ex starts with ibv_qp");
static_assert(offsetof(struct ibv_cq_ex, context) == offsetof(struct ibv_cq, context),
	      "ibv_cq_ex starts like ibv_cq");

#endif /* IVRDMA_VERBS_ABI_H */
