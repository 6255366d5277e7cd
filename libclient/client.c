/*
 * The client: attaching to the broker, the control channel, and sleeping on
 * the client doorbell.
 *
 * States. A client is built by nc_client_attach (connect to the broker's
 * attach socket, ATTACH, receive [memfd, client_bell, core_bell], map the
 * region, check its parameters against the reply) and lives until
 * nc_client_detach. The attach socket stays open: it carries every later
 * control request, and its hang-up is how the broker learns we are gone.
 * A lost broker makes every later control call fail with EIO; data keeps
 * flowing on the region until the core says otherwise.
 *
 * Ownership. The client owns its mapping of the region, the two eventfds
 * and the attach socket. The core owns every buffer; we hold some for a
 * while (data.c).
 *
 * Control calls. One request and its reply at a time per client (ctl_lock).
 * Ids only increase; a reply with an older id is a late answer to a request
 * we gave up on and is dropped. Anything malformed (size, magic, type, an
 * unexpected id, descriptors we did not ask for) is EPROTO and ends the
 * channel: we cannot know which reply belongs to which request any more.
 *
 * Sleeping. Several threads may block at once (each on its own handle) but
 * there is one doorbell, and reading an eventfd consumes it for everybody:
 * a thread that drained it could leave another asleep in poll(2) although
 * its socket has news. So one thread at a time, the leader, sleeps in
 * poll(2) on the doorbell; the others wait on a condition variable. Whoever
 * consumes the doorbell bumps `epoch` and broadcasts; every waiter then
 * re-checks its own condition. A waiter takes the epoch *before* its
 * re-check of the region, so a doorbell consumed between its re-check and
 * its sleep still wakes it. The wake-up request itself is the region's flag
 * (client_wants_wakeup), per the protocol in proto/client_region.h.
 *
 * fork(). A child shares the parent's mapping and ring positions, which only
 * one process may drive; pthread_atfork bumps a generation in the child,
 * and every call on a client of an older generation fails with EBADF.
 * Detaching such a client only releases the child's copies. Nothing here
 * runs in the fork handler but one increment.
 *
 * What it does not do: start threads, raise signals (MSG_NOSIGNAL on every
 * send), reconnect to a restarted broker, or interpret socket data.
 */
#include "libclient/client_internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

unsigned int nci_fork_gen;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
	__atomic_add_fetch(&nci_fork_gen, 1, __ATOMIC_RELAXED);
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

int nci_client_usable(const struct nc_client *c)
{
	if (c == NULL)
		return -EINVAL;
	unsigned int gen = __atomic_load_n(&nci_fork_gen, __ATOMIC_RELAXED);
	return c->fork_gen == gen ? 0 : -EBADF;
}

/* ---------------------------------------------------------------- time */

int64_t nci_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t nci_deadline_tv(const struct timeval *tv)
{
	if (tv->tv_sec <= 0 && tv->tv_usec <= 0)
		return -1;
	return nci_now_ns() + (int64_t)tv->tv_sec * 1000000000 +
	       (int64_t)tv->tv_usec * 1000;
}

int64_t nci_deadline_ms(int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	return nci_now_ns() + (int64_t)timeout_ms * 1000000;
}

/* Milliseconds until `deadline` for poll(2), rounded up; -1 forever. */
static int ms_until(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - nci_now_ns();
	if (left <= 0)
		return 0;
	int64_t ms = (left + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* ------------------------------------------------------------- wake-ups */

void nci_kick_core(struct nc_client *c, struct nc_ring *ring)
{
	bool ring_it = false;
	/* nc_ring_needs_signal fences before its swap; without a ring we
	 * fence ourselves: our index stores before the flag's load. */
	if (ring != NULL)
		ring_it = nc_ring_needs_signal(ring);
	else
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&c->control->core_wants_wakeup, 0,
	                        __ATOMIC_SEQ_CST) != 0)
		ring_it = true;
	if (ring_it)
		nc_doorbell_ring(&c->core_bell);
}

