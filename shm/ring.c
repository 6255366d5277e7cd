/*
 * Rings: single-producer, single-consumer descriptor rings on Concurrency
 * Kit's ck_ring, safe against a hostile peer.
 *
 * Layout. At the ring's offset in the region (64-byte aligned):
 *
 *   struct ck_ring      c_head | p_tail, p_head | size, mask   (3 lines)
 *   consumer flag       one cache line: "consumer wants a signal"
 *   producer flag       one cache line: "producer wants a signal"
 *   slots[n]            struct nc_desc, 16 bytes each
 *
 * ck_ring already puts the consumer's index (c_head) and the producer's
 * (p_tail) on separate cache lines, so the two sides never false-share.
 *
 * The invariant, stated once. Indices are free-running 32-bit counters;
 * slot i lives at slots[i & mask]. The producer owns p_tail and the slots
 * from p_tail up to (not including) c_head + mask + 1; the consumer owns
 * c_head and the slots from c_head up to p_tail. At all times
 *
 *     0 <= p_tail - c_head <= mask          (unsigned arithmetic)
 *
 * which is ck_ring's own rule (one slot stays empty, capacity = n - 1). A
 * producer writes slots and only then, after a store fence, advances p_tail;
 * a consumer reads p_tail, then, after a load fence, reads the slots, and
 * only after it has copied them advances c_head.
 *
 * Trust. struct ck_ring keeps size and mask beside the indices, in memory
 * the peer can write, and ck's functions read them on every call. So no
 * handle ever runs ck's functions on the shared struct. Each batch instead:
 *   1. loads the peer's index from the region once and checks it against
 *      the invariant (else NC_ECORRUPT, sticky);
 *   2. builds a *shadow* struct ck_ring on the stack from that index, our
 *      own private index, and the private size and mask;
 *   3. runs ck's spsc enqueue/dequeue on the shadow, with the slot array
 *      pointer the handle computed itself (so every slot access is masked
 *      by our mask and lands inside the region);
 *   4. publishes the shadow's updated own index to the region, once.
 * Our own index is therefore never re-read from shared memory after attach,
 * and the peer's is validated before it indexes anything. The same handle
 * serves the trusted and the untrusted side: a client is protected from a
 * broken core for free.
 *
 * Restart. A re-attaching endpoint takes its own index from the region once
 * (nc_ring_attach) and validates it against the peer's; what it cannot know
 * (whether the peer is mid-batch) is the ring user's protocol to settle.
 *
 * What it does not do: block (see the doorbell protocol in shm.h), or
 * interpret descriptors.
 */
#include "shm/shm.h"

#include <ck_pr.h>
#include <ck_ring.h>
#include <errno.h>
#include <stddef.h>

CK_RING_PROTOTYPE(nc_desc, nc_desc)

#define NCI_CACHELINE 64
#define NCI_MAX_SLOTS (1u << 24)

struct nci_ring_shared {
	struct ck_ring indices;
	_Alignas(NCI_CACHELINE) uint32_t consumer_wants_signal;
	_Alignas(NCI_CACHELINE) uint32_t producer_wants_signal;
	_Alignas(NCI_CACHELINE) struct nc_desc slots[];
};

_Static_assert(sizeof(struct nc_desc) == 16, "descriptor layout is ABI");
_Static_assert(offsetof(struct ck_ring, p_tail) >= NCI_CACHELINE,
               "producer and consumer indices must not share a cache line");

static bool slots_valid(uint32_t slots)
{
	return slots >= 2 && slots <= NCI_MAX_SLOTS &&
	       (slots & (slots - 1)) == 0;
}

size_t nc_ring_footprint(uint32_t slots)
{
	if (!slots_valid(slots))
		return 0;
	return sizeof(struct nci_ring_shared) +
	       (size_t)slots * sizeof(struct nc_desc);
}

