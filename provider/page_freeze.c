// SPDX-License-Identifier: MIT
/*
 * Holding other threads' writes off pages while they move (mr_move.c).
 *
 * Moving a span copies its pages, then maps new pages over the same
 * addresses. The span is whole pages, so it also holds whatever else the
 * heap put next to the registered buffer: a mutex, a list head, a
 * provider object. A store another thread makes to those bytes between
 * the copy and the new mapping would be lost (a lost unlock hangs a
 * waiter; a lost NULL leaves a freed pointer behind). So the pages are
 * write-protected with userfaultfd first: such a writer sleeps in its
 * page fault until the new pages are in, then its store lands in them.
 * Readers go on.
 *
 * Where userfaultfd is not allowed (no CAP_SYS_PTRACE: then only faults
 * from user mode are held, and a system call writing into the span in
 * that window fails with EFAULT instead; or a sandbox without the system
 * call), the move goes on unprotected, as before: the window is one copy
 * of the span. A guest's BAR cannot be write-protected: pages going from
 * it back to private memory are held by the driver instead (IOC_HOLD,
 * swap_private in mr_move.c); pages moving into it are private ones,
 * which userfaultfd protects.
 *
 * All under the span lock of mr_move.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ivrdma.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static int open_uffd(void)
{
	/* Shared pages (the region, on the way out) need this feature. */
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		api.features = 0; /* an older kernel: private pages only */
		if (ioctl(fd, UFFDIO_API, &api) < 0) {
			int rc = -errno;

			close(fd);
			return rc;
		}
	}
	return fd;
}

/* The context's userfaultfd, opened on first use; -1 once it is known to be unavailable. */
static int uffd_of(struct ivrdma_context *ctx)
{
	if (ctx->uffd == IVRDMA_UFFD_UNOPENED) {
		int fd = open_uffd();

		if (fd < 0)
			ivrdma_dbg(
			    "userfaultfd unavailable (%s): registered pages move unprotected",
			    strerror(-fd));
		ctx->uffd = fd < 0 ? -1 : fd;
	}
	return ctx->uffd;
}

static bool populate_edges(uintptr_t start, uintptr_t end)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (madvise((void *)start, page, MADV_POPULATE_WRITE) < 0)
		return false;
	return end - start == page || madvise((void *)(end - page), page, MADV_POPULATE_WRITE) == 0;
}

bool ivrdma_pages_freeze(struct ivrdma_context *ctx, uintptr_t start, uintptr_t end, bool private)
{
	struct uffdio_register reg = {
	    .range = {.start = start, .len = end - start},
	    .mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
	    .range = reg.range,
	    .mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	int fd = uffd_of(ctx);
	sigset_t all;

	if (fd < 0)
		return false;
	/*
	 * A private page never touched has no page table entry to protect
	 * (this kernel cannot mark one), so a first write to it would not
	 * wait. The first and last pages are populated: there the heap keeps
	 * other data beside the buffer. Populating the whole span would
	 * allocate every untouched page of a large sparse buffer once more;
	 * inside the buffer only a first write racing its own registration
	 * is unprotected. Populating keeps contents; pages of spans being
	 * merged are the region's already, where it changes nothing.
	 */
	if (private && !populate_edges(start, end))
		return false;
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return false;
	/*
	 * A signal handler of this very thread storing into the span would
	 * wait for this thread's own thaw, for ever: none runs until then.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &ctx->freeze_sigmask);
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		ioctl(fd, UFFDIO_UNREGISTER, &reg.range);
		pthread_sigmask(SIG_SETMASK, &ctx->freeze_sigmask, NULL);
		return false;
	}
	return true;
}

void ivrdma_pages_thaw(struct ivrdma_context *ctx, uintptr_t start, uintptr_t end, bool replaced)
{
	struct uffdio_range range = {.start = start, .len = end - start};
	struct uffdio_writeprotect wp = {.range = range, .mode = 0};

	if (!replaced) {
		/* The old pages stay: lifting the protection wakes the writers. */
		ioctl(ctx->uffd, UFFDIO_WRITEPROTECT, &wp);
		ioctl(ctx->uffd, UFFDIO_UNREGISTER, &range);
	} else if (ioctl(ctx->uffd, UFFDIO_WAKE, &range) < 0) {
		/* The new mapping took the registration with it: wake the writers into it. */
		ivrdma_dbg("cannot wake writers held at %#lx: %m", (unsigned long)start);
	}
	pthread_sigmask(SIG_SETMASK, &ctx->freeze_sigmask, NULL);
}

void ivrdma_pages_release(struct ivrdma_context *ctx)
{
	if (ctx->uffd >= 0)
		close(ctx->uffd);
	ctx->uffd = IVRDMA_UFFD_UNOPENED;
}
