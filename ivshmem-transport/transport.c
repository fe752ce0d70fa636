// SPDX-License-Identifier: MIT
/* The backend-independent half of ivshmem-transport. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "region.h"
#include "transport_internal.h"

int ivt_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

int ivt_read_nr_vectors(const void *base, uint64_t size, unsigned int *nr_vectors, char *err,
			size_t errlen)
{
	struct ivrdma_region r;
	const char *why = NULL;
	int rc = ivrdma_region_open(&r, (void *)base, size, &why);

	if (rc)
		return ivt_fail(err, errlen, rc, "region rejected: %s", why);
	*nr_vectors = r.nr_vectors;
	return 0;
}

static const struct ivt_backend_ops *backend_ops(enum ivt_backend b)
{
	switch (b) {
	case IVT_BACKEND_HOST:
		return &ivt_host_ops;
	case IVT_BACKEND_GUEST:
		return &ivt_guest_ops;
	}
	return NULL;
}

int ivt_attach(const struct ivt_options *opts, struct ivt **out, char *err, size_t errlen)
{
	const struct ivt_backend_ops *ops = backend_ops(opts->backend);
	struct ivt *t;
	int rc;

	if (!ops)
		return ivt_fail(err, errlen, -EOPNOTSUPP, "transport backend %d not available",
				opts->backend);
	if (!opts->path)
		return ivt_fail(err, errlen, -EINVAL, "no path to attach to");
	t = calloc(1, sizeof(*t));
	if (!t)
		return ivt_fail(err, errlen, -ENOMEM, "out of memory");
	t->ops = ops;
	t->peer_id = -1;
	t->control_fd = -1;
	t->on_peer = opts->on_peer;
	t->cb_arg = opts->cb_arg;
	for (unsigned int i = 0; i < IVRDMA_MAX_VECTORS; i++)
		t->vector_fds[i] = -1;
	rc = ops->attach(t, opts, err, errlen);
	if (rc) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void ivt_detach(struct ivt *t)
{
	if (!t)
		return;
	t->ops->detach(t);
	free(t);
}

const char *ivt_backend_name(const struct ivt *t)
{
	return t->ops->name;
}

void *ivt_region_base(const struct ivt *t)
{
	return t->base;
}

uint64_t ivt_region_size(const struct ivt *t)
{
	return t->size;
}

int ivt_peer_id(const struct ivt *t)
{
	return t->peer_id;
}

unsigned int ivt_nr_vectors(const struct ivt *t)
{
	return t->nr_vectors;
}

bool ivt_peer_known(struct ivt *t, uint16_t peer)
{
	return t->ops->peer_known(t, peer);
}

int ivt_map_at(struct ivt *t, void *addr, uint64_t offset, size_t len, int prot)
{
	long page = sysconf(_SC_PAGESIZE);

	if (((uintptr_t)addr | offset | len) & (uint64_t)(page - 1) || len == 0)
		return -EINVAL;
	if (offset > t->size || len > t->size - offset)
		return -ERANGE;
	return t->ops->map_at(t, addr, offset, len, prot);
}

int ivt_hold_pages(struct ivt *t, void *addr, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);

	if (((uintptr_t)addr | len) & (uint64_t)(page - 1) || len == 0)
		return -EINVAL;
	return t->ops->hold_pages ? t->ops->hold_pages(t, addr, len) : -EOPNOTSUPP;
}

int ivt_ring(struct ivt *t, uint16_t peer, uint16_t vector)
{
	if (vector >= t->nr_vectors)
		return -EINVAL;
	return t->ops->ring(t, peer, vector);
}

int ivt_vector_fd(const struct ivt *t, uint16_t vector)
{
	return vector < t->nr_vectors ? t->vector_fds[vector] : -1;
}

int64_t ivt_consume(struct ivt *t, uint16_t vector)
{
	uint64_t count;
	ssize_t n;

	if (vector >= t->nr_vectors)
		return -EINVAL;
	do {
		n = read(t->vector_fds[vector], &count, sizeof(count));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return n == sizeof(count) ? (int64_t)count : -EIO;
}

int ivt_wait(struct ivt *t, uint64_t mask, int timeout_ms, uint64_t *fired)
{
	struct pollfd pfd[IVRDMA_MAX_VECTORS];
	unsigned int vec[IVRDMA_MAX_VECTORS];
	int count = 0;
	nfds_t n = 0;
	int rc;

	*fired = 0;
	for (unsigned int v = 0; v < t->nr_vectors; v++) {
		if (!(mask & (1ull << v)))
			continue;
		pfd[n] = (struct pollfd){.fd = t->vector_fds[v], .events = POLLIN};
		vec[n++] = v;
	}
	if (n == 0)
		return -EINVAL;
	do {
		rc = poll(pfd, n, timeout_ms);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	for (nfds_t i = 0; i < n; i++) {
		if ((pfd[i].revents & POLLIN) && ivt_consume(t, (uint16_t)vec[i]) > 0) {
			*fired |= 1ull << vec[i];
			count++;
		}
	}
	return count;
}

int ivt_control_fd(const struct ivt *t)
{
	return t->control_fd;
}

int ivt_process_control(struct ivt *t)
{
	return t->ops->process_control(t);
}

int ivt_reconnect(struct ivt *t)
{
	return t->ops->reconnect ? t->ops->reconnect(t) : -EOPNOTSUPP;
}
