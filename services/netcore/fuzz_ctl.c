/*
 * Fuzzes the core's control handler: request bytes from the fuzzer go
 * through nci_ctl_handle() (nc_msg_check, then dispatch into the socket
 * layer over lwIP) of a real core that has one attached client. The core
 * polls between requests, so connections, loopback traffic and the echo
 * service (port 7) all run.
 *
 * Input: records, each a 4-byte control word and then its bytes.
 *   bits 0-1  0, 1: a request: the next sizeof(struct nc_msg_req) bytes
 *             2:    raw bytes: (bits 8-15) bytes, exactly as given
 *             3:    time passes: (bits 8-11) + 1 steps of 10 ms; the
 *                   next sizeof(struct nc_msg_req) bytes are skipped (so
 *                   that seeds are arrays of struct rec)
 *   bit 2     keep the input's client and client_gen (else our client's)
 *   bit 3     keep the input's sock_gen (else the channel's current one)
 *   bit 4     normalise: domain, type, sock, address, option mapped onto
 *             meaningful values (so random inputs reach deep)
 *   bit 5     keep the input's header (else magic, version and size are
 *             made valid and the type is taken modulo NC_MSG_TYPE_END + 1)
 *
 * Properties:
 *   - nothing crashes or trips ASan / UBSan;
 *   - a message too short for a header hangs up; every other reply is
 *     complete (magic, version, size) and carries the request's id and
 *     type; a message nc_msg_check refuses is answered -EPROTO;
 *   - results are 0 or -errno (never positive); SOCKET and ACCEPT
 *     succeed with a channel of the client and a non-zero generation, and
 *     any failure names no channel;
 *   - after CLIENT_REMOVE no client and no socket remain, and every fd the
 *     input made the core take is closed again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "proto/client_region.h"
#include "proto/msg.h"
#include "services/netcore/core.h"
#include "services/netcore/ctl.h"
#include "services/netcore/lwip/nc_lwip_port.h"
#include "services/netcore/nci.h"
#include "services/phy_driver/phy_link.h"
#include "shm/shm.h"
#include "tools/fuzz/fuzz.h"

#define CLIENT      1u
#define MAX_SOCKETS 8u

enum {
	K_REQUEST = 0,
	K_RAW = 2,
	K_TIME = 3,
	F_KEEP_CLIENT = 1u << 2,
	F_KEEP_GEN = 1u << 3,
	F_NORMALISE = 1u << 4,
	F_KEEP_HEADER = 1u << 5,
};

struct rec {
	uint32_t ctl;
	struct nc_msg_req q;
};

static struct nc_lwip_vclock clk = {.now_ms = 1000};
static struct nc_core *core;
static struct nci_ctl *ctl;
static uint32_t own_id = 0x80000000u; /* ids of the harness's requests */
static uint32_t gens[MAX_SOCKETS];

/* ------------------------------------------------------------- harness */

static void once(void)
{
	static struct nc_region phy;
	static struct nc_doorbell core_bell, phy_bell;
	if (core != NULL)
		return;
	nc_lwip_clock_set(nc_lwip_vclock_read, &clk);
	struct nc_phy_params pp = {
	    .ring_slots = 16, .buf_count = 16, .buf_size = 65536, .mtu = 65520};
	FUZZ_CHECK(nc_phy_region_create(&phy, &pp) == 0);
	FUZZ_CHECK(nc_doorbell_create(&core_bell) == 0);
	FUZZ_CHECK(nc_doorbell_create(&phy_bell) == 0);
	struct nc_core_config cfg;
	nc_core_config_default(&cfg);
	cfg.echo_port = 7;
	core = nc_core_create(&cfg, &phy, &core_bell, &phy_bell);
	FUZZ_CHECK(core != NULL);
	FUZZ_CHECK(nc_core_serve_clients(core, NULL, NULL) == 0);
	ctl = nci_core_ctl(core);
}

static void settle(void)
{
	for (int i = 0; i < 1000; i++)
		if (!nc_core_poll(core).again)
			return;
	FUZZ_CHECK(!"the core never settled");
}

