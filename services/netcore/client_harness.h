/*
 * Test harness for the core's client sockets: one core in manual mode on
 * a virtual clock (with the echo service on port 7), a test-side broker
 * (nng req dialing the core's control URL in a temporary directory, plus
 * the fd channel), and test-side clients that map their region and speak
 * the ring protocol directly, as libclient would.
 *
 * Nothing sleeps: lwIP's time moves only when a test advances the clock,
 * and every wait for nng's threads is a poll(2) on the fds involved,
 * bounded (a test that would hang fails with the reason instead).
 *
 * lwIP is a process-wide singleton: th_setup() once per test binary.
 */
#ifndef NETCORE_CLIENT_HARNESS_H
#define NETCORE_CLIENT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/client_region.h"
#include "proto/msg.h"
#include "services/netcore/core.h"
#include "shm/shm.h"

#define TH_ECHO_PORT 7
#define TH_MAX_SOCKS 8

struct th_client {
	uint32_t id;
	int memfd;                      /* the broker's copies */
	struct nc_doorbell client_bell; /* we sleep on it */
	struct nc_doorbell core_bell;   /* we ring it */
	struct nc_region region;        /* our mapping */
	struct nc_client_params p;
	struct nc_client_layout l;
	struct nc_client_control *control;
	struct nc_ring free_ring; /* consumer */
	struct nc_ring done_ring; /* producer */
	struct nc_ring tx[TH_MAX_SOCKS], rx[TH_MAX_SOCKS];
	uint32_t gen[TH_MAX_SOCKS];
	struct nc_desc spare[64]; /* free buffers taken, not yet filled */
	unsigned spare_n;
	bool mapped;
};

void th_setup(void);
void th_teardown(void);
/* Instead: the core in a forked child, in automatic mode (nc_core_run on
 * the real clock); th_pump does nothing and every wait is on a doorbell
 * or a socket. th_teardown_child stops it (SIGTERM) and returns its exit
 * status. */
void th_setup_child(void);
int th_teardown_child(void);
struct nc_core *th_core(void);
struct nc_core_counters th_counters(void);

/* Polls until the core says nothing is left (bounded). */
void th_pump(void);
/* Virtual time passes in 10 ms steps, pumping after each. */
void th_advance(uint32_t ms);
uint64_t th_now_ms(void); /* the virtual clock */

/* Control requests through nng. th_rpc fills the header (next id) and
 * returns the reply's result; th_rpc_raw sends bytes as they are. */
int th_rpc(struct nc_msg_req *q, struct nc_msg_rep *r);
void th_rpc_raw(const void *bytes, size_t len, struct nc_msg_rep *r);
struct nc_msg_req th_req(const struct th_client *c, enum nc_msg_type type,
                         int sock);

/* The broker's side of an attach. */
void th_params(struct nc_client_params *p); /* 8 sockets, 16 slots, 64 x 4K */
int th_make_client(struct th_client *c, const struct nc_client_params *p);
void th_send_record(uint32_t id, uint32_t gen, const int *fds, int nfds,
                    size_t len);
/* Another connection to the fd channel (a restarted broker), and a
 * record sent on it. */
int th_fd_channel(void);
void th_send_record_to(int sock, uint32_t id, uint32_t gen, const int *fds,
                       int nfds, size_t len);
int th_client_add(struct th_client *c);
int th_attach(struct th_client *c); /* make + record + add + map */
int th_remove(struct th_client *c);
void th_client_close(struct th_client *c); /* the test side's copies */

/* Socket requests. */
struct nc_msg_addr th_addr(const char *ip, uint16_t port);
int th_socket(struct th_client *c, int domain, int type);
int th_bind(struct th_client *c, int s, struct nc_msg_addr a);
int th_listen(struct th_client *c, int s, int backlog);
int th_connect(struct th_client *c, int s, struct nc_msg_addr a);
int th_accept(struct th_client *c, int s, struct nc_msg_addr *peer);
int th_shutdown(struct th_client *c, int s, int how);
int th_close(struct th_client *c, int s);
int th_setopt(struct th_client *c, int s, int level, int name, int v);
int th_getopt(struct th_client *c, int s, int level, int name, int *v);
int th_name(struct th_client *c, int s, bool peer, struct nc_msg_addr *a);

/* The data path, as a client. */
struct nc_sock_state th_state(const struct th_client *c, int s);
bool th_take_free(struct th_client *c, struct nc_desc *d);
void th_kick(struct th_client *c); /* wake-up protocol toward the core */
size_t th_send(struct th_client *c, int s, const void *data, size_t len);
size_t th_recv(struct th_client *c, int s, void *out, size_t cap, bool *eof);
bool th_sendto(struct th_client *c, int s, const struct nc_msg_addr *to,
               const void *data, size_t len);
long th_recvfrom(struct th_client *c, int s, struct nc_msg_addr *from,
                 void *out, size_t cap);

/* Waits (virtual time, pumping) until the socket's events include all of
 * `mask`; false after `max_ms`. */
bool th_wait_events(struct th_client *c, int s, uint32_t mask, uint32_t max_ms);
/* Moves `len` bytes from socket `from` of one client to `to` of another
 * (or the same) and checks every byte. */
void th_transfer(struct th_client *a, int from, struct th_client *b, int to,
                 size_t len);

/* Plays the phy: attaches to the core's phy region, so the link to the
 * TUN side (10.77.0.1, fd77::1) is up but nothing answers there. Then
 * th_phy_take() copies the next frame the stack sent into `out` and
 * returns its length, or 0 if there is none. */
void th_phy_up(void);
size_t th_phy_take(void *out, size_t cap);

/* Open fds 0..1023 and mappings of client regions, for leak checks. */
int th_open_fds(void);
int th_client_maps(void);

#endif /* NETCORE_CLIENT_HARNESS_H */
