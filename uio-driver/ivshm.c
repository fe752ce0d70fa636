// SPDX-License-Identifier: GPL-2.0
/*
 * ivrdma_ivshmem: a driver for QEMU's ivshmem PCI device (1af4:1110), in
 * the lineage of the Nahanni UIO driver, for ivrdma's guest mode.
 *
 * One character device per ivshmem device, /dev/ivshmemN, gives user
 * space:
 *  - BAR2, the shared memory, mapped write-back cached at any page offset
 *    (it is RAM on the host: an uncached mapping would make every access a
 *    bus transaction);
 *  - BAR0, the registers, mapped uncached (if it can be done safely);
 *  - doorbells to other peers, and its own MSI-X vectors as eventfds: each
 *    open file binds its own, and an interrupt signals every file's
 *    eventfd for that vector (every verbs process of the VM is woken and
 *    looks for its own events: the VM is one ivshmem peer).
 * A second one, /dev/infiniband/ivrdmaN, is the verbs command device
 * (cmddev.c).
 *
 * See ivrdma_ivshmem_uapi.h for the interface.
 *
 * BAR2's write-back memory type: memremap(MEMREMAP_WB) reserves the range
 * as write-back in the x86 PAT memtype tree (it becomes UC- only if the
 * MTRRs say the range is uncachable); user mappings are filled page by
 * page at fault time with vmf_insert_pfn(), which takes the memory type
 * from that reservation.
 *
 * Removal (unbind, hot-unplug) while files are open: the device is marked
 * dead and every user mapping is zapped under the device's rwsem, which
 * the fault handler and the ioctls hold for reading; a later fault raises
 * SIGBUS, a later ioctl or mmap fails with ENODEV. The device structure
 * lives until the last file is closed; open files pin the module.
 *
 * Holding (IOC_HOLD, IOC_RELEASE): the pages of a range of the holder's
 * process are zapped and its faults there wait on thaw_wq, with the mmap
 * lock dropped (VM_FAULT_RETRY), until the hold ends; the holder mremaps
 * private copies over the range meanwhile.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include "ivrdma_cmd.h"
#include "ivrdma_ivshmem_uapi.h"

#define IVSHMEM_BAR_REGS	0
#define IVSHMEM_BAR_SHM		2
#define IVSHMEM_REGS_MIN	16
/* QEMU's server hands out at most 64 vectors per peer. */
#define IVSHMEM_MAX_VECTORS	64

#define BAR0_PGOFF		(IVRDMA_IVSHMEM_BAR0_OFFSET >> PAGE_SHIFT)

static ushort mode = 0660;
module_param(mode, ushort, 0444);
MODULE_PARM_DESC(mode, "Permissions of /dev/ivshmemN (default 0660: owner and group)");

static DEFINE_IDA(ivshm_ida);

struct ivshm_dev;

struct ivshm_vector {
	struct ivshm_dev *dev;
	unsigned int nr;
	int irq;
	bool requested;
	atomic64_t count;
	char name[32];
};

struct ivshm_dev {
	struct kref ref;
	struct pci_dev *pdev;
	struct miscdevice misc;
	char name[24];
	int index;

	/* Read: using the device (faults, ioctls). Write: killing it. */
	struct rw_semaphore lock;
	bool dead;
	void __iomem *regs;
	void *shm;			/* kernel mapping; holds the WB memtype */
	phys_addr_t regs_start;
	phys_addr_t shm_start;
	u64 regs_size;
	u64 shm_size;
	bool regs_mmap;
	struct resource regs_pad;	/* the rest of BAR0's page, kept empty */
	bool regs_pad_held;

	/* The hold (IOC_HOLD): under lock; thaw_seq moves on when it ends. */
	struct ivshm_file *holder;
	struct mm_struct *hold_mm;
	unsigned long hold_start, hold_end;
	unsigned int thaw_seq;
	wait_queue_head_t thaw_wq;

	struct mutex files_lock;
	struct list_head files;
	struct ivrdma_cmd_dev *cmd;	/* /dev/infiniband/ivrdmaN; irq_lock */

