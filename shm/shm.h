/*
 * shm: shared-memory regions, descriptor rings, buffer pools and doorbells.
 *
 * Every netcore service talks to every other through this library. A region
 * is a sealed memfd that one owner creates and peers map. Inside it live
 * rings of fixed-size descriptors (offsets, never pointers) and pools of
 * fixed-size buffers that the descriptors point into. Doorbells are eventfds,
 * so a waiter can sleep in poll/epoll beside its own file descriptors.
 *
 * Trust. Any peer may be hostile or broken. Every handle in this library
 * keeps the facts it relies on (ring size and mask, its own index, pool
 * geometry, which buffers it lent) in private memory, reads each shared index
 * once per batch, validates it, and copies descriptors out before anyone
 * looks at them. A peer that scribbles shared memory can only make calls
 * return NC_ECORRUPT; it can never make us read or write outside the region.
 *
 * Public names are nc_*; nothing here starts threads or allocates on the
 * data path. See docs/architecture.md for the layouts and the protocols.
 */
#ifndef NETCORE_SHM_H
#define NETCORE_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ck_ring; /* Concurrency Kit's ring indices; see ring.c */

/* Every call that can fail returns a negative number: -errno for a system
 * error, or minus one of these (so "returns NC_ELAYOUT" below means
 * -NC_ELAYOUT). */
enum nc_shm_error {
	NC_EMAGIC = 10001,   /* region header magic is wrong */
	NC_EVERSION = 10002, /* region layout version is not ours */
	NC_ESIZE = 10003, /* region size differs from header or expectation */
	NC_EGENERATION = 10004, /* region was re-initialised since we looked */
	NC_ESEALS = 10005,      /* memfd not sealed against resizing */
	NC_EKIND = 10006,       /* region is of another kind than expected */
	NC_ECORRUPT =
	    10007,          /* the peer broke the shared state: disconnect it */
	NC_ELAYOUT = 10008, /* a requested layout does not fit or is invalid */
};

/* Human-readable text for any error this library returns (never NULL). */
const char *nc_shm_strerror(int err);

/* ---------------------------------------------------------------- region */

#define NC_REGION_MAGIC   0x4e435247u /* "NCRG" */
#define NC_REGION_VERSION 1u

/*
 * The header at offset 0 of every region. The owner writes it; attachers
 * check it. It is as untrusted as the rest of the region once peers map it:
 * an attacher compares it with what it expects and keeps its own copy.
 */
struct nc_region_header {
	uint32_t magic;
	uint32_t version;
	uint32_t kind; /* what the region holds (set by the user) */
	uint32_t header_size;
	uint64_t size;       /* total bytes, equal to the memfd size */
	uint64_t generation; /* bumped whenever the owner re-initialises it */
	uint64_t layout[6];  /* kind-specific parameters, e.g. ring sizes */
};

struct nc_region {
	int fd;      /* the memfd; owned by this handle */
	void *base;  /* mapping of the whole region */
	size_t size; /* private copy, never re-read from the header */
	uint32_t kind;
	uint64_t generation; /* as seen when created or attached */
};

/* What an attacher expects; zero fields are not checked except magic and
 * version, which are always checked. */
struct nc_region_expect {
	uint32_t kind;
	size_t size;
	uint64_t generation;
};

/*
 * Creates a region of `size` bytes (rounded up to the page size), sealed
 * against growing and shrinking, with a fresh header of `kind` and
 * generation 1. `name` labels the memfd in /proc for debugging.
 * Returns 0 or -errno.
 */
int nc_region_create(struct nc_region *r, const char *name, size_t size,
                     uint32_t kind);

/*
 * Maps a region from a memfd we were handed (the fd is dup'ed; the caller
 * keeps its own). Refuses, with a distinct error, a memfd that is not sealed,
 * and a header whose magic, version, size, kind or generation is not what
 * `expect` says. Returns 0 or a negative error.
 */
int nc_region_attach(struct nc_region *r, int fd,
                     const struct nc_region_expect *expect);

/*
 * Owner only: zeroes everything after the header and bumps the generation,
 * so that attachers holding the old generation are refused. Returns the new
 * generation.
 */
uint64_t nc_region_reinit(struct nc_region *r);

/*
 * A region kind records its parameters (ring sizes, buffer counts...) in
 * the header's layout words, so that every party computes the same layout.
 * set: the owner, at creation; get: anyone, checking each word fits 32 bits
 * (-NC_ELAYOUT otherwise). At most 6 words.
 */
