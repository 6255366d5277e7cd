/*
 * echo_bench: TCP through netcore, measured in the same run and with the same
 * client as the kernel's own TCP across a veth pair.
 *
 * Three paths, each an IPv4 echo server that the client talks to:
 *   - netcore: the testbed (tests/testbed). A phy driver and a core sit
 *     around a TUN device "nctun0" (MTU 65520) in a namespace of the
 *     bench's own, and the core's diagnostic echo (lwIP) answers at
 *     10.77.0.2. The client runs in that namespace, so every byte goes
 *     client -> kernel TCP -> TUN -> phy driver -> phy region -> core (lwIP)
 *     and the same way back.
 *   - kernel veth 65520: two more namespaces, one for the client and one for
 *     a kernel echo server, joined by a veth pair with netcore's MTU. The
 *     server is this program, forked. It is one process serving one
 *     connection at a time with a blocking read -> write loop of up to
 *     256 KiB, with TCP_NODELAY (lwIP's echo disables Nagle too). Both ends
 *     are kernel TCP.
 *   - kernel veth 1500: the same server through a second veth pair at the
 *     veth default MTU. veth still moves GSO super-packets of up to 64 KiB,
 *     so this row mostly shows how little the MTU matters to the kernel.
 *
 * The client is the same for all three: this process, setns()'d into the
 * path's client namespace before each socket is made.
 *   - Bulk: one connection. N MiB are written and read back at the same
 *     time (poll on a non-blocking socket, up to 256 KiB per call), and
 *     every byte is compared with what was sent. MiB/s is N over the wall
 *     time, which is what each direction carried. "CPUs" is CPU seconds over
 *     wall seconds: how many of the machine's CPUs the path kept busy.
 *   - 1-byte request/response: one connection per round with TCP_NODELAY. A
 *     blocking write of 1 byte, then a blocking read of 1 byte, with a clock
 *     read on either side of each round trip. Median, p99, min and mean in
 *     µs, over all rounds' samples; warm-up round trips are not counted.
 *   - Connections: connect, 1 byte there and back, close. Connections per
 *     second and the time each one took.
 *
 * Verification. Bulk bytes come from a table whose period, 1 MiB + 13
 * bytes, no segment or buffer size divides. Each received byte is compared
 * with the table at its stream offset, so a lost, duplicated, reordered or
 * damaged byte shows, and the count must match too. The integration tests'
 * nc_echo_pattern is not used: computing it byte by byte caps one CPU near
 * 700 MiB/s, which would measure the client rather than the path. Every
 * request/response byte and every connection's byte is checked as well.
 *
 * CPU. The client's is getrusage(RUSAGE_SELF). The servers' is their time
 * on CPU from /proc/<pid>/task/<tid>/schedstat (ns, all threads):
 * phy_driver + netcore_core for netcore, the echo child for the kernel.
 * (utime + stime from /proc/<pid>/stat count 10 ms ticks, too coarse for a
 * 20 ms transfer.) The kernel's own work runs in whichever process caused
 * it: a TUN write in the phy driver, a veth send in the sender's softirq.
 * So "total" is the comparable figure, not "server". Work the kernel defers
 * to the ksoftirqd threads is shown apart; other work on the machine can
 * land there too. CPU per GiB counts GiB echoed: each byte crossed the path
 * twice, there and back. At the end, /proc/stat says how many CPUs other
 * work on the machine kept busy while the bench measured.
 *
 * Placement. A wake-up that crosses CPUs costs several times one that
 * stays. A netcore round trip can take four wake-ups (phy driver, core,
 * phy driver, client) where the kernel path takes two (server, client). So
 * the latency tables run twice: "1 CPU" with the client and the path's
 * servers all pinned to the first usable CPU, and "any" where the
 * scheduler puts them. Bulk always runs where the scheduler puts it.
 *
 * Interleaving. Each row is measured in R rounds. Within a round, each kind
 * of measurement runs on every path in turn: netcore first in even rounds,
 * last in odd ones. A burst of other work on a shared machine thus hits all
 * paths alike. "spread" is half the range of the per-round figures (rate,
 * or median) as a share of the row's figure. Ratios within one run are more
 * trustworthy than absolute figures across runs.
 *
 * Bounded and clean. Every wait is bounded: 5 s for a connect, a round
 * trip or the server's start, 10 s without progress in a bulk transfer,
 * 10 s per set-up command. A failed row is not measured again, and any
 * failure makes the exit status 1. The server child dies with us
 * (PR_SET_PDEATHSIG). On every way out, SIGINT and SIGTERM included, the
 * bench stops the testbed (both services killed by pid and reaped, its
 * namespace deleted), kills and reaps the kernel server, and deletes the
 * kernel path's two namespaces. Only a SIGKILL of the bench leaves them
 * behind.
 */
#include "bench/benchkit.h"
#include "tests/testbed/testbed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHUNK          (256 * 1024) /* bytes per send/recv call, both ends */
#define PERIOD         ((1u << 20) + 13u) /* of the bulk byte table */
#define WAIT_MS        5000  /* connect, one round trip, server start */
#define STALL_MS       10000 /* bulk: no byte moved this long = failure */
#define CMD_TIMEOUT_MS 10000 /* each `ip` command */
#define MIB            (1024.0 * 1024.0)
#define GIB            (1024.0 * MIB)
#define SETTLE_MS      200 /* the phy's grant must hold this long first */

#define PHY_BIN         "services/phy_driver/phy_driver"
#define RUNFILES_SUFFIX ".runfiles/netcore"

