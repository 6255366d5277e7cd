/*
 * testbed: a phy driver and a core, joined by a phy region, with a TUN
 * device in a network namespace of the test's own, for integration tests.
 *
 * Everything it starts it also ends: both services by pid, and the
 * namespace (which takes the TUN device with it). Names carry the test's
 * pid, so tests run in parallel without meeting. The kernel side of the
 * link is 10.77.0.1/24 and fd77::1/64, the stack 10.77.0.2 and fd77::2,
 * only ever inside that namespace.
 */
#ifndef NETCORE_TESTBED_H
#define NETCORE_TESTBED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "services/phy_driver/phy_link.h"
#include "shm/shm.h"

#define NC_TB_KERNEL4 "10.77.0.1"
#define NC_TB_STACK4  "10.77.0.2"
#define NC_TB_KERNEL6 "fd77::1"
#define NC_TB_STACK6  "fd77::2"
#define NC_TB_TUN     "nctun0"

struct nc_testbed {
	char ns_name[48];
	char ns_path[96];
	bool ns_created;
	struct nc_region region;
	struct nc_doorbell core_bell, phy_bell;
	struct nc_phy_layout layout;
	pid_t phy_pid, core_pid, broker_pid;
	uint16_t echo_port;
	char run_dir[64]; /* sockets of the broker and core, if any */
	char broker_socket[96];
	char core_ctl[128]; /* nng URL */
	char core_fds[96];
};

/* Creates the namespace and region, starts both services, and waits until
 * the link is up. Returns 0 or -errno; on failure nothing is left behind. */
int nc_testbed_start(struct nc_testbed *tb, const char *tag,
                     uint16_t echo_port);

/*
 * As nc_testbed_start, and also serves client sockets: the core listens for
 * the broker (nng and the fd channel, in a private temp directory) and a
 * proxy_broker runs with `broker_config` (a file path, or NULL for the
 * defaults). Clients attach at tb->broker_socket.
 */
int nc_testbed_start_sockets(struct nc_testbed *tb, const char *tag,
                             uint16_t echo_port, const char *broker_config);

/* SIGKILLs the broker / starts it again (and waits until it listens). */
int nc_testbed_kill_broker(struct nc_testbed *tb);
int nc_testbed_start_broker(struct nc_testbed *tb, const char *config);

/* Ends the services and deletes the namespace. Idempotent. */
void nc_testbed_stop(struct nc_testbed *tb);

/* SIGKILLs the phy driver and reaps it. */
int nc_testbed_kill_phy(struct nc_testbed *tb);
/* Starts the phy driver and waits (bounded) for it to attach. */
int nc_testbed_start_phy(struct nc_testbed *tb);

/*
 * SIGKILLs the core and reaps it / starts a new one on the same region and
 * waits (bounded) until it has granted the phy fresh rings and, with
 * sockets, listens for the broker again. For fault tests.
 */
int nc_testbed_kill_core(struct nc_testbed *tb);
int nc_testbed_start_core(struct nc_testbed *tb);

/* Moves the calling thread into the namespace (root needed). */
int nc_testbed_enter(struct nc_testbed *tb);

/* Runs argv inside the namespace, output into out (NUL-terminated), killed
 * after timeout_s. Returns the exit status, or -errno. */
int nc_testbed_run(struct nc_testbed *tb, char *const argv[], char *out,
                   size_t cap, int timeout_s);

/* The phy's counters as it publishes them in the region. */
struct nc_phy_counters nc_testbed_phy_counters(const struct nc_testbed *tb);
/* The core's drop counters as it publishes them in the region. */
struct nc_phy_core_report nc_testbed_core_report(const struct nc_testbed *tb);
/* True if the core process is still running. */
bool nc_testbed_core_alive(struct nc_testbed *tb);

#endif
