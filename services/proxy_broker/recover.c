/*
 * Recovery: keeping the broker's tables in step with the core when either
 * of them restarts.
 *
 * The core holds the truth about clients and sockets (regions, channels,
 * lwIP state); the broker's tables are a record of it. Every new nng
 * connection to the core may be a new core, so each one starts a sync:
 *
 *   HELLO --first core we see--> CLIENT_LIST, SOCK_LIST ... --> synced
 *     |--same core as before (a reconnect)-------------------> synced
 *     '--another core (it restarted)--> re-add every client --> synced
 *
 * Broker restart (first core we see, and it has clients). The core lists
 * each client with who the broker said it was (pid, uid, gid), its reattach
 * token and its region parameters, then each socket, and the table is
 * filled from that (nci_table_restore). Client ids continue above the
 * highest. Such a client is RECOVERED: its attach socket died with the old
 * broker, and its fds with it. It comes back on its own (libclient, at its
 * next control call) with REATTACH {id, token} and its memfd and bells;
 * the broker checks the peer's pid and uid against what the core recorded,
 * the token, and that the memfd is sealed and of the region's size, and
 * the connection becomes that client's attach socket. Until then a pidfd
 * watches the process: if it dies first, the client is removed from the
 * core as usual. Until the first sync is done, new connections are not
 * read (their ATTACH or REATTACH waits in the socket, within the attach
 * deadline); one that is read while a later sync runs is answered -EAGAIN
 * (libclient retries).
 *
 * Core restart (another boot id). The new core knows nobody. Each
 * attached client is added again with "adopt" (the core then waits for
 * the client to let go of the rings the old core formatted: see
 * proto/client_region.h), after its table was emptied: the new core has no
 * sockets, and the client re-creates its listeners and datagram sockets
 * with ordinary requests. A client with a call in flight is re-added when
 * the call finishes (it will have failed: the new core did not know it).
 * A RECOVERED client cannot be re-added (no fds) and is removed.
 *
 * What it does not do: recover a client that neither side knows any more
 * (both restarted before it reattached), or keep the record of a socket
 * the core had already begun to close (its CLOSE, if resent, is -EBADF).
 */
#include "services/proxy_broker/broker_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto/client_region.h"
#include "services/common/log.h"

#define SYNC_RETRY_MS 100 /* after a failed sync call */

static void sync_call(struct nc_broker *b, enum nc_msg_type type,
                      uint32_t client, uint32_t gen, int32_t sock,
                      nci_done_fn done);

static void sync_failed(struct nc_broker *b)
{
	b->sync_busy = false;
	b->sync_failed = true;
	b->sync_retry_ms = nci_now_ms() + SYNC_RETRY_MS;
	b->st.core_errors++;
}

static void readd(struct nc_broker *b, struct nci_client *cl);

/* After a sync: held requests go on (unless another sync is due), and
 * re-adds that failed for want of a core are tried again. */
static void resume_clients(struct nc_broker *b)
{
	struct nci_client *next;
	for (struct nci_client *cl = b->clients; cl != NULL; cl = next) {
		next = cl->next;
		if (nci_sync_pending(b))
			return;
		if (cl->gone || cl->call != NULL)
			continue;
		if (cl->readd)
			readd(b, cl);
		else if (cl->state == NCI_CLIENT_NEW)
			nci_set_reading(b, cl, true);
		else if (cl->held && cl->state == NCI_CLIENT_ATTACHED)
			nci_forward_held(b, cl);
	}
}

/* A suspicion newer than the HELLO just answered asks another one. */
static bool suspects_waiting(const struct nc_broker *b)
{
	for (const struct nci_client *cl = b->clients; cl; cl = cl->next)
		if (cl->suspect && !cl->gone && cl->suspect_at >= b->hellos)
			return true;
	return false;
}

static void sync_done(struct nc_broker *b)
{
	b->sync_busy = false;
	b->sync_failed = suspects_waiting(b);
	b->sync_retry_ms = nci_now_ms();
	b->synced = true;
	b->listing = NULL;
	resume_clients(b);
}

/* ------------------------------------------------- broker restart: list */

static void on_client_listed(void *arg, int status,
                             const struct nc_msg_rep *rep);

static void list_next_client(struct nc_broker *b)
{
	b->listing = NULL;
	sync_call(b, NC_MSG_CLIENT_LIST, b->list_after, 0, -1,
	          on_client_listed);
}

