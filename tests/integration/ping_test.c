/*
 * The kernel pings the stack across the TUN: 1000 ICMP echoes and 1000
 * ICMPv6 echoes, none lost. ping's own summary is the evidence; the test
 * also checks the phy counted the traffic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "tests/testbed/testbed.h"

static struct nc_testbed tb;

static int setup(void **state)
{
	(void)state;
	return nc_testbed_start(&tb, "ping", 7) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	nc_testbed_stop(&tb);
	return 0;
}

static void ping_1000(const char *family, const char *addr)
{
	static char out[8192];
	char *argv[] = {"ping", (char *)family, "-q", "-c", "1000",
	                "-i",   "0.002",        "-W", "5",  "-w",
	                "60",   (char *)addr,   NULL};
	int status = nc_testbed_run(&tb, argv, out, sizeof(out), 90);
	printf("%s", out);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "1000 packets transmitted, 1000 received"));
}

static void thousand_echoes_each_family_none_lost(void **state)
{
	(void)state;
	struct nc_phy_counters before = nc_testbed_phy_counters(&tb);
	ping_1000("-4", NC_TB_STACK4);
	ping_1000("-6", NC_TB_STACK6);
	struct nc_phy_counters after = nc_testbed_phy_counters(&tb);
	assert_true(after.rx_packets - before.rx_packets >= 2000);
	assert_true(after.tx_packets - before.tx_packets >= 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(thousand_echoes_each_family_none_lost),
	};
	return cmocka_run_group_tests_name("ping", tests, setup, teardown);
}
