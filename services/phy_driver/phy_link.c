/*
 * phy_link: layout, handshake, and both endpoints of the phy region.
 *
 * Core side states: DOWN (no phy granted; nothing moves) and UP (rings
 * formatted for the phy's current request). A new phy request, or a ring or
 * descriptor the phy broke, takes the core side back through DOWN: every
 * buffer lent to the phy is taken back, so none leaks however often the phy
 * dies.
 *
 * Phy side states: DETACHED (before the first grant, or after it saw the
 * core restart) and ATTACHED. The phy never formats anything; it only asks.
 *
 * Batching: received packets and returned buffers are queued in private
 * arrays and published with one index store per batch; a doorbell is rung
 * at most once per flush, and only if the other side asked for it.
 */
#include "services/phy_driver/phy_link.h"

#include <ck_pr.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CACHELINE 64u
#define PAGE      4096u

void nc_phy_params_default(struct nc_phy_params *p)
{
	p->mtu = 65520;
	p->buf_size = 65536;
	p->buf_count = 512;
	p->ring_slots = 256;
}

static bool params_valid(const struct nc_phy_params *p)
{
	return nc_ring_footprint(p->ring_slots) != 0 && p->buf_count > 0 &&
	       p->buf_size >= 1280 && p->buf_size <= NC_PHY_MAX_BUF &&
	       p->buf_size % CACHELINE == 0 && p->mtu >= 1280 &&
	       p->mtu <= p->buf_size && p->buf_count <= (1u << 20);
}

int nc_phy_layout(const struct nc_phy_params *p, struct nc_phy_layout *out)
{
	if (!params_valid(p))
		return -NC_ELAYOUT;
	uint64_t ring =
	    nc_align_up(nc_ring_footprint(p->ring_slots), CACHELINE);
	uint64_t at = PAGE; /* the region header has the first page */
	out->control = at;
	at = nc_align_up(at + sizeof(struct nc_phy_control), CACHELINE);
	out->rx_free = at;
	out->rx_active = at + ring;
	out->tx_active = at + 2 * ring;
	out->tx_free = at + 3 * ring;
	out->pool = nc_align_up(at + 4 * ring, PAGE);
	out->size = out->pool + (uint64_t)p->buf_count * p->buf_size;
	return 0;
}

int nc_phy_region_create(struct nc_region *r, const struct nc_phy_params *p)
{
	struct nc_phy_layout l;
	int err = nc_phy_layout(p, &l);
	if (err)
		return err;
	err = nc_region_create(r, "netcore-phy", l.size, NC_PHY_REGION_KIND);
	if (err)
		return err;
	uint32_t words[] = {p->ring_slots, p->buf_count, p->buf_size, p->mtu};
	nc_region_set_params(r, words, 4);
	return 0;
}

int nc_phy_region_params(const struct nc_region *r, struct nc_phy_params *p)
{
	uint32_t w[4];
	int err = nc_region_get_params(r, w, 4);
	if (err)
		return err;
	p->ring_slots = w[0];
	p->buf_count = w[1];
	p->buf_size = w[2];
	p->mtu = w[3];
	struct nc_phy_layout l;
	err = nc_phy_layout(p, &l);
	if (err)
		return err;
	return l.size <= r->size ? 0 : -NC_ELAYOUT;
}

struct nc_phy_control *nc_phy_control(const struct nc_region *r,
                                      const struct nc_phy_layout *l)
{
	return nc_region_at(r, l->control, sizeof(struct nc_phy_control));
}

/* Params and layout from the header, checked against the region itself. */
static int bind_layout(struct nc_region *r, struct nc_phy_params *p,
                       struct nc_phy_layout *l, struct nc_phy_control **ctl)
{
	int err = nc_phy_region_params(r, p);
	if (err)
		return err;
	nc_phy_layout(p, l);
	*ctl = nc_phy_control(r, l);
	return *ctl ? 0 : -NC_ELAYOUT;
}

/* ---------------------------------------------------------- core side */

