/*
 * A libclient server (issue 4's acceptance): a sandboxed program in an
 * empty network namespace listens through libclient on [::]:PORT (dual
 * stack), and kernel-side clients in the testbed's namespace connect to the
 * stack's addresses, alternating IPv4 (10.77.0.2) and IPv6 (fd77::2).
 *
 * 1. 1,000 sequential connections: each is accepted, the server checks the
 *    peer address accept() reports (::ffff:10.77.0.1 or fd77::1, and the
 *    kernel socket's own port, which the client sends), its own local
 *    address, and the 16 bytes the client sends; it answers 16 bytes the
 *    client checks; the client shuts down its side, the server sees end of
 *    stream and closes, the client sees end of stream (a FIN, not a RST).
 * 2. 200 concurrent connections, each moving 1 MiB each way at the same
 *    time, every byte checked against a per-connection stream on both
 *    sides, and end of stream exactly after the 1 MiB both ways. The
 *    kernel side is one thread on epoll over 200 non-blocking sockets; the
 *    libclient side is one thread on nc_poll over the listener and every
 *    accepted handle (non-blocking). Each side closes only once it has
 *    received everything, so the data checks never depend on how a close
 *    is delivered.
 *
 * The broker's default quota is 64 sockets per client; this test gives it
 * a config with max_sockets 512 and room for 256 pending connections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libclient/netcore.h"
#include "tests/integration/client_common.h"
#include "tests/testbed/testbed.h"

#define SEQ_PORT   6000
#define CONC_PORT  6001
#define SEQ_N      1000
#define CONC_N     200
#define CONC_BYTES (1024 * 1024)
#define STALL_S    30          /* no progress for this long: failed */
#define SEQ_S      240         /* the whole sequential phase */
#define CONC_S     240         /* the whole concurrent phase */
#define MAGIC      0x41434350u /* "ACCP" */
#define CHUNK      (64 * 1024)

/*
 * 512 channels (the socket quota) with 64-slot rings cost about 1 MiB of
 * rings; 2048 buffers of 16 KiB (32 MiB) give 200 busy connections about
 * ten buffers each. Backlog: 200 connections may wait at once.
 */
static const char broker_config[] = "max_sockets 512\n"
                                    "ring_slots 64\n"
                                    "buffer_count 2048\n"
                                    "buffer_size 16384\n"
                                    "max_backlog 256\n"
                                    "max_pending 1024\n";

static struct nc_testbed tb;
static char config_path[64];

/* What a kernel client sends first. */
struct hello {
	uint32_t magic;
	uint32_t index;  /* sequence number / connection id */
	uint16_t port;   /* the kernel socket's own port */
	uint16_t family; /* AF_INET or AF_INET6: which address it dialled */
	uint32_t check;  /* ~index */
};

static uint64_t seed_k2s(uint32_t id)
{
	return 0x6b320000u + id;
}

static uint64_t seed_s2k(uint32_t id)
{
	return 0x73326b00u + id;
}

static int family_of(uint32_t i)
{
	return i % 2 == 0 ? AF_INET : AF_INET6;
}

struct report {
	uint32_t accepted, verified; /* connections */
	uint32_t peak;               /* server: most handles open at once */
	uint64_t bytes_in, bytes_out;
	double secs;
	char problem[384];
};

static int setup(void **state)
{
	(void)state;
	config_path[0] = '\0';
	if (ct_write_temp(broker_config, config_path, sizeof(config_path)))
		return -1;
	if (nc_testbed_start_sockets(&tb, "clacc", 7, config_path) != 0)
		return -1;
	return nc_testbed_enter(&tb) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	nc_testbed_stop(&tb);
	if (config_path[0] != '\0')
		unlink(config_path);
	return 0;
}

