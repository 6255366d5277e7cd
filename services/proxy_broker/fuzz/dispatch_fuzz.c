/*
 * Fuzzes what the broker does with a client's bytes: nci_decide() (the
 * validator, quota, policy and rewriting) and nci_apply_reply() (the
 * socket table learning from the core), driven as a conversation: the
 * input is a small config choice, then a program of client messages, each
 * followed, if the broker would forward it, by a core reply the input
 * also chooses (including impossible ones: indexes out of range or in use,
 * odd results).
 *
 * Input: byte 0 picks the quotas (max_sockets 1-8, max_backlog 1-8,
 * max_pending 1-16); byte 1 bit 0 starts the client attached. Then steps:
 *   op byte even: a raw message: a length byte (0-200), then that many
 *      bytes (missing ones are zero)
 *   op byte odd: a structured message, 12 bytes: type, id, sock selector,
 *      gen selector, address selector, port (2), arg (signed), optlen,
 *      corruption bits, reply result selector, reply sock selector
 *
 * Properties, after every step:
 *   - fewer bytes than a header, and only then: disconnect;
 *   - a message nc_msg_check refuses is answered -EPROTO, nothing else;
 *   - every refusal is one of the documented errors;
 *   - a forwarded request comes from an attached client, carries its id
 *     and generation (never the client's own), names a socket the table
 *     has with the quoted generation (or is SOCKET), stays within the
 *     socket quota (SOCKET, ACCEPT), passes the connect or bind policy,
 *     carries a backlog in 1..max_backlog that fits the pending budget,
 *     and differs from the client's bytes only in the rewritten fields;
 *   - the table's counters always equal what its entries say, never
 *     exceed the quotas, and a reply that contradicts the table is
 *     reported as -EIO and changes nothing.
 */
#include "services/proxy_broker/broker_internal.h"
#include "tools/fuzz/fuzz.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

enum { CLIENT_ID = 7, STRUCT_STEP = 12 };

static const char *const rules = "allow_connect 10.1.0.0/16 443\n"
                                 "deny_connect 10.0.0.0/8\n"
                                 "deny_connect fd00::/8 1-1023\n"
                                 "deny_connect any 25\n"
                                 "deny_bind 8000-8099\n";

struct world {
	struct nc_broker_config cfg;
	struct nci_client cl;
};

static void setup(struct world *w, struct fuzz_input *in)
{
	nc_broker_config_default(&w->cfg);
	FUZZ_CHECK(nc_broker_config_parse(&w->cfg, rules, strlen(rules), NULL,
	                                  0) == 0);
	uint8_t q = fuzz_u8(in), flags = fuzz_u8(in);
	w->cfg.region.max_sockets = 1 + q % 8;
	w->cfg.max_backlog = 1 + (q >> 3) % 8;
	w->cfg.max_pending = 1 + (uint32_t)(q >> 5) * 2 + (flags >> 4);
	memset(&w->cl, 0, sizeof(w->cl));
	w->cl.state = NCI_CLIENT_NEW;
	if (flags & 1) {
		FUZZ_CHECK(nci_client_table_init(&w->cl, &w->cfg.region) == 0);
		w->cl.state = NCI_CLIENT_ATTACHED;
		w->cl.id = CLIENT_ID;
		w->cl.gen = 1;
	}
}

/* ---------------------------------------------------------------- checks */

static void check_table(const struct world *w)
{
	const struct nci_client *cl = &w->cl;
	if (cl->socks == NULL) {
		FUZZ_CHECK(cl->nsocks == 0 && cl->pending == 0);
		return;
	}
	uint32_t used = 0, pending = 0;
	for (uint32_t i = 0; i < cl->params.max_sockets; i++) {
		const struct nci_sock *s = &cl->socks[i];
		if (!s->used) {
			FUZZ_CHECK(s->state == 0 && s->backlog == 0);
			continue;
		}
		used++;
		if (s->state == NCI_SOCK_LISTENING) {
			FUZZ_CHECK(s->backlog >= 1 &&
			           s->backlog <= w->cfg.max_backlog);
			pending += s->backlog;
		}
	}
	FUZZ_CHECK(used == cl->nsocks);
	FUZZ_CHECK(used <= w->cfg.region.max_sockets);
	FUZZ_CHECK(pending == cl->pending);
	FUZZ_CHECK(pending <= w->cfg.max_pending);
}

static bool documented_refusal(int32_t e)
{
	switch (-e) {
	case EPROTO:
	case EISCONN:
	case EBADF:
	case EMFILE:
	case ENOBUFS:
	case EACCES:
	case EPERM:
	case EAFNOSUPPORT:
	case EINVAL:
		return true;
	default:
		return false;
	}
}

