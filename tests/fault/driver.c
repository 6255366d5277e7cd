/* driver: see driver.h. */
#include "tests/fault/driver.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fault/sandbox.h"

#define WARMUP_MS   20000
#define TICK_MS     10
#define PROGRESS_MS 250
#define STOP_MS     20000 /* a prober may sit in two 5 s timeouts */

void ff_driver_defaults(struct ff_driver_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	ff_workload_defaults(&cfg->wl);
	cfg->seed = 1;
	cfg->gap_min_ms = 300;
	cfg->gap_max_ms = 1000;
	cfg->recovery_ms = 20000;
	cfg->max_recovery_ms = 10000;
}

struct drv {
	const struct ff_driver_cfg *cfg;
	struct ff_run *run;
	struct ff_shared *sh;
	struct ff_child streams, prober;
	uint64_t rng;
	int64_t t0;
	int64_t printed_ms;
	uint64_t printed_bytes;
	const char *phase;
	int current; /* the kill whose window this is; -1: before any */
	struct ff_totals snap[FF_MAX_KILLS + 1]; /* at each kill, and the end */
};

/* xorshift64*: the kill moments, reproducible from the printed seed. */
static uint64_t next_rand(struct drv *d)
{
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return d->rng * 0x2545f4914f6cdd1dull;
}

