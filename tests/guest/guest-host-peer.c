// SPDX-License-Identifier: MIT
/*
 * guest-host-peer: the host end of the guest tests. A host process that
 * joins ivrdmad's region like any other peer, puts a known pattern into a
 * chunk it owns and waits for a guest to ring its doorbell, so a test can
 * check both directions across a real VM: region bytes host -> guest
 * (checksums) and a doorbell guest -> host.
 *
 *   guest-host-peer --socket DIR/host.sock [--vector V] [--len N]
 *                   [--seed S] [--timeout SECONDS]
 *
 *   driver tests, both directions:
 *                   [--expect-seed S2] [--ring-back V2] [--race]
 *
 * stdout: "PEER=<id> OFFSET=<region offset> LEN=<n> SUM=<FNV-1a 64>", then
 * "DOORBELL vector=<v>" once it rings. Exit 0 on the doorbell, 1 on any
 * failure or timeout (message on stderr), 2 on usage errors.
 *
 * --expect-seed: also claims a second area of LEN bytes, zeroed, announced
 * as "WRITE_OFFSET=<region offset>", for a guest to fill with the pattern
 * of seed S2 before it rings; after the doorbell the area is checked
 * ("GUEST_WRITE=ok SUM=<sum>"). --ring-back: after the doorbell, ring
 * vector V2 of every VM peer in the peer table ("RANG_BACK peer=<id>").
 * --race (with --ring-back): before ringing back, zero a struct
 * guest_atomics at the start of the pattern area (the guest has read it);
 * after, add 1 to its counter with locked instructions while the guest
 * does, until the adds have interleaved RACE_INTERLEAVED times (or
 * RACE_MAX_S have passed), then require the counter to be the sum of both
 * sides' adds ("ADDS=ok host=<n> guest=<n> interleaved=<n>").
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guest_checksum.h"
#include "ivshmem_transport.h"
#include "region.h"
#include "shm_atomic.h"

/*
 * Adds of mine that found the guest's in between: evidence that both ran
 * at once, which is what can lose an add (TCG without parallel code lost
 * 1.5 to 5.7 million in each of three runs on a loaded 2-CPU machine).
 * The cap only bounds the time a machine too busy to run both takes.
 */
#define RACE_INTERLEAVED 20000u
#define RACE_MAX_S	 15

