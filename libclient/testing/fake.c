/*
 * The fake netcore of fake.h.
 *
 * States. fake_init creates what the broker and the core would: the region
 * (broker), the pool, formatted rings and the initial loan of empty buffers
 * (core). Sockets are channels the broker thread hands out in answer to
 * SOCKET and ACCEPT, lowest free first, with the state's gen bumped, the
 * way the contract says the core does it.
 *
 * Ownership. The fake is the pool's owner: every descriptor coming back
 * from the client (tx ring, done ring) goes through nc_pool_accept, so a
 * libclient that returns a buffer twice, or one it never had, fails the
 * test that sees -1.
 *
 * What it does not do: TCP. Tests move bytes and states by hand.
 */
#include "libclient/testing/fake.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void fake_params_small(struct nc_client_params *p)
{
	p->max_sockets = 4;
	p->ring_slots = 8;
	p->buf_count = 16;
	p->buf_size = 2048;
}

static int format_rings(struct fake *f)
{
	uint32_t slots = f->p.ring_slots;
	int err = nc_ring_format(&f->region, f->l.free_ring, slots);
	if (!err)
		err = nc_ring_format(&f->region, f->l.done_ring, slots);
	if (!err)
		err = nc_ring_attach(&f->free_ring, &f->region, f->l.free_ring,
		                     slots, NC_RING_PRODUCER);
	if (!err)
		err = nc_ring_attach(&f->done_ring, &f->region, f->l.done_ring,
		                     slots, NC_RING_CONSUMER);
	return err;
}

int fake_init(struct fake *f, const struct nc_client_params *p)
{
	memset(f, 0, sizeof(*f));
	f->ctl_fd = -1;
	f->listen_fd = -1;
	f->p = *p;
	f->attach_params = *p;
	f->attach_fds = 3;
	if (p->max_sockets > FAKE_MAX_SOCKS)
		return -EINVAL;
	int err = nc_client_layout(p, &f->l);
	if (!err)
		err = nc_client_region_create(&f->region, p);
	if (err)
		return err;
	f->control =
	    nc_region_at(&f->region, f->l.control, sizeof(*f->control));
	f->states = nc_region_at(&f->region, f->l.states,
	                         p->max_sockets * sizeof(*f->states));
	/* A first attach: all three epochs at 1 (proto/client_region.h). */
	f->control->core_epoch = 1;
	f->control->ready_epoch = 1;
	f->control->client_epoch = 1;
	err = nc_doorbell_create(&f->client_bell);
	if (!err)
		err = nc_doorbell_create(&f->core_bell);
	if (!err)
		err = nc_pool_init(&f->pool, &f->region, f->l.pool,
		                   p->buf_count, p->buf_size);
	if (!err)
		err = format_rings(f);
	if (err)
		return err;
	pthread_mutex_init(&f->lock, NULL);
	uint32_t lend = p->ring_slots - 1;
	if (lend > p->buf_count / 2)
		lend = p->buf_count / 2;
	fake_lend_free(f, lend);
	return 0;
}

/* ------------------------------------------------------------- broker */

static bool sock_ok(struct fake *f, const struct nc_msg_req *req)
{
	return req->sock >= 0 && (uint32_t)req->sock < f->p.max_sockets &&
	       f->used[req->sock] && f->states[req->sock].gen == req->sock_gen;
}

