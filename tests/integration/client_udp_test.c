/*
 * UDP through libclient (issue 4's acceptance): a sandboxed program in an
 * empty network namespace sends 10,000 datagrams from libclient UDP sockets
 * to a kernel-side UDP echo server in the testbed's namespace: 7,500 over
 * IPv4 (to 10.77.0.1) and 2,500 over IPv6 (to fd77::1), interleaved, of
 * sizes from 1 byte to the largest a client buffer holds. The server
 * answers each with its bytes XOR 0x5c, so an answer can only come from it.
 * The client checks every answer byte for byte, its length, and that
 * recvfrom names the server's address and port exactly; the server checks
 * that each datagram comes from the stack's address and from the port the
 * client's socket reports. Both sides count datagrams and bytes and the
 * test compares the counts.
 *
 * Sizes. A datagram travels in one client buffer behind a 24-byte
 * struct nc_dgram_hdr, so with the broker's default buffer_size (16384)
 * the largest is 16360 bytes: it must go through, and 16361 must fail with
 * EMSGSIZE on both sockets without anything being sent. (The MTU, 65520,
 * is no limit here.)
 *
 * One datagram is in flight at a time, so nothing may be lost: a missing
 * answer (2 s) is resent at most twice and counted, and the test fails if
 * any datagram needed a resend.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libclient/netcore.h"
#include "proto/client_region.h"
#include "tests/integration/client_common.h"
#include "tests/testbed/testbed.h"

#define PORT        7100
#define COUNT       10000
#define BUF_SIZE    16384 /* the broker's default buffer_size */
#define MAX_DGRAM   (BUF_SIZE - sizeof(struct nc_dgram_hdr))
#define REPLY_S     2
#define TRIES       3
#define DEADLINE_MS 240000 /* under Bazel's 300 s for "medium" */
#define XOR         0x5c

static struct nc_testbed tb;
static int udp4 = -1, udp6 = -1;

