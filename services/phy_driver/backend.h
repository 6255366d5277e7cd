/*
 * Phy backends: where the phy driver's packets come from and go to.
 *
 * A backend moves whole IP packets, one per call, never blocking; the phy
 * loop (phy.h) sleeps on the backend's fd when there is nothing to do. Two
 * exist: TUN (tun.c) and a packet fd (fdlink.c: any fd that carries one
 * packet per read and write, such as a SOCK_SEQPACKET socketpair, which
 * joins two phys back to back without a kernel network in between). A TUN
 * with virtio-net headers will be a third; none of them touches the core.
 */
#ifndef NETCORE_PHY_BACKEND_H
#define NETCORE_PHY_BACKEND_H

#include <stddef.h>
#include <sys/types.h>

struct nc_phy_backend_ops {
	/* Reads one packet into buf (cap bytes). Returns its length, 0 if no
	 * packet is waiting, or -errno. A packet longer than cap is consumed
	 * and reported as -EMSGSIZE. */
	ssize_t (*recv)(void *state, void *buf, size_t cap);
	/* Writes one packet. Returns 0, -EAGAIN if the device cannot take it
	 * now (the caller drops it), or -errno. */
	int (*send)(void *state, const void *pkt, size_t len);
	/* The fd to poll for POLLIN. */
	int (*fd)(void *state);
	/* Releases the backend (a persistent TUN device stays). */
	void (*close)(void *state);
};

struct nc_phy_backend {
	const struct nc_phy_backend_ops *ops;
	void *state;
};

struct nc_tun_config {
	char name[16]; /* device name, e.g. "nctun0" */
	unsigned mtu;
	const char *ipv4; /* kernel side "ADDR/PREFIX", or NULL */
	const char *ipv6; /* kernel side "ADDR/PREFIX", or NULL */
	int persist;      /* keep the device when we exit (restarts) */
};

/* Opens (or re-attaches to) a TUN device and configures its kernel side:
 * MTU, addresses, up. Needs CAP_NET_ADMIN. Returns 0 or -errno. */
int nc_phy_tun_open(struct nc_phy_backend *b, const struct nc_tun_config *c);

/* Uses `fd` (taken over) as a packet link. */
int nc_phy_fdlink_open(struct nc_phy_backend *b, int fd);

#endif /* NETCORE_PHY_BACKEND_H */