static void note_fail(struct report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_fail(struct report *r, const char *fmt, ...)
{
	if (r->problem[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->problem, sizeof(r->problem), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------- the server (libclient) */

struct server_ctx {
	struct nc_client *c;
	struct nc_sock *listener;
	bool concurrent;
};

/* The address accept() must report for a kernel client. */
static bool peer_ok(const struct sockaddr *sa, socklen_t len, int family,
                    uint16_t port)
{
	return ct_addr_is(
	    sa, len, AF_INET6,
	    family == AF_INET ? "::ffff:" NC_TB_KERNEL4 : NC_TB_KERNEL6, port);
}

static bool hello_ok(const struct hello *h, uint32_t index)
{
	return h->magic == MAGIC && h->index == index && h->check == ~index &&
	       h->family == family_of(index);
}

static int s_send_all(struct nc_sock *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = nc_send(s, p, len, 0);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void s_timeouts(struct nc_sock *s, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};
	nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int s_sequential_one(struct nc_sock *l, uint32_t i, struct report *r)
{
	struct sockaddr_storage peer, me;
	socklen_t plen = sizeof(peer), mlen = sizeof(me);
	struct nc_sock *s;
	if (nc_accept(l, (struct sockaddr *)&peer, &plen, &s) != 0) {
		note_fail(r, "server: accept #%u: %s", i, strerror(errno));
		return -1;
	}
	r->accepted++;
	s_timeouts(s, STALL_S);
	int rc = -1;
	struct hello h;
	char text[80];
	ssize_t n = nc_recv(s, &h, sizeof(h), MSG_WAITALL);
	if (n != (ssize_t)sizeof(h)) {
		note_fail(r, "server: #%u: read %zd of the %zu-byte hello: %s",
		          i, n, sizeof(h), n < 0 ? strerror(errno) : "short");
		goto out;
	}
	if (!hello_ok(&h, i)) {
		note_fail(r, "server: #%u: wrong hello (index %u, family %u)",
		          i, h.index, h.family);
		goto out;
	}
	if (!peer_ok((struct sockaddr *)&peer, plen, h.family, h.port)) {
		ct_addr_str((struct sockaddr *)&peer, text, sizeof(text));
		note_fail(r,
		          "server: #%u: accept reported peer %s (len %u), "
		          "the client is %s port %u",
		          i, text, (unsigned)plen,
		          h.family == AF_INET ? "::ffff:" NC_TB_KERNEL4
		                              : NC_TB_KERNEL6,
		          h.port);
		goto out;
	}
	if (nc_getsockname(s, (struct sockaddr *)&me, &mlen) != 0 ||
	    !ct_addr_is((struct sockaddr *)&me, mlen, AF_INET6,
	                h.family == AF_INET ? "::ffff:" NC_TB_STACK4
	                                    : NC_TB_STACK6,
	                SEQ_PORT)) {
		ct_addr_str((struct sockaddr *)&me, text, sizeof(text));
		note_fail(r, "server: #%u: local address %s", i, text);
		goto out;
	}
	uint8_t reply[sizeof(h)];
	memcpy(reply, &h, sizeof(h));
	for (size_t k = 0; k < sizeof(reply); k++)
		reply[k] ^= 0xa5;
	if (s_send_all(s, reply, sizeof(reply)) != 0) {
		note_fail(r, "server: #%u: send: %s", i, strerror(errno));
		goto out;
	}
	uint8_t extra;
	n = nc_recv(s, &extra, 1, 0);
	if (n != 0) {
		note_fail(r,
		          "server: #%u: expected end of stream, got %zd (%s)",
		          i, n, n < 0 ? strerror(errno) : "data");
		goto out;
	}
	r->verified++;
	rc = 0;
out:
	if (nc_close(s) != 0 && rc == 0) {
		note_fail(r, "server: #%u: close: %s", i, strerror(errno));
		rc = -1;
	}
	return rc;
}

static void s_sequential(struct nc_sock *l, struct report *r)
{
	s_timeouts(l, STALL_S);
	double start = ct_now_s();
	int64_t deadline = ct_now_ms() + SEQ_S * 1000;
	for (uint32_t i = 0; i < SEQ_N; i++) {
		if (ct_now_ms() > deadline) {
			note_fail(r, "server: out of time after %u", i);
			break;
		}
		if (s_sequential_one(l, i, r) != 0)
			break;
	}
	r->secs = ct_now_s() - start;
}

struct sconn {
	struct nc_sock *s;
	struct sockaddr_storage peer;
	socklen_t plen;
	struct hello h;
	uint32_t hello_got;
	uint64_t in, out;
	bool eof, wr_shut, closed;
};

/* Reads what is there; -1 on a failure (recorded). */
static int s_conn_read(struct sconn *k, uint8_t *buf, struct report *r,
                       bool *seen, uint32_t slot)
{
	for (;;) {
		ssize_t n = nc_recv(k->s, buf, CHUNK, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			note_fail(r, "server: conn %u: recv: %s", slot,
			          strerror(errno));
			return -1;
		}
		if (n == 0) {
			if (k->hello_got < sizeof(k->h) ||
			    k->in != CONC_BYTES) {
				note_fail(
				    r,
				    "server: conn %u: end of stream after "
				    "%llu bytes",
				    slot, (unsigned long long)k->in);
				return -1;
			}
			k->eof = true;
			return 0;
		}
		uint8_t *p = buf;
		size_t len = (size_t)n;
		if (k->hello_got < sizeof(k->h)) {
			size_t want = sizeof(k->h) - k->hello_got;
			size_t take = len < want ? len : want;
			memcpy((uint8_t *)&k->h + k->hello_got, p, take);
			k->hello_got += (uint32_t)take;
			p += take;
			len -= take;
			if (k->hello_got == sizeof(k->h)) {
				uint32_t id = k->h.index;
				if (id >= CONC_N || !hello_ok(&k->h, id) ||
				    seen[id]) {
					note_fail(r,
					          "server: conn %u: bad hello "
					          "(id %u)",
					          slot, id);
					return -1;
				}
				seen[id] = true;
				if (!peer_ok((struct sockaddr *)&k->peer,
				             k->plen, k->h.family, k->h.port)) {
					char text[80];
					ct_addr_str((struct sockaddr *)&k->peer,
					            text, sizeof(text));
					note_fail(
					    r,
					    "server: conn id %u: accept "
					    "reported peer %s, the client "
					    "has port %u",
					    id, text, k->h.port);
					return -1;
				}
			}
		}
		if (len == 0)
			continue;
		if (k->in + len > CONC_BYTES) {
			note_fail(r, "server: conn id %u: more than %u bytes",
			          k->h.index, CONC_BYTES);
			return -1;
		}
		size_t bad =
		    ct_pattern_check(seed_k2s(k->h.index), k->in, p, len);
		if (bad != len) {
			note_fail(r,
			          "server: conn id %u: wrong byte at offset "
			          "%llu",
			          k->h.index,
			          (unsigned long long)(k->in + bad));
			return -1;
		}
		k->in += len;
		r->bytes_in += len;
	}
}

static int s_conn_write(struct sconn *k, uint8_t *buf, struct report *r)
{
	while (k->out < CONC_BYTES) {
		size_t n = CONC_BYTES - k->out < CHUNK
		               ? (size_t)(CONC_BYTES - k->out)
		               : CHUNK;
		ct_pattern(seed_s2k(k->h.index), k->out, buf, n);
		ssize_t sent = nc_send(k->s, buf, n, MSG_DONTWAIT);
		if (sent < 0) {
			if (errno == EAGAIN)
				return 0;
			note_fail(r, "server: conn id %u: send: %s", k->h.index,
			          strerror(errno));
			return -1;
		}
		k->out += (uint64_t)sent;
		r->bytes_out += (uint64_t)sent;
	}
	if (!k->wr_shut) {
		if (nc_shutdown(k->s, SHUT_WR) != 0) {
			note_fail(r, "server: conn id %u: shutdown: %s",
			          k->h.index, strerror(errno));
			return -1;
		}
		k->wr_shut = true;
	}
	return 0;
}

static void s_concurrent(struct nc_client *c, struct nc_sock *l,
                         struct report *r)
{
	static struct sconn conns[CONC_N];
	static struct nc_pollfd pfd[CONC_N + 1];
	static bool seen[CONC_N];
	uint8_t *buf = malloc(CHUNK);
	if (buf == NULL || nc_set_nonblocking(l, 1) != 0) {
		note_fail(r, "server: setup: %s", strerror(errno));
		free(buf);
		return;
	}
	uint32_t n_conns = 0, done = 0;
	double start = ct_now_s();
	int64_t deadline = ct_now_ms() + CONC_S * 1000;
	int64_t last_progress = ct_now_ms();
	uint64_t last_bytes = 0;
	while (done < CONC_N && r->problem[0] == '\0') {
		int64_t now = ct_now_ms();
		if (r->bytes_in + r->bytes_out + r->accepted != last_bytes) {
			last_bytes = r->bytes_in + r->bytes_out + r->accepted;
			last_progress = now;
		}
		if (now > deadline || now - last_progress > STALL_S * 1000) {
			note_fail(r,
			          "server: %s: %u accepted, %u done, %llu in, "
			          "%llu out",
			          now > deadline ? "out of time" : "stalled",
			          n_conns, done,
			          (unsigned long long)r->bytes_in,
			          (unsigned long long)r->bytes_out);
			break;
		}
		pfd[0] = (struct nc_pollfd){.sock = l, .events = NC_POLLIN};
		for (uint32_t k = 0; k < n_conns; k++) {
			struct sconn *x = &conns[k];
			short ev = 0;
			if (!x->closed && !x->eof)
				ev |= NC_POLLIN;
			if (!x->closed && x->hello_got == sizeof(x->h) &&
			    !x->wr_shut)
				ev |= NC_POLLOUT;
			pfd[k + 1] = (struct nc_pollfd){
			    .sock = x->closed ? NULL : x->s, .events = ev};
		}
		int n = nc_poll(c, pfd, n_conns + 1, 1000);
		if (n < 0) {
			note_fail(r, "server: nc_poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & NC_POLLIN) {
			for (;;) {
				struct sconn x = {.plen = sizeof(x.peer)};
				if (nc_accept4(l, (struct sockaddr *)&x.peer,
				               &x.plen, SOCK_NONBLOCK,
				               &x.s) != 0) {
					if (errno != EAGAIN)
						note_fail(r,
						          "server: accept: %s",
						          strerror(errno));
					break;
				}
				if (n_conns == CONC_N) {
					note_fail(r,
					          "server: connection %u: more "
					          "than expected",
					          n_conns + 1);
					nc_close(x.s);
					break;
				}
				conns[n_conns++] = x;
				r->accepted++;
				if (n_conns - done > r->peak)
					r->peak = n_conns - done;
			}
		}
		for (uint32_t k = 0; k < n_conns && r->problem[0] == '\0';
		     k++) {
			struct sconn *x = &conns[k];
			short rev = pfd[k + 1].revents;
			if (x->closed || rev == 0)
				continue;
			if (rev & NC_POLLNVAL) {
				note_fail(r, "server: conn %u: POLLNVAL", k);
				break;
			}
			if ((rev & (NC_POLLIN | NC_POLLHUP | NC_POLLERR)) &&
			    !x->eof && s_conn_read(x, buf, r, seen, k) != 0)
				break;
			if (x->hello_got == sizeof(x->h) && !x->wr_shut &&
			    (rev & (NC_POLLOUT | NC_POLLERR)) &&
			    s_conn_write(x, buf, r) != 0)
				break;
			if (x->eof && x->wr_shut) {
				if (nc_close(x->s) != 0) {
					note_fail(r,
					          "server: conn id %u: close: "
					          "%s",
					          x->h.index, strerror(errno));
					break;
				}
				x->closed = true;
				r->verified++;
				done++;
			}
		}
	}
	r->secs = ct_now_s() - start;
	for (uint32_t k = 0; k < n_conns; k++)
		if (!conns[k].closed)
			nc_close(conns[k].s);
	free(buf);
}

static int server_main(void *arg, int report_fd)
{
	const struct server_ctx *ctx = arg;
	static struct report r;
	memset(&r, 0, sizeof(r));
	struct nc_client *c = NULL;
	struct nc_sock *l = NULL;
	uint16_t port = ctx->concurrent ? CONC_PORT : SEQ_PORT;
	struct sockaddr_storage any;
	socklen_t alen = ct_sockaddr(AF_INET6, "::", port, &any);
	bool listening = false;
	if (nc_client_attach(tb.broker_socket, &c) != 0) {
		note_fail(&r, "server: attach: %s", strerror(errno));
	} else if (nc_socket(c, AF_INET6, SOCK_STREAM, 0, &l) != 0) {
		note_fail(&r, "server: socket: %s", strerror(errno));
	} else if (nc_bind(l, (struct sockaddr *)&any, alen) != 0) {
		note_fail(&r, "server: bind [::]:%u: %s", port,
		          strerror(errno));
	} else if (nc_listen(l, 256) != 0) {
		note_fail(&r, "server: listen: %s", strerror(errno));
	} else if (ct_write_full(report_fd, "R", 1) != 0) {
		note_fail(&r, "server: cannot say it is ready");
	} else {
		listening = true;
		if (ctx->concurrent)
			s_concurrent(c, l, &r);
		else
			s_sequential(l, &r);
	}
	if (l != NULL && nc_close(l) != 0)
		note_fail(&r, "server: closing the listener: %s",
		          strerror(errno));
	if (c != NULL && nc_client_detach(c) != 0)
		note_fail(&r, "server: detach: %s", strerror(errno));
	/* The pipe carries 'R' once listening (or 'F' for a server that
	 * never got there), then this report. */
	if (!listening && ct_write_full(report_fd, "F", 1) != 0)
		return 1;
	int err = ct_write_full(report_fd, &r, sizeof(r));
	return err == 0 && r.problem[0] == '\0' ? 0 : 1;
}

/* ------------------------------------------------ the clients (kernel) */

static int k_connect(uint32_t i, uint16_t port, bool nonblock)
{
	int family = family_of(i);
	int fd = socket(
	    family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
	    0);
	if (fd < 0)
		return -errno;
	if (!nonblock)
		ct_set_timeouts(fd, STALL_S);
	struct sockaddr_storage to;
	socklen_t len = ct_sockaddr(
	    family, family == AF_INET ? NC_TB_STACK4 : NC_TB_STACK6, port, &to);
	if (connect(fd, (struct sockaddr *)&to, len) != 0 &&
	    !(nonblock && errno == EINPROGRESS)) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage me;
	socklen_t len = sizeof(me);
	if (getsockname(fd, (struct sockaddr *)&me, &len) != 0)
		return 0;
	return ct_addr_port((struct sockaddr *)&me);
}

static struct hello hello_for(uint32_t i, int fd)
{
	return (struct hello){.magic = MAGIC,
	                      .index = i,
	                      .port = local_port(fd),
	                      .family = (uint16_t)family_of(i),
	                      .check = ~i};
}

static int k_sequential_one(uint32_t i, struct report *r)
{
	int fd = k_connect(i, SEQ_PORT, false);
	if (fd < 0) {
		note_fail(r, "client #%u (%s): connect: %s", i,
		          family_of(i) == AF_INET ? "IPv4" : "IPv6",
		          strerror(-fd));
		return -1;
	}
	r->accepted++;
	int rc = -1;
	struct hello h = hello_for(i, fd);
	uint8_t want[sizeof(h)], got[sizeof(h)];
	memcpy(want, &h, sizeof(h));
	for (size_t k = 0; k < sizeof(want); k++)
		want[k] ^= 0xa5;
	if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h)) {
		note_fail(r, "client #%u: send: %s", i, strerror(errno));
		goto out;
	}
	int err =
	    ct_read_full(fd, got, sizeof(got), ct_now_ms() + STALL_S * 1000);
	if (err) {
		note_fail(r, "client #%u: reading the reply: %s", i,
		          strerror(-err));
		goto out;
	}
	if (memcmp(got, want, sizeof(want)) != 0) {
		note_fail(r, "client #%u: wrong reply", i);
		goto out;
	}
	if (shutdown(fd, SHUT_WR) != 0) {
		note_fail(r, "client #%u: shutdown: %s", i, strerror(errno));
		goto out;
	}
	ssize_t n = recv(fd, got, 1, 0);
	if (n != 0) {
		note_fail(r,
		          "client #%u: expected the server's FIN, got %zd (%s)",
		          i, n, n < 0 ? strerror(errno) : "data");
		goto out;
	}
	r->verified++;
	rc = 0;
out:
	close(fd);
	return rc;
}

struct kconn {
	int fd;
	bool connected, eof, closed;
	struct hello h;
	uint64_t out; /* hello included */
	uint64_t in;
};

static int k_conn_read(struct kconn *k, uint32_t id, uint8_t *buf,
                       struct report *r)
{
	for (;;) {
		ssize_t n = recv(k->fd, buf, CHUNK, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			note_fail(r, "client %u: recv after %llu bytes: %s", id,
			          (unsigned long long)k->in, strerror(errno));
			return -1;
		}
		if (n == 0) {
			if (k->in != CONC_BYTES) {
				note_fail(r,
				          "client %u: end of stream after %llu "
				          "bytes",
				          id, (unsigned long long)k->in);
				return -1;
			}
			k->eof = true;
			return 0;
		}
		if (k->in + (uint64_t)n > CONC_BYTES) {
			note_fail(r, "client %u: more than %u bytes", id,
			          CONC_BYTES);
			return -1;
		}
		size_t bad =
		    ct_pattern_check(seed_s2k(id), k->in, buf, (size_t)n);
		if (bad != (size_t)n) {
			note_fail(r, "client %u: wrong byte at offset %llu", id,
			          (unsigned long long)(k->in + bad));
			return -1;
		}
		k->in += (uint64_t)n;
		r->bytes_in += (uint64_t)n;
	}
}

static int k_conn_write(struct kconn *k, uint32_t id, uint8_t *buf,
                        struct report *r)
{
	const uint64_t total = sizeof(k->h) + CONC_BYTES;
	while (k->out < total) {
		size_t n;
		const uint8_t *p;
		if (k->out < sizeof(k->h)) {
			p = (const uint8_t *)&k->h + k->out;
			n = sizeof(k->h) - (size_t)k->out;
		} else {
			uint64_t off = k->out - sizeof(k->h);
			n = total - k->out < CHUNK ? (size_t)(total - k->out)
			                           : CHUNK;
			ct_pattern(seed_k2s(id), off, buf, n);
			p = buf;
		}
		ssize_t sent = send(k->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (sent < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			note_fail(r, "client %u: send after %llu bytes: %s", id,
			          (unsigned long long)k->out, strerror(errno));
			return -1;
		}
		k->out += (uint64_t)sent;
		if (k->out > sizeof(k->h))
			r->bytes_out += (uint64_t)sent;
	}
	return 0;
}

static void k_concurrent(const struct ct_child *ch, struct report *r)
{
	static struct kconn conns[CONC_N];
	uint8_t *buf = malloc(CHUNK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (buf == NULL || ep < 0) {
		note_fail(r, "client: setup: %s", strerror(errno));
		free(buf);
		if (ep >= 0)
			close(ep);
		return;
	}
	struct epoll_event pid_ev = {.events = EPOLLIN, .data.u32 = CONC_N};
	epoll_ctl(ep, EPOLL_CTL_ADD, ch->pidfd, &pid_ev);
	double start = ct_now_s();
	for (uint32_t i = 0; i < CONC_N; i++) {
		conns[i] = (struct kconn){.fd = k_connect(i, CONC_PORT, true)};
		if (conns[i].fd < 0) {
			note_fail(r, "client %u: connect: %s", i,
			          strerror(-conns[i].fd));
			conns[i].closed = true;
			break;
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
		                         .data.u32 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
	}
	uint32_t done = 0;
	int64_t deadline = ct_now_ms() + CONC_S * 1000;
	int64_t last_progress = ct_now_ms();
	uint64_t last_bytes = 0;
	while (done < CONC_N && r->problem[0] == '\0') {
		int64_t now = ct_now_ms();
		if (r->bytes_in + r->bytes_out + r->accepted != last_bytes) {
			last_bytes = r->bytes_in + r->bytes_out + r->accepted;
			last_progress = now;
		}
		if (now > deadline || now - last_progress > STALL_S * 1000) {
			uint32_t eofs = 0, sent = 0;
			for (uint32_t i = 0; i < CONC_N; i++) {
				eofs += conns[i].eof;
				sent += conns[i].out ==
				        sizeof(conns[i].h) + CONC_BYTES;
			}
			note_fail(r,
			          "client: %s: %u connected, %u done, %u sent "
			          "all, %u got all, %llu in, %llu out",
			          now > deadline ? "out of time" : "stalled",
			          r->accepted, done, sent, eofs,
			          (unsigned long long)r->bytes_in,
			          (unsigned long long)r->bytes_out);
			break;
		}
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 1000);
		if (n < 0 && errno != EINTR) {
			note_fail(r, "client: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int e = 0; e < n && r->problem[0] == '\0'; e++) {
			uint32_t i = evs[e].data.u32;
			if (i == CONC_N) {
				note_fail(r,
				          "client: the server process exited");
				break;
			}
			struct kconn *k = &conns[i];
			if (k->closed)
				continue;
			if (!k->connected) {
				int err = 0;
				socklen_t el = sizeof(err);
				getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err,
				           &el);
				if (err != 0) {
					note_fail(r, "client %u: connect: %s",
					          i, strerror(err));
					break;
				}
				if (!(evs[e].events & EPOLLOUT))
					continue;
				k->connected = true;
				k->h = hello_for(i, k->fd);
				r->accepted++;
			}
			if ((evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    !k->eof && k_conn_read(k, i, buf, r) != 0)
				break;
			if (k->out < sizeof(k->h) + CONC_BYTES &&
			    (evs[e].events & (EPOLLOUT | EPOLLERR))) {
				if (k_conn_write(k, i, buf, r) != 0)
					break;
				if (k->out == sizeof(k->h) + CONC_BYTES) {
					struct epoll_event ev = {
					    .events = EPOLLIN, .data.u32 = i};
					epoll_ctl(ep, EPOLL_CTL_MOD, k->fd,
					          &ev);
				}
			}
			/* Everything both ways: close (no data unread, so
			 * a FIN). */
			if (k->eof && k->out == sizeof(k->h) + CONC_BYTES) {
				close(k->fd);
				k->closed = true;
				r->verified++;
				done++;
			}
		}
	}
	r->secs = ct_now_s() - start;
	for (uint32_t i = 0; i < CONC_N; i++)
		if (!conns[i].closed && conns[i].fd >= 0)
			close(conns[i].fd);
	close(ep);
	free(buf);
}

/* ------------------------------------------------------------ the tests */

/* Starts the server child and waits for its listener. */
static int start_server(struct ct_child *ch, struct server_ctx *ctx, char *why,
                        size_t cap)
{
	int err = ct_child_start(ch, server_main, ctx);
	if (err) {
		snprintf(why, cap, "fork: %s", strerror(-err));
		return -1;
	}
	char ready = 0;
	err = ct_read_full(ch->report_fd, &ready, 1,
	                   ct_now_ms() + STALL_S * 1000);
	if (err == 0 && ready == 'R')
		return 0;
	if (err == 0 && ready == 'F') {
		/* It failed before listening; its report says why. */
		struct report r;
		if (ct_read_full(ch->report_fd, &r, sizeof(r),
		                 ct_now_ms() + 5000) == 0)
			snprintf(why, cap, "%s", r.problem);
		return -1;
	}
	snprintf(why, cap, "the server never listened (%s)",
	         err ? strerror(-err) : "bad byte");
	return -1;
}

/* Collects the server's verdict after the kernel side is done. */
static int finish_server(struct ct_child *ch, int started,
                         struct report *server, bool kernel_ok)
{
	memset(server, 0, sizeof(*server));
	int status = ct_child_finish(
	    ch, ct_now_ms() + (kernel_ok ? 30000 : STALL_S * 1000 + 10000));
	int err = started != 0
	              ? 0
	              : ct_read_full(ch->report_fd, server, sizeof(*server),
	                             ct_now_ms() + 1000);
	if (err)
		snprintf(server->problem, sizeof(server->problem),
		         "server: no report (%s), exit %d", strerror(-err),
		         status);
	ct_child_cleanup(ch);
	return status;
}

static void thousand_sequential_connections(void **state)
{
	(void)state;
	struct server_ctx ctx = {.concurrent = false};
	struct ct_child ch;
	static struct report kernel, server;
	memset(&kernel, 0, sizeof(kernel));
	char why[384] = "";
	int started = start_server(&ch, &ctx, why, sizeof(why));
	double start = ct_now_s();
	int64_t deadline = ct_now_ms() + SEQ_S * 1000;
	for (uint32_t i = 0; started == 0 && i < SEQ_N; i++) {
		if (ct_now_ms() > deadline) {
			note_fail(&kernel, "client: out of time after %u", i);
			break;
		}
		if (k_sequential_one(i, &kernel) != 0)
			break;
	}
	kernel.secs = ct_now_s() - start;
	int status =
	    finish_server(&ch, started, &server, kernel.problem[0] == '\0');
	printf("sequential: kernel side %u connected, %u verified; "
	       "server %u accepted, %u verified; %.2f s (%.0f "
	       "connections/s); server exit %d\n",
	       kernel.accepted, kernel.verified, server.accepted,
	       server.verified, kernel.secs,
	       kernel.secs > 0 ? kernel.verified / kernel.secs : 0.0, status);
	if (why[0])
		printf("%s\n", why);
	if (kernel.problem[0])
		printf("%s\n", kernel.problem);
	if (server.problem[0])
		printf("%s\n", server.problem);
	assert_int_equal(started, 0);
	assert_int_equal(kernel.verified, SEQ_N);
	assert_int_equal(server.accepted, SEQ_N);
	assert_int_equal(server.verified, SEQ_N);
	assert_int_equal(status, 0);
}

static void two_hundred_concurrent_connections_1_mib_each_way(void **state)
{
	(void)state;
	struct server_ctx ctx = {.concurrent = true};
	struct ct_child ch;
	static struct report kernel, server;
	memset(&kernel, 0, sizeof(kernel));
	char why[384] = "";
	int started = start_server(&ch, &ctx, why, sizeof(why));
	if (started == 0)
		k_concurrent(&ch, &kernel);
	int status =
	    finish_server(&ch, started, &server, kernel.problem[0] == '\0');
	double mib = (double)(kernel.bytes_in + kernel.bytes_out) / CT_MIB;
	printf("concurrent: kernel side %u connected, %u verified, %llu "
	       "bytes in, %llu out; server %u accepted, %u verified, %llu "
	       "in, %llu out, at most %u open at once; %.2f s (%.1f MiB/s "
	       "both ways together); server exit %d\n",
	       kernel.accepted, kernel.verified,
	       (unsigned long long)kernel.bytes_in,
	       (unsigned long long)kernel.bytes_out, server.accepted,
	       server.verified, (unsigned long long)server.bytes_in,
	       (unsigned long long)server.bytes_out, server.peak, kernel.secs,
	       kernel.secs > 0 ? mib / kernel.secs : 0.0, status);
	if (why[0])
		printf("%s\n", why);
	if (kernel.problem[0])
		printf("%s\n", kernel.problem);
	if (server.problem[0])
		printf("%s\n", server.problem);
	assert_int_equal(started, 0);
	assert_int_equal(kernel.verified, CONC_N);
	assert_int_equal(kernel.bytes_in, (uint64_t)CONC_N * CONC_BYTES);
	assert_int_equal(kernel.bytes_out, (uint64_t)CONC_N * CONC_BYTES);
	assert_int_equal(server.accepted, CONC_N);
	assert_int_equal(server.verified, CONC_N);
	assert_int_equal(server.bytes_in, (uint64_t)CONC_N * CONC_BYTES);
	assert_int_equal(server.bytes_out, (uint64_t)CONC_N * CONC_BYTES);
	assert_int_equal(status, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(thousand_sequential_connections),
	    cmocka_unit_test(two_hundred_concurrent_connections_1_mib_each_way),
	};
	return cmocka_run_group_tests_name("client_accept", tests, setup,
	                                   teardown);
}