static int setup(void **state)
{
	(void)state;
	if (nc_testbed_start_sockets(&tb, "cludp", 7, NULL) != 0)
		return -1;
	if (nc_testbed_enter(&tb) != 0)
		return -1;
	struct sockaddr_storage ss;
	int one = 1;
	udp4 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	udp6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (udp4 < 0 || udp6 < 0)
		return -1;
	setsockopt(udp6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	socklen_t len = ct_sockaddr(AF_INET, NC_TB_KERNEL4, PORT, &ss);
	if (ct_bind(udp4, (struct sockaddr *)&ss, len) != 0)
		return -1;
	len = ct_sockaddr(AF_INET6, NC_TB_KERNEL6, PORT, &ss);
	return ct_bind(udp6, (struct sockaddr *)&ss, len) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (udp4 >= 0)
		close(udp4);
	if (udp6 >= 0)
		close(udp6);
	nc_testbed_stop(&tb);
	return 0;
}

/* Datagram i: which family (0: IPv4, 1: IPv6), how big, what bytes. */
static int fam_of(unsigned i)
{
	return i % 4 == 3;
}

static size_t size_of(unsigned i)
{
	static const size_t edges[] = {
	    1,        2,    3,    7,    8,    9,    63,   64,   65,
	    1024,     1232, 1452, 1472, 1473, 4096, 8192, 8193, MAX_DGRAM - 1,
	    MAX_DGRAM};
	const unsigned n_edges = sizeof(edges) / sizeof(edges[0]);
	/* Each edge size four times: three over IPv4, once over IPv6. */
	if (i < 4 * n_edges)
		return edges[i / 4];
	if (i % 97 == 0)
		return 1;
	if (i % 89 == 0)
		return MAX_DGRAM;
	if (i % 3 == 0) /* plenty of small ones */
		return 1 + ((size_t)i * 7919u) % 1500;
	return 1 + ((size_t)i * 7919u) % MAX_DGRAM;
}

static uint64_t seed_of(unsigned i)
{
	return 0x75647000000ull + i;
}

/* Per family, what one side counted. */
struct counts {
	uint32_t datagrams[2];
	uint64_t bytes[2];
	uint16_t port[2]; /* client: its sockets' ports; server: sources */
};

struct report {
	struct counts c;
	uint32_t answered; /* verified answers */
	uint32_t resent, lost;
	uint32_t max_seen; /* largest datagram that made the round trip */
	int too_big[2];    /* MAX_DGRAM + 1 failed with EMSGSIZE */
	double secs;
	char problem[384];
};

static void note(struct report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct report *r, const char *fmt, ...)
{
	if (r->problem[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->problem, sizeof(r->problem), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------- the client (libclient) */

static const char *kernel_addr(int fam)
{
	return fam ? NC_TB_KERNEL6 : NC_TB_KERNEL4;
}

/* 1: answer verified; 0: no answer in time; -1: failed (noted). */
static int await_answer(struct nc_sock *s, int fam, unsigned i,
                        const uint8_t *out, size_t len, uint8_t *in,
                        struct report *r)
{
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	ssize_t n = nc_recvfrom(s, in, MAX_DGRAM + 64, 0,
	                        (struct sockaddr *)&from, &fromlen);
	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n < 0) {
		note(r, "client: #%u: recvfrom: %s", i, strerror(errno));
		return -1;
	}
	int family = fam ? AF_INET6 : AF_INET;
	if (!ct_addr_is((struct sockaddr *)&from, fromlen, family,
	                kernel_addr(fam), PORT)) {
		char text[80];
		ct_addr_str((struct sockaddr *)&from, text, sizeof(text));
		note(r,
		     "client: #%u: recvfrom says %s (len %u), not the "
		     "server",
		     i, text, (unsigned)fromlen);
		return -1;
	}
	if ((size_t)n != len) {
		note(r, "client: #%u: answer of %zd bytes to %zu", i, n, len);
		return -1;
	}
	for (size_t k = 0; k < len; k++) {
		if (in[k] != (uint8_t)(out[k] ^ XOR)) {
			note(r,
			     "client: #%u (%zu bytes): answer wrong at "
			     "byte %zu",
			     i, len, k);
			return -1;
		}
	}
	return 1;
}

static int exchange(struct nc_sock *s, int fam, unsigned i, uint8_t *out,
                    uint8_t *in, struct report *r)
{
	size_t len = size_of(i);
	ct_pattern(seed_of(i), 0, out, len);
	int family = fam ? AF_INET6 : AF_INET;
	struct sockaddr_storage to;
	socklen_t tolen = ct_sockaddr(family, kernel_addr(fam), PORT, &to);
	for (int tries = 0; tries < TRIES; tries++) {
		ssize_t n =
		    nc_sendto(s, out, len, 0, (struct sockaddr *)&to, tolen);
		if (n != (ssize_t)len) {
			note(r, "client: #%u: sendto %zu bytes: %zd (%s)", i,
			     len, n, n < 0 ? strerror(errno) : "short");
			return -1;
		}
		r->c.datagrams[fam]++;
		r->c.bytes[fam] += len;
		if (tries > 0)
			r->resent++;
		if (r->c.port[fam] == 0) {
			struct sockaddr_storage me;
			socklen_t mlen = sizeof(me);
			if (nc_getsockname(s, (struct sockaddr *)&me, &mlen) !=
			    0) {
				note(r, "client: getsockname: %s",
				     strerror(errno));
				return -1;
			}
			r->c.port[fam] = ct_addr_port((struct sockaddr *)&me);
		}
		int got = await_answer(s, fam, i, out, len, in, r);
		if (got < 0)
			return -1;
		if (got > 0) {
			r->answered++;
			if (len > r->max_seen)
				r->max_seen = (uint32_t)len;
			return 0;
		}
	}
	r->lost++;
	return 0;
}

static int client_main(void *arg, int report_fd)
{
	(void)arg;
	static struct report r;
	memset(&r, 0, sizeof(r));
	static uint8_t out[MAX_DGRAM + 64], in[MAX_DGRAM + 64];
	struct nc_client *c = NULL;
	struct nc_sock *s[2] = {NULL, NULL};
	double start = ct_now_s();
	struct timeval tv = {.tv_sec = REPLY_S};
	if (nc_client_attach(tb.broker_socket, &c) != 0) {
		note(&r, "client: attach: %s", strerror(errno));
		goto out;
	}
	for (int fam = 0; fam < 2; fam++) {
		if (nc_socket(c, fam ? AF_INET6 : AF_INET, SOCK_DGRAM, 0,
		              &s[fam]) != 0 ||
		    nc_setsockopt(s[fam], SOL_SOCKET, SO_RCVTIMEO, &tv,
		                  sizeof(tv)) != 0) {
			note(&r, "client: socket: %s", strerror(errno));
			goto out;
		}
		/* One byte too many for a buffer: refused, nothing sent. */
		struct sockaddr_storage to;
		socklen_t tolen = ct_sockaddr(fam ? AF_INET6 : AF_INET,
		                              kernel_addr(fam), PORT, &to);
		memset(out, 0, sizeof(out));
		ssize_t n = nc_sendto(s[fam], out, MAX_DGRAM + 1, 0,
		                      (struct sockaddr *)&to, tolen);
		r.too_big[fam] = n < 0 && errno == EMSGSIZE;
	}
	for (unsigned i = 0; i < COUNT; i++)
		if (exchange(s[fam_of(i)], fam_of(i), i, out, in, &r) != 0)
			break;
out:
	r.secs = ct_now_s() - start;
	for (int fam = 0; fam < 2; fam++)
		if (s[fam] != NULL && nc_close(s[fam]) != 0)
			note(&r, "client: close: %s", strerror(errno));
	if (c != NULL && nc_client_detach(c) != 0)
		note(&r, "client: detach: %s", strerror(errno));
	int err = ct_write_full(report_fd, &r, sizeof(r));
	return err == 0 && r.problem[0] == '\0' ? 0 : 1;
}

/* ------------------------------------------------- the server (kernel) */

static int serve_ready(int fd, int fam, uint8_t *buf, struct report *r)
{
	for (;;) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(fd, buf, 65536, MSG_DONTWAIT,
		                     (struct sockaddr *)&from, &fromlen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			note(r, "server: recvfrom: %s", strerror(errno));
			return -1;
		}
		uint16_t port = ct_addr_port((struct sockaddr *)&from);
		if (r->c.port[fam] == 0)
			r->c.port[fam] = port;
		if (!ct_addr_is((struct sockaddr *)&from, fromlen,
		                fam ? AF_INET6 : AF_INET,
		                fam ? NC_TB_STACK6 : NC_TB_STACK4,
		                r->c.port[fam])) {
			char text[80];
			ct_addr_str((struct sockaddr *)&from, text,
			            sizeof(text));
			note(r, "server: a datagram from %s", text);
			return -1;
		}
		r->c.datagrams[fam]++;
		r->c.bytes[fam] += (uint64_t)n;
		if ((uint32_t)n > r->max_seen)
			r->max_seen = (uint32_t)n;
		for (ssize_t k = 0; k < n; k++)
			buf[k] ^= XOR;
		if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from,
		           fromlen) != n) {
			note(r, "server: sendto: %s", strerror(errno));
			return -1;
		}
	}
}

