/*
 * Cross-process rings: two processes each send 10 million
 * sequence-numbered descriptors to the other at the same time, over two
 * rings in one region, every thread sleeping on its doorbell when it has
 * nothing to do.
 *
 * Each process runs a producer thread and a consumer thread. The consumer
 * checks that descriptor i carries sequence number i (none lost, duplicated
 * or reordered). Producers send in bursts and, between bursts, hold back
 * until the peer's consumer has asked for a wake-up, so the sleeping path
 * is taken hundreds of times per run rather than only when scheduling
 * happens to allow it.
 *
 * A lost wake-up cannot hang the test: every wait is bounded. When a wait
 * times out while the ring it waited on has work, that is a lost wake-up
 * (after a grace period for a doorbell already on its way) and the test
 * fails at once. Child processes are killed and reaped on every path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_pr.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm.h"

#define COUNT      10000000ull
#define SLOTS      1024u
#define BATCH      64u
#define BURST      65536ull
#define WAIT_MS    5000
#define GRACE_MS   2000
#define DEADLINE_S 120
#define RING_AB    4096u
#define KIND       0x78707263u
#define ABORT_WORD 2048u /* in the region: set by whoever fails first */

enum bell { DATA_AB, SPACE_AB, DATA_BA, SPACE_BA, BELLS };

struct setup_info {
	struct nc_region region;
	uint64_t ring_ba;
	struct nc_doorbell bells[BELLS];
};

