/*
 * nci_shim.h: what the files of the LD_PRELOAD shim share (private).
 *
 * The shim turns AF_INET/AF_INET6 sockets of an unmodified program into
 * netcore sockets (libclient) while every other descriptor stays the
 * kernel's. Files: fdtab.c (the descriptor table, the client, fork),
 * sock.c (control calls, dup, fcntl, ioctl), io.c (data calls), wait.c
 * (poll, select), epoll.c, resolv.c + dns.c (name resolution).
 *
 * A netcore socket is a real descriptor (the "placeholder", an AF_UNIX
 * socket that is never connected) so the program's descriptor table,
 * dup, close-on-exec and select's FD_SETSIZE behave as usual; the table
 * maps the placeholder's number to a struct nci_sock, which several
 * numbers share after dup (like an open file description).
 */
#ifndef NETCORE_SHIM_NCI_SHIM_H
#define NETCORE_SHIM_NCI_SHIM_H

#include "libclient/netcore.h"

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* ------------------------------------------------- the real functions */

/* libc's definitions (dlsym RTLD_NEXT), resolved once. */
struct nci_real {
	int (*socket)(int, int, int);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int,
	                  const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *,
	                    socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int,
	                struct timespec *);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	int (*close)(int);
	int (*shutdown)(int, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *,
	             const sigset_t *);
	int (*epoll_create)(int);
	int (*epoll_create1)(int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_pwait)(int, struct epoll_event *, int, int,
	                   const sigset_t *);
};

const struct nci_real *nci_r(void);

/* --------------------------------------------------- the socket table */

struct nci_sock {
	struct nc_sock *s;
	unsigned int gen; /* nci_gen() when made: older ones are a parent's */
	int refs;         /* descriptors naming it + calls inside it */
	int domain, type;
	unsigned int eagain_seq; /* bumped at EAGAIN: EPOLLET's "new edge" */
};

/* False in a vfork child: the table is the parent's, hands off. */
bool nci_owner(void);

/* Which fork generation this process is (bumped in every child). */
unsigned int nci_gen(void);

/* The table entry behind fd with a reference the caller must put, or
 * NULL (a kernel descriptor). Cheap when fd is not ours. */
struct nci_sock *nci_get(int fd);
void nci_put(struct nci_sock *p);
/* One more reference on an entry the caller already holds. */
void nci_ref(struct nci_sock *p);
/* As nci_get, but NULL with errno EBADF for a parent's socket in a
 * forked child: callers return -1 then. *stale says which happened. */
struct nci_sock *nci_get_live(int fd, bool *stale);
/* True if fd is a netcore socket (live or stale). */
bool nci_is_ours(int fd);
/* How many descriptor numbers the table covers. */
unsigned int nci_table_cap(void);
/* True if fd names exactly p. */
bool nci_names(int fd, const struct nci_sock *p);

/* Makes fd name p (one more reference) and returns what it named. */
struct nci_sock *nci_install(int fd, struct nci_sock *p);
/* Forgets fd; returns what it named (its reference now the caller's). */
struct nci_sock *nci_remove(int fd);

/* A placeholder descriptor (flags: SOCK_CLOEXEC), -1 with errno. */
int nci_placeholder(int flags);

/* Wraps a new handle around a placeholder: fd or -1 with errno (the
 * handle is closed on failure). */
int nci_adopt(struct nc_sock *s, int domain, int type, int flags);

/* The client, attached at the first call (NETCORE_BROKER). NULL with
 * errno if there is none. */
struct nc_client *nci_client(void);
/* True if NETCORE_BROKER is set, i.e. INET sockets are netcore's. */
bool nci_enabled(void);

/* Sets errno and returns -1 (for the `return nci_fail(E);` idiom). */
int nci_fail(int err);

/* --------------------------------------------------------- waiting */

/*
 * poll(2) over a mix of kernel and netcore descriptors; ts NULL: for
 * ever; sigmask as ppoll. Returns as ppoll.
 */
int nci_poll_mixed(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                   const sigset_t *sigmask);

/* Clean-up when a descriptor closes that may be an epoll instance. */
void nci_epoll_forget(int fd);

/* ----------------------------------------------------------- dns */

#define NCI_DNS_MAX_ADDRS 16

struct nci_dns_answer {
	int count;
	int family[NCI_DNS_MAX_ADDRS]; /* AF_INET or AF_INET6 */
	unsigned char addr[NCI_DNS_MAX_ADDRS][16];
	int rcode; /* the response's RCODE */
};

/* A query for name (qtype 1 = A, 28 = AAAA) into buf; its length or -1. */
int nci_dns_query(unsigned short id, const char *name, int qtype,
                  unsigned char *buf, size_t cap);
/*
 * Parses an untrusted response to the query (id, qtype): 0 and the
 * addresses of the answer section that match qtype (following CNAMEs is
 * implied: only address records are taken), or -1 if it is malformed or
 * not the answer to that query.
 */
int nci_dns_parse(const unsigned char *msg, size_t len, unsigned short id,
                  int qtype, struct nci_dns_answer *out);

#endif
