/* workload: see workload.h. */
#include "tests/fault/workload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "libclient/netcore.h"
#include "tests/fault/stream.h"

#define RECV_BUF        (256 * 1024)
#define TURN_BYTES      (1024 * 1024) /* per stream per loop turn: fairness */
#define BACKOFF_MIN     10
#define BACKOFF_MAX     250
#define PROBE_BYTES     (16 * 1024)
#define PROBE_TIMEOUT_S 5

int64_t ff_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ff_workload_defaults(struct ff_workload_cfg *cfg)
{
	*cfg = (struct ff_workload_cfg){
	    .server_port = 6100,
	    .listen_port = 6200,
	    .streams = 4,
	    .seed = 1,
	    .conn_bytes = 32ull << 20,
	    .probe_ms = 100,
	    .stall_ms = 10000,
	    .reconnect_ms = 20000,
	};
}

struct ff_shared *ff_shared_create(void)
{
	void *p = mmap(NULL, sizeof(struct ff_shared), PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p; /* anonymous: already zero */
}

void ff_shared_destroy(struct ff_shared *sh)
{
	if (sh != NULL)
		munmap(sh, sizeof(*sh));
}

void ff_fail(struct ff_shared *sh, const char *fmt, ...)
{
	int was = 0;
	if (!atomic_compare_exchange_strong(&sh->failed, &was, 1))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sh->problem, sizeof(sh->problem), fmt, ap);
	va_end(ap);
}

void ff_mark(struct ff_shared *sh, int64_t at)
{
	atomic_store(&sh->mark_at, at);
	atomic_fetch_add(&sh->mark_gen, 1); /* after mark_at: seq_cst */
}

bool ff_mark_answered(struct ff_shared *sh, int streams, int64_t *data_ms,
                      int64_t *ctl_ms)
{
	uint64_t gen = atomic_load(&sh->mark_gen);
	int64_t latest = 0;
	for (int i = 0; i < streams; i++) {
		if (atomic_load(&sh->s[i].mark_gen) != gen)
			return false;
		int64_t t = atomic_load(&sh->s[i].mark_ms);
		latest = t > latest ? t : latest;
	}
	if (atomic_load(&sh->probe.mark_gen) != gen)
		return false;
	*data_ms = latest;
	*ctl_ms = atomic_load(&sh->probe.mark_ms);
	return true;
}

struct ff_totals ff_totals(struct ff_shared *sh, int streams)
{
	struct ff_totals t = {0};
	for (int i = 0; i < streams; i++) {
		struct ff_stream_stat *s = &sh->s[i];
		/* The loss counters as one (a seqlock with one writer, whose
		 * critical section is a few stores: a handful of retries at
		 * most; bounded all the same). */
		uint64_t lost, resets, stalls, seq;
		int lost_errno;
		for (int tries = 0;; tries++) {
			seq = atomic_load(&s->loss_seq);
			lost = atomic_load(&s->lost);
			resets = atomic_load(&s->resets);
			stalls = atomic_load(&s->stalls);
			lost_errno = atomic_load(&s->lost_errno);
			if ((seq % 2 == 0 &&
			     atomic_load(&s->loss_seq) == seq) ||
			    tries == 100000)
				break;
		}
		t.verified += atomic_load(&s->verified);
		t.lost += lost;
		t.resets += resets;
		t.stalls += stalls;
		t.connects += atomic_load(&s->connects);
		t.up += atomic_load(&s->up) ? 1 : 0;
		if (lost_errno != 0)
			t.lost_errno = lost_errno;
	}
	return t;
}

const char *ff_human(double bytes, char *out, size_t cap)
{
	static const char *units[] = {"B", "kB", "MB", "GB", "TB"};
	int u = 0;
	while (bytes >= 1000 && u < 4) {
		bytes /= 1000;
		u++;
	}
	snprintf(out, cap, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
	return out;
}

/* ------------------------------------------------------------- helpers */

static socklen_t sockaddr_of(const char *addr, uint16_t port,
                             struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		return sizeof(*a4);
	}
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	inet_pton(AF_INET6, addr, &a6->sin6_addr);
	a6->sin6_family = AF_INET6;
	a6->sin6_port = htons(port);
	return sizeof(*a6);
}

/* Attaching is a control call: while the broker is away it fails, and a
 * retry is the right answer until the deadline. */
