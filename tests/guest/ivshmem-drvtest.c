// SPDX-License-Identifier: MIT
/*
 * ivshmem-drvtest: the guest end of the driver tests, run inside a VM with
 * ivrdma_ivshmem.ko loaded. Static (the guest initramfs has no libc).
 *
 *   ivshmem-drvtest [-d DEV] attach
 *       attach through the transport's guest backend: IVPOSITION=,
 *       VECTORS=, and the memory type of BAR2's user mapping (PTE=,
 *       PAT_INDEX=, PHYS=)
 *   ivshmem-drvtest [-d DEV] basics OFF LEN WOFF WSEED PEER VEC WVEC WAIT_S [race]
 *       attach; SUM= of region bytes [OFF, OFF+LEN) read through the
 *       mapping and through a MAP_FIXED ivt_map_at() mapping of the same
 *       offset; write the pattern of WSEED at [WOFF, WOFF+LEN); ring PEER's
 *       vector VEC; wait up to WAIT_S s for my vector WVEC to ring (WOKE=);
 *       then, with "race", add 1 to the word at OFF while the host peer
 *       does too, until it says stop (struct guest_atomics; the host
 *       checks the sum)
 *   ivshmem-drvtest [-d DEV] badargs
 *       every ioctl and mmap with bad arguments fails cleanly
 *   ivshmem-drvtest [-d DEV] unbind BDF
 *       with BAR2 and BAR0 mapped, an eventfd bound and a completion
 *       channel open, unbind the device from the driver: module unload
 *       refused while open, then SIGBUS on access, ENODEV on ioctls, mmap
 *       and commands; the channel keeps working
 *   ivshmem-drvtest [-d DEV] cmddev
 *       the command device /dev/infiniband/ivrdma0: its info, every bad
 *       command, completion channels (records in order, non-blocking and
 *       blocking reads, poll, the bounded queue), event rules (a record
 *       per set bit when my own vector rings, none while the channel is
 *       full or after the cancel, every bad request)
 *
 * Exit status: 0 all checks passed, 1 a check failed, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/ib_user_verbs.h>
#include <rdma/rdma_user_ioctl_cmds.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "guest_checksum.h"
#include "ivrdma_ivshmem_uapi.h"
#include "ivshmem_transport.h"

#define PAGE 4096ul

static const char *dev_path = "/dev/ivshmem0";
static const char *cmd_path = "/dev/infiniband/ivrdma0";

/* An errno's name ("EINVAL"), or "0". */
static const char *errname(int e)
{
	const char *n = e ? strerrorname_np(e) : "0";

	return n ? n : "?";
}

static int usage(void)
{
	fputs("usage: ivshmem-drvtest [-d DEV] attach | basics OFF LEN WOFF WSEED PEER VEC WVEC "
	      "WAIT_S [race] | badargs | unbind BDF | cmddev\n",
	      stderr);
	return 2;
}

static uint64_t num(const char *s)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || !*s) {
		fprintf(stderr, "ivshmem-drvtest: not a number: %s\n", s);
		exit(2);
	}
	return v;
}

static struct ivt *attach(void)
{
	struct ivt_options o = {.backend = IVT_BACKEND_GUEST, .path = dev_path};
	struct ivt *t = NULL;
	char err[256] = "";
	int rc = ivt_attach(&o, &t, err, sizeof(err));

	REQUIRE(rc == 0, "attach to %s: %d %s", dev_path, rc, err);
	REQUIRE(!strcmp(ivt_backend_name(t), "guest"), "backend %s", ivt_backend_name(t));
	printf("IVPOSITION=%d VECTORS=%u SIZE=%" PRIu64 "\n", ivt_peer_id(t), ivt_nr_vectors(t),
	       ivt_region_size(t));
	return t;
}

/* The page-table entry behind addr, through the driver's diagnostics ioctl. */
static void print_pte(int fd, const volatile void *addr, const char *what)
{
	struct ivrdma_ivshmem_pte q = {.addr = (uintptr_t)addr};

	(void)*(const volatile uint8_t *)addr; /* fault it in */
	if (ioctl(fd, IVRDMA_IVSHMEM_IOC_PTE, &q) < 0) {
		CHECK(0, "PTE of %s: %s", what, strerror(errno));
		return;
	}
	printf("MAPPING=%s PTE=0x%016" PRIx64 " PAT_INDEX=%u PHYS=0x%" PRIx64 "\n", what,
	       (uint64_t)q.pte, q.pat_index, (uint64_t)q.phys);
}

static int cmd_attach(void)
{
	struct ivt *t = attach();
	int fd = open(dev_path, O_RDWR | O_CLOEXEC);
	struct ivrdma_ivshmem_info info;
	volatile uint32_t *regs;

	REQUIRE(fd >= 0, "open %s: %s", dev_path, strerror(errno));
	REQUIRE(ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, &info) == 0, "info: %s", strerror(errno));
	printf("BAR2_SIZE=%" PRIu64 " BAR0_SIZE=%" PRIu64 " MSIX_VECTORS=%u FLAGS=0x%x\n",
	       (uint64_t)info.bar2_size, (uint64_t)info.bar0_size, info.nr_vectors, info.flags);
	CHECK(info.ivposition == ivt_peer_id(t), "info %d vs transport %d", info.ivposition,
	      ivt_peer_id(t));
	/* The transport's own mapping of BAR2: what the provider will use. */
	print_pte(fd, ivt_region_base(t), "bar2");
	print_pte(fd, (uint8_t *)ivt_region_base(t) + ivt_region_size(t) - PAGE, "bar2-last");
	if (info.flags & IVRDMA_IVSHMEM_INFO_BAR0_MMAP) {
		regs = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			    (off_t)info.bar0_offset);
		REQUIRE(regs != MAP_FAILED, "mmap BAR0: %s", strerror(errno));
		CHECK((int32_t)regs[IVRDMA_IVSHMEM_REG_IVPOSITION / 4] == info.ivposition,
		      "IVPosition through the BAR0 mapping: %d", (int)regs[2]);
		print_pte(fd, regs, "bar0");
		munmap((void *)regs, PAGE);
	}
	close(fd);
	ivt_detach(t);
	return check_summary();
}

