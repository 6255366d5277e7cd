/*
 * Fuzzes the core with packets from the phy: everything a host (or anything
 * behind it) can put on the TUN reaches lwIP through here.
 *
 * One core (lwIP is a process-wide singleton) is created on the first input
 * and serves all of them, on a virtual clock, with cfg.echo_port = 7 so
 * that TCP and UDP have something to talk to. The target plays the phy: it
 * writes packets into RX buffers, polls the core until it settles, and
 * reads back everything the core transmits.
 *
 * Input: a sequence of ops, each one byte, front to back.
 *   0x80 | v   control. v < 0x60: advance the clock by v * 10 ms;
 *              0x60 <= v < 0x7f: advance by (v - 0x5f) * 4 s; 0x7f: toggle
 *              burst mode (packets are queued without polling the core in
 *              between, so the core takes them in batches). An input may
 *              advance the clock by at most INPUT_TIME_BUDGET_MS.
 *   flags      a packet (bit 7 clear): a u16 length (little endian) and that
 *              many bytes (fewer if the input ends), then repairs chosen by
 *              the flags, so that inputs get past lwIP's header checks into
 *              TCP, UDP and ICMP instead of being dropped at the IP header:
 *     F_V6       with F_FIX_IP: make it IPv6 (else IPv4)
 *     F_FIX_IP   version, IPv4 header length, total/payload length, IPv4
 *                header checksum (short packets are zero-padded to a header)
 *     F_AIM_DST  destination = the stack (10.77.0.2 / fd77::2)
 *     F_AIM_SRC  source = the peer (10.77.0.1 / fd77::1)
 *     F_FIX_L4   TCP data offset, UDP length, and the TCP, UDP, ICMP or
 *                ICMPv6 checksum (not for fragments: their checksum covers
 *                the whole datagram)
 *     F_ECHO     TCP/UDP destination port = the echo port
 *     F_TRACK    TCP: answer the last segment the stack sent in this family
 *                (its addresses and ports reversed; our seq = its ack and
 *                our ack = its next sequence, each plus the seq and ack
 *                fields of the input, so 0 means exact), so that inputs can
 *                complete handshakes and get into established connections
 *   IPv6 extension headers (hop-by-hop, routing, destination options, an
 *   atomic fragment header) are skipped to find the transport header.
 *
 * Properties:
 *   - nothing crashes, trips an lwIP assertion or a sanitizer, and the core
 *     always settles (a bounded number of polls with nothing ready);
 *   - every packet the stack transmits is at most the MTU and well formed:
 *     nc_pkt_parse accepts it (lengths, checksums), or for a fragment the IP
 *     header is right; its source is one of the stack's addresses and its
 *     destination is a unicast peer (IPv6 multicast only for ICMPv6, i.e.
 *     neighbour discovery), never the stack itself or a broadcast;
 *   - the core counts exactly the packets and bytes it was given, and
 *     transmits what it counts (tx_packets, less ring-full drops);
 *   - the phy link stays up: one handshake, no corruption, no bad
 *     descriptors;
 *   - after each input, every connection is reset (an RST injected for each
 *     active pcb, with its rcv_nxt) and the clock advanced until TIME_WAIT,
 *     reassembly and timers are done. Then the stack must be back at rest
 *     exactly: no TCP pcbs, every lwIP pool and the heap as used as after
 *     start-up, and every RX buffer back with the phy. So state cannot grow
 *     across inputs (a long-running service), a leak of a pbuf, pcb or phy
 *     buffer is caught at the input that caused it, and each input starts
 *     from nearly the same state (the random source is reseeded per input;
 *     what carries over is the clock's phase, neighbour-discovery caches
 *     and routers, and counters), so a crash file replays on its own.
 *
 * Bugs this target found, now fixed and kept in the seeds: a segment of
 * sequence length 1 far behind rcv_nxt aborted lwIP (tcp_guard.c), and a
 * datagram "from" the stack's own address to the echo port looped inside
 * lwIP for ever (core.c, martian_source).
 *
 * Seeds (in code): TCP handshake, data, FIN and close in both families, SYN
 * with data, out-of-order data, a zero window, UDP and ICMP echo in both
 * families, IPv4 and IPv6 fragments, IPv4 options and an IPv6 hop-by-hop
 * header, ports without a listener, ICMP errors, neighbour discovery, a
 * burst, timers (SYN-ACK retransmission and the SYN_RCVD timeout), a raw
 * valid packet, and one for each bug above.
 *
 * Replaying an input: PACKET_FUZZ_TRACE=1 prints every packet in and out
 * (2: also in hex).
 */
#include <arpa/inet.h>
#include <stdbool.h>

#include "lwip/ip_addr.h"
#include "lwip/memp.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/stats.h"
#include "lwip/tcp.h"
#include "services/netcore/core.h"
#include "services/netcore/lwip/nc_lwip_port.h"
#include "tests/pkt/pkt.h"
#include "tools/fuzz/fuzz.h"

#define ECHO_PORT 7

enum {
	OP_CONTROL = 0x80,
	CTL_LONG = 0x60,  /* first control value counted in 4 s steps */
	CTL_BURST = 0x7f, /* toggles burst mode */

	F_V6 = 0x01,
	F_FIX_IP = 0x02,
	F_AIM_DST = 0x04,
	F_AIM_SRC = 0x08,
	F_FIX_L4 = 0x10,
	F_ECHO = 0x20,
	F_TRACK = 0x40,
};

