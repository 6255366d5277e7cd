/*
 * Fuzzes libclient's reading of its region: a client with two sockets
 * (non-blocking, so nothing waits) over a region whose core side the input
 * plays, well or badly. The input interleaves what a core does (lend
 * buffers, enqueue received data, datagrams and end of stream, set socket
 * states, take what the client sent and returned) with what a broken core
 * could do (forged rx and free descriptors, impossible ring indices,
 * states with any bits, arbitrary bytes written anywhere after the
 * region's header), and the client's own calls (recv with MSG_PEEK /
 * MSG_WAITALL / MSG_TRUNC, recvfrom, send, sendto, poll, FIONREAD, close
 * and a new socket on the freed channel).
 *
 * Input: 1 setup byte (bit 0, 1: socket i is a datagram socket; bit 2:
 * the second is IPv6), then a program of op bytes (op % 19) and their
 * arguments, read with fuzz.h's readers (missing bytes read as 0).
 *
 * Properties:
 *   - no crash, no access outside the region or our buffers (ASan in the
 *     asan configuration, exact-size heap buffers for every call);
 *   - every call returns a count within what was asked (datagrams with
 *     MSG_TRUNC: within a buffer), or -1 with an errno in Linux's range,
 *     and an address length within the caller's buffer;
 *   - poll reports only poll(2)'s bits;
 *   - once a socket said EIO, it keeps saying EIO until it is closed;
 *   - while the input has only behaved like a core, stream bytes arrive
 *     exactly as they were enqueued, in order (a model queue);
 *   - each input releases every descriptor and region mapping it made.
 */
#include "libclient/testing/fake.h"
#include "tools/fuzz/fuzz.h"

#include <ck_ring.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>

enum { SOCKS = 2, MODEL = 8192, IO_MAX = 5000 };

struct sock_model {
	struct nc_sock *s;
	int type, domain;
	bool eio;         /* returned EIO: must stay broken */
	uint8_t q[MODEL]; /* stream bytes enqueued, not yet read */
	size_t q_len;
	bool q_valid; /* the model still describes the socket */
};

struct run {
	struct fake f;
	struct sock_model m[SOCKS];
	bool clean; /* nothing forged so far */
	struct fuzz_input in;
};

static void model_reset(struct sock_model *m)
{
	m->eio = false;
	m->q_len = 0;
	m->q_valid = true;
}

static bool open_sock(struct run *r, int i)
{
	struct sock_model *m = &r->m[i];
	uint32_t idx, gen;
	uint32_t phase = m->type == SOCK_STREAM ? NC_SS_CONNECTED : NC_SS_OPEN;
	if (fake_channel(&r->f, m->type, phase, &idx, &gen) != 0)
		return false;
	r->f.states[idx].events = NC_EV_WRITABLE | NC_EV_CONNECTED;
	pthread_mutex_lock(&r->f.client->ctl_lock);
	int err =
	    nci_sock_adopt(r->f.client, idx, gen, m->domain, m->type, &m->s);
	pthread_mutex_unlock(&r->f.client->ctl_lock);
	if (err)
		return false;
	m->s->nonblock = true;
	model_reset(m);
	return true;
}

static bool setup(struct run *r, uint8_t setup_byte)
{
	struct nc_client_params p;
	fake_params_small(&p);
	if (fake_init(&r->f, &p) != 0)
		return false;
	int memfd = dup(r->f.region.fd);
	int cb = dup(r->f.client_bell.fd);
	int kb = dup(r->f.core_bell.fd);
	if (nci_client_open(memfd, cb, kb, -1, 1, &p, &r->f.client) != 0)
		return false;
	for (int i = 0; i < SOCKS; i++) {
		r->m[i].type =
		    setup_byte & (1u << i) ? SOCK_DGRAM : SOCK_STREAM;
		r->m[i].domain =
		    i == 1 && (setup_byte & 4) ? AF_INET6 : AF_INET;
		if (!open_sock(r, i))
			return false;
	}
	r->clean = true;
	return true;
}

/* ----------------------------------------------------------- the core */

static void forged(struct run *r)
{
	r->clean = false;
	for (int i = 0; i < SOCKS; i++)
		r->m[i].q_valid = false;
}

static void op_rx_data(struct run *r, struct sock_model *m)
{
	uint8_t data[2048];
	size_t len = fuzz_u16(&r->in) % (sizeof(data) + 1);
	for (size_t k = 0; k < len; k++)
		data[k] = (uint8_t)(k * 31 + m->q_len);
	if (m->type == SOCK_DGRAM) {
		struct nc_dgram_hdr h = {.family = AF_INET, .port = 53};
		if (len > sizeof(data) - sizeof(h))
			len = sizeof(data) - sizeof(h);
		fake_rx_dgram(&r->f, m->s->idx, &h, data, len);
		return;
	}
	if (m->q_len + len > MODEL) {
		m->q_valid = false;
		return;
	}
	if (fake_rx_data(&r->f, m->s->idx, data, len) == 0) {
		memcpy(m->q + m->q_len, data, len);
		m->q_len += len;
	}
}

