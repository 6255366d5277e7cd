/*
 * Proves that lwIP, built with netcore's lwipopts.h and port, works: packets
 * go out through a TUN-like netif whose output callback captures them, and
 * crafted packets come in through netif->input. Every packet is checked
 * against our own parsing and checksum code, not lwIP's.
 *
 * Time is a virtual clock (nc_lwip_vclock), so timer-driven behaviour is
 * deterministic.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lwip/init.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/stats.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"

#include "services/netcore/lwip/nc_lwip_port.h"

/* ---- addresses ---- */

#define TUN_IP4  "10.0.0.2"
#define PEER_IP4 "10.0.0.1"
#define TUN_IP6  "fd00::2"
#define PEER_IP6 "fd00::1"

static const uint8_t tun4[4] = {10, 0, 0, 2};
static const uint8_t peer4[4] = {10, 0, 0, 1};
static const uint8_t tun6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0,
                                 0,    0, 0, 0, 0, 0, 0, 2};
static const uint8_t peer6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0,
                                  0,    0, 0, 0, 0, 0, 0, 1};

/* ---- byte helpers and checksums (independent of lwIP) ---- */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* One's complement sum of 16-bit big-endian words; n must be even except
 * for the last chunk summed. */
static uint32_t sum16(uint32_t acc, const uint8_t *d, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		acc += (uint32_t)(d[i] << 8 | d[i + 1]);
	if (n & 1)
		acc += (uint32_t)d[n - 1] << 8;
	return acc;
}

static uint16_t fold(uint32_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)acc;
}

/* Sum of the IPv4 or IPv6 pseudo-header. */
static uint32_t pseudo4(const uint8_t *src, const uint8_t *dst, uint8_t proto,
                        size_t len)
{
	uint32_t acc = sum16(0, src, 4);

	acc = sum16(acc, dst, 4);
	return acc + proto + (uint32_t)len;
}

static uint32_t pseudo6(const uint8_t *src, const uint8_t *dst, uint8_t next,
                        size_t len)
{
	uint32_t acc = sum16(0, src, 16);

	acc = sum16(acc, dst, 16);
	return acc + (uint32_t)(len >> 16) + (uint32_t)(len & 0xffff) + next;
}

/* A region whose checksum field is filled in sums to 0xffff. */
static bool csum_ok(uint32_t acc, const uint8_t *d, size_t n)
{
	return fold(sum16(acc, d, n)) == 0xffff;
}

static void csum_store(uint8_t *field, uint32_t acc, const uint8_t *d, size_t n)
{
	put16(field, (uint16_t)~fold(sum16(acc, d, n)));
}

/* Builds an IPv4 header (20 bytes) in front of l4len bytes at buf + 20. */
static size_t ip4_wrap(uint8_t *buf, const uint8_t *src, const uint8_t *dst,
                       uint8_t proto, size_t l4len)
{
	size_t len = 20 + l4len;

	buf[0] = 0x45;
	buf[1] = 0;
	put16(buf + 2, (uint16_t)len);
	put16(buf + 4, 0x1234);
	put16(buf + 6, 0);
	buf[8] = 64;
	buf[9] = proto;
	put16(buf + 10, 0);
	memcpy(buf + 12, src, 4);
	memcpy(buf + 16, dst, 4);
	csum_store(buf + 10, 0, buf, 20);
	return len;
}

/* Builds an IPv6 header (40 bytes) in front of l4len bytes at buf + 40. */
static size_t ip6_wrap(uint8_t *buf, const uint8_t *src, const uint8_t *dst,
                       uint8_t next, size_t l4len)
{
	memset(buf, 0, 8);
	buf[0] = 0x60;
	put16(buf + 4, (uint16_t)l4len);
	buf[6] = next;
	buf[7] = 64;
	memcpy(buf + 8, src, 16);
	memcpy(buf + 24, dst, 16);
	return 40 + l4len;
}

/* ---- the TUN-like netif ---- */

#define MAX_CAPTURED 8

