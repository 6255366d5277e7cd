/*
 * Client sockets over lwIP's raw API (private to the core; see sock.c).
 */
#ifndef NETCORE_SOCK_H
#define NETCORE_SOCK_H

#include <stdbool.h>

#include "proto/msg.h"

struct nci_client;
struct nci_sock;

/*
 * Answers one socket request of an active client (every type but
 * CLIENT_ADD / CLIENT_REMOVE / ATTACH, which ctl.c handles). Fills the
 * reply's sock, sock_gen, opt and addr where the type has them. Returns
 * the result: >= 0, or -errno.
 */
int nci_sock_request(struct nci_client *cl, const struct nc_msg_req *q,
                     struct nc_msg_rep *r);

/*
 * SOCK_LIST: the client's first socket on a channel >= `first` (not one
 * being closed), as the broker's table records it: sock, sock_gen, addr
 * (local), peer, opt[0..3] = domain, type, state, shut bits, arg = backlog.
 * 0, or -ENOENT when there is none.
 */
int nci_sock_describe(struct nci_client *cl, int32_t first,
                      struct nc_msg_rep *r);
/*
 * One pass over a socket on a channel: client TX into lwIP, received data
 * into the rx ring, the deferred close or shutdown once its TX drained,
 * and the state published. May free the socket (a finished close).
 * Returns true if it stopped for its budget with work left.
 */
bool nci_sock_service(struct nci_sock *s);

/* True if a pass would make progress now (the core's re-check before it
 * sleeps). */
bool nci_sock_has_work(struct nci_sock *s);

/*
 * The client is gone: closes the socket as its close(2) would have. A
 * connected stream with bytes still queued stays (closing, on its
 * channel) until lwIP took them; anything else is finished and freed.
 * Returns true if the socket stays.
 */
bool nci_sock_retire(struct nci_sock *s);

/*
 * The region is about to be unmapped: closes toward the peer (FIN; RST if
 * data is unread, the client's bytes are not all sent, or SO_LINGER
 * {1, 0}) and frees the socket and everything queued on it. Nothing is
 * published.
 */
void nci_sock_destroy(struct nci_sock *s);

#endif /* NETCORE_SOCK_H */
