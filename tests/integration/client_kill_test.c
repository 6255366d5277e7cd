/*
 * A client SIGKILLed mid-transfer, 1,000 times in a row (issue 4's fault
 * acceptance: "a client dies: its sockets are closed and its region
 * reclaimed; nobody else notices").
 *
 * Each iteration forks a client into an empty network namespace of its
 * own (so its bytes can only go through netcore). It attaches with
 * libclient, connects to a kernel-side server (this process, inside the
 * testbed's namespace) and streams a byte pattern. Once the server has
 * received and verified 64 KiB, the client is SIGKILLed; the server must
 * then see the connection end (EOF or ECONNRESET) within 10 s, and every
 * byte that still arrives must be the pattern.
 *
 * Quota: the broker's memory_limit holds one client region and a half, so
 * each new client attaches only once the previous one's region has been
 * released (an attach refused with ENOBUFS meanwhile is retried, bounded,
 * and counted). At three checkpoints (before, after 100 iterations, after
 * 1,000) the broker's SIGUSR1 dump must show no client, socket, memory or
 * call left, neither may still map a client region, and the broker's and
 * core's VmRSS and open descriptors are measured: between 100 and 1,000
 * RSS may grow less than 2 MiB (8 MiB under AddressSanitizer, whose
 * allocator keeps freed memory in quarantine) and the descriptor counts
 * must be equal. For the core that limit applies to its RSS outside the
 * phy region, a fixed 32 MiB mapping whose pages count as packets first
 * touch them (2-5 MiB more between 100 and 1,000, ever slower); its growth
 * is printed beside. Under AddressSanitizer the services run with a 1 MiB
 * quarantine (instead of 256 MiB), else freed memory held on purpose would
 * be all one measures. Every other client dies with data it never read
 * (the server sends it 256 KiB just before the kill). The contract says
 * the core resets such a connection and closes the others with a FIN
 * (docs/sockets-spec.md); either end passes here, since the data may still
 * be on its way when the client dies, and the counts are printed.
 *
 * Before that, 200 clients are killed at random moments in their first
 * 12 ms (before, during and after attaching and connecting), each followed
 * by the broker's dump coming back to nothing and every connection the
 * client made ending. At the end the services are stopped with SIGTERM and
 * must exit 0 (under AddressSanitizer, LeakSanitizer checks them then),
 * the core reporting every client it added removed, none broken, no
 * client and no socket left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/faultkit.h"

#define PORT         9000
#define ITERATIONS   1000
#define WARM_UP      100
#define MIN_BYTES    (64 * 1024)
#define STEP_MS      15000 /* one iteration, attach to kill */
#define CLOSE_MS     10000 /* kill to the server seeing the end */
#define RANDOM_KILLS 200
#define RANDOM_PORT  9001

#if defined(__SANITIZE_ADDRESS__)
#define RSS_GROWTH_KIB (8 * 1024)
#else
#define RSS_GROWTH_KIB (2 * 1024)
#endif

enum { MSG_FAIL = 1, MSG_ATTACHED, MSG_CONNECTED };

static struct nc_testbed tb;
static char log_path[128];
static int listen_fd = -1;
static int random_fd = -1; /* a listener of its own for random kills */
static bool passed;
static int tests_passed;

static int listener(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port)};
	inet_pton(AF_INET, NC_TB_KERNEL4, &sin.sin_addr);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(fd, 16) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int teardown(void **state);

/* A failed setup leaves nothing behind (cmocka skips the teardown). */
static int setup_failed(void)
{
	teardown(NULL);
	return -1;
}

static int setup(void **state)
{
	(void)state;
	char config[512];
	uint64_t region = fk_region_bytes(64, 64, 512, 16384);
	/* One region and a half: a second client cannot attach while the
	 * first one's region is still counted. */
	snprintf(config, sizeof(config),
	         "max_clients 4\n"
	         "memory_limit %llu\n",
	         (unsigned long long)(region + region / 2));
#if defined(__SANITIZE_ADDRESS__)
	/* The services inherit this. AddressSanitizer keeps up to 256 MiB
	 * of freed memory in quarantine, which would swamp what this test
	 * measures; 1 MiB still catches a use right after a free. */
	static char asan[512];
	const char *old = getenv("ASAN_OPTIONS");
	snprintf(asan, sizeof(asan),
	         "%s%squarantine_size_mb=1:thread_local_quarantine_size_kb=64",
	         old != NULL ? old : "", old != NULL && *old ? ":" : "");
	setenv("ASAN_OPTIONS", asan, 1);
#endif
	if (fk_testbed_start(&tb, "clkill", config, log_path,
	                     sizeof(log_path)) != 0 ||
	    nc_testbed_enter(&tb) != 0)
		return setup_failed();
	listen_fd = listener(PORT);
	random_fd = listener(RANDOM_PORT);
	return listen_fd >= 0 && random_fd >= 0 ? 0 : setup_failed();
}