/* One direction seen from one process. */
struct half {
	struct nc_ring ring;
	struct nc_doorbell *my_bell;   /* I sleep on this */
	struct nc_doorbell *peer_bell; /* I ring this for the peer */
	uint64_t done;
	uint64_t sleeps;
	uint64_t late_rings;
	const char *error;
	uint32_t *abort; /* shared by both processes' four threads */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool should_stop(struct half *h)
{
	if (h->error != NULL)
		ck_pr_store_uint(h->abort, 1);
	return ck_pr_load_uint(h->abort) != 0;
}

static bool has_work(struct half *h)
{
	int n = h->ring.role == NC_RING_CONSUMER ? nc_ring_ready(&h->ring)
	                                         : nc_ring_space(&h->ring);
	return n != 0;
}

/*
 * Sleeps on the half's doorbell under the protocol in shm.h. Returns false
 * (with h->error set) if a wake-up was lost.
 */
static bool sleep_until_work(struct half *h)
{
	if (!nc_ring_prepare_wait(&h->ring))
		return true;
	h->sleeps++;
	int rung = nc_doorbell_wait(h->my_bell, WAIT_MS);
	if (rung != 0)
		return rung > 0 || (h->error = "doorbell wait failed", false);
	if (!has_work(h))
		return true; /* the peer is just slow; the deadline covers it */
	/* Work is there but no ring came: allow a ring already in flight. */
	if (nc_doorbell_wait(h->my_bell, GRACE_MS) > 0) {
		h->late_rings++;
		return true;
	}
	h->error = "lost wake-up: work was ready but no doorbell rang";
	return false;
}

static void signal_peer(struct half *h)
{
	if (nc_ring_needs_signal(&h->ring))
		nc_doorbell_ring(h->peer_bell);
}

/* Between bursts: hold back until the peer's consumer asked to be woken. */
static bool wait_for_peer_to_sleep(struct half *h)
{
	double give_up = now_s() + WAIT_MS / 1000.0;
	while (ck_pr_load_uint(h->ring.consumer_wants_signal) == 0) {
		if (should_stop(h))
			return false;
		if (now_s() > give_up) {
			h->error = "peer consumer never went to sleep";
			return false;
		}
		sched_yield();
	}
	return true;
}

static void *produce(void *arg)
{
	struct half *h = arg;
	struct nc_desc batch[BATCH];
	double deadline = now_s() + DEADLINE_S;
	while (h->done < COUNT && !should_stop(h)) {
		if (h->done % BURST == 0 && h->done > 0 &&
		    !wait_for_peer_to_sleep(h))
			break;
		unsigned n = 0;
		while (n < BATCH && h->done + n < COUNT) {
			uint64_t seq = h->done + n;
			batch[n] = (struct nc_desc){.offset = seq,
			                            .length = (uint32_t)seq};
			n++;
			if ((h->done + n) % BURST == 0)
				break;
		}
		int sent = nc_ring_enqueue_batch(&h->ring, batch, n);
		if (sent < 0) {
			h->error = "producer saw a corrupt ring";
			break;
		}
		h->done += (uint64_t)sent;
		if (sent > 0)
			signal_peer(h);
		else if (!sleep_until_work(h))
			break;
		if (now_s() > deadline)
			h->error = "producer deadline passed";
	}
	should_stop(h);
	return NULL;
}

static void *consume(void *arg)
{
	struct half *h = arg;
	struct nc_desc batch[BATCH];
	double deadline = now_s() + DEADLINE_S;
	while (h->done < COUNT && !should_stop(h)) {
		int got = nc_ring_dequeue_batch(&h->ring, batch, BATCH);
		if (got < 0) {
			h->error = "consumer saw a corrupt ring";
			break;
		}
		for (int i = 0; i < got; i++, h->done++) {
			if (batch[i].offset != h->done ||
			    batch[i].length != (uint32_t)h->done) {
				h->error = "descriptor lost, duplicated or "
				           "reordered";
				should_stop(h);
				return NULL;
			}
		}
		if (got > 0)
			signal_peer(h);
		else if (!sleep_until_work(h))
			break;
		if (now_s() > deadline)
			h->error = "consumer deadline passed";
	}
	should_stop(h);
	return NULL;
}

/* Runs one process's side: a producer on `tx`, a consumer on `rx`. */
static int run_side(const char *name, struct half *tx, struct half *rx)
{
	pthread_t pt, ct;
	if (pthread_create(&pt, NULL, produce, tx) != 0 ||
	    pthread_create(&ct, NULL, consume, rx) != 0)
		return 1;
	pthread_join(pt, NULL);
	pthread_join(ct, NULL);
	printf("%s: sent %llu, received %llu, producer sleeps %llu, "
	       "consumer sleeps %llu, late rings %llu\n",
	       name, (unsigned long long)tx->done, (unsigned long long)rx->done,
	       (unsigned long long)tx->sleeps, (unsigned long long)rx->sleeps,
	       (unsigned long long)(tx->late_rings + rx->late_rings));
	if (tx->error || rx->error || tx->done != COUNT || rx->done != COUNT) {
		printf("%s: FAILED: %s\n", name,
		       tx->error   ? tx->error
		       : rx->error ? rx->error
		                   : "stopped because the peer failed");
		return 1;
	}
	if (rx->sleeps == 0) {
		printf("%s: FAILED: the consumer never slept\n", name);
		return 1;
	}
	return 0;
}

static void half_init(struct half *h, struct nc_region *r, uint64_t offset,
                      enum nc_ring_role role, struct nc_doorbell *mine,
                      struct nc_doorbell *peers)
{
	memset(h, 0, sizeof(*h));
	assert_int_equal(nc_ring_attach(&h->ring, r, offset, SLOTS, role), 0);
	h->my_bell = mine;
	h->peer_bell = peers;
	h->abort = nc_region_at(r, ABORT_WORD, sizeof(uint32_t));
}

/* Process B: attaches its own mapping through the fd, like a service. */
static int child_main(struct setup_info *s)
{
	struct nc_region mine;
	struct nc_region_expect e = {.kind = KIND, .size = s->region.size};
	if (nc_region_attach(&mine, s->region.fd, &e) != 0)
		return 1;
	struct half tx, rx;
	struct nc_doorbell *b = s->bells;
	half_init(&tx, &mine, s->ring_ba, NC_RING_PRODUCER, &b[SPACE_BA],
	          &b[DATA_BA]);
	half_init(&rx, &mine, RING_AB, NC_RING_CONSUMER, &b[DATA_AB],
	          &b[SPACE_AB]);
	return run_side("B", &tx, &rx);
}

/* Waits for the child until the deadline, then kills it; always reaps. */
static int reap_child(pid_t pid, double deadline)
{
	int status = 0;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now_s() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void ten_million_each_way_none_lost_no_wakeup_missed(void **state)
{
	(void)state;
	struct setup_info s;
	uint64_t ring_size = nc_ring_footprint(SLOTS);
	s.ring_ba = RING_AB + (ring_size + 4095) / 4096 * 4096;
	assert_int_equal(nc_region_create(&s.region, "xproc_test",
	                                  s.ring_ba + ring_size, KIND),
	                 0);
	assert_int_equal(nc_ring_format(&s.region, RING_AB, SLOTS), 0);
	assert_int_equal(nc_ring_format(&s.region, s.ring_ba, SLOTS), 0);
	for (int i = 0; i < BELLS; i++)
		assert_int_equal(nc_doorbell_create(&s.bells[i]), 0);
	fflush(stdout);

	double deadline = now_s() + DEADLINE_S + 30;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc = child_main(&s);
		fflush(stdout);
		_exit(rc);
	}

	struct half tx, rx;
	struct nc_doorbell *b = s.bells;
	half_init(&tx, &s.region, RING_AB, NC_RING_PRODUCER, &b[SPACE_AB],
	          &b[DATA_AB]);
	half_init(&rx, &s.region, s.ring_ba, NC_RING_CONSUMER, &b[DATA_BA],
	          &b[SPACE_BA]);
	int mine = run_side("A", &tx, &rx);
	int theirs = reap_child(pid, deadline);
	for (int i = 0; i < BELLS; i++)
		nc_doorbell_close(&s.bells[i]);
	nc_region_close(&s.region);
	assert_int_equal(mine, 0);
	assert_int_equal(theirs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(ten_million_each_way_none_lost_no_wakeup_missed),
	};
	return cmocka_run_group_tests_name("xproc", tests, NULL, NULL);
}
