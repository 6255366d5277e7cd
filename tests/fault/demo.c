/*
 * demo: issue 5's fault demonstration, in one command (`tools/dev.sh
 * main` runs it).
 *
 * In namespaces of its own it starts the system with the real supervisor
 * (`netcore up`, sup_harness.h), runs a sandboxed client (an empty
 * network namespace, libclient attached to the supervisor's attach
 * socket) that downloads from a kernel-side server through the stack with
 * a progress line, kills phy_driver, then proxy_broker, then the core
 * with `netcore kill` while it runs, lets the supervisor bring each back,
 * and ends with a short readable report:
 *
 *   per kill: time until the supervisor had the service back (running
 *   and answering heartbeats), time until every download moved again,
 *   connections lost against what the design promises (phy 0, broker 0,
 *   core: reset with ECONNRESET, then reconnected); bytes verified in
 *   all; `netcore status` (each service restarted once); then
 *   "demo: PASS" (exit 0) or "demo: FAIL (why)" (exit 1).
 *
 * It cleans up after itself, also on Ctrl-C or SIGTERM: the handler only
 * sets a flag; the driver and every wait in the harness see it within a
 * tick, and the main flow stops the supervisor, deletes the namespace and
 * the temp directory, and says so. That cleanup is checked (no namespace,
 * no directory left) and is part of PASS.
 *
 * The kills come from the fault driver (driver.h) with a plan of three,
 * keep_going set (the report covers every kill even if one fails) and a
 * longer gap, so the progress line has time to show the throughput.
 * Options: --seed S (the kill moments; printed), --streams K.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/fault/driver.h"
#include "tests/fault/harness.h"
#include "tests/fault/sup_harness.h"

static volatile sig_atomic_t interrupted;

static const char *expected(enum ff_service s)
{
	return s == FF_CORE ? "reset, reconnect" : "0";
}

static void say_kill(const struct ff_kill *k, bool interrupted_run)
{
	/* A kill the interruption cut short says so, not "NO". */
	bool cut = interrupted_run && !k->recovered;
	char back[32], data[32], ctl[32], lost[96];
	snprintf(back, sizeof(back), "%lld ms", (long long)k->restart_ms);
	snprintf(data, sizeof(data), "never");
	snprintf(ctl, sizeof(ctl), "never");
	if (k->recovered) {
		snprintf(data, sizeof(data), "%lld ms", (long long)k->data_ms);
		snprintf(ctl, sizeof(ctl), "%lld ms", (long long)k->ctl_ms);
	}
	if (k->service == FF_CORE && k->lost > 0)
		snprintf(lost, sizeof(lost), "%llu (%llu ECONNRESET)%s",
		         (unsigned long long)k->lost,
		         (unsigned long long)k->resets,
		         k->recovered ? ", reconnected" : "");
	else
		snprintf(lost, sizeof(lost), "%llu",
		         (unsigned long long)k->lost);
	printf("%-13s %8s %10s %9s  %-30s %-16s %s\n",
	       ff_service_long_name(k->service), back, data, ctl, lost,
	       expected(k->service),
	       cut               ? "interrupted"
	       : k->violation[0] ? "NO"
	                         : "yes");
	if (k->violation[0] && !cut)
		printf("  -> %s\n", k->violation);
}

static void say_report(const struct ff_driver_cfg *cfg,
                       const struct ff_run *run)
{
	char bytes[32];
	printf("\n=== report ===\n");
	printf("%-13s %8s %10s %9s  %-30s %-16s %s\n", "killed", "back",
	       "data again", "new conn", "connections lost", "expected",
	       "as designed");
	for (int i = 0; i < run->done; i++)
		say_kill(&run->k[i], run->interrupted || interrupted);
	for (int i = run->done; i < cfg->kills; i++)
		printf("%-13s not killed: the run had already stopped\n",
		       ff_service_long_name(cfg->plan[i]));
	printf("(times from the kill. back: the supervisor has it running "
	       "and answering\n heartbeats; data again: every download has "
	       "moved bytes again; new conn: a\n new connection and an "
	       "accept on the client's listener worked)\n");
	printf("In all: %s downloaded and verified byte by byte over %d "
	       "streams in %.1f s;\n%llu connection(s) lost; control probes "
	       "(connect, accept) %llu ok, %llu failed and retried.\n",
	       ff_human((double)run->verified, bytes, sizeof(bytes)),
	       run->streams, run->seconds, (unsigned long long)run->lost,
	       (unsigned long long)run->probes_ok,
	       (unsigned long long)run->probes_failed);
}

