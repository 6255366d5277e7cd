/*
 * The broker's event loop: the attach socket, the clients, and the calls
 * to the core, all in one thread over one epoll set.
 *
 * Client states (enum nci_client_state):
 *
 *   NEW --ATTACH ok--> ADDING --core says 0--> ATTACHED --death--> REMOVING
 *    |                   |                        |                   |
 *    +--refusal, timeout-+--core refuses/silent---+                   v
 *                                                                   freed
 *
 * A NEW connection must send ATTACH within attach_timeout_ms or it is
 * closed: unattached connections must not hold client slots forever. Each
 * client has at most one request to the core in flight; while it has one,
 * its attach socket is not read (EPOLLIN off), which keeps its requests in
 * order and lets its own socket buffer, not our memory, hold whatever a
 * client pipelines. A client that hangs up while a request is in flight
 * becomes `gone`: its attach socket is closed at once, and the call is
 * allowed to finish (bounded by core_timeout_ms) before CLIENT_REMOVE is
 * sent, so the core never sees a request of a client after its removal.
 * Its quota (memory, client slot) and its table are released when the core
 * answers the REMOVE (or does not, in time): until then the region may
 * still be mapped by the core, so its memory still counts. (The core may
 * keep it a little longer, bounded, to send what the client wrote before
 * it went: services/netcore/clients.c, RETIRING.)
 *
 * Ownership. The broker owns each client's memfd and both eventfds for as
 * long as the client lives (the core and the client hold their own copies;
 * the broker does not map the region after creating it: it never needs to
 * read memory a client can write). It keeps them to hand them to a
 * restarted core.
 *
 * Restart behaviour: nc_broker_destroy() tells the core nothing, so a
 * broker that exits leaves the core's clients in place, and their data
 * keeps flowing. A new broker rebuilds its tables from the core and waits
 * for each client to come back with REATTACH; a new core gets every client
 * again. Both are recover.c. Until the tables agree with the core, ATTACH
 * and REATTACH are answered -EAGAIN. The attach socket path is taken over
 * from a dead broker (stale socket file), never from a live one.
 *
 * What it does not do: authenticate beyond SO_PEERCRED and the uid list,
 * limit clients per uid, or police unconnected UDP destinations (README).
 */
#include "services/common/log.h"
#include "services/proxy_broker/broker_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ACCEPT_BATCH 64 /* per turn, so clients already here get a turn */
#define EVENTS_MAX   64
#define MSG_MAX      512 /* receive buffer; larger messages are -EPROTO */

int64_t nci_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ attach socket */

/* A socket file at the path: is a broker (or anything) still serving it? */
static int probe_existing(const struct sockaddr_un *addr)
{
	struct stat st;
	if (lstat(addr->sun_path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST; /* never replace what is not a socket */
	int fd =
	    socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	int err = rc == 0 ? 0 : errno;
	close(fd);
	if (err == ECONNREFUSED)
		return 0;   /* stale: nobody listens */
	return -EADDRINUSE; /* live (or busy, or of another type) */
}

/*
 * Binds under a temporary name, sets the mode, listens, then renames over
 * the path: the path never shows a socket with the wrong mode or one that
 * refuses connections, and a stale file is replaced atomically.
 */
static int bind_listener(struct nc_broker *b, const char *path)
{
	struct sockaddr_un tmp = {.sun_family = AF_UNIX};
	int n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d.tmp", path,
	                 (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp.sun_path))
		return -ENAMETOOLONG;
	unlink(tmp.sun_path); /* our own leftover, if any */
	int fd =
	    socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int err = 0;
	if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) != 0 ||
	    chmod(tmp.sun_path, 0660) != 0 || listen(fd, 128) != 0 ||
	    rename(tmp.sun_path, path) != 0)
		err = -errno;
	struct stat st;
	if (err == 0 && stat(path, &st) != 0)
		err = -errno;
	if (err) {
		unlink(tmp.sun_path);
		close(fd);
		return err;
	}
	b->sock_dev = st.st_dev;
	b->sock_ino = st.st_ino;
	b->listen_fd = fd;
	return 0;
}