/* The forwarded request differs from the client's only where allowed. */
static void check_rewrite(const struct world *w, const struct nc_msg_req *in,
                          const struct nc_msg_req *out)
{
	struct nc_msg_req expect = *in;
	expect.client = w->cl.id;
	expect.client_gen = w->cl.gen;
	if (in->hdr.type == NC_MSG_SOCKET) {
		expect.sock = -1;
		expect.sock_gen = 0;
	}
	if (in->hdr.type == NC_MSG_LISTEN)
		expect.arg = out->arg;
	/* The client's id travels on as origin_id; what it wrote in the
	 * broker-only fields is wiped. */
	expect.origin_id = in->hdr.id;
	expect.pid = expect.uid = expect.gid = 0;
	expect.token = 0;
	FUZZ_CHECK(memcmp(&expect, out, sizeof(expect)) == 0);
}

static void check_listen(const struct world *w, const struct nc_msg_req *r)
{
	const struct nci_sock *s =
	    nci_client_sock(&w->cl, r->sock, r->sock_gen);
	uint32_t others = w->cl.pending;
	if (s->state == NCI_SOCK_LISTENING)
		others -= s->backlog;
	FUZZ_CHECK(r->arg >= 1 && (uint32_t)r->arg <= w->cfg.max_backlog);
	FUZZ_CHECK(others + (uint32_t)r->arg <= w->cfg.max_pending);
}

static void check_forward(const struct world *w, const struct nc_msg_req *in,
                          const struct nc_msg_req *r)
{
	FUZZ_CHECK(w->cl.state == NCI_CLIENT_ATTACHED);
	FUZZ_CHECK(r->client == CLIENT_ID && r->client_gen == 1);
	FUZZ_CHECK(r->hdr.type >= NC_MSG_SOCKET &&
	           r->hdr.type <= NC_MSG_GETPEERNAME);
	check_rewrite(w, in, r);
	bool new_sock =
	    r->hdr.type == NC_MSG_SOCKET || r->hdr.type == NC_MSG_ACCEPT;
	if (new_sock)
		FUZZ_CHECK(w->cl.nsocks < w->cfg.region.max_sockets);
	if (r->hdr.type == NC_MSG_SOCKET)
		return;
	FUZZ_CHECK(nci_client_sock(&w->cl, r->sock, r->sock_gen) != NULL);
	if (r->hdr.type == NC_MSG_CONNECT)
		FUZZ_CHECK(nc_broker_connect_allowed(&w->cfg, &r->addr) == 0);
	if (r->hdr.type == NC_MSG_BIND)
		FUZZ_CHECK(nc_broker_bind_allowed(&w->cfg, r->addr.port) == 0);
	if (r->hdr.type == NC_MSG_LISTEN)
		check_listen(w, r);
	if (r->hdr.type == NC_MSG_SETSOCKOPT ||
	    r->hdr.type == NC_MSG_GETSOCKOPT)
		FUZZ_CHECK(r->optlen <= NC_MSG_OPT_MAX);
}

static void check_decision(const struct world *w, const uint8_t *buf,
                           size_t len, const struct nci_decision *d)
{
	if (len < sizeof(struct nc_msg_hdr)) {
		FUZZ_CHECK(d->verdict == NCI_DISCONNECT);
		return;
	}
	FUZZ_CHECK(d->verdict != NCI_DISCONNECT);
	FUZZ_CHECK(memcmp(&d->hdr, buf, sizeof(d->hdr)) == 0);
	if (nc_msg_check(buf, len, sizeof(struct nc_msg_req)) != 0) {
		FUZZ_CHECK(d->verdict == NCI_REPLY && d->error == -EPROTO);
		return;
	}
	struct nc_msg_req in;
	memcpy(&in, buf, sizeof(in));
	switch (d->verdict) {
	case NCI_REPLY:
		FUZZ_CHECK(documented_refusal(d->error));
		break;
	case NCI_ATTACH:
		FUZZ_CHECK(w->cl.state == NCI_CLIENT_NEW &&
		           in.hdr.type == NC_MSG_ATTACH);
		break;
	case NCI_REATTACH:
		FUZZ_CHECK(w->cl.state == NCI_CLIENT_NEW &&
		           in.hdr.type == NC_MSG_REATTACH);
		break;
	case NCI_FORWARD:
		check_forward(w, &in, &d->req);
		break;
	default:
		FUZZ_CHECK(false);
	}
}

/* --------------------------------------------------------------- replies */

static int32_t pick_result(uint8_t sel)
{
	static const int32_t results[] = {
	    0, 0, 0, -EINPROGRESS, -EBADF, -EAGAIN, -ECONNRESET, 1};
	if ((sel & 15) < 8)
		return results[sel & 7];
	return -(int32_t)(sel >> 4) - 1;
}

