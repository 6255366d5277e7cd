/*
 * Clients: the core's side of each client region (proto/client_region.h).
 *
 * States. ATTACHED: the broker's fds came in on the fd channel and the
 * region mapped and checked as a client region (ctl.c keeps it until the
 * broker's CLIENT_ADD). ACTIVE: CLIENT_ADD made it so; its rings are
 * formatted (the client has not seen the region yet: the broker hands it
 * the fds only after our reply), its first TX buffers lent, its core
 * doorbell in the core's epoll set. BROKEN: it broke its region (a
 * descriptor or a ring index we refuse); nothing of it is served any more
 * and the next service pass removes it. RETIRING: the broker said it is
 * gone (CLIENT_REMOVE) while some of its streams still held bytes it had
 * written: as on process exit with the kernel, every socket is closed,
 * and those streams stay until lwIP has taken what was queued (RETIRE_MS
 * at most; then they are reset, never ended with a FIN after a cut). A
 * retiring client is out of the table: no request reaches it, a new
 * client may take its id, and at most MAX_RETIRING wait (the oldest goes
 * first). GONE: removed, by CLIENT_REMOVE or as broken: every socket
 * closed toward its peer, the sockets' states set to reset, the client
 * woken, the region unmapped, the fds closed.
 *
 * Ownership. The core owns every buffer of the pool (nc_pool). TX buffers
 * are a fixed set of min(ring_slots - 1, buf_count / 2), lent on the free
 * ring at activation and lent again each time one comes back consumed; the
 * free ring holds them all at once, so it always has room to take one
 * back. RX buffers are the rest: held by the core until it fills one and
 * lends it on a socket's rx ring, and taken back from the done ring.
 * buf_owner[] remembers, privately, what each lent buffer was lent as (TX,
 * or RX on channel N), so a buffer cannot come back as the other kind and
 * upset that arithmetic.
 *
 * Trust. The client is hostile. Params, layout, pool and ring handles are
 * private copies made at attach and never re-read. Each descriptor is
 * copied out of its ring once (nc_ring) and checked before use: it names
 * the exact start of a buffer lent for that purpose (nc_pool_accept and
 * buf_owner), its length fits the buffer, and aux is the channel it came
 * on (on the done ring: the channel the buffer was lent on). Anything else,
 * or an impossible ring index, breaks the client; it alone is disconnected.
 * The client's flags in the control block only ever earn it doorbells.
 *
 * Wake-ups, literally as proto/client_region.h says. Core to client: after
 * a pass that changed anything for the client (a ring, a state), one full
 * fence, then swap client_wants_wakeup to 0 and ring the client doorbell
 * if it was set: at most one doorbell per pass. Client to core: before
 * sleeping the core sets core_wants_wakeup in every region, fences, and
 * re-checks every ring and socket it could make progress on.
 *
 * Restart. Nothing survives the core. A restarted core knows no clients
 * until the broker adds them again, this time as ADOPTING: the client may
 * still be using the rings the dead core formatted, so they stay untouched
 * until the client lets go of them. The core announces a new core_epoch
 * and rings the client; once the client's client_epoch shows that epoch,
 * the core formats the rings, lends fresh TX buffers and publishes
 * ready_epoch (proto/client_region.h). An ADOPTING client has no sockets
 * and is served nothing else; a client that never lets go only keeps its
 * own slot until the broker removes it.
 *
 * What it does not do: sockets (sock.c), control messages (ctl.c), or
 * quotas (the broker sized the region; the core serves what it was given).
 */
#include "services/netcore/clients.h"
#include "services/common/log.h"

#include <ck_pr.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lwip/sys.h"

#include "services/netcore/sock.h"

#define NCI_OWNER_TX 0xffffu
#define DONE_BATCH   64
#define MAX_CLIENTS  1024
#define MAX_RETIRING 64    /* gone clients whose streams still send */
#define RETIRE_MS    30000 /* how long those streams may take */

_Static_assert(sizeof(struct nc_sock_state) == 64, "state layout is ABI");

struct nci_clients {
	struct nci_client **v;
	uint32_t n, cap;
	struct nci_client *retiring[MAX_RETIRING]; /* oldest first */
	uint32_t retiring_n;
	int epfd;
	struct nci_stats *stats;
	bool dirty; /* an lwIP callback touched a client socket */
};

