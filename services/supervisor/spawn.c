/*
 * Starting one service (see sup.h).
 *
 * posix_spawn only: the supervisor runs nng, whose threads make fork()
 * unsafe. The child gets the phy region and both doorbells as fds 3, 4, 5
 * (phy and core only; from the high, close-on-exec copies the supervisor
 * keeps, so the same objects survive every restart), stdin from /dev/null,
 * stdout and stderr into a fresh pipe the supervisor reads (logs.c), an
 * empty signal mask and default dispositions (the supervisor blocks and
 * ignores some signals, which a child would otherwise inherit), and
 * --die-with-parent, so a supervisor killed outright leaves no orphans.
 * Every other fd is closed (closefrom), including any the supervisor
 * itself inherited.
 *
 * Paths and URLs are the same at every start, so a restarted service is
 * found where its peers look: stale socket files of the one that died are
 * removed first (nng and the core replace some themselves; not all).
 */
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "services/common/log.h"
#include "services/supervisor/sup.h"

extern char **environ;

#define MAX_ARGS 64

struct argv {
	char *v[MAX_ARGS + 1];
	int n;
	char words[NC_SUP_ARGS_MAX];
	char buf[4][64];
};

static void add(struct argv *a, const char *s)
{
	if (a->n < MAX_ARGS)
		a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

/* The config's extra flags, split on blanks. */
static void add_extra(struct argv *a, const char *args)
{
	snprintf(a->words, sizeof(a->words), "%s", args);
	for (char *save, *w = strtok_r(a->words, " \t", &save); w;
	     w = strtok_r(NULL, " \t", &save))
		add(a, w);
}

/* "10.77.0.1/24" -> "10.77.0.1" */
static const char *address_of(char *buf, size_t cap, const char *cidr)
{
	snprintf(buf, cap, "%s", cidr);
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	return buf;
}

static void region_fds(struct argv *a)
{
	add(a, "--region-fd");
	add(a, "3");
	add(a, "--phy-bell-fd");
	add(a, "4");
	add(a, "--core-bell-fd");
	add(a, "5");
}

static void phy_argv(const struct nci_sup *s, struct argv *a)
{
	const struct nc_sup_config *c = &s->cfg;
	region_fds(a);
	add(a, "--tun");
	add(a, c->tun);
	add(a, "--kernel-ipv4");
	add(a, c->kernel_ipv4);
	add(a, "--kernel-ipv6");
	add(a, c->kernel_ipv6);
	if (c->netns[0]) {
		add(a, "--netns");
		add(a, c->netns);
	}
}

static void core_argv(const struct nci_sup *s, struct argv *a)
{
	const struct nc_sup_config *c = &s->cfg;
	region_fds(a);
	add(a, "--ipv4");
	add(a, c->stack_ipv4);
	add(a, "--ipv4-peer");
	add(a, address_of(a->buf[0], sizeof(a->buf[0]), c->kernel_ipv4));
	add(a, "--ipv6");
	add(a, c->stack_ipv6);
	add(a, "--ipv6-peer");
	add(a, address_of(a->buf[1], sizeof(a->buf[1]), c->kernel_ipv6));
	if (c->echo_port) {
		snprintf(a->buf[2], sizeof(a->buf[2]), "%u", c->echo_port);
		add(a, "--echo-port");
		add(a, a->buf[2]);
	}
	add(a, "--ctl");
	add(a, s->core_ctl);
	add(a, "--fds");
	add(a, s->core_fds);
}

static void broker_argv(const struct nci_sup *s, struct argv *a)
{
	add(a, "--socket");
	add(a, s->cfg.attach_socket);
	add(a, "--core-ctl");
	add(a, s->core_ctl);
	add(a, "--core-fds");
	add(a, s->core_fds);
	if (s->broker_conf[0]) {
		add(a, "--config");
		add(a, s->broker_conf);
	}
}

static void build_argv(const struct nci_sup *s, const struct nci_svc *svc,
                       struct argv *a)
{
	a->n = 0;
	add(a, svc->binary);
	if (svc->id == NC_SUP_PHY)
		phy_argv(s, a);
	else if (svc->id == NC_SUP_CORE)
		core_argv(s, a);
	else
		broker_argv(s, a);
	add(a, "--health");
	add(a, svc->health_url);
	add(a, "--die-with-parent");
	add_extra(a, s->cfg.args[svc->id]);
}

static void set_attrs(posix_spawnattr_t *attr)
{
	sigset_t none, defaults;
	sigemptyset(&none);
	sigemptyset(&defaults);
	int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGUSR1};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&defaults, sigs[i]);
	posix_spawnattr_init(attr);
	posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
	                                   POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &defaults);
}

static int start_process(struct nci_sup *s, struct nci_svc *svc, struct argv *a,
                         int log_w)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, log_w, 1);
	posix_spawn_file_actions_adddup2(&fa, log_w, 2);
	if (svc->id != NC_SUP_BROKER)
		for (int i = 0; i < 3; i++)
			posix_spawn_file_actions_adddup2(&fa, s->inherit[i],
			                                 3 + i);
	/* Nothing else, not even what our own parent leaked to us. */
	posix_spawn_file_actions_addclosefrom_np(
	    &fa, svc->id == NC_SUP_BROKER ? 3 : 6);
	set_attrs(&attr);
	int err = posix_spawn(&svc->pid, a->v[0], &fa, &attr, a->v, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		svc->pid = 0;
	return -err;
}

static void open_heartbeat(struct nci_svc *svc)
{
	if (nng_req0_open(&svc->hb) != 0)
		return;
	nng_socket_set_ms(svc->hb, NNG_OPT_REQ_RESENDTIME,
	                  NNG_DURATION_INFINITE);
	nng_socket_set_ms(svc->hb, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(svc->hb, NNG_OPT_RECONNMAXT, 200);
	/* Non-blocking: the service is not listening yet. */
	nng_dial(svc->hb, svc->health_url, NULL, NNG_FLAG_NONBLOCK);
	svc->hb_open = true;
	svc->hb_pending = false;
	svc->hb_ok_ms = 0;
	svc->hb_sent_ms = 0;
	memset(&svc->hb_last, 0, sizeof(svc->hb_last));
}

/* Socket files a dead instance may have left where the next one listens. */
static void remove_stale(const struct nci_sup *s, const struct nci_svc *svc)
{
	unlink(svc->health_url + strlen("ipc://"));
	if (svc->id == NC_SUP_CORE)
		unlink(s->core_ctl + strlen("ipc://"));
}

int nci_spawn(struct nci_sup *s, struct nci_svc *svc)
{
	struct argv a;
	build_argv(s, svc, &a);
	remove_stale(s, svc);
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return -errno;
	int err = start_process(s, svc, &a, pipefd[1]);
	close(pipefd[1]);
	if (err) {
		close(pipefd[0]);
		nc_log(NC_LOG_ERROR, "%s: cannot start %s: %s",
		       nc_sup_service_name(svc->id), a.v[0], strerror(-err));
		return err;
	}
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	svc->log_fd = pipefd[0];
	svc->log_len = 0;
	svc->pidfd = (int)syscall(SYS_pidfd_open, svc->pid, 0);
	svc->started_ms = nci_now_ms();
	svc->state = NC_SVC_STARTING;
	svc->kill_reason = NULL;
	open_heartbeat(svc);
	nc_log(NC_LOG_INFO, "%s: started pid %d", nc_sup_service_name(svc->id),
	       (int)svc->pid);
	return 0;
}
