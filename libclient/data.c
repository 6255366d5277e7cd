/*
 * The data path's mechanics: buffers, rings, validation, readiness.
 *
 * Ownership. The core owns every buffer of the pool. It lends empty ones on
 * the free ring; we keep a private stash of them (refilled a batch at a
 * time), fill some, and give them back by enqueueing their descriptors on a
 * socket's tx ring. For receive the core lends full ones on a socket's rx
 * ring; we copy descriptors into the socket's private rx queue (a partly
 * read buffer stays there, and MSG_PEEK reads it without consuming), and
 * give each consumed buffer back on the done ring, in batches. `held`
 * records, one byte per buffer, what we hold right now: a buffer lent to us
 * twice is the core's error, not a reason to read a buffer while the core
 * refills it.
 *
 * Trust. Everything read from the region is the core's word and is checked
 * before use: ring indices (shm's handles), each descriptor (the start of a
 * pool buffer, a length that fits, aux = our channel, known flags, nothing
 * after end of stream) and each socket state (our generation, a known
 * phase, known event bits, an errno in range). A failed check on a socket's
 * own ring or state breaks that socket (every call on it: EIO); on the
 * free or done ring it breaks the client's data path. Nothing the core
 * writes can make us read or write outside the region.
 *
 * Wake-ups. After publishing anything (an index of any ring) we apply the
 * protocol toward the core (nci_kick_core). Before sleeping we arm
 * client_wants_wakeup, re-check readiness and only then sleep (nci_wait).
 *
 * What it does not do: block (except nci_wait), or know the BSD calls'
 * semantics (io.c).
 */
#include "libclient/client_internal.h"

#include <errno.h>
#include <string.h>

#define EV_KNOWN                                                               \
	(NC_EV_READABLE | NC_EV_WRITABLE | NC_EV_HUP | NC_EV_ERROR |           \
	 NC_EV_RDHUP | NC_EV_ACCEPTABLE | NC_EV_CONNECTED)

/* Returns batch for the done ring, gathered on the stack first. */
#define RETURN_BATCH 32u

/* ------------------------------------------------------------- buffers */

/* The pool buffer a descriptor names exactly, or false. */
static bool buffer_index(const struct nc_client *c, uint64_t offset,
                         uint32_t *idx)
{
	uint64_t pool = c->layout.pool;
	if (offset < pool || (offset - pool) % c->params.buf_size != 0)
		return false;
	uint64_t i = (offset - pool) / c->params.buf_size;
	if (i >= c->params.buf_count)
		return false;
	*idx = (uint32_t)i;
	return true;
}

/* Marks a buffer held; false if we held it already (lent twice). */
static bool hold(struct nc_client *c, uint32_t idx)
{
	return __atomic_exchange_n(&c->held[idx], 1, __ATOMIC_ACQ_REL) == 0;
}

static void unhold(struct nc_client *c, const struct nc_desc *d)
{
	uint32_t idx;
	if (buffer_index(c, d->offset, &idx))
		__atomic_store_n(&c->held[idx], 0, __ATOMIC_RELEASE);
}

static void rehold(struct nc_client *c, const struct nc_desc *d)
{
	uint32_t idx;
	if (buffer_index(c, d->offset, &idx))
		__atomic_store_n(&c->held[idx], 1, __ATOMIC_RELEASE);
}

static uint8_t *buf_data(const struct nc_client *c, const struct nc_desc *d)
{
	return c->pool + (d->offset - c->layout.pool);
}

static void set_broken(struct nc_client *c)
{
	__atomic_store_n(&c->broken, true, __ATOMIC_RELAXED);
}

int nci_client_error(struct nc_client *c)
{
	return __atomic_load_n(&c->broken, __ATOMIC_RELAXED) ? -EIO : 0;
}

/* Checks `n` descriptors freshly dequeued from the free ring. */
static bool free_descs_valid(struct nc_client *c, const struct nc_desc *d,
                             int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t idx;
		if (!buffer_index(c, d[i].offset, &idx) || !hold(c, idx))
			return false;
	}
	return true;
}

/* Refills the stash from the free ring. Caller holds data_lock. True if
 * we dequeued anything (the core must hear of the freed slots). */
static bool stash_refill(struct nc_client *c)
{
	uint32_t room = c->params.buf_count - c->stash_n;
	if (room > NCI_FREE_BATCH)
		room = NCI_FREE_BATCH;
	if (room == 0)
		return false;
	int n =
	    nc_ring_dequeue_batch(&c->free_ring, &c->stash[c->stash_n], room);
	if (n < 0 || !free_descs_valid(c, &c->stash[c->stash_n], n)) {
		set_broken(c);
		return false;
	}
	c->stash_n += (uint32_t)n;
	return n > 0;
}