static struct nc_msg_rep ask(enum nc_msg_type type)
{
	struct nc_msg_req q = {.client = CLIENT, .client_gen = 1, .sock = -1};
	nc_msg_init(&q.hdr, type, own_id++, sizeof(q));
	struct nc_msg_rep rep;
	bool hang_up;
	nci_ctl_handle(ctl, &q, sizeof(q), &rep, &hang_up);
	FUZZ_CHECK(!hang_up);
	return rep;
}

/* The broker's side of an attach: region, bells, record, CLIENT_ADD. */
static void attach(void)
{
	struct nc_client_params p = {.max_sockets = MAX_SOCKETS,
	                             .ring_slots = 8,
	                             .buf_count = 16,
	                             .buf_size = 2048};
	struct nc_region r;
	struct nc_doorbell a, b;
	FUZZ_CHECK(nc_client_region_create(&r, &p) == 0);
	FUZZ_CHECK(nc_doorbell_create(&a) == 0 && nc_doorbell_create(&b) == 0);
	/* The core takes these three; the broker's copies close here. */
	int fds[3] = {fcntl(r.fd, F_DUPFD_CLOEXEC, 0), a.fd, b.fd};
	nci_ctl_offer_fds(ctl, CLIENT, 1, fds);
	nc_region_close(&r);
	FUZZ_CHECK(ask(NC_MSG_CLIENT_ADD).result == 0);
	memset(gens, 0, sizeof(gens));
}

static void detach(void)
{
	FUZZ_CHECK(ask(NC_MSG_CLIENT_REMOVE).result == 0);
	settle();
	struct nc_core_counters c;
	nc_core_get_counters(core, &c);
	FUZZ_CHECK(c.clients == 0);
	FUZZ_CHECK(c.client_sockets == 0);
}

/* -------------------------------------------------------------- input */

static void normalise_addr(struct nc_msg_addr *a)
{
	static const char *const ips[] = {
	    "127.0.0.1", "::1",       "0.0.0.0",
	    "::",        "10.77.0.2", "::ffff:127.0.0.1"};
	const char *ip = ips[a->scope_id % 6];
	memset(a->addr, 0, sizeof(a->addr));
	a->family = strchr(ip, ':') ? AF_INET6 : AF_INET;
	inet_pton(a->family, ip, a->addr);
	a->port = a->port % 4 == 0 ? 7 : (uint16_t)(7000 + a->port % 8);
	a->scope_id = 0;
}

static void normalise_opt(struct nc_msg_req *q)
{
	static const int opts[][2] = {
	    {SOL_SOCKET, SO_REUSEADDR},   {SOL_SOCKET, SO_KEEPALIVE},
	    {SOL_SOCKET, SO_LINGER},      {SOL_SOCKET, SO_RCVBUF},
	    {SOL_SOCKET, SO_SNDBUF},      {SOL_SOCKET, SO_ERROR},
	    {IPPROTO_TCP, TCP_NODELAY},   {IPPROTO_TCP, TCP_KEEPIDLE},
	    {IPPROTO_TCP, TCP_KEEPINTVL}, {IPPROTO_TCP, TCP_KEEPCNT},
	    {IPPROTO_IPV6, IPV6_V6ONLY},  {SOL_SOCKET, SO_BROADCAST},
	};
	uint32_t i = (uint32_t)q->optname % (sizeof(opts) / sizeof(opts[0]));
	q->level = opts[i][0];
	q->optname = opts[i][1];
	q->optlen = q->optlen % 2 ? 8 : 4;
}

static void normalise(struct nc_msg_req *q)
{
	q->domain = q->domain & 1 ? AF_INET6 : AF_INET;
	q->type = q->type & 1 ? SOCK_DGRAM : SOCK_STREAM;
	q->sock = (int32_t)((uint32_t)q->sock % MAX_SOCKETS);
	q->arg = (int32_t)((uint32_t)q->arg % 4);
	normalise_addr(&q->addr);
	normalise_opt(q);
}

static void shape(struct nc_msg_req *q, uint32_t flags)
{
	if (!(flags & F_KEEP_HEADER)) {
		uint16_t type = (uint16_t)(q->hdr.type % (NC_MSG_TYPE_END + 1));
		nc_msg_init(&q->hdr, (enum nc_msg_type)type, q->hdr.id,
		            sizeof(*q));
	}
	if (flags & F_NORMALISE)
		normalise(q);
	if (!(flags & F_KEEP_CLIENT)) {
		q->client = CLIENT;
		q->client_gen = 1;
	}
	if (!(flags & F_KEEP_GEN) && q->sock >= 0 &&
	    (uint32_t)q->sock < MAX_SOCKETS)
		q->sock_gen = gens[q->sock];
}

