/*
 * Fuzzes the descriptor rings against a hostile peer: a trusted producer
 * and a trusted consumer handle share a ring whose bytes the input may
 * overwrite at any time, as a peer mapping the region could.
 *
 * Input: 14 setup bytes, then a program.
 *   byte 0     slots = 2 << (b % 8), so 2 to 256
 *   byte 1     bits 0-1: where the indices start (0, just below 2^32, from
 *              the input, just below 2^31); bit 2: initial fill taken raw
 *              (may be impossible) rather than modulo the slot count;
 *              bit 3: the consumer attaches first
 *   byte 2     bit 0: probe nc_ring_attach with the layout below; bit 1:
 *              its slot count is a power of two; bit 2: its offset is a
 *              multiple of 64
 *   4, 1       start index (mode 2), initial fill
 *   4, 2       probe slot count and offset
 *   program    op bytes (op % 12) and their arguments: enqueue n, dequeue
 *              max, ready, space, prepare_wait and needs_signal on either
 *              side, scribble (offset, length, bytes) anywhere in the ring's
 *              footprint, and targeted index scribbles
 *
 * Properties, checked after every operation:
 *   - counts are never larger than requested or than the capacity, and the
 *     library writes no more descriptors than asked for (ASan: exact-size
 *     heap buffers);
 *   - once a handle returned NC_ECORRUPT, every later count it returns is
 *     NC_ECORRUPT, and prepare_wait never lets it sleep;
 *   - every result equals a reference model that reads the peer's index
 *     the way shm.h describes: fill = p_tail - c_head, corrupt when above
 *     the mask, own indices private (so scribbling size, mask, p_head or
 *     padding changes nothing);
 *   - while no scribble moved an index, the ring is a FIFO: a private queue
 *     of what was enqueued matches what is dequeued, in order and content;
 *   - the library writes nothing outside the ring's footprint (canary
 *     bytes around it), and the ring ends at, or within 64 bytes of, the
 *     end of the mapping, so running off its end is likely to fault.
 */
#include "shm/shm.h"
#include "tools/fuzz/fuzz.h"

#include <ck_ring.h>
#include <errno.h>
#include <stdbool.h>

enum { MAX_SLOTS = 256, CANARY = 0xa5 };

struct endpoint {
	struct nc_ring h;
	uint32_t own;     /* the model's copy of the handle's private index */
	bool corrupt;     /* the model says the handle must be corrupt */
	bool saw_corrupt; /* the handle returned NC_ECORRUPT */
};

struct state {
	struct nc_region region;
	uint8_t *ring_base; /* the ring's footprint in the region */
	size_t footprint;
	struct ck_ring *sh; /* the shared indices, as the peer sees them */
	struct nc_desc *slots;
	uint32_t slots_count, mask;
	struct endpoint prod, cons;
	uint64_t seq; /* numbers descriptors, so each is unique */
	/* The FIFO model: valid while `clean`. */
	bool clean;
	struct nc_desc fifo[MAX_SLOTS];
	uint32_t fifo_head, fifo_len;
};

static bool desc_eq(const struct nc_desc *a, const struct nc_desc *b)
{
	return a->offset == b->offset && a->length == b->length &&
	       a->flags == b->flags && a->aux == b->aux;
}

/* Fill as the handle must see it now, or -1 if the peer's index is
 * impossible. */
static int64_t model_fill(const struct state *s, const struct endpoint *ep)
{
	uint32_t fill =
	    ep == &s->prod ? ep->own - s->sh->c_head : s->sh->p_tail - ep->own;
	return fill <= s->mask ? (int64_t)fill : -1;
}

/*
 * What a count-returning call must return: the fill or NC_ECORRUPT (and
 * the model's handle turns corrupt for good).
 */
static int64_t model_snapshot(struct state *s, struct endpoint *ep)
{
	if (ep->corrupt)
		return -NC_ECORRUPT;
	int64_t fill = model_fill(s, ep);
	if (fill < 0) {
		ep->corrupt = true;
		s->clean = false;
		return -NC_ECORRUPT;
	}
	return fill;
}

