/*
 * Restart recovery, service by service (issue 5, DESIGN.md's failure
 * table), each with a libclient program in an empty network namespace
 * (client_common) and this process as the kernel side in the testbed's
 * namespace. The phy's own case (no connection lost, every byte checked)
 * is tcp_echo_test's, which SIGKILLs it five times mid-transfer.
 *
 * broker_restart_keeps_data_and_table: the client listens, connects to a
 * kernel server, then the broker is SIGKILLed. The kernel then sends 8 MiB
 * that the client receives and checks while no broker exists (the data
 * path does not pass through it). The client then calls nc_socket() with
 * the broker still dead: the call must wait for the new broker (libclient
 * reattaches) and succeed, not fail. The new broker must know the sockets
 * made before its time (getsockname and getpeername on them, which it
 * would refuse with EBADF for a socket missing from its table), a new
 * connection and the old listener must work, and the client must get
 * exactly max_sockets channels in all, no more (a forgotten socket in the
 * quota) and no fewer (a duplicate left in the core).
 *
 * core_restart_resets_streams_and_renews_listeners: the client has a TCP
 * listener, a bound UDP socket and a connection receiving data. The core
 * is SIGKILLed and started again on the same phy region. The client,
 * blocked in nc_recv, must be woken with ECONNRESET (bounded: SO_RCVTIMEO
 * 20 s, a hang fails), after which the same listener handle accepts a new
 * kernel connection, the same UDP handle receives a datagram sent to its
 * port, and a new connection moves data both ways.
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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "libclient/netcore.h"
#include "tests/integration/client_common.h"
#include "tests/testbed/testbed.h"

#define SERVER_PORT   6000 /* kernel side */
#define LISTEN_PORT   6001 /* stack side, the client's listener */
#define UDP_PORT      6002 /* stack side, the client's UDP socket */
#define MAX_SOCKETS   8
#define DATA_BYTES    (8 * CT_MIB)
#define DATA_SEED     0x5eed0005u
#define STEP_MS       30000 /* any one step; a hang fails the test */
#define CHILD_TIMEOUT 20    /* client-side SO_RCVTIMEO/SNDTIMEO, seconds */

static struct nc_testbed tb;
static char config_path[64];
static int server = -1;

#define CK(cond)                                                               \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "client: line %d: %s (errno: %s)\n",   \
			        __LINE__, #cond, strerror(errno));             \
			return 1;                                              \
		}                                                              \
	} while (0)

/* --------------------------------------------------------------- helpers */

static int say(int fd, char step)
{
	return ct_write_full(fd, &step, 1) == 0 ? 0 : -1;
}

/* The child's next step, or a failed test (it died, or took too long). */
static void expect_step(struct ct_child *ch, char step)
{
	char got = 0;
	int err = ct_read_full(ch->report_fd, &got, 1, ct_now_ms() + STEP_MS);
	if (err != 0)
		fail_msg("waiting for client step '%c': %s (exit %d)", step,
		         strerror(-err), ct_child_finish(ch, ct_now_ms()));
	assert_int_equal(got, step);
}

static socklen_t stack_addr(uint16_t port, struct sockaddr_storage *ss)
{
	return ct_sockaddr(AF_INET, NC_TB_STACK4, port, ss);
}

static socklen_t kernel_addr(uint16_t port, struct sockaddr_storage *ss)
{
	return ct_sockaddr(AF_INET, NC_TB_KERNEL4, port, ss);
}

