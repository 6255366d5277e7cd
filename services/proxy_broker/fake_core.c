/*
 * The fake core (see fake_core.h). One thread owns the nng rep socket, the
 * fd-channel listener and its connections, and every client record; the
 * test thread reads the records through fake_core_get_seen() and
 * fake_core_client() under the same mutex. Every wait is bounded (the nng
 * receive times out every 20 ms so the thread notices stop; an ADD waits
 * at most 2 s for its fds).
 *
 * What it does not do: any networking. Sockets are channel indexes and
 * generations, nothing more.
 */
#include "services/proxy_broker/fake_core.h"

#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 8

struct fc_client {
	bool used, added;
	uint32_t id;
	int fds[3];
	struct nc_region region;
	struct nc_client_params params;
	bool *sock_used;
	uint32_t *sock_gen;
	bool *sock_connected;
	int32_t *sock_type;
	struct nc_msg_addr *local;
};

struct fake_core {
	char url[160];
	char fds_path[108];
	nng_socket sock;
	int listen_fd;
	int conns[MAX_CONNS];
	pthread_t thread;
	pthread_mutex_t lock;
	volatile int stop;
	atomic_int peers;
	bool hang, accept_ready;
	uint32_t reset_client;
	uint32_t last_id;
	struct fake_core_seen seen;
	struct fc_client clients[FAKE_CORE_MAX_CLIENTS];
};

/* ---------------------------------------------------------------- clients */

static struct fc_client *find(struct fake_core *fc, uint32_t id)
{
	for (int i = 0; i < FAKE_CORE_MAX_CLIENTS; i++)
		if (fc->clients[i].used && fc->clients[i].id == id)
			return &fc->clients[i];
	return NULL;
}