/*
 * Locked adds to a BAR2 word while the host peer adds to it too: the sum
 * comes out right only if the guest's locked instructions are atomic
 * against other processes on BAR2, which TCG guarantees only when it
 * generates parallel code (QEMU's maxcpus > 1, see vm_boot in vm-lib.sh).
 */
static void race_adds(uint8_t *area, int wait_s)
{
	struct guest_atomics *a = (struct guest_atomics *)area;
	time_t deadline = time(NULL) + wait_s;
	uint64_t n = 0;

	__atomic_store_n(&a->started, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
		__atomic_fetch_add(&a->counter, 1, __ATOMIC_SEQ_CST);
		REQUIRE(++n % 65536 || time(NULL) < deadline, "the host peer never said stop");
	}
	__atomic_store_n(&a->guest_adds, n, __ATOMIC_RELAXED);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	printf("ADDS guest=%" PRIu64 "\n", n);
}

/* ivt_map_at: the same bytes over an address of my choosing. */
static void check_map_at(struct ivt *t, uint64_t off, uint64_t len, uint64_t sum)
{
	size_t maplen = (len + PAGE - 1) & ~(PAGE - 1);
	uint8_t *fixed;
	int rc;

	fixed = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(fixed != MAP_FAILED, "anonymous mmap");
	memset(fixed, 0x5a, maplen);
	rc = ivt_map_at(t, fixed, off, maplen, PROT_READ | PROT_WRITE);
	CHECK(rc == 0, "ivt_map_at: %s", strerror(-rc));
	if (rc == 0)
		CHECK(guest_fnv1a64(GUEST_FNV1A64_INIT, fixed, len) == sum,
		      "MAP_FIXED mapping shows other bytes");
	printf("MAP_AT=%s\n", rc == 0 ? "ok" : "failed");
	munmap(fixed, maplen);
}

/* Woken on vector wvec: the interrupt counted, and the second file signalled too. */
static void check_woken(uint16_t wvec, int other_efd)
{
	int fd = open(dev_path, O_RDWR | O_CLOEXEC);
	struct ivrdma_ivshmem_vector_count c = {.vector = wvec};
	struct pollfd pfd = {.fd = other_efd, .events = POLLIN};
	uint64_t n = 0;

	CHECK(fd >= 0 && ioctl(fd, IVRDMA_IVSHMEM_IOC_VECTOR_COUNT, &c) == 0 && c.count >= 1,
	      "interrupt count of vector %u", wvec);
	printf("WOKE vector=%u interrupts=%" PRIu64 "\n", wvec, (uint64_t)c.count);
	close(fd);
	CHECK(poll(&pfd, 1, 0) == 1 && read(other_efd, &n, sizeof(n)) == sizeof(n) && n >= 1,
	      "the second file's eventfd was not signalled");
	printf("SECOND_FILE_WOKE=%s\n", n >= 1 ? "yes" : "no");
}

static int cmd_basics(char **a, bool race)
{
	uint64_t off = num(a[0]), len = num(a[1]), woff = num(a[2]), seed = num(a[3]);
	uint16_t peer = (uint16_t)num(a[4]), vec = (uint16_t)num(a[5]), wvec = (uint16_t)num(a[6]);
	int wait_s = (int)num(a[7]);
	struct ivt *t = attach();
	uint8_t *base = ivt_region_base(t);
	uint64_t fired = 0, sum, state = seed;
	int rc;

	REQUIRE(off % PAGE == 0 && off + len <= ivt_region_size(t) &&
		    woff + len <= ivt_region_size(t),
		"offsets inside the region");
	sum = guest_fnv1a64(GUEST_FNV1A64_INIT, base + off, len);
	printf("OFFSET=%" PRIu64 " LEN=%" PRIu64 " SUM=%016" PRIx64 "\n", off, len, sum);

	check_map_at(t, off, len, sum);
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = guest_pattern_next(&state);

		memcpy(base + woff + i, &v, len - i < 8 ? len - i : 8);
	}
	__atomic_thread_fence(__ATOMIC_RELEASE);
	printf("WROTE woff=%" PRIu64 " SUM=%016" PRIx64 "\n", woff,
	       guest_fnv1a64(GUEST_FNV1A64_INIT, base + woff, len));

	/*
	 * Another file binds the vector I wait on: every file's eventfd is
	 * signalled (each verbs process of a VM gets the VM's doorbells).
	 */
	int other = open(dev_path, O_RDWR | O_CLOEXEC);
	int other_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct ivrdma_ivshmem_irqfd other_irq = {.vector = wvec, .fd = other_efd};

	REQUIRE(other >= 0 && other_efd >= 0, "second open of %s", dev_path);
	REQUIRE(ioctl(other, IVRDMA_IVSHMEM_IOC_BIND, &other_irq) == 0,
		"second file binds vector %u: %s", wvec, strerror(errno));

	CHECK(ivt_peer_known(t, peer), "host peer %u not in the peer table", peer);
	rc = ivt_ring(t, peer, vec);
	REQUIRE(rc == 0, "ring peer %u vector %u: %s", peer, vec, strerror(-rc));
	printf("RANG peer=%u vector=%u\n", peer, vec);
	fflush(stdout);

	rc = ivt_wait(t, 1ull << wvec, wait_s * 1000, &fired);
	CHECK(rc == 1 && fired == 1ull << wvec, "wait for vector %u: rc %d fired 0x%" PRIx64, wvec,
	      rc, fired);
	if (rc == 1) {
		check_woken(wvec, other_efd);
		if (race)
			race_adds(base + off, wait_s);
	}
	close(other);
	close(other_efd);
	/* Peer notices: the host peer and I are in the table. */
	rc = ivt_process_control(t);
	CHECK(rc >= 0, "process_control: %d", rc);
	ivt_detach(t);
	return check_summary();
}