static int32_t lowest_free(const struct nci_client *cl)
{
	for (uint32_t i = 0; i < cl->params.max_sockets; i++)
		if (!cl->socks[i].used)
			return (int32_t)i;
	return -1;
}

static void reply_and_apply(struct world *w, const struct nc_msg_req *req,
                            uint8_t result_sel, uint8_t sock_sel)
{
	struct nc_msg_rep rep;
	memset(&rep, 0, sizeof(rep));
	nc_msg_init(&rep.hdr, (enum nc_msg_type)req->hdr.type, req->hdr.id,
	            sizeof(rep));
	rep.result = pick_result(result_sel);
	rep.sock =
	    (sock_sel & 3) ? lowest_free(&w->cl) : (int32_t)(sock_sel >> 2) - 2;
	rep.sock_gen = 1u + (sock_sel >> 2);
	rep.addr.family = (result_sel & 0x80) ? AF_INET : 0;
	rep.addr.port = (uint16_t)(sock_sel * 257u);
	uint32_t before = w->cl.nsocks;
	bool valid_new = rep.sock >= 0 &&
	                 (uint32_t)rep.sock < w->cl.params.max_sockets &&
	                 !w->cl.socks[rep.sock].used;
	int32_t r = nci_apply_reply(&w->cl, req, &rep);
	bool new_sock = (req->hdr.type == NC_MSG_SOCKET ||
	                 req->hdr.type == NC_MSG_ACCEPT) &&
	                rep.result >= 0;
	if (new_sock && !valid_new) {
		FUZZ_CHECK(r == -EIO && w->cl.nsocks == before);
	} else if (new_sock) {
		FUZZ_CHECK(r == rep.result && w->cl.nsocks == before + 1);
		FUZZ_CHECK(w->cl.socks[rep.sock].gen == rep.sock_gen);
	} else {
		FUZZ_CHECK(r == rep.result);
	}
}

/* ----------------------------------------------------------------- steps */

static struct nc_msg_addr pick_addr(uint8_t sel, uint16_t port)
{
	struct nc_msg_addr a = {.family = AF_INET, .port = port};
	switch (sel % 8) {
	case 0: /* 10.1.2.3: allowed on 443 only */
		a.addr[0] = 10;
		a.addr[1] = 1;
		a.addr[2] = 2;
		a.addr[3] = 3;
		break;
	case 1: /* 10.9.9.9: denied */
		a.addr[0] = 10;
		a.addr[1] = a.addr[2] = a.addr[3] = 9;
		break;
	case 2: /* ::ffff:10.9.9.9: denied as IPv4 */
		a.family = AF_INET6;
		a.addr[10] = a.addr[11] = 0xff;
		a.addr[12] = 10;
		a.addr[13] = a.addr[14] = a.addr[15] = 9;
		break;
	case 3: /* fd00::1 */
		a.family = AF_INET6;
		a.addr[0] = 0xfd;
		a.addr[15] = 1;
		break;
	case 4:
		a.family = 0;
		break;
	case 5:
		a.family = (uint16_t)(sel >> 3);
		break;
	default: /* 192.0.2.x */
		a.addr[0] = 192;
		a.addr[2] = 2;
		a.addr[3] = sel;
		break;
	}
	return a;
}

/* A socket index and gen the table has, or near misses. */
static void pick_sock(const struct nci_client *cl, uint8_t ssel, uint8_t gsel,
                      struct nc_msg_req *r)
{
	uint32_t max = cl->socks ? cl->params.max_sockets : 1;
	r->sock = (int32_t)(ssel % (max + 2)) - 1;
	r->sock_gen = gsel;
	if ((gsel & 3) != 0 && cl->socks != NULL && r->sock >= 0 &&
	    (uint32_t)r->sock < max)
		r->sock_gen = cl->socks[r->sock].gen + ((gsel & 3) == 3);
}

static void corrupt(struct nc_msg_req *r, uint8_t bits, size_t *len)
{
	if (bits & 1)
		r->hdr.magic ^= 1u << (bits >> 5);
	if (bits & 2)
		r->hdr.version = bits >> 2;
	if (bits & 4)
		r->hdr.size ^= 1;
	if (bits & 8)
		*len -= 1 + (bits >> 4);
}

static void run_message(struct world *w, const uint8_t *buf, size_t len,
                        uint8_t result_sel, uint8_t sock_sel)
{
	struct nci_decision d;
	nci_decide(&w->cfg, &w->cl, buf, len, &d);
	check_decision(w, buf, len, &d);
	if (d.verdict == NCI_ATTACH) {
		FUZZ_CHECK(nci_client_table_init(&w->cl, &w->cfg.region) == 0);
		w->cl.state = NCI_CLIENT_ATTACHED;
		w->cl.id = CLIENT_ID;
		w->cl.gen = 1;
	} else if (d.verdict == NCI_FORWARD) {
		reply_and_apply(w, &d.req, result_sel, sock_sel);
	}
	check_table(w);
}