/* The kernel path: client namespace side .1, server namespace side .2. */
#define K_JUMBO_MTU 65520
#define K_STD_MTU   1500
#define K_CLI0      "ncbc0"
#define K_SRV0      "ncbs0"
#define K_CLI1      "ncbc1"
#define K_SRV1      "ncbs1"
#define K_NET0      "10.78.0"
#define K_NET1      "10.78.1"

struct config {
	bool quick;
	uint64_t mib;    /* per bulk transfer; each row does `rounds` */
	uint64_t rts;    /* measured round trips per row (all rounds) */
	uint64_t warmup; /* unmeasured round trips per round */
	uint64_t conns;  /* connections per row (all rounds) */
	unsigned int rounds;
	uint16_t port;
};

/* ------------------------------------------------------------ utilities */

/* Says what went wrong; returns err (a negative errno) for chaining. */
static int fail(const char *where, const char *what, int err)
{
	fprintf(stderr, "echo_bench: %s: %s: %s\n", where, what,
	        strerror(err < 0 ? -err : err));
	return err < 0 ? err : -err;
}

/* ---------------------------------------------------- children, commands */

/* Runs a command (stdout discarded, stderr kept), bounded. 0 on exit 0. */
static int run_cmd(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		return fail(argv[0], "cannot start", err);
	int status = bk_reap_within(pid, CMD_TIMEOUT_MS);
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "echo_bench: command failed:");
	for (int i = 0; argv[i] != NULL; i++)
		fprintf(stderr, " %s", argv[i]);
	fprintf(stderr, "\n");
	return -EIO;
}

/* ------------------------------------------------------ the kernel path */

/*
 * Two namespaces, client and server, joined by two veth pairs: K_CLI0/K_SRV0
 * at K_JUMBO_MTU (K_NET0.1 and .2) and K_CLI1/K_SRV1 at K_STD_MTU (K_NET1.1
 * and .2). The addresses exist only inside these namespaces.
 */
struct knet {
	char cli[32], srv[32]; /* namespace names */
	char cli_path[64], srv_path[64];
	bool cli_made, srv_made;
	pid_t server;
};

static int ns_add(const char *name, bool *made)
{
	char *add[] = {"ip", "netns", "add", (char *)name, NULL};
	char *lo[] = {"ip",  "-n", (char *)name, "link",
	              "set", "lo", "up",         NULL};
	if (run_cmd(add) != 0)
		return -EIO;
	*made = true;
	return run_cmd(lo);
}

/* Configures one end of a veth pair: MTU, address, up. */
static int veth_end(const char *ns, const char *dev, int mtu, const char *net,
                    int host)
{
	char mtus[16], cidr[32];
	snprintf(mtus, sizeof(mtus), "%d", mtu);
	snprintf(cidr, sizeof(cidr), "%s.%d/24", net, host);
	char *set_mtu[] = {"ip",        "-n",  (char *)ns, "link", "set",
	                   (char *)dev, "mtu", mtus,       NULL};
	char *addr[] = {"ip", "-n",  (char *)ns,  "addr", "add",
	                cidr, "dev", (char *)dev, NULL};
	char *up[] = {"ip",  "-n",        (char *)ns, "link",
	              "set", (char *)dev, "up",       NULL};
	int err = run_cmd(set_mtu);
	err = err ?: run_cmd(addr);
	return err ?: run_cmd(up);
}

static int veth_pair(struct knet *k, const char *cdev, const char *sdev,
                     int mtu, const char *net)
{
	char *add[] = {"ip",         "-n",    k->cli, "link", "add",
	               (char *)cdev, "type",  "veth", "peer", "name",
	               (char *)sdev, "netns", k->srv, NULL};
	int err = run_cmd(add);
	err = err ?: veth_end(k->cli, cdev, mtu, net, 1);
	return err ?: veth_end(k->srv, sdev, mtu, net, 2);
}

static void knet_delete(struct knet *k)
{
	char *del_c[] = {"ip", "netns", "del", k->cli, NULL};
	char *del_s[] = {"ip", "netns", "del", k->srv, NULL};
	if (k->cli_made && run_cmd(del_c) == 0)
		k->cli_made = false;
	if (k->srv_made && run_cmd(del_s) == 0)
		k->srv_made = false;
}

static int knet_create(struct knet *k)
{
	snprintf(k->cli, sizeof(k->cli), "ncb-c-%d", (int)getpid());
	snprintf(k->srv, sizeof(k->srv), "ncb-s-%d", (int)getpid());
	snprintf(k->cli_path, sizeof(k->cli_path), "/run/netns/%s", k->cli);
	snprintf(k->srv_path, sizeof(k->srv_path), "/run/netns/%s", k->srv);
	int err = ns_add(k->cli, &k->cli_made);
	err = err ?: ns_add(k->srv, &k->srv_made);
	err = err ?: veth_pair(k, K_CLI0, K_SRV0, K_JUMBO_MTU, K_NET0);
	return err ?: veth_pair(k, K_CLI1, K_SRV1, K_STD_MTU, K_NET1);
}

/* ------------------------------------------------- the kernel echo server */

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Echoes one connection until the peer closes it or 2 * WAIT_MS pass
 * without a byte. */
static void kserver_serve(int fd)
{
	static uint8_t buf[CHUNK];
	set_nodelay(fd);
	bk_set_timeouts(fd, 2 * WAIT_MS);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || bk_write_all(fd, buf, (size_t)n) != 0)
			return;
	}
}

static int kserver_listen(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_ANY)};
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 128) != 0)
		return -1;
	return fd;
}

/* The forked server: into its namespace, listen, say so, serve forever
 * (until the bench kills it, or dies itself). */
static void kserver_main(const char *ns_path, uint16_t port, int ready_fd,
                         pid_t parent)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
	    bk_enter_ns_path(ns_path) != 0)
		_exit(3);
	int lfd = kserver_listen(port);
	if (lfd < 0 || write(ready_fd, "r", 1) != 1)
		_exit(4);
	close(ready_fd);
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (c < 0)
			_exit(5);
		kserver_serve(c);
		close(c);
	}
}

