/*
 * The socket table: what the broker knows about each client's sockets.
 *
 * States. An entry exists from the core's successful reply to SOCKET or
 * ACCEPT until its reply to CLOSE (0, or -EBADF: the core does not have it
 * either). In between, replies teach it the socket's phase (bound,
 * listening, connecting, connected), its local and peer addresses, the
 * shut-down sides and, for a listener, the backlog the broker granted.
 * It is a record of the broker's view, not the truth: the core publishes
 * the real phase in the client's region (nc_sock_state), and a socket the
 * core resets stays "connected" here until the client closes it.
 *
 * Ownership. One table per client, indexed by channel, allocated at
 * attach and freed when the client is finally removed. The broker alone
 * writes it, in its one thread.
 *
 * Why keep it: quotas are counted here (sockets, pending connections), ops
 * naming a socket are checked here before the core sees them. A reply that
 * contradicts it (a "new" index that is in use or out of range) is
 * reported to the client as -EIO and changes nothing: the core is trusted,
 * but crashable, so checked anyway. One exception: a SOCKET or ACCEPT the
 * client resent after a broker restart may name the entry the restarted
 * broker already learned from the core (same index, same generation).
 *
 * Restart. A restarted broker fills the table from the core's SOCK_LIST
 * (nci_table_restore); after a core restart it is emptied
 * (nci_table_reset), since the new core has no sockets, and the client
 * re-creates its listeners and datagram sockets through ordinary requests.
 *
 * What it does not do: record socket options (the client replays its own
 * after a core restart).
 */
#include "services/proxy_broker/broker_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int nci_client_table_init(struct nci_client *cl,
                          const struct nc_client_params *p)
{
	cl->socks = calloc(p->max_sockets, sizeof(*cl->socks));
	if (cl->socks == NULL)
		return -ENOMEM;
	cl->params = *p;
	cl->nsocks = 0;
	cl->pending = 0;
	return 0;
}

void nci_client_table_fini(struct nci_client *cl)
{
	free(cl->socks);
	cl->socks = NULL;
	cl->nsocks = 0;
	cl->pending = 0;
}

struct nci_sock *nci_client_sock(const struct nci_client *cl, int32_t sock,
                                 uint32_t gen)
{
	if (cl->socks == NULL || sock < 0 ||
	    (uint32_t)sock >= cl->params.max_sockets)
		return NULL;
	struct nci_sock *s = &cl->socks[sock];
	return s->used && s->gen == gen ? s : NULL;
}

/* A fresh entry for the index the core chose, or NULL if it cannot be. */
static struct nci_sock *new_entry(struct nci_client *cl,
                                  const struct nc_msg_rep *rep)
{
	if (cl->socks == NULL || rep->sock < 0 ||
	    (uint32_t)rep->sock >= cl->params.max_sockets)
		return NULL;
	struct nci_sock *s = &cl->socks[rep->sock];
	if (s->used && s->gen == rep->sock_gen) {
		/* Resent after a broker restart: already learned. */
		s->used = false;
		cl->nsocks--;
		if (s->state == NCI_SOCK_LISTENING)
			cl->pending -= s->backlog;
	}
	if (s->used)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->used = true;
	s->gen = rep->sock_gen;
	cl->nsocks++;
	return s;
}

static void drop_entry(struct nci_client *cl, struct nci_sock *s)
{
	if (s->state == NCI_SOCK_LISTENING)
		cl->pending -= s->backlog;
	memset(s, 0, sizeof(*s));
	cl->nsocks--;
}

/* Every state change of an existing entry goes through here: a listener
 * that stops being one gives its pending budget back (found by the
 * dispatch fuzzer: a CONNECT the core accepted on a listener left its
 * backlog counted). */
static void set_state(struct nci_client *cl, struct nci_sock *s, uint32_t state,
                      uint32_t backlog)
{
	if (s->state == NCI_SOCK_LISTENING)
		cl->pending -= s->backlog;
	s->state = state;
	s->backlog = state == NCI_SOCK_LISTENING ? backlog : 0;
	cl->pending += s->backlog;
}