int nc_phy_core_open(struct nc_phy_core *c, struct nc_region *r,
                     struct nc_doorbell *core_bell,
                     struct nc_doorbell *phy_bell)
{
	memset(c, 0, sizeof(*c));
	int err = bind_layout(r, &c->params, &c->layout, &c->control);
	if (err)
		return err;
	err = nc_pool_init(&c->pool, r, c->layout.pool, c->params.buf_count,
	                   c->params.buf_size);
	if (err)
		return err;
	c->region = r;
	c->core_bell = core_bell;
	c->phy_bell = phy_bell;
	/*
	 * A new epoch tells a phy that survived us to stop using the rings
	 * and ask again. The store pairs with the load in
	 * nc_phy_dev_core_restarted().
	 */
	uint32_t epoch = ck_pr_load_uint(&c->control->core_epoch) + 1;
	ck_pr_store_uint(&c->control->core_epoch, epoch ? epoch : 1);
	/*
	 * A request still pending (request != granted) is answered by the
	 * next nc_phy_core_service(): a phy that came up before us is waiting
	 * for exactly that. A request the previous core granted is settled;
	 * the new epoch makes that phy ask again.
	 */
	nc_doorbell_ring(phy_bell);
	return 0;
}

void nc_phy_core_close(struct nc_phy_core *c)
{
	nc_pool_fini(&c->pool);
	c->up = false;
}

static int format_and_attach(struct nc_phy_core *c)
{
	const struct nc_phy_layout *l = &c->layout;
	uint32_t n = c->params.ring_slots;
	struct nc_region *r = c->region;
	uint64_t offsets[4] = {l->rx_free, l->rx_active, l->tx_active,
	                       l->tx_free};
	for (int i = 0; i < 4; i++)
		if (nc_ring_format(r, offsets[i], n))
			return -NC_ELAYOUT;
	int err =
	    nc_ring_attach(&c->rx_free, r, l->rx_free, n, NC_RING_PRODUCER);
	err = err
	          ?: nc_ring_attach(&c->rx_active, r, l->rx_active, n,
	                            NC_RING_CONSUMER);
	err = err
	          ?: nc_ring_attach(&c->tx_active, r, l->tx_active, n,
	                            NC_RING_PRODUCER);
	err = err
	          ?: nc_ring_attach(&c->tx_free, r, l->tx_free, n,
	                            NC_RING_CONSUMER);
	return err;
}

/* Lends held buffers to the phy on rx_free until it is full. Keeps a
 * share back for transmit so a busy receiver cannot starve sending. */
static void refill_rx(struct nc_phy_core *c)
{
	struct nc_desc batch[NC_PHY_BATCH];
	uint32_t tx_reserve = c->params.buf_count / 4;
	int space = nc_ring_space(&c->rx_free);
	unsigned n = 0;
	while ((int)n < space && n < NC_PHY_BATCH &&
	       c->pool.free_count > tx_reserve &&
	       nc_pool_get(&c->pool, &batch[n]) == 0)
		n++;
	int sent = n ? nc_ring_enqueue_batch(&c->rx_free, batch, n) : 0;
	for (unsigned i = 0; i < n; i++) {
		if ((int)i < sent)
			nc_pool_lend(&c->pool, &batch[i]);
		else
			nc_pool_put(&c->pool, &batch[i]);
	}
	if (sent > 0)
		c->signal_pending = true;
}

static void link_down(struct nc_phy_core *c)
{
	c->up = false;
	for (uint32_t i = 0; i < c->tx_pending_count; i++)
		nc_pool_put(&c->pool, &c->tx_pending[i]);
	c->tx_pending_count = 0;
	nc_pool_reclaim_all(&c->pool);
}

static void phy_broke_something(struct nc_phy_core *c)
{
	c->counters.phy_corrupt++;
	link_down(c);
}

bool nc_phy_core_service(struct nc_phy_core *c)
{
	uint32_t request = ck_pr_load_uint(&c->control->phy_request);
	if (request == ck_pr_load_uint(&c->control->phy_granted))
		return c->up;
	link_down(c);
	if (format_and_attach(c) != 0)
		return false;
	c->up = true;
	refill_rx(c);
	/*
	 * Rings before grant. Pairs with the load fence in
	 * nc_phy_dev_handshake() after it sees the grant.
	 */
	ck_pr_store_uint(&c->control->granted_epoch,
	                 ck_pr_load_uint(&c->control->core_epoch));
	ck_pr_fence_store();
	ck_pr_store_uint(&c->control->phy_granted, request);
	c->counters.handshakes++;
	nc_doorbell_ring(c->phy_bell);
	return true;
}

