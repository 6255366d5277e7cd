/*
 * `netcore up` for real, as root: the supervisor binary started with
 * posix_spawn, its TUN in a network namespace this test creates (named
 * with its pid) and deletes, its run dir under a mkdtemp directory. Each
 * step drives the CLI binary and waits on a condition with a deadline:
 *
 *   ready -> status: three services healthy -> stats --json parses, and
 *   its packet counters grow with traffic (a libclient client here talks
 *   to a kernel listener in the namespace) -> kill phy, broker, core: each
 *   comes back with a new pid and healthy -> SIGSTOP the phy: hung, killed,
 *   restarted -> kill the broker until it has crashed give_up_after times:
 *   "gave-up", the others still healthy -> stop: no process, no TUN, no
 *   socket file; only the log is left in the run dir.
 *
 * The steps share one supervisor (starting one takes time), so they run
 * in order in one cmocka test; the teardown kills whatever is left even
 * when a step failed.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "libclient/netcore.h"
#include "services/supervisor/testing/suptest.h"

extern char **environ;

#define STEP_MS 20000
#define TUN     "ncsup0"
#define KERNEL4 "10.77.0.1"

static const char *netcore_bin;

struct run {
	char ns[48], ns_path[96];
	bool ns_made;
	char dir[64], run_dir[96], conf[96], err[96], attach[128];
	pid_t sup;
};

static struct run R;

/* Runs argv with stdout into out; returns the exit code (-1: no exit). */
static int run(char *const argv[], char *out, size_t cap)
{
	return suptest_exit_code(suptest_run(argv, out, cap, false, STEP_MS));
}

static int cli(const char *cmd, const char *arg, char *out, size_t cap)
{
	char *argv[] = {(char *)netcore_bin, (char *)cmd, "--config", R.conf,
	                (char *)arg,         NULL};
	return run(argv, out, cap);
}

static int ip(const char *a, const char *b, const char *c, const char *d)
{
	char *argv[] = {"ip", (char *)a, (char *)b, (char *)c, (char *)d, NULL};
	char out[4096];
	return run(argv, out, sizeof(out));
}

/* ------------------------------------------------------------ status */

struct svc {
	unsigned pid, restarts, crashes;
	char health[16], last_exit[64];
};

/* Parses `netcore status`: one line per service after the header. */
static bool status(struct svc out[3], bool *ready)
{
	char text[4096];
	if (cli("status", NULL, text, sizeof(text)) != 0)
		return false;
	*ready = strstr(text, " ready\n") != NULL;
	const char *names[] = {"\nphy ", "\ncore ", "\nbroker "};
	for (int i = 0; i < 3; i++) {
		char *line = strstr(text, names[i]);
		if (line == NULL)
			return false;
		char up[16], hb[16], loop[16];
		int used = 0;
		if (sscanf(line + strlen(names[i]),
		           "%u %15s %15s %u %u %15s %15s %n", &out[i].pid,
		           out[i].health, up, &out[i].restarts, &out[i].crashes,
		           hb, loop, &used) != 7)
			return false;
		char *nl = strchr(line + strlen(names[i]) + used, '\n');
		size_t n =
		    nl ? (size_t)(nl - (line + strlen(names[i]) + used)) : 0;
		snprintf(out[i].last_exit, sizeof(out[i].last_exit), "%.*s",
		         (int)n, line + strlen(names[i]) + used);
	}
	return true;
}

static bool all_healthy(const struct svc s[3])
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s[i].health, "healthy") != 0 || s[i].pid == 0)
			return false;
	return true;
}

static void wait_all_healthy(struct svc s[3])
{
	bool ready;
	int64_t deadline = suptest_now_ms() + STEP_MS;
	while (!(status(s, &ready) && all_healthy(s))) {
		if (suptest_now_ms() > deadline)
			fail_msg("services not all healthy within %d ms",
			         STEP_MS);
		suptest_pause_ms(50);
	}
}

