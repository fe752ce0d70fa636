/* SPDX-License-Identifier: MIT */
/* What the host backend's files share (host.c, host_rejoin.c). */
#ifndef IVT_HOST_INTERNAL_H
#define IVT_HOST_INTERNAL_H

#include <sys/un.h>

#include "ivshmem_msg.h"
#include "transport_internal.h"

struct host_peer {
	unsigned int nr_fds;
	int fds[IVRDMA_MAX_VECTORS];
};

struct host_priv {
	int sock;
	int shm_fd;
	struct ivshmem_msg_reader reader;
	pthread_mutex_t lock;	  /* the peer table: ring() races with notices */
	pthread_mutex_t ctl_lock; /* the socket and its reader: one drainer at a time */
	struct host_peer *peers[IVRDMA_MAX_PEERS];
	char rejoin_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* DIR/rejoin.sock */
};

int64_t host_now_ms(void);
/* A connected (non-blocking) socket, or -errno with a message in err. */
int host_connect(const char *path, char *err, size_t errlen);
/* Waits for the next whole message on sock until the deadline: 0 or -errno. */
int host_recv_until(int sock, struct ivshmem_msg_reader *reader, int64_t deadline, int64_t *value,
		    int *fd);
void host_close_peer(struct host_peer *p);
void host_notify(struct ivt *t, uint16_t peer, enum ivt_peer_event ev);

/* host_rejoin.c */
/* h->rejoin_path from the attach path (DIR/NODE.sock): 0 or -ENAMETOOLONG. */
int host_rejoin_path(struct host_priv *h, const char *attach_path);
int host_reconnect(struct ivt *t);

#endif /* IVT_HOST_INTERNAL_H */
