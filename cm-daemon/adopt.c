// SPDX-License-Identifier: MIT
/*
 * Adopting a region whose ivrdmad is gone (killed, crashed, or stopped
 * with peers attached), so that the processes using it keep their QPs.
 *
 * The region is kept only if it is exactly what this configuration would
 * format: same layout, size, vectors, peers, chunks, subnet and node
 * identities. Its ACTIVE peers become orphans (server_add_orphan): one
 * whose process is gone is reclaimed at once, the others are reclaimed
 * when their process exits, unless they rejoin first (rejoin.c); one not
 * back within --rejoin-grace is reported.
 * A peer entry left GONE (the daemon died in the middle of a reclaim) is
 * reclaimed again: reclaim only frees what is still tagged with the peer.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "shm_atomic.h"

/* NULL if header h (validated) is what cfg formats, else what differs. */
static const char *header_mismatch(const struct daemon *d, const struct ivrdma_region_header *h)
{
	struct ivrdma_region_header want = {0};
	uint64_t prefix = d->cfg.subnet_prefix ? d->cfg.subnet_prefix
					       : subnet_prefix_derive(d->store.path, d->cfg.dir);

	region_layout(&want, &d->cfg);
	if (h->region_size != d->cfg.region_size)
		return "its size differs from --size";
	if (h->nr_vectors != d->cfg.nr_vectors)
		return "its vector count differs from --vectors";
	if (h->max_peers != d->cfg.max_peers)
		return "its peer count differs from --max-peers";
	if (h->chunk_shift != d->cfg.chunk_shift)
		return "its chunk size differs from --chunk-size";
	if (h->subnet_prefix != prefix)
		return "its subnet prefix differs";
	if (h->host_node != 0)
		return "its host node is not node 0";
	if (memcmp(&h->nodes, &want.nodes, sizeof(want.nodes)) ||
	    memcmp(&h->peers, &want.peers, sizeof(want.peers)) ||
	    memcmp(&h->qps, &want.qps, 4 * sizeof(want.qps)) ||
	    memcmp(&h->ctxs, &want.ctxs, sizeof(want.ctxs)) ||
	    memcmp(&h->listeners, &want.listeners, 2 * sizeof(want.listeners)) ||
	    memcmp(&h->chunk_tags, &want.chunk_tags, sizeof(want.chunk_tags)) ||
	    h->chunk_area_offset != want.chunk_area_offset || h->nr_chunks != want.nr_chunks)
		return "its tables are laid out otherwise (another version or configuration)";
	return NULL;
}

/* NULL if node entry i is the configured node i (or unconfigured and unused). */
static const char *node_mismatch(const struct daemon *d, uint32_t i)
{
	const struct ivrdma_node *n = ivrdma_region_node(&d->region, i);
	const struct node_addrs *a = &d->cfg.addrs[i];
	uint64_t guid;

	if (i > d->cfg.nr_vms)
		return n->kind == 0 && shm_load_acquire32(&n->state) == IVRDMA_NODE_ABSENT
			   ? NULL
			   : "it has more VMs than --vm names";
	guid = i == 0 ? d->cfg.host_guid : d->cfg.vms[i - 1].guid;
	if (!guid)
		guid = directory_guid_for_name(directory_node_name(d, i));
	if (strncmp(n->name, directory_node_name(d, i), sizeof(n->name)) ||
	    n->kind != (i == 0 ? IVRDMA_NODE_HOST : IVRDMA_NODE_VM))
		return "its nodes are not the --vm names given, in that order";
	if (n->node_guid != guid)
		return "a node's GUID differs (--host-guid, --vm NAME,GUID)";
	if (n->nr_addrs != a->nr || memcmp(n->addrs, a->ip, (size_t)a->nr * 16))
		return "a node's addresses differ (--addr)";
	return NULL;
}

/*
 * --size auto: the size the machine gives now (its free space counts the
 * region itself as used) is no reason to drop a region. One of any size
 * --size accepts is kept at its own size.
 */
static void keep_auto_size(struct daemon *d, uint64_t size)
{
	uint64_t chunk = 1ull << d->cfg.chunk_shift;

	if (!d->cfg.region_size_auto || size == d->cfg.region_size || (size & (size - 1)) ||
	    size < IVRDMA_MIN_REGION_SIZE || size > IVRDMA_MAX_REGION_SIZE || chunk > size / 16)
		return;
	d->cfg.region_size = size;
	snprintf(d->cfg.region_size_why, sizeof(d->cfg.region_size_why),
		 "--size auto: the adopted region's own");
}

static const char *region_mismatch(struct daemon *d)
{
	const char *why = NULL;
	uint64_t size = d->cfg.region_size;
	char size_why[sizeof(d->cfg.region_size_why)];

	if (ivrdma_region_open(&d->region, d->store.base, d->store.size, &why))
		return why;
	memcpy(size_why, d->cfg.region_size_why, sizeof(size_why));
	keep_auto_size(d, ivrdma_region_header(&d->region)->region_size);
	why = header_mismatch(d, ivrdma_region_header(&d->region));
	for (uint32_t i = 0; !why && i < d->region.nodes.entries; i++)
		why = node_mismatch(d, i);
	for (uint32_t i = 0; !why && i < d->cfg.max_peers; i++) {
		const struct ivrdma_peer *e = ivrdma_region_peer(&d->region, i);

		if (shm_load_acquire32(&e->state) == IVRDMA_PEER_ACTIVE && e->node > d->cfg.nr_vms)
			why = "an active peer is on a node not configured";
	}
	if (why) { /* the new region is as auto says */
		d->cfg.region_size = size;
		memcpy(d->cfg.region_size_why, size_why, sizeof(size_why));
	}
	return why;
}

