/* sup_harness: see sup_harness.h. */
#include "tests/fault/sup_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "services/supervisor/testing/suptest.h"
#include "tests/fault/data_server.h"
#include "tests/fault/workload.h"
#include "tests/testbed/testbed.h"

extern char **environ;

#define READY_MS 30000 /* netcore up until "ready" */
#define CLI_MS   15000 /* one CLI command */
#define STOP_MS  20000 /* netcore stop, and the supervisor gone */

static bool stopping(const struct ff_sup *s)
{
	return s->interrupted != NULL && *s->interrupted;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Reaps pid by the deadline, else SIGKILLs and reaps it. The wait
 * status, or -ETIMEDOUT if it had to be killed. */
static int reap(pid_t pid, int64_t deadline)
{
	int status;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (ff_now_ms() > deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		pause_ms(5);
	}
}

/* ------------------------------------------------------ the binary */

static bool executable(const char *path)
{
	return access(path, X_OK) == 0;
}

#define NETCORE_REL "services/supervisor/netcore"

static int find_netcore(struct ff_sup *s)
{
	char *cap = s->netcore;
	size_t n = sizeof(s->netcore);
	const char *env = getenv("NETCORE_BIN");
	if (env != NULL && env[0]) {
		snprintf(cap, n, "%s", env);
		return executable(cap) ? 0 : -ENOENT;
	}
	env = getenv("RUNFILES_DIR");
	if (env != NULL && env[0]) {
		snprintf(cap, n, "%s/netcore/" NETCORE_REL, env);
		if (executable(cap))
			return 0;
	}
	char exe[384];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len > 0) {
		exe[len] = '\0';
		/* bazel-bin/tests/fault/demo.runfiles/netcore/... */
		snprintf(cap, n, "%s.runfiles/netcore/" NETCORE_REL, exe);
		if (executable(cap))
			return 0;
		/* bazel-bin/tests/fault/demo -> bazel-bin/services/... */
		char *dir = dirname(exe);
		snprintf(cap, n, "%s/../../" NETCORE_REL, dir);
		if (executable(cap))
			return 0;
	}
	snprintf(cap, n, NETCORE_REL);
	if (!executable(cap))
		return -ENOENT;
	/* Absolute, so a later chdir cannot break it. */
	char *abs = realpath(NETCORE_REL, NULL);
	if (abs == NULL)
		return -errno;
	snprintf(cap, n, "%s", abs);
	free(abs);
	return 0;
}

/* -------------------------------------------------------- commands */

/* Runs argv (PATH searched), stdout into out, stderr into err_path (or
 * inherited if NULL); bounded. The exit code, or -errno. */
static int run(char *const argv[], char *out, size_t cap, int timeout_ms,
               const char *err_path)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	if (err_path != NULL)
		posix_spawn_file_actions_addopen(
		    &fa, 2, err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (err) {
		close(p[0]);
		return -err;
	}
	size_t used = 0;
	int64_t deadline = ff_now_ms() + timeout_ms;
	while (ff_now_ms() < deadline) {
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		char sink[512];
		bool room = used + 1 < cap;
		ssize_t r = room ? read(p[0], out + used, cap - 1 - used)
		                 : read(p[0], sink, sizeof(sink));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (room)
			used += (size_t)r;
	}
	if (cap > 0)
		out[used] = '\0';
	close(p[0]);
	int status = reap(pid, deadline + 1000);
	if (status < 0)
		return status;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -ECHILD;
}

int ff_sup_cli(struct ff_sup *s, const char *cmd, const char *arg, char *out,
               size_t cap, int timeout_ms)
{
	char *argv[] = {s->netcore, (char *)cmd, "--config",
	                s->conf,    (char *)arg, NULL};
	return run(argv, out, cap, timeout_ms, s->err);
}

static int ip(char *const argv[])
{
	char out[1024];
	return run(argv, out, sizeof(out), CLI_MS, NULL);
}

/* ---------------------------------------------------------- status */

static void remember(struct ff_sup *s, int i, unsigned pid)
{
	if (pid == 0)
		return;
	for (int j = 0; j < 8; j++) {
		if (s->seen[i][j] == pid)
			return;
		if (s->seen[i][j] == 0) {
			s->seen[i][j] = pid;
			return;
		}
	}
}