static void problem(struct drv *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct drv *d, const char *fmt, ...)
{
	if (d->run->problem[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->run->problem, sizeof(d->run->problem), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ children */

static int streams_child(void *arg)
{
	struct drv *d = arg;
	return ff_streams_main(&d->cfg->wl, d->sh);
}

static int prober_child(void *arg)
{
	struct drv *d = arg;
	return ff_prober_main(&d->cfg->wl, d->sh);
}

static void stop_children(struct drv *d)
{
	atomic_store(&d->sh->stop, 1);
	int64_t deadline = ff_now_ms() + STOP_MS;
	int a = ff_child_finish(&d->streams, deadline);
	int b = ff_child_finish(&d->prober, deadline);
	if (a != 0 || b != 0)
		problem(d, "workload exit: streams %d, prober %d", a, b);
}

/* ------------------------------------------------------------ progress */

static void progress(struct drv *d, bool force)
{
	int64_t now = ff_now_ms();
	if (!d->cfg->progress || (!force && now - d->printed_ms < PROGRESS_MS))
		return;
	struct ff_totals t = ff_totals(d->sh, d->cfg->wl.streams);
	double secs = (double)(now - d->printed_ms) / 1000.0;
	double rate = d->printed_ms && secs > 0
	                  ? (double)(t.verified - d->printed_bytes) / secs
	                  : 0;
	char total[32], speed[32];
	printf("\r%6.1f s | %s verified | %s/s | streams %d/%d up | lost %llu "
	       "| probes %llu | %-34.34s",
	       (double)(now - d->t0) / 1000.0,
	       ff_human((double)t.verified, total, sizeof(total)),
	       ff_human(rate, speed, sizeof(speed)), t.up, d->cfg->wl.streams,
	       (unsigned long long)t.lost,
	       (unsigned long long)atomic_load(&d->sh->probe.ok), d->phase);
	fflush(stdout);
	d->printed_ms = now;
	d->printed_bytes = t.verified;
}

/* ---------------------------------------------------------------- waits */

/* A connection lost where none may be (before any kill, or after a phy
 * or broker kill): with keep_going off the run stops at once rather than
 * at the end, and says which kill it was. */
static bool forbidden_loss(struct drv *d)
{
	int i = d->current;
	uint64_t base = i < 0 ? 0 : d->snap[i].lost;
	if (d->cfg->keep_going || (i >= 0 && d->cfg->plan[i] == FF_CORE) ||
	    ff_totals(d->sh, d->cfg->wl.streams).lost == base)
		return false;
	if (i < 0)
		problem(d, "a connection was lost before any kill");
	else
		problem(d, "kill %d (%s): a connection was lost", i + 1,
		        ff_service_name(d->cfg->plan[i]));
	return true;
}

/* Something that ends the run: a signal, a failed workload, a child gone,
 * a forbidden loss. true: stop now (the reason is in run->problem). */
static bool must_stop(struct drv *d)
{
	if (forbidden_loss(d))
		return true;
	if (d->cfg->interrupted != NULL && *d->cfg->interrupted) {
		d->run->interrupted = true;
		problem(d, "interrupted");
		return true;
	}
	if (atomic_load(&d->sh->failed)) {
		problem(d, "%s", d->sh->problem);
		return true;
	}
	if (ff_child_exited(&d->streams) || ff_child_exited(&d->prober)) {
		problem(d, "a workload process ended on its own");
		return true;
	}
	return false;
}

typedef bool (*cond_fn)(struct drv *d, void *ctx);

/* Waits until cond, watching the children. 0; -ETIMEDOUT at the deadline;
 * -ECANCELED if the run must stop. The tick sleeps on the children's
 * pidfds, so one that dies wakes us at once. */
static int wait_until(struct drv *d, int64_t deadline, cond_fn cond, void *ctx)
{
	for (;;) {
		if (must_stop(d))
			return -ECANCELED;
		if (cond != NULL && cond(d, ctx))
			return 0;
		progress(d, false);
		int64_t left = deadline - ff_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p[2] = {
		    {.fd = d->streams.pidfd, .events = POLLIN},
		    {.fd = d->prober.pidfd, .events = POLLIN}};
		poll(p, 2, left < TICK_MS ? (int)left : TICK_MS);
	}
}

static bool all_moving(struct drv *d, void *ctx)
{
	(void)ctx;
	for (int i = 0; i < d->cfg->wl.streams; i++)
		if (atomic_load(&d->sh->s[i].verified) == 0)
			return false;
	return atomic_load(&d->sh->probe.ok) > 0;
}

struct answered {
	int64_t data_ms, ctl_ms;
};

static bool mark_answered(struct drv *d, void *ctx)
{
	struct answered *a = ctx;
	return ff_mark_answered(d->sh, d->cfg->wl.streams, &a->data_ms,
	                        &a->ctl_ms);
}

/* ---------------------------------------------------------------- kills */

/* Which streams have not moved since the mark: for the message. */
static void stuck_streams(struct drv *d, char *out, size_t cap)
{
	uint64_t gen = atomic_load(&d->sh->mark_gen);
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < d->cfg->wl.streams && used < cap; i++)
		if (atomic_load(&d->sh->s[i].mark_gen) != gen)
			used +=
			    (size_t)snprintf(out + used, cap - used, " %d", i);
	if (atomic_load(&d->sh->probe.mark_gen) != gen && used < cap)
		snprintf(out + used, cap - used, " control");
}

/* Kill, wait until back, then until everything moves. 0, or -1 after a
 * violation recorded in k, or -ECANCELED. */
static int kill_once(struct drv *d, struct ff_kill *k)
{
	const struct ff_ops *ops = &d->cfg->ops;
	int64_t t_kill = ff_now_ms();
	int64_t deadline = t_kill + d->cfg->recovery_ms;
	k->at_ms = t_kill - d->t0;
	int err = ops->kill(ops->ctx, k->service);
	if (err) {
		snprintf(k->violation, sizeof(k->violation), "kill: %s",
		         strerror(-err));
		return -1;
	}
	d->phase = "killed, waiting until it is back";
	progress(d, true);
	err = ops->wait_back(ops->ctx, k->service, deadline);
	int64_t t_back = ff_now_ms();
	k->restart_ms = t_back - t_kill;
	if (must_stop(d)) {
		/* A Ctrl-C also reaches the service being restarted, which
		 * then fails for reasons of ours, not its own. */
		snprintf(k->violation, sizeof(k->violation),
		         "the run stopped before it recovered");
		return -ECANCELED;
	}
	if (err) {
		snprintf(k->violation, sizeof(k->violation),
		         "not back after %lld ms: %s", (long long)k->restart_ms,
		         strerror(-err));
		return -1;
	}
	ff_mark(d->sh, t_back);
	d->phase = "back, waiting for traffic";
	struct answered a;
	err = wait_until(d, deadline, mark_answered, &a);
	if (err == -ECANCELED) {
		snprintf(k->violation, sizeof(k->violation),
		         "the run stopped before it recovered");
		return err;
	}
	if (err) {
		char who[96];
		stuck_streams(d, who, sizeof(who));
		snprintf(k->violation, sizeof(k->violation),
		         "hang: nothing moved on%s within %d ms of the kill",
		         who, d->cfg->recovery_ms);
		return -1;
	}
	k->recovered = true;
	k->data_ms = a.data_ms - t_kill;
	k->ctl_ms = a.ctl_ms - t_kill;
	return 0;
}

/* The semantics of one kill, once its losses are known. */
static void judge(const struct ff_driver_cfg *cfg, struct ff_kill *k)
{
	if (k->violation[0] != '\0')
		return;
	const char *who = ff_service_name(k->service);
	if (k->service != FF_CORE && k->lost > 0)
		snprintf(k->violation, sizeof(k->violation),
		         "%s kill lost %llu connection(s)", who,
		         (unsigned long long)k->lost);
	else if (k->stalls > 0)
		snprintf(k->violation, sizeof(k->violation),
		         "%s kill: %llu connection(s) stalled instead of "
		         "failing with an error",
		         who, (unsigned long long)k->stalls);
	else if (k->lost > k->resets)
		snprintf(k->violation, sizeof(k->violation),
		         "%s kill: %llu connection(s) ended with %s, not "
		         "ECONNRESET",
		         who, (unsigned long long)(k->lost - k->resets),
		         strerror(k->lost_errno));
	else if (k->data_ms > cfg->max_recovery_ms)
		snprintf(k->violation, sizeof(k->violation),
		         "%s kill: data recovery %lld ms > %d ms", who,
		         (long long)k->data_ms, cfg->max_recovery_ms);
}

/* Losses and bytes between snapshot i and i + 1 belong to kill i. */
static void attribute(struct drv *d)
{
	for (int i = 0; i < d->run->done; i++) {
		struct ff_kill *k = &d->run->k[i];
		const struct ff_totals *a = &d->snap[i], *b = &d->snap[i + 1];
		k->lost = b->lost - a->lost;
		k->resets = b->resets - a->resets;
		k->stalls = b->stalls - a->stalls;
		k->verified = b->verified - a->verified;
		k->lost_errno = b->lost_errno;
		judge(d->cfg, k);
		if (k->violation[0] != '\0')
			problem(d, "kill %d (%s at %.1f s): %s", i + 1,
			        ff_service_name(k->service),
			        (double)k->at_ms / 1000.0, k->violation);
	}
	if (d->run->lost_before > 0)
		problem(d, "%llu connection(s) lost before any kill",
		        (unsigned long long)d->run->lost_before);
}

/* Traffic for a random while, then one kill. false: stop the plan. */
static bool one_round(struct drv *d, int i)
{
	const struct ff_driver_cfg *cfg = d->cfg;
	int span = cfg->gap_max_ms - cfg->gap_min_ms;
	int gap = cfg->gap_min_ms +
	          (span > 0 ? (int)(next_rand(d) % (uint64_t)(span + 1)) : 0);
	static char phase[64];
	snprintf(phase, sizeof(phase), "kill %d/%d: %s in %d ms", i + 1,
	         cfg->kills, ff_service_name(cfg->plan[i]), gap);
	d->phase = phase;
	if (wait_until(d, ff_now_ms() + gap, NULL, NULL) == -ECANCELED)
		return false;
	d->snap[i] = ff_totals(d->sh, cfg->wl.streams);
	d->current = i;
	struct ff_kill *k = &d->run->k[i];
	k->service = cfg->plan[i];
	int err = kill_once(d, k);
	d->run->done = i + 1;
	if (err == -ECANCELED)
		return false;
	return err == 0 || cfg->keep_going;
}

static int start_workload(struct drv *d)
{
	int err = ff_child_start(&d->streams, streams_child, d);
	if (err)
		return err;
	err = ff_child_start(&d->prober, prober_child, d);
	if (err)
		return err;
	d->t0 = ff_now_ms();
	d->phase = "starting traffic";
	err = wait_until(d, d->t0 + WARMUP_MS, all_moving, NULL);
	if (err == -ETIMEDOUT)
		problem(d, "traffic did not start within %d ms", WARMUP_MS);
	return err;
}

static void finish(struct drv *d, bool traffic_ran)
{
	/* A last stretch of traffic, so losses of the last kill show. */
	if (traffic_ran && d->run->done > 0) {
		d->phase = "after the last kill";
		wait_until(d, ff_now_ms() + d->cfg->gap_max_ms, NULL, NULL);
	}
	d->snap[d->run->done] = ff_totals(d->sh, d->cfg->wl.streams);
	d->phase = "stopping";
	progress(d, true);
	if (d->cfg->progress) {
		printf("\n");
		fflush(stdout);
	}
	stop_children(d);
	struct ff_totals end = ff_totals(d->sh, d->cfg->wl.streams);
	d->run->verified = end.verified;
	d->run->lost = end.lost;
	d->run->probes_ok = atomic_load(&d->sh->probe.ok);
	d->run->probes_failed = atomic_load(&d->sh->probe.failed);
	d->run->lost_before = d->run->done > 0 ? d->snap[0].lost : 0;
	d->run->seconds = (double)(ff_now_ms() - d->t0) / 1000.0;
	attribute(d);
	if (atomic_load(&d->sh->failed))
		problem(d, "%s", d->sh->problem);
}

int ff_drive(const struct ff_driver_cfg *cfg, struct ff_run *run)
{
	memset(run, 0, sizeof(*run));
	run->seed = cfg->seed;
	run->streams = cfg->wl.streams;
	if (cfg->kills < 0 || cfg->kills > FF_MAX_KILLS)
		return -EINVAL;
	static struct drv d;
	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	d.run = run;
	d.rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ull;
	d.streams.pidfd = d.prober.pidfd = -1;
	d.current = -1;
	d.sh = ff_shared_create();
	if (d.sh == NULL)
		return -ENOMEM;
	int err = start_workload(&d);
	bool ran = err == 0;
	for (int i = 0; ran && i < cfg->kills; i++)
		if (!one_round(&d, i))
			break;
	finish(&d, ran);
	ff_shared_destroy(d.sh);
	if (err && err != -ETIMEDOUT && err != -ECANCELED)
		return err;
	return run->problem[0] == '\0' ? 0 : 1;
}

/* ---------------------------------------------------------------- report */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Median and max of one field over the recovered kills of a service. */
static int stats(const struct ff_run *run, enum ff_service s, size_t field,
                 bool recovered_only, int64_t *median, int64_t *max)
{
	int64_t v[FF_MAX_KILLS];
	int n = 0;
	for (int i = 0; i < run->done; i++) {
		const struct ff_kill *k = &run->k[i];
		if (k->service == s && (k->recovered || !recovered_only))
			v[n++] = *(const int64_t *)((const char *)k + field);
	}
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof(v[0]), cmp_i64);
	*median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	*max = v[n - 1];
	return n;
}

/* "median/max" over the recovered kills, or "-" if none recovered. */
static void median_max(const struct ff_run *run, enum ff_service s,
                       size_t field, char *out, size_t cap)
{
	int64_t median, max;
	if (stats(run, s, field, true, &median, &max) == 0)
		snprintf(out, cap, "-");
	else
		snprintf(out, cap, "%lld/%lld", (long long)median,
		         (long long)max);
}

static void table_row(FILE *f, const struct ff_run *run, enum ff_service s)
{
	int kills = 0, bad = 0;
	uint64_t lost = 0, resets = 0, bytes = 0;
	for (int i = 0; i < run->done; i++) {
		const struct ff_kill *k = &run->k[i];
		if (k->service != s)
			continue;
		kills++;
		bad += k->violation[0] != '\0';
		lost += k->lost;
		resets += k->resets;
		bytes += k->verified;
	}
	if (kills == 0)
		return;
	char human[32], data[32], ctl[32];
	median_max(run, s, offsetof(struct ff_kill, data_ms), data,
	           sizeof(data));
	median_max(run, s, offsetof(struct ff_kill, ctl_ms), ctl, sizeof(ctl));
	/* Restart time of every kill that came back, recovered or not. */
	char restart[32];
	int64_t rm = 0, rx = 0;
	stats(run, s, offsetof(struct ff_kill, restart_ms), false, &rm, &rx);
	snprintf(restart, sizeof(restart), "%lld/%lld", (long long)rm,
	         (long long)rx);
	fprintf(f, "%-7s %5d %6llu %6llu %11s %-13s %-13s %-13s %s\n",
	        ff_service_name(s), kills, (unsigned long long)lost,
	        (unsigned long long)resets,
	        ff_human((double)bytes, human, sizeof(human)), data, ctl,
	        restart, bad ? "VIOLATED" : "ok");
}

void ff_report_table(FILE *f, const struct ff_run *run)
{
	fprintf(f, "%-7s %5s %6s %6s %11s %-13s %-13s %-13s %s\n", "service",
	        "kills", "lost", "resets", "verified", "data ms", "control ms",
	        "restart ms", "semantics");
	fprintf(f, "%39s %-13s %-13s %-13s\n", "", "median/max", "median/max",
	        "median/max");
	for (int s = 0; s < FF_NSERVICES; s++)
		table_row(f, run, (enum ff_service)s);
	for (int i = 0; i < run->done; i++) {
		const struct ff_kill *k = &run->k[i];
		if (k->violation[0] != '\0')
			fprintf(f, "kill %d (%s at %.1f s): %s\n", i + 1,
			        ff_service_name(k->service),
			        (double)k->at_ms / 1000.0, k->violation);
	}
	char human[32];
	fprintf(f,
	        "total: %s verified byte by byte on %d streams in %.1f s, "
	        "%llu connection(s) lost, probes %llu ok / %llu failed, "
	        "seed %llu\n",
	        ff_human((double)run->verified, human, sizeof(human)),
	        run->streams, run->seconds, (unsigned long long)run->lost,
	        (unsigned long long)run->probes_ok,
	        (unsigned long long)run->probes_failed,
	        (unsigned long long)run->seed);
}
