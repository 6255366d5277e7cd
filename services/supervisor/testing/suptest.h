/*
 * What the programs that drive a real supervisor share (up_test,
 * run_test, the fault suite, bench/run_bench): running a command with a
 * bound, starting `netcore up` and waiting until it is ready, removing a
 * run directory, and showing what the supervisor said. Test-only.
 */
#ifndef NETCORE_SERVICES_SUPERVISOR_TESTING_SUPTEST_H
#define NETCORE_SERVICES_SUPERVISOR_TESTING_SUPTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int64_t suptest_now_ms(void); /* CLOCK_MONOTONIC */
void suptest_pause_ms(int ms);

/* Reaps pid within ms, else SIGKILLs it. Returns the wait status or -1. */
int suptest_reap(pid_t pid, int64_t ms);

/* Runs argv (PATH searched) with its stdout, and stderr if err_too, into
 * out (NUL-terminated, truncated to cap). Returns the raw wait status, or
 * -1 if it could not start or did not end within timeout_ms (then it is
 * killed). */
int suptest_run(char *const argv[], char *out, size_t cap, bool err_too,
                int timeout_ms);

/* Starts `netcore up --config conf --ready-fd 3` (binary `netcore`), its
 * stderr into the file err_path, and waits up to timeout_ms for it to say
 * it is ready. Returns 0 (*pid set), or -1 (*pid set if it started: the
 * caller stops it as on any failure). */
int suptest_start_supervisor(const char *netcore, const char *conf,
                             const char *err_path, int timeout_ms, pid_t *pid);

/* The exit code in a wait status; -1 for a signal or no status. */
int suptest_exit_code(int status);

/* Removes `dir` and everything below it (symlinks are not followed). */
void suptest_remove_tree(const char *dir);

/* Copies the file at `path` (the supervisor's captured stderr) to ours. */
void suptest_dump_file(const char *path);

#endif