static int try_ioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? errno : 0;
}

#define EXPECT_ERR(call, err)                                                                      \
	do {                                                                                       \
		int got_ = (call);                                                                 \
		CHECK(got_ == (err), "%s: got %s, want %s", #call, errname(got_), errname(err));   \
	} while (0)

static int try_mmap(int fd, size_t len, int flags, uint64_t off)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, (off_t)off);

	if (p == MAP_FAILED)
		return errno;
	munmap(p, len);
	return 0;
}

static int cmd_badargs(void)
{
	int fd = open(dev_path, O_RDWR | O_CLOEXEC);
	int efd = eventfd(0, EFD_CLOEXEC);
	struct ivrdma_ivshmem_info info;
	struct ivrdma_ivshmem_doorbell db = {0};
	struct ivrdma_ivshmem_irqfd irq = {0};
	struct ivrdma_ivshmem_vector_count vc = {0};
	struct ivrdma_ivshmem_pte pte = {0};
	int stack_var = 0;

	REQUIRE(fd >= 0 && efd >= 0, "open %s: %s", dev_path, strerror(errno));
	REQUIRE(ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, &info) == 0, "info");
	printf("MSIX_VECTORS=%u BAR2_SIZE=%" PRIu64 "\n", info.nr_vectors,
	       (uint64_t)info.bar2_size);
	REQUIRE(info.nr_vectors >= 1, "the device has MSI-X vectors");

	EXPECT_ERR(try_ioctl(fd, _IO(IVRDMA_IVSHMEM_IOC_MAGIC, 0x7f), NULL), ENOTTY);
	EXPECT_ERR(try_ioctl(fd, _IOR('T', 0x00, struct ivrdma_ivshmem_info), &info), ENOTTY);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, NULL), EFAULT);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, (void *)8), EFAULT);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_RING, NULL), EFAULT);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, (void *)-4096l), EFAULT);

	/* Doorbells: vectors beyond the device's, reserved bits. */
	db.vector = (uint16_t)info.nr_vectors;
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_RING, &db), EINVAL);
	db.vector = 0xffff;
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_RING, &db), EINVAL);
	db = (struct ivrdma_ivshmem_doorbell){.peer = 0xffff, .vector = 0, .reserved = 1};
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_RING, &db), EINVAL);
	db.reserved = 0; /* an absent peer: QEMU drops it, fine */
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_RING, &db), 0);

	/* More vectors than the device has; bad eventfds; bad flags. */
	for (uint32_t v = 0; v < info.nr_vectors; v++) {
		irq = (struct ivrdma_ivshmem_irqfd){.vector = v, .fd = efd};
		EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), 0);
	}
	uint32_t bad_vectors[] = {info.nr_vectors, info.nr_vectors + 1, 64, 65,
				  0x10000,	   UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_vectors) / sizeof(bad_vectors[0]); i++) {
		irq = (struct ivrdma_ivshmem_irqfd){.vector = bad_vectors[i], .fd = efd};
		EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), EINVAL);
		EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_UNBIND, &irq), EINVAL);
		vc = (struct ivrdma_ivshmem_vector_count){.vector = bad_vectors[i]};
		EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_VECTOR_COUNT, &vc), EINVAL);
	}
	printf("VECTORS_BEYOND=%u..UINT32_MAX rejected\n", info.nr_vectors);
	irq = (struct ivrdma_ivshmem_irqfd){.vector = 0, .fd = -1};
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), EBADF);
	irq.fd = 1000;
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), EBADF);
	irq.fd = fd; /* not an eventfd */
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), EINVAL);
	irq = (struct ivrdma_ivshmem_irqfd){.vector = 0, .fd = efd, .flags = 1};
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), EINVAL);
	irq = (struct ivrdma_ivshmem_irqfd){.vector = 0, .fd = efd, .reserved = 1};
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), EINVAL);
	irq = (struct ivrdma_ivshmem_irqfd){.vector = 0};
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_UNBIND, &irq), 0);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_UNBIND, &irq), ENOENT);
	vc = (struct ivrdma_ivshmem_vector_count){.vector = 0, .reserved = 1};
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_VECTOR_COUNT, &vc), EINVAL);

	/* The diagnostics ioctl refuses addresses that are not ours. */
	pte.addr = (uintptr_t)&stack_var;
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_PTE, &pte), EINVAL);
	pte.addr = 0;
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_PTE, &pte), EINVAL);

	/* mmap: private, beyond BAR2, straddling its end, BAR0 too long, holes. */
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_PRIVATE, 0), EINVAL);
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_SHARED, info.bar2_size), EINVAL);
	EXPECT_ERR(try_mmap(fd, 2 * PAGE, MAP_SHARED, info.bar2_size - PAGE), EINVAL);
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_SHARED, info.bar2_size + PAGE), EINVAL);
	EXPECT_ERR(try_mmap(fd, 2 * PAGE, MAP_SHARED, info.bar0_offset), EINVAL);
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_SHARED, info.bar0_offset + PAGE), EINVAL);
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_SHARED, info.bar0_offset - PAGE), EINVAL);
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_SHARED, info.bar2_size - PAGE), 0);
	EXPECT_ERR(try_mmap(fd, (size_t)info.bar2_size, MAP_SHARED, 0), 0);

	/* A read-only open cannot map writable. */
	int ro = open(dev_path, O_RDONLY | O_CLOEXEC);

	REQUIRE(ro >= 0, "read-only open");
	EXPECT_ERR(try_mmap(ro, PAGE, MAP_SHARED, 0), EACCES);
	close(ro);

	/* Still healthy after all that. */
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, &info), 0);
	close(efd);
	close(fd);
	return check_summary();
}

