/* SPDX-License-Identifier: MIT */
/*
 * mmap, mremap and munmap as plain system calls, for moving registered
 * pages (provider/mr_move.c, the transports' map_at).
 *
 * A move is invisible to the application: the same bytes stay at the same
 * addresses. But memory-registration caches (UCX's ucm, Open MPI's
 * memory hooks) patch libc's mmap family and would take each move for the
 * application unmapping its buffers: they invalidate registrations in use,
 * and a message in flight on one was lost (MPICH over UCX hung). Calling
 * the kernel directly keeps the move out of their sight.
 */
#ifndef IVRDMA_SYS_MM_H
#define IVRDMA_SYS_MM_H

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* As mmap(2): the mapping, or MAP_FAILED with errno. */
static inline void *ivrdma_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/* As mremap(2) with MREMAP_MAYMOVE | MREMAP_FIXED: 0, or -1 with errno. */
static inline int ivrdma_sys_mremap_fixed(void *old, size_t len, void *new_addr)
{
	long r = syscall(SYS_mremap, old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, new_addr);

	return (void *)r == MAP_FAILED ? -1 : 0;
}

/*
 * Faults [addr, addr + len) in for writing with one system call
 * (MADV_POPULATE_WRITE, Linux 5.14). A move touches every page of a
 * registration, and one fault a page costs far more, most of all in a
 * virtual machine (a GiB: 30 s of faults against 2 s populated, measured
 * on the development VM). Best effort: where the kernel or the mapping
 * cannot (a guest's BAR is mapped whole already), pages fault in as they
 * are touched, as before.
 */
static inline void ivrdma_sys_populate_write(void *addr, size_t len)
{
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
	int saved = errno;

	(void)syscall(SYS_madvise, addr, len, MADV_POPULATE_WRITE);
	errno = saved;
}

/* As munmap(2): 0, or -1 with errno. */
static inline int ivrdma_sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

#endif /* IVRDMA_SYS_MM_H */
