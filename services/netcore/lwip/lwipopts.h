/*
 * lwIP configuration for the netcore core.
 *
 * The stack runs in one process, in one event loop (NO_SYS=1), speaking raw
 * API only, over a single TUN interface that carries bare IPv4 and IPv6
 * packets (no link-layer header, no address resolution). Sizes are chosen for
 * throughput on a large-MTU TUN and for a few hundred concurrent connections;
 * each choice below says why. Option names and defaults: lwip/opt.h.
 *
 * Every translation unit that includes lwIP headers sees this file, so every
 * one of them must be built with the same compiler flags (the sanitizer
 * switch below depends on them).
 */
#ifndef NC_LWIPOPTS_H
#define NC_LWIPOPTS_H

/* ------------------------------------------------------------------------
 * Execution model
 * ------------------------------------------------------------------------ */

/*
 * No threads inside lwIP: the core's event loop calls into lwIP, and lwIP
 * calls back only from inside those calls. The port then needs nothing but
 * sys_now() (nc_lwip_port.h), and lwIP needs no locks.
 */
#define NO_SYS               1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_TIMERS          1

/* Raw (callback) API only; netconn and sockets need NO_SYS=0 threads. */
#define LWIP_CALLBACK_API 1
#define LWIP_EVENT_API    0
#define LWIP_NETCONN      0
#define LWIP_SOCKET       0
#define LWIP_NETIF_API    0
#define LWIP_ALTCP        0

/* ------------------------------------------------------------------------
 * Link: one point-to-point TUN interface
 * ------------------------------------------------------------------------ */

/*
 * The TUN MTU these sizes assume; the core sets netif->mtu to it. Most of
 * the cost of a packet, in lwIP and even more in the host kernel behind the
 * TUN, is per packet, not per byte, so the fewer packets per byte the better.
 * 65520 is the largest multiple of 16 within the 65535-byte limit of an IPv4
 * total length (and of lwIP's u16 packet lengths); pasta/passt use the same
 * default for the same reason.
 */
#define NC_LWIP_MTU 65520

/*
 * TUN frames are bare IP packets: no Ethernet header to reserve room for and
 * no ARP. (With IFF_VNET_HDR the phy driver adds the virtio-net header in its
 * own buffer; lwIP never sees it.) Keep packets written into pbufs at
 * MEM_ALIGNMENT-aligned offsets so lwIP's header accesses stay aligned.
 */
#define LWIP_ARP                     0
#define LWIP_ETHERNET                0
#define PBUF_LINK_HLEN               0
#define PBUF_LINK_ENCAPSULATION_HLEN 0

/*
 * Traffic between two sandboxes (or a sandbox and itself) addressed to the
 * stack's own address is looped inside lwIP instead of bouncing through the
 * host; a 127.0.0.1/::1 interface exists for the same reason. In NO_SYS mode
 * looped packets wait until the core calls netif_poll_all() from its loop.
 * The queue is capped so a UDP flood to ourselves cannot eat the heap.
 */
#define LWIP_NETIF_LOOPBACK     1
#define LWIP_HAVE_LOOPIF        1
#define LWIP_LOOPBACK_MAX_PBUFS 256
#define LWIP_SINGLE_NETIF       0

/*
 * Checksums are computed and checked in software by default, but each netif
 * can switch any of them off (NETIF_SET_CHECKSUM_CTRL), so that the core can
 * hand checksumming to the host kernel when the TUN uses virtio-net headers
 * (VIRTIO_NET_HDR_F_NEEDS_CSUM on transmit, F_DATA_VALID on receive). lwIP
 * processes an input packet synchronously, so the flags may even be set per
 * packet around netif->input() (for a fragmented datagram, the flags in
 * force when its last fragment arrives apply).
 */
#define LWIP_CHECKSUM_CTRL_PER_NETIF 1
#define CHECKSUM_GEN_IP              1
#define CHECKSUM_GEN_UDP             1
#define CHECKSUM_GEN_TCP             1
#define CHECKSUM_GEN_ICMP            1
#define CHECKSUM_GEN_ICMP6           1
#define CHECKSUM_CHECK_IP            1
#define CHECKSUM_CHECK_UDP           1
#define CHECKSUM_CHECK_TCP           1
#define CHECKSUM_CHECK_ICMP          1
#define CHECKSUM_CHECK_ICMP6         1
/*
 * Summing while copying in tcp_write() would be wasted work once the
 * checksum is offloaded, and lwIP's version is a copy followed by a second
 * pass anyway.
 */
