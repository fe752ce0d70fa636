/* SPDX-License-Identifier: MIT */
/*
 * Minimal test checks: a failed CHECK reports where and why and counts;
 * the test's exit status is nonzero if any failed.
 */
#ifndef IVRDMA_TEST_CHECK_H
#define IVRDMA_TEST_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Atomic: tests check from several threads at once. */
extern atomic_int check_failures;
extern atomic_int check_passes;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			check_passes++;                                                            \
		} else {                                                                           \
			check_failures++;                                                          \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* Stops the test: later checks make no sense without this one. */
#define REQUIRE(cond, ...)                                                                         \
	do {                                                                                       \
		bool require_ok_ = (cond);                                                         \
		CHECK(require_ok_, __VA_ARGS__);                                                   \
		if (!require_ok_)                                                                  \
			exit(check_summary());                                                     \
	} while (0)

/* Prints "N passed, N failed" and returns the exit status. */
int check_summary(void);

#endif
