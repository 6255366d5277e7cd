/*
 * A hostile peer: while the trusted side serves a buffer pool through a
 * pair of rings, another process first behaves, then overwrites the whole
 * shared region with random bytes (ring indices, sizes, masks, wake-up
 * flags, slots and buffers alike) for a few seconds.
 *
 * The trusted side must never crash, never touch memory outside the region,
 * and must report the peer as corrupt. To catch a stray access that happens
 * to land on mapped memory, the trusted side maps the region between two
 * inaccessible guard areas: any access past either end faults and fails the
 * test. Whenever it sees corruption it does what a service does with a
 * broken client: takes every lent buffer back, re-formats the rings and
 * carries on, so the scribbler is met by a fresh trusted side over and over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm.h"

#define KIND          0x686f7374u
#define SLOTS         256u
#define FREE_RING     4096u
#define ACTIVE_RING   (FREE_RING + 16384u)
#define POOL_OFFSET   65536u
#define BUFFERS       128u
#define BUF_SIZE      2048u
#define REGION_SIZE   (POOL_OFFSET + BUFFERS * BUF_SIZE)
#define BEHAVE_ROUNDS 20000u
#define SCRIBBLE_S    3.0
#define GUARD         (1u << 20)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The peer, well-behaved: returns every buffer it is lent, filled. */
static int behave(struct nc_region *r)
{
	struct nc_ring free_ring, active;
	if (nc_ring_attach(&free_ring, r, FREE_RING, SLOTS, NC_RING_CONSUMER) !=
	        0 ||
	    nc_ring_attach(&active, r, ACTIVE_RING, SLOTS, NC_RING_PRODUCER))
		return 1;
	struct nc_desc d[32];
	unsigned rounds = 0;
	double give_up = now_s() + 30;
	while (rounds < BEHAVE_ROUNDS && now_s() < give_up) {
		int n = nc_ring_dequeue_batch(&free_ring, d, 32);
		if (n < 0)
			return 1;
		for (int i = 0; i < n; i++) {
			void *data = nc_region_at(r, d[i].offset, 16);
			if (data != NULL)
				memset(data, 0x5a, 16);
			d[i].length = 16;
		}
		int sent = 0;
		while (sent < n) {
			int k = nc_ring_enqueue_batch(&active, d + sent,
			                              (unsigned)(n - sent));
			if (k < 0)
				return 1;
			sent += k;
		}
		rounds += (unsigned)n;
	}
	/* Scribbling starts only once the trusted side has taken everything
	 * we returned, so the count it checks does not race the scribbler. */
	while (nc_ring_space(&active) != (int)SLOTS - 1 && now_s() < give_up)
		sched_yield();
	return rounds >= BEHAVE_ROUNDS && now_s() < give_up ? 0 : 1;
}

/* The peer, hostile: random bytes anywhere, for a few seconds. */
static void scribble(struct nc_region *r, uint64_t seed)
{
	unsigned char *base = r->base;
	double stop = now_s() + SCRIBBLE_S;
	while (now_s() < stop) {
		for (int i = 0; i < 4096; i++) {
			uint64_t x = xorshift(&seed);
			size_t at;
			/* Half the writes aim at the ring control blocks. */
			if (x & 1)
				at = (x >> 8) % r->size;
			else
				at = ((x >> 1) & 1 ? FREE_RING : ACTIVE_RING) +
				     (x >> 8) % 512;
			size_t len = (x >> 40) % 16 + 1;
			for (size_t k = 0; k < len && at + k < r->size; k++)
				base[at + k] = (unsigned char)xorshift(&seed);
		}
	}
}

static int child_main(int fd)
{
	struct nc_region r;
	if (nc_region_attach(&r, fd, NULL) != 0)
		return 1;
	int rc = behave(&r);
	scribble(&r, 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid());
	nc_region_close(&r);
	return rc;
}

/* The trusted side's state: its own mapping, between guard areas. */
struct trusted {
	struct nc_region region;
	void *reservation;
	struct nc_pool pool;
	struct nc_ring free_ring;
	struct nc_ring active;
	uint64_t accepted;
	uint64_t corrupt_events;
	uint64_t refused_descs;
	int last_error;
};