int nc_phy_core_rx(struct nc_phy_core *c, struct nc_desc *out, unsigned max)
{
	if (!c->up)
		return 0;
	int n = nc_ring_dequeue_batch(&c->rx_active, out, max);
	if (n < 0) {
		phy_broke_something(c);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		if (nc_pool_accept(&c->pool, &out[i]) != 0) {
			/* Give back what we accepted of this batch. */
			for (int k = 0; k < i; k++)
				nc_pool_put(&c->pool, &out[k]);
			phy_broke_something(c);
			return 0;
		}
	}
	if (n > 0)
		c->signal_pending = true;
	return n;
}

void *nc_phy_core_data(const struct nc_phy_core *c, const struct nc_desc *d)
{
	return nc_pool_data(&c->pool, d);
}

void nc_phy_core_rx_release(struct nc_phy_core *c, const struct nc_desc *d)
{
	nc_pool_put(&c->pool, d);
	if (c->up)
		refill_rx(c);
}

static void publish_tx(struct nc_phy_core *c)
{
	if (c->tx_pending_count == 0)
		return;
	int sent = nc_ring_enqueue_batch(&c->tx_active, c->tx_pending,
	                                 c->tx_pending_count);
	if (sent < 0) {
		phy_broke_something(c);
		return;
	}
	for (int i = 0; i < sent; i++)
		nc_pool_lend(&c->pool, &c->tx_pending[i]);
	/* A full ring drops what did not fit: the phy is not keeping up. */
	for (uint32_t i = (uint32_t)sent; i < c->tx_pending_count; i++) {
		nc_pool_put(&c->pool, &c->tx_pending[i]);
		c->counters.tx_drop_no_buffer++;
	}
	c->tx_pending_count = 0;
	if (sent > 0)
		c->signal_pending = true;
}

static void reap_tx(struct nc_phy_core *c)
{
	struct nc_desc done[NC_PHY_BATCH];
	int n;
	while ((n = nc_ring_dequeue_batch(&c->tx_free, done, NC_PHY_BATCH)) >
	       0) {
		for (int i = 0; i < n; i++) {
			if (nc_pool_accept(&c->pool, &done[i]) != 0) {
				phy_broke_something(c);
				return;
			}
			nc_pool_put(&c->pool, &done[i]);
		}
		c->signal_pending = true;
	}
	if (n < 0)
		phy_broke_something(c);
}

void *nc_phy_core_tx_reserve(struct nc_phy_core *c, struct nc_desc *d)
{
	if (!c->up)
		return NULL;
	if (c->tx_pending_count == NC_PHY_BATCH)
		publish_tx(c);
	if (c->pool.free_count == 0)
		reap_tx(c);
	if (!c->up || nc_pool_get(&c->pool, d) != 0)
		return NULL;
	return nc_pool_data(&c->pool, d);
}

int nc_phy_core_tx_commit(struct nc_phy_core *c, struct nc_desc *d,
                          uint32_t len)
{
	if (!c->up) {
		nc_pool_put(&c->pool, d);
		return -ENETDOWN;
	}
	d->length = len;
	c->tx_pending[c->tx_pending_count++] = *d;
	return 0;
}

int nc_phy_core_tx(struct nc_phy_core *c, const void *pkt, uint32_t len)
{
	if (!c->up)
		return -ENETDOWN;
	struct nc_desc d;
	void *buf = len <= c->params.mtu ? nc_phy_core_tx_reserve(c, &d) : NULL;
	if (buf == NULL) {
		c->counters.tx_drop_no_buffer++;
		return -ENOBUFS;
	}
	memcpy(buf, pkt, len);
	return nc_phy_core_tx_commit(c, &d, len);
}

void nc_phy_core_flush(struct nc_phy_core *c)
{
	if (!c->up)
		return;
	publish_tx(c);
	reap_tx(c);
	if (c->up)
		refill_rx(c);
	if (!c->signal_pending || !c->up)
		return;
	c->signal_pending = false;
	/* Any of our four rings may be the one the phy sleeps on. */
	bool ring_phy = nc_ring_needs_signal(&c->tx_active);
	ring_phy |= nc_ring_needs_signal(&c->rx_free);
	ring_phy |= nc_ring_needs_signal(&c->rx_active);
	ring_phy |= nc_ring_needs_signal(&c->tx_free);
	if (ring_phy)
		nc_doorbell_ring(c->phy_bell);
}

