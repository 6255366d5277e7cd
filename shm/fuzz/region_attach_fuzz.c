/*
 * Fuzzes nc_region_attach() and nc_region_at(): the checks a service runs on
 * a memfd a peer handed it.
 *
 * Input: 31 control bytes, then the file's contents.
 *   byte 0   bits 0-2: the fd (see enum fd_kind: sealed like
 *            nc_region_create, unsealed, partly sealed, write-sealed, a
 *            memfd that cannot be sealed, a pipe); bits 3-5: overwrite the
 *            header's magic / version+header_size / size with good values
 *            (so random inputs get past the first checks); bit 6: attach
 *            with no expectation; bit 7: do not pad the file to a header
 *   byte 1   how the expectation's kind, size and generation are chosen
 *            (2 bits each: unchecked, matching, from the input, mismatched)
 *   byte 2   extra file length: low nibble pages, high nibble * 7 bytes
 *   4+8+8    kind, size and generation for "from the input"
 *   8        a size the peer writes into the header after we attached
 *   rest     the contents (zero-padded to at least a header); from its byte
 *            80 on, also (selector, offset, length) probes for nc_region_at
 *
 * Properties:
 *   - attach succeeds exactly when the memfd is sealed against growing and
 *     shrinking, at least a header long, and the header and expectation
 *     agree; a failure's error is one of the documented ones that applies;
 *   - on success the handle's size, kind and generation are the file's and
 *     header's, and the mapping shows the file's bytes;
 *   - nc_region_at returns base + offset exactly when [offset, offset + len)
 *     lies inside the file, NULL otherwise, using the size attach saw even
 *     after the peer rewrote the header's size;
 *   - every fd and mapping attach made is gone again after a failed attach
 *     or nc_region_close.
 */
#include "shm/shm.h"
#include "tools/fuzz/fuzz.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/mman.h>

enum fd_kind {
	FD_SEALED = 0, /* grow | shrink | seal, as nc_region_create */
	FD_UNSEALED = 1,
	FD_GROW_ONLY = 2,
	FD_SHRINK_ONLY = 3,
	FD_GROW_SHRINK = 4,  /* enough, though more seals may still come */
	FD_WRITE_SEALED = 5, /* cannot be mapped writable */
	FD_NO_SEALING = 6,   /* memfd without MFD_ALLOW_SEALING */
	FD_PIPE = 7,         /* not a memfd at all */
};

#define HDR_SIZE sizeof(struct nc_region_header)

struct control {
	enum fd_kind fd_kind;
	bool fix_magic, fix_version, fix_size, no_expect, raw_size;
	unsigned kind_mode, size_mode, gen_mode;
	size_t extra;
	uint32_t kind_in;
	uint64_t size_in, gen_in, scribble_size;
};

static void read_control(struct fuzz_input *in, struct control *c)
{
	uint8_t mode = fuzz_u8(in);
	uint8_t expect = fuzz_u8(in);
	uint8_t extra = fuzz_u8(in);
	c->fd_kind = (enum fd_kind)(mode & 7);
	c->fix_magic = mode & 0x08;
	c->fix_version = mode & 0x10;
	c->fix_size = mode & 0x20;
	c->no_expect = mode & 0x40;
	c->raw_size = mode & 0x80;
	c->kind_mode = expect & 3;
	c->size_mode = (expect >> 2) & 3;
	c->gen_mode = (expect >> 4) & 3;
	c->extra = (size_t)(extra & 0x0f) * 4096 + (size_t)(extra >> 4) * 7;
	c->kind_in = fuzz_u32(in);
	c->size_in = fuzz_u64(in);
	c->gen_in = fuzz_u64(in);
	c->scribble_size = fuzz_u64(in);
}

