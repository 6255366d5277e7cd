/*
 * The client side of the control protocol (see cli.h, ctl.h). Each command
 * dials, asks once, and fails with a message naming the control URL if
 * nobody answers within REPLY_MS. `stop` then waits (pidfd) until the
 * supervisor process has gone, so that when it returns nothing is left.
 */
#include "services/supervisor/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "services/supervisor/ctl.h"

#define REPLY_MS     10000
#define STOP_WAIT_MS 60000

static const char *nng_why(int rv)
{
	return rv == NNG_ECONNREFUSED || rv == NNG_ENOENT
	           ? "no supervisor is running there"
	           : nng_strerror(rv);
}

static int ask(const struct nc_sup_config *c, uint16_t type, uint32_t service,
               union nc_sup_reply *out)
{
	nng_socket s;
	int rv = nng_req0_open(&s);
	if (rv == 0) {
		nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, REPLY_MS);
		nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, REPLY_MS);
		rv = nng_dial(s, c->control, NULL, 0);
	}
	struct nc_sup_req req;
	uint32_t id = (uint32_t)getpid() ^ (uint32_t)time(NULL) << 8;
	nc_sup_req_init(&req, type, id, service);
	rv = rv ?: nng_send(s, &req, sizeof(req), 0);
	nng_msg *m = NULL;
	rv = rv ?: nng_recvmsg(s, &m, 0);
	if (rv) {
		fprintf(stderr, "netcore: %s: %s\n", c->control, nng_why(rv));
		nng_close(s);
		return -EIO;
	}
	int res =
	    nc_sup_reply_parse(nng_msg_body(m), nng_msg_len(m), type, id, out);
	nng_msg_free(m);
	nng_close(s);
	if (res == -EPROTO)
		fprintf(stderr, "netcore: %s: malformed reply\n", c->control);
	return res;
}

/* ---------------------------------------------------------------- status */

static void duration(char *buf, size_t cap, uint64_t ms)
{
	if (ms == UINT64_MAX)
		snprintf(buf, cap, "-");
	else if (ms < 10000)
		snprintf(buf, cap, "%" PRIu64 "ms", ms);
	else if (ms < 3600 * 1000)
		snprintf(buf, cap, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, cap, "%" PRIu64 "h%02" PRIu64 "m", ms / 3600000,
		         ms / 60000 % 60);
}

static void print_status(const struct nc_sup_status_reply *r)
{
	char up[32], age[32], loop[32];
	duration(up, sizeof(up), r->uptime_ms);
	printf("supervisor pid %u up %s %s\n", r->pid, up,
	       r->ready ? "ready" : "not ready");
	printf("%-7s %-8s %-9s %-8s %-8s %-7s %-9s %-6s %s\n", "service", "pid",
	       "health", "uptime", "restarts", "crashes", "heartbeat", "loop",
	       "last exit");
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		const struct nc_sup_svc_status *s = &r->svc[i];
		duration(up, sizeof(up), s->pid ? s->uptime_ms : UINT64_MAX);
		duration(age, sizeof(age), s->heartbeat_age_ms);
		duration(loop, sizeof(loop),
		         s->pid ? s->loop_age_ms : UINT64_MAX);
		printf("%-7s %-8u %-9s %-8s %-8u %-7u %-9s %-6s %s\n",
		       nc_sup_service_name(i), s->pid,
		       nc_sup_state_name(s->state), up, s->restarts,
		       s->recent_crashes, age, loop, s->last_exit);
	}
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_status_json(const struct nc_sup_status_reply *r)
{
	printf("{\"pid\": %u, \"uptime_ms\": %" PRIu64 ", \"ready\": %s, "
	       "\"services\": {",
	       r->pid, r->uptime_ms, r->ready ? "true" : "false");
	for (int i = 0; i < NC_SUP_NSVC; i++) {
		const struct nc_sup_svc_status *s = &r->svc[i];
		printf("%s\"%s\": {\"pid\": %u, \"health\": \"%s\", "
		       "\"uptime_ms\": %" PRIu64 ", \"restarts\": %u, "
		       "\"recent_crashes\": %u, \"loop_age_ms\": %" PRIu64
		       ", \"last_exit\": ",
		       i ? ", " : "", nc_sup_service_name(i), s->pid,
		       nc_sup_state_name(s->state), s->uptime_ms, s->restarts,
		       s->recent_crashes, s->loop_age_ms);
		json_string(s->last_exit);
		putchar('}');
	}
	printf("}}\n");
}

