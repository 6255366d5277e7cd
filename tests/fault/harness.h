/*
 * harness: the system the fault programs run against, brought up and
 * torn down in one place, also when the run is interrupted.
 *
 * Up: a testbed with sockets (phy driver, core, broker) in a network
 * namespace named after our pid, with its run directory from mkdtemp;
 * this process enters the namespace and forks the data server there on
 * the kernel side. The driver's workload addresses, broker socket and the
 * testbed's ops table are filled in.
 *
 * Down: the data server, then the testbed (services by pid, namespace,
 * run directory). Idempotent, and safe after a half-done up.
 *
 * Signals: SIGINT and SIGTERM only set a flag (ff_harness_signals); the
 * driver sees it within a tick, stops the workload, and the program calls
 * down. Nothing is cleaned up inside the handler.
 *
 * The fault tests run here; the demo runs on the real supervisor
 * (sup_harness.h: `netcore up` / `netcore stop` and the supervisor's
 * ops table) and shares only ff_harness_signals with this file.
 */
#ifndef NETCORE_TESTS_FAULT_HARNESS_H
#define NETCORE_TESTS_FAULT_HARNESS_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "tests/fault/driver.h"
#include "tests/testbed/testbed.h"

struct ff_harness {
	struct nc_testbed tb;
	bool tb_up;
	pid_t server;
};

/* Installs the flag-setting handler for SIGINT and SIGTERM. */
void ff_harness_signals(volatile sig_atomic_t *flag);

/* 0, or -errno with nothing left behind. */
int ff_harness_up(struct ff_harness *h, const char *tag,
                  struct ff_driver_cfg *cfg);
void ff_harness_down(struct ff_harness *h);

#endif
