/*
 * Compile-time checks of what lwipopts.h assumes about lwIP's own types.
 * lwipopts.h checks what it can with the preprocessor; these need sizeof and
 * lwIP's typedefs. Nothing here generates code.
 */
#include "lwip/mem.h"
#include "lwip/opt.h"
#include "lwip/pbuf.h"
#include "lwip/prot/ip6.h"
#include "lwip/prot/tcp.h"
#include "lwip/stats.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"

/* Declares sys_now() as well: a type mismatch with lwip/sys.h fails here. */
#include "services/netcore/lwip/nc_lwip_port.h"

/* lwIP records the size of a pool element (struct pbuf + buffer) in a u16. */
_Static_assert(LWIP_MEM_ALIGN_SIZE(sizeof(struct pbuf)) +
                       LWIP_MEM_ALIGN_SIZE(PBUF_POOL_BUFSIZE) <=
                   0xFFFF,
               "PBUF_POOL_BUFSIZE overflows lwIP's 16-bit pool element size");

/* Windows above 64 KiB need the 32-bit window type of LWIP_WND_SCALE. */
_Static_assert(sizeof(tcpwnd_size_t) == 4, "TCP windows must be 32-bit");

/* A heap above 64 KiB needs heap offsets of 32 bits or more. */
_Static_assert(sizeof(mem_size_t) >= 4, "MEM_SIZE needs a 32-bit mem_size_t");

/* Packet and window arithmetic in the core relies on these widths. */
_Static_assert(sizeof(((struct pbuf *)0)->tot_len) == 2,
               "lwIP packet lengths are expected to be 16-bit");
_Static_assert(TCP_MSS + IP6_HLEN + TCP_HLEN <= NC_LWIP_MTU,
               "a full IPv6 TCP segment must fit NC_LWIP_MTU");
