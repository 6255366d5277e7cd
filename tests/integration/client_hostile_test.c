/*
 * A hostile client scribbles its whole region while two good clients move
 * 64 MiB each way (issue 4's fault acceptance: "a client that scribbles
 * its region can hurt only itself: it is disconnected, others never
 * notice").
 *
 * Good clients G1 and G2 (children in empty network namespaces, libclient)
 * each upload 64 MiB to a kernel-side server, which checks every byte
 * against the pattern, and download 64 MiB, checked here. At the same time
 * client H (another such child) attaches over and over without libclient:
 * it speaks the attach handshake itself (proto/msg.h: NC_MSG_ATTACH, the
 * reply with SCM_RIGHTS [memfd, client_bell, core_bell]), maps the memfd,
 * opens two sockets and connects one to the server, moves data by the
 * rules (8 buffers out; the echo comes back onto its rx ring and stays
 * there, so buffers are lent both ways), then attacks, rings
 * the core doorbell and asks the broker something, again and again, until
 * the broker answers -ECONNRESET and closes its attach socket
 * (docs/sockets-spec.md, "Death and recovery"). Each round must end that
 * way within 10 s; then H attaches anew. The attacks take turns: random
 * bytes over the whole mapping (header, rings, states, buffers); a tx
 * descriptor that names no buffer's start, enqueued by the ring's rules;
 * a done descriptor that "returns" a buffer the core lent for TX.
 *
 * Checked: both good transfers complete with every byte right; H was
 * disconnected in every round, and rounds ran while the good transfers
 * did; the core, the broker and the phy driver are all still running; the
 * broker ends with no client and no memory counted; the core logged a
 * refused descriptor of each forged kind; stopped with SIGTERM, every
 * service exits 0 (under AddressSanitizer, LeakSanitizer checks them
 * then), the core having counted one broken client per round and nothing
 * left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/client_region.h"
#include "proto/msg.h"
#include "shm/shm.h"
#include "tests/integration/faultkit.h"

#define PORT       9000
#define BYTES      (64 * FK_MIB)
#define XFER_MS    30000  /* any one send/recv of a good client */
#define ROUND_MS   10000  /* scribbling to disconnection, per round */
#define OVERALL_MS 240000 /* the good clients, start to finish */

enum {
	MSG_FAIL = 1, /* value: line */
	MSG_READY,
	MSG_ROUND, /* H: value = ms from the first scribble to the hang-up */
	MSG_DONE,  /* G: value = ms for both transfers */
	CMD_GO = 100,
	CMD_STOP,
};

static struct nc_testbed tb;
static char log_path[128];
static bool passed;

static int teardown(void **state);

/* A failed setup leaves nothing behind (cmocka skips the teardown). */
static int setup_failed(void)
{
	teardown(NULL);
	return -1;
}

static int setup(void **state)
{
	(void)state;
	if (fk_testbed_start(&tb, "clhostile", NULL, log_path,
	                     sizeof(log_path)) != 0 ||
	    nc_testbed_enter(&tb) != 0)
		return setup_failed();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fk_reap_all();
	fk_testbed_stop(&tb, log_path, !passed);
	return 0;
}

/* ------------------------------------------------------------ children */

static const char *who = "?";
static int report_fd = -1;

static void child_fail(int line, const char *what, int err)
{
	fprintf(stderr, "client %s: line %d: %s (errno %d: %s)\n", who, line,
	        what, err, strerror(err));
	fk_msg_send(report_fd, MSG_FAIL, line);
	_exit(1);
}

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond))                                                   \
			child_fail(__LINE__, #cond, errno);                    \
	} while (0)

static void child_start(const char *name, int report)
{
	who = name;
	report_fd = report;
	CHECK(unshare(CLONE_NEWNET) == 0);
}

static void wait_go(int cmd)
{
	struct fk_msg m;
	int err = fk_msg_recv(cmd, &m, fk_now_ms() + 60000);
	errno = -err;
	CHECK(err == 0 && m.kind == CMD_GO);
}

