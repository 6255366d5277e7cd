/*
 * The core in automatic mode: nc_core_run() in a forked child on the real
 * clock, sleeping in epoll on its doorbells, the control socket and the
 * fd channel. The test is the broker and a client, and it waits only on
 * its client doorbell (per the wake-up protocol in proto/client_region.h)
 * or on nng, each wait bounded: a wake-up lost on either side stalls the
 * transfer and fails the test within 5 s instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <ck_pr.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "services/netcore/client_harness.h"

static int setup(void **state)
{
	(void)state;
	th_setup_child();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(th_teardown_child(), 0); /* a clean exit */
	return 0;
}

typedef bool (*ready_fn)(struct th_client *c, int s, bool sending);

/* The client's half of the protocol: ask for a doorbell, fence, check
 * again, and only then sleep. */
static bool wait_for(struct th_client *c, int s, bool sending, ready_fn ready)
{
	for (int i = 0; i < 10000; i++) {
		if (ready(c, s, sending))
			return true;
		ck_pr_store_uint(&c->control->client_wants_wakeup, 1);
		/* Flag before the re-check. Pairs with the core's full fence
		 * between publishing and swapping client_wants_wakeup. */
		ck_pr_fence_memory();
		if (ready(c, s, sending))
			return true; /* a raised flag costs one spare ring */
		if (nc_doorbell_wait(&c->client_bell, 5000) != 1)
			return false;
	}
	return false;
}

static bool connected(struct th_client *c, int s, bool sending)
{
	(void)sending;
	return th_state(c, s).events & NC_EV_CONNECTED;
}

static bool progress(struct th_client *c, int s, bool sending)
{
	if (nc_ring_ready(&c->rx[s]) > 0)
		return true;
	bool buffer = c->spare_n > 0 || nc_ring_ready(&c->free_ring) > 0;
	return sending && buffer && nc_ring_space(&c->tx[s]) > 0;
}

static void echo_through_a_sleeping_core(size_t len, int s, struct th_client *c)
{
	uint8_t *src = malloc(len), *dst = malloc(len);
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 37 + (i >> 11));
	size_t sent = 0, got = 0;
	bool eof = false;
	while (got < len) {
		sent += th_send(c, s, src + sent, len - sent);
		got += th_recv(c, s, dst + got, len - got, &eof);
		assert_false(eof);
		if (got < len && !wait_for(c, s, sent < len, progress))
			fail_msg("stalled at %zu of %zu bytes", got, len);
	}
	assert_memory_equal(src, dst, len);
	free(src);
	free(dst);
}

static void a_megabyte_through_the_echo_service(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&c, s, th_addr("127.0.0.1", TH_ECHO_PORT)),
	                 -EINPROGRESS);
	assert_true(wait_for(&c, s, false, connected));
	echo_through_a_sleeping_core(1 << 20, s, &c);
	assert_int_equal(th_close(&c, s), 0);
	assert_int_equal(th_remove(&c), 0);
	th_client_close(&c);
}

static bool datagram(struct th_client *c, int s, bool sending)
{
	(void)sending;
	return nc_ring_ready(&c->rx[s]) > 0;
}

static void datagrams_through_the_echo_service(void **state)
{
	(void)state;
	struct th_client c;
	assert_int_equal(th_attach(&c), 0);
	int s = th_socket(&c, AF_INET6, SOCK_DGRAM);
	struct nc_msg_addr echo = th_addr("::1", TH_ECHO_PORT), from;
	for (int i = 0; i < 100; i++) {
		char out[32], in[32];
		int n = snprintf(out, sizeof(out), "datagram %d", i);
		assert_true(th_sendto(&c, s, &echo, out, (size_t)n));
		assert_true(wait_for(&c, s, false, datagram));
		assert_int_equal(th_recvfrom(&c, s, &from, in, sizeof(in)), n);
		assert_memory_equal(in, out, (size_t)n);
		assert_int_equal(from.port, TH_ECHO_PORT);
	}
	assert_int_equal(th_remove(&c), 0);
	th_client_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_megabyte_through_the_echo_service),
	    cmocka_unit_test(datagrams_through_the_echo_service),
	};
	return cmocka_run_group_tests_name("client_run", tests, setup,
	                                   teardown);
}
