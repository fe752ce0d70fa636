// SPDX-License-Identifier: MIT
/*
 * The control socket: one request line in, one JSON document out, then the
 * connection closes. Requests are small and answers buffered, so a client
 * that sends slowly or never reads costs a little memory until its
 * deadline, never the loop's time.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "shm_atomic.h"

#define CTL_DEADLINE_MS 5000
#define CTL_CLIENTS_MAX 32

struct ctl_client {
	struct watch w;
	struct ctl_client *next;
	int64_t deadline;
	struct ctl_request req;
	char *out;
	size_t out_len, out_off;
	bool waiting; /* its request is answered later (migrate.c) */
};

static json_object *region_json(struct daemon *d)
{
	const struct ivrdma_region *r = &d->region;
	json_object *o = json_object_new_object();
	char id[32], prefix[24];

	snprintf(id, sizeof(id), "0x%016llx", (unsigned long long)r->region_id);
	subnet_prefix_format(ivrdma_region_header(r)->subnet_prefix, prefix, sizeof(prefix));
	json_object_object_add(o, "backing",
			       json_object_new_string(d->store.is_shm ? "shm" : "hugetlbfs"));
	json_object_object_add(o, "path", json_object_new_string(d->store.path));
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "subnet_prefix", json_object_new_string(prefix));
	json_object_object_add(o, "size", json_object_new_uint64(r->size));
	json_object_object_add(o, "chunk_size", json_object_new_uint64(ivrdma_chunk_size(r)));
	json_object_object_add(o, "chunks_total", json_object_new_int64(r->nr_chunks));
	json_object_object_add(o, "chunks_used", json_object_new_int64(ivrdma_chunks_in_use(r)));
	json_object_object_add(o, "vectors", json_object_new_int64(r->nr_vectors));
	json_object_object_add(o, "max_peers", json_object_new_int64(r->max_peers));
	json_object_object_add(o, "qp_slots", json_object_new_int64(r->qps.entries));
	json_object_object_add(o, "cq_slots", json_object_new_int64(r->cqs.entries));
	json_object_object_add(o, "srq_slots", json_object_new_int64(r->srqs.entries));
	json_object_object_add(o, "mr_slots", json_object_new_int64(r->mrs.entries));
	json_object_object_add(o, "listener_slots", json_object_new_int64(r->listeners.entries));
	json_object_object_add(
	    o, "dir_generation",
	    json_object_new_uint64(shm_load_acquire64(&ivrdma_region_header(r)->dir_generation)));
	return o;
}

/*
 * The addresses of node 'index' as a new JSON array of strings, from the
 * configuration: never the region's copy, which any participant may write.
 */
static json_object *node_addrs_json(const struct daemon *d, uint32_t index)
{
	const struct node_addrs *a = &d->cfg.addrs[index];
	json_object *arr = json_object_new_array();
	char text[64];

	for (uint32_t i = 0; i < a->nr; i++) {
		addrs_format(a->ip[i], text, sizeof(text));
		json_object_array_add(arr, json_object_new_string(text));
	}
	return arr;
}

static json_object *node_json(struct daemon *d, uint32_t index)
{
	const struct ivrdma_node *n = ivrdma_region_node(&d->region, index);
	json_object *o = json_object_new_object(), *peers = json_object_new_array();
	char guid[24], gid[48];

	snprintf(guid, sizeof(guid), "0x%016llx", (unsigned long long)n->node_guid);
	directory_format_gid(n->gid, gid, sizeof(gid));
	for (uint32_t i = 0; i < d->cfg.max_peers; i++)
		if (d->peers[i] && d->peers[i]->node == index)
			json_object_array_add(peers, json_object_new_int(i));
	json_object_object_add(o, "name", json_object_new_string(directory_node_name(d, index)));
	json_object_object_add(o, "kind", json_object_new_string(index == 0 ? "host" : "vm"));
	json_object_object_add(
	    o, "state",
	    json_object_new_string(directory_node_state_name(shm_load_acquire32(&n->state))));
	json_object_object_add(o, "lid", json_object_new_int(index + 1));
	json_object_object_add(o, "guid", json_object_new_string(guid));
	json_object_object_add(o, "gid", json_object_new_string(gid));
	json_object_object_add(o, "addrs", node_addrs_json(d, index));
	json_object_object_add(o, "epoch", json_object_new_int64(d->node_epoch[index]));
	json_object_object_add(o, "peers", peers);
	return o;
}

