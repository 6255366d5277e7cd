/*
 * The BSD data calls (send*, recv*, FIONREAD) and nc_poll, on top of
 * data.c's rings and buffers.
 *
 * Semantics are Linux's (tested against the kernel by the behaviour suite):
 * a blocking stream send returns when everything is on the tx ring, or with
 * the partial count when SO_SNDTIMEO expires; a stream recv returns what is
 * there (MSG_WAITALL: all of it, or the partial count at end of stream,
 * error or SO_RCVTIMEO); end of stream reads as 0 for ever after; a pending
 * error (ECONNRESET, ECONNREFUSED, ...) is returned once, by the first call
 * that finds it, then reset connections read 0 and write EPIPE. Datagrams
 * are whole: a short buffer truncates (MSG_TRUNC in msg_flags; with the
 * MSG_TRUNC flag the real length is returned) and the rest is dropped.
 *
 * Blocking. A call that cannot proceed waits for the socket's readiness
 * (nci_wait: arm, re-check, sleep with the handle unlocked) and tries
 * again; non-blocking calls take the doorbell, arm the next wake-up, look
 * once more and return EAGAIN. Signals never interrupt a wait (no EINTR).
 *
 * What it does not do: MSG_OOB, control messages (ancillary data is never
 * returned), or MSG_MORE's corking (accepted and ignored).
 */
#include "libclient/client_internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define UDP4_MAX 65507u /* 65535 - IPv4 header - UDP header */
#define UDP6_MAX 65527u /* 65535 - UDP header (no jumbograms) */

/* ------------------------------------------------------------- iovecs */

void nci_iov_init(struct nci_iov_cursor *cur, const struct iovec *iov,
                  size_t cnt)
{
	cur->iov = iov;
	cur->cnt = cnt;
	cur->i = 0;
	cur->off = 0;
}

/* Copies between the caller's iovecs and `buf`, in either direction. */
static void iov_copy(struct nci_iov_cursor *cur, uint8_t *buf, size_t n,
                     bool to_iov)
{
	while (n > 0 && cur->i < cur->cnt) {
		const struct iovec *v = &cur->iov[cur->i];
		size_t k = v->iov_len - cur->off;
		if (k > n)
			k = n;
		uint8_t *p = (uint8_t *)v->iov_base + cur->off;
		if (k > 0) {
			if (to_iov)
				memcpy(p, buf, k);
			else
				memcpy(buf, p, k);
		}
		buf += k;
		n -= k;
		cur->off += k;
		if (cur->off == v->iov_len) {
			cur->i++;
			cur->off = 0;
		}
	}
}

void nci_iov_read(struct nci_iov_cursor *cur, void *dst, size_t n)
{
	iov_copy(cur, dst, n, false);
}

void nci_iov_write(struct nci_iov_cursor *cur, const void *src, size_t n)
{
	iov_copy(cur, (uint8_t *)src, n, true);
}

static int iov_total(const struct iovec *iov, size_t cnt, size_t *out)
{
	size_t total = 0;
	if (cnt > IOV_MAX)
		return -EMSGSIZE;
	if (cnt > 0 && iov == NULL)
		return -EFAULT;
	for (size_t i = 0; i < cnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - total)
			return -EINVAL;
		if (iov[i].iov_len > 0 && iov[i].iov_base == NULL)
			return -EFAULT;
		total += iov[i].iov_len;
	}
	*out = total;
	return 0;
}

/* Locks a handle for a data call; a socket (or client data path) the core
 * broke fails every data call with EIO, whatever its arguments. */
static int data_enter(struct nc_sock *s)
{
	int err = nci_sock_enter(s);
	if (err)
		return err;
	if (s->broken || nci_client_error(s->c)) {
		nci_sock_leave(s);
		return -EIO;
	}
	return 0;
}

static ssize_t set_errno(ssize_t r)
{
	if (r >= 0)
		return r;
	errno = (int)-r;
	return -1;
}

static bool nonblocking(const struct nc_sock *s, int flags)
{
	return s->nonblock || (flags & MSG_DONTWAIT);
}

