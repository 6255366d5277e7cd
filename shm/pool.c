/*
 * Pools: fixed-size buffers in a region, lent to a peer and taken back.
 *
 * States. Each buffer is either HELD by the owner (on its private free
 * stack, or in use by the owner) or LENT to the peer (its descriptor was
 * enqueued to the peer, which may read and write the bytes). Only the owner
 * records states, in private memory; the peer's view is whatever it says,
 * and it is believed only where it matches this record.
 *
 * Ownership. The owner is the trusted side (the core for a client region,
 * the core for the phy region's packet buffers). The bytes of a lent buffer
 * belong to the peer until it hands the descriptor back: the owner never
 * reads them meanwhile, so a peer can never change data under the owner's
 * feet after the owner validated it (copy-once happens at accept time, by
 * the caller, from a buffer that is HELD again).
 *
 * Restart and death. When the peer dies, nc_pool_reclaim_all() makes every
 * lent buffer HELD again; no buffer leaks, however the peer died.
 *
 * What it does not do: move descriptors (the rings do), or zero buffers.
 */
#include "shm/shm.h"

#include <errno.h>
#include <stdlib.h>

enum { NCI_HELD = 0, NCI_LENT = 1, NCI_IN_USE = 2 };

size_t nc_pool_footprint(uint32_t count, uint32_t buf_size)
{
	if (count == 0 || buf_size == 0)
		return 0;
	return (size_t)count * buf_size;
}

int nc_pool_init(struct nc_pool *p, struct nc_region *r, uint64_t offset,
                 uint32_t count, uint32_t buf_size)
{
	size_t size = nc_pool_footprint(count, buf_size);
	if (size == 0 || nc_region_at(r, offset, size) == NULL)
		return -NC_ELAYOUT;
	p->region = r;
	p->offset = offset;
	p->count = count;
	p->buf_size = buf_size;
	p->state = calloc(count, sizeof(*p->state));
	p->free_list = calloc(count, sizeof(*p->free_list));
	if (p->state == NULL || p->free_list == NULL) {
		nc_pool_fini(p);
		return -ENOMEM;
	}
	/* Lowest index on top, so buffers are handed out in address order. */
	for (uint32_t i = 0; i < count; i++)
		p->free_list[i] = count - 1 - i;
	p->free_count = count;
	p->lent_count = 0;
	return 0;
}

void nc_pool_fini(struct nc_pool *p)
{
	free(p->state);
	free(p->free_list);
	p->state = NULL;
	p->free_list = NULL;
	p->count = 0;
	p->free_count = 0;
}

static struct nc_desc whole_buffer(const struct nc_pool *p, uint32_t index)
{
	struct nc_desc d = {
	    .offset = p->offset + (uint64_t)index * p->buf_size,
	    .length = p->buf_size,
	};
	return d;
}

/* The buffer index a descriptor names exactly, or -1. */
static int64_t buffer_index(const struct nc_pool *p, const struct nc_desc *d)
{
	if (d->offset < p->offset)
		return -1;
	uint64_t rel = d->offset - p->offset;
	if (rel % p->buf_size != 0 || rel / p->buf_size >= p->count)
		return -1;
	if (d->length > p->buf_size)
		return -1;
	return (int64_t)(rel / p->buf_size);
}

int nc_pool_get(struct nc_pool *p, struct nc_desc *out)
{
	if (p->free_count == 0)
		return -ENOBUFS;
	uint32_t index = p->free_list[--p->free_count];
	p->state[index] = NCI_IN_USE;
	*out = whole_buffer(p, index);
	return 0;
}

/* Index of a buffer the owner is using, or -1 (a bug in the owner). */
static int64_t in_use_index(const struct nc_pool *p, const struct nc_desc *d)
{
	int64_t index = buffer_index(p, d);
	if (index < 0 || p->state[index] != NCI_IN_USE)
		return -1;
	return index;
}

int nc_pool_put(struct nc_pool *p, const struct nc_desc *d)
{
	int64_t index = in_use_index(p, d);
	if (index < 0)
		return -EINVAL;
	p->state[index] = NCI_HELD;
	p->free_list[p->free_count++] = (uint32_t)index;
	return 0;
}

int nc_pool_lend(struct nc_pool *p, const struct nc_desc *d)
{
	int64_t index = in_use_index(p, d);
	if (index < 0)
		return -EINVAL;
	p->state[index] = NCI_LENT;
	p->lent_count++;
	return 0;
}

int nc_pool_accept(struct nc_pool *p, const struct nc_desc *d)
{
	int64_t index = buffer_index(p, d);
	if (index < 0 || p->state[index] != NCI_LENT)
		return -NC_ECORRUPT;
	p->state[index] = NCI_IN_USE;
	p->lent_count--;
	return 0;
}

uint32_t nc_pool_reclaim_all(struct nc_pool *p)
{
	uint32_t taken = 0;
	for (uint32_t i = 0; i < p->count; i++) {
		if (p->state[i] != NCI_LENT)
			continue;
		p->state[i] = NCI_HELD;
		p->free_list[p->free_count++] = i;
		taken++;
	}
	p->lent_count = 0;
	return taken;
}

void *nc_pool_data(const struct nc_pool *p, const struct nc_desc *d)
{
	int64_t index = buffer_index(p, d);
	if (index < 0)
		return NULL;
	return nc_region_at(p->region, d->offset, p->buf_size);
}
