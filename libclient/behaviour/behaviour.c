/*
 * The sockets behaviour suite: what a program may rely on, written once
 * against api.h and run over the kernel's sockets (the oracle; in the
 * normal suite) and over libclient (once the broker and core run).
 *
 * Both ends of every connection are handles of the API under test, on its
 * loopback address, with ports chosen by bind(0). Each case states a Linux
 * behaviour: connection set-up and names, end of stream and half-close,
 * resets (errors reported once, then EOF and EPIPE), refusals, MSG_PEEK,
 * MSG_WAITALL, MSG_DONTWAIT, MSG_TRUNC, timeouts, non-blocking connect and
 * accept, poll readiness, FIONREAD, datagrams, iovecs, bulk transfer with
 * verification of every byte. Cases that take an address family run for
 * IPv4 and IPv6 (IPv6 skipped where the API has no ::1).
 *
 * Every blocking call is bounded by SO_RCVTIMEO / SO_SNDTIMEO (5 s) and
 * every wait by a poll timeout, so a broken implementation fails here
 * instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "libclient/behaviour/api.h"

#define WAIT_MS 5000

static const struct sock_api *A;
static bool have_v6;
static int v4 = AF_INET, v6 = AF_INET6;

/* ---------------------------------------------------------------- helpers */

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

static int family_of(void **state)
{
	int f = *(int *)*state;
	if (f == AF_INET6 && !have_v6)
		skip();
	return f;
}

static struct addr lo(int family, uint16_t port)
{
	struct addr a;
	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, A->loopback(AF_INET), &sin->sin_addr);
		a.len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		inet_pton(AF_INET6, A->loopback(AF_INET6), &sin6->sin6_addr);
		a.len = sizeof(*sin6);
	}
	return a;
}

static uint16_t port_of(const struct addr *a)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
	return ntohs(a->ss.ss_family == AF_INET ? sin->sin_port
	                                        : sin6->sin6_port);
}

static struct addr name_of(int h, bool peer)
{
	struct addr a;
	memset(&a, 0, sizeof(a));
	a.len = sizeof(a.ss);
	int r = peer ? A->getpeername(h, (struct sockaddr *)&a.ss, &a.len)
	             : A->getsockname(h, (struct sockaddr *)&a.ss, &a.len);
	assert_int_equal(r, 0);
	return a;
}

static void bound_calls(int h)
{
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

static int xsocket(int family, int type)
{
	int h = A->socket(family, type, 0);
	assert_true(h >= 0);
	bound_calls(h);
	return h;
}

static void xbind(int h, int family, uint16_t port)
{
	struct addr a = lo(family, port);
	assert_int_equal(A->bind(h, (struct sockaddr *)&a.ss, a.len), 0);
}

static int listener(int family, uint16_t *port)
{
	int h = xsocket(family, SOCK_STREAM);
	xbind(h, family, 0);
	assert_int_equal(A->listen(h, 16), 0);
	struct addr a = name_of(h, false);
	*port = port_of(&a);
	assert_true(*port != 0);
	return h;
}

static int xconnect(int family, uint16_t port)
{
	int h = xsocket(family, SOCK_STREAM);
	struct addr a = lo(family, port);
	assert_int_equal(A->connect(h, (struct sockaddr *)&a.ss, a.len), 0);
	return h;
}

static int xaccept(int l, int flags)
{
	int h = A->accept4(l, NULL, NULL, flags);
	assert_true(h >= 0);
	bound_calls(h);
	return h;
}

/* A connected pair: client `c`, server side `s`; the listener's port. */
static uint16_t pair(int family, int *c, int *s)
{
	uint16_t port;
	int l = listener(family, &port);
	*c = xconnect(family, port);
	*s = xaccept(l, 0);
	assert_int_equal(A->close(l), 0);
	return port;
}

static short wait_for(int h, short events, int timeout_ms)
{
	struct api_pollfd p = {.h = h, .events = events};
	int r = A->poll(&p, 1, timeout_ms);
	assert_true(r >= 0);
	return p.revents;
}

static void recv_exact(int h, void *buf, size_t n)
{
	assert_int_equal(A->recv(h, buf, n, MSG_WAITALL), (ssize_t)n);
}

static void set_linger0(int h)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
}

static void set_rcvtimeo_ms(int h, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000};
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int int_opt(int h, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	assert_int_equal(A->getsockopt(h, level, name, &v, &len), 0);
	return v;
}

