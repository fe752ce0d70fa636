// SPDX-License-Identifier: MIT
/*
 * Device and port attributes. Limits come from the region's geometry, the
 * identity (GUID, LID) from my node's directory entry; GIDs and pkeys are
 * not answered here: libibverbs reads them from the sysfs tree.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ivrdma.h"

/* ivshmem's PCI identity: the device all of this really is. */
#define IVRDMA_VENDOR_ID      0x1af4
#define IVRDMA_VENDOR_PART_ID 0x1110

/* Table sizes limit the object counts; ivrdma.h has the per-object limits. */
#define IVRDMA_MAX_RD_ATOM 16
#define IVRDMA_MAX_PD	   (1 << 20) /* PDs are private to a context: no table */
#define IVRDMA_MAX_AH	   (1 << 20)

static void fill_device_attr(struct ivrdma_context *ctx, struct ibv_device_attr *a)
{
	const struct ivrdma_region *r = &ctx->region;
	struct ivrdma_node *node = ivrdma_my_node(ctx);
	uint64_t guid = node ? htobe64(node->node_guid) : 0;

	snprintf(a->fw_ver, sizeof(a->fw_ver), "%s", IVRDMA_VERSION);
	a->node_guid = guid;
	a->sys_image_guid = guid;
	a->max_mr_size = (uint64_t)r->nr_chunks << r->chunk_shift;
	a->page_size_cap = 0x1000; /* registrations are page granular */
	a->vendor_id = IVRDMA_VENDOR_ID;
	a->vendor_part_id = IVRDMA_VENDOR_PART_ID;
	a->hw_ver = IVRDMA_LAYOUT_VERSION;
	a->max_qp = (int)r->qps.entries;
	a->max_qp_wr = IVRDMA_MAX_WR;
	a->device_cap_flags = IBV_DEVICE_RC_RNR_NAK_GEN | IBV_DEVICE_SYS_IMAGE_GUID |
			      IBV_DEVICE_PORT_ACTIVE_EVENT | IBV_DEVICE_XRC |
			      IBV_DEVICE_MEM_WINDOW | IBV_DEVICE_MEM_WINDOW_TYPE_2B;
	a->max_sge = IVRDMA_MAX_SGE;
	a->max_sge_rd = IVRDMA_MAX_SGE;
	a->max_cq = (int)r->cqs.entries;
	a->max_cqe = IVRDMA_MAX_CQE;
	a->max_mr = (int)r->mrs.entries;
	a->max_mw = (int)r->mrs.entries; /* windows are slots of the MR table too */
	a->max_pd = IVRDMA_MAX_PD;
	a->max_qp_rd_atom = IVRDMA_MAX_RD_ATOM;
	a->max_res_rd_atom = IVRDMA_MAX_RD_ATOM * (int)r->qps.entries;
	a->max_qp_init_rd_atom = IVRDMA_MAX_RD_ATOM;
	a->atomic_cap = IBV_ATOMIC_HCA;
	a->max_ah = IVRDMA_MAX_AH;
	a->max_srq = (int)r->srqs.entries;
	a->max_srq_wr = IVRDMA_MAX_WR;
	a->max_srq_sge = IVRDMA_MAX_SGE;
	a->max_pkeys = IVRDMA_PKEY_TBL_LEN;
	a->phys_port_cnt = 1;
	/* Multicast: the region's table holds one entry per attached QP (mcast.c). */
	a->max_mcast_grp = (int)r->mcast.entries;
	a->max_mcast_qp_attach = (int)r->mcast.entries;
	a->max_total_mcast_qp_attach = (int)r->mcast.entries;
}

/*
 * attr_size is the caller's compile-time size of the structure: write
 * exactly that much, zeroing what is newer than what we know.
 */
int ivrdma_query_device_ex(struct ibv_context *context,
			   const struct ibv_query_device_ex_input *input,
			   struct ibv_device_attr_ex *attr, size_t attr_size)
{
	struct ibv_device_attr_ex full = {0};

	if (input && input->comp_mask)
		return EINVAL;
	if (attr_size < sizeof(attr->orig_attr))
		return EINVAL;
	fill_device_attr(to_ictx(context), &full.orig_attr);
	full.device_cap_flags_ex = full.orig_attr.device_cap_flags;
	full.phys_port_cnt_ex = 1;
	full.max_dm_size = ivrdma_dm_max_size(&to_ictx(context)->region);
	/* The device clock: ns (1 GHz), all 64 bits (ivrdma_device_clock_ns). */
	full.completion_timestamp_mask = UINT64_MAX;
	full.hca_core_clock = 1000000; /* kHz */
	if (attr_size > sizeof(full)) {
		memset((char *)attr + sizeof(full), 0, attr_size - sizeof(full));
		attr_size = sizeof(full);
	}
	memcpy(attr, &full, attr_size);
	return 0;
}

/* The port follows my node: it is usable only while the node is active. */
static enum ibv_port_state port_state(const struct ivrdma_node *node)
{
	return node && shm_load_acquire32(&node->state) == IVRDMA_NODE_ACTIVE ? IBV_PORT_ACTIVE
									      : IBV_PORT_DOWN;
}

int ivrdma_query_port(struct ibv_context *context, uint8_t port_num,
		      struct ibv_port_attr *port_attr)
{
	struct ivrdma_context *ctx = to_ictx(context);
	struct ivrdma_node *node = ivrdma_my_node(ctx);
	struct ibv_port_attr a = {0};

	if (port_num != IVRDMA_PORT_NUM)
		return EINVAL;
	a.state = port_state(node);
	a.phys_state = a.state == IBV_PORT_DOWN ? 3 /* Disabled */ : 5 /* LinkUp */;
	a.max_mtu = IBV_MTU_4096;
	a.active_mtu = IBV_MTU_4096;
	a.gid_tbl_len = IVRDMA_GID_TBL_LEN;
	a.pkey_tbl_len = IVRDMA_PKEY_TBL_LEN;
	a.max_msg_sz = IVRDMA_MAX_MSG_SIZE;
	a.lid = node ? node->lid : 0;
	a.sm_lid = (uint16_t)(ctx->region.host_node + 1); /* ivrdmad plays subnet manager */
	a.max_vl_num = 1;				  /* VL0 only */
	a.active_width = 2;				  /* 4X */
	a.active_speed = 32;				  /* EDR: 25 Gb/s per lane */
	a.link_layer = IBV_LINK_LAYER_INFINIBAND;
	*port_attr = a;
	return 0;
}

/* The raw device clock, as mlx5 gives it: the counter in tv_nsec. */
int ivrdma_query_rt_values(struct ibv_context *context, struct ibv_values_ex *values)
{
	if (values->comp_mask & ~(uint32_t)IBV_VALUES_MASK_RAW_CLOCK)
		return EINVAL;
	if (values->comp_mask & IBV_VALUES_MASK_RAW_CLOCK) {
		values->raw_clock.tv_sec = 0;
		values->raw_clock.tv_nsec = (long)ivrdma_device_clock_ns();
	}
	return 0;
}
