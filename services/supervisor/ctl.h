/*
 * The supervisor's control protocol: `netcore status|stats|restart|kill|
 * stop` ask, the running supervisor answers, over nng req/rep on the
 * control URL (config `control`, default ipc:///run/netcore/supervisor.ctl).
 *
 * Fixed-layout, versioned messages. A request is exactly 16 bytes; every
 * reply starts with the same 16-byte header (magic, version, the request's
 * type and id echoed, an errno-compatible result) and, when the result is
 * 0, carries the body its type defines. Anything the supervisor cannot
 * take (short, long, wrong magic or version, unknown type, unknown
 * service) gets a header-only reply with -EPROTO, -ENOTSUP or -EINVAL,
 * never silence and never a crash. nc_sup_handle is the whole decision and
 * is pure, so the fuzz target (fuzz/ctl_fuzz.c) drives exactly what the
 * supervisor runs.
 */
#ifndef NETCORE_SUPERVISOR_CTL_H
#define NETCORE_SUPERVISOR_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "services/common/health.h"
#include "services/phy_driver/phy_link.h"
#include "services/supervisor/config.h"

#define NC_SUP_MAGIC   0x4e435356u /* "NCSV" */
#define NC_SUP_VERSION 1

enum nc_sup_req_type {
	NC_SUP_STATUS = 1,
	NC_SUP_STATS = 2,
	NC_SUP_RESTART = 3, /* service */
	NC_SUP_KILL = 4,    /* service: SIGKILL, for fault tests */
	NC_SUP_STOP = 5,
};

/* A service's state, as status shows it. */
enum nc_sup_svc_state {
	NC_SVC_STARTING, /* spawned, no heartbeat answered yet */
	NC_SVC_HEALTHY,  /* the last heartbeat was answered in time */
	NC_SVC_LATE,     /* a heartbeat is overdue (not yet timed out) */
	NC_SVC_BACKOFF,  /* died; waiting to be restarted */
	NC_SVC_GAVE_UP,  /* crashed too often: not restarted */
	NC_SVC_STOPPING,
	NC_SVC_STOPPED,
};

struct nc_sup_req { /* 16 bytes */
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t id;
	uint32_t service; /* enum nc_sup_service, for RESTART and KILL */
};

struct nc_sup_reply_hdr { /* 16 bytes */
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t id;
	int32_t result; /* 0 or -errno */
};

struct nc_sup_svc_status {
	uint32_t pid; /* 0: not running */
	uint32_t state;
	uint32_t restarts;         /* since `up` */
	uint32_t recent_crashes;   /* within give_up_window_ms */
	uint64_t uptime_ms;        /* of the current process */
	uint64_t loop_age_ms;      /* from its last heartbeat reply */
	uint64_t heartbeat_age_ms; /* since that reply; UINT64_MAX: none */
	char last_exit[64];        /* "exit 2", "signal 9", "hung", "-" */
};

struct nc_sup_status_reply {
	struct nc_sup_reply_hdr hdr;
	uint32_t pid;   /* the supervisor's */
	uint32_t ready; /* 1 once a client could use a socket */
	uint64_t uptime_ms;
	struct nc_sup_svc_status svc[NC_SUP_NSVC];
};

struct nc_sup_stats_reply {
	struct nc_sup_reply_hdr hdr;
	uint32_t core_valid, broker_valid;   /* their counters are current */
	struct nc_phy_counters phy;          /* from the phy region */
	struct nc_phy_core_report core_rx;   /* from the phy region */
	uint64_t core[NC_HEALTH_COUNTERS];   /* NC_HC_CORE_* */
	uint64_t broker[NC_HEALTH_COUNTERS]; /* NC_HC_BROKER_* */
};

struct nc_sup_ack_reply { /* RESTART, KILL, STOP */
	struct nc_sup_reply_hdr hdr;
	uint32_t pid; /* STOP: the supervisor's, to wait for; else the
	               * service's pid that was signalled (0: none) */
	uint32_t pad;
};

union nc_sup_reply {
	struct nc_sup_reply_hdr hdr;
	struct nc_sup_status_reply status;
	struct nc_sup_stats_reply stats;
	struct nc_sup_ack_reply ack;
};

/* What the supervisor must do after answering. */
enum nc_sup_action_kind {
	NC_ACT_NONE,
	NC_ACT_RESTART,
	NC_ACT_KILL,
	NC_ACT_STOP
};
struct nc_sup_action {
	int kind;
	int service;
};

void nc_sup_req_init(struct nc_sup_req *r, uint16_t type, uint32_t id,
                     uint32_t service);

/*
 * Decides the answer to `len` request bytes given the current status and
 * stats (the caller's snapshot). Fills `out` and returns its length; sets
 * `act`. Never reads past `len`.
 */
size_t nc_sup_handle(const void *req, size_t len,
                     const struct nc_sup_status_reply *status,
                     const struct nc_sup_stats_reply *stats,
                     union nc_sup_reply *out, struct nc_sup_action *act);

/* For the CLI: checks a reply to request (type, id) and copies it out.
 * Returns the reply's result, or -EPROTO if it is malformed. */
int nc_sup_reply_parse(const void *buf, size_t len, uint16_t type, uint32_t id,
                       union nc_sup_reply *out);

/* "starting", "healthy", "late", "backoff", "gave-up", "stopping",
 * "stopped". */
const char *nc_sup_state_name(uint32_t state);

#endif /* NETCORE_SUPERVISOR_CTL_H */