static void map_between_guards(struct trusted *t, int fd, size_t size)
{
	t->reservation = mmap(NULL, size + 2 * GUARD, PROT_NONE,
	                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(t->reservation != MAP_FAILED);
	void *at = (char *)t->reservation + GUARD;
	void *base = mmap(at, size, PROT_READ | PROT_WRITE,
	                  MAP_SHARED | MAP_FIXED, fd, 0);
	assert_ptr_equal(base, at);
	t->region.base = base;
	t->region.size = size;
	t->region.fd = -1;
	t->region.kind = KIND;
}

/*
 * Fresh rings. With the scribbler running, attaching may already find the
 * rings broken; the handle is then marked corrupt and the next step comes
 * straight back here.
 */
static void restart_service(struct trusted *t)
{
	nc_pool_reclaim_all(&t->pool);
	assert_int_equal(nc_ring_format(&t->region, FREE_RING, SLOTS), 0);
	assert_int_equal(nc_ring_format(&t->region, ACTIVE_RING, SLOTS), 0);
	int a = nc_ring_attach(&t->free_ring, &t->region, FREE_RING, SLOTS,
	                       NC_RING_PRODUCER);
	int b = nc_ring_attach(&t->active, &t->region, ACTIVE_RING, SLOTS,
	                       NC_RING_CONSUMER);
	assert_true(a == 0 || a == -NC_ECORRUPT);
	assert_true(b == 0 || b == -NC_ECORRUPT);
}

static int lend_all_held(struct trusted *t)
{
	struct nc_desc d;
	while (nc_pool_get(&t->pool, &d) == 0) {
		int n = nc_ring_enqueue_batch(&t->free_ring, &d, 1);
		if (n <= 0) {
			nc_pool_put(&t->pool, &d);
			return n;
		}
		nc_pool_lend(&t->pool, &d);
	}
	return 0;
}

/* One service step; returns a negative error if the peer broke a ring. */
static int serve_once(struct trusted *t)
{
	struct nc_desc d[32];
	int n = nc_ring_dequeue_batch(&t->active, d, 32);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		if (nc_pool_accept(&t->pool, &d[i]) != 0) {
			t->refused_descs++;
			continue;
		}
		/* Copy once, then look: the bytes are ours again now. */
		unsigned char copy[16];
		memcpy(copy, nc_pool_data(&t->pool, &d[i]), sizeof(copy));
		t->accepted++;
		nc_pool_put(&t->pool, &d[i]);
	}
	return lend_all_held(t);
}

static void check_pool_accounting(const struct trusted *t)
{
	uint32_t held = 0, lent = 0;
	for (uint32_t i = 0; i < t->pool.count; i++) {
		held += t->pool.state[i] == 0;
		lent += t->pool.state[i] == 1;
	}
	assert_int_equal(held, t->pool.free_count);
	assert_int_equal(lent, t->pool.lent_count);
	assert_int_equal(held + lent, t->pool.count);
}

static void scribbling_peer_is_reported_and_contained(void **state)
{
	(void)state;
	struct nc_region owner;
	assert_int_equal(
	    nc_region_create(&owner, "hostile_test", REGION_SIZE, KIND), 0);
	struct trusted t;
	memset(&t, 0, sizeof(t));
	map_between_guards(&t, owner.fd, owner.size);
	assert_int_equal(
	    nc_pool_init(&t.pool, &t.region, POOL_OFFSET, BUFFERS, BUF_SIZE),
	    0);
	restart_service(&t);
	assert_false(t.free_ring.corrupt || t.active.corrupt);
	assert_int_equal(lend_all_held(&t), 0);

	fflush(stdout);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc = child_main(owner.fd);
		fflush(stdout);
		_exit(rc);
	}

	int status = 0;
	double deadline = now_s() + 60;
	while (waitpid(pid, &status, WNOHANG) == 0 && now_s() < deadline) {
		int err = serve_once(&t);
		if (err < 0) {
			t.last_error = err;
			t.corrupt_events++;
			restart_service(&t);
		}
		check_pool_accounting(&t);
	}
	if (now_s() >= deadline) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	printf("accepted %llu buffers, refused %llu descriptors, "
	       "%llu corrupt-ring events (%s)\n",
	       (unsigned long long)t.accepted,
	       (unsigned long long)t.refused_descs,
	       (unsigned long long)t.corrupt_events,
	       nc_shm_strerror(t.last_error));
	nc_pool_fini(&t.pool);
	munmap(t.reservation, owner.size + 2 * GUARD);
	nc_region_close(&owner);

	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(t.accepted >= BEHAVE_ROUNDS);
	assert_true(t.corrupt_events > 0);
	assert_int_equal(t.last_error, -NC_ECORRUPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(scribbling_peer_is_reported_and_contained),
	};
	return cmocka_run_group_tests_name("hostile", tests, NULL, NULL);
}
