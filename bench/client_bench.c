/*
 * client_bench: sockets for a sandboxed program, through netcore and, in
 * the same run and with the same client logic, through the kernel over a
 * veth pair, through pasta and through slirp4netns.
 *
 * Every path ends at the same server: a forked child of this program using
 * kernel sockets, one connection at a time, with an echo port (P) and a
 * sink port (P + 1) that checks every byte it is sent. The client is this
 * process. Four paths:
 *
 *   - netcore: the client uses libclient (libclient/netcore.h) from an
 *     empty network namespace (unshare(CLONE_NEWNET): no interface but a
 *     loopback that is down), attached to the proxy broker of a testbed
 *     (tests/testbed: phy_driver + netcore_core + proxy_broker around the
 *     TUN nctun0, MTU 65520, in a namespace of its own). Control calls
 *     (socket, connect, close, setsockopt) go to the broker and on to the
 *     core; data goes through the client's shared-memory region to the core
 *     (lwIP), then phy region -> phy driver -> TUN -> kernel TCP in the
 *     testbed's namespace, where the server listens on 10.77.0.1.
 *   - kernel: the client in a namespace of ours, a veth pair at MTU 65520,
 *     the server in another namespace of ours at 10.78.0.2. Kernel TCP at
 *     both ends and nothing in between: the floor.
 *   - pasta (Debian package passt): the client in a namespace of ours that
 *     pasta serves with a tap device (--config-net, MTU 65520). pasta
 *     itself runs in a second namespace of ours, the "host" side, whose
 *     only interfaces are loopback and a veth pair it copies its addresses
 *     from; nothing there leads off the machine. The server listens on
 *     127.0.0.1 in that host namespace and the client connects to the
 *     gateway address, which pasta maps to the host's loopback (its
 *     default; --no-map-gw would turn it off). pasta's port forwarding and
 *     its loopback bypass (-t/-u/-T/-U) are off, so every byte crosses the
 *     tap and pasta's TCP translation. It runs with --runas 0: as "nobody"
 *     it cannot join a namespace that root made.
 *   - slirp4netns: the same shape. slirp4netns runs in a host namespace of
 *     ours with only a loopback, and configures a tap in the client's
 *     namespace (--configure, MTU 65520, DNS off). The client connects to
 *     10.0.2.2, which slirp maps to the host's 127.0.0.1 (host loopback is
 *     allowed: --disable-host-loopback is not given).
 *
 * A peer whose program is not installed is skipped, with a message saying
 * which Debian package provides it; --skip leaves out a peer on purpose.
 *
 * The client logic is one piece of code. Each call goes to libclient's nc_*
 * for netcore and to the kernel's socket calls for the others, with the
 * same arguments, all blocking with SO_SNDTIMEO / SO_RCVTIMEO bounds:
 *   - Bulk, client -> server: connect, send an 8-byte length, then N MiB
 *     in calls of up to 256 KiB, then wait for the sink's verdict (how many
 *     bytes it received and checked, and the first wrong one if any). The
 *     time runs from before the connect to the verdict, so it covers
 *     everything the server received and checked. MiB/s is N over it.
 *     Besides the rate: the longest time the sender made no progress, and
 *     (kernel sockets only, TCP_INFO) how many segments its TCP resent. A
 *     peer that drops segments shows there, as retransmission timeouts.
 *   - 1-byte request/response: one connection per round, TCP_NODELAY, a
 *     1-byte send then a 1-byte recv, a clock read around each. Time and
 *     CPU are counted from the end of the warm-up to the last round trip.
 *   - Connections: socket, connect, 1 byte there and back, close. No
 *     TCP_NODELAY (one small write: nothing for Nagle to hold back).
 *
 * Verification. Bulk bytes come from a table whose period, 1 MiB + 13
 * bytes, no segment or buffer size divides. The sink compares each received
 * byte with the table at its stream offset, so a lost, duplicated,
 * reordered or damaged byte shows, and it reports the count; the client
 * checks the verdict. Every echoed byte is compared with what was sent.
 * Any mismatch, loss, refusal or wait past its bound fails the row and
 * makes the exit status 1.
 *
 * CPU. The client's is getrusage(RUSAGE_SELF): libclient runs in this
 * process and starts no threads. The server's and the path's own processes'
 * (phy_driver + netcore_core + proxy_broker, or pasta, or slirp4netns) come
 * from /proc/<pid>/task/<tid>/schedstat (ns on CPU, all threads), and so do
 * the ksoftirqd threads'. The kernel charges TCP work to whoever caused it,
 * so "total" is the comparable figure. CPU per GiB counts GiB moved client
 * -> server. For netcore, the CPU of each service is also shown apart.
 *
 * Placement and interleaving are echo_bench's: the latency rows run twice,
 * everything of the path pinned to the first usable CPU ("1 CPU") and where
 * the scheduler puts it ("any"); bulk runs where the scheduler puts it.
 * Each row is measured in rounds, the paths in turn, netcore first in even
 * rounds and last in odd ones.
 *
 * Bounded and clean. Every wait is bounded: 5 s for a connect, a round trip,
 * a server or tool to start, or a path to carry its first byte; 10 s without
 * progress in a bulk transfer; 10 s per set-up command. Blocking calls use
 * 1 s timeouts and re-check for SIGINT / SIGTERM / SIGHUP between them. On
 * every way out, signals included, the bench detaches from the broker, stops
 * the testbed (services killed by pid and reaped, namespace deleted), kills
 * and reaps its servers, pasta and slirp4netns by pid, and deletes its six
 * namespaces. The servers, pasta and slirp4netns also die with the bench
 * (PR_SET_PDEATHSIG; slirp's --exit-fd too). Only a SIGKILL of the bench
 * leaves things behind: the namespaces, and the testbed's core and broker.
 */
#include "bench/benchkit.h"
#include "libclient/netcore.h"
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHUNK          (256 * 1024) /* bytes per send/recv call, both ends */
#define PERIOD         ((1u << 20) + 13u) /* of the bulk byte table */
#define WAIT_MS        5000  /* connect, round trip, start of anything */
#define STALL_MS       10000 /* bulk: no byte moved this long = failure */
#define IO_TIMEO_MS    1000  /* SO_RCVTIMEO / SO_SNDTIMEO of data calls */
#define CMD_TIMEOUT_MS 10000 /* each `ip` command */
#define MIB            (1024.0 * 1024.0)
#define GIB            (1024.0 * MIB)
#define SETTLE_MS      200 /* the phy's grant must hold this long first */
#define SINK_MAGIC     0x6e63636c69656e74ull /* "ncclient" */

#define PHY_BIN         "services/phy_driver/phy_driver"
#define RUNFILES_SUFFIX ".runfiles/netcore"

/* The kernel path. */
#define K_MTU     65520
#define K_CLI_DEV "ncck0"
#define K_SRV_DEV "nccs0"
#define K_CLI     "10.78.0.1"
#define K_SRV     "10.78.0.2"
/* pasta: its template interface in the host namespace, its tap. */
#define P_HOST_DEV  "ncpv0"
#define P_HOST_PEER "ncpv1"
#define P_HOST_CIDR "10.79.0.1/24"
#define P_GATEWAY   "10.79.0.254"
#define P_TAP       "ncpt0"
/* slirp4netns: its tap, and the gateway it maps to the host's loopback. */
#define S_TAP     "ncsl0"
#define S_GATEWAY "10.0.2.2"
#define S_MTU     "--mtu=65520"
#define LOOPBACK  "127.0.0.1"

struct config {
	bool quick;
	uint64_t mib;    /* per bulk transfer; each row does `rounds` */
	uint64_t rts;    /* measured round trips per row (all rounds) */
	uint64_t warmup; /* unmeasured round trips per round */
	uint64_t conns;  /* connections per row (all rounds) */
	unsigned int rounds;
	uint16_t port; /* echo; the sink is port + 1 */
	bool verbose;  /* each slice's figure to stderr */
	bool skip[4];  /* peers not to run, by path index */
};

/* ------------------------------------------------------------ utilities */

