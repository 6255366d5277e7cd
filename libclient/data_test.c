/*
 * libclient's data path against a fake core (testing/fake.h): the test
 * plays the core directly on the region's rings and states, a thread plays
 * the broker. Checks the buffer protocol (free ring -> tx ring; rx ring ->
 * done ring, every buffer back exactly once), the BSD semantics built on it
 * (send, recv, MSG_PEEK, MSG_WAITALL, end of stream, pending errors,
 * datagrams, FIONREAD) and the control calls' local parts (blocking
 * connect and accept, options, names, shutdown, close).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libclient/testing/fake.h"

static struct fake F;

static int setup(void **state)
{
	(void)state;
	struct nc_client_params p;
	fake_params_small(&p);
	return fake_start(&F, &p);
}

static int teardown(void **state)
{
	(void)state;
	fake_stop(&F);
	return 0;
}

static struct nc_sock *open_stream(void)
{
	struct nc_sock *s;
	assert_int_equal(nc_socket(F.client, AF_INET, SOCK_STREAM, 0, &s), 0);
	return s;
}

static struct sockaddr_in addr4(const char *ip4, uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port)};
	memcpy(&sin.sin_addr, ip4, 4);
	return sin;
}

static struct nc_sock *open_connected(void)
{
	struct nc_sock *s = open_stream();
	struct sockaddr_in sin = addr4("\x7f\0\0\x01", 80);
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 0);
	return s;
}

static struct nc_sock *open_dgram(void)
{
	struct nc_sock *s;
	assert_int_equal(nc_socket(F.client, AF_INET, SOCK_DGRAM, 0, &s), 0);
	return s;
}

static void fill_pattern(uint8_t *buf, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 7 + seed);
}

static int64_t ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	       (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* ------------------------------------------------------------------ send */

static void send_fills_tx_ring_from_free_buffers(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	uint8_t out[5000], got[6000];
	fill_pattern(out, sizeof(out), 1);
	assert_int_equal(nc_send(s, out, sizeof(out), 0), sizeof(out));
	unsigned int ndesc;
	assert_int_equal(fake_tx_take(&F, s->idx, got, sizeof(got), &ndesc),
	                 sizeof(out));
	assert_int_equal(ndesc, 3); /* 2048 + 2048 + 904 */
	assert_memory_equal(got, out, sizeof(out));
	assert_int_equal(nc_close(s), 0);
}

static void send_rings_core_only_when_asked(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	fake_core_rung(&F);
	F.control->core_wants_wakeup = 0;
	assert_int_equal(nc_send(s, "x", 1, 0), 1);
	assert_false(fake_core_rung(&F));
	F.control->core_wants_wakeup = 1;
	assert_int_equal(nc_send(s, "y", 1, 0), 1);
	assert_true(fake_core_rung(&F));
	assert_int_equal(F.control->core_wants_wakeup, 0);
	fake_tx_take(&F, s->idx, (uint8_t[4]){0}, 4, NULL);
	assert_int_equal(nc_close(s), 0);
}

static void send_nonblocking_stops_when_buffers_run_out(void **state)
{
	(void)state;
	static uint8_t big[100000], got[100000];
	struct nc_sock *s = open_connected();
	nc_set_nonblocking(s, 1);
	fill_pattern(big, sizeof(big), 2);
	/* 7 buffers lent (ring capacity 7). */
	assert_int_equal(nc_send(s, big, sizeof(big), 0), 7 * 2048);
	assert_int_equal(nc_send(s, big, 10, 0), -1);
	assert_int_equal(errno, EAGAIN);
	/* The core consumes them and lends them again: room again. */
	assert_int_equal(fake_tx_take(&F, s->idx, got, sizeof(got), NULL),
	                 7 * 2048);
	assert_memory_equal(got, big, 7 * 2048);
	assert_int_equal(fake_lend_free(&F, 7), 7);
	assert_int_equal(nc_send(s, big, 10, 0), 10);
	fake_tx_take(&F, s->idx, got, sizeof(got), NULL);
	assert_int_equal(nc_close(s), 0);
}

