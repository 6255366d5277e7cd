/*
 * Pool behaviour: buffers change hands only as recorded; a descriptor from
 * the peer is accepted only if it names a lent buffer exactly; a dead peer's
 * buffers all come back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "shm/shm.h"

#define POOL_OFFSET 8192u
#define COUNT       4u
#define BUF_SIZE    2048u

struct fixture {
	struct nc_region region;
	struct nc_pool pool;
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(nc_region_create(&f.region, "pool_test", 65536, 2), 0);
	assert_int_equal(
	    nc_pool_init(&f.pool, &f.region, POOL_OFFSET, COUNT, BUF_SIZE), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nc_pool_fini(&f->pool);
	nc_region_close(&f->region);
	return 0;
}

static void get_hands_out_every_buffer_once(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d[COUNT + 1];
	for (unsigned i = 0; i < COUNT; i++) {
		assert_int_equal(nc_pool_get(&f->pool, &d[i]), 0);
		assert_int_equal(d[i].offset, POOL_OFFSET + i * BUF_SIZE);
		assert_int_equal(d[i].length, BUF_SIZE);
		assert_non_null(nc_pool_data(&f->pool, &d[i]));
	}
	assert_int_equal(nc_pool_get(&f->pool, &d[COUNT]), -ENOBUFS);
	assert_int_equal(nc_pool_put(&f->pool, &d[2]), 0);
	assert_int_equal(nc_pool_get(&f->pool, &d[COUNT]), 0);
	assert_int_equal(d[COUNT].offset, d[2].offset);
}

static void lent_buffer_comes_back_once(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d;
	assert_int_equal(nc_pool_get(&f->pool, &d), 0);
	assert_int_equal(nc_pool_lend(&f->pool, &d), 0);
	assert_int_equal(f->pool.lent_count, 1);
	/* The peer filled 100 bytes. */
	d.length = 100;
	assert_int_equal(nc_pool_accept(&f->pool, &d), 0);
	assert_int_equal(f->pool.lent_count, 0);
	/* A second return of the same buffer is a lie. */
	assert_int_equal(nc_pool_accept(&f->pool, &d), -NC_ECORRUPT);
	assert_int_equal(nc_pool_put(&f->pool, &d), 0);
	assert_int_equal(f->pool.free_count, COUNT);
}

static void accept_refuses_what_was_not_lent(void **state)
{
	struct fixture *f = *state;
	struct nc_desc held, lent;
	assert_int_equal(nc_pool_get(&f->pool, &held), 0);
	assert_int_equal(nc_pool_get(&f->pool, &lent), 0);
	assert_int_equal(nc_pool_lend(&f->pool, &lent), 0);

	struct nc_desc bad[] = {
	    held, /* owner holds it: the peer never had it */
	    {.offset = lent.offset + 1, .length = 1},        /* misaligned */
	    {.offset = lent.offset, .length = BUF_SIZE + 1}, /* too long */
	    {.offset = POOL_OFFSET - BUF_SIZE, .length = 1}, /* below pool */
	    {.offset = POOL_OFFSET + COUNT * BUF_SIZE, .length = 1}, /* past */
	    {.offset = UINT64_MAX, .length = 1},
	    {.offset = POOL_OFFSET + 3 * BUF_SIZE, .length = 1}, /* free */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(nc_pool_accept(&f->pool, &bad[i]),
		                 -NC_ECORRUPT);
	assert_int_equal(f->pool.lent_count, 1);
	assert_int_equal(nc_pool_accept(&f->pool, &lent), 0);
}

static void owner_misuse_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d;
	assert_int_equal(nc_pool_get(&f->pool, &d), 0);
	assert_int_equal(nc_pool_lend(&f->pool, &d), 0);
	/* Lent buffers are the peer's until it returns them. */
	assert_int_equal(nc_pool_lend(&f->pool, &d), -EINVAL);
	assert_int_equal(nc_pool_put(&f->pool, &d), -EINVAL);
	struct nc_desc outside = {.offset = 0, .length = 1};
	assert_int_equal(nc_pool_put(&f->pool, &outside), -EINVAL);
	assert_null(nc_pool_data(&f->pool, &outside));
}

static void reclaim_takes_back_every_lent_buffer(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(nc_pool_get(&f->pool, &d), 0);
		assert_int_equal(nc_pool_lend(&f->pool, &d), 0);
	}
	assert_int_equal(nc_pool_get(&f->pool, &d), 0); /* owner keeps one */
	assert_int_equal(f->pool.free_count, 0);
	assert_int_equal(nc_pool_reclaim_all(&f->pool), 3);
	assert_int_equal(f->pool.lent_count, 0);
	assert_int_equal(f->pool.free_count, 3);
	assert_int_equal(nc_pool_reclaim_all(&f->pool), 0);
	/* A late return from the dead peer is refused. */
	struct nc_desc late = {.offset = POOL_OFFSET, .length = 1};
	assert_int_equal(nc_pool_accept(&f->pool, &late), -NC_ECORRUPT);
}

static void pool_must_fit_the_region(void **state)
{
	struct fixture *f = *state;
	struct nc_pool p;
	assert_int_equal(nc_pool_init(&p, &f->region, 65536 - 1024, 1, 2048),
	                 -NC_ELAYOUT);
	assert_int_equal(nc_pool_init(&p, &f->region, 0, 0, 2048), -NC_ELAYOUT);
	assert_int_equal(
	    nc_pool_init(&p, &f->region, 0, UINT32_MAX, UINT32_MAX),
	    -NC_ELAYOUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(get_hands_out_every_buffer_once),
	    T(lent_buffer_comes_back_once),
	    T(accept_refuses_what_was_not_lent),
	    T(owner_misuse_is_an_error),
	    T(reclaim_takes_back_every_lent_buffer),
	    T(pool_must_fit_the_region),
#undef T
	};
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