/* Says what went wrong (unless we are being stopped, which says enough);
 * returns err (a negative errno) for chaining. */
static int fail(const char *where, const char *what, int err)
{
	if (!bk_stop_signal)
		fprintf(stderr, "client_bench: %s: %s: %s\n", where, what,
		        strerror(err < 0 ? -err : err));
	return err < 0 ? err : -err;
}

/* True if `name` is an executable file in one of $PATH's folders. */
static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	if (path == NULL || *path == '\0')
		path = "/usr/local/sbin:/usr/local/bin:"
		       "/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path != '\0') {
		size_t n = strcspn(path, ":");
		char full[512];
		if (n > 0 && n < 400) {
			snprintf(full, sizeof(full), "%.*s/%s", (int)n, path,
			         name);
			if (access(full, X_OK) == 0)
				return true;
		}
		path += n + (path[n] == ':');
	}
	return false;
}

/* ---------------------------------------------------- children, commands */

/* SIGKILLs a child of ours and reaps it; clears *pid. */
static void kill_child(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	bk_reap_within(*pid, WAIT_MS);
	*pid = 0;
}

/* Runs a command, bounded, its stdout into out (if any), stderr kept.
 * 0 on exit 0. */
static int run_capture(char *const argv[], char *out, size_t cap, bool quiet)
{
	int p[2] = {-1, -1};
	if (out != NULL && pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (out != NULL)
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
		                                 0);
	if (quiet)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY,
		                                 0);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (out != NULL)
		close(p[1]);
	if (err) {
		if (out != NULL)
			close(p[0]);
		return quiet ? -err : fail(argv[0], "cannot start", err);
	}
	if (out != NULL) {
		size_t used = 0;
		uint64_t start = bk_now_ns();
		while (used + 1 < cap && bk_ms_since(start) < CMD_TIMEOUT_MS) {
			struct pollfd pf = {.fd = p[0], .events = POLLIN};
			if (poll(&pf, 1, 100) <= 0)
				continue;
			ssize_t n = read(p[0], out + used, cap - 1 - used);
			if (n <= 0)
				break;
			used += (size_t)n;
		}
		out[used] = '\0';
		close(p[0]);
	}
	int status = bk_reap_within(pid, CMD_TIMEOUT_MS);
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (!quiet) {
		fprintf(stderr, "client_bench: command failed:");
		for (int i = 0; argv[i] != NULL; i++)
			fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, "\n");
	}
	return -EIO;
}

/*
 * Forks a child that dies with us, moves into the namespace at ns_path,
 * keeps only stdin/stdout/stderr and `keep` (as fds 3, 4, ...), and runs
 * fn(arg) or, if fn is NULL, execs argv. stdin is /dev/null; stdout and
 * stderr go to log_fd if it is >= 0. Returns the pid, or -errno.
 */
static pid_t fork_in_ns(const char *ns_path, const int *keep, int n_keep,
                        void (*fn)(void *), void *arg, char *const argv[],
                        int log_fd)
{
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		return pid;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
	    bk_enter_ns_path(ns_path) != 0)
		_exit(120);
	/* Copies the kept fds above everything first, so that neither the
	 * log nor one another can be overwritten, then moves them to 3.. */
	int high[8];
	for (int i = 0; i < n_keep && i < 8; i++)
		high[i] = fcntl(keep[i], F_DUPFD, 64 + i);
	if (log_fd >= 0) {
		dup2(log_fd, 1);
		dup2(log_fd, 2);
	}
	for (int i = 0; i < n_keep && i < 8; i++)
		if (high[i] < 0 || dup2(high[i], 3 + i) != 3 + i)
			_exit(121);
	int null = open("/dev/null", O_RDWR);
	if (null >= 0)
		dup2(null, 0);
	close_range(3 + (unsigned int)n_keep, ~0u, 0);
	if (fn != NULL) {
		fn(arg);
		_exit(0);
	}
	execvp(argv[0], argv);
	_exit(127);
}

/* ------------------------------------------------------- the byte table */

/* Byte i of a bulk stream is table[i % PERIOD]; the table runs CHUNK bytes
 * past PERIOD so any chunk is one contiguous slice. */
static uint8_t *table;

static int table_make(void)
{
	table = bk_table_make(PERIOD, CHUNK);
	return table != NULL ? 0 : -ENOMEM;
}

/* What the sink answers after the last byte: bytes received and checked,
 * and the offset of the first wrong byte (UINT64_MAX if none). */
struct verdict {
	uint64_t magic, got, bad_at;
};

/* ------------------------------------------------------------ the server */

static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static uint8_t server_buf[CHUNK];

/* Echoes one connection until the peer closes it or stays silent for
 * 2 * WAIT_MS. */
static void serve_echo(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (;;) {
		ssize_t n = read(fd, server_buf, sizeof(server_buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || bk_write_all(fd, server_buf, (size_t)n) != 0)
			return;
	}
}

/* Takes an 8-byte length and that many bytes, checks each against the
 * table, answers with a verdict, then waits for the client to close. */
static void serve_sink(int fd)
{
	uint64_t total = 0, got = 0;
	struct verdict v = {SINK_MAGIC, 0, UINT64_MAX};
	if (read_full(fd, &total, sizeof(total)) != 0)
		return;
	while (got < total) {
		uint64_t left = total - got;
		ssize_t n =
		    read(fd, server_buf, left < CHUNK ? (size_t)left : CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		const uint8_t *want = table + got % PERIOD;
		if (v.bad_at == UINT64_MAX &&
		    memcmp(server_buf, want, (size_t)n) != 0) {
			size_t i = 0;
			while (server_buf[i] == want[i])
				i++;
			v.bad_at = got + i;
		}
		got += (uint64_t)n;
	}
	v.got = got;
	if (got == total && bk_write_all(fd, &v, sizeof(v)) == 0)
		while (read(fd, server_buf, sizeof(server_buf)) > 0)
			;
}

static int listen_on(const char *addr, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 128) != 0)
		return -1;
	return fd;
}

struct server_args {
	const char *addr;
	uint16_t port;
};

/* The forked server (fd 3: the ready pipe): listens on addr, echo on port
 * and sink on port + 1, says so, and serves one connection at a time until
 * the bench kills it, or dies itself. */
static void server_main(void *arg)
{
	const struct server_args *a = arg;
	int echo = listen_on(a->addr, a->port);
	int sink = listen_on(a->addr, (uint16_t)(a->port + 1));
	if (echo < 0 || sink < 0 || write(3, "r", 1) != 1)
		_exit(4);
	close(3);
	for (;;) {
		struct pollfd pf[2] = {{.fd = echo, .events = POLLIN},
		                       {.fd = sink, .events = POLLIN}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(5);
		}
		for (int i = 0; i < 2; i++) {
			if (!(pf[i].revents & POLLIN))
				continue;
			int c = accept4(pf[i].fd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			bk_set_timeouts(c, i == 0 ? 2 * WAIT_MS : 2 * STALL_MS);
			if (i == 0)
				serve_echo(c);
			else
				serve_sink(c);
			close(c);
		}
	}
}

/* Waits (bounded) for one byte on a pipe a child writes when ready. */
static int wait_ready(int fd, const char *who)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	char c = 0;
	uint64_t start = bk_now_ns();
	for (;;) {
		int r = poll(&pf, 1, 100);
		if (r == 1)
			return read(fd, &c, 1) == 1
			           ? 0
			           : fail(who, "exited before it was ready",
			                  ECHILD);
		if (bk_stop_signal)
			return -EINTR;
		if (bk_ms_since(start) > WAIT_MS)
			return fail(who, "not ready within 5 s", ETIMEDOUT);
	}
}

/* Forks a server in the namespace at ns_path and waits until it listens. */
static int server_start(const char *ns_path, const char *addr, uint16_t port,
                        pid_t *out)
{
	static struct server_args args[8];
	static int n_args;
	int p[2];
	if (n_args == 8 || pipe2(p, O_CLOEXEC) != 0)
		return fail("server", "pipe", EMFILE);
	struct server_args *a = &args[n_args++];
	*a = (struct server_args){addr, port};
	pid_t pid = fork_in_ns(ns_path, &p[1], 1, server_main, a, NULL, -1);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return fail("server", "fork", (int)pid);
	}
	*out = pid;
	int err = wait_ready(p[0], "server");
	close(p[0]);
	return err;
}