int ff_sup_status(struct ff_sup *s, struct ff_sup_svc out[FF_NSERVICES])
{
	char text[4096];
	int rc = ff_sup_cli(s, "status", "--json", text, sizeof(text), CLI_MS);
	if (rc != 0)
		return rc < 0 ? rc : -ESRCH;
	for (int i = 0; i < FF_NSERVICES; i++) {
		char key[32];
		snprintf(key, sizeof(key), "\"%s\": {",
		         ff_service_name((enum ff_service)i));
		const char *at = strstr(text, key);
		if (at == NULL ||
		    sscanf(at + strlen(key),
		           "\"pid\": %u, \"health\": \"%15[^\"]\", "
		           "\"uptime_ms\": %*u, \"restarts\": %u",
		           &out[i].pid, out[i].health, &out[i].restarts) != 3)
			return -EPROTO;
		remember(s, i, out[i].pid);
	}
	return 0;
}

void ff_sup_log_tail(struct ff_sup *s, FILE *f, int lines)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/netcore.log", s->run_dir);
	FILE *log = fopen(path, "r");
	if (log == NULL)
		return;
	static char ring[64][512];
	int n = 0;
	if (lines > 64)
		lines = 64;
	while (fgets(ring[n % lines], sizeof(ring[0]), log) != NULL)
		n++;
	fclose(log);
	fprintf(f, "--- last lines of %s ---\n", path);
	for (int i = n > lines ? n - lines : 0; i < n; i++)
		fputs(ring[i % lines], f);
}

/* -------------------------------------------------------------- up */

static int write_config(const struct ff_sup *s)
{
	FILE *f = fopen(s->conf, "w");
	if (f == NULL)
		return -errno;
	fprintf(f,
	        "# written by the netcore demo (tests/fault/sup_harness.c)\n"
	        "run_dir %s\n"
	        "netns %s\n"
	        "tun %s\n"
	        "attach_socket %s\n"
	        "heartbeat_interval_ms 100\n"
	        "heartbeat_timeout_ms 2000\n"
	        "start_timeout_ms 10000\n"
	        "backoff_initial_ms 50\n"
	        "backoff_max_ms 1000\n"
	        "stop_timeout_ms 3000\n",
	        s->run_dir, s->ns_path, s->tun, s->attach);
	return fclose(f) == 0 ? 0 : -EIO;
}

/* netcore up --ready-fd 3, in a process group of its own; waits for
 * "ready". */
static int start_supervisor(struct ff_sup *s)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	char *argv[] = {s->netcore,   "up", "--config", s->conf,
	                "--ready-fd", "3",  NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 3);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, s->err,
	                                 O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&at, 0);
	int err = posix_spawn(&s->sup, s->netcore, &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (err) {
		s->sup = 0;
		close(p[0]);
		return -err;
	}
	char buf[16] = {0};
	size_t got = 0;
	int rc = -ETIMEDOUT;
	for (int64_t deadline = ff_now_ms() + READY_MS;
	     ff_now_ms() < deadline;) {
		if (stopping(s)) {
			rc = -ECANCELED;
			break;
		}
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -EPIPE; /* exited without "ready" */
			break;
		}
		got += (size_t)n;
		if (strcmp(buf, "ready\n") == 0) {
			rc = 0;
			break;
		}
		if (got == sizeof(buf) - 1) {
			rc = -EPROTO;
			break;
		}
	}
	close(p[0]);
	return rc;
}

/* Forks the data server inside the namespace, then comes back. */
static int start_server(struct ff_sup *s, const struct ff_driver_cfg *cfg)
{
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int ns = open(s->ns_path, O_RDONLY | O_CLOEXEC);
	int err = 0;
	if (self < 0 || ns < 0 || setns(ns, CLONE_NEWNET) != 0)
		err = -errno;
	if (!err) {
		pid_t pid = ff_server_start(NC_TB_KERNEL4, NC_TB_KERNEL6,
		                            cfg->wl.server_port, NC_TB_STACK4);
		if (pid < 0)
			err = (int)pid;
		else
			s->server = pid;
		if (setns(self, CLONE_NEWNET) != 0 && !err)
			err = -errno;
	}
	if (self >= 0)
		close(self);
	if (ns >= 0)
		close(ns);
	return err;
}

