/*
 * curl_get_test: an unmodified /usr/bin/curl in an empty network
 * namespace, under the shim, fetches a file over HTTP from a server on the
 * kernel side of the testbed (python3 -m http.server bound to 10.77.0.1).
 * The file is a deterministic pattern; the test checks every byte of what
 * curl wrote and reports its sha256 and the time taken.
 */
#include "shim/testing/shimtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define SEED 6

static struct nc_testbed tb;
static char dir[64];

static int setup(void **state)
{
	(void)state;
	return st_bed_start(&tb, "shcurl", dir);
}

static int teardown(void **state)
{
	(void)state;
	st_bed_stop(&tb, dir);
	return 0;
}

static uint64_t size_from_env(void)
{
	const char *mib = getenv("SHIM_CURL_MIB");
	return (mib != NULL ? strtoull(mib, NULL, 10) : 100) << 20;
}

static void curl_fetches_a_file_intact(void **state)
{
	(void)state;
	if (st_sanitized()) {
		printf("skipped: curl cannot run with ASan preloaded\n");
		skip();
	}
	uint64_t size = size_from_env();
	char blob[128], out[128], port[16], url[128];
	snprintf(blob, sizeof(blob), "%s/blob", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	uint16_t p = st_port(0);
	snprintf(port, sizeof(port), "%u", p);
	snprintf(url, sizeof(url), "http://%s:%u/blob", NC_TB_KERNEL4, p);
	assert_int_equal(st_write_pattern(blob, SEED, size), 0);

	static struct st_proc server, curl;
	char *srv[] = {"/usr/bin/python3", "-m",          "http.server",
	               "--bind",           NC_TB_KERNEL4, port,
	               "--directory",      dir,           NULL};
	struct st_spawn_opts plain = {.shim = false};
	assert_int_equal(st_spawn(&server, &plain, srv), 0);
	assert_int_equal(
	    st_wait_listening(NC_TB_KERNEL4, p, &server, st_now_ms() + 20000),
	    0);

	char *cmd[] = {"/usr/bin/curl",
	               "-sS",
	               "--fail",
	               "-o",
	               out,
	               "-w",
	               "%{size_download} bytes in %{time_total} s\n",
	               url,
	               NULL};
	struct st_spawn_opts shim = {.shim = true, .broker = tb.broker_socket};
	int64_t t0 = st_now_ms();
	assert_int_equal(st_spawn(&curl, &shim, cmd), 0);
	int rc = st_finish(&curl, st_now_ms() + 180000);
	int64_t ms = st_now_ms() - t0;
	printf("curl: exit %d after %lld ms: %s", rc, (long long)ms, curl.out);
	assert_int_equal(rc, 0);

	uint64_t bad;
	int ok = st_check_pattern(out, SEED, size, &bad);
	if (ok != 0)
		printf("first wrong byte (or length) at %llu of %llu\n",
		       (unsigned long long)bad, (unsigned long long)size);
	assert_int_equal(ok, 0);
	char hex[65];
	assert_int_equal(st_sha256_file(out, hex), 0);
	printf("verified %llu MiB, sha256 %s, %.1f MiB/s\n",
	       (unsigned long long)(size >> 20), hex,
	       (double)size / 1048576.0 / ((double)ms / 1000.0));
}

/* The same over IPv6: a server on fd77::1, curl to http://[fd77::1]. */
static void curl_fetches_over_ipv6(void **state)
{
	(void)state;
	if (st_sanitized()) {
		printf("skipped: curl cannot run with ASan preloaded\n");
		skip();
	}
	uint64_t size = 16ull << 20;
	char blob[128], out[128], port[16], url[128];
	snprintf(blob, sizeof(blob), "%s/blob6", dir);
	snprintf(out, sizeof(out), "%s/out6", dir);
	uint16_t p = st_port(12);
	snprintf(port, sizeof(port), "%u", p);
	snprintf(url, sizeof(url), "http://[%s]:%u/blob6", NC_TB_KERNEL6, p);
	assert_int_equal(st_write_pattern(blob, SEED + 1, size), 0);
	static struct st_proc server, curl;
	char *srv[] = {"/usr/bin/python3", "-m",          "http.server",
	               "--bind",           NC_TB_KERNEL6, port,
	               "--directory",      dir,           NULL};
	/* Unbuffered, so its "Serving HTTP" line says it listens. */
	static const char *const unbuffered[] = {"PYTHONUNBUFFERED=1", NULL};
	struct st_spawn_opts plain = {.shim = false, .env = unbuffered};
	assert_int_equal(st_spawn(&server, &plain, srv), 0);
	assert_int_equal(
	    st_wait_output(&server, "Serving HTTP", st_now_ms() + 20000), 0);
	char *cmd[] = {
	    "/usr/bin/curl", "-sS", "--fail", "-g", "-o", out, url, NULL};
	struct st_spawn_opts shim = {.shim = true, .broker = tb.broker_socket};
	assert_int_equal(st_spawn(&curl, &shim, cmd), 0);
	int rc = st_finish(&curl, st_now_ms() + 60000);
	printf("curl over IPv6: exit %d %s\n", rc, curl.out);
	assert_int_equal(rc, 0);
	uint64_t bad;
	assert_int_equal(st_check_pattern(out, SEED + 1, size, &bad), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(curl_fetches_a_file_intact),
	    cmocka_unit_test(curl_fetches_over_ipv6),
	};
	return cmocka_run_group_tests_name("shim_curl", tests, setup, teardown);
}