	spinlock_t irq_lock;		/* irq_files, triggers vs. the handlers */
	struct list_head irq_files;
	unsigned int nr_vectors;	/* enabled */
	unsigned int msix_size;		/* the device's MSI-X table size */
	struct ivshm_vector *vectors;
};

struct ivshm_file {
	struct ivshm_dev *dev;
	struct file *file;
	struct list_head node;		/* dev->files, under files_lock */
	struct list_head irq_node;	/* dev->irq_files, under irq_lock */
	/* This file's eventfd per vector, under dev->irq_lock. */
	struct eventfd_ctx *trigger[IVSHMEM_MAX_VECTORS];
};

static void ivshm_free(struct kref *ref)
{
	struct ivshm_dev *dev = container_of(ref, struct ivshm_dev, ref);

	pci_dev_put(dev->pdev);
	kfree(dev->vectors);
	kfree(dev);
}

static inline void ivshm_set_vm_flags(struct vm_area_struct *vma,
				      unsigned long flags)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

static inline void ivshm_signal(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

static irqreturn_t ivshm_irq(int irq, void *arg)
{
	struct ivshm_vector *v = arg;
	struct ivshm_dev *dev = v->dev;
	struct ivshm_file *f;

	atomic64_inc(&v->count);
	spin_lock(&dev->irq_lock);
	/* Event rules first: the reader they wake is the one waiting. */
	if (dev->cmd)
		ivrdma_cmd_irq(dev->cmd, v->nr);
	list_for_each_entry(f, &dev->irq_files, irq_node)
		if (f->trigger[v->nr])
			ivshm_signal(f->trigger[v->nr]);
	spin_unlock(&dev->irq_lock);
	return IRQ_HANDLED;
}

/*
 * Detaches @f's eventfd of vector @i, signalling it first if @wake; false
 * if it had none.
 */
static bool ivshm_unbind_one(struct ivshm_dev *dev, struct ivshm_file *f,
			     unsigned int i, bool wake)
{
	struct eventfd_ctx *old;

	spin_lock_irq(&dev->irq_lock);
	old = f->trigger[i];
	f->trigger[i] = NULL;
	spin_unlock_irq(&dev->irq_lock);
	if (!old)
		return false;
	if (wake)
		ivshm_signal(old);
	eventfd_ctx_put(old);
	return true;
}

static void ivshm_unbind_file(struct ivshm_dev *dev, struct ivshm_file *f,
			      bool wake)
{
	unsigned int i;

	for (i = 0; i < IVSHMEM_MAX_VECTORS; i++)
		ivshm_unbind_one(dev, f, i, wake);
}

/*
 * Every file's bindings: the interrupts are going away. Each eventfd is
 * signalled once more, so whoever sleeps on it wakes and learns from its
 * next ioctl (ENODEV) that the device is gone.
 */
static void ivshm_unbind_all(struct ivshm_dev *dev)
{
	struct ivshm_file *f;

	mutex_lock(&dev->files_lock);
	list_for_each_entry(f, &dev->files, node)
		ivshm_unbind_file(dev, f, true);
	mutex_unlock(&dev->files_lock);
}

/* ---- mappings ---- */

/* The physical address behind page @pgoff of the device file, or 0. */
static phys_addr_t ivshm_pgoff_phys(struct ivshm_dev *dev, unsigned long pgoff,
				    unsigned long pages)
{
	u64 shm_pages = dev->shm_size >> PAGE_SHIFT;

	if (pgoff < shm_pages && pages <= shm_pages - pgoff)
		return dev->shm_start + ((phys_addr_t)pgoff << PAGE_SHIFT);
	if (dev->regs_mmap && pgoff == BAR0_PGOFF && pages == 1)
		return dev->regs_start;
	return 0;
}

static bool ivshm_held(struct ivshm_dev *dev, struct vm_fault *vmf)
{
	return dev->holder && dev->hold_mm == vmf->vma->vm_mm &&
	       vmf->address >= dev->hold_start && vmf->address < dev->hold_end;
}

/*
 * A fault in the held range: waits for the hold to end with the mmap lock
 * dropped, then has the fault retried. Called with dev->lock read-held;
 * releases it.
 */
static vm_fault_t ivshm_wait_release(struct ivshm_dev *dev,
				     struct vm_fault *vmf)
{
	unsigned int seq = dev->thaw_seq;

	up_read(&dev->lock);
	if (vmf->flags & FAULT_FLAG_RETRY_NOWAIT)
		return VM_FAULT_RETRY;
	kref_get(&dev->ref);
	mmap_read_unlock(vmf->vma->vm_mm);
	wait_event_killable(dev->thaw_wq, READ_ONCE(dev->thaw_seq) != seq ||
					  READ_ONCE(dev->dead));
	kref_put(&dev->ref, ivshm_free);
	return VM_FAULT_RETRY;
}

static vm_fault_t ivshm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct ivshm_file *f = vma->vm_file->private_data;
	struct ivshm_dev *dev = f->dev;
	unsigned long pgoff;
	phys_addr_t phys;
	vm_fault_t ret = VM_FAULT_SIGBUS;

	pgoff = vma->vm_pgoff + ((vmf->address - vma->vm_start) >> PAGE_SHIFT);
	down_read(&dev->lock);
	/* Without FAULT_FLAG_ALLOW_RETRY it cannot wait: the page goes in. */
	if (!dev->dead && ivshm_held(dev, vmf) &&
	    (vmf->flags & FAULT_FLAG_ALLOW_RETRY))
		return ivshm_wait_release(dev, vmf);
	if (!dev->dead) {
		phys = ivshm_pgoff_phys(dev, pgoff, 1);
		if (phys)
			ret = vmf_insert_pfn(vma, vmf->address & PAGE_MASK,
					     PHYS_PFN(phys));
	}
	up_read(&dev->lock);
	return ret;
}

