/*
 * Socket handles and their control operations: socket, bind, listen,
 * accept, connect, shutdown, close, names and options.
 *
 * States. A handle is born from a SOCKET or ACCEPT reply naming a channel
 * of our region and its generation (the core allocates both); we attach the
 * channel's tx ring (we produce) and rx ring (we consume) and give the
 * handle a private rx queue. From then on the channel's nc_sock_state
 * (written by the core) is the socket's state; we keep only what Linux
 * keeps per file rather than per connection: O_NONBLOCK, SO_RCVTIMEO and
 * SO_SNDTIMEO, our own shutdown()s, and which pending error we already
 * returned. The handle dies in nc_close: CLOSE (the core sends what we
 * queued first, then FIN, or RST for SO_LINGER {1, 0}), then we give back
 * every buffer the channel still lends us, all under ctl_lock, so the core
 * cannot hand the channel to a new socket of ours while we drain it.
 *
 * Blocking. The core never blocks: ACCEPT answers EAGAIN, CONNECT answers
 * EINPROGRESS. A blocking accept or connect waits for the socket's events
 * in the region and asks again (accept: SO_RCVTIMEO bounds it; connect:
 * SO_SNDTIMEO, and a timed-out connect says EINPROGRESS, as Linux does).
 * Waits release the handle's lock.
 *
 * What it does not do: keep options the core keeps, or decide policy; a
 * refusal is the broker's reply (EACCES, EPERM, EMFILE, ENOBUFS).
 */
#include "libclient/client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

/* Private readiness bit: a stream socket's connect has finished. */
#define NCI_CONNECT_DONE 0x4000

static int fail(int err)
{
	errno = -err;
	return -1;
}

int nci_sock_enter(struct nc_sock *s)
{
	if (s == NULL || nci_client_usable(s->c) != 0)
		return -EBADF;
	nci_core_enter(s->c);
	pthread_mutex_lock(&s->lock);
	return 0;
}

void nci_sock_leave(struct nc_sock *s)
{
	pthread_mutex_unlock(&s->lock);
	nci_core_leave(s->c);
}

/* One request about `s` (caller holds s->lock). A socket a core restart
 * reset has no channel: nothing to ask (options are accepted and kept,
 * names and the rest are ENOTCONN, as for a reset Linux socket). */
static int call(struct nc_sock *s, struct nc_msg_req *req,
                struct nc_msg_rep *rep)
{
	if (s->lost)
		return req->hdr.type == NC_MSG_SETSOCKOPT ? 0 : -ENOTCONN;
	return nci_call(s->c, req, rep);
}

/* ------------------------------------------------------------ lifecycle */

static void sock_free(struct nc_sock *s)
{
	pthread_mutex_destroy(&s->lock);
	free(s->rxq);
	free(s);
}

int nci_sock_bind_chan(struct nc_client *c, struct nc_sock *s, uint32_t idx,
                       uint32_t gen)
{
	if (idx >= c->params.max_sockets || c->socks[idx] != NULL ||
	    __atomic_load_n(&c->states[idx].gen, __ATOMIC_ACQUIRE) != gen)
		return -EIO; /* the core named a channel it cannot mean */
	uint32_t slots = c->params.ring_slots;
	if (nc_ring_attach(&s->tx, &c->region,
	                   nc_client_tx_ring(&c->layout, idx), slots,
	                   NC_RING_PRODUCER) != 0 ||
	    nc_ring_attach(&s->rx, &c->region,
	                   nc_client_rx_ring(&c->layout, idx), slots,
	                   NC_RING_CONSUMER) != 0)
		return -EIO;
	s->idx = idx;
	s->gen = gen;
	c->socks[idx] = s;
	return 0;
}

