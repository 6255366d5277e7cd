/*
 * Private to services/proxy_broker: the client and socket tables, the
 * message decision logic, and the link to the core. Split this way so the
 * decisions (dispatch.c, table.c) are pure functions over plain structs
 * that a fuzzer and unit tests can drive without sockets, nng or a core;
 * broker.c is the plumbing around them.
 */
#ifndef NETCORE_PROXY_BROKER_BROKER_INTERNAL_H
#define NETCORE_PROXY_BROKER_BROKER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

#include "services/proxy_broker/broker.h"

/* ----------------------------------------------------------------- table */

/* What the broker learned about a socket from the core's replies. */
enum nci_sock_state {
	NCI_SOCK_OPEN = 1,
	NCI_SOCK_BOUND,
	NCI_SOCK_LISTENING,
	NCI_SOCK_CONNECTING,
	NCI_SOCK_CONNECTED,
};

struct nci_sock {
	bool used;
	uint32_t gen;     /* the channel's gen, as the core reported it */
	int32_t domain;   /* AF_INET or AF_INET6, from the request */
	int32_t type;     /* SOCK_STREAM or SOCK_DGRAM, from the request */
	uint32_t state;   /* enum nci_sock_state */
	uint32_t shut;    /* bit 0: read side shut, bit 1: write side */
	uint32_t backlog; /* listening: the granted backlog */
	struct nc_msg_addr local, peer;
};

enum nci_client_state {
	NCI_CLIENT_NEW = 0, /* connected, not attached yet */
	NCI_CLIENT_ADDING,  /* CLIENT_ADD in flight */
	NCI_CLIENT_ATTACHED,
	NCI_CLIENT_REMOVING,  /* gone; CLIENT_REMOVE in flight */
	NCI_CLIENT_RECOVERED, /* learned from the core after a broker
	                         restart; waits for the client's REATTACH */
};

/* epoll's data.ptr points at one of these (first member of its owner). */
struct nci_watch {
	int kind;
};

struct nci_call;
struct nci_client;

/* A recovered client's pidfd: its death before it reattaches. */
struct nci_pidwatch {
	struct nci_watch watch;
	struct nci_client *cl;
	int fd;
};

struct nci_client {
	struct nci_watch watch;
	uint32_t id;  /* 0 until attached; never reused */
	uint32_t gen; /* region generation (1) */
	enum nci_client_state state;
	int32_t pid; /* SO_PEERCRED, at accept */
	uint32_t uid, gid;
	struct nc_client_params params;
	uint64_t region_bytes;
	uint32_t nsocks;        /* used entries in socks */
	uint32_t pending;       /* sum of listeners' granted backlogs */
	struct nci_sock *socks; /* params.max_sockets entries once attached */

	/* Plumbing (broker.c). */
	struct nc_broker *broker;
	int fd; /* attach socket, -1 once closed */
	int memfd, client_bell, core_bell;
	bool known_to_core;    /* its fds may be in the core: REMOVE on death */
	bool gone;             /* attach socket closed: finish and free */
	bool reading;          /* EPOLLIN wanted (no request in flight) */
	int64_t deadline_ms;   /* NEW: must attach before this */
	struct nci_call *call; /* the one request to the core in flight */
	uint32_t call_adds;    /* core connections made when it started */
	bool readd;            /* the core restarted: add again after call */
	bool held;             /* fwd waits for a sync to finish */
	bool suspect;          /* the core said it does not know us */
	uint64_t suspect_at;   /* HELLOs sent by then (recover.c) */
	uint64_t token;        /* reattach secret (ATTACH reply, core) */
	struct nci_pidwatch pidw;    /* RECOVERED only */
	struct nc_msg_req fwd;       /* that request, as forwarded */
	struct nc_msg_hdr reply_hdr; /* the client's id and type to echo */
	struct nci_client *next, *prev;
};

/* Allocates the socket table for `p` (0 or -ENOMEM). */
int nci_client_table_init(struct nci_client *cl,
                          const struct nc_client_params *p);
void nci_client_table_fini(struct nci_client *cl);