static int attach(const struct ff_workload_cfg *cfg, struct nc_client **out)
{
	int64_t deadline = ff_now_ms() + cfg->reconnect_ms;
	int pause = BACKOFF_MIN;
	while (nc_client_attach(cfg->broker_socket, out) != 0) {
		if (ff_now_ms() > deadline)
			return -1;
		struct timespec ts = {0, pause * 1000000L};
		nanosleep(&ts, NULL); /* pacing retries, nothing to wait on */
		pause = pause * 2 > BACKOFF_MAX ? BACKOFF_MAX : pause * 2;
	}
	return 0;
}

/* The first progress after the driver's latest mark: recorded once per
 * mark. Time is read after the mark, so it is never before mark_at. */
static void answer_mark(struct ff_shared *sh, _Atomic uint64_t *gen_seen,
                        _Atomic int64_t *when)
{
	uint64_t gen = atomic_load(&sh->mark_gen);
	if (atomic_load(gen_seen) == gen)
		return;
	atomic_store(when, ff_now_ms());
	atomic_store(gen_seen, gen);
}

/* ------------------------------------------------------------- streams */

enum st_state { ST_IDLE, ST_CONNECTING, ST_RECEIVING };

struct stream {
	int index;
	uint64_t id;
	const char *addr;
	struct nc_sock *s;
	enum st_state state;
	uint64_t offset;    /* next byte to verify */
	uint64_t end;       /* end of the current request */
	int64_t since;      /* last progress or state change: stall clock */
	int64_t retry_at;   /* ST_IDLE: next attempt */
	int64_t down_since; /* 0 while a connection is up */
	int pause;          /* next retry's delay; 0 after progress */
	struct ff_stream_stat *st;
};

struct streams {
	const struct ff_workload_cfg *cfg;
	struct ff_shared *sh;
	struct nc_client *c;
	struct stream v[FF_MAX_STREAMS];
	uint8_t *buf;
};

/* Retries come at growing intervals, reset only by progress, so a
 * connection that keeps failing at once cannot spin. */
static void st_close(struct stream *x, int64_t now)
{
	if (x->s != NULL)
		nc_close(x->s); /* frees the handle even on error */
	x->s = NULL;
	x->state = ST_IDLE;
	atomic_store(&x->st->up, 0);
	if (x->down_since == 0)
		x->down_since = now;
	x->retry_at = now + x->pause;
	x->pause = x->pause * 2 < BACKOFF_MIN   ? BACKOFF_MIN
	           : x->pause * 2 > BACKOFF_MAX ? BACKOFF_MAX
	                                        : x->pause * 2;
}

static void st_lost(struct stream *x, int err, bool stalled, int64_t now)
{
	atomic_fetch_add(&x->st->loss_seq, 1); /* odd: counting */
	atomic_fetch_add(&x->st->lost, 1);
	if (err == ECONNRESET || err == EPIPE)
		atomic_fetch_add(&x->st->resets, 1);
	if (stalled)
		atomic_fetch_add(&x->st->stalls, 1);
	/* The one a violation report names: an end other than a reset. */
	if (err != ECONNRESET && err != EPIPE)
		atomic_store(&x->st->lost_errno, err);
	atomic_fetch_add(&x->st->loss_seq, 1); /* even: consistent */
	atomic_store(&x->st->last_errno, err);
	st_close(x, now);
}

static void st_connect(struct streams *w, struct stream *x, int64_t now)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_of(x->addr, w->cfg->server_port, &ss);
	if (nc_socket(w->c, ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0,
	              &x->s) != 0) {
		x->s = NULL;
		goto failed;
	}
	if (nc_connect(x->s, (struct sockaddr *)&ss, len) != 0 &&
	    errno != EINPROGRESS)
		goto failed;
	x->state = ST_CONNECTING;
	x->since = now;
	return;
failed:
	atomic_store(&x->st->last_errno, errno);
	atomic_fetch_add(&x->st->failed_connects, 1);
	st_close(x, now);
}

