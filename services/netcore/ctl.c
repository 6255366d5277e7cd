/*
 * The control server: the broker's nng requests and the fd channel.
 *
 * Transports. An nng rep0 socket listens on the control URL (ipc paths
 * are made mode 0600). Its receive fd (NNG_OPT_RECVFD) sits in the core's
 * epoll set, and each nc_core_poll() takes up to a batch of requests with
 * NNG_FLAG_NONBLOCK and answers each at once (every operation is
 * non-blocking). The socket is raw: a request keeps its routing header,
 * which its reply carries back, and replies go into nng's send queue
 * (NNG_OPT_SENDBUF deep). A cooked rep0 socket cannot do this without
 * blocking: a non-blocking reply fails, and is lost, whenever the pipe is
 * still writing the previous one. A broker that stops reading loses the
 * replies beyond the queue's depth (its calls time out); the loop never
 * waits for it. The
 * channel is a unix SOCK_SEQPACKET listener (mode 0600) where the broker
 * sends, per client, one 8-byte record {client, client_gen} with
 * SCM_RIGHTS [memfd, client_bell, core_bell]; nng cannot carry fds.
 *
 * States of a client's arrival. The fd record comes first: its region is
 * attached and checked right away and kept *pending* under (client,
 * client_gen), with the reason if it was refused. Then CLIENT_ADD: the
 * broker sent the record before the request, and a unix socket delivers
 * into the receiver's buffer before sendmsg returns, so the handler reads
 * the fd channel to the end first; the pending entry becomes an active
 * client, or the request fails with its reason (-ENOENT if no record
 * came). At most MAX_PENDING wait; the oldest gives way.
 *
 * Trust. The broker is trusted but crashable, and anything may connect
 * to a socket path: every message is checked. A request must pass
 * nc_msg_check (exact size, magic, version, known type) and is copied
 * once before anything reads it; a bad one is answered -EPROTO, one too
 * short to carry a header hangs up its pipe. An fd record must be exactly
 * 8 bytes with exactly three fds, else every fd in it is closed and it is
 * dropped (counted); the region must attach as NC_CLIENT_REGION_KIND and
 * the bells must be eventfds (clients.c).
 *
 * Resends. nng's req resends a request whose pipe broke before the reply
 * came, on the next pipe. The last request and its reply are kept: the
 * same bytes again (same id) get the same reply without acting twice, so
 * a resent SOCKET cannot leak a channel. Ids are not otherwise enforced: a
 * restarted broker starts its ids again.
 *
 * Per client, the last request the client itself sent (origin_id, the
 * client's own id, which the broker forwards) and its reply are kept too:
 * a client whose broker died mid-call sends the request again through the
 * next broker, and gets the answer instead of a second socket.
 *
 * Restart. A restarted core replaces a stale socket file at the fd path
 * and knows no clients: requests naming one are answered -ECONNRESET,
 * which is also what a client the core disconnected gets. Its boot id
 * (CORE_HELLO) tells the broker it is a new core: the broker then adds
 * every client again with "adopt" (clients.c), and the clients re-create
 * their listeners. A restarted broker instead rebuilds its tables from a
 * live core: CLIENT_LIST walks the clients (with who they are, as the
 * broker said at CLIENT_ADD, and their reattach tokens), SOCK_LIST each
 * client's sockets.
 *
 * What it does not do: authenticate (the broker does, SO_PEERCRED; the
 * socket modes keep other users out), queue requests, or reply later.
 */
#include "services/netcore/ctl.h"
#include "services/common/log.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "services/netcore/clients.h"
#include "services/netcore/sock.h"

#define CTL_BATCH   32   /* requests per poll */
#define MAX_CONNS   4    /* fd-channel connections (one broker, restarts) */
#define MAX_PENDING 16   /* fd records waiting for their CLIENT_ADD */
#define MAX_FDS_IN  8    /* room to see a record that carries too many */
#define RECV_MAX    1024 /* nng refuses anything longer */
#define SEND_QUEUE  256  /* replies nng holds for a slow broker */

