/*
 * tools_test: more unmodified programs under the shim.
 *
 * 1. socat as a relay in the sandbox: it listens on 10.77.0.2 and
 *    forwards to a kernel-side TCP echo (python3); a kernel-side client
 *    streams 4 MiB through both hops and checks what comes back.
 * 2. iperf3 client in the sandbox against a kernel-side iperf3 server,
 *    both directions (-R), TCP; the JSON result must show bytes moved.
 * 3. iperf3 server in the sandbox, kernel-side iperf3 client, both
 *    directions.
 */
#include "shim/testing/shimtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct nc_testbed tb;
static const struct st_spawn_opts plain = {.shim = false};
static struct st_spawn_opts shim;

static int setup(void **state)
{
	(void)state;
	if (st_bed_start(&tb, "shtool", NULL) != 0)
		return -1;
	shim = (struct st_spawn_opts){.shim = true, .broker = tb.broker_socket};
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	st_bed_stop(&tb, NULL);
	return 0;
}

static const char stream_py[] =
    "import hashlib, socket, sys, threading\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), "
    "timeout=30)\n"
    "data = bytes((i * 31 + (i >> 12)) & 255 for i in range(1 << 22))\n"
    "def send():\n"
    "    s.sendall(data)\n"
    "    s.shutdown(socket.SHUT_WR)\n"
    "threading.Thread(target=send).start()\n"
    "got = bytearray()\n"
    "while True:\n"
    "    d = s.recv(65536)\n"
    "    if not d:\n"
    "        break\n"
    "    got += d\n"
    "print('relay', bytes(got) == data, len(got), "
    "hashlib.sha256(got).hexdigest())\n";

static void socat_relays_between_kernel_peers(void **state)
{
	(void)state;
	char rport[16], listen[64], target[64];
	uint16_t ep = st_port(6), rp = st_port(7);
	snprintf(rport, sizeof(rport), "%u", rp);
	snprintf(listen, sizeof(listen), "TCP-LISTEN:%u,bind=%s,reuseaddr", rp,
	         NC_TB_STACK4);
	snprintf(target, sizeof(target), "TCP:%s:%u", NC_TB_KERNEL4, ep);
	static struct st_proc echo, socat, client;
	assert_int_equal(st_start_echo(&echo, NC_TB_KERNEL4, ep), 0);
	/* One connection, no fork option: a forked child cannot use the
	 * parent's netcore sockets (docs/architecture.md, "Shim"). -d -d
	 * makes socat say when it listens. */
	char *s[] = {"/usr/bin/socat", "-d", "-d", listen, target, NULL};
	assert_int_equal(st_spawn(&socat, &shim, s), 0);
	assert_int_equal(
	    st_wait_output(&socat, "listening on", st_now_ms() + 20000), 0);
	char *cl[] = {"/usr/bin/python3", "-c",  (char *)stream_py,
	              NC_TB_STACK4,       rport, NULL};
	int64_t t0 = st_now_ms();
	assert_int_equal(st_spawn(&client, &plain, cl), 0);
	int rc = st_finish(&client, st_now_ms() + 60000);
	printf("client: exit %d after %lld ms: %s", rc,
	       (long long)(st_now_ms() - t0), client.out);
	/* socat writes its last bytes and exits at once: they must still
	 * reach the client (the core sends what a gone client queued). */
	int src = st_finish(&socat, st_now_ms() + 20000);
	printf("socat: exit %d\n%s", src, socat.out);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(client.out, "relay True 4194304"));
	assert_int_equal(src, 0);
}

static const char udp_echo_py[] =
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], int(sys.argv[2])))\n"
    "print('listening on', flush=True)\n"
    "while True:\n"
    "    d, peer = s.recvfrom(65536)\n"
    "    s.sendto(d, peer)\n";

/* Each datagram must come back whole, in one piece; a lost one is sent
 * again (UDP), at most 5 times. */
static const char udp_client_py[] =
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(1)\n"
    "dst = (sys.argv[1], int(sys.argv[2]))\n"
    "ok = 0\n"
    "for i in range(200):\n"
    "    d = bytes((i * 7 + j) & 255 for j in range(1 + i * 37))\n"
    "    for attempt in range(5):\n"
    "        s.sendto(d, dst)\n"
    "        try:\n"
    "            r = s.recv(65536)\n"
    "        except socket.timeout:\n"
    "            continue\n"
    "        ok += r == d\n"
    "        break\n"
    "print('udp', ok, 'of 200')\n";

