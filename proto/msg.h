/*
 * Control messages: client <-> broker (over the attach socket, a unix
 * SOCK_SEQPACKET socket) and broker <-> core (over nng req/rep).
 *
 * Fixed layout, one size for every request and one for every reply, native
 * byte order (all parties share a host), versioned. Request ids only
 * increase per sender; a reply carries its request's id and type. Every
 * reply carries an errno-compatible result: >= 0 success, < 0 is -errno.
 * An unknown type, a wrong size, magic or version is answered with
 * -EPROTO (or, if not even the header is readable, the sender is
 * disconnected): never a crash. nc_msg_check() is the one validator for
 * all of them.
 *
 * Every control operation is non-blocking at the broker and the core:
 * accept answers -EAGAIN when nothing is queued and connect answers
 * -EINPROGRESS; a blocking call is libclient waiting for the socket's
 * events in the region and asking again.
 *
 * Broker -> core requests carry the client id (and the client's region
 * generation); the region memfd and doorbells themselves travel on a side
 * unix socket (nng cannot pass fds), see proxy_broker/README.md.
 */
#ifndef NETCORE_PROTO_MSG_H
#define NETCORE_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#define NC_MSG_MAGIC   0x4e434d53u /* "NCMS" */
#define NC_MSG_VERSION 2u

enum nc_msg_type {
	NC_MSG_ATTACH = 1,    /* client -> broker: hello; reply + fds */
	NC_MSG_SOCKET,        /* domain, type -> sock index, gen */
	NC_MSG_BIND,          /* sock, addr */
	NC_MSG_LISTEN,        /* sock, arg = backlog */
	NC_MSG_ACCEPT,        /* sock -> new sock index, gen, peer addr */
	NC_MSG_CONNECT,       /* sock, addr -> 0 or -EINPROGRESS */
	NC_MSG_SHUTDOWN,      /* sock, arg = SHUT_RD/WR/RDWR */
	NC_MSG_CLOSE,         /* sock */
	NC_MSG_SETSOCKOPT,    /* sock, level, optname, opt */
	NC_MSG_GETSOCKOPT,    /* sock, level, optname -> opt */
	NC_MSG_GETSOCKNAME,   /* sock -> addr */
	NC_MSG_GETPEERNAME,   /* sock -> addr */
	NC_MSG_CLIENT_ADD,    /* broker -> core: client's fds were sent */
	NC_MSG_CLIENT_REMOVE, /* broker -> core: client gone, close all */
	NC_MSG_REATTACH,      /* client -> broker: id, token; + its 3 fds */
	NC_MSG_CORE_HELLO,    /* broker -> core: -> core boot id (client) */
	NC_MSG_CLIENT_LIST,   /* broker -> core: first client id > client */
	NC_MSG_SOCK_LIST,     /* broker -> core: first socket >= sock */
	NC_MSG_TYPE_END
};

struct nc_msg_addr {
	uint16_t family; /* AF_INET, AF_INET6, or 0 */
	uint16_t port;   /* host order */
	uint32_t scope_id;
	uint8_t addr[16];
};

struct nc_msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type; /* enum nc_msg_type */
	uint32_t id;   /* request id; the reply repeats it */
	uint32_t size; /* sizeof the whole message */
};

#define NC_MSG_OPT_MAX 16

struct nc_msg_req {
	struct nc_msg_hdr hdr;
	uint32_t client; /* broker -> core: client id; else 0 */
	uint32_t client_gen;
	int32_t sock;      /* channel index, or -1 */
	uint32_t sock_gen; /* the channel's gen the client knows */
	int32_t domain;    /* SOCKET */
	int32_t type;      /* SOCKET: SOCK_STREAM or SOCK_DGRAM */
	int32_t arg;       /* LISTEN backlog, SHUTDOWN how */
	int32_t level;     /* SET/GETSOCKOPT */
	int32_t optname;
	uint32_t optlen;
	uint8_t opt[NC_MSG_OPT_MAX];
	struct nc_msg_addr addr;
	/* Broker -> core: the client's own request id, so that a request the
	 * client resends after a broker restart is answered, not done twice. */
	uint32_t origin_id;
	/* CLIENT_ADD: who the client is (SO_PEERCRED at attach) and its
	 * reattach token; arg = 1 there means "adopt a live region" (a core
	 * restart). REATTACH: client and token. */
	uint32_t pid, uid, gid;
	uint64_t token;
};

struct nc_msg_rep {
	struct nc_msg_hdr hdr;
	int32_t result; /* >= 0 ok, else -errno */
	int32_t sock;   /* SOCKET, ACCEPT: the new channel */
	uint32_t sock_gen;
	uint32_t optlen;
	uint8_t opt[NC_MSG_OPT_MAX];
	struct nc_msg_addr addr;
	/* ATTACH: the region's parameters and the client's id (CLIENT_LIST:
	 * the client found, 0 for none; CORE_HELLO: the core's boot id). */
	uint32_t client;
	uint32_t max_sockets, ring_slots, buf_count, buf_size;
	/* ATTACH, CLIENT_LIST: the reattach token; CLIENT_LIST: pid, uid, gid.
	 * SOCK_LIST: peer = the peer address; sock/sock_gen/addr the socket;
	 * opt[0..3] = domain, type, broker state, shut bits; arg = backlog. */
	uint64_t token;
	uint32_t pid, uid, gid;
	int32_t arg;
	struct nc_msg_addr peer;
};

/* Fills a header. */
void nc_msg_init(struct nc_msg_hdr *h, enum nc_msg_type type, uint32_t id,
                 uint32_t size);

/*
 * Checks `len` received bytes as a message of `expected_size` (a request or
 * a reply): magic, version, size field and length, known type. Returns 0,
 * or -EPROTO with nothing else read from the bytes.
 */
int nc_msg_check(const void *buf, size_t len, size_t expected_size);

/* A request's name for logs ("connect"), or "unknown". */
const char *nc_msg_type_name(uint32_t type);

#endif /* NETCORE_PROTO_MSG_H */