struct packet {
	size_t len;
	uint8_t data[NC_LWIP_MTU];
};

static struct packet *captured; /* MAX_CAPTURED of them */
static size_t n_captured;
static size_t n_overflow;

static err_t capture(struct pbuf *p)
{
	if (n_captured == MAX_CAPTURED || p->tot_len > NC_LWIP_MTU) {
		n_overflow++;
		return ERR_OK;
	}
	struct packet *pkt = &captured[n_captured++];
	pkt->len = pbuf_copy_partial(p, pkt->data, p->tot_len, 0);
	return ERR_OK;
}

static err_t tun_output4(struct netif *nif, struct pbuf *p,
                         const ip4_addr_t *dst)
{
	(void)nif;
	(void)dst;
	return capture(p);
}

static err_t tun_output6(struct netif *nif, struct pbuf *p,
                         const ip6_addr_t *dst)
{
	(void)nif;
	(void)dst;
	return capture(p);
}

static err_t tun_init(struct netif *nif)
{
	nif->name[0] = 't';
	nif->name[1] = 'n';
	nif->mtu = NC_LWIP_MTU;
	nif->flags = 0; /* point to point: no ARP, no broadcast */
	nif->output = tun_output4;
	nif->output_ip6 = tun_output6;
	return ERR_OK;
}

static struct netif tun;
static struct nc_lwip_vclock vclock;

/* Hands a packet to lwIP as the phy driver would. */
static void inject(const uint8_t *pkt, size_t len)
{
	struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_POOL);

	assert_non_null(p);
	assert_int_equal(pbuf_take(p, pkt, (u16_t)len), ERR_OK);
	assert_int_equal(tun.input(p, &tun), ERR_OK);
}

/* Lets virtual time pass in small steps, running lwIP's timers and
 * delivering looped-back packets, as the core's event loop will. */
static void advance(uint32_t ms)
{
	while (ms > 0) {
		uint32_t step = ms < 10 ? ms : 10;

		vclock.now_ms += step;
		sys_check_timeouts();
		netif_poll_all();
		ms -= step;
	}
}

static int group_setup(void **state)
{
	(void)state;
	captured = calloc(MAX_CAPTURED, sizeof(*captured));
	if (captured == NULL)
		return -1;
	/* Start close to the 32-bit wrap: the tests cross it. */
	vclock.now_ms = UINT32_MAX - 60000;
	nc_lwip_clock_set(nc_lwip_vclock_read, &vclock);
	lwip_init();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(captured);
	captured = NULL;
	return 0;
}

static int tun_setup(void **state)
{
	ip4_addr_t addr, mask, gw;
	ip6_addr_t addr6;
	s8_t idx;

	(void)state;
	n_captured = 0;
	n_overflow = 0;
	if (!ip4addr_aton(TUN_IP4, &addr) ||
	    !ip4addr_aton("255.255.255.0", &mask) ||
	    !ip4addr_aton(PEER_IP4, &gw))
		return -1;
	if (netif_add(&tun, &addr, &mask, &gw, NULL, tun_init, netif_input) ==
	    NULL)
		return -1;
	if (!ip6addr_aton(TUN_IP6, &addr6) ||
	    netif_add_ip6_address(&tun, &addr6, &idx) != ERR_OK)
		return -1;
	/* Static address on a TUN: no duplicate address detection. */
	netif_ip6_addr_set_state(&tun, idx, IP6_ADDR_PREFERRED);
	netif_set_default(&tun);
	netif_set_link_up(&tun);
	netif_set_up(&tun);
	return 0;
}

static int tun_teardown(void **state)
{
	(void)state;
	netif_remove(&tun);
	return n_overflow == 0 ? 0 : -1;
}

/* ---- configuration ---- */