static void check_reply(const void *req, size_t len,
                        const struct nc_msg_rep *rep, bool hang_up)
{
	struct nc_msg_hdr h;
	FUZZ_CHECK(hang_up == (len < sizeof(h)));
	if (hang_up)
		return;
	memcpy(&h, req, sizeof(h));
	FUZZ_CHECK(rep->hdr.magic == NC_MSG_MAGIC);
	FUZZ_CHECK(rep->hdr.version == NC_MSG_VERSION);
	FUZZ_CHECK(rep->hdr.size == sizeof(*rep));
	FUZZ_CHECK(rep->hdr.id == h.id && rep->hdr.type == h.type);
	if (nc_msg_check(req, len, sizeof(struct nc_msg_req)) != 0)
		FUZZ_CHECK(rep->result == -EPROTO);
	FUZZ_CHECK(rep->result <= 0 && rep->result > -4096);
	if (rep->result < 0) {
		FUZZ_CHECK(rep->sock == -1);
		return;
	}
	if (h.type != NC_MSG_SOCKET && h.type != NC_MSG_ACCEPT)
		return;
	FUZZ_CHECK(rep->sock >= 0 && (uint32_t)rep->sock < MAX_SOCKETS);
	FUZZ_CHECK(rep->sock_gen != 0);
	gens[rep->sock] = rep->sock_gen;
}

static void handle(const void *req, size_t len)
{
	struct nc_msg_rep rep;
	bool hang_up;
	nci_ctl_handle(ctl, req, len, &rep, &hang_up);
	check_reply(req, len, &rep, hang_up);
	settle();
}