void nci_arm(struct nc_client *c)
{
	__atomic_store_n(&c->control->client_wants_wakeup, 1, __ATOMIC_SEQ_CST);
	/* Flag before the caller's re-check (store-load); pairs with the
	 * core's fence between its publication and its swap of the flag. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

uint64_t nci_epoch(struct nc_client *c)
{
	return __atomic_load_n(&c->epoch, __ATOMIC_ACQUIRE);
}

/* Reads the eventfd without blocking: true if it had been rung. */
static bool bell_take(struct nc_client *c)
{
	uint64_t count;
	return read(c->client_bell.fd, &count, sizeof(count)) == sizeof(count);
}

/* Leader: one poll(2) on the doorbell. True if it was rung (and is now
 * consumed). Called without wait_lock. */
static bool bell_sleep(struct nc_client *c, int64_t deadline)
{
	struct pollfd pfd = {.fd = c->client_bell.fd, .events = POLLIN};
	int n = poll(&pfd, 1, ms_until(deadline));
	if (n <= 0)
		return false; /* timeout or EINTR: the caller re-checks */
	/* POLLERR/POLLNVAL would spin; count them as a wake-up anyway so
	 * callers re-check rather than hang. */
	return bell_take(c) || (pfd.revents & POLLIN) == 0;
}

/* Called with wait_lock held; returns with it held. */
static void lead_once(struct nc_client *c, int64_t deadline)
{
	c->leader = true;
	pthread_mutex_unlock(&c->wait_lock);
	bool rung = bell_sleep(c, deadline);
	pthread_mutex_lock(&c->wait_lock);
	c->leader = false;
	if (rung)
		__atomic_store_n(&c->epoch, c->epoch + 1, __ATOMIC_RELEASE);
	/* Whether rung or not: a follower may now become the leader. */
	pthread_cond_broadcast(&c->wait_cv);
}

static void follow_once(struct nc_client *c, int64_t deadline)
{
	if (deadline < 0) {
		pthread_cond_wait(&c->wait_cv, &c->wait_lock);
		return;
	}
	struct timespec ts = {.tv_sec = deadline / 1000000000,
	                      .tv_nsec = deadline % 1000000000};
	pthread_cond_timedwait(&c->wait_cv, &c->wait_lock, &ts);
}

int nci_sleep(struct nc_client *c, uint64_t epoch, int64_t deadline_ns)
{
	int err = 0;
	pthread_mutex_lock(&c->wait_lock);
	while (c->epoch == epoch) {
		if (deadline_ns >= 0 && nci_now_ns() >= deadline_ns) {
			err = -ETIMEDOUT;
			break;
		}
		if (!c->leader)
			lead_once(c, deadline_ns);
		else
			follow_once(c, deadline_ns);
	}
	pthread_mutex_unlock(&c->wait_lock);
	return err;
}

void nci_consume_bell(struct nc_client *c)
{
	pthread_mutex_lock(&c->wait_lock);
	if (!c->leader) {
		/* Leadership for one read: nobody sleeps in poll(2) on the
		 * doorbell while we may empty it under their feet. */
		c->leader = true;
		pthread_mutex_unlock(&c->wait_lock);
		bool rung = bell_take(c);
		pthread_mutex_lock(&c->wait_lock);
		c->leader = false;
		if (rung)
			__atomic_store_n(&c->epoch, c->epoch + 1,
			                 __ATOMIC_RELEASE);
		pthread_cond_broadcast(&c->wait_cv);
	}
	pthread_mutex_unlock(&c->wait_lock);
}

/* ------------------------------------------------------- control channel */

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Collects the descriptors of every SCM_RIGHTS message (at most `max`;
 * more are closed and make the message invalid). */
static int take_fds(struct msghdr *mh, int *fds, int max, int *nfds)
{
	int err = 0;
	*nfds = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL;
	     cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
			       sizeof(fd));
			if (*nfds < max)
				fds[(*nfds)++] = fd;
			else {
				close(fd);
				err = -EPROTO;
			}
		}
	}
	return err;
}