static int teardown(void **state)
{
	(void)state;
	fk_reap_all();
	if (listen_fd >= 0)
		close(listen_fd);
	if (random_fd >= 0)
		close(random_fd);
	listen_fd = random_fd = -1;
	fk_testbed_stop(&tb, log_path, !passed);
	return 0;
}

/* ------------------------------------------------------------- client */

static void client_fail(int fd, int err)
{
	fk_msg_send(fd, MSG_FAIL, err);
	_exit(2);
}

/* The child: attach, connect, stream the pattern until killed. */
static void client_main(int report, uint16_t port, uint64_t seed)
{
	if (unshare(CLONE_NEWNET) != 0)
		client_fail(report, errno);
	struct nc_client *c;
	int retries = 0;
	int err =
	    fk_nc_attach(tb.broker_socket, &c, fk_now_ms() + 10000, &retries);
	if (err)
		client_fail(report, -err);
	fk_msg_send(report, MSG_ATTACHED, retries);
	struct nc_sock *s;
	err = fk_nc_connect(c, NC_TB_KERNEL4, port, 10000, &s);
	if (err)
		client_fail(report, -err);
	fk_msg_send(report, MSG_CONNECTED, 0);
	static uint8_t buf[64 * 1024];
	for (uint64_t off = 0;; off += sizeof(buf)) {
		fk_pat_fill(seed, off, buf, sizeof(buf));
		err = fk_nc_send_all(s, buf, sizeof(buf));
		if (err)
			client_fail(report, -err);
	}
}

/* -------------------------------------------------------------- server */

struct totals {
	long attach_retries;
	int64_t worst_close_ms;
	int64_t sum_close_ms;
	int64_t worst_iteration_ms;
	int resets[2], eofs[2]; /* [1]: the client had unread data */
	uint64_t bytes, sent;
};

/* A message from the child, if one is there; fails the test on MSG_FAIL
 * or on the child's death before it was killed. */
static void take_report(int fd, int iteration, struct totals *t)
{
	struct fk_msg m;
	int err = fk_msg_recv(fd, &m, fk_now_ms());
	if (err == -ETIMEDOUT)
		return;
	if (err == -EPIPE)
		fail_msg("iteration %d: the client died before it was killed",
		         iteration);
	assert_int_equal(err, 0);
	if (m.kind == MSG_FAIL)
		fail_msg("iteration %d: the client failed: %s", iteration,
		         strerror((int)m.value));
	if (m.kind == MSG_ATTACHED)
		t->attach_retries += m.value;
}

/* Waits for the listener or the report pipe; accepts the connection. */
static int accept_client(int report, int iteration, struct totals *t,
                         int64_t deadline)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		assert_true(errno == EAGAIN || errno == EINTR);
		struct pollfd p[2] = {{.fd = listen_fd, .events = POLLIN},
		                      {.fd = report, .events = POLLIN}};
		int left = (int)(deadline - fk_now_ms());
		if (left <= 0)
			fail_msg("iteration %d: no connection from the client "
			         "within %d ms",
			         iteration, STEP_MS);
		poll(p, 2, left);
		if (p[1].revents)
			take_report(report, iteration, t);
	}
}

/* Reads until `want` bytes (want > 0) or the end (want 0: EOF or reset,
 * which is returned as 0 or -ECONNRESET). Every byte is checked. */
