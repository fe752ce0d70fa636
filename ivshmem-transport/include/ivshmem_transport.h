/* SPDX-License-Identifier: MIT */
/*
 * ivshmem-transport: one small API over an ivshmem region, whoever
 * provides it.
 *
 *   host  backend: a client of ivrdmad's socket, speaking the same protocol
 *                  as QEMU's ivshmem-doorbell device;
 *   guest backend: the uio-driver's device in a VM (BAR2 memory, BAR0
 *                  doorbell, MSI-X vectors as eventfds).
 *
 * A transport gives: the region (base, size, mappings of parts of it at a
 * chosen address), my peer ID, doorbells to ring and to wait for, and peer
 * join/leave notices. It knows nothing of verbs.
 *
 * Thread safety: every call may be made from any thread. ivt_ring() to a
 * peer not known yet reads pending notices first (on_peer may then be
 * called from the ringing thread).
 */
#ifndef IVSHMEM_TRANSPORT_H
#define IVSHMEM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ivt;

enum ivt_backend {
	IVT_BACKEND_HOST = 1,
	IVT_BACKEND_GUEST = 2,
};

enum ivt_peer_event {
	IVT_PEER_JOINED = 1, /* all of its vectors are known: it can be rung */
	IVT_PEER_LEFT = 2,
};

typedef void (*ivt_peer_cb)(void *arg, uint16_t peer, enum ivt_peer_event event);

struct ivt_options {
	enum ivt_backend backend;
	const char *path;    /* host: ivrdmad socket; guest: the driver's device node */
	int timeout_ms;	     /* for the attach handshake; <= 0: 5000 */
	ivt_peer_cb on_peer; /* optional; called from ivt_process_control() */
	void *cb_arg;
};

/*
 * Attaches to a region. Returns 0, or -errno with a message in err. The
 * region is mapped shared read/write; on return every peer present at
 * attach time is known.
 */
int ivt_attach(const struct ivt_options *opts, struct ivt **out, char *err, size_t errlen);
void ivt_detach(struct ivt *t);

const char *ivt_backend_name(const struct ivt *t);
void *ivt_region_base(const struct ivt *t);
uint64_t ivt_region_size(const struct ivt *t);
int ivt_peer_id(const struct ivt *t);
unsigned int ivt_nr_vectors(const struct ivt *t);
bool ivt_peer_known(struct ivt *t, uint16_t peer);

/*
 * Maps [offset, offset + len) of the region at addr (MAP_FIXED, shared),
 * replacing whatever was mapped there. offset, len and addr page aligned.
 */
int ivt_map_at(struct ivt *t, void *addr, uint64_t offset, size_t len, int prot);

/*
 * Holds other threads off this process's mappings of the region in
 * [addr, addr + len) (page aligned): a thread touching them, even to
 * read, waits until ivt_release_pages, then touches whatever is mapped
 * there by then. For a mapping no write-protection can hold (a guest's
 * BAR). Returns a handle for ivt_release_pages, or -EOPNOTSUPP (the host
 * backend), -EBUSY (another hold is on), another -errno.
 */
int ivt_hold_pages(struct ivt *t, void *addr, size_t len);
/* Ends the hold; touches no memory but the caller's stack (the held pages may hold 't'). */
void ivt_release_pages(int handle);

/* Rings doorbell 'vector' of 'peer': -ENOENT unknown peer, -EINVAL vector. */
int ivt_ring(struct ivt *t, uint16_t peer, uint16_t vector);

/* An fd that polls readable while my 'vector' has rung and not been consumed. */
int ivt_vector_fd(const struct ivt *t, uint16_t vector);

/* Consumes my 'vector': how many times it rang since last time (0: none). */
int64_t ivt_consume(struct ivt *t, uint16_t vector);

/*
 * Waits until one of the vectors in 'mask' rings (or timeout_ms passes,
 * -1 = forever), consumes what rang and sets *fired to their mask.
 * Returns how many rang (0 on timeout) or -errno. Peer notices are not
 * processed here.
 */
int ivt_wait(struct ivt *t, uint64_t mask, int timeout_ms, uint64_t *fired);

/*
 * Peer join/leave notices arrive on ivt_control_fd(); call
 * ivt_process_control() when it polls readable. Returns the number of
 * notices handled, or -ECONNRESET once the server is gone.
 */
int ivt_control_fd(const struct ivt *t);
int ivt_process_control(struct ivt *t);

