/*
 * fdsem_prog: descriptor semantics of netcore sockets, checked by an
 * ordinary C program run under the shim (shim/tests/fdsem_test.c starts
 * it in an empty network namespace).
 *
 *   fdsem_prog HOST PORT            all checks against a TCP+UDP echo
 *   fdsem_prog --after-exec ...     the half that runs after execve
 *
 * Each check prints "ok NAME"; the first failure prints "FAIL NAME: why"
 * and exits 1. Every wait is bounded (select/poll timeouts of seconds).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *host;
static int port;

#define CHECK(name, cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			printf("FAIL %s: %s (errno %d %s)\n", name, #cond,     \
			       errno, strerror(errno));                        \
			exit(1);                                               \
		}                                                              \
	} while (0)

static void ok(const char *name)
{
	printf("ok %s\n", name);
	fflush(stdout);
}

static struct sockaddr_in peer(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((unsigned short)port)};
	inet_pton(AF_INET, host, &sa.sin_addr);
	return sa;
}

static int connected(int flags)
{
	int s = socket(AF_INET, SOCK_STREAM | flags, 0);
	struct sockaddr_in sa = peer();
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	return s;
}

/* Waits (select, 5 s) until fd is readable. */
static int readable(int fd)
{
	fd_set r;
	FD_ZERO(&r);
	FD_SET(fd, &r);
	struct timeval tv = {.tv_sec = 5};
	return select(fd + 1, &r, NULL, NULL, &tv) == 1 && FD_ISSET(fd, &r);
}