/* Takes up to `n` empty buffers. Returns how many, or -EIO. */
static int take_buffers(struct nc_client *c, struct nc_desc *out, uint32_t n)
{
	pthread_mutex_lock(&c->data_lock);
	bool refilled = false;
	if (c->stash_n < n)
		refilled = stash_refill(c);
	int err = nci_client_error(c);
	uint32_t k = c->stash_n < n ? c->stash_n : n;
	if (err)
		k = 0;
	c->stash_n -= k;
	memcpy(out, &c->stash[c->stash_n], k * sizeof(*out));
	pthread_mutex_unlock(&c->data_lock);
	if (refilled)
		nci_kick_core(c, &c->free_ring);
	return err ? err : (int)k;
}

/* Puts buffers we took but did not send back into the stash. */
static void stash_put(struct nc_client *c, const struct nc_desc *d, uint32_t n)
{
	pthread_mutex_lock(&c->data_lock);
	for (uint32_t i = 0; i < n; i++) {
		rehold(c, &d[i]);
		c->stash[c->stash_n++] = d[i];
	}
	pthread_mutex_unlock(&c->data_lock);
}

/* Whether an empty buffer is there for the taking, without taking it. */
static bool buffer_available(struct nc_client *c)
{
	pthread_mutex_lock(&c->data_lock);
	bool yes = c->stash_n > 0 || nc_ring_ready(&c->free_ring) > 0;
	pthread_mutex_unlock(&c->data_lock);
	return yes;
}

/* Queues consumed buffers for the done ring (sent by nci_done_flush). */
static void done_push(struct nc_client *c, const struct nc_desc *d, uint32_t n)
{
	pthread_mutex_lock(&c->data_lock);
	/* Each held buffer is queued at most once, so buf_count is room
	 * enough; the check only guards against our own bugs. */
	for (uint32_t i = 0; i < n && c->done_n < c->params.buf_count; i++)
		c->done_q[c->done_n++] = d[i];
	pthread_mutex_unlock(&c->data_lock);
}

void nci_done_flush(struct nc_client *c)
{
	pthread_mutex_lock(&c->data_lock);
	uint32_t n = c->done_n;
	int sent = 0;
	if (n > 0 && !nci_client_error(c)) {
		/* Not ours any more once enqueued: the core may lend them
		 * again at once, so drop them from `held` first. */
		for (uint32_t i = 0; i < n; i++)
			unhold(c, &c->done_q[i]);
		sent = nc_ring_enqueue_batch(&c->done_ring, c->done_q, n);
		if (sent < 0) {
			set_broken(c);
			sent = 0;
		}
		for (uint32_t i = (uint32_t)sent; i < n; i++)
			rehold(c, &c->done_q[i]);
		memmove(c->done_q, &c->done_q[sent],
		        (n - (uint32_t)sent) * sizeof(*c->done_q));
		c->done_n = n - (uint32_t)sent;
	}
	pthread_mutex_unlock(&c->data_lock);
	if (sent > 0)
		nci_kick_core(c, &c->done_ring);
}

/* -------------------------------------------------------------- states */

static int sock_broken(struct nc_sock *s)
{
	s->broken = true;
	return -EIO;
}

