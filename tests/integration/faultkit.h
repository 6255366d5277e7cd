/*
 * faultkit: shared pieces of the client fault tests (client_kill_test,
 * client_quota_test, client_hostile_test).
 *
 * - Children: every process a test forks is registered by pid, so a failed
 *   assertion still ends with each one SIGKILLed and reaped (fk_reap_all),
 *   and waiting for one is bounded (a pidfd, polled with a deadline).
 * - Messages: fixed-size records over pipes between the test and its
 *   children, received with a deadline.
 * - The services' stderr goes to a log file (fk_testbed_start), so the
 *   broker's SIGUSR1 table dump can be read back (fk_broker_dump).
 * - Memory: VmRSS and open descriptors of a process, from /proc.
 * - A byte pattern: byte `off` of stream `seed`, so every byte of a
 *   transfer can be checked where it lands.
 * - A kernel-side server (fk_kserver_start): a forked process serving TCP
 *   in the namespace its parent is in. A connection starts with a
 *   struct fk_hdr that picks what the server does with it.
 * - libclient helpers for client children: connect, upload, download,
 *   echo, every call bounded by SO_SNDTIMEO / SO_RCVTIMEO.
 */
#ifndef NETCORE_TESTS_INTEGRATION_FAULTKIT_H
#define NETCORE_TESTS_INTEGRATION_FAULTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "libclient/netcore.h"
#include "tests/testbed/testbed.h"

#define FK_MIB (1024ull * 1024)

int64_t fk_now_ms(void);

/* ------------------------------------------------------------ children */

/* fork(); the child gets PR_SET_PDEATHSIG SIGKILL, the parent registers
 * the pid. Returns what fork returns. */
pid_t fk_fork(void);
/* Waits for `pid` (registered or not) until `deadline_ms` (fk_now_ms
 * clock). Returns 0 and *status once reaped, -ETIMEDOUT if still running
 * (not killed), or -errno. */
int fk_wait(pid_t pid, int64_t deadline_ms, int *status);
/* SIGKILLs and reaps `pid` (bounded); unregisters it. */
void fk_kill(pid_t pid);
/* Every registered child that is still there: SIGKILL and reap. */
void fk_reap_all(void);
/* True while `pid` (our child) has not exited. */
bool fk_alive(pid_t pid);
/* "exit 3", "signal 9": for messages. */
const char *fk_status_str(int status, char *buf, size_t cap);

/* ------------------------------------------------------------ messages */

struct fk_msg {
	int32_t kind;
	int32_t pad;
	int64_t value;
};

int fk_msg_send(int fd, int32_t kind, int64_t value);
/* 0, -ETIMEDOUT, -EPIPE (the writer is gone), or -errno. */
int fk_msg_recv(int fd, struct fk_msg *m, int64_t deadline_ms);

/* -------------------------------------------------------------- testbed */

/*
 * nc_testbed_start_sockets with the services' stderr appended to a fresh
 * log file (its path in log_path, cap >= 64). `config`: broker config
 * text, written to a file beside the log, or NULL for the defaults.
 */
int fk_testbed_start(struct nc_testbed *tb, const char *tag, const char *config,
                     char *log_path, size_t cap);
/*
 * Stops the broker, the phy driver and the core (in that order) with
 * SIGTERM and reaps each, bounded, so that the caller can check how they
 * ended: each should exit 0, and under AddressSanitizer LeakSanitizer
 * runs at that exit and fails it on a leak. Wait statuses in `status`
 * (-1: did not end in time, then SIGKILLed). The pids are cleared, so
 * fk_testbed_stop only removes what is left.
 */
struct fk_exits {
	int broker, phy, core;
};
void fk_services_stop(struct nc_testbed *tb, struct fk_exits *status);
/* What the core printed about clients when it stopped. */
struct fk_core_final {
	unsigned clients, sockets;
	unsigned long long added, removed, broken;
};
/* 0, or -ENOENT if the core printed no such line. */
int fk_core_final(const char *log_path, struct fk_core_final *f);
/* True if a wait status is "exited 0". */
bool fk_exit_ok(int status);
/*
 * fk_services_stop, then checks how they ended: each exited 0 (under
 * AddressSanitizer: with no leak found), and the core's last words say no
 * client and no socket left, every client it added since removed (by
 * CLIENT_REMOVE, or as broken: the core counts those apart). Fills
 * *final and `summary` (what was seen, for printing). 0 if all is well.
 */
int fk_services_end(struct nc_testbed *tb, const char *log_path,
                    struct fk_core_final *final, char *summary, size_t cap);
/* Stops the testbed; prints the log to stderr if `print_log`; removes it. */
void fk_testbed_stop(struct nc_testbed *tb, const char *log_path,
                     bool print_log);
