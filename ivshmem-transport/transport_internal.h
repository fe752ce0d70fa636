/* SPDX-License-Identifier: MIT */
/* What the generic transport and its backends share. */
#ifndef IVT_INTERNAL_H
#define IVT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "ivshmem_transport.h"
#include "ivrdma_layout.h"

struct ivt;

struct ivt_backend_ops {
	const char *name;
	int (*attach)(struct ivt *t, const struct ivt_options *opts, char *err, size_t errlen);
	void (*detach)(struct ivt *t);
	int (*map_at)(struct ivt *t, void *addr, uint64_t offset, size_t len, int prot);
	int (*ring)(struct ivt *t, uint16_t peer, uint16_t vector);
	bool (*peer_known)(struct ivt *t, uint16_t peer);
	int (*process_control)(struct ivt *t);
	int (*hold_pages)(struct ivt *t, void *addr, size_t len); /* NULL: none */
	int (*reconnect)(struct ivt *t);			  /* NULL: none */
};

struct ivt {
	const struct ivt_backend_ops *ops;
	void *base;
	uint64_t size;
	int peer_id;
	unsigned int nr_vectors;
	int vector_fds[IVRDMA_MAX_VECTORS]; /* mine: eventfds, readable when rung */
	int control_fd;
	ivt_peer_cb on_peer;
	void *cb_arg;
	void *priv; /* the backend's */
};

extern const struct ivt_backend_ops ivt_host_ops;
extern const struct ivt_backend_ops ivt_guest_ops;

/* Formats a message into err (never NULL-unsafe) and returns rc. */
int ivt_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reads nr_vectors from a freshly mapped region, validating the header. */
int ivt_read_nr_vectors(const void *base, uint64_t size, unsigned int *nr_vectors, char *err,
			size_t errlen);

#endif /* IVT_INTERNAL_H */
