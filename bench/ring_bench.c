/*
 * ring_bench: what a netcore descriptor ring costs, measured in the same run
 * as the kernel primitives it stands in for.
 *
 * Two questions, two tables.
 *
 * Throughput: how many 16-byte descriptors per second one producer can hand
 * one consumer through an nc_ring, batched (BATCH per call) and unbatched
 * (one per call), in these placements:
 *   - 1 thread: enqueue a batch, dequeue it, repeat. The same library calls
 *     as the other rows (including nc_ring_needs_signal after every batch),
 *     but no cache line moves between CPUs and nobody sleeps: the floor of
 *     what the calls cost.
 *   - 2 threads: producer and consumer in one process, one mapping.
 *   - 2 processes: fork(); the consumer maps the memfd itself
 *     (nc_region_attach), so it has its own mapping, as a real service does.
 *   - 2 procs, spin: the same, but a side that runs out of work busy-polls
 *     the ring for up to SPIN_NS before it goes to sleep.
 *   - pipe: the same 16-byte records written to a pipe by one process and
 *     read by another, one record per write/read or BATCH per write/read:
 *     the kernel's peer of the 2-process rows.
 * A consumer that finds the ring empty, or a producer that finds it full,
 * sleeps on its eventfd doorbell through the library's protocol
 * (nc_ring_prepare_wait, then nc_doorbell_wait; the other side calls
 * nc_ring_needs_signal after each batch and rings if asked). "sleeps/1k"
 * says how often each side did so per thousand descriptors. A ring holds
 * 1023, so about 1/1k for both sides means they took turns, one ringful at
 * a time, instead of running side by side; near 0 means they overlapped.
 *
 * Round trip: one message there and back between two processes, both
 * sleeping between messages, so each message wakes a sleeping process.
 * Ring + doorbell (two rings, two eventfds) against a blocking 1-byte pipe
 * ping-pong and an 8-byte unix SOCK_SEQPACKET ping-pong, the same number
 * of round trips each, with both processes pinned to one CPU (each wake-up
 * is a context switch there) and to two (each wake-up crosses CPUs). Median
 * and p99 in microseconds, from a clock read on either side of every round
 * trip. "wake-ups/msg": how often a ring side really slept per message it
 * waited for (1.00: every time; lower: the reply was already there when it
 * re-checked, e.g. because the woken peer preempted the sender on its CPU
 * before the sender got to sleep).
 *
 * How to read it. Batching and the process boundary: compare rows of the
 * throughput table (2 processes should match 2 threads: same memory, same
 * cache lines). The round trip prices one wake-up; there a ring can at best
 * tie with a pipe, since waking a process is the kernel's work either way
 * (an eventfd write, then poll + read on the other side). In the throughput
 * table the scheduler decides where the two sides run; --pin puts them on
 * two CPUs.
 *
 * Each row is measured in rounds interleaved with the other rows of its
 * table, so a burst of other work on a shared machine hits all rows alike;
 * "spread" is half the range of the per-round rates. Each row is also a
 * check: every descriptor and record carries a sequence number and a check
 * word, the receiver verifies order and contents, and an end marker carries
 * the count sent, so losses show. Any failure, and any wait that lasts
 * WAIT_TIMEOUT_MS, fails the run (exit 1). Children die with us
 * (PR_SET_PDEATHSIG) and are killed and reaped on every path.
 */
#include "shm/shm.h"

#include <ck_pr.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING_SLOTS      1024u
#define BATCH           32u
#define MSG_BYTES       16u /* a pipe record: the size of a descriptor */
#define WAIT_TIMEOUT_MS 5000
#define TICK_MS         250         /* watchdog tick that unblocks read(2) */
#define BENCH_KIND      0x42454e43u /* "BENC" */
#define DESC_STOP       0x1u        /* flags: end marker; offset = count sent */
#define NS_PER_MS       1000000ull
#define SPIN_NS         10000ull /* the "spin" rows: ~ one wake-up's cost */

/* What to run; `rounds` slices per row (see the top of the file). */
struct config {
	bool quick;
	bool pin;             /* --pin: see place_sides */
	double seconds;       /* per throughput row (all rounds together) */
	uint64_t round_trips; /* measured, per round-trip row (likewise) */
	uint64_t warmup;      /* unmeasured round trips, per round */
	unsigned int rounds;
};

/* ------------------------------------------------------------ utilities */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Milliseconds left of a WAIT_TIMEOUT_MS wait that began at `start`. */
static int ms_left(uint64_t start)
{
	uint64_t spent = (now_ns() - start) / NS_PER_MS;
	return spent >= WAIT_TIMEOUT_MS ? 0 : WAIT_TIMEOUT_MS - (int)spent;
}

/* A word derived from the sequence number, so a stale or torn descriptor
 * does not pass for the right one by carrying the right offset alone. */
static uint32_t seq_check(uint64_t seq)
{
	return (uint32_t)(seq * 2654435761u) ^ 0x5a5a5a5au;
}

static struct nc_desc seq_desc(uint64_t seq)
{
	return (struct nc_desc){.offset = seq, .length = seq_check(seq)};
}

static void say_err(const char *who, const char *what, int err)
{
	const char *why = err == -ETIMEDOUT
	                      ? "no progress within the wait timeout (peer "
	                        "hung or dead)"
	                      : nc_shm_strerror(err);
	fprintf(stderr, "ring_bench: %s: %s: %s\n", who, what, why);
}

/*
 * The receiver's check of one descriptor. Returns 0 for the next descriptor
 * in sequence, 1 for the end marker with the right count, and -EPROTO (after
 * saying why) for anything else.
 */
static int take_desc(uint64_t *expected, const struct nc_desc *d,
                     const char *who)
{
	if (d->flags == DESC_STOP && d->offset == *expected)
		return 1;
	if (d->flags == 0 && d->offset == *expected &&
	    d->length == seq_check(*expected)) {
		(*expected)++;
		return 0;
	}
	fprintf(stderr,
	        "ring_bench: %s: expected #%" PRIu64 ", got offset %" PRIu64
	        " length %#x flags %#x\n",
	        who, *expected, d->offset, (unsigned)d->length,
	        (unsigned)d->flags);
	return -EPROTO;
}

/* --------------------------------------------------------------- watchdog */

/*
 * Pipes and sockets are read with plain blocking read(2): that is what is
 * measured. To bound those waits anyway, the processes doing them run an
 * interval timer whose SIGALRM (installed without SA_RESTART) makes a
 * blocked read return EINTR a few times a second; the read loop then checks
 * how long it has waited. The ring rows need no timer: nc_doorbell_wait
 * takes a timeout.
 */
static void on_tick(int sig)
{
	(void)sig;
}

static int ticks_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_tick;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGALRM, &sa, NULL) == 0 ? 0 : -errno;
}

static int ticks_arm(bool on)
{
	struct itimerval it;
	memset(&it, 0, sizeof(it));
	if (on) {
		it.it_interval.tv_usec = TICK_MS * 1000;
		it.it_value = it.it_interval;
	}
	return setitimer(ITIMER_REAL, &it, NULL) == 0 ? 0 : -errno;
}

