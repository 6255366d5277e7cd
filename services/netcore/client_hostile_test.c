/*
 * Hostile clients and client removal: a client that breaks its region
 * (a forged descriptor, an impossible ring index) is disconnected alone,
 * its sockets closed toward their peers, while another client keeps
 * working; CLIENT_REMOVE closes every socket and gives back every fd and
 * mapping; a removed client still sending its last bytes is checked as
 * ever; the fd channel refuses malformed records. Manual mode on a
 * virtual clock; see client_harness.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <ck_ring.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "services/netcore/client_harness.h"
#include "services/netcore/ctl.h"
#include "services/netcore/nci.h"
#include "services/phy_driver/phy_link.h"

#define G_PORT 7400

/* The good client: a listener every case connects to, and its own
 * connection to the echo service to prove it still works. */
static struct th_client g;
static int g_listener;

static int setup(void **state)
{
	(void)state;
	th_setup();
	assert_int_equal(th_attach(&g), 0);
	g_listener = th_socket(&g, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&g, g_listener, th_addr("127.0.0.1", G_PORT)),
	                 0);
	assert_int_equal(th_listen(&g, g_listener, 8), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(th_remove(&g), 0);
	th_client_close(&g);
	th_teardown();
	return 0;
}

/* A connection from client c to g's listener; returns g's end. */
static int connect_to_g(struct th_client *c, int s)
{
	assert_int_equal(th_connect(c, s, th_addr("127.0.0.1", G_PORT)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(&g, g_listener, NC_EV_ACCEPTABLE, 1000));
	int a = th_accept(&g, g_listener, NULL);
	assert_true(a >= 0);
	assert_true(th_wait_events(c, s, NC_EV_CONNECTED, 1000));
	return a;
}

/* g still moves bytes, on a fresh connection to the echo service. */
static void g_still_works(void)
{
	int s = th_socket(&g, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&g, s, th_addr("127.0.0.1", TH_ECHO_PORT)),
	                 -EINPROGRESS);
	assert_true(th_wait_events(&g, s, NC_EV_CONNECTED, 1000));
	th_transfer(&g, s, &g, s, 20000);
	assert_int_equal(th_close(&g, s), 0);
}

/* Waits for EOF or an error on g's end of a connection. */
static int g_end_closed(int a)
{
	static uint8_t buf[16 * 4096]; /* a full rx ring of th_params */
	bool eof = false;
	for (int i = 0; i < 200; i++) {
		th_recv(&g, a, buf, sizeof(buf), &eof);
		if (eof)
			return 0;
		if (th_state(&g, a).error != 0)
			return th_state(&g, a).error;
		th_advance(10);
	}
	fail_msg("g's end never closed");
	return -1;
}

/* What a case must give back: fds, mappings, the core's counters. */
struct baseline {
	int fds, maps;
	struct nc_core_counters c;
};

static struct baseline baseline_now(void)
{
	return (struct baseline){
	    .fds = th_open_fds(), .maps = th_client_maps(), .c = th_counters()};
}

/* Every fd and mapping given back, no socket left behind. */
static void baseline_restored(const struct baseline *b)
{
	assert_int_equal(th_open_fds(), b->fds);
	assert_int_equal(th_client_maps(), b->maps);
	assert_int_equal(th_counters().client_sockets, b->c.client_sockets);
}

/* ------------------------------------------------------------ forgery */

enum forgery {
	TX_WRONG_OFFSET, /* not the start of a buffer */
	TX_WRONG_AUX,    /* aux names another channel */
	TX_TOO_LONG,     /* length beyond the buffer */
	TX_NEVER_LENT,   /* a buffer the core holds */
	TX_RX_BUFFER,    /* a received buffer sent as if it were TX */
	DONE_TX_BUFFER,  /* a TX buffer "returned" as received */
	DONE_TWICE,      /* the same received buffer returned twice */
	TX_RING_INDEX,   /* p_tail beyond the ring */
	DONE_RING_INDEX, /* p_tail beyond the ring */
	FREE_RING_INDEX, /* c_head ahead of the core's p_tail */
};

static struct nc_desc take_free(struct th_client *h)
{
	struct nc_desc d;
	assert_true(th_take_free(h, &d));
	return d;
}

static void push(struct nc_ring *ring, struct nc_desc d)
{
	assert_int_equal(nc_ring_enqueue_batch(ring, &d, 1), 1);
}

/* A buffer g sent to h, taken off h's rx ring and kept. */
static struct nc_desc received(struct th_client *h, int s, int a)
{
	assert_int_equal(th_send(&g, a, "y", 1), 1);
	assert_true(th_wait_events(h, s, NC_EV_READABLE, 1000));
	struct nc_desc d;
	assert_int_equal(nc_ring_dequeue_batch(&h->rx[s], &d, 1), 1);
	return d;
}