/* Waits until service i runs as a new, healthy process. */
static void wait_replaced(int i, unsigned old_pid, unsigned restarts,
                          const char *reason, struct svc s[3])
{
	bool ready;
	int64_t deadline = suptest_now_ms() + STEP_MS;
	for (;;) {
		if (status(s, &ready) && s[i].pid != 0 && s[i].pid != old_pid &&
		    strcmp(s[i].health, "healthy") == 0 &&
		    s[i].restarts == restarts)
			break;
		if (suptest_now_ms() > deadline)
			fail_msg("service %d not replaced within %d ms "
			         "(pid %u health %s restarts %u)",
			         i, STEP_MS, s[i].pid, s[i].health,
			         s[i].restarts);
		suptest_pause_ms(20);
	}
	assert_string_equal(s[i].last_exit, reason);
}

/* -------------------------------------------------------------- json */

static const char *json_value(const char *p);

static const char *skip_space(const char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p && *p != '"'; p++)
		if (*p == '\\' && *++p == '\0')
			return NULL;
	return *p == '"' ? p + 1 : NULL;
}

static const char *json_list(const char *p, char close, bool object)
{
	p = skip_space(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			p = json_string(skip_space(p));
			if (p == NULL || *(p = skip_space(p)) != ':')
				return NULL;
			p++;
		}
		p = json_value(p);
		if (p == NULL)
			return NULL;
		p = skip_space(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *p)
{
	p = skip_space(p);
	if (*p == '{')
		return json_list(p, '}', true);
	if (*p == '[')
		return json_list(p, ']', false);
	if (*p == '"')
		return json_string(p);
	if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	char *end;
	strtod(p, &end);
	return end == p ? NULL : end;
}

static bool json_valid(const char *text)
{
	const char *end = json_value(text);
	return end != NULL && *skip_space(end) == '\0';
}

/* The number at "group": {... "name": N ...}. */
static uint64_t json_number(const char *text, const char *group,
                            const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "\"%s\": {", group);
	const char *g = strstr(text, key);
	assert_non_null(g);
	const char *close = strchr(g, '}');
	snprintf(key, sizeof(key), "\"%s\": ", name);
	const char *at = strstr(g, key);
	assert_true(at != NULL && at < close);
	return strtoull(at + strlen(key), NULL, 10);
}

static void stats(uint64_t *in, uint64_t *out)
{
	char text[8192];
	assert_int_equal(cli("stats", "--json", text, sizeof(text)), 0);
	if (!json_valid(text))
		fail_msg("stats --json is not JSON: %s", text);
	*in = json_number(text, "kernel_to_stack", "packets");
	*out = json_number(text, "stack_to_kernel", "packets");
	assert_true(json_number(text, "kernel_to_stack", "bytes") >= *in);
}

/* ----------------------------------------------------------- traffic */

