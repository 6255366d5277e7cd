/*
 * benchkit: the parts of echo_bench and client_bench that are the same.
 *
 * Both benches measure a path through netcore against the kernel's own
 * TCP in one run, and around the measuring they need the same plumbing:
 * a monotonic clock and bounded naps, a stop flag that SIGINT, SIGTERM and
 * SIGHUP set without restarting blocked calls (so every loop can see it and
 * clean up), reaping a child within a deadline and SIGKILLing it after,
 * entering a network namespace, CPU time from schedstat (ns, all threads)
 * and getrusage, the ksoftirqd threads and /proc/stat for the machine as a
 * whole, pinning to one CPU, the sample statistics (median, p99, min, mean)
 * and per-round spread, the header's machine facts, the runfiles search and
 * waiting for the testbed's link to settle.
 *
 * Only what was the same in both, line for line, lives here; what each
 * bench does its own way (its paths and namespaces, its clients, its rows
 * and tables, how it reports a failure) stays in the bench. Nothing here
 * prints a failure: functions return -errno (or a documented value) and the
 * bench says what went wrong in its own name. State is the few globals the
 * benches already had, now named bk_: the stop signal, the ksoftirqd pids
 * and the usable CPUs.
 *
 * testonly, like the testbed it waits on; not for use outside bench/.
 */
#include "bench/benchkit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOFTIRQD 64

volatile sig_atomic_t bk_stop_signal;
cpu_set_t bk_all_cpus;
int bk_first_cpu = -1;

static pid_t softirqd[MAX_SOFTIRQD];
static int n_softirqd;

/* ------------------------------------------------------------- time */

uint64_t bk_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t bk_ms_since(uint64_t start)
{
	return (int64_t)((bk_now_ns() - start) / 1000000ull);
}

void bk_nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------- signals */

static void on_stop(int sig)
{
	bk_stop_signal = sig;
}

void bk_catch_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* -------------------------------------------------------- processes */

int bk_reap_within(pid_t pid, int64_t timeout_ms)
{
	uint64_t start = bk_now_ns();
	int status;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (bk_ms_since(start) > timeout_ms)
			break;
		bk_nap_ms(2);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -1;
}

int bk_run_cmd(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	int status = err ? -1 : bk_reap_within(pid, 10000);
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "%s: command failed:", program_invocation_short_name);
	for (int i = 0; argv[i] != NULL; i++)
		fprintf(stderr, " %s", argv[i]);
	fprintf(stderr, "\n");
	return -EIO;
}

int bk_ns_add(const char *name, bool *made)
{
	char *add[] = {"ip", "netns", "add", (char *)name, NULL};
	char *lo[] = {"ip",  "-n", (char *)name, "link",
	              "set", "lo", "up",         NULL};
	if (bk_run_cmd(add) != 0)
		return -EIO;
	*made = true;
	return bk_run_cmd(lo);
}

int bk_veth_pair(const char *ns, const char *dev, const char *peer_ns,
                 const char *peer)
{
	char *add[] = {"ip",         "-n",    (char *)ns,      "link", "add",
	               (char *)dev,  "type",  "veth",          "peer", "name",
	               (char *)peer, "netns", (char *)peer_ns, NULL};
	if (peer_ns == NULL)
		add[11] = NULL; /* no "netns": the peer stays in ns */
	return bk_run_cmd(add);
}

int bk_link_conf(const char *ns, const char *dev, int mtu, const char *cidr)
{
	char mtus[16];
	snprintf(mtus, sizeof(mtus), "%d", mtu);
	char *set_mtu[] = {"ip",        "-n",  (char *)ns, "link", "set",
	                   (char *)dev, "mtu", mtus,       NULL};
	char *addr[] = {"ip",         "-n",  (char *)ns,  "addr", "add",
	                (char *)cidr, "dev", (char *)dev, NULL};
	char *up[] = {"ip",  "-n",        (char *)ns, "link",
	              "set", (char *)dev, "up",       NULL};
	int err = bk_run_cmd(set_mtu);
	if (!err && cidr != NULL)
		err = bk_run_cmd(addr);
	return err ?: bk_run_cmd(up);
}

