/* echo_client: see echo_client.h. */
#include "tests/integration/echo_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

uint8_t nc_echo_pattern(uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull;
	return (uint8_t)(x >> (8 * (i & 7)) ^ (x >> 56));
}

static int64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static int connect_to(const char *addr, uint16_t port, int timeout_s)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		len = sizeof(*v6);
	} else {
		return -EINVAL;
	}
	int fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int err = 0;
	if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
		err = errno == EINPROGRESS ? 0 : -errno;
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (!err && poll(&p, 1, timeout_s * 1000) != 1)
			err = -ETIMEDOUT;
		socklen_t sl = sizeof(int);
		int so = 0;
		if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0)
			err = -so;
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

static int fail(struct nc_echo_run *run, int err, const char *problem)
{
	run->error = err;
	run->problem = problem;
	return -1;
}

static int pump_out(int fd, uint64_t total, struct nc_echo_run *run)
{
	static uint8_t buf[CHUNK];
	size_t n = total - run->sent < CHUNK ? total - run->sent : CHUNK;
	for (size_t i = 0; i < n; i++)
		buf[i] = nc_echo_pattern(run->sent + i);
	ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
	if (w < 0)
		return errno == EAGAIN ? 0 : fail(run, errno, "send failed");
	run->sent += (uint64_t)w;
	return (int)(w > 0);
}

static int pump_in(int fd, struct nc_echo_run *run)
{
	static uint8_t buf[CHUNK];
	ssize_t r = recv(fd, buf, sizeof(buf), 0);
	if (r < 0)
		return errno == EAGAIN ? 0 : fail(run, errno, "recv failed");
	if (r == 0)
		return fail(run, ECONNRESET, "server closed early");
	for (ssize_t i = 0; i < r; i++)
		if (buf[i] != nc_echo_pattern(run->verified + (uint64_t)i))
			return fail(run, EILSEQ, "wrong byte came back");
	run->verified += (uint64_t)r;
	return 1;
}

static int transfer(int fd, uint64_t total, uint64_t every,
                    nc_echo_progress_fn fn, void *ctx, int stall_s,
                    struct nc_echo_run *run)
{
	int64_t last_move = now_s();
	uint64_t next_mark = every ? every : UINT64_MAX;
	while (run->verified < total) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (run->sent < total)
			p.events |= POLLOUT;
		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			return fail(run, errno, "poll failed");
		int moved = 0, r;
		if (p.revents & POLLOUT) {
			if ((r = pump_out(fd, total, run)) < 0)
				return r;
			moved |= r;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			if ((r = pump_in(fd, run)) < 0)
				return r;
			moved |= r;
		}
		if (moved)
			last_move = now_s();
		else if (now_s() - last_move > stall_s)
			return fail(run, ETIMEDOUT, "transfer stalled");
		while (run->verified >= next_mark) {
			if (fn)
				fn(run->verified, ctx);
			next_mark += every;
		}
	}
	return 0;
}

int nc_echo_tcp(const char *addr, uint16_t port, uint64_t total, uint64_t every,
                nc_echo_progress_fn fn, void *ctx, int stall_s,
                struct nc_echo_run *run)
{
	memset(run, 0, sizeof(*run));
	int fd = connect_to(addr, port, stall_s);
	if (fd < 0)
		return fail(run, -fd, "connect failed");
	int rc = transfer(fd, total, every, fn, ctx, stall_s, run);
	close(fd);
	return rc;
}
