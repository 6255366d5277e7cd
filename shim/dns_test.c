/* dns_test: the shim's DNS messages (shim/dns.c) on known answers. */
#include "shim/nci_shim.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

/* A response to "dns.sandbox.test" (id 0x1234, qtype qt): a CNAME to
 * real.sandbox.test then one address record of type rt. */
static size_t response(unsigned char *m, int qt, int rt, unsigned int flags)
{
	static const unsigned char head[] = {
	    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00,
	    0x00, 0x00, 0x03, 'd',  'n',  's',  0x07, 's',  'a',  'n',
	    'd',  'b',  'o',  'x',  0x04, 't',  'e',  's',  't',  0x00};
	static const unsigned char cname[] = {
	    0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c,
	    0x00, 0x07, 0x04, 'r',  'e',  'a',  'l',  0xc0, 0x10};
	size_t n = 0;
	memcpy(m, head, sizeof(head));
	m[2] = (unsigned char)(flags >> 8);
	m[3] = (unsigned char)flags;
	n = sizeof(head);
	unsigned char q[4] = {0, (unsigned char)qt, 0, 1};
	memcpy(m + n, q, 4);
	n += 4;
	memcpy(m + n, cname, sizeof(cname));
	n += sizeof(cname);
	unsigned char rr[12] = {0xc0, 0x2e, 0, (unsigned char)rt, 0, 1, 0, 0,
	                        0,    60,   0, rt == 1 ? 4 : 16};
	memcpy(m + n, rr, sizeof(rr));
	n += sizeof(rr);
	for (int i = 0; i < (rt == 1 ? 4 : 16); i++)
		m[n++] = (unsigned char)(10 + i);
	return n;
}

static void query_encodes_labels(void **state)
{
	(void)state;
	unsigned char q[300];
	int n = nci_dns_query(0xbeef, "a.bc.", 28, q, sizeof(q));
	static const unsigned char want[] = {
	    0xbe, 0xef, 0x01, 0x00, 0,   1,   0, 0, 0,  0, 0,
	    0,    1,    'a',  2,    'b', 'c', 0, 0, 28, 0, 1};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(q, want, sizeof(want));
	assert_int_equal(nci_dns_query(1, "a..b", 1, q, sizeof(q)), -1);
	assert_int_equal(nci_dns_query(1, "", 1, q, sizeof(q)), -1);
}

static void parse_takes_the_address_after_a_cname(void **state)
{
	(void)state;
	unsigned char m[512];
	struct nci_dns_answer a;
	size_t n = response(m, 1, 1, 0x8180);
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 1, &a), 0);
	assert_int_equal(a.count, 1);
	assert_int_equal(a.family[0], AF_INET);
	assert_int_equal(a.addr[0][0], 10);
	assert_int_equal(a.addr[0][3], 13);
	n = response(m, 28, 28, 0x8180);
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 28, &a), 0);
	assert_int_equal(a.count, 1);
	assert_int_equal(a.family[0], AF_INET6);
}

static void parse_refuses_what_is_not_our_answer(void **state)
{
	(void)state;
	unsigned char m[512];
	struct nci_dns_answer a;
	size_t n = response(m, 1, 1, 0x8180);
	assert_int_equal(nci_dns_parse(m, n, 0x1235, 1, &a), -1);  /* id */
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 28, &a), -1); /* type */
	for (size_t cut = 0; cut < n; cut++) /* every truncation */
		assert_int_equal(nci_dns_parse(m, cut, 0x1234, 1, &a), -1);
	n = response(m, 1, 1, 0x8380); /* TC */
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 1, &a), -1);
	n = response(m, 1, 1, 0x0100); /* a query, not a response */
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 1, &a), -1);
}

static void parse_skips_records_of_other_types(void **state)
{
	(void)state;
	unsigned char m[512];
	struct nci_dns_answer a;
	size_t n = response(m, 1, 28, 0x8180); /* AAAA in an A answer */
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 1, &a), 0);
	assert_int_equal(a.count, 0);
	n = response(m, 1, 1, 0x8183); /* NXDOMAIN is reported */
	assert_int_equal(nci_dns_parse(m, n, 0x1234, 1, &a), 0);
	assert_int_equal(a.rcode, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(query_encodes_labels),
	    cmocka_unit_test(parse_takes_the_address_after_a_cname),
	    cmocka_unit_test(parse_refuses_what_is_not_our_answer),
	    cmocka_unit_test(parse_skips_records_of_other_types),
	};
	return cmocka_run_group_tests_name("shim_dns", tests, NULL, NULL);
}
