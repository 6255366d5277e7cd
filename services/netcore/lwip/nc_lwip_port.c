/*
 * netcore's lwIP port: clock, randomness, assertions and diagnostics.
 * See nc_lwip_port.h and arch/cc.h.
 */
#include "services/netcore/lwip/nc_lwip_port.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "services/netcore/lwip/arch/cc.h"

/* ---- clock ---- */

static uint32_t monotonic_ms(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		/* Cannot happen on Linux; never hand lwIP a made-up time. */
		nc_lwip_assert_fail("clock_gettime(CLOCK_MONOTONIC) failed",
		                    __FILE__, __LINE__);
	}
	/* Truncation to 32 bits is intended: lwIP's time wraps. */
	return (uint32_t)((uint64_t)ts.tv_sec * 1000u +
	                  (uint64_t)ts.tv_nsec / 1000000u);
}

static nc_lwip_clock_fn clock_fn = monotonic_ms;
static void *clock_ctx;

void nc_lwip_clock_set(nc_lwip_clock_fn fn, void *ctx)
{
	clock_fn = fn != NULL ? fn : monotonic_ms;
	clock_ctx = fn != NULL ? ctx : NULL;
}

uint32_t nc_lwip_vclock_read(void *ctx)
{
	const struct nc_lwip_vclock *clk = ctx;

	return clk->now_ms;
}

uint32_t sys_now(void)
{
	return clock_fn(clock_ctx);
}

/* ---- randomness ---- */

/*
 * getrandom(2) costs a system call, and lwIP asks for randomness once per
 * TCP connection (the ISN), so draw it in batches. The pool lives in this
 * process only; the core is started with posix_spawn, never forked, so two
 * processes never share a batch.
 */
static uint32_t rand_pool[64];
static size_t rand_left;

static uint32_t kernel_rand32(void *ctx)
{
	(void)ctx;
	if (rand_left == 0) {
		size_t got = 0;

		while (got < sizeof(rand_pool)) {
			ssize_t n = getrandom((char *)rand_pool + got,
			                      sizeof(rand_pool) - got, 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				nc_lwip_assert_fail("getrandom() failed",
				                    __FILE__, __LINE__);
			}
			got += (size_t)n;
		}
		rand_left = sizeof(rand_pool) / sizeof(rand_pool[0]);
	}
	rand_left--;
	uint32_t v = rand_pool[rand_left];
	/* Do not leave used randomness lying around in memory. */
	rand_pool[rand_left] = 0;
	return v;
}

static nc_lwip_rand_fn rand_fn = kernel_rand32;
static void *rand_ctx;

void nc_lwip_rand_set(nc_lwip_rand_fn fn, void *ctx)
{
	rand_fn = fn != NULL ? fn : kernel_rand32;
	rand_ctx = fn != NULL ? ctx : NULL;
}

uint32_t nc_lwip_rand32(void)
{
	return rand_fn(rand_ctx);
}

/* ---- assertions and diagnostics ---- */

void nc_lwip_assert_fail(const char *msg, const char *file, int line)
{
	fprintf(stderr, "lwIP assertion failed at %s:%d: %s\n", file, line,
	        msg != NULL ? msg : "(no message)");
	fflush(stderr);
	abort();
}

void nc_lwip_diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}
