/*
 * The broker against a fake core (fake_core.c, its own thread) and raw
 * clients speaking the attach protocol, all in this process. The test
 * thread drives the broker with nc_broker_step() between client actions,
 * so it can look at the broker's tables at any point without a race.
 *
 * Every socket lives in a fresh mkdtemp directory under /tmp (Bazel's
 * TEST_TMPDIR can be longer than a unix socket path allows), so tests run
 * in parallel; every wait is bounded and fails with the reason.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "services/proxy_broker/broker.h"
#include "services/proxy_broker/broker_internal.h"
#include "services/proxy_broker/fake_core.h"

#define WAIT_MS 10000

struct env {
	char dir[64];
	char sock_path[108];
	struct fake_core *core;
	struct nc_broker *b;
	struct nc_broker_config cfg;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void env_config(struct env *e, const char *text)
{
	char err[NC_BROKER_ERR_MAX];
	nc_broker_config_default(&e->cfg);
	int rc = nc_broker_config_parse(&e->cfg, text, strlen(text), err,
	                                sizeof(err));
	if (rc != 0)
		fail_msg("config: %s", err);
}

static void env_broker(struct env *e)
{
	struct nc_broker_options o = {.socket_path = e->sock_path,
	                              .core_ctl = fake_core_url(e->core),
	                              .core_fds = fake_core_fds_path(e->core),
	                              .config = e->cfg};
	assert_int_equal(nc_broker_create(&e->b, &o), 0);
	/* Wait until both ends of the nng connection are complete: nng
	 * 1.5.2 wedges a listener (and leaks the pipes) when a peer leaves
	 * during negotiation (nng #1518; see broker.c). */
	struct nc_broker_stats s;
	int64_t end = now_ms() + WAIT_MS;
	do {
		nc_broker_get_stats(e->b, &s);
	} while ((s.core_pipes == 0 || fake_core_peers(e->core) == 0) &&
	         now_ms() < end && usleep(1000) == 0);
	assert_int_equal(s.core_pipes, 1);
}

/* A temp dir, the fake core in it, and a broker with `config`. */
static struct env *env_start(const char *config)
{
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	strcpy(e->dir, "/tmp/ncbrk-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->sock_path, sizeof(e->sock_path), "%s/attach", e->dir);
	e->core = fake_core_start(e->dir);
	assert_non_null(e->core);
	env_config(e, config);
	env_broker(e);
	return e;
}

static void env_stop(struct env *e)
{
	nc_broker_destroy(e->b);
	fake_core_stop(e->core);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
	assert_int_equal(system(cmd), 0);
	free(e);
}

static struct fake_core_seen seen(struct env *e)
{
	struct fake_core_seen s;
	fake_core_get_seen(e->core, &s);
	return s;
}

static struct nc_broker_stats stats(struct env *e)
{
	struct nc_broker_stats s;
	nc_broker_get_stats(e->b, &s);
	return s;
}

/* ---------------------------------------------------------------- clients */

static int client_connect(struct env *e)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, e->sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	nc_broker_step(e->b, 0, NULL); /* accept it */
	return fd;
}

/* Steps the broker until `fd` is readable; false after WAIT_MS. */
static bool pump_until_readable(struct env *e, int fd, int wait_ms)
{
	int64_t end = now_ms() + wait_ms;
	while (now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1)
			return true;
		assert_int_equal(nc_broker_step(e->b, 5, NULL), 0);
	}
	return false;
}

/* Reads one reply (and up to 3 fds). 0, or -EPIPE on EOF. */
static int client_read(int fd, struct nc_msg_rep *rep, int fds[3], int *nfds)
{
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = rep, .iov_len = sizeof(*rep)};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctl.buf,
	                     .msg_controllen = sizeof(ctl.buf)};
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
	if (n == 0)
		return -EPIPE;
	if (n < 0)
		return -errno;
	assert_int_equal(n, sizeof(*rep));
	assert_int_equal(rep->hdr.magic, NC_MSG_MAGIC);
	assert_int_equal(rep->hdr.version, NC_MSG_VERSION);
	assert_int_equal(rep->hdr.size, sizeof(*rep));
	/* A reply repeats the request's type, even one nobody knows. */
	if (rep->hdr.type != 0 && rep->hdr.type < NC_MSG_TYPE_END)
		assert_int_equal(nc_msg_check(rep, (size_t)n, sizeof(*rep)), 0);
	int got = 0, mine[3];
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (c != NULL && c->cmsg_type == SCM_RIGHTS) {
		got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		assert_true(got <= 3);
		memcpy(mine, CMSG_DATA(c), (size_t)got * sizeof(int));
	}
	if (nfds != NULL) {
		*nfds = got;
		memcpy(fds, mine, (size_t)got * sizeof(int));
	} else {
		for (int i = 0; i < got; i++)
			close(mine[i]);
	}
	return 0;
}

