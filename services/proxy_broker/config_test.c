/*
 * The config file: defaults, the format, every kind of refusal (each must
 * name its line and its problem), the policy rules' order and defaults,
 * and that the writer's output parses back to the same config.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "services/proxy_broker/broker.h"

static int parse(struct nc_broker_config *c, const char *text, char *err)
{
	nc_broker_config_default(c);
	return nc_broker_config_parse(c, text, strlen(text), err,
	                              NC_BROKER_ERR_MAX);
}

static struct nc_msg_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d,
                             uint16_t port)
{
	struct nc_msg_addr x = {.family = AF_INET, .port = port};
	x.addr[0] = a;
	x.addr[1] = b;
	x.addr[2] = c;
	x.addr[3] = d;
	return x;
}

static struct nc_msg_addr v6(uint8_t first, uint8_t last, uint16_t port)
{
	struct nc_msg_addr x = {.family = AF_INET6, .port = port};
	x.addr[0] = first;
	x.addr[15] = last;
	return x;
}

static void defaults_are_the_documented_ones(void **state)
{
	(void)state;
	struct nc_broker_config c;
	char err[NC_BROKER_ERR_MAX];
	assert_int_equal(parse(&c, "", err), 0);
	assert_int_equal(c.region.max_sockets, 64);
	assert_int_equal(c.region.ring_slots, 64);
	assert_int_equal(c.region.buf_count, 512);
	assert_int_equal(c.region.buf_size, 16384);
	assert_int_equal(c.max_clients, 256);
	assert_int_equal(c.max_backlog, 128);
	assert_int_equal(c.max_pending, 1024);
	assert_int_equal(c.memory_limit, 2ull << 30);
	assert_int_equal(c.attach_timeout_ms, 5000);
	assert_int_equal(c.core_timeout_ms, 5000);
	assert_int_equal(c.uid_count + c.connect_count + c.bind_count, 0);
	assert_true(nc_broker_region_bytes(&c) > 512u * 16384);
}

static void a_full_file_parses(void **state)
{
	(void)state;
	const char *text = "# netcore broker\n"
	                   "\n"
	                   "max_sockets 32   # per client\r\n"
	                   "\tbuffer_count\t256\n"
	                   "buffer_size 8192\n"
	                   "ring_slots 128\n"
	                   "max_clients 10\n"
	                   "max_backlog 64\n"
	                   "max_pending 100\n"
	                   "memory_limit 1G\n"
	                   "attach_timeout_ms 250\n"
	                   "core_timeout_ms 1500\n"
	                   "allow_uid 1000-1999\n"
	                   "allow_uid 0\n"
	                   "allow_connect 10.1.0.0/16 443\n"
	                   "deny_connect 10.0.0.0/8\n"
	                   "deny_connect fd00::/8 1-1023\n"
	                   "allow_bind 80\n"
	                   "deny_bind any"; /* no final newline */
	struct nc_broker_config c;
	char err[NC_BROKER_ERR_MAX];
	int rc = parse(&c, text, err);
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(c.region.max_sockets, 32);
	assert_int_equal(c.region.buf_count, 256);
	assert_int_equal(c.region.buf_size, 8192);
	assert_int_equal(c.region.ring_slots, 128);
	assert_int_equal(c.max_clients, 10);
	assert_int_equal(c.max_backlog, 64);
	assert_int_equal(c.max_pending, 100);
	assert_int_equal(c.memory_limit, 1ull << 30);
	assert_int_equal(c.attach_timeout_ms, 250);
	assert_int_equal(c.core_timeout_ms, 1500);
	assert_int_equal(c.uid_count, 2);
	assert_int_equal(c.uids[0].lo, 1000);
	assert_int_equal(c.uids[0].hi, 1999);
	assert_int_equal(c.connect_count, 3);
	assert_int_equal(c.connect[0].allow, 1);
	assert_int_equal(c.connect[0].family, 4);
	assert_int_equal(c.connect[0].prefix_len, 16);
	assert_int_equal(c.connect[0].port_lo, 443);
	assert_int_equal(c.connect[0].port_hi, 443);
	assert_int_equal(c.connect[1].port_lo, 0);
	assert_int_equal(c.connect[1].port_hi, 65535);
	assert_int_equal(c.connect[2].family, 6);
	assert_int_equal(c.bind_count, 2);
}

