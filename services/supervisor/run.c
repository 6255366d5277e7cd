/*
 * `netcore run`: an unmodified program on netcore's network.
 *
 * The command is not started as a child: this process checks that the
 * broker's attach socket is there, finds libnetcore_preload.so, moves
 * itself into a new, empty network namespace (unshare(CLONE_NEWNET): only
 * a loopback, down), sets NETCORE_BROKER and puts the shim in front of
 * LD_PRELOAD, and execs the command. So the command *is* the process the
 * caller started: its exit status and the signals sent to it or killing
 * it are the caller's without any forwarding, and no supervisor process
 * sits in between. The only way out of the namespace is the shim's
 * sockets through the broker; the kernel's stack there has nothing to
 * reach.
 *
 * No nng here (nothing to ask the supervisor: the attach socket's path is
 * in the config), so there are no threads to worry about before exec.
 *
 * Where the shim is: $NETCORE_PRELOAD if set (and then only there), else
 * beside the netcore binary (installed), else Bazel's layout relative to
 * bazel-bin/services/supervisor/netcore (../../shim/), else the binary's
 * runfiles tree. /proc/self/exe is followed, so a symlink to netcore (a
 * runfiles entry, /usr/local/bin) finds the real layout.
 *
 * A netcore built with ASan finds an ASan-built shim, which can only be
 * loaded after the ASan runtime: that build puts the sanitizer runtimes it
 * runs with ahead of the shim (an ordinary build never does).
 */
#include "services/supervisor/run.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHIM_NAME "libnetcore_preload.so"

static int failed(const char *fmt, const char *arg, int err)
{
	fprintf(stderr, "netcore run: ");
	fprintf(stderr, fmt, arg);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fprintf(stderr, "\n");
	return NCI_RUN_FAILED;
}

/* The broker listens there while `netcore up` runs with this config. A
 * missing socket is the common mistake (no supervisor, another config). */
static int check_broker(const char *attach)
{
	struct stat st;
	if (stat(attach, &st) != 0)
		return failed("no broker at %s (is `netcore up` running "
		              "with this config?)",
		              attach, errno);
	if (!S_ISSOCK(st.st_mode))
		return failed("%s is not a socket (the config's "
		              "attach_socket)",
		              attach, 0);
	return 0;
}

/* Resolves path into out if it is a readable file. */
static int try_path(const char *path, char out[PATH_MAX])
{
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
	    access(path, R_OK) != 0)
		return -1;
	return realpath(path, out) != NULL ? 0 : -1;
}

static int find_shim(char out[PATH_MAX])
{
	const char *env = getenv("NETCORE_PRELOAD");
	if (env != NULL && *env != '\0') {
		if (try_path(env, out) == 0)
			return 0;
		return failed("NETCORE_PRELOAD=%s: cannot read it", env, 0);
	}
	char exe[PATH_MAX], dir[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return failed("%s: cannot read it", "/proc/self/exe", errno);
	exe[n] = '\0';
	memcpy(dir, exe, (size_t)n + 1);
	*strrchr(dir, '/') = '\0';
	/* Installed; bazel-bin; the binary's runfiles tree. */
	snprintf(path, sizeof(path), "%s/" SHIM_NAME, dir);
	if (try_path(path, out) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/../../shim/" SHIM_NAME, dir);
	if (try_path(path, out) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s.runfiles/netcore/shim/" SHIM_NAME,
	         exe);
	if (try_path(path, out) == 0)
		return 0;
	return failed("cannot find " SHIM_NAME " beside %s, in Bazel's "
	              "layout or runfiles; set NETCORE_PRELOAD",
	              exe, 0);
}

#ifdef __SANITIZE_ADDRESS__
/* "ASAN:UBSAN:" as mapped into this process, or "" (see the top). */
static void sanitizer_runtimes(char *out, size_t cap)
{
	FILE *maps = fopen("/proc/self/maps", "re");
	char line[PATH_MAX + 128], asan[PATH_MAX] = "", ubsan[PATH_MAX] = "";
	while (maps != NULL && fgets(line, sizeof(line), maps) != NULL) {
		char *path = strchr(line, '/');
		if (path == NULL)
			continue;
		path[strcspn(path, "\n")] = '\0';
		if (strstr(path, "/libasan.so") != NULL)
			snprintf(asan, sizeof(asan), "%s:", path);
		if (strstr(path, "/libubsan.so") != NULL)
			snprintf(ubsan, sizeof(ubsan), "%s:", path);
	}
	if (maps != NULL)
		fclose(maps);
	snprintf(out, cap, "%s%s", asan, ubsan);
}
#else
static void sanitizer_runtimes(char *out, size_t cap)
{
	(void)cap;
	out[0] = '\0';
}
#endif

/* NETCORE_BROKER, and the shim first in LD_PRELOAD (what the caller had
 * there stays, after it: the shim's socket calls must win). */
static int set_env(const char *shim, const char *attach)
{
	static char value[3 * PATH_MAX + 8192];
	char first[2 * PATH_MAX + 2];
	sanitizer_runtimes(first, sizeof(first));
	const char *old = getenv("LD_PRELOAD");
	int n = snprintf(value, sizeof(value), "%s%s%s%s", first, shim,
	                 old && *old ? ":" : "", old ? old : "");
	if (n < 0 || (size_t)n >= sizeof(value))
		return failed("LD_PRELOAD is too long%s", "", 0);
	if (setenv("LD_PRELOAD", value, 1) != 0 ||
	    setenv("NETCORE_BROKER", attach, 1) != 0)
		return failed("setenv%s", "", errno);
	return 0;
}

static int enter_empty_netns(void)
{
	if (unshare(CLONE_NEWNET) == 0)
		return 0;
	if (errno == EPERM)
		return failed("a new network namespace needs CAP_SYS_ADMIN "
		              "(run as root)%s",
		              "", errno);
	return failed("unshare(CLONE_NEWNET)%s", "", errno);
}

int nci_run(const struct nc_sup_config *c, char *const argv[])
{
	char shim[PATH_MAX];
	int rc = check_broker(c->attach_socket);
	rc = rc ?: find_shim(shim);
	rc = rc ?: set_env(shim, c->attach_socket);
	rc = rc ?: enter_empty_netns();
	if (rc)
		return rc;
	execvp(argv[0], argv);
	/* What a shell says and returns. */
	int err = errno;
	fprintf(stderr, "netcore run: %s: %s\n", argv[0], strerror(err));
	return err == ENOENT || err == ENOTDIR ? 127 : 126;
}