/* Sends raw bytes and waits for the answer: 0, -EPIPE, or -ETIMEDOUT. */
static int raw_call(struct env *e, int fd, const void *msg, size_t len,
                    struct nc_msg_rep *rep)
{
	assert_int_equal(send(fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
	if (!pump_until_readable(e, fd, WAIT_MS))
		return -ETIMEDOUT;
	int fds[3];
	return client_read(fd, rep, fds, NULL);
}

static struct nc_msg_req req_of(enum nc_msg_type type, uint32_t id)
{
	struct nc_msg_req r;
	memset(&r, 0, sizeof(r));
	nc_msg_init(&r.hdr, type, id, sizeof(r));
	r.sock = -1;
	return r;
}

/* One request; returns the reply's result (after checking id and type). */
static int32_t call(struct env *e, int fd, struct nc_msg_req *req,
                    struct nc_msg_rep *rep)
{
	struct nc_msg_rep local;
	if (rep == NULL)
		rep = &local;
	int rc = raw_call(e, fd, req, sizeof(*req), rep);
	if (rc != 0)
		fail_msg("%s: no reply (%s)", nc_msg_type_name(req->hdr.type),
		         strerror(-rc));
	assert_int_equal(rep->hdr.id, req->hdr.id);
	assert_int_equal(rep->hdr.type, req->hdr.type);
	return rep->result;
}

struct attached {
	int fd;
	uint32_t id;
	struct nc_msg_rep rep;
	int fds[3];
};

/* Attaches and checks the region the 3 fds describe. */
static void attach_ok(struct env *e, struct attached *a)
{
	a->fd = client_connect(e);
	struct nc_msg_req req = req_of(NC_MSG_ATTACH, 1);
	req.sock = 0;
	assert_int_equal(send(a->fd, &req, sizeof(req), 0), sizeof(req));
	assert_true(pump_until_readable(e, a->fd, WAIT_MS));
	int nfds = 0;
	assert_int_equal(client_read(a->fd, &a->rep, a->fds, &nfds), 0);
	if (a->rep.result != 0) {
		struct fake_core_seen s = seen(e);
		fail_msg("attach: %s; core saw %u requests, %u adds, %u adds "
		         "without fds, %u bad regions",
		         strerror(-a->rep.result), s.requests,
		         s.per_type[NC_MSG_CLIENT_ADD], s.adds_without_fds,
		         s.bad_regions);
	}
	assert_int_equal(a->rep.hdr.type, NC_MSG_ATTACH);
	assert_int_equal(a->rep.hdr.id, 1);
	assert_int_equal(nfds, 3);
	assert_true(a->rep.client != 0);
	a->id = a->rep.client;
	struct nc_region r;
	struct nc_region_expect ex = {.kind = NC_CLIENT_REGION_KIND};
	assert_int_equal(nc_region_attach(&r, a->fds[0], &ex), 0);
	struct nc_client_params p;
	assert_int_equal(nc_client_region_params(&r, &p), 0);
	assert_int_equal(p.max_sockets, a->rep.max_sockets);
	assert_int_equal(p.ring_slots, a->rep.ring_slots);
	assert_int_equal(p.buf_count, a->rep.buf_count);
	assert_int_equal(p.buf_size, a->rep.buf_size);
	assert_memory_equal(&p, &e->cfg.region, sizeof(p));
	nc_region_close(&r);
}

static void attached_close_fds(struct attached *a)
{
	for (int i = 0; i < 3; i++)
		close(a->fds[i]);
}

static void detach(struct attached *a)
{
	attached_close_fds(a);
	close(a->fd);
}

/* Opens a socket; returns its index and fills gen. */
static int32_t open_sock(struct env *e, struct attached *a, uint32_t id,
                         int type, uint32_t *gen)
{
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, id);
	req.domain = AF_INET;
	req.type = type;
	struct nc_msg_rep rep;
	assert_int_equal(call(e, a->fd, &req, &rep), 0);
	*gen = rep.sock_gen;
	return rep.sock;
}

static struct nc_msg_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d,
                             uint16_t port)
{
	struct nc_msg_addr x = {.family = AF_INET, .port = port};
	x.addr[0] = a;
	x.addr[1] = b;
	x.addr[2] = c;
	x.addr[3] = d;
	return x;
}

static int32_t sock_op(struct env *e, struct attached *a, uint32_t id,
                       enum nc_msg_type type, int32_t sock, uint32_t gen,
                       const struct nc_msg_addr *addr, int32_t arg)
{
	struct nc_msg_req req = req_of(type, id);
	req.sock = sock;
	req.sock_gen = gen;
	req.arg = arg;
	if (addr)
		req.addr = *addr;
	return call(e, a->fd, &req, NULL);
}

static struct nci_client *find_client(struct env *e, uint32_t id);

/* ------------------------------------------------------------------ tests */

static void attach_hands_out_region_and_bells(void **state)
{
	(void)state;
	struct env *e = env_start("max_sockets 8\nbuffer_count 64\n");
	struct attached a;
	attach_ok(e, &a);
	/* The core got the same memfd and bells, and attached the region. */
	ino_t ino;
	struct nc_client_params p;
	int core_bell;
	assert_int_equal(fake_core_client(e->core, a.id, &ino, &p, &core_bell),
	                 0);
	struct stat st;
	assert_int_equal(fstat(a.fds[0], &st), 0);
	assert_int_equal(st.st_ino, ino);
	assert_memory_equal(&p, &e->cfg.region, sizeof(p));
	/* The client's core bell is the core's: a ring crosses over. */
	uint64_t one = 1, got = 0;
	assert_int_equal(write(a.fds[2], &one, sizeof(one)), sizeof(one));
	assert_int_equal(read(core_bell, &got, sizeof(got)), sizeof(got));
	assert_int_equal(got, 1);
	close(core_bell);
	char link[64], target[64] = {0};
	snprintf(link, sizeof(link), "/proc/self/fd/%d", a.fds[1]);
	assert_true(readlink(link, target, sizeof(target) - 1) > 0);
	assert_string_equal(target, "anon_inode:[eventfd]");
	struct fake_core_seen s = seen(e);
	assert_int_equal(s.per_type[NC_MSG_CLIENT_ADD], 1);
	assert_int_equal(s.last.client, a.id);
	assert_int_equal(s.last.client_gen, 1);
	assert_int_equal(s.adds_without_fds, 0);
	assert_int_equal(s.bad_regions, 0);
	assert_int_equal(stats(e).attached, 1);
	assert_int_equal(stats(e).memory, nc_broker_region_bytes(&e->cfg));
	detach(&a);
	env_stop(e);
}

