/* SHA-256 against the FIPS 180-4 examples and a split-update check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "tests/sha256/sha256.h"

static void hex(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void digest_of(const char *msg, char out[65])
{
	struct nc_sha256 s;
	uint8_t d[32];
	nc_sha256_init(&s);
	nc_sha256_update(&s, msg, strlen(msg));
	nc_sha256_final(&s, d);
	hex(d, out);
}

static void known_answers(void **state)
{
	(void)state;
	char out[65];
	digest_of("", out);
	assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb924"
	                         "27ae41e4649b934ca495991b7852b855");
	digest_of("abc", out);
	assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223"
	                         "b00361a396177a9cb410ff61f20015ad");
	digest_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	          out);
	assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039"
	                         "a33ce45964ff2167f6ecedd419db06c1");
}

static void split_updates_match_one_update(void **state)
{
	(void)state;
	static uint8_t data[100000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + (i >> 8));
	struct nc_sha256 one, many;
	uint8_t a[32], b[32];
	nc_sha256_init(&one);
	nc_sha256_update(&one, data, sizeof(data));
	nc_sha256_final(&one, a);
	nc_sha256_init(&many);
	for (size_t at = 0, n = 1; at < sizeof(data);
	     at += n, n = n * 3 % 997 + 1)
		nc_sha256_update(&many, data + at,
		                 at + n > sizeof(data) ? sizeof(data) - at : n);
	nc_sha256_final(&many, b);
	assert_memory_equal(a, b, 32);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(known_answers),
	    cmocka_unit_test(split_updates_match_one_update),
	};
	return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