/* read(2) that outlasts the watchdog's ticks but not WAIT_TIMEOUT_MS.
 * Returns bytes read (0: end of file) or -errno. */
static ssize_t read_timed(int fd, void *buf, size_t len)
{
	uint64_t start = 0;
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
		if (start == 0)
			start = now_ns();
		else if (ms_left(start) == 0)
			return -ETIMEDOUT;
	}
}

/* Writes all of buf, outlasting ticks and short writes. 0 or -errno. */
static int write_timed(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	uint64_t start = 0;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EINTR)
			return -errno;
		if (start == 0)
			start = now_ns();
		else if (ms_left(start) == 0)
			return -ETIMEDOUT;
	}
	return 0;
}

/* Reads exactly len bytes: 0, or -EPIPE on an early end of file. */
static int read_exact(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read_timed(fd, p, len);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---------------------------------------------------------------- pinning */

/*
 * Side A is this process (producers, pingers); side B is every peer thread
 * and child, which pins itself to side_b_cpu (if set) when it starts. The
 * throughput table runs where the scheduler puts it, unless --pin puts A
 * on one CPU and B on another. The round-trip table always places both
 * sides itself, on one CPU and on two, because there placement decides the
 * figure: a wake-up that crosses CPUs can cost many times one that stays.
 */
static int cpu_pair[2] = {-1, -1}; /* the first two CPUs we may use */
static int side_b_cpu = -1;

static int pin_self(int cpu)
{
	if (cpu < 0)
		return 0;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

/* Finds the first two CPUs we may use (the same one twice if only one). */
static int find_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return -errno;
	int n = 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpu_pair[n++] = cpu;
	if (n == 1)
		cpu_pair[1] = cpu_pair[0];
	return n > 0 ? 0 : -ENODEV;
}

/* Pins side A to the first CPU, and side Bs started from now on to the
 * first or the second. */
static int place_sides(bool two_cpus)
{
	side_b_cpu = cpu_pair[two_cpus ? 1 : 0];
	return pin_self(cpu_pair[0]);
}

/* --------------------------------------------------------------- children */

/*
 * A forked peer runs `body` and exits 0 only if it returned 0. It dies with
 * us, so a crashed or killed bench leaves nothing behind.
 */
static pid_t child_start(int (*body)(void *), void *arg)
{
	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid < 0 ? -errno : pid;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
	    pin_self(side_b_cpu) != 0)
		_exit(3);
	_exit(body(arg) == 0 ? 0 : 1);
}

static void child_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* 0 for a clean exit; otherwise says how the child ended. */
static int child_status(pid_t pid, int status)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "ring_bench: child %d %s %d\n", (int)pid,
	        WIFEXITED(status) ? "exited with status" : "killed by signal",
	        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return -ECHILD;
}

/*
 * Reaps a child. If we already failed, it is killed at once; otherwise it
 * gets WAIT_TIMEOUT_MS to finish. Returns 0 if it exited with status 0.
 */
static int child_finish(pid_t pid, bool ok)
{
	if (!ok) {
		child_kill(pid);
		return -ECANCELED;
	}
	uint64_t start = now_ns();
	for (;;) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return child_status(pid, status);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (ms_left(start) == 0)
			break;
		struct timespec nap = {.tv_nsec = 1000000};
		nanosleep(&nap, NULL);
	}
	fprintf(stderr, "ring_bench: child %d did not exit; killed\n",
	        (int)pid);
	child_kill(pid);
	return -ETIMEDOUT;
}

/* ---------------------------------------------------- channels and links */

/*
 * A channel is one region holding two rings, A and B, plus two doorbells.
 * Side A produces on ring A, consumes ring B and sleeps on bell_a; side B
 * the reverse. The parent owns it; the peer (thread or child) attaches.
 */
struct channel {
	struct nc_region region;
	struct nc_doorbell bell_a;
	struct nc_doorbell bell_b;
	uint64_t ring_a;
	uint64_t ring_b;
};

static uint64_t align64(uint64_t x)
{
	return (x + 63) & ~(uint64_t)63;
}

static void channel_close(struct channel *ch)
{
	nc_region_close(&ch->region);
	nc_doorbell_close(&ch->bell_a);
	nc_doorbell_close(&ch->bell_b);
}

static int channel_open(struct channel *ch)
{
	ch->bell_a.fd = -1;
	ch->bell_b.fd = -1;
	ch->ring_a = align64(sizeof(struct nc_region_header));
	ch->ring_b = ch->ring_a + align64(nc_ring_footprint(RING_SLOTS));
	size_t size = ch->ring_b + nc_ring_footprint(RING_SLOTS);

	int err = nc_region_create(&ch->region, "ring_bench", size, BENCH_KIND);
	if (!err)
		err = nc_ring_format(&ch->region, ch->ring_a, RING_SLOTS);
	if (!err)
		err = nc_ring_format(&ch->region, ch->ring_b, RING_SLOTS);
	if (!err)
		err = nc_doorbell_create(&ch->bell_a);
	if (!err)
		err = nc_doorbell_create(&ch->bell_b);
	if (err) {
		say_err("channel", "setting up", err);
		channel_close(ch);
	}
	return err;
}

/* One side's private view of a channel. */
struct link {
	struct nc_ring tx;       /* we produce */
	struct nc_ring rx;       /* we consume */
	struct nc_doorbell own;  /* we sleep on it (not owned) */
	struct nc_doorbell peer; /* we ring it (not owned) */
	uint64_t sleeps;         /* times we really went to sleep */
	uint64_t spin_ns;        /* busy-poll this long before sleeping */
};

/* Attaches side A or B through mapping `r` of the channel's region. */
static int link_attach(struct link *l, struct nc_region *r,
                       const struct channel *ch, bool side_a)
{
	memset(l, 0, sizeof(*l));
	l->own = side_a ? ch->bell_a : ch->bell_b;
	l->peer = side_a ? ch->bell_b : ch->bell_a;
	uint64_t tx = side_a ? ch->ring_a : ch->ring_b;
	uint64_t rx = side_a ? ch->ring_b : ch->ring_a;
	int err = nc_ring_attach(&l->tx, r, tx, RING_SLOTS, NC_RING_PRODUCER);
	if (!err)
		err =
		    nc_ring_attach(&l->rx, r, rx, RING_SLOTS, NC_RING_CONSUMER);
	if (err)
		say_err("link", "attaching rings", err);
	return err;
}

/* Enqueues up to n and, if the consumer asked for it, rings its bell. */
static int link_send(struct link *l, const struct nc_desc *d, unsigned int n)
{
	int k = nc_ring_enqueue_batch(&l->tx, d, n);
	if (k > 0 && nc_ring_needs_signal(&l->tx)) {
		int err = nc_doorbell_ring(&l->peer);
		if (err)
			return err;
	}
	return k;
}

