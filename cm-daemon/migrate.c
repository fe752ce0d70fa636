// SPDX-License-Identifier: MIT
/*
 * Taking a VM's node out of the region before its ivshmem device is
 * unplugged (to live-migrate the VM), and taking it back: the control
 * requests migrate-begin and migrate-end.
 *
 * migrate-begin is ivrdmad's side of "Suspending a node" in
 * ivrdma_layout.h: the node goes SUSPENDING, suspend_seq moves on, every
 * peer's control doorbell rings, and the answer waits until every live
 * context record has acknowledged the new suspend_seq, or names those that
 * did not at the deadline. One request waits at a time; the loop polls
 * the acknowledgements (migrate_poll_ms) while it does.
 *
 * migrate-end answers once the node is ACTIVE again: at once if the VM
 * already rejoined (here, or at the destination's ivrdmad), after waiting
 * if its device has not been plugged back yet. A node still SUSPENDING
 * with its device attached (the migration was called off) is made ACTIVE
 * again.
 */
#include <assert.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "shm_atomic.h"

#define MIGRATE_POLL_MS		 5
#define MIGRATE_DEFAULT_TIMEOUT	 30
#define MIGRATE_MAX_TIMEOUT	 3600
#define MIGRATE_MISSING_REPORTED 16

/* The VM node called 'name', or -1 with the reason in err. */
static int vm_node(struct daemon *d, const char *name, char *err, size_t len)
{
	for (uint32_t i = 0; i < d->nr_listeners; i++) {
		if (strcmp(directory_node_name(d, i), name) != 0)
			continue;
		if (i == 0) {
			snprintf(err, len,
				 "%s is the host node: only a VM can migrate (its processes "
				 "share the host's memory and cannot leave the region)",
				 name);
			return -1;
		}
		return (int)i;
	}
	snprintf(err, len, "no VM called '%s' (see ivrdma status)", name);
	return -1;
}

/* "NAME [SECONDS]" into name[IVRDMA_NAME_LEN]: 0, or -EINVAL with the reason in err. */
static int parse_args(const char *args, char *name, int *seconds, char *err, size_t len)
{
	char extra, word[CTL_REQUEST_MAX];
	int n = sscanf(args, "%255s %d %c", word, seconds, &extra);

	if (n < 1 || n > 2) {
		snprintf(err, len, "expected: VM [TIMEOUT_SECONDS]");
		return -EINVAL;
	}
	if (strlen(word) >= IVRDMA_NAME_LEN) {
		snprintf(err, len, "no VM name is that long (at most %u characters)",
			 IVRDMA_NAME_LEN - 1);
		return -EINVAL;
	}
	memcpy(name, word, strlen(word) + 1);
	static_assert(CTL_REQUEST_MAX == 256, "the width of %255s above");
	if (n == 1)
		*seconds = MIGRATE_DEFAULT_TIMEOUT;
	if (*seconds < 1 || *seconds > MIGRATE_MAX_TIMEOUT) {
		snprintf(err, len, "timeout must be 1 to %d seconds", MIGRATE_MAX_TIMEOUT);
		return -EINVAL;
	}
	return 0;
}

/* Is the peer behind a record's owner tag (a peer's) still connected (not reaped, not doomed)? */
static bool owner_connected(const struct daemon *d, uint32_t tag)
{
	int id = ivrdma_tag_peer(&d->region, tag);
	const struct peer *p = id >= 0 && id < (int)IVRDMA_MAX_PEERS ? d->peers[id] : NULL;

	return p && !p->doomed && p->gen == (uint16_t)(tag >> 16);
}

/*
 * Counts the live context records and those that have not acknowledged
 * 'seq'; the first few of the latter go into 'missing' (if not NULL).
 */