/* A GONE entry: its reclaim did not finish. Reclaiming again frees what is left. */
static void finish_reclaim(struct daemon *d, uint16_t id)
{
	struct ivrdma_reclaim_count got;

	contexts_peer_gone(d, id);
	ivrdma_region_reclaim(&d->region, &(struct ivrdma_gone){.peer = id}, &got);
	shm_store_release32(&ivrdma_region_peer(&d->region, id)->state, IVRDMA_PEER_FREE);
	log_info("peer %u was being reclaimed when ivrdmad went: %u chunks, %u QPs reclaimed now",
		 id, got.chunks, got.qps);
}

/* The daemon's own truth (generations, node epochs and counts) from the region. */
static int take_peers(struct daemon *d)
{
	uint32_t last = 0;

	for (uint32_t i = 0; i < 1 + d->cfg.nr_vms; i++)
		d->node_epoch[i] = shm_load_relaxed32(&ivrdma_region_node(&d->region, i)->epoch);
	for (uint32_t i = 0; i < d->cfg.max_peers; i++) {
		const struct ivrdma_peer *e = ivrdma_region_peer(&d->region, i);
		uint32_t state = shm_load_acquire32(&e->state);
		int rc;

		d->peer_gen[i] = shm_load_relaxed16(&e->gen);
		if (d->peer_gen[i])
			last = i + 1;
		if (state == IVRDMA_PEER_GONE)
			finish_reclaim(d, (uint16_t)i);
		if (state != IVRDMA_PEER_ACTIVE)
			continue;
		rc = server_add_orphan(d, (uint16_t)i);
		if (rc)
			return rc;
	}
	/* IDs go on in turn from the last one handed out (see next_free_id). */
	d->next_peer_id = last % d->cfg.max_peers;
	return 0;
}

int adopt_region(struct daemon *d)
{
	const char *why = region_mismatch(d);
	struct ivrdma_region_header *h;

	if (why) {
		log_warn("not adopting %s, left behind by an ivrdmad that is gone: %s; removing it "
			 "(processes still using it get no membership news or reclaim)",
			 d->store.path, why);
		return -EPROTO;
	}
	h = ivrdma_region_header(&d->region);
	if (take_peers(d)) {
		log_error("cannot adopt %s: out of memory", d->store.path);
		return -ENOMEM;
	}
	shm_store_release32(&h->daemon_pid, (uint32_t)getpid());
	shm_fetch_add64(&h->dir_generation, 1);
	d->adopted = true;
	log_info("adopted region %s left by an ivrdmad that is gone, with %u peer(s) attached",
		 d->store.path, d->nr_orphans);
	return 0;
}

/* When process 'pid' started, CLOCK_REALTIME in ns; 0 if unknown. */
static uint64_t process_start_ns(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long start = 0, btime = 0;
	const char *end;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold anything, spaces and ')' too: the fields follow the last ')'. */
	end = strrchr(buf, ')');
	if (!end || sscanf(end + 2,
			   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
			   "%*d %*d %*d %*d %llu",
			   &start) != 1)
		return 0;
	f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	if (!btime)
		return 0;
	return (btime + start / (unsigned long long)sysconf(_SC_CLK_TCK)) * 1000000000ull;
}

bool adopt_process_alive(pid_t pid, uint64_t joined_ns)
{
	uint64_t started;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
		return false;
	/*
	 * A process that started after the peer joined is another one that got
	 * the pid; btime has a resolution of a second: allow two.
	 */
	started = process_start_ns(pid);
	return !started || started <= joined_ns + 2000000000ull;
}

/* QEMU's ivshmem device cannot hand its eventfds back: a VM never rejoins. */
static bool is_qemu(pid_t pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return strncmp(comm, "qemu", 4) == 0;
}

/*
 * An orphan is reclaimed when its process exits (server.c watches it),
 * never before: a process that is still running still maps the region and
 * its data path still works, so what it holds must not be handed to
 * anyone else. One that has not rejoined in time is only reported.
 */
void adopt_tick(struct daemon *d)
{
	int64_t now = monotonic_ms();

	for (uint32_t i = 0; d->nr_orphans && i < d->cfg.max_peers; i++) {
		struct peer *p = d->peers[i];

		if (!p || !p->orphan || p->doomed || p->overdue || now < p->rejoin_deadline_ms)
			continue;
		p->overdue = true;
		log_warn("peer %u (pid %d%s) has not rejoined within --rejoin-grace: it keeps what "
			 "it holds, without membership news, until its process exits",
			 p->id, (int)p->pid,
			 is_qemu(p->pid) ? ", a QEMU VM: QEMU cannot rejoin" : "");
	}
}
