/*
 * The behaviour suite's adapter for libclient: handles are slots of a
 * table of struct nc_sock pointers, one client attached for the whole run.
 *
 * Environment:
 *   NETCORE_BROKER_SOCKET  the broker's attach socket (required)
 *   NETCORE_LOOPBACK4      the IPv4 address both ends use (127.0.0.1)
 *   NETCORE_LOOPBACK6      the IPv6 address both ends use (::1)
 * The suite needs a running broker and core whose stack answers on those
 * addresses; until they exist this adapter's test is tagged "manual".
 */
#include "libclient/behaviour/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "libclient/netcore.h"

#define MAX_HANDLES 256

static struct nc_client *client;
static struct nc_sock *table[MAX_HANDLES];

static int n_setup(void)
{
	const char *path = getenv("NETCORE_BROKER_SOCKET");
	if (path == NULL) {
		fprintf(stderr, "netcore adapter: set NETCORE_BROKER_SOCKET "
		                "to the broker's attach socket\n");
		return -1;
	}
	if (nc_client_attach(path, &client) != 0) {
		perror("nc_client_attach");
		return -1;
	}
	return 0;
}

static void n_teardown(void)
{
	if (client != NULL)
		nc_client_detach(client);
	client = NULL;
}

static int put(struct nc_sock *s)
{
	for (int h = 0; h < MAX_HANDLES; h++) {
		if (table[h] == NULL) {
			table[h] = s;
			return h;
		}
	}
	nc_close(s);
	errno = EMFILE;
	return -1;
}

/* The handle's socket, or NULL (a bad handle: EBADF from libclient). */
static struct nc_sock *get(int h)
{
	return h >= 0 && h < MAX_HANDLES ? table[h] : NULL;
}

static int n_socket(int domain, int type, int protocol)
{
	struct nc_sock *s;
	if (nc_socket(client, domain, type, protocol, &s) != 0)
		return -1;
	return put(s);
}

static int n_bind(int h, const struct sockaddr *addr, socklen_t len)
{
	return nc_bind(get(h), addr, len);
}

static int n_listen(int h, int backlog)
{
	return nc_listen(get(h), backlog);
}

static int n_accept4(int h, struct sockaddr *addr, socklen_t *len, int flags)
{
	struct nc_sock *s;
	if (nc_accept4(get(h), addr, len, flags, &s) != 0)
		return -1;
	return put(s);
}

static int n_connect(int h, const struct sockaddr *addr, socklen_t len)
{
	return nc_connect(get(h), addr, len);
}

static ssize_t n_send(int h, const void *buf, size_t len, int flags)
{
	return nc_send(get(h), buf, len, flags);
}

static ssize_t n_recv(int h, void *buf, size_t len, int flags)
{
	return nc_recv(get(h), buf, len, flags);
}

static ssize_t n_sendto(int h, const void *buf, size_t len, int flags,
                        const struct sockaddr *to, socklen_t tolen)
{
	return nc_sendto(get(h), buf, len, flags, to, tolen);
}

static ssize_t n_recvfrom(int h, void *buf, size_t len, int flags,
                          struct sockaddr *from, socklen_t *fromlen)
{
	return nc_recvfrom(get(h), buf, len, flags, from, fromlen);
}

static ssize_t n_sendmsg(int h, const struct msghdr *msg, int flags)
{
	return nc_sendmsg(get(h), msg, flags);
}

static ssize_t n_recvmsg(int h, struct msghdr *msg, int flags)
{
	return nc_recvmsg(get(h), msg, flags);
}

static int n_shutdown(int h, int how)
{
	return nc_shutdown(get(h), how);
}

static int n_close(int h)
{
	struct nc_sock *s = get(h);
	if (s != NULL)
		table[h] = NULL;
	return nc_close(s);
}

static int n_setsockopt(int h, int level, int name, const void *val,
                        socklen_t len)
{
	return nc_setsockopt(get(h), level, name, val, len);
}

static int n_getsockopt(int h, int level, int name, void *val, socklen_t *len)
{
	return nc_getsockopt(get(h), level, name, val, len);
}

static int n_getsockname(int h, struct sockaddr *addr, socklen_t *len)
{
	return nc_getsockname(get(h), addr, len);
}

static int n_getpeername(int h, struct sockaddr *addr, socklen_t *len)
{
	return nc_getpeername(get(h), addr, len);
}

static int n_set_nonblocking(int h, int on)
{
	return nc_set_nonblocking(get(h), on);
}

static int n_bytes_readable(int h, int *n)
{
	return nc_bytes_readable(get(h), n);
}

static int n_poll(struct api_pollfd *fds, size_t n, int timeout_ms)
{
	struct nc_pollfd pfd[64];
	if (n > 64)
		abort();
	for (size_t i = 0; i < n; i++)
		pfd[i] = (struct nc_pollfd){.sock = get(fds[i].h),
		                            .events = fds[i].events};
	int r = nc_poll(client, pfd, n, timeout_ms);
	for (size_t i = 0; i < n; i++)
		fds[i].revents = r < 0 ? 0 : pfd[i].revents;
	return r;
}

static const char *n_loopback(int family)
{
	const char *name =
	    family == AF_INET6 ? "NETCORE_LOOPBACK6" : "NETCORE_LOOPBACK4";
	const char *v = getenv(name);
	if (v != NULL)
		return v;
	return family == AF_INET6 ? "::1" : "127.0.0.1";
}

const struct sock_api api_netcore = {
    .name = "netcore",
    .setup = n_setup,
    .teardown = n_teardown,
    .loopback = n_loopback,
    .socket = n_socket,
    .bind = n_bind,
    .listen = n_listen,
    .accept4 = n_accept4,
    .connect = n_connect,
    .send = n_send,
    .recv = n_recv,
    .sendto = n_sendto,
    .recvfrom = n_recvfrom,
    .sendmsg = n_sendmsg,
    .recvmsg = n_recvmsg,
    .shutdown = n_shutdown,
    .close = n_close,
    .setsockopt = n_setsockopt,
    .getsockopt = n_getsockopt,
    .getsockname = n_getsockname,
    .getpeername = n_getpeername,
    .set_nonblocking = n_set_nonblocking,
    .bytes_readable = n_bytes_readable,
    .poll = n_poll,
};