static void watch_pid(struct nc_broker *b, struct nci_client *cl)
{
	cl->pidw.watch.kind = NCI_W_PID;
	cl->pidw.cl = cl;
	cl->pidw.fd = (int)syscall(SYS_pidfd_open, (pid_t)cl->pid, 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cl->pidw};
	if (cl->pidw.fd >= 0 &&
	    epoll_ctl(b->epfd, EPOLL_CTL_ADD, cl->pidw.fd, &ev) == 0)
		return;
	/* Gone already (ESRCH), or no way to watch: it cannot come back. */
	if (cl->pidw.fd >= 0)
		close(cl->pidw.fd);
	cl->pidw.fd = -1;
	nci_client_lost(b, cl);
}

static struct nci_client *recovered_client(struct nc_broker *b,
                                           const struct nc_msg_rep *rep)
{
	struct nci_client *cl = calloc(1, sizeof(*cl));
	struct nc_client_params p = {rep->max_sockets, rep->ring_slots,
	                             rep->buf_count, rep->buf_size};
	if (cl == NULL || nci_client_table_init(cl, &p) != 0) {
		free(cl);
		return NULL;
	}
	cl->watch.kind = NCI_W_CLIENT;
	cl->broker = b;
	cl->id = rep->client;
	cl->gen = (uint32_t)rep->arg;
	cl->pid = (int32_t)rep->pid;
	cl->uid = rep->uid;
	cl->gid = rep->gid;
	cl->token = rep->token;
	cl->state = NCI_CLIENT_RECOVERED;
	cl->known_to_core = true;
	cl->fd = cl->memfd = cl->client_bell = cl->core_bell = -1;
	cl->pidw.fd = -1;
	cl->region_bytes = nc_broker_region_bytes(&b->cfg);
	b->memory += cl->region_bytes;
	nci_link_client(b, cl);
	if (cl->id >= b->next_client_id)
		b->next_client_id = cl->id + 1;
	return cl;
}

static void on_sock_listed(void *arg, int status, const struct nc_msg_rep *rep)
{
	struct nc_broker *b = arg;
	struct nci_client *cl = b->listing;
	if (status != 0) {
		sync_failed(b);
		return;
	}
	/* The client may have died meanwhile (its pidfd): next one. */
	if (cl == NULL || rep->result == -ENOENT ||
	    rep->result == -ECONNRESET) {
		list_next_client(b);
		return;
	}
	if (rep->result < 0 || rep->sock < b->sock_cursor) {
		sync_failed(b);
		return;
	}
	if (nci_table_restore(cl, rep) != 0)
		b->st.core_errors++; /* a socket we cannot record: skip it */
	b->sock_cursor = rep->sock + 1;
	sync_call(b, NC_MSG_SOCK_LIST, cl->id, cl->gen, b->sock_cursor,
	          on_sock_listed);
}

static void on_client_listed(void *arg, int status,
                             const struct nc_msg_rep *rep)
{
	struct nc_broker *b = arg;
	if (status != 0 || rep->result < 0) {
		sync_failed(b);
		return;
	}
	if (rep->client == 0) {
		struct nc_broker_stats st;
		nc_broker_get_stats(b, &st);
		if (st.recovered > 0)
			nc_log(NC_LOG_INFO,
			       "tables read from the core: %u client(s) to "
			       "come back, %u socket(s)",
			       st.recovered, st.sockets);
		sync_done(b);
		return;
	}
	if (rep->client <= b->list_after) {
		sync_failed(b); /* the core must walk upwards */
		return;
	}
	b->list_after = rep->client;
	if (nci_broker_find_client(b, rep->client) != NULL) {
		list_next_client(b); /* listed by an earlier attempt */
		return;
	}
	struct nci_client *cl = recovered_client(b, rep);
	if (cl == NULL) {
		sync_failed(b);
		return;
	}
	b->listing = cl;
	b->sock_cursor = 0;
	watch_pid(b, cl); /* may remove it: b->listing then says so */
	sync_call(b, NC_MSG_SOCK_LIST, rep->client, (uint32_t)rep->arg, 0,
	          on_sock_listed);
}

/* --------------------------------------------------- core restart: re-add */

/* A request held across a core restart named sockets that died with the
 * old core (SOCKET names none, but the client must first let go of the
 * old rings): either way it is answered as reset, and libclient retries a
 * SOCKET once it has caught up. */
static void answer_held(struct nc_broker *b, struct nci_client *cl)
{
	if (!cl->held)
		return;
	cl->held = false;
	struct nc_msg_rep rep;
	nci_rep_init(&rep, &cl->reply_hdr, -ECONNRESET);
	if (nci_send_rep(cl->fd, &rep, NULL, 0) != 0)
		nci_client_lost(b, cl);
}

/* A re-add that failed because the core went away again (or is not
 * reachable yet) is tried again after the next sync; one the core
 * refused is final. */
