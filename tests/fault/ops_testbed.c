/*
 * ops_testbed: the fault driver's ops over tests/testbed (see ops.h).
 * kill is the testbed's SIGKILL-and-reap; wait_back restarts the service
 * (nobody else would) and waits as the testbed does, bounded by the
 * testbed's own 10 s waits; a restart that ends after the driver's
 * deadline is reported as -ETIMEDOUT all the same.
 */
#include "tests/fault/ops.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "tests/testbed/testbed.h"

static const char *names[FF_NSERVICES] = {"phy", "broker", "core"};
static const char *long_names[FF_NSERVICES] = {"phy_driver", "proxy_broker",
                                               "netcore core"};

const char *ff_service_name(enum ff_service s)
{
	return s < FF_NSERVICES ? names[s] : "?";
}

const char *ff_service_long_name(enum ff_service s)
{
	return s < FF_NSERVICES ? long_names[s] : "?";
}

int ff_service_parse(const char *name, enum ff_service *out)
{
	for (int i = 0; i < FF_NSERVICES; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum ff_service)i;
			return 0;
		}
	}
	return -1;
}

static int tb_kill(void *ctx, enum ff_service s)
{
	struct nc_testbed *tb = ctx;
	switch (s) {
	case FF_PHY:
		return nc_testbed_kill_phy(tb);
	case FF_BROKER:
		return nc_testbed_kill_broker(tb);
	case FF_CORE:
		return nc_testbed_kill_core(tb);
	default:
		return -EINVAL;
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tb_wait_back(void *ctx, enum ff_service s, int64_t deadline_ms)
{
	struct nc_testbed *tb = ctx;
	int err;
	switch (s) {
	case FF_PHY:
		err = nc_testbed_start_phy(tb);
		break;
	case FF_BROKER:
		err = nc_testbed_start_broker(tb, NULL);
		break;
	case FF_CORE:
		err = nc_testbed_start_core(tb);
		break;
	default:
		return -EINVAL;
	}
	return err ? err : now_ms() > deadline_ms ? -ETIMEDOUT : 0;
}

struct ff_ops ff_testbed_ops(struct nc_testbed *tb)
{
	return (struct ff_ops){.name = "testbed",
	                       .ctx = tb,
	                       .kill = tb_kill,
	                       .wait_back = tb_wait_back};
}