static int make_listener(struct nc_broker *b, const char *path)
{
	if (strlen(path) >= sizeof(b->addr.sun_path))
		return -ENAMETOOLONG;
	b->addr.sun_family = AF_UNIX;
	strcpy(b->addr.sun_path, path);
	int err = probe_existing(&b->addr);
	return err ? err : bind_listener(b, path);
}

/* Unlinks the path only if it is still the socket we made. */
static void remove_listener(struct nc_broker *b)
{
	struct stat st;
	if (b->listen_fd < 0)
		return;
	close(b->listen_fd);
	b->listen_fd = -1;
	if (stat(b->addr.sun_path, &st) == 0 && st.st_dev == b->sock_dev &&
	    st.st_ino == b->sock_ino)
		unlink(b->addr.sun_path);
}

/* --------------------------------------------------------------- replies */

int nci_send_rep(int fd, const struct nc_msg_rep *rep, const int *fds, int nfds)
{
	struct iovec iov = {.iov_base = (void *)rep, .iov_len = sizeof(*rep)};
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*rep) ? 0 : -EIO;
}

void nci_rep_init(struct nc_msg_rep *rep, const struct nc_msg_hdr *asked,
                  int32_t result)
{
	memset(rep, 0, sizeof(*rep));
	nc_msg_init(&rep->hdr, NC_MSG_ATTACH, asked->id, sizeof(*rep));
	rep->hdr.type = asked->type; /* echo even a type we do not know */
	rep->result = result;
	rep->sock = -1;
}

/* ---------------------------------------------------------------- clients */