static void client_timeouts(struct nc_sock *s)
{
	struct timeval tv = {.tv_sec = CHILD_TIMEOUT};
	nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int client_connect(struct nc_client *c, struct nc_sock **out)
{
	struct sockaddr_storage ss;
	socklen_t len = kernel_addr(SERVER_PORT, &ss);
	if (nc_socket(c, AF_INET, SOCK_STREAM, 0, out) != 0)
		return -1;
	client_timeouts(*out);
	return nc_connect(*out, (struct sockaddr *)&ss, len);
}

static int client_listen(struct nc_client *c, int type, uint16_t port,
                         struct nc_sock **out)
{
	struct sockaddr_storage ss;
	socklen_t len = stack_addr(port, &ss);
	int one = 1;
	if (nc_socket(c, AF_INET, type, 0, out) != 0 ||
	    nc_setsockopt(*out, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    nc_bind(*out, (struct sockaddr *)&ss, len) != 0)
		return -1;
	client_timeouts(*out);
	return type == SOCK_STREAM ? nc_listen(*out, 4) : 0;
}

/* Receives `total` bytes of the pattern and checks every one. */
static int read_pattern(struct nc_sock *s, uint64_t seed, uint64_t total)
{
	static uint8_t buf[256 * 1024];
	uint64_t at = 0;
	while (at < total) {
		size_t want =
		    total - at < sizeof(buf) ? total - at : sizeof(buf);
		ssize_t n = nc_recv(s, buf, want, 0);
		if (n <= 0 ||
		    ct_pattern_check(seed, at, buf, (size_t)n) != (size_t)n)
			return -1;
		at += (uint64_t)n;
	}
	return 0;
}

static int recv_exact(struct nc_sock *s, void *buf, size_t len)
{
	size_t at = 0;
	while (at < len) {
		ssize_t n = nc_recv(s, (char *)buf + at, len - at, 0);
		if (n <= 0)
			return -1;
		at += (size_t)n;
	}
	return 0;
}

/* Kernel side: the next connection on `listener`, bounded. */
static int kernel_accept(struct ct_child *ch, int listener)
{
	if (ct_wait_fd(listener, POLLIN, ch->pidfd, ct_now_ms() + STEP_MS))
		return -1;
	int fd = accept(listener, NULL, NULL);
	if (fd >= 0)
		ct_set_timeouts(fd, CHILD_TIMEOUT);
	return fd;
}

static int kernel_send_pattern(int fd, uint64_t seed, uint64_t total)
{
	static uint8_t buf[256 * 1024];
	for (uint64_t at = 0; at < total; at += sizeof(buf)) {
		ct_pattern(seed, at, buf, sizeof(buf));
		if (ct_write_full(fd, buf, sizeof(buf)) != 0)
			return -1;
	}
	return 0;
}

/* Kernel side: connects to the stack's `port`, retrying while nothing
 * listens there yet (a core restart re-creates listeners), bounded. */
static int kernel_connect_retry(uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = stack_addr(port, &ss);
	int64_t deadline = ct_now_ms() + STEP_MS;
	for (int i = 0; ct_now_ms() < deadline && i < 3000; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ct_set_timeouts(fd, CHILD_TIMEOUT);
		if (connect(fd, (struct sockaddr *)&ss, len) == 0)
			return fd;
		close(fd);
		/* Refused: the new core is up but the listener is not back
		 * yet. Pace the retries (a refusal comes back at once). */
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* --------------------------------------------------------- broker restart */

static int broker_client(void *arg, int report)
{
	(void)arg;
	struct nc_client *c;
	struct nc_sock *l, *s, *t, *a;
	CK(nc_client_attach(tb.broker_socket, &c) == 0);
	CK(client_listen(c, SOCK_STREAM, LISTEN_PORT, &l) == 0);
	CK(client_connect(c, &s) == 0);
	CK(say(report, 'R') == 0);
	/* The broker is dead from here until we report 'D'. */
	CK(read_pattern(s, DATA_SEED, DATA_BYTES) == 0);
	CK(say(report, 'D') == 0);
	/* Waits (retrying) for the broker to come back. */
	CK(nc_socket(c, AF_INET, SOCK_STREAM, 0, &t) == 0);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	CK(nc_getsockname(l, (struct sockaddr *)&ss, &len) == 0);
	CK(ct_addr_port((struct sockaddr *)&ss) == LISTEN_PORT);
	len = sizeof(ss);
	CK(nc_getpeername(s, (struct sockaddr *)&ss, &len) == 0);
	CK(ct_addr_is((struct sockaddr *)&ss, len, AF_INET, NC_TB_KERNEL4,
	              SERVER_PORT));
	len = kernel_addr(SERVER_PORT, &ss);
	client_timeouts(t);
	CK(nc_connect(t, (struct sockaddr *)&ss, len) == 0);
	CK(nc_send(t, "new!", 4, 0) == 4);
	CK(say(report, 'T') == 0);
	CK(nc_accept(l, NULL, NULL, &a) == 0);
	char ping[4];
	client_timeouts(a);
	CK(recv_exact(a, ping, 4) == 0 && memcmp(ping, "ping", 4) == 0);
	/* Exactly max_sockets channels: l, s, t, a and four more. */
	int held = 4;
	struct nc_sock *more;
	while (held < 2 * MAX_SOCKETS &&
	       nc_socket(c, AF_INET, SOCK_DGRAM, 0, &more) == 0)
		held++;
	CK(errno == EMFILE);
	CK(held == MAX_SOCKETS);
	CK(say(report, 'E') == 0);
	CK(nc_client_detach(c) == 0);
	return 0;
}

static void broker_restart_keeps_data_and_table(void **state)
{
	(void)state;
	struct ct_child ch;
	assert_int_equal(ct_child_start(&ch, broker_client, NULL), 0);
	expect_step(&ch, 'R');
	int k1 = kernel_accept(&ch, server);
	assert_true(k1 >= 0);
	assert_int_equal(nc_testbed_kill_broker(&tb), 0);
	assert_int_equal(kernel_send_pattern(k1, DATA_SEED, DATA_BYTES), 0);
	expect_step(&ch, 'D');
	int64_t t0 = ct_now_ms();
	assert_int_equal(nc_testbed_start_broker(&tb, config_path), 0);
	int k2 = kernel_accept(&ch, server);
	assert_true(k2 >= 0);
	char got[4];
	assert_int_equal(ct_read_full(k2, got, 4, ct_now_ms() + STEP_MS), 0);
	assert_memory_equal(got, "new!", 4);
	printf("broker back; the waiting nc_socket and a new connection "
	       "done %lld ms after its start\n",
	       (long long)(ct_now_ms() - t0));
	expect_step(&ch, 'T');
	int x = kernel_connect_retry(LISTEN_PORT);
	assert_true(x >= 0);
	assert_int_equal(ct_write_full(x, "ping", 4), 0);
	expect_step(&ch, 'E');
	assert_int_equal(ct_child_finish(&ch, ct_now_ms() + STEP_MS), 0);
	ct_child_cleanup(&ch);
	close(x);
	close(k2);
	close(k1);
}

/* ----------------------------------------------------------- core restart */

static int core_client(void *arg, int report)
{
	(void)arg;
	struct nc_client *c;
	struct nc_sock *l, *u, *s, *a, *t;
	CK(nc_client_attach(tb.broker_socket, &c) == 0);
	CK(client_listen(c, SOCK_STREAM, LISTEN_PORT, &l) == 0);
	CK(client_listen(c, SOCK_DGRAM, UDP_PORT, &u) == 0);
	CK(client_connect(c, &s) == 0);
	CK(read_pattern(s, DATA_SEED, CT_MIB) == 0);
	CK(say(report, 'R') == 0);
	/* Blocked here while the core dies and comes back. */
	char byte;
	int64_t t0 = ct_now_ms();
	CK(nc_recv(s, &byte, 1, 0) == -1 && errno == ECONNRESET);
	/* After the reset: end of stream, and no more sending. */
	CK(nc_recv(s, &byte, 1, 0) == 0);
	CK(nc_send(s, "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE);
	fprintf(stderr, "client: reset %lld ms after the core was killed\n",
	        (long long)(ct_now_ms() - t0));
	CK(nc_close(s) == 0);
	CK(say(report, 'X') == 0);
	CK(nc_accept(l, NULL, NULL, &a) == 0);
	char ping[4];
	client_timeouts(a);
	CK(recv_exact(a, ping, 4) == 0 && memcmp(ping, "ping", 4) == 0);
	CK(nc_send(a, "pong", 4, 0) == 4);
	CK(say(report, 'A') == 0);
	char dgram[16];
	CK(nc_recv(u, dgram, sizeof(dgram), 0) == 5);
	CK(memcmp(dgram, "datum", 5) == 0);
	CK(say(report, 'U') == 0);
	CK(client_connect(c, &t) == 0);
	CK(read_pattern(t, DATA_SEED + 1, CT_MIB) == 0);
	CK(say(report, 'E') == 0);
	CK(nc_client_detach(c) == 0);
	return 0;
}

/* Sends a datagram to the client's UDP port until the client reports it
 * (the socket may not be back yet when the first ones arrive). */
static void udp_until_received(struct ct_child *ch)
{
	struct sockaddr_storage ss;
	socklen_t len = stack_addr(UDP_PORT, &ss);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	char got = 0;
	int err = -ETIMEDOUT;
	int64_t deadline = ct_now_ms() + STEP_MS;
	for (int i = 0; err == -ETIMEDOUT && ct_now_ms() < deadline && i < 600;
	     i++) {
		sendto(fd, "datum", 5, 0, (struct sockaddr *)&ss, len);
		err = ct_read_full(ch->report_fd, &got, 1, ct_now_ms() + 50);
	}
	close(fd);
	assert_int_equal(err, 0);
	assert_int_equal(got, 'U');
}

static void core_restart_resets_streams_and_renews_listeners(void **state)
{
	(void)state;
	struct ct_child ch;
	assert_int_equal(ct_child_start(&ch, core_client, NULL), 0);
	int k1 = kernel_accept(&ch, server);
	assert_true(k1 >= 0);
	assert_int_equal(kernel_send_pattern(k1, DATA_SEED, CT_MIB), 0);
	expect_step(&ch, 'R');
	int64_t t0 = ct_now_ms();
	assert_int_equal(nc_testbed_kill_core(&tb), 0);
	assert_int_equal(nc_testbed_start_core(&tb), 0);
	expect_step(&ch, 'X');
	printf("client saw the reset %lld ms after the kill\n",
	       (long long)(ct_now_ms() - t0));
	int x = kernel_connect_retry(LISTEN_PORT);
	assert_true(x >= 0);
	printf("listener back %lld ms after the kill\n",
	       (long long)(ct_now_ms() - t0));
	assert_int_equal(ct_write_full(x, "ping", 4), 0);
	char pong[4];
	assert_int_equal(ct_read_full(x, pong, 4, ct_now_ms() + STEP_MS), 0);
	assert_memory_equal(pong, "pong", 4);
	expect_step(&ch, 'A');
	udp_until_received(&ch);
	int k2 = kernel_accept(&ch, server);
	assert_true(k2 >= 0);
	assert_int_equal(kernel_send_pattern(k2, DATA_SEED + 1, CT_MIB), 0);
	expect_step(&ch, 'E');
	assert_int_equal(ct_child_finish(&ch, ct_now_ms() + STEP_MS), 0);
	assert_true(nc_testbed_core_alive(&tb));
	ct_child_cleanup(&ch);
	close(x);
	close(k2);
	close(k1);
}

/* ------------------------------------------------------------------ setup */

static int setup(void **state)
{
	(void)state;
	char config[128];
	snprintf(config, sizeof(config), "max_sockets %d\n", MAX_SOCKETS);
	if (ct_write_temp(config, config_path, sizeof(config_path)) != 0)
		return -1;
	if (nc_testbed_start_sockets(&tb, "recover", 7, config_path) != 0)
		return -1;
	if (nc_testbed_enter(&tb) != 0)
		return -1;
	server = ct_tcp_listen(AF_INET, NC_TB_KERNEL4, SERVER_PORT, 8);
	return server >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (server >= 0)
		close(server);
	nc_testbed_stop(&tb);
	unlink(config_path);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(broker_restart_keeps_data_and_table),
	    cmocka_unit_test(core_restart_resets_streams_and_renews_listeners),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