/* Forks the server and waits (bounded) until it listens. */
static int kserver_start(struct knet *k, uint16_t port)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return fail("kernel server", "pipe", errno);
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		kserver_main(k->srv_path, port, p[1], parent);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return fail("kernel server", "fork", errno);
	}
	k->server = pid;
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	char c = 0;
	bool ready = poll(&pf, 1, WAIT_MS) == 1 && read(p[0], &c, 1) == 1;
	close(p[0]);
	return ready ? 0 : fail("kernel server", "did not start", ECHILD);
}

static void kserver_stop(struct knet *k)
{
	if (k->server <= 0)
		return;
	kill(k->server, SIGKILL);
	bk_reap_within(k->server, WAIT_MS);
	k->server = 0;
}

/* ------------------------------------------------------------ CPU time */

struct cpu {
	double client, server, softirqd;
};

static struct cpu cpu_now(const pid_t *servers, int n)
{
	struct cpu c = {.client = bk_self_cpu_s()};
	for (int i = 0; i < n; i++)
		c.server += bk_proc_cpu_s(servers[i]);
	c.softirqd = bk_softirqd_cpu_s();
	return c;
}

static struct cpu cpu_diff(struct cpu a, struct cpu b)
{
	return (struct cpu){b.client - a.client, b.server - a.server,
	                    b.softirqd - a.softirqd};
}

static void cpu_add(struct cpu *sum, struct cpu d)
{
	sum->client += d.client;
	sum->server += d.server;
	sum->softirqd += d.softirqd;
}

static double cpu_total(struct cpu c)
{
	return c.client + c.server + c.softirqd;
}

static struct {
	double wall, ours, busy, steal;
} measured;

/* ---------------------------------------------------------- the client */

/*
 * Connects to addr:port (IPv4) from the current namespace. Returns a
 * non-blocking socket, or -errno after WAIT_MS.
 */
static int connect_to(const char *addr, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int err = 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err = errno == EINPROGRESS ? 0 : -errno;
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (!err && poll(&p, 1, WAIT_MS) != 1)
			err = bk_stop_signal ? -EINTR : -ETIMEDOUT;
		int so = 0;
		socklen_t sl = sizeof(so);
		if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0)
			err = -so;
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Bytes of the bulk stream: byte i is table[i % PERIOD]; the table runs
 * CHUNK bytes past PERIOD so any chunk is one contiguous slice. */
static uint8_t *table;

static int table_make(void)
{
	table = bk_table_make(PERIOD, CHUNK);
	return table != NULL ? 0 : -ENOMEM;
}

struct bulk_state {
	int fd;
	uint64_t total, sent, verified;
	const char *where;
};

/* 1 if something moved, 0 if the socket was full, negative on failure. */
static int bulk_send(struct bulk_state *s)
{
	uint64_t left = s->total - s->sent;
	size_t n = left < CHUNK ? (size_t)left : CHUNK;
	ssize_t w = send(s->fd, table + s->sent % PERIOD, n,
	                 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0)
		return errno == EAGAIN || errno == EINTR
		           ? 0
		           : fail(s->where, "send", errno);
	s->sent += (uint64_t)w;
	return w > 0;
}

static int bulk_recv(struct bulk_state *s)
{
	static uint8_t buf[CHUNK];
	ssize_t r = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (r < 0)
		return errno == EAGAIN || errno == EINTR
		           ? 0
		           : fail(s->where, "recv", errno);
	if (r == 0 || s->verified + (uint64_t)r > s->sent)
		return fail(s->where,
		            r == 0 ? "server closed early"
		                   : "more came back than was sent",
		            EPROTO);
	const uint8_t *want = table + s->verified % PERIOD;
	if (memcmp(buf, want, (size_t)r) != 0) {
		size_t i = 0;
		while (buf[i] == want[i])
			i++;
		fprintf(stderr,
		        "echo_bench: %s: byte %" PRIu64 " came back wrong\n",
		        s->where, s->verified + i);
		return -EILSEQ;
	}
	s->verified += (uint64_t)r;
	return 1;
}

/* One poll round: send what fits, take what came. */
static int bulk_step(struct bulk_state *s)
{
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	if (s->sent < s->total)
		p.events |= POLLOUT;
	if (poll(&p, 1, 1000) < 0 && errno != EINTR)
		return fail(s->where, "poll", errno);
	int moved = 0, r;
	if ((p.revents & POLLOUT) && (r = bulk_send(s)) != 0) {
		if (r < 0)
			return r;
		moved = 1;
	}
	if ((p.revents & (POLLIN | POLLHUP | POLLERR)) &&
	    (r = bulk_recv(s)) != 0) {
		if (r < 0)
			return r;
		moved = 1;
	}
	return moved;
}

/* Echoes `total` bytes through addr:port and checks every one. */
static int bulk_once(const char *addr, uint16_t port, uint64_t total,
                     const char *where)
{
	struct bulk_state s = {.total = total, .where = where};
	s.fd = connect_to(addr, port);
	if (s.fd < 0)
		return fail(where, "connect", s.fd);
	uint64_t last = bk_now_ns();
	int err = 0;
	while (!err && s.verified < total) {
		int r = bulk_step(&s);
		if (r < 0)
			err = r;
		else if (r > 0)
			last = bk_now_ns();
		else if (bk_stop_signal)
			err = -EINTR;
		else if (bk_ms_since(last) > STALL_MS)
			err = fail(where, "no byte moved for 10 s", ETIMEDOUT);
	}
	close(s.fd);
	return err;
}

