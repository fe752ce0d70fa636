/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * ivrdma_ivshmem: the user-space interface of the ivrdma driver for QEMU's
 * ivshmem PCI device (1af4:1110). Shared by the kernel module and user
 * space (the guest backend of ivshmem-transport); fixed-width types only.
 *
 * Device nodes, one of each per device, N from 0 in probe order:
 *   /dev/ivshmemN              the device (module parameter 'mode', 0660)
 *   /dev/infiniband/ivrdmaN    the verbs command device libibverbs opens
 *                              as cmd_fd (module parameter 'cmd_mode', 0660)
 *
 * mmap (MAP_SHARED only):
 *   offset N * PAGE_SIZE, N < BAR2 pages: BAR2 (the shared region) from
 *       byte N * PAGE_SIZE, mapped write-back cached, at any page offset
 *       and of any page-multiple length inside BAR2;
 *   offset IVRDMA_IVSHMEM_BAR0_OFFSET: BAR0 (the registers), one page,
 *       uncached; only if info.flags has IVRDMA_IVSHMEM_INFO_BAR0_MMAP.
 * Once the device goes away (unbind, hot-unplug) every bound eventfd is
 * signalled once and dropped, every mapping is zapped: a later access
 * raises SIGBUS and every ioctl fails with ENODEV.
 */
#ifndef _IVRDMA_IVSHMEM_UAPI_H
#define _IVRDMA_IVSHMEM_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IVRDMA_IVSHMEM_ABI_VERSION 1

/* The mmap offset of BAR0: beyond any BAR2 (ivshmem regions are < 1 TiB). */
#define IVRDMA_IVSHMEM_BAR0_OFFSET (1ULL << 40)

/* BAR0 register offsets (QEMU docs/specs/ivshmem-spec.rst) */
#define IVRDMA_IVSHMEM_REG_INTRMASK	0x00
#define IVRDMA_IVSHMEM_REG_INTRSTATUS	0x04
#define IVRDMA_IVSHMEM_REG_IVPOSITION	0x08
#define IVRDMA_IVSHMEM_REG_DOORBELL	0x0c

#define IVRDMA_IVSHMEM_INFO_BAR0_MMAP	(1U << 0)

struct ivrdma_ivshmem_info {
	__u32 abi_version;	/* IVRDMA_IVSHMEM_ABI_VERSION */
	__s32 ivposition;	/* my peer ID; -1 until the server gave one */
	__u64 bar2_size;	/* bytes of shared memory */
	__u64 bar0_size;	/* bytes of registers */
	__u64 bar0_offset;	/* mmap offset of BAR0 */
	__u32 nr_vectors;	/* MSI-X vectors enabled: 0 .. nr_vectors - 1 */
	__u32 flags;		/* IVRDMA_IVSHMEM_INFO_* */
	__u64 reserved[4];
};

/* Rings doorbell 'vector' of peer 'peer'; vector < nr_vectors. */
struct ivrdma_ivshmem_doorbell {
	__u16 peer;
	__u16 vector;
	__u32 reserved;		/* must be 0 */
};

/*
 * Binds an eventfd to my MSI-X vector 'vector' for this open file
 * (replacing the file's earlier binding of that vector): every interrupt
 * on it adds 1 to the eventfd of every file that bound the vector. A
 * binding ends with IOC_UNBIND on the same file (ENOENT: it has none), or
 * when the file is closed.
 */
struct ivrdma_ivshmem_irqfd {
	__u32 vector;
	__s32 fd;		/* the eventfd; ignored by IOC_UNBIND */
	__u32 flags;		/* must be 0 */
	__u32 reserved;		/* must be 0 */
};

/* Interrupts seen on 'vector' since the driver bound the device. */
struct ivrdma_ivshmem_vector_count {
	__u32 vector;
	__u32 reserved;		/* must be 0 */
	__u64 count;		/* out */
};

/*
 * Diagnostics (x86): the page-table entry that maps the calling process's
 * address 'addr' in one of this driver's mappings, so a test can see the
 * memory type its mapping really got. pat_index is the entry's PAT index
 * (PWT | PCD << 1 | PAT << 2); the kernel logs what each index means
 * ("x86/PAT: Configuration [0-7]: ..."). ENXIO: not mapped yet (touch it
 * first); EINVAL: not an address of ours.
 */
struct ivrdma_ivshmem_pte {
	__u64 addr;		/* in */
	__u64 phys;		/* out: physical address of the page */
	__u64 pte;		/* out: the raw entry */
	__u32 pat_index;	/* out */
	__u32 reserved;		/* must be 0 */
};