static void attach_records_peer_credentials(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a;
	attach_ok(e, &a);
	struct nci_client *cl = find_client(e, a.id);
	assert_non_null(cl);
	assert_int_equal(cl->pid, getpid());
	assert_int_equal(cl->uid, getuid());
	assert_int_equal(cl->gid, getgid());
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	nc_broker_dump(e->b, f);
	fclose(f);
	char want[128];
	snprintf(want, sizeof(want),
	         "client %u state attached pid %d uid %u gid %u", a.id,
	         (int)getpid(), (unsigned)getuid(), (unsigned)getgid());
	if (strstr(text, want) == NULL)
		fail_msg("dump lacks '%s':\n%s", want, text);
	free(text);
	detach(&a);
	env_stop(e);
}

static void socket_ops_are_forwarded_with_ids_rewritten(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a;
	attach_ok(e, &a);
	uint32_t before = seen(e).last.hdr.id;
	/* The client's own ids, its client field forged: both replaced. */
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 7777);
	req.domain = AF_INET;
	req.type = SOCK_STREAM;
	req.client = 999;
	req.client_gen = 42;
	struct nc_msg_rep rep;
	assert_int_equal(call(e, a.fd, &req, &rep), 0);
	assert_int_equal(rep.hdr.id, 7777);
	assert_int_equal(rep.sock, 0);
	assert_int_equal(rep.sock_gen, 1);
	struct fake_core_seen s = seen(e);
	assert_int_equal(s.last.hdr.type, NC_MSG_SOCKET);
	assert_int_equal(s.last.client, a.id);
	assert_int_equal(s.last.client_gen, 1);
	assert_true(s.last.hdr.id > before);
	assert_true(s.last.hdr.id != 7777);
	/* A lower client id is the client's business; ours keep rising. */
	struct nc_msg_addr dst = v4(192, 0, 2, 1, 80);
	assert_int_equal(sock_op(e, &a, 3, NC_MSG_CONNECT, 0, 1, &dst, 0),
	                 -EINPROGRESS);
	s = seen(e);
	assert_int_equal(s.ids_not_rising, 0);
	assert_int_equal(s.bad_requests, 0);
	assert_memory_equal(&s.last.addr, &dst, sizeof(dst));
	/* The table learned the socket and its peer. */
	struct nci_client *cl = find_client(e, a.id);
	assert_int_equal(cl->nsocks, 1);
	assert_int_equal(cl->socks[0].state, NCI_SOCK_CONNECTING);
	assert_int_equal(cl->socks[0].peer.port, 80);
	assert_int_equal(cl->socks[0].type, SOCK_STREAM);
	/* Options go through, and their answer comes back. */
	struct nc_msg_req opt = req_of(NC_MSG_GETSOCKOPT, 4);
	opt.sock = 0;
	opt.sock_gen = 1;
	opt.optlen = 4;
	assert_int_equal(call(e, a.fd, &opt, &rep), 0);
	assert_int_equal(rep.optlen, 4);
	assert_int_equal(stats(e).forwarded, 3);
	detach(&a);
	env_stop(e);
}

static void socket_quota_refuses_with_emfile(void **state)
{
	(void)state;
	struct env *e = env_start("max_sockets 4\n");
	struct attached a;
	attach_ok(e, &a);
	uint32_t gen[4];
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(open_sock(e, &a, 10 + i, SOCK_DGRAM, &gen[i]),
		                 (int32_t)i);
	uint32_t forwarded = seen(e).per_type[NC_MSG_SOCKET];
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 20);
	req.domain = AF_INET;
	req.type = SOCK_DGRAM;
	assert_int_equal(call(e, a.fd, &req, NULL), -EMFILE);
	assert_int_equal(seen(e).per_type[NC_MSG_SOCKET], forwarded);
	/* Closing one gives the slot back; its old gen is then stale. */
	assert_int_equal(sock_op(e, &a, 21, NC_MSG_CLOSE, 2, gen[2], NULL, 0),
	                 0);
	assert_int_equal(stats(e).sockets, 3);
	uint32_t g;
	assert_int_equal(open_sock(e, &a, 22, SOCK_DGRAM, &g), 2);
	assert_int_equal(g, gen[2] + 1);
	assert_int_equal(sock_op(e, &a, 23, NC_MSG_CLOSE, 2, gen[2], NULL, 0),
	                 -EBADF);
	detach(&a);
	env_stop(e);
}

static void accept_counts_against_the_socket_quota(void **state)
{
	(void)state;
	struct env *e = env_start("max_sockets 2\n");
	struct attached a;
	attach_ok(e, &a);
	uint32_t gen;
	int32_t l = open_sock(e, &a, 2, SOCK_STREAM, &gen);
	struct nc_msg_addr any = v4(0, 0, 0, 0, 8080);
	assert_int_equal(sock_op(e, &a, 3, NC_MSG_BIND, l, gen, &any, 0), 0);
	assert_int_equal(sock_op(e, &a, 4, NC_MSG_LISTEN, l, gen, NULL, 5), 0);
	assert_int_equal(sock_op(e, &a, 5, NC_MSG_ACCEPT, l, gen, NULL, 0),
	                 -EAGAIN);
	fake_core_set_accept(e->core, true);
	struct nc_msg_req req = req_of(NC_MSG_ACCEPT, 6);
	req.sock = l;
	req.sock_gen = gen;
	struct nc_msg_rep rep;
	assert_int_equal(call(e, a.fd, &req, &rep), 0);
	assert_int_equal(rep.sock, 1);
	assert_int_equal(rep.addr.port, 40001);
	struct nci_client *cl = find_client(e, a.id);
	assert_int_equal(cl->socks[1].state, NCI_SOCK_CONNECTED);
	assert_int_equal(cl->socks[1].peer.port, 40001);
	assert_int_equal(cl->socks[1].local.port, 8080);
	assert_int_equal(cl->socks[0].local.port, 8080);
	/* Two sockets of two: the next accept is refused here. */
	uint32_t accepts = seen(e).per_type[NC_MSG_ACCEPT];
	assert_int_equal(sock_op(e, &a, 7, NC_MSG_ACCEPT, l, gen, NULL, 0),
	                 -EMFILE);
	assert_int_equal(seen(e).per_type[NC_MSG_ACCEPT], accepts);
	detach(&a);
	env_stop(e);
}

