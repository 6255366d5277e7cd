/*
 * sock.c: the control calls of the shim (socket, bind, listen, accept,
 * connect, shutdown, close, names, options) and the descriptor calls
 * (dup*, fcntl, ioctl).
 *
 * socket() makes a netcore socket for AF_INET/AF_INET6 stream and datagram
 * sockets when NETCORE_BROKER is set (attaching at the first one); every
 * other socket, and every call on a kernel descriptor, goes to libc
 * unchanged. Errors are libclient's, which follow Linux.
 *
 * dup/dup2/dup3/F_DUPFD duplicate the placeholder in the kernel (so the
 * number and its close-on-exec flag are the kernel's choice) and make the
 * new number name the same entry. O_NONBLOCK (fcntl F_SETFL, ioctl
 * FIONBIO, SOCK_NONBLOCK) is the entry's, so shared between duplicates as
 * on Linux; FD_CLOEXEC is the placeholder's own.
 *
 * What it does not do: SOCK_RAW or other protocols (the kernel's, which
 * has no network in a sandbox), IP_TOS / IPV6_TCLASS / TCP_QUICKACK (set
 * is accepted and ignored; netcore has no such option), ioctls other than
 * FIONBIO and FIONREAD on netcore sockets (ENOTTY), F_SETOWN/F_SETSIG
 * (applied to the placeholder, so no SIGIO ever comes).
 */
#include "shim/nci_enter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static bool wants_netcore(int domain, int type)
{
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	return (domain == AF_INET || domain == AF_INET6) &&
	       (base == SOCK_STREAM || base == SOCK_DGRAM) && nci_enabled();
}

EXPORT int socket(int domain, int type, int protocol)
{
	if (!wants_netcore(domain, type))
		return nci_r()->socket(domain, type, protocol);
	struct nc_client *c = nci_client();
	if (c == NULL)
		return -1;
	struct nc_sock *s;
	if (nc_socket(c, domain, type, protocol, &s) != 0)
		return -1;
	return nci_adopt(s, domain, type, type);
}

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	NCI_ENTER(fd, p, nci_r()->bind(fd, addr, len));
	int r = nc_bind(p->s, addr, len);
	nci_put(p);
	return r;
}

EXPORT int listen(int fd, int backlog)
{
	NCI_ENTER(fd, p, nci_r()->listen(fd, backlog));
	int r = nc_listen(p->s, backlog);
	nci_put(p);
	return r;
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	NCI_ENTER(fd, p, nci_r()->accept4(fd, addr, len, flags));
	struct nc_sock *ns;
	int r = nc_accept4(p->s, addr, len, flags & SOCK_NONBLOCK, &ns);
	NCI_NOTE_EAGAIN(p, r);
	if (r == 0)
		r = nci_adopt(ns, p->domain, p->type, flags);
	nci_put(p);
	return r;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	if (!nci_is_ours(fd))
		return nci_r()->accept(fd, addr, len);
	return accept4(fd, addr, len, 0);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	NCI_ENTER(fd, p, nci_r()->connect(fd, addr, len));
	int r = nc_connect(p->s, addr, len);
	nci_put(p);
	return r;
}

EXPORT int shutdown(int fd, int how)
{
	NCI_ENTER(fd, p, nci_r()->shutdown(fd, how));
	int r = nc_shutdown(p->s, how);
	nci_put(p);
	return r;
}

EXPORT int close(int fd)
{
	/* Forget the number before the kernel may hand it out again. */
	struct nci_sock *p = nci_is_ours(fd) ? nci_remove(fd) : NULL;
	if (p == NULL)
		nci_epoll_forget(fd);
	int r = nci_r()->close(fd);
	nci_put(p);
	return r;
}

/* close_range/closefrom: the kernel closes the numbers, the table
 * forgets every one of ours in the range (CLOSE_RANGE_CLOEXEC only marks
 * them, so nothing changes then). */
static void forget_range(unsigned int first, unsigned int last)
{
	unsigned int cap = nci_owner() ? nci_table_cap() : 0;
	for (unsigned int fd = first; fd <= last && fd < cap; fd++) {
		if (nci_is_ours((int)fd))
			nci_put(nci_remove((int)fd));
		else
			nci_epoll_forget((int)fd);
	}
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	int r = (int)syscall(SYS_close_range, first, last, flags);
	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
		forget_range(first, last);
	return r;
}