void nc_region_set_params(struct nc_region *r, const uint32_t *words,
                          unsigned n);
int nc_region_get_params(const struct nc_region *r, uint32_t *words,
                         unsigned n);

/* Rounds v up to a multiple of a (a > 0); for computing layouts. */
static inline uint64_t nc_align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Unmaps and closes. Safe on a handle whose create or attach failed, and on
 * one already closed (they hold fd -1); not on a merely zeroed struct. */
void nc_region_close(struct nc_region *r);

/* The header, for reading the layout parameters (untrusted for an owner). */
struct nc_region_header *nc_region_header(const struct nc_region *r);

/*
 * A pointer to `len` bytes at `offset`, or NULL if that range is not wholly
 * inside the region. Offsets from a peer go through here (or through a pool).
 */
void *nc_region_at(const struct nc_region *r, uint64_t offset, uint64_t len);

/* ---------------------------------------------------------------- rings */

/*
 * A ring carries these by value. What offset and length mean is up to the
 * user of the ring (a pool buffer, a sequence number, an opcode); flags and
 * aux are free for the user too.
 */
struct nc_desc {
	uint64_t offset;
	uint32_t length;
	uint16_t flags;
	uint16_t aux;
};

/* Bytes a ring of `slots` descriptors takes in a region (slots: power of 2,
 * at least 2, at most 2^24). 0 if `slots` is invalid. */
size_t nc_ring_footprint(uint32_t slots);

/*
 * Lays out an empty ring at `offset` in a region. Done once by the region's
 * owner before any endpoint attaches. Returns 0 or NC_ELAYOUT.
 */
int nc_ring_format(struct nc_region *r, uint64_t offset, uint32_t slots);

enum nc_ring_role { NC_RING_PRODUCER = 1, NC_RING_CONSUMER = 2 };

/*
 * One endpoint of a single-producer, single-consumer ring. Private memory;
 * never shared. Exactly one producer handle and one consumer handle may be
 * attached to a ring at a time (the _spsc contract): that is the caller's
 * promise, and the library cannot check it across processes.
 */
struct nc_ring {
	struct ck_ring *shared;          /* indices in the region */
	struct nc_desc *slots;           /* slot array in the region */
	uint32_t *consumer_wants_signal; /* request flags in the region */
	uint32_t *producer_wants_signal;
	uint32_t slots_count; /* private: never re-read from the region */
	uint32_t mask;        /* private */
	uint32_t own_index;   /* private, authoritative: our side's index */
	enum nc_ring_role role;
	bool corrupt; /* sticky once the peer broke the ring */
};

/*
 * Attaches one endpoint to the ring laid out at `offset` with `slots` slots.
 * The slot count comes from the caller's own knowledge (its config or the
 * layout it computed), never from the region. Our own index is taken from
 * the region once, here, and checked against the peer's.
 * Returns 0, NC_ELAYOUT, or NC_ECORRUPT.
 */
int nc_ring_attach(struct nc_ring *ring, struct nc_region *r, uint64_t offset,
                   uint32_t slots, enum nc_ring_role role);

/*
 * Producer: appends up to `n` descriptors, in order, and publishes them with
 * one index store. Returns how many were appended (0 when full), or
 * NC_ECORRUPT if the consumer's index is impossible.
 */
int nc_ring_enqueue_batch(struct nc_ring *ring, const struct nc_desc *descs,
                          unsigned int n);

/*
 * Consumer: copies up to `max` descriptors out of the ring into private
 * memory and frees their slots with one index store. Returns how many were
 * taken (0 when empty), or NC_ECORRUPT if the producer's index is impossible.
 * The copies are still the peer's bytes: validate before use.
 */
int nc_ring_dequeue_batch(struct nc_ring *ring, struct nc_desc *out,
                          unsigned int max);

/* Descriptors ready (consumer) or slots free (producer), from one snapshot of
 * the peer's index; NC_ECORRUPT if it is impossible. */
int nc_ring_ready(struct nc_ring *ring);
int nc_ring_space(struct nc_ring *ring);

