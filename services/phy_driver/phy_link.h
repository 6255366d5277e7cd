/*
 * phy_link: the phy region that joins the netcore core and the phy driver.
 *
 * The region (created by the supervisor, or a test) holds four rings and a
 * pool of packet buffers:
 *
 *   rx_free    core -> phy   empty buffers the phy may fill
 *   rx_active  phy  -> core  received packets
 *   tx_active  core -> phy   packets to transmit
 *   tx_free    phy  -> core  transmitted buffers coming back
 *
 * The core owns every buffer (it is the pool's owner and validates each
 * descriptor coming back); the phy only ever holds what it was lent. Two
 * doorbells: the core's (rung by the phy) and the phy's (rung by the core).
 *
 * Handshake and restart. Either side may die and come back. The core bumps
 * `core_epoch` whenever it (re)starts. A phy that (re)starts, or that sees
 * `core_epoch` change, stops touching the rings, bumps `phy_request` and
 * rings the core. The core answers a new request by taking back every buffer
 * lent to the phy, re-formatting the rings, lending fresh RX buffers, and
 * setting `phy_granted = phy_request`; only then does the phy attach. Packets
 * in flight at the moment of the restart are lost, and TCP retransmits them;
 * no connection state lives in the phy, so none is lost.
 *
 * What it does not do: talk to TUN (see backend.h), or decide what a packet
 * means (the core does).
 */
#ifndef NETCORE_PHY_LINK_H
#define NETCORE_PHY_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm.h"

#define NC_PHY_REGION_KIND 0x50485921u /* "PHY!" */
#define NC_PHY_MAX_BUF     (1u << 20)

struct nc_phy_params {
	uint32_t ring_slots; /* each of the four rings; power of two */
	uint32_t buf_count;  /* packet buffers in the pool */
	uint32_t buf_size;   /* bytes per buffer: at least the MTU */
	uint32_t mtu;
};

/* Defaults sized for a 65520-byte MTU TUN. */
void nc_phy_params_default(struct nc_phy_params *p);

/* Counters the phy keeps in the region (the core and the supervisor read
 * them). Written only by the phy. */
struct nc_phy_counters {
	uint64_t rx_packets;
	uint64_t rx_bytes;
	uint64_t rx_drop_no_buffer; /* core had no free buffer or ring space */
	uint64_t rx_drop_oversize;  /* longer than a buffer */
	uint64_t tx_packets;
	uint64_t tx_bytes;
	uint64_t tx_errors;   /* the backend refused the packet */
	uint64_t tx_bad_desc; /* descriptor from the core outside the pool */
	uint64_t restarts;    /* handshakes the phy made */
};

/* What the core reports about the packets the phy gave it (read by the
 * supervisor and tests). Written only by the core, once per poll. */
struct nc_phy_core_report {
	uint64_t rx_packets;
	uint64_t drop_ip_bad;   /* malformed or unwanted IPv4/IPv6 */
	uint64_t drop_checksum; /* any checksum error */
	uint64_t drop_tcp;
	uint64_t drop_udp;
};

/* The control block, shared. Every field has exactly one writer. */
struct nc_phy_control {
	uint32_t core_epoch;  /* core: bumped at each core (re)start */
	uint32_t phy_request; /* phy: bumped to ask for fresh rings */
	uint32_t phy_granted; /* core: = phy_request when the rings are fresh */
	uint32_t phy_pid;     /* phy: who holds the rings, for status */
	uint32_t granted_epoch; /* core: its core_epoch when it granted */
	struct nc_phy_counters phy;
	struct nc_phy_core_report core;
};

struct nc_phy_layout {
	uint64_t control;
	uint64_t rx_free, rx_active, tx_active, tx_free;
	uint64_t pool;
	uint64_t size;
};

/* Computes where everything goes; -NC_ELAYOUT for impossible params. */
int nc_phy_layout(const struct nc_phy_params *p, struct nc_phy_layout *out);

/* Creates a phy region (the supervisor's job) with params recorded in the
 * header's layout words. */
int nc_phy_region_create(struct nc_region *r, const struct nc_phy_params *p);

/* Reads and checks the params recorded in an attached region's header. */
int nc_phy_region_params(const struct nc_region *r, struct nc_phy_params *p);

struct nc_phy_control *nc_phy_control(const struct nc_region *r,
                                      const struct nc_phy_layout *l);

/* ---------------------------------------------------------- core side */

#define NC_PHY_BATCH 64

struct nc_phy_core_counters {
	uint64_t handshakes;        /* phy (re)attachments granted */
	uint64_t phy_corrupt;       /* the phy broke a ring or a descriptor */
	uint64_t tx_drop_no_buffer; /* no buffer or ring space for a packet */
};

struct nc_phy_core {
	struct nc_region *region;
	struct nc_phy_params params;
	struct nc_phy_layout layout;
	struct nc_phy_control *control;
	struct nc_pool pool;
	struct nc_ring rx_free, rx_active, tx_active, tx_free;
	struct nc_doorbell *core_bell; /* we sleep on it */
	struct nc_doorbell *phy_bell;  /* we ring it */
	bool up;
	bool signal_pending; /* rings changed since last flush */
	uint32_t tx_pending_count;
	struct nc_desc tx_pending[NC_PHY_BATCH];
	struct nc_phy_core_counters counters;
};

/* Opens the core side: pool, fresh rings, new core_epoch. The link is down
 * until a phy asks for it (nc_phy_core_service). */