/* Every service restarted exactly once (the demo's three kills). */
static int check_restarts(struct ff_sup *s, char *why, size_t cap)
{
	struct ff_sup_svc st[FF_NSERVICES];
	int err = ff_sup_status(s, st);
	if (err) {
		snprintf(why, cap, "netcore status: %s", strerror(-err));
		return -1;
	}
	for (int i = 0; i < FF_NSERVICES; i++) {
		if (st[i].restarts != 1 || strcmp(st[i].health, "healthy")) {
			snprintf(why, cap,
			         "%s: %u restarts, %s (expected 1, "
			         "healthy)",
			         ff_service_name((enum ff_service)i),
			         st[i].restarts, st[i].health);
			return -1;
		}
	}
	return 0;
}

static int parse(int argc, char **argv, struct ff_driver_cfg *cfg)
{
	static const struct option opts[] = {
	    {"seed", required_argument, NULL, 'S'},
	    {"streams", required_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'S')
			cfg->seed = strtoull(optarg, NULL, 0);
		else if (c == 'n')
			cfg->wl.streams = atoi(optarg);
		else
			return -1;
	}
	if (optind != argc || cfg->wl.streams < 1 ||
	    cfg->wl.streams > FF_MAX_STREAMS)
		return -1;
	cfg->wl.seed = cfg->seed;
	return 0;
}

int main(int argc, char **argv)
{
	static struct ff_driver_cfg cfg;
	static struct ff_run run;
	static struct ff_sup sup;
	ff_driver_defaults(&cfg);
	const enum ff_service order[] = {FF_PHY, FF_BROKER, FF_CORE};
	for (int i = 0; i < 3; i++)
		cfg.plan[i] = order[i];
	cfg.kills = 3;
	cfg.seed = (uint64_t)time(NULL) % 1000000007u + 1;
	cfg.gap_min_ms = 2000;
	cfg.gap_max_ms = 3000;
	cfg.recovery_ms = 15000;
	cfg.progress = true;
	cfg.keep_going = true;
	cfg.interrupted = &interrupted;
	if (parse(argc, argv, &cfg) != 0) {
		fprintf(stderr, "usage: demo [--seed S] [--streams K]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ff_harness_signals(&interrupted);
	printf("netcore demo: starting the supervisor (netcore up) in a "
	       "network namespace of its own...\n");
	int err = ff_sup_up(&sup, &cfg, &interrupted);
	if (err) {
		printf("demo: FAIL (%s)\n", err == -ECANCELED
		                                ? "interrupted while starting; "
		                                  "cleaned up"
		                                : "the system did not come up");
		return 1;
	}
	printf("up: namespace %s, TUN %s, run dir %s (pid %d)\n"
	       "A sandboxed client (empty netns, libclient) downloads %d "
	       "streams from a kernel-side server;\nkilling phy_driver, "
	       "proxy_broker, core in turn (seed %llu).\n",
	       sup.ns, sup.tun, sup.run_dir, (int)sup.sup, cfg.wl.streams,
	       (unsigned long long)cfg.seed);
	int rc = interrupted ? 1 : ff_drive(&cfg, &run);
	char why[256] = "";
	char status[4096] = "";
	if (rc < 0)
		snprintf(why, sizeof(why), "the workload did not start: %s",
		         strerror(-rc));
	else if (rc != 0 || run.interrupted || interrupted)
		snprintf(why, sizeof(why), "%s",
		         interrupted || run.interrupted ? "interrupted"
		         : run.problem[0]               ? run.problem
		                                        : "?");
	else if (run.done != cfg.kills || run.verified == 0)
		snprintf(why, sizeof(why),
		         "%d of %d kills done, %llu bytes "
		         "verified",
		         run.done, cfg.kills, (unsigned long long)run.verified);
	if (!interrupted) {
		if (ff_sup_cli(&sup, "status", NULL, status, sizeof(status),
		               10000) != 0)
			snprintf(status, sizeof(status), "(no status)\n");
		if (!why[0])
			check_restarts(&sup, why, sizeof(why));
		if (why[0])
			ff_sup_log_tail(&sup, stdout, 20);
	}
	/* Cleanup, then check it really left nothing. */
	char ns_path[96], dir[64];
	snprintf(ns_path, sizeof(ns_path), "%s", sup.ns_path);
	snprintf(dir, sizeof(dir), "%s", sup.dir);
	ff_sup_down(&sup);
	bool clean = access(ns_path, F_OK) != 0 && access(dir, F_OK) != 0;
	if (rc >= 0 && run.done > 0)
		say_report(&cfg, &run);
	if (status[0])
		printf("\n$ netcore status\n%s", status);
	printf("\ncleanup: supervisor stopped, namespace and %s %s\n", dir,
	       clean ? "removed" : "NOT removed");
	if (!clean && !why[0])
		snprintf(why, sizeof(why), "cleanup left %s or %s behind",
		         ns_path, dir);
	if (why[0]) {
		printf("demo: FAIL (%s)\n", why);
		return 1;
	}
	printf("demo: PASS\n");
	return 0;
}