/* ------------------------------------------------------------ CPU time */

struct cpu {
	double client, server, stack, softirqd;
	double each[3]; /* stack, process by process */
};

static struct cpu cpu_diff(struct cpu a, struct cpu b)
{
	struct cpu d = {b.client - a.client, b.server - a.server,
	                b.stack - a.stack, b.softirqd - a.softirqd};
	for (int i = 0; i < 3; i++)
		d.each[i] = b.each[i] - a.each[i];
	return d;
}

static void cpu_add(struct cpu *sum, struct cpu d)
{
	sum->client += d.client;
	sum->server += d.server;
	sum->stack += d.stack;
	sum->softirqd += d.softirqd;
	for (int i = 0; i < 3; i++)
		sum->each[i] += d.each[i];
}

static double cpu_total(struct cpu c)
{
	return c.client + c.server + c.stack + c.softirqd;
}

static struct {
	double wall, ours, busy, steal;
} measured;

/* ------------------------------------------------------------ the paths */

enum { P_NETCORE, P_KERNEL, P_PASTA, P_SLIRP, P_COUNT };
enum { NS_KC, NS_KS, NS_PH, NS_PC, NS_SH, NS_SC, NS_COUNT };

static const char *const ns_tag[NS_COUNT] = {"kc", "ks", "ph",
                                             "pc", "sh", "sc"};

struct ns {
	char name[32], path[64];
	bool made;
};

struct path {
	const char *name;
	const char *tool;    /* the program a peer needs, or NULL */
	const char *package; /* the Debian package that has it */
	const char *addr;    /* the server's address as the client sees it */
	bool libclient;      /* netcore: nc_* calls; others: the kernel's */
	bool present;        /* false: skipped, for the reason in `why` */
	char why[96];
	int cli_fd; /* the client's namespace */
	int mtu;    /* read back from the path's interface */
	pid_t server;
	pid_t stack[3]; /* the path's own processes */
	int n_stack;
	int log_fd; /* a peer tool's stdout and stderr (a memfd) */
};

static struct path paths[P_COUNT] = {
    [P_NETCORE] = {"netcore", NULL, NULL, NC_TB_KERNEL4, true},
    [P_KERNEL] = {"kernel veth", NULL, NULL, K_SRV, false},
    [P_PASTA] = {"pasta", "pasta", "passt", P_GATEWAY, false},
    [P_SLIRP] = {"slirp4netns", "slirp4netns", "slirp4netns", S_GATEWAY, false},
};

struct bench {
	struct config cfg;
	struct nc_testbed tb;
	bool tb_up;
	struct nc_phy_counters phy0; /* when measuring began */
	struct nc_phy_core_report core0;
	struct ns ns[NS_COUNT];
	int home_fd; /* the namespace we started in */
	struct nc_client *client;
	pid_t pasta, slirp;
	int slirp_exit_fd; /* closing it tells slirp4netns to exit */
	char versions[160];
};

static struct cpu cpu_now(const struct path *pa)
{
	struct cpu c = {.client = bk_self_cpu_s(),
	                .server = bk_proc_cpu_s(pa->server)};
	for (int i = 0; i < pa->n_stack; i++) {
		c.each[i] = bk_proc_cpu_s(pa->stack[i]);
		c.stack += c.each[i];
	}
	c.softirqd = bk_softirqd_cpu_s();
	return c;
}

/*
 * What a slice measures: wall time, the path's CPU and the machine's, from
 * meter_start to meter_stop. Bulk and connections measure all of their
 * work; round trips start after the connect and the warm-up.
 */
struct meter {
	const struct path *pa;
	uint64_t t0, t1;
	struct cpu c0, c1;
	struct bk_machine m0, m1;
};

static void meter_start(struct meter *m)
{
	m->m0 = bk_machine_now();
	m->c0 = cpu_now(m->pa);
	m->t0 = bk_now_ns();
}

static void meter_stop(struct meter *m)
{
	m->t1 = bk_now_ns();
	m->c1 = cpu_now(m->pa);
	m->m1 = bk_machine_now();
}

/* ---------------------------------------------------------- namespaces */

static int ns_add(struct bench *b, int i)
{
	struct ns *n = &b->ns[i];
	char name[sizeof(n->name)];
	snprintf(name, sizeof(name), "ncc-%s-%d", ns_tag[i], (int)getpid());
	memcpy(n->name, name, sizeof(name));
	snprintf(n->path, sizeof(n->path), "/run/netns/%s", name);
	return bk_ns_add(n->name, &n->made);
}

static void ns_delete_all(struct bench *b)
{
	for (int i = 0; i < NS_COUNT; i++) {
		struct ns *n = &b->ns[i];
		char *del[] = {"ip", "netns", "del", n->name, NULL};
		if (n->made && bk_run_cmd(del) == 0)
			n->made = false;
	}
}

/* A memfd for a peer tool's output: shown only if the path fails. */
static int open_log(int p)
{
	paths[p].log_fd = memfd_create(paths[p].tool, MFD_CLOEXEC);
	return paths[p].log_fd >= 0 ? 0 : fail(paths[p].tool, "memfd", errno);
}

/* Prints what a peer tool said, once, when its path failed. */
static void path_log(int p)
{
	struct path *pa = &paths[p];
	char buf[2048];
	if (pa->log_fd < 0)
		return;
	ssize_t n = pread(pa->log_fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "client_bench: %s said:\n%s%s", pa->tool, buf,
		        buf[n - 1] == '\n' ? "" : "\n");
	}
	close(pa->log_fd);
	pa->log_fd = -1;
}

static int open_client_ns(struct bench *b, int p, int ns)
{
	paths[p].cli_fd = open(b->ns[ns].path, O_RDONLY | O_CLOEXEC);
	return paths[p].cli_fd >= 0 ? 0 : fail(b->ns[ns].path, "open", errno);
}

/* ------------------------------------------------------ setting up paths */

/* kernel: client ns <-> veth (MTU 65520) <-> server ns. */
static int setup_kernel(struct bench *b)
{
	struct path *pa = &paths[P_KERNEL];
	int err = ns_add(b, NS_KC);
	err = err ?: ns_add(b, NS_KS);
	if (err)
		return err;
	char *cli = b->ns[NS_KC].name, *srv = b->ns[NS_KS].name;
	err = bk_veth_pair(cli, K_CLI_DEV, srv, K_SRV_DEV);
	err = err ?: bk_link_conf(cli, K_CLI_DEV, K_MTU, K_CLI "/24");
	err = err ?: bk_link_conf(srv, K_SRV_DEV, K_MTU, K_SRV "/24");
	err = err ?: open_client_ns(b, P_KERNEL, NS_KC);
	if (!err)
		err = server_start(b->ns[NS_KS].path, K_SRV, b->cfg.port,
		                   &pa->server);
	return err;
}

/*
 * pasta: a host namespace whose only way out is a veth pair to itself
 * (the template pasta copies its address, 10.79.0.1/24, and default route,
 * via 10.79.0.254, from), the server on its 127.0.0.1, and pasta serving
 * the client's namespace from there.
 */