bool nc_phy_core_prepare_wait(struct nc_phy_core *c)
{
	if (ck_pr_load_uint(&c->control->phy_request) !=
	    ck_pr_load_uint(&c->control->phy_granted))
		return false;
	if (!c->up)
		return true;
	return nc_ring_prepare_wait(&c->rx_active) &&
	       nc_ring_prepare_wait(&c->tx_free);
}

/* ----------------------------------------------------------- phy side */

int nc_phy_dev_open(struct nc_phy_dev *d, struct nc_region *r,
                    struct nc_doorbell *phy_bell, struct nc_doorbell *core_bell)
{
	memset(d, 0, sizeof(*d));
	int err = bind_layout(r, &d->params, &d->layout, &d->control);
	if (err)
		return err;
	d->region = r;
	d->phy_bell = phy_bell;
	d->core_bell = core_bell;
	return 0;
}

static int attach_rings(struct nc_phy_dev *d)
{
	const struct nc_phy_layout *l = &d->layout;
	uint32_t n = d->params.ring_slots;
	struct nc_region *r = d->region;
	int err =
	    nc_ring_attach(&d->rx_free, r, l->rx_free, n, NC_RING_CONSUMER);
	err = err
	          ?: nc_ring_attach(&d->rx_active, r, l->rx_active, n,
	                            NC_RING_PRODUCER);
	err = err
	          ?: nc_ring_attach(&d->tx_active, r, l->tx_active, n,
	                            NC_RING_CONSUMER);
	err = err
	          ?: nc_ring_attach(&d->tx_free, r, l->tx_free, n,
	                            NC_RING_PRODUCER);
	return err;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nc_phy_dev_request(struct nc_phy_dev *d)
{
	d->attached = false;
	d->stash_count = d->rx_pending_count = d->tx_done_count = 0;
	d->seen_core_epoch = ck_pr_load_uint(&d->control->core_epoch);
	d->request = ck_pr_load_uint(&d->control->phy_request) + 1;
	ck_pr_store_uint(&d->control->phy_request, d->request);
	ck_pr_store_uint(&d->control->phy_pid, (uint32_t)getpid());
	d->control->phy.restarts++;
	nc_doorbell_ring(d->core_bell);
}

int nc_phy_dev_granted(struct nc_phy_dev *d)
{
	if (d->attached)
		return 1;
	if (ck_pr_load_uint(&d->control->phy_granted) != d->request)
		return 0;
	/* Grant before rings. Pairs with the store fence in
	 * nc_phy_core_service() before it grants. */
	ck_pr_fence_load();
	int err = attach_rings(d);
	if (err)
		return err;
	/*
	 * Adopt the epoch of the core that granted, not the one we saw when
	 * asking: a core that started in between granted our request itself,
	 * and must not look like a restart. A core that started after the
	 * grant has a newer epoch, and we will ask again.
	 */
	d->seen_core_epoch = ck_pr_load_uint(&d->control->granted_epoch);
	d->attached = true;
	return 1;
}

int nc_phy_dev_handshake(struct nc_phy_dev *d, int timeout_ms)
{
	nc_phy_dev_request(d);
	int64_t deadline = now_ms() + timeout_ms;
	int got;
	while ((got = nc_phy_dev_granted(d)) == 0) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		nc_doorbell_wait(d->phy_bell, (int)(left < 100 ? left : 100));
	}
	return got < 0 ? got : 0;
}

bool nc_phy_dev_core_restarted(const struct nc_phy_dev *d)
{
	return ck_pr_load_uint(&d->control->core_epoch) != d->seen_core_epoch;
}

/* A descriptor from the core must name a whole buffer of the pool. */
static bool desc_in_pool(const struct nc_phy_dev *d, const struct nc_desc *x)
{
	uint64_t start = d->layout.pool;
	uint64_t end =
	    start + (uint64_t)d->params.buf_count * d->params.buf_size;
	return x->offset >= start && x->offset < end &&
	       (x->offset - start) % d->params.buf_size == 0 &&
	       x->length <= d->params.buf_size;
}