/* ---- the command device ---- */

struct cc_cmd {
	struct ib_uverbs_cmd_hdr hdr;
	struct ib_uverbs_create_comp_channel cmd;
};

/* A CREATE_COMP_CHANNEL as libibverbs 44 writes it: 16 bytes, 4 words in, 1 out. */
static struct cc_cmd cc_cmd(struct ib_uverbs_create_comp_channel_resp *resp)
{
	struct cc_cmd c = {
	    .hdr = {.command = IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL,
		    .in_words = sizeof(struct cc_cmd) / 4,
		    .out_words = sizeof(*resp) / 4},
	    .cmd = {.response = (uintptr_t)resp},
	};
	return c;
}

static int try_write(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	if (n < 0)
		return errno;
	return n == (ssize_t)len ? 0 : -1;
}

static int new_channel(int cfd)
{
	struct ib_uverbs_create_comp_channel_resp resp = {.fd = UINT32_MAX};
	struct cc_cmd c = cc_cmd(&resp);
	int rc = try_write(cfd, &c, sizeof(c));

	CHECK(rc == 0, "CREATE_COMP_CHANNEL: %s", errname(rc));
	return rc == 0 ? (int)resp.fd : -1;
}

/* The lowest free fd: unchanged across a failed command means no fd leaked. */
static int lowest_free_fd(void)
{
	int fd = dup(0);

	close(fd);
	return fd;
}

static int post(int ch, uint64_t handle)
{
	struct ib_uverbs_comp_event_desc d = {.cq_handle = handle};

	return try_write(ch, &d, sizeof(d));
}

static uint64_t take(int ch)
{
	struct ib_uverbs_comp_event_desc d = {.cq_handle = UINT64_MAX};
	ssize_t n = read(ch, &d, sizeof(d));

	CHECK(n == sizeof(d), "read an event: %zd %s", n, n < 0 ? strerror(errno) : "");
	return d.cq_handle;
}

static void *blocked_reader(void *arg)
{
	uint64_t *out = arg;

	*out = take((int)*out);
	return NULL;
}

static void check_bad_commands(int cfd)
{
	struct ib_uverbs_create_comp_channel_resp resp;
	struct cc_cmd c;
	uint8_t verbs_hdr[64] = {0};
	int before = lowest_free_fd();

	/* Not our ioctls: libibverbs falls back to write() and sysfs on ENOTTY. */
	EXPECT_ERR(try_ioctl(cfd, RDMA_VERBS_IOCTL, verbs_hdr), ENOTTY);
	EXPECT_ERR(try_ioctl(cfd, _IO(IVRDMA_IVSHMEM_IOC_MAGIC, 0x7f), NULL), ENOTTY);
	EXPECT_ERR(try_ioctl(cfd, IVRDMA_IVSHMEM_IOC_INFO, verbs_hdr), ENOTTY);
	EXPECT_ERR(try_ioctl(cfd, IVRDMA_CMD_IOC_INFO, NULL), EFAULT);
	EXPECT_ERR(try_mmap(cfd, PAGE, MAP_SHARED, 0), ENODEV);
	EXPECT_ERR(read(cfd, verbs_hdr, sizeof(verbs_hdr)) < 0 ? errno : 0, EINVAL);

	c = cc_cmd(&resp);
	EXPECT_ERR(try_write(cfd, &c, 4), EINVAL);		       /* shorter than a header */
	c.hdr.command = 0x100 | IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL; /* bits beyond the mask */
	EXPECT_ERR(try_write(cfd, &c, sizeof(c)), EINVAL);
	uint32_t unknown[] = {IB_USER_VERBS_CMD_GET_CONTEXT,
			      IB_USER_VERBS_CMD_QUERY_DEVICE,
			      IB_USER_VERBS_CMD_CREATE_CQ,
			      IB_USER_VERBS_CMD_REG_MR,
			      IB_USER_VERBS_CMD_COMMAND_MASK,
			      IB_USER_VERBS_CMD_FLAG_EXTENDED | IB_USER_VERBS_EX_CMD_QUERY_DEVICE,
			      IB_USER_VERBS_CMD_FLAG_EXTENDED |
				  IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		c = cc_cmd(&resp);
		c.hdr.command = unknown[i];
		EXPECT_ERR(try_write(cfd, &c, sizeof(c)), EOPNOTSUPP);
	}
	c = cc_cmd(&resp);
	c.hdr.in_words = 3; /* says 12 bytes, 16 written */
	EXPECT_ERR(try_write(cfd, &c, sizeof(c)), EINVAL);
	c.hdr.in_words = 2; /* a header and no command */
	EXPECT_ERR(try_write(cfd, &c, 8), EINVAL);
	c = cc_cmd(&resp);
	c.hdr.out_words = 0; /* no room for the answer */
	EXPECT_ERR(try_write(cfd, &c, sizeof(c)), ENOSPC);
	c = cc_cmd(NULL); /* the answer cannot be written */
	EXPECT_ERR(try_write(cfd, &c, sizeof(c)), EFAULT);
	c.cmd.response = (uintptr_t)-4096l;
	EXPECT_ERR(try_write(cfd, &c, sizeof(c)), EFAULT);
	EXPECT_ERR(try_write(cfd, (void *)8, sizeof(c)), EFAULT);
	CHECK(lowest_free_fd() == before, "a failed command left an fd behind");
	printf("BAD_COMMANDS=rejected (ENOTTY, EINVAL, EOPNOTSUPP, ENOSPC, EFAULT)\n");
}