/* The checks every count-returning call gets, whatever the model says. */
static void check_count(struct state *s, struct endpoint *ep, int ret,
                        unsigned int requested)
{
	if (ep->saw_corrupt)
		FUZZ_CHECK(ret == -NC_ECORRUPT);
	if (ret == -NC_ECORRUPT) {
		ep->saw_corrupt = true;
		return;
	}
	FUZZ_CHECK(ret >= 0);
	FUZZ_CHECK((unsigned int)ret <= requested);
	FUZZ_CHECK((uint32_t)ret <= s->mask);
}

static void check_handle(const struct state *s, const struct endpoint *ep)
{
	FUZZ_CHECK(ep->h.own_index == ep->own);
	FUZZ_CHECK(ep->h.corrupt == ep->corrupt);
	FUZZ_CHECK(ep->h.slots_count == s->slots_count);
	FUZZ_CHECK(ep->h.mask == s->mask);
}

static struct nc_desc next_desc(struct state *s)
{
	uint64_t n = s->seq++;
	struct nc_desc d = {
	    .offset = n,
	    .length = (uint32_t)(n * 2654435761u),
	    .flags = (uint16_t)(n >> 3),
	    .aux = (uint16_t)~n,
	};
	return d;
}

static void op_enqueue(struct state *s, unsigned int n)
{
	struct endpoint *ep = &s->prod;
	/* Exactly n descriptors: ASan catches a read of one more. */
	struct nc_desc *descs = malloc(n ? n * sizeof(*descs) : 1);
	FUZZ_CHECK(descs != NULL);
	for (unsigned int i = 0; i < n; i++)
		descs[i] = next_desc(s);
	int64_t fill = model_snapshot(s, ep);
	int64_t want = fill;
	if (fill >= 0)
		want = n < s->mask - fill ? n : s->mask - fill;
	uint32_t p_tail_before = s->sh->p_tail;

	int ret = nc_ring_enqueue_batch(&ep->h, descs, n);
	check_count(s, ep, ret, n);
	FUZZ_CHECK(ret == want);
	if (ret > 0) {
		for (int i = 0; i < ret; i++)
			FUZZ_CHECK(desc_eq(&s->slots[(ep->own + i) & s->mask],
			                   &descs[i]));
		ep->own += (uint32_t)ret;
		FUZZ_CHECK(s->sh->p_tail == ep->own);
	} else if (ret == 0) {
		FUZZ_CHECK(s->sh->p_tail == p_tail_before ||
		           s->sh->p_tail == ep->own);
	}
	if (s->clean) {
		uint32_t room = s->mask - s->fifo_len;
		FUZZ_CHECK(ret == (int)(n < room ? n : room));
		for (int i = 0; i < ret; i++) {
			uint32_t at = (s->fifo_head + s->fifo_len) % MAX_SLOTS;
			s->fifo[at] = descs[i];
			s->fifo_len++;
		}
	}
	free(descs);
}

static void op_dequeue(struct state *s, unsigned int max)
{
	struct endpoint *ep = &s->cons;
	/* Exactly max slots: ASan catches a write of one more. */
	struct nc_desc *out = malloc(max ? max * sizeof(*out) : 1);
	struct nc_desc *want_descs = malloc(max ? max * sizeof(*out) : 1);
	FUZZ_CHECK(out != NULL && want_descs != NULL);
	int64_t fill = model_snapshot(s, ep);
	int64_t want = fill;
	if (fill >= 0)
		want = max < fill ? max : fill;
	for (int64_t i = 0; i < want; i++)
		want_descs[i] = s->slots[(ep->own + (uint32_t)i) & s->mask];
	uint32_t c_head_before = s->sh->c_head;

	int ret = nc_ring_dequeue_batch(&ep->h, out, max);
	check_count(s, ep, ret, max);
	FUZZ_CHECK(ret == want);
	for (int i = 0; i < ret; i++)
		FUZZ_CHECK(desc_eq(&out[i], &want_descs[i]));
	if (ret >= 0) {
		ep->own += (uint32_t)ret;
		FUZZ_CHECK(s->sh->c_head == ep->own ||
		           (ret == 0 && s->sh->c_head == c_head_before));
	}
	if (s->clean) {
		uint32_t avail = s->fifo_len;
		FUZZ_CHECK(ret == (int)(max < avail ? max : avail));
		for (int i = 0; i < ret; i++) {
			FUZZ_CHECK(desc_eq(&out[i], &s->fifo[s->fifo_head]));
			s->fifo_head = (s->fifo_head + 1) % MAX_SLOTS;
			s->fifo_len--;
		}
	}
	free(want_descs);
	free(out);
}