static json_object *peer_json(struct daemon *d, const struct peer *p)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_int(p->id));
	json_object_object_add(o, "node", json_object_new_string(directory_node_name(d, p->node)));
	json_object_object_add(o, "pid", json_object_new_int(p->pid));
	json_object_object_add(o, "gen", json_object_new_int(p->gen));
	/* rejoining: of a region this ivrdmad adopted, not back yet (adopt.c) */
	json_object_object_add(o, "state",
			       json_object_new_string(p->orphan ? "rejoining" : "connected"));
	return o;
}

json_object *ctl_status_json(struct daemon *d)
{
	json_object *o = json_object_new_object(), *nodes = json_object_new_array(),
		    *peers = json_object_new_array(), *daemon = json_object_new_object();

	/*
	 * Ended contexts are reclaimed before anything is read, so the whole
	 * status is of one moment: a region's chunks_used read before the
	 * sweep would still count what the sweep then frees.
	 */
	contexts_sweep(d);
	json_object_object_add(daemon, "pid", json_object_new_int(getpid()));
	json_object_object_add(daemon, "dir", json_object_new_string(d->cfg.dir));
	json_object_object_add(daemon, "version", json_object_new_string(IVRDMA_VERSION));
	for (uint32_t i = 0; i < d->nr_listeners; i++)
		json_object_array_add(nodes, node_json(d, i));
	for (uint32_t i = 0; i < d->cfg.max_peers; i++)
		if (d->peers[i])
			json_object_array_add(peers, peer_json(d, d->peers[i]));
	json_object_object_add(o, "daemon", daemon);
	json_object_object_add(o, "region", region_json(d));
	json_object_object_add(o, "nodes", nodes);
	json_object_object_add(o, "peers", peers);
	json_object_object_add(o, "contexts", contexts_json(d));
	json_object_object_add(o, "listeners", cm_listeners_json(d));
	return o;
}

/* {"error": msg}, malloc'ed. */
char *ctl_error_json(const char *msg)
{
	json_object *o = json_object_new_object();
	char *text;

	json_object_object_add(o, "error", json_object_new_string(msg));
	text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

/* "WORD args": the args after WORD and a space, or NULL if the request is not WORD. */
static const char *request_args(const char *request, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(request, word, n) != 0 || (request[n] != ' ' && request[n] != '\0'))
		return NULL;
	return request + n + (request[n] == ' ');
}

/*
 * The answer to one request line, as a malloc'ed JSON text, or NULL when
 * it comes later through ctl_client_answer (a migrate request of client
 * 'c' waits; with no client, migrate requests are refused).
 */
char *ctl_answer(struct daemon *d, struct ctl_client *c, const char *request)
{
	char msg[CTL_REQUEST_MAX + 96];
	const char *args;
	json_object *o;
	char *text;

	if ((args = request_args(request, "migrate-begin")))
		return migrate_begin(d, c, args);
	if ((args = request_args(request, "migrate-end")))
		return migrate_end(d, c, args);
	if (strcmp(request, "status") != 0) {
		snprintf(msg, sizeof(msg),
			 "unknown request '%s' (known: status, migrate-begin, migrate-end)",
			 request);
		return ctl_error_json(msg);
	}
	o = ctl_status_json(d);
	text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

static void client_close(struct daemon *d, struct ctl_client *c)
{
	struct ctl_client **pp = &d->ctl_clients;

	while (*pp != c)
		pp = &(*pp)->next;
	*pp = c->next;
	migrate_client_gone(d, c);
	loop_del(d, &c->w);
	close(c->w.fd);
	free(c->out);
	free(c);
}

static void client_write(struct daemon *d, struct ctl_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->w.fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN)
				return;
			break;
		}
		c->out_off += (size_t)n;
	}
	client_close(d, c);
}

