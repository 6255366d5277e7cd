/*
 * ops: how the fault driver kills a service and learns it is back.
 *
 * The driver knows nothing about who runs the services. An ops table
 * gives it two verbs: kill(service), which must SIGKILL the service's
 * process and return once it is gone, and wait_back(service, deadline),
 * which returns 0 once the service is running again and serving (or
 * -errno, -ETIMEDOUT at the deadline). Who restarts it is the
 * implementation's business:
 *
 * - the testbed implementation (ops_testbed.c) has no supervisor, so
 *   wait_back restarts the service itself with the testbed's helpers and
 *   waits the way they do (the phy granted fresh rings, a socket listens);
 * - the supervisor implementation (ops_supervisor.c, declared in
 *   sup_harness.h) runs `netcore kill SERVICE`, then `netcore status
 *   --json` until a new process is healthy; the demo uses it. Only this
 *   table differs between the two.
 *
 * What it is not: a way to start or stop the whole system; the caller
 * does that before and after the driver runs.
 */
#ifndef NETCORE_TESTS_FAULT_OPS_H
#define NETCORE_TESTS_FAULT_OPS_H

#include <stdint.h>

enum ff_service { FF_PHY, FF_BROKER, FF_CORE, FF_NSERVICES };

struct ff_ops {
	const char *name; /* "testbed", "supervisor": for the report */
	void *ctx;
	int (*kill)(void *ctx, enum ff_service s);
	int (*wait_back)(void *ctx, enum ff_service s, int64_t deadline_ms);
};

/* "phy", "broker", "core". */
const char *ff_service_name(enum ff_service s);
/* "phy_driver", "proxy_broker", "netcore core": for people. */
const char *ff_service_long_name(enum ff_service s);
/* 0 and *out, or -1 for an unknown name. */
int ff_service_parse(const char *name, enum ff_service *out);

struct nc_testbed;
/* The testbed's table; ctx is the started testbed (with sockets). */
struct ff_ops ff_testbed_ops(struct nc_testbed *tb);

#endif