static void learn_connect(struct nci_client *cl, struct nci_sock *s,
                          const struct nc_msg_req *req,
                          const struct nc_msg_rep *rep)
{
	if (rep->result != 0 && rep->result != -EINPROGRESS)
		return;
	s->peer = req->addr;
	if (rep->addr.family != 0)
		s->local = rep->addr;
	uint32_t state =
	    rep->result == 0 ? NCI_SOCK_CONNECTED : NCI_SOCK_CONNECTING;
	if (req->addr.family == 0) /* UDP: association dissolved */
		state = NCI_SOCK_BOUND;
	set_state(cl, s, state, 0);
}

/* SOCKET and ACCEPT: a new entry, or -EIO if the reply cannot be true. */
static int32_t learn_new(struct nci_client *cl, const struct nc_msg_req *req,
                         const struct nc_msg_rep *rep,
                         const struct nci_sock *listener)
{
	struct nci_sock *s = new_entry(cl, rep);
	if (s == NULL)
		return -EIO;
	if (listener == NULL) {
		s->domain = req->domain;
		s->type = req->type;
		s->state = NCI_SOCK_OPEN;
		return rep->result;
	}
	s->domain = listener->domain;
	s->type = listener->type;
	s->local = listener->local;
	s->peer = rep->addr;
	s->state = NCI_SOCK_CONNECTED;
	return rep->result;
}

static void learn_shutdown(struct nci_sock *s, int32_t how)
{
	if (how == SHUT_RD || how == SHUT_RDWR)
		s->shut |= 1;
	if (how == SHUT_WR || how == SHUT_RDWR)
		s->shut |= 2;
}

int32_t nci_apply_reply(struct nci_client *cl, const struct nc_msg_req *req,
                        const struct nc_msg_rep *rep)
{
	int32_t r = rep->result;
	struct nci_sock *s = nci_client_sock(cl, req->sock, req->sock_gen);
	if (req->hdr.type == NC_MSG_SOCKET)
		return r >= 0 ? learn_new(cl, req, rep, NULL) : r;
	if (s == NULL)
		return r; /* dispatch checked it; only a race could get here */
	switch (req->hdr.type) {
	case NC_MSG_ACCEPT:
		return r >= 0 ? learn_new(cl, req, rep, s) : r;
	case NC_MSG_BIND:
		if (r >= 0) {
			s->local = rep->addr.family ? rep->addr : req->addr;
			if (s->state == NCI_SOCK_OPEN)
				set_state(cl, s, NCI_SOCK_BOUND, 0);
		}
		break;
	case NC_MSG_LISTEN:
		if (r >= 0)
			set_state(cl, s, NCI_SOCK_LISTENING,
			          (uint32_t)req->arg);
		break;
	case NC_MSG_CONNECT:
		learn_connect(cl, s, req, rep);
		break;
	case NC_MSG_SHUTDOWN:
		if (r >= 0)
			learn_shutdown(s, req->arg);
		break;
	case NC_MSG_CLOSE:
		if (r >= 0 || r == -EBADF)
			drop_entry(cl, s);
		break;
	case NC_MSG_GETSOCKNAME:
		if (r >= 0)
			s->local = rep->addr;
		break;
	case NC_MSG_GETPEERNAME:
		if (r >= 0) {
			s->peer = rep->addr;
			if (s->state == NCI_SOCK_CONNECTING)
				set_state(cl, s, NCI_SOCK_CONNECTED, 0);
		}
		break;
	default:
		break;
	}
	return r;
}

/* ------------------------------------------------------------------ dump */

const char *nci_client_state_name(enum nci_client_state s)
{
	switch (s) {
	case NCI_CLIENT_NEW:
		return "new";
	case NCI_CLIENT_ADDING:
		return "adding";
	case NCI_CLIENT_ATTACHED:
		return "attached";
	case NCI_CLIENT_REMOVING:
		return "removing";
	case NCI_CLIENT_RECOVERED:
		return "recovered";
	}
	return "?";
}