static int setup_pasta(struct bench *b)
{
	struct path *pa = &paths[P_PASTA];
	int err = ns_add(b, NS_PH);
	err = err ?: ns_add(b, NS_PC);
	if (err)
		return err;
	const char *host = b->ns[NS_PH].name;
	char *route[] = {"ip",  "-n",       (char *)host, "route",
	                 "add", "default",  "via",        P_GATEWAY,
	                 "dev", P_HOST_DEV, NULL};
	err = bk_veth_pair(host, P_HOST_DEV, NULL, P_HOST_PEER);
	err = err ?: bk_link_conf(host, P_HOST_DEV, K_MTU, P_HOST_CIDR);
	err = err ?: bk_link_conf(host, P_HOST_PEER, K_MTU, NULL);
	err = err ?: bk_run_cmd(route);
	err = err ?: open_client_ns(b, P_PASTA, NS_PC);
	err = err ?: open_log(P_PASTA);
	if (!err)
		err = server_start(b->ns[NS_PH].path, LOOPBACK, b->cfg.port,
		                   &pa->server);
	if (err)
		return err;
	/* --runas 0: pasta as "nobody" could not join a root-owned netns. */
	char *argv[] = {"pasta",
	                "--foreground",
	                "--quiet",
	                "--runas",
	                "0",
	                "--ipv4-only",
	                "--config-net",
	                "--ns-ifname",
	                P_TAP,
	                "--interface",
	                P_HOST_DEV,
	                "--tcp-ports",
	                "none",
	                "--udp-ports",
	                "none",
	                "--tcp-ns",
	                "none",
	                "--udp-ns",
	                "none",
	                "--netns",
	                b->ns[NS_PC].path,
	                NULL};
	pid_t pid = fork_in_ns(b->ns[NS_PH].path, NULL, 0, NULL, NULL, argv,
	                       pa->log_fd);
	if (pid < 0)
		return fail("pasta", "fork", (int)pid);
	b->pasta = pid;
	pa->stack[0] = pid;
	pa->n_stack = 1;
	return 0;
}

/* slirp4netns: a host namespace with only a loopback, the server on its
 * 127.0.0.1, and slirp4netns serving the client's namespace from there. */
static int setup_slirp(struct bench *b)
{
	struct path *pa = &paths[P_SLIRP];
	int err = ns_add(b, NS_SH);
	err = err ?: ns_add(b, NS_SC);
	err = err ?: open_client_ns(b, P_SLIRP, NS_SC);
	err = err ?: open_log(P_SLIRP);
	if (!err)
		err = server_start(b->ns[NS_SH].path, LOOPBACK, b->cfg.port,
		                   &pa->server);
	if (err)
		return err;
	int ready[2], ex[2];
	if (pipe2(ready, O_CLOEXEC) != 0)
		return fail("slirp4netns", "pipe", errno);
	if (pipe2(ex, O_CLOEXEC) != 0) {
		close(ready[0]);
		close(ready[1]);
		return fail("slirp4netns", "pipe", errno);
	}
	char *argv[] = {"slirp4netns",
	                "--configure",
	                S_MTU,
	                "--disable-dns",
	                "--ready-fd=3",
	                "--exit-fd=4",
	                "--netns-type=path",
	                b->ns[NS_SC].path,
	                S_TAP,
	                NULL};
	int keep[2] = {ready[1], ex[0]};
	pid_t pid = fork_in_ns(b->ns[NS_SH].path, keep, 2, NULL, NULL, argv,
	                       pa->log_fd);
	close(ready[1]);
	close(ex[0]);
	b->slirp_exit_fd = ex[1];
	if (pid < 0) {
		close(ready[0]);
		return fail("slirp4netns", "fork", (int)pid);
	}
	b->slirp = pid;
	pa->stack[0] = pid;
	pa->n_stack = 1;
	err = wait_ready(ready[0], "slirp4netns");
	close(ready[0]);
	if (err)
		path_log(P_SLIRP);
	return err;
}

/* netcore: the testbed with sockets, the server on its kernel side, and an
 * empty namespace for the client, attached to the broker from there. */
static int setup_netcore(struct bench *b)
{
	struct path *pa = &paths[P_NETCORE];
	int err = nc_testbed_start_sockets(&b->tb, "clientbench", 7, NULL);
	if (err)
		return fail("testbed", "start", err);
	b->tb_up = true;
	pa->stack[0] = b->tb.phy_pid;
	pa->stack[1] = b->tb.core_pid;
	pa->stack[2] = b->tb.broker_pid;
	pa->n_stack = 3;
	err = server_start(b->tb.ns_path, NC_TB_KERNEL4, b->cfg.port,
	                   &pa->server);
	if (err)
		return err;
	/* An unnamed, empty namespace (only a loopback, down): it lives as
	 * long as this fd. The client attaches from there. */
	if (unshare(CLONE_NEWNET) != 0)
		return fail("netcore client", "unshare(CLONE_NEWNET)", errno);
	pa->cli_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (pa->cli_fd < 0)
		err = fail("netcore client", "open its namespace", errno);
	if (!err && nc_client_attach(b->tb.broker_socket, &b->client) != 0)
		err = fail("netcore client", "nc_client_attach", errno);
	int back = bk_enter_ns_fd(b->home_fd);
	return err ?: back;
}

/* --------------------------------------------------------- the client */

/* One socket, whichever API the path uses. Every call returns -errno. */
struct csock {
	bool lib;
	int fd;
	struct nc_sock *nc;
};

static struct nc_client *client; /* the netcore path's */

static int c_socket(bool lib, struct csock *s)
{
	*s = (struct csock){.lib = lib, .fd = -1};
	if (lib)
		return nc_socket(client, AF_INET, SOCK_STREAM, 0, &s->nc) == 0
		           ? 0
		           : -errno;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return s->fd >= 0 ? 0 : -errno;
}

static int c_setsockopt(struct csock *s, int level, int opt, const void *v,
                        socklen_t len)
{
	int r = s->lib ? nc_setsockopt(s->nc, level, opt, v, len)
	               : setsockopt(s->fd, level, opt, v, len);
	return r == 0 ? 0 : -errno;
}

static int c_connect(struct csock *s, const struct sockaddr_in *sa)
{
	const struct sockaddr *a = (const struct sockaddr *)sa;
	int r = s->lib ? nc_connect(s->nc, a, sizeof(*sa))
	               : connect(s->fd, a, sizeof(*sa));
	return r == 0 ? 0 : -errno;
}

static ssize_t c_send(struct csock *s, const void *buf, size_t n)
{
	ssize_t r = s->lib ? nc_send(s->nc, buf, n, MSG_NOSIGNAL)
	                   : send(s->fd, buf, n, MSG_NOSIGNAL);
	return r >= 0 ? r : -errno;
}

static ssize_t c_recv(struct csock *s, void *buf, size_t n)
{
	ssize_t r = s->lib ? nc_recv(s->nc, buf, n, 0) : recv(s->fd, buf, n, 0);
	return r >= 0 ? r : -errno;
}

static void c_close(struct csock *s)
{
	if (s->lib && s->nc != NULL)
		nc_close(s->nc);
	else if (!s->lib && s->fd >= 0)
		close(s->fd);
	s->nc = NULL;
	s->fd = -1;
}

static int c_timeout(struct csock *s, int opt, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return c_setsockopt(s, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/*
 * socket, SO_SNDTIMEO WAIT_MS (bounds the connect), SO_RCVTIMEO
 * IO_TIMEO_MS, TCP_NODELAY if asked, connect. 0 or -errno.
 */
static int c_dial(const struct path *pa, uint16_t port, bool nodelay,
                  struct csock *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	if (inet_pton(AF_INET, pa->addr, &sa.sin_addr) != 1)
		return -EINVAL;
	int one = 1;
	int err = c_socket(pa->libclient, s);
	err = err ?: c_timeout(s, SO_SNDTIMEO, WAIT_MS);
	err = err ?: c_timeout(s, SO_RCVTIMEO, IO_TIMEO_MS);
	if (!err && nodelay)
		err = c_setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one,
		                   sizeof(one));
	err = err ?: c_connect(s, &sa);
	if (err == -EINPROGRESS)
		err = -ETIMEDOUT; /* SO_SNDTIMEO expired */
	if (err == -EINTR && !bk_stop_signal)
		err = -EIO;
	if (err)
		c_close(s);
	return err;
}

/*
 * Sends all of buf (blocking, SO_SNDTIMEO IO_TIMEO_MS per call): fails if
 * nothing moves for bound_ms. *last is the time of the last progress;
 * *max_gap (if not NULL) the longest time between two.
 */
static int c_send_all(struct csock *s, const uint8_t *buf, size_t n,
                      int64_t bound_ms, uint64_t *last, uint64_t *max_gap)
{
	while (n > 0) {
		ssize_t w = c_send(s, buf, n);
		if (w > 0) {
			uint64_t t = bk_now_ns();
			if (max_gap != NULL && t - *last > *max_gap)
				*max_gap = t - *last;
			buf += w;
			n -= (size_t)w;
			*last = t;
			continue;
		}
		if (bk_stop_signal)
			return -EINTR;
		if (w == 0 || (w != -EAGAIN && w != -EINTR))
			return w == 0 ? -EIO : (int)w;
		if (bk_ms_since(*last) > bound_ms)
			return -ETIMEDOUT;
	}
	return 0;
}

/* Receives exactly n bytes (blocking, SO_RCVTIMEO IO_TIMEO_MS per call):
 * fails at end of stream or if nothing comes for bound_ms. */
static int c_recv_all(struct csock *s, void *out, size_t n, int64_t bound_ms)
{
	uint8_t *p = out;
	uint64_t last = bk_now_ns();
	while (n > 0) {
		ssize_t r = c_recv(s, p, n);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			last = bk_now_ns();
			continue;
		}
		if (r == 0)
			return -EPIPE;
		if (bk_stop_signal)
			return -EINTR;
		if (r != -EAGAIN && r != -EINTR)
			return (int)r;
		if (bk_ms_since(last) > bound_ms)
			return -ETIMEDOUT;
	}
	return 0;
}

