/*
 * Fuzzes the broker's config parser (nc_broker_config_parse): the input
 * is the file's text, read in place (the driver hands it over in a block
 * of exactly its size, so any read past the end is caught).
 *
 * Properties:
 *   - the result is 0 or -EINVAL, and a refusal's message starts with
 *     "line N: " for a line that exists;
 *   - an accepted config is within every documented range, its region
 *     fits memory_limit, its rules are well formed (ports ordered, prefix
 *     lengths within the family, no host bits), and written out with
 *     nc_broker_config_write it parses back to exactly the same struct;
 *   - its connect policy judges an IPv4-mapped IPv6 address exactly as the
 *     IPv4 address it maps (probed with addresses taken from its own
 *     rules and from the input).
 */
#include "services/proxy_broker/broker.h"
#include "tools/fuzz/fuzz.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Nothing set after the prefix, nor past the family's address bytes. */
static bool host_bits_zero(const struct nc_broker_rule *r)
{
	for (unsigned b = r->prefix_len; b < 128; b++)
		if (r->addr[b / 8] & (0x80u >> (b % 8)))
			return false;
	return true;
}

static void check_rules(const struct nc_broker_rule *list, uint32_t n,
                        bool connect)
{
	FUZZ_CHECK(n <= NC_BROKER_MAX_RULES);
	for (uint32_t i = 0; i < n; i++) {
		const struct nc_broker_rule *r = &list[i];
		FUZZ_CHECK(r->allow <= 1 && r->pad == 0);
		FUZZ_CHECK(r->port_lo <= r->port_hi);
		FUZZ_CHECK(r->family == 0 || r->family == 4 || r->family == 6);
		FUZZ_CHECK(connect || r->family == 0);
		FUZZ_CHECK(r->prefix_len <= (r->family == 4 ? 32 : 128));
		FUZZ_CHECK(r->family != 0 || r->prefix_len == 0);
		FUZZ_CHECK(host_bits_zero(r));
	}
}

static void check_ranges(const struct nc_broker_config *c)
{
	const struct nc_client_params *p = &c->region;
	FUZZ_CHECK(p->max_sockets >= 1 && p->max_sockets <= 4096);
	FUZZ_CHECK(p->ring_slots >= 2 &&
	           (p->ring_slots & (p->ring_slots - 1)) == 0);
	FUZZ_CHECK(p->buf_count >= 2 && p->buf_count <= (1u << 20));
	FUZZ_CHECK(p->buf_size >= 2048 && p->buf_size % 64 == 0);
	FUZZ_CHECK(c->max_clients >= 1 && c->max_clients <= 4096);
	FUZZ_CHECK(c->max_backlog >= 1 && c->max_backlog <= 65535);
	FUZZ_CHECK(c->max_pending >= 1);
	FUZZ_CHECK(c->attach_timeout_ms >= 10 && c->core_timeout_ms >= 10);
	uint64_t need = nc_broker_region_bytes(c);
	FUZZ_CHECK(need != 0 && need <= c->memory_limit);
	FUZZ_CHECK(c->uid_count <= NC_BROKER_MAX_UIDS);
	for (uint32_t i = 0; i < c->uid_count; i++)
		FUZZ_CHECK(c->uids[i].lo <= c->uids[i].hi);
	check_rules(c->connect, c->connect_count, true);
	check_rules(c->bind, c->bind_count, false);
}

