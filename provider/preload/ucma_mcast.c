// SPDX-License-Identifier: MIT
/*
 * Multicast joins of the rdma_cm emulation (JOIN_IP_MCAST, JOIN_MCAST,
 * LEAVE_MCAST). ucma.lock is held in every function here.
 *
 * There is no subnet manager to ask: a group's MGID is made from its IP
 * address as rdma_cm makes it on InfiniBand (the IPoIB mapping, with
 * rdma_cm's signature for RDMA_PS_UDP), and its MLID from the MGID, so
 * every process of the region that joins one IP group names the same
 * InfiniBand group. The join reports MULTICAST_JOIN at once; librdmacm
 * then attaches the ID's QP itself (ibv_attach_mcast, provider/mcast.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ucma.h"

#define UCMA_MLID_FIRST 0xc000u
#define UCMA_MLID_COUNT 0x3fffu /* 0xc000 .. 0xfffe */

static uint32_t next_handle;

bool ucma_addr_is_multicast(const struct ucma_wire_addr *a)
{
	static const uint8_t v4_prefix[12] = {[10] = 0xff, [11] = 0xff};

	if (!memcmp(a->ip, v4_prefix, sizeof(v4_prefix)))
		return (a->ip[12] & 0xf0) == 0xe0; /* 224.0.0.0/4 */
	return a->ip[0] == 0xff;
}

/* ff12:401b:ffff:0001::/96 + the IPv4 group's low 28 bits, as IPoIB maps it. */
static void make_mgid(const struct ucma_wire_addr *a, uint16_t ps, uint8_t mgid[16])
{
	static const uint8_t v4_prefix[12] = {[10] = 0xff, [11] = 0xff};
	bool v4 = !memcmp(a->ip, v4_prefix, sizeof(v4_prefix));

	memset(mgid, 0, 16);
	mgid[0] = 0xff;
	mgid[1] = 0x12;
	mgid[2] = v4 ? 0x40 : 0x60;
	mgid[3] = 0x1b;
	mgid[4] = mgid[5] = 0xff; /* the default P_Key */
	mgid[7] = ps == RDMA_PS_UDP ? 0x01 : 0x00;
	if (v4) {
		memcpy(mgid + 12, a->ip + 12, 4);
		mgid[12] &= 0x0f;
	} else {
		memcpy(mgid + 6, a->ip + 6, 10);
		mgid[7] |= ps == RDMA_PS_UDP ? 0x01 : 0x00;
	}
}

static uint16_t make_mlid(const uint8_t mgid[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ mgid[i]) * 16777619u;
	return (uint16_t)(UCMA_MLID_FIRST + h % UCMA_MLID_COUNT);
}

int ucma_mcast_join(struct ucma_id *id, const void *sa, uint64_t uid, uint32_t *handle)
{
	struct ucma_wire_addr a;
	struct ucma_mcast *mc;
	int err = ucma_addr_from_sockaddr(sa, &a);

	if (err)
		return err;
	if (!id->has_device || id->qp_type != IBV_QPT_UD)
		return -EINVAL; /* as the kernel: an address first, and a UD ID */
	if (!ucma_addr_is_multicast(&a))
		return -EINVAL;
	mc = calloc(1, sizeof(*mc));
	if (!mc)
		return -ENOMEM;
	mc->handle = ++next_handle;
	mc->uid = uid;
	make_mgid(&a, id->port_space, mc->mgid);
	mc->mlid = make_mlid(mc->mgid);
	err = ucma_event_post_join(id, mc);
	if (err) {
		free(mc);
		return err;
	}
	mc->next = id->mcasts;
	id->mcasts = mc;
	*handle = mc->handle;
	return 0;
}

int ucma_mcast_leave(uint32_t handle, uint32_t *reported)
{
	for (uint32_t h = 0; h < ucma.nr_ids; h++) {
		struct ucma_id *id = ucma.ids[h];

		for (struct ucma_mcast **pp = id ? &id->mcasts : NULL; pp && *pp;
		     pp = &(*pp)->next) {
			struct ucma_mcast *mc = *pp;

			if (mc->handle != handle)
				continue;
			ucma_events_drop_mcast(id, mc);
			*reported = mc->events_reported;
			*pp = mc->next;
			free(mc);
			return 0;
		}
	}
	return -ENOENT;
}

void ucma_mcast_free_all(struct ucma_id *id)
{
	while (id->mcasts) {
		struct ucma_mcast *mc = id->mcasts;

		id->mcasts = mc->next;
		free(mc);
	}
}
