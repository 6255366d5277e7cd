/*
 * The broker's two channels to the core: nng req/rep for control, and a
 * unix SOCK_SEQPACKET connection (the fd channel) that only carries file
 * descriptors, because nng cannot.
 *
 * Control calls are asynchronous so that one slow or hung core request
 * never stops the broker from serving other clients (refusals, attaches
 * that fail fast, deaths). Each call has its own nng context and aio, so
 * many may be in flight at once; the core answers them in order. nng runs
 * the aio callbacks on its own threads: they do nothing but put the call
 * on a mutex-protected queue and write an eventfd. The broker's one thread
 * sees the eventfd in its epoll set, calls nci_core_poll(), and every state
 * change (send done -> start receiving; reply or error -> done function)
 * happens there. So nothing else in the broker is ever touched by another
 * thread.
 *
 * Bounds. A call's deadline is fixed when it starts (core_timeout_ms,
 * 5 s by default per the contract): waiting for a pipe, sending and
 * receiving together never take longer; then the done function gets
 * -EAGAIN. nng's own resend timer is disabled (a control request is not
 * idempotent: a SOCKET sent twice allocates twice); nng may still resend
 * a request whose pipe closed before the reply, which happens only when
 * the core dies, and recovery (issue 5) owns that case.
 *
 * Replies are checked (nc_msg_check, our id, the request's type, optlen)
 * before anyone reads them: the core is trusted but crashable.
 *
 * The fd channel is connected lazily and again after the core restarts
 * (a send that finds the old connection dead reconnects once). Sends never
 * block: a core that does not read its fd channel makes attaches fail with
 * -EAGAIN, it does not stall the broker.
 *
 * What it does not do: retry (the client's library does, on -EAGAIN), or
 * notice a core restart by itself (the next send or call does).
 */
#include "services/proxy_broker/broker_internal.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct nci_call {
	struct nci_core *core;
	nng_ctx ctx;
	nng_aio *aio;
	bool receiving;
	uint32_t id;
	uint16_t type;
	nng_time deadline;
	nci_done_fn done;
	void *arg;
	struct nci_call *next_done;   /* completion queue (under lock) */
	struct nci_call *next, *prev; /* every live call (broker thread) */
};

struct nci_core {
	nng_socket sock;
	int efd; /* written by aio callbacks, read by the broker loop */
	pthread_mutex_t lock;
	struct nci_call *done_head, **done_tail; /* under lock */
	struct nci_call *calls;
	uint64_t in_flight;
	atomic_int pipes;      /* nng connections to the core (nng's threads) */
	atomic_uint pipe_adds; /* connections made so far (nng's threads) */
	uint32_t next_id;
	struct sockaddr_un fds_addr;
	int fds_fd;
	/* A socket that has not reached the core for REOPEN_MS is replaced:
	 * after some core restarts nng 1.5.2's dialer never connects again
	 * (the core fault suite saw a new core get no request at all).
	 * Calls on the old socket fail (-EAGAIN) as it closes. */
	char *url;
	atomic_int sock_id;  /* pipes of older sockets are not counted */
	int64_t alone_since; /* nng_clock ms with no pipe, or 0 */
	uint64_t reopens;
};

/* The message the fd channel carries with SCM_RIGHTS [memfd, bells]. */
struct fd_msg {
	uint32_t client;
	uint32_t client_gen;
};

static int from_nng(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EADDRINVAL:
	case NNG_EINVAL:
		return -EINVAL;
	case NNG_ENOTSUP:
		return -EPROTONOSUPPORT;
	default:
		return -EIO;
	}
}

/* ------------------------------------------------------------ completion */

/* nng's thread: queue the call for the broker's thread, wake it. */
static void on_aio(void *arg)
{
	struct nci_call *call = arg;
	struct nci_core *core = call->core;
	pthread_mutex_lock(&core->lock);
	call->next_done = NULL;
	*core->done_tail = call;
	core->done_tail = &call->next_done;
	pthread_mutex_unlock(&core->lock);
	uint64_t one = 1;
	ssize_t n = write(core->efd, &one, sizeof(one));
	(void)n; /* a full counter still wakes the reader */
}

static void unlink_call(struct nci_call *call)
{
	struct nci_core *core = call->core;
	if (call->prev)
		call->prev->next = call->next;
	else
		core->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	core->in_flight--;
}

static void free_call(struct nci_call *call)
{
	nng_aio_free(call->aio); /* waits for a callback still running */
	nng_ctx_close(call->ctx);
	free(call);
}

static void finish(struct nci_call *call, int status,
                   const struct nc_msg_rep *rep)
{
	unlink_call(call);
	call->done(call->arg, status, rep);
	free_call(call);
}

