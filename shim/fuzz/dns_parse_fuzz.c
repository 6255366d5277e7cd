/*
 * Fuzzes the shim's DNS response parser (shim/dns.c), which reads
 * datagrams anyone on the path may forge.
 *
 * Input: byte 0 picks the question type (even: A, odd: AAAA), bytes 1-2
 * the id we expect; the rest is the response.
 *
 * Properties:
 *   - the parser reads only the response's bytes (ASan: the response is
 *     copied into an exact-size heap buffer) and terminates;
 *   - it returns 0 or -1; on 0 the count is within bounds, every address
 *     has the asked family, and the rcode is 0-15;
 *   - a message whose id is not the expected one is always refused;
 *   - parsing is deterministic: a second parse gives the same answer;
 *   - a query the builder makes for a name from the input (when it
 *     accepts the name) parses back as "not a response" (QR clear).
 */
#include "shim/nci_shim.h"
#include "tools/fuzz/fuzz.h"

#include <stdlib.h>
#include <string.h>

/* dns.sandbox.test: CNAME to real.sandbox.test, then an A record. */
static const uint8_t seed_cname_a[] = {
    0x00, 0x12, 0x34,
    /* header: id 0x1234, QR RD RA, 1 question, 2 answers */
    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
    /* question */
    0x03, 'd', 'n', 's', 0x07, 's', 'a', 'n', 'd', 'b', 'o', 'x', 0x04, 't',
    'e', 's', 't', 0x00, 0x00, 0x01, 0x00, 0x01,
    /* CNAME */
    0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x07,
    0x04, 'r', 'e', 'a', 'l', 0xc0, 0x10,
    /* A */
    0xc0, 0x2e, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 10,
    77, 0, 1};

static const uint8_t seed_aaaa[] = {
    0x01, 0xab, 0xcd, 0xab, 0xcd, 0x81, 0x80, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 'x',  0x00, 0x00, 0x1c,
    0x00, 0x01, 0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x3c, 0x00, 0x10, 0xfd, 0x77, 0,    0,    0,    0,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    1};

static const uint8_t seed_nxdomain[] = {
    0x00, 0x00, 0x07, 0x00, 0x07, 0x81, 0x83, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x02, 'n',  'x',  0x00, 0x00, 0x01, 0x00, 0x01};

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_cname_a),
    FUZZ_SEED(seed_aaaa),
    FUZZ_SEED(seed_nxdomain),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);

static void check_answer(int r, const struct nci_dns_answer *a, int qtype)
{
	FUZZ_CHECK(r == 0 || r == -1);
	if (r != 0)
		return;
	FUZZ_CHECK(a->count >= 0 && a->count <= NCI_DNS_MAX_ADDRS);
	FUZZ_CHECK(a->rcode >= 0 && a->rcode <= 15);
	for (int i = 0; i < a->count; i++)
		FUZZ_CHECK(a->family[i] == (qtype == 1 ? AF_INET : AF_INET6));
}

static void check_query_roundtrip(const uint8_t *msg, size_t len)
{
	char name[300];
	size_t n = len < sizeof(name) - 1 ? len : sizeof(name) - 1;
	memcpy(name, msg, n);
	name[n] = '\0';
	unsigned char q[300];
	int qn = nci_dns_query(7, name, 1, q, sizeof(q));
	FUZZ_CHECK(qn == -1 || (qn >= 17 && (size_t)qn <= sizeof(q)));
	struct nci_dns_answer a;
	if (qn > 0)
		FUZZ_CHECK(nci_dns_parse(q, (size_t)qn, 7, 1, &a) == -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	int qtype = (data[0] & 1) ? 28 : 1;
	unsigned short id = (unsigned short)(data[1] << 8 | data[2]);
	size_t len = size - 3;
	uint8_t *msg = malloc(len ? len : 1);
	FUZZ_CHECK(msg != NULL);
	memcpy(msg, data + 3, len);

	struct nci_dns_answer a, b;
	int r = nci_dns_parse(msg, len, id, qtype, &a);
	check_answer(r, &a, qtype);
	int again = nci_dns_parse(msg, len, id, qtype, &b);
	FUZZ_CHECK(again == r && memcmp(&a, &b, sizeof(a)) == 0);
	FUZZ_CHECK(nci_dns_parse(msg, len, (unsigned short)(id + 1), qtype,
	                         &b) == -1 ||
	           (len >= 2 && (msg[0] << 8 | msg[1]) == id + 1));
	check_query_roundtrip(msg, len);
	free(msg);
	return 0;
}