static void op_ready_or_space(struct state *s, struct endpoint *ep)
{
	int64_t fill = model_snapshot(s, ep);
	int ret;
	if (ep == &s->cons) {
		ret = nc_ring_ready(&ep->h);
		FUZZ_CHECK(ret == fill);
		if (s->clean && ret >= 0)
			FUZZ_CHECK((uint32_t)ret == s->fifo_len);
	} else {
		ret = nc_ring_space(&ep->h);
		FUZZ_CHECK(fill < 0 ? ret == fill : ret == s->mask - fill);
		if (s->clean && ret >= 0)
			FUZZ_CHECK((uint32_t)ret == s->mask - s->fifo_len);
	}
	check_count(s, ep, ret, s->mask);
}

static uint32_t *own_flag(struct endpoint *ep)
{
	return ep->h.role == NC_RING_CONSUMER ? ep->h.consumer_wants_signal
	                                      : ep->h.producer_wants_signal;
}

static uint32_t *peer_flag(struct endpoint *ep)
{
	return ep->h.role == NC_RING_CONSUMER ? ep->h.producer_wants_signal
	                                      : ep->h.consumer_wants_signal;
}

static void op_prepare_wait(struct state *s, struct endpoint *ep)
{
	int64_t fill = model_snapshot(s, ep);
	/* Sleep only with nothing to do: no descriptors for a consumer, no
	 * room for a producer. A corrupt ring is never slept on. */
	bool may_sleep = ep == &s->cons ? fill == 0 : fill == s->mask;
	bool ret = nc_ring_prepare_wait(&ep->h);
	FUZZ_CHECK(ret == may_sleep);
	FUZZ_CHECK(*own_flag(ep) == (may_sleep ? 1u : 0u));
	if (ep->saw_corrupt)
		FUZZ_CHECK(!ret);
	if (fill == -NC_ECORRUPT)
		ep->saw_corrupt = true;
}

static void op_needs_signal(struct endpoint *ep)
{
	uint32_t before = *peer_flag(ep);
	bool ret = nc_ring_needs_signal(&ep->h);
	FUZZ_CHECK(ret == (before != 0));
	FUZZ_CHECK(*peer_flag(ep) == 0);
}

/* After the peer wrote the ring: does the FIFO model still hold? */
static void after_scribble(struct state *s)
{
	if (!s->clean)
		return;
	if (s->sh->c_head != s->cons.own || s->sh->p_tail != s->prod.own) {
		s->clean = false;
		return;
	}
	/* Indices intact: the consumer will read whatever the slots now
	 * hold; size, mask, p_head, flags and padding must not matter. */
	for (uint32_t i = 0; i < s->fifo_len; i++)
		s->fifo[(s->fifo_head + i) % MAX_SLOTS] =
		    s->slots[(s->cons.own + i) & s->mask];
}

static void op_scribble(struct state *s, struct fuzz_input *in)
{
	size_t off = fuzz_u16(in) % s->footprint;
	size_t len = 1 + fuzz_u8(in) % 16;
	if (len > s->footprint - off)
		len = s->footprint - off;
	fuzz_bytes(in, s->ring_base + off, len);
	after_scribble(s);
}

static void op_scribble_index(struct state *s, struct fuzz_input *in)
{
	uint8_t sel = fuzz_u8(in);
	uint32_t v = fuzz_u32(in);
	uint32_t delta = (uint32_t)(int32_t)(int8_t)v;
	bool c_head = sel & 1;
	uint32_t value;
	switch ((sel >> 1) & 3) {
	case 0: /* near where it should be */
		value = (c_head ? s->cons.own : s->prod.own) + delta;
		break;
	case 1: /* near the other index: a plausible or impossible fill */
		value = (c_head ? s->sh->p_tail : s->sh->c_head) + delta;
		break;
	case 2:
		value = v;
		break;
	default: /* the fields the library must ignore */
		s->sh->size = v;
		s->sh->mask = ~v;
		s->sh->p_head = v ^ 0x5a5a5a5a;
		after_scribble(s);
		return;
	}
	if (c_head)
		s->sh->c_head = value;
	else
		s->sh->p_tail = value;
	after_scribble(s);
}

