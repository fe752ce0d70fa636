// SPDX-License-Identifier: MIT
/*
 * ivshmem-probe: pokes an ivshmem PCI device (1af4:1110) from inside a
 * guest through sysfs alone, so guest tests need no driver of ours:
 * BAR0 (registers) and BAR2 (the shared region) are mapped from the
 * device's resource0 / resource2 files.
 *
 * Output is one KEY=value line per command, for the test driver to grep.
 * Exit status: 0 ok, 1 failure (device, mapping, check), 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest_checksum.h"
#include "region.h"

#define PCI_DEVICES    "/sys/bus/pci/devices"
#define IVSHMEM_VENDOR 0x1af4
#define IVSHMEM_DEVICE 0x1110

/* BAR0 registers, in 32-bit words (ivshmem-spec.rst). */
enum { REG_INTR_MASK = 0, REG_INTR_STATUS = 1, REG_IVPOSITION = 2, REG_DOORBELL = 3 };
#define BAR0_MIN_SIZE 16u

struct probe {
	char dir[PATH_MAX]; /* the device's sysfs directory */
	volatile uint32_t *regs;
	size_t regs_len;
	const volatile uint8_t *shm;
	uint64_t shm_len;
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("ivshmem-probe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int usage(void)
{
	fputs("usage: ivshmem-probe [-d BDF] COMMAND\n"
	      "  info                 device, BARs and PCI command register\n"
	      "  position             IVPOSITION=<my peer ID>\n"
	      "  header               validate the ivrdma region header in BAR2\n"
	      "  read OFFSET LEN      SUM=<FNV-1a 64> of BAR2 bytes [OFFSET, OFFSET+LEN)\n"
	      "  ring PEER VECTOR     write PEER<<16|VECTOR to the doorbell\n"
	      "  -d BDF               use this device (e.g. 0000:00:04.0), default: the first\n",
	      stderr);
	return 2;
}

/* Strict unsigned parse: decimal or 0x hex, whole string, <= max. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

static int read_sysfs(const char *dir, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX + 64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static bool sysfs_id_is(const char *dir, const char *name, unsigned long want)
{
	char buf[32];

	return read_sysfs(dir, name, buf, sizeof(buf)) == 0 && strtoul(buf, NULL, 0) == want;
}

/* Finds the device (bdf, or the first ivshmem one if NULL) and fills p->dir. */
static int find_device(struct probe *p, const char *bdf)
{
	DIR *d = opendir(PCI_DEVICES);
	struct dirent *e;
	int rc = 1;

	if (!d)
		return fail("cannot list %s: %s", PCI_DEVICES, strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || (bdf && strcmp(e->d_name, bdf)))
			continue;
		snprintf(p->dir, sizeof(p->dir), "%s/%s", PCI_DEVICES, e->d_name);
		if (sysfs_id_is(p->dir, "vendor", IVSHMEM_VENDOR) &&
		    sysfs_id_is(p->dir, "device", IVSHMEM_DEVICE)) {
			rc = 0;
			break;
		}
	}
	closedir(d);
	if (rc)
		return fail("no ivshmem device (%04x:%04x)%s%s under %s", IVSHMEM_VENDOR,
			    IVSHMEM_DEVICE, bdf ? " at " : "", bdf ? bdf : "", PCI_DEVICES);
	return 0;
}

/*
 * No driver binds the device, so nothing has enabled it for the kernel;
 * writing 'enable' makes sure memory decoding is on before we map BARs.
 */
static int ensure_enabled(const struct probe *p)
{
	char path[PATH_MAX + 16], buf[16];
	int fd;

	if (read_sysfs(p->dir, "enable", buf, sizeof(buf)) == 0 && buf[0] != '0')
		return 0;
	snprintf(path, sizeof(path), "%s/enable", p->dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		return fail("cannot enable %s: %s", p->dir, strerror(err));
	}
	close(fd);
	return 0;
}

static void *map_bar(const struct probe *p, int bar, uint64_t *len)
{
	char path[PATH_MAX + 16];
	struct stat st;
	void *m;
	int fd;

	snprintf(path, sizeof(path), "%s/resource%d", p->dir, bar);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0) {
		fail("cannot open %s: %s", path, fd < 0 ? strerror(errno) : "no size");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		fail("cannot mmap %s: %s", path, strerror(errno));
		return NULL;
	}
	*len = (uint64_t)st.st_size;
	return m;
}

