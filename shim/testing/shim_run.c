/*
 * shim_run: runs a program under the shim in an empty network namespace
 * of its own, without a shell.
 *
 *   shim_run --broker SOCKET [--preload LIB] [--env KEY=VALUE]... \
 *            -- PROGRAM [ARG]...
 *
 * LIB defaults to libnetcore_preload.so beside this binary's runfiles
 * (shim/libnetcore_preload.so from the current directory). PROGRAM is a
 * path. Needs root (or CAP_SYS_ADMIN) for unshare(CLONE_NEWNET).
 */
#include "shim/testing/run.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENV 32

static int usage(void)
{
	fprintf(stderr, "usage: shim_run --broker SOCKET [--preload LIB] "
	                "[--env KEY=VALUE]... -- PROGRAM [ARG]...\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *broker = NULL, *preload = "shim/libnetcore_preload.so";
	const char *env[MAX_ENV + 1] = {NULL};
	int nenv = 0, i = 1;
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (i + 1 >= argc)
			return usage();
		if (strcmp(argv[i], "--broker") == 0)
			broker = argv[++i];
		else if (strcmp(argv[i], "--preload") == 0)
			preload = argv[++i];
		else if (strcmp(argv[i], "--env") == 0 && nenv < MAX_ENV)
			env[nenv++] = argv[++i];
		else
			return usage();
	}
	if (broker == NULL || i + 1 >= argc)
		return usage();
	static char path[PATH_MAX];
	if (realpath(preload, path) == NULL) {
		perror(preload);
		return 1;
	}
	int err = shim_run_exec(path, broker, env, argv + i + 1);
	fprintf(stderr, "shim_run: %s: %s\n", argv[i + 1], strerror(-err));
	return 1;
}
