/*
 * The supervisor's config parser (see config.h; the format is documented
 * in README.md).
 *
 * Table-driven: each key names a kind (path, URL, number with a range,
 * address, words) and where its value goes. A scalar may appear once; the
 * line where each key was set is kept, so a check between two settings
 * (backoff_initial_ms <= backoff_max_ms) names the line of the later one.
 * The embedded broker lines are handed, as one text, to the broker's own
 * parser (nc_broker_config_parse), and a refusal's "line N" is mapped back
 * to the line of this file it came from. Nothing here touches the system
 * except nc_sup_config_load reading its file and a broker_config file.
 */
#include "services/supervisor/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "services/proxy_broker/broker.h"

#define RUN_DIR_MAX  NC_SUP_RUN_DIR_MAX
#define BROKER_LINES 1024

enum kind {
	K_DIR,
	K_PATH,
	K_URL,
	K_NETNS,
	K_TUN,
	K_V4,
	K_V6,
	K_U32,
	K_ARGS,
	K_BIN
};

struct key {
	const char *name;
	enum kind kind;
	size_t off, size;
	uint32_t lo, hi;
};

#define STR(field, kind)                                                       \
	kind, offsetof(struct nc_sup_config, field),                           \
	    sizeof(((struct nc_sup_config *)0)->field), 0, 0
#define NUM(field, lo, hi)                                                     \
	K_U32, offsetof(struct nc_sup_config, field), sizeof(uint32_t), lo, hi