/* A TCP listener in the test's namespace, on the kernel side. */
static int kernel_listener(uint16_t *port)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int ns = open(R.ns_path, O_RDONLY | O_CLOEXEC);
	assert_true(self >= 0 && ns >= 0);
	assert_int_equal(setns(ns, CLONE_NEWNET), 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, KERNEL4, &a.sin_addr);
	int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&a, sizeof(a)) : -1;
	rc = rc ?: listen(fd, 1);
	socklen_t len = sizeof(a);
	rc = rc ?: getsockname(fd, (struct sockaddr *)&a, &len);
	assert_int_equal(setns(self, CLONE_NEWNET), 0);
	close(self);
	close(ns);
	assert_int_equal(rc, 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void set_timeouts(struct nc_sock *s)
{
	struct timeval tv = {5, 0};
	assert_int_equal(
	    nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(
	    nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* A libclient client sends 64 KiB to the kernel, which sends it back. */
/* Waits (bounded) until stats --json shows group.name >= min. */
static void wait_stat(const char *group, const char *name, uint64_t min)
{
	static char text[8192];
	uint64_t v = 0;
	int64_t deadline = suptest_now_ms() + STEP_MS;
	do {
		assert_int_equal(cli("stats", "--json", text, sizeof(text)), 0);
		v = json_number(text, group, name);
		if (v >= min)
			return;
		suptest_pause_ms(50);
	} while (suptest_now_ms() < deadline);
	fail_msg("stats: %s.%s stayed %llu, expected >= %llu", group, name,
	         (unsigned long long)v, (unsigned long long)min);
}

static void traffic(void)
{
	uint16_t port;
	int lfd = kernel_listener(&port);
	struct nc_client *cl;
	assert_int_equal(nc_client_attach(R.attach, &cl), 0);
	struct nc_sock *s;
	assert_int_equal(nc_socket(cl, AF_INET, SOCK_STREAM, 0, &s), 0);
	set_timeouts(s);
	struct sockaddr_in to = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	inet_pton(AF_INET, KERNEL4, &to.sin_addr);
	assert_int_equal(nc_connect(s, (struct sockaddr *)&to, sizeof(to)), 0);
	struct pollfd pf = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&pf, 1, STEP_MS), 1);
	int k = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(k >= 0);
	static char buf[65536], back[65536];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	assert_int_equal(nc_send(s, buf, sizeof(buf), 0), sizeof(buf));
	size_t got = 0;
	while (got < sizeof(back)) {
		assert_int_equal(
		    poll(&(struct pollfd){k, POLLIN, 0}, 1, STEP_MS), 1);
		ssize_t n = read(k, back + got, sizeof(back) - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(write(k, back, sizeof(back)), sizeof(back));
	assert_int_equal(nc_recv(s, back, sizeof(back), MSG_WAITALL),
	                 sizeof(back));
	assert_memory_equal(buf, back, sizeof(buf));
	/* Sockets by state: ours shows as connected (the figures come with
	 * the core's next heartbeat reply). */
	wait_stat("sockets", "connected", 1);
	assert_int_equal(nc_close(s), 0);
	nc_client_detach(cl);
	close(k);
	close(lfd);
}

/* ------------------------------------------------------ set-up, teardown */

static void write_config(void)
{
	FILE *f = fopen(R.conf, "w");
	assert_non_null(f);
	fprintf(f,
	        "# supervisor up_test\n"
	        "run_dir %s\n"
	        "netns %s\n"
	        "tun " TUN "\n"
	        "heartbeat_interval_ms 100\n"
	        "heartbeat_timeout_ms 1000\n"
	        "start_timeout_ms 5000\n"
	        "backoff_initial_ms 50\n"
	        "backoff_max_ms 400\n"
	        "give_up_after 3\n"
	        "give_up_window_ms 120000\n"
	        "stop_timeout_ms 3000\n"
	        "broker max_sockets 16\n",
	        R.run_dir, R.ns_path);
	fclose(f);
}

static int start_supervisor(void)
{
	return suptest_start_supervisor(netcore_bin, R.conf, R.err, STEP_MS,
	                                &R.sup);
}

static int setup(void **state)
{
	(void)state;
	memset(&R, 0, sizeof(R));
	snprintf(R.ns, sizeof(R.ns), "nc-sup-%d", (int)getpid());
	snprintf(R.ns_path, sizeof(R.ns_path), "/run/netns/%s", R.ns);
	snprintf(R.dir, sizeof(R.dir), "/tmp/ncsupt-XXXXXX");
	if (mkdtemp(R.dir) == NULL)
		return -1;
	snprintf(R.run_dir, sizeof(R.run_dir), "%s/run", R.dir);
	snprintf(R.conf, sizeof(R.conf), "%s/netcore.conf", R.dir);
	snprintf(R.err, sizeof(R.err), "%s/stderr", R.dir);
	snprintf(R.attach, sizeof(R.attach), "%s/attach", R.run_dir);
	if (ip("netns", "add", R.ns, NULL) != 0)
		return -1;
	R.ns_made = true;
	char *lo[] = {"ip", "-n", R.ns, "link", "set", "lo", "up", NULL};
	char out[256];
	return run(lo, out, sizeof(out)) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (R.sup > 0) {
		/* A failed step: SIGKILL; the services die with their
		 * parent (--die-with-parent). */
		suptest_dump_file(R.err);
		kill(R.sup, SIGKILL);
		suptest_reap(R.sup, 5000);
		suptest_pause_ms(300);
	}
	if (R.ns_made)
		ip("netns", "del", R.ns, NULL);
	suptest_remove_tree(R.dir);
	return 0;
}

/* ----------------------------------------------------------- the run */

static void up_and_healthy(struct svc s[3])
{
	write_config();
	if (start_supervisor() != 0)
		fail_msg("netcore up did not report ready within %d ms",
		         STEP_MS);
	bool ready;
	assert_true(status(s, &ready));
	assert_true(ready);
	wait_all_healthy(s);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(s[i].restarts, 0);
		assert_string_equal(s[i].last_exit, "-");
	}
}

static void counters_follow_traffic(void)
{
	uint64_t in0, out0, in1, out1;
	stats(&in0, &out0);
	traffic();
	int64_t deadline = suptest_now_ms() + STEP_MS;
	do {
		stats(&in1, &out1);
		if (in1 > in0 && out1 > out0)
			break;
		suptest_pause_ms(50);
	} while (suptest_now_ms() < deadline);
	assert_true(in1 > in0);
	assert_true(out1 > out0);
}

static void kill_each(struct svc s[3])
{
	const char *names[] = {"phy", "broker", "core"};
	const int index[] = {0, 2, 1};
	char out[256];
	for (int k = 0; k < 3; k++) {
		int i = index[k];
		unsigned old = s[i].pid, restarts = s[i].restarts;
		assert_int_equal(cli("kill", names[k], out, sizeof(out)), 0);
		wait_replaced(i, old, restarts + 1, "killed (netcore kill)", s);
	}
	wait_all_healthy(s);
}

static void stopped_phy_is_hung(struct svc s[3])
{
	unsigned old = s[0].pid, restarts = s[0].restarts;
	assert_int_equal(kill((pid_t)old, SIGSTOP), 0);
	wait_replaced(0, old, restarts + 1, "hung", s);
}

/* The broker crashed once already (kill_each); give_up_after is 3. */
static void crash_loop_gives_up(struct svc s[3])
{
	bool ready;
	char out[256];
	int64_t deadline = suptest_now_ms() + STEP_MS;
	for (;;) {
		assert_true(status(s, &ready));
		if (strcmp(s[2].health, "gave-up") == 0)
			break;
		if (s[2].pid != 0 && strcmp(s[2].health, "healthy") == 0)
			cli("kill", "proxy_broker", out, sizeof(out));
		if (suptest_now_ms() > deadline)
			fail_msg("broker never gave up (health %s)",
			         s[2].health);
		suptest_pause_ms(20);
	}
	assert_int_equal(s[2].pid, 0);
	assert_int_equal(s[2].crashes, 3);
	assert_string_equal(s[0].health, "healthy");
	assert_string_equal(s[1].health, "healthy");
	/* A command for a service with no process is refused, not fatal. */
	assert_int_equal(cli("kill", "broker", out, sizeof(out)), 1);
	/* restart revives it, with a clean slate. */
	unsigned restarts = s[2].restarts;
	assert_int_equal(cli("restart", "broker", out, sizeof(out)), 0);
	wait_replaced(2, 0, restarts + 1, "killed (netcore kill)", s);
	assert_int_equal(s[2].crashes, 0);
}

static bool alive(unsigned pid)
{
	return kill((pid_t)pid, 0) == 0;
}

static void stop_leaves_nothing(const struct svc s[3])
{
	char out[256];
	assert_int_equal(cli("stop", NULL, out, sizeof(out)), 0);
	int status = suptest_reap(R.sup, STEP_MS);
	R.sup = 0;
	assert_true(status >= 0 && WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (int i = 0; i < 3; i++)
		assert_false(s[i].pid && alive(s[i].pid));
	char *show[] = {"ip", "-n", R.ns, "link", "show", TUN, NULL};
	char text[1024];
	assert_int_not_equal(run(show, text, sizeof(text)), 0);
	/* Only the log is left in the run dir. */
	DIR *d = opendir(R.run_dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' &&
		    strcmp(e->d_name, "netcore.log") != 0)
			fail_msg("left behind: %s/%s", R.run_dir, e->d_name);
	closedir(d);
	assert_int_equal(cli("status", NULL, out, sizeof(out)), 1);
}

static void log_has(const char *needle)
{
	char path[160], line[1200];
	snprintf(path, sizeof(path), "%s/netcore.log", R.run_dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	if (!found)
		fail_msg("%s lacks '%s'", path, needle);
}

static void supervisor_end_to_end(void **state)
{
	(void)state;
	struct svc s[3];
	up_and_healthy(s);
	counters_follow_traffic();
	kill_each(s);
	stopped_phy_is_hung(s);
	crash_loop_gives_up(s);
	stop_leaves_nothing(s);
	log_has(" supervisor info ready: ");
	log_has(" supervisor error broker: gave up after 3 crashes");
	log_has(" supervisor error phy: pid ");
	log_has(" core info clients ");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: up_test PATH_TO_netcore\n");
		return 2;
	}
	netcore_bin = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(supervisor_end_to_end, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
