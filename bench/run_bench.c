/*
 * run_bench: unmodified programs' own figures through `netcore run`, side
 * by side in one run with the kernel's path over a veth pair and with
 * pasta. What a user of `netcore run` sees, measured by the programs they
 * would use: iperf3's throughput in both directions and curl's transfer
 * time for one large download.
 *
 * Three paths, each a client namespace and a server side, all made by the
 * bench and named with its pid (nothing touches the machine's network):
 *
 *   - netcore: a supervisor of the bench's own (`netcore up --config FILE
 *     --ready-fd 3`, run dir under a mkdtemp directory) whose TUN lives in
 *     namespace ncr-nc-PID; the servers listen on its kernel side,
 *     10.77.0.1. Each client is started as `netcore run --config FILE --
 *     iperf3 ...`: an empty namespace, the shim preloaded, every socket
 *     through broker and core (lwIP), phy driver, TUN.
 *   - kernel: client namespace ncr-kc-PID, server namespace ncr-ks-PID, a
 *     veth pair at MTU 65520 (netcore's MTU) between them: kernel TCP at
 *     both ends and nothing in between, the floor. The client runs with
 *     `ip netns exec`.
 *   - pasta (Debian package passt): client_bench's arrangement, which is
 *     the one found to work here: pasta runs in a "host" namespace whose
 *     only way out is a veth pair to itself (its template address and
 *     route), serves the client namespace with a tap (--config-net), and
 *     maps the gateway address 10.79.0.254 to the host side's loopback,
 *     where the servers listen. Port forwarding and the loopback bypass
 *     are off, so every byte crosses the tap and pasta's TCP translation.
 *     --runas 0: as "nobody" pasta could not join a namespace root made.
 *     pasta stalls under bulk load in Debian's build (bench/README.md,
 *     client_bench): its figures are reported as measured, stalls and all.
 *
 * Servers (the same programs on every path, kernel sockets, forked into
 * the server namespace, dying with the bench): `iperf3 -s`, and a small
 * HTTP server of the bench's own that answers any GET with N MiB of a
 * fixed pattern and a Content-Length (no file on disk, no Python in the
 * measured path). curl writes to /dev/null and reports %{size_download}
 * and %{http_code}; a short or failed transfer fails the row.
 *
 * Measured per round and path, the paths in a rotating order (so a burst
 * of other work hits all of them about equally): `iperf3 -c -t S -J`
 * (client -> server; bits_per_second of end.sum_received), the same with
 * -R (server -> client), and `curl` of the N MiB (%{time_total}). The
 * table shows the median over the rounds and the range, then the ratios
 * netcore/kernel and netcore/pasta.
 *
 * Bounded and clean: every command has a deadline (S + 30 s for iperf3,
 * 300 s for curl, 10 s for set-up commands), after which it is killed.
 * On every way out, SIGINT/SIGTERM/SIGHUP included, the bench stops the
 * supervisor (`netcore stop`, SIGKILL if that fails: its services die with
 * it), kills and reaps its servers and pasta by pid, deletes its five
 * namespaces and its directory. Needs root. Not a test: run by hand.
 */
#include "bench/benchkit.h"
#include "services/supervisor/testing/suptest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define NETCORE_BIN     "services/supervisor/netcore"
#define RUNFILES_SUFFIX ".runfiles/netcore"
#define CMD_MS          10000
#define WAIT_MS         10000
#define CURL_MS         300000
#define MAX_ROUNDS      20
#define IPERF_PORT      5301
#define HTTP_PORT       8301
#define OUT_CAP         (256 * 1024)

#define NC_SERVER "10.77.0.1"
#define K_MTU     65520
#define K_CLI     "10.78.0.1/24"
#define K_SRV     "10.78.0.2"
#define P_HOST    "10.79.0.1/24"
#define P_GATEWAY "10.79.0.254"
#define LOOPBACK  "127.0.0.1"

enum { P_NETCORE, P_KERNEL, P_PASTA, P_COUNT };
enum { NS_NC, NS_KC, NS_KS, NS_PH, NS_PC, NS_COUNT };
enum { M_UP, M_DOWN, M_CURL, M_COUNT };

static const char *const ns_tag[NS_COUNT] = {"nc", "kc", "ks", "ph", "pc"};

struct config {
	unsigned seconds, rounds;
	uint64_t mib;
	bool skip[P_COUNT];
};