static void test_options_are_ours(void **state)
{
	(void)state;
	/* The options the issue asks for. */
	assert_int_equal(NO_SYS, 1);
	assert_int_equal(LWIP_NETCONN, 0);
	assert_int_equal(LWIP_SOCKET, 0);
	assert_int_equal(LWIP_IPV4, 1);
	assert_int_equal(LWIP_IPV6, 1);
	assert_int_equal(LWIP_TCP, 1);
	assert_int_equal(LWIP_UDP, 1);
	assert_int_equal(LWIP_ICMP, 1);
	assert_int_equal(LWIP_ICMP6, 1);
	assert_int_equal(LWIP_ARP, 0);
	assert_int_equal(LWIP_DHCP, 0);
	assert_int_equal(LWIP_TCP_KEEPALIVE, 1);
	assert_int_equal(SO_REUSE, 1);
	assert_int_equal(LWIP_CHECKSUM_CTRL_PER_NETIF, 1);
	assert_int_equal(LWIP_STATS, 1);
	assert_int_equal(MEM_ALIGNMENT, 8);

	/* A window above 64 KiB, so scaling is really needed, and on. */
	assert_int_equal(LWIP_WND_SCALE, 1);
	assert_true(TCP_WND > 0xffff);
	assert_true(TCP_RCV_SCALE > 0 && TCP_RCV_SCALE <= 14);
	assert_true((TCP_WND >> TCP_RCV_SCALE) <= 0xffff);
	assert_int_equal(sizeof(tcpwnd_size_t), 4);

	/* Large MSS that fits an IPv6 packet of the TUN MTU. */
	assert_int_equal(NC_LWIP_MTU, 65520);
	assert_int_equal(TCP_MSS, 65460);
	assert_true(TCP_SND_BUF >= 2 * TCP_MSS);

	/* Hundreds of connections. */
	assert_true(MEMP_NUM_TCP_PCB >= 400);
	assert_true(MEMP_NUM_TCP_PCB_LISTEN >= 200);
	assert_true(MEMP_NUM_UDP_PCB >= 200);

	/* 32-bit counters. */
	assert_int_equal(sizeof(lwip_stats.tcp.xmit), 4);
}

/* ---- clock ---- */

static void test_clock_hook(void **state)
{
	struct timespec ts;

	(void)state;
	assert_int_equal(sys_now(), vclock.now_ms);
	vclock.now_ms += 1234;
	assert_int_equal(sys_now(), vclock.now_ms);

	/* The default: CLOCK_MONOTONIC in milliseconds. */
	nc_lwip_clock_set(NULL, NULL);
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	uint32_t expect = (uint32_t)((uint64_t)ts.tv_sec * 1000u +
	                             (uint64_t)ts.tv_nsec / 1000000u);
	uint32_t got = sys_now();
	nc_lwip_clock_set(nc_lwip_vclock_read, &vclock);
	assert_true((uint32_t)(got - expect) < 1000);
	assert_int_equal(sys_now(), vclock.now_ms);
}

/* ---- UDP over IPv4 ---- */

static void test_udp4_output(void **state)
{
	static const char payload[] = "netcore says hello";
	const size_t plen = sizeof(payload) - 1;
	ip_addr_t peer;

	(void)state;
	assert_true(ipaddr_aton(PEER_IP4, &peer));
	struct udp_pcb *pcb = udp_new_ip_type(IPADDR_TYPE_ANY);
	assert_non_null(pcb);
	assert_int_equal(udp_bind(pcb, IP_ANY_TYPE, 5000), ERR_OK);

	struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)plen, PBUF_RAM);
	assert_non_null(p);
	assert_int_equal(pbuf_take(p, payload, (u16_t)plen), ERR_OK);
	u32_t xmit_before = lwip_stats.udp.xmit;
	assert_int_equal(udp_sendto(pcb, p, &peer, 6000), ERR_OK);
	pbuf_free(p);
	udp_remove(pcb);

	assert_int_equal(n_captured, 1);
	assert_int_equal(lwip_stats.udp.xmit, xmit_before + 1);
	const uint8_t *ip = captured[0].data;
	assert_int_equal(captured[0].len, 20 + 8 + plen);
	assert_int_equal(ip[0], 0x45);
	assert_int_equal(get16(ip + 2), 20 + 8 + plen);
	assert_int_equal(ip[8], IP_DEFAULT_TTL);
	assert_int_equal(ip[9], 17);
	assert_memory_equal(ip + 12, tun4, 4);
	assert_memory_equal(ip + 16, peer4, 4);
	assert_true(csum_ok(0, ip, 20));

	const uint8_t *udp = ip + 20;
	assert_int_equal(get16(udp), 5000);
	assert_int_equal(get16(udp + 2), 6000);
	assert_int_equal(get16(udp + 4), 8 + plen);
	assert_int_not_equal(get16(udp + 6), 0); /* checksum generated */
	assert_true(csum_ok(pseudo4(tun4, peer4, 17, 8 + plen), udp, 8 + plen));
	assert_memory_equal(udp + 8, payload, plen);
}