/* nc_ring_attach must refuse a bad layout and accept a good one. */
static void probe_layout(struct state *s, uint8_t mode, uint32_t slots,
                         uint64_t offset)
{
	if (mode & 2)
		slots = 1u << (slots % 32);
	if (mode & 4)
		offset *= 64;
	size_t footprint = nc_ring_footprint(slots);
	bool valid_slots =
	    slots >= 2 && slots <= (1u << 24) && (slots & (slots - 1)) == 0;
	FUZZ_CHECK((footprint != 0) == valid_slots);
	if (footprint != 0)
		FUZZ_CHECK(footprint >= (size_t)slots * sizeof(struct nc_desc));
	bool fits = footprint != 0 && offset % 64 == 0 &&
	            offset <= s->region.size &&
	            footprint <= s->region.size - offset;
	struct nc_ring scratch;
	int ret = nc_ring_attach(&scratch, &s->region, offset, slots,
	                         NC_RING_CONSUMER);
	if (!fits) {
		FUZZ_CHECK(ret == -NC_ELAYOUT);
		return;
	}
	FUZZ_CHECK(ret == 0 || ret == -NC_ECORRUPT);
	const uint8_t *lo = (const uint8_t *)s->region.base + offset;
	const uint8_t *hi = lo + footprint;
	const uint8_t *sl = (const uint8_t *)scratch.slots;
	FUZZ_CHECK(sl >= lo &&
	           sl + (size_t)slots * sizeof(struct nc_desc) <= hi);
	FUZZ_CHECK((const uint8_t *)scratch.shared == lo);
}

static void check_canaries(const struct state *s,
                           const struct nc_region_header *hdr)
{
	const uint8_t *base = s->region.base;
	FUZZ_CHECK(memcmp(base, hdr, sizeof(*hdr)) == 0);
	for (const uint8_t *p = base + sizeof(*hdr); p < s->ring_base; p++)
		FUZZ_CHECK(*p == CANARY);
	for (const uint8_t *p = s->ring_base + s->footprint;
	     p < base + s->region.size; p++)
		FUZZ_CHECK(*p == CANARY);
}