struct pending {
	bool used;
	uint32_t client, gen;
	int err;               /* why the region was refused, or 0 */
	struct nci_client *cl; /* attached, not active */
	uint64_t seq;          /* arrival order, for eviction */
};

struct fd_record {
	uint32_t client;
	uint32_t client_gen;
};

struct nci_ctl {
	struct nci_clients *clients;
	struct nci_stats *stats;
	int epfd;
	bool have_sock;
	nng_socket sock;
	struct nci_src ctl_src;
	char *fds_path;
	struct nci_src listen_src;
	struct nci_src conns[MAX_CONNS];
	struct pending pending[MAX_PENDING];
	uint64_t seq;
	bool have_last;
	struct nc_msg_req last_req;
	struct nc_msg_rep last_rep;
	uint32_t boot_id; /* random, never 0: tells a restarted core apart */
	/* The listener, renewed when nobody has been connected for a while:
	 * nng 1.5.2's listener can go deaf for good when a dialer hangs up
	 * during the handshake (nng #1518, fixed in 1.6), which a broker
	 * redialling a restarting core does. */
	char *url;
	bool have_listener;
	nng_listener listener;
	atomic_int pipes;     /* nng's threads count; the loop reads */
	int64_t lonely_since; /* ms (monotonic) with no pipe, or 0 */
};

/* ------------------------------------------------------------ pending */

static void pending_clear(struct pending *p)
{
	nci_client_free(p->cl);
	p->cl = NULL;
	p->used = false;
}

static struct pending *pending_find(struct nci_ctl *ctl, uint32_t client,
                                    uint32_t gen)
{
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &ctl->pending[i];
		if (p->used && p->client == client && p->gen == gen)
			return p;
	}
	return NULL;
}

/* The slot for a new record: a repeat replaces its predecessor, else a
 * free slot, else the oldest record gives way. */
static struct pending *pending_slot(struct nci_ctl *ctl, uint32_t client,
                                    uint32_t gen)
{
	struct pending *p = pending_find(ctl, client, gen);
	struct pending *oldest = NULL;
	for (int i = 0; i < MAX_PENDING && p == NULL; i++) {
		struct pending *q = &ctl->pending[i];
		if (!q->used)
			p = q;
		else if (oldest == NULL || q->seq < oldest->seq)
			oldest = q;
	}
	if (p == NULL) {
		p = oldest;
		ctl->stats->fds_refused++;
	}
	if (p->used)
		pending_clear(p);
	return p;
}

void nci_ctl_offer_fds(struct nci_ctl *ctl, uint32_t client,
                       uint32_t client_gen, const int fds[3])
{
	struct pending *p = pending_slot(ctl, client, client_gen);
	p->used = true;
	p->client = client;
	p->gen = client_gen;
	p->seq = ctl->seq++;
	p->err = nci_client_attach(&p->cl, client, client_gen, fds[0], fds[1],
	                           fds[2]);
	if (p->err)
		ctl->stats->fds_refused++;
}

/* --------------------------------------------------------- fd channel */

static void conn_close(struct nci_ctl *ctl, struct nci_src *c)
{
	nci_epoll_del(ctl->epfd, c);
	close(c->fd);
	c->fd = -1;
	c->ready = false;
}

static void close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Every fd the record carried, in order; those beyond `max` are closed
 * (but counted, so the record is refused). */
static int collect_fds(struct msghdr *msg, int *fds, int max)
{
	int total = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL;
	     c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++, total++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (total < max)
				fds[total] = fd;
			else
				close(fd);
		}
	}
	return total;
}

/* One record: 0 when one was read (used or refused), -EAGAIN when none
 * is waiting, another -errno when the connection is finished. */