struct bad {
	const char *text;
	const char *want; /* must appear in the message */
};

static void every_refusal_names_the_line_and_the_problem(void **state)
{
	(void)state;
	static const struct bad cases[] = {
	    {"max_sokets 4\n", "line 1: unknown setting 'max_sokets'"},
	    {"\n\nmax_sockets\n", "line 3: max_sockets takes exactly one"},
	    {"max_sockets 4 5\n", "line 1: max_sockets takes exactly one"},
	    {"max_sockets four\n", "line 1: max_sockets: 'four' is not a"},
	    {"max_sockets -4\n", "is not a number"},
	    {"max_sockets 0\n",
	     "line 1: max_sockets: 0 is out of range 1-4096"},
	    {"max_sockets 99999999999999999999999\n", "is not a number"},
	    {"ring_slots 100\n",
	     "line 1: ring_slots: 100 is not a power of two"},
	    {"buffer_size 5000\n", "buffer_size: 5000 is not a multiple of 64"},
	    {"buffer_size 1024\n", "out of range 2048-1048576"},
	    {"memory_limit 12X\n", "memory_limit: '12X' is not a number"},
	    {"memory_limit 1K\n", "memory_limit: 1K is out of range"},
	    {"max_sockets 8\n# c\nmax_sockets 9\n",
	     "line 3: max_sockets given twice (first on line 1)"},
	    {"allow_connect\n", "line 1: allow_connect takes a prefix"},
	    {"allow_connect 10.0.0.0/8 80 90\n", "takes a prefix"},
	    {"allow_connect 10.0.0/8\n", "'10.0.0' is not an IPv4 or IPv6"},
	    {"allow_connect 10.0.0.0/33\n", "prefix length '33' is not 0-32"},
	    {"allow_connect fd00::/129\n", "is not 0-128"},
	    {"allow_connect 10.1.0.0/8\n", "has bits set after the first 8"},
	    {"deny_connect any 70000\n", "'70000' is not a port"},
	    {"deny_connect any 90-80\n", "'90-80' is not a port"},
	    {"allow_bind\n", "allow_bind takes one port"},
	    {"allow_bind 10.0.0.0/8\n", "is not a port"},
	    {"allow_uid bob\n", "'bob' is not a uid"},
	    {"allow_uid 5-4\n", "is not a uid"},
	    {"a b c d e\n", "line 1: too many fields"},
	    {"max_sockets 8\nbuffer_count 1048576\nbuffer_size 1048576\n",
	     "line 3: one client's region needs"},
	    {"memory_limit 2M\n\nbuffer_count 4096\n",
	     "line 3: one client's region needs"},
	    {"max_sockets 8\n\0max_sockets 9\n", "line 2: NUL byte"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct nc_broker_config c;
		char err[NC_BROKER_ERR_MAX];
		size_t len = strlen(cases[i].text);
		if (strstr(cases[i].want, "NUL") != NULL)
			len += 1 + strlen(cases[i].text + len + 1);
		nc_broker_config_default(&c);
		int rc = nc_broker_config_parse(&c, cases[i].text, len, err,
		                                sizeof(err));
		if (rc != -EINVAL || strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu (%s): got %d '%s', want '%s'", i,
			         cases[i].text, rc, err, cases[i].want);
	}
}

static void rules_are_first_match_then_defaults(void **state)
{
	(void)state;
	struct nc_broker_config c;
	char err[NC_BROKER_ERR_MAX];
	assert_int_equal(parse(&c,
	                       "allow_connect 10.1.0.0/16 443\n"
	                       "deny_connect 10.0.0.0/8\n"
	                       "deny_connect 2001:db8::/32 any\n",
	                       err),
	                 0);
	struct nc_msg_addr a = v4(10, 1, 9, 9, 443);
	assert_int_equal(nc_broker_connect_allowed(&c, &a), 0);
	a = v4(10, 1, 9, 9, 80);
	assert_int_equal(nc_broker_connect_allowed(&c, &a), -EACCES);
	a = v4(11, 0, 0, 1, 80); /* no rule: the default allows */
	assert_int_equal(nc_broker_connect_allowed(&c, &a), 0);
	struct nc_msg_addr b = v6(0x20, 1, 80);
	b.addr[1] = 0x01;
	b.addr[2] = 0x0d;
	b.addr[3] = 0xb8;
	assert_int_equal(nc_broker_connect_allowed(&c, &b), -EACCES);
	b.addr[3] = 0xb9;
	assert_int_equal(nc_broker_connect_allowed(&c, &b), 0);
	/* "Only these": end with a deny of everything. */
	assert_int_equal(parse(&c,
	                       "allow_connect 192.0.2.0/24 53\n"
	                       "deny_connect any\n",
	                       err),
	                 0);
	a = v4(192, 0, 2, 7, 53);
	assert_int_equal(nc_broker_connect_allowed(&c, &a), 0);
	a = v4(192, 0, 2, 7, 54);
	assert_int_equal(nc_broker_connect_allowed(&c, &a), -EACCES);
	b = v6(0xfe, 1, 53);
	assert_int_equal(nc_broker_connect_allowed(&c, &b), -EACCES);
	/* AF_UNSPEC (dissolve) is always fine; other families are not. */
	struct nc_msg_addr none = {0};
	assert_int_equal(nc_broker_connect_allowed(&c, &none), 0);
	none.family = AF_UNIX;
	assert_int_equal(nc_broker_connect_allowed(&c, &none), -EAFNOSUPPORT);
}

static void mapped_ipv6_is_judged_as_ipv4(void **state)
{
	(void)state;
	struct nc_broker_config c;
	char err[NC_BROKER_ERR_MAX];
	assert_int_equal(parse(&c, "deny_connect 10.0.0.0/8\n", err), 0);
	struct nc_msg_addr m = {.family = AF_INET6, .port = 22};
	m.addr[10] = m.addr[11] = 0xff;
	m.addr[12] = 10;
	m.addr[15] = 1;
	assert_int_equal(nc_broker_connect_allowed(&c, &m), -EACCES);
	m.addr[12] = 11;
	assert_int_equal(nc_broker_connect_allowed(&c, &m), 0);
	/* And an IPv6 rule does not match a mapped address. */
	assert_int_equal(parse(&c, "deny_connect ::ffff:0:0/96\n", err), 0);
	assert_int_equal(nc_broker_connect_allowed(&c, &m), 0);
	/* Prefixes that end inside a byte. */
	assert_int_equal(parse(&c, "deny_connect 10.0.128.0/17 any\n", err), 0);
	struct nc_msg_addr a = v4(10, 0, 200, 1, 1);
	assert_int_equal(nc_broker_connect_allowed(&c, &a), -EACCES);
	a = v4(10, 0, 127, 1, 1);
	assert_int_equal(nc_broker_connect_allowed(&c, &a), 0);
}

static void bind_defaults_allow_ephemeral_and_unprivileged(void **state)
{
	(void)state;
	struct nc_broker_config c;
	char err[NC_BROKER_ERR_MAX];
	assert_int_equal(parse(&c, "", err), 0);
	assert_int_equal(nc_broker_bind_allowed(&c, 0), 0);
	assert_int_equal(nc_broker_bind_allowed(&c, 80), -EPERM);
	assert_int_equal(nc_broker_bind_allowed(&c, 1023), -EPERM);
	assert_int_equal(nc_broker_bind_allowed(&c, 1024), 0);
	assert_int_equal(nc_broker_bind_allowed(&c, 65535), 0);
	assert_int_equal(parse(&c, "allow_bind 80\ndeny_bind 8000-8999\n", err),
	                 0);
	assert_int_equal(nc_broker_bind_allowed(&c, 80), 0);
	assert_int_equal(nc_broker_bind_allowed(&c, 81), -EPERM);
	assert_int_equal(nc_broker_bind_allowed(&c, 8080), -EPERM);
	assert_int_equal(nc_broker_bind_allowed(&c, 9000), 0);
	assert_int_equal(parse(&c, "deny_bind 0\n", err), 0);
	assert_int_equal(nc_broker_bind_allowed(&c, 0), -EPERM);
}

static void uid_list_limits_who_attaches(void **state)
{
	(void)state;
	struct nc_broker_config c;
	char err[NC_BROKER_ERR_MAX];
	assert_int_equal(parse(&c, "", err), 0);
	assert_true(nc_broker_uid_allowed(&c, 0));
	assert_true(nc_broker_uid_allowed(&c, 4242));
	assert_int_equal(parse(&c, "allow_uid 1000-1009\nallow_uid 0\n", err),
	                 0);
	assert_true(nc_broker_uid_allowed(&c, 0));
	assert_true(nc_broker_uid_allowed(&c, 1009));
	assert_false(nc_broker_uid_allowed(&c, 1010));
	assert_false(nc_broker_uid_allowed(&c, 1));
}

static void written_config_parses_back_the_same(void **state)
{
	(void)state;
	struct nc_broker_config c, back;
	char err[NC_BROKER_ERR_MAX];
	assert_int_equal(parse(&c,
	                       "max_sockets 16\nmemory_limit 3G\n"
	                       "allow_uid 7\n"
	                       "allow_connect 10.1.0.0/16 443\n"
	                       "deny_connect fe80::/10 1-1023\n"
	                       "deny_connect any\n"
	                       "allow_bind 53\ndeny_bind 0-1023\n",
	                       err),
	                 0);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	nc_broker_config_write(&c, f);
	fclose(f);
	nc_broker_config_default(&back);
	if (nc_broker_config_parse(&back, text, len, err, sizeof(err)) != 0)
		fail_msg("%s\n%s", err, text);
	assert_memory_equal(&c, &back, sizeof(c));
	assert_non_null(strstr(text, "deny_connect fe80::/10 1-1023\n"));
	assert_non_null(strstr(text, "memory_limit 3221225472\n"));
	free(text);
}

static void load_reads_a_file_and_names_it_in_errors(void **state)
{
	(void)state;
	char dir[] = "/tmp/ncbcfg-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64], err[NC_BROKER_ERR_MAX + 64];
	snprintf(path, sizeof(path), "%s/broker.conf", dir);
	struct nc_broker_config c;
	nc_broker_config_default(&c);
	assert_int_equal(nc_broker_config_load(&c, path, err, sizeof(err)),
	                 -ENOENT);
	assert_non_null(strstr(err, path));
	FILE *f = fopen(path, "w");
	fputs("max_sockets 8\nbogus 1\n", f);
	fclose(f);
	assert_int_equal(nc_broker_config_load(&c, path, err, sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "broker.conf: line 2: unknown setting"));
	f = fopen(path, "w");
	fputs("max_sockets 8\n", f);
	fclose(f);
	nc_broker_config_default(&c);
	assert_int_equal(nc_broker_config_load(&c, path, err, sizeof(err)), 0);
	assert_int_equal(c.region.max_sockets, 8);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults_are_the_documented_ones),
	    cmocka_unit_test(a_full_file_parses),
	    cmocka_unit_test(every_refusal_names_the_line_and_the_problem),
	    cmocka_unit_test(rules_are_first_match_then_defaults),
	    cmocka_unit_test(mapped_ipv6_is_judged_as_ipv4),
	    cmocka_unit_test(bind_defaults_allow_ephemeral_and_unprivileged),
	    cmocka_unit_test(uid_list_limits_who_attaches),
	    cmocka_unit_test(written_config_parses_back_the_same),
	    cmocka_unit_test(load_reads_a_file_and_names_it_in_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
