/*
 * A fake core for the broker's tests: an nng rep socket and an fd-channel
 * listener in a directory of the test's own, served by one thread, that
 * answers the way docs/sockets-spec.md says the core does (CLIENT_ADD only
 * after the fds arrived and the region attached; SOCKET -> lowest free
 * channel and a new gen; CONNECT -> -EINPROGRESS; ...) and records what it
 * saw so tests can check the broker's side of the contract.
 */
#ifndef NETCORE_PROXY_BROKER_FAKE_CORE_H
#define NETCORE_PROXY_BROKER_FAKE_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/client_region.h"
#include "proto/msg.h"

#define FAKE_CORE_MAX_CLIENTS 128

struct fake_core;

struct fake_core_seen {
	uint32_t requests;       /* every request received */
	uint32_t bad_requests;   /* failed nc_msg_check */
	uint32_t ids_not_rising; /* hdr.id not above the previous one */
	uint32_t per_type[NC_MSG_TYPE_END];
	struct nc_msg_req last; /* the latest request */
	uint32_t adds_without_fds;
	uint32_t bad_regions; /* region refused, or params impossible */
	uint32_t removed[FAKE_CORE_MAX_CLIENTS];
	uint32_t nremoved;
	uint32_t clients; /* attached now */
};

/* Listens on ipc://DIR/ctl and DIR/fds. NULL on failure. */
struct fake_core *fake_core_start(const char *dir);
void fake_core_stop(struct fake_core *fc);
const char *fake_core_url(const struct fake_core *fc);
const char *fake_core_fds_path(const struct fake_core *fc);

/* Behaviour switches. */
void fake_core_set_hang(struct fake_core *fc, bool hang); /* never reply */
void fake_core_set_reset(struct fake_core *fc,
                         uint32_t client);                   /* ECONNRESET */
void fake_core_set_accept(struct fake_core *fc, bool ready); /* else EAGAIN */

void fake_core_get_seen(struct fake_core *fc, struct fake_core_seen *out);

/* nng peers connected now (brokers whose connection is complete). */
int fake_core_peers(struct fake_core *fc);

/*
 * The core's copies of a client's fds: the memfd's inode and its params,
 * and a dup of its core bell (caller closes). -1 if unknown.
 */
int fake_core_client(struct fake_core *fc, uint32_t client, ino_t *memfd_ino,
                     struct nc_client_params *params, int *core_bell);

#endif /* NETCORE_PROXY_BROKER_FAKE_CORE_H */
