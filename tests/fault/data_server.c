/* data_server: see data_server.h. */
#include "tests/fault/data_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/fault/stream.h"

#define MAX_LISTEN 4
#define MAX_CONN   128
#define CHUNK      (64 * 1024)
/* Chunks one connection may send per turn, so one fast reader cannot
 * starve the others. */
#define TURN_CHUNKS 4
#define MAX_LENGTH  (1ull << 40)

enum conn_state { C_FREE, C_REQ, C_CONNECTING, C_SEND };

struct conn {
	int fd;
	enum conn_state state;
	struct ff_req req;
	size_t req_got;
	uint64_t stream, next, end; /* bytes still to send: [next, end) */
	uint8_t *buf;               /* CHUNK bytes: what send() still owes */
	size_t buf_off, buf_len;
	int64_t last_ms; /* last progress, for the idle timeout */
};

struct server {
	struct conn conns[MAX_CONN];
	uint8_t *bufs;
	struct sockaddr_in callback;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = C_FREE;
}

static struct conn *conn_new(struct server *sv, int fd, enum conn_state st)
{
	for (int i = 0; i < MAX_CONN; i++) {
		struct conn *c = &sv->conns[i];
		if (c->state != C_FREE)
			continue;
		c->fd = fd;
		c->state = st;
		c->req_got = 0;
		c->buf_off = c->buf_len = 0;
		c->last_ms = now_ms();
		return c;
	}
	close(fd); /* full: see the essay */
	return NULL;
}

static void accept_all(struct server *sv, int lfd)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		conn_new(sv, fd, C_REQ);
	}
}

/* A callback: a new connection to the stack, then the bytes, preceded by
 * a preamble that names them. The preamble is queued as the first
 * "chunk" (see send_some). */
static void start_callback(struct server *sv, const struct ff_req *r)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct sockaddr_in to = sv->callback;
	to.sin_port = htons(r->port);
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		return;
	}
	struct conn *c = conn_new(sv, fd, C_CONNECTING);
	if (c == NULL)
		return;
	c->stream = r->stream;
	c->next = r->offset;
	c->end = r->offset + r->length;
	uint64_t pre[2] = {r->stream, r->offset};
	memcpy(c->buf, pre, sizeof(pre));
	c->buf_len = sizeof(pre);
}

static bool req_valid(const struct ff_req *r)
{
	return r->magic == FF_REQ_MAGIC && r->length <= MAX_LENGTH &&
	       r->offset <= MAX_LENGTH &&
	       (r->kind == FF_REQ_DOWNLOAD ||
	        (r->kind == FF_REQ_CALLBACK && r->port != 0));
}

static void read_req(struct server *sv, struct conn *c)
{
	ssize_t n = recv(c->fd, (uint8_t *)&c->req + c->req_got,
	                 sizeof(c->req) - c->req_got, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->req_got += (size_t)n;
	c->last_ms = now_ms();
	if (c->req_got < sizeof(c->req))
		return;
	if (!req_valid(&c->req)) {
		conn_close(c);
		return;
	}
	if (c->req.kind == FF_REQ_CALLBACK) {
		struct ff_req r = c->req;
		conn_close(c);
		start_callback(sv, &r);
		return;
	}
	c->stream = c->req.stream;
	c->next = c->req.offset;
	c->end = c->req.offset + c->req.length;
	c->state = C_SEND;
}

static void connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
	    err != 0) {
		conn_close(c);
		return;
	}
	c->state = C_SEND;
	c->last_ms = now_ms();
}

/* Sends until the socket is full or the turn is over; closes (FIN) once
 * everything asked for has gone. */