void nci_set_reading(struct nc_broker *b, struct nci_client *cl, bool on)
{
	if (cl->fd < 0 || cl->reading == on)
		return;
	struct epoll_event ev = {.events = EPOLLRDHUP | (on ? EPOLLIN : 0),
	                         .data.ptr = &cl->watch};
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, cl->fd, &ev) == 0)
		cl->reading = on;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void close_attach_socket(struct nc_broker *b, struct nci_client *cl)
{
	if (cl->fd < 0)
		return;
	epoll_ctl(b->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
	close_fd(&cl->fd);
	cl->reading = false;
}

static void pause_accepting(struct nc_broker *b, bool pause)
{
	struct epoll_event ev = {.events = pause ? 0 : EPOLLIN,
	                         .data.ptr = &b->listen_w};
	epoll_ctl(b->epfd, EPOLL_CTL_MOD, b->listen_fd, &ev);
	b->accept_paused = pause;
}

/* The end: quota, table and fds released, entry freed. */
void nci_free_client(struct nc_broker *b, struct nci_client *cl)
{
	close_attach_socket(b, cl);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		b->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	b->nclients--;
	b->memory -= cl->region_bytes;
	if (b->accept_paused)
		pause_accepting(b, false);
	nci_sync_forget(b, cl);
	nci_client_table_fini(cl);
	close_fd(&cl->memfd);
	close_fd(&cl->client_bell);
	close_fd(&cl->core_bell);
	free(cl);
}

static void on_remove_done(void *arg, int status, const struct nc_msg_rep *rep);

/*
 * The client is gone (hung up, misbehaved, refused, or reset by the core).
 * Called again after each call that was in flight finishes, until freed.
 */
void nci_client_lost(struct nc_broker *b, struct nci_client *cl)
{
	if (!cl->gone && cl->id != 0)
		nc_log(NC_LOG_INFO, "client %u (pid %d) gone (was %s)", cl->id,
		       cl->pid, nci_client_state_name(cl->state));
	close_attach_socket(b, cl);
	cl->gone = true;
	if (cl->call != NULL)
		return; /* its done function brings us back */
	if (!cl->known_to_core) {
		nci_free_client(b, cl);
		return;
	}
	struct nc_msg_req req;
	memset(&req, 0, sizeof(req));
	nc_msg_init(&req.hdr, NC_MSG_CLIENT_REMOVE, 0, sizeof(req));
	req.client = cl->id;
	req.client_gen = cl->gen;
	req.sock = -1;
	cl->state = NCI_CLIENT_REMOVING;
	if (nci_core_call(b->core, &req, b->cfg.core_timeout_ms, on_remove_done,
	                  cl, &cl->call) != 0) {
		cl->call = NULL;
		nci_free_client(b, cl);
	}
}

static void on_remove_done(void *arg, int status, const struct nc_msg_rep *rep)
{
	struct nci_client *cl = arg;
	struct nc_broker *b = cl->broker;
	(void)rep; /* whatever the core says, the client is gone for us */
	if (status != 0)
		b->st.core_errors++;
	cl->call = NULL;
	cl->known_to_core = false;
	nci_free_client(b, cl);
}

/* Answers a request without the core; a client that cannot take the
 * answer is lost. */
static void answer(struct nc_broker *b, struct nci_client *cl,
                   const struct nc_msg_hdr *asked, int32_t error)
{
	struct nc_msg_rep rep;
	nci_rep_init(&rep, asked, error);
	b->st.refused++;
	if (nci_send_rep(cl->fd, &rep, NULL, 0) != 0)
		nci_client_lost(b, cl);
}

/* ----------------------------------------------------------------- attach */

static void on_add_done(void *arg, int status, const struct nc_msg_rep *rep)
{
	struct nci_client *cl = arg;
	struct nc_broker *b = cl->broker;
	cl->call = NULL;
	if (status != 0)
		b->st.core_errors++;
	int32_t result = status == 0 ? rep->result : status;
	if (status == 0 && result < 0)
		cl->known_to_core = false; /* it refused: it holds nothing */
	if (cl->gone) {
		nci_client_lost(b, cl);
		return;
	}
	struct nc_msg_rep out;
	nci_rep_init(&out, &cl->reply_hdr, result < 0 ? result : 0);
	if (result < 0) {
		nci_send_rep(cl->fd, &out, NULL, 0);
		nci_client_lost(b, cl);
		return;
	}
	out.client = cl->id;
	out.token = cl->token;
	out.max_sockets = cl->params.max_sockets;
	out.ring_slots = cl->params.ring_slots;
	out.buf_count = cl->params.buf_count;
	out.buf_size = cl->params.buf_size;
	const int fds[3] = {cl->memfd, cl->client_bell, cl->core_bell};
	if (nci_send_rep(cl->fd, &out, fds, 3) != 0) {
		nci_client_lost(b, cl);
		return;
	}
	cl->state = NCI_CLIENT_ATTACHED;
	nci_set_reading(b, cl, true);
}

/* The region (memfd only: the broker never maps it again) and bells. */
static int make_resources(struct nci_client *cl,
                          const struct nc_client_params *p)
{
	struct nc_region r;
	int err = nc_client_region_create(&r, p);
	if (err)
		return err == -NC_ELAYOUT ? -EINVAL : err;
	cl->memfd = fcntl(r.fd, F_DUPFD_CLOEXEC, 0);
	err = cl->memfd < 0 ? -errno : 0;
	nc_region_close(&r);
	struct nc_doorbell client_bell, core_bell;
	if (!err && (err = nc_doorbell_create(&client_bell)) == 0)
		cl->client_bell = client_bell.fd;
	if (!err && (err = nc_doorbell_create(&core_bell)) == 0)
		cl->core_bell = core_bell.fd;
	if (!err)
		err = nci_client_table_init(cl, p);
	return err; /* what was made is closed with the client */
}

/* 0, or why this client may not attach now. */
static int32_t attach_allowed(const struct nc_broker *b,
                              const struct nci_client *cl)
{
	if (!nc_broker_uid_allowed(&b->cfg, cl->uid))
		return -EACCES;
	uint64_t need = nc_broker_region_bytes(&b->cfg);
	if (b->memory + need > b->cfg.memory_limit)
		return -ENOBUFS;
	return 0;
}

int32_t nci_start_add(struct nc_broker *b, struct nci_client *cl, int32_t arg,
                      nci_done_fn done)
{
	const int fds[3] = {cl->memfd, cl->client_bell, cl->core_bell};
	if (nci_core_send_fds(b->core, cl->id, cl->gen, fds) != 0)
		return -EAGAIN; /* no core on the fd channel: retryable */
	cl->known_to_core = true;
	struct nc_msg_req req;
	memset(&req, 0, sizeof(req));
	nc_msg_init(&req.hdr, NC_MSG_CLIENT_ADD, 0, sizeof(req));
	req.client = cl->id;
	req.client_gen = cl->gen;
	req.sock = -1;
	req.arg = arg;
	req.pid = (uint32_t)cl->pid;
	req.uid = cl->uid;
	req.gid = cl->gid;
	req.token = cl->token;
	cl->call_adds = nci_core_pipe_adds(b->core);
	if (nci_core_call(b->core, &req, b->cfg.core_timeout_ms, done, cl,
	                  &cl->call) != 0) {
		cl->call = NULL;
		return -EAGAIN;
	}
	return 0;
}

/* A secret only this client learns (the ATTACH reply): with its pid, what
 * lets it reattach to a restarted broker. */
static uint64_t new_token(void)
{
	uint64_t t = 0;
	if (getrandom(&t, sizeof(t), 0) != sizeof(t))
		t = (uint64_t)nci_now_ms() * 0x9e3779b97f4a7c15ull;
	return t;
}

static void handle_attach(struct nc_broker *b, struct nci_client *cl,
                          const struct nc_msg_hdr *asked)
{
	cl->reply_hdr = *asked;
	int32_t err = b->synced ? attach_allowed(b, cl) : -EAGAIN;
	if (!err) {
		cl->id = b->next_client_id++;
		cl->gen = 1;
		cl->token = new_token();
		cl->region_bytes = nc_broker_region_bytes(&b->cfg);
		b->memory += cl->region_bytes; /* released by free_client */
		err = make_resources(cl, &b->cfg.region);
	}
	if (!err)
		err = nci_start_add(b, cl, 0, on_add_done);
	if (err) {
		struct nc_msg_rep rep;
		nci_rep_init(&rep, asked, err);
		b->st.refused++;
		nci_send_rep(cl->fd, &rep, NULL, 0);
		nci_client_lost(b, cl); /* a refused client must connect anew */
		return;
	}
	cl->state = NCI_CLIENT_ADDING;
	nci_set_reading(b, cl, false);
}

/* -------------------------------------------------------------- forwarding */

static void copy_payload(struct nc_msg_rep *out, const struct nc_msg_rep *in)
{
	out->sock = in->sock;
	out->sock_gen = in->sock_gen;
	out->optlen = in->optlen;
	memcpy(out->opt, in->opt, sizeof(out->opt));
	out->addr = in->addr;
}

static void on_forward_done(void *arg, int status, const struct nc_msg_rep *rep)
{
	struct nci_client *cl = arg;
	struct nc_broker *b = cl->broker;
	cl->call = NULL;
	if (status != 0)
		b->st.core_errors++;
	if (cl->gone) {
		nci_client_lost(b, cl);
		return;
	}
	int32_t result =
	    status == 0 ? nci_apply_reply(cl, &cl->fwd, rep) : status;
	struct nc_msg_rep out;
	nci_rep_init(&out, &cl->reply_hdr, result);
	if (result >= 0)
		copy_payload(&out, rep);
	/* -ECONNRESET from the core: it dropped this client (docs), or the
	 * call reached a new core that does not know it yet. Which of the
	 * two, a HELLO tells (recover.c): the client is re-added or lost. */
	if (status == 0 && result == -ECONNRESET)
		nci_sync_suspect(b, cl);
	if (nci_send_rep(cl->fd, &out, NULL, 0) != 0) {
		nci_client_lost(b, cl);
		return;
	}
	nci_set_reading(b, cl, true);
	nci_sync_after_call(b, cl);
}

void nci_forward_held(struct nc_broker *b, struct nci_client *cl)
{
	cl->held = false;
	cl->call_adds = nci_core_pipe_adds(b->core);
	if (nci_core_call(b->core, &cl->fwd, b->cfg.core_timeout_ms,
	                  on_forward_done, cl, &cl->call) != 0) {
		cl->call = NULL;
		b->st.core_errors++;
		answer(b, cl, &cl->reply_hdr, -EAGAIN);
		return;
	}
	b->st.forwarded++;
}

/* While the core may be a new one that does not know the client yet (a
 * sync is due or running), the request waits: the sync forwards it, or
 * answers it if the client's sockets went with the old core. */
static void forward(struct nc_broker *b, struct nci_client *cl,
                    const struct nci_decision *d)
{
	cl->reply_hdr = d->hdr;
	cl->fwd = d->req;
	nci_set_reading(b, cl, false);
	cl->held = true;
	if (!nci_sync_pending(b))
		nci_forward_held(b, cl);
}

/* ------------------------------------------------------------ client input */

_Static_assert(MSG_MAX != sizeof(struct nc_msg_req),
               "a clipped oversized message must not look well-sized");

/* Every fd a message carried, closing those beyond `max` (a control
 * buffer too small for them is truncated by the kernel, which closes the
 * rest itself). */
static int take_fds(struct msghdr *mh, int *fds, int max)
{
	int n = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL;
	     c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (n < max)
				fds[n++] = fd;
			else
				close(fd);
		}
	}
	return n;
}

