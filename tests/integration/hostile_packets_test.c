/*
 * Hostile packets into the TUN while a TCP transfer runs: truncated
 * headers, lengths that lie, bad checksums, garbage TCP options, bogus
 * fragments, random bytes, and frames longer than the stack's MTU. They are
 * written straight onto the device with a packet socket, so the kernel
 * passes them through untouched. The core must not crash, must count them
 * as drops, and the transfer must complete with every byte right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/echo_client.h"
#include "tests/pkt/pkt.h"
#include "tests/testbed/testbed.h"

#define ECHO_PORT 7
#define MIB       (1024ull * 1024)
#define BIG       65535

static struct nc_testbed tb;
static int sock = -1;
static struct sockaddr_ll dev;
static uint64_t rng = 0x243f6a8885a308d3ull;
static unsigned sent_bad_checksum, sent_total;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int setup(void **state)
{
	(void)state;
	if (nc_testbed_start(&tb, "hostile", ECHO_PORT) != 0 ||
	    nc_testbed_enter(&tb) != 0)
		return -1;
	/* A queue long enough for the whole burst: the kernel must not drop
	 * what we send before the phy reads it (a slow, sanitized phy on a
	 * busy machine would otherwise lose packets nobody counts). */
	char *argv[] = {"ip",         "link",   "set", NC_TB_TUN,
	                "txqueuelen", "100000", NULL};
	static char out[256];
	if (nc_testbed_run(&tb, argv, out, sizeof(out), 10) != 0)
		return -1;
	sock = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	dev.sll_family = AF_PACKET;
	dev.sll_ifindex = (int)if_nametoindex(NC_TB_TUN);
	dev.sll_protocol = htons(ETH_P_IP);
	return sock >= 0 && dev.sll_ifindex > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (sock >= 0)
		close(sock);
	nc_testbed_stop(&tb);
	return 0;
}

/*
 * Every PACE packets, waits (at most 2 s) until the core has taken all
 * that the phy handed it. Without this a slow core (a sanitizer build on a
 * busy machine) lets the phy run out of buffers, the phy drops part of the
 * burst before the core sees it (as it should, and counts it), and the
 * test could no longer tell which drops the core made.
 */
#define PACE 32

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void let_the_core_catch_up(void)
{
	double give_up = now_s() + 2;
	while (now_s() < give_up) {
		struct nc_phy_counters phy = nc_testbed_phy_counters(&tb);
		struct nc_phy_core_report core = nc_testbed_core_report(&tb);
		if (core.rx_packets >= phy.rx_packets)
			return;
		struct timespec ts = {0, 200 * 1000};
		nanosleep(&ts, NULL);
	}
}

static void put(const void *bytes, size_t len)
{
	ssize_t n =
	    sendto(sock, bytes, len, 0, (struct sockaddr *)&dev, sizeof(dev));
	assert_int_equal(n, (ssize_t)len);
	if (++sent_total % PACE == 0)
		let_the_core_catch_up();
}

static size_t valid_tcp(uint8_t *buf, size_t cap, int family)
{
	struct nc_pkt p = {.family = family,
	                   .proto = 6,
	                   .sport = 50000,
	                   .dport = ECHO_PORT,
	                   .seq = 1,
	                   .flags = NC_TH_SYN,
	                   .window = 1000,
	                   .payload = (const uint8_t *)"payload",
	                   .len = 7};
	if (family == 4)
		nc_pkt_addr(&p, NC_TB_KERNEL4, NC_TB_STACK4);
	else
		nc_pkt_addr(&p, NC_TB_KERNEL6, NC_TB_STACK6);
	return nc_pkt_build(buf, cap, &p);
}

static void truncated_headers(void)
{
	uint8_t b[128];
	for (size_t len = 1; len < 40; len++) {
		size_t full = valid_tcp(b, sizeof(b), len < 20 ? 4 : 6);
		assert_true(full > len);
		put(b, len);
	}
}

static void lying_lengths(void)
{
	uint8_t b[128];
	for (int family = 4; family <= 6; family += 2) {
		for (int delta = -30; delta <= 30; delta += 3) {
			size_t len = valid_tcp(b, sizeof(b), family);
			uint8_t *field = family == 4 ? b + 2 : b + 4;
			uint16_t v =
			    (uint16_t)((field[0] << 8 | field[1]) + delta);
			field[0] = (uint8_t)(v >> 8);
			field[1] = (uint8_t)v;
			put(b, len);
		}
	}
}

static void bad_checksums(void)
{
	uint8_t b[128];
	for (int i = 0; i < 50; i++) {
		size_t len = valid_tcp(b, sizeof(b), i % 2 ? 4 : 6);
		b[len - 1 - (size_t)(i % 7)] ^= 0x5a; /* payload: TCP sum */
		put(b, len);
		sent_bad_checksum++;
	}
	for (int i = 0; i < 20; i++) {
		size_t len = valid_tcp(b, sizeof(b), 4);
		b[10] ^= 0xff; /* the IPv4 header checksum */
		put(b, len);
		sent_bad_checksum++;
	}
}