enum {
	/* Clock an input's ops may use: covers the SYN_RCVD timeout (20 s)
	 * and a few retransmissions. */
	INPUT_TIME_BUDGET_MS = 200 * 1000,
	/* Clock the clean-up may use to get back to rest: TIME_WAIT is 120 s,
	 * IPv6 reassembly 60 s. */
	CLEANUP_LIMIT_MS = 400 * 1000,
	SETTLE_MAX_POLLS = 10000,
	/* Polls with nothing ready before the core counts as settled: packets
	 * lwIP loops back to itself are processed one poll later. */
	SETTLE_QUIET_POLLS = 3,
	MAX_PACKET = 65535,
};

/* The last TCP segment the stack sent, per family (F_TRACK). */
struct seen {
	bool valid;
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	uint32_t seq_next; /* seq + payload + SYN + FIN */
	uint32_t ack;
};

/* Created on the first input, kept for the life of the process. */
static struct harness {
	bool ready;
	struct nc_lwip_vclock clock;
	struct nc_phy_params params;
	struct nc_region region;
	struct nc_doorbell core_bell, phy_bell;
	struct nc_core *core;
	struct nc_phy_dev phy;
	uint8_t stack4[4], peer4[4], stack6[16], peer6[16], link6[16];
	int trace; /* $PACKET_FUZZ_TRACE: 1 print every packet, 2 in hex */
	/* The stack at rest, measured after start-up. */
	uint32_t rest_rx_buffers;
	mem_size_t rest_memp_used[MEMP_MAX];
	mem_size_t rest_mem_used;
} h;

/* Per input. */
static struct run {
	uint64_t rand;
	bool burst;
	uint32_t time_left_ms;
	uint64_t injected, injected_bytes;
	uint64_t transmitted;
	struct seen last_tcp[2]; /* [0] IPv4, [1] IPv6 */
} run;

static uint8_t packet[MAX_PACKET + 128];

__attribute__((noreturn)) static void fail(const char *why)
{
	fprintf(stderr, "packet_fuzz: %s\n", why);
	abort();
}

/* ------------------------------------------------------------ helpers */

static uint16_t get16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)get16(b) << 16 | get16(b + 2);
}

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static void put32(uint8_t *b, uint32_t v)
{
	put16(b, (uint16_t)(v >> 16));
	put16(b + 2, (uint16_t)v);
}