static void forge(struct th_client *h, int s, int a, enum forgery how)
{
	struct nc_desc d;
	uint64_t last_buf =
	    h->l.pool + (uint64_t)(h->p.buf_count - 1) * h->p.buf_size;
	switch (how) {
	case TX_WRONG_OFFSET:
		d = take_free(h);
		d.offset += 64;
		d.length = 10;
		d.aux = (uint16_t)s;
		push(&h->tx[s], d);
		break;
	case TX_WRONG_AUX:
		d = take_free(h);
		d.length = 10;
		d.aux = (uint16_t)(s + 1);
		push(&h->tx[s], d);
		break;
	case TX_TOO_LONG:
		d = take_free(h);
		d.length = h->p.buf_size + 1;
		d.aux = (uint16_t)s;
		push(&h->tx[s], d);
		break;
	case TX_NEVER_LENT:
		d = (struct nc_desc){
		    .offset = last_buf, .length = 10, .aux = s};
		push(&h->tx[s], d);
		break;
	case TX_RX_BUFFER:
		d = received(h, s, a);
		push(&h->tx[s], d);
		break;
	case DONE_TX_BUFFER:
		d = take_free(h);
		d.aux = (uint16_t)s;
		push(&h->done_ring, d);
		break;
	case DONE_TWICE:
		d = received(h, s, a);
		push(&h->done_ring, d);
		th_pump();
		push(&h->done_ring, d);
		break;
	case TX_RING_INDEX:
		h->tx[s].shared->p_tail += 1000;
		break;
	case DONE_RING_INDEX:
		h->done_ring.shared->p_tail += 1000;
		break;
	case FREE_RING_INDEX:
		/* Noticed when the core next lends a TX buffer back. */
		h->free_ring.shared->c_head = h->free_ring.shared->p_tail + 5;
		d = take_free(h);
		d.length = 1;
		d.aux = (uint16_t)s;
		push(&h->tx[s], d);
		break;
	}
	th_kick(h);
}

static void a_forger_is_disconnected_alone(enum forgery how)
{
	struct baseline before = baseline_now();
	struct th_client h;
	assert_int_equal(th_attach(&h), 0);
	int s = th_socket(&h, AF_INET, SOCK_STREAM);
	int a = connect_to_g(&h, s);
	th_transfer(&h, s, &g, a, 5000); /* fine so far */

	forge(&h, s, a, how);
	th_pump();
	assert_int_equal(th_counters().clients_broken,
	                 before.c.clients_broken + 1);
	assert_int_equal(th_counters().clients, before.c.clients);
	/* Its requests are refused; its region says its sockets are dead. */
	assert_int_equal(th_socket(&h, AF_INET, SOCK_DGRAM), -ECONNRESET);
	struct nc_sock_state st = th_state(&h, s);
	assert_int_equal(st.phase, NC_SS_CLOSED);
	assert_int_equal(st.error, ECONNRESET);
	assert_true(st.events & NC_EV_HUP);
	/* Its peer sees the connection end; g goes on. */
	int err = g_end_closed(a);
	assert_true(err == 0 || err == ECONNRESET);
	assert_int_equal(th_close(&g, a), 0);
	g_still_works();

	assert_int_equal(th_remove(&h),
	                 0); /* the broker's, after -ECONNRESET */
	th_client_close(&h);
	baseline_restored(&before);
}

static void forged_offset(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(TX_WRONG_OFFSET);
}

static void forged_aux(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(TX_WRONG_AUX);
}

static void forged_length(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(TX_TOO_LONG);
}

static void forged_never_lent(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(TX_NEVER_LENT);
}

static void forged_rx_as_tx(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(TX_RX_BUFFER);
}

static void forged_tx_as_done(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(DONE_TX_BUFFER);
}

static void forged_double_return(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(DONE_TWICE);
}

static void forged_tx_index(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(TX_RING_INDEX);
}

static void forged_done_index(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(DONE_RING_INDEX);
}

static void forged_free_index(void **state)
{
	(void)state;
	a_forger_is_disconnected_alone(FREE_RING_INDEX);
}

/* A gone client's region may still be written (a forked child keeps the
 * mapping): the core, still sending its last bytes, checks them as ever.
 * A forgery then drops it at once, and the cut stream is reset. */