/* What a bulk transfer saw besides its rate. */
struct bulk_diag {
	uint64_t max_gap_ns; /* longest time the sender made no progress */
	int64_t retrans;     /* segments the client's TCP resent (kernel
	                        sockets: TCP_INFO), or -1 */
};

/* N bytes of the table stream to the sink; the sink's verdict checked. */
static int bulk_once(const struct path *pa, uint16_t port, uint64_t total,
                     const char *where, struct bulk_diag *d)
{
	struct csock s;
	*d = (struct bulk_diag){0, -1};
	int err = c_dial(pa, (uint16_t)(port + 1), false, &s);
	if (err)
		return fail(where, "connect", err);
	err = c_timeout(&s, SO_SNDTIMEO, IO_TIMEO_MS);
	uint64_t last = bk_now_ns(), sent = 0;
	if (!err)
		err = c_send_all(&s, (const uint8_t *)&total, sizeof(total),
		                 STALL_MS, &last, &d->max_gap_ns);
	while (!err && sent < total) {
		uint64_t left = total - sent;
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		err = c_send_all(&s, table + sent % PERIOD, n, STALL_MS, &last,
		                 &d->max_gap_ns);
		sent += n;
	}
	struct verdict v = {0, 0, 0};
	err = err ?: c_recv_all(&s, &v, sizeof(v), STALL_MS);
	if (!err && bk_now_ns() - last > d->max_gap_ns)
		d->max_gap_ns = bk_now_ns() - last;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	if (!s.lib && getsockopt(s.fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
		d->retrans = ti.tcpi_total_retrans;
	c_close(&s);
	if (err)
		return fail(where, "bulk transfer", err);
	if (v.magic != SINK_MAGIC || v.got != total) {
		fprintf(stderr,
		        "client_bench: %s: the sink got %" PRIu64
		        " bytes of %" PRIu64 "\n",
		        where, v.got, total);
		return -EPROTO;
	}
	if (v.bad_at != UINT64_MAX) {
		fprintf(stderr,
		        "client_bench: %s: byte %" PRIu64 " arrived wrong\n",
		        where, v.bad_at);
		return -EILSEQ;
	}
	return 0;
}

static int rr_one(struct csock *s, uint64_t i)
{
	uint8_t b = (uint8_t)(i * 131 + 7), got = 0;
	uint64_t last = bk_now_ns();
	int err = c_send_all(s, &b, 1, WAIT_MS, &last, NULL);
	err = err ?: c_recv_all(s, &got, 1, WAIT_MS);
	if (!err && got != b)
		err = -EILSEQ;
	return err;
}

/* warmup + n round trips on one connection; the last n are timed. */
static int rr_once(const struct path *pa, uint16_t port, uint64_t warmup,
                   uint64_t n, uint64_t *ns, const char *where, struct meter *m)
{
	struct csock s;
	int err = c_dial(pa, port, true, &s);
	if (err)
		return fail(where, "connect", err);
	for (uint64_t i = 0; !err && i < warmup + n; i++) {
		if (i == warmup)
			meter_start(m);
		uint64_t t0 = bk_now_ns();
		err = rr_one(&s, i);
		if (i >= warmup)
			ns[i - warmup] = bk_now_ns() - t0;
	}
	meter_stop(m);
	c_close(&s);
	return err ? fail(where, "1-byte round trip", err) : 0;
}

/* socket, connect, one byte there and back, close: one connection's life.
 * No TCP_NODELAY: one small write, nothing for Nagle to hold back. */
static int conn_one(const struct path *pa, uint16_t port, uint64_t i)
{
	struct csock s;
	int err = c_dial(pa, port, false, &s);
	if (err)
		return err;
	uint8_t b = (uint8_t)(i * 29 + 3), got = 0;
	uint64_t last = bk_now_ns();
	err = c_send_all(&s, &b, 1, WAIT_MS, &last, NULL);
	err = err ?: c_recv_all(&s, &got, 1, WAIT_MS);
	if (!err && got != b)
		err = -EILSEQ;
	c_close(&s);
	return err;
}

static int conns_once(const struct path *pa, uint16_t port, uint64_t n,
                      uint64_t *ns, const char *where)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = bk_now_ns();
		int err = conn_one(pa, port, i);
		if (err)
			return fail(where, "connection", err);
		ns[i] = bk_now_ns() - t0;
	}
	return 0;
}

/* ------------------------------------------------------------ placement */

/* The client (us), the path's server and its own processes on bk_first_cpu,
 * or back on all. */
static int place(int p, bool one_cpu)
{
	cpu_set_t set;
	int err = bk_pin_self(one_cpu, &set);
	if (err)
		return err;
	if (bk_pin_process(paths[p].server, &set) != 0)
		return -ESRCH;
	for (int i = 0; i < paths[p].n_stack; i++)
		if (bk_pin_process(paths[p].stack[i], &set) != 0)
			return -ESRCH;
	return 0;
}

/* ------------------------------------------------------------ the rows */

/* One path's row of one table, summed over rounds. */
#define MAX_ROUNDS 20

struct row {
	bool ok;
	uint64_t ops;   /* bytes, round trips, or connections */
	double secs;    /* wall time measured */
	struct cpu cpu; /* over the measured slices */
	struct bk_range per_round;
	double round_fig[MAX_ROUNDS]; /* each round's figure */
	unsigned int rounds;
	uint64_t *ns; /* samples (round trips, connections) */
	struct bk_stats st;
	uint64_t max_gap_ns; /* bulk: the longest pause of any transfer */
	int64_t retrans;     /* bulk: resent segments, all rounds (or -1) */
};

/* What is measured; the latency kinds both pinned to one CPU and not. */
enum { K_BULK, K_RR1, K_RR, K_CONN1, K_CONN, K_COUNT };

