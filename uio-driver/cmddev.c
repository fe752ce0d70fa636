// SPDX-License-Identifier: GPL-2.0
/*
 * The verbs command device of ivrdma_ivshmem: /dev/infiniband/ivrdmaN, one
 * per ivshmem device, and with the parameter host=1 also
 * /dev/infiniband/ivrdma_host, which has no ivshmem device behind it and
 * serves host processes (they reach the region through ivrdmad).
 *
 * libibverbs opens /dev/infiniband/<entry> as a context's cmd_fd and sends
 * it the kernel commands the provider does not handle itself. With no RDMA
 * core in the kernel, the one that matters is
 * IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL: a completion channel is a file the
 * application reads completion events from (and polls), and the provider
 * writes them into, one struct ib_uverbs_comp_event_desc per event, exactly
 * as it does into the pipe a host process gets. Every other command is
 * refused the way the uverbs core refuses a command it does not have, and
 * the verbs ioctl with ENOTTY, which makes libibverbs use write() commands
 * and read GIDs from sysfs.
 *
 * A channel is a bounded ring of records owned by its file; it does not
 * refer to the device, so it outlives unbind and unplug. A channel of
 * ivrdma_host also has an id, by which another process's producer posts
 * to it (IVRDMA_CMD_IOC_CHANNEL_POST). The command file
 * holds a reference to its command device, which is marked dead (every
 * command then fails with ENODEV) when the ivshmem device goes away;
 * ivrdma_host lives as long as the module, which open files keep loaded.
 *
 * A command file may also hold one word to store in BAR2 when it is
 * released (IVRDMA_CMD_IOC_ON_RELEASE): how the region hears that a
 * process in the VM ended, killed or not, while the VM lives on.
 *
 * And it may hold event rules (IVRDMA_CMD_IOC_EVENT_RULE): the interrupt
 * handler of a vector takes an event bit off a word of BAR2 and queues
 * the record on a channel itself, so the reader wakes once, from the
 * interrupt, not from the provider's event thread. Lock order: the
 * ivshmem device's irq_lock, then rules_lock, then a channel's lock; the
 * last two are taken in the interrupt handler, so with interrupts off
 * everywhere else.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hashtable.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <rdma/ib_user_verbs.h>

#include "ivrdma_cmd.h"
#include "ivrdma_ivshmem_uapi.h"

#define CHANNEL_DEPTH_MAX	65536
#define CHANNEL_WRITE_BATCH	16

static ushort cmd_mode = 0660;
module_param(cmd_mode, ushort, 0444);
MODULE_PARM_DESC(cmd_mode,
		 "Permissions of /dev/infiniband/ivrdmaN (default 0660: owner and group)");

static bool host;
module_param(host, bool, 0444);
MODULE_PARM_DESC(host,
		 "Also make /dev/infiniband/ivrdma_host: completion channels for host processes, no ivshmem device needed (default off)");

static uint channel_depth = 1024;
module_param(channel_depth, uint, 0644);
MODULE_PARM_DESC(channel_depth,
		 "Events a new completion channel queues before writes fail with EAGAIN (1..65536, default 1024)");

struct ivrdma_cmd_dev {
	struct kref ref;
	struct miscdevice misc;
	char name[24];
	char nodename[40];
	int index;
	dev_t ivshmem_devt;
	u32 info_flags;			/* IVRDMA_CMD_INFO_* */
	void *shm;			/* BAR2, while !dead; NULL: ivrdma_host */
	u64 shm_size;
	unsigned int nr_vectors;	/* the ivshmem device's, enabled */
	struct rw_semaphore lock;	/* read: a command; write: removal */
	bool dead;
	spinlock_t rules_lock;		/* rules, next_rule_id, nr_rules */
	struct list_head rules;
	u32 next_rule_id;
	atomic64_t events_posted;	/* records its rules or posts queued */
};

/* An open command file: its device, and the word it stores when released. */
struct ivrdma_cmd_file {
	struct ivrdma_cmd_dev *cdev;
	struct mutex lock;		/* the two fields below */
	bool on_release;
	struct ivrdma_cmd_on_release store;
	unsigned int nr_rules;		/* its rules, under cdev->rules_lock */
};

/* An event rule (IVRDMA_CMD_IOC_EVENT_RULE), on cdev->rules. */
struct ivrdma_event_rule {
	struct list_head node;
	struct ivrdma_cmd_file *owner;
	u32 id;
	unsigned int vector;
	u32 *word;			/* in BAR2 */
	u32 mask;
	u64 cq_handle;
	struct file *channel;		/* a reference of its own */
};