static int new_channel(struct fake *f, int type, uint32_t phase,
                       struct nc_msg_rep *rep)
{
	for (uint32_t i = 0; i < f->p.max_sockets; i++) {
		if (f->used[i])
			continue;
		uint32_t slots = f->p.ring_slots;
		uint64_t tx = nc_client_tx_ring(&f->l, i);
		uint64_t rx = nc_client_rx_ring(&f->l, i);
		if (nc_ring_format(&f->region, tx, slots) ||
		    nc_ring_format(&f->region, rx, slots) ||
		    nc_ring_attach(&f->tx[i], &f->region, tx, slots,
		                   NC_RING_CONSUMER) ||
		    nc_ring_attach(&f->rx[i], &f->region, rx, slots,
		                   NC_RING_PRODUCER))
			return -EIO;
		f->used[i] = true;
		f->type[i] = type;
		memset(&f->name[i], 0, sizeof(f->name[i]));
		memset(&f->peer[i], 0, sizeof(f->peer[i]));
		struct nc_sock_state *st = &f->states[i];
		st->events = 0;
		st->error = 0;
		st->phase = phase;
		st->accept_queue = 0;
		st->rx_queued = 0;
		__atomic_store_n(&st->gen, st->gen + 1, __ATOMIC_RELEASE);
		rep->sock = (int32_t)i;
		rep->sock_gen = st->gen;
		return 0;
	}
	return -EMFILE;
}

int fake_channel(struct fake *f, int type, uint32_t phase, uint32_t *idx,
                 uint32_t *gen)
{
	struct nc_msg_rep rep;
	pthread_mutex_lock(&f->lock);
	int err = new_channel(f, type, phase, &rep);
	pthread_mutex_unlock(&f->lock);
	if (!err) {
		*idx = (uint32_t)rep.sock;
		*gen = rep.sock_gen;
	}
	return err;
}

/* CLOSE: what the client queued is "sent" first, as the core does. */
static int on_close(struct fake *f, const struct nc_msg_req *req)
{
	uint32_t i = (uint32_t)req->sock;
	struct nc_desc d;
	while (nc_ring_dequeue_batch(&f->tx[i], &d, 1) == 1) {
		if (nc_pool_accept(&f->pool, &d) != 0)
			return -EIO;
		f->closed_tx_bytes += d.length;
		nc_pool_put(&f->pool, &d);
	}
	f->used[i] = false;
	f->states[i].phase = NC_SS_FREE;
	return 0;
}

static int on_getsockopt(struct fake *f, const struct nc_msg_req *req,
                         struct nc_msg_rep *rep)
{
	if (req->level == SOL_SOCKET && req->optname == SO_ERROR) {
		int32_t e = f->states[req->sock].error;
		f->states[req->sock].error = 0;
		f->states[req->sock].events &= ~NC_EV_ERROR;
		memcpy(rep->opt, &e, sizeof(e));
		rep->optlen = sizeof(e);
		return 0;
	}
	for (unsigned int k = 0; k < f->nopts; k++) {
		if (f->opts[k].level == req->level &&
		    f->opts[k].optname == req->optname) {
			memcpy(rep->opt, f->opts[k].val, f->opts[k].len);
			rep->optlen = f->opts[k].len;
			return 0;
		}
	}
	return -ENOPROTOOPT;
}

static int on_setsockopt(struct fake *f, const struct nc_msg_req *req)
{
	if (f->nopts == 16 || req->optlen > NC_MSG_OPT_MAX)
		return -ENOBUFS;
	struct fake_opt *o = &f->opts[f->nopts++];
	o->level = req->level;
	o->optname = req->optname;
	o->len = req->optlen;
	memcpy(o->val, req->opt, req->optlen);
	return 0;
}

static int on_connect(struct fake *f, const struct nc_msg_req *req)
{
	uint32_t i = (uint32_t)req->sock;
	f->peer[i] = req->addr;
	if (f->type[i] == SOCK_DGRAM)
		return 0;
	if (f->connect_async) {
		f->states[i].phase = NC_SS_CONNECTING;
		return -EINPROGRESS;
	}
	f->states[i].phase = NC_SS_CONNECTED;
	f->states[i].events = NC_EV_WRITABLE | NC_EV_CONNECTED;
	return 0;
}