bool bk_proc_alive(pid_t pid)
{
	char path[64], line[256];
	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	char *got = fgets(line, sizeof(line), f);
	fclose(f);
	char *p = got ? strrchr(line, ')') : NULL;
	return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

int bk_enter_ns_fd(int fd)
{
	return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
}

int bk_enter_ns_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int err = bk_enter_ns_fd(fd);
	close(fd);
	return err;
}

/* ---------------------------------------------------------- sockets */

void bk_set_timeouts(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int bk_write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

uint8_t *bk_table_make(size_t period, size_t tail)
{
	uint8_t *table = malloc(period + tail);
	if (table == NULL)
		return NULL;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < period; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		table[i] = (uint8_t)(x >> 32);
	}
	memcpy(table + period, table, tail);
	return table;
}

/* --------------------------------------------------------- CPU time */

int bk_for_each_task(pid_t pid, void (*fn)(pid_t tid, void *ctx), void *ctx)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		fn((pid_t)atoi(e->d_name), ctx);
		n++;
	}
	closedir(d);
	return n;
}

/* Adds a thread's time on CPU (schedstat: ns, precise) to *ctx. */
static void add_task_cpu(pid_t tid, void *ctx)
{
	char path[64];
	unsigned long long ns = 0;
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)tid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	if (fscanf(f, "%llu", &ns) == 1)
		*(double *)ctx += (double)ns / 1e9;
	fclose(f);
}

double bk_proc_cpu_s(pid_t pid)
{
	double s = 0;
	bk_for_each_task(pid, add_task_cpu, &s);
	return s;
}

double bk_self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void bk_find_softirqd(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL &&
	       n_softirqd < MAX_SOFTIRQD) {
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL &&
		    strncmp(comm, "ksoftirqd/", 10) == 0)
			softirqd[n_softirqd++] = (pid_t)atoi(e->d_name);
		fclose(f);
	}
	if (d != NULL)
		closedir(d);
}

double bk_softirqd_cpu_s(void)
{
	double s = 0;
	for (int i = 0; i < n_softirqd; i++)
		s += bk_proc_cpu_s(softirqd[i]);
	return s;
}

struct bk_machine bk_machine_now(void)
{
	struct bk_machine m = {0, 0};
	unsigned long long us, ni, sy, id, io, irq, sirq, st;
	FILE *f = fopen("/proc/stat", "re");
	if (f == NULL)
		return m;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &us, &ni,
	           &sy, &id, &io, &irq, &sirq, &st) == 8) {
		double tick = (double)sysconf(_SC_CLK_TCK);
		m.busy = (double)(us + ni + sy + irq + sirq) / tick;
		m.steal = (double)st / tick;
	}
	fclose(f);
	return m;
}

/* ------------------------------------------------------------ placement */

int bk_find_cpus(void)
{
	if (sched_getaffinity(0, sizeof(bk_all_cpus), &bk_all_cpus) != 0)
		return -errno;
	for (int cpu = 0; cpu < CPU_SETSIZE && bk_first_cpu < 0; cpu++)
		if (CPU_ISSET(cpu, &bk_all_cpus))
			bk_first_cpu = cpu;
	return bk_first_cpu >= 0 ? 0 : -ENODEV;
}

static void pin_task(pid_t tid, void *ctx)
{
	sched_setaffinity(tid, sizeof(cpu_set_t), ctx);
}

int bk_pin_self(bool one_cpu, cpu_set_t *set)
{
	*set = bk_all_cpus;
	if (one_cpu) {
		CPU_ZERO(set);
		CPU_SET(bk_first_cpu, set);
	}
	return sched_setaffinity(0, sizeof(*set), set) == 0 ? 0 : -errno;
}

