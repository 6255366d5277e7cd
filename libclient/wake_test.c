/*
 * Readiness and wake-ups against a fake core: what nc_poll reports for
 * each socket state, that blocking calls and nc_poll sleep on the client
 * doorbell and are woken by the core's half of the protocol (and only
 * when they asked), that a program can sleep in its own poll(2) on
 * nc_client_fd(), and that several threads blocked on different sockets
 * of one client share the single doorbell without losing a wake-up.
 *
 * Every wait is bounded: a lost wake-up fails the test (the core thread
 * checks that each blocked call returns within a few seconds) instead of
 * hanging it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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

static struct nc_sock *open_sock(int type)
{
	struct nc_sock *s;
	assert_int_equal(nc_socket(F.client, AF_INET, type, 0, &s), 0);
	return s;
}

static struct nc_sock *open_connected(void)
{
	struct nc_sock *s = open_sock(SOCK_STREAM);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 0);
	return s;
}

static short poll_one(struct nc_sock *s, short events)
{
	struct nc_pollfd pfd = {.sock = s, .events = events};
	assert_true(nc_poll(F.client, &pfd, 1, 0) >= 0);
	return pfd.revents;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
	                      .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#define ALL (NC_POLLIN | NC_POLLOUT | NC_POLLRDHUP)

/* ------------------------------------------------------------- readiness */

static void readiness_follows_the_socket_state(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_STREAM);
	/* Never connected: what Linux says for a fresh TCP socket. */
	assert_int_equal(poll_one(s, ALL), NC_POLLOUT | NC_POLLHUP);
	fake_set_state(&F, s->idx, NC_SS_CONNECTING, 0, 0);
	assert_int_equal(poll_one(s, ALL), 0);
	fake_set_state(&F, s->idx, NC_SS_CONNECTED, NC_EV_WRITABLE, 0);
	assert_int_equal(poll_one(s, ALL), NC_POLLOUT);
	assert_int_equal(poll_one(s, NC_POLLIN), 0);
	fake_rx_data(&F, s->idx, "x", 1);
	assert_int_equal(poll_one(s, ALL), NC_POLLIN | NC_POLLOUT);
	fake_rx_eof(&F, s->idx);
	fake_set_state(&F, s->idx, NC_SS_CONNECTED,
	               NC_EV_WRITABLE | NC_EV_RDHUP, 0);
	assert_int_equal(poll_one(s, ALL),
	                 NC_POLLIN | NC_POLLOUT | NC_POLLRDHUP);
	/* POLLRDHUP only when asked; POLLHUP and POLLERR always. */
	assert_int_equal(poll_one(s, NC_POLLIN), NC_POLLIN);
	fake_set_state(&F, s->idx, NC_SS_CLOSED, NC_EV_HUP | NC_EV_ERROR,
	               ECONNRESET);
	assert_int_equal(poll_one(s, 0), NC_POLLHUP | NC_POLLERR);
	assert_int_equal(poll_one(s, ALL), ALL | NC_POLLHUP | NC_POLLERR);
	assert_int_equal(nc_close(s), 0);
}

static void listener_is_readable_when_a_connection_waits(void **state)
{
	(void)state;
	struct nc_sock *l = open_sock(SOCK_STREAM);
	fake_set_state(&F, l->idx, NC_SS_LISTENING, 0, 0);
	assert_int_equal(poll_one(l, ALL), 0);
	F.states[l->idx].accept_queue = 2;
	assert_int_equal(poll_one(l, ALL), NC_POLLIN);
	assert_int_equal(nc_close(l), 0);
}

static void dgram_is_writable_while_buffers_last(void **state)
{
	(void)state;
	struct nc_sock *u = open_sock(SOCK_DGRAM);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
	assert_int_equal(poll_one(u, ALL), NC_POLLOUT);
	for (int i = 0; i < 7; i++)
		assert_int_equal(
		    nc_sendto(u, "d", 1, 0, (struct sockaddr *)&to, sizeof(to)),
		    1);
	assert_int_equal(poll_one(u, ALL), 0); /* no buffer, no slot */
	uint8_t sink[4096];
	fake_tx_take(&F, u->idx, sink, sizeof(sink), NULL);
	assert_int_equal(poll_one(u, ALL), 0); /* slots, but no buffer */
	fake_lend_free(&F, 1);
	assert_int_equal(poll_one(u, ALL), NC_POLLOUT);
	assert_int_equal(nc_close(u), 0);
}