static void close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* One message and the fds it carried (only REATTACH may carry any).
 * MSG_TRUNC: the length is the message's real one. */
static ssize_t recv_message(int fd, uint8_t *buf, size_t size, int *fds,
                            int *nfds)
{
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(3 * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = size};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = ctl.bytes,
	                    .msg_controllen = sizeof(ctl.bytes)};
	ssize_t n =
	    recvmsg(fd, &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
	*nfds = n >= 0 ? take_fds(&mh, fds, 3) : 0;
	return n;
}

static void handle_message(struct nc_broker *b, struct nci_client *cl)
{
	uint8_t buf[MSG_MAX];
	int fds[3], nfds;
	ssize_t n = recv_message(cl->fd, buf, sizeof(buf), fds, &nfds);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close_fds(fds, nfds);
		nci_client_lost(b, cl);
		return;
	}
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf);
	struct nci_decision d;
	nci_decide(&b->cfg, cl, buf, len, &d);
	if (d.verdict == NCI_REATTACH) {
		nci_handle_reattach(b, cl, &d.req, fds, nfds);
		return;
	}
	close_fds(fds, nfds);
	switch (d.verdict) {
	case NCI_DISCONNECT:
		b->st.disconnected++;
		nci_client_lost(b, cl);
		break;
	case NCI_REPLY:
		answer(b, cl, &d.hdr, d.error);
		break;
	case NCI_ATTACH:
		handle_attach(b, cl, &d.hdr);
		break;
	case NCI_FORWARD:
		forward(b, cl, &d);
		break;
	case NCI_REATTACH:
		break;
	}
}

