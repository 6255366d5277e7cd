/*
 * benchkit: what echo_bench and client_bench share (see benchkit.c).
 * Private to bench/; every name starts with bk_.
 */
#ifndef NETCORE_BENCH_BENCHKIT_H
#define NETCORE_BENCH_BENCHKIT_H

#include "tests/testbed/testbed.h"

#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------- time */

uint64_t bk_now_ns(void);
int64_t bk_ms_since(uint64_t start);
void bk_nap_ms(long ms);

/* ---------------------------------------------------------- signals */

/* The signal that asked us to stop (SIGINT, SIGTERM, SIGHUP), or 0. */
extern volatile sig_atomic_t bk_stop_signal;

/* No SA_RESTART: a blocked call returns EINTR and the loop around it sees
 * bk_stop_signal. SIGPIPE is ignored. */
void bk_catch_stop_signals(void);

/* -------------------------------------------------------- processes */

/* Reaps pid within timeout_ms, else SIGKILLs it and reaps it. Returns the
 * wait status, or -1 if it was killed. */
int bk_reap_within(pid_t pid, int64_t timeout_ms);

/* True while pid runs (a zombie does not count); does not reap it. */
bool bk_proc_alive(pid_t pid);

/* Runs argv (PATH searched; stdout discarded, stderr ours) for at most
 * 10 s. 0 if it exited 0; else -EIO, after naming the command on stderr. */
int bk_run_cmd(char *const argv[]);

/* `ip netns add name` and its lo up; *made once the namespace exists. */
int bk_ns_add(const char *name, bool *made);

/* A veth pair: dev in namespace ns, peer in peer_ns (NULL: also ns). */
int bk_veth_pair(const char *ns, const char *dev, const char *peer_ns,
                 const char *peer);

/* One end of a veth pair in namespace ns: MTU, address (cidr, if not
 * NULL), up. */
int bk_link_conf(const char *ns, const char *dev, int mtu, const char *cidr);

/* Moves the calling thread into a network namespace; 0 or -errno. */
int bk_enter_ns_fd(int fd);
int bk_enter_ns_path(const char *path);

/* ---------------------------------------------------------- sockets */

void bk_set_timeouts(int fd, int ms);
/* Writes all n bytes, retrying on EINTR; 0, or -1 on error. */
int bk_write_all(int fd, const void *buf, size_t n);

/* Byte i of a bulk stream is table[i % period]; the table runs tail bytes
 * past period so any chunk of up to tail bytes is one contiguous slice.
 * malloc'd; NULL if out of memory. */
uint8_t *bk_table_make(size_t period, size_t tail);

/* --------------------------------------------------------- CPU time */

/* Calls fn(tid) for every thread of process pid; returns how many. */
int bk_for_each_task(pid_t pid, void (*fn)(pid_t tid, void *ctx), void *ctx);
/* A process's time on CPU in seconds, all threads, or 0 if it is gone. */
double bk_proc_cpu_s(pid_t pid);
/* Our own CPU time (getrusage(RUSAGE_SELF)) in seconds. */
double bk_self_cpu_s(void);
/* Finds the ksoftirqd/N kernel threads, once before measuring. */
void bk_find_softirqd(void);
/* Their time on CPU in seconds, summed. */
double bk_softirqd_cpu_s(void);

/*
 * The whole machine, from /proc/stat (10 ms ticks): busy time of all CPUs
 * (user, nice, system, irq, softirq) and time stolen by the hypervisor.
 * Summed over the measured slices, busy time minus ours is what other work
 * on the machine took while we measured.
 */
struct bk_machine {
	double busy, steal;
};

struct bk_machine bk_machine_now(void);

/* ------------------------------------------------------------ placement */

/* The CPUs we may use, and the first of them (after bk_find_cpus). */
extern cpu_set_t bk_all_cpus;
extern int bk_first_cpu;

int bk_find_cpus(void);
/* Pins us to bk_first_cpu (one_cpu) or back onto bk_all_cpus; *set is what
 * was used, for bk_pin_process. 0 or -errno. */
int bk_pin_self(bool one_cpu, cpu_set_t *set);
/* Pins every thread of pid to set; -ESRCH if it has none. */
int bk_pin_process(pid_t pid, cpu_set_t *set);

/* ----------------------------------------------------------- statistics */

struct bk_stats {
	double median, p99, min, mean;
};

/* Sorts ns[0..n) and summarizes it in µs. */
struct bk_stats bk_summarize(uint64_t *ns, uint64_t n);

/* Per-round figure range, for "spread". */
struct bk_range {
	double lo, hi;
	bool any;
};

void bk_range_add(struct bk_range *r, double v);
/* Half the range as a share of whole (0 if nothing or whole <= 0). */
double bk_spread(const struct bk_range *r, double whole);

/* ------------------------------------------------------ output, options */

/* The first line of /proc/loadavg, or "?". */
void bk_loadavg(char *out, size_t len);
/* The nproc, cpu, kernel and loadavg lines of the header. */
void bk_print_machine(void);

/* Parses a decimal in [min, max] into *out; false if it is not one. */
bool bk_number(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * The testbed finds the services relative to the working directory, which
 * `bazel run` sets to the runfiles tree. Run directly, the bench moves there
 * itself: <its own path><suffix>. bin is a file that must be there; prog
 * names the bench in the message. 0 or -ENOENT.
 */
int bk_find_runfiles(const char *prog, const char *bin, const char *suffix);

/*
 * nc_testbed_start returns as soon as the phy holds a grant. A phy that
 * asked before the core had bumped core_epoch then sees the bump, takes it
 * for a core restart and asks again, so the link can go down once more
 * right after start. Returns 0 once the grant has held for settle_ms,
 * -ETIMEDOUT after wait_ms or on a stop signal.
 */
int bk_settle_link(struct nc_testbed *tb, int64_t settle_ms, int64_t wait_ms);

#endif