struct udp_inbox {
	int count;
	size_t len;
	uint8_t data[64];
	ip_addr_t from;
	u16_t port;
};

static void udp_collect(void *arg, struct udp_pcb *pcb, struct pbuf *p,
                        const ip_addr_t *addr, u16_t port)
{
	struct udp_inbox *in = arg;

	(void)pcb;
	in->count++;
	in->len = pbuf_copy_partial(p, in->data, sizeof(in->data), 0);
	ip_addr_copy(in->from, *addr);
	in->port = port;
	pbuf_free(p);
}

/* An IPv4/UDP datagram from the peer's port 6000 to our port 5000. */
static size_t build_udp4(uint8_t *buf, const char *payload, bool bad_csum)
{
	size_t plen = strlen(payload);
	uint8_t *udp = buf + 20;

	put16(udp, 6000);
	put16(udp + 2, 5000);
	put16(udp + 4, (uint16_t)(8 + plen));
	put16(udp + 6, 0);
	memcpy(udp + 8, payload, plen);
	csum_store(udp + 6, pseudo4(peer4, tun4, 17, 8 + plen), udp, 8 + plen);
	if (bad_csum)
		udp[8] ^= 0x01; /* corrupt the payload after summing */
	return ip4_wrap(buf, peer4, tun4, 17, 8 + plen);
}

static void test_udp4_input_and_checksum_control(void **state)
{
	struct udp_inbox in = {0};
	uint8_t buf[128];
	size_t len;

	(void)state;
	struct udp_pcb *pcb = udp_new_ip_type(IPADDR_TYPE_ANY);
	assert_non_null(pcb);
	assert_int_equal(udp_bind(pcb, IP_ANY_TYPE, 5000), ERR_OK);
	udp_recv(pcb, udp_collect, &in);

	len = build_udp4(buf, "ping over udp", false);
	inject(buf, len);
	assert_int_equal(in.count, 1);
	assert_int_equal(in.len, strlen("ping over udp"));
	assert_memory_equal(in.data, "ping over udp", in.len);
	assert_true(IP_IS_V4(&in.from));
	assert_memory_equal(&ip_2_ip4(&in.from)->addr, peer4, 4);
	assert_int_equal(in.port, 6000);

	/* A bad checksum is caught and counted... */
	u32_t chkerr_before = lwip_stats.udp.chkerr;
	len = build_udp4(buf, "ping over udp", true);
	inject(buf, len);
	assert_int_equal(in.count, 1);
	assert_int_equal(lwip_stats.udp.chkerr, chkerr_before + 1);

	/* ...unless checking is switched off on this netif (offload). */
	NETIF_SET_CHECKSUM_CTRL(&tun, NETIF_CHECKSUM_ENABLE_ALL &
	                                  ~NETIF_CHECKSUM_CHECK_UDP);
	inject(buf, len);
	assert_int_equal(in.count, 2);
	assert_int_equal(lwip_stats.udp.chkerr, chkerr_before + 1);
	NETIF_SET_CHECKSUM_CTRL(&tun, NETIF_CHECKSUM_ENABLE_ALL);

	udp_remove(pcb);
	assert_int_equal(n_captured, 0);
}

