/* SPDX-License-Identifier: MIT */
#ifndef IVRDMA_P2P_TYPES_H
#define IVRDMA_P2P_TYPES_H

/* Non-contiguous derived datatypes between rank and peer (p2p_types.c). */
void test_datatypes(int rank, int peer);

#endif
