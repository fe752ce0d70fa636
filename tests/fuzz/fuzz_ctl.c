// SPDX-License-Identifier: MIT
/*
 * ivrdmad's control socket: a request line arriving in two pieces
 * (ctl_request_feed, as client_read feeds it), then the answer
 * (ctl_answer) over a fuzzed region: the status reads the directory,
 * the context records and the QP slots that participants write. The
 * answer must be valid JSON whatever the region holds.
 *
 * Input: [request length][split point][request bytes], then a region as
 * fuzz_image.h describes. params.ops: bits 0-1 the number of configured
 * VMs, bit 2 a connected peer (params.peer, of node params.lid), bit 3
 * that peer's contexts end (contexts_peer_gone) before the status.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "fuzz_image.h"

#define OP_PEER	     (1u << 2)
#define OP_PEER_GONE (1u << 3)

static struct daemon d;
static struct peer peer;

/* A daemon as ivrdmad's main leaves it, on this region. */
static void daemon_setup(const struct ivrdma_region *r, const struct fuzz_params *p)
{
	static const char *const names[] = {"vm1", "vm2", "vm3"};

	memset(&d, 0, sizeof(d));
	d.region = *r;
	d.cfg.dir = "/run/ivrdma-fuzz";
	d.cfg.max_peers = r->max_peers;
	d.cfg.nr_vectors = r->nr_vectors;
	d.cfg.nr_vms = p->ops & 3u;
	for (uint32_t i = 0; i < d.cfg.nr_vms; i++)
		strcpy(d.cfg.vms[i].name, names[i]);
	d.nr_listeners = 1 + d.cfg.nr_vms;
	if (d.nr_listeners > r->nodes.entries)
		d.nr_listeners = r->nodes.entries;
	d.store.is_shm = true;
	strcpy(d.store.path, "/ivrdma-fuzz");
	if (p->ops & OP_PEER) {
		memset(&peer, 0, sizeof(peer));
		peer.id = (uint16_t)(p->peer % r->max_peers);
		peer.gen = p->gen;
		peer.node = p->lid % d.nr_listeners;
		d.peers[peer.id] = &peer;
		d.nr_peers = 1;
	}
}

/* The request, fed in two pieces; 1 once it is a whole line. */
static int request(struct ctl_request *q, const uint8_t *bytes, size_t len, size_t split)
{
	int rc;

	memset(q, 0, sizeof(*q));
	if (split > len)
		split = len;
	rc = ctl_request_feed(q, (const char *)bytes, split);
	return rc ? rc : ctl_request_feed(q, (const char *)bytes + split, len - split);
}

static void answer(const char *line)
{
	char *text = ctl_answer(&d, NULL, line);
	json_object *o;

	if (!text)
		abort();
	o = json_tokener_parse(text);
	if (!o)
		abort(); /* the answer must parse */
	json_object_put(o);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ivrdma_region r;
	struct fuzz_params p;
	struct ctl_request q;
	size_t len, split;
	int complete;

	if (size < 2)
		return 0;
	len = data[0] < size - 2 ? data[0] : size - 2;
	split = data[1];
	complete = request(&q, data + 2, len, split);
	if (fuzz_image_load(&r, &p, data + 2 + len, size - 2 - len) != 0)
		return 0;
	daemon_setup(&r, &p);
	if ((p.ops & OP_PEER) && (p.ops & OP_PEER_GONE))
		contexts_peer_gone(&d, peer.id);
	if (complete > 0)
		answer(q.in);
	contexts_free(&d);
	return 0;
}