/* Echoes until the client exits (or the deadline). */
static void serve(const struct ct_child *ch, struct report *r)
{
	static uint8_t buf[65536];
	int64_t deadline = ct_now_ms() + DEADLINE_MS;
	while (ct_now_ms() < deadline) {
		struct pollfd p[3] = {{.fd = udp4, .events = POLLIN},
		                      {.fd = udp6, .events = POLLIN},
		                      {.fd = ch->pidfd, .events = POLLIN}};
		int n = poll(p, 3, 1000);
		if (n < 0 && errno != EINTR) {
			note(r, "server: poll: %s", strerror(errno));
			return;
		}
		if (n <= 0)
			continue;
		for (int fam = 0; fam < 2; fam++)
			if (p[fam].revents &&
			    serve_ready(fam ? udp6 : udp4, fam, buf, r) != 0)
				return;
		if (p[2].revents)
			return; /* the client is done */
	}
	note(r, "server: out of time");
}

static void ten_thousand_datagrams_echoed_and_verified(void **state)
{
	(void)state;
	static struct report server, client;
	memset(&server, 0, sizeof(server));
	memset(&client, 0, sizeof(client));
	struct ct_child ch;
	assert_int_equal(ct_child_start(&ch, client_main, NULL), 0);
	serve(&ch, &server);
	int status = ct_child_finish(&ch, ct_now_ms() + 20000);
	int got = ct_read_full(ch.report_fd, &client, sizeof(client),
	                       ct_now_ms() + 1000);
	ct_child_cleanup(&ch);
	printf("client: %u answers verified of %u; sent IPv4 %u (%llu bytes) "
	       "IPv6 %u (%llu bytes) from ports %u/%u; resent %u, lost %u; "
	       "largest %u bytes; %u+1 refused: IPv4 %s, IPv6 %s; %.2f s "
	       "(%.0f round trips/s)\n",
	       client.answered, COUNT, client.c.datagrams[0],
	       (unsigned long long)client.c.bytes[0], client.c.datagrams[1],
	       (unsigned long long)client.c.bytes[1], client.c.port[0],
	       client.c.port[1], client.resent, client.lost, client.max_seen,
	       (unsigned)MAX_DGRAM, client.too_big[0] ? "EMSGSIZE" : "NO",
	       client.too_big[1] ? "EMSGSIZE" : "NO", client.secs,
	       client.secs > 0 ? client.answered / client.secs : 0.0);
	printf("server: got IPv4 %u (%llu bytes) IPv6 %u (%llu bytes) from "
	       "ports %u/%u; largest %u bytes; client exit %d, report %s\n",
	       server.c.datagrams[0], (unsigned long long)server.c.bytes[0],
	       server.c.datagrams[1], (unsigned long long)server.c.bytes[1],
	       server.c.port[0], server.c.port[1], server.max_seen, status,
	       got == 0 ? "read" : strerror(-got));
	if (server.problem[0])
		printf("%s\n", server.problem);
	if (client.problem[0])
		printf("%s\n", client.problem);
	assert_int_equal(got, 0);
	assert_string_equal(server.problem, "");
	assert_string_equal(client.problem, "");
	assert_int_equal(status, 0);
	assert_int_equal(client.answered, COUNT);
	assert_int_equal(client.lost, 0);
	assert_int_equal(client.resent, 0);
	assert_true(client.too_big[0]);
	assert_true(client.too_big[1]);
	assert_int_equal(client.max_seen, MAX_DGRAM);
	assert_int_equal(server.max_seen, MAX_DGRAM);
	for (int fam = 0; fam < 2; fam++) {
		assert_int_equal(client.c.datagrams[fam],
		                 server.c.datagrams[fam]);
		assert_int_equal(client.c.bytes[fam], server.c.bytes[fam]);
		assert_int_not_equal(client.c.port[fam], 0);
		assert_int_equal(client.c.port[fam], server.c.port[fam]);
	}
	assert_int_equal(client.c.datagrams[0], COUNT * 3 / 4);
	assert_int_equal(client.c.datagrams[1], COUNT / 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ten_thousand_datagrams_echoed_and_verified),
	};
	return cmocka_run_group_tests_name("client_udp", tests, setup,
	                                   teardown);
}
