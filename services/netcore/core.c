/*
 * The core: lwIP's one netif over the phy region, and the loop that drives
 * it.
 *
 * Receive. Packets arrive as validated descriptors of buffers the core owns
 * (phy_link). Each becomes a PBUF_REF custom pbuf that points straight into
 * the buffer: no copy. When lwIP frees the pbuf (at once for most packets,
 * later for out-of-order TCP segments or fragments it keeps), the free
 * callback hands the buffer back to the phy to fill again.
 *
 * Transmit. lwIP's output hooks copy the pbuf chain once into a fresh phy
 * buffer and queue its descriptor; the queue is published, and the phy's
 * doorbell rung if it asked, once per poll.
 *
 * Clients (optional, nc_core_serve_clients). Each poll also answers the
 * broker's control requests (ctl.c) and makes one pass over every client
 * region (clients.c, sock.c), then delivers to lwIP what the clients just
 * sent to this stack itself (loopback), so that a conversation between two
 * of our own sockets advances by whole round trips per poll.
 *
 * Sleeping. Every event source is in one epoll set: the phy doorbell, the
 * control socket's receive fd, the fd channel, and each client's core
 * doorbell. Before sleeping, the wake-up protocol runs toward the phy and
 * every client (nc_core_prepare_wait); waking drains the doorbells that
 * rang and marks the other sources for the next poll.
 *
 * Restart. Nothing here survives the process. A restarted core opens the
 * phy region anew (new epoch), so the phy re-attaches; TCP peers of the old
 * core see resets when their segments reach a stack that does not know them.
 *
 * What it does not do: routing beyond one default route per family.
 */
#include "services/netcore/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/ip4_addr.h"
#include "lwip/ip6_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/stats.h"
#include "lwip/timeouts.h"
#include "services/netcore/clients.h"
#include "services/netcore/ctl.h"
#include "services/netcore/echo.h"
#include "services/netcore/nci.h"

#define RX_BATCH    NC_PHY_BATCH
#define WAIT_EVENTS 64

/* A received buffer wrapped for lwIP; one per pool buffer, preallocated. */
struct rx_pbuf {
	struct pbuf_custom custom;
	struct nc_desc desc;
	struct nc_core *core;
};

struct nc_core {
	struct nc_phy_core phy;
	struct netif netif;
	struct nc_core_config cfg;
	struct rx_pbuf *rx_pbufs; /* indexed by pool buffer */
	struct nc_echo *echo;
	int epfd; /* every event source; see nc_core_wait */
	struct nci_src phy_src;
	struct nci_stats stats;
	struct nci_clients *clients; /* NULL until nc_core_serve_clients */
	struct nci_ctl *ctl;
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t martian_drops; /* spoofed sources, see martian_source() */
	uint32_t last_rx_ready; /* ring occupancy at the last poll */
	uint32_t last_tx_used;
};

static struct nc_core *the_core;

void nc_core_config_default(struct nc_core_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	nc_core_config_set_ipv4(cfg, "10.77.0.2/24");
	inet_pton(AF_INET, "10.77.0.1", &cfg->ipv4_peer);
	nc_core_config_set_ipv6(cfg, "fd77::2/64");
	inet_pton(AF_INET6, "fd77::1", &cfg->ipv6_peer);
}

static int parse_cidr(int af, const char *cidr, void *addr, uint8_t *prefix)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (strlen(cidr) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, cidr);
	char *slash = strchr(buf, '/');
	if (slash == NULL)
		return -EINVAL;
	*slash = '\0';
	char *end;
	long p = strtol(slash + 1, &end, 10);
	long max = af == AF_INET ? 32 : 128;
	if (*end != '\0' || end == slash + 1 || p < 1 || p > max)
		return -EINVAL;
	if (inet_pton(af, buf, addr) != 1)
		return -EINVAL;
	*prefix = (uint8_t)p;
	return 0;
}

int nc_core_config_set_ipv4(struct nc_core_config *cfg, const char *cidr)
{
	return parse_cidr(AF_INET, cidr, &cfg->ipv4, &cfg->ipv4_prefix);
}

