/*
 * Addresses: the caller's struct sockaddr to the wire's struct nc_msg_addr
 * (and struct nc_dgram_hdr, which has the same fields) and back.
 *
 * Checks follow Linux's inet/inet6 code, so the caller sees the errno the
 * kernel would give: a length too short for the socket's own family is
 * EINVAL; a well-sized address of the other family is EAFNOSUPPORT. An
 * AF_INET6 socket reports an IPv4 peer as a v4-mapped address, as Linux
 * does for a dual-stack socket.
 *
 * Trust. Addresses coming back (replies, datagram headers) are the core's
 * and are checked: a family we cannot express is EIO, never a bigger copy.
 * What it does not do: resolve names, or judge policy (the broker does).
 */
#include "libclient/client_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static socklen_t family_len(int domain)
{
	return domain == AF_INET6 ? sizeof(struct sockaddr_in6)
	                          : sizeof(struct sockaddr_in);
}

static void from_in(const struct sockaddr_in *sin, struct nc_msg_addr *out)
{
	out->family = AF_INET;
	out->port = ntohs(sin->sin_port);
	memcpy(out->addr, &sin->sin_addr, 4);
}

static void from_in6(const struct sockaddr_in6 *sin6, struct nc_msg_addr *out)
{
	out->family = AF_INET6;
	out->port = ntohs(sin6->sin6_port);
	out->scope_id = sin6->sin6_scope_id;
	memcpy(out->addr, &sin6->sin6_addr, 16);
}

int nci_addr_from_sockaddr(int domain, const struct sockaddr *sa, socklen_t len,
                           bool unspec_ok, struct nc_msg_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa == NULL || len < sizeof(sa_family_t))
		return -EINVAL;
	sa_family_t family;
	memcpy(&family, &sa->sa_family, sizeof(family));
	if (family == AF_UNSPEC && unspec_ok)
		return 0; /* connect(AF_UNSPEC): dissolve the association */
	if (len < family_len(domain))
		return -EINVAL;
	if (family != domain)
		return -EAFNOSUPPORT;
	if (family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof(sin));
		from_in(&sin, out);
	} else {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof(sin6));
		from_in6(&sin6, out);
	}
	return 0;
}

/* ::ffff:a.b.c.d for an IPv4 address on an AF_INET6 socket. */
static void mapped(const struct nc_msg_addr *a, struct sockaddr_in6 *sin6)
{
	memset(&sin6->sin6_addr, 0, sizeof(sin6->sin6_addr));
	sin6->sin6_addr.s6_addr[10] = 0xff;
	sin6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sin6->sin6_addr.s6_addr[12], a->addr, 4);
}

int nci_addr_to_sockaddr(int domain, const struct nc_msg_addr *a,
                         struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t full = family_len(domain);
	if (a->family != 0 && a->family != AF_INET && a->family != AF_INET6)
		return -EIO;
	if (domain == AF_INET && a->family == AF_INET6)
		return -EIO;
	if (domain == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		memcpy(&sin->sin_addr, a->addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(a->port);
		if (a->family == AF_INET)
			mapped(a, sin6);
		else {
			memcpy(&sin6->sin6_addr, a->addr, 16);
			sin6->sin6_scope_id = a->scope_id;
		}
	}
	if (sa != NULL && len != NULL)
		memcpy(sa, &ss, *len < full ? *len : full);
	if (len != NULL)
		*len = full;
	return 0;
}
