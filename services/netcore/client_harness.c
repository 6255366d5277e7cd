/* Test harness for client sockets; see client_harness.h. */
#include "services/netcore/client_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ck_pr.h>
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "services/netcore/lwip/nc_lwip_port.h"
#include "services/phy_driver/phy_link.h"

#define WAIT_MS 5000 /* for nng's threads: a hang fails, with the reason */

static struct nc_lwip_vclock clk = {.now_ms = 1000};
static struct nc_region phy_region;
static struct nc_phy_dev phy_dev; /* th_phy_up() */
static struct nc_doorbell core_bell, phy_bell;
static struct nc_core *core;
static char dir[64], ctl_url[128], fds_path[128];
static nng_socket broker;
static int broker_fds = -1;
static uint32_t next_req_id = 1;
static pid_t child = -1; /* the core's process in th_setup_child mode */

/* ---------------------------------------------------------------- setup */

int th_fd_channel(void)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, fds_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void broker_connect(void)
{
	assert_int_equal(nng_req0_open(&broker), 0);
	assert_int_equal(nng_dial(broker, ctl_url, NULL, NNG_FLAG_NONBLOCK), 0);
	broker_fds = th_fd_channel();
}

/* A core with the echo service, serving clients in the temporary dir. */
static int start_core(void)
{
	struct nc_phy_params pp = {
	    .ring_slots = 64, .buf_count = 64, .buf_size = 65536, .mtu = 65520};
	int err = nc_phy_region_create(&phy_region, &pp);
	err = err ?: nc_doorbell_create(&core_bell);
	err = err ?: nc_doorbell_create(&phy_bell);
	if (err)
		return err;
	struct nc_core_config cfg;
	nc_core_config_default(&cfg);
	cfg.echo_port = TH_ECHO_PORT;
	core = nc_core_create(&cfg, &phy_region, &core_bell, &phy_bell);
	if (core == NULL)
		return -errno;
	return nc_core_serve_clients(core, ctl_url, fds_path);
}

static void make_dir(void)
{
	strcpy(dir, "/tmp/nc-clients-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(ctl_url, sizeof(ctl_url), "ipc://%s/ctl", dir);
	snprintf(fds_path, sizeof(fds_path), "%s/fds", dir);
}

static void remove_dir(void)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/ctl", dir);
	unlink(path);
	unlink(fds_path);
	rmdir(dir);
}

void th_setup(void)
{
	nc_lwip_clock_set(nc_lwip_vclock_read, &clk);
	make_dir();
	assert_int_equal(start_core(), 0);
	broker_connect();
	th_pump();
}

void th_teardown(void)
{
	nng_close(broker);
	close(broker_fds);
	nc_core_destroy(core);
	remove_dir();
	nc_doorbell_close(&core_bell);
	nc_doorbell_close(&phy_bell);
	nc_region_close(&phy_region);
}

static volatile sig_atomic_t child_stop;

static void on_sigterm(int sig)
{
	(void)sig;
	child_stop = 1;
}

/* The child: the core in automatic mode until SIGTERM. It reports
 * readiness (or a failure) as one byte on `ready`. */
static void child_main(int ready)
{
	struct sigaction sa = {.sa_handler = on_sigterm};
	sigaction(SIGTERM, &sa, NULL);
	int err = start_core();
	char status = err ? 'E' : 'R';
	if (write(ready, &status, 1) != 1 || err)
		_exit(2);
	close(ready);
	err = nc_core_run(core, &child_stop);
	nc_core_destroy(core);
	_exit(err ? 1 : 0);
}

void th_setup_child(void)
{
	make_dir();
	int ready[2];
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	/* Before anything here starts threads: nng is not fork-safe. */
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		child_main(ready[1]);
	close(ready[1]);
	struct pollfd p = {.fd = ready[0], .events = POLLIN};
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	char status = 0;
	assert_int_equal(read(ready[0], &status, 1), 1);
	assert_int_equal(status, 'R');
	close(ready[0]);
	broker_connect();
	assert_int_equal(nng_socket_set_ms(broker, NNG_OPT_RECVTIMEO, WAIT_MS),
	                 0);
}