static const struct vm_operations_struct ivshm_vm_ops = {
	.fault = ivshm_fault,
#ifdef CONFIG_HAVE_IOREMAP_PROT
	.access = generic_access_phys,
#endif
};

static int ivshm_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct ivshm_file *f = file->private_data;
	struct ivshm_dev *dev = f->dev;
	bool regs = vma->vm_pgoff == BAR0_PGOFF;
	int ret = 0;

	/* A private (copy-on-write) mapping of device memory makes no sense. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	down_read(&dev->lock);
	if (dev->dead)
		ret = -ENODEV;
	else if (!ivshm_pgoff_phys(dev, vma->vm_pgoff, vma_pages(vma)))
		ret = -EINVAL;
	up_read(&dev->lock);
	if (ret)
		return ret;
	ivshm_set_vm_flags(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	if (regs)
		vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	vma->vm_ops = &ivshm_vm_ops;
	return 0;
}

/* ---- ioctls ---- */

static long ivshm_ioc_info(struct ivshm_dev *dev, void __user *argp)
{
	struct ivrdma_ivshmem_info info = {
		.abi_version = IVRDMA_IVSHMEM_ABI_VERSION,
		.bar2_size = dev->shm_size,
		.bar0_size = dev->regs_size,
		.bar0_offset = IVRDMA_IVSHMEM_BAR0_OFFSET,
		.nr_vectors = dev->nr_vectors,
		.flags = dev->regs_mmap ? IVRDMA_IVSHMEM_INFO_BAR0_MMAP : 0,
	};

	down_read(&dev->lock);
	if (dev->dead) {
		up_read(&dev->lock);
		return -ENODEV;
	}
	info.ivposition = (s32)ioread32(dev->regs + IVRDMA_IVSHMEM_REG_IVPOSITION);
	up_read(&dev->lock);
	return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
}