/* 0 with `rep` filled, or -EIO for a reply we cannot believe. */
static int parse_reply(const struct nci_call *call, nng_msg *m,
                       struct nc_msg_rep *rep)
{
	size_t len = nng_msg_len(m);
	if (nc_msg_check(nng_msg_body(m), len, sizeof(*rep)) != 0)
		return -EIO;
	memcpy(rep, nng_msg_body(m), sizeof(*rep));
	if (rep->hdr.id != call->id || rep->hdr.type != call->type ||
	    rep->optlen > NC_MSG_OPT_MAX)
		return -EIO;
	return 0;
}

static nng_duration remaining(const struct nci_call *call)
{
	nng_time now = nng_clock();
	if (now >= call->deadline)
		return 1; /* expire at once, through nng's own path */
	return (nng_duration)(call->deadline - now);
}

static void advance(struct nci_call *call)
{
	int rv = nng_aio_result(call->aio);
	if (!call->receiving) {
		if (rv != 0) {
			nng_msg *m = nng_aio_get_msg(call->aio);
			if (m !=
			    NULL) /* a failed send gives the message back */
				nng_msg_free(m);
			finish(call, -EAGAIN, NULL);
			return;
		}
		call->receiving = true;
		nng_aio_set_timeout(call->aio, remaining(call));
		nng_ctx_recv(call->ctx, call->aio);
		return;
	}
	if (rv != 0) {
		finish(call, -EAGAIN, NULL);
		return;
	}
	nng_msg *m = nng_aio_get_msg(call->aio);
	struct nc_msg_rep rep;
	int status = parse_reply(call, m, &rep);
	nng_msg_free(m);
	finish(call, status, status == 0 ? &rep : NULL);
}

void nci_core_poll(struct nci_core *core)
{
	uint64_t count;
	ssize_t n = read(core->efd, &count, sizeof(count));
	(void)n; /* EAGAIN: someone else drained it; the queue decides */
	pthread_mutex_lock(&core->lock);
	struct nci_call *list = core->done_head;
	core->done_head = NULL;
	core->done_tail = &core->done_head;
	pthread_mutex_unlock(&core->lock);
	while (list != NULL) {
		struct nci_call *next = list->next_done;
		advance(list);
		list = next;
	}
}

/* ----------------------------------------------------------------- calls */

static int start_send(struct nci_call *call, const struct nc_msg_req *req)
{
	nng_msg *m;
	int rv = nng_msg_alloc(&m, 0);
	if (rv != 0)
		return from_nng(rv);
	rv = nng_msg_append(m, req, sizeof(*req));
	if (rv != 0) {
		nng_msg_free(m);
		return from_nng(rv);
	}
	nng_aio_set_msg(call->aio, m);
	nng_aio_set_timeout(call->aio, remaining(call));
	nng_ctx_send(call->ctx, call->aio);
	return 0;
}

int nci_core_call(struct nci_core *core, const struct nc_msg_req *req,
                  uint32_t timeout_ms, nci_done_fn done, void *arg,
                  struct nci_call **out)
{
	struct nci_call *call = calloc(1, sizeof(*call));
	if (call == NULL)
		return -ENOMEM;
	call->core = core;
	int rv = nng_aio_alloc(&call->aio, on_aio, call);
	if (rv == 0) {
		rv = nng_ctx_open(&call->ctx, core->sock);
		if (rv != 0)
			nng_aio_free(call->aio);
	}
	if (rv != 0) {
		free(call);
		return from_nng(rv);
	}
	struct nc_msg_req copy = *req;
	copy.hdr.id = call->id = core->next_id++;
	call->type = copy.hdr.type;
	call->deadline = nng_clock() + timeout_ms;
	call->done = done;
	call->arg = arg;
	call->next = core->calls;
	if (core->calls)
		core->calls->prev = call;
	core->calls = call;
	core->in_flight++;
	int err = start_send(call, &copy);
	if (err) {
		unlink_call(call);
		free_call(call);
		return err;
	}
	if (out)
		*out = call;
	return 0;
}

uint64_t nci_core_in_flight(const struct nci_core *core)
{
	return core->in_flight;
}

/* ------------------------------------------------------------ fd channel */

static int fds_connect(struct nci_core *core)
{
	int fd =
	    socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&core->fds_addr,
	            sizeof(core->fds_addr)) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	core->fds_fd = fd;
	return 0;
}

static int fds_send(int fd, uint32_t client, uint32_t gen, const int fds[3])
{
	struct fd_msg body = {.client = client, .client_gen = gen};
	struct iovec iov = {.iov_base = &body, .iov_len = sizeof(body)};
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctl.buf,
	                     .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
	ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(body) ? 0 : -EIO;
}

/* The errors that mean "that connection is dead; a new one may work". */
static bool stale_connection(int err)
{
	return err == -EPIPE || err == -ECONNRESET || err == -ENOTCONN ||
	       err == -ECONNREFUSED;
}