static int read_stream(int fd, int report, uint64_t seed, uint64_t *got,
                       uint64_t want, int iteration, struct totals *t,
                       int64_t deadline)
{
	static uint8_t buf[256 * 1024];
	for (;;) {
		if (want > 0 && *got >= want)
			return 1;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			long bad = fk_pat_check(seed, *got, buf, (size_t)n);
			if (bad >= 0)
				fail_msg(
				    "iteration %d: byte %llu is wrong",
				    iteration,
				    (unsigned long long)(*got + (uint64_t)bad));
			*got += (uint64_t)n;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == ECONNRESET)
			return -ECONNRESET;
		assert_true(errno == EAGAIN || errno == EINTR);
		int left = (int)(deadline - fk_now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
		                      {.fd = report, .events = POLLIN}};
		poll(p, want > 0 ? 2 : 1, left);
		if (want > 0 && p[1].revents)
			take_report(report, iteration, t);
	}
}

/* Sends up to `max` bytes without blocking; how many went. */
static uint64_t send_some(int fd, size_t max)
{
	static uint8_t junk[64 * 1024];
	uint64_t sent = 0;
	while (sent < max) {
		ssize_t n =
		    send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += (uint64_t)n;
	}
	return sent;
}

static void one_iteration(int i, struct totals *t)
{
	int64_t start = fk_now_ms();
	uint64_t seed = 0x6b696c6c00000000ull + (uint64_t)i;
	int report[2];
	assert_int_equal(pipe2(report, O_CLOEXEC), 0);
	pid_t pid = fk_fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(report[0]);
		close(listen_fd);
		close(random_fd);
		client_main(report[1], PORT, seed);
	}
	close(report[1]);
	int64_t deadline = start + STEP_MS;
	int conn = accept_client(report[0], i, t, deadline);
	uint64_t got = 0;
	int rc =
	    read_stream(conn, report[0], seed, &got, MIN_BYTES, i, t, deadline);
	if (rc != 1)
		fail_msg("iteration %d: %llu bytes then %s before %d bytes", i,
		         (unsigned long long)got,
		         rc == 0 ? "EOF" : strerror(-rc), MIN_BYTES);
	/* Any report still queued (ATTACHED, with its retries). */
	take_report(report[0], i, t);
	take_report(report[0], i, t);
	/* Every other client dies with data it never read: the server
	 * sends some, and the client never reads. */
	bool unread = i % 2 == 1;
	if (unread)
		t->sent += send_some(conn, 256 * 1024);
	kill(pid, SIGKILL);
	int64_t killed = fk_now_ms();
	int status;
	assert_int_equal(fk_wait(pid, killed + 5000, &status), 0);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	close(report[0]);
	rc = read_stream(conn, -1, seed, &got, 0, i, t, killed + CLOSE_MS);
	int64_t closed = fk_now_ms();
	if (rc == -ETIMEDOUT)
		fail_msg("iteration %d: the server saw no EOF or reset within "
		         "%d ms of the kill (%llu bytes received)",
		         i, CLOSE_MS, (unsigned long long)got);
	close(conn);
	if (rc == 0)
		t->eofs[unread]++;
	else
		t->resets[unread]++;
	t->bytes += got;
	t->sum_close_ms += closed - killed;
	if (closed - killed > t->worst_close_ms)
		t->worst_close_ms = closed - killed;
	if (closed - start > t->worst_iteration_ms)
		t->worst_iteration_ms = closed - start;
}

/* ------------------------------------------------------------- figures */

struct snapshot {
	long broker_rss, core_rss;
	long core_phy_rss; /* of it, the phy region's pages */
	int broker_fds, core_fds;
	int broker_regions, core_regions; /* client regions still mapped */
	char dump[512];
};