static void garbage_options_and_fragments(void)
{
	uint8_t b[128];
	for (int i = 0; i < 200; i++) {
		size_t len = valid_tcp(b, sizeof(b), 4);
		uint8_t *tcp = b + 20;
		switch (i % 4) {
		case 0: /* data offset beyond the packet */
			tcp[12] = (uint8_t)(0xf0 | (tcp[12] & 0x0f));
			break;
		case 1: /* zero-length option: a classic infinite loop */
			tcp[12] = 0x60;
			tcp[20] = 2;
			tcp[21] = 0;
			break;
		case 2: /* a fragment at a random offset */
			b[6] = (uint8_t)(0x20 | (next_rand() & 0x1f));
			b[7] = (uint8_t)next_rand();
			break;
		default: /* a header length that lies */
			b[0] = (uint8_t)(0x40 | (next_rand() & 0x0f));
		}
		put(b, len);
	}
}

static void random_bytes(void)
{
	static uint8_t b[2048];
	for (int i = 0; i < 2000; i++) {
		size_t len = 1 + next_rand() % sizeof(b);
		for (size_t k = 0; k < len; k++)
			b[k] = (uint8_t)next_rand();
		if (i % 2)
			b[0] = (uint8_t)((i % 4 == 1 ? 0x40 : 0x60) |
			                 (b[0] & 0x0f));
		put(b, len);
	}
}

static void oversized_frames(void)
{
	char *argv[] = {"ip", "link", "set", NC_TB_TUN, "mtu", "65535", NULL};
	static char out[512];
	assert_int_equal(nc_testbed_run(&tb, argv, out, sizeof(out), 10), 0);
	static uint8_t b[BIG];
	memset(b, 0x45, sizeof(b));
	for (int i = 0; i < 20; i++)
		put(b, sizeof(b));
	argv[5] = "65520";
	assert_int_equal(nc_testbed_run(&tb, argv, out, sizeof(out), 10), 0);
}

static void *transfer(void *arg)
{
	struct nc_echo_run *run = arg;
	nc_echo_tcp(NC_TB_STACK4, ECHO_PORT, 64 * MIB, 0, NULL, NULL, 30, run);
	return NULL;
}

static void hostile_packets_are_dropped_and_traffic_survives(void **state)
{
	(void)state;
	struct nc_phy_counters phy_before = nc_testbed_phy_counters(&tb);
	struct nc_phy_core_report before = nc_testbed_core_report(&tb);
	struct nc_echo_run run;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, transfer, &run), 0);
	for (int round = 0; round < 5; round++) {
		truncated_headers();
		lying_lengths();
		bad_checksums();
		garbage_options_and_fragments();
		random_bytes();
	}
	oversized_frames();
	pthread_join(t, NULL);
	/* The device's queue is FIFO and the oversize frames went last: once
	 * the phy has counted all 20, it has read every packet we sent. */
	double give_up = now_s() + 30;
	while (nc_testbed_phy_counters(&tb).rx_drop_oversize -
	               phy_before.rx_drop_oversize <
	           20 &&
	       now_s() < give_up) {
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	let_the_core_catch_up();
	printf("transfer: %llu bytes verified%s%s\n",
	       (unsigned long long)run.verified, run.problem ? ": " : "",
	       run.problem ? run.problem : "");
	assert_true(nc_testbed_core_alive(&tb));
	assert_int_equal(run.error, 0);
	assert_int_equal(run.verified, 64 * MIB);

	struct nc_phy_counters phy = nc_testbed_phy_counters(&tb);
	struct nc_phy_core_report now = nc_testbed_core_report(&tb);
	uint64_t oversize = phy.rx_drop_oversize - phy_before.rx_drop_oversize;
	uint64_t checksum = now.drop_checksum - before.drop_checksum;
	uint64_t ip_bad = now.drop_ip_bad - before.drop_ip_bad;
	printf("sent %u hostile packets: oversize drops %llu, checksum drops "
	       "%llu, ip drops %llu, tcp drops %llu, udp drops %llu\n",
	       sent_total, (unsigned long long)oversize,
	       (unsigned long long)checksum, (unsigned long long)ip_bad,
	       (unsigned long long)(now.drop_tcp - before.drop_tcp),
	       (unsigned long long)(now.drop_udp - before.drop_udp));
	/* Every bad checksum reached the core and was counted there, unless
	 * the phy had no buffer for it (counted too: a full NIC drops). */
	uint64_t no_buffer =
	    phy.rx_drop_no_buffer - phy_before.rx_drop_no_buffer;
	printf("phy had no buffer for %llu packets\n",
	       (unsigned long long)no_buffer);
	assert_int_equal(oversize, 20);
	assert_true(checksum + no_buffer >= sent_bad_checksum);
	assert_true(ip_bad > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(hostile_packets_are_dropped_and_traffic_survives),
	};
	return cmocka_run_group_tests_name("hostile_packets", tests, setup,
	                                   teardown);
}