/*
 * SIGUSR1 to the broker, then waits (bounded) for the dump's first line
 * ("broker ...") to appear in the log after what was there before.
 * Returns 0 and the line (without newline), or -errno.
 */
int fk_broker_dump(const struct nc_testbed *tb, const char *log_path,
                   char *line, size_t cap, int64_t deadline_ms);
/* A field of a dump line: "clients" -> its number; -1 if absent. */
long long fk_dump_field(const char *line, const char *name);
/* Dumps until the broker has no client and no memory counted (bounded). */
int fk_wait_broker_idle(const struct nc_testbed *tb, const char *log_path,
                        char *line, size_t cap, int64_t deadline_ms);
/* The last line of the log containing `needle` (without newline), or
 * -ENOENT. */
int fk_log_last(const char *log_path, const char *needle, char *line,
                size_t cap);
/* Lines of the log containing `needle`. */
long fk_log_count(const char *log_path, const char *needle);
/* True if the service process is still running (our child, not reaped). */
bool fk_service_alive(pid_t pid);

/* The bytes of one client region with these parameters. */
uint64_t fk_region_bytes(uint32_t max_sockets, uint32_t ring_slots,
                         uint32_t buf_count, uint32_t buf_size);

/* -------------------------------------------------------------- memory */

/* VmRSS in KiB, or -1. */
long fk_rss_kib(pid_t pid);
/* VmRSS's parts: RssAnon, RssFile, RssShmem in KiB. 0 or -errno. */
int fk_rss_detail(pid_t pid, long *anon, long *file, long *shmem);
/* Mappings of `pid` whose /proc/PID/smaps line names `name` (a memfd's
 * name, say "netcore-phy"): how many (-1 if unreadable) and their Rss. */
int fk_mappings(pid_t pid, const char *name, long *rss_kib);
/* Open descriptors, or -1. */
int fk_fd_count(pid_t pid);

/* -------------------------------------------------------------- pattern */

void fk_pat_fill(uint64_t seed, uint64_t off, void *buf, size_t len);
/* -1 if buf holds the pattern from `off`, else the index of the first
 * wrong byte. */
long fk_pat_check(uint64_t seed, uint64_t off, const void *buf, size_t len);

/* -------------------------------------------------------- kernel server */

#define FK_HDR_MAGIC 0x464b4844u /* "FKHD" */

enum fk_mode {
	FK_SINK = 1, /* reads `length` pattern bytes, checks each, answers a
	                struct fk_result, then waits for the client's FIN */
	FK_SOURCE,   /* sends `length` pattern bytes, then FIN */
	FK_ECHO,     /* echoes everything until FIN */
};

struct fk_hdr {
	uint32_t magic;
	uint32_t mode;
	uint64_t seed;
	uint64_t length;
};

struct fk_result {
	uint32_t magic;
	uint32_t ok; /* 1: every byte was the pattern, and exactly `length` */
	uint64_t verified;
};

/*
 * Forks a server listening on `addr` (IPv4, in the calling thread's
 * namespace) at each of `ports`, and waits until it listens. Returns its
 * pid (registered), or -errno. It runs until killed.
 */
pid_t fk_kserver_start(const char *addr, const uint16_t *ports, int nports);

/* ------------------------------------------------- libclient (children) */

/* Attaches, retrying while the broker says "not now" (ENOBUFS, ENFILE,
 * EAGAIN) until the deadline. *retries counts the refusals. */
int fk_nc_attach(const char *path, struct nc_client **out, int64_t deadline_ms,
                 int *retries);
/* A TCP socket with SO_SNDTIMEO/SO_RCVTIMEO = timeout_ms, connected to
 * addr:port (IPv4). 0 or -errno. */
int fk_nc_connect(struct nc_client *c, const char *addr, uint16_t port,
                  int timeout_ms, struct nc_sock **out);
int fk_nc_send_all(struct nc_sock *s, const void *buf, size_t len);
/* Exactly len bytes (MSG_WAITALL); -EPIPE at an early EOF. */
int fk_nc_recv_all(struct nc_sock *s, void *buf, size_t len);

/* Transfers against the kernel server; 0, or -errno with a reason in
 * `why` (cap >= 128). */
int fk_nc_upload(struct nc_client *c, const char *addr, uint16_t port,
                 uint64_t seed, uint64_t length, int timeout_ms, char *why);
int fk_nc_download(struct nc_client *c, const char *addr, uint16_t port,
                   uint64_t seed, uint64_t length, int timeout_ms, char *why);
int fk_nc_echo(struct nc_client *c, const char *addr, uint16_t port,
               uint64_t seed, uint64_t length, int timeout_ms, char *why);

#endif