struct opts {
	const char *socket;
	uint64_t vector;
	uint64_t len;
	uint64_t seed;
	uint64_t timeout_s;
	uint64_t expect_seed; /* 0: none */
	int64_t ring_back;    /* -1: none */
	bool race;
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("guest-host-peer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static int usage(void)
{
	fputs("usage: guest-host-peer --socket PATH [--vector V] [--len N] [--seed S]"
	      " [--timeout SECONDS] [--expect-seed S2] [--ring-back V2 [--race]]\n",
	      stderr);
	return 2;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static const char *opt_name(const struct option *o, int c)
{
	while (o->name && o->val != c)
		o++;
	return o->name ? o->name : "?";
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"vector", required_argument, NULL, 'v'},
	    {"len", required_argument, NULL, 'l'},
	    {"seed", required_argument, NULL, 'S'},
	    {"timeout", required_argument, NULL, 't'},
	    {"expect-seed", required_argument, NULL, 'E'},
	    {"ring-back", required_argument, NULL, 'R'},
	    {"race", no_argument, NULL, 'A'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){
	    .vector = IVRDMA_VEC_SPARE, .len = 65536, .seed = 1, .timeout_s = 120, .ring_back = -1};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		bool ok = true;

		if (c == 's')
			o->socket = optarg;
		else if (c == 'v')
			ok = parse_u64(optarg, 0, IVRDMA_MAX_VECTORS - 1, &o->vector);
		else if (c == 'l')
			ok = parse_u64(optarg, 1, 1ull << 30, &o->len);
		else if (c == 'S')
			ok = parse_u64(optarg, 1, UINT64_MAX, &o->seed);
		else if (c == 't')
			ok = parse_u64(optarg, 1, 3600, &o->timeout_s);
		else if (c == 'E')
			ok = parse_u64(optarg, 1, UINT64_MAX, &o->expect_seed);
		else if (c == 'R') {
			uint64_t v = 0;

			ok = parse_u64(optarg, 0, IVRDMA_MAX_VECTORS - 1, &v);
			o->ring_back = (int64_t)v;
		} else if (c == 'A')
			o->race = true;
		else
			return usage();
		if (!ok) {
			fail("bad value '%s' for --%s", optarg, opt_name(longopts, c));
			return usage();
		}
	}
	if (!o->socket || optind != argc || (o->race && o->ring_back < 0))
		return usage();
	return 0;
}

/*
 * The daemon fills my peer table entry when it admits me; wait briefly
 * for it rather than trusting a half-written entry.
 */
static int my_generation(const struct ivrdma_region *r, int id, uint16_t *gen)
{
	struct ivrdma_peer *me = ivrdma_region_peer(r, (uint32_t)id);

	if (!me)
		return fail("my peer ID %d is outside the peer table", id);
	for (int i = 0; i < 200; i++) {
		if (shm_load_acquire32(&me->state) == IVRDMA_PEER_ACTIVE) {
			*gen = me->gen;
			return 0;
		}
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	return fail("ivrdmad did not mark my peer entry %d active", id);
}

/* Chunks for o->len bytes, twice with --expect-seed (the guest's area). */
static uint32_t nr_chunks(const struct ivrdma_region *r, const struct opts *o)
{
	uint64_t csize = ivrdma_chunk_size(r), count = (o->len + csize - 1) / csize;

	return (uint32_t)(o->expect_seed ? 2 * count : count);
}

/*
 * Claims the chunks and fills the first o->len bytes with the pattern;
 * the guest's area (from the next chunk on) starts zeroed.
 */
static int fill_chunk(const struct ivrdma_region *r, int id, uint16_t gen, const struct opts *o,
		      uint64_t *offset, uint64_t *sum)
{
	uint64_t csize = ivrdma_chunk_size(r), count = nr_chunks(r, o);
	uint64_t state = o->seed;
	int64_t first;
	uint8_t *p;

	if (count > r->nr_chunks)
		return fail("--len %" PRIu64 " exceeds the chunk area", o->len);
	first = ivrdma_chunk_alloc(r, (uint32_t)count, ivrdma_owner_tag((uint16_t)id, gen),
				   (uint32_t)id);
	if (first < 0)
		return fail("no %" PRIu64 " free chunks: %s", count, strerror((int)-first));
	p = ivrdma_chunk_ptr(r, (uint32_t)first);
	memset(p, 0, count * csize);
	for (uint64_t i = 0; i < o->len; i += 8) {
		uint64_t v = guest_pattern_next(&state);

		memcpy(p + i, &v, o->len - i < 8 ? o->len - i : 8);
	}
	*offset = (uint64_t)(p - r->base);
	*sum = guest_fnv1a64(GUEST_FNV1A64_INIT, p, o->len);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits in short slices so join/leave notices are drained and a daemon
 * that goes away ends the wait at once instead of at the timeout.
 */
static int wait_doorbell(struct ivt *t, const struct opts *o)
{
	int64_t deadline = now_ms() + (int64_t)o->timeout_s * 1000;
	uint64_t fired = 0;

	while (now_ms() < deadline) {
		int rc = ivt_wait(t, 1ull << o->vector, 200, &fired);

		if (rc < 0)
			return fail("waiting for the doorbell: %s", strerror(-rc));
		if (rc > 0 && fired & (1ull << o->vector)) {
			printf("DOORBELL vector=%" PRIu64 "\n", o->vector);
			fflush(stdout);
			return 0;
		}
		rc = ivt_process_control(t);
		if (rc < 0 && rc != -EAGAIN)
			return fail("ivrdmad connection lost: %s", strerror(-rc));
	}
	return fail("no doorbell on vector %" PRIu64 " within %" PRIu64 " s", o->vector,
		    o->timeout_s);
}

/* The guest's area: o->len bytes of the pattern of --expect-seed? */
static int check_guest_write(const uint8_t *area, const struct opts *o)
{
	uint64_t state = o->expect_seed, want = GUEST_FNV1A64_INIT, got;

	for (uint64_t i = 0; i < o->len; i += 8) {
		uint64_t v = guest_pattern_next(&state);

		want = guest_fnv1a64(want, (const uint8_t *)&v, o->len - i < 8 ? o->len - i : 8);
	}
	got = guest_fnv1a64(GUEST_FNV1A64_INIT, area, o->len);
	if (got != want)
		return fail("the guest's area has sum %016" PRIx64 ", its pattern %016" PRIx64, got,
			    want);
	printf("GUEST_WRITE=ok SUM=%016" PRIx64 "\n", got);
	return 0;
}

/* Rings vector o->ring_back of every VM peer: the host -> guest doorbell. */
static int ring_back(struct ivt *t, const struct ivrdma_region *r, const struct opts *o)
{
	int rung = 0;

	for (uint32_t i = 0; i < r->max_peers; i++) {
		struct ivrdma_peer *p = ivrdma_region_peer(r, i);
		int rc;

		if ((int)i == ivt_peer_id(t) || !p ||
		    shm_load_acquire32(&p->state) != IVRDMA_PEER_ACTIVE || p->node == r->host_node)
			continue;
		rc = ivt_ring(t, (uint16_t)i, (uint16_t)o->ring_back);
		if (rc)
			return fail("ringing peer %u: %s", i, strerror(-rc));
		printf("RANG_BACK peer=%u vector=%" PRId64 "\n", i, o->ring_back);
		rung++;
	}
	return rung ? 0 : fail("no VM peer to ring back");
}

/* Waits for a flag of the guest's; false after timeout_ms. */
static bool wait_flag(const uint64_t *flag, int64_t timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
		if (now_ms() > deadline)
			return false;
	return true;
}

/*
 * My side of the race on one word (see struct guest_atomics): a lost add
 * means the guest's locked instructions were not atomic against mine.
 * The time limits only bound the race; the verdict is the sum.
 */
static int race_adds(struct guest_atomics *a, const struct opts *o)
{
	int64_t end;
	uint64_t mine = 1, interleaved = 0, prev, sum, guest;

	if (!wait_flag(&a->started, (int64_t)o->timeout_s * 1000))
		return fail("the guest never started its adds");
	end = now_ms() + RACE_MAX_S * 1000;
	prev = __atomic_fetch_add(&a->counter, 1, __ATOMIC_SEQ_CST);
	while (interleaved < RACE_INTERLEAVED && (mine % 4096 || now_ms() < end)) {
		uint64_t old = __atomic_fetch_add(&a->counter, 1, __ATOMIC_SEQ_CST);

		interleaved += old != prev + 1;
		prev = old;
		mine++;
	}
	__atomic_store_n(&a->stop, 1, __ATOMIC_RELEASE);
	if (!wait_flag(&a->done, (int64_t)o->timeout_s * 1000))
		return fail("the guest did not stop its adds");
	sum = __atomic_load_n(&a->counter, __ATOMIC_SEQ_CST);
	guest = __atomic_load_n(&a->guest_adds, __ATOMIC_RELAXED);
	if (sum != mine + guest)
		return fail("counter %" PRIu64 " after %" PRIu64 " host and %" PRIu64
			    " guest adds: %" PRId64 " lost (the guest's locked instructions are "
			    "not atomic: QEMU TCG without maxcpus > 1?)",
			    sum, mine, guest, (int64_t)(mine + guest - sum));
	printf("ADDS=ok host=%" PRIu64 " guest=%" PRIu64 " interleaved=%" PRIu64 "\n", mine, guest,
	       interleaved);
	return 0;
}

static int run(struct ivt *t, const struct opts *o)
{
	struct ivrdma_region r;
	const char *why = "";
	uint64_t offset = 0, sum = 0, woffset;
	uint16_t gen = 0;
	int id = ivt_peer_id(t), rc;

	if (o->vector >= ivt_nr_vectors(t))
		return fail("vector %" PRIu64 " >= the region's %u vectors", o->vector,
			    ivt_nr_vectors(t));
	rc = ivrdma_region_open(&r, ivt_region_base(t), ivt_region_size(t), &why);
	if (rc)
		return fail("region rejected: %s", why);
	if (my_generation(&r, id, &gen) || fill_chunk(&r, id, gen, o, &offset, &sum))
		return 1;
	woffset = offset + nr_chunks(&r, o) / 2 * ivrdma_chunk_size(&r);
	if (o->expect_seed)
		printf("WRITE_OFFSET=%" PRIu64 "\n", woffset);
	printf("PEER=%d OFFSET=%" PRIu64 " LEN=%" PRIu64 " SUM=%016" PRIx64 "\n", id, offset,
	       o->len, sum);
	fflush(stdout);
	rc = wait_doorbell(t, o);
	if (!rc && o->expect_seed)
		rc = check_guest_write(r.base + woffset, o);
	if (!rc && o->race)
		memset(r.base + offset, 0, sizeof(struct guest_atomics));
	if (!rc && o->ring_back >= 0)
		rc = ring_back(t, &r, o);
	fflush(stdout);
	if (!rc && o->race)
		rc = race_adds((struct guest_atomics *)(r.base + offset), o);
	fflush(stdout);
	ivrdma_chunk_free(&r, (uint32_t)((offset - r.chunk_area_offset) >> r.chunk_shift),
			  nr_chunks(&r, o), ivrdma_owner_tag((uint16_t)id, gen));
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct ivt *t;
	char err[256];
	int rc = parse_opts(argc, argv, &o);

	if (rc)
		return rc;
	rc = ivt_attach(&(struct ivt_options){.backend = IVT_BACKEND_HOST, .path = o.socket}, &t,
			err, sizeof(err));
	if (rc)
		return fail("cannot attach to %s: %s", o.socket, err);
	rc = run(t, &o);
	ivt_detach(t);
	return rc;
}