/* G: upload, then download, 64 MiB each, every byte checked. */
static void good_client(const char *name, uint64_t seed, int report, int cmd)
{
	child_start(name, report);
	struct nc_client *c;
	int err = fk_nc_attach(tb.broker_socket, &c, fk_now_ms() + 10000, NULL);
	errno = -err;
	CHECK(err == 0);
	CHECK(fk_msg_send(report, MSG_READY, 0) == 0);
	wait_go(cmd);
	int64_t start = fk_now_ms();
	char why[128] = "";
	err = fk_nc_upload(c, NC_TB_KERNEL4, PORT, seed, BYTES, XFER_MS, why);
	if (err)
		fprintf(stderr, "client %s: %s\n", name, why);
	errno = -err;
	CHECK(err == 0);
	err = fk_nc_download(c, NC_TB_KERNEL4, PORT, seed + 1, BYTES, XFER_MS,
	                     why);
	if (err)
		fprintf(stderr, "client %s: %s\n", name, why);
	errno = -err;
	CHECK(err == 0);
	CHECK(nc_client_detach(c) == 0);
	CHECK(fk_msg_send(report, MSG_DONE, fk_now_ms() - start) == 0);
	_exit(0);
}

static void good_1(int report, int cmd)
{
	good_client("G1", 0x6731000000ull, report, cmd);
}

static void good_2(int report, int cmd)
{
	good_client("G2", 0x6732000000ull, report, cmd);
}

/* ---------------------------------------------------- H, the raw client */

struct raw {
	int ctl;
	int memfd, client_bell, core_bell;
	uint8_t *map;
	size_t size;
	uint32_t next_id;
	struct nc_client_params params; /* from the ATTACH reply */
};

/* Waits for one reply on the attach socket. 0, -EPIPE at EOF (the broker
 * hung up), -ETIMEDOUT, -EPROTO, or -errno. */
static int raw_recv(int fd, struct nc_msg_rep *rep, int *fds, int *nfds,
                    int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int left = (int)(deadline - fk_now_ms());
	if (left < 0)
		left = 0;
	int r = poll(&p, 1, left);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = rep, .iov_len = sizeof(*rep)};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = &ctl,
	                    .msg_controllen = sizeof(ctl)};
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == ECONNRESET ? -EPIPE : -errno;
	if (n == 0)
		return -EPIPE;
	*nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
	     c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k && *nfds < 3; i++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int),
			       sizeof(int));
	}
	return nc_msg_check(rep, (size_t)n, sizeof(*rep)) == 0 ? 0 : -EPROTO;
}

/* One request, one reply: 0 (result in rep->result), -EPIPE when the
 * broker hung up (before or instead of replying), or -errno. */
static int raw_call(struct raw *h, struct nc_msg_req *req,
                    enum nc_msg_type type, struct nc_msg_rep *rep)
{
	nc_msg_init(&req->hdr, type, h->next_id++, sizeof(*req));
	ssize_t n = send(h->ctl, req, sizeof(*req), MSG_NOSIGNAL);
	if (n < 0)
		return errno == EPIPE || errno == ECONNRESET ? -EPIPE : -errno;
	int fds[3], nfds = 0;
	int err = raw_recv(h->ctl, rep, fds, &nfds, fk_now_ms() + 10000);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (!err && (rep->hdr.id != req->hdr.id || rep->hdr.type != type))
		err = -EPROTO;
	return err;
}

static void raw_close(struct raw *h)
{
	if (h->map != NULL)
		munmap(h->map, h->size);
	close(h->ctl);
	close(h->memfd);
	close(h->client_bell);
	close(h->core_bell);
	memset(h, 0, sizeof(*h));
}