static void connect_policy_refuses_with_eacces(void **state)
{
	(void)state;
	struct env *e = env_start("allow_connect 10.1.0.0/16 443\n"
	                          "deny_connect 10.0.0.0/8\n"
	                          "deny_connect any 25\n");
	struct attached a;
	attach_ok(e, &a);
	uint32_t gen;
	int32_t s = open_sock(e, &a, 2, SOCK_STREAM, &gen);
	uint32_t connects = seen(e).per_type[NC_MSG_CONNECT];
	struct nc_msg_addr denied = v4(10, 2, 3, 4, 443);
	assert_int_equal(sock_op(e, &a, 3, NC_MSG_CONNECT, s, gen, &denied, 0),
	                 -EACCES);
	struct nc_msg_addr smtp = v4(192, 0, 2, 1, 25);
	assert_int_equal(sock_op(e, &a, 4, NC_MSG_CONNECT, s, gen, &smtp, 0),
	                 -EACCES);
	/* An IPv6 socket cannot dodge the IPv4 rule with a mapped address. */
	struct nc_msg_addr mapped = {.family = AF_INET6, .port = 443};
	mapped.addr[10] = mapped.addr[11] = 0xff;
	mapped.addr[12] = 10;
	mapped.addr[13] = 9;
	assert_int_equal(sock_op(e, &a, 5, NC_MSG_CONNECT, s, gen, &mapped, 0),
	                 -EACCES);
	assert_int_equal(seen(e).per_type[NC_MSG_CONNECT], connects);
	struct nc_msg_addr allowed = v4(10, 1, 2, 3, 443);
	assert_int_equal(sock_op(e, &a, 6, NC_MSG_CONNECT, s, gen, &allowed, 0),
	                 -EINPROGRESS);
	struct nc_msg_addr elsewhere = v4(192, 0, 2, 1, 80);
	assert_int_equal(
	    sock_op(e, &a, 7, NC_MSG_CONNECT, s, gen, &elsewhere, 0),
	    -EINPROGRESS);
	assert_int_equal(seen(e).per_type[NC_MSG_CONNECT], connects + 2);
	detach(&a);
	env_stop(e);
}

static void bind_policy_refuses_with_eperm(void **state)
{
	(void)state;
	struct env *e = env_start("deny_bind 8000-8099\n");
	struct attached a;
	attach_ok(e, &a);
	uint32_t gen;
	int32_t s = open_sock(e, &a, 2, SOCK_DGRAM, &gen);
	struct nc_msg_addr low = v4(0, 0, 0, 0, 80);
	struct nc_msg_addr denied = v4(0, 0, 0, 0, 8053);
	struct nc_msg_addr fine = v4(0, 0, 0, 0, 5353);
	struct nc_msg_addr ephemeral = v4(0, 0, 0, 0, 0);
	assert_int_equal(sock_op(e, &a, 3, NC_MSG_BIND, s, gen, &low, 0),
	                 -EPERM);
	assert_int_equal(sock_op(e, &a, 4, NC_MSG_BIND, s, gen, &denied, 0),
	                 -EPERM);
	assert_int_equal(seen(e).per_type[NC_MSG_BIND], 0);
	assert_int_equal(sock_op(e, &a, 5, NC_MSG_BIND, s, gen, &fine, 0), 0);
	int32_t t = open_sock(e, &a, 6, SOCK_DGRAM, &gen);
	assert_int_equal(sock_op(e, &a, 7, NC_MSG_BIND, t, gen, &ephemeral, 0),
	                 0);
	/* The port the core chose is learned from its reply. */
	struct nci_client *cl = find_client(e, a.id);
	assert_int_equal(cl->socks[t].local.port, 40000 + t);
	assert_int_equal(cl->socks[t].state, NCI_SOCK_BOUND);
	detach(&a);
	env_stop(e);
}

