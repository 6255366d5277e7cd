/*
 * The phy loop over the packet-fd backend: a phy driver process moves
 * packets between one end of a SOCK_SEQPACKET socketpair and the phy
 * region, while this test plays both the core (on the region) and the wire
 * (the other end of the pair). Also: the phy re-attaches after a core
 * restart, and a packet longer than the MTU is dropped and counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "services/phy_driver/backend.h"
#include "services/phy_driver/phy.h"

static const struct nc_phy_params params = {
    .ring_slots = 16, .buf_count = 64, .buf_size = 2048, .mtu = 1500};

struct fixture {
	struct nc_region region;
	struct nc_doorbell core_bell, phy_bell;
	struct nc_phy_core core;
	int wire; /* our end of the link */
	pid_t phy;
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int phy_child(struct fixture *f, int link_fd)
{
	signal(SIGTERM, on_term);
	struct nc_phy_dev dev;
	struct nc_phy_backend b;
	if (nc_phy_dev_open(&dev, &f->region, &f->phy_bell, &f->core_bell) ||
	    nc_phy_fdlink_open(&b, link_fd))
		return 1;
	int err = nc_phy_run(&dev, &b, &stop);
	b.ops->close(b.state);
	return err ? 1 : 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Services the core side until `done` or 5 s pass. */
static bool core_until(struct fixture *f, bool (*done)(struct fixture *))
{
	double give_up = now_s() + 5;
	while (!done(f)) {
		if (now_s() > give_up)
			return false;
		nc_phy_core_service(&f->core);
		nc_phy_core_flush(&f->core);
		nc_doorbell_wait(&f->core_bell, 10);
	}
	return true;
}

static bool link_is_up(struct fixture *f)
{
	return f->core.up;
}

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	int pair[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair), 0);
	assert_int_equal(nc_phy_region_create(&f.region, &params), 0);
	assert_int_equal(nc_doorbell_create(&f.core_bell), 0);
	assert_int_equal(nc_doorbell_create(&f.phy_bell), 0);
	assert_int_equal(
	    nc_phy_core_open(&f.core, &f.region, &f.core_bell, &f.phy_bell), 0);
	f.phy = fork();
	assert_true(f.phy >= 0);
	if (f.phy == 0) {
		close(pair[0]);
		_exit(phy_child(&f, pair[1]));
	}
	close(pair[1]);
	f.wire = pair[0];
	assert_true(core_until(&f, link_is_up));
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	kill(f->phy, SIGTERM);
	int status;
	waitpid(f->phy, &status, 0);
	close(f->wire);
	nc_phy_core_close(&f->core);
	nc_doorbell_close(&f->core_bell);
	nc_doorbell_close(&f->phy_bell);
	nc_region_close(&f->region);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return 0;
}

static struct nc_desc got;
static int got_n;

static bool received_one(struct fixture *f)
{
	got_n = nc_phy_core_rx(&f->core, &got, 1);
	return got_n == 1;
}

static void wire_to_core_and_back(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(send(f->wire, "from the wire", 13, 0), 13);
	assert_true(core_until(f, received_one));
	assert_int_equal(got.length, 13);
	assert_memory_equal(nc_phy_core_data(&f->core, &got), "from the wire",
	                    13);
	nc_phy_core_rx_release(&f->core, &got);

	assert_int_equal(nc_phy_core_tx(&f->core, "to the wire", 11), 0);
	nc_phy_core_flush(&f->core);
	struct pollfd p = {.fd = f->wire, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	char buf[64];
	assert_int_equal(recv(f->wire, buf, sizeof(buf), 0), 11);
	assert_memory_equal(buf, "to the wire", 11);
}

static bool oversize_counted(struct fixture *f)
{
	return f->core.control->phy.rx_drop_oversize == 1;
}

static void packet_longer_than_the_mtu_is_dropped(void **state)
{
	struct fixture *f = *state;
	static char big[1600];
	assert_int_equal(send(f->wire, big, sizeof(big), 0), sizeof(big));
	assert_true(core_until(f, oversize_counted));
	/* And the link still carries the next packet. */
	assert_int_equal(send(f->wire, "after", 5, 0), 5);
	assert_true(core_until(f, received_one));
	assert_int_equal(got.length, 5);
	nc_phy_core_rx_release(&f->core, &got);
}

static void phy_reattaches_after_a_core_restart(void **state)
{
	struct fixture *f = *state;
	nc_phy_core_close(&f->core);
	assert_int_equal(
	    nc_phy_core_open(&f->core, &f->region, &f->core_bell, &f->phy_bell),
	    0);
	assert_true(core_until(f, link_is_up));
	assert_int_equal(send(f->wire, "again", 5, 0), 5);
	assert_true(core_until(f, received_one));
	assert_memory_equal(nc_phy_core_data(&f->core, &got), "again", 5);
	nc_phy_core_rx_release(&f->core, &got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(wire_to_core_and_back, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        packet_longer_than_the_mtu_is_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(phy_reattaches_after_a_core_restart,
	                                    setup, teardown),
	};
	return cmocka_run_group_tests_name("phy", tests, NULL, NULL);
}