/* The handshake, by hand. 0, or -errno (ENOBUFS etc. from the broker). */
static int raw_attach(struct raw *h)
{
	memset(h, 0, sizeof(*h));
	h->ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	CHECK(h->ctl >= 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", tb.broker_socket);
	CHECK(connect(h->ctl, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	struct nc_msg_req req;
	memset(&req, 0, sizeof(req));
	nc_msg_init(&req.hdr, NC_MSG_ATTACH, 1, sizeof(req));
	CHECK(send(h->ctl, &req, sizeof(req), MSG_NOSIGNAL) ==
	      (ssize_t)sizeof(req));
	struct nc_msg_rep rep;
	int fds[3], nfds = 0;
	int err = raw_recv(h->ctl, &rep, fds, &nfds, fk_now_ms() + 10000);
	errno = -err;
	CHECK(err == 0);
	CHECK(rep.hdr.type == NC_MSG_ATTACH && rep.hdr.id == 1);
	if (rep.result < 0) {
		CHECK(nfds == 0);
		close(h->ctl);
		return rep.result;
	}
	CHECK(nfds == 3);
	h->memfd = fds[0];
	h->client_bell = fds[1];
	h->core_bell = fds[2];
	struct stat st;
	CHECK(fstat(h->memfd, &st) == 0 && st.st_size > 0);
	h->size = (size_t)st.st_size;
	h->map = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_SHARED,
	              h->memfd, 0);
	CHECK(h->map != MAP_FAILED);
	h->next_id = 2;
	h->params = (struct nc_client_params){rep.max_sockets, rep.ring_slots,
	                                      rep.buf_count, rep.buf_size};
	return 0;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void ring_core(struct raw *h)
{
	uint64_t one = 1;
	(void)!write(h->core_bell, &one, sizeof(one));
}

/* Random bytes over the whole region, header and rings included. */
static void scribble(struct raw *h)
{
	uint64_t *w = (uint64_t *)h->map;
	for (size_t i = 0; i < h->size / 8; i++)
		w[i] = next_random();
	ring_core(h);
}

enum attack {
	RANDOM,      /* scribble everything */
	FORGED_TX,   /* by the rules, a tx descriptor no buffer starts at */
	FORGED_DONE, /* by the rules, "returns" a buffer lent for TX */
	ATTACKS
};

static const char *const attack_names[ATTACKS] = {
    "random bytes over the whole region",
    "a forged tx descriptor (offset inside a buffer)",
    "a forged done descriptor (a TX buffer returned as RX)",
};

/* H's own view of its region, through the shm library, as a client. */
struct view {
	struct nc_region region;
	struct nc_client_layout l;
	struct nc_ring ring; /* forged kinds: the ring it forges on */
	struct nc_desc desc;
};

static void view_open(struct view *v, struct raw *h)
{
	CHECK(nc_client_layout(&h->params, &v->l) == 0);
	struct nc_region_expect expect = {.kind = NC_CLIENT_REGION_KIND};
	CHECK(nc_region_attach(&v->region, h->memfd, &expect) == 0);
}

/* Wait (bounded) for a condition on the region: 1 ms looks. */
#define WAIT_FOR(cond, ms)                                                     \
	do {                                                                   \
		int64_t until_ = fk_now_ms() + (ms);                           \
		while (!(cond)) {                                              \
			CHECK(fk_now_ms() < until_);                           \
			poll(NULL, 0, 1);                                      \
		}                                                              \
	} while (0)

/*
 * By the rules first: once connected, 8 buffers of data (an echo header
 * and the pattern) from the free ring onto the socket's tx ring, then
 * wait for the echo to land on its rx ring, and never take it. When the
 * attack comes, the core holds this client's data in flight and has
 * buffers lent to it both ways, all to be taken back.
 */
static void prime(struct view *v, struct raw *h, int32_t sock)
{
	const struct nc_sock_state *st =
	    (const struct nc_sock_state *)((const uint8_t *)v->region.base +
	                                   v->l.states +
	                                   (size_t)sock *
	                                       sizeof(struct nc_sock_state));
	WAIT_FOR(__atomic_load_n(&st->phase, __ATOMIC_ACQUIRE) ==
	             NC_SS_CONNECTED,
	         5000);
	struct nc_ring free_ring, tx, rx;
	uint32_t slots = h->params.ring_slots;
	CHECK(nc_ring_attach(&free_ring, &v->region, v->l.free_ring, slots,
	                     NC_RING_CONSUMER) == 0);
	CHECK(nc_ring_attach(&tx, &v->region,
	                     nc_client_tx_ring(&v->l, (uint32_t)sock), slots,
	                     NC_RING_PRODUCER) == 0);
	CHECK(nc_ring_attach(&rx, &v->region,
	                     nc_client_rx_ring(&v->l, (uint32_t)sock), slots,
	                     NC_RING_CONSUMER) == 0);
	struct nc_desc d[8];
	int n = 0;
	WAIT_FOR((n = nc_ring_dequeue_batch(&free_ring, d, 8)) > 0, 5000);
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *buf =
		    nc_region_at(&v->region, d[i].offset, h->params.buf_size);
		CHECK(buf != NULL);
		uint32_t len = h->params.buf_size;
		if (i == 0) {
			struct fk_hdr hdr = {.magic = FK_HDR_MAGIC,
			                     .mode = FK_ECHO,
			                     .length = 1};
			memcpy(buf, &hdr, sizeof(hdr));
			fk_pat_fill(1, 0, buf + sizeof(hdr), len - sizeof(hdr));
			off = len - sizeof(hdr);
		} else {
			fk_pat_fill(1, off, buf, len);
			off += len;
		}
		d[i].length = len;
		d[i].aux = (uint16_t)sock;
	}
	CHECK(nc_ring_enqueue_batch(&tx, d, (unsigned)n) == n);
	ring_core(h);
	WAIT_FOR(nc_ring_ready(&rx) > 0, 5000);
}

/* The forged kinds: a well-formed ring, a descriptor the core must refuse. */
static void forger_open(struct view *v, struct raw *h, enum attack a,
                        int32_t sock)
{
	uint64_t at = a == FORGED_TX ? nc_client_tx_ring(&v->l, (uint32_t)sock)
	                             : v->l.done_ring;
	CHECK(nc_ring_attach(&v->ring, &v->region, at, h->params.ring_slots,
	                     NC_RING_PRODUCER) == 0);
	/* TX: 64 bytes into the first buffer. DONE: the first buffer, which
	 * the core lent on the free ring (for TX), named as RX of sock 0. */
	v->desc = (struct nc_desc){
	    .offset = v->l.pool + (a == FORGED_TX ? 64 : 0),
	    .length = 100,
	    .aux = (uint16_t)(a == FORGED_TX ? sock : 0),
	};
}

static void forge(struct view *v, struct raw *h)
{
	/* 0 when the ring is full: the ones before are still waiting. */
	CHECK(nc_ring_enqueue_batch(&v->ring, &v->desc, 1) >= 0);
	ring_core(h);
}

/* One round: attach, two sockets, attack until hung up. Returns the ms
 * from the first attack to the hang-up. */
static int64_t hostile_round(int round, int cmd)
{
	struct raw h;
	int err;
	int64_t until = fk_now_ms() + 10000;
	while ((err = raw_attach(&h)) != 0) {
		/* Not now (memory counted for a round still being removed):
		 * again, bounded. */
		errno = -err;
		CHECK((err == -ENOBUFS || err == -EAGAIN || err == -ENFILE) &&
		      fk_now_ms() < until);
		poll(NULL, 0, 1);
	}
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	memset(&req, 0, sizeof(req));
	req.sock = -1;
	req.domain = AF_INET;
	req.type = SOCK_STREAM;
	CHECK(raw_call(&h, &req, NC_MSG_SOCKET, &rep) == 0 && rep.result >= 0);
	int32_t sock = rep.sock;
	uint32_t gen = rep.sock_gen;
	CHECK(raw_call(&h, &req, NC_MSG_SOCKET, &rep) == 0 && rep.result >= 0);
	memset(&req, 0, sizeof(req));
	req.sock = sock;
	req.sock_gen = gen;
	req.addr.family = AF_INET;
	req.addr.port = PORT;
	inet_pton(AF_INET, NC_TB_KERNEL4, req.addr.addr);
	CHECK(raw_call(&h, &req, NC_MSG_CONNECT, &rep) == 0 &&
	      (rep.result == 0 || rep.result == -EINPROGRESS));
	enum attack a = (enum attack)(round % ATTACKS);
	struct view v;
	view_open(&v, &h);
	prime(&v, &h, sock);
	if (a != RANDOM)
		forger_open(&v, &h, a, sock);
	if (round == 0) {
		CHECK(fk_msg_send(report_fd, MSG_READY, 0) == 0);
		wait_go(cmd);
	}
	int64_t start = fk_now_ms();
	for (;;) {
		if (fk_now_ms() - start >= ROUND_MS) {
			fprintf(stderr,
			        "client H: round %d: %s for %d ms, and "
			        "still attached\n",
			        round, attack_names[a], ROUND_MS);
			CHECK(!"disconnected in time");
		}
		if (a == RANDOM)
			scribble(&h);
		else
			forge(&v, &h);
		memset(&req, 0, sizeof(req));
		req.sock = sock;
		req.sock_gen = gen;
		err = raw_call(&h, &req, NC_MSG_GETSOCKNAME, &rep);
		if (err == -EPIPE)
			break; /* hung up without a word: disconnected too */
		errno = -err;
		CHECK(err == 0);
		if (rep.result != -ECONNRESET) {
			poll(NULL, 0, 1); /* not noticed yet: again */
			continue;
		}
		/* The broker closes the attach socket after that reply. */
		int fds[3], nfds = 0;
		err = raw_recv(h.ctl, &rep, fds, &nfds, fk_now_ms() + 5000);
		errno = -err;
		CHECK(err == -EPIPE);
		break;
	}
	int64_t took = fk_now_ms() - start;
	nc_region_close(&v.region);
	raw_close(&h);
	return took;
}

static void hostile(int report, int cmd)
{
	child_start("H", report);
	rng ^= (uint64_t)getpid() << 20;
	bool stop = false;
	/* Every kind of attack at least once, then until told to stop. */
	for (int round = 0; !stop || round % ATTACKS != 0; round++) {
		int64_t took = hostile_round(round, cmd);
		CHECK(fk_msg_send(report, MSG_ROUND, took) == 0);
		struct fk_msg m;
		if (fk_msg_recv(cmd, &m, fk_now_ms()) == 0 &&
		    m.kind == CMD_STOP)
			stop = true;
	}
	CHECK(fk_msg_send(report, MSG_DONE, 0) == 0);
	_exit(0);
}

/* -------------------------------------------------------------- parent */

struct child {
	const char *name;
	pid_t pid;
	int report, cmd; /* our ends */
	bool done;
};

static void start_child(struct child *ch, const char *name,
                        void (*fn)(int report, int cmd))
{
	int rep[2], cmd[2];
	assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
	assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
	ch->name = name;
	ch->done = false;
	ch->pid = fk_fork();
	assert_true(ch->pid >= 0);
	if (ch->pid == 0) {
		close(rep[0]);
		close(cmd[1]);
		fn(rep[1], cmd[0]);
		_exit(1);
	}
	close(rep[1]);
	close(cmd[0]);
	ch->report = rep[0];
	ch->cmd = cmd[1];
}

/* The next message from any child not done, by the deadline. */
static struct child *next_msg(struct child **chs, int n, struct fk_msg *m,
                              int64_t deadline)
{
	for (;;) {
		struct pollfd p[4];
		struct child *of[4];
		int k = 0;
		for (int i = 0; i < n; i++) {
			if (chs[i]->done)
				continue;
			of[k] = chs[i];
			p[k++] = (struct pollfd){.fd = chs[i]->report,
			                         .events = POLLIN};
		}
		int left = (int)(deadline - fk_now_ms());
		if (left <= 0)
			fail_msg("no word from the clients in time");
		if (poll(p, (nfds_t)k, left) <= 0)
			continue;
		for (int i = 0; i < k; i++) {
			if (p[i].revents == 0)
				continue;
			int err = fk_msg_recv(of[i]->report, m, deadline);
			if (err) {
				int status = 0;
				char buf[32];
				fk_wait(of[i]->pid, fk_now_ms() + 5000,
				        &status);
				fail_msg(
				    "client %s: %s (%s)", of[i]->name,
				    err == -EPIPE ? "died" : strerror(-err),
				    fk_status_str(status, buf, sizeof(buf)));
			}
			if (m->kind == MSG_FAIL)
				fail_msg("client %s failed at line %lld (its "
				         "message is above)",
				         of[i]->name, (long long)m->value);
			return of[i];
		}
	}
}

static void exits_zero(struct child *ch)
{
	int status;
	char buf[32];
	assert_int_equal(fk_wait(ch->pid, fk_now_ms() + 10000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("client %s: %s", ch->name,
		         fk_status_str(status, buf, sizeof(buf)));
}

static void scribbler_hurts_only_itself(void **state)
{
	(void)state;
	const uint16_t ports[] = {PORT};
	pid_t server = fk_kserver_start(NC_TB_KERNEL4, ports, 1);
	assert_true(server > 0);

	struct child g1, g2, h;
	struct child *all[3] = {&g1, &g2, &h};
	start_child(&g1, "G1", good_1);
	start_child(&g2, "G2", good_2);
	start_child(&h, "H", hostile);
	struct fk_msg m;
	for (int ready = 0; ready < 3; ready++) {
		next_msg(all, 3, &m, fk_now_ms() + 30000);
		assert_int_equal(m.kind, MSG_READY);
	}
	int64_t start = fk_now_ms();
	for (int i = 0; i < 3; i++)
		assert_int_equal(fk_msg_send(all[i]->cmd, CMD_GO, 0), 0);

	long rounds = 0, rounds_during = 0;
	int64_t worst_round = 0, sum_round = 0, g_ms[2] = {0, 0};
	int good_done = 0;
	bool stop_sent = false;
	while (!h.done) {
		struct child *from =
		    next_msg(all, 3, &m, start + OVERALL_MS + 20000);
		if (from == &h && m.kind == MSG_ROUND) {
			rounds++;
			rounds_during += good_done < 2;
			sum_round += m.value;
			if (m.value > worst_round)
				worst_round = m.value;
		} else if (m.kind == MSG_DONE) {
			from->done = true;
			if (from != &h)
				g_ms[from == &g2] = m.value;
			good_done += from != &h;
		} else {
			fail_msg("client %s: unexpected message %d", from->name,
			         m.kind);
		}
		if (good_done == 2 && !stop_sent) {
			assert_int_equal(fk_msg_send(h.cmd, CMD_STOP, 0), 0);
			stop_sent = true;
		}
	}
	exits_zero(&g1);
	exits_zero(&g2);
	exits_zero(&h);

	printf("good clients: 64 MiB up and 64 MiB down each, every byte "
	       "verified: G1 in %.2f s, G2 in %.2f s\n",
	       (double)g_ms[0] / 1000, (double)g_ms[1] / 1000);
	printf("hostile client: %ld rounds (%ld during the good transfers), "
	       "each disconnected; attack to hang-up %.1f ms on average, "
	       "%lld ms at worst\n",
	       rounds, rounds_during, rounds ? (double)sum_round / rounds : 0.0,
	       (long long)worst_round);
	long disconnected = fk_log_count(log_path, "disconnected:");
	printf("the core logged %ld disconnections of a broken client:",
	       disconnected);
	const char *whys[] = {"free ring index", "done ring index",
	                      "tx ring index",   "rx ring index",
	                      "done descriptor", "tx descriptor"};
	long counts[6];
	for (size_t i = 0; i < sizeof(whys) / sizeof(whys[0]); i++) {
		char needle[64];
		snprintf(needle, sizeof(needle), "disconnected: %s", whys[i]);
		counts[i] = fk_log_count(log_path, needle);
		if (counts[i] > 0)
			printf(" %s %ld;", whys[i], counts[i]);
	}
	printf("\n");
	assert_true(fk_service_alive(tb.core_pid));
	assert_true(fk_service_alive(tb.broker_pid));
	assert_true(fk_service_alive(tb.phy_pid));
	char dump[512];
	int err = fk_wait_broker_idle(&tb, log_path, dump, sizeof(dump),
	                              fk_now_ms() + 10000);
	printf("broker afterwards: %s\n", dump);
	assert_int_equal(err, 0);
	assert_true(rounds_during >= 1);
	assert_true(g_ms[0] > 0 && g_ms[1] > 0);
	assert_true(disconnected >= rounds);
	assert_true(rounds >= 3);
	assert_true(counts[4] >= 1); /* the forged done descriptors */
	assert_true(counts[5] >= 1); /* the forged tx descriptors */
	fk_kill(server);
	struct fk_core_final final;
	char summary[512];
	int ended =
	    fk_services_end(&tb, log_path, &final, summary, sizeof(summary));
	printf("%s\n", summary);
	assert_int_equal(ended, 0);
	assert_int_equal(final.added, (unsigned long long)rounds + 2);
	assert_int_equal(final.broken, (unsigned long long)rounds);
	passed = true;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(scribbler_hurts_only_itself),
	};
	return cmocka_run_group_tests_name("client_hostile", tests, setup,
	                                   teardown);
}
