/* The supervisor's config: defaults, every refusal naming its line, the
 * embedded broker section, the writer, and service names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "services/supervisor/config.h"

static struct nc_sup_config cfg;
static char err[NC_SUP_ERR_MAX];

static int parse(const char *text)
{
	nc_sup_config_default(&cfg);
	err[0] = '\0';
	return nc_sup_config_parse(&cfg, text, strlen(text), err, sizeof(err));
}

static void refused(const char *text, const char *want)
{
	assert_int_equal(parse(text), -EINVAL);
	if (strcmp(err, want) != 0)
		fail_msg("for %s\n got '%s'\nwant '%s'", text, err, want);
}

static void defaults(void **state)
{
	(void)state;
	assert_int_equal(parse(""), 0);
	assert_string_equal(cfg.run_dir, "/run/netcore");
	assert_string_equal(cfg.control, "ipc:///run/netcore/supervisor.ctl");
	assert_string_equal(cfg.log_file, "/run/netcore/netcore.log");
	assert_string_equal(cfg.attach_socket, "/run/netcore/attach");
	assert_string_equal(cfg.netns, "");
	assert_string_equal(cfg.tun, "nctun0");
	assert_string_equal(cfg.kernel_ipv4, "10.77.0.1/24");
	assert_string_equal(cfg.stack_ipv6, "fd77::2/64");
	assert_int_equal(cfg.mtu, 65520);
	assert_int_equal(cfg.backoff_initial_ms, 100);
	assert_int_equal(cfg.backoff_max_ms, 10000);
	assert_int_equal(cfg.give_up_after, 5);
	assert_int_equal(cfg.give_up_window_ms, 60000);
	assert_int_equal(cfg.heartbeat_interval_ms, 500);
	assert_int_equal(cfg.heartbeat_timeout_ms, 3000);
	assert_int_equal(cfg.broker_len, 0);
	assert_string_equal(cfg.binary[NC_SUP_CORE], "");
}

static void settings(void **state)
{
	(void)state;
	const char *text = "# a comment\n"
	                   "run_dir /tmp/x   # trailing comment\r\n"
	                   "\tnetns\t/run/netns/t1\n"
	                   "\n"
	                   "tun tun-a.1\n"
	                   "kernel_ipv4 192.0.2.1/30\n"
	                   "stack_ipv6 fd00::2/64\n"
	                   "mtu 1500\n"
	                   "echo_port 7\n"
	                   "heartbeat_timeout_ms 900\n"
	                   "core_args --echo-port 9  --x\n"
	                   "broker_binary /opt/b\n"
	                   "broker max_sockets 8\n"
	                   "broker allow_bind 80\n";
	assert_int_equal(parse(text), 0);
	assert_string_equal(cfg.run_dir, "/tmp/x");
	assert_string_equal(cfg.control, "ipc:///tmp/x/supervisor.ctl");
	assert_string_equal(cfg.attach_socket, "/tmp/x/attach");
	assert_string_equal(cfg.netns, "/run/netns/t1");
	assert_string_equal(cfg.tun, "tun-a.1");
	assert_string_equal(cfg.kernel_ipv4, "192.0.2.1/30");
	assert_string_equal(cfg.stack_ipv6, "fd00::2/64");
	assert_int_equal(cfg.mtu, 1500);
	assert_int_equal(cfg.echo_port, 7);
	assert_int_equal(cfg.heartbeat_timeout_ms, 900);
	assert_string_equal(cfg.args[NC_SUP_CORE], "--echo-port 9  --x");
	assert_string_equal(cfg.binary[NC_SUP_BROKER], "/opt/b");
	assert_string_equal(cfg.broker_text, "max_sockets 8\nallow_bind 80\n");
	/* "current" and "auto" mean the defaults. */
	assert_int_equal(parse("netns current\nphy_binary auto\n"), 0);
	assert_string_equal(cfg.netns, "");
	assert_string_equal(cfg.binary[NC_SUP_PHY], "");
}