/* Reads exactly one byte from a blocking socket with SO_RCVTIMEO. */
static int read_byte(int fd, uint8_t *b)
{
	for (;;) {
		ssize_t n = read(fd, b, 1);
		if (n == 1)
			return 0;
		if (n == 0)
			return -EPIPE;
		if (errno == EAGAIN)
			return -ETIMEDOUT; /* SO_RCVTIMEO */
		if (errno != EINTR || bk_stop_signal)
			return -errno;
	}
}

static int write_byte(int fd, uint8_t b)
{
	for (;;) {
		ssize_t n = write(fd, &b, 1);
		if (n == 1)
			return 0;
		if (n < 0 && (errno != EINTR || bk_stop_signal))
			return -errno;
	}
}

static int rr_one(int fd, uint64_t i)
{
	uint8_t b = (uint8_t)(i * 131 + 7), got = 0;
	int err = write_byte(fd, b);
	err = err ?: read_byte(fd, &got);
	if (!err && got != b)
		err = -EILSEQ;
	return err;
}

/* warmup + n round trips on one connection; the last n are timed. */
static int rr_once(const char *addr, uint16_t port, uint64_t warmup, uint64_t n,
                   uint64_t *ns, const char *where)
{
	int fd = connect_to(addr, port);
	if (fd < 0)
		return fail(where, "connect", fd);
	int err = fcntl(fd, F_SETFL, 0) == 0 ? 0 : -errno;
	set_nodelay(fd);
	bk_set_timeouts(fd, WAIT_MS);
	for (uint64_t i = 0; !err && i < warmup + n; i++) {
		uint64_t t0 = bk_now_ns();
		err = rr_one(fd, i);
		if (i >= warmup)
			ns[i - warmup] = bk_now_ns() - t0;
	}
	close(fd);
	return err ? fail(where, "1-byte round trip", err) : 0;
}

/* connect, one byte there and back, close: one connection's life. */
static int conn_one(const char *addr, uint16_t port, uint64_t i)
{
	int fd = connect_to(addr, port);
	if (fd < 0)
		return fd;
	set_nodelay(fd);
	uint8_t b = (uint8_t)(i * 29 + 3), got = 0;
	int err = send(fd, &b, 1, MSG_NOSIGNAL) == 1 ? 0 : -errno;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (!err && poll(&p, 1, WAIT_MS) != 1)
		err = bk_stop_signal ? -EINTR : -ETIMEDOUT;
	if (!err && recv(fd, &got, 1, 0) != 1)
		err = -EPIPE;
	if (!err && got != b)
		err = -EILSEQ;
	close(fd);
	return err;
}

static int conns_once(const char *addr, uint16_t port, uint64_t n, uint64_t *ns,
                      const char *where)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = bk_now_ns();
		int err = conn_one(addr, port, i);
		if (err)
			return fail(where, "connection", err);
		ns[i] = bk_now_ns() - t0;
	}
	return 0;
}

/* ---------------------------------------------------------- the paths */

enum { P_NETCORE, P_KERNEL, P_KERNEL1500, P_COUNT };

struct bench {
	struct config cfg;
	struct nc_testbed tb;
	bool tb_up;
	struct nc_phy_counters phy0; /* when measuring began */
	struct nc_phy_core_report core0;
	struct knet k;
};

struct path {
	const char *name;
	const char *addr;
	const char *dev; /* the client side's interface */
	pid_t servers[2];
	int n_servers;
	int mtu; /* read back from the interface */
};

static struct path paths[P_COUNT] = {
    [P_NETCORE] = {"netcore (TUN)", NC_TB_STACK4, NC_TB_TUN},
    [P_KERNEL] = {"kernel veth", K_NET0 ".2", K_CLI0},
    [P_KERNEL1500] = {"kernel veth", K_NET1 ".2", K_CLI1},
};

static int enter_path(struct bench *b, int p)
{
	if (p == P_NETCORE)
		return nc_testbed_enter(&b->tb);
	return bk_enter_ns_path(b->k.cli_path);
}