static long ivshm_ioc_ring(struct ivshm_dev *dev, void __user *argp)
{
	struct ivrdma_ivshmem_doorbell db;
	long ret = 0;

	if (copy_from_user(&db, argp, sizeof(db)))
		return -EFAULT;
	/* Every peer of a server has as many vectors as we do. */
	if (db.reserved || db.vector >= dev->msix_size)
		return -EINVAL;
	down_read(&dev->lock);
	if (dev->dead)
		ret = -ENODEV;
	else
		iowrite32((u32)db.peer << 16 | db.vector,
			  dev->regs + IVRDMA_IVSHMEM_REG_DOORBELL);
	up_read(&dev->lock);
	return ret;
}

static long ivshm_ioc_bind(struct ivshm_dev *dev, struct ivshm_file *f,
			   void __user *argp)
{
	struct ivrdma_ivshmem_irqfd req;
	struct eventfd_ctx *ctx, *old = NULL;
	long ret = 0;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved || req.vector >= dev->nr_vectors)
		return -EINVAL;
	ctx = eventfd_ctx_fdget(req.fd);
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	down_read(&dev->lock);
	if (dev->dead) {
		ret = -ENODEV;
		old = ctx;
	} else {
		spin_lock_irq(&dev->irq_lock);
		old = f->trigger[req.vector];
		f->trigger[req.vector] = ctx;
		spin_unlock_irq(&dev->irq_lock);
	}
	up_read(&dev->lock);
	if (old)
		eventfd_ctx_put(old);
	return ret;
}

static long ivshm_ioc_unbind(struct ivshm_dev *dev, struct ivshm_file *f,
			     void __user *argp)
{
	struct ivrdma_ivshmem_irqfd req;
	long ret;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved || req.vector >= dev->nr_vectors)
		return -EINVAL;
	down_read(&dev->lock);
	if (dev->dead)
		ret = -ENODEV;
	else
		ret = ivshm_unbind_one(dev, f, req.vector, false) ? 0 : -ENOENT;
	up_read(&dev->lock);
	return ret;
}

static long ivshm_ioc_vector_count(struct ivshm_dev *dev, void __user *argp)
{
	struct ivrdma_ivshmem_vector_count req;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.reserved || req.vector >= dev->nr_vectors)
		return -EINVAL;
	down_read(&dev->lock);
	if (dev->dead) {
		up_read(&dev->lock);
		return -ENODEV;
	}
	req.count = atomic64_read(&dev->vectors[req.vector].count);
	up_read(&dev->lock);
	return copy_to_user(argp, &req, sizeof(req)) ? -EFAULT : 0;
}

#if defined(CONFIG_X86) && LINUX_VERSION_CODE < KERNEL_VERSION(6, 10, 0)
static long ivshm_ioc_pte(struct ivshm_dev *dev, void __user *argp)
{
	struct mm_struct *mm = current->mm;
	struct ivrdma_ivshmem_pte req;
	struct vm_area_struct *vma;
	spinlock_t *ptl;
	pte_t *ptep;
	pteval_t val = 0;
	long ret;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.reserved)
		return -EINVAL;
	mmap_read_lock(mm);
	vma = vma_lookup(mm, req.addr);
	if (!vma || vma->vm_ops != &ivshm_vm_ops) {
		ret = -EINVAL;
	} else {
		ret = follow_pte(mm, req.addr, &ptep, &ptl);
		if (ret) {
			ret = -ENXIO;
		} else {
			val = pte_val(*ptep);
			pte_unmap_unlock(ptep, ptl);
		}
	}
	mmap_read_unlock(mm);
	if (ret)
		return ret;
	req.pte = val;
	req.phys = (u64)((val & PTE_PFN_MASK) | (req.addr & ~PAGE_MASK));
	req.pat_index = (val & _PAGE_PWT ? 1 : 0) | (val & _PAGE_PCD ? 2 : 0) |
			(val & _PAGE_PAT ? 4 : 0);
	return copy_to_user(argp, &req, sizeof(req)) ? -EFAULT : 0;
}
#else
static long ivshm_ioc_pte(struct ivshm_dev *dev, void __user *argp)
{
	return -EOPNOTSUPP;
}
#endif