int th_teardown_child(void)
{
	nng_close(broker);
	close(broker_fds);
	int pidfd = pidfd_open(child, 0);
	assert_true(pidfd >= 0);
	assert_int_equal(kill(child, SIGTERM), 0);
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	if (poll(&p, 1, WAIT_MS) != 1)
		fail_msg("the core did not stop within %d ms", WAIT_MS);
	close(pidfd);
	int status;
	assert_int_equal(waitpid(child, &status, 0), child);
	child = -1;
	remove_dir();
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

struct nc_core *th_core(void)
{
	return core;
}

struct nc_core_counters th_counters(void)
{
	struct nc_core_counters c;
	nc_core_get_counters(core, &c);
	return c;
}

void th_pump(void)
{
	if (child > 0)
		return; /* the child's core runs by itself */
	for (int i = 0; i < 10000; i++)
		if (!nc_core_poll(core).again)
			return;
	fail_msg("the core never settled");
}

void th_advance(uint32_t ms)
{
	for (uint32_t t = 0; t < ms; t += 10) {
		clk.now_ms += 10;
		th_pump();
	}
}

void th_phy_up(void)
{
	assert_int_equal(
	    nc_phy_dev_open(&phy_dev, &phy_region, &phy_bell, &core_bell), 0);
	nc_phy_dev_request(&phy_dev);
	th_pump();
	assert_int_equal(nc_phy_dev_granted(&phy_dev), 1);
}

size_t th_phy_take(void *out, size_t cap)
{
	struct nc_desc d;
	if (nc_phy_dev_tx(&phy_dev, &d, 1) != 1)
		return 0;
	assert_true(d.length <= cap);
	memcpy(out, nc_phy_dev_data(&phy_dev, &d), d.length);
	nc_phy_dev_tx_done(&phy_dev, &d);
	assert_int_equal(nc_phy_dev_flush(&phy_dev), 0);
	return d.length;
}

uint64_t th_now_ms(void)
{
	return clk.now_ms;
}

/* ------------------------------------------------------------ control */

static bool try_reply(struct nc_msg_rep *r)
{
	void *buf;
	size_t len;
	int rv =
	    nng_recv(broker, &buf, &len, NNG_FLAG_NONBLOCK | NNG_FLAG_ALLOC);
	if (rv == NNG_EAGAIN)
		return false;
	assert_int_equal(rv, 0);
	assert_int_equal(len, sizeof(*r));
	memcpy(r, buf, sizeof(*r));
	nng_free(buf, len);
	return true;
}

/* The core runs by itself in the child: a blocking receive, bounded by
 * NNG_OPT_RECVTIMEO. */
static void rpc_child(struct nc_msg_rep *r)
{
	void *buf;
	size_t len;
	int rv = nng_recv(broker, &buf, &len, NNG_FLAG_ALLOC);
	if (rv == NNG_ETIMEDOUT)
		fail_msg("no control reply within %d ms", WAIT_MS);
	assert_int_equal(rv, 0);
	assert_int_equal(len, sizeof(*r));
	memcpy(r, buf, sizeof(*r));
	nng_free(buf, len);
}

void th_rpc_raw(const void *bytes, size_t len, struct nc_msg_rep *r)
{
	assert_int_equal(nng_send(broker, (void *)bytes, len, 0), 0);
	if (child > 0) {
		rpc_child(r);
		return;
	}
	int reply_fd;
	assert_int_equal(nng_socket_get_int(broker, NNG_OPT_RECVFD, &reply_fd),
	                 0);
	for (int i = 0; i < 1000; i++) {
		th_pump();
		if (try_reply(r))
			return;
		/* Not a sleep: wakes as soon as either side has something. */
		struct pollfd p[2] = {
		    {.fd = nc_core_fd(core), .events = POLLIN},
		    {.fd = reply_fd, .events = POLLIN}};
		if (poll(p, 2, WAIT_MS) == 0)
			fail_msg("no control reply within %d ms", WAIT_MS);
		nc_core_wait(core, 0); /* clears what woke us */
	}
	fail_msg("no control reply after 1000 rounds");
}

int th_rpc(struct nc_msg_req *q, struct nc_msg_rep *r)
{
	uint32_t id = next_req_id++;
	nc_msg_init(&q->hdr, (enum nc_msg_type)q->hdr.type, id, sizeof(*q));
	th_rpc_raw(q, sizeof(*q), r);
	assert_int_equal(r->hdr.magic, NC_MSG_MAGIC);
	assert_int_equal(r->hdr.id, id);
	assert_int_equal(r->hdr.type, q->hdr.type);
	assert_int_equal(r->hdr.size, sizeof(*r));
	return r->result;
}

struct nc_msg_req th_req(const struct th_client *c, enum nc_msg_type type,
                         int sock)
{
	struct nc_msg_req q;
	memset(&q, 0, sizeof(q));
	q.hdr.type = (uint16_t)type;
	q.client = c->id;
	q.client_gen = 1;
	q.sock = sock;
	q.sock_gen = sock >= 0 && sock < TH_MAX_SOCKS ? c->gen[sock] : 0;
	return q;
}

/* ------------------------------------------------------------- attach */

void th_params(struct nc_client_params *p)
{
	p->max_sockets = TH_MAX_SOCKS;
	p->ring_slots = 16;
	p->buf_count = 64;
	p->buf_size = 4096;
}

int th_make_client(struct th_client *c, const struct nc_client_params *p)
{
	static uint32_t next_client = 1;
	memset(c, 0, sizeof(*c));
	c->id = next_client++;
	c->p = *p;
	struct nc_region r;
	int err = nc_client_region_create(&r, p);
	if (err)
		return err;
	/* The broker keeps only the memfd; the mapping is the client's. */
	c->memfd = fcntl(r.fd, F_DUPFD_CLOEXEC, 0);
	nc_region_close(&r);
	assert_int_equal(nc_doorbell_create(&c->client_bell), 0);
	assert_int_equal(nc_doorbell_create(&c->core_bell), 0);
	return 0;
}

void th_send_record(uint32_t id, uint32_t gen, const int *fds, int nfds,
                    size_t len)
{
	th_send_record_to(broker_fds, id, gen, fds, nfds, len);
}

void th_send_record_to(int sock, uint32_t id, uint32_t gen, const int *fds,
                       int nfds, size_t len)
{
	uint32_t rec[4] = {id, gen, 0, 0};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} ctrl;
	struct iovec iov = {.iov_base = rec, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		msg.msg_control = ctrl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
	}
	assert_int_equal(sendmsg(sock, &msg, 0), (ssize_t)len);
}

