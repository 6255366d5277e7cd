/*
 * pkt: build and check IPv4/IPv6 packets (TCP, UDP, ICMP echo) for tests
 * that play a peer of the stack byte by byte. Builders compute every
 * length and checksum; the parser refuses anything whose lengths or
 * checksums are wrong, so a test that parses a packet has also checked it.
 */
#ifndef NETCORE_TESTS_PKT_H
#define NETCORE_TESTS_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	NC_TH_FIN = 0x01,
	NC_TH_SYN = 0x02,
	NC_TH_RST = 0x04,
	NC_TH_PSH = 0x08,
	NC_TH_ACK = 0x10
};

struct nc_pkt {
	int family;      /* 4 or 6 */
	uint8_t proto;   /* 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6 */
	uint8_t src[16]; /* first 4 bytes for IPv4 */
	uint8_t dst[16];
	uint16_t sport, dport; /* TCP/UDP; ICMP echo: id in sport */
	uint32_t seq, ack;     /* TCP; ICMP echo: sequence in seq */
	uint8_t flags;         /* TCP flags; ICMP: type */
	uint16_t window;
	uint16_t mss; /* TCP option on SYN if non-zero */
	const uint8_t *payload;
	size_t len;
};

/* Writes the packet into buf; returns its length, or 0 if it does not fit. */
size_t nc_pkt_build(uint8_t *buf, size_t cap, const struct nc_pkt *p);

/* Parses and checks a packet; payload points into buf. Returns false for
 * anything malformed (lengths, version, checksum). */
bool nc_pkt_parse(const uint8_t *buf, size_t len, struct nc_pkt *out);

/* Sets an address from text ("10.0.0.1" or "fd00::1"). */
void nc_pkt_addr(struct nc_pkt *p, const char *src, const char *dst);

/* Internet checksum helpers, exposed for hostile-packet tests. */
uint16_t nc_pkt_checksum(const void *data, size_t len, uint32_t seed);

#endif
