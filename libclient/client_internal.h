/*
 * libclient's private structures (nci_*), shared by its files, its unit
 * tests and its fuzz target. Not installed; programs include netcore.h.
 *
 * Locks, outermost first (a thread never takes one while holding a later
 * one, and none is held while sleeping except as noted):
 *   client->core_lock read-held by every call using the region (once per
 *                    thread: nci_core_enter counts nesting), released while
 *                    sleeping; write-held by a core-restart recovery, which
 *                    thus runs while no other thread touches the region
 *   sock->lock       one handle's private state (rx queue, flags, rings)
 *   client->ctl_lock the attach socket and the handle table; held across
 *                    one request and its reply (and, for close, across the
 *                    draining of the closed channel, so the channel cannot
 *                    be handed out again meanwhile)
 *   client->data_lock the client-wide rings (free, done) and the private
 *                    stash of empty buffers and queue of returned ones
 *   client->wait_lock who sleeps on the doorbell; see client.c
 */
#ifndef NETCORE_LIBCLIENT_CLIENT_INTERNAL_H
#define NETCORE_LIBCLIENT_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "libclient/netcore.h"
#include "proto/client_region.h"
#include "proto/msg.h"
#include "shm/shm.h"

/* A reply the broker owes us within 5 s (it answers -EAGAIN itself when
 * the core is late); we give up a little later. */
#define NCI_CTL_TIMEOUT_MS 15000
/* Empty buffers taken from the free ring per refill of the stash. */
#define NCI_FREE_BATCH 32u
/* Largest errno value a peer may hand us (Linux's MAX_ERRNO). */
#define NCI_MAX_ERRNO 4095
/* How long a call waits for a restarted broker, or a restarted core's
 * rings, before it gives up (EIO). */
#define NCI_RECOVER_TIMEOUT_MS 10000
/* Options replayed on a socket re-created after a core restart. */
#define NCI_OPTS_MAX 8

struct nc_client {
	/* Fixed at attach; read without locks. */
	struct nc_region region;
	struct nc_client_params params;
	struct nc_client_layout layout;
	struct nc_client_control *control;
	struct nc_sock_state *states;
	uint8_t *pool; /* first buffer */
	struct nc_doorbell client_bell, core_bell;
	uint32_t client_id;
	uint64_t token;        /* proves we are client_id to a new broker */
	char *broker_path;     /* NULL: no broker (tests) */
	unsigned int fork_gen; /* nci_fork_gen at attach */
	pthread_rwlock_t core_lock;
	uint32_t core_epoch;  /* the core epoch our rings belong to */
	struct nc_sock *lost; /* handles a core restart reset (ctl_lock) */

	pthread_mutex_t ctl_lock;
	int ctl_fd; /* -1: no broker (tests) */
	uint32_t next_id;
	bool ctl_dead;
	struct nc_sock **socks; /* by channel index */

	pthread_mutex_t data_lock;
	struct nc_ring free_ring; /* consumer: empty buffers for TX */
	struct nc_ring done_ring; /* producer: consumed RX buffers */
	struct nc_desc *stash;    /* empty buffers we hold (buf_count) */
	uint32_t stash_n;
	struct nc_desc *done_q; /* consumed buffers not yet returned */
	uint32_t done_n;
	uint8_t *held; /* per buffer, 1 while we hold it (atomic bytes) */
	bool broken;   /* free or done ring incoherent: EIO (atomic) */

	pthread_mutex_t wait_lock;
	pthread_cond_t wait_cv;
	bool leader;    /* a thread sleeps in poll(2) on the doorbell */
	uint64_t epoch; /* bumped whenever the doorbell was consumed */
};

/* One received descriptor, copied out of the rx ring and validated. */
struct nci_rxent {
	struct nc_desc d;
	uint32_t off; /* stream: bytes already read from this buffer */
};

/* A setsockopt the core accepted, to replay after a core restart. */
struct nci_opt {
	int level, name;
	uint32_t len;
	uint8_t val[NC_MSG_OPT_MAX];
};

struct nc_sock {
	struct nc_client *c;
	pthread_mutex_t lock;
	uint32_t idx, gen;
	int domain, type;
	bool nonblock;
	struct timeval rcvtimeo, sndtimeo;
	struct nc_ring tx, rx;
	struct nci_rxent *rxq; /* circular, rxq_cap entries */
	uint32_t rxq_head, rxq_n, rxq_cap;
	bool rx_eof;  /* the EOF descriptor arrived (stream) */
	bool rd_shut; /* shutdown(SHUT_RD) here */
	bool wr_shut; /* shutdown(SHUT_WR) here */
	bool dgram_connected;
	bool connect_pending; /* EINPROGRESS given, outcome not reported */
	bool cloexec;         /* F_GETFD's answer; there is no descriptor */
	bool broken;          /* the core broke this channel: EIO */
	int32_t reported_err; /* pending error we already returned once */
	/* What a core restart needs to re-create the socket (recover.c). */
	bool lost;      /* reset by a core restart: no channel any more */
	bool remake;    /* recover.c: to be re-created on the next core */
	bool bound;     /* local holds the name bind gave */
	bool listening; /* backlog holds what listen asked */
	int backlog;
	struct nc_msg_addr local, peer; /* peer: a connected datagram socket */
	struct nci_opt opts[NCI_OPTS_MAX];
	uint32_t nopts;
	struct nc_sock *lost_next; /* the client's list of lost sockets */
};

