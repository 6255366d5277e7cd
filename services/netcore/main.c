/*
 * netcore_core: the core service. Started with the phy region's memfd and
 * both doorbells inherited as fds; runs lwIP's loop until SIGTERM, then
 * prints its counters. It needs no privilege and no network of its own.
 * With --ctl and --fds it also serves client sockets: the broker's nng
 * requests on --ctl, client regions and doorbells on the --fds socket.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "services/netcore/core.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct options {
	bool die_with_parent; /* stop when the parent dies (tests) */
	int region_fd, core_bell_fd, phy_bell_fd;
	const char *ctl_url, *fds_path;
	struct nc_core_config cfg;
};

static void usage(void)
{
	fprintf(stderr,
	        "usage: netcore_core --region-fd N --core-bell-fd N "
	        "--phy-bell-fd N\n"
	        "         [--ipv4 CIDR] [--ipv4-peer ADDR] [--ipv6 CIDR] "
	        "[--ipv6-peer ADDR] [--echo-port PORT]\n"
	        "         [--ctl URL --fds PATH] [--die-with-parent]\n");
	exit(2);
}

static long number(const char *s, long max)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0 || v > max)
		usage();
	return v;
}

static void parse(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
	    {"region-fd", required_argument, NULL, 'r'},
	    {"core-bell-fd", required_argument, NULL, 'c'},
	    {"phy-bell-fd", required_argument, NULL, 'p'},
	    {"ipv4", required_argument, NULL, '4'},
	    {"ipv4-peer", required_argument, NULL, 'g'},
	    {"ipv6", required_argument, NULL, '6'},
	    {"ipv6-peer", required_argument, NULL, 'G'},
	    {"echo-port", required_argument, NULL, 'e'},
	    {"ctl", required_argument, NULL, 'C'},
	    {"fds", required_argument, NULL, 'F'},
	    {"die-with-parent", no_argument, NULL, 'D'},
	    {0},
	};
	o->region_fd = o->core_bell_fd = o->phy_bell_fd = -1;
	o->ctl_url = o->fds_path = NULL;
	nc_core_config_default(&o->cfg);
	int opt, bad = 0;
	while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (opt) {
		case 'r':
			o->region_fd = (int)number(optarg, 1 << 20);
			break;
		case 'c':
			o->core_bell_fd = (int)number(optarg, 1 << 20);
			break;
		case 'p':
			o->phy_bell_fd = (int)number(optarg, 1 << 20);
			break;
		case '4':
			bad |= nc_core_config_set_ipv4(&o->cfg, optarg);
			break;
		case '6':
			bad |= nc_core_config_set_ipv6(&o->cfg, optarg);
			break;
		case 'g':
			bad |=
			    inet_pton(AF_INET, optarg, &o->cfg.ipv4_peer) != 1;
			break;
		case 'G':
			bad |=
			    inet_pton(AF_INET6, optarg, &o->cfg.ipv6_peer) != 1;
			break;
		case 'e':
			o->cfg.echo_port = (uint16_t)number(optarg, 65535);
			break;
		case 'C':
			o->ctl_url = optarg;
			break;
		case 'F':
			o->fds_path = optarg;
			break;
		case 'D':
			o->die_with_parent = true;
			break;
		default:
			usage();
		}
	}
	if (bad || o->region_fd < 0 || o->core_bell_fd < 0 ||
	    o->phy_bell_fd < 0 || optind != argc ||
	    (o->ctl_url == NULL) != (o->fds_path == NULL))
		usage();
}

static void print_counters(const struct nc_core *core)
{
	struct nc_core_counters c;
	nc_core_get_counters(core, &c);
	fprintf(stderr,
	        "netcore_core: rx %" PRIu64 " packets %" PRIu64
	        " bytes, tx %" PRIu64 " packets %" PRIu64
	        " bytes; drops: tx-no-buffer %" PRIu64 " ip %" PRIu64
	        " checksum %" PRIu64 " tcp %" PRIu64 " udp %" PRIu64
	        "; phy handshakes %" PRIu64 " corrupt %" PRIu64 "\n",
	        c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes,
	        c.drop_tx_no_buffer, c.drop_ip_bad, c.drop_checksum, c.drop_tcp,
	        c.drop_udp, c.phy_handshakes, c.phy_corrupt);
	fprintf(stderr,
	        "netcore_core: clients %u (added %" PRIu64 " removed %" PRIu64
	        " broken %" PRIu64 "), sockets %u; control %" PRIu64
	        " requests, %" PRIu64 " refused; fds refused %" PRIu64
	        "; udp dropped rx %" PRIu64 " tx %" PRIu64 "\n",
	        c.clients, c.clients_added, c.clients_removed, c.clients_broken,
	        c.client_sockets, c.ctl_requests, c.ctl_refused, c.fds_refused,
	        c.udp_rx_dropped, c.udp_tx_dropped);
}

int main(int argc, char **argv)
{
	struct options o;
	parse(argc, argv, &o);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (o.die_with_parent) {
		pid_t parent = getppid();
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			stop = 1; /* it went before we could ask */
	}
	signal(SIGPIPE, SIG_IGN);

	struct nc_region region;
	struct nc_region_expect expect = {.kind = NC_PHY_REGION_KIND};
	int err = nc_region_attach(&region, o.region_fd, &expect);
	if (err) {
		fprintf(stderr, "netcore_core: phy region: %s\n",
		        nc_shm_strerror(err));
		return 1;
	}
	struct nc_doorbell core_bell, phy_bell;
	nc_doorbell_adopt(&core_bell, o.core_bell_fd);
	nc_doorbell_adopt(&phy_bell, o.phy_bell_fd);
	struct nc_core *core =
	    nc_core_create(&o.cfg, &region, &core_bell, &phy_bell);
	if (core == NULL) {
		perror("netcore_core: create");
		return 1;
	}
	if (o.ctl_url != NULL) {
		err = nc_core_serve_clients(core, o.ctl_url, o.fds_path);
		if (err) {
			fprintf(stderr, "netcore_core: clients: %s\n",
			        strerror(-err));
			nc_core_destroy(core);
			return 1;
		}
	}
	err = nc_core_run(core, &stop);
	print_counters(core);
	nc_core_destroy(core);
	nc_region_close(&region);
	return err ? 1 : 0;
}