int nci_core_send_fds(struct nci_core *core, uint32_t client,
                      uint32_t client_gen, const int fds[3])
{
	int err = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (core->fds_fd < 0) {
			err = fds_connect(core);
			if (err)
				return err;
		}
		err = fds_send(core->fds_fd, client, client_gen, fds);
		if (err == 0 || err == -EAGAIN)
			return err;
		close(core->fds_fd);
		core->fds_fd = -1;
		if (!stale_connection(err))
			return err;
	}
	return err;
}

/* ------------------------------------------------------------- lifecycle */

/* nng's thread: count connections, so the dump (and tests) can tell a
 * broker that has not reached its core yet. */
static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct nci_core *core = arg;
	if (nng_socket_id(nng_pipe_socket(p)) != atomic_load(&core->sock_id))
		return; /* a socket we replaced */
	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_fetch_add(&core->pipe_adds, 1);
		atomic_fetch_add(&core->pipes, 1);
		/* The loop must look: this may be a new core. */
		uint64_t one = 1;
		ssize_t n = write(core->efd, &one, sizeof(one));
		(void)n; /* a full counter still wakes the reader */
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		atomic_fetch_sub(&core->pipes, 1);
	}
}

uint32_t nci_core_pipe_adds(const struct nci_core *core)
{
	return atomic_load(&((struct nci_core *)core)->pipe_adds);
}

int nci_core_pipes(const struct nci_core *core)
{
	int n = atomic_load(&((struct nci_core *)core)->pipes);
	return n > 0 ? n : 0;
}

static int open_socket(struct nci_core *core, const char *url)
{
	int rv = nng_req0_open(&core->sock);
	if (rv != 0)
		return from_nng(rv);
	atomic_store(&core->pipes, 0);
	atomic_store(&core->sock_id, nng_socket_id(core->sock));
	/* Reconnect to a restarted core quickly; never resend by timer. */
	nng_socket_set_ms(core->sock, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(core->sock, NNG_OPT_RECONNMAXT, 500);
	nng_socket_set_ms(core->sock, NNG_OPT_REQ_RESENDTIME,
	                  NNG_DURATION_INFINITE);
	nng_pipe_notify(core->sock, NNG_PIPE_EV_ADD_POST, on_pipe, core);
	nng_pipe_notify(core->sock, NNG_PIPE_EV_REM_POST, on_pipe, core);
	/* Non-blocking: the core may not be listening yet. */
	rv = nng_dial(core->sock, url, NULL, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		nng_close(core->sock);
		return from_nng(rv);
	}
	return 0;
}

int nci_core_open(struct nci_core **out, const char *url, const char *fds_path)
{
	if (strlen(fds_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	struct nci_core *core = calloc(1, sizeof(*core));
	if (core == NULL)
		return -ENOMEM;
	core->fds_fd = -1;
	core->fds_addr.sun_family = AF_UNIX;
	strcpy(core->fds_addr.sun_path, fds_path);
	core->url = strdup(url);
	if (core->url == NULL) {
		free(core);
		return -ENOMEM;
	}
	core->done_tail = &core->done_head;
	core->next_id = 1;
	pthread_mutex_init(&core->lock, NULL);
	core->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int err = core->efd < 0 ? -errno : open_socket(core, url);
	if (err) {
		if (core->efd >= 0)
			close(core->efd);
		pthread_mutex_destroy(&core->lock);
		free(core);
		return err;
	}
	*out = core;
	return 0;
}

int nci_core_event_fd(const struct nci_core *core)
{
	return core->efd;
}

void nci_core_close(struct nci_core *core)
{
	if (core == NULL)
		return;
	/* Every aio completes (NNG_ECLOSED); free_call waits for each. */
	nng_close(core->sock);
	while (core->calls != NULL) {
		struct nci_call *call = core->calls;
		unlink_call(call);
		nng_aio_stop(call->aio);
		/* An unsent request or an unread reply still sits there. */
		nng_msg *m = nng_aio_get_msg(call->aio);
		if (m != NULL)
			nng_msg_free(m);
		free_call(call);
	}
	if (core->fds_fd >= 0)
		close(core->fds_fd);
	free(core->url);
	close(core->efd);
	pthread_mutex_destroy(&core->lock);
	free(core);
}

#define REOPEN_MS 3000 /* no connection to the core this long: reopen */

void nci_core_watch(struct nci_core *core)
{
	if (atomic_load(&core->pipes) > 0) {
		core->alone_since = 0;
		return;
	}
	int64_t now = (int64_t)nng_clock();
	if (core->alone_since == 0)
		core->alone_since = now;
	if (now - core->alone_since < REOPEN_MS)
		return;
	core->alone_since = now;
	/* The old socket's calls complete (NNG_ECLOSED) through on_aio and
	 * end as -EAGAIN in nci_core_poll; new calls use the new socket. */
	nng_close(core->sock);
	if (open_socket(core, core->url) == 0)
		core->reopens++;
}
