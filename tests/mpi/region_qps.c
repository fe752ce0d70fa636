// SPDX-License-Identifier: MIT
/*
 * Prints the live QPs and open verbs contexts of one region, read from its
 * backing file (read-only, nothing written): what `ivrdma status` does not
 * show, each QP's destination (LID and QPN, set at RTR). Used by
 * run-two-regions.sh to check that every connected QP's peer is a QP of
 * the same region that points back.
 *
 * usage: region_qps PATH
 * output, one line each:
 *   node LID NAME
 *   ctx PID
 *   qp QPN TYPE STATE DEST_LID DEST_QPN PID
 * TYPE is enum ibv_qp_type (RC 2, UC 3, UD 4), STATE enum ibv_qp_state;
 * PID is the owning context's process (0 if the record is not readable).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "region.h"
#include "shm_atomic.h"

static uint32_t qp_pid(const struct ivrdma_region *r, const struct ivrdma_qp_slot *q)
{
	uint32_t ref = __atomic_load_n(&q->context, __ATOMIC_RELAXED);
	const struct ivrdma_ctx_slot *c;

	if (!ref)
		return 0;
	c = ivrdma_table_entry(r, &r->ctxs, ref - 1);
	if (!c ||
	    shm_load_acquire32(&c->hdr.seq) != __atomic_load_n(&q->context_seq, __ATOMIC_RELAXED))
		return 0;
	return __atomic_load_n(&c->pid, __ATOMIC_RELAXED);
}

int main(int argc, char **argv)
{
	struct ivrdma_region r;
	const char *why;
	struct stat st;
	void *base;
	int fd;

	if (argc != 2) {
		fputs("usage: region_qps PATH\n", stderr);
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "region_qps: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED) {
		fprintf(stderr, "region_qps: mmap %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (ivrdma_region_open(&r, base, (uint64_t)st.st_size, &why)) {
		fprintf(stderr, "region_qps: %s: %s\n", argv[1], why);
		return 1;
	}
	for (uint32_t i = 0; i < r.nodes.entries; i++) {
		const struct ivrdma_node *n = ivrdma_region_node(&r, i);

		if (n && n->lid)
			printf("node %u %.*s\n", n->lid, (int)sizeof(n->name), n->name);
	}
	for (uint32_t i = 0; i < r.ctxs.entries; i++) {
		const struct ivrdma_ctx_slot *c = ivrdma_table_entry(&r, &r.ctxs, i);

		if (shm_load_acquire32(&c->hdr.owner) &&
		    shm_load_acquire32(&c->state) == IVRDMA_CTX_OPEN)
			printf("ctx %u\n", __atomic_load_n(&c->pid, __ATOMIC_RELAXED));
	}
	for (uint32_t i = 0; i < r.qps.entries; i++) {
		const struct ivrdma_qp_slot *q = ivrdma_table_entry(&r, &r.qps, i);

		if (!shm_load_acquire32(&q->hdr.owner))
			continue;
		printf("qp %u %u %u %u %u %u\n", __atomic_load_n(&q->qpn, __ATOMIC_RELAXED),
		       __atomic_load_n(&q->qp_type, __ATOMIC_RELAXED),
		       shm_load_acquire32(&q->state),
		       __atomic_load_n(&q->dest_lid, __ATOMIC_RELAXED),
		       __atomic_load_n(&q->dest_qpn, __ATOMIC_RELAXED), qp_pid(&r, q));
	}
	return 0;
}