static const struct key keys[] = {
    {"run_dir", STR(run_dir, K_DIR)},
    {"control", STR(control, K_URL)},
    {"log_file", STR(log_file, K_PATH)},
    {"netns", STR(netns, K_NETNS)},
    {"tun", STR(tun, K_TUN)},
    {"kernel_ipv4", STR(kernel_ipv4, K_V4)},
    {"stack_ipv4", STR(stack_ipv4, K_V4)},
    {"kernel_ipv6", STR(kernel_ipv6, K_V6)},
    {"stack_ipv6", STR(stack_ipv6, K_V6)},
    {"mtu", NUM(mtu, 1280, 65520)},
    {"echo_port", K_U32, offsetof(struct nc_sup_config, echo_port),
     sizeof(uint16_t), 0, 65535},
    {"attach_socket", STR(attach_socket, K_PATH)},
    {"broker_config", STR(broker_config, K_PATH)},
    {"backoff_initial_ms", NUM(backoff_initial_ms, 1, 3600000)},
    {"backoff_max_ms", NUM(backoff_max_ms, 1, 3600000)},
    {"give_up_after", NUM(give_up_after, 1, 1000)},
    {"give_up_window_ms", NUM(give_up_window_ms, 100, 86400000)},
    {"heartbeat_interval_ms", NUM(heartbeat_interval_ms, 50, 600000)},
    {"heartbeat_timeout_ms", NUM(heartbeat_timeout_ms, 100, 600000)},
    {"start_timeout_ms", NUM(start_timeout_ms, 100, 600000)},
    {"stop_timeout_ms", NUM(stop_timeout_ms, 100, 600000)},
    {"phy_binary", STR(binary[NC_SUP_PHY], K_BIN)},
    {"core_binary", STR(binary[NC_SUP_CORE], K_BIN)},
    {"broker_binary", STR(binary[NC_SUP_BROKER], K_BIN)},
    {"phy_args", STR(args[NC_SUP_PHY], K_ARGS)},
    {"core_args", STR(args[NC_SUP_CORE], K_ARGS)},
    {"broker_args", STR(args[NC_SUP_BROKER], K_ARGS)},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

struct parse {
	struct nc_sup_config *c;
	unsigned line;
	unsigned seen[NKEYS]; /* line each key was set on; 0: not set */
	unsigned broker_line[BROKER_LINES];
	unsigned broker_count;
	char *err;
	size_t err_size;
};

static int refuse(struct parse *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct parse *p, unsigned line, const char *fmt, ...)
{
	int n = snprintf(p->err, p->err_size, "line %u: ", line);
	if (n < 0 || (size_t)n >= p->err_size)
		return -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *const names[NC_SUP_NSVC] = {"phy", "core", "broker"};

const char *nc_sup_service_name(int svc)
{
	return svc >= 0 && svc < NC_SUP_NSVC ? names[svc] : "?";
}

int nc_sup_service_parse(const char *name)
{
	static const char *const aliases[NC_SUP_NSVC] = {
	    "phy_driver", "netcore_core", "proxy_broker"};
	for (int i = 0; i < NC_SUP_NSVC; i++)
		if (strcmp(name, names[i]) == 0 ||
		    strcmp(name, aliases[i]) == 0)
			return i;
	return -1;
}

void nc_sup_config_default(struct nc_sup_config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->run_dir, "/run/netcore");
	strcpy(c->tun, "nctun0");
	strcpy(c->kernel_ipv4, "10.77.0.1/24");
	strcpy(c->stack_ipv4, "10.77.0.2/24");
	strcpy(c->kernel_ipv6, "fd77::1/64");
	strcpy(c->stack_ipv6, "fd77::2/64");
	c->mtu = 65520;
	c->backoff_initial_ms = 100;
	c->backoff_max_ms = 10000;
	c->give_up_after = 5;
	c->give_up_window_ms = 60000;
	c->heartbeat_interval_ms = 500;
	c->heartbeat_timeout_ms = 3000;
	c->start_timeout_ms = 10000;
	c->stop_timeout_ms = 5000;
}

void nc_sup_config_finish(struct nc_sup_config *c)
{
	if (c->control[0] == '\0')
		snprintf(c->control, sizeof(c->control),
		         "ipc://%s/supervisor.ctl", c->run_dir);
	if (c->log_file[0] == '\0')
		snprintf(c->log_file, sizeof(c->log_file), "%s/netcore.log",
		         c->run_dir);
	if (c->attach_socket[0] == '\0')
		snprintf(c->attach_socket, sizeof(c->attach_socket),
		         "%s/attach", c->run_dir);
}

/* ---------------------------------------------------------------- values */

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static bool one_word(const char *v)
{
	for (; *v; v++)
		if (is_space(*v))
			return false;
	return true;
}

static int set_string(struct parse *p, const struct key *k, const char *v)
{
	if (strlen(v) >= k->size)
		return refuse(p, p->line, "%s: longer than %zu bytes", k->name,
		              k->size - 1);
	strcpy((char *)p->c + k->off, v);
	return 0;
}

static int set_path(struct parse *p, const struct key *k, const char *v)
{
	if (v[0] != '/')
		return refuse(p, p->line, "%s: '%s' is not an absolute path",
		              k->name, v);
	return set_string(p, k, v);
}

static int set_cidr(struct parse *p, const struct key *k, const char *v,
                    int family)
{
	char addr[64];
	const char *slash = strchr(v, '/');
	unsigned max = family == AF_INET ? 32 : 128;
	size_t alen = slash ? (size_t)(slash - v) : 0;
	unsigned char buf[16];
	char *end;
	unsigned long prefix = slash ? strtoul(slash + 1, &end, 10) : 0;
	if (slash == NULL || alen == 0 || alen >= sizeof(addr) ||
	    slash[1] < '0' || slash[1] > '9' || *end != '\0' || prefix < 1 ||
	    prefix > max)
		return refuse(p, p->line,
		              "%s: '%s' is not ADDRESS/PREFIX "
		              "(prefix 1-%u)",
		              k->name, v, max);
	memcpy(addr, v, alen);
	addr[alen] = '\0';
	if (inet_pton(family, addr, buf) != 1)
		return refuse(p, p->line, "%s: '%s' is not an IPv%d address",
		              k->name, addr, family == AF_INET ? 4 : 6);
	return set_string(p, k, v);
}

static int set_number(struct parse *p, const struct key *k, const char *v)
{
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	if (v[0] < '0' || v[0] > '9' || *end != '\0' || n > UINT32_MAX)
		return refuse(p, p->line, "%s: '%s' is not a number", k->name,
		              v);
	if (n < k->lo || n > k->hi)
		return refuse(p, p->line, "%s: %llu is out of range %u-%u",
		              k->name, n, k->lo, k->hi);
	if (k->size == sizeof(uint16_t)) {
		uint16_t s = (uint16_t)n;
		memcpy((char *)p->c + k->off, &s, sizeof(s));
	} else {
		uint32_t w = (uint32_t)n;
		memcpy((char *)p->c + k->off, &w, sizeof(w));
	}
	return 0;
}

static int set_tun(struct parse *p, const struct key *k, const char *v)
{
	size_t n = strlen(v);
	bool ok = n >= 1 && n <= 15 && strcmp(v, ".") && strcmp(v, "..");
	for (size_t i = 0; ok && i < n; i++)
		ok = (v[i] >= 'a' && v[i] <= 'z') ||
		     (v[i] >= 'A' && v[i] <= 'Z') ||
		     (v[i] >= '0' && v[i] <= '9') || strchr("_.-", v[i]);
	if (!ok)
		return refuse(p, p->line,
		              "%s: '%s' is not a device name (1-15 of "
		              "A-Z a-z 0-9 _ . -)",
		              k->name, v);
	return set_string(p, k, v);
}

static int set_value(struct parse *p, const struct key *k, const char *v)
{
	if (k->kind != K_ARGS && !one_word(v))
		return refuse(p, p->line, "%s: expected one value, got '%s'",
		              k->name, v);
	switch (k->kind) {
	case K_DIR:
		if (strlen(v) > RUN_DIR_MAX)
			return refuse(p, p->line,
			              "%s: longer than %d bytes (socket "
			              "paths below it must fit)",
			              k->name, RUN_DIR_MAX);
		return set_path(p, k, v);
	case K_PATH:
		return set_path(p, k, v);
	case K_URL:
		if (strncmp(v, "ipc:///", 7) != 0)
			return refuse(p, p->line,
			              "%s: '%s' is not an ipc:///PATH URL",
			              k->name, v);
		return set_string(p, k, v);
	case K_NETNS:
		return strcmp(v, "current") == 0 ? set_string(p, k, "")
		                                 : set_path(p, k, v);
	case K_BIN:
		return strcmp(v, "auto") == 0 ? set_string(p, k, "")
		                              : set_path(p, k, v);
	case K_TUN:
		return set_tun(p, k, v);
	case K_V4:
		return set_cidr(p, k, v, AF_INET);
	case K_V6:
		return set_cidr(p, k, v, AF_INET6);
	case K_U32:
		return set_number(p, k, v);
	case K_ARGS:
		return set_string(p, k, v);
	}
	return -EINVAL;
}

/* ----------------------------------------------------------------- lines */

static int add_broker_line(struct parse *p, const char *v)
{
	struct nc_sup_config *c = p->c;
	size_t n = strlen(v);
	if (p->broker_count == BROKER_LINES ||
	    c->broker_len + n + 1 >= sizeof(c->broker_text))
		return refuse(p, p->line, "broker: too many broker lines");
	memcpy(c->broker_text + c->broker_len, v, n);
	c->broker_len += n;
	c->broker_text[c->broker_len++] = '\n';
	c->broker_text[c->broker_len] = '\0';
	p->broker_line[p->broker_count++] = p->line;
	return 0;
}

static int setting(struct parse *p, const char *key, const char *value)
{
	if (strcmp(key, "broker") == 0) {
		if (*value == '\0')
			return refuse(p, p->line,
			              "broker: expected a broker setting");
		return add_broker_line(p, value);
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(key, keys[i].name) != 0)
			continue;
		if (p->seen[i])
			return refuse(p, p->line,
			              "%s given twice (first on line %u)", key,
			              p->seen[i]);
		if (*value == '\0' && keys[i].kind != K_ARGS)
			return refuse(p, p->line, "%s: missing value", key);
		p->seen[i] = p->line;
		return set_value(p, &keys[i], value);
	}
	return refuse(p, p->line, "unknown setting '%s'", key);
}

