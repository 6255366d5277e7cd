/* Control message helpers; see msg.h. */
#include "proto/msg.h"

#include <errno.h>
#include <string.h>

void nc_msg_init(struct nc_msg_hdr *h, enum nc_msg_type type, uint32_t id,
                 uint32_t size)
{
	h->magic = NC_MSG_MAGIC;
	h->version = NC_MSG_VERSION;
	h->type = (uint16_t)type;
	h->id = id;
	h->size = size;
}

int nc_msg_check(const void *buf, size_t len, size_t expected_size)
{
	struct nc_msg_hdr h;
	if (len != expected_size || len < sizeof(h))
		return -EPROTO;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != NC_MSG_MAGIC || h.version != NC_MSG_VERSION ||
	    h.size != len || h.type == 0 || h.type >= NC_MSG_TYPE_END)
		return -EPROTO;
	return 0;
}

const char *nc_msg_type_name(uint32_t type)
{
	static const char *const names[NC_MSG_TYPE_END] = {
	    [NC_MSG_ATTACH] = "attach",
	    [NC_MSG_SOCKET] = "socket",
	    [NC_MSG_BIND] = "bind",
	    [NC_MSG_LISTEN] = "listen",
	    [NC_MSG_ACCEPT] = "accept",
	    [NC_MSG_CONNECT] = "connect",
	    [NC_MSG_SHUTDOWN] = "shutdown",
	    [NC_MSG_CLOSE] = "close",
	    [NC_MSG_SETSOCKOPT] = "setsockopt",
	    [NC_MSG_GETSOCKOPT] = "getsockopt",
	    [NC_MSG_GETSOCKNAME] = "getsockname",
	    [NC_MSG_GETPEERNAME] = "getpeername",
	    [NC_MSG_CLIENT_ADD] = "client-add",
	    [NC_MSG_CLIENT_REMOVE] = "client-remove",
	    [NC_MSG_REATTACH] = "reattach",
	    [NC_MSG_CORE_HELLO] = "core-hello",
	    [NC_MSG_CLIENT_LIST] = "client-list",
	    [NC_MSG_SOCK_LIST] = "sock-list",
	};
	if (type == 0 || type >= NC_MSG_TYPE_END)
		return "unknown";
	return names[type];
}