static void drop(struct fc_client *c)
{
	for (int i = 0; i < 3; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	if (c->added)
		nc_region_close(&c->region);
	free(c->sock_used);
	free(c->sock_gen);
	free(c->sock_connected);
	free(c->sock_type);
	free(c->local);
	memset(c, 0, sizeof(*c));
}

/* A message on the fd channel: {client, gen} + SCM_RIGHTS [3 fds]. */
static void take_fds(struct fake_core *fc, int conn)
{
	uint32_t body[2];
	struct iovec iov = {.iov_base = body, .iov_len = sizeof(body)};
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctl.buf,
	                     .msg_controllen = sizeof(ctl.buf)};
	ssize_t n = recvmsg(conn, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (n != sizeof(body) || c == NULL || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(3 * sizeof(int)))
		return;
	int fds[3];
	memcpy(fds, CMSG_DATA(c), sizeof(fds));
	struct fc_client *old = find(fc, body[0]);
	if (old != NULL)
		drop(old);
	for (int i = 0; i < FAKE_CORE_MAX_CLIENTS; i++) {
		struct fc_client *cl = &fc->clients[i];
		if (cl->used)
			continue;
		cl->used = true;
		cl->id = body[0];
		memcpy(cl->fds, fds, sizeof(fds));
		return;
	}
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

static void close_conn(struct fake_core *fc, int fd)
{
	for (int j = 0; j < MAX_CONNS; j++)
		if (fc->conns[j] == fd) {
			close(fd);
			fc->conns[j] = -1;
		}
}

/* Accepts and reads whatever is waiting, for up to `ms`. */
static void service_fd_channel(struct fake_core *fc, int ms)
{
	struct pollfd p[MAX_CONNS + 1];
	int n = 0;
	p[n++] = (struct pollfd){.fd = fc->listen_fd, .events = POLLIN};
	for (int i = 0; i < MAX_CONNS; i++)
		if (fc->conns[i] >= 0)
			p[n++] = (struct pollfd){.fd = fc->conns[i],
			                         .events = POLLIN};
	if (poll(p, (nfds_t)n, ms) <= 0)
		return;
	if (p[0].revents & POLLIN) {
		int c = accept4(fc->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		for (int i = 0; c >= 0 && i < MAX_CONNS; i++)
			if (fc->conns[i] < 0) {
				fc->conns[i] = c;
				c = -1;
			}
		if (c >= 0)
			close(c);
	}
	for (int i = 1; i < n; i++) {
		if (p[i].revents & POLLIN)
			take_fds(fc, p[i].fd);
		else if (p[i].revents & (POLLHUP | POLLERR))
			close_conn(fc, p[i].fd);
	}
}

static int attach_region(struct fc_client *c)
{
	struct nc_region_expect ex = {.kind = NC_CLIENT_REGION_KIND};
	if (nc_region_attach(&c->region, c->fds[0], &ex) != 0)
		return -EINVAL;
	if (nc_client_region_params(&c->region, &c->params) != 0) {
		nc_region_close(&c->region);
		return -EINVAL;
	}
	uint32_t n = c->params.max_sockets;
	c->sock_used = calloc(n, sizeof(bool));
	c->sock_gen = calloc(n, sizeof(uint32_t));
	c->sock_connected = calloc(n, sizeof(bool));
	c->sock_type = calloc(n, sizeof(int32_t));
	c->local = calloc(n, sizeof(struct nc_msg_addr));
	c->added = true;
	return 0;
}

/* ---------------------------------------------------------------- answers */

static int32_t op_add(struct fake_core *fc, const struct nc_msg_req *req)
{
	/* The fds were sent before the ADD: take everything queued first
	 * (a new connection is accepted by one pass, read by the next), so
	 * a reused id finds its fresh fds, not a previous broker's. */
	for (int i = 0; i < 3; i++)
		service_fd_channel(fc, 0);
	struct fc_client *c = find(fc, req->client);
	for (int waited = 0; c == NULL && waited < 2000; waited += 10) {
		service_fd_channel(fc, 10);
		c = find(fc, req->client);
	}
	if (c == NULL) {
		fc->seen.adds_without_fds++;
		return -EBADF;
	}
	if (c->added || attach_region(c) != 0) {
		fc->seen.bad_regions++;
		drop(c);
		return -EINVAL;
	}
	return 0;
}

static int32_t new_sock(struct fc_client *c, struct nc_msg_rep *rep)
{
	for (uint32_t i = 0; i < c->params.max_sockets; i++) {
		if (c->sock_used[i])
			continue;
		c->sock_used[i] = true;
		c->sock_connected[i] = false;
		memset(&c->local[i], 0, sizeof(c->local[i]));
		rep->sock = (int32_t)i;
		rep->sock_gen = ++c->sock_gen[i];
		return 0;
	}
	return -EMFILE;
}

static int32_t op_sock(struct fake_core *fc, struct fc_client *c,
                       const struct nc_msg_req *req, struct nc_msg_rep *rep)
{
	int32_t s = req->sock;
	if (s < 0 || (uint32_t)s >= c->params.max_sockets || !c->sock_used[s] ||
	    c->sock_gen[s] != req->sock_gen)
		return -EBADF;
	switch (req->hdr.type) {
	case NC_MSG_BIND:
		c->local[s] = req->addr;
		if (c->local[s].port == 0)
			c->local[s].port = (uint16_t)(40000 + s);
		rep->addr = c->local[s];
		return 0;
	case NC_MSG_CONNECT:
		c->sock_connected[s] = true;
		return c->sock_type[s] == SOCK_DGRAM ? 0 : -EINPROGRESS;
	case NC_MSG_ACCEPT:
		if (!fc->accept_ready)
			return -EAGAIN;
		if (new_sock(c, rep) != 0)
			return -EMFILE;
		c->sock_type[rep->sock] = c->sock_type[s];
		rep->addr.family = AF_INET; /* 127.0.0.1:40001 */
		rep->addr.port = 40001;
		rep->addr.addr[0] = 127;
		rep->addr.addr[3] = 1;
		return 0;
	case NC_MSG_CLOSE:
		c->sock_used[s] = false;
		return 0;
	case NC_MSG_GETSOCKNAME:
		rep->addr = c->local[s];
		return 0;
	case NC_MSG_GETPEERNAME:
		return c->sock_connected[s] ? 0 : -ENOTCONN;
	case NC_MSG_GETSOCKOPT:
		rep->optlen = 4;
		return 0;
	default:
		return 0;
	}
}

static int32_t op_client(struct fake_core *fc, const struct nc_msg_req *req,
                         struct nc_msg_rep *rep)
{
	struct fc_client *c = find(fc, req->client);
	if (c == NULL || !c->added || req->client == fc->reset_client)
		return -ECONNRESET;
	if (req->hdr.type == NC_MSG_SOCKET) {
		int32_t r = new_sock(c, rep);
		if (r == 0)
			c->sock_type[rep->sock] = req->type;
		return r;
	}
	return op_sock(fc, c, req, rep);
}

static int32_t op_remove(struct fake_core *fc, const struct nc_msg_req *req)
{
	struct fc_client *c = find(fc, req->client);
	if (fc->seen.nremoved < FAKE_CORE_MAX_CLIENTS)
		fc->seen.removed[fc->seen.nremoved++] = req->client;
	if (c == NULL)
		return -ENOENT;
	drop(c);
	return 0;
}

static void record(struct fake_core *fc, const struct nc_msg_req *req)
{
	fc->seen.requests++;
	if (req->hdr.id <= fc->last_id)
		fc->seen.ids_not_rising++;
	fc->last_id = req->hdr.id;
	fc->seen.per_type[req->hdr.type]++;
	fc->seen.last = *req;
}

/* Builds the reply to one request (under the lock). */
static void answer(struct fake_core *fc, const struct nc_msg_req *req,
                   struct nc_msg_rep *rep)
{
	memset(rep, 0, sizeof(*rep));
	nc_msg_init(&rep->hdr, (enum nc_msg_type)req->hdr.type, req->hdr.id,
	            sizeof(*rep));
	rep->sock = -1;
	switch (req->hdr.type) {
	case NC_MSG_CLIENT_ADD:
		rep->result = op_add(fc, req);
		break;
	case NC_MSG_CLIENT_REMOVE:
		rep->result = op_remove(fc, req);
		break;
	case NC_MSG_ATTACH:
		rep->result = -EPROTO;
		break;
	case NC_MSG_CORE_HELLO:
		rep->client = 0x5eed; /* one boot: the fake never restarts */
		break;
	case NC_MSG_CLIENT_LIST:
		break; /* rep->client = 0: it keeps no clients over a broker */
	default:
		rep->result = op_client(fc, req, rep);
	}
}

static void serve_one(struct fake_core *fc, nng_msg *m)
{
	struct nc_msg_req req;
	pthread_mutex_lock(&fc->lock);
	if (nc_msg_check(nng_msg_body(m), nng_msg_len(m), sizeof(req)) != 0) {
		fc->seen.bad_requests++;
		pthread_mutex_unlock(&fc->lock);
		nng_msg_free(m);
		return;
	}
	memcpy(&req, nng_msg_body(m), sizeof(req));
	/* The broker's sync (HELLO, an empty CLIENT_LIST) is not what the
	 * tests count. */
	if (req.hdr.type != NC_MSG_CORE_HELLO &&
	    req.hdr.type != NC_MSG_CLIENT_LIST)
		record(fc, &req);
	if (fc->hang) {
		pthread_mutex_unlock(&fc->lock);
		nng_msg_free(m);
		return;
	}
	struct nc_msg_rep rep;
	answer(fc, &req, &rep);
	pthread_mutex_unlock(&fc->lock);
	nng_msg_clear(m);
	nng_msg_append(m, &rep, sizeof(rep));
	if (nng_sendmsg(fc->sock, m, 0) != 0)
		nng_msg_free(m);
}

static void *run(void *arg)
{
	struct fake_core *fc = arg;
	while (!fc->stop) {
		pthread_mutex_lock(&fc->lock);
		service_fd_channel(fc, 0);
		pthread_mutex_unlock(&fc->lock);
		nng_msg *m;
		if (nng_recvmsg(fc->sock, &m, 0) == 0)
			serve_one(fc, m);
	}
	return NULL;
}

/* -------------------------------------------------------------- lifecycle */

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct fake_core *fc = arg;
	(void)p;
	atomic_fetch_add(&fc->peers, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
}

int fake_core_peers(struct fake_core *fc)
{
	return atomic_load(&fc->peers);
}

static int listen_fds(struct fake_core *fc)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", fc->fds_path);
	fc->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fc->listen_fd < 0)
		return -1;
	if (bind(fc->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(fc->listen_fd, 8) != 0)
		return -1;
	return 0;
}

struct fake_core *fake_core_start(const char *dir)
{
	struct fake_core *fc = calloc(1, sizeof(*fc));
	if (fc == NULL)
		return NULL;
	snprintf(fc->url, sizeof(fc->url), "ipc://%s/ctl", dir);
	snprintf(fc->fds_path, sizeof(fc->fds_path), "%s/fds", dir);
	for (int i = 0; i < MAX_CONNS; i++)
		fc->conns[i] = -1;
	pthread_mutex_init(&fc->lock, NULL);
	if (listen_fds(fc) != 0 || nng_rep0_open(&fc->sock) != 0) {
		free(fc);
		return NULL;
	}
	nng_socket_set_ms(fc->sock, NNG_OPT_RECVTIMEO, 20);
	nng_pipe_notify(fc->sock, NNG_PIPE_EV_ADD_POST, on_pipe, fc);
	nng_pipe_notify(fc->sock, NNG_PIPE_EV_REM_POST, on_pipe, fc);
	if (nng_listen(fc->sock, fc->url, NULL, 0) != 0 ||
	    pthread_create(&fc->thread, NULL, run, fc) != 0) {
		nng_close(fc->sock);
		close(fc->listen_fd);
		free(fc);
		return NULL;
	}
	return fc;
}

void fake_core_stop(struct fake_core *fc)
{
	if (fc == NULL)
		return;
	fc->stop = 1;
	pthread_join(fc->thread, NULL);
	nng_close(fc->sock);
	close(fc->listen_fd);
	unlink(fc->fds_path);
	for (int i = 0; i < MAX_CONNS; i++)
		if (fc->conns[i] >= 0)
			close(fc->conns[i]);
	for (int i = 0; i < FAKE_CORE_MAX_CLIENTS; i++)
		if (fc->clients[i].used)
			drop(&fc->clients[i]);
	pthread_mutex_destroy(&fc->lock);
	free(fc);
}

const char *fake_core_url(const struct fake_core *fc)
{
	return fc->url;
}

const char *fake_core_fds_path(const struct fake_core *fc)
{
	return fc->fds_path;
}

void fake_core_set_hang(struct fake_core *fc, bool hang)
{
	pthread_mutex_lock(&fc->lock);
	fc->hang = hang;
	pthread_mutex_unlock(&fc->lock);
}

void fake_core_set_reset(struct fake_core *fc, uint32_t client)
{
	pthread_mutex_lock(&fc->lock);
	fc->reset_client = client;
	pthread_mutex_unlock(&fc->lock);
}

void fake_core_set_accept(struct fake_core *fc, bool ready)
{
	pthread_mutex_lock(&fc->lock);
	fc->accept_ready = ready;
	pthread_mutex_unlock(&fc->lock);
}

void fake_core_get_seen(struct fake_core *fc, struct fake_core_seen *out)
{
	pthread_mutex_lock(&fc->lock);
	*out = fc->seen;
	out->clients = 0;
	for (int i = 0; i < FAKE_CORE_MAX_CLIENTS; i++)
		out->clients += fc->clients[i].used && fc->clients[i].added;
	pthread_mutex_unlock(&fc->lock);
}

int fake_core_client(struct fake_core *fc, uint32_t client, ino_t *memfd_ino,
                     struct nc_client_params *params, int *core_bell)
{
	int rc = -1;
	pthread_mutex_lock(&fc->lock);
	struct fc_client *c = find(fc, client);
	struct stat st;
	if (c != NULL && c->added && fstat(c->fds[0], &st) == 0) {
		*memfd_ino = st.st_ino;
		*params = c->params;
		*core_bell = fcntl(c->fds[2], F_DUPFD_CLOEXEC, 0);
		rc = 0;
	}
	pthread_mutex_unlock(&fc->lock);
	return rc;
}
