/*
 * The core in manual mode against a scripted peer, on a virtual clock.
 *
 * The test plays the phy: it writes crafted packets into the phy region and
 * reads what the stack transmits, checking every header and checksum
 * (tests/pkt). Nothing sleeps: time moves only when the test advances the
 * virtual clock, so every run sees the same packets at the same times.
 *
 * lwIP is a process-wide singleton, so one core serves every case here;
 * cases use distinct ports and addresses so they cannot interfere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "services/netcore/core.h"
#include "services/netcore/lwip/nc_lwip_port.h"
#include "tests/pkt/pkt.h"

#define ECHO_PORT 7
#define PEER4     "10.77.0.1"
#define STACK4    "10.77.0.2"
#define PEER6     "fd77::1"
#define STACK6    "fd77::2"

static struct nc_lwip_vclock clock_ms = {.now_ms = 1000};
static struct nc_region region;
static struct nc_doorbell core_bell, phy_bell;
static struct nc_core *core;
static struct nc_phy_dev phy;

/* Runs the core until it has nothing more to do right now. */
static void settle(void)
{
	for (int i = 0; i < 1000; i++)
		if (!nc_core_poll(core).again)
			return;
	fail_msg("core never settled");
}

static void advance(uint32_t ms)
{
	for (uint32_t t = 0; t < ms; t += 10) {
		clock_ms.now_ms += 10;
		settle();
	}
}

static void inject(const struct nc_pkt *p)
{
	struct nc_desc d;
	uint8_t *buf = nc_phy_dev_rx_buffer(&phy, &d);
	assert_non_null(buf);
	size_t len = nc_pkt_build(buf, d.length, p);
	assert_true(len > 0);
	nc_phy_dev_rx_commit(&phy, &d, (uint32_t)len);
	assert_int_equal(nc_phy_dev_flush(&phy), 0);
	settle();
}

/* Takes the next transmitted packet; false if there is none. The packet's
 * bytes are copied into `store` so the descriptor can go back at once. */
static bool next_packet(struct nc_pkt *out, uint8_t *store, size_t cap)
{
	struct nc_desc d;
	if (nc_phy_dev_tx(&phy, &d, 1) != 1)
		return false;
	assert_true(d.length <= cap);
	memcpy(store, nc_phy_dev_data(&phy, &d), d.length);
	nc_phy_dev_tx_done(&phy, &d);
	assert_int_equal(nc_phy_dev_flush(&phy), 0);
	assert_true(nc_pkt_parse(store, d.length, out));
	return true;
}

static uint8_t store[70000];

static struct nc_pkt expect_packet(void)
{
	struct nc_pkt p;
	assert_true(next_packet(&p, store, sizeof(store)));
	return p;
}

static void expect_silence(void)
{
	struct nc_pkt p;
	assert_false(next_packet(&p, store, sizeof(store)));
}

static struct nc_pkt tcp4(uint16_t sport, uint16_t dport, uint32_t seq,
                          uint32_t ack, uint8_t flags)
{
	struct nc_pkt p = {.family = 4,
	                   .proto = 6,
	                   .sport = sport,
	                   .dport = dport,
	                   .seq = seq,
	                   .ack = ack,
	                   .flags = flags,
	                   .window = 65535};
	nc_pkt_addr(&p, PEER4, STACK4);
	return p;
}

static int group_setup(void **state)
{
	(void)state;
	nc_lwip_clock_set(nc_lwip_vclock_read, &clock_ms);
	struct nc_phy_params params = {.ring_slots = 64,
	                               .buf_count = 128,
	                               .buf_size = 65536,
	                               .mtu = 65520};
	assert_int_equal(nc_phy_region_create(&region, &params), 0);
	assert_int_equal(nc_doorbell_create(&core_bell), 0);
	assert_int_equal(nc_doorbell_create(&phy_bell), 0);
	struct nc_core_config cfg;
	nc_core_config_default(&cfg);
	cfg.echo_port = ECHO_PORT;
	core = nc_core_create(&cfg, &region, &core_bell, &phy_bell);
	assert_non_null(core);
	assert_int_equal(nc_phy_dev_open(&phy, &region, &phy_bell, &core_bell),
	                 0);
	nc_phy_dev_request(&phy);
	settle();
	assert_int_equal(nc_phy_dev_granted(&phy), 1);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	nc_core_destroy(core);
	nc_doorbell_close(&core_bell);
	nc_doorbell_close(&phy_bell);
	nc_region_close(&region);
	return 0;
}