static int fds_recv_one(struct nci_ctl *ctl, int fd)
{
	struct fd_record rec;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_IN)];
	} ctrl;
	struct iovec iov = {.iov_base = &rec, .iov_len = sizeof(rec)};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctrl.buf,
	                     .msg_controllen = sizeof(ctrl.buf)};
	ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN
		                                               : -errno;
	int fds[MAX_FDS_IN];
	int nfds = collect_fds(&msg, fds, MAX_FDS_IN);
	int kept = nfds < MAX_FDS_IN ? nfds : MAX_FDS_IN;
	if (n == 0 && nfds == 0)
		return -ECONNRESET; /* the broker hung up */
	if (n != sizeof(rec) || nfds != 3 ||
	    (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		close_all(fds, kept);
		ctl->stats->fds_refused++;
		return 0;
	}
	nci_ctl_offer_fds(ctl, rec.client, rec.client_gen, fds);
	return 0;
}

static void fds_read(struct nci_ctl *ctl, struct nci_src *c)
{
	int r;
	/* Ends: each round consumes a record the peer already sent. */
	while ((r = fds_recv_one(ctl, c->fd)) == 0)
		continue;
	if (r != -EAGAIN)
		conn_close(ctl, c);
}

static struct nci_src *free_conn(struct nci_ctl *ctl)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (ctl->conns[i].fd < 0)
			return &ctl->conns[i];
	return NULL;
}