static void listen_backlog_is_capped_and_budgeted(void **state)
{
	(void)state;
	struct env *e = env_start("max_backlog 16\nmax_pending 20\n");
	struct attached a;
	attach_ok(e, &a);
	uint32_t g1, g2, g3;
	int32_t s1 = open_sock(e, &a, 2, SOCK_STREAM, &g1);
	int32_t s2 = open_sock(e, &a, 3, SOCK_STREAM, &g2);
	int32_t s3 = open_sock(e, &a, 4, SOCK_STREAM, &g3);
	assert_int_equal(sock_op(e, &a, 5, NC_MSG_LISTEN, s1, g1, NULL, 1000),
	                 0);
	assert_int_equal(seen(e).last.arg, 16);
	/* 4 left of 20: the second listener gets 4, not 10. */
	assert_int_equal(sock_op(e, &a, 6, NC_MSG_LISTEN, s2, g2, NULL, 10), 0);
	assert_int_equal(seen(e).last.arg, 4);
	assert_int_equal(sock_op(e, &a, 7, NC_MSG_LISTEN, s3, g3, NULL, 1),
	                 -ENOBUFS);
	/* Listening again re-grants from the listener's own share. */
	assert_int_equal(sock_op(e, &a, 8, NC_MSG_LISTEN, s1, g1, NULL, -1), 0);
	assert_int_equal(seen(e).last.arg, 16);
	assert_int_equal(find_client(e, a.id)->pending, 20);
	/* Closing a listener frees its budget. */
	assert_int_equal(sock_op(e, &a, 9, NC_MSG_CLOSE, s1, g1, NULL, 0), 0);
	assert_int_equal(find_client(e, a.id)->pending, 4);
	assert_int_equal(sock_op(e, &a, 10, NC_MSG_LISTEN, s3, g3, NULL, 0), 0);
	assert_int_equal(seen(e).last.arg, 1);
	detach(&a);
	env_stop(e);
}

static void malformed_messages_get_eproto_and_broker_survives(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a;
	attach_ok(e, &a);
	uint32_t requests = seen(e).requests;
	struct nc_msg_rep rep;
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 50);
	req.hdr.magic ^= 1;
	assert_int_equal(raw_call(e, a.fd, &req, sizeof(req), &rep), 0);
	assert_int_equal(rep.result, -EPROTO);
	assert_int_equal(rep.hdr.id, 50);
	req = req_of(NC_MSG_SOCKET, 51);
	req.hdr.version = 99;
	assert_int_equal(raw_call(e, a.fd, &req, sizeof(req), &rep), 0);
	assert_int_equal(rep.result, -EPROTO);
	req = req_of(NC_MSG_TYPE_END, 52);
	assert_int_equal(raw_call(e, a.fd, &req, sizeof(req), &rep), 0);
	assert_int_equal(rep.result, -EPROTO);
	assert_int_equal(rep.hdr.type, NC_MSG_TYPE_END);
	req = req_of(NC_MSG_SOCKET, 53); /* short by one byte */
	assert_int_equal(raw_call(e, a.fd, &req, sizeof(req) - 1, &rep), 0);
	assert_int_equal(rep.result, -EPROTO);
	uint8_t big[1000];
	memset(big, 0, sizeof(big));
	req = req_of(NC_MSG_SOCKET, 54);
	req.hdr.size = sizeof(big);
	memcpy(big, &req, sizeof(req));
	assert_int_equal(raw_call(e, a.fd, big, sizeof(big), &rep), 0);
	assert_int_equal(rep.result, -EPROTO);
	assert_int_equal(rep.hdr.id, 54);
	/* The broker's own words from a client. */
	req = req_of(NC_MSG_CLIENT_REMOVE, 55);
	req.client = a.id;
	assert_int_equal(call(e, a.fd, &req, NULL), -EPROTO);
	req = req_of(NC_MSG_ATTACH, 56);
	assert_int_equal(call(e, a.fd, &req, NULL), -EISCONN);
	/* Nothing of that reached the core; the client still works. */
	assert_int_equal(seen(e).requests, requests);
	uint32_t gen;
	assert_int_equal(open_sock(e, &a, 57, SOCK_STREAM, &gen), 0);
	assert_true(stats(e).refused >= 7);
	detach(&a);
	env_stop(e);
}

static void unreadable_message_disconnects_only_that_client(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a, b;
	attach_ok(e, &a);
	attach_ok(e, &b);
	uint8_t junk[3] = {1, 2, 3};
	assert_int_equal(send(a.fd, junk, sizeof(junk), 0), 3);
	struct nc_msg_rep rep;
	int fds[3];
	assert_true(pump_until_readable(e, a.fd, WAIT_MS));
	assert_int_equal(client_read(a.fd, &rep, fds, NULL), -EPIPE);
	assert_int_equal(stats(e).disconnected, 1);
	/* Its removal reaches the core; the other client goes on. */
	int64_t end = now_ms() + WAIT_MS;
	while (seen(e).nremoved < 1 && now_ms() < end)
		nc_broker_step(e->b, 5, NULL);
	assert_int_equal(seen(e).removed[0], a.id);
	uint32_t gen;
	assert_int_equal(open_sock(e, &b, 2, SOCK_STREAM, &gen), 0);
	detach(&a);
	detach(&b);
	env_stop(e);
}

static void requests_before_attach_are_refused(void **state)
{
	(void)state;
	struct env *e = env_start("");
	int fd = client_connect(e);
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 1);
	req.domain = AF_INET;
	req.type = SOCK_STREAM;
	assert_int_equal(call(e, fd, &req, NULL), -EPROTO);
	assert_int_equal(seen(e).requests, 0);
	close(fd);
	env_stop(e);
}

static void stale_or_foreign_socket_is_ebadf_without_the_core(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a, b;
	attach_ok(e, &a);
	attach_ok(e, &b);
	uint32_t gen;
	int32_t s = open_sock(e, &a, 2, SOCK_STREAM, &gen);
	uint32_t requests = seen(e).requests;
	/* b names a's socket: b has no socket 0. */
	assert_int_equal(sock_op(e, &b, 2, NC_MSG_CLOSE, s, gen, NULL, 0),
	                 -EBADF);
	assert_int_equal(sock_op(e, &a, 3, NC_MSG_CLOSE, s, gen + 1, NULL, 0),
	                 -EBADF);
	assert_int_equal(sock_op(e, &a, 4, NC_MSG_CLOSE, -5, gen, NULL, 0),
	                 -EBADF);
	assert_int_equal(sock_op(e, &a, 5, NC_MSG_CLOSE, 1 << 20, 1, NULL, 0),
	                 -EBADF);
	assert_int_equal(seen(e).requests, requests);
	detach(&a);
	detach(&b);
	env_stop(e);
}