/* The shm library's own errors all mean "not a usable client region". */
static int shm_errno(int err)
{
	return err <= -NC_EMAGIC ? -EINVAL : err;
}

static uint32_t buf_index(const struct nci_client *cl, const struct nc_desc *d)
{
	return (uint32_t)((d->offset - cl->layout.pool) / cl->params.buf_size);
}

/* ---------------------------------------------------------------- attach */

/* The broker is trusted but crashable: a bell that is not an eventfd
 * could block our write, so check it, and make it non-blocking anyway (a
 * no-op for nc_doorbell_create's eventfds). */
static bool is_eventfd(int fd)
{
	char path[64], target[32];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) /* no /proc on this host: O_NONBLOCK must do */
		return access("/proc/self/fd", F_OK) != 0;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static int check_bell(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || !is_eventfd(fd))
		return -EINVAL;
	return fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}

static int alloc_private(struct nci_client *cl)
{
	const struct nc_client_params *p = &cl->params;
	cl->chans = calloc(p->max_sockets, sizeof(*cl->chans));
	cl->buf_owner = calloc(p->buf_count, sizeof(*cl->buf_owner));
	uint32_t half = p->buf_count / 2;
	cl->tx_bufs = p->ring_slots - 1 < half ? p->ring_slots - 1 : half;
	cl->free_pending = calloc(cl->tx_bufs, sizeof(*cl->free_pending));
	if (!cl->chans || !cl->buf_owner || !cl->free_pending)
		return -ENOMEM;
	return 0;
}

/* Params from the header (checked by nc_client_region_params against the
 * mapped size), then everything derived from them, kept privately. */
static int bind_layout(struct nci_client *cl)
{
	int err = shm_errno(nc_client_region_params(&cl->region, &cl->params));
	if (err)
		return err;
	nc_client_layout(&cl->params, &cl->layout);
	uint64_t states_len =
	    (uint64_t)cl->params.max_sockets * sizeof(struct nc_sock_state);
	cl->control =
	    nc_region_at(&cl->region, cl->layout.control, sizeof(*cl->control));
	cl->states = nc_region_at(&cl->region, cl->layout.states, states_len);
	if (cl->control == NULL || cl->states == NULL)
		return -EINVAL;
	err = alloc_private(cl);
	if (err)
		return err;
	return shm_errno(nc_pool_init(&cl->pool, &cl->region, cl->layout.pool,
	                              cl->params.buf_count,
	                              cl->params.buf_size));
}

int nci_client_attach(struct nci_client **out, uint32_t id, uint32_t gen,
                      int memfd, int client_bell, int core_bell)
{
	*out = NULL;
	struct nci_client *cl = calloc(1, sizeof(*cl));
	if (cl == NULL) {
		close(memfd);
		close(client_bell);
		close(core_bell);
		return -ENOMEM;
	}
	cl->id = id;
	cl->gen = gen;
	nc_doorbell_adopt(&cl->client_bell, client_bell);
	nc_doorbell_adopt(&cl->core_bell, core_bell);
	struct nc_region_expect expect = {.kind = NC_CLIENT_REGION_KIND};
	int err = shm_errno(nc_region_attach(&cl->region, memfd, &expect));
	close(memfd); /* the region keeps its own dup */
	err = err ?: check_bell(client_bell);
	err = err ?: check_bell(core_bell);
	err = err ?: bind_layout(cl);
	if (err) {
		nci_client_free(cl);
		return err;
	}
	*out = cl;
	return 0;
}

void nci_client_free(struct nci_client *cl)
{
	if (cl == NULL)
		return;
	if (cl->chans != NULL) {
		for (uint32_t i = 0; i < cl->params.max_sockets; i++)
			free(cl->chans[i].rx_len);
	}
	free(cl->chans);
	free(cl->buf_owner);
	free(cl->free_pending);
	nc_pool_fini(&cl->pool);
	nc_region_close(&cl->region);
	nc_doorbell_close(&cl->client_bell);
	nc_doorbell_close(&cl->core_bell);
	free(cl);
}

/* -------------------------------------------------------- activation */

static int ring(struct nc_region *r, struct nc_ring *ring, uint64_t offset,
                uint32_t slots, enum nc_ring_role role)
{
	return nc_ring_format(r, offset, slots)
	           ?: nc_ring_attach(ring, r, offset, slots, role);
}

