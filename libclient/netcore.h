/*
 * netcore.h: sockets for sandboxed programs, served by netcore.
 *
 * A program with no network of its own attaches to the proxy broker over a
 * unix socket (nc_client_attach) and receives a shared-memory region and two
 * doorbells. Sockets then behave like the BSD calls they are named after:
 * every call returns -1 and sets errno as Linux would (ECONNRESET, EPIPE,
 * ENOTCONN, EISCONN, EALREADY, EINPROGRESS, EADDRINUSE, ECONNREFUSED,
 * ETIMEDOUT, EAGAIN, ...). Data moves through the region without any
 * system call while there is room; control operations (socket, bind,
 * connect, ...) are requests to the broker.
 *
 * Handles. A struct nc_sock is the socket; it is not a file descriptor and
 * cannot be passed to read(2), close(2) or poll(2). nc_client_fd() is the
 * one descriptor a program may watch: the client doorbell, an eventfd that
 * becomes readable when netcore changed something the program asked to hear
 * about. To wait in your own poll/epoll beside your own descriptors:
 *
 *   for (;;) {
 *       n = nc_poll(client, fds, count, 0);   // consumes the doorbell and
 *       ...handle the n ready handles...      // asks for the next wake-up
 *       if (n == 0) epoll_wait(...);          // nc_client_fd() is in there
 *   }
 *
 * nc_poll() and every call that fails with EAGAIN leave a wake-up request
 * behind, so the doorbell rings at the next change. Blocking calls wait on
 * the doorbell themselves.
 *
 * Threads. The library starts none. Distinct handles may be used from
 * distinct threads at the same time, and one handle from several threads is
 * serialised like a kernel socket. Closing a handle while another thread is
 * inside a call on it is undefined (as with close(2) on a descriptor another
 * thread reads). Blocking waits restart after a signal handler returns
 * (there is no EINTR). No call raises a signal: writing to a closed
 * connection fails with EPIPE and never sends SIGPIPE (MSG_NOSIGNAL is
 * always implied).
 *
 * fork(). A child may not use the parent's client or any of its handles:
 * they share the parent's ring positions, which only one process may drive.
 * In the child every call on them fails with EBADF, except
 * nc_client_detach(), which releases the child's copies (memory, mappings,
 * descriptors) and tells nobody, so the parent keeps working. The child
 * calls nc_client_attach() to get a client of its own. Descriptors are
 * close-on-exec.
 */
#ifndef NETCORE_LIBCLIENT_NETCORE_H
#define NETCORE_LIBCLIENT_NETCORE_H

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nc_client;
struct nc_sock;

/* ------------------------------------------------------------- clients */

/*
 * Connects to the broker's attach socket at `broker_socket_path`, receives
 * and maps this client's region. 0 and *out, or -1 with errno: the
 * connect(2) errors, EACCES (refused by policy), EPROTO (the broker broke
 * the protocol), EAGAIN (no answer in time).
 */
int nc_client_attach(const char *broker_socket_path, struct nc_client **out);

/*
 * Closes every handle still open (gracefully, like nc_close), then the
 * attach socket; netcore reclaims the region. Frees the client. In a forked
 * child: releases the child's copies only (see above).
 */
int nc_client_detach(struct nc_client *client);

/* The client doorbell (an eventfd) for the caller's own poll/epoll. Read
 * it only through nc_poll(). */
int nc_client_fd(const struct nc_client *client);

/* ------------------------------------------------------------- sockets */

/*
 * domain: AF_INET or AF_INET6; type: SOCK_STREAM or SOCK_DGRAM, optionally
 * | SOCK_NONBLOCK (| SOCK_CLOEXEC is accepted and means nothing here);
 * protocol: 0, IPPROTO_TCP or IPPROTO_UDP to match.
 */
int nc_socket(struct nc_client *client, int domain, int type, int protocol,
              struct nc_sock **out);
int nc_bind(struct nc_sock *s, const struct sockaddr *addr, socklen_t len);
int nc_listen(struct nc_sock *s, int backlog);
/* accept4: flags may hold SOCK_NONBLOCK (and SOCK_CLOEXEC, ignored). */
int nc_accept(struct nc_sock *s, struct sockaddr *addr, socklen_t *len,
              struct nc_sock **out);
int nc_accept4(struct nc_sock *s, struct sockaddr *addr, socklen_t *len,
               int flags, struct nc_sock **out);
/*
 * Blocking: waits for the handshake (SO_SNDTIMEO bounds it: EINPROGRESS
 * when it expires, as on Linux). Non-blocking: EINPROGRESS, then the
 * handle polls writable (success) or with POLLERR; SO_ERROR says which.
 */