static void on_client_event(struct nc_broker *b, struct nci_client *cl,
                            uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
		nci_client_lost(b, cl);
		return;
	}
	if ((events & EPOLLIN) && cl->reading)
		handle_message(b, cl);
}

/* ------------------------------------------------------------ connections */

/* Full: tell the caller why, in the ATTACH reply's shape, and hang up. */
static void refuse_connection(struct nc_broker *b, int fd)
{
	struct nc_msg_hdr asked;
	nc_msg_init(&asked, NC_MSG_ATTACH, 1, sizeof(struct nc_msg_req));
	struct nc_msg_rep rep;
	nci_rep_init(&rep, &asked, -ENFILE);
	nci_send_rep(fd, &rep, NULL, 0);
	close(fd);
	b->st.refused++;
}

/* A connection held while the tables are not in step with the core gets
 * -EAGAIN (in ATTACH's shape, as for a refusal before reading) once its
 * deadline passes. */
static void refuse_unsynced(struct nc_broker *b, struct nci_client *cl)
{
	/* Unread messages would turn our close into a reset that hides the
	 * answer: read them first (a bounded few; fds in them are closed by
	 * the kernel, as no control buffer is given). */
	uint8_t junk[MSG_MAX];
	for (int i = 0; i < 16; i++)
		if (recv(cl->fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			break;
	struct nc_msg_hdr asked;
	nc_msg_init(&asked, NC_MSG_ATTACH, 1, sizeof(struct nc_msg_req));
	struct nc_msg_rep rep;
	nci_rep_init(&rep, &asked, -EAGAIN);
	nci_send_rep(cl->fd, &rep, NULL, 0);
	b->st.refused++;
}

static int new_client(struct nc_broker *b, int fd)
{
	struct nci_client *cl = calloc(1, sizeof(*cl));
	if (cl == NULL)
		return -ENOMEM;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		free(cl);
		return -errno;
	}
	cl->watch.kind = NCI_W_CLIENT;
	cl->broker = b;
	cl->pid = cred.pid;
	cl->uid = cred.uid;
	cl->gid = cred.gid;
	cl->fd = fd;
	cl->memfd = cl->client_bell = cl->core_bell = -1;
	cl->pidw.fd = -1;
	cl->state = NCI_CLIENT_NEW;
	cl->deadline_ms = nci_now_ms() + (b->synced ? b->cfg.attach_timeout_ms
	                                            : b->cfg.core_timeout_ms);
	/* Until the tables agree with the core, an ATTACH waits in the
	 * socket (within its attach deadline): see recover.c. */
	struct epoll_event ev = {.events =
	                             EPOLLRDHUP | (b->synced ? EPOLLIN : 0),
	                         .data.ptr = &cl->watch};
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		free(cl);
		return -errno;
	}
	cl->reading = b->synced;
	nci_link_client(b, cl);
	return 0;
}

