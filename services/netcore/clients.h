/*
 * The core's side of client regions (private to the core; see clients.c).
 *
 * clients.c owns everything that touches a client region: the private
 * params, layout, pool and ring handles, descriptor validation, state
 * publication and the wake-up protocol. sock.c moves bytes between lwIP
 * and the buffers these functions hand out; ctl.c creates and removes
 * clients. A socket sits on a channel (index 0..max_sockets-1): the
 * channel's tx and rx rings and its nc_sock_state.
 */
#ifndef NETCORE_CLIENTS_H
#define NETCORE_CLIENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/client_region.h"
#include "proto/msg.h"
#include "services/netcore/nci.h"
#include "shm/shm.h"

struct nci_sock;
struct nci_clients;

struct nci_chan {
	struct nc_ring tx;     /* consumer: client -> core */
	struct nc_ring rx;     /* producer: core -> client */
	struct nci_sock *sock; /* NULL: no socket on this channel */
	uint32_t gen;          /* private; published in the state */
	uint32_t rx_head;      /* oldest rx ring index the client may hold */
	uint32_t rx_bytes;     /* bytes enqueued in [rx_head, rx.own_index) */
	uint32_t *rx_len;      /* per slot: bytes enqueued there (lazy) */
	struct nc_sock_state shown; /* what was published last */
};

struct nci_client {
	uint32_t id, gen;
	struct nci_clients *table; /* NULL until active */
	struct nc_region region;
	struct nc_client_params params; /* private copies: never re-read */
	struct nc_client_layout layout;
	struct nc_pool pool;
	struct nc_ring free_ring; /* producer: empty TX buffers */
	struct nc_ring done_ring; /* consumer: RX buffers coming back */
	struct nci_chan *chans;   /* params.max_sockets */
	uint32_t chans_used;      /* channels above this never had a socket */
	struct nc_client_control *control;
	struct nc_sock_state *states;
	struct nc_doorbell client_bell; /* we ring it */
	struct nc_doorbell core_bell;   /* the client rings it */
	struct nci_src bell_src;
	uint16_t *buf_owner; /* per buffer while lent: NCI_OWNER_TX or chan */
	struct nc_desc *free_pending; /* TX buffers to lend again */
	uint32_t free_pending_n;
	uint32_t tx_bufs;     /* TX buffers in circulation (fixed) */
	uint32_t adopt_epoch; /* ADOPTING: the epoch announced; else 0 */
	/* Who the broker says this is (kept for a restarted broker). */
	uint32_t pid, uid, gid;
	uint64_t token;
	/* The last request from the client and its reply: a request resent
	 * after a broker restart (same origin id) is answered from here. */
	uint32_t last_origin;
	uint16_t last_type;
	struct nc_msg_rep last_rep;
	uint32_t retire_deadline; /* RETIRING: sys_now() when streams reset */
	bool broken;              /* disconnect at the next service pass */
	bool changed;             /* something to wake the client for */
	const char *broken_why;
};

/* ------------------------------------------------------------- table */

struct nci_clients *nci_clients_create(int epfd, struct nci_stats *stats);
/* Removes every client (closing their sockets). */
void nci_clients_destroy(struct nci_clients *t);

/*
 * Builds an attached, inactive client from the fds the broker sent. Takes
 * the three fds in every case (closes them on failure; on success the
 * region holds its own dup of the memfd and the client keeps the bells).
 * Returns 0 or -errno (-EINVAL for a region that is not a client region).
 */
int nci_client_attach(struct nci_client **out, uint32_t id, uint32_t gen,
                      int memfd, int client_bell, int core_bell);
/* Frees a client that never became active. */
void nci_client_free(struct nci_client *cl);

/* Activates: formats the rings, lends the first TX buffers, listens to
 * the core doorbell. On failure frees cl. Returns 0 or -errno. */
int nci_clients_add(struct nci_clients *t, struct nci_client *cl);
/* Adds a client whose region a dead core served (the broker re-adds it
 * after a core restart): announces a new epoch and formats the rings only
 * once the client let go of the old ones. On failure frees cl. */
int nci_clients_adopt(struct nci_clients *t, struct nci_client *cl);
struct nci_client *nci_clients_find(struct nci_clients *t, uint32_t id);
/* The client with the smallest id above `after`, or NULL. */
struct nci_client *nci_clients_next(struct nci_clients *t, uint32_t after);
/* Closes every socket of the client toward its peers and frees it. */
void nci_clients_remove(struct nci_clients *t, struct nci_client *cl);
/* The client is gone (CLIENT_REMOVE): closes every socket as a process
 * exit would; a stream still holding the client's bytes keeps the region
 * (out of the table) until they are sent or RETIRE_MS passes. */
