/*
 * data_server: the kernel side of the fault workload.
 *
 * A single-threaded poll loop, run in the test's network namespace on the
 * kernel side of the TUN. It listens on the kernel-side IPv4 and IPv6
 * addresses; every connection starts with a struct ff_req (stream.h):
 *
 * - FF_REQ_DOWNLOAD: sends bytes [offset, offset + length) of the stream,
 *   then closes (FIN). A client that lost its connection asks again from
 *   the offset it has verified, so nothing is ever replayed or skipped.
 * - FF_REQ_CALLBACK: closes the request connection, connects to the
 *   stack's IPv4 address at the requested port and sends a 16-byte
 *   preamble (stream, offset) and then the bytes, so the client can tell
 *   a late callback of an earlier probe from the one it waits for.
 *
 * Connection states: reading the request, connecting (callbacks), sending.
 * Everything is non-blocking. A connection that makes no progress for
 * FF_SERVER_IDLE_MS is dropped: after a core restart the old connections'
 * peer is gone and only a reset or this timeout ends them. A full table
 * refuses new connections by closing them (clients see that as a lost
 * connection, which the table is sized never to cause).
 *
 * What it does not do: check who connects, receive data, or keep any
 * state across connections. It never exits on its own; it stops when
 * *stop becomes non-zero (its SIGTERM handler sets it) or it is killed.
 */
#ifndef NETCORE_TESTS_FAULT_DATA_SERVER_H
#define NETCORE_TESTS_FAULT_DATA_SERVER_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#define FF_SERVER_IDLE_MS 15000

/*
 * Serves on the listening sockets lfds[0..n) until *stop. Callbacks go to
 * callback_addr (an IPv4 address in text). Returns 0, or -errno if the
 * loop could not run at all.
 */
int ff_server_run(const int *lfds, int n, const char *callback_addr,
                  volatile sig_atomic_t *stop);

/*
 * Listens on addr4:port and [addr6]:port in the calling thread's network
 * namespace (addr6 may be NULL), then forks the server, which dies with
 * its parent. The sockets listen before this returns, so a client may
 * connect at once. Returns the server's pid, or -errno.
 */
pid_t ff_server_start(const char *addr4, const char *addr6, uint16_t port,
                      const char *callback_addr);

/* SIGTERM, then SIGKILL if it has not gone within a second; reaped. */
void ff_server_stop(pid_t pid);

#endif