struct ivrdma_channel {
	spinlock_t lock;
	wait_queue_head_t wait;		/* readers and pollers */
	struct fasync_struct *async;
	unsigned int head;		/* the oldest record */
	unsigned int len;		/* records queued */
	unsigned int depth;
	u64 id;				/* ivrdma_host's: in host_channels; else 0 */
	struct hlist_node by_id;
	struct ib_uverbs_comp_event_desc ev[];
};

/*
 * ivrdma_host's channels by id, for posts from other processes
 * (IVRDMA_CMD_IOC_CHANNEL_POST). Taken before a channel's lock.
 */
static DEFINE_HASHTABLE(host_channels, 8);
static DEFINE_SPINLOCK(host_channels_lock);

/* ---- completion channels ---- */

/* Records were queued: wake readers and pollers, signal SIGIO owners. */
static void chan_readable(struct ivrdma_channel *ch)
{
	wake_up_interruptible_poll(&ch->wait, EPOLLIN | EPOLLRDNORM);
	kill_fasync(&ch->async, SIGIO, POLL_IN);
}

/* Queues {cq_handle} behind the records there. Under ch->lock, with room. */
static void chan_push_locked(struct ivrdma_channel *ch, u64 cq_handle)
{
	ch->ev[(ch->head + ch->len) % ch->depth].cq_handle = cq_handle;
	ch->len++;
}

/* Queues one record from another process: 0, or -EAGAIN if the channel is full. */
static int chan_post(struct ivrdma_channel *ch, u64 cq_handle)
{
	unsigned long flags;
	bool room;

	spin_lock_irqsave(&ch->lock, flags);
	room = ch->len < ch->depth;
	if (room)
		chan_push_locked(ch, cq_handle);
	spin_unlock_irqrestore(&ch->lock, flags);
	if (!room)
		return -EAGAIN;
	chan_readable(ch);
	return 0;
}

/* Gives @ch a new id and lists it in host_channels. */
static void chan_list(struct ivrdma_channel *ch)
{
	struct ivrdma_channel *other;
	u64 id;

	spin_lock(&host_channels_lock);
retry:
	id = get_random_u64() | IVRDMA_CHANNEL_ID_KERNEL;
	hash_for_each_possible(host_channels, other, by_id, id)
		if (other->id == id)
			goto retry;
	ch->id = id;
	hash_add(host_channels, &ch->by_id, id);
	spin_unlock(&host_channels_lock);
}

/* The channel listed under @id, or NULL. Under host_channels_lock. */
static struct ivrdma_channel *chan_find_locked(u64 id)
{
	struct ivrdma_channel *ch;

	hash_for_each_possible(host_channels, ch, by_id, id)
		if (ch->id == id)
			return ch;
	return NULL;
}

/* IVRDMA_CHAN_IOC_ID: 0, -EFAULT or -EOPNOTSUPP (a guest's channel). */
static long chan_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ivrdma_channel *ch = file->private_data;

	if (cmd != IVRDMA_CHAN_IOC_ID)
		return -ENOTTY;
	if (!ch->id)
		return -EOPNOTSUPP;
	return put_user(ch->id, (u64 __user *)arg);
}

