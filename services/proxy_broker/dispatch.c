/*
 * What the broker does with one message from a client, decided before
 * anything is sent anywhere.
 *
 * Order, and why: first the bytes (a client is hostile: fewer bytes than a
 * header means we cannot even echo an id, so the client is dropped; any
 * other malformed message is answered -EPROTO with the id and type it
 * carried, and the client may go on); then the client's state (only ATTACH
 * or REATTACH before attaching, never twice, never the broker's own
 * requests to the core); then the socket the message names (must be in the
 * table with the generation the client quotes, else -EBADF, so a stale handle
 * never reaches a reused channel); then quota (sockets: -EMFILE; pending
 * connections: the backlog is capped, -ENOBUFS if no budget is left);
 * then policy (CONNECT destination: -EACCES; BIND port: -EPERM). Only
 * then is the message rewritten for the core: the client's id and region
 * generation are set from the broker's table (whatever the client wrote
 * there is ignored) and LISTEN carries the granted backlog.
 *
 * State: none. The function reads the config and the client's table and
 * fills a decision; broker.c acts on it. This is what the dispatch fuzzer
 * drives.
 *
 * What it does not do: police UDP destinations of unconnected sends (that
 * is the data path, which never passes through the broker; see README.md),
 * or check option values (the core bounds them).
 */
#include "services/proxy_broker/broker_internal.h"

#include <errno.h>
#include <string.h>

static void reply(struct nci_decision *d, int32_t error)
{
	d->verdict = NCI_REPLY;
	d->error = error;
}

int32_t nci_grant_backlog(const struct nc_broker_config *c,
                          const struct nci_client *cl, const struct nci_sock *s,
                          int32_t requested)
{
	/* Like listen(2): negative means "as many as allowed", 0 means 1. */
	uint32_t want = requested < 0 ? c->max_backlog : (uint32_t)requested;
	if (want > c->max_backlog)
		want = c->max_backlog;
	if (want == 0)
		want = 1;
	/* A listener that listens again gives back what it had first. */
	uint32_t others = cl->pending;
	if (s->state == NCI_SOCK_LISTENING)
		others -= s->backlog;
	if (others >= c->max_pending)
		return -ENOBUFS;
	uint32_t budget = c->max_pending - others;
	return (int32_t)(want < budget ? want : budget);
}

/* Quota and policy for an op on an existing socket; 0 or -errno. */
static int32_t check_sock_op(const struct nc_broker_config *c,
                             const struct nci_client *cl,
                             struct nc_msg_req *req)
{
	const struct nci_sock *s =
	    nci_client_sock(cl, req->sock, req->sock_gen);
	if (s == NULL)
		return -EBADF;
	switch (req->hdr.type) {
	case NC_MSG_ACCEPT:
		return cl->nsocks >= cl->params.max_sockets ? -EMFILE : 0;
	case NC_MSG_BIND:
		return nc_broker_bind_allowed(c, req->addr.port);
	case NC_MSG_CONNECT:
		return nc_broker_connect_allowed(c, &req->addr);
	case NC_MSG_LISTEN: {
		int32_t granted = nci_grant_backlog(c, cl, s, req->arg);
		if (granted < 0)
			return granted;
		req->arg = granted;
		return 0;
	}
	case NC_MSG_SETSOCKOPT:
	case NC_MSG_GETSOCKOPT:
		return req->optlen > NC_MSG_OPT_MAX ? -EINVAL : 0;
	default:
		return 0;
	}
}

static int32_t check_op(const struct nc_broker_config *c,
                        const struct nci_client *cl, struct nc_msg_req *req)
{
	switch (req->hdr.type) {
	case NC_MSG_SOCKET:
		/* The core picks the channel: nothing of the client's here. */
		req->sock = -1;
		req->sock_gen = 0;
		return cl->nsocks >= cl->params.max_sockets ? -EMFILE : 0;
	case NC_MSG_ATTACH:
	case NC_MSG_REATTACH:
		return -EISCONN;
	case NC_MSG_CLIENT_ADD:
	case NC_MSG_CLIENT_REMOVE:
	case NC_MSG_CORE_HELLO:
	case NC_MSG_CLIENT_LIST:
	case NC_MSG_SOCK_LIST:
		return -EPROTO; /* the broker's words, not a client's */
	default:
		return check_sock_op(c, cl, req);
	}
}

void nci_decide(const struct nc_broker_config *c, const struct nci_client *cl,
                const void *buf, size_t len, struct nci_decision *d)
{
	memset(d, 0, sizeof(*d));
	if (len < sizeof(struct nc_msg_hdr)) {
		d->verdict = NCI_DISCONNECT;
		return;
	}
	memcpy(&d->hdr, buf, sizeof(d->hdr));
	if (nc_msg_check(buf, len, sizeof(struct nc_msg_req)) != 0) {
		reply(d, -EPROTO);
		return;
	}
	memcpy(&d->req, buf, sizeof(d->req));
	if (cl->state != NCI_CLIENT_ATTACHED) {
		if (d->req.hdr.type == NC_MSG_ATTACH &&
		    cl->state == NCI_CLIENT_NEW)
			d->verdict = NCI_ATTACH;
		else if (d->req.hdr.type == NC_MSG_REATTACH &&
		         cl->state == NCI_CLIENT_NEW)
			d->verdict = NCI_REATTACH;
		else
			reply(d, -EPROTO); /* attach first */
		return;
	}
	int32_t err = check_op(c, cl, &d->req);
	if (err) {
		reply(d, err);
		return;
	}
	d->req.client = cl->id;
	d->req.client_gen = cl->gen;
	/* The client's own id: the core answers a resend of the same
	 * request (after a broker restart) from its cache. */
	d->req.origin_id = d->req.hdr.id;
	d->req.pid = d->req.uid = d->req.gid = 0;
	d->req.token = 0;
	d->verdict = NCI_FORWARD;
}
