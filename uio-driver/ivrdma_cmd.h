/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The verbs command device, /dev/infiniband/ivrdmaN (cmddev.c), as the
 * ivshmem part of the module (ivshm.c) sees it.
 */
#ifndef _IVRDMA_CMD_H
#define _IVRDMA_CMD_H

#include <linux/device.h>
#include <linux/types.h>

struct ivrdma_cmd_dev;

/*
 * Registers /dev/infiniband/ivrdma<index> for the ivshmem device whose
 * node is @ivshmem_devt, whose BAR2 is mapped at @shm (@shm_size bytes)
 * until ivrdma_cmd_remove() and which has @nr_vectors MSI-X vectors.
 * Returns the command device or an ERR_PTR.
 */
struct ivrdma_cmd_dev *ivrdma_cmd_add(struct device *parent, int index,
				      dev_t ivshmem_devt, void *shm,
				      u64 shm_size, unsigned int nr_vectors);

/*
 * Vector @vector of the ivshmem device fired: runs the event rules
 * (IVRDMA_CMD_IOC_EVENT_RULE) of that vector. From the interrupt handler,
 * before it signals the vector's eventfds, and never after
 * ivrdma_cmd_remove() has begun.
 */
void ivrdma_cmd_irq(struct ivrdma_cmd_dev *cdev, unsigned int vector);

/*
 * Registers /dev/infiniband/ivrdma_host if the module parameter host is
 * set (else does nothing). Returns 0 or a negative errno.
 */
int ivrdma_cmd_host_init(void);

/* Removes /dev/infiniband/ivrdma_host, if it was registered. */
void ivrdma_cmd_host_exit(void);

/*
 * Removes the node; open command files fail every command with ENODEV
 * from now on (and store nothing in BAR2 when released), channels
 * already made keep working.
 */
void ivrdma_cmd_remove(struct ivrdma_cmd_dev *cdev);

#endif /* _IVRDMA_CMD_H */