/* Reports a pending error once (Linux clears sk_err when it returns it). */
static int report(struct nc_sock *s, int err)
{
	s->reported_err = err;
	return -err;
}

/* ---------------------------------------------------------------- send */

/* 0: push now; 1: not yet (connecting); < 0: fail with that. */
static int stream_send_check(struct nc_sock *s)
{
	struct nc_sock_state st;
	if (nci_state(s, &st) != 0 || nci_client_error(s->c) != 0)
		return -EIO;
	if (s->wr_shut)
		return -EPIPE;
	int err = nci_pending_error(s, &st);
	if (err)
		return report(s, err);
	if (st.phase == NC_SS_CONNECTED)
		return 0;
	return st.phase == NC_SS_CONNECTING ? 1 : -EPIPE;
}

/* Pushes as much as fits: adds to *sent. 0 or -EIO. */
static int stream_push(struct nc_sock *s, struct nci_iov_cursor *cur,
                       size_t len, size_t *sent)
{
	while (*sent < len) {
		ssize_t n = nci_tx_stream(s, cur, len - *sent);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		*sent += (size_t)n;
	}
	return 0;
}

/*
 * After a call could not finish: 0 to try again, or the error to return.
 * Non-blocking: EAGAIN unless the socket turned ready meanwhile (once).
 * Blocking: waits; EAGAIN when the deadline passes.
 */
static int await(struct nc_sock *s, short want, int flags, int64_t *deadline,
                 const struct timeval *timeo, bool *retried)
{
	if (nonblocking(s, flags)) {
		if (*retried || nci_would_block(s, want))
			return -EAGAIN;
		*retried = true;
		return 0;
	}
	if (*deadline == INT64_MIN)
		*deadline = nci_deadline_tv(timeo);
	return nci_wait(s, want, *deadline);
}

static ssize_t stream_send(struct nc_sock *s, struct nci_iov_cursor *cur,
                           size_t len, int flags)
{
	size_t sent = 0;
	int64_t deadline = INT64_MIN;
	bool retried = false;
	for (;;) {
		int err = stream_send_check(s);
		if (err == 0)
			err = stream_push(s, cur, len, &sent);
		if (err < 0)
			return sent ? (ssize_t)sent : err;
		if (sent == len)
			return (ssize_t)sent;
		if (sent > 0 && nonblocking(s, flags))
			return (ssize_t)sent;
		err =
		    await(s, POLLOUT, flags, &deadline, &s->sndtimeo, &retried);
		if (err)
			return sent ? (ssize_t)sent : err;
	}
}

static int dgram_dest(struct nc_sock *s, const struct msghdr *msg,
                      struct nc_dgram_hdr *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	if (msg->msg_name == NULL || msg->msg_namelen == 0)
		return s->dgram_connected ? 0 : -EDESTADDRREQ;
	struct nc_msg_addr a;
	int err = nci_addr_from_sockaddr(s->domain, msg->msg_name,
	                                 msg->msg_namelen, false, &a);
	if (err)
		return err;
	hdr->family = a.family;
	hdr->port = a.port;
	hdr->scope_id = a.scope_id;
	memcpy(hdr->addr, a.addr, sizeof(hdr->addr));
	return 0;
}

static int dgram_send_check(struct nc_sock *s)
{
	struct nc_sock_state st;
	if (nci_state(s, &st) != 0 || nci_client_error(s->c) != 0)
		return -EIO;
	int err = nci_pending_error(s, &st);
	if (err)
		return report(s, err);
	if (s->wr_shut || st.phase == NC_SS_CLOSED)
		return -EPIPE;
	return 0;
}

static ssize_t dgram_send(struct nc_sock *s, const struct msghdr *msg,
                          struct nci_iov_cursor *cur, size_t len, int flags)
{
	struct nc_dgram_hdr hdr;
	int err = dgram_dest(s, msg, &hdr);
	if (err)
		return err;
	size_t max = s->c->params.buf_size - sizeof(hdr);
	size_t proto_max = s->domain == AF_INET6 ? UDP6_MAX : UDP4_MAX;
	if (len > max || len > proto_max)
		return -EMSGSIZE;
	int64_t deadline = INT64_MIN;
	bool retried = false;
	for (;;) {
		err = dgram_send_check(s);
		if (err == 0)
			err = nci_tx_dgram(s, &hdr, cur, len);
		if (err < 0)
			return err;
		if (err == 1)
			return (ssize_t)len;
		err =
		    await(s, POLLOUT, flags, &deadline, &s->sndtimeo, &retried);
		if (err)
			return err;
	}
}

