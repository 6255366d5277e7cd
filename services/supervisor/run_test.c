/*
 * `netcore run` for real, as root: a supervisor of the test's own
 * (`netcore up --config FILE --ready-fd 3`, its TUN in a namespace this
 * test creates and deletes, its run dir under a mkdtemp directory), a
 * kernel-side HTTP server (python3 -m http.server on 10.77.0.1 in that
 * namespace), and unmodified programs started with
 * `netcore run --config FILE -- CMD`:
 *
 *   - curl downloads a file of known content: exit 0, same SHA-256;
 *   - `sh -c 'exit 7'` exits 7 to this test, and `sh -c 'kill -TERM $$'`
 *     is seen here as killed by SIGTERM: netcore run becomes the command,
 *     nothing sits in between;
 *   - the command's namespace has only a loopback (/proc/net/dev);
 *   - a missing command gives 127 like a shell; a config whose broker is
 *     not running gives 125 and a message naming the attach socket.
 *
 * Under --config=asan, netcore run puts the ASan runtime ahead of the
 * (instrumented) shim; curl is skipped there, as in the shim's tests (it
 * hangs in setlocale with libasan preloaded, shim or not).
 *
 * Every wait is bounded (STEP_MS); the group teardown kills the server
 * and the supervisor by pid, deletes the namespace and the directory,
 * also after a failed step or a setup that failed half-way.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "services/supervisor/testing/suptest.h"
#include "tests/sha256/sha256.h"

extern char **environ;

#define STEP_MS   30000
#define TUN       "ncrun0"
#define KERNEL4   "10.77.0.1"
#define FILE_SIZE (8u << 20)

static const char *netcore_bin;

struct fixture {
	char ns[48], ns_path[96];
	bool ns_made;
	char dir[64], run_dir[96], conf[96], err[96], blob[96];
	pid_t sup, server;
	uint16_t port;
};

static struct fixture F;

/* Runs argv with a bound; the raw wait status (see suptest_run). */
static int run(char *const argv[], char *out, size_t cap, bool err_too)
{
	return suptest_run(argv, out, cap, err_too, STEP_MS);
}

static int ip(char *const argv[])
{
	char out[1024];
	return suptest_exit_code(run(argv, out, sizeof(out), false));
}

/* `netcore run --config conf -- cmd...` (cmd NULL-ended, up to 8 words). */
static int netcore_run(const char *conf, char *out, size_t cap, const char *cmd,
                       ...)
{
	char *argv[16] = {(char *)netcore_bin, "run", "--config", (char *)conf,
	                  "--"};
	int n = 5;
	va_list ap;
	va_start(ap, cmd);
	for (const char *w = cmd; w != NULL && n < 14; w = va_arg(ap, char *))
		argv[n++] = (char *)w;
	va_end(ap);
	argv[n] = NULL;
	return run(argv, out, cap, true);
}

/* ------------------------------------------------------------ fixture */

static bool sanitized(void)
{
#ifdef __SANITIZE_ADDRESS__
	return true;
#else
	return false;
#endif
}

static int write_config(void)
{
	FILE *f = fopen(F.conf, "w");
	if (f == NULL)
		return -1;
	fprintf(f,
	        "# supervisor run_test\n"
	        "run_dir %s\n"
	        "netns %s\n"
	        "tun " TUN "\n"
	        "start_timeout_ms 10000\n",
	        F.run_dir, F.ns_path);
	return fclose(f);
}

static int start_supervisor(void)
{
	return suptest_start_supervisor(netcore_bin, F.conf, F.err, STEP_MS,
	                                &F.sup);
}

/* A file whose bytes depend on their offset (so a misplaced piece shows). */
static int write_blob(void)
{
	FILE *f = fopen(F.blob, "w");
	if (f == NULL)
		return -1;
	uint32_t x = 0x6e657463;
	for (uint32_t i = 0; i < FILE_SIZE / 4; i++) {
		x = x * 1664525u + 1013904223u;
		fwrite(&x, 4, 1, f);
	}
	return fclose(f);
}

