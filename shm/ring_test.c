/*
 * Ring behaviour: empty, full, wrap-around at index overflow, batches, and
 * every error path, in one process (cross-process and hostile peers have
 * their own tests).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_ring.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "shm/shm.h"

#define SLOTS       8u
#define RING_OFFSET 4096u

struct fixture {
	struct nc_region region;
	struct nc_ring prod;
	struct nc_ring cons;
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(nc_region_create(&f.region, "ring_test", 65536, 1), 0);
	assert_int_equal(nc_ring_format(&f.region, RING_OFFSET, SLOTS), 0);
	assert_int_equal(nc_ring_attach(&f.prod, &f.region, RING_OFFSET, SLOTS,
	                                NC_RING_PRODUCER),
	                 0);
	assert_int_equal(nc_ring_attach(&f.cons, &f.region, RING_OFFSET, SLOTS,
	                                NC_RING_CONSUMER),
	                 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nc_region_close(&f->region);
	return 0;
}

static struct nc_desc seq_desc(uint64_t n)
{
	struct nc_desc d = {.offset = n,
	                    .length = (uint32_t)(n * 3),
	                    .flags = (uint16_t)n,
	                    .aux = 7};
	return d;
}

static void assert_seq(const struct nc_desc *d, uint64_t n)
{
	struct nc_desc want = seq_desc(n);
	assert_int_equal(d->offset, want.offset);
	assert_int_equal(d->length, want.length);
	assert_int_equal(d->flags, want.flags);
	assert_int_equal(d->aux, want.aux);
}

static void empty_ring_dequeues_nothing(void **state)
{
	struct fixture *f = *state;
	struct nc_desc out[4];
	assert_int_equal(nc_ring_ready(&f->cons), 0);
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, 4), 0);
	assert_int_equal(nc_ring_space(&f->prod), SLOTS - 1);
}

static void full_ring_refuses_more_and_keeps_order(void **state)
{
	struct fixture *f = *state;
	struct nc_desc in[SLOTS + 4], out[SLOTS + 4];
	for (uint64_t i = 0; i < SLOTS + 4; i++)
		in[i] = seq_desc(i);
	/* ck_ring keeps one slot empty: capacity is SLOTS - 1. */
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, in, SLOTS + 4),
	                 SLOTS - 1);
	assert_int_equal(nc_ring_space(&f->prod), 0);
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, &in[SLOTS - 1], 1), 0);
	assert_int_equal(nc_ring_ready(&f->cons), SLOTS - 1);
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, SLOTS + 4),
	                 SLOTS - 1);
	for (uint64_t i = 0; i < SLOTS - 1; i++)
		assert_seq(&out[i], i);
	assert_int_equal(nc_ring_space(&f->prod), SLOTS - 1);
}

static void batches_split_across_the_wrap_point(void **state)
{
	struct fixture *f = *state;
	struct nc_desc in[5], out[5];
	uint64_t next_in = 0, next_out = 0;
	/* Batches of 5 on 8 slots cross the end of the slot array often. */
	for (int round = 0; round < 100; round++) {
		for (int i = 0; i < 5; i++)
			in[i] = seq_desc(next_in++);
		assert_int_equal(nc_ring_enqueue_batch(&f->prod, in, 5), 5);
		int got = nc_ring_dequeue_batch(&f->cons, out, 3);
		assert_int_equal(got, 3);
		got += nc_ring_dequeue_batch(&f->cons, &out[3], 5);
		assert_int_equal(got, 5);
		for (int i = 0; i < 5; i++)
			assert_seq(&out[i], next_out++);
	}
}

/* Puts both indices just below UINT32_MAX, as after 4 billion descriptors. */
static void start_near_overflow(struct fixture *f, uint32_t index)
{
	struct ck_ring *shared = f->prod.shared;
	shared->c_head = index;
	shared->p_tail = index;
	shared->p_head = index;
	assert_int_equal(nc_ring_attach(&f->prod, &f->region, RING_OFFSET,
	                                SLOTS, NC_RING_PRODUCER),
	                 0);
	assert_int_equal(nc_ring_attach(&f->cons, &f->region, RING_OFFSET,
	                                SLOTS, NC_RING_CONSUMER),
	                 0);
}

static void indices_wrap_past_uint32_max(void **state)
{
	struct fixture *f = *state;
	start_near_overflow(f, UINT32_MAX - 2);
	struct nc_desc in[SLOTS], out[SLOTS];
	uint64_t next_in = 0, next_out = 0;
	for (int round = 0; round < 20; round++) {
		for (unsigned i = 0; i < SLOTS - 1; i++)
			in[i] = seq_desc(next_in++);
		assert_int_equal(nc_ring_enqueue_batch(&f->prod, in, SLOTS - 1),
		                 SLOTS - 1);
		assert_int_equal(nc_ring_space(&f->prod), 0);
		assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, SLOTS),
		                 SLOTS - 1);
		for (unsigned i = 0; i < SLOTS - 1; i++)
			assert_seq(&out[i], next_out++);
	}
	/* The counters really did wrap. */
	assert_true(f->prod.own_index < 1000);
	assert_int_equal(f->prod.own_index, f->cons.own_index);
}

static void wrong_role_is_refused(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d = seq_desc(1);
	assert_int_equal(nc_ring_enqueue_batch(&f->cons, &d, 1), -EINVAL);
	assert_int_equal(nc_ring_dequeue_batch(&f->prod, &d, 1), -EINVAL);
}