static void send_blocking_returns_partial_count_at_sndtimeo(void **state)
{
	(void)state;
	static uint8_t big[100000], got[100000];
	struct nc_sock *s = open_connected();
	struct timeval tv = {.tv_usec = 100000};
	assert_int_equal(
	    nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(nc_send(s, big, sizeof(big), 0), 7 * 2048);
	assert_true(ms_since(&t0) >= 90);
	/* Nothing left at all: EAGAIN, like Linux. */
	assert_int_equal(nc_send(s, big, 10, 0), -1);
	assert_int_equal(errno, EAGAIN);
	fake_tx_take(&F, s->idx, got, sizeof(got), NULL);
	fake_lend_free(&F, 7);
	assert_int_equal(nc_close(s), 0);
}

/* ---------------------------------------------------------------- receive */

static void recv_copies_out_and_returns_buffers(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	assert_int_equal(fake_rx_data(&F, s->idx, "hello ", 6), 0);
	assert_int_equal(fake_rx_data(&F, s->idx, "world", 5), 0);
	uint32_t lent = fake_lent(&F);
	char buf[16] = {0};
	assert_int_equal(nc_recv(s, buf, 4, 0), 4);
	assert_memory_equal(buf, "hell", 4);
	assert_int_equal(fake_done_take(&F), 0); /* still partly read */
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 7);
	assert_memory_equal(buf, "o world", 7);
	assert_int_equal(fake_done_take(&F), 2);
	assert_int_equal(fake_lent(&F), lent - 2);
	assert_int_equal(nc_close(s), 0);
}

static void recv_peek_does_not_consume(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	fake_rx_data(&F, s->idx, "abc", 3);
	fake_rx_data(&F, s->idx, "def", 3);
	char buf[8] = {0};
	assert_int_equal(nc_recv(s, buf, 2, 0), 2);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_PEEK), 4);
	assert_memory_equal(buf, "cdef", 4);
	assert_int_equal(nc_recv(s, buf, 3, MSG_PEEK), 3);
	assert_memory_equal(buf, "cde", 3);
	assert_int_equal(fake_done_take(&F), 0);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "cdef", 4);
	assert_int_equal(fake_done_take(&F), 2);
	assert_int_equal(nc_close(s), 0);
}

static void recv_waitall_gathers_buffers_then_stops_at_eof(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	fake_rx_data(&F, s->idx, "12345", 5);
	fake_rx_data(&F, s->idx, "678", 3);
	char buf[16];
	assert_int_equal(nc_recv(s, buf, 7, MSG_WAITALL), 7);
	assert_memory_equal(buf, "1234567", 7);
	fake_rx_data(&F, s->idx, "9", 1);
	fake_rx_eof(&F, s->idx);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_WAITALL), 2);
	assert_memory_equal(buf, "89", 2);
	/* End of stream reads as 0, again and again, and never blocks. */
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 0);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_WAITALL), 0);
	/* Every buffer came back, the EOF descriptor's too. */
	assert_int_equal(fake_done_take(&F), 4);
	assert_int_equal(nc_close(s), 0);
}

static void recv_waitall_returns_partial_at_rcvtimeo(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	struct timeval tv = {.tv_usec = 50000};
	nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	fake_rx_data(&F, s->idx, "ab", 2);
	char buf[8];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_WAITALL), 2);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(nc_close(s), 0);
}

static void recv_nonblocking_says_eagain_and_asks_for_wakeup(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	char buf[4];
	F.control->client_wants_wakeup = 0;
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(F.control->client_wants_wakeup, 1);
	assert_true(fake_wake_client(&F));
	assert_int_equal(nc_close(s), 0);
}