/* ---- ICMP echo ---- */

static void fill_echo_payload(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(0xa0 + i);
}

static void test_icmp4_echo(void **state)
{
	uint8_t buf[128];
	uint8_t *icmp = buf + 20;
	const size_t icmp_len = 8 + 56;

	(void)state;
	icmp[0] = 8; /* echo request */
	icmp[1] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 4, 0xbeef); /* identifier */
	put16(icmp + 6, 7);      /* sequence */
	fill_echo_payload(icmp + 8, icmp_len - 8);
	csum_store(icmp + 2, 0, icmp, icmp_len);
	size_t len = ip4_wrap(buf, peer4, tun4, 1, icmp_len);

	u32_t xmit_before = lwip_stats.icmp.xmit;
	inject(buf, len);

	assert_int_equal(n_captured, 1);
	assert_int_equal(lwip_stats.icmp.xmit, xmit_before + 1);
	const uint8_t *ip = captured[0].data;
	assert_int_equal(captured[0].len, len);
	assert_int_equal(ip[0], 0x45);
	assert_int_equal(ip[9], 1);
	assert_memory_equal(ip + 12, tun4, 4);
	assert_memory_equal(ip + 16, peer4, 4);
	assert_true(csum_ok(0, ip, 20));
	const uint8_t *reply = ip + 20;
	assert_int_equal(reply[0], 0); /* echo reply */
	assert_int_equal(reply[1], 0);
	assert_int_equal(get16(reply + 4), 0xbeef);
	assert_int_equal(get16(reply + 6), 7);
	assert_memory_equal(reply + 8, icmp + 8, icmp_len - 8);
	assert_true(csum_ok(0, reply, icmp_len));
}

static void test_icmp6_echo(void **state)
{
	uint8_t buf[128];
	uint8_t *icmp = buf + 40;
	const size_t icmp_len = 8 + 32;

	(void)state;
	icmp[0] = 128; /* echo request */
	icmp[1] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 4, 0x6666);
	put16(icmp + 6, 42);
	fill_echo_payload(icmp + 8, icmp_len - 8);
	csum_store(icmp + 2, pseudo6(peer6, tun6, 58, icmp_len), icmp,
	           icmp_len);
	size_t len = ip6_wrap(buf, peer6, tun6, 58, icmp_len);

	inject(buf, len);

	/* Exactly the reply: no neighbour solicitation, no MLD report. */
	assert_int_equal(n_captured, 1);
	const uint8_t *ip = captured[0].data;
	assert_int_equal(captured[0].len, len);
	assert_int_equal(ip[0] >> 4, 6);
	assert_int_equal(get16(ip + 4), icmp_len);
	assert_int_equal(ip[6], 58);
	assert_memory_equal(ip + 8, tun6, 16);
	assert_memory_equal(ip + 24, peer6, 16);
	const uint8_t *reply = ip + 40;
	assert_int_equal(reply[0], 129); /* echo reply */
	assert_int_equal(reply[1], 0);
	assert_int_equal(get16(reply + 4), 0x6666);
	assert_int_equal(get16(reply + 6), 42);
	assert_memory_equal(reply + 8, icmp + 8, icmp_len - 8);
	assert_true(
	    csum_ok(pseudo6(tun6, peer6, 58, icmp_len), reply, icmp_len));
}

/* ---- TCP ---- */

struct syn_info {
	uint16_t sport, dport;
	uint32_t seq;
	uint16_t window;
	int mss;    /* -1: option absent */
	int wscale; /* -1: option absent */
	bool sack_ok;
	bool csum_ok;
};