/* The peer's side: a memfd (or not) holding `file`. Returns the fd. */
static int make_fd(enum fd_kind kind, const uint8_t *file, size_t size,
                   int *pipe_other)
{
	*pipe_other = -1;
	if (kind == FD_PIPE) {
		int p[2];
		FUZZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
		*pipe_other = p[1];
		return p[0];
	}
	unsigned flags = MFD_CLOEXEC;
	if (kind != FD_NO_SEALING)
		flags |= MFD_ALLOW_SEALING;
	int fd = memfd_create("region_attach_fuzz", flags);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(ftruncate(fd, (off_t)size) == 0);
	FUZZ_CHECK(size == 0 || pwrite(fd, file, size, 0) == (ssize_t)size);
	int seals = 0;
	switch (kind) {
	case FD_SEALED:
		seals = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
		break;
	case FD_GROW_ONLY:
		seals = F_SEAL_GROW;
		break;
	case FD_SHRINK_ONLY:
		seals = F_SEAL_SHRINK;
		break;
	case FD_GROW_SHRINK:
		seals = F_SEAL_GROW | F_SEAL_SHRINK;
		break;
	case FD_WRITE_SEALED:
		seals = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE;
		break;
	default:
		break;
	}
	if (seals)
		FUZZ_CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0);
	return fd;
}

/* Bit per error that the documentation allows for this input. */
enum {
	ALLOW_SEALS = 1 << 0,
	ALLOW_SIZE = 1 << 1,
	ALLOW_MAGIC = 1 << 2,
	ALLOW_VERSION = 1 << 3,
	ALLOW_KIND = 1 << 4,
	ALLOW_GENERATION = 1 << 5,
	ALLOW_EPERM = 1 << 6, /* mmap of a write-sealed memfd */
};

static unsigned allowed_errors(const struct control *c, const uint8_t *file,
                               size_t size, const struct nc_region_expect *e)
{
	unsigned allow = 0;
	if (c->fd_kind != FD_SEALED && c->fd_kind != FD_GROW_SHRINK &&
	    c->fd_kind != FD_WRITE_SEALED)
		allow |= ALLOW_SEALS;
	if (c->fd_kind == FD_WRITE_SEALED)
		allow |= ALLOW_EPERM;
	if (size < HDR_SIZE)
		return allow | ALLOW_SIZE; /* no header to look at */
	struct nc_region_header h;
	memcpy(&h, file, sizeof(h));
	if (h.magic != NC_REGION_MAGIC)
		allow |= ALLOW_MAGIC;
	if (h.version != NC_REGION_VERSION || h.header_size != HDR_SIZE)
		allow |= ALLOW_VERSION;
	if (h.size != size)
		allow |= ALLOW_SIZE;
	if (e == NULL)
		return allow;
	if (e->size != 0 && e->size != size)
		allow |= ALLOW_SIZE;
	if (e->kind != 0 && e->kind != h.kind)
		allow |= ALLOW_KIND;
	if (e->generation != 0 && e->generation != h.generation)
		allow |= ALLOW_GENERATION;
	return allow;
}

static unsigned error_bit(int err)
{
	switch (err) {
	case -NC_ESEALS:
		return ALLOW_SEALS;
	case -NC_ESIZE:
		return ALLOW_SIZE;
	case -NC_EMAGIC:
		return ALLOW_MAGIC;
	case -NC_EVERSION:
		return ALLOW_VERSION;
	case -NC_EKIND:
		return ALLOW_KIND;
	case -NC_EGENERATION:
		return ALLOW_GENERATION;
	case -EPERM:
		return ALLOW_EPERM;
	default:
		return 0; /* never allowed */
	}
}

static void make_expect(const struct control *c, const uint8_t *file,
                        size_t size, struct nc_region_expect *e)
{
	struct nc_region_header h = {0};
	if (size >= HDR_SIZE)
		memcpy(&h, file, sizeof(h));
	switch (c->kind_mode) {
	case 0:
		e->kind = 0;
		break;
	case 1:
		e->kind = h.kind;
		break;
	case 2:
		e->kind = c->kind_in;
		break;
	default:
		e->kind = h.kind ^ (1u + (c->kind_in & 7));
		break;
	}
	switch (c->size_mode) {
	case 0:
		e->size = 0;
		break;
	case 1:
		e->size = size;
		break;
	case 2:
		e->size = (size_t)c->size_in;
		break;
	default:
		e->size = size + (size_t)(int8_t)c->size_in;
		break;
	}
	switch (c->gen_mode) {
	case 0:
		e->generation = 0;
		break;
	case 1:
		e->generation = h.generation;
		break;
	case 2:
		e->generation = c->gen_in;
		break;
	default:
		e->generation = h.generation + 1;
		break;
	}
}

