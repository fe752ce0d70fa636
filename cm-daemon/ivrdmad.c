// SPDX-License-Identifier: MIT
/*
 * ivrdmad: the shared-memory server QEMU's ivshmem-doorbell connects to,
 * and the owner of the ivrdma region's format and node directory.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "options.h"
#include "shm_atomic.h"

static void on_signal(struct daemon *d, struct watch *w, uint32_t events)
{
	struct signalfd_siginfo si;

	if (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		log_info("signal %u: shutting down", si.ssi_signo);
		d->running = false;
	}
}

static int open_signals(struct daemon *d)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	d->signals.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	d->signals.on_event = on_signal;
	if (d->signals.fd < 0)
		return -errno;
	return loop_add(d, &d->signals, EPOLLIN);
}

/* Every peer costs 'vectors' eventfds here: use what the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * A region left by an ivrdmad that is gone is adopted if it can be (its
 * processes keep their QPs and rejoin); otherwise it is removed and a new
 * one formatted.
 */
static int open_region(struct daemon *d)
{
	const char *why;
	int rc = region_store_create(&d->store, &d->cfg);

	if (!rc && d->store.existing) {
		if (adopt_region(d) == 0)
			return 0;
		region_store_destroy(&d->store);
		rc = region_store_create(&d->store, &d->cfg);
		if (!rc && d->store.existing) {
			log_error("%s came back while it was being removed", d->store.path);
			rc = -EEXIST;
		}
	}
	if (rc)
		return rc;
	rc = region_format(&d->store, &d->cfg);
	if (rc)
		return rc;
	rc = ivrdma_region_open(&d->region, d->store.base, d->store.size, &why);
	if (rc)
		log_error("the region just formatted does not validate: %s", why);
	return rc;
}

static int start(struct daemon *d)
{
	int rc;

	if (mkdir(d->cfg.dir, 0755) < 0 && errno != EEXIST) {
		log_error("cannot create %s: %s", d->cfg.dir, strerror(errno));
		return -errno;
	}
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0)
		return -errno;
	rc = open_signals(d);
	if (!rc)
		rc = open_region(d);
	if (rc)
		return rc;
	if (!d->adopted)
		directory_init(d);
	rc = channels_open(d);
	if (!rc)
		rc = server_open(d);
	if (!rc)
		rc = rejoin_open(d);
	/* The control socket last: once it answers, everything is ready. */
	if (!rc)
		rc = ctl_open(d);
	return rc;
}

static void run(struct daemon *d)
{
	d->running = true;
	while (d->running) {
		int rc = loop_turn(d, migrate_poll_ms(d, 1000));

		if (rc < 0) {
			log_error("epoll_wait: %s", strerror(-rc));
			break;
		}
	}
}

/*
 * With processes attached, the region stays for the next ivrdmad to adopt:
 * they keep their QPs and rejoin it. Without, it goes.
 */
static void stop(struct daemon *d)
{
	bool keep = d->region.base && d->nr_peers > 0;

	ctl_close(d);
	rejoin_close(d);
	if (keep) {
		log_info("leaving region %s in place with %u peer(s) attached, for the next "
			 "ivrdmad to adopt",
			 d->store.path, d->nr_peers);
		server_abandon_peers(d);
		shm_store_release32(&ivrdma_region_header(&d->region)->daemon_pid, 0);
	}
	server_close(d);
	channels_close(d);
	contexts_free(d);
	if (keep)
		region_store_release(&d->store);
	else
		region_store_destroy(&d->store);
	if (d->signals.fd >= 0)
		close(d->signals.fd);
	if (d->epfd >= 0)
		close(d->epfd);
}

int main(int argc, char **argv)
{
	static struct daemon d;
	int verbose, rc;

	rc = options_parse(argc, argv, &d.cfg, &verbose);
	if (rc)
		return rc > 0 ? 0 : 2;
	log_set_level(verbose ? LOG_DEBUG : LOG_INFO);
	d.epfd = d.signals.fd = d.ctl.w.fd = d.store.fd = d.reserve_fd = -1;
	raise_fd_limit();
	rc = start(&d);
	if (rc == 0) {
		char prefix[24];

		subnet_prefix_format(ivrdma_region_header(&d.region)->subnet_prefix, prefix,
				     sizeof(prefix));
		log_info("serving a %llu MiB region %s (%s; subnet %s) to %u node(s) in %s",
			 (unsigned long long)(d.store.size >> 20), d.store.path,
			 d.cfg.region_size_why, prefix, d.nr_listeners, d.cfg.dir);
		run(&d);
	}
	stop(&d);
	return rc ? 1 : 0;
}