#define LWIP_CHECKSUM_ON_COPY 0

/*
 * Receive zero-copy: the core may wrap a packet buffer of the phy region in
 * a custom pbuf (pbuf_alloced_custom) instead of copying it.
 */
#define LWIP_SUPPORT_CUSTOM_PBUF 1

/* ------------------------------------------------------------------------
 * IPv4
 * ------------------------------------------------------------------------ */

#define LWIP_IPV4  1
#define IP_FORWARD 0
/* The usual host default (lwIP's own is 255). */
#define IP_DEFAULT_TTL 64

/*
 * Fragments can still reach us from the Internet through the host (paths
 * with a 1500 or 1280-byte MTU). The pbuf cap is shared by all datagrams
 * being reassembled: 128 holds two of the largest datagrams cut for a
 * 1280-byte MTU (54 fragments each) plus smaller ones; 16 datagrams may be
 * in progress at once.
 */
#define IP_REASSEMBLY      1
#define IP_FRAG            1
#define IP_REASS_MAX_PBUFS 128
#define MEMP_NUM_REASSDATA 16

#define LWIP_ICMP           1
#define LWIP_BROADCAST_PING 0
#define LWIP_MULTICAST_PING 0

/* None of these exist on a TUN link with statically assigned addresses. */
#define LWIP_DHCP   0
#define LWIP_AUTOIP 0
#define LWIP_IGMP   0

/* ------------------------------------------------------------------------
 * IPv6
 * ------------------------------------------------------------------------ */

/*
 * On a TUN device the kernel does no neighbour discovery (the link has no
 * link-layer addresses), so lwIP needs none either: no duplicate address
 * detection (an address can be used at once; the core sets static addresses
 * to IP6_ADDR_PREFERRED), no router solicitation or SLAAC, no MLD reports, no
 * queueing of packets behind address resolution. Router advertisements must
 * not change the MTU behind the core's back. Slots: link-local + two static
 * addresses (e.g. ULA and global).
 *
 * Path MTU: lwIP 2.1 applies an ICMPv6 Packet Too Big only to destinations
 * in its neighbour-discovery cache, which only Ethernet output fills, so on
 * a TUN it never learns a path MTU below NC_LWIP_MTU. IPv6 TCP relies on the
 * MSS the peer announces (and on MSS clamping on the host if a tunnel with a
 * smaller MTU lies on the path). IPv4 is unaffected: lwIP never sets DF, so
 * routers fragment.
 */
#define LWIP_IPV6                     1
#define LWIP_IPV6_NUM_ADDRESSES       3
#define LWIP_IPV6_FORWARD             0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 0
#define LWIP_IPV6_AUTOCONFIG          0
#define LWIP_IPV6_ADDRESS_LIFETIMES   0
#define LWIP_IPV6_DHCP6               0
#define LWIP_IPV6_MLD                 0
#define LWIP_ND6_QUEUEING             0
#define LWIP_ND6_ALLOW_RA_UPDATES     0
#define LWIP_ICMP6                    1
/*
 * Large UDP datagrams still need IPv6 fragmentation/reassembly. On a 64-bit
 * host lwIP's reassembly bookkeeping (a pointer and two offsets) does not fit
 * in the 8-byte fragment header it would overwrite, so it keeps a copy of the
 * header instead (lwIP asserts this at run time).
 */
#define LWIP_IPV6_FRAG       1
#define LWIP_IPV6_REASS      1
#define IPV6_FRAG_COPYHEADER 1

/* ------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------ */

/* 64-bit host: lwIP structures hold pointers and must be 8-aligned. */
#define MEM_ALIGNMENT 8

/*
 * Under AddressSanitizer every lwIP allocation (pbufs, pcbs, segments) goes
 * through malloc()/free(), so that a use after free or an overflow of a pbuf
 * by our own code is caught instead of landing silently inside lwIP's pools.
 * Pool sizes below are then not enforced: a test that exhausts a pool on
 * purpose must check NC_LWIP_MALLOC_ALLOCATORS. Normal builds use lwIP's
 * fixed heap and pools: bounded memory, no malloc per packet.
 */