static ssize_t chan_read(struct file *file, char __user *buf, size_t count,
			 loff_t *pos)
{
	struct ivrdma_channel *ch = file->private_data;
	struct ib_uverbs_comp_event_desc ev;
	int ret;

	/* One record per read, as the uverbs core's event files do. */
	if (count < sizeof(ev))
		return -EINVAL;
	spin_lock_irq(&ch->lock);
	while (!ch->len) {
		spin_unlock_irq(&ch->lock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(ch->wait, READ_ONCE(ch->len));
		if (ret)
			return ret;
		spin_lock_irq(&ch->lock);
	}
	ev = ch->ev[ch->head];
	ch->head = (ch->head + 1) % ch->depth;
	ch->len--;
	spin_unlock_irq(&ch->lock);
	wake_up_interruptible_poll(&ch->wait, EPOLLOUT | EPOLLWRNORM);
	if (copy_to_user(buf, &ev, sizeof(ev)))
		return -EFAULT;
	return sizeof(ev);
}

/*
 * Queues whole records; never blocks. Returns the bytes queued, or EAGAIN
 * if the queue was full: an unread channel must not grow without bound.
 */
static ssize_t chan_write(struct file *file, const char __user *buf,
			  size_t count, loff_t *pos)
{
	struct ivrdma_channel *ch = file->private_data;
	struct ib_uverbs_comp_event_desc ev[CHANNEL_WRITE_BATCH];
	size_t done = 0;

	if (!count || count % sizeof(ev[0]))
		return -EINVAL;
	while (done < count) {
		size_t n = min_t(size_t, (count - done) / sizeof(ev[0]),
				 CHANNEL_WRITE_BATCH);
		size_t i, queued;

		if (copy_from_user(ev, buf + done, n * sizeof(ev[0])))
			return done ? done : -EFAULT;
		spin_lock_irq(&ch->lock);
		queued = min_t(size_t, n, ch->depth - ch->len);
		for (i = 0; i < queued; i++)
			ch->ev[(ch->head + ch->len + i) % ch->depth] = ev[i];
		ch->len += queued;
		spin_unlock_irq(&ch->lock);
		if (queued)
			chan_readable(ch);
		done += queued * sizeof(ev[0]);
		if (queued < n)
			break;
	}
	return done ? done : -EAGAIN;
}

static __poll_t chan_poll(struct file *file, poll_table *wait)
{
	struct ivrdma_channel *ch = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &ch->wait, wait);
	spin_lock_irq(&ch->lock);
	if (ch->len)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (ch->len < ch->depth)
		mask |= EPOLLOUT | EPOLLWRNORM;
	spin_unlock_irq(&ch->lock);
	return mask;
}

static int chan_fasync(int fd, struct file *file, int on)
{
	struct ivrdma_channel *ch = file->private_data;

	return fasync_helper(fd, file, on, &ch->async);
}

static int chan_release(struct inode *inode, struct file *file)
{
	struct ivrdma_channel *ch = file->private_data;

	if (ch->id) {
		spin_lock(&host_channels_lock);
		hash_del(&ch->by_id);
		spin_unlock(&host_channels_lock);
	}
	kvfree(ch);
	return 0;
}

static const struct file_operations chan_fops = {
	.owner = THIS_MODULE,
	.read = chan_read,
	.write = chan_write,
	.poll = chan_poll,
	.fasync = chan_fasync,
	.unlocked_ioctl = chan_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = chan_release,
	.llseek = no_llseek,
};

/*
 * Makes a channel and its fd, and tells user space the fd at @uresp; a
 * @listed one (ivrdma_host's) gets an id others can post to.
 */
static int create_channel(struct ib_uverbs_create_comp_channel_resp __user *uresp,
			  bool listed)
{
	struct ib_uverbs_create_comp_channel_resp resp = {};
	unsigned int depth = clamp_t(unsigned int, READ_ONCE(channel_depth), 1,
				     CHANNEL_DEPTH_MAX);
	struct ivrdma_channel *ch;
	struct file *filp;
	int fd;

	ch = kvzalloc(struct_size(ch, ev, depth), GFP_KERNEL);
	if (!ch)
		return -ENOMEM;
	spin_lock_init(&ch->lock);
	init_waitqueue_head(&ch->wait);
	ch->depth = depth;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		kvfree(ch);
		return fd;
	}
	filp = anon_inode_getfile("[ivrdma-channel]", &chan_fops, ch, O_RDWR);
	if (IS_ERR(filp)) {
		put_unused_fd(fd);
		kvfree(ch);
		return PTR_ERR(filp);
	}
	resp.fd = fd;
	if (copy_to_user(uresp, &resp, sizeof(resp))) {
		put_unused_fd(fd);
		fput(filp);		/* chan_release() frees ch */
		return -EFAULT;
	}
	if (listed)
		chan_list(ch);
	fd_install(fd, filp);
	return 0;
}

/* ---- event rules ---- */

/* Takes the bits @mask off *@word: true if any was set. */
static bool take_bits(u32 *word, u32 mask)
{
	u32 old = READ_ONCE(*word);

	while (old & mask) {
		u32 seen = cmpxchg(word, old, old & ~mask);

		if (seen == old)
			return true;
		old = seen;
	}
	return false;
}

/*
 * One rule's work: with room in its channel (checked under the channel's
 * lock, so that it stays), the bits come off and the record goes in.
 * Returns true if a record was queued.
 */
