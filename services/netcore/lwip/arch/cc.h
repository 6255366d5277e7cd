/*
 * netcore's lwIP port: compiler and platform glue (Linux, gcc or clang).
 *
 * lwIP includes this file from lwip/arch.h, before its own integer typedefs,
 * so only <stdint.h> types are used here. Everything it declares is
 * implemented in nc_lwip_port.c; the part meant for netcore's own code (the
 * clock and random-source hooks) is in nc_lwip_port.h.
 */
#ifndef NC_LWIP_ARCH_CC_H
#define NC_LWIP_ARCH_CC_H

#include <stdint.h>

/*
 * Byte order from the compiler itself, so that lwIP never falls back to its
 * little-endian default on a big-endian host. The C library may already have
 * defined BYTE_ORDER (glibc's <endian.h>), in which case its value stands.
 */
#ifndef BYTE_ORDER
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BYTE_ORDER BIG_ENDIAN
#else
#define BYTE_ORDER LITTLE_ENDIAN
#endif
#endif

/*
 * lwIP converts header fields with out-of-line functions from def.c unless
 * the port provides macros. A byte swap is a single instruction, and it runs
 * several times per packet, so let the compiler inline it.
 */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define lwip_htons(x) ((uint16_t)__builtin_bswap16((uint16_t)(x)))
#define lwip_htonl(x) ((uint32_t)__builtin_bswap32((uint32_t)(x)))
#endif

/* errno values, if lwIP ever needs them, are the C library's own. */
#define LWIP_ERRNO_STDINCLUDE 1

/*
 * A failed LWIP_ASSERT means lwIP's internal state is already inconsistent.
 * Carrying on would corrupt connections silently, so print where it failed
 * and abort(); the supervisor restarts the core.
 */
__attribute__((noreturn, cold)) void
nc_lwip_assert_fail(const char *msg, const char *file, int line);
#define LWIP_PLATFORM_ASSERT(msg) nc_lwip_assert_fail((msg), __FILE__, __LINE__)

/* Diagnostics (LWIP_DEBUGF when LWIP_DEBUG is on, stats display): stderr. */
__attribute__((format(printf, 1, 2))) void nc_lwip_diag(const char *fmt, ...);
#define LWIP_PLATFORM_DIAG(args)                                               \
	do {                                                                   \
		nc_lwip_diag args;                                             \
	} while (0)

/*
 * Randomness for lwIP (initial local ports, ND/MLD timers, TCP initial
 * sequence numbers through LWIP_HOOK_TCP_ISN in lwipopts.h): the kernel's
 * CSPRNG, replaceable for deterministic tests (nc_lwip_rand_set()).
 */
uint32_t nc_lwip_rand32(void);
#define LWIP_RAND() nc_lwip_rand32()

#endif /* NC_LWIP_ARCH_CC_H */