ssize_t nc_sendmsg(struct nc_sock *s, const struct msghdr *msg, int flags)
{
	size_t len;
	if (msg == NULL)
		return set_errno(-EFAULT);
	int err = iov_total(msg->msg_iov, msg->msg_iovlen, &len);
	if (err)
		return set_errno(err);
	err = data_enter(s);
	if (err)
		return set_errno(err);
	struct nci_iov_cursor cur;
	nci_iov_init(&cur, msg->msg_iov, msg->msg_iovlen);
	ssize_t r;
	if (flags & MSG_OOB)
		r = -EOPNOTSUPP;
	else if (s->type == SOCK_STREAM)
		r = len == 0 ? 0 : stream_send(s, &cur, len, flags);
	else
		r = dgram_send(s, msg, &cur, len, flags);
	nci_sock_leave(s);
	return set_errno(r);
}

ssize_t nc_sendto(struct nc_sock *s, const void *buf, size_t len, int flags,
                  const struct sockaddr *to, socklen_t tolen)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_name = (void *)to,
	                     .msg_namelen = to != NULL ? tolen : 0,
	                     .msg_iov = &iov,
	                     .msg_iovlen = 1};
	return nc_sendmsg(s, &msg, flags);
}

ssize_t nc_send(struct nc_sock *s, const void *buf, size_t len, int flags)
{
	return nc_sendto(s, buf, len, flags, NULL, 0);
}

/* ------------------------------------------------------------- receive */

/*
 * A stream closed in order ends with its EOF descriptor, and the core
 * shows "closed" only once that is on our ring. We may have read the ring
 * before the last data came and the state after: look once more, so that
 * what arrived in between is read before the end of the stream.
 */
static bool closed_in_order_pending(struct nc_sock *s,
                                    const struct nc_sock_state *st)
{
	if (s->rx_eof || st->error != 0 || s->lost)
		return false;
	return nci_rx_pull(s) == 0 && (nci_rxq_bytes(s) > 0 || s->rx_eof);
}

/*
 * What to do when the private queue could not satisfy the call: 0 wait
 * for data; 1 return what was copied (end of stream, or an error the next
 * call will report); < 0 fail with that (only when nothing was copied).
 */
static int stream_recv_check(struct nc_sock *s, size_t copied)
{
	struct nc_sock_state st;
	if (nci_state(s, &st) != 0 || nci_client_error(s->c) != 0)
		return copied ? 1 : -EIO;
	int err = nci_pending_error(s, &st);
	if (err)
		return copied ? 1 : report(s, err);
	switch (st.phase) {
	case NC_SS_CONNECTED:
	case NC_SS_CONNECTING:
		return 0;
	case NC_SS_CLOSED:
		return closed_in_order_pending(s, &st) ? 0 : 1;
	default:
		return copied ? 1 : -ENOTCONN;
	}
}

/* Copies from the private queue: *copied grows (peek: starts over). */
static void stream_take(struct nc_sock *s, const struct msghdr *msg,
                        struct nci_iov_cursor *cur, size_t len, int flags,
                        size_t *copied)
{
	if (flags & MSG_PEEK) {
		nci_iov_init(cur, msg->msg_iov, msg->msg_iovlen);
		*copied = nci_rxq_read(s, cur, len, true);
	} else {
		*copied += nci_rxq_read(s, cur, len - *copied, false);
	}
}

/* True when the call has what it came for. */
static bool stream_done(const struct nc_sock *s, size_t copied, size_t len,
                        int flags)
{
	if (copied == len || s->rx_eof || s->rd_shut)
		return true;
	if (flags & MSG_PEEK)
		return (copied > 0 && !(flags & MSG_WAITALL)) ||
		       s->rxq_n == s->rxq_cap;
	return copied > 0 && !(flags & MSG_WAITALL);
}