/* The entry `sock` names if it exists with generation `gen`, else NULL. */
struct nci_sock *nci_client_sock(const struct nci_client *cl, int32_t sock,
                                 uint32_t gen);

/*
 * Learns from the core's reply to `req` (as it was forwarded) and returns
 * the result for the client: rep->result, or -EIO when the reply
 * contradicts the table (a new socket index out of range or in use).
 */
int32_t nci_apply_reply(struct nci_client *cl, const struct nc_msg_req *req,
                        const struct nc_msg_rep *rep);

/* Restart: empties the table (a new core has no sockets). */
void nci_table_reset(struct nci_client *cl);
/* Restart: one entry from the core's SOCK_LIST reply (0, or -EIO when the
 * reply cannot be true). */
int nci_table_restore(struct nci_client *cl, const struct nc_msg_rep *rep);
void nci_client_dump(const struct nci_client *cl, FILE *out);

/* The broker's entry for an attached client id, or NULL (tests; and
 * recovery will walk the same list). */
struct nci_client *nci_broker_find_client(const struct nc_broker *b,
                                          uint32_t id);
const char *nci_client_state_name(enum nci_client_state s);

/* -------------------------------------------------------------- dispatch */

enum nci_verdict {
	NCI_DISCONNECT = 1, /* not even a header: drop the client */
	NCI_REPLY,          /* answer `error` now, forward nothing */
	NCI_ATTACH,         /* an ATTACH to serve */
	NCI_REATTACH,       /* a REATTACH to serve (req holds it) */
	NCI_FORWARD,        /* send `req` to the core */
};

struct nci_decision {
	enum nci_verdict verdict;
	int32_t error;         /* NCI_REPLY */
	struct nc_msg_hdr hdr; /* as received: the id and type to echo */
	struct nc_msg_req req; /* NCI_FORWARD: rewritten for the core */
};

/*
 * Everything the broker decides about one message from a client before
 * anything is sent anywhere: validation, quota, policy, the socket table,
 * and the rewriting of client ids and the listen backlog. Pure: reads
 * `buf[0..len)` once (a copy), changes nothing.
 */
void nci_decide(const struct nc_broker_config *c, const struct nci_client *cl,
                const void *buf, size_t len, struct nci_decision *d);

/* The backlog LISTEN may have: > 0, or -ENOBUFS (no pending budget). */
int32_t nci_grant_backlog(const struct nc_broker_config *c,
                          const struct nci_client *cl, const struct nci_sock *s,
                          int32_t requested);

/* ------------------------------------------------------------- core link */

struct nci_core;

/*
 * A finished call: status 0 with the core's (checked) reply, -EAGAIN when
 * the core did not answer in time or could not be reached, -EIO when it
 * answered something malformed (rep is then NULL).
 */
typedef void (*nci_done_fn)(void *arg, int status,
                            const struct nc_msg_rep *rep);

int nci_core_open(struct nci_core **out, const char *url, const char *fds_path);
/* Readable when calls finished; then call nci_core_poll(). */
int nci_core_event_fd(const struct nci_core *core);
/* Runs the done functions of finished calls (in the caller's thread). */
void nci_core_poll(struct nci_core *core);
/*
 * Sends `req` (its hdr.id replaced by the link's own increasing id) and
 * calls `done` once it is answered or `timeout_ms` passed. Returns 0, or
 * -errno if it could not even start (then `done` is never called).
 */
int nci_core_call(struct nci_core *core, const struct nc_msg_req *req,
                  uint32_t timeout_ms, nci_done_fn done, void *arg,
                  struct nci_call **out);
/* Passes a client's [memfd, client_bell, core_bell] on the fd channel,
 * connecting (again) first if needed. 0 or -errno. */
int nci_core_send_fds(struct nci_core *core, uint32_t client,
                      uint32_t client_gen, const int fds[3]);
uint64_t nci_core_in_flight(const struct nci_core *core);
/* Once per loop turn: a socket that has not reached the core for a while
 * is replaced (see core_link.c). */