/* The MTU of the path's client-side interface, read in its namespace. */
static int path_mtu(struct bench *b, int p)
{
	int fd = enter_path(b, p) == 0
	             ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
	             : -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", paths[p].dev);
	int mtu =
	    fd >= 0 && ioctl(fd, SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : -1;
	if (fd >= 0)
		close(fd);
	return mtu;
}

/* The client (us) and path p's servers on bk_first_cpu, or back on all. */
static int place(int p, bool one_cpu)
{
	cpu_set_t set;
	int err = bk_pin_self(one_cpu, &set);
	if (err)
		return err;
	for (int i = 0; i < paths[p].n_servers; i++)
		if (bk_pin_process(paths[p].servers[i], &set) != 0)
			return -ESRCH;
	return 0;
}

/* ------------------------------------------------------------ the rows */

/* One path's row of one table, summed over rounds. */
struct row {
	bool ok;
	uint64_t ops;   /* bytes each way, round trips, or connections */
	double secs;    /* wall time measured */
	struct cpu cpu; /* over the measured slices */
	struct bk_range per_round;
	uint64_t *ns; /* samples (round trips, connections) */
	struct bk_stats st;
};

/* What is measured; the latency kinds both pinned to one CPU and not. */
enum { K_BULK, K_RR1, K_RR, K_CONN1, K_CONN, K_COUNT };

static const char *kind_name[K_COUNT] = {
    [K_BULK] = "bulk",
    [K_RR1] = "1-byte round trips, 1 CPU",
    [K_RR] = "1-byte round trips, any CPU",
    [K_CONN1] = "connections, 1 CPU",
    [K_CONN] = "connections, any CPU",
};

static bool is_rr(int kind)
{
	return kind == K_RR1 || kind == K_RR;
}

static bool on_one_cpu(int kind)
{
	return kind == K_RR1 || kind == K_CONN1;
}

/* How much of kind `kind` round `round` does (totals split over rounds;
 * bulk does a whole transfer each round). */
static uint64_t slice_ops(const struct config *cfg, int kind,
                          unsigned int round)
{
	if (kind == K_BULK)
		return cfg->mib * 1024 * 1024;
	uint64_t total = is_rr(kind) ? cfg->rts : cfg->conns;
	return total * (round + 1) / cfg->rounds - total * round / cfg->rounds;
}

static int measure(struct bench *b, int kind, int p, uint64_t ops, uint64_t *ns)
{
	const struct path *pa = &paths[p];
	char where[64];
	snprintf(where, sizeof(where), "%s %d, %s", pa->name, pa->mtu,
	         kind_name[kind]);
	if (kind == K_BULK)
		return bulk_once(pa->addr, b->cfg.port, ops, where);
	if (is_rr(kind))
		return rr_once(pa->addr, b->cfg.port, b->cfg.warmup, ops, ns,
		               where);
	return conns_once(pa->addr, b->cfg.port, ops, ns, where);
}

/* Runs one slice of a row and adds it in. */
static void run_slice(struct bench *b, struct row *r, int kind, int p,
                      unsigned int round)
{
	uint64_t ops = slice_ops(&b->cfg, kind, round);
	uint64_t *ns = r->ns ? r->ns + r->ops : NULL;
	for (int i = 0; i < paths[p].n_servers; i++) {
		if (!bk_proc_alive(paths[p].servers[i])) {
			fprintf(stderr,
			        "echo_bench: %s: server process %d is "
			        "gone\n",
			        paths[p].name, (int)paths[p].servers[i]);
			r->ok = false;
			return;
		}
	}
	int err = enter_path(b, p);
	err = err ?: place(p, on_one_cpu(kind));
	if (err) {
		fail(paths[p].name, "entering the namespace or pinning", err);
		place(p, false);
		r->ok = false;
		return;
	}
	struct bk_machine m0 = bk_machine_now();
	struct cpu c0 = cpu_now(paths[p].servers, paths[p].n_servers);
	uint64_t t0 = bk_now_ns();
	err = measure(b, kind, p, ops, ns);
	double secs = (double)(bk_now_ns() - t0) / 1e9;
	struct cpu c1 = cpu_now(paths[p].servers, paths[p].n_servers);
	struct bk_machine m1 = bk_machine_now();
	place(p, false);
	measured.wall += secs;
	measured.ours += cpu_total(cpu_diff(c0, c1));
	measured.busy += m1.busy - m0.busy;
	measured.steal += m1.steal - m0.steal;
	if (err) {
		r->ok = false;
		return;
	}
	cpu_add(&r->cpu, cpu_diff(c0, c1));
	r->secs += secs;
	r->ops += ops;
	if (is_rr(kind))
		bk_range_add(&r->per_round, bk_summarize(ns, ops).median);
	else
		bk_range_add(&r->per_round, (double)ops / secs);
}

/* Netcore first in even rounds, last in odd ones. */
static int path_at(unsigned int round, int i)
{
	return round % 2 == 0 ? i : P_COUNT - 1 - i;
}

static void progress(const char *what, unsigned int round, unsigned int of)
{
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "  [%s: round %u of %u]      \r", what,
		        round + 1, of);
}

static bool run_all(struct bench *b, struct row rows[K_COUNT][P_COUNT])
{
	for (unsigned int round = 0; round < b->cfg.rounds; round++) {
		for (int kind = 0; kind < K_COUNT; kind++) {
			progress(kind_name[kind], round, b->cfg.rounds);
			for (int i = 0; i < P_COUNT; i++) {
				int p = path_at(round, i);
				if (bk_stop_signal)
					return false;
				if (rows[kind][p].ok)
					run_slice(b, &rows[kind][p], kind, p,
					          round);
			}
		}
	}
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "%60s\r", "");
	bool ok = true;
	for (int kind = 0; kind < K_COUNT; kind++)
		for (int p = 0; p < P_COUNT; p++)
			ok = ok && rows[kind][p].ok;
	return ok;
}

/* --------------------------------------------------------------- output */

static void print_header(int argc, char **argv, const struct config *cfg)
{
	printf("netcore echo_bench\ncommand : ");
	for (int i = 0; i < argc; i++)
		printf("%s%s", argv[i], i + 1 < argc ? " " : "\n");
	bk_print_machine();
	const char *opt = "not optimized", *san = "";
#ifdef __OPTIMIZE__
	opt = "optimized";
#endif
#ifdef __SANITIZE_ADDRESS__
	san = ", AddressSanitizer";
#endif
	printf("build   : gcc %s, %s%s (bench, phy_driver, netcore_core)\n",
	       __VERSION__, opt, san);
	printf("mode    : %s: bulk %" PRIu64 " MiB per transfer, one per round;"
	       " %" PRIu64 " round trips\n"
	       "          (+%" PRIu64 " warm-up per round), %" PRIu64
	       " connections per row; %u interleaved rounds\n",
	       cfg->quick ? "quick" : "full", cfg->mib, cfg->rts, cfg->warmup,
	       cfg->conns, cfg->rounds);
}