static bool rule_fire(struct ivrdma_event_rule *r)
{
	struct ivrdma_channel *ch = r->channel->private_data;
	bool queued = false;

	spin_lock(&ch->lock);
	if (ch->len < ch->depth && take_bits(r->word, r->mask)) {
		chan_push_locked(ch, r->cq_handle);
		queued = true;
	}
	spin_unlock(&ch->lock);
	if (queued)
		chan_readable(ch);
	return queued;
}

void ivrdma_cmd_irq(struct ivrdma_cmd_dev *cdev, unsigned int vector)
{
	struct ivrdma_event_rule *r;

	spin_lock(&cdev->rules_lock);
	list_for_each_entry(r, &cdev->rules, node)
		if (r->vector == vector && rule_fire(r))
			atomic64_inc(&cdev->events_posted);
	spin_unlock(&cdev->rules_lock);
}

static void rule_free(struct ivrdma_event_rule *r)
{
	fput(r->channel);
	kfree(r);
}

/* Takes the rules of @owner (every rule if NULL) off the device, then frees them. */
static void rules_drop(struct ivrdma_cmd_dev *cdev, struct ivrdma_cmd_file *owner)
{
	struct ivrdma_event_rule *r, *next;
	LIST_HEAD(gone);

	spin_lock_irq(&cdev->rules_lock);
	list_for_each_entry_safe(r, next, &cdev->rules, node) {
		if (owner && r->owner != owner)
			continue;
		r->owner->nr_rules--;
		list_move(&r->node, &gone);
	}
	spin_unlock_irq(&cdev->rules_lock);
	list_for_each_entry_safe(r, next, &gone, node)
		rule_free(r);
}

/* Is @offset that of a whole, aligned 32-bit word of BAR2? */
static bool shm_word_ok(const struct ivrdma_cmd_dev *cdev, u64 offset)
{
	return !(offset % sizeof(u32)) && offset < cdev->shm_size &&
	       cdev->shm_size - offset >= sizeof(u32);
}

/* The request's fields, checked: 0 or -EINVAL. */
static int rule_check(const struct ivrdma_cmd_dev *cdev,
		      const struct ivrdma_cmd_event_rule *req)
{
	if (!shm_word_ok(cdev, req->offset) || !req->mask ||
	    req->vector >= cdev->nr_vectors || req->reserved[0] ||
	    req->reserved[1])
		return -EINVAL;
	return 0;
}

/* Links @r in under a new id, unless its file has too many: 0 or -ENOSPC. */
static int rule_add(struct ivrdma_cmd_dev *cdev, struct ivrdma_event_rule *r)
{
	int ret = 0;

	spin_lock_irq(&cdev->rules_lock);
	if (r->owner->nr_rules >= IVRDMA_CMD_EVENT_RULES_MAX) {
		ret = -ENOSPC;
	} else {
		r->id = ++cdev->next_rule_id ? cdev->next_rule_id
					      : ++cdev->next_rule_id;
		r->owner->nr_rules++;
		list_add_tail(&r->node, &cdev->rules);
	}
	spin_unlock_irq(&cdev->rules_lock);
	return ret;
}

/*
 * IVRDMA_CMD_IOC_EVENT_RULE: 0, -EACCES, -EFAULT, -EINVAL, -EBADF,
 * -ENOSPC, -ENOMEM, -EOPNOTSUPP or -ENODEV. Like ON_RELEASE, it lets
 * whoever may open this file change a word of BAR2, which /dev/ivshmemN
 * grants them anyway (cmd_mode no wider than mode).
 */
static long cmd_ioc_event_rule(struct file *file, void __user *argp)
{
	struct ivrdma_cmd_file *cf = file->private_data;
	struct ivrdma_cmd_dev *cdev = cf->cdev;
	struct ivrdma_cmd_event_rule req;
	struct ivrdma_event_rule *r;
	long ret;

	if (file->f_cred != current_cred())
		return -EACCES;
	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (!cdev->shm)
		return -EOPNOTSUPP;
	ret = rule_check(cdev, &req);
	if (ret)
		return ret;
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	r->channel = fget(req.channel_fd);
	if (!r->channel || r->channel->f_op != &chan_fops) {
		if (r->channel)
			fput(r->channel);
		kfree(r);
		return -EBADF;
	}
	r->owner = cf;
	r->vector = req.vector;
	r->word = (u32 *)((u8 *)cdev->shm + req.offset);
	r->mask = req.mask;
	r->cq_handle = req.cq_handle;

	down_read(&cdev->lock);
	ret = cdev->dead ? -ENODEV : rule_add(cdev, r);
	up_read(&cdev->lock);
	if (!ret) {
		req.id = r->id;
		if (copy_to_user(argp, &req, sizeof(req)))
			ret = -EFAULT;	/* the rule stays: the file's release ends it */
	} else {
		rule_free(r);
	}
	return ret;
}

