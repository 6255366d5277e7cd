/*
 * The broker's config file: parser, writer and the policy checks.
 *
 * Format (README.md is the reference): one setting per line, `key value`
 * or `key arg arg`, `#` starts a comment, blank lines are fine. Scalars
 * may appear once each; rule lines (allow_/deny_connect, allow_/deny_bind,
 * allow_uid) accumulate in file order. Every refusal names the line and the
 * problem, because an operator who gets "invalid config" and nothing else
 * will guess, and guessing about policy is how holes are made.
 *
 * Rules: first match wins, and the defaults come after the file's rules
 * (connect: allow everything; bind: allow port 0 and 1024-65535, deny the
 * rest). So a file that only denies leaves everything else as it was, and
 * a file that wants "only these" ends with `deny_connect any`.
 *
 * Ownership and state: the parser writes only into the caller's struct,
 * which is plain data (no pointers, no allocation), so a config can be
 * copied, compared and handed to another process as it is. The parser
 * reads the text in place and never past `len`: it is fuzzed
 * (fuzz/config_fuzz.c) because the supervisor may one day take config
 * from less trusted hands.
 *
 * What it does not do: reload (a new config takes a broker restart), name
 * resolution (addresses only), or per-uid quotas.
 */
#include "services/proxy_broker/broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define TOKEN_MAX  64
#define TOKENS_MAX 4
#define FILE_MAX   (1u << 20)

void nc_broker_config_default(struct nc_broker_config *c)
{
	memset(c, 0, sizeof(*c));
	nc_client_params_default(&c->region);
	c->max_clients = 256;
	c->max_backlog = 128;
	c->max_pending = 1024;
	c->memory_limit = 2ull << 30;
	c->attach_timeout_ms = 5000;
	c->core_timeout_ms = 5000;
}

uint64_t nc_broker_region_bytes(const struct nc_broker_config *c)
{
	struct nc_client_layout l;
	if (nc_client_layout(&c->region, &l) != 0)
		return 0;
	return l.size;
}

/* ---------------------------------------------------------------- errors */

struct parser {
	struct nc_broker_config *c;
	unsigned line;
	char *err;
	size_t err_size;
	unsigned seen[16]; /* line each scalar key was set on, 0: not yet */
};

