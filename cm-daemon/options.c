// SPDX-License-Identifier: MIT
/* ivrdmad's command line. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "region_size.h"

static const char usage_text[] =
    "usage: ivrdmad [options]\n"
    "  --dir DIR           sockets: DIR/host.sock, DIR/<vm>.sock, DIR/ctl.sock (/run/ivrdma)\n"
    "  --shm NAME          POSIX shared memory object for the region (/ivrdma)\n"
    "  --hugetlbfs DIR     back the region with a file on a hugetlbfs mount instead\n"
    "  --size SIZE|auto    region size, power of two, K/M/G suffix (auto: the largest\n"
    "                      power of two within half the RAM and half the free space\n"
    "                      of /dev/shm or the hugetlbfs mount)\n"
    "  --vectors N         doorbell vectors per peer; QEMU's vectors= must match (4)\n"
    "  --max-peers N       most peers (QEMU devices and host processes) at once (64)\n"
    "  --chunk-size SIZE   allocation unit of the region, power of two >= 4K (64K)\n"
    "  --vm NAME[=GUID]    a VM node, reached at DIR/NAME.sock; repeat per VM\n"
    "  --addr NODE=IP[,IP...]\n"
    "                      IPv4/IPv6 addresses RDMA CM resolves to NODE (host or a VM),\n"
    "                      at most 3 per node; repeat per node\n"
    "  --host-guid GUID    node GUID of the host (derived from \"host\" by default)\n"
    "  --subnet-prefix P   GID prefix of the region's subnet, e.g. fd12:3456:789a:0\n"
    "                      (derived from the machine, --shm/--hugetlbfs and --dir)\n"
    "  --mode OCTAL        permissions of the sockets and the region (0600)\n"
    "  --rejoin-grace S    seconds after which a process of an adopted region that\n"
    "                      has not rejoined is reported (10)\n"
    "  -v, --verbose       log debug messages\n"
    "  -h, --help\n";

static_assert(IVRDMA_NODE_ADDRS == 3, "the usage text says at most 3 addresses per node");

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10, end++;
		break;
	case 'm':
	case 'M':
		v <<= 20, end++;
		break;
	case 'g':
	case 'G':
		v <<= 30, end++;
		break;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_u32_base(const char *s, int base, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, base);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	return parse_u32_base(s, 0, lo, hi, out);
}

static int parse_guid(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 16);
	return errno || end == s || *end || *out == 0 ? -EINVAL : 0;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static bool valid_vm_name(const char *name, size_t len)
{
	if (len == 0 || len >= IVRDMA_NAME_LEN)
		return false;
	if ((len == 4 && !strncmp(name, "host", 4)) || (len == 3 && !strncmp(name, "ctl", 3)))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!(c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') ||
		      (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) ||
		    (i == 0 && c == '.'))
			return false;
	}
	return true;
}

static int add_vm(struct daemon_config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	struct vm_config *vm;

	if (!valid_vm_name(arg, len)) {
		fprintf(stderr,
			"ivrdmad: bad VM name in '%s' (1-31 of [A-Za-z0-9._-], not host/ctl)\n",
			arg);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cfg->nr_vms; i++) {
		if (strlen(cfg->vms[i].name) == len && !strncmp(cfg->vms[i].name, arg, len)) {
			fprintf(stderr, "ivrdmad: VM '%.*s' given twice\n", (int)len, arg);
			return -EINVAL;
		}
	}
	if (cfg->nr_vms >= IVRDMA_MAX_NODES - 1) {
		fprintf(stderr, "ivrdmad: at most %u VMs\n", IVRDMA_MAX_NODES - 1);
		return -EINVAL;
	}
	vm = &cfg->vms[cfg->nr_vms++];
	memcpy(vm->name, arg, len);
	vm->name[len] = '\0';
	if (eq && parse_guid(eq + 1, &vm->guid)) {
		fprintf(stderr, "ivrdmad: bad GUID in '%s' (hex, nonzero)\n", arg);
		return -EINVAL;
	}
	return 0;
}

/* Keeps an --addr for addrs_resolve; returns 0, or 1 (reported) when there are too many. */
static int add_addr_arg(struct daemon_config *cfg, const char *arg)
{
	if (cfg->nr_addr_args == ADDR_ARGS_MAX) {
		fprintf(stderr, "ivrdmad: at most %u --addr options\n", ADDR_ARGS_MAX);
		return 1;
	}
	cfg->addr_args[cfg->nr_addr_args++] = arg;
	return 0;
}

static void set_defaults(struct daemon_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->dir = "/run/ivrdma";
	cfg->shm_name = "/ivrdma";
	cfg->region_size = 0; /* --size auto */
	cfg->nr_vectors = IVRDMA_MIN_VECTORS;
	cfg->max_peers = 64;
	cfg->chunk_shift = IVRDMA_DEFAULT_CHUNK_SHIFT;
	cfg->socket_mode = 0600;
	cfg->rejoin_grace_ms = 10000;
}

