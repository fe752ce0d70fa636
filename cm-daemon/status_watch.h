/* SPDX-License-Identifier: MIT */
#ifndef IVRDMA_STATUS_WATCH_H
#define IVRDMA_STATUS_WATCH_H

/*
 * ivrdma status --watch: every period_s seconds, the per-second rates of
 * each open context and each node since the turn before, 'turns' times
 * (0: until interrupted). Returns the tool's exit status: 0, or 1 when
 * ivrdmad could not be asked (the reason on stderr).
 */
int status_watch(const char *dir, double period_s, long turns);

#endif