static bool readd_retryable(int status, const struct nc_msg_rep *rep)
{
	return status != 0 || rep->result == -EAGAIN ||
	       rep->result == -ENOENT || rep->result == -ECONNRESET;
}

static void on_readd_done(void *arg, int status, const struct nc_msg_rep *rep)
{
	struct nci_client *cl = arg;
	struct nc_broker *b = cl->broker;
	cl->call = NULL;
	if (cl->gone) {
		nci_client_lost(b, cl);
		return;
	}
	if (status != 0 || rep->result < 0) {
		b->st.core_errors++;
		if (!readd_retryable(status, rep)) {
			nc_log(NC_LOG_WARN,
			       "client %u: the new core refused it (%d)",
			       cl->id, rep->result);
			cl->known_to_core = false;
			nci_client_lost(b, cl);
			return;
		}
		cl->readd = true;
		if (!nci_sync_pending(b))
			sync_failed(b); /* a HELLO later, then resume_clients */
		return;
	}
	cl->state = NCI_CLIENT_ATTACHED;
	answer_held(b, cl);
	if (cl->gone)
		return;
	nci_set_reading(b, cl, true);
	nci_sync_after_call(b, cl); /* another restart meanwhile */
}

static void readd(struct nc_broker *b, struct nci_client *cl)
{
	cl->readd = false;
	cl->suspect = false;
	nci_table_reset(cl);
	cl->state = NCI_CLIENT_ADDING;
	nci_set_reading(b, cl, false);
	if (nci_start_add(b, cl, 1, on_readd_done) != 0) {
		cl->readd = true; /* no core to talk to yet: later */
		if (!nci_sync_pending(b))
			sync_failed(b);
	}
}

static void readd_all(struct nc_broker *b)
{
	struct nci_client *next;
	for (struct nci_client *cl = b->clients; cl != NULL; cl = next) {
		next = cl->next;
		if (cl->gone)
			continue;
		if (cl->state == NCI_CLIENT_RECOVERED) {
			nci_client_lost(b, cl);
		} else if (cl->state == NCI_CLIENT_ATTACHED ||
		           cl->state == NCI_CLIENT_ADDING) {
			if (cl->call != NULL)
				cl->readd = true;
			else
				readd(b, cl);
		}
	}
}

void nci_sync_after_call(struct nc_broker *b, struct nci_client *cl)
{
	if (cl->readd && cl->call == NULL && !cl->gone)
		readd(b, cl);
}

/* ------------------------------------------------------------------ hello */

/* The same core as before said it does not know these: it dropped them. */
static void lose_suspects(struct nc_broker *b)
{
	struct nci_client *next;
	for (struct nci_client *cl = b->clients; cl != NULL; cl = next) {
		next = cl->next;
		/* Only a HELLO sent after the suspicion speaks for it. */
		if (cl->suspect && !cl->gone && cl->suspect_at < b->hellos) {
			cl->suspect = false;
			nci_client_lost(b, cl);
		}
	}
}

void nci_sync_suspect(struct nc_broker *b, struct nci_client *cl)
{
	cl->suspect = true;
	cl->suspect_at = b->hellos;
	if (!b->sync_busy) {
		/* A HELLO at the next turn, whatever else is due. */
		b->sync_failed = true;
		b->sync_retry_ms = nci_now_ms();
	}
}

static void on_hello(void *arg, int status, const struct nc_msg_rep *rep)
{
	struct nc_broker *b = arg;
	if (status != 0 || rep->result < 0 || rep->client == 0) {
		sync_failed(b);
		return;
	}
	uint32_t boot = rep->client;
	if (b->core_boot == 0) {
		b->core_boot = boot;
		b->list_after = 0;
		list_next_client(b);
		return;
	}
	if (boot == b->core_boot)
		lose_suspects(b);
	if (boot != b->core_boot) {
		nc_log(NC_LOG_INFO,
		       "a new core (boot %08x): adding %u client(s) "
		       "again",
		       boot, b->nclients);
		b->core_boot = boot;
		b->st.core_restarts++;
		readd_all(b);
	}
	sync_done(b);
}

static void sync_call(struct nc_broker *b, enum nc_msg_type type,
                      uint32_t client, uint32_t gen, int32_t sock,
                      nci_done_fn done)
{
	struct nc_msg_req req;
	memset(&req, 0, sizeof(req));
	nc_msg_init(&req.hdr, type, 0, sizeof(req));
	req.client = client;
	req.client_gen = gen;
	req.sock = sock;
	b->sync_busy = true;
	if (nci_core_call(b->core, &req, b->cfg.core_timeout_ms, done, b,
	                  NULL) != 0)
		sync_failed(b);
}