/* Parses a captured SYN (IPv4 or IPv6) into info; fails on anything else. */
static void parse_syn(const struct packet *pkt, struct syn_info *info)
{
	const uint8_t *ip = pkt->data;
	const uint8_t *tcp;
	size_t tcp_len;
	uint32_t pseudo;

	if (ip[0] >> 4 == 4) {
		assert_int_equal(ip[9], 6);
		tcp = ip + 20;
		tcp_len = pkt->len - 20;
		pseudo = pseudo4(ip + 12, ip + 16, 6, tcp_len);
	} else {
		assert_int_equal(ip[0] >> 4, 6);
		assert_int_equal(ip[6], 6);
		tcp = ip + 40;
		tcp_len = pkt->len - 40;
		pseudo = pseudo6(ip + 8, ip + 24, 6, tcp_len);
	}
	assert_int_equal(tcp[13], 0x02); /* SYN and nothing else */
	size_t doff = (size_t)(tcp[12] >> 4) * 4;
	assert_true(doff >= 20 && doff <= tcp_len);

	memset(info, 0, sizeof(*info));
	info->sport = get16(tcp);
	info->dport = get16(tcp + 2);
	info->seq = get32(tcp + 4);
	info->window = get16(tcp + 14);
	info->mss = -1;
	info->wscale = -1;
	info->csum_ok = csum_ok(pseudo, tcp, tcp_len);
	for (size_t i = 20; i < doff;) {
		uint8_t kind = tcp[i];

		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		assert_true(i + 1 < doff);
		uint8_t olen = tcp[i + 1];
		assert_true(olen >= 2 && i + olen <= doff);
		if (kind == 2 && olen == 4)
			info->mss = get16(tcp + i + 2);
		else if (kind == 3 && olen == 3)
			info->wscale = tcp[i + 2];
		else if (kind == 4 && olen == 2)
			info->sack_ok = true;
		i += olen;
	}
}

static uint32_t fixed_rand(void *ctx)
{
	return *(const uint32_t *)ctx;
}

static void check_syn_options(u8_t type, const char *peer_addr,
                              uint16_t expect_mss)
{
	uint32_t isn = 0x13572468;
	ip_addr_t peer;
	struct syn_info syn;

	assert_true(ipaddr_aton(peer_addr, &peer));
	struct tcp_pcb *pcb = tcp_new_ip_type(type);
	assert_non_null(pcb);
	/* The ISN comes from our random source (LWIP_HOOK_TCP_ISN). */
	nc_lwip_rand_set(fixed_rand, &isn);
	err_t err = tcp_connect(pcb, &peer, 80, NULL);
	nc_lwip_rand_set(NULL, NULL);
	assert_int_equal(err, ERR_OK);

	assert_int_equal(n_captured, 1);
	parse_syn(&captured[0], &syn);
	tcp_abort(pcb);

	assert_true(syn.csum_ok);
	assert_int_equal(syn.dport, 80);
	/* lwIP sends its SYN with sequence number iss - 1. */
	assert_int_equal(syn.seq, isn - 1);
	assert_int_equal(syn.mss, expect_mss);
	/* Window scaling offered with our shift; the SYN's own window is
	 * never scaled. */
	assert_int_equal(syn.wscale, TCP_RCV_SCALE);
	assert_int_equal(syn.window, 0xffff);
	assert_true(syn.sack_ok);
}

static void test_tcp4_syn_options(void **state)
{
	(void)state;
	/* Capped by the netif MTU (65520 - 40) and by TCP_MSS. */
	check_syn_options(IPADDR_TYPE_V4, PEER_IP4, TCP_MSS);
}

static void test_tcp6_syn_options(void **state)
{
	(void)state;
	check_syn_options(IPADDR_TYPE_V6, PEER_IP6, NC_LWIP_MTU - 40 - 20);
}