static struct nci_ring_shared *ring_at(struct nc_region *r, uint64_t offset,
                                       uint32_t slots)
{
	size_t size = nc_ring_footprint(slots);
	if (size == 0 || offset % NCI_CACHELINE != 0)
		return NULL;
	return nc_region_at(r, offset, size);
}

int nc_ring_format(struct nc_region *r, uint64_t offset, uint32_t slots)
{
	struct nci_ring_shared *s = ring_at(r, offset, slots);
	if (s == NULL)
		return -NC_ELAYOUT;
	ck_ring_init(&s->indices, slots);
	s->consumer_wants_signal = 0;
	s->producer_wants_signal = 0;
	return 0;
}

/* Distance from consumer to producer if it obeys the invariant, else -1. */
static int64_t checked_fill(const struct nc_ring *ring, uint32_t p_tail,
                            uint32_t c_head)
{
	uint32_t fill = p_tail - c_head;
	return fill <= ring->mask ? (int64_t)fill : -1;
}

static int64_t mark_corrupt(struct nc_ring *ring)
{
	ring->corrupt = true;
	return -NC_ECORRUPT;
}

/* Fill level from one load of the peer's index; negative if corrupt. */
static int64_t snapshot_fill(struct nc_ring *ring, uint32_t *peer_index)
{
	if (ring->corrupt)
		return -NC_ECORRUPT;
	int64_t fill;
	if (ring->role == NC_RING_PRODUCER) {
		*peer_index = ck_pr_load_uint(&ring->shared->c_head);
		fill = checked_fill(ring, ring->own_index, *peer_index);
	} else {
		*peer_index = ck_pr_load_uint(&ring->shared->p_tail);
		fill = checked_fill(ring, *peer_index, ring->own_index);
	}
	return fill < 0 ? mark_corrupt(ring) : fill;
}

int nc_ring_attach(struct nc_ring *ring, struct nc_region *r, uint64_t offset,
                   uint32_t slots, enum nc_ring_role role)
{
	struct nci_ring_shared *s = ring_at(r, offset, slots);
	if (s == NULL || (role != NC_RING_PRODUCER && role != NC_RING_CONSUMER))
		return -NC_ELAYOUT;
	ring->shared = &s->indices;
	ring->slots = s->slots;
	ring->consumer_wants_signal = &s->consumer_wants_signal;
	ring->producer_wants_signal = &s->producer_wants_signal;
	ring->slots_count = slots;
	ring->mask = slots - 1;
	ring->role = role;
	ring->corrupt = false;
	ring->own_index = role == NC_RING_PRODUCER
	                      ? ck_pr_load_uint(&s->indices.p_tail)
	                      : ck_pr_load_uint(&s->indices.c_head);
	uint32_t peer;
	int64_t fill = snapshot_fill(ring, &peer);
	return fill < 0 ? (int)fill : 0;
}

/* A private ck_ring whose indices mirror the shared ones, checked. */
static void shadow_init(const struct nc_ring *ring, struct ck_ring *shadow,
                        uint32_t p_tail, uint32_t c_head)
{
	shadow->c_head = c_head;
	shadow->p_tail = p_tail;
	shadow->p_head = p_tail;
	shadow->size = ring->slots_count;
	shadow->mask = ring->mask;
}

int nc_ring_enqueue_batch(struct nc_ring *ring, const struct nc_desc *descs,
                          unsigned int n)
{
	uint32_t c_head;
	if (ring->role != NC_RING_PRODUCER)
		return -EINVAL;
	int64_t fill = snapshot_fill(ring, &c_head);
	if (fill < 0)
		return (int)fill;
	/*
	 * Pairs with the load/store fence in nc_ring_dequeue_batch before the
	 * consumer publishes c_head: the consumer finished copying the slots
	 * we are about to overwrite before it freed them.
	 */
	ck_pr_fence_load_store();

	struct ck_ring shadow;
	shadow_init(ring, &shadow, ring->own_index, c_head);
	unsigned int done = 0;
	while (done < n) {
		struct nc_desc d = descs[done];
		if (!ck_ring_enqueue_spsc_nc_desc(&shadow, ring->slots, &d))
			break;
		done++;
	}
	if (done == 0)
		return 0;
	/*
	 * Slots before index. Pairs with the load fence in
	 * nc_ring_dequeue_batch after the consumer reads p_tail. (ck's own
	 * enqueue fences only order stores to the shadow; this orders them
	 * before the store the peer actually reads.)
	 */
	ck_pr_fence_store();
	ck_pr_store_uint(&ring->shared->p_tail, shadow.p_tail);
	ring->own_index = shadow.p_tail;
	return (int)done;
}

