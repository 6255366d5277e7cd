/*
 * The behaviour suite's adapter for the kernel's own sockets: handles are
 * file descriptors, every call is the system call. This is the oracle the
 * suite is checked against; libclient must behave the same.
 *
 * Only difference from plain calls: sends carry MSG_NOSIGNAL, which
 * libclient always implies (no SIGPIPE, ever).
 */
#include "libclient/behaviour/api.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int k_setup(void)
{
	return 0;
}

static void k_teardown(void)
{
}

static const char *k_loopback(int family)
{
	return family == AF_INET6 ? "::1" : "127.0.0.1";
}

static int k_socket(int domain, int type, int protocol)
{
	return socket(domain, type | SOCK_CLOEXEC, protocol);
}

static int k_accept4(int h, struct sockaddr *addr, socklen_t *len, int flags)
{
	return accept4(h, addr, len, flags | SOCK_CLOEXEC);
}

static ssize_t k_send(int h, const void *buf, size_t len, int flags)
{
	return send(h, buf, len, flags | MSG_NOSIGNAL);
}

static ssize_t k_sendto(int h, const void *buf, size_t len, int flags,
                        const struct sockaddr *to, socklen_t tolen)
{
	return sendto(h, buf, len, flags | MSG_NOSIGNAL, to, tolen);
}

static ssize_t k_sendmsg(int h, const struct msghdr *msg, int flags)
{
	return sendmsg(h, msg, flags | MSG_NOSIGNAL);
}

static int k_set_nonblocking(int h, int on)
{
	int fl = fcntl(h, F_GETFL);
	if (fl < 0)
		return -1;
	return fcntl(h, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static int k_bytes_readable(int h, int *n)
{
	return ioctl(h, FIONREAD, n);
}

static int k_poll(struct api_pollfd *fds, size_t n, int timeout_ms)
{
	struct pollfd pfd[64];
	if (n > 64)
		abort();
	for (size_t i = 0; i < n; i++)
		pfd[i] =
		    (struct pollfd){.fd = fds[i].h, .events = fds[i].events};
	int r = poll(pfd, n, timeout_ms);
	for (size_t i = 0; i < n; i++)
		fds[i].revents = r < 0 ? 0 : pfd[i].revents;
	return r;
}

const struct sock_api api_kernel = {
    .name = "kernel",
    .setup = k_setup,
    .teardown = k_teardown,
    .loopback = k_loopback,
    .socket = k_socket,
    .bind = bind,
    .listen = listen,
    .accept4 = k_accept4,
    .connect = connect,
    .send = k_send,
    .recv = recv,
    .sendto = k_sendto,
    .recvfrom = recvfrom,
    .sendmsg = k_sendmsg,
    .recvmsg = recvmsg,
    .shutdown = shutdown,
    .close = close,
    .setsockopt = setsockopt,
    .getsockopt = getsockopt,
    .getsockname = getsockname,
    .getpeername = getpeername,
    .set_nonblocking = k_set_nonblocking,
    .bytes_readable = k_bytes_readable,
    .poll = k_poll,
};