int nci_cli_status(const struct nc_sup_config *c, bool json)
{
	union nc_sup_reply r;
	int rc = ask(c, NC_SUP_STATUS, 0, &r);
	if (rc)
		return 1;
	if (json)
		print_status_json(&r.status);
	else
		print_status(&r.status);
	return 0;
}

/* ----------------------------------------------------------------- stats */

struct field {
	const char *group, *name;
	uint64_t value;
	bool valid;
};

#define F(g, n, v, ok)                                                         \
	(struct field)                                                         \
	{                                                                      \
		g, n, v, ok                                                    \
	}

/* Every figure once, grouped; both printers walk this list. */
static size_t collect(const struct nc_sup_stats_reply *r, struct field *f)
{
	const struct nc_phy_counters *p = &r->phy;
	const uint64_t *k = r->core, *b = r->broker;
	bool cv = r->core_valid, bv = r->broker_valid;
	size_t n = 0;
	f[n++] = F("kernel_to_stack", "packets", p->rx_packets, true);
	f[n++] = F("kernel_to_stack", "bytes", p->rx_bytes, true);
	f[n++] = F("stack_to_kernel", "packets", p->tx_packets, true);
	f[n++] = F("stack_to_kernel", "bytes", p->tx_bytes, true);
	f[n++] = F("drops", "phy_rx_no_buffer", p->rx_drop_no_buffer, true);
	f[n++] = F("drops", "phy_rx_oversize", p->rx_drop_oversize, true);
	f[n++] = F("drops", "phy_tx_errors", p->tx_errors, true);
	f[n++] = F("drops", "phy_tx_bad_desc", p->tx_bad_desc, true);
	f[n++] = F("drops", "core_ip_bad", r->core_rx.drop_ip_bad, true);
	f[n++] = F("drops", "core_checksum", r->core_rx.drop_checksum, true);
	f[n++] = F("drops", "core_tcp", r->core_rx.drop_tcp, true);
	f[n++] = F("drops", "core_udp", r->core_rx.drop_udp, true);
	f[n++] = F("drops", "core_tx_no_buffer",
	           k[NC_HC_CORE_DROP_TX_NO_BUFFER], cv);
	f[n++] = F("drops", "core_udp_rx", k[NC_HC_CORE_UDP_RX_DROPPED], cv);
	f[n++] = F("drops", "core_udp_tx", k[NC_HC_CORE_UDP_TX_DROPPED], cv);
	f[n++] = F("rings", "phy_rx_ready", k[NC_HC_CORE_RX_RING], cv);
	f[n++] = F("rings", "phy_tx_used", k[NC_HC_CORE_TX_RING], cv);
	f[n++] = F("clients", "core", k[NC_HC_CORE_CLIENTS], cv);
	f[n++] = F("clients", "core_broken", k[NC_HC_CORE_CLIENTS_BROKEN], cv);
	f[n++] = F("clients", "broker", b[NC_HC_BROKER_CLIENTS], bv);
	f[n++] = F("clients", "broker_attached", b[NC_HC_BROKER_ATTACHED], bv);
	f[n++] = F("sockets", "core_open", k[NC_HC_CORE_SOCKETS], cv);
	f[n++] = F("sockets", "open", k[NC_HC_CORE_SOCK_OPEN], cv);
	f[n++] = F("sockets", "bound", k[NC_HC_CORE_SOCK_BOUND], cv);
	f[n++] = F("sockets", "listening", k[NC_HC_CORE_SOCK_LISTENING], cv);
	f[n++] = F("sockets", "connecting", k[NC_HC_CORE_SOCK_CONNECTING], cv);
	f[n++] = F("sockets", "connected", k[NC_HC_CORE_SOCK_CONNECTED], cv);
	f[n++] = F("sockets", "closed", k[NC_HC_CORE_SOCK_CLOSED], cv);
	f[n++] = F("sockets", "broker_table", b[NC_HC_BROKER_SOCKETS], bv);
	f[n++] = F("control", "core_requests", k[NC_HC_CORE_CTL_REQUESTS], cv);
	f[n++] = F("control", "core_refused", k[NC_HC_CORE_CTL_REFUSED], cv);
	f[n++] =
	    F("control", "broker_forwarded", b[NC_HC_BROKER_FORWARDED], bv);
	f[n++] = F("control", "broker_refused", b[NC_HC_BROKER_REFUSED], bv);
	f[n++] =
	    F("control", "broker_core_errors", b[NC_HC_BROKER_CORE_ERRORS], bv);
	f[n++] =
	    F("control", "broker_core_pipes", b[NC_HC_BROKER_CORE_PIPES], bv);
	f[n++] = F("memory", "broker_regions", b[NC_HC_BROKER_MEMORY], bv);
	f[n++] = F("restarts", "phy_handshakes", p->restarts, true);
	f[n++] = F("restarts", "core_clients_adopted",
	           k[NC_HC_CORE_CLIENTS_ADOPTED], cv);
	f[n++] = F("restarts", "broker_new_cores",
	           b[NC_HC_BROKER_CORE_RESTARTS], bv);
	f[n++] = F("restarts", "broker_clients_back",
	           b[NC_HC_BROKER_REATTACHED], bv);
	f[n++] = F("restarts", "broker_clients_awaited",
	           b[NC_HC_BROKER_RECOVERED], bv);
	return n;
}

