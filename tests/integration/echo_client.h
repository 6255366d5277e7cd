/*
 * A kernel-side echo client for integration tests: pushes a known byte
 * pattern through a TCP echo server and verifies every byte that comes
 * back, reading and writing at once so neither side's window stalls.
 */
#ifndef NETCORE_TESTS_ECHO_CLIENT_H
#define NETCORE_TESTS_ECHO_CLIENT_H

#include <stdint.h>

struct nc_echo_run {
	uint64_t sent;
	uint64_t verified;
	int error;           /* 0, or the errno that ended the transfer */
	const char *problem; /* what went wrong, for the log */
};

/* Called whenever `verified` passes another `every` bytes. */
typedef void (*nc_echo_progress_fn)(uint64_t verified, void *ctx);

/* Connects to addr:port (v4 or v6 text) and moves `total` bytes. Gives up
 * if no byte moves for `stall_s` seconds. Returns 0 when every byte came
 * back right. */
int nc_echo_tcp(const char *addr, uint16_t port, uint64_t total, uint64_t every,
                nc_echo_progress_fn fn, void *ctx, int stall_s,
                struct nc_echo_run *run);

/* The byte at stream offset i. */
uint8_t nc_echo_pattern(uint64_t i);

#endif