/* Splits one line (without its newline) into key and value, in place. */
static int line(struct parse *p, char *s)
{
	char *hash = strchr(s, '#');
	if (hash)
		*hash = '\0';
	while (is_space(*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && is_space(s[n - 1]))
		s[--n] = '\0';
	if (n == 0)
		return 0;
	char *v = s;
	while (*v && !is_space(*v))
		v++;
	if (*v) {
		*v++ = '\0';
		while (is_space(*v))
			v++;
	}
	return setting(p, s, v);
}

/* ---------------------------------------------------- checks across keys */

static unsigned seen(const struct parse *p, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return p->seen[i];
	return 0;
}

static unsigned later(const struct parse *p, const char *a, const char *b)
{
	unsigned la = seen(p, a), lb = seen(p, b);
	return la > lb ? la : lb;
}

static int check_broker(struct parse *p)
{
	struct nc_broker_config bc;
	char err[NC_BROKER_ERR_MAX + NC_SUP_PATH_MAX];
	nc_broker_config_default(&bc);
	unsigned at = seen(p, "broker_config");
	if (at && p->broker_count)
		return refuse(p,
		              p->broker_line[0] > at ? p->broker_line[0] : at,
		              "broker lines and broker_config exclude each "
		              "other");
	if (at) {
		if (nc_broker_config_load(&bc, p->c->broker_config, err,
		                          sizeof(err)) != 0)
			return refuse(p, at, "broker_config: %s", err);
		return 0;
	}
	if (p->broker_count == 0)
		return 0;
	if (nc_broker_config_parse(&bc, p->c->broker_text, p->c->broker_len,
	                           err, sizeof(err)) == 0)
		return 0;
	unsigned n = 0;
	int used = 0;
	if (sscanf(err, "line %u: %n", &n, &used) == 1 && used > 0 && n >= 1 &&
	    n <= p->broker_count)
		return refuse(p, p->broker_line[n - 1], "broker: %s",
		              err + used);
	return refuse(p, p->broker_line[p->broker_count - 1], "broker: %s",
	              err);
}

static int check_all(struct parse *p)
{
	const struct nc_sup_config *c = p->c;
	if (c->backoff_initial_ms > c->backoff_max_ms)
		return refuse(p,
		              later(p, "backoff_initial_ms", "backoff_max_ms"),
		              "backoff_initial_ms (%u) is above backoff_max_ms "
		              "(%u)",
		              c->backoff_initial_ms, c->backoff_max_ms);
	if (c->heartbeat_timeout_ms <= c->heartbeat_interval_ms)
		return refuse(
		    p,
		    later(p, "heartbeat_interval_ms", "heartbeat_timeout_ms"),
		    "heartbeat_timeout_ms (%u) must be above "
		    "heartbeat_interval_ms (%u)",
		    c->heartbeat_timeout_ms, c->heartbeat_interval_ms);
	return check_broker(p);
}

int nc_sup_config_parse(struct nc_sup_config *c, const char *text, size_t len,
                        char *err, size_t err_size)
{
	struct parse *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	*p = (struct parse){.c = c, .err = err, .err_size = err_size};
	char buf[1024];
	int rc = 0;
	for (size_t at = 0; rc == 0 && at < len;) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
		p->line++;
		if (memchr(text + at, '\0', n) != NULL)
			rc = refuse(p, p->line, "a NUL byte");
		else if (n >= sizeof(buf))
			rc = refuse(p, p->line, "longer than %zu bytes",
			            sizeof(buf) - 1);
		else {
			memcpy(buf, text + at, n);
			buf[n] = '\0';
			rc = line(p, buf);
		}
		at += n + 1;
	}
	if (rc == 0)
		rc = check_all(p);
	if (rc == 0)
		nc_sup_config_finish(c);
	free(p);
	return rc;
}

