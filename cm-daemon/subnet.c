// SPDX-License-Identifier: MIT
/*
 * The region's InfiniBand subnet prefix: the upper half of every GID.
 *
 * Each region is its own subnet. UCX puts a prefix other than fe80::/64
 * into its IB address and compares it when it asks whether a peer is
 * reachable; Open MPI's openib compares subnet IDs. With a prefix of its
 * own per region, both treat ivrdma0 as reaching exactly the peers of the
 * same region, and never a real HCA's link-local subnet or another
 * region's ivrdma0 (on this machine or another one).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define LINK_LOCAL_PREFIX 0xfe80000000000000ull

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return (h ^ 0xff) * 0x100000001b3ull; /* a separator: "ab","c" is not "a","bc" */
}

/* What tells this machine from others: its machine ID, else its host name. */
static void machine_identity(char *out, size_t len)
{
	FILE *f = fopen("/etc/machine-id", "r");

	out[0] = '\0';
	if (f) {
		if (!fgets(out, (int)len, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
	if (!out[0] && gethostname(out, len) < 0)
		out[0] = '\0';
	out[len - 1] = '\0';
}

/*
 * A prefix from what names the region: the machine, the backing store
 * (shm name or hugetlbfs file) and the socket directory. A restarted
 * ivrdmad with the same configuration gets the same prefix; two regions
 * that run at once differ in both store and directory. The form is an
 * IPv6 unique local prefix (fd00::/8, a 40-bit ID, subnet 0): not
 * link-local, and not fec0::/48, whose prefixes UCX shortens to 16 bits.
 */
uint64_t subnet_prefix_derive(const char *store_path, const char *dir)
{
	char machine[128];
	uint64_t h = 0xcbf29ce484222325ull;

	machine_identity(machine, sizeof(machine));
	h = fnv1a(h, "ivrdma-subnet:");
	h = fnv1a(h, machine);
	h = fnv1a(h, store_path ? store_path : "");
	h = fnv1a(h, dir ? dir : ""); /* a region formatted without sockets (tests) has none */
	return 0xfd00000000000000ull | ((h >> 8) & 0x00ffffffffff0000ull);
}

/* Four groups of 1-4 hex digits ("fd12:3456:789a:0"), as a GID's upper half. */
int subnet_prefix_parse(const char *s, uint64_t *out)
{
	unsigned int g[4];
	int n = 0;

	if (sscanf(s, "%4x:%4x:%4x:%4x%n", &g[0], &g[1], &g[2], &g[3], &n) != 4 || s[n] ||
	    strchr(s, '-') || strchr(s, '+') || strchr(s, ' '))
		return -EINVAL;
	*out = (uint64_t)g[0] << 48 | (uint64_t)g[1] << 32 | (uint64_t)g[2] << 16 | g[3];
	/* The default subnet would make every region, and real HCAs, one subnet. */
	return *out == LINK_LOCAL_PREFIX || *out == 0 ? -EINVAL : 0;
}

void subnet_prefix_format(uint64_t prefix, char *out, size_t len)
{
	snprintf(out, len, "%04x:%04x:%04x:%04x", (unsigned int)(prefix >> 48),
		 (unsigned int)(prefix >> 32) & 0xffff, (unsigned int)(prefix >> 16) & 0xffff,
		 (unsigned int)prefix & 0xffff);
}