void nci_sync_poll(struct nc_broker *b)
{
	nci_core_watch(b->core);
	if (b->sync_busy)
		return;
	uint32_t adds = nci_core_pipe_adds(b->core);
	bool retry = b->sync_failed && nci_now_ms() >= b->sync_retry_ms;
	if (adds == b->seen_adds && !retry)
		return;
	b->seen_adds = adds;
	b->sync_failed = false;
	/* A failed listing starts over: HELLO decides what to do. */
	if (!b->synced && b->core_boot != 0 && retry)
		b->core_boot = 0;
	b->hellos++;
	sync_call(b, NC_MSG_CORE_HELLO, 0, 0, -1, on_hello);
}

bool nci_sync_pending(const struct nc_broker *b)
{
	return !b->synced || b->sync_busy || b->sync_failed ||
	       nci_core_pipe_adds(b->core) != b->seen_adds;
}

int nci_sync_timeout(const struct nc_broker *b)
{
	if (!b->sync_failed || b->sync_busy)
		return -1;
	int64_t left = b->sync_retry_ms - nci_now_ms();
	return left < 0 ? 0 : (int)left;
}

/* --------------------------------------------------------------- reattach */

void nci_sync_forget(struct nc_broker *b, struct nci_client *cl)
{
	if (cl->pidw.fd >= 0) {
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, cl->pidw.fd, NULL);
		close(cl->pidw.fd);
	}
	cl->pidw.fd = -1;
	if (b->listing == cl)
		b->listing = NULL;
}

void nci_on_pid_event(struct nc_broker *b, struct nci_pidwatch *w)
{
	struct nci_client *cl = w->cl;
	nci_sync_forget(b, cl);
	if (cl->state == NCI_CLIENT_RECOVERED && !cl->gone)
		nci_client_lost(b, cl);
}

/* The memfd a client hands back must be a sealed region of its size: the
 * core re-checks everything when it maps it; this keeps obvious junk out
 * of the table. */
static int check_region_fd(const struct nci_client *cl, int memfd)
{
	struct nc_client_layout l;
	struct stat st;
	if (nc_client_layout(&cl->params, &l) != 0 || fstat(memfd, &st) != 0)
		return -EACCES;
	int seals = fcntl(memfd, F_GET_SEALS);
	int need = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
	if (seals < 0 || (seals & need) != need ||
	    (uint64_t)st.st_size != l.size)
		return -EACCES;
	return 0;
}

static int32_t reattach_error(const struct nc_broker *b,
                              const struct nci_client *conn,
                              const struct nci_client *cl,
                              const struct nc_msg_req *req, const int *fds,
                              int nfds)
{
	if (!b->synced)
		return -EAGAIN;
	if (cl == NULL || cl->state != NCI_CLIENT_RECOVERED || cl->gone)
		return -ESTALE;
	if (cl->pid != conn->pid || cl->uid != conn->uid ||
	    cl->token != req->token || nfds != 3)
		return -EACCES;
	return check_region_fd(cl, fds[0]);
}

/* The connection becomes the recovered client's attach socket. */
static void adopt_connection(struct nc_broker *b, struct nci_client *conn,
                             struct nci_client *cl, const int *fds)
{
	nci_sync_forget(b, cl);
	cl->fd = conn->fd;
	conn->fd = -1;
	struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = &cl->watch};
	epoll_ctl(b->epfd, EPOLL_CTL_MOD, cl->fd, &ev);
	cl->reading = false;
	cl->memfd = fds[0];
	cl->client_bell = fds[1];
	cl->core_bell = fds[2];
	cl->state = NCI_CLIENT_ATTACHED;
	nci_free_client(b, conn);
}

void nci_handle_reattach(struct nc_broker *b, struct nci_client *conn,
                         const struct nc_msg_req *req, int *fds, int nfds)
{
	struct nci_client *cl = nci_broker_find_client(b, req->client);
	int32_t err = reattach_error(b, conn, cl, req, fds, nfds);
	struct nc_msg_rep rep;
	nci_rep_init(&rep, &req->hdr, err);
	if (err) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		b->st.refused++;
		nci_send_rep(conn->fd, &rep, NULL, 0);
		nci_client_lost(b, conn); /* it must connect anew */
		return;
	}
	rep.client = cl->id;
	nc_log(NC_LOG_INFO, "client %u (pid %d) is back", cl->id, cl->pid);
	int fd = conn->fd;
	adopt_connection(b, conn, cl, fds);
	b->st.reattached++;
	if (nci_send_rep(fd, &rep, NULL, 0) != 0) {
		nci_client_lost(b, cl);
		return;
	}
	nci_set_reading(b, cl, true);
}