int nc_core_config_set_ipv6(struct nc_core_config *cfg, const char *cidr)
{
	return parse_cidr(AF_INET6, cidr, &cfg->ipv6, &cfg->ipv6_prefix);
}

/* ------------------------------------------------------------ transmit */

static err_t transmit(struct netif *netif, struct pbuf *p)
{
	struct nc_core *c = netif->state;
	struct nc_desc d;
	if (p->tot_len > c->phy.params.mtu)
		return ERR_BUF;
	void *buf = nc_phy_core_tx_reserve(&c->phy, &d);
	if (buf == NULL) {
		c->phy.counters.tx_drop_no_buffer++;
		return ERR_MEM; /* TCP retransmits; UDP is lossy anyway */
	}
	pbuf_copy_partial(p, buf, p->tot_len, 0);
	if (nc_phy_core_tx_commit(&c->phy, &d, p->tot_len) != 0)
		return ERR_IF;
	c->tx_packets++;
	c->tx_bytes += p->tot_len;
	return ERR_OK;
}

static err_t output_ip4(struct netif *netif, struct pbuf *p,
                        const ip4_addr_t *next_hop)
{
	(void)next_hop; /* point-to-point: everything goes to the one peer */
	return transmit(netif, p);
}

static err_t output_ip6(struct netif *netif, struct pbuf *p,
                        const ip6_addr_t *next_hop)
{
	(void)next_hop;
	return transmit(netif, p);
}

/* ------------------------------------------------------------- receive */

static void rx_pbuf_free(struct pbuf *p)
{
	struct rx_pbuf *r = (struct rx_pbuf *)p;
	nc_phy_core_rx_release(&r->core->phy, &r->desc);
}

static uint32_t buffer_index(const struct nc_core *c, const struct nc_desc *d)
{
	return (uint32_t)((d->offset - c->phy.layout.pool) /
	                  c->phy.params.buf_size);
}

static void deliver(struct nc_core *c, const struct nc_desc *d)
{
	struct rx_pbuf *r = &c->rx_pbufs[buffer_index(c, d)];
	r->desc = *d;
	r->core = c;
	r->custom.custom_free_function = rx_pbuf_free;
	void *data = nc_phy_core_data(&c->phy, d);
	struct pbuf *p =
	    pbuf_alloced_custom(PBUF_RAW, (u16_t)d->length, PBUF_REF,
	                        &r->custom, data, (u16_t)d->length);
	if (p == NULL) {
		nc_phy_core_rx_release(&c->phy, d);
		return;
	}
	if (c->netif.input(p, &c->netif) != ERR_OK)
		pbuf_free(p);
}

static bool ipv4_martian(const struct nc_core *c, const uint8_t *src)
{
	uint32_t a = (uint32_t)src[0] << 24 | (uint32_t)src[1] << 16 |
	             (uint32_t)src[2] << 8 | src[3];
	uint8_t top = src[0];
	return top == 0 || top == 127 || top >= 224 || a == 0xffffffffu ||
	       memcmp(src, &c->cfg.ipv4, 4) == 0;
}

static bool ipv6_martian(const struct nc_core *c, const uint8_t *src)
{
	static const uint8_t zero[16], one[16] = {[15] = 1};
	static const uint8_t our_ll[16] = {0xfe, 0x80, [15] = 2};
	return memcmp(src, zero, 16) == 0 || memcmp(src, one, 16) == 0 ||
	       src[0] == 0xff || memcmp(src, our_ll, 16) == 0 ||
	       memcmp(src, &c->cfg.ipv6, 16) == 0;
}

/*
 * A packet from the link whose source is this stack's own address, a
 * loopback, unspecified, multicast or broadcast address is spoofed or
 * broken: no host on the other side may send it. lwIP would accept it, and
 * a datagram "from ourselves" to the echo service makes the stack answer
 * itself through its loopback forever (found by packet_fuzz). Counted as a
 * bad IP drop.
 */