static void a_gone_client_forging_while_its_bytes_drain(void **state)
{
	(void)state;
	struct baseline before = baseline_now();
	struct th_client h;
	assert_int_equal(th_attach(&h), 0);
	int s = th_socket(&h, AF_INET, SOCK_STREAM);
	int a = connect_to_g(&h, s);
	/* g does not read: h's bytes back up onto its ring. */
	static uint8_t chunk[4096];
	for (int idle = 0, i = 0; idle < 20 && i < 4096; i++) {
		idle = th_send(&h, s, chunk, sizeof(chunk)) > 0 ? 0 : idle + 1;
		th_advance(10);
	}
	assert_true(nc_ring_ready(&h.tx[s]) > 0);
	assert_int_equal(th_remove(&h), 0); /* it drains, out of the table */
	assert_int_equal(th_counters().clients, before.c.clients + 1);

	forge(&h, s, a, TX_RING_INDEX);
	assert_int_equal(g_end_closed(a), ECONNRESET); /* g reads: h drains */
	assert_int_equal(th_counters().clients, before.c.clients);
	assert_int_equal(th_close(&g, a), 0);
	g_still_works();
	th_client_close(&h);
	baseline_restored(&before);
}

/* ------------------------------------------------------------ removal */

static void client_remove_closes_every_socket_and_reclaims(void **state)
{
	(void)state;
	struct baseline before = baseline_now();
	struct th_client r;
	assert_int_equal(th_attach(&r), 0);
	int l = th_socket(&r, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&r, l, th_addr("127.0.0.1", 7301)), 0);
	assert_int_equal(th_listen(&r, l, 4), 0);
	int u = th_socket(&r, AF_INET, SOCK_DGRAM);
	assert_int_equal(th_bind(&r, u, th_addr("127.0.0.1", 7302)), 0);
	int quiet = th_socket(&r, AF_INET, SOCK_STREAM);
	int a_quiet = connect_to_g(&r, quiet);
	int loud = th_socket(&r, AF_INET, SOCK_STREAM);
	int a_loud = connect_to_g(&r, loud);
	assert_int_equal(th_send(&g, a_loud, "unread", 6), 6);
	assert_true(th_wait_events(&r, loud, NC_EV_READABLE, 1000));
	int queued = th_socket(&r, AF_INET, SOCK_STREAM);
	assert_int_equal(th_connect(&r, queued, th_addr("127.0.0.1", 7301)),
	                 -EINPROGRESS); /* never accepted */
	th_advance(20);
	assert_int_equal(th_state(&r, l).accept_queue, 1);

	assert_int_equal(th_remove(&r), 0);
	assert_int_equal(g_end_closed(a_quiet), 0);         /* FIN */
	assert_int_equal(g_end_closed(a_loud), ECONNRESET); /* RST */
	assert_int_equal(th_socket(&r, AF_INET, SOCK_DGRAM), -ECONNRESET);
	assert_int_equal(th_remove(&r), 0); /* idempotent */
	assert_int_equal(th_close(&g, a_quiet), 0);
	assert_int_equal(th_close(&g, a_loud), 0);
	assert_int_equal(th_counters().client_sockets, before.c.client_sockets);
	assert_int_equal(th_counters().clients, before.c.clients);
	assert_int_equal(th_counters().clients_removed,
	                 before.c.clients_removed + 1);

	/* Its ports are free again. */
	int u2 = th_socket(&g, AF_INET, SOCK_DGRAM);
	assert_int_equal(th_bind(&g, u2, th_addr("127.0.0.1", 7302)), 0);
	int l2 = th_socket(&g, AF_INET, SOCK_STREAM);
	assert_int_equal(th_bind(&g, l2, th_addr("127.0.0.1", 7301)), 0);
	assert_int_equal(th_close(&g, u2), 0);
	assert_int_equal(th_close(&g, l2), 0);

	th_client_close(&r);
	baseline_restored(&before);
}

/* ------------------------------------------------------- fd channel */

static int add_with(struct th_client *c, const int *fds, int n, size_t len)
{
	th_send_record(c->id, 1, fds, n, len);
	return th_client_add(c);
}

static int pipe_end(void)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	return p[1];
}

static int unsealed_region(const struct th_client *c)
{
	/* A copy of a good region's bytes, without seals. */
	int fd = memfd_create("netcore-client", MFD_CLOEXEC);
	off_t size = lseek(c->memfd, 0, SEEK_END);
	assert_int_equal(ftruncate(fd, size), 0);
	void *src =
	    mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, c->memfd, 0);
	assert_true(src != MAP_FAILED);
	assert_int_equal(pwrite(fd, src, 4096, 0), 4096);
	munmap(src, (size_t)size);
	return fd;
}

