/* Client region layout; see client_region.h. */
#include "proto/client_region.h"

#include <string.h>

#define CACHELINE 64u
#define PAGE      4096u

void nc_client_params_default(struct nc_client_params *p)
{
	p->max_sockets = 64;
	p->ring_slots = 64;
	p->buf_count = 512;
	p->buf_size = 16384;
}

static int params_valid(const struct nc_client_params *p)
{
	return p->max_sockets >= 1 && p->max_sockets <= 4096 &&
	       nc_ring_footprint(p->ring_slots) != 0 && p->buf_count >= 2 &&
	       p->buf_count <= (1u << 20) && p->buf_size >= 2048 &&
	       p->buf_size <= (1u << 20) && p->buf_size % CACHELINE == 0;
}

int nc_client_layout(const struct nc_client_params *p,
                     struct nc_client_layout *out)
{
	if (!params_valid(p))
		return -NC_ELAYOUT;
	out->ring_size =
	    nc_align_up(nc_ring_footprint(p->ring_slots), CACHELINE);
	uint64_t at = PAGE;
	out->control = at;
	at += sizeof(struct nc_client_control);
	out->states = at;
	at = nc_align_up(at + (uint64_t)p->max_sockets *
	                          sizeof(struct nc_sock_state),
	                 CACHELINE);
	/* Free and done rings hold every buffer at once if they must. */
	out->free_ring = at;
	out->done_ring = at + out->ring_size;
	out->sock_rings = at + 2 * out->ring_size;
	at = out->sock_rings + 2ull * p->max_sockets * out->ring_size;
	out->pool = nc_align_up(at, PAGE);
	out->size = out->pool + (uint64_t)p->buf_count * p->buf_size;
	return 0;
}

uint64_t nc_client_tx_ring(const struct nc_client_layout *l, uint32_t sock)
{
	return l->sock_rings + 2ull * sock * l->ring_size;
}

uint64_t nc_client_rx_ring(const struct nc_client_layout *l, uint32_t sock)
{
	return nc_client_tx_ring(l, sock) + l->ring_size;
}

int nc_client_region_create(struct nc_region *r,
                            const struct nc_client_params *p)
{
	struct nc_client_layout l;
	int err = nc_client_layout(p, &l);
	if (err)
		return err;
	err = nc_region_create(r, "netcore-client", l.size,
	                       NC_CLIENT_REGION_KIND);
	if (err)
		return err;
	uint32_t words[] = {p->max_sockets, p->ring_slots, p->buf_count,
	                    p->buf_size};
	nc_region_set_params(r, words, 4);
	return 0;
}

int nc_client_region_params(const struct nc_region *r,
                            struct nc_client_params *p)
{
	uint32_t w[4];
	int err = nc_region_get_params(r, w, 4);
	if (err)
		return err;
	p->max_sockets = w[0];
	p->ring_slots = w[1];
	p->buf_count = w[2];
	p->buf_size = w[3];
	struct nc_client_layout l;
	err = nc_client_layout(p, &l);
	if (err)
		return err;
	return l.size <= r->size ? 0 : -NC_ELAYOUT;
}