void nci_link_client(struct nc_broker *b, struct nci_client *cl)
{
	cl->next = b->clients;
	if (b->clients)
		b->clients->prev = cl;
	b->clients = cl;
	b->nclients++;
}

static void accept_clients(struct nc_broker *b)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(b->listen_fd, NULL, NULL,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				pause_accepting(b, true); /* until one leaves */
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			return;
		}
		if (b->nclients >= b->cfg.max_clients) {
			refuse_connection(b, fd);
			continue;
		}
		if (new_client(b, fd) != 0)
			close(fd);
	}
}

/* ---------------------------------------------------------------- timers */

static int next_timeout(const struct nc_broker *b, int timeout_ms)
{
	int sync = nci_sync_timeout(b);
	if (sync >= 0 && (timeout_ms < 0 || sync < timeout_ms))
		timeout_ms = sync;
	int64_t now = nci_now_ms();
	for (const struct nci_client *cl = b->clients; cl; cl = cl->next) {
		if (cl->state != NCI_CLIENT_NEW || cl->gone)
			continue;
		int64_t left = cl->deadline_ms - now;
		if (left < 0)
			left = 0;
		if (timeout_ms < 0 || left < timeout_ms)
			timeout_ms = (int)left;
	}
	return timeout_ms;
}

static void expire_attach(struct nc_broker *b)
{
	int64_t now = nci_now_ms();
	struct nci_client *next;
	for (struct nci_client *cl = b->clients; cl; cl = next) {
		next = cl->next;
		if (cl->state != NCI_CLIENT_NEW || cl->gone ||
		    now < cl->deadline_ms)
			continue;
		/* Held unread while no core answered: say so, retryably. */
		if (!cl->reading)
			refuse_unsynced(b, cl);
		nci_client_lost(b, cl);
	}
}

/* ------------------------------------------------------------------- loop */

int nc_broker_step(struct nc_broker *b, int timeout_ms, const sigset_t *sigmask)
{
	struct epoll_event ev[EVENTS_MAX];
	int n = epoll_pwait(b->epfd, ev, EVENTS_MAX,
	                    next_timeout(b, timeout_ms), sigmask);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	bool core_ready = false;
	/* Core completions last: they may free clients, and a client's
	 * event may still be in this batch. A client's own event frees at
	 * most that client, and epoll reports each fd once per batch. */
	for (int i = 0; i < n; i++) {
		struct nci_watch *w = ev[i].data.ptr;
		if (w->kind == NCI_W_LISTEN)
			accept_clients(b);
		else if (w->kind == NCI_W_CORE)
			core_ready = true;
		else if (w->kind == NCI_W_PID)
			nci_on_pid_event(b, (struct nci_pidwatch *)w);
		else
			on_client_event(b, (struct nci_client *)w,
			                ev[i].events);
	}
	if (core_ready)
		nci_core_poll(b->core);
	expire_attach(b);
	nci_sync_poll(b);
	return 0;
}

