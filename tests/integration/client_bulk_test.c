/*
 * Bulk TCP through libclient (issue 4's acceptance): a sandboxed program
 * in an empty network namespace, using nothing but libclient, downloads
 * 1 GiB from a kernel-side server and uploads 1 GiB to it, over IPv4 and
 * over IPv6: four transfers of 1 GiB. The sender and the receiver each hash
 * (SHA-256) exactly what they sent or received, and the test compares the
 * two hashes and byte counts of every transfer. The kernel server also
 * checks that each connection comes from the stack's address, and the
 * client that its connection is bound to it; end of stream must arrive
 * exactly after the 1 GiB, both ways.
 *
 * CLIENT_BULK_MIB (environment) changes the size of each transfer, for
 * trying things out; the acceptance size, and the default, is 1024.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libclient/netcore.h"
#include "tests/integration/client_common.h"
#include "tests/sha256/sha256.h"
#include "tests/testbed/testbed.h"

#define PORT    5001
#define CHUNK   (1024 * 1024)
#define STALL_S 30 /* no progress for this long: the transfer failed */
/* The whole run (Bazel's "large" timeout is 900 s, and the testbed must
 * still be cleaned up); a stall is caught far sooner. */
#define DEADLINE_MS 780000
#define MAGIC       0x42554c4bu /* "BULK" */
#define TRANSFERS   4

static struct nc_testbed tb;
static int listen4 = -1, listen6 = -1;
static uint64_t bulk_bytes = 1024 * CT_MIB;
static int64_t run_deadline;

/* Transfer t: family, direction and the seed of its byte stream. */
static int family_of(int t)
{
	return t < 2 ? AF_INET : AF_INET6;
}

static bool is_download(int t)
{
	return t % 2 == 0;
}

static uint64_t seed_of(int t)
{
	return 0xb01c0000u + (uint64_t)t;
}

static const char *name_of(int t)
{
	static const char *names[] = {"IPv4 download", "IPv4 upload",
	                              "IPv6 download", "IPv6 upload"};
	return names[t];
}

/* What one side saw of one transfer. */
struct side {
	uint64_t bytes;
	uint8_t sha[32];
	double secs; /* first byte of the header to end of stream */
	int ok;      /* 1: this side moved the whole stream and saw its end */
	int reset;   /* server, download: the client's close came as a RST */
};

struct report {
	struct side t[TRANSFERS];
	char problem[256];
};

/* The request a client sends first. */
struct hello {
	uint32_t magic;
	uint32_t transfer;
	uint64_t bytes;
};

static int setup(void **state)
{
	(void)state;
	const char *mib = getenv("CLIENT_BULK_MIB");
	if (mib != NULL && atoi(mib) > 0)
		bulk_bytes = (uint64_t)atoi(mib) * CT_MIB;
	if (nc_testbed_start_sockets(&tb, "clbulk", 7, NULL) != 0)
		return -1;
	if (nc_testbed_enter(&tb) != 0)
		return -1;
	listen4 = ct_tcp_listen(AF_INET, NC_TB_KERNEL4, PORT, 8);
	listen6 = ct_tcp_listen(AF_INET6, NC_TB_KERNEL6, PORT, 8);
	return listen4 >= 0 && listen6 >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (listen4 >= 0)
		close(listen4);
	if (listen6 >= 0)
		close(listen6);
	nc_testbed_stop(&tb);
	return 0;
}

/* ------------------------------------------------- the client (libclient) */

static int c_fail(struct report *r, const char *what, int t)
{
	if (r->problem[0] == '\0')
		snprintf(r->problem, sizeof(r->problem), "client, %s: %s: %s",
		         t >= 0 ? name_of(t) : "attach", what, strerror(errno));
	return -1;
}