EXPORT void closefrom(int lowfd)
{
	unsigned int first = lowfd < 0 ? 0 : (unsigned int)lowfd;
	if (syscall(SYS_close_range, first, ~0u, 0) == 0) {
		forget_range(first, ~0u);
		return;
	}
	/* Old kernels: one close at a time, as glibc falls back. */
	for (unsigned int fd = first; fd < nci_table_cap(); fd++)
		close((int)fd);
}

EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	NCI_ENTER(fd, p, nci_r()->getsockname(fd, addr, len));
	int r = nc_getsockname(p->s, addr, len);
	nci_put(p);
	return r;
}

EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	NCI_ENTER(fd, p, nci_r()->getpeername(fd, addr, len));
	int r = nc_getpeername(p->s, addr, len);
	nci_put(p);
	return r;
}

EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	NCI_ENTER(fd, p, nci_r()->getsockopt(fd, level, name, val, len));
	int r = nc_getsockopt(p->s, level, name, val, len);
	nci_put(p);
	return r;
}

/* Options programs set for tuning that netcore does not have: accepting
 * them beats failing a program over a hint. */
static bool harmless_hint(int level, int name)
{
	return (level == IPPROTO_IP && name == IP_TOS) ||
	       (level == IPPROTO_IPV6 && name == IPV6_TCLASS) ||
	       (level == IPPROTO_TCP && name == TCP_QUICKACK) ||
	       (level == SOL_SOCKET && name == SO_PRIORITY);
}

EXPORT int setsockopt(int fd, int level, int name, const void *val,
                      socklen_t len)
{
	NCI_ENTER(fd, p, nci_r()->setsockopt(fd, level, name, val, len));
	int r = nc_setsockopt(p->s, level, name, val, len);
	if (r != 0 && errno == ENOPROTOOPT && harmless_hint(level, name))
		r = 0;
	nci_put(p);
	return r;
}

/* ------------------------------------------------------------ dup */

/* After the kernel made `to` a copy of `from`: the table follows. */
static int follow_dup(int from, int to)
{
	if (to < 0)
		return to;
	struct nci_sock *p = nci_get(from);
	if (p == NULL)
		nci_epoll_forget(to);
	nci_put(nci_install(to, p));
	nci_put(p);
	return to;
}

EXPORT int dup(int fd)
{
	return follow_dup(fd, nci_r()->dup(fd));
}

EXPORT int dup2(int from, int to)
{
	if (from == to)
		return nci_r()->dup2(from, to);
	return follow_dup(from, nci_r()->dup2(from, to));
}

EXPORT int dup3(int from, int to, int flags)
{
	return follow_dup(from, nci_r()->dup3(from, to, flags));
}

/* ----------------------------------------------------------- fcntl */

static int sock_fcntl(int fd, struct nci_sock *p, int cmd, long arg)
{
	switch (cmd) {
	case F_GETFL:
		return nc_fcntl(p->s, F_GETFL, 0) | O_RDWR;
	case F_SETFL:
		return nc_fcntl(p->s, F_SETFL, (int)(arg & O_NONBLOCK));
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		return follow_dup(fd, nci_r()->fcntl(fd, cmd, arg));
	default:
		/* FD_CLOEXEC and the rest belong to the placeholder. */
		return nci_r()->fcntl(fd, cmd, arg);
	}
}

static int any_fcntl(int fd, int cmd, long arg)
{
	NCI_ENTER(fd, p, nci_r()->fcntl(fd, cmd, arg));
	int r = sock_fcntl(fd, p, cmd, arg);
	nci_put(p);
	return r;
}

/* The third argument is an int, a long or a pointer by command; on the
 * ABIs we build for all travel in one register, read as a long. */
EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	return any_fcntl(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...);
EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	return any_fcntl(fd, cmd, arg);
}

static int sock_ioctl(struct nci_sock *p, unsigned long req, void *arg)
{
	int *v = arg;
	switch (req) {
	case FIONBIO:
		return nc_set_nonblocking(p->s, *v != 0);
	case FIONREAD:
		return nc_bytes_readable(p->s, v);
	default:
		return nci_fail(ENOTTY);
	}
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	NCI_ENTER(fd, p, nci_r()->ioctl(fd, req, arg));
	int r = sock_ioctl(p, req, arg);
	nci_put(p);
	return r;
}
