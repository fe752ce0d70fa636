// SPDX-License-Identifier: MIT
/*
 * Writes the seed corpus of the harnesses: regions formatted by the real
 * formatter (region_format) with valid objects patched in, and valid
 * protocol and control messages. Run by hand when a format changes:
 *   make_seeds tests/fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon.h"
#include "fuzz_image.h"

struct seed {
	uint8_t buf[65536];
	size_t len;
};

static void put(struct seed *s, const void *p, size_t len)
{
	if (s->len + len > sizeof(s->buf))
		abort();
	memcpy(s->buf + s->len, p, len);
	s->len += len;
}

static void patch(struct seed *s, enum fuzz_patch_kind kind, uint16_t index, uint32_t offset,
		  const void *p, size_t len)
{
	struct fuzz_patch h = {
	    .kind = (uint8_t)kind, .len = (uint8_t)len, .index = index, .offset = offset};

	if (len > 255)
		abort();
	put(s, &h, sizeof(h));
	put(s, p, len);
}

static void save(const char *dir, const char *harness, const char *name, const struct seed *s)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, harness);
	if (mkdir(path, 0755) && errno != EEXIST)
		abort();
	snprintf(path, sizeof(path), "%s/%s/%s", dir, harness, name);
	f = fopen(path, "wb");
	if (!f || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f))
		abort();
}

static uint8_t *image;

/* A formatted header, then params. */
static void start(struct seed *s, uint32_t chunk_shift, const struct fuzz_params *p)
{
	struct region_store store = {.fd = -1, .base = image, .size = FUZZ_IMAGE_SIZE};
	struct daemon_config cfg = {
	    .region_size = FUZZ_IMAGE_SIZE,
	    .nr_vectors = 4,
	    .max_peers = 64,
	    .chunk_shift = chunk_shift,
	    .subnet_prefix = 0xfd00000000000001ull,
	};

	memset(image, 0, IVRDMA_HEADER_SIZE);
	if (region_format(&store, &cfg))
		abort();
	s->len = 0;
	put(s, image, IVRDMA_HEADER_SIZE);
	put(s, p, sizeof(*p));
}

static void region_seeds(const char *dir)
{
	struct fuzz_params p = {.peer = 1, .gen = 1, .count = 2, .hint = 5, .first = 3};
	uint32_t tag = ivrdma_owner_tag(1, 1);
	struct seed s;

	start(&s, IVRDMA_DEFAULT_CHUNK_SHIFT, &p);
	save(dir, "fuzz_region", "formatted", &s);
	start(&s, IVRDMA_MIN_CHUNK_SHIFT, &p);
	patch(&s, FUZZ_TAG, 3, 0, &tag, sizeof(tag));
	patch(&s, FUZZ_QP, 7, 0, &tag, sizeof(tag));
	patch(&s, FUZZ_MR, 9, 0, &tag, sizeof(tag));
	save(dir, "fuzz_region", "small-chunks-owned", &s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
		return 2;
	}
	image = calloc(1, FUZZ_IMAGE_SIZE);
	if (!image)
		return 1;
	region_seeds(argv[1]);
	free(image);
	return 0;
}