/* Connects to the server from inside the namespace, until it answers. */
static int wait_listening(void)
{
	int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	int there = open(F.ns_path, O_RDONLY | O_CLOEXEC);
	int ok = -1;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(F.port)};
	inet_pton(AF_INET, KERNEL4, &sa.sin_addr);
	int64_t deadline = suptest_now_ms() + STEP_MS;
	while (home >= 0 && there >= 0 && ok != 0 &&
	       suptest_now_ms() < deadline) {
		if (setns(there, CLONE_NEWNET) != 0)
			break;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (setns(home, CLONE_NEWNET) != 0)
			abort(); /* the rest of the test would run in there */
		if (ok != 0)
			suptest_pause_ms(50);
	}
	if (home >= 0)
		close(home);
	if (there >= 0)
		close(there);
	return ok;
}

static int start_server(void)
{
	char port[16];
	snprintf(port, sizeof(port), "%u", F.port);
	char *argv[] = {
	    "ip",          "netns",       "exec",   F.ns,    "/usr/bin/python3",
	    "-m",          "http.server", "--bind", KERNEL4, port,
	    "--directory", F.dir,         NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	/* ip netns exec execs python: F.server is python's pid. */
	int err = posix_spawnp(&F.server, "ip", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return err ? -1 : wait_listening();
}

static int teardown(void **state)
{
	(void)state;
	if (F.server > 0) {
		kill(F.server, SIGKILL);
		suptest_reap(F.server, 5000);
		F.server = 0;
	}
	if (F.sup > 0) {
		char *stop[] = {(char *)netcore_bin, "stop", "--config", F.conf,
		                NULL};
		char out[512];
		if (suptest_exit_code(run(stop, out, sizeof(out), true)) != 0)
			suptest_dump_file(F.err);
		/* SIGKILL if stop did not end it: its services die with
		 * it (--die-with-parent). */
		suptest_reap(F.sup, 5000);
		F.sup = 0;
	}
	if (F.ns_made) {
		char *del[] = {"ip", "netns", "del", F.ns, NULL};
		ip(del);
		F.ns_made = false;
	}
	/* Idempotent: a failed group setup calls it, then cmocka does. */
	if (F.dir[0] != '\0')
		suptest_remove_tree(F.dir);
	F.dir[0] = '\0';
	return 0;
}

static int setup_steps(void)
{
	memset(&F, 0, sizeof(F));
	F.port = (uint16_t)(20000 + getpid() % 20000);
	snprintf(F.ns, sizeof(F.ns), "nc-run-%d", (int)getpid());
	snprintf(F.ns_path, sizeof(F.ns_path), "/run/netns/%s", F.ns);
	snprintf(F.dir, sizeof(F.dir), "/tmp/ncrunt-XXXXXX");
	if (mkdtemp(F.dir) == NULL) {
		F.dir[0] = '\0';
		return -1;
	}
	snprintf(F.run_dir, sizeof(F.run_dir), "%s/run", F.dir);
	snprintf(F.conf, sizeof(F.conf), "%s/netcore.conf", F.dir);
	snprintf(F.err, sizeof(F.err), "%s/stderr", F.dir);
	snprintf(F.blob, sizeof(F.blob), "%s/blob", F.dir);
	char *add[] = {"ip", "netns", "add", F.ns, NULL};
	if (ip(add) != 0)
		return -1;
	F.ns_made = true;
	char *lo[] = {"ip", "-n", F.ns, "link", "set", "lo", "up", NULL};
	if (ip(lo) != 0 || write_config() != 0 || write_blob() != 0)
		return -1;
	if (start_supervisor() != 0) {
		fprintf(stderr, "netcore up did not get ready\n");
		return -1;
	}
	/* The programs under test are not ours: no leak report from them
	 * under --config=asan (netcore run preloads the runtime). The
	 * supervisor, started above, keeps the leak check. */
	if (sanitized())
		setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
	return start_server();
}

static int setup(void **state)
{
	if (setup_steps() == 0)
		return 0;
	teardown(state);
	return -1;
}

/* -------------------------------------------------------------- tests */

static int sha256_file(const char *path, uint8_t out[32], size_t *size)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	struct nc_sha256 s;
	nc_sha256_init(&s);
	char buf[65536];
	size_t n;
	*size = 0;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		nc_sha256_update(&s, buf, n);
		*size += n;
	}
	fclose(f);
	nc_sha256_final(&s, out);
	return 0;
}

