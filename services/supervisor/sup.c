/*
 * `netcore up`: the supervisor process.
 *
 * States: STARTING (services spawned, not yet proven usable), READY (a
 * client attached and used a socket: nci_ready_probe; reported once, on
 * the ready fd and in the log), STOPPING (on `netcore stop`, SIGTERM or
 * SIGINT: every service gets SIGTERM, then SIGKILL after stop_timeout_ms),
 * then gone, having removed what it made.
 *
 * Ownership. The supervisor creates and holds the phy region (a sealed
 * memfd) and both doorbells (eventfds) for its whole life, so a restarted
 * phy or core re-attaches to the same objects: the region's own handshake
 * (phy_link.h epochs) copes with either side restarting. Paths and URLs
 * (attach socket, the core's control URL and fd channel, each service's
 * health URL) derive from the config and never change across restarts, so
 * the broker redials a restarted core by itself and clients find a
 * restarted broker where the old one was.
 *
 * Watching. One thread, one poll(2): each service's pidfd (a death is seen
 * at once), its output pipe, the control socket's receive fd, a signalfd.
 * Heartbeats go out every heartbeat_interval_ms on a req0 socket per
 * service (non-blocking send and receive, checked each turn, turns at most
 * TURN_MS apart). A service is hung if no reply came for
 * heartbeat_timeout_ms, or a reply says its loop has not ticked for that
 * long, or it never answered within start_timeout_ms of its start; it is
 * then SIGKILLed, and its exit is recorded as "hung".
 *
 * Restarts. Every death the supervisor did not ask for (including `netcore
 * kill` and "hung") is a crash: restarted after a backoff that starts at
 * backoff_initial_ms and doubles up to backoff_max_ms (and starts over once
 * a process has lived a whole give_up_window_ms). After give_up_after
 * crashes within give_up_window_ms the service is left down ("gave-up" in
 * status, an error in the log); the others keep running. `netcore restart`
 * is not a crash: SIGTERM, then an immediate start, and it also revives a
 * service that gave up.
 *
 * What it does not do: restore clients or sockets after a restart (the
 * broker and core do that, issue 5), reload its config, or supervise
 * itself. A supervisor killed with SIGKILL loses its services (they have
 * --die-with-parent and exit cleanly) but leaves its control socket file
 * and the persistent TUN behind; the next `up` replaces the one and, from
 * the marker RUN_DIR/tun.created, knows the other for its own and removes
 * it at `stop`.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "services/common/log.h"
#include "services/supervisor/sup.h"

#define TURN_MS        50
#define PROBE_EVERY_MS 200

static const char *const binaries[NC_SUP_NSVC] = {"phy_driver", "netcore_core",
                                                  "proxy_broker"};
static const char *const bazel_dirs[NC_SUP_NSVC] = {"phy_driver", "netcore",
                                                    "proxy_broker"};

int64_t nci_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *name(const struct nci_svc *svc)
{
	return nc_sup_service_name(svc->id);
}

/* ------------------------------------------------------------- set-up */

static bool executable(const char *path)
{
	return access(path, X_OK) == 0;
}

/* Next to this binary (installed), or where Bazel puts it. */
static int find_binary(const struct nci_sup *s, struct nci_svc *svc)
{
	const char *given = s->cfg.binary[svc->id];
	if (given[0]) {
		/* Fits: binary is longer than any config path. */
		memcpy(svc->binary, given, strlen(given) + 1);
		return executable(given) ? 0 : -ENOENT;
	}
	char exe[NC_SUP_PATH_MAX * 2];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -ENOENT;
	exe[n] = '\0';
	const char *dir = dirname(exe);
	snprintf(svc->binary, sizeof(svc->binary), "%s/%s", dir,
	         binaries[svc->id]);
	if (executable(svc->binary))
		return 0;
	snprintf(svc->binary, sizeof(svc->binary), "%s/../%s/%s", dir,
	         bazel_dirs[svc->id], binaries[svc->id]);
	return executable(svc->binary) ? 0 : -ENOENT;
}