static void print_paths(struct bench *b)
{
	printf("paths   : netcore: client in ns %s -> %s (MTU %d) -> "
	       "phy_driver -> netcore_core echo %s:%u\n",
	       b->tb.ns_name, NC_TB_TUN, paths[P_NETCORE].mtu, NC_TB_STACK4,
	       b->cfg.port);
	for (int p = P_KERNEL; p <= P_KERNEL1500; p++)
		printf("          kernel : client in ns %s -> veth %s (MTU %d) "
		       "-> ns %s, echo child %s:%u\n",
		       b->k.cli, paths[p].dev, paths[p].mtu, b->k.srv,
		       paths[p].addr, b->cfg.port);
	printf("cpu time: client getrusage; servers (phy_driver + "
	       "netcore_core, or the echo child) and\n"
	       "          ksoftirqd: /proc/<pid>/task/*/schedstat (ns on "
	       "CPU)\n");
	printf("placing : bulk: the scheduler; latency rows twice: all of "
	       "the path on CPU %d (1 CPU),\n"
	       "          and where the scheduler puts them (any)\n\n",
	       bk_first_cpu);
}

static const char *check(const struct row *r)
{
	return r->ok ? "ok" : "FAIL";
}

static void row_label(char *out, size_t len, int p)
{
	snprintf(out, len, "%s %d", paths[p].name, paths[p].mtu);
}

static double bulk_rate(const struct row *r)
{
	return r->secs > 0 ? (double)r->ops / MIB / r->secs : 0;
}

/* CPU seconds per GiB echoed. */
static double per_gib(const struct row *r, double cpu_s)
{
	return r->ops > 0 ? cpu_s / ((double)r->ops / GIB) : 0;
}

static void print_bulk(struct row *rows, const struct config *cfg)
{
	printf("Bulk: %" PRIu64 " MiB echoed per transfer, every byte "
	       "verified; MiB/s each way;\n"
	       "CPU s per GiB echoed (client / server / ksoftirqd / total); "
	       "CPUs = CPU s per wall s\n",
	       cfg->mib);
	printf("  %-20s %7s %6s %8s %8s %8s %8s %6s  %s\n", "path", "MiB/s",
	       "spread", "client", "server", "softirqd", "total", "CPUs",
	       "check");
	for (int p = 0; p < P_COUNT; p++) {
		struct row *r = &rows[p];
		char label[48];
		row_label(label, sizeof(label), p);
		double rate = bulk_rate(r);
		printf("  %-20s %7.0f %5.0f%% %8.2f %8.2f %8.2f %8.2f %6.2f  "
		       "%s\n",
		       label, rate, 100 * bk_spread(&r->per_round, rate * MIB),
		       per_gib(r, r->cpu.client), per_gib(r, r->cpu.server),
		       per_gib(r, r->cpu.softirqd),
		       per_gib(r, cpu_total(r->cpu)),
		       r->secs > 0 ? cpu_total(r->cpu) / r->secs : 0, check(r));
	}
}

static double us_per_op(const struct row *r)
{
	return r->ops > 0 ? cpu_total(r->cpu) * 1e6 / (double)r->ops : 0;
}

static const char *placement(int kind)
{
	return on_one_cpu(kind) ? "1 CPU" : "any";
}

static void print_rr(struct row rows[K_COUNT][P_COUNT],
                     const struct config *cfg)
{
	printf("\n1-byte request/response: %" PRIu64 " round trips per row, "
	       "TCP_NODELAY, one connection per round;\n"
	       "spread of the per-round medians; CPU µs per round trip "
	       "(client + servers + ksoftirqd)\n",
	       cfg->rts);
	printf("  %-20s %6s %9s %9s %9s %9s %6s %7s  %s\n", "path", "placed",
	       "median us", "p99 us", "min us", "mean us", "spread", "CPU us",
	       "check");
	for (int kind = K_RR1; kind <= K_RR; kind++)
		for (int p = 0; p < P_COUNT; p++) {
			struct row *r = &rows[kind][p];
			char label[48];
			row_label(label, sizeof(label), p);
			printf("  %-20s %6s %9.1f %9.1f %9.1f %9.1f %5.0f%% "
			       "%7.1f  %s\n",
			       label, placement(kind), r->st.median, r->st.p99,
			       r->st.min, r->st.mean,
			       100 * bk_spread(&r->per_round, r->st.median),
			       us_per_op(r), check(r));
		}
}

static double conn_rate(const struct row *r)
{
	return r->secs > 0 ? (double)r->ops / r->secs : 0;
}