int nci_sock_adopt(struct nc_client *c, uint32_t idx, uint32_t gen, int domain,
                   int type, struct nc_sock **out)
{
	struct nc_sock *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->rxq_cap = c->params.ring_slots;
	s->rxq = calloc(s->rxq_cap, sizeof(*s->rxq));
	if (s->rxq == NULL) {
		free(s);
		return -ENOMEM;
	}
	s->c = c;
	s->domain = domain;
	s->type = type;
	int err = nci_sock_bind_chan(c, s, idx, gen);
	if (err) {
		free(s->rxq);
		free(s);
		return err;
	}
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

/* The core made a socket we cannot use: tell it to close it again. */
static void abandon(struct nc_client *c, const struct nc_msg_rep *rep)
{
	struct nc_msg_req req;
	struct nc_msg_rep ignored;
	nci_req_init(&req, NC_MSG_CLOSE, NULL);
	req.sock = rep->sock;
	req.sock_gen = rep->sock_gen;
	nci_call_locked(c, &req, &ignored);
}

/* A SOCKET or ACCEPT request and, on success, the new handle. */
static int create(struct nc_client *c, struct nc_msg_req *req, int domain,
                  int type, struct nc_msg_rep *rep, struct nc_sock **out)
{
	pthread_mutex_lock(&c->ctl_lock);
	int err = nci_call_locked(c, req, rep);
	if (err == 0) {
		if (rep->sock < 0)
			err = -EPROTO;
		else
			err = nci_sock_adopt(c, (uint32_t)rep->sock,
			                     rep->sock_gen, domain, type, out);
		if (err)
			abandon(c, rep);
	}
	pthread_mutex_unlock(&c->ctl_lock);
	return err;
}

int nci_sock_release(struct nc_sock *s)
{
	struct nc_client *c = s->c;
	if (s->lost) {
		/* No channel, nothing lent: a core restart took both. */
		nci_lost_unlink(c, s);
		sock_free(s);
		return 0;
	}
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_CLOSE, s);
	int err = nci_call_locked(c, &req, &rep);
	nci_rx_drain(s);
	c->socks[s->idx] = NULL;
	sock_free(s);
	return err;
}

int nc_close(struct nc_sock *s)
{
	if (s == NULL || nci_client_usable(s->c) != 0)
		return fail(-EBADF);
	struct nc_client *c = s->c;
	nci_core_enter(c);
	pthread_mutex_lock(&c->ctl_lock);
	int err = nci_sock_release(s);
	pthread_mutex_unlock(&c->ctl_lock);
	nci_core_leave(c);
	return err ? fail(err) : 0;
}

/* --------------------------------------------------------------- socket */

static int socket_args(int domain, int type, int protocol, int *base)
{
	if (domain != AF_INET && domain != AF_INET6)
		return -EAFNOSUPPORT;
	if (type & ~(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	*base = type & 0xf;
	if (*base != SOCK_STREAM && *base != SOCK_DGRAM)
		return -ESOCKTNOSUPPORT;
	int proto = *base == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
	if (protocol != 0 && protocol != proto)
		return -EPROTONOSUPPORT;
	return 0;
}

int nc_socket(struct nc_client *c, int domain, int type, int protocol,
              struct nc_sock **out)
{
	int base;
	int err = nci_client_usable(c);
	if (!err && out == NULL)
		err = -EFAULT;
	if (!err)
		err = socket_args(domain, type, protocol, &base);
	if (err)
		return fail(err);
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_SOCKET, NULL);
	req.domain = domain;
	req.type = base;
	nci_core_enter(c);
	err = create(c, &req, domain, base, &rep, out);
	if (err == -ECONNRESET && nci_core_restarted(c)) {
		/* The core restarted during the call: catch up, ask again. */
		nci_core_leave(c);
		nci_core_enter(c);
		nci_req_init(&req, NC_MSG_SOCKET, NULL);
		req.domain = domain;
		req.type = base;
		err = create(c, &req, domain, base, &rep, out);
	}
	nci_core_leave(c);
	if (err)
		return fail(err);
	(*out)->nonblock = (type & SOCK_NONBLOCK) != 0;
	(*out)->cloexec = (type & SOCK_CLOEXEC) != 0;
	return 0;
}

/* ------------------------------------------------------ bind and listen */

int nc_bind(struct nc_sock *s, const struct sockaddr *addr, socklen_t len)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	nci_req_init(&req, NC_MSG_BIND, s);
	err = nci_addr_from_sockaddr(s->domain, addr, len, false, &req.addr);
	if (!err)
		err = call(s, &req, &rep);
	if (!err) {
		/* The name it got (the core's, for port 0), for a restart. */
		s->bound = true;
		s->local = rep.addr.family != 0 ? rep.addr : req.addr;
	}
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

int nc_listen(struct nc_sock *s, int backlog)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	nci_req_init(&req, NC_MSG_LISTEN, s);
	req.arg = backlog;
	err = s->type == SOCK_STREAM ? call(s, &req, &rep) : -EOPNOTSUPP;
	if (!err) {
		s->listening = true;
		s->backlog = backlog;
	}
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

/* --------------------------------------------------------------- accept */

/* One ACCEPT: 0 and the new handle, or -EAGAIN / -errno. */
static int accept_once(struct nc_sock *s, struct sockaddr *addr, socklen_t *len,
                       struct nc_sock **out)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_ACCEPT, s);
	int err = create(s->c, &req, s->domain, SOCK_STREAM, &rep, out);
	if (err)
		return err;
	if (addr != NULL && len != NULL &&
	    nci_addr_to_sockaddr(s->domain, &rep.addr, addr, len) != 0) {
		/* An impossible peer address: nothing we can give. */
		*len = 0;
	}
	return 0;
}