struct path {
	const char *name;
	int server_ns, client_ns;
	const char *listen, *dial; /* server's address; what clients dial */
	pid_t iperf, http;
	bool present, failed;
	char why[96];
	double v[M_COUNT][MAX_ROUNDS]; /* Gbit/s up, down; curl seconds */
	long resent[2]; /* iperf3's retransmits, up and down, all rounds;
	                 * -1: not known (lwIP sends: no TCP_INFO) */
	unsigned n[M_COUNT];
};

struct bench {
	struct config cfg;
	struct path p[P_COUNT];
	char ns[NS_COUNT][40], ns_path[NS_COUNT][64];
	bool ns_made[NS_COUNT];
	char dir[64], conf[96], err[96], netcore[PATH_MAX];
	pid_t sup, pasta;
};

/* ------------------------------------------------------------- commands */

/* Runs argv, bounded by ms; stdout into out (if any, else /dev/null),
 * stderr inherited. A stop signal ends a stoppable command (a measuring
 * client) at once; set-up and clean-up commands run to their end, or
 * cleaning up after Ctrl-C would kill its own `ip netns del`. Returns the
 * wait status, -1 if killed or not started. */
static int run_bounded(char *const argv[], char *out, size_t cap, int64_t ms,
                       bool stoppable)
{
	int p[2] = {-1, -1};
	if (out != NULL && pipe2(p, O_CLOEXEC) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (out != NULL)
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
		                                 0);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t all;
	sigfillset(&all);
	posix_spawnattr_setsigdefault(&attr, &all); /* SIGPIPE: ours ignored */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	if (out != NULL)
		close(p[1]);
	uint64_t start = bk_now_ns();
	size_t used = 0;
	while (!err && out != NULL && used + 1 < cap &&
	       bk_ms_since(start) < ms && !(stoppable && bk_stop_signal)) {
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t n = read(p[0], out + used, cap - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	if (out != NULL) {
		out[used] = '\0';
		close(p[0]);
	}
	if (err)
		return -1;
	int64_t left = ms - bk_ms_since(start);
	if (stoppable && bk_stop_signal)
		left = 0;
	return bk_reap_within(pid, left > 0 ? left : 0);
}

static int run_capture(char *const argv[], char *out, size_t cap, int64_t ms)
{
	return run_bounded(argv, out, cap, ms, false);
}

static bool ok_status(int status)
{
	return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Forks a child that dies with us, in namespace ns_path, stdio on
 * /dev/null, and runs fn() or execs argv. Returns the pid or -errno. */
static pid_t fork_in_ns(const char *ns_path, void (*fn)(void),
                        char *const argv[])
{
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid < 0 ? -errno : pid;
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
	    bk_enter_ns_path(ns_path) != 0)
		_exit(120);
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	close_range(3, ~0u, 0);
	if (fn != NULL) {
		fn();
		_exit(0);
	}
	execvp(argv[0], argv);
	_exit(127);
}

static void kill_child(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	bk_reap_within(*pid, WAIT_MS);
	*pid = 0;
}

/* ---------------------------------------------------------- the servers */

static uint64_t http_bytes;
static const char *http_addr;

static void http_one(int c)
{
	char req[8192];
	size_t used = 0;
	bk_set_timeouts(c, WAIT_MS);
	while (used + 1 < sizeof(req)) {
		ssize_t n = read(c, req + used, sizeof(req) - 1 - used);
		if (n <= 0)
			return;
		used += (size_t)n;
		req[used] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	static uint8_t chunk[1 << 20];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 131 + (i >> 11));
	char head[256];
	int h = snprintf(head, sizeof(head),
	                 "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n"
	                 "Content-Type: application/octet-stream\r\n"
	                 "Connection: close\r\n\r\n",
	                 (unsigned long long)http_bytes);
	if (bk_write_all(c, head, (size_t)h) != 0)
		return;
	for (uint64_t left = http_bytes; left > 0;) {
		size_t n = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
		if (bk_write_all(c, chunk, n) != 0)
			return;
		left -= n;
	}
}

/* Runs in the server namespace: one connection at a time, forever. */
static void http_main(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(HTTP_PORT)};
	inet_pton(AF_INET, http_addr, &sa.sin_addr);
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(s, 8) != 0)
		_exit(1);
	for (;;) {
		int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		http_one(c);
		close(c);
	}
}

