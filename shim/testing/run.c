/*
 * run.c: start a program under the shim in an empty network namespace
 * (see run.h). Used by the shim's tests and by the shim_run tool.
 */
#include "shim/testing/run.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static bool env_is_ours(const char *e)
{
	return strncmp(e, "LD_PRELOAD=", 11) == 0 ||
	       strncmp(e, "NETCORE_", 8) == 0;
}

/* environ without our variables, then ours: a new array. */
char **shim_run_env(const char *preload, const char *broker,
                    const char *const *extra)
{
	size_t n = 0, k = 0, x = 0;
	while (environ[n] != NULL)
		n++;
	while (extra != NULL && extra[x] != NULL)
		x++;
	char **env = calloc(n + x + 3, sizeof(*env));
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (preload == NULL || !env_is_ours(environ[i]))
			env[k++] = environ[i];
	static char pre[PATH_MAX + 16], brk[PATH_MAX + 16];
	if (preload != NULL) {
		snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", preload);
		snprintf(brk, sizeof(brk), "NETCORE_BROKER=%s", broker);
		env[k++] = pre;
		env[k++] = brk;
	}
	for (size_t i = 0; i < x; i++)
		env[k++] = (char *)extra[i];
	return env;
}

int shim_run_exec(const char *preload, const char *broker,
                  const char *const *env, char *const argv[])
{
	if (unshare(CLONE_NEWNET) != 0)
		return -errno;
	char **e = shim_run_env(preload, broker, env);
	if (e == NULL)
		return -ENOMEM;
	execve(argv[0], argv, e);
	return -errno;
}