static void reset_reports_error_once_then_eof_and_epipe(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	fake_set_state(&F, s->idx, NC_SS_CLOSED, NC_EV_HUP | NC_EV_ERROR,
	               ECONNRESET);
	char buf[4];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 0);
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EPIPE);
	/* SO_ERROR: already reported, so 0, as Linux. */
	int v = -1;
	socklen_t len = sizeof(v);
	assert_int_equal(nc_getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	assert_int_equal(v, 0);
	assert_int_equal(nc_close(s), 0);
}

static void send_after_reset_reports_error_then_epipe(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	fake_set_state(&F, s->idx, NC_SS_CLOSED, NC_EV_HUP | NC_EV_ERROR,
	               ECONNRESET);
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(nc_close(s), 0);
}

static void unconnected_stream_is_enotconn_and_epipe(void **state)
{
	(void)state;
	struct nc_sock *s = open_stream();
	char buf[4];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, ENOTCONN);
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(nc_close(s), 0);
}

/* -------------------------------------------------------------- datagrams */

static void sendto_prefixes_destination_header(void **state)
{
	(void)state;
	struct nc_sock *s = open_dgram();
	struct sockaddr_in to = addr4("\x0a\0\0\x09", 5353);
	assert_int_equal(
	    nc_sendto(s, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
	uint8_t got[64];
	unsigned int n;
	long len = fake_tx_take(&F, s->idx, got, sizeof(got), &n);
	assert_int_equal(n, 1);
	assert_int_equal(len, sizeof(struct nc_dgram_hdr) + 4);
	struct nc_dgram_hdr h;
	memcpy(&h, got, sizeof(h));
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.port, 5353);
	assert_memory_equal(h.addr, "\x0a\0\0\x09", 4);
	assert_memory_equal(got + sizeof(h), "ping", 4);
	assert_int_equal(nc_close(s), 0);
}

static void dgram_send_checks_destination_and_size(void **state)
{
	(void)state;
	static uint8_t big[4096];
	struct nc_sock *s = open_dgram();
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EDESTADDRREQ);
	struct sockaddr_in to = addr4("\x0a\0\0\x09", 53);
	size_t max = 2048 - sizeof(struct nc_dgram_hdr);
	assert_int_equal(
	    nc_sendto(s, big, max + 1, 0, (struct sockaddr *)&to, sizeof(to)),
	    -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_int_equal(nc_connect(s, (struct sockaddr *)&to, sizeof(to)), 0);
	assert_int_equal(nc_send(s, big, max, 0), (ssize_t)max);
	uint8_t got[4096];
	fake_tx_take(&F, s->idx, got, sizeof(got), NULL);
	struct nc_dgram_hdr h;
	memcpy(&h, got, sizeof(h));
	assert_int_equal(h.family, 0); /* connected: the core's peer */
	assert_int_equal(nc_close(s), 0);
}

static void recvfrom_gives_source_and_truncates(void **state)
{
	(void)state;
	struct nc_sock *s = open_dgram();
	struct nc_dgram_hdr h = {.family = AF_INET, .port = 999};
	memcpy(h.addr, "\x0a\0\0\x01", 4);
	fake_rx_dgram(&F, s->idx, &h, "hello world", 11);
	fake_rx_dgram(&F, s->idx, &h, "second", 6);
	fake_rx_dgram(&F, s->idx, &h, "", 0);
	int n;
	assert_int_equal(nc_bytes_readable(s, &n), 0);
	assert_int_equal(n, 11); /* the next datagram, as Linux */
	char buf[16];
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	assert_int_equal(nc_recvfrom(s, buf, 5, MSG_PEEK | MSG_TRUNC,
	                             (struct sockaddr *)&from, &flen),
	                 11);
	assert_int_equal(flen, sizeof(from));
	assert_int_equal(ntohs(from.sin_port), 999);
	assert_memory_equal(&from.sin_addr, "\x0a\0\0\x01", 4);
	struct iovec iov = {.iov_base = buf, .iov_len = 5};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	assert_int_equal(nc_recvmsg(s, &msg, 0), 5);
	assert_true(msg.msg_flags & MSG_TRUNC);
	assert_memory_equal(buf, "hello", 5);
	/* The rest of a truncated datagram is gone. */
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 6);
	assert_memory_equal(buf, "second", 6);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 0);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(fake_done_take(&F), 3);
	assert_int_equal(nc_close(s), 0);
}

