/*
 * Surviving a core restart.
 *
 * When the core dies, the broker adds this client to the new core, which
 * announces a new core_epoch in the region and rings us
 * (proto/client_region.h has the handshake). Everything the old core lent
 * us is void: buffers, ring positions, channels. The first call that
 * enters the library afterwards (nci_core_enter) sees the epoch and
 * recovers, with core_lock held for writing, so no other thread is inside
 * the library meanwhile (threads asleep in a wait have let go of it):
 *
 *   1. let go: every handle leaves its channel; its private receive queue
 *      is dropped (the bytes were in buffers the new core will reuse); the
 *      stash of empty buffers and the queue of returns are forgotten.
 *   2. handshake: client_epoch = epoch (release), ring the core, wait for
 *      ready_epoch == epoch (acquire), bounded by NCI_RECOVER_TIMEOUT_MS.
 *      Another restart meanwhile (a newer core_epoch) starts this step
 *      over for the newer epoch.
 *   3. attach the client-wide rings afresh.
 *   4. re-create: a listener, a socket bound or not yet used, and every
 *      datagram socket get a new channel through ordinary requests (SOCKET,
 *      the recorded options, BIND to the name they had, LISTEN with their
 *      backlog, CONNECT to a datagram peer). The handle keeps its address
 *      for the caller: only its channel changed. A stream that was
 *      connecting or connected is *lost*: it shows a reset (ECONNRESET
 *      once, then EOF and EPIPE, as Linux does after an RST) and has no
 *      channel; closing it only frees it.
 *   5. ring our own doorbell, so a thread asleep on it (or a caller
 *      polling nc_client_fd()) looks again and sees what changed.
 *
 * What it does not do: keep connections (the core had their state), or
 * recover a client whose core never becomes ready (the data path then
 * reports EIO).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libclient/client_internal.h"

/* Nesting of library calls in this thread (nc_poll scans handles inside
 * its own call): only the outermost takes core_lock. */
static __thread int core_depth;