static int open_probe(struct probe *p, const char *bdf, bool need_shm)
{
	uint64_t len;
	void *m;

	if (find_device(p, bdf) || ensure_enabled(p))
		return 1;
	m = map_bar(p, 0, &len);
	if (!m)
		return 1;
	if (len < BAR0_MIN_SIZE)
		return fail("BAR0 is %" PRIu64 " bytes, registers need %u", len, BAR0_MIN_SIZE);
	p->regs = m;
	p->regs_len = (size_t)len;
	if (!need_shm)
		return 0;
	m = map_bar(p, 2, &p->shm_len);
	if (!m)
		return 1;
	p->shm = m;
	return 0;
}

static void print_sysfs(const char *dir, const char *name, const char *key)
{
	char buf[64];

	if (read_sysfs(dir, name, buf, sizeof(buf)) == 0)
		printf("%s=%s", key, buf);
}

/* One BARn=start-end flags line per assigned BAR of the 'resource' file. */
static void print_bars(const char *dir)
{
	char buf[2048], *save = NULL;
	int bar = 0;

	if (read_sysfs(dir, "resource", buf, sizeof(buf)))
		return;
	for (char *l = strtok_r(buf, "\n", &save); l && bar < 6; l = strtok_r(NULL, "\n", &save)) {
		unsigned long long start, end, flags;

		if (sscanf(l, "%llx %llx %llx", &start, &end, &flags) == 3 && end)
			printf("BAR%d=0x%llx-0x%llx FLAGS=0x%llx\n", bar, start, end, flags);
		bar++;
	}
}

/* The PCI command register (config offset 4): did firmware enable memory decoding? */
static int print_command(const char *dir, const char *key)
{
	char path[PATH_MAX + 16];
	uint8_t cfg[6];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/config", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("cannot open %s: %s", path, strerror(errno));
	n = pread(fd, cfg, sizeof(cfg), 0);
	close(fd);
	if (n != (ssize_t)sizeof(cfg))
		return fail("short read of %s", path);
	printf("%s=0x%04x\n", key, cfg[4] | cfg[5] << 8);
	return 0;
}

static int cmd_info(const char *bdf)
{
	struct probe p = {0};
	const char *base;

	if (find_device(&p, bdf))
		return 1;
	base = strrchr(p.dir, '/') + 1;
	printf("BDF=%s\n", base);
	print_sysfs(p.dir, "enable", "ENABLE_BEFORE");
	if (print_command(p.dir, "COMMAND_BEFORE") || open_probe(&p, bdf, true))
		return 1;
	print_sysfs(p.dir, "enable", "ENABLE_AFTER");
	print_command(p.dir, "COMMAND_AFTER");
	print_bars(p.dir);
	printf("BAR0_SIZE=%zu\nBAR2_SIZE=%" PRIu64 "\n", p.regs_len, p.shm_len);
	return 0;
}

static int cmd_position(const char *bdf)
{
	struct probe p = {0};

	if (open_probe(&p, bdf, false))
		return 1;
	printf("IVPOSITION=%" PRId32 "\n", (int32_t)p.regs[REG_IVPOSITION]);
	return 0;
}