/* Completes a handshake from `sport`; returns the stack's next sequence. */
static uint32_t connect_from(uint16_t sport, uint32_t isn)
{
	struct nc_pkt syn = tcp4(sport, ECHO_PORT, isn, 0, NC_TH_SYN);
	syn.mss = 1460;
	inject(&syn);
	struct nc_pkt synack = expect_packet();
	assert_int_equal(synack.flags, NC_TH_SYN | NC_TH_ACK);
	assert_int_equal(synack.ack, isn + 1);
	assert_int_equal(synack.sport, ECHO_PORT);
	assert_int_equal(synack.dport, sport);
	assert_true(synack.mss > 0);
	struct nc_pkt ack =
	    tcp4(sport, ECHO_PORT, isn + 1, synack.seq + 1, NC_TH_ACK);
	inject(&ack);
	expect_silence();
	return synack.seq + 1;
}

static void handshake_data_and_ack(void **state)
{
	(void)state;
	uint32_t isn = 1000;
	uint32_t their = connect_from(40001, isn);
	struct nc_pkt data =
	    tcp4(40001, ECHO_PORT, isn + 1, their, NC_TH_ACK | NC_TH_PSH);
	data.payload = (const uint8_t *)"hello";
	data.len = 5;
	inject(&data);
	struct nc_pkt echo = expect_packet();
	assert_int_equal(echo.seq, their);
	assert_int_equal(echo.ack, isn + 6);
	assert_true(echo.flags & NC_TH_ACK);
	assert_int_equal(echo.len, 5);
	assert_memory_equal(echo.payload, "hello", 5);
	/* Our ACK of the echo ends the exchange: nothing more is sent. */
	struct nc_pkt ack =
	    tcp4(40001, ECHO_PORT, isn + 6, their + 5, NC_TH_ACK);
	inject(&ack);
	advance(1000);
	expect_silence();
}

static void retransmits_after_a_lost_segment(void **state)
{
	(void)state;
	uint32_t isn = 5000;
	uint32_t their = connect_from(40002, isn);
	struct nc_pkt data =
	    tcp4(40002, ECHO_PORT, isn + 1, their, NC_TH_ACK | NC_TH_PSH);
	data.payload = (const uint8_t *)"lost";
	data.len = 4;
	inject(&data);
	struct nc_pkt first = expect_packet();
	assert_int_equal(first.len, 4);
	/* The echo is "lost": we never ACK it. Nothing is resent early. */
	advance(200);
	expect_silence();
	uint32_t waited = 200;
	struct nc_pkt again;
	while (!next_packet(&again, store, sizeof(store))) {
		assert_true(waited < 10000);
		advance(50);
		waited += 50;
	}
	assert_int_equal(again.seq, first.seq);
	assert_int_equal(again.len, 4);
	assert_memory_equal(again.payload, "lost", 4);
	/* Acknowledged now: no third copy, however long we wait. */
	struct nc_pkt ack =
	    tcp4(40002, ECHO_PORT, isn + 5, first.seq + 4, NC_TH_ACK);
	inject(&ack);
	advance(10000);
	expect_silence();
}

static void peer_fin_is_answered_with_fin(void **state)
{
	(void)state;
	uint32_t isn = 9000;
	uint32_t their = connect_from(40003, isn);
	struct nc_pkt fin =
	    tcp4(40003, ECHO_PORT, isn + 1, their, NC_TH_ACK | NC_TH_FIN);
	inject(&fin);
	/* The echo service closes once the peer has and nothing is pending:
	 * the ACK of our FIN and the stack's own FIN may come as one. */
	struct nc_pkt p = expect_packet();
	if (!(p.flags & NC_TH_FIN))
		p = expect_packet();
	assert_true(p.flags & NC_TH_FIN);
	assert_int_equal(p.ack, isn + 2);
	assert_int_equal(p.seq, their);
	struct nc_pkt last =
	    tcp4(40003, ECHO_PORT, isn + 2, their + 1, NC_TH_ACK);
	inject(&last);
	expect_silence();
}