static int fail(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	if (p->err != NULL && p->err_size > 0) {
		int n = snprintf(p->err, p->err_size, "line %u: ", p->line);
		if (n >= 0 && (size_t)n < p->err_size) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

/* --------------------------------------------------------------- numbers */

/* Decimal digits only: no sign, no spaces, no hex, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* A byte count with an optional binary suffix K, M, G or T. */
static bool parse_size(const char *s, uint64_t *out)
{
	char digits[TOKEN_MAX];
	size_t n = strlen(s);
	unsigned shift = 0;
	if (n == 0 || n >= sizeof(digits))
		return false;
	memcpy(digits, s, n + 1);
	switch (digits[n - 1]) {
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	}
	if (shift)
		digits[n - 1] = '\0';
	uint64_t v;
	if (!parse_u64(digits, &v) || v > (UINT64_MAX >> shift))
		return false;
	*out = v << shift;
	return true;
}

/* "N" or "N-M" within [0, max]; "any" if any_ok. */
static bool parse_range(const char *s, uint64_t max, bool any_ok, uint64_t *lo,
                        uint64_t *hi)
{
	if (any_ok && strcmp(s, "any") == 0) {
		*lo = 0;
		*hi = max;
		return true;
	}
	char buf[TOKEN_MAX];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, s, n + 1);
	char *dash = strchr(buf, '-');
	if (dash != NULL)
		*dash = '\0';
	if (!parse_u64(buf, lo))
		return false;
	*hi = *lo;
	if (dash != NULL && !parse_u64(dash + 1, hi))
		return false;
	return *lo <= *hi && *hi <= max;
}

/* ------------------------------------------------------------- addresses */

static bool host_bits_zero(const uint8_t *addr, unsigned bytes, unsigned prefix)
{
	for (unsigned bit = prefix; bit < bytes * 8; bit++)
		if (addr[bit / 8] & (0x80u >> (bit % 8)))
			return false;
	return true;
}

/* "any", "ADDR" or "ADDR/LEN" into the rule's family, addr, prefix_len. */
static int parse_prefix(struct parser *p, const char *key, const char *s,
                        struct nc_broker_rule *r)
{
	if (strcmp(s, "any") == 0)
		return 0;
	char buf[TOKEN_MAX];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return fail(p, "%s: address '%s' is too long", key, s);
	memcpy(buf, s, n + 1);
	char *slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	unsigned bytes;
	if (inet_pton(AF_INET, buf, r->addr) == 1) {
		r->family = 4;
		bytes = 4;
	} else if (inet_pton(AF_INET6, buf, r->addr) == 1) {
		r->family = 6;
		bytes = 16;
	} else {
		return fail(p, "%s: '%s' is not an IPv4 or IPv6 address", key,
		            buf);
	}
	uint64_t len = bytes * 8;
	if (slash != NULL && (!parse_u64(slash + 1, &len) || len > bytes * 8))
		return fail(p, "%s: prefix length '%s' is not 0-%u", key,
		            slash + 1, bytes * 8);
	if (!host_bits_zero(r->addr, bytes, (unsigned)len))
		return fail(p, "%s: '%s' has bits set after the first %u", key,
		            s, (unsigned)len);
	r->prefix_len = (uint8_t)len;
	return 0;
}

/* ------------------------------------------------------------------ keys */

enum key_kind {
	K_U32,   /* a number in [min, max] */
	K_POW2,  /* a power of two in [min, max] */
	K_BUFSZ, /* a multiple of 64 in [min, max] */
	K_SIZE,  /* a byte count (suffixes) in [min, max] */
	K_UID,   /* allow_uid N[-M] */
	K_CONN,  /* allow_/deny_connect PREFIX [PORTS] */
	K_BIND,  /* allow_/deny_bind PORTS */
};

struct key {
	const char *name;
	enum key_kind kind;
	uint64_t min, max;
	size_t offset; /* scalars: field in struct nc_broker_config */
	uint8_t allow; /* rules */
};

#define FIELD(f) offsetof(struct nc_broker_config, f)

static const struct key keys[] = {
    {"max_clients", K_U32, 1, 4096, FIELD(max_clients), 0},
    {"max_sockets", K_U32, 1, 4096, FIELD(region.max_sockets), 0},
    {"ring_slots", K_POW2, 2, 1u << 24, FIELD(region.ring_slots), 0},
    {"buffer_count", K_U32, 2, 1u << 20, FIELD(region.buf_count), 0},
    {"buffer_size", K_BUFSZ, 2048, 1u << 20, FIELD(region.buf_size), 0},
    {"max_backlog", K_U32, 1, 65535, FIELD(max_backlog), 0},
    {"max_pending", K_U32, 1, 1u << 20, FIELD(max_pending), 0},
    {"memory_limit", K_SIZE, 1u << 20, 1ull << 50, FIELD(memory_limit), 0},
    {"attach_timeout_ms", K_U32, 10, 600000, FIELD(attach_timeout_ms), 0},
    {"core_timeout_ms", K_U32, 10, 600000, FIELD(core_timeout_ms), 0},
    {"allow_uid", K_UID, 0, UINT32_MAX - 1, 0, 1},
    {"allow_connect", K_CONN, 0, 0, 0, 1},
    {"deny_connect", K_CONN, 0, 0, 0, 0},
    {"allow_bind", K_BIND, 0, 0, 0, 1},
    {"deny_bind", K_BIND, 0, 0, 0, 0},
};

#define KEY_COUNT   (sizeof(keys) / sizeof(keys[0]))
#define KEY_MEMORY  7 /* index of memory_limit */
#define KEY_REGION0 1 /* max_sockets .. buffer_size: the region's params */
#define KEY_REGION1 4

static bool is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

static int set_scalar(struct parser *p, unsigned k, const char *val)
{
	const struct key *key = &keys[k];
	uint64_t v;
	bool ok =
	    key->kind == K_SIZE ? parse_size(val, &v) : parse_u64(val, &v);
	if (!ok)
		return fail(p, "%s: '%s' is not a number", key->name, val);
	if (v < key->min || v > key->max)
		return fail(p, "%s: %s is out of range %" PRIu64 "-%" PRIu64,
		            key->name, val, key->min, key->max);
	if (key->kind == K_POW2 && !is_pow2(v))
		return fail(p, "%s: %s is not a power of two", key->name, val);
	if (key->kind == K_BUFSZ && v % 64 != 0)
		return fail(p, "%s: %s is not a multiple of 64", key->name,
		            val);
	if (p->seen[k])
		return fail(p, "%s given twice (first on line %u)", key->name,
		            p->seen[k]);
	p->seen[k] = p->line;
	char *field = (char *)p->c + key->offset;
	if (key->kind == K_SIZE) {
		memcpy(field, &v, sizeof(uint64_t));
	} else {
		uint32_t v32 = (uint32_t)v;
		memcpy(field, &v32, sizeof(v32));
	}
	return 0;
}

static int add_uid(struct parser *p, const struct key *key, const char *val)
{
	uint64_t lo, hi;
	if (!parse_range(val, key->max, false, &lo, &hi))
		return fail(p, "%s: '%s' is not a uid or uid range (N or N-M)",
		            key->name, val);
	if (p->c->uid_count == NC_BROKER_MAX_UIDS)
		return fail(p, "%s: more than %d uid lines", key->name,
		            NC_BROKER_MAX_UIDS);
	struct nc_broker_uid_range *u = &p->c->uids[p->c->uid_count++];
	u->lo = (uint32_t)lo;
	u->hi = (uint32_t)hi;
	return 0;
}

static int parse_ports(struct parser *p, const char *key, const char *s,
                       struct nc_broker_rule *r)
{
	uint64_t lo, hi;
	if (!parse_range(s, 65535, true, &lo, &hi))
		return fail(p,
		            "%s: '%s' is not a port, port range (N-M) or "
		            "'any'",
		            key, s);
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
}

static int add_rule(struct parser *p, const struct key *key, char **args,
                    int nargs)
{
	bool conn = key->kind == K_CONN;
	uint32_t *count = conn ? &p->c->connect_count : &p->c->bind_count;
	struct nc_broker_rule *list = conn ? p->c->connect : p->c->bind;
	bool nargs_ok = nargs == 1 || (conn && nargs == 2);
	if (!nargs_ok)
		return fail(p, "%s takes %s", key->name,
		            conn ? "a prefix and optionally ports"
		                 : "one port or port range");
	if (*count == NC_BROKER_MAX_RULES)
		return fail(p, "%s: more than %d rules of this kind", key->name,
		            NC_BROKER_MAX_RULES);
	struct nc_broker_rule r = {.allow = key->allow, .port_hi = 65535};
	int err = conn ? parse_prefix(p, key->name, args[0], &r)
	               : parse_ports(p, key->name, args[0], &r);
	if (err == 0 && conn && nargs == 2)
		err = parse_ports(p, key->name, args[1], &r);
	if (err)
		return err;
	list[(*count)++] = r;
	return 0;
}

static int apply_line(struct parser *p, char **tok, int ntok)
{
	for (unsigned k = 0; k < KEY_COUNT; k++) {
		const struct key *key = &keys[k];
		if (strcmp(tok[0], key->name) != 0)
			continue;
		if (key->kind == K_CONN || key->kind == K_BIND)
			return add_rule(p, key, tok + 1, ntok - 1);
		if (ntok != 2)
			return fail(p, "%s takes exactly one value", key->name);
		if (key->kind == K_UID)
			return add_uid(p, key, tok[1]);
		return set_scalar(p, k, tok[1]);
	}
	return fail(p, "unknown setting '%s'", tok[0]);
}

/* ----------------------------------------------------------------- lines */

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' ||
	       ch == '\f';
}

