/* sandbox: see sandbox.h. */
#include "tests/fault/sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/fault/workload.h"
#include "tests/testbed/testbed.h"

/* True if connect() to addr fails for want of a route, as it must in an
 * empty namespace (a UDP connect sends nothing). */
static bool unreachable(int family, const char *addr)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(9);
		inet_pton(AF_INET, addr, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(9);
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		len = sizeof(*a);
	}
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true; /* no socket at all: unreachable indeed */
	int rc = connect(fd, (struct sockaddr *)&ss, len);
	int err = errno;
	close(fd);
	return rc != 0 && (err == ENETUNREACH || err == EHOSTUNREACH ||
	                   err == EADDRNOTAVAIL);
}

static int child_main(pid_t parent, int (*body)(void *), void *arg)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		return 91; /* the parent may already be gone */
	signal(SIGINT, SIG_IGN);
	if (unshare(CLONE_NEWNET) != 0) {
		perror("sandbox: unshare(CLONE_NEWNET)");
		return 93;
	}
	if (!unreachable(AF_INET, NC_TB_KERNEL4) ||
	    !unreachable(AF_INET6, NC_TB_KERNEL6)) {
		fprintf(stderr, "sandbox: the kernel side is reachable\n");
		return 90;
	}
	return body(arg);
}

int ff_child_start(struct ff_child *c, int (*body)(void *arg), void *arg)
{
	c->pid = 0;
	c->pidfd = -1;
	c->status = -ECHILD;
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int rc = child_main(parent, body, arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	c->pid = pid;
	c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (c->pidfd < 0) {
		int err = -errno;
		ff_child_finish(c, 0);
		return err;
	}
	return 0;
}

bool ff_child_exited(const struct ff_child *c)
{
	if (c->pid <= 0 || c->pidfd < 0)
		return true;
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

int ff_child_finish(struct ff_child *c, int64_t deadline_ms)
{
	if (c->pid <= 0)
		return c->status;
	for (int64_t left;
	     c->pidfd >= 0 && (left = deadline_ms - ff_now_ms()) > 0;) {
		struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
		if (poll(&p, 1, left > 1000 ? 1000 : (int)left) == 1)
			break;
	}
	int status = 0;
	bool killed = false;
	if (waitpid(c->pid, &status, WNOHANG) != c->pid) {
		kill(c->pid, SIGKILL);
		killed = true;
		while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	c->pid = 0;
	if (killed)
		c->status = -ETIMEDOUT;
	else if (WIFEXITED(status))
		c->status = WEXITSTATUS(status);
	else
		c->status = 128 + WTERMSIG(status);
	return c->status;
}