static int on_accept(struct fake *f, const struct nc_msg_req *req,
                     struct nc_msg_rep *rep)
{
	if (f->pending_accepts == 0)
		return -EAGAIN;
	int err = new_channel(f, SOCK_STREAM, NC_SS_CONNECTED, rep);
	if (err)
		return err;
	f->states[rep->sock].events = NC_EV_WRITABLE | NC_EV_CONNECTED;
	f->pending_accepts--;
	f->states[req->sock].accept_queue = f->pending_accepts;
	rep->addr.family = AF_INET;
	rep->addr.port = 5555;
	memcpy(rep->addr.addr, "\x7f\x00\x00\x01", 4);
	return 0;
}

static int on_sock_request(struct fake *f, const struct nc_msg_req *req,
                           struct nc_msg_rep *rep)
{
	uint32_t i = (uint32_t)req->sock;
	switch (req->hdr.type) {
	case NC_MSG_BIND:
		f->name[i] = req->addr;
		if (f->name[i].port == 0)
			f->name[i].port = (uint16_t)(40000 + i);
		f->states[i].phase = NC_SS_BOUND;
		return 0;
	case NC_MSG_LISTEN:
		f->states[i].phase = NC_SS_LISTENING;
		return 0;
	case NC_MSG_ACCEPT:
		return on_accept(f, req, rep);
	case NC_MSG_CONNECT:
		return on_connect(f, req);
	case NC_MSG_SHUTDOWN:
		return 0;
	case NC_MSG_CLOSE:
		return on_close(f, req);
	case NC_MSG_SETSOCKOPT:
		return on_setsockopt(f, req);
	case NC_MSG_GETSOCKOPT:
		return on_getsockopt(f, req, rep);
	case NC_MSG_GETSOCKNAME:
		rep->addr = f->name[i];
		return 0;
	case NC_MSG_GETPEERNAME:
		rep->addr = f->peer[i];
		return f->peer[i].family ? 0 : -ENOTCONN;
	default:
		return -EPROTO;
	}
}

static int answer(struct fake *f, const struct nc_msg_req *req,
                  struct nc_msg_rep *rep)
{
	uint16_t t = req->hdr.type;
	f->requests[t]++;
	f->last[t] = *req;
	if (f->forced[t])
		return f->forced[t];
	if (t == NC_MSG_SOCKET)
		return new_channel(f, req->type, NC_SS_OPEN, rep);
	if (!sock_ok(f, req))
		return -EBADF;
	return on_sock_request(f, req, rep);
}

static int send_rep(int fd, struct nc_msg_rep *rep, const int *fds, int n)
{
	struct iovec iov = {.iov_base = rep, .iov_len = sizeof(*rep)};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} cbuf;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (n > 0) {
		mh.msg_control = &cbuf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == sizeof(*rep) ? 0 : -1;
}

static void reply_attach(struct fake *f, const struct nc_msg_req *req)
{
	struct nc_msg_rep rep;
	memset(&rep, 0, sizeof(rep));
	nc_msg_init(&rep.hdr, NC_MSG_ATTACH, req->hdr.id + f->attach_id_skew,
	            sizeof(rep));
	rep.result = f->forced[NC_MSG_ATTACH];
	rep.client = 7;
	rep.max_sockets = f->attach_params.max_sockets;
	rep.ring_slots = f->attach_params.ring_slots;
	rep.buf_count = f->attach_params.buf_count;
	rep.buf_size = f->attach_params.buf_size;
	int fds[3] = {f->region.fd, f->client_bell.fd, f->core_bell.fd};
	send_rep(f->ctl_fd, &rep, fds, rep.result < 0 ? 0 : f->attach_fds);
}

