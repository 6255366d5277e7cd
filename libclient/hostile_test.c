/*
 * A broken (or hostile) core: libclient validates everything it reads from
 * the region. Each test forges one thing (an rx descriptor, a ring index,
 * a socket state, a free-ring descriptor) and checks that the calls that
 * read it fail with EIO, stay failed, show POLLERR, leave other sockets
 * alone, and never touch memory outside the region (ASan in the asan
 * configuration; the forged offsets point far outside it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_ring.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "libclient/testing/fake.h"

static struct fake F;

static int setup(void **state)
{
	(void)state;
	struct nc_client_params p;
	fake_params_small(&p);
	return fake_start(&F, &p);
}

static int teardown(void **state)
{
	(void)state;
	fake_stop(&F);
	return 0;
}

static struct nc_sock *open_sock(int type)
{
	struct nc_sock *s;
	assert_int_equal(nc_socket(F.client, AF_INET, type, 0, &s), 0);
	if (type == SOCK_STREAM) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_port = htons(80)};
		assert_int_equal(
		    nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	return s;
}

/* The socket is broken for good, and says so everywhere. */
static void assert_broken(struct nc_sock *s)
{
	char buf[8];
	int n;
	assert_int_equal(nc_recv(s, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(nc_bytes_readable(s, &n), -1);
	assert_int_equal(errno, EIO);
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLIN};
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 1);
	assert_true(pfd.revents & NC_POLLERR);
}

/* A good descriptor for `sock`'s rx ring: buffer `i` of the pool. */
static struct nc_desc good_desc(uint32_t sock, uint32_t i)
{
	struct nc_desc d = {.offset = F.l.pool + (uint64_t)i * F.p.buf_size,
	                    .length = 4,
	                    .aux = (uint16_t)sock};
	return d;
}

static void forge_and_check(struct nc_desc d, int type)
{
	struct nc_sock *s = open_sock(type);
	struct nc_sock *other = open_sock(SOCK_STREAM);
	d.aux = d.aux == 0xffff ? (uint16_t)(s->idx + 1) : (uint16_t)s->idx;
	assert_int_equal(fake_rx_raw(&F, s->idx, &d), 0);
	assert_broken(s);
	/* Another socket of the same client still works. */
	assert_int_equal(fake_rx_data(&F, other->idx, "ok", 2), 0);
	char buf[4];
	assert_int_equal(nc_recv(other, buf, sizeof(buf), 0), 2);
	assert_int_equal(nc_close(s), 0);
	assert_int_equal(nc_close(other), 0);
}

static void rx_offset_outside_the_pool_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 0);
	d.offset = 1ull << 40;
	forge_and_check(d, SOCK_STREAM);
}

static void rx_offset_before_the_pool_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 0);
	d.offset = F.l.control; /* inside the region, not a buffer */
	forge_and_check(d, SOCK_STREAM);
}

static void rx_offset_inside_a_buffer_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 3);
	d.offset += 64;
	forge_and_check(d, SOCK_STREAM);
}

static void rx_offset_past_the_last_buffer_is_eio(void **state)
{
	(void)state;
	forge_and_check(good_desc(0, F.p.buf_count), SOCK_STREAM);
}

static void rx_length_beyond_the_buffer_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 1);
	d.length = F.p.buf_size + 1;
	forge_and_check(d, SOCK_STREAM);
}

static void rx_for_another_socket_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 1);
	d.aux = 0xffff; /* forge_and_check: our index + 1 */
	forge_and_check(d, SOCK_STREAM);
}

static void rx_unknown_flags_are_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 1);
	d.flags = 0x80;
	forge_and_check(d, SOCK_STREAM);
}

static void eof_with_data_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 1);
	d.flags = NC_RXF_EOF;
	forge_and_check(d, SOCK_STREAM);
}

static void datagram_shorter_than_its_header_is_eio(void **state)
{
	(void)state;
	struct nc_desc d = good_desc(0, 1);
	d.length = sizeof(struct nc_dgram_hdr) - 1;
	forge_and_check(d, SOCK_DGRAM);
}

static void datagram_from_an_unknown_family_is_eio(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_DGRAM);
	struct nc_dgram_hdr h = {.family = 77};
	assert_int_equal(fake_rx_dgram(&F, s->idx, &h, "x", 1), 0);
	char c;
	assert_int_equal(nc_recv(s, &c, 1, 0), -1);
	assert_int_equal(errno, EIO);
	assert_broken(s);
	assert_int_equal(nc_close(s), 0);
}

static void data_after_end_of_stream_is_eio(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_STREAM);
	fake_rx_eof(&F, s->idx);
	fake_rx_data(&F, s->idx, "late", 4);
	char buf[8];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(nc_close(s), 0);
}