static bool martian_source(struct nc_core *c, const struct nc_desc *d)
{
	const uint8_t *pkt = nc_phy_core_data(&c->phy, d);
	bool martian;
	if (pkt[0] >> 4 == 4 && d->length >= 20)
		martian = ipv4_martian(c, pkt + 12);
	else if (pkt[0] >> 4 == 6 && d->length >= 40)
		martian = ipv6_martian(c, pkt + 8);
	else
		return false; /* lwIP refuses and counts it */
	if (martian)
		c->martian_drops++;
	return martian;
}

static int receive_batch(struct nc_core *c)
{
	struct nc_desc batch[RX_BATCH];
	int n = nc_phy_core_rx(&c->phy, batch, RX_BATCH);
	for (int i = 0; i < n; i++) {
		/* lwIP's lengths are 16-bit; the phy's MTU check keeps packets
		 * below, but a broken phy must not make us truncate. */
		if (batch[i].length == 0 || batch[i].length > 0xffff) {
			nc_phy_core_rx_release(&c->phy, &batch[i]);
			continue;
		}
		c->rx_packets++;
		c->rx_bytes += batch[i].length;
		if (martian_source(c, &batch[i])) {
			nc_phy_core_rx_release(&c->phy, &batch[i]);
			continue;
		}
		deliver(c, &batch[i]);
	}
	return n;
}

/* ---------------------------------------------------------------- netif */

static void set_ipv6(struct nc_core *c)
{
	struct netif *n = &c->netif;
	/* A TUN has no MAC to derive a link-local address from: use fe80::2,
	 * the stack's end of the point-to-point link. */
	ip6_addr_t ll;
	IP6_ADDR(&ll, PP_HTONL(0xfe800000), 0, 0, PP_HTONL(2));
	ip6_addr_assign_zone(&ll, IP6_UNICAST, n);
	netif_ip6_addr_set(n, 0, &ll);
	netif_ip6_addr_set_state(n, 0, IP6_ADDR_PREFERRED);
	static const struct in6_addr none;
	if (memcmp(&c->cfg.ipv6, &none, sizeof(none)) == 0)
		return;
	ip6_addr_t global;
	memcpy(&global.addr, &c->cfg.ipv6, sizeof(global.addr));
	ip6_addr_clear_zone(&global);
	netif_ip6_addr_set(n, 1, &global);
	netif_ip6_addr_set_state(n, 1, IP6_ADDR_PREFERRED);
}

static err_t netif_setup(struct netif *n)
{
	struct nc_core *c = n->state;
	n->name[0] = 'n';
	n->name[1] = 'c';
	n->output = output_ip4;
	n->output_ip6 = output_ip6;
	n->mtu = (u16_t)c->phy.params.mtu;
	n->flags = NETIF_FLAG_LINK_UP;
	return ERR_OK;
}

static uint32_t prefix_mask(uint8_t prefix)
{
	return prefix == 0 ? 0 : htonl(~0u << (32 - prefix));
}

static void add_netif(struct nc_core *c)
{
	ip4_addr_t addr, mask, gw;
	addr.addr = c->cfg.ipv4.s_addr;
	mask.addr = prefix_mask(c->cfg.ipv4_prefix);
	gw.addr = c->cfg.ipv4_peer.s_addr;
	netif_add(&c->netif, &addr, &mask, &gw, c, netif_setup, ip_input);
	set_ipv6(c);
	netif_set_default(&c->netif);
	netif_set_up(&c->netif);
}

/* ----------------------------------------------------------- lifecycle */

int nci_epoll_add(int epfd, struct nci_src *src)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = src};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0 ? -errno : 0;
}

void nci_epoll_del(int epfd, struct nci_src *src)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, src->fd, NULL);
}

static int open_epoll(struct nc_core *c)
{
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0)
		return -errno;
	c->phy_src.kind = NCI_SRC_BELL;
	c->phy_src.fd = c->phy.core_bell->fd;
	return nci_epoll_add(c->epfd, &c->phy_src);
}

