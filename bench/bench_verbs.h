/* SPDX-License-Identifier: MIT */
/*
 * What the verbs benchmarks (paired_latency, post_cost) share; header-only,
 * so that bench_common, which the baselines link, needs no libibverbs.
 */
#ifndef IVRDMA_BENCH_VERBS_H
#define IVRDMA_BENCH_VERBS_H

#include <infiniband/verbs.h>
#include <string.h>

/* Opens the verbs device named 'dev'; NULL if there is none by that name. */
static inline struct ibv_context *bench_open_device(const char *dev)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	for (int i = 0; list && list[i] && !ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), dev))
			ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	return ctx;
}

#endif
