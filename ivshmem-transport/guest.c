// SPDX-License-Identifier: MIT
/*
 * Guest backend: the uio-driver's device node in a VM (/dev/ivshmemN of
 * ivrdma_ivshmem.ko). BAR2 is the region, IVPosition my peer ID, my MSI-X
 * vectors arrive on eventfds bound through the driver, doorbells go out
 * through its ring ioctl.
 *
 * A guest gets no protocol messages: which peers exist is read from the
 * region's peer table (state ACTIVE), and ivrdmad rings everyone's control
 * vector (IVRDMA_VEC_CONTROL) when the table changes. So ivt_control_fd()
 * is my control vector's eventfd, and ivt_process_control() drains it and
 * compares the table with what it saw last time. The comparison, not the
 * count, decides: a control doorbell consumed by ivt_wait() loses nothing
 * as long as ivt_process_control() is called afterwards.
 *
 * No threads, no allocation beyond attach, nothing but system calls:
 * static-linkable for a libc-less guest initramfs.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ivrdma_ivshmem_uapi.h"
#include "region.h"
#include "shm_atomic.h"
#include "transport_internal.h"
#include "sys_mm.h"

/* What ivt_process_control() last saw of a peer table entry. */
struct guest_seen {
	uint16_t gen;
	bool active;
};

struct guest_priv {
	int fd;
	struct ivrdma_region region;
	struct guest_seen seen[IVRDMA_MAX_PEERS];
};

static void notify(struct ivt *t, uint16_t peer, enum ivt_peer_event ev)
{
	if (t->on_peer)
		t->on_peer(t->cb_arg, peer, ev);
}

/* Whether peer table entry 'peer' is active now, and its generation. */
static bool peer_active(const struct guest_priv *g, uint16_t peer, uint16_t *gen)
{
	struct ivrdma_peer *p = ivrdma_region_peer(&g->region, peer);

	if (!p || peer >= g->region.max_peers ||
	    shm_load_acquire32(&p->state) != IVRDMA_PEER_ACTIVE)
		return false;
	if (gen)
		*gen = shm_load_relaxed16(&p->gen);
	return true;
}

/* Compares the peer table with the last scan; returns the notices given. */
static int scan_peers(struct ivt *t)
{
	struct guest_priv *g = t->priv;
	int handled = 0;

	for (uint32_t i = 0; i < g->region.max_peers && i < IVRDMA_MAX_PEERS; i++) {
		struct guest_seen *s = &g->seen[i];
		uint16_t id = (uint16_t)i, gen = 0;
		bool active = peer_active(g, id, &gen);

		if ((int)i == t->peer_id || (active == s->active && (!active || gen == s->gen)))
			continue;
		if (s->active) {
			s->active = false;
			notify(t, id, IVT_PEER_LEFT);
			handled++;
		}
		if (active) {
			s->active = true;
			s->gen = gen;
			notify(t, id, IVT_PEER_JOINED);
			handled++;
		}
	}
	return handled;
}

