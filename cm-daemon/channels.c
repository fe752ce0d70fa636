// SPDX-License-Identifier: MIT
/*
 * The directory of host processes' completion channels,
 * DIR/channels (common/channel_path.h): ivrdmad makes it with the
 * permissions of its sockets, so that reaching a channel takes what using
 * the region takes, and removes the channels of processes that died
 * without destroying them: a path nobody is bound to any more refuses a
 * connection (a pid would not do: a process in another PID namespace
 * names its channels with a pid ivrdmad does not see).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel_path.h"
#include "daemon.h"
#include "log.h"

#define CHANNEL_SWEEP_MS 5000

/* Returns 0, or -ENAMETOOLONG. */
static int channels_path(const struct daemon *d, char *out, size_t len)
{
	return snprintf(out, len, "%s/" IVRDMA_CHANNEL_DIR, d->cfg.dir) >= (int)len ? -ENAMETOOLONG
										    : 0;
}

/*
 * Who may use the sockets may reach channels (search, and make their own:
 * rwx where the socket mode gives r or w); the sticky bit keeps each
 * user's channels from the others, setgid gives them the directory's group.
 */
static mode_t dir_mode(uint32_t socket_mode)
{
	mode_t m = S_ISVTX | S_ISGID;

	for (int shift = 0; shift <= 6; shift += 3)
		if (socket_mode >> shift & 06)
			m |= (mode_t)07 << shift;
	return m;
}

/* Is the channel socket at 'path' left over (its file's socket closed)? */
static bool abandoned(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int probe, rc;

	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	strcpy(a.sun_path, path);
	probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return false;
	/* A datagram connect sends nothing: it only finds the bound socket, or not. */
	rc = connect(probe, (struct sockaddr *)&a, sizeof(a));
	close(probe);
	return rc < 0 && errno == ECONNREFUSED;
}

/* Removes the channels nobody holds any more. Returns how many. */
static unsigned int sweep(const char *path)
{
	char file[PATH_MAX];
	unsigned int n = 0;
	struct dirent *e;
	DIR *dir = opendir(path);

	if (!dir)
		return 0;
	while ((e = readdir(dir))) {
		if (!ivrdma_channel_name_id(e->d_name) ||
		    snprintf(file, sizeof(file), "%s/%s", path, e->d_name) >= (int)sizeof(file))
			continue;
		if (abandoned(file) && unlink(file) == 0)
			n++;
	}
	closedir(dir);
	return n;
}

int channels_open(struct daemon *d)
{
	char path[PATH_MAX];
	int rc = channels_path(d, path, sizeof(path));

	if (rc)
		return rc;
	if ((mkdir(path, 0700) < 0 && errno != EEXIST) ||
	    chmod(path, dir_mode(d->cfg.socket_mode))) {
		log_error("cannot make %s: %s", path, strerror(errno));
		return -errno;
	}
	sweep(path);
	d->channels_swept_ms = monotonic_ms();
	return 0;
}

void channels_tick(struct daemon *d)
{
	char path[PATH_MAX];
	unsigned int n;

	if (monotonic_ms() - d->channels_swept_ms < CHANNEL_SWEEP_MS ||
	    channels_path(d, path, sizeof(path)))
		return;
	d->channels_swept_ms = monotonic_ms();
	n = sweep(path);
	if (n)
		log_debug("removed %u completion channel(s) nobody held", n);
}

void channels_close(struct daemon *d)
{
	char path[PATH_MAX];

	if (channels_path(d, path, sizeof(path)) == 0) {
		sweep(path);
		rmdir(path); /* if empty: live processes keep their channels */
	}
}