/* Dequeues up to max and, if the producer waits for space, rings it. */
static int link_recv(struct link *l, struct nc_desc *out, unsigned int max)
{
	int k = nc_ring_dequeue_batch(&l->rx, out, max);
	if (k > 0 && nc_ring_needs_signal(&l->rx)) {
		int err = nc_doorbell_ring(&l->peer);
		if (err)
			return err;
	}
	return k;
}

/*
 * Busy-polls `ring` for up to l->spin_ns before the caller sleeps: true if
 * work showed up. Plain reads; the protocol proper starts after.
 */
static bool link_spin(struct link *l, struct nc_ring *ring)
{
	if (l->spin_ns == 0)
		return false;
	bool consumer = ring == &l->rx;
	uint64_t start = now_ns();
	do {
		int avail =
		    consumer ? nc_ring_ready(ring) : nc_ring_space(ring);
		if (avail != 0)
			return true;
		ck_pr_stall();
	} while (now_ns() - start < l->spin_ns);
	return false;
}

/*
 * The waiter's half of the protocol for `ring` (our tx: waiting for space;
 * our rx: waiting for descriptors). Returns 0 when the caller should look
 * again (woken, or work appeared on the re-check), -ETIMEDOUT after
 * WAIT_TIMEOUT_MS asleep, or another negative error.
 */
static int link_sleep(struct link *l, struct nc_ring *ring)
{
	if (link_spin(l, ring) || !nc_ring_prepare_wait(ring))
		return 0;
	l->sleeps++;
	uint64_t start = now_ns();
	for (;;) {
		int left = ms_left(start);
		if (left == 0)
			return -ETIMEDOUT;
		int rc = nc_doorbell_wait(&l->own, left);
		if (rc != 0)
			return rc < 0 ? rc : 0;
		/* Timed out or interrupted: our request still stands, but a
		 * fresh re-check costs nothing and catches a missed bell. */
		if (!nc_ring_prepare_wait(ring))
			return 0;
	}
}

/* Receives at least one descriptor, sleeping while the ring is empty. */
static int link_recv_wait(struct link *l, struct nc_desc *out, unsigned int max)
{
	for (;;) {
		int k = link_recv(l, out, max);
		if (k != 0)
			return k;
		int err = link_sleep(l, &l->rx);
		if (err)
			return err;
	}
}

/*
 * Sends all n, sleeping while the ring is full. A peer only speaks on our rx
 * ring to end the run, so if it has while we wait for space it gave up:
 * stop instead of waiting out the timeout.
 */
static int link_send_all(struct link *l, const struct nc_desc *d,
                         unsigned int n)
{
	unsigned int sent = 0;
	while (sent < n) {
		int k = link_send(l, d + sent, n - sent);
		if (k < 0)
			return k;
		sent += (unsigned int)k;
		if (k > 0)
			continue;
		if (nc_ring_ready(&l->rx) != 0)
			return -ECONNABORTED;
		int err = link_sleep(l, &l->tx);
		if (err)
			return err;
	}
	return 0;
}

/* ------------------------------------------------------------------ peers */

/*
 * The far side B of a channel, as a thread (sharing our mapping) or as a
 * forked process (mapping the memfd itself). `body` runs on its link.
 */
enum peer_kind { PEER_THREAD, PEER_PROCESS };

struct peer {
	enum peer_kind kind;
	struct channel *ch;
	int (*body)(struct link *l, const void *arg);
	const void *arg;
	pthread_t thread;
	pid_t pid;
	int result; /* the thread's; a process reports by exit status */
};

static void *peer_thread_main(void *arg)
{
	struct peer *p = arg;
	struct link l;
	p->result = pin_self(side_b_cpu);
	if (!p->result)
		p->result = link_attach(&l, &p->ch->region, p->ch, false);
	if (!p->result)
		p->result = p->body(&l, p->arg);
	return NULL;
}

static int peer_process_main(void *arg)
{
	struct peer *p = arg;
	const struct nc_region *theirs = &p->ch->region;
	struct nc_region_expect expect = {.kind = BENCH_KIND,
	                                  .size = theirs->size,
	                                  .generation = theirs->generation};
	struct nc_region mine;
	int err = nc_region_attach(&mine, theirs->fd, &expect);
	if (err) {
		say_err("child", "attaching the region", err);
		return err;
	}
	struct link l;
	err = link_attach(&l, &mine, p->ch, false);
	if (!err)
		err = p->body(&l, p->arg);
	nc_region_close(&mine);
	return err;
}

static int peer_start(struct peer *p)
{
	if (p->kind == PEER_THREAD)
		return -pthread_create(&p->thread, NULL, peer_thread_main, p);
	p->pid = child_start(peer_process_main, p);
	return p->pid < 0 ? p->pid : 0;
}

/* Joins or reaps the peer; 0 if it succeeded. A thread cannot be killed:
 * its own waits are bounded, so it is given twice the timeout. */
static int peer_finish(struct peer *p, bool ok)
{
	if (p->kind == PEER_PROCESS)
		return child_finish(p->pid, ok);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2 * WAIT_TIMEOUT_MS / 1000;
	if (pthread_timedjoin_np(p->thread, NULL, &deadline) != 0) {
		fprintf(stderr, "ring_bench: peer thread hung; giving up\n");
		exit(1);
	}
	return p->result;
}

/* ------------------------------------------------------ throughput rows */

struct tput {
	const char *name;
	unsigned int batch;
	uint64_t moved;
	double seconds;
	bool has_sleeps;
	uint64_t prod_sleeps;
	uint64_t cons_sleeps;
	double min_rate, max_rate; /* over rounds: how noisy it was */
	bool ok;
};

static double tput_rate(const struct tput *t)
{
	return t->seconds > 0 ? (double)t->moved / t->seconds : 0;
}

static void fill_batch(struct nc_desc *d, uint64_t seq, unsigned int batch)
{
	for (unsigned int i = 0; i < batch; i++)
		d[i] = seq_desc(seq + i);
}

/* True every 64th call after `seconds` have passed since `start`: reading
 * the clock on every call would cost as much as an unbatched enqueue. */
static bool time_is_up(unsigned int *calls, uint64_t start, double seconds)
{
	if (++*calls % 64 != 0)
		return false;
	return (double)(now_ns() - start) >= seconds * 1e9;
}

/* Verifies a dequeued batch; 1 once the end marker came (last), 0 to go
 * on, negative on a bad descriptor. */
static int take_batch(uint64_t *expected, const struct nc_desc *d, int k,
                      const char *who)
{
	for (int i = 0; i < k; i++) {
		int v = take_desc(expected, &d[i], who);
		if (v < 0)
			return v;
		if (v == 1)
			return i == k - 1 ? 1 : -EPROTO;
	}
	return 0;
}