static const char *sock_state_name(uint32_t s)
{
	static const char *const names[] = {
	    [NCI_SOCK_OPEN] = "open",
	    [NCI_SOCK_BOUND] = "bound",
	    [NCI_SOCK_LISTENING] = "listening",
	    [NCI_SOCK_CONNECTING] = "connecting",
	    [NCI_SOCK_CONNECTED] = "connected",
	};
	if (s == 0 || s >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[s];
}

/* "10.0.0.1:80", "[fd00::1]:80" or "-". */
static const char *addr_text(const struct nc_msg_addr *a, char *buf,
                             size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	if (a->family == AF_INET) {
		inet_ntop(AF_INET, a->addr, ip, sizeof(ip));
		snprintf(buf, size, "%s:%u", ip, a->port);
	} else if (a->family == AF_INET6) {
		inet_ntop(AF_INET6, a->addr, ip, sizeof(ip));
		snprintf(buf, size, "[%s]:%u", ip, a->port);
	} else {
		snprintf(buf, size, "-");
	}
	return buf;
}

static const char *kind_text(const struct nci_sock *s)
{
	bool v6 = s->domain == AF_INET6;
	if ((s->type & 0xf) == SOCK_STREAM)
		return v6 ? "tcp6" : "tcp4";
	if ((s->type & 0xf) == SOCK_DGRAM)
		return v6 ? "udp6" : "udp4";
	return "other";
}

static void dump_sock(const struct nci_client *cl, uint32_t i, FILE *out)
{
	const struct nci_sock *s = &cl->socks[i];
	char local[64], peer[64];
	fprintf(out,
	        "sock client %" PRIu32 " index %" PRIu32 " gen %" PRIu32
	        " %s %s local %s peer %s backlog %" PRIu32 " shut %s%s\n",
	        cl->id, i, s->gen, kind_text(s), sock_state_name(s->state),
	        addr_text(&s->local, local, sizeof(local)),
	        addr_text(&s->peer, peer, sizeof(peer)), s->backlog,
	        s->shut & 1 ? "r" : "-", s->shut & 2 ? "w" : "-");
}

void nci_client_dump(const struct nci_client *cl, FILE *out)
{
	fprintf(out,
	        "client %" PRIu32 " state %s pid %" PRId32 " uid %" PRIu32
	        " gid %" PRIu32 " sockets %" PRIu32 "/%" PRIu32
	        " pending %" PRIu32 " memory %" PRIu64 "\n",
	        cl->id, nci_client_state_name(cl->state), cl->pid, cl->uid,
	        cl->gid, cl->nsocks, cl->params.max_sockets, cl->pending,
	        cl->region_bytes);
	if (cl->socks == NULL)
		return;
	for (uint32_t i = 0; i < cl->params.max_sockets; i++)
		if (cl->socks[i].used)
			dump_sock(cl, i, out);
}

void nci_table_reset(struct nci_client *cl)
{
	if (cl->socks != NULL)
		memset(cl->socks, 0,
		       cl->params.max_sockets * sizeof(*cl->socks));
	cl->nsocks = 0;
	cl->pending = 0;
}

int nci_table_restore(struct nci_client *cl, const struct nc_msg_rep *rep)
{
	struct nci_sock *s = new_entry(cl, rep);
	uint32_t state = rep->opt[2];
	if (s == NULL)
		return -EIO;
	if (state < NCI_SOCK_OPEN || state > NCI_SOCK_CONNECTED) {
		drop_entry(cl, s);
		return -EIO;
	}
	s->domain = rep->opt[0];
	s->type = rep->opt[1];
	s->shut = rep->opt[3] & 3u;
	s->local = rep->addr;
	s->peer = rep->peer;
	set_state(cl, s, state, rep->arg > 0 ? (uint32_t)rep->arg : 0);
	return 0;
}
