/*
 * shimtest: what the shim's acceptance tests share.
 *
 * Shape of a test: the test process starts a testbed with sockets (phy
 * driver, core, broker) and enters its namespace, where it plays the
 * kernel side (10.77.0.1), itself or through programs it starts there.
 * The program under test runs under the shim: a child that unshares into
 * an EMPTY network namespace of its own and execs the program with
 * LD_PRELOAD=<libnetcore_preload.so> and NETCORE_BROKER=<broker socket>
 * (st_spawn; the same as the shim_run tool). Whatever it moves can only
 * have gone through netcore.
 *
 * Every child is recorded and dies with the test: PR_SET_PDEATHSIG, and
 * st_cleanup() SIGKILLs and reaps each by pid (also after a failed
 * assertion, from teardown). Every wait has a deadline.
 */
#ifndef NETCORE_SHIM_TESTING_SHIMTEST_H
#define NETCORE_SHIM_TESTING_SHIMTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/testbed/testbed.h"

struct st_proc {
	pid_t pid;       /* 0 once reaped */
	int pidfd;       /* readable once it exited */
	int out_fd;      /* its stdout and stderr (read end), -1 once drained */
	int in_fd;       /* its stdin (write end) if asked for, else -1 */
	int status;      /* exit code, 128 + signal; valid once reaped */
	char out[65536]; /* what it printed (truncated), NUL-terminated */
	size_t out_len;
};

struct st_spawn_opts {
	/* Run under the shim in an empty namespace (else: plainly, in the
	 * caller's namespace, e.g. a kernel-side server). */
	bool shim;
	const char *broker;     /* NETCORE_BROKER (shim only) */
	const char *const *env; /* more "KEY=VALUE" entries, NULL-ended */
	bool stdin_pipe;        /* give it a pipe as stdin (else /dev/null) */
	const char *cwd;        /* working directory, or NULL */
};

/* The preload library as an absolute path (from the runfiles). */
const char *st_preload_path(void);

/* Starts argv[0] (a path). 0 or -errno. */
int st_spawn(struct st_proc *p, const struct st_spawn_opts *o,
             char *const argv[]);

/* Waits until it exits (reading its output) or deadline_ms (st_now_ms
 * clock), then SIGKILLs it. Returns its exit code, 128 + signal, or
 * -ETIMEDOUT if it had to be killed. */
int st_finish(struct st_proc *p, int64_t deadline_ms);

/* Waits until its output contains text (0), it exits (-ECHILD) or the
 * deadline (-ETIMEDOUT); it keeps running. */
int st_wait_output(struct st_proc *p, const char *text, int64_t deadline_ms);

/* Reads whatever output is there without waiting. */
void st_pump(struct st_proc *p);

/* SIGKILLs and reaps every child still running; closes their fds. */
void st_cleanup(void);

int64_t st_now_ms(void);

/* Waits until a TCP connect to addr:port (IPv4 text) succeeds from the
 * caller's namespace, or the process p (may be NULL) exits, or the
 * deadline. 0, -ECHILD, -ETIMEDOUT. */
int st_wait_listening(const char *addr, uint16_t port, struct st_proc *p,
                      int64_t deadline_ms);

/* Starts a kernel-side TCP and UDP echo server (python3) on addr:port
 * (IPv4 text) as p, and waits until it listens. 0 or -errno. */
int st_start_echo(struct st_proc *p, const char *addr, uint16_t port);

/* A fresh directory under /tmp (path: 64 bytes) that st_rmdir empties
 * and removes (one level of files). */
/*
 * The bed every shim test stands on: a testbed with sockets tagged `tag`,
 * this thread moved into its namespace, and a temp dir in `dir` (at least
 * 64 bytes) unless dir is NULL. 0, or -1 with everything undone.
 */
int st_bed_start(struct nc_testbed *tb, const char *tag, char *dir);
/* Ends the processes st_spawn started, the temp dir, the testbed. */
void st_bed_stop(struct nc_testbed *tb, const char *dir);
int st_mkdtemp(char *path);
void st_rmdir(const char *path);

/* Writes len pattern bytes (seed) to path; 0 or -errno. Checks a file
 * against the pattern: 0, or -1 with the first bad offset in *bad. */
int st_write_pattern(const char *path, uint64_t seed, uint64_t len);
int st_check_pattern(const char *path, uint64_t seed, uint64_t len,
                     uint64_t *bad);
/* sha256 of a file as lower-case hex (65 bytes). 0 or -errno. */
int st_sha256_file(const char *path, char *hex);

/*
 * True when built with --config=asan: the children then run with the
 * ASan runtime preloaded ahead of the (instrumented) shim. /usr/bin/curl
 * cannot: with libasan preloaded it hangs in its first setlocale() even
 * without the shim (Debian 12, gcc 12), so tests skip curl under the shim
 * then.
 */
bool st_sanitized(void);

/* A free-enough TCP/UDP port for this test (from its pid). */
uint16_t st_port(int k);

#endif