static void test_tcp_retransmission_follows_the_clock(void **state)
{
	ip_addr_t peer;
	struct syn_info first, again;

	(void)state;
	/* Cross the 32-bit wrap of the clock during the wait. */
	assert_true(vclock.now_ms < UINT32_MAX - 1500);
	vclock.now_ms = UINT32_MAX - 1500;
	sys_check_timeouts();

	assert_true(ipaddr_aton(PEER_IP4, &peer));
	struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
	assert_non_null(pcb);
	assert_int_equal(tcp_connect(pcb, &peer, 443, NULL), ERR_OK);
	assert_int_equal(n_captured, 1);

	/* Frozen time: no timer may fire, however often lwIP is polled. */
	for (int i = 0; i < 1000; i++)
		sys_check_timeouts();
	assert_int_equal(n_captured, 1);

	/* The SYN is retransmitted after lwIP's initial RTO of 3 s (its slow
	 * timer ticks every 500 ms), measured on the virtual clock. */
	uint32_t waited = 0;
	while (n_captured == 1 && waited < 10000) {
		advance(100);
		waited += 100;
	}
	assert_int_equal(n_captured, 2);
	assert_in_range(waited, 2500, 4000);
	assert_true(vclock.now_ms < 10000); /* the clock did wrap */

	parse_syn(&captured[0], &first);
	parse_syn(&captured[1], &again);
	assert_int_equal(again.seq, first.seq);
	assert_int_equal(again.sport, first.sport);
	tcp_abort(pcb);
}

/* Bulk transfer over the loopback interface (::1), in full-size segments:
 * exercises segmentation, window scaling, the heap and the checksums. */

#define XFER_BYTES (8u * 1024 * 1024)

struct xfer {
	struct tcp_pcb *client;
	struct tcp_pcb *server;
	size_t sent;
	size_t received;
	size_t max_segment;
	bool corrupt;
	bool server_saw_fin;
};

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i ^ (i >> 8) ^ ((i >> 16) * 7));
}

static err_t xfer_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
                       err_t err)
{
	struct xfer *x = arg;

	if (err != ERR_OK || p == NULL) {
		if (p == NULL) {
			x->server_saw_fin = true;
			tcp_arg(pcb, NULL);
			tcp_recv(pcb, NULL);
			x->server = NULL;
			return tcp_close(pcb);
		}
		pbuf_free(p);
		return ERR_OK;
	}
	if (p->tot_len > x->max_segment)
		x->max_segment = p->tot_len;
	for (struct pbuf *q = p; q != NULL; q = q->next) {
		const uint8_t *d = q->payload;

		for (u16_t i = 0; i < q->len; i++) {
			if (d[i] != pattern(x->received + i))
				x->corrupt = true;
		}
		x->received += q->len;
	}
	tcp_recved(pcb, p->tot_len);
	pbuf_free(p);
	return ERR_OK;
}

static err_t xfer_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct xfer *x = arg;

	if (err != ERR_OK || pcb == NULL)
		return ERR_VAL;
	x->server = pcb;
	tcp_arg(pcb, x);
	tcp_recv(pcb, xfer_recv);
	return ERR_OK;
}

static void xfer_push(struct xfer *x)
{
	static uint8_t chunk[TCP_MSS];
	bool wrote = false;

	while (x->sent < XFER_BYTES) {
		size_t n = tcp_sndbuf(x->client);

		if (n > tcp_mss(x->client))
			n = tcp_mss(x->client);
		if (n > XFER_BYTES - x->sent)
			n = XFER_BYTES - x->sent;
		if (n == 0 || tcp_sndqueuelen(x->client) >= TCP_SND_QUEUELEN)
			break;
		for (size_t i = 0; i < n; i++)
			chunk[i] = pattern(x->sent + i);
		if (tcp_write(x->client, chunk, (u16_t)n,
		              TCP_WRITE_FLAG_COPY) != ERR_OK)
			break;
		x->sent += n;
		wrote = true;
	}
	if (wrote)
		tcp_output(x->client);
}