static int map_region(struct ivt *t, const struct ivrdma_ivshmem_info *info, char *err,
		      size_t errlen)
{
	struct guest_priv *g = t->priv;
	const char *why = "";
	void *base;
	int rc;

	if (info->bar2_size < IVRDMA_MIN_REGION_SIZE || info->bar2_size > SIZE_MAX)
		return ivt_fail(err, errlen, -EPROTO, "BAR2 is %llu bytes: too small for a region",
				(unsigned long long)info->bar2_size);
	base = mmap(NULL, (size_t)info->bar2_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	if (base == MAP_FAILED)
		return ivt_fail(err, errlen, -errno, "mmap of BAR2: %s", strerror(errno));
	t->base = base;
	t->size = info->bar2_size;
	rc = ivrdma_region_open(&g->region, base, info->bar2_size, &why);
	if (rc)
		return ivt_fail(err, errlen, rc, "region rejected: %s", why);
	t->nr_vectors = g->region.nr_vectors;
	return 0;
}

static int bind_vectors(struct ivt *t, unsigned int device_vectors, char *err, size_t errlen)
{
	struct guest_priv *g = t->priv;

	if (t->nr_vectors > device_vectors)
		return ivt_fail(err, errlen, -ENXIO,
				"the region uses %u vectors, the device has %u MSI-X vectors",
				t->nr_vectors, device_vectors);
	for (unsigned int v = 0; v < t->nr_vectors; v++) {
		struct ivrdma_ivshmem_irqfd req = {.vector = v};
		int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

		if (efd < 0)
			return ivt_fail(err, errlen, -errno, "eventfd: %s", strerror(errno));
		t->vector_fds[v] = efd;
		req.fd = efd;
		if (ioctl(g->fd, IVRDMA_IVSHMEM_IOC_BIND, &req) < 0)
			return ivt_fail(err, errlen, -errno, "binding vector %u: %s", v,
					strerror(errno));
	}
	t->control_fd = t->vector_fds[IVRDMA_VEC_CONTROL];
	return 0;
}

static void guest_detach(struct ivt *t);

static int guest_attach(struct ivt *t, const struct ivt_options *opts, char *err, size_t errlen)
{
	struct ivrdma_ivshmem_info info;
	struct guest_priv *g = calloc(1, sizeof(*g));
	struct stat st;
	int rc;

	if (!g)
		return ivt_fail(err, errlen, -ENOMEM, "out of memory");
	t->priv = g;
	g->fd = -1;
	/* Not a device node (e.g. ivrdmad's socket): no guest backend here. */
	if (stat(opts->path, &st) == 0 && !S_ISCHR(st.st_mode)) {
		rc = ivt_fail(err, errlen, -EOPNOTSUPP,
			      "%s is not a device node: the guest backend needs ivrdma_ivshmem's",
			      opts->path);
		goto fail;
	}
	g->fd = open(opts->path, O_RDWR | O_CLOEXEC);
	if (g->fd < 0) {
		rc = ivt_fail(err, errlen, -errno, "cannot open %s: %s", opts->path,
			      strerror(errno));
		goto fail;
	}
	if (ioctl(g->fd, IVRDMA_IVSHMEM_IOC_INFO, &info) < 0) {
		rc = ivt_fail(err, errlen, errno == ENOTTY ? -EOPNOTSUPP : -errno,
			      "%s: not an ivrdma_ivshmem device: %s", opts->path, strerror(errno));
		goto fail;
	}
	if (info.abi_version != IVRDMA_IVSHMEM_ABI_VERSION) {
		rc = ivt_fail(err, errlen, -EPROTO, "driver ABI %u, expected %u", info.abi_version,
			      IVRDMA_IVSHMEM_ABI_VERSION);
		goto fail;
	}
	rc = map_region(t, &info, err, errlen);
	if (rc)
		goto fail;
	if (info.ivposition < 0 || (uint32_t)info.ivposition >= g->region.max_peers) {
		rc = ivt_fail(err, errlen, -EPROTO, "IVPosition %d is not a peer ID of the region",
			      info.ivposition);
		goto fail;
	}
	t->peer_id = info.ivposition;
	rc = bind_vectors(t, info.nr_vectors, err, errlen);
	if (rc)
		goto fail;
	scan_peers(t);
	return 0;
fail:
	guest_detach(t);
	return rc;
}

static void guest_detach(struct ivt *t)
{
	struct guest_priv *g = t->priv;

	if (!g)
		return;
	if (t->base)
		munmap(t->base, t->size);
	t->base = NULL;
	/* Closing the device drops its bindings; the eventfds go after it. */
	if (g->fd >= 0)
		close(g->fd);
	for (unsigned int v = 0; v < IVRDMA_MAX_VECTORS; v++) {
		if (t->vector_fds[v] >= 0)
			close(t->vector_fds[v]);
		t->vector_fds[v] = -1;
	}
	t->control_fd = -1;
	free(g);
	t->priv = NULL;
}

static int guest_map_at(struct ivt *t, void *addr, uint64_t offset, size_t len, int prot)
{
	struct guest_priv *g = t->priv;
	void *p = ivrdma_sys_mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, g->fd, (off_t)offset);

	return p == MAP_FAILED ? -errno : 0;
}

/* The handle is the device's fd: the hold is the driver's (IOC_HOLD). */
/*
 * Once the hold is on, nothing on the heap may be touched: 'g' itself may
 * sit in the held pages (the heap around a registered buffer), and a fault
 * there would wait for this very hold. So the fd is read before.
 */
static int guest_hold_pages(struct ivt *t, void *addr, size_t len)
{
	const struct guest_priv *g = t->priv;
	struct ivrdma_ivshmem_hold req = {.addr = (uintptr_t)addr, .len = len};
	int fd = g->fd;

	if (ioctl(fd, IVRDMA_IVSHMEM_IOC_HOLD, &req) < 0)
		return errno == ENOTTY ? -EOPNOTSUPP : -errno; /* ENOTTY: an older driver */
	return fd;
}

void ivt_release_pages(int handle)
{
	ioctl(handle, IVRDMA_IVSHMEM_IOC_RELEASE);
}

static bool guest_peer_known(struct ivt *t, uint16_t peer)
{
	return peer_active(t->priv, peer, NULL);
}

