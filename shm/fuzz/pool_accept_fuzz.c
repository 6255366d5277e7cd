/*
 * Fuzzes the buffer pool's bookkeeping, above all nc_pool_accept(): the
 * check on every descriptor a peer hands back.
 *
 * Input: 24 setup bytes, then a program.
 *   byte 0     count = 1 + b % 32
 *   byte 1     buffer size: b % 8 picks 1, 2, 7, 16, 64, 100, 2048, or
 *              1 + (next u16) % 5000
 *   2          that u16
 *   2          the pool's offset in its region (any alignment)
 *   1          bytes of slack after the pool in the region
 *   1, 8, 4, 4 an nc_pool_init probe: mode (bit 0: run it; bit 1: keep its
 *              numbers small), offset, count, buffer size
 *   program    op bytes (op % 8) and their arguments: get, lend, accept,
 *              put, reclaim_all, data, get+lend, accept a lent buffer; the
 *              descriptors come from the input, aimed at buffer starts,
 *              near misses, other pools' strides, past the end, or raw
 *
 * Properties, checked after every operation against a private model of
 * which buffers are free, in use by the owner, or lent:
 *   - nc_pool_init accepts exactly the layouts that fit the region;
 *   - nc_pool_accept accepts exactly the descriptors that name the start of
 *     a lent buffer with a length of at most buf_size, and otherwise
 *     returns NC_ECORRUPT and changes nothing;
 *   - lend and put accept exactly a buffer the owner has in use;
 *   - get never hands out a buffer that is lent or in use, and fails only
 *     when the owner holds none;
 *   - nc_pool_data is NULL for a descriptor that names no buffer, and
 *     otherwise the buffer's bytes inside the region;
 *   - lent_count and free_count always match the model, and reclaim_all
 *     returns exactly the number lent.
 */
#include "shm/shm.h"
#include "tools/fuzz/fuzz.h"

#include <errno.h>
#include <stdbool.h>

enum { MAX_COUNT = 32 };
enum buf_state { FREE, IN_USE, LENT };

struct model {
	struct nc_region region;
	struct nc_pool pool;
	uint64_t offset;
	uint32_t count, buf_size;
	enum buf_state state[MAX_COUNT];
	uint32_t free, lent;
};

/* The buffer `d` names exactly (start and length), or -1. */
static int64_t named_buffer(const struct model *m, const struct nc_desc *d)
{
	if (d->offset < m->offset || d->length > m->buf_size)
		return -1;
	uint64_t rel = d->offset - m->offset;
	if (rel % m->buf_size != 0 || rel / m->buf_size >= m->count)
		return -1;
	return (int64_t)(rel / m->buf_size);
}

static void check_counts(const struct model *m)
{
	FUZZ_CHECK(m->pool.lent_count == m->lent);
	FUZZ_CHECK(m->pool.free_count == m->free);
	FUZZ_CHECK(m->pool.count == m->count);
	FUZZ_CHECK(m->pool.buf_size == m->buf_size);
}

static struct nc_desc desc_from_input(const struct model *m,
                                      struct fuzz_input *in)
{
	uint8_t sel = fuzz_u8(in);
	uint64_t index = fuzz_u8(in) % (m->count + 1); /* may be one past */
	uint64_t start = m->offset + index * m->buf_size;
	struct nc_desc d = {0};
	switch (sel & 7) {
	case 3: /* a near miss */
		d.offset = start + (uint64_t)(int64_t)(int8_t)fuzz_u8(in);
		break;
	case 4:
		d.offset = fuzz_u64(in);
		break;
	case 5: /* below the pool */
		d.offset = m->offset - 1 - fuzz_u8(in);
		break;
	case 6: /* aliases `index` if the index is truncated to 32 bits */
		d.offset = m->offset + (index + (1ull << 32)) * m->buf_size;
		break;
	case 7: /* inside the buffer */
		d.offset = start + m->buf_size / 2;
		break;
	default: /* the start of a buffer */
		d.offset = start;
		break;
	}
	switch ((sel >> 3) & 3) {
	case 0:
		d.length = m->buf_size;
		break;
	case 1:
		d.length = fuzz_u16(in) % (m->buf_size + 1);
		break;
	case 2:
		d.length = m->buf_size + 1 + fuzz_u8(in);
		break;
	default:
		d.length = fuzz_u32(in);
		break;
	}
	d.flags = (uint16_t)(sel >> 5);
	return d;
}

