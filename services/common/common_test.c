/* The log line format and the heartbeat responder, over a real nng
 * socket in a private temp directory. */
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "services/common/health.h"
#include "services/common/log.h"

static void prefix_is_recognised(void **state)
{
	(void)state;
	char buf[128];
	size_t n = nc_log_prefix(buf, sizeof(buf), "core", NC_LOG_WARN);
	assert_int_equal(n, strlen(buf));
	assert_int_equal(buf[23], 'Z');
	assert_non_null(strstr(buf, " core warn "));
	strcat(buf, "something happened");
	assert_true(nc_log_is_formatted(buf, strlen(buf)));
}

static void other_lines_are_not(void **state)
{
	(void)state;
	const char *bad[] = {
	    "",
	    "phy_driver: backend: No such device",
	    "2026-11-28T19:20:59.123Z core loud message",
	    "2026-11-28T19:20:59.123 core info message",
	    "2026-11-28T19:20:59.123Z  info message",
	    "2026-11-28T19:20:59.123Z core info",
	    "2026-1X-28T19:20:59.123Z core info message",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(nc_log_is_formatted(bad[i], strlen(bad[i])));
	const char *good = "2026-11-28T19:20:59.123Z broker error x";
	assert_true(nc_log_is_formatted(good, strlen(good)));
}

static void tee_gets_one_line(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	nc_log_init("tester");
	nc_log_tee(p[1]);
	nc_log(NC_LOG_ERROR, "two\nlines %d\n", 7);
	nc_log_tee(-1);
	char buf[256];
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_true(nc_log_is_formatted(buf, (size_t)n - 1));
	assert_non_null(strstr(buf, " tester error two lines 7\n"));
	assert_int_equal(strchr(buf, '\n') - buf, n - 1);
	close(p[0]);
	close(p[1]);
}

static size_t ask(nng_socket s, const void *req, size_t len, void *out)
{
	assert_int_equal(nng_send(s, (void *)req, len, 0), 0);
	size_t n = 512;
	assert_int_equal(nng_recv(s, out, &n, 0), 0);
	return n;
}

static void heartbeat_round_trip(void **state)
{
	(void)state;
	char dir[] = "/tmp/nchealth-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char url[128], path[96];
	snprintf(path, sizeof(path), "%s/h", dir);
	snprintf(url, sizeof(url), "ipc://%s", path);
	assert_int_equal(nc_health_start(url, "tester"), 0);
	nc_health_tick();
	nc_health_set(3, 42);
	nc_health_set(NC_HEALTH_COUNTERS, 1); /* ignored */

	nng_socket s;
	assert_int_equal(nng_req0_open(&s), 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
	assert_int_equal(nng_dial(s, url, NULL, 0), 0);
	struct nc_health_request req;
	nc_health_request_init(&req, 9);
	char buf[512];
	size_t n = ask(s, &req, sizeof(req), buf);
	struct nc_health_reply r;
	assert_int_equal(nc_health_reply_parse(buf, n, 9, &r), 0);
	assert_int_equal(r.pid, getpid());
	assert_string_equal(r.service, "tester");
	assert_true(r.loop_age_ms < 1000);
	assert_int_equal(r.counters[3], 42);
	assert_int_equal(r.ticks, 1);
	/* A wrong id is refused by the asker's parser. */
	assert_int_equal(nc_health_reply_parse(buf, n, 8, &r), -EPROTO);

	/* Garbage and unknown types are answered, not dropped. */
	n = ask(s, "xx", 2, buf);
	assert_int_equal(n, sizeof(r));
	memcpy(&r, buf, sizeof(r));
	assert_int_equal(r.result, -EPROTO);
	req.type = 77;
	n = ask(s, &req, sizeof(req), buf);
	memcpy(&r, buf, sizeof(r));
	assert_int_equal(r.result, -ENOTSUP);
	char big[200] = {0};
	n = ask(s, big, sizeof(big), buf);
	memcpy(&r, buf, sizeof(r));
	assert_int_equal(r.result, -EPROTO);

	nng_close(s);
	nc_health_stop();
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(prefix_is_recognised),
	    cmocka_unit_test(other_lines_are_not),
	    cmocka_unit_test(tee_gets_one_line),
	    cmocka_unit_test(heartbeat_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