/* Splits one line (no newline in it) into tokens copied to `store`. */
static int tokenize(struct parser *p, const char *s, size_t n,
                    char store[TOKENS_MAX][TOKEN_MAX], char **tok)
{
	int ntok = 0;
	size_t i = 0;
	while (i < n) {
		if (s[i] == '#')
			break;
		if (s[i] == '\0')
			return fail(p, "NUL byte in the line");
		if (is_space(s[i])) {
			i++;
			continue;
		}
		size_t start = i;
		while (i < n && !is_space(s[i]) && s[i] != '#' && s[i] != '\0')
			i++;
		if (ntok == TOKENS_MAX)
			return fail(p, "too many fields (at most %d)",
			            TOKENS_MAX - 1);
		size_t len = i - start;
		if (len >= TOKEN_MAX)
			return fail(p, "field '%.20s...' is too long",
			            s + start);
		memcpy(store[ntok], s + start, len);
		store[ntok][len] = '\0';
		tok[ntok] = store[ntok];
		ntok++;
	}
	return ntok;
}

static unsigned last_region_line(const struct parser *p)
{
	unsigned line = 0;
	for (unsigned k = KEY_REGION0; k <= KEY_REGION1; k++)
		if (p->seen[k] > line)
			line = p->seen[k];
	return line;
}

