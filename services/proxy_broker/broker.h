/*
 * proxy_broker: the control plane between sandboxed clients and the core.
 *
 * Clients connect to the attach socket (unix SOCK_SEQPACKET), attach, and
 * then send their socket operations (nc_msg_req) there. The broker checks
 * each one (nc_msg_check), applies quotas and policy, and forwards it to the
 * core over nng req/rep; the core's answer goes back to the client. It
 * creates each client's region and doorbells and passes them to the core
 * over a side unix socket (the fd channel) and to the client in the ATTACH
 * reply. docs/sockets-spec.md is the contract; README.md beside this file
 * has the protocols, the config format and the quota and policy rules.
 *
 * This header is what other components use: the config (the supervisor
 * will read and check the same file), the policy checks, and the broker as
 * a library with a manual step function (the service's main loop, and the
 * tests, drive it).
 */
#ifndef NETCORE_PROXY_BROKER_BROKER_H
#define NETCORE_PROXY_BROKER_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/client_region.h"
#include "proto/msg.h"

/* ---------------------------------------------------------------- config */

#define NC_BROKER_MAX_RULES 256 /* per rule list */
#define NC_BROKER_MAX_UIDS  64
#define NC_BROKER_ERR_MAX   256 /* enough for any parse error message */

/* One address/port rule. family 0 matches both families. */
struct nc_broker_rule {
	uint8_t allow;      /* 1 allow, 0 deny */
	uint8_t family;     /* 0 (any), 4 or 6 */
	uint8_t prefix_len; /* 0..32 or 0..128 */
	uint8_t pad;
	uint16_t port_lo, port_hi; /* inclusive, host order */
	uint8_t addr[16];          /* network order; host bits zero */
};

struct nc_broker_uid_range {
	uint32_t lo, hi; /* inclusive */
};

struct nc_broker_config {
	/* Region per client (and so the per-client quotas). */
	struct nc_client_params region;
	uint32_t max_clients;       /* attach connections at once */
	uint32_t max_backlog;       /* per listener: LISTEN backlog cap */
	uint32_t max_pending;       /* per client: sum of granted backlogs */
	uint64_t memory_limit;      /* bytes: all clients' regions together */
	uint32_t attach_timeout_ms; /* a connection must ATTACH within this */
	uint32_t core_timeout_ms;   /* one forwarded request, end to end */
	/* Who may attach: empty = anyone. */
	uint32_t uid_count;
	struct nc_broker_uid_range uids[NC_BROKER_MAX_UIDS];
	/* The file's rules, in order; the defaults follow them implicitly. */
	uint32_t connect_count;
	struct nc_broker_rule connect[NC_BROKER_MAX_RULES];
	uint32_t bind_count;
	struct nc_broker_rule bind[NC_BROKER_MAX_RULES];
};

/* Everything at its default (README.md lists them). */
void nc_broker_config_default(struct nc_broker_config *c);

/*
 * Parses config text (on top of the defaults) into `c`. Returns 0, or
 * -EINVAL with `err` (NC_BROKER_ERR_MAX bytes is always enough) saying
 * "line N: what is wrong". `text` need not be NUL-terminated.
 */
int nc_broker_config_parse(struct nc_broker_config *c, const char *text,
                           size_t len, char *err, size_t err_size);

/* Reads and parses a file: 0, -errno (err says which file), or -EINVAL. */
int nc_broker_config_load(struct nc_broker_config *c, const char *path,
                          char *err, size_t err_size);

/* Writes `c` in the file format; parsing the output gives `c` back. */
void nc_broker_config_write(const struct nc_broker_config *c, FILE *out);

/* Region bytes per client under `c` (0 if the region params are bad). */
uint64_t nc_broker_region_bytes(const struct nc_broker_config *c);

/*
 * Policy. An IPv4-mapped IPv6 destination (::ffff:a.b.c.d) is judged as the
 * IPv4 address it maps, so an IPv6 socket cannot slip past an IPv4 rule.
 * connect: 0 or -EACCES; family 0 (AF_UNSPEC: dissolve a UDP association)
 * is always allowed, any other family but AF_INET/AF_INET6 is -EAFNOSUPPORT.
 * bind: 0 or -EPERM. uid: true if it may attach.
 */
int nc_broker_connect_allowed(const struct nc_broker_config *c,
                              const struct nc_msg_addr *dst);
int nc_broker_bind_allowed(const struct nc_broker_config *c, uint16_t port);
bool nc_broker_uid_allowed(const struct nc_broker_config *c, uint32_t uid);

/* ---------------------------------------------------------------- broker */

struct nc_broker_options {
	const char *socket_path; /* attach socket to listen on (mode 0660) */
	const char *core_ctl;    /* nng URL the core's rep listens on */
	const char *core_fds;    /* unix seqpacket path the core listens on */
	struct nc_broker_config config;
};

struct nc_broker;

/*
 * Creates the attach socket (replacing a stale socket file; refusing a
 * live broker's socket with -EADDRINUSE and a non-socket file with
 * -EEXIST), dials the core (in the background: the core may start later)
 * and returns the broker. Returns 0 or -errno.
 */
int nc_broker_create(struct nc_broker **out, const struct nc_broker_options *o);

/*
 * One turn of the event loop: waits up to `timeout_ms` (-1: until
 * something happens) for clients, the core's replies and the broker's own
 * deadlines, and handles what is ready. `sigmask`, if not NULL, is the
 * signal mask to wait with (epoll_pwait), so a caller can keep its signals
 * blocked except while waiting. Returns 0, or -errno if the loop itself
 * failed (EINTR is not a failure).
 */
int nc_broker_step(struct nc_broker *b, int timeout_ms,
                   const sigset_t *sigmask);

/* Closes everything without telling the core anything: a restarted broker
 * is meant to take over the core's clients (recovery, issue 5). Unlinks
 * the attach socket if it is still ours. NULL is fine. */
void nc_broker_destroy(struct nc_broker *b);

struct nc_broker_stats {
	uint32_t core_pipes;    /* nng connections to the core (0: none) */
	uint32_t clients;       /* any state, including being removed */
	uint32_t attached;      /* fully attached */
	uint32_t sockets;       /* socket table entries, all clients */
	uint64_t memory;        /* bytes of regions held */
	uint64_t calls;         /* requests to the core in flight */
	uint64_t forwarded;     /* requests forwarded to the core, ever */
	uint64_t refused;       /* answered by the broker itself, ever */
	uint64_t core_errors;   /* timeouts, transport and bad replies, ever */
	uint64_t disconnected;  /* clients dropped for unreadable messages */
	uint64_t core_restarts; /* new cores seen (clients re-added), ever */
	uint64_t reattached;    /* clients back after a broker restart, ever */
	uint32_t recovered;     /* learned from the core, not back yet */
	bool synced;            /* tables agree with the core */
};

void nc_broker_get_stats(const struct nc_broker *b, struct nc_broker_stats *s);

/*
 * The client and socket tables, one line each (README.md has the format):
 *   broker core_pipes 1 clients 1 attached 1 sockets 1 memory 8572928/...
 *   client 1 state attached pid 42 uid 1000 gid 1000 sockets 1/64 ...
 *   sock client 1 index 0 gen 1 tcp4 listening local 0.0.0.0:80 ...
 */
void nc_broker_dump(const struct nc_broker *b, FILE *out);

#endif /* NETCORE_PROXY_BROKER_BROKER_H */
