/*
 * Fuzzes the supervisor's config parser (nc_sup_config_parse): the input
 * is the file's text, read in place (the driver hands it over in a block
 * of exactly its size, so a read past the end is caught).
 *
 * Properties:
 *   - the result is 0 or -EINVAL, and a refusal says "line N: problem"
 *     for a line that exists;
 *   - an accepted config is within every documented range, its strings are
 *     terminated, its paths absolute, and written out with
 *     nc_sup_config_write it parses back to exactly the same struct.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "services/supervisor/config.h"
#include "tools/fuzz/fuzz.h"

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void check_accepted(const struct nc_sup_config *c)
{
	FUZZ_CHECK(c->run_dir[0] == '/' && strlen(c->run_dir) <= 80);
	FUZZ_CHECK(strncmp(c->control, "ipc:///", 7) == 0);
	FUZZ_CHECK(c->log_file[0] == '/' && c->attach_socket[0] == '/');
	FUZZ_CHECK(c->netns[0] == '\0' || c->netns[0] == '/');
	FUZZ_CHECK(terminated(c->tun, sizeof(c->tun)) && c->tun[0] != '\0');
	FUZZ_CHECK(c->mtu >= 1280 && c->mtu <= 65520);
	FUZZ_CHECK(c->backoff_initial_ms >= 1 &&
	           c->backoff_initial_ms <= c->backoff_max_ms);
	FUZZ_CHECK(c->give_up_after >= 1);
	FUZZ_CHECK(c->heartbeat_timeout_ms > c->heartbeat_interval_ms);
	FUZZ_CHECK(c->broker_len < sizeof(c->broker_text));
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		FUZZ_CHECK(terminated(c->args[i], sizeof(c->args[i])));
		FUZZ_CHECK(c->binary[i][0] == '\0' || c->binary[i][0] == '/');
	}
}

static void check_round_trip(const struct nc_sup_config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	FUZZ_CHECK(f != NULL);
	nc_sup_config_write(c, f);
	fclose(f);
	static struct nc_sup_config again;
	char err[NC_SUP_ERR_MAX];
	nc_sup_config_default(&again);
	int rc = nc_sup_config_parse(&again, buf, len, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "round trip refused: %s\n%s", err, buf);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(memcmp(c, &again, sizeof(again)) == 0);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nc_sup_config c;
	char err[NC_SUP_ERR_MAX];
	nc_sup_config_default(&c);
	int rc =
	    nc_sup_config_parse(&c, (const char *)data, size, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc != 0) {
		fuzz_check_line_error(err, data, size);
		return 0;
	}
	check_accepted(&c);
	check_round_trip(&c);
	return 0;
}

static const uint8_t seed_empty[] = "";
static const uint8_t seed_full[] =
    "run_dir /tmp/nc\ncontrol ipc:///tmp/nc/s.ctl\nlog_file /tmp/nc/log\n"
    "netns /run/netns/x\ntun nc0\nkernel_ipv4 10.1.0.1/24\n"
    "stack_ipv4 10.1.0.2/24\nkernel_ipv6 fd01::1/64\nstack_ipv6 fd01::2/64\n"
    "mtu 9000\necho_port 7\nattach_socket /tmp/nc/a\n"
    "backoff_initial_ms 50\nbackoff_max_ms 800\ngive_up_after 3\n"
    "give_up_window_ms 10000\nheartbeat_interval_ms 100\n"
    "heartbeat_timeout_ms 1000\nstart_timeout_ms 5000\n"
    "stop_timeout_ms 2000\nphy_binary /bin/true\ncore_args --x y\n"
    "broker max_sockets 16\nbroker allow_connect 10.0.0.0/8 443\n";
static const uint8_t seed_bad[] = "mtu 1500\nmtu 1500\n# c\nbroker x 1\n";
static const uint8_t seed_cross[] =
    "heartbeat_interval_ms 900\nheartbeat_timeout_ms 800\r\n";

const struct fuzz_seed fuzz_seeds[] = {
    {seed_empty, 0},
    {seed_full, sizeof(seed_full) - 1},
    {seed_bad, sizeof(seed_bad) - 1},
    {seed_cross, sizeof(seed_cross) - 1},
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