static int format_rings(struct nci_client *cl, uint32_t epoch)
{
	struct nc_region *r = &cl->region;
	const struct nc_client_layout *l = &cl->layout;
	uint32_t slots = cl->params.ring_slots;
	/* The client does not touch the region now (it has not seen it yet,
	 * or it let go for this epoch), so the shared words start clean
	 * whatever the broker or the old core left in them. */
	memset(cl->control, 0, sizeof(*cl->control));
	cl->control->core_epoch = epoch;
	cl->control->client_epoch = epoch;
	memset(cl->states, 0,
	       (size_t)cl->params.max_sockets * sizeof(*cl->states));
	int err =
	    ring(r, &cl->free_ring, l->free_ring, slots, NC_RING_PRODUCER);
	err = err
	          ?: ring(r, &cl->done_ring, l->done_ring, slots,
	                  NC_RING_CONSUMER);
	for (uint32_t i = 0; i < cl->params.max_sockets && !err; i++) {
		err = ring(r, &cl->chans[i].tx, nc_client_tx_ring(l, i), slots,
		           NC_RING_CONSUMER);
		err = err
		          ?: ring(r, &cl->chans[i].rx, nc_client_rx_ring(l, i),
		                  slots, NC_RING_PRODUCER);
	}
	return shm_errno(err);
}

/* Lends the queued TX buffers on the free ring, once per pass. */
static void flush_free(struct nci_client *cl)
{
	if (cl->free_pending_n == 0 || cl->broken)
		return;
	int n = nc_ring_enqueue_batch(&cl->free_ring, cl->free_pending,
	                              cl->free_pending_n);
	if (n < 0) {
		nci_client_fail(cl, "free ring index");
		return;
	}
	for (int i = 0; i < n; i++) {
		nc_pool_lend(&cl->pool, &cl->free_pending[i]);
		cl->buf_owner[buf_index(cl, &cl->free_pending[i])] =
		    NCI_OWNER_TX;
	}
	/* The ring has room for every TX buffer; only a client that moved
	 * its index back (within the invariant) leaves some for later. */
	cl->free_pending_n -= (uint32_t)n;
	memmove(cl->free_pending, cl->free_pending + n,
	        cl->free_pending_n * sizeof(*cl->free_pending));
	if (n > 0)
		cl->changed = true;
}

static void lend_first_tx(struct nci_client *cl)
{
	for (uint32_t i = 0; i < cl->tx_bufs; i++)
		nc_pool_get(&cl->pool, &cl->free_pending[cl->free_pending_n++]);
	flush_free(cl);
}