static void ipv6_socket_sees_ipv4_source_as_mapped(void **state)
{
	(void)state;
	struct nc_sock *s;
	assert_int_equal(nc_socket(F.client, AF_INET6, SOCK_DGRAM, 0, &s), 0);
	struct nc_dgram_hdr h = {.family = AF_INET, .port = 7};
	memcpy(h.addr, "\x0a\0\0\x02", 4);
	fake_rx_dgram(&F, s->idx, &h, "x", 1);
	struct sockaddr_in6 from;
	socklen_t flen = sizeof(from);
	char c;
	assert_int_equal(
	    nc_recvfrom(s, &c, 1, 0, (struct sockaddr *)&from, &flen), 1);
	assert_int_equal(from.sin6_family, AF_INET6);
	assert_memory_equal(&from.sin6_addr,
	                    "\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\0\0\x02", 16);
	assert_int_equal(nc_close(s), 0);
}

static void fionread_counts_stream_bytes(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	int n = -1;
	assert_int_equal(nc_bytes_readable(s, &n), 0);
	assert_int_equal(n, 0);
	fake_rx_data(&F, s->idx, "abcd", 4);
	fake_rx_data(&F, s->idx, "ef", 2);
	char buf[2];
	nc_recv(s, buf, 1, 0);
	assert_int_equal(nc_bytes_readable(s, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(nc_close(s), 0);
}

/* ------------------------------------------------------------------ close */

static void close_gives_every_buffer_back(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	uint32_t before = fake_lent(&F);
	fake_rx_data(&F, s->idx, "one", 3);
	fake_rx_data(&F, s->idx, "two", 3);
	fake_rx_data(&F, s->idx, "three", 5);
	char c;
	assert_int_equal(nc_recv(s, &c, 1, 0), 1); /* one partly read */
	assert_int_equal(nc_close(s), 0);
	assert_int_equal(fake_done_take(&F), 3);
	assert_int_equal(fake_lent(&F), before);
}

static void close_follows_data_sent_before(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	F.closed_tx_bytes = 0;
	assert_int_equal(nc_send(s, "last words", 10, 0), 10);
	assert_int_equal(nc_close(s), 0);
	assert_int_equal(F.closed_tx_bytes, 10);
	fake_lend_free(&F, 7);
}

/* ---------------------------------------------------- connect and accept */

struct later {
	uint32_t sock;
	uint32_t phase, events;
	int32_t error;
	uint32_t accepts;
	int delay_ms;
};

static void *set_state_later(void *arg)
{
	struct later *l = arg;
	struct timespec ts = {.tv_nsec = l->delay_ms * 1000000L};
	nanosleep(&ts, NULL);
	pthread_mutex_lock(&F.lock);
	F.pending_accepts += l->accepts;
	if (l->accepts)
		F.states[l->sock].accept_queue = F.pending_accepts;
	pthread_mutex_unlock(&F.lock);
	fake_set_state(&F, l->sock, l->phase, l->events, l->error);
	fake_wake_client(&F);
	return NULL;
}

static int connect_with_core_answer(struct nc_sock *s, struct later *l)
{
	pthread_t t;
	struct sockaddr_in sin = addr4("\x7f\0\0\x01", 80);
	F.connect_async = true;
	l->sock = s->idx;
	pthread_create(&t, NULL, set_state_later, l);
	int r = nc_connect(s, (struct sockaddr *)&sin, sizeof(sin));
	int saved = errno;
	pthread_join(t, NULL);
	F.connect_async = false;
	errno = saved;
	return r;
}

static void blocking_connect_waits_for_the_handshake(void **state)
{
	(void)state;
	struct nc_sock *s = open_stream();
	struct later l = {.phase = NC_SS_CONNECTED,
	                  .events = NC_EV_CONNECTED | NC_EV_WRITABLE,
	                  .delay_ms = 50};
	assert_int_equal(connect_with_core_answer(s, &l), 0);
	assert_int_equal(nc_send(s, "x", 1, 0), 1);
	fake_tx_take(&F, s->idx, (char[4]){0}, 4, NULL);
	assert_int_equal(nc_close(s), 0);
}

static void blocking_connect_reports_refusal(void **state)
{
	(void)state;
	struct nc_sock *s = open_stream();
	struct later l = {.phase = NC_SS_CLOSED,
	                  .events = NC_EV_ERROR | NC_EV_HUP,
	                  .error = ECONNREFUSED,
	                  .delay_ms = 20};
	assert_int_equal(connect_with_core_answer(s, &l), -1);
	assert_int_equal(errno, ECONNREFUSED);
	int v = -1;
	socklen_t len = sizeof(v);
	assert_int_equal(nc_getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	assert_int_equal(v, 0); /* the connect took it */
	assert_int_equal(nc_close(s), 0);
}

static void blocking_connect_gives_einprogress_at_sndtimeo(void **state)
{
	(void)state;
	struct nc_sock *s = open_stream();
	struct timeval tv = {.tv_usec = 50000};
	nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sin = addr4("\x7f\0\0\x01", 80);
	F.connect_async = true;
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 -1);
	F.connect_async = false;
	assert_int_equal(errno, EINPROGRESS);
	assert_int_equal(nc_close(s), 0);
}

static void nonblocking_connect_completes_through_poll(void **state)
{
	(void)state;
	struct nc_sock *s;
	assert_int_equal(
	    nc_socket(F.client, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, &s),
	    0);
	struct sockaddr_in sin = addr4("\x7f\0\0\x01", 80);
	F.connect_async = true;
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 -1);
	F.connect_async = false;
	assert_int_equal(errno, EINPROGRESS);
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLOUT};
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 0);
	fake_set_state(&F, s->idx, NC_SS_CONNECTED,
	               NC_EV_CONNECTED | NC_EV_WRITABLE, 0);
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 1);
	assert_int_equal(pfd.revents, NC_POLLOUT);
	int v = -1;
	socklen_t len = sizeof(v);
	assert_int_equal(nc_getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &len), 0);
	assert_int_equal(v, 0);
	/* Linux: the next connect reports the outcome, then EISCONN (the
	 * fake core answers a fresh CONNECT on a connected socket thus). */
	unsigned int connects = F.requests[NC_MSG_CONNECT];
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 0);
	assert_int_equal(F.requests[NC_MSG_CONNECT], connects);
	F.forced[NC_MSG_CONNECT] = -EISCONN;
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 -1);
	assert_int_equal(errno, EISCONN);
	F.forced[NC_MSG_CONNECT] = 0;
	assert_int_equal(nc_close(s), 0);
}

