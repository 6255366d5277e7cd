/* testbed: see testbed.h. */
#include "tests/testbed/testbed.h"

#include <ck_pr.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PHY_BIN           "services/phy_driver/phy_driver"
#define CORE_BIN          "services/netcore/netcore_core"
#define BROKER_BIN        "services/proxy_broker/proxy_broker"
#define ATTACH_TIMEOUT_MS 10000

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reaps pid, killing it if it has not exited by the deadline. */
static int reap(pid_t pid, int64_t deadline)
{
	int status;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run_quiet(char *const argv[])
{
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		return -err;
	return reap(pid, now_ms() + 20000);
}

/* Spawns a service with the region and bells as fds 3, 4, 5. */
static int spawn_service(struct nc_testbed *tb, char *const argv[], pid_t *pid)
{
	int fds[3] = {tb->region.fd, tb->phy_bell.fd, tb->core_bell.fd};
	int high[3];
	for (int i = 0; i < 3; i++)
		high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	for (int i = 0; i < 3; i++)
		posix_spawn_file_actions_adddup2(&fa, high[i], 3 + i);
	int err = posix_spawn(pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	for (int i = 0; i < 3; i++)
		close(high[i]);
	return -err;
}

static struct nc_phy_control *control(const struct nc_testbed *tb)
{
	return nc_phy_control(&tb->region, &tb->layout);
}

static bool link_up(const struct nc_testbed *tb)
{
	struct nc_phy_control *c = control(tb);
	uint32_t req = ck_pr_load_uint(&c->phy_request);
	return req != 0 && ck_pr_load_uint(&c->phy_granted) == req &&
	       ck_pr_load_uint(&c->phy_pid) == (uint32_t)tb->phy_pid;
}

static int wait_link(struct nc_testbed *tb)
{
	int64_t deadline = now_ms() + ATTACH_TIMEOUT_MS;
	while (!link_up(tb)) {
		int status;
		if (waitpid(tb->phy_pid, &status, WNOHANG) == tb->phy_pid) {
			tb->phy_pid = 0;
			return -ECHILD;
		}
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

int nc_testbed_start_phy(struct nc_testbed *tb)
{
	char *argv[] = {PHY_BIN,
	                "--region-fd",
	                "3",
	                "--phy-bell-fd",
	                "4",
	                "--core-bell-fd",
	                "5",
	                "--tun",
	                NC_TB_TUN,
	                "--kernel-ipv4",
	                "10.77.0.1/24",
	                "--kernel-ipv6",
	                "fd77::1/64",
	                "--netns",
	                tb->ns_path,
	                "--die-with-parent",
	                NULL};
	int err = spawn_service(tb, argv, &tb->phy_pid);
	return err ? err : wait_link(tb);
}

int nc_testbed_kill_phy(struct nc_testbed *tb)
{
	if (tb->phy_pid <= 0)
		return -ESRCH;
	kill(tb->phy_pid, SIGKILL);
	int status = reap(tb->phy_pid, now_ms() + 5000);
	tb->phy_pid = 0;
	return status == 128 + SIGKILL ? 0 : -EIO;
}

static int start_core(struct nc_testbed *tb)
{
	char port[8];
	snprintf(port, sizeof(port), "%u", tb->echo_port);
	char *argv[16] = {CORE_BIN, "--region-fd",    "3", "--phy-bell-fd",
	                  "4",      "--core-bell-fd", "5", "--echo-port",
	                  port};
	int n = 9;
	if (tb->core_ctl[0] != '\0') {
		argv[n++] = "--ctl";
		argv[n++] = tb->core_ctl;
		argv[n++] = "--fds";
		argv[n++] = tb->core_fds;
	}
	argv[n++] = "--die-with-parent";
	argv[n] = NULL;
	return spawn_service(tb, argv, &tb->core_pid);
}

static bool is_socket(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Waits until `path` is a listening socket, or the process died. */
static int wait_socket(const char *path, pid_t pid)
{
	int64_t deadline = now_ms() + ATTACH_TIMEOUT_MS;
	while (!is_socket(path)) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			return -ECHILD;
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

int nc_testbed_start_broker(struct nc_testbed *tb, const char *config)
{
	char *argv[12] = {BROKER_BIN,   "--socket",   tb->broker_socket,
	                  "--core-ctl", tb->core_ctl, "--core-fds",
	                  tb->core_fds};
	int n = 7;
	if (config != NULL) {
		argv[n++] = "--config";
		argv[n++] = (char *)config;
	}
	argv[n++] = "--die-with-parent";
	argv[n] = NULL;
	unlink(tb->broker_socket);
	int err =
	    -posix_spawn(&tb->broker_pid, argv[0], NULL, NULL, argv, environ);
	return err ? err : wait_socket(tb->broker_socket, tb->broker_pid);
}

int nc_testbed_kill_broker(struct nc_testbed *tb)
{
	if (tb->broker_pid <= 0)
		return -ESRCH;
	kill(tb->broker_pid, SIGKILL);
	int status = reap(tb->broker_pid, now_ms() + 5000);
	tb->broker_pid = 0;
	return status == 128 + SIGKILL ? 0 : -EIO;
}

int nc_testbed_kill_core(struct nc_testbed *tb)
{
	if (tb->core_pid <= 0)
		return -ESRCH;
	kill(tb->core_pid, SIGKILL);
	int status = reap(tb->core_pid, now_ms() + 5000);
	tb->core_pid = 0;
	return status == 128 + SIGKILL ? 0 : -EIO;
}

/* A new core bumps core_epoch; a surviving phy sees it and asks again.
 * The link is back once the grant carries the new epoch. */
static bool core_granted(const struct nc_testbed *tb, uint32_t old_epoch)
{
	struct nc_phy_control *c = control(tb);
	uint32_t epoch = ck_pr_load_uint(&c->core_epoch);
	uint32_t req = ck_pr_load_uint(&c->phy_request);
	return epoch != old_epoch &&
	       ck_pr_load_uint(&c->granted_epoch) == epoch &&
	       ck_pr_load_uint(&c->phy_granted) == req;
}

int nc_testbed_start_core(struct nc_testbed *tb)
{
	uint32_t old_epoch = ck_pr_load_uint(&control(tb)->core_epoch);
	if (tb->core_fds[0] != '\0')
		unlink(tb->core_fds); /* so the wait below sees the new one */
	int err = start_core(tb);
	if (err)
		return err;
	int64_t deadline = now_ms() + ATTACH_TIMEOUT_MS;
	while (!core_granted(tb, old_epoch)) {
		int status;
		if (waitpid(tb->core_pid, &status, WNOHANG) == tb->core_pid) {
			tb->core_pid = 0;
			return -ECHILD;
		}
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (tb->core_fds[0] == '\0')
		return 0;
	return wait_socket(tb->core_fds, tb->core_pid);
}

static int make_run_dir(struct nc_testbed *tb)
{
	snprintf(tb->run_dir, sizeof(tb->run_dir), "/tmp/nctb-XXXXXX");
	if (mkdtemp(tb->run_dir) == NULL) {
		tb->run_dir[0] = '\0';
		return -errno;
	}
	snprintf(tb->broker_socket, sizeof(tb->broker_socket), "%s/broker",
	         tb->run_dir);
	snprintf(tb->core_ctl, sizeof(tb->core_ctl), "ipc://%s/core.ctl",
	         tb->run_dir);
	snprintf(tb->core_fds, sizeof(tb->core_fds), "%s/core.fds",
	         tb->run_dir);
	return 0;
}

static void remove_run_dir(struct nc_testbed *tb)
{
	if (tb->run_dir[0] == '\0')
		return;
	char path[160];
	const char *names[] = {"broker", "core.ctl", "core.fds"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tb->run_dir, names[i]);
		unlink(path);
	}
	rmdir(tb->run_dir);
	tb->run_dir[0] = '\0';
}

static int create_netns(struct nc_testbed *tb, const char *tag)
{
	snprintf(tb->ns_name, sizeof(tb->ns_name), "nc-%s-%d", tag,
	         (int)getpid());
	snprintf(tb->ns_path, sizeof(tb->ns_path), "/run/netns/%s",
	         tb->ns_name);
	char *add[] = {"ip", "netns", "add", tb->ns_name, NULL};
	if (run_quiet(add) != 0)
		return -EIO;
	tb->ns_created = true;
	char *lo[] = {"ip", "-n", tb->ns_name, "link", "set", "lo", "up", NULL};
	return run_quiet(lo) == 0 ? 0 : -EIO;
}

static int start_all(struct nc_testbed *tb, const char *tag, uint16_t echo_port,
                     bool sockets, const char *config)
{
	memset(tb, 0, sizeof(*tb));
	tb->core_bell.fd = tb->phy_bell.fd = tb->region.fd = -1;
	tb->echo_port = echo_port;
	struct nc_phy_params params;
	nc_phy_params_default(&params);
	int err = create_netns(tb, tag);
	if (!err && sockets)
		err = make_run_dir(tb);
	err = err ?: nc_phy_region_create(&tb->region, &params);
	err = err ?: nc_phy_layout(&params, &tb->layout);
	err = err ?: nc_doorbell_create(&tb->core_bell);
	err = err ?: nc_doorbell_create(&tb->phy_bell);
	err = err ?: start_core(tb);
	err = err ?: nc_testbed_start_phy(tb);
	if (!err && sockets)
		err = wait_socket(tb->core_fds, tb->core_pid);
	if (!err && sockets)
		err = nc_testbed_start_broker(tb, config);
	if (err)
		nc_testbed_stop(tb);
	return err;
}

int nc_testbed_start(struct nc_testbed *tb, const char *tag, uint16_t echo_port)
{
	return start_all(tb, tag, echo_port, false, NULL);
}

int nc_testbed_start_sockets(struct nc_testbed *tb, const char *tag,
                             uint16_t echo_port, const char *broker_config)
{
	return start_all(tb, tag, echo_port, true, broker_config);
}

static void end_service(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	reap(*pid, now_ms() + 5000);
	*pid = 0;
}

void nc_testbed_stop(struct nc_testbed *tb)
{
	end_service(&tb->broker_pid);
	end_service(&tb->phy_pid);
	end_service(&tb->core_pid);
	if (tb->ns_created) {
		char *del[] = {"ip", "netns", "del", tb->ns_name, NULL};
		run_quiet(del);
		tb->ns_created = false;
	}
	nc_doorbell_close(&tb->core_bell);
	nc_doorbell_close(&tb->phy_bell);
	nc_region_close(&tb->region);
	remove_run_dir(tb);
}

int nc_testbed_enter(struct nc_testbed *tb)
{
	int fd = open(tb->ns_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int err = setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
	close(fd);
	return err;
}

static void read_all(int fd, char *out, size_t cap, int64_t deadline)
{
	size_t used = 0;
	while (now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, out + used, cap - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
		if (used == cap - 1)
			break;
	}
	out[used] = '\0';
}

int nc_testbed_run(struct nc_testbed *tb, char *const argv[], char *out,
                   size_t cap, int timeout_s)
{
	char *full[32] = {"ip", "netns", "exec", tb->ns_name};
	int n = 4;
	for (int i = 0; argv[i] != NULL && n < 31; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	pid_t pid;
	int err = posix_spawnp(&pid, "ip", &fa, NULL, full, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (err) {
		close(pipefd[0]);
		return -err;
	}
	int64_t deadline = now_ms() + timeout_s * 1000;
	read_all(pipefd[0], out, cap, deadline);
	close(pipefd[0]);
	return reap(pid, deadline + 1000);
}

struct nc_phy_counters nc_testbed_phy_counters(const struct nc_testbed *tb)
{
	struct nc_phy_counters c;
	memcpy(&c, &control(tb)->phy, sizeof(c));
	return c;
}

struct nc_phy_core_report nc_testbed_core_report(const struct nc_testbed *tb)
{
	struct nc_phy_core_report r;
	memcpy(&r, &control(tb)->core, sizeof(r));
	return r;
}

bool nc_testbed_core_alive(struct nc_testbed *tb)
{
	int status;
	return tb->core_pid > 0 && waitpid(tb->core_pid, &status, WNOHANG) == 0;
}