/* Settings that are fine alone but not together. */
static int check_whole(struct parser *p)
{
	uint64_t need = nc_broker_region_bytes(p->c);
	unsigned region_line = last_region_line(p);
	p->line = region_line > p->seen[KEY_MEMORY] ? region_line
	                                            : p->seen[KEY_MEMORY];
	if (need == 0)
		return fail(p, "max_sockets, ring_slots, buffer_count and "
		               "buffer_size do not make a valid client region");
	if (need > p->c->memory_limit)
		return fail(p,
		            "one client's region needs %" PRIu64
		            " bytes, more than memory_limit %" PRIu64,
		            need, p->c->memory_limit);
	return 0;
}

int nc_broker_config_parse(struct nc_broker_config *c, const char *text,
                           size_t len, char *err, size_t err_size)
{
	struct parser p = {.c = c, .err = err, .err_size = err_size};
	if (err != NULL && err_size > 0)
		err[0] = '\0';
	size_t at = 0;
	while (at < len) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = nl != NULL ? (size_t)(nl - (text + at)) : len - at;
		char store[TOKENS_MAX][TOKEN_MAX];
		char *tok[TOKENS_MAX];
		p.line++;
		int ntok = tokenize(&p, text + at, n, store, tok);
		if (ntok < 0)
			return ntok;
		if (ntok > 0) {
			int e = apply_line(&p, tok, ntok);
			if (e)
				return e;
		}
		at += n + 1;
	}
	return check_whole(&p);
}

int nc_broker_config_load(struct nc_broker_config *c, const char *path,
                          char *err, size_t err_size)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		int e = errno;
		snprintf(err, err_size, "%s: %s", path, strerror(e));
		return -e;
	}
	char *buf = malloc(FILE_MAX + 1);
	size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
	int rerr = ferror(f);
	fclose(f);
	if (buf == NULL || rerr) {
		free(buf);
		snprintf(err, err_size, "%s: cannot read", path);
		return -EIO;
	}
	if (n > FILE_MAX) {
		free(buf);
		snprintf(err, err_size, "%s: larger than %u bytes", path,
		         FILE_MAX);
		return -EFBIG;
	}
	char msg[NC_BROKER_ERR_MAX];
	int e = nc_broker_config_parse(c, buf, n, msg, sizeof(msg));
	free(buf);
	if (e)
		snprintf(err, err_size, "%s: %s", path, msg);
	return e;
}

/* ---------------------------------------------------------------- writer */

static void write_ports(FILE *out, const struct nc_broker_rule *r)
{
	if (r->port_lo == 0 && r->port_hi == 65535)
		fputs("any", out);
	else if (r->port_lo == r->port_hi)
		fprintf(out, "%u", r->port_lo);
	else
		fprintf(out, "%u-%u", r->port_lo, r->port_hi);
}

static void write_prefix(FILE *out, const struct nc_broker_rule *r)
{
	char a[INET6_ADDRSTRLEN];
	if (r->family == 0) {
		fputs("any", out);
		return;
	}
	inet_ntop(r->family == 4 ? AF_INET : AF_INET6, r->addr, a, sizeof(a));
	fprintf(out, "%s/%u", a, r->prefix_len);
}

