/* SPDX-License-Identifier: MIT */
/* Talking to ivrdmad's control socket, for the ivrdma tool. */
#ifndef IVRDMA_CTL_CLIENT_H
#define IVRDMA_CTL_CLIENT_H

#include <json-c/json.h>
#include <stddef.h>

/*
 * Sends one request line to DIR/ctl.sock and parses the JSON answer.
 * Returns the document (caller puts it), or NULL with a message in err.
 * An answer carrying "error" is returned as NULL with that error.
 */
json_object *ctl_request(const char *dir, const char *request, char *err, size_t errlen);
/* The same, waiting up to timeout_ms for the answer (ctl_request: 5 s). */
json_object *ctl_request_wait(const char *dir, const char *request, int timeout_ms, char *err,
			      size_t errlen);

#endif