/* The hold ends (IOC_RELEASE, close, removal): every waiting fault retries. */
static void ivshm_release_hold(struct ivshm_dev *dev, struct ivshm_file *f)
{
	down_write(&dev->lock);
	if (f && dev->holder != f) {
		up_write(&dev->lock);
		return;
	}
	dev->holder = NULL;
	dev->hold_mm = NULL;
	WRITE_ONCE(dev->thaw_seq, dev->thaw_seq + 1);
	up_write(&dev->lock);
	wake_up_all(&dev->thaw_wq);
}

/* Zaps this device's pages in [start, end) of mm's mappings. */
static void ivshm_zap_range(struct ivshm_dev *dev, struct mm_struct *mm,
			    unsigned long start, unsigned long end)
{
	struct vm_area_struct *vma;
	struct ivshm_file *vf;
	unsigned long a, lo, hi;

	mmap_read_lock(mm);
	for (a = start; a < end; a = vma->vm_end) {
		vma = find_vma(mm, a);
		if (!vma || vma->vm_start >= end)
			break;
		if (vma->vm_ops != &ivshm_vm_ops)
			continue;
		vf = vma->vm_file->private_data;
		if (vf->dev != dev)
			continue;
		lo = max(a, vma->vm_start);
		hi = min(end, vma->vm_end);
		zap_vma_ptes(vma, lo, hi - lo);
	}
	mmap_read_unlock(mm);
}

static long ivshm_ioc_hold(struct ivshm_dev *dev, struct ivshm_file *f,
			   void __user *argp)
{
	struct ivrdma_ivshmem_hold req;
	long ret = 0;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (!req.len || ((req.addr | req.len) & ~PAGE_MASK) ||
	    req.addr + req.len < req.addr || req.addr + req.len > TASK_SIZE)
		return -EINVAL;
	down_write(&dev->lock);
	if (dev->dead) {
		ret = -ENODEV;
	} else if (dev->holder) {
		ret = -EBUSY;
	} else {
		/* From here a fault in the range waits: none can refill it. */
		dev->holder = f;
		dev->hold_mm = current->mm;
		dev->hold_start = req.addr;
		dev->hold_end = req.addr + req.len;
	}
	up_write(&dev->lock);
	if (!ret)
		ivshm_zap_range(dev, current->mm, req.addr, req.addr + req.len);
	return ret;
}

static long ivshm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ivshm_file *f = file->private_data;
	struct ivshm_dev *dev = f->dev;
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case IVRDMA_IVSHMEM_IOC_INFO:
		return ivshm_ioc_info(dev, argp);
	case IVRDMA_IVSHMEM_IOC_RING:
		return ivshm_ioc_ring(dev, argp);
	case IVRDMA_IVSHMEM_IOC_BIND:
		return ivshm_ioc_bind(dev, f, argp);
	case IVRDMA_IVSHMEM_IOC_UNBIND:
		return ivshm_ioc_unbind(dev, f, argp);
	case IVRDMA_IVSHMEM_IOC_VECTOR_COUNT:
		return ivshm_ioc_vector_count(dev, argp);
	case IVRDMA_IVSHMEM_IOC_PTE:
		return ivshm_ioc_pte(dev, argp);
	case IVRDMA_IVSHMEM_IOC_HOLD:
		return ivshm_ioc_hold(dev, f, argp);
	case IVRDMA_IVSHMEM_IOC_RELEASE:
		ivshm_release_hold(dev, f);
		return 0;
	}
	return -ENOTTY;
}

/* ---- files ---- */

static int ivshm_open(struct inode *inode, struct file *file)
{
	/* misc_open() set private_data; misc_deregister() cannot race us. */
	struct miscdevice *misc = file->private_data;
	struct ivshm_dev *dev = container_of(misc, struct ivshm_dev, misc);
	struct ivshm_file *f;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	kref_get(&dev->ref);
	f->dev = dev;
	f->file = file;
	mutex_lock(&dev->files_lock);
	list_add(&f->node, &dev->files);
	mutex_unlock(&dev->files_lock);
	spin_lock_irq(&dev->irq_lock);
	list_add(&f->irq_node, &dev->irq_files);
	spin_unlock_irq(&dev->irq_lock);
	file->private_data = f;
	return 0;
}