/* One request: false when the client is gone. */
static bool serve_one(struct fake *f)
{
	struct pollfd pfd = {.fd = f->ctl_fd, .events = POLLIN};
	if (poll(&pfd, 1, 50) <= 0)
		return true;
	struct nc_msg_req req;
	ssize_t n = recv(f->ctl_fd, &req, sizeof(req), 0);
	if (n <= 0)
		return false;
	if (nc_msg_check(&req, (size_t)n, sizeof(req)) != 0)
		return false;
	pthread_mutex_lock(&f->lock);
	if (req.hdr.type == NC_MSG_ATTACH) {
		f->requests[NC_MSG_ATTACH]++;
		reply_attach(f, &req);
		pthread_mutex_unlock(&f->lock);
		return true;
	}
	struct nc_msg_rep rep;
	memset(&rep, 0, sizeof(rep));
	rep.sock = -1;
	rep.result = answer(f, &req, &rep);
	nc_msg_init(&rep.hdr, req.hdr.type, req.hdr.id, sizeof(rep));
	pthread_mutex_unlock(&f->lock);
	return send_rep(f->ctl_fd, &rep, NULL, 0) == 0;
}

static bool stopping(struct fake *f)
{
	return __atomic_load_n(&f->stop, __ATOMIC_ACQUIRE);
}

static void *broker_main(void *arg)
{
	struct fake *f = arg;
	while (!stopping(f) && f->listen_fd >= 0 && f->ctl_fd < 0) {
		struct pollfd pfd = {.fd = f->listen_fd, .events = POLLIN};
		if (poll(&pfd, 1, 50) > 0)
			f->ctl_fd =
			    accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	}
	while (!stopping(f) && f->ctl_fd >= 0 && serve_one(f))
		;
	return NULL;
}

static int start_thread(struct fake *f)
{
	if (pthread_create(&f->thread, NULL, broker_main, f) != 0)
		return -EAGAIN;
	f->thread_running = true;
	return 0;
}

int fake_start(struct fake *f, const struct nc_client_params *p)
{
	int sv[2];
	int err = fake_init(f, p);
	if (err)
		return err;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	f->ctl_fd = sv[0];
	int memfd = dup(f->region.fd);
	int cb = dup(f->client_bell.fd);
	int kb = dup(f->core_bell.fd);
	err = nci_client_open(memfd, cb, kb, sv[1], 7, p, &f->client);
	if (err)
		return err;
	return start_thread(f);
}