static int table_grow(struct nci_clients *t)
{
	if (t->n < t->cap)
		return 0;
	if (t->n >= MAX_CLIENTS)
		return -ENOSPC;
	uint32_t cap = t->cap ? t->cap * 2 : 8;
	struct nci_client **v = realloc(t->v, cap * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	t->v = v;
	t->cap = cap;
	return 0;
}

static void wake_client(struct nci_client *cl);

/* Rings formatted for `epoch`, the first TX buffers lent, then the epoch
 * published as ready. */
static void make_ready(struct nci_client *cl, uint32_t epoch)
{
	lend_first_tx(cl);
	/* Rings and lent buffers before the epoch. Pairs with the client's
	 * acquire load of ready_epoch before it attaches its rings. */
	ck_pr_fence_store();
	ck_pr_store_uint(&cl->control->ready_epoch, epoch);
	cl->changed = true;
}

static int table_insert(struct nci_clients *t, struct nci_client *cl)
{
	int err = table_grow(t);
	if (!err) {
		cl->bell_src.kind = NCI_SRC_BELL;
		cl->bell_src.fd = cl->core_bell.fd;
		err = nci_epoll_add(t->epfd, &cl->bell_src);
	}
	if (err) {
		nci_client_free(cl);
		return err;
	}
	cl->table = t;
	t->v[t->n++] = cl;
	t->stats->clients++;
	t->stats->clients_added++;
	return 0;
}

/* Takes cl out of whichever list holds it, keeping the retiring oldest
 * first. */
static void table_unlink(struct nci_clients *t, struct nci_client *cl)
{
	for (uint32_t i = 0; i < t->n; i++) {
		if (t->v[i] == cl) {
			t->v[i] = t->v[--t->n];
			return;
		}
	}
	for (uint32_t i = 0; i < t->retiring_n; i++) {
		if (t->retiring[i] == cl) {
			t->retiring_n--;
			memmove(&t->retiring[i], &t->retiring[i + 1],
			        (t->retiring_n - i) * sizeof(t->retiring[0]));
			return;
		}
	}
}

int nci_clients_add(struct nci_clients *t, struct nci_client *cl)
{
	int err = format_rings(cl, 1);
	if (err) {
		nci_client_free(cl);
		return err;
	}
	err = table_insert(t, cl);
	if (!err)
		make_ready(cl, 1);
	return err;
}

int nci_clients_adopt(struct nci_clients *t, struct nci_client *cl)
{
	/* The old epoch is the client's to scribble: any value will do, as
	 * long as ours differs from it and is never 0. */
	uint32_t epoch = ck_pr_load_uint(&cl->control->core_epoch) + 1;
	if (epoch == 0)
		epoch = 1;
	int err = table_insert(t, cl);
	if (err)
		return err;
	cl->adopt_epoch = epoch;
	ck_pr_store_uint(&cl->control->core_epoch, epoch);
	cl->changed = true;
	/* Rings the client even if it did not ask: it must learn of us. */
	ck_pr_store_uint(&cl->control->client_wants_wakeup, 1);
	wake_client(cl);
	t->stats->clients_adopted++;
	return 0;
}

/* ADOPTING: formats and goes ACTIVE once the client let go of the old
 * rings. True if it did. */
static bool adopt_progress(struct nci_client *cl)
{
	uint32_t epoch = cl->adopt_epoch;
	/* Pairs with the client's release store of client_epoch, made after
	 * its last access to the old rings. */
	if (ck_pr_load_uint(&cl->control->client_epoch) != epoch)
		return false;
	ck_pr_fence_load();
	if (format_rings(cl, epoch) != 0) {
		nci_client_fail(cl, "ring format on adoption");
		return false;
	}
	cl->adopt_epoch = 0;
	make_ready(cl, epoch);
	return true;
}

/* --------------------------------------------------------------- table */

struct nci_clients *nci_clients_create(int epfd, struct nci_stats *stats)
{
	struct nci_clients *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->epfd = epfd;
	t->stats = stats;
	return t;
}

void nci_clients_destroy(struct nci_clients *t)
{
	if (t == NULL)
		return;
	while (t->n > 0)
		nci_clients_remove(t, t->v[t->n - 1]);
	while (t->retiring_n > 0)
		nci_clients_remove(t, t->retiring[0]);
	free(t->v);
	free(t);
}

struct nci_client *nci_clients_find(struct nci_clients *t, uint32_t id)
{
	for (uint32_t i = 0; i < t->n; i++)
		if (t->v[i]->id == id)
			return t->v[i];
	return NULL;
}

struct nci_client *nci_clients_next(struct nci_clients *t, uint32_t after)
{
	struct nci_client *best = NULL;
	for (uint32_t i = 0; i < t->n; i++) {
		struct nci_client *cl = t->v[i];
		if (cl->id > after && (best == NULL || cl->id < best->id))
			best = cl;
	}
	return best;
}

/* Tells a client that is being dropped that its sockets are dead: the
 * region stays mapped on its side, so it can read why. */
static void publish_reset(struct nci_client *cl, uint32_t chan)
{
	struct nc_sock_state st = {
	    .gen = cl->chans[chan].gen,
	    .events = NC_EV_HUP | NC_EV_ERROR,
	    .error = ECONNRESET,
	    .phase = NC_SS_CLOSED,
	};
	nci_client_publish(cl, (int)chan, &st);
}

static void wake_client(struct nci_client *cl)
{
	if (!cl->changed)
		return;
	cl->changed = false;
	/*
	 * Rings and states before the flag. Pairs with the client's full
	 * fence between raising client_wants_wakeup and re-checking what it
	 * waits for (proto/client_region.h): either it sees our changes or
	 * we see its flag.
	 */
	ck_pr_fence_memory();
	if (ck_pr_fas_uint(&cl->control->client_wants_wakeup, 0) != 0)
		nc_doorbell_ring(&cl->client_bell);
}

void nci_clients_remove(struct nci_clients *t, struct nci_client *cl)
{
	for (uint32_t i = 0; i < cl->chans_used; i++) {
		struct nci_sock *s = cl->chans[i].sock;
		if (s == NULL)
			continue;
		nci_sock_destroy(s);
		cl->chans[i].sock = NULL;
		t->stats->sockets--;
		publish_reset(cl, i);
	}
	wake_client(cl);
	nci_epoll_del(t->epfd, &cl->bell_src);
	table_unlink(t, cl);
	t->stats->clients--;
	nci_client_free(cl);
}

static uint32_t sockets_left(const struct nci_client *cl)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < cl->chans_used; i++)
		n += cl->chans[i].sock != NULL;
	return n;
}