static void buffer_lent_twice_is_eio(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_STREAM);
	/* Buffer 15 is the pool's last: the fake never lent it. */
	struct nc_desc d = good_desc(s->idx, 15);
	assert_int_equal(fake_rx_raw(&F, s->idx, &d), 0);
	assert_int_equal(fake_rx_raw(&F, s->idx, &d), 0);
	char buf[16];
	assert_int_equal(nc_recv(s, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(nc_close(s), 0);
}

static void impossible_rx_ring_index_is_eio(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_STREAM);
	/* p_tail far beyond c_head + mask: the ring's invariant is broken. */
	struct ck_ring *r =
	    nc_region_at(&F.region, nc_client_rx_ring(&F.l, s->idx), 64);
	r->p_tail += 1000;
	assert_broken(s);
	assert_int_equal(nc_close(s), 0);
}

static void forge_state(uint32_t field, uint32_t value)
{
	struct nc_sock *s = open_sock(SOCK_STREAM);
	uint32_t *words = (uint32_t *)&F.states[s->idx];
	uint32_t saved = words[field];
	words[field] = value;
	assert_broken(s);
	char c;
	assert_int_equal(nc_send(s, &c, 1, 0), -1);
	assert_int_equal(errno, EIO);
	words[field] = saved; /* the fake broker checks gen on CLOSE */
	assert_int_equal(nc_close(s), 0);
}

static void state_of_another_generation_is_eio(void **state)
{
	(void)state;
	forge_state(offsetof(struct nc_sock_state, gen) / 4, 12345);
}

static void state_with_unknown_phase_is_eio(void **state)
{
	(void)state;
	forge_state(offsetof(struct nc_sock_state, phase) / 4, 99);
}

static void state_with_free_phase_is_eio(void **state)
{
	(void)state;
	forge_state(offsetof(struct nc_sock_state, phase) / 4, NC_SS_FREE);
}

static void state_with_unknown_events_is_eio(void **state)
{
	(void)state;
	forge_state(offsetof(struct nc_sock_state, events) / 4, 1u << 20);
}

static void state_with_impossible_errno_is_eio(void **state)
{
	(void)state;
	forge_state(offsetof(struct nc_sock_state, error) / 4, 5000);
}

static void forged_free_buffer_breaks_sending(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_STREAM);
	/* Use up the genuine loan, then lend a buffer that is not one. */
	static uint8_t big[7 * 2048];
	nc_set_nonblocking(s, 1);
	assert_int_equal(nc_send(s, big, sizeof(big), 0), sizeof(big));
	uint8_t sink[sizeof(big)];
	fake_tx_take(&F, s->idx, sink, sizeof(sink), NULL);
	struct nc_desc d = good_desc(0, 0);
	d.offset = 12345;
	nc_ring_enqueue_batch(&F.free_ring, &d, 1);
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EIO);
	/* Sticky, for every socket of the client: its pool is suspect. */
	assert_int_equal(nc_send(s, "x", 1, 0), -1);
	assert_int_equal(errno, EIO);
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLOUT};
	assert_int_equal(nc_poll(F.client, &pfd, 1, 0), 1);
	assert_true(pfd.revents & NC_POLLERR);
	assert_int_equal(nc_close(s), 0);
}

static void channel_named_twice_by_the_core_is_refused(void **state)
{
	(void)state;
	struct nc_sock *s = open_sock(SOCK_STREAM);
	/* The broker thread answers SOCKET with channel 0 again. */
	F.used[s->idx] = false;
	struct nc_sock *t;
	assert_int_equal(nc_socket(F.client, AF_INET, SOCK_STREAM, 0, &t), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(F.requests[NC_MSG_CLOSE], 1); /* abandoned */
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(rx_offset_outside_the_pool_is_eio),
	    T(rx_offset_before_the_pool_is_eio),
	    T(rx_offset_inside_a_buffer_is_eio),
	    T(rx_offset_past_the_last_buffer_is_eio),
	    T(rx_length_beyond_the_buffer_is_eio),
	    T(rx_for_another_socket_is_eio),
	    T(rx_unknown_flags_are_eio),
	    T(eof_with_data_is_eio),
	    T(datagram_shorter_than_its_header_is_eio),
	    T(datagram_from_an_unknown_family_is_eio),
	    T(data_after_end_of_stream_is_eio),
	    T(buffer_lent_twice_is_eio),
	    T(impossible_rx_ring_index_is_eio),
	    T(state_of_another_generation_is_eio),
	    T(state_with_unknown_phase_is_eio),
	    T(state_with_free_phase_is_eio),
	    T(state_with_unknown_events_is_eio),
	    T(state_with_impossible_errno_is_eio),
	    T(forged_free_buffer_breaks_sending),
	    T(channel_named_twice_by_the_core_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
