/* pkt: see pkt.h. Written for clarity over speed: tests only. */
#include "tests/pkt/pkt.h"

#include <arpa/inet.h>
#include <string.h>

static uint32_t sum16(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *b = data;
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

uint16_t nc_pkt_checksum(const void *data, size_t len, uint32_t seed)
{
	return fold(sum16(data, len, seed));
}

static size_t addr_len(int family)
{
	return family == 4 ? 4 : 16;
}

static uint32_t pseudo_sum(const struct nc_pkt *p, size_t l4_len)
{
	size_t al = addr_len(p->family);
	uint32_t s = sum16(p->src, al, 0);
	s = sum16(p->dst, al, s);
	return s + p->proto + (uint32_t)l4_len;
}

static size_t ip_header_len(int family)
{
	return family == 4 ? 20 : 40;
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

static uint16_t get16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)get16(b) << 16 | get16(b + 2);
}

static void write_ip(uint8_t *b, const struct nc_pkt *p, size_t l4_len)
{
	if (p->family == 4) {
		memset(b, 0, 20);
		b[0] = 0x45;
		put16(b + 2, (uint16_t)(20 + l4_len));
		b[8] = 64;
		b[9] = p->proto;
		memcpy(b + 12, p->src, 4);
		memcpy(b + 16, p->dst, 4);
		put16(b + 10, nc_pkt_checksum(b, 20, 0));
		return;
	}
	memset(b, 0, 40);
	b[0] = 0x60;
	put16(b + 4, (uint16_t)l4_len);
	b[6] = p->proto;
	b[7] = 64;
	memcpy(b + 8, p->src, 16);
	memcpy(b + 24, p->dst, 16);
}

static size_t l4_header_len(const struct nc_pkt *p)
{
	if (p->proto == 6)
		return p->mss ? 24 : 20;
	return 8; /* UDP, ICMP echo */
}

static void write_l4(uint8_t *b, const struct nc_pkt *p)
{
	size_t hl = l4_header_len(p);
	memset(b, 0, hl);
	if (p->proto == 6) {
		put16(b, p->sport);
		put16(b + 2, p->dport);
		put32(b + 4, p->seq);
		put32(b + 8, p->ack);
		b[12] = (uint8_t)((hl / 4) << 4);
		b[13] = p->flags;
		put16(b + 14, p->window);
		if (p->mss) {
			b[20] = 2;
			b[21] = 4;
			put16(b + 22, p->mss);
		}
	} else if (p->proto == 17) {
		put16(b, p->sport);
		put16(b + 2, p->dport);
		put16(b + 4, (uint16_t)(8 + p->len));
	} else {
		b[0] = p->flags; /* type */
		put16(b + 4, p->sport);
		put16(b + 6, (uint16_t)p->seq);
	}
}

static size_t checksum_offset(uint8_t proto)
{
	return proto == 6 ? 16 : proto == 17 ? 6 : 2;
}

size_t nc_pkt_build(uint8_t *buf, size_t cap, const struct nc_pkt *p)
{
	size_t ih = ip_header_len(p->family);
	size_t l4 = l4_header_len(p) + p->len;
	if (ih + l4 > cap || ih + l4 > 0xffff)
		return 0;
	write_ip(buf, p, l4);
	uint8_t *t = buf + ih;
	write_l4(t, p);
	if (p->len > 0)
		memcpy(t + l4_header_len(p), p->payload, p->len);
	uint32_t seed = p->proto == 1 ? 0 : pseudo_sum(p, l4);
	uint16_t sum = nc_pkt_checksum(t, l4, seed);
	if (p->proto == 17 && sum == 0)
		sum = 0xffff;
	put16(t + checksum_offset(p->proto), sum);
	return ih + l4;
}

static bool parse_ip(const uint8_t *b, size_t len, struct nc_pkt *o, size_t *ih,
                     size_t *l4)
{
	if (len < 20)
		return false;
	if (b[0] >> 4 == 4) {
		*ih = (size_t)(b[0] & 15) * 4;
		if (*ih < 20 || get16(b + 2) != len || *ih > len ||
		    nc_pkt_checksum(b, *ih, 0) != 0)
			return false;
		o->family = 4;
		o->proto = b[9];
		memcpy(o->src, b + 12, 4);
		memcpy(o->dst, b + 16, 4);
	} else if (b[0] >> 4 == 6) {
		*ih = 40;
		if (len < 40 || (size_t)get16(b + 4) + 40 != len)
			return false;
		o->family = 6;
		o->proto = b[6];
		memcpy(o->src, b + 8, 16);
		memcpy(o->dst, b + 24, 16);
	} else {
		return false;
	}
	*l4 = len - *ih;
	return true;
}

static bool parse_l4(const uint8_t *t, size_t l4, struct nc_pkt *o)
{
	size_t hl = 8;
	if (o->proto == 6) {
		if (l4 < 20 || (size_t)(t[12] >> 4) * 4 > l4)
			return false;
		hl = (size_t)(t[12] >> 4) * 4;
		o->seq = get32(t + 4);
		o->ack = get32(t + 8);
		o->flags = t[13];
		o->window = get16(t + 14);
		for (size_t i = 20; i + 4 <= hl && t[i] != 0;
		     i += t[i] == 1 ? 1 : t[i + 1])
			if (t[i] == 2 && t[i + 1] == 4)
				o->mss = get16(t + i + 2);
			else if (t[i] != 1 && t[i + 1] < 2)
				return false;
	} else if (l4 < 8) {
		return false;
	}
	if (o->proto == 6 || o->proto == 17) {
		o->sport = get16(t);
		o->dport = get16(t + 2);
	} else {
		o->flags = t[0];
		o->sport = get16(t + 4);
		o->seq = get16(t + 6);
	}
	o->payload = t + hl;
	o->len = l4 - hl;
	return true;
}

bool nc_pkt_parse(const uint8_t *buf, size_t len, struct nc_pkt *out)
{
	memset(out, 0, sizeof(*out));
	size_t ih, l4;
	if (!parse_ip(buf, len, out, &ih, &l4))
		return false;
	const uint8_t *t = buf + ih;
	uint32_t seed = out->proto == 1 ? 0 : pseudo_sum(out, l4);
	if (nc_pkt_checksum(t, l4, seed) != 0)
		return false;
	return parse_l4(t, l4, out);
}

void nc_pkt_addr(struct nc_pkt *p, const char *src, const char *dst)
{
	int af = p->family == 4 ? AF_INET : AF_INET6;
	inet_pton(af, src, p->src);
	inet_pton(af, dst, p->dst);
}
