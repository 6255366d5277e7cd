/* The control protocol's decisions; see ctl.h. Pure: no I/O, no state. */
#include "services/supervisor/ctl.h"

#include <errno.h>
#include <string.h>

void nc_sup_req_init(struct nc_sup_req *r, uint16_t type, uint32_t id,
                     uint32_t service)
{
	memset(r, 0, sizeof(*r));
	r->magic = NC_SUP_MAGIC;
	r->version = NC_SUP_VERSION;
	r->type = type;
	r->id = id;
	r->service = service;
}

const char *nc_sup_state_name(uint32_t state)
{
	static const char *const names[] = {"starting", "healthy", "late",
	                                    "backoff",  "gave-up", "stopping",
	                                    "stopped"};
	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "?";
}

static size_t header(union nc_sup_reply *out, const struct nc_sup_req *r,
                     int result, size_t size)
{
	memset(out, 0, size);
	out->hdr.magic = NC_SUP_MAGIC;
	out->hdr.version = NC_SUP_VERSION;
	out->hdr.type = r->type;
	out->hdr.id = r->id;
	out->hdr.result = result;
	return size;
}

static size_t refuse(union nc_sup_reply *out, const struct nc_sup_req *r,
                     int result)
{
	return header(out, r, result, sizeof(out->hdr));
}

/* KILL needs a process; RESTART also takes a service that gave up. */
static size_t signal_service(const struct nc_sup_req *r,
                             const struct nc_sup_status_reply *status,
                             union nc_sup_reply *out, struct nc_sup_action *act)
{
	if (r->service >= NC_SUP_NSVC)
		return refuse(out, r, -EINVAL);
	const struct nc_sup_svc_status *s = &status->svc[r->service];
	if (s->state == NC_SVC_STOPPING || s->state == NC_SVC_STOPPED)
		return refuse(out, r, -ESHUTDOWN);
	if (r->type == NC_SUP_KILL && s->pid == 0)
		return refuse(out, r, -ESRCH);
	act->kind = r->type == NC_SUP_KILL ? NC_ACT_KILL : NC_ACT_RESTART;
	act->service = (int)r->service;
	size_t n = header(out, r, 0, sizeof(out->ack));
	out->ack.pid = s->pid;
	return n;
}

size_t nc_sup_handle(const void *req, size_t len,
                     const struct nc_sup_status_reply *status,
                     const struct nc_sup_stats_reply *stats,
                     union nc_sup_reply *out, struct nc_sup_action *act)
{
	struct nc_sup_req r;
	memset(&r, 0, sizeof(r));
	memcpy(&r, req, len < sizeof(r) ? len : sizeof(r));
	act->kind = NC_ACT_NONE;
	act->service = -1;
	if (len != sizeof(r) || r.magic != NC_SUP_MAGIC ||
	    r.version != NC_SUP_VERSION)
		return refuse(out, &r, -EPROTO);
	size_t n;
	switch (r.type) {
	case NC_SUP_STATUS:
		n = sizeof(out->status);
		memcpy(&out->status, status, n);
		header(out, &r, 0, sizeof(out->hdr));
		return n;
	case NC_SUP_STATS:
		n = sizeof(out->stats);
		memcpy(&out->stats, stats, n);
		header(out, &r, 0, sizeof(out->hdr));
		return n;
	case NC_SUP_RESTART:
	case NC_SUP_KILL:
		return signal_service(&r, status, out, act);
	case NC_SUP_STOP:
		act->kind = NC_ACT_STOP;
		n = header(out, &r, 0, sizeof(out->ack));
		out->ack.pid = status->pid;
		return n;
	default:
		return refuse(out, &r, -ENOTSUP);
	}
}

static size_t body_size(uint16_t type)
{
	switch (type) {
	case NC_SUP_STATUS:
		return sizeof(struct nc_sup_status_reply);
	case NC_SUP_STATS:
		return sizeof(struct nc_sup_stats_reply);
	default:
		return sizeof(struct nc_sup_ack_reply);
	}
}

int nc_sup_reply_parse(const void *buf, size_t len, uint16_t type, uint32_t id,
                       union nc_sup_reply *out)
{
	if (len < sizeof(out->hdr) || len > sizeof(*out))
		return -EPROTO;
	memset(out, 0, sizeof(*out));
	memcpy(out, buf, len);
	const struct nc_sup_reply_hdr *h = &out->hdr;
	if (h->magic != NC_SUP_MAGIC || h->version != NC_SUP_VERSION ||
	    h->type != type || h->id != id || h->result > 0)
		return -EPROTO;
	if (h->result < 0)
		return len == sizeof(*h) ? h->result : -EPROTO;
	if (len != body_size(type))
		return -EPROTO;
	for (int i = 0; type == NC_SUP_STATUS && i < NC_SUP_NSVC; i++) {
		char *e = out->status.svc[i].last_exit;
		e[sizeof(out->status.svc[i].last_exit) - 1] = '\0';
	}
	return 0;
}