int nci_state(struct nc_sock *s, struct nc_sock_state *out)
{
	if (s->broken)
		return -EIO;
	if (s->lost) {
		/* What the core shows for a reset connection. */
		memset(out, 0, sizeof(*out));
		out->gen = s->gen;
		out->events = NC_EV_HUP | NC_EV_ERROR;
		out->error = ECONNRESET;
		out->phase = NC_SS_CLOSED;
		return 0;
	}
	const struct nc_sock_state *sh = &s->c->states[s->idx];
	/* One load per field: the core may write while we look. */
	out->gen = __atomic_load_n(&sh->gen, __ATOMIC_RELAXED);
	out->events = __atomic_load_n(&sh->events, __ATOMIC_RELAXED);
	out->error = __atomic_load_n(&sh->error, __ATOMIC_RELAXED);
	out->phase = __atomic_load_n(&sh->phase, __ATOMIC_RELAXED);
	out->rx_queued = __atomic_load_n(&sh->rx_queued, __ATOMIC_RELAXED);
	out->accept_queue =
	    __atomic_load_n(&sh->accept_queue, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (out->gen != s->gen || out->phase < NC_SS_OPEN ||
	    out->phase > NC_SS_CLOSED || (out->events & ~EV_KNOWN) != 0 ||
	    out->error < 0 || out->error > NCI_MAX_ERRNO)
		return sock_broken(s);
	if (out->error == 0)
		s->reported_err = 0; /* cleared: a new one will be news */
	return 0;
}

/* ------------------------------------------------------------- receive */

/* Checks one rx descriptor for socket `s`; takes the buffer if good. */
static bool rx_desc_valid(struct nc_sock *s, const struct nc_desc *d)
{
	struct nc_client *c = s->c;
	uint32_t idx;
	if (s->rx_eof || !buffer_index(c, d->offset, &idx) ||
	    d->length > c->params.buf_size || d->aux != s->idx ||
	    (d->flags & ~NC_RXF_EOF) != 0)
		return false;
	if (d->flags & NC_RXF_EOF) {
		if (s->type != SOCK_STREAM || d->length != 0)
			return false;
	} else if (s->type == SOCK_DGRAM &&
	           d->length < sizeof(struct nc_dgram_hdr)) {
		return false;
	}
	return hold(c, idx);
}

/* Files a checked descriptor: EOF ends the stream (its buffer goes back
 * at once), anything else joins the private queue. */
static void rx_file(struct nc_sock *s, const struct nc_desc *d)
{
	if (d->flags & NC_RXF_EOF) {
		s->rx_eof = true;
		done_push(s->c, d, 1);
		return;
	}
	uint32_t at = (s->rxq_head + s->rxq_n) % s->rxq_cap;
	s->rxq[at].d = *d;
	s->rxq[at].off = 0;
	s->rxq_n++;
}

int nci_rx_pull(struct nc_sock *s)
{
	/* A broken done ring means we could not give buffers back: the
	 * client's data path is over, receiving included. */
	if (s->broken || nci_client_error(s->c))
		return -EIO;
	if (s->lost)
		return 0;
	bool pulled = false;
	for (;;) {
		struct nc_desc batch[RETURN_BATCH];
		uint32_t room = s->rxq_cap - s->rxq_n;
		if (room > RETURN_BATCH)
			room = RETURN_BATCH;
		if (room == 0)
			break;
		int n = nc_ring_dequeue_batch(&s->rx, batch, room);
		if (n < 0)
			return sock_broken(s);
		if (n == 0)
			break;
		pulled = true;
		for (int i = 0; i < n; i++) {
			if (!rx_desc_valid(s, &batch[i]))
				return sock_broken(s);
			rx_file(s, &batch[i]);
		}
	}
	if (pulled) /* rx slots freed: the core may be waiting for room */
		nci_kick_core(s->c, &s->rx);
	return 0;
}

/* Drops the head of the private queue, returning its buffer. */
static void rxq_pop(struct nc_sock *s)
{
	done_push(s->c, &s->rxq[s->rxq_head].d, 1);
	s->rxq_head = (s->rxq_head + 1) % s->rxq_cap;
	s->rxq_n--;
}

/* ------------------------------------------------------------ transmit */

/* Fills `d` (an empty buffer) with up to buf_size bytes from the cursor. */
static uint32_t fill(struct nc_sock *s, struct nc_desc *d,
                     struct nci_iov_cursor *cur, size_t left, size_t prefix)
{
	struct nc_client *c = s->c;
	size_t room = c->params.buf_size - prefix;
	size_t n = left < room ? left : room;
	nci_iov_read(cur, buf_data(c, d) + prefix, n);
	d->length = (uint32_t)(prefix + n);
	d->flags = 0;
	d->aux = (uint16_t)s->idx;
	return (uint32_t)n;
}

/* Enqueues `n` filled buffers on the tx ring; gives back what did not
 * fit. -EIO if the ring is broken or shrank under us. */
static int tx_publish(struct nc_sock *s, struct nc_desc *bufs, uint32_t n)
{
	struct nc_client *c = s->c;
	for (uint32_t i = 0; i < n; i++)
		unhold(c, &bufs[i]);
	int sent = nc_ring_enqueue_batch(&s->tx, bufs, n);
	if (sent > 0)
		nci_kick_core(c, &s->tx);
	if (sent == (int)n)
		return 0;
	/* We measured the room under s->lock and only the core frees slots:
	 * fewer means the core moved its index backwards. */
	uint32_t ok = sent > 0 ? (uint32_t)sent : 0;
	stash_put(c, &bufs[ok], n - ok);
	return sock_broken(s);
}

/* Buffers worth taking for `want` bytes, bounded by tx ring room. */
static int tx_room(struct nc_sock *s, size_t want, size_t per_buf, uint32_t *n)
{
	int space = nc_ring_space(&s->tx);
	if (space < 0)
		return sock_broken(s);
	size_t need = (want + per_buf - 1) / per_buf;
	if (need == 0)
		need = 1; /* an empty datagram still takes a buffer */
	if (need > (size_t)space)
		need = (size_t)space;
	if (need > NCI_FREE_BATCH)
		need = NCI_FREE_BATCH;
	*n = (uint32_t)need;
	return 0;
}

ssize_t nci_tx_stream(struct nc_sock *s, struct nci_iov_cursor *cur,
                      size_t want)
{
	struct nc_desc bufs[NCI_FREE_BATCH];
	uint32_t n;
	int err = tx_room(s, want, s->c->params.buf_size, &n);
	if (err || n == 0)
		return err;
	int got = take_buffers(s->c, bufs, n);
	if (got <= 0)
		return got;
	size_t total = 0;
	for (int i = 0; i < got; i++)
		total += fill(s, &bufs[i], cur, want - total, 0);
	err = tx_publish(s, bufs, (uint32_t)got);
	return err ? err : (ssize_t)total;
}

int nci_tx_dgram(struct nc_sock *s, const struct nc_dgram_hdr *hdr,
                 struct nci_iov_cursor *cur, size_t len)
{
	struct nc_desc d;
	uint32_t n;
	int err = tx_room(s, 0, 1, &n);
	if (err || n == 0)
		return err;
	int got = take_buffers(s->c, &d, 1);
	if (got <= 0)
		return got;
	memcpy(buf_data(s->c, &d), hdr, sizeof(*hdr));
	fill(s, &d, cur, len, sizeof(*hdr));
	err = tx_publish(s, &d, 1);
	return err ? err : 1;
}

/* ---------------------------------------------------------- private queue */

size_t nci_rxq_read(struct nc_sock *s, struct nci_iov_cursor *cur, size_t want,
                    bool peek)
{
	size_t copied = 0;
	uint32_t i = 0, peek_off = s->rxq_n ? s->rxq[s->rxq_head].off : 0;
	while (copied < want && i < s->rxq_n) {
		struct nci_rxent *e = &s->rxq[(s->rxq_head + i) % s->rxq_cap];
		uint32_t off = peek ? peek_off : e->off;
		size_t avail = e->d.length - off;
		size_t n = want - copied < avail ? want - copied : avail;
		nci_iov_write(cur, buf_data(s->c, &e->d) + off, n);
		copied += n;
		if (peek) {
			if (n < avail)
				break;
			i++;
			if (i < s->rxq_n)
				peek_off =
				    s->rxq[(s->rxq_head + i) % s->rxq_cap].off;
		} else {
			e->off += (uint32_t)n;
			if (e->off == e->d.length)
				rxq_pop(s);
		}
	}
	return copied;
}

size_t nci_rxq_bytes(const struct nc_sock *s)
{
	size_t total = 0;
	for (uint32_t i = 0; i < s->rxq_n; i++) {
		const struct nci_rxent *e =
		    &s->rxq[(s->rxq_head + i) % s->rxq_cap];
		total += e->d.length - e->off;
	}
	return total;
}

int nci_rxq_dgram(struct nc_sock *s, struct nc_dgram_hdr *hdr,
                  const uint8_t **payload, size_t *len)
{
	if (s->rxq_n == 0)
		return -EAGAIN;
	const struct nc_desc *d = &s->rxq[s->rxq_head].d;
	const uint8_t *data = buf_data(s->c, d);
	/* One copy of the header: the core could rewrite the buffer. */
	memcpy(hdr, data, sizeof(*hdr));
	*payload = data + sizeof(*hdr);
	*len = d->length - sizeof(*hdr);
	return 0;
}

void nci_rxq_drop_head(struct nc_sock *s)
{
	if (s->rxq_n > 0)
		rxq_pop(s);
}

void nci_rx_drain(struct nc_sock *s)
{
	if (s->lost) {
		s->rxq_n = 0; /* buffers of a dead core: nobody to return to */
		return;
	}
	while (s->rxq_n > 0)
		rxq_pop(s);
	/* What is still on the ring is ours too (the core closed the
	 * socket before replying); take it, check it, give it back. */
	for (;;) {
		struct nc_desc batch[RETURN_BATCH];
		if (s->broken)
			break;
		int n = nc_ring_dequeue_batch(&s->rx, batch, RETURN_BATCH);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			if (!rx_desc_valid(s, &batch[i])) {
				s->broken = true;
				break;
			}
			done_push(s->c, &batch[i], 1);
		}
	}
	nci_done_flush(s->c);
}

