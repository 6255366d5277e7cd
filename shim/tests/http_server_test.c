/*
 * http_server_test: an unmodified `python3 -m http.server` runs under the
 * shim in an empty network namespace, bound to the stack's address
 * (10.77.0.2); the kernel's curl in the testbed namespace downloads a
 * pattern file from it. Every byte is checked; the sha256 and the rate are
 * reported. Python's server uses a selector (poll) for its listener,
 * accept4, SOCK_CLOEXEC, setsockopt, threads for requests and send.
 */
#include "shim/testing/shimtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define SEED 66

static struct nc_testbed tb;
static char dir[64];

static int setup(void **state)
{
	(void)state;
	return st_bed_start(&tb, "shhttp", dir);
}

static int teardown(void **state)
{
	(void)state;
	st_bed_stop(&tb, dir);
	return 0;
}

/* Kernel-side curl fetches url into out: its exit code. */
static int kernel_curl(const char *url, const char *out, int64_t *ms)
{
	static struct st_proc curl;
	char *cmd[] = {"/usr/bin/curl",
	               "-sS",
	               "--fail",
	               "-o",
	               (char *)out,
	               "-w",
	               "%{size_download} bytes in %{time_total} s\n",
	               (char *)url,
	               NULL};
	struct st_spawn_opts plain = {.shim = false};
	int64_t t0 = st_now_ms();
	if (st_spawn(&curl, &plain, cmd) != 0)
		return -1;
	int rc = st_finish(&curl, st_now_ms() + 180000);
	*ms = st_now_ms() - t0 + 1;
	printf("kernel curl: exit %d after %lld ms: %s", rc, (long long)*ms,
	       curl.out);
	return rc;
}

static void python_server_in_the_sandbox_serves_a_file(void **state)
{
	(void)state;
	uint64_t size = 64ull << 20;
	char blob[128], out[128], port[16], url[128];
	snprintf(blob, sizeof(blob), "%s/blob", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	uint16_t p = st_port(1);
	snprintf(port, sizeof(port), "%u", p);
	snprintf(url, sizeof(url), "http://%s:%u/blob", NC_TB_STACK4, p);
	assert_int_equal(st_write_pattern(blob, SEED, size), 0);

	static struct st_proc server;
	char *srv[] = {"/usr/bin/python3", "-m",         "http.server",
	               "--bind",           NC_TB_STACK4, port,
	               "--directory",      dir,          NULL};
	struct st_spawn_opts shim = {.shim = true, .broker = tb.broker_socket};
	assert_int_equal(st_spawn(&server, &shim, srv), 0);
	int up =
	    st_wait_listening(NC_TB_STACK4, p, &server, st_now_ms() + 20000);
	if (up != 0)
		printf("server not up (%d): %s\n", up, server.out);
	assert_int_equal(up, 0);

	int64_t ms = 1;
	for (int round = 0; round < 2; round++) {
		assert_int_equal(kernel_curl(url, out, &ms), 0);
		uint64_t bad;
		int ok = st_check_pattern(out, SEED, size, &bad);
		if (ok != 0)
			printf("first wrong byte (or length) at %llu\n",
			       (unsigned long long)bad);
		assert_int_equal(ok, 0);
		char hex[65];
		assert_int_equal(st_sha256_file(out, hex), 0);
		printf("round %d: verified %llu MiB, sha256 %s, %.1f MiB/s\n",
		       round, (unsigned long long)(size >> 20), hex,
		       (double)size / 1048576.0 / ((double)ms / 1000.0));
	}
	st_pump(&server);
	printf("server log:\n%s", server.out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(python_server_in_the_sandbox_serves_a_file),
	};
	return cmocka_run_group_tests_name("shim_http_server", tests, setup,
	                                   teardown);
}