static int guest_ring(struct ivt *t, uint16_t peer, uint16_t vector)
{
	struct guest_priv *g = t->priv;
	struct ivrdma_ivshmem_doorbell db = {.peer = peer, .vector = vector};

	if (!peer_active(g, peer, NULL))
		return -ENOENT;
	return ioctl(g->fd, IVRDMA_IVSHMEM_IOC_RING, &db) < 0 ? -errno : 0;
}

static int guest_process_control(struct ivt *t)
{
	struct guest_priv *g = t->priv;
	struct ivrdma_ivshmem_info info;
	uint64_t count;

	/* The device gone (unbound, unplugged) is the server gone. */
	if (ioctl(g->fd, IVRDMA_IVSHMEM_IOC_INFO, &info) < 0)
		return errno == ENODEV ? -ECONNRESET : -errno;
	while (read(t->control_fd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	return scan_peers(t);
}

int ivt_guest_cmd_device(int fd, char *path, size_t len, char *err, size_t errlen)
{
	struct ivrdma_cmd_info info;
	struct stat st;

	if (ioctl(fd, IVRDMA_CMD_IOC_INFO, &info) < 0) {
		if (errno == ENOTTY || errno == EINVAL || errno == EBADF)
			return IVT_CMD_OTHER;
		return ivt_fail(err, errlen, -errno, "the command device: %s", strerror(errno));
	}
	if (info.abi_version != IVRDMA_IVSHMEM_ABI_VERSION)
		return ivt_fail(err, errlen, -EPROTO, "driver ABI %u, expected %u",
				info.abi_version, IVRDMA_IVSHMEM_ABI_VERSION);
	if (info.flags & IVRDMA_CMD_INFO_HOST)
		return IVT_CMD_HOST;
	if (snprintf(path, len, "/dev/ivshmem%u", info.index) >= (int)len)
		return ivt_fail(err, errlen, -ENAMETOOLONG, "path buffer too small");
	if (stat(path, &st) < 0)
		return ivt_fail(err, errlen, -errno, "%s: %s", path, strerror(errno));
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(info.ivshmem_major, info.ivshmem_minor))
		return ivt_fail(err, errlen, -ENODEV,
				"%s is not the device behind the command device (%u:%u)", path,
				info.ivshmem_major, info.ivshmem_minor);
	return IVT_CMD_GUEST;
}

int ivt_guest_on_release(int fd, uint64_t offset, uint32_t expect, uint32_t value)
{
	struct ivrdma_cmd_on_release req = {.offset = offset, .expect = expect, .value = value};

	return ioctl(fd, IVRDMA_CMD_IOC_ON_RELEASE, &req) < 0 ? -errno : 0;
}

int ivt_guest_on_release_cancel(int fd)
{
	return ioctl(fd, IVRDMA_CMD_IOC_ON_RELEASE_CANCEL) < 0 ? -errno : 0;
}

int ivt_guest_event_rule(int fd, const struct ivt_event_rule *rule, uint32_t *id)
{
	struct ivrdma_cmd_event_rule req = {.offset = rule->offset,
					    .cq_handle = rule->cq_handle,
					    .channel_fd = rule->channel_fd,
					    .mask = rule->mask,
					    .vector = rule->vector};

	if (ioctl(fd, IVRDMA_CMD_IOC_EVENT_RULE, &req) < 0)
		return -errno;
	*id = req.id;
	return 0;
}

int ivt_guest_event_rule_cancel(int fd, uint32_t id)
{
	return ioctl(fd, IVRDMA_CMD_IOC_EVENT_RULE_CANCEL, &id) < 0 ? -errno : 0;
}

static_assert(IVT_KERNEL_CHANNEL_ID == IVRDMA_CHANNEL_ID_KERNEL, "the driver's channel ids");

int ivt_kernel_channel_id(int channel_fd, uint64_t *id)
{
	__u64 got = 0;

	if (ioctl(channel_fd, IVRDMA_CHAN_IOC_ID, &got) < 0)
		return -errno;
	*id = got;
	return 0;
}

int ivt_kernel_channel_post(int cmd_fd, uint64_t id, uint64_t cq_handle)
{
	struct ivrdma_cmd_channel_post req = {.channel_id = id, .cq_handle = cq_handle};

	return ioctl(cmd_fd, IVRDMA_CMD_IOC_CHANNEL_POST, &req) < 0 ? -errno : 0;
}

const struct ivt_backend_ops ivt_guest_ops = {
    .name = "guest",
    .attach = guest_attach,
    .detach = guest_detach,
    .map_at = guest_map_at,
    .ring = guest_ring,
    .peer_known = guest_peer_known,
    .process_control = guest_process_control,
    .hold_pages = guest_hold_pages,
};