/* Connects from inside ns_fd's namespace until addr:port answers. */
static int wait_listening(const char *ns_path, const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, addr, &sa.sin_addr);
	int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0 || bk_enter_ns_path(ns_path) != 0) {
		if (home >= 0)
			close(home);
		return -EIO;
	}
	int rc = -ETIMEDOUT;
	uint64_t start = bk_now_ns();
	while (rc != 0 && bk_ms_since(start) < WAIT_MS && !bk_stop_signal) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			rc = 0;
		else
			bk_nap_ms(50);
		close(fd);
	}
	if (bk_enter_ns_fd(home) != 0)
		abort(); /* the bench would go on in the wrong namespace */
	close(home);
	return rc;
}

static int servers_start(struct bench *b, struct path *pa)
{
	const char *ns = b->ns_path[pa->server_ns];
	char port[16];
	snprintf(port, sizeof(port), "%d", IPERF_PORT);
	char *iperf[] = {"iperf3", "-s", "-B", (char *)pa->listen,
	                 "-p",     port, NULL};
	pa->iperf = fork_in_ns(ns, NULL, iperf);
	http_addr = pa->listen;
	pa->http = fork_in_ns(ns, http_main, NULL);
	if (pa->iperf < 0 || pa->http < 0)
		return -EIO;
	int err = wait_listening(ns, pa->listen, IPERF_PORT);
	return err ?: wait_listening(ns, pa->listen, HTTP_PORT);
}

/* ---------------------------------------------------------- namespaces */

static int ns_add(struct bench *b, int i)
{
	/* Through a local copy: gcc sees b->ns and b->ns_path as one
	 * object and warns of an overlap (-Wrestrict). */
	char name[sizeof(b->ns[i])];
	snprintf(name, sizeof(name), "ncr-%s-%d", ns_tag[i], (int)getpid());
	memcpy(b->ns[i], name, sizeof(name));
	snprintf(b->ns_path[i], sizeof(b->ns_path[i]), "/run/netns/%s", name);
	return bk_ns_add(b->ns[i], &b->ns_made[i]);
}

/* ------------------------------------------------------------ the paths */

static int write_config(struct bench *b)
{
	FILE *f = fopen(b->conf, "w");
	if (f == NULL)
		return -errno;
	fprintf(f,
	        "# run_bench\nrun_dir %s/run\nnetns %s\ntun ncrb0\n"
	        "start_timeout_ms 10000\n",
	        b->dir, b->ns_path[NS_NC]);
	return fclose(f) == 0 ? 0 : -EIO;
}

static int supervisor_start(struct bench *b)
{
	if (suptest_start_supervisor(b->netcore, b->conf, b->err, 3 * WAIT_MS,
	                             &b->sup) == 0)
		return 0;
	fprintf(stderr, "run_bench: netcore up did not get ready (see %s)\n",
	        b->err);
	return -EIO;
}

static int setup_netcore(struct bench *b)
{
	int err = ns_add(b, NS_NC);
	err = err ?: write_config(b);
	err = err ?: supervisor_start(b);
	return err ?: servers_start(b, &b->p[P_NETCORE]);
}

static int setup_kernel(struct bench *b)
{
	int err = ns_add(b, NS_KC);
	err = err ?: ns_add(b, NS_KS);
	if (err)
		return err;
	err = bk_veth_pair(b->ns[NS_KC], "ncrk0", b->ns[NS_KS], "ncrk1");
	err = err ?: bk_link_conf(b->ns[NS_KC], "ncrk0", K_MTU, K_CLI);
	err = err ?: bk_link_conf(b->ns[NS_KS], "ncrk1", K_MTU, K_SRV "/24");
	return err ?: servers_start(b, &b->p[P_KERNEL]);
}

static int start_pasta(struct bench *b)
{
	char *argv[] = {"pasta",
	                "--foreground",
	                "--quiet",
	                "--runas",
	                "0",
	                "--ipv4-only",
	                "--config-net",
	                "--ns-ifname",
	                "ncrt0",
	                "--interface",
	                "ncrp0",
	                "--tcp-ports",
	                "none",
	                "--udp-ports",
	                "none",
	                "--tcp-ns",
	                "none",
	                "--udp-ns",
	                "none",
	                "--netns",
	                b->ns_path[NS_PC],
	                NULL};
	b->pasta = fork_in_ns(b->ns_path[NS_PH], NULL, argv);
	if (b->pasta < 0)
		return (int)b->pasta;
	/* pasta configures the tap on its own time: ready once a server
	 * answers through it. */
	return wait_listening(b->ns_path[NS_PC], P_GATEWAY, HTTP_PORT);
}