/* ------------------------------------------------------------ readiness */

/* A pending error we have not reported yet, or 0. */
int nci_pending_error(const struct nc_sock *s, const struct nc_sock_state *st)
{
	return st->error != 0 && st->error != s->reported_err ? st->error : 0;
}

static bool can_send(struct nc_sock *s)
{
	if (s->lost)
		return true; /* so a caller finds out: EPIPE */
	int space = nc_ring_space(&s->tx);
	if (space < 0) {
		s->broken = true;
		return true; /* so a caller finds out: EIO */
	}
	return space > 0 && buffer_available(s->c);
}

static short stream_connected(struct nc_sock *s, const struct nc_sock_state *st)
{
	short m = 0;
	bool rd_done = s->rx_eof || s->rd_shut;
	if (s->rxq_n > 0 || rd_done)
		m |= POLLIN;
	if (rd_done || (st->events & NC_EV_RDHUP))
		m |= NC_POLLRDHUP;
	if (s->wr_shut || ((st->events & NC_EV_WRITABLE) && can_send(s)))
		m |= POLLOUT;
	if ((st->events & NC_EV_HUP) || (s->wr_shut && rd_done))
		m |= POLLHUP;
	return m;
}

static short stream_readiness(struct nc_sock *s, const struct nc_sock_state *st)
{
	switch (st->phase) {
	case NC_SS_LISTENING:
		return st->accept_queue > 0 || (st->events & NC_EV_ACCEPTABLE)
		           ? POLLIN
		           : 0;
	case NC_SS_CONNECTING:
		return 0;
	case NC_SS_CONNECTED:
		return stream_connected(s, st);
	case NC_SS_CLOSED:
		return POLLIN | POLLOUT | POLLHUP | NC_POLLRDHUP;
	default: /* open or bound, never connected: as Linux says */
		return POLLOUT | POLLHUP;
	}
}