int bk_pin_process(pid_t pid, cpu_set_t *set)
{
	return bk_for_each_task(pid, pin_task, set) == 0 ? -ESRCH : 0;
}

/* ----------------------------------------------------------- statistics */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

struct bk_stats bk_summarize(uint64_t *ns, uint64_t n)
{
	struct bk_stats s = {0};
	if (n == 0)
		return s;
	qsort(ns, n, sizeof(*ns), cmp_u64);
	double sum = 0;
	for (uint64_t i = 0; i < n; i++)
		sum += (double)ns[i];
	uint64_t p99 = n * 99 / 100;
	s.median = (double)ns[n / 2] / 1e3;
	s.p99 = (double)ns[p99 < n ? p99 : n - 1] / 1e3;
	s.min = (double)ns[0] / 1e3;
	s.mean = sum / (double)n / 1e3;
	return s;
}

void bk_range_add(struct bk_range *r, double v)
{
	if (!r->any || v < r->lo)
		r->lo = v;
	if (!r->any || v > r->hi)
		r->hi = v;
	r->any = true;
}

double bk_spread(const struct bk_range *r, double whole)
{
	return whole > 0 && r->any ? (r->hi - r->lo) / 2 / whole : 0;
}

/* ------------------------------------------------------ output, options */

static void cpu_model(char *out, size_t len)
{
	snprintf(out, len, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (f == NULL)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');
		if (colon == NULL || strncmp(line, "model name", 10) != 0)
			continue;
		snprintf(out, len, "%s", colon + 1 + (colon[1] == ' '));
		out[strcspn(out, "\n")] = '\0';
		break;
	}
	fclose(f);
}

void bk_loadavg(char *out, size_t len)
{
	snprintf(out, len, "?");
	FILE *f = fopen("/proc/loadavg", "re");
	if (f == NULL)
		return;
	if (fgets(out, (int)len, f) != NULL)
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

void bk_print_machine(void)
{
	char model[160], load[64];
	cpu_set_t set;
	struct utsname u;
	int usable =
	    sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : -1;
	printf("nproc   : %d usable (%ld online)\n", usable,
	       sysconf(_SC_NPROCESSORS_ONLN));
	cpu_model(model, sizeof(model));
	printf("cpu     : %s\n", model);
	if (uname(&u) == 0)
		printf("kernel  : %s %s %s\n", u.sysname, u.release, u.machine);
	bk_loadavg(load, sizeof(load));
	printf("loadavg : %s (at start; other work shares these CPUs)\n", load);
}

bool bk_number(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int bk_find_runfiles(const char *prog, const char *bin, const char *suffix)
{
	if (access(bin, X_OK) == 0)
		return 0;
	char exe[4096];
	size_t slen = strlen(suffix) + 1;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - slen);
	if (n <= 0)
		return -ENOENT;
	memcpy(exe + n, suffix, slen);
	if (chdir(exe) != 0 || access(bin, X_OK) != 0) {
		fprintf(stderr,
		        "%s: cannot find %s here or under %s; run it "
		        "with bazel run\n",
		        prog, bin, exe);
		return -ENOENT;
	}
	return 0;
}

int bk_settle_link(struct nc_testbed *tb, int64_t settle_ms, int64_t wait_ms)
{
	struct nc_phy_control *c = nc_phy_control(&tb->region, &tb->layout);
	uint64_t start = bk_now_ns(), held = bk_now_ns();
	while (bk_ms_since(held) < settle_ms) {
		uint32_t req =
		    __atomic_load_n(&c->phy_request, __ATOMIC_ACQUIRE);
		uint32_t got =
		    __atomic_load_n(&c->phy_granted, __ATOMIC_ACQUIRE);
		if (req == 0 || got != req)
			held = bk_now_ns();
		if (bk_ms_since(start) > wait_ms || bk_stop_signal)
			return -ETIMEDOUT;
		bk_nap_ms(2);
	}
	return 0;
}
