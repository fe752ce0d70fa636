/* SPDX-License-Identifier: MIT */
#ifndef IVRDMAD_REGION_SIZE_H
#define IVRDMAD_REGION_SIZE_H

#include <stddef.h>
#include <stdint.h>

struct daemon_config;

/*
 * The region size --size auto gives on this machine, in *size. Returns 0,
 * or a negative errno when the machine cannot hold even the smallest
 * region (-ENOSPC) or its backing file system cannot be read; 'why' says,
 * in either case, what the size came from or what is missing.
 */
int region_size_auto(const struct daemon_config *cfg, uint64_t *size, char *why, size_t len);

#endif