static void every_refusal_names_its_line(void **state)
{
	(void)state;
	refused("bogus 1\n", "line 1: unknown setting 'bogus'");
	refused("\n\nmtu 1500\nmtu 1400\n",
	        "line 4: mtu given twice (first on line 3)");
	refused("mtu\n", "line 1: mtu: missing value");
	refused("mtu 9x\n", "line 1: mtu: '9x' is not a number");
	refused("mtu -1\n", "line 1: mtu: '-1' is not a number");
	refused("mtu 70000\n", "line 1: mtu: 70000 is out of range 1280-65520");
	refused("mtu 1500 1600\n",
	        "line 1: mtu: expected one value, got '1500 1600'");
	refused("echo_port 65536\n",
	        "line 1: echo_port: 65536 is out of range 0-65535");
	refused("run_dir run\n", "line 1: run_dir: 'run' is not an absolute "
	                         "path");
	refused("run_dir /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	        "line 1: run_dir: longer than 80 bytes (socket paths below "
	        "it must fit)");
	refused("control tcp://1.2.3.4:5\n",
	        "line 1: control: 'tcp://1.2.3.4:5' is not an ipc:///PATH "
	        "URL");
	refused("tun a/b\n", "line 1: tun: 'a/b' is not a device name (1-15 "
	                     "of A-Z a-z 0-9 _ . -)");
	refused("tun 0123456789abcdef\n",
	        "line 1: tun: '0123456789abcdef' is not a device name (1-15 "
	        "of A-Z a-z 0-9 _ . -)");
	refused("kernel_ipv4 10.0.0.1\n",
	        "line 1: kernel_ipv4: '10.0.0.1' is not ADDRESS/PREFIX "
	        "(prefix 1-32)");
	refused("kernel_ipv4 10.0.0.1/33\n",
	        "line 1: kernel_ipv4: '10.0.0.1/33' is not ADDRESS/PREFIX "
	        "(prefix 1-32)");
	refused("stack_ipv4 fd00::1/24\n",
	        "line 1: stack_ipv4: 'fd00::1' is not an IPv4 address");
	refused("stack_ipv6 10.0.0.1/24\n",
	        "line 1: stack_ipv6: '10.0.0.1' is not an IPv6 address");
	refused("netns ns1\n", "line 1: netns: 'ns1' is not an absolute path");
	refused("heartbeat_timeout_ms 400\n",
	        "line 1: heartbeat_timeout_ms (400) must be above "
	        "heartbeat_interval_ms (500)");
	refused("backoff_initial_ms 500\nmtu 1500\nbackoff_max_ms 200\n",
	        "line 3: backoff_initial_ms (500) is above backoff_max_ms "
	        "(200)");
	nc_sup_config_default(&cfg);
	assert_int_equal(nc_sup_config_parse(&cfg, "mtu 1500\nm\0tu\n", 13, err,
	                                     sizeof(err)),
	                 -EINVAL);
	assert_string_equal(err, "line 2: a NUL byte");
	refused("give_up_after 0\n",
	        "line 1: give_up_after: 0 is out of range 1-1000");
	refused("broker\n", "line 1: broker: expected a broker setting");
}

static void broker_lines_are_checked_in_place(void **state)
{
	(void)state;
	refused("mtu 1500\nbroker max_sockets 8\n\nbroker max_sockets 0\n",
	        "line 4: broker: max_sockets: 0 is out of range 1-4096");
	refused("broker nonsense 1\n",
	        "line 1: broker: unknown setting 'nonsense'");
	refused("broker_config /etc/b.conf\nbroker max_sockets 8\n",
	        "line 2: broker lines and broker_config exclude each other");
	assert_int_equal(parse("broker_config /nonexistent/b.conf\n"), -EINVAL);
	assert_non_null(strstr(err, "line 1: broker_config: "));
	assert_non_null(strstr(err, "/nonexistent/b.conf"));
}

static void broker_config_file_errors_name_both_files(void **state)
{
	(void)state;
	char path[] = "/tmp/ncsupcfg-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *bad = "max_sockets 8\nmax_clients 0\n";
	assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	char text[128];
	snprintf(text, sizeof(text), "\nbroker_config %s\n", path);
	assert_int_equal(parse(text), -EINVAL);
	char want[256];
	snprintf(want, sizeof(want),
	         "line 2: broker_config: %s: line 2: max_clients: 0 is out "
	         "of range 1-4096",
	         path);
	assert_string_equal(err, want);
	unlink(path);
}

static void load_names_the_file(void **state)
{
	(void)state;
	char path[] = "/tmp/ncsupcfg-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *bad = "mtu 1500\n\nwhat\n";
	assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	char e[NC_SUP_ERR_MAX + 128];
	nc_sup_config_default(&cfg);
	assert_int_equal(nc_sup_config_load(&cfg, path, e, sizeof(e)), -EINVAL);
	char want[256];
	snprintf(want, sizeof(want), "%s: line 3: unknown setting 'what'",
	         path);
	assert_string_equal(e, want);
	unlink(path);
	nc_sup_config_default(&cfg);
	assert_int_equal(nc_sup_config_load(&cfg, path, e, sizeof(e)), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(e, want);
}

static void written_config_parses_back(void **state)
{
	(void)state;
	assert_int_equal(parse("run_dir /tmp/y\nnetns /run/netns/z\n"
	                       "core_args -x\nbroker max_sockets 4\n"
	                       "broker deny_connect any 25\n"),
	                 0);
	struct nc_sup_config first = cfg;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	nc_sup_config_write(&first, f);
	fclose(f);
	assert_int_equal(parse(buf), 0);
	assert_memory_equal(&first, &cfg, sizeof(cfg));
	free(buf);
}

static void service_names(void **state)
{
	(void)state;
	assert_int_equal(nc_sup_service_parse("phy"), NC_SUP_PHY);
	assert_int_equal(nc_sup_service_parse("phy_driver"), NC_SUP_PHY);
	assert_int_equal(nc_sup_service_parse("core"), NC_SUP_CORE);
	assert_int_equal(nc_sup_service_parse("netcore_core"), NC_SUP_CORE);
	assert_int_equal(nc_sup_service_parse("broker"), NC_SUP_BROKER);
	assert_int_equal(nc_sup_service_parse("proxy_broker"), NC_SUP_BROKER);
	assert_int_equal(nc_sup_service_parse("supervisor"), -1);
	assert_string_equal(nc_sup_service_name(NC_SUP_BROKER), "broker");
	assert_string_equal(nc_sup_service_name(7), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults),
	    cmocka_unit_test(settings),
	    cmocka_unit_test(every_refusal_names_its_line),
	    cmocka_unit_test(broker_lines_are_checked_in_place),
	    cmocka_unit_test(broker_config_file_errors_name_both_files),
	    cmocka_unit_test(load_names_the_file),
	    cmocka_unit_test(written_config_parses_back),
	    cmocka_unit_test(service_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