void nci_clients_retire(struct nci_clients *t, struct nci_client *cl);

/* One pass over every client; removes broken ones. True: budget ran
 * out somewhere, call again. */
bool nci_clients_service(struct nci_clients *t);
/* Wake-up protocol, core side: true if the core may sleep. */
bool nci_clients_prepare_wait(struct nci_clients *t);
/* After a sleep: withdraws the core's wake-up requests. */
void nci_clients_woken(struct nci_clients *t);
/* lwIP called back for some socket: poll again before sleeping. */
void nci_clients_mark_dirty(struct nci_clients *t);
bool nci_clients_take_dirty(struct nci_clients *t);
struct nci_stats *nci_clients_stats(struct nci_clients *t);
/* Adds each socket's published phase to counts[phase] (phase < n). */
void nci_clients_count_phases(const struct nci_clients *t, uint64_t *counts,
                              unsigned n);

/* ---------------------------------------------------- for sock.c */

/* The client broke its region: it is disconnected at the next pass. */
void nci_client_fail(struct nci_client *cl, const char *why);
void nci_client_mark_dirty(struct nci_client *cl);
struct nci_stats *nci_client_stats(struct nci_client *cl);

/* Lowest free channel (no socket, rx ring empty), with stale tx
 * descriptors returned; -EMFILE if none, -ECONNRESET if the client broke. */
int nci_client_chan_alloc(struct nci_client *cl);
/* Puts a socket on a channel: bumps and publishes the generation. */
uint32_t nci_client_chan_attach(struct nci_client *cl, int chan,
                                struct nci_sock *s);
/* The socket is gone; the channel publishes FREE. */
void nci_client_chan_release(struct nci_client *cl, int chan);
/* The socket on a channel if `gen` is current, else NULL. */
struct nci_sock *nci_client_chan_sock(struct nci_client *cl, int32_t chan,
                                      uint32_t gen);

/*
 * Dequeues up to `max` descriptors from a channel's tx ring, each checked:
 * a TX buffer lent to the client, exact start, length within the buffer,
 * aux == chan. Each becomes held by the core until nci_client_tx_done().
 * Returns the count, or -1 if the client broke its region (already failed).
 */
int nci_client_tx_take(struct nci_client *cl, int chan, struct nc_desc *out,
                       unsigned max);
/* Descriptors ready on a channel's tx ring; -1 if the client broke it. */
int nci_client_tx_ready(struct nci_client *cl, int chan);
/* A consumed TX buffer: lent again on the free ring (batched). */
void nci_client_tx_done(struct nci_client *cl, const struct nc_desc *d);

/* Bytes of a buffer the core holds (validated). */
uint8_t *nci_client_data(struct nci_client *cl, const struct nc_desc *d);
uint32_t nci_client_buf_size(const struct nci_client *cl);

/* Slots free on a channel's rx ring; -1 if the client broke it. */
int nci_client_rx_room(struct nci_client *cl, int chan);
/* A held buffer to receive into; false if the client holds them all. */
bool nci_client_rx_get(struct nci_client *cl, struct nc_desc *out);
bool nci_client_rx_available(const struct nci_client *cl);
void nci_client_rx_put(struct nci_client *cl, const struct nc_desc *d);
/* Lends filled buffers on a channel's rx ring (length = bytes). Returns
 * how many went (the caller reserved the room), or -1 if the client
 * broke the ring. */
int nci_client_rx_publish(struct nci_client *cl, int chan,
                          const struct nc_desc *d, unsigned n);
/* Accounts for what the client consumed from the rx ring; returns the
 * descriptors still on it and sets *bytes to their data bytes. */
uint32_t nci_client_rx_refresh(struct nci_client *cl, int chan,
                               uint32_t *bytes);
/* True if the client consumed rx descriptors since the last refresh. */
bool nci_client_rx_consumed(struct nci_client *cl, int chan);

/* Publishes a channel's state (its generation filled in) if it changed:
 * error, phase, counts, then events last. */
void nci_client_publish(struct nci_client *cl, int chan,
                        const struct nc_sock_state *st);

#endif /* NETCORE_CLIENTS_H */