/* Connected: ask for the rest of the stream from the verified offset. */
static void st_request(struct streams *w, struct stream *x, short revents,
                       int64_t now)
{
	struct ff_req r = {.magic = FF_REQ_MAGIC,
	                   .kind = FF_REQ_DOWNLOAD,
	                   .stream = x->id,
	                   .offset = x->offset,
	                   .length = w->cfg->conn_bytes};
	if ((revents & (NC_POLLERR | NC_POLLHUP)) ||
	    nc_send(x->s, &r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* A refused or timed-out handshake: not an established
		 * connection, so not a lost one. */
		atomic_store(&x->st->last_errno, errno);
		atomic_fetch_add(&x->st->failed_connects, 1);
		st_close(x, now);
		return;
	}
	x->end = x->offset + r.length;
	x->state = ST_RECEIVING;
	x->since = now;
	x->down_since = 0;
	atomic_fetch_add(&x->st->connects, 1);
	atomic_store(&x->st->up, 1);
}

/* Checks n bytes at the stream's offset; false (and the run fails) on
 * the first wrong one. */
static bool st_verify(struct streams *w, struct stream *x, size_t n)
{
	if (n > x->end - x->offset) {
		ff_fail(w->sh, "stream %d: %zu bytes past the %llu asked for",
		        x->index, n, (unsigned long long)(x->end - x->offset));
		return false;
	}
	size_t bad = ff_stream_check(x->id, x->offset, w->buf, n);
	if (bad < n) {
		uint8_t want;
		ff_stream_fill(x->id, x->offset + bad, &want, 1);
		ff_fail(
		    w->sh,
		    "stream %d: byte %llu is 0x%02x, the stream says 0x%02x",
		    x->index, (unsigned long long)(x->offset + bad),
		    w->buf[bad], want);
		return false;
	}
	x->offset += n;
	x->pause = 0;
	atomic_fetch_add(&x->st->verified, n);
	atomic_store(&x->st->last_ms, ff_now_ms());
	answer_mark(w->sh, &x->st->mark_gen, &x->st->mark_ms);
	return true;
}

/* Reads what is there, up to a turn's worth. false: the run fails. */
static bool st_receive(struct streams *w, struct stream *x, int64_t now)
{
	for (size_t got = 0; got < TURN_BYTES;) {
		ssize_t n = nc_recv(x->s, w->buf, RECV_BUF, MSG_DONTWAIT);
		if (n > 0) {
			if (!st_verify(w, x, (size_t)n))
				return false;
			got += (size_t)n;
			x->since = now;
			continue;
		}
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n == 0 && x->offset == x->end)
			st_close(x, now); /* done: roll over */
		else
			st_lost(x, n == 0 ? ENODATA : errno, false, now);
		return true;
	}
	return true;
}

static void st_init(struct streams *w, int i)
{
	struct stream *x = &w->v[i];
	memset(x, 0, sizeof(*x));
	x->index = i;
	/* Distinct per run and per stream; the top bits keep stream ids
	 * apart from the prober's. */
	x->id = (w->cfg->seed << 8 | (uint64_t)i) ^ 0x5354000000000000ull;
	x->addr =
	    (i % 2 && w->cfg->server6) ? w->cfg->server6 : w->cfg->server4;
	x->st = &w->sh->s[i];
	x->down_since = ff_now_ms();
}

/* Deadlines of the streams that are not receiving. false: the run fails. */
static bool st_timers(struct streams *w, struct stream *x, int64_t now)
{
	if (x->state == ST_RECEIVING && now - x->since > w->cfg->stall_ms)
		st_lost(x, ETIMEDOUT, true, now);
	else if (x->state == ST_CONNECTING &&
	         now - x->since > w->cfg->stall_ms) {
		atomic_fetch_add(&x->st->failed_connects, 1);
		st_close(x, now);
	}
	if (x->state == ST_IDLE && now >= x->retry_at)
		st_connect(w, x, now);
	if (x->down_since != 0 && now - x->down_since > w->cfg->reconnect_ms) {
		int err = atomic_load(&x->st->last_errno);
		ff_fail(w->sh, "stream %d: no connection for %d ms (last: %s)",
		        x->index, w->cfg->reconnect_ms, strerror(err));
		return false;
	}
	return true;
}

/* One nc_poll over every stream with a socket, then the work it found.
 * false: the run fails. */
