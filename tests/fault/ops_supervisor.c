/*
 * ops_supervisor: the fault driver's ops over a running `netcore up`
 * (see ops.h and sup_harness.h). The driver's verbs become the CLI's:
 *
 * - kill(s): reads `netcore status --json` for the service's pid and
 *   restart count, opens a pidfd on that pid, runs `netcore kill S`, and
 *   returns once the pidfd says the process has exited (bounded; the
 *   supervisor reaps it, we only watch);
 * - wait_back(s, deadline): polls `netcore status --json` every 20 ms
 *   until the service runs as another pid, is "healthy" (it answered a
 *   heartbeat) and its restart count went up by one. Nothing here
 *   restarts anything: that is the supervisor's job, and what the demo
 *   shows.
 *
 * Both give up early with -ECANCELED once the run is interrupted.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tests/fault/ops.h"
#include "tests/fault/sup_harness.h"
#include "tests/fault/workload.h"

#define KILL_MS 10000 /* the killed process gone */
#define POLL_MS 20

static bool cancelled(const struct ff_sup *s)
{
	return s->interrupted != NULL && *s->interrupted;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static int sup_kill(void *ctx, enum ff_service svc)
{
	struct ff_sup *s = ctx;
	struct ff_sup_svc st[FF_NSERVICES];
	int err = ff_sup_status(s, st);
	if (err)
		return err;
	s->before_kill[svc] = st[svc];
	if (st[svc].pid == 0)
		return -ESRCH;
	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)st[svc].pid, 0);
	if (pidfd < 0)
		return -errno;
	char out[256];
	int rc = ff_sup_cli(s, "kill", ff_service_name(svc), out, sizeof(out),
	                    KILL_MS);
	if (rc != 0) {
		close(pidfd);
		return rc < 0 ? rc : -ESRCH;
	}
	err = -ETIMEDOUT;
	for (int64_t deadline = ff_now_ms() + KILL_MS;
	     ff_now_ms() < deadline;) {
		if (cancelled(s)) {
			err = -ECANCELED;
			break;
		}
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		if (poll(&p, 1, 100) == 1) {
			err = 0;
			break;
		}
	}
	close(pidfd);
	return err;
}

static int sup_wait_back(void *ctx, enum ff_service svc, int64_t deadline_ms)
{
	struct ff_sup *s = ctx;
	const struct ff_sup_svc *old = &s->before_kill[svc];
	for (;;) {
		if (cancelled(s))
			return -ECANCELED;
		struct ff_sup_svc st[FF_NSERVICES];
		if (ff_sup_status(s, st) == 0 && st[svc].pid != 0 &&
		    st[svc].pid != old->pid &&
		    st[svc].restarts == old->restarts + 1 &&
		    strcmp(st[svc].health, "healthy") == 0)
			return 0;
		if (ff_now_ms() > deadline_ms)
			return -ETIMEDOUT;
		pause_ms(POLL_MS);
	}
}

struct ff_ops ff_supervisor_ops(struct ff_sup *s)
{
	return (struct ff_ops){.name = "supervisor",
	                       .ctx = s,
	                       .kill = sup_kill,
	                       .wait_back = sup_wait_back};
}