static void check_channel(int ch, unsigned int depth)
{
	struct pollfd pfd = {.fd = ch, .events = POLLIN | POLLOUT};
	int fl = fcntl(ch, F_GETFL), fdfl = fcntl(ch, F_GETFD);
	uint8_t small[8];
	struct ib_uverbs_comp_event_desc three[3] = {{1}, {2}, {3}};
	pthread_t reader;
	uint64_t got;

	CHECK((fl & O_ACCMODE) == O_RDWR, "channel fd is not read-write: 0x%x", fl);
	CHECK(fdfl & FD_CLOEXEC, "channel fd is not close-on-exec");

	/* Empty: not readable, writable; a non-blocking read says so. */
	CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLOUT, "empty channel polls 0x%x",
	      pfd.revents);
	fcntl(ch, F_SETFL, fl | O_NONBLOCK);
	EXPECT_ERR(read(ch, small, 8) < 0 ? errno : 0, EAGAIN);

	/* One record, whole records only, in order. */
	EXPECT_ERR(post(ch, 0x1122334455667788ull), 0);
	CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == (POLLIN | POLLOUT), "one event polls 0x%x",
	      pfd.revents);
	EXPECT_ERR(read(ch, small, 4) < 0 ? errno : 0, EINVAL);
	CHECK(take(ch) == 0x1122334455667788ull, "the record read is not the one written");
	EXPECT_ERR(try_write(ch, three, 7), EINVAL);
	EXPECT_ERR(try_write(ch, three, 12), EINVAL);
	EXPECT_ERR(try_write(ch, (void *)8, 8), EFAULT);
	EXPECT_ERR(try_write(ch, three, sizeof(three)), 0);
	for (uint64_t i = 1; i <= 3; i++)
		CHECK(take(ch) == i, "record %" PRIu64 " out of order", i);

	/* Bounded: depth records fit, one more is EAGAIN, reading makes room. */
	for (unsigned int i = 0; i < depth; i++) {
		int rc = post(ch, 1000 + i);

		if (rc) {
			CHECK(0, "record %u of %u: %s", i, depth, errname(rc));
			break;
		}
	}
	EXPECT_ERR(post(ch, 1), EAGAIN);
	pfd.revents = 0;
	CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLIN, "full channel polls 0x%x",
	      pfd.revents);
	CHECK(take(ch) == 1000, "first record of a full queue");
	EXPECT_ERR(post(ch, 1000 + depth), 0);
	for (unsigned int i = 1; i <= depth; i++)
		if (take(ch) != 1000 + i) {
			CHECK(0, "record %u of a full queue out of order", i);
			break;
		}
	EXPECT_ERR(read(ch, small, 8) < 0 ? errno : 0, EAGAIN);
	printf("CHANNEL_QUEUE=%u records then EAGAIN, FIFO\n", depth);

	/* Blocking: a reader sleeps until a record arrives. */
	fcntl(ch, F_SETFL, fl & ~O_NONBLOCK);
	got = (uint64_t)ch;
	REQUIRE(pthread_create(&reader, NULL, blocked_reader, &got) == 0, "thread");
	EXPECT_ERR(post(ch, 42), 0);
	pthread_join(reader, NULL);
	CHECK(got == 42, "the blocked reader got %" PRIu64, got);
	printf("BLOCKING_READ=woken with the record\n");
}

/* The fixture of the event-rule checks: a word of BAR2, my vector, a channel. */
struct rule_fixture {
	int cfd, dev, efd, ch;
	uint32_t *word;
	uint16_t me, vector;
	uint64_t word_off;
	unsigned int depth;
};

static int add_rule(const struct rule_fixture *f, uint64_t off, uint32_t mask, uint32_t vector,
		    int ch, uint32_t *id)
{
	struct ivrdma_cmd_event_rule r = {.offset = off,
					  .cq_handle = 0xc0ffee00ull + vector,
					  .channel_fd = ch,
					  .mask = mask,
					  .vector = vector};
	int rc = try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE, &r);

	if (id)
		*id = r.id;
	return rc;
}

/* Rings my own vector and waits for its eventfd: the rules of it have run by then. */
static void ring_self(const struct rule_fixture *f)
{
	struct ivrdma_ivshmem_doorbell db = {.peer = f->me, .vector = f->vector};
	struct pollfd pfd = {.fd = f->efd, .events = POLLIN};
	uint64_t n;

	CHECK(try_ioctl(f->dev, IVRDMA_IVSHMEM_IOC_RING, &db) == 0, "ring myself");
	CHECK(poll(&pfd, 1, 5000) == 1 && read(f->efd, &n, sizeof(n)) == sizeof(n),
	      "my vector %u did not fire", f->vector);
}