static bool st_turn(struct streams *w)
{
	struct nc_pollfd p[FF_MAX_STREAMS];
	int n = w->cfg->streams;
	int64_t now = ff_now_ms(), wake = now + 100;
	for (int i = 0; i < n; i++) {
		struct stream *x = &w->v[i];
		p[i] = (struct nc_pollfd){.sock = x->s};
		p[i].events =
		    x->state == ST_CONNECTING ? NC_POLLOUT : NC_POLLIN;
		if (x->state == ST_IDLE && x->retry_at < wake)
			wake = x->retry_at;
	}
	int r = nc_poll(w->c, p, (size_t)n, wake > now ? (int)(wake - now) : 0);
	if (r < 0 && errno != EINTR && errno != EAGAIN) {
		ff_fail(w->sh, "nc_poll: %s", strerror(errno));
		return false;
	}
	now = ff_now_ms();
	for (int i = 0; i < n; i++) {
		struct stream *x = &w->v[i];
		if (r > 0 && p[i].revents && x->state == ST_CONNECTING)
			st_request(w, x, p[i].revents, now);
		else if (r > 0 && p[i].revents && x->state == ST_RECEIVING &&
		         !st_receive(w, x, now))
			return false;
		if (!st_timers(w, x, now))
			return false;
	}
	return true;
}

int ff_streams_main(const struct ff_workload_cfg *cfg, struct ff_shared *sh)
{
	static struct streams w;
	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	w.sh = sh;
	if (cfg->streams < 1 || cfg->streams > FF_MAX_STREAMS) {
		ff_fail(sh, "streams: %d is not in 1..%d", cfg->streams,
		        FF_MAX_STREAMS);
		return 1;
	}
	w.buf = malloc(RECV_BUF);
	if (w.buf == NULL || attach(cfg, &w.c) != 0) {
		ff_fail(sh, "streams: attach: %s", strerror(errno));
		free(w.buf);
		return 1;
	}
	for (int i = 0; i < cfg->streams; i++)
		st_init(&w, i);
	bool ok = true;
	while (ok && !atomic_load(&sh->stop) && !atomic_load(&sh->failed))
		ok = st_turn(&w);
	for (int i = 0; i < cfg->streams; i++)
		if (w.v[i].s != NULL)
			nc_close(w.v[i].s);
	nc_client_detach(w.c);
	free(w.buf);
	return ok ? 0 : 1;
}

/* -------------------------------------------------------------- prober */

struct prober {
	const struct ff_workload_cfg *cfg;
	struct ff_shared *sh;
	struct nc_client *c;
	struct nc_sock *listener;
	uint64_t seq;
	uint8_t buf[PROBE_BYTES];
};

static void set_timeouts(struct nc_sock *s)
{
	struct timeval tv = {.tv_sec = PROBE_TIMEOUT_S};
	nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A blocking connection to the data server with the request sent.
 * 0 or -errno. */
static int pr_request(struct prober *p, const struct ff_req *r,
                      struct nc_sock **out)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_of(p->cfg->server4, p->cfg->server_port, &ss);
	if (nc_socket(p->c, AF_INET, SOCK_STREAM, 0, out) != 0)
		return -errno;
	set_timeouts(*out);
	if (nc_connect(*out, (struct sockaddr *)&ss, len) != 0 ||
	    nc_send(*out, r, sizeof(*r), 0) != (ssize_t)sizeof(*r)) {
		int err = -errno;
		nc_close(*out);
		return err ? err : -EIO;
	}
	return 0;
}

/* Reads exactly the probe's bytes, checks them, then expects the end of
 * stream. 0, -errno, or 1 for a wrong byte (the run fails). */
static int pr_read_checked(struct prober *p, struct nc_sock *s, uint64_t id,
                           uint64_t off)
{
	ssize_t n = nc_recv(s, p->buf, PROBE_BYTES, MSG_WAITALL);
	if (n != PROBE_BYTES)
		return n < 0 ? -errno : -ENODATA;
	size_t bad = ff_stream_check(id, off, p->buf, PROBE_BYTES);
	if (bad < PROBE_BYTES) {
		ff_fail(p->sh, "probe: byte %llu of stream %llx is wrong",
		        (unsigned long long)(off + bad),
		        (unsigned long long)id);
		return 1;
	}
	uint8_t extra;
	n = nc_recv(s, &extra, 1, 0);
	return n == 0 ? 0 : n < 0 ? -errno : -EPROTO;
}

static struct ff_req pr_req(struct prober *p, uint32_t kind)
{
	p->seq++;
	struct ff_req r = {.magic = FF_REQ_MAGIC,
	                   .kind = kind,
	                   .stream = (p->cfg->seed << 24 | p->seq) ^
	                             0x5052000000000000ull,
	                   .offset = (p->seq * 0x9e3779b97f4a7c15ull) >> 24,
	                   .length = PROBE_BYTES,
	                   .port = p->cfg->listen_port};
	return r;
}

