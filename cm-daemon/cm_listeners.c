// SPDX-License-Identifier: MIT
/*
 * The region's RDMA CM listeners (struct ivrdma_listener), for `ivrdma
 * status`. Processes' CM agents claim and release them (ivrdma_layout.h,
 * "Listening"); ivrdmad only reads them here and frees a dead peer's with
 * its other slots. Any participant may write an entry, so each is copied
 * once and every field of the copy is checked before it names anything.
 */
#include <json-c/json.h>
#include <stdio.h>

#include "daemon.h"
#include "shm_atomic.h"

/* enum rdma_ucm_port_space of <rdma/rdma_user_cm.h>, which the daemon does not include. */
static const struct {
	uint16_t ps;
	const char *name;
} port_spaces[] = {
    {0x0002, "ipoib"},
    {0x0106, "tcp"},
    {0x0111, "udp"},
    {0x013f, "ib"},
};

/* A port space's name, or its number in hex (written into 'buf') for one we do not know. */
static const char *port_space_name(uint16_t ps, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(port_spaces) / sizeof(port_spaces[0]); i++)
		if (port_spaces[i].ps == ps)
			return port_spaces[i].name;
	snprintf(buf, len, "0x%04x", ps);
	return buf;
}

/*
 * The pid of the peer that owner tag 'tag' names (a context's: the peer
 * that holds it, QEMU for a VM), while that owner lives and the peer is
 * connected; -1 once it is gone.
 */
static int owner_pid(const struct daemon *d, uint32_t tag)
{
	int id = ivrdma_tag_peer(&d->region, tag);
	const struct peer *p;

	if (id < 0 || (uint32_t)id >= d->cfg.max_peers || (uint32_t)id >= IVRDMA_MAX_PEERS)
		return -1;
	p = d->peers[id];
	return p && ivrdma_owner_alive(&d->region, tag, -1) ? (int)p->pid : -1;
}

/* One LISTENING entry's copy, as status shows it; returns a new JSON object. */
static json_object *listener_json(const struct daemon *d, uint32_t index,
				  const struct ivrdma_listener *l)
{
	json_object *o = json_object_new_object();
	char ps[8], addr[64] = "*";

	if (l->bound)
		addrs_format(l->addr, addr, sizeof(addr));
	json_object_object_add(o, "index", json_object_new_int64(index));
	json_object_object_add(o, "node", json_object_new_string(directory_node_name(d, l->node)));
	json_object_object_add(
	    o, "port_space",
	    json_object_new_string(port_space_name(l->port_space, ps, sizeof(ps))));
	json_object_object_add(o, "port", json_object_new_int(l->port));
	json_object_object_add(o, "addr", json_object_new_string(addr));
	json_object_object_add(o, "peer",
			       json_object_new_int(ivrdma_tag_peer(&d->region, l->hdr.owner)));
	json_object_object_add(o, "pid", json_object_new_int(owner_pid(d, l->hdr.owner)));
	json_object_object_add(o, "agent_qpn", json_object_new_int64(l->agent_qpn));
	json_object_object_add(o, "agent_qkey", json_object_new_int64(l->agent_qkey));
	return o;
}

json_object *cm_listeners_json(struct daemon *d)
{
	const struct ivrdma_region *r = &d->region;
	json_object *a = json_object_new_array();

	for (uint32_t i = 0; i < r->listeners.entries; i++) {
		const struct ivrdma_listener *e = ivrdma_table_entry(r, &r->listeners, i);
		union {
			struct ivrdma_listener l;
			uint64_t w[sizeof(struct ivrdma_listener) / 8];
		} copy;

		/* The acquire pairs with the claimer's release: its fields are written. */
		if (shm_load_acquire32(&e->state) != IVRDMA_LISTENER_LISTENING)
			continue;
		shm_read_words_relaxed(copy.w, (const uint64_t *)e, sizeof(copy.w) / 8);
		/* Released meanwhile: the copy may mix two claims. */
		if (copy.l.state != IVRDMA_LISTENER_LISTENING || copy.l.hdr.owner == 0)
			continue;
		json_object_array_add(a, listener_json(d, i, &copy.l));
	}
	return a;
}