/*
 * IVRDMA_CMD_IOC_CHANNEL_POST: 0, -EFAULT, -EINVAL, -EOPNOTSUPP, -ENOENT
 * or -EAGAIN.
 */
static long cmd_ioc_channel_post(struct ivrdma_cmd_dev *cdev, void __user *argp)
{
	struct ivrdma_cmd_channel_post req;
	struct ivrdma_channel *ch;
	long ret = -ENOENT;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (!(cdev->info_flags & IVRDMA_CMD_INFO_HOST))
		return -EOPNOTSUPP;
	if (req.reserved)
		return -EINVAL;
	spin_lock(&host_channels_lock);
	ch = chan_find_locked(req.channel_id);
	if (ch)
		ret = chan_post(ch, req.cq_handle);
	spin_unlock(&host_channels_lock);
	if (!ret)
		atomic64_inc(&cdev->events_posted);
	return ret;
}

/* IVRDMA_CMD_IOC_EVENT_RULE_CANCEL: 0, -EFAULT or -ENOENT. */
static long cmd_ioc_event_rule_cancel(struct ivrdma_cmd_file *cf,
				      u32 __user *argp)
{
	struct ivrdma_cmd_dev *cdev = cf->cdev;
	struct ivrdma_event_rule *r, *found = NULL;
	u32 id;

	if (get_user(id, argp))
		return -EFAULT;
	spin_lock_irq(&cdev->rules_lock);
	list_for_each_entry(r, &cdev->rules, node)
		if (r->owner == cf && r->id == id) {
			list_del(&r->node);
			cf->nr_rules--;
			found = r;
			break;
		}
	spin_unlock_irq(&cdev->rules_lock);
	if (!found)
		return -ENOENT;
	rule_free(found);
	return 0;
}

static ssize_t events_posted_show(struct device *dev,
				  struct device_attribute *attr, char *buf)
{
	struct miscdevice *misc = dev_get_drvdata(dev);
	struct ivrdma_cmd_dev *cdev = container_of(misc, struct ivrdma_cmd_dev,
						   misc);

	return sysfs_emit(buf, "%lld\n",
			  (long long)atomic64_read(&cdev->events_posted));
}
static DEVICE_ATTR_RO(events_posted);

static struct attribute *cmd_attrs[] = {
	&dev_attr_events_posted.attr,
	NULL,
};
ATTRIBUTE_GROUPS(cmd);

/* ---- the command file ---- */

static void cmd_free(struct kref *ref)
{
	kfree(container_of(ref, struct ivrdma_cmd_dev, ref));
}

static ssize_t cmd_write(struct file *file, const char __user *buf,
			 size_t count, loff_t *pos)
{
	struct ivrdma_cmd_file *cf = file->private_data;
	struct ivrdma_cmd_dev *cdev = cf->cdev;
	struct ib_uverbs_create_comp_channel cmd;
	struct ib_uverbs_cmd_hdr hdr;
	ssize_t ret;

	/*
	 * A command names a user address the answer is written to: accept
	 * it only from whoever opened the file, as the uverbs core does (a
	 * setuid program's stderr must not become a way to write memory).
	 */
	if (file->f_cred != current_cred())
		return -EACCES;
	if (count < sizeof(hdr))
		return -EINVAL;
	if (copy_from_user(&hdr, buf, sizeof(hdr)))
		return -EFAULT;
	if (hdr.command & ~(IB_USER_VERBS_CMD_FLAG_EXTENDED |
			    IB_USER_VERBS_CMD_COMMAND_MASK))
		return -EINVAL;
	if (hdr.command != IB_USER_VERBS_CMD_CREATE_COMP_CHANNEL)
		return -EOPNOTSUPP;
	if ((size_t)hdr.in_words * 4 != count ||
	    count < sizeof(hdr) + sizeof(cmd))
		return -EINVAL;
	if ((size_t)hdr.out_words * 4 <
	    sizeof(struct ib_uverbs_create_comp_channel_resp))
		return -ENOSPC;
	if (copy_from_user(&cmd, buf + sizeof(hdr), sizeof(cmd)))
		return -EFAULT;

	down_read(&cdev->lock);
	if (cdev->dead)
		ret = -ENODEV;
	else
		ret = create_channel(u64_to_user_ptr(cmd.response),
				     cdev->info_flags & IVRDMA_CMD_INFO_HOST);
	up_read(&cdev->lock);
	return ret ? ret : count;
}