int th_client_add(struct th_client *c)
{
	struct nc_msg_req q = th_req(c, NC_MSG_CLIENT_ADD, -1);
	struct nc_msg_rep r;
	return th_rpc(&q, &r);
}

static void map_rings(struct th_client *c)
{
	struct nc_region *r = &c->region;
	const struct nc_client_layout *l = &c->l;
	uint32_t n = c->p.ring_slots;
	assert_int_equal(
	    nc_ring_attach(&c->free_ring, r, l->free_ring, n, NC_RING_CONSUMER),
	    0);
	assert_int_equal(
	    nc_ring_attach(&c->done_ring, r, l->done_ring, n, NC_RING_PRODUCER),
	    0);
	for (uint32_t i = 0; i < c->p.max_sockets && i < TH_MAX_SOCKS; i++) {
		assert_int_equal(nc_ring_attach(&c->tx[i], r,
		                                nc_client_tx_ring(l, i), n,
		                                NC_RING_PRODUCER),
		                 0);
		assert_int_equal(nc_ring_attach(&c->rx[i], r,
		                                nc_client_rx_ring(l, i), n,
		                                NC_RING_CONSUMER),
		                 0);
	}
}

/* The client's side of step 5 of the attach. */
static void map_region(struct th_client *c)
{
	struct nc_region_expect e = {.kind = NC_CLIENT_REGION_KIND};
	assert_int_equal(nc_region_attach(&c->region, c->memfd, &e), 0);
	struct nc_client_params p;
	assert_int_equal(nc_client_region_params(&c->region, &p), 0);
	assert_memory_equal(&p, &c->p, sizeof(p));
	assert_int_equal(nc_client_layout(&p, &c->l), 0);
	c->control =
	    nc_region_at(&c->region, c->l.control, sizeof(*c->control));
	map_rings(c);
	c->mapped = true;
}