static void structured_step(struct world *w, struct fuzz_input *in)
{
	uint8_t b[STRUCT_STEP];
	memset(b, 0, sizeof(b));
	fuzz_bytes(in, b, sizeof(b));
	struct nc_msg_req r;
	memset(&r, 0, sizeof(r));
	nc_msg_init(&r.hdr, (enum nc_msg_type)(b[0] % (NC_MSG_TYPE_END + 1)),
	            b[1], sizeof(r));
	pick_sock(&w->cl, b[2], b[3], &r);
	r.addr = pick_addr(b[4], (uint16_t)(b[5] | b[6] << 8));
	r.arg = (int8_t)b[7];
	r.optlen = b[8] % 20;
	r.domain = AF_INET;
	r.type = SOCK_STREAM;
	r.client = 999; /* the client's forgery: must never go through */
	size_t len = sizeof(r);
	corrupt(&r, b[9], &len);
	run_message(w, (const uint8_t *)&r, len, b[10], b[11]);
}

static void raw_step(struct world *w, struct fuzz_input *in)
{
	uint8_t buf[200];
	memset(buf, 0, sizeof(buf));
	size_t len = fuzz_u8(in) % (sizeof(buf) + 1);
	fuzz_bytes(in, buf, len);
	uint8_t result_sel = fuzz_u8(in);
	run_message(w, buf, len, result_sel, fuzz_u8(in));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {.p = data, .left = size};
	struct world w;
	setup(&w, &in);
	for (int steps = 0; in.left > 0 && steps < 256; steps++) {
		if (fuzz_u8(&in) & 1)
			structured_step(&w, &in);
		else
			raw_step(&w, &in);
	}
	nci_client_table_fini(&w.cl);
	return 0;
}

/* ------------------------------------------------------------------ seeds */

/* Attached, max_sockets 4: socket, bind 8080, listen 200, accept x2,
 * connect to 10.1.2.3:443, close. Each step: op 1 + 12 bytes. */
static const uint8_t seed_session[] = {
    0x1b, 0x21,                                                    /* quotas */
    1,    NC_MSG_SOCKET,  1, 0, 0, 0, 0,    0,    0,   0, 0, 0, 1, /* socket */
    1,    NC_MSG_BIND,    2, 1, 1, 6, 0x90, 0x1f, 0,   0, 0, 0, 1,
    1,    NC_MSG_LISTEN,  3, 1, 1, 6, 0,    0,    200, 0, 0, 0, 1,
    1,    NC_MSG_ACCEPT,  4, 1, 1, 6, 0,    0,    0,   0, 0, 0, 1,
    1,    NC_MSG_ACCEPT,  5, 1, 1, 6, 0,    0,    0,   0, 0, 0, 1,
    1,    NC_MSG_CONNECT, 6, 1, 1, 0, 0xbb, 0x01, 0,   0, 0, 3, 0,
    1,    NC_MSG_CLOSE,   7, 1, 1, 0, 0,    0,    0,   0, 0, 0, 0,
};

/* Not attached: attach, then refusals (connect denied, bind 80). */
static const uint8_t seed_attach[] = {
    0x02, 0x00, 1, NC_MSG_ATTACH,  1, 0, 0, 0, 0,  0, 0, 0, 0,
    0,    0,    1, NC_MSG_SOCKET,  2, 0, 0, 0, 0,  0, 0, 0, 0,
    0,    1,    1, NC_MSG_CONNECT, 3, 1, 1, 1, 80, 0, 0, 0, 0,
    0,    0,    1, NC_MSG_CONNECT, 4, 1, 1, 2, 80, 0, 0, 0, 0,
    0,    0,    1, NC_MSG_BIND,    5, 1, 1, 6, 80, 0, 0, 0, 0,
    0,    0,    1, NC_MSG_ATTACH,  6, 0, 0, 0, 0,  0, 0, 0, 0,
    0,    0,
};

/* Raw bytes: short, empty, garbage header, corrupt structured ones. */
static const uint8_t seed_raw[] = {
    0x3f,
    0x01,
    0,
    3,
    1,
    2,
    3,
    0,
    0,
    0,
    16,
    'S',
    'M',
    'C',
    'N',
    1,
    0,
    2,
    0,
    9,
    0,
    0,
    0,
    96,
    0,
    0,
    0,
    1,
    NC_MSG_SOCKET,
    8,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x09,
    0,
    1,
    1,
    NC_MSG_SOCKET,
    9,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x06,
    0,
    1,
    1,
    NC_MSG_TYPE_END,
    10,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    1,
    NC_MSG_CLIENT_REMOVE,
    11,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
};

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_session),
    FUZZ_SEED(seed_attach),
    FUZZ_SEED(seed_raw),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