/*
 * IOC_HOLD takes this device's pages out of the calling process's
 * mappings of them in [addr, addr + len) (page-aligned): a thread
 * touching one waits in its page fault, its mmap lock released, until
 * IOC_RELEASE on the same file (or the file is closed, or the device
 * goes), then faults again, into whatever is mapped there by then. The
 * holder copies the pages from another mapping of the region and
 * mremaps private ones over them in the meantime: no store is lost (the
 * provider's suspension, provider/mr_move.c). One hold per device at a
 * time (EBUSY).
 */
struct ivrdma_ivshmem_hold {
	__u64 addr;
	__u64 len;
};

#define IVRDMA_IVSHMEM_IOC_MAGIC	0xb7
#define IVRDMA_IVSHMEM_IOC_INFO \
	_IOR(IVRDMA_IVSHMEM_IOC_MAGIC, 0x00, struct ivrdma_ivshmem_info)
#define IVRDMA_IVSHMEM_IOC_RING \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x01, struct ivrdma_ivshmem_doorbell)
#define IVRDMA_IVSHMEM_IOC_BIND \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x02, struct ivrdma_ivshmem_irqfd)
#define IVRDMA_IVSHMEM_IOC_UNBIND \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x03, struct ivrdma_ivshmem_irqfd)
#define IVRDMA_IVSHMEM_IOC_VECTOR_COUNT \
	_IOWR(IVRDMA_IVSHMEM_IOC_MAGIC, 0x04, struct ivrdma_ivshmem_vector_count)
#define IVRDMA_IVSHMEM_IOC_PTE \
	_IOWR(IVRDMA_IVSHMEM_IOC_MAGIC, 0x05, struct ivrdma_ivshmem_pte)
#define IVRDMA_IVSHMEM_IOC_HOLD \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x06, struct ivrdma_ivshmem_hold)
#define IVRDMA_IVSHMEM_IOC_RELEASE _IO(IVRDMA_IVSHMEM_IOC_MAGIC, 0x07)

/*
 * The command device /dev/infiniband/ivrdmaN answers the kernel commands
 * libibverbs sends on its own (legacy write() commands: struct
 * ib_uverbs_cmd_hdr, then the command):
 *   IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL  a new completion channel fd;
 *   any other command                      EOPNOTSUPP (EINVAL: bad flags);
 *   the verbs ioctl (RDMA_VERBS_IOCTL)      ENOTTY: libibverbs then uses
 *                                           write() and sysfs.
 * A completion channel queues struct ib_uverbs_comp_event_desc records:
 * read() returns one (blocking unless O_NONBLOCK), poll() works, and
 * write() of whole records queues them, which is how the provider posts
 * completion events. A write never blocks: a full queue (channel_depth
 * records, in IVRDMA_CMD_IOC_INFO) fails it with EAGAIN.
 *
 * IVRDMA_CMD_IOC_INFO tells the provider it runs over this driver and
 * which /dev/ivshmemN carries the region (compare st_rdev). After unbind
 * or hot-unplug commands and IOC_INFO fail with ENODEV; channels already
 * made keep working (they belong to their files, not to the device).
 *
 * With the module parameter host=1 there is also /dev/infiniband/ivrdma_host,
 * a command device with no ivshmem device behind it
 * (IVRDMA_CMD_INFO_HOST): host processes, which reach the region through
 * ivrdmad's host.sock, get their completion channels from it instead of
 * from the preload library.
 */
struct ivrdma_cmd_info {
	__u32 abi_version;	/* IVRDMA_IVSHMEM_ABI_VERSION */
	__u32 index;		/* the N of /dev/ivshmemN and ivrdmaN */
	__u32 ivshmem_major;	/* device numbers of /dev/ivshmemN */
	__u32 ivshmem_minor;
	__u32 channel_depth;	/* records a completion channel queues */
	__u32 flags;		/* IVRDMA_CMD_INFO_* */
	__u32 reserved[2];
};

/* The host-mode command device: index and ivshmem_* are 0. */
#define IVRDMA_CMD_INFO_HOST	(1u << 0)

#define IVRDMA_CMD_IOC_INFO \
	_IOR(IVRDMA_IVSHMEM_IOC_MAGIC, 0x20, struct ivrdma_cmd_info)