#if defined(__SANITIZE_ADDRESS__)
#define NC_LWIP_MALLOC_ALLOCATORS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NC_LWIP_MALLOC_ALLOCATORS 1
#endif
#endif
#ifndef NC_LWIP_MALLOC_ALLOCATORS
#define NC_LWIP_MALLOC_ALLOCATORS 0
#endif
#define MEM_LIBC_MALLOC NC_LWIP_MALLOC_ALLOCATORS
#define MEMP_MEM_MALLOC NC_LWIP_MALLOC_ALLOCATORS

/*
 * The heap holds what lwIP allocates with PBUF_RAM: above all, data queued
 * by tcp_write() (copied; unsent + unacknowledged, up to TCP_SND_BUF per
 * connection), plus outgoing ACKs, UDP and ICMP packets and loopback copies.
 * 64 MiB lets 64 connections keep a full send buffer at once; beyond that
 * tcp_write() returns ERR_MEM and the core retries from the sent callback.
 * It is one global cap on transmit memory, so the core should stop queueing
 * data well before it is full (lwip_stats.mem), leaving room for ACKs. The
 * array is in .bss: pages the heap never reaches cost nothing.
 */
#define MEM_SIZE (64 * 1024 * 1024)

/*
 * The packet pool: received packets the core copies in (pbuf_alloc(PBUF_RAW,
 * len, PBUF_POOL) chains pool buffers), and what TCP holds for reordering.
 * 16 KiB buffers: a maximal 65520-byte packet takes 4, an ACK wastes at most
 * 16 KiB for the moment it is processed. (A 64 KiB buffer is not possible:
 * lwIP stores a pool element's size, struct pbuf included, in a u16.)
 * 1024 buffers = 16 MiB: in-order data leaves lwIP as soon as the core copies
 * it to the client's ring, so the pool only has to cover packets in flight
 * through the core plus out-of-order segments; when it runs dry, lwIP frees
 * the out-of-order queues to refill it (PBUF_POOL_FREE_OOSEQ, done by the
 * next sys_check_timeouts()).
 */
#define PBUF_POOL_SIZE    1024
#define PBUF_POOL_BUFSIZE 16384

/*
 * pbuf headers without their own payload (PBUF_REF/ROM: IP fragments,
 * tcp_write() without copy, custom zero-copy pbufs). Small (~24 bytes).
 */
#define MEMP_NUM_PBUF 1024

/*
 * Protocol control blocks, sized for hundreds of sockets: 200+ established
 * connections plus the TIME_WAIT ones that closing them leaves behind (lwIP
 * recycles the oldest TIME_WAIT pcb when it runs out), listeners for many
 * sandboxed servers, and UDP sockets (resolvers open one per query). The
 * broker's quotas keep any one client well below these. A tcp_pcb is 320
 * bytes on x86-64, so 1024 of them cost 320 KiB.
 */
#define MEMP_NUM_TCP_PCB        1024
#define MEMP_NUM_TCP_PCB_LISTEN 256
#define MEMP_NUM_UDP_PCB        512

/*
 * Queued TCP segments (send queues and out-of-order queues of all
 * connections together). 32 bytes each; 8192 covers 200 connections with
 * ~40 segments queued each before tcp_write() reports ERR_MEM.
 */
#define MEMP_NUM_TCP_SEG 8192

/* lwIP's own timers, plus room for a few the core may arm (sys_timeout). */
#define MEMP_NUM_SYS_TIMEOUT (LWIP_NUM_SYS_TIMEOUT_INTERNAL + 8)

/* ------------------------------------------------------------------------
 * TCP
 * ------------------------------------------------------------------------ */

#define LWIP_TCP 1

/*
 * MSS: the largest payload whose segment fits one NC_LWIP_MTU packet even
 * with the 40-byte IPv6 header (65520 - 40 - 20 = 65460). One value for both
 * families: IPv4 could take 20 bytes more (0.03%), but this way no path can
 * build a packet over 65535 bytes, which lwIP's u16 lengths cannot express,
 * even on the loopback interface that has no MTU. lwIP still lowers it to
 * what the peer announces and what a smaller netif MTU allows.
 *
 * lwIP 2.1's TCP sanity checks reject an MSS of 16 KiB or more (for the sake
 * of a netconn low-water mark kept in a u16, which the raw API never uses),
 * so they are disabled here and the checks that matter are repeated at the
 * end of this file.
 */