/* Runs `fn` inside the configured netns (this thread only), then comes
 * back. */
static int in_netns(const char *netns, int (*fn)(const char *), const char *arg)
{
	if (netns[0] == '\0')
		return fn(arg);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int target = open(netns, O_RDONLY | O_CLOEXEC);
	int rc = -errno;
	if (self >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0) {
		rc = fn(arg);
		if (setns(self, CLONE_NEWNET) != 0)
			abort(); /* cannot go on in the wrong namespace */
	}
	if (self >= 0)
		close(self);
	if (target >= 0)
		close(target);
	return rc;
}

static int tun_exists(const char *tun)
{
	return if_nametoindex(tun) != 0;
}

/* Clearing the persist flag of a device nobody holds removes it. */
static int tun_delete(const char *tun)
{
	if (if_nametoindex(tun) == 0)
		return 0;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tun);
	int rc = 0;
	if (ioctl(fd, TUNSETIFF, &ifr) != 0 ||
	    ioctl(fd, TUNSETPERSIST, (void *)0) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * RUN_DIR/tun.created names the device a supervisor created, so that one
 * killed before it could remove it does not make its successor mistake
 * the device for somebody else's (and keep it at stop).
 */
static void marker_path(const struct nci_sup *s, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/tun.created", s->cfg.run_dir);
}

static void marker_text(const struct nci_sup *s, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s %s\n", s->cfg.tun,
	         s->cfg.netns[0] ? s->cfg.netns : "current");
}

static bool tun_marked(const struct nci_sup *s)
{
	char path[NC_SUP_PATH_MAX], want[NC_SUP_PATH_MAX + 32];
	char got[sizeof(want)] = {0};
	marker_path(s, path, sizeof(path));
	marker_text(s, want, sizeof(want));
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	size_t n = fread(got, 1, sizeof(got) - 1, f);
	fclose(f);
	return n == strlen(want) && memcmp(got, want, n) == 0;
}

