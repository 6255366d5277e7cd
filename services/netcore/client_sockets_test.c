/*
 * Client sockets end to end inside one process: a test-side broker asks
 * the core over nng and the fd channel, test-side clients move bytes
 * through their rings, and lwIP talks to itself over its loopback (the
 * core's echo service on port 7, or the clients' own listeners). Manual
 * mode on a virtual clock; see client_harness.h.
 *
 * One core serves every case (lwIP is a singleton); cases use their own
 * clients and ports, and remove their clients when done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ck_pr.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "services/netcore/client_harness.h"
#include "tests/pkt/pkt.h"

static int setup(void **state)
{
	(void)state;
	th_setup();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	th_teardown();
	return 0;
}

static void done(struct th_client *c)
{
	assert_int_equal(th_remove(c), 0);
	th_client_close(c);
}

/* A connected pair through a listener of `c` on `port`: *cs connects,
 * *as is the accepted end. */
static void connected_pair(struct th_client *c, uint16_t port, int *ls, int *cs,
                           int *as)
{
	*ls = th_socket(c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(c, *ls, th_addr("127.0.0.1", port)), 0);
	assert_int_equal(th_listen(c, *ls, 4), 0);
	*cs = th_socket(c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(c, *cs, th_addr("127.0.0.1", port)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(c, *ls, NC_EV_ACCEPTABLE, 1000));
	*as = th_accept(c, *ls, NULL);
	assert_true(*as >= 0);
	assert_true(th_wait_events(c, *cs, NC_EV_CONNECTED, 1000));
}

/* Receives until EOF (bounded); returns the bytes before it. */
static size_t recv_to_eof(struct th_client *c, int s, uint8_t *out, size_t cap)
{
	size_t got = 0;
	bool eof = false;
	for (int i = 0; i < 1000 && !eof; i++) {
		got += th_recv(c, s, out + got, cap - got, &eof);
		if (!eof)
			th_advance(10);
	}
	assert_true(eof);
	return got;
}

/* ------------------------------------------------------------ cases */

static void attach_lends_tx_buffers_and_clean_states(void **state)
{
	(void)state;
	struct nc_core_counters before = th_counters();
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	/* min(ring_slots - 1, buf_count / 2) = min(15, 32) */
	assert_int_equal(nc_ring_ready(&c.free_ring), 15);
	for (int i = 0; i < TH_MAX_SOCKS; i++) {
		struct nc_sock_state st = th_state(&c, i);
		assert_int_equal(st.gen, 0);
		assert_int_equal(st.phase, NC_SS_FREE);
		assert_int_equal(st.events, 0);
	}
	struct nc_core_counters now = th_counters();
	assert_int_equal(now.clients, before.clients + 1);
	assert_int_equal(now.clients_added, before.clients_added + 1);
	done(&c);
	assert_int_equal(th_counters().clients, before.clients);
}

static void tcp_to_the_echo_service_is_byte_exact(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(s, 0);
	assert_int_equal(c.gen[s], 1);
	assert_int_equal(th_connect(&c, s, th_addr("127.0.0.1", TH_ECHO_PORT)),
	                 -EINPROGRESS);
	assert_true(
	    th_wait_events(&c, s, NC_EV_CONNECTED | NC_EV_WRITABLE, 1000));
	assert_int_equal(th_state(&c, s).phase, NC_SS_CONNECTED);
	/* Many times the buffers and rings hold: they must recycle. */
	th_transfer(&c, s, &c, s, 300 * 1000);
	th_pump(); /* the core sees what the client took on its next pass */
	assert_int_equal(th_state(&c, s).rx_queued, 0);
	assert_int_equal(th_close(&c, s), 0);
	done(&c);
}

static void tcp_over_ipv6_loopback(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET6, SOCK_STREAM);
	assert_int_equal(th_connect(&c, s, th_addr("::1", TH_ECHO_PORT)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(&c, s, NC_EV_CONNECTED, 1000));
	struct nc_msg_addr peer;
	assert_int_equal(th_name(&c, s, true, &peer), 0);
	assert_int_equal(peer.family, AF_INET6);
	assert_int_equal(peer.port, TH_ECHO_PORT);
	assert_memory_equal(peer.addr, th_addr("::1", 0).addr, 16);
	th_transfer(&c, s, &c, s, 20000);
	done(&c);
}

static void listen_accept_data_both_ways_and_eof(void **state)
{
	(void)state;
	uint32_t sockets_before = th_counters().client_sockets;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int l = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&c, l, th_addr("127.0.0.1", 7001)), 0);
	assert_int_equal(th_state(&c, l).phase, NC_SS_BOUND);
	assert_int_equal(th_listen(&c, l, 4), 0);
	assert_int_equal(th_state(&c, l).phase, NC_SS_LISTENING);
	assert_int_equal(th_accept(&c, l, NULL), -EAGAIN);

	int k = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&c, k, th_addr("127.0.0.1", 7001)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(&c, l, NC_EV_ACCEPTABLE, 1000));
	assert_int_equal(th_state(&c, l).accept_queue, 1);
	struct nc_msg_addr peer, mine;
	int a = th_accept(&c, l, &peer);
	assert_true(a >= 0 && a != l && a != k);
	assert_int_equal(th_state(&c, l).accept_queue, 0);
	assert_int_equal(th_name(&c, k, false, &mine), 0);
	assert_int_equal(peer.family, AF_INET);
	assert_int_equal(peer.port, mine.port);
	assert_memory_equal(peer.addr, th_addr("127.0.0.1", 0).addr, 4);
	assert_int_equal(th_name(&c, k, true, &peer), 0);
	assert_int_equal(peer.port, 7001);

	th_transfer(&c, k, &c, a, 50000);
	th_transfer(&c, a, &c, k, 50000);

	/* The connector shuts its sending side: the acceptor reads EOF. */
	assert_int_equal(th_shutdown(&c, k, SHUT_WR), 0);
	uint8_t buf[16];
	assert_int_equal(recv_to_eof(&c, a, buf, sizeof(buf)), 0);
	struct nc_sock_state st = th_state(&c, a);
	assert_true(st.events & NC_EV_RDHUP);
	assert_true(st.events & NC_EV_READABLE); /* EOF stays readable */
	assert_false(th_state(&c, k).events & NC_EV_WRITABLE);
	/* The other direction still flows. */
	th_transfer(&c, a, &c, k, 1000);

	assert_int_equal(th_close(&c, a), 0);
	assert_int_equal(recv_to_eof(&c, k, buf, sizeof(buf)), 0);
	assert_int_equal(th_close(&c, k), 0);
	assert_int_equal(th_close(&c, l), 0);
	th_pump();
	assert_int_equal(th_state(&c, l).phase, NC_SS_FREE);
	assert_int_equal(th_counters().client_sockets, sockets_before);
	done(&c);
}