#define TCP_MSS                        (NC_LWIP_MTU - 40 - 20)
#define TCP_CALCULATE_EFF_SEND_MSS     1
#define LWIP_DISABLE_TCP_SANITY_CHECKS 1

/*
 * Windows: 1 MiB each way. Throughput needs a window of at least bandwidth x
 * round-trip time; through the phy driver, the core and the client, rings
 * and wake-ups included, we expect a round trip of 100-200 us, and 1 MiB
 * covers 40 Gbit/s x 200 us. That is 16 full-size segments in flight, enough
 * for ACK clocking and fast retransmit.
 *
 * The receive window is a promise, not memory set aside: in-order data is
 * handed to the core at once, and the core opens the window again
 * (tcp_recved) as the client drains its ring. Window scaling is required for
 * any window above 64 KiB; a shift of 6 allows up to 4 MiB, so TCP_WND can
 * be raised without touching it (granularity 64 bytes, irrelevant at these
 * sizes). SYN segments still carry an unscaled window of at most 65535.
 */
#define LWIP_WND_SCALE 1
#define TCP_RCV_SCALE  6
#define TCP_WND        (1024 * 1024)
#define TCP_SND_BUF    (1024 * 1024)

/*
 * Send queue limit in pbufs, per connection. A full-size tcp_write() makes
 * one pbuf per segment (16 for TCP_SND_BUF); small writes make more. 256
 * bounds what one chatty connection can take out of MEMP_NUM_TCP_SEG.
 * (tcp_sndbuf() itself reports at most 65535 bytes per call in lwIP 2.1; the
 * core calls tcp_write() repeatedly, ideally in tcp_mss()-sized pieces.)
 */
#define TCP_SND_QUEUELEN 256

/*
 * tcp_write() may allocate this much beyond the data it copies, so that the
 * next small write fills the same segment without a new pbuf. lwIP's
 * default (one MSS) would tie up 64 KiB of heap behind every small write
 * waiting for an ACK; 4 KiB keeps small writes cheap and costs bulk writes
 * at most one extra pbuf per segment.
 */
#define TCP_OVERSIZE 4096

/*
 * Keep out-of-order segments (a packet dropped by a full ring should not
 * cost the whole window) and tell the sender what we hold (SACK blocks in
 * our ACKs), so that Linux retransmits only the hole. lwIP does not use the
 * peer's SACKs itself.
 */
#define TCP_QUEUE_OOSEQ       1
#define LWIP_TCP_SACK_OUT     1
#define LWIP_TCP_MAX_SACK_NUM 4

/*
 * Timestamps would cost 12 bytes per segment and buy nothing on a link with
 * no reordering (RTT is measured without them; PAWS protects only against
 * segments older than a sequence-number wrap).
 */
#define LWIP_TCP_TIMESTAMPS 0

/* Per-listener backlog, so that pending connections can be limited per
 * client (the broker's quota). */
#define TCP_LISTEN_BACKLOG         1
#define TCP_DEFAULT_LISTEN_BACKLOG 0xff

/* SO_KEEPALIVE with per-socket idle/interval/count, for clients that ask. */
#define LWIP_TCP_KEEPALIVE 1

/*
 * SO_REUSEADDR: a listener can be re-created on its port while connections
 * that the previous one accepted are still in TIME_WAIT (a client restarting
 * its server, or the core restoring listeners).
 */
#define SO_REUSE 1

/*
 * Initial sequence numbers: lwIP's default is a counter advanced by its
 * timer, which an off-path attacker can predict. Take 32 random bits per
 * connection instead (arch/cc.h: the kernel's CSPRNG). Unlike RFC 6528's
 * clock-plus-hash scheme, random ISNs do not increase for a reused 4-tuple;
 * that only matters when a 4-tuple comes back within TIME_WAIT, and lwIP
 * takes local ports in sequence from a random start, so it rarely does.
 */
#define LWIP_HOOK_TCP_ISN(local_ip, local_port, remote_ip, remote_port)        \
	nc_lwip_rand32()

/*
 * Every TCP segment that matched a pcb passes nc_lwip_tcp_inpacket() first
 * (nc_lwip_port.h): it drops segments that would reach an assertion in
 * lwIP 2.1.3's receive path, which a remote peer could otherwise use to
 * abort the core (see the function).
 */
