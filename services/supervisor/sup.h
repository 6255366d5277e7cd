/*
 * Private to the supervisor (nci_*): the running supervisor's state,
 * shared by sup.c (set-up, loop, restart policy, shutdown), spawn.c
 * (starting one service), logs.c (service output) and ready.c (the ready
 * probe). cli.c and main.c only use nci_sup_run and the public headers.
 */
#ifndef NETCORE_SUPERVISOR_SUP_H
#define NETCORE_SUPERVISOR_SUP_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "services/common/health.h"
#include "services/phy_driver/phy_link.h"
#include "services/supervisor/config.h"
#include "services/supervisor/ctl.h"
#include "shm/shm.h"

#define NCI_CRASH_HISTORY 64
#define NCI_LOG_BUF       4096

struct nci_svc {
	int id; /* enum nc_sup_service */
	char binary[NC_SUP_PATH_MAX + 64];
	char health_url[NC_SUP_PATH_MAX + 8];
	/* The process (pid 0: none). */
	pid_t pid;
	int pidfd, log_fd;
	uint32_t state; /* enum nc_sup_svc_state */
	int64_t started_ms, restart_at_ms, stop_deadline_ms;
	uint32_t backoff_ms;
	uint32_t restarts;
	int64_t crashes[NCI_CRASH_HISTORY]; /* times, a ring */
	uint32_t crash_count;
	const char *kill_reason; /* why we signalled it; NULL: we did not */
	bool restart_now;        /* netcore restart: no backoff, no crash */
	char last_exit[64];
	/* Service output not yet a whole line. */
	char log_buf[NCI_LOG_BUF];
	size_t log_len;
	/* Heartbeats: a req0 socket per process. */
	nng_socket hb;
	bool hb_open, hb_pending;
	uint32_t hb_id;
	int64_t hb_sent_ms, hb_ok_ms;
	struct nc_health_reply hb_last;
};

struct nci_sup {
	struct nc_sup_config cfg;
	char config_path[NC_SUP_PATH_MAX * 2];
	/* Paths derived from the config. */
	char core_ctl[NC_SUP_PATH_MAX + 8], core_fds[NC_SUP_PATH_MAX];
	char broker_conf[NC_SUP_PATH_MAX + 16];
	bool made_run_dir, made_broker_conf, tun_existed;
	bool owns_paths; /* the control socket was ours: so is the rest */
	/* The shared regions: held here so restarts re-attach. */
	struct nc_region region;
	struct nc_phy_layout layout;
	struct nc_doorbell core_bell, phy_bell;
	int inherit[3]; /* region, phy bell, core bell: dups kept for spawn */
	struct nci_svc svc[NC_SUP_NSVC];
	nng_socket ctl;
	bool ctl_open;
	int sigfd, log_file, ready_fd;
	int64_t started_ms, next_probe_ms;
	bool ready, stopping, start_failed;
};

int64_t nci_now_ms(void);

/* spawn.c: starts svc with the supervisor's fds; 0 or -errno. */
int nci_spawn(struct nci_sup *s, struct nci_svc *svc);

/* logs.c: reads what svc wrote (to EOF with `final`), emits whole lines
 * in the common format to stderr and the log file. */
void nci_logs_drain(struct nci_sup *s, struct nci_svc *svc, bool final);

/* ready.c: attach, socket, bind port 0, listen, close, detach. 0 or
 * -errno. */
int nci_ready_probe(const char *attach_socket);

/* sup.c: `netcore up`. ready_fd (or -1) gets "ready\n" once ready.
 * Returns the process exit code. */
int nci_sup_run(const char *config_path, const struct nc_sup_config *cfg,
                int ready_fd);

#endif /* NETCORE_SUPERVISOR_SUP_H */