static void mark_tun(const struct nci_sup *s)
{
	char path[NC_SUP_PATH_MAX], text[NC_SUP_PATH_MAX + 32];
	marker_path(s, path, sizeof(path));
	marker_text(s, text, sizeof(text));
	FILE *f = fopen(path, "we");
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

static int make_run_dir(struct nci_sup *s)
{
	if (mkdir(s->cfg.run_dir, 0755) == 0)
		s->made_run_dir = true;
	else if (errno != EEXIST)
		return -errno;
	return 0;
}

static int open_log_file(struct nci_sup *s)
{
	s->log_file = open(s->cfg.log_file,
	                   O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (s->log_file < 0)
		return -errno;
	nc_log_tee(s->log_file);
	return 0;
}

static int write_broker_conf(struct nci_sup *s)
{
	const struct nc_sup_config *c = &s->cfg;
	if (c->broker_config[0]) {
		snprintf(s->broker_conf, sizeof(s->broker_conf), "%s",
		         c->broker_config);
		return 0;
	}
	if (c->broker_len == 0)
		return 0;
	snprintf(s->broker_conf, sizeof(s->broker_conf), "%s/broker.conf",
	         c->run_dir);
	FILE *f = fopen(s->broker_conf, "we");
	if (f == NULL)
		return -errno;
	s->made_broker_conf = true;
	fprintf(f, "# written by netcore up from %s\n", s->config_path);
	fwrite(c->broker_text, 1, c->broker_len, f);
	return fclose(f) == 0 ? 0 : -EIO;
}

static void derive_paths(struct nci_sup *s)
{
	const char *dir = s->cfg.run_dir;
	snprintf(s->core_ctl, sizeof(s->core_ctl), "ipc://%s/core.ctl", dir);
	snprintf(s->core_fds, sizeof(s->core_fds), "%s/core.fds", dir);
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		struct nci_svc *svc = &s->svc[i];
		svc->id = i;
		svc->pidfd = svc->log_fd = -1;
		svc->state = NC_SVC_STOPPED;
		svc->backoff_ms = s->cfg.backoff_initial_ms;
		strcpy(svc->last_exit, "-");
		char url[sizeof(svc->health_url)];
		snprintf(url, sizeof(url), "ipc://%s/%s.health", dir,
		         name(svc));
		memcpy(svc->health_url, url, sizeof(url));
	}
}

static int make_region(struct nci_sup *s)
{
	struct nc_phy_params p;
	nc_phy_params_default(&p);
	p.mtu = s->cfg.mtu;
	int err = nc_phy_region_create(&s->region, &p);
	err = err ?: nc_phy_layout(&p, &s->layout);
	err = err ?: nc_doorbell_create(&s->core_bell);
	err = err ?: nc_doorbell_create(&s->phy_bell);
	if (err)
		return err;
	/* High close-on-exec copies, dup2'd to 3, 4, 5 in each child. */
	int fds[3] = {s->region.fd, s->phy_bell.fd, s->core_bell.fd};
	for (int i = 0; i < 3; i++) {
		s->inherit[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
		if (s->inherit[i] < 0)
			return -errno;
	}
	return 0;
}

static int from_nng(int rv)
{
	return rv == NNG_EADDRINUSE ? -EADDRINUSE : -EIO;
}

static int listen_control(struct nci_sup *s)
{
	int rv = nng_rep0_open(&s->ctl);
	if (rv)
		return from_nng(rv);
	s->ctl_open = true;
	nng_socket_set_size(s->ctl, NNG_OPT_RECVMAXSZ, 4096);
	nng_listener l;
	rv = nng_listener_create(&l, s->ctl, s->cfg.control);
	if (rv == 0)
		nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
	rv = rv ?: nng_listener_start(l, 0);
	return rv ? from_nng(rv) : 0;
}

static int block_signals(struct nci_sup *s)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return s->sigfd < 0 ? -errno : 0;
}

static int fail(const char *what, int err)
{
	nc_log(NC_LOG_ERROR, "%s: %s", what, strerror(-err));
	return err;
}

static int set_up(struct nci_sup *s)
{
	int err;
	derive_paths(s);
	for (int i = 0; i < NC_SUP_NSVC; i++)
		if ((err = find_binary(s, &s->svc[i])) != 0)
			return fail(s->svc[i].binary, err);
	if ((err = make_run_dir(s)) != 0)
		return fail(s->cfg.run_dir, err);
	if ((err = open_log_file(s)) != 0)
		return fail(s->cfg.log_file, err);
	if ((err = listen_control(s)) != 0)
		return fail(err == -EADDRINUSE ? "control socket in use (is "
		                                 "a supervisor running?)"
		                               : s->cfg.control,
		            err);
	s->owns_paths = true;
	if ((err = write_broker_conf(s)) != 0)
		return fail(s->broker_conf, err);
	err = in_netns(s->cfg.netns, tun_exists, s->cfg.tun);
	if (err < 0)
		return fail(s->cfg.netns, err);
	s->tun_existed = err == 1 && !tun_marked(s);
	if (!s->tun_existed)
		mark_tun(s);
	if ((err = make_region(s)) != 0)
		return fail("phy region", err);
	return 0;
}

/* ---------------------------------------------------------- restarts */

static void start(struct nci_sup *s, struct nci_svc *svc)
{
	if (nci_spawn(s, svc) == 0)
		return;
	/* Could not even spawn: the same policy as a crash. */
	svc->state = NC_SVC_BACKOFF;
	svc->restart_at_ms = nci_now_ms() + svc->backoff_ms;
}

static uint32_t recent_crashes(const struct nci_sup *s,
                               const struct nci_svc *svc, int64_t now)
{
	uint32_t n = 0;
	uint32_t have = svc->crash_count < NCI_CRASH_HISTORY
	                    ? svc->crash_count
	                    : NCI_CRASH_HISTORY;
	for (uint32_t i = 0; i < have; i++)
		if (now - svc->crashes[i] <= s->cfg.give_up_window_ms)
			n++;
	return n;
}

static void crashed(struct nci_sup *s, struct nci_svc *svc, int64_t now)
{
	const struct nc_sup_config *c = &s->cfg;
	if (now - svc->started_ms >= c->give_up_window_ms)
		svc->backoff_ms = c->backoff_initial_ms; /* it had settled */
	svc->crashes[svc->crash_count++ % NCI_CRASH_HISTORY] = now;
	uint32_t n = recent_crashes(s, svc, now);
	if (n >= c->give_up_after) {
		svc->state = NC_SVC_GAVE_UP;
		nc_log(NC_LOG_ERROR,
		       "%s: gave up after %u crashes within %u ms; not "
		       "restarting it (netcore restart %s tries again)",
		       name(svc), n, c->give_up_window_ms, name(svc));
		return;
	}
	svc->state = NC_SVC_BACKOFF;
	svc->restart_at_ms = now + svc->backoff_ms;
	nc_log(NC_LOG_WARN,
	       "%s: restarting in %u ms (crash %u of %u allowed "
	       "within %u ms)",
	       name(svc), svc->backoff_ms, n, c->give_up_after - 1,
	       c->give_up_window_ms);
	svc->backoff_ms = svc->backoff_ms * 2 > c->backoff_max_ms
	                      ? c->backoff_max_ms
	                      : svc->backoff_ms * 2;
}

static void describe_exit(struct nci_svc *svc, int status)
{
	char how[48];
	if (WIFEXITED(status))
		snprintf(how, sizeof(how), "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(how, sizeof(how), "status %#x", (unsigned)status);
	if (svc->kill_reason)
		snprintf(svc->last_exit, sizeof(svc->last_exit), "%s",
		         svc->kill_reason);
	else
		snprintf(svc->last_exit, sizeof(svc->last_exit), "%s", how);
	nc_log(svc->kill_reason ? NC_LOG_INFO : NC_LOG_WARN,
	       "%s: pid %d ended (%s%s%s) after %lld ms", name(svc),
	       (int)svc->pid, how, svc->kill_reason ? ": " : "",
	       svc->kill_reason ? svc->kill_reason : "",
	       (long long)(nci_now_ms() - svc->started_ms));
}

static void close_process(struct nci_sup *s, struct nci_svc *svc)
{
	nci_logs_drain(s, svc, true);
	if (svc->log_fd >= 0)
		close(svc->log_fd);
	if (svc->pidfd >= 0)
		close(svc->pidfd);
	if (svc->hb_open)
		nng_close(svc->hb);
	svc->log_fd = svc->pidfd = -1;
	svc->hb_open = svc->hb_pending = false;
	svc->pid = 0;
}

/* The pidfd said it is gone: reap, record, decide. */
static void on_exit_seen(struct nci_sup *s, struct nci_svc *svc)
{
	int status = 0;
	if (waitpid(svc->pid, &status, WNOHANG) == 0)
		return; /* not yet (cannot happen with a pidfd) */
	describe_exit(svc, status);
	bool asked = svc->restart_now;
	close_process(s, svc);
	int64_t now = nci_now_ms();
	if (s->stopping) {
		svc->state = NC_SVC_STOPPED;
	} else if (asked) {
		svc->restart_now = false;
		svc->restarts++;
		start(s, svc);
	} else {
		crashed(s, svc, now);
	}
}

static void restart_due(struct nci_sup *s, struct nci_svc *svc, int64_t now)
{
	if (svc->state != NC_SVC_BACKOFF || now < svc->restart_at_ms ||
	    s->stopping)
		return;
	svc->restarts++;
	start(s, svc);
}

static void signal_svc(struct nci_svc *svc, int sig, const char *reason)
{
	if (svc->pid <= 0)
		return;
	svc->kill_reason = reason;
	kill(svc->pid, sig);
}

/* A SIGTERM that was not obeyed in time becomes a SIGKILL. */
static void escalate(struct nci_sup *s, struct nci_svc *svc, int64_t now)
{
	if (svc->pid <= 0 || svc->stop_deadline_ms == 0 ||
	    now < svc->stop_deadline_ms)
		return;
	nc_log(NC_LOG_WARN, "%s: pid %d ignored SIGTERM for %u ms: SIGKILL",
	       name(svc), (int)svc->pid, s->cfg.stop_timeout_ms);
	kill(svc->pid, SIGKILL);
	svc->stop_deadline_ms = 0;
}

static void terminate(struct nci_sup *s, struct nci_svc *svc,
                      const char *reason)
{
	signal_svc(svc, SIGTERM, reason);
	svc->stop_deadline_ms = nci_now_ms() + s->cfg.stop_timeout_ms;
}

/* ---------------------------------------------------------- heartbeats */

static void hung(struct nci_svc *svc, const char *why, int64_t ms)
{
	nc_log(NC_LOG_ERROR, "%s: pid %d hung (%s for %lld ms): SIGKILL",
	       name(svc), (int)svc->pid, why, (long long)ms);
	signal_svc(svc, SIGKILL, "hung");
	svc->hb_pending = false;
}

static void on_reply(struct nci_sup *s, struct nci_svc *svc, int64_t now,
                     const void *buf, size_t len)
{
	struct nc_health_reply r;
	svc->hb_pending = false;
	if (nc_health_reply_parse(buf, len, svc->hb_id, &r) != 0 ||
	    r.pid != (uint32_t)svc->pid)
		return; /* not an answer from this process: keep waiting */
	svc->hb_last = r;
	svc->hb_ok_ms = now;
	if (r.loop_age_ms > s->cfg.heartbeat_timeout_ms) {
		hung(svc, "loop not ticking", (int64_t)r.loop_age_ms);
		return;
	}
	if (svc->state == NC_SVC_STARTING)
		nc_log(NC_LOG_INFO, "%s: pid %d healthy", name(svc),
		       (int)svc->pid);
	if (svc->state == NC_SVC_STARTING || svc->state == NC_SVC_LATE)
		svc->state = NC_SVC_HEALTHY;
}

static void poll_reply(struct nci_sup *s, struct nci_svc *svc, int64_t now)
{
	nng_msg *m;
	while (svc->hb_pending &&
	       nng_recvmsg(svc->hb, &m, NNG_FLAG_NONBLOCK) == 0) {
		on_reply(s, svc, now, nng_msg_body(m), nng_msg_len(m));
		nng_msg_free(m);
	}
}

static void send_ping(struct nci_sup *s, struct nci_svc *svc, int64_t now)
{
	bool due = !svc->hb_pending
	               ? now - svc->hb_sent_ms >= s->cfg.heartbeat_interval_ms
	               : now - svc->hb_sent_ms >= s->cfg.heartbeat_timeout_ms;
	if (!due)
		return;
	struct nc_health_request req;
	nc_health_request_init(&req, ++svc->hb_id);
	svc->hb_sent_ms = now;
	svc->hb_pending =
	    nng_send(svc->hb, &req, sizeof(req), NNG_FLAG_NONBLOCK) == 0;
}

static void heartbeat(struct nci_sup *s, struct nci_svc *svc, int64_t now)
{
	if (svc->pid <= 0 || !svc->hb_open || svc->kill_reason)
		return;
	poll_reply(s, svc, now);
	if (svc->pid <= 0 || svc->kill_reason)
		return;
	const struct nc_sup_config *c = &s->cfg;
	if (svc->state == NC_SVC_STARTING) {
		if (now - svc->started_ms > c->start_timeout_ms) {
			hung(svc, "no heartbeat since start",
			     now - svc->started_ms);
			return;
		}
	} else if (now - svc->hb_ok_ms > c->heartbeat_timeout_ms) {
		hung(svc, "no heartbeat", now - svc->hb_ok_ms);
		return;
	} else if (now - svc->hb_ok_ms > 2 * c->heartbeat_interval_ms) {
		svc->state = NC_SVC_LATE;
	}
	send_ping(s, svc, now);
}

/* ------------------------------------------------------------- control */

static void svc_status(const struct nci_sup *s, const struct nci_svc *svc,
                       int64_t now, struct nc_sup_svc_status *out)
{
	memset(out, 0, sizeof(*out));
	out->pid = (uint32_t)(svc->pid > 0 ? svc->pid : 0);
	out->state = svc->state;
	out->restarts = svc->restarts;
	out->recent_crashes = recent_crashes(s, svc, now);
	out->uptime_ms = svc->pid > 0 ? (uint64_t)(now - svc->started_ms) : 0;
	out->loop_age_ms = svc->hb_last.loop_age_ms;
	out->heartbeat_age_ms = svc->pid > 0 && svc->hb_ok_ms
	                            ? (uint64_t)(now - svc->hb_ok_ms)
	                            : UINT64_MAX;
	snprintf(out->last_exit, sizeof(out->last_exit), "%s", svc->last_exit);
}

static void snapshot(const struct nci_sup *s, struct nc_sup_status_reply *st,
                     struct nc_sup_stats_reply *sx)
{
	int64_t now = nci_now_ms();
	memset(st, 0, sizeof(*st));
	memset(sx, 0, sizeof(*sx));
	st->pid = (uint32_t)getpid();
	st->ready = s->ready;
	st->uptime_ms = (uint64_t)(now - s->started_ms);
	for (int i = 0; i < NC_SUP_NSVC; i++)
		svc_status(s, &s->svc[i], now, &st->svc[i]);
	const struct nc_phy_control *pc =
	    nc_phy_control(&s->region, &s->layout);
	memcpy(&sx->phy, (const void *)&pc->phy, sizeof(sx->phy));
	memcpy(&sx->core_rx, (const void *)&pc->core, sizeof(sx->core_rx));
	const struct nci_svc *core = &s->svc[NC_SUP_CORE];
	const struct nci_svc *broker = &s->svc[NC_SUP_BROKER];
	sx->core_valid = core->pid > 0 && core->hb_ok_ms != 0;
	sx->broker_valid = broker->pid > 0 && broker->hb_ok_ms != 0;
	memcpy(sx->core, core->hb_last.counters, sizeof(sx->core));
	memcpy(sx->broker, broker->hb_last.counters, sizeof(sx->broker));
}

static void begin_stop(struct nci_sup *s, const char *why)
{
	if (s->stopping)
		return;
	nc_log(NC_LOG_INFO, "stopping (%s)", why);
	s->stopping = true;
	for (int i = NC_SUP_NSVC - 1; i >= 0; i--) {
		struct nci_svc *svc = &s->svc[i];
		if (svc->pid > 0) {
			svc->state = NC_SVC_STOPPING;
			terminate(s, svc, "stopped");
		} else {
			svc->state = NC_SVC_STOPPED;
		}
	}
}

static void act(struct nci_sup *s, const struct nc_sup_action *a)
{
	if (a->kind == NC_ACT_STOP) {
		begin_stop(s, "netcore stop");
		return;
	}
	if (a->kind == NC_ACT_NONE)
		return;
	struct nci_svc *svc = &s->svc[a->service];
	if (a->kind == NC_ACT_KILL) {
		nc_log(NC_LOG_WARN, "%s: SIGKILL pid %d (netcore kill)",
		       name(svc), (int)svc->pid);
		signal_svc(svc, SIGKILL, "killed (netcore kill)");
	} else if (svc->pid > 0) {
		nc_log(NC_LOG_INFO, "%s: restarting pid %d (netcore restart)",
		       name(svc), (int)svc->pid);
		svc->restart_now = true;
		terminate(s, svc, "restarted (netcore restart)");
	} else {
		nc_log(NC_LOG_INFO, "%s: starting (netcore restart)",
		       name(svc));
		svc->crash_count = 0;
		svc->backoff_ms = s->cfg.backoff_initial_ms;
		svc->restarts++;
		start(s, svc);
	}
}

static void serve_control(struct nci_sup *s)
{
	nng_msg *m;
	while (nng_recvmsg(s->ctl, &m, NNG_FLAG_NONBLOCK) == 0) {
		static struct nc_sup_status_reply st;
		static struct nc_sup_stats_reply sx;
		static union nc_sup_reply reply;
		struct nc_sup_action a;
		snapshot(s, &st, &sx);
		size_t n = nc_sup_handle(nng_msg_body(m), nng_msg_len(m), &st,
		                         &sx, &reply, &a);
		nng_msg_free(m);
		nng_send(s->ctl, &reply, n, 0);
		act(s, &a);
	}
}

/* ------------------------------------------------------------- ready */

static void check_ready(struct nci_sup *s, int64_t now)
{
	if (s->ready || s->stopping || now < s->next_probe_ms)
		return;
	for (int i = 0; i < NC_SUP_NSVC; i++)
		if (s->svc[i].state != NC_SVC_HEALTHY)
			return;
	int err = nci_ready_probe(s->cfg.attach_socket);
	s->next_probe_ms = nci_now_ms() + PROBE_EVERY_MS;
	if (err)
		return;
	s->ready = true;
	nc_log(NC_LOG_INFO,
	       "ready: a client attached at %s and listened in "
	       "%lld ms",
	       s->cfg.attach_socket, (long long)(nci_now_ms() - s->started_ms));
	if (s->ready_fd >= 0) {
		if (write(s->ready_fd, "ready\n", 6) != 6)
			nc_log(NC_LOG_WARN, "could not report ready: %s",
			       strerror(errno));
		close(s->ready_fd);
		s->ready_fd = -1;
	}
}

/* ---------------------------------------------------------------- loop */

struct watch {
	struct pollfd fds[2 + 2 * NC_SUP_NSVC];
	struct nci_svc *svc[2 + 2 * NC_SUP_NSVC];
	bool is_log[2 + 2 * NC_SUP_NSVC];
	nfds_t n;
};

static void watch_add(struct watch *w, int fd, struct nci_svc *svc, bool log)
{
	if (fd < 0)
		return;
	w->fds[w->n] = (struct pollfd){.fd = fd, .events = POLLIN};
	w->svc[w->n] = svc;
	w->is_log[w->n] = log;
	w->n++;
}

static void build_watch(struct nci_sup *s, struct watch *w)
{
	w->n = 0;
	watch_add(w, s->sigfd, NULL, false);
	int ctl_fd = -1;
	if (s->ctl_open)
		nng_socket_get_int(s->ctl, NNG_OPT_RECVFD, &ctl_fd);
	watch_add(w, ctl_fd, NULL, false);
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		watch_add(w, s->svc[i].log_fd, &s->svc[i], true);
		watch_add(w, s->svc[i].pidfd, &s->svc[i], false);
	}
}

static void on_signal(struct nci_sup *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si))
		begin_stop(s, strsignal((int)si.ssi_signo));
}