/*
 * The wake-up protocol (docs/architecture.md, "Doorbells"), literally:
 *
 *   waiter (wants work)                    signaller (just made work)
 *   1. flag = 1                            1. publish index
 *   2. full fence  <------- pairs ------>  2. full fence
 *   3. re-check ring; if work: flag = 0,   3. if swap(flag, 0) == 1:
 *      do the work                                ring the doorbell
 *   4. else sleep on the doorbell
 *
 * Either the waiter's re-check sees the signaller's index, or the
 * signaller's swap sees the waiter's flag (or both): a wake-up cannot be
 * lost. The swap makes each request cost at most one doorbell.
 *
 * Consumers wait for descriptors, producers wait for free slots; each has
 * its own flag. nc_ring_prepare_wait() does steps 1-3 for the caller's role
 * and returns true if the caller may sleep now (false: work appeared; the
 * request was cancelled). nc_ring_needs_signal() does signaller steps 2-3
 * after a batch: true means ring the peer's doorbell.
 */
bool nc_ring_prepare_wait(struct nc_ring *ring);
bool nc_ring_needs_signal(struct nc_ring *ring);

/* ---------------------------------------------------------------- pools */

/*
 * A pool of `count` buffers of `buf_size` bytes each at `offset` in a region,
 * managed by the buffers' owner (the trusted side). The owner tracks, in
 * private memory, which buffers it lent to its peer; a descriptor coming back
 * is accepted only if it names a lent buffer exactly (aligned offset, length
 * within the buffer). Buffers change hands through a pair of rings, as in the
 * seL4 device driver framework: lend = enqueue to the peer, take back =
 * dequeue from the peer + nc_pool_accept().
 */
struct nc_pool {
	struct nc_region *region;
	uint64_t offset;
	uint32_t count;
	uint32_t buf_size;
	uint8_t *state;      /* private: per buffer, owner-held or lent */
	uint32_t *free_list; /* private stack of owner-held buffer indices */
	uint32_t free_count;
	uint32_t lent_count;
};

size_t nc_pool_footprint(uint32_t count, uint32_t buf_size);

/* Starts with every buffer held by the owner. Allocates the private state
 * once, here. Returns 0, NC_ELAYOUT or -ENOMEM. */
int nc_pool_init(struct nc_pool *p, struct nc_region *r, uint64_t offset,
                 uint32_t count, uint32_t buf_size);
void nc_pool_fini(struct nc_pool *p);

/* Takes a buffer the owner holds: a descriptor covering all of it. Returns
 * 0, or -ENOBUFS when the owner holds none. */
int nc_pool_get(struct nc_pool *p, struct nc_desc *out);

/* Returns a held buffer to the owner's free stack (the owner is done). */
int nc_pool_put(struct nc_pool *p, const struct nc_desc *d);

/* Marks a held buffer as lent, just before enqueueing it to the peer. */
int nc_pool_lend(struct nc_pool *p, const struct nc_desc *d);

/*
 * Validates a descriptor the peer sent back: the offset must name the start
 * of a buffer of this pool that is lent, and the length must fit the
 * buffer. On success the buffer is held by the owner again. Returns 0 or
 * NC_ECORRUPT (the descriptor is ignored; nothing changes hands).
 */
int nc_pool_accept(struct nc_pool *p, const struct nc_desc *d);

/* The peer is gone: every lent buffer is held by the owner again. Returns how
 * many were taken back. */
uint32_t nc_pool_reclaim_all(struct nc_pool *p);

/* Data of a buffer the caller holds (validated by get/accept). */
void *nc_pool_data(const struct nc_pool *p, const struct nc_desc *d);

/* ------------------------------------------------------------- doorbells */

/* An eventfd. Its fd can sit in poll/epoll; ringing is one write(2). */
struct nc_doorbell {
	int fd;
};

int nc_doorbell_create(struct nc_doorbell *db);
/* Wraps an eventfd we were handed (the handle takes ownership). */
void nc_doorbell_adopt(struct nc_doorbell *db, int fd);
int nc_doorbell_ring(struct nc_doorbell *db);
/* Clears pending rings without blocking. Returns 0 or -errno. */
int nc_doorbell_drain(struct nc_doorbell *db);
/* Sleeps until rung or `timeout_ms` passes (-1: forever). Returns 1 if rung
 * (and drained), 0 on timeout, -errno on error. */
int nc_doorbell_wait(struct nc_doorbell *db, int timeout_ms);
void nc_doorbell_close(struct nc_doorbell *db);

#endif /* NETCORE_SHM_H */