static void op_rx_dgram_forged_hdr(struct run *r, struct sock_model *m)
{
	struct nc_dgram_hdr h;
	fuzz_bytes(&r->in, &h, sizeof(h));
	size_t len = fuzz_u8(&r->in);
	uint8_t data[256] = {0};
	fake_rx_dgram(&r->f, m->s->idx, &h, data, len);
	if (m->type == SOCK_STREAM)
		m->q_valid = false; /* bytes the model did not enqueue */
	if (h.family != AF_INET && h.family != AF_INET6)
		forged(r);
}

/* An offset that is sometimes right, sometimes nearly, sometimes wild. */
static uint64_t some_offset(struct run *r)
{
	uint8_t how = fuzz_u8(&r->in);
	uint64_t buf = fuzz_u8(&r->in) % (r->f.p.buf_count + 2);
	uint64_t at = r->f.l.pool + buf * r->f.p.buf_size;
	switch (how % 4) {
	case 0:
		return at;
	case 1:
		return at + (uint64_t)(int8_t)fuzz_u8(&r->in);
	case 2:
		return fuzz_u32(&r->in);
	default:
		return fuzz_u64(&r->in);
	}
}

static void op_rx_raw(struct run *r, struct sock_model *m)
{
	struct nc_desc d = {.offset = some_offset(r)};
	d.length = fuzz_u8(&r->in) & 1 ? fuzz_u16(&r->in) : fuzz_u32(&r->in);
	d.flags = fuzz_u8(&r->in) & 3;
	d.aux = fuzz_u8(&r->in) & 1 ? (uint16_t)m->s->idx : fuzz_u16(&r->in);
	fake_rx_raw(&r->f, m->s->idx, &d);
	forged(r);
}

static void op_free_raw(struct run *r)
{
	struct nc_desc d = {.offset = some_offset(r),
	                    .length = fuzz_u32(&r->in)};
	pthread_mutex_lock(&r->f.lock);
	nc_ring_enqueue_batch(&r->f.free_ring, &d, 1);
	pthread_mutex_unlock(&r->f.lock);
	forged(r);
}

static void op_state_set(struct run *r, struct sock_model *m)
{
	uint32_t phase = NC_SS_OPEN + fuzz_u8(&r->in) % 6;
	uint32_t events = fuzz_u8(&r->in) & 0x7f;
	int32_t error = fuzz_u8(&r->in) & 1 ? 0 : fuzz_u16(&r->in) % 4096;
	fake_set_state(&r->f, m->s->idx, phase, events, error);
	r->f.states[m->s->idx].accept_queue = fuzz_u8(&r->in);
	m->q_valid = m->q_valid && phase == NC_SS_CONNECTED && error == 0;
}

static void op_state_scribble(struct run *r, struct sock_model *m)
{
	uint32_t *words = (uint32_t *)&r->f.states[m->s->idx];
	words[fuzz_u8(&r->in) % 16] = fuzz_u32(&r->in);
	forged(r);
}

/* One of the client's rings' shared indices, moved or set. */
static void op_index_scribble(struct run *r, struct sock_model *m)
{
	uint64_t rings[4] = {nc_client_rx_ring(&r->f.l, m->s->idx),
	                     nc_client_tx_ring(&r->f.l, m->s->idx),
	                     r->f.l.free_ring, r->f.l.done_ring};
	uint8_t which = fuzz_u8(&r->in);
	struct ck_ring *ix = nc_region_at(&r->f.region, rings[which % 4],
	                                  sizeof(struct ck_ring));
	unsigned int *p = which & 4 ? &ix->p_tail : &ix->c_head;
	if (which & 8)
		*p += (uint32_t)(int8_t)fuzz_u8(&r->in);
	else
		*p = fuzz_u32(&r->in);
	forged(r);
}

/* Any bytes anywhere after the header (the client never re-reads it). */
static void op_scribble(struct run *r)
{
	uint64_t size = r->f.region.size - 4096;
	uint64_t at = 4096 + fuzz_u32(&r->in) % size;
	uint8_t n = fuzz_u8(&r->in) % 17;
	uint8_t *p = nc_region_at(&r->f.region, at, 1);
	for (uint8_t k = 0; k < n && at + k < r->f.region.size; k++)
		p[k] = fuzz_u8(&r->in);
	forged(r);
}

