/*
 * io.c: the data calls of the shim: send*, recv*, read/write,
 * readv/writev, sendmmsg/recvmmsg, sendfile, and the _FORTIFY_SOURCE
 * entry points (__read_chk, __recv_chk, __recvfrom_chk) that fortified
 * programs call instead of the plain ones.
 *
 * On a netcore socket each maps onto one libclient call (read = recv with
 * no flags, readv = recvmsg, ...), so blocking, timeouts and errors are
 * libclient's; an EAGAIN is noted for EPOLLET (see epoll.c). On a kernel
 * descriptor each is libc's function, unchanged.
 *
 * What it does not do: ancillary data (libclient returns none and sends
 * none: SCM_RIGHTS over a netcore socket is meaningless anyway), MSG_OOB,
 * recvmmsg's timeout (ignored: the kernel's is only checked between
 * datagrams too, and programs use MSG_WAITFORONE instead), zero-copy
 * sendfile (it reads the file in 64 KiB pieces).
 */
#include "shim/nci_enter.h"

#include <errno.h>
#include <sys/sendfile.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	NCI_ENTER(fd, p, nci_r()->send(fd, buf, len, flags));
	ssize_t r = nc_send(p->s, buf, len, flags);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                      const struct sockaddr *to, socklen_t tolen)
{
	NCI_ENTER(fd, p, nci_r()->sendto(fd, buf, len, flags, to, tolen));
	ssize_t r = to != NULL ? nc_sendto(p->s, buf, len, flags, to, tolen)
	                       : nc_send(p->s, buf, len, flags);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	NCI_ENTER(fd, p, nci_r()->sendmsg(fd, msg, flags));
	ssize_t r = nc_sendmsg(p->s, msg, flags);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	NCI_ENTER(fd, p, nci_r()->recv(fd, buf, len, flags));
	ssize_t r = nc_recv(p->s, buf, len, flags);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                        struct sockaddr *from, socklen_t *fromlen)
{
	NCI_ENTER(fd, p, nci_r()->recvfrom(fd, buf, len, flags, from, fromlen));
	ssize_t r = nc_recvfrom(p->s, buf, len, flags, from, fromlen);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	NCI_ENTER(fd, p, nci_r()->recvmsg(fd, msg, flags));
	ssize_t r = nc_recvmsg(p->s, msg, flags);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	NCI_ENTER(fd, p, nci_r()->read(fd, buf, len));
	ssize_t r = nc_recv(p->s, buf, len, 0);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	NCI_ENTER(fd, p, nci_r()->write(fd, buf, len));
	ssize_t r = nc_send(p->s, buf, len, 0);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	NCI_ENTER(fd, p, nci_r()->readv(fd, iov, cnt));
	struct msghdr mh = {.msg_iov = (struct iovec *)iov,
	                    .msg_iovlen = (size_t)(cnt < 0 ? 0 : cnt)};
	ssize_t r = cnt < 0 ? nci_fail(EINVAL) : nc_recvmsg(p->s, &mh, 0);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	NCI_ENTER(fd, p, nci_r()->writev(fd, iov, cnt));
	struct msghdr mh = {.msg_iov = (struct iovec *)iov,
	                    .msg_iovlen = (size_t)(cnt < 0 ? 0 : cnt)};
	ssize_t r = cnt < 0 ? nci_fail(EINVAL) : nc_sendmsg(p->s, &mh, 0);
	NCI_NOTE_EAGAIN(p, r);
	nci_put(p);
	return r;
}

/* ------------------------------------------------------ the mmsg calls */

static int sock_sendmmsg(struct nci_sock *p, struct mmsghdr *v, unsigned int n,
                         int flags)
{
	unsigned int i;
	for (i = 0; i < n; i++) {
		ssize_t r = nc_sendmsg(p->s, &v[i].msg_hdr, flags);
		if (r < 0) {
			NCI_NOTE_EAGAIN(p, r);
			return i > 0 ? (int)i : -1;
		}
		v[i].msg_len = (unsigned int)r;
	}
	return (int)i;
}

EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	NCI_ENTER(fd, p, nci_r()->sendmmsg(fd, v, n, flags));
	int r = sock_sendmmsg(p, v, n, flags);
	nci_put(p);
	return r;
}

static int sock_recvmmsg(struct nci_sock *p, struct mmsghdr *v, unsigned int n,
                         int flags)
{
	unsigned int i;
	int base = flags & ~MSG_WAITFORONE;
	for (i = 0; i < n; i++) {
		int f = base;
		if (i > 0 && (flags & MSG_WAITFORONE))
			f |= MSG_DONTWAIT;
		ssize_t r = nc_recvmsg(p->s, &v[i].msg_hdr, f);
		if (r < 0) {
			NCI_NOTE_EAGAIN(p, r);
			return i > 0 ? (int)i : -1;
		}
		v[i].msg_len = (unsigned int)r;
	}
	return (int)i;
}

EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags,
                    struct timespec *timeout)
{
	NCI_ENTER(fd, p, nci_r()->recvmmsg(fd, v, n, flags, timeout));
	int r = sock_recvmmsg(p, v, n, flags);
	nci_put(p);
	return r;
}

/* ------------------------------------------------------------ sendfile */

/* One piece: read from the file, send, give back what was not sent. */
static ssize_t sendfile_piece(struct nci_sock *p, int in, off_t *off,
                              size_t count)
{
	char buf[65536];
	size_t want = count < sizeof(buf) ? count : sizeof(buf);
	ssize_t got = off != NULL ? pread(in, buf, want, *off)
	                          : nci_r()->read(in, buf, want);
	if (got <= 0)
		return got;
	ssize_t sent = nc_send(p->s, buf, (size_t)got, 0);
	NCI_NOTE_EAGAIN(p, sent);
	ssize_t kept = sent < 0 ? 0 : sent;
	if (off != NULL)
		*off += kept;
	else if (kept < got)
		lseek(in, kept - got, SEEK_CUR);
	return sent;
}

static ssize_t sock_sendfile(struct nci_sock *p, int in, off_t *off,
                             size_t count)
{
	size_t done = 0;
	while (done < count) {
		ssize_t r = sendfile_piece(p, in, off, count - done);
		if (r < 0)
			return done > 0 ? (ssize_t)done : -1;
		if (r == 0)
			break;
		done += (size_t)r;
		if ((size_t)r < 65536)
			break; /* short: the file ended or the socket is full */
	}
	return (ssize_t)done;
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	NCI_ENTER(out, p, nci_r()->sendfile(out, in, off, count));
	ssize_t r = sock_sendfile(p, in, off, count);
	nci_put(p);
	return r;
}

EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count);
EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count)
{
	return sendfile(out, in, off, count);
}

/* ---------------------------------------------------- _FORTIFY_SOURCE */

/* glibc's checks, then ours. */
extern void __chk_fail(void) __attribute__((noreturn));

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__chk_fail();
	return read(fd, buf, len);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen,
                          int flags);
EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen,
                          int flags)
{
	if (len > buflen)
		__chk_fail();
	return recv(fd, buf, len, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen,
                              int flags, struct sockaddr *from,
                              socklen_t *fromlen);
EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen,
                              int flags, struct sockaddr *from,
                              socklen_t *fromlen)
{
	if (len > buflen)
		__chk_fail();
	return recvfrom(fd, buf, len, flags, from, fromlen);
}