int ff_sup_up(struct ff_sup *s, struct ff_driver_cfg *cfg,
              volatile sig_atomic_t *interrupted)
{
	memset(s, 0, sizeof(*s));
	s->interrupted = interrupted;
	int err = find_netcore(s);
	if (err) {
		fprintf(stderr,
		        "demo: cannot find the netcore binary (" NETCORE_REL
		        " in runfiles or beside this program; or set "
		        "NETCORE_BIN)\n");
		return err;
	}
	int pid = (int)getpid();
	snprintf(s->ns, sizeof(s->ns), "nc-demo-%d", pid);
	snprintf(s->ns_path, sizeof(s->ns_path), "/run/netns/%s", s->ns);
	snprintf(s->tun, sizeof(s->tun), "ncdemo%d", pid % 10000000);
	snprintf(s->dir, sizeof(s->dir), "/tmp/ncdemo-XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		s->dir[0] = '\0';
		return -errno;
	}
	snprintf(s->run_dir, sizeof(s->run_dir), "%s/run", s->dir);
	snprintf(s->conf, sizeof(s->conf), "%s/netcore.conf", s->dir);
	snprintf(s->err, sizeof(s->err), "%s/stderr", s->dir);
	snprintf(s->attach, sizeof(s->attach), "%s/attach", s->run_dir);

	char *add[] = {"ip", "netns", "add", s->ns, NULL};
	char *lo[] = {"ip", "-n", s->ns, "link", "set", "lo", "up", NULL};
	if (ip(add) != 0) {
		fprintf(stderr, "demo: ip netns add %s failed\n", s->ns);
		err = -EEXIST;
	} else {
		s->ns_made = true;
		err = ip(lo) == 0 ? 0 : -EIO;
	}
	err = err ?: write_config(s);
	if (!err) {
		err = start_supervisor(s);
		if (err && err != -ECANCELED)
			fprintf(stderr,
			        "demo: netcore up did not report ready "
			        "(%s)\n",
			        strerror(-err));
	}
	err = err ?: start_server(s, cfg);
	struct ff_sup_svc st[FF_NSERVICES];
	err = err ?: ff_sup_status(s, st);
	if (err) {
		if (err != -ECANCELED)
			ff_sup_log_tail(s, stderr, 30);
		ff_sup_down(s);
		return err;
	}
	cfg->wl.broker_socket = s->attach;
	cfg->wl.server4 = NC_TB_KERNEL4;
	cfg->wl.server6 = NC_TB_KERNEL6;
	cfg->ops = ff_supervisor_ops(s);
	return 0;
}

/* ------------------------------------------------------------ down */

/* True if pid runs one of our service binaries (a pid seen in a status
 * may have been reused since). */
static bool is_service(unsigned pid)
{
	static const char *const comms[] = {"phy_driver", "netcore_core",
	                                    "proxy_broker"};
	char path[64], comm[32] = {0};
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	bool ok = fgets(comm, sizeof(comm), f) != NULL;
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	for (size_t i = 0; ok && i < sizeof(comms) / sizeof(comms[0]); i++)
		if (strcmp(comm, comms[i]) == 0)
			return true;
	return false;
}

void ff_sup_down(struct ff_sup *s)
{
	if (s->server > 0)
		ff_server_stop(s->server);
	s->server = 0;
	if (s->sup > 0) {
		char out[256];
		/* The flag may be set: this is the cleanup, it must run. */
		volatile sig_atomic_t *flag = s->interrupted;
		s->interrupted = NULL;
		if (kill(s->sup, 0) == 0)
			ff_sup_cli(s, "stop", NULL, out, sizeof(out), STOP_MS);
		s->interrupted = flag;
		if (reap(s->sup, ff_now_ms() + STOP_MS) == -ETIMEDOUT)
			fprintf(stderr, "demo: the supervisor did not stop; "
			                "killed it\n");
		s->sup = 0;
	}
	/* Last resort: services normally end with the supervisor (stop, or
	 * --die-with-parent). Bounded: each gets a second to go. */
	for (int i = 0; i < FF_NSERVICES; i++) {
		for (int j = 0; j < 8 && s->seen[i][j]; j++) {
			unsigned pid = s->seen[i][j];
			for (int t = 0; t < 100 && is_service(pid); t++)
				pause_ms(10);
			if (is_service(pid)) {
				fprintf(stderr,
				        "demo: %s pid %u outlived the "
				        "supervisor; killed it\n",
				        ff_service_name((enum ff_service)i),
				        pid);
				kill((pid_t)pid, SIGKILL);
			}
			s->seen[i][j] = 0;
		}
	}
	if (s->ns_made) {
		char *del[] = {"ip", "netns", "del", s->ns, NULL};
		if (ip(del) != 0)
			fprintf(stderr, "demo: ip netns del %s failed\n",
			        s->ns);
		s->ns_made = false;
	}
	if (s->dir[0])
		suptest_remove_tree(s->dir);
	s->dir[0] = '\0';
}