static void connect_again_while_connecting_is_ealready(void **state)
{
	(void)state;
	struct nc_sock *s;
	assert_int_equal(
	    nc_socket(F.client, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0, &s),
	    0);
	struct sockaddr_in sin = addr4("\x7f\0\0\x01", 80);
	F.connect_async = true;
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 -1);
	assert_int_equal(errno, EINPROGRESS);
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 -1);
	assert_int_equal(errno, EALREADY);
	fake_set_state(&F, s->idx, NC_SS_OPEN, NC_EV_ERROR, ETIMEDOUT);
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 -1);
	assert_int_equal(errno, ETIMEDOUT);
	F.connect_async = false;
	assert_int_equal(nc_close(s), 0);
}

static void accept_blocks_until_a_connection_waits(void **state)
{
	(void)state;
	struct nc_sock *l = open_stream(), *a;
	struct sockaddr_in any = addr4("\0\0\0\0", 0);
	assert_int_equal(nc_bind(l, (struct sockaddr *)&any, sizeof(any)), 0);
	assert_int_equal(nc_listen(l, 8), 0);
	nc_set_nonblocking(l, 1);
	assert_int_equal(nc_accept(l, NULL, NULL, &a), -1);
	assert_int_equal(errno, EAGAIN);
	nc_set_nonblocking(l, 0);
	pthread_t t;
	struct later lt = {.sock = l->idx,
	                   .phase = NC_SS_LISTENING,
	                   .events = NC_EV_ACCEPTABLE,
	                   .accepts = 1,
	                   .delay_ms = 50};
	pthread_create(&t, NULL, set_state_later, &lt);
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	assert_int_equal(
	    nc_accept4(l, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK, &a),
	    0);
	pthread_join(t, NULL);
	assert_int_equal(plen, sizeof(peer));
	assert_int_equal(ntohs(peer.sin_port), 5555);
	assert_int_equal(nc_fcntl(a, F_GETFL, 0) & O_NONBLOCK, O_NONBLOCK);
	char c;
	assert_int_equal(nc_recv(a, &c, 1, 0), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(nc_close(a), 0);
	assert_int_equal(nc_close(l), 0);
}

/* ------------------------------------------------- options, names, flags */

static void timeouts_stay_here_other_options_go_to_the_core(void **state)
{
	(void)state;
	struct nc_sock *s = open_stream();
	unsigned int sets = F.requests[NC_MSG_SETSOCKOPT];
	struct timeval tv = {.tv_sec = 2, .tv_usec = 500}, got;
	socklen_t len = sizeof(got);
	assert_int_equal(
	    nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(nc_getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &len),
	                 0);
	assert_int_equal(got.tv_sec, 2);
	assert_int_equal(got.tv_usec, 500);
	tv.tv_usec = 1000000;
	assert_int_equal(
	    nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), -1);
	assert_int_equal(errno, EDOM);
	assert_int_equal(F.requests[NC_MSG_SETSOCKOPT], sets);
	int one = 1, v = 0;
	len = sizeof(v);
	assert_int_equal(
	    nc_setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	assert_int_equal(F.requests[NC_MSG_SETSOCKOPT], sets + 1);
	assert_int_equal(nc_getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &len),
	                 0);
	assert_int_equal(v, 1);
	assert_int_equal(nc_getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len), 0);
	assert_int_equal(v, SOCK_STREAM);
	struct linger lg = {1, 0};
	assert_int_equal(nc_setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, 4), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(
	    nc_setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	assert_int_equal(F.last[NC_MSG_SETSOCKOPT].optlen, sizeof(lg));
	assert_int_equal(nc_close(s), 0);
}