static void invalid_layouts_are_refused(void **state)
{
	struct fixture *f = *state;
	struct nc_ring ring;
	assert_int_equal(nc_ring_footprint(0), 0);
	assert_int_equal(nc_ring_footprint(1), 0);
	assert_int_equal(nc_ring_footprint(12), 0);
	assert_int_equal(nc_ring_footprint(1u << 25), 0);
	assert_int_equal(nc_ring_format(&f->region, RING_OFFSET, 12),
	                 -NC_ELAYOUT);
	/* Misaligned, and past the end of the region. */
	assert_int_equal(nc_ring_format(&f->region, RING_OFFSET + 8, SLOTS),
	                 -NC_ELAYOUT);
	assert_int_equal(nc_ring_format(&f->region, 65536 - 64, SLOTS),
	                 -NC_ELAYOUT);
	assert_int_equal(nc_ring_attach(&ring, &f->region, UINT64_MAX - 63,
	                                SLOTS, NC_RING_CONSUMER),
	                 -NC_ELAYOUT);
	assert_int_equal(nc_ring_attach(&ring, &f->region, RING_OFFSET, SLOTS,
	                                (enum nc_ring_role)3),
	                 -NC_ELAYOUT);
}

static void impossible_producer_index_is_corrupt_and_sticky(void **state)
{
	struct fixture *f = *state;
	struct nc_desc out[4];
	/* The producer claims more descriptors than the ring can hold. */
	f->prod.shared->p_tail = f->cons.own_index + SLOTS;
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, 4), -NC_ECORRUPT);
	assert_true(f->cons.corrupt);
	/* Repairing the index does not un-corrupt: the peer is cut off. */
	f->prod.shared->p_tail = f->cons.own_index;
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, 4), -NC_ECORRUPT);
	assert_int_equal(nc_ring_ready(&f->cons), -NC_ECORRUPT);
	/* A corrupt ring never lets its user sleep through the error. */
	assert_false(nc_ring_prepare_wait(&f->cons));
}

static void consumer_ahead_of_producer_is_corrupt(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d = seq_desc(1);
	f->cons.shared->c_head = f->prod.own_index + 1;
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, &d, 1), -NC_ECORRUPT);
	assert_int_equal(nc_ring_space(&f->prod), -NC_ECORRUPT);
}

static void scribbled_mask_and_size_are_ignored(void **state)
{
	struct fixture *f = *state;
	struct nc_desc in[3] = {seq_desc(1), seq_desc(2), seq_desc(3)};
	struct nc_desc out[3];
	/* ck would index with these; the handles use their private copies. */
	f->prod.shared->mask = UINT32_MAX;
	f->prod.shared->size = UINT32_MAX;
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, in, 3), 3);
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, 3), 3);
	for (int i = 0; i < 3; i++)
		assert_seq(&out[i], (uint64_t)i + 1);
}

static void attach_refuses_impossible_indices(void **state)
{
	struct fixture *f = *state;
	struct nc_ring ring;
	f->prod.shared->p_tail = f->prod.shared->c_head + SLOTS;
	assert_int_equal(nc_ring_attach(&ring, &f->region, RING_OFFSET, SLOTS,
	                                NC_RING_CONSUMER),
	                 -NC_ECORRUPT);
}

static void consumer_may_sleep_only_on_an_empty_ring(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d = seq_desc(1);
	assert_true(nc_ring_prepare_wait(&f->cons));
	assert_int_equal(*f->cons.consumer_wants_signal, 1);
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, &d, 1), 1);
	/* The request is answered exactly once. */
	assert_true(nc_ring_needs_signal(&f->prod));
	assert_false(nc_ring_needs_signal(&f->prod));
	/* Work is there now: preparing to wait cancels the request. */
	assert_false(nc_ring_prepare_wait(&f->cons));
	assert_int_equal(*f->cons.consumer_wants_signal, 0);
	assert_false(nc_ring_needs_signal(&f->prod));
}

static void producer_may_sleep_only_on_a_full_ring(void **state)
{
	struct fixture *f = *state;
	struct nc_desc in[SLOTS], out[1];
	for (unsigned i = 0; i < SLOTS; i++)
		in[i] = seq_desc(i);
	assert_false(nc_ring_prepare_wait(&f->prod));
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, in, SLOTS), SLOTS - 1);
	assert_true(nc_ring_prepare_wait(&f->prod));
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, out, 1), 1);
	assert_true(nc_ring_needs_signal(&f->cons));
	assert_false(nc_ring_needs_signal(&f->cons));
}

static void no_signal_without_a_request(void **state)
{
	struct fixture *f = *state;
	struct nc_desc d = seq_desc(1);
	assert_int_equal(nc_ring_enqueue_batch(&f->prod, &d, 1), 1);
	assert_false(nc_ring_needs_signal(&f->prod));
	assert_int_equal(nc_ring_dequeue_batch(&f->cons, &d, 1), 1);
	assert_false(nc_ring_needs_signal(&f->cons));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(empty_ring_dequeues_nothing),
	    T(full_ring_refuses_more_and_keeps_order),
	    T(batches_split_across_the_wrap_point),
	    T(indices_wrap_past_uint32_max),
	    T(wrong_role_is_refused),
	    T(invalid_layouts_are_refused),
	    T(impossible_producer_index_is_corrupt_and_sticky),
	    T(consumer_ahead_of_producer_is_corrupt),
	    T(scribbled_mask_and_size_are_ignored),
	    T(attach_refuses_impossible_indices),
	    T(consumer_may_sleep_only_on_an_empty_ring),
	    T(producer_may_sleep_only_on_a_full_ring),
	    T(no_signal_without_a_request),
#undef T
	};
	return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