static void close_and_shutdown_send_what_was_queued_first(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int l, k, a;
	connected_pair(&c, 7002, &l, &k, &a);
	static uint8_t data[15 * 4096], got[sizeof(data)];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);

	/* Every TX buffer enqueued, then CLOSE before the core saw any. */
	assert_int_equal(th_send(&c, k, data, sizeof(data)), sizeof(data));
	assert_int_equal(th_close(&c, k), 0);
	assert_int_equal(recv_to_eof(&c, a, got, sizeof(got)), sizeof(data));
	assert_memory_equal(got, data, sizeof(data));
	/* The closed channel is free again (its last data was taken), and
	 * a new socket gets it with the next generation. */
	uint32_t old_gen = c.gen[k];
	th_pump();
	assert_int_equal(th_state(&c, k).phase, NC_SS_FREE);
	assert_int_equal(th_socket(&c, AF_INET, SOCK_STREAM), k);
	assert_int_equal(c.gen[k], old_gen + 1);
	assert_int_equal(th_close(&c, k), 0);

	/* The same for SHUT_WR, from the accepted side. */
	int l2, k2, a2;
	connected_pair(&c, 7003, &l2, &k2, &a2);
	assert_int_equal(th_send(&c, a2, data, 8 * 4096), 8 * 4096);
	assert_int_equal(th_shutdown(&c, a2, SHUT_WR), 0);
	assert_int_equal(recv_to_eof(&c, k2, got, sizeof(got)), 8 * 4096);
	assert_memory_equal(got, data, 8 * 4096);
	done(&c);
}

