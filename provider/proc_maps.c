// SPDX-License-Identifier: MIT
/*
 * The process's mappings as the kernel lists them in /proc/self/maps: how
 * mr_move.c learns what memory it may move and whether the region pages it
 * mapped are still where it put them (the application may have unmapped,
 * moved with mremap or shrunk with brk any of them since).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "ivrdma.h"

static bool parse_line(const char *line, struct ivrdma_map *m)
{
	char perms[8] = "";
	unsigned long lo, hi, off, ino;
	unsigned int maj, min;

	if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj, &min, &ino) != 7)
		return false;
	*m = (struct ivrdma_map){
	    .lo = lo,
	    .hi = hi,
	    .offset = off,
	    .dev = makedev(maj, min),
	    .ino = ino,
	    .readable = perms[0] == 'r',
	    .writable = perms[1] == 'w',
	    .shared = perms[3] == 's',
	};
	return true;
}

static void skip_rest_of_line(FILE *f, const char *line)
{
	int ch;

	if (strchr(line, '\n'))
		return;
	while ((ch = fgetc(f)) != EOF && ch != '\n')
		;
}

static int append(struct ivrdma_maps *m, const struct ivrdma_map *e, size_t *cap)
{
	if (m->n == *cap) {
		size_t ncap = *cap ? 2 * *cap : 64;
		struct ivrdma_map *v = realloc(m->v, ncap * sizeof(*v));

		if (!v)
			return ENOMEM;
		m->v = v;
		*cap = ncap;
	}
	m->v[m->n++] = *e;
	return 0;
}

int ivrdma_maps_read(struct ivrdma_maps *m)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	size_t cap = 0;
	int rc = 0;

	*m = (struct ivrdma_maps){0};
	if (!f)
		return errno;
	while (!rc && fgets(line, sizeof(line), f)) {
		struct ivrdma_map e;

		skip_rest_of_line(f, line);
		if (parse_line(line, &e))
			rc = append(m, &e, &cap);
	}
	fclose(f);
	if (rc)
		ivrdma_maps_free(m);
	return rc;
}

const struct ivrdma_map *ivrdma_maps_next(const struct ivrdma_maps *m, uintptr_t addr)
{
	size_t lo = 0, hi = m->n;

	/* The kernel lists mappings in address order. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->v[mid].hi <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->n ? &m->v[lo] : NULL;
}

const struct ivrdma_map *ivrdma_maps_find(const struct ivrdma_maps *m, uintptr_t addr)
{
	const struct ivrdma_map *e = ivrdma_maps_next(m, addr);

	return e && e->lo <= addr ? e : NULL;
}

void ivrdma_maps_free(struct ivrdma_maps *m)
{
	free(m->v);
	*m = (struct ivrdma_maps){0};
}