static void handle_of_another_client_is_pollnval(void **state)
{
	(void)state;
	struct fake other;
	struct nc_client_params p;
	fake_params_small(&p);
	assert_int_equal(fake_start(&other, &p), 0);
	struct nc_sock *s;
	assert_int_equal(nc_socket(other.client, AF_INET, SOCK_DGRAM, 0, &s),
	                 0);
	struct nc_pollfd pfd[2] = {{.sock = s, .events = NC_POLLIN},
	                           {.sock = NULL, .events = NC_POLLIN}};
	assert_int_equal(nc_poll(F.client, pfd, 2, 0), 1);
	assert_int_equal(pfd[0].revents, NC_POLLNVAL);
	assert_int_equal(pfd[1].revents, 0);
	fake_stop(&other);
}

/* ------------------------------------------------------------- wake-ups */

struct feeder {
	uint32_t sock;
	int delay_ms;
	bool rang; /* the client had asked for a wake-up */
};

static void *feed_later(void *arg)
{
	struct feeder *fd = arg;
	sleep_ms(fd->delay_ms);
	fake_rx_data(&F, fd->sock, "wake", 4);
	fd->rang = fake_wake_client(&F);
	return NULL;
}

static void blocking_recv_sleeps_until_the_core_rings(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	struct feeder fd = {.sock = s->idx, .delay_ms = 100};
	pthread_t t;
	pthread_create(&t, NULL, feed_later, &fd);
	int64_t t0 = now_ms();
	char buf[8];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 4);
	pthread_join(t, NULL);
	assert_true(fd.rang);
	assert_true(now_ms() - t0 >= 90);
	assert_int_equal(nc_close(s), 0);
}

static void poll_times_out_when_nothing_happens(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLIN};
	int64_t t0 = now_ms();
	assert_int_equal(nc_poll(F.client, &pfd, 1, 100), 0);
	int64_t took = now_ms() - t0;
	assert_true(took >= 100 && took < 2000);
	/* Left armed: the core would ring for the next change. */
	assert_int_equal(F.control->client_wants_wakeup, 1);
	assert_int_equal(nc_close(s), 0);
}

static void poll_is_woken_by_the_core(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	struct feeder fd = {.sock = s->idx, .delay_ms = 50};
	pthread_t t;
	pthread_create(&t, NULL, feed_later, &fd);
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLIN};
	assert_int_equal(nc_poll(F.client, &pfd, 1, 5000), 1);
	assert_int_equal(pfd.revents, NC_POLLIN);
	pthread_join(t, NULL);
	assert_true(fd.rang);
	assert_int_equal(nc_close(s), 0);
}

static void program_can_sleep_on_the_client_fd(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLIN};
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 0);
	/* Our own poll(2) beside our own descriptors. */
	struct pollfd sys = {.fd = nc_client_fd(F.client), .events = POLLIN};
	assert_int_equal(poll(&sys, 1, 0), 0);
	fake_rx_data(&F, s->idx, "x", 1);
	assert_true(fake_wake_client(&F));
	assert_int_equal(poll(&sys, 1, 1000), 1);
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 1);
	/* nc_poll consumed the doorbell: a level-triggered loop rests. */
	assert_int_equal(poll(&sys, 1, 0), 0);
	/* And a core that was not asked does not ring. */
	char c;
	assert_int_equal(nc_recv(s, &c, 1, 0), 1);
	__atomic_store_n(&F.control->client_wants_wakeup, 0, __ATOMIC_SEQ_CST);
	fake_rx_data(&F, s->idx, "y", 1);
	assert_false(fake_wake_client(&F));
	assert_int_equal(nc_close(s), 0);
}