static void socat_relays_datagrams(void **state)
{
	(void)state;
	char eport[16], rport[16], listen[64], target[64];
	uint16_t ep = st_port(12), rp = st_port(13);
	snprintf(eport, sizeof(eport), "%u", ep);
	snprintf(rport, sizeof(rport), "%u", rp);
	snprintf(listen, sizeof(listen), "UDP4-LISTEN:%u,bind=%s,reuseaddr", rp,
	         NC_TB_STACK4);
	snprintf(target, sizeof(target), "UDP4:%s:%u", NC_TB_KERNEL4, ep);
	static struct st_proc echo, socat, client;
	char *e[] = {"/usr/bin/python3", "-c",  (char *)udp_echo_py,
	             NC_TB_KERNEL4,      eport, NULL};
	assert_int_equal(st_spawn(&echo, &plain, e), 0);
	assert_int_equal(
	    st_wait_output(&echo, "listening on", st_now_ms() + 20000), 0);
	char *s[] = {"/usr/bin/socat", "-d",   "-d", "-T", "5",
	             listen,           target, NULL};
	assert_int_equal(st_spawn(&socat, &shim, s), 0);
	assert_int_equal(
	    st_wait_output(&socat, "listening on", st_now_ms() + 20000), 0);
	char *cl[] = {"/usr/bin/python3", "-c",  (char *)udp_client_py,
	              NC_TB_STACK4,       rport, NULL};
	assert_int_equal(st_spawn(&client, &plain, cl), 0);
	int rc = st_finish(&client, st_now_ms() + 60000);
	printf("udp client: exit %d: %s", rc, client.out);
	assert_int_equal(rc, 0);
	/* Every one of 200 datagrams (1 to 7,364 bytes) echoed intact
	 * through socat under the shim. */
	assert_non_null(strstr(client.out, "udp 200 of 200"));
}

/* bytes moved per the JSON's "sum_received" (0 if not found). */
static double received_bytes(const char *json)
{
	const char *sum = strstr(json, "\"sum_received\"");
	const char *b = sum ? strstr(sum, "\"bytes\":") : NULL;
	return b ? strtod(b + 8, NULL) : 0;
}

static double received_bps(const char *json)
{
	const char *sum = strstr(json, "\"sum_received\"");
	const char *b = sum ? strstr(sum, "\"bits_per_second\":") : NULL;
	return b ? strtod(b + 18, NULL) : 0;
}

/* One iperf3 run: a server (-1: one test) and a client. */
static void iperf_pair(bool server_shimmed, bool reverse, uint16_t port)
{
	char p[16];
	snprintf(p, sizeof(p), "%u", port);
	const char *saddr = server_shimmed ? NC_TB_STACK4 : NC_TB_KERNEL4;
	static struct st_proc srv, cli;
	char *s[] = {"/usr/bin/iperf3",
	             "-s",
	             "-1",
	             "--forceflush",
	             "-B",
	             (char *)saddr,
	             "-p",
	             p,
	             NULL};
	char *c[] = {"/usr/bin/iperf3",
	             "-c",
	             (char *)saddr,
	             "-p",
	             p,
	             "-t",
	             "2",
	             "-J",
	             reverse ? "-R" : "-4",
	             NULL};
	assert_int_equal(st_spawn(&srv, server_shimmed ? &shim : &plain, s), 0);
	assert_int_equal(
	    st_wait_output(&srv, "Server listening", st_now_ms() + 20000), 0);
	assert_int_equal(st_spawn(&cli, server_shimmed ? &plain : &shim, c), 0);
	int rc = st_finish(&cli, st_now_ms() + 60000);
	int src = st_finish(&srv, st_now_ms() + 20000);
	double bytes = received_bytes(cli.out);
	printf("iperf3 %s server, %s: client exit %d, server exit %d, "
	       "%.0f bytes, %.2f Gbit/s\n",
	       server_shimmed ? "sandbox" : "kernel",
	       reverse ? "server sends" : "client sends", rc, src, bytes,
	       received_bps(cli.out) / 1e9);
	if (rc != 0)
		printf("%s\n", cli.out);
	assert_int_equal(rc, 0);
	assert_int_equal(src, 0);
	assert_true(bytes > 1e6);
}

static void iperf3_client_in_the_sandbox(void **state)
{
	(void)state;
	iperf_pair(false, false, st_port(8));
	iperf_pair(false, true, st_port(9));
}

static void iperf3_server_in_the_sandbox(void **state)
{
	(void)state;
	iperf_pair(true, false, st_port(10));
	iperf_pair(true, true, st_port(11));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(socat_relays_between_kernel_peers),
	    cmocka_unit_test(socat_relays_datagrams),
	    cmocka_unit_test(iperf3_client_in_the_sandbox),
	    cmocka_unit_test(iperf3_server_in_the_sandbox),
	};
	return cmocka_run_group_tests_name("shim_tools", tests, setup,
	                                   teardown);
}