/* Steps until the core saw `n` removals and `left` clients remain. */
static void pump_until_removed(struct env *e, uint32_t n, uint32_t left)
{
	int64_t end = now_ms() + WAIT_MS;
	while ((seen(e).nremoved < n || stats(e).clients != left) &&
	       now_ms() < end)
		nc_broker_step(e->b, 5, NULL);
	if (seen(e).nremoved < n || stats(e).clients != left)
		fail_msg("want %u removals and %u clients: %u and %u", n, left,
		         seen(e).nremoved, stats(e).clients);
}

static void client_death_removes_it_from_core_and_table(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a;
	attach_ok(e, &a);
	uint32_t gen;
	open_sock(e, &a, 2, SOCK_STREAM, &gen);
	open_sock(e, &a, 3, SOCK_DGRAM, &gen);
	assert_int_equal(stats(e).sockets, 2);
	assert_int_equal(seen(e).clients, 1);
	detach(&a);
	pump_until_removed(e, 1, 0);
	struct fake_core_seen s = seen(e);
	assert_int_equal(s.nremoved, 1);
	assert_int_equal(s.removed[0], a.id);
	assert_int_equal(s.clients, 0);
	struct nc_broker_stats st = stats(e);
	assert_int_equal(st.clients, 0);
	assert_int_equal(st.sockets, 0);
	assert_int_equal(st.memory, 0);
	assert_int_equal(st.calls, 0);
	assert_null(find_client(e, a.id));
	env_stop(e);
}

static void death_with_a_request_in_flight_removes_after_it(void **state)
{
	(void)state;
	struct env *e = env_start("core_timeout_ms 300\n");
	struct attached a;
	attach_ok(e, &a);
	fake_core_set_hang(e->core, true);
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 2);
	req.domain = AF_INET;
	req.type = SOCK_STREAM;
	assert_int_equal(send(a.fd, &req, sizeof(req), 0), sizeof(req));
	for (int i = 0; i < 20 && stats(e).calls == 0; i++)
		nc_broker_step(e->b, 5, NULL);
	assert_int_equal(stats(e).calls, 1);
	detach(&a);
	nc_broker_step(e->b, 5, NULL);
	/* Gone, but the REMOVE waits for the call in flight to end. */
	assert_int_equal(seen(e).per_type[NC_MSG_CLIENT_REMOVE], 0);
	fake_core_set_hang(e->core, false);
	pump_until_removed(e, 1, 0);
	assert_int_equal(seen(e).removed[0], a.id);
	assert_int_equal(stats(e).clients, 0);
	env_stop(e);
}

static void
silent_core_times_out_with_eagain_and_others_are_served(void **state)
{
	(void)state;
	struct env *e = env_start("core_timeout_ms 400\n"
	                          "deny_connect 192.0.2.0/24\n");
	struct attached a, b;
	attach_ok(e, &a);
	attach_ok(e, &b);
	uint32_t gen;
	int32_t s = open_sock(e, &b, 2, SOCK_STREAM, &gen);
	fake_core_set_hang(e->core, true);
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 3);
	req.domain = AF_INET;
	req.type = SOCK_STREAM;
	int64_t start = now_ms();
	assert_int_equal(send(a.fd, &req, sizeof(req), 0), sizeof(req));
	nc_broker_step(e->b, 5, NULL);
	/* While a waits, b's refusal and a new client's hello are served. */
	struct nc_msg_addr denied = v4(192, 0, 2, 1, 80);
	assert_int_equal(sock_op(e, &b, 3, NC_MSG_CONNECT, s, gen, &denied, 0),
	                 -EACCES);
	assert_true(now_ms() - start < 300);
	int c = client_connect(e);
	struct nc_msg_req early = req_of(NC_MSG_CLOSE, 9);
	assert_int_equal(call(e, c, &early, NULL), -EPROTO);
	close(c);
	struct nc_msg_rep rep;
	assert_true(pump_until_readable(e, a.fd, WAIT_MS));
	assert_int_equal(client_read(a.fd, &rep, NULL, NULL), 0);
	int64_t took = now_ms() - start;
	assert_int_equal(rep.result, -EAGAIN);
	assert_int_equal(rep.hdr.id, 3);
	assert_true(took >= 380 && took < 3000);
	assert_true(stats(e).core_errors >= 1);
	/* The core is back: so is service. */
	fake_core_set_hang(e->core, false);
	assert_int_equal(sock_op(e, &b, 4, NC_MSG_CLOSE, s, gen, NULL, 0), 0);
	detach(&a);
	detach(&b);
	env_stop(e);
}

