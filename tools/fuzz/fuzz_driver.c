/*
 * A libFuzzer stand-in for the Bazel suite: runs a target's
 * LLVMFuzzerTestOneInput over its in-code seed corpus and then over N
 * pseudo-random inputs from a fixed-seed xorshift generator (half random
 * bytes, half mutated seeds), so every run checks the same inputs.
 *
 *   fuzz_test                   seeds + $FUZZ_ITERATIONS inputs (default 4000)
 *   fuzz_test N                 seeds + N inputs
 *   fuzz_test FILE...           replays inputs, e.g. libFuzzer crash files
 *   fuzz_test --write-seeds DIR writes the seeds to DIR/seed-K (tools/fuzz.sh)
 *
 * Each input sits in a heap block of exactly its size, so ASan catches a
 * target that reads past the end of it.
 */
#include "tools/fuzz/fuzz.h"

#include <errno.h>
#include <stdbool.h>

enum { DEFAULT_ITERATIONS = 4000, MAX_INPUT = 1024 };

static uint64_t rng_state = 0x6e6574636f726531ull; /* "netcore1" */

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static size_t rng_below(size_t n)
{
	return n == 0 ? 0 : (size_t)(rng_next() % n);
}

static void run_one(const uint8_t *data, size_t size)
{
	/* An exact-size copy: ASan's redzone starts right after the input. */
	uint8_t *copy = malloc(size ? size : 1);
	FUZZ_CHECK(copy != NULL);
	if (size)
		memcpy(copy, data, size);
	LLVMFuzzerTestOneInput(copy, size);
	free(copy);
}

/* Small inputs are most of libFuzzer's too; lengths skew short. */
static size_t random_length(void)
{
	switch (rng_below(4)) {
	case 0:
		return rng_below(16);
	case 1:
		return rng_below(128);
	default:
		return rng_below(MAX_INPUT + 1);
	}
}

static size_t random_input(uint8_t *buf)
{
	size_t len = random_length();
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rng_next();
	return len;
}

/* A seed with a few byte-level edits: keeps the structure seeds encode. */
static size_t mutated_seed(uint8_t *buf)
{
	const struct fuzz_seed *s = &fuzz_seeds[rng_below(fuzz_seed_count)];
	size_t len = s->size > MAX_INPUT ? MAX_INPUT : s->size;
	memcpy(buf, s->data, len);
	size_t edits = 1 + rng_below(6);
	for (size_t e = 0; e < edits; e++) {
		size_t at = rng_below(len + 1);
		switch (rng_below(6)) {
		case 0: /* flip a bit */
			if (at < len)
				buf[at] ^= (uint8_t)(1u << rng_below(8));
			break;
		case 1: /* set a random byte */
			if (at < len)
				buf[at] = (uint8_t)rng_next();
			break;
		case 2: /* set an interesting byte */
			if (at < len) {
				static const uint8_t interesting[] = {
				    0, 1, 2, 0x7f, 0x80, 0xfe, 0xff};
				buf[at] =
				    interesting[rng_below(sizeof(interesting))];
			}
			break;
		case 3: /* insert a random byte */
			if (len < MAX_INPUT) {
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = (uint8_t)rng_next();
				len++;
			}
			break;
		case 4: /* delete a byte */
			if (at < len) {
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
			}
			break;
		default: /* truncate */
			len = at;
			break;
		}
	}
	return len;
}

static int write_seeds(const char *dir)
{
	for (size_t i = 0; i < fuzz_seed_count; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/seed-%zu", dir, i);
		FILE *f = fopen(path, "wb");
		if (f == NULL ||
		    fwrite(fuzz_seeds[i].data, 1, fuzz_seeds[i].size, f) !=
		        fuzz_seeds[i].size ||
		    fclose(f) != 0) {
			fprintf(stderr, "fuzz: cannot write %s\n", path);
			return 1;
		}
	}
	printf("fuzz: wrote %zu seeds to %s\n", fuzz_seed_count, dir);
	return 0;
}

static int replay_files(int argc, char **argv)
{
	static uint8_t buf[1 << 20];
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (f == NULL) {
			fprintf(stderr, "fuzz: cannot open %s\n", argv[i]);
			return 1;
		}
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		run_one(buf, len);
		printf("fuzz: %s (%zu bytes) ok\n", argv[i], len);
	}
	return 0;
}

static bool parse_count(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	long iterations = DEFAULT_ITERATIONS;
	const char *env = getenv("FUZZ_ITERATIONS");
	if (env != NULL && !parse_count(env, &iterations)) {
		fprintf(stderr, "fuzz: bad FUZZ_ITERATIONS=%s\n", env);
		return 2;
	}
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	if (argc >= 2 && !parse_count(argv[1], &iterations))
		return replay_files(argc, argv);

	for (size_t i = 0; i < fuzz_seed_count; i++)
		run_one(fuzz_seeds[i].data, fuzz_seeds[i].size);

	static uint8_t buf[MAX_INPUT];
	for (long i = 0; i < iterations; i++) {
		size_t len = (i & 1) && fuzz_seed_count > 0 ? mutated_seed(buf)
		                                            : random_input(buf);
		run_one(buf, len);
	}
	printf("fuzz: %ld inputs ok\n", (long)fuzz_seed_count + iterations);
	return 0;
}