static void check_round_trip(const struct nc_broker_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	FUZZ_CHECK(f != NULL);
	nc_broker_config_write(c, f);
	fclose(f);
	struct nc_broker_config *back = malloc(sizeof(*back));
	FUZZ_CHECK(back != NULL);
	nc_broker_config_default(back);
	char err[NC_BROKER_ERR_MAX];
	if (nc_broker_config_parse(back, text, len, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n%s", err, text);
		FUZZ_CHECK(false);
	}
	FUZZ_CHECK(memcmp(back, c, sizeof(*c)) == 0);
	free(back);
	free(text);
}

/* v4 a.b.c.d judged the same as ::ffff:a.b.c.d. */
static void check_mapped(const struct nc_broker_config *c, const uint8_t *v4,
                         uint16_t port)
{
	struct nc_msg_addr a = {.family = AF_INET, .port = port};
	memcpy(a.addr, v4, 4);
	struct nc_msg_addr m = {.family = AF_INET6, .port = port};
	m.addr[10] = m.addr[11] = 0xff;
	memcpy(m.addr + 12, v4, 4);
	FUZZ_CHECK(nc_broker_connect_allowed(c, &a) ==
	           nc_broker_connect_allowed(c, &m));
}

static void check_policy(const struct nc_broker_config *c, const uint8_t *data,
                         size_t size)
{
	for (uint32_t i = 0; i < c->connect_count; i++) {
		const struct nc_broker_rule *r = &c->connect[i];
		check_mapped(c, r->addr, r->port_lo);
		check_mapped(c, r->addr, r->port_hi);
	}
	uint8_t v4[4] = {0};
	uint16_t port = 0;
	if (size >= 6) {
		memcpy(v4, data + size - 6, 4);
		memcpy(&port, data + size - 2, 2);
	}
	check_mapped(c, v4, port);
	for (uint32_t p = 0; p < 65536; p += 4099)
		FUZZ_CHECK(nc_broker_bind_allowed(c, (uint16_t)p) == 0 ||
		           nc_broker_bind_allowed(c, (uint16_t)p) == -EPERM);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nc_broker_config *c = malloc(sizeof(*c));
	FUZZ_CHECK(c != NULL);
	nc_broker_config_default(c);
	char err[NC_BROKER_ERR_MAX];
	int rc = nc_broker_config_parse(c, (const char *)data, size, err,
	                                sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc != 0) {
		fuzz_check_line_error(err, data, size);
	} else {
		check_ranges(c);
		check_round_trip(c);
		check_policy(c, data, size);
	}
	free(c);
	return 0;
}

/* ------------------------------------------------------------------ seeds */

static const char seed_full[] = "# broker\n"
                                "max_sockets 32\n"
                                "buffer_count 256\n"
                                "buffer_size 8192\n"
                                "ring_slots 128\n"
                                "max_clients 10\n"
                                "max_backlog 64\n"
                                "max_pending 100\n"
                                "memory_limit 1G\n"
                                "attach_timeout_ms 250\n"
                                "core_timeout_ms 1500\n"
                                "allow_uid 1000-1999\n"
                                "allow_connect 10.1.0.0/16 443\n"
                                "deny_connect 10.0.0.0/8\n"
                                "deny_connect fd00::/8 1-1023\n"
                                "deny_connect ::ffff:0:0/96\n"
                                "allow_connect 192.0.2.1\n"
                                "deny_connect any 25\n"
                                "allow_bind 80\n"
                                "deny_bind 0-1023\n";
static const char seed_bad_key[] = "max_sockets 8\nmax_sokets 9\n";
static const char seed_twice[] = "max_sockets 8\n\nmax_sockets 9\n";
static const char seed_prefix[] = "allow_connect 10.1.0.0/8 80-90\n";
static const char seed_region[] = "buffer_count 1048576\nbuffer_size 4096\n";
static const char seed_crlf[] = "max_backlog 7\r\n\tdeny_bind any # all\r\n";

#define TEXT_SEED(s)                                                           \
	{                                                                      \
		(const uint8_t *)(s), sizeof(s) - 1                            \
	}

const struct fuzz_seed fuzz_seeds[] = {
    TEXT_SEED(seed_full),   TEXT_SEED(seed_bad_key), TEXT_SEED(seed_twice),
    TEXT_SEED(seed_prefix), TEXT_SEED(seed_region),  TEXT_SEED(seed_crlf),
};
const size_t fuzz_seed_count = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