/*
 * IVRDMA_CMD_IOC_ON_RELEASE: when this command file is released (its last
 * reference closed: the process exited, or was killed), the driver
 * compare-and-swaps the 32-bit word at 'offset' in BAR2 from 'expect' to
 * 'value', if the ivshmem device is still there. So the region learns of
 * a process's end, in a VM where every process shares the VM's peer: the
 * provider names its context record's state, OPEN to RELEASED. One word a
 * file: a new call replaces the last; IVRDMA_CMD_IOC_ON_RELEASE_CANCEL
 * forgets it (a context that closes). EINVAL: 'offset' not 4-byte aligned
 * or outside BAR2; EOPNOTSUPP: ivrdma_host, which has no BAR2; ENODEV: the
 * device is gone.
 */
struct ivrdma_cmd_on_release {
	__u64 offset;
	__u32 expect;
	__u32 value;
};

#define IVRDMA_CMD_IOC_ON_RELEASE \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x21, struct ivrdma_cmd_on_release)
#define IVRDMA_CMD_IOC_ON_RELEASE_CANCEL _IO(IVRDMA_IVSHMEM_IOC_MAGIC, 0x22)

/*
 * IVRDMA_CMD_IOC_EVENT_RULE: from now on, whenever MSI-X vector 'vector'
 * of the ivshmem device fires, the driver's interrupt handler, before it
 * signals the eventfds bound to the vector, clears the bits 'mask' of the
 * 32-bit word at 'offset' in BAR2 (one atomic read-modify-write) and, if
 * any of them was set, queues the record {cq_handle} on the completion
 * channel 'channel_fd' (one this driver made), waking its reader. So a
 * completion event reaches the thread asleep in ibv_get_cq_event with one
 * wakeup, the interrupt's, and no relay through another thread. A full
 * channel leaves the bits set. On success the rule's id (>= 1) is written
 * to 'id'; the rule holds the channel until it ends: at
 * IVRDMA_CMD_IOC_EVENT_RULE_CANCEL with that id (once that returns, the
 * rule queues nothing more), when this command file is released, or when
 * the device goes away.
 *
 * Errors: EACCES: not the file's opener; EFAULT; EINVAL: 'offset' not
 * 4-byte aligned or outside BAR2, 'mask' 0, 'vector' not enabled, or
 * 'reserved' not 0; EBADF: 'channel_fd' is not a completion channel of
 * this driver; ENOSPC: the file has IVRDMA_CMD_EVENT_RULES_MAX rules;
 * ENOMEM; EOPNOTSUPP: ivrdma_host, which has no BAR2 and no vectors;
 * ENODEV: the device is gone. CANCEL: ENOENT if the file has no such rule.
 */
struct ivrdma_cmd_event_rule {
	__u64 offset;		/* in BAR2 */
	__u64 cq_handle;	/* the record's */
	__s32 channel_fd;
	__u32 mask;
	__u32 vector;
	__u32 id;		/* out */
	__u32 reserved[2];	/* 0 */
};

#define IVRDMA_CMD_EVENT_RULES_MAX	4096

#define IVRDMA_CMD_IOC_EVENT_RULE \
	_IOWR(IVRDMA_IVSHMEM_IOC_MAGIC, 0x23, struct ivrdma_cmd_event_rule)
#define IVRDMA_CMD_IOC_EVENT_RULE_CANCEL \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x24, __u32)

/*
 * Channels of ivrdma_host have an id, which IVRDMA_CHAN_IOC_ID on the
 * channel's fd returns (bit 63 is set in every one), and any process
 * that may open ivrdma_host can queue a record on a channel by its id
 * through its own command file: IVRDMA_CMD_IOC_CHANNEL_POST. So the
 * producer of a completion in one host process wakes the thread asleep in
 * ibv_get_cq_event of another itself, with no relay through the owner's
 * event thread. An id is as good as the channel's fd for posting: the
 * provider publishes it only in the region, to those who share the region.
 *
 * ID errors: EFAULT; EOPNOTSUPP: a channel of a guest's command device,
 * which other processes cannot reach. POST errors: EFAULT; EINVAL:
 * 'reserved' not 0; EOPNOTSUPP: a guest's command device; ENOENT: no
 * channel has the id (it was closed); EAGAIN: the channel is full.
 */
#define IVRDMA_CHANNEL_ID_KERNEL	(1ULL << 63)

struct ivrdma_cmd_channel_post {
	__u64 channel_id;
	__u64 cq_handle;	/* the record's */
	__u64 reserved;		/* 0 */
};

#define IVRDMA_CMD_IOC_CHANNEL_POST \
	_IOW(IVRDMA_IVSHMEM_IOC_MAGIC, 0x25, struct ivrdma_cmd_channel_post)
#define IVRDMA_CHAN_IOC_ID _IOR(IVRDMA_IVSHMEM_IOC_MAGIC, 0x30, __u64)

#endif /* _IVRDMA_IVSHMEM_UAPI_H */