static void check_bad_rules(const struct rule_fixture *f)
{
	struct ivrdma_cmd_event_rule r = {.offset = f->word_off, .mask = 8, .channel_fd = f->ch};
	uint32_t id = 0;

	EXPECT_ERR(add_rule(f, f->word_off + 2, 8, f->vector, f->ch, NULL), EINVAL);
	EXPECT_ERR(add_rule(f, f->word_off + 4, 8, f->vector, f->ch, NULL), EINVAL); /* past BAR2 */
	EXPECT_ERR(add_rule(f, 1ull << 62, 8, f->vector, f->ch, NULL), EINVAL);
	EXPECT_ERR(add_rule(f, f->word_off, 0, f->vector, f->ch, NULL), EINVAL);
	EXPECT_ERR(add_rule(f, f->word_off, 8, 64, f->ch, NULL), EINVAL);
	EXPECT_ERR(add_rule(f, f->word_off, 8, f->vector, f->efd, NULL), EBADF); /* an eventfd */
	EXPECT_ERR(add_rule(f, f->word_off, 8, f->vector, -1, NULL), EBADF);
	EXPECT_ERR(add_rule(f, f->word_off, 8, f->vector, f->cfd, NULL), EBADF);
	r.reserved[1] = 1;
	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE, &r), EINVAL);
	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE, NULL), EFAULT);
	id = 0x7fffffff;
	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE_CANCEL, &id), ENOENT);
	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE_CANCEL, NULL), EFAULT);
	printf("BAD_RULES=rejected (EINVAL, EBADF, EFAULT, ENOENT)\n");

	/* Posting by channel id is ivrdma_host's alone: a guest's channels have none. */
	struct ivrdma_cmd_channel_post post = {.channel_id = IVRDMA_CHANNEL_ID_KERNEL | 1};
	uint64_t chan_id = 0;

	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_CHANNEL_POST, &post), EOPNOTSUPP);
	EXPECT_ERR(try_ioctl(f->ch, IVRDMA_CHAN_IOC_ID, &chan_id), EOPNOTSUPP);
	EXPECT_ERR(try_ioctl(f->ch, IVRDMA_CMD_IOC_INFO, &chan_id), ENOTTY);
}

/*
 * A rule fires once per set bit: the record reaches the channel, the bit
 * goes and the word's other bits stay; no record while the bit is clear
 * or the channel full (the bit then stays for later); none once cancelled.
 */
static void check_rule_fires(struct rule_fixture *f)
{
	uint32_t id = 0;
	uint8_t buf[16];

	EXPECT_ERR(add_rule(f, f->word_off, 8, f->vector, f->ch, &id), 0);
	CHECK(id >= 1, "rule id %u", id);
	__atomic_store_n(f->word, 0x8 | 0x1, __ATOMIC_SEQ_CST);
	ring_self(f);
	CHECK(take(f->ch) == 0xc0ffee00ull + f->vector, "the rule's record");
	CHECK(__atomic_load_n(f->word, __ATOMIC_SEQ_CST) == 0x1, "word 0x%x after the rule",
	      *f->word);
	ring_self(f); /* bit clear: nothing */
	EXPECT_ERR(read(f->ch, buf, 8) < 0 ? errno : 0, EAGAIN);

	for (unsigned int i = 0; i < f->depth; i++)
		post(f->ch, i);
	__atomic_store_n(f->word, 0x8, __ATOMIC_SEQ_CST);
	ring_self(f); /* full: the bit stays */
	CHECK(__atomic_load_n(f->word, __ATOMIC_SEQ_CST) == 0x8, "a full channel took the bit");
	for (unsigned int i = 0; i < f->depth; i++)
		take(f->ch);
	ring_self(f); /* room again: the bit's event comes */
	CHECK(take(f->ch) == 0xc0ffee00ull + f->vector, "the record after room was made");

	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE_CANCEL, &id), 0);
	EXPECT_ERR(try_ioctl(f->cfd, IVRDMA_CMD_IOC_EVENT_RULE_CANCEL, &id), ENOENT);
	__atomic_store_n(f->word, 0x8, __ATOMIC_SEQ_CST);
	ring_self(f);
	EXPECT_ERR(read(f->ch, buf, 8) < 0 ? errno : 0, EAGAIN);
	CHECK(__atomic_load_n(f->word, __ATOMIC_SEQ_CST) == 0x8, "a cancelled rule took the bit");
	printf("EVENT_RULE=fired once per bit, held while full, silent once cancelled\n");
}

/*
 * A rule outlives its channel's fd (it holds the channel) and ends with
 * its command file: ringing then touches nothing.
 */
static void check_rule_lifetime(struct rule_fixture *f)
{
	int cfd2 = open(cmd_path, O_RDWR | O_CLOEXEC), ch2;
	struct rule_fixture g = *f;

	REQUIRE(cfd2 >= 0, "second open of %s", cmd_path);
	g.cfd = cfd2;
	ch2 = new_channel(cfd2);
	REQUIRE(ch2 >= 0, "a second channel");
	EXPECT_ERR(add_rule(&g, f->word_off, 8, f->vector, ch2, NULL), 0);
	close(ch2);
	__atomic_store_n(f->word, 0x8, __ATOMIC_SEQ_CST);
	ring_self(f); /* into the closed fd's channel, which the rule keeps */
	CHECK(__atomic_load_n(f->word, __ATOMIC_SEQ_CST) == 0, "the rule of a closed fd");
	close(cfd2);
	__atomic_store_n(f->word, 0x8, __ATOMIC_SEQ_CST);
	ring_self(f);
	CHECK(__atomic_load_n(f->word, __ATOMIC_SEQ_CST) == 0x8, "a closed file's rule fired");
	printf("RULE_LIFETIME=kept its channel, ended with its file\n");
}