static void run_record(struct fuzz_input *in)
{
	uint32_t ctl_word = fuzz_u32(in);
	switch (ctl_word & 3) {
	case K_RAW: {
		uint8_t raw[255];
		size_t n = fuzz_bytes(in, raw, (ctl_word >> 8) & 0xff);
		handle(raw, n);
		break;
	}
	case K_TIME: {
		struct nc_msg_req skip;
		fuzz_bytes(in, &skip, sizeof(skip));
		for (uint32_t i = 0; i <= ((ctl_word >> 8) & 0xf); i++) {
			clk.now_ms += 10;
			settle();
		}
		break;
	}
	default: {
		struct nc_msg_req q;
		memset(&q, 0, sizeof(q));
		fuzz_bytes(in, &q, sizeof(q));
		shape(&q, ctl_word);
		handle(&q, sizeof(q));
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	once();
	uint64_t fds_before = fuzz_open_fds();
	attach();
	struct fuzz_input in = {.p = data, .left = size};
	while (in.left > 0)
		run_record(&in);
	detach();
	FUZZ_CHECK(fuzz_open_fds() == fds_before);
	return 0;
}

/* -------------------------------------------------------------- seeds */

#define REQ(t, ...)                                                            \
	{                                                                      \
		K_REQUEST,                                                     \
		{                                                              \
			.hdr = {.type = (t)}, __VA_ARGS__                      \
		}                                                              \
	}
#define TIME(steps)                                                            \
	{                                                                      \
		K_TIME | ((steps) << 8),                                       \
		{                                                              \
			.sock = 0                                              \
		}                                                              \
	}
#define V4(ip, p)                                                              \
	{                                                                      \
		.family = AF_INET, .port = (p), .addr = ip                     \
	}
#define LOOP4                                                                  \
	{                                                                      \
		127, 0, 0, 1                                                   \
	}
#define LOOP6                                                                  \
	{                                                                      \
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1                 \
	}

static const struct rec seed_tcp[] = {
    REQ(NC_MSG_SOCKET, .domain = AF_INET, .type = SOCK_STREAM),
    REQ(NC_MSG_SETSOCKOPT, .sock = 0, .level = IPPROTO_TCP,
        .optname = TCP_NODELAY, .optlen = 4, .opt = {1}),
    REQ(NC_MSG_BIND, .sock = 0, .addr = V4(LOOP4, 7001)),
    REQ(NC_MSG_LISTEN, .sock = 0, .arg = 4),
    REQ(NC_MSG_SOCKET, .domain = AF_INET, .type = SOCK_STREAM),
    REQ(NC_MSG_CONNECT, .sock = 1, .addr = V4(LOOP4, 7001)),
    TIME(2),
    REQ(NC_MSG_ACCEPT, .sock = 0),
    REQ(NC_MSG_GETPEERNAME, .sock = 2),
    REQ(NC_MSG_SHUTDOWN, .sock = 1, .arg = SHUT_WR),
    REQ(NC_MSG_GETSOCKOPT, .sock = 1, .level = SOL_SOCKET, .optname = SO_ERROR),
    REQ(NC_MSG_CLOSE, .sock = 2),
    REQ(NC_MSG_CLOSE, .sock = 1),
    REQ(NC_MSG_CLOSE, .sock = 0),
};

static const struct rec seed_udp6[] = {
    REQ(NC_MSG_SOCKET, .domain = AF_INET6, .type = SOCK_DGRAM),
    REQ(NC_MSG_SETSOCKOPT, .sock = 0, .level = IPPROTO_IPV6,
        .optname = IPV6_V6ONLY, .optlen = 4, .opt = {1}),
    REQ(NC_MSG_BIND, .sock = 0,
        .addr = {.family = AF_INET6, .port = 7002, .addr = LOOP6}),
    REQ(NC_MSG_CONNECT, .sock = 0,
        .addr = {.family = AF_INET6, .port = 7, .addr = LOOP6}),
    REQ(NC_MSG_GETSOCKNAME, .sock = 0),
    REQ(NC_MSG_CONNECT, .sock = 0, .addr = {.family = AF_UNSPEC}),
    REQ(NC_MSG_CLOSE, .sock = 0),
};

static const struct rec seed_echo[] = {
    REQ(NC_MSG_SOCKET, .domain = AF_INET, .type = SOCK_STREAM),
    REQ(NC_MSG_CONNECT, .sock = 0, .addr = V4(LOOP4, 7)),
    TIME(1),
    REQ(NC_MSG_GETPEERNAME, .sock = 0),
    REQ(NC_MSG_SETSOCKOPT, .sock = 0, .level = SOL_SOCKET, .optname = SO_LINGER,
        .optlen = 8, .opt = {1, 0, 0, 0, 0}),
    REQ(NC_MSG_CLOSE, .sock = 0),
    REQ(NC_MSG_CLOSE, .sock = 0),
};

static const struct rec seed_errors[] = {
    REQ(NC_MSG_SOCKET, .domain = AF_INET, .type = SOCK_DGRAM),
    {K_REQUEST | F_KEEP_GEN,
     {.hdr = {.type = NC_MSG_BIND}, .sock = 0, .sock_gen = 9}},
    REQ(NC_MSG_ATTACH),
    {K_REQUEST | F_KEEP_HEADER, {.hdr = {.type = 99, .size = 96}}},
    REQ(NC_MSG_CLIENT_ADD),
    REQ(NC_MSG_CLIENT_REMOVE),
    REQ(NC_MSG_SOCKET, .domain = AF_INET, .type = SOCK_STREAM),
    REQ(NC_MSG_CORE_HELLO),
    REQ(NC_MSG_CLIENT_LIST),
    REQ(NC_MSG_SOCK_LIST, .sock = 0),
    REQ(NC_MSG_REATTACH),
    REQ(NC_MSG_CLIENT_ADD, .arg = 1),
};

static const struct rec seed_normalised[] = {
    {K_REQUEST | F_NORMALISE, {.hdr = {.type = NC_MSG_SOCKET}}},
    {K_REQUEST | F_NORMALISE, {.hdr = {.type = NC_MSG_CONNECT}}},
    {K_REQUEST | F_NORMALISE, {.hdr = {.type = NC_MSG_SETSOCKOPT}}},
    TIME(3),
    {K_REQUEST | F_NORMALISE, {.hdr = {.type = NC_MSG_CLOSE}}},
};

#define SEED(a)                                                                \
	{                                                                      \
		(const uint8_t *)(a), sizeof(a)                                \
	}

const struct fuzz_seed fuzz_seeds[] = {
    SEED(seed_tcp),    SEED(seed_udp6),       SEED(seed_echo),
    SEED(seed_errors), SEED(seed_normalised),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
