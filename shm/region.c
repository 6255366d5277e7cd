/*
 * Regions: sealed memfds with a versioned header.
 *
 * States. A region is created by its owner (generation 1), may be
 * re-initialised by the owner (generation + 1, everything after the header
 * zeroed), and is closed by each holder independently; the memory lives
 * until the last mapping and the last fd are gone.
 *
 * Ownership. The owner holds the memfd and hands copies to peers (over
 * SCM_RIGHTS, or by inheritance to a spawned service). A peer's handle dups
 * the fd it is given, so the caller's fd and the handle's are closed
 * separately.
 *
 * Trust. The memfd is sealed against growing and shrinking before any peer
 * sees it; an attacher refuses an unsealed one, because a peer that could
 * shrink the file would turn our next access into SIGBUS. The header is
 * checked once, at attach; after that every size we rely on is the private
 * copy in struct nc_region, never the header.
 *
 * What it does not do: carve the region into rings and pools (the users of a
 * region compute their layout from their own parameters), or pass fds.
 */
#include "shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t page_round_up(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (size + page - 1) / page * page;
}

static int map_fd(struct nc_region *r, int fd, size_t size)
{
	void *base =
	    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	r->fd = fd;
	r->base = base;
	r->size = size;
	return 0;
}

int nc_region_create(struct nc_region *r, const char *name, size_t size,
                     uint32_t kind)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (size < sizeof(struct nc_region_header))
		return -EINVAL;
	size = page_round_up(size);

	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	int seals = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, seals) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	int err = map_fd(r, fd, size);
	if (err) {
		close(fd);
		return err;
	}
	struct nc_region_header *h = r->base;
	h->magic = NC_REGION_MAGIC;
	h->version = NC_REGION_VERSION;
	h->kind = kind;
	h->header_size = sizeof(*h);
	h->size = size;
	h->generation = 1;
	r->kind = kind;
	r->generation = 1;
	return 0;
}

static int check_seals(int fd)
{
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0)
		return errno == EINVAL ? -NC_ESEALS : -errno;
	const int needed = F_SEAL_GROW | F_SEAL_SHRINK;
	return (seals & needed) == needed ? 0 : -NC_ESEALS;
}

/* Compares a private snapshot of the header with what the caller expects. */
static int check_header(const struct nc_region_header *h, size_t file_size,
                        const struct nc_region_expect *expect)
{
	if (h->magic != NC_REGION_MAGIC)
		return -NC_EMAGIC;
	if (h->version != NC_REGION_VERSION ||
	    h->header_size != sizeof(struct nc_region_header))
		return -NC_EVERSION;
	if (h->size != file_size)
		return -NC_ESIZE;
	if (expect == NULL)
		return 0;
	if (expect->size != 0 && expect->size != file_size)
		return -NC_ESIZE;
	if (expect->kind != 0 && expect->kind != h->kind)
		return -NC_EKIND;
	if (expect->generation != 0 && expect->generation != h->generation)
		return -NC_EGENERATION;
	return 0;
}

int nc_region_attach(struct nc_region *r, int fd,
                     const struct nc_region_expect *expect)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	int err = check_seals(fd);
	if (err)
		return err;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	size_t size = (size_t)st.st_size;
	if (size < sizeof(struct nc_region_header))
		return -NC_ESIZE;
	/* Before mapping: a peer's huge sparse memfd is refused unmapped. */
	if (expect != NULL && expect->size != 0 && expect->size != size)
		return -NC_ESIZE;
	int own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (own_fd < 0)
		return -errno;
	err = map_fd(r, own_fd, size);
	if (err) {
		close(own_fd);
		return err;
	}
	/* One copy: the peer may change the header while we look at it. */
	struct nc_region_header snapshot;
	memcpy(&snapshot, r->base, sizeof(snapshot));
	err = check_header(&snapshot, size, expect);
	if (err) {
		nc_region_close(r);
		return err;
	}
	r->kind = snapshot.kind;
	r->generation = snapshot.generation;
	return 0;
}

uint64_t nc_region_reinit(struct nc_region *r)
{
	struct nc_region_header *h = r->base;
	memset((char *)r->base + sizeof(*h), 0, r->size - sizeof(*h));
	r->generation++;
	h->generation = r->generation;
	return r->generation;
}

void nc_region_close(struct nc_region *r)
{
	if (r->base != NULL && r->base != MAP_FAILED)
		munmap(r->base, r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->base = NULL;
	r->fd = -1;
	r->size = 0;
}

void nc_region_set_params(struct nc_region *r, const uint32_t *words,
                          unsigned n)
{
	struct nc_region_header *h = r->base;
	for (unsigned i = 0; i < n && i < 6; i++)
		h->layout[i] = words[i];
}

int nc_region_get_params(const struct nc_region *r, uint32_t *words, unsigned n)
{
	uint64_t copy[6];
	if (n > 6)
		return -NC_ELAYOUT;
	/* One copy: the peer may change the header while we look at it. */
	memcpy(copy, ((struct nc_region_header *)r->base)->layout,
	       sizeof(copy));
	for (unsigned i = 0; i < n; i++) {
		if (copy[i] > UINT32_MAX)
			return -NC_ELAYOUT;
		words[i] = (uint32_t)copy[i];
	}
	return 0;
}

struct nc_region_header *nc_region_header(const struct nc_region *r)
{
	return r->base;
}

void *nc_region_at(const struct nc_region *r, uint64_t offset, uint64_t len)
{
	if (r->base == NULL || offset > r->size || len > r->size - offset)
		return NULL;
	return (char *)r->base + offset;
}

const char *nc_shm_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case NC_EMAGIC:
		return "region header has the wrong magic (not a netcore "
		       "region)";
	case NC_EVERSION:
		return "region layout version is not the one this build uses";
	case NC_ESIZE:
		return "region size does not match its header or what was "
		       "expected";
	case NC_EGENERATION:
		return "region was re-initialised (generation changed)";
	case NC_ESEALS:
		return "region memfd is not sealed against resizing";
	case NC_EKIND:
		return "region holds another kind of data than expected";
	case NC_ECORRUPT:
		return "peer corrupted the shared state";
	case NC_ELAYOUT:
		return "layout does not fit the region or is invalid";
	default:
		return strerror(err);
	}
}