static int pr_download(struct prober *p)
{
	struct ff_req r = pr_req(p, FF_REQ_DOWNLOAD);
	struct nc_sock *s;
	int err = pr_request(p, &r, &s);
	if (err)
		return err;
	err = pr_read_checked(p, s, r.stream, r.offset);
	nc_close(s);
	return err;
}

/* Accepts the callback named by r. A late callback of an earlier probe
 * (that timed out) is checked too, then skipped. */
static int pr_accept(struct prober *p, const struct ff_req *r)
{
	int64_t deadline = ff_now_ms() + PROBE_TIMEOUT_S * 1000;
	while (ff_now_ms() < deadline) {
		struct nc_sock *a;
		if (nc_accept(p->listener, NULL, NULL, &a) != 0)
			return -errno;
		set_timeouts(a);
		uint64_t pre[2];
		int err = nc_recv(a, pre, sizeof(pre), MSG_WAITALL) ==
		                  (ssize_t)sizeof(pre)
		              ? pr_read_checked(p, a, pre[0], pre[1])
		              : -EPROTO;
		nc_close(a);
		if (err || pre[0] == r->stream)
			return err;
	}
	return -ETIMEDOUT;
}

static int pr_callback(struct prober *p)
{
	struct ff_req r = pr_req(p, FF_REQ_CALLBACK);
	struct nc_sock *s;
	int err = pr_request(p, &r, &s);
	if (err)
		return err;
	nc_close(s);
	return pr_accept(p, &r);
}

static int pr_listen(struct prober *p)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons(p->cfg->listen_port)};
	int one = 1;
	if (nc_socket(p->c, AF_INET, SOCK_STREAM, 0, &p->listener) != 0)
		return -1;
	set_timeouts(p->listener); /* bounds nc_accept */
	if (nc_setsockopt(p->listener, SOL_SOCKET, SO_REUSEADDR, &one,
	                  sizeof(one)) != 0 ||
	    nc_bind(p->listener, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    nc_listen(p->listener, 8) != 0)
		return -1;
	return 0;
}

/* One probe, both halves. 0, -errno, or 1 (the run fails). */
static int pr_once(struct prober *p)
{
	int err = pr_download(p);
	return err ? err : pr_callback(p);
}

/* Only a probe begun after the latest mark answers it: one begun before
 * may have finished on the strength of what the kill had not touched. */
static void pr_answer_mark(struct ff_shared *sh, uint64_t gen_at_start,
                           int64_t now)
{
	struct ff_probe_stat *ps = &sh->probe;
	if (atomic_load(&sh->mark_gen) != gen_at_start ||
	    atomic_load(&ps->mark_gen) == gen_at_start)
		return;
	atomic_store(&ps->mark_ms, now);
	atomic_store(&ps->mark_gen, gen_at_start);
}

static bool pr_loop(struct prober *p)
{
	int64_t last_ok = ff_now_ms();
	while (!atomic_load(&p->sh->stop) && !atomic_load(&p->sh->failed)) {
		uint64_t gen = atomic_load(&p->sh->mark_gen);
		int err = pr_once(p);
		if (err == 1)
			return false;
		int64_t now = ff_now_ms();
		if (err == 0) {
			atomic_fetch_add(&p->sh->probe.ok, 1);
			last_ok = now;
			pr_answer_mark(p->sh, gen, now);
		} else {
			atomic_fetch_add(&p->sh->probe.failed, 1);
			atomic_store(&p->sh->probe.last_errno, -err);
		}
		if (now - last_ok > p->cfg->reconnect_ms) {
			ff_fail(p->sh,
			        "control path: no probe succeeded for "
			        "%d ms (last: %s)",
			        p->cfg->reconnect_ms, strerror(-err));
			return false;
		}
		struct timespec ts = {0, (long)p->cfg->probe_ms * 1000000L};
		nanosleep(&ts, NULL); /* pacing: probes are a sample */
	}
	return true;
}

int ff_prober_main(const struct ff_workload_cfg *cfg, struct ff_shared *sh)
{
	static struct prober p;
	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.sh = sh;
	if (attach(cfg, &p.c) != 0) {
		ff_fail(sh, "prober: attach: %s", strerror(errno));
		return 1;
	}
	bool ok = pr_listen(&p) == 0;
	if (!ok)
		ff_fail(sh, "prober: listener: %s", strerror(errno));
	else
		ok = pr_loop(&p);
	if (p.listener != NULL)
		nc_close(p.listener);
	nc_client_detach(p.c);
	return ok ? 0 : 1;
}