static uint32_t count_unacked(struct daemon *d, uint32_t seq, uint32_t *live, json_object *missing)
{
	const struct ivrdma_region *r = &d->region;
	uint32_t unacked = 0;

	*live = 0;
	for (uint32_t i = 0; i < r->ctxs.entries; i++) {
		const struct ivrdma_ctx_slot *c = ivrdma_table_entry(r, &r->ctxs, i);
		uint32_t owner = shm_load_acquire32(&c->hdr.owner);

		if (!owner || shm_load_acquire32(&c->state) != IVRDMA_CTX_OPEN ||
		    !owner_connected(d, owner))
			continue;
		(*live)++;
		if (shm_load_acquire32(&c->suspend_ack) == seq)
			continue;
		if (missing && unacked < MIGRATE_MISSING_REPORTED) {
			char what[128];

			snprintf(what, sizeof(what), "pid %u on node %s (peer %d)",
				 shm_load_relaxed32(&c->pid),
				 directory_node_name(d, shm_load_relaxed32(&c->node)),
				 ivrdma_tag_peer(r, owner));
			json_object_array_add(missing, json_object_new_string(what));
		}
		unacked++;
	}
	return unacked;
}

static void node_set_state(struct daemon *d, uint32_t node, uint32_t state)
{
	struct ivrdma_node *n = ivrdma_region_node(&d->region, node);

	if (state == IVRDMA_NODE_ACTIVE)
		shm_store_relaxed32(&n->epoch, ++d->node_epoch[node]);
	shm_store_release32(&n->state, state);
	shm_fetch_add64(&ivrdma_region_header(&d->region)->dir_generation, 1);
}

static char *answer_ok(struct daemon *d, const char *state, uint32_t live)
{
	json_object *o = json_object_new_object();
	char *text;

	json_object_object_add(o, "node",
			       json_object_new_string(directory_node_name(d, d->mig.node)));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "contexts", json_object_new_int64(live));
	json_object_object_add(o, "ms", json_object_new_int64(monotonic_ms() - d->mig.started_ms));
	text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

/* The waiting request ends with 'text' (NULL: out of memory, the client just closes). */
static void finish(struct daemon *d, char *text)
{
	struct ctl_client *c = d->mig.client;

	d->mig.client = NULL;
	ctl_client_answer(d, c, text);
}

/*
 * The checks both requests make: none waiting already, "VM [SECONDS]"
 * naming a VM, a client to answer. Returns the VM's node index, or -1
 * with the error answer in *answer.
 */
static int take_request(struct daemon *d, const struct ctl_client *c, const char *verb,
			const char *args, char *name, int *seconds, char **answer)
{
	char err[256];
	int node;

	if (d->mig.client) {
		*answer = ctl_error_json("another migrate request is waiting; try again after it");
		return -1;
	}
	if (parse_args(args, name, seconds, err, sizeof(err)) ||
	    (node = vm_node(d, name, err, sizeof(err))) < 0) {
		*answer = ctl_error_json(err);
		return -1;
	}
	if (!c) {
		snprintf(err, sizeof(err), "%s needs a control connection to answer on", verb);
		*answer = ctl_error_json(err);
		return -1;
	}
	return node;
}

/* Client 'c' waits in d->mig, up to 'seconds', for what 'm' describes. */
static void start_waiting(struct daemon *d, struct ctl_client *c, struct migration m, int seconds)
{
	m.client = c;
	m.started_ms = monotonic_ms();
	m.deadline_ms = m.started_ms + seconds * 1000ll;
	d->mig = m;
	ctl_client_hold(c, m.deadline_ms + 1000);
}

/*
 * Returns the answer, or NULL when it comes later (the request of client
 * 'c' waits in d->mig). With no client (NULL) the request is refused.
 */
char *migrate_begin(struct daemon *d, struct ctl_client *c, const char *args)
{
	char name[IVRDMA_NAME_LEN], err[256], *answer;
	struct ivrdma_region_header *h = ivrdma_region_header(&d->region);
	int seconds, node = take_request(d, c, "migrate-begin", args, name, &seconds, &answer);
	uint32_t state;

	if (node < 0)
		return answer;
	state = shm_load_acquire32(&ivrdma_region_node(&d->region, (uint32_t)node)->state);
	if (state != IVRDMA_NODE_ACTIVE && state != IVRDMA_NODE_SUSPENDING) {
		snprintf(err, sizeof(err), "VM %s is not attached (state %s): nothing to tear down",
			 name, directory_node_state_name(state));
		return ctl_error_json(err);
	}
	node_set_state(d, (uint32_t)node, IVRDMA_NODE_SUSPENDING);
	/* ivrdmad is suspend_seq's only writer; release: after the state above. */
	shm_store_release32(&h->suspend_seq, shm_load_relaxed32(&h->suspend_seq) + 1);
	start_waiting(
	    d, c,
	    (struct migration){.node = (uint32_t)node, .seq = shm_load_relaxed32(&h->suspend_seq)},
	    seconds);
	/* Counted now: the node's own contexts hand their records over as they leave. */
	count_unacked(d, d->mig.seq, &d->mig.contexts, NULL);
	server_ring_control_all(d);
	log_info("migrate-begin %s: suspend_seq %u, waiting up to %d s for every context", name,
		 d->mig.seq, seconds);
	return NULL; /* the loop's migrate_tick answers */
}