int th_attach(struct th_client *c)
{
	struct nc_client_params p;
	th_params(&p);
	assert_int_equal(th_make_client(c, &p), 0);
	int fds[3] = {c->memfd, c->client_bell.fd, c->core_bell.fd};
	th_send_record(c->id, 1, fds, 3, 8);
	int err = th_client_add(c);
	if (err == 0)
		map_region(c);
	return err;
}

int th_remove(struct th_client *c)
{
	struct nc_msg_req q = th_req(c, NC_MSG_CLIENT_REMOVE, -1);
	struct nc_msg_rep r;
	return th_rpc(&q, &r);
}

void th_client_close(struct th_client *c)
{
	if (c->mapped)
		nc_region_close(&c->region);
	c->mapped = false;
	if (c->memfd >= 0)
		close(c->memfd);
	c->memfd = -1;
	nc_doorbell_close(&c->client_bell);
	nc_doorbell_close(&c->core_bell);
}

/* ------------------------------------------------------------- sockets */

struct nc_msg_addr th_addr(const char *ip, uint16_t port)
{
	struct nc_msg_addr a;
	memset(&a, 0, sizeof(a));
	a.port = port;
	if (inet_pton(AF_INET, ip, a.addr) == 1) {
		a.family = AF_INET;
		return a;
	}
	assert_int_equal(inet_pton(AF_INET6, ip, a.addr), 1);
	a.family = AF_INET6;
	return a;
}

int th_socket(struct th_client *c, int domain, int type)
{
	struct nc_msg_req q = th_req(c, NC_MSG_SOCKET, -1);
	q.domain = domain;
	q.type = type;
	struct nc_msg_rep r;
	int err = th_rpc(&q, &r);
	if (err < 0)
		return err;
	assert_true(r.sock >= 0 && r.sock < TH_MAX_SOCKS);
	assert_true(r.sock_gen > c->gen[r.sock]);
	c->gen[r.sock] = r.sock_gen;
	assert_int_equal(th_state(c, r.sock).gen, r.sock_gen);
	return r.sock;
}

static int sock_op(struct th_client *c, enum nc_msg_type type, int s,
                   struct nc_msg_addr *a, int arg, struct nc_msg_rep *r)
{
	struct nc_msg_req q = th_req(c, type, s);
	if (a != NULL)
		q.addr = *a;
	q.arg = arg;
	return th_rpc(&q, r);
}

int th_bind(struct th_client *c, int s, struct nc_msg_addr a)
{
	struct nc_msg_rep r;
	return sock_op(c, NC_MSG_BIND, s, &a, 0, &r);
}

int th_listen(struct th_client *c, int s, int backlog)
{
	struct nc_msg_rep r;
	return sock_op(c, NC_MSG_LISTEN, s, NULL, backlog, &r);
}

int th_connect(struct th_client *c, int s, struct nc_msg_addr a)
{
	struct nc_msg_rep r;
	return sock_op(c, NC_MSG_CONNECT, s, &a, 0, &r);
}