static int cmd_header(const char *bdf)
{
	struct probe p = {0};
	struct ivrdma_region r;
	const char *why = "";
	uint64_t magic;
	uint32_t version;
	int rc;

	if (open_probe(&p, bdf, true))
		return 1;
	memcpy(&magic, (const void *)p.shm, sizeof(magic));
	memcpy(&version, (const void *)(p.shm + 8), sizeof(version));
	/* The region view checks far more than magic and version: reuse it. */
	rc = ivrdma_region_open(&r, (void *)p.shm, p.shm_len, &why);
	printf("MAGIC=0x%016" PRIx64 " VERSION=%" PRIu32 " SIZE=%" PRIu64 " BAR2_SIZE=%" PRIu64
	       "\n",
	       magic, version, rc ? 0 : r.size, p.shm_len);
	if (rc) {
		printf("HEADER=bad\n");
		return fail("region header rejected: %s", why);
	}
	printf("HEADER=ok NODES=%" PRIu32 " PEERS=%" PRIu32 " CHUNKS=%" PRIu32
	       " CHUNK_SIZE=%" PRIu64 " VECTORS=%" PRIu32 "\n",
	       r.nodes.entries, r.max_peers, r.nr_chunks, ivrdma_chunk_size(&r), r.nr_vectors);
	return 0;
}

static int cmd_read(const char *bdf, const char *off_s, const char *len_s)
{
	struct probe p = {0};
	uint64_t off, len;

	if (!parse_u64(off_s, UINT64_MAX, &off) || !parse_u64(len_s, UINT64_MAX, &len) ||
	    len == 0) {
		fail("read: OFFSET and LEN must be unsigned integers, LEN > 0");
		return usage();
	}
	if (open_probe(&p, bdf, true))
		return 1;
	if (off > p.shm_len || len > p.shm_len - off)
		return fail("read: [%" PRIu64 ", +%" PRIu64 ") lies outside BAR2 (%" PRIu64
			    " bytes)",
			    off, len, p.shm_len);
	printf("OFFSET=%" PRIu64 " LEN=%" PRIu64 " SUM=%016" PRIx64 "\n", off, len,
	       guest_fnv1a64(GUEST_FNV1A64_INIT, p.shm + off, (size_t)len));
	return 0;
}

static int cmd_ring(const char *bdf, const char *peer_s, const char *vec_s)
{
	struct probe p = {0};
	uint64_t peer, vec;

	if (!parse_u64(peer_s, IVRDMA_MAX_PEERS - 1, &peer) ||
	    !parse_u64(vec_s, IVRDMA_MAX_VECTORS - 1, &vec)) {
		fail("ring: PEER must be 0..%u and VECTOR 0..%u", IVRDMA_MAX_PEERS - 1,
		     IVRDMA_MAX_VECTORS - 1);
		return usage();
	}
	if (open_probe(&p, bdf, false))
		return 1;
	p.regs[REG_DOORBELL] = (uint32_t)(peer << 16 | vec);
	printf("RANG peer=%" PRIu64 " vector=%" PRIu64 "\n", peer, vec);
	return 0;
}

static int dispatch(const char *bdf, int argc, char **argv)
{
	const char *cmd = argv[0];

	if (!strcmp(cmd, "info") && argc == 1)
		return cmd_info(bdf);
	if (!strcmp(cmd, "position") && argc == 1)
		return cmd_position(bdf);
	if (!strcmp(cmd, "header") && argc == 1)
		return cmd_header(bdf);
	if (!strcmp(cmd, "read") && argc == 3)
		return cmd_read(bdf, argv[1], argv[2]);
	if (!strcmp(cmd, "ring") && argc == 3)
		return cmd_ring(bdf, argv[1], argv[2]);
	fail("unknown command or wrong number of arguments: %s", cmd);
	return usage();
}

int main(int argc, char **argv)
{
	const char *bdf = NULL;
	int opt, rc;

	while ((opt = getopt(argc, argv, "+d:h")) != -1) {
		if (opt == 'd')
			bdf = optarg;
		else
			return usage();
	}
	if (optind >= argc)
		return usage();
	rc = dispatch(bdf, argc - optind, argv + optind);
	fflush(stdout);
	return rc;
}