/* Waits for readability of the attach socket. 0, -ETIMEDOUT or -errno. */
static int ctl_wait(int fd, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int n = poll(&pfd, 1, ms_until(deadline));
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * Receives one reply (checked with nc_msg_check) and up to `max_fds`
 * descriptors; a reply carrying more, or any when max_fds is 0, is refused
 * and its descriptors closed. 0, -ETIMEDOUT, -ECONNRESET (broker gone),
 * -EPROTO or -errno.
 */
static int ctl_recv(int fd, struct nc_msg_rep *rep, int *fds, int max_fds,
                    int *nfds, int64_t deadline)
{
	union {
		struct nc_msg_rep rep;
		char bytes[sizeof(struct nc_msg_rep) + 1];
	} buf;
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(8 * sizeof(int))];
	} cbuf;
	int got[8];
	int ngot = 0;
	*nfds = 0;
	struct iovec iov = {.iov_base = &buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = &cbuf,
	                    .msg_controllen = sizeof(cbuf)};
	ssize_t n;
	bool reset_seen = false;
	do {
		int err = ctl_wait(fd, deadline);
		if (err)
			return err;
		n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		/* A broker that answers and closes at once (a refusal) can
		 * reset the socket before we read; the answer is still
		 * queued behind the reset: read on once. */
		if (n < 0 && errno == ECONNRESET && !reset_seen) {
			reset_seen = true;
			errno = EAGAIN;
		}
	} while (n < 0 && (errno == EAGAIN || errno == EINTR));
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	int err = take_fds(&mh, got, 8, &ngot);
	if ((mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || ngot > max_fds)
		err = -EPROTO;
	if (!err && nc_msg_check(&buf, (size_t)n, sizeof(*rep)) != 0)
		err = -EPROTO;
	if (err) {
		close_fds(got, ngot);
		return err;
	}
	memcpy(rep, &buf.rep, sizeof(*rep));
	if (ngot > 0)
		memcpy(fds, got, (size_t)ngot * sizeof(int));
	*nfds = ngot;
	return 0;
}

/* A reply's result as our return value: 0 for any success (>= 0), or
 * -errno in Linux's range (anything else is a broken broker). */
static int rep_result(const struct nc_msg_rep *rep)
{
	if (rep->result >= 0)
		return 0;
	if (rep->result < -NCI_MAX_ERRNO)
		return -EPROTO;
	return rep->result;
}

static int ctl_send(int fd, const struct nc_msg_req *req)
{
	ssize_t n = send(fd, req, sizeof(*req), MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof(*req))
		return 0;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -EAGAIN; /* SO_SNDTIMEO: nothing was sent */
	return n < 0 ? -errno : -EPROTO;
}

void nci_req_init(struct nc_msg_req *req, enum nc_msg_type type,
                  const struct nc_sock *s)
{
	memset(req, 0, sizeof(*req));
	req->hdr.type = (uint16_t)type;
	req->sock = s != NULL ? (int32_t)s->idx : -1;
	req->sock_gen = s != NULL ? s->gen : 0;
}

/*
 * Waits for the reply to request `id`, dropping late replies to requests
 * we gave up on. Transport errors only: 0 (the reply is in *rep),
 * -ETIMEDOUT, -EPROTO, or -errno of the attach socket.
 */
static int await_reply(struct nc_client *c, uint32_t id, uint16_t type,
                       struct nc_msg_rep *rep)
{
	int64_t deadline = nci_deadline_ms(NCI_CTL_TIMEOUT_MS);
	for (;;) {
		int nfds;
		int err = ctl_recv(c->ctl_fd, rep, NULL, 0, &nfds, deadline);
		if (err)
			return err;
		if ((int32_t)(rep->hdr.id - id) < 0)
			continue; /* late answer to an abandoned request */
		if (rep->hdr.id != id || rep->hdr.type != type)
			return -EPROTO;
		return 0;
	}
}

/* A reply's result; a failure that comes while the core restarted under
 * the call speaks of sockets that are gone: a reset (nc_socket retries
 * after catching up with the new core). */
static int result_now(const struct nc_client *c, const struct nc_msg_rep *rep)
{
	int r = rep_result(rep);
	if (r < 0 && __atomic_load_n(&c->control->core_epoch,
	                             __ATOMIC_ACQUIRE) != c->core_epoch)
		return -ECONNRESET;
	return r;
}

/* The attach socket failed the way a dead broker makes it fail. */
static bool broker_gone(int err)
{
	return err == -ECONNRESET || err == -EPIPE || err == -ENOTCONN ||
	       err == -ECONNREFUSED;
}

/* Attempts per request: the broker may die again while we resend. */
#define CALL_ATTEMPTS 3

