// SPDX-License-Identifier: MIT
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_client.h"

#define CTL_TIMEOUT_MS 5000
#define CTL_ANSWER_MAX (16u << 20)

static int ctl_connect(const char *dir, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/ctl.sock", dir);

	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "directory name too long: %s", dir);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	snprintf(err, errlen, "cannot reach ivrdmad at %s: %s (is it running?)", sun.sun_path,
		 strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Reads to EOF, with a deadline so a wedged daemon cannot hang us. */
static char *read_answer(int fd, int timeout_ms, char *err, size_t errlen)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	while (buf) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, timeout_ms) <= 0) {
			snprintf(err, errlen, "no answer from ivrdmad");
			break;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == 0) {
			buf[len] = '\0';
			return buf;
		}
		if (n < 0) {
			snprintf(err, errlen, "reading from ivrdmad: %s", strerror(errno));
			break;
		}
		len += (size_t)n;
		if (len + 1 == cap) {
			char *bigger = cap < CTL_ANSWER_MAX ? realloc(buf, cap * 2) : NULL;

			if (!bigger) {
				snprintf(err, errlen, "answer from ivrdmad too large");
				break;
			}
			buf = bigger;
			cap *= 2;
		}
	}
	free(buf);
	return NULL;
}

json_object *ctl_request(const char *dir, const char *request, char *err, size_t errlen)
{
	return ctl_request_wait(dir, request, CTL_TIMEOUT_MS, err, errlen);
}

json_object *ctl_request_wait(const char *dir, const char *request, int timeout_ms, char *err,
			      size_t errlen)
{
	json_object *doc, *error;
	char line[256];
	char *text;
	int fd, n;

	n = snprintf(line, sizeof(line), "%s\n", request);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		snprintf(err, errlen, "request too long");
		return NULL;
	}
	fd = ctl_connect(dir, err, errlen);
	if (fd < 0)
		return NULL;
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(err, errlen, "sending to ivrdmad: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	text = read_answer(fd, timeout_ms, err, errlen);
	close(fd);
	if (!text)
		return NULL;
	doc = json_tokener_parse(text);
	free(text);
	if (!doc) {
		snprintf(err, errlen, "ivrdmad answered something that is not JSON");
		return NULL;
	}
	if (json_object_object_get_ex(doc, "error", &error)) {
		snprintf(err, errlen, "ivrdmad: %s", json_object_get_string(error));
		json_object_put(doc);
		return NULL;
	}
	return doc;
}
