/*
 * resolv.c: name resolution inside the sandbox: getaddrinfo,
 * freeaddrinfo, gethostbyname, gethostbyname2 and their _r forms.
 *
 * glibc's resolver opens its sockets with internal calls that LD_PRELOAD
 * cannot reach, so in a sandbox it would find no network. With
 * NETCORE_BROKER set the shim answers itself, in this order:
 *   1. numeric addresses (inet_pton), and a NULL node (AI_PASSIVE: the
 *      wildcard, else loopback);
 *   2. the hosts file: NETCORE_HOSTS, or /etc/hosts;
 *   3. DNS over a netcore UDP socket (libclient, directly) to the server
 *      in NETCORE_DNS ("addr", "addr:port", "[v6]:port") or the first
 *      nameserver of /etc/resolv.conf: A and/or AAAA as the family asks,
 *      2 s per try, two tries, a random id per query.
 * Without NETCORE_BROKER every call is glibc's.
 *
 * Ownership: each addrinfo is one allocation with its address, and the
 * first carries a separately allocated ai_canonname, exactly as glibc
 * allocates them, so freeaddrinfo frees lists from either. gethostbyname
 * and gethostbyname2 return static storage (as glibc's do).
 *
 * What it does not do: search domains and ndots (names are taken as
 * absolute), AI_V4MAPPED / AI_ADDRCONFIG (ignored), AI_IDN, reverse
 * lookups (getnameinfo and gethostbyaddr stay glibc's: numeric answers
 * work, names from DNS do not), nsswitch.conf.
 */
#include "shim/nci_shim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>

#define EXPORT __attribute__((visibility("default")))

struct addrs {
	int n;
	int family[NCI_DNS_MAX_ADDRS];
	unsigned char addr[NCI_DNS_MAX_ADDRS][16];
};

static void addrs_add(struct addrs *a, int family, const void *addr)
{
	if (a->n >= NCI_DNS_MAX_ADDRS)
		return;
	a->family[a->n] = family;
	memcpy(a->addr[a->n], addr, family == AF_INET ? 4 : 16);
	a->n++;
}

/* ------------------------------------------------------------ numeric */

static bool numeric(const char *node, int family, struct addrs *a)
{
	unsigned char buf[16];
	if (family != AF_INET6 && inet_pton(AF_INET, node, buf) == 1) {
		addrs_add(a, AF_INET, buf);
		return true;
	}
	if (family != AF_INET && inet_pton(AF_INET6, node, buf) == 1) {
		addrs_add(a, AF_INET6, buf);
		return true;
	}
	return false;
}

/* ---------------------------------------------------------- hosts file */

/* Takes line's address if one of its names is `name`. */
static void hosts_line(char *line, const char *name, int family,
                       struct addrs *a)
{
	char *hash = strchr(line, '#');
	if (hash != NULL)
		*hash = '\0';
	char *save = NULL;
	char *addr = strtok_r(line, " \t\r\n", &save);
	if (addr == NULL)
		return;
	for (char *w = strtok_r(NULL, " \t\r\n", &save); w != NULL;
	     w = strtok_r(NULL, " \t\r\n", &save)) {
		if (strcasecmp(w, name) == 0) {
			numeric(addr, family, a);
			return;
		}
	}
}

static void from_hosts(const char *name, int family, struct addrs *a)
{
	const char *path = getenv("NETCORE_HOSTS");
	FILE *f = fopen(path != NULL && path[0] ? path : "/etc/hosts", "re");
	if (f == NULL)
		return;
	char line[1024];
	while (fgets(line, sizeof(line), f) != NULL)
		hosts_line(line, name, family, a);
	fclose(f);
}

/* ---------------------------------------------------------------- DNS */