static int ivshm_release(struct inode *inode, struct file *file)
{
	struct ivshm_file *f = file->private_data;
	struct ivshm_dev *dev = f->dev;

	ivshm_release_hold(dev, f);
	spin_lock_irq(&dev->irq_lock);
	list_del(&f->irq_node);
	spin_unlock_irq(&dev->irq_lock);
	ivshm_unbind_file(dev, f, false);
	mutex_lock(&dev->files_lock);
	list_del(&f->node);
	mutex_unlock(&dev->files_lock);
	kfree(f);
	kref_put(&dev->ref, ivshm_free);
	return 0;
}

static const struct file_operations ivshm_fops = {
	.owner = THIS_MODULE,
	.open = ivshm_open,
	.release = ivshm_release,
	.mmap = ivshm_mmap,
	.unlocked_ioctl = ivshm_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* ---- the PCI device ---- */

/*
 * BAR0 is 256 bytes: mapping its page into user space is safe only if no
 * other device's registers can share that page. Like vfio-pci, claim the
 * rest of the page so nothing else is placed there; if that fails, BAR0
 * is not mappable (the doorbell ioctl still works).
 */
static void ivshm_check_regs_mmap(struct ivshm_dev *dev)
{
	struct resource *res = &dev->pdev->resource[IVSHMEM_BAR_REGS];

	if (!(res->flags & IORESOURCE_MEM) || !PAGE_ALIGNED(res->start))
		return;
	if (resource_size(res) >= PAGE_SIZE) {
		dev->regs_mmap = true;
		return;
	}
	if (!res->parent)
		return;
	dev->regs_pad.name = "ivrdma_ivshmem BAR0 page";
	dev->regs_pad.start = res->end + 1;
	dev->regs_pad.end = res->start + PAGE_SIZE - 1;
	dev->regs_pad.flags = res->flags;
	if (request_resource(res->parent, &dev->regs_pad))
		return;
	dev->regs_pad_held = true;
	dev->regs_mmap = true;
}

static int ivshm_setup_irqs(struct ivshm_dev *dev)
{
	struct pci_dev *pdev = dev->pdev;
	unsigned int i;
	int ret, n;

	n = pci_msix_vec_count(pdev);
	if (n <= 0)
		return 0;	/* ivshmem-plain: no doorbells */
	dev->msix_size = n;
	n = pci_alloc_irq_vectors(pdev, 1, min(n, IVSHMEM_MAX_VECTORS),
				  PCI_IRQ_MSIX);
	if (n < 0)
		return n;
	dev->vectors = kcalloc(n, sizeof(*dev->vectors), GFP_KERNEL);
	if (!dev->vectors) {
		pci_free_irq_vectors(pdev);
		return -ENOMEM;
	}
	dev->nr_vectors = n;
	for (i = 0; i < n; i++) {
		struct ivshm_vector *v = &dev->vectors[i];

		v->dev = dev;
		v->nr = i;
		v->irq = pci_irq_vector(pdev, i);
		snprintf(v->name, sizeof(v->name), "%s-%u", dev->name, i);
		ret = request_irq(v->irq, ivshm_irq, 0, v->name, v);
		if (ret)
			return ret;	/* ivshm_free_irqs() undoes the rest */
		v->requested = true;
	}
	return 0;
}

static void ivshm_free_irqs(struct ivshm_dev *dev)
{
	unsigned int i;

	for (i = 0; i < dev->nr_vectors; i++) {
		if (dev->vectors[i].requested) {
			free_irq(dev->vectors[i].irq, &dev->vectors[i]);
			dev->vectors[i].requested = false;
		}
	}
	ivshm_unbind_all(dev);
	if (dev->msix_size)
		pci_free_irq_vectors(dev->pdev);
}

/* Marks the device dead and takes every user mapping away. */
static void ivshm_kill(struct ivshm_dev *dev)
{
	struct ivshm_file *f;

	down_write(&dev->lock);
	dev->dead = true;
	mutex_lock(&dev->files_lock);
	list_for_each_entry(f, &dev->files, node)
		unmap_mapping_range(f->file->f_mapping, 0, 0, 1);
	mutex_unlock(&dev->files_lock);
	up_write(&dev->lock);
	wake_up_all(&dev->thaw_wq);	/* held faults retry: SIGBUS */
}

static void ivshm_teardown(struct ivshm_dev *dev)
{
	struct pci_dev *pdev = dev->pdev;

	ivshm_free_irqs(dev);
	if (dev->shm)
		memunmap(dev->shm);
	if (dev->regs)
		pci_iounmap(pdev, dev->regs);
	if (dev->regs_pad_held)
		release_resource(&dev->regs_pad);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	ida_free(&ivshm_ida, dev->index);
}

/*
 * memremap(MEMREMAP_WB) quietly settles for UC- where the MTRRs make the
 * range uncachable, as SeaBIOS does for the 32-bit PCI hole; user mappings
 * then get UC- too. Say so: every shared-memory access would be a bus
 * transaction. With SeaBIOS, a region too large for the hole (or OVMF)
 * puts BAR2 above 4 GiB, where it is write-back.
 */
static void ivshm_check_shm_cached(struct ivshm_dev *dev)
{
#ifdef CONFIG_X86
	unsigned int level;
	pte_t *pte = lookup_address((unsigned long)dev->shm, &level);

	if (pte && (pte_flags(*pte) & (_PAGE_PCD | _PAGE_PWT)))
		dev_warn(&dev->pdev->dev,
			 "BAR2 at %pa is uncachable (MTRR): shared memory will be slow; place it above 4 GiB\n",
			 &dev->shm_start);
#endif
}

static int ivshm_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct ivrdma_cmd_dev *cmd;
	struct ivshm_dev *dev;
	int ret;

	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;
	kref_init(&dev->ref);
	init_rwsem(&dev->lock);
	init_waitqueue_head(&dev->thaw_wq);
	mutex_init(&dev->files_lock);
	INIT_LIST_HEAD(&dev->files);
	spin_lock_init(&dev->irq_lock);
	INIT_LIST_HEAD(&dev->irq_files);
	dev->pdev = pci_dev_get(pdev);

	ret = ida_alloc(&ivshm_ida, GFP_KERNEL);
	if (ret < 0)
		goto err_free;
	dev->index = ret;
	snprintf(dev->name, sizeof(dev->name), "ivshmem%d", dev->index);

	ret = pci_enable_device(pdev);
	if (ret)
		goto err_ida;
	ret = pci_request_regions(pdev, KBUILD_MODNAME);
	if (ret)
		goto err_disable;
	if (!(pci_resource_flags(pdev, IVSHMEM_BAR_REGS) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, IVSHMEM_BAR_REGS) < IVSHMEM_REGS_MIN ||
	    !(pci_resource_flags(pdev, IVSHMEM_BAR_SHM) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, IVSHMEM_BAR_SHM) < PAGE_SIZE) {
		dev_err(&pdev->dev, "BAR0 or BAR2 missing or too small\n");
		ret = -ENODEV;
		goto err_regions;
	}
	dev->regs_start = pci_resource_start(pdev, IVSHMEM_BAR_REGS);
	dev->regs_size = pci_resource_len(pdev, IVSHMEM_BAR_REGS);
	dev->shm_start = pci_resource_start(pdev, IVSHMEM_BAR_SHM);
	dev->shm_size = pci_resource_len(pdev, IVSHMEM_BAR_SHM) & PAGE_MASK;
	dev->regs = pci_iomap(pdev, IVSHMEM_BAR_REGS, 0);
	if (!dev->regs) {
		ret = -ENOMEM;
		goto err_regions;
	}
	dev->shm = memremap(dev->shm_start, dev->shm_size, MEMREMAP_WB);
	if (!dev->shm) {
		dev_err(&pdev->dev, "cannot map BAR2 write-back\n");
		ret = -ENOMEM;
		goto err_regions;
	}
	ivshm_check_shm_cached(dev);
	ivshm_check_regs_mmap(dev);
	pci_set_master(pdev);	/* MSI-X messages are memory writes */
	ret = ivshm_setup_irqs(dev);
	if (ret) {
		dev_err(&pdev->dev, "cannot set up MSI-X: %d\n", ret);
		goto err_regions;
	}

	dev->misc.minor = MISC_DYNAMIC_MINOR;
	dev->misc.name = dev->name;
	dev->misc.fops = &ivshm_fops;
	dev->misc.parent = &pdev->dev;
	dev->misc.mode = mode;
	pci_set_drvdata(pdev, dev);
	ret = misc_register(&dev->misc);
	if (ret)
		goto err_regions;
	cmd = ivrdma_cmd_add(&pdev->dev, dev->index,
			     dev->misc.this_device->devt, dev->shm,
			     dev->shm_size, dev->nr_vectors);
	if (IS_ERR(cmd)) {
		ret = PTR_ERR(cmd);
		misc_deregister(&dev->misc);
		goto err_regions;
	}
	spin_lock_irq(&dev->irq_lock);
	dev->cmd = cmd;
	spin_unlock_irq(&dev->irq_lock);
	dev_info(&pdev->dev,
		 "/dev/%s, /dev/infiniband/ivrdma%d: BAR2 %llu MiB at %pa, %u MSI-X vectors, IVPosition %d%s\n",
		 dev->name, dev->index, dev->shm_size >> 20, &dev->shm_start,
		 dev->nr_vectors,
		 (s32)ioread32(dev->regs + IVRDMA_IVSHMEM_REG_IVPOSITION),
		 dev->regs_mmap ? "" : ", BAR0 not mappable");
	return 0;

err_regions:
	/* ivshm_teardown() from here: it copes with a partial setup. */
	pci_set_drvdata(pdev, NULL);
	ivshm_teardown(dev);
	kref_put(&dev->ref, ivshm_free);
	return ret;
err_disable:
	pci_disable_device(pdev);
err_ida:
	ida_free(&ivshm_ida, dev->index);
err_free:
	kref_put(&dev->ref, ivshm_free);
	return ret;
}

