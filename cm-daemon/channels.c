// SPDX-License-Identifier: MIT
/*
 * The directory of host processes' completion channels,
 * DIR/channels (common/channel_path.h): ivrdmad makes it with the
 * permissions of its sockets, so that reaching a channel takes what using
 * the region takes, and removes the channels of processes that died
 * without destroying them.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

/* Removes the channels whose process is gone. Returns how many. */
static unsigned int sweep(const char *path)
{
	char file[PATH_MAX];
	unsigned int n = 0;
	struct dirent *e;
	DIR *dir = opendir(path);

	if (!dir)
		return 0;
	while ((e = readdir(dir))) {
		uint64_t id = ivrdma_channel_name_id(e->d_name);
		pid_t pid = (pid_t)(id >> 32);

		if (!id || pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		if (snprintf(file, sizeof(file), "%s/%s", path, e->d_name) < (int)sizeof(file) &&
		    unlink(file) == 0)
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
		log_debug("removed %u completion channel(s) of processes gone", n);
}

void channels_close(struct daemon *d)
{
	char path[PATH_MAX];

	if (channels_path(d, path, sizeof(path)) == 0) {
		sweep(path);
		rmdir(path); /* if empty: live processes keep their channels */
	}
}