static void syn_to_a_closed_port_is_reset(void **state)
{
	(void)state;
	struct nc_pkt syn = tcp4(40004, 9, 77, 0, NC_TH_SYN);
	inject(&syn);
	struct nc_pkt rst = expect_packet();
	assert_true(rst.flags & NC_TH_RST);
	assert_int_equal(rst.ack, 78);
}

static void peer_reset_kills_the_connection(void **state)
{
	(void)state;
	uint32_t isn = 12000;
	uint32_t their = connect_from(40005, isn);
	struct nc_pkt rst = tcp4(40005, ECHO_PORT, isn + 1, 0, NC_TH_RST);
	inject(&rst);
	expect_silence();
	/* Data for the dead connection is answered with a reset. */
	struct nc_pkt data =
	    tcp4(40005, ECHO_PORT, isn + 1, their, NC_TH_ACK | NC_TH_PSH);
	data.payload = (const uint8_t *)"x";
	data.len = 1;
	inject(&data);
	assert_true(expect_packet().flags & NC_TH_RST);
}

static void ping_and_udp_echo_both_families(void **state)
{
	(void)state;
	struct nc_pkt ping = {.family = 4,
	                      .proto = 1,
	                      .flags = 8,
	                      .sport = 0x1234,
	                      .seq = 9,
	                      .payload = (const uint8_t *)"ping",
	                      .len = 4};
	nc_pkt_addr(&ping, PEER4, STACK4);
	inject(&ping);
	struct nc_pkt pong = expect_packet();
	assert_int_equal(pong.flags, 0); /* echo reply */
	assert_int_equal(pong.sport, 0x1234);
	assert_memory_equal(pong.payload, "ping", 4);

	struct nc_pkt udp = {.family = 6,
	                     .proto = 17,
	                     .sport = 5353,
	                     .dport = ECHO_PORT,
	                     .payload = (const uint8_t *)"datagram",
	                     .len = 8};
	nc_pkt_addr(&udp, PEER6, STACK6);
	inject(&udp);
	struct nc_pkt back = expect_packet();
	assert_int_equal(back.family, 6);
	assert_int_equal(back.dport, 5353);
	assert_int_equal(back.len, 8);
	assert_memory_equal(back.payload, "datagram", 8);
}

static void malformed_packets_are_dropped_and_counted(void **state)
{
	(void)state;
	struct nc_core_counters before, after;
	nc_core_get_counters(core, &before);
	struct nc_pkt udp = {.family = 4,
	                     .proto = 17,
	                     .sport = 1,
	                     .dport = ECHO_PORT,
	                     .payload = (const uint8_t *)"bad",
	                     .len = 3};
	nc_pkt_addr(&udp, PEER4, STACK4);
	struct nc_desc d;
	uint8_t *buf = nc_phy_dev_rx_buffer(&phy, &d);
	size_t len = nc_pkt_build(buf, d.length, &udp);
	buf[len - 1] ^= 0xff; /* breaks the UDP checksum */
	nc_phy_dev_rx_commit(&phy, &d, (uint32_t)len);
	buf = nc_phy_dev_rx_buffer(&phy, &d);
	memset(buf, 0x45, 7); /* a truncated IPv4 header */
	nc_phy_dev_rx_commit(&phy, &d, 7);
	assert_int_equal(nc_phy_dev_flush(&phy), 0);
	settle();
	expect_silence();
	nc_core_get_counters(core, &after);
	assert_int_equal(after.drop_checksum, before.drop_checksum + 1);
	assert_true(after.drop_ip_bad > before.drop_ip_bad);
	assert_int_equal(after.rx_packets, before.rx_packets + 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(handshake_data_and_ack),
	    cmocka_unit_test(retransmits_after_a_lost_segment),
	    cmocka_unit_test(peer_fin_is_answered_with_fin),
	    cmocka_unit_test(syn_to_a_closed_port_is_reset),
	    cmocka_unit_test(peer_reset_kills_the_connection),
	    cmocka_unit_test(ping_and_udp_echo_both_families),
	    cmocka_unit_test(malformed_packets_are_dropped_and_counted),
	};
	return cmocka_run_group_tests_name("core_script", tests, group_setup,
	                                   group_teardown);
}
