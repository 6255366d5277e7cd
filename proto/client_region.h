/*
 * The client region: one per attached client, shared by the client
 * (libclient) and the core, created by the broker.
 *
 * Layout (offsets from nc_client_layout(); parameters in the region
 * header's layout words 0..3):
 *
 *   page 0      region header (shm)
 *   control     struct nc_client_control: client-wide wake-up flags
 *   states      struct nc_sock_state[max_sockets]: written by the core only
 *   free ring   core -> client: empty buffers the client may fill (TX)
 *   done ring   client -> core: RX buffers the client has consumed
 *   per socket  tx ring (client -> core) and rx ring (core -> client)
 *   pool        buf_count buffers of buf_size bytes, owned by the core
 *
 * Ownership. The core owns every buffer (nc_pool). It lends empty buffers on
 * the free ring; the client fills one, and enqueues its descriptor on a
 * socket's tx ring; the core accepts it, copies the bytes once, and lends
 * the buffer again. For receive the core fills a buffer it holds, lends it
 * on the socket's rx ring; the client copies out and returns it on the done
 * ring. Descriptors: offset = buffer + 0, length = bytes used, aux = socket
 * index (checked), flags below. Datagram sockets prefix the data in the
 * buffer with struct nc_dgram_hdr (length includes it).
 *
 * Wake-ups (shm.h's protocol at client granularity). Before sleeping the
 * client sets control->client_wants_wakeup, fences, re-checks everything it
 * waits for (its rx rings, the free ring, socket states), and sleeps on the
 * client doorbell only if nothing changed. The core, after it has changed
 * anything for this client (a ring, a state), fences and swaps the flag to
 * 0; if it was set, it rings the client doorbell once. The same holds the
 * other way with core_wants_wakeup and the core doorbell.
 *
 * Core restart (epochs in nc_client_control). A core that adopts a live
 * region (the broker re-adds every client to a restarted core) must not
 * format rings the client may be using. It stores core_epoch + 1 in
 * core_epoch (release) and rings the client. The client, at its next
 * entry, forgets everything the old core lent it (buffers, ring indices,
 * channels), stores the new epoch in client_epoch (release; pairs with the
 * core's acquire) and waits. Only then does the core format the rings,
 * lend fresh buffers and store the epoch in ready_epoch (release; pairs
 * with the client's acquire); the client attaches its rings anew. Its
 * connected streams are reset (ECONNRESET); listeners and datagram
 * sockets are re-created by the client on new channels. A first attach
 * starts with all three epochs at 1.
 *
 * Trust. The client is hostile: the core keeps the parameters, layout,
 * pool and ring handles privately, copies each descriptor once and checks
 * it (buffer start, length, aux) before use. Anything wrong disconnects the
 * client. The client may trust nothing either: it validates what it reads
 * (an incoherent core is reported as EIO, never a crash).
 */
#ifndef NETCORE_PROTO_CLIENT_REGION_H
#define NETCORE_PROTO_CLIENT_REGION_H

#include <stdint.h>

#include "shm/shm.h"

#define NC_CLIENT_REGION_KIND 0x434c4e54u /* "CLNT" */

struct nc_client_params {
	uint32_t max_sockets; /* channels in the region (quota: sockets) */
	uint32_t ring_slots;  /* each ring; power of two */
	uint32_t buf_count;   /* quota: buffer memory = count * size */
	uint32_t buf_size;
};

void nc_client_params_default(struct nc_client_params *p);

struct nc_client_layout {
	uint64_t control;
	uint64_t states;
	uint64_t free_ring;
	uint64_t done_ring;
	uint64_t sock_rings; /* socket i: tx at sock_rings + 2*i*ring_size,
	                        rx right after it */
	uint64_t ring_size;  /* bytes per ring, cache-line aligned */
	uint64_t pool;
	uint64_t size;
};

/* -NC_ELAYOUT for impossible parameters. */
int nc_client_layout(const struct nc_client_params *p,
                     struct nc_client_layout *out);
uint64_t nc_client_tx_ring(const struct nc_client_layout *l, uint32_t sock);
uint64_t nc_client_rx_ring(const struct nc_client_layout *l, uint32_t sock);

/* The broker: creates a region (memfd, sealed) with params recorded. */
int nc_client_region_create(struct nc_region *r,
                            const struct nc_client_params *p);
/* Either side: reads and checks the params recorded in the header. */
int nc_client_region_params(const struct nc_region *r,
                            struct nc_client_params *p);

struct nc_client_control {
	uint32_t client_wants_wakeup; /* set: client; swapped to 0: core */
	uint32_t core_epoch;  /* core: bumped when a new core adopts us */
	uint32_t ready_epoch; /* core: rings fresh for this epoch */
	uint32_t pad0[13];
	uint32_t core_wants_wakeup; /* set: core; swapped to 0: client */
	uint32_t client_epoch; /* client: let go of the rings before this */
	uint32_t pad1[14];
};

/* Socket events, as the core publishes them in nc_sock_state.events. */
enum nc_sock_event {
	NC_EV_READABLE = 1u << 0,   /* data, EOF or a datagram queued */
	NC_EV_WRITABLE = 1u << 1,   /* connected and the send side open */
	NC_EV_HUP = 1u << 2,        /* both directions closed, or reset */
	NC_EV_ERROR = 1u << 3,      /* error holds a pending errno */
	NC_EV_RDHUP = 1u << 4,      /* peer shut its sending side */
	NC_EV_ACCEPTABLE = 1u << 5, /* listener: accept_queue > 0 */
	NC_EV_CONNECTED = 1u << 6,  /* connect completed */
};

enum nc_sock_phase {
	NC_SS_FREE = 0,
	NC_SS_OPEN, /* socket() done, nothing else */
	NC_SS_BOUND,
	NC_SS_LISTENING,
	NC_SS_CONNECTING,
	NC_SS_CONNECTED,
	NC_SS_CLOSED, /* reset, or closed by the core */
};

/* Per socket channel, written only by the core (64 bytes). */
struct nc_sock_state {
	uint32_t gen;          /* bumped when the channel gets a new socket */
	uint32_t events;       /* enum nc_sock_event bits */
	int32_t error;         /* pending SO_ERROR (positive errno) or 0 */
	uint32_t phase;        /* enum nc_sock_phase */
	uint32_t rx_queued;    /* bytes on the rx ring (FIONREAD) */
	uint32_t accept_queue; /* listener: connections waiting */
	uint32_t pad[10];
};

/* Descriptor flags on the rx ring. */
enum nc_rx_flags {
	NC_RXF_EOF = 1u << 0, /* zero-length: the peer closed its side */
};

/* Prefix of every datagram in a buffer (destination on tx, source on rx). */
struct nc_dgram_hdr {
	uint16_t family; /* AF_INET or AF_INET6 */
	uint16_t port;   /* host order */
	uint32_t scope_id;
	uint8_t addr[16];
};

#endif /* NETCORE_PROTO_CLIENT_REGION_H */