void nci_clients_retire(struct nci_clients *t, struct nci_client *cl)
{
	for (uint32_t i = 0; i < cl->chans_used && !cl->broken; i++) {
		struct nci_sock *s = cl->chans[i].sock;
		if (s != NULL)
			nci_sock_retire(s);
	}
	uint32_t left = sockets_left(cl);
	if (left == 0 || cl->broken) {
		nci_clients_remove(t, cl);
		return;
	}
	if (t->retiring_n == MAX_RETIRING)
		nci_clients_remove(t, t->retiring[0]);
	table_unlink(t, cl);
	cl->retire_deadline = sys_now() + RETIRE_MS;
	t->retiring[t->retiring_n++] = cl;
	nc_log(NC_LOG_INFO,
	       "client %u gone; streams still sending: %u; they finish "
	       "first (%d s at most)",
	       cl->id, left, RETIRE_MS / 1000);
}

/* ------------------------------------------------------------- service */

static bool take_done_desc(struct nci_client *cl, const struct nc_desc *d)
{
	if (d->aux >= cl->params.max_sockets ||
	    nc_pool_accept(&cl->pool, d) != 0)
		return false;
	return cl->buf_owner[buf_index(cl, d)] == d->aux;
}

/* RX buffers the client is done with: held again, for receiving. */
static void reap_done(struct nci_client *cl)
{
	struct nc_desc d[DONE_BATCH];
	int n;
	/* Ends: every accepted descriptor takes back a lent buffer. */
	while ((n = nc_ring_dequeue_batch(&cl->done_ring, d, DONE_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			if (!take_done_desc(cl, &d[i])) {
				nci_client_fail(cl, "done descriptor");
				return;
			}
			nc_pool_put(&cl->pool, &d[i]);
		}
		cl->changed = true; /* the client may wait for ring space */
	}
	if (n < 0)
		nci_client_fail(cl, "done ring index");
}

static void client_service(struct nci_client *cl, bool *more)
{
	reap_done(cl);
	for (uint32_t i = 0; i < cl->chans_used && !cl->broken; i++) {
		struct nci_sock *s = cl->chans[i].sock;
		if (s != NULL && nci_sock_service(s))
			*more = true;
	}
	flush_free(cl);
	if (!cl->broken)
		wake_client(cl);
}

/* Gone clients' streams send what is left; each client goes once they
 * are done, or resets them at its deadline. */
static void retiring_service(struct nci_clients *t, bool *more)
{
	for (uint32_t i = 0; i < t->retiring_n;) {
		struct nci_client *cl = t->retiring[i];
		if (!cl->broken)
			client_service(cl, more);
		uint32_t left = sockets_left(cl);
		bool late = (int32_t)(sys_now() - cl->retire_deadline) >= 0;
		if (left > 0 && !cl->broken && !late) {
			i++;
			continue;
		}
		if (left > 0 && late)
			nc_log(NC_LOG_WARN,
			       "client %u: %u streams not sent within %d s: "
			       "reset",
			       cl->id, left, RETIRE_MS / 1000);
		nci_clients_remove(t, cl); /* slides the rest down */
	}
}

bool nci_clients_service(struct nci_clients *t)
{
	bool more = false;
	for (uint32_t i = 0; i < t->n;) {
		struct nci_client *cl = t->v[i];
		if (cl->adopt_epoch != 0 && !cl->broken &&
		    !adopt_progress(cl)) {
			i++;
			continue;
		}
		if (!cl->broken)
			client_service(cl, &more);
		if (!cl->broken) {
			i++;
			continue;
		}
		/* Removal moves the last client into slot i. */
		t->stats->clients_broken++;
		nci_clients_remove(t, cl);
	}
	retiring_service(t, &more);
	return more;
}

static bool client_has_work(struct nci_client *cl)
{
	if (cl->adopt_epoch != 0)
		return cl->broken ||
		       ck_pr_load_uint(&cl->control->client_epoch) ==
		           cl->adopt_epoch;
	if (cl->broken || nc_ring_ready(&cl->done_ring) != 0)
		return true;
	for (uint32_t i = 0; i < cl->chans_used; i++) {
		struct nci_sock *s = cl->chans[i].sock;
		if (s != NULL && nci_sock_has_work(s))
			return true;
	}
	return false;
}

bool nci_clients_prepare_wait(struct nci_clients *t)
{
	for (uint32_t i = 0; i < t->n; i++)
		ck_pr_store_uint(&t->v[i]->control->core_wants_wakeup, 1);
	/*
	 * Flags before the re-check. Pairs with the client's full fence
	 * between publishing (a ring index) and swapping core_wants_wakeup:
	 * either we see its work now or it sees our flag and rings.
	 */
	ck_pr_fence_memory();
	for (uint32_t i = 0; i < t->n; i++) {
		if (client_has_work(t->v[i])) {
			nci_clients_woken(t);
			return false;
		}
	}
	for (uint32_t i = 0; i < t->retiring_n; i++)
		if (client_has_work(t->retiring[i]))
			return false;
	return !t->dirty;
}

void nci_clients_woken(struct nci_clients *t)
{
	/* We are awake and poll everything next: further doorbells would be
	 * wasted. Safe against a lost wake-up because prepare_wait raises
	 * the flag and re-checks again before any sleep. */
	for (uint32_t i = 0; i < t->n; i++)
		ck_pr_store_uint(&t->v[i]->control->core_wants_wakeup, 0);
}

void nci_clients_mark_dirty(struct nci_clients *t)
{
	t->dirty = true;
}

bool nci_clients_take_dirty(struct nci_clients *t)
{
	bool d = t->dirty;
	t->dirty = false;
	return d;
}

void nci_clients_count_phases(const struct nci_clients *t, uint64_t *counts,
                              unsigned n)
{
	for (uint32_t i = 0; i < t->n + t->retiring_n; i++) {
		const struct nci_client *cl =
		    i < t->n ? t->v[i] : t->retiring[i - t->n];
		for (uint32_t ch = 0; ch < cl->chans_used; ch++) {
			uint32_t phase = cl->chans[ch].shown.phase;
			if (cl->chans[ch].sock != NULL && phase < n)
				counts[phase]++;
		}
	}
}

struct nci_stats *nci_clients_stats(struct nci_clients *t)
{
	return t->stats;
}

/* ------------------------------------------------------- for sock.c */

void nci_client_fail(struct nci_client *cl, const char *why)
{
	if (!cl->broken)
		nc_log(NC_LOG_WARN, "client %u disconnected: %s", cl->id, why);
	cl->broken = true;
	cl->broken_why = why;
	nci_client_mark_dirty(cl);
}

void nci_client_mark_dirty(struct nci_client *cl)
{
	if (cl->table != NULL)
		cl->table->dirty = true;
}

struct nci_stats *nci_client_stats(struct nci_client *cl)
{
	return cl->table->stats;
}

/* Everything a closed socket's client still had queued on the tx ring. */
static int drop_stale_tx(struct nci_client *cl, int chan)
{
	struct nc_desc d[DONE_BATCH];
	int n;
	/* Ends: every accepted descriptor takes back a lent TX buffer, and
	 * those are lent again only at the end of the pass. */
	while ((n = nci_client_tx_take(cl, chan, d, DONE_BATCH)) > 0)
		for (int i = 0; i < n; i++)
			nci_client_tx_done(cl, &d[i]);
	return n;
}

int nci_client_chan_alloc(struct nci_client *cl)
{
	for (uint32_t i = 0; i < cl->params.max_sockets; i++) {
		struct nci_chan *ch = &cl->chans[i];
		if (ch->sock != NULL)
			continue;
		int room = nci_client_rx_room(cl, (int)i);
		if (room < 0)
			return -ECONNRESET;
		/* The last socket's data is still on the rx ring: the channel
		 * is not reusable until the client took it. */
		if ((uint32_t)room != ch->rx.mask)
			continue;
		if (ch->rx_len == NULL)
			ch->rx_len =
			    calloc(ch->rx.slots_count, sizeof(uint32_t));
		if (ch->rx_len == NULL)
			return -ENOMEM;
		if (drop_stale_tx(cl, (int)i) < 0)
			return -ECONNRESET;
		ch->rx_head = ch->rx.own_index;
		ch->rx_bytes = 0;
		return (int)i;
	}
	return -EMFILE;
}

static void write_state(struct nci_client *cl, int chan,
                        const struct nc_sock_state *st)
{
	struct nc_sock_state *sh = &cl->states[chan];
	ck_pr_store_uint((unsigned int *)&sh->error, (unsigned int)st->error);
	ck_pr_store_uint(&sh->phase, st->phase);
	ck_pr_store_uint(&sh->rx_queued, st->rx_queued);
	ck_pr_store_uint(&sh->accept_queue, st->accept_queue);
	ck_pr_store_uint(&sh->gen, st->gen);
	/*
	 * Fields before events. Pairs with the client's load fence between
	 * reading events and reading the other fields: a client that sees
	 * NC_EV_ERROR also sees the error.
	 */
	ck_pr_fence_store();
	ck_pr_store_uint(&sh->events, st->events);
	cl->chans[chan].shown = *st;
	cl->changed = true;
}

void nci_client_publish(struct nci_client *cl, int chan,
                        const struct nc_sock_state *st)
{
	struct nc_sock_state now = *st;
	now.gen = cl->chans[chan].gen;
	if (memcmp(&cl->chans[chan].shown, &now, sizeof(now)) != 0)
		write_state(cl, chan, &now);
}

uint32_t nci_client_chan_attach(struct nci_client *cl, int chan,
                                struct nci_sock *s)
{
	struct nci_chan *ch = &cl->chans[chan];
	ch->sock = s;
	ch->gen = ch->gen + 1 ? ch->gen + 1 : 1;
	if ((uint32_t)chan >= cl->chans_used)
		cl->chans_used = (uint32_t)chan + 1;
	struct nc_sock_state st = {.gen = ch->gen, .phase = NC_SS_OPEN};
	write_state(cl, chan, &st);
	cl->table->stats->sockets++;
	return ch->gen;
}

void nci_client_chan_release(struct nci_client *cl, int chan)
{
	struct nci_chan *ch = &cl->chans[chan];
	ch->sock = NULL;
	struct nc_sock_state st = {.gen = ch->gen, .phase = NC_SS_FREE};
	write_state(cl, chan, &st);
	cl->table->stats->sockets--;
}

struct nci_sock *nci_client_chan_sock(struct nci_client *cl, int32_t chan,
                                      uint32_t gen)
{
	if (chan < 0 || (uint32_t)chan >= cl->params.max_sockets)
		return NULL;
	struct nci_chan *ch = &cl->chans[chan];
	return ch->sock != NULL && ch->gen == gen ? ch->sock : NULL;
}

static bool take_tx_desc(struct nci_client *cl, int chan,
                         const struct nc_desc *d)
{
	if (d->aux != (uint32_t)chan || nc_pool_accept(&cl->pool, d) != 0)
		return false;
	return cl->buf_owner[buf_index(cl, d)] == NCI_OWNER_TX;
}

int nci_client_tx_take(struct nci_client *cl, int chan, struct nc_desc *out,
                       unsigned max)
{
	if (cl->broken)
		return -1;
	int n = nc_ring_dequeue_batch(&cl->chans[chan].tx, out, max);
	if (n < 0) {
		nci_client_fail(cl, "tx ring index");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		/* The accepted ones are dropped with the whole pool. */
		if (!take_tx_desc(cl, chan, &out[i])) {
			nci_client_fail(cl, "tx descriptor");
			return -1;
		}
	}
	if (n > 0)
		cl->changed = true; /* the client may wait for ring space */
	return n;
}

int nci_client_tx_ready(struct nci_client *cl, int chan)
{
	int n = nc_ring_ready(&cl->chans[chan].tx);
	if (n < 0)
		nci_client_fail(cl, "tx ring index");
	return n < 0 ? -1 : n;
}

void nci_client_tx_done(struct nci_client *cl, const struct nc_desc *d)
{
	if (cl->free_pending_n == cl->tx_bufs)
		flush_free(cl); /* cannot happen: there are tx_bufs buffers */
	struct nc_desc e = {.offset = d->offset, .length = cl->params.buf_size};
	if (cl->free_pending_n < cl->tx_bufs)
		cl->free_pending[cl->free_pending_n++] = e;
}

uint8_t *nci_client_data(struct nci_client *cl, const struct nc_desc *d)
{
	return nc_pool_data(&cl->pool, d);
}

uint32_t nci_client_buf_size(const struct nci_client *cl)
{
	return cl->params.buf_size;
}

int nci_client_rx_room(struct nci_client *cl, int chan)
{
	int n = nc_ring_space(&cl->chans[chan].rx);
	if (n < 0)
		nci_client_fail(cl, "rx ring index");
	return n < 0 ? -1 : n;
}

bool nci_client_rx_get(struct nci_client *cl, struct nc_desc *out)
{
	return nc_pool_get(&cl->pool, out) == 0;
}

bool nci_client_rx_available(const struct nci_client *cl)
{
	return cl->pool.free_count > 0;
}

void nci_client_rx_put(struct nci_client *cl, const struct nc_desc *d)
{
	nc_pool_put(&cl->pool, d);
}

int nci_client_rx_publish(struct nci_client *cl, int chan,
                          const struct nc_desc *d, unsigned n)
{
	struct nci_chan *ch = &cl->chans[chan];
	/*
	 * Retire what the client has read first, and publish no more than the
	 * slots we have retired: the ring may show more room (the client keeps
	 * reading), but a slot whose length we still count must not be
	 * overwritten, or rx_bytes drifts and a clean close turns into a reset.
	 */
	uint32_t bytes;
	uint32_t known = nci_client_rx_refresh(cl, chan, &bytes);
	if (known >= ch->rx.mask)
		return 0;
	if (n > ch->rx.mask - known)
		n = ch->rx.mask - known;
	/* The contract: every rx descriptor names its channel in aux, which
	 * the client checks. */
	struct nc_desc tagged[64];
	if (n > 64)
		n = 64;
	for (unsigned i = 0; i < n; i++) {
		tagged[i] = d[i];
		tagged[i].aux = (uint16_t)chan;
	}
	d = tagged;
	int sent = nc_ring_enqueue_batch(&ch->rx, d, n);
	if (sent < 0) {
		nci_client_fail(cl, "rx ring index");
		return -1;
	}
	uint32_t at = ch->rx.own_index - (uint32_t)sent;
	for (int i = 0; i < sent; i++, at++) {
		ch->rx_len[at & ch->rx.mask] = d[i].length;
		ch->rx_bytes += d[i].length;
		nc_pool_lend(&cl->pool, &d[i]);
		cl->buf_owner[buf_index(cl, &d[i])] = (uint16_t)chan;
	}
	if (sent > 0)
		cl->changed = true;
	return sent;
}

/* Descriptors the client may still hold on the rx ring, per the ring. */
static int rx_on_ring(struct nci_client *cl, int chan, uint32_t *known)
{
	struct nci_chan *ch = &cl->chans[chan];
	*known = ch->rx.own_index - ch->rx_head;
	int room = nci_client_rx_room(cl, chan);
	return room < 0 ? -1 : (int)(ch->rx.mask - (uint32_t)room);
}

uint32_t nci_client_rx_refresh(struct nci_client *cl, int chan, uint32_t *bytes)
{
	struct nci_chan *ch = &cl->chans[chan];
	uint32_t known;
	int on_ring = rx_on_ring(cl, chan, &known);
	/* A client that moves its index back (within the invariant) only
	 * claims to hold again what we counted as taken: ignored. */
	while (on_ring >= 0 && known > (uint32_t)on_ring) {
		ch->rx_bytes -= ch->rx_len[ch->rx_head & ch->rx.mask];
		ch->rx_head++;
		known--;
	}
	*bytes = ch->rx_bytes;
	return known;
}

bool nci_client_rx_consumed(struct nci_client *cl, int chan)
{
	uint32_t known;
	int on_ring = rx_on_ring(cl, chan, &known);
	return on_ring < 0 || known > (uint32_t)on_ring;
}