static ssize_t stream_recv(struct nc_sock *s, const struct msghdr *msg,
                           size_t len, int flags)
{
	struct nci_iov_cursor cur;
	nci_iov_init(&cur, msg->msg_iov, msg->msg_iovlen);
	size_t copied = 0;
	int64_t deadline = INT64_MIN;
	bool retried = false;
	if (len == 0)
		return 0;
	for (;;) {
		if (nci_rx_pull(s) != 0)
			return copied ? (ssize_t)copied : -EIO;
		stream_take(s, msg, &cur, len, flags, &copied);
		if (stream_done(s, copied, len, flags))
			return (ssize_t)copied;
		int err = stream_recv_check(s, copied);
		if (err)
			return err < 0 ? err : (ssize_t)copied;
		if (copied > 0 && nonblocking(s, flags))
			return (ssize_t)copied;
		err =
		    await(s, POLLIN, flags, &deadline, &s->rcvtimeo, &retried);
		if (err)
			return copied ? (ssize_t)copied : err;
	}
}

/* Hands the head datagram to the caller. */
static ssize_t dgram_deliver(struct nc_sock *s, struct msghdr *msg,
                             socklen_t name_cap, size_t len, int flags)
{
	struct nc_dgram_hdr hdr;
	const uint8_t *payload;
	size_t plen;
	nci_rxq_dgram(s, &hdr, &payload, &plen);
	struct nc_msg_addr a = {
	    .family = hdr.family, .port = hdr.port, .scope_id = hdr.scope_id};
	memcpy(a.addr, hdr.addr, sizeof(a.addr));
	socklen_t namelen = name_cap;
	if (hdr.family == 0 ||
	    nci_addr_to_sockaddr(s->domain, &a, msg->msg_name, &namelen) != 0) {
		s->broken = true;
		return -EIO;
	}
	if (msg->msg_name != NULL)
		msg->msg_namelen = namelen;
	struct nci_iov_cursor cur;
	nci_iov_init(&cur, msg->msg_iov, msg->msg_iovlen);
	size_t n = plen < len ? plen : len;
	nci_iov_write(&cur, payload, n);
	if (plen > len)
		msg->msg_flags |= MSG_TRUNC;
	if (!(flags & MSG_PEEK))
		nci_rxq_drop_head(s);
	return (ssize_t)((flags & MSG_TRUNC) ? plen : n);
}

/* 0: wait; 1: return 0 (read side shut or socket gone); < 0: error. */
static int dgram_recv_check(struct nc_sock *s)
{
	struct nc_sock_state st;
	if (nci_state(s, &st) != 0 || nci_client_error(s->c) != 0)
		return -EIO;
	int err = nci_pending_error(s, &st);
	if (err)
		return report(s, err);
	return s->rd_shut || st.phase == NC_SS_CLOSED ? 1 : 0;
}

static ssize_t dgram_recv(struct nc_sock *s, struct msghdr *msg,
                          socklen_t name_cap, size_t len, int flags)
{
	int64_t deadline = INT64_MIN;
	bool retried = false;
	for (;;) {
		if (nci_rx_pull(s) != 0)
			return -EIO;
		if (s->rxq_n > 0)
			return dgram_deliver(s, msg, name_cap, len, flags);
		int err = dgram_recv_check(s);
		if (err)
			return err < 0 ? err : 0;
		err =
		    await(s, POLLIN, flags, &deadline, &s->rcvtimeo, &retried);
		if (err)
			return err;
	}
}