int th_accept(struct th_client *c, int s, struct nc_msg_addr *peer)
{
	struct nc_msg_rep r;
	int err = sock_op(c, NC_MSG_ACCEPT, s, NULL, 0, &r);
	if (err < 0)
		return err;
	assert_true(r.sock >= 0 && r.sock < TH_MAX_SOCKS);
	c->gen[r.sock] = r.sock_gen;
	if (peer != NULL)
		*peer = r.addr;
	return r.sock;
}

int th_shutdown(struct th_client *c, int s, int how)
{
	struct nc_msg_rep r;
	return sock_op(c, NC_MSG_SHUTDOWN, s, NULL, how, &r);
}

int th_close(struct th_client *c, int s)
{
	struct nc_msg_rep r;
	return sock_op(c, NC_MSG_CLOSE, s, NULL, 0, &r);
}

int th_setopt(struct th_client *c, int s, int level, int name, int v)
{
	struct nc_msg_req q = th_req(c, NC_MSG_SETSOCKOPT, s);
	q.level = level;
	q.optname = name;
	q.optlen = sizeof(v);
	memcpy(q.opt, &v, sizeof(v));
	struct nc_msg_rep r;
	return th_rpc(&q, &r);
}

int th_getopt(struct th_client *c, int s, int level, int name, int *v)
{
	struct nc_msg_req q = th_req(c, NC_MSG_GETSOCKOPT, s);
	q.level = level;
	q.optname = name;
	struct nc_msg_rep r;
	int err = th_rpc(&q, &r);
	if (err == 0) {
		assert_int_equal(r.optlen, sizeof(*v));
		memcpy(v, r.opt, sizeof(*v));
	}
	return err;
}

int th_name(struct th_client *c, int s, bool peer, struct nc_msg_addr *a)
{
	struct nc_msg_rep r;
	int err = sock_op(c, peer ? NC_MSG_GETPEERNAME : NC_MSG_GETSOCKNAME, s,
	                  NULL, 0, &r);
	*a = r.addr;
	return err;
}

/* ----------------------------------------------------------- data path */

struct nc_sock_state th_state(const struct th_client *c, int s)
{
	struct nc_sock_state st;
	const struct nc_sock_state *states =
	    nc_region_at(&c->region, c->l.states,
	                 c->p.max_sockets * sizeof(struct nc_sock_state));
	/* Events first, then the rest: pairs with the core's store fence
	 * between writing the fields and writing events. */
	uint32_t events = ck_pr_load_uint(&states[s].events);
	ck_pr_fence_load();
	memcpy(&st, &states[s], sizeof(st));
	st.events = events;
	return st;
}

bool th_take_free(struct th_client *c, struct nc_desc *d)
{
	if (c->spare_n == 0) {
		int n = nc_ring_dequeue_batch(&c->free_ring, c->spare, 64);
		assert_true(n >= 0);
		c->spare_n = (unsigned)n;
	}
	if (c->spare_n == 0)
		return false;
	*d = c->spare[--c->spare_n];
	return true;
}

void th_kick(struct th_client *c)
{
	/* Index before flag: pairs with the core's full fence between
	 * raising core_wants_wakeup and re-checking our rings. */
	ck_pr_fence_memory();
	if (ck_pr_fas_uint(&c->control->core_wants_wakeup, 0) != 0)
		nc_doorbell_ring(&c->core_bell);
}

static uint8_t *buf_at(struct th_client *c, const struct nc_desc *d)
{
	uint8_t *p = nc_region_at(&c->region, d->offset, c->p.buf_size);
	assert_non_null(p);
	return p;
}

size_t th_send(struct th_client *c, int s, const void *data, size_t len)
{
	size_t sent = 0;
	struct nc_desc d;
	while (sent < len && nc_ring_space(&c->tx[s]) > 0 &&
	       th_take_free(c, &d)) {
		size_t n =
		    len - sent < c->p.buf_size ? len - sent : c->p.buf_size;
		memcpy(buf_at(c, &d), (const uint8_t *)data + sent, n);
		d.length = (uint32_t)n;
		d.aux = (uint16_t)s;
		d.flags = 0;
		assert_int_equal(nc_ring_enqueue_batch(&c->tx[s], &d, 1), 1);
		sent += n;
	}
	th_kick(c);
	return sent;
}

