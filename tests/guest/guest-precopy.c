// SPDX-License-Identifier: MIT
/*
 * The guest's side of guest.migration_precopy (run-precopy-vm.sh): does a
 * live (pre-copy) QEMU migration keep every store the guest made while its
 * RAM was copied? No ivshmem device and no ivrdma here: this checks the
 * migration that guest.migration_qemu relies on.
 *
 * THREADS threads each own a buffer of KIB KiB. Round r of a thread first
 * checks that every 64-bit word still holds what round r - 1 wrote, then
 * writes round r's values. Each thread checks only its own buffer, which
 * no one else writes: a mismatch is a store of this thread that the
 * migration lost (the destination got the page as it was before), not a
 * race of the checker. A word names its thread, round and index, so a
 * stale word says which round it came from.
 *
 * Commands, one per line on stdin (the console):
 *   wait ID   once every thread has finished two more rounds (each of its
 *             words checked after the command), prints
 *             "CHECKED ID stale N rounds R" (N: stale words found so far)
 *   quit      exits: 0 if no stale word was found, 1 otherwise
 * Prints "RUNNING" once every thread finished a round, and a "STALE"
 * line for each of the first few pages found stale.
 *
 * usage: guest-precopy THREADS KIB
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS    16
#define WORDS_PER_PAGE (4096 / sizeof(uint64_t))
#define STALE_LINES    20 /* STALE lines printed at most */

struct worker {
	pthread_t thread;
	unsigned id;
	uint64_t *buf;
	size_t words;
	atomic_uint_fast64_t rounds; /* finished */
};

static struct worker workers[MAX_THREADS];
static unsigned n_workers;
static atomic_uint_fast64_t stale_words;
static atomic_uint stale_lines;
static atomic_bool stop;

/* Thread, round and index in one word: a stale word tells its round. */
static uint64_t word_value(unsigned thread, uint64_t round, size_t i)
{
	return (uint64_t)thread << 56 | (round & 0xffffffu) << 32 | (uint32_t)i;
}

static void report_page(const struct worker *w, uint64_t round, size_t i, uint64_t found)
{
	if (atomic_fetch_add(&stale_lines, 1) >= STALE_LINES)
		return;
	printf("STALE thread %u round %" PRIu64 " page %zu word %zu: 0x%016" PRIx64
	       " (round %" PRIu64 "), expected 0x%016" PRIx64 "\n",
	       w->id, round, i / WORDS_PER_PAGE, i % WORDS_PER_PAGE, found,
	       (uint64_t)(found >> 32 & 0xffffffu), word_value(w->id, round - 1, i));
}

/* Round 'round': the previous round's values checked, then replaced. */
static void one_round(struct worker *w, uint64_t round)
{
	uint64_t stale = 0;
	bool page_reported = false;

	for (size_t i = 0; i < w->words; i++) {
		if (i % WORDS_PER_PAGE == 0)
			page_reported = false;
		if (round > 0 && w->buf[i] != word_value(w->id, round - 1, i)) {
			stale++;
			if (!page_reported)
				report_page(w, round, i, w->buf[i]);
			page_reported = true;
		}
		w->buf[i] = word_value(w->id, round, i);
	}
	if (stale)
		atomic_fetch_add(&stale_words, stale);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (uint64_t round = 0; !atomic_load(&stop); round++) {
		one_round(w, round);
		atomic_store(&w->rounds, round + 1);
	}
	return NULL;
}

static uint64_t min_rounds(void)
{
	uint64_t min = UINT64_MAX;

	for (unsigned t = 0; t < n_workers; t++) {
		uint64_t r = atomic_load(&workers[t].rounds);

		min = r < min ? r : min;
	}
	return min;
}

/*
 * Two more rounds than when asked: the round under way may have checked
 * part of its words before the command; the next one checks them all.
 */
static void wait_rounds(const char *id)
{
	uint64_t target[MAX_THREADS];
	bool done = false;

	for (unsigned t = 0; t < n_workers; t++)
		target[t] = atomic_load(&workers[t].rounds) + 2;
	while (!done) {
		done = true;
		for (unsigned t = 0; t < n_workers; t++)
			done = done && atomic_load(&workers[t].rounds) >= target[t];
		if (!done)
			usleep(10000);
	}
	printf("CHECKED %s stale %" PRIu64 " rounds %" PRIu64 "\n", id,
	       (uint64_t)atomic_load(&stale_words), min_rounds());
}

static void start_workers(size_t kib)
{
	for (unsigned t = 0; t < n_workers; t++) {
		struct worker *w = &workers[t];

		w->id = t;
		w->words = kib * 1024 / sizeof(uint64_t);
		w->buf = aligned_alloc(4096, kib * 1024);
		if (!w->buf || pthread_create(&w->thread, NULL, worker_main, w)) {
			printf("FAILED to start thread %u\n", t);
			exit(2);
		}
	}
	while (min_rounds() < 1)
		usleep(10000);
	printf("RUNNING %u threads, %zu KiB each\n", n_workers, kib);
}

int main(int argc, char **argv)
{
	char line[128], id[64];
	size_t kib;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3 || atoi(argv[1]) < 1 || atoi(argv[1]) > MAX_THREADS || atol(argv[2]) < 4) {
		fprintf(stderr, "usage: guest-precopy THREADS(1-%d) KIB(>=4)\n", MAX_THREADS);
		return 2;
	}
	n_workers = (unsigned)atoi(argv[1]);
	kib = (size_t)atol(argv[2]) & ~(size_t)3; /* whole pages */
	start_workers(kib);
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "wait %63s", id) == 1)
			wait_rounds(id);
		else if (!strncmp(line, "quit", 4))
			break;
	}
	atomic_store(&stop, true);
	for (unsigned t = 0; t < n_workers; t++)
		pthread_join(workers[t].thread, NULL);
	printf("END stale %" PRIu64 " rounds %" PRIu64 "\n", (uint64_t)atomic_load(&stale_words),
	       min_rounds());
	return atomic_load(&stale_words) ? 1 : 0;
}