int nc_phy_core_open(struct nc_phy_core *c, struct nc_region *r,
                     struct nc_doorbell *core_bell,
                     struct nc_doorbell *phy_bell);
void nc_phy_core_close(struct nc_phy_core *c);

/* Answers a pending phy handshake. Returns true if the link is up. */
bool nc_phy_core_service(struct nc_phy_core *c);

/*
 * Takes up to `max` received packets. Each descriptor was validated: it
 * names a buffer of ours the phy held, with a length within the buffer. The
 * caller owns them until nc_phy_core_rx_release(). Returns a count (0 when
 * the link is down).
 */
int nc_phy_core_rx(struct nc_phy_core *c, struct nc_desc *out, unsigned max);
void *nc_phy_core_data(const struct nc_phy_core *c, const struct nc_desc *d);

/* Gives a received buffer back for the phy to fill again. */
void nc_phy_core_rx_release(struct nc_phy_core *c, const struct nc_desc *d);

/* Copies a packet into a fresh buffer and queues it for transmission; the
 * queue goes out at the next flush (or when the batch is full). Returns 0,
 * -ENOBUFS (dropped and counted), or -ENETDOWN. */
int nc_phy_core_tx(struct nc_phy_core *c, const void *pkt, uint32_t len);

/* Like nc_phy_core_tx, but the caller fills the buffer: reserve, write at
 * most `*cap` bytes to the returned pointer, then commit with the length. */
void *nc_phy_core_tx_reserve(struct nc_phy_core *c, struct nc_desc *d);
int nc_phy_core_tx_commit(struct nc_phy_core *c, struct nc_desc *d,
                          uint32_t len);

/* Takes back transmitted buffers, publishes queued packets and rings the
 * phy if it asked. Call once per loop iteration. */
void nc_phy_core_flush(struct nc_phy_core *c);

/* True if the core may sleep: nothing is pending on its rings and it
 * requested a doorbell (the protocol in shm.h). */
bool nc_phy_core_prepare_wait(struct nc_phy_core *c);

/* ----------------------------------------------------------- phy side */

struct nc_phy_dev {
	struct nc_region *region;
	struct nc_phy_params params;
	struct nc_phy_layout layout;
	struct nc_phy_control *control;
	struct nc_ring rx_free, rx_active, tx_active, tx_free;
	struct nc_doorbell *phy_bell;  /* we sleep on it */
	struct nc_doorbell *core_bell; /* we ring it */
	uint32_t seen_core_epoch;
	uint32_t request; /* our last phy_request */
	bool attached;
	uint32_t stash_count; /* empty RX buffers taken from rx_free */
	struct nc_desc stash[NC_PHY_BATCH];
	uint32_t rx_pending_count;
	struct nc_desc rx_pending[NC_PHY_BATCH];
	uint32_t tx_done_count;
	struct nc_desc tx_done[NC_PHY_BATCH];
};

/* Binds to a phy region; does not handshake yet. */
int nc_phy_dev_open(struct nc_phy_dev *d, struct nc_region *r,
                    struct nc_doorbell *phy_bell,
                    struct nc_doorbell *core_bell);

/* Asks the core for fresh rings (non-blocking half of the handshake). */
void nc_phy_dev_request(struct nc_phy_dev *d);
/* 1 once the core granted our request (the rings are then attached), 0 if
 * not yet, or a negative error. */
int nc_phy_dev_granted(struct nc_phy_dev *d);

/*
 * Asks the core for fresh rings and waits (up to timeout_ms) for the grant.
 * Returns 0 when attached, -ETIMEDOUT if the core did not answer (it may be
 * restarting: call again), or -NC_ECORRUPT.
 */
int nc_phy_dev_handshake(struct nc_phy_dev *d, int timeout_ms);

/* True if the core restarted since our handshake: handshake again. */
bool nc_phy_dev_core_restarted(const struct nc_phy_dev *d);

/* An empty buffer to receive into, or NULL if the core gave us none. */
void *nc_phy_dev_rx_buffer(struct nc_phy_dev *d, struct nc_desc *desc);
/* Queues the filled buffer for the core (published at the next flush); if
 * the core is not keeping up, the packet is dropped and counted. */
void nc_phy_dev_rx_commit(struct nc_phy_dev *d, struct nc_desc *desc,
                          uint32_t len);
/* Gives an unused RX buffer back to our stash (packet dropped, counted). */
void nc_phy_dev_rx_drop(struct nc_phy_dev *d, struct nc_desc *desc);
/* Gives back an RX buffer that nothing was received into (not a drop). */
void nc_phy_dev_rx_unused(struct nc_phy_dev *d, const struct nc_desc *desc);

/* Takes up to `max` packets to transmit; each descriptor was checked to lie
 * inside the pool. Give each back with nc_phy_dev_tx_done(). */
int nc_phy_dev_tx(struct nc_phy_dev *d, struct nc_desc *out, unsigned max);
void *nc_phy_dev_data(const struct nc_phy_dev *d, const struct nc_desc *desc);
void nc_phy_dev_tx_done(struct nc_phy_dev *d, const struct nc_desc *desc);

/* Publishes received packets and returned buffers; rings the core if it
 * asked. Returns 0 or -NC_ECORRUPT (then: handshake again). */
int nc_phy_dev_flush(struct nc_phy_dev *d);

/* True if the phy may sleep on its doorbell (and its backend fd). */
bool nc_phy_dev_prepare_wait(struct nc_phy_dev *d);

#endif /* NETCORE_PHY_LINK_H */
