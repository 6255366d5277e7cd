/*
 * Private declarations shared by the core's modules (core.c, clients.c,
 * sock.c, ctl.c). Nothing here is part of core.h's contract.
 *
 * Event sources. The core sleeps in one epoll set (core.c). Every fd in it
 * is described by a struct nci_src embedded in its owner; epoll's data.ptr
 * points at it. Waking only drains doorbells and raises `ready`; the work
 * itself happens in the next nc_core_poll(), so manual mode (which never
 * sleeps in epoll) does the same work in the same order.
 */
#ifndef NETCORE_NCI_H
#define NETCORE_NCI_H

#include <stdbool.h>
#include <stdint.h>

enum nci_src_kind {
	NCI_SRC_BELL, /* an eventfd doorbell: drained on wake-up */
	NCI_SRC_CTL,  /* nng's receive fd: level-triggered, never read */
	NCI_SRC_FDS,  /* the fd channel's listener or a connection */
};

struct nci_src {
	enum nci_src_kind kind;
	int fd;
	bool ready; /* set on wake-up; cleared by whoever serves it */
};

/* Adds / removes an fd to / from the core's epoll set (level-triggered,
 * readable). Returns 0 or -errno. */
int nci_epoll_add(int epfd, struct nci_src *src);
void nci_epoll_del(int epfd, struct nci_src *src);

/* What the client modules count; reported through nc_core_counters. */
struct nci_stats {
	uint32_t clients;          /* active now */
	uint32_t sockets;          /* open client sockets now */
	uint64_t clients_added;    /* CLIENT_ADD that succeeded */
	uint64_t clients_adopted;  /* of those, live regions (core restart) */
	uint64_t clients_removed;  /* by CLIENT_REMOVE */
	uint64_t clients_broken;   /* disconnected for breaking the region */
	uint64_t ctl_requests;     /* control messages received */
	uint64_t ctl_refused;      /* answered -EPROTO, or hung up */
	uint64_t ctl_duplicates;   /* a resent request answered again */
	uint64_t ctl_relistens;    /* listener renewed: nobody connected */
	uint64_t ctl_reply_failed; /* nng could not take a reply */
	uint64_t fds_refused;      /* fd-channel messages refused */
	uint64_t udp_rx_dropped;   /* no buffer, ring space, or too big */
	uint64_t udp_tx_dropped;   /* bad header, destination or size */
	uint64_t tcp_tx_discarded; /* bytes sent after the send side shut */
};

struct nc_core;
struct nci_ctl;

/* The core's control server, or NULL before nc_core_serve_clients(). */
struct nci_ctl *nci_core_ctl(struct nc_core *c);

#endif /* NETCORE_NCI_H */
