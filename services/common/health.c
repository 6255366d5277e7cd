/*
 * The heartbeat responder (see health.h).
 *
 * States: not started; answering (a thread blocked in nng_recv on the rep0
 * socket); stopped (nng_close wakes the thread with NNG_ECLOSED, then it is
 * joined). The loop's tick and the counters are plain atomics written by
 * the service's thread and read by the responder's; nothing else is
 * shared, so the responder never takes a lock the loop could hold.
 */
#include "services/common/health.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Atomic int64_t last_tick_ms;
static _Atomic uint64_t ticks;
static _Atomic uint64_t counters[NC_HEALTH_COUNTERS];
static int64_t started_ms;
static char service_name[16];
static nng_socket sock;
static pthread_t thread;
static bool running;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nc_health_tick(void)
{
	atomic_store_explicit(&last_tick_ms, now_ms(), memory_order_relaxed);
	atomic_fetch_add_explicit(&ticks, 1, memory_order_relaxed);
}

void nc_health_set(unsigned index, uint64_t value)
{
	if (index < NC_HEALTH_COUNTERS)
		atomic_store_explicit(&counters[index], value,
		                      memory_order_relaxed);
}

void nc_health_request_init(struct nc_health_request *r, uint32_t id)
{
	memset(r, 0, sizeof(*r));
	r->magic = NC_HEALTH_MAGIC;
	r->version = NC_HEALTH_VERSION;
	r->type = NC_HEALTH_PING;
	r->id = id;
}

static int check_request(const void *buf, size_t len,
                         struct nc_health_request *r)
{
	memset(r, 0, sizeof(*r));
	if (len < sizeof(*r))
		return -EPROTO;
	memcpy(r, buf, sizeof(*r));
	if (r->magic != NC_HEALTH_MAGIC || r->version != NC_HEALTH_VERSION)
		return -EPROTO;
	if (len != sizeof(*r))
		return -EPROTO;
	return r->type == NC_HEALTH_PING ? 0 : -ENOTSUP;
}

void nc_health_answer(const void *req, size_t len, struct nc_health_reply *out)
{
	struct nc_health_request r;
	int rc = check_request(req, len, &r);
	memset(out, 0, sizeof(*out));
	out->magic = NC_HEALTH_MAGIC;
	out->version = NC_HEALTH_VERSION;
	out->type = r.type;
	out->id = r.id;
	out->result = rc;
	out->pid = (uint32_t)getpid();
	memcpy(out->service, service_name, sizeof(out->service));
	if (rc != 0)
		return;
	int64_t now = now_ms();
	int64_t last =
	    atomic_load_explicit(&last_tick_ms, memory_order_relaxed);
	if (last == 0)
		last = started_ms; /* no tick yet: as old as the responder */
	out->loop_age_ms = now > last ? (uint64_t)(now - last) : 0;
	out->uptime_ms =
	    started_ms && now > started_ms ? (uint64_t)(now - started_ms) : 0;
	out->ticks = atomic_load_explicit(&ticks, memory_order_relaxed);
	for (unsigned i = 0; i < NC_HEALTH_COUNTERS; i++)
		out->counters[i] =
		    atomic_load_explicit(&counters[i], memory_order_relaxed);
}

int nc_health_reply_parse(const void *buf, size_t len, uint32_t id,
                          struct nc_health_reply *out)
{
	if (len != sizeof(*out))
		return -EPROTO;
	memcpy(out, buf, sizeof(*out));
	if (out->magic != NC_HEALTH_MAGIC ||
	    out->version != NC_HEALTH_VERSION || out->type != NC_HEALTH_PING ||
	    out->id != id)
		return -EPROTO;
	out->service[sizeof(out->service) - 1] = '\0';
	return out->result <= 0 ? out->result : -EPROTO;
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		nng_msg *m;
		int rv = nng_recvmsg(sock, &m, 0);
		if (rv == NNG_ECLOSED)
			return NULL;
		if (rv != 0)
			continue;
		struct nc_health_reply reply;
		nc_health_answer(nng_msg_body(m), nng_msg_len(m), &reply);
		nng_msg_free(m);
		if (nng_send(sock, &reply, sizeof(reply), 0) == NNG_ECLOSED)
			return NULL;
	}
}

static int from_nng(int rv)
{
	switch (rv) {
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_EADDRINVAL:
		return -EINVAL;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EPERM:
		return -EACCES;
	default:
		return -EIO;
	}
}

int nc_health_start(const char *url, const char *service)
{
	if (url == NULL)
		return 0;
	if (running)
		return -EALREADY;
	snprintf(service_name, sizeof(service_name), "%s", service);
	started_ms = now_ms();
	int rv = nng_rep0_open(&sock);
	rv = rv ?: nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 4096);
	nng_listener l;
	rv = rv ?: nng_listener_create(&l, sock, url);
	if (rv == 0 && strncmp(url, "ipc://", 6) == 0)
		nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
	rv = rv ?: nng_listener_start(l, 0);
	if (rv != 0) {
		nng_close(sock);
		return from_nng(rv);
	}
	int err = pthread_create(&thread, NULL, serve, NULL);
	if (err != 0) {
		nng_close(sock);
		return -err;
	}
	running = true;
	return 0;
}

void nc_health_stop(void)
{
	if (!running)
		return;
	nng_close(sock);
	pthread_join(thread, NULL);
	running = false;
}