static void attach(struct state *s, struct endpoint *ep, enum nc_ring_role role,
                   uint64_t offset)
{
	/* The model: own index from the region, checked against the peer's. */
	ep->own = role == NC_RING_PRODUCER ? s->sh->p_tail : s->sh->c_head;
	ep->corrupt = s->sh->p_tail - s->sh->c_head > s->mask;
	int ret =
	    nc_ring_attach(&ep->h, &s->region, offset, s->slots_count, role);
	FUZZ_CHECK(ret == (ep->corrupt ? -NC_ECORRUPT : 0));
	ep->saw_corrupt = ret == -NC_ECORRUPT;
	/* The handle's pointers: all inside the footprint, apart. */
	const uint8_t *lo = s->ring_base, *hi = lo + s->footprint;
	const uint8_t *sl = (const uint8_t *)ep->h.slots;
	const uint8_t *sl_end = sl + s->slots_count * sizeof(struct nc_desc);
	FUZZ_CHECK((const uint8_t *)ep->h.shared == lo);
	FUZZ_CHECK(sl >= lo + sizeof(struct ck_ring) && sl_end <= hi);
	const uint8_t *flags[2] = {
	    (const uint8_t *)ep->h.consumer_wants_signal,
	    (const uint8_t *)ep->h.producer_wants_signal,
	};
	for (int i = 0; i < 2; i++) {
		FUZZ_CHECK(flags[i] >= lo + sizeof(struct ck_ring));
		FUZZ_CHECK(flags[i] + sizeof(uint32_t) <= sl);
	}
	FUZZ_CHECK(flags[0] != flags[1]);
	if (s->slots == NULL)
		s->slots = ep->h.slots;
	FUZZ_CHECK(ep->h.slots == s->slots);
	check_handle(s, ep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	uint8_t slots_sel = fuzz_u8(&in);
	uint8_t mode = fuzz_u8(&in);
	uint8_t probe = fuzz_u8(&in);
	uint32_t base_in = fuzz_u32(&in);
	uint8_t fill_in = fuzz_u8(&in);
	uint32_t probe_slots = fuzz_u32(&in);
	uint16_t probe_offset = fuzz_u16(&in);

	uint64_t fds_before = fuzz_open_fds();
	static struct state s;
	memset(&s, 0, sizeof(s));
	s.slots_count = 2u << (slots_sel % 8);
	s.mask = s.slots_count - 1;
	s.footprint = nc_ring_footprint(s.slots_count);
	FUZZ_CHECK(s.footprint >= s.slots_count * sizeof(struct nc_desc));
	FUZZ_CHECK(nc_region_create(&s.region, "ring_fuzz",
	                            s.footprint + 2 * 64 +
	                                sizeof(struct nc_region_header),
	                            1) == 0);
	/* The ring ends as close to the region's end as alignment allows. */
	uint64_t offset = (s.region.size - s.footprint) & ~(uint64_t)63;
	s.ring_base = (uint8_t *)s.region.base + offset;
	struct nc_region_header hdr;
	memcpy(&hdr, s.region.base, sizeof(hdr));
	memset((uint8_t *)s.region.base + sizeof(hdr), CANARY,
	       s.region.size - sizeof(hdr));
	FUZZ_CHECK(nc_ring_format(&s.region, offset, s.slots_count) == 0);
	s.sh = (struct ck_ring *)s.ring_base; /* the indices lead the ring */
	/* Formatting writes nothing but the ring; the slots are still
	 * canary bytes, which is what a fresh consumer may see. */
	check_canaries(&s, &hdr);

	if (probe & 1)
		probe_layout(&s, probe, probe_slots, probe_offset);

	uint32_t start;
	switch (mode & 3) {
	case 0:
		start = 0;
		break;
	case 1:
		start = UINT32_MAX - fill_in;
		break;
	case 2:
		start = base_in;
		break;
	default:
		start = 0x80000000u - fill_in;
		break;
	}
	uint32_t fill = (mode & 4) ? fill_in : fill_in % s.slots_count;
	s.sh->c_head = start;
	s.sh->p_tail = start + fill;
	s.sh->p_head = start + fill;
	if (mode & 8) {
		attach(&s, &s.cons, NC_RING_CONSUMER, offset);
		attach(&s, &s.prod, NC_RING_PRODUCER, offset);
	} else {
		attach(&s, &s.prod, NC_RING_PRODUCER, offset);
		attach(&s, &s.cons, NC_RING_CONSUMER, offset);
	}
	s.clean = !s.prod.corrupt;
	if (s.clean) {
		/* A re-attached ring may hold descriptors already. */
		for (uint32_t i = 0; i < fill; i++)
			s.fifo[i] = s.slots[(start + i) & s.mask];
		s.fifo_len = fill;
	}

	while (in.left > 0) {
		uint8_t op = fuzz_u8(&in);
		switch (op % 12) {
		case 0:
		case 1:
			op_enqueue(&s, fuzz_u8(&in) % (s.slots_count + 3));
			break;
		case 2:
		case 3:
			op_dequeue(&s, fuzz_u8(&in) % (s.slots_count + 3));
			break;
		case 4:
			op_ready_or_space(&s, &s.cons);
			break;
		case 5:
			op_ready_or_space(&s, &s.prod);
			break;
		case 6:
			op_prepare_wait(&s, &s.cons);
			break;
		case 7:
			op_prepare_wait(&s, &s.prod);
			break;
		case 8:
			op_needs_signal(&s.cons);
			break;
		case 9:
			op_needs_signal(&s.prod);
			break;
		case 10:
			op_scribble(&s, &in);
			break;
		default:
			op_scribble_index(&s, &in);
			break;
		}
		check_handle(&s, &s.prod);
		check_handle(&s, &s.cons);
	}

	check_canaries(&s, &hdr);
	nc_region_close(&s.region);
	FUZZ_CHECK(fuzz_open_fds() == fds_before);
	return 0;
}

/* ------------------------------------------------------------ seed corpus */

/* clang-format off */

/* Setup bytes after slots and mode: no probe, start 0, fill 0. */
#define PLAIN_SETUP 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

/* 8 slots: fill, drain, wait, signal. */
static const uint8_t seed_fifo[] = {
	0x02, 0x00, PLAIN_SETUP,
	0x00, 3,  /* enqueue 3 */
	0x02, 2,  /* dequeue 2 */
	0x00, 10, /* enqueue 10: 6 fit */
	0x04,     /* ready */
	0x05,     /* space */
	0x07,     /* producer prepare_wait: full, may sleep */
	0x02, 4,  /* dequeue 4 */
	0x08,     /* consumer needs_signal: producer asked */
	0x02, 10, /* dequeue the rest */
	0x06,     /* consumer prepare_wait: empty, may sleep */
	0x00, 1,  /* enqueue 1 */
	0x09,     /* producer needs_signal: consumer asked */
	0x03, 0,  /* dequeue 0 */
	0x03, 1,  /* dequeue 1 */
};
/* 4 slots, indices just below 2^32: wrap around while cycling. */
static const uint8_t seed_wrap[] = {
	0x01, 0x01, 0x00, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0,
	0x00, 3, 0x02, 3, 0x00, 3, 0x02, 2, 0x00, 2, 0x02, 3, 0x04, 0x05,
};
/* 16 slots; the peer moves p_tail far ahead: corrupt, and it stays so. */
static const uint8_t seed_corrupt[] = {
	0x03, 0x00, PLAIN_SETUP,
	0x00, 5,
	0x0b, 0x00, 0x40, 0, 0, 0, /* p_tail = own + 0x40 */
	0x02, 3, 0x04, 0x06, 0x02, 1, 0x00, 2, 0x05, 0x07, 0x00, 1,
};
/* 2 slots; the peer scribbles size, mask, p_head, then flags and slots. */
static const uint8_t seed_scribbles[] = {
	0x00, 0x00, PLAIN_SETUP,
	0x00, 1,
	0x0b, 0x06, 0x11, 0x22, 0x33, 0x44, /* size/mask/p_head */
	0x0a, 0xc0, 0x00, 3, 1, 1, 1, 1,    /* consumer flag = 0x01010101 */
	0x09,                               /* producer answers it */
	0x0a, 0x40, 0x01, 7, 9, 9, 9, 9, 9, 9, 9, 9, /* first slot */
	0x02, 2, 0x00, 2, 0x02, 2,
};
/* A re-attach with an impossible fill, consumer first. */
static const uint8_t seed_bad_attach[] = {
	0x02, 0x0e, 0x00, 0x10, 0x20, 0x30, 0x40, 200, 0, 0, 0, 0, 0, 0,
	0x00, 1, 0x02, 1, 0x04, 0x05, 0x06, 0x07,
};
/* Layout probes: a power of two at an aligned offset, then a bad one. */
static const uint8_t seed_probe_good[] = {
	0x02, 0x00, 0x07, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0x01, 0,
	0x00, 2, 0x02, 2,
};
static const uint8_t seed_probe_bad[] = {
	0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0x41, 0,
};
/* A re-attached ring holding descriptors: start from the input. */
static const uint8_t seed_reattach[] = {
	0x04, 0x02, 0x00, 0xfe, 0xff, 0xff, 0x7f, 20, 0, 0, 0, 0, 0, 0,
	0x02, 7, 0x00, 30, 0x02, 40, 0x05,
};

/* clang-format on */

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_fifo),       FUZZ_SEED(seed_wrap),
    FUZZ_SEED(seed_corrupt),    FUZZ_SEED(seed_scribbles),
    FUZZ_SEED(seed_bad_attach), FUZZ_SEED(seed_probe_good),
    FUZZ_SEED(seed_probe_bad),  FUZZ_SEED(seed_reattach),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