int nci_call_locked(struct nc_client *c, struct nc_msg_req *req,
                    struct nc_msg_rep *rep)
{
	if ((c->ctl_fd < 0 && c->broker_path == NULL) || c->ctl_dead)
		return -EIO;
	uint16_t type = req->hdr.type;
	uint32_t id = c->next_id++;
	nc_msg_init(&req->hdr, (enum nc_msg_type)type, id, sizeof(*req));
	int err = -ECONNRESET;
	/* A resend keeps the id: the core answers a request it already did
	 * from its cache instead of doing it twice (proto/msg.h). */
	for (int i = 0; i < CALL_ATTEMPTS && broker_gone(err); i++) {
		err = c->ctl_fd >= 0 ? ctl_send(c->ctl_fd, req) : -ECONNRESET;
		if (err == 0)
			err = await_reply(c, id, type, rep);
		if (err == 0)
			return result_now(c, rep);
		if (broker_gone(err) && nci_reattach(c) != 0)
			break;
	}
	/* A timeout leaves the channel in step (a late reply will be
	 * recognised by its id); anything else does not. */
	if (err == -EAGAIN || err == -ETIMEDOUT)
		return -EAGAIN;
	c->ctl_dead = true;
	return err == -EPROTO ? -EPROTO : -EIO;
}

int nci_call(struct nc_client *c, struct nc_msg_req *req,
             struct nc_msg_rep *rep)
{
	pthread_mutex_lock(&c->ctl_lock);
	int err = nci_call_locked(c, req, rep);
	pthread_mutex_unlock(&c->ctl_lock);
	return err;
}

/* ------------------------------------------------------------- attach */

static int ctl_connect(const char *path, int *out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (path == NULL)
		return -EINVAL;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Bounds a send to a broker that stopped reading. */
	struct timeval tv = {.tv_sec = NCI_CTL_TIMEOUT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

static void params_from_rep(const struct nc_msg_rep *rep,
                            struct nc_client_params *p)
{
	p->max_sockets = rep->max_sockets;
	p->ring_slots = rep->ring_slots;
	p->buf_count = rep->buf_count;
	p->buf_size = rep->buf_size;
}

/* ATTACH on a connected attach socket: the reply and its three fds. */
static int attach_exchange(int fd, struct nc_msg_rep *rep, int fds[3])
{
	struct nc_msg_req req;
	nci_req_init(&req, NC_MSG_ATTACH, NULL);
	req.sock = 0; /* "all other fields zero" */
	nc_msg_init(&req.hdr, NC_MSG_ATTACH, 1, sizeof(req));
	int sent = ctl_send(fd, &req);
	/* A broker that refuses at once (max_clients) may close before our
	 * ATTACH went out; its refusal is still queued for us to read. */
	if (sent && sent != -EPIPE && sent != -ECONNRESET)
		return sent;
	int got[3], ngot;
	int err = ctl_recv(fd, rep, got, 3, &ngot,
	                   nci_deadline_ms(sent ? 100 : NCI_CTL_TIMEOUT_MS));
	if (err && sent)
		return sent;
	if (err)
		return err == -ETIMEDOUT ? -EAGAIN : err;
	if (rep->hdr.id != 1 || rep->hdr.type != NC_MSG_ATTACH)
		err = -EPROTO;
	else if (rep->result < 0)
		err = rep_result(rep);
	else if (ngot != 3)
		err = -EPROTO;
	if (err) {
		close_fds(got, ngot);
		return err;
	}
	memcpy(fds, got, sizeof(got));
	return 0;
}

/* A short pause between attempts to reach a restarting broker. */
static void pause_ms(int ms)
{
	poll(NULL, 0, ms);
}

#define RETRY_PAUSE_MS 20

/* Connects and attaches, retrying while the broker says -EAGAIN (it is
 * not in step with the core yet) until `deadline`. */
static int attach_once(const char *path, int *fd, struct nc_msg_rep *rep,
                       int fds[3])
{
	int64_t deadline = nci_deadline_ms(NCI_RECOVER_TIMEOUT_MS);
	for (;;) {
		int err = ctl_connect(path, fd);
		if (!err) {
			err = attach_exchange(*fd, rep, fds);
			if (err)
				close(*fd);
		}
		if (err != -EAGAIN || nci_now_ns() >= deadline)
			return err;
		pause_ms(RETRY_PAUSE_MS);
	}
}

int nc_client_attach(const char *broker_socket_path, struct nc_client **out)
{
	int fd = -1, fds[3];
	struct nc_msg_rep rep;
	if (out == NULL) {
		errno = EINVAL;
		return -1;
	}
	char *path = broker_socket_path ? strdup(broker_socket_path) : NULL;
	int err = path == NULL ? -ENOMEM : 0;
	if (!err)
		err = attach_once(broker_socket_path, &fd, &rep, fds);
	if (!err) {
		struct nc_client_params p;
		params_from_rep(&rep, &p);
		err = nci_client_open(fds[0], fds[1], fds[2], fd, rep.client,
		                      &p, out);
	}
	if (err) {
		free(path);
		errno = -err;
		return -1;
	}
	(*out)->broker_path = path;
	(*out)->token = rep.token;
	return 0;
}

/* ------------------------------------------------------------- reattach */

static int send_with_fds(int fd, const struct nc_msg_req *req, const int fds[3])
{
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(3 * sizeof(int))];
	} cbuf;
	memset(&cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = (void *)req, .iov_len = sizeof(*req)};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = cbuf.bytes,
	                    .msg_controllen = sizeof(cbuf.bytes)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, 3 * sizeof(int));
	ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof(*req))
		return 0;
	return n < 0 ? -errno : -EPROTO;
}