int fake_listen(struct fake *f, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (f->listen_fd < 0)
		return -errno;
	unlink(path);
	if (bind(f->listen_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(f->listen_fd, 4) < 0)
		return -errno;
	return start_thread(f);
}

void fake_stop(struct fake *f)
{
	if (f->client != NULL)
		nc_client_detach(f->client);
	f->client = NULL;
	__atomic_store_n(&f->stop, true, __ATOMIC_RELEASE);
	if (f->thread_running)
		pthread_join(f->thread, NULL);
	f->thread_running = false;
	if (f->ctl_fd >= 0)
		close(f->ctl_fd);
	if (f->listen_fd >= 0)
		close(f->listen_fd);
	f->ctl_fd = f->listen_fd = -1;
	nc_pool_fini(&f->pool);
	nc_doorbell_close(&f->client_bell);
	nc_doorbell_close(&f->core_bell);
	nc_region_close(&f->region);
	pthread_mutex_destroy(&f->lock);
}

/* ---------------------------------------------------------- core's side */

unsigned int fake_lend_free(struct fake *f, unsigned int n)
{
	unsigned int done = 0;
	pthread_mutex_lock(&f->lock);
	while (done < n && nc_ring_space(&f->free_ring) > 0) {
		struct nc_desc d;
		if (nc_pool_get(&f->pool, &d) != 0)
			break;
		nc_pool_lend(&f->pool, &d);
		nc_ring_enqueue_batch(&f->free_ring, &d, 1);
		done++;
	}
	pthread_mutex_unlock(&f->lock);
	return done;
}

static int rx_put(struct fake *f, uint32_t sock, const void *prefix,
                  size_t plen, const void *data, size_t len, uint16_t flags)
{
	struct nc_desc d;
	int err = -ENOBUFS;
	pthread_mutex_lock(&f->lock);
	if (plen + len <= f->p.buf_size && nc_ring_space(&f->rx[sock]) > 0 &&
	    nc_pool_get(&f->pool, &d) == 0) {
		uint8_t *buf = nc_pool_data(&f->pool, &d);
		memcpy(buf, prefix, plen);
		if (len)
			memcpy(buf + plen, data, len);
		d.length = (uint32_t)(plen + len);
		d.flags = flags;
		d.aux = (uint16_t)sock;
		nc_pool_lend(&f->pool, &d);
		err =
		    nc_ring_enqueue_batch(&f->rx[sock], &d, 1) == 1 ? 0 : -EIO;
	}
	pthread_mutex_unlock(&f->lock);
	return err;
}

int fake_rx_data(struct fake *f, uint32_t sock, const void *data, size_t len)
{
	return rx_put(f, sock, "", 0, data, len, 0);
}

int fake_rx_dgram(struct fake *f, uint32_t sock, const struct nc_dgram_hdr *hdr,
                  const void *data, size_t len)
{
	return rx_put(f, sock, hdr, sizeof(*hdr), data, len, 0);
}

int fake_rx_eof(struct fake *f, uint32_t sock)
{
	return rx_put(f, sock, "", 0, NULL, 0, NC_RXF_EOF);
}

int fake_rx_raw(struct fake *f, uint32_t sock, const struct nc_desc *d)
{
	pthread_mutex_lock(&f->lock);
	int n = nc_ring_enqueue_batch(&f->rx[sock], d, 1);
	pthread_mutex_unlock(&f->lock);
	return n == 1 ? 0 : -ENOBUFS;
}

long fake_tx_take(struct fake *f, uint32_t sock, void *out, size_t max,
                  unsigned int *ndesc)
{
	long total = 0;
	unsigned int count = 0;
	struct nc_desc d;
	pthread_mutex_lock(&f->lock);
	while (nc_ring_dequeue_batch(&f->tx[sock], &d, 1) == 1) {
		if (d.aux != sock || nc_pool_accept(&f->pool, &d) != 0) {
			total = -1;
			break;
		}
		size_t n = d.length;
		if (n > max - (size_t)total)
			n = max - (size_t)total;
		memcpy((uint8_t *)out + total, nc_pool_data(&f->pool, &d), n);
		total += (long)n;
		count++;
		nc_pool_put(&f->pool, &d);
	}
	pthread_mutex_unlock(&f->lock);
	if (ndesc != NULL)
		*ndesc = count;
	return total;
}

int fake_done_take(struct fake *f)
{
	int count = 0;
	struct nc_desc d;
	pthread_mutex_lock(&f->lock);
	while (nc_ring_dequeue_batch(&f->done_ring, &d, 1) == 1) {
		if (nc_pool_accept(&f->pool, &d) != 0) {
			count = -1;
			break;
		}
		nc_pool_put(&f->pool, &d);
		count++;
	}
	pthread_mutex_unlock(&f->lock);
	return count;
}

void fake_set_state(struct fake *f, uint32_t sock, uint32_t phase,
                    uint32_t events, int32_t error)
{
	pthread_mutex_lock(&f->lock);
	struct nc_sock_state *st = &f->states[sock];
	__atomic_store_n(&st->error, error, __ATOMIC_RELAXED);
	__atomic_store_n(&st->events, events, __ATOMIC_RELAXED);
	__atomic_store_n(&st->phase, phase, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&f->lock);
}

bool fake_wake_client(struct fake *f)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&f->control->client_wants_wakeup, 0,
	                        __ATOMIC_SEQ_CST) == 0)
		return false;
	nc_doorbell_ring(&f->client_bell);
	return true;
}

bool fake_core_rung(struct fake *f)
{
	uint64_t v;
	return read(f->core_bell.fd, &v, sizeof(v)) == sizeof(v);
}

uint32_t fake_lent(struct fake *f)
{
	pthread_mutex_lock(&f->lock);
	uint32_t n = f->pool.lent_count;
	pthread_mutex_unlock(&f->lock);
	return n;
}