static int setup_pasta(struct bench *b)
{
	int err = ns_add(b, NS_PH);
	err = err ?: ns_add(b, NS_PC);
	if (err)
		return err;
	const char *h = b->ns[NS_PH];
	char *route[] = {"ip",  "-n",      (char *)h, "route", "add", "default",
	                 "via", P_GATEWAY, "dev",     "ncrp0", NULL};
	err = bk_veth_pair(h, "ncrp0", NULL, "ncrp1");
	err = err ?: bk_link_conf(h, "ncrp0", K_MTU, P_HOST);
	err = err ?: bk_link_conf(h, "ncrp1", K_MTU, NULL);
	err = err ?: bk_run_cmd(route);
	err = err ?: servers_start(b, &b->p[P_PASTA]);
	return err ?: start_pasta(b);
}

/* ----------------------------------------------------------- measuring */

/* The client's argv: the path's prefix, then the program's words. */
static void client_argv(struct bench *b, int p, char *const words[],
                        char *argv[], int cap)
{
	int n = 0;
	if (p == P_NETCORE) {
		char *pre[] = {b->netcore, "run", "--config", b->conf, "--"};
		for (int i = 0; i < 5; i++)
			argv[n++] = pre[i];
	} else {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = b->ns[b->p[p].client_ns];
	}
	for (int i = 0; words[i] != NULL && n < cap - 1; i++)
		argv[n++] = words[i];
	argv[n] = NULL;
}

/* A number after key in the object that follows "end" then section in
 * iperf3 -J output, or -1. */
static double iperf_figure(const char *json, const char *section,
                           const char *key)
{
	const char *end = strstr(json, "\"end\":");
	const char *sum = end ? strstr(end, section) : NULL;
	const char *close = sum ? strchr(sum, '}') : NULL;
	const char *at = sum ? strstr(sum, key) : NULL;
	if (at == NULL || at > close)
		return -1;
	return strtod(at + strlen(key), NULL);
}

static int measure_iperf(struct bench *b, int p, bool reverse, double *gbps)
{
	struct path *pa = &b->p[p];
	char secs[16], port[16];
	snprintf(secs, sizeof(secs), "%u", b->cfg.seconds);
	snprintf(port, sizeof(port), "%d", IPERF_PORT);
	char *words[] = {
	    "iperf3", "-c", (char *)pa->dial,      "-p", port, "-t",
	    secs,     "-J", reverse ? "-R" : NULL, NULL};
	char *argv[24];
	client_argv(b, p, words, argv, 24);
	static char out[OUT_CAP];
	int status = run_bounded(argv, out, sizeof(out),
	                         (int64_t)b->cfg.seconds * 1000 + 30000, true);
	double bps =
	    iperf_figure(out, "\"sum_received\":", "\"bits_per_second\":");
	/* The sender's TCP: the client's up, the server's with -R. Up
	 * through netcore the sender is lwIP in the core: iperf3's
	 * TCP_INFO fails under the shim and its figure is garbage. */
	double rt = iperf_figure(out, "\"sum_sent\":", "\"retransmits\":");
	if (p == P_NETCORE && !reverse)
		rt = -1;
	long *resent = &pa->resent[reverse];
	*resent = rt < 0 || *resent < 0 ? -1 : *resent + (long)rt;
	if (!ok_status(status) || bps <= 0) {
		if (bk_stop_signal) /* killed on purpose: says enough */
			return -EINTR;
		fprintf(stderr, "run_bench: %s: iperf3%s failed (status %#x)\n",
		        pa->name, reverse ? " -R" : "", status);
		return -EIO;
	}
	*gbps = bps / 1e9;
	return 0;
}

static int measure_curl(struct bench *b, int p, double *secs)
{
	struct path *pa = &b->p[p];
	char url[96];
	snprintf(url, sizeof(url), "http://%s:%d/blob", pa->dial, HTTP_PORT);
	char *words[] = {
	    "curl",       "-sS",
	    "-o",         "/dev/null",
	    "--max-time", "280",
	    "-w",         "%{http_code} %{size_download} %{time_total}\n",
	    url,          NULL};
	char *argv[24];
	client_argv(b, p, words, argv, 24);
	char out[512];
	int status = run_bounded(argv, out, sizeof(out), CURL_MS, true);
	unsigned code = 0;
	unsigned long long size = 0;
	if (ok_status(status) &&
	    sscanf(out, "%u %llu %lf", &code, &size, secs) == 3 &&
	    code == 200 && size == b->cfg.mib << 20)
		return 0;
	if (bk_stop_signal)
		return -EINTR;
	fprintf(stderr, "run_bench: %s: curl failed (status %#x): %s\n",
	        pa->name, status, out);
	return -EIO;
}

