// SPDX-License-Identifier: MIT
/* Creating the region's backing store and writing its format. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "shm_atomic.h"

static int open_backing(struct region_store *s, const struct daemon_config *cfg)
{
	mode_t mode = cfg->socket_mode & 0666;

	if (cfg->hugetlbfs) {
		int n = snprintf(s->path, sizeof(s->path), "%s/ivrdma-region", cfg->hugetlbfs);

		if (n < 0 || (size_t)n >= sizeof(s->path))
			return -ENAMETOOLONG;
		s->is_shm = false;
		s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	} else {
		if (cfg->shm_name[0] != '/' || strchr(cfg->shm_name + 1, '/') ||
		    strlen(cfg->shm_name) >= sizeof(s->path))
			return -EINVAL;
		strcpy(s->path, cfg->shm_name);
		s->is_shm = true;
		s->fd = shm_open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	}
	return s->fd < 0 ? -errno : 0;
}

/* A killed ivrdmad its parent has not reaped yet is gone all the same. */
static bool is_zombie(uint32_t pid)
{
	char path[64], buf[256];
	const char *end;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	end = strrchr(buf, ')'); /* the state follows the command name */
	return end && end[1] == ' ' && (end[2] == 'Z' || end[2] == 'X');
}

/*
 * A region left by an ivrdmad that died (kill -9, crash) would block every
 * restart; one whose daemon still runs must not be touched.
 */
static bool owner_alive(const char *path, bool is_shm)
{
	struct ivrdma_region_header h;
	char comm[32] = "", proc[64];
	int fd =
	    is_shm ? shm_open(path, O_RDONLY | O_CLOEXEC, 0) : open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	FILE *f;

	if (fd < 0)
		return false;
	n = pread(fd, &h, sizeof(h), 0);
	close(fd);
	if (n != (ssize_t)sizeof(h) || h.magic != IVRDMA_MAGIC || h.daemon_pid == 0)
		return false;
	snprintf(proc, sizeof(proc), "/proc/%u/comm", h.daemon_pid);
	f = fopen(proc, "r");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	return strncmp(comm, "ivrdmad", 7) == 0 && !is_zombie(h.daemon_pid);
}

/*
 * A region left by an ivrdmad that is gone: mapped as it is, for
 * adopt_region() to judge (s->existing). Its size is the object's own.
 */
static int open_existing(struct region_store *s)
{
	struct stat st;

	s->fd = s->is_shm ? shm_open(s->path, O_RDWR | O_CLOEXEC, 0)
			  : open(s->path, O_RDWR | O_CLOEXEC);
	if (s->fd < 0)
		return -errno;
	if (fstat(s->fd, &st) < 0 || st.st_size < (off_t)IVRDMA_HEADER_SIZE) {
		close(s->fd);
		s->fd = -1;
		return -EPROTO;
	}
	s->base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		close(s->fd);
		s->fd = -1;
		return -errno;
	}
	s->size = (uint64_t)st.st_size;
	s->existing = true;
	return 0;
}

static void unlink_store(const struct region_store *s)
{
	if (s->is_shm)
		shm_unlink(s->path);
	else
		unlink(s->path);
}

int region_store_create(struct region_store *s, const struct daemon_config *cfg)
{
	int rc;

	s->fd = -1;
	s->base = NULL;
	s->path[0] = '\0';
	s->existing = false;
	rc = open_backing(s, cfg);
	if (rc == -EEXIST && !owner_alive(s->path, s->is_shm)) {
		/* Its processes may live on: adopt_region() decides whether it can be kept. */
		if (open_existing(s) == 0)
			return 0;
		log_warn("removing %s, left behind by an ivrdmad that is gone (unreadable)",
			 s->path);
		unlink_store(s);
		rc = open_backing(s, cfg);
	}
	if (rc == -EEXIST) {
		log_error("%s is in use by a running ivrdmad", s->path);
		return rc;
	}
	if (rc) {
		log_error("cannot create region %s: %s", s->path[0] ? s->path : cfg->shm_name,
			  strerror(-rc));
		return rc;
	}
	/* Exactly --mode, whatever the umask: group access is a deliberate choice. */
	if (fchmod(s->fd, cfg->socket_mode & 0666) < 0)
		log_warn("cannot set mode of %s: %s", s->path, strerror(errno));
	if (ftruncate(s->fd, (off_t)cfg->region_size) < 0) {
		rc = -errno;
		log_error("cannot size region %s to %llu bytes: %s", s->path,
			  (unsigned long long)cfg->region_size, strerror(errno));
		goto fail;
	}
	s->base = mmap(NULL, cfg->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		rc = -errno;
		s->base = NULL;
		log_error("cannot map region %s: %s", s->path, strerror(errno));
		goto fail;
	}
	s->size = cfg->region_size;
	return 0;
fail:
	region_store_destroy(s);
	return rc;
}