static int accept_loop(struct nc_sock *s, struct sockaddr *addr, socklen_t *len,
                       struct nc_sock **out)
{
	int64_t deadline = INT64_MIN;
	bool retried = false;
	for (;;) {
		int err = accept_once(s, addr, len, out);
		if (err != -EAGAIN)
			return err;
		if (s->nonblock) {
			if (retried || nci_would_block(s, POLLIN))
				return -EAGAIN;
			retried = true;
			continue;
		}
		if (deadline == INT64_MIN)
			deadline = nci_deadline_tv(&s->rcvtimeo);
		if (nci_wait(s, POLLIN, deadline) != 0)
			return -EAGAIN;
	}
}

int nc_accept4(struct nc_sock *s, struct sockaddr *addr, socklen_t *len,
               int flags, struct nc_sock **out)
{
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return fail(-EINVAL);
	if (out == NULL)
		return fail(-EFAULT);
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	err = s->type == SOCK_STREAM ? accept_loop(s, addr, len, out)
	                             : -EOPNOTSUPP;
	nci_sock_leave(s);
	if (err)
		return fail(err);
	(*out)->nonblock = (flags & SOCK_NONBLOCK) != 0;
	(*out)->cloexec = (flags & SOCK_CLOEXEC) != 0;
	return 0;
}

int nc_accept(struct nc_sock *s, struct sockaddr *addr, socklen_t *len,
              struct nc_sock **out)
{
	return nc_accept4(s, addr, len, 0, out);
}

/* -------------------------------------------------------------- connect */

/* SO_ERROR from the core (which clears it). */
static int fetch_error(struct nc_sock *s, int *value)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_GETSOCKOPT, s);
	req.level = SOL_SOCKET;
	req.optname = SO_ERROR;
	req.optlen = sizeof(int);
	int err = call(s, &req, &rep);
	if (err)
		return err;
	if (rep.optlen < sizeof(int))
		return -EPROTO;
	memcpy(value, rep.opt, sizeof(int));
	if (*value < 0 || *value > NCI_MAX_ERRNO)
		return -EPROTO;
	return 0;
}

/* 1 still connecting, 0 connected, < 0 failed with that. */
static int connect_state(struct nc_sock *s)
{
	struct nc_sock_state st;
	if (nci_state(s, &st) != 0)
		return -EIO;
	if (st.phase == NC_SS_CONNECTED)
		return 0;
	if (st.phase == NC_SS_CONNECTING && st.error == 0)
		return 1;
	int value = 0;
	int err = fetch_error(s, &value);
	if (err)
		return err;
	return value ? -value : -ECONNABORTED; /* Linux's fallback too */
}

static int connect_wait(struct nc_sock *s)
{
	int64_t deadline = nci_deadline_tv(&s->sndtimeo);
	for (;;) {
		int r = connect_state(s);
		if (r <= 0)
			return r;
		if (nci_wait(s, NCI_CONNECT_DONE, deadline) != 0) {
			s->connect_pending = true;
			return -EINPROGRESS; /* SO_SNDTIMEO, as on Linux */
		}
	}
}

/*
 * connect() again after EINPROGRESS, as Linux answers it: EALREADY while
 * the handshake runs, then its outcome once (0, or the error, which is
 * consumed), and only after that whatever a fresh connect gets (EISCONN).
 */
static int connect_outcome(struct nc_sock *s)
{
	int r = connect_state(s);
	if (r == 1)
		return -EALREADY;
	s->connect_pending = false;
	return r;
}

static int do_connect(struct nc_sock *s, const struct sockaddr *addr,
                      socklen_t len)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_CONNECT, s);
	int err = nci_addr_from_sockaddr(s->domain, addr, len, true, &req.addr);
	if (err)
		return err;
	if (s->type == SOCK_STREAM && s->connect_pending)
		return connect_outcome(s);
	err = call(s, &req, &rep);
	if (s->type == SOCK_DGRAM) {
		if (err == 0) {
			s->dgram_connected = req.addr.family != 0;
			s->peer = req.addr; /* replayed after a core restart */
		}
		return err;
	}
	if (err != -EINPROGRESS)
		return err;
	if (s->nonblock) {
		s->connect_pending = true;
		return err;
	}
	return connect_wait(s);
}