static uint32_t load_epoch(const uint32_t *word)
{
	return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

/* ----------------------------------------------------------- let go */

/* A stream in these phases only has a name and options: it can be made
 * again. Connecting and connected streams had state only the core knew. */
static bool can_remake(const struct nc_sock *s, uint32_t phase)
{
	if (s->type == SOCK_DGRAM)
		return true;
	return phase == NC_SS_OPEN || phase == NC_SS_BOUND ||
	       phase == NC_SS_LISTENING;
}

/* Handles a previous recovery could not re-create because yet another
 * core came meanwhile: back on the list, to be made on this one. */
static struct nc_sock *take_orphans(struct nc_client *c, struct nc_sock *list)
{
	struct nc_sock **p = &c->lost;
	while (*p != NULL) {
		struct nc_sock *s = *p;
		if (!s->remake) {
			p = &s->lost_next;
			continue;
		}
		*p = s->lost_next;
		s->lost = false;
		s->lost_next = list;
		list = s;
	}
	return list;
}

/* Takes every handle off its channel and returns them as a list, each
 * marked with whether it can be made again (s->remake). */
static struct nc_sock *let_go(struct nc_client *c)
{
	struct nc_sock *list = NULL;
	for (uint32_t i = 0; i < c->params.max_sockets; i++) {
		struct nc_sock *s = c->socks[i];
		if (s == NULL)
			continue;
		uint32_t phase =
		    __atomic_load_n(&c->states[i].phase, __ATOMIC_RELAXED);
		s->remake = can_remake(s, phase) && !s->broken;
		/* Bytes the program had not read yet were in buffers the new
		 * core takes back: the stream cannot end with an EOF that
		 * follows them (that would cut it short silently); it ends
		 * with the reset. Found by the core fault suite. */
		if (s->rxq_n > 0)
			s->rx_eof = false;
		s->rxq_n = 0;
		s->rxq_head = 0;
		s->connect_pending = false;
		c->socks[i] = NULL;
		s->lost_next = list;
		list = s;
	}
	c->stash_n = 0;
	c->done_n = 0;
	memset(c->held, 0, c->params.buf_count);
	__atomic_store_n(&c->broken, false, __ATOMIC_RELAXED);
	return take_orphans(c, list);
}

/* -------------------------------------------------------- handshake */

static void bell_wait(struct nc_client *c, int ms)
{
	struct pollfd pfd = {.fd = c->client_bell.fd, .events = POLLIN};
	uint64_t count;
	if (poll(&pfd, 1, ms) > 0 &&
	    read(c->client_bell.fd, &count, sizeof(count)) < 0)
		return; /* another thread took it: we look again anyway */
}

/* Lets go for `*epoch` and waits until the core is ready for it (or for
 * a newer epoch, then in *epoch). True when ready. */
static bool handshake(struct nc_client *c, uint32_t *epoch)
{
	int64_t deadline = 0;
	/* Ends: each round is for a newer core (bounded by the restarts that
	 * happen) or ends at its deadline. */
	for (;;) {
		/* Each new core gets the full time to get ready. */
		deadline = nci_deadline_ms(NCI_RECOVER_TIMEOUT_MS);
		/* After our last access to the old rings; pairs with the
		 * core's acquire load of client_epoch before it formats. */
		__atomic_store_n(&c->control->client_epoch, *epoch,
		                 __ATOMIC_RELEASE);
		nc_doorbell_ring(&c->core_bell);
		/* Pairs with the core's release store of ready_epoch after
		 * it formatted the rings and lent the first buffers. */
		while (load_epoch(&c->control->ready_epoch) != *epoch) {
			uint32_t now = load_epoch(&c->control->core_epoch);
			if (now != *epoch) {
				*epoch = now; /* yet another core */
				break;
			}
			if (nci_now_ns() >= deadline)
				return false;
			bell_wait(c, 50);
		}
		/* Ready, unless a newer core announced itself meanwhile: then
		 * these rings belong to a dead one; go on with the newer. */
		uint32_t now = load_epoch(&c->control->core_epoch);
		if (load_epoch(&c->control->ready_epoch) == *epoch &&
		    now == *epoch)
			return true;
		*epoch = now;
	}
}

/* --------------------------------------------------------- re-create */

static void lose(struct nc_client *c, struct nc_sock *s)
{
	s->lost = true;
	s->lost_next = c->lost;
	c->lost = s;
}

void nci_lost_unlink(struct nc_client *c, struct nc_sock *s)
{
	for (struct nc_sock **p = &c->lost; *p != NULL; p = &(*p)->lost_next)
		if (*p == s) {
			*p = s->lost_next;
			return;
		}
}

/* One request about `s` on its (new) channel; 0 or -errno. */
static int ask(struct nc_sock *s, enum nc_msg_type type, struct nc_msg_req *req)
{
	struct nc_msg_rep rep;
	req->hdr.type = (uint16_t)type;
	req->sock = (int32_t)s->idx;
	req->sock_gen = s->gen;
	return nci_call_locked(s->c, req, &rep);
}

static int replay(struct nc_sock *s)
{
	struct nc_msg_req req;
	int err = 0;
	for (uint32_t i = 0; i < s->nopts && !err; i++) {
		nci_req_init(&req, NC_MSG_SETSOCKOPT, s);
		req.level = s->opts[i].level;
		req.optname = s->opts[i].name;
		req.optlen = s->opts[i].len;
		memcpy(req.opt, s->opts[i].val, s->opts[i].len);
		err = ask(s, NC_MSG_SETSOCKOPT, &req);
	}
	if (!err && s->bound) {
		nci_req_init(&req, NC_MSG_BIND, s);
		req.addr = s->local;
		err = ask(s, NC_MSG_BIND, &req);
	}
	if (!err && s->listening) {
		nci_req_init(&req, NC_MSG_LISTEN, s);
		req.arg = s->backlog;
		err = ask(s, NC_MSG_LISTEN, &req);
	}
	if (!err && s->dgram_connected) {
		nci_req_init(&req, NC_MSG_CONNECT, s);
		req.addr = s->peer;
		err = ask(s, NC_MSG_CONNECT, &req);
	}
	return err;
}

/* A new channel for `s`, set up as the old one was. */
static int remake(struct nc_client *c, struct nc_sock *s)
{
	struct nc_msg_req req;
	struct nc_msg_rep rep;
	nci_req_init(&req, NC_MSG_SOCKET, NULL);
	req.domain = s->domain;
	req.type = s->type;
	int err = nci_call_locked(c, &req, &rep);
	if (!err)
		err = rep.sock < 0
		          ? -EPROTO
		          : nci_sock_bind_chan(c, s, (uint32_t)rep.sock,
		                               rep.sock_gen);
	if (err)
		return err;
	s->rx_eof = false;
	s->reported_err = 0;
	err = replay(s);
	if (err) {
		nci_req_init(&req, NC_MSG_CLOSE, s);
		nci_call_locked(c, &req, &rep);
		c->socks[s->idx] = NULL;
	}
	return err;
}

/* A handle that could not be made because the core restarted once more
 * keeps s->remake: the next recovery (due at once) tries again. */
static void remake_all(struct nc_client *c, struct nc_sock *list, bool ready)
{
	while (list != NULL) {
		struct nc_sock *s = list;
		list = s->lost_next;
		s->lost_next = NULL;
		if (ready && s->remake && remake(c, s) == 0)
			continue;
		s->remake = s->remake && (!ready || nci_core_restarted(c));
		lose(c, s);
	}
}

/* ------------------------------------------------------------ recover */

static void recover_locked(struct nc_client *c, uint32_t epoch)
{
	struct nc_sock *list = let_go(c);
	bool ready = handshake(c, &epoch);
	c->core_epoch = epoch;
	if (ready && nci_attach_rings(c) != 0)
		ready = false;
	if (!ready)
		__atomic_store_n(&c->broken, true, __ATOMIC_RELAXED);
	remake_all(c, list, ready);
	/* Sleepers look again: their sockets may be reset or renewed. */
	nc_doorbell_ring(&c->client_bell);
}

static void recover(struct nc_client *c)
{
	pthread_rwlock_wrlock(&c->core_lock);
	uint32_t epoch = load_epoch(&c->control->core_epoch);
	if (epoch != c->core_epoch) {
		pthread_mutex_lock(&c->ctl_lock);
		recover_locked(c, epoch);
		pthread_mutex_unlock(&c->ctl_lock);
	}
	pthread_rwlock_unlock(&c->core_lock);
}

void nci_core_enter(struct nc_client *c)
{
	if (core_depth++ > 0)
		return;
	for (;;) {
		pthread_rwlock_rdlock(&c->core_lock);
		/* Relaxed is enough here: recover() reads it again under the
		 * write lock, with acquire, before acting on it. */
		if (__atomic_load_n(&c->control->core_epoch,
		                    __ATOMIC_RELAXED) == c->core_epoch)
			return;
		pthread_rwlock_unlock(&c->core_lock);
		recover(c);
	}
}

bool nci_core_restarted(const struct nc_client *c)
{
	return load_epoch(&c->control->core_epoch) != c->core_epoch;
}

void nci_core_leave(struct nc_client *c)
{
	if (--core_depth == 0)
		pthread_rwlock_unlock(&c->core_lock);
}

int nci_core_suspend(struct nc_client *c)
{
	int depth = core_depth;
	if (depth > 0) {
		core_depth = 0;
		pthread_rwlock_unlock(&c->core_lock);
	}
	return depth;
}

void nci_core_resume(struct nc_client *c, int depth)
{
	if (depth == 0)
		return;
	nci_core_enter(c);
	core_depth = depth;
}

void nci_opt_record(struct nc_sock *s, int level, int name, const void *val,
                    uint32_t len)
{
	if (len > NC_MSG_OPT_MAX)
		return;
	uint32_t i = 0;
	while (i < s->nopts &&
	       (s->opts[i].level != level || s->opts[i].name != name))
		i++;
	if (i == NCI_OPTS_MAX)
		return; /* full: the first ones matter most (REUSEADDR...) */
	if (i == s->nopts)
		s->nopts++;
	s->opts[i].level = level;
	s->opts[i].name = name;
	s->opts[i].len = len;
	memcpy(s->opts[i].val, val, len);
}
