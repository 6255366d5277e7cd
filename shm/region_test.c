/*
 * Region behaviour: create, attach, and every refusal an attacher must make
 * (wrong magic, version, size, kind, generation; an unsealed memfd), each
 * with its own error and message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm/shm.h"

#define KIND 0x70687921u

static struct nc_region owner;

static int setup(void **state)
{
	(void)state;
	assert_int_equal(nc_region_create(&owner, "region_test", 10000, KIND),
	                 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nc_region_close(&owner);
	return 0;
}

static int attach_expecting(size_t size, uint32_t kind, uint64_t generation)
{
	struct nc_region peer;
	struct nc_region_expect e = {
	    .kind = kind, .size = size, .generation = generation};
	int err = nc_region_attach(&peer, owner.fd, &e);
	if (err == 0)
		nc_region_close(&peer);
	return err;
}

static void create_rounds_up_and_writes_the_header(void **state)
{
	(void)state;
	struct nc_region_header *h = nc_region_header(&owner);
	assert_int_equal(owner.size % (size_t)sysconf(_SC_PAGESIZE), 0);
	assert_true(owner.size >= 10000);
	assert_int_equal(h->magic, NC_REGION_MAGIC);
	assert_int_equal(h->version, NC_REGION_VERSION);
	assert_int_equal(h->kind, KIND);
	assert_int_equal(h->size, owner.size);
	assert_int_equal(h->generation, 1);
}

static void peer_sees_the_owners_bytes(void **state)
{
	(void)state;
	struct nc_region peer;
	assert_int_equal(nc_region_attach(&peer, owner.fd, NULL), 0);
	assert_int_not_equal(peer.fd, owner.fd);
	char *mine = nc_region_at(&owner, 5000, 5);
	memcpy(mine, "hello", 5);
	assert_memory_equal(nc_region_at(&peer, 5000, 5), "hello", 5);
	assert_int_equal(peer.kind, KIND);
	assert_int_equal(peer.generation, 1);
	nc_region_close(&peer);
	nc_region_close(&peer); /* idempotent */
}

static void attach_checks_every_expectation(void **state)
{
	(void)state;
	assert_int_equal(attach_expecting(owner.size, KIND, 1), 0);
	assert_int_equal(attach_expecting(0, 0, 0), 0);
	assert_int_equal(attach_expecting(owner.size * 2, 0, 0), -NC_ESIZE);
	assert_int_equal(attach_expecting(0, KIND + 1, 0), -NC_EKIND);
	assert_int_equal(attach_expecting(0, 0, 2), -NC_EGENERATION);
}

static void wrong_magic_is_refused(void **state)
{
	(void)state;
	nc_region_header(&owner)->magic ^= 1;
	assert_int_equal(attach_expecting(0, 0, 0), -NC_EMAGIC);
	assert_non_null(strstr(nc_shm_strerror(-NC_EMAGIC), "magic"));
}

static void wrong_version_is_refused(void **state)
{
	(void)state;
	nc_region_header(&owner)->version = NC_REGION_VERSION + 1;
	assert_int_equal(attach_expecting(0, 0, 0), -NC_EVERSION);
	assert_non_null(strstr(nc_shm_strerror(-NC_EVERSION), "version"));
}

static void header_size_disagreeing_with_file_is_refused(void **state)
{
	(void)state;
	nc_region_header(&owner)->size = owner.size + 4096;
	assert_int_equal(attach_expecting(0, 0, 0), -NC_ESIZE);
	assert_non_null(strstr(nc_shm_strerror(-NC_ESIZE), "size"));
}

static void reinit_bumps_generation_and_refuses_old_attachers(void **state)
{
	(void)state;
	memset(nc_region_at(&owner, 4096, 16), 0xab, 16);
	assert_int_equal(nc_region_reinit(&owner), 2);
	assert_int_equal(nc_region_header(&owner)->generation, 2);
	const unsigned char *p = nc_region_at(&owner, 4096, 16);
	assert_int_equal(p[0], 0);
	assert_int_equal(attach_expecting(0, 0, 1), -NC_EGENERATION);
	assert_int_equal(attach_expecting(0, 0, 2), 0);
	assert_non_null(strstr(nc_shm_strerror(-NC_EGENERATION), "generation"));
}

static void unsealed_memfd_is_refused(void **state)
{
	(void)state;
	int fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	struct nc_region peer;
	assert_int_equal(nc_region_attach(&peer, fd, NULL), -NC_ESEALS);
	/* Sealing only against growth is not enough: shrinking means SIGBUS. */
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), 0);
	assert_int_equal(nc_region_attach(&peer, fd, NULL), -NC_ESEALS);
	close(fd);
	assert_non_null(strstr(nc_shm_strerror(-NC_ESEALS), "sealed"));
}

static void memfd_cannot_be_resized_after_create(void **state)
{
	(void)state;
	assert_int_equal(ftruncate(owner.fd, 1), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(owner.fd, (off_t)owner.size * 2), -1);
	assert_int_equal(errno, EPERM);
}

static void region_at_refuses_ranges_outside(void **state)
{
	(void)state;
	assert_non_null(nc_region_at(&owner, 0, owner.size));
	assert_non_null(nc_region_at(&owner, owner.size, 0));
	assert_null(nc_region_at(&owner, owner.size, 1));
	assert_null(nc_region_at(&owner, 1, owner.size));
	assert_null(nc_region_at(&owner, UINT64_MAX, 2));
	assert_null(nc_region_at(&owner, 8, UINT64_MAX - 4));
}

static void params_round_trip_and_oversized_words_are_refused(void **state)
{
	(void)state;
	uint32_t in[4] = {1, 2, 3, UINT32_MAX}, out[4];
	nc_region_set_params(&owner, in, 4);
	assert_int_equal(nc_region_get_params(&owner, out, 4), 0);
	assert_memory_equal(in, out, sizeof(in));
	/* A peer writes a word no 32-bit parameter can hold. */
	nc_region_header(&owner)->layout[2] = 1ull << 40;
	assert_int_equal(nc_region_get_params(&owner, out, 4), -NC_ELAYOUT);
	assert_int_equal(nc_region_get_params(&owner, out, 7), -NC_ELAYOUT);
}

static void strerror_covers_errno_values(void **state)
{
	(void)state;
	assert_string_equal(nc_shm_strerror(-ENOENT), strerror(ENOENT));
	assert_non_null(strstr(nc_shm_strerror(-NC_ECORRUPT), "corrupt"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	    T(create_rounds_up_and_writes_the_header),
	    T(peer_sees_the_owners_bytes),
	    T(attach_checks_every_expectation),
	    T(wrong_magic_is_refused),
	    T(wrong_version_is_refused),
	    T(header_size_disagreeing_with_file_is_refused),
	    T(reinit_bumps_generation_and_refuses_old_attachers),
	    T(unsealed_memfd_is_refused),
	    T(memfd_cannot_be_resized_after_create),
	    T(region_at_refuses_ranges_outside),
	    T(params_round_trip_and_oversized_words_are_refused),
	    T(strerror_covers_errno_values),
#undef T
	};
	return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