struct nc_core *nc_core_create(const struct nc_core_config *cfg,
                               struct nc_region *phy_region,
                               struct nc_doorbell *core_bell,
                               struct nc_doorbell *phy_bell)
{
	if (the_core != NULL) {
		errno = EBUSY;
		return NULL;
	}
	struct nc_core *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->epfd = -1;
	int err = nc_phy_core_open(&c->phy, phy_region, core_bell, phy_bell);
	if (err == 0) {
		c->rx_pbufs =
		    calloc(c->phy.params.buf_count, sizeof(*c->rx_pbufs));
		err = c->rx_pbufs ? 0 : -ENOMEM;
	}
	err = err ?: open_epoll(c);
	if (err) {
		nc_phy_core_close(&c->phy);
		if (c->epfd >= 0)
			close(c->epfd);
		free(c->rx_pbufs);
		free(c);
		errno = err == -ENOMEM ? ENOMEM : EINVAL;
		return NULL;
	}
	c->cfg = *cfg;
	static bool lwip_ready;
	if (!lwip_ready)
		lwip_init();
	lwip_ready = true;
	add_netif(c);
	if (cfg->echo_port != 0)
		c->echo = nc_echo_start(cfg->echo_port);
	the_core = c;
	return c;
}

void nc_core_destroy(struct nc_core *c)
{
	if (c == NULL)
		return;
	nci_ctl_destroy(c->ctl);
	nci_clients_destroy(c->clients); /* closes their sockets */
	nc_echo_stop(c->echo);
	netif_remove(&c->netif);
	nc_phy_core_close(&c->phy);
	close(c->epfd);
	free(c->rx_pbufs);
	free(c);
	the_core = NULL;
}