/* --size auto, or the size given, checked: 0 or -EINVAL (reported). */
static int settle_region_size(struct daemon_config *cfg)
{
	if (cfg->region_size == 0) {
		cfg->region_size_auto = true;
		if (region_size_auto(cfg, &cfg->region_size, cfg->region_size_why,
				     sizeof(cfg->region_size_why)) == 0)
			return 0;
		fprintf(stderr, "ivrdmad: %s; give --size\n", cfg->region_size_why);
		return -EINVAL;
	}
	snprintf(cfg->region_size_why, sizeof(cfg->region_size_why), "--size");
	if (!is_pow2(cfg->region_size) || cfg->region_size < IVRDMA_MIN_REGION_SIZE ||
	    cfg->region_size > IVRDMA_MAX_REGION_SIZE) {
		fprintf(stderr, "ivrdmad: --size must be auto or a power of two from 16M to 64G "
				"(a PCI BAR is a power of two)\n");
		return -EINVAL;
	}
	return 0;
}

static int check_config(struct daemon_config *cfg, uint64_t chunk_size)
{
	if (settle_region_size(cfg))
		return -EINVAL;
	if (!is_pow2(chunk_size) || chunk_size < (1ull << IVRDMA_MIN_CHUNK_SHIFT) ||
	    chunk_size > cfg->region_size / 16) {
		fprintf(stderr, "ivrdmad: --chunk-size must be a power of two, >= 4K, "
				"at most 1/16 of the region\n");
		return -EINVAL;
	}
	cfg->chunk_shift = (uint32_t)__builtin_ctzll(chunk_size);
	return 0;
}

int options_parse(int argc, char **argv, struct daemon_config *cfg, int *verbose)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"shm", required_argument, NULL, 's'},
	    {"hugetlbfs", required_argument, NULL, 'H'},
	    {"size", required_argument, NULL, 'S'},
	    {"vectors", required_argument, NULL, 'n'},
	    {"max-peers", required_argument, NULL, 'p'},
	    {"chunk-size", required_argument, NULL, 'c'},
	    {"vm", required_argument, NULL, 'V'},
	    {"addr", required_argument, NULL, 'A'},
	    {"host-guid", required_argument, NULL, 'g'},
	    {"subnet-prefix", required_argument, NULL, 'P'},
	    {"mode", required_argument, NULL, 'm'},
	    {"rejoin-grace", required_argument, NULL, 'R'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t chunk_size = 1ull << IVRDMA_DEFAULT_CHUNK_SHIFT;
	int c, bad = 0;

	set_defaults(cfg);
	*verbose = 0;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			cfg->dir = optarg;
			break;
		case 's':
			cfg->shm_name = optarg;
			break;
		case 'H':
			cfg->hugetlbfs = optarg;
			break;
		case 'S':
			if (strcmp(optarg, "auto") == 0)
				cfg->region_size = 0;
			else if (parse_size(optarg, &cfg->region_size) || !cfg->region_size)
				bad = 1;
			break;
		case 'n':
			if (parse_u32(optarg, IVRDMA_MIN_VECTORS, IVRDMA_MAX_VECTORS,
				      &cfg->nr_vectors)) {
				fprintf(stderr, "ivrdmad: --vectors must be %u..%u\n",
					IVRDMA_MIN_VECTORS, IVRDMA_MAX_VECTORS);
				bad = 1;
			}
			break;
		case 'p':
			if (parse_u32(optarg, 2, IVRDMA_MAX_PEERS, &cfg->max_peers)) {
				fprintf(stderr, "ivrdmad: --max-peers must be 2..%u\n",
					IVRDMA_MAX_PEERS);
				bad = 1;
			}
			break;
		case 'c':
			bad |= parse_size(optarg, &chunk_size);
			break;
		case 'R':
			if (parse_u32(optarg, 0, 3600, &cfg->rejoin_grace_ms)) {
				fprintf(stderr,
					"ivrdmad: --rejoin-grace must be 0..3600 seconds\n");
				bad = 1;
			}
			cfg->rejoin_grace_ms *= 1000;
			break;
		case 'V':
			bad |= add_vm(cfg, optarg);
			break;
		case 'A':
			bad |= add_addr_arg(cfg, optarg);
			break;
		case 'g':
			bad |= parse_guid(optarg, &cfg->host_guid);
			break;
		case 'P':
			if (subnet_prefix_parse(optarg, &cfg->subnet_prefix)) {
				fprintf(stderr, "ivrdmad: --subnet-prefix takes four hex groups "
						"(e.g. fd12:3456:789a:0), not fe80:0:0:0\n");
				bad = 1;
			}
			break;
		case 'm':
			/* Permissions are octal, as chmod takes them. */
			if (parse_u32_base(optarg, 8, 0, 0777, &cfg->socket_mode)) {
				fprintf(stderr,
					"ivrdmad: --mode takes octal permissions, e.g. 0660\n");
				bad = 1;
			}
			break;
		case 'v':
			*verbose = 1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		default:
			bad = 1;
		}
	}
	if (bad || optind != argc) {
		fputs(usage_text, stderr);
		return -EINVAL;
	}
	/* Addresses name nodes: only now are all the VMs known. */
	return check_config(cfg, chunk_size) ? -EINVAL : addrs_resolve(cfg);
}