static uint32_t sum16(const uint8_t *b, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (len & 1)
		sum += (uint32_t)(b[len - 1] << 8);
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* lwIP's random source: deterministic, reseeded for every input. */
static uint32_t fuzz_rand(void *ctx)
{
	(void)ctx;
	uint64_t x = run.rand;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	run.rand = x;
	return (uint32_t)(x >> 16);
}

/* -------------------------------------------------- what the stack sends */

/* One line per packet on stderr, for replaying a crash by hand. */
static void trace(const char *dir, const uint8_t *b, size_t len)
{
	if (!h.trace)
		return;
	if (h.trace > 1) {
		fprintf(stderr, "%s", dir);
		for (size_t i = 0; i < len; i++)
			fprintf(stderr, " %02x", b[i]);
		fprintf(stderr, "\n");
	}
	char src[INET6_ADDRSTRLEN] = "?", dst[INET6_ADDRSTRLEN] = "?";
	struct nc_pkt p;
	if (!nc_pkt_parse(b, len, &p)) {
		fprintf(stderr, "%s %zu bytes (unparsed), clock %u\n", dir, len,
		        (unsigned)h.clock.now_ms);
		return;
	}
	int af = p.family == 4 ? AF_INET : AF_INET6;
	inet_ntop(af, p.src, src, sizeof(src));
	inet_ntop(af, p.dst, dst, sizeof(dst));
	fprintf(stderr,
	        "%s %s.%u > %s.%u proto %u flags %#x seq %u ack %u win %u "
	        "len %zu, clock %u\n",
	        dir, src, p.sport, dst, p.dport, p.proto, p.flags, p.seq, p.ack,
	        p.window, p.len, (unsigned)h.clock.now_ms);
}

static bool is_stack4(const uint8_t *a)
{
	return memcmp(a, h.stack4, 4) == 0;
}

static bool is_stack6(const uint8_t *a)
{
	return memcmp(a, h.stack6, 16) == 0 || memcmp(a, h.link6, 16) == 0;
}

/*
 * The stack speaks only from its own addresses, and never to itself, to a
 * broadcast or to a multicast group (RFC 1122 3.2.2: no ICMP error about a
 * datagram from such a source; IPv6 neighbour discovery excepted).
 *
 * Not checked: replies to sources that lwIP 2.1 accepts on a link without
 * NETIF_FLAG_BROADCAST (the core's point-to-point netif) although the host
 * would call them martian: 0/8, 127/8, 240/4, and the subnet's broadcast
 * address (10.77.0.255), which lwIP treats as unicast on such a link.
 */
static void check_addresses(int family, const uint8_t *src, const uint8_t *dst,
                            uint8_t proto)
{
	if (family == 4) {
		static const uint8_t any[4], all[4] = {255, 255, 255, 255};
		FUZZ_CHECK(is_stack4(src));
		FUZZ_CHECK(!is_stack4(dst));
		FUZZ_CHECK(dst[0] < 224 || dst[0] >= 240);
		FUZZ_CHECK(memcmp(dst, any, 4) != 0);
		FUZZ_CHECK(memcmp(dst, all, 4) != 0);
		return;
	}
	static const uint8_t unspecified[16];
	FUZZ_CHECK(is_stack6(src));
	FUZZ_CHECK(!is_stack6(dst));
	FUZZ_CHECK(memcmp(dst, unspecified, 16) != 0);
	FUZZ_CHECK(dst[0] != 0xff || proto == 58);
}

static void remember_tcp(const struct nc_pkt *p)
{
	struct seen *s = &run.last_tcp[p->family == 6];
	s->valid = true;
	memcpy(s->src, p->src, 16);
	memcpy(s->dst, p->dst, 16);
	s->sport = p->sport;
	s->dport = p->dport;
	s->seq_next = p->seq + (uint32_t)p->len + !!(p->flags & NC_TH_SYN) +
	              !!(p->flags & NC_TH_FIN);
	s->ack = p->ack;
}

/* Every packet the stack transmits must be well formed and well addressed. */
static void check_transmitted(const uint8_t *b, uint32_t len)
{
	trace("tx", b, len);
	FUZZ_CHECK(len <= h.params.mtu);
	FUZZ_CHECK(len >= 20);
	int version = b[0] >> 4;
	FUZZ_CHECK(version == 4 || version == 6);
	struct nc_pkt p;
	bool fragment;
	if (version == 4) {
		fragment = (get16(b + 6) & 0x3fff) != 0; /* MF or offset */
	} else {
		FUZZ_CHECK(len >= 40);
		fragment = b[6] == 44;
	}
	if (!fragment) {
		FUZZ_CHECK(nc_pkt_parse(b, len, &p));
		check_addresses(p.family, p.src, p.dst, p.proto);
		if (p.proto == 6)
			remember_tcp(&p);
		return;
	}
	if (version == 4) {
		size_t ihl = (size_t)(b[0] & 15) * 4;
		FUZZ_CHECK(ihl >= 20 && ihl <= len && get16(b + 2) == len);
		FUZZ_CHECK(fold(sum16(b, ihl, 0)) == 0);
		check_addresses(4, b + 12, b + 16, b[9]);
	} else {
		FUZZ_CHECK((size_t)get16(b + 4) + 40 == len && len >= 48);
		check_addresses(6, b + 8, b + 24, b[40]);
	}
}

/* Takes, checks and returns everything the stack transmitted. */
static void drain_tx(void)
{
	struct nc_desc d[NC_PHY_BATCH];
	int n;
	while ((n = nc_phy_dev_tx(&h.phy, d, NC_PHY_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			check_transmitted(nc_phy_dev_data(&h.phy, &d[i]),
			                  d[i].length);
			nc_phy_dev_tx_done(&h.phy, &d[i]);
			run.transmitted++;
		}
		FUZZ_CHECK(nc_phy_dev_flush(&h.phy) == 0);
	}
	FUZZ_CHECK(n == 0);
}

/* ------------------------------------------------------ driving the core */

/* Polls until the core has nothing more to do now; returns how long it
 * may then wait. */
static uint32_t settle(void)
{
	int quiet = 0;
	for (int i = 0; i < SETTLE_MAX_POLLS; i++) {
		struct nc_core_advice a = nc_core_poll(h.core);
		drain_tx();
		if (a.again)
			quiet = 0;
		else if (++quiet == SETTLE_QUIET_POLLS)
			return a.wait_ms;
	}
	fail("the core never settles");
}

/* Moves the clock forward by `ms`, stopping at every lwIP timer. */
static void advance(uint32_t ms)
{
	uint32_t wait = settle();
	while (ms > 0) {
		uint32_t step = wait == 0 ? 1 : wait;
		if (step > ms)
			step = ms;
		h.clock.now_ms += step;
		ms -= step;
		wait = settle();
	}
}

/* Hands one packet to the core. False if the phy had no RX buffer even
 * after the core settled (the stack holds them all). */
static bool inject(const uint8_t *pkt, size_t len)
{
	struct nc_desc d;
	uint8_t *buf = nc_phy_dev_rx_buffer(&h.phy, &d);
	if (buf == NULL) {
		settle();
		buf = nc_phy_dev_rx_buffer(&h.phy, &d);
		if (buf == NULL)
			return false;
	}
	FUZZ_CHECK(len <= d.length);
	trace("rx", pkt, len);
	memcpy(buf, pkt, len);
	/* Never let the phy drop for lack of ring space: the core must see
	 * every packet we count. */
	if (h.phy.rx_pending_count == NC_PHY_BATCH) {
		FUZZ_CHECK(nc_phy_dev_flush(&h.phy) == 0);
		if (h.phy.rx_pending_count == NC_PHY_BATCH) {
			settle();
			FUZZ_CHECK(nc_phy_dev_flush(&h.phy) == 0);
		}
		FUZZ_CHECK(h.phy.rx_pending_count < NC_PHY_BATCH);
	}
	nc_phy_dev_rx_commit(&h.phy, &d, (uint32_t)len);
	FUZZ_CHECK(nc_phy_dev_flush(&h.phy) == 0);
	if (len > 0) { /* the core ignores empty descriptors */
		run.injected++;
		run.injected_bytes += len;
	}
	if (!run.burst)
		settle();
	return true;
}

/* RX buffers the phy holds (all of them when the stack is at rest). */
static uint32_t phy_rx_buffers(void)
{
	int ready = nc_ring_ready(&h.phy.rx_free);
	FUZZ_CHECK(ready >= 0);
	return h.phy.stash_count + (uint32_t)ready;
}

/* ------------------------------------------------------------- repairs */

static void set_addr(uint8_t *at, int family, const uint8_t *addr4,
                     const uint8_t *addr6)
{
	memcpy(at, family == 4 ? addr4 : addr6, family == 4 ? 4 : 16);
}

/* The pseudo-header sum for TCP, UDP and ICMPv6 checksums. */
static uint32_t pseudo_sum(const uint8_t *pkt, int family, uint8_t proto,
                           size_t l4_len)
{
	uint32_t s =
	    family == 4 ? sum16(pkt + 12, 8, 0) : sum16(pkt + 8, 32, 0);
	return s + proto + (uint32_t)l4_len;
}

/* Finds the transport header: its offset and protocol. False if there is
 * none at hand, or the packet is a fragment (not to be touched). */
static bool find_l4(const uint8_t *pkt, size_t len, int family, size_t *off,
                    uint8_t *proto)
{
	if (family == 4) {
		size_t ihl = (size_t)(pkt[0] & 15) * 4;
		if (ihl < 20 || ihl > len || (get16(pkt + 6) & 0x3fff) != 0)
			return false;
		*off = ihl;
		*proto = pkt[9];
		return true;
	}
	size_t at = 40;
	uint8_t nh = pkt[6];
	for (int i = 0; i < 8 && at + 8 <= len; i++) {
		if (nh == 0 || nh == 43 || nh == 60) {
			uint8_t next = pkt[at];
			at += ((size_t)pkt[at + 1] + 1) * 8;
			nh = next;
		} else if (nh == 44) {
			if ((get16(pkt + at + 2) & 0xfff9) != 0)
				return false; /* a real fragment */
			nh = pkt[at];
			at += 8;
		} else {
			break;
		}
	}
	if (at > len)
		return false;
	*off = at;
	*proto = nh;
	return true;
}

/* The stack's reply to the last segment it sent (F_TRACK). */
static void track(uint8_t *pkt, int family, uint8_t *tcp)
{
	const struct seen *s = &run.last_tcp[family == 6];
	if (!s->valid)
		return;
	size_t al = family == 4 ? 4 : 16;
	memcpy(pkt + (family == 4 ? 12 : 8), s->dst, al);
	memcpy(pkt + (family == 4 ? 16 : 24), s->src, al);
	put16(tcp, s->dport);
	put16(tcp + 2, s->sport);
	put32(tcp + 4, s->ack + get32(tcp + 4));
	put32(tcp + 8, s->seq_next + get32(tcp + 8));
}

static size_t pad(uint8_t *pkt, size_t len, size_t min)
{
	if (len < min) {
		memset(pkt + len, 0, min - len);
		len = min;
	}
	return len;
}

static size_t repair_l4(uint8_t *pkt, size_t len, int family, uint8_t flags)
{
	size_t off;
	uint8_t proto;
	if (!find_l4(pkt, len, family, &off, &proto))
		return len;
	bool icmp = proto == (family == 4 ? 1 : 58);
	if (proto != 6 && proto != 17 && !icmp)
		return len;
	if (flags & F_FIX_L4)
		len = pad(pkt, len, off + (proto == 6 ? 20 : 8));
	if (len < off + (proto == 6 ? 20 : 8))
		return len;
	uint8_t *t = pkt + off;
	size_t l4 = len - off;
	if ((flags & F_ECHO) && !icmp)
		put16(t + 2, ECHO_PORT);
	if ((flags & F_TRACK) && proto == 6)
		track(pkt, family, t);
	if (!(flags & F_FIX_L4))
		return len;
	size_t at; /* the checksum field */
	uint32_t seed;
	if (proto == 6) {
		size_t doff = (size_t)(t[12] >> 4) * 4;
		if (doff < 20 || doff > l4)
			t[12] = (uint8_t)(0x50 | (t[12] & 15));
		at = 16;
		seed = pseudo_sum(pkt, family, proto, l4);
	} else if (proto == 17) {
		put16(t + 4, (uint16_t)l4);
		at = 6;
		seed = pseudo_sum(pkt, family, proto, l4);
	} else {
		at = 2;
		seed = family == 4 ? 0 : pseudo_sum(pkt, family, proto, l4);
	}
	put16(t + at, 0);
	uint16_t sum = fold(sum16(t, l4, seed));
	if (proto == 17 && sum == 0)
		sum = 0xffff;
	put16(t + at, sum);
	return len;
}

/* Applies the repairs `flags` asks for; returns the new length. */
static size_t repair(uint8_t *pkt, size_t len, uint8_t flags)
{
	int family;
	if (len > h.params.mtu) /* what a TUN delivers; padding adds <= 60 */
		len = h.params.mtu;
	if (flags & F_FIX_IP) {
		family = flags & F_V6 ? 6 : 4;
		len = pad(pkt, len, family == 4 ? 20 : 40);
		if (family == 4) {
			size_t ihl = (size_t)(pkt[0] & 15) * 4;
			if (ihl < 20 || ihl > len)
				ihl = 20;
			pkt[0] = (uint8_t)(0x40 | ihl / 4);
		} else {
			pkt[0] = (uint8_t)(0x60 | (pkt[0] & 15));
		}
	} else {
		family = len > 0 ? pkt[0] >> 4 : 0;
		if ((family != 4 && family != 6) ||
		    len < (family == 4 ? 20u : 40u))
			return len;
	}
	if (flags & F_AIM_SRC)
		set_addr(pkt + (family == 4 ? 12 : 8), family, h.peer4,
		         h.peer6);
	if (flags & F_AIM_DST)
		set_addr(pkt + (family == 4 ? 16 : 24), family, h.stack4,
		         h.stack6);
	len = repair_l4(pkt, len, family, flags);
	if (!(flags & F_FIX_IP))
		return len;
	if (family == 6) {
		put16(pkt + 4, (uint16_t)(len - 40));
		return len;
	}
	size_t ihl = (size_t)(pkt[0] & 15) * 4;
	put16(pkt + 2, (uint16_t)len);
	put16(pkt + 10, 0);
	put16(pkt + 10, fold(sum16(pkt, ihl, 0)));
	return len;
}

/* ---------------------------------------------------- clean-up and rest */

/* Resets every connection with an RST it must accept (seq = rcv_nxt). */
static void reset_connections(void)
{
	enum { MAX_RESETS = 64 };
	for (int round = 0; round < 64 && tcp_active_pcbs != NULL; round++) {
		struct nc_pkt rst[MAX_RESETS];
		int n = 0;
		for (struct tcp_pcb *pcb = tcp_active_pcbs;
		     pcb != NULL && n < MAX_RESETS; pcb = pcb->next) {
			struct nc_pkt *p = &rst[n++];
			memset(p, 0, sizeof(*p));
			p->proto = 6;
			p->flags = NC_TH_RST;
			p->sport = pcb->remote_port;
			p->dport = pcb->local_port;
			p->seq = pcb->rcv_nxt;
			if (IP_IS_V6(&pcb->local_ip)) {
				p->family = 6;
				memcpy(p->src, ip_2_ip6(&pcb->remote_ip)->addr,
				       16);
				memcpy(p->dst, ip_2_ip6(&pcb->local_ip)->addr,
				       16);
			} else {
				p->family = 4;
				memcpy(p->src, &ip_2_ip4(&pcb->remote_ip)->addr,
				       4);
				memcpy(p->dst, &ip_2_ip4(&pcb->local_ip)->addr,
				       4);
			}
		}
		for (int i = 0; i < n; i++) {
			size_t len =
			    nc_pkt_build(packet, sizeof(packet), &rst[i]);
			FUZZ_CHECK(len > 0);
			inject(packet, len);
		}
		settle();
	}
}

/* What differs from the stack at rest, or NULL. */
static const char *unrest(void)
{
	static char why[128];
	if (tcp_active_pcbs != NULL)
		return "a TCP connection survives its RST";
	if (tcp_tw_pcbs != NULL)
		return "a TCP connection stays in TIME_WAIT";
	for (int i = 0; i < MEMP_MAX; i++) {
		if (lwip_stats.memp[i]->used != h.rest_memp_used[i]) {
			snprintf(why, sizeof(why),
			         "lwIP pool %d holds %lu elements, %lu at rest",
			         i, (unsigned long)lwip_stats.memp[i]->used,
			         (unsigned long)h.rest_memp_used[i]);
			return why;
		}
	}
	if (lwip_stats.mem.used != h.rest_mem_used) {
		snprintf(why, sizeof(why),
		         "lwIP heap holds %lu bytes, %lu at rest",
		         (unsigned long)lwip_stats.mem.used,
		         (unsigned long)h.rest_mem_used);
		return why;
	}
	if (phy_rx_buffers() != h.rest_rx_buffers) {
		snprintf(
		    why, sizeof(why), "the phy holds %u RX buffers, %u at rest",
		    (unsigned)phy_rx_buffers(), (unsigned)h.rest_rx_buffers);
		return why;
	}
	return NULL;
}

/* Brings the stack back to rest: resets connections, then lets time pass
 * (TIME_WAIT, reassembly, lwIP's own timers) until nothing is left. */
static void clean_up(void)
{
	settle();
	reset_connections();
	uint32_t waited = 0;
	uint32_t wait = settle();
	while (unrest() != NULL && waited < CLEANUP_LIMIT_MS) {
		uint32_t step = wait == 0 ? 1 : wait;
		h.clock.now_ms += step;
		waited += step;
		wait = settle();
	}
	const char *why = unrest();
	if (why != NULL)
		fail(why);
}

static void setup_once(void)
{
	if (h.ready)
		return;
	const char *trace = getenv("PACKET_FUZZ_TRACE");
	h.trace = trace != NULL ? atoi(trace) : 0;
	h.clock.now_ms = 1000;
	nc_lwip_clock_set(nc_lwip_vclock_read, &h.clock);
	nc_lwip_rand_set(fuzz_rand, NULL);
	/* buf_count - buf_count / 4 (what the core lends for RX) fits the
	 * ring, so at rest the phy holds a fixed number of RX buffers. */
	h.params = (struct nc_phy_params){.ring_slots = 256,
	                                  .buf_count = 256,
	                                  .buf_size = 65536,
	                                  .mtu = 65520};
	FUZZ_CHECK(nc_phy_region_create(&h.region, &h.params) == 0);
	FUZZ_CHECK(nc_doorbell_create(&h.core_bell) == 0);
	FUZZ_CHECK(nc_doorbell_create(&h.phy_bell) == 0);
	struct nc_core_config cfg;
	nc_core_config_default(&cfg);
	cfg.echo_port = ECHO_PORT;
	memcpy(h.stack4, &cfg.ipv4, 4);
	memcpy(h.peer4, &cfg.ipv4_peer, 4);
	memcpy(h.stack6, &cfg.ipv6, 16);
	memcpy(h.peer6, &cfg.ipv6_peer, 16);
	FUZZ_CHECK(inet_pton(AF_INET6, "fe80::2", h.link6) == 1);
	h.core = nc_core_create(&cfg, &h.region, &h.core_bell, &h.phy_bell);
	FUZZ_CHECK(h.core != NULL);
	FUZZ_CHECK(
	    nc_phy_dev_open(&h.phy, &h.region, &h.phy_bell, &h.core_bell) == 0);
	nc_phy_dev_request(&h.phy);
	settle();
	FUZZ_CHECK(nc_phy_dev_granted(&h.phy) == 1);
	advance(5000); /* lwIP's start-up timers */
	for (int i = 0; i < MEMP_MAX; i++)
		h.rest_memp_used[i] = lwip_stats.memp[i]->used;
	h.rest_mem_used = lwip_stats.mem.used;
	h.rest_rx_buffers = phy_rx_buffers();
	FUZZ_CHECK(h.rest_rx_buffers > 0);
	FUZZ_CHECK(tcp_active_pcbs == NULL && tcp_tw_pcbs == NULL);
	h.ready = true;
}

/* ----------------------------------------------------------- the input */

static void control(uint8_t v)
{
	if (v == CTL_BURST) {
		run.burst = !run.burst;
		if (!run.burst)
			settle();
		return;
	}
	uint32_t ms = v < CTL_LONG ? v * 10u : (v - CTL_LONG + 1u) * 4000u;
	if (ms > run.time_left_ms)
		ms = run.time_left_ms;
	run.time_left_ms -= ms;
	advance(ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup_once();
	memset(&run, 0, sizeof(run));
	run.rand = 0x6c77697066757a7aull; /* "lwipfuzz" */
	run.time_left_ms = INPUT_TIME_BUDGET_MS;
	struct nc_core_counters before, after;
	nc_core_get_counters(h.core, &before);

	struct fuzz_input in = {data, size};
	while (in.left > 0) {
		uint8_t op = fuzz_u8(&in);
		if (op & OP_CONTROL) {
			control(op & 0x7f);
			continue;
		}
		size_t want = fuzz_u16(&in);
		if (want > MAX_PACKET)
			want = MAX_PACKET;
		size_t len = fuzz_bytes(&in, packet, want);
		len = repair(packet, len, op);
		inject(packet, len);
	}
	run.burst = false;
	clean_up();

	nc_core_get_counters(h.core, &after);
	FUZZ_CHECK(after.rx_packets - before.rx_packets == run.injected);
	FUZZ_CHECK(after.rx_bytes - before.rx_bytes == run.injected_bytes);
	uint64_t sent = after.tx_packets - before.tx_packets;
	uint64_t dropped = after.drop_tx_no_buffer - before.drop_tx_no_buffer;
	FUZZ_CHECK(run.transmitted <= sent &&
	           sent <= run.transmitted + dropped);
	FUZZ_CHECK(after.phy_handshakes == 1 && after.phy_corrupt == 0);
	FUZZ_CHECK(after.phy.rx_drop_no_buffer == before.phy.rx_drop_no_buffer);
	FUZZ_CHECK(after.phy.tx_bad_desc == before.phy.tx_bad_desc);
	FUZZ_CHECK(nc_phy_dev_granted(&h.phy) == 1);
	FUZZ_CHECK(!nc_phy_dev_core_restarted(&h.phy));
	return 0;
}

/* -------------------------------------------------------------- seeds */

/* clang-format off */
#define LEN(n) (uint8_t)((n)&0xff), (uint8_t)((n) >> 8)
#define B16(v) (uint8_t)((v) >> 8), (uint8_t)((v)&0xff)
#define Z8     0, 0, 0, 0, 0, 0, 0, 0
#define Z16    Z8, Z8
/* Headers with zero lengths, addresses and checksums: the repairs fill
 * them in. */
#define S_IP4(proto)    0x45, 0, 0, 0, 0, 0, 0, 0, 64, (proto), 0, 0, Z8
#define S_IP6(nh, hops) 0x60, 0, 0, 0, 0, 0, (nh), (hops), Z16, Z16
#define S_TCP(sport, dport, seq, flags)                                          \
	B16(sport), B16(dport), 0, 0, B16(seq), 0, 0, 0, 0, 0x50, (flags),     \
	    0xff, 0xff, 0, 0, 0, 0
#define S_SYN_MSS(sport, flags)                                                  \
	B16(sport), 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, (flags), 0xff, 0xff,   \
	    0, 0, 0, 0, 2, 4, 0x05, 0xb4
#define S_UDP(sport, dport) B16(sport), B16(dport), 0, 0, 0, 0
#define S_SYN               NC_TH_SYN
#define S_ACK               NC_TH_ACK
#define S_PSH_ACK           (NC_TH_PSH | NC_TH_ACK)
#define S_FIN_ACK           (NC_TH_FIN | NC_TH_ACK)

/* Aimed at the echo port with every repair; then answering the stack. */
#define OP4  (F_FIX_IP | F_AIM_DST | F_AIM_SRC | F_FIX_L4 | F_ECHO)
#define OP6  (OP4 | F_V6)
#define OPT4 (OP4 | F_TRACK)
#define OPT6 (OP6 | F_TRACK)
/* Repairs without the echo port. */
#define OPN4 (F_FIX_IP | F_AIM_DST | F_AIM_SRC | F_FIX_L4)
#define OPN6 (OPN4 | F_V6)

#define CTL_MS(ms) (OP_CONTROL | (ms) / 10)
#define CTL_S(s)   (OP_CONTROL | (CTL_LONG + (s) / 4 - 1))

static const uint8_t seed_connection4[] = {
    OP4,  LEN(44), S_IP4(6), S_SYN_MSS(40000, S_SYN),
    OPT4, LEN(40), S_IP4(6), S_TCP(0, 0, 0, S_ACK),
    OPT4, LEN(45), S_IP4(6), S_TCP(0, 0, 0, S_PSH_ACK), 'h', 'e', 'l', 'l', 'o',
    OPT4, LEN(40), S_IP4(6), S_TCP(0, 0, 0, S_ACK),
    OPT4, LEN(40), S_IP4(6), S_TCP(0, 0, 0, S_FIN_ACK),
    OPT4, LEN(40), S_IP4(6), S_TCP(0, 0, 0, S_ACK),
};

static const uint8_t seed_connection6[] = {
    OP6,  LEN(64), S_IP6(6, 64), S_SYN_MSS(40001, S_SYN),
    OPT6, LEN(60), S_IP6(6, 64), S_TCP(0, 0, 0, S_ACK),
    OPT6, LEN(65), S_IP6(6, 64), S_TCP(0, 0, 0, S_PSH_ACK), 'w', 'o', 'r', 'l',
    'd',
    CTL_MS(300),
    OPT6, LEN(60), S_IP6(6, 64), S_TCP(0, 0, 0, S_FIN_ACK),
    OPT6, LEN(60), S_IP6(6, 64), S_TCP(0, 0, 0, S_ACK),
};

/* Data on the S_SYN; then the connection left open (the clean-up resets it). */
static const uint8_t seed_syn_data4[] = {
    OP4,  LEN(48), S_IP4(6), S_SYN_MSS(40002, S_SYN), 'd', 'a', 't', 'a',
    OPT4, LEN(40), S_IP4(6), S_TCP(0, 0, 0, S_ACK),
};

/* "world" 5 bytes ahead of "hello": queued out of order, then joined. */
static const uint8_t seed_out_of_order4[] = {
    OP4,  LEN(44), S_IP4(6), S_SYN_MSS(40003, S_SYN),
    OPT4, LEN(40), S_IP4(6), S_TCP(0, 0, 0, S_ACK),
    OPT4, LEN(45), S_IP4(6), S_TCP(0, 0, 5, S_PSH_ACK), 'w', 'o', 'r', 'l', 'd',
    OPT4, LEN(45), S_IP4(6), S_TCP(0, 0, 0, S_PSH_ACK), 'h', 'e', 'l', 'l', 'o',
};

/* A zero window: the echo cannot send back, and retransmits/probes. */
static const uint8_t seed_zero_window6[] = {
    OP6,  LEN(64), S_IP6(6, 64), S_SYN_MSS(40004, S_SYN),
    OPT6, LEN(60), S_IP6(6, 64), B16(0), B16(0), Z8, 0x50, S_ACK, 0, 0, 0, 0,
    0, 0,
    OPT6, LEN(64), S_IP6(6, 64), B16(0), B16(0), Z8, 0x50, S_PSH_ACK, 0, 0, 0,
    0, 0, 0, 'p', 'r', 'o', 'b',
    CTL_S(8),
};

static const uint8_t seed_udp4[] = {
    OP4, LEN(36), S_IP4(17), S_UDP(5353, 0), 'd', 'a', 't', 'a', 'g', 'r', 'a',
    'm',
};

static const uint8_t seed_udp6[] = {
    OP6, LEN(56), S_IP6(17, 64), S_UDP(5353, 0), 'd', 'a', 't', 'a', 'g', 'r',
    'a', 'm',
};

static const uint8_t seed_ping4[] = {
    OPN4, LEN(32), S_IP4(1), 8, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g',
};

static const uint8_t seed_ping6[] = {
    OPN6, LEN(52), S_IP6(58, 64), 128, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i',
    'n', 'g',
};

/* Closed ports: a TCP RST and an ICMP port unreachable, both families. */
static const uint8_t seed_closed_ports[] = {
    OPN4, LEN(40), S_IP4(6),      S_TCP(40005, 9, 77, S_SYN),
    OPN4, LEN(32), S_IP4(17),     S_UDP(40006, 9), 'n', 'o', 'n', 'e',
    OPN6, LEN(60), S_IP6(6, 64),  S_TCP(40007, 9, 77, S_SYN),
    OPN6, LEN(52), S_IP6(17, 64), S_UDP(40008, 9), 'n', 'o', 'n', 'e',
};

/* Two IPv4 fragments of a UDP datagram to the echo port (UDP checksum 0:
 * none). */
static const uint8_t seed_fragments4[] = {
    F_FIX_IP | F_AIM_DST | F_AIM_SRC, LEN(36),
    0x45, 0, 0, 0, 0x12, 0x34, 0x20, 0x00, 64, 17, 0, 0, Z8,
    B16(5353), B16(ECHO_PORT), B16(24), 0, 0, 'f', 'r', 'a', 'g', 'm', 'e', 'n', 't',
    F_FIX_IP | F_AIM_DST | F_AIM_SRC, LEN(28),
    0x45, 0, 0, 0, 0x12, 0x34, 0x00, 0x02, 64, 17, 0, 0, Z8,
    '-', 's', 'e', 'c', 'o', 'n', 'd', '!',
};

/* Two IPv6 fragments of an ICMPv6 echo request (checksum precomputed for
 * fd77::1 -> fd77::2). */
static const uint8_t seed_fragments6[] = {
    F_FIX_IP | F_AIM_DST | F_AIM_SRC | F_V6, LEN(64),
    0x60, 0, 0, 0, 0, 0x18, 44, 64, Z16, Z16,
    58, 0, 0x00, 0x01, 0xab, 0xcd, 0x00, 0x01,
    0x80, 0x00, 0x6b, 0x6d, 0x12, 0x34, 0x00, 0x01,
    'f', 'r', 'a', 'g', 'm', 'e', 'n', 't',
    F_FIX_IP | F_AIM_DST | F_AIM_SRC | F_V6, LEN(56),
    0x60, 0, 0, 0, 0, 0x10, 44, 64, Z16, Z16,
    58, 0, 0x00, 0x10, 0xab, 0xcd, 0x00, 0x01,
    'e', 'd', '-', 'p', 'i', 'n', 'g', '!',
};

/* IPv4 options (three NOPs and an end) and an IPv6 hop-by-hop header (a
 * PadN option) in front of UDP to the echo port. */
static const uint8_t seed_options[] = {
    OP4, LEN(36), 0x46, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, Z8, 1, 1, 1, 0,
    S_UDP(5353, 0), 'o', 'p', 't', 's',
    OP6, LEN(60), S_IP6(0, 64), 17, 0, 1, 4, 0, 0, 0, 0,
    S_UDP(5353, 0), 'o', 'p', 't', 's',
};

/* ICMP errors about a connection of the stack: fragmentation needed
 * (IPv4) and packet too big (IPv6), each quoting a TCP header. */
static const uint8_t seed_icmp_errors[] = {
    OPN4, LEN(56), S_IP4(1), 3, 4, 0, 0, 0, 0, 0x05, 0xdc,
    0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1,
    B16(ECHO_PORT), B16(40000), 0, 0, 0, 1,
    OPN6, LEN(96), S_IP6(58, 64), 2, 0, 0, 0, 0, 0, 0x05, 0x00,
    0x60, 0, 0, 0, 0, 20, 6, 64,
    0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    B16(ECHO_PORT), B16(40001), 0, 0, 0, 1,
};

/* Neighbour discovery (hop limit 255): a solicitation for fd77::2 and a
 * router advertisement from fe80::1 with a prefix option. */
static const uint8_t seed_neighbour_discovery[] = {
    OPN6, LEN(72), S_IP6(58, 255), 135, 0, 0, 0, 0, 0, 0, 0,
    0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    1, 1, 0x02, 0, 0, 0, 0, 1,
    F_FIX_IP | F_AIM_DST | F_FIX_L4 | F_V6, LEN(88),
    0x60, 0, 0, 0, 0, 0, 58, 255,
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, Z16,
    134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
    0xfd, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* A burst of SYNs, taken by the core in one batch, and their data. */
static const uint8_t seed_burst[] = {
    OP_CONTROL | CTL_BURST,
    OP4, LEN(44), S_IP4(6), S_SYN_MSS(41000, S_SYN),
    OP4, LEN(44), S_IP4(6), S_SYN_MSS(41001, S_SYN),
    OP6, LEN(64), S_IP6(6, 64), S_SYN_MSS(41002, S_SYN),
    OP4, LEN(36), S_IP4(17), S_UDP(41003, 0), 'b', 'u', 'r', 's', 't', '!', '!',
    '!',
    OP_CONTROL | CTL_BURST,
    OPT6, LEN(60), S_IP6(6, 64), S_TCP(0, 0, 0, S_ACK),
};

/* S_SYN-S_ACK retransmissions, then the SYN_RCVD timeout. */
static const uint8_t seed_timers[] = {
    OP4, LEN(44), S_IP4(6), S_SYN_MSS(42000, S_SYN),
    CTL_S(4), CTL_S(8), CTL_S(40),
};

/* A valid ICMP echo request, no repairs. */
static const uint8_t seed_raw4[] = {
    0,    LEN(32), 0x45, 0x00, 0x00, 0x20, 0x00, 0x77, 0x00, 0x00,
    0x40, 0x01,    0x65, 0xca, 0x0a, 0x4d, 0x00, 0x01, 0x0a, 0x4d,
    0x00, 0x02,    0x08, 0x00, 0xcb, 0x54, 0x43, 0x21, 0x00, 0x07,
    0x72, 0x61,    0x77, 0x21,
};

/* Known bug 1 (see seq_half_space()): SYN, then a FIN that completes the
 * handshake at rcv_nxt + 2^31. */
static const uint8_t seed_seq_half_space[] = {
    OP4,  LEN(44), S_IP4(6), S_SYN_MSS(40009, S_SYN),
    OPT4, LEN(40), S_IP4(6), B16(0), B16(0), 0x80, 0, 0, 0, 0, 0, 0, 0,
    0x50, S_FIN_ACK, 0xff, 0xff, 0, 0, 0, 0,
};

/* Known bug 2 (see self_source_loop()): UDP from 10.77.0.2:7 and from
 * [::1]:7 to the echo port. */
static const uint8_t seed_self_source[] = {
    F_FIX_IP | F_AIM_DST | F_FIX_L4 | F_ECHO, LEN(32),
    0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 77, 0, 2, 0, 0, 0, 0,
    S_UDP(ECHO_PORT, 0), 'l', 'o', 'o', 'p',
    F_FIX_IP | F_AIM_DST | F_FIX_L4 | F_ECHO | F_V6, LEN(52),
    0x60, 0, 0, 0, 0, 0, 17, 64, Z8, 0, 0, 0, 0, 0, 0, 0, 1, Z16,
    S_UDP(ECHO_PORT, 0), 'l', 'o', 'o', 'p',
};

/* Just packet headers and time: what short random inputs look like. */
static const uint8_t seed_short[] = {
    OP4 | F_TRACK, LEN(0), OP6, LEN(3), 6, 0, 0, CTL_MS(950),
};

/* clang-format on */

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_connection4),
    FUZZ_SEED(seed_connection6),
    FUZZ_SEED(seed_syn_data4),
    FUZZ_SEED(seed_out_of_order4),
    FUZZ_SEED(seed_zero_window6),
    FUZZ_SEED(seed_udp4),
    FUZZ_SEED(seed_udp6),
    FUZZ_SEED(seed_ping4),
    FUZZ_SEED(seed_ping6),
    FUZZ_SEED(seed_closed_ports),
    FUZZ_SEED(seed_fragments4),
    FUZZ_SEED(seed_fragments6),
    FUZZ_SEED(seed_options),
    FUZZ_SEED(seed_icmp_errors),
    FUZZ_SEED(seed_neighbour_discovery),
    FUZZ_SEED(seed_burst),
    FUZZ_SEED(seed_timers),
    FUZZ_SEED(seed_raw4),
    FUZZ_SEED(seed_short),
    FUZZ_SEED(seed_seq_half_space),
    FUZZ_SEED(seed_self_source),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