static void print_conns(struct row rows[K_COUNT][P_COUNT],
                        const struct config *cfg)
{
	printf("\nConnections: connect, 1 byte there and back, close; "
	       "%" PRIu64 " per row, one after another;\n"
	       "CPU µs per connection (client + servers + ksoftirqd)\n",
	       cfg->conns);
	printf("  %-20s %6s %9s %6s %9s %9s %7s  %s\n", "path", "placed",
	       "conns/s", "spread", "median us", "p99 us", "CPU us", "check");
	for (int kind = K_CONN1; kind <= K_CONN; kind++)
		for (int p = 0; p < P_COUNT; p++) {
			struct row *r = &rows[kind][p];
			char label[48];
			row_label(label, sizeof(label), p);
			double rate = conn_rate(r);
			printf("  %-20s %6s %9.0f %5.0f%% %9.1f %9.1f %7.1f  "
			       "%s\n",
			       label, placement(kind), rate,
			       100 * bk_spread(&r->per_round, rate),
			       r->st.median, r->st.p99, us_per_op(r), check(r));
		}
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

/* netcore's figure over each kernel row's, for one figure of one row. */
static void print_ratio(const char *what, const struct row *r,
                        double (*fig)(const struct row *), const char *hint)
{
	double nc = fig(&r[P_NETCORE]);
	printf("  %-34s %6.2f %6.2f   %s\n", what, ratio(nc, fig(&r[P_KERNEL])),
	       ratio(nc, fig(&r[P_KERNEL1500])), hint);
}

static double bulk_cpu(const struct row *r)
{
	return per_gib(r, cpu_total(r->cpu));
}

static double median(const struct row *r)
{
	return r->st.median;
}

static double p99(const struct row *r)
{
	return r->st.p99;
}

static void print_ratios(struct row rows[K_COUNT][P_COUNT])
{
	const char *slower = "(<1: netcore slower)";
	const char *longer = "(>1: netcore slower)";
	const char *costs = "(>1: netcore costs more)";
	printf("\nRatios netcore / kernel          veth %5d %6d\n",
	       paths[P_KERNEL].mtu, paths[P_KERNEL1500].mtu);
	print_ratio("bulk MiB/s", rows[K_BULK], bulk_rate, slower);
	print_ratio("bulk CPU s per GiB", rows[K_BULK], bulk_cpu, costs);
	print_ratio("1-byte round trip median, 1 CPU", rows[K_RR1], median,
	            longer);
	print_ratio("1-byte round trip median, any", rows[K_RR], median,
	            longer);
	print_ratio("1-byte round trip p99, 1 CPU", rows[K_RR1], p99, longer);
	print_ratio("1-byte round trip p99, any", rows[K_RR], p99, longer);
	print_ratio("1-byte round trip CPU, 1 CPU", rows[K_RR1], us_per_op,
	            costs);
	print_ratio("1-byte round trip CPU, any", rows[K_RR], us_per_op, costs);
	print_ratio("connections/s, 1 CPU", rows[K_CONN1], conn_rate, slower);
	print_ratio("connections/s, any", rows[K_CONN], conn_rate, slower);
	print_ratio("connection CPU, 1 CPU", rows[K_CONN1], us_per_op, costs);
	print_ratio("connection CPU, any", rows[K_CONN], us_per_op, costs);
}

/* What the phy and the core counted while the bench measured. */
static void print_counters(struct bench *b)
{
	struct nc_phy_counters c = nc_testbed_phy_counters(&b->tb);
	struct nc_phy_core_report r = nc_testbed_core_report(&b->tb);
	const struct nc_phy_counters *c0 = &b->phy0;
	const struct nc_phy_core_report *r0 = &b->core0;
	uint64_t rx = c.rx_packets - c0->rx_packets;
	uint64_t tx = c.tx_packets - c0->tx_packets;
	printf("\nnetcore counters while measuring: phy rx %" PRIu64
	       " packets (avg %.0f B), tx %" PRIu64 " (avg %.0f B)\n",
	       rx, rx ? (double)(c.rx_bytes - c0->rx_bytes) / (double)rx : 0,
	       tx, tx ? (double)(c.tx_bytes - c0->tx_bytes) / (double)tx : 0);
	printf("  drops: phy rx no buffer %" PRIu64 ", oversize %" PRIu64
	       ", tx errors %" PRIu64 ", bad desc %" PRIu64 "; core ip %" PRIu64
	       ", checksum %" PRIu64 ", tcp %" PRIu64 ", udp %" PRIu64 "\n",
	       c.rx_drop_no_buffer - c0->rx_drop_no_buffer,
	       c.rx_drop_oversize - c0->rx_drop_oversize,
	       c.tx_errors - c0->tx_errors, c.tx_bad_desc - c0->tx_bad_desc,
	       r.drop_ip_bad - r0->drop_ip_bad,
	       r.drop_checksum - r0->drop_checksum, r.drop_tcp - r0->drop_tcp,
	       r.drop_udp - r0->drop_udp);
	printf("  phy handshakes: %" PRIu64 " before measuring, %" PRIu64
	       " while measuring\n",
	       c0->restarts, c.restarts - c0->restarts);
}

/* ----------------------------------------------------------- set-up, main */

static int usage(void)
{
	fprintf(stderr,
	        "usage: echo_bench [--quick] [--mib N] [--round-trips N] "
	        "[--conns N] [--rounds R] [--port P]\n"
	        "  --quick           16 MiB, 2000 round trips, 200 "
	        "connections, 2 rounds\n"
	        "  --mib N           MiB per bulk transfer, one per round "
	        "(default 256)\n"
	        "  --round-trips N   measured 1-byte round trips per row "
	        "(default 20000)\n"
	        "  --conns N         connections per row (default 2000)\n"
	        "  --rounds R        interleaved rounds (default 3)\n"
	        "  --port P          echo port on every path (default 7)\n"
	        "Options apply in order: --quick, then overrides.\n");
	return 2;
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
	*cfg = (struct config){.mib = 256,
	                       .rts = 20000,
	                       .warmup = 200,
	                       .conns = 2000,
	                       .rounds = 3,
	                       .port = 7};
	uint64_t v;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : "";
		bool ok = true;
		if (strcmp(a, "--quick") == 0) {
			cfg->quick = true;
			cfg->mib = 16;
			cfg->rts = 2000;
			cfg->warmup = 50;
			cfg->conns = 200;
			cfg->rounds = 2;
			continue;
		}
		if (strcmp(a, "--mib") == 0)
			ok = bk_number(n, 1, 65536, &cfg->mib);
		else if (strcmp(a, "--round-trips") == 0)
			ok = bk_number(n, 1, 10000000, &cfg->rts);
		else if (strcmp(a, "--conns") == 0)
			ok = bk_number(n, 1, 10000, &cfg->conns);
		else if (strcmp(a, "--rounds") == 0 && bk_number(n, 1, 20, &v))
			cfg->rounds = (unsigned int)v;
		else if (strcmp(a, "--port") == 0 && bk_number(n, 1, 65535, &v))
			cfg->port = (uint16_t)v;
		else
			ok = false;
		if (!ok)
			return usage();
		i++;
	}
	if (cfg->rts < cfg->rounds || cfg->conns < cfg->rounds)
		return usage();
	return 0;
}