/*
 * Host backend, once ivt_process_control returned -ECONNRESET (ivrdmad
 * went): rejoins the ivrdmad that adopted the region since
 * (common/ivrdma_rejoin.h), with the same peer ID and doorbells.
 * Returns 0 (rejoined: ivt_control_fd changed, the peer table is the new
 * daemon's), -EAGAIN (no ivrdmad there yet: try again later), or another
 * -errno: this peer cannot rejoin (-EPERM: the daemon refused it, as a
 * new ivrdmad that formatted a new region does; -ESTALE: the region no
 * longer lists me), do not try again. -EOPNOTSUPP for the guest backend.
 * Blocks up to 2 s for the daemon's answer.
 */
int ivt_reconnect(struct ivt *t);

/* What ivt_guest_cmd_device() found behind a command device fd. */
enum ivt_cmd_device {
	IVT_CMD_OTHER = 0, /* not the driver's: any other file, e.g. a host's /dev/null */
	IVT_CMD_GUEST = 1, /* a guest's /dev/infiniband/ivrdmaN, over /dev/ivshmemN */
	IVT_CMD_HOST = 2,  /* the driver's /dev/infiniband/ivrdma_host: channels only */
};

/*
 * Whether fd is a verbs command device of the driver (ivrdma_ivshmem.ko).
 * For a guest's (/dev/infiniband/ivrdmaN), writes the path of the ivshmem
 * device behind it (/dev/ivshmemN, checked by its device numbers) to
 * path, the attach path for IVT_BACKEND_GUEST. Returns an enum
 * ivt_cmd_device, or -errno with a message in err (the driver's, but
 * unusable: -ENODEV after the device was unbound or unplugged).
 */
int ivt_guest_cmd_device(int fd, char *path, size_t len, char *err, size_t errlen);

/*
 * Asks the driver, through a guest's command device fd (IVT_CMD_GUEST),
 * to compare-and-swap the 32-bit word at region offset 'offset' from
 * 'expect' to 'value' when fd is released: when the process ends, killed
 * or not (IVRDMA_CMD_IOC_ON_RELEASE). One word per fd, replaced by the
 * next call. Returns 0 or -errno (-ENOTTY: a driver without it).
 */
int ivt_guest_on_release(int fd, uint64_t offset, uint32_t expect, uint32_t value);

/* Forgets the word of ivt_guest_on_release. Returns 0 or -errno. */
int ivt_guest_on_release_cancel(int fd);

/*
 * What the driver does when one of my vectors fires (an event rule): take
 * the bits 'mask' off the 32-bit word at region offset 'offset' and, if
 * any was set, queue {cq_handle} on the completion channel 'channel_fd'.
 */
struct ivt_event_rule {
	uint64_t offset;
	uint64_t cq_handle;
	int channel_fd;
	uint32_t mask;
	uint32_t vector;
};

/*
 * Gives the driver an event rule, through a guest's command device fd
 * (IVRDMA_CMD_IOC_EVENT_RULE); it lasts until cancelled or fd is
 * released. Returns 0 with the rule's id in *id, or -errno (-ENOTTY: a
 * driver without rules; -EBADF: channel_fd is not one of the driver's).
 */
int ivt_guest_event_rule(int fd, const struct ivt_event_rule *rule, uint32_t *id);

/* Ends rule 'id': once this returns it queues nothing more. Returns 0 or -errno. */
int ivt_guest_event_rule_cancel(int fd, uint32_t id);

/* Set in the id of every channel of the driver's ivrdma_host (IVRDMA_CHANNEL_ID_KERNEL). */
#define IVT_KERNEL_CHANNEL_ID (1ull << 63)

/*
 * The id of a completion channel of the driver's ivrdma_host, by which
 * other host processes post to it (IVRDMA_CHAN_IOC_ID). Returns 0 with
 * the id in *id, or -errno (-EOPNOTSUPP: a guest's channel; -ENOTTY: no
 * channel of the driver).
 */
int ivt_kernel_channel_id(int channel_fd, uint64_t *id);

/*
 * Queues {cq_handle} on the ivrdma_host channel 'id', through my own
 * command device fd of ivrdma_host (IVRDMA_CMD_IOC_CHANNEL_POST). Returns
 * 0 or -errno (-ENOENT: no such channel; -EAGAIN: it is full).
 */
int ivt_kernel_channel_post(int cmd_fd, uint64_t id, uint64_t cq_handle);

#ifdef __cplusplus
}
#endif

#endif /* IVSHMEM_TRANSPORT_H */