/* One REATTACH on a fresh connection: 0 (fd is the new attach socket),
 * -EAGAIN (try again), or why not. */
static int reattach_exchange(struct nc_client *c, int fd, int64_t deadline)
{
	struct nc_msg_req req;
	nci_req_init(&req, NC_MSG_REATTACH, NULL);
	nc_msg_init(&req.hdr, NC_MSG_REATTACH, c->next_id++, sizeof(req));
	req.client = c->client_id;
	req.token = c->token;
	const int fds[3] = {c->region.fd, c->client_bell.fd, c->core_bell.fd};
	int err = send_with_fds(fd, &req, fds);
	struct nc_msg_rep rep;
	int nfds;
	if (!err)
		err = ctl_recv(fd, &rep, NULL, 0, &nfds, deadline);
	if (err)
		return broker_gone(err) ? -EAGAIN : err;
	/* A broker holding us while it catches up answers in ATTACH's
	 * shape; anything but success or -EAGAIN is final. */
	if (rep.result == -EAGAIN)
		return -EAGAIN;
	if (rep.hdr.type != NC_MSG_REATTACH || rep.hdr.id != req.hdr.id)
		return -EPROTO;
	return rep_result(&rep);
}

int nci_reattach(struct nc_client *c)
{
	if (c->ctl_fd >= 0)
		close(c->ctl_fd);
	c->ctl_fd = -1;
	if (c->broker_path == NULL)
		return -EIO;
	int64_t deadline = nci_deadline_ms(NCI_RECOVER_TIMEOUT_MS);
	for (;;) {
		int fd;
		int err = ctl_connect(c->broker_path, &fd);
		if (!err) {
			err = reattach_exchange(c, fd, deadline);
			if (!err) {
				c->ctl_fd = fd;
				return 0;
			}
			close(fd);
		}
		bool retry =
		    err == -EAGAIN || err == -ECONNREFUSED || err == -ENOENT;
		if (!retry || nci_now_ns() >= deadline)
			return err;
		pause_ms(RETRY_PAUSE_MS);
	}
}

/* ------------------------------------------------------ building, freeing */

/* Maps the region and checks it is the one the broker described. */
static int map_region(struct nc_client *c, int memfd,
                      const struct nc_client_params *p)
{
	struct nc_region_expect expect = {.kind = NC_CLIENT_REGION_KIND};
	int err = nc_region_attach(&c->region, memfd, &expect);
	if (err)
		return err < -NCI_MAX_ERRNO ? -EPROTO : err;
	struct nc_client_params got;
	if (nc_client_region_params(&c->region, &got) != 0 ||
	    memcmp(&got, p, sizeof(got)) != 0 ||
	    nc_client_layout(&got, &c->layout) != 0)
		return -EPROTO;
	c->params = got;
	c->control =
	    nc_region_at(&c->region, c->layout.control, sizeof(*c->control));
	c->states = nc_region_at(&c->region, c->layout.states,
	                         (uint64_t)got.max_sockets *
	                             sizeof(struct nc_sock_state));
	c->pool = nc_region_at(&c->region, c->layout.pool,
	                       (uint64_t)got.buf_count * got.buf_size);
	if (c->control == NULL || c->states == NULL || c->pool == NULL)
		return -EPROTO;
	return 0;
}