/* "addr", "addr:port" or "[v6]:port" into ss; false if unusable. */
static bool parse_server(const char *text, struct sockaddr_storage *ss,
                         socklen_t *len)
{
	char host[64];
	unsigned long port = 53;
	const char *colon = strrchr(text, ':');
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || (size_t)(close - text - 1) >= sizeof(host))
			return false;
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		if (close[1] == ':')
			port = strtoul(close + 2, NULL, 10);
	} else if (colon != NULL && strchr(text, ':') == colon) {
		if ((size_t)(colon - text) >= sizeof(host))
			return false;
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		port = strtoul(colon + 1, NULL, 10);
	} else {
		snprintf(host, sizeof(host), "%s", text);
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (port == 0 || port > 65535)
		return false;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((unsigned short)port);
		*len = sizeof(*s4);
		return true;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((unsigned short)port);
		*len = sizeof(*s6);
		return true;
	}
	return false;
}

static bool find_server(struct sockaddr_storage *ss, socklen_t *len)
{
	const char *env = getenv("NETCORE_DNS");
	if (env != NULL && env[0] != '\0')
		return parse_server(env, ss, len);
	FILE *f = fopen("/etc/resolv.conf", "re");
	if (f == NULL)
		return false;
	char line[256], addr[128];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = sscanf(line, " nameserver %127s", addr) == 1 &&
		        parse_server(addr, ss, len);
	fclose(f);
	return found;
}

/* One exchange on a connected socket; 0, or -1 (timeout, error). */
static int exchange(struct nc_sock *s, const char *name, int qtype,
                    struct nci_dns_answer *ans)
{
	unsigned short id;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (unsigned short)(uintptr_t)&id;
	unsigned char q[300], r[1500];
	int qn = nci_dns_query(id, name, qtype, q, sizeof(q));
	if (qn < 0 || nc_send(s, q, (size_t)qn, 0) != qn)
		return -1;
	for (;;) {
		/* Stray datagrams are read and ignored until SO_RCVTIMEO. */
		ssize_t n = nc_recv(s, r, sizeof(r), 0);
		if (n < 0)
			return -1;
		if (nci_dns_parse(r, (size_t)n, id, qtype, ans) == 0)
			return 0;
	}
}

/* 0: answered (maybe with no address); EAI_NONAME: NXDOMAIN;
 * EAI_AGAIN: no answer. */
static int query(struct nc_client *c, const struct sockaddr_storage *ss,
                 socklen_t len, const char *name, int qtype, struct addrs *a)
{
	struct nc_sock *s;
	if (nc_socket(c, ss->ss_family, SOCK_DGRAM, 0, &s) != 0)
		return EAI_AGAIN;
	struct timeval tv = {.tv_sec = 2};
	int rc = EAI_AGAIN;
	struct nci_dns_answer ans;
	if (nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
	    nc_connect(s, (const struct sockaddr *)ss, len) == 0) {
		for (int try = 0; try < 2 && rc == EAI_AGAIN; try++)
			if (exchange(s, name, qtype, &ans) == 0)
				rc = ans.rcode == 3   ? EAI_NONAME
				     : ans.rcode != 0 ? EAI_FAIL
				                      : 0;
	}
	nc_close(s);
	for (int i = 0; rc == 0 && i < ans.count; i++)
		addrs_add(a, ans.family[i], ans.addr[i]);
	return rc;
}

static int from_dns(const char *name, int family, struct addrs *a)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!find_server(&ss, &len))
		return EAI_NONAME;
	struct nc_client *c = nci_client();
	if (c == NULL)
		return EAI_AGAIN;
	int r4 =
	    family == AF_INET6 ? EAI_NONAME : query(c, &ss, len, name, 1, a);
	int r6 =
	    family == AF_INET ? EAI_NONAME : query(c, &ss, len, name, 28, a);
	if (a->n > 0)
		return 0;
	if (r4 == EAI_AGAIN || r6 == EAI_AGAIN)
		return EAI_AGAIN;
	if (r4 == EAI_FAIL || r6 == EAI_FAIL)
		return EAI_FAIL;
	return family == AF_UNSPEC && (r4 == 0 || r6 == 0) ? EAI_NODATA
	                                                   : EAI_NONAME;
}

