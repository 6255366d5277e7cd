/*
 * fuzz: what all of netcore's fuzz targets share (//tools/fuzz:driver).
 *
 * Each target (e.g. shm/fuzz/NAME_fuzz.c, services/netcore/fuzz/NAME_fuzz.c)
 * defines LLVMFuzzerTestOneInput() and an in-code seed corpus. The same
 * object links either with libFuzzer (tools/fuzz.sh, clang) or with
 * fuzz_driver.c, a plain main that replays the seeds and a fixed
 * pseudo-random corpus (the Bazel cc_tests).
 *
 * Targets check their properties with FUZZ_CHECK, never assert(): it stays
 * on under NDEBUG and aborts, which both libFuzzer and Bazel see as a crash.
 */
#ifndef NETCORE_TOOLS_FUZZ_FUZZ_H
#define NETCORE_TOOLS_FUZZ_FUZZ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libFuzzer's entry point: runs one input; always returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One input of a target's in-code seed corpus. */
struct fuzz_seed {
	const uint8_t *data;
	size_t size;
};

/* Each target defines its seed corpus (used by fuzz_driver.c, and written
 * out as libFuzzer's starting corpus by tools/fuzz.sh). */
extern const struct fuzz_seed fuzz_seeds[];
extern const size_t fuzz_seed_count;

#define FUZZ_SEED(array)                                                       \
	{                                                                      \
		(array), sizeof(array)                                         \
	}

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n",      \
			        __FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/* Consumes the fuzz input front to back; reads past the end yield zeros. */
struct fuzz_input {
	const uint8_t *p;
	size_t left;
};

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
	if (in->left == 0)
		return 0;
	in->left--;
	return *in->p++;
}

static inline uint16_t fuzz_u16(struct fuzz_input *in)
{
	uint16_t v = fuzz_u8(in);
	return (uint16_t)(v | (uint16_t)fuzz_u8(in) << 8);
}

static inline uint32_t fuzz_u32(struct fuzz_input *in)
{
	uint32_t v = fuzz_u16(in);
	return v | (uint32_t)fuzz_u16(in) << 16;
}

static inline uint64_t fuzz_u64(struct fuzz_input *in)
{
	uint64_t v = fuzz_u32(in);
	return v | (uint64_t)fuzz_u32(in) << 32;
}

/* Copies up to `n` input bytes to `out`; returns how many there were. */
static inline size_t fuzz_bytes(struct fuzz_input *in, void *out, size_t n)
{
	if (n > in->left)
		n = in->left;
	memcpy(out, in->p, n);
	in->p += n;
	in->left -= n;
	return n;
}

/*
 * Which of the file descriptors 0-63 are open, one bit each. Equal before
 * and after one input means the input closed everything it opened (new
 * fds take the lowest free numbers, so a leak shows up here; and fuzzers
 * run millions of inputs in one process, so a leak per input soon exhausts
 * the table).
 */
static inline uint64_t fuzz_open_fds(void)
{
	uint64_t open_fds = 0;
	for (int fd = 0; fd < 64; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			open_fds |= 1ull << fd;
	}
	return open_fds;
}

/* The process's virtual size in pages (first field of /proc/self/statm):
 * a mapping that is never unmapped shows up here. */
static inline unsigned long fuzz_vm_pages(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	FUZZ_CHECK(n > 0);
	buf[n] = '\0';
	return strtoul(buf, NULL, 10);
}

/* A config parser's refusal of `data` names a line of it: "line N: why",
 * N within the input, and a reason after. */
static inline void fuzz_check_line_error(const char *err, const uint8_t *data,
                                         size_t size)
{
	unsigned lines = 1, line = 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	int used = 0;
	FUZZ_CHECK(sscanf(err, "line %u: %n", &line, &used) == 1 && used > 0);
	FUZZ_CHECK(line >= 1 && line <= lines);
	FUZZ_CHECK(err[used] != '\0');
}

#endif /* NETCORE_TOOLS_FUZZ_FUZZ_H */