static void close_waits_while_lwip_is_full(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int l, k, a;
	connected_pair(&c, 7006, &l, &k, &a);
	/* Nobody reads at a: its ring, lwIP's window and k's send buffer
	 * fill, and the core stops taking k's descriptors. */
	size_t cap = 4u << 20, sent = 0;
	uint8_t *src = malloc(cap), *dst = malloc(cap);
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < cap; i++)
		src[i] = (uint8_t)(i * 13 + (i >> 12));
	for (int idle = 0; idle < 20 && sent < cap;) {
		size_t n = th_send(&c, k, src + sent, cap - sent);
		sent += n;
		idle = n > 0 ? 0 : idle + 1;
		th_advance(10);
	}
	assert_true(sent < cap);
	assert_true(nc_ring_ready(&c.tx[k]) > 0); /* still the client's */

	/* CLOSE now: the queued tail still goes, before the FIN. */
	assert_int_equal(th_close(&c, k), 0);
	assert_int_equal(recv_to_eof(&c, a, dst, cap), sent);
	assert_memory_equal(dst, src, sent);
	free(src);
	free(dst);
	done(&c);
}

static void udp_sendto_recvfrom_with_addresses(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int u1 = th_socket(&c, AF_INET, SOCK_DGRAM);
	assert_int_equal(th_bind(&c, u1, th_addr("127.0.0.1", 7100)), 0);
	int u2 = th_socket(&c, AF_INET, SOCK_DGRAM);
	struct nc_msg_addr to = th_addr("127.0.0.1", 7100), from, u2name;
	assert_true(th_sendto(&c, u2, &to, "ping", 4));
	th_pump();
	char buf[64];
	assert_true(th_wait_events(&c, u1, NC_EV_READABLE, 100));
	assert_int_equal(th_recvfrom(&c, u1, &from, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(th_name(&c, u2, false, &u2name), 0);
	assert_int_equal(from.family, AF_INET);
	assert_int_not_equal(from.port, 0);
	assert_int_equal(from.port, u2name.port);
	assert_memory_equal(from.addr, to.addr, 4);

	/* Reply to the source, then a connected send (family 0). */
	assert_true(th_sendto(&c, u1, &from, "pong", 4));
	th_pump();
	assert_int_equal(th_recvfrom(&c, u2, &from, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "pong", 4);
	assert_int_equal(from.port, 7100);
	assert_int_equal(th_connect(&c, u2, to), 0);
	assert_true(th_state(&c, u2).events & NC_EV_CONNECTED);
	assert_true(th_sendto(&c, u2, NULL, "again", 5));
	th_pump();
	assert_int_equal(th_recvfrom(&c, u1, &from, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "again", 5);
	th_pump();
	assert_int_equal(th_state(&c, u1).rx_queued, 0);
	done(&c);
}

static void udp_ipv6_and_dual_stack(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int v6 = th_socket(&c, AF_INET6, SOCK_DGRAM);
	assert_int_equal(th_bind(&c, v6, th_addr("::", 7101)), 0);
	int s6 = th_socket(&c, AF_INET6, SOCK_DGRAM);
	int s4 = th_socket(&c, AF_INET, SOCK_DGRAM);
	struct nc_msg_addr from;
	char buf[16];

	struct nc_msg_addr to6 = th_addr("::1", 7101);
	assert_true(th_sendto(&c, s6, &to6, "six", 3));
	th_pump();
	assert_int_equal(th_recvfrom(&c, v6, &from, buf, sizeof(buf)), 3);
	assert_int_equal(from.family, AF_INET6);
	assert_memory_equal(from.addr, to6.addr, 16);

	/* "::" without IPV6_V6ONLY takes IPv4 too, shown as mapped. */
	struct nc_msg_addr to4 = th_addr("127.0.0.1", 7101);
	assert_true(th_sendto(&c, s4, &to4, "four", 4));
	th_pump();
	assert_int_equal(th_recvfrom(&c, v6, &from, buf, sizeof(buf)), 4);
	assert_int_equal(from.family, AF_INET6);
	assert_memory_equal(from.addr, th_addr("::ffff:127.0.0.1", 0).addr, 16);
	done(&c);
}

static void bad_requests_get_errors(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET, SOCK_STREAM);
	struct nc_msg_rep r;

	struct nc_msg_req q = th_req(&c, NC_MSG_BIND, s);
	q.sock_gen = c.gen[s] + 1;
	assert_int_equal(th_rpc(&q, &r), -EBADF);
	q = th_req(&c, NC_MSG_LISTEN, 99);
	assert_int_equal(th_rpc(&q, &r), -EBADF);
	q = th_req(&c, NC_MSG_CONNECT, 5); /* a channel with no socket */
	assert_int_equal(th_rpc(&q, &r), -EBADF);

	q = th_req(&c, NC_MSG_SOCKET, -1);
	q.domain = AF_UNIX;
	q.type = SOCK_STREAM;
	assert_int_equal(th_rpc(&q, &r), -EAFNOSUPPORT);
	q.domain = AF_INET;
	q.type = SOCK_RAW;
	assert_int_equal(th_rpc(&q, &r), -EPROTONOSUPPORT);
	q = th_req(&c, NC_MSG_ATTACH, -1); /* the broker's, not ours */
	assert_int_equal(th_rpc(&q, &r), -EPROTO);
	q = th_req(&c, NC_MSG_SOCKET, -1);
	q.client = 9999; /* never added, or disconnected */
	assert_int_equal(th_rpc(&q, &r), -ECONNRESET);
	q = th_req(&c, NC_MSG_SOCKET, -1);
	q.client_gen = 2;
	assert_int_equal(th_rpc(&q, &r), -ECONNRESET);

	assert_int_equal(th_bind(&c, s, th_addr("10.9.9.9", 7200)),
	                 -EADDRNOTAVAIL);
	assert_int_equal(th_bind(&c, s, th_addr("::1", 7200)), -EAFNOSUPPORT);
	assert_int_equal(th_bind(&c, s, th_addr("127.0.0.1", 7200)), 0);
	assert_int_equal(th_bind(&c, s, th_addr("127.0.0.1", 7201)), -EINVAL);
	int t = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&c, t, th_addr("127.0.0.1", 7200)),
	                 -EADDRINUSE);
	assert_int_equal(th_accept(&c, t, NULL), -EINVAL);
	int u = th_socket(&c, AF_INET, SOCK_DGRAM);
	assert_int_equal(th_listen(&c, u, 1), -EOPNOTSUPP);
	assert_int_equal(th_shutdown(&c, t, SHUT_WR), -ENOTCONN);
	struct nc_msg_addr a;
	assert_int_equal(th_name(&c, t, true, &a), -ENOTCONN);

	/* Every channel taken: EMFILE, until one closes. */
	int n = 3;
	while (th_socket(&c, AF_INET, SOCK_DGRAM) >= 0)
		n++;
	assert_int_equal(n, TH_MAX_SOCKS);
	assert_int_equal(th_socket(&c, AF_INET, SOCK_DGRAM), -EMFILE);
	assert_int_equal(th_close(&c, u), 0);
	assert_int_equal(th_close(&c, u), -EBADF);
	assert_int_equal(th_socket(&c, AF_INET, SOCK_DGRAM), u);
	done(&c);
}

static void malformed_messages_are_answered_eproto(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	struct nc_core_counters before = th_counters();
	struct nc_msg_req q = th_req(&c, NC_MSG_SOCKET, -1);
	struct nc_msg_rep r;

	nc_msg_init(&q.hdr, (enum nc_msg_type)99, 4242, sizeof(q));
	th_rpc_raw(&q, sizeof(q), &r);
	assert_int_equal(r.result, -EPROTO);
	assert_int_equal(r.hdr.id, 4242); /* the reply names the request */
	assert_int_equal(r.hdr.type, 99);

	nc_msg_init(&q.hdr, NC_MSG_SOCKET, 4243, sizeof(q));
	q.hdr.magic ^= 1;
	th_rpc_raw(&q, sizeof(q), &r);
	assert_int_equal(r.result, -EPROTO);
	assert_int_equal(r.hdr.id, 4243);

	uint8_t longer[sizeof(q) + 4] = {0};
	nc_msg_init(&q.hdr, NC_MSG_SOCKET, 4244, sizeof(longer));
	memcpy(longer, &q, sizeof(q));
	th_rpc_raw(longer, sizeof(longer), &r);
	assert_int_equal(r.result, -EPROTO);

	nc_msg_init(&q.hdr, NC_MSG_SOCKET, 4245, sizeof(q));
	q.hdr.version = NC_MSG_VERSION + 1;
	th_rpc_raw(&q, sizeof(q), &r);
	assert_int_equal(r.result, -EPROTO);
	assert_int_equal(th_counters().ctl_refused, before.ctl_refused + 4);
	assert_int_equal(th_counters().client_sockets, before.client_sockets);
	done(&c);
}

static void a_resent_request_is_answered_once(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	struct nc_msg_req q = th_req(&c, NC_MSG_SOCKET, -1);
	q.domain = AF_INET;
	q.type = SOCK_DGRAM;
	nc_msg_init(&q.hdr, NC_MSG_SOCKET, 777777, sizeof(q));
	struct nc_msg_rep first, second;
	th_rpc_raw(&q, sizeof(q), &first);
	th_rpc_raw(&q, sizeof(q), &second); /* what nng's req resends */
	assert_int_equal(first.result, 0);
	assert_memory_equal(&first, &second, sizeof(first));
	assert_int_equal(th_state(&c, 1).phase, NC_SS_FREE); /* no 2nd */
	done(&c);
}

static void connect_to_a_closed_port_is_refused(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&c, s, th_addr("127.0.0.1", 9)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(&c, s, NC_EV_ERROR | NC_EV_HUP, 1000));
	struct nc_sock_state st = th_state(&c, s);
	assert_int_equal(st.error, ECONNREFUSED);
	assert_int_equal(st.phase, NC_SS_CLOSED);
	assert_false(st.events & NC_EV_CONNECTED);
	int err = -1;
	assert_int_equal(th_getopt(&c, s, SOL_SOCKET, SO_ERROR, &err), 0);
	assert_int_equal(err, ECONNREFUSED);
	assert_int_equal(th_getopt(&c, s, SOL_SOCKET, SO_ERROR, &err), 0);
	assert_int_equal(err, 0); /* reading cleared it */
	st = th_state(&c, s);
	assert_int_equal(st.error, 0);
	assert_false(st.events & NC_EV_ERROR);

	/* The phy is down here: a SYN toward it stays unanswered. */
	int t = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&c, t, th_addr("10.77.0.1", 80)),
	                 -EINPROGRESS);
	assert_int_equal(th_connect(&c, t, th_addr("10.77.0.1", 80)),
	                 -EALREADY);
	assert_int_equal(th_state(&c, t).phase, NC_SS_CONNECTING);
	assert_int_equal(th_close(&c, t), 0);
	done(&c);
}