static void ivshm_remove(struct pci_dev *pdev)
{
	struct ivshm_dev *dev = pci_get_drvdata(pdev);
	struct ivrdma_cmd_dev *cmd;

	/* The interrupt handlers stop using it before it goes. */
	spin_lock_irq(&dev->irq_lock);
	cmd = dev->cmd;
	dev->cmd = NULL;
	spin_unlock_irq(&dev->irq_lock);
	ivrdma_cmd_remove(cmd);
	misc_deregister(&dev->misc);	/* no new opens */
	ivshm_kill(dev);
	ivshm_teardown(dev);
	pci_set_drvdata(pdev, NULL);
	dev_info(&pdev->dev, "/dev/%s removed\n", dev->name);
	kref_put(&dev->ref, ivshm_free);
}

static const struct pci_device_id ivshm_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, 0x1110) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ivshm_ids);

static struct pci_driver ivshm_driver = {
	.name = KBUILD_MODNAME,
	.id_table = ivshm_ids,
	.probe = ivshm_probe,
	.remove = ivshm_remove,
};
static int __init ivshm_init(void)
{
	int ret = pci_register_driver(&ivshm_driver);

	if (ret)
		return ret;
	ret = ivrdma_cmd_host_init();
	if (ret)
		pci_unregister_driver(&ivshm_driver);
	return ret;
}
module_init(ivshm_init);

static void __exit ivshm_exit(void)
{
	ivrdma_cmd_host_exit();
	pci_unregister_driver(&ivshm_driver);
}
module_exit(ivshm_exit);

MODULE_AUTHOR("ivrdma");
MODULE_DESCRIPTION("QEMU ivshmem device for ivrdma: WB-cached BAR2 mmap, MSI-X to eventfd");
MODULE_LICENSE("GPL");