static int c_send_all(struct nc_sock *s, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = nc_send(s, p, len, 0);
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int c_transfer(struct nc_client *c, int t, uint8_t *buf,
                      struct report *r)
{
	int family = family_of(t);
	struct nc_sock *s;
	if (nc_socket(c, family, SOCK_STREAM, 0, &s) != 0)
		return c_fail(r, "nc_socket", t);
	struct timeval tv = {.tv_sec = STALL_S};
	int rc = -1;
	if (nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
		c_fail(r, "SO_RCVTIMEO/SO_SNDTIMEO", t);
		goto out;
	}
	struct sockaddr_storage to, me;
	socklen_t tolen = ct_sockaddr(
	    family, family == AF_INET ? NC_TB_KERNEL4 : NC_TB_KERNEL6, PORT,
	    &to);
	double start = ct_now_s();
	if (nc_connect(s, (struct sockaddr *)&to, tolen) != 0) {
		c_fail(r, "nc_connect", t);
		goto out;
	}
	socklen_t melen = sizeof(me);
	if (nc_getsockname(s, (struct sockaddr *)&me, &melen) != 0) {
		c_fail(r, "nc_getsockname", t);
		goto out;
	}
	const char *stack = family == AF_INET ? NC_TB_STACK4 : NC_TB_STACK6;
	if (!ct_addr_is((struct sockaddr *)&me, melen, family, stack,
	                ct_addr_port((struct sockaddr *)&me)) ||
	    ct_addr_port((struct sockaddr *)&me) == 0) {
		char text[80];
		ct_addr_str((struct sockaddr *)&me, text, sizeof(text));
		errno = EINVAL;
		snprintf(r->problem, sizeof(r->problem),
		         "client, %s: bound to %s, not the stack's address",
		         name_of(t), text);
		goto out;
	}
	struct hello h = {
	    .magic = MAGIC, .transfer = (uint32_t)t, .bytes = bulk_bytes};
	if (c_send_all(s, (const uint8_t *)&h, sizeof(h)) != 0) {
		c_fail(r, "sending the request", t);
		goto out;
	}
	struct side *me_side = &r->t[t];
	struct nc_sha256 sha;
	nc_sha256_init(&sha);
	uint64_t moved = 0;
	if (is_download(t)) {
		for (;;) {
			ssize_t n = nc_recv(s, buf, CHUNK, 0);
			if (n < 0) {
				c_fail(r, "nc_recv", t);
				goto out;
			}
			if (n == 0)
				break;
			nc_sha256_update(&sha, buf, (size_t)n);
			moved += (uint64_t)n;
		}
	} else {
		while (moved < bulk_bytes) {
			size_t n = bulk_bytes - moved < CHUNK
			               ? (size_t)(bulk_bytes - moved)
			               : CHUNK;
			ct_pattern(seed_of(t), moved, buf, n);
			nc_sha256_update(&sha, buf, n);
			if (c_send_all(s, buf, n) != 0) {
				c_fail(r, "nc_send", t);
				goto out;
			}
			moved += n;
		}
		if (nc_shutdown(s, SHUT_WR) != 0) {
			c_fail(r, "nc_shutdown(SHUT_WR)", t);
			goto out;
		}
		/* The server closes once it has read everything. */
		ssize_t n = nc_recv(s, buf, 1, 0);
		if (n != 0) {
			if (n > 0)
				errno = EPROTO;
			c_fail(r, "waiting for the server's end of stream", t);
			goto out;
		}
	}
	me_side->secs = ct_now_s() - start;
	me_side->bytes = moved;
	nc_sha256_final(&sha, me_side->sha);
	me_side->ok = 1;
	rc = 0;
out:
	if (nc_close(s) != 0 && rc == 0) {
		me_side->ok = 0;
		rc = c_fail(r, "nc_close", t);
	}
	return rc;
}

static int client_main(void *arg, int report_fd)
{
	(void)arg;
	static struct report r;
	memset(&r, 0, sizeof(r));
	uint8_t *buf = malloc(CHUNK);
	struct nc_client *c = NULL;
	int rc = 1;
	if (buf == NULL) {
		snprintf(r.problem, sizeof(r.problem), "client: no memory");
	} else if (nc_client_attach(tb.broker_socket, &c) != 0) {
		c_fail(&r, "nc_client_attach", -1);
	} else {
		rc = 0;
		for (int t = 0; t < TRANSFERS && rc == 0; t++)
			rc = c_transfer(c, t, buf, &r) == 0 ? 0 : 1;
		if (nc_client_detach(c) != 0 && rc == 0) {
			rc = 1;
			c_fail(&r, "nc_client_detach", -1);
		}
	}
	free(buf);
	if (ct_write_full(report_fd, &r, sizeof(r)) != 0)
		rc = 1;
	return rc;
}

/* ------------------------------------------------- the server (kernel) */

static int k_fail(struct report *r, int t, const char *what, int err)
{
	if (r->problem[0] == '\0')
		snprintf(r->problem, sizeof(r->problem), "server, %s: %s: %s",
		         name_of(t), what, strerror(err));
	return -1;
}

static int k_send_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int k_serve_one(int conn, int t, uint8_t *buf, struct report *r)
{
	struct side *side = &r->t[t];
	struct hello h;
	int err =
	    ct_read_full(conn, &h, sizeof(h), ct_now_ms() + STALL_S * 1000);
	if (err)
		return k_fail(r, t, "reading the request", -err);
	double start = ct_now_s();
	if (h.magic != MAGIC || h.transfer != (uint32_t)t ||
	    h.bytes != bulk_bytes)
		return k_fail(r, t, "the request", EPROTO);
	struct nc_sha256 sha;
	nc_sha256_init(&sha);
	uint64_t moved = 0;
	if (is_download(t)) {
		while (moved < bulk_bytes) {
			if (ct_now_ms() > run_deadline)
				return k_fail(r, t, "sending", ETIMEDOUT);
			size_t n = bulk_bytes - moved < CHUNK
			               ? (size_t)(bulk_bytes - moved)
			               : CHUNK;
			ct_pattern(seed_of(t), moved, buf, n);
			nc_sha256_update(&sha, buf, n);
			err = k_send_all(conn, buf, n);
			if (err)
				return k_fail(r, t, "send", -err);
			moved += n;
		}
		if (shutdown(conn, SHUT_WR) != 0)
			return k_fail(r, t, "shutdown", errno);
		/* The client read everything, then closed: that is a FIN. A
		 * RST says the stack thought data was left unread; recorded,
		 * and the run goes on so the other transfers are measured. */
		ssize_t n = recv(conn, buf, 1, 0);
		if (n < 0 && errno == ECONNRESET)
			side->reset = 1;
		else if (n != 0)
			return k_fail(r, t, "waiting for the client's close",
			              n > 0 ? EPROTO : errno);
	} else {
		for (;;) {
			if (ct_now_ms() > run_deadline)
				return k_fail(r, t, "receiving", ETIMEDOUT);
			ssize_t n = recv(conn, buf, CHUNK, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return k_fail(r, t, "recv", errno);
			if (n == 0)
				break;
			nc_sha256_update(&sha, buf, (size_t)n);
			moved += (uint64_t)n;
		}
	}
	side->secs = ct_now_s() - start;
	side->bytes = moved;
	nc_sha256_final(&sha, side->sha);
	side->ok = 1;
	return 0;
}

static int k_serve(const struct ct_child *ch, int t, uint8_t *buf,
                   struct report *r)
{
	int family = family_of(t);
	int lfd = family == AF_INET ? listen4 : listen6;
	int err =
	    ct_wait_fd(lfd, POLLIN, ch->pidfd, ct_now_ms() + STALL_S * 1000);
	if (err)
		return k_fail(r, t, "waiting for the connection",
		              err == -ECHILD ? ECHILD : -err);
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int conn = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
	if (conn < 0)
		return k_fail(r, t, "accept", errno);
	ct_set_timeouts(conn, STALL_S);
	const char *stack = family == AF_INET ? NC_TB_STACK4 : NC_TB_STACK6;
	int rc;
	if (!ct_addr_is((struct sockaddr *)&peer, plen, family, stack,
	                ct_addr_port((struct sockaddr *)&peer))) {
		char text[80];
		ct_addr_str((struct sockaddr *)&peer, text, sizeof(text));
		snprintf(r->problem, sizeof(r->problem),
		         "server, %s: connection from %s, not the stack",
		         name_of(t), text);
		rc = -1;
	} else {
		rc = k_serve_one(conn, t, buf, r);
	}
	close(conn);
	return rc;
}

/* ------------------------------------------------------------- the test */

static void four_transfers_of_1_gib_hashed_both_ways(void **state)
{
	(void)state;
	static struct report server, client;
	memset(&server, 0, sizeof(server));
	memset(&client, 0, sizeof(client));
	uint8_t *buf = malloc(CHUNK);
	assert_non_null(buf);
	printf("each transfer: %llu MiB\n",
	       (unsigned long long)(bulk_bytes / CT_MIB));
	/* Both ends hash every byte, so the figures below cannot exceed
	 * this (one CPU, nothing else running on it). */
	ct_pattern(1, 0, buf, CHUNK);
	struct nc_sha256 sha;
	uint8_t digest[32];
	nc_sha256_init(&sha);
	double t0 = ct_now_s();
	for (int i = 0; i < 64; i++)
		nc_sha256_update(&sha, buf, CHUNK);
	nc_sha256_final(&sha, digest);
	printf("SHA-256 alone here: %.0f MiB/s\n", 64 / (ct_now_s() - t0));
	double start = ct_now_s();
	run_deadline = ct_now_ms() + DEADLINE_MS;
	struct ct_child ch;
	assert_int_equal(ct_child_start(&ch, client_main, NULL), 0);
	for (int t = 0; t < TRANSFERS; t++)
		if (k_serve(&ch, t, buf, &server) != 0)
			break;
	free(buf);
	/* A server that gave up leaves the child nothing to wait for. */
	bool server_ok = server.problem[0] == '\0';
	int status = ct_child_finish(
	    &ch, server_ok ? run_deadline + 10000
	                   : ct_now_ms() + STALL_S * 1000 + 5000);
	int got = ct_read_full(ch.report_fd, &client, sizeof(client),
	                       ct_now_ms() + 1000);
	ct_child_cleanup(&ch);
	double took = ct_now_s() - start;

	for (int t = 0; t < TRANSFERS; t++) {
		const struct side *c = &client.t[t], *k = &server.t[t];
		const struct side *rx = is_download(t) ? c : k;
		char ch_hex[65], kh_hex[65];
		ct_hex(c->sha, 32, ch_hex);
		ct_hex(k->sha, 32, kh_hex);
		printf(
		    "%s: client %llu bytes sha256 %s\n"
		    "%*s  server %llu bytes sha256 %s\n"
		    "%*s  %s, %.2f s, %.1f MiB/s\n",
		    name_of(t), (unsigned long long)c->bytes, ch_hex,
		    (int)strlen(name_of(t)), "", (unsigned long long)k->bytes,
		    kh_hex, (int)strlen(name_of(t)), "",
		    c->ok && k->ok && c->bytes == k->bytes &&
		            memcmp(c->sha, k->sha, 32) == 0
		        ? "MATCH"
		        : "MISMATCH or incomplete",
		    rx->secs,
		    rx->secs > 0 ? (double)rx->bytes / CT_MIB / rx->secs : 0.0);
	}
	printf("whole test: %.1f s; client exit %d, report %s\n", took, status,
	       got == 0 ? "read" : strerror(-got));
	for (int t = 0; t < TRANSFERS; t++)
		if (server.t[t].reset)
			printf("%s: the client read all %llu bytes and the end "
			       "of stream, then closed, and the server got a "
			       "RST instead of a FIN\n",
			       name_of(t),
			       (unsigned long long)client.t[t].bytes);
	if (server.problem[0])
		printf("%s\n", server.problem);
	if (client.problem[0])
		printf("%s\n", client.problem);
	assert_int_equal(got, 0);
	assert_int_equal(status, 0);
	assert_true(server_ok);
	for (int t = 0; t < TRANSFERS; t++) {
		assert_true(client.t[t].ok);
		assert_true(server.t[t].ok);
		assert_int_equal(client.t[t].bytes, bulk_bytes);
		assert_int_equal(server.t[t].bytes, bulk_bytes);
		assert_memory_equal(client.t[t].sha, server.t[t].sha, 32);
	}
	for (int t = 0; t < TRANSFERS; t++)
		assert_false(server.t[t].reset);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(four_transfers_of_1_gib_hashed_both_ways),
	};
	return cmocka_run_group_tests_name("client_bulk", tests, setup,
	                                   teardown);
}
