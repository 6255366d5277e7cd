/*
 * fault_main: the fault suite's program, and the body of the
 * fault_{phy,broker,core}_test targets.
 *
 * Brings the system up in a namespace of its own (harness.h), kills each
 * chosen service N times at random moments during traffic (driver.h),
 * prints per service: kills, connections lost, bytes verified, recovery
 * median and max, and exits 0 only if every semantic held. Options:
 *
 *   --service phy,broker,core   which services, N kills each, in order
 *   --kills N                   (default 20)
 *   --seed S                    kill moments and stream ids (default:
 *                               from the clock; always printed)
 *   --streams K                 concurrent downloads (default 4)
 *   --max-recovery-ms M         data recovery bound (default 10000)
 *   --progress                  a \r progress line
 *   --keep-going                finish the plan after a violation
 *
 * Exit: 0 semantics held; 1 violated; 2 usage; 3 could not start.
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

static volatile sig_atomic_t interrupted;

static int usage(void)
{
	fprintf(stderr, "usage: fault [--service phy,broker,core] [--kills N] "
	                "[--seed S]\n"
	                "             [--streams K] [--max-recovery-ms M] "
	                "[--progress] [--keep-going]\n");
	return 2;
}

/* "phy,core" -> N kills of each, in that order. */
static int plan(struct ff_driver_cfg *cfg, const char *list, int n)
{
	char copy[64];
	snprintf(copy, sizeof(copy), "%s", list);
	cfg->kills = 0;
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		enum ff_service s;
		if (ff_service_parse(t, &s) != 0)
			return -1;
		for (int i = 0; i < n; i++) {
			if (cfg->kills == FF_MAX_KILLS)
				return -1;
			cfg->plan[cfg->kills++] = s;
		}
	}
	return cfg->kills > 0 ? 0 : -1;
}

static uint64_t clock_seed(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^
	        (uint64_t)getpid()) %
	           1000000007u +
	       1;
}

static int parse(int argc, char **argv, struct ff_driver_cfg *cfg)
{
	static const struct option opts[] = {
	    {"service", required_argument, NULL, 's'},
	    {"kills", required_argument, NULL, 'k'},
	    {"seed", required_argument, NULL, 'S'},
	    {"streams", required_argument, NULL, 'n'},
	    {"max-recovery-ms", required_argument, NULL, 'm'},
	    {"progress", no_argument, NULL, 'p'},
	    {"keep-going", no_argument, NULL, 'g'},
	    {NULL, 0, NULL, 0}};
	const char *services = "phy";
	int kills = 20, c;
	cfg->seed = clock_seed();
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			services = optarg;
			break;
		case 'k':
			kills = atoi(optarg);
			break;
		case 'S':
			cfg->seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			cfg->wl.streams = atoi(optarg);
			break;
		case 'm':
			cfg->max_recovery_ms = atoi(optarg);
			break;
		case 'p':
			cfg->progress = true;
			break;
		case 'g':
			cfg->keep_going = true;
			break;
		default:
			return -1;
		}
	}
	cfg->wl.seed = cfg->seed;
	if (optind != argc || kills < 1 || cfg->wl.streams < 1 ||
	    cfg->wl.streams > FF_MAX_STREAMS)
		return -1;
	return plan(cfg, services, kills);
}

int main(int argc, char **argv)
{
	static struct ff_driver_cfg cfg;
	static struct ff_run run;
	static struct ff_harness h;
	ff_driver_defaults(&cfg);
	if (parse(argc, argv, &cfg) != 0)
		return usage();
	cfg.interrupted = &interrupted;
	ff_harness_signals(&interrupted);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("fault: %d kills, %d streams, seed %llu (--seed to repeat)\n",
	       cfg.kills, cfg.wl.streams, (unsigned long long)cfg.seed);
	int err = ff_harness_up(&h, "fault", &cfg);
	if (err) {
		fprintf(stderr, "fault: system did not come up: %s\n",
		        strerror(-err));
		return 3;
	}
	int rc = interrupted ? 1 : ff_drive(&cfg, &run);
	ff_harness_down(&h);
	if (rc < 0) {
		fprintf(stderr, "fault: %s\n", strerror(-rc));
		return 3;
	}
	if (rc == 0 && (run.done != cfg.kills || run.verified == 0)) {
		snprintf(run.problem, sizeof(run.problem),
		         "%d of %d kills done, %llu bytes verified", run.done,
		         cfg.kills, (unsigned long long)run.verified);
		rc = 1;
	}
	ff_report_table(stdout, &run);
	if (rc != 0)
		printf("FAILED: %s\n",
		       run.problem[0] ? run.problem : "interrupted");
	else
		printf("PASSED: every semantic held\n");
	return rc == 0 ? 0 : 1;
}