static void getsockname_reports_the_bound_port(void **state)
{
	(void)state;
	struct nc_sock *s = open_stream();
	struct sockaddr_in any = addr4("\0\0\0\0", 0), got;
	socklen_t len = sizeof(got);
	assert_int_equal(nc_bind(s, (struct sockaddr *)&any, sizeof(any)), 0);
	assert_int_equal(nc_getsockname(s, (struct sockaddr *)&got, &len), 0);
	assert_int_equal(len, sizeof(got));
	assert_int_equal(ntohs(got.sin_port), 40000 + s->idx);
	assert_int_equal(nc_getpeername(s, (struct sockaddr *)&got, &len), -1);
	assert_int_equal(errno, ENOTCONN);
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	assert_int_equal(nc_bind(s, (struct sockaddr *)&v6, sizeof(v6)), -1);
	assert_int_equal(errno, EAFNOSUPPORT);
	assert_int_equal(nc_bind(s, (struct sockaddr *)&any, 8), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(nc_close(s), 0);
}

static void shutdown_sets_local_halves(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	assert_int_equal(nc_shutdown(s, 7), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(nc_shutdown(s, SHUT_WR), 0);
	assert_int_equal(F.last[NC_MSG_SHUTDOWN].arg, SHUT_WR);
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(nc_shutdown(s, SHUT_RD), 0);
	char c;
	assert_int_equal(nc_recv(s, &c, 1, 0), 0);
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLIN | NC_POLLRDHUP};
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 1);
	assert_int_equal(pfd.revents, NC_POLLIN | NC_POLLRDHUP | NC_POLLHUP);
	assert_int_equal(nc_close(s), 0);
}

