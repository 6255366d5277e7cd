/*
 * UDP through the stack: 10,000 datagrams of sizes from 1 byte to the
 * largest the MTU allows, over IPv4, and 2,000 over IPv6, each echoed by
 * the core and verified byte for byte, with recvfrom naming the stack as
 * the sender. One datagram is in flight at a time, so nothing may be lost;
 * a lost one is resent at most twice and counted, and the test fails if any
 * never comes back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/testbed/testbed.h"

#define ECHO_PORT 7
#define MTU       65520

static struct nc_testbed tb;

static int setup(void **state)
{
	(void)state;
	if (nc_testbed_start(&tb, "udpecho", ECHO_PORT) != 0)
		return -1;
	return nc_testbed_enter(&tb) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	nc_testbed_stop(&tb);
	return 0;
}

/* Sizes cover both ends and a spread between, in a shuffled order. */
static size_t size_of(unsigned i, size_t max)
{
	if (i % 97 == 0)
		return 1;
	if (i % 89 == 0)
		return max;
	return 1 + ((size_t)i * 7919u) % max;
}

static void fill(uint8_t *buf, size_t len, unsigned i)
{
	for (size_t k = 0; k < len; k++)
		buf[k] = (uint8_t)(k * 31 + i);
}

/* Sends one datagram and waits for its echo; returns tries used, 0 if
 * it never came back. */
static int exchange(int fd, const struct sockaddr *to, socklen_t tolen,
                    const uint8_t *out, size_t len, uint8_t *in)
{
	for (int tries = 1; tries <= 3; tries++) {
		assert_int_equal(sendto(fd, out, len, 0, to, tolen),
		                 (ssize_t)len);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) != 1)
			continue;
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(fd, in, MTU, 0, (struct sockaddr *)&from,
		                     &fromlen);
		assert_int_equal(n, (ssize_t)len);
		assert_int_equal(fromlen, tolen);
		assert_memory_equal(&from, to, tolen);
		assert_memory_equal(in, out, len);
		return tries;
	}
	return 0;
}

static void run(int family, const char *addr, unsigned count, size_t max)
{
	struct sockaddr_storage to = {0};
	socklen_t tolen;
	if (family == AF_INET) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&to;
		v4->sin_family = AF_INET;
		v4->sin_port = htons(ECHO_PORT);
		inet_pton(AF_INET, addr, &v4->sin_addr);
		tolen = sizeof(*v4);
	} else {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&to;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(ECHO_PORT);
		inet_pton(AF_INET6, addr, &v6->sin6_addr);
		tolen = sizeof(*v6);
	}
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	int big = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	static uint8_t out[MTU], in[MTU];
	unsigned resent = 0, lost = 0;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < count; i++) {
		size_t len = size_of(i, max);
		fill(out, len, i);
		int tries =
		    exchange(fd, (struct sockaddr *)&to, tolen, out, len, in);
		lost += tries == 0;
		resent += tries > 1 ? (unsigned)tries - 1 : 0;
		bytes += len;
	}
	close(fd);
	printf("%s: %u datagrams (%llu bytes, 1..%zu each) verified; "
	       "resent %u, lost %u\n",
	       addr, count - lost, (unsigned long long)bytes, max, resent,
	       lost);
	assert_int_equal(lost, 0);
}

static void ipv4_ten_thousand_datagrams_all_verified(void **state)
{
	(void)state;
	run(AF_INET, NC_TB_STACK4, 10000, MTU - 20 - 8);
}

static void ipv6_two_thousand_datagrams_all_verified(void **state)
{
	(void)state;
	run(AF_INET6, NC_TB_STACK6, 2000, MTU - 40 - 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ipv4_ten_thousand_datagrams_all_verified),
	    cmocka_unit_test(ipv6_two_thousand_datagrams_all_verified),
	};
	return cmocka_run_group_tests_name("udp_echo", tests, setup, teardown);
}