/* One nc_region_at() call checked against the file we wrote. */
static void probe(const struct nc_region *r, const uint8_t *file, size_t size,
                  uint64_t offset, uint64_t len)
{
	const uint8_t *p = nc_region_at(r, offset, len);
	bool inside = offset <= size && len <= size - offset;
	FUZZ_CHECK((p != NULL) == inside);
	if (p == NULL)
		return;
	FUZZ_CHECK(p == (const uint8_t *)r->base + offset);
	if (len > 0) {
		FUZZ_CHECK(p[0] == file[offset]);
		FUZZ_CHECK(p[len - 1] == file[offset + len - 1]);
	}
}

/* Offsets and lengths near the interesting edges of a `size`-byte file. */
static uint64_t shape(unsigned how, uint64_t v, size_t size)
{
	switch (how & 3) {
	case 0:
		return v;
	case 1:
		return v % ((uint64_t)size + 2);
	case 2:
		return (uint64_t)size - (v % 4) + 1; /* size+1 down to size-2 */
	default:
		return UINT64_MAX - (v % 4);
	}
}

static void probe_all(const struct nc_region *r, const uint8_t *file,
                      size_t size, struct fuzz_input *in)
{
	const uint64_t s = size;
	/* clang-format off */
	const uint64_t edges[][2] = {
		{0, 0}, {0, s}, {s, 0}, {s, 1}, {s - 1, 1}, {1, s}, {0, s + 1},
		{s + 1, 0}, {UINT64_MAX, 1}, {1, UINT64_MAX}, {s, UINT64_MAX},
		{UINT64_MAX, 0}, {s / 2, s - s / 2}, {s / 2, s - s / 2 + 1},
	};
	/* clang-format on */
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		probe(r, file, size, edges[i][0], edges[i][1]);
	for (int i = 0; i < 32 && in->left > 0; i++) {
		uint8_t sel = fuzz_u8(in);
		uint64_t offset = shape(sel, fuzz_u64(in), size);
		uint64_t len = shape(sel >> 2, fuzz_u64(in), size);
		probe(r, file, size, offset, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	struct control c;
	read_control(&in, &c);
	const uint8_t *contents = in.p;
	size_t contents_len = in.left;

	size_t fsize = contents_len;
	if (!c.raw_size && fsize < HDR_SIZE)
		fsize = HDR_SIZE;
	fsize += c.extra;
	uint8_t *file = calloc(fsize ? fsize : 1, 1);
	FUZZ_CHECK(file != NULL);
	memcpy(file, contents, contents_len);
	if (fsize >= HDR_SIZE) {
		struct nc_region_header h;
		memcpy(&h, file, sizeof(h));
		if (c.fix_magic)
			h.magic = NC_REGION_MAGIC;
		if (c.fix_version) {
			h.version = NC_REGION_VERSION;
			h.header_size = HDR_SIZE;
		}
		if (c.fix_size)
			h.size = fsize;
		memcpy(file, &h, sizeof(h));
	}

	uint64_t fds_before = fuzz_open_fds();
	int pipe_other;
	int fd = make_fd(c.fd_kind, file, fsize, &pipe_other);
	struct nc_region_expect expect;
	make_expect(&c, file, fsize, &expect);
	const struct nc_region_expect *e = c.no_expect ? NULL : &expect;
	unsigned allow = allowed_errors(&c, file, fsize, e);

	struct nc_region r;
	unsigned long vm_before = fuzz_vm_pages();
	int err = nc_region_attach(&r, fd, e);
	unsigned long vm_attached = fuzz_vm_pages();
	FUZZ_CHECK(nc_shm_strerror(err) != NULL);
	if (allow == 0) {
		if (err != 0)
			fprintf(stderr, "attach: unexpected %d (%s)\n", err,
			        nc_shm_strerror(err));
		FUZZ_CHECK(err == 0);
	} else {
		if (err == 0 || (error_bit(err) & allow) == 0)
			fprintf(stderr, "attach: got %d (%s), allowed 0x%x\n",
			        err, nc_shm_strerror(err), allow);
		FUZZ_CHECK(err < 0 && (error_bit(err) & allow) != 0);
	}

	if (err == 0) {
		struct nc_region_header h;
		memcpy(&h, file, sizeof(h));
		FUZZ_CHECK(r.size == fsize);
		FUZZ_CHECK(r.kind == h.kind);
		FUZZ_CHECK(r.generation == h.generation);
		FUZZ_CHECK(r.fd >= 0 && r.fd != fd);
		FUZZ_CHECK(r.base != NULL && r.base != MAP_FAILED);
		FUZZ_CHECK(nc_region_header(&r) == r.base);
		FUZZ_CHECK(memcmp(r.base, file, fsize) == 0);
		/* The peer rewrites the header's size: it must not matter. */
		h.size = c.scribble_size;
		memcpy(nc_region_header(&r), &h, sizeof(h));
		memcpy(file, &h, sizeof(h));
		/* Probes come from the contents after the header. */
		struct fuzz_input probes = {contents, contents_len};
		probes.p += contents_len < HDR_SIZE ? contents_len : HDR_SIZE;
		probes.left -= (size_t)(probes.p - contents);
		probe_all(&r, file, fsize, &probes);
	}

	close(fd);
	if (pipe_other >= 0)
		close(pipe_other);
	if (err != 0) {
		/* A failed attach leaves nothing to release. */
		FUZZ_CHECK(fuzz_open_fds() == fds_before);
		FUZZ_CHECK(vm_attached == vm_before);
		FUZZ_CHECK(r.base == NULL);
	} else {
		FUZZ_CHECK(vm_attached > vm_before);
	}
	nc_region_close(&r);
	FUZZ_CHECK(fuzz_vm_pages() == vm_before);
	FUZZ_CHECK(r.base == NULL && r.fd < 0);
	nc_region_close(&r); /* again: must be harmless */
	FUZZ_CHECK(fuzz_open_fds() == fds_before);
	free(file); /* last: the heap shrinking would change the VM size */
	return 0;
}

/* ------------------------------------------------------------ seed corpus */

/* clang-format off */

/* A good header for an 80-byte file: kind 7, generation 1. */
#define GOOD_HEADER \
	0x47, 0x52, 0x43, 0x4e,     /* magic "NCRG" */ \
	0x01, 0, 0, 0,              /* version */ \
	0x07, 0, 0, 0,              /* kind */ \
	0x50, 0, 0, 0,              /* header_size 80 */ \
	0x50, 0, 0, 0, 0, 0, 0, 0,  /* size 80 */ \
	0x01, 0, 0, 0, 0, 0, 0, 0,  /* generation */ \
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* layout */ \
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

/* 28 bytes of zeros: kind_in, size_in, gen_in, scribble_size. */
#define ZERO_PARAMS \
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

/* Sealed, literal good header, expectation matches everything. */
static const uint8_t seed_good[] = {0x00, 0x15, 0x00, ZERO_PARAMS,
				    GOOD_HEADER};
/* The same memfd, unsealed: must be refused. */
static const uint8_t seed_unsealed[] = {0x01, 0x15, 0x00, ZERO_PARAMS,
					GOOD_HEADER};
/* Good header, expecting another kind and the next generation. */
static const uint8_t seed_wrong_expect[] = {0x00, 0x33, 0x00, ZERO_PARAMS,
					    GOOD_HEADER};
/* Fixed-up header over two extra pages and 7 bytes; probes follow. */
static const uint8_t seed_probes[] = {
	0x38, 0x15, 0x12, ZERO_PARAMS, GOOD_HEADER,
	/* probe: offset % (size + 2), length % (size + 2) */
	0x05, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0,
	/* probe: offset near size, length raw */
	0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff};
/* Only the control bytes: zero header, fixed up, no expectation. */
static const uint8_t seed_fixed_no_expect[] = {0x78, 0x00, 0x01};
/* A file shorter than a header. */
static const uint8_t seed_short[] = {0x80, 0x00, 0x00, ZERO_PARAMS,
				     0x47, 0x52, 0x43, 0x4e, 0x01};
/* Not a memfd. */
static const uint8_t seed_pipe[] = {0x07};
/* Write-sealed memfd: cannot be mapped for writing. */
static const uint8_t seed_write_sealed[] = {0x3d, 0x15, 0x00};
/* Grow and shrink sealed, not sealed against more seals: fine. */
static const uint8_t seed_grow_shrink[] = {0x3c, 0x15, 0x01};

/* clang-format on */

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_good),
    FUZZ_SEED(seed_unsealed),
    FUZZ_SEED(seed_wrong_expect),
    FUZZ_SEED(seed_probes),
    FUZZ_SEED(seed_fixed_no_expect),
    FUZZ_SEED(seed_short),
    FUZZ_SEED(seed_pipe),
    FUZZ_SEED(seed_write_sealed),
    FUZZ_SEED(seed_grow_shrink),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
