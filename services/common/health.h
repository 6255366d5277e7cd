/*
 * nc_health: the heartbeat every netcore service answers.
 *
 * nc_health_start(url, service) listens on an nng rep0 socket (`url`,
 * e.g. ipc:///run/netcore/core.health) and answers on a thread of its own:
 * our services are not sandboxed programs, so a thread is fine there, and
 * it keeps answering whatever the service loop is doing. What the answer
 * says about the loop comes from the loop itself: it calls nc_health_tick()
 * once per iteration (one atomic store) and the reply carries the age of
 * the last tick. A loop whose sleeps are capped (250-500 ms) therefore
 * ticks even when idle, and a reply with an old tick means a stuck loop
 * even though the process still answers. A process that is stopped or
 * dead does not answer at all. Both count as hung for the supervisor.
 *
 * Messages are fixed-layout and versioned (below). A request that is too
 * short, has the wrong magic or version, or an unknown type is answered
 * with result -EPROTO (or -ENOTSUP for an unknown type), never dropped, so
 * the asker is not left waiting.
 *
 * Counters: NC_HEALTH_COUNTERS u64 slots whose meaning depends on the
 * service (the NC_HC_* indices below); the service sets them with
 * nc_health_set() whenever convenient (relaxed atomic stores).
 *
 * What it does not do: decide anything. Restarting is the supervisor's.
 */
#ifndef NETCORE_COMMON_HEALTH_H
#define NETCORE_COMMON_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#define NC_HEALTH_MAGIC    0x4e434842u /* "NCHB" */
#define NC_HEALTH_VERSION  2
#define NC_HEALTH_PING     1
#define NC_HEALTH_COUNTERS 20

/* The core's counters. */
enum {
	NC_HC_CORE_CLIENTS,
	NC_HC_CORE_SOCKETS,
	NC_HC_CORE_RX_RING, /* phy RX ring occupancy at the last poll */
	NC_HC_CORE_TX_RING, /* phy TX ring occupancy at the last poll */
	NC_HC_CORE_DROP_TX_NO_BUFFER,
	NC_HC_CORE_RX_PACKETS,
	NC_HC_CORE_TX_PACKETS,
	NC_HC_CORE_CTL_REQUESTS,
	NC_HC_CORE_CTL_REFUSED,
	NC_HC_CORE_CLIENTS_BROKEN,
	NC_HC_CORE_UDP_RX_DROPPED,
	NC_HC_CORE_UDP_TX_DROPPED,
	/* Sockets by phase, as published to their clients. */
	NC_HC_CORE_SOCK_OPEN,
	NC_HC_CORE_SOCK_BOUND,
	NC_HC_CORE_SOCK_LISTENING,
	NC_HC_CORE_SOCK_CONNECTING,
	NC_HC_CORE_SOCK_CONNECTED,
	NC_HC_CORE_SOCK_CLOSED,
	NC_HC_CORE_CLIENTS_ADOPTED, /* re-added after a core restart */
};

/* The broker's counters. */
enum {
	NC_HC_BROKER_CLIENTS,
	NC_HC_BROKER_ATTACHED,
	NC_HC_BROKER_SOCKETS,
	NC_HC_BROKER_CORE_PIPES,
	NC_HC_BROKER_MEMORY,
	NC_HC_BROKER_FORWARDED,
	NC_HC_BROKER_REFUSED,
	NC_HC_BROKER_CORE_ERRORS,
	NC_HC_BROKER_DISCONNECTED,
	NC_HC_BROKER_RECOVERED,     /* read from the core, not back yet */
	NC_HC_BROKER_REATTACHED,    /* came back after a broker restart */
	NC_HC_BROKER_CORE_RESTARTS, /* new cores this broker re-filled */
};

struct nc_health_request { /* 16 bytes */
	uint32_t magic;
	uint16_t version;
	uint16_t type; /* NC_HEALTH_PING */
	uint32_t id;   /* echoed */
	uint32_t pad;
};

struct nc_health_reply { /* fixed size, checked by length */
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t id;
	int32_t result; /* 0 or -errno */
	uint32_t pid;   /* of the service */
	uint32_t pad;
	uint64_t loop_age_ms; /* since the loop's last tick */
	uint64_t uptime_ms;   /* since nc_health_start */
	uint64_t ticks;       /* loop iterations so far */
	char service[16];     /* NUL-padded */
	uint64_t counters[NC_HEALTH_COUNTERS];
};

/*
 * Starts answering heartbeats on `url` for `service`. NULL url: does
 * nothing and returns 0 (a service run by hand). Returns 0 or -errno.
 * Call once, before the loop's first tick.
 */
int nc_health_start(const char *url, const char *service);

/* Stops the responder (joins its thread). Safe without a start. */
void nc_health_stop(void);

/* The loop is alive: one relaxed atomic store. */
void nc_health_tick(void);

/* Sets counter `index` (< NC_HEALTH_COUNTERS; others are ignored). */
void nc_health_set(unsigned index, uint64_t value);

/* For the asker: a request with this id. */
void nc_health_request_init(struct nc_health_request *r, uint32_t id);

/*
 * For the asker: checks a reply (length, magic, version, type, id) and
 * copies it out. 0, or -EPROTO; a well-formed error reply gives its result.
 */
int nc_health_reply_parse(const void *buf, size_t len, uint32_t id,
                          struct nc_health_reply *out);

/* For the responder and its fuzz target: the answer to `len` bytes. */
void nc_health_answer(const void *req, size_t len, struct nc_health_reply *out);

#endif /* NETCORE_COMMON_HEALTH_H */