static void measure_round(struct bench *b, int p)
{
	struct path *pa = &b->p[p];
	double v;
	for (int m = 0; m < M_COUNT && !bk_stop_signal; m++) {
		int err = m == M_CURL ? measure_curl(b, p, &v)
		                      : measure_iperf(b, p, m == M_DOWN, &v);
		if (err) {
			pa->failed = true;
			continue;
		}
		pa->v[m][pa->n[m]++] = v;
	}
}

static void run_all(struct bench *b)
{
	for (unsigned r = 0; r < b->cfg.rounds && !bk_stop_signal; r++) {
		fprintf(stderr, "run_bench: round %u of %u\n", r + 1,
		        b->cfg.rounds);
		for (int k = 0; k < P_COUNT && !bk_stop_signal; k++) {
			int p = (int)((r + (unsigned)k) % P_COUNT);
			if (b->p[p].present)
				measure_round(b, p);
		}
	}
}

/* ------------------------------------------------------------- output */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of a path's figures for m (sorts them), or 0 if none. */
static double median(struct path *pa, int m)
{
	unsigned n = pa->n[m];
	if (n == 0)
		return 0;
	qsort(pa->v[m], n, sizeof(double), cmp_double);
	return n % 2 ? pa->v[m][n / 2]
	             : (pa->v[m][n / 2 - 1] + pa->v[m][n / 2]) / 2;
}

static void print_cell(struct path *pa, int m, const char *fmt)
{
	char cell[64] = "-";
	if (pa->n[m] > 0) {
		char lo[16], hi[16], med[16];
		snprintf(med, sizeof(med), fmt, median(pa, m));
		snprintf(lo, sizeof(lo), fmt, pa->v[m][0]);
		snprintf(hi, sizeof(hi), fmt, pa->v[m][pa->n[m] - 1]);
		snprintf(cell, sizeof(cell), "%s (%s-%s)", med, lo, hi);
	}
	printf(" %22s", cell);
}

static void print_table(struct bench *b)
{
	printf("\nMedian over rounds (min-max). iperf3: Gbit/s received; "
	       "curl: seconds for %llu MiB;\n"
	       "resent: segments the sending TCP retransmitted in all iperf3 "
	       "runs\n(-: unknown; up through netcore lwIP sends, and iperf3 "
	       "cannot ask it)\n",
	       (unsigned long long)b->cfg.mib);
	printf("  %-12s %22s %22s %22s %9s %13s  %s\n", "path", "iperf3 up",
	       "iperf3 down (-R)", "curl time_total s", "curl MiB/s",
	       "resent up/dn", "check");
	for (int p = 0; p < P_COUNT; p++) {
		struct path *pa = &b->p[p];
		if (!pa->present) {
			printf("  %-12s skipped: %s\n", pa->name, pa->why);
			continue;
		}
		printf("  %-12s", pa->name);
		print_cell(pa, M_UP, "%.2f");
		print_cell(pa, M_DOWN, "%.2f");
		print_cell(pa, M_CURL, "%.3f");
		double t = median(pa, M_CURL);
		char rt[48], up[20] = "-", dn[20] = "-";
		if (pa->resent[0] >= 0)
			snprintf(up, sizeof(up), "%ld", pa->resent[0]);
		if (pa->resent[1] >= 0)
			snprintf(dn, sizeof(dn), "%ld", pa->resent[1]);
		snprintf(rt, sizeof(rt), "%s/%s", up, dn);
		printf(" %9.0f %13s  %s\n", t > 0 ? (double)b->cfg.mib / t : 0,
		       rt, pa->failed ? "FAIL" : "ok");
	}
}

static void print_ratio(struct bench *b, const char *what, int m, bool inv)
{
	printf("  %-28s", what);
	for (int p = P_KERNEL; p < P_COUNT; p++) {
		double n = median(&b->p[P_NETCORE], m), o = median(&b->p[p], m);
		if (!b->p[p].present || n <= 0 || o <= 0)
			printf(" %12s", "-");
		else
			printf(" %12.2f", inv ? o / n : n / o);
	}
	printf("\n");
}