static bool all_stopped(const struct nci_sup *s)
{
	for (int i = 0; i < NC_SUP_NSVC; i++)
		if (s->svc[i].pid > 0)
			return false;
	return true;
}

static void turn(struct nci_sup *s)
{
	struct watch w;
	build_watch(s, &w);
	if (poll(w.fds, w.n, TURN_MS) < 0 && errno != EINTR)
		return;
	for (nfds_t i = 0; i < w.n; i++) {
		if (!w.fds[i].revents || w.svc[i] == NULL)
			continue;
		if (w.is_log[i])
			nci_logs_drain(s, w.svc[i], false);
		else if (w.svc[i]->pid > 0)
			on_exit_seen(s, w.svc[i]);
	}
	on_signal(s);
	serve_control(s);
	int64_t now = nci_now_ms();
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		heartbeat(s, &s->svc[i], now);
		escalate(s, &s->svc[i], now);
		restart_due(s, &s->svc[i], now);
	}
	check_ready(s, now);
}

/* ------------------------------------------------------------ shutdown */

static void unlink_socket(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

static void clean_up(struct nci_sup *s)
{
	if (s->ctl_open)
		nng_close(s->ctl);
	s->ctl_open = false;
	if (!s->owns_paths)
		return; /* another supervisor's, or nothing made yet */
	unlink_socket(s->cfg.control + strlen("ipc://"));
	unlink_socket(s->core_ctl + strlen("ipc://"));
	unlink_socket(s->core_fds);
	unlink_socket(s->cfg.attach_socket);
	for (int i = 0; i < NC_SUP_NSVC; i++)
		unlink_socket(s->svc[i].health_url + strlen("ipc://"));
	if (s->made_broker_conf)
		unlink(s->broker_conf);
	if (!s->tun_existed && s->region.fd >= 0) {
		int err = in_netns(s->cfg.netns, tun_delete, s->cfg.tun);
		if (err)
			nc_log(NC_LOG_WARN, "could not remove TUN %s: %s",
			       s->cfg.tun, strerror(-err));
		char path[NC_SUP_PATH_MAX];
		marker_path(s, path, sizeof(path));
		if (!err)
			unlink(path);
	}
	for (int i = 0; i < 3; i++)
		if (s->inherit[i] >= 0)
			close(s->inherit[i]);
	nc_doorbell_close(&s->core_bell);
	nc_doorbell_close(&s->phy_bell);
	nc_region_close(&s->region);
}

static void finish(struct nci_sup *s)
{
	clean_up(s);
	nc_log(NC_LOG_INFO, "stopped");
	nc_log_tee(-1);
	if (s->log_file >= 0)
		close(s->log_file);
	if (s->made_run_dir)
		rmdir(
		    s->cfg.run_dir); /* fails, as meant, if the log is there */
	if (s->ready_fd >= 0)
		close(s->ready_fd);
	if (s->sigfd >= 0)
		close(s->sigfd);
}

static void init(struct nci_sup *s, const char *config_path,
                 const struct nc_sup_config *cfg, int ready_fd)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	snprintf(s->config_path, sizeof(s->config_path), "%s",
	         config_path ? config_path : "(defaults)");
	s->region.fd = s->core_bell.fd = s->phy_bell.fd = -1;
	s->inherit[0] = s->inherit[1] = s->inherit[2] = -1;
	s->sigfd = s->log_file = -1;
	s->ready_fd = ready_fd;
	if (ready_fd >= 0) /* inherited without it: keep it from services */
		fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
	s->started_ms = nci_now_ms();
}

int nci_sup_run(const char *config_path, const struct nc_sup_config *cfg,
                int ready_fd)
{
	static struct nci_sup sup;
	struct nci_sup *s = &sup;
	init(s, config_path, cfg, ready_fd);
	nc_log_init("supervisor");
	int err = block_signals(s);
	err = err ?: set_up(s);
	if (err) {
		s->start_failed = true;
		finish(s);
		return 1;
	}
	nc_log(NC_LOG_INFO, "up: config %s, run dir %s, control %s",
	       s->config_path, s->cfg.run_dir, s->cfg.control);
	/* The core first: it owns the fd channel and control socket the
	 * broker dials; the phy then asks it for rings. */
	start(s, &s->svc[NC_SUP_CORE]);
	start(s, &s->svc[NC_SUP_PHY]);
	start(s, &s->svc[NC_SUP_BROKER]);
	while (!(s->stopping && all_stopped(s)))
		turn(s);
	finish(s);
	return 0;
}
