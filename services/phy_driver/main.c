/*
 * phy_driver: the only netcore process with a privileged handle.
 *
 * It is started (by the supervisor, or a test) with the phy region's memfd
 * and both doorbells inherited as fds, opens its backend (TUN, or a packet
 * fd), gives up every capability, and then moves packets until SIGTERM.
 * Killed at any moment and started again, it re-attaches to the same
 * persistent TUN device and asks the core for fresh rings: no connection
 * state lives here.
 *
 * With --health URL it answers the supervisor's heartbeats there
 * (services/common/health.h); it logs in the common format (log.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "services/common/health.h"
#include "services/common/log.h"
#include "services/phy_driver/backend.h"
#include "services/phy_driver/phy.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct options {
	int region_fd, phy_bell_fd, core_bell_fd, link_fd;
	const char *netns;
	const char *health_url;
	bool die_with_parent;
	struct nc_tun_config tun;
};

static void usage(void)
{
	fprintf(stderr,
	        "usage: phy_driver --region-fd N --phy-bell-fd N "
	        "--core-bell-fd N\n"
	        "         (--tun NAME [--kernel-ipv4 CIDR] [--kernel-ipv6 "
	        "CIDR] [--netns PATH] [--no-persist] | --link-fd N)\n"
	        "         [--health URL] [--die-with-parent]\n");
	exit(2);
}

static int number(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0 || v > 1 << 20)
		usage();
	return (int)v;
}

static void parse(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
	    {"region-fd", required_argument, NULL, 'r'},
	    {"phy-bell-fd", required_argument, NULL, 'p'},
	    {"core-bell-fd", required_argument, NULL, 'c'},
	    {"link-fd", required_argument, NULL, 'l'},
	    {"tun", required_argument, NULL, 't'},
	    {"kernel-ipv4", required_argument, NULL, '4'},
	    {"kernel-ipv6", required_argument, NULL, '6'},
	    {"netns", required_argument, NULL, 'n'},
	    {"no-persist", no_argument, NULL, 'P'},
	    {"die-with-parent", no_argument, NULL, 'D'},
	    {"health", required_argument, NULL, 'H'},
	    {0},
	};
	memset(o, 0, sizeof(*o));
	o->region_fd = o->phy_bell_fd = o->core_bell_fd = o->link_fd = -1;
	o->tun.persist = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (opt) {
		case 'r':
			o->region_fd = number(optarg);
			break;
		case 'p':
			o->phy_bell_fd = number(optarg);
			break;
		case 'c':
			o->core_bell_fd = number(optarg);
			break;
		case 'l':
			o->link_fd = number(optarg);
			break;
		case 't':
			if (strlen(optarg) >= sizeof(o->tun.name))
				usage();
			strcpy(o->tun.name, optarg);
			break;
		case '4':
			o->tun.ipv4 = optarg;
			break;
		case '6':
			o->tun.ipv6 = optarg;
			break;
		case 'n':
			o->netns = optarg;
			break;
		case 'P':
			o->tun.persist = 0;
			break;
		case 'D':
			o->die_with_parent = true;
			break;
		case 'H':
			o->health_url = optarg;
			break;
		default:
			usage();
		}
	}
	bool have_backend = (o->link_fd >= 0) != (o->tun.name[0] != '\0');
	if (o->region_fd < 0 || o->phy_bell_fd < 0 || o->core_bell_fd < 0 ||
	    !have_backend || optind != argc)
		usage();
}

static int enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int err = setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
	close(fd);
	return err;
}

/* After the backend is open nothing here needs privilege: give it all up,
 * for good. */
static int drop_privileges(void)
{
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 &&
		    errno != EINVAL)
			return -errno;
	struct __user_cap_header_struct hdr = {.version =
	                                           _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) != 0)
		return -errno;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

static int open_backend(struct options *o, const struct nc_phy_params *p,
                        struct nc_phy_backend *b)
{
	if (o->link_fd >= 0)
		return nc_phy_fdlink_open(b, o->link_fd);
	if (o->netns) {
		int err = enter_netns(o->netns);
		if (err)
			return err;
	}
	o->tun.mtu = p->mtu;
	return nc_phy_tun_open(b, &o->tun);
}

static int fail(const char *what, int err)
{
	nc_log(NC_LOG_ERROR, "%s: %s", what, nc_shm_strerror(err));
	return 1;
}

/* For a parent that cannot supervise us after it dies (a test): stop when
 * it goes, including if it went before we got here. */
static void follow_parent(void)
{
	pid_t parent = getppid();
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		stop = 1;
}

int main(int argc, char **argv)
{
	struct options o;
	nc_log_init("phy");
	parse(argc, argv, &o);
	if (o.die_with_parent)
		follow_parent();
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	struct nc_region region;
	struct nc_region_expect expect = {.kind = NC_PHY_REGION_KIND};
	int err = nc_region_attach(&region, o.region_fd, &expect);
	if (err)
		return fail("phy region", err);
	struct nc_doorbell phy_bell, core_bell;
	nc_doorbell_adopt(&phy_bell, o.phy_bell_fd);
	nc_doorbell_adopt(&core_bell, o.core_bell_fd);
	struct nc_phy_dev dev;
	err = nc_phy_dev_open(&dev, &region, &phy_bell, &core_bell);
	if (err)
		return fail("phy region layout", err);
	struct nc_phy_backend backend;
	err = open_backend(&o, &dev.params, &backend);
	if (err)
		return fail("backend", err);
	err = drop_privileges();
	if (err)
		return fail("dropping privileges", err);
	err = nc_health_start(o.health_url, "phy");
	if (err)
		return fail("health", err);
	err = nc_phy_run(&dev, &backend, &stop);
	nc_health_stop();
	backend.ops->close(backend.state);
	nc_region_close(&region);
	return err ? fail("loop", err) : 0;
}