static void expect_errno(ssize_t r, int err)
{
	assert_int_equal(r, -1);
	assert_int_equal(errno, err);
}

static void pattern(uint8_t *buf, size_t n, size_t at, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((at + i) * 131 + seed + ((at + i) >> 13));
}

/* --------------------------------------------------------- streams: basics */

static void tcp_connect_accept_echo_and_names(void **state)
{
	int f = family_of(state), c, s;
	uint16_t port = pair(f, &c, &s);
	char buf[16];
	assert_int_equal(A->send(c, "hello", 5, 0), 5);
	recv_exact(s, buf, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(A->send(s, "world!", 6, 0), 6);
	recv_exact(c, buf, 6);
	assert_memory_equal(buf, "world!", 6);
	struct addr cn = name_of(c, false), sp = name_of(s, true);
	struct addr cp = name_of(c, true), sn = name_of(s, false);
	assert_int_equal(cn.ss.ss_family, f);
	assert_int_equal(cn.len, sp.len);
	assert_memory_equal(&cn.ss, &sp.ss, cn.len);
	assert_int_equal(port_of(&cp), port);
	assert_int_equal(port_of(&sn), port);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_peer_close_reads_as_eof_for_ever(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	assert_int_equal(A->close(s), 0);
	short ev = wait_for(c, POLLIN | POLLRDHUP, WAIT_MS);
	assert_true(ev & POLLIN);
	assert_true(ev & POLLRDHUP);
	char buf[4];
	assert_int_equal(A->recv(c, buf, sizeof(buf), 0), 0);
	assert_int_equal(A->recv(c, buf, sizeof(buf), 0), 0);
	assert_int_equal(A->recv(c, buf, sizeof(buf), MSG_DONTWAIT), 0);
	assert_int_equal(A->close(c), 0);
}

static void tcp_half_close_keeps_the_other_direction(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	assert_int_equal(A->send(c, "req", 3, 0), 3);
	assert_int_equal(A->shutdown(c, SHUT_WR), 0);
	char buf[8];
	recv_exact(s, buf, 3);
	assert_int_equal(A->recv(s, buf, sizeof(buf), 0), 0);
	short ev = wait_for(s, POLLIN | POLLRDHUP | POLLOUT, 0);
	assert_int_equal(ev, POLLIN | POLLRDHUP | POLLOUT);
	assert_int_equal(A->send(s, "back", 4, 0), 4);
	recv_exact(c, buf, 4);
	assert_memory_equal(buf, "back", 4);
	expect_errno(A->send(c, "x", 1, 0), EPIPE);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_peek_leaves_the_data(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	assert_int_equal(A->send(c, "abcdef", 6, 0), 6);
	char buf[8];
	assert_int_equal(A->recv(s, buf, 6, MSG_PEEK | MSG_WAITALL), 6);
	assert_memory_equal(buf, "abcdef", 6);
	assert_int_equal(A->recv(s, buf, 3, MSG_PEEK), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_int_equal(A->recv(s, buf, 2, 0), 2);
	assert_int_equal(A->recv(s, buf, sizeof(buf), MSG_PEEK), 4);
	assert_memory_equal(buf, "cdef", 4);
	assert_int_equal(A->recv(s, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "cdef", 4);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_waitall_returns_partial_at_rcvtimeo(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	set_rcvtimeo_ms(c, 200);
	assert_int_equal(A->send(s, "ab", 2, 0), 2);
	char buf[16];
	int64_t t0 = now_ms();
	assert_int_equal(A->recv(c, buf, sizeof(buf), MSG_WAITALL), 2);
	assert_true(now_ms() - t0 >= 150);
	t0 = now_ms();
	expect_errno(A->recv(c, buf, sizeof(buf), 0), EAGAIN);
	assert_true(now_ms() - t0 >= 150);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_nonblocking_recv_says_eagain(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	char buf[4];
	expect_errno(A->recv(c, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	assert_int_equal(A->set_nonblocking(c, 1), 0);
	expect_errno(A->recv(c, buf, sizeof(buf), 0), EAGAIN);
	assert_int_equal(A->send(s, "z", 1, 0), 1);
	assert_true(wait_for(c, POLLIN, WAIT_MS) & POLLIN);
	assert_int_equal(A->recv(c, buf, sizeof(buf), 0), 1);
	expect_errno(A->recv(c, buf, sizeof(buf), 0), EAGAIN);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_connected_socket_polls_writable_only(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	assert_int_equal(wait_for(c, POLLIN | POLLOUT | POLLRDHUP, 0), POLLOUT);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_iovecs_gather_and_scatter(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	struct iovec out[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
	struct msghdr m = {.msg_iov = out, .msg_iovlen = 3};
	assert_int_equal(A->sendmsg(c, &m, 0), 6);
	char a[3], b[3];
	struct iovec in[2] = {{a, 3}, {b, 3}};
	struct msghdr n = {.msg_iov = in, .msg_iovlen = 2};
	assert_int_equal(A->recvmsg(s, &n, MSG_WAITALL), 6);
	assert_memory_equal(a, "abc", 3);
	assert_memory_equal(b, "def", 3);
	assert_int_equal(n.msg_flags & MSG_TRUNC, 0);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_fionread_counts_what_arrived(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	uint8_t buf[1000];
	pattern(buf, sizeof(buf), 0, 1);
	assert_int_equal(A->send(c, buf, sizeof(buf), 0), sizeof(buf));
	int n = 0;
	int64_t deadline = now_ms() + WAIT_MS;
	while (now_ms() < deadline) {
		assert_int_equal(A->bytes_readable(s, &n), 0);
		if (n == (int)sizeof(buf))
			break;
		wait_for(s, POLLIN, 20);
	}
	assert_int_equal(n, sizeof(buf));
	recv_exact(s, buf, 400);
	assert_int_equal(A->bytes_readable(s, &n), 0);
	assert_int_equal(n, 600);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

/* ------------------------------------------------ streams: errors, resets */

static void tcp_unconnected_socket_errors(void **state)
{
	int f = family_of(state);
	int h = xsocket(f, SOCK_STREAM);
	char buf[4];
	expect_errno(A->recv(h, buf, sizeof(buf), 0), ENOTCONN);
	expect_errno(A->send(h, "x", 1, 0), EPIPE);
	struct addr a;
	a.len = sizeof(a.ss);
	expect_errno(A->getpeername(h, (struct sockaddr *)&a.ss, &a.len),
	             ENOTCONN);
	expect_errno(A->shutdown(h, SHUT_WR), ENOTCONN);
	assert_int_equal(wait_for(h, POLLIN | POLLOUT, 0), POLLOUT | POLLHUP);
	assert_int_equal(A->close(h), 0);
}

static void tcp_connect_to_closed_port_is_refused(void **state)
{
	int f = family_of(state);
	/* Bound but not listening: nobody else can take the port. */
	int b = xsocket(f, SOCK_STREAM);
	xbind(b, f, 0);
	struct addr bn = name_of(b, false);
	int h = xsocket(f, SOCK_STREAM);
	expect_errno(A->connect(h, (struct sockaddr *)&bn.ss, bn.len),
	             ECONNREFUSED);
	assert_int_equal(A->close(h), 0);
	assert_int_equal(A->close(b), 0);
}

static void tcp_nonblocking_refusal_shows_in_poll_and_so_error(void **state)
{
	int f = family_of(state);
	int b = xsocket(f, SOCK_STREAM);
	xbind(b, f, 0);
	struct addr bn = name_of(b, false);
	int h = A->socket(f, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(h >= 0);
	int r = A->connect(h, (struct sockaddr *)&bn.ss, bn.len);
	if (r == -1 && errno == EINPROGRESS) {
		short ev = wait_for(h, POLLOUT, WAIT_MS);
		assert_true(ev & POLLERR);
		assert_int_equal(int_opt(h, SOL_SOCKET, SO_ERROR),
		                 ECONNREFUSED);
		assert_int_equal(int_opt(h, SOL_SOCKET, SO_ERROR), 0);
	} else {
		expect_errno(r, ECONNREFUSED);
	}
	assert_int_equal(A->close(h), 0);
	assert_int_equal(A->close(b), 0);
}

static void tcp_nonblocking_connect_completes_writable(void **state)
{
	int f = family_of(state);
	uint16_t port;
	int l = listener(f, &port);
	int h = A->socket(f, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(h >= 0);
	struct addr a = lo(f, port);
	int r = A->connect(h, (struct sockaddr *)&a.ss, a.len);
	assert_true(r == 0 || errno == EINPROGRESS);
	assert_true(wait_for(h, POLLOUT, WAIT_MS) & POLLOUT);
	assert_int_equal(int_opt(h, SOL_SOCKET, SO_ERROR), 0);
	/* Asking again reports the outcome (0), once; then EISCONN. */
	assert_int_equal(A->connect(h, (struct sockaddr *)&a.ss, a.len), 0);
	expect_errno(A->connect(h, (struct sockaddr *)&a.ss, a.len), EISCONN);
	int s = xaccept(l, 0);
	assert_int_equal(A->send(h, "!", 1, 0), 1);
	char ch;
	assert_int_equal(A->recv(s, &ch, 1, 0), 1);
	assert_int_equal(A->close(h), 0);
	assert_int_equal(A->close(s), 0);
	assert_int_equal(A->close(l), 0);
}

static void tcp_bind_to_a_port_in_use_is_eaddrinuse(void **state)
{
	int f = family_of(state);
	uint16_t port;
	int l = listener(f, &port);
	int h = xsocket(f, SOCK_STREAM);
	struct addr a = lo(f, port);
	expect_errno(A->bind(h, (struct sockaddr *)&a.ss, a.len), EADDRINUSE);
	assert_int_equal(A->close(h), 0);
	assert_int_equal(A->close(l), 0);
}

static void tcp_connect_again_is_eisconn(void **state)
{
	int f = family_of(state), c, s;
	uint16_t port = pair(f, &c, &s);
	struct addr a = lo(f, port);
	expect_errno(A->connect(c, (struct sockaddr *)&a.ss, a.len), EISCONN);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

static void tcp_reset_reads_error_once_then_eof(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	set_linger0(s);
	assert_int_equal(A->close(s), 0);
	short ev = wait_for(c, POLLIN, WAIT_MS);
	assert_true(ev & POLLHUP);
	assert_true(ev & POLLERR);
	char buf[4];
	expect_errno(A->recv(c, buf, sizeof(buf), 0), ECONNRESET);
	assert_int_equal(A->recv(c, buf, sizeof(buf), 0), 0);
	expect_errno(A->send(c, "x", 1, 0), EPIPE);
	ev = wait_for(c, POLLIN | POLLOUT | POLLRDHUP, 0);
	assert_int_equal(ev, POLLIN | POLLOUT | POLLRDHUP | POLLHUP);
	assert_int_equal(A->close(c), 0);
}

static void tcp_reset_fails_send_once_then_epipe(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	set_linger0(s);
	assert_int_equal(A->close(s), 0);
	assert_true(wait_for(c, POLLIN, WAIT_MS) & POLLHUP);
	expect_errno(A->send(c, "x", 1, 0), ECONNRESET);
	expect_errno(A->send(c, "x", 1, 0), EPIPE);
	char buf[4];
	assert_int_equal(A->recv(c, buf, sizeof(buf), 0), 0);
	assert_int_equal(int_opt(c, SOL_SOCKET, SO_ERROR), 0);
	assert_int_equal(A->close(c), 0);
}

/* ----------------------------------------------------------- streams: accept
 */

static void tcp_accept_nonblocking_and_accept4_flags(void **state)
{
	int f = family_of(state);
	uint16_t port;
	int l = listener(f, &port);
	assert_int_equal(A->set_nonblocking(l, 1), 0);
	expect_errno(A->accept4(l, NULL, NULL, 0), EAGAIN);
	assert_int_equal(wait_for(l, POLLIN | POLLOUT, 0), 0);
	int c = xconnect(f, port);
	assert_true(wait_for(l, POLLIN, WAIT_MS) & POLLIN);
	struct addr peer;
	peer.len = sizeof(peer.ss);
	int s = A->accept4(l, (struct sockaddr *)&peer.ss, &peer.len,
	                   SOCK_NONBLOCK);
	assert_true(s >= 0);
	struct addr cn = name_of(c, false);
	assert_int_equal(peer.len, cn.len);
	assert_memory_equal(&peer.ss, &cn.ss, cn.len);
	char ch;
	expect_errno(A->recv(s, &ch, 1, 0), EAGAIN);
	assert_int_equal(A->close(s), 0);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(l), 0);
}

static void tcp_listener_queues_several_connections(void **state)
{
	int f = family_of(state);
	uint16_t port;
	int l = listener(f, &port);
	int c[3], s[3];
	for (int i = 0; i < 3; i++)
		c[i] = xconnect(f, port);
	for (int i = 0; i < 3; i++)
		assert_int_equal(A->send(c[i], &(char){(char)('a' + i)}, 1, 0),
		                 1);
	unsigned int seen = 0;
	for (int i = 0; i < 3; i++) {
		s[i] = xaccept(l, 0);
		char ch;
		assert_int_equal(A->recv(s[i], &ch, 1, 0), 1);
		assert_true(ch >= 'a' && ch <= 'c');
		seen |= 1u << (ch - 'a');
	}
	assert_int_equal(seen, 7);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(A->close(c[i]), 0);
		assert_int_equal(A->close(s[i]), 0);
	}
	assert_int_equal(A->close(l), 0);
}

/* -------------------------------------------------------- streams: volume */

/* Moves `total` bytes each way at once, both ends non-blocking, driven by
 * poll, checking every byte. */
static void tcp_bulk_both_ways_through_poll(void **state)
{
	int f = family_of(state), h[2];
	pair(f, &h[0], &h[1]);
	enum { TOTAL = 4 << 20, CHUNK = 65536 };
	static uint8_t out[CHUNK], in[CHUNK], want[CHUNK];
	size_t sent[2] = {0, 0}, got[2] = {0, 0};
	for (int i = 0; i < 2; i++)
		assert_int_equal(A->set_nonblocking(h[i], 1), 0);
	int64_t deadline = now_ms() + 60000;
	while ((got[0] < TOTAL || got[1] < TOTAL) && now_ms() < deadline) {
		struct api_pollfd p[2];
		for (int i = 0; i < 2; i++)
			p[i] = (struct api_pollfd){
			    .h = h[i],
			    .events = (short)(POLLIN |
			                      (sent[i] < TOTAL ? POLLOUT : 0))};
		assert_true(A->poll(p, 2, WAIT_MS) > 0);
		for (int i = 0; i < 2; i++) {
			if ((p[i].revents & POLLOUT) && sent[i] < TOTAL) {
				size_t n = TOTAL - sent[i] < CHUNK
				               ? TOTAL - sent[i]
				               : CHUNK;
				pattern(out, n, sent[i], (uint8_t)i);
				ssize_t r = A->send(h[i], out, n, 0);
				assert_true(r > 0 || errno == EAGAIN);
				if (r > 0)
					sent[i] += (size_t)r;
			}
			if (p[i].revents & POLLIN) {
				ssize_t r = A->recv(h[i], in, CHUNK, 0);
				assert_true(r > 0 || errno == EAGAIN);
				if (r <= 0)
					continue;
				/* What i receives, 1 - i sent. */
				pattern(want, (size_t)r, got[i],
				        (uint8_t)(1 - i));
				assert_memory_equal(in, want, (size_t)r);
				got[i] += (size_t)r;
			}
		}
	}
	assert_int_equal(got[0], TOTAL);
	assert_int_equal(got[1], TOTAL);
	assert_int_equal(A->close(h[0]), 0);
	assert_int_equal(A->close(h[1]), 0);
}

static void tcp_close_still_delivers_what_was_sent(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	enum { TOTAL = 512 << 10 };
	static uint8_t buf[TOTAL], in[65536], want[65536];
	pattern(buf, TOTAL, 0, 9);
	assert_int_equal(A->set_nonblocking(c, 1), 0);
	assert_int_equal(A->set_nonblocking(s, 1), 0);
	size_t sent = 0, got = 0;
	int64_t deadline = now_ms() + 30000;
	while (sent < TOTAL && now_ms() < deadline) {
		ssize_t r = A->send(c, buf + sent, TOTAL - sent, 0);
		if (r > 0)
			sent += (size_t)r;
		r = A->recv(s, in, sizeof(in), 0);
		if (r > 0) {
			pattern(want, (size_t)r, got, 9);
			assert_memory_equal(in, want, (size_t)r);
			got += (size_t)r;
		}
		if (r <= 0)
			wait_for(s, POLLIN, 10);
	}
	assert_int_equal(sent, TOTAL);
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->set_nonblocking(s, 0), 0);
	for (;;) {
		ssize_t r = A->recv(s, in, sizeof(in), 0);
		assert_true(r >= 0);
		if (r == 0)
			break;
		pattern(want, (size_t)r, got, 9);
		assert_memory_equal(in, want, (size_t)r);
		got += (size_t)r;
	}
	assert_int_equal(got, TOTAL);
	assert_int_equal(A->close(s), 0);
}

static void tcp_blocking_send_gives_up_at_sndtimeo(void **state)
{
	int f = family_of(state), c, s;
	pair(f, &c, &s);
	int small = 4096;
	A->setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	A->setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	static uint8_t buf[65536];
	assert_int_equal(A->set_nonblocking(c, 1), 0);
	size_t total = 0;
	for (;;) {
		ssize_t r = A->send(c, buf, sizeof(buf), 0);
		if (r < 0) {
			assert_int_equal(errno, EAGAIN);
			break;
		}
		total += (size_t)r;
		assert_true(total < (64u << 20));
	}
	assert_int_equal(A->set_nonblocking(c, 0), 0);
	struct timeval tv = {.tv_usec = 200000};
	assert_int_equal(
	    A->setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	int64_t t0 = now_ms();
	ssize_t r = A->send(c, buf, sizeof(buf), 0);
	assert_true(now_ms() - t0 >= 150);
	if (r < 0)
		assert_int_equal(errno, EAGAIN);
	else
		assert_true(r < (ssize_t)sizeof(buf));
	assert_int_equal(A->close(c), 0);
	assert_int_equal(A->close(s), 0);
}

/* ---------------------------------------------------------------- options */

static void socket_options_round_trip(void **state)
{
	int f = family_of(state);
	int h = A->socket(f, SOCK_STREAM, 0);
	assert_true(h >= 0);
	int one = 1;
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	assert_true(int_opt(h, SOL_SOCKET, SO_REUSEADDR) != 0);
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)), 0);
	assert_true(int_opt(h, SOL_SOCKET, SO_KEEPALIVE) != 0);
	assert_int_equal(
	    A->setsockopt(h, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	assert_true(int_opt(h, IPPROTO_TCP, TCP_NODELAY) != 0);
	assert_int_equal(int_opt(h, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
	assert_int_equal(int_opt(h, SOL_SOCKET, SO_ERROR), 0);
	struct linger lg = {.l_onoff = 1, .l_linger = 5}, lg2;
	socklen_t len = sizeof(lg2);
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	assert_int_equal(A->getsockopt(h, SOL_SOCKET, SO_LINGER, &lg2, &len),
	                 0);
	assert_true(lg2.l_onoff != 0);
	assert_int_equal(lg2.l_linger, 5);
	struct timeval tv = {.tv_sec = 1, .tv_usec = 500000}, tv2;
	len = sizeof(tv2);
	assert_int_equal(
	    A->setsockopt(h, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(A->getsockopt(h, SOL_SOCKET, SO_RCVTIMEO, &tv2, &len),
	                 0);
	assert_int_equal(tv2.tv_sec, 1);
	assert_int_equal(tv2.tv_usec, 500000);
	tv.tv_usec = 1000000;
	expect_errno(A->setsockopt(h, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)),
	             EDOM);
	expect_errno(A->setsockopt(h, SOL_SOCKET, 9999, &one, sizeof(one)),
	             ENOPROTOOPT);
	assert_int_equal(A->close(h), 0);
}

static void bind_to_port_zero_picks_a_port(void **state)
{
	int f = family_of(state);
	int h = xsocket(f, SOCK_DGRAM);
	xbind(h, f, 0);
	struct addr a = name_of(h, false), want = lo(f, 0);
	assert_int_equal(a.ss.ss_family, f);
	assert_int_equal(a.len, want.len);
	assert_true(port_of(&a) != 0);
	if (f == AF_INET)
		assert_memory_equal(&((struct sockaddr_in *)&a.ss)->sin_addr,
		                    &((struct sockaddr_in *)&want.ss)->sin_addr,
		                    4);
	else
		assert_memory_equal(
		    &((struct sockaddr_in6 *)&a.ss)->sin6_addr,
		    &((struct sockaddr_in6 *)&want.ss)->sin6_addr, 16);
	assert_int_equal(A->close(h), 0);
}

/* --------------------------------------------------------------- datagrams */

static int udp_bound(int f, struct addr *name)
{
	int h = xsocket(f, SOCK_DGRAM);
	xbind(h, f, 0);
	*name = name_of(h, false);
	return h;
}

static void udp_sendto_and_recvfrom_name_the_peer(void **state)
{
	int f = family_of(state);
	struct addr an, bn, from;
	int a = udp_bound(f, &an), b = udp_bound(f, &bn);
	assert_int_equal(
	    A->sendto(b, "ping", 4, 0, (struct sockaddr *)&an.ss, an.len), 4);
	char buf[8];
	from.len = sizeof(from.ss);
	assert_int_equal(A->recvfrom(a, buf, sizeof(buf), 0,
	                             (struct sockaddr *)&from.ss, &from.len),
	                 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(from.len, bn.len);
	assert_memory_equal(&from.ss, &bn.ss, bn.len);
	assert_int_equal(
	    A->sendto(a, "pong", 4, 0, (struct sockaddr *)&from.ss, from.len),
	    4);
	assert_int_equal(A->recv(b, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "pong", 4);
	assert_int_equal(A->close(a), 0);
	assert_int_equal(A->close(b), 0);
}

static void udp_short_buffer_truncates_the_datagram(void **state)
{
	int f = family_of(state);
	struct addr an, bn;
	int a = udp_bound(f, &an), b = udp_bound(f, &bn);
	const char *d[3] = {"hello world", "second", "third"};
	for (int i = 0; i < 3; i++)
		assert_int_equal(A->sendto(b, d[i], strlen(d[i]), 0,
		                           (struct sockaddr *)&an.ss, an.len),
		                 (ssize_t)strlen(d[i]));
	char buf[16];
	assert_int_equal(A->recv(a, buf, 5, MSG_TRUNC), 11);
	assert_memory_equal(buf, "hello", 5);
	struct iovec iov = {.iov_base = buf, .iov_len = 3};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	assert_int_equal(A->recvmsg(a, &m, 0), 3);
	assert_true(m.msg_flags & MSG_TRUNC);
	assert_memory_equal(buf, "sec", 3);
	assert_int_equal(A->recv(a, buf, sizeof(buf), 0), 5);
	assert_memory_equal(buf, "third", 5);
	assert_int_equal(A->close(a), 0);
	assert_int_equal(A->close(b), 0);
}

static void udp_fionread_is_the_next_datagram(void **state)
{
	int f = family_of(state);
	struct addr an, bn;
	int a = udp_bound(f, &an), b = udp_bound(f, &bn);
	assert_int_equal(
	    A->sendto(b, "hello", 5, 0, (struct sockaddr *)&an.ss, an.len), 5);
	assert_int_equal(
	    A->sendto(b, "xy", 2, 0, (struct sockaddr *)&an.ss, an.len), 2);
	assert_true(wait_for(a, POLLIN, WAIT_MS) & POLLIN);
	int n = -1;
	assert_int_equal(A->bytes_readable(a, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(A->close(a), 0);
	assert_int_equal(A->close(b), 0);
}

static void udp_connected_socket_needs_no_address(void **state)
{
	int f = family_of(state);
	struct addr an, bn, from;
	int a = udp_bound(f, &an), b = udp_bound(f, &bn);
	assert_int_equal(A->connect(b, (struct sockaddr *)&an.ss, an.len), 0);
	assert_int_equal(A->send(b, "c", 1, 0), 1);
	char buf[4];
	from.len = sizeof(from.ss);
	assert_int_equal(A->recvfrom(a, buf, sizeof(buf), 0,
	                             (struct sockaddr *)&from.ss, &from.len),
	                 1);
	assert_int_equal(port_of(&from), port_of(&bn));
	struct addr peer = name_of(b, true);
	assert_int_equal(port_of(&peer), port_of(&an));
	int u = xsocket(f, SOCK_DGRAM);
	expect_errno(A->send(u, "x", 1, 0), EDESTADDRREQ);
	assert_int_equal(A->close(u), 0);
	assert_int_equal(A->close(a), 0);
	assert_int_equal(A->close(b), 0);
}

static void udp_peek_and_nonblocking(void **state)
{
	int f = family_of(state);
	struct addr an, bn;
	int a = udp_bound(f, &an), b = udp_bound(f, &bn);
	char buf[8];
	expect_errno(A->recv(a, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	assert_int_equal(wait_for(a, POLLIN | POLLOUT, 0), POLLOUT);
	assert_int_equal(
	    A->sendto(b, "peek", 4, 0, (struct sockaddr *)&an.ss, an.len), 4);
	assert_int_equal(A->recv(a, buf, sizeof(buf), MSG_PEEK), 4);
	assert_memory_equal(buf, "peek", 4);
	assert_int_equal(A->recv(a, buf, sizeof(buf), 0), 4);
	expect_errno(A->recv(a, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	assert_int_equal(A->close(a), 0);
	assert_int_equal(A->close(b), 0);
}

static void udp_empty_datagram_is_a_datagram(void **state)
{
	int f = family_of(state);
	struct addr an, bn, from;
	int a = udp_bound(f, &an), b = udp_bound(f, &bn);
	assert_int_equal(
	    A->sendto(b, "", 0, 0, (struct sockaddr *)&an.ss, an.len), 0);
	char buf[4];
	from.len = sizeof(from.ss);
	assert_int_equal(A->recvfrom(a, buf, sizeof(buf), 0,
	                             (struct sockaddr *)&from.ss, &from.len),
	                 0);
	assert_int_equal(port_of(&from), port_of(&bn));
	assert_int_equal(A->close(a), 0);
	assert_int_equal(A->close(b), 0);
}

/* ------------------------------------------------------------------ suite */

static int group_setup(void **state)
{
	(void)state;
	if (A->setup() != 0)
		return -1;
	int h = A->socket(AF_INET6, SOCK_DGRAM, 0);
	if (h >= 0) {
		struct addr a = lo(AF_INET6, 0);
		have_v6 = A->bind(h, (struct sockaddr *)&a.ss, a.len) == 0;
		A->close(h);
	}
	if (!have_v6)
		print_message("%s: no IPv6 loopback, IPv6 cases skipped\n",
		              A->name);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	A->teardown();
	return 0;
}

#define BOTH(t)                                                                \
	{#t "/ipv4", t, NULL, NULL, &v4},                                      \
	{                                                                      \
#t "/ipv6", t, NULL, NULL, &v6                                 \
	}

int behaviour_run(const struct sock_api *api)
{
	A = api;
	const struct CMUnitTest tests[] = {
	    BOTH(tcp_connect_accept_echo_and_names),
	    BOTH(tcp_peer_close_reads_as_eof_for_ever),
	    BOTH(tcp_half_close_keeps_the_other_direction),
	    BOTH(tcp_peek_leaves_the_data),
	    BOTH(tcp_waitall_returns_partial_at_rcvtimeo),
	    BOTH(tcp_nonblocking_recv_says_eagain),
	    BOTH(tcp_connected_socket_polls_writable_only),
	    BOTH(tcp_iovecs_gather_and_scatter),
	    BOTH(tcp_fionread_counts_what_arrived),
	    BOTH(tcp_unconnected_socket_errors),
	    BOTH(tcp_connect_to_closed_port_is_refused),
	    BOTH(tcp_nonblocking_refusal_shows_in_poll_and_so_error),
	    BOTH(tcp_nonblocking_connect_completes_writable),
	    BOTH(tcp_bind_to_a_port_in_use_is_eaddrinuse),
	    BOTH(tcp_connect_again_is_eisconn),
	    BOTH(tcp_reset_reads_error_once_then_eof),
	    BOTH(tcp_reset_fails_send_once_then_epipe),
	    BOTH(tcp_accept_nonblocking_and_accept4_flags),
	    BOTH(tcp_listener_queues_several_connections),
	    BOTH(tcp_bulk_both_ways_through_poll),
	    BOTH(tcp_close_still_delivers_what_was_sent),
	    BOTH(tcp_blocking_send_gives_up_at_sndtimeo),
	    BOTH(socket_options_round_trip),
	    BOTH(bind_to_port_zero_picks_a_port),
	    BOTH(udp_sendto_and_recvfrom_name_the_peer),
	    BOTH(udp_short_buffer_truncates_the_datagram),
	    BOTH(udp_fionread_is_the_next_datagram),
	    BOTH(udp_connected_socket_needs_no_address),
	    BOTH(udp_peek_and_nonblocking),
	    BOTH(udp_empty_datagram_is_a_datagram),
	};
	return _cmocka_run_group_tests(api->name, tests,
	                               sizeof(tests) / sizeof(tests[0]),
	                               group_setup, group_teardown);
}