static void options_are_stored_bounded_and_reported(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET, SOCK_STREAM);
	int v;
	assert_int_equal(th_getopt(&c, s, IPPROTO_TCP, TCP_NODELAY, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(th_setopt(&c, s, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	assert_int_equal(th_getopt(&c, s, IPPROTO_TCP, TCP_NODELAY, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(th_setopt(&c, s, SOL_SOCKET, SO_KEEPALIVE, 1), 0);
	assert_int_equal(th_setopt(&c, s, IPPROTO_TCP, TCP_KEEPIDLE, 30), 0);
	assert_int_equal(th_getopt(&c, s, IPPROTO_TCP, TCP_KEEPIDLE, &v), 0);
	assert_int_equal(v, 30);
	assert_int_equal(th_setopt(&c, s, IPPROTO_TCP, TCP_KEEPIDLE, 0),
	                 -EINVAL);
	assert_int_equal(th_setopt(&c, s, IPPROTO_TCP, TCP_KEEPCNT, 500),
	                 -EINVAL);
	assert_int_equal(th_setopt(&c, s, SOL_SOCKET, SO_RCVBUF, 1), 0);
	assert_int_equal(th_getopt(&c, s, SOL_SOCKET, SO_RCVBUF, &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(th_setopt(&c, s, SOL_SOCKET, SO_SNDBUF, 1 << 30), 0);
	assert_int_equal(th_getopt(&c, s, SOL_SOCKET, SO_SNDBUF, &v), 0);
	assert_true(v > 2048 && v < (1 << 30));
	assert_int_equal(th_setopt(&c, s, SOL_SOCKET, SO_BROADCAST, 1),
	                 -ENOPROTOOPT);
	assert_int_equal(th_setopt(&c, s, SOL_SOCKET, SO_ERROR, 1),
	                 -ENOPROTOOPT);
	assert_int_equal(th_setopt(&c, s, IPPROTO_IPV6, IPV6_V6ONLY, 1),
	                 -ENOPROTOOPT);
	struct nc_msg_req q = th_req(&c, NC_MSG_SETSOCKOPT, s);
	q.level = SOL_SOCKET;
	q.optname = SO_REUSEADDR;
	q.optlen = 2;
	struct nc_msg_rep r;
	assert_int_equal(th_rpc(&q, &r), -EINVAL);
	int u = th_socket(&c, AF_INET, SOCK_DGRAM);
	assert_int_equal(th_setopt(&c, u, IPPROTO_TCP, TCP_NODELAY, 1),
	                 -ENOPROTOOPT);
	int six = th_socket(&c, AF_INET6, SOCK_STREAM);
	assert_int_equal(th_setopt(&c, six, IPPROTO_IPV6, IPV6_V6ONLY, 1), 0);
	assert_int_equal(th_getopt(&c, six, IPPROTO_IPV6, IPV6_V6ONLY, &v), 0);
	assert_int_equal(v, 1);
	done(&c);
}

/* Sends from c's socket k until the core stops taking (nobody reads the
 * other end); returns how much went onto the ring. */
static size_t send_until_full(struct th_client *c, int k, const uint8_t *src,
                              size_t cap)
{
	size_t sent = 0;
	for (int idle = 0; idle < 20 && sent < cap;) {
		size_t n = th_send(c, k, src + sent, cap - sent);
		sent += n;
		idle = n > 0 ? 0 : idle + 1;
		th_advance(10);
	}
	assert_true(sent < cap);
	assert_true(nc_ring_ready(&c->tx[k]) > 0); /* still queued */
	return sent;
}

static uint8_t *pattern(size_t cap, unsigned salt)
{
	uint8_t *p = malloc(cap);
	assert_non_null(p);
	for (size_t i = 0; i < cap; i++)
		p[i] = (uint8_t)(i * salt + (i >> 12));
	return p;
}

/* Connects a socket of c to the listener l of peer on `port`. */
static void connect_to(struct th_client *c, int *k, struct th_client *peer,
                       int l, uint16_t port, int *a)
{
	*k = th_socket(c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(c, *k, th_addr("127.0.0.1", port)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(peer, l, NC_EV_ACCEPTABLE, 1000));
	*a = th_accept(peer, l, NULL);
	assert_true(*a >= 0);
	assert_true(th_wait_events(c, *k, NC_EV_CONNECTED, 1000));
}

/* A process that exits right after writing (closed or not) loses nothing:
 * as with the kernel, its peer gets every byte and then the FIN, and the
 * core lets go of the region afterwards. */
static void a_gone_client_still_sends_what_it_queued(void **state)
{
	(void)state;
	struct th_client c, peer;
	assert_int_equal(th_attach(&peer), 0);
	/* The peer's mappings: ours and the core's. */
	int maps = th_client_maps();
	int l = th_socket(&peer, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&peer, l, th_addr("127.0.0.1", 7010)), 0);
	assert_int_equal(th_listen(&peer, l, 4), 0);
	size_t cap = 4u << 20;
	uint8_t *src = pattern(cap, 13), *dst = malloc(cap);
	assert_non_null(dst);
	for (int closed = 0; closed < 2; closed++) {
		int k, a;
		assert_int_equal(th_attach(&c), 0);
		connect_to(&c, &k, &peer, l, 7010, &a);
		size_t sent = send_until_full(&c, k, src, cap);
		if (closed) /* CLOSE then waits for the drain */
			assert_int_equal(th_close(&c, k), 0);
		assert_int_equal(th_remove(&c), 0);
		th_client_close(&c);
		assert_int_equal(recv_to_eof(&peer, a, dst, cap), sent);
		assert_memory_equal(dst, src, sent);
		th_pump(); /* then the core lets go of c's region */
		assert_int_equal(th_client_maps(), maps);
		assert_int_equal(th_close(&peer, a), 0);
	}
	free(src);
	free(dst);
	done(&peer);
}

/* ... but only for so long: a peer that never reads gets a reset, not a
 * FIN after a stream cut short, and the region is let go. */
static void a_gone_client_whose_peer_never_reads_is_reset(void **state)
{
	(void)state;
	struct th_client c, peer;
	assert_int_equal(th_attach(&peer), 0);
	int maps = th_client_maps();
	assert_int_equal(th_attach(&c), 0);
	int l = th_socket(&peer, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&peer, l, th_addr("127.0.0.1", 7011)), 0);
	assert_int_equal(th_listen(&peer, l, 4), 0);
	int k, a;
	connect_to(&c, &k, &peer, l, 7011, &a);
	size_t cap = 4u << 20;
	uint8_t *src = pattern(cap, 7);
	send_until_full(&c, k, src, cap);
	free(src);
	assert_int_equal(th_remove(&c), 0);
	th_client_close(&c);
	th_advance(25000); /* within the grace period: still waiting */
	assert_int_equal(th_client_maps(), maps + 1);
	assert_int_equal(th_state(&peer, a).error, 0);
	th_advance(6000); /* past it */
	assert_int_equal(th_client_maps(), maps);
	assert_true(th_wait_events(&peer, a, NC_EV_ERROR, 1000));
	assert_int_equal(th_state(&peer, a).error, ECONNRESET);
	done(&peer);
}

/* The next SYN the stack sends toward the TUN side, and when (virtual
 * ms, waiting at most until `until`); false if none came. */
static bool next_syn(uint16_t dport, uint64_t until, uint64_t *at)
{
	static uint8_t frame[65536];
	for (uint64_t now = th_now_ms(); now <= until; now = th_now_ms()) {
		size_t n;
		while ((n = th_phy_take(frame, sizeof(frame))) > 0) {
			struct nc_pkt p;
			assert_true(nc_pkt_parse(frame, n, &p));
			if (p.proto == 6 && p.dport == dport &&
			    p.flags == NC_TH_SYN) {
				*at = now;
				return true;
			}
		}
		th_advance(10);
	}
	return false;
}

/* A SYN lost on the way (the phy restarting, say) is sent again after
 * 1 s (RFC 6298), not lwIP's 3 s; the same for a lost segment once
 * connected, which the fault suite's recovery times show. */
static void a_lost_syn_is_sent_again_after_one_second(void **state)
{
	(void)state;
	th_phy_up(); /* nothing answers on the TUN side */
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int k = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&c, k, th_addr("10.77.0.1", 7012)),
	                 -EINPROGRESS);
	uint64_t first, second;
	assert_true(next_syn(7012, th_now_ms() + 100, &first));
	assert_true(next_syn(7012, first + 5000, &second));
	/* lwIP's timer ticks every 500 ms: 1 s, give or take one tick. */
	assert_in_range(second - first, 500, 1500);
	assert_int_equal(th_close(&c, k), 0);
	done(&c);
}

static void linger_zero_close_resets_the_peer(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int l, k, a;
	connected_pair(&c, 7004, &l, &k, &a);
	struct nc_msg_req q = th_req(&c, NC_MSG_SETSOCKOPT, k);
	int linger[2] = {1, 0};
	q.level = SOL_SOCKET;
	q.optname = SO_LINGER;
	q.optlen = sizeof(linger);
	memcpy(q.opt, linger, sizeof(linger));
	struct nc_msg_rep r;
	assert_int_equal(th_rpc(&q, &r), 0);
	q = th_req(&c, NC_MSG_GETSOCKOPT, k);
	q.level = SOL_SOCKET;
	q.optname = SO_LINGER;
	assert_int_equal(th_rpc(&q, &r), 0);
	assert_int_equal(r.optlen, sizeof(linger));
	assert_memory_equal(r.opt, linger, sizeof(linger));
	assert_int_equal(th_close(&c, k), 0);
	assert_true(th_wait_events(&c, a, NC_EV_ERROR, 1000));
	assert_int_equal(th_state(&c, a).error, ECONNRESET);
	done(&c);
}

static void wakeups_follow_the_protocol(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int l, k, a;
	connected_pair(&c, 7005, &l, &k, &a);
	th_pump();

	/* Core side: it asks the client to ring, sleeps, and is woken. */
	assert_true(nc_core_prepare_wait(th_core()));
	assert_int_equal(ck_pr_load_uint(&c.control->core_wants_wakeup), 1);
	assert_int_equal(th_send(&c, k, "x", 1), 1); /* kicks: rings */
	assert_int_equal(ck_pr_load_uint(&c.control->core_wants_wakeup), 0);
	assert_int_equal(nc_core_wait(th_core(), 5000), 1);

	/* Client side: it asks, the core changes something and rings. */
	nc_doorbell_drain(&c.client_bell);
	ck_pr_store_uint(&c.control->client_wants_wakeup, 1);
	/* Flag before anything else we read. Pairs with the core's full
	 * fence between publishing and swapping client_wants_wakeup. */
	ck_pr_fence_memory();
	th_pump(); /* delivers "x" to a */
	struct pollfd p = {.fd = c.client_bell.fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(ck_pr_load_uint(&c.control->client_wants_wakeup), 0);

	/* Nothing changed since: no further doorbell. */
	nc_doorbell_drain(&c.client_bell);
	th_pump();
	assert_int_equal(poll(&p, 1, 0), 0);
	done(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(attach_lends_tx_buffers_and_clean_states),
	    cmocka_unit_test(tcp_to_the_echo_service_is_byte_exact),
	    cmocka_unit_test(tcp_over_ipv6_loopback),
	    cmocka_unit_test(listen_accept_data_both_ways_and_eof),
	    cmocka_unit_test(close_and_shutdown_send_what_was_queued_first),
	    cmocka_unit_test(close_waits_while_lwip_is_full),
	    cmocka_unit_test(udp_sendto_recvfrom_with_addresses),
	    cmocka_unit_test(udp_ipv6_and_dual_stack),
	    cmocka_unit_test(bad_requests_get_errors),
	    cmocka_unit_test(malformed_messages_are_answered_eproto),
	    cmocka_unit_test(a_resent_request_is_answered_once),
	    cmocka_unit_test(connect_to_a_closed_port_is_refused),
	    cmocka_unit_test(options_are_stored_bounded_and_reported),
	    cmocka_unit_test(a_gone_client_still_sends_what_it_queued),
	    cmocka_unit_test(a_gone_client_whose_peer_never_reads_is_reset),
	    cmocka_unit_test(a_lost_syn_is_sent_again_after_one_second),
	    cmocka_unit_test(linger_zero_close_resets_the_peer),
	    cmocka_unit_test(wakeups_follow_the_protocol),
	};
	return cmocka_run_group_tests_name("client_sockets", tests, setup,
	                                   teardown);
}