static void fds_accept(struct nci_ctl *ctl)
{
	int fd;
	while ((fd = accept4(ctl->listen_src.fd, NULL, NULL,
	                     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct nci_src *c = free_conn(ctl);
		if (c == NULL) {
			close(fd);
			ctl->stats->fds_refused++;
			continue;
		}
		c->kind = NCI_SRC_FDS;
		c->fd = fd;
		c->ready = true; /* it may have sent already */
		if (nci_epoll_add(ctl->epfd, c) != 0) {
			close(fd);
			c->fd = -1;
		}
	}
}

/* Accepts and reads what woke up, or everything (`all`). */
static void fds_service(struct nci_ctl *ctl, bool all)
{
	if (ctl->listen_src.fd >= 0 && (all || ctl->listen_src.ready)) {
		ctl->listen_src.ready = false;
		fds_accept(ctl);
	}
	for (int i = 0; i < MAX_CONNS; i++) {
		struct nci_src *c = &ctl->conns[i];
		if (c->fd >= 0 && (all || c->ready)) {
			c->ready = false;
			fds_read(ctl, c);
		}
	}
}

/* A socket file left by a core that died is ours to replace; anything
 * else at the path stays, and bind fails. */
static void unlink_stale(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

static int open_fds(struct nci_ctl *ctl, const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	ctl->fds_path = strdup(path);
	if (ctl->fds_path == NULL)
		return -ENOMEM;
	int fd =
	    socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink_stale(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	ctl->listen_src.kind = NCI_SRC_FDS;
	ctl->listen_src.fd = fd;
	return nci_epoll_add(ctl->epfd, &ctl->listen_src);
}

/* --------------------------------------------------------------- nng */

static int nng_errno(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_EADDRINVAL:
		return -EINVAL;
	case NNG_ENOTSUP:
		return -EPROTONOSUPPORT;
	case NNG_EPERM:
		return -EACCES;
	default:
		return -EIO;
	}
}

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct nci_ctl *ctl = arg;
	(void)p;
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&ctl->pipes, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&ctl->pipes, 1);
}

static int start_listener(struct nci_ctl *ctl)
{
	nng_listener l;
	int rv = nng_listener_create(&l, ctl->sock, ctl->url);
	if (rv == 0) {
		int p = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
		rv = p == NNG_ENOTSUP ? 0 : p; /* not an ipc:// URL */
	}
	rv = rv ?: nng_listener_start(l, 0);
	if (rv == 0) {
		ctl->listener = l;
		ctl->have_listener = true;
	}
	return rv;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define RELISTEN_MS 1000 /* alone this long: a fresh listener */

/* See struct nci_ctl: a listener nobody reached for RELISTEN_MS is
 * replaced (cheap when no broker is there, a cure when one is locked
 * out). Connected brokers are never disturbed. */
static void relisten_if_alone(struct nci_ctl *ctl)
{
	if (!ctl->have_listener || atomic_load(&ctl->pipes) > 0) {
		ctl->lonely_since = 0;
		return;
	}
	int64_t now = mono_ms();
	if (ctl->lonely_since == 0 || now - ctl->lonely_since < RELISTEN_MS) {
		if (ctl->lonely_since == 0)
			ctl->lonely_since = now;
		return;
	}
	ctl->lonely_since = now;
	nng_listener_close(ctl->listener);
	ctl->have_listener = false;
	if (start_listener(ctl) == 0)
		ctl->stats->ctl_relistens++;
}

static int open_nng(struct nci_ctl *ctl, const char *url)
{
	int fd = -1;
	ctl->url = strdup(url);
	if (ctl->url == NULL)
		return -ENOMEM;
	int rv = nng_rep0_open_raw(&ctl->sock);
	if (rv == 0)
		ctl->have_sock = true;
	rv = rv ?: nng_socket_set_size(ctl->sock, NNG_OPT_RECVMAXSZ, RECV_MAX);
	rv = rv ?: nng_socket_set_int(ctl->sock, NNG_OPT_SENDBUF, SEND_QUEUE);
	rv = rv
	         ?: nng_pipe_notify(ctl->sock, NNG_PIPE_EV_ADD_POST, on_pipe,
	                            ctl);
	rv = rv
	         ?: nng_pipe_notify(ctl->sock, NNG_PIPE_EV_REM_POST, on_pipe,
	                            ctl);
	rv = rv ?: start_listener(ctl);
	rv = rv ?: nng_socket_get_int(ctl->sock, NNG_OPT_RECVFD, &fd);
	if (rv != 0) {
		nc_log(NC_LOG_ERROR, "control %s: %s", url, nng_strerror(rv));
		return nng_errno(rv);
	}
	ctl->ctl_src.kind = NCI_SRC_CTL;
	ctl->ctl_src.fd = fd;
	return nci_epoll_add(ctl->epfd, &ctl->ctl_src);
}

/* The reply replaces the request's body; the header (pipe id and
 * backtrace) routes it back to the requester. Takes the message. */
static void send_reply(struct nci_ctl *ctl, nng_msg *m,
                       const struct nc_msg_rep *rep)
{
	nng_msg_clear(m);
	if (nng_msg_append(m, rep, sizeof(*rep)) != 0 ||
	    nng_sendmsg(ctl->sock, m, NNG_FLAG_NONBLOCK) != 0) {
		nng_msg_free(m);
		ctl->stats->ctl_reply_failed++;
	}
}

static bool serve_one(struct nci_ctl *ctl)
{
	nng_msg *m;
	if (nng_recvmsg(ctl->sock, &m, NNG_FLAG_NONBLOCK) != 0)
		return false;
	struct nc_msg_rep rep;
	bool hang_up;
	nci_ctl_handle(ctl, nng_msg_body(m), nng_msg_len(m), &rep, &hang_up);
	if (!hang_up) {
		send_reply(ctl, m, &rep);
		return true;
	}
	nng_pipe_close(nng_msg_get_pipe(m));
	nng_msg_free(m);
	return true;
}

/* ----------------------------------------------------------- dispatch */

/* The reply to CLIENT_ADD also shows what the core read from the region
 * header, in the ATTACH fields, so the broker can compare. */
static int client_add(struct nci_ctl *ctl, const struct nc_msg_req *q,
                      struct nc_msg_rep *rep)
{
	uint32_t id = q->client, gen = q->client_gen;
	if (nci_clients_find(ctl->clients, id) != NULL)
		return -EEXIST;
	/* The broker sent the record before this request: it is in our
	 * socket buffer by now, maybe on a connection not yet accepted. */
	fds_service(ctl, true);
	struct pending *p = pending_find(ctl, id, gen);
	if (p == NULL)
		return -ENOENT;
	int err = p->err;
	struct nci_client *cl = p->cl;
	p->cl = NULL;
	p->used = false;
	if (err)
		return err;
	rep->client = id;
	rep->max_sockets = cl->params.max_sockets;
	rep->ring_slots = cl->params.ring_slots;
	rep->buf_count = cl->params.buf_count;
	rep->buf_size = cl->params.buf_size;
	cl->pid = q->pid;
	cl->uid = q->uid;
	cl->gid = q->gid;
	cl->token = q->token;
	if (q->arg == 1)
		return nci_clients_adopt(ctl->clients, cl);
	return nci_clients_add(ctl->clients, cl);
}

static int client_list(struct nci_ctl *ctl, uint32_t after,
                       struct nc_msg_rep *rep)
{
	struct nci_client *cl = nci_clients_next(ctl->clients, after);
	if (cl == NULL)
		return 0; /* rep->client = 0: the end */
	rep->client = cl->id;
	rep->max_sockets = cl->params.max_sockets;
	rep->ring_slots = cl->params.ring_slots;
	rep->buf_count = cl->params.buf_count;
	rep->buf_size = cl->params.buf_size;
	rep->pid = cl->pid;
	rep->uid = cl->uid;
	rep->gid = cl->gid;
	rep->token = cl->token;
	rep->arg = (int32_t)cl->gen;
	return 0;
}

/* A client's request: answered from the cache if the client resent it
 * (a broker restart between our reply and the client), else done. */
static int client_request(struct nci_client *cl, const struct nc_msg_req *q,
                          struct nc_msg_rep *rep)
{
	if (q->origin_id != 0 && q->origin_id == cl->last_origin &&
	    q->hdr.type == cl->last_type) {
		struct nc_msg_hdr h = rep->hdr;
		*rep = cl->last_rep;
		rep->hdr = h;
		return rep->result;
	}
	int result = nci_sock_request(cl, q, rep);
	if (cl->broken)
		return -ECONNRESET;
	cl->last_origin = q->origin_id;
	cl->last_type = q->hdr.type;
	cl->last_rep = *rep;
	cl->last_rep.result = result;
	if (result < 0) {
		cl->last_rep.sock = -1;
		cl->last_rep.sock_gen = 0;
	}
	return result;
}

static int client_remove(struct nci_ctl *ctl, uint32_t id, uint32_t gen)
{
	struct pending *p = pending_find(ctl, id, gen);
	if (p != NULL)
		pending_clear(p);
	struct nci_client *cl = nci_clients_find(ctl->clients, id);
	if (cl == NULL)
		return 0; /* already gone: the core disconnected it */
	if (cl->gen != gen)
		return -ESTALE;
	nci_clients_retire(ctl->clients, cl);
	ctl->stats->clients_removed++;
	return 0;
}

static int dispatch(struct nci_ctl *ctl, const struct nc_msg_req *q,
                    struct nc_msg_rep *rep)
{
	switch (q->hdr.type) {
	case NC_MSG_ATTACH: /* the client's hello is the broker's business */
		return -EPROTO;
	case NC_MSG_REATTACH: /* so is its return */
		return -EPROTO;
	case NC_MSG_CLIENT_ADD:
		return client_add(ctl, q, rep);
	case NC_MSG_CLIENT_REMOVE:
		return client_remove(ctl, q->client, q->client_gen);
	case NC_MSG_CORE_HELLO:
		rep->client = ctl->boot_id;
		return 0;
	case NC_MSG_CLIENT_LIST:
		return client_list(ctl, q->client, rep);
	default:
		break;
	}
	struct nci_client *cl = nci_clients_find(ctl->clients, q->client);
	if (cl == NULL || cl->gen != q->client_gen || cl->broken)
		return -ECONNRESET;
	if (cl->adopt_epoch != 0)
		return -EAGAIN; /* the client has not let go of the old rings */
	if (q->hdr.type == NC_MSG_SOCK_LIST)
		return nci_sock_describe(cl, q->sock, rep);
	return client_request(cl, q, rep);
}

/* A valid request: answered once, or again from the cache if resent. */
static void answer(struct nci_ctl *ctl, const struct nc_msg_req *q,
                   struct nc_msg_rep *rep)
{
	if (ctl->have_last && memcmp(q, &ctl->last_req, sizeof(*q)) == 0) {
		*rep = ctl->last_rep;
		ctl->stats->ctl_duplicates++;
		return;
	}
	rep->result = dispatch(ctl, q, rep);
	if (rep->result < 0) {
		rep->sock = -1;
		rep->sock_gen = 0;
	}
	if (rep->result == -EPROTO)
		ctl->stats->ctl_refused++;
	ctl->last_req = *q;
	ctl->last_rep = *rep;
	ctl->have_last = true;
}

void nci_ctl_handle(struct nci_ctl *ctl, const void *req, size_t len,
                    struct nc_msg_rep *rep, bool *hang_up)
{
	struct nc_msg_hdr h;
	memset(rep, 0, sizeof(*rep));
	ctl->stats->ctl_requests++;
	*hang_up = len < sizeof(h);
	if (*hang_up) {
		ctl->stats->ctl_refused++;
		return;
	}
	memcpy(&h, req, sizeof(h));
	nc_msg_init(&rep->hdr, (enum nc_msg_type)h.type, h.id, sizeof(*rep));
	rep->sock = -1;
	if (nc_msg_check(req, len, sizeof(struct nc_msg_req)) != 0) {
		rep->result = -EPROTO;
		ctl->stats->ctl_refused++;
		return;
	}
	struct nc_msg_req q;
	memcpy(&q, req, sizeof(q)); /* one copy: everything reads q */
	answer(ctl, &q, rep);
}

/* ---------------------------------------------------------- lifecycle */

static uint32_t boot_id(void)
{
	uint32_t id = 0;
	/* Only has to differ from the last core's: the clock is enough if
	 * getrandom is not. */
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
	return id != 0 ? id : 1;
}

int nci_ctl_create(struct nci_ctl **out, struct nci_clients *clients, int epfd,
                   const char *url, const char *fds_path)
{
	*out = NULL;
	struct nci_ctl *ctl = calloc(1, sizeof(*ctl));
	if (ctl == NULL)
		return -ENOMEM;
	ctl->clients = clients;
	ctl->stats = nci_clients_stats(clients);
	ctl->epfd = epfd;
	ctl->boot_id = boot_id();
	ctl->ctl_src.fd = ctl->listen_src.fd = -1;
	for (int i = 0; i < MAX_CONNS; i++)
		ctl->conns[i].fd = -1;
	/* The fd channel first: a broker that reaches the control URL may
	 * send fds at once. */
	int err = fds_path ? open_fds(ctl, fds_path) : 0;
	err = err ?: (url ? open_nng(ctl, url) : 0);
	if (err) {
		nci_ctl_destroy(ctl);
		return err;
	}
	*out = ctl;
	return 0;
}

void nci_ctl_destroy(struct nci_ctl *ctl)
{
	if (ctl == NULL)
		return;
	if (ctl->ctl_src.fd >= 0)
		nci_epoll_del(ctl->epfd, &ctl->ctl_src);
	if (ctl->have_sock)
		nng_close(ctl->sock); /* also closes its receive fd */
	for (int i = 0; i < MAX_CONNS; i++)
		if (ctl->conns[i].fd >= 0)
			conn_close(ctl, &ctl->conns[i]);
	if (ctl->listen_src.fd >= 0) {
		conn_close(ctl, &ctl->listen_src);
		unlink(ctl->fds_path);
	}
	free(ctl->fds_path);
	free(ctl->url);
	for (int i = 0; i < MAX_PENDING; i++)
		if (ctl->pending[i].used)
			pending_clear(&ctl->pending[i]);
	free(ctl);
}

bool nci_ctl_poll(struct nci_ctl *ctl)
{
	fds_service(ctl, false);
	if (!ctl->have_sock)
		return false;
	relisten_if_alone(ctl);
	int served = 0;
	while (served < CTL_BATCH && serve_one(ctl))
		served++;
	return served == CTL_BATCH;
}