int ctl_request_feed(struct ctl_request *q, const char *bytes, size_t n)
{
	char *nl;

	if (n > sizeof(q->in) - 1 - q->len)
		return -1;
	memcpy(q->in + q->len, bytes, n);
	q->len += n;
	q->in[q->len] = '\0';
	nl = strchr(q->in, '\n');
	if (nl) {
		*nl = '\0';
		return 1;
	}
	return q->len == sizeof(q->in) - 1 || memchr(q->in, '\0', q->len) ? -1 : 0;
}

/* Reads until a newline; returns true once the request is complete. */
static bool client_read(struct ctl_client *c, bool *failed)
{
	char buf[CTL_REQUEST_MAX];
	ssize_t n = recv(c->w.fd, buf, sizeof(buf) - 1 - c->req.len, MSG_DONTWAIT);
	int rc;

	if (n <= 0) {
		*failed = n == 0 || errno != EAGAIN;
		return false;
	}
	rc = ctl_request_feed(&c->req, buf, (size_t)n);
	*failed = rc < 0;
	return rc > 0;
}

static void on_client_event(struct daemon *d, struct watch *w, uint32_t events)
{
	struct ctl_client *c = (struct ctl_client *)w;
	bool failed = false;

	if (c->out) {
		client_write(d, c);
		return;
	}
	if (c->waiting) {
		/* Anything more it sends is dropped; its hanging up ends the wait. */
		char byte;
		ssize_t n = recv(c->w.fd, &byte, 1, MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN))
			client_close(d, c);
		return;
	}
	if (client_read(c, &failed)) {
		char *text = ctl_answer(d, c, c->req.in);

		if (text || !c->waiting)
			ctl_client_answer(d, c, text);
	} else if (failed || (events & (EPOLLHUP | EPOLLERR))) {
		client_close(d, c);
	}
}

/* The request of 'c' is answered with 'text' (taken; NULL: the client is just closed). */
void ctl_client_answer(struct daemon *d, struct ctl_client *c, char *text)
{
	c->waiting = false;
	c->out = text;
	c->out_len = text ? strlen(text) : 0;
	shutdown(c->w.fd, SHUT_RD);
	loop_mod(d, &c->w, EPOLLOUT);
	client_write(d, c);
}

/* The request of 'c' waits for its answer, until 'deadline_ms' at most. */
void ctl_client_hold(struct ctl_client *c, int64_t deadline_ms)
{
	c->waiting = true;
	c->deadline = deadline_ms;
}

static void on_ctl_accept(struct daemon *d, struct watch *w, uint32_t events)
{
	struct ctl_client *c;
	int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	size_t n = 0;

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE)
			shed_connection(d, w->fd, d->ctl.path);
		return;
	}
	for (c = d->ctl_clients; c; c = c->next)
		n++;
	c = n < CTL_CLIENTS_MAX ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		log_warn("control socket: too many clients, refusing one");
		close(fd);
		return;
	}
	c->w = (struct watch){.fd = fd, .on_event = on_client_event};
	c->deadline = monotonic_ms() + CTL_DEADLINE_MS;
	c->next = d->ctl_clients;
	d->ctl_clients = c;
	if (loop_add(d, &c->w, EPOLLIN))
		client_close(d, c);
}

void ctl_expire(struct daemon *d)
{
	int64_t now = monotonic_ms();
	struct ctl_client *c = d->ctl_clients, *next;

	for (; c; c = next) {
		next = c->next;
		if (now >= c->deadline)
			client_close(d, c);
	}
}

int ctl_open(struct daemon *d)
{
	int n = snprintf(d->ctl.path, sizeof(d->ctl.path), "%s/ctl.sock", d->cfg.dir);

	if (n < 0 || (size_t)n >= sizeof(d->ctl.path))
		return -ENAMETOOLONG;
	d->ctl.w.on_event = on_ctl_accept;
	d->ctl.w.fd = unix_listen(d->ctl.path, d->cfg.socket_mode);
	if (d->ctl.w.fd < 0)
		return d->ctl.w.fd;
	return loop_add(d, &d->ctl.w, EPOLLIN);
}

void ctl_close(struct daemon *d)
{
	while (d->ctl_clients)
		client_close(d, d->ctl_clients);
	if (d->ctl.w.fd >= 0) {
		close(d->ctl.w.fd);
		unlink(d->ctl.path);
	}
}