ssize_t nc_recvmsg(struct nc_sock *s, struct msghdr *msg, int flags)
{
	size_t len;
	if (msg == NULL)
		return set_errno(-EFAULT);
	int err = iov_total(msg->msg_iov, msg->msg_iovlen, &len);
	if (err)
		return set_errno(err);
	err = data_enter(s);
	if (err)
		return set_errno(err);
	/* Like Linux: no address unless a datagram brings one. */
	socklen_t name_cap = msg->msg_name != NULL ? msg->msg_namelen : 0;
	msg->msg_namelen = 0;
	msg->msg_flags = 0;
	msg->msg_controllen = 0;
	ssize_t r;
	if (flags & MSG_OOB)
		r = -EOPNOTSUPP;
	else if (s->type == SOCK_STREAM)
		r = stream_recv(s, msg, len, flags);
	else
		r = dgram_recv(s, msg, name_cap, len, flags);
	nci_done_flush(s->c);
	nci_sock_leave(s);
	return set_errno(r);
}

ssize_t nc_recvfrom(struct nc_sock *s, void *buf, size_t len, int flags,
                    struct sockaddr *from, socklen_t *fromlen)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_name = from,
	                     .msg_namelen =
	                         from != NULL && fromlen != NULL ? *fromlen : 0,
	                     .msg_iov = &iov,
	                     .msg_iovlen = 1};
	if (from == NULL)
		msg.msg_name = NULL;
	ssize_t r = nc_recvmsg(s, &msg, flags);
	if (r >= 0 && from != NULL && fromlen != NULL)
		*fromlen = msg.msg_namelen;
	return r;
}

ssize_t nc_recv(struct nc_sock *s, void *buf, size_t len, int flags)
{
	return nc_recvfrom(s, buf, len, flags, NULL, NULL);
}

/* ------------------------------------------------------------- FIONREAD */

int nc_bytes_readable(struct nc_sock *s, int *bytes)
{
	if (bytes == NULL)
		return (int)set_errno(-EFAULT);
	int err = data_enter(s);
	if (err)
		return (int)set_errno(err);
	size_t n = 0;
	err = nci_rx_pull(s);
	if (!err && s->type == SOCK_STREAM) {
		n = nci_rxq_bytes(s);
	} else if (!err) {
		struct nc_dgram_hdr hdr;
		const uint8_t *payload;
		if (nci_rxq_dgram(s, &hdr, &payload, &n) != 0)
			n = 0;
	}
	nci_sock_leave(s);
	if (err)
		return (int)set_errno(err);
	*bytes = n > INT_MAX ? INT_MAX : (int)n;
	return 0;
}

/* ----------------------------------------------------------------- poll */

static int poll_scan(struct nc_client *c, struct nc_pollfd *fds, size_t n)
{
	int ready = 0;
	for (size_t i = 0; i < n; i++) {
		struct nc_sock *s = fds[i].sock;
		fds[i].revents = 0;
		if (s == NULL)
			continue;
		if (s->c != c) {
			fds[i].revents = NC_POLLNVAL;
		} else {
			pthread_mutex_lock(&s->lock);
			short m = nci_readiness(s);
			pthread_mutex_unlock(&s->lock);
			short want =
			    (short)((fds[i].events &
			             (POLLIN | POLLOUT | NC_POLLRDHUP)) |
			            POLLERR | POLLHUP);
			fds[i].revents = m & want;
		}
		if (fds[i].revents)
			ready++;
	}
	/* Buffers a scan found consumed (end of stream) go back now. */
	nci_done_flush(c);
	return ready;
}

int nc_poll(struct nc_client *c, struct nc_pollfd *fds, size_t n,
            int timeout_ms)
{
	int err = nci_client_usable(c);
	if (err)
		return (int)set_errno(err);
	if (n > 0 && fds == NULL)
		return (int)set_errno(-EFAULT);
	int64_t deadline = nci_deadline_ms(timeout_ms);
	nci_core_enter(c);
	/* The doorbell first, then the look: what rang it is visible. */
	nci_consume_bell(c);
	int ready;
	for (;;) {
		uint64_t epoch = nci_epoch(c);
		nci_arm(c);
		ready = poll_scan(c, fds, n);
		if (ready > 0 || timeout_ms == 0)
			break;
		int depth = nci_core_suspend(c);
		int slept = nci_sleep(c, epoch, deadline);
		nci_core_resume(c, depth);
		if (slept == -ETIMEDOUT) {
			ready = poll_scan(c, fds, n);
			break;
		}
	}
	nci_core_leave(c);
	return ready;
}