static void receiving_frees_rx_slots_and_tells_a_waiting_core(void **state)
{
	(void)state;
	struct nc_sock *s = open_connected();
	for (int i = 0; i < 7; i++)
		assert_int_equal(fake_rx_data(&F, s->idx, "r", 1), 0);
	assert_int_equal(fake_rx_data(&F, s->idx, "r", 1), -ENOBUFS);
	fake_core_rung(&F);
	/* The core waits for room (client-level request). */
	__atomic_store_n(&F.control->core_wants_wakeup, 1, __ATOMIC_SEQ_CST);
	char buf[16];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), 7);
	assert_true(fake_core_rung(&F));
	assert_int_equal(F.control->core_wants_wakeup, 0);
	assert_int_equal(fake_done_take(&F), 7);
	assert_int_equal(nc_close(s), 0);
}

/* --------------------------------------------------------------- threads */

#define ROUNDS 300

struct reader {
	struct nc_sock *s;
	int got;
	int failed;
};

static void *read_rounds(void *arg)
{
	struct reader *r = arg;
	struct timeval tv = {.tv_sec = 5};
	nc_setsockopt(r->s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < ROUNDS; i++) {
		char c;
		ssize_t n = nc_recv(r->s, &c, 1, 0);
		if (n != 1) {
			/* 5 s without the wake-up we were owed */
			__atomic_add_fetch(&r->failed, 1, __ATOMIC_RELAXED);
			break;
		}
		__atomic_add_fetch(&r->got, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *poll_rounds(void *arg)
{
	struct reader *r = arg;
	for (int i = 0; i < ROUNDS; i++) {
		struct nc_pollfd pfd = {.sock = r->s, .events = NC_POLLIN};
		char c;
		if (nc_poll(r->s->c, &pfd, 1, 5000) != 1 ||
		    nc_recv(r->s, &c, 1, MSG_DONTWAIT) != 1) {
			__atomic_add_fetch(&r->failed, 1, __ATOMIC_RELAXED);
			break;
		}
		__atomic_add_fetch(&r->got, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Waits until the client consumed what the socket had, feeding the core
 * side's done ring meanwhile. */
static void wait_consumed(struct nc_sock *s, const struct reader *r, int n)
{
	int64_t deadline = now_ms() + 10000;
	while (__atomic_load_n(&r->got, __ATOMIC_RELAXED) < n &&
	       __atomic_load_n(&r->failed, __ATOMIC_RELAXED) == 0 &&
	       now_ms() < deadline) {
		fake_done_take(&F);
		sched_yield();
	}
	(void)s;
}

static void threads_on_two_sockets_share_the_doorbell(void **state)
{
	(void)state;
	struct nc_sock *a = open_connected(), *b = open_connected();
	struct reader ra = {.s = a}, rb = {.s = b};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, read_rounds, &ra);
	pthread_create(&tb, NULL, poll_rounds, &rb);
	for (int i = 0; i < ROUNDS; i++) {
		/* One byte to each, one doorbell for both, in either order;
		 * sometimes while they sleep, sometimes while they run. */
		struct nc_sock *first = i & 1 ? a : b;
		struct nc_sock *second = i & 1 ? b : a;
		if (i % 3 == 0)
			sleep_ms(1);
		/* Both readers returned last round's buffers before they
		 * counted them: take them back so the pool never runs dry. */
		assert_true(fake_done_take(&F) >= 0);
		assert_int_equal(fake_rx_data(&F, first->idx, "1", 1), 0);
		assert_int_equal(fake_rx_data(&F, second->idx, "2", 1), 0);
		fake_wake_client(&F);
		wait_consumed(a, &ra, i + 1);
		wait_consumed(b, &rb, i + 1);
		if (ra.failed || rb.failed)
			break;
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(ra.failed, 0);
	assert_int_equal(rb.failed, 0);
	assert_int_equal(ra.got, ROUNDS);
	assert_int_equal(rb.got, ROUNDS);
	fake_done_take(&F);
	assert_int_equal(nc_close(a), 0);
	assert_int_equal(nc_close(b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(readiness_follows_the_socket_state,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        listener_is_readable_when_a_connection_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        dgram_is_writable_while_buffers_last, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        handle_of_another_client_is_pollnval, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        blocking_recv_sleeps_until_the_core_rings, setup, teardown),
	    cmocka_unit_test_setup_teardown(poll_times_out_when_nothing_happens,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(poll_is_woken_by_the_core, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(program_can_sleep_on_the_client_fd,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        receiving_frees_rx_slots_and_tells_a_waiting_core, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        threads_on_two_sockets_share_the_doorbell, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