/* ---------------------------------------------------------- client.c */

/* Bumped in a forked child (pthread_atfork). */
extern unsigned int nci_fork_gen;

/* Builds a client over fds we already hold (the broker's reply, or a
 * test's own region): memfd, client bell, core bell and the attach socket
 * (-1: none) are taken over, closed on failure. Returns 0 or -errno. */
int nci_client_open(int memfd, int client_bell, int core_bell, int ctl_fd,
                    uint32_t client_id, const struct nc_client_params *p,
                    struct nc_client **out);
/* 0, or -EBADF in a forked child that must not use this client. */
int nci_client_usable(const struct nc_client *c);
/* Attaches the client-wide rings (free, done) as they are now. */
int nci_attach_rings(struct nc_client *c);
/* Attach socket lost (broker restart): connect again, REATTACH, retrying
 * until NCI_RECOVER_TIMEOUT_MS. Caller holds ctl_lock. 0 or -errno. */
int nci_reattach(struct nc_client *c);

/* ------------------------------------------------------------ recover.c */
/* Enters a call that uses the region: read-locks core_lock (outermost
 * call of this thread only), after recovering from a core restart if the
 * region shows one. */
void nci_core_enter(struct nc_client *c);
void nci_core_leave(struct nc_client *c);
/* True if the region shows a core newer than the one we are in step with
 * (the next nci_core_enter recovers). */
bool nci_core_restarted(const struct nc_client *c);
/* Around a sleep: lets go of core_lock entirely, then takes it back (and
 * recovers, if the core restarted meanwhile). Returns the nesting depth
 * to give back to nci_core_resume. */
int nci_core_suspend(struct nc_client *c);
void nci_core_resume(struct nc_client *c, int depth);
/* Records a setsockopt the core accepted (replayed after a restart). */
void nci_opt_record(struct nc_sock *s, int level, int name, const void *val,
                    uint32_t len);

/* One request, its reply: 0 or -errno from the reply (or EIO, EAGAIN,
 * EPROTO). Caller holds ctl_lock. */
int nci_call_locked(struct nc_client *c, struct nc_msg_req *req,
                    struct nc_msg_rep *rep);
int nci_call(struct nc_client *c, struct nc_msg_req *req,
             struct nc_msg_rep *rep);
/* A request about `s`, filled with its channel and gen. */
void nci_req_init(struct nc_msg_req *req, enum nc_msg_type type,
                  const struct nc_sock *s);

/* Wake-ups toward the core after we published anything (a ring index):
 * fence, swap core_wants_wakeup (and `ring`'s own request flag, if any) to
 * 0, ring the core bell if either was set. */
void nci_kick_core(struct nc_client *c, struct nc_ring *ring);
/* Asks the core for a wake-up (client_wants_wakeup = 1, full fence). The
 * caller re-checks what it waits for afterwards. */
void nci_arm(struct nc_client *c);
uint64_t nci_epoch(struct nc_client *c);
/* Sleeps until the doorbell was consumed after `epoch` (by us or another
 * thread) or `deadline_ns` (monotonic; < 0 forever). 0, or -ETIMEDOUT. */
int nci_sleep(struct nc_client *c, uint64_t epoch, int64_t deadline_ns);
/* Consumes a pending doorbell without sleeping, unless another thread is
 * the one sleeping on it. */
void nci_consume_bell(struct nc_client *c);

int64_t nci_now_ns(void);
/* now + timeout; < 0 (forever) for a zero timeval, as SO_RCVTIMEO means. */
int64_t nci_deadline_tv(const struct timeval *tv);
int64_t nci_deadline_ms(int timeout_ms);

/* ------------------------------------------------------------ sock.c */

/* Checks the handle may be used here and locks it: 0, or -EBADF. */
int nci_sock_enter(struct nc_sock *s);
void nci_sock_leave(struct nc_sock *s);
/* A private readiness bit (0x4000) for a stream socket whose connect has
 * finished, one way or the other. Never shown to callers. */
short nci_connect_readiness(const struct nc_sock *s,
                            const struct nc_sock_state *st);

/* A handle for channel `idx` generation `gen` (from a SOCKET or ACCEPT
 * reply): attaches its rings, registers it. Caller holds ctl_lock.
 * 0 or -errno (-EIO: the region disagrees). */
int nci_sock_adopt(struct nc_client *c, uint32_t idx, uint32_t gen, int domain,
                   int type, struct nc_sock **out);