static void many_clients_at_once(void **state)
{
	(void)state;
	enum { N = 48 };
	struct env *e = env_start("max_sockets 4\nbuffer_count 16\n"
	                          "buffer_size 4096\n");
	static struct attached a[N];
	/* All connect and ask before the broker runs: one batch. */
	struct nc_msg_req req = req_of(NC_MSG_ATTACH, 1);
	for (int i = 0; i < N; i++) {
		a[i].fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		strcpy(addr.sun_path, e->sock_path);
		assert_int_equal(
		    connect(a[i].fd, (struct sockaddr *)&addr, sizeof(addr)),
		    0);
		assert_int_equal(send(a[i].fd, &req, sizeof(req), 0),
		                 sizeof(req));
	}
	for (int i = 0; i < N; i++) {
		assert_true(pump_until_readable(e, a[i].fd, WAIT_MS));
		int nfds = 0;
		assert_int_equal(
		    client_read(a[i].fd, &a[i].rep, a[i].fds, &nfds), 0);
		assert_int_equal(a[i].rep.result, 0);
		assert_int_equal(nfds, 3);
		attached_close_fds(&a[i]);
		a[i].id = a[i].rep.client;
		for (int j = 0; j < i; j++)
			assert_int_not_equal(a[i].id, a[j].id);
	}
	assert_int_equal(stats(e).attached, N);
	/* Every one opens a socket; each gets its own channel 0. */
	for (int i = 0; i < N; i++) {
		uint32_t gen;
		assert_int_equal(open_sock(e, &a[i], 2, SOCK_STREAM, &gen), 0);
	}
	assert_int_equal(stats(e).sockets, N);
	assert_int_equal(seen(e).clients, N);
	for (int i = 0; i < N; i++)
		close(a[i].fd);
	pump_until_removed(e, N, 0);
	assert_int_equal(seen(e).nremoved, N);
	assert_int_equal(stats(e).clients, 0);
	assert_int_equal(stats(e).memory, 0);
	assert_int_equal(seen(e).clients, 0);
	env_stop(e);
}

/* An ATTACH that must be refused: the result, and the hang-up after it. */
static int32_t attach_refused(struct env *e)
{
	int fd = client_connect(e);
	struct nc_msg_req req = req_of(NC_MSG_ATTACH, 1);
	struct nc_msg_rep rep;
	int32_t r = call(e, fd, &req, &rep);
	int fds[3];
	assert_true(pump_until_readable(e, fd, WAIT_MS));
	assert_int_equal(client_read(fd, &rep, fds, NULL), -EPIPE);
	close(fd);
	return r;
}

static void memory_limit_refuses_attach_with_enobufs(void **state)
{
	(void)state;
	/* Room for two regions and a half. */
	const char *region = "buffer_count 64\nbuffer_size 16384\n";
	struct nc_broker_config probe;
	nc_broker_config_default(&probe);
	assert_int_equal(
	    nc_broker_config_parse(&probe, region, strlen(region), NULL, 0), 0);
	uint64_t one = nc_broker_region_bytes(&probe);
	char config[128];
	snprintf(config, sizeof(config), "%smemory_limit %llu\n", region,
	         (unsigned long long)(one * 5 / 2));
	struct env *e = env_start(config);
	assert_true(2 * one <= e->cfg.memory_limit &&
	            3 * one > e->cfg.memory_limit);
	struct attached a, b;
	attach_ok(e, &a);
	attach_ok(e, &b);
	assert_int_equal(attach_refused(e), -ENOBUFS);
	assert_int_equal(stats(e).memory, 2 * one);
	detach(&a);
	pump_until_removed(e, 1, 1);
	assert_int_equal(stats(e).memory, one);
	struct attached c;
	attach_ok(e, &c);
	detach(&b);
	detach(&c);
	env_stop(e);
}

static void uid_policy_refuses_attach_with_eacces(void **state)
{
	(void)state;
	char config[64];
	uint32_t other = getuid() == 12345 ? 12346 : 12345;
	snprintf(config, sizeof(config), "allow_uid %u\n", other);
	struct env *e = env_start(config);
	assert_int_equal(attach_refused(e), -EACCES);
	assert_int_equal(seen(e).requests, 0);
	assert_int_equal(stats(e).clients, 0);
	env_stop(e);
}

static void core_reset_disconnects_the_client(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a;
	attach_ok(e, &a);
	fake_core_set_reset(e->core, a.id);
	struct nc_msg_req req = req_of(NC_MSG_SOCKET, 2);
	req.domain = AF_INET;
	req.type = SOCK_STREAM;
	assert_int_equal(call(e, a.fd, &req, NULL), -ECONNRESET);
	struct nc_msg_rep rep;
	int fds[3];
	assert_true(pump_until_readable(e, a.fd, WAIT_MS));
	assert_int_equal(client_read(a.fd, &rep, fds, NULL), -EPIPE);
	pump_until_removed(e, 1, 0);
	assert_int_equal(stats(e).clients, 0);
	detach(&a);
	env_stop(e);
}

static void absent_core_makes_attach_fail_with_eagain(void **state)
{
	(void)state;
	struct env *e = env_start("core_timeout_ms 200\n");
	/* A second broker, on an attach socket of its own, for a core that
	 * never listened. (Stopping the fake core under the connected broker
	 * closes an nng listener whose peer is in the same process, which
	 * nng 1.5.2 can panic on, as nng #2110 reports; deployed, broker and
	 * core are separate processes.) */
	struct nc_broker *connected = e->b;
	char url[128], fds[96];
	snprintf(url, sizeof(url), "ipc://%s/no-core", e->dir);
	snprintf(fds, sizeof(fds), "%s/no-core-fds", e->dir);
	snprintf(e->sock_path, sizeof(e->sock_path), "%s/attach2", e->dir);
	struct nc_broker_options o = {.socket_path = e->sock_path,
	                              .core_ctl = url,
	                              .core_fds = fds,
	                              .config = e->cfg};
	assert_int_equal(nc_broker_create(&e->b, &o), 0);
	int64_t start = now_ms();
	assert_int_equal(attach_refused(e), -EAGAIN);
	assert_true(now_ms() - start < 3000);
	assert_int_equal(stats(e).clients, 0);
	nc_broker_destroy(e->b);
	e->b = connected;
	env_stop(e);
}