static void print_ratios(struct bench *b)
{
	printf("\nRatios netcore / peer (<1: netcore slower)  %12s %12s\n",
	       "kernel veth", "pasta");
	print_ratio(b, "iperf3 up", M_UP, false);
	print_ratio(b, "iperf3 down (-R)", M_DOWN, false);
	print_ratio(b, "curl MiB/s (time inverted)", M_CURL, true);
}

static void print_version(const char *pkg)
{
	char *argv[] = {"dpkg-query", "-W",        "-f",
	                "${Version}", (char *)pkg, NULL};
	char out[128];
	if (!ok_status(run_capture(argv, out, sizeof(out), CMD_MS)))
		snprintf(out, sizeof(out), "?");
	printf(" %s %s", pkg, out);
}

static void print_header(struct bench *b, int argc, char **argv)
{
	printf("netcore run_bench\ncommand :");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	bk_print_machine();
	printf("tools   :");
	print_version("iperf3");
	print_version("curl");
	print_version("passt");
	printf("\nmode    : %u round(s); iperf3 -t %u each way; curl of %llu "
	       "MiB; paths in rotating order\n",
	       b->cfg.rounds, b->cfg.seconds, (unsigned long long)b->cfg.mib);
	printf("paths   : netcore: netcore run (empty netns, shim) -> broker, "
	       "core, phy, TUN -> %s\n"
	       "          kernel veth: ns %s -> veth MTU %d -> ns %s, %s\n"
	       "          pasta: ns %s -> tap -> pasta in ns %s -> %s (dial "
	       "%s)\n",
	       NC_SERVER, b->ns[NS_KC], K_MTU, b->ns[NS_KS], K_SRV,
	       b->ns[NS_PC], b->ns[NS_PH], LOOPBACK, P_GATEWAY);
}

static void print_stats(struct bench *b)
{
	char *argv[] = {b->netcore, "stats", "--config", b->conf, NULL};
	static char out[8192];
	if (b->sup > 0 &&
	    ok_status(run_capture(argv, out, sizeof(out), CMD_MS)))
		printf("\nnetcore stats after the run:\n%s", out);
}

/* -------------------------------------------------------- set-up, end */

static void teardown(struct bench *b)
{
	for (int p = 0; p < P_COUNT; p++) {
		kill_child(&b->p[p].iperf);
		kill_child(&b->p[p].http);
	}
	kill_child(&b->pasta);
	if (b->sup > 0) {
		char *stop[] = {b->netcore, "stop", "--config", b->conf, NULL};
		char out[512];
		run_capture(stop, out, sizeof(out), CMD_MS);
		/* SIGKILL if stop did not end it: its services die with
		 * it (--die-with-parent). */
		bk_reap_within(b->sup, WAIT_MS);
		b->sup = 0;
	}
	for (int i = 0; i < NS_COUNT; i++) {
		char *del[] = {"ip", "netns", "del", b->ns[i], NULL};
		if (b->ns_made[i] && bk_run_cmd(del) == 0)
			b->ns_made[i] = false;
	}
	if (b->dir[0])
		suptest_remove_tree(b->dir);
}

static bool installed(const char *tool)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	char *argv[] = {"sh", "-c", cmd, NULL};
	return ok_status(run_capture(argv, NULL, 0, CMD_MS));
}

static void init_paths(struct bench *b)
{
	static const struct path init[P_COUNT] = {
	    [P_NETCORE] = {"netcore", NS_NC, -1, NC_SERVER, NC_SERVER},
	    [P_KERNEL] = {"kernel veth", NS_KS, NS_KC, K_SRV, K_SRV},
	    [P_PASTA] = {"pasta", NS_PH, NS_PC, LOOPBACK, P_GATEWAY},
	};
	for (int p = 0; p < P_COUNT; p++) {
		b->p[p] = init[p];
		b->p[p].present = !b->cfg.skip[p];
		if (b->cfg.skip[p])
			snprintf(b->p[p].why, sizeof(b->p[p].why), "--skip");
	}
	if (b->p[P_PASTA].present && !installed("pasta")) {
		b->p[P_PASTA].present = false;
		snprintf(b->p[P_PASTA].why, sizeof(b->p[P_PASTA].why),
		         "pasta is not installed (Debian package passt)");
	}
}