static void print_stats(const struct field *f, size_t n)
{
	const char *group = "";
	for (size_t i = 0; i < n; i++) {
		if (strcmp(group, f[i].group) != 0) {
			group = f[i].group;
			printf("%s%s:", i ? "\n" : "", group);
		}
		if (f[i].valid)
			printf(" %s %" PRIu64, f[i].name, f[i].value);
		else
			printf(" %s -", f[i].name);
	}
	printf("\n");
}

static void print_stats_json(const struct field *f, size_t n)
{
	const char *group = "";
	printf("{");
	for (size_t i = 0; i < n; i++) {
		if (strcmp(group, f[i].group) != 0) {
			printf("%s\"%s\": {", i ? "}, " : "", f[i].group);
			group = f[i].group;
		} else {
			printf(", ");
		}
		if (f[i].valid)
			printf("\"%s\": %" PRIu64, f[i].name, f[i].value);
		else
			printf("\"%s\": null", f[i].name);
	}
	printf("%s}\n", n ? "}" : "");
}

int nci_cli_stats(const struct nc_sup_config *c, bool json)
{
	union nc_sup_reply r;
	if (ask(c, NC_SUP_STATS, 0, &r))
		return 1;
	struct field f[48];
	size_t n = collect(&r.stats, f);
	if (json)
		print_stats_json(f, n);
	else
		print_stats(f, n);
	return 0;
}

/* ----------------------------------------------------- restart, kill, stop */

int nci_cli_signal(const struct nc_sup_config *c, int type, int service)
{
	union nc_sup_reply r;
	int rc = ask(c, (uint16_t)type, (uint32_t)service, &r);
	const char *what = type == NC_SUP_KILL ? "kill" : "restart";
	if (rc == -EIO || rc == -EPROTO)
		return 1;
	if (rc) {
		fprintf(stderr, "netcore: %s %s: %s\n", what,
		        nc_sup_service_name(service), strerror(-rc));
		return 1;
	}
	if (r.ack.pid)
		printf("%s: %s pid %u\n", nc_sup_service_name(service),
		       type == NC_SUP_KILL ? "killed" : "restarting",
		       r.ack.pid);
	else
		printf("%s: starting\n", nc_sup_service_name(service));
	return 0;
}

int nci_cli_stop(const struct nc_sup_config *c)
{
	union nc_sup_reply r;
	if (ask(c, NC_SUP_STOP, 0, &r))
		return 1;
	int fd = (int)syscall(SYS_pidfd_open, (pid_t)r.ack.pid, 0);
	if (fd >= 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, STOP_WAIT_MS);
		close(fd);
		if (n != 1) {
			fprintf(stderr,
			        "netcore: supervisor pid %u still running "
			        "after %d s\n",
			        r.ack.pid, STOP_WAIT_MS / 1000);
			return 1;
		}
	}
	printf("stopped\n");
	return 0;
}