static void give_back(struct th_client *c, struct nc_desc *d, int s)
{
	d->aux = (uint16_t)s;
	assert_int_equal(nc_ring_enqueue_batch(&c->done_ring, d, 1), 1);
}

size_t th_recv(struct th_client *c, int s, void *out, size_t cap, bool *eof)
{
	size_t got = 0;
	struct nc_desc d;
	while (nc_ring_space(&c->done_ring) > 0 &&
	       nc_ring_dequeue_batch(&c->rx[s], &d, 1) == 1) {
		assert_true(got + d.length <= cap);
		if (d.flags & NC_RXF_EOF) {
			assert_int_equal(d.length, 0);
			*eof = true;
		}
		memcpy((uint8_t *)out + got, buf_at(c, &d), d.length);
		got += d.length;
		give_back(c, &d, s);
	}
	th_kick(c);
	return got;
}

bool th_sendto(struct th_client *c, int s, const struct nc_msg_addr *to,
               const void *data, size_t len)
{
	struct nc_desc d;
	if (!th_take_free(c, &d))
		return false;
	struct nc_dgram_hdr h;
	memset(&h, 0, sizeof(h));
	if (to != NULL) {
		h.family = to->family;
		h.port = to->port;
		memcpy(h.addr, to->addr, sizeof(h.addr));
	}
	uint8_t *b = buf_at(c, &d);
	memcpy(b, &h, sizeof(h));
	memcpy(b + sizeof(h), data, len);
	d.length = (uint32_t)(sizeof(h) + len);
	d.aux = (uint16_t)s;
	assert_int_equal(nc_ring_enqueue_batch(&c->tx[s], &d, 1), 1);
	th_kick(c);
	return true;
}

long th_recvfrom(struct th_client *c, int s, struct nc_msg_addr *from,
                 void *out, size_t cap)
{
	struct nc_desc d;
	if (nc_ring_dequeue_batch(&c->rx[s], &d, 1) != 1)
		return -1;
	struct nc_dgram_hdr h;
	assert_true(d.length >= sizeof(h));
	const uint8_t *b = buf_at(c, &d);
	memcpy(&h, b, sizeof(h));
	size_t len = d.length - sizeof(h);
	assert_true(len <= cap);
	memcpy(out, b + sizeof(h), len);
	memset(from, 0, sizeof(*from));
	from->family = h.family;
	from->port = h.port;
	memcpy(from->addr, h.addr, sizeof(from->addr));
	give_back(c, &d, s);
	th_kick(c);
	return (long)len;
}

bool th_wait_events(struct th_client *c, int s, uint32_t mask, uint32_t max_ms)
{
	for (uint32_t t = 0; t <= max_ms; t += 10) {
		if ((th_state(c, s).events & mask) == mask)
			return true;
		th_advance(10);
	}
	return false;
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 131 + (i >> 9));
}

void th_transfer(struct th_client *a, int from, struct th_client *b, int to,
                 size_t len)
{
	uint8_t *src = malloc(len), *dst = malloc(len);
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < len; i++)
		src[i] = pattern(i);
	size_t sent = 0, got = 0;
	bool eof = false;
	for (int round = 0; got < len && round < 20000; round++) {
		size_t s = th_send(a, from, src + sent, len - sent);
		sent += s;
		th_pump();
		size_t r = th_recv(b, to, dst + got, len - got, &eof);
		got += r;
		assert_false(eof);
		if (s == 0 && r == 0)
			th_advance(10); /* let lwIP's timers run */
	}
	assert_int_equal(got, len);
	assert_memory_equal(src, dst, len);
	free(src);
	free(dst);
}

/* ------------------------------------------------------------- leaks */

int th_open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

int th_client_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "netcore-client") != NULL)
			n++;
	fclose(f);
	return n;
}