/*
 * Returns the answer, or NULL when it comes later (the request of client
 * 'c' waits in d->mig). With no client (NULL) the request is refused.
 */
char *migrate_end(struct daemon *d, struct ctl_client *c, const char *args)
{
	char name[IVRDMA_NAME_LEN], *answer;
	int seconds, node = take_request(d, c, "migrate-end", args, name, &seconds, &answer);
	uint32_t state;

	if (node < 0)
		return answer;
	start_waiting(d, c, (struct migration){.node = (uint32_t)node, .ending = true}, seconds);
	state = shm_load_acquire32(&ivrdma_region_node(&d->region, (uint32_t)node)->state);
	if (state == IVRDMA_NODE_SUSPENDING && d->node_peers[node]) {
		/* Called off: the device never left. Its contexts reopen. */
		node_set_state(d, (uint32_t)node, IVRDMA_NODE_ACTIVE);
		server_ring_control_all(d);
	}
	log_info("migrate-end %s: waiting up to %d s for it to be active", name, seconds);
	return NULL; /* the loop's migrate_tick answers */
}

static void tick_begin(struct daemon *d)
{
	json_object *missing = json_object_new_array();
	uint32_t live, unacked = count_unacked(d, d->mig.seq, &live, missing);
	const char *name = directory_node_name(d, d->mig.node);
	char msg[512];

	if (!unacked) {
		log_info("migrate-begin %s: %u context(s) acknowledged in %lld ms", name,
			 d->mig.contexts, (long long)(monotonic_ms() - d->mig.started_ms));
		finish(d, answer_ok(d, "suspending", d->mig.contexts));
	} else if (monotonic_ms() >= d->mig.deadline_ms) {
		snprintf(msg, sizeof(msg),
			 "%u of %u context(s) did not acknowledge the suspension of %s in time: %s",
			 unacked, live, name,
			 json_object_to_json_string_ext(missing, JSON_C_TO_STRING_PLAIN));
		log_warn("migrate-begin: %s", msg);
		finish(d, ctl_error_json(msg));
	}
	json_object_put(missing);
}

static void tick_end(struct daemon *d)
{
	const struct ivrdma_node *n = ivrdma_region_node(&d->region, d->mig.node);
	char msg[256];

	if (shm_load_acquire32(&n->state) == IVRDMA_NODE_ACTIVE) {
		log_info("migrate-end %s: active (epoch %u)", directory_node_name(d, d->mig.node),
			 d->node_epoch[d->mig.node]);
		finish(d, answer_ok(d, "active", 0));
	} else if (monotonic_ms() >= d->mig.deadline_ms) {
		snprintf(msg, sizeof(msg), "VM %s has not joined again in time (state %s)",
			 directory_node_name(d, d->mig.node),
			 directory_node_state_name(shm_load_acquire32(&n->state)));
		log_warn("migrate-end: %s", msg);
		finish(d, ctl_error_json(msg));
	}
}

/* Once per loop turn: a waiting request may be answered. */
void migrate_tick(struct daemon *d)
{
	if (!d->mig.client)
		return;
	if (d->mig.ending)
		tick_end(d);
	else
		tick_begin(d);
}

/* The loop's epoll timeout: short while a request waits, else 'idle_ms'. */
int migrate_poll_ms(const struct daemon *d, int idle_ms)
{
	return d->mig.client ? MIGRATE_POLL_MS : idle_ms;
}

/* The control client 'c' goes away: a request of its stops waiting (the node stays as it is). */
void migrate_client_gone(struct daemon *d, const struct ctl_client *c)
{
	if (d->mig.client == c)
		d->mig.client = NULL;
}