/* Unmaps and closes, leaving the object for the next ivrdmad to adopt. */
void region_store_release(struct region_store *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd >= 0)
		close(s->fd);
	s->base = NULL;
	s->fd = -1;
}

void region_store_destroy(struct region_store *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd >= 0) {
		close(s->fd);
		unlink_store(s);
	}
	s->base = NULL;
	s->fd = -1;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Places a table of 'entries' slots at *off and advances *off. */
static struct ivrdma_table place(uint64_t *off, uint32_t entries, uint32_t entry_size)
{
	struct ivrdma_table t = {.offset = *off, .entries = entries, .entry_size = entry_size};

	*off = align_up(*off + (uint64_t)entries * entry_size, 64);
	return t;
}

static uint32_t clamp_entries(uint64_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : (uint32_t)v;
}

/*
 * Object tables scale with the region and reach their largest at 1 GiB
 * (IVRDMA_MAX_QPS QPs, 64K CQs, 16K SRQs and contexts, 256K MRs): about
 * 6% of the region, which costs nothing until slots are used. Listeners
 * and multicast members, whose tables are searched whole, stay smaller.
 */
void region_layout(struct ivrdma_region_header *h, const struct daemon_config *cfg)
{
	uint64_t size = cfg->region_size, off = IVRDMA_HEADER_SIZE,
		 chunk = 1ull << cfg->chunk_shift;
	uint64_t nr;

	h->nodes = place(&off, IVRDMA_MAX_NODES, sizeof(struct ivrdma_node));
	h->peers = place(&off, cfg->max_peers, sizeof(struct ivrdma_peer));
	h->qps = place(&off, clamp_entries(size >> 14, 64, IVRDMA_MAX_QPS), IVRDMA_QP_SLOT_SIZE);
	h->cqs = place(&off, clamp_entries(size >> 14, 64, 65536), IVRDMA_CQ_SLOT_SIZE);
	h->srqs = place(&off, clamp_entries(size >> 16, 16, 16384), IVRDMA_SRQ_SLOT_SIZE);
	h->mrs = place(&off, clamp_entries(size >> 12, 256, 262144), IVRDMA_MR_SLOT_SIZE);
	h->ctxs = place(&off, clamp_entries(size >> 16, 64, 16384), IVRDMA_CTX_SLOT_SIZE);
	h->listeners =
	    place(&off, clamp_entries(size >> 18, 64, 16384), sizeof(struct ivrdma_listener));
	h->mcast =
	    place(&off, clamp_entries(size >> 18, 64, 16384), sizeof(struct ivrdma_mcast_member));
	/* The tag array's size depends on the chunk count and vice versa. */
	nr = (size - off) >> cfg->chunk_shift;
	h->chunk_area_offset = align_up(off + nr * sizeof(uint32_t), chunk);
	h->nr_chunks = (uint32_t)((size - h->chunk_area_offset) >> cfg->chunk_shift);
	h->chunk_tags = place(&off, h->nr_chunks, sizeof(uint32_t));
	h->chunk_shift = cfg->chunk_shift;
}

int region_format(struct region_store *s, const struct daemon_config *cfg)
{
	struct ivrdma_region_header *h = s->base;
	uint64_t id;

	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
	/* Readers check the magic first: write it last. */
	memset(h, 0, IVRDMA_HEADER_SIZE);
	h->layout_version = IVRDMA_LAYOUT_VERSION;
	h->header_size = IVRDMA_HEADER_SIZE;
	h->region_size = cfg->region_size;
	h->region_id = id;
	h->nr_vectors = cfg->nr_vectors;
	h->max_peers = cfg->max_peers;
	h->subnet_prefix =
	    cfg->subnet_prefix ? cfg->subnet_prefix : subnet_prefix_derive(s->path, cfg->dir);
	h->daemon_pid = (uint32_t)getpid();
	h->host_node = 0;
	region_layout(h, cfg);
	if (h->nr_chunks == 0) {
		log_error("region of %llu bytes leaves no room for chunks",
			  (unsigned long long)cfg->region_size);
		return -ENOSPC;
	}
	/*
	 * A fresh shm object reads as zeros, and its tables stay untouched
	 * (unallocated) until used; a reused hugetlbfs file may hold old bytes.
	 */
	if (!s->is_shm)
		memset((uint8_t *)s->base + IVRDMA_HEADER_SIZE, 0,
		       h->chunk_area_offset - IVRDMA_HEADER_SIZE);
	shm_store_release64(&h->magic, IVRDMA_MAGIC);
	return 0;
}