static long cmd_ioc_info(struct ivrdma_cmd_dev *cdev, void __user *argp)
{
	struct ivrdma_cmd_info info = {
		.abi_version = IVRDMA_IVSHMEM_ABI_VERSION,
		.index = cdev->index,
		.ivshmem_major = MAJOR(cdev->ivshmem_devt),
		.ivshmem_minor = MINOR(cdev->ivshmem_devt),
		.channel_depth = clamp_t(unsigned int, READ_ONCE(channel_depth),
					 1, CHANNEL_DEPTH_MAX),
		.flags = cdev->info_flags,
	};
	bool dead;

	down_read(&cdev->lock);
	dead = cdev->dead;
	up_read(&cdev->lock);
	if (dead)
		return -ENODEV;
	return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
}

/*
 * IVRDMA_CMD_IOC_ON_RELEASE: 0, -EACCES, -EFAULT, -EINVAL, -EOPNOTSUPP or
 * -ENODEV. It grants no more than /dev/ivshmemN as long as cmd_mode is no
 * wider than mode (the defaults; the udev rule gives both one group):
 * whoever may open this file may then map BAR2 and write any word of it.
 * As for a command, only whoever opened the file may ask.
 */
static long cmd_ioc_on_release(struct file *file, void __user *argp)
{
	struct ivrdma_cmd_file *cf = file->private_data;
	struct ivrdma_cmd_dev *cdev = cf->cdev;
	struct ivrdma_cmd_on_release req;
	long ret = 0;

	if (file->f_cred != current_cred())
		return -EACCES;
	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (!cdev->shm)
		return -EOPNOTSUPP;
	if (!shm_word_ok(cdev, req.offset))
		return -EINVAL;
	down_read(&cdev->lock);
	if (cdev->dead) {
		ret = -ENODEV;
	} else {
		mutex_lock(&cf->lock);
		cf->store = req;
		cf->on_release = true;
		mutex_unlock(&cf->lock);
	}
	up_read(&cdev->lock);
	return ret;
}

/* Everything but ours, the verbs ioctl included, is ENOTTY. */
static long cmd_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ivrdma_cmd_file *cf = file->private_data;

	switch (cmd) {
	case IVRDMA_CMD_IOC_INFO:
		return cmd_ioc_info(cf->cdev, (void __user *)arg);
	case IVRDMA_CMD_IOC_ON_RELEASE:
		return cmd_ioc_on_release(file, (void __user *)arg);
	case IVRDMA_CMD_IOC_ON_RELEASE_CANCEL:
		mutex_lock(&cf->lock);
		cf->on_release = false;
		mutex_unlock(&cf->lock);
		return 0;
	case IVRDMA_CMD_IOC_EVENT_RULE:
		return cmd_ioc_event_rule(file, (void __user *)arg);
	case IVRDMA_CMD_IOC_EVENT_RULE_CANCEL:
		return cmd_ioc_event_rule_cancel(cf, (u32 __user *)arg);
	case IVRDMA_CMD_IOC_CHANNEL_POST:
		return cmd_ioc_channel_post(cf->cdev, (void __user *)arg);
	}
	return -ENOTTY;
}

static int cmd_open(struct inode *inode, struct file *file)
{
	/* misc_open() set private_data; misc_deregister() cannot race us. */
	struct miscdevice *misc = file->private_data;
	struct ivrdma_cmd_dev *cdev = container_of(misc, struct ivrdma_cmd_dev,
						   misc);
	struct ivrdma_cmd_file *cf = kzalloc(sizeof(*cf), GFP_KERNEL);

	if (!cf)
		return -ENOMEM;
	mutex_init(&cf->lock);
	kref_get(&cdev->ref);
	cf->cdev = cdev;
	file->private_data = cf;
	return nonseekable_open(inode, file);
}

/*
 * The word of IVRDMA_CMD_IOC_ON_RELEASE, if one is set and BAR2 is still
 * mapped (removal waits for the read lock): a compare-and-swap, as every
 * participant of the region changes a word another may change.
 */
