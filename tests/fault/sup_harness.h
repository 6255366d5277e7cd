/*
 * sup_harness: the system the demo runs against, started by the real
 * supervisor (`netcore up`) instead of the testbed.
 *
 * Up, in order, each step bounded and undone if a later one fails:
 *
 * 1. a network namespace of our own, `nc-demo-PID`, with lo up;
 * 2. a directory from mkdtemp under /tmp holding the config, the
 *    supervisor's stderr and its run dir (attach socket, log);
 * 3. the config: run_dir, `netns /run/netns/nc-demo-PID`, a TUN named
 *    `ncdemoPID`, quick heartbeats and restarts (the demo measures
 *    recovery, so the supervisor should notice a death at once);
 * 4. `netcore up --config FILE --ready-fd 3` with posix_spawn, in a
 *    process group of its own (a Ctrl-C reaches the demo only; the demo
 *    decides how the supervisor ends), and a bounded wait for "ready";
 * 5. the kernel-side data server (data_server.h), forked inside the
 *    namespace; this process then returns to its own namespace.
 *
 * The `netcore` binary is found without trusting the working directory
 * (`bazel run` and `bazel test` put it in runfiles, a plain run from
 * bazel-bin does not): $NETCORE_BIN, then $RUNFILES_DIR, then this
 * program's own runfiles tree, then Bazel's output layout beside this
 * program, then the working directory.
 *
 * Down: the data server; `netcore stop` (bounded), the supervisor reaped
 * by pid, SIGKILLed if it is still there; any service pid seen in a
 * status that is still alive is SIGKILLed (last resort: normally the
 * supervisor's stop has ended them); the namespace deleted (which also
 * takes a TUN device a killed supervisor left); the temp directory
 * removed. Idempotent, safe after a half-done up, and never run from a
 * signal handler: SIGINT/SIGTERM only set the flag (harness.h's
 * ff_harness_signals) that every wait here and in the driver checks.
 *
 * The ops table for the driver (ops_supervisor.c) kills with `netcore
 * kill SERVICE --config FILE` and waits for `netcore status --json` to
 * show a new, healthy process.
 */
#ifndef NETCORE_TESTS_FAULT_SUP_HARNESS_H
#define NETCORE_TESTS_FAULT_SUP_HARNESS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "tests/fault/driver.h"
#include "tests/fault/ops.h"

/* One service's row of `netcore status --json`. */
struct ff_sup_svc {
	unsigned pid; /* 0: not running */
	unsigned restarts;
	char health[16];
};

struct ff_sup {
	char netcore[512]; /* the binary */
	char ns[48], ns_path[96];
	bool ns_made;
	char dir[64]; /* mkdtemp: config, stderr, run dir */
	char run_dir[96], conf[96], err[96], attach[128], tun[16];
	pid_t sup;    /* `netcore up`; 0: none */
	pid_t server; /* the data server; 0: none */
	volatile sig_atomic_t *interrupted;
	/* Every service pid seen, for the last resort; and ops state. */
	unsigned seen[FF_NSERVICES][8];
	struct ff_sup_svc before_kill[FF_NSERVICES];
};

/* 0, or -errno with nothing left behind. Fills cfg's addresses, broker
 * socket and ops. `interrupted` may be NULL. */
int ff_sup_up(struct ff_sup *s, struct ff_driver_cfg *cfg,
              volatile sig_atomic_t *interrupted);
void ff_sup_down(struct ff_sup *s);

/* Runs `netcore CMD [ARG] --config FILE`, stdout into out (NUL-ended),
 * bounded by timeout_ms. Returns the exit code, or -errno. */
int ff_sup_cli(struct ff_sup *s, const char *cmd, const char *arg, char *out,
               size_t cap, int timeout_ms);

/* Reads all three services from `netcore status --json`. 0 or -errno. */
int ff_sup_status(struct ff_sup *s, struct ff_sup_svc out[FF_NSERVICES]);

/* The last `lines` lines of the supervisor's log, to f. */
void ff_sup_log_tail(struct ff_sup *s, FILE *f, int lines);

/* The driver's ops over this supervisor (ops_supervisor.c). */
struct ff_ops ff_supervisor_ops(struct ff_sup *s);

#endif