static void socket_arguments_are_checked_like_linux(void **state)
{
	(void)state;
	struct nc_sock *s;
	assert_int_equal(nc_socket(F.client, AF_UNIX, SOCK_STREAM, 0, &s), -1);
	assert_int_equal(errno, EAFNOSUPPORT);
	assert_int_equal(nc_socket(F.client, AF_INET, SOCK_RAW, 0, &s), -1);
	assert_int_equal(errno, ESOCKTNOSUPPORT);
	assert_int_equal(
	    nc_socket(F.client, AF_INET, SOCK_STREAM, IPPROTO_UDP, &s), -1);
	assert_int_equal(errno, EPROTONOSUPPORT);
	F.forced[NC_MSG_SOCKET] = -EMFILE;
	assert_int_equal(nc_socket(F.client, AF_INET, SOCK_STREAM, 0, &s), -1);
	assert_int_equal(errno, EMFILE);
	F.forced[NC_MSG_SOCKET] = 0;
	assert_int_equal(
	    nc_socket(F.client, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, &s), 0);
	assert_int_equal(nc_fcntl(s, F_GETFD, 0), FD_CLOEXEC);
	assert_int_equal(nc_fcntl(s, F_GETFL, 0) & O_NONBLOCK, 0);
	assert_int_equal(nc_fcntl(s, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(nc_fcntl(s, F_GETFL, 0) & O_NONBLOCK, O_NONBLOCK);
	assert_int_equal(nc_fcntl(s, F_DUPFD, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(nc_close(s), 0);
}

static void every_channel_can_be_used_and_reused(void **state)
{
	(void)state;
	struct nc_sock *s[4], *extra;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 4; i++)
			s[i] = open_connected();
		assert_int_equal(
		    nc_socket(F.client, AF_INET, SOCK_STREAM, 0, &extra), -1);
		assert_int_equal(errno, EMFILE);
		for (int i = 0; i < 4; i++) {
			fake_rx_data(&F, s[i]->idx, "z", 1);
			assert_int_equal(nc_close(s[i]), 0);
		}
		assert_int_equal(fake_done_take(&F), 4);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        send_fills_tx_ring_from_free_buffers, setup, teardown),
	    cmocka_unit_test_setup_teardown(send_rings_core_only_when_asked,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        send_nonblocking_stops_when_buffers_run_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        send_blocking_returns_partial_count_at_sndtimeo, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(recv_copies_out_and_returns_buffers,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(recv_peek_does_not_consume, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        recv_waitall_gathers_buffers_then_stops_at_eof, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        recv_waitall_returns_partial_at_rcvtimeo, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        recv_nonblocking_says_eagain_and_asks_for_wakeup, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        reset_reports_error_once_then_eof_and_epipe, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        send_after_reset_reports_error_then_epipe, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        unconnected_stream_is_enotconn_and_epipe, setup, teardown),
	    cmocka_unit_test_setup_teardown(sendto_prefixes_destination_header,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        dgram_send_checks_destination_and_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(recvfrom_gives_source_and_truncates,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        ipv6_socket_sees_ipv4_source_as_mapped, setup, teardown),
	    cmocka_unit_test_setup_teardown(fionread_counts_stream_bytes, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(close_gives_every_buffer_back,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(close_follows_data_sent_before,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        blocking_connect_waits_for_the_handshake, setup, teardown),
	    cmocka_unit_test_setup_teardown(blocking_connect_reports_refusal,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        blocking_connect_gives_einprogress_at_sndtimeo, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        nonblocking_connect_completes_through_poll, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        connect_again_while_connecting_is_ealready, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        accept_blocks_until_a_connection_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        timeouts_stay_here_other_options_go_to_the_core, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(getsockname_reports_the_bound_port,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(shutdown_sets_local_halves, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        socket_arguments_are_checked_like_linux, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        every_channel_can_be_used_and_reused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
