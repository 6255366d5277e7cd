/*
 * driver: kills services during traffic and judges what it cost.
 *
 * Given a running system (the caller started it, and a data server on
 * the kernel side) and an ops table (ops.h), the driver
 *
 * 1. starts the workload (workload.h) in two children, each in an empty
 *    network namespace of its own: the streams and the control prober;
 * 2. waits until every stream moves and a probe has succeeded;
 * 3. for each planned kill: lets traffic run for a random time (seeded;
 *    the seed is printed), kills the service, waits until it is back,
 *    sets the workload's mark, and waits (bounded) until every stream has
 *    moved bytes after the mark and a probe begun after it succeeded;
 * 4. stops the workload and reports.
 *
 * Recovery time of a kill = from the kill until the last stream moved
 * again ("data"), and until the first control probe begun after the
 * service was back succeeded ("control"). Counting from the service being
 * back, not from the kill, keeps bytes that were already on their way
 * from passing for a recovery. Losses are counted from one kill to the
 * next, so a reset that shows up late still belongs to its kill.
 *
 * The semantics it enforces (DESIGN.md's failure table), per kill:
 *   phy     no connection lost;
 *   broker  no connection lost (data keeps flowing), control back;
 *   core    connections may be lost, but with a clear error (ECONNRESET,
 *           EPIPE), never a stall or another error;
 *   all     every byte right, the service back and everything moving
 *           again within recovery_ms, data recovery below max_recovery_ms.
 * A violation ends the run (or, with keep_going, is recorded and the run
 * goes on, as the demo wants a whole report).
 *
 * What it does not do: start or stop the system or the data server, or
 * restart anything itself (that is the ops table's job).
 */
#ifndef NETCORE_TESTS_FAULT_DRIVER_H
#define NETCORE_TESTS_FAULT_DRIVER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tests/fault/ops.h"
#include "tests/fault/workload.h"

#define FF_MAX_KILLS 64

struct ff_driver_cfg {
	struct ff_workload_cfg wl;
	struct ff_ops ops;
	enum ff_service plan[FF_MAX_KILLS];
	int kills;
	uint64_t seed;
	int gap_min_ms, gap_max_ms; /* traffic before each kill */
	int recovery_ms;            /* deadline for back + moving again */
	int max_recovery_ms;        /* data recovery above this: violation */
	bool progress;              /* a \r progress line on stdout */
	bool keep_going;            /* record violations, finish the plan */
	volatile sig_atomic_t *interrupted; /* set by a signal handler */
};

void ff_driver_defaults(struct ff_driver_cfg *cfg);

struct ff_kill {
	enum ff_service service;
	int64_t at_ms;      /* since the start of traffic */
	int64_t restart_ms; /* kill until the service was back */
	int64_t data_ms;    /* kill until every stream moved again */
	int64_t ctl_ms;     /* kill until a new control probe succeeded */
	bool recovered;
	uint64_t lost, resets, stalls, verified; /* until the next kill */
	int lost_errno;      /* a lost connection's error, if any */
	char violation[160]; /* empty: none */
};

struct ff_run {
	uint64_t seed;
	int streams;
	struct ff_kill k[FF_MAX_KILLS];
	int done; /* kills performed */
	uint64_t verified, lost, probes_ok, probes_failed;
	uint64_t lost_before; /* lost before the first kill: never allowed */
	double seconds;
	bool interrupted;
	char problem[256]; /* the first violation or failure */
};

/* Runs the plan. 0 if every semantic held, 1 if not (run->problem says
 * which first), -errno if the workload could not even start. */
int ff_drive(const struct ff_driver_cfg *cfg, struct ff_run *run);

/* Per service: kills, connections lost, bytes verified, recovery median
 * and max (data and control). */
void ff_report_table(FILE *f, const struct ff_run *run);

#endif
