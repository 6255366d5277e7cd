/*
 * The netcore core: lwIP (NO_SYS=1) in one event loop over a phy region.
 *
 * Two ways to run it. Manual mode: the host calls nc_core_poll(), which
 * advances the stack once (packets in, timers, control requests, client
 * rings, packets out) and returns advice: call again at once, or not before
 * some time; a host that sleeps in between uses nc_core_prepare_wait() and
 * nc_core_wait() (or polls nc_core_fd() beside its own fds). Automatic
 * mode: nc_core_run() is that same call in a loop that sleeps on every
 * event source and the next lwIP timer. Deterministic tests use manual mode
 * on a virtual clock (nc_lwip_clock_set, before nc_core_create).
 *
 * Clients are optional: nc_core_serve_clients() adds the broker's control
 * socket, the fd channel and client regions (docs/sockets-spec.md).
 *
 * lwIP is a process-wide singleton, so there is at most one core per process.
 */
#ifndef NETCORE_CORE_H
#define NETCORE_CORE_H

#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "services/phy_driver/phy_link.h"
#include "shm/shm.h"

struct nc_core_config {
	struct in_addr ipv4;      /* the stack's address */
	uint8_t ipv4_prefix;      /* e.g. 24 */
	struct in_addr ipv4_peer; /* the kernel side: default gateway */
	struct in6_addr ipv6;     /* global address; all-zero: none */
	uint8_t ipv6_prefix;
	struct in6_addr ipv6_peer; /* default router; all-zero: none */
	uint16_t echo_port;        /* diagnostic TCP+UDP echo; 0 = off */
};

/* Addresses and prefixes a test or the supervisor would pick by default. */
void nc_core_config_default(struct nc_core_config *cfg);

/* Parses "ADDR/PREFIX" for IPv4 or IPv6 into the config. 0 or -EINVAL. */
int nc_core_config_set_ipv4(struct nc_core_config *cfg, const char *cidr);
int nc_core_config_set_ipv6(struct nc_core_config *cfg, const char *cidr);

struct nc_core_counters {
	uint64_t rx_packets, rx_bytes; /* from the phy into lwIP */
	uint64_t tx_packets, tx_bytes; /* from lwIP to the phy */
	uint64_t drop_tx_no_buffer;    /* no buffer or ring space */
	uint64_t drop_ip_bad;   /* lwIP: IPv4/IPv6 header, length, proto */
	uint64_t drop_checksum; /* lwIP: any checksum error */
	uint64_t drop_tcp;      /* lwIP: TCP segments dropped */
	uint64_t drop_udp;      /* lwIP: UDP datagrams dropped */
	uint64_t phy_handshakes;
	uint64_t phy_corrupt;
	uint32_t rx_ring_ready; /* occupancy at the last poll */
	uint32_t tx_ring_used;
	struct nc_phy_counters phy; /* as the phy reports them */
	/* Client sockets (all zero unless nc_core_serve_clients). */
	uint32_t clients;         /* attached now */
	uint32_t client_sockets;  /* open now, all clients */
	uint64_t clients_added;   /* by CLIENT_ADD */
	uint64_t clients_adopted; /* of those: live regions after a restart */
	/* Client sockets by enum nc_sock_phase, as last published. */
	uint64_t sockets_by_phase[8];
	uint64_t clients_removed;  /* by CLIENT_REMOVE */
	uint64_t clients_broken;   /* disconnected: broke their region */
	uint64_t ctl_requests;     /* control messages received */
	uint64_t ctl_refused;      /* answered -EPROTO, or hung up */
	uint64_t fds_refused;      /* fd-channel records refused */
	uint64_t udp_rx_dropped;   /* no client buffer or room, too big */
	uint64_t udp_tx_dropped;   /* bad header, destination or size */
	uint64_t tcp_tx_discarded; /* bytes sent on a closed send side */
};

struct nc_core;

/*
 * Creates the core on an attached phy region. Takes no ownership of the
 * region or doorbells; they must outlive the core. Returns NULL with errno
 * set (EBUSY: a core already exists in this process).
 */
struct nc_core *nc_core_create(const struct nc_core_config *cfg,
                               struct nc_region *phy_region,
                               struct nc_doorbell *core_bell,
                               struct nc_doorbell *phy_bell);

/* Tears the core down (lwIP state cannot be reset; the process should exit
 * after this). */
void nc_core_destroy(struct nc_core *c);

struct nc_core_advice {
	bool again;       /* more work is ready: call again at once */
	uint32_t wait_ms; /* else: nothing to do for this long, at most */
};

/*
 * Serves client sockets: an nng rep socket listens on `ctl_url` (e.g.
 * "ipc:///run/netcore/ctl") for the broker's requests, and a unix
 * SOCK_SEQPACKET socket at `fds_path` receives each client's region and
 * doorbells. Either may be NULL: that transport is not opened (tests hand
 * requests in directly). Socket files are made mode 0600; a stale one at
 * `fds_path` is replaced. Raises the soft fd limit to the hard one (each
 * client holds three fds). Call once, after nc_core_create. nng starts
 * threads; nothing else in the core does. Returns 0 or -errno.
 */
int nc_core_serve_clients(struct nc_core *c, const char *ctl_url,
                          const char *fds_path);

/* Advances the stack once. */
struct nc_core_advice nc_core_poll(struct nc_core *c);

/*
 * Sleeping between polls. nc_core_prepare_wait() runs the wake-up
 * protocol toward the phy and every client (request a doorbell, fence,
 * re-check) and returns true if the core may sleep now; false means work
 * appeared: poll again. nc_core_wait() then sleeps up to `timeout_ms` on
 * every event source (phy doorbell, control socket, fd channel, client
 * doorbells) and clears the doorbells that woke it; returns 1 if woken, 0
 * on timeout, -errno on error. A host multiplexing its own fds can poll
 * nc_core_fd() (readable when nc_core_wait would return at once) and then
 * call nc_core_wait(c, 0).
 */
bool nc_core_prepare_wait(struct nc_core *c);
int nc_core_wait(struct nc_core *c, int timeout_ms);
int nc_core_fd(const struct nc_core *c);

/* The automatic loop: polls, sleeps on every event source and timers,
 * until *stop becomes non-zero. Returns 0, or -errno if waiting failed. */
int nc_core_run(struct nc_core *c, volatile sig_atomic_t *stop);

void nc_core_get_counters(const struct nc_core *c,
                          struct nc_core_counters *out);

#endif /* NETCORE_CORE_H */
