/*
 * The socket API the behaviour suite (behaviour.c) is written against: a
 * table of functions shaped like the BSD calls, over integer handles. Two
 * adapters implement it: the kernel's sockets (api_kernel.c: Linux is the
 * oracle) and libclient (api_netcore.c). The suite runs unchanged over
 * either; a third implementation (the LD_PRELOAD shim, say) is one more
 * adapter file and one more cc_test.
 *
 * Every call returns what the BSD call returns and sets errno the same
 * way. Sends never raise SIGPIPE (the kernel adapter adds MSG_NOSIGNAL).
 */
#ifndef NETCORE_LIBCLIENT_BEHAVIOUR_API_H
#define NETCORE_LIBCLIENT_BEHAVIOUR_API_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* poll(2)'s struct pollfd, over handles. */
struct api_pollfd {
	int h;
	short events, revents;
};

struct sock_api {
	const char *name;
	/* Before and after the suite: 0 or -1 (the suite is not run). */
	int (*setup)(void);
	void (*teardown)(void);
	/* The address both ends use for `family` ("127.0.0.1", "::1"). */
	const char *(*loopback)(int family);

	int (*socket)(int domain, int type, int protocol);
	int (*bind)(int h, const struct sockaddr *addr, socklen_t len);
	int (*listen)(int h, int backlog);
	int (*accept4)(int h, struct sockaddr *addr, socklen_t *len, int flags);
	int (*connect)(int h, const struct sockaddr *addr, socklen_t len);
	ssize_t (*send)(int h, const void *buf, size_t len, int flags);
	ssize_t (*recv)(int h, void *buf, size_t len, int flags);
	ssize_t (*sendto)(int h, const void *buf, size_t len, int flags,
	                  const struct sockaddr *to, socklen_t tolen);
	ssize_t (*recvfrom)(int h, void *buf, size_t len, int flags,
	                    struct sockaddr *from, socklen_t *fromlen);
	ssize_t (*sendmsg)(int h, const struct msghdr *msg, int flags);
	ssize_t (*recvmsg)(int h, struct msghdr *msg, int flags);
	int (*shutdown)(int h, int how);
	int (*close)(int h);
	int (*setsockopt)(int h, int level, int name, const void *val,
	                  socklen_t len);
	int (*getsockopt)(int h, int level, int name, void *val,
	                  socklen_t *len);
	int (*getsockname)(int h, struct sockaddr *addr, socklen_t *len);
	int (*getpeername)(int h, struct sockaddr *addr, socklen_t *len);
	int (*set_nonblocking)(int h, int on);
	int (*bytes_readable)(int h, int *n); /* FIONREAD */
	/* Events are poll(2)'s: POLLIN, POLLOUT, POLLRDHUP, ... */
	int (*poll)(struct api_pollfd *fds, size_t n, int timeout_ms);
};

extern const struct sock_api api_kernel;
extern const struct sock_api api_netcore;

/* Runs the whole suite over `api` (cmocka); returns the failure count. */
int behaviour_run(const struct sock_api *api);

#endif /* NETCORE_LIBCLIENT_BEHAVIOUR_API_H */
