/*
 * stream: the bytes the fault workload moves, and the request that asks
 * for them.
 *
 * Every stream id names an endless, deterministic, pseudo-random byte
 * sequence. Byte `off` of stream `id` is byte (off % 8) of a 64-bit block
 * computed from (id, off / 8) alone: a counter-based generator, so a
 * reader that lost its connection at any offset asks for the rest from
 * that offset and checks every byte it gets, without replaying anything.
 * Both sides compute the same function; nothing is stored.
 *
 * The request is the first thing on every connection to the kernel-side
 * data server (data_server.h): one fixed-size record, host byte order
 * (both ends run on the same machine). What it is not: a general
 * protocol. There is no reply header; the data is the reply, and end of
 * stream comes exactly after `length` bytes.
 */
#ifndef NETCORE_TESTS_FAULT_STREAM_H
#define NETCORE_TESTS_FAULT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define FF_REQ_MAGIC 0x46464c54u /* "FFLT" */

enum ff_req_kind {
	/* Send bytes [offset, offset + length) of `stream` on this
	 * connection, then FIN. */
	FF_REQ_DOWNLOAD = 1,
	/* Close this connection, then connect to the stack's address at
	 * `port` and send those bytes there: exercises the client's
	 * listener and accept. */
	FF_REQ_CALLBACK = 2,
};

struct ff_req {
	uint32_t magic;
	uint32_t kind;
	uint64_t stream;
	uint64_t offset;
	uint64_t length;
	uint16_t port; /* FF_REQ_CALLBACK only */
	uint16_t pad[3];
};

/* Writes bytes [off, off + len) of stream `id` into buf. */
void ff_stream_fill(uint64_t id, uint64_t off, void *buf, size_t len);

/* Index of the first byte of buf that is not the stream's, or len. */
size_t ff_stream_check(uint64_t id, uint64_t off, const void *buf, size_t len);

#endif
