/*
 * TCP through the stack: a kernel-side client pushes 256 MiB through the
 * core's echo service and back, every byte verified, over IPv4; a shorter
 * run over IPv6. Then the same 256 MiB while the phy driver is SIGKILLed
 * and restarted five times: the transfer completes, every byte correct, and
 * the connection is never reset (no connection state lives in the phy).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <time.h>

#include "tests/integration/echo_client.h"
#include "tests/testbed/testbed.h"

#define ECHO_PORT 7
#define MIB       (1024ull * 1024)

static struct nc_testbed tb;

static int setup(void **state)
{
	(void)state;
	if (nc_testbed_start(&tb, "tcpecho", ECHO_PORT) != 0)
		return -1;
	return nc_testbed_enter(&tb) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	nc_testbed_stop(&tb);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void echo_and_check(const char *addr, uint64_t bytes, uint64_t every,
                           nc_echo_progress_fn fn, void *ctx)
{
	struct nc_echo_run run;
	double start = now_s();
	int rc = nc_echo_tcp(addr, ECHO_PORT, bytes, every, fn, ctx, 30, &run);
	double took = now_s() - start;
	printf("%s: %llu MiB echoed and verified in %.2f s (%.0f MiB/s)%s%s\n",
	       addr, (unsigned long long)(run.verified / MIB), took,
	       (double)run.verified / MIB / took, rc ? ": " : "",
	       rc ? run.problem : "");
	assert_int_equal(rc, 0);
	assert_int_equal(run.verified, bytes);
}

static void ipv4_256_mib_every_byte_verified(void **state)
{
	(void)state;
	echo_and_check(NC_TB_STACK4, 256 * MIB, 0, NULL, NULL);
}

static void ipv6_64_mib_every_byte_verified(void **state)
{
	(void)state;
	echo_and_check(NC_TB_STACK6, 64 * MIB, 0, NULL, NULL);
}

struct kills {
	int done;
	int wanted;
	double worst_restart_s;
};

static void kill_and_restart_phy(uint64_t verified, void *ctx)
{
	struct kills *k = ctx;
	(void)verified;
	if (k->done == k->wanted)
		return;
	double start = now_s();
	assert_int_equal(nc_testbed_kill_phy(&tb), 0);
	assert_int_equal(nc_testbed_start_phy(&tb), 0);
	double took = now_s() - start;
	if (took > k->worst_restart_s)
		k->worst_restart_s = took;
	k->done++;
}

static void phy_killed_five_times_connection_survives(void **state)
{
	(void)state;
	struct kills k = {.wanted = 5};
	struct nc_phy_counters before = nc_testbed_phy_counters(&tb);
	echo_and_check(NC_TB_STACK4, 256 * MIB, 40 * MIB, kill_and_restart_phy,
	               &k);
	printf("phy killed %d times; slowest restart %.3f s\n", k.done,
	       k.worst_restart_s);
	assert_int_equal(k.done, 5);
	struct nc_phy_counters after = nc_testbed_phy_counters(&tb);
	assert_int_equal(after.restarts - before.restarts, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ipv4_256_mib_every_byte_verified),
	    cmocka_unit_test(ipv6_64_mib_every_byte_verified),
	    cmocka_unit_test(phy_killed_five_times_connection_survives),
	};
	return cmocka_run_group_tests_name("tcp_echo", tests, setup, teardown);
}