void nc_broker_config_write(const struct nc_broker_config *c, FILE *out)
{
	for (unsigned k = 0; k < KEY_COUNT; k++) {
		const struct key *key = &keys[k];
		const char *field = (const char *)c + key->offset;
		if (key->kind == K_SIZE) {
			uint64_t v;
			memcpy(&v, field, sizeof(v));
			fprintf(out, "%s %" PRIu64 "\n", key->name, v);
		} else if (key->kind == K_U32 || key->kind == K_POW2 ||
		           key->kind == K_BUFSZ) {
			uint32_t v;
			memcpy(&v, field, sizeof(v));
			fprintf(out, "%s %" PRIu32 "\n", key->name, v);
		}
	}
	for (uint32_t i = 0; i < c->uid_count; i++)
		fprintf(out, "allow_uid %" PRIu32 "-%" PRIu32 "\n",
		        c->uids[i].lo, c->uids[i].hi);
	for (uint32_t i = 0; i < c->connect_count; i++) {
		const struct nc_broker_rule *r = &c->connect[i];
		fputs(r->allow ? "allow_connect " : "deny_connect ", out);
		write_prefix(out, r);
		fputc(' ', out);
		write_ports(out, r);
		fputc('\n', out);
	}
	for (uint32_t i = 0; i < c->bind_count; i++) {
		const struct nc_broker_rule *r = &c->bind[i];
		fputs(r->allow ? "allow_bind " : "deny_bind ", out);
		write_ports(out, r);
		fputc('\n', out);
	}
}

/* ---------------------------------------------------------------- policy */

static bool prefix_matches(const struct nc_broker_rule *r, unsigned family,
                           const uint8_t *addr)
{
	if (r->family == 0)
		return true;
	if (r->family != family)
		return false;
	unsigned full = r->prefix_len / 8, rest = r->prefix_len % 8;
	if (memcmp(r->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xffu << (8 - rest));
	return (addr[full] & mask) == r->addr[full];
}

static bool is_v4_mapped(const uint8_t *a)
{
	static const uint8_t head[12] = {0, 0, 0, 0, 0,    0,
	                                 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(a, head, sizeof(head)) == 0;
}

int nc_broker_connect_allowed(const struct nc_broker_config *c,
                              const struct nc_msg_addr *dst)
{
	uint8_t addr[16] = {0};
	unsigned family;
	if (dst->family == 0)
		return 0;
	if (dst->family == AF_INET) {
		family = 4;
		memcpy(addr, dst->addr, 4);
	} else if (dst->family == AF_INET6 && is_v4_mapped(dst->addr)) {
		family = 4;
		memcpy(addr, dst->addr + 12, 4);
	} else if (dst->family == AF_INET6) {
		family = 6;
		memcpy(addr, dst->addr, 16);
	} else {
		return -EAFNOSUPPORT;
	}
	for (uint32_t i = 0; i < c->connect_count; i++) {
		const struct nc_broker_rule *r = &c->connect[i];
		if (dst->port >= r->port_lo && dst->port <= r->port_hi &&
		    prefix_matches(r, family, addr))
			return r->allow ? 0 : -EACCES;
	}
	return 0; /* the default: allow */
}

int nc_broker_bind_allowed(const struct nc_broker_config *c, uint16_t port)
{
	for (uint32_t i = 0; i < c->bind_count; i++) {
		const struct nc_broker_rule *r = &c->bind[i];
		if (port >= r->port_lo && port <= r->port_hi)
			return r->allow ? 0 : -EPERM;
	}
	/* The defaults: an ephemeral port, or an unprivileged one. */
	return port == 0 || port >= 1024 ? 0 : -EPERM;
}

bool nc_broker_uid_allowed(const struct nc_broker_config *c, uint32_t uid)
{
	if (c->uid_count == 0)
		return true;
	for (uint32_t i = 0; i < c->uid_count; i++)
		if (uid >= c->uids[i].lo && uid <= c->uids[i].hi)
			return true;
	return false;
}