static void test_tcp_bulk_transfer_loopback6(void **state)
{
	struct xfer x = {0};
	ip_addr_t loop6;

	(void)state;
	u32_t drop_before = lwip_stats.tcp.drop;
	u32_t chkerr_before = lwip_stats.tcp.chkerr;

	struct tcp_pcb *lpcb = tcp_new_ip_type(IPADDR_TYPE_V6);
	assert_non_null(lpcb);
	assert_int_equal(tcp_bind(lpcb, IP6_ADDR_ANY, 7000), ERR_OK);
	struct tcp_pcb *listener = tcp_listen_with_backlog(lpcb, 4);
	assert_non_null(listener);
	tcp_arg(listener, &x);
	tcp_accept(listener, xfer_accept);

	assert_true(ipaddr_aton("::1", &loop6));
	x.client = tcp_new_ip_type(IPADDR_TYPE_V6);
	assert_non_null(x.client);
	assert_int_equal(tcp_connect(x.client, &loop6, 7000, NULL), ERR_OK);

	for (int i = 0; i < 100000 && x.received < XFER_BYTES; i++) {
		if (x.client->state == ESTABLISHED)
			xfer_push(&x);
		netif_poll_all();
		vclock.now_ms += 1;
		sys_check_timeouts();
	}
	assert_false(x.corrupt);
	assert_int_equal(x.received, XFER_BYTES);

	/* Full-size segments: the loopback netif has no MTU, so only
	 * TCP_MSS bounds them, and they still fit a 65520-byte packet. */
	assert_int_equal(x.client->mss, TCP_MSS);
	assert_int_equal(x.max_segment, TCP_MSS);
	/* Both ends negotiated window scaling and used windows > 64 KiB. */
	assert_int_equal(x.client->snd_scale, TCP_RCV_SCALE);
	assert_int_equal(x.client->rcv_scale, TCP_RCV_SCALE);
	assert_true(x.client->snd_wnd_max > 0xffff);
	assert_int_equal(lwip_stats.tcp.drop, drop_before);
	assert_int_equal(lwip_stats.tcp.chkerr, chkerr_before);

	/* Orderly close. */
	assert_int_equal(tcp_close(x.client), ERR_OK);
	for (int i = 0; i < 1000 && !x.server_saw_fin; i++) {
		netif_poll_all();
		vclock.now_ms += 1;
		sys_check_timeouts();
	}
	assert_true(x.server_saw_fin);
	netif_poll_all();
	assert_int_equal(tcp_close(listener), ERR_OK);
	/* Let TIME_WAIT (2 * MSL) run out so no pcb outlives the test. */
	advance(2 * 60000 + 1000);
	assert_int_equal(n_captured, 0); /* nothing leaked onto the TUN */
}

/* ---- assertions abort ---- */

static void test_lwip_assert_aborts_with_message(void **state)
{
	int fds[2];
	char out[512];
	size_t n = 0;
	ssize_t r;
	int status;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		pbuf_free(NULL); /* violates LWIP_ASSERT("p != NULL") */
		_exit(0);        /* reached only if the assertion returned */
	}
	close(fds[1]);
	while (n < sizeof(out) - 1 &&
	       (r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_non_null(strstr(out, "lwIP assertion failed"));
	assert_non_null(strstr(out, "p != NULL"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_options_are_ours),
	    cmocka_unit_test(test_clock_hook),
	    cmocka_unit_test_setup_teardown(test_udp4_output, tun_setup,
	                                    tun_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_udp4_input_and_checksum_control, tun_setup, tun_teardown),
	    cmocka_unit_test_setup_teardown(test_icmp4_echo, tun_setup,
	                                    tun_teardown),
	    cmocka_unit_test_setup_teardown(test_icmp6_echo, tun_setup,
	                                    tun_teardown),
	    cmocka_unit_test_setup_teardown(test_tcp4_syn_options, tun_setup,
	                                    tun_teardown),
	    cmocka_unit_test_setup_teardown(test_tcp6_syn_options, tun_setup,
	                                    tun_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_tcp_retransmission_follows_the_clock, tun_setup,
	        tun_teardown),
	    cmocka_unit_test_setup_teardown(test_tcp_bulk_transfer_loopback6,
	                                    tun_setup, tun_teardown),
	    cmocka_unit_test(test_lwip_assert_aborts_with_message),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