int nc_ring_dequeue_batch(struct nc_ring *ring, struct nc_desc *out,
                          unsigned int max)
{
	uint32_t p_tail;
	if (ring->role != NC_RING_CONSUMER)
		return -EINVAL;
	int64_t fill = snapshot_fill(ring, &p_tail);
	if (fill <= 0)
		return (int)fill;
	/*
	 * Index before slots. Pairs with the store fence in
	 * nc_ring_enqueue_batch before the producer publishes p_tail.
	 */
	ck_pr_fence_load();

	struct ck_ring shadow;
	shadow_init(ring, &shadow, p_tail, ring->own_index);
	unsigned int done = 0;
	while (done < max &&
	       ck_ring_dequeue_spsc_nc_desc(&shadow, ring->slots, &out[done]))
		done++;
	/*
	 * Copies before freeing the slots. Pairs with the load/store fence in
	 * nc_ring_enqueue_batch after the producer reads c_head.
	 */
	ck_pr_fence_load_store();
	ck_pr_store_uint(&ring->shared->c_head, shadow.c_head);
	ring->own_index = shadow.c_head;
	return (int)done;
}

int nc_ring_ready(struct nc_ring *ring)
{
	uint32_t peer;
	int64_t fill = snapshot_fill(ring, &peer);
	return (int)fill;
}

int nc_ring_space(struct nc_ring *ring)
{
	uint32_t peer;
	int64_t fill = snapshot_fill(ring, &peer);
	return fill < 0 ? (int)fill : (int)(ring->mask - (uint32_t)fill);
}

/* The flag this endpoint raises when it wants to sleep. */
static uint32_t *own_wait_flag(const struct nc_ring *ring)
{
	return ring->role == NC_RING_CONSUMER ? ring->consumer_wants_signal
	                                      : ring->producer_wants_signal;
}

/* The flag the peer raises; we answer it after a batch. */
static uint32_t *peer_wait_flag(const struct nc_ring *ring)
{
	return ring->role == NC_RING_CONSUMER ? ring->producer_wants_signal
	                                      : ring->consumer_wants_signal;
}

static bool has_work(struct nc_ring *ring)
{
	int avail = ring->role == NC_RING_CONSUMER ? nc_ring_ready(ring)
	                                           : nc_ring_space(ring);
	/* A corrupt ring is "work": the caller must see the error, not sleep.
	 */
	return avail != 0;
}

bool nc_ring_prepare_wait(struct nc_ring *ring)
{
	uint32_t *flag = own_wait_flag(ring);
	ck_pr_store_uint(flag, 1);
	/*
	 * Flag before re-check (store-load). Pairs with the full fence in
	 * nc_ring_needs_signal between the signaller's index store and its
	 * swap of this flag.
	 */
	ck_pr_fence_memory();
	if (has_work(ring)) {
		ck_pr_store_uint(flag, 0);
		return false;
	}
	return true;
}

bool nc_ring_needs_signal(struct nc_ring *ring)
{
	/*
	 * Index before flag (store-load). Pairs with the full fence in
	 * nc_ring_prepare_wait between the waiter's flag store and its
	 * re-check of our index.
	 */
	ck_pr_fence_memory();
	/* Any non-zero value is a request: a peer that scribbles the flag can
	 * only earn itself extra doorbells, at most one per batch. */
	return ck_pr_fas_uint(peer_wait_flag(ring), 0) != 0;
}
