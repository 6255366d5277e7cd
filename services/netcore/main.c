/*
 * netcore_core: the core service. Started with the phy region's memfd and
 * both doorbells inherited as fds; runs lwIP's loop until SIGTERM, then
 * prints its counters. It needs no privilege and no network of its own.
 * With --ctl and --fds it also serves client sockets: the broker's nng
 * requests on --ctl, client regions and doorbells on the --fds socket.
 *
 * With --health URL it answers the supervisor's heartbeats there
 * (services/common/health.h), with its client and socket figures as the
 * reply's counters. The loop is nc_core_run's, written out here so that it
 * ticks the heartbeat and never sleeps longer than IDLE_SLICE_MS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "proto/client_region.h"
#include "services/common/health.h"
#include "services/common/log.h"
#include "services/netcore/core.h"

/* Longest sleep, so an idle loop still ticks; counters refresh as often. */
#define IDLE_SLICE_MS 250

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct options {
	bool die_with_parent; /* stop when the parent dies (tests) */
	int region_fd, core_bell_fd, phy_bell_fd;
	const char *ctl_url, *fds_path, *health_url;
	struct nc_core_config cfg;
};

static void usage(void)
{
	fprintf(stderr,
	        "usage: netcore_core --region-fd N --core-bell-fd N "
	        "--phy-bell-fd N\n"
	        "         [--ipv4 CIDR] [--ipv4-peer ADDR] [--ipv6 CIDR] "
	        "[--ipv6-peer ADDR] [--echo-port PORT]\n"
	        "         [--ctl URL --fds PATH] [--health URL] "
	        "[--die-with-parent]\n");
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
	    {"health", required_argument, NULL, 'H'},
	    {0},
	};
	o->region_fd = o->core_bell_fd = o->phy_bell_fd = -1;
	o->ctl_url = o->fds_path = o->health_url = NULL;
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
		case 'H':
			o->health_url = optarg;
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
	nc_log(NC_LOG_INFO,
	       "rx %" PRIu64 " packets %" PRIu64 " bytes, tx %" PRIu64
	       " packets %" PRIu64 " bytes; drops: tx-no-buffer %" PRIu64
	       " ip %" PRIu64 " checksum %" PRIu64 " tcp %" PRIu64
	       " udp %" PRIu64 "; phy handshakes %" PRIu64 " corrupt %" PRIu64,
	       c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes,
	       c.drop_tx_no_buffer, c.drop_ip_bad, c.drop_checksum, c.drop_tcp,
	       c.drop_udp, c.phy_handshakes, c.phy_corrupt);
	nc_log(NC_LOG_INFO,
	       "clients %u (added %" PRIu64 " removed %" PRIu64
	       " broken %" PRIu64 "), sockets %u; control %" PRIu64
	       " requests, %" PRIu64 " refused; fds refused %" PRIu64
	       "; udp dropped rx %" PRIu64 " tx %" PRIu64,
	       c.clients, c.clients_added, c.clients_removed, c.clients_broken,
	       c.client_sockets, c.ctl_requests, c.ctl_refused, c.fds_refused,
	       c.udp_rx_dropped, c.udp_tx_dropped);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The heartbeat's counters (health.h's NC_HC_CORE_*). */
static void publish_counters(const struct nc_core *core)
{
	struct nc_core_counters c;
	nc_core_get_counters(core, &c);
	nc_health_set(NC_HC_CORE_CLIENTS, c.clients);
	nc_health_set(NC_HC_CORE_SOCKETS, c.client_sockets);
	nc_health_set(NC_HC_CORE_RX_RING, c.rx_ring_ready);
	nc_health_set(NC_HC_CORE_TX_RING, c.tx_ring_used);
	nc_health_set(NC_HC_CORE_DROP_TX_NO_BUFFER, c.drop_tx_no_buffer);
	nc_health_set(NC_HC_CORE_RX_PACKETS, c.rx_packets);
	nc_health_set(NC_HC_CORE_TX_PACKETS, c.tx_packets);
	nc_health_set(NC_HC_CORE_CTL_REQUESTS, c.ctl_requests);
	nc_health_set(NC_HC_CORE_CTL_REFUSED, c.ctl_refused);
	nc_health_set(NC_HC_CORE_CLIENTS_BROKEN, c.clients_broken);
	nc_health_set(NC_HC_CORE_UDP_RX_DROPPED, c.udp_rx_dropped);
	nc_health_set(NC_HC_CORE_UDP_TX_DROPPED, c.udp_tx_dropped);
	for (int p = 0; p < 6; p++)
		nc_health_set(NC_HC_CORE_SOCK_OPEN + p,
		              c.sockets_by_phase[NC_SS_OPEN + p]);
	nc_health_set(NC_HC_CORE_CLIENTS_ADOPTED, c.clients_adopted);
}

/* nc_core_run, plus the heartbeat tick and a capped sleep. */
static int run(struct nc_core *core)
{
	int64_t published = 0;
	while (!stop) {
		nc_health_tick();
		int64_t now = now_ms();
		if (now - published >= IDLE_SLICE_MS) {
			publish_counters(core);
			published = now;
		}
		struct nc_core_advice a = nc_core_poll(core);
		if (a.again || !nc_core_prepare_wait(core))
			continue;
		uint32_t ms =
		    a.wait_ms > IDLE_SLICE_MS ? IDLE_SLICE_MS : a.wait_ms;
		int err = nc_core_wait(core, (int)ms);
		if (err < 0)
			return err;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	nc_log_init("core");
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
		nc_log(NC_LOG_ERROR, "phy region: %s", nc_shm_strerror(err));
		return 1;
	}
	struct nc_doorbell core_bell, phy_bell;
	nc_doorbell_adopt(&core_bell, o.core_bell_fd);
	nc_doorbell_adopt(&phy_bell, o.phy_bell_fd);
	struct nc_core *core =
	    nc_core_create(&o.cfg, &region, &core_bell, &phy_bell);
	if (core == NULL) {
		nc_log(NC_LOG_ERROR, "create: %s", strerror(errno));
		return 1;
	}
	if (o.ctl_url != NULL) {
		err = nc_core_serve_clients(core, o.ctl_url, o.fds_path);
		if (err) {
			nc_log(NC_LOG_ERROR, "clients: %s", strerror(-err));
			nc_core_destroy(core);
			return 1;
		}
	}
	err = nc_health_start(o.health_url, "core");
	if (err) {
		nc_log(NC_LOG_ERROR, "health: %s", strerror(-err));
		nc_core_destroy(core);
		return 1;
	}
	err = run(core);
	nc_health_stop();
	print_counters(core);
	nc_core_destroy(core);
	nc_region_close(&region);
	return err ? 1 : 0;
}