void *nc_phy_dev_rx_buffer(struct nc_phy_dev *d, struct nc_desc *desc)
{
	if (!d->attached)
		return NULL;
	while (d->stash_count == 0) {
		int n =
		    nc_ring_dequeue_batch(&d->rx_free, d->stash, NC_PHY_BATCH);
		if (n <= 0)
			return NULL;
		/* Drop anything that is not a whole pool buffer. */
		uint32_t kept = 0;
		for (int i = 0; i < n; i++)
			if (desc_in_pool(d, &d->stash[i]))
				d->stash[kept++] = d->stash[i];
		d->stash_count = kept;
	}
	*desc = d->stash[--d->stash_count];
	desc->length = d->params.buf_size;
	return nc_region_at(d->region, desc->offset, d->params.buf_size);
}

void nc_phy_dev_rx_commit(struct nc_phy_dev *d, struct nc_desc *desc,
                          uint32_t len)
{
	if (d->rx_pending_count == NC_PHY_BATCH)
		nc_phy_dev_flush(d);
	if (!d->attached || d->rx_pending_count == NC_PHY_BATCH) {
		/* The core is not keeping up: drop, keep the buffer. */
		nc_phy_dev_rx_drop(d, desc);
		return;
	}
	desc->length = len;
	d->rx_pending[d->rx_pending_count++] = *desc;
	d->control->phy.rx_packets++;
	d->control->phy.rx_bytes += len;
}

void nc_phy_dev_rx_unused(struct nc_phy_dev *d, const struct nc_desc *desc)
{
	if (d->attached && d->stash_count < NC_PHY_BATCH)
		d->stash[d->stash_count++] = *desc;
}

void nc_phy_dev_rx_drop(struct nc_phy_dev *d, struct nc_desc *desc)
{
	d->control->phy.rx_drop_no_buffer++;
	nc_phy_dev_rx_unused(d, desc);
}

int nc_phy_dev_tx(struct nc_phy_dev *d, struct nc_desc *out, unsigned max)
{
	if (!d->attached)
		return 0;
	if (max > NC_PHY_BATCH - d->tx_done_count)
		max = NC_PHY_BATCH - d->tx_done_count;
	int n = nc_ring_dequeue_batch(&d->tx_active, out, max);
	if (n < 0) {
		d->attached = false;
		return n;
	}
	int kept = 0;
	for (int i = 0; i < n; i++) {
		if (desc_in_pool(d, &out[i]))
			out[kept++] = out[i];
		else
			d->control->phy.tx_bad_desc++;
	}
	return kept;
}

void *nc_phy_dev_data(const struct nc_phy_dev *d, const struct nc_desc *desc)
{
	return nc_region_at(d->region, desc->offset, desc->length);
}

void nc_phy_dev_tx_done(struct nc_phy_dev *d, const struct nc_desc *desc)
{
	/* nc_phy_dev_tx never hands out more than tx_done has room for. */
	if (d->attached && d->tx_done_count < NC_PHY_BATCH)
		d->tx_done[d->tx_done_count++] = *desc;
}

/* Publishes as much of a private queue as fits; the rest stays queued.
 * Returns -NC_ECORRUPT if the core broke the ring. */
static int publish_some(struct nc_ring *ring, struct nc_desc *q,
                        uint32_t *count)
{
	if (*count == 0)
		return 0;
	int n = nc_ring_enqueue_batch(ring, q, *count);
	if (n < 0)
		return n;
	*count -= (uint32_t)n;
	memmove(q, q + n, *count * sizeof(*q));
	return n;
}

int nc_phy_dev_flush(struct nc_phy_dev *d)
{
	if (!d->attached)
		return 0;
	int a =
	    publish_some(&d->rx_active, d->rx_pending, &d->rx_pending_count);
	int b = publish_some(&d->tx_free, d->tx_done, &d->tx_done_count);
	if (a < 0 || b < 0) {
		d->attached = false;
		return -NC_ECORRUPT;
	}
	bool ring_core = nc_ring_needs_signal(&d->rx_active);
	ring_core |= nc_ring_needs_signal(&d->tx_free);
	ring_core |= nc_ring_needs_signal(&d->rx_free);
	ring_core |= nc_ring_needs_signal(&d->tx_active);
	if (ring_core)
		nc_doorbell_ring(d->core_bell);
	return 0;
}

bool nc_phy_dev_prepare_wait(struct nc_phy_dev *d)
{
	if (!d->attached || nc_phy_dev_core_restarted(d))
		return false;
	return nc_ring_prepare_wait(&d->tx_active);
}