struct tcp_pcb;
struct tcp_hdr;
struct pbuf;
int nc_lwip_tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr,
			 struct pbuf *p);
#define LWIP_HOOK_TCP_INPACKET_PCB(pcb, hdr, optlen, opt1len, opt2, p)         \
	nc_lwip_tcp_inpacket((pcb), (hdr), (p))

/* ------------------------------------------------------------------------
 * UDP, raw IP and application protocols
 * ------------------------------------------------------------------------ */

#define LWIP_UDP     1
#define LWIP_UDPLITE 0
/* No raw sockets for sandboxed programs (yet); raw.c is not built. */
#define LWIP_RAW 0
/* Name resolution is the application's business (UDP/TCP to a resolver). */
#define LWIP_DNS 0

/* ------------------------------------------------------------------------
 * Statistics and debugging
 * ------------------------------------------------------------------------ */

/*
 * Counters per protocol and per pool, read by the core from lwip_stats for
 * its status output. 32-bit counters: 16-bit ones wrap within seconds at
 * line rate.
 */
#define LWIP_STATS         1
#define LWIP_STATS_LARGE   1
#define LWIP_STATS_DISPLAY 0
#define LINK_STATS         1
#define IP_STATS           1
#define IPFRAG_STATS       1
#define ICMP_STATS         1
#define UDP_STATS          1
#define TCP_STATS          1
#define MEM_STATS          1
#define MEMP_STATS         1
#define IP6_STATS          1
#define ICMP6_STATS        1
#define IP6_FRAG_STATS     1
#define ND6_STATS          1
#define SYS_STATS          0
#define ETHARP_STATS       0
#define IGMP_STATS         0
#define MLD6_STATS         0
#define MIB2_STATS         0

/*
 * LWIP_ASSERT stays on in every build (LWIP_NOASSERT is never defined): a
 * broken invariant aborts the core with a message (arch/cc.h) rather than
 * letting it run on with corrupt state. LWIP_DEBUG stays off: its messages
 * are for stepping through lwIP, not for production.
 */

/* ------------------------------------------------------------------------
 * Consistency checks (in place of lwIP's disabled TCP sanity checks)
 * ------------------------------------------------------------------------ */

#if NC_LWIP_MTU > 65535
#error "netif->mtu and IP packet lengths are 16-bit"
#endif
#if TCP_MSS + 40 + 20 > NC_LWIP_MTU
#error "a full-size IPv6 TCP segment must fit in NC_LWIP_MTU"
#endif
#if TCP_WND < 2 * TCP_MSS
#error "TCP_WND must hold at least two full-size segments"
#endif
#if TCP_WND > (0xFFFF << TCP_RCV_SCALE)
#error "TCP_WND does not fit the window field with TCP_RCV_SCALE"
#endif
#if TCP_SND_BUF < 2 * TCP_MSS
#error "TCP_SND_BUF must hold at least two full-size segments"
#endif
#if TCP_SND_QUEUELEN < 2 * (TCP_SND_BUF / TCP_MSS) || TCP_SND_QUEUELEN > 0xFFFF
#error "TCP_SND_QUEUELEN cannot cover TCP_SND_BUF (or overflows a u16)"
#endif
#if MEMP_NUM_TCP_SEG < TCP_SND_QUEUELEN
#error "one connection's send queue must fit in MEMP_NUM_TCP_SEG"
#endif
#if TCP_OVERSIZE > TCP_MSS
#error "TCP_OVERSIZE beyond one MSS is never used"
#endif
/* A pool element (struct pbuf, < 64 bytes, plus the buffer) is sized in a
 * u16. */
#if PBUF_POOL_BUFSIZE + 64 > 0xFFFF
#error "PBUF_POOL_BUFSIZE too large for lwIP's 16-bit pool element size"
#endif
#if PBUF_POOL_BUFSIZE <= 40 + 20
#error "the first pool buffer of a packet must hold its IP and TCP headers"
#endif
#if TCP_WND > PBUF_POOL_SIZE * (PBUF_POOL_BUFSIZE - 40 - 20)
#error "one connection's receive window must fit in the packet pool"
#endif

#endif /* NC_LWIPOPTS_H */