static int watch_fd(struct nc_broker *b, int fd, struct nci_watch *w, int kind)
{
	w->kind = kind;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
	return epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static int setup(struct nc_broker *b, const struct nc_broker_options *o)
{
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0)
		return -errno;
	/* The attach socket first: a broker that cannot have it must not
	 * dial the core at all. nng 1.5.2 (Debian 12) has a listener bug
	 * (nng #1518, fixed in 1.6): a peer that disconnects while the
	 * connection is still being negotiated leaves the listener deaf to
	 * every later peer, so a dial we would abandon at once could wedge
	 * the core's control socket. */
	int err = make_listener(b, o->socket_path);
	if (!err)
		err = nci_core_open(&b->core, o->core_ctl, o->core_fds);
	if (!err)
		err = watch_fd(b, b->listen_fd, &b->listen_w, NCI_W_LISTEN);
	if (!err)
		err = watch_fd(b, nci_core_event_fd(b->core), &b->core_w,
		               NCI_W_CORE);
	return err;
}

int nc_broker_create(struct nc_broker **out, const struct nc_broker_options *o)
{
	if (o->socket_path == NULL || o->core_ctl == NULL ||
	    o->core_fds == NULL || nc_broker_region_bytes(&o->config) == 0)
		return -EINVAL;
	struct nc_broker *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	b->cfg = o->config;
	b->epfd = b->listen_fd = -1;
	b->next_client_id = 1;
	int err = setup(b, o);
	if (err) {
		nc_broker_destroy(b);
		return err;
	}
	*out = b;
	return 0;
}

void nc_broker_destroy(struct nc_broker *b)
{
	if (b == NULL)
		return;
	/* Calls first: their done functions must not run on freed clients. */
	nci_core_close(b->core);
	while (b->clients != NULL) {
		b->clients->call = NULL;
		nci_free_client(b, b->clients);
	}
	remove_listener(b);
	if (b->epfd >= 0)
		close(b->epfd);
	free(b);
}

/* -------------------------------------------------------------- reporting */

struct nci_client *nci_broker_find_client(const struct nc_broker *b,
                                          uint32_t id)
{
	for (struct nci_client *cl = b->clients; cl; cl = cl->next)
		if (id != 0 && cl->id == id)
			return cl;
	return NULL;
}

void nc_broker_get_stats(const struct nc_broker *b, struct nc_broker_stats *s)
{
	*s = b->st;
	s->clients = b->nclients;
	s->attached = 0;
	s->sockets = 0;
	s->recovered = 0;
	s->synced = b->synced;
	for (const struct nci_client *cl = b->clients; cl; cl = cl->next) {
		s->attached += cl->state == NCI_CLIENT_ATTACHED;
		s->recovered += cl->state == NCI_CLIENT_RECOVERED;
		s->sockets += cl->nsocks;
	}
	s->memory = b->memory;
	s->calls = nci_core_in_flight(b->core);
	s->core_pipes = (uint32_t)nci_core_pipes(b->core);
}

void nc_broker_dump(const struct nc_broker *b, FILE *out)
{
	struct nc_broker_stats s;
	nc_broker_get_stats(b, &s);
	fprintf(out,
	        "broker core_pipes %" PRIu32 " clients %" PRIu32
	        " attached %" PRIu32 " sockets %" PRIu32 " memory %" PRIu64
	        "/%" PRIu64 " calls %" PRIu64 " forwarded %" PRIu64
	        " refused %" PRIu64 " core_errors %" PRIu64
	        " disconnected %" PRIu64 " recovered %" PRIu32
	        " reattached %" PRIu64 " core_restarts %" PRIu64 " synced %d\n",
	        s.core_pipes, s.clients, s.attached, s.sockets, s.memory,
	        b->cfg.memory_limit, s.calls, s.forwarded, s.refused,
	        s.core_errors, s.disconnected, s.recovered, s.reattached,
	        s.core_restarts, s.synced ? 1 : 0);
	for (const struct nci_client *cl = b->clients; cl; cl = cl->next)
		nci_client_dump(cl, out);
	fflush(out);
}