static void op_flags_scribble(struct run *r)
{
	r->f.control->client_wants_wakeup = fuzz_u32(&r->in);
	r->f.control->core_wants_wakeup = fuzz_u32(&r->in);
}

/* --------------------------------------------------------- the client */

/* A call's result: a count, or -1 and an errno in range; and a socket
 * found broken before must have failed with EIO. */
static void check_errno(ssize_t n, struct sock_model *m)
{
	if (m->eio)
		FUZZ_CHECK(n == -1 && errno == EIO);
	if (n < 0)
		FUZZ_CHECK(n == -1 && errno > 0 && errno <= 4095);
	/* Broken = the library's own sticky verdict (an EIO the core
	 * merely reports as a socket's pending error does not count). */
	m->eio = m->s->broken || nci_client_error(m->s->c) != 0;
}

static void op_recv(struct run *r, struct sock_model *m)
{
	size_t len = fuzz_u16(&r->in) % IO_MAX;
	int flags = MSG_DONTWAIT;
	uint8_t f = fuzz_u8(&r->in);
	flags |= f & 1 ? MSG_PEEK : 0;
	flags |= f & 2 ? MSG_WAITALL : 0;
	flags |= f & 4 ? MSG_TRUNC : 0;
	uint8_t *buf = malloc(len ? len : 1);
	ssize_t n = nc_recv(m->s, buf, len, flags);
	check_errno(n, m);
	if (m->type == SOCK_DGRAM && (flags & MSG_TRUNC))
		FUZZ_CHECK(n <= (ssize_t)r->f.p.buf_size);
	else
		FUZZ_CHECK(n <= (ssize_t)len);
	if (n > 0 && m->type == SOCK_STREAM && m->q_valid && r->clean) {
		FUZZ_CHECK((size_t)n <= m->q_len);
		FUZZ_CHECK(memcmp(buf, m->q, (size_t)n) == 0);
		if (!(flags & MSG_PEEK)) {
			memmove(m->q, m->q + n, m->q_len - (size_t)n);
			m->q_len -= (size_t)n;
		}
	}
	free(buf);
}

static void op_recvfrom(struct run *r, struct sock_model *m)
{
	size_t len = fuzz_u8(&r->in);
	socklen_t alen = fuzz_u8(&r->in) % (sizeof(struct sockaddr_in6) + 4);
	uint8_t *buf = malloc(len ? len : 1);
	uint8_t *addr = malloc(alen ? alen : 1);
	socklen_t got = alen;
	ssize_t n = nc_recvfrom(m->s, buf, len, MSG_DONTWAIT,
	                        (struct sockaddr *)addr, &got);
	check_errno(n, m);
	FUZZ_CHECK(n <= (ssize_t)len);
	if (n >= 0)
		FUZZ_CHECK(got <= sizeof(struct sockaddr_in6));
	if (n > 0)
		m->q_valid = false; /* the stream model does not follow this */
	free(buf);
	free(addr);
}

static void op_send(struct run *r, struct sock_model *m)
{
	size_t len = fuzz_u16(&r->in) % IO_MAX;
	uint8_t *buf = calloc(1, len ? len : 1);
	ssize_t n;
	if (m->type == SOCK_DGRAM) {
		struct sockaddr_in6 to = {.sin6_family = (sa_family_t)m->domain,
		                          .sin6_port = htons(53)};
		n = nc_sendto(m->s, buf, len, 0, (struct sockaddr *)&to,
		              sizeof(to));
	} else {
		n = nc_send(m->s, buf, len, 0);
	}
	check_errno(n, m);
	FUZZ_CHECK(n <= (ssize_t)len);
	free(buf);
}

static void op_poll(struct run *r)
{
	struct nc_pollfd pfd[SOCKS];
	for (int i = 0; i < SOCKS; i++)
		pfd[i] = (struct nc_pollfd){.sock = r->m[i].s,
		                            .events = NC_POLLIN | NC_POLLOUT |
		                                      NC_POLLRDHUP};
	int n = nc_poll(r->f.client, pfd, SOCKS, 0);
	FUZZ_CHECK(n >= 0 && n <= SOCKS);
	for (int i = 0; i < SOCKS; i++) {
		short known = NC_POLLIN | NC_POLLOUT | NC_POLLRDHUP |
		              NC_POLLERR | NC_POLLHUP;
		FUZZ_CHECK((pfd[i].revents & ~known) == 0);
		if (r->m[i].eio)
			FUZZ_CHECK(pfd[i].revents & NC_POLLERR);
	}
}

static void op_fionread(struct sock_model *m)
{
	int n = -1;
	int err = nc_bytes_readable(m->s, &n);
	check_errno(err, m);
	if (err == 0)
		FUZZ_CHECK(n >= 0);
}

