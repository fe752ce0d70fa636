// SPDX-License-Identifier: MIT
/* ivrdma: the command-line tool for ivrdmad and the local ivrdma devices. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_client.h"
#include "status_watch.h"
#ifdef IVRDMA_HAVE_SETUP
#include "setup.h"
#endif

static const char usage_text[] =
    "usage: ivrdma [--dir DIR] COMMAND [ARGS]\n"
    "  --dir DIR        where ivrdmad's sockets are (/run/ivrdma, or $IVRDMA_DIR)\n"
    "commands:\n"
    "  status [--json]  nodes, peers, GIDs, LIDs, IP addresses, region usage, RDMA CM\n"
    "                   listeners, contexts and their counters\n"
    "  status --watch [S] [--count N]\n"
    "                   every S s (1), each context's and node's rates since the last\n"
    "                   look: posted, completed, errors, operations, MB; N times (forever)\n"
#ifdef IVRDMA_HAVE_SETUP
    "  setup            write the sysfs tree and device node for local ivrdma devices\n"
    "  env              print the environment verbs programs need\n"
#endif
    "  migrate-begin VM [--timeout S]\n"
    "                   before VM's ivshmem device is unplugged: every context lets go of\n"
    "                   it (its QPs fail, its memory becomes private); waits S s (30) for all\n"
    "  migrate-end VM [--timeout S]\n"
    "                   waits S s (30) until VM is attached and active again\n"
    "  version\n";

static const char *get_str(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "?";
}

static int64_t get_int(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

static void print_region(json_object *doc)
{
	json_object *r;

	if (!json_object_object_get_ex(doc, "region", &r))
		return;
	printf("region %s (%s), %lld MiB, id %s, subnet prefix %s\n", get_str(r, "path"),
	       get_str(r, "backing"), (long long)(get_int(r, "size") >> 20), get_str(r, "id"),
	       get_str(r, "subnet_prefix"));
	printf("  chunks %lld of %lld in use (%lld KiB each), %lld vectors per peer, "
	       "at most %lld peers\n",
	       (long long)get_int(r, "chunks_used"), (long long)get_int(r, "chunks_total"),
	       (long long)(get_int(r, "chunk_size") >> 10), (long long)get_int(r, "vectors"),
	       (long long)get_int(r, "max_peers"));
}

/* A JSON array's items (peer IDs, addresses), comma-separated into 'buf'; "-" for none. */
static const char *join_list(json_object *arr, char *buf, size_t len)
{
	size_t n = arr ? json_object_array_length(arr) : 0, used = 0;

	snprintf(buf, len, "-");
	for (size_t i = 0; i < n && used < len; i++) {
		int k = snprintf(buf + used, len - used, "%s%s", i ? "," : "",
				 json_object_get_string(json_object_array_get_idx(arr, i)));

		used += k > 0 ? (size_t)k : 0;
	}
	return buf;
}

static void print_nodes(json_object *doc)
{
	json_object *nodes;

	if (!json_object_object_get_ex(doc, "nodes", &nodes))
		return;
	printf("%-16s %-4s %-10s %4s %-19s %-39s %-8s %s\n", "NODE", "KIND", "STATE", "LID", "GUID",
	       "GID", "PEERS", "ADDRESSES");
	for (size_t i = 0; i < json_object_array_length(nodes); i++) {
		json_object *n = json_object_array_get_idx(nodes, i), *peers = NULL, *addrs = NULL;
		char peer_list[256], addr_list[256];

		json_object_object_get_ex(n, "peers", &peers);
		json_object_object_get_ex(n, "addrs", &addrs);
		printf("%-16s %-4s %-10s %4lld %-19s %-39s %-8s %s\n", get_str(n, "name"),
		       get_str(n, "kind"), get_str(n, "state"), (long long)get_int(n, "lid"),
		       get_str(n, "guid"), get_str(n, "gid"),
		       join_list(peers, peer_list, sizeof(peer_list)),
		       join_list(addrs, addr_list, sizeof(addr_list)));
	}
}

