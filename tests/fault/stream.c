/* stream: see stream.h. */
#include "tests/fault/stream.h"

#include <string.h>

/*
 * One block: the stream id and the block index are folded into one word
 * by two odd multipliers (distinct streams and blocks land far apart),
 * then a 64-bit finalizer (xorshift-multiply rounds, as in MurmurHash3's
 * fmix64) spreads every input bit over the output. Quality only needs to
 * make a misplaced or repeated chunk show; it is not cryptographic.
 */
static uint64_t block(uint64_t id, uint64_t index)
{
	uint64_t x = id * 0xd6e8feb86659fd93ull + index * 0x9e3779b97f4a7c15ull;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint8_t byte_at(uint64_t id, uint64_t off)
{
	return (uint8_t)(block(id, off / 8) >> (8 * (off % 8)));
}

void ff_stream_fill(uint64_t id, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;
	/* Head and tail byte by byte; whole blocks eight at a time. */
	while (len > 0 && off % 8 != 0) {
		*p++ = byte_at(id, off++);
		len--;
	}
	for (; len >= 8; len -= 8, off += 8, p += 8) {
		uint64_t w = block(id, off / 8);
		for (int k = 0; k < 8; k++)
			p[k] = (uint8_t)(w >> (8 * k));
	}
	while (len > 0) {
		*p++ = byte_at(id, off++);
		len--;
	}
}

size_t ff_stream_check(uint64_t id, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint8_t want[4096];
	for (size_t done = 0; done < len;) {
		size_t n =
		    len - done < sizeof(want) ? len - done : sizeof(want);
		ff_stream_fill(id, off + done, want, n);
		if (memcmp(want, p + done, n) != 0) {
			for (size_t k = 0; k < n; k++)
				if (want[k] != p[done + k])
					return done + k;
		}
		done += n;
	}
	return len;
}
