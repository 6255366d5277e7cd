/*
 * A fake netcore for libclient's tests: plays the core's side of a client
 * region (buffers, rings, socket states, doorbells) directly, and the
 * broker's side of the control channel from a thread, so libclient can be
 * tested with no service running.
 *
 * The region is created as the broker would (nc_client_region_create) and
 * the client is built over it either directly (fake_start: socketpair as
 * the attach socket, no ATTACH) or through nc_client_attach against a
 * listening unix socket (fake_listen + fake_attach_reply).
 *
 * Core-side operations lock `lock`, so a test thread may play the core
 * while the broker thread answers requests.
 */
#ifndef NETCORE_LIBCLIENT_TESTING_FAKE_H
#define NETCORE_LIBCLIENT_TESTING_FAKE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libclient/client_internal.h"

#define FAKE_MAX_SOCKS 8

struct fake_opt {
	int level, optname;
	uint32_t len;
	uint8_t val[NC_MSG_OPT_MAX];
};

struct fake {
	struct nc_client_params p;
	struct nc_client_layout l;
	struct nc_region region;
	struct nc_client_control *control;
	struct nc_sock_state *states;
	struct nc_doorbell client_bell, core_bell;
	struct nc_pool pool;
	struct nc_ring free_ring, done_ring;
	struct nc_ring tx[FAKE_MAX_SOCKS], rx[FAKE_MAX_SOCKS];
	bool used[FAKE_MAX_SOCKS];
	int type[FAKE_MAX_SOCKS];
	struct nc_msg_addr name[FAKE_MAX_SOCKS], peer[FAKE_MAX_SOCKS];
	pthread_mutex_t lock;

	/* Broker side. */
	int ctl_fd;    /* our end of the attach socket */
	int listen_fd; /* fake_listen: where nc_client_attach connects */
	pthread_t thread;
	bool thread_running;
	bool stop; /* atomic: set by fake_stop, read by the thread */

	/* Behaviour the tests choose. */
	int forced[NC_MSG_TYPE_END]; /* non-zero: reply this result */
	bool connect_async;          /* CONNECT: -EINPROGRESS, CONNECTING */
	uint32_t pending_accepts;    /* ACCEPT succeeds this many times */
	struct nc_client_params attach_params; /* what ATTACH's reply says */
	int attach_fds;     /* how many fds ATTACH's reply carries (3) */
	int attach_id_skew; /* added to ATTACH's reply id */

	/* What happened. */
	unsigned int requests[NC_MSG_TYPE_END];
	struct nc_msg_req last[NC_MSG_TYPE_END];
	size_t closed_tx_bytes; /* bytes the client queued before CLOSE */
	struct fake_opt opts[16];
	unsigned int nopts;

	struct nc_client *client; /* fake_start's */
};

/* Small parameters that make rings and pools run out quickly. */
void fake_params_small(struct nc_client_params *p);

/* Region, pool, rings, doorbells; lends the initial buffers on the free
 * ring. No client yet. Returns 0 or -errno. */
int fake_init(struct fake *f, const struct nc_client_params *p);
/* fake_init + a client over a socketpair served by the broker thread. */
int fake_start(struct fake *f, const struct nc_client_params *p);
/* Listens at `path` for one nc_client_attach (then serves it). */
int fake_listen(struct fake *f, const char *path);
/* Detaches f->client if any, stops the thread, frees everything. */
void fake_stop(struct fake *f);

/* ------------------------------------------------------- core's side */

/* What SOCKET does at the core, without a broker: the lowest free
 * channel, rings formatted, gen bumped. 0 or -errno. */
int fake_channel(struct fake *f, int type, uint32_t phase, uint32_t *idx,
                 uint32_t *gen);

/* Lends `n` more empty buffers on the free ring; how many it could. */
unsigned int fake_lend_free(struct fake *f, unsigned int n);
/* Receive: one buffer with `len` bytes (or a datagram with `hdr`). */
int fake_rx_data(struct fake *f, uint32_t sock, const void *data, size_t len);
int fake_rx_dgram(struct fake *f, uint32_t sock, const struct nc_dgram_hdr *hdr,
                  const void *data, size_t len);
int fake_rx_eof(struct fake *f, uint32_t sock);
/* Enqueues a raw (possibly forged) descriptor on the rx ring. */
int fake_rx_raw(struct fake *f, uint32_t sock, const struct nc_desc *d);
/* Takes what the client queued on the tx ring: copies up to `max` bytes
 * of data (datagrams: headers included), takes the buffers back. Returns
 * bytes copied, or -1 if a descriptor was not one the pool lent. */
long fake_tx_take(struct fake *f, uint32_t sock, void *out, size_t max,
                  unsigned int *ndesc);
/* Takes buffers back from the done ring: how many, or -1 if one was not
 * ours. */
int fake_done_take(struct fake *f);
void fake_set_state(struct fake *f, uint32_t sock, uint32_t phase,
                    uint32_t events, int32_t error);
/* The core's half of the wake-up protocol: fence, swap the client's
 * request to 0, ring if it was set. True if it rang. */
bool fake_wake_client(struct fake *f);
/* Whether the client rang the core bell since the last call. */
bool fake_core_rung(struct fake *f);
/* Buffers lent and not yet back (free ring, rx rings, client's hands). */
uint32_t fake_lent(struct fake *f);

#endif /* NETCORE_LIBCLIENT_TESTING_FAKE_H */
