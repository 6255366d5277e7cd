/*
 * demo: issue 5's fault demonstration, in one command.
 *
 * In namespaces of its own, it starts the system (for now the testbed:
 * phy driver, core, broker; after the supervisor merges, `netcore up`),
 * runs a sandboxed client (an empty network namespace, libclient only)
 * that downloads from a kernel-side server through the stack with a
 * progress line, kills phy_driver, then proxy_broker, then the core while
 * it runs, and ends with a short readable report: what each recovery
 * cost, bytes verified, connections lost. It cleans up after itself,
 * also on Ctrl-C (SIGINT/SIGTERM set a flag; the run stops within a tick
 * and everything is ended by pid, the namespace deleted).
 *
 * It is the fault driver with a plan of three kills, keep_going set (the
 * report covers every kill even if one fails) and a longer gap, so the
 * progress line has time to show the throughput. Exit 0 if every
 * semantic held, 1 otherwise.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/fault/driver.h"
#include "tests/fault/harness.h"

static volatile sig_atomic_t interrupted;

/* What the design promises for each service, in words. */
static const char *promise(enum ff_service s)
{
	switch (s) {
	case FF_PHY:
		return "no connection lost";
	case FF_BROKER:
		return "data keeps flowing, new sockets work once it is back";
	default:
		return "connections reset (ECONNRESET), then reconnected";
	}
}

static void say_kill(const struct ff_kill *k)
{
	char bytes[32];
	printf("\n%s killed at %.1f s (promise: %s)\n",
	       ff_service_long_name(k->service), (double)k->at_ms / 1000.0,
	       promise(k->service));
	printf("  back after %lld ms", (long long)k->restart_ms);
	if (k->recovered)
		printf("; every download moving again after %lld ms; "
		       "new connections and the listener after %lld ms\n",
		       (long long)k->data_ms, (long long)k->ctl_ms);
	else
		printf("; did not recover\n");
	printf("  connections lost: %llu (%llu reset); %s verified until "
	       "the next kill\n",
	       (unsigned long long)k->lost, (unsigned long long)k->resets,
	       ff_human((double)k->verified, bytes, sizeof(bytes)));
	printf("  %s%s\n",
	       k->violation[0] ? "NOT AS DESIGNED: " : "as designed",
	       k->violation);
}

static void say_all(const struct ff_driver_cfg *cfg, const struct ff_run *run,
                    int rc)
{
	char bytes[32];
	printf("\n=== report ===");
	for (int i = 0; i < run->done; i++)
		say_kill(&run->k[i]);
	/* The run stops early when the workload itself cannot go on. */
	for (int i = run->done; i < cfg->kills; i++)
		printf("\n%s: not killed, the run had already stopped\n",
		       ff_service_long_name(cfg->plan[i]));
	printf("\nIn all: %s downloaded and verified byte by byte over %d "
	       "streams in %.1f s; %llu connection(s) lost; control probes "
	       "%llu ok, %llu failed (retried).\n",
	       ff_human((double)run->verified, bytes, sizeof(bytes)),
	       run->streams, run->seconds, (unsigned long long)run->lost,
	       (unsigned long long)run->probes_ok,
	       (unsigned long long)run->probes_failed);
	if (rc == 0)
		printf("Every recovery was as designed.\n");
	else
		printf("Not as designed: %s\n",
		       run->problem[0] ? run->problem : "interrupted");
}

int main(void)
{
	static struct ff_driver_cfg cfg;
	static struct ff_run run;
	static struct ff_harness h;
	ff_driver_defaults(&cfg);
	enum ff_service order[] = {FF_PHY, FF_BROKER, FF_CORE};
	for (int i = 0; i < 3; i++)
		cfg.plan[i] = order[i];
	cfg.kills = 3;
	cfg.seed = (uint64_t)time(NULL);
	cfg.wl.seed = cfg.seed;
	cfg.gap_min_ms = 2000;
	cfg.gap_max_ms = 3000;
	cfg.recovery_ms = 15000;
	cfg.progress = true;
	cfg.keep_going = true;
	cfg.interrupted = &interrupted;
	ff_harness_signals(&interrupted);
	printf("netcore fault demo: starting phy_driver, core and broker in a "
	       "namespace of their own...\n");
	int err = ff_harness_up(&h, "demo", &cfg);
	if (err) {
		fprintf(stderr, "demo: the system did not come up: %s\n",
		        strerror(-err));
		return 1;
	}
	printf("up (namespace %s). A sandboxed client downloads %d streams; "
	       "killing phy_driver, proxy_broker, core in turn.\n",
	       h.tb.ns_name, cfg.wl.streams);
	int rc = interrupted ? 1 : ff_drive(&cfg, &run);
	ff_harness_down(&h);
	if (rc < 0) {
		fprintf(stderr, "demo: %s\n", strerror(-rc));
		return 1;
	}
	if (run.interrupted || interrupted)
		printf("\ninterrupted; everything was cleaned up.\n");
	say_all(&cfg, &run, rc);
	return rc == 0 ? 0 : 1;
}
