/*
 * The core's control server (private to the core; see ctl.c): the
 * broker's nng requests and the fd channel that brings client regions.
 */
#ifndef NETCORE_CTL_H
#define NETCORE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/msg.h"
#include "services/netcore/nci.h"

struct nci_clients;
struct nci_ctl;

/*
 * Opens the control server. `url` (nng rep, e.g. ipc:///run/netcore/ctl)
 * and `fds_path` (unix SOCK_SEQPACKET listener) may each be NULL: that
 * transport is not opened, and requests and fds can only be handed in
 * through the functions below (tests, fuzzers). Returns 0 or -errno.
 */
int nci_ctl_create(struct nci_ctl **out, struct nci_clients *clients, int epfd,
                   const char *url, const char *fds_path);
/* Closes the transports and frees fds that were never claimed. */
void nci_ctl_destroy(struct nci_ctl *ctl);

/* Answers up to a batch of pending requests and reads the fd channel if
 * it woke up. True: the batch was full, call again. */
bool nci_ctl_poll(struct nci_ctl *ctl);

/*
 * Answers one request of `len` bytes into *rep (always a complete reply
 * carrying the request's id and type). Sets *hang_up when not even a
 * header was readable: the transport should drop the sender instead.
 */
void nci_ctl_handle(struct nci_ctl *ctl, const void *req, size_t len,
                    struct nc_msg_rep *rep, bool *hang_up);

/*
 * One fd-channel message: the broker's fds for (client, client_gen), in
 * the order memfd, client_bell, core_bell. Takes ownership of all three.
 * The region is attached and checked now; CLIENT_ADD activates it (or
 * reports why it could not be attached).
 */
void nci_ctl_offer_fds(struct nci_ctl *ctl, uint32_t client,
                       uint32_t client_gen, const int fds[3]);

#endif /* NETCORE_CTL_H */