/* The three steps of the file's comment (the node is not NULL). */
static int resolve(const char *node, int family, int flags, struct addrs *a)
{
	if (numeric(node, family, a))
		return 0;
	if (flags & AI_NUMERICHOST)
		return EAI_NONAME;
	from_hosts(node, family, a);
	if (a->n > 0)
		return 0;
	return from_dns(node, family, a);
}

/* ------------------------------------------------------- getaddrinfo */

static int service_port(const char *service, const struct addrinfo *h,
                        unsigned short *port)
{
	*port = 0;
	if (service == NULL)
		return 0;
	char *end;
	unsigned long v = strtoul(service, &end, 10);
	if (service[0] != '\0' && *end == '\0') {
		if (v > 65535)
			return EAI_SERVICE;
		*port = htons((unsigned short)v);
		return 0;
	}
	if (h != NULL && (h->ai_flags & AI_NUMERICSERV))
		return EAI_NONAME;
	bool udp = h != NULL && h->ai_socktype == SOCK_DGRAM;
	struct servent *se = getservbyname(service, udp ? "udp" : "tcp");
	if (se == NULL)
		return EAI_SERVICE;
	*port = (unsigned short)se->s_port;
	return 0;
}

struct ai_block {
	struct addrinfo ai;
	struct sockaddr_storage ss;
};

static struct addrinfo *ai_make(int family, const unsigned char *addr,
                                unsigned short port, int socktype)
{
	struct ai_block *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->ai.ai_family = family;
	b->ai.ai_socktype = socktype;
	b->ai.ai_protocol = socktype == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP;
	b->ai.ai_addr = (struct sockaddr *)&b->ss;
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&b->ss;
		s4->sin_family = AF_INET;
		s4->sin_port = port;
		memcpy(&s4->sin_addr, addr, 4);
		b->ai.ai_addrlen = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&b->ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = port;
		memcpy(&s6->sin6_addr, addr, 16);
		b->ai.ai_addrlen = sizeof(*s6);
	}
	return &b->ai;
}

EXPORT void freeaddrinfo(struct addrinfo *ai)
{
	while (ai != NULL) {
		struct addrinfo *next = ai->ai_next;
		free(ai->ai_canonname);
		free(ai);
		ai = next;
	}
}

/* The list: every address times every socket type asked for. */
static int ai_list(const struct addrs *a, unsigned short port,
                   const struct addrinfo *h, struct addrinfo **res)
{
	int types[2] = {SOCK_STREAM, SOCK_DGRAM}, ntypes = 2;
	if (h != NULL && h->ai_socktype != 0) {
		types[0] = h->ai_socktype;
		ntypes = 1;
	}
	struct addrinfo *head = NULL, **tail = &head;
	for (int i = 0; i < a->n; i++) {
		for (int t = 0; t < ntypes; t++) {
			*tail =
			    ai_make(a->family[i], a->addr[i], port, types[t]);
			if (*tail == NULL) {
				freeaddrinfo(head);
				return EAI_MEMORY;
			}
			tail = &(*tail)->ai_next;
		}
	}
	*res = head;
	return 0;
}

static void null_node(int family, int flags, struct addrs *a)
{
	static const unsigned char any[16], lo6[16] = {[15] = 1};
	static const unsigned char lo4[4] = {127, 0, 0, 1};
	bool passive = flags & AI_PASSIVE;
	if (family != AF_INET6)
		addrs_add(a, AF_INET, passive ? any : lo4);
	if (family != AF_INET)
		addrs_add(a, AF_INET6, passive ? any : lo6);
}

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
                      struct addrinfo **);