static void op_get(struct model *m, struct nc_desc *out)
{
	int ret = nc_pool_get(&m->pool, out);
	if (m->free == 0) {
		FUZZ_CHECK(ret == -ENOBUFS);
		return;
	}
	FUZZ_CHECK(ret == 0);
	FUZZ_CHECK(out->length == m->buf_size);
	int64_t index = named_buffer(m, out);
	FUZZ_CHECK(index >= 0);
	FUZZ_CHECK(m->state[index] == FREE);
	m->state[index] = IN_USE;
	m->free--;
}

static void op_lend(struct model *m, const struct nc_desc *d)
{
	int64_t index = named_buffer(m, d);
	bool ok = index >= 0 && m->state[index] == IN_USE;
	int ret = nc_pool_lend(&m->pool, d);
	FUZZ_CHECK(ok ? ret == 0 : ret < 0);
	if (ok) {
		m->state[index] = LENT;
		m->lent++;
	}
}

static void op_accept(struct model *m, const struct nc_desc *d)
{
	int64_t index = named_buffer(m, d);
	bool ok = index >= 0 && m->state[index] == LENT;
	int ret = nc_pool_accept(&m->pool, d);
	if (!ok && ret == 0)
		fprintf(stderr, "accepted offset %llu length %u\n",
		        (unsigned long long)d->offset, d->length);
	FUZZ_CHECK(ret == (ok ? 0 : -NC_ECORRUPT));
	if (ok) {
		m->state[index] = IN_USE;
		m->lent--;
	}
}

static void op_put(struct model *m, const struct nc_desc *d)
{
	int64_t index = named_buffer(m, d);
	bool ok = index >= 0 && m->state[index] == IN_USE;
	int ret = nc_pool_put(&m->pool, d);
	FUZZ_CHECK(ok ? ret == 0 : ret < 0);
	if (ok) {
		m->state[index] = FREE;
		m->free++;
	}
}

static void op_reclaim(struct model *m)
{
	uint32_t ret = nc_pool_reclaim_all(&m->pool);
	FUZZ_CHECK(ret == m->lent);
	for (uint32_t i = 0; i < m->count; i++) {
		if (m->state[i] == LENT) {
			m->state[i] = FREE;
			m->free++;
		}
	}
	m->lent = 0;
}

static void op_data(struct model *m, const struct nc_desc *d)
{
	int64_t index = named_buffer(m, d);
	uint8_t *p = nc_pool_data(&m->pool, d);
	if (index < 0) {
		FUZZ_CHECK(p == NULL);
		return;
	}
	FUZZ_CHECK(p == (uint8_t *)m->region.base + d->offset);
	FUZZ_CHECK(d->offset + m->buf_size <= m->region.size);
	if (m->state[index] == IN_USE)
		memset(p, (int)index, m->buf_size); /* ours: touch it all */
}

/* A lent buffer (the k-th, wrapping), handed back with `length`. */
static void op_accept_lent(struct model *m, uint8_t k, uint32_t length)
{
	if (m->lent == 0)
		return;
	k %= m->lent;
	for (uint32_t i = 0; i < m->count; i++) {
		if (m->state[i] != LENT || k-- != 0)
			continue;
		struct nc_desc d = {
		    .offset = m->offset + (uint64_t)i * m->buf_size,
		    .length = length,
		};
		op_accept(m, &d);
		return;
	}
}