/* IVRDMA_CMD_IOC_EVENT_RULE on the last word of BAR2, which the region leaves unused here. */
static void check_event_rules(int cfd, unsigned int depth)
{
	struct rule_fixture f = {.cfd = cfd, .depth = depth};
	struct ivrdma_ivshmem_info info;
	struct ivrdma_ivshmem_irqfd irq = {0};
	uint8_t *page;
	uint32_t saved;

	f.dev = open(dev_path, O_RDWR | O_CLOEXEC);
	REQUIRE(f.dev >= 0 && ioctl(f.dev, IVRDMA_IVSHMEM_IOC_INFO, &info) == 0, "info of %s",
		dev_path);
	REQUIRE(info.ivposition >= 0 && info.nr_vectors >= 1, "a peer ID and a vector");
	page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f.dev,
		    (off_t)(info.bar2_size - PAGE));
	REQUIRE(page != MAP_FAILED, "map BAR2's last page: %s", strerror(errno));
	f.word = (uint32_t *)(page + PAGE - 4);
	f.word_off = info.bar2_size - 4;
	f.me = (uint16_t)info.ivposition;
	f.vector = (uint16_t)(info.nr_vectors - 1);
	f.efd = eventfd(0, EFD_CLOEXEC);
	irq = (struct ivrdma_ivshmem_irqfd){.vector = f.vector, .fd = f.efd};
	REQUIRE(f.efd >= 0 && ioctl(f.dev, IVRDMA_IVSHMEM_IOC_BIND, &irq) == 0, "bind vector %u",
		f.vector);
	f.ch = new_channel(cfd);
	REQUIRE(f.ch >= 0, "a channel");
	fcntl(f.ch, F_SETFL, fcntl(f.ch, F_GETFL) | O_NONBLOCK);
	saved = *f.word;

	check_bad_rules(&f);
	check_rule_fires(&f);
	check_rule_lifetime(&f);

	*f.word = saved;
	close(f.ch);
	close(f.efd);
	munmap(page, PAGE);
	close(f.dev);
}

static int cmd_cmddev(void)
{
	int cfd = open(cmd_path, O_RDWR | O_CLOEXEC);
	struct ivrdma_cmd_info info = {0};
	struct stat cst, dst;
	int ch, chans[64];

	REQUIRE(cfd >= 0, "open %s: %s", cmd_path, strerror(errno));
	REQUIRE(fstat(cfd, &cst) == 0 && S_ISCHR(cst.st_mode), "%s is a character device",
		cmd_path);
	REQUIRE(stat(dev_path, &dst) == 0, "stat %s", dev_path);
	REQUIRE(ioctl(cfd, IVRDMA_CMD_IOC_INFO, &info) == 0, "IVRDMA_CMD_IOC_INFO: %s",
		strerror(errno));
	CHECK(info.abi_version == IVRDMA_IVSHMEM_ABI_VERSION, "ABI %u", info.abi_version);
	CHECK(info.index == 0, "index %u", info.index);
	CHECK(makedev(info.ivshmem_major, info.ivshmem_minor) == dst.st_rdev,
	      "ivshmem device %u:%u, %s is %u:%u", info.ivshmem_major, info.ivshmem_minor, dev_path,
	      major(dst.st_rdev), minor(dst.st_rdev));
	printf("CMDDEV=%u:%u MODE=%04o IVSHMEM=%u:%u INDEX=%u CHANNEL_DEPTH=%u\n",
	       major(cst.st_rdev), minor(cst.st_rdev), cst.st_mode & 07777, info.ivshmem_major,
	       info.ivshmem_minor, info.index, info.channel_depth);
	REQUIRE(info.channel_depth >= 1 && info.channel_depth <= 65536, "channel depth");

	check_bad_commands(cfd);
	ch = new_channel(cfd);
	REQUIRE(ch >= 0, "a channel");
	check_channel(ch, info.channel_depth);
	close(ch);
	check_event_rules(cfd, info.channel_depth);

	/* Channels are independent files; closing them frees them. */
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 64; i++) {
			chans[i] = new_channel(cfd);
			if (chans[i] >= 0)
				EXPECT_ERR(post(chans[i], (uint64_t)i), 0);
		}
		for (int i = 0; i < 64; i++) {
			if (chans[i] >= 0 && take(chans[i]) != (uint64_t)i)
				CHECK(0, "channel %d got another channel's record", i);
			close(chans[i]);
		}
	}
	printf("CHANNELS=256 made, used and closed\n");
	close(cfd);
	return check_summary();
}

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_signal;

static void on_bus(int sig)
{
	bus_signal = sig;
	siglongjmp(bus_jmp, 1);
}

/* Reads one byte; returns the signal it raised (0: none). */
static int touch(const volatile uint8_t *p)
{
	bus_signal = 0;
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)*p;
	return bus_signal;
}

static int write_sysfs(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return errno;
	n = write(fd, value, strlen(value));
	close(fd);
	return n < 0 ? errno : 0;
}

