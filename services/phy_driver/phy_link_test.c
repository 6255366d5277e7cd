/*
 * phy_link behaviour, both endpoints in one process: the handshake, packets
 * each way, restarts of either side, and a phy that breaks the rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "services/phy_driver/phy_link.h"

struct fixture {
	struct nc_region region;
	struct nc_doorbell core_bell, phy_bell;
	struct nc_phy_core core;
	struct nc_phy_dev dev;
};

static const struct nc_phy_params small = {
    .ring_slots = 16, .buf_count = 32, .buf_size = 2048, .mtu = 1500};

static void attach_both(struct fixture *f)
{
	nc_phy_dev_request(&f->dev);
	assert_int_equal(nc_phy_dev_granted(&f->dev), 0);
	assert_true(nc_phy_core_service(&f->core));
	assert_int_equal(nc_phy_dev_granted(&f->dev), 1);
}

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(nc_phy_region_create(&f.region, &small), 0);
	assert_int_equal(nc_doorbell_create(&f.core_bell), 0);
	assert_int_equal(nc_doorbell_create(&f.phy_bell), 0);
	assert_int_equal(
	    nc_phy_core_open(&f.core, &f.region, &f.core_bell, &f.phy_bell), 0);
	assert_int_equal(
	    nc_phy_dev_open(&f.dev, &f.region, &f.phy_bell, &f.core_bell), 0);
	attach_both(&f);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nc_phy_core_close(&f->core);
	nc_doorbell_close(&f->core_bell);
	nc_doorbell_close(&f->phy_bell);
	nc_region_close(&f->region);
	return 0;
}

static void phy_receives(struct fixture *f, const char *pkt)
{
	struct nc_desc d;
	char *buf = nc_phy_dev_rx_buffer(&f->dev, &d);
	assert_non_null(buf);
	memcpy(buf, pkt, strlen(pkt));
	nc_phy_dev_rx_commit(&f->dev, &d, (uint32_t)strlen(pkt));
}

static void params_round_trip_and_bad_params_are_refused(void **state)
{
	struct fixture *f = *state;
	struct nc_phy_params p;
	assert_int_equal(nc_phy_region_params(&f->region, &p), 0);
	assert_memory_equal(&p, &small, sizeof(p));
	struct nc_phy_layout l;
	struct nc_phy_params bad = small;
	bad.ring_slots = 12;
	assert_int_equal(nc_phy_layout(&bad, &l), -NC_ELAYOUT);
	bad = small;
	bad.mtu = bad.buf_size + 1;
	assert_int_equal(nc_phy_layout(&bad, &l), -NC_ELAYOUT);
	/* A header claiming more than the region holds is refused. */
	nc_region_header(&f->region)->layout[1] = 1u << 20;
	assert_int_equal(nc_phy_region_params(&f->region, &p), -NC_ELAYOUT);
}

static void packets_flow_from_phy_to_core_and_back(void **state)
{
	struct fixture *f = *state;
	phy_receives(f, "first");
	phy_receives(f, "second");
	assert_int_equal(nc_phy_dev_flush(&f->dev), 0);

	struct nc_desc got[4];
	assert_int_equal(nc_phy_core_rx(&f->core, got, 4), 2);
	assert_int_equal(got[0].length, 5);
	assert_memory_equal(nc_phy_core_data(&f->core, &got[0]), "first", 5);
	assert_memory_equal(nc_phy_core_data(&f->core, &got[1]), "second", 6);
	nc_phy_core_rx_release(&f->core, &got[0]);
	nc_phy_core_rx_release(&f->core, &got[1]);

	assert_int_equal(nc_phy_core_tx(&f->core, "reply", 5), 0);
	nc_phy_core_flush(&f->core);
	struct nc_desc out[4];
	assert_int_equal(nc_phy_dev_tx(&f->dev, out, 4), 1);
	assert_int_equal(out[0].length, 5);
	assert_memory_equal(nc_phy_dev_data(&f->dev, &out[0]), "reply", 5);
	nc_phy_dev_tx_done(&f->dev, &out[0]);
	assert_int_equal(nc_phy_dev_flush(&f->dev), 0);
	nc_phy_core_flush(&f->core);
	/* Every buffer is accounted for: lent on rx_free or free. */
	assert_int_equal(f->core.pool.lent_count + f->core.pool.free_count,
	                 small.buf_count);
}

static void oversized_packet_is_dropped_and_counted(void **state)
{
	struct fixture *f = *state;
	static char big[2000];
	assert_int_equal(nc_phy_core_tx(&f->core, big, sizeof(big)), -ENOBUFS);
	assert_int_equal(f->core.counters.tx_drop_no_buffer, 1);
}

static void phy_restart_takes_back_every_buffer(void **state)
{
	struct fixture *f = *state;
	phy_receives(f, "lost in flight");
	assert_int_equal(nc_phy_core_tx(&f->core, "also lost", 9), 0);
	nc_phy_core_flush(&f->core);
	assert_true(f->core.pool.lent_count > 0);

	/* A new phy process comes up and asks again. */
	struct nc_phy_dev fresh;
	assert_int_equal(
	    nc_phy_dev_open(&fresh, &f->region, &f->phy_bell, &f->core_bell),
	    0);
	nc_phy_dev_request(&fresh);
	assert_true(nc_phy_core_service(&f->core));
	assert_int_equal(nc_phy_dev_granted(&fresh), 1);
	assert_int_equal(f->core.counters.handshakes, 2);
	/* Nothing from before the restart is delivered; all buffers are
	 * either free or freshly lent on rx_free. */
	struct nc_desc got[4];
	assert_int_equal(nc_phy_core_rx(&f->core, got, 4), 0);
	assert_int_equal(nc_phy_dev_tx(&fresh, got, 4), 0);
	assert_int_equal(f->core.pool.lent_count,
	                 (uint32_t)nc_ring_ready(&fresh.rx_free));
	assert_int_equal(f->core.pool.lent_count + f->core.pool.free_count,
	                 small.buf_count);
}