static void probe_init(struct model *m, struct fuzz_input *in)
{
	uint8_t mode = fuzz_u8(in);
	uint64_t offset = fuzz_u64(in);
	uint32_t count = fuzz_u32(in);
	uint32_t buf_size = fuzz_u32(in);
	if (!(mode & 1))
		return;
	if (mode & 2) {
		offset %= m->region.size + 1;
		count %= 64;
		buf_size %= 300;
	}
	size_t footprint = nc_pool_footprint(count, buf_size);
	FUZZ_CHECK(footprint == (size_t)count * buf_size);
	uint64_t size = m->region.size;
	bool fits = count > 0 && buf_size > 0 && offset <= size &&
	            (uint64_t)count * buf_size <= size - offset;
	struct nc_pool p;
	int ret = nc_pool_init(&p, &m->region, offset, count, buf_size);
	FUZZ_CHECK(ret == (fits ? 0 : -NC_ELAYOUT));
	if (ret == 0) {
		FUZZ_CHECK(p.free_count == count && p.lent_count == 0);
		nc_pool_fini(&p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t sizes[] = {1, 2, 7, 16, 64, 100, 2048};
	struct fuzz_input in = {data, size};
	uint8_t count_sel = fuzz_u8(&in);
	uint8_t size_sel = fuzz_u8(&in);
	uint16_t size_in = fuzz_u16(&in);
	uint16_t offset_in = fuzz_u16(&in);
	uint8_t slack = fuzz_u8(&in);

	uint64_t fds_before = fuzz_open_fds();
	static struct model m;
	memset(&m, 0, sizeof(m));
	m.count = 1 + count_sel % MAX_COUNT;
	m.buf_size =
	    size_sel % 8 < 7 ? sizes[size_sel % 8] : 1u + size_in % 5000u;
	m.offset = offset_in;
	size_t need = m.offset + (size_t)m.count * m.buf_size + slack;
	FUZZ_CHECK(nc_region_create(&m.region, "pool_accept_fuzz",
	                            need < sizeof(struct nc_region_header)
	                                ? sizeof(struct nc_region_header)
	                                : need,
	                            2) == 0);
	probe_init(&m, &in);
	FUZZ_CHECK(nc_pool_init(&m.pool, &m.region, m.offset, m.count,
	                        m.buf_size) == 0);
	m.free = m.count;
	check_counts(&m);

	while (in.left > 0) {
		uint8_t op = fuzz_u8(&in);
		struct nc_desc d;
		switch (op % 8) {
		case 0:
			op_get(&m, &d);
			break;
		case 1:
			d = desc_from_input(&m, &in);
			op_lend(&m, &d);
			break;
		case 2:
			d = desc_from_input(&m, &in);
			op_accept(&m, &d);
			break;
		case 3:
			d = desc_from_input(&m, &in);
			op_put(&m, &d);
			break;
		case 4:
			op_reclaim(&m);
			break;
		case 5:
			d = desc_from_input(&m, &in);
			op_data(&m, &d);
			break;
		case 6: /* the usual way to lend: get, then lend that */
			if (m.free > 0) {
				op_get(&m, &d);
				op_lend(&m, &d);
				FUZZ_CHECK(m.state[named_buffer(&m, &d)] ==
				           LENT);
			}
			break;
		default: {
			uint8_t k = fuzz_u8(&in);
			uint8_t len_sel = fuzz_u8(&in);
			uint32_t len = len_sel & 0x80
			                   ? m.buf_size + (len_sel & 0x7f)
			                   : len_sel % (m.buf_size + 1);
			op_accept_lent(&m, k, len);
			break;
		}
		}
		check_counts(&m);
	}

	/* The peer goes away: everything lent comes back. */
	op_reclaim(&m);
	check_counts(&m);
	FUZZ_CHECK(m.pool.lent_count == 0);
	for (uint32_t i = 0; i < m.count; i++) {
		if (m.state[i] != IN_USE)
			continue;
		struct nc_desc d = {
		    .offset = m.offset + (uint64_t)i * m.buf_size,
		    .length = m.buf_size,
		};
		op_put(&m, &d);
	}
	FUZZ_CHECK(m.pool.free_count == m.count);
	nc_pool_fini(&m.pool);
	nc_region_close(&m.region);
	FUZZ_CHECK(fuzz_open_fds() == fds_before);
	return 0;
}

/* ------------------------------------------------------------ seed corpus */

/* clang-format off */

/* 4 buffers of 64 bytes at offset 128; no init probe. */
#define SETUP_4X64 0x03, 0x04, 0, 0, 0x80, 0, 0, ZERO_PROBE
#define ZERO_PROBE 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

/* Lend two, take them back, one with a shorter length. */
static const uint8_t seed_cycle[] = {
	SETUP_4X64,
	0x06, 0x06,                     /* get + lend, twice */
	0x02, 0x00, 0x00,               /* accept buffer 0, full length */
	0x02, 0x08, 0x01, 10, 0,        /* accept buffer 1, length 10 */
	0x02, 0x00, 0x01,               /* again: no longer lent */
	0x03, 0x00, 0x00,               /* put buffer 0 */
	0x03, 0x00, 0x01,               /* put buffer 1 */
	0x00, 0x00, 0x00, 0x00, 0x00,   /* get until empty */
};
/* Hostile returns: near misses, mid-buffer, too long, past the end. */
static const uint8_t seed_hostile[] = {
	SETUP_4X64,
	0x06, 0x06, 0x06,
	0x02, 0x03, 0x01, 0x01, /* offset + 1 */
	0x02, 0x07, 0x00,       /* mid-buffer */
	0x02, 0x10, 0x00, 0x00, /* length buf_size + 1 */
	0x02, 0x00, 0x04,       /* one past the last buffer */
	0x02, 0x06, 0x00,       /* index + 2^32 */
	0x02, 0x05, 0x00, 0x00, /* below the pool */
	0x02, 0x1c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* raw 0 */
	0x07, 0x00, 0x40,       /* a lent one, length 64 */
	0x07, 0x00, 0x81,       /* a lent one, length 65 */
	0x04,                   /* reclaim the rest */
};
/* Lending and putting what the owner does not have in use. */
static const uint8_t seed_owner_bugs[] = {
	SETUP_4X64,
	0x01, 0x00, 0x00, /* lend a free buffer */
	0x03, 0x00, 0x00, /* put a free buffer */
	0x06,
	0x03, 0x00, 0x00, /* put a lent buffer */
	0x01, 0x00, 0x00, /* lend it again */
	0x05, 0x00, 0x00, /* data of it */
	0x05, 0x07, 0x00, /* data mid-buffer */
	0x04, 0x00, 0x05, 0x00, 0x00,
};
/* Odd sizes: 7-byte buffers at an odd offset; init probes. */
static const uint8_t seed_odd[] = {
	0x1f, 0x02, 0, 0, 0x35, 0x01, 0x09,
	0x03, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x05, 0, 0, 0, 0x07, 0, 0, 0,
	0x06, 0x06, 0x06, 0x06, 0x07, 0x02, 0x03, 0x04, 0x06, 0x07, 0x00, 0x07,
};
/* A probe that does not fit, then a buffer size from the input. */
static const uint8_t seed_big[] = {
	0x00, 0x07, 0x87, 0x13, 0x00, 0x00, 0x00,
	0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0,
	0x06, 0x05, 0x00, 0x00, 0x02, 0x08, 0x00, 0x88, 0x13, 0x04,
};

/* clang-format on */

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_cycle), FUZZ_SEED(seed_hostile), FUZZ_SEED(seed_owner_bugs),
    FUZZ_SEED(seed_odd),   FUZZ_SEED(seed_big),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