static void cmd_store_on_release(struct ivrdma_cmd_file *cf)
{
	struct ivrdma_cmd_dev *cdev = cf->cdev;

	if (!cf->on_release)
		return;
	down_read(&cdev->lock);
	if (!cdev->dead)
		cmpxchg((u32 *)((u8 *)cdev->shm + cf->store.offset),
			cf->store.expect, cf->store.value);
	up_read(&cdev->lock);
}

static int cmd_release(struct inode *inode, struct file *file)
{
	struct ivrdma_cmd_file *cf = file->private_data;

	rules_drop(cf->cdev, cf);
	cmd_store_on_release(cf);
	kref_put(&cf->cdev->ref, cmd_free);
	mutex_destroy(&cf->lock);
	kfree(cf);
	return 0;
}

static const struct file_operations cmd_fops = {
	.owner = THIS_MODULE,
	.open = cmd_open,
	.release = cmd_release,
	.write = cmd_write,
	.unlocked_ioctl = cmd_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

/* Registers the misc device of @cdev, whose name is set; frees it on failure. */
static struct ivrdma_cmd_dev *cmd_register(struct ivrdma_cmd_dev *cdev,
					   struct device *parent)
{
	int ret;

	kref_init(&cdev->ref);
	init_rwsem(&cdev->lock);
	spin_lock_init(&cdev->rules_lock);
	INIT_LIST_HEAD(&cdev->rules);
	snprintf(cdev->nodename, sizeof(cdev->nodename), "infiniband/%s",
		 cdev->name);
	cdev->misc.minor = MISC_DYNAMIC_MINOR;
	cdev->misc.name = cdev->name;
	cdev->misc.nodename = cdev->nodename;
	cdev->misc.fops = &cmd_fops;
	cdev->misc.parent = parent;
	cdev->misc.mode = cmd_mode;
	cdev->misc.groups = cmd_groups;
	ret = misc_register(&cdev->misc);
	if (ret) {
		kfree(cdev);
		return ERR_PTR(ret);
	}
	return cdev;
}

struct ivrdma_cmd_dev *ivrdma_cmd_add(struct device *parent, int index,
				      dev_t ivshmem_devt, void *shm,
				      u64 shm_size, unsigned int nr_vectors)
{
	struct ivrdma_cmd_dev *cdev = kzalloc(sizeof(*cdev), GFP_KERNEL);

	if (!cdev)
		return ERR_PTR(-ENOMEM);
	cdev->index = index;
	cdev->ivshmem_devt = ivshmem_devt;
	cdev->shm = shm;
	cdev->shm_size = shm_size;
	cdev->nr_vectors = nr_vectors;
	snprintf(cdev->name, sizeof(cdev->name), "ivrdma%d", index);
	return cmd_register(cdev, parent);
}

/*
 * The host-mode command device: its channels are the same files as a
 * guest's, and have ids, by which producers in other processes post to
 * them (IVRDMA_CMD_IOC_CHANNEL_POST) as they cannot reach the file.
 */
static struct ivrdma_cmd_dev *host_cdev;

int ivrdma_cmd_host_init(void)
{
	struct ivrdma_cmd_dev *cdev;

	if (!host)
		return 0;
	cdev = kzalloc(sizeof(*cdev), GFP_KERNEL);
	if (!cdev)
		return -ENOMEM;
	cdev->info_flags = IVRDMA_CMD_INFO_HOST;
	snprintf(cdev->name, sizeof(cdev->name), "ivrdma_host");
	cdev = cmd_register(cdev, NULL);
	if (IS_ERR(cdev))
		return PTR_ERR(cdev);
	host_cdev = cdev;
	pr_info("/dev/%s: completion channels for host processes\n",
		cdev->nodename);
	return 0;
}

void ivrdma_cmd_host_exit(void)
{
	if (host_cdev)
		ivrdma_cmd_remove(host_cdev);
	host_cdev = NULL;
}

void ivrdma_cmd_remove(struct ivrdma_cmd_dev *cdev)
{
	misc_deregister(&cdev->misc);	/* no new opens */
	down_write(&cdev->lock);
	cdev->dead = true;
	up_write(&cdev->lock);
	rules_drop(cdev, NULL);		/* BAR2 goes next */
	kref_put(&cdev->ref, cmd_free);
}
