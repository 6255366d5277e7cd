/*
 * The packet-fd backend: one packet per read and write on any fd that keeps
 * message boundaries (a SOCK_SEQPACKET socketpair, typically). It joins two
 * phys back to back for tests without root or a kernel network.
 */
#include "services/phy_driver/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct fdlink {
	int fd;
};

static ssize_t fdlink_recv(void *state, void *buf, size_t cap)
{
	struct fdlink *l = state;
	ssize_t n = recv(l->fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return (size_t)n > cap ? -EMSGSIZE : n;
}

static int fdlink_send(void *state, const void *pkt, size_t len)
{
	struct fdlink *l = state;
	ssize_t n = send(l->fd, pkt, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

static int fdlink_fd(void *state)
{
	return ((struct fdlink *)state)->fd;
}

static void fdlink_close(void *state)
{
	struct fdlink *l = state;
	close(l->fd);
	free(l);
}

static const struct nc_phy_backend_ops fdlink_ops = {
    .recv = fdlink_recv,
    .send = fdlink_send,
    .fd = fdlink_fd,
    .close = fdlink_close,
};

int nc_phy_fdlink_open(struct nc_phy_backend *b, int fd)
{
	struct fdlink *l = malloc(sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->fd = fd;
	b->ops = &fdlink_ops;
	b->state = l;
	return 0;
}