/* Each client holds three fds (region, two doorbells). */
static void raise_fd_limit(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

int nc_core_serve_clients(struct nc_core *c, const char *ctl_url,
                          const char *fds_path)
{
	if (c->clients != NULL)
		return -EBUSY;
	c->clients = nci_clients_create(c->epfd, &c->stats);
	if (c->clients == NULL)
		return -ENOMEM;
	int err =
	    nci_ctl_create(&c->ctl, c->clients, c->epfd, ctl_url, fds_path);
	if (err) {
		nci_clients_destroy(c->clients);
		c->clients = NULL;
		return err;
	}
	raise_fd_limit();
	return 0;
}

struct nci_ctl *nci_core_ctl(struct nc_core *c)
{
	return c->ctl;
}

/* ----------------------------------------------------------------- loop */

/* Copies the drop counters into the phy region for the supervisor. */
static void publish_report(struct nc_core *c)
{
	struct nc_core_counters now;
	nc_core_get_counters(c, &now);
	struct nc_phy_core_report *r = &c->phy.control->core;
	r->rx_packets = now.rx_packets;
	r->drop_ip_bad = now.drop_ip_bad;
	r->drop_checksum = now.drop_checksum;
	r->drop_tcp = now.drop_tcp;
	r->drop_udp = now.drop_udp;
}

static bool loopback_pending(void)
{
	struct netif *n;
	NETIF_FOREACH(n)
	{
		if (n->loop_first != NULL)
			return true;
	}
	return false;
}

/* Control requests, then one pass over every client. True: more to do. */
static bool serve_clients(struct nc_core *c)
{
	if (c->clients == NULL)
		return false;
	bool more = nci_ctl_poll(c->ctl);
	nci_clients_take_dirty(c->clients); /* this pass serves it */
	more |= nci_clients_service(c->clients);
	netif_poll_all(); /* what the clients just sent to this stack */
	return nci_clients_take_dirty(c->clients) || more;
}

struct nc_core_advice nc_core_poll(struct nc_core *c)
{
	struct nc_core_advice advice = {.again = false};
	nc_phy_core_service(&c->phy);
	int n = receive_batch(c);
	sys_check_timeouts();
	netif_poll_all(); /* packets lwIP looped back to itself */
	bool more = serve_clients(c);
	nc_phy_core_flush(&c->phy);
	if (c->phy.up) {
		int ready = nc_ring_ready(&c->phy.rx_active);
		int space = nc_ring_space(&c->phy.tx_active);
		c->last_rx_ready = ready > 0 ? (uint32_t)ready : 0;
		c->last_tx_used =
		    space >= 0 ? c->phy.tx_active.mask - (uint32_t)space : 0;
	}
	if (n > 0)
		publish_report(c);
	advice.again = n == RX_BATCH || more || loopback_pending();
	uint32_t sleep = sys_timeouts_sleeptime();
	advice.wait_ms =
	    sleep == SYS_TIMEOUTS_SLEEPTIME_INFINITE ? 1000 : sleep;
	return advice;
}

bool nc_core_prepare_wait(struct nc_core *c)
{
	if (!nc_phy_core_prepare_wait(&c->phy))
		return false;
	return c->clients == NULL || nci_clients_prepare_wait(c->clients);
}

int nc_core_wait(struct nc_core *c, int timeout_ms)
{
	struct epoll_event ev[WAIT_EVENTS];
	int n = epoll_wait(c->epfd, ev, WAIT_EVENTS, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		struct nci_src *src = ev[i].data.ptr;
		src->ready = true;
		if (src->kind == NCI_SRC_BELL) {
			struct nc_doorbell bell = {.fd = src->fd};
			nc_doorbell_drain(&bell);
		}
	}
	if (c->clients != NULL)
		nci_clients_woken(c->clients);
	return n > 0;
}

int nc_core_fd(const struct nc_core *c)
{
	return c->epfd;
}

int nc_core_run(struct nc_core *c, volatile sig_atomic_t *stop)
{
	while (!*stop) {
		struct nc_core_advice a = nc_core_poll(c);
		if (a.again || !nc_core_prepare_wait(c))
			continue;
		int err =
		    nc_core_wait(c, (int)(a.wait_ms > 1000 ? 1000 : a.wait_ms));
		if (err < 0)
			return err;
	}
	return 0;
}

void nc_core_get_counters(const struct nc_core *c, struct nc_core_counters *out)
{
	memset(out, 0, sizeof(*out));
	out->rx_packets = c->rx_packets;
	out->rx_bytes = c->rx_bytes;
	out->tx_packets = c->tx_packets;
	out->tx_bytes = c->tx_bytes;
	out->drop_tx_no_buffer = c->phy.counters.tx_drop_no_buffer;
	out->phy_handshakes = c->phy.counters.handshakes;
	out->phy_corrupt = c->phy.counters.phy_corrupt;
	const struct stats_ *s = &lwip_stats;
	out->drop_ip_bad = s->ip.lenerr + s->ip.proterr + s->ip.err +
	                   s->ip6.lenerr + s->ip6.proterr + s->ip6.err +
	                   s->ip.drop + s->ip6.drop + c->martian_drops;
	out->drop_checksum = s->ip.chkerr + s->tcp.chkerr + s->udp.chkerr +
	                     s->icmp.chkerr + s->icmp6.chkerr;
	out->drop_tcp = s->tcp.drop;
	out->drop_udp = s->udp.drop;
	out->rx_ring_ready = c->last_rx_ready;
	out->tx_ring_used = c->last_tx_used;
	memcpy(&out->phy, &c->phy.control->phy, sizeof(out->phy));
	const struct nci_stats *k = &c->stats;
	out->clients = k->clients;
	out->client_sockets = k->sockets;
	out->clients_added = k->clients_added;
	out->clients_adopted = k->clients_adopted;
	if (c->clients != NULL)
		nci_clients_count_phases(c->clients, out->sockets_by_phase, 8);
	out->clients_removed = k->clients_removed;
	out->clients_broken = k->clients_broken;
	out->ctl_requests = k->ctl_requests;
	out->ctl_refused = k->ctl_refused;
	out->fds_refused = k->fds_refused;
	out->udp_rx_dropped = k->udp_rx_dropped;
	out->udp_tx_dropped = k->udp_tx_dropped;
	out->tcp_tx_discarded = k->tcp_tx_discarded;
}