static int cmd_unbind(const char *bdf)
{
	int fd = open(dev_path, O_RDWR | O_CLOEXEC);
	int efd = eventfd(0, EFD_CLOEXEC);
	struct ivrdma_ivshmem_info info;
	struct ivrdma_ivshmem_irqfd irq = {.vector = 0};
	struct ivrdma_ivshmem_doorbell db = {0};
	volatile uint8_t *shm, *regs = NULL;
	struct sigaction sa = {.sa_handler = on_bus};
	int rc;

	int cfd = open(cmd_path, O_RDWR | O_CLOEXEC), ch;
	struct ivrdma_cmd_info cinfo;
	struct ib_uverbs_create_comp_channel_resp resp;
	struct cc_cmd cc = cc_cmd(&resp);

	REQUIRE(fd >= 0 && efd >= 0, "open %s: %s", dev_path, strerror(errno));
	REQUIRE(cfd >= 0, "open %s: %s", cmd_path, strerror(errno));
	ch = new_channel(cfd);
	REQUIRE(ch >= 0, "a completion channel");
	REQUIRE(ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, &info) == 0, "info");
	shm = mmap(NULL, (size_t)info.bar2_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	REQUIRE(shm != MAP_FAILED, "mmap BAR2: %s", strerror(errno));
	if (info.flags & IVRDMA_IVSHMEM_INFO_BAR0_MMAP) {
		regs = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			    (off_t)info.bar0_offset);
		REQUIRE(regs != MAP_FAILED, "mmap BAR0: %s", strerror(errno));
	}
	irq.fd = efd;
	REQUIRE(ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq) == 0, "bind");
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	CHECK(touch(shm) == 0 && touch(shm + info.bar2_size - 1) == 0, "BAR2 readable");
	if (regs)
		CHECK(touch(regs) == 0, "BAR0 readable");

	/* Open files pin the module. */
	rc = syscall(SYS_delete_module, "ivrdma_ivshmem", O_NONBLOCK) < 0 ? errno : 0;
	CHECK(rc == EWOULDBLOCK || rc == EBUSY, "module unload while open: %s", errname(rc));
	printf("RMMOD_WHILE_OPEN=%s\n", errname(rc));

	rc = write_sysfs("/sys/bus/pci/drivers/ivrdma_ivshmem/unbind", bdf);
	REQUIRE(rc == 0, "unbind %s: %s", bdf, strerror(rc));
	printf("UNBOUND=%s\n", bdf);
	CHECK(access(dev_path, F_OK) != 0, "%s still exists after unbind", dev_path);

	/* A sleeper on a bound eventfd was woken by the removal. */
	struct pollfd pfd = {.fd = efd, .events = POLLIN};

	CHECK(poll(&pfd, 1, 0) == 1, "the bound eventfd was not signalled by the unbind");
	printf("EVENTFD_AFTER_UNBIND=%s\n", pfd.revents & POLLIN ? "signalled" : "silent");

	rc = touch(shm);
	CHECK(rc == SIGBUS, "BAR2 access after unbind: signal %d", rc);
	printf("BAR2_ACCESS_AFTER_UNBIND=%s\n", rc == SIGBUS ? "SIGBUS" : strsignal(rc));
	rc = touch(shm + info.bar2_size / 2);
	CHECK(rc == SIGBUS, "BAR2 middle after unbind: signal %d", rc);
	if (regs) {
		rc = touch(regs);
		CHECK(rc == SIGBUS, "BAR0 access after unbind: signal %d", rc);
	}
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, &info), ENODEV);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_RING, &db), ENODEV);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_BIND, &irq), ENODEV);
	EXPECT_ERR(try_ioctl(fd, IVRDMA_IVSHMEM_IOC_UNBIND, &irq), ENODEV);
	EXPECT_ERR(try_mmap(fd, PAGE, MAP_SHARED, 0), ENODEV);
	EXPECT_ERR(try_ioctl(fd, 0x1234, NULL), ENOTTY);
	printf("IOCTL_AFTER_UNBIND=ENODEV\n");

	/* The command device refuses; the channel made before still works. */
	CHECK(access(cmd_path, F_OK) != 0, "%s still exists after unbind", cmd_path);
	EXPECT_ERR(try_ioctl(cfd, IVRDMA_CMD_IOC_INFO, &cinfo), ENODEV);
	EXPECT_ERR(try_write(cfd, &cc, sizeof(cc)), ENODEV);
	EXPECT_ERR(post(ch, 77), 0);
	CHECK(take(ch) == 77, "channel after unbind");
	printf("COMMANDS_AFTER_UNBIND=ENODEV CHANNEL_AFTER_UNBIND=works\n");
	close(ch);
	close(cfd);

	munmap((void *)shm, (size_t)info.bar2_size);
	if (regs)
		munmap((void *)regs, PAGE);
	close(fd);
	close(efd);

	/* Bind it back: the device works again. */
	rc = write_sysfs("/sys/bus/pci/drivers/ivrdma_ivshmem/bind", bdf);
	REQUIRE(rc == 0, "bind %s again: %s", bdf, strerror(rc));
	fd = open(dev_path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0, "open %s after rebind: %s", dev_path, strerror(errno));
	CHECK(ioctl(fd, IVRDMA_IVSHMEM_IOC_INFO, &info) == 0, "info after rebind");
	shm = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(shm != MAP_FAILED && touch(shm) == 0, "BAR2 after rebind");
	printf("REBOUND IVPOSITION=%d\n", info.ivposition);
	close(fd);
	cfd = open(cmd_path, O_RDWR | O_CLOEXEC);
	CHECK(cfd >= 0 && ioctl(cfd, IVRDMA_CMD_IOC_INFO, &cinfo) == 0,
	      "command device after rebind: %s", strerror(errno));
	if (cfd >= 0) {
		ch = new_channel(cfd);
		CHECK(ch >= 0 && post(ch, 5) == 0 && take(ch) == 5, "channel after rebind");
		close(ch);
		close(cfd);
	}
	return check_summary();
}

int main(int argc, char **argv)
{
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "+d:")) != -1) {
		if (opt == 'd')
			dev_path = optarg;
		else
			return usage();
	}
	argc -= optind;
	argv += optind;
	if (argc == 1 && !strcmp(argv[0], "attach"))
		return cmd_attach();
	if ((argc == 9 || argc == 10) && !strcmp(argv[0], "basics"))
		return cmd_basics(argv + 1, argc == 10 && !strcmp(argv[9], "race"));
	if (argc == 1 && !strcmp(argv[0], "badargs"))
		return cmd_badargs();
	if (argc == 2 && !strcmp(argv[0], "unbind"))
		return cmd_unbind(argv[1]);
	if (argc == 1 && !strcmp(argv[0], "cmddev"))
		return cmd_cmddev();
	return usage();
}