int nc_sup_config_load(struct nc_sup_config *c, const char *path, char *err,
                       size_t err_size)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		int e = errno;
		snprintf(err, err_size, "%s: %s", path, strerror(e));
		return -e;
	}
	static char text[1 << 20];
	size_t len = fread(text, 1, sizeof(text), f);
	bool too_big = len == sizeof(text);
	fclose(f);
	if (too_big) {
		snprintf(err, err_size, "%s: larger than 1 MiB", path);
		return -EFBIG;
	}
	char why[NC_SUP_ERR_MAX];
	int rc = nc_sup_config_parse(c, text, len, why, sizeof(why));
	if (rc != 0)
		snprintf(err, err_size, "%s: %s", path, why);
	return rc;
}

/* ---------------------------------------------------------------- writer */

static void write_key(const struct nc_sup_config *c, const struct key *k,
                      FILE *out)
{
	const char *field = (const char *)c + k->off;
	if (k->kind == K_U32) {
		uint32_t v = 0;
		if (k->size == sizeof(uint16_t)) {
			uint16_t s;
			memcpy(&s, field, sizeof(s));
			v = s;
		} else
			memcpy(&v, field, sizeof(v));
		fprintf(out, "%s %u\n", k->name, v);
	} else if (*field == '\0') {
		if (k->kind == K_NETNS)
			fprintf(out, "%s current\n", k->name);
		else if (k->kind == K_BIN)
			fprintf(out, "%s auto\n", k->name);
		else if (k->kind == K_ARGS)
			fprintf(out, "%s\n", k->name);
		else
			fprintf(out, "# %s (none)\n", k->name);
	} else
		fprintf(out, "%s %s\n", k->name, field);
}

void nc_sup_config_write(const struct nc_sup_config *c, FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++)
		write_key(c, &keys[i], out);
	for (size_t at = 0; at < c->broker_len;) {
		const char *nl =
		    memchr(c->broker_text + at, '\n', c->broker_len - at);
		size_t n = nl ? (size_t)(nl - (c->broker_text + at))
		              : c->broker_len - at;
		fprintf(out, "broker %.*s\n", (int)n, c->broker_text + at);
		at += n + 1;
	}
}
