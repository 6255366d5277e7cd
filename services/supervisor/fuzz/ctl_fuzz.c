/*
 * Fuzzes what the supervisor reads from its control socket and from the
 * services' health sockets, through the exact functions it runs:
 *
 *   - nc_sup_handle: the first bytes of the input choose a status snapshot
 *     (service states and pids), the rest is the request. The reply is
 *     always well formed (magic, version, the request's id and type when
 *     there were enough bytes), its result 0 or a negative errno, its
 *     length the one its type defines; an action is only ever asked for
 *     by a valid request, and names a real service;
 *   - nc_sup_reply_parse (the CLI's side) on the same bytes, for every
 *     type: 0, a negative errno, never a read past the end;
 *   - nc_health_answer (the services' responder) and nc_health_reply_parse
 *     (the supervisor's side): the same properties.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "services/common/health.h"
#include "services/supervisor/ctl.h"
#include "tools/fuzz/fuzz.h"

static void make_snapshot(struct fuzz_input *in, struct nc_sup_status_reply *st,
                          struct nc_sup_stats_reply *sx)
{
	memset(st, 0, sizeof(*st));
	memset(sx, 0, sizeof(*sx));
	st->pid = 4242;
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		uint8_t b = fuzz_u8(in);
		st->svc[i].state = b % 8; /* one past the last, too */
		st->svc[i].pid = b & 0x80 ? 0 : 100u + (uint32_t)i;
	}
}

static size_t expected_size(uint16_t type, int result)
{
	if (result != 0)
		return sizeof(struct nc_sup_reply_hdr);
	switch (type) {
	case NC_SUP_STATUS:
		return sizeof(struct nc_sup_status_reply);
	case NC_SUP_STATS:
		return sizeof(struct nc_sup_stats_reply);
	default:
		return sizeof(struct nc_sup_ack_reply);
	}
}

static void check_handle(const uint8_t *req, size_t len,
                         const struct nc_sup_status_reply *st,
                         const struct nc_sup_stats_reply *sx)
{
	static union nc_sup_reply out;
	struct nc_sup_action act;
	size_t n = nc_sup_handle(req, len, st, sx, &out, &act);
	FUZZ_CHECK(out.hdr.magic == NC_SUP_MAGIC);
	FUZZ_CHECK(out.hdr.version == NC_SUP_VERSION);
	FUZZ_CHECK(out.hdr.result <= 0 && out.hdr.result > -4096);
	FUZZ_CHECK(n == expected_size(out.hdr.type, out.hdr.result));
	struct nc_sup_req r;
	memset(&r, 0, sizeof(r));
	memcpy(&r, req, len < sizeof(r) ? len : sizeof(r));
	FUZZ_CHECK(out.hdr.id == r.id && out.hdr.type == r.type);
	bool valid = len == sizeof(r) && r.magic == NC_SUP_MAGIC &&
	             r.version == NC_SUP_VERSION;
	FUZZ_CHECK(valid || out.hdr.result == -EPROTO);
	if (out.hdr.result != 0 || act.kind == NC_ACT_NONE) {
		FUZZ_CHECK(act.kind == NC_ACT_NONE || out.hdr.result == 0);
		return;
	}
	FUZZ_CHECK(valid);
	if (act.kind == NC_ACT_STOP)
		FUZZ_CHECK(r.type == NC_SUP_STOP && out.ack.pid == st->pid);
	else {
		FUZZ_CHECK(act.service >= 0 && act.service < NC_SUP_NSVC);
		FUZZ_CHECK((uint32_t)act.service == r.service);
		FUZZ_CHECK(act.kind != NC_ACT_KILL ||
		           st->svc[act.service].pid != 0);
	}
	/* What the CLI makes of it. */
	union nc_sup_reply parsed;
	FUZZ_CHECK(nc_sup_reply_parse(&out, n, r.type, r.id, &parsed) == 0);
}

static void check_reply_parse(const uint8_t *data, size_t len)
{
	for (uint16_t type = 0; type <= 6; type++) {
		union nc_sup_reply out;
		uint32_t id = 0;
		if (len >= 12)
			memcpy(&id, data + 8, sizeof(id));
		int rc = nc_sup_reply_parse(data, len, type, id, &out);
		FUZZ_CHECK(rc <= 0);
	}
}

static void check_health(const uint8_t *data, size_t len)
{
	struct nc_health_reply r, back;
	nc_health_answer(data, len, &r);
	FUZZ_CHECK(r.magic == NC_HEALTH_MAGIC &&
	           r.version == NC_HEALTH_VERSION);
	FUZZ_CHECK(r.result == 0 || r.result == -EPROTO ||
	           r.result == -ENOTSUP);
	FUZZ_CHECK(r.result != 0 || len == sizeof(struct nc_health_request));
	if (r.result == 0)
		FUZZ_CHECK(nc_health_reply_parse(&r, sizeof(r), r.id, &back) ==
		           0);
	uint32_t id = 0;
	if (len >= 12)
		memcpy(&id, data + 8, sizeof(id));
	FUZZ_CHECK(nc_health_reply_parse(data, len, id, &back) <= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	static struct nc_sup_status_reply st;
	static struct nc_sup_stats_reply sx;
	make_snapshot(&in, &st, &sx);
	check_handle(in.p, in.left, &st, &sx);
	check_reply_parse(data, size);
	check_health(data, size);
	return 0;
}

#define REQ(type, service)                                                     \
	{                                                                      \
		0, 0, 0, /* snapshot: all running */                           \
		    0x56, 0x53, 0x43, 0x4e, 1, 0, type, 0, 7, 0, 0, 0,         \
		    service, 0, 0, 0                                           \
	}

static const uint8_t seed_status[] = REQ(NC_SUP_STATUS, 0);
static const uint8_t seed_stats[] = REQ(NC_SUP_STATS, 0);
static const uint8_t seed_restart[] = REQ(NC_SUP_RESTART, 2);
static const uint8_t seed_kill[] = REQ(NC_SUP_KILL, 1);
static const uint8_t seed_stop[] = REQ(NC_SUP_STOP, 0);
static const uint8_t seed_unknown[] = REQ(99, 0);
static const uint8_t seed_bad_service[] = REQ(NC_SUP_KILL, 3);
static const uint8_t seed_dead_kill[] = {
    0x80, 0x80, 0x80, 0x56, 0x53, 0x43, 0x4e, 1, 0, 4,
    0,    7,    0,    0,    0,    0,    0,    0, 0};
static const uint8_t seed_health[] = {0x42, 0x48, 0x43, 0x4e, 1, 0, 1, 0,
                                      9,    0,    0,    0,    0, 0, 0, 0};

const struct fuzz_seed fuzz_seeds[] = {
    FUZZ_SEED(seed_status),      FUZZ_SEED(seed_stats),
    FUZZ_SEED(seed_restart),     FUZZ_SEED(seed_kill),
    FUZZ_SEED(seed_stop),        FUZZ_SEED(seed_unknown),
    FUZZ_SEED(seed_bad_service), FUZZ_SEED(seed_dead_kill),
    FUZZ_SEED(seed_health),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