int nc_connect(struct nc_sock *s, const struct sockaddr *addr, socklen_t len)
{
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	err = do_connect(s, addr, len);
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

short nci_connect_readiness(const struct nc_sock *s,
                            const struct nc_sock_state *st)
{
	return s->type == SOCK_STREAM && st->phase != NC_SS_CONNECTING
	           ? NCI_CONNECT_DONE
	           : 0;
}

/* ------------------------------------------------------------- shutdown */

int nc_shutdown(struct nc_sock *s, int how)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return fail(s == NULL ? -EBADF : -EINVAL);
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	nci_req_init(&req, NC_MSG_SHUTDOWN, s);
	req.arg = how;
	err = call(s, &req, &rep);
	if (err == 0) {
		s->rd_shut |= how != SHUT_WR;
		s->wr_shut |= how != SHUT_RD;
	}
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

/* ---------------------------------------------------------------- names */

static int name(struct nc_sock *s, enum nc_msg_type type, struct sockaddr *addr,
                socklen_t *len)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	if (addr == NULL || len == NULL)
		return fail(s == NULL ? -EBADF : -EFAULT);
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	nci_req_init(&req, type, s);
	err = call(s, &req, &rep);
	if (!err && nci_addr_to_sockaddr(s->domain, &rep.addr, addr, len))
		err = -EPROTO;
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

int nc_getsockname(struct nc_sock *s, struct sockaddr *addr, socklen_t *len)
{
	return name(s, NC_MSG_GETSOCKNAME, addr, len);
}

int nc_getpeername(struct nc_sock *s, struct sockaddr *addr, socklen_t *len)
{
	return name(s, NC_MSG_GETPEERNAME, addr, len);
}

/* -------------------------------------------------------------- options */

static bool is_timeo(int level, int optname)
{
	if (level != SOL_SOCKET)
		return false;
#ifdef SO_RCVTIMEO_NEW
	if (optname == SO_RCVTIMEO_NEW || optname == SO_SNDTIMEO_NEW)
		return true;
#endif
	return optname == SO_RCVTIMEO || optname == SO_SNDTIMEO;
}

static bool is_rcvtimeo(int optname)
{
#ifdef SO_RCVTIMEO_NEW
	if (optname == SO_RCVTIMEO_NEW)
		return true;
#endif
	return optname == SO_RCVTIMEO;
}

/* Read-only facts we know ourselves. */
static bool is_local_info(int level, int optname)
{
	return level == SOL_SOCKET &&
	       (optname == SO_TYPE || optname == SO_DOMAIN ||
	        optname == SO_PROTOCOL || optname == SO_ACCEPTCONN);
}

static int set_timeo(struct nc_sock *s, int optname, const void *optval,
                     socklen_t optlen)
{
	struct timeval tv;
	if (optlen < sizeof(tv))
		return -EINVAL;
	memcpy(&tv, optval, sizeof(tv));
	if (tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -EDOM;
	if (tv.tv_sec < 0) /* Linux: "timeout 0", i.e. give up at once */
		tv = (struct timeval){.tv_sec = 0, .tv_usec = 1};
	if (is_rcvtimeo(optname))
		s->rcvtimeo = tv;
	else
		s->sndtimeo = tv;
	return 0;
}

/* Bytes an option the core keeps must have (Linux's minimum), or 0 for
 * options we do not know (forwarded as they are: the core judges). */
static socklen_t forward_len(int level, int optname)
{
	if (level == SOL_SOCKET && optname == SO_LINGER)
		return sizeof(struct linger);
	if ((level == SOL_SOCKET &&
	     (optname == SO_REUSEADDR || optname == SO_KEEPALIVE ||
	      optname == SO_RCVBUF || optname == SO_SNDBUF)) ||
	    (level == IPPROTO_TCP &&
	     (optname == TCP_NODELAY || optname == TCP_KEEPIDLE ||
	      optname == TCP_KEEPINTVL || optname == TCP_KEEPCNT)) ||
	    (level == IPPROTO_IPV6 && optname == IPV6_V6ONLY))
		return sizeof(int);
	return 0;
}

static int set_forward(struct nc_sock *s, int level, int optname,
                       const void *optval, socklen_t optlen)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	socklen_t need = forward_len(level, optname);
	if (need != 0 && optlen < need)
		return -EINVAL;
	socklen_t n = need != 0 ? need : optlen;
	if (n > NC_MSG_OPT_MAX)
		n = NC_MSG_OPT_MAX;
	nci_req_init(&req, NC_MSG_SETSOCKOPT, s);
	req.level = level;
	req.optname = optname;
	req.optlen = n;
	memcpy(req.opt, optval, n);
	int err = call(s, &req, &rep);
	if (!err)
		nci_opt_record(s, level, optname, req.opt, n);
	return err;
}

int nc_setsockopt(struct nc_sock *s, int level, int optname, const void *optval,
                  socklen_t optlen)
{
	if (optval == NULL && optlen > 0)
		return fail(s == NULL ? -EBADF : -EFAULT);
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	if (is_timeo(level, optname))
		err = set_timeo(s, optname, optval, optlen);
	else if (is_local_info(level, optname))
		err = -ENOPROTOOPT;
	else
		err = set_forward(s, level, optname, optval, optlen);
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

static void put_opt(void *optval, socklen_t *optlen, const void *v, socklen_t n)
{
	memcpy(optval, v, *optlen < n ? *optlen : n);
	*optlen = *optlen < n ? *optlen : n;
}

static int get_local(struct nc_sock *s, int optname, void *optval,
                     socklen_t *optlen)
{
	int v = 0;
	struct nc_sock_state st;
	switch (optname) {
	case SO_TYPE:
		v = s->type;
		break;
	case SO_DOMAIN:
		v = s->domain;
		break;
	case SO_PROTOCOL:
		v = s->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
		break;
	default: /* SO_ACCEPTCONN */
		if (nci_state(s, &st) != 0)
			return -EIO;
		v = st.phase == NC_SS_LISTENING;
		break;
	}
	put_opt(optval, optlen, &v, sizeof(v));
	return 0;
}

static int get_error(struct nc_sock *s, void *optval, socklen_t *optlen)
{
	int v;
	int err = fetch_error(s, &v);
	if (err)
		return err;
	/* Already returned by a failed call: Linux would have cleared it. */
	if (v != 0 && v == s->reported_err)
		v = 0;
	s->reported_err = 0;
	put_opt(optval, optlen, &v, sizeof(v));
	return 0;
}

static int get_forward(struct nc_sock *s, int level, int optname, void *optval,
                       socklen_t *optlen)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_GETSOCKOPT, s);
	req.level = level;
	req.optname = optname;
	req.optlen = *optlen < NC_MSG_OPT_MAX ? *optlen : NC_MSG_OPT_MAX;
	int err = call(s, &req, &rep);
	if (err)
		return err;
	if (rep.optlen > NC_MSG_OPT_MAX)
		return -EPROTO;
	put_opt(optval, optlen, rep.opt, rep.optlen);
	return 0;
}