static int setup(struct bench *b)
{
	snprintf(b->dir, sizeof(b->dir), "/tmp/ncrunb-XXXXXX");
	if (mkdtemp(b->dir) == NULL) {
		b->dir[0] = '\0';
		return -errno;
	}
	snprintf(b->conf, sizeof(b->conf), "%s/netcore.conf", b->dir);
	snprintf(b->err, sizeof(b->err), "%s/netcore.stderr", b->dir);
	if (!installed("iperf3") || !installed("curl")) {
		fprintf(stderr, "run_bench: needs iperf3 and curl "
		                "(tools/setup.sh)\n");
		return -ENOENT;
	}
	int err = setup_netcore(b);
	if (!err && b->p[P_KERNEL].present)
		err = setup_kernel(b);
	if (!err && b->p[P_PASTA].present && setup_pasta(b) != 0) {
		/* pasta is the peer most likely to misbehave: measure the
		 * others anyway. */
		fprintf(stderr, "run_bench: pasta did not come up; skipping\n");
		b->p[P_PASTA].present = false;
		snprintf(b->p[P_PASTA].why, sizeof(b->p[P_PASTA].why),
		         "set-up failed");
		kill_child(&b->pasta);
	}
	return err;
}

/* ------------------------------------------------------------- options */

static int usage(void)
{
	fprintf(stderr,
	        "usage: run_bench [--quick] [--seconds S] [--rounds R] "
	        "[--mib N] [--skip kernel|pasta]...\n"
	        "  --quick      1 round, iperf3 -t 1, 16 MiB (a self-check)\n"
	        "  --seconds S  iperf3 -t S each way (default 5)\n"
	        "  --rounds R   rounds, paths in rotating order (default 3)\n"
	        "  --mib N      curl download size (default 256)\n");
	return 2;
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
	*cfg = (struct config){.seconds = 5, .rounds = 3, .mib = 256};
	uint64_t v;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i],
		           *next = i + 1 < argc ? argv[i + 1] : "";
		if (strcmp(a, "--quick") == 0) {
			*cfg = (struct config){
			    .seconds = 1, .rounds = 1, .mib = 16};
		} else if (strcmp(a, "--seconds") == 0 &&
		           bk_number(next, 1, 600, &v)) {
			cfg->seconds = (unsigned)v;
			i++;
		} else if (strcmp(a, "--rounds") == 0 &&
		           bk_number(next, 1, MAX_ROUNDS, &v)) {
			cfg->rounds = (unsigned)v;
			i++;
		} else if (strcmp(a, "--mib") == 0 &&
		           bk_number(next, 1, 4096, &v)) {
			cfg->mib = v;
			i++;
		} else if (strcmp(a, "--skip") == 0 &&
		           (strcmp(next, "kernel") == 0 ||
		            strcmp(next, "pasta") == 0)) {
			cfg->skip[next[0] == 'k' ? P_KERNEL : P_PASTA] = true;
			i++;
		} else {
			return usage();
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct bench b;
	if (parse_args(argc, argv, &b.cfg) != 0)
		return 2;
	if (bk_find_runfiles("run_bench", NETCORE_BIN, RUNFILES_SUFFIX) != 0 ||
	    realpath(NETCORE_BIN, b.netcore) == NULL)
		return 1;
	bk_catch_stop_signals();
	http_bytes = b.cfg.mib << 20;
	init_paths(&b);
	int err = setup(&b);
	bool ok = false;
	if (!err) {
		print_header(&b, argc, argv);
		fflush(stdout);
		run_all(&b);
		ok = true;
		for (int p = 0; p < P_COUNT; p++)
			ok = ok && !(b.p[p].present && b.p[p].failed);
		if (!bk_stop_signal) {
			print_table(&b);
			print_ratios(&b);
			print_stats(&b);
			char load[64];
			bk_loadavg(load, sizeof(load));
			printf("loadavg : %s (at end)\n", load);
		}
	}
	fflush(stdout);
	teardown(&b);
	if (bk_stop_signal) {
		fprintf(stderr, "run_bench: stopped by signal %d; cleaned up\n",
		        (int)bk_stop_signal);
		return 128 + bk_stop_signal;
	}
	if (err)
		fprintf(stderr, "run_bench: set-up failed; cleaned up\n");
	return ok ? 0 : 1;
}