static void the_fd_channel_refuses_bad_records(void **state)
{
	(void)state;
	int fds_before = th_open_fds();
	struct nc_core_counters before = th_counters();
	struct nc_client_params p;
	th_params(&p);
	struct th_client c;
	assert_int_equal(th_make_client(&c, &p), 0);
	int good[4] = {c.memfd, c.client_bell.fd, c.core_bell.fd,
	               c.core_bell.fd};

	assert_int_equal(th_client_add(&c), -ENOENT); /* no record */
	assert_int_equal(add_with(&c, good, 2, 8), -ENOENT);
	assert_int_equal(add_with(&c, good, 4, 8), -ENOENT);
	assert_int_equal(add_with(&c, good, 3, 12), -ENOENT);
	assert_int_equal(add_with(&c, good, 3, 4), -ENOENT);
	assert_int_equal(th_counters().fds_refused, before.fds_refused + 4);

	int pipe_bell[3] = {c.memfd, c.client_bell.fd, pipe_end()};
	assert_int_equal(add_with(&c, pipe_bell, 3, 8), -EINVAL);
	close(pipe_bell[2]);
	struct nc_region phy;
	struct nc_phy_params pp;
	nc_phy_params_default(&pp);
	pp.buf_count = 4;
	assert_int_equal(nc_phy_region_create(&phy, &pp), 0);
	int wrong_kind[3] = {phy.fd, c.client_bell.fd, c.core_bell.fd};
	assert_int_equal(add_with(&c, wrong_kind, 3, 8), -EINVAL);
	nc_region_close(&phy);
	int unsealed[3] = {unsealed_region(&c), c.client_bell.fd,
	                   c.core_bell.fd};
	assert_int_equal(add_with(&c, unsealed, 3, 8), -EINVAL);
	close(unsealed[0]);

	assert_int_equal(add_with(&c, good, 3, 8), 0);
	assert_int_equal(th_client_add(&c), -EEXIST);
	assert_int_equal(th_remove(&c), 0);
	th_client_close(&c);
	assert_int_equal(th_open_fds(), fds_before);
}

static void a_second_fd_connection_works_and_is_closed(void **state)
{
	(void)state;
	int fds_before = th_open_fds();
	struct nc_client_params p;
	th_params(&p);
	struct th_client c;
	assert_int_equal(th_make_client(&c, &p), 0);
	/* A restarted broker connects anew. */
	int fd = th_fd_channel();
	int fds[3] = {c.memfd, c.client_bell.fd, c.core_bell.fd};
	th_send_record_to(fd, c.id, 1, fds, 3, 8);
	assert_int_equal(th_client_add(&c), 0);
	/* It hangs up: the core closes its end once it wakes for it. */
	close(fd);
	assert_int_equal(nc_core_wait(th_core(), 1000), 1);
	th_pump();
	assert_int_equal(th_remove(&c), 0);
	th_client_close(&c);
	assert_int_equal(th_open_fds(), fds_before);
}

static void a_message_without_a_header_hangs_up(void **state)
{
	(void)state;
	struct nci_ctl *ctl = nci_core_ctl(th_core());
	struct nc_msg_rep rep;
	bool hang_up = false;
	nci_ctl_handle(ctl, "abc", 3, &rep, &hang_up);
	assert_true(hang_up);
	struct nc_msg_req q;
	memset(&q, 0, sizeof(q));
	nc_msg_init(&q.hdr, NC_MSG_SOCKET, 1, sizeof(q) - 1);
	nci_ctl_handle(ctl, &q, sizeof(q) - 1, &rep, &hang_up);
	assert_false(hang_up);
	assert_int_equal(rep.result, -EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(forged_offset),
	    cmocka_unit_test(forged_aux),
	    cmocka_unit_test(forged_length),
	    cmocka_unit_test(forged_never_lent),
	    cmocka_unit_test(forged_rx_as_tx),
	    cmocka_unit_test(forged_tx_as_done),
	    cmocka_unit_test(forged_double_return),
	    cmocka_unit_test(forged_tx_index),
	    cmocka_unit_test(forged_done_index),
	    cmocka_unit_test(forged_free_index),
	    cmocka_unit_test(a_gone_client_forging_while_its_bytes_drain),
	    cmocka_unit_test(client_remove_closes_every_socket_and_reclaims),
	    cmocka_unit_test(the_fd_channel_refuses_bad_records),
	    cmocka_unit_test(a_second_fd_connection_works_and_is_closed),
	    cmocka_unit_test(a_message_without_a_header_hangs_up),
	};
	return cmocka_run_group_tests_name("client_hostile", tests, setup,
	                                   teardown);
}