static void send_some(struct conn *c)
{
	for (int turn = 0; turn < TURN_CHUNKS; turn++) {
		if (c->buf_off == c->buf_len) {
			if (c->next == c->end) {
				conn_close(c);
				return;
			}
			uint64_t left = c->end - c->next;
			size_t n = left < CHUNK ? (size_t)left : CHUNK;
			ff_stream_fill(c->stream, c->next, c->buf, n);
			c->next += n;
			c->buf_off = 0;
			c->buf_len = n;
		}
		ssize_t n =
		    send(c->fd, c->buf + c->buf_off, c->buf_len - c->buf_off,
		         MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->buf_off += (size_t)n;
		c->last_ms = now_ms();
	}
}

static short events_of(const struct conn *c)
{
	return c->state == C_REQ ? POLLIN : POLLOUT;
}

static void serve_conn(struct conn *c, short revents, struct server *sv)
{
	if (c->state == C_REQ && (revents & (POLLIN | POLLHUP | POLLERR)))
		read_req(sv, c);
	else if (c->state == C_CONNECTING && revents != 0)
		connected(c);
	else if (c->state == C_SEND && (revents & (POLLOUT | POLLERR)))
		send_some(c);
}

static void drop_idle(struct server *sv)
{
	int64_t now = now_ms();
	for (int i = 0; i < MAX_CONN; i++) {
		struct conn *c = &sv->conns[i];
		if (c->state != C_FREE && now - c->last_ms > FF_SERVER_IDLE_MS)
			conn_close(c);
	}
}

/* One poll over the listeners and every live connection. */
static int turn(struct server *sv, const int *lfds, int n)
{
	struct pollfd p[MAX_LISTEN + MAX_CONN];
	struct conn *who[MAX_LISTEN + MAX_CONN];
	int count = 0;
	for (int i = 0; i < n; i++) {
		p[count] = (struct pollfd){.fd = lfds[i], .events = POLLIN};
		who[count++] = NULL;
	}
	for (int i = 0; i < MAX_CONN; i++) {
		struct conn *c = &sv->conns[i];
		if (c->state == C_FREE)
			continue;
		p[count] = (struct pollfd){.fd = c->fd, .events = events_of(c)};
		who[count++] = c;
	}
	/* The timeout only paces the idle check and the stop flag. */
	int r = poll(p, (nfds_t)count, 200);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < count && r > 0; i++) {
		if (p[i].revents == 0)
			continue;
		if (who[i] == NULL)
			accept_all(sv, p[i].fd);
		else
			serve_conn(who[i], p[i].revents, sv);
	}
	drop_idle(sv);
	return 0;
}

int ff_server_run(const int *lfds, int n, const char *callback_addr,
                  volatile sig_atomic_t *stop)
{
	if (n > MAX_LISTEN)
		return -EINVAL;
	struct server *sv = calloc(1, sizeof(*sv));
	if (sv == NULL)
		return -ENOMEM;
	sv->bufs = malloc((size_t)MAX_CONN * CHUNK);
	if (sv->bufs == NULL) {
		free(sv);
		return -ENOMEM;
	}
	sv->callback.sin_family = AF_INET;
	inet_pton(AF_INET, callback_addr, &sv->callback.sin_addr);
	for (int i = 0; i < MAX_CONN; i++) {
		sv->conns[i].fd = -1;
		sv->conns[i].buf = sv->bufs + (size_t)i * CHUNK;
	}
	int err = 0;
	while (!*stop && err == 0)
		err = turn(sv, lfds, n);
	for (int i = 0; i < MAX_CONN; i++)
		conn_close(&sv->conns[i]);
	free(sv->bufs);
	free(sv);
	return err;
}

/* ---------------------------------------------------- the forked server */

static int listen_on(int family, const char *addr, uint16_t port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, addr, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		len = sizeof(*a);
	}
	/* An IPv6 address the phy just set can still be unusable for a
	 * moment (EADDRNOTAVAIL): wait for it, bounded. */
	int rc = bind(fd, (struct sockaddr *)&ss, len);
	for (int i = 0; rc != 0 && errno == EADDRNOTAVAIL && i < 500; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		rc = bind(fd, (struct sockaddr *)&ss, len);
	}
	if (rc != 0 || listen(fd, 64) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static volatile sig_atomic_t server_stop;

static void on_term(int sig)
{
	(void)sig;
	server_stop = 1;
}

static void server_child(const int *lfds, int n, const char *callback_addr)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Ctrl-C reaches the whole process group; the parent decides when
	 * the server ends. */
	signal(SIGINT, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	_exit(ff_server_run(lfds, n, callback_addr, &server_stop) == 0 ? 0 : 1);
}

pid_t ff_server_start(const char *addr4, const char *addr6, uint16_t port,
                      const char *callback_addr)
{
	int lfds[2];
	int n = 0;
	lfds[n] = listen_on(AF_INET, addr4, port);
	if (lfds[n] < 0)
		return lfds[n];
	n++;
	if (addr6 != NULL) {
		lfds[n] = listen_on(AF_INET6, addr6, port);
		if (lfds[n] < 0) {
			close(lfds[0]);
			return lfds[n];
		}
		n++;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0)
		server_child(lfds, n, callback_addr);
	int err = pid < 0 ? -errno : 0;
	for (int i = 0; i < n; i++)
		close(lfds[i]);
	return err ? err : pid;
}

void ff_server_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	int status;
	for (int i = 0; i < 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
}
