/*
 * dns.c: DNS messages for the shim's resolver: build an A/AAAA query,
 * parse the response (RFC 1035, section 4).
 *
 * The response is untrusted input (anyone who can send a datagram to our
 * port may answer), so the parser reads only within `len`, never follows
 * compression pointers (it only skips names: the answer's owner name does
 * not matter once the id and the question's type match), takes only
 * records of the asked type and class IN with the exact address length,
 * and refuses truncated (TC) or malformed messages as a whole. It is
 * fuzzed by shim/fuzz/dns_parse_fuzz.c.
 *
 * What it does not do: TCP fallback for truncated answers, EDNS0,
 * DNSSEC, or checking the question's name (the random id and the port
 * are the defence, as in most stub resolvers).
 */
#include "shim/nci_shim.h"

#include <string.h>

enum { HDR = 12, CLASS_IN = 1, FLAG_QR = 0x8000, FLAG_TC = 0x0200 };

static void put16(unsigned char *p, unsigned int v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static unsigned int get16(const unsigned char *p)
{
	return (unsigned int)p[0] << 8 | p[1];
}

/* Writes name as labels at out; the length written or -1. */
static int put_name(const char *name, unsigned char *out, size_t cap)
{
	size_t at = 0, n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--; /* absolute form */
	if (n == 0 || n > 253)
		return -1;
	for (size_t start = 0; start < n;) {
		size_t end = start;
		while (end < n && name[end] != '.')
			end++;
		size_t label = end - start;
		if (label == 0 || label > 63 || at + 1 + label + 1 > cap)
			return -1;
		out[at++] = (unsigned char)label;
		memcpy(out + at, name + start, label);
		at += label;
		start = end + 1;
	}
	out[at++] = 0;
	return (int)at;
}

int nci_dns_query(unsigned short id, const char *name, int qtype,
                  unsigned char *buf, size_t cap)
{
	if (cap < HDR + 4)
		return -1;
	memset(buf, 0, HDR);
	put16(buf, id);
	put16(buf + 2, 0x0100); /* standard query, recursion desired */
	put16(buf + 4, 1);      /* one question */
	int n = put_name(name, buf + HDR, cap - HDR - 4);
	if (n < 0)
		return -1;
	unsigned char *q = buf + HDR + n;
	put16(q, (unsigned int)qtype);
	put16(q + 2, CLASS_IN);
	return HDR + n + 4;
}

/* Skips the name at *at; -1 if it runs past len or is malformed. */
static int skip_name(const unsigned char *msg, size_t len, size_t *at)
{
	for (;;) {
		if (*at >= len)
			return -1;
		unsigned int b = msg[*at];
		if ((b & 0xc0) == 0xc0) {
			if (*at + 2 > len)
				return -1;
			*at += 2; /* a pointer ends the name */
			return 0;
		}
		if (b & 0xc0)
			return -1; /* reserved label types */
		*at += 1 + b;
		if (b == 0)
			return 0;
	}
}

static int take_answer(const unsigned char *msg, size_t len, size_t *at,
                       int qtype, struct nci_dns_answer *out)
{
	if (skip_name(msg, len, at) != 0 || *at + 10 > len)
		return -1;
	const unsigned char *rr = msg + *at;
	unsigned int type = get16(rr), cls = get16(rr + 2);
	size_t rdlen = get16(rr + 8);
	*at += 10;
	if (rdlen > len - *at)
		return -1;
	size_t want = qtype == 1 ? 4 : 16;
	if ((int)type == qtype && cls == CLASS_IN && rdlen == want &&
	    out->count < NCI_DNS_MAX_ADDRS) {
		out->family[out->count] = qtype == 1 ? AF_INET : AF_INET6;
		memcpy(out->addr[out->count], msg + *at, want);
		out->count++;
	}
	*at += rdlen;
	return 0;
}

int nci_dns_parse(const unsigned char *msg, size_t len, unsigned short id,
                  int qtype, struct nci_dns_answer *out)
{
	memset(out, 0, sizeof(*out));
	if (msg == NULL || len < HDR || get16(msg) != id)
		return -1;
	unsigned int flags = get16(msg + 2);
	if (!(flags & FLAG_QR) || (flags & FLAG_TC) || ((flags >> 11) & 0xf))
		return -1;
	out->rcode = (int)(flags & 0xf);
	if (get16(msg + 4) != 1)
		return -1;
	size_t at = HDR;
	if (skip_name(msg, len, &at) != 0 || at + 4 > len ||
	    (int)get16(msg + at) != qtype || get16(msg + at + 2) != CLASS_IN)
		return -1;
	at += 4;
	unsigned int answers = get16(msg + 6);
	for (unsigned int i = 0; i < answers; i++)
		if (take_answer(msg, len, &at, qtype, out) != 0)
			return -1;
	return 0;
}