static const char *const kind_name[K_COUNT] = {
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

static int measure(struct bench *b, int kind, int p, uint64_t ops, uint64_t *ns,
                   struct bulk_diag *d, struct meter *m)
{
	const struct path *pa = &paths[p];
	char where[64];
	int err;
	snprintf(where, sizeof(where), "%s, %s", pa->name, kind_name[kind]);
	if (is_rr(kind))
		return rr_once(pa, b->cfg.port, b->cfg.warmup, ops, ns, where,
		               m);
	meter_start(m);
	if (kind == K_BULK)
		err = bulk_once(pa, b->cfg.port, ops, where, d);
	else
		err = conns_once(pa, b->cfg.port, ops, ns, where);
	meter_stop(m);
	return err;
}

/* Checks that everything the path needs still runs. */
static bool path_alive(int p)
{
	const struct path *pa = &paths[p];
	bool ok = bk_proc_alive(pa->server);
	for (int i = 0; i < pa->n_stack; i++)
		ok = ok && bk_proc_alive(pa->stack[i]);
	if (!ok) {
		fprintf(stderr,
		        "client_bench: %s: a process of the path is gone "
		        "(server, services or tool)\n",
		        pa->name);
		path_log(p);
	}
	return ok;
}

/* Runs one slice of a row and adds it in. */
static void run_slice(struct bench *b, struct row *r, int kind, int p,
                      unsigned int round)
{
	uint64_t ops = slice_ops(&b->cfg, kind, round);
	uint64_t *ns = r->ns ? r->ns + r->ops : NULL;
	if (!path_alive(p)) {
		r->ok = false;
		return;
	}
	int err = bk_enter_ns_fd(paths[p].cli_fd);
	err = err ?: place(p, on_one_cpu(kind));
	if (err) {
		fail(paths[p].name, "entering the namespace or pinning", err);
		place(p, false);
		bk_enter_ns_fd(b->home_fd);
		r->ok = false;
		return;
	}
	struct bulk_diag d = {0, -1};
	struct meter m = {.pa = &paths[p]};
	meter_start(&m); /* measure() starts it again where it should */
	err = measure(b, kind, p, ops, ns, &d, &m);
	if (m.t1 < m.t0)
		meter_stop(&m); /* failed before it stopped */
	place(p, false);
	bk_enter_ns_fd(b->home_fd);
	double secs = (double)(m.t1 - m.t0) / 1e9;
	struct cpu c = cpu_diff(m.c0, m.c1);
	measured.wall += secs;
	measured.ours += cpu_total(c);
	measured.busy += m.m1.busy - m.m0.busy;
	measured.steal += m.m1.steal - m.m0.steal;
	if (err) {
		path_log(p);
		r->ok = false;
		return;
	}
	cpu_add(&r->cpu, c);
	r->secs += secs;
	r->ops += ops;
	double fig =
	    is_rr(kind) ? bk_summarize(ns, ops).median : (double)ops / secs;
	bk_range_add(&r->per_round, fig);
	r->round_fig[r->rounds++] = fig;
	if (d.max_gap_ns > r->max_gap_ns)
		r->max_gap_ns = d.max_gap_ns;
	if (d.retrans >= 0)
		r->retrans = (r->retrans < 0 ? 0 : r->retrans) + d.retrans;
	if (b->cfg.verbose)
		fprintf(stderr,
		        "client_bench: round %u, %-27s %-12s %10.1f %s, "
		        "%.3f s, CPU %.3f s\n",
		        round + 1, kind_name[kind], paths[p].name,
		        kind == K_BULK ? fig / MIB : fig,
		        kind == K_BULK ? "MiB/s"
		        : is_rr(kind)  ? "us median"
		                       : "conns/s",
		        secs, cpu_total(c));
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
				if (paths[p].present && rows[kind][p].ok)
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

/* The peers' package versions (dpkg), for the header. */
static void tool_versions(struct bench *b)
{
	char out[160] = "";
	char *q[] = {"dpkg-query", "-W",          "-f=${Package} ${Version}, ",
	             "passt",      "slirp4netns", NULL};
	run_capture(q, out, sizeof(out), true);
	size_t n = strlen(out);
	if (n >= 2 && out[n - 2] == ',')
		out[n - 2] = '\0';
	snprintf(b->versions, sizeof(b->versions), "%s",
	         out[0] ? out : "unknown");
}

static void print_header(int argc, char **argv, const struct config *cfg)
{
	printf("netcore client_bench\ncommand : ");
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
	printf("build   : gcc %s, %s%s (bench + libclient, phy_driver, "
	       "netcore_core, proxy_broker)\n",
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
	uint16_t port = b->cfg.port;
	printf("peers   : %s\n", b->versions);
	printf("paths   : netcore    : libclient in an empty netns -> client "
	       "region -> netcore_core (lwIP; control\n"
	       "                       via proxy_broker) -> phy_driver -> "
	       "%s (MTU %d) -> ns %s,\n"
	       "                       server %s:%u/%u\n",
	       NC_TB_TUN, paths[P_NETCORE].mtu, b->tb.ns_name, NC_TB_KERNEL4,
	       port, port + 1);
	if (paths[P_KERNEL].present)
		printf("          kernel     : client in ns %s -> veth %s (MTU "
		       "%d) -> ns %s, server %s:%u/%u\n",
		       b->ns[NS_KC].name, K_CLI_DEV, paths[P_KERNEL].mtu,
		       b->ns[NS_KS].name, K_SRV, port, port + 1);
	else
		printf("          kernel     : skipped: %s\n",
		       paths[P_KERNEL].why);
	if (paths[P_PASTA].present)
		printf("          pasta      : client in ns %s -> tap %s (MTU "
		       "%d) -> pasta in ns %s ->\n"
		       "                       server %s:%u/%u there (the "
		       "client dials the gateway %s)\n",
		       b->ns[NS_PC].name, P_TAP, paths[P_PASTA].mtu,
		       b->ns[NS_PH].name, LOOPBACK, port, port + 1, P_GATEWAY);
	else
		printf("          pasta      : skipped: %s\n",
		       paths[P_PASTA].why);
	if (paths[P_SLIRP].present)
		printf("          slirp4netns: client in ns %s -> tap %s (MTU "
		       "%d) -> slirp4netns in ns %s ->\n"
		       "                       server %s:%u/%u there (the "
		       "client dials %s)\n",
		       b->ns[NS_SC].name, S_TAP, paths[P_SLIRP].mtu,
		       b->ns[NS_SH].name, LOOPBACK, port, port + 1, S_GATEWAY);
	else
		printf("          slirp4netns: skipped: %s\n",
		       paths[P_SLIRP].why);
	printf("cpu time: client getrusage; server, path processes "
	       "(phy_driver + netcore_core + proxy_broker,\n"
	       "          pasta, slirp4netns) and ksoftirqd: "
	       "/proc/<pid>/task/*/schedstat (ns on CPU)\n");
	printf("placing : bulk: the scheduler; latency rows twice: all of "
	       "the path on CPU %d (1 CPU),\n"
	       "          and where the scheduler puts them (any)\n\n",
	       bk_first_cpu);
}

static const char *check(const struct row *r, int p)
{
	if (!paths[p].present)
		return "skipped";
	return r->ok ? "ok" : "FAIL";
}

static double bulk_rate(const struct row *r)
{
	return r->secs > 0 ? (double)r->ops / MIB / r->secs : 0;
}

/* CPU seconds per GiB moved. */
static double per_gib(const struct row *r, double cpu_s)
{
	return r->ops > 0 ? cpu_s / ((double)r->ops / GIB) : 0;
}

/* The median of the per-round figures. */
static double round_median(const struct row *r)
{
	double v[MAX_ROUNDS];
	unsigned int n = r->rounds;
	if (n == 0)
		return 0;
	memcpy(v, r->round_fig, n * sizeof(double));
	for (unsigned int i = 1; i < n; i++) /* insertion sort, n <= 20 */
		for (unsigned int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double bulk_round_rate(const struct row *r)
{
	return round_median(r) / MIB;
}

static void print_bulk(struct row *rows, const struct config *cfg)
{
	printf("Bulk, client -> server: %" PRIu64 " MiB per transfer, one per "
	       "round, every byte checked by the server;\n"
	       "MiB/s over all rounds, then the median and the best round; "
	       "pause: the longest the sender\n"
	       "made no progress; resent: segments the client's TCP "
	       "retransmitted (kernel sockets only)\n",
	       cfg->mib);
	printf("  %-12s %7s %7s %7s %6s %9s %7s  %s\n", "path", "MiB/s",
	       "median", "best", "spread", "pause ms", "resent", "check");
	for (int p = 0; p < P_COUNT; p++) {
		struct row *r = &rows[p];
		if (!paths[p].present || r->rounds == 0) {
			printf("  %-12s %7s %7s %7s %6s %9s %7s  %s\n",
			       paths[p].name, "-", "-", "-", "-", "-", "-",
			       check(r, p));
			continue;
		}
		char resent[24] = "-";
		if (r->retrans >= 0)
			snprintf(resent, sizeof(resent), "%" PRId64,
			         r->retrans);
		printf("  %-12s %7.0f %7.0f %7.0f %5.0f%% %9.1f %7s  %s\n",
		       paths[p].name, bulk_rate(r), bulk_round_rate(r),
		       r->per_round.hi / MIB,
		       100 * bk_spread(&r->per_round, round_median(r)),
		       (double)r->max_gap_ns / 1e6, resent, check(r, p));
	}
	printf("\nBulk CPU s per GiB moved (client / server / path's own "
	       "processes / ksoftirqd / total);\n"
	       "CPUs = CPU s per wall s\n");
	printf("  %-12s %7s %7s %7s %8s %7s %5s\n", "path", "client", "server",
	       "path", "softirqd", "total", "CPUs");
	for (int p = 0; p < P_COUNT; p++) {
		struct row *r = &rows[p];
		if (!paths[p].present || r->rounds == 0) {
			printf("  %-12s %7s %7s %7s %8s %7s %5s\n",
			       paths[p].name, "-", "-", "-", "-", "-", "-");
			continue;
		}
		printf("  %-12s %7.2f %7.2f %7.2f %8.2f %7.2f %5.2f\n",
		       paths[p].name, per_gib(r, r->cpu.client),
		       per_gib(r, r->cpu.server), per_gib(r, r->cpu.stack),
		       per_gib(r, r->cpu.softirqd),
		       per_gib(r, cpu_total(r->cpu)),
		       r->secs > 0 ? cpu_total(r->cpu) / r->secs : 0);
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
	       "(all processes of the path + ksoftirqd)\n",
	       cfg->rts);
	printf("  %-12s %6s %9s %9s %9s %9s %6s %7s  %s\n", "path", "placed",
	       "median us", "p99 us", "min us", "mean us", "spread", "CPU us",
	       "check");
	for (int kind = K_RR1; kind <= K_RR; kind++)
		for (int p = 0; p < P_COUNT; p++) {
			struct row *r = &rows[kind][p];
			if (!paths[p].present) {
				printf("  %-12s %6s %9s %9s %9s %9s %6s %7s  "
				       "%s\n",
				       paths[p].name, placement(kind), "-", "-",
				       "-", "-", "-", "-", check(r, p));
				continue;
			}
			printf("  %-12s %6s %9.1f %9.1f %9.1f %9.1f %5.0f%% "
			       "%7.1f  %s\n",
			       paths[p].name, placement(kind), r->st.median,
			       r->st.p99, r->st.min, r->st.mean,
			       100 * bk_spread(&r->per_round, r->st.median),
			       us_per_op(r), check(r, p));
		}
}

static double conn_rate(const struct row *r)
{
	return r->secs > 0 ? (double)r->ops / r->secs : 0;
}

static void print_conns(struct row rows[K_COUNT][P_COUNT],
                        const struct config *cfg)
{
	printf("\nConnections: socket, connect, 1 byte there and back, close; "
	       "%" PRIu64 " per row, one after another;\n"
	       "CPU µs per connection (all processes of the path + "
	       "ksoftirqd)\n",
	       cfg->conns);
	printf("  %-12s %6s %9s %6s %9s %9s %7s  %s\n", "path", "placed",
	       "conns/s", "spread", "median us", "p99 us", "CPU us", "check");
	for (int kind = K_CONN1; kind <= K_CONN; kind++)
		for (int p = 0; p < P_COUNT; p++) {
			struct row *r = &rows[kind][p];
			if (!paths[p].present) {
				printf("  %-12s %6s %9s %6s %9s %9s %7s  %s\n",
				       paths[p].name, placement(kind), "-", "-",
				       "-", "-", "-", check(r, p));
				continue;
			}
			double rate = conn_rate(r);
			printf("  %-12s %6s %9.0f %5.0f%% %9.1f %9.1f %7.1f  "
			       "%s\n",
			       paths[p].name, placement(kind), rate,
			       100 * bk_spread(&r->per_round, rate),
			       r->st.median, r->st.p99, us_per_op(r),
			       check(r, p));
		}
}

/* netcore's figure over each peer's, for one figure of one row. */
static void print_ratio(const char *what, const struct row *r,
                        double (*fig)(const struct row *), const char *hint)
{
	double nc = fig(&r[P_NETCORE]);
	printf("  %-32s", what);
	for (int p = P_KERNEL; p < P_COUNT; p++) {
		double peer = fig(&r[p]);
		if (!paths[p].present || !r[p].ok || !r[P_NETCORE].ok ||
		    peer <= 0)
			printf(" %11s", "-");
		else
			printf(" %11.2f", nc / peer);
	}
	printf("   %s\n", hint);
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
	printf("\nRatios netcore / peer            %11s %11s %11s\n",
	       "kernel veth", "pasta", "slirp4netns");
	print_ratio("bulk MiB/s", rows[K_BULK], bulk_rate, slower);
	print_ratio("bulk MiB/s, median round", rows[K_BULK], bulk_round_rate,
	            slower);
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

/* Where netcore's own share goes, service by service. */
static void print_netcore_split(struct row rows[K_COUNT][P_COUNT])
{
	struct {
		const char *what;
		int kind;
	} lines[] = {
	    {"bulk, CPU s per GiB", K_BULK},
	    {"round trip, CPU us, 1 CPU", K_RR1},
	    {"round trip, CPU us, any", K_RR},
	    {"connection, CPU us, 1 CPU", K_CONN1},
	    {"connection, CPU us, any", K_CONN},
	};
	printf("\nnetcore's processes    %12s %12s %12s %8s %8s\n",
	       "phy_driver", "netcore_core", "proxy_broker", "client",
	       "server");
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const struct row *r = &rows[lines[i].kind][P_NETCORE];
		double unit = lines[i].kind == K_BULK ? (double)r->ops / GIB
		                                      : (double)r->ops / 1e6;
		if (!r->ok || unit <= 0)
			continue;
		printf("  %-26s %8.2f %12.2f %12.2f %8.2f %8.2f\n",
		       lines[i].what, r->cpu.each[0] / unit,
		       r->cpu.each[1] / unit, r->cpu.each[2] / unit,
		       r->cpu.client / unit, r->cpu.server / unit);
	}
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
	        "usage: client_bench [--quick] [--mib N] [--round-trips N] "
	        "[--conns N] [--rounds R] [--port P] [--skip PEER]... "
	        "[--verbose]\n"
	        "  --quick           16 MiB, 2000 round trips, 200 "
	        "connections, 2 rounds\n"
	        "  --mib N           MiB per bulk transfer, one per round "
	        "(default 256)\n"
	        "  --round-trips N   measured 1-byte round trips per row "
	        "(default 20000)\n"
	        "  --conns N         connections per row (default 2000)\n"
	        "  --rounds R        interleaved rounds (default 3)\n"
	        "  --port P          server ports P (echo) and P+1 (sink) on "
	        "every path (default 7000)\n"
	        "  --skip PEER       do not run kernel, pasta or slirp4netns "
	        "(repeatable)\n"
	        "  --verbose         each slice's figure to stderr as it is "
	        "measured\n"
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
	                       .port = 7000};
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
		if (strcmp(a, "--verbose") == 0) {
			cfg->verbose = true;
			continue;
		}
		if (strcmp(a, "--skip") == 0) {
			if (strcmp(n, "kernel") == 0)
				cfg->skip[1] = true;
			else if (strcmp(n, "pasta") == 0)
				cfg->skip[2] = true;
			else if (strcmp(n, "slirp4netns") == 0)
				cfg->skip[3] = true;
			else
				return usage();
			i++;
			continue;
		}
		if (strcmp(a, "--mib") == 0)
			ok = bk_number(n, 1, 65536, &cfg->mib);
		else if (strcmp(a, "--round-trips") == 0)
			ok = bk_number(n, 1, 10000000, &cfg->rts);
		else if (strcmp(a, "--conns") == 0)
			ok = bk_number(n, 1, 10000, &cfg->conns);
		else if (strcmp(a, "--rounds") == 0 &&
		         bk_number(n, 1, MAX_ROUNDS, &v))
			cfg->rounds = (unsigned int)v;
		else if (strcmp(a, "--port") == 0 && bk_number(n, 1, 65534, &v))
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
	return 0;
}

/* The MTU of a device in the namespace at fd (we go back home after). */
static int dev_mtu(struct bench *b, int ns_fd, const char *dev)
{
	int fd = bk_enter_ns_fd(ns_fd) == 0
	             ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
	             : -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	int mtu =
	    fd >= 0 && ioctl(fd, SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : -1;
	if (fd >= 0)
		close(fd);
	bk_enter_ns_fd(b->home_fd);
	return mtu;
}

static void read_mtus(struct bench *b)
{
	int tb_fd = open(b->tb.ns_path, O_RDONLY | O_CLOEXEC);
	paths[P_NETCORE].mtu = tb_fd >= 0 ? dev_mtu(b, tb_fd, NC_TB_TUN) : -1;
	if (tb_fd >= 0)
		close(tb_fd);
	if (paths[P_KERNEL].present)
		paths[P_KERNEL].mtu =
		    dev_mtu(b, paths[P_KERNEL].cli_fd, K_CLI_DEV);
	if (paths[P_PASTA].present)
		paths[P_PASTA].mtu = dev_mtu(b, paths[P_PASTA].cli_fd, P_TAP);
	if (paths[P_SLIRP].present)
		paths[P_SLIRP].mtu = dev_mtu(b, paths[P_SLIRP].cli_fd, S_TAP);
}

/*
 * Before measuring, each path must carry one connection's byte and a
 * 1 MiB transfer, both checked. pasta configures its tap on its own
 * schedule, so the first connection is retried for up to WAIT_MS.
 */
static int probe(struct bench *b, int p)
{
	struct path *pa = &paths[p];
	int err = bk_enter_ns_fd(pa->cli_fd);
	uint64_t start = bk_now_ns();
	char where[64];
	snprintf(where, sizeof(where), "%s, first transfer", pa->name);
	while (!err) {
		err = conn_one(pa, b->cfg.port, 0);
		if (!err || bk_stop_signal || bk_ms_since(start) > WAIT_MS)
			break;
		err = 0;
		bk_nap_ms(20);
	}
	struct bulk_diag d;
	if (err)
		fail(pa->name, "the path carries no byte", err);
	else
		err = bulk_once(pa, b->cfg.port, 1 << 20, where, &d);
	bk_enter_ns_fd(b->home_fd);
	if (err)
		path_log(p);
	return err;
}

/* Everything the run needs. The servers and tools are forked before the
 * testbed starts; each child keeps only the descriptors it needs anyway. */
static int setup(struct bench *b)
{
	b->home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (b->home_fd < 0)
		return fail("setup", "open our namespace", errno);
	int err = bk_find_runfiles("client_bench", PHY_BIN, RUNFILES_SUFFIX);
	err = err ?: bk_find_cpus();
	err = err ?: table_make();
	if (!err && paths[P_KERNEL].present)
		err = setup_kernel(b);
	err = err ?: bk_stop_signal ? -EINTR : 0;
	if (!err && paths[P_PASTA].present)
		err = setup_pasta(b);
	err = err ?: bk_stop_signal ? -EINTR : 0;
	if (!err && paths[P_SLIRP].present)
		err = setup_slirp(b);
	err = err ?: bk_stop_signal ? -EINTR : 0;
	err = err ?: setup_netcore(b);
	client = b->client;
	err = err ?: bk_stop_signal ? -EINTR : 0;
	err = err ?: settle_link(b);
	for (int p = 0; !err && p < P_COUNT; p++)
		if (paths[p].present)
			err = probe(b, p);
	if (err)
		return err;
	read_mtus(b);
	bk_find_softirqd();
	b->phy0 = nc_testbed_phy_counters(&b->tb);
	b->core0 = nc_testbed_core_report(&b->tb);
	return bk_stop_signal ? -EINTR : 0;
}

/* Every way out goes through here. Safe on a partial set-up. */
static void teardown(struct bench *b)
{
	if (b->home_fd >= 0)
		bk_enter_ns_fd(b->home_fd);
	if (b->client != NULL)
		nc_client_detach(b->client);
	b->client = client = NULL;
	if (b->tb_up)
		nc_testbed_stop(&b->tb);
	b->tb_up = false;
	if (b->slirp_exit_fd >= 0)
		close(b->slirp_exit_fd);
	b->slirp_exit_fd = -1;
	kill_child(&b->pasta);
	kill_child(&b->slirp);
	for (int p = 0; p < P_COUNT; p++) {
		kill_child(&paths[p].server);
		if (paths[p].cli_fd >= 0)
			close(paths[p].cli_fd);
		paths[p].cli_fd = -1;
		if (paths[p].log_fd >= 0)
			close(paths[p].log_fd);
		paths[p].log_fd = -1;
	}
	ns_delete_all(b);
	if (b->home_fd >= 0)
		close(b->home_fd);
	b->home_fd = -1;
}

static bool alloc_rows(struct row rows[K_COUNT][P_COUNT],
                       const struct config *cfg)
{
	bool ok = true;
	for (int kind = 0; kind < K_COUNT; kind++) {
		for (int p = 0; p < P_COUNT; p++) {
			rows[kind][p] = (struct row){.ok = true, .retrans = -1};
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
	print_netcore_split(rows);
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
	int skipped = 0;
	for (int p = 0; p < P_COUNT; p++)
		skipped += !paths[p].present;
	printf("self-check: %s%s\n",
	       ok ? "PASS (every byte checked on every path; every process "
	            "of every path alive)"
	          : "FAIL (see the messages above)",
	       skipped ? "; some peers skipped (see paths)" : "");
}

/* Which peers run; says why for each one that does not. */
static void find_tools(const struct config *cfg)
{
	for (int p = 0; p < P_COUNT; p++) {
		struct path *pa = &paths[p];
		pa->cli_fd = -1;
		pa->log_fd = -1;
		pa->present = true;
		if (cfg->skip[p]) {
			pa->present = false;
			snprintf(pa->why, sizeof(pa->why), "--skip");
		} else if (pa->tool != NULL && !in_path(pa->tool)) {
			pa->present = false;
			snprintf(pa->why, sizeof(pa->why),
			         "`%s` is not installed (Debian package %s)",
			         pa->tool, pa->package);
			fprintf(stderr,
			        "client_bench: `%s` is not installed: skipping "
			        "the %s peer (Debian package %s: apt-get "
			        "install -y --no-install-recommends %s)\n",
			        pa->tool, pa->name, pa->package, pa->package);
		}
	}
}

int main(int argc, char **argv)
{
	static struct bench b;
	static struct row rows[K_COUNT][P_COUNT];
	b.home_fd = -1;
	b.slirp_exit_fd = -1;
	if (parse_args(argc, argv, &b.cfg) != 0)
		return 2;
	bk_catch_stop_signals();
	find_tools(&b.cfg);
	tool_versions(&b);
	print_header(argc, argv, &b.cfg);
	fflush(stdout);
	int err = alloc_rows(rows, &b.cfg) ? setup(&b) : -ENOMEM;
	bool ok = false;
	if (!err) {
		print_paths(&b);
		fflush(stdout);
		ok = run_all(&b, rows);
		for (int p = 0; p < P_COUNT && !bk_stop_signal; p++)
			if (paths[p].present)
				ok = path_alive(p) && ok;
		if (!bk_stop_signal)
			print_results(&b, rows, ok);
	}
	fflush(stdout); /* before the services print their counters */
	teardown(&b);
	free_rows(rows);
	free(table);
	if (bk_stop_signal) {
		fprintf(stderr,
		        "client_bench: stopped by signal %d; cleaned up\n",
		        (int)bk_stop_signal);
		return 128 + bk_stop_signal;
	}
	if (err)
		fprintf(stderr, "client_bench: set-up failed; cleaned up\n");
	return ok ? 0 : 1;
}