/* Sends text and reads the same back (blocking, with select). */
static int echo(int fd, const char *text)
{
	size_t n = strlen(text), got = 0;
	char buf[256];
	if (write(fd, text, n) != (ssize_t)n)
		return -1;
	while (got < n) {
		if (!readable(fd))
			return -1;
		ssize_t r = read(fd, buf + got, sizeof(buf) - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == n && memcmp(buf, text, n) == 0 ? 0 : -1;
}

static void check_numbers(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK("numbers", s >= 3);
	struct stat st;
	CHECK("numbers", fstat(s, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK("numbers", fcntl(s, F_GETFD) == FD_CLOEXEC);
	close(s);
	int n = open("/dev/null", O_RDONLY);
	CHECK("numbers", n == s); /* the number was really freed */
	close(n);
	ok("numbers");
}

/* A number closed by close_range and reused by a pipe is the pipe's. */
static void check_close_range(void)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK("close_range",
	      s >= 3 && close_range((unsigned)s, (unsigned)s, 0) == 0);
	int p[2];
	CHECK("close_range", pipe(p) == 0 && p[0] == s);
	char c = 0;
	CHECK("close_range",
	      write(p[1], "k", 1) == 1 && read(p[0], &c, 1) == 1 && c == 'k');
	close(p[0]);
	close(p[1]);
	ok("close_range");
}

static int check_dup(void)
{
	int s = connected(SOCK_CLOEXEC);
	CHECK("dup", s >= 0);
	int d = dup(s);
	CHECK("dup", d > s && fcntl(d, F_GETFD) == 0);
	close(s);
	CHECK("dup", fcntl(s, F_GETFD) == -1 && errno == EBADF);
	CHECK("dup", echo(d, "through the duplicate") == 0);
	CHECK("dup2", dup2(d, 100) == 100 && echo(100, "as 100") == 0);
	CHECK("dup3", dup3(d, 101, O_CLOEXEC) == 101);
	CHECK("dup3", fcntl(101, F_GETFD) == FD_CLOEXEC);
	int f = fcntl(d, F_DUPFD_CLOEXEC, 200);
	CHECK("F_DUPFD", f >= 200 && echo(f, "as F_DUPFD") == 0);
	close(100);
	close(101);
	close(f);
	CHECK("dup", echo(d, "still there") == 0);
	ok("dup");
	return d;
}

static void check_flags(int d)
{
	int e = dup(d);
	CHECK("nonblock",
	      fcntl(e, F_SETFL, fcntl(e, F_GETFL) | O_NONBLOCK) == 0);
	CHECK("nonblock", fcntl(d, F_GETFL) & O_NONBLOCK); /* shared */
	char c;
	CHECK("nonblock", read(d, &c, 1) == -1 && errno == EAGAIN);
	int off = 0;
	CHECK("FIONBIO", ioctl(d, FIONBIO, &off) == 0);
	CHECK("FIONBIO", !(fcntl(e, F_GETFL) & O_NONBLOCK));
	close(e);
	ok("flags");
}

static void check_fionread(int d)
{
	CHECK("FIONREAD", write(d, "0123456789", 10) == 10);
	int n = 0;
	for (int i = 0; i < 50 && n < 10; i++) {
		CHECK("FIONREAD", readable(d));
		CHECK("FIONREAD", ioctl(d, FIONREAD, &n) == 0);
		if (n < 10)
			poll(NULL, 0, 20); /* bytes still on their way */
	}
	CHECK("FIONREAD", n == 10);
	char buf[10];
	CHECK("FIONREAD",
	      read(d, buf, 10) == 10 && memcmp(buf, "0123", 4) == 0);
	ok("FIONREAD");
}

static void check_vectors_and_names(int d)
{
	struct iovec w[2] = {{"vec", 3}, {"tors", 4}};
	CHECK("writev", writev(d, w, 2) == 7);
	char a[3], b[4];
	struct iovec r[2] = {{a, 3}, {b, 4}};
	CHECK("readv", readable(d));
	ssize_t got = readv(d, r, 2);
	CHECK("readv", got > 0 && memcmp(a, "vec", got < 3 ? got : 3) == 0);
	while (got < 7) {
		CHECK("readv", readable(d));
		ssize_t k = read(d, b + (got - 3), (size_t)(7 - got));
		CHECK("readv", k > 0);
		got += k;
	}
	CHECK("readv", memcmp(b, "tors", 4) == 0);
	struct sockaddr_in me, them;
	socklen_t ml = sizeof(me), tl = sizeof(them);
	CHECK("names", getsockname(d, (struct sockaddr *)&me, &ml) == 0);
	CHECK("names", getpeername(d, (struct sockaddr *)&them, &tl) == 0);
	CHECK("names", me.sin_addr.s_addr == htonl(0x0a4d0002)); /* .2 */
	CHECK("names", ntohs(them.sin_port) == port);
	int type = 0;
	socklen_t tlen = sizeof(type);
	CHECK("names", getsockopt(d, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
	                   type == SOCK_STREAM);
	ok("vectors and names");
}

static void check_udp(void)
{
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = peer();
	CHECK("udp",
	      u >= 0 && connect(u, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	char one[] = "one", two[] = "two!";
	struct iovec iv[2] = {{one, 3}, {two, 4}};
	struct mmsghdr m[2] = {
	    {.msg_hdr = {.msg_iov = &iv[0], .msg_iovlen = 1}},
	    {.msg_hdr = {.msg_iov = &iv[1], .msg_iovlen = 1}}};
	CHECK("sendmmsg", sendmmsg(u, m, 2, 0) == 2);
	char r1[16], r2[16];
	struct iovec rv[2] = {{r1, 16}, {r2, 16}};
	struct mmsghdr in[2] = {
	    {.msg_hdr = {.msg_iov = &rv[0], .msg_iovlen = 1}},
	    {.msg_hdr = {.msg_iov = &rv[1], .msg_iovlen = 1}}};
	int got = 0;
	while (got < 2) {
		CHECK("recvmmsg", readable(u));
		int k = recvmmsg(u, in + got, (unsigned)(2 - got),
		                 MSG_WAITFORONE, NULL);
		CHECK("recvmmsg", k > 0);
		got += k;
	}
	CHECK("recvmmsg", in[0].msg_len == 3 && in[1].msg_len == 4);
	close(u);
	ok("udp mmsg");
}

static void check_udp_unconnected(void)
{
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = peer(), from;
	socklen_t flen = sizeof(from);
	CHECK("udp sendto",
	      u >= 0 && sendto(u, "ping", 4, 0, (struct sockaddr *)&sa,
	                       sizeof(sa)) == 4);
	char buf[16];
	CHECK("udp recvfrom", readable(u));
	CHECK("udp recvfrom", recvfrom(u, buf, sizeof(buf), 0,
	                               (struct sockaddr *)&from, &flen) == 4);
	CHECK("udp recvfrom", memcmp(buf, "ping", 4) == 0 &&
	                          from.sin_addr.s_addr == sa.sin_addr.s_addr &&
	                          from.sin_port == sa.sin_port);
	CHECK("udp recvfrom",
	      recv(u, buf, sizeof(buf), 0) == -1 && errno == EAGAIN);
	close(u);
	ok("udp sendto/recvfrom");
}

static void check_epoll(int d)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int p[2];
	CHECK("epoll", ep >= 0 && pipe(p) == 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
	CHECK("epoll", epoll_ctl(ep, EPOLL_CTL_ADD, d, &ev) == 0);
	ev.data.u32 = 9;
	CHECK("epoll", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
	CHECK("epoll",
	      epoll_ctl(ep, EPOLL_CTL_ADD, d, &ev) == -1 && errno == EEXIST);
	struct epoll_event out[4];
	CHECK("epoll", epoll_wait(ep, out, 4, 0) == 0);
	CHECK("epoll", write(d, "e", 1) == 1);
	int n = epoll_wait(ep, out, 4, 5000);
	CHECK("epoll", n == 1 && out[0].data.u32 == 7);
	char c;
	CHECK("epoll", read(d, &c, 1) == 1 && write(p[1], "p", 1) == 1);
	n = epoll_wait(ep, out, 4, 5000);
	CHECK("epoll", n == 1 && out[0].data.u32 == 9);
	CHECK("epoll", epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL) == 0);
	close(ep);
	close(p[0]);
	close(p[1]);
	ok("epoll");
}

static void check_high_numbers(int d)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max <= 2000) {
		ok("high numbers (skipped: RLIMIT_NOFILE)");
		return;
	}
	/* Beyond FD_SETSIZE: poll works, as with any descriptor. */
	CHECK("high", dup2(d, 1900) == 1900);
	CHECK("high", write(1900, "h", 1) == 1);
	struct pollfd f = {.fd = 1900, .events = POLLIN};
	CHECK("high", poll(&f, 1, 5000) == 1 && (f.revents & POLLIN));
	char c;
	CHECK("high", read(1900, &c, 1) == 1 && c == 'h');
	close(1900);
	ok("high numbers");
}

static void check_fork(int d)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		/* The parent's socket is not ours to drive: EBADF, cleanly. */
		CHECK("fork child", write(d, "x", 1) == -1 && errno == EBADF);
		CHECK("fork child", close(d) == 0);
		int s = connected(0);
		CHECK("fork child", s >= 0 && echo(s, "child's own") == 0);
		close(s);
		ok("fork child");
		fflush(stdout);
		_exit(0);
	}
	int status;
	CHECK("fork", pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK("fork", WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK("fork", echo(d, "parent after the child") == 0);
	ok("fork parent");
}

/* A vfork child (as posix_spawn and CPython's subprocess make) rearranges
 * its descriptors on the parent's memory: the parent must not notice. */
static void check_vfork(int d)
{
	pid_t pid = vfork();
	if (pid == 0) {
		dup2(d, 0);
		close_range(3, ~0u, 0);
		_exit(0);
	}
	int status;
	CHECK("vfork", pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK("vfork", echo(d, "parent after vfork") == 0);
	char c;
	/* fd 0 is still the parent's stdin (/dev/null): EOF, no socket */
	CHECK("vfork", read(0, &c, 1) == 0);
	ok("vfork");
}

static void check_exec(const char *self)
{
	int gone = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int kept = socket(AF_INET, SOCK_STREAM, 0);
	CHECK("exec", gone >= 0 && kept >= 0);
	char g[16], k[16], p[16];
	snprintf(g, sizeof(g), "%d", gone);
	snprintf(k, sizeof(k), "%d", kept);
	snprintf(p, sizeof(p), "%d", port);
	fflush(stdout);
	execl(self, self, "--after-exec", host, p, g, k, (char *)NULL);
	CHECK("exec", 0);
}

static int after_exec(char **argv)
{
	int gone = atoi(argv[4]), kept = atoi(argv[5]);
	CHECK("exec", fcntl(gone, F_GETFD) == -1 && errno == EBADF);
	/* Survives as an inert placeholder: a unix socket of the kernel. */
	int dom = 0;
	socklen_t len = sizeof(dom);
	CHECK("exec",
	      getsockopt(kept, SOL_SOCKET, SO_DOMAIN, &dom, &len) == 0 &&
	          dom == AF_UNIX);
	close(kept);
	int s = connected(0);
	CHECK("exec", s >= 0 && echo(s, "after exec") == 0);
	ok("exec");
	printf("ALL OK\n");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 6 && strcmp(argv[1], "--after-exec") == 0) {
		host = argv[2];
		port = atoi(argv[3]);
		return after_exec(argv);
	}
	if (argc != 3) {
		fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
		return 2;
	}
	host = argv[1];
	port = atoi(argv[2]);
	check_numbers();
	check_close_range();
	int d = check_dup();
	check_flags(d);
	check_fionread(d);
	check_vectors_and_names(d);
	check_udp();
	check_udp_unconnected();
	check_epoll(d);
	check_high_numbers(d);
	check_fork(d);
	check_vfork(d);
	close(d);
	check_exec(argv[0]);
	return 1;
}
