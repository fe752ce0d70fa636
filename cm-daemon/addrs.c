// SPDX-License-Identifier: MIT
/*
 * The IP addresses RDMA CM resolves to each node: --addr NODE=IP[,IP...].
 * The region keeps each as 16 bytes, IPv4 as IPv4-mapped IPv6, so that one
 * comparison serves both families. An address that cannot name exactly one
 * node of this region is refused: a loopback address always means the
 * resolver's own node, and an unspecified, multicast or broadcast address
 * names none or many.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Is 'ip' an IPv4 address (::ffff:a.b.c.d)? */
static bool is_v4_mapped(const uint8_t ip[16])
{
	return memcmp(ip, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0;
}

/* Why 'ip' names no single node (a phrase), or NULL when it may name one. */
static const char *refusal(const uint8_t ip[16])
{
	static const uint8_t any[16], loopback[16] = {[15] = 1};
	const uint8_t *v4 = ip + 12;

	if (is_v4_mapped(ip)) {
		if (v4[0] == 127)
			return "a loopback address";
		if (v4[0] == 0)
			return "unspecified (0.0.0.0/8)";
		if (v4[0] >= 224 && v4[0] < 240)
			return "a multicast address";
		if (v4[0] == 255 && v4[1] == 255 && v4[2] == 255 && v4[3] == 255)
			return "the broadcast address";
		return NULL;
	}
	if (memcmp(ip, any, 16) == 0)
		return "the unspecified address";
	if (memcmp(ip, loopback, 16) == 0)
		return "a loopback address";
	if (ip[0] == 0xff)
		return "a multicast address";
	return NULL;
}

/* IPv4 (stored IPv4-mapped) or IPv6 text into 16 bytes; returns false if it is neither. */
static bool parse_ip(const char *text, uint8_t ip[16])
{
	memcpy(ip, v4_mapped_prefix, sizeof(v4_mapped_prefix));
	if (inet_pton(AF_INET, text, ip + 12) == 1)
		return true;
	return inet_pton(AF_INET6, text, ip) == 1;
}

/* The configured name of node 'node' (the host is node 0). */
static const char *node_name(const struct daemon_config *cfg, uint32_t node)
{
	return node == 0 ? "host" : cfg->vms[node - 1].name;
}

/* The node named by the first 'len' bytes of 'name': its index, or -1 if none is. */
static int node_index(const struct daemon_config *cfg, const char *name, size_t len)
{
	for (uint32_t i = 0; i <= cfg->nr_vms; i++) {
		const char *n = node_name(cfg, i);

		if (strlen(n) == len && strncmp(n, name, len) == 0)
			return (int)i;
	}
	return -1;
}

/* The node that already has 'ip': its index, or -1 if none has. */
static int holder_of(const struct daemon_config *cfg, const uint8_t ip[16])
{
	for (uint32_t i = 0; i <= cfg->nr_vms; i++)
		for (uint32_t k = 0; k < cfg->addrs[i].nr; k++)
			if (memcmp(cfg->addrs[i].ip[k], ip, 16) == 0)
				return (int)i;
	return -1;
}

/* One address of option 'arg' for 'node'; returns 0, or -EINVAL after saying why not. */
static int add_addr(struct daemon_config *cfg, const char *arg, int node, const char *text)
{
	struct node_addrs *a = &cfg->addrs[node];
	const char *why;
	uint8_t ip[16];
	int holder;

	if (!parse_ip(text, ip)) {
		fprintf(stderr, "ivrdmad: --addr %s: '%s' is not an IPv4 or IPv6 address\n", arg,
			text);
		return -EINVAL;
	}
	why = refusal(ip);
	if (why) {
		fprintf(stderr, "ivrdmad: --addr %s: %s is %s, which names no one node\n", arg,
			text, why);
		return -EINVAL;
	}
	holder = holder_of(cfg, ip);
	if (holder >= 0) {
		fprintf(stderr, "ivrdmad: --addr %s: %s is given twice (already %s's)\n", arg, text,
			node_name(cfg, (uint32_t)holder));
		return -EINVAL;
	}
	if (a->nr == IVRDMA_NODE_ADDRS) {
		fprintf(stderr, "ivrdmad: --addr %s: at most %u addresses per node\n", arg,
			IVRDMA_NODE_ADDRS);
		return -EINVAL;
	}
	memcpy(a->ip[a->nr++], ip, 16);
	return 0;
}

/* One --addr NODE=IP[,IP...]; returns 0, or -EINVAL after saying why not. */
static int resolve_one(struct daemon_config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '='), *p;
	int node;

	if (!eq || eq == arg) {
		fprintf(stderr, "ivrdmad: --addr takes NODE=IP[,IP...], not '%s'\n", arg);
		return -EINVAL;
	}
	node = node_index(cfg, arg, (size_t)(eq - arg));
	if (node < 0) {
		fprintf(stderr, "ivrdmad: --addr %s: no node '%.*s' (host, or a VM of --vm)\n", arg,
			(int)(eq - arg), arg);
		return -EINVAL;
	}
	for (p = eq + 1;; p++) {
		size_t len = strcspn(p, ",");
		char text[INET6_ADDRSTRLEN];
		int rc;

		if (len == 0 || len >= sizeof(text)) {
			fprintf(stderr, "ivrdmad: --addr %s: %s\n", arg,
				len ? "an address too long" : "an empty address");
			return -EINVAL;
		}
		memcpy(text, p, len);
		text[len] = '\0';
		rc = add_addr(cfg, arg, node, text);
		if (rc)
			return rc;
		p += len;
		if (*p == '\0')
			return 0;
	}
}

int addrs_resolve(struct daemon_config *cfg)
{
	for (uint32_t i = 0; i < cfg->nr_addr_args; i++) {
		int rc = resolve_one(cfg, cfg->addr_args[i]);

		if (rc)
			return rc;
	}
	return 0;
}

void addrs_format(const uint8_t ip[16], char *out, size_t len)
{
	bool v4 = is_v4_mapped(ip);

	if (!inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? ip + 12 : ip, out, (socklen_t)len))
		snprintf(out, len, "?");
}
