/*
 * netcore's lwIP port: the time and randomness lwIP runs on.
 *
 * lwIP (NO_SYS=1) asks the port for two things that must be controllable in
 * tests: the current time, sys_now(), which drives every lwIP timer
 * (retransmission, delayed ACK, TIME_WAIT, keepalive, reassembly, ND), and
 * random numbers (local ports, TCP initial sequence numbers). Both default to
 * the real thing and can be replaced by a function of the caller's choosing:
 *
 *	static struct nc_lwip_vclock clk = {.now_ms = 0};
 *	nc_lwip_clock_set(nc_lwip_vclock_read, &clk);   // before lwip_init()
 *	lwip_init();
 *	...
 *	clk.now_ms += 250;        // time passes only when the test says so
 *	sys_check_timeouts();     // lwIP runs the timers that became due
 *
 * Like the rest of lwIP, none of this is thread-safe: call it from the thread
 * that runs lwIP.
 */
#ifndef NC_LWIP_PORT_H
#define NC_LWIP_PORT_H

#include <stdint.h>

/*
 * A time source: milliseconds on a monotonic clock with an arbitrary origin.
 * The value may wrap around 2^32; lwIP compares times by difference. It must
 * never go backwards.
 */
typedef uint32_t (*nc_lwip_clock_fn)(void *ctx);

/*
 * Makes sys_now() return fn(ctx). fn == NULL restores the default,
 * CLOCK_MONOTONIC in milliseconds. lwIP stamps each pending timeout with the
 * clock it was armed with, so choose the clock before lwip_init() and keep it.
 */
void nc_lwip_clock_set(nc_lwip_clock_fn fn, void *ctx);

/* A virtual clock: sys_now() returns now_ms, which only its owner advances. */
struct nc_lwip_vclock {
	uint32_t now_ms;
};

/* nc_lwip_clock_fn for a struct nc_lwip_vclock passed as ctx. */
uint32_t nc_lwip_vclock_read(void *ctx);

/*
 * The time lwIP sees, in milliseconds (the symbol lwIP requires with
 * NO_SYS=1; the same type as lwIP's u32_t).
 */
uint32_t sys_now(void);

/* A random source: 32 uniformly random bits per call. */
typedef uint32_t (*nc_lwip_rand_fn)(void *ctx);

/*
 * Makes LWIP_RAND() return fn(ctx). fn == NULL restores the default, the
 * kernel's CSPRNG (getrandom(2)). Only tests should replace it: TCP initial
 * sequence numbers come from here and must be unpredictable in production.
 */
void nc_lwip_rand_set(nc_lwip_rand_fn fn, void *ctx);

/* 32 random bits from the current source (what LWIP_RAND() expands to). */
uint32_t nc_lwip_rand32(void);

#endif /* NC_LWIP_PORT_H */