/* 1 thread: enqueue a batch, dequeue it, check it; no sleeping possible. */
static int ring_tput_single(struct tput *t, const struct config *cfg)
{
	struct channel ch;
	struct link a, b;
	struct nc_desc in[BATCH], out[BATCH];
	int err = channel_open(&ch);
	if (err)
		return err;
	err = link_attach(&a, &ch.region, &ch, true);
	if (!err)
		err = link_attach(&b, &ch.region, &ch, false);
	uint64_t seq = 0, expected = 0, start = now_ns();
	unsigned int calls = 0;
	while (!err && !time_is_up(&calls, start, cfg->seconds)) {
		fill_batch(in, seq, t->batch);
		int k = link_send(&a, in, t->batch);
		int m = link_recv(&b, out, t->batch);
		if (k != (int)t->batch || m != k) {
			fprintf(stderr,
			        "ring_bench: 1 thread: sent %d, "
			        "received %d of %u\n",
			        k, m, t->batch);
			err = -EPROTO;
			break;
		}
		seq += (unsigned int)k;
		err = take_batch(&expected, out, m, "1 thread");
	}
	t->seconds = (double)(now_ns() - start) / 1e9;
	t->moved = expected;
	channel_close(&ch);
	if (err)
		return err;
	return expected == seq ? 0 : -EPROTO;
}

/* What side B of a throughput row needs to know. */
struct consume_args {
	unsigned int batch;
	uint64_t spin_ns;
};

/* Side B's body: take everything in order, then report back on ring B
 * with one descriptor: offset = count taken, length = our sleeps. */
static int consume_all(struct link *l, const void *arg)
{
	const struct consume_args *ca = arg;
	const unsigned int batch = ca->batch;
	l->spin_ns = ca->spin_ns;
	struct nc_desc d[BATCH];
	uint64_t expected = 0;
	int verdict = 0;
	while (verdict == 0) {
		int k = link_recv_wait(l, d, batch);
		if (k < 0) {
			say_err("consumer", "receiving", k);
			verdict = k;
			break;
		}
		verdict = take_batch(&expected, d, k, "consumer");
	}
	struct nc_desc report = {.offset = expected,
	                         .length = (uint32_t)l->sleeps,
	                         .flags = verdict == 1 ? DESC_STOP : 0};
	int err = link_send_all(l, &report, 1);
	/* Having given up, ring anyway: the producer may be asleep waiting
	 * for space on ring A, which nobody will free now. */
	if (verdict != 1)
		nc_doorbell_ring(&l->peer);
	return verdict == 1 && err == 0 ? 0 : -EPROTO;
}

/* Side A: produce for cfg->seconds, send the end marker, await the report. */
static int produce_timed(struct link *l, struct tput *t,
                         const struct config *cfg)
{
	struct nc_desc d[BATCH];
	uint64_t seq = 0, start = now_ns();
	unsigned int calls = 0;
	int err = 0;
	while (!err && !time_is_up(&calls, start, cfg->seconds)) {
		fill_batch(d, seq, t->batch);
		err = link_send_all(l, d, t->batch);
		seq += t->batch;
	}
	struct nc_desc stop = {.offset = seq, .flags = DESC_STOP};
	if (!err)
		err = link_send_all(l, &stop, 1);
	struct nc_desc report;
	int k = err ? err : link_recv_wait(l, &report, 1);
	t->seconds = (double)(now_ns() - start) / 1e9;
	if (k < 0) {
		say_err("producer", "sending or awaiting the report", k);
		return k;
	}
	t->moved = report.offset;
	t->prod_sleeps = l->sleeps;
	t->cons_sleeps = report.length;
	return report.flags == DESC_STOP && report.offset == seq ? 0 : -EPROTO;
}

/* 2 threads or 2 processes, sleeping on doorbells when idle (after
 * spinning for spin_ns, if that is not 0). */
static int ring_tput_pair(struct tput *t, enum peer_kind kind, uint64_t spin_ns,
                          const struct config *cfg)
{
	struct channel ch;
	int err = channel_open(&ch);
	if (err)
		return err;
	struct consume_args ca = {.batch = t->batch, .spin_ns = spin_ns};
	struct peer p = {
	    .kind = kind, .ch = &ch, .body = consume_all, .arg = &ca};
	struct link l;
	err = link_attach(&l, &ch.region, &ch, true);
	l.spin_ns = spin_ns;
	if (!err)
		err = peer_start(&p);
	if (err) {
		channel_close(&ch);
		return err;
	}
	t->has_sleeps = true;
	err = produce_timed(&l, t, cfg);
	int peer_err = peer_finish(&p, err == 0);
	channel_close(&ch);
	return err ? err : peer_err;
}

/* A 16-byte pipe record: the sequence number and its check word. */
static void put_record(unsigned char *p, uint64_t seq)
{
	uint64_t check = seq_check(seq);
	memcpy(p, &seq, 8);
	memcpy(p + 8, &check, 8);
}

static bool record_ok(const unsigned char *p, uint64_t seq)
{
	unsigned char want[MSG_BYTES];
	put_record(want, seq);
	return memcmp(p, want, MSG_BYTES) == 0;
}

struct pipe_tput {
	int data[2]; /* parent writes records */
	int back[2]; /* child answers with {count, status} */
	unsigned int batch;
};

/* Checks the whole records in buf[0..have); returns bytes consumed, or -1
 * after a bad record. */
static ssize_t take_records(const unsigned char *buf, size_t have,
                            uint64_t *expected)
{
	size_t used = 0;
	for (; have - used >= MSG_BYTES; used += MSG_BYTES) {
		if (!record_ok(buf + used, *expected)) {
			fprintf(stderr,
			        "ring_bench: pipe reader: bad record "
			        "at #%" PRIu64 "\n",
			        *expected);
			return -1;
		}
		(*expected)++;
	}
	return (ssize_t)used;
}

/* Child: read records until end of file (batch*16 bytes per read), check
 * them, and answer {count, 0 ok / 1 bad}. */
static int pipe_reader(void *arg)
{
	struct pipe_tput *pt = arg;
	unsigned char buf[BATCH * MSG_BYTES + MSG_BYTES];
	size_t have = 0;
	uint64_t reply[2] = {0, 0};
	close(pt->data[1]);
	close(pt->back[0]);
	if (ticks_arm(true) != 0)
		return -1;
	for (;;) {
		ssize_t n =
		    read_timed(pt->data[0], buf + have, pt->batch * MSG_BYTES);
		if (n <= 0) {
			if (n < 0)
				say_err("pipe reader", "reading", (int)n);
			reply[1] = n < 0 || have != 0;
			break;
		}
		have += (size_t)n;
		ssize_t used = take_records(buf, have, &reply[0]);
		if (used < 0) {
			reply[1] = 1;
			break;
		}
		have -= (size_t)used;
		memmove(buf, buf + used, have);
	}
	int err = write_timed(pt->back[1], reply, sizeof(reply));
	return err == 0 && reply[1] == 0 ? 0 : -EPROTO;
}

