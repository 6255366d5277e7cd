/* client_common: see client_common.h. */
#include "tests/integration/client_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testbed/testbed.h"

int64_t ct_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double ct_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------- the child */

/* 0 if dest is unreachable with this namespace's own kernel. */
static int unreachable(int family, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len = ct_sockaddr(family, addr, 9, &ss);
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int rc = connect(fd, (struct sockaddr *)&ss, len);
	int err = errno;
	close(fd);
	if (rc == 0 || (err != ENETUNREACH && err != EHOSTUNREACH &&
	                err != EADDRNOTAVAIL)) {
		fprintf(stderr,
		        "child: %s reachable without netcore (rc %d, %s)\n",
		        addr, rc, strerror(err));
		return -1;
	}
	return 0;
}

static int child_main(ct_child_fn fn, void *arg, int report_fd)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		return 91;
	if (getppid() == 1)
		return 92; /* the parent is already gone */
	if (unshare(CLONE_NEWNET) != 0) {
		perror("child: unshare(CLONE_NEWNET)");
		return 93;
	}
	if (unreachable(AF_INET, NC_TB_KERNEL4) != 0 ||
	    unreachable(AF_INET6, NC_TB_KERNEL6) != 0)
		return 90;
	return fn(arg, report_fd);
}

int ct_child_start(struct ct_child *c, ct_child_fn fn, void *arg)
{
	c->pid = 0;
	c->pidfd = -1;
	c->report_fd = -1;
	c->status = -ECHILD;
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		int err = -errno;
		close(p[0]);
		close(p[1]);
		return err;
	}
	if (pid == 0) {
		close(p[0]);
		int rc = child_main(fn, arg, p[1]);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	close(p[1]);
	c->pid = pid;
	c->report_fd = p[0];
	c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (c->pidfd < 0) {
		int err = -errno;
		ct_child_cleanup(c);
		return err;
	}
	return 0;
}

bool ct_child_exited(const struct ct_child *c)
{
	if (c->pid <= 0 || c->pidfd < 0)
		return true;
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

int ct_child_finish(struct ct_child *c, int64_t deadline_ms)
{
	if (c->pid <= 0)
		return c->status;
	bool killed = false;
	for (;;) {
		int64_t left = deadline_ms - ct_now_ms();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
		int n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
		if (n == 1)
			break;
	}
	int status = 0;
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

void ct_child_cleanup(struct ct_child *c)
{
	if (c->pid > 0)
		ct_child_finish(c, ct_now_ms());
	if (c->report_fd >= 0)
		close(c->report_fd);
	c->report_fd = -1;
}

int ct_wait_fd(int fd, short events, int pidfd, int64_t deadline_ms)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = events},
		                      {.fd = pidfd, .events = POLLIN}};
		int64_t left = deadline_ms - ct_now_ms();
		if (left < 0)
			left = 0;
		int n =
		    poll(p, pidfd >= 0 ? 2 : 1, left > 1000 ? 1000 : (int)left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && p[0].revents != 0)
			return 0;
		if (n > 0 && pidfd >= 0 && p[1].revents != 0)
			return -ECHILD;
		if (left == 0)
			return -ETIMEDOUT;
	}
}

int ct_read_full(int fd, void *buf, size_t len, int64_t deadline_ms)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < len) {
		int err = ct_wait_fd(fd, POLLIN, -1, deadline_ms);
		if (err)
			return err;
		ssize_t n = read(fd, p + got, len - got);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

int ct_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* --------------------------------------------------------------- data */

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t word(uint64_t seed, uint64_t index)
{
	return splitmix(seed * 0x2545f4914f6cdd1dull + index);
}

void ct_pattern(uint64_t seed, uint64_t offset, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0 && offset % 8 != 0) {
		uint64_t w = word(seed, offset / 8);
		*p++ = (uint8_t)(w >> (8 * (offset % 8)));
		offset++;
		len--;
	}
	while (len >= 8) {
		uint64_t w = word(seed, offset / 8);
		for (int k = 0; k < 8; k++)
			p[k] = (uint8_t)(w >> (8 * k));
		p += 8;
		offset += 8;
		len -= 8;
	}
	while (len > 0) {
		uint64_t w = word(seed, offset / 8);
		*p++ = (uint8_t)(w >> (8 * (offset % 8)));
		offset++;
		len--;
	}
}

size_t ct_pattern_check(uint64_t seed, uint64_t offset, const void *buf,
                        size_t len)
{
	const uint8_t *p = buf;
	uint8_t want[4096];
	size_t done = 0;
	while (done < len) {
		size_t n =
		    len - done < sizeof(want) ? len - done : sizeof(want);
		ct_pattern(seed, offset + done, want, n);
		if (memcmp(want, p + done, n) != 0) {
			for (size_t k = 0; k < n; k++)
				if (want[k] != p[done + k])
					return done + k;
		}
		done += n;
	}
	return len;
}

void ct_hex(const uint8_t *data, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ------------------------------------------------------ kernel sockets */

socklen_t ct_sockaddr(int family, const char *addr, uint16_t port,
                      struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			abort();
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
		abort();
	return sizeof(*sin6);
}

void ct_addr_str(const struct sockaddr *sa, char *out, size_t cap)
{
	char text[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
		snprintf(out, cap, "%s:%u", text, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		snprintf(out, cap, "[%s]:%u", text, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, cap, "(family %d)", sa->sa_family);
	}
}

bool ct_addr_is(const struct sockaddr *sa, socklen_t len, int family,
                const char *addr, uint16_t port)
{
	struct sockaddr_storage want;
	socklen_t want_len = ct_sockaddr(family, addr, port, &want);
	if (len != want_len || sa->sa_family != family)
		return false;
	if (family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		const struct sockaddr_in *b = (const struct sockaddr_in *)&want;
		return a->sin_port == b->sin_port &&
		       a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
	const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&want;
	return a->sin6_port == b->sin6_port &&
	       memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0;
}

uint16_t ct_addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

int ct_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	int rc = bind(fd, sa, len);
	for (int i = 0; rc != 0 && errno == EADDRNOTAVAIL && i < 500; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		rc = bind(fd, sa, len);
	}
	return rc;
}

int ct_tcp_listen(int family, const char *addr, uint16_t port, int backlog)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	struct sockaddr_storage ss;
	socklen_t len = ct_sockaddr(family, addr, port, &ss);
	if (ct_bind(fd, (struct sockaddr *)&ss, len) != 0 ||
	    listen(fd, backlog) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

void ct_set_timeouts(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---------------------------------------------------------- broker config */

int ct_write_temp(const char *text, char *path, size_t cap)
{
	snprintf(path, cap, "/tmp/nc-client-test-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	int err = ct_write_full(fd, text, strlen(text));
	close(fd);
	if (err)
		unlink(path);
	return err;
}
