/* SPDX-License-Identifier: MIT */
#ifndef IVRDMAD_OPTIONS_H
#define IVRDMAD_OPTIONS_H

#include "daemon.h"

/* 0: run; 1: help was printed; -EINVAL: bad options (reported). */
int options_parse(int argc, char **argv, struct daemon_config *cfg, int *verbose);

#endif