EXPORT int getaddrinfo(const char *node, const char *service,
                       const struct addrinfo *h, struct addrinfo **res)
{
	if (!nci_enabled()) {
		gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
		return real(node, service, h, res);
	}
	int family = h != NULL ? h->ai_family : AF_UNSPEC;
	int flags = h != NULL ? h->ai_flags : 0;
	if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
		return EAI_FAMILY;
	if (node == NULL && service == NULL)
		return EAI_NONAME;
	unsigned short port;
	int rc = service_port(service, h, &port);
	struct addrs a = {0};
	if (rc == 0 && node == NULL)
		null_node(family, flags, &a);
	else if (rc == 0)
		rc = resolve(node, family, flags, &a);
	if (rc == 0)
		rc = ai_list(&a, port, h, res);
	if (rc == 0 && (flags & AI_CANONNAME) && *res != NULL)
		(*res)->ai_canonname = strdup(node != NULL ? node : "");
	return rc;
}

/* ---------------------------------------------------- gethostbyname */

/* Fills he from a, with its strings and arrays in buf. 0 or ERANGE. */
static int hostent_fill(const char *name, int family, const struct addrs *a,
                        struct hostent *he, char *buf, size_t cap)
{
	size_t alen = family == AF_INET ? 4 : 16, n = 0;
	for (int i = 0; i < a->n; i++)
		n += a->family[i] == family;
	size_t names = strlen(name) + 1;
	size_t need = (n + 1) * sizeof(char *) + sizeof(char *) + n * alen +
	              names + sizeof(char *);
	if (need > cap)
		return ERANGE;
	char **list = (char **)(void *)buf;
	char **aliases = list + n + 1;
	char *data = (char *)(aliases + 1);
	size_t k = 0;
	for (int i = 0; i < a->n; i++) {
		if (a->family[i] != family)
			continue;
		list[k] = data + k * alen;
		memcpy(list[k], a->addr[i], alen);
		k++;
	}
	list[k] = NULL;
	aliases[0] = NULL;
	char *nm = data + n * alen;
	memcpy(nm, name, names);
	*he = (struct hostent){.h_name = nm,
	                       .h_aliases = aliases,
	                       .h_addrtype = family,
	                       .h_length = (int)alen,
	                       .h_addr_list = list};
	return 0;
}

static int herr_of(int eai)
{
	return eai == EAI_AGAIN    ? TRY_AGAIN
	       : eai == EAI_NODATA ? NO_DATA
	       : eai == EAI_FAIL   ? NO_RECOVERY
	                           : HOST_NOT_FOUND;
}

typedef int (*ghbn2r_fn)(const char *, int, struct hostent *, char *, size_t,
                         struct hostent **, int *);

EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret,
                            char *buf, size_t buflen, struct hostent **result,
                            int *h_errnop)
{
	if (!nci_enabled()) {
		ghbn2r_fn real =
		    (ghbn2r_fn)dlsym(RTLD_NEXT, "gethostbyname2_r");
		return real(name, af, ret, buf, buflen, result, h_errnop);
	}
	*result = NULL;
	if (af != AF_INET && af != AF_INET6) {
		*h_errnop = NO_RECOVERY;
		return EAFNOSUPPORT;
	}
	struct addrs a = {0};
	int rc = resolve(name, af, 0, &a);
	if (rc == 0 && a.n == 0)
		rc = EAI_NODATA;
	if (rc != 0) {
		*h_errnop = herr_of(rc);
		return rc == EAI_AGAIN ? EAGAIN : 0;
	}
	int err = hostent_fill(name, af, &a, ret, buf, buflen);
	if (err != 0) {
		*h_errnop = NETDB_INTERNAL;
		return err;
	}
	*h_errnop = 0;
	*result = ret;
	return 0;
}

EXPORT int gethostbyname_r(const char *name, struct hostent *ret, char *buf,
                           size_t buflen, struct hostent **result,
                           int *h_errnop)
{
	return gethostbyname2_r(name, AF_INET, ret, buf, buflen, result,
	                        h_errnop);
}

EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
	static struct hostent he;
	static char buf[2048];
	struct hostent *result;
	int herr;
	gethostbyname2_r(name, af, &he, buf, sizeof(buf), &result, &herr);
	if (result == NULL)
		h_errno = herr;
	return result;
}

EXPORT struct hostent *gethostbyname(const char *name)
{
	return gethostbyname2(name, AF_INET);
}
