/*
 * run.h: running a program under the shim, as the acceptance tests do:
 * in an EMPTY network namespace of its own (unshare(CLONE_NEWNET), root
 * needed), with LD_PRELOAD and NETCORE_BROKER set, by execve (no shell).
 */
#ifndef NETCORE_SHIM_TESTING_RUN_H
#define NETCORE_SHIM_TESTING_RUN_H

/* The caller's environment without LD_PRELOAD and NETCORE_* (when preload
 * is not NULL; then with LD_PRELOAD=preload and NETCORE_BROKER=broker),
 * plus the "KEY=VALUE" entries of extra (NULL-ended, may be NULL). A new
 * array (its strings are not copied). NULL if out of memory. */
char **shim_run_env(const char *preload, const char *broker,
                    const char *const *extra);

/* Unshares the network namespace and execs argv[0] (a path) with
 * shim_run_env(preload, broker, extra). Returns -errno only on failure. */
int shim_run_exec(const char *preload, const char *broker,
                  const char *const *extra, char *const argv[]);

#endif