static void snap(const char *when, struct snapshot *s)
{
	int err = fk_wait_broker_idle(&tb, log_path, s->dump, sizeof(s->dump),
	                              fk_now_ms() + 10000);
	if (err)
		fail_msg("%s: the broker did not come back to no clients, no "
		         "memory within 10 s (%s); last dump: %s",
		         when, strerror(-err), s->dump);
	long unused;
	s->broker_rss = fk_rss_kib(tb.broker_pid);
	s->core_rss = fk_rss_kib(tb.core_pid);
	s->broker_fds = fk_fd_count(tb.broker_pid);
	s->core_fds = fk_fd_count(tb.core_pid);
	assert_int_equal(
	    fk_mappings(tb.core_pid, "netcore-phy", &s->core_phy_rss), 1);
	s->core_regions = fk_mappings(tb.core_pid, "netcore-client", &unused);
	s->broker_regions =
	    fk_mappings(tb.broker_pid, "netcore-client", &unused);
	long ba, bf, bs, ca, cf, cs;
	assert_int_equal(fk_rss_detail(tb.broker_pid, &ba, &bf, &bs), 0);
	assert_int_equal(fk_rss_detail(tb.core_pid, &ca, &cf, &cs), 0);
	printf("%-20s broker: VmRSS %6ld KiB (anon %ld file %ld shmem %ld), "
	       "%d fds, %d client regions mapped\n",
	       when, s->broker_rss, ba, bf, bs, s->broker_fds,
	       s->broker_regions);
	printf("%-20s core:   VmRSS %6ld KiB (anon %ld file %ld shmem %ld, "
	       "of which the phy region %ld), %d fds, %d client regions "
	       "mapped\n",
	       "", s->core_rss, ca, cf, cs, s->core_phy_rss, s->core_fds,
	       s->core_regions);
	printf("%-20s %s\n", "", s->dump);
	assert_true(s->broker_rss > 0 && s->core_rss > 0);
	assert_true(s->broker_fds > 0 && s->core_fds > 0);
	assert_int_equal(s->core_regions, 0);
	assert_int_equal(s->broker_regions, 0);
}

static void killed_mid_transfer_1000_times(void **state)
{
	(void)state;
	struct totals t = {0};
	struct snapshot before, warm, end;
	snap("before", &before);
	int64_t start = fk_now_ms();
	int64_t warm_at = 0;
	for (int i = 0; i < ITERATIONS; i++) {
		one_iteration(i, &t);
		if (i + 1 == WARM_UP) {
			warm_at = fk_now_ms();
			snap("after 100 (warm-up)", &warm);
		}
		if ((i + 1) % 250 == 0) {
			printf("  %d iterations, %.1f s\n", i + 1,
			       (double)(fk_now_ms() - start) / 1000);
			fflush(stdout);
		}
	}
	int64_t took = fk_now_ms() - start;
	snap("after 1000", &end);
	printf("%d clients killed mid-transfer in %.1f s (%.1f ms each; "
	       "after warm-up %.1f ms each); %.1f MiB received and "
	       "verified\n",
	       ITERATIONS, (double)took / 1000, (double)took / ITERATIONS,
	       (double)(fk_now_ms() - warm_at) / (ITERATIONS - WARM_UP),
	       (double)t.bytes / FK_MIB);
	printf("server saw the end: clients with nothing unread: EOF %d, "
	       "reset %d; clients with unread data (%.1f MiB sent to them): "
	       "EOF %d, reset %d\n",
	       t.eofs[0], t.resets[0], (double)t.sent / FK_MIB, t.eofs[1],
	       t.resets[1]);
	printf("kill to end %.1f ms on average, %lld ms at worst; slowest "
	       "iteration %lld ms\n",
	       (double)t.sum_close_ms / ITERATIONS, (long long)t.worst_close_ms,
	       (long long)t.worst_iteration_ms);
	printf("attaches refused while the previous region was still "
	       "counted (retried): %ld\n",
	       t.attach_retries);
	/* The phy region (32 MiB, shared with the phy driver) is mapped
	 * whole from the start; the core's RSS counts its pages as packets
	 * first touch them, which goes on, ever slower, for thousands of
	 * packets. That is a fixed region warming up, not a leak, so the
	 * limit applies to the rest of the core's RSS; both are printed. */
	long broker_growth = end.broker_rss - warm.broker_rss;
	long core_growth = end.core_rss - warm.core_rss;
	long phy_growth = end.core_phy_rss - warm.core_phy_rss;
	printf("RSS growth from 100 to 1000: broker %+ld KiB; core %+ld KiB, "
	       "of which the phy region %+ld KiB, the rest %+ld KiB (limit "
	       "%d KiB)\n",
	       broker_growth, core_growth, phy_growth, core_growth - phy_growth,
	       RSS_GROWTH_KIB);
	fflush(stdout);
	assert_true(fk_service_alive(tb.broker_pid));
	assert_true(fk_service_alive(tb.core_pid));
	assert_true(fk_service_alive(tb.phy_pid));
	assert_true(broker_growth < RSS_GROWTH_KIB);
	assert_true(core_growth - phy_growth < RSS_GROWTH_KIB);
	assert_int_equal(end.broker_fds, warm.broker_fds);
	assert_int_equal(end.core_fds, warm.core_fds);
	tests_passed++;
}