static void op_core_takes(struct run *r, struct sock_model *m)
{
	static uint8_t sink[65536];
	fake_tx_take(&r->f, m->s->idx, sink, sizeof(sink), NULL);
	fake_done_take(&r->f);
	fake_lend_free(&r->f, fuzz_u8(&r->in) % 8);
}

/* Close (no broker: CLOSE fails with EIO, the handle is released anyway
 * and gives back what the channel lent), then a new socket on the channel
 * the core frees. */
static void op_reopen(struct run *r, struct sock_model *m)
{
	uint32_t idx = m->s->idx;
	nc_close(m->s);
	m->s = NULL;
	pthread_mutex_lock(&r->f.lock);
	r->f.used[idx] = false;
	pthread_mutex_unlock(&r->f.lock);
	open_sock(r, (int)(m - r->m));
}

static void run_op(struct run *r, uint8_t op)
{
	struct sock_model *m = &r->m[fuzz_u8(&r->in) % SOCKS];
	if (m->s == NULL)
		return; /* a reopen found no channel */
	switch (op % 19) {
	case 0:
	case 1:
		op_rx_data(r, m);
		break;
	case 2:
		if (m->type == SOCK_STREAM)
			fake_rx_eof(&r->f, m->s->idx);
		break;
	case 3:
		op_rx_dgram_forged_hdr(r, m);
		break;
	case 4:
		op_rx_raw(r, m);
		break;
	case 5:
		op_free_raw(r);
		break;
	case 6:
		op_state_set(r, m);
		break;
	case 7:
		op_state_scribble(r, m);
		break;
	case 8:
		op_index_scribble(r, m);
		break;
	case 9:
		op_scribble(r);
		break;
	case 10:
		op_flags_scribble(r);
		break;
	case 11:
	case 12:
		op_recv(r, m);
		break;
	case 13:
		op_recvfrom(r, m);
		break;
	case 14:
		op_send(r, m);
		break;
	case 15:
		op_poll(r);
		break;
	case 16:
		op_fionread(m);
		break;
	case 17:
		op_core_takes(r, m);
		break;
	default:
		op_reopen(r, m);
		break;
	}
}

/* Mappings of client regions (memfd "netcore-client") in this process. */
static int region_mappings(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "re");
	FUZZ_CHECK(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, "netcore-client") != NULL;
	fclose(f);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run r;
	uint64_t fds = fuzz_open_fds();
	int maps = region_mappings();
	memset(&r, 0, sizeof(r));
	r.in = (struct fuzz_input){.p = data, .left = size};
	if (setup(&r, fuzz_u8(&r.in))) {
		while (r.in.left > 0)
			run_op(&r, fuzz_u8(&r.in));
		/* Closing returns everything; the client outlives nothing. */
		for (int i = 0; i < SOCKS; i++)
			nc_close(r.m[i].s);
		nc_client_detach(r.f.client);
		r.f.client = NULL;
	}
	fake_stop(&r.f);
	FUZZ_CHECK(fuzz_open_fds() == fds);
	FUZZ_CHECK(region_mappings() == maps);
	return 0;
}

/* ---------------------------------------------------------------- seeds */

/* Two streams: data, peek, read, poll, EOF, read to the end. */
static const uint8_t seed_stream[] = {
    0x00, 0,  0, 100, 0, 11, 0, 50, 0, 1,  12, 0, 60, 0,  0, 15, 0,  2,
    0,    11, 0, 0,   1, 0,  0, 16, 0, 14, 1,  0, 16, 17, 1, 3,  15, 0};
/* Datagrams on both, one IPv6: receive, truncate, send. */
static const uint8_t seed_dgram[] = {0x07, 0, 0,  20, 0,  0, 1,  30, 0,
                                     13,   0, 5,  16, 11, 1, 3,  0,  4,
                                     14,   1, 40, 0,  15, 0, 17, 0,  2};
/* A forged rx descriptor, then everything the client can do with it. */
static const uint8_t seed_forged[] = {
    0x00, 4, 0, 1, 200, 0x10, 0x00, 0xff, 0xff, 1, 0, 0, 11,
    0,    9, 0, 0, 15,  0,    16,   0,    14,   0, 9, 0};
/* Impossible ring index and a scribbled state. */
static const uint8_t seed_indices[] = {0x00, 8, 0,  0, 0xff, 0xff, 0xff, 0x7f,
                                       11,   0, 40, 0, 0,    7,    1,    2,
                                       9,    9, 9,  9, 15,   0};

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_stream),
    FUZZ_SEED(seed_dgram),
    FUZZ_SEED(seed_forged),
    FUZZ_SEED(seed_indices),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