/* Two lines of counters under a context or QP line. */
static void print_counters(json_object *o, const char *key)
{
	json_object *c;

	if (!json_object_object_get_ex(o, key, &c))
		return;
	printf("      posted %lld (%lld send, %lld recv), completions %lld (%lld errors, "
	       "%lld flushed), %lld RNR retries\n",
	       (long long)get_int(c, "wrs_posted"), (long long)get_int(c, "sq_posted"),
	       (long long)get_int(c, "rq_posted"), (long long)get_int(c, "completions"),
	       (long long)get_int(c, "errors"), (long long)get_int(c, "flushed"),
	       (long long)get_int(c, "rnr_retries"));
	printf("      ops/bytes: send %lld/%lld write %lld/%lld read %lld/%lld atomic %lld/%lld "
	       "recv %lld/%lld\n",
	       (long long)get_int(c, "send_ops"), (long long)get_int(c, "send_bytes"),
	       (long long)get_int(c, "write_ops"), (long long)get_int(c, "write_bytes"),
	       (long long)get_int(c, "read_ops"), (long long)get_int(c, "read_bytes"),
	       (long long)get_int(c, "atomic_ops"), (long long)get_int(c, "atomic_bytes"),
	       (long long)get_int(c, "recv_ops"), (long long)get_int(c, "recv_bytes"));
}

/* Each context (open, then the latest ended ones), its totals, then each live QP. */
static void print_contexts(json_object *doc)
{
	json_object *ctxs, *qps;

	if (!json_object_object_get_ex(doc, "contexts", &ctxs) ||
	    json_object_array_length(ctxs) == 0)
		return;
	puts("CONTEXTS");
	for (size_t i = 0; i < json_object_array_length(ctxs); i++) {
		json_object *c = json_object_array_get_idx(ctxs, i);

		printf("  context %lld: pid %lld, node %s, peer %lld, %s, %lld QPs "
		       "(%lld destroyed)\n",
		       (long long)get_int(c, "record"), (long long)get_int(c, "pid"),
		       get_str(c, "node"), (long long)get_int(c, "peer"), get_str(c, "state"),
		       (long long)get_int(c, "nr_qps"), (long long)get_int(c, "qps_destroyed"));
		print_counters(c, "totals");
		if (!json_object_object_get_ex(c, "qps", &qps))
			continue;
		for (size_t k = 0; k < json_object_array_length(qps); k++) {
			json_object *q = json_object_array_get_idx(qps, k);

			printf("    QP %#llx %s %s\n", (long long)get_int(q, "qpn"),
			       get_str(q, "type"), get_str(q, "state"));
			print_counters(q, "counters");
		}
	}
}

/* The RDMA CM listeners in the region, one a line; nothing when there are none. */
static void print_listeners(json_object *doc)
{
	json_object *ls;

	if (!json_object_object_get_ex(doc, "listeners", &ls) || json_object_array_length(ls) == 0)
		return;
	puts("LISTENERS");
	printf("  %-16s %-5s %5s %-39s %5s %8s %s\n", "NODE", "SPACE", "PORT", "ADDRESS", "PEER",
	       "PID", "AGENT-QPN");
	for (size_t i = 0; i < json_object_array_length(ls); i++) {
		json_object *l = json_object_array_get_idx(ls, i);

		printf("  %-16s %-5s %5lld %-39s %5lld %8lld %#llx\n", get_str(l, "node"),
		       get_str(l, "port_space"), (long long)get_int(l, "port"), get_str(l, "addr"),
		       (long long)get_int(l, "peer"), (long long)get_int(l, "pid"),
		       (long long)get_int(l, "agent_qpn"));
	}
}