static void curl_downloads_intact(void **state)
{
	(void)state;
	if (sanitized()) {
		printf("skipped: curl cannot run with ASan preloaded\n");
		skip();
	}
	char url[128], out_file[128], out[1024];
	snprintf(url, sizeof(url), "http://" KERNEL4 ":%u/blob", F.port);
	snprintf(out_file, sizeof(out_file), "%s/out", F.dir);
	int status = netcore_run(F.conf, out, sizeof(out), "/usr/bin/curl",
	                         "-sS", "-o", out_file, url, NULL);
	if (suptest_exit_code(status) != 0)
		fail_msg("curl: status %#x: %s", status, out);
	uint8_t want[32], got[32];
	size_t want_n, got_n;
	assert_int_equal(sha256_file(F.blob, want, &want_n), 0);
	assert_int_equal(sha256_file(out_file, got, &got_n), 0);
	assert_int_equal(got_n, want_n);
	assert_memory_equal(got, want, 32);
}

static void exit_status_passes_through(void **state)
{
	(void)state;
	char out[1024];
	int status = netcore_run(F.conf, out, sizeof(out), "/bin/sh", "-c",
	                         "exit 7", NULL);
	if (suptest_exit_code(status) != 7)
		fail_msg("status %#x: %s", status, out);
}

static void signal_passes_through(void **state)
{
	(void)state;
	char out[1024];
	int status = netcore_run(F.conf, out, sizeof(out), "/bin/sh", "-c",
	                         "kill -TERM $$", NULL);
	if (!(status >= 0 && WIFSIGNALED(status)))
		fail_msg("not killed by a signal: status %#x: %s", status, out);
	assert_int_equal(WTERMSIG(status), SIGTERM);
}

/* /proc/net/dev: two header lines, then one line per interface. */
static void namespace_is_empty(void **state)
{
	(void)state;
	char out[4096];
	int status = netcore_run(F.conf, out, sizeof(out), "/bin/cat",
	                         "/proc/net/dev", NULL);
	assert_int_equal(suptest_exit_code(status), 0);
	char *save, *line = strtok_r(out, "\n", &save);
	int interfaces = 0;
	for (int i = 0; line != NULL; i++, line = strtok_r(NULL, "\n", &save)) {
		if (i < 2)
			continue;
		char name[32];
		assert_int_equal(sscanf(line, " %31[^:]:", name), 1);
		assert_string_equal(name, "lo");
		interfaces++;
	}
	assert_int_equal(interfaces, 1);
}

static void missing_command_is_127(void **state)
{
	(void)state;
	char out[1024];
	int status = netcore_run(F.conf, out, sizeof(out),
	                         "/nonexistent/netcore-run-test", NULL);
	assert_int_equal(suptest_exit_code(status), 127);
	assert_non_null(strstr(out, "No such file or directory"));
}

static void no_broker_names_the_socket(void **state)
{
	(void)state;
	char conf[128], out[1024];
	snprintf(conf, sizeof(conf), "%s/other.conf", F.dir);
	FILE *f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "run_dir %s/nothing-here\n", F.dir);
	fclose(f);
	int status = netcore_run(conf, out, sizeof(out), "/bin/true", NULL);
	assert_int_equal(suptest_exit_code(status), 125);
	char want[160];
	snprintf(want, sizeof(want), "no broker at %s/nothing-here/attach",
	         F.dir);
	if (strstr(out, want) == NULL)
		fail_msg("message lacks '%s': %s", want, out);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: run_test PATH_TO_netcore\n");
		return 2;
	}
	netcore_bin = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(curl_downloads_intact),
	    cmocka_unit_test(exit_status_passes_through),
	    cmocka_unit_test(signal_passes_through),
	    cmocka_unit_test(namespace_is_empty),
	    cmocka_unit_test(missing_command_is_127),
	    cmocka_unit_test(no_broker_names_the_socket),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
