/*
 * netcore: the supervisor CLI (README.md beside this file).
 *
 *   netcore up [--config FILE] [--daemon] [--ready-fd N]
 *   netcore status [--json] | stats [--json] [--config FILE]
 *   netcore restart|kill phy|core|broker [--config FILE]
 *   netcore stop [--config FILE]
 *   netcore config --print [--config FILE]
 *   netcore run [--config FILE] [--] CMD [ARG]...
 *
 * Without --config, /etc/netcore/netcore.conf is read if it exists, else
 * every default applies. `up` runs the supervisor in the foreground (sup.c);
 * --daemon starts the same command again with posix_spawn in a new session
 * (never fork: the child will run nng) and returns once it reports ready on
 * a pipe, or fails if it exits first. --ready-fd N writes "ready\n" to fd N
 * once ready (what --daemon uses, and tests). `run` (run.c) reads only
 * the config and becomes CMD; its own flags end at CMD, so CMD's are CMD's.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "services/supervisor/cli.h"
#include "services/supervisor/config.h"
#include "services/supervisor/ctl.h"
#include "services/supervisor/run.h"
#include "services/supervisor/sup.h"

extern char **environ;

#define DEFAULT_CONFIG "/etc/netcore/netcore.conf"

struct options {
	const char *config;
	bool json, daemon, print;
	int ready_fd;
};

static void usage(void)
{
	fprintf(stderr,
	        "usage: netcore up [--config FILE] [--daemon] [--ready-fd N]\n"
	        "       netcore status [--json] [--config FILE]\n"
	        "       netcore stats [--json] [--config FILE]\n"
	        "       netcore restart|kill phy|core|broker [--config FILE]\n"
	        "       netcore stop [--config FILE]\n"
	        "       netcore config --print [--config FILE]\n"
	        "       netcore run [--config FILE] [--] CMD [ARG]...\n");
	exit(2);
}

static void parse(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"daemon", no_argument, NULL, 'd'},
	    {"print", no_argument, NULL, 'p'},
	    {"ready-fd", required_argument, NULL, 'r'},
	    {0},
	};
	memset(o, 0, sizeof(*o));
	o->ready_fd = -1;
	int opt;
	char *end;
	while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o->config = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'd':
			o->daemon = true;
			break;
		case 'p':
			o->print = true;
			break;
		case 'r':
			o->ready_fd = (int)strtol(optarg, &end, 10);
			if (*end || o->ready_fd < 0)
				usage();
			break;
		default:
			usage();
		}
	}
}

static int load(const struct options *o, struct nc_sup_config *c)
{
	nc_sup_config_default(c);
	const char *path = o->config;
	if (path == NULL && access(DEFAULT_CONFIG, F_OK) == 0)
		path = DEFAULT_CONFIG;
	if (path == NULL) {
		nc_sup_config_finish(c);
		return 0;
	}
	char err[NC_SUP_ERR_MAX + 2 * NC_SUP_PATH_MAX];
	if (nc_sup_config_load(c, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "netcore: config %s\n", err);
		return -1;
	}
	return 0;
}

/* Waits for the child's "ready" (or its exit: EOF). */
static int wait_ready(int fd, pid_t pid, const struct nc_sup_config *c)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int timeout = (int)c->start_timeout_ms * 3 + 10000;
	char buf[8] = {0};
	if (poll(&p, 1, timeout) == 1 && read(fd, buf, sizeof(buf) - 1) == 6 &&
	    strcmp(buf, "ready\n") == 0) {
		printf("netcore: ready (supervisor pid %d, log %s)\n", (int)pid,
		       c->log_file);
		return 0;
	}
	fprintf(stderr, "netcore: the supervisor did not get ready; see %s\n",
	        c->log_file);
	return 1;
}

static int daemonize(const struct options *o, const struct nc_sup_config *c)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return 1;
	char *argv[] = {"netcore", "up", "--ready-fd", "3", NULL, NULL, NULL};
	if (o->config) {
		argv[4] = "--config";
		argv[5] = (char *)o->config;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 3);
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
	/* By its real path, so that ps shows "netcore", not "exe". */
	char exe[4096] = "/proc/self/exe";
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0)
		exe[n] = '\0';
	else
		strcpy(exe, "/proc/self/exe");
	pid_t pid;
	int err = posix_spawn(&pid, exe, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (err) {
		fprintf(stderr, "netcore: cannot start: %s\n", strerror(err));
		close(p[0]);
		return 1;
	}
	int rc = wait_ready(p[0], pid, c);
	close(p[0]);
	return rc;
}

static int service_arg(int argc, char **argv)
{
	if (optind >= argc)
		usage();
	int svc = nc_sup_service_parse(argv[optind++]);
	if (svc < 0) {
		fprintf(stderr,
		        "netcore: unknown service '%s' (phy, core, "
		        "broker)\n",
		        argv[optind - 1]);
		exit(2);
	}
	return svc;
}

/* `run`: options up to CMD (or `--`), then CMD's words untouched; getopt
 * would permute CMD's own options into ours. */
static int run_command(int argc, char **argv)
{
	struct options o = {.ready_fd = -1};
	int i = 2;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strncmp(argv[i], "--config=", 9) == 0)
			o.config = argv[i] + 9;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			o.config = argv[++i];
		else
			usage();
	}
	if (i >= argc)
		usage();
	struct nc_sup_config c;
	if (load(&o, &c) != 0)
		return NCI_RUN_FAILED;
	return nci_run(&c, argv + i);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return run_command(argc, argv);
	struct options o;
	optind = 2;
	parse(argc, argv, &o);
	int svc = -1;
	if (strcmp(cmd, "restart") == 0 || strcmp(cmd, "kill") == 0)
		svc = service_arg(argc, argv);
	if (optind != argc)
		usage();
	struct nc_sup_config c;
	if (load(&o, &c) != 0)
		return 2;
	if (strcmp(cmd, "up") == 0)
		return o.daemon ? daemonize(&o, &c)
		                : nci_sup_run(o.config, &c, o.ready_fd);
	if (strcmp(cmd, "status") == 0)
		return nci_cli_status(&c, o.json);
	if (strcmp(cmd, "stats") == 0)
		return nci_cli_stats(&c, o.json);
	if (strcmp(cmd, "restart") == 0)
		return nci_cli_signal(&c, NC_SUP_RESTART, svc);
	if (strcmp(cmd, "kill") == 0)
		return nci_cli_signal(&c, NC_SUP_KILL, svc);
	if (strcmp(cmd, "stop") == 0)
		return nci_cli_stop(&c);
	if (strcmp(cmd, "config") == 0 && o.print) {
		nc_sup_config_write(&c, stdout);
		return 0;
	}
	usage();
}