/* Accepts whatever a killed client left at the listener and waits for
 * each connection to end. How many there were. */
static int drain_listener(int iteration)
{
	int n = 0;
	for (;;) {
		int fd = accept4(random_fd, NULL, NULL,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			assert_true(errno == EAGAIN || errno == EINTR);
			return n;
		}
		n++;
		int64_t deadline = fk_now_ms() + CLOSE_MS;
		for (;;) {
			static uint8_t buf[64 * 1024];
			ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno == ECONNRESET))
				break;
			if (r < 0 && errno != EAGAIN && errno != EINTR)
				fail_msg("random kill %d: recv: %s", iteration,
				         strerror(errno));
			if (r > 0)
				continue;
			int left = (int)(deadline - fk_now_ms());
			if (left <= 0)
				fail_msg("random kill %d: a connection of the "
				         "dead client did not end within %d ms",
				         iteration, CLOSE_MS);
			struct pollfd p = {.fd = fd, .events = POLLIN};
			poll(&p, 1, left);
		}
		close(fd);
	}
}

/*
 * Clients SIGKILLed at random moments in their first 12 ms: in unshare,
 * while attaching (the broker waiting for the core's CLIENT_ADD answer),
 * while connecting (a request in flight), or streaming. After each, the
 * broker must come back to no client and no memory, and every connection
 * the client had made must end.
 */
static void killed_at_random_moments(void **state)
{
	(void)state;
	int stage[4] = {0}; /* last report: none, attached, connected */
	int conns = 0;
	uint64_t rnd = 0x72616e646f6dull ^ (uint64_t)getpid();
	int64_t start = fk_now_ms();
	for (int i = 0; i < RANDOM_KILLS; i++) {
		int report[2];
		assert_int_equal(pipe2(report, O_CLOEXEC), 0);
		pid_t pid = fk_fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(report[0]);
			close(listen_fd);
			close(random_fd);
			client_main(report[1], RANDOM_PORT,
			            0x72000000ull + (uint64_t)i);
		}
		close(report[1]);
		rnd ^= rnd << 13;
		rnd ^= rnd >> 7;
		rnd ^= rnd << 17;
		/* The moment of death is the input here, not a wait. */
		struct timespec ts = {0, (long)(rnd % 12000) * 1000};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(fk_wait(pid, fk_now_ms() + 5000, &status), 0);
		struct fk_msg m;
		int last = 0;
		while (fk_msg_recv(report[0], &m, fk_now_ms()) == 0) {
			if (m.kind == MSG_FAIL)
				fail_msg("random kill %d: the client failed "
				         "before it was killed: %s",
				         i, strerror((int)m.value));
			last = m.kind == MSG_ATTACHED ? 1 : 2;
		}
		close(report[0]);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		stage[last]++;
		char dump[512];
		int err = fk_wait_broker_idle(&tb, log_path, dump, sizeof(dump),
		                              fk_now_ms() + 10000);
		if (err)
			fail_msg(
			    "random kill %d: the broker did not come back to "
			    "no clients within 10 s: %s",
			    i, dump);
		conns += drain_listener(i);
	}
	printf("%d clients killed at random moments in %.1f s: %d before "
	       "attaching, %d attached, %d connected; %d connections "
	       "ended\n",
	       RANDOM_KILLS, (double)(fk_now_ms() - start) / 1000, stage[0],
	       stage[1], stage[2], conns);
	tests_passed++;
}

/* Last: the services stop cleanly, having lost track of nothing. */
static void services_end_cleanly(void **state)
{
	(void)state;
	struct fk_core_final final;
	char summary[512];
	int ended =
	    fk_services_end(&tb, log_path, &final, summary, sizeof(summary));
	printf("%s\n", summary);
	assert_int_equal(ended, 0);
	assert_int_equal(final.broken, 0);
	tests_passed++;
	passed = tests_passed == 3;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(killed_at_random_moments),
	    cmocka_unit_test(killed_mid_transfer_1000_times),
	    cmocka_unit_test(services_end_cleanly),
	};
	return cmocka_run_group_tests_name("client_kill", tests, setup,
	                                   teardown);
}