int nc_getsockopt(struct nc_sock *s, int level, int optname, void *optval,
                  socklen_t *optlen)
{
	if (optval == NULL || optlen == NULL)
		return fail(s == NULL ? -EBADF : -EFAULT);
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	if (is_timeo(level, optname))
		put_opt(optval, optlen,
		        is_rcvtimeo(optname) ? &s->rcvtimeo : &s->sndtimeo,
		        sizeof(struct timeval));
	else if (is_local_info(level, optname))
		err = get_local(s, optname, optval, optlen);
	else if (level == SOL_SOCKET && optname == SO_ERROR)
		err = get_error(s, optval, optlen);
	else
		err = get_forward(s, level, optname, optval, optlen);
	nci_sock_leave(s);
	return err ? fail(err) : 0;
}

/* ---------------------------------------------------------------- flags */

int nc_set_nonblocking(struct nc_sock *s, int on)
{
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	s->nonblock = on != 0;
	nci_sock_leave(s);
	return 0;
}

int nc_fcntl(struct nc_sock *s, int cmd, int arg)
{
	int err = nci_sock_enter(s);
	if (err)
		return fail(err);
	int r = 0;
	switch (cmd) {
	case F_GETFL:
		r = O_RDWR | (s->nonblock ? O_NONBLOCK : 0);
		break;
	case F_SETFL:
		s->nonblock = (arg & O_NONBLOCK) != 0;
		break;
	case F_GETFD:
		r = s->cloexec ? FD_CLOEXEC : 0;
		break;
	case F_SETFD:
		s->cloexec = (arg & FD_CLOEXEC) != 0;
		break;
	default:
		r = -EINVAL;
		break;
	}
	nci_sock_leave(s);
	return r < 0 ? fail(r) : r;
}