int nc_connect(struct nc_sock *s, const struct sockaddr *addr, socklen_t len);

/* flags: MSG_DONTWAIT, MSG_NOSIGNAL (always implied), MSG_MORE (ignored). */
ssize_t nc_send(struct nc_sock *s, const void *buf, size_t len, int flags);
ssize_t nc_sendto(struct nc_sock *s, const void *buf, size_t len, int flags,
                  const struct sockaddr *to, socklen_t tolen);
ssize_t nc_sendmsg(struct nc_sock *s, const struct msghdr *msg, int flags);
/* flags: MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL, MSG_TRUNC (datagrams: the
 * real length is returned). End of stream reads as 0. */
ssize_t nc_recv(struct nc_sock *s, void *buf, size_t len, int flags);
ssize_t nc_recvfrom(struct nc_sock *s, void *buf, size_t len, int flags,
                    struct sockaddr *from, socklen_t *fromlen);
/* msg_flags gets MSG_TRUNC for a truncated datagram; no control data. */
ssize_t nc_recvmsg(struct nc_sock *s, struct msghdr *msg, int flags);

/* how: SHUT_RD, SHUT_WR, SHUT_RDWR. SHUT_WR follows the data sent before. */
int nc_shutdown(struct nc_sock *s, int how);
/*
 * Graceful: data sent before is still delivered, then FIN (SO_LINGER
 * {1, 0}: RST instead). The handle is freed even when -1 is returned.
 */
int nc_close(struct nc_sock *s);

int nc_getsockname(struct nc_sock *s, struct sockaddr *addr, socklen_t *len);
int nc_getpeername(struct nc_sock *s, struct sockaddr *addr, socklen_t *len);

/*
 * SO_RCVTIMEO and SO_SNDTIMEO (struct timeval) are kept here and bound the
 * blocking calls (EAGAIN when they expire, or the partial count). SO_TYPE,
 * SO_DOMAIN, SO_PROTOCOL and SO_ACCEPTCONN are answered here. Everything
 * else goes to netcore: SO_REUSEADDR, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF,
 * SO_SNDBUF, SO_ERROR (read and cleared), TCP_NODELAY, TCP_KEEPIDLE,
 * TCP_KEEPINTVL, TCP_KEEPCNT, IPV6_V6ONLY; others: ENOPROTOOPT.
 */
int nc_setsockopt(struct nc_sock *s, int level, int optname, const void *optval,
                  socklen_t optlen);
int nc_getsockopt(struct nc_sock *s, int level, int optname, void *optval,
                  socklen_t *optlen);

/* O_NONBLOCK on or off. */
int nc_set_nonblocking(struct nc_sock *s, int on);
/* fcntl(2)'s F_GETFL / F_SETFL (O_NONBLOCK only), F_GETFD / F_SETFD
 * (accepted; there is no descriptor to close on exec). */
int nc_fcntl(struct nc_sock *s, int cmd, int arg);
/* FIONREAD: stream: bytes ready to read; datagram: the size of the next
 * datagram's payload (0 if none), as on Linux. */
int nc_bytes_readable(struct nc_sock *s, int *bytes);

/* ---------------------------------------------------------------- poll */

/* Event bits: the values of <poll.h> (POLLRDHUP is Linux's 0x2000). */
#define NC_POLLIN    POLLIN
#define NC_POLLOUT   POLLOUT
#define NC_POLLERR   POLLERR
#define NC_POLLHUP   POLLHUP
#define NC_POLLNVAL  POLLNVAL
#define NC_POLLRDHUP 0x2000

struct nc_pollfd {
	struct nc_sock *sock; /* NULL: ignored, revents 0 */
	short events;         /* NC_POLLIN | NC_POLLOUT | NC_POLLRDHUP */
	short revents;        /* also NC_POLLERR, NC_POLLHUP, NC_POLLNVAL */
};

/*
 * poll(2) over handles of one client. timeout_ms: -1 forever, 0 just look.
 * Returns how many entries have revents, 0 on timeout, -1 with errno. A
 * handle of another client gets NC_POLLNVAL. Readiness follows Linux: a
 * listener is readable when a connection waits; a reset connection is
 * POLLIN | POLLOUT | POLLHUP | POLLRDHUP | POLLERR; an unconnected stream
 * socket is POLLOUT | POLLHUP.
 */
int nc_poll(struct nc_client *client, struct nc_pollfd *fds, size_t n,
            int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* NETCORE_LIBCLIENT_NETCORE_H */
