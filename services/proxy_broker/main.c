/*
 * proxy_broker: the service. Parses flags and the config file, creates the
 * broker (attach socket, nng dialer toward the core) and runs its loop
 * until SIGTERM or SIGINT. SIGUSR1 prints the client and socket tables to
 * stderr (nc_broker_dump; the format is in README.md).
 *
 * Signals stay blocked except while the loop waits (epoll_pwait), so a
 * signal is never lost between a check of the flags and the wait.
 *
 * Restart behaviour: on exit it tells the core nothing (see broker.c); the
 * next broker replaces the stale attach socket file. It needs no
 * privilege: only its own sockets.
 *
 * With --health URL it answers the supervisor's heartbeats there
 * (services/common/health.h) with its client and socket figures; the loop
 * wakes at least every IDLE_SLICE_MS so that an idle broker still ticks.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "services/common/health.h"
#include "services/common/log.h"
#include "services/proxy_broker/broker.h"

#define IDLE_SLICE_MS 250

static volatile sig_atomic_t stop, dump;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump = 1;
	else
		stop = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: proxy_broker --socket PATH --core-ctl URL "
	                "--core-fds PATH [--config FILE] [--health URL]\n"
	                "                    [--die-with-parent]\n"
	                "       proxy_broker --print-config [--config FILE]\n");
	exit(2);
}

struct options {
	struct nc_broker_options broker;
	const char *config;
	const char *health_url;
	int print_config;
	int die_with_parent; /* stop when the parent dies (tests) */
};

static void parse(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"core-ctl", required_argument, NULL, 'c'},
	    {"core-fds", required_argument, NULL, 'f'},
	    {"config", required_argument, NULL, 'C'},
	    {"print-config", no_argument, NULL, 'p'},
	    {"die-with-parent", no_argument, NULL, 'D'},
	    {"health", required_argument, NULL, 'H'},
	    {0},
	};
	memset(o, 0, sizeof(*o));
	int opt;
	while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (opt) {
		case 's':
			o->broker.socket_path = optarg;
			break;
		case 'c':
			o->broker.core_ctl = optarg;
			break;
		case 'f':
			o->broker.core_fds = optarg;
			break;
		case 'C':
			o->config = optarg;
			break;
		case 'p':
			o->print_config = 1;
			break;
		case 'D':
			o->die_with_parent = 1;
			break;
		case 'H':
			o->health_url = optarg;
			break;
		default:
			usage();
		}
	}
	bool have_all =
	    o->broker.socket_path && o->broker.core_ctl && o->broker.core_fds;
	if (optind != argc || (!o->print_config && !have_all))
		usage();
}

/* Each client holds four fds (attach socket, memfd, two eventfds). */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void install_signals(sigset_t *wait_mask)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, wait_mask);
	sigdelset(wait_mask, SIGTERM);
	sigdelset(wait_mask, SIGINT);
	sigdelset(wait_mask, SIGUSR1);
}

/* The heartbeat's counters (health.h's NC_HC_BROKER_*). */
static void publish_stats(const struct nc_broker *b)
{
	struct nc_broker_stats s;
	nc_broker_get_stats(b, &s);
	nc_health_set(NC_HC_BROKER_CLIENTS, s.clients);
	nc_health_set(NC_HC_BROKER_ATTACHED, s.attached);
	nc_health_set(NC_HC_BROKER_SOCKETS, s.sockets);
	nc_health_set(NC_HC_BROKER_CORE_PIPES, s.core_pipes);
	nc_health_set(NC_HC_BROKER_MEMORY, s.memory);
	nc_health_set(NC_HC_BROKER_FORWARDED, s.forwarded);
	nc_health_set(NC_HC_BROKER_REFUSED, s.refused);
	nc_health_set(NC_HC_BROKER_CORE_ERRORS, s.core_errors);
	nc_health_set(NC_HC_BROKER_DISCONNECTED, s.disconnected);
	nc_health_set(NC_HC_BROKER_RECOVERED, s.recovered);
	nc_health_set(NC_HC_BROKER_REATTACHED, s.reattached);
	nc_health_set(NC_HC_BROKER_CORE_RESTARTS, s.core_restarts);
}

int main(int argc, char **argv)
{
	struct options o;
	nc_log_init("broker");
	parse(argc, argv, &o);
	if (o.die_with_parent) {
		pid_t parent = getppid();
		/* SIGTERM: the broker's clean exit path. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			return 0;
	}
	nc_broker_config_default(&o.broker.config);
	char err[NC_BROKER_ERR_MAX + 4096];
	if (o.config != NULL &&
	    nc_broker_config_load(&o.broker.config, o.config, err,
	                          sizeof(err)) != 0) {
		nc_log(NC_LOG_ERROR, "config %s", err);
		return 2;
	}
	if (o.print_config) {
		nc_broker_config_write(&o.broker.config, stdout);
		return 0;
	}
	sigset_t wait_mask;
	install_signals(&wait_mask);
	raise_fd_limit();
	struct nc_broker *b;
	int rc = nc_broker_create(&b, &o.broker);
	if (rc != 0) {
		nc_log(NC_LOG_ERROR,
		       "cannot start (--socket %s, --core-ctl %s): %s",
		       o.broker.socket_path, o.broker.core_ctl, strerror(-rc));
		return 1;
	}
	rc = nc_health_start(o.health_url, "broker");
	if (rc != 0)
		nc_log(NC_LOG_ERROR, "health: %s", strerror(-rc));
	while (!stop && rc == 0) {
		nc_health_tick();
		publish_stats(b);
		rc = nc_broker_step(b, IDLE_SLICE_MS, &wait_mask);
		if (dump) {
			dump = 0;
			nc_broker_dump(b, stderr);
		}
	}
	if (rc != 0)
		nc_log(NC_LOG_ERROR, "loop: %s", strerror(-rc));
	nc_health_stop();
	nc_broker_destroy(b);
	return rc == 0 ? 0 : 1;
}