static void core_restart_is_seen_by_the_phy(void **state)
{
	struct fixture *f = *state;
	assert_false(nc_phy_dev_core_restarted(&f->dev));
	struct nc_phy_core again;
	assert_int_equal(
	    nc_phy_core_open(&again, &f->region, &f->core_bell, &f->phy_bell),
	    0);
	assert_true(nc_phy_dev_core_restarted(&f->dev));
	assert_false(nc_phy_dev_prepare_wait(&f->dev));
	/* The new core ignores the old phy request until asked again. */
	assert_false(nc_phy_core_service(&again));
	nc_phy_dev_request(&f->dev);
	assert_true(nc_phy_core_service(&again));
	assert_int_equal(nc_phy_dev_granted(&f->dev), 1);
	assert_false(nc_phy_dev_core_restarted(&f->dev));
	nc_phy_core_close(&again);
}

static void phy_that_asked_before_the_core_started_is_served(void **state)
{
	(void)state;
	struct nc_region r;
	struct nc_doorbell cb, pb;
	assert_int_equal(nc_phy_region_create(&r, &small), 0);
	assert_int_equal(nc_doorbell_create(&cb), 0);
	assert_int_equal(nc_doorbell_create(&pb), 0);
	struct nc_phy_dev early;
	assert_int_equal(nc_phy_dev_open(&early, &r, &pb, &cb), 0);
	nc_phy_dev_request(&early);
	struct nc_phy_core late;
	assert_int_equal(nc_phy_core_open(&late, &r, &cb, &pb), 0);
	assert_int_equal(nc_phy_dev_granted(&early), 0);
	assert_true(nc_phy_core_service(&late));
	assert_int_equal(nc_phy_dev_granted(&early), 1);
	/* The core that granted is not a restart, though it started after
	 * the phy asked. */
	assert_false(nc_phy_dev_core_restarted(&early));
	assert_int_equal(nc_phy_core_tx(&late, "hi", 2), 0);
	nc_phy_core_flush(&late);
	struct nc_desc d;
	assert_int_equal(nc_phy_dev_tx(&early, &d, 1), 1);
	nc_phy_core_close(&late);
	nc_doorbell_close(&cb);
	nc_doorbell_close(&pb);
	nc_region_close(&r);
}

static void forged_descriptor_from_phy_takes_the_link_down(void **state)
{
	struct fixture *f = *state;
	/* The phy hands over a buffer it was never lent. */
	struct nc_desc forged = {.offset = f->core.layout.pool + 3,
	                         .length = 10};
	assert_int_equal(nc_ring_enqueue_batch(&f->dev.rx_active, &forged, 1),
	                 1);
	struct nc_desc got[4];
	assert_int_equal(nc_phy_core_rx(&f->core, got, 4), 0);
	assert_int_equal(f->core.counters.phy_corrupt, 1);
	assert_false(f->core.up);
	assert_int_equal(f->core.pool.lent_count, 0);
	assert_int_equal(nc_phy_core_tx(&f->core, "x", 1), -ENETDOWN);
	/* A restarted phy brings it back. */
	attach_both(f);
	assert_true(f->core.up);
}

static void sleeping_phy_is_woken_by_a_transmit(void **state)
{
	struct fixture *f = *state;
	nc_doorbell_drain(&f->phy_bell);
	assert_true(nc_phy_dev_prepare_wait(&f->dev));
	assert_int_equal(nc_phy_core_tx(&f->core, "wake", 4), 0);
	nc_phy_core_flush(&f->core);
	assert_int_equal(nc_doorbell_wait(&f->phy_bell, 0), 1);
	/* No request, no doorbell. */
	assert_int_equal(nc_phy_core_tx(&f->core, "quiet", 5), 0);
	nc_phy_core_flush(&f->core);
	assert_int_equal(nc_doorbell_wait(&f->phy_bell, 0), 0);
}

static void sleeping_core_is_woken_by_a_packet(void **state)
{
	struct fixture *f = *state;
	nc_doorbell_drain(&f->core_bell);
	assert_true(nc_phy_core_prepare_wait(&f->core));
	phy_receives(f, "knock");
	assert_int_equal(nc_phy_dev_flush(&f->dev), 0);
	assert_int_equal(nc_doorbell_wait(&f->core_bell, 0), 1);
	assert_false(nc_phy_core_prepare_wait(&f->core));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(params_round_trip_and_bad_params_are_refused),
	    T(packets_flow_from_phy_to_core_and_back),
	    T(oversized_packet_is_dropped_and_counted),
	    T(phy_restart_takes_back_every_buffer),
	    T(core_restart_is_seen_by_the_phy),
	    T(forged_descriptor_from_phy_takes_the_link_down),
	    T(phy_that_asked_before_the_core_started_is_served),
	    T(sleeping_phy_is_woken_by_a_transmit),
	    T(sleeping_core_is_woken_by_a_packet),
#undef T
	};
	return cmocka_run_group_tests_name("phy_link", tests, NULL, NULL);
}