int nci_attach_rings(struct nc_client *c)
{
	uint32_t slots = c->params.ring_slots;
	if (nc_ring_attach(&c->free_ring, &c->region, c->layout.free_ring,
	                   slots, NC_RING_CONSUMER) != 0 ||
	    nc_ring_attach(&c->done_ring, &c->region, c->layout.done_ring,
	                   slots, NC_RING_PRODUCER) != 0)
		return -EIO;
	return 0;
}

static int alloc_private(struct nc_client *c)
{
	uint32_t n = c->params.buf_count;
	c->stash = calloc(n, sizeof(*c->stash));
	c->done_q = calloc(n, sizeof(*c->done_q));
	c->held = calloc(n, 1);
	c->socks = calloc(c->params.max_sockets, sizeof(*c->socks));
	if (!c->stash || !c->done_q || !c->held || !c->socks)
		return -ENOMEM;
	return 0;
}

static int init_locks(struct nc_client *c)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return -ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int err = pthread_cond_init(&c->wait_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		return -err;
	pthread_mutex_init(&c->ctl_lock, NULL);
	pthread_mutex_init(&c->data_lock, NULL);
	pthread_mutex_init(&c->wait_lock, NULL);
	/* A waiting recovery must not starve behind a stream of readers. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(
	    &ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&c->core_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	return 0;
}

/* Frees memory and closes what this process holds; tells nobody. */
static void release_local(struct nc_client *c)
{
	nc_region_close(&c->region);
	nc_doorbell_close(&c->client_bell);
	nc_doorbell_close(&c->core_bell);
	if (c->ctl_fd >= 0)
		close(c->ctl_fd);
	free(c->stash);
	free(c->done_q);
	free(c->held);
	free(c->socks);
	free(c->broker_path);
	free(c);
}

int nci_client_open(int memfd, int client_bell, int core_bell, int ctl_fd,
                    uint32_t client_id, const struct nc_client_params *p,
                    struct nc_client **out)
{
	pthread_once(&atfork_once, register_atfork);
	struct nc_client *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close_fds((int[]){memfd, client_bell, core_bell, ctl_fd}, 4);
		return -ENOMEM;
	}
	c->region.fd = -1;
	nc_doorbell_adopt(&c->client_bell, client_bell);
	nc_doorbell_adopt(&c->core_bell, core_bell);
	c->ctl_fd = ctl_fd;
	c->client_id = client_id;
	c->next_id = 2;    /* ATTACH was 1 */
	c->core_epoch = 1; /* a first attach: proto/client_region.h */
	c->fork_gen = __atomic_load_n(&nci_fork_gen, __ATOMIC_RELAXED);
	int err = map_region(c, memfd, p);
	close(memfd); /* the region holds its own copy */
	if (!err)
		err = nci_attach_rings(c);
	if (!err)
		err = alloc_private(c);
	if (!err)
		err = init_locks(c);
	if (err) {
		release_local(c);
		return err;
	}
	*out = c;
	return 0;
}

int nc_client_detach(struct nc_client *c)
{
	if (c == NULL) {
		errno = EINVAL;
		return -1;
	}
	if (nci_client_usable(c) != 0) {
		/* A forked child: the parent still drives these rings, and
		 * the locks may be held by parent threads that do not exist
		 * here. Free our copies without touching either. */
		for (uint32_t i = 0; i < c->params.max_sockets; i++)
			if (c->socks[i] != NULL) {
				free(c->socks[i]->rxq);
				free(c->socks[i]);
			}
		release_local(c);
		return 0;
	}
	nci_core_enter(c);
	pthread_mutex_lock(&c->ctl_lock);
	for (uint32_t i = 0; i < c->params.max_sockets; i++)
		if (c->socks[i] != NULL)
			nci_sock_release(c->socks[i]);
	while (c->lost != NULL)
		nci_sock_release(c->lost);
	pthread_mutex_unlock(&c->ctl_lock);
	nci_core_leave(c);
	pthread_rwlock_destroy(&c->core_lock);
	pthread_mutex_destroy(&c->ctl_lock);
	pthread_mutex_destroy(&c->data_lock);
	pthread_mutex_destroy(&c->wait_lock);
	pthread_cond_destroy(&c->wait_cv);
	release_local(c);
	return 0;
}

int nc_client_fd(const struct nc_client *c)
{
	int err = nci_client_usable(c);
	if (err) {
		errno = -err;
		return -1;
	}
	return c->client_bell.fd;
}
