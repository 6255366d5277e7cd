/*
 * Doorbell behaviour: a ring wakes a waiter, rings coalesce, draining never
 * blocks, and a wait without a ring times out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>

#include "shm/shm.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void ring_wakes_a_waiter_and_rings_coalesce(void **state)
{
	(void)state;
	struct nc_doorbell db;
	assert_int_equal(nc_doorbell_create(&db), 0);
	assert_int_equal(nc_doorbell_ring(&db), 0);
	assert_int_equal(nc_doorbell_ring(&db), 0);
	assert_int_equal(nc_doorbell_wait(&db, 1000), 1);
	/* Both rings were consumed by one wake-up. */
	assert_int_equal(nc_doorbell_wait(&db, 0), 0);
	nc_doorbell_close(&db);
	assert_int_equal(db.fd, -1);
}

static void wait_without_ring_times_out(void **state)
{
	(void)state;
	struct nc_doorbell db;
	assert_int_equal(nc_doorbell_create(&db), 0);
	double start = now_ms();
	assert_int_equal(nc_doorbell_wait(&db, 50), 0);
	assert_true(now_ms() - start >= 45);
	nc_doorbell_close(&db);
}

static void drain_never_blocks(void **state)
{
	(void)state;
	struct nc_doorbell db;
	assert_int_equal(nc_doorbell_create(&db), 0);
	assert_true(fcntl(db.fd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(nc_doorbell_drain(&db), 0);
	assert_int_equal(nc_doorbell_drain(&db), 0);
	nc_doorbell_close(&db);
}

static void errors_on_a_closed_bell_are_reported(void **state)
{
	(void)state;
	struct nc_doorbell db;
	nc_doorbell_adopt(&db, -1);
	assert_int_equal(nc_doorbell_ring(&db), -EBADF);
	assert_int_equal(nc_doorbell_drain(&db), -EBADF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ring_wakes_a_waiter_and_rings_coalesce),
	    cmocka_unit_test(wait_without_ring_times_out),
	    cmocka_unit_test(drain_never_blocks),
	    cmocka_unit_test(errors_on_a_closed_bell_are_reported),
	};
	return cmocka_run_group_tests_name("doorbell", tests, NULL, NULL);
}
