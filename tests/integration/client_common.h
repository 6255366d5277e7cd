/*
 * client_common: what the libclient integration tests share
 * (client_bulk_test, client_accept_test, client_udp_test).
 *
 * Shape of those tests: the parent starts a testbed with sockets
 * (phy driver, core, broker), moves into the testbed's namespace and plays
 * the kernel side there; the libclient side runs in a forked child that
 * unshares into a brand-new, EMPTY network namespace (no interface but a
 * down loopback) and checks that it cannot reach the kernel side on its own
 * before it attaches to the broker. Whatever it moves can only have gone
 * through netcore.
 *
 * Everything is bounded: the child is watched through a pidfd, waited for
 * until a deadline and then SIGKILLed and reaped by its pid; every wait of
 * the parent is a poll with a deadline that also wakes when the child dies.
 */
#ifndef NETCORE_TESTS_INTEGRATION_CLIENT_COMMON_H
#define NETCORE_TESTS_INTEGRATION_CLIENT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define CT_MIB (1024ull * 1024)

int64_t ct_now_ms(void);
double ct_now_s(void);

/* ------------------------------------------------------------- the child */

struct ct_child {
	pid_t pid;     /* 0: none (or reaped) */
	int pidfd;     /* readable once the child has exited */
	int report_fd; /* parent's read end of the child's report pipe */
	int status;    /* what ct_child_finish returned, once reaped */
};

/*
 * The child's body: runs in an empty network namespace, writes what it
 * has to say on report_fd, returns its exit code (0: success).
 */
typedef int (*ct_child_fn)(void *arg, int report_fd);

/*
 * Forks a child that dies with the parent (PR_SET_PDEATHSIG), unshares
 * its network namespace, checks that 10.77.0.1 and fd77::1 are
 * unreachable from there with its own kernel (exit 90 otherwise), then
 * runs fn. Call it while the parent has no other threads. 0 or -errno.
 */
int ct_child_start(struct ct_child *c, ct_child_fn fn, void *arg);

/* True once the child has exited (or was never started). */
bool ct_child_exited(const struct ct_child *c);

/*
 * Waits for the child until deadline_ms (ct_now_ms() clock); a child still
 * running then is SIGKILLed. Reaps it by pid and closes the pidfd (not the
 * report pipe). Returns its exit code, 128 + signal, or -ETIMEDOUT if it
 * had to be killed. Idempotent: once reaped it returns the same value.
 */
int ct_child_finish(struct ct_child *c, int64_t deadline_ms);

/* Finishes the child (if any) and closes the report pipe. */
void ct_child_cleanup(struct ct_child *c);

/*
 * Waits until fd is readable (events POLLIN) or writable (POLLOUT), or
 * the child (pidfd, may be -1) exited, or deadline_ms. 0: ready;
 * -ECHILD: the child is gone and fd is not ready; -ETIMEDOUT.
 */
int ct_wait_fd(int fd, short events, int pidfd, int64_t deadline_ms);

/* Reads exactly len bytes from a (blocking or not) fd, with a deadline.
 * 0, -EPIPE on EOF first, -ETIMEDOUT, or -errno. */
int ct_read_full(int fd, void *buf, size_t len, int64_t deadline_ms);
/* Writes all of buf to a pipe/socket; 0 or -errno. */
int ct_write_full(int fd, const void *buf, size_t len);

/* --------------------------------------------------------------- data */

/*
 * A deterministic byte stream per seed, addressable by offset: the bytes
 * at [offset, offset+len) are the same however the stream is cut.
 */
void ct_pattern(uint64_t seed, uint64_t offset, void *buf, size_t len);
/* Index of the first byte of buf that differs from the stream, or len. */
size_t ct_pattern_check(uint64_t seed, uint64_t offset, const void *buf,
                        size_t len);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void ct_hex(const uint8_t *data, size_t n, char *out);

/* ------------------------------------------------------ kernel sockets */

/* addr/port as a sockaddr of family (AF_INET or AF_INET6). */
socklen_t ct_sockaddr(int family, const char *addr, uint16_t port,
                      struct sockaddr_storage *out);
/* "a.b.c.d:p" or "[v6]:p" (out: at least 64 bytes). */
void ct_addr_str(const struct sockaddr *sa, char *out, size_t cap);
/* True if sa is family/addr/port exactly (addr: text form). */
bool ct_addr_is(const struct sockaddr *sa, socklen_t len, int family,
                const char *addr, uint16_t port);
/* Port of an AF_INET/AF_INET6 sockaddr, host order. */
uint16_t ct_addr_port(const struct sockaddr *sa);

/* A kernel TCP listener on addr:port (IPv6: V6ONLY), SO_REUSEADDR. -errno
 * on failure. */
int ct_tcp_listen(int family, const char *addr, uint16_t port, int backlog);
/* bind(), waiting (bounded, 5 s) while the address is not usable yet
 * (EADDRNOTAVAIL: an IPv6 address the phy driver has just set). */
int ct_bind(int fd, const struct sockaddr *sa, socklen_t len);
/* SO_RCVTIMEO and SO_SNDTIMEO on a kernel socket. */
void ct_set_timeouts(int fd, int seconds);

/* ---------------------------------------------------------- broker config */

/* Writes text to a new file under /tmp; path (at least 64 bytes) gets its
 * name. 0 or -errno. The caller unlinks it. */
int ct_write_temp(const char *text, char *path, size_t cap);

#endif