/* Measures only once the phy's grant has held for SETTLE_MS (bounded by
 * WAIT_MS); see bk_settle_link. */
static int settle_link(struct bench *b)
{
	if (bk_settle_link(&b->tb, SETTLE_MS, WAIT_MS) != 0)
		return fail("testbed", "link did not settle", ETIMEDOUT);
	b->phy0 = nc_testbed_phy_counters(&b->tb);
	b->core0 = nc_testbed_core_report(&b->tb);
	return 0;
}

/* Everything the run needs, in an order that leaves the kernel server
 * without the testbed's descriptors. */
static int setup(struct bench *b)
{
	int err = bk_find_runfiles("echo_bench", PHY_BIN, RUNFILES_SUFFIX);
	err = err ?: bk_find_cpus();
	err = err ?: table_make();
	err = err ?: knet_create(&b->k);
	err = err ?: bk_stop_signal ? -EINTR : 0;
	err = err ?: kserver_start(&b->k, b->cfg.port);
	err = err ?: bk_stop_signal ? -EINTR : 0;
	if (err)
		return err;
	err = nc_testbed_start(&b->tb, "echobench", b->cfg.port);
	if (err)
		return fail("testbed", "start", err);
	b->tb_up = true;
	paths[P_NETCORE].servers[0] = b->tb.phy_pid;
	paths[P_NETCORE].servers[1] = b->tb.core_pid;
	paths[P_NETCORE].n_servers = 2;
	for (int p = P_KERNEL; p <= P_KERNEL1500; p++) {
		paths[p].servers[0] = b->k.server;
		paths[p].n_servers = 1;
	}
	for (int p = 0; p < P_COUNT; p++)
		paths[p].mtu = path_mtu(b, p);
	bk_find_softirqd();
	return bk_stop_signal ? -EINTR : settle_link(b);
}

/* Every way out goes through here. Safe on a partial set-up. */
static void teardown(struct bench *b)
{
	if (b->tb_up)
		nc_testbed_stop(&b->tb);
	b->tb_up = false;
	kserver_stop(&b->k);
	knet_delete(&b->k);
}

static bool alloc_rows(struct row rows[K_COUNT][P_COUNT],
                       const struct config *cfg)
{
	bool ok = true;
	for (int kind = 0; kind < K_COUNT; kind++) {
		for (int p = 0; p < P_COUNT; p++) {
			rows[kind][p] = (struct row){.ok = true};
			if (kind == K_BULK)
				continue;
			uint64_t n = is_rr(kind) ? cfg->rts : cfg->conns;
			rows[kind][p].ns = calloc(n, sizeof(uint64_t));
			ok = ok && rows[kind][p].ns != NULL;
		}
	}
	return ok;
}

static void finish_rows(struct row rows[K_COUNT][P_COUNT])
{
	for (int kind = K_RR1; kind < K_COUNT; kind++)
		for (int p = 0; p < P_COUNT; p++) {
			struct row *r = &rows[kind][p];
			if (r->ok)
				r->st = bk_summarize(r->ns, r->ops);
		}
}

static void free_rows(struct row rows[K_COUNT][P_COUNT])
{
	for (int kind = 0; kind < K_COUNT; kind++)
		for (int p = 0; p < P_COUNT; p++)
			free(rows[kind][p].ns);
}

static void print_results(struct bench *b, struct row rows[K_COUNT][P_COUNT],
                          bool ok)
{
	finish_rows(rows);
	print_bulk(rows[K_BULK], &b->cfg);
	print_rr(rows, &b->cfg);
	print_conns(rows, &b->cfg);
	print_ratios(rows);
	print_counters(b);
	char load[64];
	bk_loadavg(load, sizeof(load));
	printf("\nloadavg : %s (at end)\n", load);
	double w = measured.wall > 0 ? measured.wall : 1;
	double others = (measured.busy - measured.ours) / w;
	printf("machine : while measuring (%.1f s), CPUs busy with this "
	       "bench %.2f, with other work %.2f;\n"
	       "          stolen by the hypervisor %.2f (of %ld online)\n",
	       measured.wall, measured.ours / w, others > 0 ? others : 0,
	       measured.steal / w, sysconf(_SC_NPROCESSORS_ONLN));
	printf("self-check: %s\n",
	       ok ? "PASS (every byte echoed intact on every path; core and "
	            "phy alive)"
	          : "FAIL (see the messages above)");
}

int main(int argc, char **argv)
{
	static struct bench b;
	static struct row rows[K_COUNT][P_COUNT];
	if (parse_args(argc, argv, &b.cfg) != 0)
		return 2;
	bk_catch_stop_signals();
	print_header(argc, argv, &b.cfg);
	int err = alloc_rows(rows, &b.cfg) ? setup(&b) : -ENOMEM;
	bool ok = false;
	if (!err) {
		print_paths(&b);
		fflush(stdout);
		ok = run_all(&b, rows);
		bool alive =
		    bk_proc_alive(b.tb.core_pid) && bk_proc_alive(b.tb.phy_pid);
		if (!alive)
			fprintf(stderr, "echo_bench: the core or the phy "
			                "driver died during the run\n");
		ok = ok && alive;
		if (!bk_stop_signal)
			print_results(&b, rows, ok);
	}
	fflush(stdout); /* before the services print their counters */
	teardown(&b);
	free_rows(rows);
	free(table);
	if (bk_stop_signal) {
		fprintf(stderr,
		        "echo_bench: stopped by signal %d; cleaned up\n",
		        (int)bk_stop_signal);
		return 128 + bk_stop_signal;
	}
	if (err)
		fprintf(stderr, "echo_bench: set-up failed; cleaned up\n");
	return ok ? 0 : 1;
}