/* status --watch [S] [--count N] */
static int cmd_watch(const char *dir, int argc, char **argv)
{
	double period = 1.0;
	long count = 0;
	char *end;
	int i = 2;

	if (i < argc && argv[i][0] != '-') {
		period = strtod(argv[i++], &end);
		if (*end || !(period >= 0.1 && period <= 3600)) {
			fputs("ivrdma: --watch takes seconds from 0.1 to 3600\n", stderr);
			return 2;
		}
	}
	if (i + 1 < argc && !strcmp(argv[i], "--count")) {
		count = strtol(argv[i + 1], &end, 10);
		if (*end || count < 1) {
			fputs("ivrdma: --count takes a positive number\n", stderr);
			return 2;
		}
		i += 2;
	}
	if (i != argc) {
		fputs(usage_text, stderr);
		return 2;
	}
	return status_watch(dir, period, count);
}

static int cmd_status(const char *dir, int argc, char **argv)
{
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	char err[256];
	json_object *doc;

	if (argc > 1 && !strcmp(argv[1], "--watch"))
		return cmd_watch(dir, argc, argv);
	if (argc > (json ? 2 : 1)) {
		fputs(usage_text, stderr);
		return 2;
	}
	doc = ctl_request(dir, "status", err, sizeof(err));
	if (!doc) {
		fprintf(stderr, "ivrdma: %s\n", err);
		return 1;
	}
	if (json) {
		puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
							     JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		print_region(doc);
		print_nodes(doc);
		print_listeners(doc);
		print_contexts(doc);
	}
	json_object_put(doc);
	return 0;
}

/* migrate-begin / migrate-end VM [--timeout S]: ivrdmad answers when done. */
static int cmd_migrate(const char *dir, int argc, char **argv)
{
	char request[256], err[1024];
	long seconds = 30;
	json_object *doc;

	if (argc == 4 && !strcmp(argv[2], "--timeout")) {
		char *end;

		seconds = strtol(argv[3], &end, 10);
		if (*end || seconds < 1 || seconds > 3600) {
			fprintf(stderr, "ivrdma: --timeout takes 1 to 3600 seconds\n");
			return 2;
		}
	} else if (argc != 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	snprintf(request, sizeof(request), "%s %s %ld", argv[0], argv[1], seconds);
	doc = ctl_request_wait(dir, request, (int)(seconds + 5) * 1000, err, sizeof(err));
	if (!doc) {
		fprintf(stderr, "ivrdma: %s\n", err);
		return 1;
	}
	printf("%s: %s %s in %lld ms", argv[0], get_str(doc, "node"), get_str(doc, "state"),
	       (long long)get_int(doc, "ms"));
	if (!strcmp(argv[0], "migrate-begin"))
		printf(", %lld context(s) acknowledged", (long long)get_int(doc, "contexts"));
	putchar('\n');
	json_object_put(doc);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = getenv("IVRDMA_DIR") ? getenv("IVRDMA_DIR") : "/run/ivrdma";
	int c;

	/* Options after the command belong to the command. */
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		if (c == 'd') {
			dir = optarg;
		} else {
			fputs(usage_text, c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (!strcmp(argv[0], "status"))
		return cmd_status(dir, argc, argv);
	if (!strcmp(argv[0], "migrate-begin") || !strcmp(argv[0], "migrate-end"))
		return cmd_migrate(dir, argc, argv);
	if (!strcmp(argv[0], "version")) {
		printf("ivrdma %s\n", IVRDMA_VERSION);
		return 0;
	}
#ifdef IVRDMA_HAVE_SETUP
	if (!strcmp(argv[0], "setup") || !strcmp(argv[0], "env")) {
		setenv("IVRDMA_DIR", dir, 1);
		optind = 1;
		return !strcmp(argv[0], "setup") ? ivrdma_cmd_setup(argc, argv)
						 : ivrdma_cmd_env(argc, argv);
	}
#endif
	fprintf(stderr, "ivrdma: unknown command '%s'\n%s", argv[0], usage_text);
	return 2;
}