static short dgram_readiness(struct nc_sock *s, const struct nc_sock_state *st)
{
	short m = 0;
	if (s->rxq_n > 0 || s->rd_shut)
		m |= POLLIN;
	if (st->phase == NC_SS_CLOSED)
		m |= POLLHUP;
	else if (can_send(s))
		m |= POLLOUT;
	return m;
}

short nci_readiness(struct nc_sock *s)
{
	struct nc_sock_state st;
	/* A broken socket polls as an error; every call then says EIO. */
	if (nci_state(s, &st) != 0 || nci_rx_pull(s) != 0 ||
	    nci_client_error(s->c) != 0)
		return POLLERR | POLLIN | POLLOUT;
	short m = s->type == SOCK_STREAM ? stream_readiness(s, &st)
	                                 : dgram_readiness(s, &st);
	m |= nci_connect_readiness(s, &st);
	if (nci_pending_error(s, &st))
		m |= POLLERR;
	if (s->broken)
		m |= POLLERR;
	return m;
}

int nci_wait(struct nc_sock *s, short want, int64_t deadline_ns)
{
	struct nc_client *c = s->c;
	/* Never sleep on buffers the core needs back (it may be waiting for
	 * them to give us what we wait for). */
	nci_done_flush(c);
	uint64_t epoch = nci_epoch(c);
	nci_arm(c);
	if (nci_readiness(s) & (want | POLLERR))
		return 0;
	pthread_mutex_unlock(&s->lock);
	int depth = nci_core_suspend(c);
	int err = nci_sleep(c, epoch, deadline_ns);
	nci_core_resume(c, depth);
	pthread_mutex_lock(&s->lock);
	return err == -ETIMEDOUT ? -EAGAIN : 0;
}

bool nci_would_block(struct nc_sock *s, short want)
{
	/* Take the doorbell first, then look: whatever rang it is visible
	 * now. Then ask for the next one (armed + re-checked), so a caller
	 * sleeping on nc_client_fd() hears of the change it waits for. */
	nci_done_flush(s->c);
	nci_consume_bell(s->c);
	nci_arm(s->c);
	return (nci_readiness(s) & (want | POLLERR)) == 0;
}
