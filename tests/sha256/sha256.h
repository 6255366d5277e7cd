/* SHA-256 (FIPS 180-4) for tests that verify transfers end to end. */
#ifndef NETCORE_TESTS_SHA256_H
#define NETCORE_TESTS_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct nc_sha256 {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	size_t used;
};

void nc_sha256_init(struct nc_sha256 *s);
void nc_sha256_update(struct nc_sha256 *s, const void *data, size_t len);
void nc_sha256_final(struct nc_sha256 *s, uint8_t out[32]);

#endif
