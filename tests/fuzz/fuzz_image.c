// SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_image.h"

static uint8_t *image;

uint8_t *fuzz_image(void)
{
	long page = sysconf(_SC_PAGESIZE);

	if (image) {
		if (madvise(image, FUZZ_IMAGE_SIZE, MADV_DONTNEED))
			abort();
		return image;
	}
	image = mmap(NULL, FUZZ_IMAGE_SIZE + (size_t)page, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (image == MAP_FAILED || mprotect(image + FUZZ_IMAGE_SIZE, (size_t)page, PROT_NONE))
		abort();
	return image;
}

/* Where a patch lands (a table entry, a chunk or a raw offset) and the room left after it. */
static uint8_t *patch_target(const struct ivrdma_region *r, const struct fuzz_patch *p,
			     uint64_t *room)
{
	const struct ivrdma_table *tables[] = {NULL,	&r->nodes, &r->peers,
					       &r->qps, &r->cqs,   &r->srqs,
					       &r->mrs, &r->ctxs,  &r->chunk_tags};
	unsigned int kind = p->kind % FUZZ_KINDS;
	uint8_t *at;

	if (kind == FUZZ_RAW) {
		at = r->base + p->offset % r->size;
	} else if (kind == FUZZ_CHUNK) {
		at = ivrdma_chunk_ptr(r, p->index % r->nr_chunks);
		at += p->offset & (ivrdma_chunk_size(r) - 1);
	} else {
		const struct ivrdma_table *t = tables[kind];

		at = ivrdma_table_entry(r, t, p->index % t->entries);
		at += p->offset % t->entry_size;
	}
	*room = r->size - (uint64_t)(at - r->base);
	return at;
}

static void apply_patches(const struct ivrdma_region *r, const uint8_t *data, size_t size)
{
	while (size >= sizeof(struct fuzz_patch)) {
		struct fuzz_patch p;
		uint64_t room, len;
		uint8_t *at;

		memcpy(&p, data, sizeof(p));
		data += sizeof(p);
		size -= sizeof(p);
		len = p.len < size ? p.len : size;
		at = patch_target(r, &p, &room);
		if (len > room)
			len = room;
		memcpy(at, data, len);
		data += len;
		size -= len;
	}
}

int fuzz_image_load(struct ivrdma_region *r, struct fuzz_params *params, const uint8_t *data,
		    size_t size)
{
	uint8_t *base = fuzz_image();
	size_t head = size < IVRDMA_HEADER_SIZE ? size : IVRDMA_HEADER_SIZE;
	const char *why;
	int rc;

	memcpy(base, data, head);
	data += head;
	size -= head;
	memset(params, 0, sizeof(*params));
	if (size >= sizeof(*params)) {
		memcpy(params, data, sizeof(*params));
		data += sizeof(*params);
		size -= sizeof(*params);
	}
	rc = ivrdma_region_open(r, base, FUZZ_IMAGE_SIZE, &why);
	if (rc == 0)
		apply_patches(r, data, size);
	return rc;
}

int fuzz_protocol_fds(bool memfds)
{
	DIR *fds = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!fds)
		abort();
	while ((e = readdir(fds))) {
		char target[64];
		ssize_t len = readlinkat(dirfd(fds), e->d_name, target, sizeof(target) - 1);

		if (len < 0)
			continue;
		target[len] = '\0';
		n += !strncmp(target, "socket:", 7) || !strcmp(target, "anon_inode:[eventfd]") ||
		     (memfds && !strncmp(target, "/memfd:", 7));
	}
	closedir(fds);
	return n;
}