/* Puts `s` on channel `idx` generation `gen` (a SOCKET or ACCEPT reply):
 * checks the channel, attaches its rings, registers it. Caller holds
 * ctl_lock. 0 or -EIO. */
int nci_sock_bind_chan(struct nc_client *c, struct nc_sock *s, uint32_t idx,
                       uint32_t gen);
/* Takes a lost socket off the client's list of them (ctl_lock held). */
void nci_lost_unlink(struct nc_client *c, struct nc_sock *s);
/* CLOSE (ordered after the data sent before, at the core), then takes
 * back everything the channel still lends us, unregisters and frees the
 * handle whatever the reply. Caller holds ctl_lock, not s->lock, and no
 * other thread uses the handle any more (closing a handle in use is
 * undefined, as documented in netcore.h). 0 or -errno. */
int nci_sock_release(struct nc_sock *s);

/* ------------------------------------------------------------ io.c */

/* A position in a caller's iovec array. */
struct nci_iov_cursor {
	const struct iovec *iov;
	size_t cnt, i, off;
};

void nci_iov_init(struct nci_iov_cursor *cur, const struct iovec *iov,
                  size_t cnt);
/* Copies the next `n` caller bytes to `dst` (the caller checked there are
 * that many). */
void nci_iov_read(struct nci_iov_cursor *cur, void *dst, size_t n);
/* Copies `n` bytes to the caller's next bytes (as far as they go). */
void nci_iov_write(struct nci_iov_cursor *cur, const void *src, size_t n);

/* ------------------------------------------------------------ data.c */

/* The channel's state, copied once and checked (a lost socket shows a
 * reset). 0 or -EIO. */
int nci_state(struct nc_sock *s, struct nc_sock_state *out);
/* Moves what the rx ring holds into the private queue (as far as it fits),
 * checking each descriptor. 0 or -EIO (the socket is then broken). */
int nci_rx_pull(struct nc_sock *s);
/* poll(2) bits for `s` now (always including ERR/HUP). Caller holds
 * s->lock. */
short nci_readiness(struct nc_sock *s);
/* Waits once for `want` (or ERR/HUP) on `s`: arms the wake-up request,
 * re-checks, sleeps with s->lock released. 0, or -EAGAIN on timeout. */
int nci_wait(struct nc_sock *s, short want, int64_t deadline_ns);
/* Waits are pointless: true if `s` shows none of `want` (or ERR) after
 * consuming the doorbell and arming the next wake-up (the EAGAIN path, so
 * that a caller sleeping on nc_client_fd() is woken by the next change). */
bool nci_would_block(struct nc_sock *s, short want);
/* An error the core reports that we have not returned yet, or 0. */
int nci_pending_error(const struct nc_sock *s, const struct nc_sock_state *st);

/* Sends up to `want` stream bytes from the cursor: how many went onto the
 * tx ring (0: no room or no buffer now), or -EIO. */
ssize_t nci_tx_stream(struct nc_sock *s, struct nci_iov_cursor *cur,
                      size_t want);
/* One datagram (header + `len` bytes): 1 sent, 0 no room now, -EIO. */
int nci_tx_dgram(struct nc_sock *s, const struct nc_dgram_hdr *hdr,
                 struct nci_iov_cursor *cur, size_t len);
/* Stream: copies up to `want` bytes of the private queue to the cursor,
 * consuming them unless `peek`. */
size_t nci_rxq_read(struct nc_sock *s, struct nci_iov_cursor *cur, size_t want,
                    bool peek);
size_t nci_rxq_bytes(const struct nc_sock *s);
/* Datagram at the head of the private queue: its header (copied once)
 * and payload. -EAGAIN if none. */
int nci_rxq_dgram(struct nc_sock *s, struct nc_dgram_hdr *hdr,
                  const uint8_t **payload, size_t *len);
void nci_rxq_drop_head(struct nc_sock *s);

/* Returns every buffer of the private rx queue and of the rx ring to the
 * core (close). Caller holds ctl_lock. */
void nci_rx_drain(struct nc_sock *s);
/* Sends queued returns on the done ring (as far as it has room). */
void nci_done_flush(struct nc_client *c);
/* The client-wide error a data call must report, or 0. */
int nci_client_error(struct nc_client *c);

/* ------------------------------------------------------------ addr.c */

/* A caller's sockaddr for a socket of `domain`: 0 or -EINVAL,
 * -EAFNOSUPPORT. AF_UNSPEC is allowed when `unspec_ok` (connect). */
int nci_addr_from_sockaddr(int domain, const struct sockaddr *sa, socklen_t len,
                           bool unspec_ok, struct nc_msg_addr *out);
/* Writes a peer-given address as Linux would for a socket of `domain`
 * (copies at most *len bytes, sets *len to the full size). 0 or -EIO for
 * an impossible family. */
int nci_addr_to_sockaddr(int domain, const struct nc_msg_addr *a,
                         struct sockaddr *sa, socklen_t *len);

#endif /* NETCORE_LIBCLIENT_CLIENT_INTERNAL_H */