/* Parent: write records for cfg->seconds, close, await the child's count. */
static int pipe_writer(struct pipe_tput *pt, struct tput *t,
                       const struct config *cfg)
{
	unsigned char buf[BATCH * MSG_BYTES];
	uint64_t seq = 0, start = now_ns();
	unsigned int calls = 0;
	int err = 0;
	while (!err && !time_is_up(&calls, start, cfg->seconds)) {
		for (unsigned int i = 0; i < pt->batch; i++)
			put_record(buf + i * MSG_BYTES, seq + i);
		err = write_timed(pt->data[1], buf, pt->batch * MSG_BYTES);
		seq += pt->batch;
	}
	close(pt->data[1]);
	pt->data[1] = -1;
	uint64_t reply[2];
	if (!err)
		err = read_exact(pt->back[0], reply, sizeof(reply));
	t->seconds = (double)(now_ns() - start) / 1e9;
	if (err) {
		say_err("pipe writer", "writing or awaiting the count", err);
		return err;
	}
	t->moved = reply[0];
	return reply[1] == 0 && reply[0] == seq ? 0 : -EPROTO;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static int pipe_tput(struct tput *t, const struct config *cfg)
{
	struct pipe_tput pt = {.batch = t->batch};
	if (pipe(pt.data) != 0)
		return -errno;
	if (pipe(pt.back) != 0) {
		close_fds(pt.data, 2);
		return -errno;
	}
	int err = ticks_arm(true);
	pid_t pid = err ? err : child_start(pipe_reader, &pt);
	if (pid < 0) {
		close_fds(pt.data, 2);
		close_fds(pt.back, 2);
		ticks_arm(false);
		return pid;
	}
	close(pt.data[0]);
	close(pt.back[1]);
	pt.data[0] = pt.back[1] = -1;
	err = pipe_writer(&pt, t, cfg);
	int child_err = child_finish(pid, err == 0);
	ticks_arm(false);
	close_fds(pt.data, 2);
	close_fds(pt.back, 2);
	return err ? err : child_err;
}

/* ----------------------------------------------------- round-trip rows */

struct rtt {
	const char *name;
	double median_us;
	double p99_us;
	double min_us;
	double mean_us;
	uint64_t sleeps; /* ring only: times a side really slept ... */
	uint64_t waits;  /* ... out of times it waited for a message */
	bool ok;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples. */
static double percentile_us(const uint64_t *ns, size_t n, unsigned int pct)
{
	size_t rank = (n * pct + 99) / 100;
	return (double)ns[rank > 0 ? rank - 1 : 0] / 1e3;
}

static void rtt_summarize(struct rtt *r, uint64_t *ns, size_t n)
{
	if (n == 0)
		return;
	qsort(ns, n, sizeof(ns[0]), cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (double)ns[i];
	r->median_us = percentile_us(ns, n, 50);
	r->p99_us = percentile_us(ns, n, 99);
	r->min_us = (double)ns[0] / 1e3;
	r->mean_us = sum / (double)n / 1e3;
}

/* Side B of the ring round trip: echo each descriptor; on the end marker,
 * answer with our sleep count and stop. */
static int ring_echo(struct link *l, const void *arg)
{
	(void)arg;
	uint64_t expected = 0;
	for (;;) {
		struct nc_desc d;
		int k = link_recv_wait(l, &d, 1);
		if (k < 0) {
			say_err("echo", "receiving", k);
			return k;
		}
		int v = take_desc(&expected, &d, "echo");
		if (v < 0)
			return v;
		if (v == 1)
			d = (struct nc_desc){.offset = l->sleeps,
			                     .flags = DESC_STOP};
		int err = link_send_all(l, &d, 1);
		if (err || v == 1)
			return err;
	}
}

/* One ring round trip, checked: 0, or negative. */
static int ring_ping(struct link *l, uint64_t seq)
{
	struct nc_desc d = seq_desc(seq), r;
	int err = link_send_all(l, &d, 1);
	int k = err ? err : link_recv_wait(l, &r, 1);
	if (k < 0) {
		say_err("ping", "round trip", k);
		return k;
	}
	uint64_t expected = seq;
	return take_desc(&expected, &r, "ping");
}

/* Ends the echo and returns its sleep count through *sleeps. */
static int ring_ping_stop(struct link *l, uint64_t count, uint64_t *sleeps)
{
	struct nc_desc stop = {.offset = count, .flags = DESC_STOP}, r;
	int err = link_send_all(l, &stop, 1);
	int k = err ? err : link_recv_wait(l, &r, 1);
	if (k < 0 || r.flags != DESC_STOP)
		return k < 0 ? k : -EPROTO;
	*sleeps = r.offset;
	return 0;
}

static int ring_rtt(struct rtt *r, uint64_t *ns, const struct config *cfg)
{
	struct channel ch;
	int err = channel_open(&ch);
	if (err)
		return err;
	struct peer p = {.kind = PEER_PROCESS, .ch = &ch, .body = ring_echo};
	struct link l;
	err = link_attach(&l, &ch.region, &ch, true);
	if (!err)
		err = peer_start(&p);
	if (err) {
		channel_close(&ch);
		return err;
	}
	uint64_t total = cfg->warmup + cfg->round_trips, i, echo_sleeps = 0;
	for (i = 0; i < total && !err; i++) {
		uint64_t t0 = now_ns();
		err = ring_ping(&l, i);
		if (i >= cfg->warmup)
			ns[i - cfg->warmup] = now_ns() - t0;
	}
	if (!err)
		err = ring_ping_stop(&l, total, &echo_sleeps);
	int peer_err = peer_finish(&p, err == 0);
	channel_close(&ch);
	/* Each side waited for total + 1 messages (the last: the stop). */
	r->sleeps += l.sleeps + echo_sleeps;
	r->waits += 2 * (total + 1);
	return err ? err : peer_err;
}

/*
 * Pipe and socket round trips share one shape: the parent writes a message
 * of `len` bytes (the low bytes of the sequence number) on `out` and blocks
 * reading the echo on `in`; the child does the mirror image on its pair.
 * The parent ends the run by closing its ends (the child reads end of file
 * and exits 0 if it echoed exactly the expected count).
 */
struct fd_rtt {
	int parent_out, parent_in;
	int child_in, child_out;
	size_t len;
	uint64_t total;
};

static void close_pair(int a, int b)
{
	close(a);
	if (b != a)
		close(b);
}

static int fd_echo(void *arg)
{
	struct fd_rtt *f = arg;
	close_pair(f->parent_out, f->parent_in);
	if (ticks_arm(true) != 0)
		return -1;
	for (uint64_t seq = 0;; seq++) {
		uint64_t msg = 0;
		ssize_t n = read_timed(f->child_in, &msg, f->len);
		if (n == 0)
			return seq == f->total ? 0 : -EPROTO;
		if (n != (ssize_t)f->len || memcmp(&msg, &seq, f->len) != 0) {
			fprintf(stderr,
			        "ring_bench: fd echo: bad message "
			        "#%" PRIu64 "\n",
			        seq);
			return -EPROTO;
		}
		if (write_timed(f->child_out, &msg, f->len) != 0)
			return -EPIPE;
	}
}

static int fd_ping(const struct fd_rtt *f, uint64_t seq)
{
	uint64_t back = 0;
	int err = write_timed(f->parent_out, &seq, f->len);
	if (err)
		return err;
	ssize_t n = read_timed(f->parent_in, &back, f->len);
	if (n < 0) {
		say_err("fd ping", "awaiting the echo", (int)n);
		return (int)n;
	}
	if (n == (ssize_t)f->len && memcmp(&back, &seq, f->len) == 0)
		return 0;
	fprintf(stderr, "ring_bench: fd ping: bad echo of #%" PRIu64 "\n", seq);
	return -EPROTO;
}

static int fd_rtt_run(struct fd_rtt *f, uint64_t *ns, const struct config *cfg)
{
	f->total = cfg->warmup + cfg->round_trips;
	int err = ticks_arm(true);
	pid_t pid = err ? err : child_start(fd_echo, f);
	close_pair(f->child_in, f->child_out);
	if (pid < 0) {
		close_pair(f->parent_out, f->parent_in);
		ticks_arm(false);
		return pid;
	}
	for (uint64_t i = 0; i < f->total && !err; i++) {
		uint64_t t0 = now_ns();
		err = fd_ping(f, i);
		if (i >= cfg->warmup)
			ns[i - cfg->warmup] = now_ns() - t0;
	}
	close_pair(f->parent_out, f->parent_in);
	int child_err = child_finish(pid, err == 0);
	ticks_arm(false);
	return err ? err : child_err;
}

static int pipe_rtt(struct rtt *r, uint64_t *ns, const struct config *cfg)
{
	(void)r;
	int ping[2], pong[2];
	if (pipe(ping) != 0)
		return -errno;
	if (pipe(pong) != 0) {
		close_fds(ping, 2);
		return -errno;
	}
	struct fd_rtt f = {.parent_out = ping[1],
	                   .parent_in = pong[0],
	                   .child_in = ping[0],
	                   .child_out = pong[1],
	                   .len = 1};
	return fd_rtt_run(&f, ns, cfg);
}

static int unix_rtt(struct rtt *r, uint64_t *ns, const struct config *cfg)
{
	(void)r;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
		return -errno;
	struct fd_rtt f = {.parent_out = sv[0],
	                   .parent_in = sv[0],
	                   .child_in = sv[1],
	                   .child_out = sv[1],
	                   .len = 8};
	return fd_rtt_run(&f, ns, cfg);
}

/* --------------------------------------------------------------- output */

/* The first "model name" (x86) or "Model"/"Hardware" (arm) of cpuinfo. */
static void cpu_model(char *out, size_t len)
{
	snprintf(out, len, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f == NULL)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');
		if (colon == NULL || (strncmp(line, "model name", 10) != 0 &&
		                      strncmp(line, "Model", 5) != 0 &&
		                      strncmp(line, "Hardware", 8) != 0))
			continue;
		snprintf(out, len, "%s", colon + 1 + (colon[1] == ' '));
		out[strcspn(out, "\n")] = '\0';
		break;
	}
	fclose(f);
}

static void print_command(int argc, char **argv)
{
	printf("command : ");
	for (int i = 0; i < argc; i++)
		printf(strpbrk(argv[i], " \t'\"") ? "'%s'%s" : "%s%s", argv[i],
		       i + 1 < argc ? " " : "\n");
}

static void loadavg(char *out, size_t len)
{
	snprintf(out, len, "?");
	FILE *f = fopen("/proc/loadavg", "r");
	if (f == NULL)
		return;
	if (fgets(out, (int)len, f) != NULL)
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static void print_machine(void)
{
	char model[160], load[64];
	cpu_set_t set;
	int usable =
	    sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : -1;
	cpu_model(model, sizeof(model));
	printf("nproc   : %d usable (%ld online)\n", usable,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("cpu     : %s\n", model);
	struct utsname u;
	if (uname(&u) == 0)
		printf("kernel  : %s %s %s\n", u.sysname, u.release, u.machine);
	loadavg(load, sizeof(load));
	printf("loadavg : %s (at start; other work shares these CPUs)\n", load);
}

static void print_build(const struct config *cfg)
{
	const char *opt = "not optimized";
#ifdef __OPTIMIZE__
	opt = "optimized";
#endif
	const char *san = "";
#ifdef __SANITIZE_ADDRESS__
	san = ", AddressSanitizer";
#endif
	printf("build   : gcc %s, %s%s\n", __VERSION__, opt, san);
	printf("mode    : %s: %.2f s per throughput row, %" PRIu64
	       " round trips per round-trip row,\n"
	       "          each in %u interleaved rounds (+%" PRIu64
	       " warm-up round trips per round)\n",
	       cfg->quick ? "quick" : "full", cfg->seconds, cfg->round_trips,
	       cfg->rounds, cfg->warmup);
	printf("ring    : %u slots (%u usable), 16-byte descriptors, batch "
	       "%u; timeout %d ms per wait\n\n",
	       RING_SLOTS, RING_SLOTS - 1, BATCH, WAIT_TIMEOUT_MS);
}

static void print_tput_header(void)
{
	printf("Throughput: descriptors (ring) or 16-byte records (pipe) per "
	       "second\n");
	printf("  %-19s %5s %11s %6s %8s %6s %8s %14s  %s\n", "case", "batch",
	       "moved", "secs", "M/s", "spread", "ns/each", "sleeps/1k c/p",
	       "check");
}

static void print_tput(const struct tput *t)
{
	char sleeps[32] = "-";
	double k = (double)t->moved / 1000.0;
	if (t->has_sleeps && k > 0)
		snprintf(sleeps, sizeof(sleeps), "%.2f/%.2f",
		         (double)t->cons_sleeps / k,
		         (double)t->prod_sleeps / k);
	double rate = tput_rate(t);
	/* Half the range of the per-round rates, relative to the total. */
	double spread = rate > 0 ? (t->max_rate - t->min_rate) / 2 / rate : 0;
	printf("  %-19s %5u %11" PRIu64 " %6.2f %8.2f %5.0f%% %8.1f %14s  "
	       "%s\n",
	       t->name, t->batch, t->moved, t->seconds, rate / 1e6,
	       spread * 100, rate > 0 ? 1e9 / rate : 0.0, sleeps,
	       t->ok ? "ok" : "FAIL");
	fflush(stdout);
}

static void print_rtt_header(const struct config *cfg)
{
	printf("\nRound trip: 2 processes, both asleep between messages; "
	       "%" PRIu64 " round trips each;\n"
	       "both pinned to CPU %d (1 CPU), or to CPUs %d and %d (2 CPUs)\n",
	       cfg->round_trips, cpu_pair[0], cpu_pair[0], cpu_pair[1]);
	printf("  %-24s %9s %9s %9s %9s %12s  %s\n", "case", "median us",
	       "p99 us", "min us", "mean us", "wake-ups/msg", "check");
}

static void print_rtt(const struct rtt *r)
{
	char wake[16] = "-";
	if (r->waits > 0)
		snprintf(wake, sizeof(wake), "%.2f",
		         (double)r->sleeps / (double)r->waits);
	printf("  %-24s %9.2f %9.2f %9.2f %9.2f %12s  %s\n", r->name,
	       r->median_us, r->p99_us, r->min_us, r->mean_us, wake,
	       r->ok ? "ok" : "FAIL");
	fflush(stdout);
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

/* Indices into the throughput table, in the order it is measured. */
enum {
	T_1T_1,
	T_1T_B,
	T_2T_1,
	T_2T_B,
	T_2P_1,
	T_2P_B,
	T_2S_1,
	T_2S_B,
	T_PIPE_1,
	T_PIPE_B,
	T_COUNT
};
/* The round-trip table: each kind on one CPU, then on two. */
enum { R_RING_1, R_PIPE_1, R_UNIX_1, R_RING_2, R_PIPE_2, R_UNIX_2, R_COUNT };

static void print_ratios(const struct tput *t, const struct rtt *r)
{
	printf("\nRatios\n");
	printf("  round trip, ring+doorbell / pipe    : 1 CPU median %.2f p99 "
	       "%.2f, 2 CPUs median %.2f p99 %.2f  (<1: ring faster)\n",
	       ratio(r[R_RING_1].median_us, r[R_PIPE_1].median_us),
	       ratio(r[R_RING_1].p99_us, r[R_PIPE_1].p99_us),
	       ratio(r[R_RING_2].median_us, r[R_PIPE_2].median_us),
	       ratio(r[R_RING_2].p99_us, r[R_PIPE_2].p99_us));
	printf("  round trip, ring+doorbell / unix    : 1 CPU median %.2f p99 "
	       "%.2f, 2 CPUs median %.2f p99 %.2f\n",
	       ratio(r[R_RING_1].median_us, r[R_UNIX_1].median_us),
	       ratio(r[R_RING_1].p99_us, r[R_UNIX_1].p99_us),
	       ratio(r[R_RING_2].median_us, r[R_UNIX_2].median_us),
	       ratio(r[R_RING_2].p99_us, r[R_UNIX_2].p99_us));
	printf(
	    "  round trip, 2 CPUs / 1 CPU          : ring %.1fx, pipe %.1fx, "
	    "unix %.1fx (median: the price of crossing CPUs)\n",
	    ratio(r[R_RING_2].median_us, r[R_RING_1].median_us),
	    ratio(r[R_PIPE_2].median_us, r[R_PIPE_1].median_us),
	    ratio(r[R_UNIX_2].median_us, r[R_UNIX_1].median_us));
	printf("  throughput, 2-process ring / pipe   : batch 1 %.1fx, batch "
	       "%u %.1fx  (>1: ring faster)\n",
	       ratio(tput_rate(&t[T_2P_1]), tput_rate(&t[T_PIPE_1])), BATCH,
	       ratio(tput_rate(&t[T_2P_B]), tput_rate(&t[T_PIPE_B])));
	printf("  ... the same, ring spinning first   : batch 1 %.1fx, batch "
	       "%u %.1fx\n",
	       ratio(tput_rate(&t[T_2S_1]), tput_rate(&t[T_PIPE_1])), BATCH,
	       ratio(tput_rate(&t[T_2S_B]), tput_rate(&t[T_PIPE_B])));
	printf("  throughput, ring batch %u / batch 1  : 1 thread %.1fx, 2 "
	       "threads %.1fx, 2 processes %.1fx\n",
	       BATCH, ratio(tput_rate(&t[T_1T_B]), tput_rate(&t[T_1T_1])),
	       ratio(tput_rate(&t[T_2T_B]), tput_rate(&t[T_2T_1])),
	       ratio(tput_rate(&t[T_2P_B]), tput_rate(&t[T_2P_1])));
	printf("  throughput, 2 processes / 2 threads : batch 1 %.2f, batch "
	       "%u %.2f  (~1: the process boundary is free)\n",
	       ratio(tput_rate(&t[T_2P_1]), tput_rate(&t[T_2T_1])), BATCH,
	       ratio(tput_rate(&t[T_2P_B]), tput_rate(&t[T_2T_B])));
	printf("  throughput, 2 processes spin / not  : batch 1 %.2f, batch "
	       "%u %.2f  (>1: spinning %llu us before sleeping pays)\n",
	       ratio(tput_rate(&t[T_2S_1]), tput_rate(&t[T_2P_1])), BATCH,
	       ratio(tput_rate(&t[T_2S_B]), tput_rate(&t[T_2P_B])),
	       SPIN_NS / 1000);
}

/* ------------------------------------------------------------ the runs */

static int ring_tput_threads(struct tput *t, const struct config *cfg)
{
	return ring_tput_pair(t, PEER_THREAD, 0, cfg);
}

static int ring_tput_processes(struct tput *t, const struct config *cfg)
{
	return ring_tput_pair(t, PEER_PROCESS, 0, cfg);
}

static int ring_tput_spinning(struct tput *t, const struct config *cfg)
{
	return ring_tput_pair(t, PEER_PROCESS, SPIN_NS, cfg);
}

static const struct {
	const char *name;
	unsigned int batch;
	int (*run)(struct tput *t, const struct config *cfg);
} tput_rows[T_COUNT] = {
    [T_1T_1] = {"ring, 1 thread", 1, ring_tput_single},
    [T_1T_B] = {"ring, 1 thread", BATCH, ring_tput_single},
    [T_2T_1] = {"ring, 2 threads", 1, ring_tput_threads},
    [T_2T_B] = {"ring, 2 threads", BATCH, ring_tput_threads},
    [T_2P_1] = {"ring, 2 processes", 1, ring_tput_processes},
    [T_2P_B] = {"ring, 2 processes", BATCH, ring_tput_processes},
    [T_2S_1] = {"ring, 2 procs, spin", 1, ring_tput_spinning},
    [T_2S_B] = {"ring, 2 procs, spin", BATCH, ring_tput_spinning},
    [T_PIPE_1] = {"pipe, 2 processes", 1, pipe_tput},
    [T_PIPE_B] = {"pipe, 2 processes", BATCH, pipe_tput},
};

static const struct {
	const char *name;
	bool two_cpus;
	int (*run)(struct rtt *r, uint64_t *ns, const struct config *cfg);
} rtt_rows[R_COUNT] = {
    [R_RING_1] = {"ring+doorbell, 1 CPU", false, ring_rtt},
    [R_PIPE_1] = {"pipe 1 byte, 1 CPU", false, pipe_rtt},
    [R_UNIX_1] = {"unix 8 bytes, 1 CPU", false, unix_rtt},
    [R_RING_2] = {"ring+doorbell, 2 CPUs", true, ring_rtt},
    [R_PIPE_2] = {"pipe 1 byte, 2 CPUs", true, pipe_rtt},
    [R_UNIX_2] = {"unix 8 bytes, 2 CPUs", true, unix_rtt},
};

/* Adds one round's measurement of a row into the row's totals. */
static void tput_add(struct tput *t, const struct tput *one, int err)
{
	double rate = tput_rate(one);
	bool first = t->seconds == 0;
	t->moved += one->moved;
	t->seconds += one->seconds;
	t->has_sleeps = one->has_sleeps;
	t->prod_sleeps += one->prod_sleeps;
	t->cons_sleeps += one->cons_sleeps;
	t->min_rate = first || rate < t->min_rate ? rate : t->min_rate;
	t->max_rate = first || rate > t->max_rate ? rate : t->max_rate;
	t->ok = t->ok && err == 0;
}

static void progress(const char *what, unsigned int round,
                     const struct config *cfg)
{
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "  [%s: round %u of %u]\r", what, round + 1,
		        cfg->rounds);
}

/* A failed row is not run again: each failure may cost a full timeout. */
static bool run_tputs(struct tput *t, const struct config *cfg)
{
	struct config slice = *cfg;
	slice.seconds = cfg->seconds / cfg->rounds;
	for (int i = 0; i < T_COUNT; i++)
		t[i] = (struct tput){.name = tput_rows[i].name,
		                     .batch = tput_rows[i].batch,
		                     .ok = true};
	for (unsigned int round = 0; round < cfg->rounds; round++) {
		progress("throughput", round, cfg);
		for (int i = 0; i < T_COUNT; i++) {
			if (!t[i].ok)
				continue;
			struct tput one = {.batch = t[i].batch};
			int err = tput_rows[i].run(&one, &slice);
			if (err)
				say_err(t[i].name, "failed", err);
			tput_add(&t[i], &one, err);
		}
	}
	bool ok = true;
	print_tput_header();
	for (int i = 0; i < T_COUNT; i++) {
		print_tput(&t[i]);
		ok = ok && t[i].ok;
	}
	return ok;
}

/* `ns` holds cfg->round_trips samples per row; each round fills the next
 * stretch of every row's. */
static bool run_rtts(struct rtt *r, uint64_t *ns, const struct config *cfg)
{
	uint64_t done = 0;
	for (int i = 0; i < R_COUNT; i++)
		r[i] = (struct rtt){.name = rtt_rows[i].name, .ok = true};
	for (unsigned int round = 0; round < cfg->rounds; round++) {
		progress("round trips", round, cfg);
		struct config slice = *cfg;
		slice.round_trips =
		    cfg->round_trips * (round + 1) / cfg->rounds - done;
		for (int i = 0; i < R_COUNT; i++) {
			if (!r[i].ok)
				continue;
			uint64_t *row = ns + (size_t)i * cfg->round_trips;
			int err = place_sides(rtt_rows[i].two_cpus);
			if (!err)
				err =
				    rtt_rows[i].run(&r[i], row + done, &slice);
			if (err)
				say_err(r[i].name, "failed", err);
			r[i].ok = err == 0;
		}
		done += slice.round_trips;
	}
	bool ok = true;
	print_rtt_header(cfg);
	for (int i = 0; i < R_COUNT; i++) {
		if (r[i].ok)
			rtt_summarize(&r[i], ns + (size_t)i * cfg->round_trips,
			              cfg->round_trips);
		print_rtt(&r[i]);
		ok = ok && r[i].ok;
	}
	return ok;
}

static int usage(void)
{
	fprintf(
	    stderr,
	    "usage: ring_bench [--quick] [--seconds S] [--round-trips N] "
	    "[--rounds R] [--pin]\n"
	    "  --quick          0.1 s per throughput row, 2000 round "
	    "trips, 2 rounds:\n"
	    "                   a self-check that finishes in ~1-2 s\n"
	    "  --seconds S      seconds per throughput row (default 2)\n"
	    "  --round-trips N  measured round trips per row (default "
	    "30000)\n"
	    "  --rounds R       slices each row is measured in, "
	    "interleaved (default 5)\n"
	    "  --pin            run the throughput table's two sides on two "
	    "CPUs\n"
	    "Options apply in order: --quick, then overrides.\n");
	return 2;
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
	*cfg = (struct config){
	    .seconds = 2.0, .round_trips = 30000, .warmup = 500, .rounds = 5};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		if (strcmp(a, "--quick") == 0) {
			cfg->quick = true;
			cfg->seconds = 0.1;
			cfg->round_trips = 2000;
			cfg->warmup = 100;
			cfg->rounds = 2;
		} else if (strcmp(a, "--seconds") == 0 && *v) {
			cfg->seconds = strtod(v, NULL);
			i++;
		} else if (strcmp(a, "--round-trips") == 0 && *v) {
			cfg->round_trips = strtoull(v, NULL, 10);
			i++;
		} else if (strcmp(a, "--pin") == 0) {
			cfg->pin = true;
		} else if (strcmp(a, "--rounds") == 0 && *v) {
			cfg->rounds = (unsigned int)strtoul(v, NULL, 10);
			i++;
		} else {
			return usage();
		}
	}
	if (!(cfg->seconds > 0 && cfg->seconds <= 60) || cfg->rounds == 0 ||
	    cfg->rounds > 100 || cfg->round_trips < cfg->rounds ||
	    cfg->round_trips > 10000000)
		return usage();
	return 0;
}

/* Says what runs where, pinning first if asked. 0, or 2 on a bad --pin. */
static int start_run(int argc, char **argv, const struct config *cfg)
{
	printf("netcore ring_bench\n");
	print_command(argc, argv);
	print_machine(); /* before pinning: what the whole run may use */
	if (find_cpus() != 0 || (cfg->pin && (cpu_pair[0] == cpu_pair[1] ||
	                                      place_sides(true) != 0))) {
		fprintf(stderr, "ring_bench: cannot find or pin to two CPUs\n");
		return 2;
	}
	if (cfg->pin)
		printf("pinning : throughput: side A on CPU %d, side B on CPU "
		       "%d (--pin)\n",
		       cpu_pair[0], cpu_pair[1]);
	else
		printf("pinning : throughput: none, the scheduler places both "
		       "sides\n");
	if (cpu_pair[0] == cpu_pair[1])
		printf("pinning : only one usable CPU: the \"2 CPUs\" rows "
		       "run on one\n");
	print_build(cfg);
	return 0;
}

int main(int argc, char **argv)
{
	struct config cfg;
	if (parse_args(argc, argv, &cfg) != 0)
		return 2;
	/* A dead peer must show up as EPIPE on our side, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	uint64_t *ns = calloc(R_COUNT * cfg.round_trips, sizeof(*ns));
	int rc = ns == NULL || ticks_install() != 0 ? 1 : 0;
	if (rc)
		fprintf(stderr, "ring_bench: cannot set up\n");
	else
		rc = start_run(argc, argv, &cfg);
	if (rc) {
		free(ns);
		return rc;
	}

	struct tput t[T_COUNT];
	struct rtt r[R_COUNT];
	bool ok = run_tputs(t, &cfg);
	ok = run_rtts(r, ns, &cfg) && ok;
	free(ns);
	print_ratios(t, r);
	char load[64];
	loadavg(load, sizeof(load));
	printf("\nloadavg : %s (at end)\n", load);
	printf("self-check: %s\n",
	       ok ? "PASS (every row: all in order, intact, none lost)"
	          : "FAIL (see the messages above)");
	return ok ? 0 : 1;
}