void nci_core_watch(struct nci_core *core);
/* Connections to the core made so far (a new one may be a new core). */
uint32_t nci_core_pipe_adds(const struct nci_core *core);
/* Connections to the core's control socket now (0: none yet, or lost). */
int nci_core_pipes(const struct nci_core *core);
/* Abandons calls in flight (their done functions are not called). */
void nci_core_close(struct nci_core *core);

/* --------------------------------------------------------------- broker */

enum nci_watch_kind { NCI_W_LISTEN = 1, NCI_W_CORE, NCI_W_CLIENT, NCI_W_PID };

struct nc_broker {
	struct nc_broker_config cfg;
	struct sockaddr_un addr;
	dev_t sock_dev;
	ino_t sock_ino;
	int epfd, listen_fd;
	struct nci_watch listen_w, core_w;
	struct nci_core *core;
	struct nci_client *clients;
	uint32_t nclients;
	uint32_t next_client_id;
	uint64_t memory;
	bool accept_paused;        /* out of fds: wait for a client to go */
	struct nc_broker_stats st; /* the counters; the rest is computed */
	/* Agreement with the core (recover.c). */
	uint32_t core_boot; /* the core's boot id; 0 before the first */
	uint32_t seen_adds; /* core connections already looked at */
	bool synced;        /* tables match the core: attach allowed */
	bool sync_busy;     /* a sync call in flight */
	bool sync_failed;   /* retry at sync_retry_ms */
	int64_t sync_retry_ms;
	uint32_t list_after;        /* CLIENT_LIST cursor */
	struct nci_client *listing; /* SOCK_LIST: whose sockets */
	int32_t sock_cursor;
	uint64_t hellos; /* HELLOs sent; the one in flight is number hellos */
};

/* broker.c, for recover.c. */
int64_t nci_now_ms(void);
void nci_client_lost(struct nc_broker *b, struct nci_client *cl);
void nci_free_client(struct nc_broker *b, struct nci_client *cl);
void nci_set_reading(struct nc_broker *b, struct nci_client *cl, bool on);
int nci_send_rep(int fd, const struct nc_msg_rep *rep, const int *fds,
                 int nfds);
void nci_rep_init(struct nc_msg_rep *rep, const struct nc_msg_hdr *asked,
                  int32_t result);
/* Links a new entry into the broker's list (nclients counted). */
void nci_link_client(struct nc_broker *b, struct nci_client *cl);
/* Sends the held request (cl->fwd) to the core now. */
void nci_forward_held(struct nc_broker *b, struct nci_client *cl);
/* Sends the fds and CLIENT_ADD (arg: 1 = adopt a live region). */
int32_t nci_start_add(struct nc_broker *b, struct nci_client *cl, int32_t arg,
                      nci_done_fn done);

/* recover.c: keeping the tables in step with the core across restarts. */
/* After each loop turn: starts a sync when the core connection is new. */
void nci_sync_poll(struct nc_broker *b);
/* True while the core may not know the clients the broker knows (a new
 * connection not yet asked, or a sync running): requests wait. */
bool nci_sync_pending(const struct nc_broker *b);
/* Milliseconds until the sync wants to run again, or -1. */
int nci_sync_timeout(const struct nc_broker *b);
/* The core answered -ECONNRESET for `cl`: asks the core who it is (a
 * HELLO) before deciding; the same core means it dropped the client. */
void nci_sync_suspect(struct nc_broker *b, struct nci_client *cl);
/* A call of `cl` finished: runs a re-add the core restart deferred. */
void nci_sync_after_call(struct nc_broker *b, struct nci_client *cl);
/* A REATTACH from connection `cl` (NEW) with the fds it carried (taken). */
void nci_handle_reattach(struct nc_broker *b, struct nci_client *cl,
                         const struct nc_msg_req *req, int *fds, int nfds);
/* A recovered client's process ended. */
void nci_on_pid_event(struct nc_broker *b, struct nci_pidwatch *w);
/* Frees what recover.c attached to a client. */
void nci_sync_forget(struct nc_broker *b, struct nci_client *cl);

#endif /* NETCORE_PROXY_BROKER_BROKER_INTERNAL_H */
