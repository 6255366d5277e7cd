/*
 * workload: the sandboxed side of the fault suite.
 *
 * Two bodies, each meant to run in its own process in an empty network
 * namespace (as a sandbox would), each with its own libclient client:
 *
 * - ff_streams_main keeps K downloads going at once, from the kernel-side
 *   data server (data_server.h), non-blocking, one nc_poll loop. Every
 *   byte is checked against the stream generator (stream.h) where it
 *   lands; a mismatch ends the run. A connection that ends early (reset,
 *   EPIPE, truncated, or silent for stall_ms) counts as "lost"; the stream
 *   then reconnects, with growing pauses, and resumes at the offset it has
 *   verified. A stream that cannot get a connection back within
 *   reconnect_ms ends the run. A request that completes rolls over to a
 *   new connection at the next offset, so the control path is used all
 *   the time, not only after faults.
 * - ff_prober_main exercises the control path: every probe_ms it makes a
 *   short connection (socket, connect, 16 KiB, close) and asks the server
 *   to call back its listener (accept, 16 KiB, close). The listener is
 *   made once and never remade: the design says listeners come back by
 *   themselves after a core restart. Failures are counted; no success for
 *   reconnect_ms ends the run.
 *
 * The driver watches both through struct ff_shared, a shared anonymous
 * mapping made before the fork: single-writer counters (C11 atomics), and
 * a "mark". The driver sets a mark when a killed service is back; each
 * stream records the time of its first progress after the mark, and the
 * prober the end of its first successful probe started after it. That is
 * what recovery time is computed from, with no message in between.
 *
 * What it does not do: upload, use UDP, or decide whether a fault was
 * handled well. The driver judges; a body reports the one thing it cannot
 * go on after (a wrong byte, a deadline) in ff_shared.problem.
 */
#ifndef NETCORE_TESTS_FAULT_WORKLOAD_H
#define NETCORE_TESTS_FAULT_WORKLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FF_MAX_STREAMS 16

struct ff_stream_stat {
	/* Odd while a loss is being counted: lost, resets and stalls change
	 * together, so a reader never sees a loss without its kind. */
	_Atomic uint64_t loss_seq;
	_Atomic uint64_t verified; /* bytes checked, all connections */
	_Atomic uint64_t lost;   /* established connections that ended early */
	_Atomic uint64_t resets; /* ... of them with ECONNRESET or EPIPE */
	_Atomic uint64_t stalls; /* ... of them silent for stall_ms */
	_Atomic uint64_t connects; /* connections established */
	_Atomic uint64_t failed_connects;
	_Atomic int64_t last_ms; /* last progress (ff_now_ms clock) */
	_Atomic int64_t mark_ms; /* first progress after mark mark_gen */
	_Atomic uint64_t mark_gen;
	_Atomic int up;         /* a connection is established */
	_Atomic int last_errno; /* of the latest failure of any kind */
	_Atomic int lost_errno; /* latest loss that was not a reset */
};

struct ff_probe_stat {
	_Atomic uint64_t ok, failed;
	_Atomic int64_t mark_ms; /* end of the first probe begun after the
	                            mark mark_gen that succeeded */
	_Atomic uint64_t mark_gen;
	_Atomic int last_errno;
};

struct ff_shared {
	_Atomic int stop; /* driver: finish and exit */
	_Atomic int64_t mark_at;
	_Atomic uint64_t mark_gen;
	struct ff_stream_stat s[FF_MAX_STREAMS];
	struct ff_probe_stat probe;
	_Atomic int failed; /* a body hit something it cannot go on after */
	char problem[256];  /* what, written by the first to set failed */
};

struct ff_workload_cfg {
	const char *broker_socket;
	const char *server4, *server6; /* kernel side; server6 may be NULL */
	uint16_t server_port;
	uint16_t listen_port; /* the prober's listener, on the stack */
	int streams;          /* <= FF_MAX_STREAMS; odd ones use IPv6 */
	uint64_t seed;        /* picks the stream ids */
	uint64_t conn_bytes;  /* asked for per connection */
	int probe_ms;         /* pause between probes */
	int stall_ms;         /* silent this long: the connection is lost */
	int reconnect_ms;     /* no connection back this long: failure */
};

void ff_workload_defaults(struct ff_workload_cfg *cfg);

int64_t ff_now_ms(void);

/* A zeroed shared mapping, or NULL. */
struct ff_shared *ff_shared_create(void);
void ff_shared_destroy(struct ff_shared *sh);

/* The bodies. Return the process exit code: 0, or 1 after a failure
 * (described in sh->problem). */
int ff_streams_main(const struct ff_workload_cfg *cfg, struct ff_shared *sh);
int ff_prober_main(const struct ff_workload_cfg *cfg, struct ff_shared *sh);

/* Driver side: a new mark at time `at`. */
void ff_mark(struct ff_shared *sh, int64_t at);
/* True once every stream and the prober have answered the current mark;
 * their latest answer times in *data_ms and *ctl_ms. */
bool ff_mark_answered(struct ff_shared *sh, int streams, int64_t *data_ms,
                      int64_t *ctl_ms);

/* Sums over the streams. */
struct ff_totals {
	uint64_t verified, lost, resets, stalls, connects;
	int up;
	int lost_errno; /* some stream's latest loss that was not a reset */
};
struct ff_totals ff_totals(struct ff_shared *sh, int streams);

/* Records a failure (the first one wins). */
void ff_fail(struct ff_shared *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "1.23 GB", "512.0 kB" (decimal units). */
const char *ff_human(double bytes, char *out, size_t cap);

#endif