static void attach_socket_has_mode_0660_and_replaces_stale(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct stat st;
	assert_int_equal(stat(e->sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	/* A live broker's socket is not taken. */
	struct nc_broker *second;
	struct nc_broker_options o = {.socket_path = e->sock_path,
	                              .core_ctl = fake_core_url(e->core),
	                              .core_fds = fake_core_fds_path(e->core),
	                              .config = e->cfg};
	assert_int_equal(nc_broker_create(&second, &o), -EADDRINUSE);
	/* A dead one's is: leave a stale socket file behind. (Attach once
	 * first, so the broker's nng connection is complete when it goes:
	 * see nng #1518 in broker.c.) */
	struct attached c;
	attach_ok(e, &c);
	detach(&c);
	nc_broker_destroy(e->b);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, e->sock_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	env_broker(e);
	attach_ok(e, &c);
	detach(&c);
	/* Something that is not a socket is never replaced. */
	nc_broker_destroy(e->b);
	assert_int_equal(access(e->sock_path, F_OK), -1); /* unlinked */
	FILE *f = fopen(e->sock_path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(nc_broker_create(&second, &o), -EEXIST);
	unlink(e->sock_path);
	env_broker(e);
	env_stop(e);
}

static void silent_connection_is_closed_after_attach_timeout(void **state)
{
	(void)state;
	struct env *e = env_start("attach_timeout_ms 100\n");
	int fd = client_connect(e);
	assert_int_equal(stats(e).clients, 1);
	int64_t start = now_ms();
	assert_true(pump_until_readable(e, fd, WAIT_MS));
	struct nc_msg_rep rep;
	assert_int_equal(client_read(fd, &rep, NULL, NULL), -EPIPE);
	assert_true(now_ms() - start >= 90);
	assert_int_equal(stats(e).clients, 0);
	close(fd);
	env_stop(e);
}

static void max_clients_refuses_with_enfile(void **state)
{
	(void)state;
	struct env *e = env_start("max_clients 2\n");
	struct attached a, b;
	attach_ok(e, &a);
	attach_ok(e, &b);
	int fd = client_connect(e);
	assert_true(pump_until_readable(e, fd, WAIT_MS));
	struct nc_msg_rep rep;
	assert_int_equal(client_read(fd, &rep, NULL, NULL), 0);
	assert_int_equal(rep.result, -ENFILE);
	assert_int_equal(rep.hdr.type, NC_MSG_ATTACH);
	assert_int_equal(client_read(fd, &rep, NULL, NULL), -EPIPE);
	close(fd);
	detach(&a);
	detach(&b);
	env_stop(e);
}

static void dump_lists_clients_and_sockets(void **state)
{
	(void)state;
	struct env *e = env_start("");
	struct attached a;
	attach_ok(e, &a);
	uint32_t gen;
	int32_t s = open_sock(e, &a, 2, SOCK_STREAM, &gen);
	struct nc_msg_addr addr = v4(0, 0, 0, 0, 8080);
	sock_op(e, &a, 3, NC_MSG_BIND, s, gen, &addr, 0);
	sock_op(e, &a, 4, NC_MSG_LISTEN, s, gen, NULL, 7);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	nc_broker_dump(e->b, f);
	fclose(f);
	char want[160];
	snprintf(want, sizeof(want),
	         "sock client %u index 0 gen 1 tcp4 listening local "
	         "0.0.0.0:8080 peer - backlog 7 shut --",
	         a.id);
	if (strstr(text, want) == NULL)
		fail_msg("dump lacks '%s':\n%s", want, text);
	assert_non_null(
	    strstr(text, "broker core_pipes 1 clients 1 attached 1 sockets 1"));
	free(text);
	detach(&a);
	env_stop(e);
}

/* ------------------------------------------------------------------ main */

static struct nci_client *find_client(struct env *e, uint32_t id)
{
	return nci_broker_find_client(e->b, id);
}

int main(int argc, char **argv)
{
	if (argc > 1) /* e.g. "*attach*": run only those */
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(attach_hands_out_region_and_bells),
	    cmocka_unit_test(attach_records_peer_credentials),
	    cmocka_unit_test(socket_ops_are_forwarded_with_ids_rewritten),
	    cmocka_unit_test(socket_quota_refuses_with_emfile),
	    cmocka_unit_test(accept_counts_against_the_socket_quota),
	    cmocka_unit_test(connect_policy_refuses_with_eacces),
	    cmocka_unit_test(bind_policy_refuses_with_eperm),
	    cmocka_unit_test(listen_backlog_is_capped_and_budgeted),
	    cmocka_unit_test(malformed_messages_get_eproto_and_broker_survives),
	    cmocka_unit_test(unreadable_message_disconnects_only_that_client),
	    cmocka_unit_test(requests_before_attach_are_refused),
	    cmocka_unit_test(stale_or_foreign_socket_is_ebadf_without_the_core),
	    cmocka_unit_test(client_death_removes_it_from_core_and_table),
	    cmocka_unit_test(death_with_a_request_in_flight_removes_after_it),
	    cmocka_unit_test(
	        silent_core_times_out_with_eagain_and_others_are_served),
	    cmocka_unit_test(many_clients_at_once),
	    cmocka_unit_test(memory_limit_refuses_attach_with_enobufs),
	    cmocka_unit_test(uid_policy_refuses_attach_with_eacces),
	    cmocka_unit_test(core_reset_disconnects_the_client),
	    cmocka_unit_test(absent_core_makes_attach_fail_with_eagain),
	    cmocka_unit_test(attach_socket_has_mode_0660_and_replaces_stale),
	    cmocka_unit_test(silent_connection_is_closed_after_attach_timeout),
	    cmocka_unit_test(max_clients_refuses_with_enfile),
	    cmocka_unit_test(dump_lists_clients_and_sockets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
